//! `fsc`: Fourier shell correlation between two volumes, with an optional real-space mask, as
//! the reference's `cryodrgn_utils fsc` (without its `--corrected` / `--ref-volume`
//! phase-randomization modes). Prints the resolution (Å) at FSC = 0.5 and 0.143 (the largest
//! frequency whose FSC reaches the threshold), writes the curve as `pixres fsc` lines (or prints
//! it when `-o` is not given) and optionally plots it.
//!
//! Example: `cryofield fsc half1.mrc half2.mrc --mask mask.mrc -o fsc.txt --plot fsc.png`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::analysis::plot::{fsc_plot, Series};
use crate::fourier::fsc::{fmt_g, fsc_curve, FscCurve};
use crate::io::mrc::MrcFile;

/// Compute the FSC between two volumes.
#[derive(Debug, clap::Args)]
#[command(
    about = "Fourier shell correlation between two .mrc volumes (resolution at 0.5 and 0.143)"
)]
pub struct Args {
    /// First volume (.mrc)
    pub vol1: PathBuf,
    /// Second volume (.mrc), same box size as the first
    pub vol2: PathBuf,
    /// Real-space mask (.mrc, same box size) applied to both volumes before the transform
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Pixel size (Å/pixel) for the reported resolutions; default: the volumes' header value
    /// (1.0 when neither header has one)
    #[arg(long = "Apix")]
    pub apix: Option<f64>,
    /// Text file for the FSC values (`pixres fsc` per line); printed to stdout when absent
    #[arg(short = 'o', long = "outtxt")]
    pub o: Option<PathBuf>,
    /// Also plot the curve to this .png (bare `--plot`: OUT.png next to -o, or fsc-plot.png)
    #[arg(short = 'p', long, num_args = 0..=1)]
    pub plot: Option<Option<PathBuf>>,
}

/// A cubic volume `(D, D, D)` and its header pixel size (`None` when the header has no cell).
pub(crate) fn load_volume(
    path: &Path,
    what: &str,
) -> anyhow::Result<(Vec<f32>, usize, Option<f64>)> {
    let f = MrcFile::open(path).with_context(|| format!("reading {what}"))?;
    let h = &f.header;
    if !(h.nx == h.ny && h.ny == h.nz) {
        bail!(
            "{}: {what} is not a cubic volume ({}×{}×{})",
            path.display(),
            h.nz,
            h.ny,
            h.nx
        );
    }
    if !h.nx.is_multiple_of(2) {
        bail!(
            "{}: {what} has an odd box size {} (the FSC needs an even box)",
            path.display(),
            h.nx
        );
    }
    let data = f.read_all().with_context(|| format!("reading {what}"))?;
    // As the reference: Apix = round(xlen / nx, 6).
    let a = h.cella[0] as f64 / h.nx as f64;
    let apix = (a.is_finite() && a > 0.0).then(|| (a * 1e6).round() / 1e6);
    Ok((data, h.nx, apix))
}

/// Run `fsc`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(p) = a.apix {
        if !(p.is_finite() && p > 0.0) {
            bail!("--Apix must be positive, got {p}");
        }
    }
    let (v1, d1, apix1) = load_volume(&a.vol1, "first volume")?;
    let (v2, d2, apix2) = load_volume(&a.vol2, "second volume")?;
    if d1 != d2 {
        bail!(
            "box sizes differ: {} is {d1}³ but {} is {d2}³",
            a.vol1.display(),
            a.vol2.display()
        );
    }
    let mask = match &a.mask {
        Some(p) => {
            let (m, dm, _) = load_volume(p, "mask")?;
            if dm != d1 {
                bail!("{}: mask is {dm}³ but the volumes are {d1}³", p.display());
            }
            Some(m)
        }
        None => None,
    };
    let apix = match (a.apix, apix1, apix2) {
        (Some(p), _, _) => p,
        (None, Some(x), Some(y)) if x != y => {
            bail!("the volumes have different pixel sizes ({x} and {y} Å): give one with --Apix")
        }
        (None, x, y) => x.or(y).unwrap_or(1.0),
    };
    eprintln!(
        "calculating FSC between {} and {} (D = {d1}, Apix = {apix} Å)",
        a.vol1.display(),
        a.vol2.display()
    );
    let curve = fsc_curve(&v1, &v2, d1, mask.as_deref())?;
    report(&curve, apix);

    match &a.o {
        Some(o) => {
            curve
                .write_txt(o)
                .with_context(|| format!("writing {}", o.display()))?;
            eprintln!("saved FSC values to {}", o.display());
        }
        None => print!("{}", curve.to_txt()),
    }
    if let Some(p) = &a.plot {
        let png = match (p, &a.o) {
            (Some(p), _) => p.clone(),
            (None, Some(o)) => o.with_extension("png"),
            (None, None) => PathBuf::from("fsc-plot.png"),
        };
        fsc_plot(
            &png,
            &[Series {
                label: "",
                x: &curve.pixres,
                y: &curve.fsc,
            }],
            apix,
        )
        .with_context(|| format!("plotting {}", png.display()))?;
        eprintln!("saved FSC plot to {}", png.display());
    }
    Ok(())
}

/// Prints the resolutions at FSC = 0.5 and 0.143 as the reference logs them (`.4g` Å).
fn report(curve: &FscCurve, apix: f64) {
    for thr in [0.5, 0.143] {
        match curve.resolution_at(thr, apix) {
            Some(r) => println!("res @ FSC={thr}: {} ang", fmt_g(r, 4)),
            None => println!("res @ FSC={thr}: N/A"),
        }
    }
}
