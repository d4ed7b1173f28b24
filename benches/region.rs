//! Region losses (two passes over the logits): the GPU against the CPU reference over the sizes
//! of `common::sweep`, up to the 2D size (8×19×128×256) and 3D size (2×14×64×64×64).
//! `cargo bench --bench region` (`SEGLOSS_BENCH=quick` for small shapes on software adapters).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use segloss::TargetKind;

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let losses: &[common::Case] = &[
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
    common::bench_sweep(c, &gpu, &kernels, losses, &common::sweep(19, 14));
    // The binary losses, on their own channel counts.
    let unified: &[common::Case] = &[("unified-focal", &[], TargetKind::Labels)];
    common::bench_sweep(c, &gpu, &kernels, unified, &common::sweep(2, 2));
    let wasserstein: &[common::Case] = &[(
        "wasserstein-dice",
        &["dist_matrix=0,1,1,1,0,0.5,1,0.5,0"],
        TargetKind::Labels,
    )];
    common::bench_sweep(c, &gpu, &kernels, wasserstein, &common::sweep(3, 3));
}

criterion_group!(benches, bench);
criterion_main!(benches);
