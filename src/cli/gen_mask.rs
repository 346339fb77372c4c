//! `gen-mask`: a soft mask for a volume, as cryoDRGN's `gen_mask`: threshold the density (default
//! half its 99.99th percentile), dilate by `--dilate` Å, then a cosine edge `--dist` Å wide
//! ([`crate::analysis::mask`]). Writes the mask (.mrc, the input's pixel size) and, with `-p`, its
//! three central slices as a PNG.
//!
//! Example: `cryofield gen-mask vol.mrc mask.mrc --dilate 25 --dist 15 -p mask_slices.png`

use crate::analysis::mask::cosine_dilation_mask;
use crate::analysis::plot::volume_slices;
use crate::io::mrc::{read_cube, write_mrc};
use anyhow::Context;
use std::path::PathBuf;

/// Make a mask from a volume.
#[derive(Debug, clap::Args)]
#[command(about = "Threshold, dilate and soften a volume into a mask (cryoDRGN gen_mask)")]
pub struct Args {
    /// Input volume (.mrc)
    pub input: PathBuf,
    /// Output mask (.mrc)
    pub output: PathBuf,
    /// Density threshold of the initial mask [default: half the 99.99th percentile]
    #[arg(long, allow_hyphen_values = true)]
    pub threshold: Option<f32>,
    /// Dilate the thresholded mask by this much (Å)
    #[arg(long, default_value_t = 25.0)]
    pub dilate: f64,
    /// Width of the cosine edge (Å); 0: a hard edge
    #[arg(long, default_value_t = 15.0)]
    pub dist: f64,
    /// Pixel size (Å) instead of the input header's
    #[arg(long = "Apix")]
    pub apix: Option<f64>,
    /// Also write the mask's central slices as a PNG
    #[arg(short = 'p', long = "png-output")]
    pub png: Option<PathBuf>,
}

/// Run `gen-mask`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (vol, d, header_apix) = read_cube(&a.input)?;
    let apix = a.apix.unwrap_or(header_apix as f64);
    let m = cosine_dilation_mask(&vol, d, a.threshold, a.dilate, a.dist, apix)
        .with_context(|| format!("{}", a.input.display()))?;
    eprintln!(
        "mask: Apix {apix:.5}, threshold {:.5}, dilation {} px, cosine edge {:.2} px",
        m.threshold, m.dilate_px, m.edge_px
    );
    write_mrc(&a.output, &m.values, (d, d, d), apix as f32, true)?;
    let inside = m.values.iter().filter(|&&v| v > 0.0).count();
    eprintln!(
        "wrote {} ({inside} of {} voxels > 0)",
        a.output.display(),
        m.values.len()
    );
    if let Some(p) = &a.png {
        volume_slices(p, &m.values, d, &format!("mask of {}", a.input.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
