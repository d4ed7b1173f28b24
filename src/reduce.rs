//! The crate's deterministic sum on its own (`shaders/reduce.wgsl`): the reduction every loss
//! uses, exposed for tests, benches and users who want a reproducible sum.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
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
        let rw = |read_only| wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        let uniform = wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        let entries: Vec<_> = [uniform, rw(true), rw(false), rw(false)]
            .into_iter()
            .enumerate()
            .map(|(i, ty)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty,
                count: None,
            })
            .collect();
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
            if !buf.usage().contains(wgpu::BufferUsages::STORAGE) || buf.size() < bytes {
                return Err(Error::Buffer {
                    name,
                    message: format!(
                        "needs STORAGE usage and {bytes} bytes, has {:?} and {}",
                        buf.usage(),
                        buf.size()
                    ),
                });
            }
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
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("segloss sum"),
            timestamp_writes: None,
        });
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_pipeline(&self.pass1);
        pass.dispatch_workgroups(self.nwg, 1, 1);
        pass.set_pipeline(&self.pass2);
        pass.dispatch_workgroups(1, 1, 1);
        Ok(())
    }
}
