// Lovász losses (Berman 2018): `lovasz-softmax` and `lovasz-hinge`, on the GPU end to end.
// CPU mirror: src/cpu/lovasz.rs.
//
// A segment is one class (or one (image, class) pair with PER_IMAGE) for the softmax form, the
// batch (or one image) for the hinge form; every segment has M elements, one per pixel, and the
// T = segments·M elements are exactly the logits' elements.
//   errors        per pixel: the activation and each element's error, as a (descending f32 key,
//                 tagged element index) pair at its segment's slots (see `tag`); ignored pixels
//                 get the largest key, so they sort last and never enter the cumulative sums of
//                 a valid element;
//   (segmented stable radix sort, shaders/sort.wgsl: each segment by descending error, ties by
//    element index)
//   segscan_reduce, segscan_totals   the first passes of the segmented scan of the sorted
//                 foreground flags (common/segscan.wgsl): each tile's offset and each segment's
//                 foreground count;
//   lovasz_grad   tile by tile, the rest of that scan (the cumulative foreground at every sorted
//                 position, never stored), the Lovász gradient of the Jaccard index times the
//                 error (per-tile partial losses), and the gradient scattered back to its element;
// The passes after the sort read the sorted pairs in order: the error is its key and the
// foreground and validity flags ride in the value, so nothing is gathered by element index
// except the one scatter of the gradient (a gather per element costs as much as the sort's
// passes on a CPU driver).
//   finalize      one workgroup: segment losses in a fixed order, their averaging weights;
//   backprop      per pixel: dL/d(error) → dL/dz through the activation.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/activation.wgsl"
#include "common/targets.wgsl"
#include "common/segscan.wgsl"
#include "common/status.wgsl"

override DENSE: bool = false;
override HAS_IGNORE: bool = false;
override ACT: u32 = 0u;
// The hinge form: C = 1, errors 1 - z·(2g - 1) on the logits, relu before the dot product.
override HINGE: bool = false;
override PER_IMAGE: bool = false;
// classes = all: every segment counts in the mean, not only those with foreground.
override ALL_CLASSES: bool = false;


// Must match `LovaszParams` in src/loss/lovasz.rs.
struct Params {
    n: u32,
    c: u32,
    s: u32,
    segs: u32,          // segments
    m: u32,             // elements per segment
    tps: u32,           // tiles per segment
    ignore_index: i32,
    grad_scale: f32,
    accumulate: u32,   // unused here (ACCUMULATE); kept for the shared layout
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys: array<u32>;
@group(0) @binding(4) var<storage, read_write> values: array<u32>;
// [dL/d error per element (T) | tile foreground (tiles) | tile loss (tiles) |
//  segment foreground (segs) | segment weight (segs)]
@group(0) @binding(5) var<storage, read_write> work: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

fn total() -> u32 {
    return params.segs * params.m;
}
fn tiles() -> u32 {
    return params.segs * params.tps;
}
fn egrad_at(e: u32) -> u32 {
    return e;
}
fn tile_fg_at(t: u32) -> u32 {
    return total() + t;
}
fn tile_loss_at(t: u32) -> u32 {
    return total() + tiles() + t;
}
fn gts_at(g: u32) -> u32 {
    return total() + 2u * tiles() + g;
}
fn segw_at(g: u32) -> u32 {
    return total() + 2u * tiles() + params.segs + g;
}

// The sorted value: the element index (< 2^30: the host checks) with the element's foreground
// in bit 31 and its pixel's validity in bit 30.
const TAG_FG: u32 = 0x80000000u;
const TAG_VALID: u32 = 0x40000000u;

fn tag(e: u32, fg: f32, valid: bool) -> u32 {
    return e | select(0u, TAG_FG, fg > 0.5) | select(0u, TAG_VALID, valid);
}

fn untag(v: u32) -> u32 {
    return v & (TAG_VALID - 1u);
}

// (foreground, valid) of a tagged value. A dense mask may be soft (the CPU reference, like smp,
// sums it as it is), so its foreground is read back rather than carried as a bit.
fn tag_flags(v: u32) -> vec2<f32> {
    var fg = f32((v & TAG_FG) != 0u);
    if DENSE {
        fg = bitcast<f32>(targets[untag(v)]);
    }
    return vec2<f32>(fg, f32((v & TAG_VALID) != 0u));
}

// The u32 key that sorts f32 descending (and back): `f32_descending_key` in src/sort.rs.
fn descending_key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return ~select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_descending_key(k: u32) -> f32 {
    let a = ~k;
    return bitcast<f32>(select(~a, a & 0x7fffffffu, (a & 0x80000000u) != 0u));
}

// The segment of class c of image n, and the position of its pixel s in it.
fn segment_of(n: u32, c: u32) -> u32 {
    if PER_IMAGE {
        return select(n * params.c + c, n, HINGE);
    }
    return select(c, 0u, HINGE);
}

fn position_of(n: u32, s: u32) -> u32 {
    if PER_IMAGE {
        return s;
    }
    return n * params.s + s;
}

fn error_of(z: f32, p: f32, g: f32) -> f32 {
    if HINGE {
        return 1.0 - z * (2.0 * g - 1.0);
    }
    return abs(g - p);
}

@compute @workgroup_size(WG)
fn errors(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    for (var p = gid.x; p < pixels; p = p + nwg.x * WG) {
        let n = p / params.s;
        let s = p - n * params.s;
        let base = n * params.c * params.s + s;
        let label = label_of(p);
        let valid = pixel_state(label) == PIX_VALID;
        px_load(base, 0u);
        let lse = px_prepare(base);
        let pos = position_of(n, s);
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + c * params.s;
            let slot = segment_of(n, c) * params.m + pos;
            var key = 0xffffffffu;
            var fg = 0.0;
            if valid {
                fg = px_target(base, c, label);
                key = descending_key(error_of(px_logit(base, c), px_prob(base, c, lse), fg));
            }
            keys[slot] = key;
            values[slot] = tag(e, fg, valid);
        }
    }
}

// The segmented scan of the foreground flags in sorted order (common/segscan.wgsl).
fn segscan_segments() -> u32 {
    return params.segs;
}
fn segscan_len() -> u32 {
    return params.m;
}
fn segscan_in(j: u32) -> f32 {
    return tag_flags(values[j]).x;
}
fn segscan_tile_get(t: u32) -> f32 {
    return work[tile_fg_at(t)];
}
fn segscan_tile_set(t: u32, v: f32) {
    work[tile_fg_at(t)] = v;
}
fn segscan_total_set(g: u32, v: f32) {
    work[gts_at(g)] = v;
}

// The Lovász gradient at sorted position i: J_i - J_(i-1), J_i = 1 - I_i/U_i the Jaccard loss
// after the first i + 1 elements, cs of them foreground, the last one with foreground f, and
// J_(-1) = 0. In closed form (I_(i-1) = I_i + f, U_(i-1) = U_i - 1 + f):
//   (f·U_i + I_i·(1 - f)) / (U_i·(U_i - 1 + f)), and 1/U_0 at i = 0,
// so no two nearly equal f32 are subtracted: J_i - J_(i-1) is about 1/U, and in f32 the
// difference itself lost most of its digits for segments of millions of elements.
// `jaccard_step` in src/cpu/lovasz.rs.
fn jaccard_step(gts: f32, cs: f32, i: u32, f: f32) -> f32 {
    let inter = gts - cs;
    let uni = gts + f32(i + 1u) - cs;
    if i == 0u {
        return 1.0 / uni;
    }
    return (f * uni + inter * (1.0 - f)) / (uni * (uni - 1.0 + f));
}

@compute @workgroup_size(WG)
fn lovasz_grad(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = wid.x; t < tiles(); t = t + nwg.x) {
        let tile = segscan_tile(t);
        let g = tile.x;
        let first = tile.y + lane_rank(lane) * SCAN_ITEMS;
        let end = min(first + SCAN_ITEMS, params.m);
        let base = g * params.m;
        // This thread's sorted values, read once, and their foreground for the tile's scan
        // (fixed-count loops, so that the arrays can live in registers).
        var v: array<u32, SCAN_ITEMS>;
        var fg: array<f32, SCAN_ITEMS>;
        var own = 0.0;
        for (var i = 0u; i < SCAN_ITEMS; i = i + 1u) {
            if first + i < end {
                v[i] = values[base + first + i];
                fg[i] = tag_flags(v[i]).x;
                own = own + fg[i];
            }
        }
        let gts = work[gts_at(g)];
        var cs = segscan_prefix(t, own, lane);   // foreground before this thread's first
        var acc = 0.0;
        for (var i = 0u; i < SCAN_ITEMS; i = i + 1u) {
            let local = first + i;
            if local >= end {
                break;
            }
            let valid = (v[i] & TAG_VALID) != 0u;
            cs = cs + fg[i];
            var gr = jaccard_step(gts, cs, local, fg[i]);
            // Ignored elements carry the largest key (not an error): no loss, no gradient.
            var err = select(0.0, from_descending_key(keys[base + local]), valid);
            if HINGE {
                err = max(err, 0.0); // relu; its gradient is 0 where the error is not positive
                gr = select(0.0, gr, err > 0.0);
            }
            gr = select(0.0, gr, valid);
            acc = acc + err * gr;
            work[egrad_at(untag(v[i]))] = gr;
        }
        let total_loss = wg_sum(acc, lane);
        if lane.lid == 0u {
            work[tile_loss_at(t)] = total_loss;
        }
    }
}

// Averaging weight of each segment. Softmax: the mean over the counted classes (with foreground,
// or all with ALL_CLASSES), per image with PER_IMAGE and then the mean over the images; an empty
// mean is 0. Hinge: the mean over the images with PER_IMAGE (an image without valid pixels
// counts as 0), one segment otherwise.
@compute @workgroup_size(WG)
fn finalize(lane: Lane) {
    var acc = 0.0;
    // One thread per group of segments that share a mean (an image, or the whole batch).
    let groups = select(1u, params.n, PER_IMAGE);
    let per_group = params.segs / groups;
    for (var grp = lane.lid; grp < groups; grp = grp + WG) {
        var counted = 0.0;
        for (var k = 0u; k < per_group; k = k + 1u) {
            let g = grp * per_group + k;
            counted = counted + f32(HINGE || ALL_CLASSES || work[gts_at(g)] > 0.0);
        }
        for (var k = 0u; k < per_group; k = k + 1u) {
            let g = grp * per_group + k;
            let counts = HINGE || ALL_CLASSES || work[gts_at(g)] > 0.0;
            var w = select(0.0, 1.0 / (counted * f32(groups)), counts && counted > 0.0);
            var lg = 0.0;
            for (var t = 0u; t < params.tps; t = t + 1u) {
                lg = lg + work[tile_loss_at(g * params.tps + t)];
            }
            work[segw_at(g)] = w;
            acc = acc + w * lg;
        }
    }
    let loss = wg_sum(acc, lane);
    if lane.lid == 0u {
        loss_out[0] = loss;
    }
}

// grad += ... instead of grad = ... (the caller's Outputs::accumulate): one `backprop` pipeline
// each, as in pixel.wgsl and region.wgsl (a per-element branch on a uniform costs lavapipe).
override ACCUMULATE: bool = false;

fn write_grad(e: u32, g: f32) {
    let v = params.grad_scale * g;
    if ACCUMULATE {
        grad[e] = grad[e] + v;
    } else {
        grad[e] = v;
    }
}

// dL/dp_c of the pixel's channels, kept between the softmax's two loops (C <= PIXEL_CACHE).
var<private> dl_dp_cache: array<f32, PIXEL_CACHE>;
// The averaging weights of image `segw_image`'s segments by channel (C <= PIXEL_CACHE): read
// once per image a thread visits instead of once per element (a gather on a CPU driver).
var<private> segw_cache: array<f32, PIXEL_CACHE>;
var<private> segw_image: u32 = 0xffffffffu;

fn load_segment_weights(n: u32) {
    if px_cached() && n != segw_image {
        segw_image = n;
        for (var c = 0u; c < params.c; c = c + 1u) {
            segw_cache[c] = work[segw_at(segment_of(n, c))];
        }
    }
}

@compute @workgroup_size(WG)
fn backprop(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    var bad_labels = 0u;
    var bad_logits = 0u;
    for (var p = gid.x; p < pixels; p = p + nwg.x * WG) {
        let n = p / params.s;
        let s = p - n * params.s;
        let base = n * params.c * params.s + s;
        bad_logits = bad_logits + px_load(base, 0u).x;
        let label = label_of(p);
        let state = pixel_state(label);
        if state != PIX_VALID {
            bad_labels = bad_labels + u32(state == PIX_BAD);
            for (var c = 0u; c < params.c; c = c + 1u) {
                write_grad(base + c * params.s, 0.0);
            }
            continue;
        }
        let lse = px_prepare(base);
        load_segment_weights(n);
        // dL/dp_c = w_seg · dL/de · de/dp with e = |g - p| (de/dp = sign(p - g));
        // hinge: dL/dz = w_seg · dL/de · (-(2g - 1)).
        var dot = 0.0;
        if ACT == ACT_SOFTMAX && !HINGE {
            for (var c = 0u; c < params.c; c = c + 1u) {
                let pc = px_prob(base, c, lse);
                let d = element_dl_dp(n, c, base + c * params.s, pc, px_target(base, c, label));
                if px_cached() {
                    dl_dp_cache[c] = d;
                }
                dot = dot + pc * d;
            }
        }
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + c * params.s;
            let t = px_target(base, c, label);
            if HINGE {
                write_grad(e, -element_weight(n, c, e) * (2.0 * t - 1.0));
                continue;
            }
            let pc = px_prob(base, c, lse);
            var d = 0.0;
            if ACT == ACT_SOFTMAX && px_cached() {
                d = dl_dp_cache[c];
            } else {
                d = element_dl_dp(n, c, e, pc, t);
            }
            var gz = d;
            if ACT == ACT_SOFTMAX {
                gz = pc * (d - dot);
            } else if ACT == ACT_SIGMOID {
                gz = d * pc * (1.0 - pc);
            }
            write_grad(e, gz);
        }
    }
    count_bad(bad_labels, bad_logits, 0u);
}

// w_seg · dL/de of element e (class c of image n).
fn element_weight(n: u32, c: u32, e: u32) -> f32 {
    var w = 0.0;
    if px_cached() {
        w = segw_cache[c];
    } else {
        w = work[segw_at(segment_of(n, c))];
    }
    return w * work[egrad_at(e)];
}

fn element_dl_dp(n: u32, c: u32, e: u32, p: f32, g: f32) -> f32 {
    return element_weight(n, c, e) * sign(p - g);
}
