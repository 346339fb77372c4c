//! cryoTWIN's `pathway` and `twin-analyze` on a tiny trained twin model (zdim 2, C = 4, 48 noiseless
//! images of a linear1d phantom at D = 16), with a tiny VAE for the commands' train-vae cases.

use cryofield::io::array::{ArrayData, NdArray};
use cryofield::io::mrc::MrcFile;
use cryofield::twin::gmm::Gmm;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::{phantom_sim, run, train_vae, NETS};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Phantom → simulate → train-twin (and train-vae with `vae`) in `dir`: (phantom, simulation, twin, vae).
fn tiny(dir: &Path, vae: bool) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (tw, va) = (dir.join("twin"), dir.join("vae"));
    let sim = phantom_sim(dir, "linear1d", 8, 48, &[]);
    let (parts, poses) = (sim.particles(), sim.poses());
    let run_args = ["-n", "2", "--seed", "1"];
    let head = [
        "train-twin",
        s(&parts),
        "--poses",
        s(&poses),
        "--n-comp",
        "4",
        "-o",
        s(&tw),
        "--zdim",
        "2",
    ];
    let a = [&head[..], &NETS, &run_args].concat();
    let (ok, _, err) = run(&a);
    assert!(ok, "{a:?}: {err}");
    if vae {
        let (ok, err) = train_vae(&sim, &va, &run_args);
        assert!(ok, "train-vae: {err}");
    }
    (sim.ph, sim.sim, tw, va)
}

/// Every file under `dir` (relative path → bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// The rows of a text table (comments skipped), as f64 values where they parse.
fn rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn pathway_volumes_ends_labels_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let (ph, _, tw, _) = tiny(dir.path(), false);
    let (w, c, g, z) = (
        tw.join("weights.2.safetensors"),
        tw.join("config.json"),
        tw.join("gmm.2.npz"),
        tw.join("z.2.pkl"),
    );
    let gmm = Gmm::read(&g).unwrap();
    let k = 5;
    let base = |seed: &str, o: &Path| -> (bool, String, String) {
        run(&[
            "pathway",
            s(&w),
            "-c",
            s(&c),
            "--gmm",
            s(&g),
            "--from",
            "0",
            "--to",
            "2",
            "-K",
            "5",
            "-M",
            "50",
            "--seed",
            seed,
            "--vols",
            s(&ph.join("vols.txt")),
            "--zfile",
            s(&z),
            "-o",
            s(o),
        ])
    };
    let out = dir.path().join("pw");
    let (ok, table, err) = base("3", &out);
    assert!(ok, "{err}");
    assert!(
        err.contains("pathway: 1 path(s)") && err.contains(" s"),
        "{err}"
    );
    assert!(table.contains("path_states"), "{table}");
    // K + 1 finite volumes on the truth's box.
    for i in 0..=k {
        let f = MrcFile::open(out.join(format!("path_0_2/vol_{i:03}.mrc"))).unwrap();
        assert_eq!((f.header.nx, f.header.ny, f.header.nz), (16, 16, 16));
        assert!(f.read_all().unwrap().iter().all(|v| v.is_finite()));
    }
    assert!(!out.join(format!("path_0_2/vol_{:03}.mrc", k + 1)).exists());
    // The path's ends are the GMM means, exactly (%.18e round-trips f64).
    let zrows: Vec<Vec<f64>> = rows(&out.join("path_0_2.z.txt"))
        .iter()
        .map(|r| r.iter().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(zrows.len(), k + 1);
    assert_eq!(zrows[0], gmm.mu[0..2].to_vec());
    assert_eq!(zrows[k], gmm.mu[4..6].to_vec());
    // Per point: k step log_p -log_p cost state corr, with a state among the phantom's 8.
    let pt = rows(&out.join("path_0_2.txt"));
    assert_eq!(pt.len(), k + 1);
    for (i, r) in pt.iter().enumerate() {
        assert_eq!(r.len(), 7, "{r:?}");
        assert_eq!(r[0], i.to_string());
        let lp: f64 = r[2].parse().unwrap();
        assert!(lp.is_finite());
        assert!(r[5].parse::<usize>().unwrap() < 8, "{r:?}");
    }
    assert_eq!(rows(&out.join("modes.txt")).len(), gmm.n_comp());
    assert!(out.join("path_0_2.png").is_file() && out.join("pairs.txt").is_file());
    // Seed-deterministic; another seed moves the intermediate points only.
    let again = dir.path().join("pw_again");
    assert!(base("3", &again).0);
    for f in ["path_0_2.z.txt", "path_0_2.txt", "modes.txt", "pairs.txt"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
    let other = dir.path().join("pw_other");
    assert!(base("4", &other).0);
    let zo = std::fs::read_to_string(other.join("path_0_2.z.txt")).unwrap();
    let zs = std::fs::read_to_string(out.join("path_0_2.z.txt")).unwrap();
    assert_ne!(zo, zs);
    assert_eq!(zo.lines().next(), zs.lines().next());
    assert_eq!(zo.lines().last(), zs.lines().last());
    // --auto-pairs 3 without volumes: the three pairs among the three largest weights.
    let auto = dir.path().join("pw_auto");
    let (ok, table, err) = run(&[
        "pathway",
        s(&w),
        "-c",
        s(&c),
        "--gmm",
        s(&g),
        "--auto-pairs",
        "3",
        "-K",
        "3",
        "-M",
        "20",
        "--no-volumes",
        "-o",
        s(&auto),
    ]);
    assert!(ok, "{err}");
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| gmm.pi[b].total_cmp(&gmm.pi[a]).then(a.cmp(&b)));
    let mut top = order[..3].to_vec();
    top.sort_unstable();
    let want = [(top[0], top[1]), (top[0], top[2]), (top[1], top[2])];
    for (i, j) in want {
        assert!(auto.join(format!("path_{i}_{j}.z.txt")).is_file());
        assert!(!auto.join(format!("path_{i}_{j}")).exists());
    }
    let data_rows = table.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(data_rows, 1 + 3, "{table}");
}

#[test]
fn pathway_refuses_bad_inputs_and_keeps_earlier_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, tw, va) = tiny(dir.path(), true);
    let (w, c, g) = (
        tw.join("weights.2.safetensors"),
        tw.join("config.json"),
        tw.join("gmm.2.npz"),
    );
    let out = dir.path().join("pw");
    let pathway = |w: &Path, c: &Path, g: &Path, from: &str| {
        run(&[
            "pathway",
            s(w),
            "-c",
            s(c),
            "--gmm",
            s(g),
            "--from",
            from,
            "--to",
            "1",
            "-K",
            "3",
            "-M",
            "20",
            "-o",
            s(&out),
        ])
    };
    let (ok, _, err) = pathway(&w, &c, &g, "0");
    assert!(ok, "{err}");
    let before = snapshot(&out);
    assert!(before.contains_key(Path::new("path_0_1/vol_003.mrc")));

    // A train-vae model.
    let (vw, vc) = (va.join("weights.2.safetensors"), va.join("config.json"));
    let (ok, _, err) = pathway(&vw, &vc, &g, "0");
    assert!(
        !ok && err.contains(s(&vc)) && err.contains("train-vae model has no GMM prior"),
        "{err}"
    );
    // A component out of range, and the same component twice.
    let (ok, _, err) = pathway(&w, &c, &g, "9");
    assert!(
        !ok && err.contains(s(&g)) && err.contains("C = 4") && err.contains("--from 9"),
        "{err}"
    );
    let (ok, _, err) = pathway(&w, &c, &g, "1");
    assert!(!ok && err.contains("two different components"), "{err}");
    // A GMM file of the wrong shape: mu has 3 rows for 2 weights.
    let f64s = |shape: Vec<usize>, v: Vec<f64>| NdArray::new(shape, ArrayData::F64(v)).unwrap();
    let bad = dir.path().join("bad.npz");
    cryofield::io::npy::write_npz(
        &bad,
        &[
            ("pi".into(), f64s(vec![2], vec![0.5, 0.5])),
            ("mu".into(), f64s(vec![3, 2], vec![0.0; 6])),
            (
                "cov".into(),
                f64s(vec![2, 2, 2], [1.0, 0.0, 0.0, 1.0].repeat(2)),
            ),
        ],
    )
    .unwrap();
    let (ok, _, err) = pathway(&w, &c, &bad, "0");
    assert!(
        !ok && err.contains("bad.npz") && err.contains("(C), (C, d), (C, d, d)"),
        "{err}"
    );
    // A GMM in 3 dimensions for a zdim-2 model.
    let g3 = dir.path().join("gmm3.npz");
    Gmm::new(
        3,
        vec![0.5, 0.5],
        vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0].repeat(2),
    )
    .unwrap()
    .write(&g3)
    .unwrap();
    let (ok, _, err) = pathway(&w, &c, &g3, "0");
    assert!(
        !ok && err.contains("gmm3.npz") && err.contains(s(&c)) && err.contains("zdim 2"),
        "{err}"
    );
    // None of the failed runs touched the first run's outputs, nor left anything beside them.
    assert_eq!(snapshot(&out), before);
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        6,
        "modes, pairs, path_0_1{{.z.txt,.txt,.png}}, path_0_1/"
    );
    // A failed run into a new folder creates nothing.
    let fresh = dir.path().join("fresh");
    let (ok, _, _) = run(&[
        "pathway",
        s(&w),
        "-c",
        s(&c),
        "--gmm",
        s(&g),
        "--from",
        "0",
        "--to",
        "7",
        "-o",
        s(&fresh),
    ]);
    assert!(!ok && !fresh.exists());
}

#[test]
fn twin_analyze_writes_its_figures_for_twin_and_vae_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, sim, tw, va) = tiny(dir.path(), true);
    let truth = sim.join("truth.pkl");
    let (ok, stdout, err) = run(&[
        "twin-analyze",
        s(&tw),
        "2",
        "-n",
        "60",
        "--truth",
        s(&truth),
    ]);
    assert!(ok, "{err}");
    let out = tw.join("analyze.2");
    for f in [
        "twin_tsne.png",
        "twin_tsne.txt",
        "pca_variance.txt",
        "pca_variance.png",
        "truth_rho.txt",
        "twin_analyze.txt",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("twin_analyze.txt")).unwrap(),
        stdout
    );
    assert!(
        stdout.contains("model train-twin") && stdout.contains("gmm_components 4"),
        "{stdout}"
    );
    let rho: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("abs_rho_pc1_t0 "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..=1.0).contains(&rho), "{rho}");
    // ρ of both PCs (zdim 2) with the one truth coordinate.
    let rr = rows(&out.join("truth_rho.txt"));
    assert_eq!(rr.len(), 2);
    assert!(rr
        .iter()
        .all(|r| r.len() == 2 && r[1].parse::<f64>().unwrap().abs() <= 1.0));
    // The embedding: 30 latents, the 4 means, 30 prior samples.
    let kinds: Vec<String> = rows(&out.join("twin_tsne.txt"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for (k, n) in [("z", 30), ("mean", 4), ("prior", 30)] {
        assert_eq!(kinds.iter().filter(|x| *x == k).count(), n, "{k}");
    }
    let pv = rows(&out.join("pca_variance.txt"));
    assert_eq!(pv.len(), 2);
    assert!((pv[1][3].parse::<f64>().unwrap() - 1.0).abs() < 1e-6);

    // A train-vae run: latents only, with a note; no truth → no ρ file.
    let vout = dir.path().join("vae_an");
    let (ok, stdout, err) = run(&["twin-analyze", s(&va), "2", "-n", "40", "-o", s(&vout)]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("model train-vae") && stdout.contains("note:"),
        "{stdout}"
    );
    assert!(vout.join("twin_tsne.png").is_file() && !vout.join("truth_rho.txt").exists());
    let kinds = rows(&vout.join("twin_tsne.txt"));
    assert!(kinds.len() == 40 && kinds.iter().all(|r| r[0] == "z"));
    // A missing epoch and a truth of the wrong length (the phantom's, one row per state) name their
    // files, and the failed run leaves no folder.
    let (ok, _, err) = run(&["twin-analyze", s(&tw), "7"]);
    assert!(!ok && err.contains("z.7.pkl"), "{err}");
    let (ok, _, err) = run(&[
        "twin-analyze",
        s(&tw),
        "2",
        "-n",
        "20",
        "--truth",
        s(&dir.path().join("ph/truth.pkl")),
        "-o",
        s(&dir.path().join("bad_truth")),
    ]);
    assert!(!ok && err.contains("ph/truth.pkl"), "{err}");
    assert!(!dir.path().join("bad_truth").exists());
}
