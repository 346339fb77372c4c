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
