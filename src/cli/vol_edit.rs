//! `flip-hand`, `invert-contrast`, `add-psize`: cryoDRGN's volume utilities. `flip-hand` mirrors
//! a volume along its first (z) axis (`vol[::-1]`: the other hand), `invert-contrast` negates it,
//! `add-psize` sets the pixel size in its header. Without `-o`, flip-hand and invert-contrast
//! write beside the input (`NAME_flipped.mrc`, `NAME_inverted.mrc`), as the reference's.
//!
//! Example: `cryofield flip-hand vol_000.mrc -o vol_000_flipped.mrc`

use crate::io::mrc::{read_cube, write_mrc};
use std::path::{Path, PathBuf};

/// Mirror a volume (the other hand).
#[derive(Debug, clap::Args)]
#[command(about = "Flip the handedness of a volume (mirror along z)")]
pub struct FlipArgs {
    /// Input volume (.mrc)
    pub input: PathBuf,
    /// Output volume [default: INPUT_flipped.mrc]
    #[arg(short = 'o', long = "outmrc")]
    pub o: Option<PathBuf>,
}

/// Negate a volume's densities.
#[derive(Debug, clap::Args)]
#[command(about = "Invert the contrast of a volume")]
pub struct InvertArgs {
    /// Input volume (.mrc)
    pub input: PathBuf,
    /// Output volume [default: INPUT_inverted.mrc]
    #[arg(short = 'o', long = "outmrc")]
    pub o: Option<PathBuf>,
}

/// Set a volume's pixel size.
#[derive(Debug, clap::Args)]
#[command(about = "Write a volume with another pixel size in its header")]
pub struct PsizeArgs {
    /// Input volume (.mrc)
    pub input: PathBuf,
    /// Pixel size (Å)
    #[arg(long = "Apix", default_value_t = 1.0)]
    pub apix: f32,
    /// Output volume (may be the input)
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// `NAME.mrc` → `NAME_{suffix}.mrc` beside it.
fn beside(input: &Path, suffix: &str) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    input.with_file_name(format!("{stem}_{suffix}.mrc"))
}

/// Run `flip-hand`.
pub fn run_flip(a: FlipArgs) -> anyhow::Result<()> {
    let (v, d, apix) = read_cube(&a.input)?;
    let plane = d * d;
    let flipped: Vec<f32> = (0..d)
        .rev()
        .flat_map(|z| v[z * plane..(z + 1) * plane].iter().copied())
        .collect();
    let out = a.o.unwrap_or_else(|| beside(&a.input, "flipped"));
    write_mrc(&out, &flipped, (d, d, d), apix, true)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Run `invert-contrast`.
pub fn run_invert(a: InvertArgs) -> anyhow::Result<()> {
    let (v, d, apix) = read_cube(&a.input)?;
    let neg: Vec<f32> = v.iter().map(|x| -x).collect();
    let out = a.o.unwrap_or_else(|| beside(&a.input, "inverted"));
    write_mrc(&out, &neg, (d, d, d), apix, true)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Run `add-psize`.
pub fn run_psize(a: PsizeArgs) -> anyhow::Result<()> {
    let (v, d, _) = read_cube(&a.input)?;
    write_mrc(&a.o, &v, (d, d, d), a.apix, true)?;
    eprintln!("wrote {} (Apix {})", a.o.display(), a.apix);
    Ok(())
}
