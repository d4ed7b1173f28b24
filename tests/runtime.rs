//! The runtime: determinism, the shared reduction, the subgroup fallback, the storage-binding
//! limit, the status buffer, and the constants shared between Rust and WGSL.

mod common;

use common::*;
use segloss::{
    Error, Gpu, GpuOptions, Inputs, KernelOptions, Kernels, Loss, Outputs, Shape, Status,
    TargetKind,
};

fn run_plan_raw(
    gpu: &Gpu,
    kernels: &Kernels,
    loss: &Loss,
    shape: &Shape,
    z: &[f32],
    t: &OwnedTargets,
) -> (Vec<u32>, Vec<u32>) {
    let out = kernels
        .run_blocking(&gpu.queue, loss, shape, z, t.view())
        .unwrap();
    (
        out.loss.iter().map(|v| v.to_bits()).collect(),
        out.grad.iter().map(|v| v.to_bits()).collect(),
    )
}

#[test]
fn losses_are_bit_identical_run_to_run() {
    let (gpu, kernels) = gpu();
    let shape = Shape::new(2, 5, &[300, 411]).unwrap();
    let mut rng = Rng::new(3);
    let z = rng.logits(shape.numel(), 5.0);
    for (name, params, kind) in [
        (
            "cross-entropy",
            vec!["label_smoothing=0.1", "ignore_index=4"],
            TargetKind::Labels,
        ),
        (
            "focal",
            vec!["activation=softmax", "reduction=sum", "ignore_index=4"],
            TargetKind::Labels,
        ),
        ("balanced-bce", vec![], TargetKind::Dense),
        (
            "dice-ce",
            vec!["batch=true", "ignore_index=4"],
            TargetKind::Labels,
        ),
        ("generalized-dice", vec![], TargetKind::Labels),
        ("hausdorff-dt", vec![], TargetKind::Labels),
        ("lovasz-softmax", vec!["per_image=true"], TargetKind::Labels),
        ("topk", vec!["k=15", "ignore_index=4"], TargetKind::Labels),
        ("cldice", vec!["iter_=2"], TargetKind::Labels),
    ] {
        let loss = Loss::parse(name, &params).unwrap();
        let t = targets(
            &mut rng,
            &shape,
            kind,
            5,
            Some(4).filter(|_| kind == TargetKind::Labels),
            false,
        );
        let first = run_plan_raw(gpu, kernels, &loss, &shape, &z, &t);
        for _ in 0..3 {
            assert_eq!(
                run_plan_raw(gpu, kernels, &loss, &shape, &z, &t),
                first,
                "{name} differs between runs"
            );
        }
    }
}

fn gpu_sum(gpu: &Gpu, kernels: &Kernels, x: &[f32]) -> f32 {
    let device = &gpu.device;
    let plan = kernels.sum_plan(x.len()).unwrap();
    let input = segloss::readback::upload(device, "x", bytemuck::cast_slice(x));
    let total = segloss::readback::zeros(device, "total", 1);
    let mut enc = device.create_command_encoder(&Default::default());
    plan.record(&mut enc, &input, &total).unwrap();
    gpu.queue.submit([enc.finish()]);
    segloss::readback::download::<f32>(device, &gpu.queue, &total, 1).unwrap()[0]
}

#[test]
fn reduction_agrees_with_f64_and_is_reproducible() {
    let (gpu, kernels) = gpu();
    let fallback = Kernels::with_options(
        &gpu.device,
        KernelOptions {
            subgroups: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng::new(9);
    for len in [1usize, 7, 255, 256, 257, 65_537, 1_000_003] {
        let x: Vec<f32> = (0..len).map(|_| rng.range(-1.0, 3.0)).collect();
        let exact: f64 = x.iter().map(|&v| v as f64).sum();
        let abs: f64 = x.iter().map(|&v| v.abs() as f64).sum();
        for (k, label) in [(kernels, "default"), (&fallback, "shared-memory fallback")] {
            let got = gpu_sum(gpu, k, &x);
            // A tree sum's error grows with log(len): a few ulps of the absolute sum.
            assert!(
                approx::abs_diff_eq!(got as f64, exact, epsilon = 1e-6 * abs),
                "{label}, len {len}: {got} vs f64 {exact}"
            );
            for _ in 0..2 {
                assert_eq!(
                    gpu_sum(gpu, k, &x).to_bits(),
                    got.to_bits(),
                    "{label}, len {len}: not reproducible"
                );
            }
        }
        // The fallback is the CPU mirror's exact order: bit for bit.
        let plan = fallback.sum_plan(len).unwrap();
        let mirror = segloss::cpu::reduce::tree_sum(&x, plan.workgroups());
        assert_eq!(
            gpu_sum(gpu, &fallback, &x).to_bits(),
            mirror.to_bits(),
            "len {len}: fallback differs from its CPU mirror"
        );
    }
}

#[test]
fn subgroup_and_fallback_kernels_agree_with_cpu() {
    let (gpu, kernels) = gpu();
    eprintln!(
        "default kernels use subgroups: {}",
        kernels.uses_subgroups()
    );
    let fallback = Kernels::with_options(
        &gpu.device,
        KernelOptions {
            subgroups: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!fallback.uses_subgroups());
    let shape = Shape::new(2, 3, &[61, 67]).unwrap();
    let mut rng = Rng::new(4);
    let z = rng.logits(shape.numel(), 3.0);
    let t = targets(&mut rng, &shape, TargetKind::Labels, 3, Some(-1), false);
    // A pixel-wise loss (workgroup sums) and region losses (per-subgroup or per-workgroup
    // statistics partials), per image and over the batch.
    for (name, params) in [
        ("focal", &["activation=softmax", "ignore_index=-1"][..]),
        ("dice-ce", &["ignore_index=-1"][..]),
        ("generalized-dice", &["batch=true", "ignore_index=-1"][..]),
    ] {
        let loss = Loss::parse(name, params).unwrap();
        let cpu = segloss::cpu::forward_backward(&loss, &shape, &z, t.view()).unwrap();
        for k in [kernels, &fallback] {
            let out = k
                .run_blocking(&gpu.queue, &loss, &shape, &z, t.view())
                .unwrap();
            assert_loss_close(name, &out.loss, &cpu.loss, 1e-4);
            assert_grad_close(name, &out.grad, &cpu.grad, 1e-4);
        }
    }
}

#[test]
fn tensors_beyond_one_storage_binding_are_refused() {
    // A device whose storage bindings hold 64 KiB: 16 384 f32.
    let (small, kernels) = small_binding_device();
    let loss = Loss::parse("cross-entropy", &[]).unwrap();
    // 16 384 logits fit exactly.
    let fits = Shape::new(1, 4, &[64, 64]).unwrap();
    let mut rng = Rng::new(1);
    let z = rng.logits(fits.numel(), 2.0);
    let t = targets(&mut rng, &fits, TargetKind::Labels, 4, None, false);
    let cpu = segloss::cpu::forward_backward(&loss, &fits, &z, t.view()).unwrap();
    let out = kernels
        .run_blocking(&small.queue, &loss, &fits, &z, t.view())
        .unwrap();
    assert_loss_close("fits", &out.loss, &cpu.loss, 1e-4);
    // One more row does not, and the error names the tensor and both sizes.
    let over = Shape::new(1, 4, &[65, 64]).unwrap();
    match kernels.plan(&loss, over, TargetKind::Labels) {
        Err(Error::TooLarge {
            name: "logits",
            bytes,
            limit,
        }) => {
            assert_eq!((bytes, limit), (4 * 4 * 65 * 64, 64 * 1024));
        }
        other => panic!("expected TooLarge for logits, got {other:?}"),
    }
}

#[test]
fn gpu_only_problems_reach_the_status_buffer() {
    let (gpu, kernels) = gpu();
    let shape = Shape::new(1, 3, &[10, 10]).unwrap();
    let mut rng = Rng::new(2);
    let mut z = rng.logits(shape.numel(), 2.0);
    let loss = Loss::parse("cross-entropy", &["ignore_index=255"]).unwrap();
    let mut labels = vec![1i32; shape.pixels()];
    labels[3] = 3; // >= C
    labels[4] = -2; // negative, not ignore_index
    labels[5] = 255; // ignored: fine
    z[17] = f32::NAN;
    z[150] = f32::INFINITY;
    let t = segloss::Targets::Labels(&labels);
    let want = Status {
        bad_labels: 2,
        nonfinite_logits: 2,
        nonfinite_targets: 0,
    };
    match kernels.run_blocking(&gpu.queue, &loss, &shape, &z, t) {
        Err(Error::BadInput(s)) => assert_eq!(s, want),
        other => panic!("expected BadInput, got {other:?}"),
    }
    // The CPU reference reports the same counts.
    match segloss::cpu::forward_backward(&loss, &shape, &z, t) {
        Err(Error::BadInput(s)) => assert_eq!(s, want),
        other => panic!("expected BadInput from the CPU, got {other:?}"),
    }
    // Engines read the buffer themselves; it is cleared by every call.
    let device = &gpu.device;
    let plan = kernels
        .plan(&loss, shape.clone(), TargetKind::Labels)
        .unwrap();
    let zb = segloss::readback::upload(device, "z", bytemuck::cast_slice(&z));
    let yb = segloss::readback::upload(device, "y", t.as_bytes());
    let (lb, gb) = (
        segloss::readback::zeros(device, "l", 1),
        segloss::readback::zeros(device, "g", shape.numel()),
    );
    let inputs = Inputs {
        logits: &zb,
        targets: &yb,
    };
    let mut enc = device.create_command_encoder(&Default::default());
    plan.record(&mut enc, &inputs, &Outputs::new(&lb, &gb))
        .unwrap();
    plan.record(&mut enc, &inputs, &Outputs::new(&lb, &gb))
        .unwrap();
    gpu.queue.submit([enc.finish()]);
    assert_eq!(
        segloss::readback::read_status(device, &gpu.queue, &plan).unwrap(),
        want
    );
    // The element-wise losses read each logit once, in their own walk, and still count every
    // non-finite one: at an ignored pixel, and in an excluded background channel.
    let mut labels = vec![1i32; shape.pixels()];
    labels[5] = 255;
    let mut z = rng.logits(shape.numel(), 2.0);
    z[5] = f32::NAN; // channel 0 of the ignored pixel 5
    z[100 + 17] = f32::INFINITY; // channel 1 of the valid pixel 17
    z[40] = f32::NEG_INFINITY; // channel 0 of the valid pixel 40
    let t = segloss::Targets::Labels(&labels);
    let want = Status {
        bad_labels: 0,
        nonfinite_logits: 3,
        nonfinite_targets: 0,
    };
    for (name, params) in [
        ("bce", vec!["ignore_index=255"]),
        (
            "focal",
            vec!["ignore_index=255", "include_background=false"],
        ),
    ] {
        let loss = Loss::parse(name, &params).unwrap();
        for k in [kernels, gpu_tuned()] {
            match k.run_blocking(&gpu.queue, &loss, &shape, &z, t) {
                Err(Error::BadInput(s)) => assert_eq!(s, want, "{name}"),
                other => panic!("{name}: expected BadInput, got {other:?}"),
            }
        }
        match segloss::cpu::forward_backward(&loss, &shape, &z, t) {
            Err(Error::BadInput(s)) => assert_eq!(s, want, "{name} on the CPU"),
            other => panic!("{name}: expected BadInput from the CPU, got {other:?}"),
        }
    }
    // Dense targets: a NaN target is counted too.
    let mut dense = vec![0.5f32; shape.numel()];
    dense[9] = f32::NAN;
    let bce = Loss::parse("bce", &[]).unwrap();
    match kernels.run_blocking(
        &gpu.queue,
        &bce,
        &shape,
        &rng.logits(shape.numel(), 1.0),
        segloss::Targets::Dense(&dense),
    ) {
        Err(Error::BadInput(s)) => assert_eq!(
            s,
            Status {
                bad_labels: 0,
                nonfinite_logits: 0,
                nonfinite_targets: 1
            }
        ),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

/// The value of the WGSL `const name` in `module`.
fn wgsl_const(module: &naga::Module, name: &str) -> naga::Literal {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no const {name}"));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(l) => l,
        ref e => panic!("{name}: unexpected {e:?}"),
    }
}

#[test]
fn wgsl_constants_match_rust() {
    let module =
        segloss::shader::validate(segloss::shader::Family::Pixel, Default::default()).unwrap();
    let constant = |name: &str| -> u32 {
        match wgsl_const(&module, name) {
            naga::Literal::U32(v) => v,
            l => panic!("{name}: not a u32: {l:?}"),
        }
    };
    assert_eq!(constant("WG"), segloss::WG);
    assert_eq!(constant("PIXEL_CACHE") as usize, segloss::loss::PIXEL_CACHE);
    let distance =
        segloss::shader::validate(segloss::shader::Family::Distance, Default::default()).unwrap();
    assert_eq!(
        wgsl_const(&distance, "PRIVATE_LINE"),
        naga::Literal::U32(segloss::distance::PRIVATE_LINE as u32),
        "PRIVATE_LINE in distance.wgsl and src/distance.rs"
    );
    assert_eq!(
        wgsl_const(&distance, "INF"),
        naga::Literal::F32(segloss::distance::NO_SOURCE),
        "INF in common/distance_values.wgsl and NO_SOURCE in src/distance.rs"
    );
    assert_eq!(constant("STATUS_BAD_LABEL") as usize, Status::BAD_LABEL);
    assert_eq!(
        constant("STATUS_NONFINITE_LOGIT") as usize,
        Status::NONFINITE_LOGIT
    );
    assert_eq!(
        constant("STATUS_NONFINITE_TARGET") as usize,
        Status::NONFINITE_TARGET
    );
    let params = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("Params"))
        .expect("Params")
        .1;
    let naga::TypeInner::Struct { ref members, span } = params.inner else {
        panic!("Params is a struct")
    };
    assert_eq!(
        span as usize,
        std::mem::size_of::<segloss::internals::PixelParams>(),
        "Params size"
    );
    let names: Vec<_> = members.iter().map(|m| m.name.clone().unwrap()).collect();
    assert_eq!(&names[..4], ["n", "c", "s", "nwg"]);
    assert_eq!(
        members
            .iter()
            .find(|m| m.name.as_deref() == Some("wx"))
            .unwrap()
            .offset,
        48
    );
}

/// Per-pass timing: every pass a plan records gets its label and a time, in recording order;
/// reading forgets them; more passes than the timer holds is an error, not a silent cut; off,
/// passes carry no timestamps and there is nothing to read.
#[test]
fn pass_timing_labels_every_pass() {
    let (gpu, _) = gpu();
    // Kernels of their own: the timer is per Kernels, and the shared one runs other tests.
    let kernels = Kernels::new(&gpu.device).unwrap();
    assert!(
        kernels.read_pass_times(&gpu.queue).is_err(),
        "timing is off"
    );
    for bad in [0, segloss::profile::MAX_TIMED_PASSES + 1] {
        match kernels.enable_pass_timing(bad) {
            Err(Error::Gpu(m)) => assert!(m.contains(&bad.to_string()), "{m}"),
            other => panic!("max_passes {bad}: expected an error, got {other:?}"),
        }
    }
    let shape = Shape::new(2, 3, &[5, 7]).unwrap();
    let mut rng = Rng::new(5);
    let z = rng.logits(shape.numel(), 2.0);
    let t = targets(&mut rng, &shape, TargetKind::Labels, 3, None, false);
    let loss = Loss::parse("dice", &[]).unwrap();
    kernels.enable_pass_timing(8).unwrap();
    kernels
        .run_blocking(&gpu.queue, &loss, &shape, &z, t.view())
        .unwrap();
    let times = kernels.read_pass_times(&gpu.queue).unwrap();
    let labels: Vec<&str> = times.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        ["segloss region statistics", "segloss region backward"]
    );
    for p in &times {
        assert!(p.ms.is_finite() && p.ms >= 0.0, "{p:?}");
    }
    assert!(
        times.iter().any(|p| p.ms > 0.0),
        "no pass took time: {times:?}"
    );
    assert!(kernels.read_pass_times(&gpu.queue).unwrap().is_empty());
    // Two passes into a timer of one.
    kernels.enable_pass_timing(1).unwrap();
    kernels
        .run_blocking(&gpu.queue, &loss, &shape, &z, t.view())
        .unwrap();
    match kernels.read_pass_times(&gpu.queue) {
        Err(Error::Gpu(m)) => assert!(m.contains("2 passes") && m.contains("holds 1"), "{m}"),
        other => panic!("expected an overflow error, got {other:?}"),
    }
    kernels.disable_pass_timing();
    kernels
        .run_blocking(&gpu.queue, &loss, &shape, &z, t.view())
        .unwrap();
    assert!(
        kernels.read_pass_times(&gpu.queue).is_err(),
        "timing is off"
    );
}

/// With C = 1, labels mean a class index for the softmax cross-entropies (only 0 is valid) and
/// a binary mask {0, 1} for every other loss: the GPU counts the same bad labels as the CPU
/// reference for every loss that takes labels at C = 1. (topk's GPU kernels once read label 1
/// as a mask, took channel 1 of a one-channel tensor, and returned 0 with no error.)
#[test]
fn single_channel_labels_mean_the_same_on_gpu_and_cpu() {
    let (gpu, kernels) = gpu();
    let shape = Shape::new(2, 1, &[6, 7]).unwrap();
    let z = Rng::new(5).logits(shape.numel(), 2.0);
    let labels: Vec<i32> = (0..shape.pixels()).map(|i| (i % 3 == 0) as i32).collect();
    let ones = labels.iter().filter(|&&l| l == 1).count() as u32;
    let t = segloss::Targets::Labels(&labels);
    let mut refused = Vec::new();
    for name in Loss::NAMES {
        let Ok(loss) = Loss::parse(name, &[]) else {
            continue;
        };
        if loss.validate(&shape, TargetKind::Labels).is_err() {
            continue;
        }
        let on_gpu = kernels.run_blocking(&gpu.queue, &loss, &shape, &z, t);
        let on_cpu = segloss::cpu::forward_backward(&loss, &shape, &z, t);
        match (on_gpu, on_cpu) {
            (Err(Error::BadInput(g)), Err(Error::BadInput(c))) => {
                assert_eq!(g, c, "{name}");
                assert_eq!(g.bad_labels, ones, "{name}");
                refused.push(*name);
            }
            (Ok(_), Ok(_)) => {}
            (g, c) => panic!("{name}: GPU {:?}, CPU {:?}", g.err(), c.err()),
        }
    }
    assert_eq!(refused, ["cross-entropy", "topk"]);
}

/// For every loss that `only` names and that plans with `params` on these targets: the CPU
/// reference's status (which `cpu_expects` checks), and the same status from the GPU in both
/// tunings. Returns how many losses it checked.
fn statuses_match_the_cpu(
    shape: &Shape,
    z: &[f32],
    targets: segloss::Targets,
    params: &[&str],
    only: impl Fn(&str) -> bool,
    cpu_expects: impl Fn(&str, &segloss::Status),
) -> usize {
    let (gpu, kernels) = gpu();
    let mut checked = 0;
    for name in Loss::NAMES.iter().filter(|n| only(n)) {
        let Ok(loss) = Loss::parse(name, params) else {
            continue;
        };
        if loss.validate(shape, targets.kind()).is_err() {
            continue;
        }
        let want = match segloss::cpu::forward_backward(&loss, shape, z, targets) {
            Err(Error::BadInput(st)) => st,
            other => panic!(
                "{name}: expected BadInput from the CPU, got {:?}",
                other.err()
            ),
        };
        cpu_expects(name, &want);
        for (tuning, k) in [("auto", kernels), ("gpu", gpu_tuned())] {
            match k.run_blocking(&gpu.queue, &loss, shape, z, targets) {
                Err(Error::BadInput(got)) => assert_eq!(got, want, "{name}, {tuning} tuning"),
                other => panic!("{name}, {tuning}: expected BadInput, got {:?}", other.err()),
            }
        }
        checked += 1;
    }
    checked
}

/// Every loss that takes class labels reports the same status as the CPU reference, in both
/// tunings, on an image large enough that the software tuning's gradient pass takes several
/// pixels per thread (its four-pixel walk: the bad pixels sit in different lanes): one label
/// out of range, a non-finite logit at an ignored pixel and one at a valid pixel; and both at
/// the image's last pixel, which the four-pixel walks' lanes past their block read again (and
/// must not count again).
#[test]
fn every_loss_counts_bad_inputs_as_the_cpu_does() {
    let shape = Shape::new(1, 3, &[29, 31]).unwrap();
    let s = shape.pixels();
    let mut rng = Rng::new(11);
    let mut labels: Vec<i32> = (0..s).map(|i| (i * 7 % 3) as i32).collect();
    labels[600] = 7; // out of range, not ignore_index
    labels[850] = 255; // ignored
    labels[s - 1] = 9; // out of range, the last pixel
    let mut z = rng.logits(shape.numel(), 2.0);
    z[850] = f32::NAN; // channel 0 of the ignored pixel
    z[2 * s + 301] = f32::INFINITY; // channel 2 of a valid pixel
    z[s + s - 1] = f32::NAN; // channel 1 of the last pixel
    let t = segloss::Targets::Labels(&labels);
    let ignore = ["ignore_index=255"];
    let takes_ignore = |name: &str| Loss::parse(name, &ignore).is_ok();
    let checked = statuses_match_the_cpu(&shape, &z, t, &ignore, takes_ignore, |name, want| {
        assert_eq!(want.bad_labels, 2, "{name} on the CPU");
        assert!(want.nonfinite_logits >= 1, "{name} on the CPU");
    });
    assert!(
        checked >= 15,
        "only {checked} losses take ignore_index with labels"
    );
    // The others (the distance losses among them), for which label 255 is out of range too.
    let others = |name: &str| !takes_ignore(name);
    assert!(others("boundary") && others("hausdorff-dt"));
    let checked = statuses_match_the_cpu(&shape, &z, t, &[], others, |name, want| {
        assert_eq!(want.bad_labels, 3, "{name} on the CPU");
        assert!(want.nonfinite_logits >= 1, "{name} on the CPU");
    });
    assert!(checked >= 5, "only {checked} other losses take labels");
}

/// The same for dense targets: a NaN target and an infinite one, and a NaN logit, on an image
/// large enough for several pixels per thread (the software tuning's four-pixel walks read each
/// target themselves and must count what they read).
#[test]
fn every_loss_counts_bad_dense_targets_as_the_cpu_does() {
    let shape = Shape::new(1, 3, &[29, 32]).unwrap();
    let s = shape.pixels();
    let mut rng = Rng::new(12);
    let mut z = rng.logits(shape.numel(), 2.0);
    z[s + 77] = f32::NAN;
    let mut t: Vec<f32> = (0..shape.numel())
        .map(|e| f32::from((e % s) * 5 % 3 == e / s))
        .collect();
    t[401] = f32::NAN;
    t[2 * s + 900] = f32::INFINITY;
    let targets = segloss::Targets::Dense(&t);
    let checked = statuses_match_the_cpu(
        &shape,
        &z,
        targets,
        &[],
        |_| true,
        |name, want| {
            assert_eq!(want.nonfinite_targets, 2, "{name} on the CPU");
            assert_eq!(want.nonfinite_logits, 1, "{name} on the CPU");
        },
    );
    assert!(checked >= 15, "only {checked} losses take dense targets");
}

/// A device created with WebGPU's default limits (8 storage buffers per stage, 16 KiB of
/// workgroup memory, among others), as an engine that asks for nothing more has: every loss plans
/// and matches the CPU reference, with subgroups and with the shared-memory reductions, and the
/// region family's vec4 view of the logits left out (`shader::Caps`). On the test adapter's own
/// limits the same kernels have the view.
#[test]
fn every_loss_runs_on_a_device_with_default_limits() {
    quiet_lavapipe();
    let plain = Gpu::new(&GpuOptions {
        backends: segloss::wgpu::Backends::VULKAN,
        limits: Some(segloss::wgpu::Limits::default()),
        ..Default::default()
    })
    .expect("a device with the default limits");
    let with_subgroups = Kernels::new(&plain.device).unwrap();
    let options = KernelOptions {
        subgroups: Some(false),
        ..Default::default()
    };
    let shared = Kernels::with_options(&plain.device, options).unwrap();
    assert!(!with_subgroups.caps().logits_vec4 && !shared.caps().logits_vec4);
    assert_eq!(
        gpu().1.caps().logits_vec4,
        gpu().0.device.limits().max_storage_buffers_per_shader_stage >= 9
    );
    let mut rng = Rng::new(3);
    let mut ran = 0;
    for dims in [&[2usize, 3, 12, 20][..], &[1, 3, 4, 6, 8]] {
        let shape = Shape::new(dims[0], dims[1], &dims[2..]).unwrap();
        let z = rng.logits(shape.numel(), 3.0);
        for name in Loss::NAMES {
            // (wasserstein-dice has no default distance matrix.)
            let Ok(loss) = Loss::parse(name, &[]) else {
                continue;
            };
            if loss.validate(&shape, TargetKind::Labels).is_err() {
                continue;
            }
            let classes = label_classes(&loss, &shape);
            let t = targets(&mut rng, &shape, TargetKind::Labels, classes, None, false);
            for (k, reduce) in [(&with_subgroups, "subgroups"), (&shared, "shared memory")] {
                let what = format!("{name} {dims:?}, default limits, {reduce}");
                assert_gpu_matches_cpu((&plain, k), &what, &loss, &shape, &z, t.view());
            }
            ran += 1;
        }
    }
    assert!(ran >= 40, "only {ran} cases ran");
}

/// A device created with a limit below what the kernels need gets `Error::Limit` naming it from
/// `Kernels::new`, before anything is compiled, instead of a wgpu validation panic later.
#[test]
fn a_device_below_the_needed_limits_is_refused_by_name() {
    quiet_lavapipe();
    let base = segloss::wgpu::Limits::default();
    type Lower = fn(&mut segloss::wgpu::Limits);
    let cases: [(&str, Lower); 3] = [
        ("max_storage_buffers_per_shader_stage", |l| {
            l.max_storage_buffers_per_shader_stage = segloss::MIN_STORAGE_BUFFERS - 1
        }),
        ("max_compute_workgroup_storage_size", |l| {
            l.max_compute_workgroup_storage_size = segloss::MIN_WORKGROUP_STORAGE - 4
        }),
        ("max_compute_invocations_per_workgroup", |l| {
            l.max_compute_invocations_per_workgroup = segloss::WG / 2
        }),
    ];
    for (name, lower) in cases {
        let mut limits = base.clone();
        lower(&mut limits);
        let small = Gpu::new(&GpuOptions {
            backends: segloss::wgpu::Backends::VULKAN,
            limits: Some(limits),
            ..Default::default()
        })
        .expect("a device with a lowered limit");
        match Kernels::new(&small.device) {
            Err(Error::Limit {
                name: got,
                has,
                needs,
            }) => {
                assert_eq!(got, name);
                assert!(has < needs, "{name}: {has} >= {needs}");
            }
            other => panic!("{name}: expected Error::Limit, got {:?}", other.err()),
        }
    }
}
