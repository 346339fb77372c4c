//! `plot-fsc`: several FSC curves in one plot (cryoDRGN's `plot_fsc`). Each input is a text file
//! of either two columns (`pixres fsc`, as `fsc -o` and cryoDRGN write them, an optional header
//! line) or one column of n FSC values (then at pixres k/2n, k = 0..n−1: the shells of a box of 2n,
//! as `fsc` writes them); each curve is
//! labelled with its file's name. With `--Apix` the frequency axis is also labelled in Å.
//!
//! Example: `cryofield plot-fsc run1/fsc.txt run2/fsc.txt --Apix 1.5 -o fsc-plot.png`

use crate::analysis::plot::{fsc_plot, Series};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Plot FSC curves together.
#[derive(Debug, clap::Args)]
#[command(about = "Plot one or more FSC curves (text files) together")]
pub struct Args {
    /// FSC text files (pixres fsc, or one column of FSC values)
    #[arg(required = true)]
    pub input: Vec<PathBuf>,
    /// Pixel size (Å) for the axis labels
    #[arg(short = 'a', long = "Apix", default_value_t = 1.0)]
    pub apix: f64,
    /// Output plot (.png) [default: fsc-plot.png, or INPUT.png for one input]
    #[arg(short = 'o', long = "outfile")]
    pub o: Option<PathBuf>,
}

/// (pixres, fsc) of an FSC text file.
pub fn read_fsc_txt(path: &Path) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let vals: Result<Vec<f64>, _> = t.split_whitespace().map(str::parse::<f64>).collect();
        match vals {
            Ok(v) if !v.is_empty() && v.len() <= 2 => rows.push(v),
            // a header line (e.g. `pixres fsc`) before any value
            Err(_) if rows.is_empty() => continue,
            _ => bail!(
                "{} line {}: expected `pixres fsc` or one FSC value, found `{t}`",
                path.display(),
                i + 1
            ),
        }
    }
    if rows.len() < 2 {
        bail!("{}: fewer than two FSC values", path.display());
    }
    let width = rows[0].len();
    if rows.iter().any(|r| r.len() != width) {
        bail!("{}: rows with different numbers of columns", path.display());
    }
    let n = rows.len();
    Ok(if width == 2 {
        (
            rows.iter().map(|r| r[0]).collect(),
            rows.iter().map(|r| r[1]).collect(),
        )
    } else {
        (
            (0..n).map(|k| k as f64 / (2 * n) as f64).collect(),
            rows.iter().map(|r| r[0]).collect(),
        )
    })
}

/// Run `plot-fsc`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let curves: Vec<(String, Vec<f64>, Vec<f64>)> = a
        .input
        .iter()
        .map(|p| {
            let (x, y) = read_fsc_txt(p)?;
            let label = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((label, x, y))
        })
        .collect::<anyhow::Result<_>>()?;
    let out = a.o.clone().unwrap_or_else(|| match a.input.as_slice() {
        [one] => one.with_extension("png"),
        _ => PathBuf::from("fsc-plot.png"),
    });
    let series: Vec<Series<'_>> = curves
        .iter()
        .map(|(l, x, y)| Series { label: l, x, y })
        .collect();
    fsc_plot(&out, &series, a.apix)?;
    eprintln!("wrote {} ({} curves)", out.display(), series.len());
    Ok(())
}
