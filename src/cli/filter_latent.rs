//! `filter`: select particles of a `train-vae` run by their latent z, without a window (a
//! non-interactive cryoDRGN `filter`). Reads `OUTDIR/z.EPOCH.pkl` and, for `--sel`, `analyze`'s
//! `OUTDIR/analyze.EPOCH/kmeans{K}/labels.pkl`; keeps the particles that pass every criterion given:
//!
//! - `--kmeans K --sel 1 4`: k-means cluster among those (counted from 1, as `select-clusters`
//!   and analyze's `vol_001.mrc`);
//! - `--plot-inds IND.pkl`: these positions of z.EPOCH.pkl (a previous selection);
//! - `--z-range DIM LO HI`: `LO ≤ z[:, DIM] ≤ HI` (DIM 0-based);
//! - `--pc-polygon "x1,y1 x2,y2 x3,y3 …"`: (PC1, PC2) of z inside the polygon (even–odd rule), in
//!   the coordinates of `analyze`'s `z_pca.png` (the same PCA).
//!
//! Writes the selection as an index .pkl (int64, ascending), `--neg-o` the rest, and a PNG of the
//! selected (orange) and other (blue) particles over PC1/PC2 (`--plot`, default `-o` with `.png`),
//! each atomically; an existing `-o` is only replaced with `--force`. When the run was trained on
//! a subset (the `ind` of `config.json`, or of cryoDRGN's `config.yaml`), the indices are mapped
//! to the original stack as the reference does (`--positions` writes positions in z.EPOCH.pkl
//! instead).
//!
//! Example: `cryofield filter out/ --epoch 20 --kmeans 20 --sel 1 4 -o good.pkl`

use crate::analysis::latent::{load_z, marked_scatter, Marks};
use crate::analysis::pca::Pca;
use crate::analysis::plot::PlotStyle;
use crate::meta::{load_indices, load_int_array, save_indices};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Select particles by their latents.
#[derive(Debug, clap::Args)]
#[command(about = "Select particles of a train-vae run by k-means cluster, z range or PC polygon")]
pub struct Args {
    /// The training output folder
    pub outdir: PathBuf,
    /// Epoch, as numbered in z.EPOCH.pkl (from 1); default the last one
    #[arg(short = 'e', long)]
    pub epoch: Option<usize>,
    /// analyze's output folder (default OUTDIR/analyze.EPOCH)
    #[arg(long = "analyze-dir")]
    pub analyze_dir: Option<PathBuf>,
    /// Which k-means (the K of analyze.EPOCH/kmeansK); default the only one
    #[arg(short = 'k', long)]
    pub kmeans: Option<usize>,
    /// k-means clusters to keep (ids from 1, as analyze's vol_001.mrc)
    #[arg(long, num_args = 1..)]
    pub sel: Vec<i64>,
    /// Keep these positions of z.EPOCH.pkl (index .pkl)
    #[arg(long = "plot-inds")]
    pub plot_inds: Option<PathBuf>,
    /// Keep particles with LO ≤ z[:, DIM] ≤ HI
    #[arg(long = "z-range", num_args = 3, value_names = ["DIM", "LO", "HI"], allow_negative_numbers = true)]
    pub z_range: Option<Vec<f64>>,
    /// Keep particles whose (PC1, PC2) lie in this polygon: "x1,y1 x2,y2 x3,y3 ..."
    #[arg(long = "pc-polygon", allow_hyphen_values = true)]
    pub pc_polygon: Option<String>,
    /// Output index .pkl (default: `indices.pkl` in --sel-dir or the current folder, with the
    /// particles not selected in `indices_inverse.pkl`, as the reference's filter saves them)
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
    /// Folder of the default outputs `indices.pkl` / `indices_inverse.pkl`
    #[arg(long = "sel-dir", conflicts_with = "o")]
    pub sel_dir: Option<PathBuf>,
    /// Also write the particles not selected to this index .pkl
    #[arg(long = "neg-o")]
    pub neg_o: Option<PathBuf>,
    /// Plot of the selection (default: -o with the extension .png)
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write positions in z.EPOCH.pkl even when the run was trained on an --ind subset
    #[arg(long)]
    pub positions: bool,
    /// Replace an existing output
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Parse `"x1,y1 x2,y2 …"` into at least three vertices.
pub fn parse_polygon(s: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let pts = s
        .split_whitespace()
        .map(|p| {
            let (x, y) = p
                .split_once(',')
                .with_context(|| format!("--pc-polygon: vertex `{p}` is not of the form x,y"))?;
            let num = |v: &str| -> anyhow::Result<f64> {
                let f: f64 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("--pc-polygon: `{v}` in `{p}` is not a number"))?;
                if !f.is_finite() {
                    bail!("--pc-polygon: `{v}` in `{p}` is not finite");
                }
                Ok(f)
            };
            Ok((num(x)?, num(y)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if pts.len() < 3 {
        bail!("--pc-polygon needs at least 3 vertices, got {}", pts.len());
    }
    Ok(pts)
}

/// Whether `(x, y)` lies inside the polygon `poly` (even–odd rule: a ray to +x crosses its edges
/// an odd number of times).
pub fn point_in_polygon(x: f64, y: f64, poly: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < xj + (y - yj) * (xi - xj) / (yi - yj) {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// The last epoch with a `z.EPOCH.pkl` in `outdir`.
fn last_epoch(outdir: &Path) -> anyhow::Result<usize> {
    if !outdir.is_dir() {
        anyhow::bail!("{}: not a training folder", outdir.display());
    }
    crate::train::checkpoint::last_numbered(outdir, "z", "pkl").with_context(|| {
        format!(
            "{}: no z.EPOCH.pkl (is it a train-vae output folder?)",
            outdir.display()
        )
    })
}

/// The `kmeans{K}` folders in `dir` (analyze's, analyze-landscape's) as (K, path), in path order.
pub fn kmeans_folders(dir: &Path) -> anyhow::Result<Vec<(usize, PathBuf)>> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let k = e
                .file_name()
                .to_str()?
                .strip_prefix("kmeans")
                .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))?
                .parse()
                .ok()?;
            e.path().is_dir().then(|| (k, e.path()))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(found)
}

/// The `kmeans{K}` folder of `analyze`: `K` when given, else the only one.
fn kmeans_dir(adir: &Path, k: Option<usize>) -> anyhow::Result<PathBuf> {
    if let Some(k) = k {
        let d = adir.join(format!("kmeans{k}"));
        if !d.is_dir() {
            bail!(
                "{} not found (analyze with --ksample {k} writes it)",
                d.display()
            );
        }
        return Ok(d);
    }
    let mut found: Vec<PathBuf> = kmeans_folders(adir)?.into_iter().map(|(_, p)| p).collect();
    match found.len() {
        1 => Ok(found.swap_remove(0)),
        0 => bail!(
            "{}: no kmeans{{K}} folder (run analyze first)",
            adir.display()
        ),
        _ => bail!(
            "{}: several k-means results ({}); choose one with --kmeans K",
            adir.display(),
            found
                .iter()
                .filter_map(|p| p.file_name()?.to_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The index .pkl a run was trained on, if any: `config.json`'s `config.ind` (cryofield), else
/// `config.yaml`'s `dataset_args.ind` (cryoDRGN; an integer there means the first N particles,
/// whose positions are their indices).
fn training_ind(outdir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let json = outdir.join("config.json");
    if json.is_file() {
        let bytes = std::fs::read(&json).with_context(|| format!("reading {}", json.display()))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not JSON", json.display()))?;
        return Ok(v
            .get("config")
            .and_then(|c| c.get("ind"))
            .and_then(|i| i.as_str())
            .map(PathBuf::from));
    }
    let yaml = outdir.join("config.yaml");
    if yaml.is_file() {
        let text = std::fs::read_to_string(&yaml)
            .with_context(|| format!("reading {}", yaml.display()))?;
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .with_context(|| format!("{}: not a YAML file", yaml.display()))?;
        return Ok(docs
            .first()
            .and_then(|d| d["dataset_args"]["ind"].as_str())
            .map(PathBuf::from));
    }
    Ok(None)
}

/// Run `filter`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.sel.is_empty() && a.plot_inds.is_none() && a.z_range.is_none() && a.pc_polygon.is_none() {
        bail!(
            "cryofield's filter is not interactive (cryoDRGN's opens a lasso window): give the \
             selection as --kmeans K --sel IDS, --plot-inds IND.pkl, --z-range DIM LO HI or \
             --pc-polygon \"x,y x,y x,y\""
        );
    }
    if a.kmeans.is_some() && a.sel.is_empty() {
        bail!(
            "--kmeans {}: give the clusters to keep with --sel",
            a.kmeans.unwrap_or(0)
        );
    }
    if let Some(d) = &a.sel_dir {
        if !d.is_dir() {
            bail!("--sel-dir {}: not a folder", d.display());
        }
    }
    let (o, neg_o) = match &a.o {
        Some(o) => (o.clone(), a.neg_o.clone()),
        None => {
            let dir = a.sel_dir.clone().unwrap_or_default();
            let neg = a
                .neg_o
                .clone()
                .unwrap_or_else(|| dir.join("indices_inverse.pkl"));
            (dir.join("indices.pkl"), Some(neg))
        }
    };
    if o.exists() && !a.force {
        bail!("{} exists; use --force to replace it", o.display());
    }
    let epoch = match a.epoch {
        Some(e) => e,
        None => last_epoch(&a.outdir)?,
    };
    let zpath = a.outdir.join(format!("z.{epoch}.pkl"));
    let lat = load_z(&zpath)?;
    let (n, zdim) = (lat.n, lat.zdim);
    let mut keep = vec![true; n];
    let mut what = Vec::new();

    crate::cli::select_clusters::check_cluster_ids(&a.sel)?;
    if !a.sel.is_empty() {
        let adir = a
            .analyze_dir
            .clone()
            .unwrap_or_else(|| a.outdir.join(format!("analyze.{epoch}")));
        if !adir.is_dir() {
            bail!(
                "{} not found: run `cryofield analyze {} {epoch}` first",
                adir.display(),
                a.outdir.display()
            );
        }
        let lpath = kmeans_dir(&adir, a.kmeans)?.join("labels.pkl");
        let (shape, labels) = load_int_array(&lpath, "k-means labels")?;
        if shape != [n] {
            bail!(
                "{}: labels of shape {shape:?}, but {} holds {n} particles",
                lpath.display(),
                zpath.display()
            );
        }
        for (k, l) in keep.iter_mut().zip(&labels) {
            *k &= a.sel.contains(&(l + 1));
        }
        what.push(format!("clusters {:?}", a.sel));
    }
    if let Some(p) = &a.plot_inds {
        let ind = load_indices(p, n)?;
        let mut listed = vec![false; n];
        ind.iter().for_each(|&i| listed[i] = true);
        keep.iter_mut().zip(&listed).for_each(|(k, l)| *k &= l);
        what.push(format!("listed in {}", p.display()));
    }
    if let Some(r) = &a.z_range {
        let &[dim, lo, hi] = r.as_slice() else {
            bail!("--z-range takes DIM LO HI");
        };
        if dim < 0.0 || dim.fract() != 0.0 || dim as usize >= zdim {
            bail!("--z-range: DIM {dim} is not a dimension of z (0..{zdim})");
        }
        if lo.is_nan() || hi.is_nan() || lo > hi {
            bail!("--z-range: LO {lo} > HI {hi}");
        }
        let d = dim as usize;
        for (k, row) in keep.iter_mut().zip(lat.z.chunks_exact(zdim)) {
            let v = f64::from(row[d]);
            *k &= lo <= v && v <= hi;
        }
        what.push(format!("{lo} ≤ z[{d}] ≤ {hi}"));
    }
    // PC1/PC2 of z (zdim ≥ 2), for the polygon and the plot.
    let pcs = if zdim >= 2 {
        let pca = Pca::fit(&lat.z, n, zdim)?;
        let pc = pca.transform(&lat.z);
        let pc1: Vec<f64> = pc.iter().step_by(zdim).copied().collect();
        let pc2: Vec<f64> = pc.iter().skip(1).step_by(zdim).copied().collect();
        Some((pc1, pc2, pca.explained_variance_ratio))
    } else {
        None
    };
    if let Some(s) = &a.pc_polygon {
        let poly = parse_polygon(s)?;
        let Some((pc1, pc2, _)) = &pcs else {
            bail!(
                "--pc-polygon needs zdim ≥ 2 ({} has zdim 1)",
                zpath.display()
            );
        };
        for (i, k) in keep.iter_mut().enumerate() {
            *k &= point_in_polygon(pc1[i], pc2[i], &poly);
        }
        what.push("inside the PC polygon".to_string());
    }

    let sel: Vec<usize> = (0..n).filter(|&i| keep[i]).collect();
    let rest: Vec<usize> = (0..n).filter(|&i| !keep[i]).collect();
    if sel.is_empty() {
        bail!(
            "no particle of {} is {}; nothing written",
            zpath.display(),
            what.join(" and ")
        );
    }
    let map = if a.positions {
        None
    } else {
        match training_ind(&a.outdir)? {
            Some(p) => {
                let parent = load_indices(&p, usize::MAX).with_context(|| {
                    format!(
                        "{} was trained on the subset {} (config.json); use --positions to write positions in z instead",
                        a.outdir.display(),
                        p.display()
                    )
                })?;
                if parent.len() != n {
                    bail!(
                        "{}: {} indices, but {} holds {n} particles; use --positions",
                        p.display(),
                        parent.len(),
                        zpath.display()
                    );
                }
                Some(parent)
            }
            None => None,
        }
    };
    let to_out = |v: &[usize]| -> Vec<usize> {
        match &map {
            Some(m) => v.iter().map(|&i| m[i]).collect(),
            None => v.to_vec(),
        }
    };

    let plot = a.plot.clone().unwrap_or_else(|| o.with_extension("png"));
    let labels: Vec<usize> = keep.iter().map(|&k| usize::from(k)).collect();
    let title = format!("selected {} of {n} (orange)", sel.len());
    match &pcs {
        Some((pc1, pc2, evr)) => marked_scatter(
            &plot,
            pc1,
            pc2,
            &Marks {
                labels: Some(&labels),
                ..Marks::default()
            },
            &PlotStyle {
                title,
                x_label: format!("PC1 ({:.1}%)", 100.0 * evr[0]),
                y_label: format!("PC2 ({:.1}%)", 100.0 * evr[1]),
                ..PlotStyle::default()
            },
        )?,
        None => {
            let z: Vec<f64> = lat.z.iter().map(|&v| f64::from(v)).collect();
            let idx: Vec<f64> = (0..n).map(|i| i as f64).collect();
            marked_scatter(
                &plot,
                &z,
                &idx,
                &Marks {
                    labels: Some(&labels),
                    ..Marks::default()
                },
                &PlotStyle {
                    title,
                    x_label: "z".into(),
                    y_label: "particle".into(),
                    ..PlotStyle::default()
                },
            )?
        }
    }
    save_indices(&o, &to_out(&sel))?;
    eprintln!(
        "selected {} of {n} particles ({}); wrote {}{} and {}",
        sel.len(),
        what.join(" and "),
        o.display(),
        if map.is_some() {
            " (original stack indices)"
        } else {
            ""
        },
        plot.display()
    );
    if let Some(p) = &neg_o {
        if rest.is_empty() {
            eprintln!(
                "warning: every particle is selected; {} not written",
                p.display()
            );
        } else {
            save_indices(p, &to_out(&rest))?;
            eprintln!("wrote the other {} to {}", rest.len(), p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_parsing_and_membership() {
        let sq = parse_polygon("0,0 2,0 2,2 0,2").unwrap();
        assert!(point_in_polygon(1.0, 1.0, &sq));
        assert!(!point_in_polygon(3.0, 1.0, &sq));
        assert!(!point_in_polygon(-0.5, 1.0, &sq));
        // A concave "L": (1.5, 1.5) is in its notch, outside.
        let l = parse_polygon("0,0 2,0 2,1 1,1 1,2 0,2").unwrap();
        assert!(point_in_polygon(0.5, 1.5, &l));
        assert!(!point_in_polygon(1.5, 1.5, &l));
        assert!(parse_polygon("-1.5,2 3,-4 0,0").is_ok());
        assert!(parse_polygon("0,0 1,1").is_err());
        assert!(parse_polygon("0,0 1;1 2,2").is_err());
        assert!(parse_polygon("0,0 1,x 2,2").is_err());
    }
}
