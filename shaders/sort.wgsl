// Stable LSD radix sort of (u32 key, u32 value) pairs, 4 bits per pass, reduce-then-scan:
//   count    per tile of TILE keys: each thread counts the pass's digit over its ITEMS
//            consecutive keys (packed counters, no atomics), a workgroup scan turns those into
//            the thread's exclusive per-digit ranks (kept in `ranks` for the scatter), and the
//            last thread in scan order writes the tile's histogram;
//   scan     one workgroup turns the histograms, laid out digit-major [segment][BINS][tiles],
//            into exclusive global offsets, in a fixed order;
//   scatter  every thread writes its keys at tile offset + its rank, bumping the rank per key:
//            equal digits keep their order (threads in scan order hold consecutive keys), so the
//            sort is stable. No barrier and one read of each key: on a CPU driver a barrier
//            recompiles the kernel into per-subgroup coroutines, and every load is a gather.
// The workgroup scans use subgroup operations where the adapter has them (common/reduce.wgsl);
// threads take their keys by `lane_rank`, the scans' order, so both variants sort alike.
// No workgroup waits on another (no decoupled look-back), so it runs on any adapter, software
// ones and those without forward-progress guarantees included. CPU mirror: src/cpu/sort.rs.
//
// Segmented: the keys are consecutive segments of `seg_len` (one segment of `len` for a plain
// sort), tiles never straddle two segments, and the histograms are laid out segment-major
// [segment][BINS][tiles of the segment]: the one exclusive scan over them then places every key
// inside its own segment, so each segment is sorted on its own in the same passes.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"

const ITEMS: u32 = 32u;         // keys per thread (SORT_TILE in src/sort.rs)
const TILE: u32 = WG * ITEMS;   // keys per tile
const BINS: u32 = 16u;          // 4-bit digits

// Must match `SortParams` in src/sort.rs.
struct Params {
    len: u32,
    shift: u32,     // the digit is (key >> shift) & 15
    tiles: u32,     // all segments' tiles
    seg_len: u32,   // keys per segment
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> keys_in: array<u32>;
@group(0) @binding(2) var<storage, read> vals_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> vals_out: array<u32>;
// [segment][BINS][tiles of the segment]: counts, then exclusive offsets.
@group(0) @binding(5) var<storage, read_write> counts: array<u32>;
// [tile][thread in scan order][2]: the thread's packed exclusive ranks (see `packed_add`).
@group(0) @binding(6) var<storage, read_write> ranks: array<vec4<u32>>;

fn digit(key: u32) -> u32 {
    return (key >> params.shift) & (BINS - 1u);
}

fn tiles_per_segment() -> u32 {
    return (params.seg_len + TILE - 1u) / TILE;
}

// Keys [x, y) of tile t.
fn tile_keys(t: u32) -> vec2<u32> {
    let tps = tiles_per_segment();
    let g = t / tps;
    let first = g * params.seg_len + (t - g * tps) * TILE;
    return vec2<u32>(first, min(first + TILE, (g + 1u) * params.seg_len));
}

// Slot of tile t's count of digit d in `counts`.
fn count_slot(t: u32, d: u32) -> u32 {
    let tps = tiles_per_segment();
    let g = t / tps;
    return (g * BINS + d) * tps + (t - g * tps);
}

@compute @workgroup_size(WG)
fn scan(lane: Lane) {
    let total = BINS * params.tiles;
    let chunk = (total + WG - 1u) / WG;
    let start = min(lane_rank(lane) * chunk, total);
    let end = min(start + chunk, total);
    var sum = 0u;
    for (var i = start; i < end; i = i + 1u) {
        sum = sum + counts[i];
    }
    var running = wg_exclusive_scan_u32x8(U32x8(vec4<u32>(sum, 0u, 0u, 0u), vec4<u32>(0u)), lane).a.x;
    for (var i = start; i < end; i = i + 1u) {
        let c = counts[i];
        counts[i] = running;
        running = running + c;
    }
}

// Per-thread digit counts, two 16-bit counters per u32 (a tile holds TILE = 8192 < 2^16 keys,
// so no counter overflows into its neighbour), and their exclusive scan over the tile in
// thread order.

fn packed_add(counts_a: ptr<function, vec4<u32>>, counts_b: ptr<function, vec4<u32>>, d: u32) {
    let word = (d / 2u) % 4u;
    let inc = 1u << (16u * (d % 2u));
    if d < 8u {
        (*counts_a)[word] = (*counts_a)[word] + inc;
    } else {
        (*counts_b)[word] = (*counts_b)[word] + inc;
    }
}

fn packed_get(a: vec4<u32>, b: vec4<u32>, d: u32) -> u32 {
    let word = (d / 2u) % 4u;
    let v = select(a[word], b[word], d >= 8u);
    return (v >> (16u * (d % 2u))) & 0xffffu;
}

fn ranks_slot(tile: u32, rank: u32) -> u32 {
    return (tile * WG + rank) * 2u;
}

@compute @workgroup_size(WG)
fn count(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rank = lane_rank(lane);
    for (var tile = wid.x; tile < params.tiles; tile = tile + nwg.x) {
        let range = tile_keys(tile);
        var ca = vec4<u32>(0u);
        var cb = vec4<u32>(0u);
        for (var i = 0u; i < ITEMS; i = i + 1u) {
            let k = range.x + rank * ITEMS + i;
            if k < range.y {
                packed_add(&ca, &cb, digit(keys_in[k]));
            }
        }
        // Exclusive scan of the packed counters over the threads (no half overflows: <= TILE).
        let r = wg_exclusive_scan_u32x8(U32x8(ca, cb), lane);
        let ra = r.a;
        let rb = r.b;
        let slot = ranks_slot(tile, rank);
        ranks[slot] = ra;
        ranks[slot + 1u] = rb;
        if rank == WG - 1u {
            // The last thread's prefix plus its own counts: the tile's histogram.
            for (var d = 0u; d < BINS; d = d + 1u) {
                counts[count_slot(tile, d)] = packed_get(ra + ca, rb + cb, d);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn scatter(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rank = lane_rank(lane);
    for (var tile = wid.x; tile < params.tiles; tile = tile + nwg.x) {
        let range = tile_keys(tile);
        let slot = ranks_slot(tile, rank);
        var ra = ranks[slot];
        var rb = ranks[slot + 1u];
        for (var i = 0u; i < ITEMS; i = i + 1u) {
            let k = range.x + rank * ITEMS + i;
            if k < range.y {
                let key = keys_in[k];
                let d = digit(key);
                let pos = counts[count_slot(tile, d)] + packed_get(ra, rb, d);
                packed_add(&ra, &rb, d);
                keys_out[pos] = key;
                vals_out[pos] = vals_in[k];
            }
        }
    }
}
