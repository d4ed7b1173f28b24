// Stable LSD radix sort of (u32 key, u32 value) pairs, 5 bits per pass, reduce-then-scan:
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
const RADIX: u32 = 5u;          // bits per pass (RADIX_BITS in src/sort.rs)
const BINS: u32 = 1u << RADIX;  // 32 digits: 32 packed 16-bit counters fill a U32x16

// Must match `SortParams` in src/sort.rs.
struct Params {
    len: u32,
    shift: u32,     // the digit is (key >> shift) & mask
    tiles: u32,     // all segments' tiles
    seg_len: u32,   // keys per segment
    mask: u32,      // BINS - 1, or fewer bits in a last pass past the sort's key bits
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> keys_in: array<u32>;
@group(0) @binding(2) var<storage, read> vals_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> vals_out: array<u32>;
// [segment][BINS][tiles of the segment]: counts, then exclusive offsets.
@group(0) @binding(5) var<storage, read_write> counts: array<u32>;
// [tile][thread in scan order][4]: the thread's packed exclusive ranks (see `packed_get`).
@group(0) @binding(6) var<storage, read_write> ranks: array<vec4<u32>>;

fn digit(key: u32) -> u32 {
    return (key >> params.shift) & params.mask;
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
    let zero = vec4<u32>(0u);
    var running = wg_exclusive_scan_u32x16(U32x16(vec4<u32>(sum, 0u, 0u, 0u), zero, zero, zero), lane).a.x;
    for (var i = start; i < end; i = i + 1u) {
        let c = counts[i];
        counts[i] = running;
        running = running + c;
    }
}

// Ranks: two 16-bit counters per u32 (a tile holds TILE = 8192 < 2^16 keys, so no counter
// overflows into its neighbour), digit d in half d % 2 of word (d / 2) % 4 of vec4 d / 8: the
// exclusive scan over the tile, in thread order, of the threads' own counts (`widen`) gives
// every thread its first rank per digit. Four named vec4 rather than an array, so that they
// can stay in registers.
fn packed_get(c: U32x16, d: u32) -> u32 {
    let q = d >> 3u;
    let v = select(select(c.a, c.b, q == 1u), select(c.c, c.d, q == 3u), q >= 2u);
    return (v[(d >> 1u) & 3u] >> (16u * (d & 1u))) & 0xffffu;
}

// A thread's own digit counts while it walks its ITEMS keys: four 8-bit counters per u32
// (ITEMS < 2^8), digit d in byte d % 4 of word d / 4, words 0-3 in `lo` and 4-7 in `hi`. Half
// the words of U32x16, so adding to one is two vec4 selects and adds, where the 16-bit
// counters took a switch over four vec4 (a CPU driver runs every case of a switch under a lane
// mask: on lavapipe the count pass took ~22 ms per pass over 5M keys so).
const_assert ITEMS < 256u;
struct U8x32 {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

fn byte_add(c: ptr<function, U8x32>, d: u32) {
    let inc = vec4<u32>(1u << (8u * (d & 3u)));
    let w = vec4<u32>(d >> 2u);
    let zero = vec4<u32>(0u);
    (*c).lo = (*c).lo + select(zero, inc, w == vec4<u32>(0u, 1u, 2u, 3u));
    (*c).hi = (*c).hi + select(zero, inc, w == vec4<u32>(4u, 5u, 6u, 7u));
}

fn byte_get(c: U8x32, d: u32) -> u32 {
    let v = select(c.lo, c.hi, d >= 16u);
    return (v[(d >> 2u) & 3u] >> (8u * (d & 3u))) & 0xffu;
}

// The counts as U32x16 (`packed_get`'s layout), for the workgroup scan: byte pairs of each word
// spread into 16-bit halves.
fn widen(c: U8x32) -> U32x16 {
    let m = vec4<u32>(0xffu);
    let b0 = c.lo & m;
    let b1 = (c.lo >> vec4<u32>(8u)) & m;
    let b2 = (c.lo >> vec4<u32>(16u)) & m;
    let b3 = c.lo >> vec4<u32>(24u);
    let h0 = c.hi & m;
    let h1 = (c.hi >> vec4<u32>(8u)) & m;
    let h2 = (c.hi >> vec4<u32>(16u)) & m;
    let h3 = c.hi >> vec4<u32>(24u);
    // 16-bit word 2k holds digits 4k, 4k + 1 (bytes 0, 1 of byte word k); 2k + 1 digits
    // 4k + 2, 4k + 3.
    let lo01 = b0 | (b1 << vec4<u32>(16u));
    let lo23 = b2 | (b3 << vec4<u32>(16u));
    let hi01 = h0 | (h1 << vec4<u32>(16u));
    let hi23 = h2 | (h3 << vec4<u32>(16u));
    return U32x16(
        vec4<u32>(lo01.x, lo23.x, lo01.y, lo23.y),
        vec4<u32>(lo01.z, lo23.z, lo01.w, lo23.w),
        vec4<u32>(hi01.x, hi23.x, hi01.y, hi23.y),
        vec4<u32>(hi01.z, hi23.z, hi01.w, hi23.w),
    );
}

fn ranks_slot(tile: u32, rank: u32) -> u32 {
    return (tile * WG + rank) * 4u;
}

@compute @workgroup_size(WG)
fn count(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let rank = lane_rank(lane);
    let zero = vec4<u32>(0u);
    for (var tile = wid.x; tile < params.tiles; tile = tile + nwg.x) {
        let range = tile_keys(tile);
        var bytes = U8x32(zero, zero);
        for (var i = 0u; i < ITEMS; i = i + 1u) {
            let k = range.x + rank * ITEMS + i;
            if k < range.y {
                byte_add(&bytes, digit(keys_in[k]));
            }
        }
        let own = widen(bytes);
        // Exclusive scan of the packed counters over the threads (no half overflows: <= TILE).
        let r = wg_exclusive_scan_u32x16(own, lane);
        let slot = ranks_slot(tile, rank);
        ranks[slot] = r.a;
        ranks[slot + 1u] = r.b;
        ranks[slot + 2u] = r.c;
        ranks[slot + 3u] = r.d;
        if rank == WG - 1u {
            // The last thread's prefix plus its own counts: the tile's histogram.
            let h = U32x16(r.a + own.a, r.b + own.b, r.c + own.c, r.d + own.d);
            for (var d = 0u; d < BINS; d = d + 1u) {
                counts[count_slot(tile, d)] = packed_get(h, d);
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
        let r = U32x16(ranks[slot], ranks[slot + 1u], ranks[slot + 2u], ranks[slot + 3u]);
        // The thread's own keys of each digit so far, on top of its rank.
        let zero = vec4<u32>(0u);
        var seen = U8x32(zero, zero);
        for (var i = 0u; i < ITEMS; i = i + 1u) {
            let k = range.x + rank * ITEMS + i;
            if k < range.y {
                let key = keys_in[k];
                let d = digit(key);
                let pos = counts[count_slot(tile, d)] + packed_get(r, d) + byte_get(seen, d);
                byte_add(&seen, d);
                keys_out[pos] = key;
                vals_out[pos] = vals_in[k];
            }
        }
    }
}
