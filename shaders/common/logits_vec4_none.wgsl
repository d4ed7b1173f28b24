// `common/logits_vec4.wgsl` on a device with WebGPU's default of 8 storage buffers per stage
// (shader::Caps): no second binding of the logits; the host never sets ALIGNED4, and this
// stand-in, the same four elements read one by one, is never called.

// Elements 4i .. 4i + 3 of the logits.
fn logits_vec4_at(i: u32) -> vec4<f32> {
    return vec4<f32>(logits[4u * i], logits[4u * i + 1u], logits[4u * i + 2u], logits[4u * i + 3u]);
}
