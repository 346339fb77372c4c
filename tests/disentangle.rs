//! `cryofield disentangle mcc` end to end on small pickles: MCC is 1 for truth that is a permuted,
//! scaled and sign-flipped copy of the latents, and a row-count mismatch is an error naming the file.

use cryofield::io::array::{ArrayData, NdArray};
use cryofield::io::pkl::{write_pkl, PyValue};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

mod common;
use common::{phantom_sim, run, train_vae};

fn write(path: &Path, shape: Vec<usize>, data: ArrayData) {
    write_pkl(path, &PyValue::Array(NdArray::new(shape, data).unwrap())).unwrap();
}

#[test]
fn mcc_is_one_for_permuted_scaled_flipped_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (n, k) = (300, 3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let z: Vec<f32> = (0..n * k)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    // truth[:, j] = scale[j] · z[:, perm[j]], plus a constant column 3 (no information)
    let perm = [2, 0, 1];
    let scale = [-2.5, 0.25, 4.0];
    let truth: Vec<f64> = (0..n)
        .flat_map(|i| {
            let zi = &z[i * k..(i + 1) * k];
            (0..k)
                .map(move |j| scale[j] * zi[perm[j]] as f64)
                .chain([1.0])
        })
        .collect();
    let zp = dir.path().join("z.pkl");
    let tp = dir.path().join("truth.pkl");
    write(&zp, vec![n, k], ArrayData::F32(z));
    write(&tp, vec![n, k + 1], ArrayData::F64(truth));
    let out = dir.path().join("mcc.json");
    let (ok, stdout, stderr) = run(&[
        "disentangle",
        "mcc",
        "--z",
        zp.to_str().unwrap(),
        "--truth",
        tp.to_str().unwrap(),
        "--conf-cols",
        "1,2",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(j["n"], 300);
    assert_eq!(j["k_truth"], 4);
    for method in ["spearman", "pearson"] {
        let m = &j[method];
        let mcc = m["mcc"].as_f64().unwrap();
        assert!((mcc - 1.0).abs() < 1e-9, "{method}: {mcc}");
        // latent i is matched to the truth column holding it
        assert_eq!(m["assignment"]["latent"], serde_json::json!([0, 1, 2]));
        assert_eq!(m["assignment"]["factor"], serde_json::json!([1, 2, 0]));
        let signs: Vec<f64> = m["assignment"]["corr"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_f64().unwrap().signum())
            .collect();
        assert_eq!(signs, vec![1.0, 1.0, -1.0]);
        assert_eq!(m["matrix"].as_array().unwrap().len(), 3);
        assert_eq!(m["matrix"][0].as_array().unwrap().len(), 4);
        assert_eq!(m["matrix"][0][3], 0.0);
        // 3 matched of 4 true factors: the average over the truth counts the constant one as 0
        assert!((m["mcc_over_truth"].as_f64().unwrap() - 0.75).abs() < 1e-9);
        // MCC_conf against truth columns 1, 2 (= z0, z1): two latents matched exactly
        let c = &m["conf"];
        assert!((c["mcc"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{c}");
        assert_eq!(c["truth_cols"], serde_json::json!([1, 2]));
        assert_eq!(c["assignment"]["latent"], serde_json::json!([0, 1]));
    }
    assert!(stdout.contains("MCC (spearman) = 1.0000"), "{stdout}");
}

#[test]
fn mcc_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let zp = dir.path().join("z.pkl");
    let tp = dir.path().join("short_truth.pkl");
    write(
        &zp,
        vec![10, 2],
        ArrayData::F32((0..20).map(|v| v as f32).collect()),
    );
    write(
        &tp,
        vec![9],
        ArrayData::F64((0..9).map(f64::from).collect()),
    );
    let out = dir.path().join("mcc.json");
    let args = |t: &Path| {
        vec![
            "disentangle".to_string(),
            "mcc".into(),
            "--z".into(),
            zp.display().to_string(),
            "--truth".into(),
            t.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ]
    };
    let a = args(&tp);
    let (ok, _, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok);
    assert!(
        stderr.contains("short_truth.pkl") && stderr.contains("[9]"),
        "{stderr}"
    );
    assert!(!out.exists());
    // a non-finite truth value
    let bad = dir.path().join("nan_truth.pkl");
    let mut t: Vec<f64> = (0..10).map(f64::from).collect();
    t[4] = f64::NAN;
    write(&bad, vec![10], ArrayData::F64(t));
    let a = args(&bad);
    let (ok, _, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok);
    assert!(
        stderr.contains("nan_truth.pkl") && stderr.contains("not finite"),
        "{stderr}"
    );
    // --conf-cols out of range
    let good = dir.path().join("truth.pkl");
    write(
        &good,
        vec![10],
        ArrayData::F64((0..10).map(f64::from).collect()),
    );
    let mut a = args(&good);
    a.extend(["--conf-cols".into(), "3".into()]);
    let (ok, _, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok);
    assert!(stderr.contains("--conf-cols 3"), "{stderr}");
}

/// `train-vae --pose-source encoder --intervention-weight 1` (PoseVAE) on a tiny simulated set: it trains,
/// writes the predicted in-plane angles, resumes exactly, and refuses mismatched resumes and flags.
#[test]
fn posevae_trains_resumes_and_refuses_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let sim = phantom_sim(dir.path(), "linear2d", 4, 24, &[]);
    let train = |out: &str, extra: &[&str]| {
        let o = dir.path().join(out);
        let (ok, err) = train_vae(&sim, &o, &[&["-b", "8", "--seed", "5"], extra].concat());
        (o, ok, err)
    };
    let pv = ["--pose-source", "encoder", "--intervention-weight", "1"];
    let (a, ok, err) = train("a", &[&pv[..], &["-n", "2"]].concat());
    assert!(ok, "{err}");
    let angles = cryofield::io::pkl::read_pkl(a.join("pose_pred.2.pkl")).unwrap();
    let arr = angles.as_array().unwrap();
    assert_eq!(arr.shape, vec![24]);
    assert!(arr
        .to_f64()
        .iter()
        .all(|v| v.is_finite() && v.abs() <= std::f64::consts::PI));
    // z.N.pkl keeps cryoDRGN's layout: z_mu then z_logvar, each (n, zdim)
    let zs = cryofield::io::pkl::read_pkl_all(a.join("z.2.pkl")).unwrap();
    assert_eq!(zs.len(), 2);
    assert_eq!(zs[1].as_array().unwrap().shape, vec![24, 2]);
    // resume from epoch 0 = the uninterrupted run
    let (b, ok, err) = train("b", &[&pv[..], &["-n", "1"]].concat());
    assert!(ok, "{err}");
    let w0 = b.join("weights.1.safetensors");
    let (b, ok, err) = train(
        "b",
        &["-n", "2", "--pose-source", "encoder", "--load", &p(&w0)],
    );
    assert!(ok, "{err}");
    for f in ["z.2.pkl", "pose_pred.2.pkl"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // resuming a learned-pose run without the flag, and the flags without --pose-source encoder
    let (_, ok, err) = train("c", &["-n", "2", "--load", &p(&w0)]);
    assert!(!ok && err.contains("--pose-source encoder"), "{err}");
    let (_, ok, err) = train("c", &["-n", "1", "--pose-head", "so3"]);
    assert!(!ok && err.contains("--pose-source encoder"), "{err}");
    // the known-pose variant: trains with a positive intervention loss in losses.csv
    let (k, ok, err) = train("k", &["-n", "1", "--intervention-weight", "1"]);
    assert!(ok, "{err}");
    let row = last_losses_row(&k);
    assert!(row["intervention"] > 0.0 && row["slow"] == 0.0, "{row:?}");
    // w enters per pixel, as β does: loss = recon + (β·KL + w·L_int)/P, P the decoder's masked pixels
    let lattice = cryofield::fourier::lattice::Lattice::for_image(16, true).unwrap();
    let np = lattice
        .circular_mask(8.0)
        .unwrap()
        .iter()
        .filter(|&&m| m)
        .count() as f64;
    let (w, ok, err) = train(
        "w",
        &["-n", "1", "--beta", "1", "--intervention-weight", "3"],
    );
    assert!(ok, "{err}");
    let row = last_losses_row(&w);
    let want = row["recon"] + (row["kld"] + 3.0 * row["intervention"]) / np;
    assert!(
        (row["loss"] - want).abs() <= 1e-5 * want.abs(),
        "loss {} vs recon + (KL + 3·L)/P = {want} (P = {np})",
        row["loss"]
    );
}

/// The last row of a run's losses.csv, by column name.
fn last_losses_row(out: &Path) -> std::collections::HashMap<String, f64> {
    let text = std::fs::read_to_string(out.join("losses.csv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let last = lines.last().unwrap();
    head.iter()
        .zip(last.split(','))
        .map(|(h, v)| (h.to_string(), v.parse().unwrap()))
        .collect()
}

/// `train-vae --pairs` (SlowVAE) on `simulate --pairs` data: it trains with a positive transition term,
/// resumes exactly, and refuses an odd batch, `--ind`, the slow flags without `--pairs`, a resume
/// without `--pairs`, and a pairs file with an index out of range (naming the file).
#[test]
fn slowvae_trains_resumes_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let sim = phantom_sim(
        dir.path(),
        "linear2d",
        16,
        24,
        &["--pose-dist", "inplane", "--pairs"],
    );
    let pairs = p(&sim.sim.join("pairs.pkl"));
    let train = |out: &str, extra: &[&str]| {
        let o = dir.path().join(out);
        // -b 8 unless `extra` sets it
        let b: &[&str] = if extra.contains(&"-b") {
            &[]
        } else {
            &["-b", "8"]
        };
        let (ok, err) = train_vae(&sim, &o, &[&["--seed", "5"], b, extra].concat());
        (o, ok, err)
    };
    let (a, ok, err) = train("a", &["--pairs", &pairs, "-n", "2"]);
    assert!(ok, "{err}");
    let row = last_losses_row(&a);
    assert!(row["slow"] > 0.0 && row["intervention"] == 0.0, "{row:?}");
    // the total is the sum of its parts (recon + β·KL/P + slow; β = 1/zdim here)
    assert!(row["loss"] > row["recon"] + row["slow"], "{row:?}");
    let (b, ok, err) = train("b", &["--pairs", &pairs, "-n", "1"]);
    assert!(ok, "{err}");
    let w0 = b.join("weights.1.safetensors");
    let (b, ok, err) = train("b", &["--pairs", &pairs, "-n", "2", "--load", &p(&w0)]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(a.join("z.2.pkl")).unwrap(),
        std::fs::read(b.join("z.2.pkl")).unwrap()
    );
    let (_, ok, err) = train("c", &["-n", "2", "--load", &p(&w0)]);
    assert!(!ok && err.contains("--pairs"), "{err}");
    let (_, ok, err) = train("c", &["--pairs", &pairs, "-n", "1", "-b", "7"]);
    assert!(!ok && err.contains("even"), "{err}");
    let (_, ok, err) = train("c", &["-n", "1", "--slow-gamma", "3"]);
    assert!(!ok && err.contains("--pairs"), "{err}");
    let ind = dir.path().join("ind.pkl");
    write(&ind, vec![4], ArrayData::I64(vec![0, 1, 2, 3]));
    let (_, ok, err) = train("c", &["--pairs", &pairs, "-n", "1", "--ind", &p(&ind)]);
    assert!(!ok && err.contains("--ind"), "{err}");
    let bad = dir.path().join("bad_pairs.pkl");
    write(&bad, vec![2, 2], ArrayData::I64(vec![0, 1, 2, 24]));
    let (_, ok, err) = train("c", &["--pairs", &p(&bad), "-n", "1"]);
    assert!(
        !ok && err.contains("bad_pairs.pkl") && err.contains("0..24"),
        "{err}"
    );
}

/// `mcc --pose-pred --pose-true`: a reflected, offset copy of the true angle is aligned back (sign −1,
/// the offset recovered, error ≈ 0) and joins MCC_all as a perfectly ranked column; MCC_conf keeps the
/// conformational latents only; a prediction with a wrong row count is an error naming its file.
#[test]
fn mcc_aligns_a_reflected_offset_pose() {
    let dir = tempfile::tempdir().unwrap();
    let n = 400;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let z: Vec<f32> = (0..n * 2)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let truth: Vec<f64> = z.iter().map(|&v| 3.0 * v as f64).collect();
    let psi: Vec<f64> = (0..n)
        .map(|i| (i as f64 * 2.399_963).rem_euclid(std::f64::consts::TAU))
        .collect();
    // ψ̂ = −ψ + 1 (wrapped): aligned by sign −1, offset 1 rad
    let pred: Vec<f64> = psi
        .iter()
        .map(|p| (1.0 - p).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI)
        .collect();
    let f = |name: &str| dir.path().join(name);
    write(&f("z.pkl"), vec![n, 2], ArrayData::F32(z));
    write(&f("t.pkl"), vec![n, 2], ArrayData::F64(truth));
    write(&f("psi.pkl"), vec![n], ArrayData::F64(psi));
    write(&f("pred.pkl"), vec![n], ArrayData::F64(pred));
    write(
        &f("short.pkl"),
        vec![n - 1],
        ArrayData::F64(vec![0.0; n - 1]),
    );
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    let args = |pred: &str| {
        vec![
            "disentangle".to_string(),
            "mcc".into(),
            "--z".into(),
            s(f("z.pkl")),
            "--truth".into(),
            s(f("t.pkl")),
            "--conf-cols".into(),
            "0,1".into(),
            "--pose-pred".into(),
            s(f(pred)),
            "--pose-true".into(),
            s(f("psi.pkl")),
            "-o".into(),
            s(f("m.json")),
        ]
    };
    let a = args("pred.pkl");
    let (ok, stdout, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stdout}\n{stderr}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f("m.json")).unwrap()).unwrap();
    assert_eq!(j["pose"]["sign"], -1.0);
    let off = j["pose"]["offset_deg"].as_f64().unwrap();
    // −ψ + 1 − π wrapped: offset 1 − π rad
    assert!(
        (off - (1.0 - std::f64::consts::PI).to_degrees()).abs() < 1e-6,
        "{off}"
    );
    assert!(j["pose"]["median_error_deg"].as_f64().unwrap() < 1e-6);
    assert_eq!(j["k_truth"], 3);
    assert_eq!(j["zdim"], 2);
    let m = j["spearman"]["mcc"].as_f64().unwrap();
    assert!((m - 1.0).abs() < 1e-9, "{m}");
    assert_eq!(
        j["spearman"]["conf"]["assignment"]["latent"],
        serde_json::json!([0, 1])
    );
    let a = args("short.pkl");
    let (ok, _, stderr) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && stderr.contains("short.pkl"), "{stderr}");
}
