// Exact radix select of the K largest u32 keys without sorting them, shared by top-k and the
// public select (shaders/select.wgsl). Needs common/grid.wgsl and common/reduce.wgsl.
//
// Four 8-bit passes, most significant digit first: `select_histogram` counts, per workgroup, the
// next digit of the eligible keys that share the prefix found so far; `select_digit` (one
// workgroup) adds the counts in a fixed order and finds the digit of the `need`-th largest key.
// Then the threshold T is known, and `need` keys equal to T remain to take: `select_tie_counts`
// and `select_tie_scan` give every tile its first rank among the keys equal to T, so the includer
// takes a key if it is above T, or equal to T with rank < need (ties to the lowest indices).
// The includer defines:
//   fn select_len() -> u32, fn select_key(i: u32) -> u32, fn select_eligible(key: u32) -> bool
//   fn select_nwg() -> u32 (workgroups of select_histogram), fn select_tiles() -> u32
//   fn select_shift() -> u32 (24, 16, 8, 0 over the passes)
//   fn select_start() (thread 0 of the first pass: sets SEL_NEED to K)
//   fn sel_state(i: u32) -> u32, fn sel_hist(bin: u32, wg: u32) -> u32, fn sel_tie(t: u32) -> u32:
//   indices into a u32 storage array `work`.

const RADIX: u32 = 256u;
const SELECT_TILE: u32 = WG * 4u;
const SEL_PREFIX: u32 = 0u;   // the threshold's bits found so far, then the threshold
const SEL_NEED: u32 = 1u;     // keys still to take at or below the prefix

var<workgroup> select_bins_atomic: array<atomic<u32>, RADIX>;
var<workgroup> select_bins: array<u32, RADIX>;

@compute @workgroup_size(WG)
fn select_histogram(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    atomicStore(&select_bins_atomic[lid], 0u);
    workgroupBarrier();
    let shift = select_shift();
    let prefix = work[sel_state(SEL_PREFIX)];
    // Bits above the digit must match the prefix found so far (none in the first pass).
    let high = select(0u, 0xffffffffu << (shift + 8u), shift < 24u);
    for (var i = wid.x * WG + lid; i < select_len(); i = i + select_nwg() * WG) {
        let key = select_key(i);
        if select_eligible(key) && (key & high) == (prefix & high) {
            atomicAdd(&select_bins_atomic[(key >> shift) & 255u], 1u);
        }
    }
    workgroupBarrier();
    work[sel_hist(lid, wid.x)] = atomicLoad(&select_bins_atomic[lid]);
}

@compute @workgroup_size(WG)
fn select_digit(@builtin(local_invocation_index) lid: u32) {
    let shift = select_shift();
    if shift == 24u && lid == 0u {
        work[sel_state(SEL_PREFIX)] = 0u;
        select_start();
    }
    storageBarrier();
    var count = 0u;
    for (var w = 0u; w < select_nwg(); w = w + 1u) {
        count = count + work[sel_hist(lid, w)];
    }
    select_bins[lid] = count;
    workgroupBarrier();
    if lid == 0u {
        // From the largest digit down: the digit holding the `need`-th largest key.
        var need = work[sel_state(SEL_NEED)];
        var d = RADIX - 1u;
        loop {
            if select_bins[d] >= need || d == 0u {
                break;
            }
            need = need - select_bins[d];
            d = d - 1u;
        }
        work[sel_state(SEL_PREFIX)] = work[sel_state(SEL_PREFIX)] | (d << shift);
        work[sel_state(SEL_NEED)] = need;
    }
}

// Keys equal to the threshold, per tile (thread t holds keys 4t..4t+3 of the tile).
@compute @workgroup_size(WG)
fn select_tie_counts(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let threshold = work[sel_state(SEL_PREFIX)];
    for (var t = wid.x; t < select_tiles(); t = t + nwg.x) {
        var eq = 0.0;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let k = t * SELECT_TILE + lane.lid * 4u + i;
            if k < select_len() && select_key(k) == threshold {
                eq = eq + 1.0;
            }
        }
        let total = wg_sum(eq, lane);
        if lane.lid == 0u {
            work[sel_tie(t)] = u32(total);
        }
    }
}

@compute @workgroup_size(1)
fn select_tie_scan() {
    var run = 0u;
    for (var t = 0u; t < select_tiles(); t = t + 1u) {
        let v = work[sel_tie(t)];
        work[sel_tie(t)] = run;
        run = run + v;
    }
}

// Whether key k (of tile t, thread-contiguous) is taken; `rank` walks the ties of the thread
// in index order, starting from its exclusive tie rank.
fn select_taken(k: u32, rank: ptr<function, u32>) -> bool {
    let key = select_key(k);
    let threshold = work[sel_state(SEL_PREFIX)];
    if key == threshold {
        let taken = *rank < work[sel_state(SEL_NEED)];
        *rank = *rank + 1u;
        return taken && select_eligible(key);
    }
    return key > threshold && select_eligible(key);
}

// The exclusive rank of this thread's first tie within the whole array.
fn select_first_rank(t: u32, lid: u32) -> u32 {
    let threshold = work[sel_state(SEL_PREFIX)];
    var eq = 0u;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let k = t * SELECT_TILE + lid * 4u + i;
        eq = eq + u32(k < select_len() && select_key(k) == threshold);
    }
    return work[sel_tie(t)] + wg_inclusive_scan_u32(eq, lid) - eq;
}
