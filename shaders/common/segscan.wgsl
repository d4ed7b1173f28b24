// A segmented inclusive scan over fixed-length segments, shared by the Lovász losses and the
// public scan (shaders/scan.wgsl). Needs common/scan.wgsl.
//
// The input is a flattened [segments, len] array, processed in tiles of SCAN_TILE elements (4 per
// thread) that never straddle a segment: `segscan_tiles` scans every tile, `segscan_totals` turns
// the tile sums of each segment into offsets (one thread per segment) and its total; the includer
// then adds `segscan_offset` to the tile-local value. The includer defines:
//   fn segscan_segments() -> u32, fn segscan_len() -> u32   (segments, elements per segment)
//   fn segscan_in(j: u32) -> f32                             (element j of the input)
//   fn segscan_store(j: u32, v: f32)                         (tile-local inclusive sum of j)
//   fn segscan_tile_get(t: u32) -> f32, fn segscan_tile_set(t: u32, v: f32)
//   fn segscan_total_set(g: u32, v: f32)                     (the sum of segment g)

const SCAN_TILE: u32 = WG * 4u;

fn segscan_tiles_per_segment() -> u32 {
    return (segscan_len() + SCAN_TILE - 1u) / SCAN_TILE;
}

@compute @workgroup_size(WG)
fn segscan_tiles(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let tps = segscan_tiles_per_segment();
    let tiles = segscan_segments() * tps;
    let len = segscan_len();
    for (var t = wid.x; t < tiles; t = t + nwg.x) {
        let g = t / tps;
        let start = (t - g * tps) * SCAN_TILE;
        var f = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i = i + 1u) {
            let local = start + lid * 4u + i;
            if local < len {
                f[i] = segscan_in(g * len + local);
            }
        }
        let sum = f.x + f.y + f.z + f.w;
        var run = wg_inclusive_scan_f32(sum, lid) - sum;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let local = start + lid * 4u + i;
            run = run + f[i];
            if local < len {
                segscan_store(g * len + local, run);
            }
        }
        if lid == WG - 1u {
            segscan_tile_set(t, run);
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

// The offset of the tile holding element `local` of segment g (after segscan_totals).
fn segscan_offset(g: u32, local: u32) -> f32 {
    return segscan_tile_get(g * segscan_tiles_per_segment() + local / SCAN_TILE);
}
