//! Host-side helpers for tests, examples and users without an engine: create a device, upload,
//! run one loss, read back, as blocking calls.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::loss::{Loss, Status};
use crate::tensor::{check_host_inputs, Inputs, Outputs, Shape, Targets};

/// The result of a blocking run: the loss (one element, or the unreduced shape) and the gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput {
    /// The loss: one value for `mean`/`sum`, the reference's unreduced shape for `none`.
    pub loss: Vec<f32>,
    /// `dL/dlogits`, the logits' shape (for `none`, the gradient of the sum of the loss).
    pub grad: Vec<f32>,
}

/// Options of [`Gpu::new`].
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Backends to search. Default: `WGPU_BACKEND` from the environment if set, else Vulkan,
    /// Metal and DX12 (never GL, whose adapters lack subgroups and compute performance).
    pub backends: wgpu::Backends,
    /// Limits to request. Default `None`: the adapter's own limits (its real maxima). Tests lower
    /// them to exercise the too-large paths cheaply.
    pub limits: Option<wgpu::Limits>,
    /// Request `SUBGROUP` when the adapter has it. Default true.
    pub subgroups: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            backends: wgpu::Backends::from_env()
                .unwrap_or(wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12),
            limits: None,
            subgroups: true,
        }
    }
}

/// A device and queue made for standalone use (the CLI, tests, examples).
#[derive(Debug)]
pub struct Gpu {
    /// The adapter it came from.
    pub adapter: wgpu::Adapter,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
}

impl Gpu {
    /// Finds an adapter on `options.backends` and creates a device with the adapter's limits and
    /// the optional features the crate can use (`SUBGROUP`, timestamp queries).
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = options.backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| {
            Error::NoAdapter(format!(
                "{e} (backends {:?}; without a GPU install Mesa's Vulkan driver: \
                 apt-get install mesa-vulkan-drivers)",
                options.backends
            ))
        })?;
        let mut wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if options.subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        let features = adapter.features() & wanted;
        let limits = options.limits.clone().unwrap_or_else(|| adapter.limits());
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("segloss"),
            required_features: features,
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice(e.to_string()))?;
        Ok(Gpu {
            adapter,
            device,
            queue,
        })
    }

    /// One line naming the adapter, its type and backend.
    pub fn describe(&self) -> String {
        let i = self.adapter.get_info();
        format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend)
    }
}

/// A storage buffer holding `contents` (usages `STORAGE | COPY_SRC | COPY_DST`).
pub fn upload(device: &wgpu::Device, label: &str, contents: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
    })
}

/// A zeroed storage buffer of `len` f32 (usages `STORAGE | COPY_SRC | COPY_DST`).
pub fn zeros(device: &wgpu::Device, label: &str, len: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (len.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Copies the first `len` 32-bit words of `buffer` (which needs `COPY_SRC`) to the host,
/// blocking until the queue has finished.
pub fn download<T: bytemuck::Pod>(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<T>> {
    let bytes = (len * std::mem::size_of::<T>()) as u64;
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("segloss readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
    queue.submit([encoder.finish()]);
    let (tx, rx) = futures::channel::oneshot::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(e.to_string()))?;
    // The poll above ran the callback: the result is ready.
    pollster::block_on(rx)
        .map_err(|e| Error::Gpu(e.to_string()))?
        .map_err(|e| Error::Gpu(e.to_string()))?;
    let data = {
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(e.to_string()))?;
        bytemuck::cast_slice(&view).to_vec()
    };
    staging.unmap();
    Ok(data)
}

/// Reads a plan's status buffer (blocking).
pub fn read_status(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    plan: &crate::Plan,
) -> Result<Status> {
    let words: Vec<u32> = download(device, queue, plan.status_buffer(), Status::WORDS)?;
    Ok(Status::from_words(&words))
}

impl Kernels {
    /// Uploads `logits` and `targets`, runs `loss` once, reads back loss and gradient, and checks
    /// the status buffer ([`Error::BadInput`] when the GPU saw bad values). Blocking.
    pub fn run_blocking(
        &self,
        queue: &wgpu::Queue,
        loss: &Loss,
        shape: &Shape,
        logits: &[f32],
        targets: Targets,
    ) -> Result<LossOutput> {
        check_host_inputs(shape, logits.len(), &targets)?;
        let device = self.device();
        let plan = self.plan(loss, shape.clone(), targets.kind())?;
        let z = upload(device, "logits", bytemuck::cast_slice(logits));
        let y = upload(device, "targets", targets.as_bytes());
        let loss_buf = zeros(device, "loss", plan.loss_len());
        let grad = zeros(device, "grad", shape.numel());
        let mut encoder = device.create_command_encoder(&Default::default());
        plan.record(
            &mut encoder,
            &Inputs {
                logits: &z,
                targets: &y,
            },
            &Outputs::new(&loss_buf, &grad),
        )?;
        queue.submit([encoder.finish()]);
        read_status(device, queue, &plan)?.check()?;
        Ok(LossOutput {
            loss: download(device, queue, &loss_buf, plan.loss_len())?,
            grad: download(device, queue, &grad, shape.numel())?,
        })
    }
}

/// One blocking run on a device the caller owns (compiles the loss's pipelines each call; keep a
/// [`Kernels`] and use [`Kernels::run_blocking`] to reuse them).
pub fn run_blocking(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    loss: &Loss,
    shape: &Shape,
    logits: &[f32],
    targets: Targets,
) -> Result<LossOutput> {
    Kernels::new(device)?.run_blocking(queue, loss, shape, logits, targets)
}
