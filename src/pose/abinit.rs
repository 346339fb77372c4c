//! Ab initio reconstruction (the reference's `abinit_homo_old` / `abinit_het_old`): learn the
//! volume (and, heterogeneous, the latent space) and the poses together.
//!
//! 1. **Pretraining**: the decoder is trained on up to `pretrain` images (one pass at most, as
//!    the reference) with uniformly random rotations, no shift, no CTF (het: random z ~ N(0, I)),
//!    which gives a volume of roughly the right extent.
//! 2. **Epochs**: in epochs e with e % `ps_freq` == 0 (0-based; the reference's 1-based
//!    `epoch % ps_freq == 1`) every minibatch is first pose-searched with the current model
//!    ([`crate::pose::search`]; het: with the encoder's sampled z), then the model takes one
//!    Adam step on the found poses (the `train-nn` / `train-vae` loss, [`crate::train`]). Other
//!    epochs reuse the last poses. The band limit of the search ramps from `l_start` to `l_end`
//!    over `l_ramp_epochs` (the reference's `Lramp`).
//!
//! The search model: homogeneous, the decoder's volume on the band the search reaches,
//! oversampled ([`VolumeSlices::from_decoder`]), rebuilt before every minibatch or every
//! `pose_model_update_freq` images (the reference's `--pose-model-update-freq`);
//! heterogeneous, a per-image latent grid ([`LatentGridSlices`]) built once per search at the
//! final band and kept for every level (when a batch's grids fit in 1 GiB; otherwise the
//! refinement evaluates the decoder at every candidate, [`DecoderSlices`]). With `exact_slices`
//! every slice is a decoder evaluation, as in the reference (slow on a CPU).
//!
//! Outputs in `outdir`, after epoch e (1-based tag N = e + 1, as the reference's abinit):
//! `pose.N.pkl` (rot (N, 3, 3), trans (N, 2) as a fraction of D), `weights.N.safetensors`,
//! `reconstruct.N.mrc` (homogeneous) or `z.N.pkl` (heterogeneous), and `config.json` (a
//! `train-nn` / `train-vae` run record, so `eval-vol`, `analyze` and `--load` read it, plus an
//! `abinit` section); at the end the same without N. `pretrain.reconstruct.mrc` after
//! pretraining (homogeneous).

use super::search::{compose, PoseSearch, SearchBatch, SearchConfig, SearchStats};
use super::slices::{DecoderSlices, GridCache, LatentGridSlices, SliceModel, VolumeSlices};
use crate::autodiff::{ParamStore, Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::fourier::shift::translate_ht_into;
use crate::geometry::quaternion::random_rotations;
use crate::meta::Poses;
use crate::model::vae::{gen_loss, KlWeight};
use crate::model::{parse_activation, Decoder, EncodeMode, Encoder};
use crate::nn::{Adam, PeKind};
use crate::train::dataset::{ctf_image, sign, Batch};
use crate::train::{
    build_model, check_count, checkpoint_of, epoch_seed, open_inputs, output_name, parse_domain,
    restore, run_record, train_step, write_json, write_z, EpochStats, Inputs, RunRecord,
    TrainConfig,
};
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Memory for a heterogeneous search batch's per-image latent grids kept across its levels
/// (`LatentGridSlices` with a cache); above it the refinement decodes every candidate.
const GRID_CACHE_BYTES: usize = 1 << 30;

/// Settings of an ab initio run beyond the model and training ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbinitConfig {
    /// Data, model and optimizer (`zdim` None: `abinit-homo`); `poses` is ignored on input and
    /// recorded as the final `pose.pkl`.
    pub train: TrainConfig,
    /// The pose search (`l_min`/`l_max` are `--l-start`/`--l-end`).
    pub search: SearchConfig,
    /// Images of random-pose pretraining (`--pretrain`, default 10000, one pass at most).
    pub pretrain: usize,
    /// Search every this many epochs (`--ps-freq`, default 5).
    pub ps_freq: usize,
    /// Epochs over which the band limit ramps from `--l-start` to `--l-end` (`--l-ramp-epochs`;
    /// reference: 25 homogeneous, 0 heterogeneous; 0: no ramp).
    pub l_ramp_epochs: usize,
    /// Rebuild the homogeneous search volume every this many images (None: every minibatch).
    pub pose_model_update_freq: Option<usize>,
    /// Oversampling of the search's interpolated slices (2: about 1% interpolation error).
    pub oversample: usize,
    /// Every scored slice a decoder evaluation (the reference's behaviour; slow).
    pub exact_slices: bool,
    /// Tilt pairs: use the tilted image in the encoder only, not in the search (`--enc-only`).
    pub enc_only: bool,
    /// Poses to start from with `--load` (`--load-poses`).
    pub load_poses: Option<PathBuf>,
}

/// `config.json` of an ab initio run: a training run record plus the search settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbinitRecord {
    #[serde(flatten)]
    pub run: RunRecord,
    pub abinit: AbinitConfig,
}

/// Search counters of one epoch.
#[derive(Clone, Copy, Debug, Default)]
pub struct EpochSearch {
    pub stats: SearchStats,
    /// Wall time spent in the search (model refresh included), seconds.
    pub seconds: f64,
}

/// What a run returns.
pub struct AbinitResult {
    /// The last poses (trans as a fraction of D).
    pub poses: Poses,
    pub history: Vec<(EpochStats, EpochSearch)>,
    /// Image size and count.
    pub d: usize,
    pub n: usize,
}

/// One minibatch's inputs on the full (D+1)² lattice.
pub(super) struct Loaded {
    pub(super) ht: Vec<f32>,
    pub(super) ctf: Option<Vec<f32>>,
    pub(super) tilt: Option<Vec<f32>>,
}

/// One image's (Hartley image, CTF, tilted image) on the full lattice.
type ImageParts = (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>);

/// Rotations (N) and translations in pixels (N) of every particle.
type PoseArrays = (Vec<[f32; 9]>, Vec<[f32; 2]>);

/// How the epoch loop reads the run's data ([`open_inputs`]).
impl Inputs {
    fn d(&self) -> usize {
        self.images.d
    }

    pub(super) fn load(&self, idx: &[usize]) -> Result<Loaded> {
        let per: Vec<ImageParts> = idx
            .par_iter()
            .map(|&i| {
                let ht = self.images.image(i)?;
                let tilt = self.tilt.as_ref().map(|t| t.image(i)).transpose()?;
                let ctf = self
                    .ctf
                    .as_ref()
                    .map(|c| ctf_image(c, i, self.lattice.freqs2d()));
                Ok((ht, ctf, tilt))
            })
            .collect::<Result<_>>()?;
        Ok(Loaded {
            ht: per.iter().flat_map(|p| p.0.iter().copied()).collect(),
            ctf: self.ctf.as_ref().map(|_| {
                per.iter()
                    .flat_map(|p| p.1.iter().flatten().copied())
                    .collect()
            }),
            tilt: self.tilt.as_ref().map(|_| {
                per.iter()
                    .flat_map(|p| p.2.iter().flatten().copied())
                    .collect()
            }),
        })
    }

    /// Encoder inputs (nb, Q) of a stack: the untranslated image times sign(CTF) (the
    /// reference's abinit encodes before the pose is known).
    fn enc_input(&self, stack: &[f32], ctf: Option<&[f32]>) -> Option<Vec<f32>> {
        let em = self.enc_mask.as_ref()?;
        let dd = self.lattice.len();
        let nb = stack.len() / dd;
        let mut out = Vec::with_capacity(nb * em.len());
        for b in 0..nb {
            let img = &stack[b * dd..(b + 1) * dd];
            let c = ctf.map(|c| &c[b * dd..(b + 1) * dd]);
            out.extend(em.iter().map(|&k| img[k] * c.map_or(1.0, |c| sign(c[k]))));
        }
        Some(out)
    }

    /// The training batch for `idx` at poses (rot, trans in pixels).
    fn batch(&self, idx: &[usize], l: &Loaded, rot: &[[f32; 9]], trans: &[[f32; 2]]) -> Batch {
        let dd = self.lattice.len();
        let freqs = self.lattice.freqs2d();
        let shift_mask = |stack: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(idx.len() * self.mask.len());
            let mut tr = vec![0f32; dd];
            for (b, t) in trans.iter().enumerate() {
                translate_ht_into(&stack[b * dd..(b + 1) * dd], freqs, *t, &mut tr);
                out.extend(self.mask.iter().map(|&k| tr[k]));
            }
            out
        };
        let masked = |stack: &[f32]| -> Vec<f32> {
            (0..idx.len())
                .flat_map(|b| self.mask.iter().map(move |&k| stack[b * dd + k]))
                .collect()
        };
        let rot_flat: Vec<f32> = rot.iter().flatten().copied().collect();
        let tilt = l.tilt.as_ref().map(|t| {
            let rt: Vec<f32> = rot
                .iter()
                .flat_map(|r| compose(&self.tilt_rot, r))
                .collect();
            let et = self.enc_input(t, l.ctf.as_deref()).unwrap_or_default();
            (shift_mask(t), et, rt)
        });
        Batch {
            idx: idx.to_vec(),
            rot: rot_flat,
            y: shift_mask(&l.ht),
            ctf: l.ctf.as_ref().map(|c| masked(c)),
            enc: self.enc_input(&l.ht, l.ctf.as_deref()),
            tilt,
        }
    }
}

/// The band limit of the search in 0-based epoch e: `l_start + ⌊e/ramp·(l_end − l_start)⌋`,
/// at most `l_end` (the reference's `Lramp` with its 1-based epoch − 1).
pub fn ramp_l_max(l_start: usize, l_end: usize, ramp_epochs: usize, epoch: usize) -> usize {
    if ramp_epochs == 0 {
        return l_end;
    }
    let l = l_start + ((epoch as f64 / ramp_epochs as f64) * (l_end - l_start) as f64) as usize;
    l.min(l_end)
}

pub(super) type Store = ParamStore<CpuBackend<f32>>;

/// The model and optimizer of a run.
struct Model {
    be: CpuBackend<f32>,
    store: Store,
    encoder: Option<Encoder>,
    decoder: Decoder,
    adam: Adam<CpuBackend<f32>>,
    rf_name: String,
}

/// Run ab initio reconstruction as configured; `progress` shows a progress bar and per-epoch
/// summaries on stderr.
pub fn abinit(cfg: &AbinitConfig, progress: bool) -> Result<AbinitResult> {
    let tc = &cfg.train;
    if tc.zdim == Some(0) {
        return Err(Error::invalid("--zdim must be at least 1, got 0"));
    }
    if tc.batch_size == 0 || tc.checkpoint == 0 || cfg.ps_freq == 0 {
        return Err(Error::invalid(
            "--batch-size, --checkpoint and --ps-freq must be at least 1",
        ));
    }
    if cfg.oversample == 0 {
        return Err(Error::invalid("--oversample must be at least 1"));
    }
    let pe: PeKind = tc.pe_type.parse()?;
    let domain = parse_domain(&tc.domain)?;
    let act = parse_activation(&tc.activation)?;
    let encode_mode: EncodeMode = tc.encode_mode.parse()?;
    if tc.zdim.is_some() && (encode_mode == EncodeMode::Tilt) != tc.tilt.is_some() {
        return Err(Error::invalid(
            "--encode-mode tilt and --tilt go together (give both or neither)",
        ));
    }
    let data = open_inputs(&cfg.train)?;
    let (n, d) = (data.images.n, data.d());
    let mut ps = PoseSearch::new(cfg.search.clone(), d)?;

    // ---- model ----
    let be = CpuBackend::<f32>::new().with_bf16_gemm(tc.amp);
    let in_dim = data.enc_mask.as_ref().map_or(0, Vec::len);
    let (store, encoder, decoder, prefix) =
        build_model(&be, tc, d, in_dim, encode_mode, domain, pe, act)?;
    let mut m = Model {
        be,
        store,
        encoder,
        decoder,
        adam: Adam::new(tc.lr, tc.wd),
        rf_name: format!("{prefix}rand_freqs"),
    };
    let mut start = 0;
    let mut poses: Option<PoseArrays> = None;
    if let Some(path) = &tc.load {
        crate::train::check_resume(tc, path, progress)?;
        start = restore(
            &m.be,
            &mut m.store,
            &mut m.decoder,
            &mut m.adam,
            &m.rf_name,
            path,
        )? + 1;
    }
    // With --load: the poses of the resumed run. Alone: the initial poses of a new run (e.g.
    // abinit-homo's, for abinit-het): no random-pose pretraining, and the first epoch trains
    // with them instead of searching.
    let initial_poses = tc.load.is_none() && cfg.load_poses.is_some();
    if let Some(pp) = &cfg.load_poses {
        let p = Poses::load(pp)?;
        check_count(pp, "poses", p.len(), n)?;
        let t = p.trans.clone().unwrap_or_else(|| vec![[0.0; 2]; n]);
        poses = Some((
            p.rots,
            t.iter()
                .map(|t| [t[0] * d as f32, t[1] * d as f32])
                .collect(),
        ));
    }
    std::fs::create_dir_all(&tc.outdir).map_err(|err| Error::Io {
        path: tc.outdir.clone(),
        err,
    })?;
    let norm = data.images.norm;
    let apix = data
        .ctf
        .as_ref()
        .and_then(|c| c.rows.first())
        .map(|r| r[1])
        .unwrap_or(1.0);
    let p = data.mask.len();
    let kl = tc.zdim.map(|z| {
        let beta = tc.beta.unwrap_or(1.0 / z as f64);
        match tc.beta_control {
            Some(gamma) => KlWeight::Control { beta, gamma },
            None => KlWeight::Beta(beta),
        }
    });

    // ---- pretraining ----
    if tc.load.is_none() && !initial_poses && cfg.pretrain > 0 {
        let loss = pretrain(cfg, &data, &mut m, progress)?;
        if progress {
            eprintln!(
                "# pretrained on {} images with random poses; loss {loss:.6}",
                cfg.pretrain.min(n)
            );
        }
        if m.encoder.is_none() {
            let vol = crate::model::decoder::eval_volume(&m.be, &m.store, &m.decoder, None, norm)?;
            crate::io::mrc::write_mrc(
                tc.outdir.join("pretrain.reconstruct.mrc"),
                &vol,
                (d, d, d),
                apix,
                true,
            )?;
        }
    }

    // ---- epochs ----
    let mut history = Vec::new();
    let mut last_epoch = None;
    for epoch in start..tc.num_epochs {
        let t0 = std::time::Instant::now();
        let l_max = ramp_l_max(cfg.search.l_min, cfg.search.l_max, cfg.l_ramp_epochs, epoch);
        ps.set_l_range(cfg.search.l_min, l_max);
        let search_epoch =
            (epoch % cfg.ps_freq == 0 && !(initial_poses && epoch == 0)) || poses.is_none();
        let (mut rots, mut trans) = poses
            .clone()
            .unwrap_or_else(|| (vec![[0.0; 9]; n], vec![[0.0; 2]; n]));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(tc.seed, epoch, 1)));
        let mut eps_rng = StdRng::seed_from_u64(epoch_seed(tc.seed, epoch, 2));
        let pb = progress.then(|| {
            crate::cli::progress::bar(
                n as u64,
                &format!(
                    "epoch {}/{}{}",
                    epoch + 1,
                    tc.num_epochs,
                    if search_epoch { " (pose search)" } else { "" }
                ),
            )
        });
        let mut es = EpochSearch::default();
        let mut volume: Option<VolumeSlices> = None;
        let mut since_refresh = 0usize;
        let (mut sum_loss, mut sum_gen, mut sum_kld) = (0.0, 0.0, 0.0);
        for idx in order.chunks(tc.batch_size) {
            let nb = idx.len();
            let l = data.load(idx)?;
            if search_epoch {
                let ts = std::time::Instant::now();
                // The band the search's models must cover: its last level's, or with the bound
                // the whole band |k| < D/2.
                let band = if cfg.search.bound {
                    d / 2
                } else {
                    ps.band_limit(cfg.search.niter)
                };
                let refresh = volume.is_none()
                    || cfg
                        .pose_model_update_freq
                        .is_none_or(|f| since_refresh >= f);
                if m.encoder.is_none() && !cfg.exact_slices && refresh {
                    volume = Some(VolumeSlices::from_decoder(
                        &m.be,
                        &m.store,
                        &m.decoder,
                        cfg.oversample,
                        band,
                    )?);
                    since_refresh = 0;
                }
                since_refresh += nb;
                let z = match &m.encoder {
                    Some(enc) => Some(sample_z(&m, enc, &data, &l, &mut eps_rng.clone())?),
                    None => None,
                };
                let batch = SearchBatch {
                    ht: &l.ht,
                    ctf: l.ctf.as_deref(),
                    tilt: match (&l.tilt, cfg.enc_only) {
                        (Some(t), false) => Some((t.as_slice(), data.tilt_rot)),
                        _ => None,
                    },
                };
                let res = search_batch(
                    &mut ps,
                    (&m.be, &m.store, &m.decoder),
                    &batch,
                    z.as_deref(),
                    volume.as_ref(),
                    cfg.oversample,
                    band,
                    cfg.exact_slices,
                )?;
                for (j, &i) in idx.iter().enumerate() {
                    rots[i] = res.rot[j];
                    trans[i] = res.trans_px[j];
                }
                add_stats(&mut es.stats, &res.stats);
                es.seconds += ts.elapsed().as_secs_f64();
            }
            let br: Vec<[f32; 9]> = idx.iter().map(|&i| rots[i]).collect();
            let bt: Vec<[f32; 2]> = idx.iter().map(|&i| trans[i]).collect();
            let batch = data.batch(idx, &l, &br, &bt);
            let coords = Tensor::from_slice(&m.be, &data.coords, &[p, 3])?;
            let crate::train::StepValues { loss, gen, kld, .. } = train_step(
                &m.be,
                &mut m.store,
                &mut m.adam,
                &batch,
                &m.decoder,
                m.encoder.as_ref(),
                kl,
                coords,
                p,
                &mut eps_rng,
                None,
                None,
                0.0,
                None,
            )?;
            sum_loss += loss * nb as f64;
            sum_gen += gen * nb as f64;
            sum_kld += kld * nb as f64;
            if let Some(pb) = &pb {
                pb.inc(nb as u64);
            }
        }
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        poses = Some((rots, trans));
        let st = EpochStats {
            epoch,
            loss: sum_loss / n as f64,
            gen: sum_gen / n as f64,
            kld: sum_kld / n as f64,
            intervention: 0.0,
            slow: 0.0,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if progress {
            let search = if search_epoch {
                format!(
                    "; pose search L {}→{} in {:.1} s ({:.3e} scores/s)",
                    ps.band_limit(0),
                    ps.band_limit(cfg.search.niter),
                    es.seconds,
                    es.stats.scores as f64 / es.seconds.max(1e-9)
                )
            } else {
                String::new()
            };
            let kld = if m.encoder.is_some() {
                format!(", KLD = {:.4}", st.kld)
            } else {
                String::new()
            };
            eprintln!(
                "# =====> Epoch: {} Average gen loss = {:.6}{kld}, total loss = {:.6}; {:.1} s{search}",
                epoch + 1,
                st.gen,
                st.loss,
                st.seconds
            );
        }
        history.push((st, es));
        last_epoch = Some(epoch);
        if (epoch + 1).is_multiple_of(tc.checkpoint) {
            let (r, t) = poses.as_ref().expect("set above");
            save(cfg, &data, &m, r, t, epoch, &(epoch + 1).to_string(), apix)?;
        }
    }
    let (r, t) = poses.unwrap_or_else(|| (vec![[0.0; 9]; n], vec![[0.0; 2]; n]));
    if let Some(epoch) = last_epoch {
        save(cfg, &data, &m, &r, &t, epoch, "", apix)?;
    }
    Ok(AbinitResult {
        poses: to_poses(&r, &t, d),
        history,
        d,
        n,
    })
}

/// Poses of every particle of `tc.particles` (with `tc.ctf`, `tc.ind`, the preprocessing flags
/// and `tc.batch_size`; model fields unused) searched against a fixed volume (D, D, D), z
/// slowest: projection matching with the search of `search`. The volume must be on the scale of
/// the raw particle images (as `simulate` makes them); it is brought to the preprocessed images'
/// scale (negated with `invert_data`, divided by the normalization's std; the normalization's
/// mean is assumed 0, as estimated). Returns the poses (trans as a fraction of D), the search
/// counters and the search time in seconds.
pub fn search_volume(
    tc: &TrainConfig,
    search: &SearchConfig,
    vol: &[f32],
    oversample: usize,
    progress: bool,
) -> Result<(Poses, SearchStats, f64)> {
    if tc.batch_size == 0 || oversample == 0 {
        return Err(Error::invalid(
            "--batch-size and --oversample must be at least 1",
        ));
    }
    let data = open_inputs(tc)?;
    let (n, d) = (data.images.n, data.d());
    if vol.len() != d * d * d {
        return Err(Error::Shape {
            what: "pose search: volume".into(),
            expected: format!("{d}³ values (the particles are {d}×{d})"),
            got: vol.len().to_string(),
        });
    }
    let scale = if tc.invert_data { -1.0 } else { 1.0 } / data.images.norm.std;
    let scaled: Vec<f32> = vol.iter().map(|v| v * scale).collect();
    let model = VolumeSlices::from_volume(&scaled, d, oversample);
    let mut ps = PoseSearch::new(search.clone(), d)?;
    let be = CpuBackend::<f32>::new();
    let (mut rots, mut trans) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut stats = SearchStats::default();
    let pb = progress.then(|| crate::cli::progress::bar(n as u64, "pose search"));
    let t0 = std::time::Instant::now();
    let all: Vec<usize> = (0..n).collect();
    for idx in all.chunks(tc.batch_size) {
        let l = data.load(idx)?;
        let batch = SearchBatch {
            ht: &l.ht,
            ctf: l.ctf.as_deref(),
            tilt: l.tilt.as_ref().map(|t| (t.as_slice(), data.tilt_rot)),
        };
        let res = ps.search(&be, &batch, &model, &model)?;
        rots.extend(res.rot);
        trans.extend(res.trans_px);
        add_stats(&mut stats, &res.stats);
        if let Some(pb) = &pb {
            pb.inc(idx.len() as u64);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok((
        to_poses(&rots, &trans, d),
        stats,
        t0.elapsed().as_secs_f64(),
    ))
}

/// Search one minibatch against the model: homogeneous, against `volume` (the decoder's
/// interpolated volume; None or `exact`: decoder slices); heterogeneous (`z`, per image), against
/// per-image latent grids at band `band`, kept for every level when the batch's grids fit in
/// `GRID_CACHE_BYTES` (otherwise the refinement decodes every candidate).
#[allow(clippy::too_many_arguments)]
pub(super) fn search_batch(
    ps: &mut PoseSearch,
    (be, store, decoder): (&CpuBackend<f32>, &Store, &Decoder),
    batch: &SearchBatch,
    z: Option<&[f32]>,
    volume: Option<&VolumeSlices>,
    oversample: usize,
    band: usize,
    exact: bool,
) -> Result<super::search::SearchResult> {
    let exact_model = DecoderSlices {
        be,
        store,
        decoder,
        z,
    };
    match (z, volume) {
        (Some(z), _) => {
            let nb = z.len() / decoder.zdim.max(1);
            let side = 2 * (oversample.max(1) * band + 3) + 1;
            let cache = side.pow(3) * 4 * nb <= GRID_CACHE_BYTES;
            let grid = LatentGridSlices {
                be,
                store,
                decoder,
                z,
                oversample,
                min_radius: if cache {
                    band as f32 / decoder.d as f32
                } else {
                    0.0
                },
                cache: cache.then(GridCache::default),
            };
            let (base, refine): (&dyn SliceModel, &dyn SliceModel) = match (exact, cache) {
                (true, _) => (&exact_model, &exact_model),
                (false, true) => (&grid, &grid),
                (false, false) => (&grid, &exact_model),
            };
            ps.search(be, batch, base, refine)
        }
        (None, Some(v)) if !exact => ps.search(be, batch, v, v),
        _ => ps.search(be, batch, &exact_model, &exact_model),
    }
}

pub(super) fn add_stats(a: &mut SearchStats, b: &SearchStats) {
    a.scores += b.scores;
    a.score_points += b.score_points;
    a.slices += b.slices;
    a.pruned += b.pruned;
}

pub(super) fn to_poses(rots: &[[f32; 9]], trans_px: &[[f32; 2]], d: usize) -> Poses {
    Poses {
        rots: rots.to_vec(),
        trans: Some(
            trans_px
                .iter()
                .map(|t| [t[0] / d as f32, t[1] / d as f32])
                .collect(),
        ),
    }
}

/// Restore parameters, `gaussian` frequencies and Adam state; returns the checkpoint's epoch.
/// The search's z for a minibatch: μ + ε·exp(½·log σ²) with ε drawn from `eps_rng` (a clone of
/// the training step's generator, so the search and the step use the same z).
fn sample_z(
    m: &Model,
    enc: &Encoder,
    data: &Inputs,
    l: &Loaded,
    eps_rng: &mut StdRng,
) -> Result<Vec<f32>> {
    let x = data
        .enc_input(&l.ht, l.ctf.as_deref())
        .ok_or_else(|| Error::invalid("encoder input missing"))?;
    let dd = data.lattice.len();
    let nb = l.ht.len() / dd;
    let q = x.len() / nb;
    let mut t = Tape::inference(&m.be, &m.store);
    let xv = t.constant(Tensor::from_slice(&m.be, &x, &[nb, q])?);
    let xt = match &l.tilt {
        Some(tl) => {
            let et = data
                .enc_input(tl, l.ctf.as_deref())
                .ok_or_else(|| Error::invalid("encoder input missing"))?;
            Some(t.constant(Tensor::from_slice(&m.be, &et, &[nb, q])?))
        }
        None => None,
    };
    let (mu, lv) = enc.forward(&mut t, xv, xt)?;
    let (mu, lv) = (t.to_vec(mu)?, t.to_vec(lv)?);
    Ok(mu
        .iter()
        .zip(&lv)
        .map(|(&m, &v)| {
            let e: f32 = StandardNormal.sample(eps_rng);
            m + e * (0.5 * v).exp()
        })
        .collect())
}

/// Random-pose pretraining (see the module doc); returns the last minibatch loss.
fn pretrain(cfg: &AbinitConfig, data: &Inputs, m: &mut Model, progress: bool) -> Result<f64> {
    let tc = &cfg.train;
    let n = data.images.n;
    let p = data.mask.len();
    let dd = data.lattice.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(tc.seed, 0, 10)));
    order.truncate(cfg.pretrain.min(n));
    let mut rng = StdRng::seed_from_u64(epoch_seed(tc.seed, 0, 11));
    let zdim = m.decoder.zdim;
    let pb = progress.then(|| crate::cli::progress::bar(order.len() as u64, "pretrain"));
    let mut last = 0.0;
    for idx in order.chunks(tc.batch_size) {
        let nb = idx.len();
        let l = data.load(idx)?;
        let rots: Vec<[f32; 9]> = random_rotations(nb, &mut rng)
            .iter()
            .map(|r| r.map(|v| v as f32))
            .collect();
        let z: Vec<f32> = (0..nb * zdim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let masked = |stack: &[f32]| -> Vec<f32> {
            (0..nb)
                .flat_map(|b| data.mask.iter().map(move |&k| stack[b * dd + k]))
                .collect()
        };
        let be = m.be.clone();
        let mut t = Tape::new(&be, &m.store);
        let coords = t.constant(Tensor::from_slice(&be, &data.coords, &[p, 3])?);
        let zv = if zdim > 0 {
            Some(t.constant(Tensor::from_slice(&be, &z, &[nb, zdim])?))
        } else {
            None
        };
        let slice_loss = |t: &mut Tape<'_, CpuBackend<f32>>, r: &[[f32; 9]], y: Vec<f32>| {
            let rf: Vec<f32> = r.iter().flatten().copied().collect();
            let rv = t.constant(Tensor::from_slice(&be, &rf, &[nb, 3, 3])?);
            let yv = t.constant(Tensor::from_slice(&be, &y, &[nb, p])?);
            let yr = m.decoder.forward(t, coords, rv, zv)?;
            gen_loss(t, yr, None, yv)
        };
        let mut loss = slice_loss(&mut t, &rots, masked(&l.ht))?;
        if let Some(tl) = &l.tilt {
            // ½·MSE(untilted) + ½·MSE(tilted at tilt·R), as the reference
            let rt: Vec<[f32; 9]> = rots.iter().map(|r| compose(&data.tilt_rot, r)).collect();
            let lt = slice_loss(&mut t, &rt, masked(tl))?;
            let s = t.add(loss, lt)?;
            loss = t.affine(s, 0.5, 0.0)?;
        }
        last = t.to_vec(loss)?[0] as f64;
        let grads = t.backward(loss)?;
        drop(t);
        m.adam.step(&be, &mut m.store, &grads)?;
        grads.recycle(&be);
        if let Some(pb) = &pb {
            pb.inc(nb as u64);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(last)
}

/// z_mu, z_logvar (N, zdim) of every particle (encoder input untranslated, as the reference's
/// abinit `eval_z`).
fn eval_z(m: &Model, enc: &Encoder, data: &Inputs) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = data.images.n;
    let (mut mu_all, mut lv_all) = (Vec::new(), Vec::new());
    let all: Vec<usize> = (0..n).collect();
    for idx in all.chunks(64) {
        let l = data.load(idx)?;
        let x = data
            .enc_input(&l.ht, l.ctf.as_deref())
            .ok_or_else(|| Error::invalid("encoder input missing"))?;
        let nb = idx.len();
        let q = x.len() / nb;
        let mut t = Tape::inference(&m.be, &m.store);
        let xv = t.constant(Tensor::from_slice(&m.be, &x, &[nb, q])?);
        let xt = match &l.tilt {
            Some(tl) => {
                let et = data.enc_input(tl, l.ctf.as_deref()).unwrap_or_default();
                Some(t.constant(Tensor::from_slice(&m.be, &et, &[nb, q])?))
            }
            None => None,
        };
        let (mu, lv) = enc.forward(&mut t, xv, xt)?;
        mu_all.extend(t.to_vec(mu)?);
        lv_all.extend(t.to_vec(lv)?);
    }
    Ok((mu_all, lv_all))
}

/// Write the outputs of epoch `epoch` (0-based) under `tag` ("N" or "" for the final ones).
#[allow(clippy::too_many_arguments)]
fn save(
    cfg: &AbinitConfig,
    data: &Inputs,
    m: &Model,
    rots: &[[f32; 9]],
    trans_px: &[[f32; 2]],
    epoch: usize,
    tag: &str,
    apix: f32,
) -> Result<()> {
    let tc = &cfg.train;
    let (n, d) = (data.images.n, data.d());
    let name = |stem: &str, ext: &str| output_name(&tc.outdir, stem, tag, ext);
    to_poses(rots, trans_px, d).save(name("pose", "pkl"))?;
    match &m.encoder {
        Some(enc) => {
            let (mu, lv) = eval_z(m, enc, data)?;
            write_z(&name("z", "pkl"), mu, lv, n, enc.zdim)?;
        }
        None => {
            let vol = crate::model::decoder::eval_volume(
                &m.be,
                &m.store,
                &m.decoder,
                None,
                data.images.norm,
            )?;
            crate::io::mrc::write_mrc(name("reconstruct", "mrc"), &vol, (d, d, d), apix, true)?;
        }
    }
    let mut ck = checkpoint_of(&m.be, &m.store, &m.decoder, &m.adam, &m.rf_name, epoch)?;
    // The training settings, so that `--load` takes them from the checkpoint (train::adopt_settings).
    ck.settings = crate::train::Settings::settings(tc);
    ck.save(&name("weights", "safetensors"))?;
    let mut train = tc.clone();
    train.poses = tc.outdir.join("pose.pkl");
    let record = AbinitRecord {
        run: run_record(&train, d, n, data.images.norm, epoch),
        abinit: cfg.clone(),
    };
    write_json(&tc.outdir.join("config.json"), &record)
}
