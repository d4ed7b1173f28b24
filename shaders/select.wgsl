// The public exact top-k selection: flags the `k` largest of `len` u32 keys (ties to the lowest
// indices) by radix select, without sorting (common/select.wgsl). CPU mirror: src/cpu/sort.rs.

#include "common/grid.wgsl"
#include "common/reduce.wgsl"
#include "common/scan.wgsl"
#include "common/select.wgsl"

// Must match `SelectParams` in src/sort.rs.
struct Params {
    len: u32,
    k: u32,
    nwg: u32,
    tiles: u32,
    shift: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> keys: array<u32>;
@group(0) @binding(2) var<storage, read_write> flags: array<u32>;
// [state (2) | histograms (RADIX · nwg) | tie offsets (tiles)]
@group(0) @binding(3) var<storage, read_write> work: array<u32>;

fn select_len() -> u32 {
    return params.len;
}
fn select_key(i: u32) -> u32 {
    return keys[i];
}
fn select_eligible(key: u32) -> bool {
    return true;
}
fn select_nwg() -> u32 {
    return params.nwg;
}
fn select_tiles() -> u32 {
    return params.tiles;
}
fn select_shift() -> u32 {
    return params.shift;
}
fn sel_state(i: u32) -> u32 {
    return i;
}
fn sel_hist(bin: u32, wg: u32) -> u32 {
    return 2u + bin * params.nwg + wg;
}
fn sel_tie(t: u32) -> u32 {
    return 2u + RADIX * params.nwg + t;
}
fn select_start() {
    work[SEL_NEED] = params.k;
}

// flags[i] = 1 for the k selected keys, 0 otherwise; the threshold key is left in work[0].
@compute @workgroup_size(WG)
fn select_mark(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = wid.x; t < params.tiles; t = t + nwg.x) {
        var rank = select_first_rank(t, lid);
        for (var i = 0u; i < 4u; i = i + 1u) {
            let k = t * SELECT_TILE + lid * 4u + i;
            if k < params.len {
                flags[k] = u32(select_taken(k, &rank));
            }
        }
    }
}
