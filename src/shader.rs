//! Loads the WGSL sources and resolves their `#include "path"` lines.
//!
//! WGSL has no import mechanism, so shared pieces under `shaders/common/` are spliced in textually
//! (each file once). `common/reduce.wgsl` is virtual: it resolves to the subgroup reduction when the
//! device has the `SUBGROUP` feature and to the shared-memory tree otherwise; both define the same
//! `Lane` struct and `wg_sum` function.

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
];

fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The complete WGSL of `family`, includes resolved, for a device with or without subgroups.
pub fn compose(family: Family, subgroups: bool) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    splice(family.file(), subgroups, &mut seen, &mut out);
    out
}

fn splice(name: &str, subgroups: bool, seen: &mut Vec<String>, out: &mut String) {
    let name = match name {
        "common/reduce.wgsl" if subgroups => "common/reduce_subgroup.wgsl",
        "common/reduce.wgsl" => "common/reduce_shared.wgsl",
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
            Some(rest) => splice(rest.trim().trim_matches('"'), subgroups, seen, out),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// Parses and validates `family` with naga, as wgpu would, with no adapter.
/// Returns naga's message on failure.
pub fn validate(family: Family, subgroups: bool) -> Result<naga::Module, String> {
    let src = compose(family, subgroups);
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
    validator
        .validate(&module)
        .map_err(|e| format!("{}: {}", family.file(), e.emit_to_string(&src)))?;
    Ok(module)
}
