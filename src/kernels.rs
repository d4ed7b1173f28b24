//! The pipeline cache: each compute pipeline is built once per device, lazily, on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::shader::{self, Family};

/// The most 4-byte elements one storage binding may hold, whatever the device allows (2^31):
/// the kernels index with u32, and a grid-stride loop's index plus its stride (at most
/// 65535 workgroups of 256 threads) must not wrap around. Vulkan devices allow at most 4 GiB
/// per binding (2^30 floats) anyway.
pub const MAX_BINDING_ELEMENTS: u64 = 1 << 31;

/// Storage buffers per shader stage the kernels need at least (the region and clDice families
/// bind eight; WebGPU's default limit is eight). `Kernels::new` refuses a device with fewer.
pub const MIN_STORAGE_BUFFERS: u32 = 8;

/// Workgroup memory (bytes) the kernels need at least (the radix sort's shared-memory scan;
/// WebGPU's default limit is 16 KiB). `Kernels::new` refuses a device with less.
pub const MIN_WORKGROUP_STORAGE: u32 = 8192;

/// The runtime checks naga compiles into the shaders: all of them except loop bounding, which
/// every loop here does without (see the SAFETY note in [`Kernels::pipeline`]).
fn runtime_checks() -> wgpu::ShaderRuntimeChecks {
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    checks
}

/// Options of [`Kernels::with_options`].
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOptions {
    /// Use subgroup operations in reductions: `None` (default) uses them when the device was
    /// created with [`wgpu::Features::SUBGROUP`]; `Some(false)` forces the shared-memory fallback.
    /// `Some(true)` on a device without the feature is an error.
    pub subgroups: Option<bool>,
    /// Tune the kernels for a software adapter (`Some(true)`) or for a GPU (`Some(false)`).
    /// `None` (default) decides by the adapter's device type ([`wgpu::DeviceType::Cpu`] is
    /// software). Results agree either way up to rounding; the choice only moves time:
    /// - software: each thread of a grid-stride pass walks many pixels, so the passes end in few
    ///   partial sums; and a pixel's channels (C <= [`crate::loss::PIXEL_CACHE`]) are read from
    ///   memory once into private arrays, since every storage load is costly on a CPU.
    /// - GPU: a thread per pixel, to keep enough threads in flight; and no private arrays, which
    ///   a GPU keeps in slow local memory when indexed by a loop counter: it reads a pixel's
    ///   channels again, from its caches (on an H200 cross-entropy went from 0.087 to 0.048 ms).
    pub software_tuning: Option<bool>,
}

/// The compiled kernels of one device, and the entry point to plan losses.
///
/// Cheap to clone (shared state). Creating it compiles nothing: each pipeline is compiled on the
/// first plan that needs it and reused afterwards.
#[derive(Clone)]
pub struct Kernels {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    pub(crate) limits: wgpu::Limits,
    /// What the shaders are composed for (`shader::Caps`), subgroups included.
    caps: shader::Caps,
    /// `partial_slots()`: the most subgroups a workgroup can have on this device.
    partial_slots: usize,
    /// Tuned for an adapter that runs shaders on the CPU (lavapipe, WARP, SwiftShader: few
    /// threads, every storage load costly): `per_thread`, `pixel_cache`.
    software: bool,
    modules: Mutex<HashMap<Family, wgpu::ShaderModule>>,
    layouts: Mutex<HashMap<Family, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// Per-pass timestamps, when on (src/profile.rs).
    pub(crate) timer: Mutex<Option<crate::profile::PassTimer>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    family: Family,
    entry: &'static str,
    // Override constants as (name, f64 bits): f64 is not Hash.
    constants: Vec<(&'static str, u64)>,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("subgroups", &self.inner.caps.subgroups)
            .field("software_tuning", &self.inner.software)
            .field("partial_slots", &self.inner.partial_slots)
            .field(
                "max_storage_buffer_binding_size",
                &self.inner.limits.max_storage_buffer_binding_size,
            )
            .finish()
    }
}

impl Kernels {
    /// Kernels for `device`, using subgroup operations where the device has them.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Self::with_options(device, KernelOptions::default())
    }

    /// Kernels for `device` with explicit options. Fails with [`Error::Limit`] on a device created
    /// with limits below what the kernels need (WebGPU's defaults are enough).
    pub fn with_options(device: &wgpu::Device, options: KernelOptions) -> Result<Self> {
        check_limits(&device.limits())?;
        let has = device.features().contains(wgpu::Features::SUBGROUP);
        let subgroups =
            match options.subgroups {
                None => has,
                Some(true) if !has => return Err(Error::Gpu(
                    "subgroups requested, but the device was created without Features::SUBGROUP"
                        .into(),
                )),
                Some(s) => s,
            };
        let info = device.adapter_info();
        // A workgroup has at most WG / (smallest subgroup) subgroups; WebGPU's smallest is 4,
        // the bound where the adapter reports none.
        let partial_slots = match subgroups {
            true => WG as usize / (info.subgroup_min_size as usize).clamp(4, WG as usize),
            false => 1,
        };
        Ok(Kernels {
            inner: Arc::new(Inner {
                device: device.clone(),
                limits: device.limits(),
                caps: shader::Caps {
                    subgroups,
                    logits_vec4: device.limits().max_storage_buffers_per_shader_stage
                        >= shader::Caps::LOGITS_VEC4_STORAGE_BUFFERS,
                },
                partial_slots,
                software: options
                    .software_tuning
                    .unwrap_or(info.device_type == wgpu::DeviceType::Cpu),
                modules: Mutex::default(),
                layouts: Mutex::default(),
                pipelines: Mutex::default(),
                timer: Mutex::default(),
            }),
        })
    }

    /// The device these kernels run on.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The device limits read at creation (storage binding size, workgroups per dimension).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// Whether reductions use subgroup operations.
    pub fn uses_subgroups(&self) -> bool {
        self.inner.caps.subgroups
    }

    /// The device capabilities the shaders are composed for.
    pub fn caps(&self) -> shader::Caps {
        self.inner.caps
    }

    /// Pipelines compiled so far (each is compiled once).
    pub fn cached_pipelines(&self) -> usize {
        lock(&self.inner.pipelines).len()
    }

    /// The bind group layout shared by every entry point of `family`.
    pub(crate) fn layout(
        &self,
        family: Family,
        entries: &[wgpu::BindGroupLayoutEntry],
    ) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let mut layouts = lock(&self.inner.layouts);
        layouts
            .entry(family)
            .or_insert_with(|| {
                let device = &self.inner.device;
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(family.file()),
                    entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(family.file()),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                (bgl, pl)
            })
            .clone()
    }

    /// The pipeline of `entry` in `family` with these override constants, compiled on first use.
    pub(crate) fn pipeline(
        &self,
        family: Family,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        layout: &wgpu::PipelineLayout,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey {
            family,
            entry,
            constants: constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        };
        if let Some(p) = lock(&self.inner.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let device = &self.inner.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = lock(&self.inner.modules)
            .entry(family)
            .or_insert_with(|| {
                let src = shader::compose(family, self.inner.caps);
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(family.file()),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                };
                // SAFETY: the one check turned off is naga's loop bounding (a counter added to
                // every loop so that a loop that never ends is not undefined behaviour). Every
                // loop of these shaders ends: counted loops over validated extents; grid-stride
                // loops, whose index cannot wrap because every binding holds at most 2^31
                // elements and a stride is at most 65535·256 (`check_binding`, `Shape::new`);
                // halving and doubling loops over WG; and the distance envelope's data loops,
                // whose index moves one way to an end marker the same pass wrote (distance
                // arguments are bounded so that no NaN can hide a marker: `distance::grid`).
                // Bounds checks and integer division checks stay on. The counter cost every
                // loop iteration 5-12% of each loss's time on lavapipe (BENCHMARKS.md).
                unsafe { device.create_shader_module_trusted(desc, runtime_checks()) }
            })
            .clone();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "building {}::{entry}: {err}",
                family.file()
            )));
        }
        lock(&self.inner.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Partial sums one workgroup of a partials-writing pass leaves in memory (the override
    /// `PARTIAL_SLOTS` of shaders/common/reduce_*.wgsl, which the host sets to this): one per
    /// subgroup, so WG over the adapter's smallest subgroup size (8 on NVIDIA, 32 on lavapipe),
    /// or one per workgroup without subgroups.
    pub(crate) fn partial_slots(&self) -> usize {
        self.inner.partial_slots
    }

    /// Whether the kernels are tuned for a software adapter ([`KernelOptions::software_tuning`]).
    pub fn software_tuned(&self) -> bool {
        self.inner.software
    }

    /// Items one thread of a grid-stride pass walks (at least): `software` when tuned for a
    /// software adapter (see [`KernelOptions::software_tuning`]), where each workgroup's closing
    /// reduction costs more than the pixels it summarises when threads hold only a few, else
    /// `gpu`, which needs tens of thousands of threads in flight to hide memory latency.
    pub(crate) fn per_thread(&self, software: usize, gpu: usize) -> usize {
        if self.inner.software {
            software
        } else {
            gpu
        }
    }

    /// Whether the kernels that walk a pixel's `c` channels several times keep them in private
    /// arrays (the `CACHED` override of shaders/common/pixel_cache.wgsl): on a software adapter,
    /// when they fit (see [`KernelOptions::software_tuning`]).
    pub(crate) fn pixel_cache(&self, c: usize) -> bool {
        self.inner.software && c <= crate::loss::PIXEL_CACHE
    }

    /// Workgroups for a grid-stride pass over `items` work items: enough to fill a large GPU,
    /// never more than the per-dimension limit. A function of `items` alone, so the reduction
    /// order does not depend on the device.
    pub(crate) fn workgroups(&self, items: usize) -> u32 {
        let cap = MAX_WORKGROUPS.min(self.inner.limits.max_compute_workgroups_per_dimension);
        (items.div_ceil(WG as usize) as u64).clamp(1, cap as u64) as u32
    }

    /// The most bytes one storage binding (and the buffer behind it) may hold on this device,
    /// and at most [`MAX_BINDING_ELEMENTS`] 4-byte elements.
    pub(crate) fn max_binding_bytes(&self) -> u64 {
        let l = &self.inner.limits;
        l.max_storage_buffer_binding_size
            .min(l.max_buffer_size)
            .min(MAX_BINDING_ELEMENTS * 4)
    }

    /// Checks that one binding of `bytes` fits the device's storage binding limit, and holds
    /// at most [`MAX_BINDING_ELEMENTS`] 4-byte elements.
    pub(crate) fn check_binding(&self, name: &'static str, bytes: u64) -> Result<()> {
        let limit = self
            .inner
            .limits
            .max_storage_buffer_binding_size
            .min(MAX_BINDING_ELEMENTS * 4);
        if bytes > limit {
            return Err(Error::TooLarge { name, bytes, limit });
        }
        Ok(())
    }
}

/// An entry point that writes a gradient, built as two pipelines: `grad = ...`, and with the
/// ACCUMULATE constant `grad += ...` for callers that add into their gradient
/// (`Outputs::accumulate`). Two pipelines rather than a branch on a uniform, which costs a CPU
/// driver per element (BENCHMARKS.md). Both come from the kernel cache; a plan compiles the
/// plain one when it is made, the other on first use (most callers never accumulate).
#[derive(Clone)]
pub(crate) struct GradientEntry {
    family: Family,
    entry: &'static str,
    constants: Vec<(&'static str, f64)>,
    layout: wgpu::PipelineLayout,
}

impl GradientEntry {
    pub(crate) fn new(
        family: Family,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        layout: &wgpu::PipelineLayout,
    ) -> Self {
        GradientEntry {
            family,
            entry,
            constants: constants.to_vec(),
            layout: layout.clone(),
        }
    }

    /// The pipeline that overwrites the gradient, or with `accumulate` the one that adds to it.
    pub(crate) fn pipeline(
        &self,
        kernels: &Kernels,
        accumulate: bool,
    ) -> Result<wgpu::ComputePipeline> {
        if accumulate {
            let constants = [&self.constants[..], &[("ACCUMULATE", 1.0)]].concat();
            kernels.pipeline(self.family, self.entry, &constants, &self.layout)
        } else {
            kernels.pipeline(self.family, self.entry, &self.constants, &self.layout)
        }
    }
}

/// Every limit the kernels need that a device may lack, checked before anything is compiled,
/// so that a small device gets an error naming the limit instead of a wgpu validation panic.
fn check_limits(limits: &wgpu::Limits) -> Result<()> {
    let needs = [
        (
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage,
            MIN_STORAGE_BUFFERS,
        ),
        (
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size,
            MIN_WORKGROUP_STORAGE,
        ),
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup,
            WG,
        ),
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x,
            WG,
        ),
        ("max_bind_groups", limits.max_bind_groups, 1),
    ];
    for (name, has, needs) in needs {
        if has < needs {
            return Err(Error::Limit {
                name,
                has: has.into(),
                needs: needs.into(),
            });
        }
    }
    Ok(())
}

/// Threads per workgroup of every kernel (`WG` in shaders/common/grid.wgsl).
pub const WG: u32 = 256;

/// Most workgroups a grid-stride pass launches: 2048 × 256 threads keep every SM of a large GPU
/// busy, and 2048 partials stay cheap to combine in one workgroup.
pub const MAX_WORKGROUPS: u32 = 2048;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the maps stay valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
