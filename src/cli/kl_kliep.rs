//! `kl-kliep`: the KL divergence between a model's latents and its prior, estimated by KLIEP density-ratio
//! fitting (cryoTWIN's metric, Yamazaki et al. 2023): against a GMM prior (`--gmm gmm.npz`, a twin model's)
//! or the standard normal (`--std-normal`, a VAE's). Both directions are reported; KL(latents ‖ prior) is
//! the headline. The estimate is biased low in high dimensions, so compare models only with identical
//! settings (the same `-n`, `--kernels`, `--folds`, `--seed`).
//!
//! Example: `cryofield kl-kliep out/z.19.pkl --std-normal -n 5000 -o out/kl.txt`

use crate::analysis::latent::load_z;
use crate::io::atomic::write_bytes_atomic;
use crate::twin::gmm::Gmm;
use crate::twin::metrics::{kliep_kl, KliepConfig};
use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::PathBuf;

/// KL between latents and a prior by KLIEP.
#[derive(Debug, clap::Args)]
#[command(
    about = "KL divergence between latents and a GMM or standard-normal prior (KLIEP), both directions"
)]
pub struct Args {
    /// Latents (z.N.pkl, .npy or text; (N, zdim))
    pub zfile: PathBuf,
    /// GMM prior (gmm.npz: pi (C), mu (C, zdim), cov (C, zdim, zdim))
    #[arg(
        long,
        conflicts_with = "std_normal",
        required_unless_present = "std_normal"
    )]
    pub gmm: Option<PathBuf>,
    /// The standard normal prior N(0, I) (a VAE's)
    #[arg(long = "std-normal")]
    pub std_normal: bool,
    /// Samples of each side (latents subsampled without replacement if more; prior samples drawn)
    #[arg(short = 'n', default_value_t = 10000)]
    pub n: usize,
    /// Kernel centres
    #[arg(long, default_value_t = 100)]
    pub kernels: usize,
    /// Cross-validation folds for the kernel width
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Seed of the subsample, the prior draws, the centres and the folds
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the result here (text); default: stdout only
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
}

/// Run `kl-kliep`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.n < a.folds.max(2) || a.kernels == 0 {
        bail!(
            "-n must be at least --folds ({}) and --kernels positive, got -n {} and --kernels {}",
            a.folds,
            a.n,
            a.kernels
        );
    }
    let lat = load_z(&a.zfile)?;
    let d = lat.zdim;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let mut rows: Vec<usize> = (0..lat.n).collect();
    rows.shuffle(&mut rng);
    rows.truncate(a.n);
    let z: Vec<f64> = rows
        .iter()
        .flat_map(|&i| lat.z[i * d..(i + 1) * d].iter().map(|&v| v as f64))
        .collect();
    let nz = rows.len();
    let (prior, name) = match &a.gmm {
        Some(p) => {
            let g = Gmm::read(p)?;
            if g.d != d {
                bail!(
                    "{}: the GMM is {}-dimensional but the latents in {} have zdim {d}",
                    p.display(),
                    g.d,
                    a.zfile.display()
                );
            }
            (
                g.sample(nz, a.seed ^ 0x9e37_79b9),
                format!("GMM {}", p.display()),
            )
        }
        None => (
            (0..nz * d)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect::<Vec<f64>>(),
            "N(0, I)".to_string(),
        ),
    };
    let cfg = KliepConfig {
        kernels: a.kernels,
        folds: a.folds,
        seed: a.seed,
    };
    eprintln!(
        "KLIEP: {nz} latents of {} (zdim {d}) against {nz} samples of {name}, {} kernels, {}-fold CV",
        a.zfile.display(),
        a.kernels,
        a.folds
    );
    let fwd = kliep_kl(&z, &prior, d, &cfg).context("KL(latents ‖ prior)")?;
    let rev = kliep_kl(&prior, &z, d, &cfg).context("KL(prior ‖ latents)")?;
    let text = format!(
        "# kl-kliep {} against {name}: n = {nz} each, zdim {d}, {} kernels, {}-fold CV, seed {}\n\
         kl_latents_prior {:.6}\nkl_prior_latents {:.6}\nsigma_latents_prior {:.6}\nsigma_prior_latents {:.6}\n",
        a.zfile.display(),
        a.kernels,
        a.folds,
        a.seed,
        fwd.kl,
        rev.kl,
        fwd.sigma,
        rev.sigma
    );
    print!("{text}");
    if let Some(o) = &a.o {
        write_bytes_atomic(o, text.as_bytes())?;
        eprintln!("wrote {}", o.display());
    }
    Ok(())
}
