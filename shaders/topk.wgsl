// `topk` (JunMa11/SegLoss TopKLoss): the mean of the K = max(1, floor(M·k/100)) largest
// per-pixel cross-entropies, M the valid pixels; the gradient reaches only the selected pixels.
// The K-th largest loss is found by radix select (four 8-bit MSD passes over the losses' keys,
// no sort); ties at the threshold go to the lowest pixel indices. CPU mirror: src/cpu/topk.rs.
//   ce_keys      per pixel: the cross-entropy as an ascending u32 key (0 for an ignored pixel),
//                and per-workgroup counts of valid pixels;
//   histogram    per workgroup, the 256-bin histogram of the next digit among the keys that
//                share the prefix found so far;
//   select_digit one workgroup: K (first pass), the digit of the K-th largest key, what remains
//                to take below it;
//   tie_counts   per tile, the keys equal to the threshold; tie_scan: their exclusive offsets;
//   select_grad  per tile: which pixels are selected (key above the threshold, or equal and
//                among the first `need` in pixel order), their gradient / K and loss partials;
//   finish       one workgroup: the loss.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/activation.wgsl"
#include "common/terms.wgsl"
#include "common/targets.wgsl"

override DENSE: bool = false;
override HAS_IGNORE: bool = false;
override ACT: u32 = 0u;

const TILE: u32 = WG * 4u;
const RADIX: u32 = 256u;

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
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> class_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> keys: array<u32>;
// [state (4): prefix, remaining (need), K, valid M | valid partials (nwg) |
//  histograms (RADIX · nwg) | tie counts (tiles) | loss partials (tiles)]
@group(0) @binding(5) var<storage, read_write> work: array<u32>;
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

const ST_PREFIX: u32 = 0u;
const ST_NEED: u32 = 1u;
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

// Cross-entropy of pixel p: (loss, log-sum-exp); the pixel's label must be valid.
fn pixel_ce(base: u32, label: i32) -> vec2<f32> {
    let lse = act_prepare(base);
    let lp = logits[base + u32(label) * params.s] - lse;
    return vec2<f32>(-class_weights[u32(label)] * lp, lse);
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
            key = ascending_key(pixel_ce(base, label).x);
            valid = valid + 1u;
        }
        keys[p] = key;
    }
    let total = wg_sum(f32(valid), lane);
    if lane.lid == 0u {
        work[valid_at(wid.x)] = u32(total);
    }
}

var<workgroup> hist: array<atomic<u32>, RADIX>;

@compute @workgroup_size(WG)
fn histogram(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    atomicStore(&hist[lid], 0u);
    workgroupBarrier();
    let pixels = params.n * params.s;
    let prefix = work[ST_PREFIX];
    // Bits above the digit must match the prefix found so far.
    let high = select(0u, 0xffffffffu << (params.shift + 8u), params.shift < 24u);
    for (var p = wid.x * WG + lid; p < pixels; p = p + params.nwg * WG) {
        let key = keys[p];
        if key != 0u && (key & high) == (prefix & high) {
            atomicAdd(&hist[(key >> params.shift) & 255u], 1u);
        }
    }
    workgroupBarrier();
    work[hist_at(lid, wid.x)] = atomicLoad(&hist[lid]);
}

var<workgroup> bins: array<u32, RADIX>;

@compute @workgroup_size(WG)
fn select_digit(@builtin(local_invocation_index) lid: u32) {
    if params.shift == 24u && lid == 0u {
        var m = 0u;
        for (var i = 0u; i < params.nwg; i = i + 1u) {
            m = m + work[valid_at(i)];
        }
        let k = max(1u, u32(floor(f32(m) * params.k_percent / 100.0)));
        work[ST_M] = m;
        work[ST_K] = k;
        work[ST_NEED] = k;
        work[ST_PREFIX] = 0u;
    }
    storageBarrier();
    var count = 0u;
    for (var w = 0u; w < params.nwg; w = w + 1u) {
        count = count + work[hist_at(lid, w)];
    }
    bins[lid] = count;
    workgroupBarrier();
    if lid == 0u {
        // From the largest digit down: the digit holding the `need`-th largest key.
        var need = work[ST_NEED];
        var d = RADIX - 1u;
        loop {
            if bins[d] >= need || d == 0u {
                break;
            }
            need = need - bins[d];
            d = d - 1u;
        }
        work[ST_PREFIX] = work[ST_PREFIX] | (d << params.shift);
        work[ST_NEED] = need;
    }
}

// Keys equal to the threshold, per tile (thread t holds pixels 4t..4t+3 of the tile).
@compute @workgroup_size(WG)
fn tie_counts(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    let threshold = work[ST_PREFIX];
    for (var t = wid.x; t < params.tiles; t = t + nwg.x) {
        var eq = 0.0;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let p = t * TILE + lane.lid * 4u + i;
            if p < pixels && keys[p] == threshold {
                eq = eq + 1.0;
            }
        }
        let total = wg_sum(eq, lane);
        if lane.lid == 0u {
            work[ties_at(t)] = u32(total);
        }
    }
}

@compute @workgroup_size(1)
fn tie_scan() {
    var run = 0u;
    for (var t = 0u; t < params.tiles; t = t + 1u) {
        let v = work[ties_at(t)];
        work[ties_at(t)] = run;
        run = run + v;
    }
}

var<workgroup> scan_u32: array<u32, WG>;

fn wg_exclusive_scan(v: u32, lid: u32) -> u32 {
    scan_u32[lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off * 2u) {
        var x = scan_u32[lid];
        if lid >= off {
            x = x + scan_u32[lid - off];
        }
        workgroupBarrier();
        scan_u32[lid] = x;
        workgroupBarrier();
    }
    let r = scan_u32[lid] - v;
    workgroupBarrier();
    return r;
}

fn write_grad(e: u32, g: f32) {
    let v = params.grad_scale * g;
    if params.accumulate != 0u {
        grad[e] = grad[e] + v;
    } else {
        grad[e] = v;
    }
}

@compute @workgroup_size(WG)
fn select_grad(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    let threshold = work[ST_PREFIX];
    let need = work[ST_NEED];
    let inv_k = 1.0 / f32(work[ST_K]);
    var bad_labels = 0u;
    var bad_logits = 0u;
    for (var t = wid.x; t < params.tiles; t = t + nwg.x) {
        var eq = 0u;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let p = t * TILE + lane.lid * 4u + i;
            eq = eq + u32(p < pixels && keys[p] == threshold);
        }
        var rank = work[ties_at(t)] + wg_exclusive_scan(eq, lane.lid);
        var acc = 0.0;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let p = t * TILE + lane.lid * 4u + i;
            if p >= pixels {
                continue;
            }
            let n = p / params.s;
            let base = n * params.c * params.s + (p - n * params.s);
            let key = keys[p];
            var selected = key > threshold;
            if key == threshold {
                selected = rank < need;
                rank = rank + 1u;
            }
            let label = label_of(p);
            let state = pixel_state(label);
            bad_labels = bad_labels + u32(state == PIX_BAD);
            for (var c = 0u; c < params.c; c = c + 1u) {
                bad_logits = bad_logits + u32(is_nonfinite(logits[base + c * params.s]));
            }
            if !selected || state != PIX_VALID {
                for (var c = 0u; c < params.c; c = c + 1u) {
                    write_grad(base + c * params.s, 0.0);
                }
                continue;
            }
            let ce = pixel_ce(base, label);
            acc = acc + ce.x;
            let wy = class_weights[u32(label)];
            for (var c = 0u; c < params.c; c = c + 1u) {
                let e = base + c * params.s;
                let hit = f32(i32(c) == label);
                let pc = exp(logits[e] - ce.y);
                write_grad(e, inv_k * ce_label_term(0.0, pc, hit, wy, 0.0, 0.0, 1.0, 0.0).y);
            }
        }
        let total = wg_sum(acc, lane);
        if lane.lid == 0u {
            work[loss_at(t)] = bitcast<u32>(total);
        }
    }
    if bad_labels != 0u {
        atomicAdd(&status[STATUS_BAD_LABEL], bad_labels);
    }
    if bad_logits != 0u {
        atomicAdd(&status[STATUS_NONFINITE_LOGIT], bad_logits);
    }
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
