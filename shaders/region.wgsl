// Region losses: Dice and its family, from per-(image, class) statistics.
// CPU mirror: src/cpu/region.rs (same names, same order of operations, in f64).
//
// Entry points, in the order the host records them:
//   stats_pass   grid wx × N: reads the logits once (per chunk of CHUNK classes; twice for
//                `four_pixels`, the software tuning's one-hot labels), applies the
//                activation, and writes per-(image, workgroup, class) partial sums of four
//                statistics (see `stat4`), plus the valid-pixel count in slot C; FUSED
//                (boundary, hausdorff-dt): writes dL/dz too, and grad_pass does not run;
//   combine      one workgroup: adds the partials in a fixed order into `stats`
//                [segment, C + 1] (segment = image, or the whole batch with BATCH);
//                ---- the split point: a caller may all-reduce `stats` across devices here ----
//   finalize     one workgroup: the loss from `stats`, and per-(segment, class) coefficients
//                of its gradient with respect to the statistics;
//   grad_pass    a block of pixels per workgroup (`pixel_block`): reads the logits again and
//                writes dL/dz through the activation (no one-hot tensor anywhere: targets are
//                read as labels or dense);
//                compound losses add their pixel-wise term (cross-entropy, focal) here, in the
//                same loop, and leave per-workgroup partials of its loss;
//   loss_final   one workgroup (compound losses): region loss + weighted pixel-wise loss.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/activation.wgsl"
#include "common/terms.wgsl"
#include "common/targets.wgsl"
#include "common/status.wgsl"
#include "common/distance_values.wgsl"

override LOSS: u32 = 0u;
const R_DICE: u32 = 0u;      // dice, jaccard (JACCARD), log-cosh-dice (LOG_COSH)
const R_TVERSKY: u32 = 1u;   // tversky, asymmetric, focal-tversky (FOCAL_TVERSKY)
const R_GDL: u32 = 2u;       // generalized-dice
const R_SS: u32 = 3u;        // sensitivity-specificity
const R_COMBO: u32 = 4u;     // combo: -(1 - alpha)·Dice over everything (+ PIX_COMBO)
const R_EXPLOG: u32 = 5u;    // exp-log: w_dice·mean_c (-ln Dice_c)^gamma (+ PIX_EXPLOG)
const R_WASS: u32 = 6u;      // wasserstein-dice: statistics grouped by label (see wass_distance)
const R_UNIFIED: u32 = 7u;   // unified-focal: binary, see unified_probs (+ PIX_UNIFIED)
const R_BOUNDARY: u32 = 8u;  // boundary: mean_S p·φ_g (φ from the distance map)
const R_HAUSDORFF: u32 = 9u; // hausdorff-dt: mean_S (p - g)²·(dt_p^α + dt_g^α); LOG_HD: log(· + 1)
override ACT: u32 = 0u;
override DENSE: bool = false;
override HAS_IGNORE: bool = false;
override FIRST_CHANNEL: u32 = 0u;
// squared_pred: the statistics use p² and g² (MONAI's ord = 2).
override SQUARED: bool = false;
// soft_label with ord = 1: tp = (Σp + Σg - Σ|p - g|) / 2.
override SOFT: bool = false;
override BATCH: bool = false;
override REDUCTION: u32 = 0u;
const REDUCE_MEAN: u32 = 0u;
const REDUCE_SUM: u32 = 1u;
const REDUCE_NONE: u32 = 2u;
override JACCARD: bool = false;
override LOG_COSH: bool = false;
override FOCAL_TVERSKY: bool = false;
// generalized-dice class weights: 0 square (1/Σg²), 1 simple (1/Σg), 2 uniform.
override W_TYPE: u32 = 0u;

// log-hausdorff-dt: log(loss + 1) of the reduced (or, for none, of each) Hausdorff loss.
override LOG_HD: bool = false;

// boundary and hausdorff-dt (not log): their dl/dp has a coefficient that is known before the
// statistics (`distance_coef`), so stats_pass also writes dL/dz and a plain record skips
// grad_pass: the logits and the map are read once, not twice. (The split-phase
// record_statistics keeps the two passes: it has no gradient to write to. The CPU mirror
// computes the same numbers in its `statistics` and `gradient`, one after the other; only the
// fused pass of a reduced loss keeps one sum over the classes, see `distance_one_sum`.)
override FUSED: bool = false;

// grad += ... instead of grad = ... (the caller's Outputs::accumulate): one pipeline each, as
// in pixel.wgsl; a per-element branch on a uniform cost lavapipe 8-10% of the gradient pass.
override ACCUMULATE: bool = false;

// boundary, fused pass of a plain record with the plan's own map: binding 3 holds the target's
// distance volumes (distance.wgsl) instead of the map, and `distance_map` makes each value from
// them where it is needed: no pass writes the map and none reads it back. (Not for Hausdorff,
// whose value takes two volumes and two powers: see `map_from_volumes` in src/loss/region.rs.)
override MAP_FROM_VOLUMES: bool = false;

// wasserstein-dice: GDL weighting (1/(count + 1)) instead of the default (0 for class 0, else 1).
override WASS_GDL: bool = false;

// The pixel-wise term of a compound loss, computed in grad_pass.
override PIX: u32 = 0u;
const PIX_NONE: u32 = 0u;
const PIX_CE: u32 = 1u;      // dice-ce: torch cross-entropy on the logits (BCE with C = 1)
const PIX_FOCAL: u32 = 2u;   // dice-focal, generalized-dice-focal: MONAI's sigmoid focal loss
const PIX_COMBO: u32 = 3u;   // combo: BCE with weights ce_ratio (positives), 1 - ce_ratio
const PIX_EXPLOG: u32 = 4u;  // exp-log: w_y·(-ln p_y)^gamma_ce, w_y from the class counts
const PIX_UNIFIED: u32 = 5u; // unified-focal: MONAI's asymmetric focal loss (in unified_pixel)
// dice-ce with C = 1 (`binary_labels()`, set by the host): its pixel term is BCE on the logits.
// A constant for `pixel_term`'s branch: with the runtime test, lavapipe ran the BCE branch's
// code at every element of every C (dice-ce's gradient pass at 8×19×128×256: 21 -> 18 ms).
override CE_BINARY: bool = false;

// unified-focal clamps the probabilities to [UF_EPS, 1 - UF_EPS] (MONAI's epsilon).
const UF_EPS: f32 = 1e-7;
// The focal term has an alpha.
override HAS_ALPHA: bool = false;
// Some weight of the pixel-wise term differs from 1 (else none is read from memory: a storage
// load per element is a gather on a CPU driver).
override HAS_PIXEL_WEIGHT: bool = true;

// Classes per chunk of the statistics pass: each thread keeps CHUNK vec4 accumulators.
const CHUNK: u32 = 32u;
// fused_dot needs every class the pixel cache holds in the one chunk.
const_assert CHUNK >= PIXEL_CACHE;

// Must match `RegionParams` in src/loss/region.rs (checked by a test).
struct Params {
    n: u32,
    c: u32,
    s: u32,
    nwg: u32,          // workgroups of grad_pass (its grid is nwg / n × n)
    wx: u32,           // stats_pass workgroups per image (grid wx × n)
    nseg: u32,         // segments: n, or 1 with BATCH
    ignore_index: i32,
    accumulate: u32,   // unused here (ACCUMULATE); kept for the shared layout
    smooth_nr: f32,
    smooth_dr: f32,
    alpha: f32,        // tversky: weight of fp; combo: alpha; exp-log: w_dice
    beta: f32,         // tversky: weight of fn; combo: ce_ratio
    gamma: f32,        // focal-tversky exponent; exp-log: gamma_dice
    grad_scale: f32,
    ss_r: f32,         // sensitivity-specificity: r
    lambda_region: f32,
    lambda_pixel: f32,
    label_smoothing: f32,
    pixel_gamma: f32,  // focal gamma; exp-log: gamma_ce
    focal_alpha: f32,
    pixel_norm: f32,   // multiplier of the summed pixel term when the host knows it
    pixel_weight_sum: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
// Read-only data of the loss. Dice family: [region weight (C) | pixel-term weight (C) |
// wasserstein distance matrix (C × C, row-major, normalised to max 1)], per absolute channel,
// ones where none. Distance losses: their distance map [N, C, *S] (see distance.wgsl).
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss_out: array<f32>;
// [globals (1) | coefficients (nseg * C) | partials (n * wx * PARTIAL_SLOTS * (C + 1)) |
//  pixel loss (nwg)]
@group(0) @binding(6) var<storage, read_write> scratch: array<vec4<f32>>;
// [segment, C + 1]: four statistics per class; slot C holds (valid pixels, summed pixel-term
// class weight of their labels, 0, 0), the normalisers of a compound loss's pixel-wise mean.
@group(0) @binding(7) var<storage, read_write> stats: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;
// `logits_vec4_at`: the logits as vec4s, a second binding where the device allows it.
#include "common/logits_vec4.wgsl"

const COEF_OFFSET: u32 = 1u;

fn partials_offset() -> u32 {
    return COEF_OFFSET + params.nseg * params.c;
}

fn pixel_partials_offset() -> u32 {
    return partials_offset() + params.n * params.wx * PARTIAL_SLOTS * (params.c + 1u);
}

fn region_weight(c: u32) -> f32 {
    if LOSS == R_BOUNDARY || LOSS == R_HAUSDORFF {
        return 1.0; // binding 3 holds their distance map, and they take no weight
    }
    return aux[c];
}

// Distance losses: the map at element e = (n, c, s) of [N, C, *S], c >= FIRST_CHANNEL.
fn distance_map(e: u32, n: u32) -> f32 {
    if MAP_FROM_VOLUMES {
        // boundary: element (n·kept + c - FIRST_CHANNEL, s) of the target's volumes, which is
        // e - (n + 1)·FIRST_CHANNEL·S.
        return signed_map_of(aux[e - (n + 1u) * FIRST_CHANNEL * params.s]);
    }
    return aux[e];
}

fn pixel_weight(c: u32) -> f32 {
    if !HAS_PIXEL_WEIGHT {
        return 1.0;
    }
    return aux[params.c + c];
}

fn dist(y: u32, c: u32) -> f32 {
    return aux[2u * params.c + y * params.c + c];
}

// Four labels as class indices, clamped into [0, C): a lane that does not count (ignored, out of
// range) reads a valid row of a per-class table, and its value is then not used.
fn label_rows4(y: vec4<i32>) -> vec4<u32> {
    return vec4<u32>(clamp(y, vec4<i32>(0), vec4<i32>(i32(params.c) - 1)));
}

// M[y, c] for four labels.
fn wass_row(y: vec4<i32>, c: u32) -> vec4<f32> {
    let yc = label_rows4(y);
    return vec4<f32>(dist(yc.x, c), dist(yc.y, c), dist(yc.z, c), dist(yc.w, c));
}

// Wasserstein distance between p and the one-hot of y: Σ_c M[y, c]·p_c.
fn wass_distance(base: u32, y: u32, lse: f32) -> f32 {
    var w = 0.0;
    for (var c = 0u; c < params.c; c = c + 1u) {
        w = w + dist(y, c) * prob(logits[base + c * params.s], lse);
    }
    return w;
}

// ---------------------------------------------------------------------------------------------
// Statistics

// The four statistics one pixel adds for one class.
//   Dice family: (Σ p·g, Σ p^k, Σ g^k, Σ |p - g|) with k = 2 for squared_pred;
//   sensitivity-specificity, with e = (g - p)²: (Σ e·g, Σ e·(1 - g), Σ g, Σ (1 - g)).
fn stat4(p: f32, g: f32) -> vec4<f32> {
    if LOSS == R_SS {
        let e = (g - p) * (g - p);
        return vec4<f32>(e * g, e * (1.0 - g), g, 1.0 - g);
    }
    var d = 0.0;
    if SOFT {
        d = abs(p - g);
    }
    if SQUARED {
        return vec4<f32>(p * g, p * p, g * g, d);
    }
    return vec4<f32>(p * g, p, g, d);
}

var<private> acc: array<vec4<f32>, CHUNK>;

// The fused pass with a softmax and every class in one chunk (C <= PIXEL_CACHE <= CHUNK): the
// statistics loop also sums the softmax gradient's Σ_c p_c dl/dp_c, from the map value it reads
// anyway, and grad_pixel skips its own loop for it (one map read and one walk over the classes
// fewer per pixel).
fn fused_dot() -> bool {
    return FUSED && px_cached() && ACT == ACT_SOFTMAX;
}

// fused_dot: each kept class's dl/dp of the pixel in hand, from the statistics walk, which
// needed them for the dot; the gradient walk reads them back instead of the map.
var<private> px_dl: array<f32, PIXEL_CACHE>;

// The fused distance pass of a reduced loss: finalize only needs Σ_c of the classes' sums (every
// class has the same coefficient, `distance_coef`), and its statistics stay internal (the
// split-phase record_statistics runs the unfused pass). So each thread adds every class into one
// register, put into the chunk's first kept slot at the end, instead of a read and a write of
// acc[j] per element (on a CPU driver each is a per-lane memory access).
fn distance_one_sum() -> bool {
    return FUSED && REDUCTION != REDUCE_NONE;
}

// One-hot labels and the Dice family's statistics without the |p - g| term. The statistics
// pass then adds only the non-zero terms of `stat4` (the others add exact zeros), so a pixel
// updates one class's Σ p·g and Σ g^k instead of every class's four sums; and the gradient's
// dl/dp_c = coef.x·g_c + coef.y·da takes coef.x at the label's class only (`label_dl_dp`). On a
// CPU driver each private-array access costs what a memory access does.
fn by_label() -> bool {
    return !DENSE && !SOFT && LOSS != R_SS && LOSS != R_BOUNDARY && LOSS != R_HAUSDORFF
        && LOSS != R_WASS && LOSS != R_UNIFIED;
}

// The statistics with the pixel cache (the software tuning: many pixels per thread, and
// C <= PIXEL_CACHE, so one chunk): for the losses `by_label` covers and, through
// `stat4`'s sums, for the others that take them (sensitivity-specificity, soft labels, dense
// targets). A thread takes four of its pixels at once, as the lanes of vec4s, with the channels
// outside: one walk for the four log-sum-exps, a second that reads the logits again and adds
// each class's sums of the four pixels in registers, then into acc[c] once. The pixel-by-pixel
// walk updates acc[c] at every pixel and class, and on a CPU driver each access to a private
// array with a runtime index is a per-lane gather or scatter, which cost more than the second
// read: on lavapipe at 8×19×128×256 the statistics pass of dice went from 15 to 12 ms
// (fourteenth session), sensitivity-specificity's from 13 to 9 and dice's on dense targets by
// a fifth (fifteenth; BENCHMARKS.md).
// Under a sigmoid (or no activation) each element's p is its own, and walk 1 goes: dice's
// statistics pass on sigmoid took 7.8-9.3 ms instead of 13.7-15.4 pixel by pixel (exp-log,
// whose 1 - p_y below is the other classes' sum, only takes a softmax).
fn four_pixels() -> bool {
    let sums = by_label() || (LOSS != R_EXPLOG && LOSS != R_WASS && LOSS != R_UNIFIED
        && LOSS != R_BOUNDARY && LOSS != R_HAUSDORFF);
    return px_cached() && sums && !FUSED && !binary_labels();
}

// Σ over the lanes of `stat4(p, g)`, each times its lane's `okf` (0 where the pixel does not
// count: its p and g are 0, but sensitivity-specificity's 1 - g is not).
fn stat4_lanes(p: vec4<f32>, g: vec4<f32>, okf: vec4<f32>) -> vec4<f32> {
    return stat4(p.x, g.x) * okf.x + stat4(p.y, g.y) * okf.y + stat4(p.z, g.z) * okf.z
        + stat4(p.w, g.w) * okf.w;
}

// Dense targets at four element indices.
fn targets4(e: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(targets[e.x], targets[e.y], targets[e.z], targets[e.w]));
}

// The labels of four pixels of an image, `first` its first pixel and `sc` their indices in it.
fn labels4(first: u32, sc: vec4<u32>) -> vec4<i32> {
    return vec4<i32>(label_of(first + sc.x), label_of(first + sc.y), label_of(first + sc.z),
        label_of(first + sc.w));
}

// `pixel_state(label) == PIX_VALID` and `== PIX_BAD`, lane by lane (labels with C > 1; every
// dense pixel is valid).
fn label_ok4(y: vec4<i32>) -> vec4<bool> {
    let in_range = (y >= vec4<i32>(0)) & (y < vec4<i32>(i32(params.c)));
    let ignored = vec4<bool>(HAS_IGNORE) & (y == vec4<i32>(params.ignore_index));
    return vec4<bool>(DENSE) | (in_range & !ignored);
}

fn label_bad4(y: vec4<i32>) -> vec4<bool> {
    let in_range = (y >= vec4<i32>(0)) & (y < vec4<i32>(i32(params.c)));
    let ignored = vec4<bool>(HAS_IGNORE) & (y == vec4<i32>(params.ignore_index));
    return vec4<bool>(!DENSE) & !in_range & !ignored;
}

// The lanes of `mask` that are set, as a count.
fn count4(mask: vec4<bool>) -> u32 {
    return dot(vec4<u32>(mask), vec4<u32>(1u));
}

// One step of a four-pixel walk over image n's block ending at `end`, at the pixels `sv` (their
// indices in the image): the pixels past the block read the image's last one (a valid address)
// and count for nothing.
struct FourStep {
    inside: vec4<bool>,   // the pixel is in the block
    y: vec4<i32>,         // its label
    ok: vec4<bool>,       // in the block, and its label counts (`label_ok4`)
    okf: vec4<f32>,       // ok as 1 or 0
    base: vec4<u32>,      // its channel 0 element in [N, C, *S]
    bad_labels: u32,      // pixels in the block with a bad label
}

// The four pixels of a step from pixel s, WG apart (the walks' default: on lavapipe neighbouring
// pixels made the statistics and fused walks twice as slow).
fn lanes_apart(s: u32) -> vec4<u32> {
    return vec4<u32>(s, s + WG, s + 2u * WG, s + 3u * WG);
}

// acc[0, count) to zero, before a walk sums into it.
fn clear_acc(count: u32) {
    for (var j = 0u; j < count; j = j + 1u) {
        acc[j] = vec4<f32>(0.0);
    }
}

fn four_step(n: u32, sv: vec4<u32>, end: u32) -> FourStep {
    let inside = sv < vec4<u32>(end);
    let sc = min(sv, vec4<u32>(params.s - 1u));
    let y = labels4(n * params.s, sc);
    let ok = inside & label_ok4(y);
    return FourStep(inside, y, ok, select(vec4<f32>(0.0), vec4<f32>(1.0), ok),
        vec4<u32>(n * params.c * params.s) + sc, count4(inside & label_bad4(y)));
}

// `prob` of four logits under a sigmoid or no activation (a softmax's needs its walk's sums).
fn prob4(z: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(prob(z.x, 0.0), prob(z.y, 0.0), prob(z.z, 0.0), prob(z.w, 0.0));
}

// The logits at four element indices.
fn logits4(e: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(logits[e.x], logits[e.y], logits[e.z], logits[e.w]);
}

// The pixels [x, y) of an image that workgroup x of its `count` walks: one contiguous block each,
// a multiple of `align` pixels long (the last ones may be short or empty), which the
// workgroup's threads walk WG pixels (or vec4s of pixels) apart. Not a grid-stride over the
// whole image: on lavapipe at 2×14×64³ the fused distance pass took 32-35 ms instead of 51-54,
// and the gradient pass of sensitivity-specificity 25-27 instead of 37-41 (at 8×19×128×256
// the same or a little faster); a workgroup runs on one core, and a block keeps its threads in
// the same pages.
fn pixel_block(x: u32, count: u32, align: u32) -> vec2<u32> {
    let len = (params.s + count * align - 1u) / (count * align) * align;
    return vec2<u32>(min(params.s, x * len), min(params.s, (x + 1u) * len));
}

// `four_pixels`' pass over the block `blk` (`pixel_block`) of image n's pixels, from pixel
// blk.x + lid, four pixels WG apart per step: fills acc[c] for the kept classes, returns (valid
// pixels, their summed pixel-term weight) as the pixel-by-pixel walk counts them.
fn stats_four(n: u32, blk: vec2<u32>, lid: u32) -> vec2<f32> {
    clear_acc(params.c);
    var counts = vec2<f32>(0.0);
    let ones = vec4<f32>(1.0);
    for (var s = blk.x + lid; s < blk.y; s = s + 4u * WG) {
        let st = four_step(n, lanes_apart(s), blk.y);
        let y = st.y;
        let ok = st.ok;
        let okf = st.okf;
        let base = st.base;
        counts.x = counts.x + dot(okf, ones);
        if PIX == PIX_CE && !DENSE {
            let yc = vec4<u32>(max(y, vec4<i32>(0)));
            let w = vec4<f32>(pixel_weight(yc.x), pixel_weight(yc.y), pixel_weight(yc.z),
                pixel_weight(yc.w));
            counts.y = counts.y + dot(okf, w);
        }
        // Walk 1 (softmax): the four online log-sum-exps (`lse_push`, lane by lane).
        var m = vec4<f32>(LSE_EMPTY.x);
        var sum = vec4<f32>(0.0);
        for (var c = 0u; c < params.c && ACT == ACT_SOFTMAX; c = c + 1u) {
            let z = logits4(base + vec4<u32>(c * params.s));
            let fw = lse_factors4(m, z);
            sum = sum * fw.f + fw.w;
            m = max(m, z);
        }
        let inv = okf / sum;
        // Walk 2: p_c = exp(z_c - max) / Σ (`px_softmax_p`), 0 at pixels that do not count.
        // exp-log also sums the errors p + g - 2pg in .w: p_c off the label, and at it 1 - p_y
        // as Σ_{c≠y} p_c over every channel (`rest`), added once the walk has them all.
        var rest = vec4<f32>(0.0);
        var c_first = FIRST_CHANNEL;
        if LOSS == R_EXPLOG {
            c_first = 0u;
        }
        for (var c = c_first; c < params.c; c = c + 1u) {
            let z = logits4(base + vec4<u32>(c * params.s));
            var p = exp(z - m) * inv;
            if ACT != ACT_SOFTMAX {
                p = prob4(z);
            }
            // 0, not a product with 0: a non-finite logit at a pixel that does not count (the
            // gradient pass reports it) leaves the sums alone.
            p = select(vec4<f32>(0.0), p, ok);
            let hot = select(vec4<f32>(0.0), ones, ok & (y == vec4<i32>(i32(c))));
            if !by_label() {
                if c >= FIRST_CHANNEL {
                    var g = hot;
                    if DENSE {
                        g = select(vec4<f32>(0.0), targets4(base + vec4<u32>(c * params.s)), ok);
                    }
                    acc[c] = acc[c] + stat4_lanes(p, g, okf);
                }
                continue;
            }
            let off = p - p * hot;
            rest = rest + off;
            if c >= FIRST_CHANNEL {
                var w = 0.0;
                if LOSS == R_EXPLOG {
                    w = dot(off, ones);
                }
                acc[c] = acc[c] + vec4<f32>(dot(p, hot), dot(select(p, p * p, SQUARED), ones),
                    dot(hot, ones), w);
            }
        }
        if LOSS == R_EXPLOG {
            for (var k = 0u; k < 4u; k = k + 1u) {
                if ok[k] && y[k] >= i32(FIRST_CHANNEL) {
                    acc[y[k]].w = acc[y[k]].w + rest[k];
                }
            }
        }
    }
    return counts;
}

// The end of the statistics pass for the chunk of classes [c0, c0 + chunk): PARTIAL_SLOTS
// partials per workgroup (`wg`: image n's workgroup x, as n·wx + x), one per subgroup where the
// device has them, of acc[0, chunk) and, with the first chunk, of the counts (valid pixels,
// their weight, the target masses) in slot C.
fn write_partials(lane: Lane, wg: u32, c0: u32, chunk: u32, counts: vec4<f32>) {
    let slots = params.c + 1u;
    let wg_row = wg * PARTIAL_SLOTS;
    let row = partials_offset() + (wg_row + part_slot(lane)) * slots;
    for (var j = 0u; j < chunk; j = j + 1u) {
        let total = part_sum4(acc[j], lane);
        if part_writer(lane) {
            scratch[row + c0 + j] = total;
        }
    }
    if c0 == 0u {
        let v = part_sum4(counts, lane);
        if part_writer(lane) {
            scratch[row + params.c] = v;
        }
        if lane.lid == 0u {
            for (var k = part_unused_from(lane); k < PARTIAL_SLOTS; k = k + 1u) {
                for (var c = 0u; c < slots; c = c + 1u) {
                    scratch[partials_offset() + (wg_row + k) * slots + c] = vec4<f32>(0.0);
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn stats_pass(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.y;
    let blk = pixel_block(wid.x, params.wx, 1u);
    var bad_labels = 0u;
    var bad_logits = 0u;
    var bad_targets = 0u;
    if four_pixels() {
        let counts = stats_four(n, blk, lane.lid);
        write_partials(lane, n * params.wx + wid.x, 0u, params.c, vec4<f32>(counts, 0.0, 0.0));
        return;
    }
    if fused_four_pixels() {
        let r = fused_four(n, blk, lane.lid);
        let counts = vec4<f32>(r.valid, 0.0, 0.0, 0.0);
        write_partials(lane, n * params.wx + wid.x, 0u, params.c, counts);
        count_bad(r.bad_labels, r.bad_logits, 0u);
        return;
    }
    for (var c0 = 0u; c0 < params.c; c0 = c0 + CHUNK) {
        let chunk = min(CHUNK, params.c - c0);
        clear_acc(CHUNK);
        var valid = 0.0;
        var valid_weight = 0.0;
        var mass = vec2<f32>(0.0);
        var dist_sum = 0.0; // distance_one_sum
        // FUSED: the first chunk's walk over the pixels also writes the gradient, as grad_pass
        // would (with every channel's logits, whatever the chunk), and counts bad input.
        let fused = FUSED && c0 == 0u;
        for (var s = blk.x + lane.lid; s < blk.y; s = s + WG) {
            let label = label_of(n * params.s + s);
            let state = pixel_state(label);
            let base = n * params.c * params.s + s;
            if fused {
                let bad = px_load(base, 0u);
                bad_logits = bad_logits + bad.x;
                bad_targets = bad_targets + bad.y;
                if state != PIX_VALID {
                    bad_labels = bad_labels + u32(state == PIX_BAD);
                    grad_zero(n, s, base);
                    continue;
                }
            }
            if LOSS == R_UNIFIED && state == PIX_IGNORED {
                // MONAI masks the probabilities to 0 and then clamps them to ε: every ignored
                // pixel adds ε to Σ P of both classes (and nothing else).
                acc[0] = acc[0] + vec4<f32>(0.0, UF_EPS, 0.0, UF_EPS);
            }
            if state != PIX_VALID {
                continue;
            }
            valid = valid + 1.0;
            if PIX == PIX_CE && !DENSE && !binary_labels() {
                valid_weight = valid_weight + pixel_weight(u32(label));
            }
            if !fused {
                px_load(base, 0u);
            }
            let lse = px_prepare(base);
            // fused_dot: Σ_c p_c dl/dp_c, summed with the statistics from the same map reads.
            var dot = 0.0;
            if LOSS == R_UNIFIED {
                // Two classes whatever C: slot 0 holds (Σ g0·P0, Σ P0, Σ g1·P1, Σ P1) of the
                // clamped probabilities, slot C's .zw the target masses (Σ g0, Σ g1).
                let u = unified_probs(base, label, lse);
                acc[0] = acc[0] + vec4<f32>(u.z * u.x, u.x, u.w * u.y, u.y);
                mass = mass + u.zw;
                continue;
            }
            if LOSS == R_WASS {
                // Grouped by label: (Σ W, count) in the slot of the pixel's class.
                let y = u32(label);
                if y >= c0 && y < c0 + chunk {
                    acc[y - c0] = acc[y - c0] + vec4<f32>(wass_distance(base, y, lse), 1.0, 0.0, 0.0);
                }
                continue;
            }
            if by_label() {
                // One-hot labels: Σ p^k takes every channel, Σ p·g and Σ g^k only the label's.
                // exp-log also sums the errors p + g - 2pg in .w: p off the label, 1 - p_y at it
                // (the other channels' p, summed here when one chunk holds them all).
                let y = hot_channel(label);
                var rest = 0.0;
                for (var j = 0u; j < chunk; j = j + 1u) {
                    let c = c0 + j;
                    if c >= FIRST_CHANNEL {
                        let p = px_prob(base, c, lse);
                        acc[j].y = acc[j].y + select(p, p * p, SQUARED);
                        if LOSS == R_EXPLOG && i32(c) != y {
                            acc[j].w = acc[j].w + p;
                            rest = rest + p;
                        }
                    }
                }
                if y >= i32(max(c0, FIRST_CHANNEL)) && y < i32(c0 + chunk) {
                    let j = u32(y) - c0;
                    acc[j].x = acc[j].x + px_prob(base, u32(y), lse);
                    acc[j].z = acc[j].z + 1.0;
                    if LOSS == R_EXPLOG {
                        if chunk < params.c || FIRST_CHANNEL > 0u {
                            rest = one_minus_prob(base, u32(y), lse);
                        }
                        acc[j].w = acc[j].w + rest;
                    }
                }
            }
            for (var j = 0u; j < chunk && !by_label(); j = j + 1u) {
                let c = c0 + j;
                if c < FIRST_CHANNEL {
                    continue;
                }
                let e = base + c * params.s;
                let p = px_prob(base, c, lse);
                let g = px_target(base, c, label);
                if LOSS == R_BOUNDARY || LOSS == R_HAUSDORFF {
                    let phi = distance_map(e, n);
                    var term = p * phi;
                    if LOSS == R_HAUSDORFF {
                        term = (p - g) * (p - g) * phi;
                    }
                    if distance_one_sum() {
                        dist_sum = dist_sum + term;
                    } else {
                        acc[j].x = acc[j].x + term;
                    }
                    if fused_dot() {
                        let d = params.lambda_region * distance_dl_dp(seg_coef(0u, c), p, g, phi);
                        dot = dot + p * d;
                        px_dl[c] = d;
                    }
                } else {
                    acc[j] = acc[j] + stat4(p, g);
                }
            }
            if fused {
                // finalize's scale of the coefficients (scratch[0].y) is lambda_region here.
                grad_pixel(n, s, select(n, 0u, BATCH), base, label, lse, params.lambda_region, 0.0, dot);
            }
        }
        if distance_one_sum() && max(c0, FIRST_CHANNEL) < c0 + chunk {
            acc[max(c0, FIRST_CHANNEL) - c0].x = dist_sum;
        }
        write_partials(lane, n * params.wx + wid.x, c0, chunk, vec4<f32>(valid, valid_weight, mass));
    }
    if FUSED {
        count_bad(bad_labels, bad_logits, bad_targets);
    }
}

// One workgroup per (slot, image), a grid of (C + 1) × N: its threads add the image's
// wx × PARTIAL_SLOTS partials of that slot, each a fixed stride of them, then one workgroup sum
// (a fixed order, so reproducible). It replaced a single thread per slot walking them all, a
// serial step: with it, and with more stats workgroups, dice's statistics pass went from 0.41
// to 0.16 ms on an H200 (BENCHMARKS.md).
@compute @workgroup_size(WG)
fn combine(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let slots = params.c + 1u;
    let c = wid.x;
    let n = wid.y;
    let per_image = params.wx * PARTIAL_SLOTS;
    let first = partials_offset() + n * per_image * slots + c;
    var v = vec4<f32>(0.0);
    for (var x = lane.lid; x < per_image; x = x + WG) {
        v = v + scratch[first + x * slots];
    }
    let total = wg_sum4(v, lane);
    if lane.lid == 0u {
        if BATCH {
            // Park the image's sum in its first partial (read only by this workgroup above);
            // combine_batch adds the images.
            scratch[first] = total;
        } else {
            stats[n * slots + c] = total;
        }
    }
}

// BATCH: the whole batch's statistics, the images' sums (parked by `combine`) added in order.
@compute @workgroup_size(WG)
fn combine_batch(lane: Lane) {
    let slots = params.c + 1u;
    let per_image = params.wx * PARTIAL_SLOTS;
    for (var c = lane.lid; c < slots; c = c + WG) {
        var v = vec4<f32>(0.0);
        for (var n = 0u; n < params.n; n = n + 1u) {
            v = v + scratch[partials_offset() + n * per_image * slots + c];
        }
        stats[c] = v;
    }
}

// ---------------------------------------------------------------------------------------------
// finalize: loss and gradient coefficients from the statistics.

// (tp, fp, fn) of one class as MONAI's compute_tp_fp_fn defines them.
fn tp_fp_fn(st: vec4<f32>) -> vec3<f32> {
    var tp = st.x;
    if SOFT {
        tp = 0.5 * (st.y + st.z - st.w);
    }
    return vec3<f32>(tp, st.y - tp, st.z - tp);
}

// A class score and its partial derivatives: (l, dl/dtp, dl/dfp, dl/dfn).
fn class_score(t: vec3<f32>) -> vec4<f32> {
    let tp = t.x;
    let fp = t.y;
    let fn_ = t.z;
    if LOSS == R_TVERSKY {
        let num = tp + params.smooth_nr;
        let den = tp + params.alpha * fp + params.beta * fn_ + params.smooth_dr;
        let l = 1.0 - num / den;
        let d2 = den * den;
        return vec4<f32>(l, -(den - num) / d2, num * params.alpha / d2, num * params.beta / d2);
    }
    // Dice: den = 2tp + fp + fn; Jaccard: den = 2(tp + fp + fn).
    let k = select(1.0, 2.0, JACCARD);
    let num = 2.0 * tp + params.smooth_nr;
    let den = 2.0 * tp + k * (fp + fn_) + params.smooth_dr;
    let l = 1.0 - num / den;
    let d2 = den * den;
    return vec4<f32>(l, -(2.0 * den - 2.0 * num) / d2, k * num / d2, k * num / d2);
}

// Coefficients of dl/dp per pixel from dl/d(tp, fp, fn): dl/dp = cT·dtp/dp + cA·dA/dp, because
// fp = A - tp and fn = B - tp (B does not depend on p).
fn coefficients(d: vec3<f32>) -> vec4<f32> {
    return vec4<f32>(d.x - d.y - d.z, d.y, 0.0, 0.0);
}

fn wass_alpha(l: u32, count: f32) -> f32 {
    if WASS_GDL {
        return 1.0 / (count + 1.0);
    }
    return select(1.0, 0.0, l == 0u);
}

// (σ(-z), σ(z)) = (P0, P1) of unified-focal's one channel (C = 1, sigmoid). P0 is not taken as
// 1 - P1: near P1 = 1 that keeps only P1's rounding, and MONAI's clamp at 1e-7 then lets a
// gradient through where the exact P0 is below it (z = 16.1 to 16.5: errors of 0.4 of the
// largest gradient against the CPU reference).
fn sigmoid_pair(z: f32) -> vec2<f32> {
    return vec2<f32>(sigmoid(-z), sigmoid(z));
}

// unified-focal's probabilities and targets of one pixel: (P0, P1, g0, g1), P clamped to
// [ε, 1 - ε]; with C = 1 the pixel is the pair (1 - σ(z), σ(z)) and (1 - t, t), as MONAI.
fn unified_probs(base: u32, label: i32, lse: f32) -> vec4<f32> {
    var p = vec2<f32>(0.0);
    var g = vec2<f32>(0.0);
    if params.c == 1u {
        p = sigmoid_pair(logits[base]);
        g.y = target_at(base, 0u, label);
        g.x = 1.0 - g.y;
    } else {
        p = vec2<f32>(prob(logits[base], lse), prob(logits[base + params.s], lse));
        g = vec2<f32>(target_at(base, 0u, label), target_at(base + params.s, 1u, label));
    }
    return vec4<f32>(uf_clamp(p), g);
}

// MONAI's clamp of the pair (P0, P1) to [ε, 1 - ε], with P_c > 1 - ε tested as the other's
// P < ε: the same in exact arithmetic (P0 + P1 = 1), and exact in f32, where P_c near 1 is not.
fn uf_clamp(p: vec2<f32>) -> vec2<f32> {
    let lo = vec2<f32>(UF_EPS);
    return select(max(p, lo), vec2<f32>(1.0 - UF_EPS), p.yx < lo);
}

// Where the clamp passes the gradient (both P in [ε, 1 - ε]; tested as in `uf_clamp`).
fn uf_inside(p: vec2<f32>) -> vec2<f32> {
    let lo = vec2<f32>(UF_EPS);
    return vec2<f32>(p >= lo) * vec2<f32>(p.yx >= lo);
}

fn gdl_weight(g: f32) -> f32 {
    if W_TYPE == 0u {
        return 1.0 / (g * g);
    }
    if W_TYPE == 1u {
        return 1.0 / g;
    }
    return 1.0;
}

fn is_inf(x: f32) -> bool {
    return is_nonfinite(x) && x == x;
}

fn stat_at(seg: u32, c: u32) -> vec4<f32> {
    return stats[seg * (params.c + 1u) + c];
}

fn set_coef(seg: u32, c: u32, v: vec4<f32>) {
    scratch[COEF_OFFSET + seg * params.c + c] = v;
}

// Items the mean divides by: (segment, kept class) pairs, or segments for generalized-dice.
fn item_count() -> f32 {
    if LOSS == R_GDL || LOSS == R_WASS {
        return f32(params.nseg);
    }
    if LOSS == R_UNIFIED {
        return 2.0 * f32(params.nseg);
    }
    return f32(params.nseg * (params.c - FIRST_CHANNEL));
}

fn item_scale() -> f32 {
    // Combo and exp-log define their own averages.
    if REDUCTION == REDUCE_MEAN && LOSS != R_COMBO && LOSS != R_EXPLOG {
        return 1.0 / item_count();
    }
    return 1.0;
}

// Boundary and Hausdorff: the pixels of one spatial mean (over the batch too with BATCH).
fn spatial_count() -> f32 {
    return f32(params.s) * select(1.0, f32(params.n), BATCH);
}

// Boundary and Hausdorff without the log: the coefficient of dl/dp that finalize_segment sets
// for every (segment, class), known before the statistics (FUSED uses it in stats_pass).
fn distance_coef() -> f32 {
    return select(item_scale(), 1.0, REDUCTION == REDUCE_NONE) / spatial_count();
}

// One segment's loss (already scaled for the reduction); writes its coefficients, and its
// unreduced losses for reduction = none.
fn finalize_segment(seg: u32) -> f32 {
    let scale = item_scale();
    let kept = params.c - FIRST_CHANNEL;
    var total = 0.0;
    if LOSS == R_COMBO {
        // One Dice over every class and pixel: -(1 - alpha)·(2I + s)/(P + G + s).
        var st = vec4<f32>(0.0);
        for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
            st = st + stat_at(seg, c);
        }
        let num = 2.0 * st.x + params.smooth_nr;
        let den = st.y + st.z + params.smooth_nr;
        let k = -(1.0 - params.alpha);
        for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
            set_coef(seg, c, vec4<f32>(k * 2.0 / den, -k * num / (den * den), 0.0, 0.0));
        }
        return k * num / den;
    }
    if LOSS == R_UNIFIED {
        // Asymmetric focal Tversky: with fn = Σg - tp and fp = ΣP - tp the Tversky index is
        // (tp + ε)/(δ·Σg + (1-δ)·ΣP + ε); loss (1 - dice0) + (1 - dice1)^(1-γ), mean over
        // (image, class) pairs (the 1/2 and (1 - weight) are in item_scale and lambda_region).
        let st = stat_at(seg, 0u);
        let mass = stat_at(seg, params.c).zw;
        let d = params.beta;
        let den = vec2<f32>(d * mass.x + (1.0 - d) * st.y + UF_EPS, d * mass.y + (1.0 - d) * st.w + UF_EPS);
        let tp = vec2<f32>(st.x, st.z);
        let dice = (tp + UF_EPS) / den;
        let q = 1.0 - dice.y;
        let fore = pow_nonneg(max(q, 0.0), 1.0 - params.gamma);
        var dfore = 0.0;
        if q > 0.0 {
            dfore = -(1.0 - params.gamma) * pow_nonneg(q, -params.gamma);
        }
        let ddice = vec2<f32>(-1.0, dfore);
        // dl/dP_c = ddice_c·(g_c / den_c - (1-δ)(tp_c + ε)/den_c²): (coefT, coefA) per class.
        let ct = ddice / den;
        let ca = -ddice * (1.0 - d) * (tp + UF_EPS) / (den * den);
        set_coef(seg, 0u, scale * vec4<f32>(ct.x, ca.x, ct.y, ca.y));
        return scale * (1.0 - dice.x + fore);
    }
    if LOSS == R_WASS {
        // MONAI's generalised Wasserstein Dice: with a_l per class, Q_l = Σ_{y=l} W and
        // n_l = #{y = l}: TP = Σ a_l (n_l - Q_l); the denominator is 2 TP + Σ Q (default) or
        // Σ a_l (2 n_l - Q_l) (GDL); f = 1 - (2 TP + smooth_nr) / (den + smooth_dr).
        var tp = 0.0;
        var den = params.smooth_dr;
        for (var l = 0u; l < params.c; l = l + 1u) {
            let st = stat_at(seg, l);
            let a = wass_alpha(l, st.y);
            tp = tp + a * (st.y - st.x);
            if WASS_GDL {
                den = den + a * (2.0 * st.y - st.x);
            } else {
                den = den + st.x;
            }
        }
        if !WASS_GDL {
            den = den + 2.0 * tp;
        }
        let num = 2.0 * tp + params.smooth_nr;
        let f = 1.0 - num / den;
        for (var l = 0u; l < params.c; l = l + 1u) {
            let a = wass_alpha(l, stat_at(seg, l).y);
            let dden = select(1.0 - 2.0 * a, -a, WASS_GDL);
            // df/dQ_l, with dTP/dQ_l = -a_l.
            let df = -((-2.0 * a) * den - num * dden) / (den * den);
            set_coef(seg, l, vec4<f32>(scale * df, 0.0, f, 0.0));
        }
        if REDUCTION == REDUCE_NONE {
            loss_out[seg] = f;
        }
        return scale * f;
    }
    if LOSS == R_EXPLOG {
        // w_dice·mean_c (-ln Dice_c)^gamma_dice; .w keeps the class weight of the CE term,
        // (Σ_k f_k / f_c)^0.5 from the class counts (0 for an absent class: never used).
        let counted = stat_at(seg, params.c).x;
        let scale_c = params.alpha / f32(params.c);
        for (var c = 0u; c < params.c; c = c + 1u) {
            let st = stat_at(seg, c);
            let num = 2.0 * st.x + params.smooth_nr;
            let den = st.y + st.z + params.smooth_nr;
            // 1 - Dice from the summed errors (Σ p + g - 2pg = Σ p + Σ g - 2 Σ pg, without the
            // subtraction that keeps few digits of a Dice near 1), and -ln Dice from it: a power
            // gamma - 1 < 0 of it is the gradient.
            let u = st.w / den;
            let d = 1.0 - u;
            let x = neg_log_one_minus(u);
            var dterm = 0.0;
            if x > 0.0 {
                dterm = -params.gamma * pow_nonneg(x, params.gamma - 1.0) / d;
            }
            let wl = select(0.0, sqrt(counted / st.z), st.z > 0.0);
            let ct = scale_c * dterm * 2.0 / den;
            let ca = -scale_c * dterm * num / (den * den);
            set_coef(seg, c, vec4<f32>(ct, ca, 0.0, wl));
            total = total + scale_c * pow_nonneg(max(x, 0.0), params.gamma);
        }
        return total;
    }
    if LOSS == R_GDL {
        // Class weights from the target mass; an infinite weight (an empty class) takes the
        // largest finite weight of the segment, as MONAI does.
        var wmax = 0.0;
        for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
            let w = gdl_weight(stat_at(seg, c).z);
            if !is_inf(w) {
                wmax = max(wmax, w);
            }
        }
        var num = params.smooth_nr;
        var den = params.smooth_dr;
        for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
            var w = gdl_weight(stat_at(seg, c).z);
            if is_inf(w) {
                w = wmax;
            }
            let t = tp_fp_fn(stat_at(seg, c));
            num = num + 2.0 * w * t.x;
            den = den + w * (2.0 * t.x + t.y + t.z);
        }
        let l = 1.0 - num / den;
        for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
            var w = gdl_weight(stat_at(seg, c).z);
            if is_inf(w) {
                w = wmax;
            }
            let d2 = den * den;
            let d = vec3<f32>(-2.0 * w / den + num * 2.0 * w / d2, num * w / d2, num * w / d2);
            // .z keeps the unreduced loss for a compound loss's element-wise output.
            set_coef(seg, c, scale * coefficients(d) + vec4<f32>(0.0, 0.0, l, 0.0));
        }
        if REDUCTION == REDUCE_NONE && PIX == PIX_NONE {
            loss_out[seg] = l;
        }
        return scale * l;
    }
    for (var c = FIRST_CHANNEL; c < params.c; c = c + 1u) {
        let st = stat_at(seg, c);
        var l = 0.0;
        var coef = vec4<f32>(0.0);
        if LOSS == R_BOUNDARY || LOSS == R_HAUSDORFF {
            // A spatial mean (over the batch too with BATCH); dl/dp = coef·φ (boundary) or
            // coef·2(p - g)·D (Hausdorff).
            let inv = 1.0 / spatial_count();
            l = st.x * inv;
            coef = vec4<f32>(inv, 0.0, 0.0, 0.0);
            if LOG_HD && REDUCTION == REDUCE_NONE {
                coef = coef / (l + 1.0);
                l = log(l + 1.0);
            }
        } else if LOSS == R_SS {
            // r·Σe·g/(Σg + smooth) + (1 - r)·Σe·(1-g)/(Σ(1-g) + smooth); coefficients of
            // dl/dp = -2 (g - p) (c1·g + c2·(1 - g)).
            let c1 = params.ss_r / (st.z + params.smooth_nr);
            let c2 = (1.0 - params.ss_r) / (st.w + params.smooth_nr);
            l = c1 * st.x + c2 * st.y;
            coef = vec4<f32>(c1, c2, 0.0, 0.0);
        } else {
            let sc = class_score(tp_fp_fn(st));
            l = sc.x;
            var dl = 1.0;
            if FOCAL_TVERSKY {
                // (Tversky loss)^γ, with d/dl = γ l^(γ-1) (0 at l = 0).
                dl = select(0.0, params.gamma * pow_nonneg(l, params.gamma - 1.0), l > 0.0);
                l = pow_nonneg(l, params.gamma);
            }
            coef = coefficients(dl * sc.yzw);
        }
        let w = region_weight(c);
        if REDUCTION == REDUCE_NONE {
            var lo = w * l;
            var co = w * coef;
            if LOG_COSH {
                // log(cosh(x)) element-wise on the unreduced losses.
                co = co * tanh(lo);
                lo = log(cosh(lo));
            }
            if PIX == PIX_NONE {
                loss_out[seg * kept + (c - FIRST_CHANNEL)] = lo;
            }
            // .z keeps the unreduced loss for a compound loss's element-wise output.
            set_coef(seg, c, vec4<f32>(co.xy, lo, 0.0));
        } else {
            set_coef(seg, c, scale * w * coef);
        }
        total = total + scale * w * l;
    }
    return total;
}

// Multiplier of the summed pixel-wise term: its mean's normaliser from the statistics' slot C
// (valid pixels, or the summed class weight of their labels for cross-entropy, as torch).
fn pixel_multiplier() -> f32 {
    if PIX == PIX_NONE {
        return 0.0;
    }
    if REDUCTION != REDUCE_MEAN || PIX == PIX_UNIFIED {
        return params.lambda_pixel * params.pixel_norm;
    }
    var valid = 0.0;
    var valid_weight = 0.0;
    for (var seg = 0u; seg < params.nseg; seg = seg + 1u) {
        let v = stat_at(seg, params.c);
        valid = valid + v.x;
        valid_weight = valid_weight + v.y;
    }
    var denom = valid * f32(params.c - FIRST_CHANNEL);
    if PIX == PIX_EXPLOG {
        denom = valid;
    }
    if PIX == PIX_CE {
        denom = select(valid_weight, valid, DENSE || binary_labels());
    }
    return params.lambda_pixel * select(0.0, 1.0 / denom, denom > 0.0);
}

@compute @workgroup_size(WG)
fn finalize(lane: Lane) {
    var acc_loss = 0.0;
    for (var seg = lane.lid; seg < params.nseg; seg = seg + WG) {
        acc_loss = acc_loss + finalize_segment(seg);
    }
    let total = wg_sum(acc_loss, lane);
    if lane.lid == 0u {
        var loss = total;
        var coef_scale = 1.0;
        if LOG_COSH && REDUCTION != REDUCE_NONE {
            // log(cosh(x)) of the reduced loss: every coefficient scales by tanh(x).
            coef_scale = tanh(total);
            loss = log(cosh(total));
        }
        if LOG_HD && REDUCTION != REDUCE_NONE {
            // log(x + 1) of the reduced loss: every coefficient scales by 1/(x + 1).
            coef_scale = 1.0 / (total + 1.0);
            loss = log(total + 1.0);
        }
        if REDUCTION == REDUCE_NONE && PIX != PIX_NONE {
            // MONAI broadcasts the region loss onto the pixel term's [N, C', *S]: the gradient of
            // the sum counts each region item once per element it covers.
            coef_scale = f32(params.s) * select(1.0, f32(params.n), BATCH);
            if LOSS == R_GDL {
                coef_scale = coef_scale * f32(params.c - FIRST_CHANNEL);
            }
        }
        scratch[0] = vec4<f32>(params.lambda_region * loss, params.lambda_region * coef_scale, pixel_multiplier(), 0.0);
        if REDUCTION != REDUCE_NONE && PIX == PIX_NONE {
            loss_out[0] = loss;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// grad_pass: dL/dz for every pixel.

// dl/dp of class c at one pixel from its segment's coefficients.
fn dl_dp(coef: vec4<f32>, p: f32, g: f32, e: u32, n: u32) -> f32 {
    if LOSS == R_BOUNDARY || LOSS == R_HAUSDORFF {
        return distance_dl_dp(coef, p, g, distance_map(e, n));
    }
    if LOSS == R_SS {
        return -2.0 * (g - p) * (coef.x * g + coef.y * (1.0 - g));
    }
    var dtp = g;
    if SOFT {
        dtp = 0.5 * (1.0 - sign(p - g));
    }
    var da = 1.0;
    if SQUARED {
        da = 2.0 * p;
    }
    return coef.x * dtp + coef.y * da;
}

// dl/dp of a distance loss, φ the map's value.
fn distance_dl_dp(coef: vec4<f32>, p: f32, g: f32, phi: f32) -> f32 {
    if LOSS == R_BOUNDARY {
        return coef.x * phi;
    }
    return coef.x * 2.0 * (p - g) * phi;
}

fn write_grad(e: u32, g: f32) {
    let v = params.grad_scale * g;
    if ACCUMULATE {
        grad[e] = grad[e] + v;
    } else {
        grad[e] = v;
    }
}

// A compound loss with reduction none writes [N, C', *S] elements (MONAI's broadcast sum).
fn store_none(n: u32, s: u32, c: u32, l: f32) {
    if REDUCTION == REDUCE_NONE && PIX != PIX_NONE && c >= FIRST_CHANNEL {
        loss_out[(n * (params.c - FIRST_CHANNEL) + c - FIRST_CHANNEL) * params.s + s] = l;
    }
}

fn class_dl_dp(seg: u32, c: u32, p: f32, g: f32, coef_scale: f32, label: i32, e: u32, n: u32) -> f32 {
    if c < FIRST_CHANNEL {
        return 0.0;
    }
    if fused_dot() {
        // The same number: the statistics walk took it with coef_scale = lambda_region.
        return px_dl[c];
    }
    if LOSS == R_WASS {
        // dl/dp_c = df/dQ_y · M[y, c].
        let y = u32(label);
        return coef_scale * scratch[COEF_OFFSET + seg * params.c + y].x * dist(y, c);
    }
    return coef_scale * dl_dp(seg_coef(seg, c), p, g, e, n);
}

// `class_dl_dp` for `by_label`: coef.y·da at every class, plus the label's coef.x (`hot_x`,
// read once per pixel) at its class `hot`. The same number: the other classes' coef.x·g_c
// are exact zeros.
fn label_dl_dp(seg: u32, c: u32, p: f32, coef_scale: f32, hot: i32, hot_x: f32) -> f32 {
    if c < FIRST_CHANNEL {
        return 0.0;
    }
    var da = 1.0;
    if SQUARED {
        da = 2.0 * p;
    }
    var d = seg_coef(seg, c).y * da;
    if i32(c) == hot {
        d = hot_x + d;
    }
    return coef_scale * d;
}

// dl/dp of class c at a valid pixel: `label_dl_dp` for one-hot labels (`hot`, `hot_x` as
// grad_pixel reads them once per pixel), else `class_dl_dp`.
fn pixel_dl_dp(seg: u32, c: u32, p: f32, g: f32, coef_scale: f32, label: i32, e: u32, n: u32, hot: i32, hot_x: f32) -> f32 {
    if by_label() {
        return label_dl_dp(seg, c, p, coef_scale, hot, hot_x);
    }
    return class_dl_dp(seg, c, p, g, coef_scale, label, e, n);
}

// 1 - p_y under the softmax of `lse`, as Σ_{c≠y} p_c: the sum keeps its digits where p_y is near
// 1 (a confident, right pixel), which 1 - p_y would lose.
fn one_minus_prob(base: u32, y: u32, lse: f32) -> f32 {
    var rest = 0.0;
    for (var c = 0u; c < params.c; c = c + 1u) {
        if c != y {
            rest = rest + px_prob(base, c, lse);
        }
    }
    return rest;
}

// -log p_y from q = 1 - p_y (as `one_minus_prob` sums it) and z_y - lse: -log(1 - q) by series
// where p_y > 1/2, lse - z_y elsewhere (no longer a difference of nearly equal numbers there).
// exp-log raises it to gamma - 1 < 0, so a small value's digits are its gradient (lse - z_y
// everywhere: errors of 4e-3 of the largest gradient with logits of scale 5).
fn neg_log_prob(q: f32, log_p: f32) -> f32 {
    if q < 0.5 {
        return neg_log_one_minus(q);
    }
    return -log_p;
}

// exp-log's pixel-wise term w_y·x^γ with x = -log p_y, per pixel (the same at every channel, so
// taken once, not per element): (log p_y, 1 - p_y, d, loss) with d = -γ·w_y·x^(γ-1), the
// gradient being d·([c = y] - p_c).
fn explog_aux(label: i32, log_py: f32, rest_p: f32) -> vec4<f32> {
    let wy = scratch[COEF_OFFSET + u32(label)].w;
    let x = -log_py;
    var d = 0.0;
    if x > 0.0 {
        d = -params.pixel_gamma * wy * pow_nonneg(x, params.pixel_gamma - 1.0);
    }
    return vec4<f32>(log_py, rest_p, d, wy * pow_nonneg(max(x, 0.0), params.pixel_gamma));
}

// The pixel-wise term of channel c: (loss, dl/dz). `lse_ce` is the log-sum-exp of the logits,
// from the pixel's last `px_softmax` (and p_c its `px_softmax_p`); `aux` is (Σ_k w_k t'_k, 0, 0, 0)
// for dense cross-entropy and `explog_aux` for exp-log.
fn pixel_term(e: u32, c: u32, z: f32, t: f32, label: i32, lse_ce: f32, aux: vec4<f32>) -> vec2<f32> {
    if PIX == PIX_COMBO {
        return bce_term(z, t, params.beta, 1.0 - params.beta);
    }
    if PIX == PIX_EXPLOG {
        // d/dz_c = d·([c = y] - p_c), the loss once, at y (`explog_aux`). At y, hit - p_y is the
        // sum of the other classes' p (aux.y): 1 - p_y from a p_y near 1 would keep only its
        // first digits, and they are multiplied by x^(γ-1).
        let hit = f32(i32(c) == label);
        var q = -px_softmax_p(z);
        if hit > 0.0 {
            q = aux.y;
        }
        return vec2<f32>(hit * aux.w, aux.z * q);
    }
    if PIX == PIX_CE {
        if CE_BINARY {
            // MONAI's DiceCE: BCE with logits, pos_weight = weight.
            return bce_term(z, t, pixel_weight(0u), 1.0);
        }
        let eps = params.label_smoothing;
        let lp = z - lse_ce;
        let p = px_softmax_p(z);
        if DENSE {
            let ts = (1.0 - eps) * t + eps / f32(params.c);
            return ce_dense_term(lp, p, ts, pixel_weight(c), aux.x);
        }
        let hit = f32(i32(c) == label);
        return ce_label_term(lp, p, hit, pixel_weight(u32(label)), pixel_weight(c), eps,
                             f32(params.c), params.pixel_weight_sum);
    }
    if PIX == PIX_FOCAL && c >= FIRST_CHANNEL {
        var af = 1.0;
        if HAS_ALPHA {
            af = focal_alpha_factor(t, params.focal_alpha);
        }
        return focal_sigmoid_term(z, t, params.pixel_gamma, af * pixel_weight(c), !DENSE);
    }
    return vec2<f32>(0.0);
}

// The coefficients of the workgroup's segment (C <= PIXEL_CACHE), copied once per thread:
// private reads instead of a storage load per element, which on a CPU driver is a gather.
var<private> coef_cache: array<vec4<f32>, PIXEL_CACHE>;

fn seg_coef(seg: u32, c: u32) -> vec4<f32> {
    if FUSED {
        return vec4<f32>(distance_coef(), 0.0, 0.0, 0.0); // no coefficients yet: stats_pass
    }
    if px_cached() {
        return coef_cache[c];
    }
    return scratch[COEF_OFFSET + seg * params.c + c];
}

// One-hot labels under a softmax outside the fused distance pass: grad_pass's load walk also sums
// what grad_pixel's first walk over the channels would (Σ_c p_c·dl/dp_c, and the sums without the
// label's class), so that walk goes: one walk over the logits instead of two (on a GPU one read
// of every logit fewer; on lavapipe dice took 34-37 ms instead of 49-50 at 8×19×128×256).
fn load_dot() -> bool {
    return by_label() && ACT == ACT_SOFTMAX && !FUSED;
}

// From `px_load_dot`, with e_c = exp(z_c - max), k = 2 with SQUARED (dl/dp_c ∝ p_c), else 1:
// (Σ_c e_c^k·coef_c.y, Σ_{c≠hot} e_c, Σ_{c≠hot} e_c^k·coef_c.y), coef.y = 0 below FIRST_CHANNEL.
var<private> px_dot: vec3<f32>;

// `px_load(base, 0u)` for `load_dot`, also summing `px_dot` in the same walk: each sum is rescaled
// with the online log-sum-exp's (see `lse_push`), by exp(old max - z)^k where z is a new max.
// Returns the number of non-finite logits.
fn px_load_dot(base: u32, seg: u32, hot: i32) -> u32 {
    var bad = 0u;
    var st = LSE_EMPTY;
    var sums = vec3<f32>(0.0);
    for (var c = 0u; c < params.c; c = c + 1u) {
        let z = logits[base + c * params.s];
        bad = bad + u32(is_nonfinite(z));
        if px_cached() {
            px_z[c] = z;
        }
        let fw = lse_factors(st, z);
        let f = fw.x;
        let w = fw.y;
        var y = 0.0;
        if c >= FIRST_CHANNEL {
            y = seg_coef(seg, c).y;
        }
        var fk = f;
        var wk = w;
        if SQUARED {
            fk = f * f;
            wk = w * w;
        }
        let other = f32(i32(c) != hot);
        sums = sums * vec3<f32>(fk, f, fk) + vec3<f32>(wk * y, other * w, other * wk * y);
        st = lse_advance(st, z, fw);
    }
    px_lse = st;
    px_inv = 1.0 / st.y;
    px_dot = sums;
    return bad;
}

// dL/dz at a valid pixel (every loss but unified-focal), from the segment's coefficients scaled
// by `coef_scale`; adds a compound loss's pixel-wise term (its gradient times `pixel_mult`) and
// returns that term's loss.
fn grad_pixel(n: u32, s: u32, seg: u32, base: u32, label: i32, lse: f32, coef_scale: f32, pixel_mult: f32, known_dot: f32) -> f32 {
    var pixel_loss = 0.0;
    // Cross-entropy runs on a softmax of the logits whatever the region term's activation.
    var lse_ce = lse;
    let ce_softmax = (PIX == PIX_CE && !binary_labels()) || PIX == PIX_EXPLOG;
    if ce_softmax && ACT != ACT_SOFTMAX {
        lse_ce = px_softmax();
    }
    // by_label: the label's class and its coef.x.
    let hot = hot_channel(label);
    var hot_x = 0.0;
    if by_label() && hot >= i32(FIRST_CHANNEL) {
        hot_x = seg_coef(seg, u32(hot)).x;
    }
    // Softmax: dL/dz_j = p_j (dl/dp_j - Σ_c p_c dl/dp_c); dense cross-entropy needs Σ w t'.
    // At the label's class y, dl/dp_y - Σ_c p_c dl/dp_c is taken as
    // dl/dp_y·Σ_{c≠y} p_c - Σ_{c≠y} p_c dl/dp_c (the same, as Σ p = 1): where p_y is near 1
    // (a confident, right pixel) the first form subtracts two nearly equal numbers.
    var dot = known_dot;
    var rest_p = 0.0;
    var rest_pd = 0.0;
    var ce_a = 0.0;
    if load_dot() {
        // p_c·dl/dp_c = coef_scale·(coef_c.y·p_c^k·(1 or 2) + [c = hot]·hot_x·p_c).
        var p_hot = 0.0;
        if hot >= 0 {
            p_hot = px_softmax_p(px_logit(base, u32(hot)));
        }
        var scale = px_inv;
        if SQUARED {
            scale = 2.0 * px_inv * px_inv;
        }
        dot = coef_scale * (px_dot.x * scale + p_hot * hot_x);
        rest_p = px_dot.y * px_inv;
        rest_pd = coef_scale * px_dot.z * scale;
    } else if !fused_dot() && (ACT == ACT_SOFTMAX || (PIX == PIX_CE && ce_softmax && DENSE)) {
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + c * params.s;
            let pc = px_prob(base, c, lse);
            let t = px_target(base, c, label);
            let pd = pc * pixel_dl_dp(seg, c, pc, t, coef_scale, label, e, n, hot, hot_x);
            dot = dot + pd;
            if i32(c) != hot {
                rest_p = rest_p + pc;
                rest_pd = rest_pd + pd;
            }
            let ts = (1.0 - params.label_smoothing) * t + params.label_smoothing / f32(params.c);
            ce_a = ce_a + pixel_weight(c) * ts;
        }
    }
    var aux = vec4<f32>(ce_a, 0.0, 0.0, 0.0);
    if PIX == PIX_EXPLOG {
        // log p_y, with 1 - p_y from the walk above (exp-log's softmax is the region's: lse_ce
        // is lse, and hot is y).
        aux = explog_aux(label, -neg_log_prob(rest_p, px_logit(base, u32(label)) - lse_ce), rest_p);
    }
    for (var c = 0u; c < params.c; c = c + 1u) {
        let e = base + c * params.s;
        let z = px_logit(base, c);
        let pc = px_prob(base, c, lse);
        let t = px_target(base, c, label);
        let d = pixel_dl_dp(seg, c, pc, t, coef_scale, label, e, n, hot, hot_x);
        var g = d;
        if ACT == ACT_SOFTMAX {
            if !fused_dot() && i32(c) == hot {
                g = pc * (d * rest_p - rest_pd);
            } else {
                g = pc * (d - dot);
            }
        } else if ACT == ACT_SIGMOID {
            g = d * pc * (1.0 - pc);
        }
        if PIX != PIX_NONE {
            let lg = pixel_term(e, c, z, t, label, lse_ce, aux);
            pixel_loss = pixel_loss + lg.x;
            g = g + pixel_mult * lg.y;
            let item = scratch[COEF_OFFSET + seg * params.c + c].z;
            store_none(n, s, c, params.lambda_region * item + pixel_mult * lg.x);
        }
        write_grad(e, g);
    }
    return pixel_loss;
}

// grad_pass four pixels at a time, as `four_pixels` does for the statistics, with the pixel
// cache: one-hot labels (`by_label`, and sensitivity-specificity's, `four_ss`) under any
// activation (the softmax's dot products are `load_dot`'s), or the Dice family's dense targets
// under a softmax (`four_dense`); the region term alone or with cross-entropy, the sigmoid
// focal term (dice-focal) or BCE (combo); no unreduced output. Without a softmax there is no first walk
// unless cross-entropy needs its log-sum-exp, and the walk only pays with cross-entropy or BCE
// beside the region term: combo's gradient pass at 2×14×64³ took 18.5-19.9 ms instead of
// 31.4-33.1 pixel by pixel, dice-ce's on sigmoid 15.7-16.8 instead of 21.4-23.9 (8×19×128×256),
// but dice's on sigmoid 16.5-22.1 instead of 14.2-16.8, and dice-focal's the same. The channels are the outer loop and the four pixels the
// lanes of vec4s, so each class's coefficients and pixel-term weight are read once for four
// pixels instead of at every element (on a CPU driver each read of a private array with a
// runtime index is a per-lane gather: they were a fifth of dice's gradient pass on lavapipe),
// and the logits are read again in the second walk instead of cached. The same numbers as
// `px_load_dot` and `grad_pixel`, lane by lane.
fn grad_four_pixels() -> bool {
    let pix = PIX == PIX_CE || PIX == PIX_FOCAL || PIX == PIX_COMBO;
    let act = ACT == ACT_SOFTMAX || PIX == PIX_CE || PIX == PIX_COMBO;
    let labels = by_label() || (four_ss() && ACT == ACT_SOFTMAX) || four_dense() || four_wass();
    return labels && !FUSED && px_cached() && !binary_labels() && LOSS != R_UNIFIED && act
        && (PIX == PIX_NONE || (pix && REDUCTION != REDUCE_NONE));
}

// Sensitivity-specificity on one-hot labels in `grad_four`: dl/dp_c = -2(g_c - p_c)·(coef.x·g_c
// + coef.y·(1 - g_c)) (`dl_dp`) is 2p_c·coef_c.y off the label, as squared_pred's Dice term with
// no coef.x, and -2(1 - p_y)·coef_y.x at it. So the walk runs the squared form with the label's
// coef.x in the place of its coef.y, and its own term at the label, where 1 - p_y is the other
// classes' sum (`rest_p`, exact also where p_y is near 1). Its gradient pass took 15.2-16.3 ms
// instead of 17.7-18.8 pixel by pixel at 8×19×128×256, 22.7-24.8 instead of 27.9-30.9 at
// 2×14×64³.
fn four_ss() -> bool {
    return LOSS == R_SS && !DENSE && !SOFT;
}

// Dense targets for the Dice family's dl/dp = coef.x·g + coef.y·p^(k-1)·k (`dl_dp`; not
// soft_label's, whose dtp depends on p), and combo's: under a softmax the dot Σ_c p_c·dl/dp_c is
// two online sums, Σ e_c·coef.x·g_c and Σ e_c^k·coef.y, and each target is read in both walks;
// with dice-ce's cross-entropy, walk 1 also sums its A = Σ_c w_c·t'_c (`ce_dense_term`). Under
// a sigmoid (`grad_four_pixels` takes it beside cross-entropy or BCE) only walk 2 reads them.
// Dense combo's gradient pass took 17.3-18.8 ms instead of 20.9-21.6, dense dice-focal's
// 24.7-25.6 instead of 26.6-27.3 (26.1-27.0 and 37.3-38.2 instead of 32.4-33.3 and 40.7-41.6
// in 3D). Dice's
// gradient pass on dense one-hot targets took 19.0-19.1 ms instead of 21.6-22.0 pixel by pixel
// at 8×19×128×256, 30.6-31.4 instead of 34.1-36.2 at 2×14×64³; dice-ce's 21.4-22.6 instead of
// 25.0-26.1, and 33.8-34.6 instead of 38.9-39.1.
fn four_dense() -> bool {
    let pix = PIX == PIX_NONE || PIX == PIX_CE || PIX == PIX_FOCAL || PIX == PIX_COMBO;
    return DENSE && !SOFT && pix
        && (LOSS == R_DICE || LOSS == R_TVERSKY || LOSS == R_GDL || LOSS == R_COMBO);
}

// The generalized Wasserstein Dice loss in `grad_four`: dl/dp_c = W_y·M[y, c] (`class_dl_dp`),
// W_y the label's coef.x, so the walk runs Dice's form with that, lane by lane, in the place of
// coef.y and no term of the label's own. Its gradient pass took 16.8-18.1 ms instead of
// 22.6-24.1 pixel by pixel at 8×19×128×256, 25.4-28.4 instead of 33.9-39.1 at 2×14×64³.
fn four_wass() -> bool {
    return LOSS == R_WASS && ACT == ACT_SOFTMAX;
}

// `grad_four`'s powers of p: 2 (p², Σ e_c²) for squared_pred and for sensitivity-specificity.
fn four_squared() -> bool {
    return SQUARED || four_ss();
}

// `grad_four`'s first walk: the softmax's log-sum-exp and dot products, which a sigmoid (or no
// activation) does without, unless cross-entropy (a softmax whatever the activation) needs the
// log-sum-exp.
fn four_first_walk() -> bool {
    return ACT == ACT_SOFTMAX || PIX == PIX_CE;
}

// What `grad_four` returns: its pixels' summed pixel-term loss and their status counts.
struct FourPixels {
    pixel_loss: f32,
    bad_labels: u32,
    bad_logits: u32,
    bad_targets: u32,
}

// `grad_four` takes four neighbouring pixels per step when every channel's plane starts on a
// multiple of four elements (S % 4 = 0, set by the host), and reads them as one vec4; otherwise
// four pixels WG apart, read one by one, as `stats_four` does. On lavapipe at 2×14×64³ the
// neighbours made dice's gradient pass 33 ms -> 20 (at 8×19×128×256 12-13 either way). (The
// statistics pass keeps the pixels WG apart: with neighbours it ran slower, 15 -> 23-25 ms.)
override ALIGNED4: bool = false;

// ALIGNED4 where `grad_four` takes it: not with dense targets, whose reads are lane by lane (four
// neighbours' targets read one by one put a load's eight lanes 16 bytes apart).
fn four_aligned() -> bool {
    return ALIGNED4 && !four_dense();
}

// The pixels a `grad_four` thread starts from in its workgroup's block (`pixel_block`, a
// multiple of four pixels long with ALIGNED4), and the four of a step from pixel s.
fn four_start(blk: vec2<u32>, lid: u32) -> u32 {
    return blk.x + select(lid, 4u * lid, four_aligned());
}

fn four_lanes(s: u32) -> vec4<u32> {
    if four_aligned() {
        return vec4<u32>(s, s + 1u, s + 2u, s + 3u);
    }
    return lanes_apart(s);
}

// The logits at the four elements `four_lanes` gives (e: their indices in channel c).
fn logits_four(e: vec4<u32>) -> vec4<f32> {
    if four_aligned() {
        return logits_vec4_at(e.x / 4u);
    }
    return logits4(e);
}

// `grad_four_pixels`' walk over the block `blk` of image n's pixels from `four_start`, four per
// step (`four_lanes`): writes dL/dz.
fn grad_four(n: u32, blk: vec2<u32>, lid: u32, coef_scale: f32, pixel_mult: f32) -> FourPixels {
    let ones = vec4<f32>(1.0);
    let zeros = vec4<f32>(0.0);
    var pixel_loss = 0.0;
    var bad_labels = 0u;
    var bad_logits = 0u;
    var bad_targets = 0u;
    let eps = params.label_smoothing;
    let classes = f32(params.c);
    for (var s = four_start(blk, lid); s < blk.y; s = s + 4u * WG) {
        let st = four_step(n, four_lanes(s), blk.y);
        let inside = st.inside;
        let y = st.y;
        let ok = st.ok;
        let okf = st.okf;
        let base = st.base;
        bad_labels = bad_labels + st.bad_labels;
        // Walk 1 (`px_load_dot`): the online log-sum-exp, the sums of `px_dot`, and at the
        // label's class its logit and coef.x (`hot_x`), picked up as the walk passes it.
        var m = vec4<f32>(LSE_EMPTY.x);
        var sum = zeros;
        var dots = array<vec4<f32>, 3>(zeros, zeros, zeros);
        var z_hot = zeros;
        var hot_x = zeros;
        var ce_a = zeros;
        // four_wass: the label's W_y (0 where the pixel does not count).
        var w_lab = zeros;
        if four_wass() {
            let yc = label_rows4(y);
            w_lab = select(zeros, vec4<f32>(coef_cache[yc.x].x, coef_cache[yc.y].x,
                coef_cache[yc.z].x, coef_cache[yc.w].x), ok);
        }
        for (var c = 0u; c < params.c && four_first_walk(); c = c + 1u) {
            let z = logits_four(base + vec4<u32>(c * params.s));
            bad_logits = bad_logits + count4(inside & is_nonfinite4(z));
            let fw = lse_factors4(m, z);
            let f = fw.f;
            let w = fw.w;
            let is_hot = y == vec4<i32>(i32(c));
            var coef = vec4<f32>(0.0);
            if c >= FIRST_CHANNEL {
                coef = coef_cache[c];
            }
            var fk = f;
            var wk = w;
            if four_squared() {
                fk = f * f;
                wk = w * w;
            }
            var other = select(ones, zeros, is_hot);
            if four_dense() {
                // dots[1] is Σ e_c·coef.x·g_c here; cross-entropy's A = Σ_c w_c·t'_c.
                let t = targets4(base + vec4<u32>(c * params.s));
                bad_targets = bad_targets + count4(inside & is_nonfinite4(t));
                other = coef.x * t;
                ce_a = ce_a + pixel_weight(c) * ((1.0 - eps) * t + eps / classes);
            }
            // The factor of e_c^k in Σ_c p_c·dl/dp_c: coef.y, lane by lane for the variants.
            var coef_y = vec4<f32>(coef.y);
            if four_ss() {
                coef_y = select(coef_y, vec4<f32>(coef.x), is_hot);
            } else if four_wass() && c >= FIRST_CHANNEL {
                coef_y = w_lab * wass_row(y, c);
            }
            dots[0] = dots[0] * fk + wk * coef_y;
            dots[1] = dots[1] * f + other * w;
            dots[2] = dots[2] * fk + other * wk * coef_y;
            sum = sum * f + w;
            m = max(m, z);
            z_hot = select(z_hot, z, is_hot);
            hot_x = select(hot_x, vec4<f32>(coef.x), is_hot);
        }
        if four_ss() {
            hot_x = -2.0 * hot_x;
        }
        if four_wass() {
            hot_x = zeros;
        }
        let inv = 1.0 / sum;
        let lse = m + log(sum);
        var scale = inv;
        if four_squared() {
            scale = 2.0 * inv * inv;
        }
        let p_hot = exp(z_hot - m) * inv;
        var dot_all = coef_scale * (dots[0] * scale + p_hot * hot_x);
        if four_dense() {
            dot_all = coef_scale * (dots[0] * scale + dots[1] * inv);
        }
        let rest_p = dots[1] * inv;
        let rest_pd = coef_scale * dots[2] * scale;
        var w_y = ones;
        if PIX == PIX_CE && HAS_PIXEL_WEIGHT {
            let yc = label_rows4(y);
            w_y = vec4<f32>(pixel_weight(yc.x), pixel_weight(yc.y), pixel_weight(yc.z),
                pixel_weight(yc.w));
        }
        // Walk 2 (`grad_pixel`): dL/dz, 0 at the pixels that do not count.
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + vec4<u32>(c * params.s);
            let z = logits_four(e);
            if !four_first_walk() {
                bad_logits = bad_logits + count4(inside & is_nonfinite4(z));
            }
            // The softmax's p (cross-entropy's whatever the activation), and the activation's.
            let p_sm = exp(z - m) * inv;
            var p = p_sm;
            if ACT != ACT_SOFTMAX {
                p = prob4(z);
            }
            let is_hot = y == vec4<i32>(i32(c));
            // The targets: one-hot from the labels, or read (`four_dense`).
            var tg = select(zeros, ones, is_hot);
            if four_dense() {
                tg = targets4(e);
                if !four_first_walk() {
                    bad_targets = bad_targets + count4(inside & is_nonfinite4(tg));
                }
            }
            var d = zeros;
            if c >= FIRST_CHANNEL {
                // `label_dl_dp`.
                var da = ones;
                if four_squared() {
                    da = 2.0 * p;
                }
                let coef = coef_cache[c];
                if four_dense() {
                    d = coef.x * tg + coef.y * da;
                } else if four_wass() {
                    d = w_lab * wass_row(y, c);
                } else {
                    var d_hot = coef.x + coef.y * da;
                    if four_ss() {
                        d_hot = -2.0 * rest_p * coef.x;
                    }
                    d = select(coef.y * da, d_hot, is_hot);
                }
                d = coef_scale * d;
            }
            var g = d;
            if four_dense() && ACT == ACT_SOFTMAX {
                g = p * (d - dot_all);
            } else if ACT == ACT_SOFTMAX {
                g = select(p * (d - dot_all), p * (d * rest_p - rest_pd), is_hot);
            } else if ACT == ACT_SIGMOID {
                g = d * p * (1.0 - p);
            }
            if PIX == PIX_CE || PIX == PIX_COMBO || (PIX == PIX_FOCAL && c >= FIRST_CHANNEL) {
                // The pixel-wise term (`pixel_term`), lane by lane, on the targets `tg` (from
                // labels, 0 or 1: the focal term's two-valued form).
                let lp = z - lse;
                let wc = pixel_weight(c);
                for (var k = 0u; k < 4u; k = k + 1u) {
                    var lg = vec2<f32>(0.0);
                    if PIX == PIX_CE && DENSE {
                        let ts = (1.0 - eps) * tg[k] + eps / classes;
                        lg = ce_dense_term(lp[k], p_sm[k], ts, wc, ce_a[k]);
                    } else if PIX == PIX_CE {
                        lg = ce_label_term(lp[k], p_sm[k], tg[k], w_y[k], wc, eps, classes,
                            params.pixel_weight_sum);
                    } else if PIX == PIX_COMBO {
                        lg = bce_term(z[k], tg[k], params.beta, 1.0 - params.beta);
                    } else {
                        var aw = wc;
                        if HAS_ALPHA {
                            aw = aw * focal_alpha_factor(tg[k], params.focal_alpha);
                        }
                        lg = focal_sigmoid_term(z[k], tg[k], params.pixel_gamma, aw, !DENSE);
                    }
                    pixel_loss = pixel_loss + lg.x * okf[k];
                    g[k] = g[k] + pixel_mult * lg.y;
                }
            }
            g = select(zeros, g, ok);
            for (var k = 0u; k < 4u; k = k + 1u) {
                if inside[k] {
                    write_grad(e[k], g[k]);
                }
            }
        }
    }
    return FourPixels(pixel_loss, bad_labels, bad_logits, bad_targets);
}

// The fused distance pass (boundary, hausdorff-dt) four pixels at a time, WG apart as
// `stats_four` walks them, on one-hot labels under a softmax with a reduced loss
// (`distance_one_sum`): no pixel cache and no private array of dl/dp, each logit and map value
// read twice instead. On lavapipe the pass took 18.4-18.8 ms instead of 21.9-24.4 (boundary)
// and 17.7-17.9 instead of 20.6-23.4 (hausdorff-dt) at 8×19×128×256, 30.3-30.6 instead of
// 35.5-42.6 at 2×14×64³; with `grad_four`'s neighbouring pixels (ALIGNED4) it was slower than
// pixel by pixel (21 -> 38 ms), the map's reads being four scalar loads either way.
// With K = λ·distance_coef() (every class's coefficient), e_c = exp(z_c - max), Σ = Σ_c e_c,
// y the label and g one-hot:
//   boundary:  l = Σ_c p_c·φ_c,          dl/dp_c = K·φ_c;
//   hausdorff: l = Σ_c (p_c - g_c)²·φ_c, dl/dp_c = 2K·(p_c - g_c)·φ_c;
// over the kept classes (φ = 0 below FIRST_CHANNEL). Walk 1 sums, online, the other classes'
// Σ_{c≠y} e_c (so 1 - p_y keeps its digits where p_y is near 1) and Σ_{c≠y} e_c·φ_c
// (boundary) or Σ_{c≠y} e_c²·φ_c (hausdorff), and picks up z_y and φ_y; then the loss and
// the dot Σ_c p_c·dl/dp_c are closed forms, and walk 2 reads each logit and map value again for
// dL/dz_c = p_c·(dl/dp_c - dot), which at the label is taken without the difference:
//   boundary:  p_y·K·((1 - p_y)·φ_y - Σ_{c≠y} p_c·φ_c),
//   hausdorff: -2K·p_y·((1 - p_y)²·φ_y + Σ_{c≠y} p_c²·φ_c).
fn fused_four_pixels() -> bool {
    return FUSED && px_cached() && ACT == ACT_SOFTMAX && !DENSE && distance_one_sum()
        && !binary_labels() && FIRST_CHANNEL < params.c;
}

struct FusedFour {
    valid: f32,
    bad_labels: u32,
    bad_logits: u32,
}

// The map at four elements of image n (`distance_map`).
fn map4(e: vec4<u32>, n: u32) -> vec4<f32> {
    return vec4<f32>(distance_map(e.x, n), distance_map(e.y, n), distance_map(e.z, n),
        distance_map(e.w, n));
}

// `fused_four_pixels`' walk over the block `blk` of image n's pixels: writes dL/dz, the summed
// loss into acc[FIRST_CHANNEL].x (the slot `distance_one_sum` keeps), and returns the counts.
fn fused_four(n: u32, blk: vec2<u32>, lid: u32) -> FusedFour {
    let ones = vec4<f32>(1.0);
    let zeros = vec4<f32>(0.0);
    clear_acc(params.c);
    let k = params.lambda_region * distance_coef();
    var loss = 0.0;
    var r = FusedFour(0.0, 0u, 0u);
    for (var s = blk.x + lid; s < blk.y; s = s + 4u * WG) {
        let st = four_step(n, lanes_apart(s), blk.y);
        let inside = st.inside;
        let y = st.y;
        let ok = st.ok;
        let base = st.base;
        r.bad_labels = r.bad_labels + st.bad_labels;
        r.valid = r.valid + dot(st.okf, ones);
        // Walk 1.
        var m = vec4<f32>(LSE_EMPTY.x);
        var sum = zeros;
        var rest = zeros;
        var rest_phi = zeros;
        var z_hot = zeros;
        var phi_hot = zeros;
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + vec4<u32>(c * params.s);
            let z = logits4(e);
            r.bad_logits = r.bad_logits + count4(inside & is_nonfinite4(z));
            let fw = lse_factors4(m, z);
            let is_hot = y == vec4<i32>(i32(c));
            let other = select(ones, zeros, is_hot);
            var phi = zeros;
            if c >= FIRST_CHANNEL {
                phi = map4(e, n);
            }
            if LOSS == R_HAUSDORFF {
                rest_phi = rest_phi * fw.f * fw.f + other * fw.w * fw.w * phi;
            } else {
                rest_phi = rest_phi * fw.f + other * fw.w * phi;
            }
            rest = rest * fw.f + other * fw.w;
            sum = sum * fw.f + fw.w;
            m = max(m, z);
            z_hot = select(z_hot, z, is_hot);
            phi_hot = select(phi_hot, phi, is_hot);
        }
        let inv = 1.0 / sum;
        let p_hot = exp(z_hot - m) * inv;
        let rest_p = rest * inv;
        // Σ_{c≠y} p_c·φ_c, or Σ_{c≠y} p_c²·φ_c.
        var other_phi = rest_phi * inv;
        if LOSS == R_HAUSDORFF {
            other_phi = other_phi * inv;
        }
        var l = other_phi + p_hot * phi_hot;
        var dot_all = k * l;
        var g_hot = p_hot * k * (rest_p * phi_hot - other_phi);
        if LOSS == R_HAUSDORFF {
            l = other_phi + rest_p * rest_p * phi_hot;
            dot_all = 2.0 * k * (other_phi - p_hot * rest_p * phi_hot);
            g_hot = -2.0 * k * p_hot * l;
        }
        loss = loss + dot(select(zeros, l, ok), ones);
        // Walk 2: dL/dz, 0 at the pixels that do not count.
        for (var c = 0u; c < params.c; c = c + 1u) {
            let e = base + vec4<u32>(c * params.s);
            let p = exp(logits4(e) - m) * inv;
            var d = zeros;
            if c >= FIRST_CHANNEL {
                d = k * map4(e, n);
                if LOSS == R_HAUSDORFF {
                    d = 2.0 * p * d;
                }
            }
            var g = select(p * (d - dot_all), g_hot, y == vec4<i32>(i32(c)));
            g = select(zeros, g, ok);
            for (var q = 0u; q < 4u; q = q + 1u) {
                if inside[q] {
                    write_grad(e[q], g[q]);
                }
            }
        }
    }
    acc[FIRST_CHANNEL].x = loss;
    return r;
}

// dL/dz = 0 at an ignored (or bad) pixel, and 0 in a compound loss's unreduced output.
fn grad_zero(n: u32, s: u32, base: u32) {
    for (var c = 0u; c < params.c; c = c + 1u) {
        write_grad(base + c * params.s, 0.0);
        store_none(n, s, c, 0.0);
    }
}

@compute @workgroup_size(WG)
fn grad_pass(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    // Workgroup (x, n) walks image n's pixels: n, and the segment's coefficients, are uniform.
    let n = wid.y;
    if px_cached() {
        let seg = select(n, 0u, BATCH);
        for (var c = 0u; c < params.c; c = c + 1u) {
            coef_cache[c] = scratch[COEF_OFFSET + seg * params.c + c];
        }
    }
    let gx = params.nwg / params.n;
    let coef_scale = scratch[0].y;
    let pixel_mult = scratch[0].z;
    var pixel_loss = 0.0;
    var bad_labels = 0u;
    var bad_logits = 0u;
    var bad_targets = 0u;
    let blk = pixel_block(wid.x, gx, select(1u, 4u, grad_four_pixels() && four_aligned()));
    if grad_four_pixels() {
        let r = grad_four(n, blk, lane.lid, coef_scale, pixel_mult);
        pixel_loss = r.pixel_loss;
        bad_labels = r.bad_labels;
        bad_logits = r.bad_logits;
        bad_targets = r.bad_targets;
    } else {
        for (var s = blk.x + lane.lid; s < blk.y; s = s + WG) {
            let p = n * params.s + s;
            let base = n * params.c * params.s + s;
            let label = label_of(p);
            let seg = select(n, 0u, BATCH);
            if load_dot() {
                bad_logits = bad_logits + px_load_dot(base, seg, hot_channel(label));
            } else {
                let bad = px_load(base, 0u);
                bad_logits = bad_logits + bad.x;
                bad_targets = bad_targets + bad.y;
            }
            let state = pixel_state(label);
            if state != PIX_VALID {
                bad_labels = bad_labels + u32(state == PIX_BAD);
                grad_zero(n, s, base);
                continue;
            }
            let lse = px_prepare(base);
            if LOSS == R_UNIFIED {
                pixel_loss = pixel_loss
                    + unified_pixel(seg, base, label, lse, coef_scale, pixel_mult);
                continue;
            }
            pixel_loss = pixel_loss
                + grad_pixel(n, s, seg, base, label, lse, coef_scale, pixel_mult, 0.0);
        }
    }
    count_bad(bad_labels, bad_logits, bad_targets);
    if PIX != PIX_NONE && REDUCTION != REDUCE_NONE {
        let total = wg_sum(pixel_loss, lane);
        if lane.lid == 0u {
            scratch[pixel_partials_offset() + n * gx + wid.x] = vec4<f32>(total, 0.0, 0.0, 0.0);
        }
    }
}

// unified-focal at one pixel: writes dL/dz and returns its asymmetric focal (AFL) loss.
fn unified_pixel(seg: u32, base: u32, label: i32, lse: f32, coef_scale: f32, pixel_mult: f32) -> f32 {
    let u = unified_probs(base, label, lse);
    let pc = u.xy;
    let g = u.zw;
    let co = scratch[COEF_OFFSET + seg * params.c];
    // Tversky part: dl/dP_c = coefT_c·g_c + coefA_c.
    var d = coef_scale * (vec2<f32>(co.x, co.z) * g + vec2<f32>(co.y, co.w));
    // AFL: (1-δ)(1-P0)^γ·(-g0 ln P0) + δ·(-g1 ln P1).
    let dl = params.beta;
    let gm = params.gamma;
    // 1 - P0 is P1 (clamped alike), not a difference that loses P1's digits when P0 is near 1
    // (a confident background pixel, where (1 - P0)^(γ-1) magnifies them).
    let q0 = pc.y;
    let afl = (1.0 - dl) * pow_nonneg(q0, gm) * (-g.x * log(pc.x)) + dl * (-g.y * log(pc.y));
    let dafl0 = (1.0 - dl) * g.x * (gm * pow_nonneg(q0, gm - 1.0) * log(pc.x) - pow_nonneg(q0, gm) / pc.x);
    let dafl1 = -dl * g.y / pc.y;
    d = d + pixel_mult * vec2<f32>(dafl0, dafl1);
    // The clamp passes no gradient where it clamped.
    var p = vec2<f32>(0.0);
    if params.c == 1u {
        p = sigmoid_pair(logits[base]);
    } else {
        p = vec2<f32>(prob(logits[base], lse), prob(logits[base + params.s], lse));
    }
    d = d * uf_inside(p);
    if params.c == 1u {
        // P1 = σ(z), P0 = 1 - σ(z) = σ(-z).
        write_grad(base, (d.y - d.x) * p.y * p.x);
    } else {
        let dot = p.x * d.x + p.y * d.y;
        write_grad(base, p.x * (d.x - dot));
        write_grad(base + params.s, p.y * (d.y - dot));
    }
    return afl;
}

@compute @workgroup_size(WG)
fn loss_final(lane: Lane) {
    var acc_loss = 0.0;
    for (var i = lane.lid; i < params.nwg; i = i + WG) {
        acc_loss = acc_loss + scratch[pixel_partials_offset() + i].x;
    }
    let total = wg_sum(acc_loss, lane);
    if lane.lid == 0u {
        let g = scratch[0];
        loss_out[0] = g.x + g.z * total;
    }
}
