//! Training with known poses: `train-nn` (a homogeneous decoder) and `train-vae` (cryoDRGN's
//! `HetOnlyVAE`), on the CPU backend in f32.
//!
//! | module | what |
//! |---|---|
//! | [`dataset`] | preprocessing as the reference's `ImageDataset`, batch assembly, prefetch thread |
//! | [`checkpoint`] | `weights.N.safetensors` (parameters + Adam state) |
//!
//! One step: data translated by the pose's shift (Hartley phase shift), restricted to the
//! circular mask of radius D/2 (P pixels); the decoder evaluated on the masked lattice rotated
//! by each image's R (one fused op), multiplied by the CTF; loss = MSE over (B, P)
//! (+ β·KL/P for the VAE, or γ·(β − KL)²/P with `--beta-control`); Adam (torch's, L2 `--wd`).
//!
//! Determinism: the particle order of epoch e and the VAE's ε draws come from RNGs seeded by
//! (seed, e) only, and the checkpoint stores the parameters and the Adam state bit for bit, so
//! resuming from `weights.k.safetensors` reproduces an uninterrupted run exactly (CPU, same
//! thread count).
//!
//! Resuming: each checkpoint records the settings that determine the arithmetic
//! ([`TrainConfig::each_setting`]: seed, batch size, optimizer, model sizes, positional
//! encoding, preprocessing, precision). A run with `load` must have the same values (else an
//! error naming the checkpoint, the setting and both values); the commands fill in the ones not
//! given on the command line from the checkpoint first ([`adopt_settings`]). A checkpoint
//! without recorded settings (written before they were) is resumed with the settings as given
//! and a printed warning; the commands then need an explicit `--seed`, as their default seed
//! is drawn at random. `--load` at or past the last epoch (`-n`) is an error.

pub mod checkpoint;
pub mod dataset;

use crate::autodiff::{ParamStore, Tape, Tensor};
use crate::backend::cpu::{amx, CpuBackend};
use crate::backend::{Backend, Domain};
use crate::fourier::lattice::Lattice;
use crate::fourier::window::Norm;
use crate::io::array::{ArrayData, NdArray};
use crate::io::atomic::write_bytes_atomic;
use crate::io::pkl::{write_pkls, PyValue};
use crate::meta::{load_indices, CtfParams, Poses};
use crate::model::vae::{gen_loss, reparameterize, vae_loss, KlWeight};
use crate::model::{parse_activation, Decoder, DecoderConfig, EncodeMode, Encoder};
use crate::nn::{Adam, Optimizer, PeKind};
use crate::simulate::dataset::xrot;
use crate::{Error, Result};
use checkpoint::Checkpoint;
pub use checkpoint::Settings;
use dataset::{prefetch, Batch, BatchMaker, ImageDataset};
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every hyperparameter and input of a training run; written to `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub particles: PathBuf,
    pub poses: PathBuf,
    pub ctf: Option<PathBuf>,
    pub outdir: PathBuf,
    pub ind: Option<PathBuf>,
    pub datadir: Option<PathBuf>,
    /// None: `train-nn` (homogeneous); Some(z): `train-vae`.
    pub zdim: Option<usize>,
    pub num_epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub wd: f64,
    /// KL weight (default 1/zdim).
    pub beta: Option<f64>,
    pub beta_control: Option<f64>,
    pub enc_layers: usize,
    pub enc_dim: usize,
    pub encode_mode: String,
    /// Encoder mask radius in pixels (default D/2; −1: the whole (D+1)² image).
    pub enc_mask: Option<i64>,
    pub dec_layers: usize,
    pub dec_dim: usize,
    pub pe_type: String,
    pub pe_dim: Option<usize>,
    pub feat_sigma: f64,
    pub domain: String,
    pub activation: String,
    pub invert_data: bool,
    pub window: bool,
    pub window_r: f32,
    /// Data normalization (mean, std); estimated when None.
    pub norm: Option<[f32; 2]>,
    pub lazy: bool,
    pub seed: u64,
    /// Save every this many epochs (and the last).
    pub checkpoint: usize,
    pub load: Option<PathBuf>,
    /// Tilt-series pair images (same order as the particles).
    pub tilt: Option<PathBuf>,
    /// Tilt angle (degrees) about x between the pair.
    pub tilt_deg: f64,
    /// Mixed precision (the reference's default `--amp`; `--no-amp` turns it off): the
    /// coordinate networks' GEMMs in bf16 with f32 sums on AMX tiles or AVX-512 BF16 vectors
    /// where the CPU has them (f32 elsewhere). Configs written before this field existed were f32.
    #[serde(default)]
    pub amp: bool,
    /// cryoTWIN (`train-twin`): its rate–distortion and GMM-prior settings; None for train-nn/train-vae.
    /// Its presence is what makes config.json's model a twin model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<crate::twin::train::TwinParams>,
    /// Learned poses (`train-vae --pose-source encoder`, issue 24): a pose head on the encoder, the decoder
    /// on the lattice rotated by the predicted pose, PoseVAE's intervention loss. None: the poses file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_pose: Option<crate::disentangle::intervention::LearnedPose>,
    /// SlowVAE (`train-vae --pairs`, issue 24): the temporal Laplace prior on pairs of images. None: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<crate::disentangle::slow::SlowParams>,
    /// The known-pose variant of PoseVAE's intervention loss (`train-vae --intervention-weight w` with a
    /// poses file): its weight. None: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_intervention: Option<f64>,
    /// Pose refinement (`--refine-poses`, cryoDRGN's `--do-pose-sgd`, issue 26): the rotations of the
    /// poses file become a per-image table refined by SparseAdam with the model. None: poses fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine_poses: Option<RefinePoses>,
    /// An autodecoder (`abinit`'s conformation table, `train-dec`): the decoder takes z (`zdim`) from a
    /// per-image table, and there is no encoder.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub autodecoder: bool,
    /// The seed of the data's shuffling (cryoDRGN 4's `--shuffle-seed`); None: derived from `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_seed: Option<u64>,
}

/// Settings of pose refinement (`--refine-poses`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefinePoses {
    /// SO(3) embedding (`--emb-type`, default quat).
    pub emb: crate::pose::table::PoseEmb,
    /// The table's learning rate (`--pose-lr`, default 1e-4).
    pub lr: f64,
    /// Epochs with fixed poses before refinement starts (`--pretrain`, default 5).
    pub pretrain: usize,
    /// `--pose-lr-end`: the table's learning rate falls from `lr` towards this along a half cosine
    /// over the refining epochs, constant within an epoch: epoch e uses
    /// end + (lr − end)·(1 + cos πx)/2 with x = (e − pretrain)/(num_epochs − pretrain). None:
    /// constant `lr`, as the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_end: Option<f64>,
}

impl RefinePoses {
    /// Errors on a learning rate that is not finite and > 0, or an end value that is not finite
    /// and ≥ 0.
    pub fn check(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(format!(
                "--pose-lr must be finite and > 0, got {}",
                self.lr
            )));
        }
        match self.lr_end {
            Some(e) if !(e >= 0.0 && e.is_finite()) => Err(Error::invalid(format!(
                "--pose-lr-end must be finite and ≥ 0, got {e}"
            ))),
            _ => Ok(()),
        }
    }

    /// The table's learning rate in 0-based epoch `epoch` of `num_epochs` (refining from `pretrain`).
    pub fn lr_at(&self, epoch: usize, num_epochs: usize) -> f64 {
        match self.lr_end {
            None => self.lr,
            Some(end) => {
                let span = num_epochs.saturating_sub(self.pretrain).max(1) as f64;
                let x = (epoch.saturating_sub(self.pretrain) as f64 / span).min(1.0);
                end + 0.5 * (self.lr - end) * (1.0 + (std::f64::consts::PI * x).cos())
            }
        }
    }
}

impl TrainConfig {
    /// Width of the encoder's second head: C for a twin, zdim (log σ²) plus the pose head's width for a VAE.
    pub fn aux_width(&self) -> Result<usize> {
        let z = self.zdim.unwrap_or(0);
        Ok(match (&self.twin, &self.learned_pose) {
            (Some(tw), _) => tw.n_comp,
            (None, Some(lp)) => z + lp.pose_kind()?.width(),
            (None, None) => z,
        })
    }
}

impl Settings for TrainConfig {
    /// Visit every setting that changes the run's arithmetic, as (its `config.json` name, its
    /// command-line flag, its value): those a resumed run must share with the run that wrote
    /// its checkpoint. Paths, `--lazy`, `--checkpoint` and `-n` are not among them (they do not
    /// change the numbers; the data's size is checked against the parameters' shapes).
    fn each_setting(
        &mut self,
        f: &mut dyn FnMut(&'static str, &'static str, &mut dyn checkpoint::Setting) -> Result<()>,
    ) -> Result<()> {
        f("seed", "--seed", &mut self.seed)?;
        f("batch_size", "--batch-size", &mut self.batch_size)?;
        f("lr", "--lr", &mut self.lr)?;
        f("wd", "--wd", &mut self.wd)?;
        f("zdim", "--zdim", &mut self.zdim)?;
        f("beta", "--beta", &mut self.beta)?;
        f("beta_control", "--beta-control", &mut self.beta_control)?;
        f("enc_layers", "--enc-layers", &mut self.enc_layers)?;
        f("enc_dim", "--enc-dim", &mut self.enc_dim)?;
        f("encode_mode", "--encode-mode", &mut self.encode_mode)?;
        f("enc_mask", "--enc-mask", &mut self.enc_mask)?;
        f(
            "dec_layers",
            "--dec-layers (train-nn: --layers)",
            &mut self.dec_layers,
        )?;
        f("dec_dim", "--dec-dim (train-nn: --dim)", &mut self.dec_dim)?;
        f("pe_type", "--pe-type", &mut self.pe_type)?;
        f("pe_dim", "--pe-dim", &mut self.pe_dim)?;
        f("feat_sigma", "--feat-sigma", &mut self.feat_sigma)?;
        f("domain", "--domain", &mut self.domain)?;
        f("activation", "--activation", &mut self.activation)?;
        f("invert_data", "--uninvert-data", &mut self.invert_data)?;
        f("window", "--no-window", &mut self.window)?;
        f("window_r", "--window-r", &mut self.window_r)?;
        f("norm", "--norm", &mut self.norm)?;
        f("amp", "--no-amp", &mut self.amp)?;
        f("tilt_deg", "--tilt-deg", &mut self.tilt_deg)?;
        f("shuffle_seed", "--shuffle-seed", &mut self.shuffle_seed)?;
        if let Some(tw) = &mut self.twin {
            tw.each_setting(f)?;
        }
        if let Some(lp) = &mut self.learned_pose {
            lp.each_setting(f)?;
        }
        if let Some(sl) = &mut self.slow {
            sl.each_setting(f)?;
        }
        if let Some(w) = &mut self.known_intervention {
            f("known_intervention_weight", "--intervention-weight", w)?;
        }
        Ok(())
    }
}

/// Before resuming from `cfg.load`: take every setting of [`TrainConfig::each_setting`] that
/// the command line did not give (`given` holds the `config.json` names of those it did) from
/// the checkpoint; a given one that differs from the checkpoint's is an error naming the
/// checkpoint, the setting and both values. A checkpoint that records no settings (written
/// before they were recorded) needs `seed` given (the default seed is drawn at random); the
/// others are then used as given ([`check_resume`] prints a warning). Nothing to do without
/// `cfg.load`. Returns whether the checkpoint records its settings (`false` without `cfg.load`).
pub fn adopt_settings(cfg: &mut TrainConfig, given: &[&str]) -> Result<bool> {
    let Some(path) = cfg.load.clone() else {
        return Ok(false);
    };
    let head = checkpoint::read_header(&path)?;
    check_model_kind(cfg, &path, &head)?;
    if head.settings.is_empty() {
        if !given.contains(&"seed") {
            let hint = recorded_seed(&path)
                .map(|s| format!(" (config.json beside it says seed {s})"))
                .unwrap_or_default();
            return Err(Error::format(
                &path,
                format!(
                    "the checkpoint records no run settings (written by an older cryofield), so the seed of its run is unknown; \
                     give that run's --seed{hint} and its other settings to resume it"
                ),
            ));
        }
        // check_resume prints the warning
        return Ok(false);
    }
    checkpoint::reconcile_all(cfg, &path, &head.settings, |key| given.contains(&key))?;
    Ok(true)
}

/// A twin checkpoint (it records `n_comp`) resumes only with train-twin, and the others only without.
fn check_model_kind(cfg: &TrainConfig, path: &Path, head: &checkpoint::Header) -> Result<()> {
    let twin_ck = head.settings.contains_key("n_comp");
    if twin_ck != cfg.twin.is_some() {
        let (ck, cmd) = if twin_ck {
            ("a train-twin", "train-twin")
        } else {
            ("not a train-twin", "the command that wrote it")
        };
        return Err(Error::format(
            path,
            format!("{ck} checkpoint: resume it with {cmd}"),
        ));
    }
    let learned_ck = head.settings.contains_key("pose_head");
    if !head.settings.is_empty() && learned_ck != cfg.learned_pose.is_some() {
        return Err(Error::format(
            path,
            if learned_ck {
                "the checkpoint's run learned its poses: resume it with --pose-source encoder"
            } else {
                "the checkpoint's run used known poses: resume it without --pose-source encoder"
            },
        ));
    }
    let slow_ck = head.settings.contains_key("slow_gamma");
    if !head.settings.is_empty() && slow_ck != cfg.slow.is_some() {
        return Err(Error::format(
            path,
            if slow_ck {
                "the checkpoint's run trained SlowVAE pairs: resume it with --pairs"
            } else {
                "the checkpoint's run had no SlowVAE pairs: resume it without --pairs"
            },
        ));
    }
    Ok(())
}

/// The seed in the `config.json` beside the checkpoint at `path`, if there is one to read.
fn recorded_seed(path: &Path) -> Option<u64> {
    let json = std::fs::read(path.parent()?.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    v.get("config")?.get("seed")?.as_u64()
}

/// Check a run that resumes from the checkpoint at `path` against it: its settings must be the
/// checkpoint's ([`adopt_settings`] with everything given), and the checkpoint's epoch must
/// leave epochs to train before `num_epochs`. Returns the checkpoint's epoch.
pub fn check_resume(cfg: &TrainConfig, path: &Path, progress: bool) -> Result<usize> {
    let head = checkpoint::read_header(path)?;
    check_model_kind(cfg, path, &head)?;
    if head.epoch + 1 >= cfg.num_epochs {
        return Err(Error::format(
            path,
            format!(
                "the checkpoint has {done} epochs done and -n {n} asks for {n} epochs in all (counted from the start of the run): \
                 nothing left to train; give -n greater than {done}",
                done = head.epoch + 1,
                n = cfg.num_epochs,
            ),
        ));
    }
    if head.settings.is_empty() {
        if progress {
            eprintln!(
                "warning: {} records no run settings (written by an older cryofield): resuming with seed {} and the other settings as given; \
                 unless they are the original run's, the result differs from an uninterrupted run",
                path.display(),
                cfg.seed
            );
        }
    } else {
        checkpoint::reconcile_all(&mut cfg.clone(), path, &head.settings, |_| true)?;
    }
    Ok(head.epoch)
}

/// What a run recorded beyond its configuration (written with it in `config.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub config: TrainConfig,
    /// Image size D and particle count N after `--ind`.
    pub d: usize,
    pub n: usize,
    /// The normalization used, (mean, std).
    pub norm: [f32; 2],
    /// Last completed epoch (0-based).
    pub epoch: usize,
    pub cryofield_version: String,
}

/// Per-epoch summary.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean over images of the total loss, the reconstruction loss and the KL.
    pub loss: f64,
    pub gen: f64,
    pub kld: f64,
    /// Mean over images of PoseVAE's intervention loss (Eq. 2, unweighted; 0 when off).
    pub intervention: f64,
    /// Mean over images of SlowVAE's weighted transition term γ·term/P (0 when off).
    pub slow: f64,
    pub seconds: f64,
}

/// A trained model with its store (for evaluation after `train`).
pub struct Trained<B: Backend = CpuBackend<f32>> {
    pub be: B,
    pub store: ParamStore<B>,
    pub decoder: Decoder,
    pub encoder: Option<Encoder>,
    pub norm: Norm,
    pub history: Vec<EpochStats>,
}

/// The data side of a training run, as `--particles`, `--ind`, `--ctf`, `--tilt`, the
/// preprocessing flags and `--enc-mask` give it (poses are the caller's).
pub(crate) struct Inputs {
    /// Particles in the source before `--ind`.
    pub n_all: usize,
    pub ind: Option<Vec<usize>>,
    pub images: ImageDataset,
    pub ctf: Option<CtfParams>,
    pub tilt: Option<ImageDataset>,
    pub lattice: Lattice,
    /// Decoder mask (P lattice indices, radius D/2) and its coordinates (P, 3) flat.
    pub mask: Vec<usize>,
    pub coords: Vec<f32>,
    /// Encoder input pixels (heterogeneous only).
    pub enc_mask: Option<Vec<usize>>,
    /// The tilt-pair rotation xrot(`--tilt-deg`), row-major.
    pub tilt_rot: [f32; 9],
}

/// Open the particles, CTF and tilt pairs of `cfg`, checking counts and sizes against each other.
pub(crate) fn open_inputs(cfg: &TrainConfig) -> Result<Inputs> {
    let n_all =
        crate::io::source::ParticleSource::open(&cfg.particles, cfg.datadir.as_deref())?.len();
    let ind = cfg
        .ind
        .as_ref()
        .map(|p| load_indices(p, n_all))
        .transpose()?;
    let norm_given = cfg.norm.map(|[mean, std]| Norm { mean, std });
    let window_r = cfg.window.then_some(cfg.window_r);
    let images = ImageDataset::open(
        &cfg.particles,
        cfg.datadir.as_deref(),
        ind.as_deref(),
        window_r,
        cfg.invert_data,
        norm_given,
        cfg.lazy,
    )?;
    let (n, d) = (images.n, images.d);
    let ctf = match &cfg.ctf {
        Some(p) => {
            let c = CtfParams::load(p)?;
            check_count(p, "CTF rows", c.len(), n_all)?;
            let c = match &ind {
                Some(ind) => c.select(ind),
                None => c,
            };
            if let Some(row) = c.rows.first() {
                if row[0] as usize != d {
                    return Err(Error::format(
                        p,
                        format!("CTF image size {} but particles are {d}×{d}", row[0]),
                    ));
                }
            }
            Some(c)
        }
        None => None,
    };
    let tilt_data = match &cfg.tilt {
        Some(p) => {
            let t = ImageDataset::open(
                p,
                cfg.datadir.as_deref(),
                ind.as_deref(),
                window_r,
                cfg.invert_data,
                Some(images.norm),
                cfg.lazy,
            )?;
            check_count(p, "tilt images", t.n, n)?;
            Some(t)
        }
        None => None,
    };
    let lattice = Lattice::for_image(d, true)?;
    let mask_b = lattice.circular_mask((d / 2) as f32)?;
    let mask: Vec<usize> = (0..mask_b.len()).filter(|&i| mask_b[i]).collect();
    let coords: Vec<f32> = mask.iter().flat_map(|&i| lattice.coords()[i]).collect();
    let enc_mask = encoder_mask(cfg, &lattice, d)?;
    let m = xrot(cfg.tilt_deg);
    Ok(Inputs {
        n_all,
        ind,
        images,
        ctf,
        tilt: tilt_data,
        lattice,
        mask,
        coords,
        enc_mask,
        tilt_rot: std::array::from_fn(|i| m[i] as f32),
    })
}

/// The data side of a run with known poses, ready for training: the batch maker (images, poses after
/// `--ind`, CTF, tilt pairs, the decoder's mask and the encoder's), the particle count N and image size D,
/// the normalization, the masked lattice coordinates (P, 3) flat and the encoder's input width (0 without
/// an encoder).
pub(crate) struct RunData {
    pub maker: Arc<BatchMaker>,
    pub n: usize,
    pub d: usize,
    pub norm: Norm,
    pub coords: Vec<f32>,
    pub in_dim: usize,
}

/// [`open_inputs`] plus the poses file of `cfg`, checked against the particle count and selected by `--ind`.
pub(crate) fn open_run(cfg: &TrainConfig) -> Result<RunData> {
    let Inputs {
        n_all,
        ind,
        images: data,
        ctf,
        tilt: tilt_data,
        lattice,
        mask,
        coords,
        enc_mask,
        tilt_rot,
    } = open_inputs(cfg)?;
    let (n, d) = (data.n, data.d);
    let mut poses = Poses::load(&cfg.poses)?;
    check_count(&cfg.poses, "poses", poses.len(), n_all)?;
    if let Some(ind) = &ind {
        poses = poses.select(ind);
    }
    // `--encode-mode conv` reads the whole real-space image (the reference's `use_real`)
    let conv = cfg.zdim.is_some() && cfg.encode_mode == "conv";
    let (enc_mask, enc_real) = if conv {
        (None, Some(data.real_norm()?))
    } else {
        (enc_mask, None)
    };
    let in_dim = match conv {
        true => d * d,
        false => enc_mask.as_ref().map_or(0, Vec::len),
    };
    let norm = data.norm;
    let maker = Arc::new(BatchMaker {
        data,
        tilt_data,
        tilt_rot,
        poses,
        ctf,
        lattice,
        mask,
        enc_mask,
        enc_real,
    });
    Ok(RunData {
        maker,
        n,
        d,
        norm,
        coords,
        in_dim,
    })
}

/// What `--encode-mode conv` cannot be combined with: a CTF (its real-space input is not
/// phase-flipped; cryoDRGN refuses it too) and an encoder mask (it reads the whole image:
/// `--enc-mask -1` or none).
pub(crate) fn check_conv_inputs(cfg: &TrainConfig) -> Result<()> {
    if cfg.ctf.is_some() {
        return Err(Error::invalid(
            "--encode-mode conv reads real-space images, which the CTF does not phase-flip: \
             not with --ctf (cryoDRGN 4.3 refuses it too; phase-flip the particles first)",
        ));
    }
    match cfg.enc_mask {
        None | Some(-1) => Ok(()),
        Some(r) => Err(Error::invalid(format!(
            "--encode-mode conv reads the whole image: --enc-mask {r} does not apply (give -1 or nothing)"
        ))),
    }
}

/// Write the run's `config.json` ([`RunRecord`] at `epoch`) atomically into `cfg.outdir`.
pub(crate) fn write_record(
    cfg: &TrainConfig,
    d: usize,
    n: usize,
    norm: Norm,
    epoch: usize,
) -> Result<()> {
    write_json(
        &cfg.outdir.join("config.json"),
        &run_record(cfg, d, n, norm, epoch),
    )
}

/// The run record of `cfg` at `epoch` (image size, count and normalization of its data).
pub(crate) fn run_record(
    cfg: &TrainConfig,
    d: usize,
    n: usize,
    norm: Norm,
    epoch: usize,
) -> RunRecord {
    RunRecord {
        config: cfg.clone(),
        d,
        n,
        norm: [norm.mean, norm.std],
        epoch,
        cryofield_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Write `value` as pretty JSON to `path`, atomically.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(path, format!("cannot write JSON: {e}")))?;
    write_bytes_atomic(path, json.as_bytes())
}

/// The decoder domain of `--domain`.
pub(crate) fn parse_domain(s: &str) -> Result<Domain> {
    match s {
        "fourier" => Ok(Domain::Fourier),
        "hartley" => Ok(Domain::Hartley),
        s => Err(Error::invalid(format!(
            "unknown --domain `{s}` (fourier or hartley)"
        ))),
    }
}

pub(crate) fn epoch_seed(seed: u64, epoch: usize, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(stream)
}

pub(crate) fn check_count(path: &Path, what: &str, got: usize, n: usize) -> Result<()> {
    if got != n {
        return Err(Error::format(
            path,
            format!("{got} {what} but the particle stack has {n} images"),
        ));
    }
    Ok(())
}

/// The model `cfg` describes for D×D images whose encoder reads `enc_in_dim` values: a new parameter
/// store, the encoder (when `cfg.zdim` is set), the decoder and its parameter-name prefix. Parameters are
/// drawn from a generator seeded by `cfg.seed`, encoder first, so that a configuration always gives the
/// same initial model (a checkpoint load then replaces the values).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn build_model<B: Backend>(
    be: &B,
    cfg: &TrainConfig,
    d: usize,
    enc_in_dim: usize,
    encode_mode: EncodeMode,
    domain: Domain,
    pe: PeKind,
    act: crate::backend::Activation,
) -> Result<(ParamStore<B>, Option<Encoder>, Decoder, &'static str)> {
    let mut store = ParamStore::new();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let encoder = match cfg.zdim.filter(|_| !cfg.autodecoder) {
        Some(z) => Some(Encoder::new(
            be,
            &mut store,
            encode_mode,
            enc_in_dim,
            cfg.enc_layers,
            cfg.enc_dim,
            z,
            cfg.aux_width()?,
            act,
            &mut rng,
        )?),
        None => None,
    };
    let prefix = if cfg.zdim.is_some() { "decoder." } else { "" };
    let dcfg = DecoderConfig {
        d,
        layers: cfg.dec_layers,
        dim: cfg.dec_dim,
        domain,
        pe,
        pe_dim: cfg.pe_dim,
        feat_sigma: cfg.feat_sigma,
        activation: act,
        zdim: cfg.zdim.unwrap_or(0),
    };
    let decoder = Decoder::new(be, &mut store, prefix, &dcfg, &mut rng)?;
    Ok((store, encoder, decoder, prefix))
}

/// Run a training job as configured on the CPU backend; `progress` shows a progress bar and
/// per-epoch lines.
pub fn train(cfg: &TrainConfig, progress: bool) -> Result<Trained> {
    let be = CpuBackend::<f32>::new().with_bf16_gemm(cfg.amp);
    if progress {
        eprintln!(
            "precision: {}",
            precision_label(cfg.amp, amx::engine().filter(|_| be.bf16_gemm()))
        );
    }
    // On a worker of rayon's pool: each parallel primitive then runs on the calling worker
    // and the others, and the step continues on that worker when they finish, instead of a
    // blocked main thread woken after every primitive (one more thread than cores, and a
    // futex wake per call).
    rayon::scope(|_| train_with(be, cfg, progress))
}

/// What a run's `--amp` setting means on this machine, for the log: `engine` is the bf16
/// engine the backend will use, if any.
pub fn precision_label(amp: bool, engine: Option<amx::Engine>) -> String {
    match (amp, engine) {
        (_, Some(e)) => format!(
            "mixed: network GEMMs in bf16 with f32 sums on {} (--no-amp for f32)",
            e.name()
        ),
        (true, None) => {
            "f32 (mixed precision requested, but this CPU has neither AMX nor AVX-512 BF16)".into()
        }
        (false, None) => "f32 (--no-amp)".into(),
    }
}

/// [`train`] on any `f32` backend (the CPU reference or `--device cuda`).
pub fn train_with<B: Backend<Elem = f32>>(
    be: B,
    cfg: &TrainConfig,
    progress: bool,
) -> Result<Trained<B>> {
    if cfg.zdim == Some(0) {
        return Err(Error::invalid("--zdim must be at least 1, got 0"));
    }
    if cfg.batch_size == 0 || cfg.checkpoint == 0 {
        return Err(Error::invalid(
            "--batch-size and --checkpoint must be at least 1",
        ));
    }
    let pe: PeKind = cfg.pe_type.parse()?;
    let domain = parse_domain(&cfg.domain)?;
    let act = parse_activation(&cfg.activation)?;
    let encode_mode: EncodeMode = cfg.encode_mode.parse()?;
    if cfg.zdim.is_some() && encode_mode == EncodeMode::Conv {
        check_conv_inputs(cfg)?;
    }
    if cfg.zdim.is_some() && (encode_mode == EncodeMode::Tilt) != cfg.tilt.is_some() {
        return Err(Error::invalid(
            "--encode-mode tilt and --tilt go together (give both or neither)",
        ));
    }

    if let Some(path) = &cfg.load {
        check_resume(cfg, path, progress)?;
    }

    // ---- data ----
    let RunData {
        maker,
        n,
        d,
        norm,
        coords,
        in_dim,
    } = open_run(cfg)?;

    // ---- model ----
    let (mut store, encoder, mut decoder, prefix) =
        build_model(&be, cfg, d, in_dim, encode_mode, domain, pe, act)?;
    let rf_name = format!("{prefix}rand_freqs");
    let mut adam = Adam::<B>::new(cfg.lr, cfg.wd);
    let mut start = 0;
    if let Some(path) = &cfg.load {
        start = restore(&be, &mut store, &mut decoder, &mut adam, &rf_name, path)? + 1;
    }
    let settings = cfg.settings();

    std::fs::create_dir_all(&cfg.outdir).map_err(|err| Error::Io {
        path: cfg.outdir.clone(),
        err,
    })?;
    let kl = cfg.zdim.map(|z| {
        let beta = cfg.beta.unwrap_or(1.0 / z as f64);
        match cfg.beta_control {
            Some(gamma) => KlWeight::Control { beta, gamma },
            None => KlWeight::Beta(beta),
        }
    });
    let p = maker.mask.len();
    let coords_t = || Tensor::from_slice(&be, &coords, &[p, 3]);
    let pose_step = match &cfg.learned_pose {
        Some(lp) => {
            if cfg.zdim.is_none() || cfg.tilt.is_some() || cfg.twin.is_some() {
                return Err(Error::invalid(
                    "--pose-source encoder needs a VAE (--zdim) without tilt pairs",
                ));
            }
            if lp.intervention_weight > 0.0 && in_dim != p {
                return Err(Error::invalid(format!(
                    "--intervention-weight re-encodes decoded slices, so the encoder must read the decoder's {p} pixels \
                     (the default --enc-mask); it reads {in_dim}"
                )));
            }
            if !(lp.intervention_weight >= 0.0 && lp.intervention_weight.is_finite()) {
                return Err(Error::invalid(format!(
                    "--intervention-weight must be ≥ 0, got {}",
                    lp.intervention_weight
                )));
            }
            Some(PoseStep {
                kind: lp.pose_kind()?,
                // per pixel, as β: cryoDRGN's loss is the paper's summed loss divided by P
                weight: lp.intervention_weight / p as f64,
                coords: host_coords(&coords),
            })
        }
        None => None,
    };
    let known_iv = match cfg.known_intervention {
        Some(w) => {
            if cfg.zdim.is_none() || cfg.tilt.is_some() || cfg.twin.is_some() {
                return Err(Error::invalid(
                    "--intervention-weight needs a VAE (--zdim) without tilt pairs",
                ));
            }
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Error::invalid(format!(
                    "--intervention-weight must be ≥ 0, got {w}"
                )));
            }
            if w > 0.0 && in_dim != p {
                return Err(Error::invalid(format!(
                    "--intervention-weight re-encodes decoded slices, so the encoder must read the decoder's {p} pixels \
                     (the default --enc-mask); it reads {in_dim}"
                )));
            }
            w / p as f64
        }
        None => 0.0,
    };
    let slow_step = match &cfg.slow {
        Some(sl) => Some(open_slow(cfg, sl, n)?),
        None => None,
    };
    let mut refine = match &cfg.refine_poses {
        Some(rp) => {
            if cfg.tilt.is_some() || cfg.learned_pose.is_some() || cfg.twin.is_some() {
                return Err(Error::invalid(
                    "--refine-poses refines the poses file's rotations: not with tilt pairs, \
                     --pose-source encoder or train-twin",
                ));
            }
            rp.check()?;
            Some(RefineStep {
                table: crate::pose::table::PoseTable::new(&maker.poses.rots, rp.emb, rp.lr)?,
                coords: host_coords(&coords),
            })
        }
        None => None,
    };
    // 0-based epochs ≥ --pretrain refine (the reference: 1-based epoch > pretrain)
    let refining = |epoch: usize| {
        cfg.refine_poses
            .as_ref()
            .is_some_and(|rp| epoch >= rp.pretrain)
    };
    // images per epoch: every particle, or with pairs every image of a pair
    let n_epoch = slow_step.as_ref().map_or(n, |s| 2 * s.pairs.len());

    // Apix of reconstruct.*.mrc as the reference: the CTF's pixel size, else 1.
    let apix = maker
        .ctf
        .as_ref()
        .and_then(|c| c.rows.first())
        .map(|r| r[1])
        .unwrap_or(1.0);
    // Outputs of a checkpoint: `tag` = "N" (the 1-based epoch) → weights.N.safetensors and z.N.pkl (VAE) or
    // reconstruct.N.mrc (train-nn); "" → weights.safetensors, z.pkl, reconstruct.mrc.
    let save = |tag: &str,
                epoch: usize,
                store: &ParamStore<B>,
                adam: &Adam<B>,
                decoder: &Decoder|
     -> Result<()> {
        let name = |stem: &str, ext: &str| output_name(&cfg.outdir, stem, tag, ext);
        match &encoder {
            Some(enc) => {
                let (mu, aux) = eval_z(&be, store, enc, &maker, n)?;
                let logvar = match &pose_step {
                    Some(ps) => {
                        let (lv, pose) = split_pose_head(&aux, enc.zdim, ps.kind.width());
                        write_pose_pred(&name("pose_pred", "pkl"), &pose, n, ps.kind)?;
                        lv
                    }
                    None => aux,
                };
                write_z(&name("z", "pkl"), mu, logvar, n, enc.zdim)?;
            }
            None => {
                let vol = crate::model::decoder::eval_volume(&be, store, decoder, None, norm)?;
                crate::io::mrc::write_mrc(name("reconstruct", "mrc"), &vol, (d, d, d), apix, true)?;
            }
        }
        let mut ck = checkpoint_of(&be, store, decoder, adam, &rf_name, epoch)?;
        ck.settings = settings.clone();
        ck.save(&name("weights", "safetensors"))?;
        let record = run_record(cfg, d, n, norm, epoch);
        if crate::model::cryodrgn::exportable(cfg)
            && (tag.is_empty() || epoch + 1 == cfg.num_epochs)
        {
            // the last epoch also in cryoDRGN 4.3's files (`weights.N.pkl`, `weights.pkl`), for its
            // eval_vol / analyze / --load and for scripts written for it; earlier epochs only as
            // weights.N.safetensors, which our commands also find under the name weights.N.pkl
            // (model::load::own_files): one copy of each checkpoint on disk
            crate::model::cryodrgn::write_weights(&name("weights", "pkl"), &ck, cfg.lr, cfg.wd)?;
            crate::model::cryodrgn::write_config_yaml(&cfg.outdir.join("config.yaml"), &record)?;
        }
        write_json(&cfg.outdir.join("config.json"), &record)
    };
    let mut history = Vec::new();
    for epoch in start..cfg.num_epochs {
        let t0 = std::time::Instant::now();
        let mut shuffle_rng =
            StdRng::seed_from_u64(epoch_seed(cfg.shuffle_seed.unwrap_or(cfg.seed), epoch, 1));
        let order: Vec<usize> = match &slow_step {
            // whole pairs in shuffled order: with an even batch size every batch holds whole pairs
            Some(sl) => {
                let mut pairs = sl.pairs.clone();
                pairs.shuffle(&mut shuffle_rng);
                pairs.into_iter().flatten().collect()
            }
            None => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut shuffle_rng);
                order
            }
        };
        let mut eps_rng = StdRng::seed_from_u64(epoch_seed(cfg.seed, epoch, 2));
        if let (Some(r), Some(rp)) = (refine.as_mut(), cfg.refine_poses.as_ref()) {
            r.table.rows.lr = rp.lr_at(epoch, cfg.num_epochs);
        }
        let rx = prefetch(maker.clone(), order, cfg.batch_size);
        let pb = progress.then(|| {
            crate_progress(
                n_epoch as u64,
                &format!("epoch {}/{}", epoch + 1, cfg.num_epochs),
            )
        });
        let (mut sum_loss, mut sum_gen, mut sum_kld) = (0.0, 0.0, 0.0);
        let (mut sum_int, mut sum_slow) = (0.0, 0.0);
        for batch in rx {
            let batch = batch?;
            let nb = batch.idx.len();
            let StepValues {
                loss,
                gen,
                kld,
                intervention,
                slow,
            } = train_step(
                &be,
                &mut store,
                &mut adam,
                &batch,
                &decoder,
                encoder.as_ref(),
                kl,
                coords_t()?,
                p,
                &mut eps_rng,
                pose_step.as_ref(),
                slow_step.as_ref(),
                known_iv,
                refine.as_mut().filter(|_| refining(epoch)),
            )?;
            sum_loss += loss * nb as f64;
            sum_gen += gen * nb as f64;
            sum_kld += kld * nb as f64;
            sum_int += intervention * nb as f64;
            sum_slow += slow * nb as f64;
            if let Some(pb) = &pb {
                pb.inc(nb as u64);
            }
        }
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        let ne = n_epoch as f64;
        let st = EpochStats {
            epoch,
            loss: sum_loss / ne,
            gen: sum_gen / ne,
            kld: sum_kld / ne,
            intervention: sum_int / ne,
            slow: sum_slow / ne,
            seconds: t0.elapsed().as_secs_f64(),
        };
        {
            let mut extra = String::new();
            if pose_step.as_ref().is_some_and(|p| p.weight > 0.0) || known_iv > 0.0 {
                extra.push_str(&format!(", intervention = {:.6}", st.intervention));
            }
            if slow_step.is_some() {
                extra.push_str(&format!(", slow = {:.6}", st.slow));
            }
            let line = format!(
                "# =====> Epoch: {} Average gen loss = {:.6}, KLD = {:.4}{extra}, total loss = {:.6}; {:.2} s",
                epoch + 1, st.gen, st.kld, st.loss, st.seconds
            );
            if progress {
                eprintln!("{line}");
            }
            // run.log, appended to as the reference's log (its analyze plots the learning curve from it)
            append_run_log(&cfg.outdir, &line)?;
        }
        if pose_step.is_some() || slow_step.is_some() || known_iv > 0.0 {
            append_losses_csv(&cfg.outdir, &st, epoch == start)?;
        }
        history.push(st);
        // outputs numbered by the 1-based epoch, every --checkpoint epochs, as cryoDRGN 4.3's
        if (epoch + 1).is_multiple_of(cfg.checkpoint) {
            let tag = (epoch + 1).to_string();
            save(&tag, epoch, &store, &adam, &decoder)?;
            // pose.N.pkl at the checkpoints of refining epochs, as the reference
            if let Some(r) = refine.as_ref().filter(|_| refining(epoch)) {
                let path = output_name(&cfg.outdir, "pose", &tag, "pkl");
                save_refined(r, &maker.poses, &path)?;
            }
        }
    }
    if let Some(last) = history.last() {
        save("", last.epoch, &store, &adam, &decoder)?;
        if let Some(r) = refine.as_ref().filter(|_| refining(last.epoch)) {
            save_refined(r, &maker.poses, &cfg.outdir.join("pose.pkl"))?;
        }
    }
    Ok(Trained {
        be,
        store,
        decoder,
        encoder,
        norm,
        history,
    })
}

/// The masked lattice (P·3 flat) as points in f64, for [`Decoder::forward_posed`].
pub(crate) fn host_coords(coords: &[f32]) -> Vec<[f64; 3]> {
    coords
        .chunks(3)
        .map(|c| [c[0] as f64, c[1] as f64, c[2] as f64])
        .collect()
}

/// The refined rotations with the poses file's translations, as a pose .pkl.
fn save_refined(r: &RefineStep, given: &Poses, path: &Path) -> Result<()> {
    Poses {
        rots: r.table.rotations()?,
        trans: given.trans.clone(),
    }
    .save(path)
}

fn crate_progress(n: u64, what: &str) -> indicatif::ProgressBar {
    crate::cli::progress::bar(n, what)
}

/// Rows (zdim + k) of the encoder's second head split into log σ² (n, zdim) and pose parameters (n, k).
pub(crate) fn split_pose_head(aux: &[f32], zdim: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut lv = Vec::with_capacity(aux.len() / (zdim + k) * zdim);
    let mut pose = Vec::with_capacity(aux.len() / (zdim + k) * k);
    for row in aux.chunks(zdim + k) {
        lv.extend_from_slice(&row[..zdim]);
        pose.extend_from_slice(&row[zdim..]);
    }
    (lv, pose)
}

/// `pose_pred.N.pkl`: the predicted poses — in-plane angles ψ = atan2(b, a) (n,) f64, or SO(3) rotations
/// (n, 3, 3) f64 by Gram–Schmidt of the 6-D head (the rows of [`crate::model::pose::sixd`]).
fn write_pose_pred(
    path: &Path,
    pose: &[f32],
    n: usize,
    kind: crate::disentangle::intervention::PoseKind,
) -> Result<()> {
    use crate::disentangle::intervention::PoseKind;
    let arr = match kind {
        PoseKind::InPlane => NdArray::new(
            vec![n],
            ArrayData::F64(
                pose.chunks(2)
                    .map(|r| (r[1] as f64).atan2(r[0] as f64))
                    .collect(),
            ),
        )?,
        PoseKind::SixD => {
            // the head's own Gram–Schmidt (model::pose::sixd), in f64
            let a: Vec<f64> = pose.iter().map(|&v| v as f64).collect();
            let r = crate::model::pose::on_host(crate::model::pose::sixd, &a, 6)?;
            NdArray::new(vec![n, 3, 3], ArrayData::F64(r))?
        }
    };
    write_pkls(path, &[PyValue::Array(arr)])
}

/// `outdir/stem.tag.ext`, or `outdir/stem.ext` for the empty tag (the final outputs).
pub(crate) fn output_name(outdir: &Path, stem: &str, tag: &str, ext: &str) -> PathBuf {
    if tag.is_empty() {
        outdir.join(format!("{stem}.{ext}"))
    } else {
        outdir.join(format!("{stem}.{tag}.{ext}"))
    }
}

/// Append one line to the run's `run.log` (the reference's log file: one `# =====> Epoch: …` line per
/// epoch, which cryoDRGN's `analyze` reads for its learning curve).
fn append_run_log(outdir: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let path = outdir.join("run.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|err| Error::Io {
            path: path.clone(),
            err,
        })?;
    writeln!(f, "{line}").map_err(|err| Error::Io { path, err })
}

/// `z.N.pkl` as the reference writes it: z_mu then z_logvar, two (n, zdim) f32 pickles.
pub(crate) fn write_z(
    path: &Path,
    mu: Vec<f32>,
    logvar: Vec<f32>,
    n: usize,
    zdim: usize,
) -> Result<()> {
    let arr = |v: Vec<f32>| -> Result<PyValue> {
        Ok(PyValue::Array(NdArray::new(
            vec![n, zdim],
            ArrayData::F32(v),
        )?))
    };
    write_pkls(path, &[arr(mu)?, arr(logvar)?])
}

/// The checkpoint of a model at `epoch`: its parameters, the decoder's random positional-encoding
/// frequencies (saved as `rf_name`) and the optimizer's state.
pub(crate) fn checkpoint_of<B: Backend<Elem = f32>>(
    be: &B,
    store: &ParamStore<B>,
    decoder: &Decoder,
    adam: &impl Optimizer<B>,
    rf_name: &str,
    epoch: usize,
) -> Result<Checkpoint> {
    let (step, m, v) = adam.state(be)?;
    Ok(Checkpoint {
        epoch,
        params: store
            .names
            .iter()
            .zip(&store.tensors)
            .map(|(nm, t)| Ok((nm.clone(), t.shape.clone(), be.to_vec(&t.buf)?)))
            .collect::<Result<_>>()?,
        extra: decoder
            .rand_freqs
            .iter()
            .map(|rf| (rf_name.to_string(), vec![rf.len() / 3, 3], rf.clone()))
            .collect(),
        adam_step: step,
        adam_m: m,
        adam_v: v,
        settings: BTreeMap::new(),
    })
}

/// The lattice indices the encoder sees (`--enc-mask`: a circle of radius r, default D/2; −1:
/// the whole image); `None` without an encoder.
pub(crate) fn encoder_mask(
    cfg: &TrainConfig,
    lattice: &Lattice,
    d: usize,
) -> Result<Option<Vec<usize>>> {
    Ok(match (cfg.zdim, cfg.enc_mask) {
        (None, _) => None,
        (Some(_), Some(-1)) => Some((0..lattice.len()).collect()),
        (Some(_), r) => {
            let r = r.unwrap_or((d / 2) as i64);
            if r <= 0 || r as usize > d / 2 {
                return Err(Error::invalid(format!(
                    "--enc-mask must be in 1..={} or −1, got {r}",
                    d / 2
                )));
            }
            let m = lattice.circular_mask(r as f32)?;
            Some((0..m.len()).filter(|&i| m[i]).collect::<Vec<_>>())
        }
    })
}

/// Load the checkpoint at `path` into a model: its parameters and the decoder's random PE
/// frequencies (stored under `rf_name`). Returns the checkpoint (epoch, optimizer state).
pub(crate) fn load_weights<B: Backend<Elem = f32>>(
    be: &B,
    store: &mut ParamStore<B>,
    decoder: &mut Decoder,
    rf_name: &str,
    path: &Path,
) -> Result<Checkpoint> {
    let extra: Vec<String> = decoder
        .rand_freqs
        .iter()
        .map(|_| rf_name.to_string())
        .collect();
    let ck = if crate::io::torch::is_zip(path) {
        crate::model::cryodrgn::load_checkpoint(path, &store.named_shapes(), &extra)?
    } else {
        Checkpoint::load(path, &store.named_shapes(), &extra)?
    };
    apply_checkpoint(be, store, decoder, &ck)?;
    Ok(ck)
}

/// Put a checkpoint's parameters (in store order) and `gaussian` frequencies into the model.
pub(crate) fn apply_checkpoint<B: Backend<Elem = f32>>(
    be: &B,
    store: &mut ParamStore<B>,
    decoder: &mut Decoder,
    ck: &Checkpoint,
) -> Result<()> {
    for (id, (_, s, v)) in store.ids().collect::<Vec<_>>().into_iter().zip(&ck.params) {
        *store.get_mut(id) = Tensor::from_slice(be, v, s)?;
    }
    if let Some((_, _, rf)) = ck.extra.first() {
        decoder.set_rand_freqs(rf)?;
    }
    Ok(())
}

/// Restore a model from the checkpoint at `path` (the inverse of [`checkpoint_of`]); the
/// checkpoint's epoch.
pub(crate) fn restore<B: Backend<Elem = f32>>(
    be: &B,
    store: &mut ParamStore<B>,
    decoder: &mut Decoder,
    adam: &mut impl Optimizer<B>,
    rf_name: &str,
    path: &Path,
) -> Result<usize> {
    let ck = load_weights(be, store, decoder, rf_name, path)?;
    adam.set_state(be, ck.adam_step, &ck.adam_m, &ck.adam_v)?;
    Ok(ck.epoch)
}

/// One optimizer step on `batch`: the loss, its gradients and an Adam update of `store`.
/// Returns (loss, reconstruction loss, KL; 0 without an encoder).
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_step<B: Backend<Elem = f32>>(
    be: &B,
    store: &mut ParamStore<B>,
    adam: &mut Adam<B>,
    batch: &Batch,
    decoder: &Decoder,
    encoder: Option<&Encoder>,
    kl: Option<KlWeight>,
    coords: Tensor<B>,
    p: usize,
    rng: &mut StdRng,
    pose: Option<&PoseStep>,
    slow: Option<&SlowStep>,
    known_intervention: f64,
    refine: Option<&mut RefineStep>,
) -> Result<StepValues> {
    let mut t = Tape::new(be, store);
    let parts = step_loss(
        &mut t,
        batch,
        decoder,
        encoder,
        kl,
        coords,
        p,
        rng,
        pose,
        slow,
        known_intervention,
        refine.as_deref(),
    )?;
    let scalar = |t: &Tape<'_, B>, v: Option<crate::autodiff::Var>| -> Result<f64> {
        Ok(match v {
            Some(v) => t.to_vec(v)?[0] as f64,
            None => 0.0,
        })
    };
    let vals = StepValues {
        // the tape's loss carries SlowVAE's term as a linear surrogate: report its value instead
        loss: scalar(&t, Some(parts.loss))? + parts.slow_correction,
        gen: scalar(&t, Some(parts.gen))?,
        kld: scalar(&t, parts.kld)?,
        intervention: scalar(&t, parts.intervention)?,
        slow: parts.slow_value,
    };
    let l = parts.loss;
    let grads = t.backward(l)?;
    let table_grad = match parts.table_rows {
        Some(v) => Some(match grads.get(v) {
            Some(g) => be.to_vec(g)?,
            None => {
                return Err(Error::invalid(
                    "pose refinement: no gradient reached the pose table",
                ))
            }
        }),
        None => None,
    };
    drop(t);
    adam.step(be, store, &grads)?;
    if let (Some(r), Some(g)) = (refine, table_grad) {
        r.table.step(&batch.idx, &g)?;
    }
    grads.recycle(be);
    Ok(vals)
}

/// One training step's values, each a mean over the batch's images.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepValues {
    /// The total loss.
    pub loss: f64,
    /// Reconstruction loss.
    pub gen: f64,
    /// KL (0 without an encoder).
    pub kld: f64,
    /// PoseVAE's intervention loss, unweighted (0 when off).
    pub intervention: f64,
    /// SlowVAE's weighted transition term γ·Σ term/(B·P) (0 when off).
    pub slow: f64,
}

/// The loss of one step as recorded on the tape.
struct StepParts {
    loss: crate::autodiff::Var,
    gen: crate::autodiff::Var,
    kld: Option<crate::autodiff::Var>,
    intervention: Option<crate::autodiff::Var>,
    /// SlowVAE's term enters the tape as `Σ μ⊙G_μ + Σ log σ²⊙G_lv` (the right gradient, not the right
    /// value): the term's value, and what to add to the tape's loss value to report the true loss.
    slow_value: f64,
    slow_correction: f64,
    /// Pose refinement: the batch's rows of the pose table (B, width), an input of the tape.
    table_rows: Option<crate::autodiff::Var>,
}

/// Pose refinement in a training step: the table and the decoder's masked lattice on the host (for
/// [`Decoder::forward_posed`]).
pub struct RefineStep {
    pub table: crate::pose::table::PoseTable,
    pub coords: Vec<[f64; 3]>,
}

/// SlowVAE in a training run: its settings and the pairs (particle indices, after checks).
pub struct SlowStep {
    pub params: crate::disentangle::slow::SlowParams,
    pub pairs: Vec<[usize; 2]>,
}

/// Reads and checks `--pairs` for a run over `n` particles.
fn open_slow(
    cfg: &TrainConfig,
    sl: &crate::disentangle::slow::SlowParams,
    n: usize,
) -> Result<SlowStep> {
    sl.check()?;
    if cfg.zdim.is_none() || cfg.tilt.is_some() || cfg.twin.is_some() {
        return Err(Error::invalid(
            "--pairs (SlowVAE) needs a VAE (--zdim) without tilt pairs",
        ));
    }
    if cfg.ind.is_some() {
        return Err(Error::invalid(
            "--pairs indexes the whole particle stack; it cannot be combined with --ind",
        ));
    }
    if !cfg.batch_size.is_multiple_of(2) {
        return Err(Error::invalid(format!(
            "--pairs needs an even --batch-size (whole pairs per batch), got {}",
            cfg.batch_size
        )));
    }
    let v = crate::io::pkl::read_pkl(&sl.pairs)?;
    let a = v
        .as_array()
        .ok_or_else(|| Error::format(&sl.pairs, "not a numpy array (expected (P, 2) indices)"))?;
    if a.shape.len() != 2 || a.shape[1] != 2 {
        return Err(Error::format(
            &sl.pairs,
            format!("shape {:?}, expected (P, 2) particle index pairs", a.shape),
        ));
    }
    let flat = a
        .to_i64()
        .map_err(|e| Error::format(&sl.pairs, format!("pair indices must be integers: {e}")))?;
    let pairs = crate::disentangle::slow::check_pairs(&flat, n, &sl.pairs)?;
    Ok(SlowStep {
        params: sl.clone(),
        pairs,
    })
}

/// Appends one epoch's row to `losses.csv` in `outdir` (recon, KL, the intervention loss, SlowVAE's
/// term); `fresh` starts the file with its header (the first epoch of this process).
fn append_losses_csv(outdir: &Path, st: &EpochStats, fresh: bool) -> Result<()> {
    use std::io::Write;
    let path = outdir.join("losses.csv");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(!fresh)
        .write(true)
        .truncate(fresh)
        .open(&path)
        .map_err(|err| Error::Io {
            path: path.clone(),
            err,
        })?;
    let mut text = String::new();
    if fresh {
        text.push_str("epoch,loss,recon,kld,intervention,slow,seconds\n");
    }
    text.push_str(&format!(
        "{},{},{},{},{},{},{:.3}\n",
        st.epoch + 1,
        st.loss,
        st.gen,
        st.kld,
        st.intervention,
        st.slow,
        st.seconds
    ));
    f.write_all(text.as_bytes())
        .map_err(|err| Error::Io { path, err })
}

/// Record one training step's loss on `t`.
#[allow(clippy::too_many_arguments)]
fn step_loss<B: Backend<Elem = f32>>(
    t: &mut Tape<'_, B>,
    batch: &Batch,
    decoder: &Decoder,
    encoder: Option<&Encoder>,
    kl: Option<KlWeight>,
    coords: Tensor<B>,
    p: usize,
    eps_rng: &mut StdRng,
    pose: Option<&PoseStep>,
    slow: Option<&SlowStep>,
    known_intervention: f64,
    refine: Option<&RefineStep>,
) -> Result<StepParts> {
    let be = t.backend().clone();
    let nb = batch.idx.len();
    let coords = t.constant(coords);
    let rot = t.constant(Tensor::from_slice(&be, &batch.rot, &[nb, 3, 3])?);
    let y = t.constant(Tensor::from_slice(&be, &batch.y, &[nb, p])?);
    let ctf = match &batch.ctf {
        Some(c) => Some(t.constant(Tensor::from_slice(&be, c, &[nb, p])?)),
        None => None,
    };
    let mut pose_params = None;
    let (z, mu_lv) = match (encoder, &batch.enc) {
        (Some(enc), Some(x)) => {
            let q = x.len() / nb;
            let xv = t.constant(Tensor::from_slice(&be, x, &[nb, q])?);
            let xt = match &batch.tilt {
                Some((_, et, _)) => Some(t.constant(Tensor::from_slice(&be, et, &[nb, q])?)),
                None => None,
            };
            let (mu, aux) = enc.forward(t, xv, xt)?;
            let logvar = match pose {
                Some(ps) => {
                    pose_params = Some(t.slice(aux, enc.zdim, ps.kind.width())?);
                    t.slice(aux, 0, enc.zdim)?
                }
                None => aux,
            };
            let eps: Vec<f32> = (0..nb * enc.zdim)
                .map(|_| StandardNormal.sample(eps_rng))
                .collect();
            let eps = t.constant(Tensor::from_slice(&be, &eps, &[nb, enc.zdim])?);
            (
                Some(reparameterize(t, mu, logvar, eps)?),
                Some((mu, logvar)),
            )
        }
        _ => (None, None),
    };
    let mut table_rows = None;
    let yr = match (pose, pose_params, refine) {
        (Some(ps), Some(pp), _) => {
            let r = ps.kind.rotation(t, pp)?;
            decoder.forward_posed(t, &ps.coords, r, z)?
        }
        (_, _, Some(rs)) => {
            // the batch's rows of the pose table: an input whose gradient updates the table
            let w = rs.table.emb.width();
            let rows = t.input(Tensor::from_slice(
                &be,
                &rs.table.rows(&batch.idx),
                &[nb, w],
            )?);
            table_rows = Some(rows);
            let r = rs.table.emb.rotation(t, rows)?;
            decoder.forward_posed(t, &rs.coords, r, z)?
        }
        _ => decoder.forward(t, coords, rot, z)?,
    };
    let mut gen = gen_loss(t, yr, ctf, y)?;
    if let Some((yt, _, rt)) = &batch.tilt {
        // Tilt pairs: gen = ½·MSE(untilted) + ½·MSE(tilted), the tilted slice at tilt·R.
        let rt = t.constant(Tensor::from_slice(&be, rt, &[nb, 3, 3])?);
        let ytv = t.constant(Tensor::from_slice(&be, yt, &[nb, p])?);
        let yrt = decoder.forward(t, coords, rt, z)?;
        let gt = gen_loss(t, yrt, ctf, ytv)?;
        let s = t.add(gen, gt)?;
        gen = t.affine(s, 0.5, 0.0)?;
    }
    match (kl, mu_lv) {
        (Some(w), Some((mu, lv))) => {
            let parts = vae_loss(t, gen, mu, lv, w, p)?;
            let mut loss = parts.loss;
            let mut intervention = None;
            let (mut slow_value, mut slow_correction) = (0.0, 0.0);
            // the terms that read μ on the host: PoseVAE's intervention loss, its known-pose variant
            // (exclusive: with and without a pose head) and SlowVAE's
            let posevae = match (pose, pose_params, encoder) {
                (Some(ps), Some(pp), Some(enc)) if ps.weight > 0.0 => Some((ps, pp, enc)),
                _ => None,
            };
            let known = match (pose, encoder) {
                (None, Some(enc)) if known_intervention > 0.0 => Some(enc),
                _ => None,
            };
            let slowvae = slow.zip(encoder);
            // one device→host copy of μ (B, zdim) per step, shared by those terms (none when all are off)
            let mu_host = if posevae.is_some() || known.is_some() || slowvae.is_some() {
                t.to_vec(mu)?
            } else {
                Vec::new()
            };
            if let Some((ps, pp, enc)) = posevae {
                // PoseVAE: the first encoding (μ, pose) as given latents, poses permuted in the batch
                let p0 = t.to_vec(pp)?;
                let mut perm: Vec<u32> = (0..nb as u32).collect();
                perm.shuffle(eps_rng);
                let iv = crate::disentangle::intervention::intervention_loss(
                    t, enc, decoder, &ps.coords, &mu_host, &p0, &perm, ps.kind,
                )?;
                let wl = t.affine(iv.loss, ps.weight, 0.0)?;
                loss = t.add(loss, wl)?;
                intervention = Some(iv.loss);
            }
            if let Some(enc) = known {
                // the known-pose variant: z decoded at a permuted known rotation, re-encoded
                let mut perm: Vec<u32> = (0..nb as u32).collect();
                perm.shuffle(eps_rng);
                let iv = crate::disentangle::intervention::intervention_loss_known(
                    t, enc, decoder, coords, p, &mu_host, &batch.rot, &perm,
                )?;
                let wl = t.affine(iv, known_intervention, 0.0)?;
                loss = t.add(loss, wl)?;
                intervention = Some(iv);
            }
            if let Some((sl, enc)) = slowvae {
                // SlowVAE: rows 2j, 2j+1 of the batch are a pair; gradients from the host, in f64
                let (m, l) = (&mu_host, t.to_vec(lv)?);
                let (value, gm, gl) = crate::disentangle::slow::slow_batch(
                    m,
                    &l,
                    enc.zdim,
                    sl.params.rate,
                    sl.params.symmetric,
                )?;
                let scale = sl.params.gamma / (nb as f64 * p as f64);
                let gm: Vec<f32> = gm.iter().map(|g| (g * scale) as f32).collect();
                let gl: Vec<f32> = gl.iter().map(|g| (g * scale) as f32).collect();
                let surrogate: f64 = m
                    .iter()
                    .zip(&gm)
                    .chain(l.iter().zip(&gl))
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                slow_value = scale * value;
                slow_correction = slow_value - surrogate;
                let gmv = t.constant(Tensor::from_slice(&be, &gm, &[nb, enc.zdim])?);
                let glv = t.constant(Tensor::from_slice(&be, &gl, &[nb, enc.zdim])?);
                let a = t.mul(mu, gmv)?;
                let b = t.mul(lv, glv)?;
                let a = t.sum_all(a, 1.0)?;
                let b = t.sum_all(b, 1.0)?;
                let s = t.add(a, b)?;
                loss = t.add(loss, s)?;
            }
            Ok(StepParts {
                loss,
                gen: parts.gen,
                kld: parts.kld,
                intervention,
                slow_value,
                slow_correction,
                table_rows,
            })
        }
        _ => Ok(StepParts {
            loss: gen,
            gen,
            kld: None,
            intervention: None,
            slow_value: 0.0,
            slow_correction: 0.0,
            table_rows,
        }),
    }
}

/// Learned poses in a training step: the head's parametrisation, the intervention loss's weight (w/P), and the
/// decoder's masked lattice on the host (for [`Decoder::forward_posed`]).
pub struct PoseStep {
    pub kind: crate::disentangle::intervention::PoseKind,
    pub weight: f64,
    pub coords: Vec<[f64; 3]>,
}

/// z_mu, z_logvar (N, zdim) for every particle in dataset order (inference: no sampling).
pub(crate) fn eval_z<B: Backend<Elem = f32>>(
    be: &B,
    store: &ParamStore<B>,
    enc: &Encoder,
    maker: &Arc<BatchMaker>,
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut mu_all = Vec::with_capacity(n * enc.zdim);
    let mut lv_all = Vec::with_capacity(n * enc.zdim);
    for batch in prefetch(maker.clone(), (0..n).collect(), 64) {
        let batch = batch?;
        let nb = batch.idx.len();
        let x = batch
            .enc
            .as_ref()
            .ok_or_else(|| Error::invalid("encoder input missing"))?;
        let q = x.len() / nb;
        let mut t = Tape::inference(be, store);
        let xv = t.constant(Tensor::from_slice(be, x, &[nb, q])?);
        let xt = match &batch.tilt {
            Some((_, et, _)) => Some(t.constant(Tensor::from_slice(be, et, &[nb, q])?)),
            None => None,
        };
        let (mu, lv) = enc.forward(&mut t, xv, xt)?;
        mu_all.extend(t.to_vec(mu)?);
        lv_all.extend(t.to_vec(lv)?);
    }
    Ok((mu_all, lv_all))
}
