//! A 2-D embedding of latents for plots: exact t-SNE (van der Maaten & Hinton, 2008) on a seeded
//! random subsample, used by `twin-analyze` (cryoTWIN's joint t-SNE of latents and prior samples).
//! `analyze` embeds z with UMAP, as the reference does: see [`crate::analysis::umap`].
//!
//! Method, for the `S = min(N, max_points)` subsampled points:
//! - input affinities `p_{j|i} ∝ exp(−β_i ‖z_i − z_j‖²)`, `β_i` found by bisection so that the
//!   perplexity `2^{H(P_i)}` equals `perplexity`; `P = (P_{j|i} + P_{i|j}) / 2S`;
//! - output affinities `q_ij = w_ij / Σ_{k≠l} w_kl` with `w_ij = 1 / (1 + ‖y_i − y_j‖²)`;
//! - gradient `∂C/∂y_i = 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j)`, gradient descent with momentum
//!   (0.5 then 0.8), per-coordinate gains, early exaggeration 12 for the first 250 iterations and
//!   sklearn's learning rate `max(S / 12 / 4, 50)`;
//! - initialization from the first two principal components scaled to standard deviation 1e-4
//!   (sklearn's `init="pca"`), so the only randomness is the subsample.
//!
//! Each iteration costs O(S²) (rows in parallel with rayon). Points outside the subsample are
//! placed at the embedding of their nearest subsampled point in z.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::analysis::kmeans::nearest_points;
use crate::analysis::pca::{check_z, Pca};
use crate::error::{Error, Result};

/// The points an embedding fits when there are more than `max_points` of the `(n, zdim)` rows of
/// `z`: `max_points` of them drawn with `rng` (every row otherwise), in ascending order, and
/// their rows gathered `(S, zdim)`.
pub(crate) fn subsample(
    z: &[f32],
    n: usize,
    zdim: usize,
    max_points: usize,
    rng: &mut StdRng,
) -> (Vec<usize>, Vec<f32>) {
    let mut sub: Vec<usize> = if n > max_points {
        rand::seq::index::sample(rng, n, max_points).into_vec()
    } else {
        (0..n).collect()
    };
    sub.sort_unstable();
    let xs = sub
        .iter()
        .flat_map(|&i| z[i * zdim..(i + 1) * zdim].iter().copied())
        .collect();
    (sub, xs)
}

/// Settings of [`tsne`].
#[derive(Debug, Clone, PartialEq)]
pub struct TsneOptions {
    /// target perplexity (effective number of neighbours); clamped to `(S − 1) / 3`
    pub perplexity: f64,
    /// gradient-descent iterations (including the 250 of early exaggeration)
    pub n_iter: usize,
    /// largest number of points embedded exactly; the others are placed by nearest neighbour
    pub max_points: usize,
    /// seed of the subsample
    pub seed: u64,
}

impl Default for TsneOptions {
    fn default() -> Self {
        TsneOptions {
            perplexity: 30.0,
            n_iter: 750,
            max_points: 3000,
            seed: 0,
        }
    }
}

/// Row-stochastic conditional affinities `p_{j|i}` `(s, s)` for the given perplexity.
fn conditional_p(x: &[f32], s: usize, zdim: usize, perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    let mut p = vec![0.0f64; s * s];
    p.par_chunks_mut(s).enumerate().for_each(|(i, row)| {
        let xi = &x[i * zdim..(i + 1) * zdim];
        let d2: Vec<f64> = (0..s)
            .map(|j| {
                x[j * zdim..(j + 1) * zdim]
                    .iter()
                    .zip(xi)
                    .map(|(&a, &b)| {
                        let d = a as f64 - b as f64;
                        d * d
                    })
                    .sum()
            })
            .collect();
        // Subtract the nearest non-self distance for numerical range.
        let dmin = d2
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &d)| d)
            .fold(f64::INFINITY, f64::min);
        let (mut lo, mut hi, mut beta) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..100 {
            let mut sum = 0.0;
            let mut sum_dp = 0.0;
            for (j, &d) in d2.iter().enumerate() {
                if j == i {
                    row[j] = 0.0;
                    continue;
                }
                let e = (-(d - dmin) * beta).exp();
                row[j] = e;
                sum += e;
                sum_dp += (d - dmin) * e;
            }
            if sum <= 0.0 {
                break;
            }
            // Entropy (nats) of the normalized row: H = β·E[d − dmin] + ln Σ.
            let h = beta * sum_dp / sum + sum.ln();
            if (h - target).abs() < 1e-5 {
                break;
            }
            if h > target {
                lo = beta;
                beta = if hi.is_finite() {
                    (beta + hi) / 2.0
                } else {
                    beta * 2.0
                };
            } else {
                hi = beta;
                beta = (beta + lo) / 2.0;
            }
        }
        let sum: f64 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|v| *v /= sum);
        }
    });
    p
}

/// Exact t-SNE of the `(s, zdim)` points `x`: the `(s, 2)` embedding.
fn tsne_exact(x: &[f32], s: usize, zdim: usize, opts: &TsneOptions) -> Result<Vec<f64>> {
    if s == 1 {
        return Ok(vec![0.0, 0.0]);
    }
    let perplexity = opts.perplexity.min((s as f64 - 1.0) / 3.0).max(1.0);
    let cond = conditional_p(x, s, zdim, perplexity);
    let mut p = vec![0.0f64; s * s];
    for i in 0..s {
        for j in 0..s {
            p[i * s + j] = ((cond[i * s + j] + cond[j * s + i]) / (2.0 * s as f64)).max(1e-12);
        }
    }
    // PCA initialization, scaled to std 1e-4 along the first axis.
    let pca = Pca::fit(x, s, zdim)?;
    let proj = pca.transform(x);
    let mut y: Vec<f64> = (0..s)
        .flat_map(|i| {
            [
                proj[i * zdim],
                if zdim > 1 { proj[i * zdim + 1] } else { 0.0 },
            ]
        })
        .collect();
    let sd0 = (y.iter().step_by(2).map(|v| v * v).sum::<f64>() / s as f64).sqrt();
    let scale = if sd0 > 0.0 { 1e-4 / sd0 } else { 1.0 };
    y.iter_mut().for_each(|v| *v *= scale);

    let lr = (s as f64 / 12.0 / 4.0).max(50.0);
    let mut update = vec![0.0f64; 2 * s];
    let mut gains = vec![1.0f64; 2 * s];
    for it in 0..opts.n_iter {
        let exag = if it < 250 { 12.0 } else { 1.0 };
        let momentum = if it < 250 { 0.5 } else { 0.8 };
        // Per row: (attractive Σ p w (yi−yj), repulsive Σ w² (yi−yj), Σ w).
        let rows: Vec<([f64; 2], [f64; 2], f64)> = (0..s)
            .into_par_iter()
            .map(|i| {
                let (yi0, yi1) = (y[2 * i], y[2 * i + 1]);
                let mut att = [0.0; 2];
                let mut rep = [0.0; 2];
                let mut wsum = 0.0;
                let prow = &p[i * s..(i + 1) * s];
                for j in 0..s {
                    if j == i {
                        continue;
                    }
                    let d0 = yi0 - y[2 * j];
                    let d1 = yi1 - y[2 * j + 1];
                    let w = 1.0 / (1.0 + d0 * d0 + d1 * d1);
                    let pw = prow[j] * exag * w;
                    att[0] += pw * d0;
                    att[1] += pw * d1;
                    rep[0] += w * w * d0;
                    rep[1] += w * w * d1;
                    wsum += w;
                }
                (att, rep, wsum)
            })
            .collect();
        let z: f64 = rows.iter().map(|r| r.2).sum();
        for (i, (att, rep, _)) in rows.iter().enumerate() {
            for d in 0..2 {
                let g = 4.0 * (att[d] - rep[d] / z);
                let k = 2 * i + d;
                // Delta-bar-delta gains: grow when the gradient opposes the last update.
                gains[k] = if (g > 0.0) != (update[k] > 0.0) {
                    gains[k] + 0.2
                } else {
                    (gains[k] * 0.8).max(0.01)
                };
                update[k] = momentum * update[k] - lr * gains[k] * g;
                y[k] += update[k];
            }
        }
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("t-SNE diverged (non-finite embedding)"));
    }
    Ok(y)
}

/// 2-D t-SNE embedding `(n, 2)` of the latents `z` `(n, zdim)` (see the module doc): exact on a
/// seeded subsample of at most `opts.max_points` points, the rest placed at their nearest
/// subsampled point. Returns the embedding and the subsample indices (sorted).
pub fn tsne(
    z: &[f32],
    n: usize,
    zdim: usize,
    opts: &TsneOptions,
) -> Result<(Vec<f64>, Vec<usize>)> {
    check_z("t-SNE input", z, n, zdim)?;
    if opts.max_points == 0
        || opts.n_iter == 0
        || opts.perplexity.is_nan()
        || opts.perplexity <= 0.0
    {
        return Err(Error::invalid(
            "t-SNE needs max_points ≥ 1, n_iter ≥ 1 and a positive perplexity",
        ));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let (sub, xs) = subsample(z, n, zdim, opts.max_points, &mut rng);
    let ys = tsne_exact(&xs, sub.len(), zdim, opts)?;
    if sub.len() == n {
        return Ok((ys, sub));
    }
    let query: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    let near = nearest_points(&xs, zdim, &query);
    let emb = near
        .iter()
        .flat_map(|&k| [ys[2 * k], ys[2 * k + 1]])
        .collect();
    Ok((emb, sub))
}
