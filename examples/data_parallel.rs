//! Data-parallel training with a global Dice: two simulated ranks, each holding half of a batch,
//! record their statistics, sum them (the all-reduce a real engine does with NCCL, MPI, ...),
//! and run the backward on their own halves. The gradient equals the one a single device
//! computes for the whole batch with `batch = true`, up to the order of the statistics' sums.
//!
//! `cargo run --release --example data_parallel` (exits non-zero if the results disagree).

use segloss::readback::{download, upload, zeros};
use segloss::{Gpu, GpuOptions, Inputs, Kernels, Loss, Outputs, Shape, TargetKind, Targets};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()); // quiets lavapipe
    }
    let gpu = Gpu::new(&GpuOptions::default())?;
    let kernels = Kernels::new(&gpu.device)?;
    let (device, queue) = (&gpu.device, &gpu.queue);
    let mut worst = 0.0f64;
    for (name, params) in [
        ("dice", &["batch=true", "include_background=false"][..]),
        ("dice-ce", &["batch=true", "label_smoothing=0.1"][..]),
        ("generalized-dice", &["batch=true"][..]),
    ] {
        let loss = Loss::parse(name, params)?;
        let (full, half) = (Shape::new(4, 3, &[32, 48])?, Shape::new(2, 3, &[32, 48])?);
        // Deterministic inputs.
        let z: Vec<f32> = (0..full.numel())
            .map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0)
            .collect();
        let y: Vec<i32> = (0..full.pixels())
            .map(|i| ((i / 37 + i % 5) % 3) as i32)
            .collect();

        // One device, whole batch.
        let one = kernels.run_blocking(queue, &loss, &full, &z, Targets::Labels(&y))?;

        // Two ranks, half each: the same plan serves both.
        let plan = kernels.plan(&loss, half.clone(), TargetKind::Labels)?;
        let ranks: Vec<_> = (0..2)
            .map(|r| {
                let zs = &z[r * half.numel()..(r + 1) * half.numel()];
                let ys = &y[r * half.pixels()..(r + 1) * half.pixels()];
                (
                    upload(device, "z", bytemuck::cast_slice(zs)),
                    upload(device, "y", bytemuck::cast_slice(ys)),
                )
            })
            .collect();
        // Step 1 on every rank: statistics.
        let mut stats = Vec::new();
        for (zb, yb) in &ranks {
            let buf = zeros(device, "stats", plan.stats_len());
            let mut enc = device.create_command_encoder(&Default::default());
            plan.record_statistics(
                &mut enc,
                &Inputs {
                    logits: zb,
                    targets: yb,
                },
                &buf,
            )?;
            queue.submit([enc.finish()]);
            stats.push(download::<f32>(device, queue, &buf, plan.stats_len())?);
        }
        // The all-reduce: an element-wise sum.
        let summed: Vec<f32> = stats[0].iter().zip(&stats[1]).map(|(a, b)| a + b).collect();
        // Step 2 on every rank: loss and gradient of the global batch, for its own pixels.
        let mut grad = Vec::new();
        let mut losses = Vec::new();
        for (zb, yb) in &ranks {
            let stats = upload(device, "stats", bytemuck::cast_slice(&summed));
            let (lb, gb) = (
                zeros(device, "loss", 1),
                zeros(device, "grad", half.numel()),
            );
            let mut enc = device.create_command_encoder(&Default::default());
            plan.record_backward(
                &mut enc,
                &Inputs {
                    logits: zb,
                    targets: yb,
                },
                &stats,
                &Outputs::new(&lb, &gb),
            )?;
            queue.submit([enc.finish()]);
            losses.push(download::<f32>(device, queue, &lb, 1)?[0]);
            grad.extend(download::<f32>(device, queue, &gb, half.numel())?);
        }
        let scale = one.grad.iter().fold(0.0f64, |m, g| m.max(g.abs() as f64));
        let err = grad
            .iter()
            .zip(&one.grad)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64))
            / scale;
        worst = worst.max(err);
        println!(
            "{name:<18} one device: loss {:.6}  |  ranks: loss {:.6} / {:.6}  |  gradient max error {err:.2e} (relative to max |grad|)",
            one.loss[0], losses[0], losses[1]
        );
    }
    // A pure region loss gives every rank the global loss; a compound one (dice-ce) gives each
    // rank the global region term plus its own share of the pixel-wise term.
    if worst > 1e-5 {
        return Err(format!(
            "split-phase gradients differ from the single-device ones: {worst:.2e}"
        )
        .into());
    }
    println!("the split phase reproduces the single-device gradient");
    Ok(())
}
