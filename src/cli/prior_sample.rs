//! `prior-sample`: draw latents from a trained diffusion prior. Default sampler: the paper's
//! Euler–Maruyama on probability-flow ODE + Langevin SDE (Appendix A.1, eq. 5) over the Karras
//! schedule (ρ = 7, M = 1000 steps); `--sampler heun` is EDM's Heun (Algorithm 1, or Algorithm 2
//! with `--s-churn > 0`). Writes text rows (for `eval-vol --zfile`), or `.npy` / `.pkl` by extension.
//!
//! Example: `cryofield prior-sample prior/ -n 1000 -o samples.txt`

use std::path::PathBuf;

use anyhow::bail;
use rand::SeedableRng;

use super::prior_train::save_latents;
use crate::diffusion::sample::{euler_maruyama, heun, Churn};
use crate::diffusion::MlpDenoiser;

/// Sample latents from a diffusion prior.
#[derive(Debug, clap::Args)]
#[command(about = "Sample latents from a trained latent diffusion prior")]
pub struct Args {
    /// Folder written by prior-train
    pub prior_dir: PathBuf,
    /// Number of samples
    #[arg(short = 'n', default_value_t = 1000)]
    pub n: usize,
    /// Output (.txt rows for eval-vol --zfile; .npy or .pkl also accepted)
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// Sampler: `em` (paper: Euler–Maruyama, ODE + Langevin) or `heun` (EDM)
    #[arg(long, default_value = "em")]
    pub sampler: String,
    /// Schedule points M (em) or steps N (heun)
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// EDM S_churn (heun; 0 = deterministic)
    #[arg(long, default_value_t = 0.0)]
    pub s_churn: f64,
    #[arg(long, default_value_t = 0.0)]
    pub s_tmin: f64,
    #[arg(long, default_value_t = f64::INFINITY)]
    pub s_tmax: f64,
    #[arg(long, default_value_t = 1.0)]
    pub s_noise: f64,
    /// Batch size of denoiser calls
    #[arg(long, default_value_t = 10000)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Draw `n` samples with the named sampler (`em` or `heun`), in batches; returns `(n, d)`.
pub fn draw(model: &MlpDenoiser, a: &Args) -> anyhow::Result<Vec<f64>> {
    if a.n == 0 || a.batch == 0 {
        bail!("-n and --batch must be positive");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let churn = Churn {
        s_churn: a.s_churn,
        s_tmin: a.s_tmin,
        s_tmax: a.s_tmax,
        s_noise: a.s_noise,
    };
    let nb = a.n.div_ceil(a.batch);
    let pb = super::progress::bar((nb * a.steps) as u64, "prior-sample");
    let mut out = Vec::with_capacity(a.n * model.d);
    for b in 0..nb {
        let m = a.batch.min(a.n - b * a.batch);
        let x = match a.sampler.as_str() {
            "em" => euler_maruyama(model, &model.edm, m, a.steps, &mut rng, |_| pb.inc(1))?,
            "heun" => heun(model, &model.edm, m, a.steps, churn, &mut rng, |_| {
                pb.inc(1)
            })?,
            s => bail!("unknown --sampler `{s}` (em or heun)"),
        };
        out.extend(x);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Run `prior-sample`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let model = MlpDenoiser::load(a.prior_dir.join("prior.npz"))?;
    let t = std::time::Instant::now();
    let z = draw(&model, &a)?;
    let secs = t.elapsed().as_secs_f64();
    save_latents(&a.out, &z, model.d)?;
    println!(
        "{} samples × {} steps ({}) in {secs:.1}s → {}",
        a.n,
        a.steps,
        a.sampler,
        a.out.display()
    );
    Ok(())
}
