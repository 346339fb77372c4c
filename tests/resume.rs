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
    resume_vae(&sim, &part, &part.join("weights.2.safetensors"), "3", &[]).unwrap();

    let (tf, mf) = tensors(&full.join("weights.3.safetensors"));
    let (tp, mp) = tensors(&part.join("weights.3.safetensors"));
    assert_eq!(mf.get("optim.step"), Some(&"18".to_string()));
    assert_eq!(
        mf, mp,
        "checkpoint metadata (epoch, Adam step, settings) differ"
    );
    assert!(tf == tp, "weights or Adam state after resuming differ");
    let (t1, _) = tensors(&full.join("weights.2.safetensors"));
    assert!(t1 != tf, "the last epoch must change the weights");
    assert!(
        std::fs::read(full.join("z.3.pkl")).unwrap()
            == std::fs::read(part.join("z.3.pkl")).unwrap(),
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
    let ck = part.join("weights.2.safetensors");
    let before = std::fs::read(part.join("config.json")).unwrap();
    let out = tmp.path().join("other");
    for (flags, needles) in [
        (
            &["--seed", "6"][..],
            &["weights.2.safetensors", "seed", "5", "6"][..],
        ),
        (
            &["-b", "4"],
            &["weights.2.safetensors", "batch_size", "8", "4"],
        ),
        (&["--zdim", "3"], &["zdim", "2", "3"]),
    ] {
        let e = format!("{:#}", resume_vae(&sim, &out, &ck, "3", flags).unwrap_err());
        assert!(needles.iter().all(|n| e.contains(n)), "{flags:?}: {e}");
    }
    assert!(!out.exists(), "a refused run must write nothing");
    // the same values given explicitly are fine
    resume_vae(&sim, &out, &ck, "3", &["--seed", "5", "-b", "8"]).unwrap();
    assert!(out.join("weights.3.safetensors").exists());
    assert_eq!(std::fs::read(part.join("config.json")).unwrap(), before);
}

/// `--load weights.2 -n 2` (two epochs done, two asked for) used to exit 0 having done
/// nothing: now an error naming the checkpoint, its epoch and -n.
#[test]
fn load_at_or_past_the_last_epoch_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = dataset(tmp.path());
    let part = tmp.path().join("part");
    train_vae(&sim, &part, &["-n", "2"]).unwrap();
    let ck = part.join("weights.2.safetensors");
    for n in ["2", "1"] {
        let e = format!("{:#}", resume_vae(&sim, &part, &ck, n, &[]).unwrap_err());
        assert!(
            e.contains("weights.2.safetensors")
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
    let ck = part.join("weights.1.safetensors");
    run(&part, &["--load", s(&ck), "-n", "2"]).unwrap();
    let (tf, mf) = tensors(&full.join("weights.2.safetensors"));
    let (tp, mp) = tensors(&part.join("weights.2.safetensors"));
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
    while !h.len().is_multiple_of(8) {
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
    strip_settings(&part.join("weights.2.safetensors"), &old);
    let e = format!("{:#}", resume_vae(&sim, &part, &old, "3", &[]).unwrap_err());
    assert!(
        e.contains("old.safetensors") && e.contains("--seed") && e.contains("seed 5"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        resume_vae(&sim, &part, &old, "3", &["--seed", "5"]).unwrap_err()
    );
    assert!(e.contains("old.safetensors") && e.contains("--zdim"), "{e}");
    train_vae(&sim, &part, &["-n", "3", "--load", s(&old)]).unwrap();
    let (tf, _) = tensors(&full.join("weights.3.safetensors"));
    let (tp, _) = tensors(&part.join("weights.3.safetensors"));
    assert!(tf == tp, "resuming with the original flags differs");
}

/// `n` 2-D latents on a noisy ring, as text rows (what `prior-train` reads).
fn ring_latents(path: &Path, n: usize) -> Vec<f64> {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(9);
    let mut z = Vec::with_capacity(2 * n);
    let mut txt = String::new();
    for _ in 0..n {
        let t: f64 = rng.random_range(0.0..std::f64::consts::TAU);
        let (x, y) = (
            t.cos() + 0.05 * rng.random_range(-1.0..1.0),
            t.sin() + 0.05 * rng.random_range(-1.0..1.0),
        );
        z.extend([x, y]);
        txt.push_str(&format!("{x:e} {y:e}\n"));
    }
    std::fs::write(path, txt).unwrap();
    z
}

/// The library side of prior checkpoints: a run of 30 steps hands over its state at steps
/// 10 and 20, and resuming from either gives bit for bit the uninterrupted run's final state
/// and losses (each step's draws depend on (seed, step) only; the state holds every bit of
/// the weights, EMA and Adam moments).
#[test]
fn prior_intermediate_states_resume_exactly() {
    use cryofield::diffusion::model::{
        load_state, train_checkpointed, train_resumable, TrainConfig,
    };
    let tmp = tempfile::tempdir().unwrap();
    let z = ring_latents(&tmp.path().join("z.txt"), 300);
    let cfg = TrainConfig {
        nlayers: 2,
        hidden: 16,
        lr: 2e-3,
        batch: 64,
        steps: 30,
        ema: 0.99,
        seed: 3,
    };
    let mut states = Vec::new();
    let (_, rep, full) = train_checkpointed(
        &z,
        2,
        &cfg,
        None,
        10,
        |_, _| {},
        |st, losses| {
            assert_eq!(losses.len(), st.epoch);
            states.push(st.clone());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(states.iter().map(|s| s.epoch).collect::<Vec<_>>(), [10, 20]);
    assert_eq!(full.epoch, 30);
    assert!(
        states[0].params != full.params,
        "training must change the weights"
    );
    for st in &states {
        let p = tmp.path().join(format!("state.{}.safetensors", st.epoch));
        st.save(&p).unwrap();
        let loaded = load_state(&p, &z, 2, &cfg).unwrap();
        assert_eq!(&loaded, st);
        let (_, rep_b, resumed) = train_resumable(&z, 2, &cfg, Some(loaded), |_, _| {}).unwrap();
        assert_eq!(resumed, full, "resumed from step {}", st.epoch);
        assert_eq!(rep_b.losses[..], rep.losses[st.epoch..]);
    }
}

fn prior_args<'a>(z: &'a Path, out: &'a Path, steps: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["prior-train", s(z), "-o", s(out), "--steps", steps];
    v.extend_from_slice(extra);
    v
}

const PRIOR_SMALL: [&str; 12] = [
    "--layers", "2", "--dim", "16", "-b", "64", "--lr", "2e-3", "--ema", "0.99", "--seed", "3",
];

/// `prior-train` killed (SIGKILL) mid-run leaves a complete `state.safetensors` of a recent
/// step and the losses up to it; `--load` with no settings flags finishes the run with the
/// uninterrupted run's state and loss.txt, bit for bit.
#[test]
fn prior_train_killed_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let zf = tmp.path().join("z.txt");
    ring_latents(&zf, 300);
    let (killed, full) = (tmp.path().join("killed"), tmp.path().join("full"));
    let steps = "10000";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(prior_args(
            &zf,
            &killed,
            steps,
            &[&PRIOR_SMALL[..], &["--checkpoint", "50"]].concat(),
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = killed.join("state.safetensors");
    let t0 = std::time::Instant::now();
    while !state.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("prior-train ended ({st}) before writing a checkpoint");
        }
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "prior-train finished before it could be killed: no intermediate checkpoint was tested"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, meta) = tensors(&state);
    let k: usize = meta["epoch"].parse().unwrap();
    assert!(
        k > 0 && k < 10000 && k.is_multiple_of(50),
        "checkpoint at step {k}"
    );
    assert!(
        !killed.join("prior.npz").exists(),
        "the run was not killed before its end"
    );

    cli(&prior_args(&zf, &killed, steps, &["--load", s(&state)])).unwrap();
    cli(&prior_args(&zf, &full, steps, &PRIOR_SMALL)).unwrap();
    let (tk, mk) = tensors(&state);
    let (tf, mf) = tensors(&full.join("state.safetensors"));
    assert_eq!(mk, mf);
    assert!(tk == tf, "state after resuming from step {k} differs");
    assert!(
        std::fs::read(killed.join("loss.txt")).unwrap()
            == std::fs::read(full.join("loss.txt")).unwrap(),
        "loss.txt after resuming from step {k} differs from the uninterrupted run's"
    );
}

/// `prior-train --load`: a setting given with another value than the state's, or a state
/// already at `--steps`, is an error naming the file and both values.
#[test]
fn prior_train_load_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let zf = tmp.path().join("z.txt");
    ring_latents(&zf, 300);
    let out = tmp.path().join("p");
    cli(&prior_args(
        &zf,
        &out,
        "20",
        &[&PRIOR_SMALL[..], &["--checkpoint", "10"]].concat(),
    ))
    .unwrap();
    let st = out.join("state.safetensors");
    let load = ["--load", s(&st)];
    let e = format!(
        "{:#}",
        cli(&prior_args(
            &zf,
            &out,
            "30",
            &[&load[..], &["--seed", "4"]].concat()
        ))
        .unwrap_err()
    );
    assert!(
        e.contains("state.safetensors") && e.contains("seed") && e.contains('3') && e.contains('4'),
        "{e}"
    );
    let e = format!(
        "{:#}",
        cli(&prior_args(
            &zf,
            &out,
            "30",
            &[&load[..], &["--dim", "32"]].concat()
        ))
        .unwrap_err()
    );
    assert!(
        e.contains("--dim") && e.contains("16") && e.contains("32"),
        "{e}"
    );
    let before = std::fs::read(&st).unwrap();
    let e = format!(
        "{:#}",
        cli(&prior_args(&zf, &out, "20", &load)).unwrap_err()
    );
    assert!(
        e.contains("state.safetensors") && e.contains("step 20") && e.contains("--steps 20"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&st).unwrap(),
        before,
        "a refused run must not rewrite the state"
    );
    cli(&prior_args(
        &zf,
        &out,
        "30",
        &[&load[..], &["--seed", "3"]].concat(),
    ))
    .unwrap();
}

/// `abinit-homo --load` used to draw a new seed silently too; its checkpoints record no
/// settings yet, so `--load` without `--seed` is an error naming the checkpoint.
#[test]
fn abinit_load_without_seed_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = dataset(tmp.path());
    let part = tmp.path().join("part");
    // a train-nn checkpoint of abinit-homo's model (3 × 256, hartley)
    cli(&[
        "train-nn",
        s(&sim.join("particles.mrcs")),
        "--poses",
        s(&sim.join("pose.pkl")),
        "-o",
        s(&part),
        "--domain",
        "hartley",
        "--dim",
        "256",
        "-n",
        "1",
        "--seed",
        "5",
    ])
    .unwrap();
    let old = tmp.path().join("old.safetensors");
    strip_settings(&part.join("weights.1.safetensors"), &old);
    let out = tmp.path().join("ab");
    let e = format!(
        "{:#}",
        cli(&[
            "abinit-homo",
            s(&sim.join("particles.mrcs")),
            "-o",
            s(&out),
            "--load",
            s(&old),
            "-n",
            "3",
        ])
        .unwrap_err()
    );
    assert!(e.contains("old.safetensors") && e.contains("--seed"), "{e}");
    assert!(!out.exists(), "a refused run must write nothing");
}
