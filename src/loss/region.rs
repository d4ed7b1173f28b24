//! Region losses: Dice and its family, from per-(image, class) statistics.
//!
//! Two reads of the logits (`shaders/region.wgsl`): the statistics pass, then — after a small
//! pass that turns the statistics into the loss and per-(image, class) gradient coefficients —
//! the gradient pass. The statistics are exposed ([`crate::Plan::record_statistics`],
//! [`crate::Plan::record_backward`]) so that data-parallel training can all-reduce them between
//! the two. CPU mirror: `src/cpu/region.rs`.

use crate::distance::{LossMap, LossMapSpec, MapKind};
use crate::error::{Error, Result};
use crate::kernels::{GradientEntry, Kernels, MAX_WORKGROUPS, WG};
use crate::loss::bind::{self, bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::loss::params::ParamReader;
use crate::loss::{Activation, Plan, Reduction};
use crate::shader::Family;
use crate::tensor::{Inputs, Outputs, Shape, TargetKind};

/// Options shared by the Dice family (MONAI's names and defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionOptions {
    /// Keep channel 0 in the loss (the activation still sees every channel).
    pub include_background: bool,
    /// Added to the numerator.
    pub smooth_nr: f32,
    /// Added to the denominator.
    pub smooth_dr: f32,
    /// Statistics over the whole batch instead of per image.
    pub batch: bool,
    /// MONAI's `soft_label`: the soft-label form of tp = (Σp + Σg - Σ|p - g|)/2.
    pub soft_label: bool,
    /// Label value to skip (labels only): the pixel counts in no statistic.
    pub ignore_index: Option<i32>,
    /// Reduction over (image, class) items; `none` gives `[N, C']` (`[1, C']` with `batch`).
    pub reduction: Reduction,
    /// `None`: softmax for C > 1, sigmoid for C = 1 (LOSSES.md).
    pub activation: Option<Activation>,
}

impl Default for RegionOptions {
    fn default() -> Self {
        RegionOptions {
            include_background: true,
            smooth_nr: 1e-5,
            smooth_dr: 1e-5,
            batch: false,
            soft_label: false,
            ignore_index: None,
            reduction: Reduction::Mean,
            activation: None,
        }
    }
}

const COMMON: &[&str] = &[
    "include_background",
    "smooth_nr",
    "smooth_dr",
    "batch",
    "soft_label",
    "ignore_index",
    "reduction",
    "activation",
];

fn known(extra: &[&'static str]) -> Vec<&'static str> {
    COMMON.iter().chain(extra).copied().collect()
}

impl RegionOptions {
    fn read(r: &ParamReader) -> Result<Self> {
        let d = Self::default();
        Ok(RegionOptions {
            include_background: r.bool("include_background", d.include_background)?,
            smooth_nr: r.f32("smooth_nr", d.smooth_nr)?,
            smooth_dr: r.f32("smooth_dr", d.smooth_dr)?,
            batch: r.bool("batch", d.batch)?,
            soft_label: r.bool("soft_label", d.soft_label)?,
            ignore_index: r.ignore_index(None)?,
            reduction: r.reduction()?,
            activation: r.parsed_opt("activation")?,
        })
    }
}

/// `dice` (`monai.losses.DiceLoss`), also `jaccard` and `log-cosh-dice` (see [`crate::Loss`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dice {
    /// Shared options.
    pub options: RegionOptions,
    /// Use p² and g² in the denominator statistics.
    pub squared_pred: bool,
    /// Per kept class (C, or C-1 without background), or one value for all; non-negative.
    pub weight: Option<Vec<f32>>,
}

/// `tversky` (`monai.losses.TverskyLoss`); also the base of `focal-tversky` and `asymmetric`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tversky {
    /// Shared options.
    pub options: RegionOptions,
    /// Weight of false positives.
    pub alpha: f32,
    /// Weight of false negatives.
    pub beta: f32,
    /// Exponent applied to each (image, class) Tversky loss: 1 for `tversky`, 0.75 by default for
    /// `focal-tversky`.
    pub gamma: f32,
}

impl Default for Tversky {
    fn default() -> Self {
        Tversky {
            options: RegionOptions::default(),
            alpha: 0.5,
            beta: 0.5,
            gamma: 1.0,
        }
    }
}

/// `generalized-dice` (`monai.losses.GeneralizedDiceLoss`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GeneralizedDice {
    /// Shared options (`ignore_index` is this crate's extension).
    pub options: RegionOptions,
    /// Class weights from the target mass.
    pub w_type: WeightType,
}

/// `w_type` of [`GeneralizedDice`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightType {
    /// `1 / (Σg)²`
    #[default]
    Square,
    /// `1 / Σg`
    Simple,
    /// `1`
    Uniform,
}

impl std::str::FromStr for WeightType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "square" => Ok(WeightType::Square),
            "simple" => Ok(WeightType::Simple),
            "uniform" => Ok(WeightType::Uniform),
            _ => Err(format!("`{s}` is not one of square, simple, uniform")),
        }
    }
}

/// `sensitivity-specificity` (Brosch 2015, LOSSES.md): per (image, class), with `e = (g - p)²`,
/// `r·Σ(e·g)/(Σg + smooth) + (1 - r)·Σ(e·(1-g))/(Σ(1-g) + smooth)`, mean over the items.
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivitySpecificity {
    /// Weight of the sensitivity term.
    pub r: f32,
    /// Added to both denominators.
    pub smooth: f32,
    /// Keep channel 0.
    pub include_background: bool,
    /// Statistics over the whole batch.
    pub batch: bool,
    /// Label value to skip (labels only).
    pub ignore_index: Option<i32>,
    /// `None`: softmax for C > 1, sigmoid for C = 1.
    pub activation: Option<Activation>,
    /// Reduction over the (image, class) items (LOSSES.md: mean); `none` gives `[N, C']`.
    pub reduction: Reduction,
}

impl Default for SensitivitySpecificity {
    fn default() -> Self {
        SensitivitySpecificity {
            r: 0.1,
            smooth: 1.0,
            include_background: true,
            batch: false,
            ignore_index: None,
            activation: None,
            reduction: Reduction::Mean,
        }
    }
}

/// `dice-ce` (`monai.losses.DiceCELoss`): `lambda_dice · dice + lambda_ce · cross-entropy`, the
/// cross-entropy on a softmax of the logits (BCE with `pos_weight = weight` when C = 1) computed
/// inside the Dice kernel's gradient pass.
#[derive(Clone, Debug, PartialEq)]
pub struct DiceCe {
    /// The Dice part (its `weight` is ignored: see [`DiceCe::weight`]).
    pub dice: Dice,
    /// Per class (length C): the cross-entropy's weight; the Dice part uses the kept classes'.
    pub weight: Option<Vec<f32>>,
    /// Cross-entropy label smoothing in [0, 1].
    pub label_smoothing: f32,
    /// Weight of the Dice part.
    pub lambda_dice: f32,
    /// Weight of the cross-entropy part.
    pub lambda_ce: f32,
}

impl Default for DiceCe {
    fn default() -> Self {
        DiceCe {
            dice: Dice::default(),
            weight: None,
            label_smoothing: 0.0,
            lambda_dice: 1.0,
            lambda_ce: 1.0,
        }
    }
}

/// `dice-focal` (`monai.losses.DiceFocalLoss`) and `generalized-dice-focal`
/// (`monai.losses.GeneralizedDiceFocalLoss`): a region term plus MONAI's sigmoid focal loss on
/// the logits, computed inside the region kernel's gradient pass.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionFocal {
    /// The region part: [`Dice`] options for `dice-focal`.
    pub dice: Dice,
    /// The region part for `generalized-dice-focal`.
    pub generalized: Option<GeneralizedDice>,
    /// Focal exponent, >= 0.
    pub gamma: f32,
    /// Focal alpha in [0, 1].
    pub alpha: Option<f32>,
    /// Per kept class, or one value: the focal weight (and, for `dice-focal`, the Dice weight).
    pub weight: Option<Vec<f32>>,
    /// Weight of the region part (`lambda_dice` or `lambda_gdl`).
    pub lambda_region: f32,
    /// Weight of the focal part.
    pub lambda_focal: f32,
}

/// `combo` (Taghanaki 2019, LOSSES.md), on an element-wise sigmoid:
/// `alpha·mean[-(ce_ratio·t·log p + (1-ce_ratio)(1-t)·log(1-p))] - (1-alpha)·Dice`, with
/// `Dice = (2Σpt + smooth)/(Σp + Σt + smooth)` over every element of the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Combo {
    /// Weight of the BCE term (the Dice term gets `1 - alpha`).
    pub alpha: f32,
    /// Weight of the positive part of the BCE term.
    pub ce_ratio: f32,
    /// Dice smoothing.
    pub smooth: f32,
    /// Label value to skip (labels only).
    pub ignore_index: Option<i32>,
}

impl Default for Combo {
    fn default() -> Self {
        Combo {
            alpha: 0.5,
            ce_ratio: 0.5,
            smooth: 1.0,
            ignore_index: None,
        }
    }
}

/// `exp-log` (Wong 2018, LOSSES.md), labels, softmax:
/// `w_dice·mean_c[(-ln Dice_c)^gamma_dice] + w_ce·mean_i[w_{y_i}·(-ln p_{i,y_i})^gamma_ce]`,
/// Dice per class over the batch, `w_l = (Σ_k f_k / f_l)^0.5` from the class counts (constants).
#[derive(Clone, Debug, PartialEq)]
pub struct ExpLog {
    /// Weight of the Dice term.
    pub w_dice: f32,
    /// Weight of the cross-entropy term.
    pub w_ce: f32,
    /// Exponent of the Dice term.
    pub gamma_dice: f32,
    /// Exponent of the cross-entropy term.
    pub gamma_ce: f32,
    /// Dice smoothing.
    pub smooth: f32,
    /// Label value to skip.
    pub ignore_index: Option<i32>,
}

impl Default for ExpLog {
    fn default() -> Self {
        ExpLog {
            w_dice: 0.8,
            w_ce: 0.2,
            gamma_dice: 0.3,
            gamma_ce: 0.3,
            smooth: 1.0,
            ignore_index: None,
        }
    }
}

impl Combo {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new(
            "combo",
            &["alpha", "ce_ratio", "smooth", "ignore_index"],
            items,
        )?;
        let d = Self::default();
        Ok(Combo {
            alpha: r.f32("alpha", d.alpha)?,
            ce_ratio: r.f32("ce_ratio", d.ce_ratio)?,
            smooth: r.f32("smooth", d.smooth)?,
            ignore_index: r.ignore_index(None)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        const L: &str = "combo";
        for (name, v) in [("alpha", self.alpha), ("ce_ratio", self.ce_ratio)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(param_err(L, name, format!("{v} is outside [0, 1]")));
            }
        }
        let o = RegionOptions {
            smooth_nr: self.smooth,
            smooth_dr: self.smooth,
            batch: true,
            ignore_index: self.ignore_index,
            activation: Some(Activation::Sigmoid),
            ..RegionOptions::default()
        };
        let mut s = RegionSpec::base(L, RegionKind::Combo, &o, shape, target)?;
        s.alpha = self.alpha;
        s.beta = self.ce_ratio;
        s.pix = PixTerm::Combo;
        s.lambda_pixel = self.alpha;
        Ok(s)
    }
}

impl ExpLog {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let known = [
            "w_dice",
            "w_ce",
            "gamma_dice",
            "gamma_ce",
            "smooth",
            "ignore_index",
        ];
        let r = ParamReader::new("exp-log", &known, items)?;
        let d = Self::default();
        Ok(ExpLog {
            w_dice: r.f32("w_dice", d.w_dice)?,
            w_ce: r.f32("w_ce", d.w_ce)?,
            gamma_dice: r.f32("gamma_dice", d.gamma_dice)?,
            gamma_ce: r.f32("gamma_ce", d.gamma_ce)?,
            smooth: r.f32("smooth", d.smooth)?,
            ignore_index: r.ignore_index(None)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        const L: &str = "exp-log";
        for (name, v) in [
            ("w_dice", self.w_dice),
            ("w_ce", self.w_ce),
            ("gamma_dice", self.gamma_dice),
            ("gamma_ce", self.gamma_ce),
        ] {
            check_nonneg(L, name, v)?;
        }
        if target != TargetKind::Labels || shape.c() < 2 {
            return Err(Error::Target {
                loss: L,
                message: "needs label targets and at least 2 classes (softmax)".into(),
            });
        }
        let o = RegionOptions {
            smooth_nr: self.smooth,
            smooth_dr: self.smooth,
            batch: true,
            ignore_index: self.ignore_index,
            activation: Some(Activation::Softmax),
            ..RegionOptions::default()
        };
        let mut s = RegionSpec::base(L, RegionKind::ExpLog, &o, shape, target)?;
        s.alpha = self.w_dice;
        s.gamma = self.gamma_dice;
        s.pixel_gamma = self.gamma_ce;
        s.pix = PixTerm::ExpLog;
        s.lambda_pixel = self.w_ce;
        Ok(s)
    }
}

/// `wasserstein-dice` (`monai.losses.GeneralizedWassersteinDiceLoss`, Fidon 2017): labels,
/// softmax; the distance matrix is divided by its maximum (as MONAI) when that is not 1.
#[derive(Clone, Debug, PartialEq)]
pub struct WassersteinDice {
    /// C × C distances between classes, row-major; non-negative.
    pub dist_matrix: Vec<f32>,
    /// `default` (class 0 weighs 0, others 1) or `GDL` (1 / (class pixels + 1)).
    pub gdl_weighting: bool,
    /// Added to the numerator.
    pub smooth_nr: f32,
    /// Added to the denominator.
    pub smooth_dr: f32,
    /// Reduction over images; `none` gives `[N]`.
    pub reduction: Reduction,
}

impl WassersteinDice {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        const L: &str = "wasserstein-dice";
        let known = [
            "dist_matrix",
            "weighting_mode",
            "smooth_nr",
            "smooth_dr",
            "reduction",
        ];
        let r = ParamReader::new(L, &known, items)?;
        let gdl_weighting = match r.get("weighting_mode") {
            None | Some("default") => false,
            Some("GDL") => true,
            Some(m) => {
                return Err(param_err(
                    L,
                    "weighting_mode",
                    format!("`{m}` is not default or GDL"),
                ))
            }
        };
        Ok(WassersteinDice {
            dist_matrix: r.list("dist_matrix")?.ok_or_else(|| {
                param_err(
                    L,
                    "dist_matrix",
                    "is required (C×C values, row-major)".into(),
                )
            })?,
            gdl_weighting,
            smooth_nr: r.f32("smooth_nr", 1e-5)?,
            smooth_dr: r.f32("smooth_dr", 1e-5)?,
            reduction: r.reduction()?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        const L: &str = "wasserstein-dice";
        let c = shape.c();
        if target != TargetKind::Labels || c < 2 {
            return Err(Error::Target {
                loss: L,
                message: "needs label targets and at least 2 classes (softmax)".into(),
            });
        }
        let m = &self.dist_matrix;
        if m.len() != c * c {
            let msg = format!("{} values given, the loss needs {} (C×C)", m.len(), c * c);
            return Err(param_err(L, "dist_matrix", msg));
        }
        if let Some(x) = m.iter().find(|x| !x.is_finite() || **x < 0.0) {
            return Err(param_err(
                L,
                "dist_matrix",
                format!("{x} is negative or not finite"),
            ));
        }
        let max = m.iter().fold(0.0f32, |a, &b| a.max(b));
        if max == 0.0 {
            return Err(param_err(L, "dist_matrix", "is all zeros".into()));
        }
        let o = RegionOptions {
            smooth_nr: self.smooth_nr,
            smooth_dr: self.smooth_dr,
            reduction: self.reduction,
            activation: Some(Activation::Softmax),
            ..RegionOptions::default()
        };
        let mut s = RegionSpec::base(L, RegionKind::Wasserstein, &o, shape, target)?;
        s.dist = m
            .iter()
            .map(|&v| if max != 1.0 { v / max } else { v })
            .collect();
        s.wass_gdl = self.gdl_weighting;
        Ok(s)
    }
}

/// `unified-focal` (`monai.losses.AsymmetricUnifiedFocalLoss` on `act(z)`): binary segmentation,
/// sigmoid for C = 1 (the pair `(1 - σ, σ)`), softmax for C = 2;
/// `weight·AFL + (1 - weight)·AFTL` with MONAI's clamp of the probabilities to `[1e-7, 1 - 1e-7]`.
/// With `ignore_index`, MONAI's semantics: ignored pixels get a zero gradient but still count in
/// the focal term's mean and add the clamp's 1e-7 to the Tversky term's false positives.
#[derive(Clone, Debug, PartialEq)]
pub struct UnifiedFocal {
    /// Weight of the focal term (the focal Tversky term gets `1 - weight`).
    pub weight: f32,
    /// Asymmetry between the classes.
    pub delta: f32,
    /// Focal exponent.
    pub gamma: f32,
    /// Label value to skip (labels only).
    pub ignore_index: Option<i32>,
}

impl Default for UnifiedFocal {
    fn default() -> Self {
        UnifiedFocal {
            weight: 0.5,
            delta: 0.7,
            gamma: 0.5,
            ignore_index: None,
        }
    }
}

impl UnifiedFocal {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let known = ["weight", "delta", "gamma", "ignore_index"];
        let r = ParamReader::new("unified-focal", &known, items)?;
        let d = Self::default();
        Ok(UnifiedFocal {
            weight: r.f32("weight", d.weight)?,
            delta: r.f32("delta", d.delta)?,
            gamma: r.f32("gamma", d.gamma)?,
            ignore_index: r.ignore_index(None)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        const L: &str = "unified-focal";
        for (name, v) in [("weight", self.weight), ("delta", self.delta)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(param_err(L, name, format!("{v} is outside [0, 1]")));
            }
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return Err(param_err(
                L,
                "gamma",
                format!("{} is outside [0, 1]", self.gamma),
            ));
        }
        if shape.c() > 2 {
            return Err(Error::Target {
                loss: L,
                message: format!("binary only: C = 1 or 2, got {}", shape.c()),
            });
        }
        let o = RegionOptions {
            ignore_index: self.ignore_index,
            activation: Some(if shape.c() == 1 {
                Activation::Sigmoid
            } else {
                Activation::Softmax
            }),
            ..RegionOptions::default()
        };
        let mut s = RegionSpec::base(L, RegionKind::Unified, &o, shape, target)?;
        s.beta = self.delta;
        s.gamma = self.gamma;
        s.pix = PixTerm::Unified;
        s.lambda_region = 1.0 - self.weight;
        s.lambda_pixel = self.weight;
        Ok(s)
    }
}

/// `boundary` (`monai.losses.BoundaryLoss`, Kervadec 2019): per (image, class),
/// `mean_S p·φ_g` with φ_g the signed distance map of the target (LOSSES.md), computed on the GPU
/// in the same command stream (or once by the caller: [`crate::Plan::record_target_map`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Boundary {
    /// Keep channel 0.
    pub include_background: bool,
    /// Average over the batch too before the reduction.
    pub batch: bool,
    /// Reduction over (image, class) items; `none` gives `[N, C']` (`[1, C']` with `batch`).
    pub reduction: Reduction,
    /// `None`: softmax for C > 1, sigmoid for C = 1.
    pub activation: Option<Activation>,
    /// Voxel size per spatial axis (this crate's extension; 1 by default).
    pub spacing: Vec<f32>,
}

impl Default for Boundary {
    fn default() -> Self {
        Boundary {
            include_background: true,
            batch: false,
            reduction: Reduction::Mean,
            activation: None,
            spacing: Vec::new(),
        }
    }
}

/// `hausdorff-dt` (`monai.losses.HausdorffDTLoss`, Karimi 2019) and `log-hausdorff-dt`
/// (`LogHausdorffDTLoss`, `log(loss + 1)`): per (image, class),
/// `mean_S[(p - g)²·(dt_p^alpha + dt_g^alpha)]`, the distance maps of the prediction (> 0.5) and
/// the target recomputed on the GPU at every call (constants for the gradient).
#[derive(Clone, Debug, PartialEq)]
pub struct HausdorffDt {
    /// Exponent of the distances.
    pub alpha: f32,
    /// Keep channel 0 (false by default, as MONAI).
    pub include_background: bool,
    /// Average over the batch too.
    pub batch: bool,
    /// Reduction over (image, class) items.
    pub reduction: Reduction,
    /// `None`: softmax for C > 1, sigmoid for C = 1.
    pub activation: Option<Activation>,
    /// Voxel size per spatial axis (this crate's extension; 1 by default).
    pub spacing: Vec<f32>,
}

impl Default for HausdorffDt {
    fn default() -> Self {
        HausdorffDt {
            alpha: 2.0,
            include_background: false,
            batch: false,
            reduction: Reduction::Mean,
            activation: None,
            spacing: Vec::new(),
        }
    }
}

fn read_spacing(r: &ParamReader) -> Result<Vec<f32>> {
    Ok(r.list("spacing")?.unwrap_or_default())
}

impl Boundary {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let known = [
            "include_background",
            "batch",
            "reduction",
            "activation",
            "spacing",
        ];
        let r = ParamReader::new("boundary", &known, items)?;
        let d = Self::default();
        Ok(Boundary {
            include_background: r.bool("include_background", d.include_background)?,
            batch: r.bool("batch", d.batch)?,
            reduction: r.reduction()?,
            activation: r.parsed_opt("activation")?,
            spacing: read_spacing(&r)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        let o = RegionOptions {
            include_background: self.include_background,
            batch: self.batch,
            reduction: self.reduction,
            activation: self.activation,
            ..RegionOptions::default()
        };
        let mut s = RegionSpec::base("boundary", RegionKind::Boundary, &o, shape, target)?;
        s.spacing = check_spacing("boundary", &self.spacing, shape)?;
        Ok(s)
    }
}

impl HausdorffDt {
    pub(crate) fn from_params(loss: &'static str, items: &[(String, String)]) -> Result<Self> {
        let known = [
            "alpha",
            "include_background",
            "batch",
            "reduction",
            "activation",
            "spacing",
        ];
        let r = ParamReader::new(loss, &known, items)?;
        let d = Self::default();
        Ok(HausdorffDt {
            alpha: r.f32("alpha", d.alpha)?,
            include_background: r.bool("include_background", d.include_background)?,
            batch: r.bool("batch", d.batch)?,
            reduction: r.reduction()?,
            activation: r.parsed_opt("activation")?,
            spacing: read_spacing(&r)?,
        })
    }

    pub(crate) fn spec(
        &self,
        loss: &'static str,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<RegionSpec> {
        check_nonneg(loss, "alpha", self.alpha)?;
        let o = RegionOptions {
            include_background: self.include_background,
            batch: self.batch,
            reduction: self.reduction,
            activation: self.activation,
            ..RegionOptions::default()
        };
        let mut s = RegionSpec::base(loss, RegionKind::Hausdorff, &o, shape, target)?;
        s.spacing = check_spacing(loss, &self.spacing, shape)?;
        s.alpha = self.alpha;
        s.log_hd = loss == "log-hausdorff-dt";
        Ok(s)
    }
}

fn check_spacing(loss: &'static str, spacing: &[f32], shape: &Shape) -> Result<Vec<f32>> {
    // The distance transform's own checks, under the loss's name.
    crate::distance::grid(&shape.spatial(), spacing).map_err(|e| match e {
        Error::Parameter { name, message, .. } => Error::Parameter {
            loss,
            name,
            message,
        },
        other => other,
    })?;
    Ok(spacing.to_vec())
}

/// Which statistics and score (`LOSS` in the shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegionKind {
    Dice = 0,
    Tversky = 1,
    GeneralizedDice = 2,
    SensitivitySpecificity = 3,
    Combo = 4,
    ExpLog = 5,
    Wasserstein = 6,
    Unified = 7,
    Boundary = 8,
    Hausdorff = 9,
}

/// Everything the region kernels and their CPU mirror need, validated against one shape.
#[derive(Clone, Debug)]
pub(crate) struct RegionSpec {
    pub kind: RegionKind,
    pub act: Activation,
    pub dense: bool,
    pub ignore_index: Option<i32>,
    pub first_channel: usize,
    pub squared: bool,
    pub soft: bool,
    pub batch: bool,
    pub reduction: Reduction,
    pub jaccard: bool,
    pub log_cosh: bool,
    pub focal_tversky: bool,
    pub w_type: WeightType,
    /// Per absolute channel (length C).
    pub weight: Vec<f32>,
    pub smooth_nr: f32,
    pub smooth_dr: f32,
    pub alpha: f32,
    pub beta: f32,
    pub gamma: f32,
    pub ss_r: f32,
    /// The pixel-wise term of a compound loss (`PIX` in the shader).
    pub pix: PixTerm,
    /// Per absolute channel (length C): the pixel term's class weight.
    pub pixel_weight: Vec<f32>,
    pub label_smoothing: f32,
    pub pixel_gamma: f32,
    pub focal_alpha: Option<f32>,
    pub lambda_region: f32,
    pub lambda_pixel: f32,
    /// wasserstein-dice: the normalised distance matrix (C × C) and the GDL weighting.
    pub dist: Vec<f32>,
    pub wass_gdl: bool,
    /// Distance losses: voxel size per axis (empty: 1), and log(· + 1) for log-hausdorff-dt.
    pub spacing: Vec<f32>,
    pub log_hd: bool,
}

/// The pixel-wise term of a compound region loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PixTerm {
    None = 0,
    CrossEntropy = 1,
    Focal = 2,
    Combo = 3,
    ExpLog = 4,
    Unified = 5,
}

fn param_err(loss: &'static str, name: &str, message: String) -> Error {
    Error::Parameter {
        loss,
        name: name.to_string(),
        message,
    }
}

fn check_nonneg(loss: &'static str, name: &str, v: f32) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(param_err(
            loss,
            name,
            format!("{v} is negative or not finite"),
        ));
    }
    Ok(())
}

impl RegionSpec {
    fn base(
        loss: &'static str,
        kind: RegionKind,
        o: &RegionOptions,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<Self> {
        check_nonneg(loss, "smooth_nr", o.smooth_nr)?;
        check_nonneg(loss, "smooth_dr", o.smooth_dr)?;
        let c = shape.c();
        let act = match o.activation {
            None if c == 1 => Activation::Sigmoid,
            None => Activation::Softmax,
            Some(Activation::Softmax) if c == 1 => {
                return Err(param_err(
                    loss,
                    "activation",
                    "softmax over a single channel is constant; use sigmoid or none".into(),
                ))
            }
            Some(a) => a,
        };
        if o.ignore_index.is_some() && target == TargetKind::Dense {
            return Err(Error::Target {
                loss,
                message: "ignore_index needs label targets".into(),
            });
        }
        Ok(RegionSpec {
            kind,
            act,
            dense: target == TargetKind::Dense,
            ignore_index: o.ignore_index,
            // MONAI ignores include_background = false with a single channel.
            first_channel: usize::from(!o.include_background && c > 1),
            squared: false,
            soft: o.soft_label,
            batch: o.batch,
            reduction: o.reduction,
            jaccard: false,
            log_cosh: false,
            focal_tversky: false,
            w_type: WeightType::Uniform,
            weight: vec![1.0; c],
            smooth_nr: o.smooth_nr,
            smooth_dr: o.smooth_dr,
            alpha: 0.5,
            beta: 0.5,
            gamma: 1.0,
            ss_r: 0.0,
            pix: PixTerm::None,
            pixel_weight: vec![1.0; c],
            label_smoothing: 0.0,
            pixel_gamma: 0.0,
            focal_alpha: None,
            lambda_region: 1.0,
            lambda_pixel: 0.0,
            dist: Vec::new(),
            wass_gdl: false,
            spacing: Vec::new(),
            log_hd: false,
        })
    }

    /// The distance losses read a distance map where the others read their weights.
    pub fn map_kind(&self) -> Option<MapKind> {
        match self.kind {
            RegionKind::Boundary => Some(MapKind::Boundary),
            RegionKind::Hausdorff => Some(MapKind::Hausdorff),
            _ => None,
        }
    }

    /// The host-known multiplier of the summed pixel term (for `sum`; `mean` comes from the
    /// statistics): MONAI's focal `sum` is a sum of spatial means.
    pub fn pixel_norm(&self, shape: &Shape) -> f32 {
        match (self.pix, self.reduction) {
            (PixTerm::Focal, Reduction::Sum) => 1.0 / shape.s() as f32,
            // MONAI's asymmetric focal mean over [N, 2, *S], ignored pixels included.
            (PixTerm::Unified, _) => (1.0 / (2 * shape.pixels()) as f64) as f32,
            _ => 1.0,
        }
    }

    /// Segments: images, or one for `batch`.
    pub fn segments(&self, shape: &Shape) -> usize {
        if self.batch {
            1
        } else {
            shape.n()
        }
    }

    pub fn kept(&self, shape: &Shape) -> usize {
        shape.c() - self.first_channel
    }

    /// Elements of the loss output.
    pub fn loss_len(&self, shape: &Shape) -> usize {
        match (self.reduction, self.kind) {
            // A compound loss's region term broadcast onto its pixel term: [N, C', *S].
            (Reduction::None, _) if self.pix != PixTerm::None => {
                shape.n() * self.kept(shape) * shape.s()
            }
            (Reduction::None, RegionKind::GeneralizedDice | RegionKind::Wasserstein) => {
                self.segments(shape)
            }
            (Reduction::None, _) => self.segments(shape) * self.kept(shape),
            _ => 1,
        }
    }

    /// f32 elements of the statistics buffer: [segment, C + 1, 4].
    pub fn stats_len(&self, shape: &Shape) -> usize {
        self.segments(shape) * (shape.c() + 1) * 4
    }
}

impl Dice {
    const EXTRA: &'static [&'static str] = &["squared_pred", "weight"];

    pub(crate) fn from_params(loss: &'static str, items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new(loss, &known(Self::EXTRA), items)?;
        Ok(Dice {
            options: RegionOptions::read(&r)?,
            squared_pred: r.bool("squared_pred", false)?,
            weight: r.list("weight")?,
        })
    }

    pub(crate) fn spec(
        &self,
        loss: &'static str,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<RegionSpec> {
        let mut s = RegionSpec::base(loss, RegionKind::Dice, &self.options, shape, target)?;
        s.squared = self.squared_pred;
        // MONAI's soft path applies only with ord = 1; with p², tp = Σpg either way.
        s.soft = self.options.soft_label && !self.squared_pred;
        s.jaccard = loss == "jaccard";
        s.log_cosh = loss == "log-cosh-dice";
        if let Some(w) = &self.weight {
            // MONAI applies no Dice weight with a single class.
            if s.kept(shape) > 1 {
                s.weight = kept_weights(loss, w, shape, s.first_channel)?;
            }
        }
        Ok(s)
    }
}

/// Per absolute channel (length C) from a per-kept-class list (or one value); channel 0 gets 1
/// when it is dropped.
fn kept_weights(loss: &'static str, w: &[f32], shape: &Shape, first: usize) -> Result<Vec<f32>> {
    let kept = shape.c() - first;
    if let Some(x) = w.iter().find(|x| !x.is_finite() || **x < 0.0) {
        return Err(param_err(
            loss,
            "weight",
            format!("{x} is negative or not finite"),
        ));
    }
    let mut full = vec![1.0; first];
    match w.len() {
        1 => full.extend(std::iter::repeat_n(w[0], kept)),
        l if l == kept => full.extend_from_slice(w),
        l => {
            return Err(param_err(
                loss,
                "weight",
                format!("{l} values given, the loss needs {kept} (one per kept class)"),
            ))
        }
    }
    Ok(full)
}

impl DiceCe {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let extra = [
            "squared_pred",
            "weight",
            "label_smoothing",
            "lambda_dice",
            "lambda_ce",
        ];
        let r = ParamReader::new("dice-ce", &known(&extra), items)?;
        let d = Self::default();
        Ok(DiceCe {
            dice: Dice {
                options: RegionOptions::read(&r)?,
                squared_pred: r.bool("squared_pred", false)?,
                weight: None,
            },
            weight: r.list("weight")?,
            label_smoothing: r.f32("label_smoothing", d.label_smoothing)?,
            lambda_dice: r.f32("lambda_dice", d.lambda_dice)?,
            lambda_ce: r.f32("lambda_ce", d.lambda_ce)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        const L: &str = "dice-ce";
        let mut s = self.dice.spec(L, shape, target)?;
        if s.reduction == Reduction::None {
            return Err(param_err(
                L,
                "reduction",
                "none is not defined for dice-ce (MONAI: its terms have different shapes)".into(),
            ));
        }
        check_nonneg(L, "lambda_dice", self.lambda_dice)?;
        check_nonneg(L, "lambda_ce", self.lambda_ce)?;
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            let v = self.label_smoothing;
            return Err(param_err(
                L,
                "label_smoothing",
                format!("{v} is outside [0, 1]"),
            ));
        }
        if let Some(w) = &self.weight {
            if w.len() != shape.c() {
                let msg = format!(
                    "{} values given, the loss needs {} (one per class)",
                    w.len(),
                    shape.c()
                );
                return Err(param_err(L, "weight", msg));
            }
            // The CE weight covers every class; the Dice weight the kept ones (MONAI).
            s.pixel_weight = kept_weights(L, w, shape, 0)?;
            if s.kept(shape) > 1 {
                s.weight = kept_weights(L, &w[s.first_channel..], shape, s.first_channel)?;
            }
        }
        s.pix = PixTerm::CrossEntropy;
        s.label_smoothing = self.label_smoothing;
        s.lambda_region = self.lambda_dice;
        s.lambda_pixel = self.lambda_ce;
        Ok(s)
    }
}

impl RegionFocal {
    pub(crate) fn from_params(loss: &'static str, items: &[(String, String)]) -> Result<Self> {
        let generalized = loss == "generalized-dice-focal";
        let mut extra = vec!["gamma", "alpha", "weight", "lambda_focal"];
        extra.extend(if generalized {
            ["w_type", "lambda_gdl"]
        } else {
            ["squared_pred", "lambda_dice"]
        });
        let r = ParamReader::new(loss, &known(&extra), items)?;
        let options = RegionOptions::read(&r)?;
        Ok(RegionFocal {
            dice: Dice {
                options: options.clone(),
                squared_pred: r.bool("squared_pred", false)?,
                weight: None,
            },
            generalized: if generalized {
                Some(GeneralizedDice {
                    options,
                    w_type: r.parsed("w_type", WeightType::Square)?,
                })
            } else {
                None
            },
            gamma: r.f32("gamma", 2.0)?,
            alpha: r.opt_f32("alpha")?,
            weight: r.list("weight")?,
            lambda_region: r.f32(
                if generalized {
                    "lambda_gdl"
                } else {
                    "lambda_dice"
                },
                1.0,
            )?,
            lambda_focal: r.f32("lambda_focal", 1.0)?,
        })
    }

    pub(crate) fn spec(
        &self,
        loss: &'static str,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<RegionSpec> {
        let mut s = match &self.generalized {
            Some(g) => g.spec(shape, target)?,
            None => {
                let dice = Dice {
                    weight: self.weight.clone(),
                    ..self.dice.clone()
                };
                dice.spec(loss, shape, target)?
            }
        };
        check_nonneg(loss, "gamma", self.gamma)?;
        check_nonneg(loss, "lambda_focal", self.lambda_focal)?;
        let lambda_name = if self.generalized.is_some() {
            "lambda_gdl"
        } else {
            "lambda_dice"
        };
        check_nonneg(loss, lambda_name, self.lambda_region)?;
        if let Some(a) = self.alpha {
            if !(0.0..=1.0).contains(&a) {
                return Err(param_err(loss, "alpha", format!("{a} is outside [0, 1]")));
            }
        }
        if s.ignore_index.is_some() && s.reduction == Reduction::Sum {
            return Err(param_err(
                loss,
                "ignore_index",
                "is supported with reduction=mean only (the focal sum is a sum of spatial means)"
                    .into(),
            ));
        }
        if let Some(w) = &self.weight {
            s.pixel_weight = kept_weights(loss, w, shape, s.first_channel)?;
        }
        s.pix = PixTerm::Focal;
        s.pixel_gamma = self.gamma;
        s.focal_alpha = self.alpha;
        s.lambda_region = self.lambda_region;
        s.lambda_pixel = self.lambda_focal;
        Ok(s)
    }
}

impl Tversky {
    const EXTRA: &'static [&'static str] = &["alpha", "beta"];

    pub(crate) fn from_params(loss: &'static str, items: &[(String, String)]) -> Result<Self> {
        let focal = loss == "focal-tversky";
        let extra: Vec<&'static str> = if focal {
            vec!["alpha", "beta", "gamma"]
        } else {
            Self::EXTRA.to_vec()
        };
        let r = ParamReader::new(loss, &known(&extra), items)?;
        let (a, b, g) = if focal {
            (0.3, 0.7, 0.75)
        } else {
            (0.5, 0.5, 1.0)
        };
        Ok(Tversky {
            options: RegionOptions::read(&r)?,
            alpha: r.f32("alpha", a)?,
            beta: r.f32("beta", b)?,
            gamma: r.f32("gamma", g)?,
        })
    }

    /// `asymmetric`: the Tversky loss with `alpha = 1/(1+b²)`, `beta = b²/(1+b²)`.
    pub(crate) fn asymmetric_from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("asymmetric", &known(&["f_beta"]), items)?;
        let b = r.f32("f_beta", 1.5)?;
        check_nonneg("asymmetric", "f_beta", b)?;
        let b2 = b * b;
        Ok(Tversky {
            options: RegionOptions::read(&r)?,
            alpha: 1.0 / (1.0 + b2),
            beta: b2 / (1.0 + b2),
            gamma: 1.0,
        })
    }

    pub(crate) fn spec(
        &self,
        loss: &'static str,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<RegionSpec> {
        check_nonneg(loss, "alpha", self.alpha)?;
        check_nonneg(loss, "beta", self.beta)?;
        check_nonneg(loss, "gamma", self.gamma)?;
        let mut s = RegionSpec::base(loss, RegionKind::Tversky, &self.options, shape, target)?;
        s.alpha = self.alpha;
        s.beta = self.beta;
        s.gamma = self.gamma;
        s.focal_tversky = loss == "focal-tversky";
        Ok(s)
    }
}

impl GeneralizedDice {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("generalized-dice", &known(&["w_type"]), items)?;
        Ok(GeneralizedDice {
            options: RegionOptions::read(&r)?,
            w_type: r.parsed("w_type", WeightType::Square)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        let mut s = RegionSpec::base(
            "generalized-dice",
            RegionKind::GeneralizedDice,
            &self.options,
            shape,
            target,
        )?;
        s.w_type = self.w_type;
        Ok(s)
    }
}

impl SensitivitySpecificity {
    const PARAMS: &'static [&'static str] = &[
        "r",
        "smooth",
        "include_background",
        "batch",
        "ignore_index",
        "activation",
        "reduction",
    ];

    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("sensitivity-specificity", Self::PARAMS, items)?;
        let d = Self::default();
        Ok(SensitivitySpecificity {
            r: r.f32("r", d.r)?,
            smooth: r.f32("smooth", d.smooth)?,
            include_background: r.bool("include_background", d.include_background)?,
            batch: r.bool("batch", d.batch)?,
            ignore_index: r.ignore_index(None)?,
            activation: r.parsed_opt("activation")?,
            reduction: r.reduction()?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<RegionSpec> {
        const L: &str = "sensitivity-specificity";
        if !(0.0..=1.0).contains(&self.r) {
            return Err(param_err(L, "r", format!("{} is outside [0, 1]", self.r)));
        }
        let o = RegionOptions {
            include_background: self.include_background,
            smooth_nr: self.smooth,
            smooth_dr: self.smooth,
            batch: self.batch,
            ignore_index: self.ignore_index,
            activation: self.activation,
            reduction: self.reduction,
            ..RegionOptions::default()
        };
        let mut s = RegionSpec::base(L, RegionKind::SensitivitySpecificity, &o, shape, target)?;
        s.ss_r = self.r;
        Ok(s)
    }
}

/// Uniform parameters of `shaders/region.wgsl` (`Params` there; layout checked by a test).
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RegionParams {
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub nwg: u32,
    pub wx: u32,
    pub nseg: u32,
    pub ignore_index: i32,
    pub accumulate: u32,
    pub smooth_nr: f32,
    pub smooth_dr: f32,
    pub alpha: f32,
    pub beta: f32,
    pub gamma: f32,
    pub grad_scale: f32,
    pub ss_r: f32,
    pub lambda_region: f32,
    pub lambda_pixel: f32,
    pub label_smoothing: f32,
    pub pixel_gamma: f32,
    pub focal_alpha: f32,
    pub pixel_norm: f32,
    pub pixel_weight_sum: f32,
}

// params, logits, targets, aux, grad, loss_out, scratch, stats, status, and with
// `Caps::logits_vec4` the logits again as vec4s (`slots`)
const SLOTS: [Slot; 10] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::Read,
];

/// The bindings of the region family on these kernels' device: the vec4 view of the logits only
/// where the device allows a ninth storage buffer per stage (`shader::Caps::logits_vec4`).
fn slots(kernels: &Kernels) -> &'static [Slot] {
    if kernels.caps().logits_vec4 {
        &SLOTS
    } else {
        &SLOTS[..SLOTS.len() - 1]
    }
}

/// Whether the four-pixel gradient walk of the software tuning reads four neighbouring pixels as
/// one vec4 (`ALIGNED4` in shaders/region.wgsl): every image plane of a channel starts on a
/// multiple of four elements (the logits are bound from offset 0), and the device has the vec4
/// view of the logits.
fn aligned4(kernels: &Kernels, shape: &Shape) -> bool {
    kernels.caps().logits_vec4 && shape.s().is_multiple_of(4)
}

/// Minimum pixels per thread of the statistics pass (see `RegionPlan::new`).
const STATS_PIXELS_PER_THREAD: usize = 16;
/// Pixels each grad_pass thread walks (at least), amortising its copy of the coefficients.
const GRAD_PIXELS_PER_THREAD: usize = 4;

/// The GPU side of a planned region loss.
pub(crate) struct RegionPlan {
    pub spec: RegionSpec,
    layout: wgpu::BindGroupLayout,
    /// The two-pass path's statistics pass; built on first use for a fused loss, whose plain
    /// record needs it not (see [`RegionPlan::stats_pass`]).
    stats_pass: std::sync::OnceLock<wgpu::ComputePipeline>,
    /// The two-pass path's gradient pass.
    grad_pass: GradientEntry,
    constants: Vec<(&'static str, f64)>,
    pipeline_layout: wgpu::PipelineLayout,
    combine: wgpu::ComputePipeline,
    /// With `batch`: the batch's statistics from the images' (after `combine`).
    combine_batch: Option<wgpu::ComputePipeline>,
    finalize: wgpu::ComputePipeline,
    /// boundary and hausdorff-dt (not log): `stats_pass` built with FUSED, which writes the
    /// gradient too (see [`RegionPlan::record_fused`]), reading a map.
    fused_map: Option<GradientEntry>,
    /// boundary: the fused pass that makes the map from the distance volumes (MAP_FROM_VOLUMES),
    /// where it needs each value, instead of a pass writing the map and the fused pass reading it
    /// back; a plain record uses it. (Hausdorff's map takes two volumes and two powers per
    /// value: on lavapipe that cost more than the pass it saved, 245 -> 266-272 ms at
    /// 8×19×128×256, where boundary went 163-187 -> 140-150.)
    fused_volumes: Option<GradientEntry>,
    loss_final: Option<wgpu::ComputePipeline>,
    weights: wgpu::Buffer,
    /// Distance losses: the map's own kernels and buffer.
    pub map: Option<LossMap>,
    scratch: wgpu::Buffer,
    /// The statistics of a plain `record` (split-phase callers bring their own).
    pub stats: wgpu::Buffer,
    /// Stand-ins for the outputs in the statistics pass (a buffer may be bound writable once),
    /// and for the vec4 view of the logits where it is unused.
    dummy: [wgpu::Buffer; 3],
    nwg: u32,
    wx: u32,
}

impl RegionPlan {
    pub fn new(kernels: &Kernels, spec: RegionSpec, shape: &Shape) -> Result<Self> {
        let device = kernels.device();
        let max_dim = kernels.limits().max_compute_workgroups_per_dimension as usize;
        if shape.n() > max_dim {
            return Err(Error::Shape(format!(
                "{} images exceed this device's {max_dim} workgroups per dimension",
                shape.n()
            )));
        }
        // `combine` runs one workgroup per class (and one more) and image.
        if shape.c() + 1 > max_dim {
            return Err(Error::Shape(format!(
                "{} channels exceed this device's {} workgroups per dimension, less one",
                shape.c(),
                max_dim
            )));
        }
        let per_image = (MAX_WORKGROUPS as usize / shape.n()).max(1);
        // grad_pass runs a grid of gx × N workgroups (one row per image), so that the image, and
        // with it the segment's coefficients, is the same for the whole workgroup: each thread
        // copies them to private memory once and walks GRAD_PIXELS_PER_THREAD pixels, instead of
        // loading them per element (on lavapipe those loads were half of the pass).
        let gx = shape
            .s()
            .div_ceil(WG as usize * kernels.per_thread(GRAD_PIXELS_PER_THREAD, 1))
            .clamp(1, per_image);
        let nwg = (gx * shape.n()) as u32;
        // On a software adapter each stats-pass thread walks at least STATS_PIXELS_PER_THREAD
        // pixels: the pass ends in one subgroup sum per class, which costs more than the pixels
        // it summarises when threads hold only one or two. A GPU wants a thread per pixel: with
        // 16 the 8×19×128×256 statistics ran 64 workgroups, a twentieth of an H200's threads.
        let wx = shape
            .s()
            .div_ceil(WG as usize * kernels.per_thread(STATS_PIXELS_PER_THREAD, 1))
            .clamp(1, per_image) as u32;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let act = match spec.act {
            Activation::Softmax => 0.0,
            Activation::Sigmoid => 1.0,
            Activation::None => 2.0,
        };
        let reduction = match spec.reduction {
            Reduction::Mean => 0.0,
            Reduction::Sum => 1.0,
            Reduction::None => 2.0,
        };
        let w_type = match spec.w_type {
            WeightType::Square => 0.0,
            WeightType::Simple => 1.0,
            WeightType::Uniform => 2.0,
        };
        let constants = [
            ("LOSS", spec.kind as u32 as f64),
            ("ACT", act),
            ("DENSE", flag(spec.dense)),
            ("HAS_IGNORE", flag(spec.ignore_index.is_some())),
            ("FIRST_CHANNEL", spec.first_channel as f64),
            ("SQUARED", flag(spec.squared)),
            ("SOFT", flag(spec.soft)),
            ("BATCH", flag(spec.batch)),
            ("REDUCTION", reduction),
            ("JACCARD", flag(spec.jaccard)),
            ("LOG_COSH", flag(spec.log_cosh)),
            ("FOCAL_TVERSKY", flag(spec.focal_tversky)),
            ("W_TYPE", w_type),
            ("PIX", spec.pix as u32 as f64),
            ("HAS_ALPHA", flag(spec.focal_alpha.is_some())),
            (
                "HAS_PIXEL_WEIGHT",
                flag(spec.pixel_weight.iter().any(|&w| w != 1.0)),
            ),
            ("WASS_GDL", flag(spec.wass_gdl)),
            ("LOG_HD", flag(spec.log_hd)),
            // `binary_labels()` in the shader (CLASS_LABELS is never set for this family).
            ("CE_BINARY", flag(shape.c() == 1)),
            ("ALIGNED4", flag(aligned4(kernels, shape))),
            super::cache_constant(kernels, shape.c()),
            super::focal_power_constant((spec.pix == PixTerm::Focal).then_some(spec.pixel_gamma)),
            ("PARTIAL_SLOTS", kernels.partial_slots() as f64),
        ];
        let (layout, pipeline_layout) =
            kernels.layout(Family::Region, &layout_entries(slots(kernels)));
        let pipe = |entry| kernels.pipeline(Family::Region, entry, &constants, &pipeline_layout);
        let nseg = spec.segments(shape);
        let scratch_len = 4
            * (1 + nseg * shape.c()
                + shape.n() * wx as usize * kernels.partial_slots() * (shape.c() + 1)
                + nwg as usize);
        kernels.check_binding("scratch", scratch_len as u64 * 4)?;
        let stats_len = spec.stats_len(shape);
        // The gradient coefficients of these losses do not depend on the statistics.
        let fused =
            matches!(spec.kind, RegionKind::Boundary | RegionKind::Hausdorff) && !spec.log_hd;
        let fused_entry = |extra: &[(&'static str, f64)]| {
            let constants = [&constants[..], extra].concat();
            GradientEntry::new(Family::Region, "stats_pass", &constants, &pipeline_layout)
        };
        let (fused_map, fused_volumes) = if fused {
            let volumes = (spec.kind == RegionKind::Boundary)
                .then(|| fused_entry(&[("FUSED", 1.0), ("MAP_FROM_VOLUMES", 1.0)]));
            (Some(fused_entry(&[("FUSED", 1.0)])), volumes)
        } else {
            (None, None)
        };
        let grad_pass =
            GradientEntry::new(Family::Region, "grad_pass", &constants, &pipeline_layout);
        let stats_pass = std::sync::OnceLock::new();
        // Compiled now: what a plain record runs.
        match (&fused_map, &fused_volumes) {
            (_, Some(plain)) | (Some(plain), None) => {
                plain.pipeline(kernels, false)?;
            }
            (None, None) => {
                let _ = stats_pass.set(pipe("stats_pass")?);
                grad_pass.pipeline(kernels, false)?;
            }
        }
        Ok(RegionPlan {
            stats_pass,
            grad_pass,
            fused_map,
            fused_volumes,
            combine: pipe("combine")?,
            combine_batch: spec.batch.then(|| pipe("combine_batch")).transpose()?,
            finalize: pipe("finalize")?,
            // A compound loss's pixel term is reduced last (with `none` grad_pass writes it).
            loss_final: match (spec.pix, spec.reduction) {
                (PixTerm::None, _) | (_, Reduction::None) => None,
                _ => Some(pipe("loss_final")?),
            },
            map: match spec.map_kind() {
                None => None,
                Some(kind) => Some(LossMap::new(
                    kernels,
                    &LossMapSpec {
                        kind,
                        shape,
                        targets_len: if spec.dense {
                            shape.numel()
                        } else {
                            shape.pixels()
                        },
                        first: spec.first_channel,
                        spacing: &spec.spacing,
                        alpha: spec.alpha,
                        ignore_index: spec.ignore_index,
                        dense: spec.dense,
                        act: act as u32,
                    },
                )?),
            },
            weights: bind::constants(
                device,
                "segloss region weights",
                &[spec.weight.as_slice(), &spec.pixel_weight, &spec.dist].concat(),
            ),
            scratch: storage(
                device,
                "segloss region scratch",
                scratch_len,
                wgpu::BufferUsages::empty(),
            ),
            stats: storage(
                device,
                "segloss region statistics",
                stats_len,
                wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            ),
            dummy: [
                storage(device, "segloss unused", 1, wgpu::BufferUsages::empty()),
                storage(device, "segloss unused", 1, wgpu::BufferUsages::empty()),
                // One vec4: the unused vec4 view of the logits.
                storage(device, "segloss unused", 4, wgpu::BufferUsages::empty()),
            ],
            spec,
            layout,
            constants: constants.to_vec(),
            pipeline_layout,
            nwg,
            wx,
        })
    }

    /// Whether the fused pass makes the map from the plan's own volumes: for boundary, unless the
    /// caller gives a map.
    fn fused_from_volumes(&self, map: Option<&wgpu::Buffer>) -> bool {
        self.fused_volumes.is_some() && map.is_none()
    }

    /// The two-pass path's statistics pass (built now if the plan did not).
    fn stats_pass(&self, kernels: &Kernels) -> Result<&wgpu::ComputePipeline> {
        if let Some(p) = self.stats_pass.get() {
            return Ok(p);
        }
        let built = kernels.pipeline(
            Family::Region,
            "stats_pass",
            &self.constants,
            &self.pipeline_layout,
        )?;
        Ok(self.stats_pass.get_or_init(|| built))
    }

    /// Binding 3: the weights, or a distance loss's map (the caller's, else the plan's).
    fn aux<'a>(&'a self, map: Option<&'a wgpu::Buffer>) -> &'a wgpu::Buffer {
        match (&self.map, map) {
            (Some(_), Some(m)) => m,
            (Some(own), None) => &own.map,
            (None, _) => &self.weights,
        }
    }

    fn bind(
        &self,
        plan: &Plan,
        inputs: &Inputs,
        stats: &wgpu::Buffer,
        outputs: Option<&Outputs>,
        aux: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let shape = plan.shape();
        let device = plan.kernels.device();
        let params = RegionParams {
            n: shape.n() as u32,
            c: shape.c() as u32,
            s: shape.s() as u32,
            nwg: self.nwg,
            wx: self.wx,
            nseg: self.spec.segments(shape) as u32,
            ignore_index: self.spec.ignore_index.unwrap_or(0),
            accumulate: outputs.is_some_and(|o| o.accumulate) as u32,
            smooth_nr: self.spec.smooth_nr,
            smooth_dr: self.spec.smooth_dr,
            alpha: self.spec.alpha,
            beta: self.spec.beta,
            gamma: self.spec.gamma,
            grad_scale: outputs.map_or(1.0, |o| o.grad_scale),
            ss_r: self.spec.ss_r,
            lambda_region: self.spec.lambda_region,
            lambda_pixel: self.spec.lambda_pixel,
            label_smoothing: self.spec.label_smoothing,
            pixel_gamma: self.spec.pixel_gamma,
            focal_alpha: self.spec.focal_alpha.unwrap_or(0.0),
            pixel_norm: self.spec.pixel_norm(shape),
            pixel_weight_sum: self.spec.pixel_weight.iter().sum(),
        };
        let uniform = uniform(device, "segloss region params", &params);
        // The statistics pass binds no outputs: the plan's scratch stands in for them.
        let (grad, loss) = match outputs {
            Some(o) => (
                sized(o.grad, shape.numel()),
                sized(o.loss, self.spec.loss_len(shape)),
            ),
            None => (
                self.dummy[0].as_entire_binding(),
                self.dummy[1].as_entire_binding(),
            ),
        };
        let mut resources = vec![
            uniform.as_entire_binding(),
            sized(inputs.logits, shape.numel()),
            sized(inputs.targets, plan.targets_len()),
            aux.as_entire_binding(),
            grad,
            loss,
            self.scratch.as_entire_binding(),
            sized(stats, self.spec.stats_len(shape)),
            plan.status_buffer().as_entire_binding(),
        ];
        if plan.kernels.caps().logits_vec4 {
            // The logits again, as vec4s, for `grad_four` where `aligned4` (else unused).
            resources.push(if aligned4(&plan.kernels, shape) {
                sized(inputs.logits, shape.numel())
            } else {
                self.dummy[2].as_entire_binding()
            });
        }
        bind_group(device, "segloss region", &self.layout, resources)
    }

    /// Records the statistics; a distance loss first computes its map (unless the caller gives
    /// one in `map`).
    pub fn record_statistics(
        &self,
        plan: &Plan,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        stats: &wgpu::Buffer,
        map: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let stats_pass = self.stats_pass(&plan.kernels)?;
        let shape = plan.shape();
        self.record_own_map(plan, encoder, inputs, map);
        let bind_group = self.bind(plan, inputs, stats, None, self.aux(map));
        let mut pass = plan
            .kernels
            .begin_pass(encoder, "segloss region statistics");
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_pipeline(stats_pass);
        pass.dispatch_workgroups(self.wx, shape.n() as u32, 1);
        self.record_combine(&mut pass, shape);
        Ok(())
    }

    /// The statistics from the stats pass's partials (bound to `pass` already): per image, and
    /// with `batch` then for the batch.
    fn record_combine(&self, pass: &mut wgpu::ComputePass<'_>, shape: &Shape) {
        pass.set_pipeline(&self.combine);
        pass.dispatch_workgroups(shape.c() as u32 + 1, shape.n() as u32, 1);
        if let Some(batch) = &self.combine_batch {
            pass.set_pipeline(batch);
            pass.dispatch_workgroups(1, 1, 1);
        }
    }

    /// A distance loss's map into the plan's own buffer, unless the caller gives one in `map`.
    fn record_own_map(
        &self,
        plan: &Plan,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        map: Option<&wgpu::Buffer>,
    ) {
        if let (Some(own), None) = (&self.map, map) {
            own.record(
                &plan.kernels,
                encoder,
                Some(inputs.logits),
                inputs.targets,
                Some(&own.map),
            );
        }
    }

    /// The loss and gradient (a plain record): statistics then backward, or for boundary and
    /// hausdorff-dt the fused pass. A distance loss computes its map first unless the caller
    /// gives one in `map`. Clears the plan's status before the pass that counts bad input. Fails
    /// only where a pipeline built on first use fails (never for a non-fused loss).
    pub fn record(
        &self,
        plan: &Plan,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        outputs: &Outputs,
        map: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let fused = match (&self.fused_map, &self.fused_volumes) {
            (_, Some(volumes)) if self.fused_from_volumes(map) => Some(volumes),
            (fused_map, _) => fused_map.as_ref(),
        };
        match fused {
            Some(entry) => {
                let fused = entry.pipeline(&plan.kernels, outputs.accumulate)?;
                encoder.clear_buffer(plan.status_buffer(), 0, None);
                self.record_fused(&fused, plan, encoder, inputs, outputs, map);
                Ok(())
            }
            None => {
                self.record_statistics(plan, encoder, inputs, &self.stats, map)?;
                self.record_backward(plan, encoder, inputs, &self.stats, outputs, map)
            }
        }
    }

    /// The distance volumes (unless the caller gives a map), one pass that writes the
    /// statistics' partials and the gradient, making each map value from the volumes where it
    /// needs it (or reading the caller's map), then the loss from the statistics.
    fn record_fused(
        &self,
        stats_fused: &wgpu::ComputePipeline,
        plan: &Plan,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        outputs: &Outputs,
        map: Option<&wgpu::Buffer>,
    ) {
        let aux = match (&self.map, self.fused_from_volumes(map)) {
            (Some(own), true) => {
                let logits = Some(inputs.logits);
                own.record(&plan.kernels, encoder, logits, inputs.targets, None);
                own.volumes()
            }
            _ => {
                self.record_own_map(plan, encoder, inputs, map);
                self.aux(map)
            }
        };
        let bind_group = self.bind(plan, inputs, &self.stats, Some(outputs), aux);
        let mut pass = plan
            .kernels
            .begin_pass(encoder, "segloss region statistics and gradient");
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_pipeline(stats_fused);
        pass.dispatch_workgroups(self.wx, plan.shape().n() as u32, 1);
        self.record_combine(&mut pass, plan.shape());
        pass.set_pipeline(&self.finalize);
        pass.dispatch_workgroups(1, 1, 1);
    }

    pub fn record_backward(
        &self,
        plan: &Plan,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &Inputs,
        stats: &wgpu::Buffer,
        outputs: &Outputs,
        map: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let grad_pass = self.grad_pass.pipeline(&plan.kernels, outputs.accumulate)?;
        // The gradient pass counts bad input.
        encoder.clear_buffer(plan.status_buffer(), 0, None);
        let bind_group = self.bind(plan, inputs, stats, Some(outputs), self.aux(map));
        let mut pass = plan.kernels.begin_pass(encoder, "segloss region backward");
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_pipeline(&self.finalize);
        pass.dispatch_workgroups(1, 1, 1);
        let n = plan.shape().n() as u32;
        pass.set_pipeline(&grad_pass);
        pass.dispatch_workgroups(self.nwg / n, n, 1);
        if let Some(loss_final) = &self.loss_final {
            pass.set_pipeline(loss_final);
            pass.dispatch_workgroups(1, 1, 1);
        }
        Ok(())
    }
}
