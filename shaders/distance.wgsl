// Euclidean distance transforms, exact (Felzenszwalb–Huttenlocher) and by jump flooding, for a
// batch of masks at once; and the distance maps of the boundary and Hausdorff losses.
// CPU mirror: src/cpu/distance.rs.
//
// Every transform works on one "volume" per mask: one f32 per pixel, the squared distance to the
// nearest pixel of the other class seen so far (INF where none has been), negative inside the
// mask. At a foreground pixel that is the squared EDT of the mask (scipy's
// distance_transform_edt), at a background pixel the squared distance to the mask. It stands for
// two transforms (sources: the background, for the foreground pixels; the foreground, for the
// background pixels) whose other values are all 0 (a pixel is a source of the transform it does
// not need), so both travel in one float: each pass reads and writes every pixel once, not
// twice. Entry points:
//   seed_masks   volumes from caller masks (u32, non-zero = foreground); seed_labels one mask
//                per (image, class) from labels; seed_probabilities from p > 0.5;
//   seed_winner  a loss's softmax prediction masks, one class index per pixel (in `env`): a
//                loss's volumes take no seed pass, the first axis reads its masks
//                (FROM_LOSS, `loss_mask`) from the targets, the logits and these;
//   edt_axis     the exact 1-D transform along `params.axis` of every line of every volume
//                (run once per spatial axis: the transform is separable);
//   jfa_init / jfa_step / jfa_finish   jump flooding on nearest-source coordinates;
//   finish_edt   caller output: the EDT (or the signed map) of each mask;
//   finish_map   a loss's map: boundary φ of the target, or Hausdorff dt_p^α + dt_g^α with
//                one spatial axis (otherwise the last edt_axis pass writes it, MAP_IN_LAST_AXIS).

#include "common/grid.wgsl"
#include "common/activation.wgsl"
#include "common/targets.wgsl"
#include "common/distance_values.wgsl"

override DENSE: bool = false;
override HAS_IGNORE: bool = false;
override ACT: u32 = 0u;
// finish_edt: write the signed map (boundary convention) instead of the plain EDT.
override SIGNED: bool = false;
// edt_axis: the last axis of Hausdorff's prediction volumes, which writes the loss map
// (dt_p^α + dt_g^α, the target's volumes done) instead of the volume: no finish_map pass.
override MAP_IN_LAST_AXIS: bool = false;
// finish_map: 0 boundary (signed map of the target), 1 Hausdorff (dt_p^α + dt_g^α).
override MAP_KIND: u32 = 0u;
const MAP_BOUNDARY: u32 = 0u;
const MAP_HAUSDORFF: u32 = 1u;
// Hausdorff's α is 2 (MONAI's default), set by the host for the passes that write the map: dt^α
// is then the squared distance itself. As a runtime test of params.alpha, the power's other
// branch (exp2 and log2, twice per pixel) cost lavapipe 10% of the 2D envelope passes, since it
// runs both sides of a branch.
override ALPHA_TWO: bool = false;

// dt_p^α + dt_g^α from a pixel's two volume values.
fn hausdorff_map_value(pred: f32, truth: f32) -> f32 {
    if ALPHA_TWO {
        return distance_power_of(pred, 2.0) + distance_power_of(truth, 2.0);
    }
    return distance_power_of(pred, params.alpha) + distance_power_of(truth, params.alpha);
}

// Must match `DistanceParams` in src/distance.rs.
struct Params {
    n: u32,            // images (losses) or masks (caller masks)
    c: u32,            // channels of the logits (losses); 1 for caller masks
    s: u32,            // pixels per volume
    first: u32,        // first kept channel (losses)
    dims: vec4<u32>,   // spatial extents, padded with 1 (dims.w unused)
    spacing: vec4<f32>,
    axis: u32,         // edt_axis: the axis
    nvol: u32,         // volumes (one per mask)
    ignore_index: i32,
    alpha: f32,        // Hausdorff exponent
    step: u32,         // jfa_step: the step length in pixels
    parity: u32,       // JFA: which half of `env` holds the current nearest sources
    line0: u32,        // edt_first_axis, edt_axis: the first line of this dispatch
    line_count: u32,   // its lines (edt_axis: a window whose scratch fits `env`)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// Loss targets (labels or dense), or caller masks.
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> vol: array<f32>;
// edt_axis: per-line scratch of the lower envelope; JFA: nearest sources, as packed coordinates
// (`pack`); seed_winner: a softmax prediction's class per pixel, which the first axis reads
// (before any envelope pass uses `env`).
@group(0) @binding(4) var<storage, read_write> env: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// Per volume, what the first axis saw of its classes: bit 0 a pixel in the mask, bit 1 one
// outside (cleared before every transform). A volume without both is one class throughout:
// its first axis leaves every pixel ±INF, the final value, so the envelope passes skip its
// lines (a class absent from an image, or filling it).
@group(0) @binding(6) var<storage, read_write> kinds: array<atomic<u32>>;
const KIND_IN: u32 = 1u;
const KIND_OUT: u32 = 2u;

// A pixel's value: squared distance d with the sign of its class (negative inside the mask).
// d > 0 always (a pixel is never its own nearest pixel of the other class), so the sign is kept.
fn signed_value(d: f32, fg: bool) -> f32 {
    return select(d, -d, fg);
}

fn seed(m: u32, s: u32, fg: bool) {
    vol[m * params.s + s] = signed_value(INF, fg);
}

@compute @workgroup_size(WG)
fn seed_masks(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.n * params.s;
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        seed(i / params.s, i % params.s, targets[i] != 0u);
    }
}

// One mask per (image, class) from i32 labels [n, *S]: mask (n, c) is `label == c`.
@compute @workgroup_size(WG)
fn seed_labels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.n * params.s;
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        let n = i / params.s;
        let label = bitcast<i32>(targets[i]);
        for (var c = 0u; c < params.c; c = c + 1u) {
            seed(n * params.c + c, i % params.s, label == i32(c));
        }
    }
}

// Masks from f32 probabilities: foreground where p > 0.5 (exactly 0.5 is background, as MONAI).
@compute @workgroup_size(WG)
fn seed_probabilities(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.n * params.s;
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        seed(i / params.s, i % params.s, bitcast<f32>(targets[i]) > 0.5);
    }
}

// Hausdorff's prediction masks under a softmax: p_c > 0.5 holds for one class at most, the
// pixel's largest logit, so the walk that takes the log-sum-exp also finds it, and no logit is
// read twice. Its p is 1 / Σ_c exp(z_c - max), so p > 0.5 is that sum < 2: the sum's own
// rounding is all the error, as in torch's softmax (exp(max - lse) added the rounding of lse,
// an ulp of |lse|: a pixel at p = 0.5 + 1.1e-7 came out background). A tie of the largest
// logits adds two ones, so the sum is >= 2 and the pixel background (each p <= 0.5 exactly).
// Returns that class, or C where no class has p > 0.5.
fn softmax_winner(base: u32) -> u32 {
    var st = lse_start(logits[base]);
    var w = 0u;
    for (var c = 1u; c < params.c; c = c + 1u) {
        let z = logits[base + c * params.s];
        w = select(w, c, z > st.x);
        st = lse_push(st, z);
    }
    return select(params.c, w, st.y < 2.0);
}

// A loss's masks, per (image n, kept class c): volume n·kept + c - first is the target > 0.5,
// and for Hausdorff volume (N + n)·kept + c - first the prediction > 0.5. Ignored pixels are
// background of both. The first axis reads them where it needs them (FROM_LOSS), so no pass
// seeds the volumes (2·kept writes per pixel, read back by the first axis). `LossVolume` is
// what a line's volume m fixes, taken once per line.
struct LossVolume {
    c: u32,
    pixels: u32,   // the image's first pixel in [N, *S]
    elements: u32, // the class's first element in [N, C, *S]
}

fn loss_volume(m: u32) -> LossVolume {
    let kept = params.c - params.first;
    let mi = select(m, m - params.n * kept, FROM_LOSS == FROM_PREDICTION);
    let n = mi / kept;
    let c = params.first + (mi - n * kept);
    return LossVolume(c, n * params.s, (n * params.c + c) * params.s);
}

// Whether pixel s of the line's volume `v` is in its mask.
fn loss_mask(v: LossVolume, s: u32) -> bool {
    let p = v.pixels + s;
    if FROM_LOSS == FROM_PREDICTION && ACT == ACT_SOFTMAX {
        return u32(env[p]) == v.c; // C at ignored pixels, and where no class passes 0.5
    }
    let label = label_of(p);
    if pixel_state(label) != PIX_VALID {
        return false;
    }
    let e = v.elements + s;
    if FROM_LOSS == FROM_TARGETS {
        return target_at(e, v.c, label) > 0.5;
    }
    // Other activations: each channel on its own (several sigmoids can pass 0.5).
    return prob(logits[e], 0.0) > 0.5;
}

// Hausdorff's prediction masks under a softmax, for `loss_mask`: one float per pixel in `env`,
// the class whose probability is over 0.5 (`softmax_winner`; C for none, and at ignored
// pixels). One write per pixel instead of one per class.
@compute @workgroup_size(WG)
fn seed_winner(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = params.n * params.s;
    for (var p = gid.x; p < pixels; p = p + nwg.x * WG) {
        let n = p / params.s;
        let base = n * params.c * params.s + (p - n * params.s);
        var winner = params.c;
        if pixel_state(label_of(p)) == PIX_VALID {
            winner = softmax_winner(base);
        }
        env[p] = f32(winner);
    }
}

// ---------------------------------------------------------------------------------------------
// Exact transform: Felzenszwalb & Huttenlocher's lower envelope of parabolas, one line per
// thread, linear in the line's length. With f the squared distances so far and x_q = q·spacing,
// d(p) = min_q (x_p - x_q)² + f(q).

// Extent and element stride of `axis`.
fn axis_extent(axis: u32) -> u32 {
    return params.dims[axis];
}

fn axis_stride(axis: u32) -> u32 {
    var st = 1u;
    for (var a = axis + 1u; a < 3u; a = a + 1u) {
        st = st * params.dims[a];
    }
    return st;
}

// The first element of line `line` (over every volume) along an axis of extent `len`, whose
// elements are `stride` apart.
fn line_start(line: u32, len: u32, stride: u32) -> u32 {
    let lines_per_vol = params.s / len;
    let v_idx = line / lines_per_vol;
    let r = line - v_idx * lines_per_vol;
    // r enumerates the other axes (outer part, inner part).
    let outer = r / stride;
    let inner = r - outer * stride;
    return v_idx * params.s + outer * len * stride + inner;
}

// edt_first_axis: the masks are the seeded volumes' signs (0), or a loss's (`loss_mask`): its
// targets' (1) or its prediction's (2). A dispatch takes one kind of volume, so that the
// per-pixel read is one gather, not every kind's under a lane mask.
override FROM_LOSS: u32 = 0u;
const FROM_SEEDS: u32 = 0u;
const FROM_TARGETS: u32 = 1u;
const FROM_PREDICTION: u32 = 2u;

// The class of element e (of volume m) that the first axis starts from.
fn first_axis_mask(lv: LossVolume, e: u32, m: u32) -> bool {
    if FROM_LOSS != FROM_SEEDS {
        return loss_mask(lv, e - m * params.s);
    }
    return vol[e] < 0.0;
}

// The first pass (axis 0) of the exact transform on freshly seeded volumes (±INF), or with
// FROM_LOSS on a loss's masks (`loss_mask`; the volumes are not seeded): a pixel's
// squared distance to the nearest pixel of the other class on the line needs no envelope, only
// the run of same-class pixels [a, b) it lies in: the sources are a - 1 (if a > 0) and b (if
// b < len). Walk 1 reads the line's classes and writes each run's end b into the run's first
// pixel (a position, exact in f32: `grid` bounds the extents by 2^24); walk 2 reads it back at
// each run's start and writes every pixel's value. One read and one write per pixel, plus two
// per run (two sweeps, each reading and writing every pixel, cost lavapipe a fifth more), and
// no scratch and no data-dependent loop.
@compute @workgroup_size(WG)
fn edt_first_axis(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let axis = params.axis;
    let len = axis_extent(axis);
    let stride = axis_stride(axis);
    let sp = params.spacing[axis];
    let per_vol = params.s / len;
    let vols = params.line_count / per_vol;
    var count = params.line_count;
    if FROM_LOSS != FROM_SEEDS {
        count = (per_vol + WG - 1u) / WG * WG * vols;
    }
    for (var i = gid.x; i < count; i = i + nwg.x * WG) {
        // A loss's masks: WG lines of every volume in turn for the same pixels, so that those
        // pixels' labels (or winners), which every volume's lines read, are read while cached.
        // (In volume order, all of an image's labels came between two reads of one: in 3D, at
        // 2×14×64³, that made the first axis twice as slow on lavapipe.)
        var line = i;
        if FROM_LOSS != FROM_SEEDS {
            let block = i / (WG * vols);
            let rest = i - block * WG * vols;
            let v = rest / WG;
            let r = block * WG + (rest - v * WG);
            if r >= per_vol {
                continue;
            }
            line = v * per_vol + r;
        }
        let start = line_start(params.line0 + line, len, stride);
        let m = start / params.s;
        let lv = loss_volume(m);
        // Walk 1: the runs. Runs alternate classes, so the first pixel's class gives them all.
        let fg0 = first_axis_mask(lv, start, m);
        var fg = fg0;
        var a = 0u;
        for (var q = 1u; q < len; q = q + 1u) {
            let f = first_axis_mask(lv, start + q * stride, m);
            if f != fg {
                vol[start + a * stride] = f32(q);
                a = q;
                fg = f;
            }
        }
        vol[start + a * stride] = f32(len);
        // A line with a change has both classes; otherwise the class of its first pixel.
        var seen = select(KIND_OUT, KIND_IN, fg0);
        if a > 0u {
            seen = KIND_IN | KIND_OUT;
        }
        atomicOr(&kinds[m], seen);
        // Walk 2: each pixel's distance to its run's two sources (INF where there is none:
        // a line of one class is left ±INF, as seeded).
        fg = !fg0;
        var b = 0u;
        for (var q = 0u; q < len; q = q + 1u) {
            let e = start + q * stride;
            if q == b {
                a = q;
                b = u32(vol[e]);
                fg = !fg;
            }
            var d = INF;
            if a > 0u {
                let dl = f32(q - a + 1u) * sp;
                d = dl * dl;
            }
            if b < len {
                let dr = f32(b - q) * sp;
                d = min(d, dr * dr);
            }
            vol[e] = signed_value(d, fg);
        }
    }
}

// Where the envelopes live. Lines of up to PRIVATE_LINE pixels keep them in private memory
// (`edt_axis` built with PRIVATE_ENV, the default): no scratch buffer, and no bounds-checked
// gathers from one (on lavapipe the distance losses ran 1.2-1.3× faster so); longer lines use
// their slice of `env` (5·len floats each, which `Edt::new` sizes). Lavapipe's compile time
// grows with the square of a private array's length (one array of 3·512 + 1 floats: 50 s), hence
// arrays of PRIVATE_LINE (once per process; then Mesa's disk cache).
override PRIVATE_ENV: bool = true;
// Must match `PRIVATE_LINE` in src/distance.rs (checked by a test).
const PRIVATE_LINE: u32 = 256u;
// An entry's position and its first pixel, packed by `set_entry` (both <= PRIVATE_LINE < 2^16):
// on lavapipe each private access with a per-lane index is a gather or a scatter, and those
// accesses are most of the pass's cost, so two values that are always read together share one.
var<private> pvz: array<u32, PRIVATE_LINE>;
var<private> ph: array<f32, PRIVATE_LINE>;
// A run's end and its segment's end, packed by `set_run` (both <= PRIVATE_LINE < 2^16).
var<private> pr: array<u32, PRIVATE_LINE>;

// The envelopes of one line, one segment per run of same-class pixels, stored one after the
// other: entry t has a position v (pixel index), a height h and a start z, the first pixel
// where its parabola is the lowest of the segment's (the envelope is only ever read at the
// pixels, so its breakpoints are kept as pixel indices: whole numbers, which pack, and a pop
// test that compares two parabolas at one pixel, without a division). Run r (the r-th run of
// the line) has its end b_r and the end of its segment, one past its last entry (the next
// segment's first; the same as the segment's start for a run with no pixel of finite height,
// which has no entry): walk 2 reads both with one access per run, and the segment's end bounds
// its step to the next entry. `vo`, `ho`, `zo`, `bo`, `eo` are the arrays' offsets in `env`
// when they are not private (each value apart there: a line may be longer than 2^16); `k` is
// the last entry (-1: none yet), `first` the current segment's first entry and `a` its run's
// first pixel.
struct Envelope {
    vo: u32,
    ho: u32,
    zo: u32,
    bo: u32,
    eo: u32,
    k: i32,
    first: i32,
    a: u32,
}

// Entry t's (position, first pixel).
fn vz_at(e: Envelope, t: u32) -> vec2<u32> {
    if PRIVATE_ENV {
        let packed = pvz[t];
        return vec2<u32>(packed & 0xffffu, packed >> 16u);
    }
    return vec2<u32>(u32(env[e.vo + t]), u32(env[e.zo + t]));
}

fn h_at(e: Envelope, t: u32) -> f32 {
    if PRIVATE_ENV {
        return ph[t];
    }
    return env[e.ho + t];
}

// Run r's (end, segment end).
fn run_at(e: Envelope, r: u32) -> vec2<u32> {
    if PRIVATE_ENV {
        let packed = pr[r];
        return vec2<u32>(packed & 0xffffu, packed >> 16u);
    }
    return vec2<u32>(u32(env[e.bo + r]), u32(env[e.eo + r]));
}

fn set_entry(e: Envelope, t: u32, v: u32, h: f32, z: u32) {
    if PRIVATE_ENV {
        pvz[t] = v | (z << 16u);
        ph[t] = h;
    } else {
        env[e.vo + t] = f32(v);
        env[e.ho + t] = h;
        env[e.zo + t] = f32(z);
    }
}

// Ends run r at pixel b, and its segment after the last entry so far (one private write:
// on lavapipe a run's end costs every pixel, whose lanes all run its code under a mask).
fn set_run(e: Envelope, r: u32, b: u32) {
    let end = u32(e.k + 1);
    if PRIVATE_ENV {
        pr[r] = b | (end << 16u);
    } else {
        env[e.bo + r] = f32(b);
        env[e.eo + r] = f32(end);
    }
}

// Pushes the parabola of height h at pixel q (of a line of `len` pixels) onto the current
// segment, first popping those of the segment it hides at every pixel of the run they own. The
// top entry (v, h_v, from pixel z on) owns the pixels from z up; the new parabola, at q > v, is
// the lower one beyond their crossing, so it hides the top one wherever it is no higher at z.
// Where it is higher there, it starts at the first pixel past the crossing
// s = ((h + x_q²) - (h_v + x_v²)) / (2 (x_q - x_v)) (> x_z, so after z; its index is clamped
// to the line, past which no pixel reads it, and which keeps it in the 16 bits it is packed in).
// A segment's first entry starts at its run's first pixel, so within a run the starts increase
// by one pixel at least and each entry owns a pixel of the run or none past it: walk 2 moves to
// the next entry at most once per pixel.
fn envelope_push(e: ptr<function, Envelope>, q: u32, h: f32, sp: f32, len: u32) {
    let xq = f32(q) * sp;
    var z = (*e).a;
    loop {
        if (*e).k < (*e).first {
            break;
        }
        let top = u32((*e).k);
        let vz = vz_at(*e, top);
        let hv = h_at(*e, top);
        // Both parabolas at pixel z, the pixel differences first (exact in f32).
        let dq = (f32(vz.y) - f32(q)) * sp;
        let dv = (f32(vz.y) - f32(vz.x)) * sp;
        if dq * dq + h <= dv * dv + hv {
            (*e).k = (*e).k - 1;
        } else {
            let xv = f32(vz.x) * sp;
            let s = ((h + xq * xq) - (hv + xv * xv)) / (2.0 * (xq - xv));
            // After z also where rounding puts s at x_z or before it (a fractional spacing at
            // a near tie): walk 2's single step needs each start past the one before.
            z = max(u32(min(floor(s / sp) + 1.0, f32(len))), vz.y + 1u);
            break;
        }
    }
    (*e).k = (*e).k + 1;
    set_entry(*e, u32((*e).k), q, h, z);
}

// MAP_IN_LAST_AXIS, for a line of a prediction volume starting at element `start`: what to
// subtract from an element's index for the same pixel of its target's volume, and what to add
// (modulo 2^32) for the map's element [N, C, *S] of its image and class.
fn map_shifts(start: u32) -> vec2<u32> {
    let kept = params.c - params.first;
    let m = start / params.s - params.n * kept; // the target's volume: (image, kept class)
    let n = m / kept;
    let map_volume = n * params.c + params.first + (m - n * kept);
    return vec2<u32>(params.n * kept * params.s, (map_volume - m - params.n * kept) * params.s);
}

// The exact 1-D pass along `params.axis` (after the first axis): d(p) = min_q (x_p - x_q)² + h(q),
// with h = 0 at the pixels of the other class (the sources) and the squared distance so far at
// those of p's class. A run of same-class pixels [a, b) only needs its own pixels and the two
// sources bounding it, a - 1 and b: any pixel beyond them is farther than they are and no lower.
// So each run gets an envelope of its own pixels, and the two sources enter in closed form.
// The line is walked twice, pixel by pixel, whatever its runs: once building every run's
// envelope, once reading them. Every thread (one line each) runs the same len iterations of
// each walk, so the lanes of a SIMD group stay together; only the short pop loop differs
// between them (walk 2 moves to the next entry at most once per pixel). (Building and reading
// run by run made a lane that was still building its run wait for one that was reading its
// own, and the other way round.)
@compute @workgroup_size(WG)
fn edt_axis(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let axis = params.axis;
    let len = axis_extent(axis);
    let stride = axis_stride(axis);
    let sp = params.spacing[axis];
    for (var i = gid.x; i < params.line_count; i = i + nwg.x * WG) {
        let start = line_start(params.line0 + i, len, stride);
        var shift = vec2<u32>(0u);
        if MAP_IN_LAST_AXIS {
            shift = map_shifts(start);
        }
        // A volume of one class keeps its ±INF (`kinds`): its walks run no pixel. The bound is
        // per lane, not a branch, so that a SIMD group of such lines leaves the loops at once
        // on a CPU driver (which runs both sides of a branch).
        let mixed = atomicLoad(&kinds[start / params.s]) == (KIND_IN | KIND_OUT);
        let walk = select(0u, len, mixed);
        // 5·len floats per line, in private memory or this window's slice of `env`: the
        // segments hold distinct pixels of the line (len entries at most: v, h, z), and a line
        // has len runs at most (b, segment end).
        let vo = i * (5u * len);
        var e = Envelope(vo, vo + len, vo + 2u * len, vo + 3u * len, vo + 4u * len, -1, 0, 0u);
        // Walk 1: the envelopes.
        let fg0 = vol[start] < 0.0;
        var fg = fg0;
        var r = 0u;
        for (var q = 0u; q < walk; q = q + 1u) {
            let f = vol[start + q * stride];
            if (f < 0.0) != fg {
                set_run(e, r, q);
                r = r + 1u;
                e.first = e.k + 1;
                e.a = q;
                fg = !fg;
            }
            if abs(f) < INF {
                envelope_push(&e, q, abs(f), sp, len);
            }
        }
        set_run(e, r, len);
        // Walk 2: each pixel's lowest parabola of its run's segment (none for an empty one),
        // and the run's two sources a - 1 and b. Runs alternate classes, so the class needs no
        // read. The current entry's position and height stay in registers (cv, ch), so a pixel
        // reads the next entry, and its height only where the walk moves to it. A run whose
        // segment is empty keeps the previous run's last entry, which lies before its left
        // source a - 1 and so never beats it (the first run starts with none: ch = INF).
        fg = fg0;
        var a = 0u;
        r = 0u;
        var next = 0u;
        var run = run_at(e, 0u);
        var cv = 0.0;
        var ch = INF;
        for (var p = 0u; p < walk; p = p + 1u) {
            if p == run.x {
                // The next run, and its segment, which starts where this one's ends.
                a = p;
                fg = !fg;
                next = run.y;
                r = r + 1u;
                run = run_at(e, r);
            }
            let vz = vz_at(e, next);
            if next < run.y && vz.y <= p {
                cv = f32(vz.x);
                ch = h_at(e, next);
                next = next + 1u;
            }
            // The pixel difference first (exact in f32), so long lines with a fractional
            // spacing keep the distance's digits (x - x_v would lose ~x·2^-24).
            let dx = (f32(p) - cv) * sp;
            var d = dx * dx + ch;
            let b = run.x;
            if a > 0u {
                let dl = f32(p - a + 1u) * sp;
                d = min(d, dl * dl);
            }
            if b < len {
                let dr = f32(b - p) * sp;
                d = min(d, dr * dr);
            }
            let value = signed_value(min(d, INF), fg);
            let at = start + p * stride;
            if MAP_IN_LAST_AXIS {
                let truth = vol[at - shift.x];
                out[at + shift.y] = hausdorff_map_value(value, truth);
            } else {
                vol[at] = value;
            }
        }
        // The map of a one-class prediction volume: its every value is ±INF, whose dt_p^α is 0,
        // so only the target's distance is read.
        let rest = select(0u, len, MAP_IN_LAST_AXIS && !mixed);
        for (var p = 0u; p < rest; p = p + 1u) {
            let at = start + p * stride;
            out[at + shift.y] = hausdorff_map_value(INF, vol[at - shift.x]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Jump flooding: every pixel keeps the coordinates of the nearest source it has heard of (NONE
// when none) and, at step k, looks at the 3^d pixels k apart for a nearer one. O(log n) fully
// parallel steps instead of a serial pass per line, at the price of rare wrong pixels (measured in
// the docs). It runs on two virtual volumes per mask, 2m with the background as sources (giving
// the foreground pixels their distance) and 2m + 1 with the foreground; `env` holds two copies of
// their sources, [0, 2·nvol·s) and [2·nvol·s, 4·nvol·s), as u32 bits.
//
// A source is stored as its coordinates packed into one u32 (`pack`), not as its index: turning an
// index into coordinates takes integer divisions, which a CPU driver does lane by lane, and each
// step measures the distance to nine or 27 candidates (on lavapipe the divisions were 80% of the
// transform's time). The packed fields take at most 31 bits (`Edt::new` says why), so no
// source reads as NONE.

const NONE: u32 = 0xffffffffu;

fn coords(i: u32) -> vec3<u32> {
    let z = i % params.dims.z;
    let y = (i / params.dims.z) % params.dims.y;
    let x = i / (params.dims.z * params.dims.y);
    return vec3<u32>(x, y, z);
}

// The bits of the coordinates along an axis of extent d: 0 for d = 1.
fn coord_bits(d: u32) -> u32 {
    return 32u - countLeadingZeros(d - 1u);
}

// Coordinates as one u32: x in the high bits, z in the low ones (`coord_bits` of each axis).
fn pack(c: vec3<u32>) -> u32 {
    let bz = coord_bits(params.dims.z);
    let by = coord_bits(params.dims.y);
    return (((c.x << by) | c.y) << bz) | c.z;
}

fn unpack(p: u32) -> vec3<u32> {
    let bz = coord_bits(params.dims.z);
    let by = coord_bits(params.dims.y);
    let z = p & ((1u << bz) - 1u);
    let y = (p >> bz) & ((1u << by) - 1u);
    return vec3<u32>(p >> (bz + by), y, z);
}

// The squared distance between the pixel at `here` and the source packed in `source`.
fn squared_gap(here: vec3<u32>, source: u32) -> f32 {
    let d = (vec3<f32>(here) - vec3<f32>(unpack(source))) * params.spacing.xyz;
    return dot(d, d);
}

fn jfa_slot(parity: u32, v: u32, s: u32) -> u32 {
    return parity * jfa_volumes() * params.s + v * params.s + s;
}

fn jfa_volumes() -> u32 {
    return 2u * params.nvol;
}

@compute @workgroup_size(WG)
fn jfa_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = jfa_volumes() * params.s;
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        let v = i / params.s;
        let s = i - v * params.s;
        // Volume 2m takes the background as sources, 2m + 1 the foreground.
        let fg = vol[(v / 2u) * params.s + s] < 0.0;
        let source = fg == ((v % 2u) == 1u);
        env[jfa_slot(params.parity, v, s)] = bitcast<f32>(select(NONE, pack(coords(s)), source));
    }
}

@compute @workgroup_size(WG)
fn jfa_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = jfa_volumes() * params.s;
    let k = i32(params.step);
    let dims = vec3<i32>(params.dims.xyz);
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        let v = i / params.s;
        let s = i - v * params.s;
        let at = coords(s);
        let here = vec3<i32>(at);
        var best = bitcast<u32>(env[jfa_slot(params.parity, v, s)]);
        var best_d = select(squared_gap(at, best), INF, best == NONE);
        for (var dx = -1; dx <= 1; dx = dx + 1) {
            for (var dy = -1; dy <= 1; dy = dy + 1) {
                for (var dz = -1; dz <= 1; dz = dz + 1) {
                    let q = here + k * vec3<i32>(dx, dy, dz);
                    if any(q < vec3<i32>(0)) || any(q >= dims) {
                        continue;
                    }
                    let qi = u32((q.x * dims.y + q.y) * dims.z + q.z);
                    let cand = bitcast<u32>(env[jfa_slot(params.parity, v, qi)]);
                    if cand == NONE {
                        continue;
                    }
                    let d = squared_gap(at, cand);
                    if d < best_d {
                        best = cand;
                        best_d = d;
                    }
                }
            }
        }
        env[jfa_slot(1u - params.parity, v, s)] = bitcast<f32>(best);
    }
}

// The squared distance to the nearest source found, back into the volumes: each pixel from the
// virtual volume of its class.
@compute @workgroup_size(WG)
fn jfa_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.nvol * params.s;
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        let m = i / params.s;
        let s = i - m * params.s;
        let fg = vol[i] < 0.0;
        let best = bitcast<u32>(env[jfa_slot(params.parity, 2u * m + select(1u, 0u, fg), s)]);
        vol[i] = signed_value(select(squared_gap(coords(s), best), INF, best == NONE), fg);
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

// Distance of pixel s of mask m to the nearest pixel of the other class, and whether the pixel is
// in the mask; the distance is 0 when the mask is empty or full (nothing of the other class).
fn opposite_distance(m: u32, s: u32) -> vec2<f32> {
    return opposite_distance_of(vol[m * params.s + s]);
}

@compute @workgroup_size(WG)
fn finish_edt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.nvol * params.s;
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        let m = i / params.s;
        let s = i - m * params.s;
        if SIGNED {
            out[i] = signed_map_of(vol[i]);
        } else {
            // scipy: the distance of a mask pixel to the nearest background pixel, 0 outside.
            let od = opposite_distance(m, s);
            out[i] = od.x * od.y;
        }
    }
}

// The loss map over [N, C, *S] (0 for the dropped channel 0).
@compute @workgroup_size(WG)
fn finish_map(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.n * params.c * params.s;
    let kept = params.c - params.first;
    for (var i = gid.x; i < total; i = i + nwg.x * WG) {
        let s = i % params.s;
        let nc = i / params.s;
        let c = nc % params.c;
        let n = nc / params.c;
        if c < params.first {
            out[i] = 0.0;
            continue;
        }
        let m = n * kept + (c - params.first);
        let truth = vol[m * params.s + s];
        if MAP_KIND == MAP_BOUNDARY {
            out[i] = signed_map_of(truth);
        } else {
            let pred = vol[(params.n * kept + m) * params.s + s];
            out[i] = hausdorff_map_value(pred, truth);
        }
    }
}
