//! Stochastic and deterministic samplers over a [`Denoiser`], on host `f64` batches `(n, d)`.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::edm::{karras_sigmas, Denoiser, EdmConfig};
use crate::{Error, Result};

fn normals(rng: &mut impl Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

fn check_steps(m: usize) -> Result<()> {
    if m < 2 {
        return Err(Error::invalid(format!(
            "need at least 2 sampling steps, got {m}"
        )));
    }
    Ok(())
}

/// Paper eq. 5 with σ(t) = t, β(t) = σ̇/σ = 1/t, integrated backwards by Euler–Maruyama over the
/// Karras schedule (eq. 6, `m` points σ_max → σ_min):
/// dx = −t·∇log p dt − t·∇log p dt + √(2t) dω, ∇log p = (D(x;t) − x)/t², so with h = t_{i+1} − t_i < 0
/// the step is x ← x − 2h·(D(x;t_i) − x)/t_i + √(2 t_i |h|)·ε. Starts from x ~ N(0, σ_max² I);
/// returns the state at σ_min `(n, d)`. `m − 1` denoiser evaluations.
pub fn euler_maruyama(
    den: &dyn Denoiser,
    edm: &EdmConfig,
    n: usize,
    m: usize,
    rng: &mut impl Rng,
    mut on_step: impl FnMut(usize),
) -> Result<Vec<f64>> {
    check_steps(m)?;
    let d = den.dim();
    let ts = karras_sigmas(m, edm.sigma_min, edm.sigma_max, edm.rho);
    let mut x: Vec<f64> = normals(rng, n * d).iter().map(|e| e * ts[0]).collect();
    for i in 0..m - 1 {
        let (t, h) = (ts[i], ts[i + 1] - ts[i]);
        let dn = den.denoise(&x, &vec![t; n])?;
        let g = (2.0 * t * h.abs()).sqrt();
        for (k, xv) in x.iter_mut().enumerate() {
            let e: f64 = StandardNormal.sample(rng);
            *xv += -2.0 * h * (dn[k] - *xv) / t + g * e;
        }
        on_step(i);
    }
    Ok(x)
}

/// EDM's stochastic sampler parameters (Karras et al. Algorithm 2); `s_churn = 0` is the
/// deterministic Heun sampler (Algorithm 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Churn {
    pub s_churn: f64,
    pub s_tmin: f64,
    pub s_tmax: f64,
    pub s_noise: f64,
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            s_churn: 0.0,
            s_tmin: 0.0,
            s_tmax: f64::INFINITY,
            s_noise: 1.0,
        }
    }
}

/// EDM Heun sampler over t_0..t_{N−1} = Karras schedule (`steps` points) and t_N = 0:
/// γ_i = min(S_churn/N, √2−1) when t_i ∈ [S_tmin, S_tmax], t̂ = t_i(1+γ_i),
/// x̂ = x + √(t̂² − t_i²)·S_noise·ε, d = (x̂ − D(x̂;t̂))/t̂, x' = x̂ + (t_{i+1} − t̂)d, and the
/// 2nd-order correction with d' at t_{i+1} unless t_{i+1} = 0. `2N − 1` denoiser evaluations.
pub fn heun(
    den: &dyn Denoiser,
    edm: &EdmConfig,
    n: usize,
    steps: usize,
    churn: Churn,
    rng: &mut impl Rng,
    mut on_step: impl FnMut(usize),
) -> Result<Vec<f64>> {
    check_steps(steps)?;
    let d = den.dim();
    let mut ts = karras_sigmas(steps, edm.sigma_min, edm.sigma_max, edm.rho);
    ts.push(0.0);
    let mut x: Vec<f64> = normals(rng, n * d).iter().map(|e| e * ts[0]).collect();
    let gmax = (churn.s_churn / steps as f64).min(2f64.sqrt() - 1.0);
    for i in 0..steps {
        let (t, tn) = (ts[i], ts[i + 1]);
        let gamma = if (churn.s_tmin..=churn.s_tmax).contains(&t) {
            gmax
        } else {
            0.0
        };
        let th = t + gamma * t;
        if gamma > 0.0 {
            let a = (th * th - t * t).sqrt() * churn.s_noise;
            for xv in x.iter_mut() {
                let e: f64 = StandardNormal.sample(rng);
                *xv += a * e;
            }
        }
        let dn = den.denoise(&x, &vec![th; n])?;
        let dir: Vec<f64> = x.iter().zip(&dn).map(|(a, b)| (a - b) / th).collect();
        let xe: Vec<f64> = x.iter().zip(&dir).map(|(a, g)| a + (tn - th) * g).collect();
        if tn > 0.0 {
            let dn2 = den.denoise(&xe, &vec![tn; n])?;
            for k in 0..x.len() {
                let d2 = (xe[k] - dn2[k]) / tn;
                x[k] += (tn - th) * 0.5 * (dir[k] + d2);
            }
        } else {
            x = xe;
        }
        on_step(i);
    }
    Ok(x)
}
