// The pixel in hand, read from memory once. A kernel that walks one pixel's C channels several
// times (loss terms, gradient) calls `px_load` once, which also takes the log-sum-exp, and then
// reads through `px_logit` / `px_dense_target`: with C <= PIXEL_CACHE they come from private
// arrays (registers or L1 on a GPU), otherwise from memory again. On a CPU driver every storage
// load is a bounds-checked gather, so reading each element once instead of two to four times is
// most of a pass's time (lavapipe: cross-entropy 305 -> 95 ms, see BENCHMARKS.md).
//
// The includer defines `params` with fields `c` and `s`, the bindings `logits` (f32) and
// `targets` (u32 words), and the override DENSE. Needs common/grid.wgsl (is_nonfinite) and
// common/activation.wgsl (the online log-sum-exp).

// Must match `PIXEL_CACHE` in src/loss/mod.rs (checked by a test).
const PIXEL_CACHE: u32 = 32u;
// C <= PIXEL_CACHE, set by the host per pipeline (`loss::cache_constant`). A constant rather than
// a test of params.c, so that the compiler drops the memory-reading branch of every accessor
// below: a uniform branch still costs its dead side's reads on lavapipe (cross-entropy 10-15%,
// a region loss's gradient pass 15-25%, see BENCHMARKS.md). The default, false, is right for
// every C.
override CACHED: bool = false;
var<private> px_z: array<f32, PIXEL_CACHE>;
var<private> px_t: array<f32, PIXEL_CACHE>;
// The online log-sum-exp state of the last `px_load` (see `lse_push`): (max, Σ exp(z - max)),
// and 1 / that sum.
var<private> px_lse: vec2<f32>;
var<private> px_inv: f32;

fn px_cached() -> bool {
    return CACHED;
}

// Reads the channels of the pixel whose channel 0 is at `base` (and, for DENSE, its targets),
// and takes the log-sum-exp over channels [first, C) for `px_softmax` in the same walk (one exp
// per channel; a separate walk over the cached channels cost lavapipe a fifth of a region loss's
// time, and a GPU a second read of every logit); returns the number of non-finite logits and of
// non-finite dense targets among them.
fn px_load(base: u32, first: u32) -> vec2<u32> {
    var bad = vec2<u32>(0u);
    px_lse = LSE_EMPTY;
    for (var c = 0u; c < params.c; c = c + 1u) {
        let z = logits[base + c * params.s];
        bad.x = bad.x + u32(is_nonfinite(z));
        if c >= first {
            px_lse = lse_push(px_lse, z);
        }
        if px_cached() {
            px_z[c] = z;
        }
        if DENSE {
            let t = bitcast<f32>(targets[base + c * params.s]);
            bad.y = bad.y + u32(is_nonfinite(t));
            if px_cached() {
                px_t[c] = t;
            }
        }
    }
    px_inv = 1.0 / px_lse.y;
    return bad;
}

fn px_logit(base: u32, c: u32) -> f32 {
    if px_cached() {
        return px_z[c];
    }
    return logits[base + c * params.s];
}

// The dense target of channel c (DENSE only).
fn px_dense_target(base: u32, c: u32) -> f32 {
    if px_cached() {
        return px_t[c];
    }
    return bitcast<f32>(targets[base + c * params.s]);
}

// log Σ_{c >= first} exp(z_c) of the last `px_load(base, first)`.
fn px_softmax() -> f32 {
    return lse_value(px_lse);
}

// p_c = exp(z_c - max) / Σ of the last `px_load`'s softmax, for z_c = px_logit(base, c): an exp
// per use instead of a cache of the exps, whose private array cost lavapipe more than the exps
// (a private access is a gather there). Not exp(z_c - lse): that carries the rounding of lse
// (an ulp of |lse|, 1e-6 at lse near 12) into every p_c, where z_c - max is exact near the max.
fn px_softmax_p(z: f32) -> f32 {
    return exp(z - px_lse.x) * px_inv;
}
