//! `parse-ctf-star` / `parse-ctf-csparc`: extract CTF parameters into a cryoDRGN ctf.pkl, float32 (N, 9):
//! `[D, Apix, dfU (Å), dfV (Å), dfAng (deg), kV, Cs (mm), w, phase shift (deg)]`.
//!
//! Example: `cryofield parse-ctf-star particles.star -o ctf.pkl`

use crate::io::cs::CsFile;
use crate::io::star::StarFile;
use crate::meta::{CtfOverrides, CtfParams};
use std::path::PathBuf;

/// Parse CTF parameters from a RELION .star file.
#[derive(Debug, clap::Args)]
#[command(about = "Parse CTF parameters from a RELION .star file into ctf.pkl")]
pub struct StarArgs {
    /// RELION .star file
    pub star: PathBuf,
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
    /// Output ctf.pkl
    #[arg(short = 'o')]
    pub o: PathBuf,
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

fn report(c: &CtfParams, out: &std::path::Path) {
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

/// Run `parse-ctf-star`.
pub fn run_star(a: StarArgs) -> anyhow::Result<()> {
    let star = StarFile::read(&a.star)?;
    let overrides = CtfOverrides {
        kv: a.kv,
        cs: a.cs,
        w: a.w,
        ps: a.ps,
    };
    let ctf = CtfParams::from_star(&star, a.d, a.apix, &overrides)?;
    ctf.save(&a.o)?;
    report(&ctf, &a.o);
    Ok(())
}

/// Run `parse-ctf-csparc`.
pub fn run_cs(a: CsArgs) -> anyhow::Result<()> {
    let cs = CsFile::read(&a.cs)?;
    let ctf = CtfParams::from_cs(&cs.records, &cs.path, a.d, a.apix)?;
    ctf.save(&a.o)?;
    report(&ctf, &a.o);
    Ok(())
}
