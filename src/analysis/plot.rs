//! PNG plots (line plots, scatter plots, histograms, FSC curves) drawn with `plotters` into an
//! in-memory RGB bitmap and encoded with `png`, with no system font dependency: text uses the
//! DejaVu Sans font embedded in the binary (`assets/DejaVuSans.ttf`, license in
//! `assets/LICENSE_DEJAVU`). Files are written atomically.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::io::atomic::write_bytes_atomic;

/// DejaVu Sans (Bitstream Vera license with public-domain DejaVu changes; see
/// `assets/LICENSE_DEJAVU`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Font family name every plot uses (registered from the embedded font).
pub(crate) const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters once; the result is kept for later calls.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("embedded plot font could not be loaded"))
    }
}

/// Colours of successive series and of cluster labels: matplotlib's default cycle (tab10).
pub(crate) const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Matplotlib's viridis at `t` in [0, 1] (linear between 9 of its colours, within 19/255 of the
/// real map per channel); `t` is clamped to [0, 1] and NaN maps to 0.
pub(crate) fn viridis(t: f64) -> RGBColor {
    const V: [(f64, f64, f64); 9] = [
        (68.0, 1.0, 84.0),
        (71.0, 44.0, 122.0),
        (59.0, 81.0, 139.0),
        (44.0, 113.0, 142.0),
        (33.0, 144.0, 141.0),
        (39.0, 173.0, 129.0),
        (92.0, 200.0, 99.0),
        (170.0, 220.0, 50.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (V.len() - 1) as f64;
    let i = (x.floor() as usize).min(V.len() - 2);
    let f = x - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    let (a, b) = (V[i], V[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Axis labels, ranges and image size of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotStyle {
    /// title drawn above the plot (none when empty)
    pub title: String,
    /// x axis label
    pub x_label: String,
    /// y axis label
    pub y_label: String,
    /// x range; the data's range (with a small margin) when `None`
    pub x_range: Option<(f64, f64)>,
    /// y range; the data's range (with a small margin) when `None`
    pub y_range: Option<(f64, f64)>,
    /// image size in pixels `(width, height)`
    pub size: (u32, u32),
}

impl Default for PlotStyle {
    fn default() -> Self {
        PlotStyle {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_range: None,
            y_range: None,
            size: (1000, 600),
        }
    }
}

/// One curve of a line plot: `y[i]` at `x[i]`, named `label` in the legend (no legend entry
/// when empty).
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// legend label
    pub label: &'a str,
    /// x values
    pub x: &'a [f64],
    /// y values, same length as `x`
    pub y: &'a [f64],
}

pub(crate) type DynResult<T> = std::result::Result<T, Box<dyn StdError + Send + Sync>>;

pub(crate) fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{}: plotting failed: {e}", path.display()))
}

/// Draws into a white `size` RGB bitmap with `draw`, encodes it as PNG and writes it atomically.
pub(crate) fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DynResult<()>,
) -> Result<()> {
    ensure_font()?;
    let (w, h) = size;
    if w < 64 || h < 64 || w > 16384 || h > 16384 {
        return Err(Error::invalid(format!(
            "{}: plot size {w}×{h} must be between 64 and 16384 pixels per side",
            path.display()
        )));
    }
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(&root).map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    let png = encode_png(&buf, w, h).map_err(|e| plot_err(path, e))?;
    write_bytes_atomic(path, &png)
}

/// PNG bytes of an RGB8 image `(h, w, 3)`.
fn encode_png(rgb: &[u8], w: u32, h: u32) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header()?;
        wr.write_image_data(rgb)?;
    }
    Ok(out)
}

/// `(min, max)` of the finite values, widened by 5 % (or ±0.5 for a single value); `(0, 1)`
/// when there is none.
pub(crate) fn auto_range<'a>(vals: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        let m = 0.05 * (hi - lo);
        (lo - m, hi + m)
    }
}

pub(crate) fn check_series(path: &Path, s: &Series<'_>) -> Result<()> {
    if s.x.len() != s.y.len() {
        return Err(Error::Shape {
            what: format!("{}: series `{}`", path.display(), s.label),
            expected: format!("{} y values (one per x)", s.x.len()),
            got: format!("{}", s.y.len()),
        });
    }
    Ok(())
}

/// Horizontal reference line drawn across a line plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HLine {
    /// y position
    pub y: f64,
    /// colour `(r, g, b)`
    pub rgb: (u8, u8, u8),
}

/// Options of [`line_plot`] beyond [`PlotStyle`].
#[derive(Default)]
pub struct LineOptions<'a> {
    /// horizontal reference lines
    pub hlines: &'a [HLine],
    /// formats x tick labels (plain numbers when `None`)
    pub x_tick_fmt: Option<&'a dyn Fn(&f64) -> String>,
}

/// A training-loss curve: `losses` (one per step, the first at step `offset`) averaged over
/// windows of ~1 % of the steps, drawn to a PNG at `path`; returns the last window's mean (the
/// "final loss"). Nothing is drawn for no losses.
pub fn loss_curve(
    path: impl AsRef<Path>,
    losses: &[f64],
    offset: usize,
    title: &str,
) -> Result<Option<f64>> {
    let w = (losses.len() / 100).max(1);
    let (xs, ys): (Vec<f64>, Vec<f64>) = losses
        .chunks(w)
        .enumerate()
        .map(|(i, c)| {
            (
                (i * w + offset) as f64,
                c.iter().sum::<f64>() / c.len() as f64,
            )
        })
        .unzip();
    if xs.is_empty() {
        return Ok(None);
    }
    let style = PlotStyle {
        title: title.into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        ..Default::default()
    };
    line_plot(
        path,
        &[Series {
            label: "loss",
            x: &xs,
            y: &ys,
        }],
        &style,
        &LineOptions::default(),
    )?;
    Ok(ys.last().copied())
}

/// Line plot of `series` (one colour each, legend from the non-empty labels) to a PNG at `path`.
pub fn line_plot(
    path: impl AsRef<Path>,
    series: &[Series<'_>],
    style: &PlotStyle,
    opts: &LineOptions<'_>,
) -> Result<()> {
    let path = path.as_ref();
    for s in series {
        check_series(path, s)?;
    }
    let xr = style
        .x_range
        .unwrap_or_else(|| auto_range(series.iter().flat_map(|s| s.x)));
    let yr = style
        .y_range
        .unwrap_or_else(|| auto_range(series.iter().flat_map(|s| s.y)));
    render(path, style.size, |root| {
        root.fill(&WHITE)?;
        let mut chart = chart_builder(root, style).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(style.x_label.as_str())
            .y_desc(style.y_label.as_str())
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .light_line_style(RGBColor(235, 235, 235))
            .max_light_lines(2);
        if let Some(f) = opts.x_tick_fmt {
            mesh.x_label_formatter(f);
        }
        mesh.draw()?;
        for h in opts.hlines {
            let c = RGBColor(h.rgb.0, h.rgb.1, h.rgb.2);
            chart.draw_series(LineSeries::new(
                [(xr.0, h.y), (xr.1, h.y)],
                c.stroke_width(2),
            ))?;
        }
        let mut any_label = false;
        for (i, s) in series.iter().enumerate() {
            let c = TAB10[i % TAB10.len()];
            let pts =
                s.x.iter()
                    .zip(s.y)
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|(&x, &y)| (x, y));
            let drawn = chart.draw_series(LineSeries::new(pts, c.stroke_width(3)))?;
            if !s.label.is_empty() {
                any_label = true;
                drawn.label(s.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                });
            }
        }
        if any_label {
            draw_legend(&mut chart)?;
        }
        Ok(())
    })
}

/// The legend of every labelled series, top right on a translucent white box.
pub(crate) fn draw_legend<'b>(
    chart: &mut ChartContext<
        'b,
        BitMapBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> DynResult<()> {
    chart
        .configure_series_labels()
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// The chart frame of the scatter and line plots: margins, label areas, the style's title.
pub(crate) fn chart_builder<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    style: &PlotStyle,
) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.margin(20)
        .margin_right(50)
        .x_label_area_size(60)
        .y_label_area_size(80);
    if !style.title.is_empty() {
        b.caption(style.title.as_str(), (FONT, 24));
    }
    b
}

/// The grid and the style's axis titles of a scatter plot or histogram.
pub(crate) fn draw_mesh<'b>(
    chart: &mut ChartContext<
        'b,
        BitMapBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    style: &PlotStyle,
) -> DynResult<()> {
    chart
        .configure_mesh()
        .x_desc(style.x_label.as_str())
        .y_desc(style.y_label.as_str())
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 20))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    Ok(())
}

/// Scatter plot of the points `(x[i], y[i])` (small dots) to a PNG at `path`.
pub fn scatter_plot(path: impl AsRef<Path>, x: &[f64], y: &[f64], style: &PlotStyle) -> Result<()> {
    let path = path.as_ref();
    check_series(path, &Series { label: "", x, y })?;
    let xr = style.x_range.unwrap_or_else(|| auto_range(x.iter()));
    let yr = style.y_range.unwrap_or_else(|| auto_range(y.iter()));
    let radius = if x.len() > 10_000 { 1 } else { 2 };
    render(path, style.size, |root| {
        root.fill(&WHITE)?;
        let mut chart = chart_builder(root, style).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        draw_mesh(&mut chart, style)?;
        let c = TAB10[0].mix(0.6);
        chart.draw_series(
            x.iter()
                .zip(y)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .map(|(&a, &b)| Circle::new((a, b), radius, c.filled())),
        )?;
        Ok(())
    })
}

/// Histogram of the finite `values` in `bins` equal-width bins over their range (or
/// `style.x_range`), bar heights in counts, to a PNG at `path`. Returns the counts `(bins)`.
pub fn histogram(
    path: impl AsRef<Path>,
    values: &[f64],
    bins: usize,
    style: &PlotStyle,
) -> Result<Vec<u64>> {
    let path = path.as_ref();
    if bins == 0 {
        return Err(Error::invalid(format!(
            "{}: histogram needs at least one bin",
            path.display()
        )));
    }
    let (lo, hi) = style.x_range.unwrap_or_else(|| {
        let (lo, hi) = values
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        if lo > hi {
            (0.0, 1.0)
        } else if lo == hi {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        }
    });
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        if v < lo || v > hi {
            continue;
        }
        // numpy's rule: the last bin includes its right edge.
        let b = (((v - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.05;
    let yr = style.y_range.unwrap_or((0.0, top));
    render(path, style.size, |root| {
        root.fill(&WHITE)?;
        let mut chart = chart_builder(root, style).build_cartesian_2d(lo..hi, yr.0..yr.1)?;
        draw_mesh(&mut chart, style)?;
        chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], TAB10[0].filled())
        }))?;
        Ok(())
    })?;
    Ok(counts)
}

/// FSC plot as the reference's `create_fsc_plot`: one curve per `(label, pixres, fsc)` (pixres
/// in 1/pixel), x in [0, 0.5] with ticks labelled `1/<res>Å` using `apix` (Å/pixel), y in
/// [0, 1], a blue line at 0.143.
pub fn fsc_plot(path: impl AsRef<Path>, curves: &[Series<'_>], apix: f64) -> Result<()> {
    let style = PlotStyle {
        title: String::new(),
        x_label: "Spatial frequency".into(),
        y_label: "Fourier shell correlation".into(),
        x_range: Some((0.0, 0.5)),
        y_range: Some((0.0, 1.0)),
        size: (1000, 600),
    };
    let fmt = move |v: &f64| {
        if *v <= 1e-9 {
            "DC".to_string()
        } else {
            format!("1/{:.1}Å", apix / v)
        }
    };
    line_plot(
        path,
        curves,
        &style,
        &LineOptions {
            hlines: &[HLine {
                y: 0.143,
                rgb: (0, 0, 255),
            }],
            x_tick_fmt: Some(&fmt),
        },
    )
}

/// The three central slices of a (d, d, d) volume (z = d/2, y = d/2, x = d/2; the reference's
/// `view_slices`), side by side in grey levels from the volume's minimum to its maximum, titled.
pub fn volume_slices(path: impl AsRef<Path>, vol: &[f32], d: usize, title: &str) -> Result<()> {
    let path = path.as_ref();
    if d == 0 || vol.len() != d * d * d {
        return Err(Error::invalid(format!(
            "{}: volume of {} values is not {d}³",
            path.display(),
            vol.len()
        )));
    }
    let (lo, hi) = vol
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let c = d / 2;
    let at = |axis: usize, r: usize, s: usize| match axis {
        0 => vol[c * d * d + r * d + s],
        1 => vol[r * d * d + c * d + s],
        _ => vol[r * d * d + s * d + c],
    };
    let cell = 240u32;
    let scale = (cell as f64 / d as f64).max(1.0);
    render(path, (3 * cell + 40, cell + 60), |root| {
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            title.to_string(),
            (10, 8),
            ("sans-serif", 16).into_font(),
        ))?;
        for (axis, name) in ["z", "y", "x"].iter().enumerate() {
            let x0 = 10 + axis as i32 * (cell as i32 + 10);
            root.draw(&Text::new(
                format!("{name} = {c}"),
                (x0, cell as i32 + 36),
                ("sans-serif", 14).into_font(),
            ))?;
            for r in 0..d {
                for s in 0..d {
                    let g = (((at(axis, r, s) - lo) / span).clamp(0.0, 1.0) * 255.0) as u8;
                    let (px, py) = (
                        x0 + (s as f64 * scale) as i32,
                        30 + (r as f64 * scale) as i32,
                    );
                    let (qx, qy) = (
                        x0 + ((s + 1) as f64 * scale) as i32,
                        30 + ((r + 1) as f64 * scale) as i32,
                    );
                    root.draw(&Rectangle::new(
                        [(px, py), (qx, qy)],
                        RGBColor(g, g, g).filled(),
                    ))?;
                }
            }
        }
        Ok(())
    })
}
