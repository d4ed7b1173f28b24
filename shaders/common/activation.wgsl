// Numerically stable activations and their pieces, shared by every loss family.
// The CPU mirror is src/cpu/activation.rs.

// log(1 + u) for u >= 0, accurate for tiny u (WGSL has no log1p): below 1e-4 the cubic series is
// exact to f32 round-off, above it `log(1 + u)` loses nothing that matters.
fn log1p_pos(u: f32) -> f32 {
    if u < 1e-4 {
        return u * (1.0 - u * (0.5 - u * (1.0 / 3.0)));
    }
    return log(1.0 + u);
}

// log σ(x) = min(x, 0) - log(1 + exp(-|x|)); never overflows (|x| = 100 is fine).
fn log_sigmoid(x: f32) -> f32 {
    return min(x, 0.0) - log1p_pos(exp(-abs(x)));
}

// σ(x) without overflow in exp.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// Online log-sum-exp over a channel loop: state = (running max, sum of exp(z - max)).
// Start from `lse_start(z0)`, feed every other channel to `lse_push`, read with `lse_value`.
fn lse_start(z: f32) -> vec2<f32> {
    return vec2<f32>(z, 1.0);
}

fn lse_push(state: vec2<f32>, z: f32) -> vec2<f32> {
    if z > state.x {
        return vec2<f32>(z, state.y * exp(state.x - z) + 1.0);
    }
    return vec2<f32>(state.x, state.y + exp(z - state.x));
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
