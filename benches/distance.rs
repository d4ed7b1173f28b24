//! Distance transforms (every method) and the distance losses, GPU against the CPU reference.
//! `cargo bench --bench distance` (`SEGLOSS_BENCH=quick` for small shapes on software adapters).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use segloss::distance::{DistanceOptions, Method};
use segloss::{Loss, Shape, TargetKind};

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let device = &gpu.device;
    let quick = common::quick();
    // Transforms: a batch of masks (discs on a grid).
    let cases: Vec<(usize, Vec<usize>)> = if quick {
        vec![(4, vec![64, 64]), (1, vec![32, 32, 32])]
    } else {
        vec![(16, vec![256, 256]), (1, vec![128, 128, 128])]
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
    let shape = if quick {
        Shape::new(2, 4, &[32, 64]).unwrap()
    } else {
        Shape::new(8, 19, &[128, 256]).unwrap()
    };
    let id = format!("{:?}", shape.dims());
    for name in ["boundary", "hausdorff-dt", "log-hausdorff-dt"] {
        let loss = Loss::parse(name, &[]).unwrap();
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
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
