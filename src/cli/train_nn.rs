//! `train-nn`: train a homogeneous neural-field decoder on particles with known poses (the
//! reference's `train_nn`). Writes `weights.N.safetensors` and `config.json` to the output folder.
//!
//! Example: `cryofield train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl -o out/ -n 20`

use crate::backend::cuda::{select, DeviceArg, Selected};
#[cfg(feature = "cuda")]
use crate::train::train_with;
use crate::train::{train, EpochStats, TrainConfig};
use std::path::{Path, PathBuf};

/// Flags every training command shares with the same defaults (`train-nn`, `train-vae`,
/// `abinit-homo`, `abinit-het`): data, preprocessing, optimizer, checkpoints and positional
/// encoding (the reference's names and defaults).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// CTF parameters (.pkl)
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Checkpoint every this many epochs
    #[arg(long, default_value_t = 1)]
    pub checkpoint: usize,
    /// Random seed (default: drawn at random, recorded in config.json and the checkpoints; with
    /// --load, the checkpoint's)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not use mixed precision (default: the networks' GEMMs in bf16 with f32 sums, on AMX
    /// tiles or AVX-512 BF16 vectors where the CPU has them; f32 elsewhere; with --load, the
    /// checkpoint's)
    #[arg(long = "no-amp")]
    pub no_amp: bool,
    /// Do not invert the data sign
    #[arg(long = "uninvert-data")]
    pub uninvert_data: bool,
    /// Do not apply the real-space window
    #[arg(long = "no-window")]
    pub no_window: bool,
    /// Window inner radius (fraction of the box half-width) [default: 0.85]
    #[arg(long = "window-r")]
    pub window_r: Option<f32>,
    /// Keep only these particles (.pkl of indices)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Read images from disk per batch instead of loading them all
    #[arg(long)]
    pub lazy: bool,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Minibatch size [default: 16]
    #[arg(short = 'b', long = "batch-size")]
    pub batch_size: Option<usize>,
    /// Weight decay in Adam [default: 0]
    #[arg(long)]
    pub wd: Option<f64>,
    /// Learning rate in Adam [default: 0.0001]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Data normalization as (mean, std) (default: estimated)
    #[arg(long, num_args = 2, value_names = ["MEAN", "STD"])]
    pub norm: Option<Vec<f32>>,
    /// Positional encoding (`none`: the network reads the coordinates themselves) [default: gaussian]
    #[arg(long = "pe-type", value_parser = ["geom_ft", "geom_full", "geom_lowf", "geom_nohighf", "linear_lowf", "gaussian", "none"])]
    pub pe_type: Option<String>,
    /// Frequencies per axis of the positional encoding (default D/2)
    #[arg(long = "pe-dim")]
    pub pe_dim: Option<usize>,
    /// Activation [default: relu]
    #[arg(long, value_parser = ["relu", "leaky_relu"])]
    pub activation: Option<String>,
    /// Scale of the gaussian positional-encoding frequencies [default: 0.5]
    #[arg(long = "feat-sigma")]
    pub feat_sigma: Option<f64>,
}

/// An absolute path, as the reference's `os.path.abspath` (the path itself if that fails).
pub fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The command-specific parts of a [`TrainConfig`] that [`RunArgs::config`] needs.
pub struct RunTarget<'a> {
    pub particles: &'a Path,
    pub outdir: &'a Path,
    pub poses: &'a Path,
    pub num_epochs: usize,
    pub domain: &'a str,
    pub load: Option<&'a Path>,
}

impl RunArgs {
    /// The `config.json` names of the settings these flags give explicitly (the others are
    /// defaults, which `--load` replaces by the checkpoint's; see
    /// [`crate::train::adopt_settings`]).
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("seed", self.seed.is_some()),
            ("amp", self.no_amp),
            ("invert_data", self.uninvert_data),
            ("window", self.no_window),
            ("window_r", self.window_r.is_some()),
            ("batch_size", self.batch_size.is_some()),
            ("wd", self.wd.is_some()),
            ("lr", self.lr.is_some()),
            ("norm", self.norm.is_some()),
            ("pe_type", self.pe_type.is_some()),
            ("pe_dim", self.pe_dim.is_some()),
            ("activation", self.activation.is_some()),
            ("feat_sigma", self.feat_sigma.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, g)| g.then_some(k))
        .collect()
    }

    /// The training configuration of these flags and `t` (paths made absolute, [`abs`]). Model sizes are 3×1024, no latent and no tilt pairs: the
    /// caller's to change.
    pub fn config(&self, t: RunTarget<'_>) -> anyhow::Result<TrainConfig> {
        let norm = parse_norm(&self.norm)?;
        Ok(TrainConfig {
            particles: abs(t.particles),
            poses: abs(t.poses),
            ctf: self.ctf.as_deref().map(abs),
            outdir: abs(t.outdir),
            ind: self.ind.as_deref().map(abs),
            datadir: self.datadir.as_deref().map(abs),
            zdim: None,
            num_epochs: t.num_epochs,
            batch_size: self.batch_size.unwrap_or(16),
            lr: self.lr.unwrap_or(1e-4),
            wd: self.wd.unwrap_or(0.0),
            beta: None,
            beta_control: None,
            enc_layers: 3,
            enc_dim: 1024,
            encode_mode: "resid".into(),
            enc_mask: None,
            dec_layers: 3,
            dec_dim: 1024,
            pe_type: self.pe_type.clone().unwrap_or_else(|| "gaussian".into()),
            pe_dim: self.pe_dim,
            feat_sigma: self.feat_sigma.unwrap_or(0.5),
            domain: t.domain.to_string(),
            activation: self.activation.clone().unwrap_or_else(|| "relu".into()),
            invert_data: !self.uninvert_data,
            window: !self.no_window,
            window_r: self.window_r.unwrap_or(0.85),
            norm,
            lazy: self.lazy,
            seed: self.seed.unwrap_or_else(|| rand::random::<u64>() % 100_000),
            amp: !self.no_amp,
            twin: None,
            learned_pose: None,
            slow: None,
            known_intervention: None,
            refine_poses: None,
            autodecoder: false,
            shuffle_seed: None,
            checkpoint: self.checkpoint,
            load: t.load.map(abs),
            tilt: None,
            tilt_deg: 45.0,
        })
    }
}

/// `--norm MEAN STD` as (mean, std).
pub fn parse_norm(norm: &Option<Vec<f32>>) -> anyhow::Result<Option<[f32; 2]>> {
    match norm {
        Some(v) if v.len() == 2 => Ok(Some([v[0], v[1]])),
        Some(_) => anyhow::bail!("--norm takes two values"),
        None => Ok(None),
    }
}

/// The network sizes of the models with an encoder (`train-vae`, `train-twin`): the reference's flags and
/// defaults (3×1024 each; the encoder's mask radius D/2).
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// Hidden layers of the encoder [default: 3]
    #[arg(long = "enc-layers")]
    pub enc_layers: Option<usize>,
    /// Hidden width of the encoder [default: 1024]
    #[arg(long = "enc-dim")]
    pub enc_dim: Option<usize>,
    /// Encoder mask radius in pixels (default D/2; −1: no mask)
    #[arg(long = "enc-mask", allow_hyphen_values = true)]
    pub enc_mask: Option<i64>,
    /// Hidden layers of the decoder [default: 3]
    #[arg(long = "dec-layers")]
    pub dec_layers: Option<usize>,
    /// Hidden width of the decoder [default: 1024]
    #[arg(long = "dec-dim")]
    pub dec_dim: Option<usize>,
}

impl NetArgs {
    /// Set these sizes in `cfg` (defaults where not given) and add the `config.json` names of those given
    /// to `given`.
    pub fn apply(&self, cfg: &mut TrainConfig, given: &mut Vec<&'static str>) {
        cfg.enc_layers = self.enc_layers.unwrap_or(3);
        cfg.enc_dim = self.enc_dim.unwrap_or(1024);
        cfg.enc_mask = self.enc_mask;
        cfg.dec_layers = self.dec_layers.unwrap_or(3);
        cfg.dec_dim = self.dec_dim.unwrap_or(1024);
        for (key, g) in [
            ("enc_layers", self.enc_layers.is_some()),
            ("enc_dim", self.enc_dim.is_some()),
            ("enc_mask", self.enc_mask.is_some()),
            ("dec_layers", self.dec_layers.is_some()),
            ("dec_dim", self.dec_dim.is_some()),
        ] {
            if g {
                given.push(key);
            }
        }
    }
}

/// `--load latest` (cryoDRGN 4.3's): the highest-numbered `weights.N.safetensors` in the output
/// folder, else the highest `weights.N.pkl` (a cryoDRGN run's).
pub fn latest_checkpoint(outdir: &Path) -> anyhow::Result<PathBuf> {
    use crate::train::checkpoint::last_numbered;
    ["safetensors", "pkl"]
        .iter()
        .find_map(|ext| {
            last_numbered(outdir, "weights", ext).map(|k| outdir.join(format!("weights.{k}.{ext}")))
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--load latest: no weights.N.safetensors or weights.N.pkl in {}",
                outdir.display()
            )
        })
}

/// The checkpoint to resume from for `--load PATH`: for a `weights.N.pkl` that one of our runs
/// wrote, its [`crate::model::load::safetensors_twin`], which holds the same model and optimizer
/// plus every setting our run records; else `path`.
pub fn own_checkpoint(path: PathBuf) -> PathBuf {
    crate::model::load::safetensors_twin(&path).unwrap_or(path)
}

/// Flags shared by `train-nn` and `train-vae` (the reference's names and defaults).
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// Compute device: auto (the first CUDA device when one is usable, else the CPU), cpu, cuda,
    /// cuda:N
    #[arg(long, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Output folder
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
    /// Poses (.pkl)
    #[arg(long)]
    pub poses: PathBuf,
    /// Resume from weights.N.safetensors (parameters, optimizer state, epoch and the run's
    /// settings: seed, batch size, optimizer, model, preprocessing and precision flags not given
    /// here are the checkpoint's; one given with another value is an error). -n counts from the
    /// start of that run. Also a cryoDRGN run's weights.N.pkl (with its config.yaml beside it), and
    /// `latest`: the output folder's last checkpoint
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// Number of epochs (in all, with --load)
    #[arg(short = 'n', long = "num-epochs", default_value_t = 20)]
    pub num_epochs: usize,
    /// Decoder domain [default: fourier]
    #[arg(long, value_parser = ["fourier", "hartley"])]
    pub domain: Option<String>,
    /// Refine the poses file's rotations by gradient descent with the model: a per-image table
    /// (--emb-type) trained by SparseAdam (--pose-lr) after --pretrain epochs; writes pose.N.pkl and
    /// pose.pkl (the refined rotations, the file's translations). The reference's --do-pose-sgd
    #[arg(long = "refine-poses", visible_alias = "do-pose-sgd")]
    pub refine_poses: bool,
    /// Epochs with fixed poses before --refine-poses starts
    #[arg(long, default_value_t = 5)]
    pub pretrain: usize,
    /// SO(3) embedding of the refined rotations
    #[arg(long = "emb-type", default_value = "quat", value_parser = ["quat", "s2s2"])]
    pub emb_type: String,
    /// Learning rate of the pose table
    #[arg(long = "pose-lr", default_value_t = 1e-4)]
    pub pose_lr: f64,
    /// Let the pose table's learning rate fall from --pose-lr to this along a half cosine over the
    /// refining epochs (not in the reference; default: constant)
    #[arg(long = "pose-lr-end")]
    pub pose_lr_end: Option<f64>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub reference: RefFlags,
}

/// cryoDRGN 4.3's remaining training flags, so that its command lines run unchanged: those with a
/// meaning here act (`--max-threads`, `--shuffle-seed`, `--no-analysis`), the others are accepted
/// with a one-line note.
#[derive(Debug, clap::Args)]
pub struct RefFlags {
    /// Threads of the CPU pool [default: every core]
    #[arg(long = "max-threads")]
    pub max_threads: Option<usize>,
    /// Seed of the data's shuffling [default: from --seed]
    #[arg(long = "shuffle-seed")]
    pub shuffle_seed: Option<u64>,
    /// Do not run `analyze` on the final epoch (train-vae)
    #[arg(long = "no-analysis")]
    pub no_analysis: bool,
    /// Accepted for the reference's command lines (we log once per epoch, with a progress bar)
    #[arg(long = "log-interval", hide = true)]
    pub log_interval: Option<usize>,
    #[arg(short = 'v', long = "verbose", hide = true)]
    pub verbose: bool,
    #[arg(long = "num-workers", hide = true)]
    pub num_workers: Option<usize>,
    #[arg(long = "shuffler-size", hide = true)]
    pub shuffler_size: Option<usize>,
    #[arg(long = "multigpu", hide = true)]
    pub multigpu: bool,
}

/// `--max-threads T`: size the global CPU pool to `T` threads (at least 1), or say that it is
/// already running.
pub fn set_max_threads(t: usize) {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(t.max(1))
        .build_global()
    {
        Ok(()) => eprintln!("threads: {}", t.max(1)),
        Err(_) => eprintln!(
            "note: --max-threads {t}: the thread pool is already running with {} threads",
            rayon::current_num_threads()
        ),
    }
}

impl RefFlags {
    /// Apply `--max-threads` (the global pool, when it is not yet running) and note the flags
    /// that have no effect here.
    pub fn apply(&self) {
        if let Some(t) = self.max_threads {
            set_max_threads(t);
        }
        let noted: Vec<&str> = [
            ("--log-interval", self.log_interval.is_some()),
            ("-v", self.verbose),
            ("--num-workers", self.num_workers.is_some()),
            ("--shuffler-size", self.shuffler_size.is_some()),
            ("--multigpu", self.multigpu),
        ]
        .into_iter()
        .filter_map(|(f, g)| g.then_some(f))
        .collect();
        if !noted.is_empty() {
            eprintln!(
                "note: {} accepted for the reference's command lines; no effect here",
                noted.join(", ")
            );
        }
    }
}

impl CommonArgs {
    /// The training configuration these flags describe (model sizes filled in by the caller).
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let mut cfg = self.run.config(RunTarget {
            particles: &self.particles,
            outdir: &self.outdir,
            poses: &self.poses,
            num_epochs: self.num_epochs,
            domain: self.domain.as_deref().unwrap_or("fourier"),
            load: self.load.as_deref(),
        })?;
        if self.load.as_deref() == Some(Path::new("latest")) {
            cfg.load = Some(latest_checkpoint(&self.outdir)?);
        }
        cfg.load = cfg.load.map(own_checkpoint);
        cfg.shuffle_seed = self.reference.shuffle_seed;
        self.reference.apply();
        if self.refine_poses {
            cfg.refine_poses = Some(crate::train::RefinePoses {
                emb: self.emb_type.parse()?,
                lr: self.pose_lr,
                pretrain: self.pretrain,
                lr_end: self.pose_lr_end,
            });
        }
        Ok(cfg)
    }

    /// The `config.json` names of the settings given explicitly ([`RunArgs::given`] and
    /// `--domain`).
    pub fn given(&self) -> Vec<&'static str> {
        let mut g = self.run.given();
        if self.domain.is_some() {
            g.push("domain");
        }
        if self.reference.shuffle_seed.is_some() {
            g.push("shuffle_seed");
        }
        g
    }
}

/// Train a homogeneous decoder.
#[derive(Debug, clap::Args)]
#[command(about = "Train a homogeneous neural-field decoder on particles with known poses")]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Hidden layers of the decoder [default: 3]
    #[arg(long)]
    pub layers: Option<usize>,
    /// Hidden width of the decoder [default: 1024]
    #[arg(long)]
    pub dim: Option<usize>,
}

/// Train on the selected device (printing the one-line device notice); the per-epoch statistics.
pub fn train_on(device: DeviceArg, cfg: &TrainConfig) -> anyhow::Result<Vec<EpochStats>> {
    let sel = select(device)?;
    eprintln!("{}", sel.notice);
    Ok(match sel.device {
        Selected::Cpu => train(cfg, true)?.history,
        #[cfg(feature = "cuda")]
        Selected::Cuda(n) => {
            if cfg.zdim.is_some() && cfg.encode_mode == "conv" {
                anyhow::bail!(
                    "--encode-mode conv runs on the CPU backend only (conv2d has no CUDA kernel yet): \
                     give --device cpu"
                );
            }
            if cfg.amp {
                eprintln!("precision: f32 (mixed precision is CPU-only so far)");
            }
            train_with(crate::backend::cuda::CudaBackend::new(n)?, cfg, true)?.history
        }
        #[cfg(not(feature = "cuda"))]
        Selected::Cuda(_) => anyhow::bail!("this build has no CUDA backend (feature `cuda`)"),
    })
}

/// Run `train-nn`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut cfg = a.common.config()?;
    cfg.dec_layers = a.layers.unwrap_or(3);
    cfg.dec_dim = a.dim.unwrap_or(1024);
    let mut given = a.common.given();
    given.extend(a.layers.map(|_| "dec_layers"));
    given.extend(a.dim.map(|_| "dec_dim"));
    crate::train::adopt_settings(&mut cfg, &given)?;
    let history = train_on(a.common.device, &cfg)?;
    if let Some(last) = history.last() {
        eprintln!(
            "trained {} epochs; final loss {:.6}; outputs in {}",
            cfg.num_epochs,
            last.loss,
            cfg.outdir.display()
        );
    }
    Ok(())
}
