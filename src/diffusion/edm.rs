//! EDM (Karras et al. 2022, Table 1 column "ours"): preconditioning, loss weighting, training σ
//! distribution and the sampling schedule, plus the denoiser interface and exact denoisers of
//! Gaussian mixtures used to test samplers and ODE solvers.

use crate::{Error, Result};

/// EDM hyper-parameters (defaults: the paper's Appendix A.1 and EDM's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdmConfig {
    /// σ_data: standard deviation of the (centred) training latents.
    pub sigma_data: f64,
    /// log-normal training σ: ln σ ~ N(p_mean, p_std²).
    pub p_mean: f64,
    pub p_std: f64,
    /// sampling / ODE range.
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// Karras schedule exponent ρ.
    pub rho: f64,
}

impl EdmConfig {
    /// EDM defaults for a given σ_data: P_mean −1.2, P_std 1.2, σ ∈ [0.002, 80], ρ = 7.
    pub fn new(sigma_data: f64) -> Self {
        Self {
            sigma_data,
            p_mean: -1.2,
            p_std: 1.2,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
        }
    }
}

/// EDM preconditioning coefficients at one σ: `D(x; σ) = c_skip·x + c_out·F(c_in·x; c_noise)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Precond {
    pub c_skip: f64,
    pub c_out: f64,
    pub c_in: f64,
    pub c_noise: f64,
}

impl Precond {
    /// c_skip = σd²/(σ²+σd²), c_out = σ·σd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ln(σ)/4.
    pub fn new(sigma: f64, sigma_data: f64) -> Self {
        let s2 = sigma * sigma + sigma_data * sigma_data;
        Self {
            c_skip: sigma_data * sigma_data / s2,
            c_out: sigma * sigma_data / s2.sqrt(),
            c_in: 1.0 / s2.sqrt(),
            c_noise: sigma.ln() / 4.0,
        }
    }
}

/// EDM loss weight λ(σ) = (σ² + σd²)/(σ·σd)² (= 1/c_out², so λ·c_out² = 1: the effective
/// training target of `F` has unit weight).
pub fn loss_weight(sigma: f64, sigma_data: f64) -> f64 {
    (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data).powi(2)
}

/// Karras et al. schedule (paper eq. 6): σ_i = (σmax^{1/ρ} + i/(M−1)(σmin^{1/ρ} − σmax^{1/ρ}))^ρ,
/// i = 0..M−1 (decreasing from σ_max to σ_min). `M = 1` gives `[σ_max]`.
pub fn karras_sigmas(m: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let (a, b) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
    (0..m)
        .map(|i| {
            let f = if m > 1 {
                i as f64 / (m - 1) as f64
            } else {
                0.0
            };
            (a + f * (b - a)).powf(rho)
        })
        .collect()
}

/// A denoiser `D(x; σ)`: the posterior mean of clean data given `x = y + σ·n`. The score is
/// `∇ log p(x; σ) = (D(x; σ) − x)/σ²`.
pub trait Denoiser {
    /// Latent dimension d.
    fn dim(&self) -> usize;
    /// `x (n, d)`, one σ per row `(n)` → `D(x; σ) (n, d)`.
    fn denoise(&self, x: &[f64], sigma: &[f64]) -> Result<Vec<f64>>;
}

/// Check `x (n, d)` against `sigma (n)`; returns n.
pub(crate) fn check_batch(what: &str, x: &[f64], sigma: &[f64], d: usize) -> Result<usize> {
    if d == 0 || x.len() != sigma.len() * d {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("x of {} rows × {d}", sigma.len()),
            got: format!("{} elements", x.len()),
        });
    }
    Ok(sigma.len())
}

/// `out (d) += Σ_k r_k m_k`: the denoised point from [`GmmDenoiser::posterior_parts`].
pub fn posterior_mean(r: &[f64], m: &[f64], out: &mut [f64]) {
    for (rc, mc) in r.iter().zip(m.chunks_exact(out.len())) {
        for (o, mv) in out.iter_mut().zip(mc) {
            *o += rc * mv;
        }
    }
}

/// The exact denoiser of an isotropic Gaussian mixture `Σ_k w_k N(μ_k, s_k² I)`: with
/// r_k(x) ∝ w_k N(x; μ_k, (s_k²+σ²) I), `D(x; σ) = Σ_k r_k (μ_k + s_k²/(s_k²+σ²)(x − μ_k))`.
/// One component with μ = 0 gives `D = x·σd²/(σ²+σd²)`.
#[derive(Clone, Debug)]
pub struct GmmDenoiser {
    /// component means `(k, d)`
    pub means: Vec<f64>,
    /// component standard deviations `(k)`
    pub stds: Vec<f64>,
    /// mixture weights `(k)`, summing to 1
    pub weights: Vec<f64>,
    pub d: usize,
}

impl GmmDenoiser {
    /// A single Gaussian `N(0, sigma_data² I)` in `d` dimensions.
    pub fn gaussian(d: usize, sigma_data: f64) -> Self {
        Self {
            means: vec![0.0; d],
            stds: vec![sigma_data],
            weights: vec![1.0],
            d,
        }
    }

    /// The posterior over components of one point `x (d)` at noise σ: responsibilities
    /// r_k ∝ w_k N(x; μ_k, (s_k²+σ²) I) `(k)` and each component's denoised mean
    /// m_k = μ_k + s_k²/(s_k²+σ²)(x − μ_k) `(k, d)`; `D(x; σ) = Σ_k r_k m_k`.
    pub fn posterior_parts(&self, x: &[f64], sigma: f64) -> (Vec<f64>, Vec<f64>) {
        let d = self.d;
        let s2 = sigma * sigma;
        let logr: Vec<f64> = (0..self.weights.len())
            .map(|c| {
                let v = self.stds[c].powi(2) + s2;
                let mu = &self.means[c * d..(c + 1) * d];
                let r2: f64 = x.iter().zip(mu).map(|(a, b)| (a - b).powi(2)).sum();
                self.weights[c].ln() - 0.5 * d as f64 * v.ln() - 0.5 * r2 / v
            })
            .collect();
        let mx = logr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logr.iter().map(|l| (l - mx).exp()).sum();
        let r = logr.iter().map(|l| (l - mx).exp() / z).collect();
        let mut m = Vec::with_capacity(self.weights.len() * d);
        for (c, mu) in self.means.chunks_exact(d).enumerate() {
            let v = self.stds[c].powi(2);
            let g = v / (v + s2);
            m.extend(x.iter().zip(mu).map(|(xj, muj)| muj + g * (xj - muj)));
        }
        (r, m)
    }

    /// Draw `n` samples `(n, d)` from the mixture.
    pub fn sample(&self, n: usize, rng: &mut impl rand::Rng) -> Vec<f64> {
        use rand_distr::{Distribution, StandardNormal};
        let mut out = Vec::with_capacity(n * self.d);
        for _ in 0..n {
            let u: f64 = rng.random();
            let mut k = 0;
            let mut acc = self.weights[0];
            while u > acc && k + 1 < self.weights.len() {
                k += 1;
                acc += self.weights[k];
            }
            for j in 0..self.d {
                let e: f64 = StandardNormal.sample(rng);
                out.push(self.means[k * self.d + j] + self.stds[k] * e);
            }
        }
        out
    }
}

impl Denoiser for GmmDenoiser {
    fn dim(&self) -> usize {
        self.d
    }

    fn denoise(&self, x: &[f64], sigma: &[f64]) -> Result<Vec<f64>> {
        let d = self.d;
        let n = check_batch("GmmDenoiser::denoise", x, sigma, d)?;
        let mut out = vec![0.0; n * d];
        for (i, o) in out.chunks_exact_mut(d).enumerate() {
            let (r, m) = self.posterior_parts(&x[i * d..(i + 1) * d], sigma[i]);
            posterior_mean(&r, &m, o);
        }
        Ok(out)
    }
}
