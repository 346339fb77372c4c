//! A 2-D UMAP embedding of latents for `analyze` when zdim > 2 (McInnes, Healy & Melville, 2018),
//! following `umap-learn`'s defaults, which the reference's `analyze` calls
//! (`umap.UMAP().fit_transform(z)`, written to `umap.pkl`).
//!
//! **Own code rather than a crate**: the Rust UMAP crates on crates.io were either early or
//! experimental (`rag-umap` 0.0.0, `fast-umap` built on the `burn` framework with a GPU stack),
//! heavy (`annembed`: HNSW, and `ndarray-linalg` on an OpenBLAS or MKL backend) or shaped for
//! another use (`umap-rs`: `ndarray` arrays, caller-supplied kNN and initialization, Hogwild
//! parallel SGD that is not reproducible for a seed, panics on invalid input). What `analyze`
//! needs is a few hundred lines on the crate's own PCA, rayon and `rand`.
//!
//! Method, for the `S = min(N, max_points)` points of a seeded random subsample (all points when
//! `N ≤ max_points`):
//! 1. **exact kNN**: the `k = min(n_neighbors, S)` nearest points of each point (itself first, at
//!    distance 0), Euclidean, brute force in O(S²·zdim), rows in parallel;
//! 2. **smooth kNN distances** (`smooth_knn_dist`): `ρ_i` = distance to the nearest other point at a
//!    non-zero distance, `σ_i` by bisection so that `Σ_{j=1}^{k−1} exp(−max(0, d_ij − ρ_i)/σ_i) =
//!    log₂ k`, floored at `10⁻³·mean(d_i·)`;
//! 3. **fuzzy union**: `A_ij = exp(−max(0, d_ij − ρ_i)/σ_i)` on the kNN edges (0 for `j = i`),
//!    `P = A + Aᵀ − A∘Aᵀ`, edges with `P_ij < max P / n_epochs` dropped;
//! 4. **initialization by PCA** (umap-learn's `init="pca"`, not its default spectral layout: both
//!    start from a linear view of the data's large-scale structure, and PCA needs no sparse
//!    eigensolver): the first two principal components scaled to a largest |coordinate| of 10 plus
//!    N(0, 10⁻⁴) noise, then each axis mapped onto [0, 10] as umap-learn does before optimizing;
//! 5. **SGD with negative sampling** (`optimize_layout_euclidean`), low-dimensional similarity
//!    `1/(1 + a·d^{2b})` with `(a, b)` from [`find_ab_params`]: each edge is sampled every
//!    `max P / P_ij` epochs; a sample pulls both ends together with
//!    `∂ = −2ab·d^{2(b−1)} / (1 + a·d^{2b}) · (y_i − y_j)`, then `negative_sample_rate` random
//!    points per sample push `y_i` away with `∂ = 2b / ((0.001 + d²)(1 + a·d^{2b})) · (y_i − y_k)`;
//!    each gradient coordinate clipped to ±4, learning rate `α(1 − epoch/n_epochs)`;
//!    `n_epochs` = 500 for `S ≤ 10 000`, else 200. Single-threaded with a seeded generator, so
//!    the embedding is the same for a given seed (umap-learn with `random_state` is too, but its
//!    generator is not ours: embeddings of the two agree in quality, not in coordinates).
//!
//! Points outside the subsample are placed at the embedding of their nearest subsampled point in z
//! (umap-learn embeds all points; `max_points` bounds the O(S²) kNN and the single-threaded SGD),
//! by the same brute-force kernel in O(N·S).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::analysis::pca::{check_z, Pca};
use crate::error::{Error, Result};

/// Settings of [`umap`]; the defaults are umap-learn's (`UMAP()`), apart from `max_points`.
#[derive(Debug, Clone, PartialEq)]
pub struct UmapOptions {
    /// neighbours per point in the kNN graph, the point itself included (clamped to S)
    pub n_neighbors: usize,
    /// smallest distance between embedded points (shape of the low-dimensional similarity)
    pub min_dist: f64,
    /// scale of the embedded points (shape of the low-dimensional similarity)
    pub spread: f64,
    /// SGD epochs; `None`: 500 for `S ≤ 10 000` points, else 200
    pub n_epochs: Option<usize>,
    /// negative samples per positive sample
    pub negative_sample_rate: usize,
    /// initial SGD learning rate, decayed linearly to 0
    pub learning_rate: f64,
    /// largest number of points embedded exactly; the others are placed by nearest neighbour
    pub max_points: usize,
    /// seed of the subsample, the initialization noise and the negative samples
    pub seed: u64,
}

impl Default for UmapOptions {
    fn default() -> Self {
        UmapOptions {
            n_neighbors: 15,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: None,
            negative_sample_rate: 5,
            learning_rate: 1.0,
            max_points: 50_000,
            seed: 0,
        }
    }
}

/// The `(a, b)` of the low-dimensional similarity `1/(1 + a·d^{2b})` that fits, by least
/// squares on 300 points `d ∈ [0, 3·spread]`, the target `1` for `d < min_dist` and
/// `exp(−(d − min_dist)/spread)` beyond (umap-learn's `find_ab_params`, which uses scipy's
/// `curve_fit`: Levenberg–Marquardt from `(1, 1)`, as here).
///
/// For `min_dist = 0.1, spread = 1`: `a ≈ 1.577, b ≈ 0.895`.
pub fn find_ab_params(spread: f64, min_dist: f64) -> Result<(f64, f64)> {
    if !(spread.is_finite() && spread > 0.0 && min_dist.is_finite() && min_dist >= 0.0) {
        return Err(Error::invalid(format!(
            "UMAP needs spread > 0 and min_dist ≥ 0, got spread {spread}, min_dist {min_dist}"
        )));
    }
    const M: usize = 300;
    let xs: Vec<f64> = (0..M)
        .map(|i| 3.0 * spread * i as f64 / (M - 1) as f64)
        .collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    // Residuals r = f − y and Jacobian rows (∂f/∂a, ∂f/∂b) of f = 1/(1 + a·x^{2b}):
    // ∂f/∂a = −x^{2b}/(1 + a x^{2b})², ∂f/∂b = −2a·ln(x)·x^{2b}/(1 + a x^{2b})² (0 at x = 0).
    let eval = |a: f64, b: f64| -> (f64, [f64; 3], [f64; 2]) {
        let (mut cost, mut jtj, mut jtr) = (0.0, [0.0; 3], [0.0; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            let (p, lnx) = if x > 0.0 {
                (x.powf(2.0 * b), x.ln())
            } else {
                (0.0, 0.0)
            };
            let den = 1.0 + a * p;
            let r = 1.0 / den - y;
            let ja = -p / (den * den);
            let jb = -2.0 * a * lnx * p / (den * den);
            cost += r * r;
            jtj[0] += ja * ja;
            jtj[1] += ja * jb;
            jtj[2] += jb * jb;
            jtr[0] += ja * r;
            jtr[1] += jb * r;
        }
        (cost, jtj, jtr)
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut lambda = 1e-3;
    let (mut cost, mut jtj, mut jtr) = eval(a, b);
    for _ in 0..500 {
        // (JᵀJ + λ·diag JᵀJ) δ = −Jᵀr, solved by Cramer's rule.
        let m00 = jtj[0] * (1.0 + lambda);
        let m11 = jtj[2] * (1.0 + lambda);
        let det = m00 * m11 - jtj[1] * jtj[1];
        if det.abs() < 1e-300 {
            break;
        }
        let da = (-jtr[0] * m11 + jtr[1] * jtj[1]) / det;
        let db = (-jtr[1] * m00 + jtr[0] * jtj[1]) / det;
        let (na, nb) = (a + da, b + db);
        let (ncost, njtj, njtr) = eval(na, nb);
        if ncost.is_finite() && ncost <= cost {
            let small =
                (da.abs() <= 1e-12 * (1.0 + a.abs())) && (db.abs() <= 1e-12 * (1.0 + b.abs()));
            let flat = cost - ncost <= 1e-15 * cost;
            (a, b, cost, jtj, jtr) = (na, nb, ncost, njtj, njtr);
            lambda = (lambda / 10.0).max(1e-12);
            if small || flat {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    if !(a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0) {
        return Err(Error::invalid(format!(
            "UMAP: fitting the similarity curve for spread {spread}, min_dist {min_dist} failed \
             (a = {a}, b = {b})"
        )));
    }
    Ok((a, b))
}

/// For each of the `m` query rows `q` `(m, d)`, its `k ≥ 1` nearest rows of `data` `(s, d)` as
/// `(squared distance, index)`, ascending (lower index first on ties), `(m, k)` row-major;
/// rows with fewer than `k` candidates are padded with `(∞, u32::MAX)`. With `skip_same`, query
/// row `i` never returns data row `i` (query = data: the kNN of each point among the others).
///
/// Brute force in O(m·s·d): `data` is transposed to `(d, s)` so that the squared distances of a
/// query to a block of data rows accumulate dimension by dimension over contiguous memory (SIMD),
/// then the block is scanned against the current k-th distance. Query rows in parallel.
fn nearest_k(
    data: &[f32],
    s: usize,
    query: &[f32],
    d: usize,
    k: usize,
    skip_same: bool,
) -> Vec<(f32, u32)> {
    const BLOCK: usize = 1024;
    let dt: Vec<f32> = (0..d)
        .flat_map(|c| data.chunks_exact(d).map(move |r| r[c]))
        .collect();
    let mut out = vec![(f32::INFINITY, u32::MAX); query.len() / d * k];
    out.par_chunks_mut(k)
        .zip(query.par_chunks_exact(d))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; BLOCK],
            |buf, (i, (best, qi))| {
                let mut len = 0;
                for j0 in (0..s).step_by(BLOCK) {
                    let buf = &mut buf[..BLOCK.min(s - j0)];
                    buf.fill(0.0);
                    for (c, &qc) in qi.iter().enumerate() {
                        let col = &dt[c * s + j0..c * s + j0 + buf.len()];
                        for (b, &v) in buf.iter_mut().zip(col) {
                            let t = v - qc;
                            *b += t * t;
                        }
                    }
                    for (o, &d2) in buf.iter().enumerate() {
                        let j = j0 + o;
                        if (len == k && d2 >= best[k - 1].0) || (skip_same && j == i) {
                            continue;
                        }
                        // Insert after the equal ones (stable), dropping the last when full.
                        let pos = best[..len].partition_point(|&(bd, _)| bd <= d2);
                        len = (len + 1).min(k);
                        best.copy_within(pos..len - 1, pos + 1);
                        best[pos] = (d2, j as u32);
                    }
                }
            },
        );
    out
}

/// Exact kNN of the `(s, d)` points `x`: indices and Euclidean distances `(s, k)`, ascending,
/// the point itself first (distance 0), then the `k − 1 ≥ 1` nearest others (lower index on
/// ties).
fn knn(x: &[f32], s: usize, d: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let near = nearest_k(x, s, x, d, k - 1, true);
    let mut ind = Vec::with_capacity(s * k);
    let mut dist = Vec::with_capacity(s * k);
    for (i, row) in near.chunks(k - 1).enumerate() {
        ind.push(i as u32);
        dist.push(0.0);
        for &(d2, j) in row {
            ind.push(j);
            dist.push(d2.sqrt());
        }
    }
    (ind, dist)
}

/// umap-learn's `smooth_knn_dist` (local_connectivity 1, bandwidth 1) on the kNN distances
/// `(s, k)` (column 0: the point itself): `(σ, ρ)` per point, see the module doc.
fn smooth_knn_dist(dist: &[f32], k: usize) -> (Vec<f32>, Vec<f32>) {
    const TOL: f64 = 1e-5;
    const MIN_K_DIST_SCALE: f64 = 1e-3;
    let target = (k as f64).log2();
    let mean_all = dist.iter().map(|&v| v as f64).sum::<f64>() / dist.len() as f64;
    dist.par_chunks(k)
        .map(|row| {
            let rho = row.iter().copied().find(|&v| v > 0.0).unwrap_or(0.0) as f64;
            let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
            for _ in 0..64 {
                let psum: f64 = row[1..]
                    .iter()
                    .map(|&v| {
                        let t = v as f64 - rho;
                        if t > 0.0 {
                            (-t / mid).exp()
                        } else {
                            1.0
                        }
                    })
                    .sum();
                if (psum - target).abs() < TOL {
                    break;
                }
                if psum > target {
                    hi = mid;
                    mid = (lo + hi) / 2.0;
                } else {
                    lo = mid;
                    mid = if hi.is_finite() {
                        (lo + hi) / 2.0
                    } else {
                        mid * 2.0
                    };
                }
            }
            let floor = if rho > 0.0 {
                MIN_K_DIST_SCALE * row.iter().map(|&v| v as f64).sum::<f64>() / k as f64
            } else {
                MIN_K_DIST_SCALE * mean_all
            };
            (mid.max(floor) as f32, rho as f32)
        })
        .unzip()
}

/// The fuzzy union `P = A + Aᵀ − A∘Aᵀ` of the kNN memberships, as COO edges `(i, j, P_ij)`
/// sorted by `(i, j)`, both directions of each edge, zeros dropped.
fn fuzzy_union(ind: &[u32], dist: &[f32], k: usize) -> Vec<(u32, u32, f32)> {
    let (sigma, rho) = smooth_knn_dist(dist, k);
    // (row, col, value, from Aᵀ)
    let mut e: Vec<(u32, u32, f32, bool)> = Vec::with_capacity(2 * ind.len());
    for (i, (ri, rd)) in ind.chunks(k).zip(dist.chunks(k)).enumerate() {
        for (&j, &dj) in ri.iter().zip(rd) {
            if j as usize == i {
                continue;
            }
            let t = dj - rho[i];
            let w = if t <= 0.0 || sigma[i] == 0.0 {
                1.0
            } else {
                (-t / sigma[i]).exp()
            };
            e.push((i as u32, j, w, false));
            e.push((j, i as u32, w, true));
        }
    }
    e.par_sort_unstable_by_key(|&(r, c, _, t)| (r, c, t));
    let mut out = Vec::with_capacity(e.len());
    let mut g = 0;
    while g < e.len() {
        let (r, c) = (e[g].0, e[g].1);
        let (mut a, mut at) = (0.0f32, 0.0f32);
        while g < e.len() && e[g].0 == r && e[g].1 == c {
            if e[g].3 {
                at += e[g].2;
            } else {
                a += e[g].2;
            }
            g += 1;
        }
        let p = a + at - a * at;
        if p > 0.0 {
            out.push((r, c, p));
        }
    }
    out
}

/// Initial layout `(s, 2)` (f32): the first two PCs of `x` `(s, d)`, see the module doc.
fn pca_init(x: &[f32], s: usize, d: usize, rng: &mut StdRng) -> Result<Vec<f32>> {
    let pca = Pca::fit(x, s, d)?;
    let proj = pca.transform(x);
    let mut y: Vec<f64> = proj
        .chunks(d)
        .flat_map(|r| [r[0], if d > 1 { r[1] } else { 0.0 }])
        .collect();
    // noisy_scale_coords(max_coord = 10, noise = 1e-4)
    let big = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if big > 0.0 {
        y.iter_mut().for_each(|v| *v *= 10.0 / big);
    }
    let noise = Normal::new(0.0, 1e-4).map_err(|e| Error::invalid(format!("UMAP init: {e}")))?;
    y.iter_mut().for_each(|v| *v += noise.sample(rng));
    // Each axis onto [0, 10].
    for c in 0..2 {
        let (lo, hi) = y
            .iter()
            .skip(c)
            .step_by(2)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        if hi > lo {
            y.iter_mut()
                .skip(c)
                .step_by(2)
                .for_each(|v| *v = 10.0 * (*v - lo) / (hi - lo));
        }
    }
    Ok(y.iter().map(|&v| v as f32).collect())
}

/// `clip(x, −4, 4)`, umap-learn's gradient clip.
#[inline]
fn clip(x: f32) -> f32 {
    x.clamp(-4.0, 4.0)
}

/// Settings of the SGD in [`optimize_layout`].
struct Sgd {
    a: f32,
    b: f32,
    n_epochs: usize,
    negative_sample_rate: usize,
    learning_rate: f64,
}

/// umap-learn's `optimize_layout_euclidean` (gamma 1, `move_other`) on the 2-D layout `y` `(s, 2)`
/// over the edges `(head, tail, weight)`; see the module doc.
fn optimize_layout(y: &mut [f32], edges: &[(u32, u32, f32)], sgd: &Sgd, rng: &mut StdRng) {
    let s = y.len() / 2;
    let (a, b) = (sgd.a, sgd.b);
    let wmax = edges.iter().fold(0.0f32, |m, e| m.max(e.2)) as f64;
    let eps: Vec<f64> = edges.iter().map(|e| wmax / e.2 as f64).collect();
    let eps_neg: Vec<f64> = eps
        .iter()
        .map(|&e| e / sgd.negative_sample_rate as f64)
        .collect();
    let mut next = eps.clone();
    let mut next_neg = eps_neg.clone();
    for epoch in 0..sgd.n_epochs {
        let n = epoch as f64;
        let alpha = (sgd.learning_rate * (1.0 - n / sgd.n_epochs as f64)) as f32;
        for (e, &(hi, ti, _)) in edges.iter().enumerate() {
            if next[e] > n {
                continue;
            }
            let (j, k) = (hi as usize, ti as usize);
            let d0 = y[2 * j] - y[2 * k];
            let d1 = y[2 * j + 1] - y[2 * k + 1];
            let d2 = d0 * d0 + d1 * d1;
            // attraction: −2ab·d^{2(b−1)} / (1 + a·d^{2b})
            let coeff = if d2 > 0.0 {
                let pb = d2.powf(b);
                -2.0 * a * b * (pb / d2) / (a * pb + 1.0)
            } else {
                0.0
            };
            let g0 = clip(coeff * d0) * alpha;
            let g1 = clip(coeff * d1) * alpha;
            y[2 * j] += g0;
            y[2 * j + 1] += g1;
            y[2 * k] -= g0;
            y[2 * k + 1] -= g1;
            next[e] += eps[e];

            let n_neg = ((n - next_neg[e]) / eps_neg[e]).max(0.0) as usize;
            for _ in 0..n_neg {
                let k = rng.random_range(0..s);
                let d0 = y[2 * j] - y[2 * k];
                let d1 = y[2 * j + 1] - y[2 * k + 1];
                let d2 = d0 * d0 + d1 * d1;
                if d2 > 0.0 {
                    // repulsion: 2b / ((0.001 + d²)(1 + a·d^{2b}))
                    let coeff = 2.0 * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
                    y[2 * j] += clip(coeff * d0) * alpha;
                    y[2 * j + 1] += clip(coeff * d1) * alpha;
                }
            }
            next_neg[e] += n_neg as f64 * eps_neg[e];
        }
    }
}

/// COO edges `(i, j, P_ij)` of the fuzzy union (see [`fuzzy_union`]).
type FuzzyGraph = Vec<(u32, u32, f32)>;

/// UMAP of the `(s, d)` points `x` (all of them, `s ≥ 2`): the `(s, 2)` embedding and the fuzzy
/// union graph (all its edges, before the pruning for the SGD).
fn umap_exact(
    x: &[f32],
    s: usize,
    d: usize,
    opts: &UmapOptions,
    rng: &mut StdRng,
) -> Result<(Vec<f64>, FuzzyGraph)> {
    let (a, b) = find_ab_params(opts.spread, opts.min_dist)?;
    let k = opts.n_neighbors.min(s);
    let (ind, dist) = knn(x, s, d, k);
    let graph = fuzzy_union(&ind, &dist, k);
    let n_epochs = opts.n_epochs.unwrap_or(if s <= 10_000 { 500 } else { 200 });
    let wmax = graph.iter().fold(0.0f32, |m, e| m.max(e.2));
    let edges: Vec<(u32, u32, f32)> = graph
        .iter()
        .copied()
        .filter(|e| e.2 >= wmax / n_epochs as f32)
        .collect();
    let mut y = pca_init(x, s, d, rng)?;
    optimize_layout(
        &mut y,
        &edges,
        &Sgd {
            a: a as f32,
            b: b as f32,
            n_epochs,
            negative_sample_rate: opts.negative_sample_rate,
            learning_rate: opts.learning_rate,
        },
        rng,
    );
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "UMAP diverged: non-finite embedding of point {} ({} points, {} edges)",
            i / 2,
            s,
            edges.len()
        )));
    }
    Ok((y.iter().map(|&v| v as f64).collect(), graph))
}

/// A UMAP fit with its graph: what [`umap_with_graph`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct UmapFit {
    /// the embedding `(n, 2)` of every point, row-major
    pub embedding: Vec<f64>,
    /// indices of the `S` subsampled points, sorted (all points when `n ≤ max_points`)
    pub subsample: Vec<usize>,
    /// umap-learn's `graph_` on the subsample: the fuzzy union `P` (module doc, step 3, before
    /// the SGD's pruning) as COO edges `(i, j, P_ij)` between positions in `subsample`, both
    /// directions of each edge, sorted by `(i, j)`
    pub graph: Vec<(u32, u32, f32)>,
    /// position in `subsample` of the point each of the `n` points is embedded at (itself for
    /// subsampled points, else its nearest subsampled point in z)
    pub nearest: Vec<u32>,
}

/// 2-D UMAP embedding `(n, 2)` of the latents `z` `(n, zdim)` (see the module doc): on a seeded
/// subsample of at most `opts.max_points` points, the rest placed at their nearest subsampled
/// point. Returns the embedding and the subsample indices (sorted). The same `opts.seed` gives
/// the same embedding.
///
/// Errors on fewer than 2 points, non-finite values, or settings out of range
/// (`n_neighbors < 2`, `max_points < 2`, `n_epochs = 0`, `negative_sample_rate = 0`, a
/// non-positive learning rate or spread, a negative `min_dist`).
pub fn umap(
    z: &[f32],
    n: usize,
    zdim: usize,
    opts: &UmapOptions,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let fit = umap_with_graph(z, n, zdim, opts)?;
    Ok((fit.embedding, fit.subsample))
}

/// [`umap`] with the fuzzy graph it embedded (umap-learn's `reducer.graph_`, e.g. for Leiden
/// clustering) and the subsampled point each point is placed at; the embedding is `umap`'s.
///
/// Errors as [`umap`].
pub fn umap_with_graph(z: &[f32], n: usize, zdim: usize, opts: &UmapOptions) -> Result<UmapFit> {
    check_z("UMAP input", z, n, zdim)?;
    if n < 2 {
        return Err(Error::invalid(format!(
            "UMAP needs at least 2 points, got {n}"
        )));
    }
    if opts.n_neighbors < 2
        || opts.max_points < 2
        || opts.n_epochs == Some(0)
        || opts.negative_sample_rate == 0
        || !(opts.learning_rate.is_finite() && opts.learning_rate > 0.0)
    {
        return Err(Error::invalid(format!(
            "UMAP needs n_neighbors ≥ 2, max_points ≥ 2, n_epochs ≥ 1, negative_sample_rate ≥ 1 \
             and a positive learning rate, got {opts:?}"
        )));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let (sub, xs) = crate::analysis::embed::subsample(z, n, zdim, opts.max_points, &mut rng);
    let (ys, graph) = umap_exact(&xs, sub.len(), zdim, opts, &mut rng)?;
    if sub.len() == n {
        return Ok(UmapFit {
            embedding: ys,
            subsample: sub,
            graph,
            nearest: (0..n as u32).collect(),
        });
    }
    // The blocked kernel of the kNN rather than `kmeans::nearest_points` (same answer, first
    // index on ties): ~2.7× faster on 100k × 20k points, and this is O(N·S).
    let near = nearest_k(&xs, sub.len(), z, zdim, 1, false);
    let embedding = near
        .iter()
        .flat_map(|&(_, k)| [ys[2 * k as usize], ys[2 * k as usize + 1]])
        .collect();
    Ok(UmapFit {
        embedding,
        subsample: sub,
        graph,
        nearest: near.iter().map(|&(_, k)| k).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` points `(n, d)` of `c` Gaussian blobs (std 1) with centres 20 apart on the axes, and
    /// their labels.
    fn blobs(n: usize, d: usize, c: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let g = Normal::new(0.0f32, 1.0).unwrap();
        let mut z = Vec::with_capacity(n * d);
        let mut lab = Vec::with_capacity(n);
        for i in 0..n {
            let l = i % c;
            for j in 0..d {
                z.push(g.sample(&mut rng) + if j == l { 20.0 } else { 0.0 });
            }
            lab.push(l);
        }
        (z, lab)
    }

    /// Indices of the `k` nearest other rows of row `i` of `x` `(n, d)` (stable on ties).
    fn neighbours(x: &[f64], d: usize, i: usize, k: usize) -> Vec<usize> {
        let xi = &x[i * d..(i + 1) * d];
        let mut o: Vec<(f64, usize)> = x
            .chunks(d)
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, r)| (r.iter().zip(xi).map(|(a, b)| (a - b) * (a - b)).sum(), j))
            .collect();
        o.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        o.iter().take(k).map(|p| p.1).collect()
    }

    /// sklearn's `trustworthiness(X, Y, n_neighbors=k)`: `1 − 2/(n k (2n − 3k − 1)) Σ_i Σ_{j ∈
    /// kNN_Y(i)} max(0, r_X(i, j) − k)`, `r_X` the 1-based rank of `j` among `i`'s neighbours in X.
    fn trustworthiness(x: &[f64], dx: usize, y: &[f64], k: usize) -> f64 {
        let n = x.len() / dx;
        let mut t = 0.0;
        for i in 0..n {
            let rank_x = neighbours(x, dx, i, n - 1);
            let mut r = vec![0usize; n];
            for (p, &j) in rank_x.iter().enumerate() {
                r[j] = p + 1;
            }
            for j in neighbours(y, 2, i, k) {
                t += r[j].saturating_sub(k) as f64;
            }
        }
        let (n, k) = (n as f64, k as f64);
        1.0 - t * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))
    }

    #[test]
    fn find_ab_params_matches_umap_learn() {
        // umap-learn 0.5.12 `find_ab_params(1.0, 0.1)` = (1.57694346046584, 0.8950608779639974)
        // (scipy's curve_fit; both fits stop at relative tolerances ~1e-8 of the same minimum).
        let (a, b) = find_ab_params(1.0, 0.1).unwrap();
        assert!((a - 1.576_943_460_465_84).abs() < 1e-5, "a = {a}");
        assert!((b - 0.895_060_877_963_997_4).abs() < 1e-5, "b = {b}");
        assert!(find_ab_params(0.0, 0.1).is_err());
        assert!(find_ab_params(1.0, f64::NAN).is_err());
    }

    #[test]
    fn smooth_knn_dist_hits_log2_k() {
        let (z, _) = blobs(200, 6, 3, 1);
        let k = 15;
        let (_, dist) = knn(&z, 200, 6, k);
        let (sigma, rho) = smooth_knn_dist(&dist, k);
        for (i, row) in dist.chunks(k).enumerate() {
            assert_eq!(row[0], 0.0);
            assert!(row.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(rho[i], row[1]);
            let psum: f64 = row[1..]
                .iter()
                .map(|&d| (-((d - rho[i]).max(0.0) as f64) / sigma[i] as f64).exp())
                .sum();
            // f32 σ: relative precision ~1e-7 on a sum of ~log2(15) ≈ 3.9.
            assert!((psum - (k as f64).log2()).abs() < 1e-4, "row {i}: {psum}");
        }
    }

    #[test]
    fn fuzzy_union_is_symmetric() {
        let (z, _) = blobs(150, 5, 3, 2);
        let k = 10;
        let (ind, dist) = knn(&z, 150, 5, k);
        let e = fuzzy_union(&ind, &dist, k);
        let map: std::collections::HashMap<(u32, u32), f32> =
            e.iter().map(|&(i, j, w)| ((i, j), w)).collect();
        assert_eq!(map.len(), e.len(), "duplicate edges");
        for &(i, j, w) in &e {
            assert_ne!(i, j);
            assert!(w > 0.0 && w <= 1.0, "edge ({i}, {j}) weight {w}");
            assert_eq!(map.get(&(j, i)), Some(&w), "edge ({i}, {j}) has no twin");
        }
        // Every point keeps its nearest neighbour at membership 1 (d − ρ = 0), up to the f32
        // rounding of 1 + b − b.
        for i in 0..150u32 {
            let j = ind[i as usize * k + 1];
            assert!(
                (map[&(i, j)] - 1.0).abs() <= f32::EPSILON,
                "{}",
                map[&(i, j)]
            );
        }
    }

    #[test]
    fn blobs_stay_separated() {
        let (z, lab) = blobs(400, 10, 4, 3);
        let (y, sub) = umap(&z, 400, 10, &UmapOptions::default()).unwrap();
        assert_eq!(sub.len(), 400);
        // 5-NN majority vote in the embedding recovers the blob.
        let correct = (0..400)
            .filter(|&i| {
                let mut votes = [0usize; 4];
                for j in neighbours(&y, 2, i, 5) {
                    votes[lab[j]] += 1;
                }
                votes[lab[i]] >= 3
            })
            .count();
        let acc = correct as f64 / 400.0;
        assert!(acc >= 0.95, "kNN accuracy {acc}");
        // And the blobs are apart: every centroid gap exceeds 3× the largest within-blob RMS radius.
        let mut cen = [[0.0f64; 2]; 4];
        for (i, &l) in lab.iter().enumerate() {
            cen[l][0] += y[2 * i] / 100.0;
            cen[l][1] += y[2 * i + 1] / 100.0;
        }
        let mut rms = [0.0f64; 4];
        for (i, &l) in lab.iter().enumerate() {
            rms[l] += ((y[2 * i] - cen[l][0]).powi(2) + (y[2 * i + 1] - cen[l][1]).powi(2)) / 100.0;
        }
        let rmax = rms.iter().fold(0.0f64, |m, &v| m.max(v.sqrt()));
        for p in 0..4 {
            for q in p + 1..4 {
                let g = ((cen[p][0] - cen[q][0]).powi(2) + (cen[p][1] - cen[q][1]).powi(2)).sqrt();
                assert!(g > 3.0 * rmax, "blobs {p}, {q}: gap {g}, radius {rmax}");
            }
        }
    }

    #[test]
    fn same_seed_same_embedding() {
        let (z, _) = blobs(300, 8, 3, 4);
        let opts = UmapOptions {
            seed: 7,
            ..UmapOptions::default()
        };
        let (y1, _) = umap(&z, 300, 8, &opts).unwrap();
        let (y2, _) = umap(&z, 300, 8, &opts).unwrap();
        assert_eq!(y1, y2);
        let (y3, _) = umap(&z, 300, 8, &UmapOptions { seed: 8, ..opts }).unwrap();
        assert_ne!(y1, y3);
    }

    #[test]
    fn trustworthy_on_a_noisy_curve() {
        // A closed curve in 10-D that winds around 5 circles at once,
        // x(t) = (a_j cos jt, a_j sin jt)_{j=1..5} with a_j = 1 + j/10, plus N(0, 0.02²) noise:
        // 600 points. Its 2-D PCA view is the j = 5 circle, wound 5 times (far points overlap).
        let (n, d) = (600, 10);
        let mut rng = StdRng::seed_from_u64(5);
        let g = Normal::new(0.0f64, 1.0).unwrap();
        let mut x = vec![0.0f64; n * d];
        for i in 0..n {
            let t = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            for j in 1..=5 {
                let a = 1.0 + j as f64 / 10.0;
                let c = 2 * (j - 1);
                x[i * d + c] = a * (j as f64 * t).cos() + 0.02 * g.sample(&mut rng);
                x[i * d + c + 1] = a * (j as f64 * t).sin() + 0.02 * g.sample(&mut rng);
            }
        }
        let z: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let x32: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let (y, _) = umap(&z, n, d, &UmapOptions::default()).unwrap();
        let t_umap = trustworthiness(&x32, d, &y, 10);
        // The 2-D PCA view of the same points, for scale.
        let pca = Pca::fit(&z, n, d).unwrap();
        let pc: Vec<f64> = pca
            .transform(&z)
            .chunks(d)
            .flat_map(|r| [r[0], r[1]])
            .collect();
        let t_pca = trustworthiness(&x32, d, &pc, 10);
        eprintln!("trustworthiness k=10: UMAP {t_umap:.4}, PCA {t_pca:.4}");
        assert!(
            t_umap >= 0.95,
            "UMAP trustworthiness {t_umap} (PCA {t_pca})"
        );
        assert!(
            t_umap > t_pca + 0.1,
            "UMAP {t_umap} not well above PCA {t_pca}"
        );
    }

    #[test]
    fn subsample_places_the_rest_on_embedded_points() {
        let (z, _) = blobs(500, 6, 2, 6);
        let opts = UmapOptions {
            max_points: 120,
            ..UmapOptions::default()
        };
        let (y, sub) = umap(&z, 500, 6, &opts).unwrap();
        assert_eq!(y.len(), 1000);
        assert_eq!(sub.len(), 120);
        assert!(sub.windows(2).all(|w| w[0] < w[1]));
        let pts: std::collections::HashSet<(u64, u64)> = sub
            .iter()
            .map(|&i| (y[2 * i].to_bits(), y[2 * i + 1].to_bits()))
            .collect();
        for i in 0..500 {
            assert!(pts.contains(&(y[2 * i].to_bits(), y[2 * i + 1].to_bits())));
        }
    }

    #[test]
    fn umap_with_graph_returns_the_fuzzy_union() {
        let (z, _) = blobs(300, 6, 3, 8);
        let opts = UmapOptions {
            n_neighbors: 12,
            ..UmapOptions::default()
        };
        let fit = umap_with_graph(&z, 300, 6, &opts).unwrap();
        let (y, sub) = umap(&z, 300, 6, &opts).unwrap();
        assert_eq!((&fit.embedding, &fit.subsample), (&y, &sub));
        let (ind, dist) = knn(&z, 300, 6, 12);
        assert_eq!(fit.graph, fuzzy_union(&ind, &dist, 12));
        assert_eq!(fit.nearest, (0..300).collect::<Vec<u32>>());
        // Subsampled: graph on the subsample, every point placed at its `nearest`.
        let fit = umap_with_graph(
            &z,
            300,
            6,
            &UmapOptions {
                max_points: 100,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(fit.subsample.len(), 100);
        assert!(fit.graph.iter().all(|&(i, j, _)| i < 100 && j < 100));
        for (i, &k) in fit.nearest.iter().enumerate() {
            let s = fit.subsample[k as usize];
            assert_eq!(fit.embedding[2 * i], fit.embedding[2 * s]);
            assert_eq!(fit.embedding[2 * i + 1], fit.embedding[2 * s + 1]);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let o = UmapOptions::default();
        assert!(umap(&[1.0, 2.0, 3.0], 1, 3, &o).is_err());
        assert!(umap(&[], 0, 3, &o).is_err());
        assert!(umap(&[1.0, 2.0, 3.0], 2, 3, &o).is_err());
        let (mut z, _) = blobs(50, 4, 2, 7);
        z[17] = f32::NAN;
        assert!(umap(&z, 50, 4, &o).is_err());
        let (z, _) = blobs(50, 4, 2, 7);
        for bad in [
            UmapOptions {
                n_neighbors: 1,
                ..o.clone()
            },
            UmapOptions {
                n_epochs: Some(0),
                ..o.clone()
            },
            UmapOptions {
                negative_sample_rate: 0,
                ..o.clone()
            },
            UmapOptions {
                learning_rate: f64::NAN,
                ..o.clone()
            },
            UmapOptions {
                min_dist: -1.0,
                ..o.clone()
            },
            UmapOptions {
                max_points: 1,
                ..o.clone()
            },
        ] {
            assert!(umap(&z, 50, 4, &bad).is_err(), "{bad:?}");
        }
        // Degenerate but valid: two points, and all points identical.
        let (y, _) = umap(&[0.0, 0.0, 1.0, 1.0], 2, 2, &o).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
        let (y, _) = umap(&[0.5; 40], 20, 2, &o).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
    }
}
