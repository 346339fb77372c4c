//! cryoTWIN's automatic pathway between two GMM components (the paper's Algorithm 1): points on the
//! mixture's ridgeline, chosen greedily for high density and short steps.
//!
//! ## Math
//! For weights `α` on the simplex, the ridgeline point (Ray & Lindsay 2005; every mode of the mixture
//! lies on this set) is
//!
//! `z(α) = (Σ_c α_c Σ_c⁻¹)⁻¹ Σ_c α_c Σ_c⁻¹ μ_c`.
//!
//! Algorithm 1, from component i to j with K steps, ω > 1 and M candidates per step:
//! `z(0) = μ_i`, `z(K) = μ_j`; for k = 1..K−1, `α_i = cos(πk/2K)`, `α_j = (1 − cos(πk/2K))^ω`, the other
//! weights a Dirichlet(`conc`) draw scaled to the remaining mass `1 − α_i − α_j` (M draws), and
//! `z(k) = argmin_m ‖z_m − z(k−1)‖ / p(z_m)` (the paper's constant factor p(z(0)) dropped). The output
//! has K + 1 points.

use crate::{Error, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};

/// A Gaussian mixture with full covariances in d dimensions, with each component's precision and
/// log-determinant precomputed.
#[derive(Clone, Debug)]
pub struct Gmm {
    /// Latent dimension d.
    pub d: usize,
    /// Weights π (C), summing to 1.
    pub pi: Vec<f64>,
    /// Means (C, d), row-major.
    pub mu: Vec<f64>,
    /// Covariances (C, d, d), row-major, symmetric positive definite.
    pub cov: Vec<f64>,
    /// Precisions Σ_c⁻¹ (C, d, d).
    prec: Vec<f64>,
    /// log det Σ_c (C).
    log_det: Vec<f64>,
}

/// One pathway: K + 1 latent points with their log density and the step from the previous point.
#[derive(Clone, Debug, PartialEq)]
pub struct Pathway {
    /// Points z(0..=K), each d values.
    pub z: Vec<Vec<f64>>,
    /// log p(z(k)).
    pub log_p: Vec<f64>,
    /// ‖z(k) − z(k−1)‖ (0 for k = 0).
    pub step: Vec<f64>,
}

/// The settings of Algorithm 1 (the paper's K = 11, ω = 2, M = 1000).
#[derive(Clone, Copy, Debug)]
pub struct PathwayConfig {
    /// Steps K (K + 1 points).
    pub k: usize,
    /// ω > 1: larger keeps the path near the start longer.
    pub omega: f64,
    /// Candidate weight vectors per step, M.
    pub m: usize,
    /// Dirichlet concentration of the other components' weights.
    pub alpha_conc: f64,
    /// Seed of the candidate draws.
    pub seed: u64,
}

impl Default for PathwayConfig {
    fn default() -> Self {
        PathwayConfig {
            k: 11,
            omega: 2.0,
            m: 1000,
            alpha_conc: 1.0,
            seed: 0,
        }
    }
}

/// Cholesky factor L (lower, row-major) of a d×d symmetric positive definite matrix; None if it is not.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Solve `A x = b` given A's Cholesky factor L.
fn cholesky_solve(l: &[f64], d: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0f64; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * d + i];
    }
    let mut x = vec![0f64; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * d + i];
    }
    x
}

impl Gmm {
    /// A mixture from weights (C), means (C, d) and covariances (C, d, d).
    ///
    /// Errors on inconsistent lengths, non-finite values, weights that are negative or do not sum to 1
    /// (within 1e-6), or a covariance that is not symmetric positive definite.
    pub fn new(d: usize, pi: Vec<f64>, mu: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        let c = pi.len();
        if d == 0 || c == 0 || mu.len() != c * d || cov.len() != c * d * d {
            return Err(Error::Shape {
                what: "GMM".into(),
                expected: format!(
                    "pi (C), mu (C, d), cov (C, d, d) with C, d > 0; C = {c}, d = {d}"
                ),
                got: format!("{} means, {} covariance values", mu.len(), cov.len()),
            });
        }
        if pi.iter().chain(&mu).chain(&cov).any(|v| !v.is_finite()) {
            return Err(Error::invalid("GMM parameters must be finite"));
        }
        let total: f64 = pi.iter().sum();
        if pi.iter().any(|&p| p < 0.0) || (total - 1.0).abs() > 1e-6 {
            return Err(Error::invalid(format!(
                "GMM weights must be ≥ 0 and sum to 1, got sum {total}"
            )));
        }
        let mut prec = vec![0f64; c * d * d];
        let mut log_det = vec![0f64; c];
        for k in 0..c {
            let s = &cov[k * d * d..(k + 1) * d * d];
            let asym = (0..d).any(|i| {
                (0..i).any(|j| {
                    (s[i * d + j] - s[j * d + i]).abs() > 1e-9 * (1.0 + s[i * d + j].abs())
                })
            });
            let l = match (asym, cholesky(s, d)) {
                (false, Some(l)) => l,
                _ => {
                    return Err(Error::invalid(format!(
                        "GMM component {k}: covariance is not symmetric positive definite"
                    )))
                }
            };
            log_det[k] = 2.0 * (0..d).map(|i| l[i * d + i].ln()).sum::<f64>();
            for col in 0..d {
                let e: Vec<f64> = (0..d).map(|i| f64::from(u8::from(i == col))).collect();
                let x = cholesky_solve(&l, d, &e);
                for (i, v) in x.into_iter().enumerate() {
                    prec[k * d * d + i * d + col] = v;
                }
            }
        }
        Ok(Gmm {
            d,
            pi,
            mu,
            cov,
            prec,
            log_det,
        })
    }

    /// Number of components C.
    pub fn n_comp(&self) -> usize {
        self.pi.len()
    }

    /// `log p(z)`, the mixture's log density at z (d).
    pub fn log_density(&self, z: &[f64]) -> f64 {
        let d = self.d;
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        let terms: Vec<f64> = (0..self.n_comp())
            .map(|c| {
                let diff: Vec<f64> = (0..d).map(|j| z[j] - self.mu[c * d + j]).collect();
                let p = &self.prec[c * d * d..(c + 1) * d * d];
                let mut q = 0.0;
                for i in 0..d {
                    for j in 0..d {
                        q += diff[i] * p[i * d + j] * diff[j];
                    }
                }
                self.pi[c].ln() - 0.5 * (q + self.log_det[c] + d as f64 * ln2pi)
            })
            .collect();
        super::rate::logsumexp(&terms)
    }

    /// The ridgeline point `z(α) = (Σ α_c Σ_c⁻¹)⁻¹ Σ α_c Σ_c⁻¹ μ_c` for weights α (C, ≥ 0, not all 0).
    pub fn ridgeline_point(&self, alpha: &[f64]) -> Vec<f64> {
        let d = self.d;
        let mut a = vec![0f64; d * d];
        let mut b = vec![0f64; d];
        for (c, &w) in alpha.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let p = &self.prec[c * d * d..(c + 1) * d * d];
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] += w * p[i * d + j];
                    b[i] += w * p[i * d + j] * self.mu[c * d + j];
                }
            }
        }
        // A weighted sum of SPD matrices with weights ≥ 0, not all 0, is SPD.
        match cholesky(&a, d) {
            Some(l) => cholesky_solve(&l, d, &b),
            None => vec![f64::NAN; d],
        }
    }

    /// Algorithm 1 from component `from` to component `to` (module doc).
    pub fn pathway(&self, from: usize, to: usize, cfg: &PathwayConfig) -> Result<Pathway> {
        let nc = self.n_comp();
        if from >= nc || to >= nc || from == to {
            return Err(Error::invalid(format!(
                "pathway: components must be two different indices below C = {nc}, got {from} and {to}"
            )));
        }
        if cfg.k < 1 || cfg.m < 1 || cfg.omega <= 1.0 || cfg.alpha_conc <= 0.0 {
            return Err(Error::invalid(format!(
                "pathway: need K ≥ 1, M ≥ 1, ω > 1 and a positive concentration; got K = {}, M = {}, ω = {}, concentration {}",
                cfg.k, cfg.m, cfg.omega, cfg.alpha_conc
            )));
        }
        let d = self.d;
        let start = self.mu[from * d..(from + 1) * d].to_vec();
        let end = self.mu[to * d..(to + 1) * d].to_vec();
        let others: Vec<usize> = (0..nc).filter(|&c| c != from && c != to).collect();
        let gamma = Gamma::new(cfg.alpha_conc, 1.0)
            .map_err(|e| Error::invalid(format!("pathway: Dirichlet concentration: {e}")))?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let mut z = vec![start];
        for k in 1..cfg.k {
            let cos = (std::f64::consts::PI * k as f64 / (2 * cfg.k) as f64).cos();
            let (ai, aj) = (cos, (1.0 - cos).powf(cfg.omega));
            let rest = (1.0 - ai - aj).max(0.0);
            let prev = &z[k - 1];
            let mut best: Option<(f64, Vec<f64>)> = None;
            for _ in 0..cfg.m {
                let mut alpha = vec![0f64; nc];
                alpha[from] = ai;
                alpha[to] = aj;
                let draws: Vec<f64> = others.iter().map(|_| gamma.sample(&mut rng)).collect();
                let total: f64 = draws.iter().sum();
                if total > 0.0 {
                    for (&c, g) in others.iter().zip(&draws) {
                        alpha[c] = rest * g / total;
                    }
                }
                let cand = self.ridgeline_point(&alpha);
                let dist = cand
                    .iter()
                    .zip(prev)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
                // dist / p(z), compared in log space.
                let cost = dist.ln() - self.log_density(&cand);
                if cost.is_nan() {
                    continue;
                }
                if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                    best = Some((cost, cand));
                }
            }
            let Some((_, p)) = best else {
                return Err(Error::invalid(format!(
                    "pathway: no finite candidate at step {k} of {}",
                    cfg.k
                )));
            };
            z.push(p);
        }
        z.push(end);
        let log_p = z.iter().map(|p| self.log_density(p)).collect();
        let step = (0..z.len())
            .map(|k| {
                if k == 0 {
                    0.0
                } else {
                    z[k].iter()
                        .zip(&z[k - 1])
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt()
                }
            })
            .collect();
        Ok(Pathway { z, log_p, step })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag_cov(vals: &[[f64; 2]]) -> Vec<f64> {
        vals.iter().flat_map(|v| [v[0], 0.0, 0.0, v[1]]).collect()
    }

    #[test]
    fn ridgeline_at_a_vertex_is_the_mean_and_with_equal_covariances_the_weighted_mean() {
        let cov = vec![1.0, 0.3, 0.3, 0.5, 2.0, -0.4, -0.4, 1.0, 0.7, 0.0, 0.0, 0.7];
        let g = Gmm::new(
            2,
            vec![0.2, 0.5, 0.3],
            vec![0.0, 1.0, 3.0, -1.0, -2.0, 2.0],
            cov,
        )
        .unwrap();
        for c in 0..3 {
            let mut a = vec![0.0; 3];
            a[c] = 1.0;
            let z = g.ridgeline_point(&a);
            for j in 0..2 {
                assert!((z[j] - g.mu[c * 2 + j]).abs() < 1e-12, "{c}: {z:?}");
            }
        }
        let same = [1.3, 0.2, 0.2, 0.8].repeat(3);
        let g = Gmm::new(
            2,
            vec![0.2, 0.5, 0.3],
            vec![0.0, 1.0, 3.0, -1.0, -2.0, 2.0],
            same,
        )
        .unwrap();
        let a = [0.1, 0.6, 0.3];
        let z = g.ridgeline_point(&a);
        for j in 0..2 {
            let want: f64 = (0..3).map(|c| a[c] * g.mu[c * 2 + j]).sum();
            assert!((z[j] - want).abs() < 1e-12, "{z:?}");
        }
    }

    #[test]
    fn every_mode_lies_on_the_ridgeline() {
        // A mode found by the fixed-point iteration from a mean equals z(α) with α_c ∝ π_c N(mode; μ_c, Σ_c).
        let g = Gmm::new(
            2,
            vec![0.45, 0.35, 0.2],
            vec![0.0, 0.0, 2.5, 0.5, 0.5, 2.8],
            diag_cov(&[[1.0, 0.6], [0.8, 1.2], [0.5, 0.5]]),
        )
        .unwrap();
        let d = 2;
        let resp = |z: &[f64]| -> Vec<f64> {
            let ln2pi = (2.0 * std::f64::consts::PI).ln();
            let l: Vec<f64> = (0..3)
                .map(|c| {
                    let p = &g.prec[c * 4..c * 4 + 4];
                    let x = [z[0] - g.mu[c * d], z[1] - g.mu[c * d + 1]];
                    let q = x[0] * (p[0] * x[0] + p[1] * x[1]) + x[1] * (p[2] * x[0] + p[3] * x[1]);
                    g.pi[c].ln() - 0.5 * (q + g.log_det[c] + 2.0 * ln2pi)
                })
                .collect();
            let m = crate::twin::rate::logsumexp(&l);
            l.iter().map(|v| (v - m).exp()).collect()
        };
        for c in 0..3 {
            let mut z = g.mu[c * d..(c + 1) * d].to_vec();
            for _ in 0..5000 {
                z = g.ridgeline_point(&resp(&z));
            }
            let on = g.ridgeline_point(&resp(&z));
            for j in 0..d {
                assert!((on[j] - z[j]).abs() < 1e-8, "{c}: {on:?} vs {z:?}");
            }
            // And it is a mode: the density's gradient (central differences) vanishes there.
            let h = 1e-5;
            for j in 0..d {
                let (mut zp, mut zm) = (z.clone(), z.clone());
                zp[j] += h;
                zm[j] -= h;
                let grad = (g.log_density(&zp) - g.log_density(&zm)) / (2.0 * h);
                assert!(grad.abs() < 1e-6, "{c}: ∂log p/∂z_{j} = {grad} at {z:?}");
            }
        }
    }

    /// An L-shaped chain of components A → B → E (the spec's toy): A at (0, 0), B at (4, 0), E at (4, 4).
    fn l_gmm() -> Gmm {
        let mut mu = Vec::new();
        let mut pi = Vec::new();
        // Dense components along the L, a few sparse ones off it.
        for i in 0..=8 {
            mu.extend([i as f64 * 0.5, 0.0]);
            pi.push(1.0);
        }
        for i in 1..=8 {
            mu.extend([4.0, i as f64 * 0.5]);
            pi.push(1.0);
        }
        for p in [[0.5, 3.5], [1.5, 2.5], [2.5, 1.5]] {
            mu.extend(p);
            pi.push(0.1);
        }
        let s: f64 = pi.iter().sum();
        let pi: Vec<f64> = pi.iter().map(|p| p / s).collect();
        let c = pi.len();
        let cov = [0.15, 0.0, 0.0, 0.15].repeat(c);
        Gmm::new(2, pi, mu, cov).unwrap()
    }

    #[test]
    fn pathway_has_exact_ends_is_seeded_and_beats_the_straight_line() {
        let g = l_gmm();
        let (from, to) = (0, 16); // (0, 0) and (4, 4)
        let cfg = PathwayConfig {
            m: 400,
            ..Default::default()
        };
        let p = g.pathway(from, to, &cfg).unwrap();
        assert_eq!(p.z.len(), cfg.k + 1);
        assert_eq!(p.z[0], g.mu[0..2].to_vec());
        assert_eq!(p.z[cfg.k], g.mu[32..34].to_vec());
        assert!(p.log_p.iter().all(|v| v.is_finite()));
        assert_eq!(g.pathway(from, to, &cfg).unwrap(), p);
        let other = g
            .pathway(from, to, &PathwayConfig { seed: 9, ..cfg })
            .unwrap();
        assert_ne!(other.z, p.z);
        // The path's lowest density is higher than the straight line's (which cuts the L's corner).
        let worst = p.log_p.iter().copied().fold(f64::INFINITY, f64::min);
        let line = (0..=100)
            .map(|t| {
                let t = t as f64 / 100.0;
                g.log_density(&[4.0 * t, 4.0 * t])
            })
            .fold(f64::INFINITY, f64::min);
        assert!(
            worst > line,
            "path min log p {worst} vs straight line {line}"
        );
    }

    #[test]
    fn bad_gmm_and_arguments_are_errors() {
        assert!(Gmm::new(2, vec![1.0], vec![0.0, 0.0], vec![1.0, 0.0, 0.0, -1.0]).is_err());
        assert!(Gmm::new(2, vec![1.0], vec![0.0, 0.0], vec![1.0, 0.5, 0.0, 1.0]).is_err());
        assert!(Gmm::new(2, vec![0.5], vec![0.0, 0.0], vec![1.0, 0.0, 0.0, 1.0]).is_err());
        let g = l_gmm();
        assert!(g.pathway(0, 0, &PathwayConfig::default()).is_err());
        assert!(g.pathway(0, 99, &PathwayConfig::default()).is_err());
        let bad = PathwayConfig {
            omega: 1.0,
            ..Default::default()
        };
        assert!(g.pathway(0, 1, &bad).is_err());
    }
}
