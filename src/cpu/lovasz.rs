//! CPU mirror of `shaders/lovasz.wgsl`, in f64: per segment, the errors sorted descending (ties
//! in element order, as the stable GPU sort), the Lovász gradient of the Jaccard index from the
//! cumulative foreground, the loss, and the gradient back through the activation.

use super::activation::log_sum_exp;
use super::sort::descending;
use crate::loss::lovasz::LovaszSpec;
use crate::loss::Status;
use crate::tensor::{Shape, Targets};

/// Loss and gradient of a Lovász loss, with the status counts.
pub(crate) fn forward_backward(
    spec: &LovaszSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
) -> (Vec<f64>, Vec<f64>, Status) {
    let (c_n, s_n) = (shape.c(), shape.s());
    let mut status = Status::default();
    // Dense targets (hinge only) have no labels: every pixel is valid, its mask is the target.
    let label_at = |p: usize| match targets {
        Targets::Labels(l) => l[p],
        Targets::Dense(_) => 0,
    };
    let valid = |l: i32| {
        spec.dense
            || (spec.ignore_index != Some(l)
                && l >= 0
                && l < if spec.hinge { 2 } else { c_n as i32 })
    };
    // Probabilities and per-element errors, foregrounds.
    let mut err = vec![0.0; shape.numel()];
    let mut fg = vec![0.0; shape.numel()];
    let mut prob = vec![0.0; shape.numel()];
    for n in 0..shape.n() {
        for s in 0..s_n {
            let base = n * c_n * s_n + s;
            let label = label_at(n * s_n + s);
            for c in 0..c_n {
                status.nonfinite_logits += (!z[base + c * s_n].is_finite()) as u32;
            }
            if !valid(label) {
                status.bad_labels += (spec.ignore_index != Some(label)) as u32;
                continue;
            }
            let lse = log_sum_exp((0..c_n).map(|c| z[base + c * s_n]));
            for c in 0..c_n {
                let e = base + c * s_n;
                let g = match targets {
                    Targets::Dense(t) => t[e] as f64,
                    _ if spec.hinge => (label == 1) as u8 as f64,
                    _ => (label == c as i32) as u8 as f64,
                };
                fg[e] = g;
                prob[e] = (z[e] - lse).exp();
                err[e] = if spec.hinge {
                    1.0 - z[e] * (2.0 * g - 1.0)
                } else {
                    (g - prob[e]).abs()
                };
            }
        }
    }
    // Segments: lists of valid elements in position order.
    let (segs, _) = spec.segments(shape);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); segs];
    for n in 0..shape.n() {
        for c in 0..c_n {
            for s in 0..s_n {
                if !valid(label_at(n * s_n + s)) {
                    continue;
                }
                let g = match (spec.per_image, spec.hinge) {
                    (true, true) => n,
                    (true, false) => n * c_n + c,
                    (false, true) => 0,
                    (false, false) => c,
                };
                members[g].push(n * c_n * s_n + c * s_n + s);
            }
        }
    }
    // Per segment: sort, Lovász gradient, loss.
    let mut egrad = vec![0.0; shape.numel()];
    let mut seg_loss = vec![0.0; segs];
    let mut gts = vec![0.0; segs];
    for (g, m) in members.iter_mut().enumerate() {
        // Position order is element order within a segment except across images for the
        // batch-wide segments: order by (pixel, class) as the GPU's segment-major slots.
        m.sort_by_key(|&e| {
            let s = e % s_n;
            let n = e / (c_n * s_n);
            n * s_n + s
        });
        m.sort_by(|&a, &b| descending(err[a], err[b])); // stable: ties keep order
        gts[g] = m.iter().map(|&e| fg[e]).sum();
        let mut cs = 0.0;
        for (i, &e) in m.iter().enumerate() {
            cs += fg[e];
            let mut gr = jaccard_step(gts[g], cs, i, fg[e]);
            let mut x = err[e];
            if spec.hinge {
                x = x.max(0.0);
                if x <= 0.0 {
                    gr = 0.0;
                }
            }
            seg_loss[g] += x * gr;
            egrad[e] = gr;
        }
    }
    // Averaging weights (`finalize`).
    let groups = if spec.per_image { shape.n() } else { 1 };
    let per_group = segs / groups;
    let mut w = vec![0.0; segs];
    let mut loss = 0.0;
    for grp in 0..groups {
        let counts = |g: usize| spec.hinge || spec.all_classes || gts[g] > 0.0;
        let counted = (0..per_group)
            .filter(|&k| counts(grp * per_group + k))
            .count() as f64;
        for k in 0..per_group {
            let g = grp * per_group + k;
            if counts(g) && counted > 0.0 {
                w[g] = 1.0 / (counted * groups as f64);
            }
            loss += w[g] * seg_loss[g];
        }
    }
    // Back through the errors and the activation (`backprop`).
    let mut grad = vec![0.0; shape.numel()];
    for n in 0..shape.n() {
        for s in 0..s_n {
            if !valid(label_at(n * s_n + s)) {
                continue;
            }
            let base = n * c_n * s_n + s;
            let seg = |c: usize| match (spec.per_image, spec.hinge) {
                (true, true) => n,
                (true, false) => n * c_n + c,
                (false, true) => 0,
                (false, false) => c,
            };
            if spec.hinge {
                let e = base;
                grad[e] = -w[seg(0)] * egrad[e] * (2.0 * fg[e] - 1.0);
                continue;
            }
            let d: Vec<f64> = (0..c_n)
                .map(|c| {
                    let e = base + c * s_n;
                    w[seg(c)] * egrad[e] * signum0(prob[e] - fg[e])
                })
                .collect();
            let dot: f64 = (0..c_n).map(|c| prob[base + c * s_n] * d[c]).sum();
            for (c, dc) in d.iter().enumerate() {
                let e = base + c * s_n;
                grad[e] = prob[e] * (dc - dot);
            }
        }
    }
    (vec![loss], grad, status)
}

fn signum0(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The Lovász gradient at sorted position `i`: `J_i - J_(i-1)`, with `J_i = 1 - I_i / U_i` the
/// Jaccard loss after the first `i + 1` errors (`cs` of them foreground, the last with foreground
/// `f`), `gts` the segment's foreground and `J_(-1) = 0`. Computed in closed form, as the shader
/// (`jaccard_step` in shaders/lovasz.wgsl) must to stay accurate in f32:
/// `I_(i-1) = I_i + f` and `U_(i-1) = U_i - 1 + f` give
/// `(f·U_i + I_i·(1 - f)) / (U_i·(U_i - 1 + f))`, and `1 / U_0` at `i = 0`.
fn jaccard_step(gts: f64, cs: f64, i: usize, f: f64) -> f64 {
    let inter = gts - cs;
    let uni = gts + (i + 1) as f64 - cs;
    if i == 0 {
        return 1.0 / uni;
    }
    (f * uni + inter * (1.0 - f)) / (uni * (uni - 1.0 + f))
}

#[cfg(test)]
mod tests {
    use super::jaccard_step;

    /// The closed form equals the difference of consecutive Jaccard losses it replaces.
    #[test]
    fn jaccard_step_is_the_difference_of_jaccard_losses() {
        let jac = |gts: f64, cs: f64, i: usize| 1.0 - (gts - cs) / (gts + (i + 1) as f64 - cs);
        let fg = [1.0, 0.0, 0.3, 1.0, 0.0, 0.0, 0.9, 1.0, 0.0, 0.5];
        for gts in [fg.iter().sum::<f64>(), 0.0] {
            let fg: Vec<f64> = fg
                .iter()
                .map(|&f| if gts > 0.0 { f } else { 0.0 })
                .collect();
            let (mut cs, mut prev) = (0.0, 0.0);
            for (i, &f) in fg.iter().enumerate() {
                cs += f;
                let j = jac(gts, cs, i);
                let step = jaccard_step(gts, cs, i, f);
                assert!(
                    (step - (j - prev)).abs() < 1e-12,
                    "i {i}: {step} vs {}",
                    j - prev
                );
                prev = j;
            }
        }
    }
}
