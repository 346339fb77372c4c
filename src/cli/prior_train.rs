//! `prior-train`: train a latent diffusion prior (EDM, Karras et al. 2022) on cryoDRGN latents, as
//! in Kreis et al. 2022 (Appendix A.1): residual MLP denoiser (16 × 128, SiLU) conditioned on the
//! noise level, σ_data = std of the latents, EDM loss weighting and log-normal σ, Adam (lr 3e-4,
//! batch 1024), EMA 0.999. Writes `PRIOR_DIR/prior.npz` (EMA weights), `loss.png`, `loss.txt`
//! and `state.safetensors` (raw and EMA weights, Adam moments, step count): `--load` continues
//! from it up to `--steps` in total, exactly as an uninterrupted run would.
//!
//! Example: `cryofield prior-train z.25.pkl -o prior/ --steps 20000`, then
//! `cryofield prior-train z.25.pkl -o prior/ --steps 40000 --load prior/state.safetensors`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::analysis::plot::{line_plot, LineOptions, PlotStyle, Series};
use crate::diffusion::model::{load_state, train_resumable, TrainConfig};
use crate::io::atomic::write_bytes_atomic;
use crate::io::npy::read_npy;
use crate::io::pkl::read_pkl_all;

/// Train a diffusion prior on latents.
#[derive(Debug, clap::Args)]
#[command(about = "Train a latent diffusion prior (EDM) on cryoDRGN latents z.pkl")]
pub struct Args {
    /// Latents: cryoDRGN z.N.pkl (first pickle: z_mu (N, zdim)), .npy or whitespace text
    pub zfile: PathBuf,
    /// Output folder (prior.npz, loss.png, loss.txt)
    #[arg(short = 'o', long)]
    pub outdir: PathBuf,
    /// Hidden layers of the residual MLP
    #[arg(long, default_value_t = 16)]
    pub layers: usize,
    /// Width of the hidden layers
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Batch size
    #[arg(short = 'b', long, default_value_t = 1024)]
    pub batch: usize,
    /// Optimizer steps
    #[arg(long, default_value_t = 20000)]
    pub steps: usize,
    /// EMA decay of the saved weights
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Resume from a `state.safetensors` of an earlier run on the same latents (same --layers,
    /// --dim, --seed); --steps counts from the start of that run
    #[arg(long)]
    pub load: Option<PathBuf>,
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
    if a.batch == 0 || a.dim == 0 || a.lr.is_nan() || a.lr <= 0.0 || !(0.0..1.0).contains(&a.ema) {
        bail!("--batch and --dim must be positive, --lr > 0 and 0 ≤ --ema < 1");
    }
    let (z, d) = load_latents(&a.zfile)?;
    std::fs::create_dir_all(&a.outdir)
        .with_context(|| format!("creating {}", a.outdir.display()))?;
    let cfg = TrainConfig {
        nlayers: a.layers,
        hidden: a.dim,
        lr: a.lr,
        batch: a.batch,
        steps: a.steps,
        ema: a.ema,
        seed: a.seed,
    };
    let resume = match &a.load {
        Some(p) => Some(load_state(p, &z, d, &cfg)?),
        None => None,
    };
    let first = resume.as_ref().map_or(0, |c| c.epoch);
    if first > a.steps {
        bail!(
            "{}: already {first} steps, more than --steps {}",
            a.load
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
            a.steps
        );
    }
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
    let (model, rep, state) = train_resumable(&z, d, &cfg, resume, |step, loss| {
        pb.inc(1);
        if step.is_multiple_of(100) {
            pb.set_message(format!("prior-train loss {loss:.4}"));
        }
    })?;
    pb.finish_and_clear();
    model.save(a.outdir.join("prior.npz"))?;
    state.save(&a.outdir.join("state.safetensors"))?;
    let offset = first - losses.len();
    losses.extend(&rep.losses);
    let mut txt = String::from("# step loss\n");
    for (i, l) in losses.iter().enumerate() {
        txt.push_str(&format!("{} {l:.6}\n", i + offset));
    }
    write_bytes_atomic(a.outdir.join("loss.txt"), txt.as_bytes())?;
    // loss curve averaged over windows of ~1% of training
    let w = (losses.len() / 100).max(1);
    let (xs, ys): (Vec<f64>, Vec<f64>) = losses
        .chunks(w)
        .enumerate()
        .map(|(i, c)| {
            (
                (i * w + offset) as f64,
                c.iter().sum::<f64>() / c.len() as f64,
            )
        })
        .unzip();
    if !xs.is_empty() {
        let style = PlotStyle {
            title: "EDM training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            ..Default::default()
        };
        line_plot(
            a.outdir.join("loss.png"),
            &[Series {
                label: "loss",
                x: &xs,
                y: &ys,
            }],
            &style,
            &LineOptions::default(),
        )?;
    }
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
        sps * a.batch as f64,
        ys.last().copied().unwrap_or(f64::NAN),
        a.outdir.join("prior.npz").display()
    );
    Ok(())
}
