//! The GPU radix sort against the standard library's stable sort: random, sorted, reversed,
//! all-equal and non-power-of-two inputs, fewer key bits, f32 descending keys, stability,
//! segmented sorts, and 2^24 keys.

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

fn check(name: &str, keys: Vec<u32>, bits: u32) {
    let values: Vec<u32> = (0..keys.len() as u32).collect();
    let (gk, gv) = gpu_sort(&keys, &values, bits);
    let (rk, rv) = segloss::cpu::sort::sort_pairs(&keys, &values, bits);
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
    // Around the sort's tiles (SORT_TILE keys) and the 1024-element tiles of the other
    // primitives.
    const T: usize = segloss::sort::SORT_TILE;
    for len in [
        1usize,
        2,
        3,
        1023,
        1024,
        1025,
        T - 1,
        T,
        T + 1,
        2 * T + 17,
        100_003,
    ] {
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

/// A segmented sort: every segment sorted on its own (stably), none of its keys leaving it,
/// whether the segments are shorter or longer than a tile or not a multiple of one.
#[test]
fn segmented_sort_sorts_each_segment_in_place() {
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let mut rng = Rng::new(31);
    const T: usize = segloss::sort::SORT_TILE;
    for (segments, seg_len) in [
        (1usize, 5usize),
        (3, 1),
        (5, T - 1),
        (4, T + 1),
        (19, 3000),
        (2, 2 * T + 1808),
    ] {
        for few in [false, true] {
            let len = segments * seg_len;
            let keys: Vec<u32> = (0..len)
                .map(|_| {
                    if few {
                        rng.below(3) as u32
                    } else {
                        rng.next_u64() as u32
                    }
                })
                .collect();
            let values: Vec<u32> = (0..len as u32).collect();
            let plan = kernels.segmented_sort_plan(segments, seg_len).unwrap();
            let kb = segloss::readback::upload(device, "keys", bytemuck::cast_slice(&keys));
            let vb = segloss::readback::upload(device, "values", bytemuck::cast_slice(&values));
            let mut enc = device.create_command_encoder(&Default::default());
            plan.record(&mut enc, &kb, &vb, 32).unwrap();
            gpu.queue.submit([enc.finish()]);
            let gk: Vec<u32> = segloss::readback::download(device, &gpu.queue, &kb, len).unwrap();
            let gv: Vec<u32> = segloss::readback::download(device, &gpu.queue, &vb, len).unwrap();
            for g in 0..segments {
                let r = g * seg_len..(g + 1) * seg_len;
                let (rk, rv) =
                    segloss::cpu::sort::sort_pairs(&keys[r.clone()], &values[r.clone()], 32);
                assert_eq!(
                    &gk[r.clone()],
                    &rk[..],
                    "{segments}x{seg_len} (few keys: {few}): segment {g} keys"
                );
                assert_eq!(
                    &gv[r.clone()],
                    &rv[..],
                    "{segments}x{seg_len} (few keys: {few}): segment {g} values"
                );
            }
        }
    }
    assert!(kernels.segmented_sort_plan(0, 5).is_err());
    assert!(kernels.segmented_sort_plan(usize::MAX, 2).is_err());
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

fn gpu_select(keys: &[u32], k: usize) -> Vec<u32> {
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let plan = kernels.select_plan(keys.len(), k).unwrap();
    let kb = segloss::readback::upload(device, "keys", bytemuck::cast_slice(keys));
    let fb = segloss::readback::zeros(device, "flags", keys.len());
    let mut enc = device.create_command_encoder(&Default::default());
    plan.record(&mut enc, &kb, &fb).unwrap();
    gpu.queue.submit([enc.finish()]);
    segloss::readback::download(device, &gpu.queue, &fb, keys.len()).unwrap()
}

#[test]
fn selects_exactly_the_k_largest() {
    let mut rng = Rng::new(41);
    for len in [1usize, 5, 1023, 1025, 7777, 100_003] {
        let inputs: Vec<(&str, Vec<u32>)> = vec![
            ("random", (0..len).map(|_| rng.next_u64() as u32).collect()),
            ("sorted", (0..len as u32).collect()),
            ("reversed", (0..len as u32).rev().collect()),
            ("all equal", vec![3; len]),
            (
                "few values",
                (0..len).map(|_| rng.below(4) as u32).collect(),
            ),
        ];
        for (name, keys) in inputs {
            for k in [1, len.div_ceil(3), len] {
                let got = gpu_select(&keys, k);
                assert_eq!(
                    got.iter().sum::<u32>() as usize,
                    k,
                    "{name} len {len} k {k}: count"
                );
                assert_eq!(
                    got,
                    segloss::cpu::sort::select_top_k(&keys, k),
                    "{name} len {len} k {k}"
                );
            }
        }
    }
    let err = gpu().1.select_plan(10, 11).unwrap_err().to_string();
    assert!(err.contains("cannot select 11 of 10"), "{err}");
}

#[test]
fn selects_among_2_pow_24_keys() {
    let mut rng = Rng::new(8);
    let len = 1usize << 24;
    let keys: Vec<u32> = (0..len).map(|_| rng.next_u64() as u32 >> 8).collect();
    let k = 1000;
    let got = gpu_select(&keys, k);
    assert_eq!(got, segloss::cpu::sort::select_top_k(&keys, k));
}

/// The scan with subgroup scans and with the shared-memory fallback, at lengths around its tile.
#[test]
fn segmented_scan_matches_the_cpu() {
    let (gpu, kernels) = gpu();
    let fallback = segloss::Kernels::with_options(
        &gpu.device,
        segloss::KernelOptions {
            subgroups: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let device = &gpu.device;
    let mut rng = Rng::new(6);
    let tile = segloss::sort::SCAN_TILE;
    for k in [kernels, &fallback] {
        for (segments, len) in [
            (1usize, 1usize),
            (3, tile - 1),
            (4, tile + 1),
            (2, 2 * tile + 700),
            (7, 333),
        ] {
            // Small integers: every partial sum is exact, so the comparison is bit for bit.
            let input: Vec<f32> = (0..segments * len).map(|_| rng.below(3) as f32).collect();
            let plan = k.scan_plan(segments, len).unwrap();
            let ib = segloss::readback::upload(device, "in", bytemuck::cast_slice(&input));
            let ob = segloss::readback::zeros(device, "out", segments * len);
            let mut enc = device.create_command_encoder(&Default::default());
            plan.record(&mut enc, &ib, &ob).unwrap();
            gpu.queue.submit([enc.finish()]);
            let got: Vec<f32> =
                segloss::readback::download(device, &gpu.queue, &ob, segments * len).unwrap();
            assert_eq!(
                got,
                segloss::cpu::sort::segmented_scan(&input, len),
                "segments {segments} len {len} subgroups {}",
                k.uses_subgroups()
            );
        }
    }
}

/// The sort with subgroup scans and with the shared-memory fallback: the same, and std's.
#[test]
fn subgroup_and_fallback_sorts_agree() {
    let (gpu, kernels) = gpu();
    let fallback = segloss::Kernels::with_options(
        &gpu.device,
        segloss::KernelOptions {
            subgroups: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!(
        "subgroups in the default kernels: {}",
        kernels.uses_subgroups()
    );
    let mut rng = Rng::new(55);
    let keys: Vec<u32> = (0..50_001).map(|_| rng.next_u64() as u32 & 0xfff).collect();
    let values: Vec<u32> = (0..keys.len() as u32).collect();
    let want = segloss::cpu::sort::sort_pairs(&keys, &values, 32);
    for k in [kernels, &fallback] {
        let device = &gpu.device;
        let plan = k.sort_plan(keys.len()).unwrap();
        let kb = segloss::readback::upload(device, "keys", bytemuck::cast_slice(&keys));
        let vb = segloss::readback::upload(device, "values", bytemuck::cast_slice(&values));
        let mut enc = device.create_command_encoder(&Default::default());
        plan.record(&mut enc, &kb, &vb, 32).unwrap();
        gpu.queue.submit([enc.finish()]);
        let gk: Vec<u32> =
            segloss::readback::download(device, &gpu.queue, &kb, keys.len()).unwrap();
        let gv: Vec<u32> =
            segloss::readback::download(device, &gpu.queue, &vb, keys.len()).unwrap();
        assert_eq!((gk, gv), want, "subgroups: {}", k.uses_subgroups());
    }
}
