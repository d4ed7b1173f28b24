//! # segloss
//!
//! Semantic-segmentation losses and their gradients as hand-written WGSL compute shaders, run
//! through [`wgpu`] (Vulkan, Metal, DX12), recorded into *your* command encoder: no host round
//! trip, no one-hot tensor. Every loss has a plain-Rust CPU reference ([`cpu`]) that the GPU
//! kernels are tested against and that matches the PyTorch implementations named in LOSSES.md
//! (torch, MONAI, segmentation-models-pytorch) in value and gradient.
//!
//! ```no_run
//! use segloss::{Gpu, GpuOptions, Inputs, Kernels, Loss, Outputs, Shape, TargetKind};
//! # fn main() -> segloss::Result<()> {
//! let gpu = Gpu::new(&GpuOptions::default())?;               // or bring your own device
//! let kernels = Kernels::new(&gpu.device)?;                  // caches pipelines per device
//! let loss = Loss::parse("cross-entropy", &["label_smoothing=0.1"])?;
//! let shape = Shape::new(8, 19, &[128, 256])?;
//! let plan = kernels.plan(&loss, shape.clone(), TargetKind::Labels)?; // validated once
//! # let (z, y, loss_buf, grad_buf) = (
//! #   segloss::readback::zeros(&gpu.device, "z", shape.numel()),
//! #   segloss::readback::zeros(&gpu.device, "y", shape.pixels()),
//! #   segloss::readback::zeros(&gpu.device, "l", 1),
//! #   segloss::readback::zeros(&gpu.device, "g", shape.numel()));
//! let mut encoder = gpu.device.create_command_encoder(&Default::default());
//! plan.record(&mut encoder, &Inputs { logits: &z, targets: &y },
//!             &Outputs { loss: &loss_buf, grad: &grad_buf, accumulate: false, grad_scale: 1.0 })?;
//! gpu.queue.submit([encoder.finish()]);
//! # Ok(()) }
//! ```
//!
//! Inputs the host can see are validated before anything is recorded and reported as [`Error`];
//! what only the GPU can see (labels out of range, non-finite logits) is counted into the plan's
//! status buffer ([`Status`], [`Plan::status_buffer`]).

#![warn(missing_docs)]

pub use wgpu;

pub mod cpu;
pub mod distance;
mod error;
mod kernels;
pub mod loss;
pub mod profile;
pub mod readback;
pub mod reduce;
pub mod shader;
pub mod sort;
mod tensor;

pub use error::{Error, Result};
pub use kernels::{
    KernelOptions, Kernels, MAX_BINDING_ELEMENTS, MAX_WORKGROUPS, MIN_STORAGE_BUFFERS,
    MIN_WORKGROUP_STORAGE, WG,
};
pub use loss::{Activation, Loss, Plan, Reduction, Status};
pub use readback::{run_blocking, Gpu, GpuOptions, LossOutput};
pub use tensor::{Inputs, Outputs, Shape, TargetKind, Targets};

#[doc(hidden)]
pub mod internals {
    //! Items exposed for the crate's own tests; not part of the stable API.
    pub use crate::distance::DistanceParams;
    pub use crate::loss::pixel::PixelParams;
    pub use crate::loss::region::RegionParams;
}

// The README's Rust example, compiled with the doctests so that it stays true to the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
