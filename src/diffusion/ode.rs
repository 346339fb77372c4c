//! Adaptive Dormand–Prince RK4(5) and the probability-flow ODE `dx/dσ = (x − D(x;σ))/σ`
//! (paper eq. 2 with σ(t) = t): encode (σ_min → σ_max), decode (σ_max → σ_min), interpolation and
//! Langevin dynamics in the prior's Gaussian space (paper eq. 7).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::edm::{Denoiser, EdmConfig};
use crate::{Error, Result};

/// Tolerances and limits of [`dopri5`] (scipy `solve_ivp` semantics for rtol/atol).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OdeOptions {
    pub rtol: f64,
    pub atol: f64,
    /// give up after this many accepted + rejected steps
    pub max_steps: usize,
}

impl Default for OdeOptions {
    fn default() -> Self {
        Self {
            rtol: 1e-5,
            atol: 1e-5,
            max_steps: 100_000,
        }
    }
}

/// Counts of a [`dopri5`] solve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OdeStats {
    pub accepted: usize,
    pub rejected: usize,
    /// right-hand-side evaluations
    pub nfev: usize,
}

// Dormand & Prince (1980) RK5(4)7M tableau.
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// 5th-order weights (= last row of A, FSAL).
const B5: [f64; 7] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
    0.0,
];
/// 4th-order weights.
const B4: [f64; 7] = [
    5179.0 / 57600.0,
    0.0,
    7571.0 / 16695.0,
    393.0 / 640.0,
    -92097.0 / 339200.0,
    187.0 / 2100.0,
    1.0 / 40.0,
];

/// Integrate `y' = f(t, y)` from `t0` to `t1` (either direction) with the adaptive Dormand–Prince
/// RK4(5) method (local extrapolation, FSAL). Error norm: RMS of `e_i/(atol + rtol·max(|y_i|,
/// |y_new_i|))`, step factor `0.9·err^{−1/5}` clamped to [0.2, 10]; the initial step follows
/// Hairer–Nørsett–Wanner (scipy's `select_initial_step`).
pub fn dopri5(
    mut f: impl FnMut(f64, &[f64]) -> Result<Vec<f64>>,
    t0: f64,
    t1: f64,
    y0: &[f64],
    opt: &OdeOptions,
) -> Result<(Vec<f64>, OdeStats)> {
    let n = y0.len();
    let mut st = OdeStats::default();
    if n == 0 || t0 == t1 {
        return Ok((y0.to_vec(), st));
    }
    let dir = (t1 - t0).signum();
    let scale = |y: &[f64], z: &[f64], i: usize| opt.atol + opt.rtol * y[i].abs().max(z[i].abs());
    let rms = |v: &[f64], y: &[f64], z: &[f64]| {
        (v.iter()
            .enumerate()
            .map(|(i, e)| (e / scale(y, z, i)).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt()
    };
    let mut y = y0.to_vec();
    let mut t = t0;
    let mut k0 = f(t, &y)?;
    st.nfev += 1;
    // initial step (Hairer, Nørsett & Wanner II.4)
    let mut h = {
        let d0 = rms(&y, &y, &y);
        let d1 = rms(&k0, &y, &y);
        let h0 = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        };
        let h0 = h0.min((t1 - t0).abs());
        let y1: Vec<f64> = y.iter().zip(&k0).map(|(a, k)| a + dir * h0 * k).collect();
        let k1 = f(t + dir * h0, &y1)?;
        st.nfev += 1;
        let diff: Vec<f64> = k1.iter().zip(&k0).map(|(a, b)| a - b).collect();
        let d2 = rms(&diff, &y, &y) / h0;
        let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d1.max(d2)).powf(1.0 / 5.0)
        };
        (100.0 * h0).min(h1)
    };
    let mut k = vec![vec![0.0; n]; 7];
    let mut ytmp = vec![0.0; n];
    while dir * (t1 - t) > 0.0 {
        if st.accepted + st.rejected >= opt.max_steps {
            return Err(Error::invalid(format!(
                "dopri5: no convergence after {} steps (t = {t}, target {t1})",
                opt.max_steps
            )));
        }
        let mut last = false;
        if h >= (t1 - t).abs() {
            h = (t1 - t).abs();
            last = true;
        }
        let hs = dir * h;
        k[0].copy_from_slice(&k0);
        for s in 1..7 {
            for i in 0..n {
                let mut acc = y[i];
                for (j, kj) in k.iter().enumerate().take(s) {
                    acc += hs * A[s][j] * kj[i];
                }
                ytmp[i] = acc;
            }
            k[s] = f(t + C[s] * hs, &ytmp)?;
            st.nfev += 1;
        }
        // ytmp is now y + h·Σ A[6] k = the 5th-order solution (FSAL: k[6] = f(t+h, y5)).
        let err: Vec<f64> = (0..n)
            .map(|i| hs * (0..7).map(|s| (B5[s] - B4[s]) * k[s][i]).sum::<f64>())
            .collect();
        let en = rms(&err, &y, &ytmp);
        if en <= 1.0 {
            t = if last { t1 } else { t + hs };
            y.copy_from_slice(&ytmp);
            k0 = k[6].clone();
            st.accepted += 1;
            let fac = if en == 0.0 {
                10.0
            } else {
                (0.9 * en.powf(-0.2)).min(10.0)
            };
            h *= fac;
        } else {
            st.rejected += 1;
            h *= (0.9 * en.powf(-0.2)).max(0.2);
        }
        if !h.is_finite() || h == 0.0 {
            return Err(Error::invalid(format!(
                "dopri5: step size underflow at t = {t}"
            )));
        }
    }
    Ok((y, st))
}

/// The probability-flow ODE right-hand side `dx/dσ = (x − D(x; σ))/σ` for a batch `(n, d)`.
fn pf_rhs<'a>(den: &'a dyn Denoiser) -> impl FnMut(f64, &[f64]) -> Result<Vec<f64>> + 'a {
    move |s: f64, x: &[f64]| {
        let n = x.len() / den.dim();
        let dn = den.denoise(x, &vec![s; n])?;
        Ok(x.iter().zip(&dn).map(|(a, b)| (a - b) / s).collect())
    }
}

/// Encode latents `z (n, d)` into the prior's Gaussian space: solve the probability-flow ODE from
/// σ_min to σ_max and divide by σ_max (so that ẑ ≈ N(0, I)).
pub fn encode(
    den: &dyn Denoiser,
    edm: &EdmConfig,
    z: &[f64],
    opt: &OdeOptions,
) -> Result<(Vec<f64>, OdeStats)> {
    let (x, st) = dopri5(pf_rhs(den), edm.sigma_min, edm.sigma_max, z, opt)?;
    Ok((x.iter().map(|v| v / edm.sigma_max).collect(), st))
}

/// Decode Gaussian-space points `ẑ (n, d)`: x = σ_max·ẑ, ODE from σ_max to σ_min.
pub fn decode(
    den: &dyn Denoiser,
    edm: &EdmConfig,
    zhat: &[f64],
    opt: &OdeOptions,
) -> Result<(Vec<f64>, OdeStats)> {
    let x: Vec<f64> = zhat.iter().map(|v| v * edm.sigma_max).collect();
    dopri5(pf_rhs(den), edm.sigma_max, edm.sigma_min, &x, opt)
}

/// `n` points (n ≥ 2) on the straight line from `a` to `b` (inclusive), `(n, d)`.
pub fn lerp_path(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * a.len());
    for i in 0..n {
        let f = if n > 1 {
            i as f64 / (n - 1) as f64
        } else {
            0.0
        };
        out.extend(a.iter().zip(b).map(|(x, y)| x + f * (y - x)));
    }
    out
}

/// Paper's latent interpolation: encode `za`, `zb` (d), interpolate linearly in Gaussian space with
/// `n` points, decode. Returns the decoded path `(n, d)`.
pub fn interpolate(
    den: &dyn Denoiser,
    edm: &EdmConfig,
    za: &[f64],
    zb: &[f64],
    n: usize,
    opt: &OdeOptions,
) -> Result<Vec<f64>> {
    let d = den.dim();
    if za.len() != d || zb.len() != d || n < 2 {
        return Err(Error::invalid(format!(
            "interpolate: endpoints must have zdim = {d} values and n ≥ 2 (got {}, {}, n = {n})",
            za.len(),
            zb.len()
        )));
    }
    let ends: Vec<f64> = za.iter().chain(zb).copied().collect();
    let (e, _) = encode(den, edm, &ends, opt)?;
    let path = lerp_path(&e[..d], &e[d..], n);
    Ok(decode(den, edm, &path, opt)?.0)
}

/// Paper eq. 7: ẑ_{k+1} = ẑ_k − ẑ_k·Δt/2 + √Δt·ε, from `zhat0 (d)`, `steps` states after the start;
/// returns the Gaussian-space chain `(steps + 1, d)` (decode it with [`decode`]).
pub fn langevin_chain(zhat0: &[f64], steps: usize, dt: f64, rng: &mut impl Rng) -> Vec<f64> {
    let mut out = zhat0.to_vec();
    let mut z = zhat0.to_vec();
    for _ in 0..steps {
        for v in z.iter_mut() {
            let e: f64 = StandardNormal.sample(rng);
            *v += -0.5 * *v * dt + dt.sqrt() * e;
        }
        out.extend_from_slice(&z);
    }
    out
}
