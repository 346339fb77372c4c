//! `eval-vol`: decode volumes from a trained model (the reference's `eval_vol`). With `-z` (one
//! latent of zdim values) or a homogeneous model, `-o` is one `.mrc`; with `--z-start/--z-end
//! -n K` (K evenly spaced points) or `--zfile` (one z per line, or a .pkl/.npy of z), `-o` is
//! a folder of `vol_000.mrc`, `vol_001.mrc`, …
//!
//! Example: `cryofield eval-vol out/weights.19.safetensors -c out/config.json -z 0.5 -o vol.mrc`

use crate::analysis::latent::load_z;
use crate::model::load::LoadedModel;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Decode volumes at given latents.
#[derive(Debug, clap::Args)]
#[command(about = "Evaluate the decoder of a trained model at given latent values")]
pub struct Args {
    /// Model weights (weights.N.safetensors)
    pub weights: PathBuf,
    /// The run's config.json
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Output .mrc (one volume) or folder (several)
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// One latent value (zdim numbers)
    #[arg(short = 'z', num_args = 1.., allow_negative_numbers = true)]
    pub z: Option<Vec<f32>>,
    /// Start of a straight line in latent space
    #[arg(long = "z-start", num_args = 1.., allow_negative_numbers = true, requires = "z_end")]
    pub z_start: Option<Vec<f32>>,
    /// End of the line
    #[arg(long = "z-end", num_args = 1.., allow_negative_numbers = true, requires = "z_start")]
    pub z_end: Option<Vec<f32>>,
    /// Number of volumes along the line
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    /// Latents to decode, one per row (.txt, .pkl, .npy)
    #[arg(long)]
    pub zfile: Option<PathBuf>,
    /// Pixel size of the output (default: the training CTF's, else 1)
    #[arg(long = "Apix")]
    pub apix: Option<f32>,
    /// Flip handedness (reverse the slowest axis)
    #[arg(long)]
    pub flip: bool,
    /// Invert contrast
    #[arg(long)]
    pub invert: bool,
    /// Evaluate on a smaller D×D×D box (Fourier cropping; even, ≤ the training size)
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
}

/// Post-processing shared with `analyze`: Apix, handedness flip, contrast inversion, box.
#[derive(Clone, Copy, Debug)]
pub struct VolOptions {
    pub apix: Option<f32>,
    pub flip: bool,
    pub invert: bool,
    pub downsample: Option<usize>,
}

/// Decode `z` (m rows of zdim; empty with zdim 0: one homogeneous volume) and write each volume
/// to `path(i)`.
pub fn write_volumes(
    model: &LoadedModel,
    z: &[f32],
    m: usize,
    opts: VolOptions,
    path: impl Fn(usize) -> PathBuf,
) -> anyhow::Result<Vec<PathBuf>> {
    let d = opts.downsample.unwrap_or(model.d);
    let apix = opts.apix.or_else(|| model.apix()).unwrap_or(1.0);
    // A downsampled box keeps the physical extent: the pixel grows by D/d.
    let apix = apix * model.d as f32 / d as f32;
    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        let zi = (model.zdim > 0).then(|| &z[i * model.zdim..(i + 1) * model.zdim]);
        let mut vol = model.volume(zi, Some(d))?;
        if opts.flip {
            let s = d * d;
            vol = vol.chunks(s).rev().flatten().copied().collect();
        }
        if opts.invert {
            vol.iter_mut().for_each(|v| *v = -*v);
        }
        let p = path(i);
        crate::io::mrc::write_mrc(&p, &vol, (d, d, d), apix, true)
            .with_context(|| format!("writing {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

fn check_len(what: &str, v: &[f32], zdim: usize, weights: &Path) -> anyhow::Result<()> {
    if v.len() != zdim {
        bail!(
            "{what} has {} values but the model {} has zdim {zdim}",
            v.len(),
            weights.display()
        );
    }
    Ok(())
}

/// Run `eval-vol`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let model = LoadedModel::load(&a.weights, &a.config)?;
    let zdim = model.zdim;
    let opts = VolOptions {
        apix: a.apix,
        flip: a.flip,
        invert: a.invert,
        downsample: a.downsample,
    };
    let many = |z: Vec<f32>, m: usize| -> anyhow::Result<()> {
        std::fs::create_dir_all(&a.o).with_context(|| format!("creating {}", a.o.display()))?;
        let ps = write_volumes(&model, &z, m, opts, |i| a.o.join(format!("vol_{i:03}.mrc")))?;
        eprintln!("wrote {} volumes to {}", ps.len(), a.o.display());
        Ok(())
    };
    if let (Some(s), Some(e)) = (&a.z_start, &a.z_end) {
        check_len("--z-start", s, zdim, &a.weights)?;
        check_len("--z-end", e, zdim, &a.weights)?;
        if a.n == 0 {
            bail!("-n must be at least 1");
        }
        let z: Vec<f32> = (0..a.n)
            .flat_map(|i| {
                let t = if a.n == 1 {
                    0.0
                } else {
                    i as f32 / (a.n - 1) as f32
                };
                s.iter().zip(e).map(move |(s, e)| s + t * (e - s))
            })
            .collect();
        return many(z, a.n);
    }
    if let Some(f) = &a.zfile {
        let l = load_z(f)?;
        if l.zdim != zdim {
            bail!(
                "{}: latents have zdim {} but the model {} has zdim {zdim}",
                f.display(),
                l.zdim,
                a.weights.display()
            );
        }
        return many(l.z, l.n);
    }
    let z = match (&a.z, zdim) {
        (Some(z), _) => {
            check_len("-z", z, zdim, &a.weights)?;
            z.clone()
        }
        (None, 0) => vec![],
        (None, _) => bail!("give -z, --z-start/--z-end or --zfile for a model with zdim {zdim}"),
    };
    let o = a.o.clone();
    write_volumes(&model, &z, 1, opts, |_| o.clone())?;
    eprintln!("wrote {}", a.o.display());
    Ok(())
}
