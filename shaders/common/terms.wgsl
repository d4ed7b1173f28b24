// Per-element loss terms and their derivatives, shared by the pixel-wise kernels and the pixel
// terms of compound region losses. Pure functions of their arguments.
// CPU mirror: src/cpu/terms.rs.

// Weighted BCE on a logit: l = -(a·t·log σ(z) + b·(1-t)·log σ(-z)); returns (l, dl/dz).
// BCE: a = w·pos_weight, b = w. Balanced BCE: a = β, b = 1 - β.
fn bce_term(z: f32, t: f32, a: f32, b: f32) -> vec2<f32> {
    let s = sigmoid_parts(z);
    let l = -(a * t * s.x + b * (1.0 - t) * s.y);
    let g = b * (1.0 - t) * s.z - a * t * s.w;
    return vec2<f32>(l, g);
}

// The sigmoid focal term's γ where it is a whole number up to `MAX_FOCAL_POWER` (src/loss/mod.rs;
// MONAI's default is 2), set by the host per pipeline; -1 otherwise. The focal factor σ(u)^γ is
// then a product instead of exp(γ·log σ(u)): on lavapipe that exp was a sixth of the sigmoid
// focal loss's pass (BENCHMARKS.md), and a product of γ factors is as exact.
override FOCAL_POWER: i32 = -1;

// x^γ for the focal factor, from x and log x (the caller has both).
fn focal_pow(x: f32, log_x: f32, gamma: f32) -> f32 {
    if FOCAL_POWER < 0 {
        return exp(gamma * log_x);
    }
    var f = 1.0;
    for (var i = 0; i < FOCAL_POWER; i = i + 1) {
        f = f * x;
    }
    return f;
}

// MONAI's sigmoid focal term, times the weight `aw` (alpha factor × class weight):
// bce = z - z·t - log σ(z), f = exp(γ·log σ(u)) with u = z(1 - 2t); l = aw·f·bce.
// Returns (l, dl/dz), using d bce/dz = σ(z) - t and d f/dz = γ f σ(-u) (1 - 2t).
// `binary`: the caller's t is 0 or 1 (labels). Then u = ±z, bce = -log σ(-u) and
// σ(z) - t = (1 - 2t)·σ(u), so one `sigmoid_parts` of u gives everything, and neither bce nor
// σ(z) - t is a difference of nearly equal numbers (at z = -20, t = 0: bce = 2e-9, not 0).
fn focal_sigmoid_term(z: f32, t: f32, gamma: f32, aw: f32, binary: bool) -> vec2<f32> {
    if binary {
        let su = sigmoid_parts(select(z, -z, t > 0.5));
        let bce = -su.y;
        let f = focal_pow(su.z, su.x, gamma);
        return aw * f * vec2<f32>(bce, (1.0 - 2.0 * t) * (su.z + gamma * su.w * bce));
    }
    let sz = sigmoid_parts(z);
    let bce = z - z * t - sz.x;
    let su = sigmoid_parts(z * (1.0 - 2.0 * t));
    let f = focal_pow(su.z, su.x, gamma);
    let df = gamma * f * su.w * (1.0 - 2.0 * t);
    return vec2<f32>(aw * f * bce, aw * (f * (sz.z - t) + df * bce));
}

// MONAI's alpha factor of the sigmoid focal term: t·α + (1-t)(1-α).
fn focal_alpha_factor(t: f32, alpha: f32) -> f32 {
    return t * alpha + (1.0 - t) * (1.0 - alpha);
}

// Softmax focal term of one class, l = -t·aw·(1-p)^γ·log p, and dl/dlog p.
fn focal_softmax_term(t: f32, aw: f32, lp: f32, p: f32, gamma: f32) -> vec2<f32> {
    let q = 1.0 - p;
    let l = -t * aw * pow_nonneg(q, gamma) * lp;
    var d = pow_nonneg(q, gamma);
    if gamma != 0.0 && q > 0.0 {
        d = d - gamma * pow_nonneg(q, gamma - 1.0) * p * lp;
    }
    return vec2<f32>(l, -t * aw * d);
}

// Cross-entropy with class-index target y (hit = [c == y]) and label smoothing ε over C classes:
// per channel, l_c = -(1-ε)·w_y·hit·log p_c - ε/C·w_c·log p_c (summed over c gives the pixel's
// loss), and dl/dz_c = (1-ε)·w_y·(p_c - hit) + ε/C·(W·p_c - w_c), W = Σ_k w_k.
fn ce_label_term(lp: f32, p: f32, hit: f32, wy: f32, wc: f32, eps: f32, classes: f32, wsum: f32) -> vec2<f32> {
    let l = -(1.0 - eps) * wy * hit * lp - eps / classes * wc * lp;
    let g = (1.0 - eps) * wy * (p - hit) + eps / classes * (wsum * p - wc);
    return vec2<f32>(l, g);
}

// Cross-entropy with a probability target t' (smoothing already applied) and A = Σ_k w_k t'_k:
// l_c = -w_c·t'_c·log p_c, dl/dz_c = p_c·A - w_c·t'_c.
fn ce_dense_term(lp: f32, p: f32, t: f32, wc: f32, a: f32) -> vec2<f32> {
    return vec2<f32>(-wc * t * lp, p * a - wc * t);
}
