//! `pc-traversal`: points along principal components of the latents, as the reference's
//! `cryodrgn pc_traversal`. For each chosen PC, `-n` points between the `--lim` percentiles
//! (default 5 and 95) of the particles' projections, equally spaced along the PC (or at equally
//! spaced percentiles with `--use-percentile-spacing`), mapped back to z. Writes `pc<i>.txt` per
//! PC into `-o` (np.savetxt format), or prints the points when `-o` is absent. Also prints the
//! explained-variance ratios and, per point, how many particles lie within distance 3 of it.
//!
//! Example: `cryofield pc-traversal z.50.pkl --pc 1 2 -n 10 --lim 10 90 -o zpaths`

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::analysis::latent::{fmt_e18, load_z, savetxt};
use crate::analysis::pca::{pc_traj_values, Pca};

/// Latent points along principal components.
#[derive(Debug, clap::Args)]
#[command(about = "Points along principal components of the latent space (z .pkl/.npy/.txt)")]
pub struct Args {
    /// Latents: z.N.pkl (z_mu is used), .npy or .txt
    pub zfile: PathBuf,
    /// PCs to traverse, 1-based (default: all)
    #[arg(long = "pc", alias = "dim", num_args = 1..)]
    pub pc: Vec<usize>,
    /// Number of points along each PC
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    /// Start and end percentiles of the trajectory (default: 5 95)
    #[arg(long, num_args = 2, value_names = ["LO", "HI"])]
    pub lim: Vec<f64>,
    /// Equally spaced percentiles instead of equally spaced points along the PC
    #[arg(long)]
    pub use_percentile_spacing: bool,
    /// Output folder for pc1.txt, pc2.txt, … (bare `-o`: zpaths); printed when absent
    #[arg(short = 'o', long = "outdir", num_args = 0..=1, default_missing_value = "zpaths")]
    pub outdir: Option<PathBuf>,
}

/// Run `pc-traversal`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let lat = load_z(&a.zfile).with_context(|| format!("reading {}", a.zfile.display()))?;
    let (n, zdim) = (lat.n, lat.zdim);
    let pca = Pca::fit(&lat.z, n, zdim)?;
    let pcs: Vec<usize> = if a.pc.is_empty() {
        (1..=zdim).collect()
    } else {
        a.pc.clone()
    };
    if let Some(&bad) = pcs.iter().find(|&&d| d == 0 || d > zdim) {
        bail!("--pc {bad} out of range: z has PCs 1..={zdim}");
    }
    let lim = match a.lim.as_slice() {
        [lo, hi] => (*lo, *hi),
        _ => (5.0, 95.0),
    };
    if let Some(d) = &a.outdir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    eprintln!(
        "{n} particles, zdim = {zdim}; explained variance ratio: {:?}",
        pca.explained_variance_ratio
            .iter()
            .map(|v| format!("{v:.4}"))
            .collect::<Vec<_>>()
    );
    let proj = pca.transform(&lat.z);
    for dim in pcs {
        let col: Vec<f64> = proj.iter().skip(dim - 1).step_by(zdim).copied().collect();
        let vals = pc_traj_values(&col, a.n, lim, a.use_percentile_spacing)?;
        let traj = pca.pc_traj(dim, &vals)?;
        eprintln!("PC{dim}: limits {}, {}", vals[0], vals[vals.len() - 1]);
        let support: Vec<usize> = traj
            .chunks(zdim)
            .map(|t| {
                lat.z
                    .chunks(zdim)
                    .filter(|x| {
                        x.iter()
                            .zip(t)
                            .map(|(&a, &b)| (a as f64 - b).powi(2))
                            .sum::<f64>()
                            < 9.0
                    })
                    .count()
            })
            .collect();
        eprintln!("  neighbor count along trajectory: {support:?}");
        match &a.outdir {
            Some(d) => {
                let p = d.join(format!("pc{dim}.txt"));
                savetxt(&p, &traj, zdim)?;
                eprintln!("  wrote {}", p.display());
            }
            None => {
                for row in traj.chunks(zdim) {
                    let s: Vec<String> = row.iter().map(|&v| fmt_e18(v)).collect();
                    println!("{}", s.join(" "));
                }
            }
        }
    }
    Ok(())
}
