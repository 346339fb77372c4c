//! Landscape analysis in volume space, as the reference's `analyze_landscape`: sketch the latent
//! distribution with K k-means centres (each replaced by its nearest particle), decode one volume
//! per centre, mask them all with one mask, then run PCA and agglomerative clustering on the masked
//! volumes themselves rather than on the latents.
//!
//! Written under the output folder (`K` sketch volumes, `M` clusters, `S` = `--vol-start-index`,
//! default 1; volume files are numbered from `S`):
//!
//! | file | content |
//! |---|---|
//! | `kmeans{K}/labels.pkl` | int64 sketch volume of each particle, numbered from S `(N)` |
//! | `kmeans{K}/centers.txt`, `centers_ind.txt` | the on-data centres `(K, zdim)` and their particle indices |
//! | `kmeans{K}/vol_{S:03}.mrc` … | the decoded sketch volumes |
//! | `kmeans{K}/vol_mean.mrc` | the mean of the K volumes |
//! | `mask.mrc`, `mask_slices.png` | the mask (union of every volume's mask, or `--mask`) and its central slices |
//! | `vol_pca_{K}.pkl` | float32 volume-PCA coordinates of the sketch volumes `(K, pc_dim)` |
//! | `vol_pca_explained_variance_ratio.txt` | explained-variance ratio of each PC (the reference logs it) |
//! | `vol_pca_{K}_{i}_{i+1}.png` | scatter of volume PC i against PC i+1, i < plot_dim |
//! | `vol_pcs/pc{i}/{S:03}.mrc` … | 10 volumes along PC i: mean + component × 10 values from the min to the max coordinate |
//! | `sketch_clustering_{linkage}_{M}/state_labels.pkl` | int64 cluster (1..=M) of each sketch volume `(K)` |
//! | `…/particle_state_labels.pkl` | int64 cluster (1..=M) of each particle through its sketch volume, 0 when that volume was left out by `--vol-ind` `(N)` (not written by the reference) |
//! | `…/state_{m:03}_mean.mrc`, `_std.mrc` | mean and std of the cluster's volumes, weighted by their particle counts |
//! | `…/state_{m:03}/vol_{i:03}.mrc` | links to the cluster's sketch volumes |
//! | `…/state_{m:03}_particle_ind.pkl` | int64 indices of the cluster's particles (in the original stack when the run used `--ind`) |
//! | `…/state_volume_counts.png`, `state_particle_counts.png` | cluster sizes |
//! | `…/vol_pca_{K}_{i}_{i+1}.png`, `vol_pca_{K}_annotated_{i}_{i+1}.png` | volume-PCA scatters coloured by cluster |
//! | `…/{emb}.png`, `{emb}_annotated.png` | the latent embedding (`umap`, `tsne`, or the latent PCA `z_pca`) with the sketch volumes coloured by cluster |
//!
//! Memory: only the masked voxels of the K volumes are held (`K × voxels` f32), as the reference
//! does; the volumes are written as they are decoded and read back for the mask, the mean and the
//! cluster means. PCA works on the `K × K` Gram matrix of the centred masked volumes (accumulated
//! in f64 over blocks of voxels with the CPU GEMM): its top eigenvectors `u_k` (eigenvalues `λ_k`)
//! give the coordinates `u_k·√λ_k` and the components `Xcᵀu_k / ‖Xcᵀu_k‖`, exactly (the reference's
//! sklearn uses a randomized SVD at these sizes). The same Gram matrix gives the pairwise
//! Euclidean distances `‖x_i − x_j‖² = G_ii + G_jj − 2G_ij` for the clustering.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::analysis::kmeans::{kmeans, nearest_points};
use crate::analysis::latent::{savetxt, savetxt_int, widen};
use crate::analysis::mask::{cosine_dilation_mask, default_threshold};
use crate::analysis::pca::{check_z, linspace, symmetric_eigen};
use crate::analysis::plot::{
    auto_range, chart_builder, draw_legend, draw_mesh, render, volume_slices, PlotStyle, FONT,
    TAB10,
};
use crate::backend::cpu::gemm::gemm;
use crate::error::{Error, IoContext, Result};
use crate::io::array::NdArray;
use crate::io::mrc::{write_mrc, MrcFile};
use crate::io::pkl::{read_pkl, write_pkl, PyValue};

/// Linkage criterion of the agglomerative clustering (sklearn's `AgglomerativeClustering`
/// `linkage`, Euclidean distances).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// mean distance between the members of two clusters
    Average,
    /// largest distance between the members of two clusters
    Complete,
    /// smallest distance between the members of two clusters
    Single,
    /// increase of the within-cluster sum of squares
    Ward,
}

impl Linkage {
    /// The name used on the command line and in `sketch_clustering_{name}_{M}`.
    pub fn name(self) -> &'static str {
        match self {
            Linkage::Average => "average",
            Linkage::Complete => "complete",
            Linkage::Single => "single",
            Linkage::Ward => "ward",
        }
    }

    fn method(self) -> kodama::Method {
        match self {
            Linkage::Average => kodama::Method::Average,
            Linkage::Complete => kodama::Method::Complete,
            Linkage::Single => kodama::Method::Single,
            Linkage::Ward => kodama::Method::Ward,
        }
    }
}

impl std::str::FromStr for Linkage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "average" => Ok(Linkage::Average),
            "complete" => Ok(Linkage::Complete),
            "single" => Ok(Linkage::Single),
            "ward" => Ok(Linkage::Ward),
            _ => Err(Error::invalid(format!(
                "unknown linkage `{s}` (average, complete, single or ward)"
            ))),
        }
    }
}

/// Checks a condensed distance matrix of `n` observations (`n(n−1)/2` finite values ≥ 0).
fn check_condensed(condensed: &[f64], n: usize) -> Result<()> {
    let want = n * n.saturating_sub(1) / 2;
    if condensed.len() != want {
        return Err(Error::Shape {
            what: "condensed distance matrix".into(),
            expected: format!("n(n−1)/2 = {want} values for n = {n}"),
            got: condensed.len().to_string(),
        });
    }
    if let Some(v) = condensed.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(Error::invalid(format!(
            "distance matrix holds {v}: distances must be finite and ≥ 0"
        )));
    }
    Ok(())
}

/// The merges `(a, b)`, `a < b`, of an agglomerative clustering of `n` observations with pairwise
/// Euclidean distances `condensed` (upper triangle, row-major, as scipy's `pdist`), as the
/// children of scipy's `linkage`: merge `i` creates cluster `n + i` `(n − 1)`.
pub fn linkage_tree(condensed: &[f64], n: usize, linkage: Linkage) -> Result<Vec<(usize, usize)>> {
    check_condensed(condensed, n)?;
    if n < 2 {
        return Ok(vec![]);
    }
    let mut c = condensed.to_vec();
    let dend = kodama::linkage(&mut c, n, linkage.method());
    Ok(dend
        .steps()
        .iter()
        .map(|s| (s.cluster1.min(s.cluster2), s.cluster1.max(s.cluster2)))
        .collect())
}

/// The leaves under `node` of the tree `children` over `n` leaves (sklearn's `_hc_get_descendent`).
fn descendants(node: usize, children: &[(usize, usize)], n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(v) = stack.pop() {
        if v < n {
            out.push(v);
        } else {
            let (a, b) = children[v - n];
            stack.push(b);
            stack.push(a);
        }
    }
    out
}

/// Python's `heapq._siftdown` on a min-heap.
fn sift_down(heap: &mut [i64], start: usize, mut pos: usize) {
    let new = heap[pos];
    while pos > start {
        let parent = (pos - 1) >> 1;
        if new < heap[parent] {
            heap[pos] = heap[parent];
            pos = parent;
            continue;
        }
        break;
    }
    heap[pos] = new;
}

/// Python's `heapq._siftup` on a min-heap.
fn sift_up(heap: &mut [i64], mut pos: usize) {
    let (end, start, new) = (heap.len(), pos, heap[pos]);
    let mut child = 2 * pos + 1;
    while child < end {
        let right = child + 1;
        if right < end && heap[child] >= heap[right] {
            child = right;
        }
        heap[pos] = heap[child];
        pos = child;
        child = 2 * pos + 1;
    }
    heap[pos] = new;
    sift_down(heap, start, pos);
}

/// Cuts the tree `children` over `n` leaves into `m` clusters as sklearn's `_hc_cut`: split the
/// most recent merge `m − 1` times; the clusters are numbered in the order of sklearn's heap, so
/// the labels `(n)` in `0..m` are the reference's.
///
/// # Errors
/// When `m` is 0 or larger than `n`, or `children` is not a tree of `n − 1` merges.
pub fn cut_tree(children: &[(usize, usize)], n: usize, m: usize) -> Result<Vec<usize>> {
    if m == 0 || m > n {
        return Err(Error::invalid(format!(
            "cannot cut {n} observations into {m} clusters (need 1 ≤ M ≤ {n})"
        )));
    }
    if children.len() != n - 1 || children.iter().any(|&(a, b)| a >= b || b >= 2 * n - 1) {
        return Err(Error::invalid(format!(
            "a tree over {n} leaves needs {} merges of existing clusters, got {}",
            n - 1,
            children.len()
        )));
    }
    if n == 1 {
        return Ok(vec![0]);
    }
    // Negated node ids in a min-heap: the top is the most recent merge.
    let root = children[n - 2].1 as i64 + 1;
    let mut nodes: Vec<i64> = vec![-root];
    for _ in 0..m - 1 {
        let top = (-nodes[0]) as usize;
        let (a, b) = children[top - n];
        nodes.push(-(a as i64));
        let last = nodes.len() - 1;
        sift_down(&mut nodes, 0, last);
        // heappushpop(nodes, -b): -b replaces the top when the top is smaller
        let item = -(b as i64);
        if nodes[0] < item {
            nodes[0] = item;
            sift_up(&mut nodes, 0);
        }
    }
    let mut labels = vec![0usize; n];
    for (i, &node) in nodes.iter().enumerate() {
        for leaf in descendants((-node) as usize, children, n) {
            labels[leaf] = i;
        }
    }
    Ok(labels)
}

/// Agglomerative clustering of `n` observations into `m` clusters from their condensed
/// Euclidean distances: sklearn's `AgglomerativeClustering(n_clusters=m, linkage=…)` labels
/// `(n)` in `0..m` ([`linkage_tree`] then [`cut_tree`]).
pub fn agglomerative(
    condensed: &[f64],
    n: usize,
    m: usize,
    linkage: Linkage,
) -> Result<Vec<usize>> {
    let children = linkage_tree(condensed, n, linkage)?;
    cut_tree(&children, n, m)
}

/// The leaf order of scipy's `dendrogram(Z)` for the tree `children` over `n` leaves: depth
/// first from the root, the smaller child first.
pub fn dendrogram_leaves(children: &[(usize, usize)], n: usize) -> Vec<usize> {
    if n == 0 {
        return vec![];
    }
    if children.len() + 1 != n {
        return (0..n).collect();
    }
    descendants(2 * n - 2, children, n)
}

/// Condensed Euclidean distances between the `n` rows of `x` `(n, dim)`.
fn pdist(x: &[f64], n: usize, dim: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let r = &x[i * dim..(i + 1) * dim];
            let s = &x[j * dim..(j + 1) * dim];
            out.push(
                r.iter()
                    .zip(s)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
    }
    out
}

/// The sketch of a latent distribution: K on-data k-means centres.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    /// centre (0-based) of each particle `(N)`
    pub labels: Vec<usize>,
    /// particle index of each centre `(K)`
    pub centers_ind: Vec<usize>,
}

/// K-means of `z` `(n, zdim)` into `k` clusters (10 Lloyd iterations, as the reference's
/// `cluster_kmeans`), each centre replaced by its nearest particle, the clusters renumbered in
/// the leaf order of an average-linkage dendrogram of those centres (the reference's
/// `reorder=True`, seaborn's `clustermap` order), so that neighbouring numbers are similar.
pub fn sketch(z: &[f32], n: usize, zdim: usize, k: usize, seed: u64) -> Result<Sketch> {
    let km = kmeans(z, n, zdim, k, 10, seed)?;
    let ind = nearest_points(z, zdim, &km.centers);
    let centers: Vec<f64> = ind
        .iter()
        .flat_map(|&i| z[i * zdim..(i + 1) * zdim].iter().map(|&v| v as f64))
        .collect();
    let children = linkage_tree(&pdist(&centers, k, zdim), k, Linkage::Average)?;
    let order = dendrogram_leaves(&children, k);
    let mut new_label = vec![0usize; k];
    for (pos, &old) in order.iter().enumerate() {
        new_label[old] = pos;
    }
    Ok(Sketch {
        labels: km.labels.iter().map(|&l| new_label[l]).collect(),
        centers_ind: order.iter().map(|&old| ind[old]).collect(),
    })
}

/// Top `k` eigenpairs of the symmetric positive semi-definite `(n, n)` matrix `g`: eigenvalues
/// by decreasing value `(k)` and unit eigenvectors in rows `(k, n)`.
///
/// Up to n = 256 the full cyclic-Jacobi decomposition ([`symmetric_eigen`]); above, subspace
/// iteration on `q = min(n, 2k + 16)` vectors with a Rayleigh–Ritz step per iteration (a
/// `q × q` Jacobi solve), started from a fixed-seed Gaussian basis, until every one of the `k`
/// Ritz pairs has a residual `‖g·v − θ·v‖ ≤ 1e-10·θ₁` (or after 3000 iterations, whose
/// Ritz pairs are returned as they are). Each iteration costs `2qn² + 4q²n` flops.
///
/// # Errors
/// When `g` is not `n × n` or `k` is not in `1..=n`.
pub fn top_eigen(g: &[f64], n: usize, k: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if g.len() != n * n || k == 0 || k > n {
        return Err(Error::Shape {
            what: "top_eigen".into(),
            expected: format!("an n×n matrix and 1 ≤ k ≤ n (n = {n}, k = {k})"),
            got: format!("{} values", g.len()),
        });
    }
    if n <= 256 {
        let (vals, vecs) = symmetric_eigen(g, n);
        return Ok((vals[..k].to_vec(), vecs[..k * n].to_vec()));
    }
    const MAX_ITER: usize = 3000;
    let q = (2 * k + 16).min(n);
    let mut rng = StdRng::seed_from_u64(0);
    let mut basis: Vec<f64> = (0..q * n)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    orthonormalize(&mut basis, q, n, &mut rng);
    let (mut y, mut h) = (vec![0.0; q * n], vec![0.0; q * q]);
    let (mut v, mut gv) = (vec![0.0; q * n], vec![0.0; q * n]);
    for it in 0..MAX_ITER {
        // Y = B·G: row i is G·b_i (G symmetric)
        gemm(q, n, n, 1.0, &basis, n, false, g, n, false, 0.0, &mut y);
        // H = B·Yᵀ = B·G·Bᵀ, symmetrized against round-off
        gemm(q, n, q, 1.0, &basis, n, false, &y, n, true, 0.0, &mut h);
        for i in 0..q {
            for j in i + 1..q {
                let s = 0.5 * (h[i * q + j] + h[j * q + i]);
                h[i * q + j] = s;
                h[j * q + i] = s;
            }
        }
        let (theta, w) = symmetric_eigen(&h, q);
        // Ritz vectors V = W·B and G·V = W·Y
        gemm(q, q, n, 1.0, &w, q, false, &basis, n, false, 0.0, &mut v);
        gemm(q, q, n, 1.0, &w, q, false, &y, n, false, 0.0, &mut gv);
        let tol = 1e-10 * theta[0].abs().max(f64::MIN_POSITIVE);
        let converged = (0..k).all(|i| {
            let r: f64 = gv[i * n..(i + 1) * n]
                .iter()
                .zip(&v[i * n..(i + 1) * n])
                .map(|(a, b)| (a - theta[i] * b).powi(2))
                .sum::<f64>()
                .sqrt();
            r <= tol
        });
        if converged || it + 1 == MAX_ITER {
            return Ok((theta[..k].to_vec(), v[..k * n].to_vec()));
        }
        basis.copy_from_slice(&gv);
        orthonormalize(&mut basis, q, n, &mut rng);
    }
    unreachable!("the loop returns at its last iteration")
}

/// Orthonormalizes the `q` rows of `b` `(q, n)` in place (modified Gram–Schmidt, two passes); a
/// row that vanishes against the earlier ones is replaced by a random one.
fn orthonormalize(b: &mut [f64], q: usize, n: usize, rng: &mut StdRng) {
    for i in 0..q {
        for _attempt in 0..4 {
            let (done, rest) = b.split_at_mut(i * n);
            let row = &mut rest[..n];
            let before = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            for _pass in 0..2 {
                for j in 0..i {
                    let other = &done[j * n..(j + 1) * n];
                    let d: f64 = row.iter().zip(other).map(|(a, b)| a * b).sum();
                    row.iter_mut().zip(other).for_each(|(a, b)| *a -= d * b);
                }
            }
            let after = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            if after > 1e-10 * before && after > 0.0 {
                row.iter_mut().for_each(|x| *x /= after);
                break;
            }
            row.iter_mut()
                .for_each(|x| *x = StandardNormal.sample(&mut *rng));
        }
    }
}

/// Voxels per block in the Gram and component products: `n` rows of a block are ≤ 64 MB of f64.
fn block_width(n: usize, nvox: usize) -> usize {
    ((8 << 20) / n.max(1)).max(256).min(nvox.max(1))
}

/// Rows `r0..` of `data` `(n, nvox)` restricted to voxels `j0..j0 + w`, centred by `mean`, as
/// f64 `(n, w)`.
fn centred_block(
    data: &[f32],
    n: usize,
    nvox: usize,
    mean: &[f64],
    j0: usize,
    w: usize,
) -> Vec<f64> {
    let mut a = vec![0.0f64; n * w];
    a.par_chunks_mut(w).enumerate().for_each(|(i, row)| {
        let src = &data[i * nvox + j0..i * nvox + j0 + w];
        for ((o, &x), m) in row.iter_mut().zip(src).zip(&mean[j0..j0 + w]) {
            *o = x as f64 - m;
        }
    });
    a
}

/// The mean row `(nvox)` of `data` `(n, nvox)` and the Gram matrix of the centred rows
/// `G = (X − μ)(X − μ)ᵀ` `(n, n)`, in f64 (blocks of voxels through the CPU GEMM, added in
/// order: the same bits on every run).
///
/// # Errors
/// When `data` is not `n × nvox` with n, nvox ≥ 1, or holds a non-finite value.
pub fn centred_gram(data: &[f32], n: usize, nvox: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    check_z("masked volumes", data, n, nvox)?;
    let mean: Vec<f64> = (0..nvox)
        .into_par_iter()
        .map(|j| (0..n).map(|i| data[i * nvox + j] as f64).sum::<f64>() / n as f64)
        .collect();
    let w = block_width(n, nvox);
    let mut g = vec![0.0f64; n * n];
    let mut j0 = 0;
    while j0 < nvox {
        let wj = w.min(nvox - j0);
        let a = centred_block(data, n, nvox, &mean, j0, wj);
        // G += A·Aᵀ
        gemm(n, wj, n, 1.0, &a, wj, false, &a, wj, true, 1.0, &mut g);
        j0 += wj;
    }
    for i in 0..n {
        for j in i + 1..n {
            let s = 0.5 * (g[i * n + j] + g[j * n + i]);
            g[i * n + j] = s;
            g[j * n + i] = s;
        }
    }
    Ok((mean, g))
}

/// Condensed Euclidean distances `(n(n−1)/2)` between the rows whose centred Gram matrix is `g`
/// `(n, n)`: `√max(0, G_ii + G_jj − 2G_ij)`.
pub fn gram_distances(g: &[f64], n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            out.push(
                (g[i * n + i] + g[j * n + j] - 2.0 * g[i * n + j])
                    .max(0.0)
                    .sqrt(),
            );
        }
    }
    out
}

/// A PCA of `n` masked volumes (rows of `nvox` voxels), as sklearn's `PCA(dim)`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePca {
    /// number of components
    pub dim: usize,
    /// mean volume over the rows `(nvox)`
    pub mean: Vec<f64>,
    /// unit principal axes, PC k+1 in row k, the largest-magnitude entry positive (sklearn's
    /// `svd_flip`) `(dim, nvox)`
    pub components: Vec<f64>,
    /// variance along each PC (denominator n − 1) `(dim)`
    pub explained_variance: Vec<f64>,
    /// `explained_variance` over the total variance `(dim)`
    pub explained_variance_ratio: Vec<f64>,
    /// coordinates of the rows `(n, dim)`
    pub pc: Vec<f64>,
}

/// PCA of the rows of `data` `(n, nvox)` onto `dim` components through the centred Gram matrix
/// (see the module doc); returns it with that Gram matrix `(n, n)`. A component of zero variance
/// (`dim` ≥ the rank) is the zero vector with zero coordinates.
///
/// # Errors
/// When `dim` is not in `1..=min(n, nvox)` or `data` is not a finite `(n, nvox)` array.
pub fn volume_pca(
    data: &[f32],
    n: usize,
    nvox: usize,
    dim: usize,
) -> Result<(VolumePca, Vec<f64>)> {
    if dim == 0 || dim > n.min(nvox) {
        return Err(Error::invalid(format!(
            "PCA onto {dim} components needs 1 ≤ pc-dim ≤ min(volumes, voxels) = min({n}, {nvox})"
        )));
    }
    let (mean, g) = centred_gram(data, n, nvox)?;
    let total: f64 = (0..n).map(|i| g[i * n + i]).sum();
    let (vals, u) = top_eigen(&g, n, dim)?;
    // raw components Uᵀ·Xc (dim, nvox), block by block of voxels
    let mut comp = vec![0.0f64; dim * nvox];
    let w = block_width(n, nvox);
    let mut j0 = 0;
    let mut out = vec![0.0f64; dim * w];
    while j0 < nvox {
        let wj = w.min(nvox - j0);
        let a = centred_block(data, n, nvox, &mean, j0, wj);
        gemm(
            dim,
            n,
            wj,
            1.0,
            &u,
            n,
            false,
            &a,
            wj,
            false,
            0.0,
            &mut out[..dim * wj],
        );
        for k in 0..dim {
            comp[k * nvox + j0..k * nvox + j0 + wj].copy_from_slice(&out[k * wj..(k + 1) * wj]);
        }
        j0 += wj;
    }
    let mut pc = vec![0.0f64; n * dim];
    let lam_max = vals[0].max(0.0);
    for k in 0..dim {
        let lam = vals[k].max(0.0);
        let row = &mut comp[k * nvox..(k + 1) * nvox];
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        if lam <= 1e-12 * lam_max || norm == 0.0 {
            row.iter_mut().for_each(|x| *x = 0.0);
            continue;
        }
        row.iter_mut().for_each(|x| *x /= norm);
        let big = row
            .iter()
            .copied()
            .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        if sign < 0.0 {
            row.iter_mut().for_each(|x| *x = -*x);
        }
        for i in 0..n {
            pc[i * dim + k] = sign * u[k * n + i] * lam.sqrt();
        }
    }
    let denom = (n.max(2) - 1) as f64;
    let explained_variance: Vec<f64> = vals.iter().map(|&v| v.max(0.0) / denom).collect();
    let explained_variance_ratio = vals
        .iter()
        .map(|&v| if total > 0.0 { v.max(0.0) / total } else { 0.0 })
        .collect();
    Ok((
        VolumePca {
            dim,
            mean,
            components: comp,
            explained_variance,
            explained_variance_ratio,
            pc,
        },
        g,
    ))
}

/// The box size and pixel size (Å) of the cubic volume at `path`.
pub fn cube_size(path: &Path) -> Result<(usize, f32)> {
    let f = MrcFile::open(path)?;
    let h = &f.header;
    if h.nx != h.ny || h.nx != h.nz {
        return Err(Error::format(
            path,
            format!("not a cubic volume: {}×{}×{} voxels", h.nx, h.ny, h.nz),
        ));
    }
    Ok((h.nx, h.apix()))
}

/// The `(d, d, d)` volume at `path`; another size is an error naming the file.
fn read_cube(path: &Path, d: usize) -> Result<Vec<f32>> {
    let f = MrcFile::open(path)?;
    let h = &f.header;
    if (h.nx, h.ny, h.nz) != (d, d, d) {
        return Err(Error::format(
            path,
            format!(
                "is {}×{}×{} voxels but the sketch volumes are {d}×{d}×{d}",
                h.nx, h.ny, h.nz
            ),
        ));
    }
    f.read_all()
}

/// Reads the volumes at `paths` (each `(d, d, d)`) in waves of one per thread: `f` runs on each
/// in parallel, then `g(index, volume, f's result)` in file order (deterministic).
fn for_each_volume<T: Send>(
    paths: &[PathBuf],
    d: usize,
    what: &str,
    f: impl Fn(&[f32]) -> Result<T> + Sync,
    mut g: impl FnMut(usize, Vec<f32>, T) -> Result<()>,
) -> Result<()> {
    let wave = rayon::current_num_threads().max(1);
    let pb = crate::cli::progress::bar(paths.len() as u64, what);
    for (w, chunk) in paths.chunks(wave).enumerate() {
        let res: Vec<Result<(Vec<f32>, T)>> = chunk
            .par_iter()
            .map(|p| {
                let v = read_cube(p, d)?;
                let t = f(&v)?;
                Ok((v, t))
            })
            .collect();
        for (j, r) in res.into_iter().enumerate() {
            let (v, t) = r?;
            g(w * wave + j, v, t)?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// How the mask is made.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskChoice {
    /// The union of every sketch volume's `cosine_dilation_mask`.
    Generate {
        /// density threshold (default: the mean over the volumes of half their 99.99th percentile)
        thresh: Option<f32>,
        /// dilation (Å)
        dilate: f64,
        /// cosine edge width (Å)
        cosine_edge: f64,
    },
    /// A mask file of the volumes' box size.
    File(PathBuf),
}

/// A 2-D embedding of the particles to draw the clusters on.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// file stem of the plots (`umap`, `tsne`, `z_pca`)
    pub name: String,
    /// axis labels
    pub x_label: String,
    /// axis labels
    pub y_label: String,
    /// coordinates `(N, 2)`
    pub xy: Vec<f64>,
}

/// Where the sketch volumes come from.
pub enum VolumeSource<'a> {
    /// Sketch the latents and decode each centre into a `(d, d, d)` volume with `decode(z)`.
    Decode {
        /// box size of the decoded volumes
        d: usize,
        /// the volume `(d, d, d)` at one latent `(zdim)`
        decode: &'a mut dyn FnMut(&[f32]) -> Result<Vec<f32>>,
    },
    /// Reuse the sketch and volumes of an earlier run in the output folder (`--skip-vol`).
    Existing,
}

/// Settings of [`run_landscape`].
#[derive(Debug, Clone, PartialEq)]
pub struct LandscapeOptions {
    /// output folder
    pub outdir: PathBuf,
    /// sketch size K (`-N`)
    pub k: usize,
    /// number of the first volume file (`--vol-start-index`, default 1)
    pub vol_start_index: usize,
    /// pixel size (Å) of the written volumes; default: the existing volumes' (`Existing`), else 1
    pub apix: Option<f32>,
    /// the mask
    pub mask: MaskChoice,
    /// PCA components (`--pc-dim`)
    pub pc_dim: usize,
    /// components with traversals and scatter plots (`--plot-dim`)
    pub plot_dim: usize,
    /// clusters (`-M`)
    pub m: usize,
    /// clustering linkage (`--linkage`)
    pub linkage: Linkage,
    /// sketch volumes (0-based) kept for PCA and clustering (`--vol-ind`); all when `None`
    pub vol_ind: Option<Vec<usize>>,
    /// original particle index of each of the N particles (the run's `--ind`)
    pub particle_ind: Option<Vec<usize>>,
    /// k-means seed
    pub seed: u64,
}

/// What [`run_landscape`] computed.
#[derive(Debug, Clone, PartialEq)]
pub struct LandscapeReport {
    /// the sketch
    pub sketch: Sketch,
    /// box size of the volumes
    pub d: usize,
    /// pixel size (Å) of the volumes
    pub apix: f32,
    /// voxels in the mask (> 0)
    pub mask_voxels: usize,
    /// sketch volumes (0-based) in the PCA and clustering
    pub selected: Vec<usize>,
    /// the volume PCA of the selected volumes
    pub pca: VolumePca,
    /// cluster (0-based) of each selected volume
    pub state_labels: Vec<usize>,
    /// the clustering folder
    pub clustering_dir: PathBuf,
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).at(p)
}

fn i64_pkl(path: &Path, v: impl Iterator<Item = i64>) -> Result<()> {
    let v: Vec<i64> = v.collect();
    write_pkl(path, &PyValue::Array(NdArray::from_i64(vec![v.len()], v)?))
}

/// Reads the sketch of an earlier run from `kdir` (`labels.pkl`, `centers_ind.txt`).
fn read_sketch(kdir: &Path, n: usize, k: usize, start: usize) -> Result<Sketch> {
    let lp = kdir.join("labels.pkl");
    let arr = match read_pkl(&lp)? {
        PyValue::Array(a) => a,
        _ => {
            return Err(Error::format(
                &lp,
                "expected an integer numpy array of labels",
            ))
        }
    };
    let raw = arr
        .to_i64()
        .map_err(|e| Error::format(&lp, format!("labels: {e}")))?;
    if raw.len() != n {
        return Err(Error::format(
            &lp,
            format!("{} labels but the latents have {n} particles", raw.len()),
        ));
    }
    let labels = raw
        .iter()
        .map(|&l| {
            let l0 = l - start as i64;
            if (0..k as i64).contains(&l0) {
                Ok(l0 as usize)
            } else {
                Err(Error::format(
                    &lp,
                    format!("label {l} is outside {start}..{} (K = {k})", start + k),
                ))
            }
        })
        .collect::<Result<Vec<usize>>>()?;
    let cp = kdir.join("centers_ind.txt");
    let text = std::fs::read_to_string(&cp).at(&cp)?;
    let centers_ind = text
        .split_whitespace()
        .map(|t| match t.parse::<f64>() {
            Ok(v) if v >= 0.0 && (v as usize) < n && v.fract() == 0.0 => Ok(v as usize),
            _ => Err(Error::format(
                &cp,
                format!("`{t}` is not a particle index below {n}"),
            )),
        })
        .collect::<Result<Vec<usize>>>()?;
    if centers_ind.len() != k {
        return Err(Error::format(
            &cp,
            format!("{} centres but the sketch size is {k}", centers_ind.len()),
        ));
    }
    Ok(Sketch {
        labels,
        centers_ind,
    })
}

/// Colour of cluster `s` of `m`: tab10 up to 10 clusters, tab20 up to 20, else evenly spaced hues
/// (the reference's `choose_cmap`).
fn state_color(s: usize, m: usize) -> RGBColor {
    const TAB20: [(u8, u8, u8); 20] = [
        (31, 119, 180),
        (174, 199, 232),
        (255, 127, 14),
        (255, 187, 120),
        (44, 160, 44),
        (152, 223, 138),
        (214, 39, 40),
        (255, 152, 150),
        (148, 103, 189),
        (197, 176, 213),
        (140, 86, 75),
        (196, 156, 148),
        (227, 119, 194),
        (247, 182, 210),
        (127, 127, 127),
        (199, 199, 199),
        (188, 189, 34),
        (219, 219, 141),
        (23, 190, 207),
        (158, 218, 229),
    ];
    if m <= 10 {
        TAB10[s % 10]
    } else if m <= 20 {
        let (r, g, b) = TAB20[s % 20];
        RGBColor(r, g, b)
    } else {
        let (r, g, b) = HSLColor(s as f64 / m as f64, 0.65, 0.5).to_rgba().rgb();
        RGBColor(r, g, b)
    }
}

/// Points `(x[i], y[i])` coloured by cluster `labels[i]` (of `m`, legend `1..=m`), over grey
/// `background` points, numbered with `annotate[i]` when given, to a PNG at `path`.
#[allow(clippy::too_many_arguments)]
fn cluster_scatter(
    path: &Path,
    background: Option<(&[f64], &[f64])>,
    x: &[f64],
    y: &[f64],
    labels: &[usize],
    m: usize,
    annotate: Option<&[usize]>,
    style: &PlotStyle,
) -> Result<()> {
    let (bx, by) = background.unwrap_or((&[], &[]));
    let xr = auto_range(x.iter().chain(bx));
    let yr = auto_range(y.iter().chain(by));
    render(path, style.size, |root| {
        root.fill(&WHITE)?;
        let mut chart = chart_builder(root, style).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        draw_mesh(&mut chart, style)?;
        let grey = RGBColor(150, 150, 150).mix(0.35);
        let r = if bx.len() > 10_000 { 1 } else { 2 };
        chart.draw_series(
            bx.iter()
                .zip(by)
                .map(|(&a, &b)| Circle::new((a, b), r, grey.filled())),
        )?;
        for s in 0..m {
            let c = state_color(s, m);
            chart
                .draw_series(
                    x.iter()
                        .zip(y)
                        .zip(labels)
                        .filter(|(_, &l)| l == s)
                        .map(move |((&a, &b), _)| Circle::new((a, b), 5, c.filled())),
                )?
                .label(format!("{}", s + 1))
                .legend(move |(px, py)| Circle::new((px + 8, py), 5, c.filled()));
        }
        if let Some(names) = annotate {
            chart.draw_series(x.iter().zip(y).zip(names).map(|((&a, &b), &k)| {
                EmptyElement::at((a, b))
                    + Text::new(
                        format!("{k}"),
                        (6, -16),
                        (FONT, 14).into_font().color(&BLACK),
                    )
            }))?;
        }
        draw_legend(&mut chart)?;
        Ok(())
    })
}

/// Bars of `counts` (one per cluster, labelled `#1`…, coloured as the clusters, count above each)
/// to a PNG at `path`.
fn bar_plot(path: &Path, counts: &[usize], y_label: &str) -> Result<()> {
    let m = counts.len();
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.12;
    render(path, (800, 600), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5..m as f64 - 0.5, 0.0..top)?;
        let fmt = |v: &f64| {
            let r = v.round();
            if (v - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < m {
                format!("#{}", r as usize + 1)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc("State")
            .y_desc(y_label)
            .x_labels(m.min(40) + 1)
            .x_label_formatter(&fmt)
            .disable_x_mesh()
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(s, &c)| {
            let x = s as f64;
            Rectangle::new(
                [(x - 0.4, 0.0), (x + 0.4, c as f64)],
                state_color(s, m).filled(),
            )
        }))?;
        chart.draw_series(counts.iter().enumerate().map(|(s, &c)| {
            Text::new(
                format!("{c}"),
                (s as f64 - 0.1, c as f64 + top * 0.04),
                (FONT, 14).into_font().color(&BLACK),
            )
        }))?;
        Ok(())
    })
}

/// Checks the options against the data before anything is written.
fn check_options(opts: &LandscapeOptions, n: usize) -> Result<()> {
    let k = opts.k;
    if k < 2 || k > n {
        return Err(Error::invalid(format!(
            "the sketch size must be in 2..={n} (the number of particles), got {k}"
        )));
    }
    let kept = opts.vol_ind.as_ref().map_or(k, Vec::len);
    if let Some(ind) = &opts.vol_ind {
        if let Some(&i) = ind.iter().find(|&&i| i >= k) {
            return Err(Error::invalid(format!(
                "--vol-ind selects volume {i} but the sketch has volumes 0..{k}"
            )));
        }
    }
    if kept < 2 {
        return Err(Error::invalid(format!(
            "PCA and clustering need at least 2 sketch volumes, {kept} selected"
        )));
    }
    if opts.pc_dim == 0 || opts.pc_dim > kept {
        return Err(Error::invalid(format!(
            "--pc-dim must be in 1..={kept} (the number of sketch volumes analysed), got {}",
            opts.pc_dim
        )));
    }
    if opts.plot_dim == 0 || opts.plot_dim > opts.pc_dim {
        return Err(Error::invalid(format!(
            "--plot-dim must be in 1..={} (--pc-dim), got {}",
            opts.pc_dim, opts.plot_dim
        )));
    }
    if opts.m == 0 || opts.m > kept {
        return Err(Error::invalid(format!(
            "-M must be in 1..={kept} (the number of sketch volumes analysed), got {}",
            opts.m
        )));
    }
    if let Some(pi) = &opts.particle_ind {
        if pi.len() != n {
            return Err(Error::invalid(format!(
                "the run's particle index has {} entries but the latents have {n} particles",
                pi.len()
            )));
        }
    }
    if let Some(a) = opts.apix {
        if !(a > 0.0 && a.is_finite()) {
            return Err(Error::invalid(format!("--Apix must be positive, got {a}")));
        }
    }
    Ok(())
}

/// Checks that the mask file (if any) is a `(d, d, d)` volume.
fn check_mask_file(mask: &MaskChoice, d: usize) -> Result<()> {
    if let MaskChoice::File(p) = mask {
        let (md, _) = cube_size(p)?;
        if md != d {
            return Err(Error::format(
                p,
                format!("mask is {md}×{md}×{md} but the sketch volumes are {d}×{d}×{d}"),
            ));
        }
    }
    Ok(())
}

/// The reference's `analyze_landscape` on latents `z` `(n, zdim)`: see the module doc for the
/// files written under `opts.outdir`. With [`VolumeSource::Decode`] the sketch is computed and
/// its volumes decoded (a progress bar on stderr); with [`VolumeSource::Existing`] both are read
/// back from an earlier run. `embedding` (`(n, 2)`) is drawn with the clusters when given.
///
/// # Errors
/// Bad options (sketch size, `pc_dim`, `plot_dim`, `m`, `vol_ind`), a mask file of another box
/// size, unreadable or mismatched earlier outputs, an empty mask, and I/O errors, each naming the
/// file or option. Option and mask-size errors come before any output is written.
pub fn run_landscape(
    z: &[f32],
    n: usize,
    zdim: usize,
    source: VolumeSource<'_>,
    embedding: Option<&Embedding>,
    opts: &LandscapeOptions,
) -> Result<LandscapeReport> {
    check_z("latents", z, n, zdim)?;
    check_options(opts, n)?;
    if let Some(e) = embedding {
        if e.xy.len() != 2 * n {
            return Err(Error::Shape {
                what: format!("embedding `{}`", e.name),
                expected: format!("({n}, 2) values"),
                got: format!("{} values", e.xy.len()),
            });
        }
    }
    let (k, start) = (opts.k, opts.vol_start_index);
    let out = &opts.outdir;
    let kdir = out.join(format!("kmeans{k}"));
    let paths: Vec<PathBuf> = (0..k)
        .map(|i| kdir.join(format!("vol_{:03}.mrc", start + i)))
        .collect();
    let want_thresholds = matches!(opts.mask, MaskChoice::Generate { thresh: None, .. });
    let mut thresholds: Vec<f32> = Vec::new();

    let (sk, d, apix) = match source {
        VolumeSource::Decode { d, decode } => {
            check_mask_file(&opts.mask, d)?;
            let apix = opts.apix.unwrap_or(1.0);
            mkdir(&kdir)?;
            let sk = sketch(z, n, zdim, k, opts.seed)?;
            i64_pkl(
                &kdir.join("labels.pkl"),
                sk.labels.iter().map(|&l| (l + start) as i64),
            )?;
            let centers: Vec<f32> = sk
                .centers_ind
                .iter()
                .flat_map(|&i| z[i * zdim..(i + 1) * zdim].iter().copied())
                .collect();
            savetxt(kdir.join("centers.txt"), &widen(&centers), zdim)?;
            savetxt_int(kdir.join("centers_ind.txt"), &sk.centers_ind)?;
            let pb = crate::cli::progress::bar(k as u64, "decoding sketch volumes");
            for (i, zi) in centers.chunks(zdim).enumerate() {
                let vol = decode(zi)?;
                if vol.len() != d * d * d {
                    return Err(Error::Shape {
                        what: format!("decoded volume {}", start + i),
                        expected: format!("{d}³ values"),
                        got: vol.len().to_string(),
                    });
                }
                write_mrc(&paths[i], &vol, (d, d, d), apix, true)?;
                if want_thresholds {
                    thresholds.push(default_threshold(&vol));
                }
                pb.inc(1);
            }
            pb.finish_and_clear();
            eprintln!("wrote {k} sketch volumes ({d}³) to {}", kdir.display());
            (sk, d, apix)
        }
        VolumeSource::Existing => {
            let sk = read_sketch(&kdir, n, k, start)?;
            let (d, file_apix) = cube_size(&paths[0])?;
            check_mask_file(&opts.mask, d)?;
            (sk, d, opts.apix.unwrap_or(file_apix))
        }
    };
    let nvol = d * d * d;

    // The mean volume and the mask (union of the volumes' masks: 1 − Π(1 − m_i)).
    let mut sum = vec![0.0f64; nvol];
    let mask: Vec<f32> = match &opts.mask {
        MaskChoice::File(p) => {
            for_each_volume(
                &paths,
                d,
                "mean volume",
                |_| Ok(()),
                |_, v, ()| {
                    sum.iter_mut().zip(&v).for_each(|(s, &x)| *s += x as f64);
                    Ok(())
                },
            )?;
            read_cube(p, d)?
        }
        MaskChoice::Generate {
            thresh,
            dilate,
            cosine_edge,
        } => {
            let thr = match thresh {
                Some(t) => *t,
                None => {
                    if thresholds.is_empty() {
                        for_each_volume(
                            &paths,
                            d,
                            "thresholds",
                            |v| Ok(default_threshold(v)),
                            |_, _, t| {
                                thresholds.push(t);
                                Ok(())
                            },
                        )?;
                    }
                    (thresholds.iter().map(|&t| t as f64).sum::<f64>() / k as f64) as f32
                }
            };
            eprintln!(
                "mask: threshold {thr}, dilation {dilate} Å, cosine edge {cosine_edge} Å at {apix} Å/pixel"
            );
            let mut keep_out = vec![1.0f64; nvol];
            for_each_volume(
                &paths,
                d,
                "mask",
                |v| {
                    if v.iter().any(|&x| x >= thr) {
                        let m = cosine_dilation_mask(
                            v,
                            d,
                            Some(thr),
                            *dilate,
                            *cosine_edge,
                            apix as f64,
                        )?;
                        Ok(Some(m.values))
                    } else {
                        Ok(None)
                    }
                },
                |_, v, m| {
                    sum.iter_mut().zip(&v).for_each(|(s, &x)| *s += x as f64);
                    if let Some(m) = m {
                        keep_out
                            .iter_mut()
                            .zip(&m)
                            .for_each(|(o, &x)| *o *= 1.0 - x as f64);
                    }
                    Ok(())
                },
            )?;
            keep_out.iter().map(|&o| (1.0 - o) as f32).collect()
        }
    };
    let vol_mean: Vec<f32> = sum.iter().map(|&s| (s / k as f64) as f32).collect();
    drop(sum);
    let (lo, hi) = vol_mean
        .iter()
        .fold((0.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
    if -lo > hi {
        eprintln!(
            "warning: the sketch volumes are mostly negative (mean volume in [{lo}, {hi}]): \
             inverted contrast? Negative voxels are set to 0 before PCA and clustering"
        );
    }
    write_mrc(kdir.join("vol_mean.mrc"), &vol_mean, (d, d, d), apix, true)?;
    write_mrc(out.join("mask.mrc"), &mask, (d, d, d), apix, true)?;
    let binary: Vec<f32> = mask.iter().map(|&m| (m > 0.0) as u8 as f32).collect();
    volume_slices(out.join("mask_slices.png"), &binary, d, "mask > 0")?;
    let voxels: Vec<usize> = (0..nvol).filter(|&i| mask[i] > 0.0).collect();
    let nvox = voxels.len();
    if nvox == 0 {
        return Err(Error::invalid(format!(
            "the mask ({}) is empty: no voxel of any sketch volume reaches the threshold",
            out.join("mask.mrc").display()
        )));
    }
    eprintln!("{nvox} voxels in the mask");

    // The masked volumes (mask · volume on the mask's voxels, negatives set to 0).
    let selected: Vec<usize> = opts.vol_ind.clone().unwrap_or_else(|| (0..k).collect());
    let ns = selected.len();
    let mut data = vec![0.0f32; ns * nvox];
    data.par_chunks_mut(nvox)
        .zip(selected.par_iter())
        .try_for_each(|(row, &i)| -> Result<()> {
            let v = read_cube(&paths[i], d)?;
            for (r, &j) in row.iter_mut().zip(&voxels) {
                *r = (mask[j] * v[j]).max(0.0);
            }
            Ok(())
        })?;

    let (pca, gram) = volume_pca(&data, ns, nvox, opts.pc_dim)?;
    drop(data);
    let dim = pca.dim;
    write_pkl(
        out.join(format!("vol_pca_{k}.pkl")),
        &PyValue::Array(NdArray::from_f32(
            vec![ns, dim],
            pca.pc.iter().map(|&v| v as f32).collect(),
        )?),
    )?;
    savetxt(
        out.join("vol_pca_explained_variance_ratio.txt"),
        &pca.explained_variance_ratio,
        1,
    )?;
    let evr: Vec<String> = pca
        .explained_variance_ratio
        .iter()
        .map(|r| format!("{r:.4}"))
        .collect();
    eprintln!("volume PCA explained variance ratio: [{}]", evr.join(", "));

    let col = |c: usize| -> Vec<f64> { pca.pc.iter().skip(c).step_by(dim).copied().collect() };
    for c in 0..opts.plot_dim {
        let dir = out.join("vol_pcs").join(format!("pc{}", c + 1));
        mkdir(&dir)?;
        let pcs = col(c);
        let lo = pcs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = pcs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let comp = &pca.components[c * nvox..(c + 1) * nvox];
        for (j, val) in linspace(lo, hi, 10).into_iter().enumerate() {
            let mut v = vol_mean.clone();
            for (&vox, &w) in voxels.iter().zip(comp) {
                v[vox] += (w * val) as f32;
            }
            write_mrc(
                dir.join(format!("{:03}.mrc", j + start)),
                &v,
                (d, d, d),
                apix,
                true,
            )?;
        }
    }
    let ev_label = |c: usize| {
        format!(
            "Volume PC{} (EV: {:.6})",
            c + 1,
            pca.explained_variance_ratio[c]
        )
    };
    let pc_style = |c: usize| PlotStyle {
        x_label: ev_label(c),
        y_label: ev_label(c + 1),
        size: (800, 800),
        ..PlotStyle::default()
    };
    for c in 0..opts.plot_dim.saturating_sub(1) {
        crate::analysis::plot::scatter_plot(
            out.join(format!("vol_pca_{k}_{}_{}.png", c + 1, c + 2)),
            &col(c),
            &col(c + 1),
            &pc_style(c),
        )?;
    }

    // Agglomerative clustering of the masked volumes.
    let m = opts.m;
    let state = agglomerative(&gram_distances(&gram, ns), ns, m, opts.linkage)?;
    drop(gram);
    let sub = out.join(format!("sketch_clustering_{}_{m}", opts.linkage.name()));
    mkdir(&sub)?;
    i64_pkl(
        &sub.join("state_labels.pkl"),
        state.iter().map(|&s| (s + 1) as i64),
    )?;
    let mut kmeans_counts = vec![0usize; k];
    for &l in &sk.labels {
        kmeans_counts[l] += 1;
    }
    let mut vol_state: Vec<Option<usize>> = vec![None; k];
    for (j, &i) in selected.iter().enumerate() {
        vol_state[i] = Some(state[j]);
    }
    let mut vol_counts = vec![0usize; m];
    let mut particle_counts = vec![0usize; m];
    for s in 0..m {
        let members: Vec<usize> = selected
            .iter()
            .zip(&state)
            .filter(|(_, &t)| t == s)
            .map(|(&i, _)| i)
            .collect();
        vol_counts[s] = members.len();
        let weights: Vec<f64> = members.iter().map(|&i| kmeans_counts[i] as f64).collect();
        let total: f64 = weights.iter().sum();
        let weights: Vec<f64> = if total > 0.0 {
            weights.iter().map(|w| w / total).collect()
        } else {
            vec![1.0 / members.len() as f64; members.len()]
        };
        let (mut s1, mut s2) = (vec![0.0f64; nvol], vec![0.0f64; nvol]);
        let member_paths: Vec<PathBuf> = members.iter().map(|&i| paths[i].clone()).collect();
        for_each_volume(
            &member_paths,
            d,
            "cluster means",
            |_| Ok(()),
            |j, v, ()| {
                let w = weights[j];
                for ((a, b), &x) in s1.iter_mut().zip(s2.iter_mut()).zip(&v) {
                    *a += w * x as f64;
                    *b += w * (x as f64) * (x as f64);
                }
                Ok(())
            },
        )?;
        let mean: Vec<f32> = s1.iter().map(|&v| v as f32).collect();
        let std: Vec<f32> = s1
            .iter()
            .zip(&s2)
            .map(|(&a, &b)| (b - a * a).max(0.0).sqrt() as f32)
            .collect();
        let tag = format!("state_{:03}", s + 1);
        write_mrc(
            sub.join(format!("{tag}_mean.mrc")),
            &mean,
            (d, d, d),
            apix,
            true,
        )?;
        write_mrc(
            sub.join(format!("{tag}_std.mrc")),
            &std,
            (d, d, d),
            apix,
            true,
        )?;
        let sdir = sub.join(&tag);
        if sdir.exists() {
            std::fs::remove_dir_all(&sdir).at(&sdir)?;
        }
        mkdir(&sdir)?;
        for &i in &members {
            let name = format!("vol_{:03}.mrc", start + i);
            link_volume(&kdir, k, &name, &sdir.join(&name))?;
        }
        let particles: Vec<usize> = (0..n)
            .filter(|&p| vol_state[sk.labels[p]] == Some(s))
            .collect();
        particle_counts[s] = particles.len();
        let orig = opts.particle_ind.as_deref();
        i64_pkl(
            &sub.join(format!("{tag}_particle_ind.pkl")),
            particles.iter().map(|&p| orig.map_or(p, |o| o[p]) as i64),
        )?;
        eprintln!(
            "state {}: {} volumes, {} particles",
            s + 1,
            members.len(),
            particles.len()
        );
    }
    i64_pkl(
        &sub.join("particle_state_labels.pkl"),
        sk.labels
            .iter()
            .map(|&l| vol_state[l].map_or(0, |s| s as i64 + 1)),
    )?;
    bar_plot(&sub.join("state_volume_counts.png"), &vol_counts, "Count")?;
    bar_plot(
        &sub.join("state_particle_counts.png"),
        &particle_counts,
        "Count",
    )?;
    let names: Vec<usize> = selected.iter().map(|&i| i + start).collect();
    for c in 0..opts.plot_dim.saturating_sub(1) {
        let (x, y) = (col(c), col(c + 1));
        cluster_scatter(
            &sub.join(format!("vol_pca_{k}_{}_{}.png", c + 1, c + 2)),
            None,
            &x,
            &y,
            &state,
            m,
            None,
            &pc_style(c),
        )?;
        cluster_scatter(
            &sub.join(format!("vol_pca_{k}_annotated_{}_{}.png", c + 1, c + 2)),
            None,
            &x,
            &y,
            &state,
            m,
            Some(&names),
            &PlotStyle {
                size: (1400, 1400),
                ..pc_style(c)
            },
        )?;
    }
    if let Some(e) = embedding {
        let ex: Vec<f64> = e.xy.iter().step_by(2).copied().collect();
        let ey: Vec<f64> = e.xy.iter().skip(1).step_by(2).copied().collect();
        let px: Vec<f64> = selected.iter().map(|&i| ex[sk.centers_ind[i]]).collect();
        let py: Vec<f64> = selected.iter().map(|&i| ey[sk.centers_ind[i]]).collect();
        let style = PlotStyle {
            x_label: e.x_label.clone(),
            y_label: e.y_label.clone(),
            size: (800, 800),
            ..PlotStyle::default()
        };
        cluster_scatter(
            &sub.join(format!("{}.png", e.name)),
            Some((&ex, &ey)),
            &px,
            &py,
            &state,
            m,
            None,
            &style,
        )?;
        cluster_scatter(
            &sub.join(format!("{}_annotated.png", e.name)),
            Some((&ex, &ey)),
            &px,
            &py,
            &state,
            m,
            Some(&names),
            &PlotStyle {
                size: (1400, 1400),
                ..style
            },
        )?;
    }
    Ok(LandscapeReport {
        sketch: sk,
        d,
        apix,
        mask_voxels: nvox,
        selected,
        pca,
        state_labels: state,
        clustering_dir: sub,
    })
}

/// Links `link` to the sketch volume `name` of `kmeans{k}/` (a relative symbolic link, as the
/// reference's; a copy where symbolic links are unavailable).
fn link_volume(kdir: &Path, k: usize, name: &str, link: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let _ = kdir;
        let target = Path::new("../..").join(format!("kmeans{k}")).join(name);
        std::os::unix::fs::symlink(&target, link).at(link)
    }
    #[cfg(not(unix))]
    {
        let _ = k;
        std::fs::copy(kdir.join(name), link).map(|_| ()).at(link)
    }
}
