//! `pc-reconstruct` through the binary: outputs (recon.npy, energy.csv/png, recon_A.pdb in Å,
//! run.json), the ML baseline, and clear errors for bad observations and mismatched priors.

mod common;

use common::run;
use cryofield::io::npy::read_npy;
use cryofield::pointcloud::data::{GroundTruth, Observations, Projection};

const N: usize = 16;

/// Three 16-point clouds: a bent rod at 0°, 45°, 90°.
fn templates() -> Vec<f64> {
    (0..3)
        .flat_map(|c| {
            let th = (45.0 * c as f64).to_radians();
            (0..N).flat_map(move |k| {
                let u = (k % 8) as f64 / 8.0;
                if k < 8 {
                    [-0.1 - 0.8 * u, 0.1 * (k as f64).sin(), 0.0]
                } else {
                    let r = 0.1 + 0.8 * u;
                    [r * th.cos(), r * th.sin(), 0.1 * (k as f64).cos()]
                }
            })
        })
        .collect()
}

fn setup(dir: &std::path::Path) -> (String, String) {
    let t = templates();
    let gt = GroundTruth {
        clouds: t.clone(),
        s: 3,
        n: N,
        center: vec![10.0, 20.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        scale: vec![50.0, 1.0, 1.0],
        atoms: None,
    };
    let gt_path = dir.join("templates.npz");
    gt.write(&gt_path).unwrap();
    let truth = &t[3 * N..6 * N];
    // a z-view projection of the first 12 points and the second domain as the subunit
    let rot = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let proj: Vec<f64> = truth[..36].chunks(3).flat_map(|p| [p[0], p[1]]).collect();
    let obs = Observations {
        proj: vec![Projection { rot, points: proj }],
        cg: None,
        subunit: Some(truth[24..].to_vec()),
        n_points: N,
        frame: Some(([10.0, 20.0, 30.0], 50.0)),
    };
    let obs_path = dir.join("obs.npz");
    obs.write(&obs_path).unwrap();
    (
        format!("gmm:{}", gt_path.display()),
        obs_path.display().to_string(),
    )
}

#[test]
fn pc_reconstruct_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let (prior, obs) = setup(dir.path());
    let out = dir.path().join("rec");
    let o = out.to_str().unwrap();
    let (ok, _, err) = run(&[
        "pc-reconstruct",
        &prior,
        &obs,
        "-o",
        o,
        "--samples",
        "3",
        "--steps",
        "8",
        "--alpha",
        "50",
        "--assign",
        "hungarian",
    ]);
    assert!(ok, "{err}");
    let rec = read_npy(out.join("recon.npy")).unwrap();
    assert_eq!(rec.shape, vec![3, N, 3]);
    let csv = std::fs::read_to_string(out.join("energy.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "step,E_0,E_1,E_2");
    assert_eq!(csv.lines().count(), 1 + 8);
    assert!(out.join("energy.png").is_file());
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["nfe_per_sample"], 15, "2N − 1 evaluations");
    assert_eq!(run_json["assignments"], 15 * 3 * 2, "NFE × samples × items");
    // recon_A.pdb holds the clouds in Å: x_Å = center + scale · x
    let atoms = cryofield::io::pdb::read_model(out.join("recon_A.pdb")).unwrap();
    assert_eq!(atoms.len(), N, "first model");
    let x = rec.to_f64();
    for (j, a) in atoms.iter().enumerate() {
        for k in 0..3 {
            let want = [10.0, 20.0, 30.0][k] + 50.0 * x[3 * j + k];
            assert!(
                (a.pos[k] - want).abs() < 2e-3,
                "atom {j} axis {k}: {} vs {want}",
                a.pos[k]
            );
        }
    }

    // the ML baseline into the same folder replaces every file
    let (ok, _, err) = run(&[
        "pc-reconstruct",
        &prior,
        &obs,
        "-o",
        o,
        "--method",
        "ml",
        "--samples",
        "2",
        "--ml-steps",
        "5",
        "--ml-lr",
        "0.3",
        "--ml-lr-decay",
        "cosine:1e-4",
        "--ml-restarts",
        "3",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        read_npy(out.join("recon.npy")).unwrap().shape,
        vec![2, N, 3]
    );
    let csv = std::fs::read_to_string(out.join("energy.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 5);
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["settings"]["ml_lr_decay"], "cosine:1e-4");
    assert_eq!(run_json["settings"]["ml_restarts"], 3);
    assert_eq!(
        run_json["assignments"],
        5 * 3 * 2 * 2,
        "steps × restarts × samples × items"
    );
}

#[test]
fn pc_reconstruct_rejects_bad_inputs_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (prior, obs) = setup(dir.path());
    let out = dir.path().join("rec");
    let o = out.to_str().unwrap();
    // observations of another cloud size
    let mut bad = Observations::read(&obs).unwrap();
    bad.n_points = 20;
    let p20 = dir.path().join("obs20.npz");
    bad.write(&p20).unwrap();
    let (ok, _, err) = run(&["pc-reconstruct", &prior, p20.to_str().unwrap(), "-o", o]);
    assert!(!ok);
    assert!(
        err.contains("20-point cloud") && err.contains("16 points"),
        "{err}"
    );
    // a projection of the wrong shape names the file and the field
    let arrays = vec![
        (
            "proj_0".to_string(),
            cryofield::io::array::NdArray::from_f32(vec![4, 3], vec![0.0; 12]).unwrap(),
        ),
        (
            "rot_0".to_string(),
            cryofield::io::array::NdArray::from_f32(
                vec![3, 3],
                vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            )
            .unwrap(),
        ),
        (
            "n_points".to_string(),
            cryofield::io::array::NdArray::from_i64(vec![1], vec![16]).unwrap(),
        ),
    ];
    let pbad = dir.path().join("badproj.npz");
    cryofield::io::npy::write_npz(&pbad, &arrays).unwrap();
    let (ok, _, err) = run(&["pc-reconstruct", &prior, pbad.to_str().unwrap(), "-o", o]);
    assert!(!ok);
    assert!(
        err.contains("badproj.npz") && err.contains("proj_0"),
        "{err}"
    );
    // a rotation that is not one
    let mut arrays2 = arrays.clone();
    arrays2[0].1 = cryofield::io::array::NdArray::from_f32(vec![4, 2], vec![0.0; 8]).unwrap();
    arrays2[1].1 = cryofield::io::array::NdArray::from_f32(vec![3, 3], vec![2.0; 9]).unwrap();
    let prot = dir.path().join("badrot.npz");
    cryofield::io::npy::write_npz(&prot, &arrays2).unwrap();
    let (ok, _, err) = run(&["pc-reconstruct", &prior, prot.to_str().unwrap(), "-o", o]);
    assert!(!ok);
    assert!(
        err.contains("rot_0") && err.contains("not a rotation"),
        "{err}"
    );
    // a prior that is not one
    let (ok, _, err) = run(&["pc-reconstruct", "nonsense", &obs, "-o", o]);
    assert!(!ok);
    assert!(
        err.contains("gmm:") && err.contains("pc-train folder"),
        "{err}"
    );
    // a bad β
    let (ok, _, err) = run(&["pc-reconstruct", &prior, &obs, "-o", o, "--beta", "t^2"]);
    assert!(!ok);
    assert!(err.contains("--beta"), "{err}");
    // a bad ML schedule, no restarts
    let ml = ["pc-reconstruct", &prior, &obs, "-o", o, "--method", "ml"];
    let (ok, _, err) = run(&[&ml[..], &["--ml-lr-decay", "linear"]].concat());
    assert!(!ok);
    assert!(err.contains("--ml-lr-decay"), "{err}");
    let (ok, _, err) = run(&[&ml[..], &["--ml-restarts", "0"]].concat());
    assert!(!ok);
    assert!(err.contains("restarts"), "{err}");
    // nothing was written by the failed runs
    assert!(!out.join("recon.npy").exists());
}
