//! Pixel-wise losses: the GPU fused pass against the CPU reference, over a sweep of sizes so that
//! cost growth is visible. `cargo bench --bench pixel` (`SEGLOSS_BENCH=quick` for small shapes).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use segloss::{Loss, Shape, TargetKind};

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let losses = [
        ("cross-entropy", vec![], TargetKind::Labels),
        ("bce", vec![], TargetKind::Dense),
        ("balanced-bce", vec![], TargetKind::Dense),
        ("focal", vec!["activation=softmax"], TargetKind::Labels),
    ];
    let sizes: &[[usize; 2]] = if common::quick() {
        &[[32, 64]]
    } else {
        &[[32, 64], [64, 128], [128, 256]]
    };
    for (name, params, kind) in losses {
        let loss = Loss::parse(name, &params).unwrap();
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for hw in sizes {
            let n = if common::quick() { 2 } else { 8 };
            let shape = Shape::new(n, 19, hw).unwrap();
            let id = format!("{n}x19x{}x{}", hw[0], hw[1]);
            common::bench_loss(&mut group, &gpu, &kernels, &loss, &shape, kind, &id, true);
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
