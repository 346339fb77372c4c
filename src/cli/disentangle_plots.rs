//! `disentangle plots`: Fig 3D/E-style PNGs from saved outputs (no model needed):
//!
//! - `angle.png` (with `--pose-pred` and `--pose-angle`): the learned in-plane angle after alignment
//!   (±ψ̂ + c minimising the circular error, [`align_angle`]) against the true angle, in degrees, with the
//!   circular error mean(1 − cos Δ) and the mean |Δ| in the title;
//! - `z_<factor>.png`: the z plane (z0, z1; PC1, PC2 when zdim > 2; z0 against the factor when zdim = 1)
//!   coloured by each true factor (columns of `--truth`, named t1, t2, …) and, with `--pose-angle`, by ψ\*
//!   (a cyclic colour map);
//! - `plots.json`: the files written and what each shows.
//!
//! Example: `cryofield disentangle plots --z out/z.19.pkl --truth sim/truth.pkl --pose-pred out/pose_pred.19.pkl --pose-angle sim/pose_angle.pkl -o out/plots`

use crate::analysis::latent::load_z;
use crate::analysis::pca::Pca;
use crate::analysis::plot::{auto_range, render, viridis, FONT};
use crate::cli::disentangle::load_truth;
use crate::disentangle::mcc::align_angle;
use crate::io::atomic::write_bytes_atomic;
use anyhow::{bail, Context};
use plotters::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Plots of learned latents and poses against the truth.
#[derive(Debug, clap::Args)]
#[command(about = "PNG plots: learned vs true angle, z plane coloured by each true factor")]
pub struct PlotsArgs {
    /// Latents (z.N.pkl, .npy or text; (N, zdim))
    #[arg(long)]
    pub z: PathBuf,
    /// True factors ((N,) or (N, k), rows in the latents' order; simulate's truth.pkl)
    #[arg(long)]
    pub truth: PathBuf,
    /// Predicted in-plane angles (pose_pred.N.pkl of an in-plane head, (N,), radians)
    #[arg(long = "pose-pred", requires = "pose_angle")]
    pub pose_pred: Option<PathBuf>,
    /// True in-plane angles (simulate's pose_angle.pkl, (N,), radians)
    #[arg(long = "pose-angle")]
    pub pose_angle: Option<PathBuf>,
    /// Output folder
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// A colour for `t` ∈ \[0, 1\]: viridis, or a hue circle when `cyclic`.
fn colour(t: f64, cyclic: bool) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if cyclic {
        let h = t * 6.0;
        let x = 1.0 - ((h % 2.0) - 1.0).abs();
        let (r, g, b) = match h as u32 {
            0 => (1.0, x, 0.0),
            1 => (x, 1.0, 0.0),
            2 => (0.0, 1.0, x),
            3 => (0.0, x, 1.0),
            4 => (x, 0.0, 1.0),
            _ => (1.0, 0.0, x),
        };
        let s = |v: f64| (40.0 + 200.0 * v) as u8;
        return RGBColor(s(r), s(g), s(b));
    }
    viridis(t)
}

/// Scatter of (x, y) coloured by `c` (min..max mapped to the colour map), to a PNG.
#[allow(clippy::too_many_arguments)]
fn colour_scatter(
    path: &Path,
    x: &[f64],
    y: &[f64],
    c: &[f64],
    cyclic: bool,
    title: &str,
    xl: &str,
    yl: &str,
) -> crate::Result<()> {
    let (lo, hi) = c
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let xr = auto_range(x.iter());
    let yr = auto_range(y.iter());
    let r = if x.len() > 10_000 { 1 } else { 3 };
    render(path, (900, 800), |root| {
        root.fill(&WHITE)?;
        let mut b = ChartBuilder::on(root);
        b.margin(20)
            .margin_right(40)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .caption(title, (FONT, 22));
        let mut chart = b.build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        chart
            .configure_mesh()
            .x_desc(xl)
            .y_desc(yl)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        chart.draw_series(
            x.iter()
                .zip(y)
                .zip(c)
                .filter(|((a, b), _)| a.is_finite() && b.is_finite())
                .map(|((&a, &b), &v)| {
                    Circle::new((a, b), r, colour((v - lo) / span, cyclic).mix(0.8).filled())
                }),
        )?;
        Ok(())
    })
}

/// Run `disentangle plots`.
pub fn run(a: PlotsArgs) -> anyhow::Result<()> {
    let lat = load_z(&a.z)?;
    let (n, zdim) = (lat.n, lat.zdim);
    if n < 2 {
        bail!("{}: {n} latent row(s), need at least 2", a.z.display());
    }
    if let Some(p) = lat.z.iter().position(|v| !v.is_finite()) {
        bail!("{}: latent {p} = {} is not finite", a.z.display(), lat.z[p]);
    }
    let (truth, k) = load_truth(&a.truth, n)?;
    let psi_true = match &a.pose_angle {
        Some(p) => {
            let (v, w) = load_truth(p, n)?;
            if w != 1 {
                bail!(
                    "{}: expected (N,) true angles, found {w} columns",
                    p.display()
                );
            }
            Some(v)
        }
        None => None,
    };
    std::fs::create_dir_all(&a.o)
        .with_context(|| format!("cannot create the output folder {}", a.o.display()))?;
    let mut listed = Vec::new();

    if let (Some(pp), Some(truth_psi)) = (&a.pose_pred, &psi_true) {
        let (pred, w) = load_truth(pp, n)?;
        if w != 1 {
            bail!(
                "{}: {w} columns; angle plots need an in-plane head's (N,) angles (an SO(3) head's \
                 (N, 3, 3) rotations are not plotted)",
                pp.display()
            );
        }
        let al = align_angle(&pred, truth_psi)?;
        let xs: Vec<f64> = truth_psi
            .iter()
            .map(|&v| crate::disentangle::mcc::wrap_angle(v).to_degrees())
            .collect();
        let ys: Vec<f64> = al.aligned.iter().map(|v| v.to_degrees()).collect();
        let path = a.o.join("angle.png");
        let title = format!(
            "aligned learned angle ({}ψ_learned {:+.1}°): circ. error {:.4}, mean |Δ| {:.2}°",
            if al.sign < 0.0 { "−" } else { "" },
            al.offset.to_degrees(),
            al.circular_error,
            al.mean_abs_error.to_degrees()
        );
        colour_scatter(
            &path,
            &xs,
            &ys,
            &xs,
            true,
            &title,
            "true ψ* (deg)",
            "aligned learned ψ (deg)",
        )?;
        listed.push(json!({
            "file": "angle.png",
            "shows": "aligned learned vs true in-plane angle",
            "sign": al.sign,
            "offset_deg": al.offset.to_degrees(),
            "circular_error": al.circular_error,
            "mean_abs_error_deg": al.mean_abs_error.to_degrees(),
        }));
    }

    // the z plane
    let (px, py, xl, yl): (Vec<f64>, Vec<f64>, String, String) = if zdim == 1 {
        (
            lat.z.iter().map(|&v| v as f64).collect(),
            Vec::new(),
            "z0".to_string(),
            String::new(),
        )
    } else if zdim == 2 {
        (
            lat.z.iter().step_by(2).map(|&v| v as f64).collect(),
            lat.z.iter().skip(1).step_by(2).map(|&v| v as f64).collect(),
            "z0".to_string(),
            "z1".to_string(),
        )
    } else {
        let pca = Pca::fit(&lat.z, n, zdim)?;
        let t = pca.transform(&lat.z);
        (
            t.iter().step_by(zdim).copied().collect(),
            t.iter().skip(1).step_by(zdim).copied().collect(),
            format!("PC1 ({:.0}%)", 100.0 * pca.explained_variance_ratio[0]),
            format!("PC2 ({:.0}%)", 100.0 * pca.explained_variance_ratio[1]),
        )
    };
    let mut colourings: Vec<(String, Vec<f64>, bool)> = (0..k)
        .map(|j| {
            (
                format!("t{}", j + 1),
                (0..n).map(|i| truth[i * k + j]).collect(),
                false,
            )
        })
        .collect();
    if let Some(p) = &psi_true {
        colourings.push((
            "psi".into(),
            p.iter()
                .map(|v| v.rem_euclid(std::f64::consts::TAU))
                .collect(),
            true,
        ));
    }
    for (name, c, cyclic) in &colourings {
        let file = format!("z_{name}.png");
        let (ys, yl) = if zdim == 1 {
            (c.clone(), name.clone())
        } else {
            (py.clone(), yl.clone())
        };
        let title = format!("latent plane coloured by {name} (n = {n}, zdim = {zdim})");
        colour_scatter(&a.o.join(&file), &px, &ys, c, *cyclic, &title, &xl, &yl)?;
        listed.push(json!({"file": file, "shows": format!("z plane coloured by true {name}")}));
    }
    let out = json!({
        "z": a.z.display().to_string(),
        "truth": a.truth.display().to_string(),
        "n": n,
        "zdim": zdim,
        "plane": if zdim > 2 { "PCA (PC1, PC2)" } else if zdim == 2 { "(z0, z1)" } else { "z0 against the colouring factor" },
        "plots": listed,
    });
    let jp = a.o.join("plots.json");
    write_bytes_atomic(
        &jp,
        format!("{}\n", serde_json::to_string_pretty(&out)?).as_bytes(),
    )?;
    eprintln!("wrote {} plot(s) and {}", listed_len(&out), jp.display());
    Ok(())
}

fn listed_len(v: &serde_json::Value) -> usize {
    v["plots"].as_array().map_or(0, Vec::len)
}
