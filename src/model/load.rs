//! Rebuilding a trained model from a run's `config.json` and one of its
//! `weights.N.safetensors` (as written by `train-nn` / `train-vae`), decoding volumes at given z
//! and encoding particle stacks with the trained encoder. Used by `eval-vol`, `eval-images`,
//! `analyze` and `eval-accuracy`.

use crate::autodiff::{ParamStore, Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::backend::Domain;
use crate::fourier::lattice::Lattice;
use crate::fourier::window::Norm;
use crate::meta::{CtfParams, Poses};
use crate::model::cryodrgn;
use crate::model::decoder::eval_volume_box;
use crate::model::{parse_activation, Decoder, EncodeMode, Encoder};
use crate::nn::PeKind;
use crate::simulate::dataset::xrot;
use crate::train::dataset::{prefetch, BatchMaker, ImageDataset};
use crate::train::{apply_checkpoint, build_model, encoder_mask, load_weights, RunRecord};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A trained model ready for evaluation.
pub struct LoadedModel {
    pub be: CpuBackend<f32>,
    pub store: ParamStore<CpuBackend<f32>>,
    pub decoder: Decoder,
    /// None for a homogeneous (`train-nn`) model.
    pub encoder: Option<Encoder>,
    pub norm: Norm,
    /// The run's record (`config.json`).
    pub record: RunRecord,
    /// Image size D.
    pub d: usize,
    /// Latent width (0: homogeneous).
    pub zdim: usize,
    /// The encoder's input pixels (lattice indices), for VAEs.
    enc_mask: Option<Vec<usize>>,
    weights: PathBuf,
}

/// Per-image results of [`LoadedModel::encode`]: z_mu and z_logvar (N, zdim), and per image
/// (total loss, reconstruction MSE, KL) with z = z_mu (the reference's eval mode). For a twin model:
/// z (N, zdim), the GMM responsibilities γ (N, C) in `gamma` (`logvar` empty), and per image
/// (distortion + β·rate, ramp-weighted distortion, rate −log Q(z)) without latent noise.
pub struct Encoded {
    pub mu: Vec<f32>,
    pub logvar: Vec<f32>,
    pub gamma: Vec<f32>,
    pub losses: Vec<[f64; 3]>,
}

/// Read a run's `config.json`.
pub fn read_record(config: &Path) -> Result<RunRecord> {
    let bytes = std::fs::read(config).map_err(|err| Error::Io {
        path: config.to_path_buf(),
        err,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::format(
            config,
            format!("not a cryofield config.json (from train-nn/train-vae): {e}"),
        )
    })
}

impl LoadedModel {
    /// Rebuild the model described by `config` (a run's `config.json`) and load `weights`.
    /// A checkpoint whose tensors do not match the configuration is an error naming both files.
    ///
    /// A cryoDRGN run (`config.yaml` and a `weights.N.pkl` written by `torch.save`) is opened the
    /// same way through [`crate::model::cryodrgn`].
    pub fn load(weights: &Path, config: &Path) -> Result<Self> {
        let (weights, config) = &own_files(weights, config);
        let (weights, config) = (weights.as_path(), config.as_path());
        let from_cryodrgn = cryodrgn::is_yaml(config);
        let record = if from_cryodrgn {
            cryodrgn::record_from_yaml(config)?
        } else {
            read_record(config)?
        };
        let cfg = &record.config;
        let d = record.d;
        let pe: PeKind = cfg.pe_type.parse()?;
        let domain = match cfg.domain.as_str() {
            "fourier" => Domain::Fourier,
            "hartley" => Domain::Hartley,
            s => return Err(Error::format(config, format!("unknown domain `{s}`"))),
        };
        let act = parse_activation(&cfg.activation)?;
        let be = CpuBackend::<f32>::new();
        let lattice = Lattice::for_image(d, true)?;
        let mode: EncodeMode = cfg.encode_mode.parse()?;
        // `conv` reads the whole real-space image (see `BatchMaker::enc_real`)
        let conv = cfg.zdim.is_some() && mode == EncodeMode::Conv;
        let enc_mask = match conv {
            true => None,
            false => encoder_mask(cfg, &lattice, d)?,
        };
        let in_dim = match conv {
            true => d * d,
            false => enc_mask.as_ref().map_or(0, Vec::len),
        };
        // Values are replaced by the checkpoint; the seed only fixes the layout.
        let (mut store, encoder, mut decoder, prefix) =
            build_model(&be, cfg, d, in_dim, mode, domain, pe, act)?;
        let rf_name = format!("{prefix}rand_freqs");
        if from_cryodrgn {
            let extra: Vec<String> = decoder.rand_freqs.iter().map(|_| rf_name.clone()).collect();
            let ck = cryodrgn::checkpoint_from_torch(
                weights,
                &store.named_shapes(),
                &extra,
                cryodrgn::version_major(&record),
            )?;
            apply_checkpoint(&be, &mut store, &mut decoder, &ck)?;
        } else {
            load_weights(&be, &mut store, &mut decoder, &rf_name, weights).map_err(|e| {
                Error::format(
                    weights,
                    format!("does not match the model of {} ({e})", config.display()),
                )
            })?;
        }
        let norm = Norm {
            mean: record.norm[0],
            std: record.norm[1],
        };
        Ok(Self {
            be,
            store,
            decoder,
            encoder,
            norm,
            zdim: cfg.zdim.unwrap_or(0),
            d,
            enc_mask,
            weights: weights.to_path_buf(),
            record,
        })
    }

    /// The pixel size recorded with the training data: the first CTF row's Apix, else None.
    pub fn apix(&self) -> Option<f32> {
        let p = self.record.config.ctf.as_ref()?;
        let c = CtfParams::load(p).ok()?;
        c.rows.first().map(|r| r[1])
    }

    /// The volume (d, d, d) at `z` (None for a homogeneous model); `d` defaults to D.
    pub fn volume(&self, z: Option<&[f32]>, d: Option<usize>) -> Result<Vec<f32>> {
        let zl = z.map(|z| z.len()).unwrap_or(0);
        if zl != self.zdim {
            return Err(Error::invalid(format!(
                "z has {zl} values but the model in {} has zdim {}",
                self.weights.display(),
                self.zdim
            )));
        }
        eval_volume_box(
            &self.be,
            &self.store,
            &self.decoder,
            z,
            self.norm,
            d.unwrap_or(self.d),
        )
    }

    /// The batches this model reads from a particle stack (preprocessed as in training: window,
    /// inversion, the training normalisation) with its `poses` and optional `ctf`, one row per image
    /// (else an error naming the file): the decoder's mask (a circle of radius D/2 on the D×D
    /// lattice) and the encoder's input pixels. Shared by [`LoadedModel::encode`] and the
    /// disentanglement probe's held-out loss.
    pub(crate) fn batch_maker(
        &self,
        particles: &Path,
        poses: &Path,
        ctf: Option<&Path>,
        datadir: Option<&Path>,
    ) -> Result<BatchMaker> {
        let cfg = &self.record.config;
        let d = self.d;
        let data = ImageDataset::open(
            particles,
            datadir,
            None,
            cfg.window.then_some(cfg.window_r),
            cfg.invert_data,
            Some(self.norm),
            false,
        )?;
        if data.d != d {
            return Err(Error::format(
                particles,
                format!(
                    "images are {0}×{0} but the model was trained on {d}×{d}",
                    data.d
                ),
            ));
        }
        let n = data.n;
        let poses_v = Poses::load(poses)?;
        if poses_v.len() != n {
            return Err(Error::format(
                poses,
                format!(
                    "{} poses but the particle stack has {n} images",
                    poses_v.len()
                ),
            ));
        }
        let ctf_v = match ctf {
            Some(p) => {
                let c = CtfParams::load(p)?;
                if c.len() != n {
                    return Err(Error::format(
                        p,
                        format!("{} CTF rows but the particle stack has {n} images", c.len()),
                    ));
                }
                Some(c)
            }
            None => None,
        };
        let lattice = Lattice::for_image(d, true)?;
        let mask_b = lattice.circular_mask((d / 2) as f32)?;
        let mask: Vec<usize> = (0..mask_b.len()).filter(|&i| mask_b[i]).collect();
        let enc_real = match &self.encoder {
            Some(e) if e.mode == EncodeMode::Conv => {
                if ctf.is_some() {
                    return Err(Error::invalid(
                        "a convolutional encoder reads real-space images, which the CTF does not \
                         phase-flip: not with --ctf (phase-flip the particles first)",
                    ));
                }
                Some(data.real_norm()?)
            }
            _ => None,
        };
        Ok(BatchMaker {
            data,
            tilt_data: None,
            tilt_rot: {
                let m = xrot(cfg.tilt_deg);
                std::array::from_fn(|i| m[i] as f32)
            },
            poses: poses_v,
            ctf: ctf_v,
            lattice,
            mask,
            enc_mask: self.enc_mask.clone(),
            enc_real,
        })
    }

    /// Encode a particle stack (preprocessed as in training: window, inversion, the training
    /// normalization) with its poses and CTF.
    pub fn encode(
        &self,
        particles: &Path,
        poses: &Path,
        ctf: Option<&Path>,
        datadir: Option<&Path>,
        batch_size: usize,
    ) -> Result<Encoded> {
        let enc = self.encoder.as_ref().ok_or_else(|| {
            Error::format(
                &self.weights,
                "a homogeneous model (train-nn) has no encoder",
            )
        })?;
        if enc.mode == EncodeMode::Tilt {
            return Err(Error::invalid(
                "eval-images: tilt-pair encoders are not supported",
            ));
        }
        let cfg = &self.record.config;
        let d = self.d;
        let maker = self.batch_maker(particles, poses, ctf, datadir)?;
        let n = maker.data.n;
        let coords: Vec<f32> = maker
            .mask
            .iter()
            .flat_map(|&i| maker.lattice.coords()[i])
            .collect();
        let p = maker.mask.len();
        let maker = Arc::new(maker);
        let beta = cfg.beta.unwrap_or(1.0 / self.zdim as f64);
        let be = &self.be;
        let zd = enc.zdim;
        // twin: the ramp weights, the prior (gmm.N.npz beside the weights) and its T, β
        let twin = match &cfg.twin {
            Some(tp) => {
                let gpath = crate::twin::train::gmm_beside(&self.weights);
                let prior = crate::twin::train::Prior::read(&gpath, tp.n_comp, zd, tp.full())?;
                let mix = prior
                    .mixture(tp.gmm_eps)
                    .map_err(|e| Error::format(&gpath, e.to_string()))?;
                // a full prior's Monte Carlo rate: one fixed set of box offsets for every image
                let offs = crate::twin::train::box_offsets(
                    &mut rand::SeedableRng::seed_from_u64(0),
                    tp.rate_mc,
                    zd,
                    tp.noise_width,
                );
                Some((
                    crate::twin::train::ramp_weights(&coords, d),
                    mix,
                    tp.clone(),
                    offs,
                ))
            }
            None => None,
        };
        let mut out = Encoded {
            mu: Vec::with_capacity(n * zd),
            logvar: Vec::new(),
            gamma: Vec::new(),
            losses: Vec::with_capacity(n),
        };
        for batch in prefetch(maker, (0..n).collect(), batch_size.max(1)) {
            let batch = batch?;
            let nb = batch.idx.len();
            let x = batch
                .enc
                .as_ref()
                .ok_or_else(|| Error::invalid("encoder input missing"))?;
            let q = x.len() / nb;
            let mut t = Tape::inference(be, &self.store);
            let xv = t.constant(Tensor::from_slice(be, x, &[nb, q])?);
            let (mu, lv) = enc.forward(&mut t, xv, None)?;
            let cv = t.constant(Tensor::from_slice(be, &coords, &[p, 3])?);
            let rv = t.constant(Tensor::from_slice(be, &batch.rot, &[nb, 3, 3])?);
            let yr = self.decoder.forward(&mut t, cv, rv, Some(mu))?;
            let yr = t.to_vec(yr)?;
            let mu = t.to_vec(mu)?;
            let mut lv = t.to_vec(lv)?;
            if let Some(lp) = &cfg.learned_pose {
                // the second head carries (log σ², pose): keep log σ²
                lv = crate::train::split_pose_head(&lv, zd, lp.pose_kind()?.width()).0;
            }
            for b in 0..nb {
                let (mut se, mut wse) = (0.0f64, 0.0f64);
                for k in 0..p {
                    let c = batch.ctf.as_ref().map(|c| c[b * p + k]).unwrap_or(1.0);
                    let r = (yr[b * p + k] * c - batch.y[b * p + k]) as f64;
                    se += r * r;
                    if let Some((ramp, ..)) = &twin {
                        wse += r * r * ramp[k] as f64;
                    }
                }
                if let Some((_, mix, tp, offs)) = &twin {
                    let z: Vec<f64> = mu[b * zd..(b + 1) * zd].iter().map(|&v| v as f64).collect();
                    let rate = mix.rate(&z, tp.noise_width, offs);
                    out.losses.push([wse + tp.beta * rate, wse, rate]);
                    continue;
                }
                let gen = se / p as f64;
                let kld: f64 = (0..zd)
                    .map(|j| {
                        let (m, l) = (mu[b * zd + j] as f64, lv[b * zd + j] as f64);
                        -0.5 * (1.0 + l - m * m - l.exp())
                    })
                    .sum();
                out.losses.push([gen + beta * kld / p as f64, gen, kld]);
            }
            out.mu.extend(mu);
            if let Some((_, _, tp, _)) = &twin {
                let g = crate::twin::train::softmax_rows(&lv, tp.n_comp);
                out.gamma.extend(g.iter().map(|&v| v as f32));
            } else {
                out.logvar.extend(lv);
            }
        }
        Ok(out)
    }
}
/// The checkpoint of our run behind the cryoDRGN name `weights[.N].pkl`: that epoch's
/// `weights[.N].safetensors`, when it and our `config.json` are beside `weights` (None for any
/// other name, or when either is missing). cryoDRGN 4.3 writes every checkpoint as
/// `weights.N.pkl`; ours are `weights.N.safetensors` (the last epoch also as `weights.N.pkl`).
pub fn safetensors_twin(weights: &Path) -> Option<PathBuf> {
    let twin = weights
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".pkl"))
        .filter(|stem| stem == &"weights" || stem.starts_with("weights."))
        .map(|stem| weights.with_file_name(format!("{stem}.safetensors")))?;
    (twin.is_file() && weights.with_file_name("config.json").is_file()).then_some(twin)
}

/// `weights.N.pkl` names for our runs: when `weights` is a missing `weights[.N].pkl` with a
/// [`safetensors_twin`], that checkpoint and our `config.json` are used (whichever config was
/// named: our config.yaml carries fewer settings); otherwise the paths as given.
pub fn own_files(weights: &Path, config: &Path) -> (PathBuf, PathBuf) {
    match safetensors_twin(weights).filter(|_| !weights.exists()) {
        Some(t) => {
            let json = weights.with_file_name("config.json");
            eprintln!(
                "note: {} is not there; using {} and {} (this run's checkpoint of that epoch)",
                weights.display(),
                t.display(),
                json.display()
            );
            (t, json)
        }
        None => (weights.to_path_buf(), config.to_path_buf()),
    }
}
