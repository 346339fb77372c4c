//! Simulation and backprojection against known truth (small sizes; full-size figures in BENCHMARKS.md).

use cryofield::fourier::fsc::fsc_curve;
use cryofield::io::mrc::MrcFile;
use cryofield::meta::{CtfParams, Poses};
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

fn cryofield(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cryofield {args:?} failed: {err}");
    err
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The smallest FSC up to half Nyquist (pixres ≤ 0.25), leaving out the reference's shell 1, which is
/// the DC voxel alone: voxel backprojection (like the reference's) never fills the DC term, so that
/// shell's correlation is the sign of rounding noise.
fn min_fsc_to_half_nyquist(a: &Path, b: &Path) -> f64 {
    let va = MrcFile::open(a).unwrap();
    let vb = MrcFile::open(b).unwrap();
    let d = va.header.nx;
    let c = fsc_curve(&va.read_all().unwrap(), &vb.read_all().unwrap(), d, None).unwrap();
    c.pixres
        .iter()
        .zip(&c.fsc)
        .skip(2)
        .filter(|(r, _)| **r <= 0.25)
        .map(|(_, f)| *f)
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn backprojection_of_hand_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bp");
    cryofield(&[
        "backproject-voxel",
        p(&data("hand.mrcs")),
        "--poses",
        p(&data("hand_rot_trans.pkl")),
        "-o",
        p(&out),
    ]);
    let m = min_fsc_to_half_nyquist(
        &out.join("backproject.mrc"),
        &data("golden/backproject_hand/backproject.mrc"),
    );
    assert!(
        m >= 0.9,
        "FSC vs the reference's backprojection drops to {m}"
    );
    assert!(out.join("half_map_a.mrc").is_file() && out.join("fsc-plot.png").is_file());
}

#[test]
fn noiseless_simulation_then_backprojection_recovers_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let truth = data("golden/hand-vol.32.mrc");
    cryofield(&[
        "simulate",
        p(&truth),
        "-N",
        "1500",
        "--t-extent",
        "2",
        "--defocus",
        "8000",
        "15000",
        "--Apix",
        "6",
        "--seed",
        "3",
        "-o",
        p(&sim),
    ]);
    let poses = Poses::load(sim.join("pose.pkl")).unwrap();
    let ctf = CtfParams::load(sim.join("ctf.pkl")).unwrap();
    assert_eq!((poses.len(), ctf.len()), (1500, 1500));
    let bp = dir.path().join("bp");
    let (parts, pose, ctf_p, pose_no_t) = (
        sim.join("particles.mrcs"),
        sim.join("pose.pkl"),
        sim.join("ctf.pkl"),
        sim.join("pose_no_t.pkl"),
    );
    let args = [
        "backproject-voxel",
        p(&parts),
        "--poses",
        p(&pose),
        "--ctf",
        p(&ctf_p),
        "--uninvert-data",
        "-o",
        p(&bp),
    ];
    cryofield(&args);
    let m = min_fsc_to_half_nyquist(&bp.join("backproject.mrc"), &truth);
    assert!(m >= 0.9, "FSC vs truth drops to {m} before half Nyquist");

    // Negative control: the same images with the translations ignored reconstruct worse.
    let no_t = Poses {
        rots: poses.rots.clone(),
        trans: Some(vec![[0.0, 0.0]; poses.len()]),
    };
    no_t.save(&pose_no_t).unwrap();
    let bp2 = dir.path().join("bp2");
    let mut args2 = args;
    args2[3] = p(&pose_no_t);
    args2[8] = p(&bp2);
    cryofield(&args2);
    let m2 = min_fsc_to_half_nyquist(&bp2.join("backproject.mrc"), &truth);
    assert!(
        m2 < m - 0.05,
        "ignoring translations did not hurt: {m2} vs {m}"
    );
}

#[test]
fn snr_is_signal_variance_over_noise_variance() {
    let dir = tempfile::tempdir().unwrap();
    let truth = data("golden/hand-vol.32.mrc");
    let (clean, noisy) = (dir.path().join("clean"), dir.path().join("noisy"));
    for (out, snr) in [(&clean, None), (&noisy, Some("0.5"))] {
        let mut args = vec![
            "simulate",
            p(&truth),
            "-N",
            "300",
            "--seed",
            "9",
            "-o",
            p(out),
        ];
        if let Some(s) = snr {
            args.extend(["--snr", s]);
        }
        cryofield(&args);
    }
    let c = MrcFile::open(clean.join("particles.mrcs"))
        .unwrap()
        .read_all()
        .unwrap();
    let n = MrcFile::open(noisy.join("particles.mrcs"))
        .unwrap()
        .read_all()
        .unwrap();
    let var = |x: &[f64]| {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64
    };
    let cs: Vec<f64> = c.iter().map(|&v| v as f64).collect();
    let noise: Vec<f64> = n.iter().zip(&c).map(|(a, b)| (a - b) as f64).collect();
    let snr = var(&cs) / var(&noise);
    assert!((snr - 0.5).abs() < 0.02, "measured SNR {snr}");
}

#[test]
fn tilt_pairs_and_labels_from_several_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let vols = dir.path().join("vols");
    std::fs::create_dir_all(&vols).unwrap();
    std::fs::copy(data("golden/hand-vol.32.mrc"), vols.join("a.mrc")).unwrap();
    // a second, different state: the same volume mirrored along x
    let f = MrcFile::open(vols.join("a.mrc")).unwrap();
    let d = f.header.nx;
    let mut v = f.read_all().unwrap();
    for row in v.chunks_exact_mut(d) {
        row.reverse();
    }
    cryofield::io::mrc::write_mrc(vols.join("b.mrc"), &v, (d, d, d), 1.0, true).unwrap();
    std::fs::write(vols.join("vols.txt"), "a.mrc\nb.mrc\n").unwrap();
    let sim = dir.path().join("sim");
    cryofield(&[
        "simulate",
        p(&vols.join("vols.txt")),
        "-N",
        "40",
        "--tilt-deg",
        "45",
        "-o",
        p(&sim),
    ]);
    let labels = cryofield::io::pkl::read_pkl(sim.join("labels.pkl")).unwrap();
    let labels = match labels {
        cryofield::io::pkl::PyValue::Array(a) => a.to_i64().unwrap(),
        other => panic!("labels.pkl holds {other:?}"),
    };
    assert_eq!(labels.len(), 40);
    assert!(labels.contains(&0) && labels.contains(&1));
    let untilted = MrcFile::open(sim.join("particles.mrcs")).unwrap();
    let tilted = MrcFile::open(sim.join("particles_tilt.mrcs")).unwrap();
    assert_eq!(tilted.n_images(), 40);
    assert_ne!(untilted.image(0).unwrap(), tilted.image(0).unwrap());
}

#[test]
fn simulate_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args([
            "simulate",
            p(&data("hand.mrcs")),
            "-N",
            "5",
            "-o",
            p(&dir.path().join("x")),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("hand.mrcs") && err.contains("not a cubic volume"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn fourier_slice_and_real_space_projection_agree() {
    let dir = tempfile::tempdir().unwrap();
    // a smooth phantom: on sharp maps (hand-vol.32) the two interpolations differ by ~10% at high
    // frequency, which says more about trilinear interpolation than about the projection geometry
    let ph = dir.path().join("ph");
    cryofield(&[
        "phantom",
        "--kind",
        "linear1d",
        "--n-states",
        "2",
        "-D",
        "32",
        "-o",
        p(&ph),
    ]);
    let truth = ph.join("vol_000.mrc");
    let (f, r) = (dir.path().join("f"), dir.path().join("r"));
    for (out, real) in [(&f, false), (&r, true)] {
        let mut args = vec![
            "simulate",
            p(&truth),
            "-N",
            "20",
            "--t-extent",
            "2",
            "--seed",
            "5",
            "-o",
            p(out),
        ];
        if real {
            args.push("--real-space");
        }
        cryofield(&args);
    }
    let a = MrcFile::open(f.join("particles.mrcs"))
        .unwrap()
        .read_all()
        .unwrap();
    let b = MrcFile::open(r.join("particles.mrcs"))
        .unwrap()
        .read_all()
        .unwrap();
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    let rel = (num / den).sqrt();
    // two different interpolations of the same projection: a few percent apart, not more (with the
    // wrong rotation convention, Rᵀ, the difference is of order 1)
    eprintln!("relative L2 difference {rel}");
    assert!(rel < 0.04, "relative L2 difference {rel}");
}
