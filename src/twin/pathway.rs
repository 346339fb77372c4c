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

use super::gmm::Gmm;
use super::sq_dist;
use crate::{Error, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};

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

impl Gmm {
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
                let dist = sq_dist(&cand, prev).sqrt();
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
                    sq_dist(&z[k], &z[k - 1]).sqrt()
                }
            })
            .collect();
        Ok(Pathway { z, log_p, step })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
