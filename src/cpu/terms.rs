//! CPU mirror of `shaders/common/terms.wgsl`, in f64: per-element loss terms and derivatives.
//! Each returns `(loss, derivative)`.

use super::activation::{log_sigmoid, pow_nonneg, sigmoid};

/// Weighted BCE on a logit: `l = -(a·t·log σ(z) + b·(1-t)·log σ(-z))`, and dl/dz.
pub fn bce_term(z: f64, t: f64, a: f64, b: f64) -> (f64, f64) {
    let l = -(a * t * log_sigmoid(z) + b * (1.0 - t) * log_sigmoid(-z));
    (l, b * (1.0 - t) * sigmoid(z) - a * t * sigmoid(-z))
}

/// MONAI's sigmoid focal term times `aw`, and dl/dz.
pub fn focal_sigmoid_term(z: f64, t: f64, gamma: f64, aw: f64) -> (f64, f64) {
    let bce = z - z * t - log_sigmoid(z);
    let u = z * (1.0 - 2.0 * t);
    let f = (gamma * log_sigmoid(u)).exp();
    let df = gamma * f * sigmoid(-u) * (1.0 - 2.0 * t);
    (aw * f * bce, aw * (f * (sigmoid(z) - t) + df * bce))
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
