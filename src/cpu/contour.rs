//! CPU mirror of `shaders/contour.wgsl`, in f64: the active contour loss and its gradient.

use super::activation::sigmoid;
use crate::loss::contour::ActiveContour;
use crate::loss::Status;
use crate::tensor::{Shape, Targets};

pub(crate) fn forward_backward(
    loss: &ActiveContour,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
) -> (Vec<f64>, Vec<f64>, Status) {
    let spatial = shape.spatial();
    let s_n = shape.s();
    let strides: Vec<usize> = (0..spatial.len())
        .map(|a| spatial[a + 1..].iter().product())
        .collect();
    let coords = |s: usize| -> Vec<usize> {
        (0..spatial.len())
            .map(|a| (s / strides[a]) % spatial[a])
            .collect()
    };
    // Whether the pixel at coordinates c is the base of a length term.
    let is_base = |c: &[usize]| c.iter().zip(&spatial).all(|(&c, &d)| c + 2 < d);
    // k steps back along axis a from coordinates c (c[a] >= k).
    let back = |c: &[usize], a: usize, k: usize| -> Vec<usize> {
        let mut b = c.to_vec();
        b[a] -= k;
        b
    };
    let mut status = Status::default();
    let p: Vec<f64> = z.iter().map(|&v| sigmoid(v)).collect();
    let g: Vec<f64> = (0..z.len())
        .map(|i| match targets {
            Targets::Dense(t) => t[i] as f64,
            Targets::Labels(l) => {
                status.bad_labels += (l[i] != 0 && l[i] != 1) as u32;
                (l[i] == 1) as u8 as f64
            }
        })
        .collect();
    let eps = loss.eps as f64;
    let diffs = |n: usize, b: usize| -> Vec<f64> {
        strides
            .iter()
            .map(|&st| p[n * s_n + b + 2 * st] - p[n * s_n + b + st])
            .collect()
    };
    let len_of = |d: &[f64]| (d.iter().map(|x| x * x).sum::<f64>() + eps).sqrt();
    let (mut length, mut r1, mut r2) = (0.0, 0.0, 0.0);
    for i in 0..z.len() {
        status.nonfinite_logits += (!z[i].is_finite()) as u32;
        r1 += p[i] * (g[i] - 1.0) * (g[i] - 1.0);
        r2 += (1.0 - p[i]) * g[i] * g[i];
        let (n, s) = (i / s_n, i % s_n);
        if is_base(&coords(s)) {
            length += len_of(&diffs(n, s));
        }
    }
    let (wl, lr) = (loss.w_length as f64, loss.lambda_region as f64);
    let value = wl * length + lr * (r1.abs() + r2.abs());
    let sgn = |x: f64| {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let mut grad = vec![0.0; z.len()];
    for i in 0..z.len() {
        let (n, s) = (i / s_n, i % s_n);
        let c = coords(s);
        let mut dl = 0.0;
        for (a, &st) in strides.iter().enumerate() {
            if c[a] >= 1 && is_base(&back(&c, a, 1)) {
                let d = diffs(n, s - st);
                dl -= d[a] / len_of(&d);
            }
            if c[a] >= 2 && is_base(&back(&c, a, 2)) {
                let d = diffs(n, s - 2 * st);
                dl += d[a] / len_of(&d);
            }
        }
        let dregion = sgn(r1) * (g[i] - 1.0) * (g[i] - 1.0) - sgn(r2) * g[i] * g[i];
        grad[i] = (wl * dl + lr * dregion) * p[i] * (1.0 - p[i]);
    }
    (vec![value], grad, status)
}
