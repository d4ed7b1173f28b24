//! Topology and contour losses (clDice's soft skeleton, active contour) against the CPU
//! reference, over the sizes of `common::sweep`. `cargo bench --bench topology`
//! (`SEGLOSS_BENCH=quick` for small shapes).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use segloss::TargetKind;

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let skeleton: &[common::Case] = &[
        ("cldice", &[], TargetKind::Labels),
        ("dice-cldice", &[], TargetKind::Labels),
    ];
    common::bench_sweep(c, &gpu, &kernels, skeleton, &common::sweep(4, 2));
    let contour: &[common::Case] = &[("active-contour", &[], TargetKind::Labels)];
    common::bench_sweep(c, &gpu, &kernels, contour, &common::sweep(1, 1));
}

criterion_group!(benches, bench);
criterion_main!(benches);
