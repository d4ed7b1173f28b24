// Pixel-wise losses: cross-entropy, BCE, class-balanced BCE, focal (sigmoid and softmax forms).
// CPU mirror: src/cpu/pixel.rs (same names, same order of operations, in f64).
//
// One thread owns one pixel (image n, spatial index s) at a time and loops over its C channels,
// which sit S elements apart: neighbouring threads read neighbouring addresses in every channel.
//
// Entry points, in the order the host records them:
//   prepass   (only when a normaliser depends on the targets) reads the targets alone and writes
//             per-(image, workgroup) partial sums: valid weight, valid pixels, negative mass;
//   prepare   one workgroup: combines those partials in a fixed order into the normalisers;
//   main      the fused pass: activation, loss term and gradient of every pixel, written once;
//             per-workgroup loss partials (or the unreduced loss for reduction = none);
//   finalize  one workgroup: combines the loss partials in a fixed order into loss[0].

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/activation.wgsl"
#include "common/terms.wgsl"
#include "common/pixel_cache.wgsl"
#include "common/status.wgsl"

// Which loss (LOSS_* below), fixed per pipeline so that the compiler drops the other branches.
override LOSS: u32 = 0u;
const LOSS_CE: u32 = 0u;
const LOSS_BCE: u32 = 1u;
const LOSS_BALANCED_BCE: u32 = 2u;
const LOSS_FOCAL: u32 = 3u;
// Targets are f32 [N, C, *S] (dense) instead of i32 labels [N, *S].
override DENSE: bool = false;
// Focal loss only: softmax over channels instead of element-wise sigmoid.
override FOCAL_SOFTMAX: bool = false;
// Focal loss only: an `alpha` was given.
override HAS_ALPHA: bool = false;
// Labels only: a pixel whose label equals params.ignore_index is skipped.
override HAS_IGNORE: bool = false;
// 1 drops channel 0 from the loss terms (include_background = false).
override FIRST_CHANNEL: u32 = 0u;
// REDUCE_*: mean multiplies the summed loss by 1/denominator; none writes the unreduced loss.
override REDUCTION: u32 = 0u;
const REDUCE_MEAN: u32 = 0u;
const REDUCE_SUM: u32 = 1u;
const REDUCE_NONE: u32 = 2u;
// Every image has its own loss multiplier from the prepass (MONAI's focal `sum` with
// ignore_index: a sum over (image, class) of spatial means over the valid pixels).
override PER_IMAGE_NORM: bool = false;
// Some class weight or pos_weight differs from 1 (else no weight is read from memory).
override HAS_WEIGHT: bool = true;
// grad += ... instead of grad = ...: one pipeline each, because a per-element branch on a
// uniform costs lavapipe about a tenth of the kernel.
override ACCUMULATE: bool = false;
// The prepass runs: the loss multiplier (and balanced BCE's beta) come from `scratch` instead of
// params, because they depend on the targets (ignored pixels, class weights of the labels).
override PREPASS: bool = false;

// Must match `PixelParams` in src/loss/pixel.rs (checked by a test).
struct Params {
    n: u32,
    c: u32,
    s: u32,
    nwg: u32,               // workgroups of main (PARTIAL_SLOTS loss partials each)
    ignore_index: i32,
    accumulate: u32,        // unused here (ACCUMULATE); kept for the shared layout
    label_smoothing: f32,
    gamma: f32,
    alpha: f32,
    grad_scale: f32,
    loss_norm: f32,         // 1 / denominator of the mean when known on the host, else 1
    weight_sum: f32,        // Σ_c weight[c] (cross-entropy label smoothing)
    wx: u32,                // prepass workgroups per image (the prepass grid is wx × n)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// i32 labels or f32 dense targets, by DENSE; both are 32-bit words.
@group(0) @binding(2) var<storage, read> targets: array<u32>;
// [weight (C) | pos_weight (C)]; ones where the loss has none.
@group(0) @binding(3) var<storage, read> class_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss_out: array<f32>;
// [norm (4) | image norm (n) | prepass partials (3 * n * wx * PARTIAL_SLOTS) |
//  loss partials (nwg * PARTIAL_SLOTS)]: one partial per subgroup (common/reduce.wgsl's
// `part_sum4`), so that no pass ends in a workgroup barrier.
@group(0) @binding(6) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(7) var<storage, read_write> status: array<atomic<u32>>;

const NORM_LOSS: u32 = 0u;   // multiplier of the summed loss (1/denominator for mean)
const NORM_BETA: u32 = 1u;   // balanced BCE: fraction of negative target mass
const IMAGE_NORM_OFFSET: u32 = 4u;

fn pre_offset() -> u32 {
    return IMAGE_NORM_OFFSET + params.n;
}

// Prepass partials of one kind: PARTIAL_SLOTS per (image, workgroup), image by image.
fn pre_count() -> u32 {
    return params.n * params.wx * PARTIAL_SLOTS;
}

fn loss_partials_offset() -> u32 {
    return pre_offset() + 3u * pre_count();
}

// With C = 1, every loss but cross-entropy reads labels as a binary mask in {0, 1} (MONAI uses
// the labels themselves as the target of a single channel); otherwise labels are one-hot over C.
fn binary_labels() -> bool {
    return LOSS != LOSS_CE && params.c == 1u;
}

fn label_count() -> i32 {
    if binary_labels() {
        return 2;
    }
    return i32(params.c);
}

// Pixel p's label state: 0 valid, 1 ignored, 2 out of range.
const PIX_VALID: u32 = 0u;
const PIX_IGNORED: u32 = 1u;
const PIX_BAD: u32 = 2u;

fn pixel_state(label: i32) -> u32 {
    if DENSE {
        return PIX_VALID;
    }
    if HAS_IGNORE && label == params.ignore_index {
        return PIX_IGNORED;
    }
    if label < 0 || label >= label_count() {
        return PIX_BAD;
    }
    return PIX_VALID;
}

fn label_of(p: u32) -> i32 {
    if DENSE {
        return 0;
    }
    return bitcast<i32>(targets[p]);
}

// Target of channel c of the pixel whose channel 0 is at `base`, for a pixel with label `label`.
fn target_at(base: u32, c: u32, label: i32) -> f32 {
    if DENSE {
        return px_dense_target(base, c);
    }
    if binary_labels() {
        return f32(label == 1);
    }
    return f32(label == i32(c));
}

// Class weight of channel (or label) c, and BCE's pos_weight of channel c.
fn weight_of(c: u32) -> f32 {
    if HAS_WEIGHT {
        return class_weights[c];
    }
    return 1.0;
}

fn pos_weight_of(c: u32) -> f32 {
    if HAS_WEIGHT {
        return class_weights[params.c + c];
    }
    return 1.0;
}

// Cross-entropy and the softmax focal loss walk a pixel's channels several times and read them
// through the pixel cache (common/pixel_cache.wgsl); the element-wise losses read each once.
fn softmax_loss() -> bool {
    return LOSS == LOSS_CE || (LOSS == LOSS_FOCAL && FOCAL_SOFTMAX);
}

// Multiplier of the summed loss (and of every gradient).
fn loss_multiplier() -> f32 {
    if PREPASS {
        return scratch[NORM_LOSS];
    }
    return params.loss_norm;
}

// Multiplier of image n's losses, applied before summing.
fn image_multiplier(n: u32) -> f32 {
    if PER_IMAGE_NORM {
        return scratch[IMAGE_NORM_OFFSET + n];
    }
    return 1.0;
}

// ---------------------------------------------------------------------------------------------
// prepass: per-workgroup sums of what the normalisers need, from the targets alone.

@compute @workgroup_size(WG)
fn prepass(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    // Grid wx × n: workgroup (x, n) walks image n's pixels with stride wx * WG, so every
    // partial belongs to one image.
    let n = wid.y;
    let threads = params.wx * WG;
    var valid_weight = 0.0;
    var valid_pixels = 0.0;
    var negative_mass = 0.0;
    for (var s = wid.x * WG + lane.lid; s < params.s; s = s + threads) {
        let p = n * params.s + s;
        let label = label_of(p);
        if pixel_state(label) != PIX_VALID {
            continue;
        }
        valid_pixels = valid_pixels + 1.0;
        if !DENSE && !binary_labels() {
            valid_weight = valid_weight + weight_of(u32(label));
        }
        if LOSS == LOSS_BALANCED_BCE {
            let base = n * params.c * params.s + s;
            for (var c = 0u; c < params.c; c = c + 1u) {
                // The prepass reads memory directly: the cache belongs to main's pixel.
                var t = 0.0;
                if DENSE {
                    t = bitcast<f32>(targets[base + c * params.s]);
                } else {
                    t = target_at(base, c, label);
                }
                negative_mass = negative_mass + (1.0 - t);
            }
        }
    }
    let sums = part_sum4(vec4<f32>(valid_weight, valid_pixels, negative_mass, 0.0), lane);
    let row = pre_offset() + (n * params.wx + wid.x) * PARTIAL_SLOTS;
    if part_writer(lane) {
        let i = row + part_slot(lane);
        scratch[i] = sums.x;
        scratch[i + pre_count()] = sums.y;
        scratch[i + 2u * pre_count()] = sums.z;
    }
    if lane.lid == 0u {
        for (var k = part_unused_from(lane); k < PARTIAL_SLOTS; k = k + 1u) {
            scratch[row + k] = 0.0;
            scratch[row + k + pre_count()] = 0.0;
            scratch[row + k + 2u * pre_count()] = 0.0;
        }
    }
}

// Sum of `count` partials starting at `offset`, in a fixed order (one workgroup).
fn sum_partials(offset: u32, count: u32, lane: Lane) -> f32 {
    var acc = 0.0;
    for (var i = lane.lid; i < count; i = i + WG) {
        acc = acc + scratch[offset + i];
    }
    return wg_sum(acc, lane);
}

@compute @workgroup_size(WG)
fn prepare(lane: Lane) {
    let count = pre_count();
    let valid_weight = sum_partials(pre_offset(), count, lane);
    let valid_pixels = sum_partials(pre_offset() + count, count, lane);
    let negative_mass = sum_partials(pre_offset() + 2u * count, count, lane);
    if PER_IMAGE_NORM {
        // One thread per image adds that image's wx * PARTIAL_SLOTS partials in order.
        let per_image = params.wx * PARTIAL_SLOTS;
        for (var n = lane.lid; n < params.n; n = n + WG) {
            var v = 0.0;
            for (var x = 0u; x < per_image; x = x + 1u) {
                v = v + scratch[pre_offset() + count + n * per_image + x];
            }
            scratch[IMAGE_NORM_OFFSET + n] = select(0.0, 1.0 / v, v > 0.0);
        }
    }
    if lane.lid == 0u {
        // Denominator of the mean, as each reference defines it: cross-entropy with labels
        // divides by the summed class weight of the valid pixels (torch); MONAI's focal loss with
        // ignore_index by the number of valid pixels; the rest by the number of valid elements.
        var denom = valid_pixels * f32(params.c);
        if LOSS == LOSS_CE {
            denom = valid_weight;
        } else if LOSS == LOSS_FOCAL {
            denom = valid_pixels;
        }
        var mult = 1.0;
        if REDUCTION == REDUCE_MEAN {
            // An empty mean (every pixel ignored) is 0 with a zero gradient, not 0/0.
            mult = select(0.0, 1.0 / denom, denom > 0.0);
        }
        scratch[NORM_LOSS] = mult;
        let elements = valid_pixels * f32(params.c);
        scratch[NORM_BETA] = select(0.0, negative_mass / elements, elements > 0.0);
    }
}

// ---------------------------------------------------------------------------------------------
// main: the fused forward and backward pass.

fn write_grad(e: u32, g: f32) {
    let v = params.grad_scale * g;
    if ACCUMULATE {
        grad[e] = grad[e] + v;
    } else {
        grad[e] = v;
    }
}

// Index of the unreduced loss of channel c at pixel (n, s), for reduction = none.
fn none_index(n: u32, s: u32, c: u32) -> u32 {
    if LOSS == LOSS_CE {
        return n * params.s + s;
    }
    let kept = params.c - FIRST_CHANNEL;
    return (n * kept + (c - FIRST_CHANNEL)) * params.s + s;
}

fn store_none(n: u32, s: u32, c: u32, l: f32) {
    if REDUCTION == REDUCE_NONE {
        loss_out[none_index(n, s, c)] = l;
    }
}

// Cross-entropy on a softmax over C (labels with smoothing, or dense probabilities).
// Returns the pixel's loss; writes its gradient scaled by `mult`.
fn pixel_ce(n: u32, s: u32, base: u32, label: i32, mult: f32) -> f32 {
    let cs = params.c;
    let eps = params.label_smoothing;
    // The log-sum-exp from px_load's walk; loop 1 (dense targets): A = Σ_k w_k t'_k with
    // t' = (1-ε) t + ε/C.
    let lse = px_softmax();
    var a = 0.0;
    var wy = 0.0;
    if DENSE {
        for (var c = 0u; c < cs; c = c + 1u) {
            let t = (1.0 - eps) * target_at(base, c, label) + eps / f32(cs);
            a = a + weight_of(c) * t;
        }
    } else {
        wy = weight_of(u32(label));
    }
    // Loop 2: loss and gradient.
    var l = 0.0;
    for (var c = 0u; c < cs; c = c + 1u) {
        let e = base + c * params.s;
        let z = px_logit(base, c);
        let lp = z - lse;     // log p_c
        let p = px_softmax_p(z);
        let w = weight_of(c);
        var lg = vec2<f32>(0.0);
        if DENSE {
            let t = (1.0 - eps) * target_at(base, c, label) + eps / f32(cs);
            lg = ce_dense_term(lp, p, t, w, a);
        } else {
            let hit = f32(i32(c) == label);
            lg = ce_label_term(lp, p, hit, wy, w, eps, f32(cs), params.weight_sum);
        }
        l = l + lg.x;
        write_grad(e, mult * lg.y);
    }
    store_none(n, s, 0u, l);
    return l;
}

// Element-wise sigmoid losses: BCE (a = w·pos_weight, b = w) and balanced BCE (a = β, b = 1-β)
// share l = -(a t log σ(z) + b (1-t) log σ(-z)), dl/dz = b (1-t) σ(z) - a t σ(-z).
// The focal sigmoid form multiplies the BCE term by σ(u)^γ, u = z (1 - 2t), and an alpha factor.
// An element-wise loss's one read of element e: (logit, dense target or 0), counting the
// non-finite ones in `bad` as px_load does for the softmax losses.
fn read_element(e: u32, bad: ptr<function, vec2<u32>>) -> vec2<f32> {
    let z = logits[e];
    (*bad).x = (*bad).x + u32(is_nonfinite(z));
    var t = 0.0;
    if DENSE {
        t = bitcast<f32>(targets[e]);
        (*bad).y = (*bad).y + u32(is_nonfinite(t));
    }
    return vec2<f32>(z, t);
}

// Element-wise, so each logit (and dense target) is read here, once (`read_element`), and not
// through the pixel cache.
fn pixel_sigmoid(n: u32, s: u32, base: u32, label: i32, mult: f32, beta: f32, bad: ptr<function, vec2<u32>>) -> f32 {
    var l = 0.0;
    for (var c = 0u; c < params.c; c = c + 1u) {
        let e = base + c * params.s;
        let zt = read_element(e, bad);
        let z = zt.x;
        var t = zt.y;
        if !DENSE {
            t = target_at(base, c, label);
        }
        if c < FIRST_CHANNEL {
            write_grad(e, 0.0);
            continue;
        }
        var lg = vec2<f32>(0.0);
        if LOSS == LOSS_FOCAL {
            var af = 1.0;
            if HAS_ALPHA {
                af = focal_alpha_factor(t, params.alpha);
            }
            lg = focal_sigmoid_term(z, t, params.gamma, af * weight_of(c), !DENSE);
        } else {
            var a = beta;
            var b = 1.0 - beta;
            if LOSS == LOSS_BCE {
                b = weight_of(c);
                a = b * pos_weight_of(c);
            }
            lg = bce_term(z, t, a, b);
        }
        write_grad(e, mult * lg.y);
        store_none(n, s, c, lg.x);
        l = l + lg.x;
    }
    return l;
}

fn focal_alpha_weight(c: u32) -> f32 {
    var a = 1.0;
    if HAS_ALPHA {
        a = select(params.alpha, 1.0 - params.alpha, c == 0u);
    }
    return a * weight_of(c);
}

// Focal loss on a softmax over the kept channels [FIRST_CHANNEL, C) (MONAI slices channel 0
// off before its softmax when include_background = false).
fn pixel_focal_softmax(n: u32, s: u32, base: u32, label: i32, mult: f32) -> f32 {
    let first = FIRST_CHANNEL;
    // The log-sum-exp over the kept channels, from px_load's walk.
    let lse = px_softmax();
    if !DENSE {
        // Labels: the label's channel is the only one with a target, so its term is the loss
        // and G below: one focal term per pixel instead of one per element in each loop (the
        // powers of 1 - p are exps and logs). Same numbers as the loops below (a term with
        // t = 0 is 0). Binary labels (C = 1): channel 0 where the label is 1.
        var hot = label;
        if binary_labels() {
            hot = select(-1, 0, label == 1);
        }
        var lg = vec2<f32>(0.0);
        if hot >= i32(first) {
            let z = px_logit(base, u32(hot));
            lg = focal_softmax_term(1.0, focal_alpha_weight(u32(hot)), z - lse, px_softmax_p(z),
                params.gamma);
        }
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + c * params.s;
            if c < first {
                write_grad(e, 0.0);
                continue;
            }
            let hit = f32(i32(c) == hot);
            store_none(n, s, c, hit * lg.x);
            write_grad(e, mult * (hit * lg.y - px_softmax_p(px_logit(base, c)) * lg.y));
        }
        return lg.x;
    }
    // Dense targets. Loop 1: loss, and G = Σ_c dl_c/dlog p_c.
    var l = 0.0;
    var gsum = 0.0;
    for (var c = first; c < params.c; c = c + 1u) {
        let z = px_logit(base, c);
        let lp = z - lse;
        let p = px_softmax_p(z);
        let t = target_at(base, c, label);
        let lg = focal_softmax_term(t, focal_alpha_weight(c), lp, p, params.gamma);
        store_none(n, s, c, lg.x);
        l = l + lg.x;
        gsum = gsum + lg.y;
    }
    // Loop 2: dl/dz_j = dl_j/dlog p_j - p_j G (chain rule through log-softmax).
    for (var c = 0u; c < params.c; c = c + 1u) {
        let e = base + c * params.s;
        if c < first {
            write_grad(e, 0.0);
            continue;
        }
        let z = px_logit(base, c);
        let lp = z - lse;
        let p = px_softmax_p(z);
        let t = target_at(base, c, label);
        let g = focal_softmax_term(t, focal_alpha_weight(c), lp, p, params.gamma).y - p * gsum;
        write_grad(e, mult * g);
    }
    return l;
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let pixels = params.n * params.s;
    let threads = params.nwg * WG;
    let global_mult = loss_multiplier();
    var beta = 0.0;
    if LOSS == LOSS_BALANCED_BCE {
        beta = scratch[NORM_BETA];
    }
    var acc = 0.0;
    var bad_labels = 0u;
    var bad_logits = 0u;
    var bad_targets = 0u;
    for (var p = wid.x * WG + lane.lid; p < pixels; p = p + threads) {
        let n = p / params.s;
        let s = p - n * params.s;
        let base = n * params.c * params.s + s;
        let image_mult = image_multiplier(n);
        let mult = global_mult * image_mult;
        // The softmax losses: validity of every logit (and dense target) and the log-sum-exp
        // over the softmax's channels, in the only read of the pixel from memory (C <=
        // PIXEL_CACHE). The element-wise ones count in their own single walk.
        var bad = vec2<u32>(0u);
        if softmax_loss() {
            let first_sm = select(0u, FIRST_CHANNEL, LOSS == LOSS_FOCAL);
            bad = px_load(base, first_sm);
        }
        let label = label_of(p);
        let state = pixel_state(label);
        if state != PIX_VALID {
            // Ignored or invalid: no loss, and exactly zero gradient in every channel.
            bad_labels = bad_labels + u32(state == PIX_BAD);
            for (var c = 0u; c < params.c; c = c + 1u) {
                let e = base + c * params.s;
                if !softmax_loss() {
                    read_element(e, &bad);
                }
                write_grad(e, 0.0);
                if REDUCTION == REDUCE_NONE && ((LOSS == LOSS_CE && c == 0u) || (LOSS != LOSS_CE && c >= FIRST_CHANNEL)) {
                    store_none(n, s, c, 0.0);
                }
            }
            bad_logits = bad_logits + bad.x;
            bad_targets = bad_targets + bad.y;
            continue;
        }
        var l = 0.0;
        if LOSS == LOSS_CE {
            l = pixel_ce(n, s, base, label, mult);
        } else if LOSS == LOSS_FOCAL && FOCAL_SOFTMAX {
            l = pixel_focal_softmax(n, s, base, label, mult);
        } else {
            l = pixel_sigmoid(n, s, base, label, mult, beta, &bad);
        }
        bad_logits = bad_logits + bad.x;
        bad_targets = bad_targets + bad.y;
        acc = acc + image_mult * l;
    }
    count_bad(bad_labels, bad_logits, bad_targets);
    if REDUCTION != REDUCE_NONE {
        let total = part_sum4(vec4<f32>(acc, 0.0, 0.0, 0.0), lane).x;
        let row = loss_partials_offset() + wid.x * PARTIAL_SLOTS;
        if part_writer(lane) {
            scratch[row + part_slot(lane)] = total;
        }
        if lane.lid == 0u {
            for (var k = part_unused_from(lane); k < PARTIAL_SLOTS; k = k + 1u) {
                scratch[row + k] = 0.0;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn finalize(lane: Lane) {
    let total = sum_partials(loss_partials_offset(), params.nwg * PARTIAL_SLOTS, lane);
    if lane.lid == 0u {
        loss_out[0] = total * loss_multiplier();
    }
}
