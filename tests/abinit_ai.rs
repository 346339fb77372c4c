//! `abinit` (cryoDRGN-AI, issue 26) through the CLI on a tiny data set: the reference's outputs at
//! the summary epochs, readable by our tools; resuming (`--load` + `--load-poses`) from a search
//! epoch and from an SGD epoch gives the uninterrupted run's results bit for bit; the flags the
//! reference crashes on are refused with a message. Accuracy on realistic data: BENCHMARKS.md.

use cryofield::meta::Poses;
use std::path::Path;

mod common;
use common::{phantom_sim, run, run_ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Tiny settings: a 16-wide one-layer decoder, a coarse search (base grid 1, one refinement), 1
/// search epoch and 3 SGD epochs after a 32-image pretraining.
const TINY: [&str; 24] = [
    "--dim",
    "16",
    "--layers",
    "1",
    "--pe-dim",
    "4",
    "-n",
    "4",
    "--epochs-pose-search",
    "1",
    "--n-imgs-pretrain",
    "32",
    "--t-extent",
    "2",
    "--t-ngrid",
    "2",
    "--niter",
    "1",
    "--nkeptposes",
    "2",
    "--base-healpy",
    "1",
    "--batch-size-sgd",
    "32",
];

fn abinit(particles: &Path, ctf: &Path, out: &Path, extra: &[&str]) -> String {
    abinit_z(particles, ctf, out, "2", extra)
}

fn abinit_z(particles: &Path, ctf: &Path, out: &Path, zdim: &str, extra: &[&str]) -> String {
    let head = [
        "abinit",
        "--zdim",
        zdim,
        s(particles),
        "--ctf",
        s(ctf),
        "-o",
        s(out),
        "--seed",
        "3",
        "--checkpoint",
        "1",
        "--no-analysis",
    ];
    run_ok(&[&head[..], &TINY, extra].concat())
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The tensors of a safetensors file by name, with their bytes (the metadata's order varies).
fn tensors(p: &Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let data = bytes(p);
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn abinit_outputs_and_resume_match_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = phantom_sim(
        tmp.path(),
        "linear1d",
        5,
        64,
        &[
            "--snr",
            "1",
            "--defocus",
            "10000",
            "20000",
            "--t-extent",
            "1",
        ],
    );
    let (parts, ctf) = (sim.particles(), sim.sim.join("ctf.pkl"));
    let full = tmp.path().join("full");
    abinit(&parts, &ctf, &full, &[]);
    // summary epochs: 0 (pretraining), 1 (search), 2–4 (--checkpoint 1), and the final files
    for tag in ["0.", "1.", "2.", "3.", "4.", ""] {
        for stem in ["pose", "z"] {
            assert!(
                full.join(format!("{stem}.{tag}pkl")).exists(),
                "{stem}.{tag}pkl"
            );
        }
        for stem in ["weights", "tables"] {
            let f = full.join(format!("{stem}.{tag}safetensors"));
            assert!(f.exists(), "{}", f.display());
        }
        assert!(full.join(format!("reconstruct.{tag}mrc")).exists());
    }
    let poses = Poses::load(full.join("pose.pkl")).unwrap();
    assert_eq!(poses.len(), 64);
    // the SGD epochs moved the poses off the search's result
    let searched = Poses::load(full.join("pose.1.pkl")).unwrap();
    assert!(poses.rots != searched.rots, "the pose table did not move");
    // our tools read the run: eval-vol through config.json (an autodecoder: no encoder)
    let vol = tmp.path().join("v.mrc");
    run_ok(&[
        "eval-vol",
        s(&full.join("weights.safetensors")),
        "-c",
        s(&full.join("config.json")),
        "-z",
        "0",
        "0",
        "-o",
        s(&vol),
    ]);
    assert!(vol.exists());

    // --zdim 0: homogeneous (the search against the decoder's volume), no z files
    let homo = tmp.path().join("homo");
    abinit_z(&parts, &ctf, &homo, "0", &[]);
    assert!(homo.join("pose.pkl").exists() && homo.join("reconstruct.mrc").exists());
    assert!(!homo.join("z.pkl").exists());

    // the search at K latent bins with K = the minibatch (16): every image its own bin, so the same
    // search as the per-image one, bit for bit; with 2 bins a different one
    let binned = tmp.path().join("binned16");
    abinit(&parts, &ctf, &binned, &["--search-z-bins", "16"]);
    assert!(
        bytes(&full.join("pose.1.pkl")) == bytes(&binned.join("pose.1.pkl")),
        "--search-z-bins 16 (one image per bin) differs from the per-image search"
    );
    let binned2 = tmp.path().join("binned2");
    abinit(
        &parts,
        &ctf,
        &binned2,
        &["--search-z-bins", "2", "--pose-model-update-freq", "32"],
    );
    assert!(bytes(&full.join("pose.1.pkl")) != bytes(&binned2.join("pose.1.pkl")));

    // resume after the search epoch (the pose table starts from --load-poses) and after an SGD
    // epoch (the tables from tables.2.safetensors): the same final outputs, bit for bit
    for k in [1, 2] {
        let out = tmp.path().join(format!("resumed{k}"));
        let w = full.join(format!("weights.{k}.safetensors"));
        let p = full.join(format!("pose.{k}.pkl"));
        abinit(
            &parts,
            &ctf,
            &out,
            &["--load", s(&w), "--load-poses", s(&p)],
        );
        for f in ["pose.pkl", "z.pkl"] {
            assert!(
                bytes(&full.join(f)) == bytes(&out.join(f)),
                "resumed from epoch {k}: {f} differs from the uninterrupted run's"
            );
        }
        for f in ["weights.safetensors", "tables.safetensors"] {
            let (a, b) = (tensors(&full.join(f)), tensors(&out.join(f)));
            assert!(!a.is_empty() && a.len() == b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    x == y,
                    "resumed from epoch {k}: {f}: tensor {} differs from the uninterrupted run's",
                    x.0
                );
            }
        }
        assert!(!out.join(format!("pose.{k}.pkl")).exists());
    }
}

#[test]
fn abinit_refuses_what_it_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = phantom_sim(
        tmp.path(),
        "linear1d",
        5,
        16,
        &["--defocus", "10000", "20000"],
    );
    let (parts, ctf) = (sim.particles(), sim.sim.join("ctf.pkl"));
    let out = tmp.path().join("o");
    let base = [
        "abinit",
        s(&parts),
        "--ctf",
        s(&ctf),
        "-o",
        s(&out),
        "--zdim",
        "2",
    ];
    for (extra, says) in [
        (
            &["--output-mask", "frequency_marching"][..],
            "frequency_marching",
        ),
        (&["--variational-het"][..], "not yet"),
        (&["--use-conf-encoder"][..], "not yet"),
        (&["--lr-pose-table", "0"][..], "--lr-pose-table"),
        (&["--batch-size-hps", "0"][..], "--batch-size-hps"),
    ] {
        let (ok, _, err) = run(&[&base[..], &TINY, extra].concat());
        assert!(!ok && err.contains(says), "{extra:?}: {err}");
    }
    // --load of a file that is not an abinit checkpoint
    let bogus = tmp.path().join("weights.3.safetensors");
    std::fs::write(&bogus, b"not a checkpoint").unwrap();
    let (ok, _, err) = run(&[&base[..], &TINY, &["--load", s(&bogus)]].concat());
    assert!(!ok && err.contains("weights.3.safetensors"), "{err}");
}

/// The first pickle of a z file, as (n, zdim) rows.
fn z_rows(p: &Path) -> Vec<f32> {
    use cryofield::io::pkl::read_pkl_all;
    read_pkl_all(p).unwrap()[0].as_array().unwrap().to_f32()
}

/// Separation of two groups' values: |mean₀ − mean₁| / √((var₀ + var₁)/2).
fn separation(z: &[f32], labels: &[i64]) -> f64 {
    let stats = |k: i64| {
        let v: Vec<f64> = z
            .iter()
            .zip(labels)
            .filter(|(_, &l)| l == k)
            .map(|(&z, _)| z as f64)
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
        (m, var)
    };
    let ((m0, v0), (m1, v1)) = (stats(0), stats(1));
    (m0 - m1).abs() / ((v0 + v1) / 2.0).sqrt()
}

/// `train-dec` (the autodecoder with known poses) on two distinct volumes: the latent table learns
/// to tell the two states apart (separation > 1.5 after 40 epochs, from ~0 at the start); with
/// the table held for every epoch (`--pretrain-z 40`) it does not. Its outputs are read by
/// `eval-vol`, and `--do-pose-sgd` is refused with a message.
#[test]
fn train_dec_latents_separate_two_states() {
    use cryofield::io::pkl::read_pkl_all;
    let tmp = tempfile::tempdir().unwrap();
    let sim = phantom_sim(
        tmp.path(),
        "discrete",
        2,
        300,
        &["--defocus", "10000", "20000", "--t-extent", "1"],
    );
    let labels: Vec<i64> = read_pkl_all(sim.sim.join("labels.pkl")).unwrap()[0]
        .as_array()
        .unwrap()
        .to_i64()
        .unwrap();
    let (parts, poses, ctf) = (sim.particles(), sim.poses(), sim.sim.join("ctf.pkl"));
    let run_dec = |out: &Path, extra: &[&str]| {
        let head = [
            "train-dec",
            s(&parts),
            "--poses",
            s(&poses),
            "--ctf",
            s(&ctf),
            "--zdim",
            "1",
            "--dim",
            "64",
            "--layers",
            "2",
            "-n",
            "40",
            "--z-lr",
            "3e-2",
            "--seed",
            "1",
            "--checkpoint",
            "20",
            "--no-analysis",
            "-o",
            s(out),
        ];
        run_ok(&[&head[..], extra].concat());
    };
    let out = tmp.path().join("dec");
    run_dec(&out, &[]);
    let learned = separation(&z_rows(&out.join("z.pkl")), &labels);
    let frozen_out = tmp.path().join("frozen");
    run_dec(&frozen_out, &["--pretrain-z", "40"]);
    let frozen = separation(&z_rows(&frozen_out.join("z.pkl")), &labels);
    eprintln!("separation of the two states: learned {learned:.2}, held {frozen:.2}");
    assert!(
        learned > 1.5 && frozen < 0.5,
        "separation of the two states: learned {learned:.2} (want > 1.5), held {frozen:.2} (want < 0.5)"
    );
    let vol = tmp.path().join("v.mrc");
    run_ok(&[
        "eval-vol",
        s(&out.join("weights.safetensors")),
        "-c",
        s(&out.join("config.json")),
        "-z",
        "0",
        "-o",
        s(&vol),
    ]);
    let (ok, _, err) = run(&[
        "train-dec",
        s(&sim.particles()),
        "--poses",
        s(&sim.poses()),
        "--zdim",
        "1",
        "-o",
        s(&tmp.path().join("x")),
        "--do-pose-sgd",
    ]);
    assert!(!ok && err.contains("not yet"), "{err}");
}
