// MONAI's soft skeleton (soft_erode, soft_dilate, soft_skel) of V = N·C' volumes at once,
// forward and backward, for `cldice` and `dice-cldice`. CPU mirror: src/cpu/skeleton.rs.
//
// Forward, for j = 0..=iter, with img_0 the probabilities and img_{j+1} = E_j:
//   E_j = erode(img_j)       min of the 3-tap min-pools along each axis;
//   O_j = dilate(E_j)        3^d max-pool (never stored: recomputed where needed);
//   delta_j = relu(img_j - O_j);  skel_0 = delta_0,  skel_j = skel_{j-1} + relu(delta_j (1 - skel_{j-1})).
// Stored: img_0 and E_0..E_iter ("stack", iter + 2 volumes) and skel_0..skel_iter. The
// backward routes every gradient through the min/max each pool took, exactly as torch does:
// max-pool ties go to the first index of the window, min(a, b) ties split the gradient in halves.
// Scatter-free: each element gathers what its neighbours send it, so no two threads write one
// address and the result is deterministic.
//   seed         volume 0 of the stack: the activation (prediction) or the target;
//   erode        stack[j + 1] = erode(stack[j]);
//   skel_step    skel_j from stack[j] (img_j) and stack[j + 1] (E_j);
//   stats        per image: Σ skel_pred·g, Σ skel_pred, Σ skel_true·p, Σ skel_true (partials);
//   finalize     one workgroup: the clDice loss per image, its coefficients;
//   bw_start     G_skel = dL/dskel_iter; G_img (for img_{iter+1}) = 0;
//   bw_skel      per element at step j: G_delta → G_O (whose negative is G_img_j's own term), and
//                G_skel ← step j-1; keeps where O_j took its maximum and E_j its minima;
//   bw_dilate    G_E = G_img_{j+1} + the dilate gradient gathered from G_O by those maxima;
//   bw_erode     G_img_j = -G_O + the erode gradient gathered from G_E by those minima;
//   backprop     dL/dz: the skeleton path, clDice's direct tsens term and the activation.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/activation.wgsl"
#include "common/targets.wgsl"

override DENSE: bool = false;
override HAS_IGNORE: bool = false;
override ACT: u32 = 0u;
// Spatial dimensions (1 to 3), a constant so that the per-axis loops unroll.
override NDIMS: u32 = 2u;
override FIRST_CHANNEL: u32 = 0u;
// seed: the target instead of the prediction.
override SEED_TARGET: bool = false;
// reduction none: one loss per image.
override REDUCE_NONE: bool = false;
// dice-cldice: loss_out[0] already holds the Dice loss, weighted by params.dice_weight here.
override ADD_LOSS: bool = false;

// Must match `SkeletonParams` in src/loss/skeleton.rs.
struct Params {
    n: u32,
    c: u32,
    s: u32,
    kept: u32,              // C'
    dims: vec4<u32>,        // spatial extents, padded with 1
    _pad0: u32,             // (the dimension count is the override NDIMS)
    step: u32,              // the iteration j of erode / skel_step / bw_*
    iter: u32,
    nwg: u32,               // stats workgroups (per image: wx; grid wx × n)
    smooth_nr: f32,
    smooth_dr: f32,
    smooth_h: f32,           // MONAI's `smooth`, in the harmonic mean
    grad_scale: f32,
    accumulate: u32,   // unused here (ACCUMULATE); kept for the shared layout
    ignore_index: i32,
    scale: f32,             // weight of clDice (alpha for dice-cldice) times the reduction scale
    dice_weight: f32,       // dice-cldice: 1 - alpha
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
// [img_0, E_0, ..., E_iter] (iter + 2 volumes of V·S)
@group(0) @binding(3) var<storage, read_write> stack: array<f32>;
// [skel_0 .. skel_iter, the target's final skeleton] (iter + 2 volumes of V·S); in the backward,
// step j's bw_skel overwrites skel_j (dead by then) with the pixel index of each O_j maximum.
@group(0) @binding(4) var<storage, read_write> skel: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;
// [G_skel | G_img_next | erode codes | G_O | G_E] (5 · V·S) | stats partials (4 · n · nwg) |
// per image (tprec coefficient A, B, tsens coefficient, loss) (4 · n)
@group(0) @binding(6) var<storage, read_write> work: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad: array<f32>;
@group(0) @binding(8) var<storage, read_write> loss_out: array<f32>;

fn vs() -> u32 {
    return params.n * params.kept * params.s;
}

fn tskel_at(i: u32) -> u32 {
    return at(params.iter + 1u, i);
}
fn at(volume: u32, i: u32) -> u32 {
    return volume * vs() + i;
}
fn g_skel(i: u32) -> u32 { return i; }
fn g_next(i: u32) -> u32 { return vs() + i; }
fn e_code(i: u32) -> u32 { return 2u * vs() + i; }
fn g_o(i: u32) -> u32 { return 3u * vs() + i; }
fn g_e(i: u32) -> u32 { return 4u * vs() + i; }
fn partial_at(k: u32, n: u32, x: u32) -> u32 {
    return 5u * vs() + (k * params.n + n) * params.nwg + x;
}
fn coef_at(n: u32, k: u32) -> u32 {
    return 5u * vs() + 4u * params.n * params.nwg + 4u * n + k;
}

fn inside(q: vec3<i32>) -> bool {
    return all(q >= vec3<i32>(0)) && all(q < vec3<i32>(params.dims.xyz));
}

fn index_of(q: vec3<i32>) -> u32 {
    return u32((q.x * i32(params.dims.y) + q.y) * i32(params.dims.z) + q.z);
}

fn unit(a: u32) -> vec3<i32> {
    return vec3<i32>(i32(a == 0u), i32(a == 1u), i32(a == 2u));
}

// ---------------------------------------------------------------------------------------------
// Pools, on a sliding window
//
// Every kernel that reads a pixel's 3^d neighbourhood (erode, skel_step and the three bw_*)
// gives each thread a run of up to RUN pixels along axis 0 and keeps the neighbourhood of one
// volume (of the stack, the skeletons or `work`) in private memory: each step shifts the window
// by one plane and loads the new plane (3^(d-1) values) instead of the whole neighbourhood.
// Neighbouring threads hold neighbouring pixels of a plane, so their loads are contiguous.
// Outside the volume the window holds `fill`: +INF for an erode (never a first minimum), -INF
// for a dilate (never a first maximum), as the pools skip those pixels; the bw_* kernels say
// theirs.

const RUN: u32 = 16u;           // pixels per thread along axis 0 (RUN in src/loss/skeleton.rs)
const WIN: u32 = 27u;           // window slots, (dx + 1)·9 + (dy + 1)·3 + dz + 1
const WIN_INF: f32 = 3.4e38;
var<private> win_a: array<f32, WIN>;
var<private> win_b: array<f32, WIN>;

// The window's half-width per axis: 1 along the NDIMS spatial axes, 0 past them. Built by
// assignment: naga rejects the one-expression vec3 of selects once NDIMS is substituted.
fn window_radius() -> vec3<i32> {
    var r = vec3<i32>(1, 0, 0);
    r.y = select(0, 1, NDIMS > 1u);
    r.z = select(0, 1, NDIMS > 2u);
    return r;
}

fn slot(d: vec3<i32>) -> u32 {
    return u32((d.x + 1) * 9 + (d.y + 1) * 3 + d.z + 1);
}

// Element offset of a step d from a pixel.
fn offset_of(d: vec3<i32>) -> i32 {
    return (d.x * i32(params.dims.y) + d.y) * i32(params.dims.z) + d.z;
}

// A run: the volume's first element, the run's first pixel and its length.
struct Run {
    base: u32,
    c: vec3<i32>,
    len: u32,
}

// Runs per volume: the pixels of a plane (axis 0 fixed) times the chunks of RUN along axis 0.
fn runs_per_volume() -> u32 {
    return (params.s / params.dims.x) * ((params.dims.x + RUN - 1u) / RUN);
}

// Runs over all V volumes: the grid-stride bound of the pooling kernels.
fn run_count() -> u32 {
    return params.n * params.kept * runs_per_volume();
}

// Pixel k of a run.
fn run_pixel(run: Run, k: u32) -> vec3<i32> {
    return run.c + vec3<i32>(i32(k), 0, 0);
}

fn run_of(t: u32) -> Run {
    let plane = params.s / params.dims.x;
    let v = t / runs_per_volume();
    let k = t - v * runs_per_volume();
    let chunk = k / plane;
    let rest = k - chunk * plane;  // the pixel within the plane: neighbouring threads, neighbouring pixels
    var r: Run;
    r.base = v * params.s;
    r.c = vec3<i32>(i32(chunk * RUN), i32(rest / params.dims.z), i32(rest % params.dims.z));
    r.len = min(RUN, params.dims.x - chunk * RUN);
    return r;
}

// Where a window reads: a stack volume, a skel volume or a region of `work`.
const SRC_STACK: u32 = 0u;
const SRC_SKEL: u32 = 1u;
const SRC_WORK: u32 = 2u;

fn source_at(src: u32, e: u32) -> f32 {
    if src == SRC_SKEL {
        return skel[e];
    }
    if src == SRC_WORK {
        return work[e];
    }
    return stack[e];
}

// Loads plane dx of the window around pixel c of the volume whose pixel 0 is element `first`
// of `src`.
fn load_plane(w: ptr<private, array<f32, WIN>>, src: u32, first: u32, c: vec3<i32>, dx: i32, fill: f32) {
    let r = window_radius();
    for (var dy = -r.y; dy <= r.y; dy = dy + 1) {
        for (var dz = -r.z; dz <= r.z; dz = dz + 1) {
            let d = vec3<i32>(dx, dy, dz);
            let q = c + d;
            var v = fill;
            if inside(q) {
                v = source_at(src, first + index_of(q));
            }
            (*w)[slot(d)] = v;
        }
    }
}

// Before a run's first pixel c: its planes -1 and 0, in the slots the first `window_step` shifts
// them out of.
fn window_start(w: ptr<private, array<f32, WIN>>, src: u32, first: u32, c: vec3<i32>, fill: f32) {
    load_plane(w, src, first, c - vec3<i32>(1, 0, 0), 0, fill);
    load_plane(w, src, first, c - vec3<i32>(1, 0, 0), 1, fill);
}

// The window around pixel c, from the one around the pixel before it along axis 0.
fn window_step(w: ptr<private, array<f32, WIN>>, src: u32, first: u32, c: vec3<i32>, fill: f32) {
    for (var i = 0u; i < 18u; i = i + 1u) {
        (*w)[i] = (*w)[i + 9u];
    }
    load_plane(w, src, first, c, 1, fill);
}

// The erode at pixel s: per axis, the first minimum of the 3-tap window (order -1, 0, +1) as
// (value, pixel); then min over axes with torch's tie weights. Returns the value; writes the
// per-axis argmin pixels and gradient weights.
struct Erode {
    value: f32,
    arg: vec3<u32>,
    weight: vec3<f32>,
}

// The erode of the window `w` (filled with +INF) around pixel s.
fn window_erode(w: ptr<private, array<f32, WIN>>, s: u32) -> Erode {
    var r: Erode;
    var vals = vec3<f32>(0.0);
    for (var a = 0u; a < NDIMS; a = a + 1u) {
        var best = WIN_INF;
        var arg = s;
        for (var k = -1; k <= 1; k = k + 1) {
            let d = k * unit(a);
            let v = (*w)[slot(d)];
            if v < best {
                best = v;
                arg = u32(i32(s) + offset_of(d));
            }
        }
        vals[a] = best;
        r.arg[a] = arg;
    }
    // min(p0, p1) [then min(·, p2)], ties split in halves as torch.minimum's gradient.
    var m = vals.x;
    var wt = vec3<f32>(1.0, 0.0, 0.0);
    for (var a = 1u; a < NDIMS; a = a + 1u) {
        if vals[a] < m {
            wt = unit_f(a);
            m = vals[a];
        } else if vals[a] == m {
            wt = 0.5 * wt + 0.5 * unit_f(a);
        }
    }
    r.value = m;
    r.weight = wt;
    return r;
}

fn unit_f(a: u32) -> vec3<f32> {
    return vec3<f32>(f32(a == 0u), f32(a == 1u), f32(a == 2u));
}

// The dilate (3^d max-pool) of the window `w` (filled with -INF) around pixel s: value and the
// first maximum's pixel in torch's window order (each axis's offsets from -1 to +1, axis 0
// outermost).
fn window_dilate(w: ptr<private, array<f32, WIN>>, s: u32) -> vec2<f32> {
    var best = -WIN_INF;
    var arg = s;
    let r = window_radius();
    for (var dx = -r.x; dx <= r.x; dx = dx + 1) {
        for (var dy = -r.y; dy <= r.y; dy = dy + 1) {
            for (var dz = -r.z; dz <= r.z; dz = dz + 1) {
                let d = vec3<i32>(dx, dy, dz);
                let v = (*w)[slot(d)];
                if v > best {
                    best = v;
                    arg = u32(i32(s) + offset_of(d));
                }
            }
        }
    }
    return vec2<f32>(best, bitcast<f32>(arg));
}

// ---------------------------------------------------------------------------------------------
// Forward

@compute @workgroup_size(WG)
fn seed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    var bad_labels = 0u;
    var bad_values = 0u;
    for (var p = gid.x; p < pixels; p = p + nwg.x * WG) {
        let n = p / params.s;
        let s = p - n * params.s;
        let base = n * params.c * params.s + s;
        let label = label_of(p);
        let state = pixel_state(label);
        let valid = state == PIX_VALID;
        bad_labels = bad_labels + u32(state == PIX_BAD);
        for (var c = 0u; c < params.c; c = c + 1u) {
            if SEED_TARGET {
                bad_values = bad_values + u32(DENSE && is_nonfinite(bitcast<f32>(targets[base + c * params.s])));
            } else {
                bad_values = bad_values + u32(is_nonfinite(logits[base + c * params.s]));
            }
        }
        let lse = act_prepare(base);
        for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
            let e = base + c * params.s;
            var v = 0.0;
            if SEED_TARGET {
                v = select(0.0, target_at(e, c, label), valid);
            } else {
                v = prob(logits[e], lse);
            }
            stack[at(0u, (n * params.kept + c - FIRST_CHANNEL) * params.s + s)] = v;
        }
    }
    // The target pass counts the labels (once) and non-finite targets; the prediction pass
    // non-finite logits.
    if SEED_TARGET && bad_labels != 0u {
        atomicAdd(&status[STATUS_BAD_LABEL], bad_labels);
    }
    if bad_values != 0u {
        atomicAdd(&status[select(STATUS_NONFINITE_LOGIT, STATUS_NONFINITE_TARGET, SEED_TARGET)], bad_values);
    }
}

@compute @workgroup_size(WG)
fn erode(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = params.step;
    for (var t = gid.x; t < run_count(); t = t + nwg.x * WG) {
        let run = run_of(t);
        window_start(&win_a, SRC_STACK, at(j, run.base), run.c, WIN_INF);
        for (var k = 0u; k < run.len; k = k + 1u) {
            let c = run_pixel(run, k);
            window_step(&win_a, SRC_STACK, at(j, run.base), c, WIN_INF);
            let s = index_of(c);
            stack[at(j + 1u, run.base + s)] = window_erode(&win_a, s).value;
        }
    }
}

@compute @workgroup_size(WG)
fn skel_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = params.step;
    for (var t = gid.x; t < run_count(); t = t + nwg.x * WG) {
        let run = run_of(t);
        window_start(&win_b, SRC_STACK, at(j + 1u, run.base), run.c, -WIN_INF);
        for (var k = 0u; k < run.len; k = k + 1u) {
            let c = run_pixel(run, k);
            window_step(&win_b, SRC_STACK, at(j + 1u, run.base), c, -WIN_INF);
            let s = index_of(c);
            let i = run.base + s;
            let o = window_dilate(&win_b, s).x;
            let delta = max(stack[at(j, i)] - o, 0.0);
            if j == 0u {
                skel[at(0u, i)] = delta;
            } else {
                let prev = skel[at(j - 1u, i)];
                skel[at(j, i)] = prev + max(delta - prev * delta, 0.0);
            }
        }
    }
}

// The target's skeleton is computed with the same kernels, then copied to the last volume.
@compute @workgroup_size(WG)
fn keep_target(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < vs(); i = i + nwg.x * WG) {
        skel[tskel_at(i)] = skel[at(params.iter, i)];
    }
}

// ---------------------------------------------------------------------------------------------
// clDice statistics and loss

// Per image (grid wx × n): Σ skel_pred·g, Σ skel_pred, Σ skel_true·p, Σ skel_true over the
// kept channels and pixels.
@compute @workgroup_size(WG)
fn stats(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.y;
    let per_image = params.kept * params.s;
    var acc = vec4<f32>(0.0);
    for (var k = wid.x * WG + lane.lid; k < per_image; k = k + params.nwg * WG) {
        let i = n * per_image + k;
        let cs = k / params.s;
        let s = k - cs * params.s;
        let c = cs + FIRST_CHANNEL;
        let p_idx = n * params.s + s;
        let label = label_of(p_idx);
        let e = n * params.c * params.s + c * params.s + s;
        let g = select(0.0, target_at(e, c, label), pixel_state(label) == PIX_VALID);
        let sp = skel[at(params.iter, i)];
        let st = skel[tskel_at(i)];
        acc = acc + vec4<f32>(sp * g, sp, st * stack[at(0u, i)], st);
    }
    let t = wg_sum4(acc, lane);
    if lane.lid == 0u {
        for (var k = 0u; k < 4u; k = k + 1u) {
            work[partial_at(k, n, wid.x)] = t[k];
        }
    }
}

@compute @workgroup_size(WG)
fn finalize(lane: Lane) {
    var total = 0.0;
    for (var n = lane.lid; n < params.n; n = n + WG) {
        var st = vec4<f32>(0.0);
        for (var x = 0u; x < params.nwg; x = x + 1u) {
            for (var k = 0u; k < 4u; k = k + 1u) {
                st[k] = st[k] + work[partial_at(k, n, x)];
            }
        }
        let b = st.y + params.smooth_dr;
        let d = st.w + params.smooth_dr;
        let tprec = (st.x + params.smooth_nr) / b;
        let tsens = (st.z + params.smooth_nr) / d;
        let h = tprec + tsens + params.smooth_h;
        let cl = 1.0 - 2.0 * tprec * tsens / h;
        // dcl/dtprec = -2 tsens (h - tprec) / h², symmetric for tsens.
        let dprec = -2.0 * tsens * (h - tprec) / (h * h);
        let dsens = -2.0 * tprec * (h - tsens) / (h * h);
        let sc = params.scale;
        // dL/dskel_pred = a·g + b0; dL/dp (direct) = c·skel_true.
        work[coef_at(n, 0u)] = sc * dprec / b;
        work[coef_at(n, 1u)] = -sc * dprec * tprec / b;
        work[coef_at(n, 2u)] = sc * dsens / d;
        work[coef_at(n, 3u)] = cl;
        if REDUCE_NONE {
            loss_out[n] = cl;
        }
        total = total + sc * cl;
    }
    let t = wg_sum(total, lane);
    if lane.lid == 0u && !REDUCE_NONE {
        if ADD_LOSS {
            loss_out[0] = params.dice_weight * loss_out[0] + t;
        } else {
            loss_out[0] = t;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward

fn g_target(i: u32) -> f32 {
    let per_image = params.kept * params.s;
    let n = i / per_image;
    let k = i - n * per_image;
    let cs = k / params.s;
    let s = k - cs * params.s;
    let c = cs + FIRST_CHANNEL;
    let label = label_of(n * params.s + s);
    let e = n * params.c * params.s + c * params.s + s;
    return select(0.0, target_at(e, c, label), pixel_state(label) == PIX_VALID);
}

@compute @workgroup_size(WG)
fn bw_start(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_image = params.kept * params.s;
    for (var i = gid.x; i < vs(); i = i + nwg.x * WG) {
        let n = i / per_image;
        work[g_skel(i)] = work[coef_at(n, 0u)] * g_target(i) + work[coef_at(n, 1u)];
        work[g_next(i)] = 0.0;
    }
}

// Step j: delta_j = relu(img_j - O_j), skel_j = skel_{j-1} + relu(u), u = delta_j (1 - skel_{j-1}).
@compute @workgroup_size(WG)
fn bw_skel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = params.step;
    for (var t = gid.x; t < run_count(); t = t + nwg.x * WG) {
        let run = run_of(t);
        // img_j's window for its erode E_j, and E_j's for its dilate O_j.
        window_start(&win_a, SRC_STACK, at(j, run.base), run.c, WIN_INF);
        window_start(&win_b, SRC_STACK, at(j + 1u, run.base), run.c, -WIN_INF);
        for (var k = 0u; k < run.len; k = k + 1u) {
            let c = run_pixel(run, k);
            window_step(&win_a, SRC_STACK, at(j, run.base), c, WIN_INF);
            window_step(&win_b, SRC_STACK, at(j + 1u, run.base), c, -WIN_INF);
            let s = index_of(c);
            let i = run.base + s;
            let dilated = window_dilate(&win_b, s);
            // skel_j's last reader was step j + 1's bw_skel (its `prev`): the volume now keeps
            // where O_j took its maximum, for bw_dilate.
            skel[at(j, i)] = dilated.y;
            let diff = stack[at(j, i)] - dilated.x;
            let delta = max(diff, 0.0);
            let gs = work[g_skel(i)];
            var gd = gs;
            if j > 0u {
                let prev = skel[at(j - 1u, i)];
                let live = f32(delta * (1.0 - prev) > 0.0);
                gd = gs * live * (1.0 - prev);
                work[g_skel(i)] = gs * (1.0 - live * delta);
            }
            // relu'(x) = [x > 0], as torch. img_j receives `through`, O_j its negative.
            let through = gd * f32(diff > 0.0);
            work[g_o(i)] = -through;
            work[e_code(i)] = bitcast<f32>(erode_code(window_erode(&win_a, s), s));
        }
    }
}

// G_E at every element of E_j: G_img_{j+1} plus what the dilate outputs whose first maximum is
// this element send back. The maxima come from bw_skel (in skel_j), not from 3^d pools
// recomputed at each of the 3^d neighbours.
@compute @workgroup_size(WG)
fn bw_dilate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = params.step;
    let r = window_radius();
    // Outside the volume: a "maximum" no pixel index equals (3.4e38's bits), and G_O = 0.
    for (var t = gid.x; t < run_count(); t = t + nwg.x * WG) {
        let run = run_of(t);
        window_start(&win_a, SRC_SKEL, at(j, run.base), run.c, WIN_INF);
        window_start(&win_b, SRC_WORK, g_o(run.base), run.c, 0.0);
        for (var k = 0u; k < run.len; k = k + 1u) {
            let c = run_pixel(run, k);
            window_step(&win_a, SRC_SKEL, at(j, run.base), c, WIN_INF);
            window_step(&win_b, SRC_WORK, g_o(run.base), c, 0.0);
            let s = index_of(c);
            var acc = work[g_next(run.base + s)];
            for (var dx = -r.x; dx <= r.x; dx = dx + 1) {
                for (var dy = -r.y; dy <= r.y; dy = dy + 1) {
                    for (var dz = -r.z; dz <= r.z; dz = dz + 1) {
                        let d = slot(vec3<i32>(dx, dy, dz));
                        if bitcast<u32>(win_a[d]) == s {
                            acc = acc + win_b[d];
                        }
                    }
                }
            }
            work[g_e(run.base + s)] = acc;
        }
    }
}

// An element's erode E_j as bits: per axis a, bits 4a..4a+1 hold the first minimum's offset along
// a plus one (0, 1, 2) and bits 4a+2..4a+3 its tie weight (0, 1/4, 1/2 or 1, the only values the
// halving in `window_erode` produces), so bw_erode reads one word per neighbour instead of
// recomputing the neighbour's 3·d-tap erode.
const ERODE_WEIGHTS = array<f32, 4>(0.0, 0.25, 0.5, 1.0);

fn erode_code(er: Erode, s: u32) -> u32 {
    var code = 0u;
    for (var a = 0u; a < NDIMS; a = a + 1u) {
        // The argmin is s or its neighbour before or after it along a.
        let off = select(select(2u, 0u, er.arg[a] < s), 1u, er.arg[a] == s);
        var w = 0u;
        for (var k = 1u; k < 4u; k = k + 1u) {
            if er.weight[a] == ERODE_WEIGHTS[k] {
                w = k;
            }
        }
        code = code | ((off | (w << 2u)) << (4u * a));
    }
    return code;
}

// The weight an element with erode code `code` sends along axis a to its neighbour at offset k
// (-1, 0, +1) along a: its tie weight if that neighbour is its axis-a minimum, else 0.
fn erode_share(code: u32, a: u32, k: i32) -> f32 {
    let bits = code >> (4u * a);
    let hit = i32(bits & 3u) - 1 == k;
    return select(0.0, ERODE_WEIGHTS[(bits >> 2u) & 3u], hit);
}

// G_img_j = its own term from bw_skel plus the erode gradient: the erode outputs whose window
// holds this element are the element itself and its two neighbours along each axis; each sends
// its G_E times the weight of every axis whose first minimum is this element (a neighbour along
// axis a only through a). Outside the volume: code 0 (weight 0) and G_E = 0.
@compute @workgroup_size(WG)
fn bw_erode(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = gid.x; t < run_count(); t = t + nwg.x * WG) {
        let run = run_of(t);
        window_start(&win_a, SRC_WORK, e_code(run.base), run.c, 0.0);
        window_start(&win_b, SRC_WORK, g_e(run.base), run.c, 0.0);
        for (var k = 0u; k < run.len; k = k + 1u) {
            let c = run_pixel(run, k);
            window_step(&win_a, SRC_WORK, e_code(run.base), c, 0.0);
            window_step(&win_b, SRC_WORK, g_e(run.base), c, 0.0);
            let i = run.base + index_of(c);
            var acc = -work[g_o(i)];
            let own = slot(vec3<i32>(0));
            for (var a = 0u; a < NDIMS; a = a + 1u) {
                acc = acc + erode_share(bitcast<u32>(win_a[own]), a, 0) * win_b[own];
                for (var side = -1; side <= 1; side = side + 2) {
                    // The neighbour at +side sees this element at offset -side.
                    let d = slot(side * unit(a));
                    acc = acc + erode_share(bitcast<u32>(win_a[d]), a, -side) * win_b[d];
                }
            }
            // G_img_j, which is the carry (G_E_{j-1}) of the next, lower step.
            work[g_next(i)] = acc;
        }
    }
}

// grad += ... instead of grad = ...: one `backprop` pipeline each, as in the other families (a
// per-element branch on a uniform costs lavapipe). With alpha, the Dice part writes first and
// this adds.
override ACCUMULATE: bool = false;

fn write_grad(e: u32, g: f32) {
    let v = params.grad_scale * g;
    if ACCUMULATE {
        grad[e] = grad[e] + v;
    } else {
        grad[e] = v;
    }
}

// dL/dz: dL/dp_c = the skeleton path + clDice's direct term c·skel_true for the kept channels,
// 0 for a dropped channel 0, then through the activation.
@compute @workgroup_size(WG)
fn backprop(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    for (var p = gid.x; p < pixels; p = p + nwg.x * WG) {
        let n = p / params.s;
        let s = p - n * params.s;
        let base = n * params.c * params.s + s;
        let lse = act_prepare(base);
        let coef = work[coef_at(n, 2u)];
        var dot = 0.0;
        if ACT == ACT_SOFTMAX {
            for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
                let i = (n * params.kept + c - FIRST_CHANNEL) * params.s + s;
                let d = work[g_next(i)] + coef * skel[tskel_at(i)];
                dot = dot + prob(logits[base + c * params.s], lse) * d;
            }
        }
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + c * params.s;
            let pc = prob(logits[e], lse);
            var d = 0.0;
            if c >= FIRST_CHANNEL {
                let i = (n * params.kept + c - FIRST_CHANNEL) * params.s + s;
                d = work[g_next(i)] + coef * skel[tskel_at(i)];
            }
            var g = d;
            if ACT == ACT_SOFTMAX {
                g = pc * (d - dot);
            } else if ACT == ACT_SIGMOID {
                g = d * pc * (1.0 - pc);
            }
            write_grad(e, g);
        }
    }
}
