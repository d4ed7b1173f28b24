//! `cldice` and `dice-cldice` (MONAI's `SoftclDiceLoss`, `SoftDiceclDiceLoss`): the soft skeleton
//! of prediction and target on the GPU (`shaders/skeleton.wgsl`), with a fused backward that routes
//! the gradient through every min/max the forward took (ties as torch). CPU mirror:
//! `src/cpu/skeleton.rs`.
//!
//! Extra GPU memory, per element of the kept channels (`N·C'·S`): `iter_ + 2` volumes of erosions
//! (the input and each `E_j`), `iter_ + 2` skeletons (each step's and the target's), and 5 for
//! the backward — `2·iter_ + 9` f32 in all (15 for the default `iter_ = 3`).

use crate::error::{Error, Result};
use crate::kernels::{GradientEntry, Kernels, MAX_WORKGROUPS, WG};
use crate::loss::bind::{bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::loss::params::ParamReader;
use crate::loss::region::{Dice, RegionOptions};
use crate::loss::{Activation, Loss, Plan, Reduction};
use crate::shader::Family;
use crate::tensor::{Inputs, Outputs, Shape, TargetKind};

/// `cldice` (and, with `alpha`, `dice-cldice`): per image,
/// `1 - 2·tprec·tsens / (tprec + tsens + smooth)` with
/// `tprec = (Σ skel(p)·g + smooth_nr) / (Σ skel(p) + smooth_dr)` and
/// `tsens = (Σ skel(g)·p + smooth_nr) / (Σ skel(g) + smooth_dr)` over the kept channels and
/// pixels; `dice-cldice` is `(1 - alpha)·dice + alpha·cldice`. 2D and 3D.
#[derive(Clone, Debug, PartialEq)]
pub struct ClDice {
    /// Skeletonisation iterations.
    pub iter: u32,
    /// Added to the numerators of tprec and tsens.
    pub smooth_nr: f32,
    /// Added to their denominators (and the Dice denominator of `dice-cldice`).
    pub smooth_dr: f32,
    /// Added to the denominator of the harmonic mean.
    pub smooth: f32,
    /// Keep channel 0 (the activation still sees every channel).
    pub include_background: bool,
    /// Reduction over images; `none` gives `[N]` (`cldice` only).
    pub reduction: Reduction,
    /// `None`: softmax for C > 1, sigmoid for C = 1.
    pub activation: Option<Activation>,
    /// `dice-cldice` only: the weight of clDice (Dice gets `1 - alpha`); `None` for `cldice`.
    pub alpha: Option<f32>,
}

impl Default for ClDice {
    fn default() -> Self {
        ClDice {
            iter: 3,
            smooth_nr: 1.0,
            smooth_dr: 1.0,
            smooth: 1e-4,
            include_background: true,
            reduction: Reduction::Mean,
            activation: None,
            alpha: None,
        }
    }
}

/// What the kernels and the CPU mirror need.
#[derive(Clone, Debug)]
pub(crate) struct ClDiceSpec {
    pub loss: ClDice,
    pub act: Activation,
    pub first: usize,
    pub dense: bool,
}

impl ClDice {
    pub(crate) fn from_params(name: &'static str, items: &[(String, String)]) -> Result<Self> {
        let mut known = vec![
            "iter_",
            "smooth_nr",
            "smooth_dr",
            "smooth",
            "include_background",
            "reduction",
            "activation",
        ];
        let dice = name == "dice-cldice";
        if dice {
            known.push("alpha");
        }
        let r = ParamReader::new(name, &known, items)?;
        let d = Self::default();
        let iter = r.f32("iter_", d.iter as f32)?;
        if iter < 0.0 || iter.fract() != 0.0 || iter > 64.0 {
            return Err(r.err("iter_", format!("{iter} is not a whole number in 0..=64")));
        }
        Ok(ClDice {
            iter: iter as u32,
            smooth_nr: r.f32("smooth_nr", d.smooth_nr)?,
            smooth_dr: r.f32("smooth_dr", d.smooth_dr)?,
            smooth: r.f32("smooth", d.smooth)?,
            include_background: r.bool("include_background", d.include_background)?,
            reduction: r.reduction()?,
            activation: r.parsed_opt("activation")?,
            alpha: if dice {
                Some(r.f32("alpha", 0.5)?)
            } else {
                None
            },
        })
    }

    pub(crate) fn spec(
        &self,
        name: &'static str,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<ClDiceSpec> {
        let err = |param: &str, message: String| Error::Parameter {
            loss: name,
            name: param.into(),
            message,
        };
        let dims = shape.spatial().len();
        if !(2..=3).contains(&dims) {
            return Err(Error::Target {
                loss: name,
                message: format!("the soft skeleton is 2D or 3D, got {dims} spatial dimensions"),
            });
        }
        if !(self.smooth > 0.0 && self.smooth.is_finite()) {
            return Err(err(
                "smooth",
                format!("{} is not a positive number", self.smooth),
            ));
        }
        for (p, v) in [("smooth_nr", self.smooth_nr), ("smooth_dr", self.smooth_dr)] {
            if !v.is_finite() || v < 0.0 {
                return Err(err(p, format!("{v} is negative or not finite")));
            }
        }
        if let Some(a) = self.alpha {
            if !(0.0..=1.0).contains(&a) {
                return Err(err("alpha", format!("{a} is outside [0, 1]")));
            }
            if self.reduction == Reduction::None {
                return Err(err(
                    "reduction",
                    "none is not defined for dice-cldice".into(),
                ));
            }
        }
        let c = shape.c();
        let act = match self.activation {
            None if c == 1 => Activation::Sigmoid,
            None => Activation::Softmax,
            Some(Activation::Softmax) if c == 1 => {
                return Err(err(
                    "activation",
                    "softmax over a single channel is constant".into(),
                ))
            }
            Some(a) => a,
        };
        Ok(ClDiceSpec {
            loss: self.clone(),
            act,
            first: usize::from(!self.include_background && c > 1),
            dense: target == TargetKind::Dense,
        })
    }

    /// The Dice part of `dice-cldice` (MONAI's DiceLoss with the same options).
    pub(crate) fn dice(&self) -> Dice {
        Dice {
            options: RegionOptions {
                include_background: self.include_background,
                smooth_nr: self.smooth_nr,
                smooth_dr: self.smooth_dr,
                reduction: self.reduction,
                activation: self.activation,
                ..RegionOptions::default()
            },
            ..Dice::default()
        }
    }
}

/// Uniform parameters of `shaders/skeleton.wgsl`.
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SkeletonParams {
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub kept: u32,
    pub dims: [u32; 4],
    pub _pad0: u32,
    pub step: u32,
    pub iter: u32,
    pub nwg: u32,
    pub smooth_nr: f32,
    pub smooth_dr: f32,
    pub smooth_h: f32,
    pub grad_scale: f32,
    pub accumulate: u32,
    pub ignore_index: i32,
    pub scale: f32,
    pub dice_weight: f32,
}

// params, logits, targets, stack, skel, status, work, grad, loss_out
const SLOTS: [Slot; 9] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// Pixels one thread of the pooling kernels walks along axis 0 (`RUN` in the shader).
const RUN: usize = 16;

const ENTRIES: [&str; 11] = [
    "seed",
    "erode",
    "skel_step",
    "keep_target",
    "stats",
    "finalize",
    "bw_start",
    "bw_skel",
    "bw_dilate",
    "bw_erode",
    "backprop",
];

/// The GPU side of a planned clDice loss.
pub(crate) struct SkeletonPlan {
    spec: ClDiceSpec,
    layout: wgpu::BindGroupLayout,
    pipes: Vec<wgpu::ComputePipeline>,
    /// `backprop` (the last entry), overwriting or adding to the gradient.
    backprop: GradientEntry,
    seed_target: wgpu::ComputePipeline,
    stack: wgpu::Buffer,
    skel: wgpu::Buffer,
    work: wgpu::Buffer,
    dice: Option<Plan>,
    wx: u32,
}

impl SkeletonPlan {
    pub fn new(
        kernels: &Kernels,
        spec: ClDiceSpec,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<Self> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let act = match spec.act {
            Activation::Softmax => 0.0,
            Activation::Sigmoid => 1.0,
            Activation::None => 2.0,
        };
        let base = |seed_target: bool| {
            vec![
                ("DENSE", flag(spec.dense)),
                ("HAS_IGNORE", 0.0),
                ("ACT", act),
                ("FIRST_CHANNEL", spec.first as f64),
                ("SEED_TARGET", flag(seed_target)),
                ("REDUCE_NONE", flag(spec.loss.reduction == Reduction::None)),
                ("ADD_LOSS", flag(spec.loss.alpha.is_some())),
                ("NDIMS", shape.spatial().len() as f64),
            ]
        };
        let (layout, pl) = kernels.layout(Family::Skeleton, &layout_entries(&SLOTS));
        let pipes = ENTRIES
            .iter()
            .map(|e| kernels.pipeline(Family::Skeleton, e, &base(false), &pl))
            .collect::<Result<Vec<_>>>()?;
        let seed_target = kernels.pipeline(Family::Skeleton, "seed", &base(true), &pl)?;
        let backprop = GradientEntry::new(Family::Skeleton, "backprop", &base(false), &pl);
        let kept = shape.c() - spec.first;
        let vs = shape.n() * kept * shape.s();
        let iter = spec.loss.iter as usize;
        let per_image = (MAX_WORKGROUPS as usize / shape.n()).max(1);
        let wx = (kept * shape.s())
            .div_ceil(WG as usize * 16)
            .clamp(1, per_image) as u32;
        let work_len = 5 * vs + 4 * shape.n() * wx as usize + 4 * shape.n();
        for (name, len) in [
            ("skeleton stack", (iter + 2) * vs),
            ("skeleton work", work_len),
        ] {
            kernels.check_binding(name, len as u64 * 4)?;
        }
        let device = kernels.device();
        let none = wgpu::BufferUsages::empty();
        let dice = match spec.loss.alpha {
            Some(_) => Some(kernels.plan(&Loss::Dice(spec.loss.dice()), shape.clone(), target)?),
            None => None,
        };
        Ok(SkeletonPlan {
            stack: storage(device, "segloss skeleton stack", (iter + 2) * vs, none),
            skel: storage(device, "segloss skeletons", (iter + 2) * vs, none),
            work: storage(device, "segloss skeleton work", work_len, none),
            spec,
            layout,
            pipes,
            backprop,
            seed_target,
            dice,
            wx,
        })
    }

    pub fn record(
        &self,
        plan: &Plan,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        outputs: &Outputs,
    ) -> Result<()> {
        let shape = plan.shape();
        let kernels = &plan.kernels;
        let device = kernels.device();
        let l = &self.spec.loss;
        let mut accumulate = outputs.accumulate;
        if let (Some(dice), Some(alpha)) = (&self.dice, l.alpha) {
            // The Dice part first: it writes the loss and (1 - alpha) of its gradient.
            let o = Outputs {
                grad_scale: outputs.grad_scale * (1.0 - alpha),
                ..*outputs
            };
            dice.record(encoder, inputs, &o)?;
            accumulate = true;
        }
        let kept = shape.c() - self.spec.first;
        let vs = shape.n() * kept * shape.s();
        let spatial = shape.spatial();
        let mut dims = [1u32; 4];
        for (a, &d) in spatial.iter().enumerate() {
            dims[a] = d as u32;
        }
        let reduce = match l.reduction {
            Reduction::Mean => 1.0 / shape.n() as f32,
            _ => 1.0,
        };
        let alpha = l.alpha.unwrap_or(1.0);
        let base = SkeletonParams {
            n: shape.n() as u32,
            c: shape.c() as u32,
            s: shape.s() as u32,
            kept: kept as u32,
            dims,
            _pad0: 0,
            step: 0,
            iter: l.iter,
            nwg: self.wx,
            smooth_nr: l.smooth_nr,
            smooth_dr: l.smooth_dr,
            smooth_h: l.smooth,
            grad_scale: outputs.grad_scale,
            accumulate: accumulate as u32,
            ignore_index: 0,
            scale: alpha * reduce,
            dice_weight: 1.0 - alpha,
        };
        let bind = |step: u32| {
            let u = uniform(
                device,
                "segloss skeleton params",
                &SkeletonParams { step, ..base },
            );
            bind_group(
                device,
                "segloss skeleton",
                &self.layout,
                vec![
                    u.as_entire_binding(),
                    sized(inputs.logits, shape.numel()),
                    sized(inputs.targets, plan.targets_len()),
                    self.stack.as_entire_binding(),
                    self.skel.as_entire_binding(),
                    plan.status_buffer().as_entire_binding(),
                    self.work.as_entire_binding(),
                    sized(outputs.grad, shape.numel()),
                    sized(
                        outputs.loss,
                        if l.reduction == Reduction::None {
                            shape.n()
                        } else {
                            1
                        },
                    ),
                ],
            )
        };
        let steps: Vec<wgpu::BindGroup> = (0..=l.iter).map(bind).collect();
        let pixels = kernels.workgroups(shape.pixels());
        let elems = kernels.workgroups(vs);
        // The pooling kernels: one thread per run of RUN pixels along axis 0.
        let plane = shape.s() / spatial[0];
        let runs = kernels.workgroups(shape.n() * kept * plane * spatial[0].div_ceil(RUN));
        let backprop = self.backprop.pipeline(kernels, accumulate)?;
        // A pass per dispatch, labelled with its kernel, so that `bench --passes` shows which
        // step of the skeleton takes the time (they share one label per kernel).
        let mut run = |entry: usize, pipe: &wgpu::ComputePipeline, bg: &wgpu::BindGroup, x, y| {
            let label = format!("segloss cldice {}", ENTRIES[entry]);
            let mut pass = kernels.begin_pass(encoder, &label);
            pass.set_bind_group(0, bg, &[]);
            pass.set_pipeline(pipe);
            pass.dispatch_workgroups(x, y, 1);
        };
        let p = &self.pipes;
        // The target's skeleton, then the prediction's.
        for (seed, keep) in [(&self.seed_target, true), (&p[0], false)] {
            run(0, seed, &steps[0], pixels, 1);
            for bg in &steps {
                run(1, &p[1], bg, runs, 1);
                run(2, &p[2], bg, runs, 1);
            }
            if keep {
                run(3, &p[3], &steps[0], elems, 1);
            }
        }
        run(4, &p[4], &steps[0], self.wx, shape.n() as u32);
        run(5, &p[5], &steps[0], 1, 1);
        run(6, &p[6], &steps[0], elems, 1);
        for bg in steps.iter().rev() {
            run(7, &p[7], bg, runs, 1);
            run(8, &p[8], bg, runs, 1);
            run(9, &p[9], bg, runs, 1);
        }
        run(10, &backprop, &steps[0], pixels, 1);
        Ok(())
    }
}
