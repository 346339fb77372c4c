//! `prior-langevin`: Langevin dynamics in the diffusion prior's Gaussian space (paper eq. 7:
//! ẑ ← ẑ − ẑΔt/2 + √Δt·ε), decoded with the adaptive RK4(5) probability-flow ODE solver. Starts
//! from `--start` (encoded) or from ẑ ~ N(0, I).
//!
//! Example: `cryofield prior-langevin prior/ --steps 200 --dt 0.1 -o traj.txt`

use std::path::PathBuf;

use anyhow::bail;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::prior_interpolate::parse_point;
use super::prior_train::save_latents;
use crate::diffusion::ode::{decode, encode, langevin_chain, OdeOptions};
use crate::diffusion::MlpDenoiser;

/// Langevin trajectory through the prior.
#[derive(Debug, clap::Args)]
#[command(about = "Langevin dynamics in the diffusion prior's Gaussian space, decoded by the ODE")]
pub struct Args {
    /// Folder written by prior-train
    pub prior_dir: PathBuf,
    /// Langevin steps (the output has steps + 1 latents)
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Step size Δt
    #[arg(long, default_value_t = 0.1)]
    pub dt: f64,
    /// Start latent (comma-separated), encoded by the ODE; default ẑ0 ~ N(0, I)
    #[arg(long, allow_hyphen_values = true)]
    pub start: Option<String>,
    /// Output (.txt rows, .npy or .pkl)
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Run `prior-langevin`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.dt.is_nan() || a.dt <= 0.0 {
        bail!("--dt must be positive");
    }
    let model = MlpDenoiser::load(a.prior_dir.join("prior.npz"))?;
    let d = model.d;
    let opt = OdeOptions {
        rtol: a.tol,
        atol: a.tol,
        ..Default::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let z0 = match &a.start {
        Some(s) => encode(&model, &model.edm, &parse_point(s, d, None)?, &opt)?.0,
        None => (0..d).map(|_| StandardNormal.sample(&mut rng)).collect(),
    };
    let chain = langevin_chain(&z0, a.steps, a.dt, &mut rng);
    let (z, st) = decode(&model, &model.edm, &chain, &opt)?;
    save_latents(&a.out, &z, d)?;
    println!(
        "{} Langevin states decoded ({} ODE steps, {} denoiser calls) → {}",
        a.steps + 1,
        st.accepted,
        st.nfev,
        a.out.display()
    );
    Ok(())
}
