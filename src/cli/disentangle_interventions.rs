//! `disentangle interventions`: the six intervention metrics of Klindt et al. 2024 App. A (LVC, LVI, LCC,
//! LCI, LPC, LPI; spec `disentanglement.md` §4) of a trained train-vae model, written as JSON, and with
//! `--particles` Fig 3B's held-out Eq. 2 loss, reconstruction MSE and KL.
//!
//! - `--mode learned` (default): g = the model's decoder and f\* = f, so LVC ≡ LCC and LVI ≡ LPC. z are the
//!   encoded means of the data (`--particles`, else images of `--phantom` at uniform states and poses),
//!   shuffled; φ, φ′ uniform; the decoded slices get the noise of `--snr`/`--sigma` in Hartley units.
//! - `--mode truth` (needs `--phantom`): LCC, LCI, LPC, LPI with g\* = the phantom's projections at z
//!   uniform on its state grid and uniform in-plane or SO(3) poses, with noise; LCC aligned by an affine
//!   fit and LPC by ±ψ + c (in-plane) or one global rotation (SO(3)) on one half and scored on the other.
//!   LVC and LVI come from the learned composition.
//!
//! z terms are given raw and divided by 2·tr Cov of their reference (module [`crate::disentangle::interventions`]).
//! A known-pose model has no pose output: LVI, LPC and LPI are absent (null, with a note); its z metrics
//! decode and generate at the given (true) poses.
//!
//! Example: `cryofield disentangle interventions out/weights.19.safetensors -c out/config.json --phantom ph --mode truth --snr 1 -o out/interventions.json`

use crate::disentangle::intervention::PoseKind;
use crate::disentangle::interventions::{evaluate, Coded, Design, Metrics, PoseSpace, ZTerm};
use crate::disentangle::probe::{Encoding, ImageOpts, Probe, World};
use crate::disentangle::world_scores::{sigma_for, ImageLaw};
use crate::geometry::rotation::{matmul3, Mat3};
use crate::io::atomic::write_bytes_atomic;
use crate::io::source::ParticleSource;
use crate::meta::{CtfParams, Poses};
use crate::simulate::dataset::{xrot, CtfSpec, PoseDist};
use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Which generator the conformation/pose metrics use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Learned,
    Truth,
}

/// Pose law of a known-pose model's interventions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PoseDistArg {
    /// R = Rz(ψ)
    Inplane,
    /// R = Rz(ψ)·Rx(90°): in-plane poses of the view along the molecule's y axis (`simulate --pose-dist
    /// inplane-y`); truth mode renders the phantom at these
    InplaneY,
    /// uniform over SO(3)
    So3,
}

/// The six intervention metrics of a trained model.
#[derive(Debug, clap::Args)]
#[command(
    about = "Intervention metrics LVC, LVI, LCC, LCI, LPC, LPI (App. A) and held-out Eq. 2, recon, KL"
)]
pub struct InterventionsArgs {
    /// Model weights (weights.N.safetensors of train-vae)
    pub weights: PathBuf,
    /// The run's config.json
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Phantom folder (vols.txt + truth.pkl, states on a grid): the true generator
    #[arg(long)]
    pub phantom: Option<PathBuf>,
    /// learned (g = decoder) or truth (g* = the phantom)
    #[arg(long, value_enum, default_value_t = ModeArg::Learned)]
    pub mode: ModeArg,
    /// Number of samples
    #[arg(short = 'n', default_value_t = 1000)]
    pub n: usize,
    /// Held-out particles (simulated): Eq. 2, recon and KL, and the latents of learned mode
    #[arg(long)]
    pub particles: Option<PathBuf>,
    /// The held-out particles' pose.pkl (rotations, translations)
    #[arg(long = "poses-true")]
    pub poses_true: Option<PathBuf>,
    /// The held-out particles' ctf.pkl
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Noise as simulate's SNR (σ from the phantom's clean images); noiseless without --snr/--sigma
    #[arg(long, conflicts_with = "sigma")]
    pub snr: Option<f64>,
    /// Noise standard deviation of real-space images (raw units)
    #[arg(long)]
    pub sigma: Option<f64>,
    /// Pose law for a known-pose model (default inplane); a pose head's own kind otherwise
    #[arg(long = "pose-dist", value_enum)]
    pub pose_dist: Option<PoseDistArg>,
    /// Batch size of the held-out pass (the permutation of Eq. 2 is within a batch)
    #[arg(short = 'b', long = "batch-size", default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSON
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// The pose representation h returns: ψ̂ (in-plane) or R̂ flattened (SO(3)).
fn pose_out(e: &Encoding, space: PoseSpace) -> Option<Vec<f64>> {
    match space {
        PoseSpace::InPlane => e.psi.clone(),
        PoseSpace::So3 => e
            .rots
            .as_ref()
            .map(|r| r.iter().flatten().copied().collect()),
    }
}

fn zterm_json(t: &ZTerm) -> Value {
    json!({"raw": t.raw, "normalised": t.normalised})
}

fn metrics_json(m: &Metrics) -> Value {
    json!({
        "n": m.n,
        "cc": zterm_json(&m.cc),
        "ci": zterm_json(&m.ci),
        "pc": m.pc,
        "pi": m.pi,
        "pose_alignment": m.pose_alignment.map(|(s, c)| json!({"sign": s, "offset_rad": c})),
        "so3_alignment": m.so3_alignment.map(|(q, left)| json!({"q": q, "side": if left { "left: R = Q R_hat" } else { "right: R = R_hat Q" }})),
    })
}

/// Run `disentangle interventions`.
pub fn run(a: InterventionsArgs) -> anyhow::Result<()> {
    if a.n < 4 {
        bail!("-n must be at least 4, got {}", a.n);
    }
    if a.particles.is_some() != a.poses_true.is_some() {
        bail!("--particles and --poses-true go together (the held-out set and its pose.pkl)");
    }
    if let Some(s) = a.sigma {
        if !(s >= 0.0 && s.is_finite()) {
            bail!("--sigma must be ≥ 0, got {s}");
        }
    }
    let probe = Probe::load(&a.weights, &a.config)?;
    let world = match &a.phantom {
        Some(p) => Some(World::open(p).with_context(|| format!("--phantom {}", p.display()))?),
        None => None,
    };
    if let Some(w) = &world {
        if w.d != probe.d() {
            bail!(
                "--phantom {}: box {} but the model was trained on {}",
                w.path.display(),
                w.d,
                probe.d()
            );
        }
    }
    if a.mode == ModeArg::Truth && world.is_none() {
        bail!("--mode truth needs --phantom (the true generator)");
    }
    if world.is_none() && a.particles.is_none() {
        bail!("give --phantom or --particles: the latents of learned mode are encoded data");
    }
    let kind = probe.pose_kind();
    let space = match (kind, a.pose_dist) {
        (Some(PoseKind::InPlane), None | Some(PoseDistArg::Inplane | PoseDistArg::InplaneY)) => {
            PoseSpace::InPlane
        }
        (Some(PoseKind::SixD), None | Some(PoseDistArg::So3)) => PoseSpace::So3,
        (Some(k), Some(d)) => {
            bail!("--pose-dist {d:?} does not match the model's pose head ({k:?})")
        }
        (None, None | Some(PoseDistArg::Inplane | PoseDistArg::InplaneY)) => PoseSpace::InPlane,
        (None, Some(PoseDistArg::So3)) => PoseSpace::So3,
    };
    let sigma = match (a.sigma, a.snr, &world) {
        (Some(s), _, _) => s,
        (None, Some(snr), Some(w)) => {
            // the views truth mode renders: in-plane about z or about y, or SO(3)
            let pose = match (space, a.pose_dist) {
                (PoseSpace::So3, _) => PoseDist::So3,
                (PoseSpace::InPlane, Some(PoseDistArg::InplaneY)) => PoseDist::InplaneY,
                (PoseSpace::InPlane, _) => PoseDist::Inplane,
            };
            let law = ImageLaw {
                pose,
                t_extent_px: 0.0,
                ctf: CtfSpec::None,
            };
            sigma_for(w, &law, snr, a.seed ^ 0x5117)?
        }
        (None, Some(_), None) => {
            bail!("--snr needs --phantom (the signal variance); or give --sigma")
        }
        (None, None, _) => 0.0,
    };
    // the phantom's views: in-plane poses act on the view along y for inplane-y (R = Rz(ψ)·Rx(90°))
    let view = (a.pose_dist == Some(PoseDistArg::InplaneY)).then(|| xrot(90.0));
    let world_rots = |poses: &[f64]| -> Vec<Mat3> {
        let r = space.rotations(poses);
        match &view {
            Some(v) => r.iter().map(|r| matmul3(r, v)).collect(),
            None => r,
        }
    };
    let zdim = probe.zdim();
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);

    // learned mode's z: shuffled encoded means of the data
    let means: Vec<f64> = match (&a.particles, &a.poses_true) {
        (Some(pp), Some(pose_path)) => {
            let src = ParticleSource::open(pp, None)?;
            if src.d() != probe.d() {
                bail!(
                    "{}: images are {}×{} but the model was trained on {}×{}",
                    pp.display(),
                    src.d(),
                    src.d(),
                    probe.d(),
                    probe.d()
                );
            }
            let imgs = src.load_all()?;
            let poses = Poses::load(pose_path)?;
            if poses.len() != src.len() {
                bail!(
                    "{}: {} poses for {} particles in {}",
                    pose_path.display(),
                    poses.len(),
                    src.len(),
                    pp.display()
                );
            }
            let d = probe.d() as f32;
            let trans: Option<Vec<[f32; 2]>> = poses
                .trans
                .as_ref()
                .map(|t| t.iter().map(|t| [t[0] * d, t[1] * d]).collect());
            let ctf = match &a.ctf {
                Some(c) => {
                    let c = CtfParams::load(c)?;
                    if c.len() != src.len() {
                        bail!("--ctf: {} rows for {} particles", c.len(), src.len());
                    }
                    Some(c.rows)
                }
                None => None,
            };
            probe
                .encode_images(
                    &imgs,
                    ImageOpts {
                        ctf: ctf.as_deref(),
                        trans_px: trans.as_deref(),
                    },
                )?
                .mu
        }
        _ => {
            let w = world.as_ref().context("no phantom")?;
            let states: Vec<usize> = (0..a.n)
                .map(|_| rng.random_range(0..w.n_states()))
                .collect();
            let rots = world_rots(&space.sample(a.n, &mut rng));
            let params = w.params(&states, &rots)?;
            w.encode(&probe, &params, sigma, a.seed ^ 0xE1C0)?.mu
        }
    };
    let m = means.len() / zdim;
    let mut order: Vec<usize> = (0..m).collect();
    order.shuffle(&mut rng);
    let z_learned: Vec<f64> = (0..a.n)
        .flat_map(|i| {
            let j = order[i % m];
            means[j * zdim..(j + 1) * zdim].to_vec()
        })
        .collect();

    // h = f ∘ decoder, with Hartley noise of the real-space σ
    let sig_h = probe.slice_sigma(sigma);
    let mut calls = 0u64;
    let mut h_learned = |z: &[f64], poses: &[f64]| -> crate::Result<Coded> {
        let mut y = probe.decode(z, &space.rotations(poses))?;
        if sig_h > 0.0 {
            calls += 1;
            let mut r = rand::rngs::StdRng::seed_from_u64(a.seed ^ 0xD0 ^ (calls << 20));
            let nd = Normal::new(0.0, sig_h as f32)
                .map_err(|e| crate::Error::invalid(format!("noise σ {sig_h}: {e}")))?;
            y.iter_mut().for_each(|v| *v += nd.sample(&mut r));
        }
        let e = probe.encode_inputs(&y)?;
        Ok(Coded {
            pose: pose_out(&e, space),
            z: e.mu,
        })
    };
    let learned = evaluate(
        &mut h_learned,
        &Design {
            z: &z_learned,
            zdim,
            space,
            align: false,
            seed: a.seed ^ 0x1EA7,
        },
    )?;

    let truth = match (a.mode, &world) {
        (ModeArg::Truth, Some(w)) => {
            let k = w.n_factors();
            let g = w.grid.g;
            let states: Vec<usize> = (0..a.n)
                .map(|_| rng.random_range(0..w.n_states()))
                .collect();
            let z_true: Vec<f64> = states
                .iter()
                .flat_map(|&s| w.coords_of(s).iter().map(|&v| v as f64).collect::<Vec<_>>())
                .collect();
            let mut calls = 0u64;
            let mut h_truth = |z: &[f64], poses: &[f64]| -> crate::Result<Coded> {
                // z rows are grid coordinates f/(g−1): back to levels, then to states
                let st: Vec<usize> = z
                    .chunks(k)
                    .map(|r| {
                        let lv: Vec<usize> = r
                            .iter()
                            .map(|&v| ((v * (g - 1) as f64).round().max(0.0) as usize).min(g - 1))
                            .collect();
                        w.grid.index(&lv)
                    })
                    .collect();
                calls += 1;
                let params = w.params(&st, &world_rots(poses))?;
                let e = w.encode(&probe, &params, sigma, a.seed ^ 0x7A ^ (calls << 24))?;
                Ok(Coded {
                    pose: pose_out(&e, space),
                    z: e.mu,
                })
            };
            Some(evaluate(
                &mut h_truth,
                &Design {
                    z: &z_true,
                    zdim: k,
                    space,
                    align: true,
                    seed: a.seed ^ 0x7207,
                },
            )?)
        }
        _ => None,
    };

    let held = match (&a.particles, &a.poses_true) {
        (Some(p), Some(q)) => Some(probe.held_out(p, q, a.ctf.as_deref(), a.batch, a.seed)?),
        _ => None,
    };

    let main = truth.as_ref().unwrap_or(&learned);
    let six = json!({
        "LVC": zterm_json(&learned.cc),
        "LVI": learned.pc,
        "LCC": zterm_json(&main.cc),
        "LCI": zterm_json(&main.ci),
        "LPC": main.pc,
        "LPI": main.pi,
    });
    let pose_note = match kind {
        None => "absent: a known-pose model has no pose output (LVI, LPC, LPI null); its z metrics decode and generate at the given poses",
        Some(_) => "present",
    };
    let mut out = json!({
        "weights": a.weights.display().to_string(),
        "config": a.config.display().to_string(),
        "phantom": a.phantom.as_ref().map(|p| p.display().to_string()),
        "mode": match a.mode { ModeArg::Learned => "learned", ModeArg::Truth => "truth" },
        "n": a.n,
        "seed": a.seed,
        "pose_space": match space { PoseSpace::InPlane => "inplane", PoseSpace::So3 => "so3" },
        "pose_head": kind.map(|k| format!("{k:?}")),
        "pose_metrics": pose_note,
        "distance_pose": match space { PoseSpace::InPlane => "2 - 2 cos(dpsi)", PoseSpace::So3 => "||R - R_hat||_F^2" },
        "normalised_by": "2 tr Cov of the reference: z for LVC/LCC (truth: the true factors), f_z(g(z, phi)) for LCI",
        "latents_from": if a.particles.is_some() { "--particles (encoded means, shuffled)" } else { "--phantom images (encoded means, shuffled)" },
        "sigma": sigma,
        "sigma_slice": sig_h,
        "metrics": six,
        "learned": metrics_json(&learned),
        "truth": truth.as_ref().map(metrics_json),
    });
    if let Some(h) = held {
        out["held_out"] = json!({
            "particles": a.particles.as_ref().map(|p| p.display().to_string()),
            "n": h.n,
            "batch_size": a.batch,
            "eq2": h.eq2,
            "eq2_z": h.eq2_z,
            "eq2_pose": h.eq2_pose,
            "eq2_variant": if kind.is_some() { "Eq. 2 (z + pose), frozen model" } else { "z-only (known poses permuted), frozen model" },
            "recon_mse": h.mse,
            "kl": h.kl,
        });
    }
    let text = serde_json::to_string_pretty(&out)?;
    write_bytes_atomic(&a.o, format!("{text}\n").as_bytes())?;
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "LVC {:.4} LVI {} LCC {:.4} LCI {:.4} LPC {} LPI {}",
        learned.cc.raw,
        f(learned.pc),
        main.cc.raw,
        main.ci.raw,
        f(main.pc),
        f(main.pi)
    );
    eprintln!("wrote {}", a.o.display());
    Ok(())
}
