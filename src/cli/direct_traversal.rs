//! `direct-traversal`: a path in latent space interpolating linearly between anchor particles,
//! as the reference's `cryodrgn direct_traversal`. Between consecutive anchors, `-n` points
//! inclusive; `--loop` returns to the first anchor. Anchors are particle indices or text files
//! of indices (e.g. `kmeans20/centers_ind.txt`). With `--on-data` each point is replaced by the
//! nearest particle (and `--outind` can save their indices). Writes the z values with
//! np.savetxt formatting to `-o` (bare `-o`: z-path.txt), or prints them.
//!
//! Example: `cryofield direct-traversal z.50.pkl --anchors 12 408 1999 -n 10 --loop -o z-path.txt`

use std::path::PathBuf;

use anyhow::Context;

use crate::analysis::latent::{fmt_e18, load_z, savetxt, savetxt_int, widen};
use crate::analysis::traversal::{direct_traversal, parse_anchors, snap_to_data};

/// Linear interpolation between anchor particles in latent space.
#[derive(Debug, clap::Args)]
#[command(about = "Latent path interpolating directly between anchor particles")]
pub struct Args {
    /// Latents: z.N.pkl (z_mu is used), .npy or .txt
    pub zfile: PathBuf,
    /// Anchor particle indices, or .txt files of indices
    #[arg(long, required = true, num_args = 1..)]
    pub anchors: Vec<String>,
    /// Number of points between consecutive anchors, inclusive
    #[arg(short = 'n', default_value_t = 6)]
    pub n: usize,
    /// Return to the first anchor at the end
    #[arg(long = "loop")]
    pub closed_loop: bool,
    /// Replace each point by the nearest particle (an on-data path)
    #[arg(long)]
    pub on_data: bool,
    /// Text file for the particle indices of an --on-data path
    #[arg(long, requires = "on_data")]
    pub outind: Option<PathBuf>,
    /// Output .txt for the path z values (bare `-o`: z-path.txt); printed when absent
    #[arg(short = 'o', long = "outtxt", num_args = 0..=1, default_missing_value = "z-path.txt")]
    pub outtxt: Option<PathBuf>,
}

/// Run `direct-traversal`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let lat = load_z(&a.zfile).with_context(|| format!("reading {}", a.zfile.display()))?;
    let anchors = parse_anchors(&a.anchors, lat.n, a.closed_loop)?;
    let zdim = lat.zdim;
    let mut path = direct_traversal(&lat.z, zdim, &anchors, a.n)?;
    if a.on_data {
        let ind = snap_to_data(&lat.z, zdim, &path);
        path = ind
            .iter()
            .flat_map(|&i| lat.z[i * zdim..(i + 1) * zdim].iter().copied())
            .collect();
        if let Some(p) = &a.outind {
            create_parent(p)?;
            savetxt_int(p, &ind)?;
            eprintln!("saved path indices to {}", p.display());
        }
    }
    match &a.outtxt {
        Some(p) => {
            create_parent(p)?;
            savetxt(p, &widen(&path), zdim)?;
            eprintln!(
                "saved {} points through anchors {anchors:?} to {}",
                path.len() / zdim,
                p.display()
            );
        }
        None => {
            for row in path.chunks(zdim) {
                let s: Vec<String> = row.iter().map(|&v| fmt_e18(v as f64)).collect();
                println!("{}", s.join(" "));
            }
        }
    }
    Ok(())
}

/// Creates the parent folder of an output file.
pub(crate) fn create_parent(p: &std::path::Path) -> anyhow::Result<()> {
    if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    Ok(())
}
