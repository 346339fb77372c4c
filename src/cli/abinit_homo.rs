//! `abinit-homo`: homogeneous ab initio reconstruction — a neural-field decoder and the poses of
//! every particle learned together, by random-pose pretraining then branch-and-bound pose search
//! with frequency marching every `--ps-freq` epochs (the reference's `abinit_homo_old`). Writes
//! `pose.N.pkl`, `weights.N.safetensors`, `reconstruct.N.mrc` and `config.json` (readable by
//! `eval-vol`; the poses by `train-nn`/`train-vae --poses`).
//!
//! Example: `cryofield abinit-homo particles.mrcs --ctf ctf.pkl -o out/ -n 30`

use crate::pose::abinit::{abinit, AbinitConfig};
use crate::pose::search::{SearchConfig, TransRefine};
use crate::train::TrainConfig;
use std::path::PathBuf;

/// Flags shared by `abinit-homo` and `abinit-het` (the reference's names and defaults).
#[derive(Debug, clap::Args)]
pub struct AbinitArgs {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// Output folder
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
    /// CTF parameters (.pkl)
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Resume from weights.N.safetensors (skips pretraining)
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// Poses to resume from with --load (pose.N.pkl; default: search in the first epoch)
    #[arg(long = "load-poses")]
    pub load_poses: Option<PathBuf>,
    /// Checkpoint every this many epochs
    #[arg(long, default_value_t = 1)]
    pub checkpoint: usize,
    /// Random seed (default: drawn at random, recorded in config.json)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not invert the data sign
    #[arg(long = "uninvert-data")]
    pub uninvert_data: bool,
    /// Do not apply the real-space window
    #[arg(long = "no-window")]
    pub no_window: bool,
    /// Window inner radius (fraction of the box half-width)
    #[arg(long = "window-r", default_value_t = 0.85)]
    pub window_r: f32,
    /// Keep only these particles (.pkl of indices)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Read images from disk per batch instead of loading them all
    #[arg(long)]
    pub lazy: bool,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Data normalization as (mean, std) (default: estimated)
    #[arg(long, num_args = 2, value_names = ["MEAN", "STD"])]
    pub norm: Option<Vec<f32>>,
    /// Tilt-pair particle stack (same order as the particles)
    #[arg(long)]
    pub tilt: Option<PathBuf>,
    /// Tilt angle about x between the pair (degrees)
    #[arg(long = "tilt-deg", default_value_t = 45.0)]
    pub tilt_deg: f64,
    /// Number of epochs
    #[arg(short = 'n', long = "num-epochs", default_value_t = 30)]
    pub num_epochs: usize,
    /// Minibatch size
    #[arg(short = 'b', long = "batch-size", default_value_t = 16)]
    pub batch_size: usize,
    /// Weight decay in Adam
    #[arg(long, default_value_t = 0.0)]
    pub wd: f64,
    /// Learning rate in Adam
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// ± pixels to search over translations
    #[arg(long = "t-extent", default_value_t = 10.0)]
    pub t_extent: f64,
    /// Initial grid size for translations (per axis, at grid resolution 0)
    #[arg(long = "t-ngrid", default_value_t = 7)]
    pub t_ngrid: usize,
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
    /// Starting band limit L of the search (pixels)
    #[arg(long = "l-start", default_value_t = 12)]
    pub l_start: usize,
    /// Final band limit L of the search (pixels; capped at D/2)
    #[arg(long = "l-end", default_value_t = 32)]
    pub l_end: usize,
    /// Number of grid subdivisions
    #[arg(long, default_value_t = 4)]
    pub niter: usize,
    /// Candidate poses kept per image at each subdivision
    #[arg(long, default_value_t = 8)]
    pub nkeptposes: usize,
    /// Resolution of the base SO(3) grid (72·8^r rotations: 2 → 4608)
    #[arg(long = "base-healpy", default_value_t = 2)]
    pub base_healpy: u32,
    /// Refresh the model the search uses every this many images (default: every minibatch)
    #[arg(long = "pose-model-update-freq")]
    pub pose_model_update_freq: Option<usize>,
    /// Translation refinement: `grid` (the base grid scaled by 2^−k around each kept shift, as
    /// the reference) or `children` (the 4 half-step children)
    #[arg(long = "t-refine", default_value = "grid", value_parser = ["grid", "children"])]
    pub t_refine: String,
    /// Prune kept poses with Algorithm 1's bound (full-band error of the best candidate)
    #[arg(long = "bnb-bound")]
    pub bnb_bound: bool,
    /// Oversampling of the interpolated search slices
    #[arg(long, default_value_t = 2)]
    pub oversample: usize,
    /// Evaluate the decoder at every scored rotation (the reference's way; slow)
    #[arg(long = "exact-slices")]
    pub exact_slices: bool,
    /// Positional encoding
    #[arg(long = "pe-type", default_value = "gaussian", value_parser = ["geom_ft", "geom_full", "geom_lowf", "geom_nohighf", "linear_lowf", "gaussian"])]
    pub pe_type: String,
    /// Frequencies per axis of the positional encoding (default D/2)
    #[arg(long = "pe-dim")]
    pub pe_dim: Option<usize>,
    /// Decoder domain
    #[arg(long, default_value = "hartley", value_parser = ["fourier", "hartley"])]
    pub domain: String,
    /// Activation
    #[arg(long, default_value = "relu", value_parser = ["relu", "leaky_relu"])]
    pub activation: String,
    /// Scale of the gaussian positional-encoding frequencies
    #[arg(long = "feat-sigma", default_value_t = 0.5)]
    pub feat_sigma: f64,
}

impl AbinitArgs {
    /// The run these flags describe (model sizes, zdim and the ramp filled in by the caller).
    pub fn config(&self, l_ramp_epochs: usize) -> anyhow::Result<AbinitConfig> {
        let norm = match &self.norm {
            Some(v) if v.len() == 2 => Some([v[0], v[1]]),
            Some(_) => anyhow::bail!("--norm takes two values"),
            None => None,
        };
        let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        let outdir = abs(&self.outdir);
        let train = TrainConfig {
            particles: abs(&self.particles),
            poses: outdir.join("pose.pkl"),
            ctf: self.ctf.as_ref().map(abs),
            outdir,
            ind: self.ind.as_ref().map(abs),
            datadir: self.datadir.as_ref().map(abs),
            zdim: None,
            num_epochs: self.num_epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            wd: self.wd,
            beta: None,
            beta_control: None,
            enc_layers: 3,
            enc_dim: 256,
            encode_mode: "resid".into(),
            enc_mask: None,
            dec_layers: 3,
            dec_dim: 256,
            pe_type: self.pe_type.clone(),
            pe_dim: self.pe_dim,
            feat_sigma: self.feat_sigma,
            domain: self.domain.clone(),
            activation: self.activation.clone(),
            invert_data: !self.uninvert_data,
            window: !self.no_window,
            window_r: self.window_r,
            norm,
            lazy: self.lazy,
            seed: self.seed.unwrap_or_else(|| rand::random::<u64>() % 100_000),
            checkpoint: self.checkpoint,
            load: self.load.as_ref().map(abs),
            tilt: self.tilt.as_ref().map(abs),
            tilt_deg: self.tilt_deg,
        };
        let search = SearchConfig {
            base_healpy: self.base_healpy,
            t_extent: self.t_extent,
            t_ngrid: self.t_ngrid,
            t_xshift: self.t_xshift,
            t_yshift: self.t_yshift,
            niter: self.niter,
            nkeptposes: self.nkeptposes,
            l_min: self.l_start,
            l_max: self.l_end,
            trans_refine: if self.t_refine == "children" {
                TransRefine::Children
            } else {
                TransRefine::Grid
            },
            bound: self.bnb_bound,
        };
        Ok(AbinitConfig {
            train,
            search,
            pretrain: self.pretrain,
            ps_freq: self.ps_freq,
            l_ramp_epochs,
            pose_model_update_freq: self.pose_model_update_freq,
            oversample: self.oversample,
            exact_slices: self.exact_slices,
            enc_only: false,
            load_poses: self.load_poses.as_ref().map(abs),
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
