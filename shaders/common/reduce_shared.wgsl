// Workgroup sum without subgroup operations: a shared-memory tree, the fallback for adapters
// without the SUBGROUP feature. Deterministic: the tree has a fixed shape.
//
// Needs `WG` (common/grid.wgsl). `wg_sum` must be called in uniform control flow by all threads;
// every thread gets the total.

struct Lane {
    @builtin(local_invocation_index) lid: u32,
}

var<workgroup> wg_scratch: array<f32, WG>;
var<workgroup> wg_scratch4: array<vec4<f32>, WG>;

fn wg_sum(v: f32, lane: Lane) -> f32 {
    wg_scratch[lane.lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lane.lid < stride {
            wg_scratch[lane.lid] = wg_scratch[lane.lid] + wg_scratch[lane.lid + stride];
        }
        workgroupBarrier();
    }
    let total = wg_scratch[0];
    // The scratch array is reused by the next call: nobody may write before everybody has read.
    workgroupBarrier();
    return total;
}

// Four sums at once (one tree instead of four).
fn wg_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
    wg_scratch4[lane.lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lane.lid < stride {
            wg_scratch4[lane.lid] = wg_scratch4[lane.lid] + wg_scratch4[lane.lid + stride];
        }
        workgroupBarrier();
    }
    let total = wg_scratch4[0];
    workgroupBarrier();
    return total;
}

// The position of this thread in the order of the workgroup scans below: its local index.
fn lane_rank(lane: Lane) -> u32 {
    return lane.lid;
}

// Sixteen u32 per thread, as four vec4 (the sort's packed digit counters).
struct U32x16 {
    a: vec4<u32>,
    b: vec4<u32>,
    c: vec4<u32>,
    d: vec4<u32>,
}

var<workgroup> wg_scan8: array<array<vec4<u32>, 2>, WG>;

// Exclusive scan of eight u32 per thread (Hillis–Steele, fixed shape).
fn wg_exclusive_scan_u32x8(a: vec4<u32>, b: vec4<u32>, lane: Lane) -> array<vec4<u32>, 2> {
    wg_scan8[lane.lid] = array<vec4<u32>, 2>(a, b);
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off * 2u) {
        var x = wg_scan8[lane.lid];
        if lane.lid >= off {
            let y = wg_scan8[lane.lid - off];
            x = array<vec4<u32>, 2>(x[0] + y[0], x[1] + y[1]);
        }
        workgroupBarrier();
        wg_scan8[lane.lid] = x;
        workgroupBarrier();
    }
    let r = wg_scan8[lane.lid];
    workgroupBarrier();
    return array<vec4<u32>, 2>(r[0] - a, r[1] - b);
}

// Exclusive scan of sixteen u32 per thread in `lane_rank` order: two scans of eight, so that
// the shared array stays at 8 KiB (a 16 KiB one would take all of WebGPU's default
// workgroup memory).
fn wg_exclusive_scan_u32x16(v: U32x16, lane: Lane) -> U32x16 {
    let lo = wg_exclusive_scan_u32x8(v.a, v.b, lane);
    let hi = wg_exclusive_scan_u32x8(v.c, v.d, lane);
    return U32x16(lo[0], lo[1], hi[0], hi[1]);
}

// Exclusive scan of one f32 per thread in `lane_rank` order (Hillis–Steele, fixed shape): the
// inclusive scan of the thread before, so no subtraction rounds it.
var<workgroup> wg_scan_f32: array<f32, WG>;

fn wg_exclusive_scan_f32(v: f32, lane: Lane) -> f32 {
    wg_scan_f32[lane.lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off * 2u) {
        var x = wg_scan_f32[lane.lid];
        if lane.lid >= off {
            x = x + wg_scan_f32[lane.lid - off];
        }
        workgroupBarrier();
        wg_scan_f32[lane.lid] = x;
        workgroupBarrier();
    }
    var r = 0.0;
    if lane.lid > 0u {
        r = wg_scan_f32[lane.lid - 1u];
    }
    workgroupBarrier();
    return r;
}
// Partial sums written to memory (see common/reduce_subgroup.wgsl): without subgroups, one
// partial per workgroup from the shared-memory tree. An override, as there, that the host sets to
// the same value.
override PARTIAL_SLOTS: u32 = 1u;

fn part_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
    return wg_sum4(v, lane);
}

fn part_slot(lane: Lane) -> u32 {
    return 0u;
}

fn part_writer(lane: Lane) -> bool {
    return lane.lid == 0u;
}

fn part_unused_from(lane: Lane) -> u32 {
    return 1u;
}
