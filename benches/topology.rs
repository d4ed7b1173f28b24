//! Topology and contour losses (clDice's soft skeleton, active contour) against the CPU
//! reference. `cargo bench --bench topology` (`SEGLOSS_BENCH=quick` for small shapes).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use segloss::{Loss, Shape, TargetKind};

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let quick = common::quick();
    let cases: Vec<(&str, Shape)> = if quick {
        vec![
            ("cldice", Shape::new(2, 3, &[32, 32]).unwrap()),
            ("dice-cldice", Shape::new(1, 2, &[16, 16, 16]).unwrap()),
            ("active-contour", Shape::new(2, 1, &[64, 64]).unwrap()),
        ]
    } else {
        vec![
            ("cldice", Shape::new(8, 4, &[128, 256]).unwrap()),
            ("cldice", Shape::new(2, 2, &[64, 64, 64]).unwrap()),
            ("dice-cldice", Shape::new(8, 4, &[128, 256]).unwrap()),
            ("active-contour", Shape::new(8, 1, &[256, 256]).unwrap()),
            ("active-contour", Shape::new(2, 1, &[64, 64, 64]).unwrap()),
        ]
    };
    for (name, shape) in cases {
        let loss = Loss::parse(name, &[]).unwrap();
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        let id = format!("{:?}", shape.dims());
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
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
