//! Branch-and-bound pose search with frequency marching (cryoDRGN App. A, Algorithm 1; the
//! reference's `PoseSearch.opt_theta_trans`).
//!
//! For each image the search scores candidate poses (R, t) by the squared error between the
//! image translated by t and the model's slice at R times the CTF, over the frequencies |k| < L
//! ([`crate::backend::Backend::pose_scores`]; the Gaussian log-likelihood up to constants):
//!
//! 1. **Base grid** (iteration 0, L = L₀): every rotation of the Hopf SO(3) grid at resolution
//!    `base_healpy` (72·8^r points, [`crate::geometry::so3_grid`]) × every shift of the
//!    `t_ngrid·2^(r−1)` square grid over ±`t_extent` px ([`crate::geometry::shift_grid`]). Per
//!    rotation the best shift is kept; the `nkeptposes` best rotations survive.
//! 2. **Refinement** (iterations 1..=niter, L rising linearly from `l_min` to `l_max`, the
//!    reference's `getL`): each kept rotation is replaced by its 8 children one grid level finer
//!    ([`crate::geometry::so3_grid::get_neighbor`]); each kept shift t by `t + g/2^k` for every
//!    shift g of the base grid (the reference's behaviour, [`TransRefine::Grid`]) or by its 4
//!    children at half the step ([`TransRefine::Children`]). Again the best shift per
//!    (kept pose, child rotation) and the `nkeptposes` best pairs survive; the best of the last
//!    iteration is the answer (the others are returned as [`SearchResult::top`]).
//! 3. **Bound** (optional, Algorithm 1's pruning, which the reference does not implement): the
//!    error over |k| < L is a lower bound of the error over |k| < D/2, so after each iteration a
//!    kept candidate whose band-limited error is at least the full-band error of the current best
//!    (the upper bound) cannot beat it at this grid resolution and is dropped. As the paper notes,
//!    this is exact per grid level but not risk-free across levels: a pruned cell's children
//!    might have been better.
//!
//! Scores: the base level calls [`crate::backend::Backend::pose_scores`] (shared slices against
//! the images translated by every base shift). At refinement levels every candidate has its own
//! kept shift; with u the image translated by it, the cross term against every further shift
//! offset t is `Σ_k c s·x_t = F·[cos φ_t | sin φ_t]` with F a folded row of 2×P/2 values
//! (`fold_row`), so all candidates of a batch are one GEMM against a shift table shared by every
//! image (`Backend::gemm`), and ‖x_t‖² = ‖image‖² (a phase shift preserves the norm of a
//! centrally symmetric band).
//!
//! Slices come from a [`SliceModel`]: a homogeneous model's slices are computed once per distinct
//! rotation of the batch (the base grid once for all images, refinement children deduplicated by
//! grid index), a heterogeneous model's per image with its latent. Translations are phase shifts
//! of the images (Hartley: `x'(k) = cos φ·x(k) + sin φ·x(−k)`, φ = 2π k·t), computed from tables
//! shared by all images.
//!
//! Deviations from the reference: the base grid is scored at every SO(3) grid rotation directly,
//! where the reference decodes the S² points only and makes the in-plane rotations by bilinear
//! interpolation of the decoded slices (with a random in-plane offset and a std renormalization);
//! ties between equal errors keep the lowest index.

use super::slices::SliceModel;
use crate::backend::{Backend, MatRef};
use crate::fourier::lattice::Lattice;
use crate::geometry::quaternion::{quat_to_rot, Quat};
use crate::geometry::rotation::{matmul3, Mat3};
use crate::geometry::{shift_grid, so3_grid};
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;

/// How kept translations are refined at each iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TransRefine {
    /// `t + g/2^k` for every shift g of the base grid (the reference's `opt_theta_trans`).
    Grid,
    /// The 4 children of t's cell at half the step (`shift_grid.get_neighbor`): 4 shifts instead
    /// of (t_ngrid·2^(r−1))², a local search that cannot undo a shift error of more than a step.
    Children,
}

/// Search settings (the reference's flags and defaults in brackets).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SearchConfig {
    /// Resolution of the base SO(3) grid, ≥ 1 (`--base-healpy`, default 2: 4608 rotations).
    pub base_healpy: u32,
    /// Shifts searched over ±t_extent pixels (`--t-extent`, default 10).
    pub t_extent: f64,
    /// Base translation grid per axis at resolution 0 (`--t-ngrid`, default 7; the base grid is at
    /// resolution `base_healpy − 1`: 14 × 14 shifts by default).
    pub t_ngrid: usize,
    /// Offsets of the translation grid (`--t-xshift`, `--t-yshift`, default 0), pixels.
    pub t_xshift: f64,
    pub t_yshift: f64,
    /// Refinement iterations (`--niter`, default 4).
    pub niter: usize,
    /// Candidates kept per image between iterations (`--nkeptposes`, default 8).
    pub nkeptposes: usize,
    /// Band limit of the base grid and of the last iteration, pixels (`--l-start`, default 12;
    /// `--l-end`, default 32); both capped at D/2.
    pub l_min: usize,
    pub l_max: usize,
    pub trans_refine: TransRefine,
    /// Prune kept candidates with Algorithm 1's upper bound (see the module doc).
    pub bound: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            base_healpy: 2,
            t_extent: 10.0,
            t_ngrid: 7,
            t_xshift: 0.0,
            t_yshift: 0.0,
            niter: 4,
            nkeptposes: 8,
            l_min: 12,
            l_max: 32,
            trans_refine: TransRefine::Grid,
            bound: false,
        }
    }
}

/// The images of one search call, on the full symmetrized (D+1)² lattice as
/// [`crate::train::dataset::ImageDataset::image`] returns them.
pub struct SearchBatch<'a> {
    /// Preprocessed Hartley images (nb, (D+1)²).
    pub ht: &'a [f32],
    /// CTF on the same lattice (nb, (D+1)²), if any.
    pub ctf: Option<&'a [f32]>,
    /// Tilt-pair images (nb, (D+1)²) and the tilt rotation: the pair's error at pose (R, t) is
    /// that of the tilted image against the slice at tilt·R, added to the untilted one.
    pub tilt: Option<(&'a [f32], [f32; 9])>,
}

/// Counters of one search call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SearchStats {
    /// (image, rotation, translation) candidates scored (tilt pairs count once).
    pub scores: u64,
    /// Σ over scored candidates of the band's point count P: the GEMM form costs
    /// 2·score_points FLOPs (twice that with tilt pairs).
    pub score_points: u64,
    /// Slices computed by the model (after deduplication).
    pub slices: u64,
    /// Candidates dropped by the bound.
    pub pruned: u64,
}

/// One scored pose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Rotation, row-major.
    pub rot: [f32; 9],
    /// Translation in pixels.
    pub trans_px: [f32; 2],
    /// Squared error over the last iteration's band.
    pub err: f32,
}

/// The best pose per image.
#[derive(Clone, Debug, Default)]
pub struct SearchResult {
    /// Rotations (nb), row-major.
    pub rot: Vec<[f32; 9]>,
    /// Translations (nb) in pixels, the shift that aligns the image with the slice (the value
    /// that pose.pkl stores divided by D).
    pub trans_px: Vec<[f32; 2]>,
    /// Squared error of the best pose over the last iteration's band.
    pub err: Vec<f32>,
    /// Per image, the best `nkeptposes` candidates of the last iteration, best first (the
    /// reference keeps only the first).
    pub top: Vec<Vec<Candidate>>,
    pub stats: SearchStats,
}

/// The points of the lattice with |k| < L (the reference's `get_circular_mask(L)`, DC dropped).
struct Band {
    /// Lattice indices (P).
    idx: Vec<usize>,
    coords: Vec<[f32; 3]>,
    freqs: Vec<[f32; 2]>,
}

/// A surviving candidate of one image.
#[derive(Clone, Copy, Debug)]
struct Kept {
    quat: Quat,
    s2: u64,
    s1: u64,
    rot: [f32; 9],
    trans: [f32; 2],
    err: f32,
}

/// A pose search for D×D images with fixed settings; see the module doc.
pub struct PoseSearch {
    cfg: SearchConfig,
    d: usize,
    lattice: Lattice,
    base_quat: Vec<Quat>,
    base_rot: Vec<[f32; 9]>,
    base_shifts: Vec<[f32; 2]>,
    bands: HashMap<usize, Band>,
}

fn rot32(m: &Mat3) -> [f32; 9] {
    m.map(|v| v as f32)
}

/// `t·R` for row-major 3×3 matrices in f32, computed in f64 (the tilted pose).
pub(super) fn compose(t: &[f32; 9], r: &[f32; 9]) -> [f32; 9] {
    rot32(&matmul3(&t.map(|v| v as f64), &r.map(|v| v as f64)))
}

/// Indices of the `k` smallest values, ascending (ties: lower index first).
fn smallest(vals: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..vals.len()).collect();
    let cmp = |a: &usize, b: &usize| vals[*a].total_cmp(&vals[*b]).then(a.cmp(b));
    let k = k.min(idx.len());
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.truncate(k);
    idx
}

/// (min, argmin) of a non-empty row (first index on ties).
fn argmin(row: &[f32]) -> (f32, usize) {
    let mut best = (row[0], 0);
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v < best.0 {
            best = (v, i);
        }
    }
    best
}

/// cos/sin tables (T, P) of φ = 2π·k_p·s_t, computed as [`crate::fourier::shift`] does.
fn phase_tables(freqs: &[[f32; 2]], shifts: &[[f32; 2]]) -> (Vec<f32>, Vec<f32>) {
    let p = freqs.len();
    let mut c = vec![0f32; shifts.len() * p];
    let mut s = vec![0f32; shifts.len() * p];
    c.par_chunks_mut(p.max(1))
        .zip(s.par_chunks_mut(p.max(1)))
        .zip(shifts.par_iter())
        .for_each(|((cr, sr), t)| {
            for ((cv, sv), k) in cr.iter_mut().zip(sr.iter_mut()).zip(freqs) {
                let phi = (k[0] * t[0] + k[1] * t[1]) * (2.0 * std::f32::consts::PI);
                (*sv, *cv) = phi.sin_cos();
            }
        });
    (c, s)
}

/// out (T, P): the band values h (P, centrally symmetric) translated by every shift of the
/// tables: `out[t, p] = cos[t, p]·h[p] + sin[t, p]·h[P−1−p]`.
fn translate_with(h: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let p = h.len();
    for ((o, c), s) in out
        .chunks_exact_mut(p)
        .zip(cos.chunks_exact(p))
        .zip(sin.chunks_exact(p))
    {
        for i in 0..p {
            o[i] = c[i] * h[i] + s[i] * h[p - 1 - i];
        }
    }
}

/// The band values h translated by one shift t (pixels).
fn translate_one(h: &[f32], freqs: &[[f32; 2]], t: [f32; 2]) -> Vec<f32> {
    let (c, s) = phase_tables(freqs, &[t]);
    let mut out = vec![0f32; h.len()];
    translate_with(h, &c, &s, &mut out);
    out
}

/// The shift table of the refinement GEMM, (T, P): row t is `cos φ_t(k)` then `sin φ_t(k)`
/// over the first half of the band's points (P even: the band is centrally symmetric without DC).
fn fold_table(cos: &[f32], sin: &[f32], nt: usize, p: usize) -> Vec<f32> {
    let h = p / 2;
    let mut t = vec![0f32; nt * p];
    for (i, row) in t.chunks_exact_mut(p).enumerate() {
        row[..h].copy_from_slice(&cos[i * p..i * p + h]);
        row[h..].copy_from_slice(&sin[i * p..i * p + h]);
    }
    t
}

/// The folded row of a refinement candidate: with `sc = c ⊙ s` (the CTF-weighted slice) and `u`
/// the image translated by the kept shift, `out = [sc(k)u(k) + sc(−k)u(−k) | sc(k)u(−k) −
/// sc(−k)u(k)]` over the first half of the points, so that for every further shift t
/// `Σ_k sc(k)·x_t(k) = out · [cos φ_t | sin φ_t]` with `x_t = cos φ_t·u + sin φ_t·u(−k)`
/// (cos φ_t is even and sin φ_t odd in k): the cross terms of all candidates are one GEMM against
/// the shared shift table, without materializing the translated images.
fn fold_row(sc: &[f32], u: &[f32], out: &mut [f32]) {
    let p = sc.len();
    let h = p / 2;
    for k in 0..h {
        let m = p - 1 - k;
        out[k] = sc[k] * u[k] + sc[m] * u[m];
        out[h + k] = sc[k] * u[m] - sc[m] * u[k];
    }
}

/// Output elements of one `pose_scores` call (bounds the score buffer at 32 MB).
const SCORE_ELEMS: usize = 1 << 23;

impl PoseSearch {
    /// A search for D×D images.
    pub fn new(cfg: SearchConfig, d: usize) -> Result<Self> {
        if cfg.base_healpy == 0 {
            return Err(Error::invalid(
                "--base-healpy must be at least 1 (the translation grid is at resolution base_healpy − 1)",
            ));
        }
        if cfg.nkeptposes == 0 || cfg.t_ngrid == 0 {
            return Err(Error::invalid(
                "--nkeptposes and --t-ngrid must be at least 1",
            ));
        }
        if !(cfg.t_extent >= 0.0 && cfg.t_extent.is_finite()) {
            return Err(Error::invalid(format!(
                "--t-extent must be a non-negative number of pixels, got {}",
                cfg.t_extent
            )));
        }
        if cfg.l_min == 0 || cfg.l_max < cfg.l_min {
            return Err(Error::invalid(format!(
                "need 1 ≤ --l-start ≤ --l-end, got {} and {}",
                cfg.l_min, cfg.l_max
            )));
        }
        let lattice = Lattice::for_image(d, true)?;
        let base_quat = so3_grid::grid_so3(cfg.base_healpy);
        let base_rot = base_quat.iter().map(|q| rot32(&quat_to_rot(q))).collect();
        let base_shifts = shift_grid::base_shift_grid(
            cfg.base_healpy - 1,
            cfg.t_extent,
            cfg.t_ngrid,
            cfg.t_xshift,
            cfg.t_yshift,
        )
        .into_iter()
        .map(|t| [t[0] as f32, t[1] as f32])
        .collect();
        Ok(PoseSearch {
            cfg,
            d,
            lattice,
            base_quat,
            base_rot,
            base_shifts,
            bands: HashMap::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SearchConfig {
        &self.cfg
    }

    /// Change the band limits (the reference's per-epoch `--l-ramp-epochs` ramp).
    pub fn set_l_range(&mut self, l_min: usize, l_max: usize) {
        self.cfg.l_min = l_min;
        self.cfg.l_max = l_max.max(l_min);
    }

    /// Band limit of iteration `it`: `l_min + ⌊it/niter·(l_max − l_min)⌋`, at most D/2 (`getL`).
    pub fn band_limit(&self, it: usize) -> usize {
        let (lo, hi) = (self.cfg.l_min, self.cfg.l_max);
        let l = if self.cfg.niter == 0 {
            lo
        } else {
            lo + ((it as f64 / self.cfg.niter as f64) * (hi - lo) as f64) as usize
        };
        l.min(self.d / 2)
    }

    /// Number of base-grid rotations × shifts.
    pub fn base_size(&self) -> (usize, usize) {
        (self.base_rot.len(), self.base_shifts.len())
    }

    fn band(&mut self, l: usize) -> Result<&Band> {
        if !self.bands.contains_key(&l) {
            let mask = self.lattice.circular_mask(l as f32)?;
            let idx: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
            let coords = idx.iter().map(|&i| self.lattice.coords()[i]).collect();
            let freqs = idx.iter().map(|&i| self.lattice.freqs2d()[i]).collect();
            self.bands.insert(l, Band { idx, coords, freqs });
        }
        Ok(&self.bands[&l])
    }

    /// Shift offsets added to a kept translation at refinement iteration `it` ≥ 1.
    fn offsets(&self, it: usize) -> Vec<[f32; 2]> {
        let f = 0.5f32.powi(it as i32);
        match self.cfg.trans_refine {
            TransRefine::Grid => self
                .base_shifts
                .iter()
                .map(|t| [t[0] * f, t[1] * f])
                .collect(),
            TransRefine::Children => {
                // The base step, halved per iteration; children sit a quarter step away.
                let step = 2.0 * self.cfg.t_extent
                    / (self.cfg.t_ngrid << (self.cfg.base_healpy - 1)) as f64;
                let q = (step * 0.5f64.powi(it as i32 - 1) / 4.0) as f32;
                vec![[-q, -q], [q, -q], [-q, q], [q, q]]
            }
        }
    }

    /// Find the best pose of every image of `batch`: base-grid slices from `base`, refinement
    /// slices from `refine` (the same model, or an exact one); see the module doc. Scores run on
    /// `be`.
    pub fn search<B: Backend<Elem = f32>>(
        &mut self,
        be: &B,
        batch: &SearchBatch<'_>,
        base: &dyn SliceModel,
        refine: &dyn SliceModel,
    ) -> Result<SearchResult> {
        let dd = (self.d + 1) * (self.d + 1);
        if batch.ht.is_empty() || !batch.ht.len().is_multiple_of(dd) {
            return Err(Error::Shape {
                what: "pose search: images".into(),
                expected: format!("a positive multiple of (D+1)² = {dd}"),
                got: batch.ht.len().to_string(),
            });
        }
        let nb = batch.ht.len() / dd;
        for (what, len) in [
            ("ctf", batch.ctf.map(|c| c.len())),
            ("tilt images", batch.tilt.map(|t| t.0.len())),
        ] {
            if let Some(l) = len {
                if l != nb * dd {
                    return Err(Error::Shape {
                        what: format!("pose search: {what}"),
                        expected: format!("{} values ({nb} images of (D+1)²)", nb * dd),
                        got: l.to_string(),
                    });
                }
            }
        }
        let mut stats = SearchStats::default();
        let mut kept = self.base_level(be, batch, nb, base, &mut stats)?;
        // Algorithm 1's upper bound is the error over the whole band |k| < D/2.
        let last_l = self.d / 2;
        if self.cfg.bound {
            self.prune(
                batch,
                nb,
                &mut kept,
                last_l,
                refine,
                self.band_limit(0),
                &mut stats,
            )?;
        }
        for it in 1..=self.cfg.niter {
            let keep = self.cfg.nkeptposes;
            kept = self.refine_level(be, batch, nb, &kept, it, keep, refine, &mut stats)?;
            if self.cfg.bound && it < self.cfg.niter {
                let l = self.band_limit(it);
                self.prune(batch, nb, &mut kept, last_l, refine, l, &mut stats)?;
            }
        }
        let best: Vec<Kept> = kept
            .iter()
            .map(|k| {
                k.first()
                    .copied()
                    .ok_or_else(|| Error::invalid("pose search kept no candidate"))
            })
            .collect::<Result<_>>()?;
        let top = kept
            .iter()
            .map(|ks| {
                ks.iter()
                    .map(|k| Candidate {
                        rot: k.rot,
                        trans_px: k.trans,
                        err: k.err,
                    })
                    .collect()
            })
            .collect();
        Ok(SearchResult {
            rot: best.iter().map(|k| k.rot).collect(),
            trans_px: best.iter().map(|k| k.trans).collect(),
            err: best.iter().map(|k| k.err).collect(),
            top,
            stats,
        })
    }

    /// Band values of image b of a (nb, (D+1)²) stack.
    fn band_values(stack: &[f32], dd: usize, b: usize, band: &Band) -> Vec<f32> {
        let img = &stack[b * dd..(b + 1) * dd];
        band.idx.iter().map(|&i| img[i]).collect()
    }

    /// Iteration 0: every base rotation × every base shift; the `nkeptposes` best per image.
    fn base_level<B: Backend<Elem = f32>>(
        &mut self,
        be: &B,
        batch: &SearchBatch<'_>,
        nb: usize,
        model: &dyn SliceModel,
        stats: &mut SearchStats,
    ) -> Result<Vec<Vec<Kept>>> {
        let l = self.band_limit(0);
        self.band(l)?;
        let band = &self.bands[&l];
        let dd = (self.d + 1) * (self.d + 1);
        let (p, nr, nt) = (band.idx.len(), self.base_rot.len(), self.base_shifts.len());
        let (cos, sin) = phase_tables(&band.freqs, &self.base_shifts);
        let tilt_rot: Option<Vec<[f32; 9]>> = batch
            .tilt
            .map(|(_, t)| self.base_rot.iter().map(|r| compose(&t, r)).collect());
        // Shared models: the base slices once for the whole batch.
        let shared = model.shared();
        let shared_slices = if shared {
            let s = be.upload(&model.slices(&band.coords, &self.base_rot, &[])?)?;
            let st = match &tilt_rot {
                Some(tr) => Some(be.upload(&model.slices(&band.coords, tr, &[])?)?),
                None => None,
            };
            stats.slices += (nr * if st.is_some() { 2 } else { 1 }) as u64;
            Some((s, st))
        } else {
            None
        };
        let chunk = (SCORE_ELEMS / (nr * nt)).max(1);
        let mut kept = Vec::with_capacity(nb);
        for b0 in (0..nb).step_by(chunk) {
            let nc = chunk.min(nb - b0);
            // scores (nc, nr, nt) summed over the image and its tilt pair
            let mut total: Option<Vec<f32>> = None;
            // (images, whether they are the tilted partners)
            let passes =
                std::iter::once((batch.ht, false)).chain(batch.tilt.map(|(t, _)| (t, true)));
            for (stack, tilted) in passes {
                let mut x = vec![0f32; nc * nt * p];
                x.par_chunks_mut(nt * p).enumerate().for_each(|(j, xb)| {
                    let h = Self::band_values(stack, dd, b0 + j, band);
                    translate_with(&h, &cos, &sin, xb);
                });
                let ctf = batch.ctf.map(|c| {
                    (0..nc)
                        .flat_map(|j| Self::band_values(c, dd, b0 + j, band))
                        .collect::<Vec<f32>>()
                });
                let xb = be.upload(&x)?;
                let cb = ctf.map(|c| be.upload(&c)).transpose()?;
                let mut out = be.alloc(nc * nr * nt)?;
                match &shared_slices {
                    Some((s, st)) => {
                        let s = if tilted { st.as_ref().unwrap_or(s) } else { s };
                        be.pose_scores(s, false, &xb, cb.as_ref(), nc, nr, nt, p, &mut out)?;
                    }
                    None => {
                        let rots = match (&tilt_rot, tilted) {
                            (Some(tr), true) => tr,
                            _ => &self.base_rot,
                        };
                        let mut sl = Vec::with_capacity(nc * nr * p);
                        for j in 0..nc {
                            sl.extend(model.slices(&band.coords, rots, &vec![b0 + j; nr])?);
                        }
                        stats.slices += (nc * nr) as u64;
                        let sb = be.upload(&sl)?;
                        be.pose_scores(&sb, true, &xb, cb.as_ref(), nc, nr, nt, p, &mut out)?;
                        be.recycle(sb);
                    }
                }
                let o = be.to_vec(&out)?;
                be.recycle(out);
                be.recycle(xb);
                if let Some(c) = cb {
                    be.recycle(c);
                }
                match &mut total {
                    Some(t) => t.iter_mut().zip(&o).for_each(|(a, b)| *a += b),
                    None => total = Some(o),
                }
            }
            let total = total.unwrap_or_default();
            stats.scores += (nc * nr * nt) as u64;
            stats.score_points += (nc * nr * nt * p) as u64;
            for j in 0..nc {
                let sc = &total[j * nr * nt..(j + 1) * nr * nt];
                let (best, arg): (Vec<f32>, Vec<usize>) = sc.chunks_exact(nt).map(argmin).unzip();
                let top = smallest(&best, self.cfg.nkeptposes);
                kept.push(
                    top.into_iter()
                        .map(|q| {
                            let (s2, s1) = so3_grid::base_ind(q as u64, self.cfg.base_healpy);
                            Kept {
                                quat: self.base_quat[q],
                                s2,
                                s1,
                                rot: self.base_rot[q],
                                trans: self.base_shifts[arg[q]],
                                err: best[q],
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(kept)
    }

    /// Refinement iteration `it`: 8 child rotations × the shift offsets per kept candidate; the
    /// `keep` best (child, shift) pairs per image.
    #[allow(clippy::too_many_arguments)]
    fn refine_level<B: Backend<Elem = f32>>(
        &mut self,
        be: &B,
        batch: &SearchBatch<'_>,
        nb: usize,
        kept: &[Vec<Kept>],
        it: usize,
        keep: usize,
        model: &dyn SliceModel,
        stats: &mut SearchStats,
    ) -> Result<Vec<Vec<Kept>>> {
        let l = self.band_limit(it);
        self.band(l)?;
        let offsets = self.offsets(it);
        let band = &self.bands[&l];
        let dd = (self.d + 1) * (self.d + 1);
        let (p, nt) = (band.idx.len(), offsets.len());
        let res = self.cfg.base_healpy + it as u32 - 1;
        let (cos, sin) = phase_tables(&band.freqs, &offsets);
        // Children of every kept candidate: (image, kept index) → 8 neighbours.
        let children: Vec<Vec<[so3_grid::Neighbor; 8]>> = kept
            .iter()
            .map(|ks| {
                ks.iter()
                    .map(|k| so3_grid::get_neighbor(&k.quat, k.s2, k.s1, res))
                    .collect()
            })
            .collect();
        let child_rot = |n: &so3_grid::Neighbor| rot32(&quat_to_rot(&n.quat));
        let tilt = batch.tilt.map(|(_, t)| t);
        // Slices, (image, kept, child) → row of `slices` (and of `tilt_slices`).
        let mut rows: Vec<Vec<usize>> = Vec::with_capacity(nb);
        let mut rots: Vec<[f32; 9]> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        if model.shared() {
            let n1 = so3_grid::n_s1(res + 1);
            let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
            for ch in &children {
                let mut r = Vec::with_capacity(ch.len() * 8);
                for n in ch.iter().flatten() {
                    let key = (n.s2, n.s1 % n1);
                    let i = *seen.entry(key).or_insert_with(|| {
                        rots.push(child_rot(n));
                        rots.len() - 1
                    });
                    r.push(i);
                }
                rows.push(r);
            }
        } else {
            for (b, ch) in children.iter().enumerate() {
                let mut r = Vec::with_capacity(ch.len() * 8);
                for n in ch.iter().flatten() {
                    rots.push(child_rot(n));
                    owners.push(b);
                    r.push(rots.len() - 1);
                }
                rows.push(r);
            }
        }
        let slices = model.slices(&band.coords, &rots, &owners)?;
        let tilt_slices = match tilt {
            Some(t) => {
                let tr: Vec<[f32; 9]> = rots.iter().map(|r| compose(&t, r)).collect();
                Some(model.slices(&band.coords, &tr, &owners)?)
            }
            None => None,
        };
        stats.slices += (rots.len() * if tilt.is_some() { 2 } else { 1 }) as u64;
        // Scores of every (image, kept, child, offset), summed over the image and its tilt pair:
        // (Σ_b nk_b·8, nt) in (image, kept, child) row order.
        let offs: Vec<usize> = kept
            .iter()
            .scan(0, |acc, ks| {
                let o = *acc;
                *acc += ks.len() * 8;
                Some(o)
            })
            .collect();
        let n_rows = kept.iter().map(|ks| ks.len() * 8).sum::<usize>();
        let table = fold_table(&cos, &sin, nt, p);
        let table_b = be.upload(&table)?;
        let mut total = vec![0f32; n_rows * nt];
        let passes: Vec<(&[f32], &Vec<f32>)> = std::iter::once((batch.ht, &slices))
            .chain(batch.tilt.map(|(t, _)| t).zip(tilt_slices.as_ref()))
            .collect();
        for (stack, sl) in passes {
            // folded rows F (n_rows, P) and their ‖c s‖² + ‖h‖²
            let mut f = vec![0f32; n_rows * p];
            let mut base = vec![0f32; n_rows];
            let per_image: Vec<(Vec<f32>, Vec<f32>)> = (0..nb)
                .into_par_iter()
                .map(|b| {
                    let h = Self::band_values(stack, dd, b, band);
                    let hn: f32 = h.iter().map(|v| v * v).sum();
                    let c = batch.ctf.map(|c| Self::band_values(c, dd, b, band));
                    let mut fb = vec![0f32; kept[b].len() * 8 * p];
                    let mut nb_ = vec![0f32; kept[b].len() * 8];
                    let mut sc = vec![0f32; p];
                    for (j, k) in kept[b].iter().enumerate() {
                        let u = translate_one(&h, &band.freqs, k.trans);
                        for (q, &r) in rows[b][j * 8..(j + 1) * 8].iter().enumerate() {
                            let srow = &sl[r * p..(r + 1) * p];
                            match &c {
                                Some(c) => sc
                                    .iter_mut()
                                    .zip(srow.iter().zip(c))
                                    .for_each(|(o, (a, w))| *o = a * w),
                                None => sc.copy_from_slice(srow),
                            }
                            let row = j * 8 + q;
                            nb_[row] = sc.iter().map(|v| v * v).sum::<f32>() + hn;
                            fold_row(&sc, &u, &mut fb[row * p..(row + 1) * p]);
                        }
                    }
                    (fb, nb_)
                })
                .collect();
            for (b, (fb, nbv)) in per_image.into_iter().enumerate() {
                f[offs[b] * p..offs[b] * p + fb.len()].copy_from_slice(&fb);
                base[offs[b]..offs[b] + nbv.len()].copy_from_slice(&nbv);
            }
            // cross (n_rows, nt) = F (n_rows, P) · Tᵀ (P, nt)
            let fb = be.upload(&f)?;
            let mut cross = be.alloc(n_rows * nt)?;
            be.gemm(
                1.0,
                MatRef {
                    buf: &fb,
                    rows: n_rows,
                    cols: p,
                    trans: false,
                },
                MatRef {
                    buf: &table_b,
                    rows: nt,
                    cols: p,
                    trans: true,
                },
                0.0,
                &mut cross,
            )?;
            let cr = be.to_vec(&cross)?;
            be.recycle(cross);
            be.recycle(fb);
            total
                .par_chunks_mut(nt)
                .zip(cr.par_chunks(nt))
                .zip(base.par_iter())
                .for_each(|((o, c), &n)| {
                    o.iter_mut().zip(c).for_each(|(o, &c)| *o += n - 2.0 * c);
                });
        }
        be.recycle(table_b);
        stats.scores += (n_rows * nt) as u64;
        stats.score_points += (n_rows * nt * p) as u64;
        let mut out_kept = Vec::with_capacity(nb);
        for b in 0..nb {
            let sc = &total[offs[b] * nt..(offs[b] + kept[b].len() * 8) * nt];
            // best shift per (kept, child), then the `keep` best pairs
            let (best, arg): (Vec<f32>, Vec<usize>) = sc.chunks_exact(nt).map(argmin).unzip();
            let top = smallest(&best, keep);
            out_kept.push(
                top.into_iter()
                    .map(|jq| {
                        let (j, q) = (jq / 8, jq % 8);
                        let n = children[b][j][q];
                        let parent = kept[b][j].trans;
                        let off = offsets[arg[jq]];
                        Kept {
                            quat: n.quat,
                            s2: n.s2,
                            s1: n.s1,
                            rot: child_rot(&n),
                            trans: [parent[0] + off[0], parent[1] + off[1]],
                            err: best[jq],
                        }
                    })
                    .collect(),
            );
        }
        Ok(out_kept)
    }

    /// Algorithm 1's bound: drop kept candidates whose error over |k| < `l` is at least the
    /// error over |k| < `l_full` of the image's best candidate (which is always kept).
    #[allow(clippy::too_many_arguments)]
    fn prune(
        &mut self,
        batch: &SearchBatch<'_>,
        nb: usize,
        kept: &mut [Vec<Kept>],
        l_full: usize,
        model: &dyn SliceModel,
        l: usize,
        stats: &mut SearchStats,
    ) -> Result<()> {
        if l_full <= l {
            // The band is already the full one: the bound equals the best error.
            for ks in kept.iter_mut() {
                let before = ks.len();
                if let Some(best) = ks.first().map(|k| k.err) {
                    ks.retain(|k| k.err <= best);
                }
                stats.pruned += (before - ks.len()) as u64;
            }
            return Ok(());
        }
        let ub = self.full_errors(batch, nb, kept, l_full, model, stats)?;
        for (ks, u) in kept.iter_mut().zip(ub) {
            let before = ks.len();
            let mut first = true;
            ks.retain(|k| {
                let keep = first || k.err < u;
                first = false;
                keep
            });
            stats.pruned += (before - ks.len()) as u64;
        }
        Ok(())
    }

    /// The error over |k| < `l` of each image's first kept candidate.
    fn full_errors(
        &mut self,
        batch: &SearchBatch<'_>,
        nb: usize,
        kept: &[Vec<Kept>],
        l: usize,
        model: &dyn SliceModel,
        stats: &mut SearchStats,
    ) -> Result<Vec<f32>> {
        self.band(l)?;
        let band = &self.bands[&l];
        let dd = (self.d + 1) * (self.d + 1);
        let p = band.idx.len();
        let firsts: Vec<Kept> = kept.iter().map(|k| k[0]).collect();
        let owners: Vec<usize> = (0..nb).collect();
        let mut err = vec![0f32; nb];
        let passes: Vec<(&[f32], Option<[f32; 9]>)> = std::iter::once((batch.ht, None))
            .chain(batch.tilt.map(|(t, r)| (t, Some(r))))
            .collect();
        for (stack, tilt) in passes {
            let rots: Vec<[f32; 9]> = firsts
                .iter()
                .map(|k| match tilt {
                    Some(t) => compose(&t, &k.rot),
                    None => k.rot,
                })
                .collect();
            let sl = model.slices(&band.coords, &rots, &owners)?;
            stats.slices += nb as u64;
            for (b, e) in err.iter_mut().enumerate() {
                let x = translate_one(
                    &Self::band_values(stack, dd, b, band),
                    &band.freqs,
                    firsts[b].trans,
                );
                let c = batch.ctf.map(|c| Self::band_values(c, dd, b, band));
                let s = &sl[b * p..(b + 1) * p];
                *e += (0..p)
                    .map(|i| {
                        let ci = c.as_ref().map_or(1.0, |c| c[i]);
                        let r = (ci * s[i] - x[i]) as f64;
                        r * r
                    })
                    .sum::<f64>() as f32;
            }
        }
        Ok(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// The folded GEMM form of the refinement cross terms equals the direct sum over the band
    /// of `c·s·x_t`, x_t the image translated by the kept shift and then by offset t.
    #[test]
    fn folded_cross_terms_match_direct_sums() {
        let d = 16;
        let lat = Lattice::for_image(d, true).unwrap();
        let m = lat.circular_mask(6.0).unwrap();
        let freqs = lat.masked_freqs2d(&m);
        let p = freqs.len();
        assert_eq!(p % 2, 0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut r =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let (h, s, c) = (r(p), r(p), r(p));
        let offsets: Vec<[f32; 2]> = (0..5)
            .map(|i| [0.3 * i as f32 - 0.7, 0.2 - 0.15 * i as f32])
            .collect();
        let kept = [1.25f32, -0.5];
        let u = translate_one(&h, &freqs, kept);
        let sc: Vec<f32> = s.iter().zip(&c).map(|(a, b)| a * b).collect();
        let mut f = vec![0f32; p];
        fold_row(&sc, &u, &mut f);
        let (cos, sin) = phase_tables(&freqs, &offsets);
        let table = fold_table(&cos, &sin, offsets.len(), p);
        for (t, off) in offsets.iter().enumerate() {
            let x = translate_one(&u, &freqs, *off);
            let direct: f64 = (0..p).map(|k| sc[k] as f64 * x[k] as f64).sum();
            let folded: f64 = (0..p).map(|k| f[k] as f64 * table[t * p + k] as f64).sum();
            assert!(
                (direct - folded).abs() < 1e-4 * (1.0 + direct.abs()),
                "t {t}: {direct} vs {folded}"
            );
            // a phase shift keeps the norm of the symmetric band
            let (nx, nh): (f32, f32) =
                (x.iter().map(|v| v * v).sum(), h.iter().map(|v| v * v).sum());
            assert!((nx - nh).abs() < 1e-4 * nh);
        }
    }
}
