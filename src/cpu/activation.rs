//! CPU mirror of `shaders/common/activation.wgsl`, in f64.

/// log(1 + u) for u >= 0 (the WGSL version needs a series for tiny u; f64 has `ln_1p`).
pub fn log1p_pos(u: f64) -> f64 {
    u.ln_1p()
}

/// (log σ(x), log σ(-x), σ(x), σ(-x)) from e = exp(-|x|): log σ(±x) = min(±x, 0) - log(1 + e),
/// σ(±x) = 1 / (1 + e) where ±x >= 0, else e / (1 + e).
pub fn sigmoid_parts(x: f64) -> [f64; 4] {
    let e = (-x.abs()).exp();
    let l = log1p_pos(e);
    let r = 1.0 / (1.0 + e);
    let (sx, s_neg) = if x >= 0.0 { (r, e * r) } else { (e * r, r) };
    [x.min(0.0) - l, (-x).min(0.0) - l, sx, s_neg]
}

/// log σ(x).
pub fn log_sigmoid(x: f64) -> f64 {
    sigmoid_parts(x)[0]
}

/// σ(x) without overflow.
pub fn sigmoid(x: f64) -> f64 {
    sigmoid_parts(x)[2]
}

/// log Σ exp(z) over an iterator, max-subtracted (the shader's online form computes the same).
pub fn log_sum_exp(z: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = z.clone().fold(f64::NEG_INFINITY, f64::max);
    m + z.map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// x^g for x >= 0, g >= 0, with x^0 = 1 and 0^g = 0 (as `pow_nonneg` in WGSL).
pub fn pow_nonneg(x: f64, g: f64) -> f64 {
    if g == 0.0 {
        1.0
    } else if x <= 0.0 {
        0.0
    } else {
        x.powf(g)
    }
}
