//! Pixel-wise losses: `cross-entropy`, `bce`, `balanced-bce`, `focal`.
//!
//! One fused pass computes the activation, the loss term and the gradient of every pixel
//! (`shaders/pixel.wgsl`); a targets-only prepass runs first when a normaliser depends on the
//! targets (ignored pixels, the class weights of the labels, balanced BCE's negative fraction).
//! CPU mirror: `src/cpu/pixel.rs`.

use crate::error::{Error, Result};
use crate::kernels::{GradientEntry, Kernels};
use crate::loss::bind::{self, bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::loss::params::ParamReader;
use crate::loss::{Activation, Plan, Reduction};
use crate::shader::Family;
use crate::tensor::{Inputs, Outputs, Shape, TargetKind};

/// `cross-entropy`: `torch.nn.functional.cross_entropy` over a softmax of the channels.
///
/// Labels (with `ignore_index` and `label_smoothing`) or dense probability targets. Reduction
/// `mean` divides by the summed `weight` of the valid pixels (labels) or by `N·S` (dense), as
/// torch does; `none` gives `[N, *S]`. If every pixel is ignored the mean is 0 (torch gives NaN).
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy {
    /// Per-class weight (length C), non-negative.
    pub weight: Option<Vec<f32>>,
    /// Label value to skip; `None` disables it. Default -100, as torch.
    pub ignore_index: Option<i32>,
    /// Label smoothing in [0, 1].
    pub label_smoothing: f32,
    /// Reduction.
    pub reduction: Reduction,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            weight: None,
            ignore_index: Some(-100),
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

/// `bce`: `torch.nn.functional.binary_cross_entropy_with_logits`, element-wise sigmoid.
///
/// Dense targets, or labels: `{0, 1}` when C = 1, one-hot over C otherwise. `weight` and
/// `pos_weight` are per class (along dim 1). `ignore_index` (labels only) is this crate's
/// extension: ignored pixels are left out of every sum and of the mean's denominator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bce {
    /// Per-class weight (length C), non-negative.
    pub weight: Option<Vec<f32>>,
    /// Per-class weight of the positive term (length C), non-negative.
    pub pos_weight: Option<Vec<f32>>,
    /// Label value to skip (labels only); `None` by default.
    pub ignore_index: Option<i32>,
    /// Reduction; `none` gives `[N, C, *S]`.
    pub reduction: Reduction,
}

/// `balanced-bce`: HED's class-balanced BCE (LOSSES.md).
///
/// `beta = Σ(1 - t) / (number of target elements)` over the whole batch (the fraction of
/// negative elements for binary targets), a constant for the gradient;
/// `l = -(beta·t·log σ(z) + (1-beta)(1-t)·log(1-σ(z)))`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BalancedBce {
    /// Label value to skip (labels only); `None` by default. This crate's extension.
    pub ignore_index: Option<i32>,
    /// Reduction; `none` gives `[N, C, *S]`.
    pub reduction: Reduction,
}

/// `focal`: `monai.losses.FocalLoss` (sigmoid by default, as MONAI; `activation = softmax` is
/// MONAI's `use_softmax=True`). Labels are one-hot encoded (MONAI's `to_onehot_y=True`); with
/// C = 1 they are the binary target itself.
///
/// MONAI's semantics are kept exactly, including its less obvious ones:
/// - `include_background = false` slices channel 0 off *before* the softmax, so channel 0 gets a
///   zero gradient; it is ignored when C = 1;
/// - a scalar `alpha` weighs channel 0 by `1 - alpha` and the others by `alpha` in the softmax
///   form, `t·alpha + (1-t)(1-alpha)` in the sigmoid form, and is dropped in the softmax form
///   when `include_background = false`;
/// - `weight` has one value per kept channel (C, or C-1 without background), or a single value;
/// - reduction `mean` divides by the number of loss elements, but by the number of valid pixels
///   when `ignore_index` is set; `sum` is the sum over (image, class) of the spatial mean (over
///   the valid pixels when `ignore_index` is set); `none` gives `[N, C', *S]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Focal {
    /// Focusing exponent, >= 0.
    pub gamma: f32,
    /// Balancing factor in [0, 1].
    pub alpha: Option<f32>,
    /// Per-class weight of the kept channels (or one value for all), non-negative.
    pub weight: Option<Vec<f32>>,
    /// Keep channel 0 in the loss.
    pub include_background: bool,
    /// Sigmoid (MONAI's default) or softmax.
    pub activation: Activation,
    /// Label value to skip (labels only).
    pub ignore_index: Option<i32>,
    /// Reduction.
    pub reduction: Reduction,
}

impl Default for Focal {
    fn default() -> Self {
        Focal {
            gamma: 2.0,
            alpha: None,
            weight: None,
            include_background: true,
            activation: Activation::Sigmoid,
            ignore_index: None,
            reduction: Reduction::Mean,
        }
    }
}

/// Which pixel-wise loss (`LOSS` in the shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PixelKind {
    CrossEntropy = 0,
    Bce = 1,
    BalancedBce = 2,
    Focal = 3,
}

/// Everything the kernel and its CPU mirror need, validated against one shape and target kind.
#[derive(Clone, Debug)]
pub(crate) struct PixelSpec {
    pub kind: PixelKind,
    pub dense: bool,
    pub focal_softmax: bool,
    /// 1 when channel 0 is dropped from the loss terms.
    pub first_channel: usize,
    /// Per absolute channel (length C); ones where the loss has none.
    pub weight: Vec<f32>,
    /// Per absolute channel (length C); ones where the loss has none.
    pub pos_weight: Vec<f32>,
    /// Only for labels.
    pub ignore_index: Option<i32>,
    pub label_smoothing: f32,
    pub gamma: f32,
    pub alpha: Option<f32>,
    pub reduction: Reduction,
}

fn check_weights(
    loss: &'static str,
    name: &str,
    w: &Option<Vec<f32>>,
    len: usize,
    allow_scalar: bool,
) -> Result<Vec<f32>> {
    let Some(w) = w else {
        return Ok(vec![1.0; len]);
    };
    let err = |message: String| Error::Parameter {
        loss,
        name: name.to_string(),
        message,
    };
    if let Some(x) = w.iter().find(|x| !x.is_finite() || **x < 0.0) {
        return Err(err(format!("{x} is negative or not finite")));
    }
    if allow_scalar && w.len() == 1 {
        return Ok(vec![w[0]; len]);
    }
    if w.len() != len {
        return Err(err(format!(
            "{} values given, the loss needs {len} (one per class)",
            w.len()
        )));
    }
    Ok(w.clone())
}

fn check_unit(loss: &'static str, name: &str, v: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(Error::Parameter {
            loss,
            name: name.to_string(),
            message: format!("{v} is outside [0, 1]"),
        });
    }
    Ok(())
}

fn labels_only_ignore(
    loss: &'static str,
    ignore: Option<i32>,
    target: TargetKind,
) -> Result<Option<i32>> {
    match (ignore, target) {
        (Some(_), TargetKind::Dense) => Err(Error::Target {
            loss,
            message: "ignore_index needs label targets; dense targets have no labels to ignore"
                .into(),
        }),
        (i, _) => Ok(i),
    }
}

impl CrossEntropy {
    const PARAMS: &'static [&'static str] =
        &["weight", "ignore_index", "label_smoothing", "reduction"];

    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("cross-entropy", Self::PARAMS, items)?;
        let d = Self::default();
        Ok(CrossEntropy {
            weight: r.list("weight")?,
            ignore_index: r.ignore_index(d.ignore_index)?,
            label_smoothing: r.f32("label_smoothing", d.label_smoothing)?,
            reduction: r.reduction()?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<PixelSpec> {
        const L: &str = "cross-entropy";
        check_unit(L, "label_smoothing", self.label_smoothing)?;
        Ok(PixelSpec {
            kind: PixelKind::CrossEntropy,
            dense: target == TargetKind::Dense,
            focal_softmax: false,
            first_channel: 0,
            weight: check_weights(L, "weight", &self.weight, shape.c(), false)?,
            pos_weight: vec![1.0; shape.c()],
            // torch ignores ignore_index with probability targets; so do we (it defaults on).
            ignore_index: self.ignore_index.filter(|_| target == TargetKind::Labels),
            label_smoothing: self.label_smoothing,
            gamma: 0.0,
            alpha: None,
            reduction: self.reduction,
        })
    }
}

impl Bce {
    const PARAMS: &'static [&'static str] = &["weight", "pos_weight", "ignore_index", "reduction"];

    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("bce", Self::PARAMS, items)?;
        Ok(Bce {
            weight: r.list("weight")?,
            pos_weight: r.list("pos_weight")?,
            ignore_index: r.ignore_index(None)?,
            reduction: r.reduction()?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<PixelSpec> {
        const L: &str = "bce";
        Ok(PixelSpec {
            kind: PixelKind::Bce,
            dense: target == TargetKind::Dense,
            focal_softmax: false,
            first_channel: 0,
            weight: check_weights(L, "weight", &self.weight, shape.c(), false)?,
            pos_weight: check_weights(L, "pos_weight", &self.pos_weight, shape.c(), false)?,
            ignore_index: labels_only_ignore(L, self.ignore_index, target)?,
            label_smoothing: 0.0,
            gamma: 0.0,
            alpha: None,
            reduction: self.reduction,
        })
    }
}

impl BalancedBce {
    const PARAMS: &'static [&'static str] = &["ignore_index", "reduction"];

    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("balanced-bce", Self::PARAMS, items)?;
        Ok(BalancedBce {
            ignore_index: r.ignore_index(None)?,
            reduction: r.reduction()?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<PixelSpec> {
        Ok(PixelSpec {
            kind: PixelKind::BalancedBce,
            dense: target == TargetKind::Dense,
            focal_softmax: false,
            first_channel: 0,
            weight: vec![1.0; shape.c()],
            pos_weight: vec![1.0; shape.c()],
            ignore_index: labels_only_ignore("balanced-bce", self.ignore_index, target)?,
            label_smoothing: 0.0,
            gamma: 0.0,
            alpha: None,
            reduction: self.reduction,
        })
    }
}

impl Focal {
    const PARAMS: &'static [&'static str] = &[
        "gamma",
        "alpha",
        "weight",
        "include_background",
        "activation",
        "use_softmax",
        "ignore_index",
        "reduction",
    ];

    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("focal", Self::PARAMS, items)?;
        let d = Self::default();
        let mut activation = r.parsed("activation", d.activation)?;
        // MONAI's own spelling of the same switch.
        if r.bool("use_softmax", false)? {
            activation = Activation::Softmax;
        }
        Ok(Focal {
            gamma: r.f32("gamma", d.gamma)?,
            alpha: r.opt_f32("alpha")?,
            weight: r.list("weight")?,
            include_background: r.bool("include_background", d.include_background)?,
            activation,
            ignore_index: r.ignore_index(None)?,
            reduction: r.reduction()?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<PixelSpec> {
        const L: &str = "focal";
        if !self.gamma.is_finite() || self.gamma < 0.0 {
            return Err(Error::Parameter {
                loss: L,
                name: "gamma".into(),
                message: format!("{} is negative or not finite", self.gamma),
            });
        }
        if let Some(a) = self.alpha {
            check_unit(L, "alpha", a)?;
        }
        if self.activation == Activation::None {
            return Err(Error::Parameter {
                loss: L,
                name: "activation".into(),
                message: "the focal loss takes logits: softmax or sigmoid".into(),
            });
        }
        let c = shape.c();
        // MONAI ignores include_background = false with a single channel.
        let first = usize::from(!self.include_background && c > 1);
        let kept = check_weights(L, "weight", &self.weight, c - first, true)?;
        let mut weight = vec![1.0; first];
        weight.extend(kept);
        let softmax = self.activation == Activation::Softmax;
        Ok(PixelSpec {
            kind: PixelKind::Focal,
            dense: target == TargetKind::Dense,
            focal_softmax: softmax,
            first_channel: first,
            weight,
            pos_weight: vec![1.0; c],
            ignore_index: labels_only_ignore(L, self.ignore_index, target)?,
            label_smoothing: 0.0,
            gamma: self.gamma,
            // MONAI drops a scalar alpha in the softmax form without background.
            alpha: self.alpha.filter(|_| !(softmax && first == 1)),
            reduction: self.reduction,
        })
    }
}

impl PixelSpec {
    /// Channels that carry a loss term.
    pub fn kept_channels(&self, shape: &Shape) -> usize {
        shape.c() - self.first_channel
    }

    /// With C = 1, every loss but cross-entropy reads labels as a binary mask.
    pub fn binary_labels(&self, shape: &Shape) -> bool {
        self.kind != PixelKind::CrossEntropy && shape.c() == 1
    }

    /// Labels are valid in `[0, label_count)`.
    pub fn label_count(&self, shape: &Shape) -> i32 {
        if self.binary_labels(shape) {
            2
        } else {
            shape.c() as i32
        }
    }

    /// Elements of the loss output.
    pub fn loss_len(&self, shape: &Shape) -> usize {
        match (self.reduction, self.kind) {
            (Reduction::None, PixelKind::CrossEntropy) => shape.pixels(),
            (Reduction::None, _) => shape.n() * self.kept_channels(shape) * shape.s(),
            _ => 1,
        }
    }

    /// The targets-only prepass runs when a normaliser depends on the targets.
    pub fn needs_prepass(&self) -> bool {
        // Cross-entropy's mean divides by the summed weight of the valid labels: the pixel count
        // (known on the host) unless some weight differs from 1 or pixels can be ignored.
        let weighted = self.weight.iter().any(|&w| w != 1.0);
        self.kind == PixelKind::BalancedBce
            || (!self.dense
                && ((self.reduction == Reduction::Mean
                    && self.kind == PixelKind::CrossEntropy
                    && weighted)
                    || (self.reduction != Reduction::None && self.ignore_index.is_some())))
    }

    /// MONAI's focal `sum` with ignore_index normalises each image by its valid pixels.
    pub fn per_image_norm(&self) -> bool {
        self.kind == PixelKind::Focal
            && self.reduction == Reduction::Sum
            && self.ignore_index.is_some()
            && !self.dense
    }

    /// The loss multiplier when it is known on the host (no prepass).
    pub fn host_loss_norm(&self, shape: &Shape) -> f32 {
        let elements = (shape.n() * self.kept_channels(shape) * shape.s()) as f64;
        let m = match (self.reduction, self.kind) {
            (Reduction::Mean, PixelKind::CrossEntropy) => 1.0 / shape.pixels() as f64,
            (Reduction::Mean, _) => 1.0 / elements,
            // MONAI's focal `sum` is a sum of spatial means.
            (Reduction::Sum, PixelKind::Focal) => 1.0 / shape.s() as f64,
            _ => 1.0,
        };
        m as f32
    }
}

/// Uniform parameters of `shaders/pixel.wgsl` (`Params` there; layout checked by a test).
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PixelParams {
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub nwg: u32,
    pub ignore_index: i32,
    pub accumulate: u32,
    pub label_smoothing: f32,
    pub gamma: f32,
    pub alpha: f32,
    pub grad_scale: f32,
    pub loss_norm: f32,
    pub weight_sum: f32,
    pub wx: u32,
    pub _pad: [u32; 3],
}

/// Minimum pixels per thread of the prepass on a software adapter (see `PixelPlan::new`).
const PREPASS_PIXELS_PER_THREAD: usize = 64;

// params, logits, targets, class_weights, grad, loss_out, scratch, status
const SLOTS: [Slot; 8] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// The GPU side of a planned pixel-wise loss.
pub(crate) struct PixelPlan {
    pub spec: PixelSpec,
    layout: wgpu::BindGroupLayout,
    prepass: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
    /// The fused pass, overwriting or adding to the gradient.
    main: Box<GradientEntry>,
    finalize: Option<wgpu::ComputePipeline>,
    weights: wgpu::Buffer,
    scratch: wgpu::Buffer,
    nwg: u32,
    wx: u32,
}

impl PixelPlan {
    pub fn new(kernels: &Kernels, spec: PixelSpec, shape: &Shape) -> Result<Self> {
        let device = kernels.device();
        let nwg = kernels.workgroups(shape.pixels());
        // The prepass grid is wx × N (one row of workgroups per image).
        let max_dim = kernels.limits().max_compute_workgroups_per_dimension;
        let wx = if spec.needs_prepass() {
            if shape.n() > max_dim as usize {
                return Err(Error::Shape(format!(
                    "{} images exceed this device's {max_dim} workgroups per dimension",
                    shape.n()
                )));
            }
            // On a software adapter each thread walks at least PREPASS_PIXELS_PER_THREAD
            // pixels: the pass reads one label per pixel, so a workgroup's closing sums would
            // otherwise cost more than its pixels (cross-entropy 2×14×64³ on lavapipe: 5 of
            // 17 ms with a thread per pixel and a workgroup sum per workgroup).
            let per_image = (crate::kernels::MAX_WORKGROUPS as usize / shape.n()).max(1);
            shape
                .s()
                .div_ceil(
                    crate::kernels::WG as usize * kernels.per_thread(PREPASS_PIXELS_PER_THREAD, 1),
                )
                .clamp(1, per_image) as u32
        } else {
            1
        };
        let reduction = match spec.reduction {
            Reduction::Mean => 0.0,
            Reduction::Sum => 1.0,
            Reduction::None => 2.0,
        };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let has_weight = spec
            .weight
            .iter()
            .chain(&spec.pos_weight)
            .any(|&w| w != 1.0);
        let constants = vec![
            ("LOSS", spec.kind as u32 as f64),
            ("HAS_WEIGHT", flag(has_weight)),
            ("DENSE", flag(spec.dense)),
            ("FOCAL_SOFTMAX", flag(spec.focal_softmax)),
            ("HAS_ALPHA", flag(spec.alpha.is_some())),
            ("HAS_IGNORE", flag(spec.ignore_index.is_some())),
            ("FIRST_CHANNEL", spec.first_channel as f64),
            ("REDUCTION", reduction),
            ("PER_IMAGE_NORM", flag(spec.per_image_norm())),
            ("PREPASS", flag(spec.needs_prepass())),
            super::cache_constant(kernels, shape.c()),
            super::focal_power_constant(
                (spec.kind == PixelKind::Focal && !spec.focal_softmax).then_some(spec.gamma),
            ),
            ("PARTIAL_SLOTS", kernels.partial_slots() as f64),
        ];
        let (layout, pipeline_layout) = kernels.layout(Family::Pixel, &layout_entries(&SLOTS));
        let pipe = |entry| kernels.pipeline(Family::Pixel, entry, &constants, &pipeline_layout);
        let prepass = if spec.needs_prepass() {
            Some((pipe("prepass")?, pipe("prepare")?))
        } else {
            None
        };
        let main = Box::new(GradientEntry::new(
            Family::Pixel,
            "main",
            &constants,
            &pipeline_layout,
        ));
        main.pipeline(kernels, false)?;
        let finalize = match spec.reduction {
            Reduction::None => None,
            _ => Some(pipe("finalize")?),
        };
        let mut w = spec.weight.clone();
        w.extend_from_slice(&spec.pos_weight);
        let weights = bind::constants(device, "segloss pixel weights", &w);
        let slots = kernels.partial_slots();
        let scratch_len = 4 + shape.n() + (3 * shape.n() * wx as usize + nwg as usize) * slots;
        let scratch = storage(
            device,
            "segloss pixel scratch",
            scratch_len,
            wgpu::BufferUsages::empty(),
        );
        kernels.check_binding("scratch", scratch.size())?;
        Ok(PixelPlan {
            spec,
            layout,
            prepass,
            main,
            finalize,
            weights,
            scratch,
            nwg,
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
        // Fetched first: an error leaves nothing recorded.
        let main = self.main.pipeline(&plan.kernels, outputs.accumulate)?;
        encoder.clear_buffer(plan.status_buffer(), 0, None);
        let shape = plan.shape();
        let spec = &self.spec;
        let device = plan.kernels.device();
        let params = PixelParams {
            n: shape.n() as u32,
            c: shape.c() as u32,
            s: shape.s() as u32,
            nwg: self.nwg,
            ignore_index: spec.ignore_index.unwrap_or(0),
            accumulate: outputs.accumulate as u32,
            label_smoothing: spec.label_smoothing,
            gamma: spec.gamma,
            alpha: spec.alpha.unwrap_or(0.0),
            grad_scale: outputs.grad_scale,
            loss_norm: spec.host_loss_norm(shape),
            weight_sum: spec.weight.iter().sum(),
            wx: self.wx,
            _pad: [0; 3],
        };
        let uniform = uniform(device, "segloss pixel params", &params);
        let resources = vec![
            uniform.as_entire_binding(),
            sized(inputs.logits, shape.numel()),
            sized(inputs.targets, plan.targets_len()),
            self.weights.as_entire_binding(),
            sized(outputs.grad, shape.numel()),
            sized(outputs.loss, plan.loss_len()),
            self.scratch.as_entire_binding(),
            plan.status_buffer().as_entire_binding(),
        ];
        let bind_group = bind_group(device, "segloss pixel", &self.layout, resources);
        let mut pass = plan.kernels.begin_pass(encoder, plan.loss().name());
        pass.set_bind_group(0, &bind_group, &[]);
        if let Some((prepass, prepare)) = &self.prepass {
            pass.set_pipeline(prepass);
            pass.dispatch_workgroups(self.wx, shape.n() as u32, 1);
            pass.set_pipeline(prepare);
            pass.dispatch_workgroups(1, 1, 1);
        }
        pass.set_pipeline(&main);
        pass.dispatch_workgroups(self.nwg, 1, 1);
        if let Some(finalize) = &self.finalize {
            pass.set_pipeline(finalize);
            pass.dispatch_workgroups(1, 1, 1);
        }
        Ok(())
    }
}
