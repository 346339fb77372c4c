//! `plot-classes`: plot the latent space of a train-vae / abinit-het run coloured by given particle
//! class labels, as cryoDRGN's `plot_classes`. The labels are a `.pkl` holding a 1-D array (or
//! list) with one class per particle (integers, booleans, floats or strings); a shorter integer
//! array is read as the indices of a subset of the particles, giving two classes (in the subset:
//! `True`, else `False`), as the reference does.
//!
//! Plots go to `WORKDIR/analyze.EPOCH` (`-o` to change; `analyze` for epoch −1 of a cryoDRGN
//! run), one per `--plot-types` (`scatter`, the default, and/or `kde`):
//!
//! | file | content |
//! |---|---|
//! | `umap_{scatter,kde}_classes.png` | analyze's UMAP embedding (`umap.pkl` in the output folder) when present |
//! | `tsne_{scatter,kde}_classes.png` | else our analyze's t-SNE embedding (`tsne.pkl`) when present |
//! | `z_pca_{scatter,kde}_classes_pc.{i}xpc.{j}.png` | the PCA of z, PCs (1,2), (1,3), (2,3) (only (1,2) for zdim 2) |
//!
//! Colours: `--palette` names a palette (`Set1`, the default, `Set2`, `Dark2`, `Paired`, `tab10`,
//! `husl`/`hls`; cycled when there are more classes than colours) or a `.pkl` holding a list of
//! colours (one per class, in class order) or a dict `{label: colour}`; a colour is `#rrggbb`, a
//! basic name (`red`, `tab:blue`, `k`, …) or an RGB(A) tuple of floats in `[0, 1]`. Classes are
//! ordered as seaborn orders hues: sorted when numeric or boolean, else by first appearance.
//!
//! Deviations from the reference: it runs UMAP itself when `umap.pkl` is missing (unless
//! `--skip-umap`); cryofield never computes an embedding here, so `--skip-umap` changes nothing
//! and is accepted for compatibility. The reference's `z_pca_scatter_*` plots draw the UMAP
//! embedding again (a bug); here they draw the PCs their names give. The reference draws nothing
//! for zdim ≤ 2; here zdim 2 gets the (PC1, PC2) plots and zdim 1 is an error. `kde` plots are a
//! per-class Gaussian kernel density (Scott's bandwidth, per axis) shown as shading in the class's
//! colour, where seaborn draws iso-proportion contour lines with marginal densities. `--svg` is
//! refused: plots are PNG only.
//!
//! Example: `cryofield plot-classes out/ 20 --labels classes.pkl --plot-types scatter kde`

use crate::analysis::latent::load_z;
use crate::analysis::pca::Pca;
use crate::analysis::plot::{
    auto_range, chart_builder, draw_legend, draw_mesh, render, PlotStyle, TAB10,
};
use crate::cli::analyze::run_files;
use crate::io::array::ArrayData;
use crate::io::pkl::{read_pkl, read_pkl_all, PyValue};
use anyhow::{bail, Context};
use plotters::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Plot the latent space by class.
#[derive(Debug, clap::Args)]
#[command(
    about = "Plot a run's latent space (UMAP / t-SNE / PCA) coloured by particle class labels"
)]
pub struct Args {
    /// The training output folder
    pub traindir: PathBuf,
    /// Epoch to plot, as numbered in z.EPOCH.pkl; −1: a cryoDRGN run's final z.pkl (or our
    /// run's last epoch)
    #[arg(allow_hyphen_values = true)]
    pub epoch: i64,
    /// Class labels (.pkl): one per particle, or indices of a subset of the particles
    #[arg(long, required = true)]
    pub labels: PathBuf,
    /// Types of plots to draw
    #[arg(long = "plot-types", num_args = 1.., default_values_t = [PlotType::Scatter])]
    pub plot_types: Vec<PlotType>,
    /// Palette name (Set1, Set2, Dark2, Paired, tab10, husl) or a .pkl of class colours
    #[arg(long)]
    pub palette: Option<String>,
    /// Output folder [default: TRAINDIR/analyze.EPOCH]
    #[arg(short = 'o', long = "outdir")]
    pub outdir: Option<PathBuf>,
    /// Accepted for compatibility: cryofield never runs UMAP here (it uses umap.pkl if present)
    #[arg(long = "skip-umap")]
    pub skip_umap: bool,
    /// Refused: cryofield draws PNG only
    #[arg(long)]
    pub svg: bool,
}

/// A kind of class plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlotType {
    /// per-class kernel density shading
    Kde,
    /// points coloured by class
    Scatter,
}

impl std::fmt::Display for PlotType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlotType::Kde => "kde",
            PlotType::Scatter => "scatter",
        })
    }
}

/// Class labels of the particles: `class[i]` indexes `names`, in hue order.
#[derive(Debug, Clone, PartialEq)]
pub struct Classes {
    /// class of each particle `(N)`
    pub class: Vec<usize>,
    /// label of each class, in hue order
    pub names: Vec<String>,
}

/// One raw label value.
#[derive(Debug, Clone, PartialEq)]
enum Label {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Label {
    fn name(&self) -> String {
        match self {
            Label::Int(i) => i.to_string(),
            Label::Float(f) => f.to_string(),
            Label::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Label::Str(s) => s.clone(),
        }
    }
}

/// The raw labels of a labels .pkl: a 1-D numeric/boolean array or a list of scalars.
fn raw_labels(path: &Path) -> anyhow::Result<Vec<Label>> {
    let v = read_pkl(path)?;
    match &v {
        PyValue::Array(a) => {
            if a.shape.len() != 1 {
                bail!(
                    "{}: class labels must be a 1-D array, found shape {:?}",
                    path.display(),
                    a.shape
                );
            }
            Ok(match &a.data {
                ArrayData::F32(x) => x.iter().map(|&f| Label::Float(f as f64)).collect(),
                ArrayData::F64(x) => x.iter().map(|&f| Label::Float(f)).collect(),
                ArrayData::I32(x) => x.iter().map(|&i| Label::Int(i as i64)).collect(),
                ArrayData::I64(x) => x.iter().map(|&i| Label::Int(i)).collect(),
                ArrayData::U8(x) => x.iter().map(|&i| Label::Int(i as i64)).collect(),
                ArrayData::Bool(x) => x.iter().map(|&b| Label::Bool(b)).collect(),
            })
        }
        PyValue::List(items) | PyValue::Tuple(items) => items
            .iter()
            .enumerate()
            .map(|(i, it)| match it {
                PyValue::Int(k) => Ok(Label::Int(*k)),
                PyValue::Float(f) => Ok(Label::Float(*f)),
                PyValue::Bool(b) => Ok(Label::Bool(*b)),
                PyValue::Str(s) => Ok(Label::Str(s.clone())),
                _ => bail!(
                    "{}: label {i} is not an integer, float, boolean or string",
                    path.display()
                ),
            })
            .collect(),
        _ => bail!(
            "{}: expected a 1-D array or list of class labels",
            path.display()
        ),
    }
}

/// Reads class labels for `n` particles (see the module doc for the subset-index form).
pub fn load_classes(path: &Path, n: usize) -> anyhow::Result<Classes> {
    let raw = raw_labels(path)?;
    if raw.len() > n {
        bail!(
            "{}: {} class labels but the run has {n} particles",
            path.display(),
            raw.len()
        );
    }
    let raw = if raw.len() < n {
        let mut member = vec![false; n];
        for (i, l) in raw.iter().enumerate() {
            let k = match l {
                Label::Int(k) if (0..n as i64).contains(k) => *k as usize,
                _ => bail!(
                    "{}: {} labels for {n} particles are read as particle indices, but entry {i} ({}) \
                     is not an integer in [0, {})",
                    path.display(),
                    raw.len(),
                    l.name(),
                    n
                ),
            };
            member[k] = true;
        }
        member.into_iter().map(Label::Bool).collect()
    } else {
        raw
    };
    if let Some(i) = raw
        .iter()
        .position(|l| matches!(l, Label::Float(f) if f.is_nan()))
    {
        bail!("{}: label {i} is NaN", path.display());
    }
    // hue order: sorted when numeric or boolean, else by first appearance
    let numeric = raw.iter().all(|l| !matches!(l, Label::Str(_)));
    let mut uniq: Vec<Label> = Vec::new();
    for l in &raw {
        if !uniq.contains(l) {
            uniq.push(l.clone());
        }
    }
    if numeric {
        let key = |l: &Label| match l {
            Label::Int(i) => *i as f64,
            Label::Float(f) => *f,
            Label::Bool(b) => *b as u8 as f64,
            Label::Str(_) => 0.0,
        };
        uniq.sort_by(|a, b| key(a).total_cmp(&key(b)));
    }
    let names: Vec<String> = uniq.iter().map(Label::name).collect();
    let index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i))
        .collect();
    let class = raw.iter().map(|l| index[&l.name()]).collect();
    Ok(Classes { class, names })
}

/// Colours of the named palettes (matplotlib / ColorBrewer).
fn named_palette(name: &str, k: usize) -> Option<Vec<RGBColor>> {
    let hex = |s: &[&str]| -> Vec<RGBColor> { s.iter().filter_map(|h| parse_hex(h)).collect() };
    let base: Vec<RGBColor> = match name.to_ascii_lowercase().as_str() {
        "set1" => hex(&[
            "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf",
            "#999999",
        ]),
        "set2" => hex(&[
            "#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#b3b3b3",
        ]),
        "dark2" => hex(&[
            "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
        ]),
        "paired" => hex(&[
            "#a6cee3", "#1f78b4", "#b2df8a", "#33a02c", "#fb9a99", "#e31a1c", "#fdbf6f", "#ff7f00",
            "#cab2d6", "#6a3d9a", "#ffff99", "#b15928",
        ]),
        "tab10" => TAB10.to_vec(),
        "husl" | "hls" => (0..k.max(1))
            .map(|i| {
                let (r, g, b) = HSLColor((0.01 + i as f64 / k.max(1) as f64) % 1.0, 0.65, 0.6)
                    .to_rgba()
                    .rgb();
                RGBColor(r, g, b)
            })
            .collect(),
        _ => return None,
    };
    Some((0..k).map(|i| base[i % base.len()]).collect())
}

/// `#rrggbb` (or `rrggbb`) → colour.
fn parse_hex(s: &str) -> Option<RGBColor> {
    let h = s.strip_prefix('#').unwrap_or(s);
    if h.len() != 6 || !h.is_ascii() {
        return None;
    }
    let c = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some(RGBColor(c(0)?, c(2)?, c(4)?))
}

/// A colour from a palette .pkl entry: hex, a basic name, or an RGB(A) float tuple.
fn parse_color(v: &PyValue) -> Option<RGBColor> {
    match v {
        PyValue::Str(s) => {
            let s = s.trim().to_ascii_lowercase();
            if let Some(c) = parse_hex(&s) {
                return Some(c);
            }
            let hex = match s.strip_prefix("tab:").unwrap_or(&s) {
                "b" | "blue" => "#1f77b4",
                "orange" => "#ff7f0e",
                "g" | "green" => "#2ca02c",
                "r" | "red" => "#d62728",
                "purple" => "#9467bd",
                "brown" => "#8c564b",
                "pink" => "#e377c2",
                "grey" | "gray" => "#7f7f7f",
                "olive" => "#bcbd22",
                "c" | "cyan" => "#17becf",
                "m" | "magenta" => "#bf00bf",
                "y" | "yellow" => "#bfbf00",
                "k" | "black" => "#000000",
                "w" | "white" => "#ffffff",
                _ => return None,
            };
            parse_hex(hex)
        }
        PyValue::Tuple(items) | PyValue::List(items) if items.len() == 3 || items.len() == 4 => {
            let f: Option<Vec<f64>> = items[..3]
                .iter()
                .map(|x| match x {
                    PyValue::Float(f) => Some(*f),
                    PyValue::Int(i) => Some(*i as f64),
                    _ => None,
                })
                .collect();
            let f = f?;
            if f.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return None;
            }
            let u = |v: f64| (v * 255.0).round() as u8;
            Some(RGBColor(u(f[0]), u(f[1]), u(f[2])))
        }
        _ => None,
    }
}

/// The colour of each class: `palette` a name or a .pkl (see the module doc); Set1 by default.
pub fn class_colors(palette: Option<&str>, names: &[String]) -> anyhow::Result<Vec<RGBColor>> {
    let k = names.len();
    let Some(p) = palette else {
        return Ok(named_palette("Set1", k).unwrap_or_default());
    };
    let path = Path::new(p);
    if !path.exists() {
        return named_palette(p, k).with_context(|| {
            format!(
                "palette `{p}` is neither a file nor one of Set1, Set2, Dark2, Paired, tab10, husl"
            )
        });
    }
    let bad = |what: String| anyhow::anyhow!("{}: {what}", path.display());
    match read_pkl(path)? {
        PyValue::Dict(items) => names
            .iter()
            .map(|n| {
                let v = items
                    .iter()
                    .find(|(key, _)| match key {
                        PyValue::Str(s) => s == n,
                        PyValue::Int(i) => &i.to_string() == n,
                        PyValue::Bool(b) => (if *b { "True" } else { "False" }) == n,
                        PyValue::Float(f) => &f.to_string() == n,
                        _ => false,
                    })
                    .map(|(_, v)| v)
                    .ok_or_else(|| bad(format!("no colour for class `{n}`")))?;
                parse_color(v)
                    .ok_or_else(|| bad(format!("colour of class `{n}` is not understood")))
            })
            .collect(),
        PyValue::List(items) | PyValue::Tuple(items) => {
            if items.len() < k {
                return Err(bad(format!("{} colours for {k} classes", items.len())));
            }
            items[..k]
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    parse_color(v).ok_or_else(|| bad(format!("colour {i} is not understood")))
                })
                .collect()
        }
        _ => Err(bad(
            "expected a list of colours or a dict {label: colour}".into()
        )),
    }
}

/// Per-class density on a `g × g` grid over `xr × yr`: points binned, then smoothed by a
/// separable Gaussian with Scott's bandwidth `σ·n^(−1/6)` per axis; `(g, g)` row-major, row 0 at
/// `yr.0`, normalized to a maximum of 1.
fn class_density(pts: &[(f64, f64)], xr: (f64, f64), yr: (f64, f64), g: usize) -> Vec<f64> {
    let mut grid = vec![0.0f64; g * g];
    let n = pts.len();
    if n < 2 {
        return grid;
    }
    let (wx, wy) = ((xr.1 - xr.0) / g as f64, (yr.1 - yr.0) / g as f64);
    for &(x, y) in pts {
        let i = ((x - xr.0) / wx).floor();
        let j = ((y - yr.0) / wy).floor();
        if i >= 0.0 && j >= 0.0 && (i as usize) < g && (j as usize) < g {
            grid[j as usize * g + i as usize] += 1.0;
        }
    }
    let std = |f: &dyn Fn(&(f64, f64)) -> f64| {
        let m = pts.iter().map(f).sum::<f64>() / n as f64;
        (pts.iter().map(|p| (f(p) - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    let factor = (n as f64).powf(-1.0 / 6.0);
    // bandwidths in grid cells (at least half a cell)
    let sx = (std(&|p| p.0) * factor / wx).max(0.5);
    let sy = (std(&|p| p.1) * factor / wy).max(0.5);
    let kernel = |s: f64| -> Vec<f64> {
        let r = (3.0 * s).ceil() as i64;
        (-r..=r)
            .map(|k| (-(k * k) as f64 / (2.0 * s * s)).exp())
            .collect()
    };
    let (kx, ky) = (kernel(sx), kernel(sy));
    let conv = |src: &[f64], k: &[f64], along_x: bool| -> Vec<f64> {
        let r = (k.len() / 2) as i64;
        let mut out = vec![0.0; g * g];
        for j in 0..g {
            for i in 0..g {
                let mut acc = 0.0;
                for (t, &w) in k.iter().enumerate() {
                    let o = t as i64 - r;
                    let (ii, jj) = if along_x {
                        (i as i64 + o, j as i64)
                    } else {
                        (i as i64, j as i64 + o)
                    };
                    if ii >= 0 && jj >= 0 && (ii as usize) < g && (jj as usize) < g {
                        acc += w * src[jj as usize * g + ii as usize];
                    }
                }
                out[j * g + i] = acc;
            }
        }
        out
    };
    let dens = conv(&conv(&grid, &kx, true), &ky, false);
    let max = dens.iter().cloned().fold(0.0, f64::max);
    if max > 0.0 {
        dens.into_iter().map(|v| v / max).collect()
    } else {
        dens
    }
}

/// Grid cells per side of the kde plots.
const KDE_GRID: usize = 150;

/// A class plot of the points `xy` `(N, 2)` to a PNG at `path`: points coloured by class
/// (`Scatter`) or per-class density shading (`Kde`), with a legend of the class names.
pub fn class_plot(
    path: &Path,
    xy: &[(f64, f64)],
    classes: &Classes,
    colors: &[RGBColor],
    kind: PlotType,
    x_label: &str,
    y_label: &str,
) -> anyhow::Result<()> {
    let style = PlotStyle {
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        size: (900, 800),
        ..Default::default()
    };
    let xr = auto_range(xy.iter().map(|p| &p.0));
    let yr = auto_range(xy.iter().map(|p| &p.1));
    let n = xy.len();
    let k = classes.names.len();
    // point size and opacity: faint for many points, as the reference's s=1, alpha=0.07
    let (radius, alpha) = if n > 50_000 {
        (1, 0.15)
    } else if n > 5_000 {
        (1, 0.4)
    } else {
        (3, 0.7)
    };
    let per_class: Vec<Vec<(f64, f64)>> = (0..k)
        .map(|c| {
            xy.iter()
                .zip(&classes.class)
                .filter(|(p, &l)| l == c && p.0.is_finite() && p.1.is_finite())
                .map(|(p, _)| *p)
                .collect()
        })
        .collect();
    let dens: Vec<Vec<f64>> = if kind == PlotType::Kde {
        per_class
            .iter()
            .map(|p| class_density(p, xr, yr, KDE_GRID))
            .collect()
    } else {
        Vec::new()
    };
    render(path, style.size, |root| {
        root.fill(&WHITE)?;
        let mut chart = chart_builder(root, &style).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        draw_mesh(&mut chart, &style)?;
        let (wx, wy) = (
            (xr.1 - xr.0) / KDE_GRID as f64,
            (yr.1 - yr.0) / KDE_GRID as f64,
        );
        for c in 0..k {
            let col = colors[c];
            let series =
                match kind {
                    PlotType::Scatter => {
                        chart.draw_series(per_class[c].iter().map(move |&(a, b)| {
                            Circle::new((a, b), radius, col.mix(alpha).filled())
                        }))?
                    }
                    PlotType::Kde => chart.draw_series(
                        dens[c].iter().enumerate().filter(|(_, &v)| v >= 0.05).map(
                            move |(idx, &v)| {
                                let (i, j) = ((idx % KDE_GRID) as f64, (idx / KDE_GRID) as f64);
                                let (x0, y0) = (xr.0 + i * wx, yr.0 + j * wy);
                                Rectangle::new(
                                    [(x0, y0), (x0 + wx, y0 + wy)],
                                    col.mix(0.15 + 0.5 * v).filled(),
                                )
                            },
                        ),
                    )?,
                };
            series
                .label(classes.names[c].clone())
                .legend(move |(px, py)| Circle::new((px + 8, py), 5, col.filled()));
        }
        draw_legend(&mut chart)?;
        Ok(())
    })?;
    Ok(())
}

/// A 2-D embedding of analyze's in `dir` (`umap.pkl`, else `tsne.pkl`) for `n` particles:
/// (file stem, axis labels, points).
#[allow(clippy::type_complexity)]
fn analyze_embedding(
    dir: &Path,
    n: usize,
) -> anyhow::Result<Option<(&'static str, [&'static str; 2], Vec<(f64, f64)>)>> {
    for (file, stem, labels) in [
        ("umap.pkl", "umap", ["UMAP1", "UMAP2"]),
        ("tsne.pkl", "tsne", ["t-SNE1", "t-SNE2"]),
    ] {
        let p = dir.join(file);
        if !p.exists() {
            continue;
        }
        let vals = read_pkl_all(&p)?;
        match vals.first().and_then(PyValue::as_array) {
            Some(a) if a.shape == [n, 2] => {
                let v = a.to_f64();
                eprintln!("using the embedding in {}", p.display());
                return Ok(Some((
                    stem,
                    labels,
                    v.chunks_exact(2).map(|c| (c[0], c[1])).collect(),
                )));
            }
            _ => bail!(
                "{}: expected an ({n}, 2) array of embedding coordinates",
                p.display()
            ),
        }
    }
    Ok(None)
}

/// Run `plot-classes`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.svg {
        bail!("--svg is not supported: cryofield draws PNG plots only");
    }
    if !a.traindir.is_dir() {
        bail!("{}: no such training output folder", a.traindir.display());
    }
    let (zpath, _, config, analyze_dir) = run_files(&a.traindir, a.epoch)?;
    if !config.exists() {
        bail!(
            "{} does not look like a training output folder: it holds no config.yaml or config.json",
            a.traindir.display()
        );
    }
    if !zpath.exists() {
        bail!(
            "{} not found: plot-classes needs the latents of a train-vae / abinit-het run",
            zpath.display()
        );
    }
    if !a.labels.exists() {
        bail!("{}: labels file not found", a.labels.display());
    }
    let lat = load_z(&zpath)?;
    let (n, zdim) = (lat.n, lat.zdim);
    if zdim < 2 {
        bail!(
            "{}: zdim {zdim}: class plots need a latent space of at least 2 dimensions",
            zpath.display()
        );
    }
    let classes = load_classes(&a.labels, n)?;
    let colors = class_colors(a.palette.as_deref(), &classes.names)?;
    let out = a.outdir.clone().unwrap_or(analyze_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut types = a.plot_types.clone();
    types.dedup();
    let mut written = Vec::new();
    if let Some((stem, [lx, ly], xy)) = analyze_embedding(&out, n)? {
        for &t in &types {
            let p = out.join(format!("{stem}_{t}_classes.png"));
            class_plot(&p, &xy, &classes, &colors, t, lx, ly)?;
            written.push(p);
        }
    } else {
        eprintln!(
            "note: no umap.pkl or tsne.pkl in {}: only the PCA plots are drawn (run analyze first for an embedding)",
            out.display()
        );
    }
    let pca = Pca::fit(&lat.z, n, zdim)?;
    let pc = pca.transform(&lat.z);
    let evr = &pca.explained_variance_ratio;
    let pairs: &[(usize, usize)] = if zdim >= 3 {
        &[(0, 1), (0, 2), (1, 2)]
    } else {
        &[(0, 1)]
    };
    for &(i, j) in pairs {
        let xy: Vec<(f64, f64)> = pc.chunks(zdim).map(|r| (r[i], r[j])).collect();
        let lx = format!("PC{} ({:.2})", i + 1, evr[i]);
        let ly = format!("PC{} ({:.2})", j + 1, evr[j]);
        for &t in &types {
            let p = out.join(format!("z_pca_{t}_classes_pc.{}xpc.{}.png", i + 1, j + 1));
            class_plot(&p, &xy, &classes, &colors, t, &lx, &ly)?;
            written.push(p);
        }
    }
    eprintln!(
        "{} classes over {n} particles: wrote {} plots in {}",
        classes.names.len(),
        written.len(),
        out.display()
    );
    Ok(())
}
