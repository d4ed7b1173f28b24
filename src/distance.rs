//! Euclidean distance transforms on the GPU (`shaders/distance.wgsl`): a batch of masks in one
//! dispatch per step, 1 to 3 spatial dimensions, anisotropic spacing, plain (scipy's
//! `distance_transform_edt`) or signed (the boundary loss's map). CPU mirror:
//! [`crate::cpu::distance`].
//!
//! The exact method is Felzenszwalb & Huttenlocher's separable transform (one pass per axis,
//! linear work per line); the losses use it. The first axis needs no envelope (two walks per
//! line, by runs of same-class pixels; a loss's first axis reads its masks itself, so nothing
//! seeds its volumes; it also records which volumes hold one class only, a class absent from an
//! image or filling it, whose values it leaves final and whose lines the envelope passes then
//! skip), and lines of up to [`PRIVATE_LINE`] pixels keep theirs in private memory. Longer lines
//! need 5·len floats of scratch each, which covers every line at once where that fits one
//! storage binding; otherwise each axis pass walks the lines in windows that fit, so batches
//! larger than one binding's worth of scratch still work (at the cost of more, smaller
//! dispatches). Jump flooding variants trade exactness for fewer,
//! fully parallel steps (each a 3^d-neighbour look-up over every pixel). They are not faster on
//! every adapter: each of their log2(longest extent) steps reads 3^d neighbours of every pixel,
//! where the exact transform reads each pixel once per axis. On lavapipe the exact transform of
//! 16 masks of 256×256 takes 16 ms and JFA 0.5 s (criterion, BENCHMARKS.md); on GPUs the two
//! have not been timed against each other yet.
//!
//! Accuracy of the signed map against the exact transform, on masks made of five random discs
//! or balls (`tests/distance.rs`, `jfa_variants_accuracy`; a pixel is wrong when its error
//! exceeds 1e-3 relative):
//!
//! | shape | method | wrong pixels | max error | error of the summed distances |
//! |---|---|---|---|---|
//! | 4 × 128×128 | JFA | 0.273% | 0.528 | 2.8e-5 |
//! | 4 × 128×128 | JFA+1 | 0.168% | 0.378 | 1.5e-5 |
//! | 4 × 128×128 | JFA+2 | 0.073% | 0.354 | 6.1e-6 |
//! | 4 × 128×128 | 1+JFA | 0.153% | 0.301 | 1.0e-5 |
//! | 4 × 96×80, spacing (1, 2) | JFA | 0.036% | 0.485 | 5.0e-6 |
//! | 4 × 96×80, spacing (1, 2) | JFA+1 | 0.003% | 0.057 | 1.9e-7 |
//! | 4 × 96×80, spacing (1, 2) | JFA+2 | 0% | 0 | 1e-9 |
//! | 4 × 96×80, spacing (1, 2) | 1+JFA | 0.026% | 0.408 | 2.7e-6 |
//! | 2 × 32³ | JFA | 0.140% | 0.592 | 2.9e-5 |
//! | 2 × 32³ | JFA+1 | 0.011% | 0.180 | 1.0e-6 |
//! | 2 × 32³ | JFA+2 | 0.002% | 0.078 | 1.6e-7 |
//! | 2 × 32³ | 1+JFA | 0.021% | 0.220 | 2.8e-6 |
//!
//! The exact method matched the CPU mirror to f32 round-off in every case. JFA² (a second full
//! round) was not implemented: JFA+2 already leaves under 0.1% of the pixels wrong.

use crate::error::{check_buffer, Error, Result};
use crate::kernels::Kernels;
use crate::loss::bind::{bind_group, layout_entries, sized, storage, uniform, Slot};
use crate::shader::Family;

/// How a transform is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Method {
    /// Exact separable transform (Felzenszwalb–Huttenlocher), the default.
    #[default]
    Exact,
    /// Jump flooding: steps n/2, n/4, ..., 1 (n the largest extent, rounded up to a power of 2).
    Jfa,
    /// JFA followed by one more step of 1.
    JfaPlus1,
    /// JFA followed by steps of 2 and 1.
    JfaPlus2,
    /// A step of 1, then JFA.
    OnePlusJfa,
}

impl Method {
    /// Every method, for tables and benches.
    pub const ALL: [Method; 5] = [
        Method::Exact,
        Method::Jfa,
        Method::JfaPlus1,
        Method::JfaPlus2,
        Method::OnePlusJfa,
    ];

    /// The step lengths of a jump-flooding method for a largest extent `n` (empty for Exact).
    pub fn steps(self, n: usize) -> Vec<u32> {
        let mut jfa = Vec::new();
        let mut k = n.next_power_of_two() / 2;
        while k >= 1 {
            jfa.push(k as u32);
            k /= 2;
        }
        if jfa.is_empty() {
            jfa.push(1);
        }
        match self {
            Method::Exact => Vec::new(),
            Method::Jfa => jfa,
            Method::JfaPlus1 => [jfa, vec![1]].concat(),
            Method::JfaPlus2 => [jfa, vec![2, 1]].concat(),
            Method::OnePlusJfa => [vec![1], jfa].concat(),
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "exact" => Ok(Method::Exact),
            "jfa" => Ok(Method::Jfa),
            "jfa+1" => Ok(Method::JfaPlus1),
            "jfa+2" => Ok(Method::JfaPlus2),
            "1+jfa" => Ok(Method::OnePlusJfa),
            _ => Err(format!(
                "`{s}` is not one of exact, jfa, jfa+1, jfa+2, 1+jfa"
            )),
        }
    }
}

/// What the input buffer of a [`DistancePlan`] holds, `[count, *S]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaskSource {
    /// u32 masks, non-zero = foreground: `count` masks.
    #[default]
    Masks,
    /// i32 labels: `classes` masks per image (`label == class`), `count × classes` in all,
    /// ordered `[image, class, *S]`.
    Labels {
        /// Classes per image.
        classes: usize,
    },
    /// f32 probabilities, foreground where `p > 0.5`: `count` masks.
    Probabilities,
}

/// Options of a distance transform.
#[derive(Clone, Debug, PartialEq)]
pub struct DistanceOptions {
    /// Voxel size per spatial axis (scipy's `sampling`); empty means 1 on every axis.
    pub spacing: Vec<f32>,
    /// `false`: scipy's EDT (each mask pixel's distance to the nearest background pixel, 0
    /// outside; 0 everywhere for a full mask, where scipy measures to a virtual pixel before
    /// the first of axis 0). `true`: the boundary loss's signed map, `EDT(not M)` outside the mask and
    /// `-(EDT(M) - 1)` inside, 0 everywhere for an empty or full mask.
    pub signed: bool,
    /// The algorithm.
    pub method: Method,
    /// What the input holds.
    pub source: MaskSource,
}

impl DistanceOptions {
    /// Checks the options against the spatial extents of the masks, as
    /// [`Kernels::distance_plan`] does: 1 to 3 non-zero extents, and no spacing or one positive
    /// finite value per axis, whose square is a normal f32 and with which the grid's squared
    /// diagonal stays below [`NO_SOURCE`]` / 4` (the transforms work on squared distances in
    /// f32). For callers of the CPU reference ([`crate::cpu::distance`]), which
    /// assumes valid input.
    pub fn validate(&self, spatial: &[usize]) -> Result<()> {
        grid(spatial, &self.spacing).map(|_| ())
    }
}

impl Default for DistanceOptions {
    fn default() -> Self {
        DistanceOptions {
            spacing: Vec::new(),
            signed: false,
            method: Method::Exact,
            source: MaskSource::Masks,
        }
    }
}

/// Uniform parameters of `shaders/distance.wgsl` (`Params` there).
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DistanceParams {
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub first: u32,
    pub dims: [u32; 4],
    pub spacing: [f32; 4],
    pub axis: u32,
    pub nvol: u32,
    pub ignore_index: i32,
    pub alpha: f32,
    pub step: u32,
    pub parity: u32,
    /// edt_axis: the first line of this dispatch's window.
    pub line0: u32,
    /// edt_axis: the lines in this dispatch's window.
    pub line_count: u32,
}

// params, logits, targets (or masks), vol, env, out, kinds
pub(crate) const SLOTS: [Slot; 7] = [
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
];

/// The largest spatial extent of a distance transform: 2^24, so that positions along an axis
/// are exact in f32.
pub const MAX_EXTENT: usize = 1 << 24;

/// Validated spatial extents and spacing, padded to three axes.
pub(crate) fn grid(spatial: &[usize], spacing: &[f32]) -> Result<([u32; 4], [f32; 4])> {
    if spatial.is_empty() || spatial.len() > 3 || spatial.contains(&0) {
        return Err(Error::Shape(format!(
            "distance transforms take 1 to 3 non-zero spatial extents, got {spatial:?}"
        )));
    }
    if !spacing.is_empty() && spacing.len() != spatial.len() {
        return Err(Error::Parameter {
            loss: "distance",
            name: "spacing".into(),
            message: format!(
                "{} values given for {} spatial axes",
                spacing.len(),
                spatial.len()
            ),
        });
    }
    if let Some(x) = spacing.iter().find(|x| !x.is_finite() || **x <= 0.0) {
        return Err(Error::Parameter {
            loss: "distance",
            name: "spacing".into(),
            message: format!("{x} is not a positive number"),
        });
    }
    // Positions along an axis are f32 in the transforms (the envelope's parabolas, the first
    // axis's run ends): exact up to 2^24.
    if let Some(&d) = spatial.iter().find(|&&d| d > MAX_EXTENT) {
        return Err(Error::Shape(format!(
            "distance transforms take spatial extents up to {MAX_EXTENT} (2^24, where f32 \
             positions stop being exact), got {d} in {spatial:?}"
        )));
    }
    let mut dims = [1u32; 4];
    let mut sp = [1f32; 4];
    for (a, &d) in spatial.iter().enumerate() {
        dims[a] = d as u32;
        sp[a] = spacing.get(a).copied().unwrap_or(1.0);
    }
    // The transforms work on squared distances in f32, with NO_SOURCE (1e30) standing for
    // "none yet": the smallest distance (a spacing squared) must not underflow, and the largest
    // (the grid's diagonal squared) must stay well below NO_SOURCE, or real distances would read
    // as "none" and the envelope's sums of two of them could overflow. That allows spacings
    // from about 1.1e-19 to a diagonal of 5e14 units.
    if let Some(x) = spacing.iter().find(|x| *x * *x < f32::MIN_POSITIVE) {
        return Err(Error::Parameter {
            loss: "distance",
            name: "spacing".into(),
            message: format!("{x:e} is too small: its square underflows f32"),
        });
    }
    let diagonal: f64 = (0..3)
        .map(|a| (dims[a] as f64 * sp[a] as f64).powi(2))
        .sum();
    if diagonal >= NO_SOURCE as f64 / 4.0 {
        return Err(Error::Parameter {
            loss: "distance",
            name: "spacing".into(),
            message: format!(
                "[{}] is too large for extents {spatial:?}: the squared diagonal {diagonal:.2e} \
                 must stay below {:e}",
                spacing
                    .iter()
                    .map(|x| format!("{x:e}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                NO_SOURCE / 4.0
            ),
        });
    }
    Ok((dims, sp))
}

/// The squared distance that stands for "no pixel of the other class yet" in the GPU
/// transforms (`INF` in shaders/common/distance_values.wgsl; checked by a test): every real
/// squared distance must stay below it, which bounds the spacing ([`DistanceOptions::validate`]).
pub const NO_SOURCE: f32 = 1e30;

/// Lines of up to this many pixels keep the exact transform's envelope in private memory (per
/// invocation, three arrays of this length) and need no scratch buffer; longer lines take 5·len
/// floats of a storage buffer each (`PRIVATE_LINE` in shaders/distance.wgsl). The first axis
/// needs neither.
pub const PRIVATE_LINE: usize = 256;

/// Scratch floats of one line over `PRIVATE_LINE` in the envelope pass (`edt_axis`): positions,
/// heights and first pixels of the envelopes' entries, and the ends of the runs and of their
/// segments (len each).
fn line_scratch(len: usize) -> usize {
    5 * len
}

/// The exact transform's buffers and pipelines for `nvol` volumes (one per mask): shared by
/// [`DistancePlan`] and the distance-based losses.
pub(crate) struct Edt {
    pub layout: wgpu::BindGroupLayout,
    pub vol: wgpu::Buffer,
    pub env: wgpu::Buffer,
    /// Per volume, the classes its first axis saw (`kinds` in shaders/distance.wgsl): the
    /// envelope passes skip the lines of a volume of one class. Cleared by `record_passes`.
    kinds: wgpu::Buffer,
    method: Method,
    /// The first axis: on seeded volumes, or on a loss's masks (`Edt::new`'s `loss`), one
    /// pipeline per kind of volume (the targets', then for Hausdorff the prediction's), each over
    /// its lines.
    edt_first_axis: Vec<wgpu::ComputePipeline>,
    /// The envelope pass of each axis after the first (index axis - 1): with the envelope in
    /// private memory or, for lines over `PRIVATE_LINE`, in `env`.
    edt_axis: Vec<wgpu::ComputePipeline>,
    /// Hausdorff's map (`LossMap::new`): the last axis's envelope pass for the prediction
    /// volumes, writing the map (MAP_IN_LAST_AXIS); none with one spatial axis.
    map_last_axis: Option<wgpu::ComputePipeline>,
    jfa: [wgpu::ComputePipeline; 3],
    ndims: usize,
    nvol: usize,
    s: usize,
    dims: [u32; 4],
    /// Floats in `env`.
    env_len: usize,
}

/// The volumes of a loss's map ([`Edt::new`]): the masks of its targets, then for Hausdorff
/// those of its prediction.
#[derive(Clone, Copy)]
pub(crate) struct LossVolumes {
    pub hausdorff: bool,
    /// Hausdorff's α is 2: the map's pipeline takes ALPHA_TWO (shaders/distance.wgsl).
    pub alpha_two: bool,
    /// Floats `env` must hold for `seed_winner` (one per pixel), or 0.
    pub winners: usize,
}

impl Edt {
    /// `loss`: the volumes are a loss's masks, which the first axis reads itself (FROM_LOSS,
    /// built with `constants`; nothing seeds the volumes); for Hausdorff the last axis writes
    /// the map (MAP_IN_LAST_AXIS). `None`: seeded volumes (caller masks).
    pub fn new(
        kernels: &Kernels,
        constants: &[(&'static str, f64)],
        nvol: usize,
        spatial: &[usize],
        method: Method,
        loss: Option<LossVolumes>,
    ) -> Result<Self> {
        let hausdorff = loss.is_some_and(|l| l.hausdorff);
        let s: usize = spatial.iter().product();
        let (dims, _) = grid(spatial, &[])?;
        let vol_len = nvol
            .checked_mul(s)
            .ok_or_else(|| Error::Shape("too many volumes".into()))?;
        kernels.check_binding("distance volumes", vol_len as u64 * 4)?;
        // The axes whose envelope pass needs scratch in `env`: those after the first with lines
        // over PRIVATE_LINE.
        let scratch_axes = || {
            spatial
                .iter()
                .skip(1)
                .copied()
                .filter(|&d| d > PRIVATE_LINE)
        };
        let env_len = if method == Method::Exact {
            // v, h, z, run ends and segment ends per line: `line_scratch(len)` floats. Every line
            // at once where that fits one binding; otherwise the largest window of lines that
            // does (`record_passes` walks the lines window by window), as long as one line of
            // the longest axis fits.
            match scratch_axes().max() {
                None => 1, // nothing needs scratch (a binding still needs a buffer)
                Some(longest) => {
                    let all = scratch_axes()
                        .map(|d| nvol * (s / d) * line_scratch(d))
                        .max()
                        .unwrap_or(1);
                    let one_line = line_scratch(longest);
                    kernels.check_binding("distance scratch (one line)", one_line as u64 * 4)?;
                    let fit =
                        usize::try_from(kernels.max_binding_bytes() / 4).unwrap_or(usize::MAX);
                    all.min(fit).max(one_line)
                }
            }
        } else {
            // JFA: two copies of the nearest sources of two virtual volumes per mask
            // (shaders/distance.wgsl), every volume at once.
            let len = 4 * vol_len;
            kernels.check_binding("distance scratch", len as u64 * 4)?;
            // The shader packs a source's coordinates into one u32 and needs them in 31 bits,
            // so that none reads as its NONE (all ones). The check above bounds the pixels of a
            // mask, s, by 2^29 (4·s floats fit in MAX_BINDING_ELEMENTS = 2^31), and the fields
            // take Σ ceil(log2 d) < log2 s + 3 <= 32 bits.
            debug_assert!(
                dims[..3]
                    .iter()
                    .map(|&d| u32::BITS - (d - 1).leading_zeros())
                    .sum::<u32>()
                    <= 31
            );
            len
        };
        let env_len = env_len.max(loss.map_or(0, |l| l.winners));
        kernels.check_binding("distance scratch", env_len as u64 * 4)?;
        let device = kernels.device();
        let (layout, pipeline_layout) = kernels.layout(Family::Distance, &layout_entries(&SLOTS));
        let pipe = |entry| kernels.pipeline(Family::Distance, entry, constants, &pipeline_layout);
        // The separable passes read none of the seeding and finishing constants: built without
        // them, every plan of the device shares them (one compile each, not one per loss).
        // The envelope pass of an axis of extent d; with MAP_IN_LAST_AXIS for Hausdorff's map.
        let alpha_two = loss.is_some_and(|l| l.alpha_two);
        let envelope = |d: usize, map: bool| {
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            let constants = [
                ("PRIVATE_ENV", flag(d <= PRIVATE_LINE)),
                ("MAP_IN_LAST_AXIS", flag(map)),
                ("ALPHA_TWO", flag(map && alpha_two)),
            ];
            kernels.pipeline(Family::Distance, "edt_axis", &constants, &pipeline_layout)
        };
        let edt_axis = spatial
            .iter()
            .skip(1)
            .map(|&d| envelope(d, false))
            .collect::<Result<_>>()?;
        let map_last_axis = match spatial {
            [_, .., last] if hausdorff => Some(envelope(*last, true)?),
            _ => None,
        };
        // FROM_LOSS (shaders/distance.wgsl): 1 a loss's targets, 2 its prediction. Like the
        // envelope passes, the first axis on seeded volumes (`None`) reads no constant (one
        // pipeline for every plan of the device).
        let first_axis = |from: Option<f64>| {
            let constants = match from {
                None => Vec::new(),
                Some(from) => [constants, &[("FROM_LOSS", from)]].concat(),
            };
            kernels.pipeline(
                Family::Distance,
                "edt_first_axis",
                &constants,
                &pipeline_layout,
            )
        };
        let edt_first_axis = match loss {
            None => vec![first_axis(None)?],
            Some(_) if hausdorff => vec![first_axis(Some(1.0))?, first_axis(Some(2.0))?],
            Some(_) => vec![first_axis(Some(1.0))?],
        };
        Ok(Edt {
            map_last_axis,
            edt_first_axis,
            edt_axis,
            jfa: [pipe("jfa_init")?, pipe("jfa_step")?, pipe("jfa_finish")?],
            method,
            layout,
            vol: storage(
                device,
                "segloss distance volumes",
                vol_len,
                wgpu::BufferUsages::empty(),
            ),
            env: storage(
                device,
                "segloss distance scratch",
                env_len,
                wgpu::BufferUsages::empty(),
            ),
            kinds: storage(
                device,
                "segloss distance volume kinds",
                nvol,
                wgpu::BufferUsages::COPY_DST,
            ),
            ndims: spatial.len(),
            nvol,
            s,
            dims,
            env_len,
        })
    }

    /// Records the transform of every volume (seeded, or for a loss read from its masks by the
    /// first axis): the separable passes (one per spatial axis) or the jump-flooding steps. With
    /// `map_last_axis` (Hausdorff, [`Edt::writes_map`]), the last axis runs over the target's
    /// volumes (the first half) and then the prediction's, whose pass writes the loss map into
    /// `out` instead of their volumes.
    pub fn record_passes(
        &self,
        kernels: &Kernels,
        encoder: &mut wgpu::CommandEncoder,
        base: DistanceParams,
        logits: (&wgpu::Buffer, usize),
        targets: (&wgpu::Buffer, usize),
        out: (&wgpu::Buffer, usize),
    ) {
        if self.method == Method::Exact {
            // The first axis ORs into `kinds` what each line sees of its volume's classes.
            encoder.clear_buffer(&self.kinds, 0, None);
        }
        // One pass: `pipeline` over `items` threads' worth of work, with `params` on `base`.
        let mut dispatch = |label: &str,
                            pipeline: &wgpu::ComputePipeline,
                            params: DistanceParams,
                            items: usize| {
            let params = DistanceParams {
                nvol: self.nvol as u32,
                ..params
            };
            let bg = self.bind(kernels, &params, logits, targets, out);
            let mut pass = kernels.begin_pass(encoder, label);
            pass.set_bind_group(0, &bg, &[]);
            pass.set_pipeline(pipeline);
            pass.dispatch_workgroups(kernels.workgroups(items), 1, 1);
        };
        if self.method != Method::Exact {
            let longest = self.dims.iter().copied().max().unwrap_or(1) as usize;
            // Two virtual volumes per mask (one per class's transform).
            let items = 2 * self.nvol * self.s;
            let mut parity = 0u32;
            let mut run = |pipeline, step, parity| {
                let params = DistanceParams {
                    step,
                    parity,
                    ..base
                };
                dispatch("segloss jfa", pipeline, params, items);
            };
            run(&self.jfa[0], 0, parity);
            for step in self.method.steps(longest) {
                run(&self.jfa[1], step, parity);
                parity = 1 - parity;
            }
            run(&self.jfa[2], 0, parity);
            return;
        }
        // Axis 0 on the seeded volumes (±INF) or a loss's masks: two walks per line, no
        // scratch, one dispatch per kind of volume (Hausdorff's: the targets' half of the
        // lines, then the prediction's). Each line records the classes it saw in `kinds`.
        let lines = self.nvol * (self.s / self.dims[0] as usize);
        let share = lines / self.edt_first_axis.len();
        for (k, pipeline) in self.edt_first_axis.iter().enumerate() {
            let label = if k == 0 {
                "segloss edt first axis"
            } else {
                "segloss edt first axis (prediction)"
            };
            let params = DistanceParams {
                axis: 0,
                line0: (k * share) as u32,
                line_count: share as u32,
                ..base
            };
            dispatch(label, pipeline, params, share);
        }
        // The other axes: the envelope of parabolas over the squared distances so far.
        for axis in 1..self.ndims {
            let len = self.dims[axis] as usize;
            let lines = self.nvol * (self.s / len);
            // Lines whose scratch fits `env` at once (all of them unless the binding limit
            // forced a window in `new`, or when they need none); the windows run one after
            // another.
            let window = if len <= PRIVATE_LINE {
                lines
            } else {
                (self.env_len / line_scratch(len)).max(1)
            };
            // The pipeline of each range of lines.
            let plain = &self.edt_axis[axis - 1];
            let ranges = match &self.map_last_axis {
                Some(map) if axis == self.ndims - 1 => {
                    vec![(0..lines / 2, plain), (lines / 2..lines, map)]
                }
                _ => vec![(0..lines, plain)],
            };
            for (range, pipeline) in ranges {
                let end = range.end;
                for line0 in range.step_by(window) {
                    let count = window.min(end - line0);
                    let params = DistanceParams {
                        axis: axis as u32,
                        line0: line0 as u32,
                        line_count: count as u32,
                        ..base
                    };
                    dispatch("segloss edt axis", pipeline, params, count);
                }
            }
        }
    }

    /// Whether the last axis writes Hausdorff's map (see [`Edt::record_passes`]).
    pub fn writes_map(&self) -> bool {
        self.map_last_axis.is_some()
    }

    /// A bind group over the given tensors (each bound at the plan's size) and the plan's
    /// volumes and scratch.
    pub fn bind(
        &self,
        kernels: &Kernels,
        params: &DistanceParams,
        logits: (&wgpu::Buffer, usize),
        targets: (&wgpu::Buffer, usize),
        out: (&wgpu::Buffer, usize),
    ) -> wgpu::BindGroup {
        let device = kernels.device();
        let u = uniform(device, "segloss distance params", params);
        bind_group(
            device,
            "segloss distance",
            &self.layout,
            vec![
                u.as_entire_binding(),
                sized(logits.0, logits.1),
                sized(targets.0, targets.1),
                self.vol.as_entire_binding(),
                self.env.as_entire_binding(),
                sized(out.0, out.1),
                self.kinds.as_entire_binding(),
            ],
        )
    }
}

/// A planned distance transform of `masks` masks of one spatial shape.
pub struct DistancePlan {
    kernels: Kernels,
    edt: Edt,
    seed: wgpu::ComputePipeline,
    finish: wgpu::ComputePipeline,
    /// Input images (or masks) and output masks.
    count: usize,
    masks: usize,
    classes: usize,
    s: usize,
    dims: [u32; 4],
    spacing: [f32; 4],
    /// A stand-in for the unused logits binding.
    dummy: wgpu::Buffer,
}

impl std::fmt::Debug for DistancePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistancePlan")
            .field("masks", &self.masks)
            .field("dims", &self.dims)
            .field("spacing", &self.spacing)
            .finish()
    }
}

impl Kernels {
    /// Plans the transform of `count` inputs of extents `spatial` (1 to 3 axes): `count` masks,
    /// or `count` label images giving `classes` masks each (see [`MaskSource`]).
    pub fn distance_plan(
        &self,
        count: usize,
        spatial: &[usize],
        options: &DistanceOptions,
    ) -> Result<DistancePlan> {
        let (dims, spacing) = grid(spatial, &options.spacing)?;
        let (classes, seed_entry) = match options.source {
            MaskSource::Masks => (1, "seed_masks"),
            MaskSource::Labels { classes } => (classes, "seed_labels"),
            MaskSource::Probabilities => (1, "seed_probabilities"),
        };
        let masks = count.saturating_mul(classes);
        if masks == 0 {
            return Err(Error::Shape(format!(
                "no masks to transform ({count} inputs, {classes} classes)"
            )));
        }
        let s: usize = spatial.iter().product();
        let total = masks
            .checked_mul(s)
            .filter(|&t| t <= u32::MAX as usize / 2)
            .ok_or_else(|| Error::Shape(format!("{masks} masks of {spatial:?} are too many")))?;
        self.check_binding("masks", total as u64 * 4)?;
        let constants = [("SIGNED", if options.signed { 1.0 } else { 0.0 })];
        let edt = Edt::new(self, &constants, masks, spatial, options.method, None)?;
        let (_, pipeline_layout) = self.layout(Family::Distance, &layout_entries(&SLOTS));
        Ok(DistancePlan {
            seed: self.pipeline(Family::Distance, seed_entry, &constants, &pipeline_layout)?,
            finish: self.pipeline(Family::Distance, "finish_edt", &constants, &pipeline_layout)?,
            dummy: storage(
                self.device(),
                "segloss unused",
                1,
                wgpu::BufferUsages::empty(),
            ),
            kernels: self.clone(),
            edt,
            count,
            masks,
            classes,
            s,
            dims,
            spacing,
        })
    }
}

impl DistancePlan {
    /// Elements of the output: masks × pixels.
    pub fn len(&self) -> usize {
        self.masks * self.s
    }

    /// Elements of the input: inputs × pixels.
    pub fn input_len(&self) -> usize {
        self.count * self.s
    }

    /// Always false: a plan has at least one mask of at least one pixel.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Records the transform of `masks` (as planned: u32 masks, i32 labels or f32
    /// probabilities, [`DistancePlan::input_len`] elements) into `out` (f32,
    /// [`DistancePlan::len`] elements, `[mask, *S]`). Both need `STORAGE`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        masks: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        for (name, b, elems) in [("masks", masks, self.input_len()), ("out", out, self.len())] {
            check_buffer(name, b, wgpu::BufferUsages::STORAGE, elems as u64 * 4)?;
        }
        if masks == out {
            return Err(Error::Buffer {
                name: "out",
                message: "is the same buffer as `masks`".into(),
            });
        }
        let params = DistanceParams {
            n: self.count as u32,
            c: self.classes as u32,
            s: self.s as u32,
            first: 0,
            dims: self.dims,
            spacing: self.spacing,
            axis: 0,
            nvol: self.masks as u32,
            ignore_index: 0,
            alpha: 1.0,
            step: 0,
            parity: 0,
            line0: 0,
            line_count: 0,
        };
        let kernels = &self.kernels;
        let items = self.len();
        let (dummy, masks, out) = ((&self.dummy, 1), (masks, self.input_len()), (out, items));
        let bg = self.edt.bind(kernels, &params, dummy, masks, out);
        {
            let mut pass = kernels.begin_pass(encoder, "segloss distance seed");
            pass.set_bind_group(0, &bg, &[]);
            pass.set_pipeline(&self.seed);
            pass.dispatch_workgroups(kernels.workgroups(self.input_len()), 1, 1);
        }
        self.edt
            .record_passes(kernels, encoder, params, dummy, masks, out);
        let mut pass = kernels.begin_pass(encoder, "segloss distance finish");
        pass.set_bind_group(0, &bg, &[]);
        pass.set_pipeline(&self.finish);
        pass.dispatch_workgroups(kernels.workgroups(items), 1, 1);
        Ok(())
    }
}

/// The distance map of a distance-based loss, computed on the GPU from its targets (and, for
/// Hausdorff, its prediction) in the same command stream: `[N, C, *S]`, 0 for a dropped channel 0
/// (no pass writes it: wgpu zero-initialises the buffer, and the losses never read it).
pub(crate) struct LossMap {
    edt: Edt,
    /// Hausdorff under a softmax: `seed_winner` (the first axis reads the other masks itself).
    seed: Option<wgpu::ComputePipeline>,
    finish: wgpu::ComputePipeline,
    params: DistanceParams,
    /// The map of a plain `record`.
    pub map: wgpu::Buffer,
    pixels: usize,
    numel: usize,
    targets_len: usize,
    /// Stands in for the logits when a boundary map is made from the targets alone.
    dummy: wgpu::Buffer,
}

/// What a loss map holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapKind {
    /// The boundary loss's signed map of the target.
    Boundary = 0,
    /// `dt_p^α + dt_g^α` of the Hausdorff losses.
    Hausdorff = 1,
}

/// What a loss map needs to know about the loss.
pub(crate) struct LossMapSpec<'a> {
    pub kind: MapKind,
    pub shape: &'a crate::Shape,
    pub targets_len: usize,
    pub first: usize,
    pub spacing: &'a [f32],
    pub alpha: f32,
    pub ignore_index: Option<i32>,
    pub dense: bool,
    /// ACT of the shader (0 softmax, 1 sigmoid, 2 none).
    pub act: u32,
}

impl LossMap {
    pub fn new(kernels: &Kernels, spec: &LossMapSpec) -> Result<Self> {
        let shape = spec.shape;
        let spatial = shape.spatial();
        let (dims, spacing) = grid(&spatial, spec.spacing)?;
        let kept = shape.c() - spec.first;
        let masks = shape.n()
            * kept
            * if spec.kind == MapKind::Hausdorff {
                2
            } else {
                1
            };
        let hausdorff = spec.kind == MapKind::Hausdorff;
        let alpha_two = hausdorff && spec.alpha == 2.0;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("DENSE", flag(spec.dense)),
            ("HAS_IGNORE", flag(spec.ignore_index.is_some())),
            ("ACT", spec.act as f64),
            ("MAP_KIND", spec.kind as u32 as f64),
            ("ALPHA_TWO", flag(alpha_two)),
        ];
        // A softmax prediction's masks come from `seed_winner`, one class per pixel in `env`.
        let winner = hausdorff && spec.act == 0;
        let edt = Edt::new(
            kernels,
            &constants,
            masks,
            &spatial,
            Method::Exact,
            Some(LossVolumes {
                hausdorff,
                alpha_two,
                winners: if winner { shape.pixels() } else { 0 },
            }),
        )?;
        let (_, pipeline_layout) = kernels.layout(Family::Distance, &layout_entries(&SLOTS));
        let pipe = |entry| kernels.pipeline(Family::Distance, entry, &constants, &pipeline_layout);
        kernels.check_binding("distance map", shape.numel() as u64 * 4)?;
        Ok(LossMap {
            seed: winner.then(|| pipe("seed_winner")).transpose()?,
            finish: pipe("finish_map")?,
            params: DistanceParams {
                n: shape.n() as u32,
                c: shape.c() as u32,
                s: shape.s() as u32,
                first: spec.first as u32,
                dims,
                spacing,
                axis: 0,
                nvol: masks as u32,
                ignore_index: spec.ignore_index.unwrap_or(0),
                alpha: spec.alpha,
                step: 0,
                parity: 0,
                line0: 0,
                line_count: 0,
            },
            map: storage(
                kernels.device(),
                "segloss distance map",
                shape.numel(),
                wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            ),
            dummy: storage(
                kernels.device(),
                "segloss unused",
                1,
                wgpu::BufferUsages::empty(),
            ),
            edt,
            pixels: shape.pixels(),
            numel: shape.numel(),
            targets_len: spec.targets_len,
        })
    }

    /// Records the map of `logits` and `targets` into `out` ([N, C, *S] f32); with `out` `None`,
    /// only the distance volumes it is made from ([`LossMap::volumes`]), for a pass that makes
    /// each value of the map where it needs it (boundary only: Hausdorff's last axis writes the
    /// map, not the prediction's volumes). The boundary map reads no logits (`None`).
    pub fn record(
        &self,
        kernels: &Kernels,
        encoder: &mut wgpu::CommandEncoder,
        logits: Option<&wgpu::Buffer>,
        targets: &wgpu::Buffer,
        out: Option<&wgpu::Buffer>,
    ) {
        let logits = logits.map_or((&self.dummy, 1), |l| (l, self.numel));
        let targets = (targets, self.targets_len);
        let out_binding = out.map_or((&self.dummy, 1), |o| (o, self.numel));
        let bg = self
            .edt
            .bind(kernels, &self.params, logits, targets, out_binding);
        if let Some(seed) = &self.seed {
            let mut pass = kernels.begin_pass(encoder, "segloss distance map seed");
            pass.set_bind_group(0, &bg, &[]);
            pass.set_pipeline(seed);
            pass.dispatch_workgroups(kernels.workgroups(self.pixels), 1, 1);
        }
        self.edt
            .record_passes(kernels, encoder, self.params, logits, targets, out_binding);
        debug_assert!(out.is_some() || !self.edt.writes_map());
        if out.is_none() || self.edt.writes_map() {
            return;
        }
        let mut pass = kernels.begin_pass(encoder, "segloss distance map");
        pass.set_bind_group(0, &bg, &[]);
        pass.set_pipeline(&self.finish);
        pass.dispatch_workgroups(kernels.workgroups(self.numel), 1, 1);
    }

    /// The distance volumes of the last `record`: one per (image, kept class) of the targets,
    /// then for Hausdorff one per (image, kept class) of the prediction, [`crate::Shape::s`]
    /// floats each (`shaders/common/distance_values.wgsl` says what they hold).
    pub fn volumes(&self) -> &wgpu::Buffer {
        &self.edt.vol
    }
}
