//! `parse-ctf-star` / `parse-ctf-csparc`: extract CTF parameters into a cryoDRGN ctf.pkl, float32 (N, 9):
//! `[D, Apix, dfU (Å), dfV (Å), dfAng (deg), kV, Cs (mm), w, phase shift (deg)]`.
//!
//! `--png` (star input) draws the CTF of the first particle on the `(D, D)` grid of frequencies
//! the reference plots. Deviations from the reference: it draws a seaborn heatmap (colour map,
//! colour bar, ticks) and needs `-D` and `--Apix` on the command line (it asserts `-D` and
//! divides by `--Apix` as given); here the image is in grey levels, from the CTF's minimum
//! (black) to its maximum (white), with D and Apix taken from the first row of the output.
//!
//! Example: `cryofield parse-ctf-star particles.star -o ctf.pkl --png ctf.png`

use crate::cli::view_mrcs::image_grid_png;
use crate::fourier::ctf::{compute_ctf, Ctf};
use crate::io::cs::CsFile;
use crate::io::star::StarFile;
use crate::meta::{CtfOverrides, CtfParams};
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Image and optics parameters that replace (or stand in for) a .star file's values; shared by
/// `parse-ctf-star` and `parse-star`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Optionally provide missing image parameters")]
pub struct ImageParams {
    /// Box size (pixels); default: rlnImageSize
    #[arg(short = 'D')]
    pub d: Option<usize>,
    /// Pixel size (Å/pixel); default: rlnImagePixelSize
    #[arg(long = "Apix")]
    pub apix: Option<f64>,
    /// Override the accelerating voltage (kV)
    #[arg(long)]
    pub kv: Option<f64>,
    /// Override the spherical aberration (mm)
    #[arg(long)]
    pub cs: Option<f64>,
    /// Override the amplitude contrast ratio
    #[arg(short = 'w')]
    pub w: Option<f64>,
    /// Override the phase shift (degrees)
    #[arg(long)]
    pub ps: Option<f64>,
}

/// Parse CTF parameters from a RELION .star file.
#[derive(Debug, clap::Args)]
#[command(about = "Parse CTF parameters from a RELION .star file into ctf.pkl")]
pub struct StarArgs {
    /// RELION .star file
    pub star: PathBuf,
    /// Output ctf.pkl
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// Also draw the CTF of the first particle to this PNG
    #[arg(long, value_name = "PNG")]
    pub png: Option<PathBuf>,
    #[command(flatten)]
    pub image: ImageParams,
}

/// Parse CTF parameters from a cryoSPARC .cs file.
#[derive(Debug, clap::Args)]
#[command(about = "Parse CTF parameters from a cryoSPARC .cs file into ctf.pkl")]
pub struct CsArgs {
    /// cryoSPARC particles .cs file
    pub cs: PathBuf,
    /// Box size (pixels); default: blob/shape
    #[arg(short = 'D')]
    pub d: Option<usize>,
    /// Pixel size (Å/pixel); default: blob/psize_A
    #[arg(long = "Apix")]
    pub apix: Option<f64>,
    /// Output ctf.pkl
    #[arg(short = 'o')]
    pub o: PathBuf,
}

fn report(c: &CtfParams, out: &Path) {
    if let Some(r) = c.rows.first() {
        eprintln!(
            "first particle: D={} Apix={} dfU={} Å dfV={} Å dfAng={}° kV={} Cs={} mm w={} phase={}°",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]
        );
    }
    eprintln!(
        "wrote CTF parameters of {} particles to {}",
        c.len(),
        out.display()
    );
}

/// CTF parameters of `star` (`parse-ctf-star`, `parse-star`): `p.d`/`p.apix` replace
/// rlnImageSize/rlnImagePixelSize, `p.kv`/`p.cs`/`p.w`/`p.ps` the optics values.
pub fn ctf_from_star(star: &StarFile, p: &ImageParams) -> anyhow::Result<CtfParams> {
    let overrides = CtfOverrides {
        kv: p.kv,
        cs: p.cs,
        w: p.w,
        ps: p.ps,
    };
    Ok(CtfParams::from_star(star, p.d, p.apix, &overrides)?)
}

/// Writes `ctf` to the ctf.pkl `out` (atomically), then, with `png`, the plot of its first
/// particle (see [`plot_first_ctf`]), and reports the first row.
pub fn save_ctf(ctf: &CtfParams, out: &Path, png: Option<&Path>) -> anyhow::Result<()> {
    ctf.save(out)?;
    if let Some(png) = png {
        plot_first_ctf(png, ctf)?;
        eprintln!("wrote the CTF of the first particle to {}", png.display());
    }
    report(ctf, out);
    Ok(())
}

/// Draws the CTF of the first row `[D, Apix, …]` of `ctf` to the PNG `path` (atomically), on
/// the reference's `(D, D)` grid: pixel `(r, c)` at frequency `(x_c, x_r) / Apix` (1/Å),
/// `x_i = i/D − ½`, so DC is at `(D/2, D/2)`; grey levels from the minimum to the maximum.
pub fn plot_first_ctf(path: &Path, ctf: &CtfParams) -> anyhow::Result<()> {
    let Some(row) = ctf.rows.first() else {
        bail!("{}: no particle to plot the CTF of", path.display());
    };
    let (d, apix) = (row[0] as usize, row[1]);
    let x: Vec<f32> = (0..d).map(|i| i as f32 / d as f32 - 0.5).collect();
    let freqs: Vec<[f32; 2]> = x
        .iter()
        .flat_map(|&y| x.iter().map(move |&x| [x / apix, y / apix]))
        .collect();
    image_grid_png(path, &compute_ctf(&freqs, &Ctf::from_row(row)), d, 1)
}

/// Run `parse-ctf-star`.
pub fn run_star(a: StarArgs) -> anyhow::Result<()> {
    let star = StarFile::read(&a.star)?;
    let ctf = ctf_from_star(&star, &a.image)?;
    save_ctf(&ctf, &a.o, a.png.as_deref())
}

/// Run `parse-ctf-csparc`.
pub fn run_cs(a: CsArgs) -> anyhow::Result<()> {
    let cs = CsFile::read(&a.cs)?;
    let ctf = CtfParams::from_cs(&cs.records, &cs.path, a.d, a.apix)?;
    save_ctf(&ctf, &a.o, None)
}
