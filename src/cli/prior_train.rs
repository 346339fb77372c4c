//! `prior-train`: train a latent diffusion prior (EDM, Karras et al. 2022) on cryoDRGN latents, as
//! in Kreis et al. 2022 (Appendix A.1): residual MLP denoiser (16 × 128, SiLU) conditioned on the
//! noise level, σ_data = std of the latents, EDM loss weighting and log-normal σ, Adam (lr 3e-4,
//! batch 1024), EMA 0.999. Writes `PRIOR_DIR/prior.npz` (EMA weights), `loss.png`, `loss.txt`
//! and `state.safetensors` (raw and EMA weights, Adam moments, step count and the run's
//! settings). `state.safetensors` and `loss.txt` are also written every `--checkpoint` steps
//! (atomically), so a killed run loses at most that many steps: `--load` continues from the
//! state up to `--steps` in total, exactly as an uninterrupted run would, with the seed,
//! `--layers`, `--dim`, `--lr`, `--batch` and `--ema` of the state (given with another value:
//! an error). A state written before the settings were recorded is resumed with the flags as
//! given (defaults included) and a warning.
//!
//! Example: `cryofield prior-train z.25.pkl -o prior/ --steps 20000`, then
//! `cryofield prior-train z.25.pkl -o prior/ --steps 40000 --load prior/state.safetensors`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::analysis::plot::loss_curve;
use crate::diffusion::model::{load_state, train_checkpointed, TrainConfig};
use crate::io::atomic::write_bytes_atomic;
use crate::io::npy::read_npy;
use crate::io::pkl::read_pkl_all;
use crate::train::checkpoint::{read_header, reconcile_all};

/// Train a diffusion prior on latents.
#[derive(Debug, clap::Args)]
#[command(about = "Train a latent diffusion prior (EDM) on cryoDRGN latents z.pkl")]
pub struct Args {
    /// Latents: cryoDRGN z.N.pkl (first pickle: z_mu (N, zdim)), .npy or whitespace text
    pub zfile: PathBuf,
    /// Output folder (prior.npz, loss.png, loss.txt)
    #[arg(short = 'o', long)]
    pub outdir: PathBuf,
    /// Hidden layers of the residual MLP [default: 16]
    #[arg(long)]
    pub layers: Option<usize>,
    /// Width of the hidden layers [default: 128]
    #[arg(long)]
    pub dim: Option<usize>,
    /// Adam learning rate [default: 0.0003]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Batch size [default: 1024]
    #[arg(short = 'b', long)]
    pub batch: Option<usize>,
    /// Optimizer steps (in all, with --load)
    #[arg(long, default_value_t = 20000)]
    pub steps: usize,
    /// EMA decay of the saved weights [default: 0.999]
    #[arg(long)]
    pub ema: Option<f64>,
    /// Random seed [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write state.safetensors and loss.txt every this many steps (and at the end)
    #[arg(long, default_value_t = 1000)]
    pub checkpoint: usize,
    /// Resume from a `state.safetensors` of an earlier run on the same latents: its seed,
    /// --layers, --dim, --lr, --batch and --ema unless given (then they must agree); --steps
    /// counts from the start of that run
    #[arg(long)]
    pub load: Option<PathBuf>,
}

/// The training settings of `a`: the flags given, the checkpoint's (`--load`) for those not,
/// else the defaults; and with `--load`, the state's step count.
fn settings(a: &Args) -> anyhow::Result<(TrainConfig, Option<usize>)> {
    let d = TrainConfig::default();
    let mut cfg = TrainConfig {
        nlayers: a.layers.unwrap_or(d.nlayers),
        hidden: a.dim.unwrap_or(d.hidden),
        lr: a.lr.unwrap_or(d.lr),
        batch: a.batch.unwrap_or(d.batch),
        steps: a.steps,
        ema: a.ema.unwrap_or(d.ema),
        seed: a.seed.unwrap_or(d.seed),
    };
    let Some(path) = &a.load else {
        return Ok((cfg, None));
    };
    let head = read_header(path)?;
    if head.settings.is_empty() {
        eprintln!(
            "warning: {} records no settings (written by an older cryofield): resuming with seed {}, --layers {}, --dim {}, --lr {}, --batch {}, --ema {}; \
             unless they are the original run's, the result differs from an uninterrupted run",
            path.display(),
            cfg.seed,
            cfg.nlayers,
            cfg.hidden,
            cfg.lr,
            cfg.batch,
            cfg.ema
        );
    }
    let given = [
        ("seed", a.seed.is_some()),
        ("nlayers", a.layers.is_some()),
        ("hidden", a.dim.is_some()),
        ("lr", a.lr.is_some()),
        ("batch", a.batch.is_some()),
        ("ema", a.ema.is_some()),
    ];
    reconcile_all(&mut cfg, path, &head.settings, |key| {
        given.iter().any(|&(k, g)| k == key && g)
    })?;
    Ok((cfg, Some(head.epoch)))
}

/// `loss.txt`: one `step loss` line per step, the first at step `offset`.
fn write_losses(outdir: &Path, offset: usize, losses: &[f64]) -> crate::Result<()> {
    let mut txt = String::from("# step loss\n");
    for (i, l) in losses.iter().enumerate() {
        txt.push_str(&format!("{} {l:.6}\n", i + offset));
    }
    write_bytes_atomic(outdir.join("loss.txt"), txt.as_bytes())
}

/// Latents `(N, zdim)` as f64 rows and zdim: cryoDRGN `z.pkl` (the first pickle of the file is
/// z_mu), `.npy`, or text with one latent per line (`np.savetxt`).
pub fn load_latents(path: &Path) -> anyhow::Result<(Vec<f64>, usize)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let arr = match ext {
        "pkl" => {
            let vals = read_pkl_all(path)?;
            let first = vals.into_iter().next().context("empty pickle")?;
            match first {
                crate::io::pkl::PyValue::Array(a) => a,
                crate::io::pkl::PyValue::Tuple(t) if !t.is_empty() => t[0]
                    .as_array()
                    .cloned()
                    .context("first tuple item is not an array")?,
                _ => bail!("{}: first pickle is not an array", path.display()),
            }
        }
        "npy" => read_npy(path)?,
        _ => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut data = Vec::new();
            let mut d = 0;
            let mut n = 0;
            for line in text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                let row: Vec<f64> = line
                    .split_whitespace()
                    .map(|t| t.parse::<f64>())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("{}: bad number in `{line}`", path.display()))?;
                if n > 0 && row.len() != d {
                    bail!(
                        "{}: line {} has {} values, expected {d}",
                        path.display(),
                        n + 1,
                        row.len()
                    );
                }
                d = row.len();
                n += 1;
                data.extend(row);
            }
            crate::io::array::NdArray::new(vec![n, d], crate::io::array::ArrayData::F64(data))?
        }
    };
    let (n, d) = match arr.shape.as_slice() {
        [n, d] => (*n, *d),
        [n] => (*n, 1),
        s => bail!(
            "{}: latents must be (N, zdim), got shape {s:?}",
            path.display()
        ),
    };
    if n < 2 || d == 0 {
        bail!(
            "{}: need at least 2 latents, got shape {:?}",
            path.display(),
            arr.shape
        );
    }
    let z = arr.to_f64();
    if z.iter().any(|v| !v.is_finite()) {
        bail!("{}: latents contain non-finite values", path.display());
    }
    Ok((z, d))
}

/// Optional data latents that must have the prior's zdim `d` (the `--zfile` of the prior commands).
pub fn load_latents_for(path: Option<&Path>, d: usize) -> anyhow::Result<Option<Vec<f64>>> {
    let Some(p) = path else { return Ok(None) };
    let (z, dz) = load_latents(p)?;
    if dz != d {
        bail!("{}: latents have zdim {dz}, the prior {d}", p.display());
    }
    Ok(Some(z))
}

/// Write latents `(n, d)` by extension: `.npy` (float32), `.pkl` (float32 array), else text rows
/// (what `eval-vol --zfile` reads).
pub fn save_latents(path: &Path, z: &[f64], d: usize) -> anyhow::Result<()> {
    let n = z.len() / d;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let arr =
        || crate::io::array::NdArray::from_f32(vec![n, d], z.iter().map(|&v| v as f32).collect());
    match ext {
        "npy" => crate::io::npy::write_npy(path, &arr()?)?,
        "pkl" => crate::io::pkl::write_pkl(path, &crate::io::pkl::PyValue::Array(arr()?))?,
        _ => {
            let mut s = String::with_capacity(z.len() * 16);
            for r in z.chunks(d) {
                let row: Vec<String> = r.iter().map(|v| format!("{v:.8e}")).collect();
                s.push_str(&row.join(" "));
                s.push('\n');
            }
            write_bytes_atomic(path, s.as_bytes())?;
        }
    }
    Ok(())
}

/// Run `prior-train`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (cfg, done) = settings(&a)?;
    if cfg.batch == 0
        || cfg.hidden == 0
        || cfg.lr.is_nan()
        || cfg.lr <= 0.0
        || !(0.0..1.0).contains(&cfg.ema)
        || a.checkpoint == 0
    {
        bail!("--batch, --dim and --checkpoint must be positive, --lr > 0 and 0 ≤ --ema < 1");
    }
    if let (Some(p), Some(done)) = (&a.load, done) {
        if done >= a.steps {
            bail!(
                "{}: the state is at step {done} and --steps {} asks for {} steps in all (counted from the start of the run): \
                 nothing left to train; give --steps greater than {done}",
                p.display(),
                a.steps,
                a.steps
            );
        }
    }
    let (z, d) = load_latents(&a.zfile)?;
    std::fs::create_dir_all(&a.outdir)
        .with_context(|| format!("creating {}", a.outdir.display()))?;
    let resume = match &a.load {
        Some(p) => Some(load_state(p, &z, d, &cfg)?),
        None => None,
    };
    let first = resume.as_ref().map_or(0, |c| c.epoch);
    // losses of the steps already done (from this folder's loss.txt when resuming)
    let mut losses: Vec<f64> = Vec::new();
    if first > 0 {
        if let Ok(t) = std::fs::read_to_string(a.outdir.join("loss.txt")) {
            losses = t
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
                .take(first)
                .collect();
        }
    }
    let pb = super::progress::bar(a.steps as u64, "prior-train");
    pb.set_position(first as u64);
    let offset = first - losses.len();
    let state_path = a.outdir.join("state.safetensors");
    let (model, rep, state) = train_checkpointed(
        &z,
        d,
        &cfg,
        resume,
        a.checkpoint,
        |step, loss| {
            pb.inc(1);
            if step.is_multiple_of(100) {
                pb.set_message(format!("prior-train loss {loss:.4}"));
            }
        },
        |state, new| {
            // loss.txt first: it always holds the losses of the steps in the state (a resumed
            // run reads as many as the state has steps)
            let all: Vec<f64> = losses.iter().chain(new).copied().collect();
            write_losses(&a.outdir, offset, &all)?;
            state.save(&state_path)
        },
    )?;
    pb.finish_and_clear();
    model.save(a.outdir.join("prior.npz"))?;
    state.save(&state_path)?;
    losses.extend(&rep.losses);
    write_losses(&a.outdir, offset, &losses)?;
    let final_loss = loss_curve(
        a.outdir.join("loss.png"),
        &losses,
        offset,
        "EDM training loss",
    )?;
    let done = a.steps - first;
    let sps = done as f64 / rep.seconds.max(1e-9);
    println!(
        "trained {} params on {} latents (zdim {d}, σ_data {:.4}): {} steps in {:.1}s ({:.1} steps/s, {:.0} samples/s), final loss {:.4} → {}",
        model.num_params(),
        z.len() / d,
        model.edm.sigma_data,
        done,
        rep.seconds,
        sps,
        sps * cfg.batch as f64,
        final_loss.unwrap_or(f64::NAN),
        a.outdir.join("prior.npz").display()
    );
    Ok(())
}
