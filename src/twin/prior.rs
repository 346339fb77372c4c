//! cryoTWIN's trainable GMM prior (diagonal covariances): running sufficient statistics updated from each
//! batch's latents z and responsibilities γ = softmax(w) (DAGMM-style, the spec's `--gmm-update ema`), the
//! mixture they define, and the backward pass of that map so that z and w get the rate's gradient through ψ.
//!
//! ## Math
//! Batch statistics (z: (m, d), γ: (m, C)): `N_c = Σ_i γ_ic`, `S1_cj = Σ_i γ_ic z_ij`, `S2_cj = Σ_i γ_ic z_ij²`.
//! Running statistics `R = (1 − η)·R_old + η·B(z, γ)`, the old part a constant (detached). The mixture:
//! `π_c = N_c / Σ_k N_k`, `μ_cj = S1_cj / N_c`, `σ²_cj = S2_cj / N_c − μ_cj² + ε` (N_c floored at `N_MIN`).
//!
//! Backward, from `(∂L/∂log π, ∂L/∂μ, ∂L/∂log σ)`: `g_v = g_logσ / (2σ²)`; `g_S2 = g_v / N`;
//! `ĝ_μ = g_μ − 2μ g_v`; `g_S1 = ĝ_μ / N`; `g_N = g_logπ/N − Σ_k g_logπ_k / Σ_k N_k − ĝ_μ μ / N − g_v S2 / N²`;
//! then `∂L/∂γ_ic = η (g_N_c + Σ_j g_S1_cj z_ij + g_S2_cj z_ij²)` and
//! `∂L/∂z_ij = η Σ_c γ_ic (g_S1_cj + 2 g_S2_cj z_ij)`.

use super::rate::DiagGmm;
use crate::{Error, Result};

/// The floor on a component's (running) count `N_c`.
pub const N_MIN: f64 = 1e-6;

/// Sufficient statistics of a diagonal GMM: counts (C), first and second moments (C, d).
#[derive(Clone, Debug, PartialEq)]
pub struct GmmStats {
    /// Latent dimension d.
    pub d: usize,
    /// `N_c` (C).
    pub n: Vec<f64>,
    /// `S1_cj = Σ γ z` (C, d).
    pub s1: Vec<f64>,
    /// `S2_cj = Σ γ z²` (C, d).
    pub s2: Vec<f64>,
}

/// Gradients of a loss with respect to a batch's latents and responsibilities.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsGrad {
    /// ∂L/∂z (m, d).
    pub dz: Vec<f64>,
    /// ∂L/∂γ (m, C).
    pub dgamma: Vec<f64>,
}

/// The batch size m and component count C of latents z (m, d) and responsibilities γ (m, C), checked.
pub(crate) fn batch_dims(z: &[f64], gamma: &[f64], d: usize) -> Result<(usize, usize)> {
    if d == 0 || z.is_empty() || !z.len().is_multiple_of(d) {
        return Err(Error::Shape {
            what: "GMM batch latents".into(),
            expected: format!("(m, {d}) values, m > 0"),
            got: format!("{}", z.len()),
        });
    }
    let m = z.len() / d;
    if gamma.is_empty() || !gamma.len().is_multiple_of(m) {
        return Err(Error::Shape {
            what: "GMM batch responsibilities".into(),
            expected: format!("(m = {m}, C) values"),
            got: format!("{}", gamma.len()),
        });
    }
    Ok((m, gamma.len() / m))
}

/// `(1 − η)·a + η·b`, elementwise: the running statistics' update.
pub(crate) fn blend_vec(a: &[f64], b: &[f64], eta: f64) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (1.0 - eta) * x + eta * y)
        .collect()
}

impl GmmStats {
    /// The statistics of a batch: z (m, d), γ (m, C) with rows on the simplex.
    pub fn from_batch(z: &[f64], gamma: &[f64], d: usize) -> Result<Self> {
        let (m, c) = batch_dims(z, gamma, d)?;
        let mut s = GmmStats {
            d,
            n: vec![0.0; c],
            s1: vec![0.0; c * d],
            s2: vec![0.0; c * d],
        };
        for i in 0..m {
            let zi = &z[i * d..(i + 1) * d];
            for k in 0..c {
                let g = gamma[i * c + k];
                s.n[k] += g;
                for (j, &v) in zi.iter().enumerate() {
                    s.s1[k * d + j] += g * v;
                    s.s2[k * d + j] += g * v * v;
                }
            }
        }
        Ok(s)
    }

    /// `(1 − η)·self + η·batch`.
    pub fn blend(&self, batch: &GmmStats, eta: f64) -> GmmStats {
        GmmStats {
            d: self.d,
            n: blend_vec(&self.n, &batch.n, eta),
            s1: blend_vec(&self.s1, &batch.s1, eta),
            s2: blend_vec(&self.s2, &batch.s2, eta),
        }
    }

    /// The mixture of these statistics with variance floor `eps` (module doc).
    pub fn mixture(&self, eps: f64) -> Result<DiagGmm> {
        let (c, d) = (self.n.len(), self.d);
        let nf: Vec<f64> = self.n.iter().map(|&v| v.max(N_MIN)).collect();
        let total: f64 = nf.iter().sum();
        let pi: Vec<f64> = nf.iter().map(|v| v / total).collect();
        let mut mu = vec![0.0; c * d];
        let mut sigma = vec![0.0; c * d];
        for k in 0..c {
            for j in 0..d {
                let m = self.s1[k * d + j] / nf[k];
                mu[k * d + j] = m;
                sigma[k * d + j] = ((self.s2[k * d + j] / nf[k] - m * m).max(0.0) + eps).sqrt();
            }
        }
        DiagGmm::new(d, &pi, &mu, &sigma)
    }

    /// Backward of `ψ = mixture(blend(old, B(z, γ), η))` with respect to z and γ, given the gradients
    /// of a loss with respect to ψ's log π, μ and log σ (each (C) or (C, d)); `self` is the blended
    /// statistics ψ was computed from.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        z: &[f64],
        gamma: &[f64],
        eta: f64,
        eps: f64,
        dlog_pi: &[f64],
        dmu: &[f64],
        dlog_sigma: &[f64],
    ) -> StatsGrad {
        let (c, d) = (self.n.len(), self.d);
        let m = z.len() / d;
        let nf: Vec<f64> = self.n.iter().map(|&v| v.max(N_MIN)).collect();
        let floored: Vec<bool> = self.n.iter().map(|&v| v < N_MIN).collect();
        let total: f64 = nf.iter().sum();
        let sum_gpi: f64 = dlog_pi.iter().sum();
        let mut g_n = vec![0.0; c];
        let mut g_s1 = vec![0.0; c * d];
        let mut g_s2 = vec![0.0; c * d];
        for k in 0..c {
            if floored[k] {
                continue;
            }
            g_n[k] = dlog_pi[k] / nf[k] - sum_gpi / total;
            for j in 0..d {
                let kj = k * d + j;
                let mu = self.s1[kj] / nf[k];
                let var = self.s2[kj] / nf[k] - mu * mu;
                // The clamp at 0 in `mixture` has zero gradient where it binds.
                let g_v = if var > 0.0 {
                    dlog_sigma[kj] * 0.5 / (var + eps)
                } else {
                    0.0
                };
                g_s2[kj] = g_v / nf[k];
                let g_mu = dmu[kj] - 2.0 * mu * g_v;
                g_s1[kj] = g_mu / nf[k];
                g_n[k] += -g_mu * mu / nf[k] - g_v * self.s2[kj] / (nf[k] * nf[k]);
            }
        }
        let mut dz = vec![0.0; m * d];
        let mut dgamma = vec![0.0; m * c];
        for i in 0..m {
            let zi = &z[i * d..(i + 1) * d];
            for k in 0..c {
                let mut g = g_n[k];
                for (j, &v) in zi.iter().enumerate() {
                    g += g_s1[k * d + j] * v + g_s2[k * d + j] * v * v;
                    dz[i * d + j] +=
                        eta * gamma[i * c + k] * (g_s1[k * d + j] + 2.0 * g_s2[k * d + j] * v);
                }
                dgamma[i * c + k] = eta * g;
            }
        }
        StatsGrad { dz, dgamma }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn one_hot_responsibilities_give_each_cluster_its_moments() {
        let z = [0.0, 1.0, 2.0, 3.0, 10.0, -1.0, 12.0, -3.0, 14.0, -2.0];
        let gamma = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let s = GmmStats::from_batch(&z, &gamma, 2).unwrap();
        let g = s.mixture(1e-3).unwrap();
        let pi: Vec<f64> = g.log_pi.iter().map(|l| l.exp()).collect();
        assert!(
            (pi[0] - 0.4).abs() < 1e-12 && (pi[1] - 0.6).abs() < 1e-12,
            "{pi:?}"
        );
        assert_eq!(g.mu, vec![1.0, 2.0, 12.0, -2.0]);
        // Population variances (denominator N_c) plus ε.
        let var: Vec<f64> = g.log_sigma.iter().map(|l| (2.0 * l).exp()).collect();
        let want = [1.0 + 1e-3, 1.0 + 1e-3, 8.0 / 3.0 + 1e-3, 2.0 / 3.0 + 1e-3];
        for (v, w) in var.iter().zip(want) {
            assert!((v - w).abs() < 1e-12, "{var:?}");
        }
    }

    #[test]
    fn rate_gradient_through_the_prior_matches_finite_differences() {
        let (m, c, d) = (6, 3, 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let z: Vec<f64> = (0..m * d).map(|_| rng.random_range(-2.0..2.0)).collect();
        let w: Vec<f64> = (0..m * c).map(|_| rng.random_range(-1.0..1.0)).collect();
        let softmax = |w: &[f64]| -> Vec<f64> {
            w.chunks_exact(c)
                .flat_map(|r| {
                    let mx = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = r.iter().map(|v| (v - mx).exp()).collect();
                    let s: f64 = e.iter().sum();
                    e.into_iter().map(move |v| v / s)
                })
                .collect()
        };
        // The old running statistics: a spread-out constant.
        let old = GmmStats::from_batch(
            &[-1.0, 0.5, 0.0, 0.0, 1.5, -0.5, 0.3, 1.2],
            &softmax(&[
                0.2, -0.1, 0.4, 0.0, 0.3, -0.2, 0.1, 0.5, -0.3, 0.2, 0.0, 0.1,
            ]),
            d,
        )
        .unwrap();
        let (eta, eps, t) = (0.3, 1e-3, 3.0);
        // L(z, w) = Σ_i rate(z_i; ψ(blend(old, B(z, softmax w)))).
        let loss = |z: &[f64], w: &[f64]| -> f64 {
            let r = old.blend(&GmmStats::from_batch(z, &softmax(w), d).unwrap(), eta);
            let g = r.mixture(eps).unwrap();
            z.chunks_exact(d).map(|zi| g.rate_grad(zi, t).rate).sum()
        };
        // Analytic: the direct term through z, plus the term through ψ.
        let gamma = softmax(&w);
        let r = old.blend(&GmmStats::from_batch(&z, &gamma, d).unwrap(), eta);
        let g = r.mixture(eps).unwrap();
        let (mut dz, mut dpi, mut dmu, mut dls) = (
            vec![0.0; m * d],
            vec![0.0; c],
            vec![0.0; c * d],
            vec![0.0; c * d],
        );
        for (i, zi) in z.chunks_exact(d).enumerate() {
            let rg = g.rate_grad(zi, t);
            dz[i * d..(i + 1) * d].copy_from_slice(&rg.dz);
            dpi.iter_mut().zip(&rg.dlog_pi).for_each(|(a, b)| *a += b);
            dmu.iter_mut().zip(&rg.dmu).for_each(|(a, b)| *a += b);
            dls.iter_mut()
                .zip(&rg.dlog_sigma)
                .for_each(|(a, b)| *a += b);
        }
        let back = r.backward(&z, &gamma, eta, eps, &dpi, &dmu, &dls);
        dz.iter_mut().zip(&back.dz).for_each(|(a, b)| *a += b);
        // γ = softmax(w) row-wise: ∂L/∂w_ik = γ_ik (∂L/∂γ_ik − Σ_l γ_il ∂L/∂γ_il).
        let mut dw = vec![0.0; m * c];
        for i in 0..m {
            let dot: f64 = (0..c)
                .map(|l| gamma[i * c + l] * back.dgamma[i * c + l])
                .sum();
            for k in 0..c {
                dw[i * c + k] = gamma[i * c + k] * (back.dgamma[i * c + k] - dot);
            }
        }
        let h = 1e-6;
        for k in 0..m * d {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[k] += h;
            zm[k] -= h;
            let fd = (loss(&zp, &w) - loss(&zm, &w)) / (2.0 * h);
            assert!(
                (dz[k] - fd).abs() <= 1e-5 * (1.0 + fd.abs()),
                "z[{k}]: {} vs {fd}",
                dz[k]
            );
        }
        for k in 0..m * c {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[k] += h;
            wm[k] -= h;
            let fd = (loss(&z, &wp) - loss(&z, &wm)) / (2.0 * h);
            assert!(
                (dw[k] - fd).abs() <= 1e-5 * (1.0 + fd.abs()),
                "w[{k}]: {} vs {fd}",
                dw[k]
            );
        }
        // w really gets a gradient (the point of the differentiable update).
        assert!(dw.iter().any(|v| v.abs() > 1e-4), "{dw:?}");
    }
}
