//! The CPU reference and the GPU kernels against the reference packages' fixtures
//! (tests/fixtures/generate.py: torch, MONAI, smp on seeded inputs).
//! Tolerances: loss relative error <= 1e-5 (CPU) and <= 1e-4 (GPU); gradient max error
//! <= 1e-4 of the largest gradient.

mod common;

use common::npy::{fixtures_dir, read_f32, read_labels};
use common::*;
use segloss::{Loss, Shape};

struct Case {
    name: String,
    loss: Loss,
    shape: Shape,
    logits: Vec<f32>,
    targets: OwnedTargets,
    want_loss: Vec<f32>,
    want_grad: Vec<f32>,
}

fn cases(family: &str) -> Vec<Case> {
    let dir = fixtures_dir().join(family);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest is JSON");
    let list = manifest.as_array().expect("manifest is a list");
    assert!(!list.is_empty(), "no fixtures in {}", dir.display());
    list.iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let params: Vec<(String, String)> = c["params"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let loss = Loss::from_name(c["loss"].as_str().unwrap(), &params)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let z = read_f32(&dir.join(format!("{name}.logits.npy")));
            let shape = Shape::from_dims(&z.shape).unwrap();
            let tpath = dir.join(format!("{name}.target.npy"));
            let targets = match c["target"].as_str().unwrap() {
                "labels" => OwnedTargets::Labels(read_labels(&tpath).data),
                _ => OwnedTargets::Dense(read_f32(&tpath).data),
            };
            Case {
                loss,
                shape,
                logits: z.data,
                targets,
                want_loss: read_f32(&dir.join(format!("{name}.loss.npy"))).data,
                want_grad: read_f32(&dir.join(format!("{name}.grad.npy"))).data,
                name,
            }
        })
        .collect()
}

/// The CPU reference reproduces every fixture of `family` (loss within 1e-5, gradient 1e-4).
fn cpu_matches(family: &str) {
    for c in cases(family) {
        let out = segloss::cpu::forward_backward(&c.loss, &c.shape, &c.logits, c.targets.view())
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_loss_close(&c.name, &out.loss, &c.want_loss, 1e-5);
        assert_grad_close(&c.name, &out.grad, &c.want_grad, 1e-4);
    }
}

/// The GPU kernels reproduce every fixture of `family` (loss and gradient within 1e-4).
fn gpu_matches(family: &str) {
    let (gpu, kernels) = gpu();
    for c in cases(family) {
        let out = kernels
            .run_blocking(&gpu.queue, &c.loss, &c.shape, &c.logits, c.targets.view())
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_loss_close(&c.name, &out.loss, &c.want_loss, 1e-4);
        assert_grad_close(&c.name, &out.grad, &c.want_grad, 1e-4);
    }
}

#[test]
fn cpu_reference_matches_pixel_fixtures() {
    cpu_matches("pixel");
}

#[test]
fn gpu_matches_pixel_fixtures() {
    gpu_matches("pixel");
}

#[test]
fn cpu_reference_matches_region_fixtures() {
    cpu_matches("region");
}

#[test]
fn gpu_matches_region_fixtures() {
    gpu_matches("region");
}

#[test]
fn cpu_reference_matches_distance_loss_fixtures() {
    cpu_matches("distloss");
}

#[test]
fn gpu_matches_distance_loss_fixtures() {
    gpu_matches("distloss");
}

#[test]
fn cpu_reference_matches_sort_loss_fixtures() {
    cpu_matches("sort");
}

#[test]
fn gpu_matches_sort_loss_fixtures() {
    gpu_matches("sort");
}

#[test]
fn cpu_reference_matches_topology_fixtures() {
    cpu_matches("topology");
}

#[test]
fn gpu_matches_topology_fixtures() {
    gpu_matches("topology");
}
