//! The CPU reference against central finite differences, in f64, for every pixel-wise loss and
//! option combination (weights, smoothing, ignore_index, reductions, C = 1, dense/labels, 1-3D).

mod common;

use common::*;
use segloss::{Loss, Shape, TargetKind};

/// Central differences of the summed loss (the gradient of `none` is that of the sum).
fn check(loss: &Loss, shape: &Shape, t: &OwnedTargets, seed: u64) {
    let mut rng = Rng::new(seed);
    let z: Vec<f64> = rng
        .logits(shape.numel(), 3.0)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let f = |z: &[f64]| -> f64 {
        let (l, _) = segloss::cpu::forward_backward_f64(loss, shape, z, t.view()).unwrap();
        l.iter().sum()
    };
    let (_, grad) = segloss::cpu::forward_backward_f64(loss, shape, &z, t.view()).unwrap();
    let h = 1e-5;
    let scale = grad.iter().fold(1e-3f64, |m, g| m.max(g.abs()));
    for i in 0..z.len() {
        let mut zp = z.clone();
        zp[i] += h;
        let mut zm = z.clone();
        zm[i] -= h;
        let fd = (f(&zp) - f(&zm)) / (2.0 * h);
        let err = (fd - grad[i]).abs();
        assert!(
            err <= 1e-6 * scale.max(1.0),
            "{loss:?} {:?} element {i}: analytic {} vs finite difference {fd} (error {err:.2e})",
            shape.dims(),
            grad[i]
        );
    }
}

fn cases() -> Vec<(&'static str, Vec<&'static str>, TargetKind)> {
    use TargetKind::{Dense, Labels};
    let mut v = vec![];
    for red in ["reduction=mean", "reduction=sum", "reduction=none"] {
        v.extend([
            ("cross-entropy", vec![red], Labels),
            (
                "cross-entropy",
                vec![red, "weight=0.5,2,1", "label_smoothing=0.2"],
                Labels,
            ),
            (
                "cross-entropy",
                vec![red, "ignore_index=7", "weight=0.5,2,1"],
                Labels,
            ),
            (
                "cross-entropy",
                vec![red, "label_smoothing=0.1", "weight=1,3,0.2"],
                Dense,
            ),
            (
                "bce",
                vec![red, "weight=0.5,2,1", "pos_weight=3,1,0.5"],
                Dense,
            ),
            ("bce", vec![red, "ignore_index=7"], Labels),
            ("balanced-bce", vec![red], Dense),
            ("balanced-bce", vec![red, "ignore_index=7"], Labels),
            ("focal", vec![red], Labels),
            (
                "focal",
                vec![red, "gamma=0.5", "alpha=0.3", "weight=1,2,0.5"],
                Dense,
            ),
            (
                "focal",
                vec![red, "include_background=false", "ignore_index=7"],
                Labels,
            ),
            (
                "focal",
                vec![red, "activation=softmax", "alpha=0.25"],
                Labels,
            ),
            ("focal", vec![red, "activation=softmax", "gamma=1.5"], Dense),
            (
                "focal",
                vec![
                    red,
                    "activation=softmax",
                    "include_background=false",
                    "ignore_index=7",
                ],
                Labels,
            ),
        ]);
    }
    v
}

#[test]
fn cpu_gradients_match_finite_differences() {
    let shapes = [
        Shape::new(2, 3, &[4, 3]).unwrap(),
        Shape::new(1, 3, &[2, 3, 2]).unwrap(),
        Shape::new(2, 3, &[5]).unwrap(),
    ];
    let mut rng = Rng::new(7);
    for (k, (name, params, kind)) in cases().into_iter().enumerate() {
        let loss = Loss::parse(name, &params).unwrap();
        let shape = &shapes[k % shapes.len()];
        let ignore = params
            .iter()
            .any(|p| p.starts_with("ignore_index"))
            .then_some(7);
        let t = targets(
            &mut rng,
            shape,
            kind,
            label_classes(&loss, shape),
            ignore,
            false,
        );
        check(&loss, shape, &t, k as u64);
    }
}

#[test]
fn cpu_gradients_match_finite_differences_single_channel() {
    let shape = Shape::new(2, 1, &[3, 4]).unwrap();
    let mut rng = Rng::new(11);
    for (name, params) in [
        ("cross-entropy", vec!["label_smoothing=0.1"]),
        ("bce", vec!["pos_weight=2"]),
        ("balanced-bce", vec![]),
        ("focal", vec!["alpha=0.25", "gamma=0.5"]),
        ("focal", vec!["reduction=sum", "ignore_index=-1"]),
    ] {
        let loss = Loss::parse(name, &params).unwrap();
        let ignore = params
            .iter()
            .any(|p| p.starts_with("ignore_index"))
            .then_some(-1);
        let t = targets(
            &mut rng,
            &shape,
            TargetKind::Labels,
            label_classes(&loss, &shape),
            ignore,
            false,
        );
        check(&loss, &shape, &t, 3);
    }
}
