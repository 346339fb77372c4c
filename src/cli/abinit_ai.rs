//! `abinit`: ab initio reconstruction as cryoDRGN 4.3's `cryodrgn abinit` (cryoDRGN-AI): pretraining
//! at random poses, a few pose-search epochs, then SGD on per-image pose and conformation tables
//! together with the decoder ([`crate::pose::drgnai`]). `--zdim 0` is homogeneous. The reference's
//! flags and defaults; the ones that only tune its data loader or GPUs are accepted and noted.
//!
//! Example: `cryofield abinit particles.mrcs --ctf ctf.pkl --zdim 8 -o out/`

use crate::cli::pose_search::SearchArgs;
use crate::cli::train_nn::{abs, parse_norm};
use crate::pose::drgnai::{drgnai, DrgnaiConfig, Phase};
use crate::pose::search::SearchConfig;
use crate::train::TrainConfig;
use std::path::PathBuf;

/// Flags of `abinit` (cryoDRGN 4.3's names and defaults).
#[derive(Debug, clap::Args)]
#[command(
    about = "Ab initio reconstruction (cryoDRGN-AI): pose search, then SGD on per-image pose and conformation tables"
)]
pub struct Args {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// Output folder
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
    /// Dimension of the latent space (0: homogeneous)
    #[arg(long)]
    pub zdim: usize,
    /// CTF parameters (.pkl)
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Folder of the images a .star/.cs file names
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Indices of the particles to use (.pkl)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Do not invert the data's sign
    #[arg(long = "uninvert-data")]
    pub uninvert_data: bool,
    /// Read images from disk as needed
    #[arg(long)]
    pub lazy: bool,
    /// Data normalization (mean, std of the Hartley images; default: estimated)
    #[arg(long, num_args = 2, value_names = ["MEAN", "STD"])]
    pub norm: Option<Vec<f32>>,
    /// Inner radius of the real-space window (fraction of the half box; outer 0.99)
    #[arg(long = "window-radius-gt-real", default_value_t = 0.85)]
    pub window_r: f32,
    /// No real-space window
    #[arg(long = "no-window")]
    pub no_window: bool,
    /// Random seed (default: drawn, and recorded in config.json)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Resume from weights.N.safetensors (tables.N.safetensors beside it holds the tables)
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// Poses (.pkl, translations as a fraction of D) that seed the pose arrays; pretraining and
    /// search epochs overwrite them, so to refine given poses use `--n-imgs-pretrain 0
    /// --epochs-pose-search 0`
    #[arg(long = "load-poses")]
    pub load_poses: Option<PathBuf>,
    /// Write outputs every this many epochs (and after epoch 0, every search epoch, and the last)
    #[arg(long, default_value_t = 5)]
    pub checkpoint: usize,
    /// Epochs after pretraining (search and SGD)
    #[arg(short = 'n', long = "num-epochs", default_value_t = 30)]
    pub num_epochs: usize,
    /// Pose-search epochs [default: 3]
    #[arg(long = "epochs-pose-search")]
    pub epochs_pose_search: Option<usize>,
    /// Images of pose search (overrides --epochs-pose-search: max(2, n/N + 1) epochs)
    #[arg(long = "n-imgs-pose-search")]
    pub n_imgs_pose_search: Option<usize>,
    /// SGD epochs (overrides -n: the search epochs plus these)
    #[arg(long = "epochs-sgd")]
    pub epochs_sgd: Option<usize>,
    /// Images of random-pose pretraining in epoch 0 (negative: all; 0: no pretraining)
    #[arg(
        long = "n-imgs-pretrain",
        default_value_t = 10000,
        allow_negative_numbers = true
    )]
    pub n_imgs_pretrain: i64,
    /// Images (pretraining included) during which z is random and the conformations do not learn
    #[arg(long = "pose-only-phase", default_value_t = 0)]
    pub pose_only_phase: usize,
    /// Minibatch of the search epochs
    #[arg(long = "batch-size-hps", default_value_t = 16)]
    pub batch_size_hps: usize,
    /// Minibatch of pretraining
    #[arg(long = "batch-size-known-poses", default_value_t = 64)]
    pub batch_size_known_poses: usize,
    /// Minibatch of the SGD epochs
    #[arg(long = "batch-size-sgd", default_value_t = 128)]
    pub batch_size_sgd: usize,
    /// Learning rate of the decoder
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Learning rate of the pose table
    #[arg(long = "lr-pose-table", default_value_t = 1e-3)]
    pub lr_pose_table: f64,
    /// Learning rate of the conformation table
    #[arg(long = "lr-conf-table", default_value_t = 1e-2)]
    pub lr_conf_table: f64,
    /// Loss mask: circ (frequency_marching crashes in the reference and is not offered)
    #[arg(long = "output-mask", default_value = "circ", value_parser = ["circ", "frequency_marching"])]
    pub output_mask: String,
    /// Weight of the L1 penalty on the translations (pixels), SGD epochs
    #[arg(long = "trans-l1-regularizer", default_value_t = 0.0)]
    pub trans_l1: f64,
    /// Weight of the frequency-weighted L2 penalty on the predicted slices
    #[arg(long = "l2-smoothness-regularizer", default_value_t = 0.0)]
    pub l2_smoothness: f64,
    /// Std of the conformation table's start and of the pose-only phase's random z
    #[arg(long = "std-z-init", default_value_t = 0.1)]
    pub std_z_init: f64,
    /// Variational conformations (not yet; refused)
    #[arg(long = "variational-het")]
    pub variational_het: bool,
    /// KL weight of --variational-het
    #[arg(long = "beta-conf", default_value_t = 0.0)]
    pub beta_conf: f64,
    /// An amortised CNN encoder instead of the table (not yet; refused)
    #[arg(long = "use-conf-encoder")]
    pub use_conf_encoder: bool,
    /// Hidden layers of the decoder
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Hidden width of the decoder
    #[arg(long, default_value_t = 256)]
    pub dim: usize,
    /// Positional encoding
    #[arg(long = "pe-type", default_value = "gaussian", value_parser = ["gaussian", "geom_lowf", "geom_ft", "geom_full", "geom_nohighf", "linear_lowf"])]
    pub pe_type: String,
    /// Positional-encoding frequencies (gaussian: 3·pe-dim features of sin and cos each)
    #[arg(long = "pe-dim", default_value_t = 64)]
    pub pe_dim: usize,
    /// Std of the gaussian encoding's frequencies
    #[arg(long = "feat-sigma", default_value_t = 0.5)]
    pub feat_sigma: f64,
    /// Decoder domain
    #[arg(long, default_value = "hartley", value_parser = ["hartley", "fourier"])]
    pub domain: String,
    /// Rotation parametrisation of the pose table (ours; the reference's is s2s2)
    #[arg(long = "emb-type", default_value = "s2s2", value_parser = ["s2s2", "quat"])]
    pub emb_type: String,
    #[command(flatten)]
    pub search: SearchArgs,
    /// X-axis offset of the translation grid (pixels)
    #[arg(long = "t-xshift", default_value_t = 0.0, allow_hyphen_values = true)]
    pub t_xshift: f64,
    /// Y-axis offset of the translation grid (pixels)
    #[arg(long = "t-yshift", default_value_t = 0.0, allow_hyphen_values = true)]
    pub t_yshift: f64,
    /// Images searched against one state of the model (ours; default: each minibatch against the
    /// current model, as the reference)
    #[arg(long = "pose-model-update-freq")]
    pub pose_model_update_freq: Option<usize>,
    /// Search each chunk's images at K k-means centres of their latents instead of each at its own
    /// (ours; 0: the reference's per-image z). K latent grids per chunk instead of one per image
    #[arg(long = "search-z-bins", default_value_t = 0)]
    pub search_z_bins: usize,
    /// Search rotations only (the shift grid scaled by 0)
    #[arg(long = "no-trans-search-at-pose-search")]
    pub no_trans_search: bool,
    /// No translations anywhere
    #[arg(long = "no-trans")]
    pub no_trans: bool,
    /// f32 GEMMs (default: bf16 products with f32 sums where the CPU has AMX / AVX-512 BF16)
    #[arg(long = "no-amp")]
    pub no_amp: bool,
    /// Do not run `analyze` on the last epoch at the end
    #[arg(long = "no-analysis")]
    pub no_analysis: bool,
    #[command(flatten)]
    pub ignored: RefOnlyFlags,
}

/// The reference's flags that only tune its data loader, logging or GPUs: accepted so that its
/// command lines run unchanged, with a one-line note.
#[derive(Debug, clap::Args)]
pub struct RefOnlyFlags {
    #[arg(long = "num-workers", hide = true)]
    pub num_workers: Option<usize>,
    #[arg(long = "max-threads", hide = true)]
    pub max_threads: Option<usize>,
    #[arg(long = "log-interval", hide = true)]
    pub log_interval: Option<usize>,
    #[arg(long = "shuffler-size", hide = true)]
    pub shuffler_size: Option<usize>,
    #[arg(long = "multigpu", hide = true)]
    pub multigpu: bool,
    #[arg(long = "relion31", hide = true)]
    pub relion31: bool,
    #[arg(long = "verbose-time", hide = true)]
    pub verbose_time: bool,
    #[arg(short = 'v', long = "verbose", hide = true)]
    pub verbose: bool,
}

impl RefOnlyFlags {
    /// Print which of them were given.
    pub fn note(&self) {
        let given: Vec<&str> = [
            ("--num-workers", self.num_workers.is_some()),
            ("--max-threads", self.max_threads.is_some()),
            ("--log-interval", self.log_interval.is_some()),
            ("--shuffler-size", self.shuffler_size.is_some()),
            ("--multigpu", self.multigpu),
            ("--relion31", self.relion31),
            ("--verbose-time", self.verbose_time),
            ("-v", self.verbose),
        ]
        .into_iter()
        .filter_map(|(f, g)| g.then_some(f))
        .collect();
        if !given.is_empty() {
            eprintln!(
                "note: {} accepted for the reference's command lines; no effect here",
                given.join(", ")
            );
        }
    }
}

impl Args {
    /// The run these flags describe.
    pub fn config(&self) -> anyhow::Result<DrgnaiConfig> {
        if self.output_mask == "frequency_marching" {
            anyhow::bail!(
                "--output-mask frequency_marching is not offered: the reference's crashes at start-up \
                 (its l_start_fm is never set) and its per-image marching never runs; use circ"
            );
        }
        if self.variational_het || self.beta_conf != 0.0 {
            anyhow::bail!("--variational-het / --beta-conf: not yet in cryofield's abinit (the conformation table is deterministic)");
        }
        if self.use_conf_encoder {
            anyhow::bail!("--use-conf-encoder: not yet in cryofield's abinit (the conformation table is used)");
        }
        let norm = parse_norm(&self.norm)?;
        let train = TrainConfig {
            particles: abs(&self.particles),
            poses: abs(&self.outdir.join("pose.pkl")),
            ctf: self.ctf.as_deref().map(abs),
            outdir: abs(&self.outdir),
            ind: self.ind.as_deref().map(abs),
            datadir: self.datadir.as_deref().map(abs),
            zdim: (self.zdim > 0).then_some(self.zdim),
            num_epochs: self.num_epochs,
            batch_size: self.batch_size_sgd,
            lr: self.lr,
            wd: 0.0,
            beta: None,
            beta_control: None,
            enc_layers: 0,
            enc_dim: 0,
            encode_mode: "resid".into(),
            enc_mask: None,
            dec_layers: self.layers,
            dec_dim: self.dim,
            pe_type: self.pe_type.clone(),
            pe_dim: Some(self.pe_dim),
            feat_sigma: self.feat_sigma,
            domain: self.domain.clone(),
            activation: "relu".into(),
            invert_data: !self.uninvert_data,
            window: !self.no_window,
            window_r: self.window_r,
            norm,
            lazy: self.lazy,
            seed: self.seed.unwrap_or_else(|| rand::random::<u64>() % 100_000),
            checkpoint: self.checkpoint,
            load: self.load.as_deref().map(abs),
            tilt: None,
            tilt_deg: 45.0,
            amp: !self.no_amp,
            twin: None,
            learned_pose: None,
            slow: None,
            known_intervention: None,
            refine_poses: None,
            autodecoder: self.zdim > 0,
            shuffle_seed: None,
        };
        let mut search = SearchConfig {
            t_xshift: self.t_xshift,
            t_yshift: self.t_yshift,
            ..self.search.config()
        };
        if self.no_trans_search || self.no_trans {
            search.t_extent = 0.0;
        }
        Ok(DrgnaiConfig {
            train,
            search,
            n_imgs_pretrain: self.n_imgs_pretrain,
            epochs_pose_search: self.epochs_pose_search.unwrap_or(3),
            n_imgs_pose_search: self.n_imgs_pose_search,
            epochs_sgd: self.epochs_sgd,
            batch_size_pretrain: self.batch_size_known_poses,
            batch_size_hps: self.batch_size_hps,
            batch_size_sgd: self.batch_size_sgd,
            lr_pose_table: self.lr_pose_table,
            lr_conf_table: self.lr_conf_table,
            std_z_init: self.std_z_init,
            pose_only_phase: self.pose_only_phase,
            l2_smoothness: self.l2_smoothness,
            trans_l1: self.trans_l1,
            emb: self.emb_type.parse()?,
            no_trans: self.no_trans,
            oversample: self.search.oversample,
            load_poses: self.load_poses.as_deref().map(abs),
            search_chunk: self.pose_model_update_freq,
            search_z_bins: self.search_z_bins,
            fixed_poses: false,
            conf_frozen_epochs: 0,
            load_z: None,
        })
    }
}

/// Run `abinit`.
pub fn run(a: Args) -> anyhow::Result<()> {
    a.ignored.note();
    let cfg = a.config()?;
    let r = drgnai(&cfg, true)?;
    let search: f64 = r.history.iter().map(|h| h.search_seconds).sum();
    let total: f64 = r.history.iter().map(|h| h.seconds).sum();
    let sgd = r.history.iter().filter(|h| h.phase == Phase::Sgd).count();
    if let Some(last) = r.history.last() {
        eprintln!(
            "{} images, {} epochs ({sgd} SGD) in {total:.1} s (pose search {search:.1} s); final loss {:.6}; outputs in {}",
            r.n,
            r.history.len(),
            last.loss,
            cfg.train.outdir.display()
        );
    }
    if let (false, Some(zdim), Some(last)) = (a.no_analysis, cfg.train.zdim, r.history.last()) {
        // the reference runs its analysis on the last epoch unless --no-analysis
        analyze_last(&cfg.train.outdir, last.epoch as i64, r.n, zdim)?;
    }
    Ok(())
}

/// `analyze` of epoch `epoch` of the run in `outdir` (n images, zdim; −1: the final outputs) with
/// the reference's settings for the analysis at the end of training (20 k-means clusters, 2 PCs).
pub fn analyze_last(
    outdir: &std::path::Path,
    epoch: i64,
    n: usize,
    zdim: usize,
) -> anyhow::Result<()> {
    eprintln!("analyze: epoch {epoch} (--no-analysis to skip)");
    crate::cli::analyze::run(crate::cli::analyze::Args {
        outdir: outdir.to_path_buf(),
        epoch,
        o: None,
        ksample: 20.min(n),
        pc: 2.min(zdim),
        n_per_pc: 10,
        skip_vol: false,
        skip_umap: false,
        apix: None,
        flip: false,
        invert: false,
        downsample: None,
        low_pass: None,
        crop: None,
        vol_start_index: 1,
        seed: 0,
    })
}
