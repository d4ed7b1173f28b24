//! CPU mirror of `shaders/skeleton.wgsl`, in f64: MONAI's soft skeleton forward, the clDice loss,
//! and the backward through every min/max (max-pool ties to the first index of the window, ties
//! of torch.minimum split in halves), step for step as the shader.

use super::activation::{log_sum_exp, sigmoid};
use crate::loss::skeleton::ClDiceSpec;
use crate::loss::{Activation, Reduction, Status};
use crate::tensor::{Shape, Targets};

struct Grid {
    dims: [usize; 3],
    ndims: usize,
}

impl Grid {
    fn coords(&self, s: usize) -> [isize; 3] {
        let [_, d1, d2] = self.dims;
        [
            (s / (d1 * d2)) as isize,
            ((s / d2) % d1) as isize,
            (s % d2) as isize,
        ]
    }
    fn index(&self, q: [isize; 3]) -> Option<usize> {
        let ok = (0..3).all(|a| q[a] >= 0 && (q[a] as usize) < self.dims[a]);
        ok.then(|| (q[0] as usize * self.dims[1] + q[1] as usize) * self.dims[2] + q[2] as usize)
    }
    fn unit(a: usize) -> [isize; 3] {
        let mut u = [0; 3];
        u[a] = 1;
        u
    }
    fn offset(q: [isize; 3], d: [isize; 3], k: isize) -> [isize; 3] {
        [q[0] + k * d[0], q[1] + k * d[1], q[2] + k * d[2]]
    }

    /// `erode_at`: value, per-axis first argmin, per-axis gradient weights.
    fn erode(&self, v: &[f64], s: usize) -> (f64, [usize; 3], [f64; 3]) {
        let c = self.coords(s);
        let mut vals = [0.0; 3];
        let mut arg = [s; 3];
        for a in 0..self.ndims {
            let mut best = f64::INFINITY;
            for k in -1..=1 {
                if let Some(i) = self.index(Self::offset(c, Self::unit(a), k)) {
                    if v[i] < best {
                        best = v[i];
                        arg[a] = i;
                    }
                }
            }
            vals[a] = best;
        }
        let mut m = vals[0];
        let mut w = [1.0, 0.0, 0.0];
        for a in 1..self.ndims {
            let mut u = [0.0; 3];
            u[a] = 1.0;
            if vals[a] < m {
                w = u;
                m = vals[a];
            } else if vals[a] == m {
                w = [
                    0.5 * w[0] + 0.5 * u[0],
                    0.5 * w[1] + 0.5 * u[1],
                    0.5 * w[2] + 0.5 * u[2],
                ];
            }
        }
        (m, arg, w)
    }

    /// `dilate_at`: value and the first maximum of the 3^d window (axis 0 outermost).
    fn dilate(&self, v: &[f64], s: usize) -> (f64, usize) {
        let c = self.coords(s);
        let r = [1, (self.ndims > 1) as isize, (self.ndims > 2) as isize];
        let (mut best, mut arg) = (f64::NEG_INFINITY, s);
        for dx in -r[0]..=r[0] {
            for dy in -r[1]..=r[1] {
                for dz in -r[2]..=r[2] {
                    if let Some(i) = self.index([c[0] + dx, c[1] + dy, c[2] + dz]) {
                        if v[i] > best {
                            best = v[i];
                            arg = i;
                        }
                    }
                }
            }
        }
        (best, arg)
    }
}

/// The soft skeleton of one volume: the stack [img_0, E_0..E_iter] and skel_0..skel_iter.
fn skeleton(g: &Grid, img: &[f64], iter: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut stack = vec![img.to_vec()];
    let mut skels: Vec<Vec<f64>> = Vec::new();
    for j in 0..=iter {
        let e: Vec<f64> = (0..img.len()).map(|s| g.erode(&stack[j], s).0).collect();
        stack.push(e);
        let sk: Vec<f64> = (0..img.len())
            .map(|s| {
                let delta = (stack[j][s] - g.dilate(&stack[j + 1], s).0).max(0.0);
                if j == 0 {
                    delta
                } else {
                    let prev = skels[j - 1][s];
                    prev + (delta - prev * delta).max(0.0)
                }
            })
            .collect();
        skels.push(sk);
    }
    (stack, skels)
}

/// dL/d img_0 from dL/d skel_iter (`bw_*` of the shader).
fn skeleton_backward(
    g: &Grid,
    stack: &[Vec<f64>],
    skels: &[Vec<f64>],
    gskel_final: &[f64],
) -> Vec<f64> {
    let len = gskel_final.len();
    let mut gskel = gskel_final.to_vec();
    let mut gnext = vec![0.0; len];
    for j in (0..skels.len()).rev() {
        let mut gcur = vec![0.0; len];
        let mut go = vec![0.0; len];
        for s in 0..len {
            let diff = stack[j][s] - g.dilate(&stack[j + 1], s).0;
            let delta = diff.max(0.0);
            let mut gd = gskel[s];
            if j > 0 {
                let prev = skels[j - 1][s];
                let live = (delta * (1.0 - prev) > 0.0) as u8 as f64;
                gd = gskel[s] * live * (1.0 - prev);
                gskel[s] *= 1.0 - live * delta;
            }
            let through = gd * (diff > 0.0) as u8 as f64;
            gcur[s] = through;
            go[s] = -through;
        }
        // Dilate: each output sends to its first maximum.
        let mut ge = gnext.clone();
        for (o, &gv) in go.iter().enumerate() {
            let (_, arg) = g.dilate(&stack[j + 1], o);
            ge[arg] += gv;
        }
        // Erode: each output sends to each axis's first minimum, weighted.
        let mut gimg = gcur;
        for (x, &gv) in ge.iter().enumerate() {
            let (_, arg, w) = g.erode(&stack[j], x);
            for a in 0..g.ndims {
                gimg[arg[a]] += w[a] * gv;
            }
        }
        gnext = gimg;
    }
    gnext
}

pub(crate) fn forward_backward(
    spec: &ClDiceSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
) -> (Vec<f64>, Vec<f64>, Status) {
    let l = &spec.loss;
    let (n_img, c_n, s_n) = (shape.n(), shape.c(), shape.s());
    let spatial = shape.spatial();
    let mut dims = [1usize; 3];
    dims[..spatial.len()].copy_from_slice(&spatial);
    let grid = Grid {
        dims,
        ndims: spatial.len(),
    };
    let mut status = Status::default();
    // Probabilities and targets per (image, channel).
    let mut p = vec![0.0; shape.numel()];
    let mut t = vec![0.0; shape.numel()];
    for n in 0..n_img {
        for s in 0..s_n {
            let base = n * c_n * s_n + s;
            let zs = (0..c_n).map(|c| z[base + c * s_n]);
            let lse = log_sum_exp(zs.clone());
            for c in 0..c_n {
                let e = base + c * s_n;
                status.nonfinite_logits += (!z[e].is_finite()) as u32;
                p[e] = match spec.act {
                    Activation::Softmax => (z[e] - lse).exp(),
                    Activation::Sigmoid => sigmoid(z[e]),
                    Activation::None => z[e],
                };
                t[e] = match targets {
                    Targets::Dense(d) => {
                        status.nonfinite_targets += (!d[e].is_finite()) as u32;
                        d[e] as f64
                    }
                    Targets::Labels(lb) => {
                        let y = lb[n * s_n + s];
                        let bad = if c_n == 1 {
                            y != 0 && y != 1
                        } else {
                            y < 0 || y >= c_n as i32
                        };
                        if c == 0 && bad {
                            status.bad_labels += 1;
                        }
                        if bad {
                            0.0
                        } else if c_n == 1 {
                            (y == 1) as u8 as f64
                        } else {
                            (y == c as i32) as u8 as f64
                        }
                    }
                };
            }
        }
    }
    let iter = l.iter as usize;
    let reduce = if l.reduction == Reduction::Mean {
        1.0 / n_img as f64
    } else {
        1.0
    };
    let alpha = l.alpha.unwrap_or(1.0) as f64;
    let (snr, sdr, sm) = (l.smooth_nr as f64, l.smooth_dr as f64, l.smooth as f64);
    let mut dp = vec![0.0; shape.numel()]; // dL/dp
    let mut losses = Vec::new();
    for n in 0..n_img {
        let vol = |v: &[f64], c: usize| v[(n * c_n + c) * s_n..][..s_n].to_vec();
        let mut sk_p = Vec::new();
        let mut sk_t = Vec::new();
        let (mut a, mut b, mut cc, mut d) = (0.0, 0.0, 0.0, 0.0);
        for c in spec.first..c_n {
            let (pv, tv) = (vol(&p, c), vol(&t, c));
            let fp = skeleton(&grid, &pv, iter);
            let ft = skeleton(&grid, &tv, iter);
            let (sp, st) = (&fp.1[iter], &ft.1[iter]);
            for s in 0..s_n {
                a += sp[s] * tv[s];
                b += sp[s];
                cc += st[s] * pv[s];
                d += st[s];
            }
            sk_p.push(fp);
            sk_t.push(ft);
        }
        let (bd, dd) = (b + sdr, d + sdr);
        let (tprec, tsens) = ((a + snr) / bd, (cc + snr) / dd);
        let h = tprec + tsens + sm;
        let cl = 1.0 - 2.0 * tprec * tsens / h;
        losses.push(cl);
        let sc = alpha * reduce;
        let dprec = -2.0 * tsens * (h - tprec) / (h * h);
        let dsens = -2.0 * tprec * (h - tsens) / (h * h);
        let (ca, cb, cs) = (sc * dprec / bd, -sc * dprec * tprec / bd, sc * dsens / dd);
        for (k, c) in (spec.first..c_n).enumerate() {
            let tv = vol(&t, c);
            let gsk: Vec<f64> = (0..s_n).map(|s| ca * tv[s] + cb).collect();
            let (stack, skels) = &sk_p[k];
            let gimg = skeleton_backward(&grid, stack, skels, &gsk);
            let st = &sk_t[k].1[iter];
            for s in 0..s_n {
                dp[(n * c_n + c) * s_n + s] = gimg[s] + cs * st[s];
            }
        }
    }
    // Through the activation.
    let mut grad = vec![0.0; shape.numel()];
    for n in 0..n_img {
        for s in 0..s_n {
            let base = n * c_n * s_n + s;
            let dot: f64 = (0..c_n)
                .map(|c| p[base + c * s_n] * dp[base + c * s_n])
                .sum();
            for c in 0..c_n {
                let e = base + c * s_n;
                grad[e] = match spec.act {
                    Activation::Softmax => p[e] * (dp[e] - dot),
                    Activation::Sigmoid => dp[e] * p[e] * (1.0 - p[e]),
                    Activation::None => dp[e],
                };
            }
        }
    }
    let loss = match l.reduction {
        Reduction::None => losses,
        _ => vec![alpha * reduce * losses.iter().sum::<f64>()],
    };
    (loss, grad, status)
}
