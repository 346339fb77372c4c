//! `pc-train`: train a point-cloud diffusion prior (Möbius & Habeck 2024, spec §1): Point-E's
//! point transformer F_θ with EDM preconditioning (σ_data 0.5, c_noise = 1000·t/80), loss
//! λ(t)‖x₀ − D_θ(x_t, t)‖² with λ = 1/c_out², ln t two-phase log-normal (N(−2.8, 0.9²) truncated
//! at 1 for the first 90 % of the steps, then N(−1.2, 1.2²) truncated at 80), a random rotation
//! of every cloud at every step (`--aug so3|o3|none`), Adam. Reads the `cloud` arrays (S, N, 3)
//! of one or more `GT.npz` from `pc-prepare` (same N). Writes `PRIOR/model.safetensors` +
//! `config.json` (the prior `pc-sample` reads), `losses.csv`, `loss.png` and
//! `state.safetensors` (weights, Adam moments, step count and settings), the last two also every
//! `--checkpoint` steps (atomically): `--load PRIOR/state.safetensors` continues a killed run
//! exactly as an uninterrupted one (the settings come from the state; given ones must agree).
//!
//! Example: `cryofield pc-train GT.npz -o prior/ --epochs 200 --batch 16`, then after a crash
//! `cryofield pc-train GT.npz -o prior/ --load prior/state.safetensors`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::analysis::plot::loss_curve;
use crate::io::atomic::write_bytes_atomic;
use crate::pointcloud::data::GroundTruth;
use crate::pointcloud::train::{load_state, train_checkpointed, Aug, PcTrainConfig, Phase};
use crate::train::checkpoint::{read_header, reconcile_all};

/// Train a point-cloud diffusion prior.
#[derive(Debug, clap::Args)]
#[command(
    about = "Train a point-cloud diffusion prior (Point-E transformer, EDM) on GT.npz clouds"
)]
pub struct Args {
    /// Ground-truth files from pc-prepare (their `cloud` arrays (S, N, 3), same N)
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
    /// Output folder
    #[arg(short = 'o', long)]
    pub outdir: PathBuf,
    /// Token width W [default: 64]
    #[arg(long)]
    pub width: Option<usize>,
    /// Transformer blocks [default: 4]
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads [default: 4]
    #[arg(long)]
    pub heads: Option<usize>,
    /// Adam learning rate [default: 0.0005]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Clouds per step [default: 16]
    #[arg(short = 'b', long)]
    pub batch: Option<usize>,
    /// Epochs [default: 100]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rotation augmentation: so3, o3 or none [default: so3]
    #[arg(long)]
    pub aug: Option<String>,
    /// Phase 1 noise: P_MEAN,P_STD,T_MAX [default: -2.8,0.9,1]
    #[arg(long, allow_hyphen_values = true)]
    pub phase1: Option<String>,
    /// Phase 2 noise: P_MEAN,P_STD,T_MAX [default: -1.2,1.2,80]
    #[arg(long, allow_hyphen_values = true)]
    pub phase2: Option<String>,
    /// Fraction of the steps in phase 1 [default: 0.9]
    #[arg(long)]
    pub phase1_frac: Option<f64>,
    /// t_c in c_noise = 1000·t/t_c (1: the Chair prior's 1000·t) [default: 80]
    #[arg(long)]
    pub c_noise_tmax: Option<f64>,
    /// Random seed [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write state.safetensors and losses.csv every this many steps (and at the end)
    #[arg(long, default_value_t = 200)]
    pub checkpoint: usize,
    /// Resume from a state.safetensors of an earlier run on the same clouds
    #[arg(long)]
    pub load: Option<PathBuf>,
}

/// The settings: flags given, else the state's (`--load`), else the defaults.
fn settings(a: &Args) -> anyhow::Result<PcTrainConfig> {
    let d = PcTrainConfig::default();
    let mut cfg = PcTrainConfig {
        width: a.width.unwrap_or(d.width),
        layers: a.layers.unwrap_or(d.layers),
        heads: a.heads.unwrap_or(d.heads),
        lr: a.lr.unwrap_or(d.lr),
        batch: a.batch.unwrap_or(d.batch),
        epochs: a.epochs.unwrap_or(d.epochs),
        seed: a.seed.unwrap_or(d.seed),
        aug: a
            .aug
            .as_deref()
            .map(Aug::parse)
            .transpose()?
            .unwrap_or(d.aug),
        phase1: a
            .phase1
            .as_deref()
            .map(Phase::parse)
            .transpose()?
            .unwrap_or(d.phase1),
        phase2: a
            .phase2
            .as_deref()
            .map(Phase::parse)
            .transpose()?
            .unwrap_or(d.phase2),
        phase1_frac: a.phase1_frac.unwrap_or(d.phase1_frac),
        c_noise_tmax: a.c_noise_tmax.unwrap_or(d.c_noise_tmax),
    };
    let Some(path) = &a.load else {
        return Ok(cfg);
    };
    let head = read_header(path)?;
    let given = |key: &str| match key {
        "seed" => a.seed.is_some(),
        "width" => a.width.is_some(),
        "layers" => a.layers.is_some(),
        "heads" => a.heads.is_some(),
        "lr" => a.lr.is_some(),
        "batch" => a.batch.is_some(),
        "epochs" => a.epochs.is_some(),
        "aug" => a.aug.is_some(),
        k if k.starts_with("phase1_frac") => a.phase1_frac.is_some(),
        k if k.starts_with("phase1") => a.phase1.is_some(),
        k if k.starts_with("phase2") => a.phase2.is_some(),
        "c_noise_tmax" => a.c_noise_tmax.is_some(),
        _ => false,
    };
    reconcile_all(&mut cfg, path, &head.settings, given)?;
    Ok(cfg)
}

/// Clouds (S, N, 3) of every file, which must share N.
fn read_clouds(paths: &[PathBuf]) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let (mut all, mut s, mut n) = (Vec::new(), 0, 0);
    for p in paths {
        let gt = GroundTruth::read(p)?;
        if s > 0 && gt.n != n {
            bail!(
                "{}: clouds of {} points, {} has {n}",
                p.display(),
                gt.n,
                paths[0].display()
            );
        }
        n = gt.n;
        s += gt.s;
        all.extend(gt.clouds);
    }
    if s == 0 {
        bail!("no clouds in {}", paths[0].display());
    }
    Ok((all, s, n))
}

/// `losses.csv`: `step,loss`, the first row at step `offset`.
fn write_losses(outdir: &Path, offset: usize, losses: &[f64]) -> crate::Result<()> {
    let mut txt = String::from("step,loss\n");
    for (i, l) in losses.iter().enumerate() {
        txt.push_str(&format!("{},{l:.6}\n", i + offset));
    }
    write_bytes_atomic(outdir.join("losses.csv"), txt.as_bytes())
}

/// Run `pc-train`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = settings(&a)?;
    if a.checkpoint == 0 {
        bail!("--checkpoint must be positive");
    }
    let (clouds, s, n) = read_clouds(&a.data)?;
    std::fs::create_dir_all(&a.outdir)
        .with_context(|| format!("creating {}", a.outdir.display()))?;
    let resume = match &a.load {
        Some(p) => Some(load_state(p, s, n, &cfg)?),
        None => None,
    };
    let total = cfg.total_steps(s);
    let first = resume.as_ref().map_or(0, |c| c.epoch);
    if let (Some(p), true) = (&a.load, first >= total) {
        bail!(
            "{}: the state is at step {first} of {total}: nothing left to train",
            p.display()
        );
    }
    // losses of the steps already done (this folder's losses.csv when resuming)
    let mut losses: Vec<f64> = Vec::new();
    if first > 0 {
        if let Ok(t) = std::fs::read_to_string(a.outdir.join("losses.csv")) {
            losses = t
                .lines()
                .skip(1)
                .filter_map(|l| l.split(',').nth(1)?.parse().ok())
                .take(first)
                .collect();
        }
    }
    let offset = first - losses.len();
    let pb = super::progress::bar(total as u64, "pc-train");
    pb.set_position(first as u64);
    let state_path = a.outdir.join("state.safetensors");
    let out = train_checkpointed(
        &clouds,
        s,
        n,
        &cfg,
        resume,
        a.checkpoint,
        |step, loss| {
            pb.inc(1);
            if step.is_multiple_of(10) {
                pb.set_message(format!("pc-train loss {loss:.4}"));
            }
        },
        |state, new| {
            let all: Vec<f64> = losses.iter().chain(new).copied().collect();
            write_losses(&a.outdir, offset, &all)?;
            state.save(&state_path)
        },
    )?;
    pb.finish_and_clear();
    out.model.save(&a.outdir)?;
    out.state.save(&state_path)?;
    losses.extend(&out.losses);
    write_losses(&a.outdir, offset, &losses)?;
    let final_loss = loss_curve(
        a.outdir.join("loss.png"),
        &losses,
        offset,
        "pc-train EDM loss",
    )?;
    let done = total - first;
    println!(
        "trained {} params on {s} clouds of {n} points: {done} steps in {:.1}s ({:.2} steps/s), final loss {:.4} → {}",
        out.model.num_params(),
        out.seconds,
        done as f64 / out.seconds.max(1e-9),
        final_loss.unwrap_or(f64::NAN),
        a.outdir.display()
    );
    Ok(())
}
