// Workgroup sum with subgroup operations, for adapters with the SUBGROUP feature. Same contract
// as common/reduce_shared.wgsl (the two files are alternatives; the host includes one).
//
// No subgroup size is assumed: each subgroup adds its lanes, its first lane parks the sum in slot
// `subgroup_id`, and thread 0 then adds the `num_subgroups` slots in index order. The order is
// fixed for a given device, so results are bit-identical run to run.

struct Lane {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_size) sg_size: u32,
}

var<workgroup> wg_scratch: array<f32, WG>;
var<workgroup> wg_scratch4: array<vec4<f32>, WG>;
var<workgroup> wg_total: f32;
var<workgroup> wg_total4: vec4<f32>;

// Thread 0 adds the subgroups' sums and the others read its total: a loop bounded by
// `num_subgroups` in every thread runs about fifteen times slower on lavapipe (measured: one call
// over 1024 workgroups 40 ms against 2.8 ms), and the order of the additions is the same.
fn wg_sum(v: f32, lane: Lane) -> f32 {
    let s = subgroupAdd(v);
    if lane.sg_lane == 0u {
        wg_scratch[lane.sg_id] = s;
    }
    workgroupBarrier();
    if lane.lid == 0u {
        var total = 0.0;
        for (var i = 0u; i < lane.n_sg; i = i + 1u) {
            total = total + wg_scratch[i];
        }
        wg_total = total;
    }
    // Safe to reuse after this barrier: a later call writes wg_scratch only after thread 0 has
    // read it, and wg_total only after every thread passed that call's first barrier.
    workgroupBarrier();
    return wg_total;
}

// Four sums at once.
fn wg_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
    let s = subgroupAdd(v);
    if lane.sg_lane == 0u {
        wg_scratch4[lane.sg_id] = s;
    }
    workgroupBarrier();
    if lane.lid == 0u {
        var total = vec4<f32>(0.0);
        for (var i = 0u; i < lane.n_sg; i = i + 1u) {
            total = total + wg_scratch4[i];
        }
        wg_total4 = total;
    }
    workgroupBarrier();
    return wg_total4;
}

// ---------------------------------------------------------------------------------------------
// Partial sums written to memory, for a pass whose partials a later pass combines: one partial per
// subgroup, with no workgroup barrier (on lavapipe a pass with twenty workgroup sums spent a
// third of its time in them). A workgroup owns PARTIAL_SLOTS slots: WebGPU's smallest subgroup
// is 4 lanes, so at most WG / 4 subgroups; thread 0 writes zeros to the slots past
// `num_subgroups` (`part_unused_from`), so a reader adds all PARTIAL_SLOTS in a fixed order.
// The host sets it to WG over the adapter's smallest subgroup size (`Kernels::partial_slots`),
// so no slot is left empty where the subgroup size is fixed; the default holds for any adapter.
override PARTIAL_SLOTS: u32 = WG / 4u;

fn part_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
    return subgroupAdd(v);
}

fn part_slot(lane: Lane) -> u32 {
    return lane.sg_id;
}

fn part_writer(lane: Lane) -> bool {
    return lane.sg_lane == 0u;
}

fn part_unused_from(lane: Lane) -> u32 {
    return lane.n_sg;
}

// The position of this thread in the order of the workgroup scans below: subgroup by subgroup,
// lane by lane. Kernels that hand out work by this rank get the same results as with the
// shared-memory variant's local index, whatever order the hardware gives its lanes.
fn lane_rank(lane: Lane) -> u32 {
    return lane.sg_id * lane.sg_size + lane.sg_lane;
}

// Sixteen u32 per thread, as four vec4 (the sort's packed digit counters).
struct U32x16 {
    a: vec4<u32>,
    b: vec4<u32>,
    c: vec4<u32>,
    d: vec4<u32>,
}

// One slot per subgroup: at most WG / 4 (WebGPU's smallest subgroup has 4 lanes).
var<workgroup> wg_scan16: array<U32x16, WG / 4u>;

// Exclusive scan of sixteen u32 per thread in `lane_rank` order: a subgroup scan, then the
// subgroups' totals added in subgroup order (integers: exact, whatever the grouping). Sixteen at
// once so that the sort's count kernel pays the three barriers once per tile.
fn wg_exclusive_scan_u32x16(v: U32x16, lane: Lane) -> U32x16 {
    let incl = U32x16(subgroupInclusiveAdd(v.a), subgroupInclusiveAdd(v.b),
                      subgroupInclusiveAdd(v.c), subgroupInclusiveAdd(v.d));
    if lane.sg_lane == lane.sg_size - 1u {
        wg_scan16[lane.sg_id] = incl;
    }
    workgroupBarrier();
    // Thread 0 turns the subgroup totals into exclusive prefixes (a loop bounded by the subgroup
    // id in every thread is slow on lavapipe, as in `wg_sum`).
    if lane.lid == 0u {
        var run = U32x16(vec4<u32>(0u), vec4<u32>(0u), vec4<u32>(0u), vec4<u32>(0u));
        for (var i = 0u; i < lane.n_sg; i = i + 1u) {
            let t = wg_scan16[i];
            wg_scan16[i] = run;
            run = U32x16(run.a + t.a, run.b + t.b, run.c + t.c, run.d + t.d);
        }
    }
    workgroupBarrier();
    let p = wg_scan16[lane.sg_id];
    // Everyone has read its prefix before a later call overwrites the slots.
    workgroupBarrier();
    return U32x16(p.a + incl.a - v.a, p.b + incl.b - v.b, p.c + incl.c - v.c, p.d + incl.d - v.d);
}

// Exclusive scan of one f32 per thread in `lane_rank` order: a subgroup scan, then the
// subgroups' totals added in subgroup order by thread 0. The grouping is fixed for a device, so
// the sums are reproducible; integer-valued inputs are exact below 2^24.
var<workgroup> wg_scan_f32: array<f32, WG>;

fn wg_exclusive_scan_f32(v: f32, lane: Lane) -> f32 {
    let excl = subgroupExclusiveAdd(v);
    if lane.sg_lane == lane.sg_size - 1u {
        wg_scan_f32[lane.sg_id] = excl + v;
    }
    workgroupBarrier();
    if lane.lid == 0u {
        var running = 0.0;
        for (var i = 0u; i < lane.n_sg; i = i + 1u) {
            let t = wg_scan_f32[i];
            wg_scan_f32[i] = running;
            running = running + t;
        }
    }
    workgroupBarrier();
    let prefix = wg_scan_f32[lane.sg_id];
    workgroupBarrier();
    return prefix + excl;
}
