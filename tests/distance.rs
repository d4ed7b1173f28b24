//! Distance transforms: the CPU separable transform against brute force, the GPU against the
//! CPU, and both against scipy's `distance_transform_edt` fixtures.

mod common;

use common::*;
use segloss::distance::{DistanceOptions, Method};
use segloss::{Error, Gpu, Kernels, Loss, Shape, TargetKind};

fn random_masks(rng: &mut Rng, count: usize, s: usize, density: f32) -> Vec<bool> {
    (0..count * s).map(|_| rng.unit() < density).collect()
}

const SHAPES: &[(&[usize], &[f32])] = &[
    (&[13], &[1.0]),
    (&[7, 9], &[1.0, 1.0]),
    (&[8, 5], &[1.0, 2.5]),
    (&[5, 6, 7], &[0.7, 1.0, 3.0]),
    (&[1, 9], &[2.0, 1.0]),
];

#[test]
fn separable_transform_equals_brute_force() {
    let mut rng = Rng::new(17);
    for &(spatial, spacing) in SHAPES {
        let s: usize = spatial.iter().product();
        for density in [0.02, 0.3, 0.7, 0.97, 0.0, 1.0] {
            let mask = random_masks(&mut rng, 1, s, density);
            let fast = segloss::cpu::distance::edt(&mask, spatial, spacing);
            let slow = segloss::cpu::distance::edt_brute_force(&mask, spatial, spacing);
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!(
                    (a - b).abs() < 1e-9,
                    "{spatial:?} {spacing:?} density {density}: pixel {i}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn gpu_exact_transform_equals_cpu() {
    let (gpu, kernels) = gpu();
    let shapes: &[(&[usize], &[f32])] = &[
        (&[13], &[1.0]),
        (&[17, 23], &[1.0, 1.0]),
        (&[40, 33], &[1.0, 2.5]),
        (&[9, 10, 11], &[0.7, 1.0, 3.0]),
        (&[3, 1, 300], &[1.0, 1.0, 1.0]),
        // Lines over PRIVATE_LINE: the envelope in the scratch buffer instead of private memory.
        (&[5, 700], &[1.0, 1.3]),
        (&[2, 600, 3], &[1.0, 0.8, 1.0]),
    ];
    const { assert!(600 > segloss::distance::PRIVATE_LINE) };
    exact_transform_equals_cpu(gpu, kernels, shapes);
}

/// The transform of `words` (u32 masks, `[count, *spatial]`) on the GPU.
fn transform(
    gpu: &Gpu,
    kernels: &Kernels,
    words: &[u32],
    spatial: &[usize],
    options: &DistanceOptions,
) -> Vec<f32> {
    let device = &gpu.device;
    let count = words.len() / spatial.iter().product::<usize>();
    let plan = kernels.distance_plan(count, spatial, options).unwrap();
    let mb = segloss::readback::upload(device, "masks", bytemuck::cast_slice(words));
    let out = segloss::readback::zeros(device, "out", plan.len());
    let mut enc = device.create_command_encoder(&Default::default());
    plan.record(&mut enc, &mb, &out).unwrap();
    gpu.queue.submit([enc.finish()]);
    segloss::readback::download(device, &gpu.queue, &out, plan.len()).unwrap()
}

/// An envelope as deep as its line: a row of background above a row of mask gives the mask row
/// equal heights, so every one of its parabolas stays on the stack; at PRIVATE_LINE pixels
/// that fills the private arrays, one more takes the scratch buffer. Every mask pixel is at
/// distance 1 (the pixel above), every background pixel too (the one below).
#[test]
fn envelope_as_deep_as_its_line() {
    let (gpu, kernels) = gpu();
    let private = segloss::distance::PRIVATE_LINE;
    for len in [private - 1, private, private + 1] {
        let words: Vec<u32> = (0..2 * len).map(|i| u32::from(i >= len)).collect();
        for signed in [false, true] {
            let options = DistanceOptions {
                signed,
                ..Default::default()
            };
            let got = transform(gpu, kernels, &words, &[2, len], &options);
            for (i, &g) in got.iter().enumerate() {
                // EDT: 1 in the mask, 0 outside; signed: EDT(not M) = 1 outside, -(1 - 1) inside.
                let want = match (signed, words[i] != 0) {
                    (false, inside) => f32::from(u8::from(inside)),
                    (true, true) => 0.0,
                    (true, false) => 1.0,
                };
                assert_eq!(g, want, "len {len} signed={signed} pixel {i}");
            }
        }
    }
}

/// Many runs on one line: row 0 alternates classes (a run per pixel: the most the envelope
/// pass's run table holds), row 1 alternates over its first half and then holds one long run of
/// the mask, ended by a background pixel, and row 2 is background (one run, whose envelope has
/// an entry per mask pixel above it). At PRIVATE_LINE pixels the table, and run and segment
/// ends up to len, are in private memory; one more takes the scratch buffer.
#[test]
fn envelope_with_many_runs() {
    let (gpu, kernels) = gpu();
    let private = segloss::distance::PRIVATE_LINE;
    for len in [private - 1, private, private + 1] {
        let inside = |row: usize, i: usize| match row {
            0 => !i.is_multiple_of(2),
            1 if i < len / 2 => i.is_multiple_of(2),
            1 => i + 1 < len,
            _ => false,
        };
        let mask: Vec<bool> = (0..3 * len).map(|k| inside(k / len, k % len)).collect();
        let words: Vec<u32> = mask.iter().map(|&m| u32::from(m)).collect();
        for signed in [false, true] {
            let options = DistanceOptions {
                signed,
                ..Default::default()
            };
            let got = transform(gpu, kernels, &words, &[3, len], &options);
            let want = if signed {
                segloss::cpu::distance::signed_map(&mask, &[3, len], &[1.0, 1.0])
            } else {
                segloss::cpu::distance::edt(&mask, &[3, len], &[1.0, 1.0])
            };
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "len {len} signed={signed} pixel {i}: gpu {g} vs cpu {w}"
                );
            }
        }
    }
}

/// Parabolas that cross far past the line: a coarse first axis (spacing 209.03) and rows of the
/// mask with no background, whose pixels take the nearest background pixel of their column
/// through the envelope. On row 1 the parabola of column 0 (height 209.03², from row 0) stays
/// below that of column 1 (4·209.03², from row 3) up to pixel 65 540 or so, so column 1's entry
/// starts there: it must stay past the line (clamped to it; in private memory the index is
/// packed into 16 bits, where 65 541 would read as 5).
#[test]
fn envelope_with_distant_crossings() {
    let (gpu, kernels) = gpu();
    for len in [40, segloss::distance::PRIVATE_LINE + 1] {
        let spatial = [4, len];
        let spacing = [209.03, 1.0];
        let mask: Vec<bool> = (0..4 * len).map(|k| k != 0 && k != 3 * len + 1).collect();
        let words: Vec<u32> = mask.iter().map(|&m| u32::from(m)).collect();
        let options = DistanceOptions {
            spacing: spacing.to_vec(),
            ..Default::default()
        };
        let got = transform(gpu, kernels, &words, &spatial, &options);
        let want = segloss::cpu::distance::edt(&mask, &spatial, &spacing);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "len {len} pixel {i}: gpu {g} vs cpu {w}"
            );
        }
    }
}

// `small_binding_device` (64 KiB bindings, 16 384 floats) makes the exact transform's scratch
// (5·len floats per line, for the axes after the first with lines over PRIVATE_LINE) walk
// the lines in windows.
#[test]
fn exact_transform_in_windows_beyond_one_binding() {
    let (small, kernels) = small_binding_device();
    const { assert!(600 > segloss::distance::PRIVATE_LINE) };
    // 4 masks: 3×600 needs 12 lines × 3000 = 36 000 scratch floats on axis 1 (3 windows of the
    // 5 lines whose 15 000 floats fit the 16 384 a binding holds); 2×3×600 needs 24 × 3000 =
    // 72 000 on axis 2 (5 windows); the volumes themselves fit.
    let shapes: &[(&[usize], &[f32])] =
        &[(&[3, 600], &[1.0, 2.5]), (&[2, 3, 600], &[0.7, 1.0, 3.0])];
    exact_transform_equals_cpu(&small, &kernels, shapes);
    // A line of a scratch axis that cannot fit is refused, naming it.
    match kernels.distance_plan(1, &[2, 6000], &DistanceOptions::default()) {
        Err(Error::TooLarge { name, .. }) => assert!(name.contains("one line"), "{name}"),
        Err(e) => panic!("expected TooLarge, got {e}"),
        Ok(_) => panic!("expected TooLarge, got a plan"),
    }
    // The first axis and short lines need no scratch: a long first axis is fine.
    kernels
        .distance_plan(1, &[6000, 2], &DistanceOptions::default())
        .expect("a long first axis needs no scratch");
}

/// The distance losses on the windowed path equal the CPU reference.
#[test]
fn distance_losses_in_windows_beyond_one_binding() {
    let (small, kernels) = small_binding_device();
    // 2×3 masks of 2×600 (12 for Hausdorff: prediction and target): 12 or 24 lines × 3000
    // scratch floats on axis 1, over one binding; the volumes fit.
    let shape = Shape::new(2, 3, &[2, 600]).unwrap();
    let mut rng = Rng::new(11);
    let z = rng.logits(shape.numel(), 2.0);
    let t = targets(&mut rng, &shape, TargetKind::Labels, 3, None, false);
    for name in ["boundary", "hausdorff-dt"] {
        let loss = Loss::parse(name, &["include_background=true"]).unwrap();
        assert_gpu_matches_cpu((&small, &kernels), name, &loss, &shape, &z, t.view());
    }
}

/// Hausdorff's map from its last axis's pass (2D, 3D, dropped channel 0 and not) and from
/// `finish_map` (one spatial axis, no envelope pass), on sizes that fill no workgroup evenly.
#[test]
fn hausdorff_map_written_by_the_last_axis_or_finish_map() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(13);
    // [4, 301]: 301 first-axis lines per volume, more than one workgroup's (WG = 256) and not a
    // multiple of it (the first axis takes a loss's lines in blocks of WG per volume).
    for dims in [&[37][..], &[9, 13], &[5, 3, 7], &[4, 301]] {
        let shape = Shape::new(2, 4, dims).unwrap();
        let z = rng.logits(shape.numel(), 3.0);
        let t = targets(&mut rng, &shape, TargetKind::Labels, 4, None, false);
        for params in [
            &["reduction=none"][..],
            &["include_background=true", "alpha=1"],
        ] {
            let what = format!("hausdorff-dt {params:?} {dims:?}");
            let loss = Loss::parse("hausdorff-dt", params).unwrap();
            assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
        }
    }
}

/// Volumes of one class, which the envelope passes skip (`kinds` in shaders/distance.wgsl): a
/// class absent from an image's targets and predictions, one filling an image's targets, and a
/// prediction that puts every pixel in one class. Hausdorff's map pass must still write the map
/// of such a prediction volume (from its target's distances); boundary's and the plain
/// transform's values must stay as the first axis left them.
#[test]
fn one_class_volumes_skip_the_envelope_passes() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(31);
    for dims in [&[9, 13][..], &[5, 3, 7]] {
        let shape = Shape::new(3, 4, dims).unwrap();
        let (s, c) = (shape.s(), shape.c());
        // Image 0: classes 0 and 1 only (2 and 3 absent). Image 1: class 2 everywhere.
        // Image 2: every class.
        let labels: Vec<i32> = (0..shape.pixels())
            .map(|p| match p / s {
                0 => rng.below(2) as i32,
                1 => 2,
                _ => rng.below(4) as i32,
            })
            .collect();
        // Predictions: image 0 confident in class 1 everywhere, so its other classes' masks are
        // empty and class 1's full; the others random.
        let mut z = rng.logits(shape.numel(), 3.0);
        for i in 0..s {
            for k in 0..c {
                z[k * s + i] = if k == 1 { 8.0 } else { -8.0 };
            }
        }
        let t = segloss::Targets::Labels(&labels);
        for (name, params) in [
            ("hausdorff-dt", &["include_background=true"][..]),
            ("hausdorff-dt", &["reduction=none"]),
            ("log-hausdorff-dt", &[]),
            ("boundary", &[]),
            ("boundary", &["reduction=none"]),
        ] {
            let what = format!("{name} {params:?} {dims:?}, one-class volumes");
            let loss = Loss::parse(name, params).unwrap();
            assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t);
        }
    }
}

/// Hausdorff's prediction masks under a softmax where logits tie: a pixel whose largest logit
/// is shared has every p <= 0.5 and is in no mask (the GPU finds the one class that can pass
/// 0.5 as the unique largest logit, the CPU thresholds f64 probabilities). Logits from a few
/// values, so ties are common, and with C = 2 a tie puts p at exactly 0.5.
#[test]
fn hausdorff_prediction_masks_with_tied_logits() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(17);
    for (c, dims) in [(2, &[11, 13][..]), (3, &[5, 4, 6])] {
        let shape = Shape::new(2, c, dims).unwrap();
        let values = [-40.0f32, 0.0, 1.0, 2.5];
        let z: Vec<f32> = (0..shape.numel())
            .map(|_| values[(rng.unit() * 4.0) as usize % 4])
            .collect();
        let t = targets(&mut rng, &shape, TargetKind::Labels, c, None, false);
        let what = format!("hausdorff-dt tied logits C={c} {dims:?}");
        let loss = Loss::parse("hausdorff-dt", &["include_background=true"]).unwrap();
        assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
    }
}

/// Hausdorff's prediction masks of confident pixels whose two largest logits (31.4 to 32) are
/// one or two f32 ulps apart, so the larger's p is 0.5 + 4.8e-7 or 0.5 + 9.5e-7 (the third class
/// is far below): the GPU must put each pixel on the CPU's side. p > 0.5 taken as
/// exp(max - lse) > 0.5 carried the rounding of lse (past 32 here, an ulp of 3.8e-6) into p and
/// put a good share of them in the background (loss off by 0.1); 1 / Σ exp(z - max) > 0.5 rounds
/// only in the sum, 1 + exp(-d).
#[test]
fn hausdorff_prediction_masks_at_the_threshold() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(29);
    let c = 3;
    let shape = Shape::new(2, c, &[9, 14]).unwrap();
    let s = shape.s();
    let mut z = vec![-20f32; shape.numel()];
    for pixel in 0..shape.pixels() {
        let (n, i) = (pixel / s, pixel % s);
        let top = 31.4 + 0.55 * rng.unit();
        let ulps = 1 + rng.below(2) as u32;
        let second = f32::from_bits(top.to_bits() - ulps);
        let a = rng.below(c);
        let b = (a + 1 + rng.below(c - 1)) % c;
        z[(n * c + a) * s + i] = top;
        z[(n * c + b) * s + i] = second;
    }
    let t = targets(&mut rng, &shape, TargetKind::Labels, c, None, false);
    let loss = Loss::parse("hausdorff-dt", &["include_background=true"]).unwrap();
    let what = "hausdorff-dt, the two largest logits an ulp or two apart";
    assert_gpu_matches_cpu((gpu, kernels), what, &loss, &shape, &z, t.view());
}

fn exact_transform_equals_cpu(gpu: &Gpu, kernels: &Kernels, shapes: &[(&[usize], &[f32])]) {
    let mut rng = Rng::new(3);
    for &(spatial, spacing) in shapes {
        let s: usize = spatial.iter().product();
        let count = 4;
        let mut masks = random_masks(&mut rng, count, s, 0.4);
        // Mask 2 empty, mask 3 full.
        masks[2 * s..3 * s].iter_mut().for_each(|m| *m = false);
        masks[3 * s..4 * s].iter_mut().for_each(|m| *m = true);
        let words: Vec<u32> = masks.iter().map(|&m| m as u32).collect();
        for signed in [false, true] {
            let options = DistanceOptions {
                spacing: spacing.to_vec(),
                signed,
                method: Method::Exact,
                ..Default::default()
            };
            let got = transform(gpu, kernels, &words, spatial, &options);
            for m in 0..count {
                let mask = &masks[m * s..(m + 1) * s];
                let want = if signed {
                    segloss::cpu::distance::signed_map(mask, spatial, spacing)
                } else {
                    segloss::cpu::distance::edt(mask, spatial, spacing)
                };
                for (i, w) in want.iter().enumerate() {
                    let g = got[m * s + i] as f64;
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{spatial:?} {spacing:?} signed={signed} mask {m} pixel {i}: gpu {g} vs cpu {w}"
                    );
                }
            }
        }
    }
}

/// Blob masks: a few random discs/balls, the shapes distance losses see.
fn blobs(rng: &mut Rng, spatial: &[usize], count: usize) -> Vec<bool> {
    let s: usize = spatial.iter().product();
    let mut mask = vec![false; s];
    for _ in 0..count {
        let c: Vec<f32> = spatial.iter().map(|&d| rng.range(0.0, d as f32)).collect();
        let r = rng.range(2.0, spatial[0] as f32 / 4.0);
        for (i, m) in mask.iter_mut().enumerate() {
            let mut rem = i;
            let mut d2 = 0.0;
            for a in (0..spatial.len()).rev() {
                let x = (rem % spatial[a]) as f32;
                rem /= spatial[a];
                d2 += (x - c[a]) * (x - c[a]);
            }
            *m |= d2 <= r * r;
        }
    }
    mask
}

/// The accuracy of each jump-flooding variant against the exact transform (printed as the
/// table of the docs), with loose bounds that catch a broken kernel.
#[test]
fn jfa_variants_accuracy() {
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let mut rng = Rng::new(99);
    println!("| shape | method | wrong pixels | max error | sum error |");
    println!("|---|---|---|---|---|");
    for (spatial, spacing, masks) in [
        (&[128usize, 128][..], &[1.0f32, 1.0][..], 4usize),
        (&[96, 80][..], &[1.0, 2.0][..], 4),
        (&[32, 32, 32][..], &[1.0, 1.0, 1.0][..], 2),
    ] {
        let s: usize = spatial.iter().product();
        let all: Vec<bool> = (0..masks)
            .flat_map(|_| blobs(&mut rng, spatial, 5))
            .collect();
        let words: Vec<u32> = all.iter().map(|&m| m as u32).collect();
        let exact: Vec<f64> = (0..masks)
            .flat_map(|m| {
                segloss::cpu::distance::signed_map(&all[m * s..(m + 1) * s], spatial, spacing)
            })
            .collect();
        for method in Method::ALL {
            let options = DistanceOptions {
                spacing: spacing.to_vec(),
                signed: true,
                method,
                ..Default::default()
            };
            let plan = kernels.distance_plan(masks, spatial, &options).unwrap();
            let mb = segloss::readback::upload(device, "masks", bytemuck::cast_slice(&words));
            let out = segloss::readback::zeros(device, "out", plan.len());
            let mut enc = device.create_command_encoder(&Default::default());
            plan.record(&mut enc, &mb, &out).unwrap();
            gpu.queue.submit([enc.finish()]);
            let got: Vec<f32> =
                segloss::readback::download(device, &gpu.queue, &out, plan.len()).unwrap();
            let (mut wrong, mut max_err, mut sum_got, mut sum_exact) =
                (0usize, 0.0f64, 0.0f64, 0.0f64);
            for (g, e) in got.iter().zip(&exact) {
                let err = (*g as f64 - e).abs();
                wrong += (err > 1e-3 * (1.0 + e.abs())) as usize;
                max_err = max_err.max(err);
                sum_got += (*g as f64).abs();
                sum_exact += e.abs();
            }
            let share = wrong as f64 / got.len() as f64;
            let sum_rel = (sum_got - sum_exact).abs() / sum_exact;
            println!(
                "| {spatial:?} spacing {spacing:?} | {method:?} | {:.3}% | {max_err:.3} | {:.2e} |",
                share * 100.0,
                sum_rel
            );
            if method == Method::Exact {
                assert_eq!(wrong, 0, "the exact method must be exact");
            } else {
                assert!(
                    share < 0.05 && sum_rel < 0.01,
                    "{method:?} on {spatial:?}: {share} wrong, sum error {sum_rel}"
                );
            }
        }
    }
}

/// The exact transform (GPU and CPU) against scipy's `distance_transform_edt(mask, sampling)`
/// and the signed maps of tests/fixtures/generate_distance.py. A mask without background is the
/// one documented difference: scipy measures to a virtual background pixel before index 0, this
/// crate gives 0.
#[test]
fn exact_transform_matches_scipy_fixtures() {
    use common::npy::{fixtures_dir, read_f32};
    let (gpu, kernels) = gpu();
    let dir = fixtures_dir().join("distance");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let cases = manifest.as_array().unwrap();
    assert!(cases.len() > 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let spacing: Vec<f32> = c["spacing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let path = |part: &str| dir.join(format!("{name}.{part}.npy"));
        let f = std::fs::File::open(path("mask")).unwrap();
        let npy = npyz::NpyFile::new(std::io::BufReader::new(f)).unwrap();
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let mask: Vec<bool> = npy
            .into_vec::<u8>()
            .unwrap()
            .into_iter()
            .map(|m| m != 0)
            .collect();
        let (count, spatial) = (shape[0], &shape[1..]);
        let s: usize = spatial.iter().product();
        let edt = read_f32(&path("edt")).data;
        let signed = read_f32(&path("signed")).data;
        for (is_signed, want) in [(false, &edt), (true, &signed)] {
            let options = DistanceOptions {
                spacing: spacing.clone(),
                signed: is_signed,
                method: Method::Exact,
                ..Default::default()
            };
            let words: Vec<u32> = mask.iter().map(|&m| m as u32).collect();
            let got = transform(gpu, kernels, &words, spatial, &options);
            for m in 0..count {
                let mk = &mask[m * s..(m + 1) * s];
                let full = mk.iter().all(|&x| x);
                let cpu = if is_signed {
                    segloss::cpu::distance::signed_map(mk, spatial, &spacing)
                } else {
                    segloss::cpu::distance::edt(mk, spatial, &spacing)
                };
                for i in 0..s {
                    let w = if full && !is_signed {
                        0.0
                    } else {
                        want[m * s + i] as f64
                    };
                    let (g, c) = (got[m * s + i] as f64, cpu[i]);
                    let tol = 1e-5 * (1.0 + w.abs());
                    assert!(
                        (g - w).abs() <= tol && (c - w).abs() <= tol,
                        "{name} mask {m} signed={is_signed} pixel {i}: gpu {g}, cpu {c}, scipy {w}"
                    );
                }
            }
        }
    }
}

/// The boundary loss with a map computed once (`record_target_map`) and reused
/// (`record_with_map`) equals the plain `record`, step after step; other losses refuse a map.
#[test]
fn boundary_map_computed_once_and_reused() {
    use segloss::{Inputs, Loss, Outputs, Shape, TargetKind};
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let shape = Shape::new(2, 3, &[19, 23]).unwrap();
    let loss = Loss::parse("boundary", &["spacing=1,1.5"]).unwrap();
    let plan = kernels
        .plan(&loss, shape.clone(), TargetKind::Labels)
        .unwrap();
    let mut rng = Rng::new(4);
    let labels: Vec<i32> = (0..shape.pixels())
        .map(|i| (((i % 23) / 6 + (i / 23) / 7) % 3) as i32)
        .collect();
    let yb = segloss::readback::upload(device, "y", bytemuck::cast_slice(&labels));
    let map = segloss::readback::zeros(device, "map", plan.distance_map_len());
    let mut enc = device.create_command_encoder(&Default::default());
    plan.record_target_map(&mut enc, &yb, &map).unwrap();
    gpu.queue.submit([enc.finish()]);
    for step in 0..3 {
        let z = rng.logits(shape.numel(), 3.0);
        let zb = segloss::readback::upload(device, "z", bytemuck::cast_slice(&z));
        let inputs = Inputs {
            logits: &zb,
            targets: &yb,
        };
        let run = |with_map: bool| {
            let (lb, gb) = (
                segloss::readback::zeros(device, "l", 1),
                segloss::readback::zeros(device, "g", shape.numel()),
            );
            let mut enc = device.create_command_encoder(&Default::default());
            if with_map {
                plan.record_with_map(&mut enc, &inputs, &map, &Outputs::new(&lb, &gb))
                    .unwrap();
            } else {
                plan.record(&mut enc, &inputs, &Outputs::new(&lb, &gb))
                    .unwrap();
            }
            gpu.queue.submit([enc.finish()]);
            let l: Vec<f32> = segloss::readback::download(device, &gpu.queue, &lb, 1).unwrap();
            let g: Vec<f32> =
                segloss::readback::download(device, &gpu.queue, &gb, shape.numel()).unwrap();
            (l, g)
        };
        let (a, b) = (run(true), run(false));
        assert_eq!(a, b, "step {step}: the reused map gives another result");
        let cpu =
            segloss::cpu::forward_backward(&loss, &shape, &z, segloss::Targets::Labels(&labels))
                .unwrap();
        assert_loss_close("boundary with a reused map", &a.0, &cpu.loss, 1e-4);
    }
    let dice = kernels
        .plan(
            &Loss::parse("dice", &[]).unwrap(),
            shape,
            TargetKind::Labels,
        )
        .unwrap();
    let mut enc = device.create_command_encoder(&Default::default());
    let err = dice
        .record_target_map(&mut enc, &yb, &map)
        .unwrap_err()
        .to_string();
    assert!(err.contains("only the boundary loss"), "{err}");
}

/// Masks built on the GPU from labels (one per class) and from thresholded probabilities.
#[test]
fn masks_from_labels_and_probabilities() {
    use segloss::distance::MaskSource;
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let spatial = [11usize, 14];
    let s = 11 * 14;
    let mut rng = Rng::new(8);
    let run = |source: MaskSource, count: usize, input: &[u8]| -> Vec<f32> {
        let options = DistanceOptions {
            spacing: vec![1.0, 2.0],
            source,
            ..Default::default()
        };
        let plan = kernels.distance_plan(count, &spatial, &options).unwrap();
        let ib = segloss::readback::upload(device, "in", input);
        let out = segloss::readback::zeros(device, "out", plan.len());
        let mut enc = device.create_command_encoder(&Default::default());
        plan.record(&mut enc, &ib, &out).unwrap();
        gpu.queue.submit([enc.finish()]);
        segloss::readback::download(device, &gpu.queue, &out, plan.len()).unwrap()
    };
    let labels: Vec<i32> = (0..2 * s)
        .map(|i| ((i % 14) / 4 + (i % s) / 30) as i32 % 3)
        .collect();
    let got = run(
        MaskSource::Labels { classes: 3 },
        2,
        bytemuck::cast_slice(&labels),
    );
    for n in 0..2 {
        for c in 0..3 {
            let mask: Vec<bool> = (0..s).map(|i| labels[n * s + i] == c as i32).collect();
            let want = segloss::cpu::distance::edt(&mask, &spatial, &[1.0, 2.0]);
            for i in 0..s {
                let g = got[(n * 3 + c) * s + i] as f64;
                assert!(
                    (g - want[i]).abs() < 1e-4,
                    "labels: image {n} class {c} pixel {i}: {g} vs {}",
                    want[i]
                );
            }
        }
    }
    let probs: Vec<f32> = (0..s)
        .map(|i| if i % 17 == 0 { 0.5 } else { rng.unit() })
        .collect();
    let got = run(MaskSource::Probabilities, 1, bytemuck::cast_slice(&probs));
    let mask: Vec<bool> = probs.iter().map(|&p| p > 0.5).collect();
    let want = segloss::cpu::distance::edt(&mask, &spatial, &[1.0, 2.0]);
    for i in 0..s {
        assert!(
            (got[i] as f64 - want[i]).abs() < 1e-4,
            "probabilities: pixel {i}"
        );
    }
}
