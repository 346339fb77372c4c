//! `analyze-landscape`: the reference's `analyze_landscape` for a `train-vae` run (ours or
//! cryoDRGN's): describe the latent space by comparing volumes directly. The latents `z.EPOCH.pkl`
//! are sketched by K k-means centres (`-N`, each moved to its nearest particle), one volume is
//! decoded per centre with `weights.EPOCH` into `kmeans{K}/`, a mask is made (the union of each
//! volume's thresholded, dilated mask, or `--mask`), and the masked volumes are analysed with PCA
//! (`vol_pca_{K}.pkl`, volumes along the PCs in `vol_pcs/`) and agglomerative clustering into M
//! states (`sketch_clustering_{linkage}_{M}/`: labels per sketch volume and per particle, state
//! mean and std volumes, plots on the volume PCs and on the latent embedding). See
//! [`crate::analysis::landscape`] for every file written.
//!
//! The latent embedding drawn with the clusters is `analyze.EPOCH/umap.pkl` (written by
//! `analyze`, ours or cryoDRGN's, for zdim > 2) when present, else `analyze.EPOCH/tsne.pkl` (what
//! our `analyze` wrote before it had UMAP), else the PCA of z (`z_pca`; for zdim 1, z itself).
//! Only the masked voxels of the K volumes are held in memory.
//!
//! Example: `cryofield analyze-landscape out/ 19 -N 500 -M 8 -d 64`

use crate::analysis::landscape::{
    run_landscape, Embedding, LandscapeOptions, Linkage, MaskChoice, VolumeSource,
};
use crate::analysis::latent::load_z;
use crate::analysis::pca::Pca;
use crate::cli::analyze::run_files;
use crate::io::array::NdArray;
use crate::io::pkl::{read_pkl_all, write_pkl, PyValue};
use crate::meta::load_indices;
use crate::model::load::{read_record, LoadedModel};
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Landscape analysis of a trained VAE.
#[derive(Debug, clap::Args)]
#[command(about = "Landscape analysis of a train-vae run: PCA and clustering of sketched volumes")]
pub struct Args {
    /// The training output folder
    pub workdir: PathBuf,
    /// Epoch to analyze, as numbered in z.EPOCH.pkl; −1: a cryoDRGN run's final z.pkl / weights.pkl
    /// (into WORKDIR/landscape), or our run's last checkpoint
    #[arg(allow_hyphen_values = true)]
    pub epoch: i64,
    /// Output folder (default WORKDIR/landscape.EPOCH)
    #[arg(short = 'o', long = "outdir")]
    pub outdir: Option<PathBuf>,
    /// Do not look for analyze's embedding (umap.pkl / tsne.pkl): draw the clusters on the PCA of z
    #[arg(long = "skip-umap")]
    pub skip_umap: bool,
    /// Index .pkl of the sketch volumes (0-based) to keep for PCA and clustering
    #[arg(long = "vol-ind")]
    pub vol_ind: Option<PathBuf>,
    /// Number of sketch volumes K (k-means centres; at most the number of particles)
    #[arg(short = 'N', long = "sketch-size", default_value_t = 1000)]
    pub sketch_size: usize,
    /// Pixel size (Å) of the sketch volumes, used by the mask's dilation and edge (default: the
    /// training CTF's pixel size × D/d, else 1; with --skip-vol the existing volumes')
    #[arg(long = "Apix")]
    pub apix: Option<f32>,
    /// Flip handedness of the volumes (reverse the slowest axis)
    #[arg(long)]
    pub flip: bool,
    /// Box size of the sketch volumes (even, ≤ D; default min(128, D))
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
    /// Reuse the sketch and volumes of an earlier run in the output folder
    #[arg(long = "skip-vol")]
    pub skip_vol: bool,
    /// Number of the first volume file (vol_001.mrc with the default)
    #[arg(long = "vol-start-index", default_value_t = 1)]
    pub vol_start_index: usize,
    /// Density threshold of the mask (default: the mean over the volumes of half their 99.99th
    /// percentile)
    #[arg(long = "thresh", allow_negative_numbers = true)]
    pub thresh: Option<f32>,
    /// Dilate the thresholded mask by this much (Å)
    #[arg(long, default_value_t = 5.0)]
    pub dilate: f64,
    /// Width of the mask's cosine edge (Å)
    #[arg(long = "cosine-edge", default_value_t = 0.0)]
    pub cosine_edge: f64,
    /// A mask .mrc of the volumes' box size, instead of making one
    #[arg(long, value_name = "MRC")]
    pub mask: Option<PathBuf>,
    /// Linkage of the agglomerative clustering: average, complete, single or ward
    #[arg(long, default_value = "average")]
    pub linkage: Linkage,
    /// Number of clusters
    #[arg(short = 'M', default_value_t = 10)]
    pub m: usize,
    /// Number of volume PCs
    #[arg(long = "pc-dim", default_value_t = 20)]
    pub pc_dim: usize,
    /// Number of volume PCs to traverse and plot
    #[arg(long = "plot-dim", default_value_t = 5)]
    pub plot_dim: usize,
    /// Random seed (k-means)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `analyze.E` → `landscape.E` (`analyze` → `landscape`) beside it.
fn landscape_dir(analyze_dir: &Path) -> PathBuf {
    let name = analyze_dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("analyze")
        .replacen("analyze", "landscape", 1);
    analyze_dir.with_file_name(name)
}

/// The embedding of analyze (`umap.pkl`; `tsne.pkl` from our older `analyze`) and its file name,
/// else the PCA of z (z itself for zdim 1).
fn embedding(
    analyze_dir: &Path,
    z: &[f32],
    n: usize,
    zdim: usize,
    skip: bool,
) -> anyhow::Result<(Embedding, Option<&'static str>)> {
    if !skip {
        for (file, name, lx, ly) in [
            ("umap.pkl", "umap", "UMAP1", "UMAP2"),
            ("tsne.pkl", "tsne", "t-SNE1", "t-SNE2"),
        ] {
            let p = analyze_dir.join(file);
            if !p.exists() {
                continue;
            }
            let vals = read_pkl_all(&p)?;
            match vals.first().and_then(PyValue::as_array) {
                Some(a) if a.shape == [n, 2] => {
                    let e = Embedding {
                        name: name.into(),
                        x_label: lx.into(),
                        y_label: ly.into(),
                        xy: a.to_f64(),
                    };
                    return Ok((e, Some(file)));
                }
                _ => eprintln!(
                    "warning: {} is not an ({n}, 2) array; using the PCA of z instead",
                    p.display()
                ),
            }
        }
    }
    if zdim == 1 {
        let e = Embedding {
            name: "z".into(),
            x_label: "z".into(),
            y_label: String::new(),
            xy: z.iter().flat_map(|&v| [v as f64, 0.0]).collect(),
        };
        return Ok((e, None));
    }
    let pca = Pca::fit(z, n, zdim)?;
    let pc = pca.transform(z);
    let evr = &pca.explained_variance_ratio;
    let e = Embedding {
        name: "z_pca".into(),
        x_label: format!("PC1 ({:.2})", evr[0]),
        y_label: format!("PC2 ({:.2})", evr[1]),
        xy: pc.chunks(zdim).flat_map(|r| [r[0], r[1]]).collect(),
    };
    Ok((e, None))
}

/// The run's `--ind` (original particle index of each particle), if it had one and the file is
/// still there.
fn particle_ind(config: &Path, n: usize) -> anyhow::Result<Option<Vec<usize>>> {
    let record = if crate::model::cryodrgn::is_yaml(config) {
        crate::model::cryodrgn::record_from_yaml(config)?
    } else {
        read_record(config)?
    };
    let Some(p) = record.config.ind else {
        return Ok(None);
    };
    if !p.exists() {
        eprintln!(
            "warning: the run's index file {} is gone; particle indices are written 0..{n}",
            p.display()
        );
        return Ok(None);
    }
    Ok(Some(load_indices(&p, usize::MAX)?))
}

/// Run `analyze-landscape`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (zpath, weights, config, analyze_dir) = run_files(&a.workdir, a.epoch)?;
    let mut needed = vec![&zpath, &config];
    if !a.skip_vol {
        needed.push(&weights);
    }
    for p in needed {
        if !p.exists() {
            bail!(
                "{} not found (is {} a train-vae output folder with epoch {}?)",
                p.display(),
                a.workdir.display(),
                a.epoch
            );
        }
    }
    if let Some(m) = &a.mask {
        if !m.exists() {
            bail!("{}: mask file not found", m.display());
        }
    }
    let out = a
        .outdir
        .clone()
        .unwrap_or_else(|| landscape_dir(&analyze_dir));
    let lat = load_z(&zpath)?;
    let (n, zdim) = (lat.n, lat.zdim);
    let k = if a.sketch_size > n {
        eprintln!(
            "note: --sketch-size {} is more than the {n} particles; using K = {n}",
            a.sketch_size
        );
        n
    } else {
        a.sketch_size
    };
    let vol_ind = match &a.vol_ind {
        Some(p) => Some(load_indices(p, k)?),
        None => None,
    };
    let mask = match &a.mask {
        Some(p) => MaskChoice::File(p.clone()),
        None => MaskChoice::Generate {
            thresh: a.thresh,
            dilate: a.dilate,
            cosine_edge: a.cosine_edge,
        },
    };
    let mut opts = LandscapeOptions {
        outdir: out.clone(),
        k,
        vol_start_index: a.vol_start_index,
        apix: a.apix,
        mask,
        pc_dim: a.pc_dim,
        plot_dim: a.plot_dim,
        m: a.m,
        linkage: a.linkage,
        vol_ind,
        particle_ind: particle_ind(&config, n)?,
        seed: a.seed,
    };
    let (emb, emb_file) = embedding(&analyze_dir, &lat.z, n, zdim, a.skip_umap)?;
    let rep = if a.skip_vol {
        run_landscape(&lat.z, n, zdim, VolumeSource::Existing, Some(&emb), &opts)?
    } else {
        let model = LoadedModel::load(&weights, &config)?;
        if model.zdim != zdim {
            bail!(
                "{}: latents have zdim {zdim} but the model {} has zdim {}",
                zpath.display(),
                weights.display(),
                model.zdim
            );
        }
        let big = model.d;
        let d = a.downsample.unwrap_or(big.min(128));
        if d < 2 || !d.is_multiple_of(2) || d > big {
            bail!("--downsample {d}: the box must be even and at most the training size {big}");
        }
        opts.apix = opts
            .apix
            .or_else(|| model.apix().map(|p| p * big as f32 / d as f32));
        let flip = a.flip;
        let mut decode = |zi: &[f32]| -> crate::Result<Vec<f32>> {
            let v = model.volume(Some(zi), Some(d))?;
            Ok(if flip {
                v.chunks(d * d).rev().flatten().copied().collect()
            } else {
                v
            })
        };
        run_landscape(
            &lat.z,
            n,
            zdim,
            VolumeSource::Decode {
                d,
                decode: &mut decode,
            },
            Some(&emb),
            &opts,
        )?
    };
    if let Some(file) = emb_file {
        // the reference keeps a copy of analyze's embedding beside its results
        let xy: Vec<f32> = emb.xy.iter().map(|&v| v as f32).collect();
        write_pkl(
            out.join(file),
            &PyValue::Array(NdArray::from_f32(vec![n, 2], xy)?),
        )?;
    }
    eprintln!(
        "landscape of {} sketch volumes ({}³, {} masked voxels) in {}; {} clusters in {}",
        rep.selected.len(),
        rep.d,
        rep.mask_voxels,
        out.display(),
        a.m,
        rep.clustering_dir.display()
    );
    Ok(())
}
