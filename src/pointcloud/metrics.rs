//! Evaluation of reconstructed and generated clouds (spec §5): Chamfer and Earth Mover's distance,
//! radius of gyration, rigid alignment by kernel correlation, the two protein RMSDs, and the
//! generation metrics 1-NNA, COV and MMD. Clouds are `(n, 3)` row-major.
//!
//! - **CD** (PointFlow): mean_x min_y ‖x−y‖² + mean_y min_x ‖x−y‖².
//! - **EMD**: mean ‖x − φ(x)‖ (not squared) over the optimal bijection φ of two clouds of equal
//!   size, solved exactly ([`linear_sum_assignment`] on the Euclidean distances).
//! - **Rg** (A17): √(mean ‖x − x̄‖²), unweighted.
//! - **Kernel correlation** (Tsin & Kanade 2004; A18): the rigid `x ↦ R·x + t` maximising
//!   F = Σ_ij exp(−‖R a_i + t − b_j‖²/(2σ²)), σ annealed along a schedule (Å: 3 → 1), started
//!   at the identity. Each step is a preconditioned gradient step on SE(3): with weights
//!   w_ij = exp(·), a'_i = R a_i + t, centroid c of a' and p_i = a'_i − c, the translation
//!   δ = Σ w_ij (b_j − a'_i) / Σ w_ij and the rotation about c, ω = H⁻¹ Σ w_ij p_i × (b_j − a'_i)
//!   with H = Σ_ij w_ij (‖p_i‖² I − p_i p_iᵀ) (both are the gradient of F divided by a positive
//!   curvature, so ascent directions); R ← exp(ω)·R exactly (Rodrigues), and the step is halved
//!   until F increases. Pairs with ‖·‖² > 2σ²·40 are skipped (weight < e⁻⁴⁰).
//! - **RMSD** (proteins, Å): the model is scaled about its centroid by Rg(GT)/Rg(model), aligned to
//!   the GT means by kernel correlation, then **subsampled**: √(mean ‖g_n − x_σ(n)‖²) over the GT
//!   means g with σ the optimal assignment on squared distances, and **atomic**: √(mean over heavy
//!   atoms of the squared distance to the nearest model point).
//! - **Generation** (PointFlow, CD-based): MMD = mean over references of the min CD to a sample;
//!   COV = fraction of references that are the nearest reference of some sample; 1-NNA =
//!   leave-one-out 1-nearest-neighbour accuracy of the two-class set samples ∪ references (50 %
//!   ideal). Ties go to the first candidate in the order samples, then references.

use rayon::prelude::*;

use crate::assignment::linear_sum_assignment;
use crate::geometry::rotation::{expmap, matmul3};
use crate::{Error, Result};

fn d2(a: &[f64], b: &[f64]) -> f64 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    x * x + y * y + z * z
}

fn check_cloud(what: &str, x: &[f64]) -> Result<usize> {
    if x.is_empty() || !x.len().is_multiple_of(3) {
        return Err(Error::Shape {
            what: what.into(),
            expected: "(n, 3) with n ≥ 1".into(),
            got: format!("{} values", x.len()),
        });
    }
    Ok(x.len() / 3)
}

/// For every point of `a` `(n, 3)`, the squared distance to the nearest point of `b` `(m, 3)`.
pub fn nearest_sq_dist(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.par_chunks(3)
        .map(|x| {
            b.chunks_exact(3)
                .map(|y| d2(x, y))
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

/// Chamfer distance between clouds `a` `(n, 3)` and `b` `(m, 3)` (squared units).
///
/// # Errors
/// When a cloud is empty or not `(n, 3)`.
pub fn chamfer(a: &[f64], b: &[f64]) -> Result<f64> {
    let n = check_cloud("Chamfer: first cloud", a)?;
    let m = check_cloud("Chamfer: second cloud", b)?;
    let ab: f64 = nearest_sq_dist(a, b).iter().sum::<f64>() / n as f64;
    let ba: f64 = nearest_sq_dist(b, a).iter().sum::<f64>() / m as f64;
    Ok(ab + ba)
}

/// Earth Mover's distance between clouds of equal size: the mean Euclidean distance over the
/// optimal bijection (exact).
///
/// # Errors
/// When the clouds differ in size or are not `(n, 3)`.
pub fn emd(a: &[f64], b: &[f64]) -> Result<f64> {
    let n = check_cloud("EMD: first cloud", a)?;
    let m = check_cloud("EMD: second cloud", b)?;
    if n != m {
        return Err(Error::Shape {
            what: "EMD clouds".into(),
            expected: format!("equal sizes ({n} points)"),
            got: format!("{m} points"),
        });
    }
    let cost: Vec<f64> = a
        .par_chunks(3)
        .flat_map_iter(|x| b.chunks_exact(3).map(move |y| d2(x, y).sqrt()))
        .collect();
    Ok(linear_sum_assignment(&cost, n, n)?.cost / n as f64)
}

/// Centroid of a cloud `(n, 3)`.
pub fn centroid(x: &[f64]) -> [f64; 3] {
    let n = (x.len() / 3).max(1) as f64;
    let mut c = [0.0; 3];
    for p in x.chunks_exact(3) {
        for d in 0..3 {
            c[d] += p[d] / n;
        }
    }
    c
}

/// Radius of gyration √(mean ‖x − x̄‖²) of a cloud `(n, 3)` (unweighted; the cloud's units).
pub fn radius_of_gyration(x: &[f64]) -> f64 {
    let c = centroid(x);
    let n = (x.len() / 3).max(1) as f64;
    (x.chunks_exact(3).map(|p| d2(p, &c)).sum::<f64>() / n).sqrt()
}

/// `model` scaled about its centroid by Rg(`truth`)/Rg(`model`), and that factor.
///
/// # Errors
/// When a cloud is empty or the model has zero extent.
pub fn rg_scale(model: &[f64], truth: &[f64]) -> Result<(Vec<f64>, f64)> {
    check_cloud("Rg scaling: model", model)?;
    check_cloud("Rg scaling: truth", truth)?;
    let rm = radius_of_gyration(model);
    if rm.is_nan() || rm <= 0.0 {
        return Err(Error::invalid(
            "Rg scaling: the model's points coincide (Rg = 0)",
        ));
    }
    let f = radius_of_gyration(truth) / rm;
    let c = centroid(model);
    let out = model
        .chunks_exact(3)
        .flat_map(|p| (0..3).map(move |d| c[d] + f * (p[d] - c[d])))
        .collect();
    Ok((out, f))
}

/// A rigid motion `x ↦ R·x + t` (column vectors; for row vectors `x·Rᵀ + t`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rigid {
    /// rotation, row-major
    pub rot: [f64; 9],
    /// translation
    pub trans: [f64; 3],
}

impl Rigid {
    /// The identity.
    pub const IDENTITY: Rigid = Rigid {
        rot: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        trans: [0.0; 3],
    };

    /// Apply to one point.
    pub fn apply(&self, p: &[f64]) -> [f64; 3] {
        let r = &self.rot;
        [
            r[0] * p[0] + r[1] * p[1] + r[2] * p[2] + self.trans[0],
            r[3] * p[0] + r[4] * p[1] + r[5] * p[2] + self.trans[1],
            r[6] * p[0] + r[7] * p[1] + r[8] * p[2] + self.trans[2],
        ]
    }

    /// Apply to a cloud `(n, 3)`.
    pub fn apply_cloud(&self, x: &[f64]) -> Vec<f64> {
        x.chunks_exact(3).flat_map(|p| self.apply(p)).collect()
    }
}

/// Settings of [`align_kernel_correlation`].
#[derive(Clone, Debug, PartialEq)]
pub struct KcParams {
    /// kernel widths σ, in the clouds' units, used in turn (annealing)
    pub sigmas: Vec<f64>,
    /// ascent steps per σ at most
    pub max_iter: usize,
    /// stop a σ when the step moves no point by more than this (the clouds' units)
    pub tol: f64,
}

impl KcParams {
    /// The Å default of A18: σ = 3, 2, 1.5, 1 Å, 100 steps each, tolerance 10⁻⁸ Å.
    pub fn angstrom() -> Self {
        Self {
            sigmas: vec![3.0, 2.0, 1.5, 1.0],
            max_iter: 100,
            tol: 1e-8,
        }
    }
}

/// F = Σ_ij exp(−‖a_i − b_j‖²/(2σ²)) for the moved cloud `a`.
fn kc_value(a: &[f64], b: &[f64], sigma: f64) -> f64 {
    let s = 1.0 / (2.0 * sigma * sigma);
    let cut = 40.0 / s;
    a.par_chunks(3)
        .map(|x| {
            b.chunks_exact(3)
                .map(|y| {
                    let q = d2(x, y);
                    if q > cut {
                        0.0
                    } else {
                        (-q * s).exp()
                    }
                })
                .sum::<f64>()
        })
        .collect::<Vec<_>>()
        .iter()
        .sum()
}

/// Solve the symmetric 3×3 system `h·x = g`; `None` when (nearly) singular.
fn solve3(h: &[f64; 9], g: &[f64; 3]) -> Option<[f64; 3]> {
    let det = h[0] * (h[4] * h[8] - h[5] * h[7]) - h[1] * (h[3] * h[8] - h[5] * h[6])
        + h[2] * (h[3] * h[7] - h[4] * h[6]);
    let tr = h[0] + h[4] + h[8];
    if det.is_nan() || det.abs() <= 1e-12 * tr * tr * tr {
        return None;
    }
    let inv = [
        h[4] * h[8] - h[5] * h[7],
        h[2] * h[7] - h[1] * h[8],
        h[1] * h[5] - h[2] * h[4],
        h[5] * h[6] - h[3] * h[8],
        h[0] * h[8] - h[2] * h[6],
        h[2] * h[3] - h[0] * h[5],
        h[3] * h[7] - h[4] * h[6],
        h[1] * h[6] - h[0] * h[7],
        h[0] * h[4] - h[1] * h[3],
    ];
    Some([
        (inv[0] * g[0] + inv[1] * g[1] + inv[2] * g[2]) / det,
        (inv[3] * g[0] + inv[4] * g[1] + inv[5] * g[2]) / det,
        (inv[6] * g[0] + inv[7] * g[1] + inv[8] * g[2]) / det,
    ])
}

/// The rigid motion of `moving` `(n, 3)` that maximises its kernel correlation with `fixed`
/// `(m, 3)`, from the identity, and the final F at the last σ.
///
/// # Errors
/// When a cloud is empty, or a σ is not positive.
pub fn align_kernel_correlation(
    moving: &[f64],
    fixed: &[f64],
    p: &KcParams,
) -> Result<(Rigid, f64)> {
    check_cloud("kernel correlation: moving cloud", moving)?;
    check_cloud("kernel correlation: fixed cloud", fixed)?;
    if p.sigmas.is_empty() || p.sigmas.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
        return Err(Error::invalid(format!(
            "kernel correlation: σ schedule must be positive, got {:?}",
            p.sigmas
        )));
    }
    let mut tr = Rigid::IDENTITY;
    let mut f = 0.0;
    for &sigma in &p.sigmas {
        let s = 1.0 / (2.0 * sigma * sigma);
        let cut = 40.0 / s;
        let mut cur = tr.apply_cloud(moving);
        f = kc_value(&cur, fixed, sigma);
        for _ in 0..p.max_iter {
            let c = centroid(&cur);
            // per moving point: W, Σw(b − a'), Σw p×(b − a'), Σw(‖p‖²I − ppᵀ) (as 6 values)
            let parts: Vec<[f64; 13]> = cur
                .par_chunks(3)
                .map(|x| {
                    let pp = [x[0] - c[0], x[1] - c[1], x[2] - c[2]];
                    let mut acc = [0.0; 13];
                    let mut sb = [0.0; 3];
                    let mut w = 0.0;
                    for y in fixed.chunks_exact(3) {
                        let q = d2(x, y);
                        if q > cut {
                            continue;
                        }
                        let e = (-q * s).exp();
                        w += e;
                        for d in 0..3 {
                            sb[d] += e * (y[d] - x[d]);
                        }
                    }
                    acc[0] = w;
                    acc[1..4].copy_from_slice(&sb);
                    acc[4] = pp[1] * sb[2] - pp[2] * sb[1];
                    acc[5] = pp[2] * sb[0] - pp[0] * sb[2];
                    acc[6] = pp[0] * sb[1] - pp[1] * sb[0];
                    let r2 = pp[0] * pp[0] + pp[1] * pp[1] + pp[2] * pp[2];
                    acc[7] = w * (r2 - pp[0] * pp[0]);
                    acc[8] = -w * pp[0] * pp[1];
                    acc[9] = -w * pp[0] * pp[2];
                    acc[10] = w * (r2 - pp[1] * pp[1]);
                    acc[11] = -w * pp[1] * pp[2];
                    acc[12] = w * (r2 - pp[2] * pp[2]);
                    acc
                })
                .collect();
            let mut g = [0.0; 13];
            for a in &parts {
                for (x, y) in g.iter_mut().zip(a) {
                    *x += y;
                }
            }
            if g[0] <= 0.0 || g[0].is_nan() {
                break; // no pair within reach of the kernel: nothing pulls
            }
            let delta = [g[1] / g[0], g[2] / g[0], g[3] / g[0]];
            let h = [g[7], g[8], g[9], g[8], g[10], g[11], g[9], g[11], g[12]];
            let omega = solve3(&h, &[g[4], g[5], g[6]]).unwrap_or([0.0; 3]);
            let rmax = cur
                .chunks_exact(3)
                .map(|x| d2(x, &c).sqrt())
                .fold(0.0f64, f64::max);
            let mut step = 1.0;
            let mut accepted = false;
            let mut moved = 0.0;
            for _ in 0..30 {
                let w = omega.map(|v| v * step);
                let e = expmap(w);
                // x ↦ E(x − c) + c + step·δ, composed onto tr
                let rot = matmul3(&e, &tr.rot);
                let mut trans = [0.0; 3];
                for i in 0..3 {
                    let tc: f64 = (0..3).map(|j| e[3 * i + j] * (tr.trans[j] - c[j])).sum();
                    trans[i] = tc + c[i] + step * delta[i];
                }
                let cand = Rigid { rot, trans };
                let moved_cloud = cand.apply_cloud(moving);
                let fc = kc_value(&moved_cloud, fixed, sigma);
                if fc > f {
                    // bound on any point's displacement: |ω|·r_max + |δ|
                    moved = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt() * rmax
                        + step
                            * (delta[0] * delta[0] + delta[1] * delta[1] + delta[2] * delta[2])
                                .sqrt();
                    tr = cand;
                    cur = moved_cloud;
                    f = fc;
                    accepted = true;
                    break;
                }
                step *= 0.5;
            }
            if !accepted || moved < p.tol {
                break;
            }
        }
    }
    Ok((tr, f))
}

/// The two protein RMSDs and what they were computed with.
#[derive(Clone, Debug, PartialEq)]
pub struct RmsdReport {
    /// Rg(GT)/Rg(model), the factor the model was scaled by
    pub rg_scale: f64,
    /// the alignment found (applied after the scaling)
    pub align: Rigid,
    /// RMSD over the GT means, matched by the optimal assignment
    pub subsampled: f64,
    /// RMSD of every heavy atom to its nearest model point, when atoms are given
    pub atomic: Option<f64>,
}

/// The model `(n, 3)` scaled (about its centroid) to the Rg of the GT means `(m, 3)` and moved by
/// kernel correlation onto them; the scale factor and the alignment.
///
/// # Errors
/// As [`rg_scale`] and [`align_kernel_correlation`].
pub fn scale_and_align(
    model: &[f64],
    gt_means: &[f64],
    kc: &KcParams,
) -> Result<(Vec<f64>, f64, Rigid)> {
    let (scaled, f) = rg_scale(model, gt_means)?;
    let (tr, _) = align_kernel_correlation(&scaled, gt_means, kc)?;
    Ok((tr.apply_cloud(&scaled), f, tr))
}

/// √(mean ‖g_n − x_σ(n)‖²) with σ the optimal assignment of the (smaller) set onto the other on
/// squared distances; over the min(n, m) matched pairs.
///
/// # Errors
/// When a cloud is empty or not `(n, 3)`.
pub fn rmsd_assigned(gt: &[f64], model: &[f64]) -> Result<f64> {
    let n = check_cloud("RMSD: truth", gt)?;
    let m = check_cloud("RMSD: model", model)?;
    let cost: Vec<f64> = gt
        .par_chunks(3)
        .flat_map_iter(|x| model.chunks_exact(3).map(move |y| d2(x, y)))
        .collect();
    Ok((linear_sum_assignment(&cost, n, m)?.cost / n.min(m) as f64).sqrt())
}

/// √(mean over atoms of the squared distance to the nearest model point).
///
/// # Errors
/// When a cloud is empty or not `(n, 3)`.
pub fn rmsd_nearest(atoms: &[f64], model: &[f64]) -> Result<f64> {
    let a = check_cloud("RMSD: atoms", atoms)?;
    check_cloud("RMSD: model", model)?;
    Ok((nearest_sq_dist(atoms, model).iter().sum::<f64>() / a as f64).sqrt())
}

/// Rg scaling, kernel-correlation alignment, then the subsampled and (with `atoms`) atomic RMSD
/// of a model against GT means; everything in the same units (Å).
///
/// # Errors
/// As [`scale_and_align`], [`rmsd_assigned`], [`rmsd_nearest`].
pub fn protein_rmsd(
    model: &[f64],
    gt_means: &[f64],
    atoms: Option<&[f64]>,
    kc: &KcParams,
) -> Result<RmsdReport> {
    let (aligned, f, tr) = scale_and_align(model, gt_means, kc)?;
    Ok(RmsdReport {
        rg_scale: f,
        align: tr,
        subsampled: rmsd_assigned(gt_means, &aligned)?,
        atomic: atoms.map(|a| rmsd_nearest(a, &aligned)).transpose()?,
    })
}

/// Generation metrics of a set of samples against references.
#[derive(Clone, Debug, PartialEq)]
pub struct GenMetrics {
    /// leave-one-out 1-NN accuracy, in [0, 1] (0.5 ideal)
    pub one_nna: f64,
    /// coverage, in [0, 1]
    pub cov: f64,
    /// minimum matching distance (CD, squared units)
    pub mmd: f64,
}

/// Chamfer distances between every cloud of `a` (`na` clouds of `(n, 3)`) and every cloud of `b`
/// (`nb` of `(m, 3)`): `(na, nb)` row-major.
///
/// # Errors
/// When a set is empty or its length is not a multiple of its clouds' size.
pub fn chamfer_matrix(a: &[f64], n: usize, b: &[f64], m: usize) -> Result<Vec<f64>> {
    if n == 0
        || m == 0
        || a.is_empty()
        || b.is_empty()
        || !a.len().is_multiple_of(3 * n)
        || !b.len().is_multiple_of(3 * m)
    {
        return Err(Error::Shape {
            what: "Chamfer matrix: cloud sets".into(),
            expected: format!("(S, {n}, 3) and (R, {m}, 3), S, R ≥ 1"),
            got: format!("{} and {} values", a.len(), b.len()),
        });
    }
    let (na, nb) = (a.len() / (3 * n), b.len() / (3 * m));
    (0..na * nb)
        .into_par_iter()
        .map(|k| {
            let (i, j) = (k / nb, k % nb);
            chamfer(
                &a[3 * n * i..3 * n * (i + 1)],
                &b[3 * m * j..3 * m * (j + 1)],
            )
        })
        .collect()
}

/// 1-NNA, COV and MMD (CD-based) of `samples` (`(S, n, 3)`) against `refs` (`(R, m, 3)`).
///
/// # Errors
/// As [`chamfer_matrix`]; 1-NNA needs S + R ≥ 3 so that every cloud has a neighbour.
pub fn generation_metrics(samples: &[f64], n: usize, refs: &[f64], m: usize) -> Result<GenMetrics> {
    let sr = chamfer_matrix(samples, n, refs, m)?;
    let ss = chamfer_matrix(samples, n, samples, n)?;
    let rr = chamfer_matrix(refs, m, refs, m)?;
    let (ns, nr) = (samples.len() / (3 * n), refs.len() / (3 * m));
    if ns + nr < 3 {
        return Err(Error::invalid(
            "generation metrics: need at least 3 clouds in samples ∪ references",
        ));
    }
    let argmin = |it: &mut dyn Iterator<Item = (usize, f64)>| {
        it.fold(
            (usize::MAX, f64::INFINITY),
            |b, c| if c.1 < b.1 { c } else { b },
        )
        .0
    };
    // distance from cloud u to cloud v in the joint order (samples 0..ns, refs ns..ns+nr)
    let dist = |u: usize, v: usize| match (u < ns, v < ns) {
        (true, true) => ss[u * ns + v],
        (true, false) => sr[u * nr + (v - ns)],
        (false, true) => sr[v * nr + (u - ns)],
        (false, false) => rr[(u - ns) * nr + (v - ns)],
    };
    let tot = ns + nr;
    let correct = (0..tot)
        .filter(|&u| {
            let nn = argmin(&mut (0..tot).filter(|&v| v != u).map(|v| (v, dist(u, v))));
            (nn < ns) == (u < ns)
        })
        .count();
    let mut covered = vec![false; nr];
    for i in 0..ns {
        let j = argmin(&mut (0..nr).map(|j| (j, sr[i * nr + j])));
        covered[j] = true;
    }
    let mmd = (0..nr)
        .map(|j| {
            (0..ns)
                .map(|i| sr[i * nr + j])
                .fold(f64::INFINITY, f64::min)
        })
        .sum::<f64>()
        / nr as f64;
    Ok(GenMetrics {
        one_nna: correct as f64 / tot as f64,
        cov: covered.iter().filter(|&&c| c).count() as f64 / nr as f64,
        mmd,
    })
}
