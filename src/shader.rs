//! Loads the WGSL sources and resolves their `#include "path"` lines.
//!
//! WGSL has no import mechanism, so shared pieces under `shaders/common/` are spliced in textually
//! (each file once). Two includes are virtual, resolved by the device's capabilities (`Caps`):
//! `common/reduce.wgsl` is the subgroup reduction when the device has the `SUBGROUP` feature and
//! the shared-memory tree otherwise (both define the same `Lane` struct and `wg_sum` function);
//! `common/logits_vec4.wgsl` binds the region family's logits a second time as vec4s where the
//! device allows a ninth storage buffer per stage, and reads them one by one otherwise.

/// The device capabilities that change a family's WGSL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caps {
    /// The device has `Features::SUBGROUP` (and the kernels use it).
    pub subgroups: bool,
    /// The device allows at least 9 storage buffers per shader stage (WebGPU's default limit is
    /// 8): the region family binds the logits a second time, as `array<vec4<f32>>`.
    pub logits_vec4: bool,
}

impl Caps {
    /// Every combination, for validation.
    pub const ALL: [Caps; 4] = [
        Caps {
            subgroups: false,
            logits_vec4: false,
        },
        Caps {
            subgroups: false,
            logits_vec4: true,
        },
        Caps {
            subgroups: true,
            logits_vec4: false,
        },
        Caps {
            subgroups: true,
            logits_vec4: true,
        },
    ];

    /// Storage buffers per shader stage that `logits_vec4` needs.
    pub const LOGITS_VEC4_STORAGE_BUFFERS: u32 = 9;
}

/// A kernel family: one WGSL file under `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `shaders/pixel.wgsl`: the pixel-wise losses.
    Pixel,
    /// `shaders/region.wgsl`: the Dice family.
    Region,
    /// `shaders/distance.wgsl`: distance transforms and the distance losses' maps.
    Distance,
    /// `shaders/sort.wgsl`: the radix sort.
    Sort,
    /// `shaders/select.wgsl`: the public top-k selection.
    Select,
    /// `shaders/scan.wgsl`: the public segmented scan.
    Scan,
    /// `shaders/lovasz.wgsl`: the Lovász losses.
    Lovasz,
    /// `shaders/topk.wgsl`: the top-k loss (radix select).
    Topk,
    /// `shaders/contour.wgsl`: the active contour loss.
    Contour,
    /// `shaders/skeleton.wgsl`: the soft skeleton of clDice.
    Skeleton,
    /// `shaders/reduce.wgsl`: the standalone deterministic sum (tests and benches).
    Reduce,
}

impl Family {
    /// Every family, for validation.
    pub const ALL: [Family; 11] = [
        Family::Pixel,
        Family::Region,
        Family::Distance,
        Family::Sort,
        Family::Select,
        Family::Scan,
        Family::Lovasz,
        Family::Topk,
        Family::Contour,
        Family::Skeleton,
        Family::Reduce,
    ];

    /// The file name under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Family::Pixel => "pixel.wgsl",
            Family::Region => "region.wgsl",
            Family::Distance => "distance.wgsl",
            Family::Sort => "sort.wgsl",
            Family::Select => "select.wgsl",
            Family::Scan => "scan.wgsl",
            Family::Lovasz => "lovasz.wgsl",
            Family::Topk => "topk.wgsl",
            Family::Contour => "contour.wgsl",
            Family::Skeleton => "skeleton.wgsl",
            Family::Reduce => "reduce.wgsl",
        }
    }
}

const SOURCES: &[(&str, &str)] = &[
    ("pixel.wgsl", include_str!("../shaders/pixel.wgsl")),
    ("region.wgsl", include_str!("../shaders/region.wgsl")),
    ("distance.wgsl", include_str!("../shaders/distance.wgsl")),
    ("sort.wgsl", include_str!("../shaders/sort.wgsl")),
    ("select.wgsl", include_str!("../shaders/select.wgsl")),
    ("scan.wgsl", include_str!("../shaders/scan.wgsl")),
    ("lovasz.wgsl", include_str!("../shaders/lovasz.wgsl")),
    ("topk.wgsl", include_str!("../shaders/topk.wgsl")),
    ("contour.wgsl", include_str!("../shaders/contour.wgsl")),
    ("skeleton.wgsl", include_str!("../shaders/skeleton.wgsl")),
    ("reduce.wgsl", include_str!("../shaders/reduce.wgsl")),
    (
        "common/grid.wgsl",
        include_str!("../shaders/common/grid.wgsl"),
    ),
    (
        "common/activation.wgsl",
        include_str!("../shaders/common/activation.wgsl"),
    ),
    (
        "common/terms.wgsl",
        include_str!("../shaders/common/terms.wgsl"),
    ),
    (
        "common/pixel_cache.wgsl",
        include_str!("../shaders/common/pixel_cache.wgsl"),
    ),
    (
        "common/status.wgsl",
        include_str!("../shaders/common/status.wgsl"),
    ),
    (
        "common/scan.wgsl",
        include_str!("../shaders/common/scan.wgsl"),
    ),
    (
        "common/select.wgsl",
        include_str!("../shaders/common/select.wgsl"),
    ),
    (
        "common/segscan.wgsl",
        include_str!("../shaders/common/segscan.wgsl"),
    ),
    (
        "common/targets.wgsl",
        include_str!("../shaders/common/targets.wgsl"),
    ),
    (
        "common/distance_values.wgsl",
        include_str!("../shaders/common/distance_values.wgsl"),
    ),
    (
        "common/reduce_shared.wgsl",
        include_str!("../shaders/common/reduce_shared.wgsl"),
    ),
    (
        "common/reduce_subgroup.wgsl",
        include_str!("../shaders/common/reduce_subgroup.wgsl"),
    ),
    (
        "common/logits_vec4_bound.wgsl",
        include_str!("../shaders/common/logits_vec4_bound.wgsl"),
    ),
    (
        "common/logits_vec4_none.wgsl",
        include_str!("../shaders/common/logits_vec4_none.wgsl"),
    ),
];

fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The WGSL files this build carries, as (path under `shaders/`, text) pairs: every family's
/// file and every shared piece under `shaders/common/`.
pub fn sources() -> impl Iterator<Item = (&'static str, &'static str)> {
    SOURCES.iter().copied()
}

/// A fingerprint of WGSL sources: FNV-1a (64 bits) over each path and text in turn. Benchmark
/// records carry [`digest`] so that a figure names the kernels it measured; comparing it with the
/// digest of the files on disk tells a stale build (a binary compiled from edited shaders that
/// were restored since) from a current one. Not a cryptographic hash.
pub fn digest_of<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, text) in files {
        // A zero byte after each field, so that moving text between a path and its file changes
        // the digest.
        for b in path.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }
    h
}

/// The fingerprint of the WGSL compiled into this build ([`digest_of`] over [`sources`]).
pub fn digest() -> u64 {
    digest_of(sources())
}

/// Whether the WGSL files under `dir` (a checkout's `shaders/` folder) differ from those compiled
/// into this build: `Some(true)` where a file differs or is missing there, `Some(false)` where
/// every one matches, `None` where `dir` is not a folder (a binary run away from its checkout).
/// A tool built from edited shaders that were restored since would time other kernels than the
/// checkout's; this is how it can tell.
pub fn differs_from_dir(dir: &std::path::Path) -> Option<bool> {
    if !dir.is_dir() {
        return None;
    }
    let mut files = Vec::new();
    for (path, _) in sources() {
        match std::fs::read_to_string(dir.join(path)) {
            Ok(text) => files.push((path, text)),
            Err(_) => return Some(true),
        }
    }
    Some(digest_of(files.iter().map(|(p, t)| (*p, t.as_str()))) != digest())
}

/// The complete WGSL of `family`, includes resolved, for a device with `caps`.
pub fn compose(family: Family, caps: Caps) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    splice(family.file(), caps, &mut seen, &mut out);
    out
}

fn splice(name: &str, caps: Caps, seen: &mut Vec<String>, out: &mut String) {
    let name = match name {
        "common/reduce.wgsl" if caps.subgroups => "common/reduce_subgroup.wgsl",
        "common/reduce.wgsl" => "common/reduce_shared.wgsl",
        "common/logits_vec4.wgsl" if caps.logits_vec4 => "common/logits_vec4_bound.wgsl",
        "common/logits_vec4.wgsl" => "common/logits_vec4_none.wgsl",
        other => other,
    };
    if seen.iter().any(|s| s == name) {
        return;
    }
    seen.push(name.to_string());
    // Sources are compiled in: a missing one is a bug in this table, caught by the naga test.
    let text = source(name).unwrap_or_else(|| panic!("segloss: no WGSL source named {name}"));
    for line in text.lines() {
        match line.trim().strip_prefix("#include ") {
            Some(rest) => splice(rest.trim().trim_matches('"'), caps, seen, out),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// Parses and validates `family` with naga, as wgpu would, with no adapter.
/// Returns naga's message on failure.
pub fn validate(family: Family, caps: Caps) -> Result<naga::Module, String> {
    validate_with_info(family, caps).map(|(module, _)| module)
}

/// The most workgroup memory (bytes) any entry point of `family` uses, on a device with `caps`:
/// what `Kernels` checks the device's `max_compute_workgroup_storage_size` against.
pub fn workgroup_storage(family: Family, caps: Caps) -> Result<u32, String> {
    let (module, info) = validate_with_info(family, caps)?;
    let mut most = 0;
    for (i, _) in module.entry_points.iter().enumerate() {
        let uses = info.get_entry_point(i);
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(h, g)| g.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
            .map(|(_, g)| module.types[g.ty].inner.size(module.to_ctx()))
            .sum();
        most = most.max(bytes);
    }
    Ok(most)
}

/// The storage buffers `family` binds on a device with `caps` (every entry point shares one
/// layout): what `Kernels` checks the device's `max_storage_buffers_per_shader_stage` against.
pub fn storage_buffers(family: Family, caps: Caps) -> Result<u32, String> {
    let (module, _) = validate_with_info(family, caps)?;
    let mut bindings: Vec<(u32, u32)> = module
        .global_variables
        .iter()
        .filter(|(_, g)| matches!(g.space, naga::AddressSpace::Storage { .. }))
        .filter_map(|(_, g)| g.binding.as_ref().map(|b| (b.group, b.binding)))
        .collect();
    bindings.sort_unstable();
    bindings.dedup();
    Ok(bindings.len() as u32)
}

fn validate_with_info(
    family: Family,
    caps: Caps,
) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let subgroups = caps.subgroups;
    let src = compose(family, caps);
    let module = naga::front::wgsl::parse_str(&src)
        .map_err(|e| format!("{}: {}", family.file(), e.emit_to_string(&src)))?;
    let mut caps = naga::valid::Capabilities::default();
    if subgroups {
        caps |= naga::valid::Capabilities::SUBGROUP;
    }
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    if subgroups {
        validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
        validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
    }
    let info = validator
        .validate(&module)
        .map_err(|e| format!("{}: {}", family.file(), e.emit_to_string(&src)))?;
    Ok((module, info))
}
