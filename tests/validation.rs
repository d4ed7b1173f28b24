//! Bad input the host can see: a typed error naming the bad value, never a panic, and nothing
//! recorded.

mod common;

use common::*;
use segloss::{Error, Inputs, Loss, Outputs, Shape, TargetKind, Targets};

fn err_text(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_shapes() {
    assert!(err_text(Shape::new(0, 3, &[4])).contains("is 0"));
    assert!(err_text(Shape::new(1, 3, &[])).contains("1 to 3"));
    assert!(err_text(Shape::new(1, 3, &[2, 2, 2, 2])).contains("4 spatial"));
    assert!(err_text(Shape::new(1 << 20, 1 << 10, &[1 << 10])).contains("more than"));
    // Below 2^31 elements, so that no kernel index wraps (MAX_BINDING_ELEMENTS).
    assert!(err_text(Shape::new(1 << 10, 1 << 10, &[1 << 11])).contains("2147483647"));
    assert!(Shape::new(1 << 10, 1 << 10, &[(1 << 11) - 1]).is_ok());
    assert!(err_text(Shape::from_dims(&[2, 3])).contains("[N, C, *S]"));
}

#[test]
fn bad_parameters_name_the_value() {
    let shape = Shape::new(1, 3, &[4, 4]).unwrap();
    let cases: &[(&str, &[&str], TargetKind, &str)] = &[
        ("dice-x", &[], TargetKind::Labels, "unknown loss `dice-x`"),
        (
            "boundary",
            &["spacing=1,0"],
            TargetKind::Labels,
            "loss `boundary`: bad value for `spacing`: 0 is not a positive number",
        ),
        (
            "hausdorff-dt",
            &["spacing=1,1e15"],
            TargetKind::Labels,
            "loss `hausdorff-dt`: bad value for `spacing`: [1e0, 1e15] is too large",
        ),
        (
            "cross-entropy",
            &["gama=2"],
            TargetKind::Labels,
            "no parameter `gama`",
        ),
        (
            "cross-entropy",
            &["weight=1,2"],
            TargetKind::Labels,
            "2 values given",
        ),
        (
            "cross-entropy",
            &["weight=1,-2,1"],
            TargetKind::Labels,
            "-2 is negative",
        ),
        (
            "cross-entropy",
            &["weight=1,x,1"],
            TargetKind::Labels,
            "`x` in `1,x,1`",
        ),
        (
            "cross-entropy",
            &["label_smoothing=1.5"],
            TargetKind::Labels,
            "1.5 is outside [0, 1]",
        ),
        (
            "cross-entropy",
            &["reduction=avg"],
            TargetKind::Labels,
            "`avg` is not one of",
        ),
        (
            "cross-entropy",
            &["ignore_index=1.5"],
            TargetKind::Labels,
            "`1.5` is not a 32-bit integer",
        ),
        (
            "bce",
            &["pos_weight=1,2,inf"],
            TargetKind::Dense,
            "inf is negative or not finite",
        ),
        (
            "bce",
            &["ignore_index=3"],
            TargetKind::Dense,
            "ignore_index needs label targets",
        ),
        ("focal", &["gamma=-1"], TargetKind::Labels, "-1 is negative"),
        (
            "focal",
            &["alpha=1.2"],
            TargetKind::Labels,
            "1.2 is outside [0, 1]",
        ),
        (
            "focal",
            &["activation=relu"],
            TargetKind::Labels,
            "`relu` is not one of",
        ),
        (
            "focal",
            &["include_background=maybe"],
            TargetKind::Labels,
            "`maybe` is not true or false",
        ),
        (
            "focal",
            &["include_background=false", "weight=1,2,3"],
            TargetKind::Labels,
            "3 values given, the loss needs 2",
        ),
    ];
    for (name, params, kind, want) in cases {
        let text =
            err_text(Loss::parse(name, params).and_then(|l| l.validate(&shape, *kind).map(|_| l)));
        assert!(
            text.contains(want),
            "{name} {params:?}: `{text}` lacks `{want}`"
        );
    }
    assert!(err_text(Loss::parse("bce", &["weight"])).contains("key=value"));
}

#[test]
fn bad_host_slices() {
    let shape = Shape::new(1, 3, &[4, 4]).unwrap();
    let loss = Loss::parse("cross-entropy", &[]).unwrap();
    let z = vec![0.0f32; shape.numel()];
    let labels = vec![0i32; shape.pixels() - 1];
    let text = err_text(segloss::cpu::forward_backward(
        &loss,
        &shape,
        &z,
        Targets::Labels(&labels),
    ));
    assert!(
        text.contains("`targets` has 15 elements, expected 16"),
        "{text}"
    );
    let text = err_text(segloss::cpu::forward_backward(
        &loss,
        &shape,
        &z[1..],
        Targets::Labels(&labels),
    ));
    assert!(
        text.contains("`logits` has 47 elements, expected 48"),
        "{text}"
    );
    let (gpu, kernels) = gpu();
    let text =
        err_text(kernels.run_blocking(&gpu.queue, &loss, &shape, &z, Targets::Labels(&labels)));
    assert!(text.contains("expected 16"), "{text}");
}

#[test]
fn bad_buffers_are_refused_before_recording() {
    let (gpu, kernels) = gpu();
    let device = &gpu.device;
    let shape = Shape::new(1, 3, &[4, 4]).unwrap();
    let loss = Loss::parse("cross-entropy", &[]).unwrap();
    let plan = kernels
        .plan(&loss, shape.clone(), TargetKind::Labels)
        .unwrap();
    let z = segloss::readback::zeros(device, "z", shape.numel());
    let y = segloss::readback::zeros(device, "y", shape.pixels());
    let l = segloss::readback::zeros(device, "l", 1);
    let g = segloss::readback::zeros(device, "g", shape.numel());
    let short = segloss::readback::zeros(device, "short", shape.numel() - 1);
    let uniform = device.create_buffer(&segloss::wgpu::BufferDescriptor {
        label: None,
        size: 4 * shape.numel() as u64,
        usage: segloss::wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let record = |zb, yb, lb, gb, scale: f32| {
        let mut enc = device.create_command_encoder(&Default::default());
        let r = plan.record(
            &mut enc,
            &Inputs {
                logits: zb,
                targets: yb,
            },
            &Outputs {
                loss: lb,
                grad: gb,
                accumulate: false,
                grad_scale: scale,
            },
        );
        r.map(|_| ())
    };
    assert!(record(&z, &y, &l, &g, 1.0).is_ok());
    let t = err_text(record(&short, &y, &l, &g, 1.0));
    assert!(
        t.contains("`logits`") && t.contains("188 bytes, but the plan needs 192"),
        "{t}"
    );
    let t = err_text(record(&z, &y, &l, &uniform, 1.0));
    assert!(t.contains("`grad`") && t.contains("lacks STORAGE"), "{t}");
    let t = err_text(record(&z, &y, &l, &z, 1.0));
    assert!(t.contains("same buffer"), "{t}");
    let t = err_text(record(&z, &y, &g, &g, 1.0));
    assert!(t.contains("same buffer"), "{t}");
    let t = err_text(record(&z, &y, &l, &g, f32::NAN));
    assert!(t.contains("grad_scale NaN"), "{t}");
}

#[test]
fn every_registered_name_parses_with_defaults() {
    for name in Loss::NAMES {
        match Loss::parse(name, &[]) {
            Ok(loss) => assert_eq!(loss.name(), *name),
            // A parameter without a reference default must be named in the error.
            Err(e) => assert!(
                *name == "wasserstein-dice" && e.to_string().contains("`dist_matrix`: is required"),
                "{name}: {e}"
            ),
        }
    }
}

/// The README's loss table is kept true: a row says `implemented` exactly when the registry has
/// the loss.
#[test]
fn readme_loss_table_matches_the_registry() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut rows = 0;
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let name = line.split('`').nth(1).unwrap();
        let implemented = line.trim_end().ends_with("| implemented |");
        assert!(
            implemented || line.trim_end().ends_with("| planned |"),
            "README row without a status: {line}"
        );
        assert_eq!(
            implemented,
            Loss::NAMES.contains(&name),
            "README row for `{name}`: {line}"
        );
        rows += 1;
    }
    for name in Loss::NAMES {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "`{name}` has no README row"
        );
    }
    assert!(rows >= Loss::NAMES.len());
}

/// A region loss runs a grid of (C + 1) × N workgroups to combine its statistics: more channels
/// than a grid dimension holds is refused at planning, naming the count, not recorded.
#[test]
fn channels_beyond_the_workgroup_grid_are_refused() {
    let (_, kernels) = gpu();
    let max_dim = kernels.limits().max_compute_workgroups_per_dimension as usize;
    let loss = Loss::parse("dice", &[]).unwrap();
    let too_many = Shape::new(1, max_dim, &[1]).unwrap();
    let Err(e) = kernels.plan(&loss, too_many, TargetKind::Labels) else {
        panic!("a plan with C + 1 workgroups past the limit");
    };
    assert!(
        e.to_string().contains(&format!("{max_dim} channels")),
        "{e}"
    );
    let most = Shape::new(1, max_dim - 1, &[1]).unwrap();
    kernels.plan(&loss, most, TargetKind::Labels).unwrap();
}

#[test]
fn distance_spacing_must_keep_squared_distances_finite() {
    use segloss::distance::DistanceOptions;
    let with = |spacing: &[f32]| DistanceOptions {
        spacing: spacing.to_vec(),
        ..DistanceOptions::default()
    };
    assert!(with(&[1e-18, 1e12]).validate(&[256, 256]).is_ok());
    // The square of 1e-20 underflows f32; a 256-pixel axis of 1e13 has squared distances up to
    // 6.6e30, beyond the "no source" mark of the GPU transforms (NO_SOURCE, 1e30).
    assert!(err_text(with(&[1e-20, 1.0]).validate(&[4, 4])).contains("1e-20 is too small"));
    assert!(err_text(with(&[1.0, 1e13]).validate(&[4, 256])).contains("too large"));
    assert!(err_text(with(&[0.0, 1.0]).validate(&[4, 4])).contains("not a positive"));
    // Positions along an axis are f32: exact up to 2^24.
    let max = segloss::distance::MAX_EXTENT;
    assert!(with(&[]).validate(&[max]).is_ok());
    assert!(err_text(with(&[]).validate(&[1, max + 1])).contains(&format!("got {}", max + 1)));
}
