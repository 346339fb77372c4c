//! `eval-vol`: decode volumes from a trained model (the reference's `eval_vol`). With `-z` (one
//! latent of zdim values) or a homogeneous model, `-o` is one `.mrc`; with `--z-start/--z-end
//! -n K` (K evenly spaced points) or `--zfile` (one z per line, or a .pkl/.npy of z), `-o` is
//! a folder of `vol_001.mrc`, `vol_002.mrc`, … (numbered from `--vol-start-index`, 1 as the
//! reference's 4.3; file names `--prefix` + three digits)
//!
//! Example: `cryofield eval-vol out/weights.19.safetensors -c out/config.json -z 0.5 -o vol.mrc`

use crate::analysis::latent::load_z;
use crate::model::load::LoadedModel;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Decode volumes at given latents.
#[derive(Debug, clap::Args)]
#[command(about = "Evaluate the decoder of a trained model at given latent values")]
pub struct Args {
    /// Model weights (weights.N.safetensors)
    pub weights: PathBuf,
    /// The run's config.json
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Output .mrc (one volume) or folder (several)
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// One latent value (zdim numbers)
    #[arg(short = 'z', num_args = 1.., allow_negative_numbers = true)]
    pub z: Option<Vec<f32>>,
    /// Start of a straight line in latent space (one value: the same in every dimension)
    #[arg(long = "z-start", num_args = 1.., allow_negative_numbers = true, requires = "z_end")]
    pub z_start: Option<Vec<f32>>,
    /// End of the line
    #[arg(long = "z-end", num_args = 1.., allow_negative_numbers = true, requires = "z_start")]
    pub z_end: Option<Vec<f32>>,
    /// Number of volumes along the line
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    /// Latents to decode, one per row (.txt, .pkl, .npy)
    #[arg(long)]
    pub zfile: Option<PathBuf>,
    /// Pixel size of the output (default: the training CTF's, else 1)
    #[arg(long = "Apix")]
    pub apix: Option<f32>,
    /// Flip handedness (reverse the slowest axis)
    #[arg(long)]
    pub flip: bool,
    /// Invert contrast
    #[arg(long)]
    pub invert: bool,
    /// Evaluate on a smaller D×D×D box (Fourier cropping; even, ≤ the training size)
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
    /// Low-pass filter the volumes to this resolution (Å; a sharp cut at |k| ≤ Apix/RES)
    #[arg(long = "low-pass")]
    pub low_pass: Option<f32>,
    /// Crop the volumes to this box (even, pixels; after --downsample and --low-pass), the
    /// header's origin keeping their place in the full box
    #[arg(long)]
    pub crop: Option<usize>,
    /// Number of the first volume of a folder (vol_001.mrc for 1)
    #[arg(long = "vol-start-index", default_value_t = 1)]
    pub vol_start_index: usize,
    /// File name prefix of the volumes of a folder
    #[arg(long, default_value = "vol_")]
    pub prefix: String,
}

/// Post-processing shared with `analyze`: Apix, handedness flip, contrast inversion, box.
#[derive(Clone, Copy, Debug)]
pub struct VolOptions {
    pub apix: Option<f32>,
    pub flip: bool,
    pub invert: bool,
    pub downsample: Option<usize>,
    /// low-pass resolution (Å)
    pub low_pass: Option<f32>,
    /// box of a centre crop (pixels)
    pub crop: Option<usize>,
}

/// The reference's low-pass filter: the centred 3-D Hartley transform of the `(d, d, d)` volume
/// is zeroed outside the sphere of radius `apix / res` cycles per pixel (frequencies
/// `(i − d/2) / d` per axis), and transformed back.
pub fn low_pass_volume(vol: &[f32], d: usize, apix: f32, res: f32) -> Vec<f32> {
    let mut ht = crate::fourier::fft::htn_center(vol, d);
    let r2 = (apix / res) * (apix / res);
    let f = |i: usize| (i as f32 - (d / 2) as f32) / d as f32;
    for (k, v) in ht.iter_mut().enumerate() {
        let (z, y, x) = (k / (d * d), (k / d) % d, k % d);
        if f(x) * f(x) + f(y) * f(y) + f(z) * f(z) > r2 {
            *v = 0.0;
        }
    }
    crate::fourier::fft::ihtn_center(&ht, d)
}

/// The centred `(c, c, c)` box of a `(d, d, d)` volume, from index
/// [`crop_start`](crate::fourier::downsample::crop_start) on each axis (the reference's
/// `crop_real_space`).
pub fn crop_volume(vol: &[f32], d: usize, c: usize) -> Vec<f32> {
    let a = crate::fourier::downsample::crop_start(d, c);
    let mut out = Vec::with_capacity(c * c * c);
    for z in a..a + c {
        for y in a..a + c {
            let row = (z * d + y) * d + a;
            out.extend_from_slice(&vol[row..row + c]);
        }
    }
    out
}

/// Decode `z` (m rows of zdim; empty with zdim 0: one homogeneous volume) and write each volume
/// to `path(i)`.
pub fn write_volumes(
    model: &LoadedModel,
    z: &[f32],
    m: usize,
    opts: VolOptions,
    path: impl Fn(usize) -> PathBuf,
) -> anyhow::Result<Vec<PathBuf>> {
    let d = opts.downsample.unwrap_or(model.d);
    let apix = opts.apix.or_else(|| model.apix()).unwrap_or(1.0);
    // A downsampled box keeps the physical extent: the pixel grows by D/d.
    let apix = apix * model.d as f32 / d as f32;
    if let Some(c) = opts.crop {
        if c == 0 || c % 2 == 1 || c > d {
            bail!("--crop {c}: the box must be even and at most the volumes' box {d}");
        }
    }
    if let Some(r) = opts.low_pass {
        if !(r > 0.0 && r.is_finite()) {
            bail!("--low-pass {r}: give a resolution in Å greater than 0");
        }
    }
    let (c, a) = match opts.crop {
        Some(c) => (
            c,
            crate::fourier::downsample::crop_start(d, c) as f32 * apix,
        ),
        None => (d, 0.0),
    };
    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        let zi = (model.zdim > 0).then(|| &z[i * model.zdim..(i + 1) * model.zdim]);
        let mut vol = model.volume(zi, Some(d))?;
        if opts.flip {
            let s = d * d;
            vol = vol.chunks(s).rev().flatten().copied().collect();
        }
        if opts.invert {
            vol.iter_mut().for_each(|v| *v = -*v);
        }
        if let Some(r) = opts.low_pass {
            vol = low_pass_volume(&vol, d, apix, r);
        }
        if c < d {
            vol = crop_volume(&vol, d, c);
        }
        let p = path(i);
        crate::io::mrc::write_mrc_at(&p, &vol, (c, c, c), apix, true, [a; 3])
            .with_context(|| format!("writing {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

fn check_len(what: &str, v: &[f32], zdim: usize, weights: &Path) -> anyhow::Result<()> {
    if v.len() != zdim {
        bail!(
            "{what} has {} values but the model {} has zdim {zdim}",
            v.len(),
            weights.display()
        );
    }
    Ok(())
}

/// Run `eval-vol`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let model = LoadedModel::load(&a.weights, &a.config)?;
    let zdim = model.zdim;
    let opts = VolOptions {
        apix: a.apix,
        flip: a.flip,
        invert: a.invert,
        downsample: a.downsample,
        low_pass: a.low_pass,
        crop: a.crop,
    };
    let many = |z: Vec<f32>, m: usize| -> anyhow::Result<()> {
        std::fs::create_dir_all(&a.o).with_context(|| format!("creating {}", a.o.display()))?;
        let ps = write_volumes(&model, &z, m, opts, |i| {
            a.o.join(format!("{}{:03}.mrc", a.prefix, i + a.vol_start_index))
        })?;
        eprintln!("wrote {} volumes to {}", ps.len(), a.o.display());
        Ok(())
    };
    if let (Some(s), Some(e)) = (&a.z_start, &a.z_end) {
        // one value stands for every dimension (numpy's broadcasting in the reference)
        let every = |v: &Vec<f32>| {
            if v.len() == 1 {
                vec![v[0]; zdim]
            } else {
                v.clone()
            }
        };
        let (s, e) = (&every(s), &every(e));
        check_len("--z-start", s, zdim, &a.weights)?;
        check_len("--z-end", e, zdim, &a.weights)?;
        if a.n == 0 {
            bail!("-n must be at least 1");
        }
        let z: Vec<f32> = (0..a.n)
            .flat_map(|i| {
                let t = if a.n == 1 {
                    0.0
                } else {
                    i as f32 / (a.n - 1) as f32
                };
                s.iter().zip(e).map(move |(s, e)| s + t * (e - s))
            })
            .collect();
        return many(z, a.n);
    }
    if let Some(f) = &a.zfile {
        let l = load_z(f)?;
        if l.zdim != zdim {
            bail!(
                "{}: latents have zdim {} but the model {} has zdim {zdim}",
                f.display(),
                l.zdim,
                a.weights.display()
            );
        }
        return many(l.z, l.n);
    }
    let z = match (&a.z, zdim) {
        (Some(z), _) => {
            check_len("-z", z, zdim, &a.weights)?;
            z.clone()
        }
        (None, 0) => vec![],
        (None, _) => bail!("give -z, --z-start/--z-end or --zfile for a model with zdim {zdim}"),
    };
    let o = a.o.clone();
    write_volumes(&model, &z, 1, opts, |_| o.clone())?;
    eprintln!("wrote {}", a.o.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cos(2π k x / d)` along x on a (d, d, d) box.
    fn wave(d: usize, k: usize) -> Vec<f32> {
        (0..d * d * d)
            .map(|i| (2.0 * std::f32::consts::PI * (k * (i % d)) as f32 / d as f32).cos())
            .collect()
    }

    #[test]
    fn low_pass_keeps_a_wave_below_the_cutoff_and_removes_one_above() {
        let d = 16;
        // k = 2 cycles per box: 2/16 = 0.125 cycles per pixel; with Apix 2 that is 16 Å
        let v = wave(d, 2);
        let kept = low_pass_volume(&v, d, 2.0, 12.0); // cutoff 2/12 ≈ 0.167 > 0.125
        let gone = low_pass_volume(&v, d, 2.0, 20.0); // cutoff 0.1 < 0.125
        let max = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff: Vec<f32> = kept.iter().zip(&v).map(|(a, b)| a - b).collect();
        assert!(max(&diff) < 1e-4, "kept wave changed by {}", max(&diff));
        assert!(max(&gone) < 1e-4, "removed wave left {}", max(&gone));
    }

    #[test]
    fn crop_takes_the_centre_box() {
        let d = 8;
        let v: Vec<f32> = (0..d * d * d).map(|i| i as f32).collect();
        let c = crop_volume(&v, d, 4);
        assert_eq!(c.len(), 64);
        // first voxel (z, y, x) = (2, 2, 2); last (5, 5, 5)
        assert_eq!(c[0], ((2 * d + 2) * d + 2) as f32);
        assert_eq!(c[63], ((5 * d + 5) * d + 5) as f32);
    }
}
