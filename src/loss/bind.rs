//! Binding helpers shared by the kernel families: layouts from a list of binding kinds, bind
//! groups from a list of resources, per-call uniforms.

use wgpu::util::DeviceExt;

/// The kind of one binding of a family's bind group.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Uniform,
    Read,
    ReadWrite,
}

pub(crate) fn layout_entries(slots: &[Slot]) -> Vec<wgpu::BindGroupLayoutEntry> {
    slots
        .iter()
        .enumerate()
        .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match slot {
                    Slot::Uniform => wgpu::BufferBindingType::Uniform,
                    Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Slot::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect()
}

/// The first `elems` f32 (or 32-bit words) of `buf`: tensors are bound at their exact size, so
/// a caller's larger buffer never trips the binding-size limit.
pub(crate) fn sized(buf: &wgpu::Buffer, elems: usize) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: buf,
        offset: 0,
        size: wgpu::BufferSize::new(elems as u64 * 4),
    })
}

/// A bind group with `resources` at bindings 0, 1, 2, ...
pub(crate) fn bind_group(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    resources: Vec<wgpu::BindingResource<'_>>,
) -> wgpu::BindGroup {
    let entries: Vec<_> = resources
        .into_iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource,
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// A fresh uniform per recorded call, filled at creation: no queue write that could be reordered
/// against the caller's submissions, and two calls in one encoder stay independent.
pub(crate) fn uniform<T: bytemuck::Pod>(device: &wgpu::Device, label: &str, v: &T) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(v),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// A plan-owned storage buffer of `len` f32 (at least one).
pub(crate) fn storage(
    device: &wgpu::Device,
    label: &str,
    len: usize,
    extra: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (len.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

/// A plan-owned read-only storage buffer holding `data`.
pub(crate) fn constants(device: &wgpu::Device, label: &str, data: &[f32]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::cast_slice(if data.is_empty() { &[0.0f32] } else { data }),
        usage: wgpu::BufferUsages::STORAGE,
    })
}
