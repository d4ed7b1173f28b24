//! CPU mirrors of `shaders/sort.wgsl`, `shaders/select.wgsl` and `shaders/scan.wgsl`: the results
//! the GPU primitives must reproduce exactly.

/// Stable sort of (key, value) pairs by the low `key_bits` bits of the keys.
pub fn sort_pairs(keys: &[u32], values: &[u32], key_bits: u32) -> (Vec<u32>, Vec<u32>) {
    let mask = if key_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << key_bits) - 1
    };
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by_key(|&i| keys[i] & mask); // stable
    (
        idx.iter().map(|&i| keys[i]).collect(),
        idx.iter().map(|&i| values[i]).collect(),
    )
}

/// Orders two values largest first, for a stable sort: equal values (0.0 and -0.0 too) keep
/// their order, and NaN, which only non-finite inputs make (the loss then reports them and
/// returns no value), goes first instead of breaking the order `sort_by` needs.
pub(crate) fn descending(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
        (nan_a, nan_b) => nan_b.cmp(&nan_a),
    }
}

/// Flags (1/0) of the `k` largest keys, ties to the lowest indices.
pub fn select_top_k(keys: &[u32], k: usize) -> Vec<u32> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by(|&a, &b| keys[b].cmp(&keys[a])); // stable: equal keys keep index order
    let mut flags = vec![0u32; keys.len()];
    for &i in idx.iter().take(k) {
        flags[i] = 1;
    }
    flags
}

/// Inclusive sums within every segment of a flattened `[segments, len]` array.
pub fn segmented_scan(input: &[f32], len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(input.len());
    for seg in input.chunks(len.max(1)) {
        let mut run = 0.0f32;
        for &v in seg {
            run += v;
            out.push(run);
        }
    }
    out
}
