//! cryoTWIN's commands on real latents (cryoDRGN's `zvals_het-8_4k.pkl`, zdim 8): `kl-kliep`.

use cryofield::twin::gmm::Gmm;
use std::path::PathBuf;

mod common;
use common::{phantom_sim, run, train_vae, Sim, NETS};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

fn value(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn kl_kliep_prefers_a_prior_fitted_to_the_latents() {
    let dir = tempfile::tempdir().unwrap();
    let z = data("zvals_het-8_4k.pkl");
    let lat = cryofield::analysis::latent::load_z(&z).unwrap();
    let d = lat.zdim;
    // One Gaussian with the latents' mean and covariance.
    let n = lat.n as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..lat.n).map(|i| lat.z[i * d + j] as f64).sum::<f64>() / n)
        .collect();
    let mut cov = vec![0.0; d * d];
    for i in 0..lat.n {
        for a in 0..d {
            for b in 0..d {
                cov[a * d + b] += (lat.z[i * d + a] as f64 - mean[a])
                    * (lat.z[i * d + b] as f64 - mean[b])
                    / (n - 1.0);
            }
        }
    }
    let gmm = dir.path().join("gmm.npz");
    Gmm::new(d, vec![1.0], mean, cov)
        .unwrap()
        .write(&gmm)
        .unwrap();
    let zs = z.to_str().unwrap();
    let common = [
        "-n",
        "1000",
        "--kernels",
        "50",
        "--folds",
        "3",
        "--seed",
        "1",
    ];
    let (ok, std_out, err) = run(&[&["kl-kliep", zs, "--std-normal"][..], &common].concat());
    assert!(ok, "{err}");
    let out = dir.path().join("kl.txt");
    let (ok, fit_out, err) = run(&[
        &[
            "kl-kliep",
            zs,
            "--gmm",
            gmm.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ][..],
        &common,
    ]
    .concat());
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), fit_out);
    let (to_std, to_fit) = (
        value(&std_out, "kl_latents_prior"),
        value(&fit_out, "kl_latents_prior"),
    );
    eprintln!("KL(latents ‖ N(0, I)) {to_std:.3}, KL(latents ‖ fitted Gaussian) {to_fit:.3}");
    assert!(to_std.is_finite() && to_fit.is_finite());
    assert!(
        to_fit < to_std,
        "fitted {to_fit} vs standard normal {to_std}"
    );
}

#[test]
fn kl_kliep_bad_input_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let gmm = dir.path().join("gmm2d.npz");
    Gmm::new(2, vec![1.0], vec![0.0, 0.0], vec![1.0, 0.0, 0.0, 1.0])
        .unwrap()
        .write(&gmm)
        .unwrap();
    let z = data("zvals_het-8_4k.pkl");
    let (ok, _, err) = run(&[
        "kl-kliep",
        z.to_str().unwrap(),
        "--gmm",
        gmm.to_str().unwrap(),
        "-n",
        "100",
    ]);
    assert!(!ok);
    assert!(err.contains("gmm2d.npz") && err.contains("zdim 8"), "{err}");
    let (ok, _, err) = run(&["kl-kliep", z.to_str().unwrap()]);
    assert!(!ok && err.contains("--gmm"), "{err}");
}

/// The linear1d phantom (8 states) and 48 noiseless 16² images of it, in `dir/ph` and `dir/sim`.
fn tiny_sim(dir: &std::path::Path) -> Sim {
    phantom_sim(dir, "linear1d", 8, 48, &[])
}

/// A tiny VAE (zdim 2) and a homogeneous model trained on 48 noiseless images of a linear1d phantom.
fn tiny_models(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (vae, nn) = (dir.join("vae"), dir.join("nn"));
    let sim = tiny_sim(dir);
    let (ok, err) = train_vae(&sim, &vae, &["-n", "2", "--seed", "1"]);
    assert!(ok, "train-vae: {err}");
    let (particles, poses) = (sim.particles(), sim.poses());
    let (ok, _, err) = run(&[
        "train-nn",
        "-n",
        "1",
        "--dim",
        "16",
        "--layers",
        "1",
        "--seed",
        "1",
        particles.to_str().unwrap(),
        "--poses",
        poses.to_str().unwrap(),
        "-o",
        nn.to_str().unwrap(),
    ]);
    assert!(ok, "train-nn: {err}");
    (vae, nn)
}

#[test]
fn isometry_of_a_trained_vae_and_its_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (vae, nn) = tiny_models(dir.path());
    let (w, c, z) = (
        vae.join("weights.2.safetensors"),
        vae.join("config.json"),
        vae.join("z.2.pkl"),
    );
    let (w, c, z) = (
        w.to_str().unwrap(),
        c.to_str().unwrap(),
        z.to_str().unwrap(),
    );
    let out = dir.path().join("iso.txt");
    let (ok, stdout, err) = run(&[
        "isometry",
        w,
        "-c",
        c,
        "--zfile",
        z,
        "-n",
        "12",
        "--top-k",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), stdout);
    for key in ["r ", "r_top1 "] {
        let r = value(&stdout, key);
        assert!(r.is_finite() && (-1.0..=1.0).contains(&r), "{key}{r}");
    }
    // The same seed gives the same figures.
    let (_, again, _) = run(&[
        "isometry", w, "-c", c, "--zfile", z, "-n", "12", "--top-k", "1",
    ]);
    assert_eq!(again, stdout);
    // --top-k beyond zdim, latents of another zdim, a homogeneous model.
    let (ok, _, err) = run(&["isometry", w, "-c", c, "--zfile", z, "--top-k", "3"]);
    assert!(!ok && err.contains("--top-k"), "{err}");
    let other = data("zvals_het-8_4k.pkl");
    let (ok, _, err) = run(&["isometry", w, "-c", c, "--zfile", other.to_str().unwrap()]);
    assert!(
        !ok && err.contains("zvals_het-8_4k.pkl") && err.contains("zdim 8"),
        "{err}"
    );
    let (nw, nc) = (nn.join("weights.1.safetensors"), nn.join("config.json"));
    let (ok, _, err) = run(&[
        "isometry",
        nw.to_str().unwrap(),
        "-c",
        nc.to_str().unwrap(),
        "--zfile",
        z,
    ]);
    assert!(!ok && err.contains("homogeneous"), "{err}");
}

/// Simulated data (linear1d phantom, 48 noiseless 16² images) and `train-twin` on it with tiny networks:
/// `extra` flags appended; returns the output folder.
fn tiny_twin(dir: &std::path::Path, out: &str, extra: &[&str]) -> (PathBuf, bool, String) {
    let sim = dir.join("sim");
    if !sim.join("particles.mrcs").exists() {
        tiny_sim(dir);
    }
    let o = dir.join(out);
    let (particles, poses) = (sim.join("particles.mrcs"), sim.join("pose.pkl"));
    let head = [
        "train-twin",
        particles.to_str().unwrap(),
        "--poses",
        poses.to_str().unwrap(),
        "--zdim",
        "2",
    ];
    let mut args = [&head[..], &NETS, &["-b", "8", "-o", o.to_str().unwrap()]].concat();
    // defaults that `extra` may replace
    for (flag, v) in [("--n-comp", "4"), ("--seed", "3")] {
        if !extra.contains(&flag) {
            args.extend([flag, v]);
        }
    }
    args.extend_from_slice(extra);
    let (ok, _, err) = run(&args);
    (o, ok, err)
}

fn f32_array(v: &cryofield::io::pkl::PyValue) -> (Vec<usize>, Vec<f32>) {
    let a = v.as_array().expect("a numpy array");
    (
        a.shape.clone(),
        a.to_f64().iter().map(|&x| x as f32).collect(),
    )
}

#[test]
fn train_twin_writes_its_outputs_deterministically_and_resumes_exactly() {
    use cryofield::io::pkl::read_pkl_all;
    let dir = tempfile::tempdir().unwrap();
    let (a, ok, err) = tiny_twin(dir.path(), "a", &["-n", "3"]);
    assert!(ok, "{err}");
    // z.N.pkl: one (n, zdim) pickle, as cryoDRGN's analyze reads it; γ on the simplex; the prior's file.
    let zs = read_pkl_all(a.join("z.3.pkl")).unwrap();
    assert_eq!(zs.len(), 1);
    let (shape, z) = f32_array(&zs[0]);
    assert_eq!(shape, vec![48, 2]);
    assert!(z.iter().all(|v| v.is_finite()));
    let (gshape, g) = f32_array(&read_pkl_all(a.join("gamma.2.pkl")).unwrap()[0]);
    assert_eq!(gshape, vec![48, 4]);
    for row in g.chunks(4) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
    }
    let gmm = Gmm::read(a.join("gmm.3.npz")).unwrap();
    assert_eq!((gmm.d, gmm.n_comp()), (2, 4));
    assert!((gmm.pi.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let loss = std::fs::read_to_string(a.join("loss.txt")).unwrap();
    assert_eq!(loss.lines().filter(|l| !l.starts_with('#')).count(), 3);
    assert!(a.join("loss.png").exists() && a.join("z.pkl").exists());
    let cfg = std::fs::read_to_string(a.join("config.json")).unwrap();
    assert!(
        cfg.contains("\"twin\"") && cfg.contains("\"n_comp\": 4"),
        "{cfg}"
    );

    // The same seed gives bit-identical latents; resuming from epoch 0 gives the uninterrupted run's.
    let (b, ok, err) = tiny_twin(dir.path(), "b", &["-n", "3"]);
    assert!(ok, "{err}");
    let same = |x: &std::path::Path, y: &std::path::Path, f: &str| {
        assert_eq!(
            std::fs::read(x.join(f)).unwrap(),
            std::fs::read(y.join(f)).unwrap(),
            "{f}"
        )
    };
    same(&a, &b, "z.3.pkl");
    same(&a, &b, "gmm.3.npz");
    let (c, ok, err) = tiny_twin(dir.path(), "c", &["-n", "1"]);
    assert!(ok, "{err}");
    let w0 = c.join("weights.1.safetensors");
    let (c2, ok, err) = tiny_twin(
        dir.path(),
        "c",
        &["-n", "3", "--load", w0.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    same(&a, &c2, "z.3.pkl");
    same(&a, &c2, "gmm.3.npz");
    assert_eq!(
        std::fs::read_to_string(c2.join("loss.txt"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    // A different seed is a different run.
    let (d, ok, err) = tiny_twin(dir.path(), "d", &["-n", "1", "--seed", "4"]);
    assert!(ok, "{err}");
    assert_ne!(
        std::fs::read(a.join("z.1.pkl")).unwrap(),
        std::fs::read(d.join("z.1.pkl")).unwrap()
    );

    // eval-images on the training data gives the run's latents (no noise at evaluation) and γ.
    let sim = dir.path().join("sim");
    let ez = dir.path().join("ez.pkl");
    let eg = dir.path().join("eg.pkl");
    let el = dir.path().join("el.pkl");
    let (ok, _, err) = run(&[
        "eval-images",
        sim.join("particles.mrcs").to_str().unwrap(),
        a.join("weights.3.safetensors").to_str().unwrap(),
        "-c",
        a.join("config.json").to_str().unwrap(),
        "--poses",
        sim.join("pose.pkl").to_str().unwrap(),
        "-o",
        ez.to_str().unwrap(),
        "--out-gamma",
        eg.to_str().unwrap(),
        "--out-losses",
        el.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    // (training ran the networks in bf16 where the CPU has it; evaluation is f32)
    let (_, ze) = f32_array(&read_pkl_all(&ez).unwrap()[0]);
    for (x, y) in ze.iter().zip(&z) {
        assert!((x - y).abs() < 1e-2 * (1.0 + y.abs()), "{x} vs {y}");
    }
    let (_, ge) = f32_array(&read_pkl_all(&eg).unwrap()[0]);
    for (x, y) in ge.iter().zip(&g) {
        assert!((x - y).abs() < 1e-2, "{x} vs {y}");
    }
    let (lshape, l) = f32_array(&read_pkl_all(&el).unwrap()[0]);
    assert_eq!(lshape, vec![48, 3]);
    for r in l.chunks(3) {
        assert!(r[1] > 0.0 && r[2] >= 0.0 && r[0] >= r[1], "{r:?}");
    }

    // analyze and eval-vol take twin runs.
    let (ok, _, err) = run(&["analyze", a.to_str().unwrap(), "3", "--ksample", "2"]);
    assert!(ok, "{err}");
    let vol = dir.path().join("v.mrc");
    let (ok, _, err) = run(&[
        "eval-vol",
        a.join("weights.3.safetensors").to_str().unwrap(),
        "-c",
        a.join("config.json").to_str().unwrap(),
        "-z",
        "0.1",
        "-0.2",
        "-o",
        vol.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(vol.exists());
}

#[test]
fn train_twin_refuses_other_checkpoints_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ok, err) = tiny_twin(dir.path(), "a", &["-n", "1"]);
    assert!(ok, "{err}");
    // More components than particles.
    let (_, ok, err) = tiny_twin(dir.path(), "b", &["-n", "1", "--n-comp", "100"]);
    assert!(!ok && err.contains("--n-comp 100"), "{err}");
    // A twin checkpoint does not resume train-vae, and a VAE's does not resume train-twin.
    let sim = dir.path().join("sim");
    let w0 = a.join("weights.1.safetensors");
    let vae = dir.path().join("vae");
    let vae_args = |extra: &[&str]| {
        // no --zdim: the first case resumes a twin checkpoint
        let (particles, poses) = (sim.join("particles.mrcs"), sim.join("pose.pkl"));
        let head = [
            "train-vae",
            particles.to_str().unwrap(),
            "--poses",
            poses.to_str().unwrap(),
        ];
        let tail = ["--seed", "3", "-o", vae.to_str().unwrap()];
        let mut v: Vec<String> = [&head[..], &NETS, &tail]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = vae_args(&["-n", "2", "--load", w0.to_str().unwrap()]);
    let (ok, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !ok && err.contains("weights.1.safetensors") && err.contains("train-twin"),
        "{err}"
    );
    let args = vae_args(&["-n", "1", "--zdim", "2"]);
    let (ok, _, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    let vw = vae.join("weights.1.safetensors");
    let (_, ok, err) = tiny_twin(
        dir.path(),
        "e",
        &["-n", "2", "--load", vw.to_str().unwrap()],
    );
    assert!(!ok && err.contains("not a train-twin"), "{err}");
    // Resuming without the gmm file beside the weights names it.
    std::fs::remove_file(a.join("gmm.1.npz")).unwrap();
    let (_, ok, err) = tiny_twin(
        dir.path(),
        "a",
        &["-n", "2", "--load", w0.to_str().unwrap()],
    );
    assert!(!ok && err.contains("gmm.1.npz"), "{err}");
}

#[test]
fn train_twin_with_full_covariances_resumes_exactly() {
    use cryofield::io::npy::read_npz;
    let dir = tempfile::tempdir().unwrap();
    let full = ["--gmm-cov", "full", "--rate-mc", "8"];
    let with = |n: &str, more: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = full.iter().map(|s| s.to_string()).collect();
        v.extend(["-n".to_string(), n.to_string()]);
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let args = with("2", &[]);
    let (a, ok, err) = tiny_twin(
        dir.path(),
        "a",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(ok, "{err}");
    let stats = read_npz(a.join("gmm.2.npz")).unwrap();
    let s2 = &stats.iter().find(|(n, _)| n == "stat_s2").unwrap().1;
    assert_eq!(s2.shape, vec![4, 2, 2]);
    let g = Gmm::read(a.join("gmm.2.npz")).unwrap();
    assert!(g.cov.chunks(4).all(|c| (c[1] - c[2]).abs() < 1e-12));
    let args = with("1", &[]);
    let (b, ok, err) = tiny_twin(
        dir.path(),
        "b",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(ok, "{err}");
    let w0 = b.join("weights.1.safetensors");
    let args = with("2", &["--load", w0.to_str().unwrap()]);
    let (b, ok, err) = tiny_twin(
        dir.path(),
        "b",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(ok, "{err}");
    for f in ["z.2.pkl", "gmm.2.npz"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // A resumed run may not switch the covariance model.
    let (_, ok, err) = tiny_twin(
        dir.path(),
        "b",
        &[
            "-n",
            "2",
            "--gmm-cov",
            "diag",
            "--load",
            w0.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("gmm_cov"), "{err}");
}
