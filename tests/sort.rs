//! The GPU radix sort against the standard library's stable sort: random, sorted, reversed,
//! all-equal and non-power-of-two inputs, fewer key bits, f32 descending keys, stability, and
//! 2^24 keys.

mod common;

use common::*;

fn gpu_sort(keys: &[u32], values: &[u32], bits: u32) -> (Vec<u32>, Vec<u32>) {
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let plan = kernels.sort_plan(keys.len()).unwrap();
    let kb = segloss::readback::upload(device, "keys", bytemuck::cast_slice(keys));
    let vb = segloss::readback::upload(device, "values", bytemuck::cast_slice(values));
    let mut enc = device.create_command_encoder(&Default::default());
    plan.record(&mut enc, &kb, &vb, bits).unwrap();
    gpu.queue.submit([enc.finish()]);
    (
        segloss::readback::download(device, &gpu.queue, &kb, keys.len()).unwrap(),
        segloss::readback::download(device, &gpu.queue, &vb, keys.len()).unwrap(),
    )
}

/// std's stable sort on the low `bits` bits, values = input positions.
fn reference(keys: &[u32], bits: u32) -> (Vec<u32>, Vec<u32>) {
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let mut idx: Vec<u32> = (0..keys.len() as u32).collect();
    idx.sort_by_key(|&i| keys[i as usize] & mask); // stable
    (idx.iter().map(|&i| keys[i as usize]).collect(), idx)
}

fn check(name: &str, keys: Vec<u32>, bits: u32) {
    let values: Vec<u32> = (0..keys.len() as u32).collect();
    let (gk, gv) = gpu_sort(&keys, &values, bits);
    let (rk, rv) = reference(&keys, bits);
    if let Some(i) = (0..keys.len()).find(|&i| gk[i] != rk[i] || gv[i] != rv[i]) {
        panic!(
            "{name} ({} keys, {bits} bits): position {i}: got ({}, {}), expected ({}, {})",
            keys.len(),
            gk[i],
            gv[i],
            rk[i],
            rv[i]
        );
    }
}

#[test]
fn sorts_like_the_standard_library() {
    let mut rng = Rng::new(12);
    for len in [1usize, 2, 3, 1023, 1024, 1025, 4096 + 17, 100_003] {
        check(
            "random",
            (0..len).map(|_| rng.next_u64() as u32).collect(),
            32,
        );
        check("sorted", (0..len as u32).collect(), 32);
        check("reversed", (0..len as u32).rev().collect(), 32);
        check("all equal", vec![7; len], 32);
        // Few distinct keys: stability decides the whole order of the values.
        check(
            "few keys, 4 bits",
            (0..len).map(|_| rng.below(5) as u32).collect(),
            4,
        );
        check(
            "12 bits of random keys",
            (0..len).map(|_| rng.next_u64() as u32).collect(),
            12,
        );
    }
}

#[test]
fn f32_keys_sort_descending() {
    let mut rng = Rng::new(5);
    let xs: Vec<f32> = (0..5000)
        .map(|i| {
            if i % 10 == 0 {
                0.5
            } else {
                rng.range(-3.0, 3.0)
            }
        })
        .collect();
    let keys: Vec<u32> = xs
        .iter()
        .map(|&x| segloss::sort::f32_descending_key(x))
        .collect();
    let values: Vec<u32> = (0..xs.len() as u32).collect();
    let (_, order) = gpu_sort(&keys, &values, 32);
    let mut want: Vec<u32> = values.clone();
    want.sort_by(|&a, &b| xs[b as usize].partial_cmp(&xs[a as usize]).unwrap()); // stable
    assert_eq!(order, want);
}

#[test]
fn sorts_2_pow_24_keys() {
    let mut rng = Rng::new(77);
    let len = 1usize << 24;
    // 16-bit keys (4 passes) keep the run short on a software adapter; values check stability.
    check(
        "2^24 random",
        (0..len).map(|_| rng.next_u64() as u32 & 0xffff).collect(),
        16,
    );
}
