//! cryoTWIN's commands on real latents (cryoDRGN's `zvals_het-8_4k.pkl`, zdim 8): `kl-kliep`.

use cryofield::twin::gmm::Gmm;
use std::path::PathBuf;
use std::process::Command;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// Run the binary; (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// A tiny VAE (zdim 2) and a homogeneous model trained on 48 noiseless images of a linear1d phantom.
fn tiny_models(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    let (ph, sim, vae, nn) = (
        dir.join("ph"),
        dir.join("sim"),
        dir.join("vae"),
        dir.join("nn"),
    );
    let steps: [Vec<String>; 4] = [
        [
            "phantom",
            "--kind",
            "linear1d",
            "--n-states",
            "8",
            "-D",
            "16",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([p(&ph)])
        .collect(),
        vec![
            "simulate".into(),
            p(&ph.join("vols.txt")),
            "-N".into(),
            "48".into(),
            "-o".into(),
            p(&sim),
            "--seed".into(),
            "2".into(),
        ],
        [
            "train-vae",
            "--zdim",
            "2",
            "-n",
            "2",
            "--enc-dim",
            "16",
            "--enc-layers",
            "1",
            "--dec-dim",
            "16",
            "--dec-layers",
            "1",
            "--seed",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            p(&sim.join("particles.mrcs")),
            "--poses".into(),
            p(&sim.join("pose.pkl")),
            "-o".into(),
            p(&vae),
        ])
        .collect(),
        [
            "train-nn", "-n", "1", "--dim", "16", "--layers", "1", "--seed", "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            p(&sim.join("particles.mrcs")),
            "--poses".into(),
            p(&sim.join("pose.pkl")),
            "-o".into(),
            p(&nn),
        ])
        .collect(),
    ];
    for args in &steps {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = run(&a);
        assert!(ok, "{args:?}: {err}");
    }
    (vae, nn)
}

#[test]
fn isometry_of_a_trained_vae_and_its_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (vae, nn) = tiny_models(dir.path());
    let (w, c, z) = (
        vae.join("weights.1.safetensors"),
        vae.join("config.json"),
        vae.join("z.1.pkl"),
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
    let (nw, nc) = (nn.join("weights.0.safetensors"), nn.join("config.json"));
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
