// `topk` (JunMa11/SegLoss TopKLoss): the mean of the K = max(1, floor(M·k/100)) largest
// per-pixel cross-entropies, M the valid pixels; the gradient reaches only the selected pixels.
// The K-th largest loss is found by radix select (common/select.wgsl: four 8-bit MSD passes over
// the losses' keys, no sort); ties at the threshold go to the lowest pixel indices.
// CPU mirror: src/cpu/topk.rs.
//   ce_keys      per pixel: the cross-entropy as an ascending u32 key (0 for an ignored pixel),
//                and per-workgroup counts of valid pixels;
//   select_*     the radix select (K comes from the valid counts: `select_start`);
//   select_grad  per tile: the selected pixels' gradient / K and loss partials;
//   finish       one workgroup: the loss.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/activation.wgsl"
#include "common/terms.wgsl"
#include "common/targets.wgsl"
#include "common/scan.wgsl"
#include "common/select.wgsl"
#include "common/status.wgsl"

override DENSE: bool = false;
override HAS_IGNORE: bool = false;
override ACT: u32 = 0u;


// Must match `TopkParams` in src/loss/topk.rs.
struct Params {
    n: u32,
    c: u32,
    s: u32,
    nwg: u32,           // workgroups of ce_keys and histogram
    tiles: u32,
    shift: u32,         // histogram / select_digit: the digit is (key >> shift) & 255
    ignore_index: i32,
    k_percent: f32,
    grad_scale: f32,
    accumulate: u32,   // unused here (ACCUMULATE); kept for the shared layout
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> class_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> keys: array<u32>;
// [state (4): threshold prefix, remaining (need), K, valid M | valid partials (nwg) |
//  histograms (RADIX · nwg) | tie counts (tiles) | loss partials (tiles)]
@group(0) @binding(5) var<storage, read_write> work: array<u32>;
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

// State words 0 and 1 are the select's (SEL_PREFIX, SEL_NEED).
const ST_K: u32 = 2u;
const ST_M: u32 = 3u;

fn valid_at(i: u32) -> u32 {
    return 4u + i;
}
fn hist_at(bin: u32, wg: u32) -> u32 {
    return 4u + params.nwg + bin * params.nwg + wg;
}
fn ties_at(t: u32) -> u32 {
    return 4u + params.nwg + RADIX * params.nwg + t;
}
fn loss_at(t: u32) -> u32 {
    return 4u + params.nwg + RADIX * params.nwg + params.tiles + t;
}

// The ascending u32 key of an f32 (`f32_ascending_key` in src/sort.rs).
fn ascending_key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Cross-entropy of a pixel whose label is valid, from its label's logit z_y and its log-sum-exp.
fn label_ce(z_y: f32, lse: f32, label: i32) -> f32 {
    return -class_weights[u32(label)] * (z_y - lse);
}

@compute @workgroup_size(WG)
fn ce_keys(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let pixels = params.n * params.s;
    var valid = 0u;
    for (var p = wid.x * WG + lane.lid; p < pixels; p = p + params.nwg * WG) {
        let n = p / params.s;
        let base = n * params.c * params.s + (p - n * params.s);
        let label = label_of(p);
        var key = 0u;
        if pixel_state(label) == PIX_VALID {
            key = ascending_key(label_ce(logits[base + u32(label) * params.s], act_prepare(base), label));
            valid = valid + 1u;
        }
        keys[p] = key;
    }
    let total = wg_sum(f32(valid), lane);
    if lane.lid == 0u {
        work[valid_at(wid.x)] = u32(total);
    }
}

// Radix select over the losses' keys (common/select.wgsl).
fn select_len() -> u32 {
    return params.n * params.s;
}
fn select_key(i: u32) -> u32 {
    return keys[i];
}
// Ignored pixels carry key 0, below every loss.
fn select_eligible(key: u32) -> bool {
    return key != 0u;
}
fn select_nwg() -> u32 {
    return params.nwg;
}
fn select_tiles() -> u32 {
    return params.tiles;
}
fn select_shift() -> u32 {
    return params.shift;
}
fn sel_state(i: u32) -> u32 {
    return i;
}
fn sel_hist(bin: u32, wg: u32) -> u32 {
    return hist_at(bin, wg);
}
fn sel_tie(t: u32) -> u32 {
    return ties_at(t);
}
// K = max(1, floor(M·k/100)) from the valid counts of ce_keys.
fn select_start() {
    var m = 0u;
    for (var i = 0u; i < params.nwg; i = i + 1u) {
        m = m + work[valid_at(i)];
    }
    let k = max(1u, u32(floor(f32(m) * params.k_percent / 100.0)));
    work[ST_M] = m;
    work[ST_K] = k;
    work[SEL_NEED] = k;
}

// grad += ... instead of grad = ...: one `select_grad` pipeline each, as in the other families
// (a per-element branch on a uniform costs lavapipe).
override ACCUMULATE: bool = false;

fn write_grad(e: u32, g: f32) {
    let v = params.grad_scale * g;
    if ACCUMULATE {
        grad[e] = grad[e] + v;
    } else {
        grad[e] = v;
    }
}

@compute @workgroup_size(WG)
fn select_grad(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    let inv_k = 1.0 / f32(work[ST_K]);
    var bad_labels = 0u;
    var bad_logits = 0u;
    for (var t = wid.x; t < params.tiles; t = t + nwg.x) {
        var rank = select_first_rank(t, lane.lid);
        var acc = 0.0;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let p = t * SELECT_TILE + lane.lid * 4u + i;
            if p >= pixels {
                continue;
            }
            let n = p / params.s;
            let base = n * params.c * params.s + (p - n * params.s);
            let selected = select_taken(p, &rank);
            let label = label_of(p);
            let state = pixel_state(label);
            bad_labels = bad_labels + u32(state == PIX_BAD);
            // The pixel's one read from memory: non-finite count, log-sum-exp, and (on a
            // software adapter) its channels kept for the gradient's walk.
            bad_logits = bad_logits + px_load(base, 0u).x;
            if !selected || state != PIX_VALID {
                for (var c = 0u; c < params.c; c = c + 1u) {
                    write_grad(base + c * params.s, 0.0);
                }
                continue;
            }
            acc = acc + label_ce(px_logit(base, u32(label)), px_softmax(), label);
            let wy = class_weights[u32(label)];
            for (var c = 0u; c < params.c; c = c + 1u) {
                let e = base + c * params.s;
                let hit = f32(i32(c) == label);
                let pc = px_softmax_p(px_logit(base, c));
                write_grad(e, inv_k * ce_label_term(0.0, pc, hit, wy, 0.0, 0.0, 1.0, 0.0).y);
            }
        }
        let total = wg_sum(acc, lane);
        if lane.lid == 0u {
            work[loss_at(t)] = bitcast<u32>(total);
        }
    }
    count_bad(bad_labels, bad_logits, 0u);
}

@compute @workgroup_size(WG)
fn finish(lane: Lane) {
    var acc = 0.0;
    for (var t = lane.lid; t < params.tiles; t = t + WG) {
        acc = acc + bitcast<f32>(work[loss_at(t)]);
    }
    let total = wg_sum(acc, lane);
    if lane.lid == 0u {
        loss_out[0] = total / f32(work[ST_K]);
    }
}
