//! `isometry`: how well a trained model's latent geometry matches volume geometry (cryoTWIN's metric,
//! Yamazaki et al. 2023, after RaDOGAGA): for latents z of data images and random unit directions v, w, the
//! Pearson r of `δ²(v·w)` with `⟨V(z + δv) − V(z), V(z + δw) − V(z)⟩` over real-space decoded volumes V. A
//! decoder that is locally a scaled isometry gives r = 1. With `--top-k k` the directions are also drawn in
//! the top-k principal subspace of the latents (unused latent dimensions dilute r: k active of d give
//! about √(k/d)). Works for VAE (z = z_mu) and twin models alike.
//!
//! Each pair decodes three volumes: `-n` pairs cost 3n volume evaluations (use `-d` to evaluate on a
//! smaller box).
//!
//! Example: `cryofield isometry out/weights.19.safetensors -c out/config.json --zfile out/z.19.pkl -n 200 --top-k 2 -o out/iso.txt`

use crate::analysis::latent::load_z;
use crate::analysis::pca::Pca;
use crate::cli::progress;
use crate::io::atomic::write_bytes_atomic;
use crate::model::load::LoadedModel;
use crate::twin::metrics::{isometry_r, IsometryConfig};
use anyhow::{bail, Context};
use std::path::PathBuf;

/// The isometry correlation of a trained model.
#[derive(Debug, clap::Args)]
#[command(
    about = "Isometry correlation of a trained model's decoder around its latents (VAE or twin)"
)]
pub struct Args {
    /// Model weights (weights.N.safetensors)
    pub weights: PathBuf,
    /// The run's config.json
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Latents of the data (z.N.pkl, .npy or text)
    #[arg(long)]
    pub zfile: PathBuf,
    /// Number of (z, δ₁, δ₂) pairs
    #[arg(short = 'n', default_value_t = 200)]
    pub n: usize,
    /// Displacement as a fraction of the latents' RMS spread
    #[arg(long, default_value_t = 0.01)]
    pub delta: f64,
    /// Also report r with directions in the top-k principal subspace of the latents
    #[arg(long = "top-k")]
    pub top_k: Option<usize>,
    /// Evaluate volumes on a smaller D×D×D box (Fourier cropping)
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
    /// Seed of the latents and directions drawn
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the result here (text); default: stdout only
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
}

/// Run `isometry`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.n < 3 || !(a.delta > 0.0 && a.delta.is_finite()) {
        bail!(
            "-n must be at least 3 and --delta positive, got -n {} and --delta {}",
            a.n,
            a.delta
        );
    }
    let model = LoadedModel::load(&a.weights, &a.config)?;
    if model.zdim == 0 {
        bail!(
            "{}: a homogeneous model (no latent space) has no isometry",
            a.config.display()
        );
    }
    let lat = load_z(&a.zfile)?;
    let d = lat.zdim;
    if d != model.zdim {
        bail!(
            "{}: latents have zdim {d} but the model in {} has zdim {}",
            a.zfile.display(),
            a.weights.display(),
            model.zdim
        );
    }
    if let Some(k) = a.top_k {
        if k == 0 || k > d {
            bail!("--top-k must be in 1..={d} (the latent dimension), got {k}");
        }
    }
    let pca = Pca::fit(&lat.z, lat.n, d)?;
    let rms = pca.explained_variance.iter().sum::<f64>().sqrt();
    let delta = a.delta * rms.max(f64::MIN_POSITIVE);
    // The latents the pairs start from: a seeded sample of the data's.
    let mut order: Vec<usize> = (0..lat.n).collect();
    {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(a.seed));
    }
    let z: Vec<f64> = order
        .iter()
        .cycle()
        .take(a.n)
        .flat_map(|&i| lat.z[i * d..(i + 1) * d].iter().map(|&v| v as f64))
        .collect();
    let identity: Vec<f64> = (0..d * d)
        .map(|k| f64::from(u8::from(k % (d + 1) == 0)))
        .collect();
    let mut bases = vec![("all", identity)];
    if let Some(k) = a.top_k {
        bases.push(("top_k", pca.components[..k * d].to_vec()));
    }
    let pb = progress::bar((3 * a.n * bases.len()) as u64, "isometry");
    let mut decode = |x: &[f64]| -> crate::Result<Vec<f64>> {
        let zf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let v = model.volume(Some(&zf), a.downsample)?;
        pb.inc(1);
        Ok(v.into_iter().map(f64::from).collect())
    };
    let mut results = Vec::new();
    for (name, basis) in &bases {
        let cfg = IsometryConfig {
            pairs: a.n,
            delta,
            seed: a.seed,
        };
        let r = isometry_r(&mut decode, &z, d, basis, &cfg)
            .with_context(|| format!("isometry over {}", a.weights.display()))?;
        results.push((*name, r));
    }
    pb.finish_and_clear();
    let mut text = format!(
        "# isometry of {} at latents {}: {} pairs, δ = {delta:.4e} ({} × RMS spread {rms:.4}), zdim {d}, seed {}\n",
        a.weights.display(),
        a.zfile.display(),
        a.n,
        a.delta,
        a.seed
    );
    for (name, r) in &results {
        match (*name, a.top_k) {
            ("top_k", Some(k)) => text.push_str(&format!("r_top{k} {r:.6}\n")),
            _ => text.push_str(&format!("r {r:.6}\n")),
        }
    }
    print!("{text}");
    if let Some(o) = &a.o {
        write_bytes_atomic(o, text.as_bytes())?;
        eprintln!("wrote {}", o.display());
    }
    Ok(())
}
