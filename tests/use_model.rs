//! Using a trained model: `eval-vol`, `eval-images`, `analyze`, `eval-accuracy`, on a tiny
//! `train-vae` run (zdim 1, D = 16, a 2-state discrete phantom) trained once and shared.

use cryofield::fourier::fsc::fsc_curve;
use cryofield::io::mrc::MrcFile;
use cryofield::io::pkl::read_pkl_all;
use cryofield::train::{train, TrainConfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const D: usize = 16;
const N: usize = 240;
const EPOCHS: usize = 8;

fn cli(args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let mut v = vec!["cryofield"];
    v.extend_from_slice(args);
    let c = cryofield::cli::Cli::try_parse_from(v)?;
    cryofield::cli::run(c)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn config(dir: &Path, out: &str, epochs: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        particles: dir.join("sim/particles.mrcs"),
        poses: dir.join("sim/pose.pkl"),
        ctf: None,
        outdir: dir.join(out),
        ind: None,
        datadir: None,
        zdim: Some(1),
        num_epochs: epochs,
        batch_size: 8,
        lr,
        wd: 0.0,
        beta: None,
        beta_control: None,
        enc_layers: 2,
        enc_dim: 32,
        encode_mode: "resid".into(),
        enc_mask: None,
        dec_layers: 2,
        dec_dim: 64,
        pe_type: "gaussian".into(),
        pe_dim: None,
        feat_sigma: 0.5,
        domain: "fourier".into(),
        activation: "relu".into(),
        // the default of train-vae: the decoder learns −density of simulate's projections
        invert_data: true,
        window: true,
        window_r: 0.85,
        norm: None,
        lazy: false,
        seed: 11,
        amp: false,
        twin: None,
        learned_pose: None,
        slow: None,
        known_intervention: None,
        refine_poses: None,
        autodecoder: false,
        shuffle_seed: None,
        checkpoint: 1,
        load: None,
        tilt: None,
        tilt_deg: 45.0,
    }
}

/// The shared fixture: phantom `ph/`, dataset `sim/`, trained run `vae/` (EPOCHS epochs) and an
/// untrained run `rand/` (lr 0: its weights are the initialization).
fn fixture() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ph = dir.join("ph");
        let sim = dir.join("sim");
        cli(&[
            "phantom",
            "--kind",
            "discrete",
            "--n-states",
            "2",
            "-D",
            "16",
            "-o",
            s(&ph),
        ])
        .unwrap();
        let n = N.to_string();
        cli(&[
            "simulate",
            s(&ph.join("vols.txt")),
            "-N",
            &n,
            "-o",
            s(&sim),
            "--seed",
            "3",
        ])
        .unwrap();
        train(&config(dir, "vae", EPOCHS, 2e-3), false).unwrap();
        train(&config(dir, "rand", 1, 0.0), false).unwrap();
        tmp
    })
    .path()
}

fn read_volume(path: &Path) -> (Vec<f32>, usize) {
    let f = MrcFile::open(path).unwrap();
    let v = f.read_all().unwrap();
    let d = f.image_len().isqrt();
    assert_eq!(v.len(), d * d * d, "{} is not a cube", path.display());
    (v, d)
}

fn z_mu(path: &Path) -> Vec<f32> {
    let vs = read_pkl_all(path).unwrap();
    vs[0].as_array().unwrap().to_f32()
}

fn labels(dir: &Path) -> Vec<usize> {
    let v = read_pkl_all(dir.join("sim/labels.pkl")).unwrap();
    v[0].as_array()
        .unwrap()
        .to_f32()
        .iter()
        .map(|&x| x as usize)
        .collect()
}

fn last(dir: &Path, what: &str) -> PathBuf {
    let e = EPOCHS; // outputs are numbered by the 1-based epoch
    match what {
        "w" => dir.join(format!("vae/weights.{e}.safetensors")),
        "z" => dir.join(format!("vae/z.{e}.pkl")),
        _ => dir.join("vae/config.json"),
    }
}

/// The mean z_mu of the images of `state`.
fn state_z(dir: &Path, state: usize) -> f32 {
    let z = z_mu(&last(dir, "z"));
    let l = labels(dir);
    let sel: Vec<f32> = z
        .iter()
        .zip(&l)
        .filter(|(_, &s)| s == state)
        .map(|(z, _)| *z)
        .collect();
    sel.iter().sum::<f32>() / sel.len() as f32
}

#[test]
#[allow(clippy::needless_range_loop)]
fn eval_vol_single_z_matches_truth_and_traversal_writes_volumes() {
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (w, c) = (last(dir, "w"), last(dir, "c"));
    let mut low = [[0.0f64; 2]; 2];
    for state in 0..2 {
        let z = format!("{}", state_z(dir, state));
        let out = tmp.path().join(format!("v{state}.mrc"));
        // --invert: the model was trained on inverted data
        cli(&[
            "eval-vol",
            s(&w),
            "-c",
            s(&c),
            "-z",
            &z,
            "--invert",
            "-o",
            s(&out),
        ])
        .unwrap();
        let (vol, d) = read_volume(&out);
        assert_eq!(d, D);
        for truth_state in 0..2 {
            let (t, _) = read_volume(&dir.join(format!("ph/vol_{truth_state:03}.mrc")));
            let f = fsc_curve(&vol, &t, D, None).unwrap();
            low[state][truth_state] = (f.fsc[1] + f.fsc[2] + f.fsc[3]) / 3.0;
        }
        // without --invert the volume is the negation
        let out2 = tmp.path().join("neg.mrc");
        cli(&["eval-vol", s(&w), "-c", s(&c), "-z", &z, "-o", s(&out2)]).unwrap();
        let (neg, _) = read_volume(&out2);
        assert!(vol.iter().zip(&neg).all(|(a, b)| (a + b).abs() < 1e-5));
    }
    println!("low-frequency FSC [decoded state][truth state]: {low:?}");
    for st in 0..2 {
        assert!(
            low[st][st] > 0.5,
            "state {st}: low-frequency FSC {:?}",
            low[st]
        );
    }

    let trav = tmp.path().join("trav");
    let (a, b) = (
        format!("{}", state_z(dir, 0)),
        format!("{}", state_z(dir, 1)),
    );
    cli(&[
        "eval-vol",
        s(&w),
        "-c",
        s(&c),
        "--z-start",
        &a,
        "--z-end",
        &b,
        "-n",
        "3",
        "-o",
        s(&trav),
    ])
    .unwrap();
    for i in 1..=3 {
        assert_eq!(read_volume(&trav.join(format!("vol_{i:03}.mrc"))).1, D);
    }
    assert!(!trav.join("vol_000.mrc").exists() && !trav.join("vol_004.mrc").exists());

    // -d 8: a smaller box, flip reverses the slowest axis
    let small = tmp.path().join("small.mrc");
    cli(&[
        "eval-vol",
        s(&w),
        "-c",
        s(&c),
        "-z",
        &a,
        "-d",
        "8",
        "-o",
        s(&small),
    ])
    .unwrap();
    let (sv, sd) = read_volume(&small);
    assert_eq!(sd, 8);
    assert!(sv.iter().all(|v| v.is_finite()));
    let flip = tmp.path().join("flip.mrc");
    cli(&[
        "eval-vol",
        s(&w),
        "-c",
        s(&c),
        "-z",
        &a,
        "-d",
        "8",
        "--flip",
        "-o",
        s(&flip),
    ])
    .unwrap();
    let (fv, _) = read_volume(&flip);
    assert_eq!(&fv[..64], &sv[7 * 64..]);
}

#[test]
fn eval_images_reproduces_training_latents() {
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (zo, lo) = (tmp.path().join("z.pkl"), tmp.path().join("losses.pkl"));
    cli(&[
        "eval-images",
        s(&dir.join("sim/particles.mrcs")),
        s(&last(dir, "w")),
        "-c",
        s(&last(dir, "c")),
        "--poses",
        s(&dir.join("sim/pose.pkl")),
        "-o",
        s(&zo),
        "--out-losses",
        s(&lo),
    ])
    .unwrap();
    let vs = read_pkl_all(&zo).unwrap();
    assert_eq!(vs.len(), 2);
    for v in &vs {
        assert_eq!(v.as_array().unwrap().shape, vec![N, 1]);
    }
    let got = vs[0].as_array().unwrap().to_f32();
    let want = z_mu(&last(dir, "z"));
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-4, "eval-images z differs from training z by {max}");
    let l = read_pkl_all(&lo).unwrap();
    let la = l[0].as_array().unwrap();
    assert_eq!(la.shape, vec![N, 3]);
    assert!(la.to_f32().iter().all(|v| v.is_finite() && *v >= 0.0));
}

#[test]
fn analyze_writes_folders_and_volumes() {
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("an");
    let e = EPOCHS.to_string();
    cli(&[
        "analyze",
        s(&dir.join("vae")),
        &e,
        "--n-per-pc",
        "4",
        "--skip-umap",
        "-o",
        s(&out),
    ])
    .unwrap();
    assert!(out.join("z_values.txt").exists());
    assert!(out.join("z_hist.png").exists());
    // numbered from 1, as cryoDRGN 4.3's
    for i in 1..=4 {
        assert_eq!(read_volume(&out.join(format!("vol_{i:03}.mrc"))).1, D);
    }
    assert!(!out.join("vol_000.mrc").exists() && !out.join("vol_005.mrc").exists());
    // --skip-vol writes the analysis only
    let out2 = tmp.path().join("an2");
    cli(&[
        "analyze",
        s(&dir.join("vae")),
        &e,
        "--skip-vol",
        "-o",
        s(&out2),
    ])
    .unwrap();
    assert!(out2.join("z_values.txt").exists());
    assert!(!out2.join("vol_001.mrc").exists());
    // a missing epoch names the file
    let err = cli(&["analyze", s(&dir.join("vae")), "99"]).unwrap_err();
    assert!(format!("{err:#}").contains("z.99.pkl"), "{err:#}");
}

#[test]
fn eval_accuracy_is_better_for_the_trained_model() {
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let run = |w: &Path, c: &Path, z: &Path, o: &Path| {
        let args = cryofield::cli::eval_accuracy::Args {
            weights: Some(w.into()),
            config: Some(c.into()),
            zfile: z.into(),
            vols: dir.join("ph/vols.txt"),
            labels: dir.join("sim/labels.pkl"),
            n: 40,
            seed: 1,
            apix: None,
            no_sign_fix: false,
            o: Some(o.into()),
            truth: None,
            decoded: None,
            negate: false,
            write_z: None,
        };
        let acc = cryofield::cli::eval_accuracy::evaluate(&args).unwrap();
        cryofield::cli::eval_accuracy::run(args).unwrap();
        acc
    };
    let trained = run(
        &last(dir, "w"),
        &last(dir, "c"),
        &last(dir, "z"),
        &tmp.path().join("t.txt"),
    );
    let untrained = run(
        &dir.join("rand/weights.1.safetensors"),
        &dir.join("rand/config.json"),
        &dir.join("rand/z.1.pkl"),
        &tmp.path().join("u.txt"),
    );
    println!(
        "trained {:.2} ± {:.2} Å (median {:.2}); untrained {:.2} ± {:.2} Å",
        trained.mean, trained.std, trained.median, untrained.mean, untrained.std
    );
    assert!(trained.angstrom, "Apix comes from the phantom's header");
    assert_eq!(trained.rows.len(), 40);
    assert!(trained.mean.is_finite() && trained.median.is_finite());
    // best possible: 2 pixels (phantom Apix 3 Å)
    assert!(trained.rows.iter().all(|r| r.2 >= 6.0 - 1e-9));
    assert!(
        trained.mean < untrained.mean - 3.0,
        "trained {} Å not better than untrained {} Å",
        trained.mean,
        untrained.mean
    );
    let table = std::fs::read_to_string(tmp.path().join("t.txt")).unwrap();
    assert_eq!(table.lines().count(), 41);
}

#[test]
fn eval_accuracy_scores_volumes_decoded_elsewhere_like_the_model() {
    // the path used to score the reference's volumes: write the chosen images' latents, decode
    // them with eval-vol --zfile (any program would do), score the folder with --decoded
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (w, c, z) = (last(dir, "w"), last(dir, "c"), last(dir, "z"));
    let chosen = tmp.path().join("chosen.txt");
    let o1 = tmp.path().join("model.txt");
    let (vols_txt, labels) = (dir.join("ph/vols.txt"), dir.join("sim/labels.pkl"));
    let base = [
        "eval-accuracy",
        "--zfile",
        s(&z),
        "--vols",
        s(&vols_txt),
        "--labels",
        s(&labels),
        "-n",
        "12",
        "--seed",
        "3",
    ];
    let mut a0 = base.to_vec();
    a0.extend(["--write-z", s(&chosen)]);
    cli(&a0).unwrap();
    let mut a1 = base.to_vec();
    a1.extend([s(&w), "-c", s(&c), "-o", s(&o1)]);
    cli(&a1).unwrap();
    let vols = tmp.path().join("vols");
    cli(&[
        "eval-vol",
        s(&w),
        "-c",
        s(&c),
        "--zfile",
        s(&chosen),
        "-o",
        s(&vols),
    ])
    .unwrap();
    let o2 = tmp.path().join("decoded.txt");
    let mut a2 = base.to_vec();
    // the fixture's run inverted the data: its volumes are −density
    a2.extend(["--decoded", s(&vols), "--negate", "-o", s(&o2)]);
    cli(&a2).unwrap();
    let t1 = std::fs::read_to_string(&o1).unwrap();
    assert_eq!(t1.lines().count(), 13);
    assert_eq!(t1, std::fs::read_to_string(&o2).unwrap());
    // eval-vol numbers the volumes from 1 (as cryoDRGN 4.3); a folder numbered from 0 (older
    // runs) scores the same
    let vols1 = tmp.path().join("vols1");
    std::fs::create_dir(&vols1).unwrap();
    for k in 0..12 {
        std::fs::copy(
            vols.join(format!("vol_{:03}.mrc", k + 1)),
            vols1.join(format!("vol_{k:03}.mrc")),
        )
        .unwrap();
    }
    let o3 = tmp.path().join("decoded1.txt");
    let mut a4 = base.to_vec();
    a4.extend(["--decoded", s(&vols1), "--negate", "-o", s(&o3)]);
    cli(&a4).unwrap();
    assert_eq!(t1, std::fs::read_to_string(&o3).unwrap());
    // weights together with --decoded is refused
    let mut a3 = base.to_vec();
    a3.extend([s(&w), "-c", s(&c), "--decoded", s(&vols)]);
    assert!(cli(&a3).is_err());
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let w = last(dir, "w");
    // weights/config mismatch: a config with another decoder width
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(last(dir, "c")).unwrap()).unwrap();
    cfg["config"]["dec_dim"] = serde_json::json!(32);
    let bad_cfg = tmp.path().join("other.json");
    std::fs::write(&bad_cfg, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = tmp.path().join("v.mrc");
    let err = cli(&[
        "eval-vol",
        s(&w),
        "-c",
        s(&bad_cfg),
        "-z",
        "0",
        "-o",
        s(&out),
    ])
    .unwrap_err();
    let m = format!("{err:#}");
    assert!(m.contains("weights.") && m.contains("other.json"), "{m}");
    assert!(!out.exists());
    // not a config at all
    let err = cli(&["eval-vol", s(&w), "-c", s(&w), "-z", "0", "-o", s(&out)]).unwrap_err();
    assert!(format!("{err:#}").contains("config"), "{err:#}");
    // wrong number of z values
    let err = cli(&[
        "eval-vol",
        s(&w),
        "-c",
        s(&last(dir, "c")),
        "-z",
        "0",
        "1",
        "-o",
        s(&out),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("zdim 1"), "{err:#}");
    // zfile with the wrong zdim
    let zf = tmp.path().join("z2.txt");
    std::fs::write(&zf, "0 1\n1 0\n").unwrap();
    let err = cli(&[
        "eval-vol",
        s(&w),
        "-c",
        s(&last(dir, "c")),
        "--zfile",
        s(&zf),
        "-o",
        s(&tmp.path().join("d")),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("z2.txt"), "{err:#}");
    let err = cli(&[
        "eval-accuracy",
        s(&w),
        "-c",
        s(&last(dir, "c")),
        "--zfile",
        s(&zf),
        "--vols",
        s(&dir.join("ph/vols.txt")),
        "--labels",
        s(&dir.join("sim/labels.pkl")),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("z2.txt"), "{err:#}");
    // eval-images with a stack of another size
    let err = cli(&[
        "eval-images",
        s(&dir.join("ph/vol_000.mrc")),
        s(&w),
        "-c",
        s(&last(dir, "c")),
        "--poses",
        s(&dir.join("sim/pose.pkl")),
        "-o",
        s(&tmp.path().join("z.pkl")),
    ])
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("pose.pkl") || format!("{err:#}").contains("vol_000"),
        "{err:#}"
    );
}
