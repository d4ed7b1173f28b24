//! Topology and contour losses: the CPU reference against finite differences, the GPU against the
//! CPU.

mod common;

use common::*;
use segloss::{Loss, Shape, TargetKind};

const CONTOUR: &[&[&str]] = &[&[], &["lambda_region=0.5", "w_length=2", "eps=1e-6"]];

#[test]
fn active_contour_gpu_matches_cpu() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(3);
    for params in CONTOUR {
        let loss = Loss::parse("active-contour", params).unwrap();
        for shape in [
            Shape::new(2, 1, &[9, 11]).unwrap(),
            Shape::new(1, 1, &[5, 6, 7]).unwrap(),
            Shape::new(3, 1, &[70, 90]).unwrap(),
        ] {
            for kind in [TargetKind::Labels, TargetKind::Dense] {
                let z = rng.logits(shape.numel(), 3.0);
                let t = targets(&mut rng, &shape, kind, 2, None, true);
                let what = format!("active-contour {params:?} {:?} {kind:?}", shape.dims());
                assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
            }
        }
    }
}

/// The software tuning keeps each length term's slopes in scratch (ndims floats per pixel) where
/// they fit one binding; where they do not (64 KiB bindings: 2 × 8 192 slopes for 8 192 logits),
/// the gradient pass recomputes them, with the same result.
#[test]
fn active_contour_slopes_beyond_one_binding() {
    let (small, kernels) = small_binding_device();
    let loss = Loss::parse("active-contour", &[]).unwrap();
    let mut rng = Rng::new(5);
    for shape in [
        Shape::new(1, 1, &[40, 50]).unwrap(),
        Shape::new(1, 1, &[64, 128]).unwrap(),
    ] {
        let z = rng.logits(shape.numel(), 3.0);
        let t = targets(&mut rng, &shape, TargetKind::Labels, 2, None, true);
        let what = format!("active-contour {:?} on 64 KiB bindings", shape.dims());
        assert_gpu_matches_cpu((&small, &kernels), &what, &loss, &shape, &z, t.view());
    }
}

/// Near-perfect predictions (logits ±12 that agree with blob labels, plus noise): the length
/// term divides differences of probabilities near 1 by sqrt(d² + 1e-8); taken as σ(z_a) - σ(z_b)
/// they kept few digits (4e-4 of the largest gradient), as differences of σ(-z) they keep them.
#[test]
fn active_contour_near_perfect_predictions_match_cpu() {
    let (gpu, kernels) = gpu();
    let loss = Loss::parse("active-contour", &[]).unwrap();
    let shape = Shape::new(2, 1, &[12, 13]).unwrap();
    for seed in 0..6 {
        let mut rng = Rng::new(seed);
        let labels = blob_labels(&mut rng, &shape, 2);
        for scale in [8.0, 12.0] {
            let noise = rng.logits(shape.numel(), 1.0);
            let z: Vec<f32> = labels
                .iter()
                .zip(&noise)
                .map(|(&l, &e)| if l == 1 { scale } else { -scale } + e)
                .collect();
            let t = segloss::Targets::Labels(&labels);
            let what = format!("near-perfect, seed {seed}, scale {scale}");
            assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t);
            assert_gpu_matches_cpu((gpu, gpu_tuned()), &what, &loss, &shape, &z, t);
        }
    }
}

#[test]
fn active_contour_cpu_gradient_matches_finite_differences() {
    let mut rng = Rng::new(9);
    for params in CONTOUR {
        let loss = Loss::parse("active-contour", params).unwrap();
        for shape in [
            Shape::new(2, 1, &[5, 6]).unwrap(),
            Shape::new(1, 1, &[4, 4, 5]).unwrap(),
        ] {
            let z: Vec<f64> = rng
                .logits(shape.numel(), 3.0)
                .iter()
                .map(|&v| v as f64)
                .collect();
            let t = targets(&mut rng, &shape, TargetKind::Labels, 2, None, false);
            let f = |z: &[f64]| {
                segloss::cpu::forward_backward_f64(&loss, &shape, z, t.view())
                    .unwrap()
                    .0[0]
            };
            let (_, grad) =
                segloss::cpu::forward_backward_f64(&loss, &shape, &z, t.view()).unwrap();
            for i in 0..z.len() {
                let h = 1e-6;
                let (mut zp, mut zm) = (z.clone(), z.clone());
                zp[i] += h;
                zm[i] -= h;
                let fd = (f(&zp) - f(&zm)) / (2.0 * h);
                assert!(
                    (fd - grad[i]).abs() < 1e-6,
                    "{params:?} {:?} element {i}: {} vs {fd}",
                    shape.dims(),
                    grad[i]
                );
            }
        }
    }
}

const CLDICE: &[(&str, &[&str])] = &[
    ("cldice", &[]),
    (
        "cldice",
        &["iter_=1", "include_background=false", "reduction=none"],
    ),
    (
        "cldice",
        &["iter_=5", "smooth_nr=0.5", "smooth_dr=2", "reduction=sum"],
    ),
    // Raw logits, negative ones included: outside the volume must never win a pool.
    ("cldice", &["activation=none", "iter_=2"]),
    ("dice-cldice", &[]),
    (
        "dice-cldice",
        &["alpha=0.3", "iter_=2", "include_background=false"],
    ),
];

/// Thin structures (lines) so the skeletons are non-trivial.
fn line_labels(shape: &Shape, classes: usize) -> Vec<i32> {
    let spatial = shape.spatial();
    let w = *spatial.last().unwrap();
    (0..shape.pixels())
        .map(|i| {
            let s = i % shape.s();
            let (row, col) = (s / w, s % w);
            if (col + row / 3) % 5 == 0 {
                1 + (row % (classes - 1).max(1)) as i32
            } else {
                0
            }
        })
        .map(|v| if classes == 1 { v.min(1) } else { v })
        .collect()
}

#[test]
fn cldice_gpu_matches_cpu() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(23);
    for (name, params) in CLDICE {
        let loss = Loss::parse(name, params).unwrap();
        for shape in [
            Shape::new(2, 3, &[9, 11]).unwrap(),
            Shape::new(1, 2, &[5, 6, 7]).unwrap(),
            Shape::new(2, 1, &[12, 10]).unwrap(),
        ] {
            let labels = line_labels(&shape, if shape.c() == 1 { 1 } else { shape.c() });
            let z = rng.logits(shape.numel(), 2.0);
            let what = format!("{name} {params:?} {:?}", shape.dims());
            let t = segloss::Targets::Labels(&labels);
            assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t);
        }
    }
}

/// Away from ties the soft skeleton is smooth: central differences agree with the routed
/// gradient.
#[test]
fn cldice_cpu_gradient_matches_finite_differences() {
    let mut rng = Rng::new(5);
    for (name, params) in CLDICE {
        let loss = Loss::parse(name, params).unwrap();
        let shape = Shape::new(1, 2, &[6, 7]).unwrap();
        let labels = line_labels(&shape, 2);
        let z: Vec<f64> = rng
            .logits(shape.numel(), 2.0)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let t = segloss::Targets::Labels(&labels);
        let f = |z: &[f64]| {
            segloss::cpu::forward_backward_f64(&loss, &shape, z, t)
                .unwrap()
                .0
                .iter()
                .sum::<f64>()
        };
        let (_, grad) = segloss::cpu::forward_backward_f64(&loss, &shape, &z, t).unwrap();
        for i in 0..z.len() {
            let h = 1e-7;
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[i] += h;
            zm[i] -= h;
            let fd = (f(&zp) - f(&zm)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 1e-5,
                "{name} {params:?} element {i}: {} vs {fd}",
                grad[i]
            );
        }
    }
}
