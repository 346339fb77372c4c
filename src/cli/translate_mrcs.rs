//! `translate-mrcs`: shift every image of a particle stack by its pose's in-plane translation, as
//! cryoDRGN's `translate_mrcs`: a phase shift in Fourier space,
//! `img' = Re ifftn_center(fft2_center(img) · exp(−2πi·k·t))`, with `k = (j − D/2)/D` cycles/pixel
//! (`j` the column for kx, the row for ky) and `t = trans · tscale · D` pixels, so a positive `t`
//! moves the content towards larger indices (`f'(x) = f(x − t)`); an integer `t` is exactly
//! `np.roll(img, (ty, tx), axis=(0, 1))`.
//!
//! The translations are the second item of a pose.pkl `(rot, trans)` or a bare `(N, 2)` array, as
//! a fraction of the box (cryoDRGN ≥ 1 convention): a value above 1 after `--tscale` is refused
//! as the old pixel convention (as the reference does). The images are streamed in batches and
//! the output stack is written atomically.
//!
//! Deviations from the reference: the transforms run in f64 (the reference mixes complex64 and
//! complex128), so results agree to f32 rounding; the output header keeps the input's pixel size
//! (the reference writes 1 Å); `--out-png` draws the first 9 images in grey levels (the
//! reference uses matplotlib's default colour map).
//!
//! Example: `cryofield translate-mrcs particles.mrcs pose.pkl -o particles.trans.mrcs`

use crate::cli::progress;
use crate::cli::view_mrcs::image_grid_png;
use crate::io::mrc::MrcStackWriter;
use crate::io::pkl::{read_pkl, PyValue};
use crate::io::source::ParticleSource;
use anyhow::{bail, Context};
use rayon::prelude::*;
use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Translate a particle stack by 2D shifts.
#[derive(Debug, clap::Args)]
#[command(
    about = "Translate a particle stack by the poses' 2D shifts (phase shift in Fourier space)"
)]
pub struct Args {
    /// Input particles (.mrcs, .star, .cs or .txt)
    pub mrcs: PathBuf,
    /// Pose or translations pickle (.pkl): (rot, trans) or trans (N, 2), fractions of the box
    pub trans: PathBuf,
    /// Scale the translations by this amount
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub tscale: f64,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Output particle stack (.mrcs)
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// Also draw the first 9 translated images to this PNG
    #[arg(long = "out-png")]
    pub out_png: Option<PathBuf>,
}

/// Centred 2D DFTs of `(d, d)` images in f64, as the reference's `fft2_center` and
/// `ifftn_center`: `fftshift(fft2(fftshift(x)))` and `ifftshift(ifft2(ifftshift(X)))` over the
/// two axes (`fftshift` moves index `j` to `(j + ⌊d/2⌋) mod d`). Any `d ≥ 1`.
pub struct CenteredFft2 {
    d: usize,
    fwd: Arc<dyn Fft<f64>>,
    inv: Arc<dyn Fft<f64>>,
}

impl CenteredFft2 {
    /// Plans for `(d, d)` images.
    pub fn new(d: usize) -> Self {
        let mut p = FftPlanner::new();
        CenteredFft2 {
            d,
            fwd: p.plan_fft_forward(d),
            inv: p.plan_fft_inverse(d),
        }
    }

    /// The image side `d`.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Transforms the rows of `buf` `(d, d)` in place, then its columns.
    fn fft2(&self, fft: &Arc<dyn Fft<f64>>, buf: &mut [Complex64]) {
        let d = self.d;
        fft.process(buf);
        let mut t = vec![Complex64::new(0.0, 0.0); d * d];
        for y in 0..d {
            for x in 0..d {
                t[x * d + y] = buf[y * d + x];
            }
        }
        fft.process(&mut t);
        for y in 0..d {
            for x in 0..d {
                buf[y * d + x] = t[x * d + y];
            }
        }
    }

    /// `fftshift(fft2(fftshift(img)))` of a `(d, d)` image, returning `(d, d)` with the zero
    /// frequency at `[d/2][d/2]`.
    ///
    /// # Panics
    /// If `img.len() != d²`.
    pub fn forward(&self, img: &[f32]) -> Vec<Complex64> {
        let d = self.d;
        assert_eq!(img.len(), d * d, "image must hold d² values");
        let s = d / 2;
        // fftshift: a[j] = img[(j − s) mod d] = img[(j + d − s) mod d]
        let mut a = vec![Complex64::new(0.0, 0.0); d * d];
        for y in 0..d {
            let sy = (y + d - s) % d;
            for x in 0..d {
                a[y * d + x] = Complex64::new(img[sy * d + (x + d - s) % d] as f64, 0.0);
            }
        }
        self.fft2(&self.fwd, &mut a);
        let mut out = vec![Complex64::new(0.0, 0.0); d * d];
        for y in 0..d {
            let sy = (y + d - s) % d;
            for x in 0..d {
                out[y * d + x] = a[sy * d + (x + d - s) % d];
            }
        }
        out
    }

    /// The real part of `ifftshift(ifft2(ifftshift(spec)))` (normalized by `1/d²`) of a centred
    /// `(d, d)` spectrum, as f32.
    ///
    /// # Panics
    /// If `spec.len() != d²`.
    pub fn inverse_real(&self, spec: &[Complex64]) -> Vec<f32> {
        let d = self.d;
        assert_eq!(spec.len(), d * d, "spectrum must hold d² values");
        let s = d / 2;
        // ifftshift: g[j] = spec[(j + s) mod d]
        let mut g = vec![Complex64::new(0.0, 0.0); d * d];
        for y in 0..d {
            let sy = (y + s) % d;
            for x in 0..d {
                g[y * d + x] = spec[sy * d + (x + s) % d];
            }
        }
        self.fft2(&self.inv, &mut g);
        let scale = 1.0 / (d * d) as f64;
        let mut out = vec![0.0f32; d * d];
        for y in 0..d {
            let sy = (y + s) % d;
            for x in 0..d {
                out[y * d + x] = (g[sy * d + (x + s) % d].re * scale) as f32;
            }
        }
        out
    }
}

/// Translates one `(d, d)` image by `t = (tx, ty)` pixels: the real part of
/// `ifftn_center(fft2_center(img) · exp(−2πi·(kx·tx + ky·ty)))` with `k = (j − d/2)/d`.
///
/// # Panics
/// If `img.len() != d²` for the plan's `d`.
pub fn translate_image(plan: &CenteredFft2, img: &[f32], t: [f64; 2]) -> Vec<f32> {
    let d = plan.d();
    let mut f = plan.forward(img);
    let half = d as f64 / 2.0;
    let two_pi = 2.0 * std::f64::consts::PI;
    for y in 0..d {
        let ky = (y as f64 - half) / d as f64;
        for x in 0..d {
            let kx = (x as f64 - half) / d as f64;
            let phi = -two_pi * (kx * t[0] + ky * t[1]);
            f[y * d + x] *= Complex64::new(phi.cos(), phi.sin());
        }
    }
    plan.inverse_real(&f)
}

/// The translations `(N, 2)` (fractions of the box) of a pose.pkl `(rot, trans)` or of a bare
/// `(N, 2)` array.
pub fn read_translations(path: &Path) -> anyhow::Result<Vec<[f32; 2]>> {
    let v = read_pkl(path)?;
    let arr = match &v {
        PyValue::Tuple(items) | PyValue::List(items) => match items.as_slice() {
            [_, t] => t,
            _ => bail!(
                "{}: expected a pose pickle (rot, trans) or a translation array (N, 2), found a {}-item sequence",
                path.display(),
                items.len()
            ),
        },
        other => other,
    };
    let a = arr
        .as_array()
        .with_context(|| format!("{}: the translations are not a numpy array", path.display()))?;
    if a.shape.len() != 2 || a.shape[1] != 2 {
        bail!(
            "{}: translations must have shape (N, 2), found {:?} (a rotation-only pose file has none)",
            path.display(),
            a.shape
        );
    }
    let vals = a.to_f32();
    if let Some(i) = vals.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: translation of image {} is not finite",
            path.display(),
            i / 2
        );
    }
    Ok(vals.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}

/// Images per batch read, processed in parallel and written.
const BATCH: usize = 1024;

/// Run `translate-mrcs`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if !a.tscale.is_finite() {
        bail!("--tscale {} must be finite", a.tscale);
    }
    let src = ParticleSource::open(&a.mrcs, a.datadir.as_deref())?;
    let (n, d) = (src.len(), src.d());
    if n == 0 {
        bail!("{}: no images", a.mrcs.display());
    }
    let frac = read_translations(&a.trans)?;
    if frac.len() != n {
        bail!(
            "{} holds {} translations but {} has {n} images",
            a.trans.display(),
            frac.len(),
            a.mrcs.display()
        );
    }
    // as the reference: trans *= tscale (f32), refuse values > 1, then *= D (pixels)
    let tscale = a.tscale as f32;
    let scaled: Vec<[f32; 2]> = frac
        .iter()
        .map(|t| [t[0] * tscale, t[1] * tscale])
        .collect();
    if let Some(i) = scaled.iter().position(|t| t[0] > 1.0 || t[1] > 1.0) {
        bail!(
            "{}: translation {:?} of image {i} (× tscale {}) is above 1: old pose format? \
             Translations must be fractions of the box",
            a.trans.display(),
            frac[i],
            a.tscale
        );
    }
    let pix: Vec<[f64; 2]> = scaled
        .iter()
        .map(|t| [(t[0] * d as f32) as f64, (t[1] * d as f32) as f64])
        .collect();
    eprintln!("{n} images of {d}x{d}");
    let plan = CenteredFft2::new(d);
    let mut w = MrcStackWriter::create(&a.o, n, d, d, src.apix())?;
    let pb = progress::bar(n as u64, "translate");
    let mut buf = Vec::new();
    let mut first9: Vec<f32> = Vec::new();
    let mut s = 0;
    while s < n {
        let e = (s + BATCH).min(n);
        buf.resize((e - s) * d * d, 0.0);
        src.read_range(s, e, &mut buf)?;
        let out: Vec<f32> = buf
            .par_chunks(d * d)
            .zip(pix[s..e].par_iter())
            .flat_map_iter(|(img, &t)| translate_image(&plan, img, t))
            .collect();
        if first9.len() < 9 * d * d {
            let take = (9 * d * d - first9.len()).min(out.len());
            first9.extend_from_slice(&out[..take]);
        }
        w.write_images(&out)?;
        pb.inc((e - s) as u64);
        s = e;
    }
    w.finish()?;
    pb.finish_and_clear();
    eprintln!("wrote {} ({n} images)", a.o.display());
    if let Some(png) = &a.out_png {
        image_grid_png(png, &first9, d, 3)?;
        eprintln!("wrote {}", png.display());
    }
    Ok(())
}
