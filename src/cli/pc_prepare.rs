//! `pc-prepare`: ground-truth point clouds (`GT.npz`) from atomic models (issue 25, spec §1, A14,
//! A16). Each structure's heavy atoms (no H/D, no water, first alternate location) are fitted by a
//! Gaussian mixture with `-n` components and one shared covariance (sklearn's `tied`; `--cov full`
//! for one per component; k-means++ init, 100 EM iterations at most, tol 1e-3, reg 1e-6 Å²); the
//! means, centred on their centroid and divided by their max |coordinate|, are the cloud
//! (`x_Å = center + scale · x`).
//!
//! Input: a PDB or mmCIF file (every model of a multi-model file is a structure), a folder of
//! them (sorted by name), or a `.npy` cloud `(N, 3)` / `(S, N, 3)` in Å, normalised directly
//! (or reduced to `-n` GMM means first when `-n` is given and differs from N). The heavy atoms
//! (Å) are stored with the cloud when there is one structure (the atomic RMSD of `pc-eval`).
//!
//! Example: `cryofield pc-prepare ensemble.pdb -n 1024 --seed 0 -o GT.npz`

use std::path::PathBuf;

use anyhow::bail;

use crate::cli::progress::bar;
use crate::pointcloud::data::GroundTruth;
use crate::pointcloud::gmm_fit::Covariance;
use crate::pointcloud::prepare::{load_structures, prepare_structure};

/// Ground-truth clouds from atomic models.
#[derive(Debug, clap::Args)]
#[command(
    about = "Ground-truth point clouds (GT.npz) from atomic models: heavy atoms → tied-GMM means → [-1, 1]³"
)]
pub struct Args {
    /// Model (.pdb/.ent/.cif/.mmcif, every model of a multi-model file), a folder of models, or a
    /// cloud .npy (N, 3) / (S, N, 3) in Å
    pub input: PathBuf,
    /// Points per cloud: GMM components (default 1024; a .npy cloud keeps its N unless given)
    #[arg(short = 'n')]
    pub n: Option<usize>,
    /// Covariance structure of the mixture (the paper: tied)
    #[arg(long, value_enum, default_value = "tied")]
    pub cov: Covariance,
    /// Seed of the k-means++ initialisation (structure i uses seed + i)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output ground truth (.npz)
    #[arg(short = 'o', long = "outfile")]
    pub o: PathBuf,
}

/// Run `pc-prepare`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.n == Some(0) {
        bail!("-n must be at least 1");
    }
    let structures = load_structures(&a.input)?;
    let n = match a.n {
        Some(n) => n,
        None if structures.iter().all(|s| !s.atomic) => structures[0].points.len() / 3,
        None => 1024,
    };
    let s = structures.len();
    let pb = bar(s as u64, "pc-prepare");
    let mut gt = GroundTruth {
        clouds: Vec::with_capacity(s * n * 3),
        s,
        n,
        center: Vec::with_capacity(3 * s),
        scale: Vec::with_capacity(s),
        atoms: None,
    };
    let mut n_atoms = Vec::with_capacity(s);
    for (i, st) in structures.iter().enumerate() {
        let (cloud, center, scale) =
            prepare_structure(st, n, a.cov, a.seed.wrapping_add(i as u64))?;
        gt.clouds.extend(cloud);
        gt.center.extend(center);
        gt.scale.push(scale);
        n_atoms.push(st.points.len() / 3);
        pb.inc(1);
    }
    pb.finish_and_clear();
    if s == 1 && structures[0].atomic {
        gt.atoms = Some(structures[0].points.clone());
    }
    gt.write(&a.o)?;
    let (lo, hi) = (
        n_atoms.iter().min().copied().unwrap_or(0),
        n_atoms.iter().max().copied().unwrap_or(0),
    );
    let smin = gt.scale.iter().copied().fold(f64::INFINITY, f64::min);
    let smax = gt.scale.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "{s} structure(s), {lo}–{hi} {} each → {n} points; scale {smin:.2}–{smax:.2} Å; wrote {}",
        if structures[0].atomic {
            "heavy atoms"
        } else {
            "points"
        },
        a.o.display()
    );
    Ok(())
}
