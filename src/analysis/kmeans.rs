//! K-means clustering of latents, as the reference's `analysis.cluster_kmeans` (sklearn
//! `KMeans(n_clusters=K, random_state=0, max_iter=10)`, one greedy k-means++ initialization),
//! and `get_nearest_point`, which replaces each center by the particle nearest to it (the
//! "on-data" centers `analyze` decodes into volumes).
//!
//! Initialization is greedy k-means++ as in sklearn: each new center is the best of
//! `2 + ⌊ln K⌋` candidates drawn with probability ∝ D(x)² (squared distance to the nearest
//! chosen center), keeping the one that lowers the potential most. Lloyd iterations then
//! alternate assignment (rayon over points) and center updates until no label changes, the
//! centers move less than `1e-4 × mean per-dimension variance` (sklearn's `tol`), or `max_iter`.
//! An empty cluster is re-seeded at the point farthest from its center. The RNG is a seeded
//! `StdRng`, so results are reproducible but do not reproduce sklearn's exact draws.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::analysis::pca::check_z;
use crate::error::{Error, Result};

/// A k-means clustering of `N` points.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// number of clusters
    pub k: usize,
    /// cluster means `(k, zdim)`
    pub centers: Vec<f64>,
    /// cluster of each point, in `0..k` `(N)`
    pub labels: Vec<usize>,
    /// sum of squared distances of the points to their centers
    pub inertia: f64,
    /// Lloyd iterations run
    pub n_iter: usize,
}

/// Squared Euclidean distance between a point `a` (f32) and a center `c` (f64).
fn dist2(a: &[f32], c: &[f64]) -> f64 {
    a.iter()
        .zip(c)
        .map(|(&x, &y)| {
            let d = x as f64 - y;
            d * d
        })
        .sum()
}

/// Index of the nearest of the `(k, zdim)` `centers` to `x`, and the squared distance.
fn nearest_center(x: &[f32], centers: &[f64], zdim: usize) -> (usize, f64) {
    centers
        .chunks(zdim)
        .enumerate()
        .map(|(j, c)| (j, dist2(x, c)))
        .fold((0, f64::INFINITY), |b, c| if c.1 < b.1 { c } else { b })
}

/// Draws an index with probability ∝ `w` (`cumsum` is the running sum of `w`).
fn draw(cumsum: &[f64], rng: &mut StdRng) -> usize {
    let total = cumsum.last().copied().unwrap_or(0.0);
    if total <= 0.0 {
        return rng.random_range(0..cumsum.len());
    }
    let r = rng.random::<f64>() * total;
    cumsum.partition_point(|&c| c <= r).min(cumsum.len() - 1)
}

fn cumsum(w: &[f64]) -> Vec<f64> {
    let mut s = 0.0;
    w.iter()
        .map(|&x| {
            s += x;
            s
        })
        .collect()
}

/// Greedy k-means++ seeding: `(k, zdim)` initial centers.
fn kmeans_pp(z: &[f32], n: usize, zdim: usize, k: usize, rng: &mut StdRng) -> Vec<f64> {
    let row = |i: usize| &z[i * zdim..(i + 1) * zdim];
    let n_trials = 2 + (k as f64).ln().floor() as usize;
    let mut centers = Vec::with_capacity(k * zdim);
    let first = rng.random_range(0..n);
    centers.extend(row(first).iter().map(|&x| x as f64));
    let mut closest: Vec<f64> = z.par_chunks(zdim).map(|x| dist2(x, &centers)).collect();
    for _ in 1..k {
        let cs = cumsum(&closest);
        let mut best: Option<(f64, Vec<f64>, usize)> = None;
        for _ in 0..n_trials {
            let cand = draw(&cs, rng);
            let c: Vec<f64> = row(cand).iter().map(|&x| x as f64).collect();
            let new: Vec<f64> = z
                .par_chunks(zdim)
                .zip(closest.par_iter())
                .map(|(x, &d)| d.min(dist2(x, &c)))
                .collect();
            let pot: f64 = new.iter().sum();
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, new, cand));
            }
        }
        if let Some((_, new, cand)) = best {
            closest = new;
            centers.extend(row(cand).iter().map(|&x| x as f64));
        }
    }
    centers
}

/// K-means of `z` `(n, zdim)` into `k` clusters with at most `max_iter` Lloyd iterations after a
/// greedy k-means++ seeding drawn from `seed`.
///
/// # Errors
/// When `k` is 0 or larger than `n`, or `z` is not a finite `(n, zdim)` array.
pub fn kmeans(
    z: &[f32],
    n: usize,
    zdim: usize,
    k: usize,
    max_iter: usize,
    seed: u64,
) -> Result<KMeans> {
    check_z("k-means input", z, n, zdim)?;
    if k == 0 || k > n {
        return Err(Error::invalid(format!(
            "k-means needs 1 ≤ K ≤ N, got K = {k} for N = {n} points"
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut centers = kmeans_pp(z, n, zdim, k, &mut rng);
    // sklearn's tol: 1e-4 × mean variance per dimension, compared to the squared center shift.
    let var_mean = {
        let mean: Vec<f64> = (0..zdim)
            .map(|j| {
                z.iter()
                    .skip(j)
                    .step_by(zdim)
                    .map(|&x| x as f64)
                    .sum::<f64>()
                    / n as f64
            })
            .collect();
        z.par_chunks(zdim).map(|x| dist2(x, &mean)).sum::<f64>() / (n * zdim) as f64
    };
    let tol = 1e-4 * var_mean;
    let mut labels = vec![usize::MAX; n];
    let mut n_iter = 0;
    for _ in 0..max_iter {
        n_iter += 1;
        let assign: Vec<(usize, f64)> = z
            .par_chunks(zdim)
            .map(|x| nearest_center(x, &centers, zdim))
            .collect();
        let changed = assign
            .iter()
            .zip(&labels)
            .filter(|(a, &l)| a.0 != l)
            .count();
        for (l, a) in labels.iter_mut().zip(&assign) {
            *l = a.0;
        }
        let mut sums = vec![0.0f64; k * zdim];
        let mut counts = vec![0usize; k];
        for (x, &l) in z.chunks(zdim).zip(&labels) {
            counts[l] += 1;
            for (s, &v) in sums[l * zdim..(l + 1) * zdim].iter_mut().zip(x) {
                *s += v as f64;
            }
        }
        // Re-seed empty clusters at the points farthest from their centers.
        let mut far: Vec<usize> = (0..n).collect();
        far.sort_by(|&a, &b| assign[b].1.total_cmp(&assign[a].1));
        let mut far = far.into_iter();
        for j in 0..k {
            if counts[j] == 0 {
                if let Some(i) = far.next() {
                    let x = &z[i * zdim..(i + 1) * zdim];
                    sums[j * zdim..(j + 1) * zdim]
                        .iter_mut()
                        .zip(x)
                        .for_each(|(s, &v)| *s = v as f64);
                    counts[j] = 1;
                }
            }
        }
        let mut shift = 0.0;
        for j in 0..k {
            for d in 0..zdim {
                let c = sums[j * zdim + d] / counts[j].max(1) as f64;
                let delta = c - centers[j * zdim + d];
                shift += delta * delta;
                centers[j * zdim + d] = c;
            }
        }
        if changed == 0 || shift <= tol {
            break;
        }
    }
    // Final labels against the final centers (as sklearn's fit_predict).
    let assign: Vec<(usize, f64)> = z
        .par_chunks(zdim)
        .map(|x| nearest_center(x, &centers, zdim))
        .collect();
    let labels = assign.iter().map(|a| a.0).collect();
    let inertia = assign.iter().map(|a| a.1).sum();
    Ok(KMeans {
        k,
        centers,
        labels,
        inertia,
        n_iter,
    })
}

/// For each query point `(m, zdim)`, the index of the nearest point of `data` `(n, zdim)`
/// (Euclidean; the first on ties), as the reference's `get_nearest_point`.
pub fn nearest_points(data: &[f32], zdim: usize, query: &[f64]) -> Vec<usize> {
    query
        .par_chunks(zdim)
        .map(|q| {
            data.chunks(zdim)
                .enumerate()
                .map(|(i, x)| (i, dist2(x, q)))
                .fold((0, f64::INFINITY), |b, c| if c.1 < b.1 { c } else { b })
                .0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_points_two_clusters() {
        let z = [0.0f32, 0.0, 10.0, 10.0];
        let km = kmeans(&z, 2, 2, 2, 10, 0).unwrap();
        assert_ne!(km.labels[0], km.labels[1]);
        assert!(km.inertia < 1e-12);
        assert!(kmeans(&z, 2, 2, 3, 10, 0).is_err());
    }

    #[test]
    fn nearest_point_is_first_on_ties() {
        let data = [0.0f32, 1.0, 1.0, 3.0];
        assert_eq!(nearest_points(&data, 1, &[0.5, 2.9]), vec![0, 3]);
    }
}
