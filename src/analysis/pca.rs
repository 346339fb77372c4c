//! Principal component analysis of latents, as the reference's `analysis.run_pca` (sklearn
//! `PCA(zdim)`), and trajectories along one principal component (`analysis.get_pc_traj`, the
//! `pc_traversal` command).
//!
//! The covariance is `C = (Z − μ)ᵀ(Z − μ) / (N − 1)` `(zdim, zdim)`, accumulated in f64 over the
//! particles with rayon; its eigen-decomposition comes from a cyclic Jacobi solver written here
//! (zdim is small, at most a few hundred, and Jacobi is exact to f64 round-off for symmetric
//! matrices, so no linear-algebra crate is pulled in for one routine). Components follow
//! sklearn's sign convention (`svd_flip(u_based_decision=False)`): the entry of largest magnitude
//! of each component is positive, so projections and trajectories match the reference's.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// A fitted PCA of `N` points in `zdim` dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// dimension of the data
    pub zdim: usize,
    /// mean `μ` `(zdim)`
    pub mean: Vec<f64>,
    /// principal axes, row `k` is PC`k+1` (unit length) `(zdim, zdim)`, by decreasing variance
    pub components: Vec<f64>,
    /// variance along each PC (eigenvalues of `C`, denominator `N − 1`) `(zdim)`
    pub explained_variance: Vec<f64>,
    /// `explained_variance / Σ explained_variance` `(zdim)`
    pub explained_variance_ratio: Vec<f64>,
}

/// Checks that `z` holds `n × zdim` values with `n ≥ 1`, `zdim ≥ 1`, all finite.
pub(crate) fn check_z(what: &str, z: &[f32], n: usize, zdim: usize) -> Result<()> {
    if n == 0 || zdim == 0 || z.len() != n * zdim {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("a non-empty (N, zdim) array with N·zdim = {n}·{zdim} values"),
            got: format!("{} values", z.len()),
        });
    }
    if let Some(i) = z.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{what}: non-finite value {} at particle {}, dimension {}",
            z[i],
            i / zdim,
            i % zdim
        )));
    }
    Ok(())
}

/// Eigen-decomposition of the symmetric `(n, n)` matrix `a` by cyclic Jacobi rotations.
/// Returns `(eigenvalues, eigenvectors)` sorted by decreasing eigenvalue, eigenvector `k` in row
/// `k` of the `(n, n)` output. Converges when the off-diagonal mass is below `1e-15·‖a‖²`
/// (or after 100 sweeps).
///
/// # Panics
/// When `a.len() != n * n`.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: matrix must be n×n");
    let mut m = a.to_vec();
    // v: columns are eigenvectors during the iteration.
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = m.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += m[p * n + q] * m[p * n + q];
            }
        }
        if off <= 1e-30 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // Rotation angle zeroing m[p][q]: θ = (a_qq − a_pp) / (2 a_pq), t = tan φ.
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let mkp = m[k * n + p];
                    let mkq = m[k * n + q];
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let mpk = m[p * n + k];
                    let mqk = m[q * n + k];
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[j * n + j].total_cmp(&m[i * n + i]));
    let vals = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (r, &i) in order.iter().enumerate() {
        for k in 0..n {
            vecs[r * n + k] = v[k * n + i];
        }
    }
    (vals, vecs)
}

impl Pca {
    /// Fits a PCA to `z` `(n, zdim)`.
    pub fn fit(z: &[f32], n: usize, zdim: usize) -> Result<Pca> {
        check_z("PCA input", z, n, zdim)?;
        // Sums over fixed blocks of rows, added in block order (not a parallel fold/reduce,
        // whose grouping depends on rayon's splits): the same bits on every run.
        const ROWS: usize = 4096;
        let mean: Vec<f64> = z
            .par_chunks(zdim * ROWS)
            .map(|blk| {
                let mut acc = vec![0.0f64; zdim];
                for row in blk.chunks(zdim) {
                    for (a, &x) in acc.iter_mut().zip(row) {
                        *a += x as f64;
                    }
                }
                acc
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(vec![0.0; zdim], add_vecs)
            .into_iter()
            .map(|s| s / n as f64)
            .collect();
        let scatter = z
            .par_chunks(zdim * ROWS)
            .map(|blk| {
                let mut acc = vec![0.0f64; zdim * zdim];
                for row in blk.chunks(zdim) {
                    for i in 0..zdim {
                        let di = row[i] as f64 - mean[i];
                        for j in i..zdim {
                            acc[i * zdim + j] += di * (row[j] as f64 - mean[j]);
                        }
                    }
                }
                acc
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(vec![0.0; zdim * zdim], add_vecs);
        let denom = (n.max(2) - 1) as f64;
        let mut cov = vec![0.0; zdim * zdim];
        for i in 0..zdim {
            for j in i..zdim {
                let c = scatter[i * zdim + j] / denom;
                cov[i * zdim + j] = c;
                cov[j * zdim + i] = c;
            }
        }
        let (vals, mut components) = symmetric_eigen(&cov, zdim);
        // sklearn's svd_flip: the largest-magnitude entry of each component is positive.
        for row in components.chunks_mut(zdim) {
            let big = row
                .iter()
                .copied()
                .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
            if big < 0.0 {
                row.iter_mut().for_each(|x| *x = -*x);
            }
        }
        let explained_variance: Vec<f64> = vals.iter().map(|&v| v.max(0.0)).collect();
        let total: f64 = explained_variance.iter().sum();
        let explained_variance_ratio = explained_variance
            .iter()
            .map(|&v| if total > 0.0 { v / total } else { 0.0 })
            .collect();
        Ok(Pca {
            zdim,
            mean,
            components,
            explained_variance,
            explained_variance_ratio,
        })
    }

    /// Projection of f64 rows `(n, zdim)` on PC `k + 1` (0-based `k`) → `(n)`.
    pub fn project(&self, x: &[f64], k: usize) -> Vec<f64> {
        let d = self.zdim;
        let c = &self.components[k * d..(k + 1) * d];
        x.chunks(d)
            .map(|r| (0..d).map(|j| (r[j] - self.mean[j]) * c[j]).sum())
            .collect()
    }

    /// Projections `(z − μ)·componentsᵀ` `(n, zdim)` of the `(n, zdim)` points `z`.
    pub fn transform(&self, z: &[f32]) -> Vec<f64> {
        let d = self.zdim;
        let mut out = vec![0.0; z.len()];
        out.par_chunks_mut(d)
            .zip(z.par_chunks(d))
            .for_each(|(o, row)| {
                for (k, ok) in o.iter_mut().enumerate() {
                    let comp = &self.components[k * d..(k + 1) * d];
                    *ok = row
                        .iter()
                        .zip(&self.mean)
                        .zip(comp)
                        .map(|((&x, m), c)| (x as f64 - m) * c)
                        .sum();
                }
            });
        out
    }

    /// Points `μ + pc·components` `(m, zdim)` from PC coordinates `pc` `(m, zdim)`.
    pub fn inverse_transform(&self, pc: &[f64]) -> Vec<f64> {
        let d = self.zdim;
        pc.chunks(d)
            .flat_map(|row| {
                (0..d).map(move |j| {
                    self.mean[j]
                        + row
                            .iter()
                            .enumerate()
                            .map(|(k, &p)| p * self.components[k * d + j])
                            .sum::<f64>()
                })
            })
            .collect()
    }

    /// Points along PC`dim` (1-based): `μ + v_i·component_dim` for each value `v_i` of
    /// `pc_values`, as the reference's `get_pc_traj` `(len, zdim)`.
    pub fn pc_traj(&self, dim: usize, pc_values: &[f64]) -> Result<Vec<f64>> {
        if dim == 0 || dim > self.zdim {
            return Err(Error::invalid(format!(
                "PC {dim} out of range: the latent space has PCs 1..={}",
                self.zdim
            )));
        }
        let mut coords = vec![0.0; pc_values.len() * self.zdim];
        for (i, &v) in pc_values.iter().enumerate() {
            coords[i * self.zdim + dim - 1] = v;
        }
        Ok(self.inverse_transform(&coords))
    }
}

fn add_vecs(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

/// `np.percentile(values, q)` with numpy's default linear interpolation; `q` in [0, 100].
/// NaN for an empty input.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, q)
}

/// [`percentile`] of already sorted values.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = (q.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let f = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * f
}

/// `np.linspace(a, b, n)` (endpoint included).
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => {
            let step = (b - a) / (n - 1) as f64;
            (0..n)
                .map(|i| if i == n - 1 { b } else { a + step * i as f64 })
                .collect()
        }
    }
}

/// The PC values of a `pc_traversal` trajectory: `n` values between the `lim.0`-th and
/// `lim.1`-th percentiles (in %, default 5 and 95 in the command) of `pc_col` (one PC's
/// projections, `(N)`), equally spaced along the PC, or at equally spaced percentiles when
/// `percentile_spacing`.
pub fn pc_traj_values(
    pc_col: &[f64],
    n: usize,
    lim: (f64, f64),
    percentile_spacing: bool,
) -> Result<Vec<f64>> {
    if !(0.0..=100.0).contains(&lim.0) || !(0.0..=100.0).contains(&lim.1) {
        return Err(Error::invalid(format!(
            "--lim percentiles must lie in [0, 100], got {} {}",
            lim.0, lim.1
        )));
    }
    if n == 0 {
        return Err(Error::invalid("-n must be at least 1"));
    }
    let mut sorted = pc_col.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(if percentile_spacing {
        linspace(lim.0, lim.1, n)
            .into_iter()
            .map(|q| percentile_sorted(&sorted, q))
            .collect()
    } else {
        linspace(
            percentile_sorted(&sorted, lim.0),
            percentile_sorted(&sorted, lim.1),
            n,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalizes_known_matrix() {
        // Eigenvalues of [[2,1,0],[1,2,0],[0,0,5]] are 5, 3, 1.
        let a = [2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0];
        let (vals, vecs) = symmetric_eigen(&a, 3);
        for (v, e) in vals.iter().zip([5.0, 3.0, 1.0]) {
            assert!((v - e).abs() < 1e-12, "{vals:?}");
        }
        // A v = λ v for every pair.
        for k in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i * 3 + j] * vecs[k * 3 + j]).sum();
                assert!((av - vals[k] * vecs[k * 3 + i]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4, 10], [5, 50, 95]) = [1.2, 3.0, 8.8]
        let v = [4.0, 1.0, 10.0, 3.0, 2.0];
        assert!((percentile(&v, 5.0) - 1.2).abs() < 1e-12);
        assert!((percentile(&v, 50.0) - 3.0).abs() < 1e-12);
        assert!((percentile(&v, 95.0) - 8.8).abs() < 1e-12);
    }
}
