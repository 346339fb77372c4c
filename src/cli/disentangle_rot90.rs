//! `disentangle rot90`: the Edelberg–Lederman 90° test (spec `disentanglement.md` §5, case 1) on a trained
//! train-vae model. Each image x is turned by k·90° exactly (a pixel permutation, [`crate::disentangle::rot90`]),
//! which is the same volume at pose Rz(k·90°)·R, and both are encoded:
//!
//! - Δz_rot = mean ‖f_z(x′) − f_z(x)‖² / mean over random pairs ‖f_z(x_i) − f_z(x_j)‖² (0: z ignores the
//!   in-plane turn; ≈ 1: the turn moves z as far as another particle does);
//! - for an in-plane pose head, the equivariance error |wrap(ψ̂(x′) − ψ̂(x) ∓ k·90°)| in degrees (median and
//!   mean, both signs; the better-aligned sign is reported first); for an SO(3) head, the error of the
//!   relative rotation's angle, |angle(R̂(x′)·R̂(x)ᵀ) − k·90°| (free of the head's global frame).
//!
//! The encoder reads only the recentred image: with `--poses` the translation t is recentred as in
//! training and, for x′, turned with the image (x′ is the image at Rz(k·90°)·R with t′ = Rz(k·90°)t); with
//! `--ctf` the astigmatism angle turns by k·90° for x′'s sign(CTF).
//!
//! Example: `cryofield disentangle rot90 sim/particles.mrcs out/weights.19.safetensors -c out/config.json --poses sim/pose.pkl -o out/rot90.json`

use crate::disentangle::equivariance::{
    measure, so3_turn_errors, turned_ctf, turned_shift, Encoded,
};
use crate::disentangle::probe::{ImageOpts, Probe};
use crate::io::atomic::write_bytes_atomic;
use crate::io::source::ParticleSource;
use crate::meta::{CtfParams, Poses};
use anyhow::bail;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use std::path::PathBuf;

/// The Edelberg–Lederman 90° test.
#[derive(Debug, clap::Args)]
#[command(about = "Edelberg–Lederman 90° test: Δz_rot and the pose head's equivariance error")]
pub struct Rot90Args {
    /// Particle stack (.mrcs, .star, .cs or .txt)
    pub particles: PathBuf,
    /// Model weights (weights.N.safetensors of train-vae)
    pub weights: PathBuf,
    /// The run's config.json
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// The particles' pose.pkl (its translations recentre the images, as in training)
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// The particles' ctf.pkl (the encoder reads image·sign(CTF))
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Number of images (a random subset when the stack is larger)
    #[arg(short = 'n', default_value_t = 1000)]
    pub n: usize,
    /// Quarter turns
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub k: i64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSON
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Run `disentangle rot90`.
pub fn run(a: Rot90Args) -> anyhow::Result<()> {
    if a.k.rem_euclid(4) == 0 {
        bail!("--k {}: a multiple of 4 quarter turns is the identity", a.k);
    }
    if a.n < 2 {
        bail!("-n must be at least 2, got {}", a.n);
    }
    let probe = Probe::load(&a.weights, &a.config)?;
    let src = ParticleSource::open(&a.particles, None)?;
    let d = probe.d();
    if src.d() != d {
        bail!(
            "{}: images are {}×{} but the model was trained on {}×{}",
            a.particles.display(),
            src.d(),
            src.d(),
            d,
            d
        );
    }
    let total = src.len();
    let mut idx: Vec<usize> = (0..total).collect();
    if a.n < total {
        let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
        idx.shuffle(&mut rng);
        idx.truncate(a.n);
        idx.sort_unstable();
    }
    let n = idx.len();
    if n < 2 {
        bail!("{}: {n} image(s), need at least 2", a.particles.display());
    }
    let mut imgs = Vec::with_capacity(n * d * d);
    for &i in &idx {
        imgs.extend(src.image(i)?);
    }
    let trans: Option<Vec<[f32; 2]>> = match &a.poses {
        Some(p) => {
            let poses = Poses::load(p)?;
            if poses.len() != total {
                bail!(
                    "{}: {} poses for {total} particles in {}",
                    p.display(),
                    poses.len(),
                    a.particles.display()
                );
            }
            poses.trans.map(|t| {
                idx.iter()
                    .map(|&i| [t[i][0] * d as f32, t[i][1] * d as f32])
                    .collect()
            })
        }
        None => None,
    };
    let ctf: Option<Vec<[f32; 9]>> = match &a.ctf {
        Some(p) => {
            let c = CtfParams::load(p)?;
            if c.len() != total {
                bail!(
                    "{}: {} CTF rows for {total} particles",
                    p.display(),
                    c.len()
                );
            }
            Some(idx.iter().map(|&i| c.rows[i]).collect())
        }
        None => None,
    };
    let trans_rot: Option<Vec<[f32; 2]>> = trans
        .as_ref()
        .map(|t| t.iter().map(|&v| turned_shift(v, a.k)).collect());
    let ctf_rot: Option<Vec<[f32; 9]>> = ctf
        .as_ref()
        .map(|c| c.iter().map(|r| turned_ctf(r, a.k)).collect());
    // the first call encodes x, the second x′; an SO(3) head's rotations are kept for its turn error
    let mut call = 0;
    let mut head_rots: Vec<Vec<[f64; 9]>> = Vec::new();
    let mut f = |x: &[f32]| -> crate::Result<Encoded> {
        let opts = if call == 0 {
            ImageOpts {
                ctf: ctf.as_deref(),
                trans_px: trans.as_deref(),
            }
        } else {
            ImageOpts {
                ctf: ctf_rot.as_deref(),
                trans_px: trans_rot.as_deref(),
            }
        };
        call += 1;
        let e = probe.encode_images(x, opts)?;
        if e.psi.is_none() {
            if let Some(r) = e.rots {
                head_rots.push(r);
            }
        }
        Ok((e.mu, e.psi))
    };
    let r = measure(&imgs, d, a.k, &mut f, a.seed ^ 0x90)?;
    let eq = r.equivariance.map(|[best, other]| {
        let j = |s: &crate::disentangle::equivariance::SignError| {
            json!({"sign": s.sign, "median_deg": s.median_deg, "mean_deg": s.mean_deg})
        };
        json!({"best": j(&best), "other": j(&other)})
    });
    let so3 = match head_rots.as_slice() {
        [r0, r1] => {
            let (median, mean) = so3_turn_errors(r0, r1, a.k);
            Some(json!({"median_deg": median, "mean_deg": mean}))
        }
        _ => None,
    };
    let pose_note = match probe.pose_kind() {
        None => {
            "known-pose model: x′ is the image at Rz(k·90°)·R; no pose head, no equivariance error"
        }
        Some(crate::disentangle::intervention::PoseKind::InPlane) => {
            "in-plane head: equivariance error of ψ̂"
        }
        Some(_) => {
            "SO(3) head: so3_turn_error = |angle(R̂(x′)R̂(x)ᵀ) − the turn's angle| (free of the \
             head's global frame; the turn's axis is not checked)"
        }
    };
    let out = json!({
        "particles": a.particles.display().to_string(),
        "weights": a.weights.display().to_string(),
        "config": a.config.display().to_string(),
        "n": r.n,
        "k": a.k,
        "seed": a.seed,
        "mean_sq_shift": r.shift,
        "mean_sq_pair": r.pair,
        "delta_z_rot": r.delta_z_rot,
        "equivariance": eq,
        "so3_turn_error": so3,
        "pose": pose_note,
    });
    write_bytes_atomic(
        &a.o,
        format!("{}\n", serde_json::to_string_pretty(&out)?).as_bytes(),
    )?;
    let eqs = r
        .equivariance
        .map(|[b, _]| {
            format!(
                ", equivariance error (sign {:+}) median {:.2}°",
                b.sign, b.median_deg
            )
        })
        .unwrap_or_default();
    println!(
        "Δz_rot = {}{eqs}",
        r.delta_z_rot
            .map_or("undefined (all z equal)".into(), |v| format!("{v:.4}"))
    );
    eprintln!("wrote {}", a.o.display());
    Ok(())
}
