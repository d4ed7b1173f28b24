//! `active-contour` (Chen et al. CVPR 2019, LOSSES.md): a length term from finite differences of
//! the sigmoid probabilities and two region terms, in 2D as the authors' code and 3D as LOSSES.md
//! extends it (`shaders/contour.wgsl`). CPU mirror: `src/cpu/contour.rs`.

use crate::error::{Error, Result};
use crate::kernels::{GradientEntry, Kernels};
use crate::loss::bind::{bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::loss::params::ParamReader;
use crate::loss::Plan;
use crate::shader::Family;
use crate::tensor::{Inputs, Outputs, Shape, TargetKind};

/// `active-contour`: `length + lambda_region · region` on `p = σ(z)`, C = 1, sums over the batch:
/// `length = w_length · Σ sqrt(d_0² + d_1² (+ d_2²) + eps)` with `d_a = p[b + 2e_a] - p[b + e_a]`
/// for every base pixel `b` at least 2 pixels from the far end of every axis;
/// `region = |Σ p (g - 1)²| + |Σ (1 - p) g²|`.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveContour {
    /// Weight of the region terms.
    pub lambda_region: f32,
    /// Weight of the length term.
    pub w_length: f32,
    /// Added under the square root (keeps the gradient finite on flat regions).
    pub eps: f32,
}

impl Default for ActiveContour {
    fn default() -> Self {
        ActiveContour {
            lambda_region: 1.0,
            w_length: 1.0,
            eps: 1e-8,
        }
    }
}

impl ActiveContour {
    pub(crate) fn from_params(items: &[(String, String)]) -> Result<Self> {
        let r = ParamReader::new(
            "active-contour",
            &["lambda_region", "w_length", "eps"],
            items,
        )?;
        let d = Self::default();
        Ok(ActiveContour {
            lambda_region: r.f32("lambda_region", d.lambda_region)?,
            w_length: r.f32("w_length", d.w_length)?,
            eps: r.f32("eps", d.eps)?,
        })
    }

    pub(crate) fn check(&self, shape: &Shape) -> Result<()> {
        const L: &str = "active-contour";
        if shape.c() != 1 {
            return Err(Error::Target {
                loss: L,
                message: format!("needs C = 1 (a sigmoid mask), got C = {}", shape.c()),
            });
        }
        if shape.spatial().len() < 2 {
            return Err(Error::Target {
                loss: L,
                message: "needs 2 or 3 spatial dimensions".into(),
            });
        }
        for (name, v) in [
            ("lambda_region", self.lambda_region),
            ("w_length", self.w_length),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Parameter {
                    loss: L,
                    name: name.into(),
                    message: format!("{v} is negative or not finite"),
                });
            }
        }
        if !self.eps.is_finite() || self.eps <= 0.0 {
            return Err(Error::Parameter {
                loss: L,
                name: "eps".into(),
                message: format!("{} is not a positive number", self.eps),
            });
        }
        Ok(())
    }
}

/// Uniform parameters of `shaders/contour.wgsl`.
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ContourParams {
    pub n: u32,
    pub s: u32,
    pub nwg: u32,
    pub ndims: u32,
    pub dims: [u32; 4],
    pub lambda_region: f32,
    pub w_length: f32,
    pub eps: f32,
    pub grad_scale: f32,
    pub accumulate: u32,
    pub ignore_index: i32,
    pub _pad: [u32; 2],
}

// params, logits, targets, grad, loss_out, work, status
const SLOTS: [Slot; 7] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// The GPU side of a planned active-contour loss.
pub(crate) struct ContourPlan {
    pub loss: ActiveContour,
    layout: wgpu::BindGroupLayout,
    pipes: Vec<wgpu::ComputePipeline>,
    grad_pass: GradientEntry,
    work: wgpu::Buffer,
    nwg: u32,
}

impl ContourPlan {
    pub fn new(
        kernels: &Kernels,
        loss: ActiveContour,
        shape: &Shape,
        target: TargetKind,
    ) -> Result<Self> {
        // The software tuning keeps each length term's slopes for the gradient pass (SLOPES in
        // shaders/contour.wgsl): ndims floats per pixel of scratch, where they fit one binding
        // (else the gradient pass recomputes them, as on a GPU).
        let nwg = kernels.workgroups(shape.numel());
        let partials = 4 + 3 * nwg as usize;
        let with_slopes = partials + shape.spatial().len() * shape.numel();
        let slopes = kernels.software_tuned()
            && kernels
                .check_binding("active-contour scratch", with_slopes as u64 * 4)
                .is_ok();
        let work_len = if slopes { with_slopes } else { partials };
        let constants = [
            ("DENSE", f64::from(u8::from(target == TargetKind::Dense))),
            ("SLOPES", f64::from(u8::from(slopes))),
        ];
        let (layout, pl) = kernels.layout(Family::Contour, &layout_entries(&SLOTS));
        let pipes = ["sums", "combine"]
            .iter()
            .map(|e| kernels.pipeline(Family::Contour, e, &constants, &pl))
            .collect::<Result<Vec<_>>>()?;
        let grad_pass = GradientEntry::new(Family::Contour, "grad_pass", &constants, &pl);
        grad_pass.pipeline(kernels, false)?;
        kernels.check_binding("active-contour scratch", work_len as u64 * 4)?;
        Ok(ContourPlan {
            work: storage(
                kernels.device(),
                "segloss contour work",
                work_len,
                wgpu::BufferUsages::empty(),
            ),
            loss,
            layout,
            pipes,
            grad_pass,
            nwg,
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
        let spatial = shape.spatial();
        let mut dims = [1u32; 4];
        for (a, &d) in spatial.iter().enumerate() {
            dims[a] = d as u32;
        }
        let params = ContourParams {
            n: shape.n() as u32,
            s: shape.s() as u32,
            nwg: self.nwg,
            ndims: spatial.len() as u32,
            dims,
            lambda_region: self.loss.lambda_region,
            w_length: self.loss.w_length,
            eps: self.loss.eps,
            grad_scale: outputs.grad_scale,
            accumulate: outputs.accumulate as u32,
            ignore_index: 0,
            _pad: [0; 2],
        };
        let u = uniform(device, "segloss contour params", &params);
        let bg = bind_group(
            device,
            "segloss contour",
            &self.layout,
            vec![
                u.as_entire_binding(),
                sized(inputs.logits, shape.numel()),
                sized(inputs.targets, plan.targets_len()),
                sized(outputs.grad, shape.numel()),
                sized(outputs.loss, 1),
                self.work.as_entire_binding(),
                plan.status_buffer().as_entire_binding(),
            ],
        );
        let grad_pass = self.grad_pass.pipeline(&plan.kernels, outputs.accumulate)?;
        let mut pass = plan.kernels.begin_pass(encoder, "segloss active contour");
        pass.set_bind_group(0, &bg, &[]);
        pass.set_pipeline(&self.pipes[0]);
        pass.dispatch_workgroups(self.nwg, 1, 1);
        pass.set_pipeline(&self.pipes[1]);
        pass.dispatch_workgroups(1, 1, 1);
        pass.set_pipeline(&grad_pass);
        pass.dispatch_workgroups(plan.kernels.workgroups(shape.numel()), 1, 1);
        Ok(())
    }
}
