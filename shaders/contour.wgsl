// `active-contour` (Chen et al., CVPR 2019, the authors' Keras code; LOSSES.md), on a sigmoid of
// C = 1 logits, sums over the whole batch:
//   length = w_length · Σ sqrt(d_0² + d_1² (+ d_2²) + eps), one term per base pixel b with
//            b_a < extent_a - 2 on every axis, d_a = p[b + 2·e_a] - p[b + e_a];
//   region = |Σ p (g - 1)²| + |Σ (1 - p) g²|;   loss = length + lambda_region · region.
// CPU mirror: src/cpu/contour.rs.
//   sums      per workgroup: partial sums of the length terms and of the two region sums
//             (and, under SLOPES, each term's d_a / T for the gradient);
//   combine   one workgroup: the sums in a fixed order, the loss;
//   grad      per pixel: the region derivative, and the length derivative gathered from the
//             (up to 2d) terms the pixel enters, so no two threads write the same element.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/activation.wgsl"

override DENSE: bool = false;

// Must match `ContourParams` in src/loss/contour.rs.
struct Params {
    n: u32,
    s: u32,
    nwg: u32,
    ndims: u32,
    dims: vec4<u32>,        // spatial extents, padded with 1
    lambda_region: f32,
    w_length: f32,
    eps: f32,
    grad_scale: f32,
    accumulate: u32,   // unused here (ACCUMULATE); kept for the shared layout
    ignore_index: i32,
    _pad0: u32,
    _pad1: u32,
}

// grad += ... instead of grad = ... (the caller's Outputs::accumulate): one `grad_pass` pipeline
// each, as in the other families (a per-element branch on a uniform costs lavapipe).
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss_out: array<f32>;
// [sums (4): length, R1, R2, - | partials (3 · nwg) | SLOPES: d_a / T, ndims · N · S]
@group(0) @binding(5) var<storage, read_write> work: array<f32>;
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>;

// p_i - p_j, accurate also where both are near 1: there as the difference of their complements
// σ(-z), which keep their digits (σ(z) near 1 keeps only its first ones, and the length term
// divides such differences by sqrt(d² + eps), eps = 1e-8, magnifying what they lost).
fn p_diff(i: u32, j: u32) -> f32 {
    let zi = logits[i];
    let zj = logits[j];
    if zi > 0.0 && zj > 0.0 {
        return sigmoid(-zj) - sigmoid(-zi);
    }
    return sigmoid(zi) - sigmoid(zj);
}

// σ'(z) = σ(z)·σ(-z), both factors with their digits.
fn p_slope(i: u32) -> f32 {
    let z = logits[i];
    return sigmoid(z) * sigmoid(-z);
}

// Binary target of pixel i: dense mask value, or label == 1 (labels must be 0 or 1).
fn g_at(i: u32) -> f32 {
    if DENSE {
        return bitcast<f32>(targets[i]);
    }
    return f32(bitcast<i32>(targets[i]) == 1);
}

fn label_bad(i: u32) -> bool {
    if DENSE {
        return false;
    }
    let l = bitcast<i32>(targets[i]);
    return l != 0 && l != 1;
}

// Spatial coordinates of pixel s (of one image).
fn coords(s: u32) -> vec3<u32> {
    let z = s % params.dims.z;
    let y = (s / params.dims.z) % params.dims.y;
    let x = s / (params.dims.z * params.dims.y);
    return vec3<u32>(x, y, z);
}

fn axis_stride(a: u32) -> u32 {
    if a == 0u {
        return params.dims.y * params.dims.z;
    }
    if a == 1u {
        return params.dims.z;
    }
    return 1u;
}

// Whether the pixel at coordinates c is the base of a length term: every used axis has room
// for +2.
fn is_base(c: vec3<u32>) -> bool {
    for (var a = 0u; a < params.ndims; a = a + 1u) {
        if c[a] + 2u >= params.dims[a] {
            return false;
        }
    }
    return true;
}

// k steps back along axis a from coordinates c (c[a] >= k).
fn back(c: vec3<u32>, a: u32, k: u32) -> vec3<u32> {
    var b = c;
    b[a] = c[a] - k;
    return b;
}

// The differences (d_0, d_1, d_2) of the term based at pixel b of image n (0 on unused axes).
fn term_diffs(n: u32, b: u32) -> vec3<f32> {
    let base = n * params.s + b;
    var d = vec3<f32>(0.0);
    for (var a = 0u; a < params.ndims; a = a + 1u) {
        let st = axis_stride(a);
        d[a] = p_diff(base + 2u * st, base + st);
    }
    return d;
}

// SLOPES (set by the host under the software tuning): `sums` keeps d_a / T of every term, and
// the gradient pass reads those 2·ndims values per pixel instead of recomputing the up to 2·ndims
// terms the pixel enters (2·ndims² probability differences, each two sigmoids, and a square root
// each). On lavapipe that took the loss from 22-23 to 16 ms (8×1×128×256), 65 to 38-40 (2×1×64³).
// A GPU recomputes: it reads the neighbours from its caches, and the slopes would add a write
// and a read of ndims floats per pixel to its memory traffic.
override SLOPES: bool = false;

// Where `sums` keeps d_a / T of the term based at pixel i (of the batch) under SLOPES.
fn slope_at(i: u32, a: u32) -> u32 {
    return 4u + 3u * params.nwg + a * params.n * params.s + i;
}

// d_a / T of the term based at pixel b of image n.
fn slope(n: u32, b: u32, a: u32) -> f32 {
    if SLOPES {
        return work[slope_at(n * params.s + b, a)];
    }
    let d = term_diffs(n, b);
    return d[a] / term_length(d);
}

fn term_length(d: vec3<f32>) -> f32 {
    return sqrt(dot(d, d) + params.eps);
}

@compute @workgroup_size(WG)
fn sums(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let total = params.n * params.s;
    var acc = vec4<f32>(0.0);
    var bad = 0u;
    for (var i = wid.x * WG + lane.lid; i < total; i = i + params.nwg * WG) {
        bad = bad + u32(label_bad(i));
        let n = i / params.s;
        let s = i - n * params.s;
        let z = logits[i];
        let g = g_at(i);
        acc.y = acc.y + sigmoid(z) * (g - 1.0) * (g - 1.0);
        // 1 - p as σ(-z), which keeps its digits where p is near 1.
        acc.z = acc.z + sigmoid(-z) * g * g;
        if is_base(coords(s)) {
            let d = term_diffs(n, s);
            let t = term_length(d);
            acc.x = acc.x + t;
            if SLOPES {
                for (var a = 0u; a < params.ndims; a = a + 1u) {
                    work[slope_at(i, a)] = d[a] / t;
                }
            }
        }
    }
    if bad != 0u {
        atomicAdd(&status[STATUS_BAD_LABEL], bad);
    }
    let t = wg_sum4(acc, lane);
    if lane.lid == 0u {
        work[4u + wid.x] = t.x;
        work[4u + params.nwg + wid.x] = t.y;
        work[4u + 2u * params.nwg + wid.x] = t.z;
    }
}

@compute @workgroup_size(WG)
fn combine(lane: Lane) {
    var acc = vec4<f32>(0.0);
    for (var i = lane.lid; i < params.nwg; i = i + WG) {
        acc = acc + vec4<f32>(work[4u + i], work[4u + params.nwg + i], work[4u + 2u * params.nwg + i], 0.0);
    }
    let t = wg_sum4(acc, lane);
    if lane.lid == 0u {
        work[0] = t.x;
        work[1] = t.y;
        work[2] = t.z;
        loss_out[0] = params.w_length * t.x + params.lambda_region * (abs(t.y) + abs(t.z));
    }
}

// d(length)/dp at pixel s of image n: the pixel is base + e_a of the term based one step back
// along a (derivative -d_a/T), and base + 2·e_a of the term based two steps back (+d_a/T).
// The pixel's coordinates are taken once and stepped back, not taken again from each base's
// index: integer divisions, which a CPU driver does lane by lane (lavapipe: 21 per pixel in 2D
// were most of this pass).
fn length_grad(n: u32, s: u32) -> f32 {
    let c = coords(s);
    var gsum = 0.0;
    for (var a = 0u; a < params.ndims; a = a + 1u) {
        let st = axis_stride(a);
        if c[a] >= 1u && is_base(back(c, a, 1u)) {
            gsum = gsum - slope(n, s - st, a);
        }
        if c[a] >= 2u && is_base(back(c, a, 2u)) {
            gsum = gsum + slope(n, s - 2u * st, a);
        }
    }
    return gsum;
}

@compute @workgroup_size(WG)
fn grad_pass(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.n * params.s;
    // |R| has derivative sign(R) (0 at 0, as torch's abs).
    let s1 = sign(work[1]);
    let s2 = sign(work[2]);
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        let n = i / params.s;
        let s = i - n * params.s;
        let g = g_at(i);
        let dregion = s1 * (g - 1.0) * (g - 1.0) - s2 * g * g;
        let dp = params.w_length * length_grad(n, s) + params.lambda_region * dregion;
        let v = params.grad_scale * dp * p_slope(i);
        if ACCUMULATE {
            grad[i] = grad[i] + v;
        } else {
            grad[i] = v;
        }
    }
}
