//! `prior-langevin`: Langevin dynamics in the diffusion prior's Gaussian space (paper eq. 7:
//! ẑ ← ẑ − ẑΔt/2 + √Δt·ε), decoded with the adaptive RK4(5) probability-flow ODE solver. Starts
//! from `--start` (encoded; `@i` is row i of `--zfile`) or from ẑ ~ N(0, I). With `--zfile`,
//! reports the fraction of states in the data's empty region (KDE density below the data's 1st
//! percentile) and draws the trajectory over the data's PC1/PC2 scatter (`OUT` with `.png`).
//!
//! Example: `cryofield prior-langevin prior/ --steps 200 --dt 0.1 -o traj.txt`

use std::path::PathBuf;

use anyhow::bail;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::prior_interpolate::{parse_point, path_plot};
use super::prior_train::{load_latents_for, save_latents};
use crate::diffusion::eval::{fraction_below, Kde};
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
    /// Data latents (for `@i` starts, the empty-region report and the plot)
    #[arg(long)]
    pub zfile: Option<PathBuf>,
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
    let data = load_latents_for(a.zfile.as_deref(), d)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let z0 = match &a.start {
        Some(s) => {
            encode(
                &model,
                &model.edm,
                &parse_point(s, d, data.as_deref())?,
                &opt,
            )?
            .0
        }
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
    if let Some(data) = data {
        let kde = Kde::new(&data, d)?;
        let f = fraction_below(&kde, &z, kde.data_quantile(0.01));
        println!("fraction of states below the data density threshold (1st percentile): {f:.3}");
        let png = a.out.with_extension("png");
        if path_plot(
            &png,
            &data,
            d,
            &[("Langevin trajectory", &z)],
            "prior Langevin",
        )? {
            println!("plot → {}", png.display());
        }
    }
    Ok(())
}
