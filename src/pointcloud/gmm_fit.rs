//! Gaussian mixtures fitted to 3D points by expectation–maximisation, as sklearn's
//! `GaussianMixture(n_components=K, covariance_type='tied' | 'full', max_iter=100, tol=1e-3,
//! reg_covar=1e-6, init_params='kmeans')`: the CryoStruct clouds are the K means of a tied fit to a
//! structure's heavy atoms (spec A14), the coarse-grained observation the means of a full fit to a
//! cloud (A13).
//!
//! Model: p(x) = Σ_k w_k N(x; μ_k, Σ_k), with one shared Σ (`tied`) or one per component (`full`).
//!
//! - **Init**: k-means (greedy k-means++ seeding from `seed`, [`crate::analysis::kmeans`]); the
//!   hard labels give the first M-step, as sklearn's `init_params='kmeans'`.
//! - **E-step** (rayon over chunks of points, O(A·K)): log w_k + log N(x_i; μ_k, Σ_k) with the
//!   inverse Cholesky factor of Σ_k, normalised by log-sum-exp. Responsibilities are not stored:
//!   each chunk accumulates the sufficient statistics N_k = Σ_i r_ik, S_k = Σ_i r_ik x_i and (full)
//!   Σ_i r_ik x_i x_iᵀ, so memory is O(K) per chunk. Terms with log r_ik < max − 64 (r < 1.6·10⁻²⁸
//!   of the largest) are skipped; they cannot change an f64 sum that holds the largest term.
//!   Chunks are summed in order, so a fit is bit-reproducible for a seed.
//! - **M-step**: N_k += 10·ε (sklearn), w_k = N_k/Σ N, μ_k = S_k/N_k;
//!   tied Σ = (Σ_i x_i x_iᵀ − Σ_k N_k μ_k μ_kᵀ)/Σ N + reg·I; full Σ_k = Σ_i r_ik x_i x_iᵀ/N_k −
//!   μ_k μ_kᵀ + reg·I. Points are centred on their mean first (and the means moved back), so these
//!   one-pass moments lose little precision.
//! - **Stop**: when the mean per-point log-likelihood (the E-step's) changes by less than `tol`, or
//!   after `max_iter` iterations, as sklearn.

use rayon::prelude::*;

use crate::analysis::kmeans::kmeans;
use crate::{Error, Result};

/// Covariance structure of the mixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Covariance {
    /// one 3×3 covariance shared by every component (sklearn `tied`)
    Tied,
    /// one 3×3 covariance per component (sklearn `full`)
    Full,
}

/// Settings of [`fit_gmm`].
#[derive(Clone, Debug, PartialEq)]
pub struct GmmFitParams {
    /// number of components K
    pub k: usize,
    /// covariance structure
    pub covariance: Covariance,
    /// EM iterations at most (sklearn 100)
    pub max_iter: usize,
    /// convergence threshold on the change of the mean per-point log-likelihood (sklearn 1e-3)
    pub tol: f64,
    /// added to the covariance diagonal, in squared coordinate units (sklearn 1e-6)
    pub reg_covar: f64,
    /// Lloyd iterations of the k-means initialisation
    pub kmeans_iter: usize,
    /// seed of the k-means++ initialisation
    pub seed: u64,
}

impl GmmFitParams {
    /// sklearn's defaults for `k` components of the given covariance structure.
    pub fn new(k: usize, covariance: Covariance, seed: u64) -> Self {
        Self {
            k,
            covariance,
            max_iter: 100,
            tol: 1e-3,
            reg_covar: 1e-6,
            kmeans_iter: 100,
            seed,
        }
    }
}

/// A fitted mixture.
#[derive(Clone, Debug, PartialEq)]
pub struct GmmFit {
    /// means `(k, 3)`, in the points' units
    pub means: Vec<f64>,
    /// covariances, row-major 3×3: one (tied) or `k` (full)
    pub covariances: Vec<[f64; 9]>,
    /// mixture weights `(k)`, summing to 1
    pub weights: Vec<f64>,
    /// mean per-point log-likelihood at each E-step, then (last entry) of the returned parameters
    pub log_likelihood: Vec<f64>,
    /// EM iterations run
    pub n_iter: usize,
    /// whether the change fell below `tol` before `max_iter`
    pub converged: bool,
}

impl GmmFit {
    /// Number of components.
    pub fn k(&self) -> usize {
        self.weights.len()
    }

    /// Covariance of component `k` (the shared one when tied).
    pub fn covariance(&self, k: usize) -> &[f64; 9] {
        &self.covariances[if self.covariances.len() == 1 { 0 } else { k }]
    }

    /// Mean per-point log-likelihood of `points` `(a, 3)` under the mixture.
    ///
    /// # Errors
    /// When a covariance is not positive definite.
    pub fn mean_log_likelihood(&self, points: &[f64]) -> Result<f64> {
        let comps = components(&self.means, &self.covariances, &self.weights)?;
        let st = e_step(points, &comps, false);
        Ok(st.ll / (points.len() / 3).max(1) as f64)
    }
}

/// Per-component constants of the E-step, contiguous for the inner loop: `μ` (3), the lower
/// triangle of `L⁻¹` with `Σ = L·Lᵀ` (`m00 m10 m11 m20 m21 m22`), and
/// `log w − ½ log det Σ − (3/2) log 2π`.
#[derive(Clone, Copy)]
struct Comp {
    mu: [f64; 3],
    li: [f64; 6],
    c: f64,
}

/// Sufficient statistics of one E-step (`s2` only for full covariances: xx xy xz yy yz zz).
struct Stats {
    ll: f64,
    nk: Vec<f64>,
    sk: Vec<f64>,
    s2: Vec<f64>,
}

impl Stats {
    fn zeros(k: usize, full: bool) -> Self {
        Self {
            ll: 0.0,
            nk: vec![0.0; k],
            sk: vec![0.0; 3 * k],
            s2: if full { vec![0.0; 6 * k] } else { Vec::new() },
        }
    }

    fn add(&mut self, o: &Stats) {
        self.ll += o.ll;
        for (a, b) in self.nk.iter_mut().zip(&o.nk) {
            *a += b;
        }
        for (a, b) in self.sk.iter_mut().zip(&o.sk) {
            *a += b;
        }
        for (a, b) in self.s2.iter_mut().zip(&o.s2) {
            *a += b;
        }
    }
}

/// `log r` below the row maximum minus this is skipped (exp(−64) ≈ 1.6e-28).
const LOG_CUT: f64 = 64.0;
/// Points per rayon task of the E-step.
const CHUNK: usize = 512;

/// Lower Cholesky factor of a symmetric 3×3 matrix, as its inverse (lower triangle) and
/// `log det`; `None` when not positive definite.
fn inv_cholesky(a: &[f64; 9]) -> Option<([f64; 6], f64)> {
    let l00 = a[0].sqrt();
    let l10 = a[3] / l00;
    let l20 = a[6] / l00;
    let l11 = (a[4] - l10 * l10).sqrt();
    let l21 = (a[7] - l20 * l10) / l11;
    let l22 = (a[8] - l20 * l20 - l21 * l21).sqrt();
    let diag = [l00, l11, l22];
    if diag.iter().any(|d| !(d.is_finite() && *d > 0.0)) || !(l10.is_finite() && l20.is_finite()) {
        return None;
    }
    let m00 = 1.0 / l00;
    let m11 = 1.0 / l11;
    let m22 = 1.0 / l22;
    let m10 = -l10 * m00 / l11;
    let m21 = -l21 * m11 / l22;
    let m20 = -(l20 * m00 + l21 * m10) / l22;
    let logdet = 2.0 * (l00.ln() + l11.ln() + l22.ln());
    Some(([m00, m10, m11, m20, m21, m22], logdet))
}

fn components(means: &[f64], covs: &[[f64; 9]], weights: &[f64]) -> Result<Vec<Comp>> {
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    let factors = covs
        .iter()
        .map(|c| {
            inv_cholesky(c).ok_or_else(|| {
                Error::invalid(
                    "Gaussian mixture fit: a covariance is not positive definite (collapsed \
                     component or too few distinct points; raise reg_covar or lower K)",
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(weights
        .iter()
        .enumerate()
        .map(|(k, &w)| {
            let (li, logdet) = factors[if factors.len() == 1 { 0 } else { k }];
            Comp {
                mu: [means[3 * k], means[3 * k + 1], means[3 * k + 2]],
                li,
                c: w.ln() - 0.5 * logdet - 1.5 * ln2pi,
            }
        })
        .collect())
}

/// One E-step over `points` `(a, 3)`: total log-likelihood and the sufficient statistics.
fn e_step(points: &[f64], comps: &[Comp], full: bool) -> Stats {
    let k = comps.len();
    let parts: Vec<Stats> = points
        .par_chunks(3 * CHUNK)
        .map(|chunk| {
            let mut st = Stats::zeros(k, full);
            let mut lp = vec![0.0f64; k];
            for x in chunk.chunks_exact(3) {
                let mut mx = f64::NEG_INFINITY;
                for (l, c) in lp.iter_mut().zip(comps) {
                    let d0 = x[0] - c.mu[0];
                    let d1 = x[1] - c.mu[1];
                    let d2 = x[2] - c.mu[2];
                    let z0 = c.li[0] * d0;
                    let z1 = c.li[1] * d0 + c.li[2] * d1;
                    let z2 = c.li[3] * d0 + c.li[4] * d1 + c.li[5] * d2;
                    let v = c.c - 0.5 * (z0 * z0 + z1 * z1 + z2 * z2);
                    *l = v;
                    mx = mx.max(v);
                }
                let mut s = 0.0;
                for l in lp.iter_mut() {
                    let d = *l - mx;
                    *l = if d > -LOG_CUT { d.exp() } else { 0.0 };
                    s += *l;
                }
                st.ll += mx + s.ln();
                let inv = 1.0 / s;
                for (j, &e) in lp.iter().enumerate() {
                    if e == 0.0 {
                        continue;
                    }
                    let r = e * inv;
                    st.nk[j] += r;
                    st.sk[3 * j] += r * x[0];
                    st.sk[3 * j + 1] += r * x[1];
                    st.sk[3 * j + 2] += r * x[2];
                    if full {
                        let q = &mut st.s2[6 * j..6 * j + 6];
                        q[0] += r * x[0] * x[0];
                        q[1] += r * x[0] * x[1];
                        q[2] += r * x[0] * x[2];
                        q[3] += r * x[1] * x[1];
                        q[4] += r * x[1] * x[2];
                        q[5] += r * x[2] * x[2];
                    }
                }
            }
            st
        })
        .collect();
    let mut tot = Stats::zeros(k, full);
    for p in &parts {
        tot.add(p);
    }
    tot
}

/// M-step from sufficient statistics; `xx` is Σ_i x_i x_iᵀ (tied only).
fn m_step(st: &Stats, xx: &[f64; 9], p: &GmmFitParams) -> (Vec<f64>, Vec<[f64; 9]>, Vec<f64>) {
    let k = st.nk.len();
    let nk: Vec<f64> = st.nk.iter().map(|n| n + 10.0 * f64::EPSILON).collect();
    let ntot: f64 = nk.iter().sum();
    let weights: Vec<f64> = nk.iter().map(|n| n / ntot).collect();
    let means: Vec<f64> = (0..3 * k).map(|i| st.sk[i] / nk[i / 3]).collect();
    let reg = |mut c: [f64; 9]| {
        c[0] += p.reg_covar;
        c[4] += p.reg_covar;
        c[8] += p.reg_covar;
        c
    };
    let covs = match p.covariance {
        Covariance::Tied => {
            let mut c = *xx;
            for j in 0..k {
                let m = &means[3 * j..3 * j + 3];
                for a in 0..3 {
                    for b in 0..3 {
                        c[3 * a + b] -= nk[j] * m[a] * m[b];
                    }
                }
            }
            vec![reg(c.map(|v| v / ntot))]
        }
        Covariance::Full => (0..k)
            .map(|j| {
                let m = &means[3 * j..3 * j + 3];
                let q = &st.s2[6 * j..6 * j + 6];
                let sym = [q[0], q[1], q[2], q[1], q[3], q[4], q[2], q[4], q[5]];
                let mut c = [0.0; 9];
                for a in 0..3 {
                    for b in 0..3 {
                        c[3 * a + b] = sym[3 * a + b] / nk[j] - m[a] * m[b];
                    }
                }
                reg(c)
            })
            .collect(),
    };
    (means, covs, weights)
}

/// Fit a K-component mixture to `points` `(a, 3)` (any units; covariances in those units squared).
///
/// # Errors
/// When `points` is not a finite `(a, 3)` array, K is 0 or more than the number of points, or a
/// covariance becomes singular (too few distinct points for K).
pub fn fit_gmm(points: &[f64], p: &GmmFitParams) -> Result<GmmFit> {
    if !points.len().is_multiple_of(3) {
        return Err(Error::Shape {
            what: "Gaussian mixture fit: points".into(),
            expected: "(A, 3)".into(),
            got: format!("{} values", points.len()),
        });
    }
    if let Some(i) = points.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "Gaussian mixture fit: point {} is not finite",
            i / 3
        )));
    }
    let a = points.len() / 3;
    if p.k == 0 || p.k > a {
        return Err(Error::invalid(format!(
            "Gaussian mixture fit needs 1 ≤ K ≤ A, got K = {} components for A = {a} points",
            p.k
        )));
    }
    let full = p.covariance == Covariance::Full;
    let mut center = [0.0; 3];
    for x in points.chunks_exact(3) {
        for d in 0..3 {
            center[d] += x[d] / a as f64;
        }
    }
    let xs: Vec<f64> = points
        .chunks_exact(3)
        .flat_map(|x| (0..3).map(move |d| x[d] - center[d]))
        .collect();
    let mut xx = [0.0; 9];
    for x in xs.chunks_exact(3) {
        for i in 0..3 {
            for j in 0..3 {
                xx[3 * i + j] += x[i] * x[j];
            }
        }
    }
    // k-means init → hard responsibilities → first M-step
    let xf: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
    let km = kmeans(&xf, a, 3, p.k, p.kmeans_iter, p.seed)?;
    let mut st = Stats::zeros(p.k, full);
    for (x, &l) in xs.chunks_exact(3).zip(&km.labels) {
        st.nk[l] += 1.0;
        for (s, v) in st.sk[3 * l..3 * l + 3].iter_mut().zip(x) {
            *s += v;
        }
        if full {
            let q = &mut st.s2[6 * l..6 * l + 6];
            q[0] += x[0] * x[0];
            q[1] += x[0] * x[1];
            q[2] += x[0] * x[2];
            q[3] += x[1] * x[1];
            q[4] += x[1] * x[2];
            q[5] += x[2] * x[2];
        }
    }
    let (mut means, mut covs, mut weights) = m_step(&st, &xx, p);
    let mut trace = Vec::new();
    let mut converged = false;
    let mut n_iter = 0;
    for _ in 0..p.max_iter {
        n_iter += 1;
        let comps = components(&means, &covs, &weights)?;
        let st = e_step(&xs, &comps, full);
        let ll = st.ll / a as f64;
        (means, covs, weights) = m_step(&st, &xx, p);
        let change = trace.last().map_or(f64::INFINITY, |&prev| ll - prev);
        trace.push(ll);
        if change.abs() < p.tol {
            converged = true;
            break;
        }
    }
    let comps = components(&means, &covs, &weights)?;
    trace.push(e_step(&xs, &comps, false).ll / a as f64);
    for m in means.chunks_exact_mut(3) {
        for d in 0..3 {
            m[d] += center[d];
        }
    }
    Ok(GmmFit {
        means,
        covariances: covs,
        weights,
        log_likelihood: trace,
        n_iter,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_cholesky_whitens() {
        let a = [4.0, 2.0, 0.4, 2.0, 3.0, 0.5, 0.4, 0.5, 2.0];
        let (m, logdet) = inv_cholesky(&a).unwrap();
        // M·A·Mᵀ = I
        let full = [m[0], 0.0, 0.0, m[1], m[2], 0.0, m[3], m[4], m[5]];
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3)
                    .flat_map(|p| (0..3).map(move |q| (p, q)))
                    .map(|(p, q)| full[3 * i + p] * a[3 * p + q] * full[3 * j + q])
                    .sum();
                assert!(
                    (v - f64::from(u8::from(i == j))).abs() < 1e-12,
                    "{i}{j} {v}"
                );
            }
        }
        let det = 4.0 * (3.0 * 2.0 - 0.25) - 2.0 * (2.0 * 2.0 - 0.5 * 0.4)
            + 0.4 * (2.0 * 0.5 - 3.0 * 0.4);
        assert!((logdet - f64::ln(det)).abs() < 1e-12);
        assert!(inv_cholesky(&[1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0]).is_none());
    }
}
