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

/// A `phantom` of `kind` at D = 16 with `n` states in `dir/name`; returns its vols.txt.
fn small_phantom(dir: &Path, name: &str, kind: &str, n: usize) -> PathBuf {
    let ph = dir.join(name);
    cryofield(&[
        "phantom",
        "--kind",
        kind,
        "--n-states",
        &n.to_string(),
        "-D",
        "16",
        "-o",
        p(&ph),
    ]);
    ph.join("vols.txt")
}

/// A pickled array's shape and values as f64.
fn read_array(path: &Path) -> (Vec<usize>, Vec<f64>) {
    match cryofield::io::pkl::read_pkl(path).unwrap() {
        cryofield::io::pkl::PyValue::Array(a) => (a.shape.clone(), a.to_f64()),
        other => panic!("{} holds {other:?}", path.display()),
    }
}

/// `cryofield simulate ARGS`, expected to fail: its stderr.
fn simulate_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .arg("simulate")
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "simulate {args:?} succeeded");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn pose_dist_inplane_and_axis_are_rotations_about_z_and_x_by_pose_angle() {
    let dir = tempfile::tempdir().unwrap();
    let vols = small_phantom(dir.path(), "ph", "linear2d", 4);
    for (dist, fixed) in [("inplane", 8), ("axis", 0)] {
        let sim = dir.path().join(dist);
        cryofield(&[
            "simulate",
            p(&vols),
            "-N",
            "30",
            "--pose-dist",
            dist,
            "--seed",
            "4",
            "-o",
            p(&sim),
        ]);
        let poses = Poses::load(sim.join("pose.pkl")).unwrap();
        let (shape, psi) = read_array(&sim.join("pose_angle.pkl"));
        assert_eq!(shape, vec![30]);
        assert_eq!(poses.rots.len(), 30);
        // Rz(ψ) = [[c, −s, 0], [s, c, 0], [0, 0, 1]], Rx(ψ) = [[1, 0, 0], [0, c, −s], [0, s, c]]
        let (c_at, s_at) = if dist == "inplane" {
            ([0, 4], [3, 1])
        } else {
            ([4, 8], [7, 5])
        };
        for (r, &a) in poses.rots.iter().zip(&psi) {
            assert!((0.0..std::f64::consts::TAU).contains(&a), "ψ = {a}");
            let (s, c) = (a as f32).sin_cos();
            assert_eq!(r[fixed], 1.0, "{dist}: {r:?}");
            for (k, &v) in r.iter().enumerate() {
                let want = if k == fixed {
                    1.0
                } else if c_at.contains(&k) {
                    c
                } else if k == s_at[0] {
                    s
                } else if k == s_at[1] {
                    -s
                } else {
                    0.0
                };
                assert!((v - want).abs() < 1e-6, "{dist} ψ {a}: R = {r:?}");
            }
        }
        // the angles cover the circle, not one point
        let spread = psi.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - psi.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(spread > 3.0, "{dist}: ψ spread {spread}");
    }
    // so3 writes no pose_angle.pkl, and removes an earlier run's
    let sim = dir.path().join("inplane");
    cryofield(&["simulate", p(&vols), "-N", "4", "-o", p(&sim)]);
    assert!(!sim.join("pose_angle.pkl").exists());
}

#[test]
fn pose_dist_so3_is_the_default_and_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let vols = small_phantom(dir.path(), "ph", "linear2d", 100);
    let common = [
        "-N",
        "20",
        "--seed",
        "3",
        "--t-extent",
        "1",
        "--defocus",
        "10000",
        "20000",
        "--snr",
        "1",
    ];
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut args = vec!["simulate", p(&vols), "-o", p(&a)];
    args.extend(common);
    cryofield(&args);
    let mut args = vec!["simulate", p(&vols), "-o", p(&b), "--pose-dist", "so3"];
    args.extend(common);
    cryofield(&args);
    let mut names: Vec<String> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ctf.pkl",
            "labels.pkl",
            "particles.mrcs",
            "pose.pkl",
            "truth.pkl"
        ]
    );
    for n in &names {
        assert_eq!(
            std::fs::read(a.join(n)).unwrap(),
            std::fs::read(b.join(n)).unwrap(),
            "{n} differs"
        );
    }
    // the draws made before --pose-dist existed (this configuration's outputs were byte-identical to
    // the previous build's, sha256-checked when the flag was added): pinned
    let (_, labels) = read_array(&a.join("labels.pkl"));
    let pinned = [
        94, 93, 99, 81, 35, 46, 59, 39, 87, 11, 40, 73, 98, 50, 43, 54, 92, 84, 10, 56,
    ];
    assert_eq!(labels, pinned.map(f64::from).to_vec());
    let poses = Poses::load(a.join("pose.pkl")).unwrap();
    let rot0 = [
        0.18840213f32,
        -0.7984828,
        0.5717778,
        -0.9391687,
        -0.31672454,
        -0.13284478,
        0.28717032,
        -0.5119676,
        -0.80958164,
    ];
    assert_eq!(poses.rots[0], rot0);
}

#[test]
fn pairs_are_sparse_grid_transitions_with_pose_bins() {
    let dir = tempfile::tempdir().unwrap();
    let vols = small_phantom(dir.path(), "ph", "linear2d", 100);
    let sim = dir.path().join("pairs");
    let n = 200;
    cryofield(&[
        "simulate",
        p(&vols),
        "-N",
        &n.to_string(),
        "--pose-dist",
        "inplane",
        "--pairs",
        "--seed",
        "2",
        "-o",
        p(&sim),
    ]);
    let (shape, pairs) = read_array(&sim.join("pairs.pkl"));
    assert_eq!(shape, vec![n / 2, 2]);
    let want: Vec<f64> = (0..n).map(|i| i as f64).collect();
    assert_eq!(pairs, want);
    let (_, labels) = read_array(&sim.join("labels.pkl"));
    let (tshape, truth) = read_array(&sim.join("truth.pkl"));
    let (_, state_truth) = read_array(&vols.with_file_name("truth.pkl"));
    assert_eq!(tshape, vec![n, 2]);
    let (_, psi) = read_array(&sim.join("pose_angle.pkl"));
    let poses = Poses::load(sim.join("pose.pkl")).unwrap();
    let bin_width = std::f64::consts::TAU / 36.0;
    let mut bins = Vec::new();
    for i in 0..n {
        let s = labels[i] as usize;
        assert_eq!(truth[2 * i..2 * i + 2], state_truth[2 * s..2 * s + 2]);
        // ψ is the centre of its 10° bin, and the pose is Rz(ψ)
        let b = (psi[i] / bin_width).floor();
        assert!(
            (psi[i] - (b + 0.5) * bin_width).abs() < 1e-12,
            "ψ {}",
            psi[i]
        );
        assert!((poses.rots[i][3] - psi[i].sin() as f32).abs() < 1e-6);
        bins.push(b as i64);
    }
    // grid factors: state = 10·f0 + f1 (row-major, first factor slowest)
    let f = |s: f64| [(s as i64) / 10, (s as i64) % 10];
    let (mut steps, mut pose_moves) = (Vec::new(), 0);
    for k in 0..n / 2 {
        let (a, b) = (labels[2 * k], labels[2 * k + 1]);
        assert!(
            a != b || bins[2 * k] != bins[2 * k + 1],
            "pair {k}: nothing changes"
        );
        steps.extend((0..2).map(|c| (f(a)[c] - f(b)[c]).abs() as f64));
        pose_moves += (bins[2 * k] != bins[2 * k + 1]) as usize;
    }
    let mean = steps.iter().sum::<f64>() / steps.len() as f64;
    eprintln!(
        "mean |Δ| of the grid factors {mean:.3}, {pose_moves} of {} pairs move the pose bin",
        n / 2
    );
    // two independent uniform levels on 0..10 are E|i − j| = (g² − 1)/(3g) = 3.3 apart; the Laplace
    // moves of scale ln 10 ≈ 2.3 steps give ≈ 1.8 (standard error ≈ 0.12 over 200 steps)
    assert!(mean < 2.5, "mean |Δ| of the grid factors {mean}");
    assert!(mean > 0.5, "mean |Δ| of the grid factors {mean}");
    assert!(
        pose_moves > 0 && pose_moves < n / 2,
        "{pose_moves} pose moves"
    );
}

#[test]
fn pairs_reject_odd_n_and_non_grid_phantoms() {
    let dir = tempfile::tempdir().unwrap();
    let grid = small_phantom(dir.path(), "grid", "linear2d", 4);
    let out = dir.path().join("out");
    let err = simulate_fails(&[p(&grid), "-N", "21", "--pairs", "-o", p(&out)]);
    assert!(err.contains("even") && err.contains("21"), "{err}");
    let circ = small_phantom(dir.path(), "circ", "circular1d", 8);
    let err = simulate_fails(&[p(&circ), "-N", "20", "--pairs", "-o", p(&out)]);
    let truth = circ.with_file_name("truth.pkl");
    assert!(err.contains(p(&truth)) && err.contains("grid"), "{err}");
    let one = circ.with_file_name("vol_000.mrc");
    let err = simulate_fails(&[p(&one), "-N", "20", "--pairs", "-o", p(&out)]);
    assert!(err.contains(p(&one)) && err.contains("vols.txt"), "{err}");
    assert!(!out.exists(), "a failed run left {}", out.display());
}
