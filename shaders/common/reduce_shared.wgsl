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
