mod common;
use common::*;
use segloss::{Loss, Shape, TargetKind};

#[test]
fn smoke() {
    let (gpu, k) = gpu();
    let shape = Shape::new(2, 3, &[5, 7]).unwrap();
    let mut rng = Rng::new(1);
    let z = rng.logits(shape.numel(), 3.0);
    for (name, params, kind) in [
        ("cross-entropy", vec![], TargetKind::Labels),
        ("cross-entropy", vec!["label_smoothing=0.1", "weight=1,2,0.5"], TargetKind::Labels),
        ("cross-entropy", vec![], TargetKind::Dense),
        ("bce", vec!["pos_weight=1,2,3"], TargetKind::Dense),
        ("balanced-bce", vec![], TargetKind::Dense),
        ("focal", vec![], TargetKind::Labels),
        ("focal", vec!["activation=softmax", "alpha=0.25"], TargetKind::Labels),
    ] {
        let loss = Loss::parse(name, &params).unwrap();
        let t = targets(&mut rng, &shape, kind, shape.c(), None, false);
        let cpu = segloss::cpu::forward_backward(&loss, &shape, &z, t.view()).unwrap();
        let g = k.run_blocking(&gpu.queue, &loss, &shape, &z, t.view()).unwrap();
        eprintln!("{name} {params:?}: cpu {:?} gpu {:?}", cpu.loss, g.loss);
        assert_loss_close(name, &g.loss, &cpu.loss, 1e-4);
        assert_grad_close(name, &g.grad, &cpu.grad, 1e-4);
    }
}
