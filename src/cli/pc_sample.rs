//! `pc-sample`: draw clouds from a prior trained by `pc-train`, with the paper's Algorithm 1
//! without guidance (spec §1–2, ζ = 0): t grid (t_max^{1/ρ} + i/(N−1)(t_min^{1/ρ} −
//! t_max^{1/ρ}))^ρ then 0, Euler step with c_i = t_i + β(t_i)·t_i², a correction step and noise
//! √(2β(t_i)·t_i²·Δt)·n except on the last step; β(t) = 1/t above `--beta-switch`, else
//! `--beta-low`. Writes (S, N, 3) float32 `.npy`.
//!
//! Example: `cryofield pc-sample prior/ -n 10 --steps 100 --tmax 80 --rho 3 -o samples.npy`

use std::path::PathBuf;

use anyhow::bail;
use rand::SeedableRng;

use crate::backend::cpu::CpuBackend;
use crate::io::array::NdArray;
use crate::io::npy::write_npy;
use crate::pointcloud::train::{sample_prior, SampleConfig};
use crate::pointcloud::transformer::PointTransformer;

/// Sample clouds from a point-cloud prior.
#[derive(Debug, clap::Args)]
#[command(about = "Sample point clouds from a pc-train prior (Algorithm 1 without guidance)")]
pub struct Args {
    /// Folder written by pc-train (model.safetensors, config.json)
    pub prior_dir: PathBuf,
    /// Number of clouds
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    /// Output .npy (S, N, 3) float32
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// Steps N (network evaluations 2N − 1)
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// t_0
    #[arg(long, default_value_t = 80.0)]
    pub tmax: f64,
    /// t_{N−1}
    #[arg(long, default_value_t = 0.002)]
    pub tmin: f64,
    /// Grid exponent ρ
    #[arg(long, default_value_t = 3.0)]
    pub rho: f64,
    /// β(t) = 1/t for t above this
    #[arg(long, default_value_t = 1.0)]
    pub beta_switch: f64,
    /// β(t) at and below --beta-switch
    #[arg(long, default_value_t = 1.0)]
    pub beta_low: f64,
    /// Clouds per network evaluation
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Run `pc-sample`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("-n must be positive");
    }
    let be = CpuBackend::<f32>::new();
    let model = PointTransformer::load(&be, &a.prior_dir)?;
    let cfg = SampleConfig {
        steps: a.steps,
        t_max: a.tmax,
        t_min: a.tmin,
        rho: a.rho,
        beta_switch: a.beta_switch,
        beta_low: a.beta_low,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let pb = super::progress::bar((a.n.div_ceil(a.batch.max(1)) * a.steps) as u64, "pc-sample");
    let t = std::time::Instant::now();
    let x = sample_prior(&model, a.n, a.batch, &cfg, &mut rng, || pb.inc(1))?;
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    let np = model.cfg.n_points;
    write_npy(
        &a.out,
        &NdArray::from_f32(vec![a.n, np, 3], x.iter().map(|&v| v as f32).collect())?,
    )?;
    println!(
        "{} clouds of {np} points × {} steps ({} network evaluations each) in {secs:.1}s → {}",
        a.n,
        a.steps,
        2 * a.steps - 1,
        a.out.display()
    );
    Ok(())
}
