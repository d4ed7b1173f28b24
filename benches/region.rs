//! Region losses (two passes over the logits): the GPU against the CPU reference at a 2D size
//! (8×19×128×256) and a 3D size (2×14×64×64×64). `cargo bench --bench region`
//! (`SEGLOSS_BENCH=quick` for small shapes on software adapters).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use segloss::{Loss, Shape, TargetKind};

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let losses: &[(&str, &[&str], TargetKind)] = &[
        ("dice", &[], TargetKind::Labels),
        ("jaccard", &[], TargetKind::Labels),
        ("tversky", &[], TargetKind::Labels),
        ("focal-tversky", &[], TargetKind::Labels),
        ("asymmetric", &[], TargetKind::Labels),
        ("generalized-dice", &[], TargetKind::Labels),
        ("log-cosh-dice", &[], TargetKind::Labels),
        ("sensitivity-specificity", &[], TargetKind::Labels),
        ("dice-ce", &[], TargetKind::Labels),
        ("dice-focal", &[], TargetKind::Labels),
        ("generalized-dice-focal", &[], TargetKind::Labels),
        ("exp-log", &[], TargetKind::Labels),
        ("combo", &[], TargetKind::Dense),
    ];
    let shapes: Vec<(Shape, String)> = if common::quick() {
        vec![
            (Shape::new(2, 19, &[32, 64]).unwrap(), "2x19x32x64".into()),
            (
                Shape::new(1, 14, &[16, 16, 16]).unwrap(),
                "1x14x16x16x16".into(),
            ),
        ]
    } else {
        vec![
            (
                Shape::new(8, 19, &[128, 256]).unwrap(),
                "8x19x128x256".into(),
            ),
            (
                Shape::new(2, 14, &[64, 64, 64]).unwrap(),
                "2x14x64x64x64".into(),
            ),
        ]
    };
    for (name, params, kind) in losses {
        let loss = Loss::parse(name, params).unwrap();
        let mut group = c.benchmark_group(*name);
        group.sample_size(10);
        for (shape, id) in &shapes {
            common::bench_loss(&mut group, &gpu, &kernels, &loss, shape, *kind, id, true);
        }
        group.finish();
    }
    // The binary losses, on their own shapes.
    let mut group = c.benchmark_group("binary");
    group.sample_size(10);
    let (n, hw) = if common::quick() {
        (2, [32, 64])
    } else {
        (8, [128, 256])
    };
    for (name, params, c_n) in [
        ("unified-focal", &[][..], 2),
        (
            "wasserstein-dice",
            &["dist_matrix=0,1,1,1,0,0.5,1,0.5,0"][..],
            3,
        ),
    ] {
        let loss = Loss::parse(name, params).unwrap();
        let shape = Shape::new(n, c_n, &hw).unwrap();
        let id = format!("{name}/{n}x{c_n}x{}x{}", hw[0], hw[1]);
        common::bench_loss(
            &mut group,
            &gpu,
            &kernels,
            &loss,
            &shape,
            TargetKind::Labels,
            &id,
            true,
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
