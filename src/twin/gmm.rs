//! A Gaussian mixture with full covariances: density, sampling, ridgeline points, and its file
//! `gmm.npz` (`pi` (C), `mu` (C, d), `cov` (C, d, d)).
//!
//! The ridgeline point for weights α on the simplex (Ray & Lindsay 2005; every mode of the mixture lies
//! on this set) is `z(α) = (Σ_c α_c Σ_c⁻¹)⁻¹ Σ_c α_c Σ_c⁻¹ μ_c`.

use crate::io::array::NdArray;
use crate::io::npy::read_npz;
use crate::{Error, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

/// A Gaussian mixture with full covariances in d dimensions, with each component's precision and
/// log-determinant precomputed.
#[derive(Clone, Debug)]
pub struct Gmm {
    /// Latent dimension d.
    pub d: usize,
    /// Weights π (C), summing to 1.
    pub pi: Vec<f64>,
    /// Means (C, d), row-major.
    pub mu: Vec<f64>,
    /// Covariances (C, d, d), row-major, symmetric positive definite.
    pub cov: Vec<f64>,
    /// Precisions Σ_c⁻¹ (C, d, d).
    pub(crate) prec: Vec<f64>,
    /// log det Σ_c (C).
    pub(crate) log_det: Vec<f64>,
    /// Cholesky factors of the covariances (C, d, d), lower, for sampling.
    chol: Vec<f64>,
}

/// Cholesky factor L (lower, row-major) of a d×d symmetric positive definite matrix; None if it is not.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Solve `A x = b` given A's Cholesky factor L.
fn cholesky_solve(l: &[f64], d: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0f64; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * d + i];
    }
    let mut x = vec![0f64; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * d + i];
    }
    x
}

impl Gmm {
    /// A mixture from weights (C), means (C, d) and covariances (C, d, d).
    ///
    /// Errors on inconsistent lengths, non-finite values, weights that are negative or do not sum to 1
    /// (within 1e-6), or a covariance that is not symmetric positive definite.
    pub fn new(d: usize, pi: Vec<f64>, mu: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        let c = pi.len();
        if d == 0 || c == 0 || mu.len() != c * d || cov.len() != c * d * d {
            return Err(Error::Shape {
                what: "GMM".into(),
                expected: format!(
                    "pi (C), mu (C, d), cov (C, d, d) with C, d > 0; C = {c}, d = {d}"
                ),
                got: format!("{} means, {} covariance values", mu.len(), cov.len()),
            });
        }
        if pi.iter().chain(&mu).chain(&cov).any(|v| !v.is_finite()) {
            return Err(Error::invalid("GMM parameters must be finite"));
        }
        let total: f64 = pi.iter().sum();
        if pi.iter().any(|&p| p < 0.0) || (total - 1.0).abs() > 1e-6 {
            return Err(Error::invalid(format!(
                "GMM weights must be ≥ 0 and sum to 1, got sum {total}"
            )));
        }
        let mut prec = vec![0f64; c * d * d];
        let mut chol = vec![0f64; c * d * d];
        let mut log_det = vec![0f64; c];
        for k in 0..c {
            let s = &cov[k * d * d..(k + 1) * d * d];
            let asym = (0..d).any(|i| {
                (0..i).any(|j| {
                    (s[i * d + j] - s[j * d + i]).abs() > 1e-9 * (1.0 + s[i * d + j].abs())
                })
            });
            let l = match (asym, cholesky(s, d)) {
                (false, Some(l)) => l,
                _ => {
                    return Err(Error::invalid(format!(
                        "GMM component {k}: covariance is not symmetric positive definite"
                    )))
                }
            };
            chol[k * d * d..(k + 1) * d * d].copy_from_slice(&l);
            log_det[k] = 2.0 * (0..d).map(|i| l[i * d + i].ln()).sum::<f64>();
            for col in 0..d {
                let e: Vec<f64> = (0..d).map(|i| f64::from(u8::from(i == col))).collect();
                let x = cholesky_solve(&l, d, &e);
                for (i, v) in x.into_iter().enumerate() {
                    prec[k * d * d + i * d + col] = v;
                }
            }
        }
        Ok(Gmm {
            d,
            pi,
            mu,
            cov,
            prec,
            log_det,
            chol,
        })
    }

    /// Number of components C.
    pub fn n_comp(&self) -> usize {
        self.pi.len()
    }

    /// `log p(z)`, the mixture's log density at z (d).
    pub fn log_density(&self, z: &[f64]) -> f64 {
        let d = self.d;
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        let terms: Vec<f64> = (0..self.n_comp())
            .map(|c| {
                let diff: Vec<f64> = (0..d).map(|j| z[j] - self.mu[c * d + j]).collect();
                let p = &self.prec[c * d * d..(c + 1) * d * d];
                let mut q = 0.0;
                for i in 0..d {
                    for j in 0..d {
                        q += diff[i] * p[i * d + j] * diff[j];
                    }
                }
                self.pi[c].ln() - 0.5 * (q + self.log_det[c] + d as f64 * ln2pi)
            })
            .collect();
        super::rate::logsumexp(&terms)
    }

    /// The ridgeline point `z(α) = (Σ α_c Σ_c⁻¹)⁻¹ Σ α_c Σ_c⁻¹ μ_c` for weights α (C, ≥ 0, not all 0).
    pub fn ridgeline_point(&self, alpha: &[f64]) -> Vec<f64> {
        let d = self.d;
        let mut a = vec![0f64; d * d];
        let mut b = vec![0f64; d];
        for (c, &w) in alpha.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let p = &self.prec[c * d * d..(c + 1) * d * d];
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] += w * p[i * d + j];
                    b[i] += w * p[i * d + j] * self.mu[c * d + j];
                }
            }
        }
        // A weighted sum of SPD matrices with weights ≥ 0, not all 0, is SPD.
        match cholesky(&a, d) {
            Some(l) => cholesky_solve(&l, d, &b),
            None => vec![f64::NAN; d],
        }
    }

    /// `n` draws from the mixture (n, d), row-major, from `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f64> {
        let d = self.d;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mut u: f64 = rand::Rng::random(&mut rng);
            let mut c = 0;
            while c + 1 < self.pi.len() && u >= self.pi[c] {
                u -= self.pi[c];
                c += 1;
            }
            let e: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
            let l = &self.chol[c * d * d..(c + 1) * d * d];
            for i in 0..d {
                let v: f64 = (0..=i).map(|k| l[i * d + k] * e[k]).sum();
                out.push(self.mu[c * d + i] + v);
            }
        }
        out
    }

    /// Read `gmm.npz` (`pi` (C), `mu` (C, d), `cov` (C, d, d); any float dtype). Errors name the file
    /// and the array that is missing or has the wrong shape.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let arrays = read_npz(path)?;
        let get = |name: &str| -> Result<&NdArray> {
            arrays
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a)
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!(
                            "no array `{name}` (a GMM file holds pi (C), mu (C, d), cov (C, d, d); found: {})",
                            arrays.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                })
        };
        let (pi, mu, cov) = (get("pi")?, get("mu")?, get("cov")?);
        let ok = pi.shape.len() == 1
            && mu.shape.len() == 2
            && cov.shape.len() == 3
            && mu.shape[0] == pi.shape[0]
            && cov.shape[0] == pi.shape[0]
            && cov.shape[1] == mu.shape[1]
            && cov.shape[2] == mu.shape[1];
        if !ok {
            return Err(Error::format(
                path,
                format!(
                    "GMM arrays of shapes pi {:?}, mu {:?}, cov {:?}: expected (C), (C, d), (C, d, d)",
                    pi.shape, mu.shape, cov.shape
                ),
            ));
        }
        Gmm::new(mu.shape[1], pi.to_f64(), mu.to_f64(), cov.to_f64())
            .map_err(|e| Error::format(path, e.to_string()))
    }

    /// Write `gmm.npz` (f64 arrays `pi`, `mu`, `cov`), atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let (c, d) = (self.n_comp(), self.d);
        let arr = |shape: Vec<usize>, v: &[f64]| {
            NdArray::new(shape, crate::io::array::ArrayData::F64(v.to_vec()))
        };
        crate::io::npy::write_npz(
            path,
            &[
                ("pi".into(), arr(vec![c], &self.pi)?),
                ("mu".into(), arr(vec![c, d], &self.mu)?),
                ("cov".into(), arr(vec![c, d, d], &self.cov)?),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag_cov(vals: &[[f64; 2]]) -> Vec<f64> {
        vals.iter().flat_map(|v| [v[0], 0.0, 0.0, v[1]]).collect()
    }

    #[test]
    fn ridgeline_at_a_vertex_is_the_mean_and_with_equal_covariances_the_weighted_mean() {
        let cov = vec![1.0, 0.3, 0.3, 0.5, 2.0, -0.4, -0.4, 1.0, 0.7, 0.0, 0.0, 0.7];
        let g = Gmm::new(
            2,
            vec![0.2, 0.5, 0.3],
            vec![0.0, 1.0, 3.0, -1.0, -2.0, 2.0],
            cov,
        )
        .unwrap();
        for c in 0..3 {
            let mut a = vec![0.0; 3];
            a[c] = 1.0;
            let z = g.ridgeline_point(&a);
            for j in 0..2 {
                assert!((z[j] - g.mu[c * 2 + j]).abs() < 1e-12, "{c}: {z:?}");
            }
        }
        let same = [1.3, 0.2, 0.2, 0.8].repeat(3);
        let g = Gmm::new(
            2,
            vec![0.2, 0.5, 0.3],
            vec![0.0, 1.0, 3.0, -1.0, -2.0, 2.0],
            same,
        )
        .unwrap();
        let a = [0.1, 0.6, 0.3];
        let z = g.ridgeline_point(&a);
        for j in 0..2 {
            let want: f64 = (0..3).map(|c| a[c] * g.mu[c * 2 + j]).sum();
            assert!((z[j] - want).abs() < 1e-12, "{z:?}");
        }
    }

    #[test]
    fn every_mode_lies_on_the_ridgeline() {
        // A mode found by the fixed-point iteration from a mean equals z(α) with α_c ∝ π_c N(mode; μ_c, Σ_c).
        let g = Gmm::new(
            2,
            vec![0.45, 0.35, 0.2],
            vec![0.0, 0.0, 2.5, 0.5, 0.5, 2.8],
            diag_cov(&[[1.0, 0.6], [0.8, 1.2], [0.5, 0.5]]),
        )
        .unwrap();
        let d = 2;
        let resp = |z: &[f64]| -> Vec<f64> {
            let ln2pi = (2.0 * std::f64::consts::PI).ln();
            let l: Vec<f64> = (0..3)
                .map(|c| {
                    let p = &g.prec[c * 4..c * 4 + 4];
                    let x = [z[0] - g.mu[c * d], z[1] - g.mu[c * d + 1]];
                    let q = x[0] * (p[0] * x[0] + p[1] * x[1]) + x[1] * (p[2] * x[0] + p[3] * x[1]);
                    g.pi[c].ln() - 0.5 * (q + g.log_det[c] + 2.0 * ln2pi)
                })
                .collect();
            let m = crate::twin::rate::logsumexp(&l);
            l.iter().map(|v| (v - m).exp()).collect()
        };
        for c in 0..3 {
            let mut z = g.mu[c * d..(c + 1) * d].to_vec();
            for _ in 0..5000 {
                z = g.ridgeline_point(&resp(&z));
            }
            let on = g.ridgeline_point(&resp(&z));
            for j in 0..d {
                assert!((on[j] - z[j]).abs() < 1e-8, "{c}: {on:?} vs {z:?}");
            }
            // And it is a mode: the density's gradient (central differences) vanishes there.
            let h = 1e-5;
            for j in 0..d {
                let (mut zp, mut zm) = (z.clone(), z.clone());
                zp[j] += h;
                zm[j] -= h;
                let grad = (g.log_density(&zp) - g.log_density(&zm)) / (2.0 * h);
                assert!(grad.abs() < 1e-6, "{c}: ∂log p/∂z_{j} = {grad} at {z:?}");
            }
        }
    }

    #[test]
    fn samples_have_the_mixture_moments() {
        let cov = vec![1.0, 0.6, 0.6, 0.8, 0.3, 0.0, 0.0, 0.3];
        let g = Gmm::new(2, vec![0.7, 0.3], vec![0.0, 1.0, 4.0, -2.0], cov.clone()).unwrap();
        let n = 200_000;
        let x = g.sample(n, 3);
        let mean: Vec<f64> = (0..2)
            .map(|j| x.iter().skip(j).step_by(2).sum::<f64>() / n as f64)
            .collect();
        // E z = Σ π μ; Cov z = Σ π (Σ_c + μ_c μ_cᵀ) − E z E zᵀ.
        let want_mean = [0.7 * 0.0 + 0.3 * 4.0, 0.7 * 1.0 + 0.3 * -2.0];
        for j in 0..2 {
            assert!((mean[j] - want_mean[j]).abs() < 0.02, "{mean:?}");
        }
        let c01: f64 = x
            .chunks_exact(2)
            .map(|r| (r[0] - mean[0]) * (r[1] - mean[1]))
            .sum::<f64>()
            / n as f64;
        let want01 =
            0.7 * (0.6 + 0.0 * 1.0) + 0.3 * (0.0 + 4.0 * -2.0) - want_mean[0] * want_mean[1];
        assert!((c01 - want01).abs() < 0.03, "{c01} vs {want01}");
        assert_eq!(g.sample(10, 3), x[..20].to_vec());
    }

    #[test]
    fn npz_round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let g = Gmm::new(
            2,
            vec![0.25, 0.75],
            vec![0.0, 1.0, 2.0, 3.0],
            [1.0, 0.2, 0.2, 1.0].repeat(2),
        )
        .unwrap();
        let p = dir.path().join("gmm.npz");
        g.write(&p).unwrap();
        let r = Gmm::read(&p).unwrap();
        assert_eq!(
            (r.pi.clone(), r.mu.clone(), r.cov.clone()),
            (g.pi.clone(), g.mu.clone(), g.cov.clone())
        );
        // A file without `cov`, and one whose mu has the wrong shape.
        let f64s = |shape: Vec<usize>, v: Vec<f64>| {
            NdArray::new(shape, crate::io::array::ArrayData::F64(v)).unwrap()
        };
        let bad = dir.path().join("bad.npz");
        crate::io::npy::write_npz(
            &bad,
            &[
                ("pi".into(), f64s(vec![2], vec![0.5, 0.5])),
                ("mu".into(), f64s(vec![2, 2], vec![0.0; 4])),
            ],
        )
        .unwrap();
        let e = Gmm::read(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.npz") && e.contains("`cov`"), "{e}");
        crate::io::npy::write_npz(
            &bad,
            &[
                ("pi".into(), f64s(vec![2], vec![0.5, 0.5])),
                ("mu".into(), f64s(vec![3, 2], vec![0.0; 6])),
                (
                    "cov".into(),
                    f64s(vec![2, 2, 2], [1.0, 0.0, 0.0, 1.0].repeat(2)),
                ),
            ],
        )
        .unwrap();
        let e = Gmm::read(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.npz") && e.contains("expected (C), (C, d), (C, d, d)"),
            "{e}"
        );
    }
}
