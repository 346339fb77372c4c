//! `abinit-homo`: homogeneous ab initio reconstruction — a neural-field decoder and the poses of
//! every particle learned together, by random-pose pretraining then branch-and-bound pose search
//! with frequency marching every `--ps-freq` epochs (the reference's `abinit_homo_old`). Writes
//! `pose.N.pkl`, `weights.N.safetensors`, `reconstruct.N.mrc` and `config.json` (readable by
//! `eval-vol`; the poses by `train-nn`/`train-vae --poses`).
//!
//! Example: `cryofield abinit-homo particles.mrcs --ctf ctf.pkl -o out/ -n 30`

use crate::cli::pose_search::SearchArgs;
use crate::cli::train_nn::{abs, RunArgs, RunTarget};
use crate::pose::abinit::{abinit, AbinitConfig};
use crate::pose::search::SearchConfig;
use std::path::PathBuf;

/// Flags shared by `abinit-homo` and `abinit-het` (the reference's names and defaults).
#[derive(Debug, clap::Args)]
pub struct AbinitArgs {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// Output folder
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
    /// Resume from weights.N.safetensors (skips pretraining). Of the settings a checkpoint records
    /// (the seed among them), those not given here are taken from it; a checkpoint written before
    /// settings were recorded needs the run's --seed (config.json beside it has it)
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// Poses (pose.N.pkl): with --load, those of the resumed run; alone, initial poses for a new
    /// run (e.g. abinit-homo's for abinit-het): no random-pose pretraining, the first epoch
    /// trains with them and the searches follow at epochs 1 + f, 1 + 2f, … (f = --ps-freq).
    /// Default: search in the first epoch
    #[arg(long = "load-poses")]
    pub load_poses: Option<PathBuf>,
    /// Tilt-pair particle stack (same order as the particles)
    #[arg(long)]
    pub tilt: Option<PathBuf>,
    /// Tilt angle about x between the pair (degrees)
    #[arg(long = "tilt-deg", default_value_t = 45.0)]
    pub tilt_deg: f64,
    /// Number of epochs
    #[arg(short = 'n', long = "num-epochs", default_value_t = 30)]
    pub num_epochs: usize,
    /// Decoder domain
    #[arg(long, default_value = "hartley", value_parser = ["fourier", "hartley"])]
    pub domain: String,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub search: SearchArgs,
    /// X-axis offset of the translation grid (pixels)
    #[arg(long = "t-xshift", default_value_t = 0.0, allow_hyphen_values = true)]
    pub t_xshift: f64,
    /// Y-axis offset of the translation grid (pixels)
    #[arg(long = "t-yshift", default_value_t = 0.0, allow_hyphen_values = true)]
    pub t_yshift: f64,
    /// Number of images of random-pose pretraining (one pass over the data at most)
    #[arg(long, default_value_t = 10000)]
    pub pretrain: usize,
    /// Pose search every this many epochs (epochs 1, 1 + f, 1 + 2f, ...)
    #[arg(long = "ps-freq", default_value_t = 5)]
    pub ps_freq: usize,
    /// Refresh the model the search uses every this many images (default: every minibatch)
    #[arg(long = "pose-model-update-freq")]
    pub pose_model_update_freq: Option<usize>,
    /// Evaluate the decoder at every scored rotation (the reference's way; slow)
    #[arg(long = "exact-slices")]
    pub exact_slices: bool,
}

/// The `config.json` names of the model settings, which the abinit commands always set from
/// their flags (defaults included).
const MODEL_SETTINGS: [&str; 11] = [
    "domain",
    "tilt_deg",
    "zdim",
    "beta",
    "beta_control",
    "enc_layers",
    "enc_dim",
    "encode_mode",
    "enc_mask",
    "dec_layers",
    "dec_dim",
];

/// With `--load`: reconcile `cfg`'s training settings with the checkpoint's
/// ([`crate::train::adopt_settings`]; the model flags count as given). A checkpoint without
/// recorded settings (abinit checkpoints before 2026-12-05) needs `--seed`.
pub fn adopt_settings(cfg: &mut AbinitConfig, a: &AbinitArgs) -> anyhow::Result<()> {
    let mut given = a.run.given();
    given.extend(MODEL_SETTINGS);
    crate::train::adopt_settings(&mut cfg.train, &given)?;
    Ok(())
}

impl AbinitArgs {
    /// The run these flags describe (model sizes, zdim and the ramp filled in by the caller).
    pub fn config(&self, l_ramp_epochs: usize) -> anyhow::Result<AbinitConfig> {
        let mut train = self.run.config(RunTarget {
            particles: &self.particles,
            outdir: &self.outdir,
            poses: &self.outdir.join("pose.pkl"),
            num_epochs: self.num_epochs,
            domain: &self.domain,
            load: self.load.as_deref(),
        })?;
        (train.enc_dim, train.dec_dim) = (256, 256);
        train.tilt = self.tilt.as_deref().map(abs);
        train.tilt_deg = self.tilt_deg;
        let search = SearchConfig {
            t_xshift: self.t_xshift,
            t_yshift: self.t_yshift,
            ..self.search.config()
        };
        Ok(AbinitConfig {
            train,
            search,
            pretrain: self.pretrain,
            ps_freq: self.ps_freq,
            l_ramp_epochs,
            pose_model_update_freq: self.pose_model_update_freq,
            oversample: self.search.oversample,
            exact_slices: self.exact_slices,
            enc_only: false,
            load_poses: self.load_poses.as_deref().map(abs),
        })
    }
}

/// Homogeneous ab initio reconstruction.
#[derive(Debug, clap::Args)]
#[command(about = "Homogeneous ab initio reconstruction with branch-and-bound pose search")]
pub struct Args {
    #[command(flatten)]
    pub common: AbinitArgs,
    /// Epochs over which the search's band limit ramps from --l-start to --l-end (0: no ramp)
    #[arg(long = "l-ramp-epochs", default_value_t = 25)]
    pub l_ramp_epochs: usize,
    /// Hidden layers of the decoder
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Hidden width of the decoder
    #[arg(long, default_value_t = 256)]
    pub dim: usize,
}

/// Run `abinit-homo`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut cfg = a.common.config(a.l_ramp_epochs)?;
    cfg.train.dec_layers = a.layers;
    cfg.train.dec_dim = a.dim;
    adopt_settings(&mut cfg, &a.common)?;
    let r = abinit(&cfg, true)?;
    summary(&r, &cfg);
    Ok(())
}

/// The final summary line of both abinit commands.
pub fn summary(r: &crate::pose::abinit::AbinitResult, cfg: &AbinitConfig) {
    let (scores, secs) = r.history.iter().fold((0u64, 0.0), |(s, t), (_, e)| {
        (s + e.stats.scores, t + e.seconds)
    });
    if let Some((last, _)) = r.history.last() {
        eprintln!(
            "{} images, {} epochs; final loss {:.6}; pose search {:.3e} scores in {:.1} s ({:.3e} scores/s); outputs in {}",
            r.n,
            r.history.len(),
            last.loss,
            scores as f64,
            secs,
            scores as f64 / secs.max(1e-9),
            cfg.train.outdir.display()
        );
    }
}
