//! `abinit`: heterogeneous (or homogeneous) ab initio reconstruction without tilt pairs, as
//! cryoDRGN 4.3's `cryodrgn abinit` (cryoDRGN-AI / DRGN-AI, Levy et al. 2025). Planning note with
//! every flag, default and the reference's bugs: `abinit_ai_spec.md` beside this file.
//!
//! ## Schedule (epochs numbered as the reference: 0 … `num_epochs`)
//! - **Epoch 0, pretraining** (`--n-imgs-pretrain`, default 10 000; 0: none): minibatches of
//!   `--batch-size-known-poses` images, each at a fresh uniformly random rotation with no shift and
//!   a random z = `std_z_init`·N(0, I); only the decoder learns. The epoch stops after the first
//!   minibatch that takes the count of images past the limit (the reference's strict `>`), or at the
//!   end of one pass.
//! - **Epochs 1 … E (pose search, `--epochs-pose-search`, default 3)**: minibatches of
//!   `--batch-size-hps`; each is searched ([`crate::pose::search`], per-image z from the conformation
//!   table, never searched over) against the current decoder, then the decoder and the conformation
//!   table take one step at the found poses.
//! - **Epochs E+1 … (SGD)**: minibatches of `--batch-size-sgd`; the poses live in a per-image table —
//!   rotation (6-D representation by default, `--emb-type`) and translation (pixels) — that starts
//!   at the last search's result and takes one dense-Adam step (`--lr-pose-table`) with the decoder
//!   and the conformation table every minibatch.
//! - Pose-only phase: while the images seen (pretraining included) are fewer than
//!   `--pose-only-phase`, in epoch 0, or with zdim 0, z is random (std `std_z_init`) and the
//!   conformation table does not learn.
//!
//! ## Step
//! The loss is the reference's: the mean over images and mask points of
//! `(CTF·ŷ(x·R, z) − H_t(y))²`, where `H_t` translates the *observed* image by t (Hartley shift),
//! plus `--l2-smoothness-regularizer`·mean_b Σ_k (D·|k|)·(CTF·ŷ_k)² and, in SGD epochs,
//! `--trans-l1-regularizer`·mean_b Σ|t| (the reference's intent; its version crashes). The
//! translation's gradient is chained on the host: with φ = 2πk·t, ∂H_t(k)/∂t = 2πk·H_t(−k).
//! Every table takes a dense-Adam step (as torch's Adam on the reference's dense tables: rows
//! outside the minibatch move on their moments), the decoder an Adam step (`--lr`).
//!
//! ## Outputs (summary epochs: 0, the search epochs, every `--checkpoint`-th and the last)
//! `pose.N.pkl` (rotations, translations **as a fraction of D**, as every other cryoDRGN pose file
//! and our `--poses`; the reference's abinit writes pixels), `z.N.pkl` (the conformation table: μ,
//! then a zero log σ², as `train-vae` writes them), `weights.N.safetensors`, `reconstruct.N.mrc`
//! (zdim > 0: at the table row nearest the mean), `tables.N.safetensors` (the tables and their Adam
//! state, for `--load`), `config.json`; at the end the same without N.
//!
//! ## Deviations from the reference, on purpose
//! The decoder is ours (`train-vae`'s, `--pe-type gaussian` by default as the reference's
//! hypervolume); the pose search is ours ([`crate::pose::search`]: the same grids and schedule,
//! interpolated slices); random streams are ours (seeded, reproducible).

use super::abinit::{add_stats, search_batch, to_poses, Loaded, Store};
use super::search::{PoseSearch, SearchBatch, SearchConfig, SearchStats};
use super::slices::{GridCache, LatentGridSlices, SliceModel, VolumeSlices};
use super::table::{AdamRows, PoseEmb, PoseTable};
use crate::autodiff::{Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::fourier::shift::translate_ht_into;
use crate::geometry::quaternion::random_rotations;
use crate::io::atomic::write_bytes_atomic;
use crate::meta::Poses;
use crate::model::{parse_activation, Decoder, EncodeMode};
use crate::nn::{Adam, PeKind};
use crate::train::{
    build_model, check_count, checkpoint_of, epoch_seed, host_coords, open_inputs, output_name,
    parse_domain, restore, run_record, write_json, write_z, Inputs, RunRecord, TrainConfig,
};
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// Settings of an `abinit` run beyond the model and training ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrgnaiConfig {
    /// Data, decoder and its optimizer (`zdim` None: homogeneous; `num_epochs`: the epochs after
    /// pretraining; `batch_size` unused: the three below).
    pub train: TrainConfig,
    /// The pose search (`l_min`/`l_max`: `--l-start`/`--l-end`).
    pub search: SearchConfig,
    /// Images of pretraining (`--n-imgs-pretrain`; negative: all; 0: no epoch 0).
    pub n_imgs_pretrain: i64,
    /// Pose-search epochs (`--epochs-pose-search`).
    pub epochs_pose_search: usize,
    /// `--n-imgs-pose-search`: overrides the above with max(2, ⌊n/N⌋ + 1).
    pub n_imgs_pose_search: Option<usize>,
    /// `--epochs-sgd`: if given, the epochs are the search epochs plus these (`-n` ignored).
    pub epochs_sgd: Option<usize>,
    pub batch_size_pretrain: usize,
    pub batch_size_hps: usize,
    pub batch_size_sgd: usize,
    pub lr_pose_table: f64,
    pub lr_conf_table: f64,
    /// Std of the conformation table's start and of the pose-only phase's random z.
    pub std_z_init: f64,
    /// Images (pretraining included) before the conformation table learns.
    pub pose_only_phase: usize,
    pub l2_smoothness: f64,
    pub trans_l1: f64,
    /// Rotation parametrisation of the pose table.
    pub emb: PoseEmb,
    /// No translations anywhere (`--no-trans`).
    pub no_trans: bool,
    /// Oversampling of the search's interpolated slices.
    pub oversample: usize,
    /// Images searched against one state of the model (`--pose-model-update-freq`, ours; None: each
    /// minibatch against the current model, as the reference).
    #[serde(default)]
    pub search_chunk: Option<usize>,
    /// Latent bins of the search (`--search-z-bins K`, ours; 0: every image searched at its own z, as
    /// the reference): each chunk's z are clustered into K k-means centres and every image is
    /// searched at its centre's z, so the chunk costs K latent grids instead of one per image.
    #[serde(default)]
    pub search_z_bins: usize,
    /// Poses that seed the pose arrays (`--load-poses`; translations as a fraction of D).
    pub load_poses: Option<PathBuf>,
    /// `train-dec`: the SGD epochs train at the given poses (no pose table).
    #[serde(default)]
    pub fixed_poses: bool,
    /// `train-dec --pretrain-z`: the conformation table is held for the first this many epochs.
    #[serde(default)]
    pub conf_frozen_epochs: usize,
    /// `train-dec --load-z`: the conformation table's start (N × zdim .pkl) instead of
    /// `std_z_init`·N(0, I).
    #[serde(default)]
    pub load_z: Option<PathBuf>,
}

/// `config.json` of an `abinit` run: a training run record (so `eval-vol` and `analyze` read it) plus
/// the settings above.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrgnaiRecord {
    #[serde(flatten)]
    pub run: RunRecord,
    pub abinit_ai: DrgnaiConfig,
}

/// The phase of an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pretrain,
    Search,
    Sgd,
}

/// One epoch's figures.
#[derive(Clone, Copy, Debug)]
pub struct EpochLog {
    pub epoch: usize,
    pub phase: Phase,
    /// Images stepped on.
    pub images: usize,
    /// Mean loss and reconstruction term over those images.
    pub loss: f64,
    pub gen: f64,
    pub seconds: f64,
    pub search: SearchStats,
    pub search_seconds: f64,
}

/// What a run returns.
pub struct DrgnaiResult {
    /// The last poses (translations as a fraction of D).
    pub poses: Poses,
    /// The conformation table (N, zdim); empty when homogeneous.
    pub z: Vec<f32>,
    pub history: Vec<EpochLog>,
    pub d: usize,
    pub n: usize,
}

struct Model {
    be: CpuBackend<f32>,
    store: Store,
    decoder: Decoder,
    adam: Adam<CpuBackend<f32>>,
    rf_name: String,
}

/// The per-image tables of a run.
struct Tables {
    /// (N, zdim) conformations; None when homogeneous.
    conf: Option<AdamRows>,
    /// Rotations and translations (pixels): from the first SGD epoch on.
    pose: Option<PoseTable>,
    trans: Option<AdamRows>,
}

/// How a step gets its rotations.
enum RotIn<'a> {
    Given(&'a [[f32; 9]]),
    /// The pose table, and the masked lattice on the host for [`Decoder::forward_posed`].
    Table(&'a PoseTable, &'a [[f64; 3]]),
}

/// What one step returns: values and the tables' gradients.
struct StepOut {
    loss: f64,
    gen: f64,
    conf_grad: Option<Vec<f32>>,
    rot_grad: Option<Vec<f32>>,
    /// ∂loss/∂(translated image) (B, P), for the translation's chain rule.
    y_grad: Option<Vec<f32>>,
}

impl DrgnaiConfig {
    /// The number of pose-search epochs and the phase of epoch `e`.
    pub fn phase(&self, epoch: usize) -> Phase {
        if epoch == 0 {
            Phase::Pretrain
        } else if epoch <= self.epochs_pose_search {
            Phase::Search
        } else {
            Phase::Sgd
        }
    }

    fn check(&self) -> Result<()> {
        let tc = &self.train;
        if tc.zdim == Some(0) {
            return Err(Error::invalid(
                "abinit: zdim 0 is the homogeneous run (None), not Some(0)",
            ));
        }
        if self.batch_size_pretrain == 0
            || self.batch_size_hps == 0
            || self.batch_size_sgd == 0
            || tc.checkpoint == 0
        {
            return Err(Error::invalid(
                "--batch-size-known-poses, --batch-size-hps, --batch-size-sgd and --checkpoint must be at least 1",
            ));
        }
        if self.oversample == 0 {
            return Err(Error::invalid("--oversample must be at least 1"));
        }
        for (name, v) in [
            ("--lr-pose-table", self.lr_pose_table),
            ("--lr-conf-table", self.lr_conf_table),
            ("--lr", tc.lr),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::invalid(format!("{name} must be > 0, got {v}")));
            }
        }
        for (name, v) in [
            ("--std-z-init", self.std_z_init),
            ("--l2-smoothness-regularizer", self.l2_smoothness),
            ("--trans-l1-regularizer", self.trans_l1),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(format!("{name} must be ≥ 0, got {v}")));
            }
        }
        if tc.tilt.is_some() {
            return Err(Error::invalid(
                "abinit does not take tilt pairs; use abinit-het --tilt",
            ));
        }
        Ok(())
    }
}

/// Run `abinit` as configured; `progress` shows progress bars and per-epoch lines on stderr.
pub fn drgnai(cfg: &DrgnaiConfig, progress: bool) -> Result<DrgnaiResult> {
    cfg.check()?;
    let data = open_inputs(&cfg.train)?;
    let (n, d) = (data.images.n, data.images.d);
    // the schedule's counts resolved against N (the reference's arithmetic)
    let mut cfg = cfg.clone();
    if let Some(k) = cfg.n_imgs_pose_search.take() {
        cfg.epochs_pose_search = (k / n.max(1) + 1).max(2);
    }
    if let Some(e) = cfg.epochs_sgd.take() {
        cfg.train.num_epochs = cfg.epochs_pose_search + e;
    }
    cfg.train.autodecoder = cfg.train.zdim.is_some();
    let cfg = &cfg;
    let tc = cfg.train.clone();
    let pe: PeKind = tc.pe_type.parse()?;
    let domain = parse_domain(&tc.domain)?;
    let act = parse_activation(&tc.activation)?;
    let zdim = tc.zdim.unwrap_or(0);
    let mut ps = PoseSearch::new(cfg.search.clone(), d)?;

    let be = CpuBackend::<f32>::new().with_bf16_gemm(tc.amp);
    let (store, _, decoder, prefix) =
        build_model(&be, &tc, d, 0, EncodeMode::Resid, domain, pe, act)?;
    let mut m = Model {
        be,
        store,
        decoder,
        adam: Adam::new(tc.lr, tc.wd),
        rf_name: format!("{prefix}rand_freqs"),
    };
    let mut rng = StdRng::seed_from_u64(epoch_seed(tc.seed, 0, 30));
    let z_start: Option<Vec<f64>> = match &cfg.load_z {
        Some(path) => {
            let z = crate::analysis::latent::load_z(path)?;
            if z.zdim != zdim || z.n != n {
                return Err(Error::format(
                    path,
                    format!(
                        "--load-z: {} × {} latents, the run has {n} images and zdim {zdim}",
                        z.n, z.zdim
                    ),
                ));
            }
            Some(z.z.iter().map(|&v| v as f64).collect())
        }
        None => None,
    };
    let mut tables = Tables {
        conf: (zdim > 0)
            .then(|| {
                let init: Vec<f64> = z_start.clone().unwrap_or_else(|| {
                    (0..n * zdim)
                        .map(|_| {
                            let e: f64 = StandardNormal.sample(&mut rng);
                            cfg.std_z_init * e
                        })
                        .collect()
                });
                AdamRows::new(init, zdim, cfg.lr_conf_table, true)
            })
            .transpose()?,
        pose: None,
        trans: None,
    };
    // The pose arrays: the poses each image was last trained at (identity and 0 at first).
    let mut rots = vec![[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]; n];
    let mut trans = vec![[0f32; 2]; n];
    if let Some(pp) = &cfg.load_poses {
        let p = Poses::load(pp)?;
        check_count(pp, "poses", p.len(), n)?;
        rots = p.rots;
        if let Some(t) = p.trans {
            trans = t
                .iter()
                .map(|t| [t[0] * d as f32, t[1] * d as f32])
                .collect();
        }
    }
    let mut start = if cfg.n_imgs_pretrain != 0 { 0 } else { 1 };
    if let Some(path) = &tc.load {
        crate::train::check_resume(&tc, path, progress)?;
        let epoch = restore(
            &m.be,
            &mut m.store,
            &mut m.decoder,
            &mut m.adam,
            &m.rf_name,
            path,
        )?;
        start = epoch + 1;
        load_tables(&mut tables, path, cfg, n, zdim)?;
    }
    std::fs::create_dir_all(&tc.outdir).map_err(|err| Error::Io {
        path: tc.outdir.clone(),
        err,
    })?;
    let apix = data
        .ctf
        .as_ref()
        .and_then(|c| c.rows.first())
        .map(|r| r[1])
        .unwrap_or(1.0);
    let p = data.mask.len();
    let freqs = data.lattice.freqs2d();
    let mask_freqs: Vec<[f32; 2]> = data.mask.iter().map(|&k| freqs[k]).collect();
    // the masked lattice in f64, for the posed decoder of the SGD epochs
    let host = host_coords(&data.coords);
    let lattice_side = (d + 1) as f32;
    let l2w: Vec<f32> = mask_freqs
        .iter()
        .map(|k| lattice_side * (k[0] * k[0] + k[1] * k[1]).sqrt())
        .collect();

    let mut history = Vec::new();
    let mut seen = 0usize;
    let mut last = None;
    for epoch in start..=tc.num_epochs {
        let phase = cfg.phase(epoch);
        let t0 = std::time::Instant::now();
        if phase == Phase::Sgd && tables.pose.is_none() && !cfg.fixed_poses {
            // the pose table starts at the poses of the last search (or --load-poses)
            tables.pose = Some(PoseTable::with_adam(
                &rots,
                cfg.emb,
                cfg.lr_pose_table,
                true,
            )?);
            let t: Vec<f64> = trans
                .iter()
                .flat_map(|t| [t[0] as f64, t[1] as f64])
                .collect();
            tables.trans = Some(AdamRows::new(t, 2, cfg.lr_pose_table, true)?);
        }
        let bs = match phase {
            Phase::Pretrain => cfg.batch_size_pretrain,
            Phase::Search => cfg.batch_size_hps,
            Phase::Sgd => cfg.batch_size_sgd,
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(tc.seed, epoch, 1)));
        let limit = match phase {
            Phase::Pretrain if cfg.n_imgs_pretrain > 0 => cfg.n_imgs_pretrain as usize,
            _ => usize::MAX,
        };
        let mut rng = StdRng::seed_from_u64(epoch_seed(tc.seed, epoch, 2));
        let label = match phase {
            Phase::Pretrain => format!("epoch 0/{} (pretraining)", tc.num_epochs),
            Phase::Search => format!("epoch {epoch}/{} (pose search)", tc.num_epochs),
            Phase::Sgd => format!("epoch {epoch}/{} (SGD)", tc.num_epochs),
        };
        let pb = progress.then(|| crate::cli::progress::bar(limit.min(n) as u64, label.as_str()));
        let mut log = EpochLog {
            epoch,
            phase,
            images: 0,
            loss: 0.0,
            gen: 0.0,
            seconds: 0.0,
            search: SearchStats::default(),
            search_seconds: 0.0,
        };
        // searched poses (and the z searched at) of the images of the current chunk
        let mut pending: HashMap<usize, Searched> = HashMap::new();
        let chunk_len = cfg.search_chunk.unwrap_or(bs).max(bs).div_ceil(bs) * bs;
        let mut pos = 0;
        for idx in order.chunks(bs) {
            let nb = idx.len();
            let pose_only = seen < cfg.pose_only_phase || zdim == 0 || phase == Phase::Pretrain;
            let l = data.load(idx)?;
            let mut z_rows: Option<Vec<f32>> = match (&tables.conf, pose_only) {
                (Some(_), true) => Some(random_z(&mut rng, nb * zdim, cfg.std_z_init)),
                (Some(c), false) => Some(c.rows(idx)),
                (None, _) => None,
            };
            // this step's poses
            let (br, bt): (Vec<[f32; 9]>, Vec<[f32; 2]>) = match phase {
                Phase::Pretrain => (
                    random_rotations(nb, &mut rng)
                        .iter()
                        .map(|r| r.map(|v| v as f32))
                        .collect(),
                    vec![[0.0; 2]; nb],
                ),
                Phase::Search => {
                    if !pending.contains_key(&idx[0]) {
                        // search this minibatch and the next ones up to the chunk against the
                        // model as it is now
                        let ts = std::time::Instant::now();
                        let chunk = &order[pos..(pos + chunk_len).min(n)];
                        let zc: Option<Vec<f32>> = match (&tables.conf, pose_only) {
                            (Some(_), true) => {
                                Some(random_z(&mut rng, chunk.len() * zdim, cfg.std_z_init))
                            }
                            (Some(c), false) => Some(c.rows(chunk)),
                            (None, _) => None,
                        };
                        let seed = epoch_seed(tc.seed, epoch, 3 + pos as u64);
                        let (r, t) = search_images(
                            &mut ps,
                            &m,
                            &data,
                            chunk,
                            zc.as_deref(),
                            cfg,
                            bs,
                            seed,
                            &mut log.search,
                        )?;
                        for (j, &i) in chunk.iter().enumerate() {
                            let zj = zc.as_ref().map(|z| z[j * zdim..(j + 1) * zdim].to_vec());
                            pending.insert(i, (r[j], t[j], zj));
                        }
                        log.search_seconds += ts.elapsed().as_secs_f64();
                    }
                    let mut br = Vec::with_capacity(nb);
                    let mut bt = Vec::with_capacity(nb);
                    let mut bz = Vec::new();
                    for i in idx {
                        let (r, t, z) = pending.remove(i).expect("searched above");
                        br.push(r);
                        bt.push(if cfg.no_trans { [0.0; 2] } else { t });
                        bz.extend(z.unwrap_or_default());
                    }
                    if pose_only && zdim > 0 {
                        // the step decodes at the z the search used
                        z_rows = Some(bz);
                    }
                    (br, bt)
                }
                Phase::Sgd if cfg.fixed_poses => (
                    idx.iter().map(|&i| rots[i]).collect(),
                    idx.iter().map(|&i| trans[i]).collect(),
                ),
                Phase::Sgd => {
                    let pt = tables.pose.as_ref().expect("set at the first SGD epoch");
                    let tt = tables.trans.as_ref().expect("set with the pose table");
                    let all = pt.rotations_of(idx)?;
                    let t = tt.rows(idx);
                    (all, t.chunks(2).map(|c| [c[0], c[1]]).collect())
                }
            };
            let (y, yneg) = shifted(&data, &l, &bt);
            let ctf_m = l.ctf.as_ref().map(|c| masked(&data, c, nb));
            let refine_t = phase == Phase::Sgd && !cfg.no_trans && !cfg.fixed_poses;
            let conf_learns = !pose_only && epoch > cfg.conf_frozen_epochs;
            let rot_in = match (phase, &tables.pose) {
                (Phase::Sgd, Some(pt)) => RotIn::Table(pt, &host),
                _ => RotIn::Given(&br),
            };
            let out = step(
                &mut m,
                &data,
                idx,
                &y,
                ctf_m.as_deref(),
                rot_in,
                z_rows.as_deref().filter(|_| zdim > 0),
                conf_learns,
                refine_t,
                cfg.l2_smoothness,
                &l2w,
            )?;
            let mut loss = out.loss;
            if let (Some(c), Some(g)) = (&mut tables.conf, &out.conf_grad) {
                c.step(idx, g)?;
            }
            if let (Some(pt), Some(g)) = (&mut tables.pose, &out.rot_grad) {
                pt.step(idx, g)?;
            }
            if let (Some(tt), Some(gy)) = (&mut tables.trans, &out.y_grad) {
                let mut g = trans_grad(gy, &yneg, &mask_freqs, p);
                if cfg.trans_l1 > 0.0 {
                    let w = cfg.trans_l1 / nb as f64;
                    for (gi, t) in g.iter_mut().zip(bt.iter().flatten()) {
                        *gi += (w * t.signum() as f64) as f32;
                        loss += w * t.abs() as f64;
                    }
                }
                tt.step(idx, &g)?;
            }
            for (j, &i) in idx.iter().enumerate() {
                rots[i] = br[j];
                trans[i] = bt[j];
            }
            log.loss += loss * nb as f64;
            log.gen += out.gen * nb as f64;
            log.images += nb;
            seen += nb;
            pos += nb;
            if let Some(pb) = &pb {
                pb.inc(nb as u64);
            }
            if log.images > limit {
                break;
            }
        }
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        log.loss /= log.images.max(1) as f64;
        log.gen /= log.images.max(1) as f64;
        log.seconds = t0.elapsed().as_secs_f64();
        if progress {
            let search = if phase == Phase::Search {
                format!(
                    "; pose search L {}→{} in {:.1} s",
                    ps.band_limit(0),
                    ps.band_limit(cfg.search.niter),
                    log.search_seconds
                )
            } else {
                String::new()
            };
            eprintln!(
                "# =====> Epoch: {epoch} ({}) {} images, average loss = {:.6} (reconstruction {:.6}); {:.1} s{search}",
                match phase {
                    Phase::Pretrain => "pretraining",
                    Phase::Search => "pose search",
                    Phase::Sgd => "SGD",
                },
                log.images,
                log.loss,
                log.gen,
                log.seconds
            );
        }
        history.push(log);
        last = Some(epoch);
        let summary = epoch == 0
            || phase == Phase::Search
            || epoch.is_multiple_of(tc.checkpoint)
            || epoch == tc.num_epochs;
        if summary {
            save(
                cfg,
                &tc,
                &data,
                &m,
                &tables,
                &rots,
                &trans,
                epoch,
                &epoch.to_string(),
                apix,
            )?;
        }
    }
    if let Some(epoch) = last {
        save(cfg, &tc, &data, &m, &tables, &rots, &trans, epoch, "", apix)?;
    }
    Ok(DrgnaiResult {
        poses: to_poses(&rots, &trans, d),
        z: tables
            .conf
            .as_ref()
            .map(|c| c.values().iter().map(|&v| v as f32).collect())
            .unwrap_or_default(),
        history,
        d,
        n,
    })
}

/// Rotations and translations (pixels) of a list of images.
type PoseArrays = (Vec<[f32; 9]>, Vec<[f32; 2]>);

/// The pose-only phase's z: `len` values std·N(0, 1) (drawn in f32).
fn random_z(rng: &mut StdRng, len: usize, std: f64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let e: f32 = StandardNormal.sample(rng);
            std as f32 * e
        })
        .collect()
}

/// A searched image's pose (rotation, translation in pixels) and the z it was searched at.
type Searched = ([f32; 9], [f32; 2], Option<Vec<f32>>);

/// Search images `idx` (their latents `z`, (n, zdim), or None when homogeneous) against the model as
/// it is, in minibatches of `bs`; returns their rotations and translations (pixels). With
/// `cfg.search_z_bins` K > 0 the latents are clustered into K centres (k-means seeded by `seed`) and
/// each image is searched at its centre's z: one latent grid per centre serves every minibatch and
/// level, and the images of a bin are searched together against shared slices.
#[allow(clippy::too_many_arguments)]
fn search_images(
    ps: &mut PoseSearch,
    m: &Model,
    data: &Inputs,
    idx: &[usize],
    z: Option<&[f32]>,
    cfg: &DrgnaiConfig,
    bs: usize,
    seed: u64,
    stats: &mut SearchStats,
) -> Result<PoseArrays> {
    let d = data.images.d;
    let zdim = m.decoder.zdim;
    let band = if cfg.search.bound {
        d / 2
    } else {
        ps.band_limit(cfg.search.niter)
    };
    let volume = if zdim == 0 {
        Some(VolumeSlices::from_decoder(
            &m.be,
            &m.store,
            &m.decoder,
            cfg.oversample,
            band,
        )?)
    } else {
        None
    };
    let binned = match z {
        Some(z) if cfg.search_z_bins > 0 => {
            let k = cfg.search_z_bins.min(idx.len());
            let km = crate::analysis::kmeans::kmeans(z, idx.len(), zdim, k, 20, seed)?;
            let centres: Vec<f32> = km.centers.iter().map(|&v| v as f32).collect();
            Some((centres, km.labels))
        }
        _ => None,
    };
    let grid = binned.as_ref().map(|(centres, _)| LatentGridSlices {
        be: &m.be,
        store: &m.store,
        decoder: &m.decoder,
        z: centres,
        oversample: cfg.oversample,
        min_radius: band as f32 / d as f32,
        cache: Some(GridCache::default()),
    });
    let mut rots = vec![[0f32; 9]; idx.len()];
    let mut trans = vec![[0f32; 2]; idx.len()];
    // minibatches of positions in idx: in order, or each bin's images together (a bin's images see
    // the same slices, which the search then computes once per minibatch)
    let groups: Vec<(Option<usize>, Vec<usize>)> = match &binned {
        Some((centres, labels)) => (0..centres.len() / zdim.max(1))
            .flat_map(|k| {
                let members: Vec<usize> = (0..idx.len()).filter(|&j| labels[j] == k).collect();
                members
                    .chunks(bs)
                    .map(|c| (Some(k), c.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect(),
        None => (0..idx.len())
            .collect::<Vec<_>>()
            .chunks(bs)
            .map(|c| (None, c.to_vec()))
            .collect(),
    };
    for (bin, pos) in groups {
        let sub: Vec<usize> = pos.iter().map(|&j| idx[j]).collect();
        let l = data.load(&sub)?;
        let batch = SearchBatch {
            ht: &l.ht,
            ctf: l.ctf.as_deref(),
            tilt: None,
        };
        let res = match (&grid, bin) {
            (Some(g), Some(k)) => {
                let model = BinSlices {
                    inner: g,
                    centre: k,
                };
                ps.search(&m.be, &batch, &model, &model)?
            }
            _ => {
                let zs: Option<Vec<f32>> = z.map(|z| {
                    pos.iter()
                        .flat_map(|&j| z[j * zdim..(j + 1) * zdim].iter().copied())
                        .collect()
                });
                search_batch(
                    ps,
                    (&m.be, &m.store, &m.decoder),
                    &batch,
                    zs.as_deref(),
                    volume.as_ref(),
                    cfg.oversample,
                    band,
                    false,
                )?
            }
        };
        add_stats(stats, &res.stats);
        for (b, &j) in pos.iter().enumerate() {
            rots[j] = res.rot[b];
            trans[j] = res.trans_px[b];
        }
    }
    Ok((rots, trans))
}

/// The slices of one latent bin, shared by the minibatch (all its images are in bin `centre`).
struct BinSlices<'a, 'b> {
    inner: &'a LatentGridSlices<'b>,
    centre: usize,
}

impl SliceModel for BinSlices<'_, '_> {
    fn shared(&self) -> bool {
        true
    }

    fn slices(
        &self,
        coords: &[[f32; 3]],
        rots: &[[f32; 9]],
        _owners: &[usize],
    ) -> Result<Vec<f32>> {
        self.inner
            .slices(coords, rots, &vec![self.centre; rots.len()])
    }
}

/// The observed images translated by `t` (pixels), on the decoder's mask (B, P), and the same at
/// the mirrored frequencies −k (the translation's derivative: ∂H_t(k)/∂t = 2πk·H_t(−k)).
fn shifted(data: &Inputs, l: &Loaded, t: &[[f32; 2]]) -> (Vec<f32>, Vec<f32>) {
    let dd = data.lattice.len();
    let freqs = data.lattice.freqs2d();
    let p = data.mask.len();
    let nb = t.len();
    let mut y = Vec::with_capacity(nb * p);
    let mut yneg = Vec::with_capacity(nb * p);
    let mut tr = vec![0f32; dd];
    for (b, tb) in t.iter().enumerate() {
        translate_ht_into(&l.ht[b * dd..(b + 1) * dd], freqs, *tb, &mut tr);
        y.extend(data.mask.iter().map(|&k| tr[k]));
        yneg.extend(data.mask.iter().map(|&k| tr[dd - 1 - k]));
    }
    (y, yneg)
}

/// A stack's values (B, (D+1)²) on the decoder's mask (B, P).
fn masked(data: &Inputs, stack: &[f32], nb: usize) -> Vec<f32> {
    let dd = data.lattice.len();
    (0..nb)
        .flat_map(|b| data.mask.iter().map(move |&k| stack[b * dd + k]))
        .collect()
}

/// ∂loss/∂t (B, 2) from ∂loss/∂H_t (B, P): Σ_k g(k)·2πk·H_t(−k).
fn trans_grad(gy: &[f32], yneg: &[f32], mask_freqs: &[[f32; 2]], p: usize) -> Vec<f32> {
    let tau = 2.0 * std::f64::consts::PI;
    gy.chunks(p)
        .zip(yneg.chunks(p))
        .flat_map(|(g, yn)| {
            let (mut gx, mut gyy) = (0f64, 0f64);
            for ((gk, ynk), k) in g.iter().zip(yn).zip(mask_freqs) {
                let a = *gk as f64 * *ynk as f64 * tau;
                gx += a * k[0] as f64;
                gyy += a * k[1] as f64;
            }
            [gx as f32, gyy as f32]
        })
        .collect()
}

/// One training step of the decoder at the given poses and z; returns the tables' gradients
/// (`conf_learns`: z is the conformation table's rows; `want_y`: the translated image's gradient).
#[allow(clippy::too_many_arguments)]
fn step(
    m: &mut Model,
    data: &Inputs,
    idx: &[usize],
    y: &[f32],
    ctf: Option<&[f32]>,
    rot: RotIn<'_>,
    z: Option<&[f32]>,
    conf_learns: bool,
    want_y: bool,
    l2: f64,
    l2w: &[f32],
) -> Result<StepOut> {
    let be = m.be.clone();
    let nb = idx.len();
    let p = data.mask.len();
    let zdim = m.decoder.zdim;
    let mut t = Tape::new(&be, &m.store);
    let yv = Tensor::from_slice(&be, y, &[nb, p])?;
    let yv = if want_y { t.input(yv) } else { t.constant(yv) };
    let zv = match z {
        Some(z) => {
            let zt = Tensor::from_slice(&be, z, &[nb, zdim])?;
            Some(if conf_learns {
                t.input(zt)
            } else {
                t.constant(zt)
            })
        }
        None => None,
    };
    let mut rows = None;
    let yr = match rot {
        RotIn::Given(r) => {
            let rf: Vec<f32> = r.iter().flatten().copied().collect();
            let rv = t.constant(Tensor::from_slice(&be, &rf, &[nb, 3, 3])?);
            let coords = t.constant(Tensor::from_slice(&be, &data.coords, &[p, 3])?);
            m.decoder.forward(&mut t, coords, rv, zv)?
        }
        RotIn::Table(pt, coords) => {
            let w = pt.emb.width();
            let rv = t.input(Tensor::from_slice(&be, &pt.rows(idx), &[nb, w])?);
            rows = Some(rv);
            let r = pt.emb.rotation(&mut t, rv)?;
            m.decoder.forward_posed(&mut t, coords, r, zv)?
        }
    };
    let yc = match ctf {
        Some(c) => {
            let cv = t.constant(Tensor::from_slice(&be, c, &[nb, p])?);
            t.mul(yr, cv)?
        }
        None => yr,
    };
    let gen = t.mse(yc, yv)?;
    let loss = if l2 > 0.0 {
        let w: Vec<f32> = (0..nb).flat_map(|_| l2w.iter().copied()).collect();
        let wv = t.constant(Tensor::from_slice(&be, &w, &[nb, p])?);
        let sq = t.mul(yc, yc)?;
        let ws = t.mul(sq, wv)?;
        let s = t.sum_all(ws, l2 / nb as f64)?;
        t.add(gen, s)?
    } else {
        gen
    };
    let loss_v = t.to_vec(loss)?[0] as f64;
    let gen_v = t.to_vec(gen)?[0] as f64;
    let grads = t.backward(loss)?;
    let take = |v: Option<crate::autodiff::Var>, what: &str| -> Result<Option<Vec<f32>>> {
        match v {
            Some(v) => match grads.get(v) {
                Some(g) => Ok(Some(be.to_vec(g)?)),
                None => Err(Error::invalid(format!(
                    "abinit: no gradient reached the {what}"
                ))),
            },
            None => Ok(None),
        }
    };
    let conf_grad = take(zv.filter(|_| conf_learns), "conformation table")?;
    let rot_grad = take(rows, "pose table")?;
    let y_grad = take(Some(yv).filter(|_| want_y), "translations")?;
    drop(t);
    m.adam.step(&be, &mut m.store, &grads)?;
    grads.recycle(&be);
    Ok(StepOut {
        loss: loss_v,
        gen: gen_v,
        conf_grad,
        rot_grad,
        y_grad,
    })
}

/// Write the outputs of epoch `epoch` under `tag` ("N", or "" for the final ones).
#[allow(clippy::too_many_arguments)]
fn save(
    cfg: &DrgnaiConfig,
    tc: &TrainConfig,
    data: &Inputs,
    m: &Model,
    tables: &Tables,
    rots: &[[f32; 9]],
    trans_px: &[[f32; 2]],
    epoch: usize,
    tag: &str,
    apix: f32,
) -> Result<()> {
    let (n, d) = (data.images.n, data.images.d);
    let name = |stem: &str, ext: &str| output_name(&tc.outdir, stem, tag, ext);
    let mut poses = to_poses(rots, trans_px, d);
    if cfg.no_trans {
        poses.trans = None;
    }
    if !cfg.fixed_poses {
        poses.save(name("pose", "pkl"))?;
    }
    let zvol = match &tables.conf {
        Some(c) => {
            let zdim = c.width;
            let mu: Vec<f32> = c.values().iter().map(|&v| v as f32).collect();
            write_z(&name("z", "pkl"), mu.clone(), vec![0.0; n * zdim], n, zdim)?;
            Some(nearest_to_mean(&mu, zdim))
        }
        None => None,
    };
    let vol = crate::model::decoder::eval_volume(
        &m.be,
        &m.store,
        &m.decoder,
        zvol.as_deref(),
        data.images.norm,
    )?;
    crate::io::mrc::write_mrc(name("reconstruct", "mrc"), &vol, (d, d, d), apix, true)?;
    let mut ck = checkpoint_of(&m.be, &m.store, &m.decoder, &m.adam, &m.rf_name, epoch)?;
    ck.settings = crate::train::Settings::settings(tc);
    ck.save(&name("weights", "safetensors"))?;
    save_tables(tables, &name("tables", "safetensors"))?;
    let mut train = tc.clone();
    if !cfg.fixed_poses {
        // the run's own poses (train-dec keeps the poses file it was given)
        train.poses = tc.outdir.join("pose.pkl");
    }
    let record = DrgnaiRecord {
        run: run_record(&train, d, n, data.images.norm, epoch),
        abinit_ai: cfg.clone(),
    };
    write_json(&tc.outdir.join("config.json"), &record)
}

/// The row of `z` (N, zdim) nearest the rows' mean (the reference's volume for `reconstruct.N.mrc`).
fn nearest_to_mean(z: &[f32], zdim: usize) -> Vec<f32> {
    let n = z.len() / zdim;
    let mean: Vec<f64> = (0..zdim)
        .map(|j| (0..n).map(|i| z[i * zdim + j] as f64).sum::<f64>() / n.max(1) as f64)
        .collect();
    let best = (0..n)
        .min_by(|&a, &b| {
            let da: f64 = (0..zdim)
                .map(|j| (z[a * zdim + j] as f64 - mean[j]).powi(2))
                .sum();
            let db: f64 = (0..zdim)
                .map(|j| (z[b * zdim + j] as f64 - mean[j]).powi(2))
                .sum();
            da.total_cmp(&db)
        })
        .unwrap_or(0);
    z[best * zdim..(best + 1) * zdim].to_vec()
}

/// A table's saved state: parameters, first and second moments, steps.
type RowState = (Vec<f64>, Vec<f64>, Vec<f64>, u64);

/// The names of the tables in `tables.N.safetensors`.
const TABLE_NAMES: [&str; 3] = ["conf", "pose", "trans"];

/// Write the tables and their Adam state (f64) as safetensors, atomically.
fn save_tables(tables: &Tables, path: &std::path::Path) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let parts: [Option<&AdamRows>; 3] = [
        tables.conf.as_ref(),
        tables.pose.as_ref().map(|p| &p.rows),
        tables.trans.as_ref(),
    ];
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "cryofield abinit tables".to_string());
    for (name, rows) in TABLE_NAMES.iter().zip(parts) {
        let Some(rows) = rows else { continue };
        let (p, m, v, steps) = rows.state();
        let shape = vec![rows.len(), rows.width];
        for (what, vals) in [("params", p), ("m", m), ("v", v)] {
            bufs.push((
                format!("{name}.{what}"),
                shape.clone(),
                bytemuck::cast_slice::<f64, u8>(vals).to_vec(),
            ));
        }
        meta.insert(format!("{name}.steps"), steps.to_string());
    }
    if let Some(p) = &tables.pose {
        meta.insert(
            "pose.emb".to_string(),
            format!("{:?}", p.emb).to_lowercase(),
        );
    }
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F64, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::format(path, format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let data = safetensors::serialize(views, &Some(meta))
        .map_err(|e| Error::format(path, format!("cannot serialize: {e}")))?;
    write_bytes_atomic(path, &data)
}

/// With `--load weights.N.safetensors`: restore the tables from `tables.N.safetensors` beside it.
fn load_tables(
    tables: &mut Tables,
    weights: &std::path::Path,
    cfg: &DrgnaiConfig,
    n: usize,
    zdim: usize,
) -> Result<()> {
    use safetensors::tensor::{Dtype, SafeTensors};
    let file = weights
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("weights"))
        .ok_or_else(|| {
            Error::format(
                weights,
                "--load: expected a weights[.N].safetensors written by abinit",
            )
        })?;
    let path = weights.with_file_name(format!("tables{file}"));
    let data = std::fs::read(&path).map_err(|err| Error::Io {
        path: path.clone(),
        err,
    })?;
    let (_, meta) = SafeTensors::read_metadata(&data)
        .map_err(|e| Error::format(&path, format!("not a safetensors file: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&data)
        .map_err(|e| Error::format(&path, format!("not a safetensors file: {e}")))?;
    let get = |name: &str, width: usize| -> Result<Option<RowState>> {
        let Some(steps) = meta.get(&format!("{name}.steps")) else {
            return Ok(None);
        };
        let steps: u64 = steps
            .parse()
            .map_err(|_| Error::format(&path, format!("{name}.steps is not a count")))?;
        let mut out = Vec::new();
        for what in ["params", "m", "v"] {
            let key = format!("{name}.{what}");
            let t = st
                .tensor(&key)
                .map_err(|_| Error::format(&path, format!("tensor `{key}` missing")))?;
            if t.dtype() != Dtype::F64 || t.shape() != [n, width] {
                return Err(Error::format(
                    &path,
                    format!(
                        "tensor `{key}`: expected F64 ({n}, {width}), got {:?} {:?} (another data set or --zdim?)",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            out.push(
                t.data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect::<Vec<f64>>(),
            );
        }
        let v = out.pop().expect("three");
        let m = out.pop().expect("three");
        let p = out.pop().expect("three");
        Ok(Some((p, m, v, steps)))
    };
    if let Some(c) = &mut tables.conf {
        let (p, m, v, s) = get("conf", zdim)?
            .ok_or_else(|| Error::format(&path, "no conformation table (a homogeneous run?)"))?;
        c.set_state(p, m, v, s)?;
    }
    if let Some((p, m, v, s)) = get("pose", cfg.emb.width())? {
        let recorded = meta.get("pose.emb").cloned().unwrap_or_default();
        let want = format!("{:?}", cfg.emb).to_lowercase();
        if recorded != want {
            return Err(Error::format(
                &path,
                format!("the pose table is {recorded:?}, this run's --emb-type is {want:?}"),
            ));
        }
        let mut rows = AdamRows::new(p.clone(), cfg.emb.width(), cfg.lr_pose_table, true)?;
        rows.set_state(p, m, v, s)?;
        tables.pose = Some(PoseTable { emb: cfg.emb, rows });
        let (p, m, v, s) = get("trans", 2)?
            .ok_or_else(|| Error::format(&path, "a pose table without its translations"))?;
        let mut tt = AdamRows::new(p.clone(), 2, cfg.lr_pose_table, true)?;
        tt.set_state(p, m, v, s)?;
        tables.trans = Some(tt);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fourier::lattice::Lattice;
    use rand::Rng;

    /// The translation's chain rule against central differences of L(t) = Σ_k w_k·H_t(k) on the
    /// whole lattice (a centrally symmetric mask), in f64-accurate sums.
    #[test]
    fn translation_gradient_matches_finite_differences() {
        let lat = Lattice::for_image(16, false).unwrap();
        let (dd, freqs) = (lat.len(), lat.freqs2d());
        let mut rng = StdRng::seed_from_u64(4);
        let h: Vec<f32> = (0..dd).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let w: Vec<f32> = (0..dd).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let loss = |t: [f32; 2]| -> f64 {
            let mut y = vec![0f32; dd];
            translate_ht_into(&h, freqs, t, &mut y);
            y.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        for t in [[0.0f32, 0.0], [1.3, -0.7], [-2.5, 3.1]] {
            let mut y = vec![0f32; dd];
            translate_ht_into(&h, freqs, t, &mut y);
            let yneg: Vec<f32> = (0..dd).map(|k| y[dd - 1 - k]).collect();
            let g = trans_grad(&w, &yneg, freqs, dd);
            let e = 1e-2f32;
            for c in 0..2 {
                let (mut tp, mut tm) = (t, t);
                tp[c] += e;
                tm[c] -= e;
                let fd = (loss(tp) - loss(tm)) / (2.0 * e as f64);
                let tol = 2e-3 * fd.abs().max(1.0);
                assert!(
                    (g[c] as f64 - fd).abs() < tol,
                    "t {t:?}, axis {c}: chain rule {} vs finite difference {fd}",
                    g[c]
                );
            }
        }
    }

    #[test]
    fn nearest_to_mean_picks_the_central_row() {
        let z = [0.0f32, 0.0, 10.0, 10.0, 4.0, 6.0, 1.0, 1.0];
        assert_eq!(nearest_to_mean(&z, 2), vec![4.0, 6.0]);
    }
}
