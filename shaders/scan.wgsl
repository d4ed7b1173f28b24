// The public segmented inclusive scan: out[g, i] = Σ_{j <= i} in[g, j] for every segment g of a
// flattened [segments, len] f32 array (common/segscan.wgsl). CPU mirror: src/cpu/sort.rs.

#include "common/grid.wgsl"
#include "common/scan.wgsl"
#include "common/segscan.wgsl"

// Must match `ScanParams` in src/sort.rs.
struct Params {
    segments: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
// [tile sums, then offsets (segments · tiles per segment) | segment totals (segments)]
@group(0) @binding(3) var<storage, read_write> work: array<f32>;

fn segscan_segments() -> u32 {
    return params.segments;
}
fn segscan_len() -> u32 {
    return params.len;
}
fn segscan_in(j: u32) -> f32 {
    return input[j];
}
fn segscan_store(j: u32, v: f32) {
    output[j] = v;
}
fn segscan_tile_get(t: u32) -> f32 {
    return work[t];
}
fn segscan_tile_set(t: u32, v: f32) {
    work[t] = v;
}
fn segscan_total_set(g: u32, v: f32) {
    work[params.segments * segscan_tiles_per_segment() + g] = v;
}

// Adds each tile's offset to its tile-local sums.
@compute @workgroup_size(WG)
fn segscan_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params.segments * params.len;
    for (var j = gid.x; j < total; j = j + nwg.x * WG) {
        let g = j / params.len;
        output[j] = output[j] + segscan_offset(g, j - g * params.len);
    }
}
