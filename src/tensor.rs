//! Shapes, target kinds and the input/output descriptors over caller-owned buffers.

use crate::error::{Error, Result};

/// The shape of the logits, `[N, C, *S]` with 1 to 3 spatial dimensions, contiguous, PyTorch
/// order (NCHW / NCDHW).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    n: u32,
    c: u32,
    spatial: Vec<u32>,
}

impl Shape {
    /// A shape `[n, c, *spatial]`. Every extent must be at least 1, `spatial` must have 1 to 3
    /// entries, and the element count must be below 2^31 (the kernels index with `u32`, and
    /// a grid-stride index plus its stride must not wrap: [`crate::MAX_BINDING_ELEMENTS`]).
    pub fn new(n: usize, c: usize, spatial: &[usize]) -> Result<Self> {
        if spatial.is_empty() || spatial.len() > 3 {
            return Err(Error::Shape(format!(
                "{} spatial dimensions given ({spatial:?}); 1 to 3 are supported",
                spatial.len()
            )));
        }
        let all: Vec<usize> = [n, c].iter().chain(spatial).copied().collect();
        if let Some(i) = all.iter().position(|&d| d == 0) {
            return Err(Error::Shape(format!("dimension {i} of {all:?} is 0")));
        }
        let numel = all
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        match numel {
            Some(e) if e < crate::kernels::MAX_BINDING_ELEMENTS => {}
            _ => {
                return Err(Error::Shape(format!(
                    "{all:?} has more than {} elements",
                    crate::kernels::MAX_BINDING_ELEMENTS - 1
                )))
            }
        }
        Ok(Shape {
            n: n as u32,
            c: c as u32,
            spatial: spatial.iter().map(|&d| d as u32).collect(),
        })
    }

    /// Parses `[N, C, *S]` from a full dimension list, as read from an array file.
    pub fn from_dims(dims: &[usize]) -> Result<Self> {
        if dims.len() < 3 {
            return Err(Error::Shape(format!(
                "logits need [N, C, *S] with 1 to 3 spatial dims, got {dims:?}"
            )));
        }
        Shape::new(dims[0], dims[1], &dims[2..])
    }

    /// Images in the batch.
    pub fn n(&self) -> usize {
        self.n as usize
    }
    /// Channels (classes).
    pub fn c(&self) -> usize {
        self.c as usize
    }
    /// Spatial extents.
    pub fn spatial(&self) -> Vec<usize> {
        self.spatial.iter().map(|&d| d as usize).collect()
    }
    /// Pixels (voxels) per image and channel: the product of the spatial extents.
    pub fn s(&self) -> usize {
        self.spatial.iter().map(|&d| d as usize).product()
    }
    /// Pixels in the batch, `N * S`: the length of a label tensor.
    pub fn pixels(&self) -> usize {
        self.n() * self.s()
    }
    /// Elements of the logits, `N * C * S`.
    pub fn numel(&self) -> usize {
        self.n() * self.c() * self.s()
    }
    /// The full dimension list `[N, C, *S]`.
    pub fn dims(&self) -> Vec<usize> {
        let mut d = vec![self.n(), self.c()];
        d.extend(self.spatial());
        d
    }
    /// The same shape with another channel count.
    pub fn with_c(&self, c: usize) -> Result<Self> {
        Shape::new(self.n(), c, &self.spatial())
    }
}

/// How the targets are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// One class index per pixel, `[N, *S]`, 32-bit signed integers on the GPU; may hold
    /// `ignore_index`.
    Labels,
    /// One value per logit, f32 `[N, C, *S]`: one-hot, soft labels or multi-label masks.
    Dense,
}

impl TargetKind {
    /// Elements of a target tensor of this kind for `shape`.
    pub fn len(self, shape: &Shape) -> usize {
        match self {
            TargetKind::Labels => shape.pixels(),
            TargetKind::Dense => shape.numel(),
        }
    }
}

/// Host-side targets, for the CPU reference and the blocking helpers.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Class indices `[N, *S]`.
    Labels(&'a [i32]),
    /// Dense f32 targets `[N, C, *S]`.
    Dense(&'a [f32]),
}

impl Targets<'_> {
    /// The kind of these targets.
    pub fn kind(&self) -> TargetKind {
        match self {
            Targets::Labels(_) => TargetKind::Labels,
            Targets::Dense(_) => TargetKind::Dense,
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Targets::Labels(v) => v.len(),
            Targets::Dense(v) => v.len(),
        }
    }
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The raw 32-bit words, as uploaded to the GPU.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Targets::Labels(v) => bytemuck::cast_slice(v),
            Targets::Dense(v) => bytemuck::cast_slice(v),
        }
    }
}

/// Checks host slices against a shape and target kind.
pub(crate) fn check_host_inputs(shape: &Shape, logits_len: usize, targets: &Targets) -> Result<()> {
    if logits_len != shape.numel() {
        return Err(Error::Length {
            name: "logits",
            expected: shape.numel(),
            actual: logits_len,
        });
    }
    let expected = targets.kind().len(shape);
    if targets.len() != expected {
        return Err(Error::Length {
            name: "targets",
            expected,
            actual: targets.len(),
        });
    }
    Ok(())
}

/// The caller-owned input buffers of one recorded call.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// f32 logits `[N, C, *S]`; needs `STORAGE` usage.
    pub logits: &'a wgpu::Buffer,
    /// Targets (i32 labels or f32 dense, as planned); needs `STORAGE` usage.
    pub targets: &'a wgpu::Buffer,
}

/// The caller-owned output buffers of one recorded call.
#[derive(Clone, Copy, Debug)]
pub struct Outputs<'a> {
    /// f32 loss: one element for reduction `mean`/`sum`, the unreduced shape for `none`
    /// (see [`crate::Plan::loss_len`]). Always overwritten. Needs `STORAGE` usage.
    pub loss: &'a wgpu::Buffer,
    /// f32 gradient `dL/dlogits`, the logits' shape; needs `STORAGE` usage, must not be the
    /// logits buffer.
    pub grad: &'a wgpu::Buffer,
    /// `false`: the gradient overwrites `grad`; `true`: it is added to what `grad` holds
    /// (compound losses sum into one buffer).
    pub accumulate: bool,
    /// Factor applied to the gradient (not to the loss); 1 for the plain gradient.
    pub grad_scale: f32,
}

impl<'a> Outputs<'a> {
    /// Overwrite `grad` with the plain gradient.
    pub fn new(loss: &'a wgpu::Buffer, grad: &'a wgpu::Buffer) -> Self {
        Outputs {
            loss,
            grad,
            accumulate: false,
            grad_scale: 1.0,
        }
    }
}
