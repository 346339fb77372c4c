//! `pose::error` and `cryofield pose-error`: planted global rotations (both hands), per-image noise,
//! outliers and translation shifts are recovered; uniform random predictions score like uniform
//! random rotations; the convention claims (alignment on the right, mirror = `F·R·F` with the same
//! images) hold for our projection operator; the CLI writes its outputs and names bad files.

use cryofield::fourier::slice::project_real;
use cryofield::geometry::quaternion::{random_rotations, rotation_angle};
use cryofield::geometry::rotation::{expmap, matmul3, transpose3, Mat3};
use cryofield::meta::Poses;
use cryofield::pose::error::{
    flip, pose_error, pose_error_with, PoseErrorOptions, PoseErrorReport,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::process::Command;

const D: usize = 128;

fn to_f32(r: &Mat3) -> [f32; 9] {
    r.map(|x| x as f32)
}

fn align_mat(r: &PoseErrorReport) -> Mat3 {
    let a = r.align;
    [
        a[0][0], a[0][1], a[0][2], a[1][0], a[1][1], a[1][2], a[2][0], a[2][1], a[2][2],
    ]
}

/// A rotation by `deg` degrees about a uniformly random axis.
fn small_rotation(deg: f64, rng: &mut StdRng) -> Mat3 {
    let r = random_rotations(1, rng)[0];
    let t = deg.to_radians();
    // First column of a Haar-random rotation: a uniform unit vector.
    expmap([r[0] * t, r[3] * t, r[6] * t])
}

/// A planted problem: truth poses with random translations; predictions = truth·Q·ε_i (ε_i a
/// `noise_deg` rotation about a random axis), mirrored (`F·(…)·F`) when `mirror`, with a random
/// rotation for each image in `outliers`, and translations moved by `shift_px` pixels in a random
/// direction.
struct Planted {
    truth: Poses,
    pred: Poses,
    q: Mat3,
    outlier: Vec<bool>,
}

fn planted(
    n: usize,
    noise_deg: f64,
    outlier_frac: f64,
    mirror: bool,
    shift_px: f64,
    seed: u64,
) -> Planted {
    let mut rng = StdRng::seed_from_u64(seed);
    let truth_r = random_rotations(n, &mut rng);
    let q = random_rotations(1, &mut rng)[0];
    let mut pred_r = Vec::with_capacity(n);
    let mut outlier = Vec::with_capacity(n);
    let mut tt = Vec::with_capacity(n);
    let mut tp = Vec::with_capacity(n);
    for t in &truth_r {
        let out = rng.random::<f64>() < outlier_frac;
        let p = if out {
            random_rotations(1, &mut rng)[0]
        } else {
            let p = matmul3(&matmul3(t, &q), &small_rotation(noise_deg, &mut rng));
            if mirror {
                flip(&p)
            } else {
                p
            }
        };
        outlier.push(out);
        pred_r.push(to_f32(&p));
        let t0 = [
            rng.random_range(-0.05..0.05f32),
            rng.random_range(-0.05..0.05f32),
        ];
        let phi = rng.random_range(0.0..std::f64::consts::TAU);
        let s = shift_px / D as f64;
        tt.push(t0);
        tp.push([
            (t0[0] as f64 + s * phi.cos()) as f32,
            (t0[1] as f64 + s * phi.sin()) as f32,
        ]);
    }
    Planted {
        truth: Poses {
            rots: truth_r.iter().map(to_f32).collect(),
            trans: Some(tt),
        },
        pred: Poses {
            rots: pred_r,
            trans: Some(tp),
        },
        q,
        outlier,
    }
}

/// Checks a report against a planted problem: hand, alignment `Qᵀ`, per-image errors equal to
/// the planted noise on inliers and large on outliers, translations equal to the planted shift.
fn check_recovered(p: &Planted, r: &PoseErrorReport, mirror: bool, noise_deg: f64, shift_px: f64) {
    assert_eq!(r.flipped, mirror, "hand");
    // f32 storage (~1e-7) and the average of N noisy relative rotations (2°/√N ≈ 0.05°) bound the
    // alignment error; 0.1° leaves room for the 10 % outliers' pull on the L1 mean.
    let a_err = rotation_angle(&align_mat(r), &transpose3(&p.q)).to_degrees();
    assert!(a_err < 0.1, "alignment off by {a_err}°");
    let frob_planted = 4.0 * (1.0 - noise_deg.to_radians().cos());
    let mut outlier_deg = Vec::new();
    for (i, &out) in p.outlier.iter().enumerate() {
        if out {
            outlier_deg.push(r.rot_deg[i]);
            continue;
        }
        // Each error is the planted angle, moved by at most the alignment error.
        assert!(
            (r.rot_deg[i] - noise_deg).abs() <= a_err + 1e-3,
            "image {i}: {}° vs planted {noise_deg}°",
            r.rot_deg[i]
        );
        let expect = 4.0 * (1.0 - r.rot_deg[i].to_radians().cos());
        assert!((r.rot_frob[i] - expect).abs() < 1e-5 * expect.max(1e-3));
    }
    assert!(
        (r.median_rot_deg - noise_deg).abs() < 0.1,
        "median {}°",
        r.median_rot_deg
    );
    assert!(
        (r.median_rot_frob - frob_planted).abs() < 0.1 * frob_planted,
        "median frob {} vs {frob_planted}",
        r.median_rot_frob
    );
    if !outlier_deg.is_empty() {
        outlier_deg.sort_by(f64::total_cmp);
        let med = outlier_deg[outlier_deg.len() / 2];
        assert!(med > 60.0, "outliers scored small errors: median {med}°");
    }
    // The other hand cannot fit: its median is far above the planted error.
    assert!(r.other_hand_median_rot_frob > 20.0 * r.median_rot_frob);
    let t = r.trans_px.as_ref().expect("translations");
    for (i, x) in t.iter().enumerate() {
        // f32 storage of fractions ~0.06 of D = 128: ~1e-6 px.
        assert!(
            (x - shift_px).abs() < 1e-3,
            "image {i}: {x} px vs {shift_px}"
        );
    }
    assert!((r.median_trans_px.unwrap() - shift_px).abs() < 1e-3);
}

#[test]
fn planted_rotation_noise_and_outliers_are_recovered() {
    let p = planted(2000, 2.0, 0.1, false, 1.5, 11);
    let r = pose_error(&p.pred, &p.truth, D).unwrap();
    check_recovered(&p, &r, false, 2.0, 1.5);
    assert_eq!(r.rot_frob.len(), 2000);
    assert!(r.global_shift_px.is_none());
}

#[test]
fn mirrored_hand_is_detected() {
    let p = planted(2000, 2.0, 0.1, true, 0.75, 12);
    let r = pose_error(&p.pred, &p.truth, D).unwrap();
    check_recovered(&p, &r, true, 2.0, 0.75);
}

#[test]
fn noise_free_alignment_is_exact() {
    let p = planted(300, 0.0, 0.0, false, 0.0, 13);
    let r = pose_error(&p.pred, &p.truth, D).unwrap();
    assert!(!r.flipped);
    // Inputs are f32: errors at the f32 rounding level.
    assert!(
        r.rot_frob.iter().all(|&x| x < 1e-11),
        "{}",
        r.median_rot_frob
    );
    assert!(r.rot_deg.iter().all(|&x| x < 1e-3));
    assert!(rotation_angle(&align_mat(&r), &transpose3(&p.q)) < 1e-6);
}

#[test]
fn heavy_outliers_still_align() {
    // 40 % outliers: the median error is still an inlier's and the alignment is found.
    let p = planted(1000, 1.0, 0.4, true, 0.5, 14);
    let r = pose_error(&p.pred, &p.truth, D).unwrap();
    assert!(r.flipped);
    let a_err = rotation_angle(&align_mat(&r), &transpose3(&p.q)).to_degrees();
    assert!(a_err < 0.15, "alignment off by {a_err}°");
    assert!(
        (r.median_rot_deg - 1.0).abs() < 0.15,
        "{}",
        r.median_rot_deg
    );
}

/// For independent uniform rotations the angle θ has density (1 − cos θ)/π on [0, π], so
/// P(θ ≤ t) = (t − sin t)/π: median 132.35°, E[4(1 − cos θ)] = 6. Fitting one global rotation to
/// 4000 random pairs gains little.
#[test]
fn random_predictions_score_as_uniform_rotations() {
    let mut rng = StdRng::seed_from_u64(15);
    let truth = Poses {
        rots: random_rotations(4000, &mut rng)
            .iter()
            .map(to_f32)
            .collect(),
        trans: None,
    };
    let pred = Poses {
        rots: random_rotations(4000, &mut rng)
            .iter()
            .map(to_f32)
            .collect(),
        trans: None,
    };
    let r = pose_error(&pred, &truth, D).unwrap();
    assert!(
        (120.0..140.0).contains(&r.median_rot_deg),
        "median {}°",
        r.median_rot_deg
    );
    assert!(
        (5.5..6.2).contains(&r.mean_rot_frob),
        "mean frob {}",
        r.mean_rot_frob
    );
    assert!(r.trans_px.is_none() && r.median_trans_px.is_none());
    // Neither hand fits: the two medians are close.
    assert!(r.other_hand_median_rot_frob < 1.3 * r.median_rot_frob);
}

#[test]
fn global_shift_is_removed_on_request() {
    let mut p = planted(1500, 1.0, 0.1, false, 0.0, 16);
    // A volume shift u (pixels) moves image i by the first two rows of R_true,i·u.
    let u = [2.0, -1.5, 3.0];
    let tt = p.truth.trans.clone().unwrap();
    p.pred.trans = Some(
        p.truth
            .rots
            .iter()
            .zip(&tt)
            .map(|(r, t)| {
                let r = r.map(f64::from);
                let s = [
                    r[0] * u[0] + r[1] * u[1] + r[2] * u[2],
                    r[3] * u[0] + r[4] * u[1] + r[5] * u[2],
                ];
                [
                    (t[0] as f64 + s[0] / D as f64) as f32,
                    (t[1] as f64 + s[1] / D as f64) as f32,
                ]
            })
            .collect(),
    );
    let plain = pose_error(&p.pred, &p.truth, D).unwrap();
    assert!(plain.median_trans_px.unwrap() > 1.0);
    let opts = PoseErrorOptions {
        d: D,
        correct_global_trans: true,
    };
    let r = pose_error_with(&p.pred, &p.truth, &opts).unwrap();
    let g = r.global_shift_px.unwrap();
    for k in 0..3 {
        assert!((g[k] - u[k]).abs() < 1e-4, "shift {g:?} vs {u:?}");
    }
    assert!(r.trans_px.unwrap().iter().all(|&x| x < 1e-3));
}

#[test]
fn subsets_and_missing_translations() {
    let mut p = planted(400, 1.0, 0.0, false, 1.0, 17);
    p.truth.trans = None;
    let r = pose_error(&p.pred, &p.truth, D).unwrap();
    assert!(r.trans_px.is_none());
    let ind: Vec<usize> = (0..400).step_by(3).collect();
    let r = pose_error(&p.pred.select(&ind), &p.truth.select(&ind), D).unwrap();
    assert_eq!(r.rot_deg.len(), ind.len());
    assert!((r.median_rot_deg - 1.0).abs() < 0.05);
}

/// Gaussian blobs, off-centre and anisotropic, inside radius D/2 − 4.
fn blobs(p: [f64; 3]) -> f64 {
    const B: [([f64; 3], f64, f64); 4] = [
        ([3.0, -2.0, 4.0], 2.5, 1.0),
        ([-5.0, 1.0, -1.0], 2.0, 0.7),
        ([0.0, 6.0, -3.0], 1.8, 0.5),
        ([2.0, 0.0, -6.0], 2.2, 0.8),
    ];
    B.iter()
        .map(|(c, s, a)| {
            let r2: f64 = (0..3).map(|k| (p[k] - c[k]).powi(2)).sum();
            a * (-r2 / (2.0 * s * s)).exp()
        })
        .sum()
}

/// The volume `V(p) = blobs(p·M)` on the D³ grid (row vectors, the projector's convention).
fn sample_volume(d: usize, m: &Mat3) -> Vec<f32> {
    let h = (d / 2) as f64;
    let mut v = vec![0f32; d * d * d];
    for z in 0..d {
        for y in 0..d {
            for x in 0..d {
                let p = [x as f64 - h, y as f64 - h, z as f64 - h];
                let q: [f64; 3] =
                    std::array::from_fn(|j| (0..3).map(|k| p[k] * m[3 * k + j]).sum());
                v[(z * d + y) * d + x] = blobs(q) as f32;
            }
        }
    }
    v
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// The module doc's claims, checked with our real-space projector: a mirrored volume
/// `V(p·F)` projected with `F·R·F` gives the images of `V` with `R`, and a rotated volume
/// `V(p·M)` needs `R·Mᵀ` (the alignment acts on the right), not `Mᵀ·R`.
#[test]
fn conventions_hold_for_projections() {
    let d = 32;
    let eye = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let vol = sample_volume(d, &eye);
    let mut rng = StdRng::seed_from_u64(18);
    let rs = random_rotations(3, &mut rng);
    let m = random_rotations(1, &mut rng)[0];
    let mirrored = sample_volume(d, &cryofield::pose::error::FLIP);
    let rotated = sample_volume(d, &m);
    for r in &rs {
        let img = project_real(&vol, d, &to_f32(r));
        // Mirror: the same grid points, so equal up to f32 rounding of coordinates and sums.
        let e = rel_diff(&project_real(&mirrored, d, &to_f32(&flip(r))), &img);
        assert!(e < 1e-4, "mirror: relative difference {e}");
        // Rotation: equal up to trilinear interpolation error (σ ≈ 2 px blobs: a few %).
        let right = rel_diff(
            &project_real(&rotated, d, &to_f32(&matmul3(r, &transpose3(&m)))),
            &img,
        );
        let left = rel_diff(
            &project_real(&rotated, d, &to_f32(&matmul3(&transpose3(&m), r))),
            &img,
        );
        assert!(right < 0.05 && left > 0.3, "right {right}, left {left}");
    }
}

// ---- the binary ----

fn run_cli(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .arg("pose-error")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The planted prediction and truth saved as `dir`/pred.pkl and `dir`/true.pkl.
fn save_pair(dir: &std::path::Path, p: &Planted) -> (std::path::PathBuf, std::path::PathBuf) {
    let (pred, truth) = (dir.join("pred.pkl"), dir.join("true.pkl"));
    p.pred.save(&pred).unwrap();
    p.truth.save(&truth).unwrap();
    (pred, truth)
}

fn os<P: AsRef<std::ffi::OsStr> + ?Sized>(p: &P) -> &std::ffi::OsStr {
    p.as_ref()
}

#[test]
fn cli_writes_outputs_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = planted(500, 2.0, 0.1, true, 1.0, 19);
    let (pred, truth) = save_pair(dir.path(), &p);
    let out = dir.path().join("out");
    let (ok, stdout, stderr) = run_cli(&[
        os(&pred),
        os(&truth),
        os("-D"),
        os("128"),
        os("-o"),
        os(&out),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("handedness: flipped"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("pose_error.json")).unwrap()).unwrap();
    assert_eq!(json["n"], 500);
    assert_eq!(json["flipped"], true);
    let lib = pose_error(&p.pred, &p.truth, 128).unwrap();
    assert!((json["median_rot_deg"].as_f64().unwrap() - lib.median_rot_deg).abs() < 1e-12);
    assert!((json["median_trans_px"].as_f64().unwrap() - 1.0).abs() < 1e-3);
    let npy = cryofield::io::npy::read_npy(out.join("pose_error.npy")).unwrap();
    assert_eq!(npy.shape, vec![500, 3]);
    let txt = std::fs::read_to_string(out.join("pose_error.txt")).unwrap();
    assert_eq!(txt.lines().count(), 501);
    let png = std::fs::read(out.join("pose_error_hist.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // --ind: index column keeps the original numbering.
    let ind = dir.path().join("ind.pkl");
    cryofield::meta::save_indices(&ind, &[5, 7, 9, 11, 400]).unwrap();
    let sub = dir.path().join("sub");
    let (ok, _, stderr) = run_cli(&[
        os(&pred),
        os(&truth),
        os("-D"),
        os("128"),
        os("--ind"),
        os(&ind),
        os("-o"),
        os(&sub),
    ]);
    assert!(ok, "{stderr}");
    let txt = std::fs::read_to_string(sub.join("pose_error.txt")).unwrap();
    let first: Vec<&str> = txt
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(first, ["5", "7", "9", "11", "400"]);

    // Different N: an error naming the predicted file; earlier outputs untouched.
    let short = dir.path().join("short.pkl");
    p.pred
        .select(&(0..499).collect::<Vec<_>>())
        .save(&short)
        .unwrap();
    let before = std::fs::read(out.join("pose_error.json")).unwrap();
    let (ok, _, stderr) = run_cli(&[
        os(&short),
        os(&truth),
        os("-D"),
        os("128"),
        os("-o"),
        os(&out),
    ]);
    assert!(!ok && !stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("short.pkl") && stderr.contains("499"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out.join("pose_error.json")).unwrap(), before);

    // Both files have translations but no -D.
    let (ok, _, stderr) = run_cli(&[os(&pred), os(&truth)]);
    assert!(!ok && stderr.contains("-D"), "{stderr}");

    // A matrix that is not a rotation: named with its file and index.
    let mut bad = p.truth.clone();
    bad.rots[3] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0];
    let badp = dir.path().join("bad_true.pkl");
    bad.save(&badp).unwrap();
    let (ok, _, stderr) = run_cli(&[os(&pred), os(&badp), os("-D"), os("128")]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("bad_true.pkl") && stderr.contains("pose 3"),
        "{stderr}"
    );

    // Not a pose pickle at all.
    let junk = dir.path().join("junk.pkl");
    std::fs::write(&junk, b"not a pickle").unwrap();
    let (ok, _, stderr) = run_cli(&[os(&junk), os(&truth), os("-D"), os("128")]);
    assert!(
        !ok && !stderr.contains("panicked") && stderr.contains("junk.pkl"),
        "{stderr}"
    );
}

/// `--labels`: one alignment per state, written beside the global report; labels follow --ind;
/// a labels file of the wrong length is named in the error.
#[test]
fn cli_per_state_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let p = planted(400, 1.0, 0.0, false, 0.5, 23);
    let (pred, truth) = save_pair(dir.path(), &p);
    let labels = dir.path().join("labels.pkl");
    let lab: Vec<usize> = (0..400).map(|i| i % 4).collect();
    cryofield::meta::save_indices(&labels, &lab).unwrap();
    // pose-error PRED TRUE -D 64 --labels L, then `more`
    let with_labels = |l: &std::path::Path, more: &[&std::ffi::OsStr]| {
        let mut args = vec![os(&pred), os(&truth), os("-D"), os("64"), os("--labels")];
        args.push(l.as_os_str());
        args.extend_from_slice(more);
        run_cli(&args)
    };
    let out = dir.path().join("out");
    let (ok, stdout, stderr) = with_labels(&labels, &[os("-o"), os(&out)]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("per-state alignment"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("pose_error_states.json")).unwrap())
            .unwrap();
    let states = json["states"].as_array().unwrap();
    assert_eq!(states.len(), 4);
    assert!(states.iter().all(|s| s["n"] == 100), "{json}");
    let png = std::fs::read(out.join("pose_error_states.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // With --ind the labels are those of the selected images: 10 images of state 1, 2 of
    // state 2 (too few for --min-state-images 5: listed as skipped).
    let ind = dir.path().join("ind.pkl");
    let mut sel: Vec<usize> = (0..10).map(|k| 4 * k + 1).collect();
    sel.extend([2, 6]);
    cryofield::meta::save_indices(&ind, &sel).unwrap();
    let sub = dir.path().join("sub");
    let (ok, _, stderr) = with_labels(&labels, &[os("--ind"), os(&ind), os("-o"), os(&sub)]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sub.join("pose_error_states.json")).unwrap())
            .unwrap();
    assert_eq!(json["states"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["states"][0]["label"], 1);
    assert_eq!(json["skipped"][0]["label"], 2);
    assert_eq!(json["skipped"][0]["n"], 2);

    // Labels for a different number of images.
    let short = dir.path().join("short_labels.pkl");
    cryofield::meta::save_indices(&short, &lab[..399]).unwrap();
    let (ok, _, stderr) = with_labels(&short, &[]);
    assert!(!ok && !stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("short_labels.pkl") && stderr.contains("399"),
        "{stderr}"
    );
}
