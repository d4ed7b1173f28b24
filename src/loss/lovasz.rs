//! Lovász losses: `lovasz-softmax` and `lovasz-hinge` (`shaders/lovasz.wgsl`): errors, a
//! segmented stable radix sort ([`crate::sort`]), the Lovász gradient by segmented scans, the loss,
//! and the gradient scattered back through the activation, all on the GPU. CPU mirror:
//! `src/cpu/lovasz.rs`.

use crate::error::{Error, Result};
use crate::kernels::{GradientEntry, Kernels};
use crate::loss::bind::{bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::loss::params::ParamReader;
use crate::loss::Plan;
use crate::shader::Family;
use crate::sort::{SortPlan, SCAN_TILE};
use crate::tensor::{Inputs, Outputs, Shape, TargetKind};

/// `lovasz-softmax` (`smp.losses.LovaszLoss("multiclass")`, Berman's `lovasz_softmax`): per class
/// (per image and class with `per_image`), the Lovász extension of the Jaccard loss over the
/// errors `|fg - p_c|` of a softmax, averaged over the classes present (or all).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LovaszSoftmax {
    /// Average over every class instead of the classes with foreground (`classes=all`).
    pub all_classes: bool,
    /// One loss per image, then their mean.
    pub per_image: bool,
    /// Label value to skip.
    pub ignore_index: Option<i32>,
}

/// `lovasz-hinge` (`smp.losses.LovaszLoss("binary")`, Berman's `lovasz_hinge`): C = 1, hinge
/// errors `1 - z·(2g - 1)` on the logits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LovaszHinge {
    /// One loss per image, then their mean (false by default, as smp).
    pub per_image: bool,
    /// Label value to skip.
    pub ignore_index: Option<i32>,
}

/// What the kernel and its CPU mirror need.
#[derive(Clone, Debug)]
pub(crate) struct LovaszSpec {
    pub hinge: bool,
    pub all_classes: bool,
    pub per_image: bool,
    pub ignore_index: Option<i32>,
    pub dense: bool,
}

impl LovaszSoftmax {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new(
            "lovasz-softmax",
            &["classes", "per_image", "ignore_index"],
            items,
        )?;
        let all_classes = match r.get("classes") {
            None | Some("present") => false,
            Some("all") => true,
            Some(v) => {
                return Err(r.err("classes", format!("`{v}` is not present or all")));
            }
        };
        Ok(LovaszSoftmax {
            all_classes,
            per_image: r.bool("per_image", false)?,
            ignore_index: r.ignore_index(None)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<LovaszSpec> {
        if target != TargetKind::Labels || shape.c() < 2 {
            return Err(Error::Target {
                loss: "lovasz-softmax",
                message: "needs label targets and at least 2 classes".into(),
            });
        }
        Ok(LovaszSpec {
            hinge: false,
            all_classes: self.all_classes,
            per_image: self.per_image,
            ignore_index: self.ignore_index,
            dense: false,
        })
    }
}

impl LovaszHinge {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("lovasz-hinge", &["per_image", "ignore_index"], items)?;
        Ok(LovaszHinge {
            per_image: r.bool("per_image", false)?,
            ignore_index: r.ignore_index(None)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<LovaszSpec> {
        if shape.c() != 1 {
            return Err(Error::Target {
                loss: "lovasz-hinge",
                message: "needs C = 1 and binary targets (labels {0, 1} or a {0, 1} mask)".into(),
            });
        }
        if self.ignore_index.is_some() && target == TargetKind::Dense {
            return Err(Error::Target {
                loss: "lovasz-hinge",
                message: "ignore_index needs label targets".into(),
            });
        }
        Ok(LovaszSpec {
            hinge: true,
            all_classes: false,
            per_image: self.per_image,
            ignore_index: self.ignore_index,
            dense: target == TargetKind::Dense,
        })
    }
}

impl LovaszSpec {
    /// Segments and elements per segment.
    pub fn segments(&self, shape: &Shape) -> (usize, usize) {
        let groups = if self.per_image { shape.n() } else { 1 };
        let per_group = if self.hinge { 1 } else { shape.c() };
        let m = if self.per_image {
            shape.s()
        } else {
            shape.pixels()
        };
        (groups * per_group, m)
    }
}

/// Uniform parameters of `shaders/lovasz.wgsl`.
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LovaszParams {
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub segs: u32,
    pub m: u32,
    pub tps: u32,
    pub ignore_index: i32,
    pub grad_scale: f32,
    pub accumulate: u32,
    pub _pad: [u32; 3],
}

// params, logits, targets, keys, values, work, grad, loss_out, status
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

const ENTRIES: [&str; 6] = [
    "errors",
    "segscan_reduce",
    "segscan_totals",
    "lovasz_grad",
    "finalize",
    "backprop",
];

/// The GPU side of a planned Lovász loss.
pub(crate) struct LovaszPlan {
    pub spec: LovaszSpec,
    layout: wgpu::BindGroupLayout,
    pipes: Vec<wgpu::ComputePipeline>,
    /// `backprop` (the last entry), overwriting or adding to the gradient.
    backprop: GradientEntry,
    sort: SortPlan,
    keys: wgpu::Buffer,
    values: wgpu::Buffer,
    work: wgpu::Buffer,
    segs: usize,
    m: usize,
    tps: usize,
}

impl LovaszPlan {
    pub fn new(kernels: &Kernels, spec: LovaszSpec, shape: &Shape) -> Result<Self> {
        let (segs, m) = spec.segments(shape);
        let total = segs * m;
        // The sorted values carry the element index in their low 30 bits (shaders/lovasz.wgsl).
        if total >= 1 << 30 {
            return Err(Error::Shape(format!(
                "lovasz: {total} elements; at most 2^30 - 1 are supported"
            )));
        }
        let tps = m.div_ceil(SCAN_TILE);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("DENSE", flag(spec.dense)),
            ("HAS_IGNORE", flag(spec.ignore_index.is_some())),
            ("ACT", 0.0),
            ("HINGE", flag(spec.hinge)),
            ("PER_IMAGE", flag(spec.per_image)),
            ("ALL_CLASSES", flag(spec.all_classes)),
            super::cache_constant(kernels, shape.c()),
        ];
        let (layout, pl) = kernels.layout(Family::Lovasz, &layout_entries(&SLOTS));
        let pipes = ENTRIES
            .iter()
            .map(|e| kernels.pipeline(Family::Lovasz, e, &constants, &pl))
            .collect::<Result<Vec<_>>>()?;
        let work_len = total + 2 * segs * tps + 2 * segs;
        kernels.check_binding("lovasz work", work_len as u64 * 4)?;
        let device = kernels.device();
        let copy = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        Ok(LovaszPlan {
            sort: kernels.segmented_sort_plan(segs, m)?,
            keys: storage(device, "segloss lovasz keys", total, copy),
            values: storage(device, "segloss lovasz values", total, copy),
            work: storage(
                device,
                "segloss lovasz work",
                work_len,
                wgpu::BufferUsages::empty(),
            ),
            spec,
            layout,
            pipes,
            backprop: GradientEntry::new(Family::Lovasz, "backprop", &constants, &pl),
            segs,
            m,
            tps,
        })
    }

    /// The key bits the sort needs. Softmax errors |g - p| lie in [0, 2): their descending keys
    /// (`descending_key` in shaders/lovasz.wgsl) all have bit 31 clear and bit 30 set, so the
    /// low 30 bits order them (six 5-bit passes instead of seven). An ignored pixel's key
    /// (all ones) then ties only with errors of exactly 0, which add no loss and get no gradient
    /// (their p equals g, and d|g - p|/dp is taken as 0 there), so where the tie puts them does
    /// not matter. Hinge errors take any sign: all 32 bits.
    fn key_bits(&self) -> u32 {
        if self.spec.hinge {
            32
        } else {
            30
        }
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
        let params = LovaszParams {
            n: shape.n() as u32,
            c: shape.c() as u32,
            s: shape.s() as u32,
            segs: self.segs as u32,
            m: self.m as u32,
            tps: self.tps as u32,
            ignore_index: self.spec.ignore_index.unwrap_or(0),
            grad_scale: outputs.grad_scale,
            accumulate: outputs.accumulate as u32,
            _pad: [0; 3],
        };
        let u = uniform(device, "segloss lovasz params", &params);
        let total = self.segs * self.m;
        let bg = bind_group(
            device,
            "segloss lovasz",
            &self.layout,
            vec![
                u.as_entire_binding(),
                sized(inputs.logits, shape.numel()),
                sized(inputs.targets, plan.targets_len()),
                sized(&self.keys, total),
                sized(&self.values, total),
                self.work.as_entire_binding(),
                sized(outputs.grad, shape.numel()),
                sized(outputs.loss, 1),
                plan.status_buffer().as_entire_binding(),
            ],
        );
        let tiles = (self.segs * self.tps) as u32;
        let backprop = self.backprop.pipeline(kernels, outputs.accumulate)?;
        let run = |encoder: &mut wgpu::CommandEncoder, entry: usize, workgroups: u32| {
            let mut pass = kernels.begin_pass(encoder, ENTRIES[entry]);
            pass.set_bind_group(0, &bg, &[]);
            if entry == ENTRIES.len() - 1 {
                pass.set_pipeline(&backprop);
            } else {
                pass.set_pipeline(&self.pipes[entry]);
            }
            pass.dispatch_workgroups(workgroups, 1, 1);
        };
        let per_pixel = kernels.workgroups(shape.pixels());
        let per_tile = tiles.min(crate::kernels::MAX_WORKGROUPS);
        run(encoder, 0, per_pixel);
        // Each segment sorted on its own by descending error (ties: the element order).
        self.sort
            .record(encoder, &self.keys, &self.values, self.key_bits())?;
        run(encoder, 1, per_tile);
        run(encoder, 2, kernels.workgroups(self.segs));
        run(encoder, 3, per_tile);
        run(encoder, 4, 1);
        run(encoder, 5, per_pixel);
        Ok(())
    }
}
