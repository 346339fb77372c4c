//! Volume masks as cryoDRGN makes them (`cryodrgn.masking.cosine_dilation_mask`, used by
//! `gen_mask` and `analyze_landscape`): threshold the density, dilate the binary mask by a number
//! of voxels (scipy's `binary_dilation` with the 6-neighbour cross: everything within city-block
//! distance n), then a cosine edge over the Euclidean distance to the dilated mask
//! (`cos(π·min(dist, w) / 2w)`), rounded to 6 decimals.

use crate::analysis::pca::percentile;
use crate::{Error, Result};
use std::collections::VecDeque;

/// A mask and the threshold it used.
pub struct Mask {
    /// (D, D, D) values in [0, 1].
    pub values: Vec<f32>,
    pub threshold: f32,
    /// Dilation in voxels, cosine edge width in voxels.
    pub dilate_px: usize,
    pub edge_px: f64,
}

/// The reference's default threshold: half the 99.99th percentile of the density.
pub fn default_threshold(vol: &[f32]) -> f32 {
    let v: Vec<f64> = vol.iter().map(|&x| x as f64).collect();
    (percentile(&v, 99.99) as f32) / 2.0
}

/// `cosine_dilation_mask(vol, threshold, dilation, edge_dist, apix)` of a (d, d, d) volume:
/// `dilation` and `edge` in Å (the dilation becomes ⌊dilation / apix⌋ voxels, the edge
/// `edge / apix` voxels, as the reference's). Errors when nothing reaches the threshold.
pub fn cosine_dilation_mask(
    vol: &[f32],
    d: usize,
    threshold: Option<f32>,
    dilation: f64,
    edge: f64,
    apix: f64,
) -> Result<Mask> {
    if vol.len() != d * d * d || d == 0 {
        return Err(Error::invalid(format!(
            "mask: volume of {} values is not {d}³",
            vol.len()
        )));
    }
    let valid = |v: f64, strict: bool| v.is_finite() && (v > 0.0 || (!strict && v == 0.0));
    if !valid(apix, true) || !valid(dilation, false) || !valid(edge, false) {
        return Err(Error::invalid(format!(
            "mask: pixel size {apix}, dilation {dilation} Å and edge {edge} Å must be positive"
        )));
    }
    let thr = threshold.unwrap_or_else(|| default_threshold(vol));
    let mut inside: Vec<bool> = vol.iter().map(|&v| v >= thr).collect();
    if !inside.iter().any(|&b| b) {
        let max = vol.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        return Err(Error::invalid(format!(
            "mask: no voxel reaches the threshold {thr} (the density's maximum is {max})"
        )));
    }
    let dilate_px = (dilation / apix).floor() as usize;
    if dilate_px > 0 {
        inside = dilate_cross(&inside, d, dilate_px);
    }
    let edge_px = edge / apix;
    let values = if edge_px > 0.0 {
        let dist2 = edt2_to(&inside, d);
        dist2
            .iter()
            .map(|&s| {
                let y = s.sqrt().min(edge_px);
                let z = (std::f64::consts::PI * y / edge_px / 2.0).cos();
                ((z * 1e6).round() / 1e6) as f32
            })
            .collect()
    } else {
        inside.iter().map(|&b| b as u8 as f32).collect()
    };
    Ok(Mask {
        values,
        threshold: thr,
        dilate_px,
        edge_px,
    })
}

/// Binary dilation by the 6-neighbour cross, `n` times (scipy's default structure, zero border):
/// every voxel within city-block distance `n` of a set voxel.
fn dilate_cross(m: &[bool], d: usize, n: usize) -> Vec<bool> {
    let mut dist = vec![usize::MAX; m.len()];
    let mut q = VecDeque::new();
    for (i, &b) in m.iter().enumerate() {
        if b {
            dist[i] = 0;
            q.push_back(i);
        }
    }
    while let Some(i) = q.pop_front() {
        if dist[i] >= n {
            continue;
        }
        let (z, y, x) = (i / (d * d), (i / d) % d, i % d);
        let mut visit = |j: usize| {
            if dist[j] == usize::MAX {
                dist[j] = dist[i] + 1;
                q.push_back(j);
            }
        };
        if x > 0 {
            visit(i - 1);
        }
        if x + 1 < d {
            visit(i + 1);
        }
        if y > 0 {
            visit(i - d);
        }
        if y + 1 < d {
            visit(i + d);
        }
        if z > 0 {
            visit(i - d * d);
        }
        if z + 1 < d {
            visit(i + d * d);
        }
    }
    dist.iter().map(|&v| v <= n).collect()
}

/// Squared Euclidean distance from every voxel to the nearest set voxel (0 on set voxels):
/// the exact separable transform of Felzenszwalb & Huttenlocher, one axis at a time.
fn edt2_to(m: &[bool], d: usize) -> Vec<f64> {
    let inf = 1e20;
    let mut f: Vec<f64> = m.iter().map(|&b| if b { 0.0 } else { inf }).collect();
    let mut line = vec![0f64; d];
    let mut out = vec![0f64; d];
    for axis in 0..3 {
        let stride = [1, d, d * d][axis];
        for a in 0..d {
            for b in 0..d {
                // the first index of the line along `axis`
                let base = match axis {
                    0 => a * d * d + b * d,
                    1 => a * d * d + b,
                    _ => a * d + b,
                };
                for (k, l) in line.iter_mut().enumerate() {
                    *l = f[base + k * stride];
                }
                edt1(&line, &mut out);
                for (k, o) in out.iter().enumerate() {
                    f[base + k * stride] = *o;
                }
            }
        }
    }
    f
}

/// 1-D squared distance transform of sampled function `f` (lower envelope of parabolas).
fn edt1(f: &[f64], out: &mut [f64]) {
    let n = f.len();
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let parabola =
            |p: usize| ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q - p) as f64);
        let mut s = parabola(v[k]);
        // z[0] = −∞ stops the walk back at k = 0
        while s <= z[k] {
            k -= 1;
            s = parabola(v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        let dq = q as f64 - p as f64;
        *o = dq * dq + f[p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force squared distance to the nearest set voxel.
    fn brute(m: &[bool], d: usize) -> Vec<f64> {
        let set: Vec<(i64, i64, i64)> = (0..m.len())
            .filter(|&i| m[i])
            .map(|i| ((i / (d * d)) as i64, ((i / d) % d) as i64, (i % d) as i64))
            .collect();
        (0..m.len())
            .map(|i| {
                let (z, y, x) = ((i / (d * d)) as i64, ((i / d) % d) as i64, (i % d) as i64);
                set.iter()
                    .map(|&(a, b, c)| ((a - z).pow(2) + (b - y).pow(2) + (c - x).pow(2)) as f64)
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn distance_transform_is_exact() {
        let d = 9;
        let mut state = 7u64;
        for _ in 0..5 {
            let m: Vec<bool> = (0..d * d * d)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 60) == 0
                })
                .collect();
            if !m.iter().any(|&b| b) {
                continue;
            }
            assert_eq!(edt2_to(&m, d), brute(&m, d));
        }
    }

    #[test]
    fn dilation_by_the_cross_is_the_city_block_ball() {
        let d = 7;
        let mut m = vec![false; d * d * d];
        m[3 * 49 + 3 * 7 + 3] = true;
        let out = dilate_cross(&m, d, 2);
        for (i, &o) in out.iter().enumerate() {
            let (z, y, x) = ((i / 49) as i64, ((i / 7) % 7) as i64, (i % 7) as i64);
            let l1 = (z - 3).abs() + (y - 3).abs() + (x - 3).abs();
            assert_eq!(o, l1 <= 2, "voxel {i}");
        }
    }

    #[test]
    fn cosine_edge_falls_from_one_to_zero() {
        let d = 16;
        let mut vol = vec![0f32; d * d * d];
        vol[8 * 256 + 8 * 16 + 8] = 1.0;
        let m = cosine_dilation_mask(&vol, d, Some(0.5), 2.0, 4.0, 1.0).unwrap();
        // inside the dilated ball 1, at city-block 3 (Euclidean 3 along an axis) cos(π/8)
        assert_eq!(m.values[8 * 256 + 8 * 16 + 8], 1.0);
        assert_eq!(m.values[8 * 256 + 8 * 16 + 10], 1.0);
        let v = m.values[8 * 256 + 8 * 16 + 11];
        assert!((v - (std::f32::consts::PI / 8.0).cos()).abs() < 1e-6, "{v}");
        assert_eq!(m.values[8 * 256 + 8 * 16 + 15], 0.0);
        assert!(cosine_dilation_mask(&vol, d, Some(2.0), 2.0, 4.0, 1.0).is_err());
    }
}
