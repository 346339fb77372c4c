//! `analyze`: the reference's `analyze` for a `train-vae` run: latent analysis of
//! `z.EPOCH.pkl` ([`crate::analysis::latent::run_basic_with`]: PCA, k-means, traversals,
//! plots) into `OUTDIR/analyze.EPOCH/` (or `-o`), then the volumes at every sampled z decoded
//! with `weights.EPOCH.safetensors` into their folder as `vol_001.mrc`, `vol_002.mrc`, …
//! (from `--vol-start-index`, 1 as the reference's 4.3)
//! (zdim ≥ 2: `pc1/`, `pc2/`, `kmeans{K}/`; zdim = 1: the percentile traversal in the folder
//! itself).
//!
//! Example: `cryofield analyze out/ 19 --ksample 20`

use crate::analysis::latent::{load_z, run_basic_with, BasicOptions};
use crate::cli::eval_vol::{write_volumes, VolOptions};
use crate::model::load::LoadedModel;
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Analyze a trained VAE.
#[derive(Debug, clap::Args)]
#[command(about = "Latent-space analysis of a train-vae run, with volumes")]
pub struct Args {
    /// The training output folder
    pub outdir: PathBuf,
    /// Epoch to analyze, as numbered in z.EPOCH.pkl; −1: the final z.pkl and weights (into
    /// OUTDIR/analyze), as the reference's
    #[arg(allow_hyphen_values = true)]
    pub epoch: i64,
    /// Output folder (default OUTDIR/analyze.EPOCH)
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
    /// Number of k-means clusters
    #[arg(long, default_value_t = 20)]
    pub ksample: usize,
    /// Number of principal components to traverse
    #[arg(long, default_value_t = 2)]
    pub pc: usize,
    /// Points per PC traversal
    #[arg(long = "n-per-pc", default_value_t = 10)]
    pub n_per_pc: usize,
    /// Do not decode volumes
    #[arg(long = "skip-vol")]
    pub skip_vol: bool,
    /// Skip the 2-D embedding
    #[arg(long = "skip-umap")]
    pub skip_umap: bool,
    /// Pixel size of the volumes (default: the training CTF's, else 1)
    #[arg(long = "Apix")]
    pub apix: Option<f32>,
    /// Flip handedness of the volumes
    #[arg(long)]
    pub flip: bool,
    /// Invert contrast of the volumes
    #[arg(long)]
    pub invert: bool,
    /// Evaluate volumes on a smaller box
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
    /// Low-pass filter the volumes to this resolution (Å)
    #[arg(long = "low-pass")]
    pub low_pass: Option<f32>,
    /// Crop the volumes to this box (even, pixels)
    #[arg(long)]
    pub crop: Option<usize>,
    /// Number of the first volume of each folder (vol_001.mrc for 1)
    #[arg(long = "vol-start-index", default_value_t = 1)]
    pub vol_start_index: usize,
    /// Random seed (k-means, embedding)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The latents, weights, config and default output folder of epoch `epoch` of the run in
/// `outdir`: ours (`config.json`, `weights.E.safetensors`) or cryoDRGN's (`config.yaml`,
/// `weights.E.pkl`; epoch −1 is its final `z.pkl`/`weights.pkl` into `analyze/`, as the reference's).
pub fn run_files(
    outdir: &Path,
    epoch: i64,
) -> anyhow::Result<(PathBuf, PathBuf, PathBuf, PathBuf)> {
    let json = outdir.join("config.json");
    let yaml = outdir.join("config.yaml");
    if !json.exists() && yaml.exists() {
        return Ok(if epoch < 0 {
            (
                outdir.join("z.pkl"),
                outdir.join("weights.pkl"),
                yaml,
                outdir.join("analyze"),
            )
        } else {
            (
                outdir.join(format!("z.{epoch}.pkl")),
                outdir.join(format!("weights.{epoch}.pkl")),
                yaml,
                outdir.join(format!("analyze.{epoch}")),
            )
        });
    }
    if epoch < 0 && outdir.join("weights.safetensors").exists() {
        // the final epoch's unnumbered outputs, as the reference's −1
        return Ok((
            outdir.join("z.pkl"),
            outdir.join("weights.safetensors"),
            json,
            outdir.join("analyze"),
        ));
    }
    let e = if epoch < 0 {
        crate::train::checkpoint::last_numbered(outdir, "weights", "safetensors").ok_or_else(
            || {
                anyhow::anyhow!(
                    "no weights.N.safetensors in {} (is it a train-vae output folder?)",
                    outdir.display()
                )
            },
        )?
    } else {
        epoch as usize
    };
    Ok((
        outdir.join(format!("z.{e}.pkl")),
        outdir.join(format!("weights.{e}.safetensors")),
        json,
        outdir.join(format!("analyze.{e}")),
    ))
}

/// Run `analyze`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (zpath, weights, config, default_out) = run_files(&a.outdir, a.epoch)?;
    for p in [&zpath, &weights, &config] {
        if !p.exists() {
            bail!(
                "{} not found (is {} a train-vae output folder with epoch {}?)",
                p.display(),
                a.outdir.display(),
                a.epoch
            );
        }
    }
    let out = a.o.clone().unwrap_or(default_out);
    let lat = load_z(&zpath)?;
    // Load the model first so that a mismatch fails before any output is written.
    let model = if a.skip_vol {
        None
    } else {
        let m = LoadedModel::load(&weights, &config)?;
        if m.zdim != lat.zdim {
            bail!(
                "{}: latents have zdim {} but the model {} has zdim {}",
                zpath.display(),
                lat.zdim,
                weights.display(),
                m.zdim
            );
        }
        Some(m)
    };
    let rep = run_basic_with(
        &lat.z,
        lat.n,
        lat.zdim,
        &out,
        &BasicOptions {
            k: a.ksample,
            num_pcs: a.pc,
            n_per_pc: a.n_per_pc,
            skip_embedding: a.skip_umap,
            seed: a.seed,
        },
    )?;
    if let Some(model) = &model {
        let opts = VolOptions {
            apix: a.apix,
            flip: a.flip,
            invert: a.invert,
            downsample: a.downsample,
            low_pass: a.low_pass,
            crop: a.crop,
        };
        for job in &rep.volume_jobs {
            let m = job.z.len() / lat.zdim;
            let dir = job.outdir.clone();
            write_volumes(model, &job.z, m, opts, |i| {
                dir.join(format!("vol_{:03}.mrc", i + a.vol_start_index))
            })?;
            eprintln!("wrote {m} volumes to {}", job.outdir.display());
        }
    }
    eprintln!("analysis in {}", out.display());
    Ok(())
}
