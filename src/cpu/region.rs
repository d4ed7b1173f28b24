//! CPU mirror of `shaders/region.wgsl`, in f64: statistics, combine, finalize, gradient, with
//! the shader's names and formulas.

use super::activation::{log_sum_exp, pow_nonneg, sigmoid};
use super::distance;
use super::terms::{
    bce_term, ce_dense_term, ce_label_term, focal_alpha_factor, focal_sigmoid_term,
};
use crate::loss::region::{PixTerm, RegionKind, RegionSpec, WeightType};
use crate::loss::{Activation, Reduction, Status};
use crate::tensor::{Shape, Targets};

#[derive(PartialEq)]
enum Pix {
    Valid,
    Ignored,
    Bad,
}

struct Ctx<'a> {
    spec: &'a RegionSpec,
    shape: &'a Shape,
    z: &'a [f64],
    targets: &'a Targets<'a>,
    /// Distance losses: the map [N, C, *S] (empty otherwise).
    map: &'a [f64],
}

/// unified-focal's clamp (MONAI's epsilon).
const UF_EPS: f64 = 1e-7;

impl Ctx<'_> {
    /// unified-focal: (P0, P1, g0, g1) with P clamped to [ε, 1 - ε], as `unified_probs`.
    fn unified_probs(&self, base: usize, label: i32) -> [f64; 4] {
        let (p, g) = self.unified_raw(base, label);
        [
            p[0].clamp(UF_EPS, 1.0 - UF_EPS),
            p[1].clamp(UF_EPS, 1.0 - UF_EPS),
            g[0],
            g[1],
        ]
    }

    /// The unclamped pair of probabilities and targets (C = 1: (1 - σ, σ) and (1 - t, t)).
    fn unified_raw(&self, base: usize, label: i32) -> ([f64; 2], [f64; 2]) {
        let p = self.probs(base);
        if self.shape.c() == 1 {
            let t = self.target(base, 0, label);
            ([1.0 - p[0], p[0]], [1.0 - t, t])
        } else {
            let s_n = self.shape.s();
            (
                [p[0], p[1]],
                [
                    self.target(base, 0, label),
                    self.target(base + s_n, 1, label),
                ],
            )
        }
    }

    fn binary_labels(&self) -> bool {
        self.shape.c() == 1
    }

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
        let count = if self.binary_labels() {
            2
        } else {
            self.shape.c() as i32
        };
        if label < 0 || label >= count {
            return Pix::Bad;
        }
        Pix::Valid
    }

    fn target(&self, e: usize, c: usize, label: i32) -> f64 {
        match self.targets {
            Targets::Dense(t) => t[e] as f64,
            Targets::Labels(_) if self.binary_labels() => (label == 1) as u8 as f64,
            Targets::Labels(_) => (label == c as i32) as u8 as f64,
        }
    }

    /// Probabilities of every channel of the pixel at `base`.
    fn probs(&self, base: usize) -> Vec<f64> {
        let (c_n, s_n) = (self.shape.c(), self.shape.s());
        let zs = (0..c_n).map(|c| self.z[base + c * s_n]);
        match self.spec.act {
            Activation::Softmax => {
                let lse = log_sum_exp(zs.clone());
                zs.map(|z| (z - lse).exp()).collect()
            }
            Activation::Sigmoid => zs.map(sigmoid).collect(),
            Activation::None => zs.collect(),
        }
    }
}

/// `stat4` of the shader.
fn stat4(spec: &RegionSpec, p: f64, g: f64) -> [f64; 4] {
    if spec.kind == RegionKind::SensitivitySpecificity {
        let e = (g - p) * (g - p);
        return [e * g, e * (1.0 - g), g, 1.0 - g];
    }
    let d = if spec.soft { (p - g).abs() } else { 0.0 };
    if spec.squared {
        [p * g, p * p, g * g, d]
    } else {
        [p * g, p, g, d]
    }
}

/// Statistics `[segment][C + 1][4]` (stats_pass + combine).
pub(crate) fn statistics(
    spec: &RegionSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
    map: &[f64],
) -> Vec<f64> {
    let ctx = Ctx {
        spec,
        shape,
        z,
        targets,
        map,
    };
    let (c_n, s_n) = (shape.c(), shape.s());
    let slots = c_n + 1;
    let mut stats = vec![0.0; spec.segments(shape) * slots * 4];
    for n in 0..shape.n() {
        let seg = if spec.batch { 0 } else { n };
        for s in 0..s_n {
            let label = ctx.label(n * s_n + s);
            let state = ctx.state(label);
            if spec.kind == RegionKind::Unified && state == Pix::Ignored {
                // MONAI: masked to 0, clamped to ε: ε into Σ P of both classes.
                stats[(seg * slots) * 4 + 1] += UF_EPS;
                stats[(seg * slots) * 4 + 3] += UF_EPS;
            }
            if state != Pix::Valid {
                continue;
            }
            let base = n * c_n * s_n + s;
            if spec.kind == RegionKind::Unified {
                let [p0, p1, g0, g1] = ctx.unified_probs(base, label);
                let st = &mut stats[(seg * slots) * 4..][..4];
                st[0] += g0 * p0;
                st[1] += p0;
                st[2] += g1 * p1;
                st[3] += p1;
                let sc = &mut stats[(seg * slots + c_n) * 4..][..4];
                sc[0] += 1.0;
                sc[2] += g0;
                sc[3] += g1;
                continue;
            }
            let p = ctx.probs(base);
            if spec.kind == RegionKind::Wasserstein {
                // Grouped by label: (Σ W, count) in the slot of the pixel's class.
                let y = label as usize;
                let w: f64 = (0..c_n).map(|c| spec.dist[y * c_n + c] as f64 * p[c]).sum();
                stats[(seg * slots + y) * 4] += w;
                stats[(seg * slots + y) * 4 + 1] += 1.0;
                stats[(seg * slots + c_n) * 4] += 1.0;
                continue;
            }
            for c in spec.first_channel..c_n {
                let e = base + c * s_n;
                let g = ctx.target(e, c, label);
                let st = match spec.kind {
                    RegionKind::Boundary => [p[c] * ctx.map[e], 0.0, 0.0, 0.0],
                    RegionKind::Hausdorff => [(p[c] - g) * (p[c] - g) * ctx.map[e], 0.0, 0.0, 0.0],
                    _ => stat4(spec, p[c], g),
                };
                for k in 0..4 {
                    stats[(seg * slots + c) * 4 + k] += st[k];
                }
            }
            stats[(seg * slots + c_n) * 4] += 1.0;
            if spec.pix == PixTerm::CrossEntropy && !spec.dense && !ctx.binary_labels() {
                stats[(seg * slots + c_n) * 4 + 1] += spec.pixel_weight[label as usize] as f64;
            }
        }
    }
    stats
}

fn tp_fp_fn(spec: &RegionSpec, st: &[f64]) -> [f64; 3] {
    let tp = if spec.soft {
        0.5 * (st[1] + st[2] - st[3])
    } else {
        st[0]
    };
    [tp, st[1] - tp, st[2] - tp]
}

/// `class_score`: (l, dl/dtp, dl/dfp, dl/dfn).
fn class_score(spec: &RegionSpec, t: [f64; 3]) -> [f64; 4] {
    let [tp, fp, fn_] = t;
    let (snr, sdr) = (spec.smooth_nr as f64, spec.smooth_dr as f64);
    if spec.kind == RegionKind::Tversky {
        let (a, b) = (spec.alpha as f64, spec.beta as f64);
        let num = tp + snr;
        let den = tp + a * fp + b * fn_ + sdr;
        let d2 = den * den;
        return [
            1.0 - num / den,
            -(den - num) / d2,
            num * a / d2,
            num * b / d2,
        ];
    }
    let k = if spec.jaccard { 2.0 } else { 1.0 };
    let num = 2.0 * tp + snr;
    let den = 2.0 * tp + k * (fp + fn_) + sdr;
    let d2 = den * den;
    [
        1.0 - num / den,
        -(2.0 * den - 2.0 * num) / d2,
        k * num / d2,
        k * num / d2,
    ]
}

fn coefficients(d: [f64; 3]) -> [f64; 2] {
    [d[0] - d[1] - d[2], d[1]]
}

fn gdl_weight(spec: &RegionSpec, g: f64) -> f64 {
    match spec.w_type {
        WeightType::Square => 1.0 / (g * g),
        WeightType::Simple => 1.0 / g,
        WeightType::Uniform => 1.0,
    }
}

/// `finalize` of the shader: the loss (reduced, or per item for `none`), per-(segment, class)
/// gradient coefficients, their global scale, and each item's unreduced loss (`.z` in WGSL).
pub(crate) fn finalize(spec: &RegionSpec, shape: &Shape, stats: &[f64]) -> Finalized {
    let c_n = shape.c();
    let nseg = spec.segments(shape);
    let kept = spec.kept(shape);
    let first = spec.first_channel;
    let at = |seg: usize, c: usize| &stats[(seg * (c_n + 1) + c) * 4..][..4];
    let items = match spec.kind {
        RegionKind::GeneralizedDice | RegionKind::Wasserstein => nseg,
        RegionKind::Unified => 2 * nseg,
        _ => nseg * kept,
    } as f64;
    let own_mean = matches!(spec.kind, RegionKind::Combo | RegionKind::ExpLog);
    let scale = if spec.reduction == Reduction::Mean && !own_mean {
        1.0 / items
    } else {
        1.0
    };
    let mut coefs = vec![[0.0; 2]; nseg * c_n];
    // exp-log: the class weights of its cross-entropy term (`.w` of the coefficients in WGSL).
    let mut class_w = vec![0.0; c_n];
    // unified-focal: class 1's coefficients per segment (`.zw` of the coefficients in WGSL).
    let mut uf_coefs = Vec::new();
    let mut items_loss = vec![0.0; nseg * c_n];
    let mut none = vec![0.0; spec.loss_len(shape)];
    let mut total = 0.0;
    for seg in 0..nseg {
        if spec.kind == RegionKind::Combo {
            // One Dice over every class and pixel: -(1 - alpha)·(2I + s)/(P + G + s).
            let mut st = [0.0; 4];
            for c in first..c_n {
                for (k, v) in at(seg, c).iter().enumerate() {
                    st[k] += v;
                }
            }
            let num = 2.0 * st[0] + spec.smooth_nr as f64;
            let den = st[1] + st[2] + spec.smooth_nr as f64;
            let k = -(1.0 - spec.alpha as f64);
            for c in first..c_n {
                coefs[seg * c_n + c] = [k * 2.0 / den, -k * num / (den * den)];
            }
            total += k * num / den;
            continue;
        }
        if spec.kind == RegionKind::Unified {
            let st = at(seg, 0);
            let mass = &at(seg, c_n)[2..];
            let d = spec.beta as f64;
            let gm = spec.gamma as f64;
            let mut co = [0.0; 4];
            let mut item = 0.0;
            for k in 0..2 {
                let (tp, a) = (st[2 * k], st[2 * k + 1]);
                let den = d * mass[k] + (1.0 - d) * a + UF_EPS;
                let dice = (tp + UF_EPS) / den;
                let ddice = if k == 0 {
                    item += 1.0 - dice;
                    -1.0
                } else {
                    let q = 1.0 - dice;
                    item += pow_nonneg(q.max(0.0), 1.0 - gm);
                    if q > 0.0 {
                        -(1.0 - gm) * pow_nonneg(q, -gm)
                    } else {
                        0.0
                    }
                };
                co[2 * k] = scale * ddice / den;
                co[2 * k + 1] = -scale * ddice * (1.0 - d) * (tp + UF_EPS) / (den * den);
            }
            coefs[seg * c_n] = [co[0], co[1]];
            uf_coefs.push([co[2], co[3]]);
            total += scale * item;
            continue;
        }
        if spec.kind == RegionKind::Wasserstein {
            let alpha = |l: usize, count: f64| {
                if spec.wass_gdl {
                    1.0 / (count + 1.0)
                } else if l == 0 {
                    0.0
                } else {
                    1.0
                }
            };
            let (mut tp, mut den) = (0.0, spec.smooth_dr as f64);
            for l in 0..c_n {
                let st = at(seg, l);
                let a = alpha(l, st[1]);
                tp += a * (st[1] - st[0]);
                den += if spec.wass_gdl {
                    a * (2.0 * st[1] - st[0])
                } else {
                    st[0]
                };
            }
            if !spec.wass_gdl {
                den += 2.0 * tp;
            }
            let num = 2.0 * tp + spec.smooth_nr as f64;
            let f = 1.0 - num / den;
            for l in 0..c_n {
                let a = alpha(l, at(seg, l)[1]);
                let dden = if spec.wass_gdl { -a } else { 1.0 - 2.0 * a };
                let df = -((-2.0 * a) * den - num * dden) / (den * den);
                coefs[seg * c_n + l] = [scale * df, 0.0];
            }
            if spec.reduction == Reduction::None {
                none[seg] = f;
            }
            total += scale * f;
            continue;
        }
        if spec.kind == RegionKind::ExpLog {
            let counted = at(seg, c_n)[0];
            let scale_c = spec.alpha as f64 / c_n as f64;
            let gamma = spec.gamma as f64;
            for c in 0..c_n {
                let st = at(seg, c);
                let num = 2.0 * st[0] + spec.smooth_nr as f64;
                let den = st[1] + st[2] + spec.smooth_nr as f64;
                let d = num / den;
                let x = -d.ln();
                let dterm = if x > 0.0 {
                    -gamma * pow_nonneg(x, gamma - 1.0) / d
                } else {
                    0.0
                };
                class_w[c] = if st[2] > 0.0 {
                    (counted / st[2]).sqrt()
                } else {
                    0.0
                };
                coefs[seg * c_n + c] = [
                    scale_c * dterm * 2.0 / den,
                    -scale_c * dterm * num / (den * den),
                ];
                total += scale_c * pow_nonneg(x.max(0.0), gamma);
            }
            continue;
        }
        if spec.kind == RegionKind::GeneralizedDice {
            let weights: Vec<f64> = (first..c_n)
                .map(|c| gdl_weight(spec, at(seg, c)[2]))
                .collect();
            let wmax = weights
                .iter()
                .filter(|w| !w.is_infinite())
                .fold(0.0f64, |m, &w| m.max(w));
            let w_of = |i: usize| {
                if weights[i].is_infinite() {
                    wmax
                } else {
                    weights[i]
                }
            };
            let (mut num, mut den) = (spec.smooth_nr as f64, spec.smooth_dr as f64);
            for c in first..c_n {
                let t = tp_fp_fn(spec, at(seg, c));
                let w = w_of(c - first);
                num += 2.0 * w * t[0];
                den += w * (2.0 * t[0] + t[1] + t[2]);
            }
            let l = 1.0 - num / den;
            for c in first..c_n {
                let w = w_of(c - first);
                let d2 = den * den;
                let d = [
                    -2.0 * w / den + num * 2.0 * w / d2,
                    num * w / d2,
                    num * w / d2,
                ];
                let co = coefficients(d);
                coefs[seg * c_n + c] = [scale * co[0], scale * co[1]];
                items_loss[seg * c_n + c] = l;
            }
            if spec.reduction == Reduction::None {
                none[seg] = l;
            }
            total += scale * l;
            continue;
        }
        for c in first..c_n {
            let st = at(seg, c);
            let (mut l, mut coef);
            if matches!(spec.kind, RegionKind::Boundary | RegionKind::Hausdorff) {
                // A spatial mean (over the batch too with `batch`).
                let inv = 1.0 / (shape.s() * if spec.batch { shape.n() } else { 1 }) as f64;
                l = st[0] * inv;
                coef = [inv, 0.0];
                if spec.log_hd && spec.reduction == Reduction::None {
                    coef = [inv / (l + 1.0), 0.0];
                    l = (l + 1.0).ln();
                }
            } else if spec.kind == RegionKind::SensitivitySpecificity {
                let sm = spec.smooth_nr as f64;
                let r = spec.ss_r as f64;
                let c1 = r / (st[2] + sm);
                let c2 = (1.0 - r) / (st[3] + sm);
                l = c1 * st[0] + c2 * st[1];
                coef = [c1, c2];
            } else {
                let sc = class_score(spec, tp_fp_fn(spec, st));
                l = sc[0];
                let mut dl = 1.0;
                if spec.focal_tversky {
                    let g = spec.gamma as f64;
                    dl = if l > 0.0 {
                        g * pow_nonneg(l, g - 1.0)
                    } else {
                        0.0
                    };
                    l = pow_nonneg(l, g);
                }
                coef = coefficients([dl * sc[1], dl * sc[2], dl * sc[3]]);
            }
            let w = spec.weight[c] as f64;
            if spec.reduction == Reduction::None {
                let mut lo = w * l;
                coef = [w * coef[0], w * coef[1]];
                if spec.log_cosh {
                    coef = [coef[0] * lo.tanh(), coef[1] * lo.tanh()];
                    lo = lo.cosh().ln();
                }
                none[seg * kept + (c - first)] = lo;
                coefs[seg * c_n + c] = coef;
                items_loss[seg * c_n + c] = lo;
            } else {
                coefs[seg * c_n + c] = [scale * w * coef[0], scale * w * coef[1]];
            }
            total += scale * w * l;
        }
    }
    let mut coef_scale = 1.0;
    let mut loss = total;
    if spec.log_cosh && spec.reduction != Reduction::None {
        coef_scale = total.tanh();
        loss = total.cosh().ln();
    }
    if spec.log_hd && spec.reduction != Reduction::None {
        coef_scale = 1.0 / (total + 1.0);
        loss = (total + 1.0).ln();
    }
    if spec.reduction == Reduction::None && spec.pix != PixTerm::None {
        // MONAI broadcasts the region loss onto [N, C', *S].
        coef_scale = (shape.s() * if spec.batch { shape.n() } else { 1 }) as f64;
        if spec.kind == RegionKind::GeneralizedDice {
            coef_scale *= kept as f64;
        }
    }
    let lambda = spec.lambda_region as f64;
    Finalized {
        loss: if spec.reduction == Reduction::None {
            none
        } else {
            vec![lambda * loss]
        },
        coefs,
        coef_scale: lambda * coef_scale,
        items: items_loss,
        class_w,
        uf_coefs,
    }
}

/// What `finalize` hands to the gradient pass.
pub(crate) struct Finalized {
    pub loss: Vec<f64>,
    pub coefs: Vec<[f64; 2]>,
    pub class_w: Vec<f64>,
    pub uf_coefs: Vec<[f64; 2]>,
    pub coef_scale: f64,
    pub items: Vec<f64>,
}

/// `pixel_multiplier` of the shader: the multiplier of the summed pixel-wise term.
pub(crate) fn pixel_multiplier(spec: &RegionSpec, shape: &Shape, stats: &[f64]) -> f64 {
    if spec.pix == PixTerm::None {
        return 0.0;
    }
    let lambda = spec.lambda_pixel as f64;
    if spec.reduction != Reduction::Mean || spec.pix == PixTerm::Unified {
        return lambda * spec.pixel_norm(shape) as f64;
    }
    let c_n = shape.c();
    let (mut valid, mut valid_weight) = (0.0, 0.0);
    for seg in 0..spec.segments(shape) {
        valid += stats[(seg * (c_n + 1) + c_n) * 4];
        valid_weight += stats[(seg * (c_n + 1) + c_n) * 4 + 1];
    }
    let denom = match spec.pix {
        PixTerm::CrossEntropy if !(spec.dense || c_n == 1) => valid_weight,
        PixTerm::CrossEntropy => valid,
        PixTerm::ExpLog => valid,
        _ => valid * spec.kept(shape) as f64,
    };
    if denom > 0.0 {
        lambda / denom
    } else {
        0.0
    }
}

/// `pixel_term` of the shader: (loss, dl/dz) of channel c's pixel-wise term.
/// `aux` is Σ_k w_k t'_k for dense cross-entropy and log p_y for exp-log; `class_w` the exp-log
/// class weights.
#[allow(clippy::too_many_arguments)]
fn pixel_term(
    spec: &RegionSpec,
    shape: &Shape,
    c: usize,
    z: f64,
    t: f64,
    label: i32,
    lse_ce: f64,
    aux: f64,
    class_w: &[f64],
) -> (f64, f64) {
    let c_n = shape.c();
    let pw = |k: usize| spec.pixel_weight[k] as f64;
    match spec.pix {
        PixTerm::CrossEntropy if c_n == 1 => bce_term(z, t, pw(0), 1.0),
        PixTerm::CrossEntropy => {
            let eps = spec.label_smoothing as f64;
            let lp = z - lse_ce;
            let p = lp.exp();
            if spec.dense {
                let ts = (1.0 - eps) * t + eps / c_n as f64;
                ce_dense_term(lp, p, ts, pw(c), aux)
            } else {
                let hit = (c as i32 == label) as u8 as f64;
                let wsum: f64 = spec.pixel_weight.iter().map(|&w| w as f64).sum();
                ce_label_term(lp, p, hit, pw(label as usize), pw(c), eps, c_n as f64, wsum)
            }
        }
        PixTerm::Combo => bce_term(z, t, spec.beta as f64, 1.0 - spec.beta as f64),
        PixTerm::ExpLog => {
            let wy = class_w[label as usize];
            let x = -aux;
            let g = spec.pixel_gamma as f64;
            let hit = (c as i32 == label) as u8 as f64;
            let d = if x > 0.0 {
                -g * wy * pow_nonneg(x, g - 1.0)
            } else {
                0.0
            };
            let p = (z - lse_ce).exp();
            (hit * wy * pow_nonneg(x.max(0.0), g), d * (hit - p))
        }
        PixTerm::Focal if c >= spec.first_channel => {
            let af = spec
                .focal_alpha
                .map_or(1.0, |a| focal_alpha_factor(t, a as f64));
            focal_sigmoid_term(z, t, spec.pixel_gamma as f64, af * pw(c), !spec.dense)
        }
        _ => (0.0, 0.0),
    }
}

/// `dl_dp` of the shader.
fn dl_dp(spec: &RegionSpec, coef: [f64; 2], p: f64, g: f64, map: f64) -> f64 {
    if spec.kind == RegionKind::Boundary {
        return coef[0] * map;
    }
    if spec.kind == RegionKind::Hausdorff {
        return coef[0] * 2.0 * (p - g) * map;
    }
    if spec.kind == RegionKind::SensitivitySpecificity {
        return -2.0 * (g - p) * (coef[0] * g + coef[1] * (1.0 - g));
    }
    let dtp = if spec.soft {
        0.5 * (1.0 - signum0(p - g))
    } else {
        g
    };
    let da = if spec.squared { 2.0 * p } else { 1.0 };
    coef[0] * dtp + coef[1] * da
}

/// sign with sign(0) = 0, as WGSL's `sign`.
fn signum0(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The gradient pass, with the status counts.
pub(crate) fn gradient(
    spec: &RegionSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
    fin: &Finalized,
    pixel_mult: f64,
    map: &[f64],
) -> (Vec<f64>, Vec<f64>, Status) {
    let ctx = Ctx {
        spec,
        shape,
        z,
        targets,
        map,
    };
    let (c_n, s_n) = (shape.c(), shape.s());
    let mut grad = vec![0.0; shape.numel()];
    let mut status = Status::default();
    // The pixel term's loss per element [N, C, *S].
    let mut pixel_loss = vec![0.0; shape.numel()];
    for n in 0..shape.n() {
        for s in 0..s_n {
            let base = n * c_n * s_n + s;
            for c in 0..c_n {
                status.nonfinite_logits += (!z[base + c * s_n].is_finite()) as u32;
                if let Targets::Dense(t) = targets {
                    status.nonfinite_targets += (!t[base + c * s_n].is_finite()) as u32;
                }
            }
            let label = ctx.label(n * s_n + s);
            match ctx.state(label) {
                Pix::Valid => {}
                st => {
                    status.bad_labels += (st == Pix::Bad) as u32;
                    continue;
                }
            }
            let seg = if spec.batch { 0 } else { n };
            if spec.kind == RegionKind::Unified {
                pixel_loss[base] =
                    unified_pixel(&ctx, fin, seg, base, label, pixel_mult, &mut grad);
                continue;
            }
            let p = ctx.probs(base);
            let d: Vec<f64> = (0..c_n)
                .map(|c| {
                    if c < spec.first_channel {
                        0.0
                    } else if spec.kind == RegionKind::Wasserstein {
                        let y = label as usize;
                        fin.coef_scale * fin.coefs[seg * c_n + y][0] * spec.dist[y * c_n + c] as f64
                    } else {
                        let g = ctx.target(base + c * s_n, c, label);
                        let m = map.get(base + c * s_n).copied().unwrap_or(0.0);
                        fin.coef_scale * dl_dp(spec, fin.coefs[seg * c_n + c], p[c], g, m)
                    }
                })
                .collect();
            let dot: f64 = p.iter().zip(&d).map(|(p, d)| p * d).sum();
            let lse_ce = log_sum_exp((0..c_n).map(|c| z[base + c * s_n]));
            let eps = spec.label_smoothing as f64;
            let mut ce_a: f64 = (0..c_n)
                .map(|c| {
                    let t = ctx.target(base + c * s_n, c, label);
                    spec.pixel_weight[c] as f64 * ((1.0 - eps) * t + eps / c_n as f64)
                })
                .sum();
            if spec.pix == PixTerm::ExpLog {
                ce_a = z[base + label as usize * s_n] - lse_ce; // log p_y
            }
            for c in 0..c_n {
                let e = base + c * s_n;
                let mut g = match spec.act {
                    Activation::Softmax => p[c] * (d[c] - dot),
                    Activation::Sigmoid => d[c] * p[c] * (1.0 - p[c]),
                    Activation::None => d[c],
                };
                if spec.pix != PixTerm::None {
                    let t = ctx.target(e, c, label);
                    let (l, dz) =
                        pixel_term(spec, shape, c, z[e], t, label, lse_ce, ce_a, &fin.class_w);
                    pixel_loss[e] = l;
                    g += pixel_mult * dz;
                }
                grad[e] = g;
            }
        }
    }
    (grad, pixel_loss, status)
}

/// `unified_pixel` of the shader: writes dL/dz of one pixel, returns its focal (AFL) loss.
fn unified_pixel(
    ctx: &Ctx,
    fin: &Finalized,
    seg: usize,
    base: usize,
    label: i32,
    pixel_mult: f64,
    grad: &mut [f64],
) -> f64 {
    let spec = ctx.spec;
    let [pc0, pc1, g0, g1] = ctx.unified_probs(base, label);
    let (co0, co1) = (fin.coefs[seg * ctx.shape.c()], fin.uf_coefs[seg]);
    let mut d = [
        fin.coef_scale * (co0[0] * g0 + co0[1]),
        fin.coef_scale * (co1[0] * g1 + co1[1]),
    ];
    let (dl, gm) = (spec.beta as f64, spec.gamma as f64);
    let q0 = 1.0 - pc0;
    let afl = (1.0 - dl) * pow_nonneg(q0, gm) * (-g0 * pc0.ln()) + dl * (-g1 * pc1.ln());
    d[0] += pixel_mult
        * (1.0 - dl)
        * g0
        * (gm * pow_nonneg(q0, gm - 1.0) * pc0.ln() - pow_nonneg(q0, gm) / pc0);
    d[1] += pixel_mult * (-dl * g1 / pc1);
    let (p, _) = ctx.unified_raw(base, label);
    for k in 0..2 {
        if !(UF_EPS..=1.0 - UF_EPS).contains(&p[k]) {
            d[k] = 0.0; // the clamp passes no gradient where it clamped
        }
    }
    let s_n = ctx.shape.s();
    if ctx.shape.c() == 1 {
        grad[base] = (d[1] - d[0]) * p[1] * (1.0 - p[1]);
    } else {
        let dot = p[0] * d[0] + p[1] * d[1];
        grad[base] = p[0] * (d[0] - dot);
        grad[base + s_n] = p[1] * (d[1] - dot);
    }
    afl
}

/// The distance map of a distance loss ([N, C, *S]; empty for the others), as `finish_map` in
/// shaders/distance.wgsl: the boundary loss's signed map of the target, or Hausdorff's
/// `dt_p^α + dt_g^α` with the prediction thresholded at 0.5. Ignored pixels are background.
pub(crate) fn distance_map(
    spec: &RegionSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
) -> Vec<f64> {
    if !matches!(spec.kind, RegionKind::Boundary | RegionKind::Hausdorff) {
        return Vec::new();
    }
    let ctx = Ctx {
        spec,
        shape,
        z,
        targets,
        map: &[],
    };
    let (c_n, s_n) = (shape.c(), shape.s());
    let spatial = shape.spatial();
    let mut map = vec![0.0; shape.numel()];
    for n in 0..shape.n() {
        let probs: Vec<Vec<f64>> = (0..s_n).map(|s| ctx.probs(n * c_n * s_n + s)).collect();
        for c in spec.first_channel..c_n {
            let mut target = vec![false; s_n];
            let mut pred = vec![false; s_n];
            for s in 0..s_n {
                let label = ctx.label(n * s_n + s);
                let valid = ctx.state(label) == Pix::Valid;
                let e = n * c_n * s_n + c * s_n + s;
                target[s] = valid && ctx.target(e, c, label) > 0.5;
                pred[s] = valid && probs[s][c] > 0.5;
            }
            let out = &mut map[(n * c_n + c) * s_n..][..s_n];
            if spec.kind == RegionKind::Boundary {
                out.copy_from_slice(&distance::signed_map(&target, &spatial, &spec.spacing));
            } else {
                let a = spec.alpha as f64;
                let dg = distance::opposite_distance(&target, &spatial, &spec.spacing);
                let dp = distance::opposite_distance(&pred, &spatial, &spec.spacing);
                for s in 0..s_n {
                    out[s] = pow_nonneg(dp[s].0, a) + pow_nonneg(dg[s].0, a);
                }
            }
        }
    }
    map
}

/// Loss and gradient of a region loss, with the status counts.
pub(crate) fn forward_backward(
    spec: &RegionSpec,
    shape: &Shape,
    z: &[f64],
    targets: &Targets,
) -> (Vec<f64>, Vec<f64>, Status) {
    let map = distance_map(spec, shape, z, targets);
    let stats = statistics(spec, shape, z, targets, &map);
    let fin = finalize(spec, shape, &stats);
    let pixel_mult = pixel_multiplier(spec, shape, &stats);
    let (grad, pixel_loss, status) = gradient(spec, shape, z, targets, &fin, pixel_mult, &map);
    let mut loss = fin.loss;
    if spec.pix != PixTerm::None {
        if spec.reduction == Reduction::None {
            // [N, C', *S]: the region item broadcast plus the pixel term; 0 where ignored.
            let (c_n, s_n, first) = (shape.c(), shape.s(), spec.first_channel);
            let kept = spec.kept(shape);
            let ctx = Ctx {
                spec,
                shape,
                z,
                targets,
                map: &[],
            };
            loss = vec![0.0; shape.n() * kept * s_n];
            for n in 0..shape.n() {
                let seg = if spec.batch { 0 } else { n };
                for s in 0..s_n {
                    if ctx.state(ctx.label(n * s_n + s)) != Pix::Valid {
                        continue;
                    }
                    for c in first..c_n {
                        let e = n * c_n * s_n + c * s_n + s;
                        loss[(n * kept + c - first) * s_n + s] = spec.lambda_region as f64
                            * fin.items[seg * c_n + c]
                            + pixel_mult * pixel_loss[e];
                    }
                }
            }
        } else {
            loss[0] += pixel_mult * pixel_loss.iter().sum::<f64>();
        }
    }
    (loss, grad, status)
}
