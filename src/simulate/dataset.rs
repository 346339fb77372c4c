//! Simulated particle datasets with known truth: projections of one or more volumes by the Fourier slice
//! theorem, random poses, translations, CTF and Gaussian noise at a chosen SNR, optionally tilt pairs.
//!
//! Image model (the reference's conventions, see [`crate::fourier::slice`]): with pose `(R, t)`, the
//! centered Hartley transform of the clean image is the central slice `V̂(k·R)`, translated by `−t` pixels
//! (so that the reference's `translate_ht(image, +t)` recentres it; t = trans·D with `trans` the pose.pkl
//! value, a fraction of D), multiplied by the CTF. Noise: white Gaussian with variance
//! `var(signal) / SNR`, the signal variance taken over whole images of the dataset.

use crate::disentangle::slow::pair_transition;
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
use std::f64::consts::TAU;

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

/// How image rotations are drawn (`simulate --pose-dist`).
///
/// With poses acting on row vectors, `(x, y, z)·R` (see [`crate::fourier::slice`]), the image at
/// `Rz(ψ)` is the image at the identity turned by ψ counterclockwise in the `(x, y) = (column, row)`
/// frame, so ψ is the image-plane angle (the rotation [`crate::disentangle::rot90`] applies for
/// ψ = k·90°).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoseDist {
    /// Uniform over SO(3) (Haar measure).
    #[default]
    So3,
    /// `R = Rz(ψ)`, a rotation about the viewing axis z only, ψ uniform in [0, 2π).
    Inplane,
    /// `R = Rz(ψ)·Rx(90°)`: in-plane rotations of the view along the molecule's y axis (the image plane
    /// holds its x and z axes, `(x, y, 0)·Rx(90°) = (x, 0, −y)`), ψ uniform in [0, 2π). Still in-plane:
    /// the image at `Rz(ψ)·R0` is the image at `R0` turned by ψ. For phantoms whose motions lie along z
    /// (linear2d's second domain), which views along z hide.
    InplaneY,
    /// `R = Rx(ψ)`, a rotation about the fixed x axis (the tilt axis of [`xrot`]), ψ uniform in
    /// [0, 2π): the view moves out of the image plane along one great circle.
    Axis,
}

impl PoseDist {
    /// The rotation at angle `psi` (rad) of a one-angle distribution, row-major:
    /// `Rz(ψ) = [[c, −s, 0], [s, c, 0], [0, 0, 1]]` (inplane), `Rx(ψ) = [[1, 0, 0], [0, c, −s],
    /// [0, s, c]]` (axis); `None` for so3, which has no angle.
    pub fn rotation_at(self, psi: f64) -> Option<Mat3> {
        let (s, c) = psi.sin_cos();
        match self {
            PoseDist::So3 => None,
            PoseDist::Inplane => Some([c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]),
            // Rz(ψ)·Rx(90°), Rx(90°) = [[1, 0, 0], [0, 0, −1], [0, 1, 0]]
            PoseDist::InplaneY => Some([c, 0.0, s, s, 0.0, -c, 0.0, 1.0, 0.0]),
            PoseDist::Axis => Some([1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c]),
        }
    }
}

/// What every simulated image shares: box, pixel size, translations, CTF, pose law and seed.
#[derive(Debug, Clone, Copy)]
pub struct DrawSpec<'a> {
    /// box size D (pixels)
    pub d: usize,
    /// pixel size (Å)
    pub apix: f32,
    /// translations uniform in [−T, T] pixels along x and y (none when 0)
    pub t_extent_px: f32,
    /// how CTF parameters are drawn
    pub ctf: &'a CtfSpec,
    /// how rotations are drawn
    pub pose: PoseDist,
    /// random seed
    pub seed: u64,
}

/// Draw the parameters of `n` images over `n_states` volumes with uniform SO(3) rotations,
/// reproducibly from `seed` ([`draw_params_with`] with [`PoseDist::So3`]).
pub fn draw_params(
    n: usize,
    n_states: usize,
    d: usize,
    apix: f32,
    t_extent_px: f32,
    ctf: &CtfSpec,
    seed: u64,
) -> Vec<ImageParams> {
    let spec = DrawSpec {
        d,
        apix,
        t_extent_px,
        ctf,
        pose: PoseDist::So3,
        seed,
    };
    draw_params_with(n, n_states, &spec).0
}

/// Draw the parameters of `n` images over `n_states` volumes (each image's state uniform), with
/// rotations from `spec.pose`. Returns the parameters and, for a one-angle pose law, each image's
/// angle ψ (rad, `(n,)`). For [`PoseDist::So3`] the draws are those `simulate` has always made.
pub fn draw_params_with(
    n: usize,
    n_states: usize,
    spec: &DrawSpec,
) -> (Vec<ImageParams>, Option<Vec<f64>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let (rots, angles) = match spec.pose {
        PoseDist::So3 => (random_rotations(n, &mut rng), None),
        one_angle => {
            let psi: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..TAU)).collect();
            let rots = psi
                .iter()
                .filter_map(|&a| one_angle.rotation_at(a))
                .collect();
            (rots, Some(psi))
        }
    };
    let params = finish_params(rots, spec, &mut rng, |rng, _| {
        rng.random_range(0..n_states.max(1))
    });
    (params, angles)
}

/// Per-image parameters from rotations: for each image in order its state (`state_of(rng, i)`),
/// translation and CTF, from `rng`.
fn finish_params(
    rots: Vec<Mat3>,
    spec: &DrawSpec,
    rng: &mut rand::rngs::StdRng,
    mut state_of: impl FnMut(&mut rand::rngs::StdRng, usize) -> usize,
) -> Vec<ImageParams> {
    let (d, apix, t_extent_px) = (spec.d, spec.apix, spec.t_extent_px);
    rots.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let state = state_of(rng, i);
            let trans_px = if t_extent_px > 0.0 {
                [
                    rng.random_range(-t_extent_px..=t_extent_px),
                    rng.random_range(-t_extent_px..=t_extent_px),
                ]
            } else {
                [0.0, 0.0]
            };
            let ctf = match spec.ctf {
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

/// A regular grid of states: `n_factors` factors with `g` levels each, state index row-major with the
/// first factor slowest (`index = Σ_c f_c·g^(n_factors−1−c)`), as `phantom --kind linear2d` (and
/// linear1d) orders its states, whose truth row is `(f_0/(g−1), …)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// levels per factor (≥ 2)
    pub g: usize,
    /// number of factors
    pub n_factors: usize,
}

impl Grid {
    /// The grid whose states have the truth rows `truth` (`(k, dim)` row-major): `k = g^dim` with
    /// g ≥ 2, and row i equal to `(f_0/(g−1), …, f_{dim−1}/(g−1))` with `(f_0, …)` the base-g digits
    /// of i, first factor slowest, to 1e-5 (the truth is float32). Errors say which row differs.
    pub fn from_truth(truth: &[f32], k: usize, dim: usize) -> Result<Grid> {
        if dim == 0 || truth.len() != k * dim {
            return Err(Error::invalid(format!(
                "expected a (K, dim) truth with K = {k} states, found {} values",
                truth.len()
            )));
        }
        let g = (k as f64).powf(1.0 / dim as f64).round() as usize;
        if g < 2 || g.checked_pow(dim as u32) != Some(k) {
            return Err(Error::invalid(format!(
                "{k} states are not a g^{dim} grid with g ≥ 2 (a linear1d or linear2d phantom's states)"
            )));
        }
        let grid = Grid { g, n_factors: dim };
        for (i, row) in truth.chunks_exact(dim).enumerate() {
            let expected: Vec<f64> = grid
                .factors(i)
                .iter()
                .map(|&f| f as f64 / (g - 1) as f64)
                .collect();
            // written so that a NaN in the truth fails too
            let matches = |t: f32, e: f64| (t as f64 - e).abs() <= 1e-5;
            if !row.iter().zip(&expected).all(|(&t, &e)| matches(t, e)) {
                return Err(Error::invalid(format!(
                    "not a row-major {} grid of {g} levels in [0, 1] (a linear1d or linear2d \
                     phantom's truth): state {i} is {row:?}, the grid has {expected:?} there",
                    vec![g.to_string(); dim].join("×")
                )));
            }
        }
        Ok(grid)
    }

    /// Number of states, `g^n_factors`.
    pub fn n_states(&self) -> usize {
        self.g.pow(self.n_factors as u32)
    }

    /// The factor levels of state `index` (its base-g digits, first factor slowest).
    pub fn factors(&self, index: usize) -> Vec<usize> {
        let mut f = vec![0; self.n_factors];
        let mut r = index;
        for v in f.iter_mut().rev() {
            *v = r % self.g;
            r /= self.g;
        }
        f
    }

    /// The state index of factor levels `factors` (inverse of [`Grid::factors`]).
    pub fn index(&self, factors: &[usize]) -> usize {
        factors.iter().fold(0, |acc, &f| acc * self.g + f)
    }
}

/// Number of pose bins of SlowVAE pairs with a one-angle pose law: 36 bins of 10°.
pub const PAIR_POSE_BINS: usize = 36;

/// The pose angle ψ (rad) of pose bin `b` of [`PAIR_POSE_BINS`]: the bin centre, `(b + ½)·10°`.
pub fn pose_bin_angle(b: usize) -> f64 {
    (b as f64 + 0.5) * TAU / PAIR_POSE_BINS as f64
}

/// The draws of [`draw_pair_params`]: images 2k and 2k+1 form pair k.
#[derive(Debug, Clone, PartialEq)]
pub struct PairDraws {
    /// per-image parameters, `state` a grid index (`(n,)`)
    pub params: Vec<ImageParams>,
    /// the angles ψ (rad, `(n,)`) of a one-angle pose law, bin centres; `None` for so3
    pub angles: Option<Vec<f64>>,
    /// each image's pose bin in `0..36` (`(n,)`; all 0 for so3)
    pub pose_bins: Vec<usize>,
}

/// The parameters of `n` images (n even) forming SlowVAE pairs (2k, 2k+1) (spec `disentanglement.md`
/// §3): the first image's state uniform over `grid` and, with a one-angle pose law, its pose bin
/// uniform over the 36 bins of 10°, ψ the bin centre ([`pose_bin_angle`]); the second image's state
/// and bin by [`pair_transition`] with data rate `data_rate` (each factor moves by a truncated discrete
/// Laplace of scale ln(g)/λ, the bin wraps, at least one changes). With [`PoseDist::So3`] the pose takes
/// no part in the transition: both images share one uniform rotation and a factor always changes.
/// Translations and CTF are drawn per image as in [`draw_params_with`].
///
/// Errors on odd `n` and on what [`pair_transition`] rejects.
pub fn draw_pair_params(
    n: usize,
    grid: &Grid,
    data_rate: f64,
    spec: &DrawSpec,
) -> Result<PairDraws> {
    if !n.is_multiple_of(2) {
        return Err(Error::invalid(format!(
            "pairs need an even number of images, got {n}"
        )));
    }
    let n_bins = match spec.pose {
        PoseDist::So3 => 1,
        _ => PAIR_POSE_BINS,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut states = Vec::with_capacity(n);
    let mut bins = Vec::with_capacity(n);
    for _ in 0..n / 2 {
        let s0 = rng.random_range(0..grid.n_states());
        let b0 = rng.random_range(0..n_bins);
        let (f1, b1) = pair_transition(&grid.factors(s0), grid.g, b0, n_bins, data_rate, &mut rng)?;
        states.extend([s0, grid.index(&f1)]);
        bins.extend([b0, b1]);
    }
    let (rots, angles) = match spec.pose {
        PoseDist::So3 => (
            random_rotations(n / 2, &mut rng)
                .into_iter()
                .flat_map(|r| [r, r])
                .collect(),
            None,
        ),
        one_angle => {
            let psi: Vec<f64> = bins.iter().map(|&b| pose_bin_angle(b)).collect();
            let rots = psi
                .iter()
                .filter_map(|&a| one_angle.rotation_at(a))
                .collect();
            (rots, Some(psi))
        }
    };
    let params = finish_params(rots, spec, &mut rng, |_, i| states[i]);
    Ok(PairDraws {
        params,
        angles,
        pose_bins: bins,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `inplane-y` is `Rz(ψ)·Rx(90°)`: a rotation whose image plane `(x, y, 0)·R` has no y component (the
    /// view looks along the molecule's y axis), and whose images at ψ and ψ + 90° differ by `Rz(90°)` on
    /// the left (an in-plane turn, the relation the 90° test uses).
    #[test]
    fn inplane_y_views_along_y_and_turns_in_plane() {
        let rx90 = xrot(90.0);
        for psi in [0.0, 0.7, 2.0, 4.5] {
            let r = PoseDist::InplaneY.rotation_at(psi).unwrap();
            let rz = PoseDist::Inplane.rotation_at(psi).unwrap();
            let want = matmul3(&rz, &rx90);
            for k in 0..9 {
                assert!((r[k] - want[k]).abs() < 1e-12, "ψ {psi}: {r:?} vs {want:?}");
            }
            // row-vector lattice points (x, y, 0)·R: the y component is x·R01 + y·R11
            assert!(r[1].abs() < 1e-12 && r[4].abs() < 1e-12, "{r:?}");
            let turned = PoseDist::InplaneY
                .rotation_at(psi + std::f64::consts::FRAC_PI_2)
                .unwrap();
            let rz90 = PoseDist::Inplane
                .rotation_at(std::f64::consts::FRAC_PI_2)
                .unwrap();
            let left = matmul3(&rz90, &r);
            for k in 0..9 {
                assert!((turned[k] - left[k]).abs() < 1e-12);
            }
        }
    }
}
