//! `train-dec`: cryoDRGN's autodecoder with known poses — a per-image latent table (N(0, I) start or
//! `--load-z`, Adam at `--z-lr`) trained with the decoder, no encoder. The same machinery as
//! `abinit`'s SGD epochs ([`crate::pose::drgnai`]) at the poses file's poses: no pretraining, no
//! search, no pose table. Writes `z.N.pkl`, `weights.N.safetensors`, `reconstruct.N.mrc` (at the
//! latent nearest the mean), `config.json` (readable by `eval-vol` and `analyze`).
//!
//! Example: `cryofield train-dec particles.mrcs --poses pose.pkl --ctf ctf.pkl --zdim 8 -o out/`

use crate::cli::train_nn::{abs, parse_norm};
use crate::pose::drgnai::{drgnai, DrgnaiConfig};
use crate::train::TrainConfig;
use std::path::PathBuf;

/// Flags of `train-dec` (cryoDRGN 4.3's names and defaults).
#[derive(Debug, clap::Args)]
#[command(
    about = "Autodecoder training with known poses: a per-image latent table and the decoder"
)]
pub struct Args {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// Output folder
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
    /// Image poses (.pkl)
    #[arg(long)]
    pub poses: PathBuf,
    /// CTF parameters (.pkl)
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Resume from weights.N.safetensors (tables.N.safetensors beside it)
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// Write outputs every this many epochs (and the last)
    #[arg(long, default_value_t = 1)]
    pub checkpoint: usize,
    /// Random seed (default: drawn, and recorded in config.json)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dimension of the latent variable
    #[arg(long)]
    pub zdim: usize,
    /// Latents to start from (.pkl, N × zdim; default N(0, I))
    #[arg(long = "load-z")]
    pub load_z: Option<PathBuf>,
    /// Learning rate of the latent table
    #[arg(long = "z-lr", default_value_t = 1e-4)]
    pub z_lr: f64,
    /// Epochs with the latents held before they learn
    #[arg(long = "pretrain-z", default_value_t = 0)]
    pub pretrain_z: usize,
    /// Do not invert the data's sign
    #[arg(long = "uninvert-data")]
    pub uninvert_data: bool,
    /// No real-space window
    #[arg(long = "no-window")]
    pub no_window: bool,
    /// Inner radius of the real-space window
    #[arg(long = "window-r", default_value_t = 0.85)]
    pub window_r: f32,
    /// Indices of the particles to use (.pkl)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Read images from disk as needed
    #[arg(long)]
    pub lazy: bool,
    /// Folder of the images a .star/.cs file names
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Number of epochs
    #[arg(short = 'n', long = "num-epochs", default_value_t = 20)]
    pub num_epochs: usize,
    /// Minibatch size
    #[arg(short = 'b', long = "batch-size", default_value_t = 8)]
    pub batch_size: usize,
    /// Weight decay of the decoder's Adam
    #[arg(long, default_value_t = 0.0)]
    pub wd: f64,
    /// Learning rate of the decoder
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Data normalization (mean, std; default: estimated)
    #[arg(long, num_args = 2, value_names = ["MEAN", "STD"])]
    pub norm: Option<Vec<f32>>,
    /// f32 GEMMs (default: bf16 products with f32 sums where the CPU has AMX / AVX-512 BF16)
    #[arg(long = "no-amp")]
    pub no_amp: bool,
    /// Refine poses (not yet in train-dec: use train-nn/train-vae --refine-poses)
    #[arg(long = "do-pose-sgd")]
    pub do_pose_sgd: bool,
    /// Hidden layers of the decoder
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Hidden width of the decoder
    #[arg(long, default_value_t = 1024)]
    pub dim: usize,
    /// Positional encoding
    #[arg(long = "pe-type", default_value = "geom_lowf", value_parser = ["geom_ft", "geom_full", "geom_lowf", "geom_nohighf", "linear_lowf", "gaussian"])]
    pub pe_type: String,
    /// Positional-encoding frequencies (default D/2)
    #[arg(long = "pe-dim")]
    pub pe_dim: Option<usize>,
    /// Decoder domain
    #[arg(long, default_value = "fourier", value_parser = ["fourier", "hartley"])]
    pub domain: String,
    /// Activation
    #[arg(long, default_value = "relu", value_parser = ["relu", "leaky_relu"])]
    pub activation: String,
    /// Std of the gaussian encoding's frequencies
    #[arg(long = "feat-sigma", default_value_t = 0.5)]
    pub feat_sigma: f64,
    /// Do not run `analyze` on the last epoch at the end
    #[arg(long = "no-analysis")]
    pub no_analysis: bool,
    #[command(flatten)]
    pub ignored: crate::cli::abinit_ai::RefOnlyFlags,
}

/// Run `train-dec`.
pub fn run(a: Args) -> anyhow::Result<()> {
    a.ignored.note();
    if a.do_pose_sgd {
        anyhow::bail!(
            "--do-pose-sgd: not yet in train-dec; refine poses with train-nn/train-vae --refine-poses, \
             or with abinit --load-poses P --n-imgs-pretrain 0 --epochs-pose-search 0"
        );
    }
    if a.zdim == 0 {
        anyhow::bail!("--zdim must be at least 1 (train-nn trains without a latent)");
    }
    let norm = parse_norm(&a.norm)?;
    let train = TrainConfig {
        particles: abs(&a.particles),
        poses: abs(&a.poses),
        ctf: a.ctf.as_deref().map(abs),
        outdir: abs(&a.outdir),
        ind: a.ind.as_deref().map(abs),
        datadir: a.datadir.as_deref().map(abs),
        zdim: Some(a.zdim),
        num_epochs: a.num_epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        wd: a.wd,
        beta: None,
        beta_control: None,
        enc_layers: 0,
        enc_dim: 0,
        encode_mode: "resid".into(),
        enc_mask: None,
        dec_layers: a.layers,
        dec_dim: a.dim,
        pe_type: a.pe_type.clone(),
        pe_dim: a.pe_dim,
        feat_sigma: a.feat_sigma,
        domain: a.domain.clone(),
        activation: a.activation.clone(),
        invert_data: !a.uninvert_data,
        window: !a.no_window,
        window_r: a.window_r,
        norm,
        lazy: a.lazy,
        seed: a.seed.unwrap_or_else(|| rand::random::<u64>() % 100_000),
        checkpoint: a.checkpoint,
        load: a.load.as_deref().map(abs),
        tilt: None,
        tilt_deg: 45.0,
        amp: !a.no_amp,
        twin: None,
        learned_pose: None,
        slow: None,
        known_intervention: None,
        refine_poses: None,
        autodecoder: true,
        shuffle_seed: None,
    };
    // unused: train-dec searches nothing
    let search = crate::pose::search::SearchConfig::default();
    let cfg = DrgnaiConfig {
        train,
        search,
        n_imgs_pretrain: 0,
        epochs_pose_search: 0,
        n_imgs_pose_search: None,
        epochs_sgd: None,
        batch_size_pretrain: a.batch_size,
        batch_size_hps: a.batch_size,
        batch_size_sgd: a.batch_size,
        lr_pose_table: 1e-3,
        lr_conf_table: a.z_lr,
        std_z_init: 1.0,
        pose_only_phase: 0,
        l2_smoothness: 0.0,
        trans_l1: 0.0,
        emb: crate::pose::table::PoseEmb::S2s2,
        no_trans: false,
        oversample: 1,
        load_poses: Some(abs(&a.poses)),
        search_chunk: None,
        search_z_bins: 0,
        fixed_poses: true,
        conf_frozen_epochs: a.pretrain_z,
        load_z: a.load_z.as_deref().map(abs),
    };
    let r = drgnai(&cfg, true)?;
    if let Some(last) = r.history.last() {
        eprintln!(
            "{} images, {} epochs; final loss {:.6}; outputs in {}",
            r.n,
            r.history.len(),
            last.loss,
            cfg.train.outdir.display()
        );
        if !a.no_analysis {
            crate::cli::abinit_ai::analyze_last(&cfg.train.outdir, last.epoch as i64, r.n, a.zdim)?;
        }
    }
    Ok(())
}
