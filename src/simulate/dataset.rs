//! Simulated particle datasets with known truth: projections of one or more volumes by the Fourier slice
//! theorem, random poses, translations, CTF and Gaussian noise at a chosen SNR, optionally tilt pairs.
//!
//! Image model (the reference's conventions, see [`crate::fourier::slice`]): with pose `(R, t)`, the
//! centered Hartley transform of the clean image is the central slice `V̂(k·R)`, translated by `−t` pixels
//! (so that the reference's `translate_ht(image, +t)` recentres it; t = trans·D with `trans` the pose.pkl
//! value, a fraction of D), multiplied by the CTF. Noise: white Gaussian with variance
//! `var(signal) / SNR`, the signal variance taken over whole images of the dataset.

use crate::error::{Error, Result};
use crate::fourier::ctf::{compute_ctf_into, lattice_freqs_angstrom, Ctf};
use crate::fourier::fft::{ht2_center, iht2_center, symmetrize_ht};
use crate::fourier::lattice::Lattice;
use crate::fourier::shift::translate_ht_into;
use crate::fourier::slice::{project_real, HartleyVolume};
use crate::geometry::quaternion::random_rotations;
use crate::geometry::rotation::{matmul3, Mat3};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// The per-image truth of a simulated dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageParams {
    /// which volume made the image
    pub state: usize,
    /// rotation (row-major)
    pub rot: [f32; 9],
    /// translation in pixels
    pub trans_px: [f32; 2],
    /// ctf.pkl row `[D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase]`, if a CTF is applied
    pub ctf: Option<[f32; 9]>,
}

/// How to draw CTF parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum CtfSpec {
    /// No CTF.
    None,
    /// Rows of a ctf.pkl, image i uses row i mod N.
    Rows(Vec<[f32; 9]>),
    /// Defocus U uniform in [lo, hi] Å, V = U − astigmatism·U(0,1) (≤ 5% of U), random angle; fixed optics.
    Defocus {
        lo: f32,
        hi: f32,
        voltage_kv: f32,
        cs_mm: f32,
        amplitude_contrast: f32,
    },
}

/// Draw the parameters of `n` images over `n_states` volumes, reproducibly from `seed`.
pub fn draw_params(
    n: usize,
    n_states: usize,
    d: usize,
    apix: f32,
    t_extent_px: f32,
    ctf: &CtfSpec,
    seed: u64,
) -> Vec<ImageParams> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rots = random_rotations(n, &mut rng);
    rots.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let state = rng.random_range(0..n_states.max(1));
            let trans_px = if t_extent_px > 0.0 {
                [
                    rng.random_range(-t_extent_px..=t_extent_px),
                    rng.random_range(-t_extent_px..=t_extent_px),
                ]
            } else {
                [0.0, 0.0]
            };
            let ctf = match ctf {
                CtfSpec::None => None,
                CtfSpec::Rows(rows) => Some(rows[i % rows.len()]),
                CtfSpec::Defocus {
                    lo,
                    hi,
                    voltage_kv,
                    cs_mm,
                    amplitude_contrast,
                } => {
                    let u = if hi > lo {
                        rng.random_range(*lo..=*hi)
                    } else {
                        *lo
                    };
                    let v = u * (1.0 - 0.05 * rng.random::<f32>());
                    let ang = rng.random_range(-180.0f32..180.0);
                    Some([
                        d as f32,
                        apix,
                        u,
                        v,
                        ang,
                        *voltage_kv,
                        *cs_mm,
                        *amplitude_contrast,
                        0.0,
                    ])
                }
            };
            ImageParams {
                state,
                rot: r.map(|x| x as f32),
                trans_px,
                ctf,
            }
        })
        .collect()
}

/// The rotation about x by `deg` degrees (the reference's `utils.xrot`): a tilt image's pose is
/// `xrot(tilt) · R`.
pub fn xrot(deg: f64) -> Mat3 {
    let (s, c) = deg.to_radians().sin_cos();
    [1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c]
}

/// How images are projected from a volume.
#[derive(Debug, Clone, Copy)]
pub enum Projection<'a> {
    /// Central slices of the volumes' Hartley transforms (the Fourier slice theorem).
    Fourier(&'a [HartleyVolume]),
    /// Rotation and integration in real space ([`project_real`]), slower: the oracle. The D³ volumes.
    Real(&'a [Vec<f32>]),
}

/// Renders clean images (no noise) from volumes.
pub struct Projector<'a> {
    proj: Projection<'a>,
    d: usize,
    lattice: Lattice,
}

impl<'a> Projector<'a> {
    /// A projector for volumes of box size `d`.
    pub fn new(proj: Projection<'a>, d: usize) -> Result<Self> {
        let sizes: Vec<usize> = match proj {
            Projection::Fourier(v) => v.iter().map(|v| v.d).collect(),
            Projection::Real(v) => v
                .iter()
                .map(|v| (v.len() as f64).cbrt().round() as usize)
                .collect(),
        };
        if sizes.is_empty() {
            return Err(Error::invalid("no volumes to project"));
        }
        if let Some(s) = sizes.iter().find(|&&s| s != d) {
            return Err(Error::invalid(format!(
                "volumes have different box sizes ({s} and {d})"
            )));
        }
        Ok(Projector {
            proj,
            d,
            lattice: Lattice::for_image(d, false)?,
        })
    }

    /// One clean image (D×D real space) for `p`, with the pose rotation pre-multiplied by `pre`
    /// (identity, or a tilt).
    pub fn render(&self, p: &ImageParams, pre: Option<&Mat3>) -> Vec<f32> {
        let d = self.d;
        let rot = match pre {
            None => p.rot,
            Some(t) => matmul3(t, &p.rot.map(|x| x as f64)).map(|x| x as f32),
        };
        let ht = match self.proj {
            Projection::Fourier(v) => {
                let mut ht = vec![0f32; d * d];
                v[p.state].slice_into(&rot, &mut ht);
                ht
            }
            Projection::Real(v) => ht2_center(&project_real(&v[p.state], d, &rot), d),
        };
        let mut sym = symmetrize_ht(&ht, d);
        let mut shifted = vec![0f32; sym.len()];
        translate_ht_into(
            &sym,
            self.lattice.freqs2d(),
            [-p.trans_px[0], -p.trans_px[1]],
            &mut shifted,
        );
        sym.copy_from_slice(&shifted);
        if let Some(row) = &p.ctf {
            let freqs = lattice_freqs_angstrom(&self.lattice, row[1]);
            let mut c = vec![0f32; sym.len()];
            compute_ctf_into(&freqs, &Ctf::from_row(row), &mut c);
            sym.iter_mut().zip(&c).for_each(|(v, c)| *v *= c);
        }
        let e = d + 1;
        let mut top = vec![0f32; d * d];
        for (y, row) in top.chunks_exact_mut(d).enumerate() {
            row.copy_from_slice(&sym[y * e..y * e + d]);
        }
        iht2_center(&top, d)
    }

    /// Clean images for `params[range]`, in parallel.
    pub fn render_batch(&self, params: &[ImageParams], pre: Option<&Mat3>) -> Vec<f32> {
        let dd = self.d * self.d;
        let mut out = vec![0f32; params.len() * dd];
        out.par_chunks_mut(dd)
            .zip(params.par_iter())
            .for_each(|(o, p)| o.copy_from_slice(&self.render(p, pre)));
        out
    }
}

/// Variance of all values (f64 accumulation).
pub fn variance(x: &[f32]) -> f64 {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n
}

/// Add white Gaussian noise of standard deviation `sigma` to images `first..` (D² values each),
/// reproducibly: image `i` draws from a generator seeded by `(seed, i)`.
pub fn add_noise(imgs: &mut [f32], dd: usize, first: usize, sigma: f32, seed: u64) {
    if sigma <= 0.0 {
        return;
    }
    let normal = Normal::new(0.0f32, sigma).expect("sigma is positive and finite");
    imgs.par_chunks_mut(dd).enumerate().for_each(|(j, img)| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ ((first + j) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        img.iter_mut().for_each(|v| *v += normal.sample(&mut rng));
    });
}
