//! `phase-flip`: flip the phases of each particle image by the sign of its CTF, as cryoDRGN's
//! `phase_flip`: `img' = Re ifftn_center(fft2_center(img) · sign(CTF))`, so that every Fourier
//! component of the result carries `|CTF|` instead of `CTF`.
//!
//! The CTF of image i is evaluated as the reference's `compute_ctf` (see
//! [`crate::fourier::ctf`]) on the frequencies `(j − D/2)/D` cycles/pixel (x along columns, y
//! along rows) divided by the pixel size, with the ctf.pkl row's defocus, astigmatism, voltage,
//! Cs, amplitude contrast and phase shift. As the reference's `load_ctf_for_training`, the pixel
//! size is `D₀·Apix₀/D` from the first row (`D₀`, `Apix₀` its box and pixel size), for images
//! downsampled after the CTF was parsed. `sign(0) = 0`.
//!
//! Deviations from the reference: the reference transforms the whole stack at once and its
//! inverse transform (`ifftn`) also runs along the stack axis, which mixes the images of a stack
//! of more than one image (its output agrees with a per-image phase flip only for a one-image
//! stack); here each image is flipped on its own. The transforms run in f64. The output header
//! keeps the input's pixel size (the reference writes 1 Å). The images are streamed in batches
//! and the stack is written atomically.
//!
//! Example: `cryofield phase-flip particles.mrcs ctf.pkl -o particles.flip.mrcs`

use crate::cli::progress;
use crate::cli::translate_mrcs::CenteredFft2;
use crate::fourier::ctf::{compute_ctf, Ctf};
use crate::io::mrc::MrcStackWriter;
use crate::io::source::ParticleSource;
use crate::meta::CtfParams;
use anyhow::bail;
use rayon::prelude::*;
use std::path::PathBuf;

/// Phase flip images by the CTF's sign.
#[derive(Debug, clap::Args)]
#[command(about = "Phase flip particle images by the sign of their CTF")]
pub struct Args {
    /// Input particles (.mrcs, .star, .cs or .txt)
    pub mrcs: PathBuf,
    /// Input CTF parameters (.pkl, (N, 9))
    pub ctf_params: PathBuf,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Output particle stack (.mrcs)
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Frequencies `(d², 2)` in 1/Å of a `(d, d)` centred spectrum: `((x − d/2)/d, (y − d/2)/d) /
/// apix`, x fastest (the reference's `meshgrid_2d(−0.5, 0.5, D, endpoint=False) / Apix`).
pub fn centred_freqs(d: usize, apix: f32) -> Vec<[f32; 2]> {
    let f: Vec<f32> = (0..d)
        .map(|j| -0.5 + j as f32 / d as f32)
        .map(|v| v / apix)
        .collect();
    let mut out = Vec::with_capacity(d * d);
    for &fy in &f {
        for &fx in &f {
            out.push([fx, fy]);
        }
    }
    out
}

/// `sign(x)` with `sign(0) = 0` (torch's).
fn sign(x: f32) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Phase flips one `(d, d)` image: `Re ifftn_center(fft2_center(img) · sign(ctf))`, `ctf`
/// `(d²)` laid out as the centred spectrum.
///
/// # Panics
/// If `img` or `ctf` is not `d²` long for the plan's `d`.
pub fn phase_flip_image(plan: &CenteredFft2, img: &[f32], ctf: &[f32]) -> Vec<f32> {
    let mut f = plan.forward(img);
    assert_eq!(ctf.len(), f.len(), "CTF must hold d² values");
    for (v, &c) in f.iter_mut().zip(ctf) {
        *v *= sign(c);
    }
    plan.inverse_real(&f)
}

/// Images per batch read, processed in parallel and written.
const BATCH: usize = 1024;

/// Run `phase-flip`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let src = ParticleSource::open(&a.mrcs, a.datadir.as_deref())?;
    let (n, d) = (src.len(), src.d());
    if n == 0 {
        bail!("{}: no images", a.mrcs.display());
    }
    if !d.is_multiple_of(2) {
        bail!(
            "{}: image size D = {d} must be even (as the reference requires)",
            a.mrcs.display()
        );
    }
    let ctf = CtfParams::load(&a.ctf_params)?;
    if ctf.len() != n {
        bail!(
            "found {n} images in {} but {} contains {} CTF parameter entries",
            a.mrcs.display(),
            a.ctf_params.display(),
            ctf.len()
        );
    }
    // load_ctf_for_training: the pixel size at the images' box size, from the first row
    let row0 = ctf.rows[0];
    let apix = row0[0] * row0[1] / d as f32;
    if !(apix.is_finite() && apix > 0.0) {
        bail!(
            "{}: first row gives a pixel size of {apix} Å at D = {d}",
            a.ctf_params.display()
        );
    }
    eprintln!("{n} images of {d}x{d}, CTF at {apix} Å/pixel");
    let freqs = centred_freqs(d, apix);
    let plan = CenteredFft2::new(d);
    let mut w = MrcStackWriter::create(&a.o, n, d, d, src.apix())?;
    let pb = progress::bar(n as u64, "phase-flip");
    let mut buf = Vec::new();
    let mut s = 0;
    while s < n {
        let e = (s + BATCH).min(n);
        buf.resize((e - s) * d * d, 0.0);
        src.read_range(s, e, &mut buf)?;
        let out: Vec<f32> = buf
            .par_chunks(d * d)
            .zip(ctf.rows[s..e].par_iter())
            .flat_map_iter(|(img, row)| {
                let c = compute_ctf(&freqs, &Ctf::from_row(row));
                phase_flip_image(&plan, img, &c)
            })
            .collect();
        w.write_images(&out)?;
        pb.inc((e - s) as u64);
        s = e;
    }
    w.finish()?;
    pb.finish_and_clear();
    eprintln!("wrote {} ({n} phase-flipped images)", a.o.display());
    Ok(())
}
