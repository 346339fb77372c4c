//! `analyze-landscape-full`: after `analyze-landscape`, map the whole latent space into volume
//! space, as cryoDRGN's `analyze_landscape_full`: decode `-N` volumes at the latents of randomly
//! chosen particles, project each (masked with the landscape's `mask.mrc`) onto the landscape's
//! volume PCA, train an MLP (cryoDRGN's `ResidLinearMLP`, ReLU: `--layers` hidden layers of
//! `--dim`) from z to those PCA coordinates (MSE, Adam at `--lr`, `--epochs` epochs of batches of
//! `--batch-size` on 75 % of the volumes, the test loss on the other 25 % logged each epoch), and
//! embed every particle with it.
//!
//! Written to `LANDSCAPE_DIR/landscape_full` (`-o` to change; `LANDSCAPE_DIR` defaults to
//! `WORKDIR/landscape.EPOCH`), with the reference's names:
//!
//! | file | content |
//! |---|---|
//! | `z.sampled.pkl`, `ind.sampled.pkl` | float32 latents `(N, zdim)` and int64 indices `(N)` (sorted) of the sampled particles |
//! | `vol_pca_sampled.pkl` | float32 volume-PCA coordinates of their volumes `(N, pc_dim)` |
//! | `model.pt` | the trained MLP, a torch state dict with `ResidLinearMLP`'s parameter names |
//! | `vol_pca_all.pkl` | float32 predicted volume-PCA coordinates of every particle `(n, pc_dim)` |
//! | `volpca_landscape.png` | 2-D histogram of every particle's predicted volume PC1 against PC2 |
//! | `umap_vol_pca.pkl` | float32 2-D UMAP of `vol_pca_all` `(n, 2)` (`--num-neighbors` neighbours) |
//! | `umap_vol_pca_hexbin.png` | 2-D histogram of the UMAP |
//! | `full_clustering/cluster_labels.pkl` | int32 Leiden cluster of every particle `(n)`, numbered from 1 |
//! | `full_clustering/umap.png` | the UMAP, each particle coloured by its cluster |
//! | `loss.txt` | train and test MSE per epoch (ours) |
//!
//! The volume PCA: the reference reloads the sklearn object `vol_pca_obj.pkl`, which cannot be
//! read without running Python. Here it is recomputed exactly as `analyze-landscape` computes it,
//! from the sketch volumes `kmeans{K}/vol_*.mrc` and `mask.mrc` (`(mask·vol)` on the mask's
//! voxels, negatives set to 0; `--vol-ind` must repeat analyze-landscape's if it had one), and
//! the sign of each component is aligned with `vol_pca_{K}.pkl`; the largest difference from
//! those stored coordinates is reported (0 up to rounding for our own landscape folders; a
//! cryoDRGN folder's randomized SVD may differ slightly). The decoded volumes are projected after
//! the same masking as the PCA's input; the reference projects the raw volume on the mask's
//! voxels, unweighted and without clipping, which is not the space its PCA was fitted in.
//!
//! The clustering, as the reference's: a UMAP of every particle's predicted coordinates
//! (`crate::analysis::umap`, `n_neighbors = --num-neighbors`, seeded with `--seed`), then Leiden
//! communities (`crate::analysis::leiden`: modularity at resolution `--resolution`, igraph's
//! θ = 0.01 and 2 iterations, seeded with `--seed`) of its fuzzy graph (umap-learn's `graph_`,
//! each edge listed in both directions as cryoDRGN's `get_igraph_from_adjacency` adds them).
//! Clusters are numbered from 1 by decreasing size. Our UMAP and Leiden are not umap-learn's and
//! igraph's code or generators: embeddings and partitions agree in quality (Leiden's modularity
//! within ~1 % of igraph's on the same graph, `tools/leiden_crosscheck.sh`), not point by point.
//!
//! Deviations from the reference, besides the PCA above: above 50 000 particles the UMAP and its
//! graph are fitted on a seeded subsample of 50 000, and every other particle takes the
//! embedding and the cluster of its nearest subsampled particle in volume-PCA space (umap-learn
//! fits all); the UMAP starts from PCA, not a spectral layout (see `crate::analysis::umap`); the
//! cluster scatter cycles through 10 colours and has no legend, and the UMAP density is a square
//! 2-D histogram rather than seaborn's hexbin joint plot; the notebook is not made; the training
//! batches are reshuffled each epoch (the reference shuffles on GPU only); `-N` larger than the
//! number of particles uses every particle (the reference fails); `-d` defaults to the mask's
//! box size and must equal it (the reference's default is 128, which must also match the mask).
//!
//! Example: `cryofield analyze-landscape-full out/ 19 -N 4000 --epochs 200`

use crate::analysis::landscape::volume_pca;
use crate::analysis::latent::{load_z, marked_scatter, Marks};
use crate::analysis::leiden::{leiden, modularity, LeidenOptions};
use crate::analysis::plot::{auto_range, chart_builder, draw_mesh, render, viridis, PlotStyle};
use crate::analysis::umap::{umap_with_graph, UmapOptions};
use crate::autodiff::{ParamStore, Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::backend::{Activation, Backend};
use crate::cli::analyze::run_files;
use crate::cli::progress;
use crate::io::array::{ArrayData, NdArray};
use crate::io::mrc::{read_cube, MrcFile};
use crate::io::pkl::{read_pkl, write_pkl, PyValue};
use crate::meta::load_indices;
use crate::model::load::LoadedModel;
use crate::nn::{Adam, Mlp};
use anyhow::{bail, Context};
use plotters::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// Full landscape analysis: z → volume-PCA coordinates for every particle.
#[derive(Debug, clap::Args)]
#[command(
    about = "After analyze-landscape: learn z → volume PCA from decoded volumes and embed every particle"
)]
pub struct Args {
    /// The training output folder
    pub workdir: PathBuf,
    /// Epoch, as numbered in z.EPOCH.pkl; −1: a cryoDRGN run's final z.pkl / weights.pkl, or our
    /// run's last checkpoint
    #[arg(allow_hyphen_values = true)]
    pub epoch: i64,
    /// Landscape analysis folder [default: WORKDIR/landscape.EPOCH]
    #[arg(long = "landscape-dir")]
    pub landscape_dir: Option<PathBuf>,
    /// Output folder [default: LANDSCAPE_DIR/landscape_full]
    #[arg(short = 'o', long = "outdir")]
    pub outdir: Option<PathBuf>,
    /// Random seed (sampling, train/test split, MLP initialization, batches)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of training volumes to decode
    #[arg(short = 'N', long = "training-volumes", default_value_t = 10000)]
    pub training_volumes: usize,
    /// Flip the handedness of the decoded volumes (reverse the slowest axis)
    #[arg(long)]
    pub flip: bool,
    /// Box size of the decoded volumes [default and only value: the mask's]
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
    /// Reuse z.sampled.pkl and vol_pca_sampled.pkl of an earlier run in the output folder
    #[arg(long = "skip-vol")]
    pub skip_vol: bool,
    /// Index .pkl of the sketch volumes analyze-landscape kept (its --vol-ind)
    #[arg(long = "vol-ind")]
    pub vol_ind: Option<PathBuf>,
    /// Training batch size
    #[arg(long = "batch-size", default_value_t = 64)]
    pub batch_size: usize,
    /// Batch size of the evaluation passes
    #[arg(long = "test-batch-size", default_value_t = 1000)]
    pub test_batch_size: usize,
    /// Training epochs
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Learning rate (Adam)
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// MLP hidden layer width
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// MLP hidden layers
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Neighbours per particle in the UMAP graph of the volume-PCA coordinates (the particle
    /// included)
    #[arg(long = "num-neighbors", default_value_t = 50)]
    pub num_neighbors: usize,
    /// Resolution γ of the Leiden clustering's modularity (larger: more, smaller clusters)
    #[arg(long, default_value_t = 1.5)]
    pub resolution: f64,
}

/// The landscape's volume PCA, recomputed from its sketch volumes, and how to project onto it.
pub struct LandscapePca {
    /// box size of the volumes
    pub d: usize,
    /// indices of the mask's voxels (> 0) in a `(d, d, d)` volume
    pub voxels: Vec<usize>,
    /// mask value at each of those voxels
    pub weights: Vec<f32>,
    /// PCA mean `(nvox)`
    pub mean: Vec<f64>,
    /// unit components, PC k+1 in row k `(pc_dim, nvox)`, signs aligned with `vol_pca_{K}.pkl`
    pub components: Vec<f64>,
    /// number of components
    pub pc_dim: usize,
    /// largest |recomputed − stored| coordinate of the sketch volumes, over the largest |stored|
    pub stored_rel_diff: f64,
}

impl LandscapePca {
    /// The PCA input row of a `(d, d, d)` volume: `max(0, mask·vol)` on the mask's voxels.
    fn masked(&self, vol: &[f32]) -> Vec<f32> {
        self.voxels
            .iter()
            .zip(&self.weights)
            .map(|(&j, &m)| (m * vol[j]).max(0.0))
            .collect()
    }

    /// Volume-PCA coordinates `(pc_dim)` of a `(d, d, d)` volume.
    pub fn project(&self, vol: &[f32]) -> Vec<f64> {
        let x = self.masked(vol);
        let nvox = self.voxels.len();
        (0..self.pc_dim)
            .map(|k| {
                let c = &self.components[k * nvox..(k + 1) * nvox];
                x.iter()
                    .zip(&self.mean)
                    .zip(c)
                    .map(|((&v, &m), &w)| (v as f64 - m) * w)
                    .sum()
            })
            .collect()
    }
}

/// The `kmeans{K}` folder of a landscape folder with the largest K (as the reference picks it).
fn kmeans_dir(landscape: &Path) -> anyhow::Result<(usize, PathBuf)> {
    let found = crate::cli::filter_latent::kmeans_folders(landscape)
        .with_context(|| format!("reading landscape folder {}", landscape.display()))?;
    found.into_iter().max_by_key(|(k, _)| *k).with_context(|| {
        format!(
            "no kmeans{{K}} folder in {}: did analyze-landscape run there?",
            landscape.display()
        )
    })
}

/// The sketch volumes `vol_{S+i:03}.mrc`, i < k, of a kmeans folder (S the smallest number found).
fn sketch_volumes(kdir: &Path, k: usize) -> anyhow::Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(kdir).with_context(|| format!("reading {}", kdir.display()))?;
    let start = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("vol_")?
                .strip_suffix(".mrc")?
                .parse::<usize>()
                .ok()
        })
        .min()
        .with_context(|| format!("no vol_NNN.mrc sketch volumes in {}", kdir.display()))?;
    let paths: Vec<PathBuf> = (0..k)
        .map(|i| kdir.join(format!("vol_{:03}.mrc", start + i)))
        .collect();
    if let Some(p) = paths.iter().find(|p| !p.exists()) {
        bail!(
            "{} not found: {} should hold {k} sketch volumes numbered from {start}",
            p.display(),
            kdir.display()
        );
    }
    Ok(paths)
}

/// Recomputes the volume PCA of the landscape folder `landscape` (see the module doc).
pub fn landscape_pca(landscape: &Path, vol_ind: Option<&Path>) -> anyhow::Result<LandscapePca> {
    let mask_path = landscape.join("mask.mrc");
    if !mask_path.exists() {
        bail!(
            "{} missing: did analyze-landscape run in {}?",
            mask_path.display(),
            landscape.display()
        );
    }
    let (mask, d, _) = read_cube(&mask_path)?;
    let (k, kdir) = kmeans_dir(landscape)?;
    let stored_path = landscape.join(format!("vol_pca_{k}.pkl"));
    let stored = match read_pkl(&stored_path)
        .with_context(|| format!("{} (did analyze-landscape finish?)", stored_path.display()))?
    {
        PyValue::Array(a) if a.shape.len() == 2 && a.shape[0] > 0 && a.shape[1] > 0 => a,
        _ => bail!(
            "{}: expected a 2-D array of volume-PCA coordinates",
            stored_path.display()
        ),
    };
    let (ns, pc_dim) = (stored.shape[0], stored.shape[1]);
    let stored = stored.to_f64();
    let selected: Vec<usize> = match vol_ind {
        Some(p) => load_indices(p, k)?,
        None => (0..k).collect(),
    };
    if selected.len() != ns {
        bail!(
            "{} holds {ns} volumes but {} are selected of the {k} sketch volumes in {}: pass analyze-landscape's --vol-ind",
            stored_path.display(),
            selected.len(),
            kdir.display()
        );
    }
    let paths = sketch_volumes(&kdir, k)?;
    let voxels: Vec<usize> = (0..mask.len()).filter(|&j| mask[j] > 0.0).collect();
    if voxels.is_empty() {
        bail!("{}: the mask is empty", mask_path.display());
    }
    let weights: Vec<f32> = voxels.iter().map(|&j| mask[j]).collect();
    let nvox = voxels.len();
    let mut pca = LandscapePca {
        d,
        voxels,
        weights,
        mean: Vec::new(),
        components: Vec::new(),
        pc_dim,
        stored_rel_diff: 0.0,
    };
    let mut data = Vec::with_capacity(ns * nvox);
    for &i in &selected {
        let f = MrcFile::open(&paths[i])?;
        let h = &f.header;
        if (h.nx, h.ny, h.nz) != (d, d, d) {
            bail!(
                "{} is {}×{}×{} voxels but {} is {d}³",
                paths[i].display(),
                h.nx,
                h.ny,
                h.nz,
                mask_path.display()
            );
        }
        data.extend(pca.masked(&f.read_all()?));
    }
    let (vp, _) = volume_pca(&data, ns, nvox, pc_dim)?;
    drop(data);
    let mut comps = vp.components;
    let mut pc = vp.pc;
    // align each component's sign with the stored coordinates
    for c in 0..pc_dim {
        let dot: f64 = (0..ns)
            .map(|i| pc[i * pc_dim + c] * stored[i * pc_dim + c])
            .sum();
        if dot < 0.0 {
            comps[c * nvox..(c + 1) * nvox]
                .iter_mut()
                .for_each(|v| *v = -*v);
            (0..ns).for_each(|i| pc[i * pc_dim + c] = -pc[i * pc_dim + c]);
        }
    }
    let scale = stored.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = pc
        .iter()
        .zip(&stored)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    pca.stored_rel_diff = if scale > 0.0 { diff / scale } else { diff };
    pca.mean = vp.mean;
    pca.components = comps;
    Ok(pca)
}

/// `m` distinct particle indices of `0..n`, sorted, drawn with `seed`.
pub fn sample_indices(n: usize, m: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ind = rand::seq::index::sample(&mut rng, n, m.min(n)).into_vec();
    ind.sort_unstable();
    ind
}

/// Settings of [`train_regressor`].
#[derive(Debug, Clone, PartialEq)]
pub struct RegressorConfig {
    /// hidden layers
    pub layers: usize,
    /// hidden width
    pub dim: usize,
    /// Adam learning rate
    pub lr: f64,
    /// epochs
    pub epochs: usize,
    /// training batch size
    pub batch: usize,
    /// evaluation batch size
    pub eval_batch: usize,
    /// seed of the split, the initialization and the batch order
    pub seed: u64,
}

/// A trained z → volume-PCA regressor.
pub struct Regressor {
    be: CpuBackend<f32>,
    store: ParamStore<CpuBackend<f32>>,
    net: Mlp,
    din: usize,
    dout: usize,
    eval_batch: usize,
    /// (train MSE, test MSE) per epoch; the test MSE is NaN without a test set
    pub losses: Vec<(f64, f64)>,
}

impl Regressor {
    /// Predictions `(n, dout)` for inputs `x` `(n, din)`.
    pub fn predict(&self, x: &[f32]) -> crate::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(x.len() / self.din * self.dout);
        for chunk in x.chunks(self.eval_batch * self.din) {
            let b = chunk.len() / self.din;
            let mut t = Tape::inference(&self.be, &self.store);
            let xi = t.constant(Tensor::from_slice(&self.be, chunk, &[b, self.din])?);
            let y = self.net.forward(&mut t, xi)?;
            out.extend(t.to_vec(y)?);
        }
        Ok(out)
    }

    /// Mean squared error of the predictions for `x` against `y` `(n, dout)`.
    fn mse(&self, x: &[f32], y: &[f32]) -> crate::Result<f64> {
        if y.is_empty() {
            return Ok(f64::NAN);
        }
        let p = self.predict(x)?;
        Ok(p.iter()
            .zip(y)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            / y.len() as f64)
    }

    /// Writes the network as a torch state dict (`main.{2l}[.linear].weight`/`bias`, as
    /// cryoDRGN's `ResidLinearMLP`), atomically.
    pub fn save_torch(&self, path: &Path) -> crate::Result<()> {
        use crate::io::torch::{write_torch, TorchValue};
        let mut items = Vec::new();
        for (name, t) in self.store.names.iter().zip(&self.store.tensors) {
            let key = name.strip_prefix("mlp.").unwrap_or(name).to_string();
            items.push((
                key,
                TorchValue::Tensor {
                    shape: t.shape.clone(),
                    data: self.be.to_vec(&t.buf)?,
                },
            ));
        }
        write_torch(path, &TorchValue::OrderedDict(items))
    }
}

/// Trains a `ResidLinearMLP` (ReLU) from `x` `(n, din)` to `y` `(n, dout)` with MSE and Adam:
/// a seeded 75/25 train/test split (test: ⌈n/4⌉ rows, none when n < 4), `epochs` passes over
/// the training rows in reshuffled batches; `on_epoch(epoch, train MSE, test MSE)` after each.
pub fn train_regressor(
    x: &[f32],
    y: &[f32],
    din: usize,
    dout: usize,
    cfg: &RegressorConfig,
    mut on_epoch: impl FnMut(usize, f64, f64),
) -> crate::Result<Regressor> {
    use crate::Error;
    if din == 0
        || dout == 0
        || x.is_empty()
        || !x.len().is_multiple_of(din)
        || y.len() != x.len() / din * dout
    {
        return Err(Error::invalid(format!(
            "regressor data: {} inputs of width {din} and {} targets of width {dout} do not match",
            x.len(),
            y.len()
        )));
    }
    if cfg.batch == 0 || cfg.eval_batch == 0 || cfg.dim == 0 {
        return Err(Error::invalid(
            "batch sizes and the hidden width must be positive",
        ));
    }
    if let Some(i) = x.iter().chain(y).position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "regressor data: value {i} is not finite"
        )));
    }
    let n = x.len() / din;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let n_test = if n >= 4 { n.div_ceil(4) } else { 0 };
    let (test, train) = order.split_at(n_test);
    let rows = |ids: &[usize], src: &[f32], w: usize| -> Vec<f32> {
        ids.iter()
            .flat_map(|&i| src[i * w..(i + 1) * w].iter().copied())
            .collect()
    };
    let (x_test, y_test) = (rows(test, x, din), rows(test, y, dout));
    let mut train: Vec<usize> = train.to_vec();
    let be = CpuBackend::<f32>::new();
    let mut store = ParamStore::new();
    let net = Mlp::resid(
        &be,
        &mut store,
        "mlp",
        din,
        cfg.layers,
        cfg.dim,
        dout,
        Activation::Relu,
        &mut rng,
    )?;
    let mut model = Regressor {
        be,
        store,
        net,
        din,
        dout,
        eval_batch: cfg.eval_batch,
        losses: Vec::with_capacity(cfg.epochs),
    };
    let mut adam = Adam::<CpuBackend<f32>>::new(cfg.lr, 0.0);
    for epoch in 1..=cfg.epochs {
        train.shuffle(&mut rng);
        let (mut sum, mut count) = (0.0f64, 0usize);
        for ids in train.chunks(cfg.batch) {
            let b = ids.len();
            let (xb, yb) = (rows(ids, x, din), rows(ids, y, dout));
            let (loss_v, grads) = {
                let mut t = Tape::new(&model.be, &model.store);
                let xi = t.constant(Tensor::from_slice(&model.be, &xb, &[b, din])?);
                let yt = t.constant(Tensor::from_slice(&model.be, &yb, &[b, dout])?);
                let f = model.net.forward(&mut t, xi)?;
                let loss = t.mse(f, yt)?;
                let v = t.to_vec(loss)?[0] as f64;
                (v, t.backward(loss)?)
            };
            adam.step(&model.be, &mut model.store, &grads)?;
            grads.recycle(&model.be);
            if !loss_v.is_finite() {
                return Err(Error::invalid(format!(
                    "the regressor's training diverged in epoch {epoch} (loss {loss_v})"
                )));
            }
            sum += loss_v * b as f64;
            count += b;
        }
        let train_mse = if count > 0 {
            sum / count as f64
        } else {
            f64::NAN
        };
        let test_mse = model.mse(&x_test, &y_test)?;
        model.losses.push((train_mse, test_mse));
        on_epoch(epoch, train_mse, test_mse);
    }
    Ok(model)
}

/// A 2-D histogram (100 × 100 bins, colour by count on a log scale) of the points `(x[i], y[i])`
/// to a PNG at `path`.
fn density_plot(
    path: &Path,
    x: &[f64],
    y: &[f64],
    x_label: &str,
    y_label: &str,
) -> anyhow::Result<()> {
    const BINS: usize = 100;
    let style = PlotStyle {
        x_label: x_label.into(),
        y_label: y_label.into(),
        size: (800, 800),
        ..Default::default()
    };
    let xr = auto_range(x.iter());
    let yr = auto_range(y.iter());
    let (wx, wy) = ((xr.1 - xr.0) / BINS as f64, (yr.1 - yr.0) / BINS as f64);
    let mut counts = vec![0u64; BINS * BINS];
    for (&a, &b) in x.iter().zip(y) {
        let (i, j) = (((a - xr.0) / wx).floor(), ((b - yr.0) / wy).floor());
        if i >= 0.0 && j >= 0.0 && (i as usize) < BINS && (j as usize) < BINS {
            counts[j as usize * BINS + i as usize] += 1;
        }
    }
    let top = (counts.iter().copied().max().unwrap_or(1).max(1) as f64).ln_1p();
    render(path, style.size, |root| {
        root.fill(&WHITE)?;
        let mut chart = chart_builder(root, &style).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        draw_mesh(&mut chart, &style)?;
        chart.draw_series(
            counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(idx, &c)| {
                    let (i, j) = ((idx % BINS) as f64, (idx / BINS) as f64);
                    let t = (c as f64).ln_1p() / top;
                    let col = viridis(t);
                    Rectangle::new(
                        [
                            (xr.0 + i * wx, yr.0 + j * wy),
                            (xr.0 + (i + 1.0) * wx, yr.0 + (j + 1.0) * wy),
                        ],
                        col.filled(),
                    )
                }),
        )?;
        Ok(())
    })?;
    Ok(())
}

/// UMAP of the predicted volume-PCA coordinates `all` `(n, pc_dim)` and Leiden clusters of its
/// graph, written to `out` (`umap_vol_pca.pkl`, `umap_vol_pca_hexbin.png`,
/// `full_clustering/cluster_labels.pkl` and `full_clustering/umap.png`); returns the number of
/// clusters and the modularity at `a.resolution` of the graph's partition.
fn umap_and_clusters(
    out: &Path,
    all: &[f32],
    n: usize,
    pc_dim: usize,
    a: &Args,
) -> anyhow::Result<(usize, f64)> {
    eprintln!("UMAP of {n} particles ({} neighbours)", a.num_neighbors);
    let fit = umap_with_graph(
        all,
        n,
        pc_dim,
        &UmapOptions {
            n_neighbors: a.num_neighbors,
            seed: a.seed,
            ..UmapOptions::default()
        },
    )
    .context("UMAP of the volume-PCA coordinates")?;
    let emb32: Vec<f32> = fit.embedding.iter().map(|&v| v as f32).collect();
    f32_pkl(&out.join("umap_vol_pca.pkl"), vec![n, 2], emb32)?;
    let x: Vec<f64> = fit.embedding.iter().step_by(2).copied().collect();
    let y: Vec<f64> = fit.embedding.iter().skip(1).step_by(2).copied().collect();
    density_plot(
        &out.join("umap_vol_pca_hexbin.png"),
        &x,
        &y,
        "UMAP1",
        "UMAP2",
    )?;

    eprintln!(
        "Leiden clustering of the UMAP graph ({} points, {} edges, resolution {})",
        fit.subsample.len(),
        fit.graph.len(),
        a.resolution
    );
    let opts = LeidenOptions {
        resolution: a.resolution,
        seed: a.seed,
        ..LeidenOptions::default()
    };
    let (sub_labels, n_clusters) = leiden(fit.subsample.len(), &fit.graph, &opts)
        .context("Leiden clustering of the UMAP graph")?;
    let q = modularity(&fit.graph, &sub_labels, a.resolution)?;
    let labels: Vec<usize> = fit
        .nearest
        .iter()
        .map(|&k| sub_labels[k as usize])
        .collect();
    let dir = out.join("full_clustering");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ids: Vec<i32> = labels.iter().map(|&c| c as i32 + 1).collect();
    write_pkl(
        dir.join("cluster_labels.pkl"),
        &PyValue::Array(NdArray::new(vec![n], ArrayData::I32(ids))?),
    )?;
    marked_scatter(
        dir.join("umap.png"),
        &x,
        &y,
        &Marks {
            labels: Some(&labels),
            ..Marks::default()
        },
        &PlotStyle {
            title: format!("{n_clusters} Leiden clusters (resolution {})", a.resolution),
            x_label: "UMAP1".into(),
            y_label: "UMAP2".into(),
            size: (1000, 1000),
            ..PlotStyle::default()
        },
    )?;
    Ok((n_clusters, q))
}

/// `analyze.E` → `landscape.E` beside it (as analyze-landscape names its folder).
fn default_landscape_dir(analyze_dir: &Path) -> PathBuf {
    let name = analyze_dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("analyze")
        .replacen("analyze", "landscape", 1);
    analyze_dir.with_file_name(name)
}

fn f32_pkl(path: &Path, shape: Vec<usize>, v: Vec<f32>) -> anyhow::Result<()> {
    write_pkl(path, &PyValue::Array(NdArray::from_f32(shape, v)?))?;
    Ok(())
}

/// A float array of `(rows, cols)` from a .pkl written by an earlier run.
fn read_f32_pkl(path: &Path, cols: Option<usize>) -> anyhow::Result<(usize, usize, Vec<f32>)> {
    match read_pkl(path)? {
        PyValue::Array(a) if a.shape.len() == 2 && cols.is_none_or(|c| a.shape[1] == c) => {
            Ok((a.shape[0], a.shape[1], a.to_f32()))
        }
        _ => bail!(
            "{}: expected a 2-D float array{}",
            path.display(),
            cols.map(|c| format!(" of {c} columns")).unwrap_or_default()
        ),
    }
}

/// Run `analyze-landscape-full`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    if !a.workdir.is_dir() {
        bail!("{}: work folder not found", a.workdir.display());
    }
    if a.batch_size == 0 || a.test_batch_size == 0 || a.dim == 0 || a.epochs == 0 {
        bail!("--batch-size, --test-batch-size, --dim and --epochs must be positive");
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr {} must be positive", a.lr);
    }
    if a.num_neighbors < 2 || !(a.resolution.is_finite() && a.resolution >= 0.0) {
        bail!(
            "--num-neighbors {} must be at least 2 and --resolution {} finite and ≥ 0",
            a.num_neighbors,
            a.resolution
        );
    }
    let (zpath, weights, config, analyze_dir) = run_files(&a.workdir, a.epoch)?;
    for p in [&zpath, &config] {
        if !p.exists() {
            bail!(
                "{} not found (is {} a train-vae output folder with epoch {}?)",
                p.display(),
                a.workdir.display(),
                a.epoch
            );
        }
    }
    let landscape = a
        .landscape_dir
        .clone()
        .unwrap_or_else(|| default_landscape_dir(&analyze_dir));
    if !landscape.is_dir() {
        bail!(
            "{}: landscape folder not found: run analyze-landscape first",
            landscape.display()
        );
    }
    let out = a
        .outdir
        .clone()
        .unwrap_or_else(|| landscape.join("landscape_full"));
    let lat = load_z(&zpath)?;
    let (n, zdim) = (lat.n, lat.zdim);
    eprintln!("recomputing the volume PCA of {}", landscape.display());
    let pca = landscape_pca(&landscape, a.vol_ind.as_deref())?;
    eprintln!(
        "{} voxels in the mask, {} components; largest difference from the stored sketch coordinates: {:.2e} of their range",
        pca.voxels.len(),
        pca.pc_dim,
        pca.stored_rel_diff
    );
    if pca.stored_rel_diff > 1e-2 {
        eprintln!(
            "warning: the recomputed volume PCA differs from {}'s stored coordinates by {:.1} %",
            landscape.display(),
            100.0 * pca.stored_rel_diff
        );
    }
    if let Some(dd) = a.downsample {
        if dd != pca.d {
            bail!(
                "-d {dd}: the volumes must have the box size of {} ({})",
                landscape.join("mask.mrc").display(),
                pca.d
            );
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let z_sampled_pkl = out.join("z.sampled.pkl");
    let emb_pkl = out.join("vol_pca_sampled.pkl");
    let (zs, emb) = if a.skip_vol {
        for p in [&z_sampled_pkl, &emb_pkl] {
            if !p.exists() {
                bail!("{} missing: cannot use --skip-vol", p.display());
            }
        }
        let (m, _, zs) = read_f32_pkl(&z_sampled_pkl, Some(zdim))?;
        let (m2, _, emb) = read_f32_pkl(&emb_pkl, Some(pca.pc_dim))?;
        if m != m2 {
            bail!(
                "{} has {m} rows but {} has {m2}",
                z_sampled_pkl.display(),
                emb_pkl.display()
            );
        }
        (zs, emb)
    } else {
        if !weights.exists() {
            bail!("{} not found", weights.display());
        }
        let m = if a.training_volumes > n {
            eprintln!(
                "note: -N {} is more than the {n} particles; using all of them",
                a.training_volumes
            );
            n
        } else {
            a.training_volumes
        };
        if m == 0 {
            bail!("-N must be positive");
        }
        let ind = sample_indices(n, m, a.seed);
        let zs: Vec<f32> = ind
            .iter()
            .flat_map(|&i| lat.z[i * zdim..(i + 1) * zdim].iter().copied())
            .collect();
        f32_pkl(&z_sampled_pkl, vec![m, zdim], zs.clone())?;
        write_pkl(
            out.join("ind.sampled.pkl"),
            &PyValue::Array(NdArray::from_i64(
                vec![m],
                ind.iter().map(|&i| i as i64).collect(),
            )?),
        )?;
        let model = LoadedModel::load(&weights, &config)?;
        if model.zdim != zdim {
            bail!(
                "{}: latents have zdim {zdim} but the model {} has zdim {}",
                zpath.display(),
                weights.display(),
                model.zdim
            );
        }
        let d = pca.d;
        if d > model.d || !d.is_multiple_of(2) {
            bail!(
                "the mask's box size {d} must be even and at most the training size {}",
                model.d
            );
        }
        eprintln!("decoding {m} volumes of {d}³");
        let pb = progress::bar(m as u64, "volumes");
        let mut emb = Vec::with_capacity(m * pca.pc_dim);
        for zi in zs.chunks(zdim) {
            let v = model.volume(Some(zi), Some(d))?;
            let v: Vec<f32> = if a.flip {
                v.chunks(d * d).rev().flatten().copied().collect()
            } else {
                v
            };
            emb.extend(pca.project(&v).iter().map(|&c| c as f32));
            pb.inc(1);
        }
        pb.finish_and_clear();
        f32_pkl(&emb_pkl, vec![m, pca.pc_dim], emb.clone())?;
        (zs, emb)
    };
    let cfg = RegressorConfig {
        layers: a.layers,
        dim: a.dim,
        lr: a.lr,
        epochs: a.epochs,
        batch: a.batch_size,
        eval_batch: a.test_batch_size,
        seed: a.seed,
    };
    eprintln!(
        "training z → volume PCA: {} volumes, ResidLinearMLP({zdim}, {}, {}, {}), {} epochs",
        zs.len() / zdim,
        a.layers,
        a.dim,
        pca.pc_dim,
        a.epochs
    );
    let pb = progress::bar(a.epochs as u64, "train");
    let reg = train_regressor(&zs, &emb, zdim, pca.pc_dim, &cfg, |e, tr, te| {
        pb.inc(1);
        if e == 1 || e % 10 == 0 || e == a.epochs {
            pb.suspend(|| eprintln!("epoch {e}: train MSE {tr:.6}, test MSE {te:.6}"));
        }
    })?;
    pb.finish_and_clear();
    let mut loss_txt = String::from("# epoch train_mse test_mse\n");
    for (i, (tr, te)) in reg.losses.iter().enumerate() {
        loss_txt.push_str(&format!("{} {tr:.8e} {te:.8e}\n", i + 1));
    }
    crate::io::atomic::write_bytes_atomic(out.join("loss.txt"), loss_txt.as_bytes())?;
    reg.save_torch(&out.join("model.pt"))?;
    let all = reg.predict(&lat.z)?;
    f32_pkl(
        &out.join("vol_pca_all.pkl"),
        vec![n, pca.pc_dim],
        all.clone(),
    )?;
    if pca.pc_dim >= 2 {
        let x: Vec<f64> = all.chunks(pca.pc_dim).map(|r| r[0] as f64).collect();
        let y: Vec<f64> = all.chunks(pca.pc_dim).map(|r| r[1] as f64).collect();
        density_plot(
            &out.join("volpca_landscape.png"),
            &x,
            &y,
            "Volume PC1",
            "Volume PC2",
        )?;
    }
    let (n_clusters, q) = umap_and_clusters(&out, &all, n, pca.pc_dim, &a)?;
    let last = reg.losses.last().copied().unwrap_or((f64::NAN, f64::NAN));
    eprintln!(
        "embedded {n} particles into {} volume PCs in {} (final train MSE {:.4e}, test MSE {:.4e}); \
         {n_clusters} Leiden clusters (modularity {q:.4} at resolution {}) in {:.1} s",
        pca.pc_dim,
        out.display(),
        last.0,
        last.1,
        a.resolution,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
