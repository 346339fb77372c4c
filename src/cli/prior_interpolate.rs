//! `prior-interpolate`: interpolate between two latents through the diffusion prior (paper A.1):
//! encode both with the adaptive RK4(5) probability-flow ODE solver (σ_min → σ_max), interpolate
//! linearly in the prior's Gaussian space, decode (σ_max → σ_min). With `--zfile`, reports the
//! fraction of path points whose data density (Gaussian KDE) is below the 1st percentile of the
//! data's own densities (the "empty region"), next to that of the straight line, and draws both
//! paths over the data's PC1/PC2 scatter (`OUT` with the extension `.png`).
//!
//! Example: `cryofield prior-interpolate prior/ --from 0.1,-1.2,... --to 1.3,0.4,... -n 100 -o path.txt`

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::prior_train::{load_latents_for, save_latents};
use crate::analysis::latent::{marked_scatter, Marks};
use crate::analysis::pca::Pca;
use crate::analysis::plot::PlotStyle;
use crate::diffusion::eval::{fraction_below, Kde};
use crate::diffusion::ode::{interpolate, lerp_path, OdeOptions};
use crate::diffusion::MlpDenoiser;

/// Interpolate between two latents through the prior.
#[derive(Debug, clap::Args)]
#[command(about = "Interpolate between two latents in the diffusion prior's Gaussian space")]
pub struct Args {
    /// Folder written by prior-train
    pub prior_dir: PathBuf,
    /// Start latent, comma-separated (zdim values), or `@i` for row i of --zfile
    #[arg(long, allow_hyphen_values = true)]
    pub from: String,
    /// End latent, comma-separated, or `@i`
    #[arg(long, allow_hyphen_values = true)]
    pub to: String,
    /// Number of points on the path (endpoints included)
    #[arg(short = 'n', default_value_t = 100)]
    pub n: usize,
    /// Output (.txt rows, .npy or .pkl)
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// Data latents (for `@i` endpoints and the empty-region report)
    #[arg(long)]
    pub zfile: Option<PathBuf>,
    /// ODE relative / absolute tolerance
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
}

/// A latent from `a,b,c` or `@i` (row i of `data`).
pub fn parse_point(s: &str, d: usize, data: Option<&[f64]>) -> anyhow::Result<Vec<f64>> {
    if let Some(i) = s.strip_prefix('@') {
        let i: usize = i.parse()?;
        let Some(z) = data else {
            bail!("`{s}` needs --zfile")
        };
        if (i + 1) * d > z.len() {
            bail!("row {i} is out of range ({} latents)", z.len() / d);
        }
        return Ok(z[i * d..(i + 1) * d].to_vec());
    }
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>())
        .collect::<Result<_, _>>()?;
    if v.len() != d {
        bail!("`{s}` has {} values, the prior's zdim is {d}", v.len());
    }
    Ok(v)
}

/// Run `prior-interpolate`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let model = MlpDenoiser::load(a.prior_dir.join("prior.npz"))?;
    let d = model.d;
    let data = load_latents_for(a.zfile.as_deref(), d)?;
    let za = parse_point(&a.from, d, data.as_deref())?;
    let zb = parse_point(&a.to, d, data.as_deref())?;
    let opt = OdeOptions {
        rtol: a.tol,
        atol: a.tol,
        ..Default::default()
    };
    let path = interpolate(&model, &model.edm, &za, &zb, a.n, &opt)?;
    save_latents(&a.out, &path, d)?;
    println!("{} interpolated latents → {}", a.n, a.out.display());
    if let Some(z) = data {
        let kde = Kde::new(&z, d)?;
        let thr = kde.data_quantile(0.01);
        let f = fraction_below(&kde, &path, thr);
        let fs = fraction_below(&kde, &lerp_path(&za, &zb, a.n), thr);
        println!(
            "fraction of path below the data density threshold (1st percentile): prior {f:.3}, straight line {fs:.3}"
        );
        let png = a.out.with_extension("png");
        let line = lerp_path(&za, &zb, a.n);
        if path_plot(
            &png,
            &z,
            d,
            &[("diffusion prior", &path), ("straight line", &line)],
            "prior interpolation",
        )? {
            println!("plot → {}", png.display());
        }
    }
    Ok(())
}

/// Draws latent paths `(n_i, d)` over the PC1/PC2 scatter of the data latents `(N, d)` (PCA of
/// the data), the first path's endpoints marked 0 and 1. Returns false (and draws nothing) for
/// zdim 1.
pub fn path_plot(
    png: &Path,
    data: &[f64],
    d: usize,
    paths: &[(&str, &[f64])],
    title: &str,
) -> anyhow::Result<bool> {
    if d < 2 {
        return Ok(false);
    }
    let n = data.len() / d;
    let z32: Vec<f32> = data.iter().map(|&v| v as f32).collect();
    let pca = Pca::fit(&z32, n, d)?;
    let xy = |x: &[f64]| -> Vec<(f64, f64)> {
        pca.project(x, 0)
            .into_iter()
            .zip(pca.project(x, 1))
            .collect()
    };
    let (pc1, pc2) = (pca.project(data, 0), pca.project(data, 1));
    let projected: Vec<(&str, Vec<(f64, f64)>)> = paths.iter().map(|(l, p)| (*l, xy(p))).collect();
    let refs: Vec<(&str, &[(f64, f64)])> =
        projected.iter().map(|(l, p)| (*l, p.as_slice())).collect();
    let ends: Vec<(f64, f64)> = match projected.first() {
        Some((_, p)) if !p.is_empty() => vec![p[0], p[p.len() - 1]],
        _ => Vec::new(),
    };
    let style = PlotStyle {
        title: title.into(),
        x_label: "PC1".into(),
        y_label: "PC2".into(),
        size: (800, 800),
        ..PlotStyle::default()
    };
    let cap = n.min(20000);
    marked_scatter(
        png,
        &pc1[..cap],
        &pc2[..cap],
        &Marks {
            labels: None,
            points: &ends,
            connect: false,
            paths: &refs,
        },
        &style,
    )?;
    Ok(true)
}
