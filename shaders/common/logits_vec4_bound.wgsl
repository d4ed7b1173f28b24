// The region family's logits (binding 1) bound a second time as vec4s, for `grad_four`'s
// ALIGNED4 walk: on lavapipe a vec4 load costs what one f32 load does. `common/logits_vec4.wgsl`
// resolves here on a device that allows 9 storage buffers per stage (shader::Caps); the host
// binds the logits at binding 9 and may set ALIGNED4.
@group(0) @binding(9) var<storage, read> logits_vec4: array<vec4<f32>>;

// Elements 4i .. 4i + 3 of the logits.
fn logits_vec4_at(i: u32) -> vec4<f32> {
    return logits_vec4[i];
}
