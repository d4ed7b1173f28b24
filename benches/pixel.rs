//! Pixel-wise losses: the GPU fused pass (submit to completion, resident buffers) against the
//! CPU reference, over a sweep of sizes so that cost growth is visible. On a software adapter
//! (lavapipe) keep the sizes small: `cargo bench --bench pixel`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use segloss::{Gpu, GpuOptions, Inputs, Kernels, Loss, Outputs, Shape, TargetKind, Targets};

fn inputs(shape: &Shape) -> (Vec<f32>, Vec<i32>, Vec<f32>) {
    let mut x = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    let z = (0..shape.numel()).map(|_| next() * 6.0 - 3.0).collect();
    let labels = (0..shape.pixels())
        .map(|_| (next() * shape.c() as f32) as i32 % shape.c() as i32)
        .collect();
    let dense = (0..shape.numel()).map(|_| next().round()).collect();
    (z, labels, dense)
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new(&GpuOptions::default()).expect("a GPU adapter (or lavapipe)");
    let kernels = Kernels::new(&gpu.device).unwrap();
    let device = &gpu.device;
    let losses = [
        ("cross-entropy", vec![], TargetKind::Labels),
        ("bce", vec![], TargetKind::Dense),
        ("balanced-bce", vec![], TargetKind::Dense),
        ("focal", vec!["activation=softmax"], TargetKind::Labels),
    ];
    for (name, params, kind) in losses {
        let loss = Loss::parse(name, &params).unwrap();
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for hw in [[32usize, 64], [64, 128], [128, 256]] {
            let shape = Shape::new(2, 19, &hw).unwrap();
            let (z, labels, dense) = inputs(&shape);
            let t = match kind {
                TargetKind::Labels => Targets::Labels(&labels),
                TargetKind::Dense => Targets::Dense(&dense),
            };
            let id = format!("2x19x{}x{}", hw[0], hw[1]);
            group.throughput(Throughput::Bytes((shape.numel() * 8 + t.len() * 4) as u64));
            group.bench_function(BenchmarkId::new("cpu", &id), |b| {
                b.iter(|| segloss::cpu::forward_backward(&loss, &shape, &z, t).unwrap())
            });
            let plan = kernels.plan(&loss, shape.clone(), kind).unwrap();
            let zb = segloss::readback::upload(device, "z", bytemuck::cast_slice(&z));
            let yb = segloss::readback::upload(device, "y", t.as_bytes());
            let lb = segloss::readback::zeros(device, "l", plan.loss_len());
            let gb = segloss::readback::zeros(device, "g", shape.numel());
            group.bench_function(BenchmarkId::new("gpu", &id), |b| {
                b.iter(|| {
                    let mut enc = device.create_command_encoder(&Default::default());
                    plan.record(
                        &mut enc,
                        &Inputs {
                            logits: &zb,
                            targets: &yb,
                        },
                        &Outputs::new(&lb, &gb),
                    )
                    .unwrap();
                    gpu.queue.submit([enc.finish()]);
                    device
                        .poll(segloss::wgpu::PollType::wait_indefinitely())
                        .unwrap();
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
