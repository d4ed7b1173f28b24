// The pixel in hand, read from memory once. A kernel that walks one pixel's C channels several
// times (log-sum-exp, loss terms, gradient) calls `px_load` once and then reads through
// `px_logit` / `px_dense_target` / `px_softmax_at`: with C <= PIXEL_CACHE they come from private
// arrays (registers or L1 on a GPU), otherwise from memory again. On a CPU driver every storage
// load is a bounds-checked gather, so reading each element once instead of two to four times is
// most of a pass's time (lavapipe: cross-entropy 305 -> 95 ms, see BENCHMARKS.md).
//
// The includer defines `params` with fields `c` and `s`, the bindings `logits` (f32) and
// `targets` (u32 words), and the override DENSE. Needs common/grid.wgsl (is_nonfinite).

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
// exp(z_c - max) after `px_softmax`, 1 / their sum, and the max found by `px_load`.
var<private> px_e: array<f32, PIXEL_CACHE>;
var<private> px_inv: f32;
var<private> px_max: f32;

fn px_cached() -> bool {
    return CACHED;
}

// Reads the channels of the pixel whose channel 0 is at `base` (and, for DENSE, its targets),
// keeping the max over channels [first, C) for `px_softmax`; returns the number of non-finite
// logits and of non-finite dense targets among them.
fn px_load(base: u32, first: u32) -> vec2<u32> {
    var bad = vec2<u32>(0u);
    px_max = logits[base + first * params.s];
    for (var c = 0u; c < params.c; c = c + 1u) {
        let z = logits[base + c * params.s];
        bad.x = bad.x + u32(is_nonfinite(z));
        if c >= first {
            px_max = max(px_max, z);
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

// log Σ_{c >= first} exp(z_c), `first` as given to `px_load` (whose max it uses): one exp per
// channel and no data-dependent branch (the online form's branch runs both sides' exps when the
// lanes of a SIMD group disagree); the same formula as the CPU mirror. Keeps the exps.
fn px_softmax(base: u32, first: u32) -> f32 {
    var sum = 0.0;
    for (var c = first; c < params.c; c = c + 1u) {
        let e = exp(px_logit(base, c) - px_max);
        if px_cached() {
            px_e[c] = e;
        }
        sum = sum + e;
    }
    px_inv = 1.0 / sum;
    return px_max + log(sum);
}

// p_c of the last `px_softmax`, from its cached exp (else exp(lp), lp = z_c - its result).
fn px_softmax_at(c: u32, lp: f32) -> f32 {
    if px_cached() {
        return px_e[c] * px_inv;
    }
    return exp(lp);
}
