// Grid constants shared by every kernel family.
//
// Every kernel runs 1-D workgroups of WG threads and walks its work items with a grid-stride loop
// (`for (i = gid; i < count; i += threads)`), so the host can cap the number of workgroups far
// below the 65 535-per-dimension limit whatever the tensor size. The cap is chosen by the host
// from the shape alone, so the reduction order (and therefore every result) is a function of the
// inputs, not of timing.
const WG: u32 = 256u;

// True for +inf, -inf and every NaN: the exponent bits are all ones. Written on the bits so that
// no compiler can fold it away as it may fold `x != x`.
fn is_nonfinite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// `is_nonfinite` of each lane.
fn is_nonfinite4(x: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(x) & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u);
}

// Status counters (see `Status` in src/loss/mod.rs; the indices are checked by a test).
const STATUS_BAD_LABEL: u32 = 0u;
const STATUS_NONFINITE_LOGIT: u32 = 1u;
const STATUS_NONFINITE_TARGET: u32 = 2u;
