//! CPU mirror of `shaders/reduce.wgsl`: the same two-level sum in the same order, in f32, so a
//! test can compare the GPU's result bit for bit where the adapter has no subgroups.

use crate::kernels::WG;

/// Sums `x` as the shared-memory reduction does: `nwg` workgroups of `WG` threads, each thread
/// a grid-stride subset, each workgroup a fixed binary tree, then the partials the same way.
pub fn tree_sum(x: &[f32], nwg: u32) -> f32 {
    let threads = (nwg * WG) as usize;
    let mut partials = Vec::with_capacity(nwg as usize);
    for w in 0..nwg as usize {
        let lanes: Vec<f32> = (0..WG as usize)
            .map(|l| {
                let mut acc = 0.0f32;
                let mut i = w * WG as usize + l;
                while i < x.len() {
                    acc += x[i];
                    i += threads;
                }
                acc
            })
            .collect();
        partials.push(workgroup_tree(lanes));
    }
    let lanes: Vec<f32> = (0..WG as usize)
        .map(|l| {
            let mut acc = 0.0f32;
            let mut i = l;
            while i < partials.len() {
                acc += partials[i];
                i += WG as usize;
            }
            acc
        })
        .collect();
    workgroup_tree(lanes)
}

fn workgroup_tree(mut v: Vec<f32>) -> f32 {
    let mut stride = v.len() / 2;
    while stride > 0 {
        for i in 0..stride {
            v[i] += v[i + stride];
        }
        stride /= 2;
    }
    v[0]
}
