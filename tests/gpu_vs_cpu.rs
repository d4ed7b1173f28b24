//! Property tests: every GPU kernel against the CPU reference over random shapes (odd sizes that
//! are not multiples of the workgroup, C = 1, 1D-3D, several workgroups) and random options,
//! plus overwrite/accumulate and grad_scale.

mod common;

use common::Rng;
use common::*;
use proptest::prelude::*;
use segloss::{Inputs, Loss, Outputs, Shape, TargetKind};

fn shape_strategy() -> impl Strategy<Value = Shape> {
    (
        1usize..4,
        1usize..6,
        prop::collection::vec(1usize..40, 1..=3),
    )
        .prop_map(|(n, c, s)| Shape::new(n, c, &s).unwrap())
}

/// A random loss with random options, and whether it takes dense targets.
fn loss_strategy() -> impl Strategy<Value = (String, Vec<String>, bool, bool)> {
    let reduction = prop::sample::select(vec!["mean", "sum", "none"]);
    (
        0usize..4,
        reduction,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0.0f32..3.0,
    )
        .prop_map(|(which, red, dense, flag_a, flag_b, g)| {
            let mut p = vec![format!("reduction={red}")];
            let ignore = !dense && flag_b;
            let name = ["cross-entropy", "bce", "balanced-bce", "focal"][which];
            match name {
                "cross-entropy" => {
                    if flag_a {
                        p.push(format!("label_smoothing={}", g / 10.0));
                    }
                    p.push(format!("ignore_index={}", if ignore { 9 } else { -100 }));
                }
                "focal" => {
                    p.push(format!("gamma={g}"));
                    if flag_a {
                        p.push("activation=softmax".into());
                    }
                    if flag_b {
                        p.push("alpha=0.3".into());
                        p.push("include_background=false".into());
                    }
                }
                _ => {}
            }
            if ignore && name != "cross-entropy" {
                p.push("ignore_index=9".into());
            }
            (name.to_string(), p, dense, ignore)
        })
}

fn weights(rng: &mut Rng, c: usize) -> String {
    (0..c)
        .map(|_| format!("{:.3}", rng.range(0.1, 2.0)))
        .collect::<Vec<_>>()
        .join(",")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn gpu_matches_cpu(shape in shape_strategy(), (name, mut params, dense, ignore) in loss_strategy(), seed in any::<u64>(), weighted in any::<bool>(), tuned in any::<bool>()) {
        // Half the cases with the kernels a GPU gets (no pixel cache, a thread per pixel).
        let (gpu, default) = gpu();
        let kernels = if tuned { gpu_tuned() } else { default };
        let mut rng = Rng::new(seed);
        if weighted && (name == "cross-entropy" || name == "bce") {
            params.push(format!("weight={}", weights(&mut rng, shape.c())));
        }
        let refs: Vec<&str> = params.iter().map(String::as_str).collect();
        let loss = Loss::parse(&name, &refs).unwrap();
        let kind = if dense { TargetKind::Dense } else { TargetKind::Labels };
        let t = targets(&mut rng, &shape, kind, label_classes(&loss, &shape), ignore.then_some(9), false);
        let z = rng.logits(shape.numel(), 4.0);
        let what = format!("{name} {params:?} {:?} {kind:?} gpu_tuned={tuned}", shape.dims());
        assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
    }
}

/// Accumulate adds to what the buffer holds, grad_scale scales the gradient and not the loss,
/// and a large shape spans many workgroups (grid-stride loops past the workgroup cap). Each
/// family's accumulating pipeline: pixel-wise, a region loss's gradient pass, the fused
/// statistics-and-gradient pass of a distance loss, and the gradient passes of Lovász, clDice,
/// top-k and the active contour.
#[test]
fn accumulate_and_grad_scale() {
    // 794 277 pixels: more than MAX_WORKGROUPS × WG threads, so every thread loops.
    let large = Shape::new(3, 4, &[257, 1031]).unwrap();
    assert!(large.pixels() > (segloss::MAX_WORKGROUPS * segloss::WG) as usize);
    let small = Shape::new(2, 4, &[37, 29]).unwrap();
    let binary = Shape::new(2, 1, &[37, 29]).unwrap();
    for (name, params, shape) in [
        (
            "cross-entropy",
            &["label_smoothing=0.05", "ignore_index=9"][..],
            &large,
        ),
        ("dice-ce", &["ignore_index=9"][..], &small),
        ("boundary", &[][..], &small),
        ("lovasz-softmax", &["ignore_index=9"][..], &small),
        ("cldice", &[][..], &small),
        ("topk", &["k=30"][..], &small),
        ("active-contour", &[][..], &binary),
    ] {
        accumulates(name, params, shape);
    }
}

fn accumulates(name: &str, params: &[&str], shape: &Shape) {
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let mut rng = Rng::new(5);
    let loss = Loss::parse(name, params).unwrap();
    let ignore = params
        .iter()
        .any(|p| p.starts_with("ignore_index"))
        .then_some(9);
    let classes = label_classes(&loss, shape);
    let t = targets(&mut rng, shape, TargetKind::Labels, classes, ignore, false);
    let z = rng.logits(shape.numel(), 3.0);
    let cpu = segloss::cpu::forward_backward(&loss, shape, &z, t.view()).unwrap();
    let plan = kernels
        .plan(&loss, shape.clone(), TargetKind::Labels)
        .unwrap();
    let zb = segloss::readback::upload(device, "z", bytemuck::cast_slice(&z));
    let yb = segloss::readback::upload(device, "y", t.view().as_bytes());
    let lb = segloss::readback::zeros(device, "l", 1);
    let prior: Vec<f32> = (0..shape.numel()).map(|i| (i % 7) as f32).collect();
    let gb = segloss::readback::upload(device, "g", bytemuck::cast_slice(&prior));
    let mut enc = device.create_command_encoder(&Default::default());
    let inputs = Inputs {
        logits: &zb,
        targets: &yb,
    };
    plan.record(
        &mut enc,
        &inputs,
        &Outputs {
            loss: &lb,
            grad: &gb,
            accumulate: true,
            grad_scale: -2.5,
        },
    )
    .unwrap();
    gpu.queue.submit([enc.finish()]);
    let l: Vec<f32> = segloss::readback::download(device, &gpu.queue, &lb, 1).unwrap();
    let g: Vec<f32> = segloss::readback::download(device, &gpu.queue, &gb, shape.numel()).unwrap();
    assert_loss_close(&format!("{name} accumulate loss"), &l, &cpu.loss, 1e-4);
    let want: Vec<f32> = prior
        .iter()
        .zip(&cpu.grad)
        .map(|(p, g)| p - 2.5 * g)
        .collect();
    let diff: Vec<f32> = g.iter().zip(&prior).map(|(a, p)| (a - p) / -2.5).collect();
    assert_grad_close(
        &format!("{name} accumulated gradient"),
        &diff,
        &cpu.grad,
        1e-3,
    );
    for (i, (a, w)) in g.iter().zip(&want).enumerate() {
        assert!(
            (a - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{name} element {i}: {a} vs {w}"
        );
    }
}

/// Logits of magnitude 100: the stable log-sum-exp and log-sigmoid keep everything finite and
/// the GPU agrees with the CPU.
#[test]
fn extreme_logits_stay_finite() {
    let (gpu, kernels) = gpu();
    let shape = Shape::new(1, 3, &[4, 5]).unwrap();
    let z: Vec<f32> = (0..shape.numel())
        .map(|i| if i % 2 == 0 { 100.0 } else { -100.0 })
        .collect();
    let labels: Vec<i32> = (0..shape.pixels()).map(|i| (i % 3) as i32).collect();
    let dense: Vec<f32> = (0..shape.numel()).map(|i| (i % 2) as f32).collect();
    for (name, params, t) in [
        (
            "cross-entropy",
            &["label_smoothing=0.1"][..],
            segloss::Targets::Labels(&labels),
        ),
        ("bce", &[][..], segloss::Targets::Dense(&dense)),
        (
            "focal",
            &["activation=softmax"][..],
            segloss::Targets::Labels(&labels),
        ),
        ("focal", &[][..], segloss::Targets::Dense(&dense)),
        ("dice-ce", &[][..], segloss::Targets::Labels(&labels)),
    ] {
        let loss = Loss::parse(name, params).unwrap();
        let cpu = segloss::cpu::forward_backward(&loss, &shape, &z, t).unwrap();
        let out = kernels
            .run_blocking(&gpu.queue, &loss, &shape, &z, t)
            .unwrap();
        assert!(
            out.loss.iter().chain(&out.grad).all(|v| v.is_finite()),
            "{name}: non-finite"
        );
        assert_loss_close(name, &out.loss, &cpu.loss, 1e-4);
        assert_grad_close(name, &out.grad, &cpu.grad, 1e-4);
    }
}

/// Pixels with as many channels as the kernels' private arrays hold, and one more: the kernels
/// built with `CACHED` (each logit read from memory once) and those without (read again where
/// needed), for every family that keeps a pixel in hand.
#[test]
fn channels_at_and_beyond_the_pixel_cache() {
    let (gpu, default) = gpu();
    let cache = segloss::loss::PIXEL_CACHE;
    // The default kernels (lavapipe: software tuning, so CACHED up to PIXEL_CACHE), and those a
    // GPU gets (never CACHED).
    for (kernels, c) in [(default, cache), (default, cache + 1), (gpu_tuned(), cache)] {
        let shape = Shape::new(2, c, &[5, 7]).unwrap();
        for (name, params, kind) in [
            (
                "cross-entropy",
                &["label_smoothing=0.1"][..],
                TargetKind::Labels,
            ),
            ("cross-entropy", &[][..], TargetKind::Dense),
            (
                "focal",
                &["activation=softmax", "gamma=2"][..],
                TargetKind::Labels,
            ),
            ("bce", &[][..], TargetKind::Dense),
            ("dice-ce", &["ignore_index=9"][..], TargetKind::Labels),
            (
                "generalized-dice",
                &["activation=sigmoid"][..],
                TargetKind::Dense,
            ),
            ("lovasz-softmax", &["classes=all"][..], TargetKind::Labels),
        ] {
            let loss = Loss::parse(name, params).unwrap();
            let mut rng = Rng::new(c as u64);
            let ignore = params
                .iter()
                .any(|p| p.starts_with("ignore_index"))
                .then_some(9);
            let t = targets(
                &mut rng,
                &shape,
                kind,
                label_classes(&loss, &shape),
                ignore,
                false,
            );
            let z = rng.logits(shape.numel(), 3.0);
            let what = format!("{name} {params:?} {kind:?} C={c} {kernels:?}");
            assert_gpu_matches_cpu((gpu, kernels), &what, &loss, &shape, &z, t.view());
        }
    }
}
