//! Pixel-wise losses: the GPU fused pass against the CPU reference, over the sizes of
//! `common::sweep` so that cost growth is visible. `cargo bench --bench pixel`
//! (`SEGLOSS_BENCH=quick` for small shapes).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use segloss::TargetKind;

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let losses: &[common::Case] = &[
        ("cross-entropy", &[], TargetKind::Labels),
        ("bce", &[], TargetKind::Dense),
        ("balanced-bce", &[], TargetKind::Dense),
        ("focal", &["activation=softmax"], TargetKind::Labels),
    ];
    common::bench_sweep(c, &gpu, &kernels, losses, &common::sweep(19, 14));
}

criterion_group!(benches, bench);
criterion_main!(benches);
