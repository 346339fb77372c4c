//! `cryofield disentangle scores` end to end on small arrays: an identity representation scores high
//! on MIG and FactorVAE, the JSON holds all seven scores, `--dump` writes every metric's inputs, and
//! bad inputs (non-integer factors, a row-count mismatch, a missing file) are errors naming the file.

use cryofield::io::array::{ArrayData, NdArray};
use cryofield::io::npy::{read_npy, write_npy};
use cryofield::io::pkl::{write_pkl, PyValue};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::path::{Path, PathBuf};

mod common;
use common::run;

/// n rows of K = 2 factors × 10 values and the identity representation factors + N(0, 0.1²):
/// writes `r.npy` (f64) and `v.npy` (int64) into `dir`.
fn identity_arrays(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let v: Vec<i64> = (0..2 * n).map(|_| rng.random_range(0..10)).collect();
    let r: Vec<f64> = v
        .iter()
        .map(|&x| {
            let e: f64 = StandardNormal.sample(&mut rng);
            x as f64 + 0.1 * e
        })
        .collect();
    let (rp, vp) = (dir.join("r.npy"), dir.join("v.npy"));
    write_npy(&rp, &NdArray::new(vec![n, 2], ArrayData::F64(r)).unwrap()).unwrap();
    write_npy(&vp, &NdArray::new(vec![n, 2], ArrayData::I64(v)).unwrap()).unwrap();
    (rp, vp)
}

const SMALL: [&str; 6] = ["--scale", "0.02", "--iterations", "200", "--seed", "3"];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn identity_scores_high_and_dump_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, vp) = identity_arrays(dir.path(), 2000);
    let out = dir.path().join("scores.json");
    let dump = dir.path().join("dump");
    let mut args = vec![
        "disentangle",
        "scores",
        "--repr",
        s(&rp),
        "--factors",
        s(&vp),
        "--dump",
        s(&dump),
        "-o",
        s(&out),
    ];
    args.extend(SMALL);
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stdout}\n{stderr}");
    println!("{stdout}");
    assert_eq!(stdout.lines().count(), 7, "one line per metric:\n{stdout}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let scores = j["scores"].as_object().unwrap();
    for name in [
        "betavae",
        "factorvae",
        "mig",
        "dci",
        "modularity",
        "sap",
        "mcc",
    ] {
        let x = scores[name].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&x), "{name} = {x}");
    }
    assert!(scores["mig"].as_f64().unwrap() >= 0.9, "{scores:?}");
    assert!(scores["factorvae"].as_f64().unwrap() >= 0.9, "{scores:?}");
    assert_eq!(j["report"]["num_values"], serde_json::json!([10, 10]));
    assert_eq!(j["report"]["counts"]["mig_train"], 2000);
    assert!(j["report"]["seconds"]["mig"].as_f64().is_some());
    // The dump holds each metric's inputs with the reported counts.
    let shape = |name: &str| read_npy(dump.join(format!("{name}.npy"))).unwrap().shape;
    assert_eq!(shape("mig_r"), vec![2000, 2]);
    assert_eq!(shape("mig_v"), vec![2000, 2]);
    assert_eq!(shape("betavae_train_x"), vec![200, 2]);
    assert_eq!(shape("betavae_eval_y"), vec![100]);
    assert_eq!(shape("factorvae_train_votes"), vec![200, 2]);
    assert_eq!(shape("factorvae_eval_votes"), vec![100, 2]);
    assert_eq!(shape("modularity_test_r"), vec![100, 2]);
    for name in [
        "num_values",
        "factorvae_global_variance",
        "factorvae_active_codes",
        "dci_train_r",
        "dci_test_v",
        "sap_train_r",
        "sap_test_v",
        "modularity_train_v",
        "mcc_r",
        "mcc_v",
    ] {
        assert!(dump.join(format!("{name}.npy")).is_file(), "{name}");
    }
    // Rows of the dumped MIG sample are rows of the input (drawn with replacement).
    let r = read_npy(&rp).unwrap().to_f64();
    let m = read_npy(dump.join("mig_r.npy")).unwrap().to_f64();
    let rows: Vec<&[f64]> = r.chunks(2).collect();
    assert!(m.chunks(2).take(50).all(|row| rows.contains(&row)));
}

#[test]
fn metrics_flag_selects() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, vp) = identity_arrays(dir.path(), 500);
    let out = dir.path().join("scores.json");
    let mut args = vec![
        "disentangle",
        "scores",
        "--repr",
        s(&rp),
        "--factors",
        s(&vp),
        "--metrics",
        "mig,mcc",
        "-o",
        s(&out),
    ];
    args.extend(SMALL);
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let keys: Vec<&String> = j["scores"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(j["report"]["betavae"].is_null());
    args[7] = "fid";
    let (ok, _, stderr) = run(&args);
    assert!(!ok && stderr.contains("fid"), "{stderr}");
}

#[test]
fn bad_inputs_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, _) = identity_arrays(dir.path(), 100);
    let out = dir.path().join("scores.json");
    let try_factors = |vp: &Path| {
        let mut args = vec![
            "disentangle",
            "scores",
            "--repr",
            s(&rp),
            "--factors",
            s(vp),
            "-o",
            s(&out),
        ];
        args.extend(SMALL);
        let (ok, stdout, stderr) = run(&args);
        assert!(!ok, "should fail: {stdout}");
        stderr
    };
    // Non-integer factor values.
    let frac = dir.path().join("frac.npy");
    let mut v = vec![1.0f64; 200];
    v[77] = 2.5;
    write_npy(
        &frac,
        &NdArray::new(vec![100, 2], ArrayData::F64(v)).unwrap(),
    )
    .unwrap();
    let e = try_factors(&frac);
    assert!(
        e.contains("frac.npy") && e.contains("2.5") && e.contains("[38, 1]"),
        "{e}"
    );
    // Negative factor values (pickle).
    let neg = dir.path().join("neg.pkl");
    let mut v = vec![1i64; 200];
    v[4] = -1;
    write_pkl(
        &neg,
        &PyValue::Array(NdArray::new(vec![100, 2], ArrayData::I64(v)).unwrap()),
    )
    .unwrap();
    let e = try_factors(&neg);
    assert!(e.contains("neg.pkl") && e.contains("non-negative"), "{e}");
    // Row-count mismatch.
    let short = dir.path().join("short.npy");
    write_npy(
        &short,
        &NdArray::new(vec![99, 2], ArrayData::I64(vec![0; 198])).unwrap(),
    )
    .unwrap();
    let e = try_factors(&short);
    assert!(e.contains("short.npy") && e.contains("100"), "{e}");
    // Missing file.
    let missing = dir.path().join("missing.npy");
    let e = try_factors(&missing);
    assert!(e.contains("missing.npy"), "{e}");
    let mut args = vec![
        "disentangle",
        "scores",
        "--repr",
        s(&missing),
        "--factors",
        s(&short),
        "-o",
        s(&out),
    ];
    args.extend(SMALL);
    let (ok, _, e) = run(&args);
    assert!(!ok && e.contains("missing.npy"), "{e}");
    assert!(!out.exists(), "no output after a failure");
}

/// Model mode measures what arrays mode measures on simulate's data: a tiny model trained on a
/// 9-state linear1d phantom (D = 16, views along y); arrays mode on the μ_z of 600 simulated held-out
/// images (eval-images) with their states, model mode on images the phantom's generator draws with the
/// same law (inplane-y, no noise). The |Spearman| matrices between codes and the factor agree to
/// sampling error (≈ 0.04 per entry at these counts), and the model's z does follow the factor (so the
/// comparison can fail).
/// Model mode's bad inputs are errors naming what is wrong.
#[test]
fn model_mode_matches_arrays_mode_on_simulated_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |args: &[&str]| {
        common::run_ok(args);
    };
    let st = common::phantom_sim(d, "linear1d", 9, 400, &["--pose-dist", "inplane-y"]);
    let (ph, train, held, m) = (st.ph.clone(), st.sim.clone(), d.join("held"), d.join("m"));
    ok(&[
        "simulate",
        s(&ph.join("vols.txt")),
        "-N",
        "600",
        "--pose-dist",
        "inplane-y",
        "--seed",
        "7",
        "-o",
        s(&held),
    ]);
    ok(&[
        "train-vae",
        s(&train.join("particles.mrcs")),
        "--poses",
        s(&train.join("pose.pkl")),
        "--zdim",
        "2",
        "--enc-dim",
        "32",
        "--enc-layers",
        "2",
        "--dec-dim",
        "32",
        "--dec-layers",
        "2",
        "-b",
        "8",
        "-n",
        "40",
        "--lr",
        "3e-3",
        "--beta",
        "0.01",
        "--seed",
        "1",
        "-o",
        s(&m),
    ]);
    let (w, c) = (m.join("weights.safetensors"), m.join("config.json"));
    let z = d.join("held_z.pkl");
    ok(&[
        "eval-images",
        s(&held.join("particles.mrcs")),
        s(&w),
        "-c",
        s(&c),
        "--poses",
        s(&held.join("pose.pkl")),
        "-o",
        s(&z),
    ]);
    // labels are the state indices: the one factor's level
    let labels = cryofield::io::pkl::read_pkl(held.join("labels.pkl"))
        .unwrap()
        .as_array()
        .unwrap()
        .to_f64();
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let fac = d.join("factors.npy");
    write_npy(
        &fac,
        &NdArray {
            shape: vec![labels.len(), 1],
            data: ArrayData::I64(v),
        },
    )
    .unwrap();
    let mcc_args = ["--metrics", "mcc", "--scale", "0.1", "--seed", "4"];
    let (a_json, m_json) = (d.join("a.json"), d.join("m.json"));
    let mut a = vec![
        "disentangle",
        "scores",
        "--repr",
        s(&z),
        "--factors",
        s(&fac),
        "-o",
        s(&a_json),
    ];
    a.extend(mcc_args);
    ok(&a);
    // model mode: WEIGHTS -c CONFIG --phantom PH -o OUT, then `extra`
    let model_mode = |phantom: &Path, out: &Path, extra: &[&str]| {
        let head = ["disentangle", "scores", s(&w), "-c", s(&c), "--phantom"];
        run(&[&head[..], &[s(phantom), "-o", s(out)], extra].concat())
    };
    let (good, _, err) = model_mode(
        &ph,
        &m_json,
        &[&["--pose-dist", "inplane-y"], &mcc_args[..]].concat(),
    );
    assert!(good, "{err}");
    let matrix = |p: &Path| -> Vec<f64> {
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        j["report"]["mcc"]["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap().abs())
            })
            .collect()
    };
    let (ma, mm) = (matrix(&a_json), matrix(&m_json));
    assert_eq!(ma.len(), 2);
    assert!(
        ma.iter().cloned().fold(0.0, f64::max) > 0.5,
        "the model's z hardly follows any factor ({ma:?}): the comparison would not discriminate"
    );
    for (x, y) in ma.iter().zip(&mm) {
        assert!((x - y).abs() < 0.15, "arrays {ma:?} vs model {mm:?}");
    }
    // bad inputs: a phantom whose box is not the model's; a missing config
    let ph20 = d.join("ph20");
    ok(&[
        "phantom",
        "--kind",
        "linear1d",
        "--n-states",
        "9",
        "-D",
        "20",
        "-o",
        s(&ph20),
    ]);
    let (okk, _, err) = model_mode(&ph20, &d.join("x.json"), &[]);
    assert!(
        !okk && err.contains("box 20") && err.contains("16"),
        "{err}"
    );
    let (okk, _, err) = run(&[
        "disentangle",
        "scores",
        s(&w),
        "--phantom",
        s(&ph),
        "-o",
        s(&d.join("x.json")),
    ]);
    assert!(!okk && err.contains("config"), "{err}");
    assert!(!d.join("x.json").exists());
}
