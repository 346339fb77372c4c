//! Synthetic observations of a ground-truth cloud (`pc-observe`, spec §3), in normalised units:
//!
//! - **Projections** k = 0…K−1: a random rotation R_k (Haar on SO(3), or on O(3): a Haar rotation
//!   negated with probability ½, a reflection), M ground-truth points drawn without replacement,
//!   y_k = (x·R_k)[:, :2] (row vectors).
//! - **Coarse-grained map**: the means of an M-component Gaussian mixture with full covariances
//!   (sklearn defaults, A13) fitted to the cloud by [`fit_gmm`].
//! - **Subunit**: k-means of the cloud into k clusters ([`crate::analysis::kmeans`], 300 Lloyd
//!   iterations), one non-empty cluster drawn uniformly; its points in cloud order.
//! - **Noise** (A12, default none): N(0, σ²) added to every observed coordinate.
//!
//! One `StdRng` seeded by `seed` draws, in order: per projection its rotation and its points, then
//! the seeds of the mixture and of the k-means, the subunit drawn, and the noise.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::analysis::kmeans::kmeans;
use crate::geometry::quaternion::random_rotations;
use crate::pointcloud::data::{Observations, Projection};
use crate::pointcloud::gmm_fit::{fit_gmm, Covariance, GmmFitParams};
use crate::{Error, Result};

/// Law of the projection rotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RotLaw {
    /// Haar-uniform proper rotations (CryoStruct)
    So3,
    /// Haar-uniform orthogonal matrices, reflections included (ShapeNet)
    O3,
}

/// What to observe.
#[derive(Clone, Debug, PartialEq)]
pub struct ObserveParams {
    /// number of projections K
    pub proj: usize,
    /// points per projection M (≤ N)
    pub proj_points: usize,
    /// components of the coarse-grained map, if any
    pub cg: Option<usize>,
    /// k of the k-means whose one cluster is the subunit, if any
    pub subunit_k: Option<usize>,
    /// rotation law of the projections
    pub rot: RotLaw,
    /// σ of Gaussian noise on the observed coordinates (normalised units; 0 = none)
    pub obs_noise: f64,
    /// the seed of every draw
    pub seed: u64,
}

/// Observe a cloud `(n, 3)` (normalised units).
///
/// # Errors
/// When nothing is asked for, M is 0 or larger than N, the coarse map has 0 or more than N
/// components, k is 0 or larger than N, or σ is negative or not finite.
pub fn observe(cloud: &[f64], p: &ObserveParams) -> Result<Observations> {
    let n = cloud.len() / 3;
    if p.proj == 0 && p.cg.is_none() && p.subunit_k.is_none() {
        return Err(Error::invalid(
            "nothing to observe: give --proj K, --cg M and/or --subunit-k k",
        ));
    }
    if p.proj > 0 && (p.proj_points == 0 || p.proj_points > n) {
        return Err(Error::invalid(format!(
            "--proj-points {} must be in 1..={n} (points drawn without replacement from a cloud of {n})",
            p.proj_points
        )));
    }
    if let Some(m) = p.cg.filter(|&m| m == 0 || m > n) {
        return Err(Error::invalid(format!(
            "--cg {m} must be in 1..={n} (mixture components fitted to {n} points)"
        )));
    }
    if let Some(k) = p.subunit_k.filter(|&k| k == 0 || k > n) {
        return Err(Error::invalid(format!(
            "--subunit-k {k} must be in 1..={n}"
        )));
    }
    if !(p.obs_noise >= 0.0 && p.obs_noise.is_finite()) {
        return Err(Error::invalid(format!(
            "--obs-noise {} must be finite and ≥ 0",
            p.obs_noise
        )));
    }
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut out = Observations {
        n_points: n,
        ..Default::default()
    };
    for _ in 0..p.proj {
        let mut rot = random_rotations(1, &mut rng)[0];
        if p.rot == RotLaw::O3 && rng.random::<bool>() {
            rot = rot.map(|v| -v);
        }
        let idx = rand::seq::index::sample(&mut rng, n, p.proj_points);
        let mut points = Vec::with_capacity(2 * p.proj_points);
        for i in idx.iter() {
            let x = &cloud[3 * i..3 * i + 3];
            for c in 0..2 {
                points.push(x[0] * rot[c] + x[1] * rot[3 + c] + x[2] * rot[6 + c]);
            }
        }
        out.proj.push(Projection { rot, points });
    }
    let gmm_seed: u64 = rng.random();
    let km_seed: u64 = rng.random();
    if let Some(m) = p.cg {
        let fit = fit_gmm(cloud, &GmmFitParams::new(m, Covariance::Full, gmm_seed))?;
        out.cg = Some(fit.means);
    }
    if let Some(k) = p.subunit_k {
        let xf: Vec<f32> = cloud.iter().map(|&v| v as f32).collect();
        let km = kmeans(&xf, n, 3, k, 300, km_seed)?;
        let mut nonempty: Vec<usize> = km.labels.clone();
        nonempty.sort_unstable();
        nonempty.dedup();
        let pick = nonempty[rng.random_range(0..nonempty.len())];
        let su: Vec<f64> = km
            .labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == pick)
            .flat_map(|(i, _)| cloud[3 * i..3 * i + 3].to_vec())
            .collect();
        out.subunit = Some(su);
    }
    if p.obs_noise > 0.0 {
        let nd = Normal::new(0.0, p.obs_noise)
            .map_err(|e| Error::invalid(format!("--obs-noise: {e}")))?;
        for pr in &mut out.proj {
            pr.points.iter_mut().for_each(|v| *v += nd.sample(&mut rng));
        }
        for v in out.cg.iter_mut().chain(out.subunit.iter_mut()) {
            v.iter_mut().for_each(|v| *v += nd.sample(&mut rng));
        }
    }
    Ok(out)
}
