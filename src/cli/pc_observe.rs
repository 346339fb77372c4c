//! `pc-observe`: synthetic observations (`OBS.npz`) of one ground-truth cloud (issue 25, spec §3),
//! in normalised units: `--proj K` projections of `--proj-points M` points each (random rotation,
//! Haar on SO(3) or, with `--rot o3`, on O(3); M points without replacement; the xy columns of
//! x·R), a coarse-grained map (`--cg M`: the means of an M-component full-covariance GMM fitted to
//! the cloud), and a subunit (`--subunit-k k`: one of the k k-means clusters of the cloud, drawn at
//! random). `--obs-noise σ` adds N(0, σ²) to every observed coordinate. At least one kind of
//! observation is required.
//!
//! Example: `cryofield pc-observe GT.npz --proj 3 --proj-points 1024 --cg 40 --seed 1 -o OBS.npz`

use std::path::PathBuf;

use crate::pointcloud::data::GroundTruth;
use crate::pointcloud::observe::{observe, ObserveParams, RotLaw};

/// Synthetic observations of a ground-truth cloud.
#[derive(Debug, clap::Args)]
#[command(
    about = "Observations (OBS.npz) of a ground-truth cloud: projections, coarse-grained map, subunit"
)]
pub struct Args {
    /// Ground truth (.npz from pc-prepare)
    pub truth: PathBuf,
    /// Which cloud of the ground truth (0-based)
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Number of projections K
    #[arg(long, default_value_t = 0)]
    pub proj: usize,
    /// Points per projection M (default: all N points of the cloud)
    #[arg(long)]
    pub proj_points: Option<usize>,
    /// Components of the coarse-grained map (e.g. 30 or 40)
    #[arg(long)]
    pub cg: Option<usize>,
    /// Subunit: one of the k k-means clusters of the cloud (k = round(N/L) for L points)
    #[arg(long)]
    pub subunit_k: Option<usize>,
    /// Law of the projection rotations
    #[arg(long, value_enum, default_value = "so3")]
    pub rot: RotLaw,
    /// σ of Gaussian noise on the observed coordinates (normalised units)
    #[arg(long, default_value_t = 0.0)]
    pub obs_noise: f64,
    /// Seed of every random draw
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output observations (.npz)
    #[arg(short = 'o', long = "outfile")]
    pub o: PathBuf,
}

/// Run `pc-observe`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let gt = GroundTruth::read_index(&a.truth, a.index)?;
    let p = ObserveParams {
        proj: a.proj,
        proj_points: a.proj_points.unwrap_or(gt.n),
        cg: a.cg,
        subunit_k: a.subunit_k,
        rot: a.rot,
        obs_noise: a.obs_noise,
        seed: a.seed,
    };
    let mut obs = observe(gt.cloud(a.index), &p)?;
    obs.frame = Some(gt.frame(a.index));
    obs.write(&a.o)?;
    let mut what = Vec::new();
    if !obs.proj.is_empty() {
        what.push(format!(
            "{} projection(s) × {} points",
            obs.proj.len(),
            p.proj_points
        ));
    }
    if let Some(c) = &obs.cg {
        what.push(format!("coarse map of {} means", c.len() / 3));
    }
    if let Some(s) = &obs.subunit {
        what.push(format!("subunit of {} points", s.len() / 3));
    }
    eprintln!(
        "cloud {} of {} (N = {}): {}; wrote {}",
        a.index,
        a.truth.display(),
        gt.n,
        what.join(", "),
        a.o.display()
    );
    Ok(())
}
