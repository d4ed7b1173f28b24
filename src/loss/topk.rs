//! `topk` (JunMa11/SegLoss TopKLoss, LOSSES.md): the mean of the K largest per-pixel
//! cross-entropies, selected exactly by radix select (`shaders/topk.wgsl`) without a sort.
//! CPU mirror: `src/cpu/topk.rs`.

use crate::error::{Error, Result};
use crate::kernels::{GradientEntry, Kernels};
use crate::loss::bind::{self, bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::loss::params::ParamReader;
use crate::loss::Plan;
use crate::shader::Family;
use crate::sort::SELECT_TILE;
use crate::tensor::{Inputs, Outputs, Shape, TargetKind};

/// `topk`: per-pixel cross-entropy (`weight`, `ignore_index`), then the mean of the
/// `K = max(1, floor(M·k/100))` largest, M the non-ignored pixels of the batch; the gradient
/// reaches only the selected pixels. Ties at the threshold go to the lowest pixel indices. If
/// every pixel is ignored the loss is 0.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// Percent of the valid pixels kept, in (0, 100].
    pub k: f32,
    /// Per-class weight of the cross-entropy (length C).
    pub weight: Option<Vec<f32>>,
    /// Label value to skip (default -100, as torch).
    pub ignore_index: Option<i32>,
}

impl Default for TopK {
    fn default() -> Self {
        TopK {
            k: 10.0,
            weight: None,
            ignore_index: Some(-100),
        }
    }
}

/// What the kernel and its CPU mirror need.
#[derive(Clone, Debug)]
pub(crate) struct TopkSpec {
    pub k: f32,
    pub weight: Vec<f32>,
    pub ignore_index: Option<i32>,
}

impl TopK {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new("topk", &["k", "weight", "ignore_index"], items)?;
        let d = Self::default();
        Ok(TopK {
            k: r.f32("k", d.k)?,
            weight: r.list("weight")?,
            ignore_index: r.ignore_index(d.ignore_index)?,
        })
    }

    pub(crate) fn spec(&self, shape: &Shape, target: TargetKind) -> Result<TopkSpec> {
        const L: &str = "topk";
        if !(self.k > 0.0 && self.k <= 100.0) {
            return Err(Error::Parameter {
                loss: L,
                name: "k".into(),
                message: format!("{} is outside (0, 100]", self.k),
            });
        }
        if target != TargetKind::Labels {
            return Err(Error::Target {
                loss: L,
                message: "needs label targets".into(),
            });
        }
        let weight = match &self.weight {
            None => vec![1.0; shape.c()],
            Some(w) if w.len() != shape.c() => {
                return Err(Error::Parameter {
                    loss: L,
                    name: "weight".into(),
                    message: format!(
                        "{} values given, the loss needs {} (one per class)",
                        w.len(),
                        shape.c()
                    ),
                })
            }
            Some(w) => {
                if let Some(x) = w.iter().find(|x| !x.is_finite() || **x < 0.0) {
                    return Err(Error::Parameter {
                        loss: L,
                        name: "weight".into(),
                        message: format!("{x} is negative or not finite"),
                    });
                }
                w.clone()
            }
        };
        Ok(TopkSpec {
            k: self.k,
            weight,
            ignore_index: self.ignore_index,
        })
    }
}

/// Uniform parameters of `shaders/topk.wgsl`.
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TopkParams {
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub nwg: u32,
    pub tiles: u32,
    pub shift: u32,
    pub ignore_index: i32,
    pub k_percent: f32,
    pub grad_scale: f32,
    pub accumulate: u32,
    pub _pad: [u32; 2],
}

// params, logits, targets, class_weights, keys, work, grad, loss_out, status
const SLOTS: [Slot; 9] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

const ENTRIES: [&str; 7] = [
    "ce_keys",
    "select_histogram",
    "select_digit",
    "select_tie_counts",
    "select_tie_scan",
    "select_grad",
    "finish",
];

/// The GPU side of a planned top-k loss.
pub(crate) struct TopkPlan {
    spec: TopkSpec,
    layout: wgpu::BindGroupLayout,
    pipes: Vec<wgpu::ComputePipeline>,
    /// `select_grad`, overwriting or adding to the gradient (the sixth entry).
    select_grad: GradientEntry,
    weights: wgpu::Buffer,
    keys: wgpu::Buffer,
    work: wgpu::Buffer,
    nwg: u32,
    tiles: u32,
}

impl TopkPlan {
    pub fn new(kernels: &Kernels, spec: TopkSpec, shape: &Shape) -> Result<Self> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("DENSE", 0.0),
            ("HAS_IGNORE", flag(spec.ignore_index.is_some())),
            ("ACT", 0.0),
            // Softmax cross-entropy: with C = 1 the only valid label is 0, not a binary mask.
            ("CLASS_LABELS", 1.0),
            super::cache_constant(kernels, shape.c()),
        ];
        let (layout, pl) = kernels.layout(Family::Topk, &layout_entries(&SLOTS));
        let pipes = ENTRIES
            .iter()
            .map(|e| kernels.pipeline(Family::Topk, e, &constants, &pl))
            .collect::<Result<Vec<_>>>()?;
        let nwg = kernels.workgroups(shape.pixels());
        let tiles = shape.pixels().div_ceil(SELECT_TILE) as u32;
        let work_len = 4 + nwg as usize * 257 + 2 * tiles as usize;
        kernels.check_binding("topk work", work_len as u64 * 4)?;
        let device = kernels.device();
        Ok(TopkPlan {
            weights: bind::constants(device, "segloss topk weights", &spec.weight),
            keys: storage(
                device,
                "segloss topk keys",
                shape.pixels(),
                wgpu::BufferUsages::empty(),
            ),
            work: storage(
                device,
                "segloss topk work",
                work_len,
                wgpu::BufferUsages::empty(),
            ),
            spec,
            layout,
            pipes,
            select_grad: GradientEntry::new(Family::Topk, "select_grad", &constants, &pl),
            nwg,
            tiles,
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
        let device = plan.kernels.device();
        let base = TopkParams {
            n: shape.n() as u32,
            c: shape.c() as u32,
            s: shape.s() as u32,
            nwg: self.nwg,
            tiles: self.tiles,
            shift: 24,
            ignore_index: self.spec.ignore_index.unwrap_or(0),
            k_percent: self.spec.k,
            grad_scale: outputs.grad_scale,
            accumulate: outputs.accumulate as u32,
            _pad: [0; 2],
        };
        let bind = |params: &TopkParams| {
            let u = uniform(device, "segloss topk params", params);
            bind_group(
                device,
                "segloss topk",
                &self.layout,
                vec![
                    u.as_entire_binding(),
                    sized(inputs.logits, shape.numel()),
                    sized(inputs.targets, shape.pixels()),
                    self.weights.as_entire_binding(),
                    sized(&self.keys, shape.pixels()),
                    self.work.as_entire_binding(),
                    sized(outputs.grad, shape.numel()),
                    sized(outputs.loss, 1),
                    plan.status_buffer().as_entire_binding(),
                ],
            )
        };
        let tile_groups = self.tiles.min(crate::kernels::MAX_WORKGROUPS);
        let select_grad = self
            .select_grad
            .pipeline(&plan.kernels, outputs.accumulate)?;
        let mut pass = plan.kernels.begin_pass(encoder, "segloss topk");
        let bg = bind(&base);
        pass.set_bind_group(0, &bg, &[]);
        pass.set_pipeline(&self.pipes[0]);
        pass.dispatch_workgroups(self.nwg, 1, 1);
        // Four 8-bit digits, most significant first.
        for shift in [24u32, 16, 8, 0] {
            let bg = bind(&TopkParams { shift, ..base });
            pass.set_bind_group(0, &bg, &[]);
            pass.set_pipeline(&self.pipes[1]);
            pass.dispatch_workgroups(self.nwg, 1, 1);
            pass.set_pipeline(&self.pipes[2]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        pass.set_bind_group(0, &bg, &[]);
        pass.set_pipeline(&self.pipes[3]);
        pass.dispatch_workgroups(tile_groups, 1, 1);
        pass.set_pipeline(&self.pipes[4]);
        pass.dispatch_workgroups(1, 1, 1);
        pass.set_pipeline(&select_grad);
        pass.dispatch_workgroups(tile_groups, 1, 1);
        pass.set_pipeline(&self.pipes[6]);
        pass.dispatch_workgroups(1, 1, 1);
        Ok(())
    }
}
