//! Distance transforms (every method) and the distance losses, GPU against the CPU reference,
//! over a sweep of sizes (the losses: `common::sweep`).
//! `cargo bench --bench distance` (`SEGLOSS_BENCH=quick` for small shapes on software adapters).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use segloss::distance::{DistanceOptions, Method};
use segloss::TargetKind;

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let device = &gpu.device;
    let quick = common::quick();
    // Transforms: a batch of masks (discs on a grid).
    let cases: Vec<(usize, Vec<usize>)> = if quick {
        vec![(4, vec![64, 64]), (1, vec![32, 32, 32])]
    } else {
        vec![
            (16, vec![64, 64]),
            (16, vec![128, 128]),
            (16, vec![256, 256]),
            (1, vec![32, 32, 32]),
            (1, vec![64, 64, 64]),
            (1, vec![128, 128, 128]),
        ]
    };
    let mut group = c.benchmark_group("distance transform");
    group.sample_size(10);
    for (masks, spatial) in &cases {
        let s: usize = spatial.iter().product();
        let mask: Vec<u32> = (0..masks * s)
            .map(|i| (((i % s) * 2654435761) % 97 < 40) as u32)
            .collect();
        let bools: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        let id = format!("{masks}x{spatial:?}");
        group.throughput(Throughput::Elements((masks * s) as u64));
        group.bench_function(BenchmarkId::new("cpu exact", &id), |b| {
            b.iter(|| {
                for m in 0..*masks {
                    segloss::cpu::distance::edt(&bools[m * s..(m + 1) * s], spatial, &[]);
                }
            })
        });
        for method in Method::ALL {
            let options = DistanceOptions {
                method,
                ..Default::default()
            };
            let plan = kernels.distance_plan(*masks, spatial, &options).unwrap();
            let mb = segloss::readback::upload(device, "masks", bytemuck::cast_slice(&mask));
            let out = segloss::readback::zeros(device, "out", plan.len());
            group.bench_function(BenchmarkId::new(format!("gpu {method:?}"), &id), |b| {
                b.iter(|| {
                    let mut enc = device.create_command_encoder(&Default::default());
                    plan.record(&mut enc, &mb, &out).unwrap();
                    gpu.queue.submit([enc.finish()]);
                    device
                        .poll(segloss::wgpu::PollType::wait_indefinitely())
                        .unwrap();
                })
            });
        }
    }
    group.finish();
    // The losses.
    let losses: &[common::Case] = &[
        ("boundary", &[], TargetKind::Labels),
        ("hausdorff-dt", &[], TargetKind::Labels),
        ("log-hausdorff-dt", &[], TargetKind::Labels),
    ];
    common::bench_sweep(c, &gpu, &kernels, losses, &common::sweep(19, 14));
}

criterion_group!(benches, bench);
criterion_main!(benches);
