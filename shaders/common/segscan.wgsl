// A segmented inclusive scan over fixed-length segments, reduce-then-scan, shared by the Lovász
// losses and the public scan (shaders/scan.wgsl). Needs common/reduce.wgsl.
//
// The input is a flattened [segments, len] array, processed in tiles of SCAN_TILE elements that
// never straddle a segment; in a tile, the thread of `lane_rank` r owns the SCAN_ITEMS
// consecutive elements from r · SCAN_ITEMS. Passes:
//   segscan_reduce   every tile's sum (segscan_tile_set);
//   segscan_totals   one thread per segment turns its tile sums into offsets, and its total;
//   (the includer's pass) reads its tile again and calls `segscan_prefix` for the sum of
//   everything before its first element, then adds its own elements one by one.
// Nothing per element is written in between: the input is read twice and each result written
// once, and the barriers are paid once per SCAN_TILE = 4096 elements (on lavapipe a tile of
// 1024 with a shared-memory scan cost Lovász a sixth of its time).
// The includer defines:
//   fn segscan_segments() -> u32, fn segscan_len() -> u32   (segments, elements per segment)
//   fn segscan_in(j: u32) -> f32                             (element j of the input)
//   fn segscan_tile_get(t: u32) -> f32, fn segscan_tile_set(t: u32, v: f32)
//   fn segscan_total_set(g: u32, v: f32)                     (the sum of segment g)

const SCAN_ITEMS: u32 = 16u;   // SCAN_TILE / WG in src/sort.rs
const SCAN_TILE: u32 = WG * SCAN_ITEMS;

fn segscan_tiles_per_segment() -> u32 {
    return (segscan_len() + SCAN_TILE - 1u) / SCAN_TILE;
}

// Tile t's segment and the position of its first element in it.
fn segscan_tile(t: u32) -> vec2<u32> {
    let tps = segscan_tiles_per_segment();
    let g = t / tps;
    return vec2<u32>(g, (t - g * tps) * SCAN_TILE);
}

@compute @workgroup_size(WG)
fn segscan_reduce(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = segscan_segments() * segscan_tiles_per_segment();
    let len = segscan_len();
    for (var t = wid.x; t < tiles; t = t + nwg.x) {
        let tile = segscan_tile(t);
        let first = tile.y + lane_rank(lane) * SCAN_ITEMS;
        let end = min(first + SCAN_ITEMS, len);
        var sum = 0.0;
        for (var i = 0u; i < SCAN_ITEMS; i = i + 1u) {
            if first + i < end {
                sum = sum + segscan_in(tile.x * len + first + i);
            }
        }
        let total = wg_sum(sum, lane);
        if lane.lid == 0u {
            segscan_tile_set(t, total);
        }
    }
}

@compute @workgroup_size(WG)
fn segscan_totals(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tps = segscan_tiles_per_segment();
    for (var g = gid.x; g < segscan_segments(); g = g + nwg.x * WG) {
        var run = 0.0;
        for (var t = 0u; t < tps; t = t + 1u) {
            let v = segscan_tile_get(g * tps + t);
            segscan_tile_set(g * tps + t, run);
            run = run + v;
        }
        segscan_total_set(g, run);
    }
}

// The sum of segment g's elements before this thread's first one in tile t (after
// segscan_totals), from `own`, the sum of the thread's elements. Every thread of the workgroup
// calls it (a workgroup scan).
fn segscan_prefix(t: u32, own: f32, lane: Lane) -> f32 {
    return segscan_tile_get(t) + wg_exclusive_scan_f32(own, lane);
}
