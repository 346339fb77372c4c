//! Voxel backprojection in Hartley space, as the reference's `backproject_voxel`: each image's symmetrized
//! centered Hartley transform, masked to radius D/2 (DC excluded), CTF-weighted and recentred by its
//! translation, is spread onto the (D+1)³ lattice at the rotated coordinates `k·R`; the sum is divided by
//! the regularized accumulated CTF² weights and transformed back.
//!
//! Spreading rule (the reference's `add_slice`): each of the 8 corners `c` of the cell around the point
//! `p` (coordinates clipped to ±D/2) receives weight `w = max(0, 1 − |c − p|)`; `Σ w·ctf·H` goes into the
//! volume and `Σ w·ctf²` into the counts. Regularization: `counts' = counts + λ·mean(counts)`, rescaled to
//! the same mean; the result is `ihtn_center((vol / counts')[0:D, 0:D, 0:D])`.

use crate::fourier::fft::ihtn_center;

/// Accumulated sums and weights of a backprojection on the (D+1)³ lattice.
#[derive(Debug, Clone)]
pub struct Backprojection {
    /// image box size D (even)
    pub d: usize,
    /// Σ w·ctf·H, (D+1)³, index `[z][y][x]`
    pub sums: Vec<f64>,
    /// Σ w·ctf², (D+1)³
    pub counts: Vec<f64>,
}

impl Backprojection {
    /// An empty accumulator for D×D images.
    pub fn new(d: usize) -> Self {
        let e = d + 1;
        Backprojection {
            d,
            sums: vec![0.0; e * e * e],
            counts: vec![0.0; e * e * e],
        }
    }

    /// Add one image: `values[i]` (already CTF-multiplied when `ctf` is used) at the lattice points
    /// `coords[i]` (in pixel units, (x, y, 0)), rotated by `rot`; `ctf[i]` the CTF there (1 without).
    pub fn add_slice(
        &mut self,
        coords: &[[f32; 3]],
        values: &[f32],
        ctf: Option<&[f32]>,
        rot: &[f32; 9],
    ) {
        let d2 = (self.d / 2) as f32;
        let e = self.d + 1;
        for (i, (c, &v)) in coords.iter().zip(values).enumerate() {
            let p = [
                (c[0] * rot[0] + c[1] * rot[3] + c[2] * rot[6]).clamp(-d2, d2),
                (c[0] * rot[1] + c[1] * rot[4] + c[2] * rot[7]).clamp(-d2, d2),
                (c[0] * rot[2] + c[1] * rot[5] + c[2] * rot[8]).clamp(-d2, d2),
            ];
            let cw = ctf.map_or(1.0, |c| c[i]);
            let lo = p.map(f32::floor);
            let hi = p.map(f32::ceil);
            // The reference visits the 8 (floor|ceil)³ corners, counting a coordinate twice when
            // floor == ceil; we do the same so that the weights agree.
            for corner in 0..8 {
                let q = [
                    if corner & 1 == 0 { lo[0] } else { hi[0] },
                    if corner & 2 == 0 { lo[1] } else { hi[1] },
                    if corner & 4 == 0 { lo[2] } else { hi[2] },
                ];
                let dist =
                    ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2) + (q[2] - p[2]).powi(2)).sqrt();
                let w = 1.0 - dist;
                if w <= 0.0 {
                    continue;
                }
                let idx =
                    ((q[2] + d2) as usize * e + (q[1] + d2) as usize) * e + (q[0] + d2) as usize;
                self.sums[idx] += (w * v * cw) as f64;
                self.counts[idx] += (w * cw * cw) as f64;
            }
        }
    }

    /// Merge another accumulator (e.g. from another thread).
    pub fn merge(&mut self, other: &Backprojection) {
        self.sums
            .iter_mut()
            .zip(&other.sums)
            .for_each(|(a, b)| *a += b);
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
    }

    /// The reconstructed D³ real-space volume with regularization weight `reg_weight` (the reference's
    /// `--reg-weight`, default 1). Voxels never reached count as weight 1.
    pub fn volume(&self, reg_weight: f64) -> Vec<f32> {
        let d = self.d;
        let e = d + 1;
        let counts: Vec<f64> = self
            .counts
            .iter()
            .map(|&c| if c == 0.0 { 1.0 } else { c })
            .collect();
        let n = counts.len() as f64;
        let mean = counts.iter().sum::<f64>() / n;
        let reg: Vec<f64> = counts.iter().map(|c| c + reg_weight * mean).collect();
        let reg_mean = reg.iter().sum::<f64>() / n;
        let scale = mean / reg_mean;
        let mut ht = vec![0f32; d * d * d];
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let i = (z * e + y) * e + x;
                    ht[(z * d + y) * d + x] = (self.sums[i] / (reg[i] * scale)) as f32;
                }
            }
        }
        ihtn_center(&ht, d)
    }
}
