//! `view-mrcs`: draw the first images of a particle stack (or the first z-slices of a volume) in
//! a grid, as cryoDRGN's `view_mrcs`: up to 25 images, `⌈√n⌉` per row, each in grey levels from
//! its own minimum (black) to its maximum (white), row 0 at the top (matplotlib's
//! `imshow(cmap="Greys_r")`). `--invert` negates the images first; `--ind` keeps only the
//! particles of an index .pkl.
//!
//! Deviations from the reference: it shows the figure in a window without `-o`; here the grid is
//! always written, by default to `INPUT.png` beside the input. It fails on stacks of fewer than
//! 25 images; here fewer are drawn. `-n` (ours) sets how many. Each image is scaled up by an
//! integer factor (nearest neighbour) to about 150 pixels, the reference's cell size.
//!
//! Example: `cryofield view-mrcs particles.mrcs -o particles.png`

use crate::io::atomic::write_bytes_atomic;
use crate::io::source::ParticleSource;
use crate::meta::load_indices;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// View the first images of a stack.
#[derive(Debug, clap::Args)]
#[command(
    about = "Draw the first images of a particle stack (or slices of a volume) in a grid PNG"
)]
pub struct Args {
    /// Input particles or volume (.mrc, .mrcs, .star, .cs or .txt)
    pub mrcs: PathBuf,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Negate the images
    #[arg(long)]
    pub invert: bool,
    /// Keep only the particles at these indices (.pkl)
    #[arg(long, value_name = "PKL")]
    pub ind: Option<PathBuf>,
    /// Output image (.png) [default: INPUT.png]
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
    /// Number of images to draw
    #[arg(short = 'n', long = "num-imgs", default_value_t = 25)]
    pub num_imgs: usize,
}

/// Pixels between cells of the grid (white).
const GAP: usize = 4;
/// Target cell side in pixels (the reference's 1.5 inch at 100 dpi).
const CELL: usize = 150;

/// Draws `imgs` (`n` images `(d, d)`, row-major) in a grid of `ncols` columns to a PNG at
/// `path` (atomically): each image in grey levels from its minimum (black) to its maximum
/// (white; a constant image is mid-grey), scaled up by `max(1, 150/d)` (nearest neighbour),
/// cells separated by 4 white pixels. Non-finite pixels are drawn red.
pub fn image_grid_png(path: &Path, imgs: &[f32], d: usize, ncols: usize) -> anyhow::Result<()> {
    if d == 0 || imgs.is_empty() || !imgs.len().is_multiple_of(d * d) || ncols == 0 {
        bail!(
            "{}: nothing to draw ({} values for images of {d}x{d})",
            path.display(),
            imgs.len()
        );
    }
    let n = imgs.len() / (d * d);
    let ncols = ncols.min(n);
    let nrows = n.div_ceil(ncols);
    let scale = (CELL / d).max(1);
    let cell = d * scale;
    let w = ncols * cell + (ncols + 1) * GAP;
    let h = nrows * cell + (nrows + 1) * GAP;
    if w > 16384 || h > 16384 {
        bail!(
            "{}: a grid of {nrows}x{ncols} images of {d}x{d} is too large to draw ({w}x{h} pixels)",
            path.display()
        );
    }
    let mut rgb = vec![255u8; w * h * 3];
    for (i, img) in imgs.chunks_exact(d * d).enumerate() {
        let (r, c) = (i / ncols, i % ncols);
        let (x0, y0) = (GAP + c * (cell + GAP), GAP + r * (cell + GAP));
        let (lo, hi) = img
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let range = (hi - lo) as f64;
        for y in 0..cell {
            for x in 0..cell {
                let v = img[(y / scale) * d + x / scale];
                let px = if !v.is_finite() {
                    [255, 0, 0]
                } else if range > 0.0 {
                    let g = (((v - lo) as f64 / range) * 255.0).round() as u8;
                    [g, g, g]
                } else {
                    [128, 128, 128]
                };
                let o = ((y0 + y) * w + x0 + x) * 3;
                rgb[o..o + 3].copy_from_slice(&px);
            }
        }
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .with_context(|| format!("{}: encoding PNG", path.display()))?;
        wr.write_image_data(&rgb)
            .with_context(|| format!("{}: encoding PNG", path.display()))?;
    }
    write_bytes_atomic(path, &png_bytes)?;
    Ok(())
}

/// Columns of the reference's grid of `n` images: `⌈√n⌉`.
pub fn grid_cols(n: usize) -> usize {
    let mut c = (n as f64).sqrt().floor() as usize;
    while c * c < n {
        c += 1;
    }
    c.max(1)
}

/// Run `view-mrcs`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.num_imgs == 0 {
        bail!("-n must be positive");
    }
    let mut src = ParticleSource::open(&a.mrcs, a.datadir.as_deref())?;
    if let Some(ind) = &a.ind {
        let ind = load_indices(ind, src.len())?;
        src = src.select(&ind)?;
    }
    let (n, d) = (src.len(), src.d());
    if n == 0 {
        bail!("{}: no images to draw", a.mrcs.display());
    }
    eprintln!("{n} {d}x{d} images");
    let k = n.min(a.num_imgs);
    let mut buf = vec![0.0f32; k * d * d];
    src.read_range(0, k, &mut buf)?;
    if a.invert {
        buf.iter_mut().for_each(|v| *v = -*v);
    }
    let out = a.o.clone().unwrap_or_else(|| a.mrcs.with_extension("png"));
    image_grid_png(&out, &buf, d, grid_cols(k))?;
    eprintln!("wrote {} ({k} images)", out.display());
    Ok(())
}
