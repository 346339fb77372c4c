//! The EDM denoiser network `F_θ`: cryoDRGN-style residual MLP (SiLU) over `[c_in·x, emb(c_noise)]`,
//! trained with the EDM loss (paper eq. 4), Adam and an EMA of the weights; saved as `.npz`.
//!
//! Checkpoint format (`PRIOR_DIR/prior.npz`, numpy-readable): one float32 array per parameter,
//! named as in the [`ParamStore`] (`net.main.{2l}[.linear].{weight,bias}`), plus
//! `config` float64 `[zdim, nlayers, hidden, sigma_data, p_mean, p_std, sigma_min, sigma_max, rho]`
//! and `mean` float64 `(zdim)` (the latent mean subtracted before the diffusion model).

use std::path::Path;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::edm::{check_batch, Denoiser, EdmConfig, Precond};
use crate::autodiff::{ParamStore, Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::backend::{Activation, Backend};
use crate::io::array::NdArray;
use crate::io::npy::{read_npz, write_npz};
use crate::nn::{Adam, Ema, Mlp, Optimizer};
use crate::train::checkpoint::{reconcile_all, Checkpoint, Setting, Settings};
use crate::{Error, Result};

/// Width of the noise embedding `[c_noise, sin(2^k c_noise), cos(2^k c_noise)], k = 0..4`.
pub const NOISE_EMB: usize = 9;

/// The noise-level features the network sees next to `c_in·x`.
pub fn noise_embedding(c_noise: f64) -> [f64; NOISE_EMB] {
    let mut e = [0.0; NOISE_EMB];
    e[0] = c_noise;
    for k in 0..4 {
        let f = (1u32 << k) as f64 * c_noise;
        e[1 + 2 * k] = f.sin();
        e[2 + 2 * k] = f.cos();
    }
    e
}

type Be = CpuBackend<f32>;

/// `D_θ(x; σ) = mean + c_skip·(x−mean) + c_out·F_θ([c_in·(x−mean), emb(c_noise)])`.
pub struct MlpDenoiser {
    pub be: Be,
    pub store: ParamStore<Be>,
    pub net: Mlp,
    pub edm: EdmConfig,
    /// latent mean `(d)`, subtracted so that σ_data is the std about it
    pub mean: Vec<f64>,
    pub d: usize,
    pub nlayers: usize,
    pub hidden: usize,
}

impl MlpDenoiser {
    /// A freshly initialized denoiser: `nlayers` hidden layers of width `hidden`.
    pub fn new(
        d: usize,
        nlayers: usize,
        hidden: usize,
        edm: EdmConfig,
        mean: Vec<f64>,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if d == 0 || hidden == 0 || mean.len() != d {
            return Err(Error::invalid(format!(
                "MlpDenoiser: need zdim > 0, hidden > 0 and a mean of length zdim (zdim {d}, hidden {hidden}, mean {})",
                mean.len()
            )));
        }
        let be = Be::new();
        let mut store = ParamStore::new();
        let net = Mlp::resid(
            &be,
            &mut store,
            "net",
            d + NOISE_EMB,
            nlayers,
            hidden,
            d,
            Activation::Silu,
            rng,
        )?;
        Ok(Self {
            be,
            store,
            net,
            edm,
            mean,
            d,
            nlayers,
            hidden,
        })
    }

    /// Network input rows `[c_in·(x−mean), emb(c_noise)]` `(n, d+9)` as f32.
    fn net_input(&self, x: &[f64], sigma: &[f64]) -> Vec<f32> {
        let d = self.d;
        let mut inp = Vec::with_capacity(sigma.len() * (d + NOISE_EMB));
        for (i, &s) in sigma.iter().enumerate() {
            let p = Precond::new(s, self.edm.sigma_data);
            for j in 0..d {
                inp.push((p.c_in * (x[i * d + j] - self.mean[j])) as f32);
            }
            inp.extend(noise_embedding(p.c_noise).iter().map(|&v| v as f32));
        }
        inp
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.store.tensors.iter().map(|t| t.numel()).sum()
    }

    /// Save to `.npz` (format in the module doc), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut arrays = Vec::new();
        for (name, t) in self.store.names.iter().zip(&self.store.tensors) {
            let v = self.be.to_vec(&t.buf)?;
            arrays.push((name.clone(), NdArray::from_f32(t.shape.clone(), v)?));
        }
        let e = &self.edm;
        let cfg = vec![
            self.d as f64,
            self.nlayers as f64,
            self.hidden as f64,
            e.sigma_data,
            e.p_mean,
            e.p_std,
            e.sigma_min,
            e.sigma_max,
            e.rho,
        ];
        arrays.push((
            "config".into(),
            NdArray::new(vec![cfg.len()], crate::io::array::ArrayData::F64(cfg))?,
        ));
        arrays.push((
            "mean".into(),
            NdArray::new(
                vec![self.d],
                crate::io::array::ArrayData::F64(self.mean.clone()),
            )?,
        ));
        write_npz(path, &arrays)
    }

    /// Load a checkpoint written by [`MlpDenoiser::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let arrays = read_npz(path)?;
        let get = |name: &str| {
            arrays
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a)
                .ok_or_else(|| Error::format(path, format!("missing array `{name}`")))
        };
        let cfg = get("config")?.to_f64();
        if cfg.len() != 9 {
            return Err(Error::format(
                path,
                format!("`config` has {} values, expected 9", cfg.len()),
            ));
        }
        let edm = EdmConfig {
            sigma_data: cfg[3],
            p_mean: cfg[4],
            p_std: cfg[5],
            sigma_min: cfg[6],
            sigma_max: cfg[7],
            rho: cfg[8],
        };
        let mean = get("mean")?.to_f64();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut m = Self::new(
            cfg[0] as usize,
            cfg[1] as usize,
            cfg[2] as usize,
            edm,
            mean,
            &mut rng,
        )?;
        for i in 0..m.store.len() {
            let name = m.store.names[i].clone();
            let a = get(&name)?;
            let t = &m.store.tensors[i];
            if a.shape != t.shape {
                return Err(Error::format(
                    path,
                    format!("`{name}` has shape {:?}, expected {:?}", a.shape, t.shape),
                ));
            }
            let shape = t.shape.clone();
            *m.store.get_mut(crate::autodiff::ParamId(i)) =
                Tensor::from_slice(&m.be, &a.to_f32(), &shape)?;
        }
        Ok(m)
    }
}

use rand::SeedableRng;

impl Denoiser for MlpDenoiser {
    fn dim(&self) -> usize {
        self.d
    }

    fn denoise(&self, x: &[f64], sigma: &[f64]) -> Result<Vec<f64>> {
        let d = self.d;
        let n = check_batch("MlpDenoiser::denoise", x, sigma, d)?;
        let inp = self.net_input(x, sigma);
        let mut t = Tape::inference(&self.be, &self.store);
        let xi = t.constant(Tensor::from_slice(&self.be, &inp, &[n, d + NOISE_EMB])?);
        let y = self.net.forward(&mut t, xi)?;
        let f = t.to_vec(y)?;
        let mut out = vec![0.0; n * d];
        for (i, &s) in sigma.iter().enumerate().take(n) {
            let p = Precond::new(s, self.edm.sigma_data);
            for j in 0..d {
                let k = i * d + j;
                out[k] = self.mean[j] + p.c_skip * (x[k] - self.mean[j]) + p.c_out * f[k] as f64;
            }
        }
        Ok(out)
    }
}

/// Training settings (defaults: paper Appendix A.1; `steps` is ours, the paper gives none).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub nlayers: usize,
    pub hidden: usize,
    pub lr: f64,
    pub batch: usize,
    pub steps: usize,
    pub ema: f64,
    pub seed: u64,
}

impl Settings for TrainConfig {
    /// Visit every setting that changes the training's arithmetic, as (name, `prior-train`
    /// flag, value): those a run resumed from a training state must share with the run that
    /// wrote it (`steps`, the total, is not one).
    fn each_setting(
        &mut self,
        f: &mut dyn FnMut(&'static str, &'static str, &mut dyn Setting) -> Result<()>,
    ) -> Result<()> {
        f("seed", "--seed", &mut self.seed)?;
        f("nlayers", "--layers", &mut self.nlayers)?;
        f("hidden", "--dim", &mut self.hidden)?;
        f("lr", "--lr", &mut self.lr)?;
        f("batch", "--batch", &mut self.batch)?;
        f("ema", "--ema", &mut self.ema)?;
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            nlayers: 16,
            hidden: 128,
            lr: 3e-4,
            batch: 1024,
            steps: 20000,
            ema: 0.999,
            seed: 0,
        }
    }
}

/// What training returns besides the (EMA) model.
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// loss per step (the EDM loss, eq. 4, averaged over the batch and latent dimensions)
    pub losses: Vec<f64>,
    pub seconds: f64,
}

/// Mean `(d)` and σ_data (std of all centred coordinates) of latents `(n, d)`.
pub fn latent_stats(z: &[f64], d: usize) -> Result<(Vec<f64>, f64)> {
    if d == 0 || z.is_empty() || !z.len().is_multiple_of(d) {
        return Err(Error::invalid(format!(
            "latents: {} values do not form rows of {d}",
            z.len()
        )));
    }
    let n = z.len() / d;
    let mut mean = vec![0.0; d];
    for row in z.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n as f64;
        }
    }
    let var: f64 = z
        .chunks(d)
        .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| (v - m).powi(2)))
        .sum::<f64>()
        / (n * d) as f64;
    if var.is_nan() || var <= 0.0 {
        return Err(Error::invalid("latents have zero variance"));
    }
    Ok((mean, var.sqrt()))
}

/// Train a denoiser on latents `z (n, d)` with the EDM objective: σ ~ logN(P_mean, P_std²),
/// x = y + σ·ε, target of F: `(y − c_skip·x)/c_out` with unit weight (λ(σ)·c_out² = 1, so this is
/// exactly λ(σ)‖D(x; σ) − y‖²). Adam, EMA of the weights (decay warmed up as
/// min(ema, (1+t)/(10+t))); returns the EMA model. `on_step(step, loss)` is called every step.
pub fn train(
    z: &[f64],
    d: usize,
    cfg: &TrainConfig,
    on_step: impl FnMut(usize, f64),
) -> Result<(MlpDenoiser, TrainReport)> {
    let (model, rep, _) = train_resumable(z, d, cfg, None, on_step)?;
    Ok((model, rep))
}

/// Names of the extra tensors of a training state: the EMA shadow of each parameter and the data
/// statistics `[n, zdim, sigma_data]` it was trained on.
fn state_extra_names(store: &ParamStore<Be>) -> Vec<String> {
    let mut v: Vec<String> = store.names.iter().map(|n| format!("ema.{n}")).collect();
    v.push("data_stats".into());
    v
}

/// The random stream of one training step: a function of `(seed, step)` only, so a resumed run
/// draws exactly what an uninterrupted one would.
fn step_rng(seed: u64, step: usize) -> rand::rngs::StdRng {
    let mix = (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    rand::rngs::StdRng::seed_from_u64(seed ^ mix)
}

/// Read a training state (`state.safetensors`, a [`Checkpoint`] whose `epoch` is the step count)
/// for a model of `cfg`'s size. The settings it records ([`TrainConfig::each_setting`]) must be
/// `cfg`'s (else an error naming the file, the setting and both values); a state without
/// recorded settings (written before they were) is taken as made with `cfg`'s.
pub fn load_state(path: &Path, z: &[f64], d: usize, cfg: &TrainConfig) -> Result<Checkpoint> {
    let head = crate::train::checkpoint::read_header(path)?;
    reconcile_all(&mut cfg.clone(), path, &head.settings, |_| true)?;
    let (mean, sigma_data) = latent_stats(z, d)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let m = MlpDenoiser::new(
        d,
        cfg.nlayers,
        cfg.hidden,
        EdmConfig::new(sigma_data),
        mean,
        &mut rng,
    )?;
    let ck = Checkpoint::load(path, &m.store.named_shapes(), &state_extra_names(&m.store))?;
    let stats = ck
        .extra
        .iter()
        .find(|(n, _, _)| n == "data_stats")
        .map(|(_, _, v)| v.clone())
        .unwrap_or_default();
    let n = z.len() / d;
    if stats.len() != 3
        || stats[0] as usize != n
        || stats[1] as usize != d
        || (stats[2] as f64 - sigma_data).abs() > 1e-5 * sigma_data
    {
        return Err(Error::format(
            path,
            format!(
                "training state was made on other latents (n, zdim, σ_data = {stats:?}; these: {n}, {d}, {sigma_data:.6})"
            ),
        ));
    }
    Ok(ck)
}

/// [`train`] that can start from a saved state (the `Checkpoint` returned by an earlier call or
/// read by [`load_state`]; `cfg.steps` is then the total, including the steps already done) and
/// returns the state to save: raw weights, EMA weights, Adam moments, the step count and
/// `cfg`'s settings. Resuming is exact: each step's random draws depend only on `(seed, step)`.
pub fn train_resumable(
    z: &[f64],
    d: usize,
    cfg: &TrainConfig,
    resume: Option<Checkpoint>,
    on_step: impl FnMut(usize, f64),
) -> Result<(MlpDenoiser, TrainReport, Checkpoint)> {
    train_checkpointed(z, d, cfg, resume, 0, on_step, |_, _| Ok(()))
}

/// [`train_resumable`] that also hands the training state to `on_checkpoint` every `every`
/// steps (counted from the start of the run: after steps `every`, `2·every`, … below
/// `cfg.steps`; never when `every` is 0), with the losses of this call's steps so far. The
/// state at step k is the one an uninterrupted run has there, so resuming from it continues
/// exactly. An error from `on_checkpoint` stops the training and is returned.
#[allow(clippy::too_many_arguments)]
pub fn train_checkpointed(
    z: &[f64],
    d: usize,
    cfg: &TrainConfig,
    resume: Option<Checkpoint>,
    every: usize,
    mut on_step: impl FnMut(usize, f64),
    mut on_checkpoint: impl FnMut(&Checkpoint, &[f64]) -> Result<()>,
) -> Result<(MlpDenoiser, TrainReport, Checkpoint)> {
    let (mean, sigma_data) = latent_stats(z, d)?;
    let n = z.len() / d;
    if cfg.batch == 0 {
        return Err(Error::invalid("batch size must be positive"));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let edm = EdmConfig::new(sigma_data);
    let mut model = MlpDenoiser::new(d, cfg.nlayers, cfg.hidden, edm, mean, &mut rng)?;
    let mut adam = Adam::<Be>::new(cfg.lr, 0.0);
    let mut ema = Ema::new(&model.be, &model.store, cfg.ema)?;
    let first = match resume {
        None => 0,
        Some(ck) => {
            for (i, (_, shape, v)) in ck.params.iter().enumerate() {
                *model.store.get_mut(crate::autodiff::ParamId(i)) =
                    Tensor::from_slice(&model.be, v, shape)?;
            }
            for (i, name) in model.store.names.iter().enumerate() {
                let key = format!("ema.{name}");
                if let Some((_, _, v)) = ck.extra.iter().find(|(n, _, _)| *n == key) {
                    ema.shadow[i] = model.be.upload(v)?;
                }
            }
            adam.set_state(&model.be, ck.adam_step, &ck.adam_m, &ck.adam_v)?;
            ck.epoch
        }
    };
    let settings = cfg.settings();
    // the state to resume from after `steps` steps: raw weights, EMA, Adam, step count, settings
    let state_of = |model: &MlpDenoiser, adam: &Adam<Be>, ema: &Ema<Be>, steps: usize| {
        let (adam_step, adam_m, adam_v) = adam.state(&model.be)?;
        let mut state = Checkpoint {
            epoch: steps,
            adam_step,
            adam_m,
            adam_v,
            settings: settings.clone(),
            ..Default::default()
        };
        for ((name, t), sh) in model
            .store
            .names
            .iter()
            .zip(&model.store.tensors)
            .zip(&ema.shadow)
        {
            state
                .params
                .push((name.clone(), t.shape.clone(), model.be.to_vec(&t.buf)?));
            state
                .extra
                .push((format!("ema.{name}"), t.shape.clone(), model.be.to_vec(sh)?));
        }
        state.extra.push((
            "data_stats".into(),
            vec![3],
            vec![n as f32, d as f32, sigma_data as f32],
        ));
        Ok::<_, Error>(state)
    };
    let start = std::time::Instant::now();
    let mut losses = Vec::with_capacity(cfg.steps.saturating_sub(first));
    let b = cfg.batch;
    let mut inp = vec![0f32; b * (d + NOISE_EMB)];
    let mut tgt = vec![0f32; b * d];
    for step in first..cfg.steps {
        let mut rng = step_rng(cfg.seed, step);
        for i in 0..b {
            let r = rng.random_range(0..n);
            let e0: f64 = StandardNormal.sample(&mut rng);
            let ln_s = edm.p_mean + edm.p_std * e0;
            let s = ln_s.exp();
            let p = Precond::new(s, sigma_data);
            let row = &mut inp[i * (d + NOISE_EMB)..(i + 1) * (d + NOISE_EMB)];
            for j in 0..d {
                let y = z[r * d + j] - model.mean[j];
                let e: f64 = StandardNormal.sample(&mut rng);
                let x = y + s * e;
                row[j] = (p.c_in * x) as f32;
                tgt[i * d + j] = ((y - p.c_skip * x) / p.c_out) as f32;
            }
            for (k, v) in noise_embedding(p.c_noise).iter().enumerate() {
                row[d + k] = *v as f32;
            }
        }
        let loss_v;
        let grads = {
            let mut t = Tape::new(&model.be, &model.store);
            let xi = t.constant(Tensor::from_slice(&model.be, &inp, &[b, d + NOISE_EMB])?);
            let yt = t.constant(Tensor::from_slice(&model.be, &tgt, &[b, d])?);
            let f = model.net.forward(&mut t, xi)?;
            let loss = t.mse(f, yt)?;
            loss_v = t.to_vec(loss)?[0] as f64;
            t.backward(loss)?
        };
        adam.step(&model.be, &mut model.store, &grads)?;
        grads.recycle(&model.be);
        ema.decay = cfg.ema.min((1.0 + step as f64) / (10.0 + step as f64));
        ema.update(&model.be, &model.store)?;
        if !loss_v.is_finite() {
            return Err(Error::invalid(format!(
                "training diverged at step {step} (loss {loss_v})"
            )));
        }
        losses.push(loss_v);
        on_step(step, loss_v);
        let done = step + 1;
        if every > 0 && done.is_multiple_of(every) && done < cfg.steps {
            on_checkpoint(&state_of(&model, &adam, &ema, done)?, &losses)?;
        }
    }
    let state = state_of(&model, &adam, &ema, first.max(cfg.steps))?;
    ema.copy_to(&model.be, &mut model.store)?;
    Ok((
        model,
        TrainReport {
            losses,
            seconds: start.elapsed().as_secs_f64(),
        },
        state,
    ))
}
