//! Loss configurations, the registry that runs any loss by name, and [`Plan`]s that record them.

pub(crate) mod bind;
pub mod contour;
pub mod lovasz;
pub(crate) mod params;
pub mod pixel;
pub mod region;
pub mod skeleton;
pub mod topk;

use crate::error::{check_buffer, Error, Result};
use crate::kernels::Kernels;
use crate::tensor::{Inputs, Outputs, Shape, TargetKind};

pub use contour::ActiveContour;
pub use lovasz::{LovaszHinge, LovaszSoftmax};
pub use pixel::{BalancedBce, Bce, CrossEntropy, Focal};
pub use region::{
    Boundary, Combo, Dice, DiceCe, ExpLog, GeneralizedDice, HausdorffDt, RegionFocal,
    RegionOptions, SensitivitySpecificity, Tversky, UnifiedFocal, WassersteinDice, WeightType,
};
pub use skeleton::ClDice;
pub use topk::TopK;

/// Channels a pixel's kernels keep in private arrays on a software adapter, reading each logit
/// from memory once (`PIXEL_CACHE` in shaders/common/pixel_cache.wgsl; checked by a test). Plans
/// with more channels, and every plan on a GPU, read them again where needed (see
/// [`KernelOptions::software_tuning`](crate::KernelOptions)).
pub const PIXEL_CACHE: usize = 32;

/// The `CACHED` pipeline constant of the kernels that read a pixel's C channels
/// (shaders/common/pixel_cache.wgsl): whether they keep them in private arrays
/// ([`Kernels::pixel_cache`](crate::Kernels)).
pub(crate) fn cache_constant(kernels: &crate::Kernels, c: usize) -> (&'static str, f64) {
    ("CACHED", if kernels.pixel_cache(c) { 1.0 } else { 0.0 })
}

/// The largest whole-number focal γ whose power the shaders take as a product
/// (`FOCAL_POWER` in shaders/common/terms.wgsl).
pub(crate) const MAX_FOCAL_POWER: f32 = 8.0;

/// The `FOCAL_POWER` pipeline constant of a kernel with a sigmoid focal term of exponent
/// `gamma` (`None`: no such term): γ itself where it is a whole number up to
/// [`MAX_FOCAL_POWER`], else -1 (`exp(γ·log σ)`, the shader's default).
pub(crate) fn focal_power_constant(gamma: Option<f32>) -> (&'static str, f64) {
    let power = match gamma {
        Some(g) if g.fract() == 0.0 && (0.0..=MAX_FOCAL_POWER).contains(&g) => g as f64,
        _ => -1.0,
    };
    ("FOCAL_POWER", power)
}

/// How the per-element losses are combined, as the reference defines it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// The mean over the reference's denominator (valid pixels, summed class weights, ...).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: the loss output has the reference's unreduced shape, and the gradient is
    /// that of the sum of its elements.
    None,
}

impl std::str::FromStr for Reduction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            _ => Err(format!("`{s}` is not one of mean, sum, none")),
        }
    }
}

/// The activation between the logits and the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Softmax over the channel dimension.
    Softmax,
    /// Element-wise sigmoid.
    Sigmoid,
    /// None: the input already holds probabilities (region losses only).
    None,
}

impl std::str::FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "softmax" => Ok(Activation::Softmax),
            "sigmoid" => Ok(Activation::Sigmoid),
            "none" => Ok(Activation::None),
            _ => Err(format!("`{s}` is not one of softmax, sigmoid, none")),
        }
    }
}

/// Counts of bad values that only the GPU can see, read from a plan's status buffer.
///
/// The buffer holds [`Status::WORDS`] `u32` counters, zeroed at the start of every recorded call
/// and counted by the kernels: after the commands complete it describes the most recent call.
/// Engines may copy it out whenever they choose (see [`Plan::status_buffer`]); the blocking
/// helpers read it and return [`Error::BadInput`] when any count is non-zero. When a count is
/// non-zero the loss and gradient are not meaningful (bad pixels are skipped like ignored ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Labels outside `[0, C)` (`{0, 1}` for binary sigmoid losses) that are not `ignore_index`.
    pub bad_labels: u32,
    /// Logits that are NaN or infinite.
    pub nonfinite_logits: u32,
    /// Dense targets that are NaN or infinite.
    pub nonfinite_targets: u32,
}

impl Status {
    /// `u32` words in the status buffer (the last one is reserved).
    pub const WORDS: usize = 4;
    /// Word index of [`Status::bad_labels`] (`STATUS_BAD_LABEL` in WGSL).
    pub const BAD_LABEL: usize = 0;
    /// Word index of [`Status::nonfinite_logits`] (`STATUS_NONFINITE_LOGIT` in WGSL).
    pub const NONFINITE_LOGIT: usize = 1;
    /// Word index of [`Status::nonfinite_targets`] (`STATUS_NONFINITE_TARGET` in WGSL).
    pub const NONFINITE_TARGET: usize = 2;

    /// Decodes the status buffer's words.
    pub fn from_words(w: &[u32]) -> Status {
        let at = |i: usize| w.get(i).copied().unwrap_or(0);
        Status {
            bad_labels: at(Self::BAD_LABEL),
            nonfinite_logits: at(Self::NONFINITE_LOGIT),
            nonfinite_targets: at(Self::NONFINITE_TARGET),
        }
    }

    /// True when nothing bad was seen.
    pub fn is_ok(&self) -> bool {
        *self == Status::default()
    }

    /// `Ok(())`, or [`Error::BadInput`] when any count is non-zero.
    pub fn check(self) -> Result<()> {
        if self.is_ok() {
            Ok(())
        } else {
            Err(Error::BadInput(self))
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} label(s) out of range, {} non-finite logit(s), {} non-finite target(s)",
            self.bad_labels, self.nonfinite_logits, self.nonfinite_targets
        )
    }
}

/// Any registered loss: what the CLI, the tests and the benches run by name.
///
/// Adding a loss is: a config struct, a WGSL kernel (or a variant of a family's), a CPU mirror,
/// a fixture, and a line in each `match` below.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Loss {
    /// `cross-entropy`
    CrossEntropy(CrossEntropy),
    /// `bce`
    Bce(Bce),
    /// `balanced-bce`
    BalancedBce(BalancedBce),
    /// `focal`
    Focal(Focal),
    /// `dice`
    Dice(Dice),
    /// `jaccard`: [`Dice`] with MONAI's `jaccard=True`.
    Jaccard(Dice),
    /// `tversky`
    Tversky(Tversky),
    /// `focal-tversky`: each (image, class) Tversky loss to the power `gamma`, then reduced.
    FocalTversky(Tversky),
    /// `asymmetric`: Hashemi's F-beta loss, a [`Tversky`] with alpha, beta from `f_beta`.
    Asymmetric(Tversky),
    /// `generalized-dice`
    GeneralizedDice(GeneralizedDice),
    /// `log-cosh-dice`: `log(cosh(·))` of the reduced Dice loss.
    LogCoshDice(Dice),
    /// `sensitivity-specificity`
    SensitivitySpecificity(SensitivitySpecificity),
    /// `dice-ce`
    DiceCe(DiceCe),
    /// `dice-focal`
    DiceFocal(RegionFocal),
    /// `generalized-dice-focal`
    GeneralizedDiceFocal(RegionFocal),
    /// `combo`
    Combo(Combo),
    /// `exp-log`
    ExpLog(ExpLog),
    /// `wasserstein-dice`
    WassersteinDice(WassersteinDice),
    /// `unified-focal`
    UnifiedFocal(UnifiedFocal),
    /// `boundary`
    Boundary(Boundary),
    /// `hausdorff-dt`
    HausdorffDt(HausdorffDt),
    /// `log-hausdorff-dt`: `log(hausdorff-dt + 1)`.
    LogHausdorffDt(HausdorffDt),
    /// `lovasz-softmax`
    LovaszSoftmax(LovaszSoftmax),
    /// `lovasz-hinge`
    LovaszHinge(LovaszHinge),
    /// `topk`
    TopK(TopK),
    /// `active-contour`
    ActiveContour(ActiveContour),
    /// `cldice`
    ClDice(ClDice),
    /// `dice-cldice`: [`ClDice`] with `alpha`.
    DiceClDice(ClDice),
}

impl Loss {
    /// The registered names, in LOSSES.md's order.
    pub const NAMES: &'static [&'static str] = &[
        "cross-entropy",
        "bce",
        "balanced-bce",
        "focal",
        "topk",
        "dice",
        "jaccard",
        "tversky",
        "focal-tversky",
        "asymmetric",
        "generalized-dice",
        "wasserstein-dice",
        "log-cosh-dice",
        "sensitivity-specificity",
        "dice-ce",
        "dice-focal",
        "generalized-dice-focal",
        "combo",
        "exp-log",
        "unified-focal",
        "boundary",
        "hausdorff-dt",
        "log-hausdorff-dt",
        "lovasz-softmax",
        "lovasz-hinge",
        "cldice",
        "dice-cldice",
        "active-contour",
    ];

    /// The loss `name` with `key=value` parameters (LOSSES.md's names; lists comma-separated).
    /// Parameters not given take the reference's defaults.
    pub fn from_name(name: &str, params: &[(String, String)]) -> Result<Loss> {
        Ok(match name {
            "cross-entropy" => Loss::CrossEntropy(CrossEntropy::from_params(params)?),
            "bce" => Loss::Bce(Bce::from_params(params)?),
            "balanced-bce" => Loss::BalancedBce(BalancedBce::from_params(params)?),
            "focal" => Loss::Focal(Focal::from_params(params)?),
            "dice" => Loss::Dice(Dice::from_params("dice", params)?),
            "jaccard" => Loss::Jaccard(Dice::from_params("jaccard", params)?),
            "log-cosh-dice" => Loss::LogCoshDice(Dice::from_params("log-cosh-dice", params)?),
            "tversky" => Loss::Tversky(Tversky::from_params("tversky", params)?),
            "focal-tversky" => Loss::FocalTversky(Tversky::from_params("focal-tversky", params)?),
            "asymmetric" => Loss::Asymmetric(Tversky::asymmetric_from_params(params)?),
            "generalized-dice" => Loss::GeneralizedDice(GeneralizedDice::from_params(params)?),
            "sensitivity-specificity" => {
                Loss::SensitivitySpecificity(SensitivitySpecificity::from_params(params)?)
            }
            "dice-ce" => Loss::DiceCe(DiceCe::from_params(params)?),
            "combo" => Loss::Combo(Combo::from_params(params)?),
            "exp-log" => Loss::ExpLog(ExpLog::from_params(params)?),
            "wasserstein-dice" => Loss::WassersteinDice(WassersteinDice::from_params(params)?),
            "unified-focal" => Loss::UnifiedFocal(UnifiedFocal::from_params(params)?),
            "boundary" => Loss::Boundary(Boundary::from_params(params)?),
            "lovasz-softmax" => Loss::LovaszSoftmax(LovaszSoftmax::from_params(params)?),
            "lovasz-hinge" => Loss::LovaszHinge(LovaszHinge::from_params(params)?),
            "topk" => Loss::TopK(TopK::from_params(params)?),
            "active-contour" => Loss::ActiveContour(ActiveContour::from_params(params)?),
            "cldice" => Loss::ClDice(ClDice::from_params("cldice", params)?),
            "dice-cldice" => Loss::DiceClDice(ClDice::from_params("dice-cldice", params)?),
            "hausdorff-dt" => Loss::HausdorffDt(HausdorffDt::from_params("hausdorff-dt", params)?),
            "log-hausdorff-dt" => {
                Loss::LogHausdorffDt(HausdorffDt::from_params("log-hausdorff-dt", params)?)
            }
            "dice-focal" => Loss::DiceFocal(RegionFocal::from_params("dice-focal", params)?),
            "generalized-dice-focal" => Loss::GeneralizedDiceFocal(RegionFocal::from_params(
                "generalized-dice-focal",
                params,
            )?),
            _ => {
                return Err(Error::UnknownLoss {
                    name: name.to_string(),
                    known: Self::NAMES.join(", "),
                })
            }
        })
    }

    /// Parses `key=value` strings, then [`Loss::from_name`].
    pub fn parse(name: &str, params: &[&str]) -> Result<Loss> {
        let mut kv = Vec::new();
        for p in params {
            let (k, v) = p.split_once('=').ok_or_else(|| Error::Parameter {
                loss: "?",
                name: p.to_string(),
                message: "expected key=value".into(),
            })?;
            kv.push((k.trim().to_string(), v.trim().to_string()));
        }
        Loss::from_name(name, &kv)
    }

    /// The registered name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::CrossEntropy(_) => "cross-entropy",
            Loss::Bce(_) => "bce",
            Loss::BalancedBce(_) => "balanced-bce",
            Loss::Focal(_) => "focal",
            Loss::Dice(_) => "dice",
            Loss::Jaccard(_) => "jaccard",
            Loss::Tversky(_) => "tversky",
            Loss::FocalTversky(_) => "focal-tversky",
            Loss::Asymmetric(_) => "asymmetric",
            Loss::GeneralizedDice(_) => "generalized-dice",
            Loss::LogCoshDice(_) => "log-cosh-dice",
            Loss::SensitivitySpecificity(_) => "sensitivity-specificity",
            Loss::DiceCe(_) => "dice-ce",
            Loss::DiceFocal(_) => "dice-focal",
            Loss::GeneralizedDiceFocal(_) => "generalized-dice-focal",
            Loss::Combo(_) => "combo",
            Loss::ExpLog(_) => "exp-log",
            Loss::WassersteinDice(_) => "wasserstein-dice",
            Loss::UnifiedFocal(_) => "unified-focal",
            Loss::Boundary(_) => "boundary",
            Loss::HausdorffDt(_) => "hausdorff-dt",
            Loss::LogHausdorffDt(_) => "log-hausdorff-dt",
            Loss::LovaszSoftmax(_) => "lovasz-softmax",
            Loss::LovaszHinge(_) => "lovasz-hinge",
            Loss::TopK(_) => "topk",
            Loss::ActiveContour(_) => "active-contour",
            Loss::ClDice(_) => "cldice",
            Loss::DiceClDice(_) => "dice-cldice",
        }
    }

    /// The loss's reduction.
    pub fn reduction(&self) -> Reduction {
        match self {
            Loss::CrossEntropy(l) => l.reduction,
            Loss::Bce(l) => l.reduction,
            Loss::BalancedBce(l) => l.reduction,
            Loss::Focal(l) => l.reduction,
            Loss::Dice(l) | Loss::Jaccard(l) | Loss::LogCoshDice(l) => l.options.reduction,
            Loss::Tversky(l) | Loss::FocalTversky(l) | Loss::Asymmetric(l) => l.options.reduction,
            Loss::GeneralizedDice(l) => l.options.reduction,
            Loss::SensitivitySpecificity(l) => l.reduction,
            Loss::DiceCe(l) => l.dice.options.reduction,
            Loss::DiceFocal(l) | Loss::GeneralizedDiceFocal(l) => l.dice.options.reduction,
            Loss::Combo(_) | Loss::ExpLog(_) | Loss::UnifiedFocal(_) => Reduction::Mean,
            Loss::WassersteinDice(l) => l.reduction,
            Loss::Boundary(l) => l.reduction,
            Loss::HausdorffDt(l) | Loss::LogHausdorffDt(l) => l.reduction,
            Loss::LovaszSoftmax(_) | Loss::LovaszHinge(_) | Loss::TopK(_) => Reduction::Mean,
            Loss::ActiveContour(_) => Reduction::Sum,
            Loss::ClDice(l) | Loss::DiceClDice(l) => l.reduction,
        }
    }

    /// The description shared by the CPU reference and the GPU kernels, validated against
    /// `shape` and `target`.
    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<Spec> {
        let name = self.name();
        Ok(match self {
            Loss::CrossEntropy(l) => Spec::Pixel(l.spec(shape, target)?),
            Loss::Bce(l) => Spec::Pixel(l.spec(shape, target)?),
            Loss::BalancedBce(l) => Spec::Pixel(l.spec(shape, target)?),
            Loss::Focal(l) => Spec::Pixel(l.spec(shape, target)?),
            Loss::Dice(l) | Loss::Jaccard(l) | Loss::LogCoshDice(l) => {
                Spec::Region(l.spec(name, shape, target)?)
            }
            Loss::Tversky(l) | Loss::FocalTversky(l) | Loss::Asymmetric(l) => {
                Spec::Region(l.spec(name, shape, target)?)
            }
            Loss::GeneralizedDice(l) => Spec::Region(l.spec(shape, target)?),
            Loss::SensitivitySpecificity(l) => Spec::Region(l.spec(shape, target)?),
            Loss::DiceCe(l) => Spec::Region(l.spec(shape, target)?),
            Loss::Combo(l) => Spec::Region(l.spec(shape, target)?),
            Loss::ExpLog(l) => Spec::Region(l.spec(shape, target)?),
            Loss::WassersteinDice(l) => Spec::Region(l.spec(shape, target)?),
            Loss::UnifiedFocal(l) => Spec::Region(l.spec(shape, target)?),
            Loss::Boundary(l) => Spec::Region(l.spec(shape, target)?),
            Loss::HausdorffDt(l) | Loss::LogHausdorffDt(l) => {
                Spec::Region(l.spec(name, shape, target)?)
            }
            Loss::DiceFocal(l) | Loss::GeneralizedDiceFocal(l) => {
                Spec::Region(l.spec(name, shape, target)?)
            }
            Loss::LovaszSoftmax(l) => Spec::Lovasz(l.spec(shape, target)?),
            Loss::LovaszHinge(l) => Spec::Lovasz(l.spec(shape, target)?),
            Loss::TopK(l) => Spec::Topk(l.spec(shape, target)?),
            Loss::ActiveContour(l) => {
                l.check(shape)?;
                Spec::Contour(l.clone())
            }
            Loss::ClDice(l) | Loss::DiceClDice(l) => Spec::Skeleton(l.spec(name, shape, target)?),
        })
    }

    /// Checks the loss against a shape and target kind, as planning would.
    pub fn validate(&self, shape: &Shape, target: TargetKind) -> Result<()> {
        self.spec(shape, target).map(|_| ())
    }

    /// Elements of the loss output: 1 for `mean`/`sum`, the unreduced shape for `none`.
    pub fn loss_len(&self, shape: &Shape, target: TargetKind) -> Result<usize> {
        Ok(self.spec(shape, target)?.loss_len(shape))
    }

    /// The shape of the loss output: `[]` for `mean`/`sum`, the reference's unreduced shape for
    /// `none` (`[N, *S]` for cross-entropy, `[N, C', *S]` for the other pixel-wise losses,
    /// `[N, C']` or `[1, C']` with `batch` for region losses (MONAI adds trailing ones),
    /// `[N]` for generalized-dice, `[N, C', *S]` for `dice-focal` and `generalized-dice-focal`).
    pub fn loss_shape(&self, shape: &Shape, target: TargetKind) -> Result<Vec<usize>> {
        let spec = self.spec(shape, target)?;
        Ok(match &spec {
            _ if spec.loss_len(shape) == 1 && !spec.unreduced() => vec![],
            Spec::Lovasz(_) | Spec::Topk(_) | Spec::Contour(_) => vec![],
            Spec::Skeleton(_) => vec![shape.n()],
            Spec::Pixel(p) if p.kind == pixel::PixelKind::CrossEntropy => {
                [shape.n()].into_iter().chain(shape.spatial()).collect()
            }
            Spec::Pixel(p) => [shape.n(), p.kept_channels(shape)]
                .into_iter()
                .chain(shape.spatial())
                .collect(),
            Spec::Region(r) if r.pix != region::PixTerm::None => [shape.n(), r.kept(shape)]
                .into_iter()
                .chain(shape.spatial())
                .collect(),
            Spec::Region(r)
                if matches!(
                    r.kind,
                    region::RegionKind::GeneralizedDice | region::RegionKind::Wasserstein
                ) =>
            {
                vec![r.segments(shape)]
            }
            Spec::Region(r) => vec![r.segments(shape), r.kept(shape)],
        })
    }
}

/// A validated loss description, by kernel family.
#[derive(Clone, Debug)]
pub(crate) enum Spec {
    Pixel(pixel::PixelSpec),
    Region(region::RegionSpec),
    Lovasz(lovasz::LovaszSpec),
    Topk(topk::TopkSpec),
    Contour(contour::ActiveContour),
    Skeleton(skeleton::ClDiceSpec),
}

impl Spec {
    pub fn loss_len(&self, shape: &Shape) -> usize {
        match self {
            Spec::Pixel(p) => p.loss_len(shape),
            Spec::Region(r) => r.loss_len(shape),
            Spec::Lovasz(_) | Spec::Topk(_) | Spec::Contour(_) => 1,
            Spec::Skeleton(s) if s.loss.reduction == Reduction::None => shape.n(),
            Spec::Skeleton(_) => 1,
        }
    }

    fn unreduced(&self) -> bool {
        match self {
            Spec::Pixel(p) => p.reduction == Reduction::None,
            Spec::Region(r) => r.reduction == Reduction::None,
            Spec::Lovasz(_) | Spec::Topk(_) | Spec::Contour(_) => false,
            Spec::Skeleton(s) => s.loss.reduction == Reduction::None,
        }
    }
}

/// A loss planned for one shape and target kind on one device: it owns the small scratch, weight
/// and status buffers, and records the loss's passes into a caller's command encoder.
///
/// Planning validates the loss's parameters against the shape and compiles (or fetches from the
/// cache) its pipelines; recording validates the caller's buffers. Recording never submits,
/// never blocks and never reads back.
pub struct Plan {
    pub(crate) kernels: Kernels,
    loss: Loss,
    shape: Shape,
    target: TargetKind,
    status: wgpu::Buffer,
    inner: PlanInner,
}

enum PlanInner {
    Pixel(pixel::PixelPlan),
    Region(Box<region::RegionPlan>),
    Lovasz(Box<lovasz::LovaszPlan>),
    Topk(Box<topk::TopkPlan>),
    Contour(Box<contour::ContourPlan>),
    Skeleton(Box<skeleton::SkeletonPlan>),
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("loss", &self.loss)
            .field("shape", &self.shape)
            .field("target", &self.target)
            .finish()
    }
}

impl Kernels {
    /// Plans `loss` for logits of `shape` and targets of kind `target`.
    pub fn plan(&self, loss: &Loss, shape: Shape, target: TargetKind) -> Result<Plan> {
        let spec = loss.spec(&shape, target)?;
        // Every tensor is bound whole: refuse what one storage binding cannot hold.
        let bytes = |elems: usize| elems as u64 * 4;
        self.check_binding("logits", bytes(shape.numel()))?;
        self.check_binding("targets", bytes(target.len(&shape)))?;
        self.check_binding("loss", bytes(spec.loss_len(&shape)))?;
        let inner = match spec {
            Spec::Pixel(p) => PlanInner::Pixel(pixel::PixelPlan::new(self, p, &shape)?),
            Spec::Region(r) => {
                PlanInner::Region(Box::new(region::RegionPlan::new(self, r, &shape)?))
            }
            Spec::Lovasz(l) => {
                PlanInner::Lovasz(Box::new(lovasz::LovaszPlan::new(self, l, &shape)?))
            }
            Spec::Topk(t) => PlanInner::Topk(Box::new(topk::TopkPlan::new(self, t, &shape)?)),
            Spec::Contour(c) => PlanInner::Contour(Box::new(contour::ContourPlan::new(
                self, c, &shape, target,
            )?)),
            Spec::Skeleton(k) => PlanInner::Skeleton(Box::new(skeleton::SkeletonPlan::new(
                self, k, &shape, target,
            )?)),
        };
        let status = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("segloss status"),
            size: (Status::WORDS * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Plan {
            kernels: self.clone(),
            loss: loss.clone(),
            shape,
            target,
            status,
            inner,
        })
    }
}

impl Plan {
    /// Records the loss and its gradient into `encoder`.
    ///
    /// Validates every buffer (usage `STORAGE`, size, no aliasing between an output and any other
    /// binding) before recording anything: on error the encoder is untouched.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        outputs: &Outputs,
    ) -> Result<()> {
        self.check_buffers(inputs, outputs)?;
        match &self.inner {
            PlanInner::Pixel(p) => p.record(self, encoder, inputs, outputs)?,
            PlanInner::Region(r) => r.record(self, encoder, inputs, outputs, None)?,
            PlanInner::Lovasz(l) => {
                encoder.clear_buffer(&self.status, 0, None);
                l.record(self, encoder, inputs, outputs)?;
            }
            PlanInner::Topk(t) => {
                encoder.clear_buffer(&self.status, 0, None);
                t.record(self, encoder, inputs, outputs)?;
            }
            PlanInner::Contour(c) => {
                encoder.clear_buffer(&self.status, 0, None);
                c.record(self, encoder, inputs, outputs)?;
            }
            PlanInner::Skeleton(k) => {
                encoder.clear_buffer(&self.status, 0, None);
                k.record(self, encoder, inputs, outputs)?;
            }
        }
        Ok(())
    }

    /// Split phase, step 1 (region losses): records the per-(segment, class) statistics into
    /// `stats` ([`Plan::stats_len`] f32, `STORAGE`). Between this and
    /// [`Plan::record_backward`] a data-parallel caller may sum `stats` element-wise across
    /// devices (its own all-reduce): with `batch = true` every device then computes the loss and
    /// gradient of the global batch for its own pixels.
    ///
    /// Layout: `[segment][class 0..C, then one extra slot][4]` f32, where segment is the image
    /// (or the whole batch with `batch = true`); the extra slot holds the valid-pixel count.
    /// Supported by every region loss (`dice`, `jaccard`, `tversky`, `focal-tversky`,
    /// `asymmetric`, `generalized-dice`, `log-cosh-dice`, `sensitivity-specificity`).
    pub fn record_statistics(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        stats: &wgpu::Buffer,
    ) -> Result<()> {
        let r = self.region("record_statistics")?;
        self.check_inputs(inputs)?;
        self.check_stats(stats, inputs)?;
        r.record_statistics(self, encoder, inputs, stats, None)
    }

    /// Split phase, step 2 (region losses): the loss and gradient from `stats` (as written by
    /// [`Plan::record_statistics`], possibly summed across devices).
    pub fn record_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        stats: &wgpu::Buffer,
        outputs: &Outputs,
    ) -> Result<()> {
        let r = self.region("record_backward")?;
        self.check_buffers(inputs, outputs)?;
        self.check_stats(stats, inputs)?;
        for (name, b) in [("loss", outputs.loss), ("grad", outputs.grad)] {
            if b == stats {
                return Err(Error::Buffer {
                    name,
                    message: "is the same buffer as `stats`".into(),
                });
            }
        }
        r.record_backward(self, encoder, inputs, stats, outputs, None)
    }

    /// f32 elements of a distance loss's map (`[N, C, *S]`); 0 for the other losses.
    pub fn distance_map_len(&self) -> usize {
        match &self.inner {
            PlanInner::Region(r) if r.map.is_some() => self.shape.numel(),
            _ => 0,
        }
    }

    /// `boundary` only: records the signed distance map of `targets` into `map`
    /// ([`Plan::distance_map_len`] f32, `STORAGE`). The map depends on the targets alone, so a
    /// training loop over fixed targets computes it once and passes it to
    /// [`Plan::record_with_map`] at every step.
    pub fn record_target_map(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        targets: &wgpu::Buffer,
        map: &wgpu::Buffer,
    ) -> Result<()> {
        let (_, own) = self.boundary_map("record_target_map")?;
        self.check_map(map)?;
        let t = self.targets_len() as u64 * 4;
        check_buffer("targets", targets, wgpu::BufferUsages::STORAGE, t)?;
        if targets == map {
            return Err(Error::Buffer {
                name: "map",
                message: "is the same buffer as `targets`".into(),
            });
        }
        own.record(&self.kernels, encoder, None, targets, Some(map));
        Ok(())
    }

    /// `boundary` only: the loss and gradient with a map made by [`Plan::record_target_map`].
    pub fn record_with_map(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        map: &wgpu::Buffer,
        outputs: &Outputs,
    ) -> Result<()> {
        let (r, _) = self.boundary_map("record_with_map")?;
        self.check_buffers(inputs, outputs)?;
        self.check_map(map)?;
        for (name, b) in [
            ("logits", inputs.logits),
            ("targets", inputs.targets),
            ("loss", outputs.loss),
            ("grad", outputs.grad),
        ] {
            if b == map {
                return Err(Error::Buffer {
                    name,
                    message: "is the same buffer as `map`".into(),
                });
            }
        }
        r.record(self, encoder, inputs, outputs, Some(map))
    }

    fn boundary_map(&self, what: &str) -> Result<(&region::RegionPlan, &crate::distance::LossMap)> {
        match &self.inner {
            PlanInner::Region(r) if r.spec.kind == region::RegionKind::Boundary => {
                Ok((r, r.map.as_ref().expect("boundary plans have a map")))
            }
            _ => Err(Error::Target {
                loss: self.loss.name(),
                message: format!("{what}: only the boundary loss takes a precomputed map"),
            }),
        }
    }

    fn check_map(&self, map: &wgpu::Buffer) -> Result<()> {
        let bytes = self.distance_map_len() as u64 * 4;
        check_buffer("map", map, wgpu::BufferUsages::STORAGE, bytes)
    }

    /// f32 elements of the statistics buffer of the split phase (0 for losses without one).
    pub fn stats_len(&self) -> usize {
        match &self.inner {
            PlanInner::Pixel(_)
            | PlanInner::Lovasz(_)
            | PlanInner::Topk(_)
            | PlanInner::Contour(_)
            | PlanInner::Skeleton(_) => 0,
            PlanInner::Region(r) => r.spec.stats_len(&self.shape),
        }
    }

    fn region(&self, what: &str) -> Result<&region::RegionPlan> {
        match &self.inner {
            PlanInner::Region(r) => Ok(r),
            PlanInner::Pixel(_)
            | PlanInner::Lovasz(_)
            | PlanInner::Topk(_)
            | PlanInner::Contour(_)
            | PlanInner::Skeleton(_) => Err(Error::Target {
                loss: self.loss.name(),
                message: format!("{what}: only region losses have a split phase"),
            }),
        }
    }

    fn check_stats(&self, stats: &wgpu::Buffer, inputs: &Inputs) -> Result<()> {
        let bytes = self.stats_len() as u64 * 4;
        check_buffer("stats", stats, wgpu::BufferUsages::STORAGE, bytes)?;
        if stats == inputs.logits || stats == inputs.targets {
            return Err(Error::Buffer {
                name: "stats",
                message: "is the same buffer as an input".into(),
            });
        }
        Ok(())
    }

    fn check_inputs(&self, inputs: &Inputs) -> Result<()> {
        let f = 4u64;
        for (name, buf, bytes) in [
            ("logits", inputs.logits, self.shape.numel() as u64 * f),
            ("targets", inputs.targets, self.targets_len() as u64 * f),
        ] {
            check_buffer(name, buf, wgpu::BufferUsages::STORAGE, bytes)?;
        }
        Ok(())
    }

    /// The planned loss.
    pub fn loss(&self) -> &Loss {
        &self.loss
    }
    /// The planned shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// The planned target kind.
    pub fn target_kind(&self) -> TargetKind {
        self.target
    }
    /// Elements of the loss output: 1 for `mean`/`sum`, the unreduced shape for `none`.
    pub fn loss_len(&self) -> usize {
        match &self.inner {
            PlanInner::Pixel(p) => p.spec.loss_len(&self.shape),
            PlanInner::Region(r) => r.spec.loss_len(&self.shape),
            PlanInner::Lovasz(_) | PlanInner::Topk(_) | PlanInner::Contour(_) => 1,
            PlanInner::Skeleton(_) => self.loss.loss_len(&self.shape, self.target).unwrap_or(1),
        }
    }
    /// Elements of the targets buffer.
    pub fn targets_len(&self) -> usize {
        self.target.len(&self.shape)
    }
    /// The status buffer: [`Status::WORDS`] `u32` counters of the most recently recorded call
    /// (usages `STORAGE | COPY_SRC | COPY_DST`). Decode with [`Status::from_words`].
    pub fn status_buffer(&self) -> &wgpu::Buffer {
        &self.status
    }

    fn check_buffers(&self, inputs: &Inputs, outputs: &Outputs) -> Result<()> {
        let f = 4u64;
        let need = [
            ("logits", inputs.logits, self.shape.numel() as u64 * f),
            ("targets", inputs.targets, self.targets_len() as u64 * f),
            ("loss", outputs.loss, self.loss_len() as u64 * f),
            ("grad", outputs.grad, self.shape.numel() as u64 * f),
        ];
        for (name, buf, bytes) in need {
            check_buffer(name, buf, wgpu::BufferUsages::STORAGE, bytes)?;
            self.kernels.check_binding(name, bytes)?;
        }
        // A buffer written by the kernels may not be bound a second time in the same pass.
        for (i, (a, ab, _)) in need.iter().enumerate() {
            for (b, bb, _) in need.iter().skip(i + 1) {
                let writes = matches!(*a, "loss" | "grad") || matches!(*b, "loss" | "grad");
                if writes && ab == bb {
                    return Err(Error::Buffer {
                        name: a,
                        message: format!("is the same buffer as `{b}`; outputs need their own"),
                    });
                }
            }
        }
        if !outputs.grad_scale.is_finite() {
            return Err(Error::Buffer {
                name: "grad",
                message: format!("grad_scale {} is not finite", outputs.grad_scale),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::focal_power_constant;

    #[test]
    fn the_focal_power_is_whole_gammas_up_to_the_limit() {
        let power = |g| focal_power_constant(g).1;
        assert_eq!(power(Some(2.0)), 2.0);
        assert_eq!(power(Some(0.0)), 0.0);
        assert_eq!(power(Some(8.0)), 8.0);
        for g in [0.5, 2.5, 9.0, 1e9] {
            assert_eq!(power(Some(g)), -1.0, "gamma {g}");
        }
        assert_eq!(power(None), -1.0);
    }
}
