// The workgroup scan of the radix select's tie counts (common/select.wgsl: top-k and the public
// select), in local-index order with a fixed shape. The sort and the segmented scan use the
// subgroup-aware scans of common/reduce.wgsl instead.

var<workgroup> scan_u32: array<u32, WG>;

// Inclusive scan of one value per thread in local-index order (Hillis–Steele, fixed shape).
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

