//! CPU mirror of `shaders/topk.wgsl`, in f64: per-pixel cross-entropy, the K largest (ties to the
//! lowest pixel index, as the GPU's radix select), their mean and gradient.

use super::activation::log_sum_exp;
use super::sort::descending;
use crate::loss::topk::TopkSpec;
use crate::loss::Status;
use crate::tensor::{Shape, Targets};

pub(crate) fn forward_backward(
    spec: &TopkSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
) -> (Vec<f64>, Vec<f64>, Status) {
    let Targets::Labels(labels) = targets else {
        unreachable!("validated: labels only")
    };
    let (c_n, s_n) = (shape.c(), shape.s());
    let mut status = Status::default();
    let mut losses = Vec::new(); // (loss, pixel)
    for p in 0..shape.pixels() {
        let (n, s) = (p / s_n, p % s_n);
        let base = n * c_n * s_n + s;
        for c in 0..c_n {
            status.nonfinite_logits += (!z[base + c * s_n].is_finite()) as u32;
        }
        let y = labels[p];
        if spec.ignore_index == Some(y) {
            continue;
        }
        if y < 0 || y >= c_n as i32 {
            status.bad_labels += 1;
            continue;
        }
        let lse = log_sum_exp((0..c_n).map(|c| z[base + c * s_n]));
        let l = -(spec.weight[y as usize] as f64) * (z[base + y as usize * s_n] - lse);
        losses.push((l, p));
    }
    let m = losses.len();
    let k = ((m as f64 * spec.k as f64 / 100.0).floor() as usize).max(1);
    // Largest first; ties: lower pixel first (a stable sort of pixel-ordered values).
    losses.sort_by(|a, b| descending(a.0, b.0));
    let mut grad = vec![0.0; shape.numel()];
    let mut total = 0.0;
    for &(l, p) in losses.iter().take(k.min(m)) {
        total += l;
        let (n, s) = (p / s_n, p % s_n);
        let base = n * c_n * s_n + s;
        let y = labels[p] as usize;
        let wy = spec.weight[y] as f64;
        let lse = log_sum_exp((0..c_n).map(|c| z[base + c * s_n]));
        for c in 0..c_n {
            let e = base + c * s_n;
            let hit = (c == y) as u8 as f64;
            grad[e] = wy * ((z[e] - lse).exp() - hit) / k as f64;
        }
    }
    (
        vec![if m == 0 { 0.0 } else { total / k as f64 }],
        grad,
        status,
    )
}
