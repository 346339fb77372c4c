//! `demo`: the README's main job on built-in synthetic data. It makes a particle stack with a RELION 3.1
//! .star file (poses, CTF, optics group) and runs the data pipeline on it: parse poses and CTF, Fourier-crop
//! downsampling, and checks that what was written reads back as what was meant.
//!
//! Example: `cryofield demo -o demo_out`

use crate::cli::{downsample, parse_ctf, parse_pose};
use crate::fourier::fft::ht2_center;
use crate::io::mrc::{write_mrc, MrcFile};
use crate::meta::{CtfParams, Poses};
use anyhow::ensure;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Run the built-in demo.
#[derive(Debug, clap::Args)]
#[command(about = "Run the pipeline on built-in synthetic data (a few seconds)")]
pub struct Args {
    /// Output folder
    #[arg(short = 'o', default_value = "demo_out")]
    pub o: PathBuf,
    /// Number of particles
    #[arg(short = 'N', default_value_t = 2000)]
    pub n: usize,
    /// Box size (pixels)
    #[arg(short = 'D', default_value_t = 128)]
    pub d: usize,
    /// Random seed
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Synthetic particle images: a few Gaussian blobs rotated in-plane, plus white noise (SNR about 1).
fn synthetic_images(n: usize, d: usize, rng: &mut impl Rng) -> Vec<f32> {
    let blobs = [
        (0.0f32, 0.0f32, 6.0f32, 1.0f32),
        (12.0, 4.0, 4.0, 0.8),
        (-8.0, 10.0, 3.0, 0.6),
    ];
    let noise = Normal::new(0.0f32, 0.3).expect("constant, valid standard deviation");
    let mut out = vec![0f32; n * d * d];
    let c = d as f32 / 2.0;
    for img in out.chunks_exact_mut(d * d) {
        let (s, co) = rng.random_range(0.0..std::f32::consts::TAU).sin_cos();
        for (y, row) in img.chunks_exact_mut(d).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                let (px, py) = (x as f32 - c, y as f32 - c);
                *v = blobs
                    .iter()
                    .map(|&(bx, by, sig, amp)| {
                        let (rx, ry) = (co * bx - s * by, s * bx + co * by);
                        let r2 = (px - rx).powi(2) + (py - ry).powi(2);
                        amp * (-r2 / (2.0 * sig * sig)).exp()
                    })
                    .sum::<f32>()
                    + noise.sample(rng);
            }
        }
    }
    out
}

/// Run `demo`.
pub fn run(a: Args) -> anyhow::Result<()> {
    ensure!(
        a.d >= 16 && a.d.is_multiple_of(4),
        "-D must be a multiple of 4, at least 16"
    );
    ensure!(a.n > 0, "-N must be positive");
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(&a.o)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let apix = 1.5f32;
    let imgs = synthetic_images(a.n, a.d, &mut rng);
    let stack = a.o.join("particles.mrcs");
    write_mrc(&stack, &imgs, (a.n, a.d, a.d), apix, false)?;

    let mut star = String::new();
    writeln!(
        star,
        "# synthetic particles made by `cryofield demo`\n\ndata_optics\n\nloop_"
    )?;
    for c in [
        "rlnOpticsGroup",
        "rlnImagePixelSize",
        "rlnImageSize",
        "rlnVoltage",
        "rlnSphericalAberration",
        "rlnAmplitudeContrast",
    ] {
        writeln!(star, "_{c}")?;
    }
    writeln!(
        star,
        "1 {apix} {} 300.0 2.7 0.1\n\ndata_particles\n\nloop_",
        a.d
    )?;
    for c in [
        "rlnImageName",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnOriginXAngst",
        "rlnOriginYAngst",
        "rlnDefocusU",
        "rlnDefocusV",
        "rlnDefocusAngle",
        "rlnOpticsGroup",
    ] {
        writeln!(star, "_{c}")?;
    }
    for i in 0..a.n {
        let df: f32 = rng.random_range(10000.0..25000.0);
        writeln!(
            star,
            "{:06}@particles.mrcs {:.3} {:.3} {:.3} {:.3} {:.3} {df:.1} {:.1} {:.2} 1",
            i + 1,
            rng.random_range(-180.0f32..180.0),
            rng.random_range(0.0f32..180.0),
            rng.random_range(-180.0f32..180.0),
            rng.random_range(-3.0f32..3.0),
            rng.random_range(-3.0f32..3.0),
            df - 300.0,
            rng.random_range(-180.0f32..180.0),
        )?;
    }
    let star_path = a.o.join("particles.star");
    crate::io::atomic::write_bytes_atomic(&star_path, star.as_bytes())?;

    parse_pose::run_star(parse_pose::StarArgs {
        input: star_path.clone(),
        d: None,
        apix: None,
        o: a.o.join("pose.pkl"),
    })?;
    parse_ctf::run_star(parse_ctf::StarArgs {
        star: star_path.clone(),
        d: None,
        apix: None,
        kv: None,
        cs: None,
        w: None,
        ps: None,
        o: a.o.join("ctf.pkl"),
    })?;
    let small_d = a.d / 2;
    let small = a.o.join(format!("particles.{small_d}.mrcs"));
    downsample::run(downsample::Args {
        input: star_path,
        d: small_d,
        o: small.clone(),
        is_vol: false,
        batch_size: 1000,
        chunk: None,
        ind: None,
        datadir: None,
    })?;

    // Checks: metadata reads back, and the downsampled stack's Hartley transform is the centre of the
    // original's (Fourier cropping keeps the kept frequencies exactly).
    let poses = Poses::load(a.o.join("pose.pkl"))?;
    let ctf = CtfParams::load(a.o.join("ctf.pkl"))?;
    ensure!(
        poses.len() == a.n && ctf.len() == a.n,
        "metadata has the wrong length"
    );
    let f = MrcFile::open(&small)?;
    ensure!(
        f.n_images() == a.n && f.header.nx == small_d,
        "downsampled stack has the wrong shape"
    );
    let check = a.n.min(16);
    let big = ht2_center(&imgs[..check * a.d * a.d], a.d);
    let mut sm = Vec::with_capacity(check * small_d * small_d);
    for i in 0..check {
        sm.extend(f.image(i)?);
    }
    let sm = ht2_center(&sm, small_d);
    let s0 = (a.d - small_d) / 2;
    let (mut err, mut norm) = (0f64, 0f64);
    for i in 0..check {
        for y in 0..small_d {
            for x in 0..small_d {
                let b = big[i * a.d * a.d + (y + s0) * a.d + x + s0];
                let s = sm[i * small_d * small_d + y * small_d + x];
                err += ((b - s) as f64).powi(2);
                norm += (b as f64).powi(2);
            }
        }
    }
    let rel = (err / norm).sqrt();
    println!(
        "demo: {} particles {}² → {}² in {}; relative error of kept frequencies {rel:.2e}; {:.2} s",
        a.n,
        a.d,
        small_d,
        a.o.display(),
        t0.elapsed().as_secs_f64()
    );
    ensure!(
        rel < 1e-4,
        "downsampling lost low frequencies (relative error {rel:.2e})"
    );
    Ok(())
}
