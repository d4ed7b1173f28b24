//! CPU mirror of `shaders/distance.wgsl`, in f64: the exact separable transform (the same lower
//! envelope as the shader, line by line; the shader builds one per run of same-class pixels, this
//! one per class over the whole line, which gives the same minima, and keeps each parabola's
//! start as a pixel index where this keeps the real breakpoint), and a brute-force transform as
//! the oracle of the oracle.

/// Squared distances "no source yet".
const INF: f64 = f64::INFINITY;

/// Extents and element strides of up to three spatial axes.
fn axes(spatial: &[usize]) -> Vec<(usize, usize)> {
    (0..spatial.len())
        .map(|a| (spatial[a], spatial[a + 1..].iter().product()))
        .collect()
}

/// Felzenszwalb–Huttenlocher on one line: `f` squared distances (INF: none), positions q·sp.
fn envelope_1d(f: &[f64], sp: f64) -> Vec<f64> {
    let n = f.len();
    let (mut v, mut z) = (vec![0usize; n], vec![0.0f64; n + 1]);
    let mut k: isize = -1;
    for q in 0..n {
        if f[q] == INF {
            continue;
        }
        let xq = q as f64 * sp;
        let mut s = f64::NEG_INFINITY;
        while k >= 0 {
            let vk = v[k as usize];
            let xv = vk as f64 * sp;
            s = ((f[q] + xq * xq) - (f[vk] + xv * xv)) / (2.0 * (xq - xv));
            if s <= z[k as usize] {
                k -= 1;
            } else {
                break;
            }
        }
        k += 1;
        v[k as usize] = q;
        z[k as usize] = if k == 0 { f64::NEG_INFINITY } else { s };
        z[k as usize + 1] = f64::INFINITY;
    }
    if k < 0 {
        return f.to_vec();
    }
    let mut j = 0;
    (0..n)
        .map(|q| {
            let x = q as f64 * sp;
            while z[j + 1] < x {
                j += 1;
            }
            let dx = x - v[j] as f64 * sp;
            dx * dx + f[v[j]]
        })
        .collect()
}

/// Squared distance of every pixel to the nearest source (`sources[i]`), INF if there is none.
pub fn squared_distance_to(sources: &[bool], spatial: &[usize], spacing: &[f32]) -> Vec<f64> {
    let mut d: Vec<f64> = sources.iter().map(|&s| if s { 0.0 } else { INF }).collect();
    for (a, (len, stride)) in axes(spatial).into_iter().enumerate() {
        let sp = spacing.get(a).copied().unwrap_or(1.0) as f64;
        let total = d.len();
        for start in (0..total).filter(|i| (i / stride) % len == 0) {
            let line: Vec<f64> = (0..len).map(|q| d[start + q * stride]).collect();
            for (q, v) in envelope_1d(&line, sp).into_iter().enumerate() {
                d[start + q * stride] = v;
            }
        }
    }
    d
}

/// For each pixel of `mask`: the distance to the nearest pixel of the other class, and whether it
/// is in the mask; 0 for an empty or full mask (`opposite_distance` of the shader).
pub fn opposite_distance(mask: &[bool], spatial: &[usize], spacing: &[f32]) -> Vec<(f64, bool)> {
    let bg: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let to_bg = squared_distance_to(&bg, spatial, spacing);
    let to_fg = squared_distance_to(mask, spatial, spacing);
    mask.iter()
        .enumerate()
        .map(|(i, &inside)| {
            let d = if inside { to_bg[i] } else { to_fg[i] };
            (if d == INF { 0.0 } else { d.sqrt() }, inside)
        })
        .collect()
}

/// scipy's `distance_transform_edt(mask, sampling=spacing)`: each mask pixel's distance to the
/// nearest background pixel, 0 outside (and 0 for a mask without background).
pub fn edt(mask: &[bool], spatial: &[usize], spacing: &[f32]) -> Vec<f64> {
    opposite_distance(mask, spatial, spacing)
        .into_iter()
        .map(|(d, inside)| if inside { d } else { 0.0 })
        .collect()
}

/// The boundary loss's signed map: `EDT(not M)` outside, `-(EDT(M) - 1)` inside, 0 for an empty
/// or full mask.
pub fn signed_map(mask: &[bool], spatial: &[usize], spacing: &[f32]) -> Vec<f64> {
    opposite_distance(mask, spatial, spacing)
        .into_iter()
        .map(|(d, inside)| if inside && d > 0.0 { -(d - 1.0) } else { d })
        .collect()
}

/// The exact transform by brute force, O(pixels²): the oracle of the separable one.
pub fn edt_brute_force(mask: &[bool], spatial: &[usize], spacing: &[f32]) -> Vec<f64> {
    let coords = |i: usize| -> Vec<f64> {
        let mut r = i;
        let mut c = vec![0.0; spatial.len()];
        for a in (0..spatial.len()).rev() {
            c[a] = (r % spatial[a]) as f64 * spacing.get(a).copied().unwrap_or(1.0) as f64;
            r /= spatial[a];
        }
        c
    };
    (0..mask.len())
        .map(|i| {
            if !mask[i] {
                return 0.0;
            }
            let ci = coords(i);
            let best = (0..mask.len())
                .filter(|&j| !mask[j])
                .map(|j| {
                    coords(j)
                        .iter()
                        .zip(&ci)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                })
                .fold(INF, f64::min);
            if best == INF {
                0.0
            } else {
                best.sqrt()
            }
        })
        .collect()
}
