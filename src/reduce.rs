//! The crate's deterministic sum on its own (`shaders/reduce.wgsl`): the reduction every loss
//! uses, exposed for tests, benches and users who want a reproducible sum.

use wgpu::util::DeviceExt;

use crate::error::{check_buffer, Error, Result};
use crate::kernels::Kernels;
use crate::shader::Family;

/// A planned sum of `len` f32 values. Bit-identical run to run on one device: each thread adds a
/// fixed grid-stride subset, each workgroup a fixed tree (or subgroup sums in subgroup order),
/// and one workgroup adds the partials in index order. No atomics.
pub struct SumPlan {
    kernels: Kernels,
    len: usize,
    nwg: u32,
    layout: wgpu::BindGroupLayout,
    partials: wgpu::Buffer,
    pass1: wgpu::ComputePipeline,
    pass2: wgpu::ComputePipeline,
}

impl std::fmt::Debug for SumPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SumPlan")
            .field("len", &self.len)
            .field("workgroups", &self.nwg)
            .finish()
    }
}

fn reduce_entries() -> Vec<wgpu::BindGroupLayoutEntry> {
    use crate::loss::bind::{layout_entries, Slot};
    layout_entries(&[Slot::Uniform, Slot::Read, Slot::ReadWrite, Slot::ReadWrite])
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SumParams {
    len: u32,
    nwg: u32,
}

impl Kernels {
    /// Plans a sum of `len` f32 values (`len >= 1`).
    pub fn sum_plan(&self, len: usize) -> Result<SumPlan> {
        if len == 0 || len > u32::MAX as usize {
            return Err(Error::Shape(format!(
                "cannot sum {len} values (1 to 2^32-1)"
            )));
        }
        self.check_binding("input", len as u64 * 4)?;
        let entries = reduce_entries();
        let (layout, pipeline_layout) = self.layout(Family::Reduce, &entries);
        let nwg = self.workgroups(len);
        let partials = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("segloss sum partials"),
            size: nwg as u64 * 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(SumPlan {
            kernels: self.clone(),
            len,
            nwg,
            layout,
            partials,
            pass1: self.pipeline(Family::Reduce, "partials", &[], &pipeline_layout)?,
            pass2: self.pipeline(Family::Reduce, "combine", &[], &pipeline_layout)?,
        })
    }
}

impl SumPlan {
    /// Workgroups of the first pass (= number of partials).
    pub fn workgroups(&self) -> u32 {
        self.nwg
    }

    /// Records `total[0] = Σ input[0..len]`. Both buffers need `STORAGE`; `input` holds at least
    /// `len` f32, `total` at least one.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        total: &wgpu::Buffer,
    ) -> Result<()> {
        for (name, buf, bytes) in [("input", input, self.len as u64 * 4), ("total", total, 4)] {
            check_buffer(name, buf, wgpu::BufferUsages::STORAGE, bytes)?;
        }
        if input == total {
            return Err(Error::Buffer {
                name: "total",
                message: "is the same buffer as `input`".into(),
            });
        }
        let device = self.kernels.device();
        let params = SumParams {
            len: self.len as u32,
            nwg: self.nwg,
        };
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("segloss sum params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("segloss sum"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: input,
                        offset: 0,
                        size: wgpu::BufferSize::new(self.len as u64 * 4),
                    }),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: self.partials.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: total,
                        offset: 0,
                        size: wgpu::BufferSize::new(4),
                    }),
                },
            ],
        });
        let mut pass = self.kernels.begin_pass(encoder, "segloss sum");
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_pipeline(&self.pass1);
        pass.dispatch_workgroups(self.nwg, 1, 1);
        pass.set_pipeline(&self.pass2);
        pass.dispatch_workgroups(1, 1, 1);
        Ok(())
    }
}

/// The bandwidth roofline of the benches: a kernel that reads `len` f32 and writes `len` f32
/// (`shaders/reduce.wgsl`, `copy`), on the same adapter as the losses it is compared with.
pub struct RooflinePlan {
    kernels: Kernels,
    len: usize,
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
    input: wgpu::Buffer,
    output: wgpu::Buffer,
    total: wgpu::Buffer,
}

impl std::fmt::Debug for RooflinePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RooflinePlan")
            .field("len", &self.len)
            .finish()
    }
}

impl Kernels {
    /// Plans a copy of `len` f32 between two buffers the plan owns.
    pub fn roofline_plan(&self, len: usize) -> Result<RooflinePlan> {
        let sum = self.sum_plan(len)?; // validates `len` and builds the family's layout
        let (_, pipeline_layout) = self.layout(Family::Reduce, &reduce_entries());
        let device = self.device();
        let storage = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: len as u64 * 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Ok(RooflinePlan {
            pipeline: self.pipeline(Family::Reduce, "copy", &[], &pipeline_layout)?,
            layout: sum.layout.clone(),
            input: storage("segloss roofline input"),
            output: storage("segloss roofline output"),
            total: storage("segloss roofline unused"),
            kernels: self.clone(),
            len,
        })
    }
}

impl RooflinePlan {
    /// Bytes moved by one run: `len` f32 read and `len` written.
    pub fn bytes(&self) -> u64 {
        8 * self.len as u64
    }

    /// Records one copy.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let device = self.kernels.device();
        let params = SumParams {
            len: self.len as u32,
            nwg: self.kernels.workgroups(self.len),
        };
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("segloss roofline params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("segloss roofline"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: self.input.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: self.output.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: self.total.as_entire_binding(),
                },
            ],
        });
        let mut pass = self.kernels.begin_pass(encoder, "segloss roofline");
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_pipeline(&self.pipeline);
        pass.dispatch_workgroups(params.nwg, 1, 1);
    }
}
