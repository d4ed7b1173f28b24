// Numerically stable activations and their pieces, shared by every loss family.
// The CPU mirror is src/cpu/activation.rs.

// log(1 + u) for u >= 0, accurate to a few f32 ulps relative also for small u (WGSL has no
// log1p, and promises its log near 1 only to 2^-21 absolute): below 1/16 the alternating series
// to u^6, whose remainder is under u^7/7 (6e-8 of the value at 1/16); above it `log(1 + u)`,
// whose absolute error is then at most ~1e-5 of the value.
fn log1p_pos(u: f32) -> f32 {
    if u < 0.0625 {
        return u * (1.0 - u * (1.0 / 2.0 - u * (1.0 / 3.0 - u * (1.0 / 4.0 - u * (1.0 / 5.0 - u * (1.0 / 6.0))))));
    }
    return log(1.0 + u);
}

// -log(1 - u) for 0 <= u < 1, accurate to a few f32 ulps relative also for small u: below 1/16
// the series u + u²/2 + ... + u^7/7 (remainder under u^8/(8·(1 - u))), above it -log(1 - u).
fn neg_log_one_minus(u: f32) -> f32 {
    if u < 0.0625 {
        return u * (1.0 + u * (1.0 / 2.0 + u * (1.0 / 3.0 + u * (1.0 / 4.0 + u * (1.0 / 5.0 + u * (1.0 / 6.0 + u * (1.0 / 7.0)))))));
    }
    return -log(1.0 - u);
}

// (log σ(x), log σ(-x), σ(x), σ(-x)) from one exp, e = exp(-|x|), which never overflows:
// log σ(±x) = min(±x, 0) - log(1 + e), and σ(±x) is 1 / (1 + e) on the side where ±x >= 0,
// e / (1 + e) on the other. A loss term that needs several of them takes them from one call
// (after inlining, the compiler drops what a caller leaves unused): each exp and log is an
// instruction sequence on a CPU driver, and lavapipe runs both sides of a branch.
fn sigmoid_parts(x: f32) -> vec4<f32> {
    let e = exp(-abs(x));
    let l = log1p_pos(e);
    let r = 1.0 / (1.0 + e);
    let pos = x >= 0.0;
    return vec4<f32>(min(x, 0.0) - l, min(-x, 0.0) - l, select(e * r, r, pos),
        select(r, e * r, pos));
}

fn log_sigmoid(x: f32) -> f32 {
    return sigmoid_parts(x).x;
}

fn sigmoid(x: f32) -> f32 {
    return sigmoid_parts(x).z;
}

// Online log-sum-exp over a channel loop: state = (running max, sum of exp(z - max)).
// Start from `lse_start(z0)` (or `LSE_EMPTY`), feed every other channel to `lse_push`, read with
// `lse_value`. The CPU mirror (`log_sum_exp`) takes the max first; the two differ in rounding.
fn lse_start(z: f32) -> vec2<f32> {
    return vec2<f32>(z, 1.0);
}

// The state of no channel: pushing any finite z gives (z, 1); -inf adds nothing.
const LSE_EMPTY = vec2<f32>(-3.4028235e38, 0.0);

// One exp per channel and no data-dependent branch: a new max rescales the sum by
// exp(old max - z), an old one adds exp(z - max), and both are exp(-|z - max|). (A branch runs
// both sides' exps wherever the lanes of a SIMD group disagree.)
fn lse_push(state: vec2<f32>, z: f32) -> vec2<f32> {
    return lse_advance(state, z, lse_factors(state, z));
}

// The factors of pushing z: (f, w) with f what the sums so far are multiplied by (exp(old max -
// z) where z is a new max, else 1) and w the new term, exp(z - new max). A walk that keeps other
// sums relative to the same max (region.wgsl's `px_load_dot`) rescales them by f too.
fn lse_factors(state: vec2<f32>, z: f32) -> vec2<f32> {
    let d = z - state.x;
    let e = exp(-abs(d));
    return select(vec2<f32>(1.0, e), vec2<f32>(e, 1.0), d > 0.0);
}

// `lse_factors` of four pixels at once (m: their maxima so far), lane by lane.
struct LseFactors4 {
    f: vec4<f32>,
    w: vec4<f32>,
}

fn lse_factors4(m: vec4<f32>, z: vec4<f32>) -> LseFactors4 {
    let d = z - m;
    let e = exp(-abs(d));
    let up = d > vec4<f32>(0.0);
    return LseFactors4(select(vec4<f32>(1.0), e, up), select(e, vec4<f32>(1.0), up));
}

// The state after pushing z with its `lse_factors` fw.
fn lse_advance(state: vec2<f32>, z: f32, fw: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(max(state.x, z), state.y * fw.x + fw.y);
}

fn lse_value(state: vec2<f32>) -> f32 {
    return state.x + log(state.y);
}

// x^g for x >= 0 and g >= 0 with the limits the losses need: x^0 = 1 (also for x = 0), 0^g = 0.
fn pow_nonneg(x: f32, g: f32) -> f32 {
    if g == 0.0 {
        return 1.0;
    }
    if x <= 0.0 {
        return 0.0;
    }
    return exp2(g * log2(x));
}
