//! `pc-train`'s EDM training of the [`PointTransformer`] prior and `pc-sample`'s unconditional
//! sampler (spec §1–2).
//!
//! **Loss.** λ(t)·‖x₀ − D_θ(x_t, t)‖² with λ = 1/c_out², averaged per coordinate; written as
//! mean((F(c_in·x_t, c_noise) − (x₀ − c_skip·x_t)/c_out)²), which is the same number. x₀ is a
//! training cloud rotated by a random R (`--aug so3`: Haar SO(3); `o3`: times −I with probability
//! ½, Haar O(3); `none`), x_t = x₀ + t·n with n ~ N(0, I).
//!
//! **Noise levels.** Two phases: for the first `phase1_frac` (0.9) of the steps, ln t ~
//! N(−2.8, 0.9²) truncated at t ≤ 1 by resampling; then N(−1.2, 1.2²) truncated at t ≤ 80 (the
//! Mixed/CryoStruct rows of the spec's table).
//!
//! **Batches.** Each epoch visits the clouds in a random order (a function of the seed and the
//! epoch), in batches of `batch` (the last one smaller); every random draw of step k depends only
//! on (seed, k), so a run resumed from a state at step k continues exactly as an uninterrupted
//! one. Adam (β 0.9, 0.999), no EMA (spec A3).
//!
//! **Sampler.** [`sample_prior`] is Algorithm 1 without guidance (ζ = 0), a minimal copy kept here
//! until `dps.rs` provides the guided one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::dps::{dps, Beta, CloudPrior, DpsConfig};
use super::transformer::{PointTransformer, TransformerConfig};
use crate::autodiff::{ParamId, Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::geometry::quaternion::quat_to_rot;
use crate::nn::{Adam, Optimizer};
use crate::train::checkpoint::{Checkpoint, Setting, Settings};
use crate::{Error, Result};

/// The backend training runs on.
pub type Be = CpuBackend<f32>;

/// One phase of the training noise distribution: ln t ~ N(p_mean, p_std²) truncated at
/// t ≤ t_max (by resampling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    pub p_mean: f64,
    pub p_std: f64,
    pub t_max: f64,
}

impl Phase {
    /// Parse `P_MEAN,P_STD,T_MAX`.
    pub fn parse(s: &str) -> Result<Self> {
        let v: Vec<f64> = s
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| {
                Error::invalid(format!("phase `{s}`: {e} (expected P_MEAN,P_STD,T_MAX)"))
            })?;
        let [p_mean, p_std, t_max] = v[..] else {
            return Err(Error::invalid(format!(
                "phase `{s}`: expected three numbers P_MEAN,P_STD,T_MAX"
            )));
        };
        let p = Self {
            p_mean,
            p_std,
            t_max,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let ok = self.p_mean.is_finite()
            && self.p_std.is_finite()
            && self.p_std > 0.0
            && self.t_max.is_finite()
            && self.t_max > 0.0
            // at least ~1e-4 of the mass below t_max, so resampling ends
            && (self.t_max.ln() - self.p_mean) / self.p_std > -3.7;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "phase {self:?}: need P_STD > 0, T_MAX > 0 and T_MAX not far in the lower tail of ln t ~ N(P_MEAN, P_STD²)"
            )))
        }
    }

    /// Draw t (resampling until t ≤ t_max).
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        loop {
            let z: f64 = StandardNormal.sample(rng);
            let t = (self.p_mean + self.p_std * z).exp();
            if t <= self.t_max && t > 0.0 {
                return t;
            }
        }
    }
}

/// Rotation augmentation of the training clouds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aug {
    /// Haar-random proper rotations.
    #[default]
    So3,
    /// Haar-random orthogonal matrices (a proper rotation, negated with probability ½).
    O3,
    /// None.
    None,
}

impl Aug {
    /// `so3`, `o3` or `none`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "so3" => Ok(Aug::So3),
            "o3" => Ok(Aug::O3),
            "none" => Ok(Aug::None),
            _ => Err(Error::invalid(format!(
                "--aug `{s}`: expected so3, o3 or none"
            ))),
        }
    }

    /// The flag's text.
    pub fn name(self) -> &'static str {
        match self {
            Aug::So3 => "so3",
            Aug::O3 => "o3",
            Aug::None => "none",
        }
    }

    /// A random matrix of this group (row-major; clouds are rows, rotated as x·R).
    pub fn draw(self, rng: &mut impl Rng) -> [f64; 9] {
        if self == Aug::None {
            return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        }
        // a uniform unit quaternion from four normals
        let mut q = [0.0; 4];
        for v in q.iter_mut() {
            *v = StandardNormal.sample(rng);
        }
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
        q.iter_mut().for_each(|v| *v /= n);
        let mut r = quat_to_rot(&q);
        if self == Aug::O3 && rng.random_bool(0.5) {
            r.iter_mut().for_each(|v| *v = -*v);
        }
        r
    }
}

/// Training settings (defaults: spec §1's Mixed/CryoStruct schedule; sizes and learning rate
/// CPU-sized, see [`PcTrainConfig::default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PcTrainConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub lr: f64,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
    pub aug: Aug,
    pub phase1: Phase,
    pub phase2: Phase,
    /// Fraction of the steps drawn from `phase1`.
    pub phase1_frac: f64,
    /// t_c in c_noise = 1000·t/t_c.
    pub c_noise_tmax: f64,
}

impl Default for PcTrainConfig {
    /// W 64, 4 layers, 4 heads; Adam lr 5·10⁻⁴ (the paper's 10⁻⁴…8·10⁻⁵ is for a 78 M-parameter
    /// network over ~10⁵–10⁶ steps; a 0.2 M-parameter CPU network trained for a few thousand
    /// steps takes a larger rate), batch 16, 100 epochs, SO(3) augmentation, phases
    /// (−2.8, 0.9, 1) for 90 % of the steps then (−1.2, 1.2, 80), t_c = 80.
    fn default() -> Self {
        Self {
            width: 64,
            layers: 4,
            heads: 4,
            lr: 5e-4,
            batch: 16,
            epochs: 100,
            seed: 0,
            aug: Aug::So3,
            phase1: Phase {
                p_mean: -2.8,
                p_std: 0.9,
                t_max: 1.0,
            },
            phase2: Phase {
                p_mean: -1.2,
                p_std: 1.2,
                t_max: 80.0,
            },
            phase1_frac: 0.9,
            c_noise_tmax: 80.0,
        }
    }
}

/// An [`Aug`] as a checkpoint setting (its flag text).
impl Setting for Aug {
    fn text(&self) -> String {
        self.name().to_string()
    }
    fn set_text(&mut self, text: &str) -> bool {
        Aug::parse(text).map(|a| *self = a).is_ok()
    }
}

impl Settings for PcTrainConfig {
    /// Every setting that changes the arithmetic of a run (all of them: `epochs` sets where
    /// phase 1 ends, so a resumed run keeps it).
    fn each_setting(
        &mut self,
        f: &mut dyn FnMut(&'static str, &'static str, &mut dyn Setting) -> Result<()>,
    ) -> Result<()> {
        f("seed", "--seed", &mut self.seed)?;
        f("width", "--width", &mut self.width)?;
        f("layers", "--layers", &mut self.layers)?;
        f("heads", "--heads", &mut self.heads)?;
        f("lr", "--lr", &mut self.lr)?;
        f("batch", "--batch", &mut self.batch)?;
        f("epochs", "--epochs", &mut self.epochs)?;
        f("aug", "--aug", &mut self.aug)?;
        f("phase1_mean", "--phase1", &mut self.phase1.p_mean)?;
        f("phase1_std", "--phase1", &mut self.phase1.p_std)?;
        f("phase1_tmax", "--phase1", &mut self.phase1.t_max)?;
        f("phase2_mean", "--phase2", &mut self.phase2.p_mean)?;
        f("phase2_std", "--phase2", &mut self.phase2.p_std)?;
        f("phase2_tmax", "--phase2", &mut self.phase2.t_max)?;
        f("phase1_frac", "--phase1-frac", &mut self.phase1_frac)?;
        f("c_noise_tmax", "--c-noise-tmax", &mut self.c_noise_tmax)?;
        Ok(())
    }
}

impl PcTrainConfig {
    /// The network's configuration for clouds of `n_points`.
    pub fn model_config(&self, n_points: usize) -> TransformerConfig {
        TransformerConfig {
            width: self.width,
            layers: self.layers,
            heads: self.heads,
            n_points,
            sigma_data: 0.5,
            c_noise_tmax: self.c_noise_tmax,
        }
    }

    /// Optimizer steps per epoch for `s` clouds.
    pub fn steps_per_epoch(&self, s: usize) -> usize {
        s.div_ceil(self.batch.max(1))
    }

    /// Total optimizer steps for `s` clouds.
    pub fn total_steps(&self, s: usize) -> usize {
        self.epochs * self.steps_per_epoch(s)
    }

    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.epochs == 0 || !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(format!(
                "pc-train: --batch and --epochs must be positive and --lr > 0 (got {}, {}, {})",
                self.batch, self.epochs, self.lr
            )));
        }
        if !(0.0..=1.0).contains(&self.phase1_frac) {
            return Err(Error::invalid(format!(
                "pc-train: --phase1-frac must be in [0, 1], got {}",
                self.phase1_frac
            )));
        }
        self.phase1.check()?;
        self.phase2.check()?;
        self.model_config(1).check()
    }
}

/// The random stream of one step: a function of `(seed, step)` only.
fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The visiting order of epoch `e`: a function of `(seed, e)` only.
fn epoch_order(seed: u64, e: usize, s: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(
        seed.rotate_left(17) ^ (e as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    let mut p: Vec<usize> = (0..s).collect();
    for i in (1..s).rev() {
        p.swap(i, rng.random_range(0..=i));
    }
    p
}

/// Names of the extra tensors of a training state: `data_stats` = [S, N] of the clouds.
pub fn state_extra_names() -> Vec<String> {
    vec!["data_stats".into()]
}

/// What [`train_checkpointed`] returns: the model, this call's losses per step, the state to
/// resume from and the training time in seconds.
pub struct TrainOutput {
    pub model: PointTransformer<Be>,
    pub losses: Vec<f64>,
    pub state: Checkpoint,
    pub seconds: f64,
}

/// Read a training state for clouds (S, N) and `cfg`: the recorded settings must be `cfg`'s
/// (else an error naming the file, the setting and both values) and the data sizes must match.
pub fn load_state(
    path: &std::path::Path,
    s: usize,
    n: usize,
    cfg: &PcTrainConfig,
) -> Result<Checkpoint> {
    let head = crate::train::checkpoint::read_header(path)?;
    crate::train::checkpoint::reconcile_all(&mut cfg.clone(), path, &head.settings, |_| true)?;
    let m = PointTransformer::new(
        &Be::new(),
        cfg.model_config(n),
        &mut StdRng::seed_from_u64(0),
    )?;
    let ck = Checkpoint::load(path, &m.store.named_shapes(), &state_extra_names())?;
    let stats = ck
        .extra
        .iter()
        .find(|(name, _, _)| name == "data_stats")
        .map(|(_, _, v)| v.clone())
        .unwrap_or_default();
    if stats.len() != 2 || stats[0] as usize != s || stats[1] as usize != n {
        return Err(Error::format(
            path,
            format!("training state was made on other clouds (S, N = {stats:?}; these: {s}, {n})"),
        ));
    }
    Ok(ck)
}

/// Train on clouds (S, N, 3) (f64, normalised) with `cfg`, from scratch or from `resume` (a
/// state from an earlier call or [`load_state`]), up to `cfg.total_steps(S)` steps in all.
/// `on_step(step, loss)` follows every step; `on_checkpoint(state, losses so far)` gets the
/// state after every `every` steps (0: never) below the total. Errors when a loss is not finite.
#[allow(clippy::too_many_arguments)]
pub fn train_checkpointed(
    clouds: &[f64],
    s: usize,
    n: usize,
    cfg: &PcTrainConfig,
    resume: Option<Checkpoint>,
    every: usize,
    mut on_step: impl FnMut(usize, f64),
    mut on_checkpoint: impl FnMut(&Checkpoint, &[f64]) -> Result<()>,
) -> Result<TrainOutput> {
    cfg.check()?;
    if s == 0 || n == 0 || clouds.len() != s * n * 3 {
        return Err(Error::Shape {
            what: "pc-train: clouds".into(),
            expected: format!("(S, N, 3) with S = {s}, N = {n}"),
            got: format!("{} values", clouds.len()),
        });
    }
    let be = Be::new();
    let mut model = PointTransformer::new(
        &be,
        cfg.model_config(n),
        &mut StdRng::seed_from_u64(cfg.seed),
    )?;
    let mut adam = Adam::<Be>::new(cfg.lr, 0.0);
    let first = match resume {
        None => 0,
        Some(ck) => {
            for (i, (_, shape, v)) in ck.params.iter().enumerate() {
                *model.store.get_mut(ParamId(i)) = Tensor::from_slice(&be, v, shape)?;
            }
            adam.set_state(&be, ck.adam_step, &ck.adam_m, &ck.adam_v)?;
            ck.epoch
        }
    };
    let settings = cfg.settings();
    let state_of = |model: &PointTransformer<Be>, adam: &Adam<Be>, steps: usize| {
        let (adam_step, adam_m, adam_v) = adam.state(&model.be)?;
        let mut st = Checkpoint {
            epoch: steps,
            adam_step,
            adam_m,
            adam_v,
            settings: settings.clone(),
            ..Default::default()
        };
        for (name, t) in model.store.names.iter().zip(&model.store.tensors) {
            st.params
                .push((name.clone(), t.shape.clone(), model.be.to_vec(&t.buf)?));
        }
        st.extra
            .push(("data_stats".into(), vec![2], vec![s as f32, n as f32]));
        Ok::<_, Error>(st)
    };
    let total = cfg.total_steps(s);
    let spe = cfg.steps_per_epoch(s);
    let phase1_end = (cfg.phase1_frac * total as f64).round() as usize;
    let mcfg = model.cfg.clone();
    let start = std::time::Instant::now();
    let mut losses = Vec::with_capacity(total.saturating_sub(first));
    let mut order = (usize::MAX, Vec::new());
    for step in first..total {
        let e = step / spe;
        if order.0 != e {
            order = (e, epoch_order(cfg.seed, e, s));
        }
        let j = step % spe;
        let idx = &order.1[j * cfg.batch..((j + 1) * cfg.batch).min(s)];
        let b = idx.len();
        let phase = if step < phase1_end {
            cfg.phase1
        } else {
            cfg.phase2
        };
        let mut rng = step_rng(cfg.seed, step);
        let mut xin = Vec::with_capacity(b * n * 3);
        let mut tgt = Vec::with_capacity(b * n * 3);
        let mut c_noise = Vec::with_capacity(b);
        for &c in idx {
            let r = cfg.aug.draw(&mut rng);
            let t = phase.sample(&mut rng);
            let [c_skip, c_out, c_in, cn] = mcfg.precond(t);
            c_noise.push(cn);
            for p in clouds[c * n * 3..(c + 1) * n * 3].chunks_exact(3) {
                for k in 0..3 {
                    // x₀·R, then x_t = x₀ + t·n
                    let x0 = p[0] * r[k] + p[1] * r[3 + k] + p[2] * r[6 + k];
                    let z: f64 = StandardNormal.sample(&mut rng);
                    let xt = x0 + t * z;
                    xin.push((c_in * xt) as f32);
                    tgt.push(((x0 - c_skip * xt) / c_out) as f32);
                }
            }
        }
        let (loss, grads) = {
            let mut tape = Tape::new(&model.be, &model.store);
            let xv = tape.constant(Tensor::from_slice(&model.be, &xin, &[b * n, 3])?);
            let tv = tape.constant(Tensor::from_slice(&model.be, &tgt, &[b * n, 3])?);
            let f = model.forward_f(&mut tape, xv, &c_noise)?;
            let l = tape.mse(f, tv)?;
            (tape.to_vec(l)?[0] as f64, tape.backward(l)?)
        };
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "pc-train diverged at step {step} (loss {loss}); try a smaller --lr"
            )));
        }
        adam.step(&model.be, &mut model.store, &grads)?;
        grads.recycle(&model.be);
        losses.push(loss);
        on_step(step, loss);
        let done = step + 1;
        if every > 0 && done.is_multiple_of(every) && done < total {
            on_checkpoint(&state_of(&model, &adam, done)?, &losses)?;
        }
    }
    let state = state_of(&model, &adam, first.max(total))?;
    Ok(TrainOutput {
        model,
        losses,
        state,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Settings of the unconditional sampler (spec §1–2; defaults: 100 steps, t_max 80, ρ 3,
/// t_min 0.002, β = 1/t above t = 1 and 1 below).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleConfig {
    pub steps: usize,
    pub t_max: f64,
    pub t_min: f64,
    pub rho: f64,
    /// β(t) = 1/t for t > `beta_switch`, else `beta_low`.
    pub beta_switch: f64,
    pub beta_low: f64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            t_max: 80.0,
            t_min: 0.002,
            rho: 3.0,
            beta_switch: 1.0,
            beta_low: 1.0,
        }
    }
}

impl SampleConfig {
    /// The grid t_0 = t_max > … > t_{N−1} = t_min, t_N = 0:
    /// t_i = (t_max^{1/ρ} + i/(N−1)·(t_min^{1/ρ} − t_max^{1/ρ}))^ρ.
    pub fn grid(&self) -> Vec<f64> {
        super::dps::time_grid(self.steps, self.t_min, self.t_max, self.rho)
    }

    /// β(t).
    pub fn beta(&self, t: f64) -> f64 {
        if t > self.beta_switch {
            1.0 / t
        } else {
            self.beta_low
        }
    }

    fn check(&self) -> Result<()> {
        let ok = self.steps > 0
            && self.t_max.is_finite()
            && self.t_min > 0.0
            && self.t_min < self.t_max
            && self.rho.is_finite()
            && self.rho > 0.0
            && self.beta_low.is_finite()
            && self.beta_low >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "sampler: need steps > 0, 0 < t_min < t_max, ρ > 0 and β ≥ 0 (got {self:?})"
            )))
        }
    }
}

/// Algorithm 1 without guidance ([`super::dps::dps`] with no energy) for `count` clouds in
/// batches of `batch`, each batch seeded from `rng`; β = 1/t above `beta_switch`, `beta_low`
/// below. `on_step` follows every step of every batch. Returns (count, n, 3).
pub fn sample_prior(
    prior: &dyn CloudPrior,
    count: usize,
    batch: usize,
    cfg: &SampleConfig,
    rng: &mut impl Rng,
    mut on_step: impl FnMut(),
) -> Result<Vec<f64>> {
    cfg.check()?;
    if batch == 0 {
        return Err(Error::invalid("sampler: batch must be positive"));
    }
    let dcfg = DpsConfig {
        steps: cfg.steps,
        t_max: cfg.t_max,
        t_min: cfg.t_min,
        rho: cfg.rho,
        beta: Beta::InvT {
            threshold: cfg.beta_switch,
            value: cfg.beta_low,
        },
        alpha: 0.0,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(count * prior.n_points() * 3);
    let mut left = count;
    while left > 0 {
        let b = left.min(batch);
        left -= b;
        let r = dps(prior, None, &dcfg, b, rng.random(), |_| on_step())?;
        out.extend(r.clouds);
    }
    Ok(out)
}
