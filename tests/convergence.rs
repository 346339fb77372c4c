//! `analyze-convergence`: its computations against goldens made by cryoDRGN 4.3.1's own
//! `analyze_convergence` functions (`tools/convergence_goldens.py`: latent shifts, the UMAP
//! sketch's maxima and their particles, the representative latents, the mask, the masked CC and
//! FSC), and the command on a tiny `train-vae` run: every output under the reference's names,
//! consistent with each other, `--skip-umap`/`--skip-volgen` reruns, and errors.

use cryofield::analysis::convergence::{
    convergence_fsc, latent_shifts, masked_cc, representatives, sketch_local_maxima, SketchOptions,
};
use cryofield::analysis::latent::load_z;
use cryofield::analysis::mask::cosine_dilation_mask;
use cryofield::io::mrc::{read_cube, MrcFile};
use cryofield::io::pkl::{read_pkl, PyValue};
use std::path::{Path, PathBuf};

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/convergence")
}

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// A pickled array as f64 values and its shape.
fn arr(path: &Path) -> (Vec<f64>, Vec<usize>) {
    let v = read_pkl(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let a = v.as_array().unwrap();
    (a.to_f64(), a.shape.clone())
}

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

#[test]
fn latent_shifts_match_the_reference() {
    let z: Vec<Vec<f32>> = (0..4)
        .map(|k| load_z(fixtures().join(format!("z.{k}.pkl"))).unwrap().z)
        .collect();
    let (gold, shape) = arr(&fixtures().join("vector_metrics.pkl"));
    assert_eq!(shape, vec![2, 3]);
    for i in 0..2 {
        let m = latent_shifts(&z[i], &z[i + 1], &z[i + 2], 8).unwrap();
        for j in 0..3 {
            let g = gold[i * 3 + j];
            // the reference subtracts and multiplies in f32
            assert!(
                (m[j] - g).abs() <= 1e-4 * g.abs().max(1e-2),
                "row {i} metric {j}: {} vs the reference's {g}",
                m[j]
            );
        }
    }
}

#[test]
fn sketch_and_representatives_match_the_reference() {
    let lat = load_z(shared("zvals_het-8_4k.pkl")).unwrap();
    let xy: Vec<f64> = lat
        .z
        .chunks(lat.zdim)
        .flat_map(|r| [r[0] as f64, r[1] as f64])
        .collect();
    for (smooth, name) in [(true, "smooth"), (false, "raw")] {
        let sk = sketch_local_maxima(
            &xy,
            &SketchOptions {
                smooth,
                ..SketchOptions::default()
            },
        )
        .unwrap();
        let v = read_pkl(fixtures().join(format!("sketch_mask_{name}.pkl"))).unwrap();
        let a = v.as_array().unwrap();
        let (n, k) = (a.shape[0], a.shape[1]);
        assert_eq!(n, lat.n);
        assert_eq!(sk.members.len(), k, "{name}: number of maxima");
        let g = a.to_f64();
        let want: Vec<Vec<usize>> = (0..k)
            .map(|c| (0..n).filter(|&i| g[i * k + c] != 0.0).collect())
            .collect();
        if smooth {
            assert_eq!(
                sk.members, want,
                "{name}: particles of each maximum, in order"
            );
        } else {
            // Raw counts tie (two maxima of 4 particles here): numpy 2's SIMD argsort orders
            // ties as it happens to (here the later first), ours keeps the earlier first. The
            // same maxima are kept.
            let (mut a, mut b) = (sk.members.clone(), want);
            a.sort();
            b.sort();
            assert_eq!(a, b, "{name}: particles of the maxima");
        }
        if smooth {
            let rep = representatives(&lat.z, lat.zdim, &sk.members);
            let (gold, shape) = arr(&fixtures().join("latent_representative.pkl"));
            assert_eq!(shape, vec![k, lat.zdim]);
            for (c, &r) in rep.iter().enumerate() {
                for d in 0..lat.zdim {
                    // savetxt's %.18e of the f32 latent: exact
                    assert_eq!(lat.z[r * lat.zdim + d] as f64, gold[c * lat.zdim + d]);
                }
            }
        }
    }
}

#[test]
fn mask_cc_and_fsc_match_the_reference() {
    let (v1, d, _) = read_cube(shared("toymodel_small_nocenter.mrc")).unwrap();
    let (v2, d2, _) = read_cube(fixtures().join("vol2.mrc")).unwrap();
    assert_eq!(d, d2);
    let mut masked = Vec::new();
    for (v, name) in [(&v1, "vol1"), (&v2, "vol2")] {
        // the reference's mask_volume: threshold at half the 99.99th percentile, 3 voxels of
        // dilation, a 10-voxel cosine edge
        let m = cosine_dilation_mask(v, d, None, 3.0, 10.0, 1.0).unwrap();
        let ours: Vec<f32> = v.iter().zip(&m.values).map(|(a, b)| a * b).collect();
        let (gold, _) = arr(&fixtures().join(format!("{name}.masked.pkl")));
        let max = gold.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
        let err = ours
            .iter()
            .zip(&gold)
            .fold(0.0f64, |a, (&x, &y)| a.max((x as f64 - y).abs()));
        // our mask is rounded to 6 decimals, as gen-mask's
        assert!(
            err <= 1e-6 * max,
            "{name}: masked volume off by {err} (max {max})"
        );
        masked.push(gold.iter().map(|&x| x as f32).collect::<Vec<f32>>());
    }
    let (cc, _) = arr(&fixtures().join("cc_masked.pkl"));
    let ours = masked_cc(&masked[0], &masked[1]);
    assert!(
        (ours - cc[0]).abs() < 1e-5,
        "CC {ours} vs the reference's {}",
        cc[0]
    );
    let (fsc, shape) = arr(&fixtures().join("fsc_masked.pkl"));
    let (x, _) = arr(&fixtures().join("fsc_xaxis.pkl"));
    assert_eq!(shape, vec![3, 1, d / 2]);
    let (f, c) = convergence_fsc(&masked[0], &masked[1], d).unwrap();
    assert_eq!(f.len(), x.len());
    for (a, b) in f.iter().zip(&x) {
        assert!((a - b).abs() < 1e-12);
    }
    for (s, (a, b)) in c.iter().zip(&fsc[..d / 2]).enumerate() {
        assert!(
            (a - b).abs() < 1e-5,
            "shell {s}: FSC {a} vs the reference's {b}"
        );
    }
}

const EPOCHS: usize = 9;

/// A tiny run: a 2-state phantom (D = 16), 160 noiseless images, 9 epochs of zdim 2.
fn train(dir: &Path) -> PathBuf {
    let sim = common::phantom_sim(dir, "discrete", 2, 160, &[]);
    let vae = dir.join("vae");
    let e = EPOCHS.to_string();
    cli(&[
        "train-vae",
        s(&sim.particles()),
        "--poses",
        s(&sim.poses()),
        "--zdim",
        "2",
        "-n",
        &e,
        "-b",
        "8",
        "--uninvert-data",
        "--enc-layers",
        "2",
        "--enc-dim",
        "32",
        "--dec-layers",
        "2",
        "--dec-dim",
        "32",
        "--seed",
        "5",
        "--no-analysis",
        "-o",
        s(&vae),
    ])
    .unwrap();
    vae
}

fn png_ok(p: &Path) {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let dec = png::Decoder::new(std::io::BufReader::new(f));
    let r = dec.read_info().unwrap();
    assert!(
        r.info().width >= 64 && r.info().height >= 64,
        "{}",
        p.display()
    );
}

#[test]
fn command_on_a_trained_run() {
    let tmp = tempfile::tempdir().unwrap();
    let vae = train(tmp.path());
    let out = tmp.path().join("conv");
    let e = EPOCHS.to_string();
    let base = [
        "analyze-convergence",
        s(&vae),
        &e,
        "--epoch-interval",
        "4",
        "--final-maxima",
        "3",
        "--subset",
        "120",
        "--random-seed",
        "1",
        "-o",
        s(&out),
    ];
    cli(&base).unwrap();
    let epochs = [4usize, 8, 9];
    for p in [
        "00_total_loss",
        "01_encoder_umaps",
        "02_encoder_latent_vector_shifts",
        "03_decoder_UMAP-sketching",
        "04_decoder_maxima-sketch-consistency",
        "05_decoder_CC",
        "06_decoder_FSC",
        "07_decoder_FSC-nyquist",
    ] {
        png_ok(&out.join("plots").join(format!("{p}.png")));
    }
    assert!(out.join("convergence.log").exists());
    // the subset: 120 sorted distinct indices
    let sub: Vec<usize> = match read_pkl(out.join("ind_subset.pkl")).unwrap() {
        PyValue::List(v) => v
            .iter()
            .map(|x| match x {
                PyValue::Int(i) => *i as usize,
                _ => panic!("not an int"),
            })
            .collect(),
        _ => panic!("ind_subset.pkl is not a list"),
    };
    assert_eq!(sub.len(), 120);
    assert!(sub.windows(2).all(|w| w[0] < w[1]) && *sub.last().unwrap() < 160);
    for &ep in &epochs {
        let (u, shape) = arr(&out.join("umaps").join(format!("umap.{ep}.pkl")));
        assert_eq!(shape, vec![120, 2]);
        assert!(u.iter().all(|x| x.is_finite()));
    }
    // the shifts, recomputed here from the run's latents for one epoch
    let (vm, shape) = arr(&out.join("vector_metrics.pkl"));
    assert_eq!(shape, vec![EPOCHS - 2, 3]);
    let z: Vec<Vec<f32>> = (1..=3)
        .map(|k| load_z(vae.join(format!("z.{k}.pkl"))).unwrap().z)
        .collect();
    let mut mags: Vec<f64> = z[1]
        .chunks(2)
        .zip(z[2].chunks(2))
        .map(|(a, b)| {
            let dx = b[0] as f64 - a[0] as f64;
            let dy = b[1] as f64 - a[1] as f64;
            (dx * dx + dy * dy).sqrt()
        })
        .collect();
    mags.sort_by(|a, b| a.total_cmp(b));
    let med = 0.5 * (mags[79] + mags[80]);
    assert!(
        (vm[1] - med).abs() <= 1e-9 * med.max(1.0),
        "{} vs {med}",
        vm[1]
    );
    // representative latents are rows of that epoch's latents, among the subset
    for &ep in &epochs {
        let zr = load_z(vae.join(format!("z.{ep}.pkl"))).unwrap();
        let txt = std::fs::read_to_string(
            out.join("repr_particles")
                .join(format!("latent_representative.{ep}.txt")),
        )
        .unwrap();
        let rows: Vec<Vec<f64>> = txt
            .lines()
            .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
            .collect();
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert!(
                sub.iter()
                    .any(|&i| (0..2).all(|d| zr.z[i * 2 + d] as f64 == r[d])),
                "epoch {ep}: {r:?} is not the latent of a subset particle"
            );
        }
        for k in 1..=3 {
            let dir = out.join(format!("vols.{ep}"));
            let v = MrcFile::open(dir.join(format!("vol_{k:03}.mrc"))).unwrap();
            assert_eq!(v.image_len(), 16 * 16);
            assert!(dir.join(format!("vol_{k:03}.masked.mrc")).exists());
        }
    }
    // CC and FSC: shapes, ranges, and the CC recomputed here from the masked volumes
    let (cc, shape) = arr(&out.join("cc_masked.pkl"));
    assert_eq!(shape, vec![3, 2]);
    assert!(
        cc.iter().all(|c| (-1.0..=1.0 + 1e-12).contains(c)),
        "{cc:?}"
    );
    let (a, _, _) = read_cube(out.join("vols.8/vol_002.masked.mrc")).unwrap();
    let (b, _, _) = read_cube(out.join("vols.9/vol_002.masked.mrc")).unwrap();
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (*x as f64 - ma, *y as f64 - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let want = ab / (aa * bb).sqrt();
    assert!((cc[3] - want).abs() < 1e-9, "{} vs {want}", cc[3]);
    let (fsc, shape) = arr(&out.join("fsc_masked.pkl"));
    assert_eq!(shape, vec![3, 2, 8]);
    assert!(
        fsc.iter().all(|f| f.is_finite() && f.abs() <= 1.0 + 1e-9),
        "{fsc:?}"
    );
    let (x, shape) = arr(&out.join("fsc_xaxis.pkl"));
    assert_eq!(shape, vec![8]);
    assert_eq!(x[1], 1.0 / 16.0);

    // --skip-umap and --skip-volgen reuse the outputs: the same numbers
    let mut again: Vec<&str> = base.to_vec();
    again.extend(["--skip-umap", "--skip-volgen"]);
    cli(&again).unwrap();
    assert_eq!(arr(&out.join("cc_masked.pkl")).0, cc);
    assert_eq!(arr(&out.join("fsc_masked.pkl")).0, fsc);

    // errors name the file, before anything is written
    std::fs::rename(vae.join("z.3.pkl"), vae.join("z.3.bak")).unwrap();
    let out2 = tmp.path().join("conv2");
    let mut bad: Vec<&str> = base.to_vec();
    let last = bad.len() - 1;
    bad[last] = s(&out2);
    let err = cli(&bad).unwrap_err().to_string();
    assert!(err.contains("z.3.pkl"), "{err}");
    assert!(!out2.exists());
    std::fs::rename(vae.join("z.3.bak"), vae.join("z.3.pkl")).unwrap();
    let mut few: Vec<&str> = base.to_vec();
    few[2] = "4";
    let err = cli(&few).unwrap_err().to_string();
    assert!(err.contains("--epoch-interval"), "{err}");
}
