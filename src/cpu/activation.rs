//! CPU mirror of `shaders/common/activation.wgsl`, in f64.

/// log(1 + u) for u >= 0 (the WGSL version needs a series for tiny u; f64 has `ln_1p`).
pub fn log1p_pos(u: f64) -> f64 {
    u.ln_1p()
}

/// log σ(x) = min(x, 0) - log(1 + exp(-|x|)).
pub fn log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - log1p_pos((-x.abs()).exp())
}

/// σ(x) without overflow.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
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
