//! `disentangle interventions`, `rot90` and `plots` end to end on tiny trained models, and the library's
//! `Probe` / `World` against what training and `simulate` compute: the probe's encoding of a particle
//! stack is training's own z.N.pkl / pose_pred.N.pkl, and the phantom's generator renders simulate's
//! images.

use cryofield::disentangle::probe::{ImageOpts, Probe, World};
use cryofield::io::pkl::{read_pkl, read_pkl_all};
use cryofield::io::source::ParticleSource;
use cryofield::meta::{CtfParams, Poses};
use cryofield::simulate::dataset::ImageParams;
use serde_json::Value;
use std::path::Path;

mod common;
use common::{phantom_sim, run, run_ok as ok, train_vae, Sim};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A 3×3 linear2d phantom (D = 16) in `dir/ph` and `n` in-plane particles from it (`extra` simulate
/// flags) in `dir/sim`.
fn setup(dir: &Path, n: usize, extra: &[&str]) -> Sim {
    phantom_sim(
        dir,
        "linear2d",
        9,
        n,
        &[&["--pose-dist", "inplane"], extra].concat(),
    )
}

/// A one-epoch tiny train-vae run on `st` in `out` (`extra` flags added); panics when it fails.
fn train(st: &Sim, out: &Path, extra: &[&str]) {
    let args = [&["-b", "8", "--seed", "5", "-n", "1"], extra].concat();
    let (ok, err) = train_vae(st, out, &args);
    assert!(ok, "train-vae {args:?}\n{err}");
}

const POSEVAE: [&str; 4] = ["--pose-source", "encoder", "--intervention-weight", "1"];

/// With shifts and a CTF: the probe's encoding of the raw particles (recentred by pose.pkl's shifts,
/// times sign(CTF)) is training's own z.1.pkl (μ and log σ²) and pose_pred.1.pkl; the phantom's
/// generator at the simulated states, poses, shifts and CTF renders simulate's (noiseless) images. Trained
/// with `--no-amp`, so that training's encoder runs the same f32 arithmetic as the probe's.
#[test]
fn probe_matches_training_and_world_matches_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let st = setup(
        dir.path(),
        32,
        &["--t-extent", "2", "--defocus", "10000", "20000"],
    );
    let run_dir = dir.path().join("pv");
    let ctf_path = st.sim.join("ctf.pkl");
    // f32 GEMMs (training's default bf16 ones move μ by ~1e-3)
    train(
        &st,
        &run_dir,
        &[&POSEVAE[..], &["--ctf", &s(&ctf_path), "--no-amp"]].concat(),
    );

    let probe = Probe::load(
        &run_dir.join("weights.1.safetensors"),
        &run_dir.join("config.json"),
    )
    .unwrap();
    let src = ParticleSource::open(st.sim.join("particles.mrcs"), None).unwrap();
    let imgs = src.load_all().unwrap();
    let poses = Poses::load(st.sim.join("pose.pkl")).unwrap();
    let trans: Vec<[f32; 2]> = poses
        .trans
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| [t[0] * 16.0, t[1] * 16.0])
        .collect();
    assert!(trans.iter().any(|t| t[0].abs() > 0.5), "shifts are on");
    let ctf = CtfParams::load(&ctf_path).unwrap();
    let e = probe
        .encode_images(
            &imgs,
            ImageOpts {
                ctf: Some(&ctf.rows),
                trans_px: Some(&trans),
            },
        )
        .unwrap();
    let zs = read_pkl_all(run_dir.join("z.1.pkl")).unwrap();
    let (mu, lv) = (
        zs[0].as_array().unwrap().to_f64(),
        zs[1].as_array().unwrap().to_f64(),
    );
    assert_eq!(e.mu.len(), 64);
    let maxdiff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    assert!(
        maxdiff(&e.mu, &mu) < 1e-5,
        "μ differs by {}",
        maxdiff(&e.mu, &mu)
    );
    assert!(maxdiff(&e.logvar, &lv) < 1e-5, "log σ² differs");
    let psi = read_pkl(run_dir.join("pose_pred.1.pkl"))
        .unwrap()
        .as_array()
        .unwrap()
        .to_f64();
    let dpsi = e
        .psi
        .as_ref()
        .unwrap()
        .iter()
        .zip(&psi)
        .map(|(a, b)| cryofield::disentangle::mcc::wrap_angle(a - b).abs())
        .fold(0.0, f64::max);
    assert!(dpsi < 1e-4, "ψ̂ differs by {dpsi}");
    // without the shifts the encoding differs: the recentring is not a no-op here
    let e0 = probe
        .encode_images(
            &imgs,
            ImageOpts {
                ctf: Some(&ctf.rows),
                trans_px: None,
            },
        )
        .unwrap();
    assert!(maxdiff(&e0.mu, &mu) > 1e-4);

    // decode + re-encode through the probe = Eq. 2's tape (intervention_loss, fused decoder vs the
    // posed one) at the identity permutation: mean ‖f_z(g(μ, R̂)) − μ‖² and the pose term
    {
        use cryofield::autodiff::Tape;
        use cryofield::disentangle::intervention::{intervention_loss, PoseKind};
        let m = &probe.model;
        let mu32: Vec<f32> = e.mu.iter().map(|&v| v as f32).collect();
        let pp = e.pose_params.as_ref().unwrap();
        let pp32: Vec<f32> = pp.iter().map(|&v| v as f32).collect();
        let perm: Vec<u32> = (0..32).collect();
        let mut t = Tape::inference(&m.be, &m.store);
        let iv = intervention_loss(
            &mut t,
            m.encoder.as_ref().unwrap(),
            &m.decoder,
            probe.slice_coords(),
            &mu32,
            &pp32,
            &perm,
            PoseKind::InPlane,
        )
        .unwrap();
        let z_term = t.to_vec(iv.z_term).unwrap()[0] as f64;
        let pose_term = t.to_vec(iv.pose_term).unwrap()[0] as f64;
        let y = probe.decode(&e.mu, e.rots.as_ref().unwrap()).unwrap();
        assert_eq!(y.len(), 32 * probe.n_slice());
        let back = probe.encode_inputs(&y).unwrap();
        let zt = back
            .mu
            .iter()
            .zip(&e.mu)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            / 32.0;
        let pt = back
            .psi
            .as_ref()
            .unwrap()
            .iter()
            .zip(e.psi.as_ref().unwrap())
            .map(|(a, b)| 2.0 - 2.0 * (a - b).cos())
            .sum::<f64>()
            / 32.0;
        assert!(z_term > 0.0, "a one-epoch model does not re-encode exactly");
        assert!(
            (zt - z_term).abs() < 1e-4 * z_term.max(1e-3),
            "z term {zt} vs tape {z_term}"
        );
        assert!(
            (pt - pose_term).abs() < 1e-4 * pose_term.max(1e-2),
            "pose term {pt} vs {pose_term}"
        );
    }

    // World renders simulate's images
    let world = World::open(&st.ph).unwrap();
    assert_eq!(
        (world.n_states(), world.n_factors(), world.grid.g),
        (9, 2, 3)
    );
    let labels = read_pkl(st.sim.join("labels.pkl"))
        .unwrap()
        .as_array()
        .unwrap()
        .to_f64();
    let params: Vec<ImageParams> = (0..32)
        .map(|i| ImageParams {
            state: labels[i] as usize,
            rot: poses.rots[i],
            trans_px: trans[i],
            ctf: Some(ctf.rows[i]),
        })
        .collect();
    let r = world.render(&params).unwrap();
    let scale = imgs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = r
        .iter()
        .zip(&imgs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-5 * scale,
        "render differs by {err} (scale {scale})"
    );
    // the 90° turn of an image with shift and CTF is the image at Rz(90°)·R with the turned shift and
    // CTF angle (what `disentangle rot90` encodes x′ with), inside the circle of radius D/2 − 1
    {
        use cryofield::disentangle::equivariance::{turned_ctf, turned_shift};
        use cryofield::disentangle::rot90::{inside_circle, rot90};
        use cryofield::geometry::rotation::matmul3;
        let rz90 = cryofield::disentangle::probe::rz(std::f64::consts::FRAC_PI_2);
        let turned: Vec<ImageParams> = params
            .iter()
            .map(|p| ImageParams {
                state: p.state,
                rot: matmul3(&rz90, &p.rot.map(f64::from)).map(|v| v as f32),
                trans_px: turned_shift(p.trans_px, 1),
                ctf: p.ctf.map(|c| turned_ctf(&c, 1)),
            })
            .collect();
        let rt = world.render(&turned).unwrap();
        let inside = inside_circle(16, 7.0);
        let mut worst = 0f32;
        for (a, b) in r.chunks_exact(256).zip(rt.chunks_exact(256)) {
            let ra = rot90(a, 16, 1).unwrap();
            for k in (0..256).filter(|&k| inside[k]) {
                worst = worst.max((ra[k] - b[k]).abs());
            }
        }
        assert!(
            worst <= 2e-3 * scale,
            "turned image differs by {worst} (scale {scale})"
        );
        eprintln!("turned render: max diff {worst} of scale {scale}");
    }
    // noise: reproducible from the seed, σ as asked
    let a1 = world.images(&params, 0.5, 7).unwrap();
    let a2 = world.images(&params, 0.5, 7).unwrap();
    assert_eq!(a1, a2);
    let resid: Vec<f32> = a1.iter().zip(&r).map(|(a, b)| a - b).collect();
    let sd = (cryofield::simulate::dataset::variance(&resid)).sqrt();
    assert!((sd - 0.5).abs() < 0.03, "noise sd {sd}");
    // factors → representation in one call: the noiseless encoding of the same images equals the probe's
    let enc = world.encode(&probe, &params, 0.0, 0).unwrap();
    assert!(maxdiff(&enc.mu, &e.mu) < 1e-4);
    // by grid levels and angles: state s of the 3×3 grid is levels (s / 3, s % 3); the same images
    // without shift and CTF
    let angles = read_pkl(st.sim.join("pose_angle.pkl"))
        .unwrap()
        .as_array()
        .unwrap()
        .to_f64();
    let levels: Vec<Vec<usize>> = labels
        .iter()
        .map(|&l| vec![l as usize / 3, l as usize % 3])
        .collect();
    let by_factors = world
        .encode_factors(&probe, &levels, &angles, 0.0, 0)
        .unwrap();
    let plain: Vec<ImageParams> = params
        .iter()
        .map(|p| ImageParams {
            trans_px: [0.0, 0.0],
            ctf: None,
            ..p.clone()
        })
        .collect();
    let direct = world.encode(&probe, &plain, 0.0, 0).unwrap();
    assert!(maxdiff(&by_factors.mu, &direct.mu) < 1e-6);
    assert!(
        maxdiff(
            by_factors.psi.as_ref().unwrap(),
            direct.psi.as_ref().unwrap()
        ) < 1e-6
    );
    assert!(world
        .encode_factors(&probe, &[vec![3, 0]], &[0.0], 0.0, 0)
        .is_err());
}

/// interventions on a tiny PoseVAE (learned and truth mode, held-out set) and a known-pose VAE: the JSON
/// has the six metrics, finite and ≥ 0, LVC = LCC in learned mode, the held-out quantities; a known-pose
/// model's pose metrics are null with a note; errors name the problem.
#[test]
fn interventions_json() {
    let dir = tempfile::tempdir().unwrap();
    let st = setup(dir.path(), 48, &[]);
    let pv = dir.path().join("pv");
    let kv = dir.path().join("kv");
    train(&st, &pv, &POSEVAE);
    train(&st, &kv, &[]);
    let (parts, poses, ph) = (
        s(&st.sim.join("particles.mrcs")),
        s(&st.sim.join("pose.pkl")),
        s(&st.ph),
    );
    let iv = |rd: &Path, out: &str, extra: &[&str]| -> (bool, String, Value) {
        let (w, c, o) = (
            s(&rd.join("weights.1.safetensors")),
            s(&rd.join("config.json")),
            dir.path().join(out),
        );
        let os = s(&o);
        let mut a = vec![
            "disentangle",
            "interventions",
            &w,
            "-c",
            &c,
            "-n",
            "64",
            "-o",
            &os,
        ];
        a.extend_from_slice(extra);
        let (good, _, err) = run(&a);
        let j = if good { read_json(&o) } else { Value::Null };
        (good, err, j)
    };
    let nonneg = |v: &Value, what: &str| {
        let x = v.as_f64().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(x.is_finite() && x >= 0.0, "{what}: {x}");
    };
    // learned mode, latents from the phantom, noise at SNR 1
    let (good, err, j) = iv(&pv, "l.json", &["--phantom", &ph, "--snr", "1"]);
    assert!(good, "{err}");
    let m = &j["metrics"];
    for k in ["LVC", "LCC", "LCI"] {
        nonneg(&m[k]["raw"], k);
        nonneg(&m[k]["normalised"], k);
    }
    for k in ["LVI", "LPC", "LPI"] {
        nonneg(&m[k], k);
    }
    assert_eq!(m["LVC"], m["LCC"]);
    assert_eq!(m["LVI"], m["LPC"]);
    assert!(j["sigma"].as_f64().unwrap() > 0.0);
    assert_eq!(j["pose_metrics"], "present");
    // truth mode with the held-out set
    let (good, err, j) = iv(
        &pv,
        "t.json",
        &[
            "--phantom",
            &ph,
            "--mode",
            "truth",
            "--particles",
            &parts,
            "--poses-true",
            &poses,
        ],
    );
    assert!(good, "{err}");
    let m = &j["metrics"];
    for k in ["LVC", "LCC", "LCI"] {
        nonneg(&m[k]["raw"], k);
    }
    for k in ["LVI", "LPC", "LPI"] {
        nonneg(&m[k], k);
    }
    assert!(j["truth"]["pose_alignment"]["sign"].as_f64().unwrap().abs() == 1.0);
    let h = &j["held_out"];
    for k in ["eq2", "eq2_z", "eq2_pose", "recon_mse", "kl"] {
        nonneg(&h[k], k);
    }
    let eq2 = h["eq2"].as_f64().unwrap();
    let parts_sum = h["eq2_z"].as_f64().unwrap() + h["eq2_pose"].as_f64().unwrap();
    assert!((eq2 - parts_sum).abs() < 1e-12 * eq2.max(1.0));
    assert_eq!(h["n"], 48);
    // known-pose model: no pose metrics, z-only Eq. 2
    let (good, err, j) = iv(
        &kv,
        "k.json",
        &[
            "--phantom",
            &ph,
            "--mode",
            "truth",
            "--particles",
            &parts,
            "--poses-true",
            &poses,
        ],
    );
    assert!(good, "{err}");
    for k in ["LVI", "LPC", "LPI"] {
        assert!(j["metrics"][k].is_null(), "{k}");
    }
    nonneg(&j["metrics"]["LCI"]["raw"], "LCI");
    assert!(j["pose_metrics"].as_str().unwrap().starts_with("absent"));
    assert!(j["held_out"]["eq2_pose"].is_null());
    nonneg(&j["held_out"]["eq2"], "eq2");
    // truth mode at the views of `simulate --pose-dist inplane-y` (Rz(ψ)·Rx(90°)): other images than
    // the views along z, so other metrics at the same seed; --snr's σ measured on those views
    let truth = ["--phantom", &ph, "--mode", "truth", "--snr", "1"];
    let (good, err, jz) = iv(&pv, "tz.json", &truth);
    assert!(good, "{err}");
    let (good, err, jy) = iv(
        &pv,
        "ty.json",
        &[&truth[..], &["--pose-dist", "inplane-y"]].concat(),
    );
    assert!(good, "{err}");
    nonneg(&jy["metrics"]["LCC"]["raw"], "LCC");
    assert_ne!(jz["metrics"]["LCC"], jy["metrics"]["LCC"]);
    assert_ne!(jz["sigma"], jy["sigma"]);
    // an SO(3) head in truth mode: LPC after a global-rotation alignment
    let sv = dir.path().join("sv");
    train(&st, &sv, &[&POSEVAE[..], &["--pose-head", "so3"]].concat());
    let (good, err, j) = iv(&sv, "s.json", &["--phantom", &ph, "--mode", "truth"]);
    assert!(good, "{err}");
    assert_eq!(j["pose_space"], "so3");
    for k in ["LVI", "LPC", "LPI"] {
        let v = j["metrics"][k].as_f64().unwrap();
        // ‖R − R̂‖²_F ≤ 8 for rotations
        assert!((0.0..=8.0 + 1e-9).contains(&v), "{k}: {v}");
    }
    assert_eq!(
        j["truth"]["so3_alignment"]["q"].as_array().unwrap().len(),
        9
    );
    // errors
    let (good, err, _) = iv(
        &pv,
        "e1.json",
        &[
            "--mode",
            "truth",
            "--particles",
            &parts,
            "--poses-true",
            &poses,
        ],
    );
    assert!(!good && err.contains("--phantom"), "{err}");
    let (good, err, _) = iv(&pv, "e2.json", &["--phantom", &ph, "--particles", &parts]);
    assert!(!good && err.contains("--poses-true"), "{err}");
    assert!(!dir.path().join("e1.json").exists());
    // an encoder that does not read the decoder's pixels cannot re-encode decoded slices
    let km = dir.path().join("km");
    train(&st, &km, &["--enc-mask", "4"]);
    let (good, err, _) = iv(&km, "e3.json", &["--phantom", &ph]);
    assert!(!good && err.contains("encoder mask"), "{err}");
}

/// rot90 on tiny PoseVAEs (in-plane and SO(3) heads) and a known-pose VAE: finite, non-negative Δz_rot;
/// the in-plane head's equivariance errors and the SO(3) head's turn error are angles in [0°, 180°]; the
/// known-pose model has none.
#[test]
fn rot90_json() {
    let dir = tempfile::tempdir().unwrap();
    let st = setup(dir.path(), 32, &[]);
    let pv = dir.path().join("pv");
    let kv = dir.path().join("kv");
    let sv = dir.path().join("sv");
    train(&st, &pv, &POSEVAE);
    train(&st, &kv, &[]);
    train(&st, &sv, &[&POSEVAE[..], &["--pose-head", "so3"]].concat());
    let parts = s(&st.sim.join("particles.mrcs"));
    let poses = s(&st.sim.join("pose.pkl"));
    for (run_dir, head) in [(&pv, "inplane"), (&kv, "known"), (&sv, "so3")] {
        let o = dir.path().join(format!("r_{head}.json"));
        let out = ok(&[
            "disentangle",
            "rot90",
            &parts,
            &s(&run_dir.join("weights.1.safetensors")),
            "-c",
            &s(&run_dir.join("config.json")),
            "--poses",
            &poses,
            "-n",
            "20",
            "-o",
            &s(&o),
        ]);
        assert!(out.contains("Δz_rot"), "{out}");
        let j = read_json(&o);
        assert_eq!(j["n"], 20);
        for k in ["delta_z_rot", "mean_sq_shift", "mean_sq_pair"] {
            let v = j[k].as_f64().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{k}: {v}");
        }
        assert!(j["mean_sq_pair"].as_f64().unwrap() > 0.0);
        if head == "inplane" {
            for w in ["best", "other"] {
                for q in ["median_deg", "mean_deg"] {
                    let v = j["equivariance"][w][q].as_f64().unwrap();
                    assert!((0.0..=180.0).contains(&v), "{w} {q}: {v}");
                }
            }
            let (b, o) = (
                j["equivariance"]["best"]["median_deg"].as_f64().unwrap(),
                j["equivariance"]["other"]["median_deg"].as_f64().unwrap(),
            );
            assert!(b <= o);
            assert!(j["so3_turn_error"].is_null());
        } else {
            assert!(j["equivariance"].is_null());
        }
        if head == "so3" {
            for q in ["median_deg", "mean_deg"] {
                let v = j["so3_turn_error"][q].as_f64().unwrap();
                assert!((0.0..=180.0).contains(&v), "so3 {q}: {v}");
            }
        }
        if head == "known" {
            assert!(j["so3_turn_error"].is_null());
        }
    }
    // k = 4 is the identity: refused
    let (good, _, err) = run(&[
        "disentangle",
        "rot90",
        &parts,
        &s(&pv.join("weights.1.safetensors")),
        "-c",
        &s(&pv.join("config.json")),
        "--k",
        "4",
        "-o",
        &s(&dir.path().join("x.json")),
    ]);
    assert!(!good && err.contains("identity"), "{err}");
}

/// plots from saved outputs: four PNGs (angle, z by t1, t2, ψ*) and plots.json listing them; a truth
/// file with the wrong number of rows is an error naming it.
#[test]
fn plots_write_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let st = setup(dir.path(), 24, &[]);
    let pv = dir.path().join("pv");
    train(&st, &pv, &POSEVAE);
    let o = dir.path().join("plots");
    ok(&[
        "disentangle",
        "plots",
        "--z",
        &s(&pv.join("z.1.pkl")),
        "--truth",
        &s(&st.sim.join("truth.pkl")),
        "--pose-pred",
        &s(&pv.join("pose_pred.1.pkl")),
        "--pose-angle",
        &s(&st.sim.join("pose_angle.pkl")),
        "-o",
        &s(&o),
    ]);
    let j = read_json(&o.join("plots.json"));
    let files: Vec<&str> = j["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["angle.png", "z_t1.png", "z_t2.png", "z_psi.png"]);
    for f in files {
        let b = std::fs::read(o.join(f)).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{f}");
    }
    let ce = j["plots"][0]["circular_error"].as_f64().unwrap();
    assert!((0.0..=2.0).contains(&ce));
    // the truth of another run (pose_angle has 24 rows, the latents too, but labels are (24,) ints;
    // use the pose predictions' file as a (24,) "truth" of the wrong length by selecting z of 2 rows)
    let bad = dir.path().join("bad_truth.pkl");
    cryofield::io::pkl::write_pkl(
        &bad,
        &cryofield::io::pkl::PyValue::Array(
            cryofield::io::array::NdArray::new(
                vec![5, 2],
                cryofield::io::array::ArrayData::F64(vec![0.0; 10]),
            )
            .unwrap(),
        ),
    )
    .unwrap();
    let (good, _, err) = run(&[
        "disentangle",
        "plots",
        "--z",
        &s(&pv.join("z.1.pkl")),
        "--truth",
        &s(&bad),
        "-o",
        &s(&dir.path().join("p2")),
    ]);
    assert!(
        !good && err.contains("bad_truth.pkl") && err.contains("[5, 2]"),
        "{err}"
    );
}
