// The crate's deterministic sum, on its own: a two-level reduction of an f32 array.
// Every loss family uses the same pieces (common/reduce.wgsl's `wg_sum`, then a one-workgroup pass
// over the partials in index order); this file exposes them for tests and benches.
// CPU mirror: src/cpu/reduce.rs.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"

struct Params {
    len: u32,
    nwg: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial_sums: array<f32>;
@group(0) @binding(3) var<storage, read_write> total: array<f32>;

// Pass 1: each thread adds its grid-stride elements, each workgroup its threads.
@compute @workgroup_size(WG)
fn partials(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let threads = params.nwg * WG;
    var acc = 0.0;
    for (var i = wid.x * WG + lane.lid; i < params.len; i = i + threads) {
        acc = acc + input[i];
    }
    let sum = wg_sum(acc, lane);
    if lane.lid == 0u {
        partial_sums[wid.x] = sum;
    }
}

// Pass 2: one workgroup adds the partials, each thread a fixed strided subset.
@compute @workgroup_size(WG)
fn combine(lane: Lane) {
    var acc = 0.0;
    for (var i = lane.lid; i < params.nwg; i = i + WG) {
        acc = acc + partial_sums[i];
    }
    let sum = wg_sum(acc, lane);
    if lane.lid == 0u {
        total[0] = sum;
    }
}

// The bandwidth roofline of the benches: reads `len` f32 and writes them to `partial_sums`
// (sized `len` for this use), nothing else.
@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < params.len; i = i + nwg.x * WG) {
        partial_sums[i] = input[i];
    }
}
