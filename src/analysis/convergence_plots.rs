//! Figures of `analyze-convergence` (cryoDRGN's `cryodrgn_utils analyze_convergence`):
//!
//! - [`density_grid`]: one log-count 2-D histogram of a UMAP per panel, the panels sharing their
//!   ranges and one colour bar (the reference's `01_encoder_umaps.png` and, with red marks,
//!   `04_decoder_maxima-sketch-consistency.png`);
//! - [`line_grid`]: panels of line curves (`02_encoder_latent_vector_shifts.png`, the masked
//!   CC / FSC figures);
//! - [`sketch_plot`]: the four panels of `03_decoder_UMAP-sketching.png`.
//!
//! Square bins stand in for matplotlib's hexagons. Non-finite values are skipped.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::plot::{
    auto_range, check_series, render, viridis, DynResult, Series, FONT, TAB10,
};
use crate::error::{Error, Result};

/// Bins per axis of a density panel (matplotlib's hexbin default `gridsize=100`).
const DENSITY_BINS: usize = 100;
/// Size in pixels of one panel of a density grid.
const DENSITY_PANEL: (u32, u32) = (400, 380);
/// Width in pixels of the colour bar column right of a density grid.
const COLORBAR_W: u32 = 120;
/// Size in pixels of one panel of a line grid.
const LINE_PANEL: (u32, u32) = (440, 360);
/// Size in pixels of one panel of the sketch figure.
const SKETCH_PANEL: (u32, u32) = (420, 400);
/// Colour of marks and their labels (matplotlib's `"r"`).
const MARK: RGBColor = RGBColor(255, 0, 0);

type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
type Chart<'b> = ChartContext<'b, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One panel of a grid of 2-D densities.
pub struct DensityPanel<'a> {
    /// title above the panel, e.g. "epoch 5"
    pub title: String,
    /// (n, 2) row-major points (UMAP1, UMAP2)
    pub xy: &'a [f64],
    /// points drawn in red over the density
    pub marks: &'a [(f64, f64)],
    /// text beside each mark ("A", "B", ...); same length as `marks`, or empty
    pub mark_labels: &'a [String],
}

/// One panel of line curves.
pub struct LinePanel<'a> {
    /// title above the panel (none when empty)
    pub title: String,
    /// x axis label
    pub x_label: String,
    /// y axis label
    pub y_label: String,
    /// the curves; legend entries use [`Series::label`] (no entry when empty)
    pub series: Vec<Series<'a>>,
    /// one colour `(r, g, b)` per series, or empty for the tab10 cycle
    pub colors: Vec<(u8, u8, u8)>,
    /// y range; the data's range (with a small margin) when `None`
    pub y_range: Option<(f64, f64)>,
}

/// The inputs of the sketch figure ([`sketch_plot`]).
pub struct Sketch<'a> {
    /// the sketched epoch (titles)
    pub epoch: usize,
    /// (n, 2) row-major UMAP points
    pub xy: &'a [f64],
    /// bin edges along UMAP1, nx + 1
    pub xedges: &'a [f64],
    /// bin edges along UMAP2, ny + 1
    pub yedges: &'a [f64],
    /// the (nx, ny) histogram, `hist[ix * ny + iy]`
    pub hist: &'a [f64],
    /// title of the histogram panel ("UMAP histogram" or "UMAP smoothed histogram")
    pub hist_title: String,
    /// the (nx, ny) image of the final local maxima, `peaks[ix * ny + iy]`
    pub peaks: &'a [f64],
    /// the sketched points in UMAP coordinates
    pub points: &'a [(f64, f64)],
    /// a label per point ("A", "B", ...)
    pub labels: &'a [String],
}

/// The finite `(x, y)` pairs of an (n, 2) row-major array.
fn finite_pairs(xy: &[f64]) -> impl Iterator<Item = (f64, f64)> + '_ {
    xy.chunks_exact(2)
        .map(|p| (p[0], p[1]))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

fn check_xy(path: &Path, what: &str, xy: &[f64]) -> Result<()> {
    if !xy.len().is_multiple_of(2) {
        return Err(Error::Shape {
            what: format!("{}: {what} points", path.display()),
            expected: "an even number of values ((n, 2) row-major)".into(),
            got: format!("{} values", xy.len()),
        });
    }
    Ok(())
}

fn check_labels(path: &Path, what: &str, points: usize, labels: usize) -> Result<()> {
    if labels != 0 && labels != points {
        return Err(Error::Shape {
            what: format!("{}: {what} labels", path.display()),
            expected: format!("{points} (one per point) or none"),
            got: format!("{labels}"),
        });
    }
    Ok(())
}

/// Counts of points in `nb × nb` bins spanning `xr × yr`: `counts[iy * nb + ix]`.
struct Hist2 {
    xr: (f64, f64),
    yr: (f64, f64),
    nb: usize,
    counts: Vec<u64>,
}

impl Hist2 {
    fn new(pts: impl Iterator<Item = (f64, f64)>, xr: (f64, f64), yr: (f64, f64)) -> Self {
        let nb = DENSITY_BINS;
        let (wx, wy) = ((xr.1 - xr.0) / nb as f64, (yr.1 - yr.0) / nb as f64);
        let mut counts = vec![0u64; nb * nb];
        for (x, y) in pts {
            let (i, j) = (((x - xr.0) / wx).floor(), ((y - yr.0) / wy).floor());
            // the top edge belongs to the last bin
            let bin = |v: f64| {
                if v >= 0.0 && v <= nb as f64 {
                    Some((v as usize).min(nb - 1))
                } else {
                    None
                }
            };
            if let (Some(i), Some(j)) = (bin(i), bin(j)) {
                counts[j * nb + i] += 1;
            }
        }
        Hist2 { xr, yr, nb, counts }
    }

    /// The smallest and largest non-zero counts.
    fn nonzero_range(&self) -> Option<(u64, u64)> {
        let mut it = self.counts.iter().copied().filter(|&c| c > 0);
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), c| (lo.min(c), hi.max(c))))
    }

    /// The non-empty bins as filled rectangles coloured by `norm` (empty bins stay white).
    fn draw(&self, chart: &mut Chart<'_>, norm: Norm) -> DynResult<()> {
        let nb = self.nb;
        let (wx, wy) = (
            (self.xr.1 - self.xr.0) / nb as f64,
            (self.yr.1 - self.yr.0) / nb as f64,
        );
        let (x0, y0) = (self.xr.0, self.yr.0);
        chart.draw_series(self.counts.iter().enumerate().filter(|(_, &c)| c > 0).map(
            |(idx, &c)| {
                let (i, j) = ((idx % nb) as f64, (idx / nb) as f64);
                Rectangle::new(
                    [
                        (x0 + i * wx, y0 + j * wy),
                        (x0 + (i + 1.0) * wx, y0 + (j + 1.0) * wy),
                    ],
                    viridis(norm.t(c as f64)).filled(),
                )
            },
        ))?;
        Ok(())
    }
}

/// A value → [0, 1] colour-map position: linear or logarithmic between `lo` and `hi`
/// (matplotlib's `Normalize` / `LogNorm`; 0 when `hi <= lo`).
#[derive(Debug, Clone, Copy)]
struct Norm {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Norm {
    fn t(&self, v: f64) -> f64 {
        let (a, b, x) = if self.log {
            (self.lo.ln(), self.hi.ln(), v.ln())
        } else {
            (self.lo, self.hi, v)
        };
        if b > a {
            (x - a) / (b - a)
        } else {
            0.0
        }
    }
}

/// `(x range, y range)` of the finite points of every `xy` and of the `extra` points.
fn shared_ranges<'a>(
    xys: impl Iterator<Item = &'a [f64]> + Clone,
    extra: impl Iterator<Item = (f64, f64)> + Clone,
) -> ((f64, f64), (f64, f64)) {
    let extra = extra.filter(|(x, y)| x.is_finite() && y.is_finite());
    let xs: Vec<f64> = xys
        .clone()
        .flat_map(finite_pairs)
        .chain(extra.clone())
        .map(|p| p.0)
        .collect();
    let ys: Vec<f64> = xys
        .flat_map(finite_pairs)
        .chain(extra)
        .map(|p| p.1)
        .collect();
    (auto_range(xs.iter()), auto_range(ys.iter()))
}

/// A panel's chart: margins, label areas (the same in every panel, so that the plotting areas
/// line up), the title.
fn panel_chart<'b>(
    area: &Area<'b>,
    title: &str,
    xr: (f64, f64),
    yr: (f64, f64),
) -> DynResult<Chart<'b>> {
    let mut b = ChartBuilder::on(area);
    b.margin(8)
        .margin_right(20)
        .x_label_area_size(48)
        .y_label_area_size(66);
    if !title.is_empty() {
        b.caption(title, (FONT, 18));
    }
    Ok(b.build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?)
}

/// Axes, tick labels and axis titles (empty: none) of a panel; light grid lines when `grid`.
fn panel_mesh(chart: &mut Chart<'_>, x_desc: &str, y_desc: &str, grid: bool) -> DynResult<()> {
    let mut m = chart.configure_mesh();
    m.label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .x_labels(5)
        .y_labels(5);
    if !x_desc.is_empty() {
        m.x_desc(x_desc);
    }
    if !y_desc.is_empty() {
        m.y_desc(y_desc);
    }
    if grid {
        m.light_line_style(RGBColor(235, 235, 235))
            .max_light_lines(2);
    } else {
        m.disable_mesh();
    }
    m.draw()?;
    Ok(())
}

/// Red dots at the finite `marks`, each with its label (if any) above right of it.
fn draw_marks(chart: &mut Chart<'_>, marks: &[(f64, f64)], labels: &[String]) -> DynResult<()> {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    chart.draw_series(
        marks
            .iter()
            .filter(|p| finite(p))
            .map(|&p| Circle::new(p, 4, MARK.filled())),
    )?;
    // each label over a white halo (the text shifted by one pixel each way), legible on the density
    let font = (FONT, 17).into_font();
    let (halo, style) = (
        TextStyle::from(font.clone()).color(&WHITE),
        TextStyle::from(font).color(&MARK),
    );
    for (dx, dy, st) in [
        (-1, 0, &halo),
        (1, 0, &halo),
        (0, -1, &halo),
        (0, 1, &halo),
        (0, 0, &style),
    ] {
        chart.draw_series(
            marks
                .iter()
                .zip(labels)
                .filter(|(p, _)| finite(p))
                .map(|(&p, l)| {
                    EmptyElement::at(p) + Text::new(l.clone(), (6 + dx, -20 + dy), st.clone())
                }),
        )?;
    }
    Ok(())
}

/// Tick values of a log colour bar over `[lo, hi]` (lo ≥ 1): the powers of ten inside, with
/// 2× and 5× multiples when that gives fewer than three; `lo` alone when nothing falls inside.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let inside = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let decades: Vec<f64> = (k0..=k1).map(|k| 10f64.powi(k)).filter(inside).collect();
    let ticks = if decades.len() >= 3 {
        decades
    } else {
        let mut v: Vec<f64> = (k0..=k1)
            .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
            .filter(inside)
            .collect();
        v.dedup();
        v
    };
    if ticks.is_empty() {
        vec![lo]
    } else {
        ticks
    }
}

fn tick_text(v: f64) -> String {
    if v < 1e5 {
        format!("{}", v.round() as u64)
    } else {
        format!("1e{}", v.log10().round() as i32)
    }
}

/// A vertical colour bar of `norm` (log counts) in `area`, the bar spanning 15–85 % of its
/// height, ticks and their values to its right, `label` rotated along its right edge.
fn draw_colorbar(area: &Area<'_>, norm: Norm, label: &str) -> DynResult<()> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let (top, bottom) = ((0.15 * h as f64) as i32, (0.85 * h as f64) as i32);
    let (x0, x1) = (8, 26);
    let span = (bottom - top).max(1);
    for py in top..bottom {
        let t = (bottom - 1 - py) as f64 / (span - 1).max(1) as f64;
        area.draw(&Rectangle::new(
            [(x0, py), (x1, py + 1)],
            viridis(t).filled(),
        ))?;
    }
    area.draw(&Rectangle::new([(x0, top), (x1, bottom)], BLACK))?;
    let font = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for v in log_ticks(norm.lo, norm.hi) {
        let t = norm.t(v).clamp(0.0, 1.0);
        let py = bottom - (t * span as f64).round() as i32;
        area.draw(&PathElement::new(vec![(x1, py), (x1 + 4, py)], BLACK))?;
        area.draw(&Text::new(tick_text(v), (x1 + 7, py), font.clone()))?;
    }
    if !label.is_empty() {
        let style = TextStyle::from((FONT, 15).into_font())
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Center));
        area.draw(&Text::new(
            label.to_string(),
            (w - 22, (top + bottom) / 2),
            style,
        ))?;
    }
    Ok(())
}

/// Grid of log-count 2-D histogram panels (square bins standing in for matplotlib's
/// `hexbin(bins="log", mincnt=1)`: empty bins white, viridis on log counts, one normalisation
/// shared by every panel) with `ceil(sqrt(n))` columns, all panels sharing the same x/y ranges
/// (the union of all points and marks), x label "UMAP1" under each panel with none below it,
/// "UMAP2" on the first column, a vertical colour bar on the right labelled `colorbar_label`.
/// Each panel is 400 × 380 pixels, the colour bar 120 pixels wide.
///
/// Errors (naming `path`) on an odd `xy` length, a `mark_labels` length neither 0 nor
/// `marks.len()`, no panels.
pub fn density_grid(path: &Path, panels: &[DensityPanel<'_>], colorbar_label: &str) -> Result<()> {
    density_grid_axes(path, panels, colorbar_label, ("UMAP1", "UMAP2"))
}

/// [`density_grid`] with other axis labels `(x, y)` (e.g. `("PC1 (0.45)", "PC2 (0.21)")`).
pub fn density_grid_axes(
    path: &Path,
    panels: &[DensityPanel<'_>],
    colorbar_label: &str,
    axes: (&str, &str),
) -> Result<()> {
    if panels.is_empty() {
        return Err(Error::invalid(format!(
            "{}: a density grid needs at least one panel",
            path.display()
        )));
    }
    for p in panels {
        check_xy(path, &format!("panel `{}`", p.title), p.xy)?;
        check_labels(
            path,
            &format!("panel `{}` mark", p.title),
            p.marks.len(),
            p.mark_labels.len(),
        )?;
    }
    let n = panels.len();
    let cols = (1..=n).find(|c| c * c >= n).unwrap_or(n);
    let rows = n.div_ceil(cols);
    let (xr, yr) = shared_ranges(
        panels.iter().map(|p| p.xy),
        panels.iter().flat_map(|p| p.marks.iter().copied()),
    );
    let hists: Vec<Hist2> = panels
        .iter()
        .map(|p| Hist2::new(finite_pairs(p.xy), xr, yr))
        .collect();
    let (lo, hi) = hists
        .iter()
        .filter_map(Hist2::nonzero_range)
        .fold((u64::MAX, 0), |(a, b), (l, h)| (a.min(l), b.max(h)));
    let norm = if hi == 0 {
        Norm {
            lo: 1.0,
            hi: 10.0,
            log: true,
        }
    } else {
        Norm {
            lo: lo as f64,
            hi: hi as f64,
            log: true,
        }
    };
    let grid_w = cols as u32 * DENSITY_PANEL.0;
    let size = (grid_w + COLORBAR_W, rows as u32 * DENSITY_PANEL.1);
    render(path, size, |root| {
        root.fill(&WHITE)?;
        let (grid, bar) = root.split_horizontally(grid_w);
        let cells = grid.split_evenly((rows, cols));
        for (i, (p, h)) in panels.iter().zip(&hists).enumerate() {
            let mut chart = panel_chart(&cells[i], &p.title, xr, yr)?;
            let x_desc = if i + cols >= n { axes.0 } else { "" };
            let y_desc = if i % cols == 0 { axes.1 } else { "" };
            panel_mesh(&mut chart, x_desc, y_desc, false)?;
            h.draw(&mut chart, norm)?;
            draw_marks(&mut chart, p.marks, p.mark_labels)?;
        }
        draw_colorbar(&bar, norm, colorbar_label)
    })
}

/// Panels of line curves in a grid of `ncols` columns (fewer when there are fewer panels; rows as
/// needed), each 440 × 360 pixels with its own title, axis labels and ranges (x: the data's; y:
/// `y_range` or the data's). Curves break at non-finite points. A legend (lower left) is drawn in a
/// panel only when `legend` and some series has a label.
///
/// Errors (naming `path`) on no panels, `ncols` 0, a series whose x and y lengths differ, a
/// `colors` length neither 0 nor the panel's series count.
pub fn line_grid(path: &Path, panels: &[LinePanel<'_>], ncols: usize, legend: bool) -> Result<()> {
    if panels.is_empty() || ncols == 0 {
        return Err(Error::invalid(format!(
            "{}: a line grid needs at least one panel and one column ({} panel(s), {ncols} \
             column(s))",
            path.display(),
            panels.len()
        )));
    }
    for p in panels {
        for s in &p.series {
            check_series(path, s)?;
        }
        if !p.colors.is_empty() && p.colors.len() != p.series.len() {
            return Err(Error::Shape {
                what: format!("{}: colours of panel `{}`", path.display(), p.title),
                expected: format!("{} (one per series) or none", p.series.len()),
                got: format!("{}", p.colors.len()),
            });
        }
    }
    let cols = ncols.min(panels.len());
    let rows = panels.len().div_ceil(cols);
    let size = (cols as u32 * LINE_PANEL.0, rows as u32 * LINE_PANEL.1);
    render(path, size, |root| {
        root.fill(&WHITE)?;
        let cells = root.split_evenly((rows, cols));
        for (p, cell) in panels.iter().zip(&cells) {
            draw_line_panel(cell, p, legend)?;
        }
        Ok(())
    })
}

fn draw_line_panel(area: &Area<'_>, p: &LinePanel<'_>, legend: bool) -> DynResult<()> {
    let xr = auto_range(p.series.iter().flat_map(|s| s.x));
    let yr = p
        .y_range
        .unwrap_or_else(|| auto_range(p.series.iter().flat_map(|s| s.y)));
    let mut chart = panel_chart(area, &p.title, xr, yr)?;
    panel_mesh(&mut chart, &p.x_label, &p.y_label, true)?;
    let mut any_label = false;
    for (i, s) in p.series.iter().enumerate() {
        let c = match p.colors.get(i) {
            Some(&(r, g, b)) => RGBColor(r, g, b),
            None => TAB10[i % TAB10.len()],
        };
        // runs of consecutive finite points
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (&x, &y) in s.x.iter().zip(s.y) {
            if x.is_finite() && y.is_finite() {
                if let Some(r) = runs.last_mut() {
                    r.push((x, y));
                }
            } else if runs.last().is_some_and(|r| !r.is_empty()) {
                runs.push(Vec::new());
            }
        }
        let drawn = chart.draw_series(
            runs.into_iter()
                .map(|r| PathElement::new(r, c.stroke_width(2))),
        )?;
        if legend && !s.label.is_empty() {
            any_label = true;
            drawn.label(s.label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
            });
        }
    }
    if any_label {
        chart
            .configure_series_labels()
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
    }
    Ok(())
}

/// Coordinates of the `n + 1` bin boundaries of an image axis: `edges` when they are finite and
/// increasing, the bin indices 0..=n otherwise.
fn image_edges(edges: &[f64]) -> (Vec<f64>, bool) {
    let ok = edges.iter().all(|v| v.is_finite()) && edges.windows(2).all(|w| w[1] > w[0]);
    if ok {
        (edges.to_vec(), true)
    } else {
        ((0..edges.len()).map(|i| i as f64).collect(), false)
    }
}

/// An (nx, ny) image `img[ix * ny + iy]` in a panel, cell (ix, iy) over
/// `[xe[ix], xe[ix + 1]] × [ye[iy], ye[iy + 1]]` (UMAP1 to the right, UMAP2 upwards), viridis
/// on the linear range of its finite values; non-finite cells stay white. `descs`: the axis
/// titles.
fn draw_image(
    area: &Area<'_>,
    title: &str,
    img: &[f64],
    (xe, ye): (&[f64], &[f64]),
    descs: (&str, &str),
) -> DynResult<()> {
    let ny = ye.len() - 1;
    let (xr, yr) = ((xe[0], xe[xe.len() - 1]), (ye[0], ye[ny]));
    let mut chart = panel_chart(area, title, xr, yr)?;
    panel_mesh(&mut chart, descs.0, descs.1, false)?;
    let (lo, hi) = img
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let norm = Norm { lo, hi, log: false };
    chart.draw_series(
        img.iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, &v)| {
                let (ix, iy) = (k / ny, k % ny);
                Rectangle::new(
                    [(xe[ix], ye[iy]), (xe[ix + 1], ye[iy + 1])],
                    viridis(norm.t(v)).filled(),
                )
            }),
    )?;
    Ok(())
}

/// The sketch figure (the reference's `03_decoder_UMAP-sketching.png`), 4 panels of 420 × 400
/// pixels side by side:
/// 1. the UMAP as a density (linear counts, as the reference's `hexbin(mincnt=1)`) with the bin
///    grid (`xedges`, `yedges`, spanning the points' extent) as thin red lines, titled
///    "epoch {epoch} UMAP";
/// 2. `hist` as an image, titled `hist_title`;
/// 3. `peaks` as an image, titled "final {labels.len()} local maxima";
/// 4. the UMAP density with red points at `points` labelled with `labels`, titled
///    "sketched epoch {epoch} UMAP".
///
/// The images are `(nx, ny)` row-major (`[ix * ny + iy]`, ix along UMAP1), drawn with UMAP1 to
/// the right and UMAP2 upwards (the orientation of the reference's `imshow(np.rot90(hist))`)
/// over the bin edges (over bin indices when the edges are not finite and increasing), viridis
/// on linear values.
///
/// Errors (naming `path`) on an odd `xy` length, fewer than 2 edges along an axis, `hist` or
/// `peaks` not of nx·ny values, a `labels` length neither 0 nor `points.len()`.
pub fn sketch_plot(path: &Path, s: &Sketch<'_>) -> Result<()> {
    check_xy(path, "sketch UMAP", s.xy)?;
    if s.xedges.len() < 2 || s.yedges.len() < 2 {
        return Err(Error::Shape {
            what: format!("{}: sketch bin edges", path.display()),
            expected: "at least 2 edges along each axis".into(),
            got: format!("{} x edges, {} y edges", s.xedges.len(), s.yedges.len()),
        });
    }
    let (nx, ny) = (s.xedges.len() - 1, s.yedges.len() - 1);
    for (what, img) in [("histogram", s.hist), ("maxima image", s.peaks)] {
        if img.len() != nx * ny {
            return Err(Error::Shape {
                what: format!("{}: sketch {what}", path.display()),
                expected: format!("{nx} × {ny} = {} values (one per bin)", nx * ny),
                got: format!("{}", img.len()),
            });
        }
    }
    check_labels(path, "sketch point", s.points.len(), s.labels.len())?;

    // ranges of panels 1 and 4: the points, the sketched points, the grid lines
    let (xr, yr) = {
        let pts = finite_pairs(s.xy).chain(
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite()),
        );
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = pts.unzip();
        xs.extend_from_slice(s.xedges);
        ys.extend_from_slice(s.yedges);
        (auto_range(xs.iter()), auto_range(ys.iter()))
    };
    let hist = Hist2::new(finite_pairs(s.xy), xr, yr);
    let norm = match hist.nonzero_range() {
        Some((lo, hi)) => Norm {
            lo: lo as f64,
            hi: hi as f64,
            log: false,
        },
        None => Norm {
            lo: 0.0,
            hi: 1.0,
            log: false,
        },
    };
    // extent of the points: where the reference's grid lines start and end
    let ext = |k: usize| {
        finite_pairs(s.xy)
            .map(|p| if k == 0 { p.0 } else { p.1 })
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (ex, ey) = (ext(0), ext(1));
    let ((xe, x_umap), (ye, y_umap)) = (image_edges(s.xedges), image_edges(s.yedges));
    let descs = (
        if x_umap { "UMAP1" } else { "UMAP1 bin" },
        if y_umap { "UMAP2" } else { "UMAP2 bin" },
    );
    let size = (4 * SKETCH_PANEL.0, SKETCH_PANEL.1);
    render(path, size, |root| {
        root.fill(&WHITE)?;
        let cells = root.split_evenly((1, 4));

        let mut chart = panel_chart(&cells[0], &format!("epoch {} UMAP", s.epoch), xr, yr)?;
        panel_mesh(&mut chart, "UMAP1", "UMAP2", false)?;
        hist.draw(&mut chart, norm)?;
        if ex.0 <= ex.1 {
            let red = MARK.stroke_width(1);
            chart.draw_series(
                s.xedges
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(|&x| PathElement::new(vec![(x, ey.0), (x, ey.1)], red)),
            )?;
            chart.draw_series(
                s.yedges
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(|&y| PathElement::new(vec![(ex.0, y), (ex.1, y)], red)),
            )?;
        }

        draw_image(&cells[1], &s.hist_title, s.hist, (&xe, &ye), descs)?;
        draw_image(
            &cells[2],
            &format!("final {} local maxima", s.labels.len()),
            s.peaks,
            (&xe, &ye),
            descs,
        )?;

        let title = format!("sketched epoch {} UMAP", s.epoch);
        let mut chart = panel_chart(&cells[3], &title, xr, yr)?;
        panel_mesh(&mut chart, "UMAP1", "UMAP2", false)?;
        hist.draw(&mut chart, norm)?;
        draw_marks(&mut chart, s.points, s.labels)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A (n, 2) cloud of two Gaussian-ish blobs from a fixed LCG (no RNG dependency needed).
    fn blobs(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut u = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / (1u64 << 53) as f64
        };
        (0..n)
            .flat_map(|i| {
                let c = if i % 2 == 0 { -3.0 } else { 3.0 };
                let g = |u: &mut dyn FnMut() -> f64| (u() + u() + u() - 1.5) * 2.0;
                [c + g(&mut u), 0.5 * c + g(&mut u)]
            })
            .collect()
    }

    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// Number of viridis-ish (non-grey, non-red) pixels in the column band `[x0, x1)`.
    fn coloured_pixels(img: &(u32, u32, Vec<u8>), x0: u32, x1: u32) -> usize {
        let (w, h, buf) = img;
        let mut n = 0;
        for y in 0..*h {
            for x in x0..x1.min(*w) {
                let k = 3 * (y * w + x) as usize;
                let (r, g, b) = (buf[k], buf[k + 1], buf[k + 2]);
                let grey = r == g && g == b;
                let red = r > 200 && g < 60 && b < 60;
                if !grey && !red {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn density_grid_writes_a_grid_with_colour_bar() {
        let dir = tempfile::tempdir().unwrap();
        let a = blobs(400, 1);
        let mut b = blobs(300, 2);
        b[7] = f64::NAN;
        b[10] = f64::INFINITY;
        let marks = [(-3.0, -1.5), (3.0, 1.5), (f64::NAN, 0.0)];
        let labels: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
        let panels: Vec<DensityPanel<'_>> = (0..5)
            .map(|i| DensityPanel {
                title: format!("epoch {i}"),
                xy: if i % 2 == 0 { &a } else { &b },
                marks: if i == 4 { &marks } else { &[] },
                mark_labels: if i == 4 { &labels } else { &[] },
            })
            .collect();
        let path = dir.path().join("umaps.png");
        density_grid(&path, &panels, "particle density").unwrap();
        let img = decode(&path);
        // 5 panels: 3 columns, 2 rows
        assert_eq!((img.0, img.1), (3 * 400 + 120, 2 * 380));
        assert!(coloured_pixels(&img, 0, 400) > 500, "first panel is blank");
        // the colour bar
        assert!(coloured_pixels(&img, 3 * 400, 3 * 400 + 120) > 500);
        // red marks in the fifth panel (row 1, column 1)
        let (w, _, buf) = &img;
        let reds = (380..760u32)
            .flat_map(|y| (400..800u32).map(move |x| 3 * (y * w + x) as usize))
            .filter(|&k| buf[k] > 200 && buf[k + 1] < 60 && buf[k + 2] < 60)
            .count();
        assert!(reds > 20, "{reds} red pixels");
    }

    #[test]
    fn density_grid_single_panel_and_no_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.png");
        let panels = [DensityPanel {
            title: "epoch 1".into(),
            xy: &[],
            marks: &[],
            mark_labels: &[],
        }];
        density_grid(&path, &panels, "").unwrap();
        let (w, h, _) = decode(&path);
        assert_eq!((w, h), (400 + 120, 380));
    }

    #[test]
    fn density_grid_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let name = path.display().to_string();
        let err = density_grid(&path, &[], "x").unwrap_err();
        assert!(err.to_string().contains(&name), "{err}");
        let odd = [1.0, 2.0, 3.0];
        let err = density_grid(
            &path,
            &[DensityPanel {
                title: "t".into(),
                xy: &odd,
                marks: &[],
                mark_labels: &[],
            }],
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains(&name), "{err}");
        let labels = vec!["A".to_string()];
        let err = density_grid(
            &path,
            &[DensityPanel {
                title: "t".into(),
                xy: &odd[..2],
                marks: &[(0.0, 0.0), (1.0, 1.0)],
                mark_labels: &labels,
            }],
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains(&name), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn line_grid_writes_panels() {
        let dir = tempfile::tempdir().unwrap();
        let x: Vec<f64> = (0..33).map(|i| i as f64 / 64.0).collect();
        let y1: Vec<f64> = x.iter().map(|v| (-8.0 * v).exp()).collect();
        let mut y2: Vec<f64> = x.iter().map(|v| (-4.0 * v).exp()).collect();
        y2[5] = f64::NAN;
        let panel = |t: &str, colors: Vec<(u8, u8, u8)>| LinePanel {
            title: t.into(),
            x_label: "frequency (1/px)".into(),
            y_label: "FSC".into(),
            series: vec![
                Series {
                    label: "epoch 2",
                    x: &x,
                    y: &y1,
                },
                Series {
                    label: "epoch 3",
                    x: &x,
                    y: &y2,
                },
            ],
            colors,
            y_range: Some((0.0, 1.02)),
        };
        let panels = vec![
            panel("maximum A", vec![]),
            panel("maximum B", vec![(68, 1, 84), (253, 231, 37)]),
            panel("maximum C", vec![]),
        ];
        let path = dir.path().join("fsc.png");
        line_grid(&path, &panels, 2, true).unwrap();
        let img = decode(&path);
        assert_eq!((img.0, img.1), (2 * 440, 2 * 360));
        assert!(coloured_pixels(&img, 0, 440) > 200);
        // fewer panels than columns: one row of as many columns as panels
        let path1 = dir.path().join("one.png");
        line_grid(&path1, &panels[..1], 3, false).unwrap();
        let (w, h, _) = decode(&path1);
        assert_eq!((w, h), (440, 360));
    }

    #[test]
    fn line_grid_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let name = path.display().to_string();
        let x = [0.0, 1.0, 2.0];
        let y = [0.0, 1.0];
        fn panel<'a>(series: Vec<Series<'a>>, colors: Vec<(u8, u8, u8)>) -> LinePanel<'a> {
            LinePanel {
                title: "p".into(),
                x_label: "epoch".into(),
                y_label: "v".into(),
                series,
                colors,
                y_range: None,
            }
        }
        let ok = || {
            vec![Series {
                label: "a",
                x: &x[..2],
                y: &y,
            }]
        };
        for (panels, ncols) in [
            (vec![], 2),
            (vec![panel(ok(), vec![])], 0),
            (
                vec![panel(
                    vec![Series {
                        label: "a",
                        x: &x,
                        y: &y,
                    }],
                    vec![],
                )],
                1,
            ),
            (vec![panel(ok(), vec![(0, 0, 0), (1, 1, 1)])], 1),
        ] {
            let err = line_grid(&path, &panels, ncols, true).unwrap_err();
            assert!(err.to_string().contains(&name), "{err}");
        }
        assert!(!path.exists());
    }

    /// `(xy, xedges, yedges, hist, peaks)` of a small sketch.
    #[allow(clippy::type_complexity)]
    fn sketch_inputs(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let xy = blobs(n, 3);
        let (ex, ey) = (
            auto_range(xy.iter().step_by(2)),
            auto_range(xy.iter().skip(1).step_by(2)),
        );
        let (nx, ny) = (6, 4);
        let xedges: Vec<f64> = (0..=nx)
            .map(|i| ex.0 + (ex.1 - ex.0) * i as f64 / nx as f64)
            .collect();
        let yedges: Vec<f64> = (0..=ny)
            .map(|i| ey.0 + (ey.1 - ey.0) * i as f64 / ny as f64)
            .collect();
        // a ramp along UMAP1 only: hist[ix * ny + iy] = ix
        let hist: Vec<f64> = (0..nx * ny).map(|k| (k / ny) as f64).collect();
        let mut peaks = vec![0.0; nx * ny];
        peaks[ny + 1] = 5.0;
        peaks[4 * ny + 2] = f64::NAN;
        (xy, xedges, yedges, hist, peaks)
    }

    #[test]
    fn sketch_plot_writes_four_panels() {
        let dir = tempfile::tempdir().unwrap();
        let (xy, xedges, yedges, hist, peaks) = sketch_inputs(500);
        let points = [(-3.0, -1.5), (3.0, 1.5)];
        let labels = vec!["A".to_string(), "B".to_string()];
        let s = Sketch {
            epoch: 7,
            xy: &xy,
            xedges: &xedges,
            yedges: &yedges,
            hist: &hist,
            hist_title: "UMAP smoothed histogram".into(),
            peaks: &peaks,
            points: &points,
            labels: &labels,
        };
        let path = dir.path().join("sketch.png");
        sketch_plot(&path, &s).unwrap();
        let img = decode(&path);
        assert_eq!((img.0, img.1), (4 * 420, 400));
        for p in 0..4 {
            let c = coloured_pixels(&img, p * 420, (p + 1) * 420);
            assert!(c > 500, "panel {p}: {c} coloured pixels");
        }
        // panel 2: the ramp along UMAP1 puts dark purple at the left, yellow at the right
        // of the same image row
        let (w, h, buf) = &img;
        let row = h / 2;
        let px = |x: u32| {
            let k = 3 * (row * w + x) as usize;
            (buf[k], buf[k + 1], buf[k + 2])
        };
        let (mut left, mut right) = (None, None);
        for x in 420..840 {
            let c = px(x);
            if c.0 != c.1 || c.1 != c.2 {
                left.get_or_insert(c);
                right = Some(c);
            }
        }
        let (left, right) = (left.unwrap(), right.unwrap());
        assert!(left.1 < 30 && right.1 > 200, "{left:?} … {right:?}");
    }

    #[test]
    fn sketch_plot_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let name = path.display().to_string();
        let (xy, xedges, yedges, hist, peaks) = sketch_inputs(50);
        let labels = vec!["A".to_string()];
        let base = || Sketch {
            epoch: 1,
            xy: &xy,
            xedges: &xedges,
            yedges: &yedges,
            hist: &hist,
            hist_title: "UMAP histogram".into(),
            peaks: &peaks,
            points: &[(0.0, 0.0)],
            labels: &labels,
        };
        sketch_plot(&path, &base()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let bad = [
            Sketch {
                xy: &xy[1..],
                ..base()
            },
            Sketch {
                xedges: &xedges[..1],
                ..base()
            },
            Sketch {
                hist: &hist[1..],
                ..base()
            },
            Sketch {
                peaks: &peaks[1..],
                ..base()
            },
            Sketch {
                points: &[(0.0, 0.0), (1.0, 1.0)],
                ..base()
            },
        ];
        for s in &bad {
            let err = sketch_plot(&path, s).unwrap_err();
            assert!(err.to_string().contains(&name), "{err}");
        }
        assert!(!path.exists());
    }
}
