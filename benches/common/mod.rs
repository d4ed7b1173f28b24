//! Shared pieces of the criterion benches: seeded inputs and a GPU runner on resident buffers.
#![allow(dead_code)]

use criterion::{BenchmarkGroup, BenchmarkId, Throughput};
use segloss::{Gpu, GpuOptions, Inputs, Kernels, Loss, Outputs, Shape, TargetKind, Targets};

/// Seeded logits in [-3, 3], labels in [0, C), and binary dense targets.
pub fn inputs(shape: &Shape) -> (Vec<f32>, Vec<i32>, Vec<f32>) {
    let mut x = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    let c = shape.c();
    let z = (0..shape.numel()).map(|_| next() * 6.0 - 3.0).collect();
    let labels = (0..shape.pixels())
        .map(|_| ((next() * c as f32) as usize).min(c - 1) as i32)
        .collect();
    let dense = (0..shape.numel()).map(|_| next().round()).collect();
    (z, labels, dense)
}

/// The adapter (lavapipe without a GPU) and its kernels.
pub fn gpu() -> (Gpu, Kernels) {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let gpu = Gpu::new(&GpuOptions::default()).expect("a GPU adapter (or lavapipe)");
    eprintln!("benches on {}", gpu.describe());
    let kernels = Kernels::new(&gpu.device).unwrap();
    (gpu, kernels)
}

/// Benches `loss` on `shape`: the CPU reference and the GPU (submit to completion, resident
/// buffers, no upload or readback). Throughput: logits read and gradient written once, plus the
/// targets.
#[allow(clippy::too_many_arguments)]
pub fn bench_loss(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    gpu: &Gpu,
    kernels: &Kernels,
    loss: &Loss,
    shape: &Shape,
    kind: TargetKind,
    id: &str,
    with_cpu: bool,
) {
    let device = &gpu.device;
    let (z, labels, dense) = inputs(shape);
    let t = match kind {
        TargetKind::Labels => Targets::Labels(&labels),
        TargetKind::Dense => Targets::Dense(&dense),
    };
    group.throughput(Throughput::Bytes((shape.numel() * 8 + t.len() * 4) as u64));
    if with_cpu {
        group.bench_function(BenchmarkId::new("cpu", id), |b| {
            b.iter(|| segloss::cpu::forward_backward(loss, shape, &z, t).unwrap())
        });
    }
    let plan = kernels.plan(loss, shape.clone(), kind).unwrap();
    let zb = segloss::readback::upload(device, "z", bytemuck::cast_slice(&z));
    let yb = segloss::readback::upload(device, "y", t.as_bytes());
    let lb = segloss::readback::zeros(device, "l", plan.loss_len());
    let gb = segloss::readback::zeros(device, "g", shape.numel());
    group.bench_function(BenchmarkId::new("gpu", id), |b| {
        b.iter(|| {
            let mut enc = device.create_command_encoder(&Default::default());
            let inputs = Inputs {
                logits: &zb,
                targets: &yb,
            };
            plan.record(&mut enc, &inputs, &Outputs::new(&lb, &gb))
                .unwrap();
            gpu.queue.submit([enc.finish()]);
            device
                .poll(segloss::wgpu::PollType::wait_indefinitely())
                .unwrap();
        })
    });
}

/// `SEGLOSS_BENCH=quick` shrinks the shapes (software adapters, smoke runs).
pub fn quick() -> bool {
    std::env::var("SEGLOSS_BENCH").is_ok_and(|v| v == "quick")
}

/// The sizes every family's losses are benched at, so that cost growth with size is visible: the
/// issue's 2D and 3D sizes (8×C×128×256, 2×C×64³) and two smaller steps of each, 4× and 16×
/// fewer pixels in 2D, 8× and 64× in 3D (`quick`: the smallest of each). `c2` and `c3` are the
/// channel counts of the 2D and 3D shapes.
pub fn sweep(c2: usize, c3: usize) -> Vec<Shape> {
    let (plane, cube): (&[[usize; 2]], &[usize]) = if quick() {
        (&[[32, 64]], &[16])
    } else {
        (&[[32, 64], [64, 128], [128, 256]], &[16, 32, 64])
    };
    let (n2, n3) = if quick() { (2, 1) } else { (8, 2) };
    let flat = plane.iter().map(|hw| Shape::new(n2, c2, hw).unwrap());
    let deep = cube
        .iter()
        .map(|&d| Shape::new(n3, c3, &[d, d, d]).unwrap());
    flat.chain(deep).collect()
}

/// A shape's benchmark id: its extents joined by `x` (`8x19x128x256`), as `segloss bench` prints.
pub fn shape_id(shape: &Shape) -> String {
    let dims: Vec<String> = shape.dims().iter().map(|d| d.to_string()).collect();
    dims.join("x")
}

/// A loss to bench: its name, its parameters and the kind of targets it takes.
pub type Case<'a> = (&'a str, &'a [&'a str], TargetKind);

/// Benches each of `losses` over `shapes`, one criterion group per loss, the CPU reference next
/// to the GPU at every shape.
pub fn bench_sweep(
    c: &mut criterion::Criterion,
    gpu: &Gpu,
    kernels: &Kernels,
    losses: &[Case],
    shapes: &[Shape],
) {
    for (name, params, kind) in losses {
        let loss = Loss::parse(name, params).unwrap();
        let mut group = c.benchmark_group(*name);
        group.sample_size(10);
        for shape in shapes {
            bench_loss(
                &mut group,
                gpu,
                kernels,
                &loss,
                shape,
                *kind,
                &shape_id(shape),
                true,
            );
        }
        group.finish();
    }
}
