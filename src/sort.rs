//! A stable LSD radix sort of `(u32 key, u32 value)` pairs on the GPU (`shaders/sort.wgsl`),
//! recorded into the caller's encoder: reduce-then-scan, 5 bits per pass, no spin-waiting on
//! other workgroups, so it runs on every adapter (Vulkan, Metal, DX12, software drivers).
//!
//! A segmented sort ([`Kernels::segmented_sort_plan`]) sorts consecutive equal-length segments
//! each on its own, in the same passes: no key ever leaves its segment.
//! [`f32_descending_key`] maps f32 to u32 keys that sort descending.

use crate::error::{check_buffer, Error, Result};
use crate::kernels::{Kernels, WG};
use crate::loss::bind::{bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::shader::Family;

/// Elements per tile of the selection (`SELECT_TILE` in WGSL).
pub const SELECT_TILE: usize = WG as usize * 4;
/// Elements per tile of the segmented scan (`SCAN_TILE` in shaders/common/segscan.wgsl): 16 per
/// thread, so that a tile's workgroup scan is paid once per 4096 elements.
pub const SCAN_TILE: usize = WG as usize * 16;
/// Keys per tile of the radix sort (`TILE` in shaders/sort.wgsl): 32 per thread, so that the
/// per-tile workgroup scans (barriers) are paid once per 8192 keys (on lavapipe, 16 keys per
/// thread: lovasz-softmax 2.6 s, 32: 2.2 s, 64: 2.0 s; more keys per thread also means fewer
/// workgroups to spread over a GPU).
pub const SORT_TILE: usize = WG as usize * 32;

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
    pub seg_len: u32,
    pub mask: u32,
    pub _pad: [u32; 3],
}

// params, keys_in, vals_in, keys_out, vals_out, counts, ranks
const SLOTS: [Slot; 7] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// Bits of the key each pass sorts by (`RADIX` in shaders/sort.wgsl): 32 digits, whose packed
/// 16-bit per-thread counters fill sixteen u32. Six passes sort a 30-bit key, seven a 32-bit
/// one (with 4 bits, eight each).
pub const RADIX_BITS: u32 = 5;

/// u32 words of per-thread ranks a tile keeps between the count and scatter kernels (four
/// packed `vec4<u32>` per thread).
const RANK_WORDS_PER_TILE: usize = WG as usize * 16;

/// A planned sort of `len` pairs: owns the ping-pong and histogram buffers.
pub struct SortPlan {
    kernels: Kernels,
    len: usize,
    // Pairs per segment (`len` for an unsegmented sort): no key leaves its segment.
    seg_len: usize,
    tiles: usize,
    layout: wgpu::BindGroupLayout,
    count: wgpu::ComputePipeline,
    scan: wgpu::ComputePipeline,
    scatter: wgpu::ComputePipeline,
    temp_keys: wgpu::Buffer,
    temp_vals: wgpu::Buffer,
    counts: wgpu::Buffer,
    ranks: wgpu::Buffer,
}

impl std::fmt::Debug for SortPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortPlan").field("len", &self.len).finish()
    }
}

impl Kernels {
    /// Plans a sort of `len` (key, value) pairs (`len >= 1`).
    pub fn sort_plan(&self, len: usize) -> Result<SortPlan> {
        self.segmented_sort_plan(1, len)
    }

    /// Plans a segmented sort: `segments` consecutive runs of `seg_len` pairs, each sorted on
    /// its own (stably, in place), in one pass per digit for all of them. Cheaper than a sort
    /// by key followed by a stable sort by segment: no key ever leaves its segment, so the
    /// segment needs no digits of its own.
    pub fn segmented_sort_plan(&self, segments: usize, seg_len: usize) -> Result<SortPlan> {
        let len = segments.saturating_mul(seg_len);
        if len == 0 || len > u32::MAX as usize / 2 {
            return Err(Error::Shape(format!(
                "cannot sort {segments} segments of {seg_len} pairs (1 to 2^31-1 pairs in all)"
            )));
        }
        self.check_binding("keys", len as u64 * 4)?;
        // Tiles never straddle two segments.
        let tiles = segments * seg_len.div_ceil(SORT_TILE);
        self.check_binding("sort ranks", (tiles * RANK_WORDS_PER_TILE) as u64 * 4)?;
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
                (1 << RADIX_BITS) * tiles,
                wgpu::BufferUsages::empty(),
            ),
            ranks: storage(
                device,
                "segloss sort ranks",
                tiles * RANK_WORDS_PER_TILE,
                wgpu::BufferUsages::empty(),
            ),
            kernels: self.clone(),
            len,
            seg_len,
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
            check_buffer(name, b, need, bytes)?;
        }
        if keys == values {
            return Err(Error::Buffer {
                name: "values",
                message: "is the same buffer as `keys`".into(),
            });
        }
        let kernels = &self.kernels;
        let device = kernels.device();
        let passes = key_bits.div_ceil(RADIX_BITS);
        let workgroups = kernels
            .workgroups(self.tiles * SORT_TILE)
            .min(self.tiles as u32);
        for pass_i in 0..passes {
            let (src, dst) = if pass_i % 2 == 0 {
                ((keys, values), (&self.temp_keys, &self.temp_vals))
            } else {
                ((&self.temp_keys, &self.temp_vals), (keys, values))
            };
            let params = SortParams {
                len: self.len as u32,
                shift: RADIX_BITS * pass_i,
                tiles: self.tiles as u32,
                seg_len: self.seg_len as u32,
                // The last pass may have fewer bits left than a whole digit.
                mask: (1u32 << RADIX_BITS.min(key_bits - RADIX_BITS * pass_i)) - 1,
                _pad: [0; 3],
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
                    self.ranks.as_entire_binding(),
                ],
            );
            let mut pass = kernels.begin_pass(encoder, "segloss sort");
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

/// Uniform parameters of `shaders/select.wgsl`.
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SelectParams {
    pub len: u32,
    pub k: u32,
    pub nwg: u32,
    pub tiles: u32,
    pub shift: u32,
    pub _pad: [u32; 3],
}

// params, keys (or input), flags (or output), work
const PRIM_SLOTS: [Slot; 4] = [Slot::Uniform, Slot::Read, Slot::ReadWrite, Slot::ReadWrite];

/// A planned exact top-k selection: flags the `k` largest of `len` u32 keys by radix select
/// (four 8-bit passes over the keys, no sort); ties at the threshold go to the lowest indices, so
/// exactly `k` keys are flagged.
pub struct SelectPlan {
    kernels: Kernels,
    len: usize,
    k: usize,
    nwg: u32,
    tiles: u32,
    layout: wgpu::BindGroupLayout,
    pipes: Vec<wgpu::ComputePipeline>,
    work: wgpu::Buffer,
}

impl std::fmt::Debug for SelectPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectPlan")
            .field("len", &self.len)
            .field("k", &self.k)
            .finish()
    }
}

/// A planned segmented inclusive scan of f32: `out[g, i] = Σ_{j <= i} in[g, j]` for every
/// segment `g` of a flattened `[segments, len]` array, in a fixed order (reproducible).
pub struct ScanPlan {
    kernels: Kernels,
    segments: usize,
    len: usize,
    layout: wgpu::BindGroupLayout,
    pipes: Vec<wgpu::ComputePipeline>,
    work: wgpu::Buffer,
}

impl std::fmt::Debug for ScanPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPlan")
            .field("segments", &self.segments)
            .field("len", &self.len)
            .finish()
    }
}

fn check_storage(name: &'static str, b: &wgpu::Buffer, elems: usize) -> Result<()> {
    check_buffer(name, b, wgpu::BufferUsages::STORAGE, elems as u64 * 4)
}

fn record_passes(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    passes: &[(&wgpu::BindGroup, &wgpu::ComputePipeline, u32)],
) {
    let mut pass = kernels.begin_pass(encoder, label);
    for (bg, pipe, groups) in passes {
        pass.set_bind_group(0, *bg, &[]);
        pass.set_pipeline(pipe);
        pass.dispatch_workgroups(*groups, 1, 1);
    }
}

impl Kernels {
    /// Plans the selection of the `k` largest of `len` keys (`1 <= k <= len`).
    pub fn select_plan(&self, len: usize, k: usize) -> Result<SelectPlan> {
        if len == 0 || len > u32::MAX as usize / 2 || k == 0 || k > len {
            return Err(Error::Shape(format!(
                "cannot select {k} of {len} keys (1 <= k <= len)"
            )));
        }
        self.check_binding("keys", len as u64 * 4)?;
        let nwg = self.workgroups(len);
        let tiles = len.div_ceil(SELECT_TILE) as u32;
        let (layout, pl) = self.layout(Family::Select, &layout_entries(&PRIM_SLOTS));
        let pipes = [
            "select_histogram",
            "select_digit",
            "select_tie_counts",
            "select_tie_scan",
            "select_mark",
        ]
        .iter()
        .map(|e| self.pipeline(Family::Select, e, &[], &pl))
        .collect::<Result<Vec<_>>>()?;
        let work_len = 2 + 256 * nwg as usize + tiles as usize;
        Ok(SelectPlan {
            work: storage(
                self.device(),
                "segloss select work",
                work_len,
                wgpu::BufferUsages::empty(),
            ),
            kernels: self.clone(),
            len,
            k,
            nwg,
            tiles,
            layout,
            pipes,
        })
    }

    /// Plans a segmented inclusive scan of `segments` segments of `len` f32 each.
    pub fn scan_plan(&self, segments: usize, len: usize) -> Result<ScanPlan> {
        let total = segments
            .checked_mul(len)
            .filter(|&t| t > 0 && t <= u32::MAX as usize / 2);
        if total.is_none() {
            return Err(Error::Shape(format!(
                "cannot scan {segments} segments of {len}"
            )));
        }
        self.check_binding("input", total.unwrap_or(0) as u64 * 4)?;
        let tiles = segments * len.div_ceil(SCAN_TILE);
        let (layout, pl) = self.layout(Family::Scan, &layout_entries(&PRIM_SLOTS));
        let pipes = ["segscan_reduce", "segscan_totals", "segscan_apply"]
            .iter()
            .map(|e| self.pipeline(Family::Scan, e, &[], &pl))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScanPlan {
            work: storage(
                self.device(),
                "segloss scan work",
                tiles + segments,
                wgpu::BufferUsages::empty(),
            ),
            kernels: self.clone(),
            segments,
            len,
            layout,
            pipes,
        })
    }
}

impl SelectPlan {
    /// Records `flags[i] = 1` for the `k` largest `keys` (u32, `len`), 0 for the others. Both
    /// buffers need `STORAGE` and `len` elements.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        keys: &wgpu::Buffer,
        flags: &wgpu::Buffer,
    ) -> Result<()> {
        check_storage("keys", keys, self.len)?;
        check_storage("flags", flags, self.len)?;
        if keys == flags {
            return Err(Error::Buffer {
                name: "flags",
                message: "is the same buffer as `keys`".into(),
            });
        }
        let device = self.kernels.device();
        let bind = |shift: u32| {
            let params = SelectParams {
                len: self.len as u32,
                k: self.k as u32,
                nwg: self.nwg,
                tiles: self.tiles,
                shift,
                _pad: [0; 3],
            };
            let u = uniform(device, "segloss select params", &params);
            bind_group(
                device,
                "segloss select",
                &self.layout,
                vec![
                    u.as_entire_binding(),
                    sized(keys, self.len),
                    sized(flags, self.len),
                    self.work.as_entire_binding(),
                ],
            )
        };
        let groups = [bind(24), bind(16), bind(8), bind(0)];
        let tile_groups = self.tiles.min(crate::kernels::MAX_WORKGROUPS);
        let mut passes = Vec::new();
        for bg in &groups {
            passes.push((bg, &self.pipes[0], self.nwg));
            passes.push((bg, &self.pipes[1], 1));
        }
        passes.push((&groups[3], &self.pipes[2], tile_groups));
        passes.push((&groups[3], &self.pipes[3], 1));
        passes.push((&groups[3], &self.pipes[4], tile_groups));
        record_passes(&self.kernels, encoder, "segloss select", &passes);
        Ok(())
    }
}

impl ScanPlan {
    /// Records the scan of `input` into `output` (f32, `segments × len`, both `STORAGE`).
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<()> {
        let total = self.segments * self.len;
        check_storage("input", input, total)?;
        check_storage("output", output, total)?;
        if input == output {
            return Err(Error::Buffer {
                name: "output",
                message: "is the same buffer as `input`".into(),
            });
        }
        let device = self.kernels.device();
        let params = [self.segments as u32, self.len as u32, 0, 0];
        let u = uniform(device, "segloss scan params", &params);
        let bg = bind_group(
            device,
            "segloss scan",
            &self.layout,
            vec![
                u.as_entire_binding(),
                sized(input, total),
                sized(output, total),
                self.work.as_entire_binding(),
            ],
        );
        let tiles = (self.segments * self.len.div_ceil(SCAN_TILE)) as u32;
        let per_tile = tiles.min(crate::kernels::MAX_WORKGROUPS);
        let per_segment = self.kernels.workgroups(self.segments);
        record_passes(
            &self.kernels,
            encoder,
            "segloss scan",
            &[
                (&bg, &self.pipes[0], per_tile),
                (&bg, &self.pipes[1], per_segment),
                (&bg, &self.pipes[2], per_tile),
            ],
        );
        Ok(())
    }
}
