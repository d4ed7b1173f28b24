// The public segmented inclusive scan: out[g, i] = Σ_{j <= i} in[g, j] for every segment g of a
// flattened [segments, len] f32 array (common/segscan.wgsl). CPU mirror: src/cpu/sort.rs.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
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
fn segscan_tile_get(t: u32) -> f32 {
    return work[t];
}
fn segscan_tile_set(t: u32, v: f32) {
    work[t] = v;
}
fn segscan_total_set(g: u32, v: f32) {
    work[params.segments * segscan_tiles_per_segment() + g] = v;
}

// Each thread's elements: the sum before them, then one addition per element.
@compute @workgroup_size(WG)
fn segscan_apply(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = params.segments * segscan_tiles_per_segment();
    for (var t = wid.x; t < tiles; t = t + nwg.x) {
        let tile = segscan_tile(t);
        let first = tile.y + lane_rank(lane) * SCAN_ITEMS;
        let end = min(first + SCAN_ITEMS, params.len);
        let base = tile.x * params.len;
        var x: array<f32, SCAN_ITEMS>;
        var own = 0.0;
        for (var i = 0u; i < SCAN_ITEMS; i = i + 1u) {
            if first + i < end {
                x[i] = input[base + first + i];
                own = own + x[i];
            }
        }
        var run = segscan_prefix(t, own, lane);
        for (var i = 0u; i < SCAN_ITEMS; i = i + 1u) {
            if first + i < end {
                run = run + x[i];
                output[base + first + i] = run;
            }
        }
    }
}
