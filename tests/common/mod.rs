//! Shared test helpers: the device (failing loudly when there is none), seeded random inputs,
//! and the tolerance checks.
#![allow(dead_code)]

pub mod npy;

use std::sync::OnceLock;

use segloss::{Gpu, GpuOptions, Kernels, Loss, Shape, TargetKind};

/// The test device: Vulkan (lavapipe in CI). No adapter is a failure, never a skip.
pub fn gpu() -> &'static (Gpu, Kernels) {
    static GPU: OnceLock<(Gpu, Kernels)> = OnceLock::new();
    GPU.get_or_init(|| {
        quiet_lavapipe();
        let options = GpuOptions {
            backends: segloss::wgpu::Backends::VULKAN,
            ..Default::default()
        };
        let gpu = Gpu::new(&options).unwrap_or_else(|e| {
            panic!("GPU tests need a Vulkan adapter (apt-get install mesa-vulkan-drivers): {e}")
        });
        let kernels = Kernels::new(&gpu.device).expect("kernels");
        eprintln!("GPU tests on {}", gpu.describe());
        (gpu, kernels)
    })
}

/// Kernels on the test device tuned for a GPU whatever the adapter (a thread per pixel, no pixel
/// cache: `KernelOptions::software_tuning`), so that lavapipe also runs what a GPU runs.
pub fn gpu_tuned() -> &'static Kernels {
    static KERNELS: OnceLock<Kernels> = OnceLock::new();
    KERNELS.get_or_init(|| {
        let options = segloss::KernelOptions {
            software_tuning: Some(false),
            ..Default::default()
        };
        Kernels::with_options(&gpu().0.device, options).expect("GPU-tuned kernels")
    })
}

/// A second device on the test adapter whose storage bindings hold 64 KiB (16 384 f32), to reach
/// the paths for tensors larger than one binding cheaply.
pub fn small_binding_device() -> (Gpu, Kernels) {
    let mut limits = gpu().0.adapter.limits();
    limits.max_storage_buffer_binding_size = 64 * 1024;
    let small = Gpu::new(&GpuOptions {
        backends: segloss::wgpu::Backends::VULKAN,
        limits: Some(limits),
        ..Default::default()
    })
    .expect("device with lowered limits");
    let kernels = Kernels::new(&small.device).expect("kernels");
    (small, kernels)
}

/// Mesa's lavapipe prints `error: XDG_RUNTIME_DIR is invalid` when the variable is unset (as in
/// CI); point it at the temp dir before the first instance is created.
pub fn quiet_lavapipe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
}

/// A small deterministic generator (SplitMix64), so tests need no RNG crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn logits(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.range(-scale, scale)).collect()
    }
}

/// Host targets owned by a test.
#[derive(Clone, Debug)]
pub enum OwnedTargets {
    Labels(Vec<i32>),
    Dense(Vec<f32>),
}

impl OwnedTargets {
    pub fn view(&self) -> segloss::Targets<'_> {
        match self {
            OwnedTargets::Labels(v) => segloss::Targets::Labels(v),
            OwnedTargets::Dense(v) => segloss::Targets::Dense(v),
        }
    }
    pub fn kind(&self) -> TargetKind {
        self.view().kind()
    }
}

/// Random targets of `kind` for `shape`: labels in [0, classes) with a share of `ignore`
/// pixels, or dense values in [0, 1] (`binary` rounds them).
pub fn targets(
    rng: &mut Rng,
    shape: &Shape,
    kind: TargetKind,
    classes: usize,
    ignore: Option<i32>,
    binary: bool,
) -> OwnedTargets {
    match kind {
        TargetKind::Labels => OwnedTargets::Labels(
            (0..shape.pixels())
                .map(|_| match ignore {
                    Some(i) if rng.below(5) == 0 => i,
                    _ => rng.below(classes) as i32,
                })
                .collect(),
        ),
        TargetKind::Dense => OwnedTargets::Dense(
            (0..shape.numel())
                .map(|_| {
                    let v = rng.unit();
                    if binary {
                        v.round()
                    } else {
                        v
                    }
                })
                .collect(),
        ),
    }
}

/// Labels of a 2-D `shape` ([N, C, H, W]) in blobs of 3×3 pixels, each a random class of
/// `classes`: the coherent regions a near-perfect prediction agrees with.
pub fn blob_labels(rng: &mut Rng, shape: &Shape, classes: usize) -> Vec<i32> {
    let (h, w) = (shape.spatial()[0], shape.spatial()[1]);
    let (bh, bw) = (h.div_ceil(3), w.div_ceil(3));
    let blobs: Vec<i32> = (0..shape.n() * bh * bw)
        .map(|_| rng.below(classes) as i32)
        .collect();
    (0..shape.pixels())
        .map(|p| {
            let (n, y, x) = (p / (h * w), (p % (h * w)) / w, p % w);
            blobs[(n * bh + y / 3) * bw + x / 3]
        })
        .collect()
}

/// Softmax logits of a near-perfect prediction of `labels`: `scale` at each pixel's label, 0 at
/// the other channels, plus noise uniform in [-1, 1].
pub fn near_perfect_logits(rng: &mut Rng, shape: &Shape, labels: &[i32], scale: f32) -> Vec<f32> {
    let (c, s) = (shape.c(), shape.s());
    let noise = rng.logits(shape.numel(), 1.0);
    (0..shape.numel())
        .map(|e| {
            let (n, ch, px) = (e / (c * s), (e / s) % c, e % s);
            let hot = labels[n * s + px] == ch as i32;
            (if hot { scale } else { 0.0 }) + noise[e]
        })
        .collect()
}

/// Labels valid for `loss` on `shape`: {0, 1} for the binary form (C = 1, not the softmax
/// cross-entropies, whose labels are class indices).
pub fn label_classes(loss: &Loss, shape: &Shape) -> usize {
    if shape.c() == 1 && !matches!(loss, Loss::CrossEntropy(_) | Loss::TopK(_)) {
        2
    } else {
        shape.c()
    }
}

/// Loss values agree within `rel` relative error (absolute `rel` near zero).
pub fn assert_loss_close(what: &str, got: &[f32], want: &[f32], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: loss length");
    let scale = want
        .iter()
        .fold(0.0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-3);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs();
        let tol = rel * (w.abs() as f64).max(if want.len() > 1 { scale } else { 1e-3 });
        assert!(
            err <= tol,
            "{what}: loss[{i}] = {g}, expected {w} (error {err:.3e} > {tol:.3e})"
        );
    }
}

/// One input through the GPU kernels (of `device`) and through the CPU reference: the loss within
/// 1e-4 relative, the gradient within 1e-4 of its largest entry.
pub fn assert_gpu_matches_cpu(
    device: (&Gpu, &Kernels),
    what: &str,
    loss: &Loss,
    shape: &Shape,
    z: &[f32],
    t: segloss::Targets,
) {
    let cpu = segloss::cpu::forward_backward(loss, shape, z, t)
        .unwrap_or_else(|e| panic!("{what}: CPU reference: {e}"));
    let (gpu, kernels) = device;
    let out = kernels
        .run_blocking(&gpu.queue, loss, shape, z, t)
        .unwrap_or_else(|e| panic!("{what}: GPU: {e}"));
    assert_loss_close(what, &out.loss, &cpu.loss, 1e-4);
    assert_grad_close(what, &out.grad, &cpu.grad, 1e-4);
}

/// Gradients agree: max |error| <= `rel` × max |expected| (absolute floor 1e-7).
pub fn assert_grad_close(what: &str, got: &[f32], want: &[f32], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: grad length");
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let tol = (rel * scale).max(1e-7);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs();
        assert!(
            err <= tol,
            "{what}: grad[{i}] = {g}, expected {w} (error {err:.3e} > {tol:.3e}, max |grad| {scale:.3e})"
        );
    }
}
