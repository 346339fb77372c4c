//! `train-twin`: cryoTWIN's isometric autoencoder with a trainable GMM prior (Yamazaki et al. 2023, Eq. 3),
//! on train-vae's data pipeline, decoder and tape.
//!
//! One step on a batch of m images (poses known, as train-vae):
//! 1. The encoder gives two heads, z (m, d) and the responsibility logits w (m, C); γ = softmax(w).
//! 2. The decoder is evaluated at z + ε, ε ~ U[−T/2, T/2]^d drawn per image and dimension (training only),
//!    on the rotated masked lattice; times the CTF.
//! 3. Distortion: `Σ_p (X_p − X̃_p)² √(s_p² + t_p²)` over the masked lattice (s, t in pixels; the DC term
//!    weighs 0), mean over the batch.
//! 4. Prior: the running sufficient statistics are blended with the batch's, `R = (1 − η)·R_old + η·B(z, γ)`
//!    (the old part constant), and give the diagonal mixture ψ ([`super::prior`]).
//! 5. Rate: `−log Q_ψ(z)` with Q the mixture's mass in the box of side T around z ([`super::rate`]), mean
//!    over the batch. Its gradient reaches z directly and through ψ, and w through ψ; it is computed on the
//!    host in f64 and enters the tape as the linear term `Σ z ⊙ G_z + Σ w ⊙ G_w` (G constant), whose
//!    gradient is exactly β times the rate's.
//! 6. Loss = distortion + β·rate; one RAdam step (θ, φ) on the loss divided by the number of lattice points
//!    P (a constant factor: the same minimiser, but RAdam's first steps, plain momentum steps whose size
//!    scales with the loss, stay as small as train-vae's on its per-pixel mean); R ← the blended statistics.
//!
//! The prior starts after one encoder pass over the data: μ from k-means (k-means++ seeding) of the
//! latents, every σ² the latents' variance per dimension, π uniform, the statistics scaled to one batch.
//!
//! Checkpoints: `weights.N.safetensors` (parameters, RAdam state, the run's settings), `gmm.N.npz` (π, μ and
//! the full covariances of the current ψ, and the running statistics `stat_n`, `stat_s1`, `stat_s2` in f64, so
//! that `--load` resumes exactly), `z.N.pkl` ((n, d) f32, one pickle, as cryoDRGN's `analyze` reads it),
//! `gamma.N.pkl` ((n, C) f32), `config.json`; `loss.txt` and `loss.png` every epoch.

use super::full::{mc_rate_grad, FullStats};
use super::gmm::Gmm;
use super::prior::GmmStats;
use super::rate::DiagGmm;
use crate::analysis::kmeans::kmeans;
use crate::analysis::plot::{line_plot, LineOptions, PlotStyle, Series};
use crate::autodiff::{ParamStore, Tape, Tensor, Var};
use crate::backend::{Backend, UnaryOp};
use crate::io::array::{ArrayData, NdArray};
use crate::io::atomic::write_bytes_atomic;
use crate::io::pkl::{write_pkls, PyValue};
use crate::model::{parse_activation, Decoder, EncodeMode, Encoder};
use crate::nn::{PeKind, RAdam};
use crate::train::checkpoint::{Setting, Settings};
use crate::train::dataset::{prefetch, Batch};
use crate::train::{
    build_model, check_resume, checkpoint_of, epoch_seed, eval_z, open_run, output_name,
    parse_domain, restore, write_record, RunData, TrainConfig,
};
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// cryoTWIN's settings (the paper's C, T, β and the prior update's η, ε); `config.json`'s `twin`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TwinParams {
    /// Number of GMM components C.
    pub n_comp: usize,
    /// Side T of the uniform latent noise and of the rate's box.
    pub noise_width: f64,
    /// Rate weight β.
    pub beta: f64,
    /// η of the running statistics.
    pub gmm_momentum: f64,
    /// Variance floor ε of the components.
    pub gmm_eps: f64,
    /// `diag` (exact rate) or `full` covariances (Monte Carlo rate).
    #[serde(default = "diag")]
    pub gmm_cov: String,
    /// Box samples S of the full prior's Monte Carlo rate per step.
    #[serde(default = "rate_mc")]
    pub rate_mc: usize,
}

fn diag() -> String {
    "diag".into()
}

fn rate_mc() -> usize {
    16
}

impl Default for TwinParams {
    fn default() -> Self {
        Self {
            n_comp: 100,
            noise_width: 3.0,
            beta: 0.125,
            gmm_momentum: 0.01,
            gmm_eps: 1e-3,
            gmm_cov: diag(),
            rate_mc: rate_mc(),
        }
    }
}

impl TwinParams {
    /// Visit the settings a checkpoint records (see [`Settings::each_setting`]).
    pub fn each_setting(
        &mut self,
        f: &mut dyn FnMut(&'static str, &'static str, &mut dyn Setting) -> Result<()>,
    ) -> Result<()> {
        f("n_comp", "--n-comp", &mut self.n_comp)?;
        f("noise_width", "--noise-width", &mut self.noise_width)?;
        f("twin_beta", "--beta", &mut self.beta)?;
        f("gmm_momentum", "--gmm-momentum", &mut self.gmm_momentum)?;
        f("gmm_eps", "--gmm-eps", &mut self.gmm_eps)?;
        f("gmm_cov", "--gmm-cov", &mut self.gmm_cov)?;
        f("rate_mc", "--rate-mc", &mut self.rate_mc)?;
        Ok(())
    }

    /// Whether the prior has full covariances (`--gmm-cov full`).
    pub fn full(&self) -> bool {
        self.gmm_cov == "full"
    }

    fn check(&self) -> Result<()> {
        let pos = |v: f64| v > 0.0 && v.is_finite();
        let ok = self.n_comp > 0
            && pos(self.noise_width)
            && self.beta >= 0.0
            && self.beta.is_finite()
            && self.gmm_momentum > 0.0
            && self.gmm_momentum <= 1.0
            && pos(self.gmm_eps)
            && self.rate_mc > 0
            && matches!(self.gmm_cov.as_str(), "diag" | "full");
        if !ok {
            return Err(Error::invalid(format!(
                "train-twin needs --n-comp ≥ 1, --noise-width > 0, --beta ≥ 0, --gmm-momentum in (0, 1], --gmm-eps > 0, \
                 --gmm-cov diag or full and --rate-mc ≥ 1; got {} / {} / {} / {} / {} / {} / {}",
                self.n_comp, self.noise_width, self.beta, self.gmm_momentum, self.gmm_eps, self.gmm_cov, self.rate_mc
            )));
        }
        Ok(())
    }
}

/// One epoch's means over the images.
#[derive(Clone, Debug, PartialEq)]
pub struct TwinEpoch {
    pub epoch: usize,
    /// Ramp-weighted squared error (per image, summed over the masked lattice).
    pub distortion: f64,
    /// `−log Q(z)` (nats per image).
    pub rate: f64,
    /// distortion + β·rate.
    pub total: f64,
    /// RMS spread of the latents about their mean at the end of the epoch (the noise width T is the scale
    /// it should exceed).
    pub z_rms: f64,
    pub seconds: f64,
}

/// A trained twin model.
pub struct TwinTrained<B: Backend> {
    pub be: B,
    pub store: ParamStore<B>,
    pub decoder: Decoder,
    pub encoder: Encoder,
    /// The prior's running statistics after the last step.
    pub stats: Prior,
    pub history: Vec<TwinEpoch>,
}

/// `gmm.N.npz` beside `weights.N.safetensors` (`weights.safetensors` → `gmm.npz`).
pub fn gmm_beside(weights: &Path) -> PathBuf {
    let name = weights
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("weights.safetensors");
    let tag = name
        .strip_prefix("weights")
        .and_then(|r| r.strip_suffix(".safetensors"))
        .unwrap_or("");
    weights.with_file_name(format!("gmm{tag}.npz"))
}

/// The trainable prior's running statistics: diagonal (exact rate) or full covariances (Monte Carlo rate).
#[derive(Clone, Debug, PartialEq)]
pub enum Prior {
    Diag(GmmStats),
    Full(FullStats),
}

/// A prior's mixture, for evaluating the rate.
pub enum Mixture {
    Diag(DiagGmm),
    Full(Gmm),
}

impl Mixture {
    /// `−log Q(z)` for a box of side `t`; the full mixture's Monte Carlo estimate uses the offsets `offs`
    /// (S, d).
    pub fn rate(&self, z: &[f64], t: f64, offs: &[f64]) -> f64 {
        match self {
            Mixture::Diag(g) => g.rate_grad(z, t).rate,
            Mixture::Full(g) => mc_rate_grad(g, z, t, offs).rate,
        }
    }
}

/// `s` box offsets ε ~ U[−t/2, t/2]^d (S, d) from `rng`.
pub fn box_offsets(rng: &mut StdRng, s: usize, d: usize, t: f64) -> Vec<f64> {
    (0..s * d)
        .map(|_| rng.random_range(-t / 2.0..t / 2.0))
        .collect()
}

impl Prior {
    /// Latent dimension d.
    pub fn d(&self) -> usize {
        match self {
            Prior::Diag(s) => s.d,
            Prior::Full(s) => s.d,
        }
    }

    /// Number of components C.
    pub fn n_comp(&self) -> usize {
        match self {
            Prior::Diag(s) => s.n.len(),
            Prior::Full(s) => s.n.len(),
        }
    }

    /// The mixture of these statistics with variance floor `eps`.
    pub fn mixture(&self, eps: f64) -> Result<Mixture> {
        Ok(match self {
            Prior::Diag(s) => Mixture::Diag(s.mixture(eps)?),
            Prior::Full(s) => Mixture::Full(s.mixture(eps)?),
        })
    }

    /// The mixture as a full-covariance [`Gmm`] (what `gmm.N.npz` holds).
    fn gmm(&self, eps: f64) -> Result<Gmm> {
        match self.mixture(eps)? {
            Mixture::Full(g) => Ok(g),
            Mixture::Diag(mix) => {
                let (c, d) = (mix.n_comp(), mix.d);
                let mut cov = vec![0.0; c * d * d];
                for k in 0..c {
                    for j in 0..d {
                        cov[k * d * d + j * d + j] = (2.0 * mix.log_sigma[k * d + j]).exp();
                    }
                }
                Gmm::new(
                    d,
                    mix.log_pi.iter().map(|v| v.exp()).collect(),
                    mix.mu.clone(),
                    cov,
                )
            }
        }
    }

    /// Write `gmm.N.npz`: the mixture (`pi`, `mu`, `cov`, f64) and the running statistics (`stat_n`,
    /// `stat_s1`, `stat_s2`: (C, d) for a diagonal prior, (C, d, d) for a full one), atomically.
    pub fn write(&self, path: &Path, eps: f64) -> Result<()> {
        let g = self.gmm(eps)?;
        let (c, d) = (g.n_comp(), g.d);
        let arr = |shape: Vec<usize>, v: &[f64]| NdArray::new(shape, ArrayData::F64(v.to_vec()));
        let (n, s1, s2, s2_shape) = match self {
            Prior::Diag(s) => (&s.n, &s.s1, &s.s2, vec![c, d]),
            Prior::Full(s) => (&s.n, &s.s1, &s.s2, vec![c, d, d]),
        };
        crate::io::npy::write_npz(
            path,
            &[
                ("pi".into(), arr(vec![c], &g.pi)?),
                ("mu".into(), arr(vec![c, d], &g.mu)?),
                ("cov".into(), arr(vec![c, d, d], &g.cov)?),
                ("stat_n".into(), arr(vec![c], n)?),
                ("stat_s1".into(), arr(vec![c, d], s1)?),
                ("stat_s2".into(), arr(s2_shape, s2)?),
            ],
        )
    }

    /// The running statistics saved in a `gmm.N.npz` for a (C, d) prior, diagonal or `full`.
    pub fn read(path: &Path, c: usize, d: usize, full: bool) -> Result<Prior> {
        let arrays = crate::io::npy::read_npz(path)?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f64>> {
            let a = arrays
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a)
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!("no array `{name}`: not a gmm.N.npz written by train-twin, which resuming and evaluating a twin model need"),
                    )
                })?;
            if a.shape != shape {
                return Err(Error::format(
                    path,
                    format!(
                        "`{name}` has shape {:?}, the model needs {shape:?}",
                        a.shape
                    ),
                ));
            }
            Ok(a.to_f64())
        };
        let (n, s1) = (get("stat_n", &[c])?, get("stat_s1", &[c, d])?);
        Ok(if full {
            Prior::Full(FullStats {
                d,
                n,
                s1,
                s2: get("stat_s2", &[c, d, d])?,
            })
        } else {
            Prior::Diag(GmmStats {
                d,
                n,
                s1,
                s2: get("stat_s2", &[c, d])?,
            })
        })
    }

    /// The prior's initial statistics from latents z (n, d): k-means (k-means++ seeding, `seed`) for the
    /// means, the latents' variance per dimension for every component (a diagonal covariance, also for a
    /// full prior), uniform weights; scaled to `m` samples.
    pub fn init(
        z: &[f32],
        n: usize,
        d: usize,
        c: usize,
        m: usize,
        seed: u64,
        full: bool,
    ) -> Result<Prior> {
        if c > n {
            return Err(Error::invalid(format!(
                "--n-comp {c} is more than the {n} particles"
            )));
        }
        let km = kmeans(z, n, d, c, 20, seed)?;
        let mean: Vec<f64> = (0..d)
            .map(|j| (0..n).map(|i| z[i * d + j] as f64).sum::<f64>() / n as f64)
            .collect();
        let var: Vec<f64> = (0..d)
            .map(|j| {
                (0..n)
                    .map(|i| (z[i * d + j] as f64 - mean[j]).powi(2))
                    .sum::<f64>()
                    / n as f64
            })
            .collect();
        let nc = m as f64 / c as f64;
        let mu = |k: usize, j: usize| km.centers[k * d + j];
        let n_v = vec![nc; c];
        let s1: Vec<f64> = (0..c * d).map(|i| nc * km.centers[i]).collect();
        Ok(if full {
            let mut s2 = vec![0.0; c * d * d];
            for k in 0..c {
                for a in 0..d {
                    for b in 0..d {
                        let v = if a == b { var[a] } else { 0.0 };
                        s2[(k * d + a) * d + b] = nc * (mu(k, a) * mu(k, b) + v);
                    }
                }
            }
            Prior::Full(FullStats { d, n: n_v, s1, s2 })
        } else {
            let s2: Vec<f64> = (0..c * d)
                .map(|i| nc * (mu(i / d, i % d).powi(2) + var[i % d]))
                .collect();
            Prior::Diag(GmmStats { d, n: n_v, s1, s2 })
        })
    }
}

/// Row-wise softmax of logits (m, c) in f64.
pub(crate) fn softmax_rows(w: &[f32], c: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(w.len());
    for row in w.chunks(c) {
        let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - mx).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

/// The rate part of a step on the host: the mean rate over the batch and the gradients of β·(mean rate)
/// with respect to z (m, d) and the logits w (m, C), through the blended prior; also the blended
/// statistics (the new running statistics).
pub struct RatePart {
    pub rate: f64,
    pub gz: Vec<f64>,
    pub gw: Vec<f64>,
    pub blended: Prior,
}

/// Sum `b` into `a`.
fn acc(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

/// [`RatePart`] of latents z (m, d) and logits w (m, C) against the running statistics `running`; a full
/// prior draws its Monte Carlo box offsets (`tp.rate_mc` per step, shared by the batch) from `rng`.
pub fn rate_part(
    z: &[f64],
    w: &[f32],
    running: &Prior,
    tp: &TwinParams,
    rng: &mut StdRng,
) -> Result<RatePart> {
    let (d, c) = (running.d(), running.n_comp());
    let m = z.len() / d;
    let gamma = softmax_rows(w, c);
    let (eta, t) = (tp.gmm_momentum, tp.noise_width);
    let mut rate = 0.0;
    let mut dz = vec![0.0; m * d];
    let (sg, blended) = match running {
        Prior::Diag(run) => {
            let blended = run.blend(&GmmStats::from_batch(z, &gamma, d)?, eta);
            let mix = blended.mixture(tp.gmm_eps)?;
            let (mut dmu, mut dls, mut dlp) = (vec![0.0; c * d], vec![0.0; c * d], vec![0.0; c]);
            for i in 0..m {
                let g = mix.rate_grad(&z[i * d..(i + 1) * d], t);
                rate += g.rate;
                dz[i * d..(i + 1) * d].copy_from_slice(&g.dz);
                acc(&mut dmu, &g.dmu);
                acc(&mut dls, &g.dlog_sigma);
                acc(&mut dlp, &g.dlog_pi);
            }
            let sg = blended.backward(z, &gamma, eta, tp.gmm_eps, &dlp, &dmu, &dls);
            (sg, Prior::Diag(blended))
        }
        Prior::Full(run) => {
            let blended = run.blend(&FullStats::from_batch(z, &gamma, d)?, eta);
            let mix = blended.mixture(tp.gmm_eps)?;
            let offs = box_offsets(rng, tp.rate_mc, d, t);
            let (mut dmu, mut dcov, mut dlp) =
                (vec![0.0; c * d], vec![0.0; c * d * d], vec![0.0; c]);
            for i in 0..m {
                let g = mc_rate_grad(&mix, &z[i * d..(i + 1) * d], t, &offs);
                rate += g.rate;
                dz[i * d..(i + 1) * d].copy_from_slice(&g.dz);
                acc(&mut dmu, &g.dmu);
                acc(&mut dcov, &g.dcov);
                acc(&mut dlp, &g.dlog_pi);
            }
            let sg = blended.backward(z, &gamma, eta, &dlp, &dmu, &dcov);
            (sg, Prior::Full(blended))
        }
    };
    let scale = tp.beta / m as f64;
    let gz: Vec<f64> = dz
        .iter()
        .zip(&sg.dz)
        .map(|(a, b)| scale * (a + b))
        .collect();
    // softmax backward per row: ∂/∂w_ic = γ_ic (g_ic − Σ_k γ_ik g_ik)
    let mut gw = vec![0.0; m * c];
    for i in 0..m {
        let (gr, dg) = (&gamma[i * c..(i + 1) * c], &sg.dgamma[i * c..(i + 1) * c]);
        let dot: f64 = gr.iter().zip(dg).map(|(a, b)| a * b).sum();
        for k in 0..c {
            gw[i * c + k] = scale * gr[k] * (dg[k] - dot);
        }
    }
    Ok(RatePart {
        rate: rate / m as f64,
        gz,
        gw,
        blended,
    })
}

/// The ramp weights √(s² + t²) (s, t in pixels) of the masked lattice coordinates (P, 3), in [−½, ½].
pub fn ramp_weights(coords: &[f32], d: usize) -> Vec<f32> {
    coords
        .chunks(3)
        .map(|c| (d as f32) * (c[0] * c[0] + c[1] * c[1]).sqrt())
        .collect()
}

/// Train a twin model as `cfg` (with `cfg.twin` set) on the CPU backend.
pub fn train_twin_cpu(
    cfg: &TrainConfig,
    progress: bool,
) -> Result<TwinTrained<crate::backend::cpu::CpuBackend<f32>>> {
    let be = crate::backend::cpu::CpuBackend::<f32>::new().with_bf16_gemm(cfg.amp);
    if progress {
        eprintln!(
            "precision: {}",
            crate::train::precision_label(
                cfg.amp,
                crate::backend::cpu::amx::engine().filter(|_| be.bf16_gemm())
            )
        );
    }
    rayon::scope(|_| train_twin(be, cfg, progress))
}

/// Train a twin model as `cfg` (with `cfg.twin` set) on any f32 backend; `progress` shows a bar and
/// per-epoch lines.
pub fn train_twin<B: Backend<Elem = f32>>(
    be: B,
    cfg: &TrainConfig,
    progress: bool,
) -> Result<TwinTrained<B>> {
    let tp = cfg
        .twin
        .clone()
        .ok_or_else(|| Error::invalid("train_twin: the configuration has no twin settings"))?;
    tp.check()?;
    let zdim = cfg
        .zdim
        .filter(|&z| z > 0)
        .ok_or_else(|| Error::invalid("train-twin needs --zdim ≥ 1"))?;
    if cfg.batch_size == 0 || cfg.checkpoint == 0 {
        return Err(Error::invalid(
            "--batch-size and --checkpoint must be at least 1",
        ));
    }
    if cfg.tilt.is_some() {
        return Err(Error::invalid("train-twin does not take tilt pairs"));
    }
    let pe: PeKind = cfg.pe_type.parse()?;
    let domain = parse_domain(&cfg.domain)?;
    let act = parse_activation(&cfg.activation)?;
    let encode_mode: EncodeMode = cfg.encode_mode.parse()?;
    if encode_mode == EncodeMode::Tilt {
        return Err(Error::invalid(
            "train-twin does not take --encode-mode tilt",
        ));
    }
    if let Some(path) = &cfg.load {
        check_resume(cfg, path, progress)?;
    }

    let RunData {
        maker,
        n,
        d,
        norm,
        coords,
        in_dim,
    } = open_run(cfg)?;
    if tp.n_comp > n {
        return Err(Error::invalid(format!(
            "--n-comp {} is more than the {n} particles",
            tp.n_comp
        )));
    }

    let (mut store, encoder, mut decoder, prefix) =
        build_model(&be, cfg, d, in_dim, encode_mode, domain, pe, act)?;
    let encoder = encoder.ok_or_else(|| Error::invalid("train-twin: no encoder"))?;
    let rf_name = format!("{prefix}rand_freqs");
    let mut opt = RAdam::<B>::new(cfg.lr, cfg.wd);
    let c = tp.n_comp;
    let (start, mut stats) = match &cfg.load {
        Some(path) => {
            let e = restore(&be, &mut store, &mut decoder, &mut opt, &rf_name, path)?;
            let gpath = gmm_beside(path);
            (e + 1, Prior::read(&gpath, c, zdim, tp.full())?)
        }
        None => {
            let (z, _) = eval_z(&be, &store, &encoder, &maker, n)?;
            (
                0,
                Prior::init(&z, n, zdim, c, cfg.batch_size, cfg.seed, tp.full())?,
            )
        }
    };
    let settings = cfg.settings();
    std::fs::create_dir_all(&cfg.outdir).map_err(|err| Error::Io {
        path: cfg.outdir.clone(),
        err,
    })?;
    let p = maker.mask.len();
    let ramp = ramp_weights(&coords, d);
    let mut history = read_loss_table(&cfg.outdir.join("loss.txt"), start);

    let save = |tag: &str,
                epoch: usize,
                store: &ParamStore<B>,
                opt: &RAdam<B>,
                stats: &Prior|
     -> Result<f64> {
        let name = |stem: &str, ext: &str| output_name(&cfg.outdir, stem, tag, ext);
        let (z, w) = eval_z(&be, store, &encoder, &maker, n)?;
        let z_rms = rms_spread(&z, zdim);
        let gamma: Vec<f32> = softmax_rows(&w, c).iter().map(|&v| v as f32).collect();
        let arr = |v: Vec<f32>, k: usize| -> Result<PyValue> {
            Ok(PyValue::Array(NdArray::new(vec![n, k], ArrayData::F32(v))?))
        };
        write_pkls(name("z", "pkl"), &[arr(z, zdim)?])?;
        write_pkls(name("gamma", "pkl"), &[arr(gamma, c)?])?;
        stats.write(&name("gmm", "npz"), tp.gmm_eps)?;
        let mut ck = checkpoint_of(&be, store, &decoder, opt, &rf_name, epoch)?;
        ck.settings = settings.clone();
        ck.save(&name("weights", "safetensors"))?;
        write_record(cfg, d, n, norm, epoch)?;
        Ok(z_rms)
    };

    for epoch in start..cfg.num_epochs {
        let t0 = std::time::Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(cfg.seed, epoch, 1)));
        let mut noise_rng = StdRng::seed_from_u64(epoch_seed(cfg.seed, epoch, 2));
        let rx = prefetch(maker.clone(), order, cfg.batch_size);
        let pb = progress.then(|| {
            crate::cli::progress::bar(n as u64, &format!("epoch {}/{}", epoch + 1, cfg.num_epochs))
        });
        let (mut s_dist, mut s_rate) = (0.0, 0.0);
        for batch in rx {
            let batch = batch?;
            let nb = batch.idx.len();
            let (dist, rate) = twin_step(
                &be,
                &mut store,
                &mut opt,
                &batch,
                &decoder,
                &encoder,
                &coords,
                &ramp,
                p,
                &tp,
                &mut stats,
                &mut noise_rng,
            )?;
            s_dist += dist * nb as f64;
            s_rate += rate * nb as f64;
            if let Some(pb) = &pb {
                pb.inc(nb as u64);
            }
        }
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        let seconds = t0.elapsed().as_secs_f64();
        let (distortion, rate) = (s_dist / n as f64, s_rate / n as f64);
        // numbered by the 1-based epoch, as train-vae's (cryoDRGN 4.3's numbering)
        let z_rms = if (epoch + 1).is_multiple_of(cfg.checkpoint) || epoch + 1 == cfg.num_epochs {
            save(&(epoch + 1).to_string(), epoch, &store, &opt, &stats)?
        } else {
            f64::NAN
        };
        let st = TwinEpoch {
            epoch,
            distortion,
            rate,
            total: distortion + tp.beta * rate,
            z_rms,
            seconds,
        };
        if progress {
            eprintln!(
                "# =====> Epoch: {} distortion = {:.4}, rate = {:.4}, total = {:.4}; z RMS spread {:.3} (T = {}); {:.2} s",
                epoch + 1,
                st.distortion,
                st.rate,
                st.total,
                st.z_rms,
                tp.noise_width,
                st.seconds
            );
        }
        history.push(st);
        write_loss_table(&cfg.outdir, &history, tp.beta)?;
    }
    if let Some(last) = history.last() {
        save("", last.epoch, &store, &opt, &stats)?;
    }
    Ok(TwinTrained {
        be,
        store,
        decoder,
        encoder,
        stats,
        history,
    })
}

/// RMS distance of latents (n, d) from their mean.
fn rms_spread(z: &[f32], d: usize) -> f64 {
    let n = z.len() / d;
    let mut ss = 0.0;
    for j in 0..d {
        let m = (0..n).map(|i| z[i * d + j] as f64).sum::<f64>() / n as f64;
        ss += (0..n)
            .map(|i| (z[i * d + j] as f64 - m).powi(2))
            .sum::<f64>();
    }
    (ss / n as f64).sqrt()
}

/// One RAdam step of the twin loss; returns (distortion, rate), means over the batch.
#[allow(clippy::too_many_arguments)]
fn twin_step<B: Backend<Elem = f32>>(
    be: &B,
    store: &mut ParamStore<B>,
    opt: &mut RAdam<B>,
    batch: &Batch,
    decoder: &Decoder,
    encoder: &Encoder,
    coords: &[f32],
    ramp: &[f32],
    p: usize,
    tp: &TwinParams,
    stats: &mut Prior,
    rng: &mut StdRng,
) -> Result<(f64, f64)> {
    let nb = batch.idx.len();
    let zdim = encoder.zdim;
    let mut t = Tape::new(be, store);
    let (dist, z, w) = twin_forward(&mut t, batch, decoder, encoder, coords, ramp, p, tp, rng)?;
    let zv: Vec<f64> = t.to_vec(z)?.iter().map(|&v| v as f64).collect();
    let wv = t.to_vec(w)?;
    let rp = rate_part(&zv, &wv, stats, tp, rng)?;
    // The optimizer sees (distortion + β·rate)/P: the same minimiser, and RAdam's first steps (plain
    // momentum, not scale-free) as small as with train-vae's per-pixel mean loss.
    let inv_p = 1.0 / p as f64;
    let gz: Vec<f32> = rp.gz.iter().map(|&v| (v * inv_p) as f32).collect();
    let gw: Vec<f32> = rp.gw.iter().map(|&v| (v * inv_p) as f32).collect();
    let gz = t.constant(Tensor::from_slice(be, &gz, &[nb, zdim])?);
    let gw = t.constant(Tensor::from_slice(be, &gw, &[nb, tp.n_comp])?);
    let lz = t.mul(z, gz)?;
    let lw = t.mul(w, gw)?;
    let lz = t.sum_all(lz, 1.0)?;
    let lw = t.sum_all(lw, 1.0)?;
    let lr = t.add(lz, lw)?;
    let dist_p = t.affine(dist, inv_p, 0.0)?;
    let loss = t.add(dist_p, lr)?;
    let dist_v = t.to_vec(dist)?[0] as f64;
    let grads = t.backward(loss)?;
    drop(t);
    opt.step(be, store, &grads)?;
    grads.recycle(be);
    *stats = rp.blended;
    Ok((dist_v, rp.rate))
}

/// Record the distortion of one batch on `t`: (distortion, z, w).
#[allow(clippy::too_many_arguments)]
pub(crate) fn twin_forward<B: Backend<Elem = f32>>(
    t: &mut Tape<'_, B>,
    batch: &Batch,
    decoder: &Decoder,
    encoder: &Encoder,
    coords: &[f32],
    ramp: &[f32],
    p: usize,
    tp: &TwinParams,
    rng: &mut StdRng,
) -> Result<(Var, Var, Var)> {
    let be = t.backend().clone();
    let nb = batch.idx.len();
    let x = batch
        .enc
        .as_ref()
        .ok_or_else(|| Error::invalid("encoder input missing"))?;
    let q = x.len() / nb;
    let xv = t.constant(Tensor::from_slice(&be, x, &[nb, q])?);
    let (z, w) = encoder.forward(t, xv, None)?;
    let half = tp.noise_width as f32 * 0.5;
    let eps: Vec<f32> = (0..nb * encoder.zdim)
        .map(|_| rng.random_range(-half..half))
        .collect();
    let eps = t.constant(Tensor::from_slice(&be, &eps, &[nb, encoder.zdim])?);
    let zn = t.add(z, eps)?;
    let coords = t.constant(Tensor::from_slice(&be, coords, &[p, 3])?);
    let rot = t.constant(Tensor::from_slice(&be, &batch.rot, &[nb, 3, 3])?);
    let y = t.constant(Tensor::from_slice(&be, &batch.y, &[nb, p])?);
    let mut yr = decoder.forward(t, coords, rot, Some(zn))?;
    if let Some(c) = &batch.ctf {
        let c = t.constant(Tensor::from_slice(&be, c, &[nb, p])?);
        yr = t.mul(yr, c)?;
    }
    let diff = t.sub(yr, y)?;
    let sq = t.unary(diff, UnaryOp::Square)?;
    let wts: Vec<f32> = ramp.repeat(nb);
    let wts = t.constant(Tensor::from_slice(&be, &wts, &[nb, p])?);
    let wsq = t.mul(sq, wts)?;
    let dist = t.sum_all(wsq, 1.0 / nb as f64)?;
    Ok((dist, z, w))
}

/// The rows of an earlier run's `loss.txt` before epoch `start` (a resumed run keeps them).
fn read_loss_table(path: &Path, start: usize) -> Vec<TwinEpoch> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let v: Vec<f64> = l
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(f64::NAN))
                .collect();
            (v.len() == 6).then(|| TwinEpoch {
                epoch: v[0] as usize - 1,
                distortion: v[1],
                rate: v[2],
                total: v[3],
                z_rms: v[4],
                seconds: v[5],
            })
        })
        .filter(|e| e.epoch < start)
        .collect()
}

/// `loss.txt` (one row per epoch) and `loss.png` (distortion and β·rate against the epoch).
fn write_loss_table(outdir: &Path, history: &[TwinEpoch], beta: f64) -> Result<()> {
    let mut s = String::from("# epoch distortion rate total z_rms seconds\n");
    for e in history {
        s.push_str(&format!(
            "{} {:.6} {:.6} {:.6} {:.4} {:.2}\n",
            e.epoch + 1,
            e.distortion,
            e.rate,
            e.total,
            e.z_rms,
            e.seconds
        ));
    }
    write_bytes_atomic(outdir.join("loss.txt"), s.as_bytes())?;
    let x: Vec<f64> = history.iter().map(|e| (e.epoch + 1) as f64).collect();
    let dist: Vec<f64> = history.iter().map(|e| e.distortion).collect();
    let rate: Vec<f64> = history.iter().map(|e| beta * e.rate).collect();
    let total: Vec<f64> = history.iter().map(|e| e.total).collect();
    line_plot(
        outdir.join("loss.png"),
        &[
            Series {
                label: "total",
                x: &x,
                y: &total,
            },
            Series {
                label: "distortion",
                x: &x,
                y: &dist,
            },
            Series {
                label: "β·rate",
                x: &x,
                y: &rate,
            },
        ],
        &PlotStyle {
            title: "train-twin loss".into(),
            x_label: "epoch".into(),
            y_label: "loss per image".into(),
            ..PlotStyle::default()
        },
        &LineOptions::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmm_file_sits_beside_the_weights() {
        assert_eq!(
            gmm_beside(Path::new("/o/weights.12.safetensors")),
            Path::new("/o/gmm.12.npz")
        );
        assert_eq!(
            gmm_beside(Path::new("/o/weights.safetensors")),
            Path::new("/o/gmm.npz")
        );
    }

    /// The host-side gradients of β·mean rate (direct and through the blended prior, and through the
    /// softmax to the logits) against central differences of the same function in f64, for the diagonal
    /// prior (exact rate) and the full one (Monte Carlo rate with the same box offsets).
    #[test]
    fn rate_part_gradients_match_finite_differences() {
        let (m, d, c) = (3, 2, 4);
        for cov in ["diag", "full"] {
            let tp = TwinParams {
                n_comp: c,
                noise_width: 1.5,
                beta: 0.7,
                gmm_momentum: 0.3,
                gmm_eps: 1e-2,
                gmm_cov: cov.into(),
                rate_mc: 8,
            };
            let mut rng = StdRng::seed_from_u64(5);
            let z: Vec<f64> = (0..m * d).map(|_| rng.random_range(-2.0..2.0)).collect();
            let w: Vec<f32> = (0..m * c).map(|_| rng.random_range(-1.0..1.0)).collect();
            let zs: Vec<f32> = (0..40).map(|_| rng.random_range(-2.0..2.0)).collect();
            let running = Prior::init(&zs, 20, d, c, 8, 1, tp.full()).unwrap();
            let rng0 = StdRng::seed_from_u64(0);
            let rp = rate_part(&z, &w, &running, &tp, &mut rng0.clone()).unwrap();
            assert!(matches!(
                (&rp.blended, tp.full()),
                (Prior::Full(_), true) | (Prior::Diag(_), false)
            ));
            let f = |z: &[f64], w: &[f32]| {
                tp.beta
                    * rate_part(z, w, &running, &tp, &mut rng0.clone())
                        .unwrap()
                        .rate
            };
            let h = 1e-5;
            for k in 0..z.len() {
                let (mut a, mut b) = (z.clone(), z.clone());
                a[k] += h;
                b[k] -= h;
                let fd = (f(&a, &w) - f(&b, &w)) / (2.0 * h);
                assert!(
                    (fd - rp.gz[k]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{cov} z[{k}]: fd {fd} vs {}",
                    rp.gz[k]
                );
            }
            // w is f32 in the tape: larger steps, looser tolerance.
            let hw = 1e-3f32;
            for k in 0..w.len() {
                let (mut a, mut b) = (w.clone(), w.clone());
                a[k] += hw;
                b[k] -= hw;
                let fd = (f(&z, &a) - f(&z, &b)) / (2.0 * hw as f64);
                assert!(
                    (fd - rp.gw[k]).abs() < 1e-4 * (1.0 + fd.abs()),
                    "{cov} w[{k}]: fd {fd} vs {}",
                    rp.gw[k]
                );
            }
            assert!(
                rp.gw.iter().any(|v| v.abs() > 1e-6),
                "{cov}: w gets no gradient"
            );
        }
    }

    #[test]
    fn ramp_weight_is_the_radius_in_pixels() {
        let w = ramp_weights(&[0.0, 0.0, 0.0, 0.25, 0.0, 0.0, -0.125, 0.125, 0.3], 32);
        assert_eq!(w[0], 0.0);
        assert!((w[1] - 8.0).abs() < 1e-6);
        assert!((w[2] - 32.0 * (2.0f32 * 0.015625).sqrt()).abs() < 1e-5);
    }

    #[test]
    fn initial_prior_has_kmeans_means_and_the_latent_variance() {
        let z: Vec<f32> = [0.0f32, 0.1, -0.1, 10.0, 10.1, 9.9].to_vec();
        let Prior::Diag(s) = Prior::init(&z, 6, 1, 2, 8, 0, false).unwrap() else {
            panic!("a diagonal prior")
        };
        let mix = s.mixture(0.0).unwrap();
        let mut mus = mix.mu.clone();
        mus.sort_by(f64::total_cmp);
        assert!(
            (mus[0] - 0.0).abs() < 1e-6 && (mus[1] - 10.0).abs() < 1e-6,
            "{mus:?}"
        );
        let var = z.iter().map(|&v| (v as f64 - 5.0).powi(2)).sum::<f64>() / 6.0;
        for k in 0..2 {
            assert!(((2.0 * mix.log_sigma[k]).exp() - var).abs() < 1e-6 * var);
            assert!((mix.log_pi[k].exp() - 0.5).abs() < 1e-12);
        }
        assert!((s.n.iter().sum::<f64>() - 8.0).abs() < 1e-12);
    }
}
