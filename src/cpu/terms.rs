//! CPU mirror of `shaders/common/terms.wgsl`, in f64: per-element loss terms and derivatives.
//! Each returns `(loss, derivative)`.

use super::activation::{pow_nonneg, sigmoid_parts};

/// Weighted BCE on a logit: `l = -(a·t·log σ(z) + b·(1-t)·log σ(-z))`, and dl/dz.
pub fn bce_term(z: f64, t: f64, a: f64, b: f64) -> (f64, f64) {
    let [ls, ls_neg, s, s_neg] = sigmoid_parts(z);
    let l = -(a * t * ls + b * (1.0 - t) * ls_neg);
    (l, b * (1.0 - t) * s - a * t * s_neg)
}

/// MONAI's sigmoid focal term times `aw`, and dl/dz. `binary`: t is 0 or 1, so u = ±z,
/// bce = -log σ(-u) and σ(z) - t = (1 - 2t)·σ(u) (the shader's one-`sigmoid_parts` form).
pub fn focal_sigmoid_term(z: f64, t: f64, gamma: f64, aw: f64, binary: bool) -> (f64, f64) {
    if binary {
        let [ls_u, ls_neg_u, s_u, s_neg_u] = sigmoid_parts(if t > 0.5 { -z } else { z });
        let bce = -ls_neg_u;
        let f = (gamma * ls_u).exp();
        return (
            aw * f * bce,
            aw * f * (1.0 - 2.0 * t) * (s_u + gamma * s_neg_u * bce),
        );
    }
    let [ls_z, _, s_z, _] = sigmoid_parts(z);
    let bce = z - z * t - ls_z;
    let [ls_u, _, _, s_neg_u] = sigmoid_parts(z * (1.0 - 2.0 * t));
    let f = (gamma * ls_u).exp();
    let df = gamma * f * s_neg_u * (1.0 - 2.0 * t);
    (aw * f * bce, aw * (f * (s_z - t) + df * bce))
}

/// MONAI's alpha factor of the sigmoid focal term.
pub fn focal_alpha_factor(t: f64, alpha: f64) -> f64 {
    t * alpha + (1.0 - t) * (1.0 - alpha)
}

/// Softmax focal term of one class, and dl/dlog p.
pub fn focal_softmax_term(t: f64, aw: f64, lp: f64, p: f64, gamma: f64) -> (f64, f64) {
    let q = 1.0 - p;
    let l = -t * aw * pow_nonneg(q, gamma) * lp;
    let mut d = pow_nonneg(q, gamma);
    if gamma != 0.0 && q > 0.0 {
        d -= gamma * pow_nonneg(q, gamma - 1.0) * p * lp;
    }
    (l, -t * aw * d)
}

/// Cross-entropy with a class-index target and label smoothing, one channel, and dl/dz_c.
#[allow(clippy::too_many_arguments)]
pub fn ce_label_term(
    lp: f64,
    p: f64,
    hit: f64,
    wy: f64,
    wc: f64,
    eps: f64,
    classes: f64,
    wsum: f64,
) -> (f64, f64) {
    let l = -(1.0 - eps) * wy * hit * lp - eps / classes * wc * lp;
    (
        l,
        (1.0 - eps) * wy * (p - hit) + eps / classes * (wsum * p - wc),
    )
}

/// Cross-entropy with a probability target, one channel, with `a = Σ_k w_k t'_k`, and dl/dz_c.
pub fn ce_dense_term(lp: f64, p: f64, t: f64, wc: f64, a: f64) -> (f64, f64) {
    (-wc * t * lp, p * a - wc * t)
}
