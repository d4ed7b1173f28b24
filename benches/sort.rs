//! The radix sort (keys per second against the standard library's stable sort), the selection,
//! and the sorting-based losses against the CPU reference over the sizes of `common::sweep`.
//! `cargo bench --bench sort` (`SEGLOSS_BENCH=quick` for small shapes on software adapters).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use segloss::TargetKind;

fn bench(c: &mut Criterion) {
    let (gpu, kernels) = common::gpu();
    let device = &gpu.device;
    let quick = common::quick();
    let mut group = c.benchmark_group("sort pairs");
    group.sample_size(10);
    let sizes: &[usize] = if quick {
        &[1 << 14]
    } else {
        &[1 << 16, 1 << 20, 1 << 22]
    };
    for &len in sizes {
        let mut x = 0x9E3779B97F4A7C15u64;
        let keys: Vec<u32> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u32
            })
            .collect();
        let values: Vec<u32> = (0..len as u32).collect();
        group.throughput(Throughput::Elements(len as u64));
        group.bench_function(BenchmarkId::new("std stable sort", len), |b| {
            b.iter(|| segloss::cpu::sort::sort_pairs(&keys, &values, 32))
        });
        let plan = kernels.sort_plan(len).unwrap();
        let kb = segloss::readback::upload(device, "keys", bytemuck::cast_slice(&keys));
        let vb = segloss::readback::upload(device, "values", bytemuck::cast_slice(&values));
        group.bench_function(BenchmarkId::new("gpu radix sort", len), |b| {
            b.iter(|| {
                // Re-sorting sorted data costs the same passes: no reset needed.
                let mut enc = device.create_command_encoder(&Default::default());
                plan.record(&mut enc, &kb, &vb, 32).unwrap();
                gpu.queue.submit([enc.finish()]);
                device
                    .poll(segloss::wgpu::PollType::wait_indefinitely())
                    .unwrap();
            })
        });
        let select = kernels.select_plan(len, len / 10).unwrap();
        let fb = segloss::readback::zeros(device, "flags", len);
        group.bench_function(BenchmarkId::new("gpu radix select 10%", len), |b| {
            b.iter(|| {
                let mut enc = device.create_command_encoder(&Default::default());
                select.record(&mut enc, &kb, &fb).unwrap();
                gpu.queue.submit([enc.finish()]);
                device
                    .poll(segloss::wgpu::PollType::wait_indefinitely())
                    .unwrap();
            })
        });
    }
    group.finish();
    let multi: &[common::Case] = &[
        ("lovasz-softmax", &[], TargetKind::Labels),
        ("topk", &[], TargetKind::Labels),
    ];
    common::bench_sweep(c, &gpu, &kernels, multi, &common::sweep(19, 14));
    let binary: &[common::Case] = &[("lovasz-hinge", &[], TargetKind::Labels)];
    common::bench_sweep(c, &gpu, &kernels, binary, &common::sweep(1, 1));
}

criterion_group!(benches, bench);
criterion_main!(benches);
