// Labels, dense targets and the activation of one pixel, shared by the kernels that read one
// pixel's C channels from `logits` [N, C, *S] and its target from `targets`.
//
// The includer defines: `params` with fields `c`, `s`, `ignore_index`; the bindings `logits`
// (f32) and `targets` (i32 labels or f32 dense, as u32 words); the overrides DENSE, HAS_IGNORE
// and ACT (one of the ACT_* below). With C = 1, labels are a binary mask {0, 1}.
// CPU mirror: `Ctx` in src/cpu/region.rs.

const ACT_SOFTMAX: u32 = 0u;
const ACT_SIGMOID: u32 = 1u;
const ACT_NONE: u32 = 2u;

const PIX_VALID: u32 = 0u;
const PIX_IGNORED: u32 = 1u;
const PIX_BAD: u32 = 2u;

fn binary_labels() -> bool {
    return params.c == 1u;
}

fn label_of(p: u32) -> i32 {
    if DENSE {
        return 0;
    }
    return bitcast<i32>(targets[p]);
}

fn pixel_state(label: i32) -> u32 {
    if DENSE {
        return PIX_VALID;
    }
    if HAS_IGNORE && label == params.ignore_index {
        return PIX_IGNORED;
    }
    let count = select(i32(params.c), 2, binary_labels());
    if label < 0 || label >= count {
        return PIX_BAD;
    }
    return PIX_VALID;
}

fn target_at(e: u32, c: u32, label: i32) -> f32 {
    if DENSE {
        return bitcast<f32>(targets[e]);
    }
    if binary_labels() {
        return f32(label == 1);
    }
    return f32(label == i32(c));
}

// The activation of one pixel: log-sum-exp over the channels for softmax, nothing otherwise.
fn act_prepare(base: u32) -> f32 {
    if ACT != ACT_SOFTMAX {
        return 0.0;
    }
    var st = lse_start(logits[base]);
    for (var c = 1u; c < params.c; c = c + 1u) {
        st = lse_push(st, logits[base + c * params.s]);
    }
    return lse_value(st);
}

fn prob(z: f32, lse: f32) -> f32 {
    if ACT == ACT_SOFTMAX {
        return exp(z - lse);
    }
    if ACT == ACT_SIGMOID {
        return sigmoid(z);
    }
    return z;
}


// ---------------------------------------------------------------------------------------------
// The pixel in hand, read once. A kernel that walks one pixel's channels several times (the
// region passes) calls `px_load` once and then reads through `px_logit` / `px_target` /
// `px_prob`: with C <= PIXEL_CACHE they come from private arrays (registers or L1 on a GPU),
// otherwise from memory again. On a CPU driver every storage load is a bounds-checked gather,
// so reading each element once instead of three or four times is most of a pass's time.

const PIXEL_CACHE: u32 = 32u;
var<private> px_z: array<f32, PIXEL_CACHE>;
var<private> px_t: array<f32, PIXEL_CACHE>;
// exp(z_c - max) after `px_softmax`, and 1 / their sum.
var<private> px_e: array<f32, PIXEL_CACHE>;
var<private> px_inv: f32;

fn px_cached() -> bool {
    return params.c <= PIXEL_CACHE;
}

// Reads the channels of the pixel whose channel 0 is at `base`; returns the number of
// non-finite logits and of non-finite dense targets among them.
fn px_load(base: u32) -> vec2<u32> {
    var bad = vec2<u32>(0u);
    for (var c = 0u; c < params.c; c = c + 1u) {
        let z = logits[base + c * params.s];
        bad.x = bad.x + u32(is_nonfinite(z));
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

fn px_target(base: u32, c: u32, label: i32) -> f32 {
    if DENSE && px_cached() {
        return px_t[c];
    }
    return target_at(base + c * params.s, c, label);
}

// log Σ_c exp(z_c), max first (one exp per channel, no data-dependent branch); keeps the exps.
fn px_softmax(base: u32) -> f32 {
    var m = px_logit(base, 0u);
    for (var c = 1u; c < params.c; c = c + 1u) {
        m = max(m, px_logit(base, c));
    }
    var sum = 0.0;
    for (var c = 0u; c < params.c; c = c + 1u) {
        let e = exp(px_logit(base, c) - m);
        if px_cached() {
            px_e[c] = e;
        }
        sum = sum + e;
    }
    px_inv = 1.0 / sum;
    return m + log(sum);
}

// p_c of the last `px_softmax`, from its cached exp (else exp(lp), lp = z_c - its result).
fn px_softmax_at(c: u32, lp: f32) -> f32 {
    if px_cached() {
        return px_e[c] * px_inv;
    }
    return exp(lp);
}

// `act_prepare` for the pixel loaded by `px_load`.
fn px_prepare(base: u32) -> f32 {
    if ACT == ACT_SOFTMAX {
        return px_softmax(base);
    }
    return 0.0;
}

// The activation of channel c after `px_prepare` (`lse` its result).
fn px_prob(base: u32, c: u32, lse: f32) -> f32 {
    if ACT == ACT_SOFTMAX && px_cached() {
        return px_e[c] * px_inv;
    }
    return prob(px_logit(base, c), lse);
}
