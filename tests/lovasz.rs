//! Lovász losses: the CPU reference against finite differences (away from ties), the GPU
//! against the CPU over random shapes and options.

mod common;

use common::*;
use segloss::sort::SCAN_TILE;
use segloss::{Loss, Shape, TargetKind};

const CASES: &[(&str, &[&str])] = &[
    ("lovasz-softmax", &[]),
    ("lovasz-softmax", &["classes=all"]),
    ("lovasz-softmax", &["per_image=true"]),
    (
        "lovasz-softmax",
        &["per_image=true", "classes=all", "ignore_index=9"],
    ),
    ("lovasz-softmax", &["ignore_index=9"]),
    ("lovasz-hinge", &[]),
    ("lovasz-hinge", &["per_image=true"]),
    ("lovasz-hinge", &["per_image=true", "ignore_index=9"]),
];

fn shapes(name: &str) -> Vec<Shape> {
    if name == "lovasz-hinge" {
        vec![
            Shape::new(2, 1, &[7, 9]).unwrap(),
            Shape::new(3, 1, &[3, 4, 5]).unwrap(),
            // Several scan tiles per segment.
            Shape::new(1, 1, &[2 * SCAN_TILE + 500]).unwrap(),
        ]
    } else {
        vec![
            Shape::new(2, 3, &[7, 9]).unwrap(),
            Shape::new(1, 4, &[5, 6, 7]).unwrap(),
            // Several scan tiles per segment (two per image with per_image).
            Shape::new(2, 2, &[SCAN_TILE + 300]).unwrap(),
        ]
    }
}

fn inputs(rng: &mut Rng, loss: &Loss, shape: &Shape, params: &[&str]) -> (Vec<f32>, OwnedTargets) {
    let ignore = params
        .iter()
        .any(|p| p.starts_with("ignore_index"))
        .then_some(9);
    (
        rng.logits(shape.numel(), 3.0),
        targets(
            rng,
            shape,
            TargetKind::Labels,
            label_classes(loss, shape),
            ignore,
            false,
        ),
    )
}

#[test]
fn gpu_matches_cpu() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(31);
    for (name, params) in CASES {
        let loss = Loss::parse(name, params).unwrap();
        for shape in shapes(name) {
            let (z, t) = inputs(&mut rng, &loss, &shape, params);
            let what = format!("{name} {params:?} {:?}", shape.dims());
            assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
        }
    }
}

#[test]
fn hinge_dense_mask_gpu_matches_cpu() {
    // Soft and binary masks: the foreground is read from the mask, not from the sorted tag.
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(37);
    for per_image in ["per_image=false", "per_image=true"] {
        let loss = Loss::parse("lovasz-hinge", &[per_image]).unwrap();
        for binary in [false, true] {
            for shape in shapes("lovasz-hinge") {
                let z = rng.logits(shape.numel(), 3.0);
                let t = targets(&mut rng, &shape, TargetKind::Dense, 2, None, binary);
                let what = format!(
                    "lovasz-hinge {per_image} dense binary={binary} {:?}",
                    shape.dims()
                );
                assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
            }
        }
    }
}

#[test]
fn cpu_gradients_match_finite_differences() {
    let mut rng = Rng::new(2);
    for (name, params) in CASES {
        let loss = Loss::parse(name, params).unwrap();
        let shape = if *name == "lovasz-hinge" {
            Shape::new(2, 1, &[3, 4]).unwrap()
        } else {
            Shape::new(2, 3, &[3, 2]).unwrap()
        };
        let (z, t) = inputs(&mut rng, &loss, &shape, params);
        let z: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let f = |z: &[f64]| {
            segloss::cpu::forward_backward_f64(&loss, &shape, z, t.view())
                .unwrap()
                .0[0]
        };
        let (_, grad) = segloss::cpu::forward_backward_f64(&loss, &shape, &z, t.view()).unwrap();
        for i in 0..z.len() {
            let h = 1e-7; // small enough not to reorder the errors (random logits: no ties)
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[i] += h;
            zm[i] -= h;
            let fd = (f(&zp) - f(&zm)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 1e-5,
                "{name} {params:?} element {i}: analytic {} vs finite difference {fd}",
                grad[i]
            );
        }
    }
}

#[test]
fn topk_gpu_matches_cpu() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(19);
    for params in [
        &["k=10"][..],
        &["k=25", "weight=0.5,2,1", "ignore_index=9"][..],
        &["k=100"][..],
        &["k=1"][..],
        &["k=50", "ignore_index=9"][..],
    ] {
        let loss = Loss::parse("topk", params).unwrap();
        for shape in [
            Shape::new(2, 3, &[7, 9]).unwrap(),
            Shape::new(1, 3, &[5, 6, 7]).unwrap(),
            Shape::new(2, 3, &[50, 70]).unwrap(),
            Shape::new(1, 3, &[2, 2]).unwrap(),
        ] {
            let ignore = params
                .iter()
                .any(|p| p.starts_with("ignore_index"))
                .then_some(9);
            let z = rng.logits(shape.numel(), 3.0);
            let t = targets(&mut rng, &shape, TargetKind::Labels, 3, ignore, false);
            let what = format!("topk {params:?} {:?}", shape.dims());
            assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
        }
    }
}

/// Ties at the threshold: exactly K pixels are selected, the lowest indices first.
#[test]
fn topk_ties_keep_exactly_k() {
    let (gpu, kernels) = gpu();
    let shape = Shape::new(1, 2, &[40]).unwrap();
    // Every pixel has the same loss: K = 10 of 40 are kept, pixels 0..10.
    let z = vec![0.0f32; shape.numel()];
    let labels = vec![1i32; 40];
    let loss = Loss::parse("topk", &["k=25"]).unwrap();
    let out = kernels
        .run_blocking(
            &gpu.queue,
            &loss,
            &shape,
            &z,
            segloss::Targets::Labels(&labels),
        )
        .unwrap();
    let cpu = segloss::cpu::forward_backward(&loss, &shape, &z, segloss::Targets::Labels(&labels))
        .unwrap();
    let selected: Vec<usize> = (0..40).filter(|&p| out.grad[40 + p] != 0.0).collect();
    assert_eq!(selected, (0..10).collect::<Vec<_>>());
    assert_grad_close("ties", &out.grad, &cpu.grad, 1e-6);
    assert_loss_close("ties", &out.loss, &cpu.loss, 1e-6);
}

/// In a segment of 2^18 elements the gradients are about 1/2^18 each: the GPU's must still agree
/// with the f64 reference to 1e-4 of the largest, with no absolute floor (as a difference of
/// consecutive f32 Jaccard losses they were off by several percent).
#[test]
fn large_segments_keep_their_gradient_digits() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(41);
    for name in ["lovasz-hinge", "lovasz-softmax"] {
        let loss = Loss::parse(name, &[]).unwrap();
        let c = if name == "lovasz-hinge" { 1 } else { 2 };
        let shape = Shape::new(1, c, &[1 << 18]).unwrap();
        let (z, t) = inputs(&mut rng, &loss, &shape, &[]);
        let cpu = segloss::cpu::forward_backward(&loss, &shape, &z, t.view()).unwrap();
        let out = kernels
            .run_blocking(&gpu.queue, &loss, &shape, &z, t.view())
            .unwrap();
        assert_loss_close(name, &out.loss, &cpu.loss, 1e-4);
        let scale = cpu.grad.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        for (i, (&g, &w)) in out.grad.iter().zip(&cpu.grad).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{name}: grad[{i}] = {g:e}, expected {w:e} (max |grad| {scale:e})"
            );
        }
    }
}

/// Pixels so confident that their errors are exactly 0 (p = 1 in f32 at their label) among
/// ignored pixels: the sort orders softmax errors by 30 key bits, where an ignored pixel's key
/// ties with an error of 0, and the result must not depend on how that tie falls.
#[test]
fn exact_zero_errors_beside_ignored_pixels() {
    let (gpu, kernels) = gpu();
    let mut rng = Rng::new(43);
    for params in [
        &["ignore_index=9"][..],
        &["ignore_index=9", "per_image=true"],
    ] {
        let loss = Loss::parse("lovasz-softmax", params).unwrap();
        let shape = Shape::new(2, 3, &[40, 30]).unwrap();
        let (mut z, t) = inputs(&mut rng, &loss, &shape, params);
        let OwnedTargets::Labels(labels) = &t else {
            unreachable!()
        };
        let s = shape.s();
        let mut zeros = 0;
        for (p, &y) in labels.iter().enumerate() {
            if (0..3).contains(&y) && p % 2 == 0 {
                // exp(-200) underflows to 0: p_y = 1 and p_c = 0 exactly, so every error is 0.
                let (n, sp) = (p / s, p % s);
                for c in 0..3 {
                    z[(n * 3 + c) * s + sp] = if c as i32 == y { 100.0 } else { -100.0 };
                }
                zeros += 1;
            }
        }
        assert!(zeros > 100 && labels.iter().filter(|&&y| y == 9).count() > 100);
        assert_gpu_matches_cpu(
            (gpu, kernels),
            &format!("{params:?}"),
            &loss,
            &shape,
            &z,
            t.view(),
        );
    }
}
