// What one element of a distance volume holds, and the loss maps made from it: shared by
// distance.wgsl, which computes the volumes and the maps, and region.wgsl, whose fused boundary
// pass makes the signed map straight from them. CPU mirror: src/cpu/distance.rs (`opposite_distance`,
// `signed_map`) and `loss_maps` in src/cpu/region.rs.
//
// A volume element is the squared distance to the nearest pixel of the other class, negative
// inside the mask, and ±INF where there is none (an empty or full mask). Needs
// common/activation.wgsl (pow_nonneg).

// Squared distances at or above this are "no source yet". Must match `NO_SOURCE` in
// src/distance.rs (checked by a test), which keeps every real squared distance below it.
const INF: f32 = 1e30;

// The distance to the nearest pixel of the other class (0 when there is none), and whether the
// pixel is in the mask.
fn opposite_distance_of(f: f32) -> vec2<f32> {
    let d = abs(f);
    return vec2<f32>(select(sqrt(d), 0.0, d >= INF), f32(f < 0.0));
}

// The boundary loss's signed map: EDT(not M) outside the mask, -(EDT(M) - 1) inside; 0 for an
// empty or full mask.
fn signed_map_of(f: f32) -> f32 {
    let od = opposite_distance_of(f);
    return select(od.x, -(od.x - 1.0), od.y > 0.5 && od.x > 0.0);
}

// dt^α (dt as in `opposite_distance_of`) from the squared distance d²: (d²)^(α/2), which for
// MONAI's default α = 2 is d² itself (no sqrt, exp2 or log2). The CPU mirror takes the power of
// the distance; the same number.
fn distance_power_of(f: f32, alpha: f32) -> f32 {
    let d = abs(f);
    let d2 = select(d, 0.0, d >= INF);
    if alpha == 2.0 {
        return d2;
    }
    return pow_nonneg(d2, 0.5 * alpha);
}
