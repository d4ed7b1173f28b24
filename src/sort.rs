//! A stable LSD radix sort of `(u32 key, u32 value)` pairs on the GPU (`shaders/sort.wgsl`),
//! recorded into the caller's encoder: reduce-then-scan, 4 bits per pass, no spin-waiting on
//! other workgroups, so it runs on every adapter (Vulkan, Metal, DX12, software drivers).
//!
//! Segmented sorts are two stable sorts: by the key within segments first, then by the segment
//! id (fewer bits): elements end grouped by segment and sorted within it, ties in input order.
//! [`f32_descending_key`] maps f32 to u32 keys that sort descending.

use crate::error::{Error, Result};
use crate::kernels::{Kernels, WG};
use crate::loss::bind::{bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::shader::Family;

/// Keys per tile of the sort (`TILE` in WGSL).
pub const TILE: usize = WG as usize * 4;

/// A u32 key that sorts f32 values ascending (total order; -0 before +0, NaN last).
pub fn f32_ascending_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// A u32 key that sorts f32 values descending.
pub fn f32_descending_key(x: f32) -> u32 {
    !f32_ascending_key(x)
}

/// Uniform parameters of `shaders/sort.wgsl`.
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SortParams {
    pub len: u32,
    pub shift: u32,
    pub tiles: u32,
    pub _pad: u32,
}

// params, keys_in, vals_in, keys_out, vals_out, counts
const SLOTS: [Slot; 6] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// A planned sort of `len` pairs: owns the ping-pong and histogram buffers.
pub struct SortPlan {
    kernels: Kernels,
    len: usize,
    tiles: usize,
    layout: wgpu::BindGroupLayout,
    count: wgpu::ComputePipeline,
    scan: wgpu::ComputePipeline,
    scatter: wgpu::ComputePipeline,
    temp_keys: wgpu::Buffer,
    temp_vals: wgpu::Buffer,
    counts: wgpu::Buffer,
}

impl std::fmt::Debug for SortPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortPlan").field("len", &self.len).finish()
    }
}

impl Kernels {
    /// Plans a sort of `len` (key, value) pairs (`len >= 1`).
    pub fn sort_plan(&self, len: usize) -> Result<SortPlan> {
        if len == 0 || len > u32::MAX as usize / 2 {
            return Err(Error::Shape(format!(
                "cannot sort {len} pairs (1 to 2^31-1)"
            )));
        }
        self.check_binding("keys", len as u64 * 4)?;
        let tiles = len.div_ceil(TILE);
        let (layout, pl) = self.layout(Family::Sort, &layout_entries(&SLOTS));
        let pipe = |entry| self.pipeline(Family::Sort, entry, &[], &pl);
        let device = self.device();
        let copy = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        Ok(SortPlan {
            count: pipe("count")?,
            scan: pipe("scan")?,
            scatter: pipe("scatter")?,
            temp_keys: storage(device, "segloss sort keys", len, copy),
            temp_vals: storage(device, "segloss sort values", len, copy),
            counts: storage(
                device,
                "segloss sort counts",
                16 * tiles,
                wgpu::BufferUsages::empty(),
            ),
            kernels: self.clone(),
            len,
            tiles,
            layout,
        })
    }
}

impl SortPlan {
    /// Pairs sorted.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a plan sorts at least one pair).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Records a stable sort of `keys` with their `values` (both u32, [`SortPlan::len`]
    /// elements, `STORAGE | COPY_SRC | COPY_DST`) by the low `key_bits` bits of the keys (1 to
    /// 32; fewer bits, fewer passes), in place.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        keys: &wgpu::Buffer,
        values: &wgpu::Buffer,
        key_bits: u32,
    ) -> Result<()> {
        if !(1..=32).contains(&key_bits) {
            return Err(Error::Parameter {
                loss: "sort",
                name: "key_bits".into(),
                message: format!("{key_bits} is outside 1..=32"),
            });
        }
        let bytes = self.len as u64 * 4;
        let need = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        for (name, b) in [("keys", keys), ("values", values)] {
            if !b.usage().contains(need) || b.size() < bytes {
                return Err(Error::Buffer {
                    name,
                    message: format!(
                        "needs {need:?} and {bytes} bytes, has {:?} and {}",
                        b.usage(),
                        b.size()
                    ),
                });
            }
        }
        if keys == values {
            return Err(Error::Buffer {
                name: "values",
                message: "is the same buffer as `keys`".into(),
            });
        }
        let kernels = &self.kernels;
        let device = kernels.device();
        let passes = key_bits.div_ceil(4);
        let workgroups = kernels.workgroups(self.tiles * TILE).min(self.tiles as u32);
        for pass_i in 0..passes {
            let (src, dst) = if pass_i % 2 == 0 {
                ((keys, values), (&self.temp_keys, &self.temp_vals))
            } else {
                ((&self.temp_keys, &self.temp_vals), (keys, values))
            };
            let params = SortParams {
                len: self.len as u32,
                shift: 4 * pass_i,
                tiles: self.tiles as u32,
                _pad: 0,
            };
            let u = uniform(device, "segloss sort params", &params);
            let bg = bind_group(
                device,
                "segloss sort",
                &self.layout,
                vec![
                    u.as_entire_binding(),
                    sized(src.0, self.len),
                    sized(src.1, self.len),
                    sized(dst.0, self.len),
                    sized(dst.1, self.len),
                    self.counts.as_entire_binding(),
                ],
            );
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("segloss sort"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &bg, &[]);
            pass.set_pipeline(&self.count);
            pass.dispatch_workgroups(workgroups, 1, 1);
            pass.set_pipeline(&self.scan);
            pass.dispatch_workgroups(1, 1, 1);
            pass.set_pipeline(&self.scatter);
            pass.dispatch_workgroups(workgroups, 1, 1);
        }
        if passes % 2 == 1 {
            // The result is in the plan's buffers: bring it home.
            encoder.copy_buffer_to_buffer(&self.temp_keys, 0, keys, 0, bytes);
            encoder.copy_buffer_to_buffer(&self.temp_vals, 0, values, 0, bytes);
        }
        Ok(())
    }
}
