//! Resuming runs (issue 22): `train-vae` / `train-nn --load` take the seed and every setting
//! that changes the arithmetic from the checkpoint and continue exactly; a conflicting flag, a
//! checkpoint at or past `-n`, and a checkpoint without recorded settings give clear errors;
//! `prior-train` checkpoints periodically and resumes from a killed run exactly.

use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// 48 noiseless images (D = 16) of a linear1d phantom series, with poses; the folder.
fn dataset(dir: &Path) -> PathBuf {
    let ph = dir.join("ph");
    cli(&[
        "phantom",
        "--kind",
        "linear1d",
        "--n-states",
        "8",
        "-D",
        "16",
        "-o",
        s(&ph),
    ])
    .unwrap();
    let sim = dir.join("sim");
    cli(&[
        "simulate",
        s(&ph.join("vols.txt")),
        "-N",
        "48",
        "-o",
        s(&sim),
        "--seed",
        "2",
    ])
    .unwrap();
    sim
}

/// Every tensor of a safetensors file (name → (shape, bytes)) and its metadata.
type Tensors = BTreeMap<String, (Vec<usize>, Vec<u8>)>;
fn tensors(p: &Path) -> (Tensors, BTreeMap<String, String>) {
    let data = std::fs::read(p).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&data).unwrap();
    let st = SafeTensors::deserialize(&data).unwrap();
    let t = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    let m = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    (t, m)
}

/// `train-vae` on `sim` into `out` with non-default settings (seed 5, batch 8, lr 1e-3, small
/// networks, f32), `extra` appended.
fn train_vae(sim: &Path, out: &Path, extra: &[&str]) -> anyhow::Result<()> {
    let (particles, poses) = (sim.join("particles.mrcs"), sim.join("pose.pkl"));
    let mut args = vec![
        "train-vae",
        s(&particles),
        "--poses",
        s(&poses),
        "-o",
        s(out),
        "--zdim",
        "2",
        "--enc-layers",
        "1",
        "--enc-dim",
        "32",
        "--dec-layers",
        "2",
        "--dec-dim",
        "16",
        "-b",
        "8",
        "--lr",
        "1e-3",
        "--no-amp",
        "--seed",
        "5",
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

/// `train-vae --load` with only the data, the output folder, `-n` and `extra`: every setting
/// from the checkpoint.
fn resume_vae(sim: &Path, out: &Path, load: &Path, n: &str, extra: &[&str]) -> anyhow::Result<()> {
    let (particles, poses) = (sim.join("particles.mrcs"), sim.join("pose.pkl"));
    let mut args = vec![
        "train-vae",
        s(&particles),
        "--poses",
        s(&poses),
        "-o",
        s(out),
        "--load",
        s(load),
        "-n",
        n,
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

fn config_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// Three epochs in one go against two, then `--load weights.1 -n 3` without `--seed` or any
/// model/optimizer flag: z and every tensor (weights and Adam state) bit-identical, and
/// config.json keeps the original run's settings.
#[test]
fn train_vae_load_without_seed_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = dataset(tmp.path());
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    train_vae(&sim, &full, &["-n", "3"]).unwrap();
    train_vae(&sim, &part, &["-n", "2"]).unwrap();
    resume_vae(&sim, &part, &part.join("weights.1.safetensors"), "3", &[]).unwrap();

    let (tf, mf) = tensors(&full.join("weights.2.safetensors"));
    let (tp, mp) = tensors(&part.join("weights.2.safetensors"));
    assert_eq!(mf.get("optim.step"), Some(&"18".to_string()));
    assert_eq!(
        mf, mp,
        "checkpoint metadata (epoch, Adam step, settings) differ"
    );
    assert!(tf == tp, "weights or Adam state after resuming differ");
    let (t1, _) = tensors(&full.join("weights.1.safetensors"));
    assert!(t1 != tf, "the last epoch must change the weights");
    assert!(
        std::fs::read(full.join("z.2.pkl")).unwrap()
            == std::fs::read(part.join("z.2.pkl")).unwrap(),
        "z after resuming differs"
    );
    let (cf, cp) = (config_json(&full), config_json(&part));
    for key in [
        "seed",
        "batch_size",
        "lr",
        "enc_dim",
        "dec_dim",
        "zdim",
        "amp",
    ] {
        assert_eq!(
            cf["config"][key], cp["config"][key],
            "config.json after resuming lost `{key}`"
        );
    }
    assert_eq!(cp["config"]["seed"], 5);
    assert_eq!(cp["epoch"], 2);
}

/// A flag given with another value than the checkpoint's is an error naming the checkpoint,
/// the setting and both values (and nothing is written).
#[test]
fn conflicting_setting_on_load_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = dataset(tmp.path());
    let part = tmp.path().join("part");
    train_vae(&sim, &part, &["-n", "2"]).unwrap();
    let ck = part.join("weights.1.safetensors");
    let before = std::fs::read(part.join("config.json")).unwrap();
    let out = tmp.path().join("other");
    let e = format!(
        "{:#}",
        resume_vae(&sim, &out, &ck, "3", &["--seed", "6"]).unwrap_err()
    );
    assert!(
        e.contains("weights.1.safetensors")
            && e.contains("seed")
            && e.contains('5')
            && e.contains('6'),
        "{e}"
    );
    let e = format!(
        "{:#}",
        resume_vae(&sim, &out, &ck, "3", &["-b", "4"]).unwrap_err()
    );
    assert!(
        e.contains("weights.1.safetensors")
            && e.contains("batch_size")
            && e.contains('8')
            && e.contains('4'),
        "{e}"
    );
    let e = format!(
        "{:#}",
        resume_vae(&sim, &out, &ck, "3", &["--zdim", "3"]).unwrap_err()
    );
    assert!(
        e.contains("zdim") && e.contains('2') && e.contains('3'),
        "{e}"
    );
    assert!(!out.exists(), "a refused run must write nothing");
    // the same values given explicitly are fine
    resume_vae(&sim, &out, &ck, "3", &["--seed", "5", "-b", "8"]).unwrap();
    assert!(out.join("weights.2.safetensors").exists());
    assert_eq!(std::fs::read(part.join("config.json")).unwrap(), before);
}

/// `--load weights.1 -n 2` (two epochs done, two asked for) used to exit 0 having done
/// nothing: now an error naming the checkpoint, its epoch and -n.
#[test]
fn load_at_or_past_the_last_epoch_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = dataset(tmp.path());
    let part = tmp.path().join("part");
    train_vae(&sim, &part, &["-n", "2"]).unwrap();
    let ck = part.join("weights.1.safetensors");
    for n in ["2", "1"] {
        let e = format!("{:#}", resume_vae(&sim, &part, &ck, n, &[]).unwrap_err());
        assert!(
            e.contains("weights.1.safetensors")
                && e.contains("2 epochs done")
                && e.contains(&format!("-n {n}")),
            "{e}"
        );
    }
}

/// `train-nn` shares the code: two epochs against one then `--load` without `--seed`,
/// `--layers`, `--dim`, `-b` or `--lr`.
#[test]
fn train_nn_load_without_seed_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = dataset(tmp.path());
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    let (particles, poses) = (sim.join("particles.mrcs"), sim.join("pose.pkl"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train-nn",
            s(&particles),
            "--poses",
            s(&poses),
            "-o",
            s(out),
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let settings = [
        "--layers", "2", "--dim", "16", "-b", "8", "--lr", "1e-3", "--seed", "5",
    ];
    run(&full, &[&settings[..], &["-n", "2"]].concat()).unwrap();
    run(&part, &[&settings[..], &["-n", "1"]].concat()).unwrap();
    let ck = part.join("weights.0.safetensors");
    run(&part, &["--load", s(&ck), "-n", "2"]).unwrap();
    let (tf, mf) = tensors(&full.join("weights.1.safetensors"));
    let (tp, mp) = tensors(&part.join("weights.1.safetensors"));
    assert_eq!(mf, mp);
    assert!(tf == tp, "weights or Adam state after resuming differ");
    let e = format!(
        "{:#}",
        run(&part, &["--load", s(&ck), "-n", "2", "--dim", "32"]).unwrap_err()
    );
    assert!(
        e.contains("dec_dim") && e.contains("16") && e.contains("32"),
        "{e}"
    );
}

/// A copy of the checkpoint `src` at `dst` without the recorded settings, as cryofield wrote
/// them before it recorded any.
fn strip_settings(src: &Path, dst: &Path) {
    let data = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    let mut head: serde_json::Value = serde_json::from_slice(&data[8..8 + n]).unwrap();
    let meta = head["__metadata__"].as_object_mut().unwrap();
    assert!(meta.remove("settings").is_some(), "no settings to strip");
    let mut h = serde_json::to_vec(&head).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(&data[8 + n..]);
    std::fs::write(dst, out).unwrap();
}

/// A checkpoint without recorded settings (an older cryofield's): `--load` without `--seed`
/// is an error (the default seed is random, the resumed run would silently diverge); with the
/// original run's flags it resumes exactly, with a warning.
#[test]
fn checkpoint_without_settings_needs_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = dataset(tmp.path());
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    train_vae(&sim, &full, &["-n", "3"]).unwrap();
    train_vae(&sim, &part, &["-n", "2"]).unwrap();
    let old = part.join("old.safetensors");
    strip_settings(&part.join("weights.1.safetensors"), &old);
    let e = format!("{:#}", resume_vae(&sim, &part, &old, "3", &[]).unwrap_err());
    assert!(
        e.contains("old.safetensors") && e.contains("--seed") && e.contains("seed 5"),
        "{e}"
    );
    train_vae(&sim, &part, &["-n", "3", "--load", s(&old)]).unwrap();
    let (tf, _) = tensors(&full.join("weights.2.safetensors"));
    let (tp, _) = tensors(&part.join("weights.2.safetensors"));
    assert!(tf == tp, "resuming with the original flags differs");
}
