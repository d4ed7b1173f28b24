// Workgroup scans (inclusive, in local-index order, fixed shape), shared by the sort, the
// Lovász losses, top-k and the segmented scan (common/segscan.wgsl). Integer-valued sums are
// exact in f32 below 2^24; the order of every sum is fixed, so results are reproducible.

var<workgroup> scan_f32: array<f32, WG>;
var<workgroup> scan_u32: array<u32, WG>;

// Inclusive scan of one value per thread in local-index order (Hillis–Steele, fixed shape).
fn wg_inclusive_scan_f32(v: f32, lid: u32) -> f32 {
    scan_f32[lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off * 2u) {
        var x = scan_f32[lid];
        if lid >= off {
            x = x + scan_f32[lid - off];
        }
        workgroupBarrier();
        scan_f32[lid] = x;
        workgroupBarrier();
    }
    let r = scan_f32[lid];
    workgroupBarrier();
    return r;
}

fn wg_inclusive_scan_u32(v: u32, lid: u32) -> u32 {
    scan_u32[lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < WG; off = off * 2u) {
        var x = scan_u32[lid];
        if lid >= off {
            x = x + scan_u32[lid - off];
        }
        workgroupBarrier();
        scan_u32[lid] = x;
        workgroupBarrier();
    }
    let r = scan_u32[lid];
    workgroupBarrier();
    return r;
}

