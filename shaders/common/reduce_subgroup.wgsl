// Workgroup sum with subgroup operations, for adapters with the SUBGROUP feature. Same contract
// as common/reduce_shared.wgsl (the two files are alternatives; the host includes one).
//
// No subgroup size is assumed: each subgroup adds its lanes, its first lane parks the sum in slot
// `subgroup_id`, and every thread then adds the `num_subgroups` slots in index order. The order is
// fixed for a given device, so results are bit-identical run to run.

struct Lane {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
}

var<workgroup> wg_scratch: array<f32, WG>;
var<workgroup> wg_scratch4: array<vec4<f32>, WG>;

fn wg_sum(v: f32, lane: Lane) -> f32 {
    let s = subgroupAdd(v);
    if lane.sg_lane == 0u {
        wg_scratch[lane.sg_id] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < lane.n_sg; i = i + 1u) {
        total = total + wg_scratch[i];
    }
    workgroupBarrier();
    return total;
}

// Four sums at once.
fn wg_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
    let s = subgroupAdd(v);
    if lane.sg_lane == 0u {
        wg_scratch4[lane.sg_id] = s;
    }
    workgroupBarrier();
    var total = vec4<f32>(0.0);
    for (var i = 0u; i < lane.n_sg; i = i + 1u) {
        total = total + wg_scratch4[i];
    }
    workgroupBarrier();
    return total;
}
