//! Latent-space analysis without volumes: loading z, writing z tables like `np.savetxt`, and
//! [`run_basic`], which writes what the reference's `analyze` writes apart from the volumes and
//! returns the z points a volume generator should decode into each folder.
//!
//! Written by [`run_basic`] for `zdim ≥ 2` (`K` = number of k-means clusters, default 20):
//!
//! | file | content |
//! |---|---|
//! | `z_pca.png` | scatter of PC1 vs PC2, explained-variance ratio in the axis labels |
//! | `z_pca_hist.png` | histograms of PC1 and PC2 (two files: `pc1_hist.png`, `pc2_hist.png`) |
//! | `umap.pkl` | 2-D UMAP embedding, float32 `(N, 2)` as umap-learn's (zdim > 2; [`crate::analysis::umap`]) |
//! | `umap.png` | scatter of that embedding |
//! | `kmeans{K}/labels.pkl` | int64 cluster label per particle `(N)` |
//! | `kmeans{K}/centers.txt`, `centers_ind.txt` | on-data centers (nearest particle to each k-means mean) and their indices |
//! | `kmeans{K}/z_pca.png`, `kmeans{K}/umap.png` | scatter with the numbered centers |
//! | `pc{1,2}/z_values.txt` | 10 points along PC1/PC2 between the 5th and 95th percentiles |
//! | `pc{1,2}/pca_traversal.png` | those points on the PC scatter |
//! | `pc{1,2}/umap_traversal.png`, `…_connected.png` | their nearest particles on the UMAP scatter |
//!
//! The UMAP files are written for zdim > 2 unless `skip_embedding` (the reference's `--skip-umap`).
//!
//! | `z_pca_hexbin.png`, `umap_hexbin.png`, `kmeans{K}/z_pca_hex.png`, `kmeans{K}/umap_hex.png` | the same as densities (log counts on a 100 × 100 grid standing in for seaborn's hexbins), the last two with the numbered centers |
//!
//! Not drawn (seaborn styles of the reference): `z_pca_marginals.png`, `umap_marginals.png`
//! (scatters with marginal histograms), `pc{1,2}/umap.png` (UMAP coloured by the PC value).
//!
//! For `zdim = 1` (the reference's `analyze_z1`): `z.png` (z against particle index),
//! `z_hist.png` and `z_values.txt` with the 5th..95th percentiles of z.

use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::analysis::kmeans::{kmeans, nearest_points};
use crate::analysis::pca::{linspace, pc_traj_values, percentile, Pca};
use crate::analysis::plot::{
    auto_range, chart_builder, draw_legend, draw_mesh, histogram, render, scatter_plot, PlotStyle,
    FONT, TAB10,
};
use crate::analysis::umap::{umap, UmapOptions};
use crate::error::{Error, IoContext, Result};
use crate::io::array::NdArray;
use crate::io::atomic::write_atomic;
use crate::io::npy::read_npy;
use crate::io::pkl::{read_pkl_all, write_pkl, PyValue};

/// Latents `(n, zdim)` in f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Latents {
    /// values `(n, zdim)`
    pub z: Vec<f32>,
    /// number of particles
    pub n: usize,
    /// latent dimension
    pub zdim: usize,
}

fn latents_from_array(path: &Path, a: &NdArray) -> Result<Latents> {
    let (n, zdim) = match a.shape.as_slice() {
        [n] => (*n, 1),
        [n, d] => (*n, *d),
        s => {
            return Err(Error::format(
                path,
                format!("latents must be an (N, zdim) array, got shape {s:?}"),
            ))
        }
    };
    if n == 0 || zdim == 0 {
        return Err(Error::format(path, "latent array is empty"));
    }
    Ok(Latents {
        z: a.to_f32(),
        n,
        zdim,
    })
}

/// Reads latents from a `.pkl` (the first pickle: `z_mu` of cryoDRGN's `z.N.pkl`), `.npy`, or a
/// whitespace-separated text file (one particle per line, as `np.savetxt`).
pub fn load_z(path: impl AsRef<Path>) -> Result<Latents> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "pkl" => {
            let vals = read_pkl_all(path)?;
            let a = vals.first().and_then(PyValue::as_array).ok_or_else(|| {
                Error::format(path, "the first pickle is not a numpy array of latents")
            })?;
            latents_from_array(path, a)
        }
        "npy" => latents_from_array(path, &read_npy(path)?),
        _ => {
            let text = std::fs::read_to_string(path).at(path)?;
            let mut z = Vec::new();
            let mut zdim = 0;
            let mut n = 0;
            for (ln, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let row = line
                    .split_whitespace()
                    .map(|t| t.parse::<f32>())
                    .collect::<std::result::Result<Vec<f32>, _>>()
                    .map_err(|e| Error::format(path, format!("line {}: {e}", ln + 1)))?;
                if n == 0 {
                    zdim = row.len();
                } else if row.len() != zdim {
                    return Err(Error::format(
                        path,
                        format!("line {}: {} values, expected {zdim}", ln + 1, row.len()),
                    ));
                }
                z.extend(row);
                n += 1;
            }
            if n == 0 {
                return Err(Error::format(path, "no latent values"));
            }
            Ok(Latents { z, n, zdim })
        }
    }
}

/// `x` as numpy's `%.18e` (`-1.234000000000000000e+00`).
pub fn fmt_e18(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let s = format!("{x:.18e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

/// Writes `(rows, ncols)` values as `np.savetxt` does by default (`%.18e`, space-separated, one
/// row per line), atomically.
pub fn savetxt(path: impl AsRef<Path>, values: &[f64], ncols: usize) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, |w| {
        for row in values.chunks(ncols.max(1)) {
            let line: Vec<String> = row.iter().map(|&v| fmt_e18(v)).collect();
            writeln!(w, "{}", line.join(" ")).at(path)?;
        }
        Ok(())
    })
}

/// Writes integers one per line (`np.savetxt(..., fmt="%d")`), atomically.
pub fn savetxt_int(path: impl AsRef<Path>, values: &[usize]) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, |w| {
        for v in values {
            writeln!(w, "{v}").at(path)?;
        }
        Ok(())
    })
}

/// f32 values widened to f64 (what `np.savetxt` prints for a float32 array).
pub fn widen(z: &[f32]) -> Vec<f64> {
    z.iter().map(|&v| v as f64).collect()
}

/// What to draw over a scatter of all points.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// cluster label of every point (colours cycle through tab10); grey when `None`
    pub labels: Option<&'a [usize]>,
    /// points `(x, y)` drawn as black-edged markers, numbered from 0
    pub points: &'a [(f64, f64)],
    /// join the marked points with a dashed-looking line (a traversal)
    pub connect: bool,
    /// labelled polylines drawn over the points in tab10 colours from red on, with a legend
    /// (e.g. an interpolation path beside the straight line)
    pub paths: &'a [(&'a str, &'a [(f64, f64)])],
}

/// Scatter of `(x[i], y[i])` with optional cluster colours and numbered marked points, to a PNG.
pub fn marked_scatter(
    path: impl AsRef<Path>,
    x: &[f64],
    y: &[f64],
    marks: &Marks<'_>,
    style: &PlotStyle,
) -> Result<()> {
    let path = path.as_ref();
    if x.len() != y.len() || marks.labels.is_some_and(|l| l.len() != x.len()) {
        return Err(Error::Shape {
            what: format!("{}: scatter", path.display()),
            expected: format!("{} y values and labels", x.len()),
            got: format!("{} y values", y.len()),
        });
    }
    let mx: Vec<f64> = marks.points.iter().map(|p| p.0).collect();
    let my: Vec<f64> = marks.points.iter().map(|p| p.1).collect();
    let px: Vec<f64> = marks
        .paths
        .iter()
        .flat_map(|p| p.1.iter().map(|q| q.0))
        .collect();
    let py: Vec<f64> = marks
        .paths
        .iter()
        .flat_map(|p| p.1.iter().map(|q| q.1))
        .collect();
    let xr = style
        .x_range
        .unwrap_or_else(|| auto_range(x.iter().chain(&mx).chain(&px)));
    let yr = style
        .y_range
        .unwrap_or_else(|| auto_range(y.iter().chain(&my).chain(&py)));
    render(path, style.size, |root| {
        root.fill(&WHITE)?;
        let mut chart = chart_builder(root, style).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        draw_mesh(&mut chart, style)?;
        let r = if x.len() > 10_000 { 1 } else { 2 };
        chart.draw_series(x.iter().zip(y).enumerate().filter_map(|(i, (&a, &b))| {
            let c = match marks.labels {
                Some(l) => TAB10[l[i] % TAB10.len()].mix(0.5),
                None => RGBColor(150, 150, 150).mix(0.3),
            };
            (a.is_finite() && b.is_finite()).then(|| Circle::new((a, b), r, c.filled()))
        }))?;
        if marks.connect && marks.points.len() > 1 {
            chart.draw_series(LineSeries::new(
                marks.points.iter().copied(),
                BLACK.stroke_width(2),
            ))?;
        }
        for (i, (label, pts)) in marks.paths.iter().enumerate() {
            let c = TAB10[(3 + i) % TAB10.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(3)))?
                .label(*label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                });
        }
        if !marks.paths.is_empty() {
            draw_legend(&mut chart)?;
        }
        for (k, &(a, b)) in marks.points.iter().enumerate() {
            chart.draw_series([
                Circle::new((a, b), 7, BLACK.filled()),
                Circle::new((a, b), 5, RGBColor(255, 215, 0).filled()),
            ])?;
            chart.draw_series([EmptyElement::at((a, b))
                + Text::new(
                    // numbered from 1, as the volumes (vol_001.mrc) and select-clusters' --sel
                    (k + 1).to_string(),
                    (8, -20),
                    (FONT, 18).into_font().color(&BLACK),
                )])?;
        }
        Ok(())
    })
}

/// A one-panel density of the `(n, 2)` points `xy` with the numbered points `marks` (from 1, as
/// the volumes), for the reference's seaborn hexbin plots.
fn hexbin(path: &Path, xy: &[f64], marks: &[(f64, f64)], axes: (&str, &str)) -> Result<()> {
    let labels: Vec<String> = (1..=marks.len()).map(|k| k.to_string()).collect();
    crate::analysis::convergence_plots::density_grid_axes(
        path,
        &[crate::analysis::convergence_plots::DensityPanel {
            title: String::new(),
            xy,
            marks,
            mark_labels: &labels,
        }],
        "particles",
        axes,
    )
}

/// Settings of [`run_basic_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct BasicOptions {
    /// k-means clusters (the reference's `--ksample`, default 20; clamped to N)
    pub k: usize,
    /// principal components to traverse (reference `--pc`, default 2)
    pub num_pcs: usize,
    /// points per PC traversal (reference `--n-per-pc`, default 10)
    pub n_per_pc: usize,
    /// skip the 2-D embedding (reference `--skip-umap`)
    pub skip_embedding: bool,
    /// seed of k-means and of the embedding's subsample
    pub seed: u64,
}

impl Default for BasicOptions {
    fn default() -> Self {
        BasicOptions {
            k: 20,
            num_pcs: 2,
            n_per_pc: 10,
            skip_embedding: false,
            seed: 0,
        }
    }
}

/// A set of z points `(m, zdim)` to decode into volumes in `outdir` (where `z_values.txt`
/// already holds them).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeJob {
    /// folder for the volumes (`pc1`, `kmeans20`, ...)
    pub outdir: PathBuf,
    /// z values `(m, zdim)`
    pub z: Vec<f32>,
}

/// What [`run_basic`] computed.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicReport {
    /// the PCA (`None` for zdim = 1)
    pub pca: Option<Pca>,
    /// k-means labels `(N)` (empty for zdim = 1)
    pub labels: Vec<usize>,
    /// on-data k-means center indices `(K)`
    pub centers_ind: Vec<usize>,
    /// the 2-D embedding `(N, 2)` when computed
    pub embedding: Option<Vec<f64>>,
    /// z points for the volume generator, one job per output folder
    pub volume_jobs: Vec<VolumeJob>,
}

/// [`run_basic_with`] with the reference's defaults (K = 20, PCs 1–2, 10 points per PC).
pub fn run_basic(
    z: &[f32],
    n: usize,
    zdim: usize,
    outdir: impl AsRef<Path>,
    seed: u64,
) -> Result<BasicReport> {
    run_basic_with(
        z,
        n,
        zdim,
        outdir,
        &BasicOptions {
            seed,
            ..BasicOptions::default()
        },
    )
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).at(p)
}

/// The latent analysis of the reference's `analyze` without volumes (see the module doc for
/// the files written under `outdir`), returning the z points to decode.
pub fn run_basic_with(
    z: &[f32],
    n: usize,
    zdim: usize,
    outdir: impl AsRef<Path>,
    opts: &BasicOptions,
) -> Result<BasicReport> {
    let outdir = outdir.as_ref();
    crate::analysis::pca::check_z("analysis input", z, n, zdim)?;
    mkdir(outdir)?;
    if zdim == 1 {
        let v = widen(z);
        let idx: Vec<f64> = (0..n).map(|i| i as f64).collect();
        scatter_plot(
            outdir.join("z.png"),
            &idx,
            &v,
            &PlotStyle {
                x_label: "particle".into(),
                y_label: "z".into(),
                ..PlotStyle::default()
            },
        )?;
        histogram(
            outdir.join("z_hist.png"),
            &v,
            50,
            &PlotStyle {
                x_label: "z".into(),
                y_label: "count".into(),
                ..PlotStyle::default()
            },
        )?;
        let traj: Vec<f64> = linspace(5.0, 95.0, opts.n_per_pc)
            .into_iter()
            .map(|q| percentile(&v, q))
            .collect();
        savetxt(outdir.join("z_values.txt"), &traj, 1)?;
        return Ok(BasicReport {
            pca: None,
            labels: vec![],
            centers_ind: vec![],
            embedding: None,
            volume_jobs: vec![VolumeJob {
                outdir: outdir.to_path_buf(),
                z: traj.iter().map(|&x| x as f32).collect(),
            }],
        });
    }

    let pca = Pca::fit(z, n, zdim)?;
    let pc = pca.transform(z);
    let col = |k: usize| -> Vec<f64> { pc.iter().skip(k).step_by(zdim).copied().collect() };
    let (pc1, pc2) = (col(0), col(1));
    let evr = &pca.explained_variance_ratio;
    let pc_style = PlotStyle {
        x_label: format!("PC1 ({:.2})", evr[0]),
        y_label: format!("PC2 ({:.2})", evr[1]),
        size: (800, 800),
        ..PlotStyle::default()
    };
    scatter_plot(outdir.join("z_pca.png"), &pc1, &pc2, &pc_style)?;
    let pc_xy: Vec<f64> = pc1.iter().zip(&pc2).flat_map(|(&a, &b)| [a, b]).collect();
    let pc_axes = (pc_style.x_label.as_str(), pc_style.y_label.as_str());
    hexbin(&outdir.join("z_pca_hexbin.png"), &pc_xy, &[], pc_axes)?;
    for (k, c) in [(1, &pc1), (2, &pc2)] {
        histogram(
            outdir.join(format!("pc{k}_hist.png")),
            c,
            50,
            &PlotStyle {
                x_label: format!("PC{k} ({:.2})", evr[k - 1]),
                y_label: "count".into(),
                ..PlotStyle::default()
            },
        )?;
    }

    // The reference's UMAP of z (zdim > 2): umap.pkl and umap.png.
    let embedding = if zdim > 2 && !opts.skip_embedding {
        let (emb, _) = umap(
            z,
            n,
            zdim,
            &UmapOptions {
                seed: opts.seed,
                ..UmapOptions::default()
            },
        )?;
        write_pkl(
            outdir.join("umap.pkl"),
            &PyValue::Array(NdArray::from_f32(
                vec![n, 2],
                emb.iter().map(|&v| v as f32).collect(),
            )?),
        )?;
        Some(emb)
    } else {
        None
    };
    let umap_xy: Option<(Vec<f64>, Vec<f64>)> = embedding.as_ref().map(|e| {
        (
            e.iter().step_by(2).copied().collect(),
            e.iter().skip(1).step_by(2).copied().collect(),
        )
    });
    let umap_style = PlotStyle {
        x_label: "UMAP1".into(),
        y_label: "UMAP2".into(),
        size: (800, 800),
        ..PlotStyle::default()
    };
    if let Some((ex, ey)) = &umap_xy {
        scatter_plot(outdir.join("umap.png"), ex, ey, &umap_style)?;
    }
    if let Some(e) = &embedding {
        hexbin(&outdir.join("umap_hexbin.png"), e, &[], ("UMAP1", "UMAP2"))?;
    }

    let mut jobs = Vec::new();
    for dim in 1..=opts.num_pcs.min(zdim) {
        let vals = pc_traj_values(&col(dim - 1), opts.n_per_pc, (5.0, 95.0), false)?;
        let traj = pca.pc_traj(dim, &vals)?;
        let dir = outdir.join(format!("pc{dim}"));
        mkdir(&dir)?;
        savetxt(dir.join("z_values.txt"), &traj, zdim)?;
        let tz: Vec<f32> = traj.iter().map(|&v| v as f32).collect();
        let tpc = pca.transform(&tz);
        let pts: Vec<(f64, f64)> = tpc.chunks(zdim).map(|r| (r[0], r[1])).collect();
        marked_scatter(
            dir.join("pca_traversal.png"),
            &pc1,
            &pc2,
            &Marks {
                labels: None,
                points: &pts,
                connect: true,
                paths: &[],
            },
            &pc_style,
        )?;
        if let Some((ex, ey)) = &umap_xy {
            // As the reference: the traversal drawn at its nearest particles.
            let near = nearest_points(z, zdim, &traj);
            let upts: Vec<(f64, f64)> = near.iter().map(|&i| (ex[i], ey[i])).collect();
            for (file, connect) in [
                ("umap_traversal.png", false),
                ("umap_traversal_connected.png", true),
            ] {
                marked_scatter(
                    dir.join(file),
                    ex,
                    ey,
                    &Marks {
                        labels: None,
                        points: &upts,
                        connect,
                        paths: &[],
                    },
                    &umap_style,
                )?;
            }
        }
        jobs.push(VolumeJob { outdir: dir, z: tz });
    }

    let k = opts.k.min(n);
    let km = kmeans(z, n, zdim, k, 10, opts.seed)?;
    let centers_ind = nearest_points(z, zdim, &km.centers);
    let centers: Vec<f32> = centers_ind
        .iter()
        .flat_map(|&i| z[i * zdim..(i + 1) * zdim].iter().copied())
        .collect();
    let kdir = outdir.join(format!("kmeans{k}"));
    mkdir(&kdir)?;
    let labels_i64: Vec<i64> = km.labels.iter().map(|&l| l as i64).collect();
    write_pkl(
        kdir.join("labels.pkl"),
        &PyValue::Array(NdArray::from_i64(vec![n], labels_i64)?),
    )?;
    savetxt(kdir.join("centers.txt"), &widen(&centers), zdim)?;
    savetxt_int(kdir.join("centers_ind.txt"), &centers_ind)?;
    let cpts: Vec<(f64, f64)> = centers_ind.iter().map(|&i| (pc1[i], pc2[i])).collect();
    marked_scatter(
        kdir.join("z_pca.png"),
        &pc1,
        &pc2,
        &Marks {
            labels: Some(&km.labels),
            points: &cpts,
            connect: false,
            paths: &[],
        },
        &pc_style,
    )?;
    hexbin(&kdir.join("z_pca_hex.png"), &pc_xy, &cpts, pc_axes)?;

    if let Some((ex, ey)) = &umap_xy {
        let epts: Vec<(f64, f64)> = centers_ind.iter().map(|&i| (ex[i], ey[i])).collect();
        if let Some(e) = &embedding {
            hexbin(&kdir.join("umap_hex.png"), e, &epts, ("UMAP1", "UMAP2"))?;
        }
        marked_scatter(
            kdir.join("umap.png"),
            ex,
            ey,
            &Marks {
                labels: Some(&km.labels),
                points: &epts,
                connect: false,
                paths: &[],
            },
            &umap_style,
        )?;
    }
    jobs.push(VolumeJob {
        outdir: kdir,
        z: centers,
    });
    Ok(BasicReport {
        pca: Some(pca),
        labels: km.labels,
        centers_ind,
        embedding,
        volume_jobs: jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e18_matches_numpy() {
        // '%.18e' % np.float32(-1.6868277) and of 0.0, 1e-5
        assert_eq!(
            fmt_e18(-1.686_827_659_606_933_6),
            "-1.686827659606933594e+00"
        );
        assert_eq!(fmt_e18(0.0), "0.000000000000000000e+00");
        assert_eq!(fmt_e18(1e-5), "1.000000000000000082e-05");
        assert_eq!(fmt_e18(12345.0), "1.234500000000000000e+04");
    }
}
