//! cryoTWIN's trainable GMM prior with full covariances (`train-twin --gmm-cov full`): running sufficient
//! statistics with second moments (C, d, d), the mixture they define, the rate `−log Q(z)` by Monte Carlo
//! (the spec's estimator for full covariances: `Q̂ = (T^d / S) Σ_s p(z + ε_s)`, ε_s ~ U[−T/2, T/2]^d fixed for
//! the step), and the backward pass of both to z and γ. The diagonal prior ([`super::prior`]) computes Q
//! exactly; this one's Q̂ is an unbiased estimate of Q, so its rate can dip below 0 where Q is near 1.
//!
//! ## Math
//! Statistics `N_c = Σ γ_ic`, `S1_c = Σ γ_ic z_i`, `S2_c = Σ γ_ic z_i z_iᵀ`; `π_c = N_c / Σ N`,
//! `μ_c = S1_c / N_c`, `Σ_c = S2_c / N_c − μ_c μ_cᵀ + εI`.
//!
//! Rate at x_s = z + ε_s with weights `w_s ∝ p(x_s)` over the S samples and responsibilities `r_sc`, and
//! `v = x_s − μ_c`, `P = Σ_c⁻¹`: `∂/∂z = Σ_s w_s Σ_c r_sc P v`; `∂/∂μ_c = −Σ_s w_s r_sc P v`;
//! `∂/∂Σ_c = −½ Σ_s w_s r_sc (P v vᵀ P − P)`; `∂/∂log π_c = −Σ_s w_s r_sc`.
//!
//! Backward of the statistics from `(g_logπ, g_μ, g_Σ)` (g_Σ symmetric): `g_S2 = g_Σ / N`,
//! `ĝ_μ = g_μ − 2 g_Σ μ`, `g_S1 = ĝ_μ / N`, `g_N = g_logπ / N − Σ g_logπ / Σ N − ĝ_μ·μ / N − ⟨g_Σ, S2⟩ / N²`;
//! then `∂/∂γ_ic = η (g_N_c + g_S1_c·z_i + z_iᵀ g_S2_c z_i)` and `∂/∂z_i = η Σ_c γ_ic (g_S1_c + 2 g_S2_c z_i)`.

use super::gmm::Gmm;
use super::prior::{batch_dims, blend_vec, StatsGrad, N_MIN};
use super::rate::logsumexp;
use crate::Result;

/// Sufficient statistics of a full-covariance GMM: counts (C), first (C, d) and second (C, d, d) moments.
#[derive(Clone, Debug, PartialEq)]
pub struct FullStats {
    pub d: usize,
    pub n: Vec<f64>,
    pub s1: Vec<f64>,
    pub s2: Vec<f64>,
}

/// The rate estimate at one z and its gradients (each of `−log Q̂`).
#[derive(Clone, Debug, PartialEq)]
pub struct FullRateGrad {
    pub rate: f64,
    /// (d)
    pub dz: Vec<f64>,
    /// (C, d)
    pub dmu: Vec<f64>,
    /// (C, d, d), symmetric
    pub dcov: Vec<f64>,
    /// (C)
    pub dlog_pi: Vec<f64>,
}

impl FullStats {
    /// The statistics of a batch: z (m, d), γ (m, C).
    pub fn from_batch(z: &[f64], gamma: &[f64], d: usize) -> Result<Self> {
        let (m, c) = batch_dims(z, gamma, d)?;
        let mut s = FullStats {
            d,
            n: vec![0.0; c],
            s1: vec![0.0; c * d],
            s2: vec![0.0; c * d * d],
        };
        for i in 0..m {
            let zi = &z[i * d..(i + 1) * d];
            for k in 0..c {
                let g = gamma[i * c + k];
                s.n[k] += g;
                for a in 0..d {
                    s.s1[k * d + a] += g * zi[a];
                    for b in 0..d {
                        s.s2[(k * d + a) * d + b] += g * zi[a] * zi[b];
                    }
                }
            }
        }
        Ok(s)
    }

    /// `(1 − η)·self + η·batch`.
    pub fn blend(&self, batch: &FullStats, eta: f64) -> FullStats {
        FullStats {
            d: self.d,
            n: blend_vec(&self.n, &batch.n, eta),
            s1: blend_vec(&self.s1, &batch.s1, eta),
            s2: blend_vec(&self.s2, &batch.s2, eta),
        }
    }

    /// The mixture of these statistics with covariance floor εI.
    pub fn mixture(&self, eps: f64) -> Result<Gmm> {
        let (c, d) = (self.n.len(), self.d);
        let nf: Vec<f64> = self.n.iter().map(|&v| v.max(N_MIN)).collect();
        let total: f64 = nf.iter().sum();
        let pi: Vec<f64> = nf.iter().map(|v| v / total).collect();
        let mut mu = vec![0.0; c * d];
        let mut cov = vec![0.0; c * d * d];
        for k in 0..c {
            for a in 0..d {
                mu[k * d + a] = self.s1[k * d + a] / nf[k];
            }
            for a in 0..d {
                for b in 0..d {
                    let s = 0.5 * (self.s2[(k * d + a) * d + b] + self.s2[(k * d + b) * d + a]);
                    cov[(k * d + a) * d + b] =
                        s / nf[k] - mu[k * d + a] * mu[k * d + b] + if a == b { eps } else { 0.0 };
                }
            }
        }
        Gmm::new(d, pi, mu, cov)
    }

    /// Backward of `ψ = mixture(blend(old, B(z, γ), η))` to z and γ from the gradients with respect to
    /// log π (C), μ (C, d) and Σ (C, d, d); `self` is the blended statistics.
    pub fn backward(
        &self,
        z: &[f64],
        gamma: &[f64],
        eta: f64,
        dlog_pi: &[f64],
        dmu: &[f64],
        dcov: &[f64],
    ) -> StatsGrad {
        let (c, d) = (self.n.len(), self.d);
        let m = z.len() / d;
        let nf: Vec<f64> = self.n.iter().map(|&v| v.max(N_MIN)).collect();
        let total: f64 = nf.iter().sum();
        let sum_gpi: f64 = dlog_pi.iter().sum();
        let mut g_n = vec![0.0; c];
        let mut g_s1 = vec![0.0; c * d];
        let mut g_s2 = vec![0.0; c * d * d];
        for k in 0..c {
            if self.n[k] < N_MIN {
                continue;
            }
            let mu: Vec<f64> = (0..d).map(|a| self.s1[k * d + a] / nf[k]).collect();
            let gs =
                |a: usize, b: usize| 0.5 * (dcov[(k * d + a) * d + b] + dcov[(k * d + b) * d + a]);
            g_n[k] = dlog_pi[k] / nf[k] - sum_gpi / total;
            let mut inner = 0.0;
            for a in 0..d {
                let mut gm = dmu[k * d + a];
                for b in 0..d {
                    gm -= 2.0 * gs(a, b) * mu[b];
                    g_s2[(k * d + a) * d + b] = gs(a, b) / nf[k];
                    inner += gs(a, b) * self.s2[(k * d + a) * d + b];
                }
                g_s1[k * d + a] = gm / nf[k];
                g_n[k] -= gm * mu[a] / nf[k];
            }
            g_n[k] -= inner / (nf[k] * nf[k]);
        }
        let mut dz = vec![0.0; m * d];
        let mut dgamma = vec![0.0; m * c];
        for i in 0..m {
            let zi = &z[i * d..(i + 1) * d];
            for k in 0..c {
                let mut g = g_n[k];
                let gk = &g_s2[k * d * d..(k + 1) * d * d];
                for a in 0..d {
                    let mut sz = 0.0;
                    for b in 0..d {
                        sz += gk[a * d + b] * zi[b];
                    }
                    g += g_s1[k * d + a] * zi[a] + zi[a] * sz;
                    dz[i * d + a] += eta * gamma[i * c + k] * (g_s1[k * d + a] + 2.0 * sz);
                }
                dgamma[i * c + k] = eta * g;
            }
        }
        StatsGrad { dz, dgamma }
    }
}

/// The Monte Carlo rate `−log Q̂(z)` with the box offsets `eps` (S, d) and its gradients.
pub fn mc_rate_grad(g: &Gmm, z: &[f64], t: f64, eps: &[f64]) -> FullRateGrad {
    let (c, d) = (g.n_comp(), g.d);
    let s_n = eps.len() / d;
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    // per sample: component log terms, and P v per component
    let mut logp = vec![0.0; s_n];
    let mut terms = vec![0.0; s_n * c];
    let mut pv = vec![0.0; s_n * c * d];
    for s in 0..s_n {
        let x: Vec<f64> = (0..d).map(|j| z[j] + eps[s * d + j]).collect();
        for k in 0..c {
            let p = &g.prec[k * d * d..(k + 1) * d * d];
            let v: Vec<f64> = (0..d).map(|j| x[j] - g.mu[k * d + j]).collect();
            let mut q = 0.0;
            for a in 0..d {
                let pa: f64 = (0..d).map(|b| p[a * d + b] * v[b]).sum();
                pv[(s * c + k) * d + a] = pa;
                q += v[a] * pa;
            }
            terms[s * c + k] = g.pi[k].ln() - 0.5 * (q + g.log_det[k] + d as f64 * ln2pi);
        }
        logp[s] = logsumexp(&terms[s * c..(s + 1) * c]);
    }
    let lse = logsumexp(&logp);
    let log_q = d as f64 * t.ln() - (s_n as f64).ln() + lse;
    let mut out = FullRateGrad {
        rate: -log_q,
        dz: vec![0.0; d],
        dmu: vec![0.0; c * d],
        dcov: vec![0.0; c * d * d],
        dlog_pi: vec![0.0; c],
    };
    for s in 0..s_n {
        let ws = (logp[s] - lse).exp();
        for k in 0..c {
            let a_sk = ws * (terms[s * c + k] - logp[s]).exp();
            if a_sk == 0.0 {
                continue;
            }
            out.dlog_pi[k] -= a_sk;
            let p = &g.prec[k * d * d..(k + 1) * d * d];
            let pvk = &pv[(s * c + k) * d..(s * c + k + 1) * d];
            for a in 0..d {
                out.dz[a] += a_sk * pvk[a];
                out.dmu[k * d + a] -= a_sk * pvk[a];
                for b in 0..d {
                    out.dcov[(k * d + a) * d + b] -= 0.5 * a_sk * (pvk[a] * pvk[b] - p[a * d + b]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twin::prior::GmmStats;
    use rand::{Rng, SeedableRng};

    /// With diagonal second moments the full mixture is the diagonal one, and with many box samples the
    /// Monte Carlo rate approaches the diagonal prior's exact rate.
    #[test]
    fn monte_carlo_rate_agrees_with_the_exact_diagonal_rate() {
        let (d, t) = (2, 1.5);
        let z = [0.2, -0.4, 1.0, 0.5, -1.2, 0.8, 0.3, 0.1];
        let gamma = [0.7, 0.3, 0.2, 0.8, 0.5, 0.5, 0.9, 0.1];
        let diag = GmmStats::from_batch(&z, &gamma, d).unwrap();
        let full = FullStats::from_batch(&z, &gamma, d).unwrap();
        // drop the cross moments: then both describe the same diagonal mixture
        let mut fd = full.clone();
        for k in 0..2 {
            for (a, b) in [(0, 1), (1, 0)] {
                let mu_a = full.s1[k * d + a] / full.n[k];
                let mu_b = full.s1[k * d + b] / full.n[k];
                fd.s2[(k * d + a) * d + b] = full.n[k] * mu_a * mu_b;
            }
        }
        let g = fd.mixture(1e-3).unwrap();
        let dg = diag.mixture(1e-3).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = 200_000;
        let eps: Vec<f64> = (0..s * d)
            .map(|_| rng.random_range(-t / 2.0..t / 2.0))
            .collect();
        let q = [0.1, 0.3];
        let mc = mc_rate_grad(&g, &q, t, &eps).rate;
        let exact = dg.rate_grad(&q, t).rate;
        assert!((mc - exact).abs() < 5e-3, "MC {mc} vs exact {exact}");
    }

    /// The rate's gradient through the blended full-covariance prior (z directly and through ψ, and γ)
    /// against central differences of the same Monte Carlo estimate (fixed box offsets).
    #[test]
    fn full_rate_gradient_through_the_prior_matches_finite_differences() {
        let (m, c, d) = (5, 3, 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let z: Vec<f64> = (0..m * d).map(|_| rng.random_range(-2.0..2.0)).collect();
        let gamma: Vec<f64> = (0..m)
            .flat_map(|_| {
                let r: Vec<f64> = (0..c).map(|_| rng.random_range(0.1..1.0)).collect();
                let s: f64 = r.iter().sum();
                r.into_iter().map(move |v| v / s)
            })
            .collect();
        let old = FullStats::from_batch(
            &[-1.0, 0.5, 0.0, 0.2, 1.5, -0.5, 0.3, 1.2],
            &[0.5, 0.3, 0.2, 0.1, 0.6, 0.3, 0.3, 0.3, 0.4, 0.2, 0.2, 0.6],
            d,
        )
        .unwrap();
        let (eta, eps_floor, t) = (0.4, 1e-2, 1.0);
        let offs: Vec<f64> = (0..8 * d).map(|_| rng.random_range(-0.5..0.5)).collect();
        let loss = |z: &[f64], gamma: &[f64]| -> f64 {
            let r = old.blend(&FullStats::from_batch(z, gamma, d).unwrap(), eta);
            let g = r.mixture(eps_floor).unwrap();
            z.chunks_exact(d)
                .map(|zi| mc_rate_grad(&g, zi, t, &offs).rate)
                .sum()
        };
        let r = old.blend(&FullStats::from_batch(&z, &gamma, d).unwrap(), eta);
        let g = r.mixture(eps_floor).unwrap();
        let (mut dz, mut dpi, mut dmu, mut dcov) = (
            vec![0.0; m * d],
            vec![0.0; c],
            vec![0.0; c * d],
            vec![0.0; c * d * d],
        );
        for (i, zi) in z.chunks_exact(d).enumerate() {
            let rg = mc_rate_grad(&g, zi, t, &offs);
            dz[i * d..(i + 1) * d].copy_from_slice(&rg.dz);
            dpi.iter_mut().zip(&rg.dlog_pi).for_each(|(a, b)| *a += b);
            dmu.iter_mut().zip(&rg.dmu).for_each(|(a, b)| *a += b);
            dcov.iter_mut().zip(&rg.dcov).for_each(|(a, b)| *a += b);
        }
        let back = r.backward(&z, &gamma, eta, &dpi, &dmu, &dcov);
        dz.iter_mut().zip(&back.dz).for_each(|(a, b)| *a += b);
        let h = 1e-6;
        for k in 0..m * d {
            let (mut p, mut q) = (z.clone(), z.clone());
            p[k] += h;
            q[k] -= h;
            let fd = (loss(&p, &gamma) - loss(&q, &gamma)) / (2.0 * h);
            assert!(
                (dz[k] - fd).abs() <= 1e-5 * (1.0 + fd.abs()),
                "z[{k}]: {} vs {fd}",
                dz[k]
            );
        }
        for k in 0..m * c {
            let (mut p, mut q) = (gamma.clone(), gamma.clone());
            p[k] += h;
            q[k] -= h;
            let fd = (loss(&z, &p) - loss(&z, &q)) / (2.0 * h);
            assert!(
                (back.dgamma[k] - fd).abs() <= 1e-5 * (1.0 + fd.abs()),
                "γ[{k}]: {} vs {fd}",
                back.dgamma[k]
            );
        }
    }
}
