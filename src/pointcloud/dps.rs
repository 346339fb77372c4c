//! Cloud priors and posterior sampling (spec §2): the [`CloudPrior`] interface (a denoiser over
//! batches of clouds with its vector–Jacobian product), the exact prior of a Gaussian mixture
//! over template clouds ([`GmmCloudPrior`]), Algorithm 1 of Möbius & Habeck with guidance
//! ([`dps`], also unguided sampling with α = 0) and the maximum-likelihood baseline ([`ml`]).
//!
//! **Algorithm 1.** Time grid t_i = (t_max^{1/ρ} + i/(N−1)(t_min^{1/ρ} − t_max^{1/ρ}))^ρ,
//! i < N, t_N = 0. Guided score S(x, t) = (D(x,t) − x)/t² − ζ ∇_x E(D(x,t)), ζ = α/√E(D(x,t)),
//! with ∇_x E(D) = (∂D/∂x)ᵀ ∇E(D) a vector–Jacobian product through the denoiser. From
//! x ~ N(0, t_0² I), each step i with Δt = t_i − t_{i+1} and c_i = t_i + β(t_i) t_i²:
//! x̃ = x + c_i S(x, t_i) Δt; unless t_{i+1} = 0 the correction
//! x ← x + c_i (S(x, t_i) + S(x̃, t_{i+1})) Δt/2 + √(2β(t_i) t_i² Δt)·n (both slopes with c_i, as
//! printed; [`Heun::Karras`] uses c_{i+1} for the second), else x ← x̃. That is 2N − 1 network
//! evaluations and (2N − 1)·|y| assignments per sample. [`Integrator::Ode`] is the same with
//! β = 0; [`Integrator::Em`] drops the correction (N evaluations, noise on every step but the
//! last).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::energy::{EnergyModel, Solver, Workspace};
use crate::diffusion::edm::{karras_sigmas, posterior_mean, Denoiser, GmmDenoiser};
use crate::{Error, Result};

/// A denoiser over batches of clouds: D(x; t) for x `(b, n, 3)`, one t per cloud.
pub trait CloudPrior: Sync {
    /// Points per cloud.
    fn n_points(&self) -> usize;
    /// D(x; t), shape `(b, n, 3)`.
    fn denoise(&self, x: &[f64], t: &[f64]) -> Result<Vec<f64>>;
    /// D(x; t) and the vector–Jacobian product vᵀ ∂D/∂x, where v = cot(D) is computed by the
    /// callback from D (shape `(b, n, 3)` both).
    fn denoise_vjp(
        &self,
        x: &[f64],
        t: &[f64],
        cot: &mut dyn FnMut(&[f64]) -> Result<Vec<f64>>,
    ) -> Result<(Vec<f64>, Vec<f64>)>;
}

/// Check `x (b, n, 3)` against `t (b)`.
pub(crate) fn check_clouds(what: &str, x: &[f64], t: &[f64], n: usize) -> Result<usize> {
    if n == 0 || x.len() != t.len() * n * 3 {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("x of ({}, {n}, 3)", t.len()),
            got: format!("{} values", x.len()),
        });
    }
    Ok(t.len())
}

/// The exact prior of an isotropic Gaussian mixture over ordered clouds: component k is
/// N(μ_k, s_k² I) in R^{3n} with weight w_k. With v_k = s_k² + t², responsibilities
/// r_k ∝ w_k N(x; μ_k, v_k I), m_k = μ_k + (s_k²/v_k)(x − μ_k):
/// D(x; t) = Σ_k r_k m_k and
/// vᵀ ∂D/∂x = Σ_k r_k (s_k²/v_k) v + Σ_k (v·m_k) r_k (a_k − ā), a_k = −(x − μ_k)/v_k, ā = Σ_k r_k a_k.
#[derive(Clone, Debug)]
pub struct GmmCloudPrior {
    /// the mixture in R^{3n}: templates `(k, n, 3)` as its means (the diffusion prior's exact
    /// denoiser, which computes D and the responsibilities)
    pub gmm: GmmDenoiser,
    pub n: usize,
}

impl GmmCloudPrior {
    /// Equal weights, one std for every template `(k, n, 3)`.
    pub fn new(templates: Vec<f64>, n: usize, std: f64) -> Result<Self> {
        if n == 0 || templates.is_empty() || !templates.len().is_multiple_of(3 * n) {
            return Err(Error::Shape {
                what: "GmmCloudPrior templates".into(),
                expected: format!("(k, {n}, 3), k ≥ 1"),
                got: format!("{} values", templates.len()),
            });
        }
        if !(std > 0.0 && std.is_finite()) {
            return Err(Error::invalid(format!(
                "GmmCloudPrior: the template std must be positive, got {std}"
            )));
        }
        let k = templates.len() / (3 * n);
        Ok(Self {
            gmm: GmmDenoiser {
                means: templates,
                stds: vec![std; k],
                weights: vec![1.0 / k as f64; k],
                d: 3 * n,
            },
            n,
        })
    }

    /// Number of templates.
    pub fn components(&self) -> usize {
        self.gmm.weights.len()
    }

    /// vᵀ ∂D/∂x of one cloud from its posterior parts (r, m) (see the type's doc).
    fn vjp_one(&self, x: &[f64], t: f64, r: &[f64], m: &[f64], v: &[f64]) -> Vec<f64> {
        let (d, g) = (3 * self.n, &self.gmm);
        let a = |c: usize, j: usize| -(x[j] - g.means[c * d + j]) / (g.stds[c].powi(2) + t * t);
        let mut abar = vec![0.0; d];
        for (c, rc) in r.iter().enumerate() {
            for (j, ab) in abar.iter_mut().enumerate() {
                *ab += rc * a(c, j);
            }
        }
        let mut out = vec![0.0; d];
        for (c, rc) in r.iter().enumerate() {
            let gain = g.stds[c].powi(2) / (g.stds[c].powi(2) + t * t);
            let vm: f64 = v
                .iter()
                .zip(&m[c * d..(c + 1) * d])
                .map(|(p, q)| p * q)
                .sum();
            for j in 0..d {
                out[j] += rc * gain * v[j] + vm * rc * (a(c, j) - abar[j]);
            }
        }
        out
    }
}

impl CloudPrior for GmmCloudPrior {
    fn n_points(&self) -> usize {
        self.n
    }

    fn denoise(&self, x: &[f64], t: &[f64]) -> Result<Vec<f64>> {
        check_clouds("GmmCloudPrior::denoise", x, t, self.n)?;
        self.gmm.denoise(x, t)
    }

    fn denoise_vjp(
        &self,
        x: &[f64],
        t: &[f64],
        cot: &mut dyn FnMut(&[f64]) -> Result<Vec<f64>>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        check_clouds("GmmCloudPrior::denoise_vjp", x, t, self.n)?;
        let d = 3 * self.n;
        // the posterior parts of each cloud, once: D now, the VJP after the cotangent
        let parts: Vec<(Vec<f64>, Vec<f64>)> = x
            .chunks(d)
            .zip(t)
            .map(|(xb, &tb)| self.gmm.posterior_parts(xb, tb))
            .collect();
        let mut dn = vec![0.0; x.len()];
        for (o, (r, m)) in dn.chunks_exact_mut(d).zip(&parts) {
            posterior_mean(r, m, o);
        }
        let v = cot(&dn)?;
        if v.len() != dn.len() {
            return Err(Error::Shape {
                what: "GmmCloudPrior::denoise_vjp cotangent".into(),
                expected: format!("{} values", dn.len()),
                got: format!("{} values", v.len()),
            });
        }
        let g = x
            .chunks(d)
            .zip(t)
            .zip(v.chunks(d))
            .zip(&parts)
            .flat_map(|(((xb, &tb), vb), (r, m))| self.vjp_one(xb, tb, r, m, vb))
            .collect();
        Ok((dn, g))
    }
}

/// β(t) of Algorithm 1: `value` when t ≤ `threshold`, 1/t above it (spec: "1/t" is threshold 0;
/// "1/t>0.15:0" is threshold 0.15, value 0; "1/t>1:1" threshold 1, value 1); [`Beta::Zero`] is
/// the probability-flow ODE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Beta {
    /// β ≡ 0.
    Zero,
    /// β = 1/t for t > threshold, else `value`.
    InvT { threshold: f64, value: f64 },
}

impl Beta {
    /// β(t).
    pub fn at(&self, t: f64) -> f64 {
        match *self {
            Beta::Zero => 0.0,
            Beta::InvT { threshold, value } => {
                if t > threshold {
                    1.0 / t
                } else {
                    value
                }
            }
        }
    }
}

impl std::str::FromStr for Beta {
    type Err = Error;

    /// `0`, `1/t`, or `1/t>THRESHOLD:VALUE` (e.g. `1/t>0.15:0`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "--beta `{s}`: expected 0, 1/t or 1/t>THRESHOLD:VALUE (e.g. 1/t>0.15:0)"
            ))
        };
        let s2 = s.replace(' ', "");
        if s2 == "0" {
            return Ok(Beta::Zero);
        }
        if s2 == "1/t" {
            return Ok(Beta::InvT {
                threshold: 0.0,
                value: 0.0,
            });
        }
        let rest = s2.strip_prefix("1/t>").ok_or_else(bad)?;
        let (a, b) = rest.split_once(':').ok_or_else(bad)?;
        let threshold: f64 = a.parse().map_err(|_| bad())?;
        let value: f64 = b.parse().map_err(|_| bad())?;
        if !(threshold >= 0.0 && value >= 0.0 && threshold.is_finite() && value.is_finite()) {
            return Err(bad());
        }
        Ok(Beta::InvT { threshold, value })
    }
}

/// The integrator of Algorithm 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrator {
    /// Euler on the probability-flow ODE (β = 0), N evaluations.
    Ode,
    /// Euler–Maruyama, N evaluations.
    Em,
    /// Euler–Maruyama with the correction step (Algorithm 1), 2N − 1 evaluations.
    EmCorr,
}

/// The second slope of the correction step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heun {
    /// Both slopes scaled by c_i (Algorithm 1 as printed).
    Literal,
    /// The second slope scaled by c_{i+1} (Karras' Heun).
    Karras,
}

/// Settings of [`dps`].
#[derive(Clone, Debug)]
pub struct DpsConfig {
    /// grid points N (steps)
    pub steps: usize,
    pub t_max: f64,
    pub t_min: f64,
    pub rho: f64,
    pub beta: Beta,
    /// guidance strength α (ζ = α/√E); 0 samples the prior
    pub alpha: f64,
    pub integrator: Integrator,
    pub heun: Heun,
    pub solver: Solver,
}

impl Default for DpsConfig {
    /// The paper's reconstruction settings: N = 40, t ∈ [0.002, 1], ρ = 3, β = 1/t, α = 4000,
    /// EM with correction, the literal update, the auction with ε = 10⁻⁶.
    fn default() -> Self {
        Self {
            steps: 40,
            t_max: 1.0,
            t_min: 0.002,
            rho: 3.0,
            beta: Beta::InvT {
                threshold: 0.0,
                value: 0.0,
            },
            alpha: 4000.0,
            integrator: Integrator::EmCorr,
            heun: Heun::Literal,
            solver: Solver::Auction(Default::default()),
        }
    }
}

/// What a run of [`dps`] or [`ml`] returns.
#[derive(Clone, Debug)]
pub struct Reconstruction {
    /// final clouds `(b, n, 3)`
    pub clouds: Vec<f64>,
    /// E of each sample's final cloud
    pub energy: Vec<f64>,
    /// per step, E(D(x, t_i)) of each sample (DPS) or E(x) before the step (ML, of the start
    /// kept): `(steps, b)`
    pub trace: Vec<Vec<f64>>,
    /// network evaluations per sample
    pub nfe: usize,
    /// assignment problems solved during the run, all samples (and all of ML's starts; the final
    /// energies' are not counted)
    pub laps: u64,
}

/// The time grid t_0 … t_{N−1} (Karras, ρ) followed by t_N = 0.
pub fn time_grid(steps: usize, t_min: f64, t_max: f64, rho: f64) -> Vec<f64> {
    let mut ts = karras_sigmas(steps, t_min, t_max, rho);
    ts.push(0.0);
    ts
}

struct Guided<'a> {
    prior: &'a dyn CloudPrior,
    energy: Option<(&'a EnergyModel, &'a Solver)>,
    alpha: f64,
    ws: Workspace,
    nfe: usize,
}

impl Guided<'_> {
    /// S(x, t) for every sample and E(D(x, t)) per sample (0 without guidance).
    fn score(&mut self, x: &[f64], t: f64, b: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        self.nfe += 1;
        let ts = vec![t; b];
        let inv = 1.0 / (t * t);
        match self.energy {
            Some((em, solver)) if self.alpha > 0.0 => {
                let mut es = Vec::new();
                let ws = &mut self.ws;
                let alpha = self.alpha;
                let (dn, g) = self.prior.denoise_vjp(x, &ts, &mut |dn: &[f64]| {
                    let en = em.energy_batch(dn, solver, ws)?;
                    let n3 = dn.len() / b;
                    let mut v = Vec::with_capacity(dn.len());
                    for e in &en {
                        // ζ = α/√E; the floor keeps an exact fit finite
                        let zeta = alpha / e.total.max(1e-12).sqrt();
                        v.extend(e.grad.iter().map(|gi| zeta * gi));
                    }
                    debug_assert_eq!(v.len(), b * n3);
                    es = en.iter().map(|e| e.total).collect();
                    Ok(v)
                })?;
                let mut s = vec![0.0; x.len()];
                edm_score(x, &dn, &g, inv, &mut s);
                Ok((s, es))
            }
            _ => {
                let dn = self.prior.denoise(x, &ts)?;
                let mut s = vec![0.0; x.len()];
                edm_score(x, &dn, &vec![0.0; x.len()], inv, &mut s);
                Ok((s, vec![0.0; b]))
            }
        }
    }
}

/// S = (D − x)/t² − g for every coordinate (CPU twin of `edm_score_f32`, `kernels/edm.cu`).
pub fn edm_score<T: num_traits::Float>(x: &[T], d: &[T], g: &[T], inv_t2: T, s: &mut [T]) {
    for (((s, &x), &d), &g) in s.iter_mut().zip(x).zip(d).zip(g) {
        *s = (d - x) * inv_t2 - g;
    }
}

/// x̃ = x + c_dt·S (CPU twin of `edm_euler_f32`).
pub fn edm_euler<T: num_traits::Float>(x: &[T], s: &[T], c_dt: T, xe: &mut [T]) {
    for ((xe, &x), &s) in xe.iter_mut().zip(x).zip(s) {
        *xe = x + c_dt * s;
    }
}

/// x += a1·S + a2·S' + sd·noise (CPU twin of `edm_correct_f32`).
pub fn edm_correct<T: num_traits::Float>(
    x: &mut [T],
    s1: &[T],
    s2: &[T],
    a1: T,
    a2: T,
    sd: T,
    noise: &[T],
) {
    for (((x, &s1), &s2), &e) in x.iter_mut().zip(s1).zip(s2).zip(noise) {
        *x = *x + a1 * s1 + a2 * s2 + sd * e;
    }
}

fn normals(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// Algorithm 1 for `b` samples: posterior sampling under `energy` (or prior sampling when
/// `energy` is `None` or α = 0). `on_step(i)` after each of the N steps.
pub fn dps(
    prior: &dyn CloudPrior,
    energy: Option<&EnergyModel>,
    cfg: &DpsConfig,
    b: usize,
    seed: u64,
    mut on_step: impl FnMut(usize),
) -> Result<Reconstruction> {
    if cfg.steps < 2 {
        return Err(Error::invalid(format!(
            "dps: need at least 2 steps, got {}",
            cfg.steps
        )));
    }
    if !(cfg.t_min > 0.0 && cfg.t_max > cfg.t_min && cfg.rho > 0.0 && cfg.alpha >= 0.0) {
        return Err(Error::invalid(format!(
            "dps: need 0 < t_min < t_max, ρ > 0, α ≥ 0 (got t_min {}, t_max {}, ρ {}, α {})",
            cfg.t_min, cfg.t_max, cfg.rho, cfg.alpha
        )));
    }
    let n = prior.n_points();
    if let Some(em) = energy {
        if em.n_points() != n {
            return Err(Error::invalid(format!(
                "dps: the observations were prepared for {} points, the prior has {n}",
                em.n_points()
            )));
        }
    }
    if b == 0 {
        return Err(Error::invalid("dps: need at least one sample"));
    }
    let laps0 = energy.map_or(0, |e| e.laps());
    let mut g = Guided {
        prior,
        energy: energy.map(|e| (e, &cfg.solver)),
        alpha: cfg.alpha,
        ws: energy.map_or_else(Workspace::default, |e| Workspace::new(e, b)),
        nfe: 0,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let ts = time_grid(cfg.steps, cfg.t_min, cfg.t_max, cfg.rho);
    let mut x: Vec<f64> = normals(&mut rng, b * n * 3)
        .into_iter()
        .map(|e| e * ts[0])
        .collect();
    let mut trace = Vec::with_capacity(cfg.steps);
    let beta_at = |t: f64| match cfg.integrator {
        Integrator::Ode => 0.0,
        _ => cfg.beta.at(t),
    };
    for i in 0..cfg.steps {
        let (t, tn) = (ts[i], ts[i + 1]);
        let dt = t - tn;
        let beta = beta_at(t);
        let c = t + beta * t * t;
        let (s, es) = g.score(&x, t, b)?;
        trace.push(es);
        let mut xe = vec![0.0; x.len()];
        edm_euler(&x, &s, c * dt, &mut xe);
        let sd = (2.0 * beta * t * t * dt).sqrt();
        let noise = |rng: &mut StdRng| {
            if sd > 0.0 {
                normals(rng, x.len())
            } else {
                vec![0.0; x.len()]
            }
        };
        if tn > 0.0 && cfg.integrator == Integrator::EmCorr {
            let (s2, _) = g.score(&xe, tn, b)?;
            let c2 = match cfg.heun {
                Heun::Literal => c,
                Heun::Karras => tn + beta_at(tn) * tn * tn,
            };
            let e = noise(&mut rng);
            edm_correct(&mut x, &s, &s2, c * dt / 2.0, c2 * dt / 2.0, sd, &e);
        } else if tn > 0.0 && cfg.integrator == Integrator::Em {
            let e = noise(&mut rng);
            edm_correct(&mut xe, &s, &s, 0.0, 0.0, sd, &e);
            x = xe;
        } else {
            x = xe;
        }
        on_step(i);
    }
    let laps = energy.map_or(0, |e| e.laps()) - laps0;
    let energy_final = match energy {
        Some(em) => em
            .energy_batch(&x, &cfg.solver, &mut g.ws)?
            .iter()
            .map(|e| e.total)
            .collect(),
        None => vec![0.0; b],
    };
    Ok(Reconstruction {
        clouds: x,
        energy: energy_final,
        trace,
        nfe: g.nfe,
        laps,
    })
}

/// How [`ml`]'s Adam step size moves over the steps s = 1 … S.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// lr at every step (the paper's baseline).
    Constant,
    /// Cosine decay from lr at the first step to `final_lr` at the last:
    /// lr_s = final_lr + (lr − final_lr)(1 + cos(π (s − 1)/(S − 1)))/2.
    Cosine { final_lr: f64 },
}

impl LrSchedule {
    /// The step size at step `s` of `steps` (1-based) for the peak rate `lr`.
    pub fn at(&self, lr: f64, s: usize, steps: usize) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { final_lr } => {
                let u = if steps > 1 {
                    (s - 1) as f64 / (steps - 1) as f64
                } else {
                    1.0
                };
                final_lr + (lr - final_lr) * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
            }
        }
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = Error;

    /// `constant` or `cosine:FINAL_LR` (e.g. `cosine:1e-4`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "--ml-lr-decay `{s}`: expected constant or cosine:FINAL_LR (e.g. cosine:1e-4)"
            ))
        };
        let s2 = s.replace(' ', "");
        if s2 == "constant" {
            return Ok(LrSchedule::Constant);
        }
        let f = s2.strip_prefix("cosine:").ok_or_else(bad)?;
        let final_lr: f64 = f.parse().map_err(|_| bad())?;
        if !(final_lr > 0.0 && final_lr.is_finite()) {
            return Err(bad());
        }
        Ok(LrSchedule::Cosine { final_lr })
    }
}

/// Settings of [`ml`]. The default is the paper's baseline: Adam (β₁ 0.9, β₂ 0.999), lr 0.01
/// constant, 100 steps, one start per sample from a cloud uniform in [−1, 1]³, reassigned every
/// step.
#[derive(Clone, Debug)]
pub struct MlConfig {
    /// Adam steps per start
    pub steps: usize,
    /// Adam's step size (the peak of `schedule`)
    pub lr: f64,
    /// how the step size moves over the steps
    pub schedule: LrSchedule,
    /// random starts per sample (R ≥ 1); each sample keeps the start of lowest final E.
    /// Costs R × steps × |y| assignments per sample.
    pub restarts: usize,
    pub solver: Solver,
}

impl Default for MlConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            lr: 0.01,
            schedule: LrSchedule::Constant,
            restarts: 1,
            solver: Solver::Auction(Default::default()),
        }
    }
}

/// Maximum likelihood: minimise E with Adam from `restarts` random clouds per sample and keep,
/// for each of the `b` samples, the start whose final E is lowest. Start r of sample i is the
/// (r·b + i)-th cloud drawn, so restart 0 is the single-start run with the same seed and a
/// sample's final E never exceeds its restart 0's. `on_step(i)` after each step (all starts
/// move together).
pub fn ml(
    energy: &EnergyModel,
    cfg: &MlConfig,
    b: usize,
    seed: u64,
    mut on_step: impl FnMut(usize),
) -> Result<Reconstruction> {
    if cfg.steps == 0 || cfg.lr.is_nan() || cfg.lr <= 0.0 || b == 0 || cfg.restarts == 0 {
        return Err(Error::invalid(format!(
            "ml: need steps ≥ 1, lr > 0, restarts ≥ 1 and a sample (got {} steps, lr {}, {} restarts, {b} samples)",
            cfg.steps, cfg.lr, cfg.restarts
        )));
    }
    if let LrSchedule::Cosine { final_lr } = cfg.schedule {
        if !(final_lr > 0.0 && final_lr.is_finite()) {
            return Err(Error::invalid(format!(
                "ml: the cosine schedule's final lr must be positive, got {final_lr}"
            )));
        }
    }
    let n = energy.n_points();
    let n3 = 3 * n;
    let bb = b * cfg.restarts;
    let laps0 = energy.laps();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x: Vec<f64> = (0..bb * n3).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut ws = Workspace::new(energy, bb);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut m = vec![0.0; x.len()];
    let mut v = vec![0.0; x.len()];
    // (steps, b·R): E(x) of every start before each step
    let mut trace_all: Vec<Vec<f64>> = Vec::with_capacity(cfg.steps);
    for step in 1..=cfg.steps {
        let en = energy.energy_batch(&x, &cfg.solver, &mut ws)?;
        trace_all.push(en.iter().map(|e| e.total).collect());
        let g: Vec<f64> = en.into_iter().flat_map(|e| e.grad).collect();
        let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
        let lr = cfg.schedule.at(cfg.lr, step, cfg.steps);
        for k in 0..x.len() {
            m[k] = b1 * m[k] + (1.0 - b1) * g[k];
            v[k] = b2 * v[k] + (1.0 - b2) * g[k] * g[k];
            x[k] -= lr * (m[k] / c1) / ((v[k] / c2).sqrt() + eps);
        }
        on_step(step - 1);
    }
    let laps = energy.laps() - laps0;
    let final_all: Vec<f64> = energy
        .energy_batch(&x, &cfg.solver, &mut ws)?
        .iter()
        .map(|e| e.total)
        .collect();
    // the start of lowest final E per sample (the first on ties: restart 0 wins a draw)
    let best: Vec<usize> = (0..b)
        .map(|i| {
            (0..cfg.restarts).map(|r| r * b + i).fold(i, |a, c| {
                if final_all[c] < final_all[a] {
                    c
                } else {
                    a
                }
            })
        })
        .collect();
    Ok(Reconstruction {
        clouds: best
            .iter()
            .flat_map(|&c| x[c * n3..(c + 1) * n3].iter().copied())
            .collect(),
        energy: best.iter().map(|&c| final_all[c]).collect(),
        trace: trace_all
            .iter()
            .map(|row| best.iter().map(|&c| row[c]).collect())
            .collect(),
        nfe: 0,
        laps,
    })
}
