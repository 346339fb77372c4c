//! Opening runs trained by cryoDRGN 4.3.1 (tests/fixtures/cryodrgn, made by
//! tools/make_cryodrgn_fixtures.sh): `eval-vol` on its `weights.pkl` + `config.yaml` gives the
//! reference's own `eval_vol` volume, `analyze` runs on the run's folder, `info` lists the state
//! dict, and a checkpoint whose pickle names a foreign global is refused by name.

use cryofield::io::mrc::MrcFile;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cryodrgn")
}

fn cli(args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let mut v = vec!["cryofield"];
    v.extend_from_slice(args);
    cryofield::cli::run(cryofield::cli::Cli::try_parse_from(v)?)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn volume(p: &Path) -> Vec<f32> {
    MrcFile::open(p).unwrap().read_all().unwrap()
}

/// max |ours − ref| / max |ref|
fn rel_err(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale
}

#[test]
fn eval_vol_on_cryodrgn_models_matches_the_reference() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    // (run, z, reference volume): VAE with the defaults, VAE with hartley/geom_lowf/leaky_relu,
    // homogeneous train_nn
    let cases: [(&str, &[&str], &str); 3] = [
        ("vae", &["0.5", "-0.3"], "vae_vol.mrc"),
        ("vae2", &["-0.7"], "vae2_vol.mrc"),
        ("nn", &[], "nn_vol.mrc"),
    ];
    for (run, z, reference) in cases {
        let out = dir.path().join(format!("{run}.mrc"));
        let w = f.join(run).join("weights.pkl");
        let c = f.join(run).join("config.yaml");
        let mut args = vec!["eval-vol", s(&w), "-c", s(&c), "-o", s(&out)];
        if !z.is_empty() {
            args.push("-z");
            args.extend_from_slice(z);
        }
        cli(&args).unwrap();
        let e = rel_err(&volume(&out), &volume(&f.join(reference)));
        eprintln!("{run}: max relative error against cryoDRGN's eval_vol {e:.2e}");
        assert!(e <= 1e-4, "{run}: relative error {e}");
    }
    // a z of the wrong length is an error naming the weights
    let err = cli(&[
        "eval-vol",
        s(&f.join("vae/weights.pkl")),
        "-c",
        s(&f.join("vae/config.yaml")),
        "-z",
        "0.1",
        "-o",
        s(&dir.path().join("bad.mrc")),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("zdim 2") && err.contains("weights.pkl"),
        "{err}"
    );
}

#[test]
fn weights_that_do_not_match_the_config_are_refused() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    // vae2's weights under vae's config: shapes differ
    let err = cli(&[
        "eval-vol",
        s(&f.join("vae2/weights.pkl")),
        "-c",
        s(&f.join("vae/config.yaml")),
        "-z",
        "0",
        "0",
        "-o",
        s(&dir.path().join("x.mrc")),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("vae2/weights.pkl") && err.contains("shape"),
        "{err}"
    );
    // a config.yaml that is not a cryoDRGN run's
    let bad = dir.path().join("config.yaml");
    std::fs::write(&bad, "dataset_args:\n  norm: [0, 1]\n").unwrap();
    let err = cli(&[
        "eval-vol",
        s(&f.join("nn/weights.pkl")),
        "-c",
        s(&bad),
        "-o",
        s(&dir.path().join("x.mrc")),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("config.yaml") && err.contains("model_args"),
        "{err}"
    );
}

#[test]
fn a_pickle_naming_a_foreign_global_is_refused() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vol.mrc");
    let err = cli(&[
        "eval-vol",
        s(&f.join("evil.pkl")),
        "-c",
        s(&f.join("vae/config.yaml")),
        "-z",
        "0",
        "0",
        "-o",
        s(&out),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("forbidden global") && err.contains("system") && err.contains("evil.pkl"),
        "{err}"
    );
    assert!(!out.exists());
    // the reader alone refuses it too (by the global's name, before any tensor is built)
    let e = cryofield::io::torch::read_torch(f.join("evil.pkl")).unwrap_err();
    assert!(
        matches!(&e, cryofield::Error::ForbiddenGlobal { name, .. } if name == "system"),
        "{e}"
    );
    // a legacy (non-zip) or truncated file is a clear error
    let trunc = dir.path().join("trunc.pkl");
    let bytes = std::fs::read(f.join("nn/weights.pkl")).unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let e = cryofield::io::torch::read_torch(&trunc)
        .unwrap_err()
        .to_string();
    assert!(e.contains("trunc.pkl"), "{e}");
    let legacy = dir.path().join("legacy.pkl");
    std::fs::write(&legacy, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let e = cryofield::io::torch::read_torch(&legacy)
        .unwrap_err()
        .to_string();
    assert!(e.contains("legacy.pkl") && e.contains("zip"), "{e}");
}

#[test]
fn the_state_dict_reads_as_the_reference_wrote_it() {
    let v = cryofield::io::torch::read_torch(fixtures().join("vae/weights.pkl")).unwrap();
    assert!(matches!(
        v.get("epoch"),
        Some(cryofield::io::pkl::PyValue::Int(2))
    ));
    let sd = v.get("model_state_dict").unwrap();
    let w = sd
        .get("decoder.decoder.main.0.weight")
        .unwrap()
        .as_array()
        .unwrap();
    // pdim 16 × (3·2·pe_dim(8) + zdim 2) inputs
    assert_eq!(w.shape, vec![16, 50]);
    let rf = sd.get("decoder.rand_freqs").unwrap().as_array().unwrap();
    assert_eq!(rf.shape, vec![24, 3]);
    // the optimizer's state is there too: Adam moments per parameter index
    let st = v.get("optimizer_state_dict").unwrap().get("state").unwrap();
    let cryofield::io::pkl::PyValue::Dict(entries) = st else {
        panic!("state is not a dict")
    };
    assert!(!entries.is_empty());
}

#[test]
fn analyze_runs_on_a_cryodrgn_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("vae");
    std::fs::create_dir(&run).unwrap();
    for n in ["weights.pkl", "config.yaml", "z.pkl"] {
        std::fs::copy(fixtures().join("vae").join(n), run.join(n)).unwrap();
    }
    // epoch −1: the final z.pkl / weights.pkl into analyze/, as the reference's
    cli(&["analyze", s(&run), "-1", "--ksample", "4"]).unwrap();
    let a = run.join("analyze");
    for p in [
        "z_pca.png",
        "kmeans4/vol_001.mrc",
        "kmeans4/vol_004.mrc",
        "pc1/vol_010.mrc",
    ] {
        assert!(a.join(p).exists(), "{p} missing");
    }
    // the volumes are the model's: a k-means centre's volume equals eval-vol at that centre
    let centers = std::fs::read_to_string(a.join("kmeans4/centers.txt")).unwrap();
    let c0: Vec<&str> = centers.lines().next().unwrap().split_whitespace().collect();
    let out = dir.path().join("c0.mrc");
    let (w, c) = (run.join("weights.pkl"), run.join("config.yaml"));
    let mut args = vec!["eval-vol", s(&w), "-c", s(&c), "-o", s(&out), "-z"];
    args.extend(c0.iter().copied());
    cli(&args).unwrap();
    let e = rel_err(&volume(&a.join("kmeans4/vol_001.mrc")), &volume(&out));
    assert!(e < 1e-5, "{e}");
}

#[test]
fn gen_mask_matches_the_reference() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/golden/hand-vol.32.mrc");
    let cases: [(PathBuf, &[&str], &str); 2] = [
        (
            f.join("vae_vol.mrc"),
            &["--dilate", "3", "--dist", "4"],
            "mask_vae_vol.mrc",
        ),
        (shared, &["--Apix", "6"], "mask_hand32_apix6.mrc"),
    ];
    for (i, (vol, flags, reference)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("m{i}.mrc"));
        let png = dir.path().join(format!("m{i}.png"));
        let mut args = vec!["gen-mask", s(vol), s(&out), "-p", s(&png)];
        args.extend_from_slice(flags);
        cli(&args).unwrap();
        let (ours, theirs) = (volume(&out), volume(&f.join(reference)));
        let diff = ours
            .iter()
            .zip(&theirs)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // a soft edge and a partial mask: neither all ones nor all zeros
        let soft = theirs.iter().filter(|&&v| v > 0.0 && v < 1.0).count();
        let zero = theirs.iter().filter(|&&v| v == 0.0).count();
        assert!(
            soft > 100 && zero > 100,
            "{reference}: {soft} soft, {zero} zero"
        );
        assert!(diff <= 1e-6, "{reference}: max difference {diff}");
        assert!(png.exists());
    }
    // a threshold above the density is an error naming the file
    let err = cli(&[
        "gen-mask",
        s(&f.join("vae_vol.mrc")),
        s(&dir.path().join("x.mrc")),
        "--threshold",
        "1e9",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("vae_vol.mrc"), "{err:#}");
}

#[test]
fn train_vae_continues_a_cryodrgn_run() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let parts = dir.path().join("hand16.mrcs");
    cli(&[
        "downsample",
        s(&shared.join("hand.mrcs")),
        "-D",
        "16",
        "-o",
        s(&parts),
    ])
    .unwrap();
    let poses = shared.join("hand_rot_trans.pkl");
    let w = f.join("vae/weights.pkl");
    // --lr 0: one more epoch leaves the cryoDRGN weights as they were, so the continued model
    // decodes the reference's volume; the sizes, norm and seed come from its config.yaml
    let out = dir.path().join("cont");
    cli(&[
        "train-vae",
        s(&parts),
        "--poses",
        s(&poses),
        "--zdim",
        "2",
        "-n",
        "3",
        "--load",
        s(&w),
        "--lr",
        "0",
        "--no-analysis",
        "-o",
        s(&out),
    ])
    .unwrap();
    // cryoDRGN 4's weights.pkl holds 2 epochs: the continued run trained its third
    assert!(out.join("weights.3.safetensors").exists() && out.join("weights.3.pkl").exists());
    let vol = dir.path().join("cont.mrc");
    cli(&[
        "eval-vol",
        s(&out.join("weights.safetensors")),
        "-c",
        s(&out.join("config.json")),
        "-z",
        "0.5",
        "-0.3",
        "-o",
        s(&vol),
    ])
    .unwrap();
    let e = rel_err(&volume(&vol), &volume(&f.join("vae_vol.mrc")));
    assert!(e <= 1e-4, "continued model's volume off by {e}");
    // --load latest: the folder's last checkpoint (weights.3.safetensors), one more epoch
    cli(&[
        "train-vae",
        s(&parts),
        "--poses",
        s(&poses),
        "-n",
        "4",
        "--load",
        "latest",
        "--no-analysis",
        "-o",
        s(&out),
    ])
    .unwrap();
    assert!(out.join("weights.4.safetensors").exists());
    // a size that contradicts the run's config.yaml is an error naming the checkpoint
    let err = cli(&[
        "train-vae",
        s(&parts),
        "--poses",
        s(&poses),
        "--zdim",
        "3",
        "-n",
        "3",
        "--load",
        s(&w),
        "-o",
        s(&dir.path().join("bad")),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("weights.pkl") && err.contains("zdim"), "{err}");
    // without its config.yaml beside it, a cryoDRGN checkpoint cannot be continued
    let lone = dir.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    std::fs::copy(&w, lone.join("weights.pkl")).unwrap();
    let err = cli(&[
        "train-vae",
        s(&parts),
        "--poses",
        s(&poses),
        "--zdim",
        "2",
        "-n",
        "3",
        "--load",
        s(&lone.join("weights.pkl")),
        "-o",
        s(&dir.path().join("bad2")),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("config.yaml"), "{err}");
}

#[test]
fn our_runs_also_write_cryodrgn_files() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let parts = dir.path().join("hand16.mrcs");
    cli(&[
        "downsample",
        s(&shared.join("hand.mrcs")),
        "-D",
        "16",
        "-o",
        s(&parts),
    ])
    .unwrap();
    let poses = shared.join("hand_rot_trans.pkl");
    for (kind, extra) in [
        (
            "train-vae",
            &[
                "--zdim",
                "2",
                "--enc-layers",
                "1",
                "--enc-dim",
                "8",
                "--dec-layers",
                "1",
                "--dec-dim",
                "8",
            ][..],
        ),
        ("train-nn", &["--layers", "1", "--dim", "8"][..]),
    ] {
        let out = dir.path().join(kind);
        let mut args = vec![
            kind,
            s(&parts),
            "--poses",
            s(&poses),
            "-n",
            "2",
            "--seed",
            "3",
            "-o",
            s(&out),
        ];
        args.extend_from_slice(extra);
        if kind == "train-vae" {
            args.push("--no-analysis");
        }
        cli(&args).unwrap();
        // the final model as cryoDRGN 4.3 writes it: weights.pkl (epoch 2, 1-based) + config.yaml
        let v = cryofield::io::torch::read_torch(out.join("weights.pkl")).unwrap();
        assert!(
            matches!(v.get("epoch"), Some(cryofield::io::pkl::PyValue::Int(2))),
            "{kind}"
        );
        let z: &[&str] = if kind == "train-vae" {
            &["-z", "0.3", "-0.2"]
        } else {
            &[]
        };
        let (a, b) = (
            dir.path().join(format!("{kind}_a.mrc")),
            dir.path().join(format!("{kind}_b.mrc")),
        );
        let mut ea = vec!["eval-vol", "x", "-c", "x", "-o", s(&a)];
        let (w1, c1) = (out.join("weights.safetensors"), out.join("config.json"));
        let (w2, c2) = (out.join("weights.pkl"), out.join("config.yaml"));
        ea[1] = s(&w1);
        ea[3] = s(&c1);
        ea.extend_from_slice(z);
        cli(&ea).unwrap();
        let mut eb = vec!["eval-vol", s(&w2), "-c", s(&c2), "-o", s(&b)];
        eb.extend_from_slice(z);
        cli(&eb).unwrap();
        assert_eq!(
            volume(&a),
            volume(&b),
            "{kind}: weights.pkl + config.yaml decode the same model"
        );
    }
}
