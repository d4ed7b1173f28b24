//! CPU mirror of `shaders/pixel.wgsl`, in f64: same structure (prepass, prepare, main per
//! pixel, finalize), same formulas, to be read side by side with the shader.

use super::activation::log_sum_exp;
use super::terms::{
    bce_term, ce_dense_term, ce_label_term, focal_alpha_factor, focal_sigmoid_term,
    focal_softmax_term,
};
use crate::loss::pixel::{PixelKind, PixelSpec};
use crate::loss::{Reduction, Status};
use crate::tensor::{Shape, Targets};

/// Pixel label state, as `pixel_state` in WGSL.
#[derive(PartialEq)]
enum Pix {
    Valid,
    Ignored,
    Bad,
}

struct Ctx<'a> {
    spec: &'a PixelSpec,
    shape: &'a Shape,
    targets: &'a Targets<'a>,
}

impl Ctx<'_> {
    fn label(&self, p: usize) -> i32 {
        match self.targets {
            Targets::Labels(l) => l[p],
            Targets::Dense(_) => 0,
        }
    }

    fn state(&self, label: i32) -> Pix {
        if self.spec.dense {
            return Pix::Valid;
        }
        if self.spec.ignore_index == Some(label) {
            return Pix::Ignored;
        }
        if label < 0 || label >= self.spec.label_count(self.shape) {
            return Pix::Bad;
        }
        Pix::Valid
    }

    fn target(&self, e: usize, c: usize, label: i32) -> f64 {
        match self.targets {
            Targets::Dense(t) => t[e] as f64,
            Targets::Labels(_) if self.spec.binary_labels(self.shape) => (label == 1) as u8 as f64,
            Targets::Labels(_) => (label == c as i32) as u8 as f64,
        }
    }
}

/// Loss (reduced or unreduced) and gradient of a pixel-wise loss, with the status counts.
pub(crate) fn forward_backward(
    spec: &PixelSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
    grad_scale: f64,
) -> (Vec<f64>, Vec<f64>, Status) {
    let ctx = Ctx {
        spec,
        shape,
        targets,
    };
    let (n_img, c_n, s_n) = (shape.n(), shape.c(), shape.s());
    let mut status = Status::default();

    // prepass + prepare: the normalisers that depend on the targets.
    let mut global_mult = spec.host_loss_norm(shape) as f64;
    let mut image_mult = vec![1.0f64; n_img];
    let mut beta = 0.0;
    if spec.needs_prepass() {
        let (mut valid_weight, mut valid_pixels, mut negative_mass) = (0.0, 0.0, 0.0);
        for (n, im) in image_mult.iter_mut().enumerate() {
            let mut image_valid = 0.0;
            for s in 0..s_n {
                let label = ctx.label(n * s_n + s);
                if ctx.state(label) != Pix::Valid {
                    continue;
                }
                image_valid += 1.0;
                if !spec.dense && !spec.binary_labels(shape) {
                    valid_weight += spec.weight[label as usize] as f64;
                }
                if spec.kind == PixelKind::BalancedBce {
                    let base = n * c_n * s_n + s;
                    for c in 0..c_n {
                        negative_mass += 1.0 - ctx.target(base + c * s_n, c, label);
                    }
                }
            }
            valid_pixels += image_valid;
            if spec.per_image_norm() {
                *im = if image_valid > 0.0 {
                    1.0 / image_valid
                } else {
                    0.0
                };
            }
        }
        let denom = match spec.kind {
            PixelKind::CrossEntropy => valid_weight,
            PixelKind::Focal => valid_pixels,
            _ => valid_pixels * c_n as f64,
        };
        global_mult = match spec.reduction {
            Reduction::Mean if denom > 0.0 => 1.0 / denom,
            Reduction::Mean => 0.0,
            _ => 1.0,
        };
        let elements = valid_pixels * c_n as f64;
        beta = if elements > 0.0 {
            negative_mass / elements
        } else {
            0.0
        };
    }

    // main
    let mut grad = vec![0.0f64; shape.numel()];
    let mut none = vec![0.0f64; spec.loss_len(shape)];
    let mut acc = 0.0;
    for (n, &image_mult) in image_mult.iter().enumerate() {
        for s in 0..s_n {
            let p = n * s_n + s;
            let base = n * c_n * s_n + s;
            let mult = global_mult * image_mult * grad_scale;
            for c in 0..c_n {
                let e = base + c * s_n;
                status.nonfinite_logits += (!z[e].is_finite()) as u32;
                if let Targets::Dense(t) = targets {
                    status.nonfinite_targets += (!t[e].is_finite()) as u32;
                }
            }
            let label = ctx.label(p);
            match ctx.state(label) {
                Pix::Valid => {}
                st => {
                    status.bad_labels += (st == Pix::Bad) as u32;
                    continue; // zero gradient, zero unreduced loss
                }
            }
            let mut px = Pixel {
                ctx: &ctx,
                z,
                grad: &mut grad,
                none: &mut none,
                n,
                s,
                base,
                label,
                mult,
            };
            let l = match spec.kind {
                PixelKind::CrossEntropy => px.ce(),
                PixelKind::Focal if spec.focal_softmax => px.focal_softmax(),
                _ => px.sigmoid_family(beta),
            };
            acc += image_mult * l;
        }
    }

    // finalize
    let loss = match spec.reduction {
        Reduction::None => none,
        _ => vec![acc * global_mult],
    };
    (loss, grad, status)
}

/// One pixel's work, as the per-pixel functions of the shader.
struct Pixel<'a> {
    ctx: &'a Ctx<'a>,
    z: &'a [f64],
    grad: &'a mut [f64],
    none: &'a mut [f64],
    n: usize,
    s: usize,
    base: usize,
    label: i32,
    mult: f64,
}

impl Pixel<'_> {
    fn spec(&self) -> &PixelSpec {
        self.ctx.spec
    }
    fn s_n(&self) -> usize {
        self.ctx.shape.s()
    }
    fn e(&self, c: usize) -> usize {
        self.base + c * self.s_n()
    }

    fn store_none(&mut self, c: usize, l: f64) {
        if self.spec().reduction != Reduction::None {
            return;
        }
        let shape = self.ctx.shape;
        let i = if self.spec().kind == PixelKind::CrossEntropy {
            self.n * shape.s() + self.s
        } else {
            let kept = self.spec().kept_channels(shape);
            (self.n * kept + (c - self.spec().first_channel)) * shape.s() + self.s
        };
        self.none[i] = l;
    }

    fn ce(&mut self) -> f64 {
        let cs = self.ctx.shape.c();
        let eps = self.spec().label_smoothing as f64;
        let ctx = self.ctx;
        let (base, s_n, label) = (self.base, self.s_n(), self.label);
        let w = |c: usize| ctx.spec.weight[c] as f64;
        let lse = log_sum_exp((0..cs).map(|c| self.z[self.e(c)]));
        let dense = self.spec().dense;
        let t_smooth =
            |c: usize| (1.0 - eps) * ctx.target(base + c * s_n, c, label) + eps / cs as f64;
        let a: f64 = if dense {
            (0..cs).map(|c| w(c) * t_smooth(c)).sum()
        } else {
            0.0
        };
        let weight_sum: f64 = (0..cs).map(w).sum();
        let mut l = 0.0;
        for c in 0..cs {
            let e = self.e(c);
            let lp = self.z[e] - lse;
            let p = lp.exp();
            let (lc, g) = if dense {
                ce_dense_term(lp, p, t_smooth(c), w(c), a)
            } else {
                let hit = (c as i32 == self.label) as u8 as f64;
                let wy = w(self.label as usize);
                ce_label_term(lp, p, hit, wy, w(c), eps, cs as f64, weight_sum)
            };
            l += lc;
            self.grad[e] = self.mult * g;
        }
        self.store_none(0, l);
        l
    }

    fn sigmoid_family(&mut self, beta: f64) -> f64 {
        let spec = self.ctx.spec;
        let mut l = 0.0;
        for c in spec.first_channel..self.ctx.shape.c() {
            let e = self.e(c);
            let z = self.z[e];
            let t = self.ctx.target(e, c, self.label);
            let (lc, g) = if spec.kind == PixelKind::Focal {
                let af = spec.alpha.map_or(1.0, |a| focal_alpha_factor(t, a as f64));
                focal_sigmoid_term(
                    z,
                    t,
                    spec.gamma as f64,
                    af * spec.weight[c] as f64,
                    !spec.dense,
                )
            } else {
                let (a, b) = if spec.kind == PixelKind::Bce {
                    let b = spec.weight[c] as f64;
                    (b * spec.pos_weight[c] as f64, b)
                } else {
                    (beta, 1.0 - beta)
                };
                bce_term(z, t, a, b)
            };
            self.grad[e] = self.mult * g;
            self.store_none(c, lc);
            l += lc;
        }
        l
    }

    fn focal_alpha_weight(&self, c: usize) -> f64 {
        let a = match self.spec().alpha {
            Some(a) if c == 0 => 1.0 - a as f64,
            Some(a) => a as f64,
            None => 1.0,
        };
        a * self.spec().weight[c] as f64
    }

    fn focal_softmax(&mut self) -> f64 {
        let first = self.spec().first_channel;
        let cs = self.ctx.shape.c();
        let lse = log_sum_exp((first..cs).map(|c| self.z[self.e(c)]));
        let gamma = self.spec().gamma as f64;
        let mut l = 0.0;
        let mut gsum = 0.0;
        for c in first..cs {
            let e = self.e(c);
            let lp = self.z[e] - lse;
            let p = lp.exp();
            let t = self.ctx.target(e, c, self.label);
            let (lc, dl) = focal_softmax_term(t, self.focal_alpha_weight(c), lp, p, gamma);
            self.store_none(c, lc);
            l += lc;
            gsum += dl;
        }
        for c in first..cs {
            let e = self.e(c);
            let lp = self.z[e] - lse;
            let p = lp.exp();
            let t = self.ctx.target(e, c, self.label);
            let g = focal_softmax_term(t, self.focal_alpha_weight(c), lp, p, gamma).1 - p * gsum;
            self.grad[e] = self.mult * g;
        }
        l
    }
}
