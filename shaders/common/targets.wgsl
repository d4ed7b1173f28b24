// Labels, dense targets and the activation of one pixel, shared by the kernels that read one
// pixel's C channels from `logits` [N, C, *S] and its target from `targets`.
//
// The includer defines: `params` with fields `c`, `s`, `ignore_index`; the bindings `logits`
// (f32) and `targets` (i32 labels or f32 dense, as u32 words); the overrides DENSE, HAS_IGNORE
// and ACT (one of the ACT_* below). With C = 1, labels are a binary mask {0, 1}, unless the
// host sets CLASS_LABELS (softmax cross-entropy, as topk: a label is a class index, so only 0).
// CPU mirror: `Ctx` in src/cpu/region.rs.

#include "common/pixel_cache.wgsl"

const ACT_SOFTMAX: u32 = 0u;
const ACT_SIGMOID: u32 = 1u;
const ACT_NONE: u32 = 2u;

const PIX_VALID: u32 = 0u;
const PIX_IGNORED: u32 = 1u;
const PIX_BAD: u32 = 2u;

override CLASS_LABELS: bool = false;

fn binary_labels() -> bool {
    return !CLASS_LABELS && params.c == 1u;
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

// The one channel whose target is 1 for a valid label (one-hot over C; with C = 1, channel 0
// for label 1), or -1 where every channel's target is 0.
fn hot_channel(label: i32) -> i32 {
    if binary_labels() {
        return select(-1, 0, label == 1);
    }
    return label;
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
// The pixel in hand through common/pixel_cache.wgsl, with this file's label rules.

fn px_target(base: u32, c: u32, label: i32) -> f32 {
    if DENSE {
        return px_dense_target(base, c);
    }
    return target_at(base + c * params.s, c, label);
}

// `act_prepare` for the pixel loaded by `px_load(base, 0u)`.
fn px_prepare(base: u32) -> f32 {
    if ACT == ACT_SOFTMAX {
        return px_softmax();
    }
    return 0.0;
}

// The activation of channel c after `px_prepare` (`lse` its result).
fn px_prob(base: u32, c: u32, lse: f32) -> f32 {
    if ACT == ACT_SOFTMAX {
        return px_softmax_p(px_logit(base, c));
    }
    return prob(px_logit(base, c), lse);
}
