//! `pose-error`: accuracy of predicted poses against ground truth, as the cryoDRGN paper's Table 1
//! and `cryodrgn.metrics.align_rot_best`. The two pose sets are first aligned by one global
//! rotation `A` (a reconstruction is only defined up to a rotation, `R_true ≈ R_pred·A`) in both
//! hands (a mirrored reconstruction has poses `F·R·F`, `F = diag(1, 1, −1)`; the hand with the
//! smaller median error is kept). Then per image:
//! - rotation error as the **squared** Frobenius norm `‖R_pred·A − R_true‖²_F` (the paper's and the
//!   reference's `frob_norm`; `= 4(1 − cos θ)`) and as the geodesic angle θ in degrees;
//! - translation error `‖t_pred − t_true‖·D` in pixels (pose.pkl translations are fractions of D),
//!   optionally after removing a global 3D shift of the volume (`--correct-global-trans`).
//!
//! Prints the medians (the paper's summary statistic) and means, the hand and `A`. With `-o`
//! writes to OUT_DIR: `pose_error.json` (summary), `pose_error.txt` (per image: index, squared
//! Frobenius, degrees, pixels), `pose_error.npy` (float64 `(N, 3)`: the same three columns, NaN
//! pixels without translations) and `pose_error_hist.png` (histograms of the rotation error in
//! degrees on log-spaced bins and of the translation error in pixels).
//!
//! With `--labels L.pkl` (one integer state per image, e.g. `simulate`'s labels.pkl) it also aligns
//! each state's images on their own. A heterogeneous reconstruction fixes poses only up to one
//! rotation and shift per state (turning state z's volume by Q(z) and its poses R to R·Q(z) changes
//! no image), so a drift of the frame with z shows as pose error under one global alignment. It
//! prints per state the errors after that state's alignment and the angle of its frame against the
//! global one, and writes `pose_error_states.json` and `pose_error_states.png` (both against the
//! state label).
//!
//! Example: `cryofield pose-error train/pose.49.pkl sim/pose.pkl -D 128 -o pose_err/`

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use plotters::prelude::*;

use crate::analysis::pca::percentile;
use crate::analysis::plot::{render, DynResult, FONT, TAB10};
use crate::error::IoContext;
use crate::fourier::fsc::fmt_g;
use crate::io::array::{ArrayData, NdArray};
use crate::io::atomic::write_atomic;
use crate::io::npy::write_npy;
use crate::meta::{load_indices, load_int_array, Poses};
use crate::pose::error::{
    check_rotations, pose_error_per_state, pose_error_with, PerStateReport, PoseErrorOptions,
    PoseErrorReport,
};

/// Pose accuracy against ground truth.
#[derive(Debug, clap::Args)]
#[command(
    about = "Pose accuracy against ground truth: global alignment (both hands), rotation error (squared Frobenius, degrees) and translation error (pixels)"
)]
pub struct Args {
    /// Predicted poses (pose.pkl)
    pub pred: PathBuf,
    /// Ground-truth poses (pose.pkl), same images in the same order
    pub truth: PathBuf,
    /// Box size (pixels), to express translations (fractions of D in pose.pkl) in pixels;
    /// required when both files have translations
    #[arg(short = 'D')]
    pub d: Option<usize>,
    /// Compare only these images (.pkl of indices into both files)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Remove a least-squares global 3D shift of the volume before measuring translation errors
    #[arg(long = "correct-global-trans")]
    pub correct_global_trans: bool,
    /// Per-image state labels (.pkl of integers, one per image of the pose files, e.g. the
    /// labels.pkl `simulate` writes): also align each state's images on their own. A
    /// heterogeneous reconstruction fixes poses only up to one rotation and shift per state, so
    /// this is the accuracy the images determine; the per-state frames are reported too
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// With --labels: states with fewer images are not aligned on their own
    #[arg(long = "min-state-images", default_value_t = 5)]
    pub min_state_images: usize,
    /// Output folder for the JSON summary, per-image errors and histogram plot
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
}

/// Run `pose-error`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut pred = Poses::load(&a.pred).with_context(|| format!("reading {}", a.pred.display()))?;
    let mut truth =
        Poses::load(&a.truth).with_context(|| format!("reading {}", a.truth.display()))?;
    if pred.len() != truth.len() {
        bail!(
            "{} has {} poses but {} has {}: the two files must hold the same images in the same order",
            a.pred.display(),
            pred.len(),
            a.truth.display(),
            truth.len()
        );
    }
    let labels = match &a.labels {
        Some(p) => Some(load_labels(p, pred.len())?),
        None => None,
    };
    let ind = match &a.ind {
        Some(p) => {
            let ind = load_indices(p, pred.len())?;
            if ind.is_empty() {
                bail!("{}: the index file selects no images", p.display());
            }
            pred = pred.select(&ind);
            truth = truth.select(&ind);
            Some(ind)
        }
        None => None,
    };
    if pred.is_empty() {
        bail!("{}: no poses", a.pred.display());
    }
    check_rotations(&pred, &a.pred.display().to_string())?;
    check_rotations(&truth, &a.truth.display().to_string())?;
    let both_trans = pred.trans.is_some() && truth.trans.is_some();
    let d = match (a.d, both_trans) {
        (Some(0), _) => bail!("-D must be at least 1"),
        (Some(d), _) => d,
        (None, true) => bail!(
            "{} and {} both have translations (fractions of D): give the box size with -D to report them in pixels",
            a.pred.display(),
            a.truth.display()
        ),
        // No translations to convert: D is not used.
        (None, false) => 0,
    };
    if !both_trans {
        let missing = if pred.trans.is_none() {
            &a.pred
        } else {
            &a.truth
        };
        eprintln!(
            "{} has no translations: reporting rotation errors only",
            missing.display()
        );
    }
    eprintln!(
        "aligning {} poses of {} to {}",
        pred.len(),
        a.pred.display(),
        a.truth.display()
    );
    let opts = PoseErrorOptions {
        d,
        correct_global_trans: a.correct_global_trans,
    };
    let r = pose_error_with(&pred, &truth, &opts)?;
    print_report(&r, d);
    let states = match &labels {
        Some(l) => {
            let l: Vec<i64> = match &ind {
                Some(ind) => ind.iter().map(|&i| l[i]).collect(),
                None => l.clone(),
            };
            let s = pose_error_per_state(&pred, &truth, &l, &opts, &r, a.min_state_images)?;
            print_states(&s, d);
            Some(s)
        }
        None => None,
    };

    if let Some(dir) = &a.o {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let index: Vec<usize> = ind.unwrap_or_else(|| (0..r.rot_frob.len()).collect());
        write_summary(&dir.join("pose_error.json"), &r, &a, d)?;
        write_table(&dir.join("pose_error.txt"), &r, &index)?;
        write_npy(dir.join("pose_error.npy"), &per_image_array(&r))?;
        let png = dir.join("pose_error_hist.png");
        plot_histograms(&png, &r)?;
        eprintln!(
            "saved pose_error.{{json,txt,npy}} and pose_error_hist.png to {}",
            dir.display()
        );
        if let Some(st) = &states {
            write_states(&dir.join("pose_error_states.json"), st)?;
            plot_states(&dir.join("pose_error_states.png"), st, &r)?;
            eprintln!(
                "saved pose_error_states.json and pose_error_states.png to {}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// One integer state label per image from a .pkl (an integer numpy array of `n`, or `n × 1`).
fn load_labels(path: &Path, n: usize) -> anyhow::Result<Vec<i64>> {
    let (shape, labels) = load_int_array(path, "state labels")?;
    if shape.iter().skip(1).any(|&s| s != 1) {
        bail!(
            "{}: state labels must be one integer per image, found an array of shape {shape:?}",
            path.display()
        );
    }
    if labels.len() != n {
        bail!(
            "{} has {} state labels but the pose files hold {n} images",
            path.display(),
            labels.len()
        );
    }
    Ok(labels)
}

fn print_states(s: &PerStateReport, d: usize) {
    println!("per-state alignment (each state's images aligned on their own):");
    println!("  state  images  median rot (squared Frobenius)  median rot (deg)  median trans (px)  frame vs global (deg)");
    for st in &s.states {
        let r = &st.report;
        println!(
            "  {:>5}  {:>6}  {:>30}  {:>16.4}  {:>17}  {:>21}",
            st.label,
            r.rot_deg.len(),
            fmt_g(r.median_rot_frob, 4),
            r.median_rot_deg,
            r.median_trans_px.map_or("—".into(), |t| format!("{t:.4}")),
            st.frame_deg
                .map_or("other hand".into(), |f| format!("{f:.3}")),
        );
    }
    for (label, n) in &s.skipped {
        println!("  {label:>5}  {n:>6}  (too few images to align alone: skipped)");
    }
    println!(
        "after per-state alignment, all aligned states: median squared Frobenius {}, median {:.4}°{}",
        fmt_g(s.median_rot_frob, 4),
        s.median_rot_deg,
        s.median_trans_px
            .map_or(String::new(), |t| format!(", median {t:.4} px (D = {d})"))
    );
}

fn write_states(path: &Path, s: &PerStateReport) -> anyhow::Result<()> {
    let states: Vec<_> = s
        .states
        .iter()
        .map(|st| {
            let r = &st.report;
            serde_json::json!({
                "label": st.label,
                "n": r.rot_deg.len(),
                "flipped": r.flipped,
                "align": r.align,
                "frame_deg": st.frame_deg,
                "median_rot_frob": r.median_rot_frob,
                "median_rot_deg": r.median_rot_deg,
                "mean_rot_deg": r.mean_rot_deg,
                "median_trans_px": r.median_trans_px,
                "global_shift_px": r.global_shift_px,
            })
        })
        .collect();
    let v = serde_json::json!({
        "states": states,
        "skipped": s.skipped.iter().map(|(l, n)| serde_json::json!({"label": l, "n": n})).collect::<Vec<_>>(),
        "median_rot_frob": s.median_rot_frob,
        "median_rot_deg": s.median_rot_deg,
        "median_trans_px": s.median_trans_px,
    });
    write_json(path, &v)
}

/// Per state: the median rotation error after the state's own alignment and under the global
/// alignment, and the angle of the state's frame against the global one (degrees, one axis).
fn plot_states(path: &Path, s: &PerStateReport, global: &PoseErrorReport) -> anyhow::Result<()> {
    // [label, median error aligned alone, frame angle, median error under the global alignment]
    let rows: Vec<[f64; 4]> = s
        .states
        .iter()
        .map(|st| {
            let g: Vec<f64> = st.images.iter().map(|&i| global.rot_deg[i]).collect();
            [
                st.label as f64,
                st.report.median_rot_deg,
                st.frame_deg.unwrap_or(f64::NAN),
                percentile(&g, 50.0),
            ]
        })
        .collect();
    let x0 = rows.iter().map(|r| r[0]).fold(f64::INFINITY, f64::min);
    let x1 = rows.iter().map(|r| r[0]).fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x1 > x0 {
        (x0 - 0.5, x1 + 0.5)
    } else {
        (x0 - 1.0, x0 + 1.0)
    };
    let ytop = rows
        .iter()
        .flat_map(|r| r[1..].to_vec())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    render(path, (1000, 600), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "per-state alignment: median {}° (one global alignment: {}°)",
                    fmt_g(s.median_rot_deg, 3),
                    fmt_g(global.median_rot_deg, 3)
                ),
                (FONT, 24),
            )
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, 0.0..ytop)?;
        chart
            .configure_mesh()
            .x_desc("state label")
            .y_desc("degrees")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        // (legend, column of `rows`)
        let series = [
            ("median rotation error, state aligned alone", 1),
            ("state's frame against the global alignment", 2),
            ("median rotation error, one global alignment", 3),
        ];
        for (k, (label, col)) in series.into_iter().enumerate() {
            // (the frame is missing, NaN, for states aligned in the other hand)
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| (r[0], r[col]))
                .filter(|p| p.1.is_finite())
                .collect();
            let color = TAB10[k];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 16))
            .draw()?;
        Ok(())
    })
    .with_context(|| format!("plotting {}", path.display()))
}

fn print_report(r: &PoseErrorReport, d: usize) {
    let n = r.rot_frob.len();
    let hand = if r.flipped {
        "flipped (R_pred → F·R_pred·F, F = diag(1, 1, −1))"
    } else {
        "same"
    };
    println!("images: {n}");
    println!(
        "handedness: {hand}; median squared Frobenius {} (other hand: {})",
        fmt_g(r.median_rot_frob, 4),
        fmt_g(r.other_hand_median_rot_frob, 4)
    );
    if r.other_hand_median_rot_frob < 1.5 * r.median_rot_frob {
        println!("warning: the two hands fit about equally well: the hand (and likely the poses) are not determined");
    }
    println!(
        "rotation error, squared Frobenius ‖R_pred·A − R_true‖²_F: median {}, mean {}",
        fmt_g(r.median_rot_frob, 4),
        fmt_g(r.mean_rot_frob, 4)
    );
    println!(
        "rotation error (degrees): median {:.4}, mean {:.4}",
        r.median_rot_deg, r.mean_rot_deg
    );
    if let (Some(med), Some(mean)) = (r.median_trans_px, r.mean_trans_px) {
        println!("translation error (pixels, D = {d}): median {med:.4}, mean {mean:.4}");
    }
    if let Some(u) = r.global_shift_px {
        println!(
            "global 3D shift removed (pixels): [{:.4}, {:.4}, {:.4}]",
            u[0], u[1], u[2]
        );
    }
    if r.flipped {
        println!("alignment A (R_true ≈ F·R_pred·F·A):");
    } else {
        println!("alignment A (R_true ≈ R_pred·A):");
    }
    for row in &r.align {
        println!("  [{:>10.6} {:>10.6} {:>10.6}]", row[0], row[1], row[2]);
    }
}

/// `v` as pretty JSON in `path` (atomically).
fn write_json(path: &Path, v: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)? + "\n";
    write_atomic(path, |w| w.write_all(text.as_bytes()).at(path))
        .with_context(|| format!("writing {}", path.display()))
}

fn write_summary(path: &Path, r: &PoseErrorReport, a: &Args, d: usize) -> anyhow::Result<()> {
    let v = serde_json::json!({
        "pred": a.pred.display().to_string(),
        "true": a.truth.display().to_string(),
        "ind": a.ind.as_ref().map(|p| p.display().to_string()),
        "n": r.rot_frob.len(),
        "D": if d > 0 { Some(d) } else { None },
        "flipped": r.flipped,
        "align": r.align,
        "rot_frob_definition": "squared Frobenius norm ||H(R_pred) A - R_true||_F^2 (cryodrgn.metrics.frob_norm)",
        "median_rot_frob": r.median_rot_frob,
        "mean_rot_frob": r.mean_rot_frob,
        "median_rot_deg": r.median_rot_deg,
        "mean_rot_deg": r.mean_rot_deg,
        "median_trans_px": r.median_trans_px,
        "mean_trans_px": r.mean_trans_px,
        "other_hand_median_rot_frob": r.other_hand_median_rot_frob,
        "correct_global_trans": a.correct_global_trans,
        "global_shift_px": r.global_shift_px,
    });
    write_json(path, &v)
}

fn write_table(path: &Path, r: &PoseErrorReport, index: &[usize]) -> anyhow::Result<()> {
    write_atomic(path, |w| {
        writeln!(w, "# index rot_frob_sq rot_deg trans_px").at(path)?;
        for (k, &i) in index.iter().enumerate() {
            let t = r.trans_px.as_ref().map_or(f64::NAN, |t| t[k]);
            writeln!(w, "{i} {:.8e} {:.6} {:.6}", r.rot_frob[k], r.rot_deg[k], t).at(path)?;
        }
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// `(N, 3)` float64: squared Frobenius, degrees, pixels (NaN without translations).
fn per_image_array(r: &PoseErrorReport) -> NdArray {
    let n = r.rot_frob.len();
    let data = (0..n)
        .flat_map(|k| {
            let t = r.trans_px.as_ref().map_or(f64::NAN, |t| t[k]);
            [r.rot_frob[k], r.rot_deg[k], t]
        })
        .collect();
    NdArray {
        shape: vec![n, 3],
        data: ArrayData::F64(data),
    }
}

/// Rotation-error histogram (degrees, 60 log-spaced bins from a power of ten below the smallest
/// error, floored at 0.001°, to 180°; smaller values in the first bin) and, with translations,
/// a translation-error histogram (pixels, 60 bins from 0 to 1.5 × the 99th percentile; larger
/// values in the last bin). Medians are marked in red.
fn plot_histograms(path: &Path, r: &PoseErrorReport) -> anyhow::Result<()> {
    const BINS: usize = 60;
    let min_pos = r
        .rot_deg
        .iter()
        .copied()
        .filter(|&x| x > 0.0)
        .fold(f64::INFINITY, f64::min);
    let lo = 10f64.powf(min_pos.max(1e-3).log10().floor()).min(100.0);
    let hi = 180f64;
    let (llo, lhi) = (lo.log10(), hi.log10());
    let mut rot_counts = vec![0u64; BINS];
    for &x in &r.rot_deg {
        let f = (x.max(lo).log10() - llo) / (lhi - llo);
        rot_counts[((f * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let rot_edges: Vec<f64> = (0..=BINS)
        .map(|b| 10f64.powf(llo + (lhi - llo) * b as f64 / BINS as f64))
        .collect();
    let trans = r.trans_px.as_ref().map(|t| {
        let top = (1.5 * percentile(t, 99.0)).max(1e-3);
        let mut counts = vec![0u64; BINS];
        for &x in t {
            counts[((x / top * BINS as f64) as usize).min(BINS - 1)] += 1;
        }
        let edges: Vec<f64> = (0..=BINS).map(|b| top * b as f64 / BINS as f64).collect();
        (counts, edges, t.iter().any(|&x| x > top))
    });
    let width = if trans.is_some() { 1600 } else { 900 };
    render(path, (width, 600), |root| {
        root.fill(&WHITE)?;
        let panels = if trans.is_some() {
            root.split_evenly((1, 2))
        } else {
            vec![root.clone()]
        };
        let top = |c: &[u64]| c.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.08;
        {
            let ytop = top(&rot_counts);
            let mut chart = ChartBuilder::on(&panels[0])
                .caption(
                    format!("rotation error: median {}°", fmt_g(r.median_rot_deg, 4)),
                    (FONT, 24),
                )
                .margin(20)
                .x_label_area_size(60)
                .y_label_area_size(80)
                .build_cartesian_2d((lo..hi).log_scale(), 0.0..ytop)?;
            let xdesc = if r.rot_deg.iter().any(|&x| x < lo) {
                format!("rotation error (degrees, log scale; first bin: < {lo})")
            } else {
                "rotation error (degrees, log scale)".to_string()
            };
            chart
                .configure_mesh()
                .x_desc(xdesc)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .y_desc("images")
                .label_style((FONT, 16))
                .axis_desc_style((FONT, 20))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            draw_bars(&mut chart, &rot_counts, &rot_edges)?;
            let m = r.median_rot_deg.clamp(lo, hi);
            chart.draw_series(LineSeries::new([(m, 0.0), (m, ytop)], RED.stroke_width(2)))?;
        }
        if let (Some((counts, edges, overflow)), Some(med)) = (&trans, r.median_trans_px) {
            let ytop = top(counts);
            let xtop = edges[BINS];
            let label = if *overflow {
                format!(
                    "translation error (pixels; last bin: ≥ {:.3})",
                    edges[BINS - 1]
                )
            } else {
                "translation error (pixels)".to_string()
            };
            let mut chart = ChartBuilder::on(&panels[1])
                .caption(
                    format!("translation error: median {} px", fmt_g(med, 4)),
                    (FONT, 24),
                )
                .margin(20)
                .x_label_area_size(60)
                .y_label_area_size(80)
                .build_cartesian_2d(0.0..xtop, 0.0..ytop)?;
            chart
                .configure_mesh()
                .x_desc(label)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .y_desc("images")
                .label_style((FONT, 16))
                .axis_desc_style((FONT, 20))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            draw_bars(&mut chart, counts, edges)?;
            let m = med.min(xtop);
            chart.draw_series(LineSeries::new([(m, 0.0), (m, ytop)], RED.stroke_width(2)))?;
        }
        Ok(())
    })
    .with_context(|| format!("plotting {}", path.display()))
}

/// Bars `counts[b]` over `[edges[b], edges[b + 1]]`.
fn draw_bars<X>(
    chart: &mut ChartContext<
        '_,
        BitMapBackend<'_>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    counts: &[u64],
    edges: &[f64],
) -> DynResult<()>
where
    X: Ranged<ValueType = f64>,
{
    chart.draw_series(counts.iter().enumerate().map(|(b, &c)| {
        Rectangle::new(
            [(edges[b], 0.0), (edges[b + 1], c as f64)],
            TAB10[0].filled(),
        )
    }))?;
    Ok(())
}
