//! `analyze-landscape`: on a tiny `train-vae` run of a 2-state discrete phantom (D = 16, zdim 2,
//! trained once and shared) the volume PCA separates the states; the outputs carry the
//! reference's names and agree with each other; bad inputs give errors naming the file; a
//! cryoDRGN-trained run works too. Plus the library's clustering against sklearn/scipy goldens
//! and its eigen-solver against the dense one.

use cryofield::analysis::landscape::{
    agglomerative, dendrogram_leaves, linkage_tree, top_eigen, Linkage,
};
use cryofield::analysis::pca::symmetric_eigen;
use cryofield::io::mrc::{write_mrc, MrcFile};
use cryofield::io::pkl::read_pkl_all;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const N: usize = 300;
const EPOCHS: usize = 40;
/// sketch size of the shared run
const K: usize = 20;

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

fn read_volume(path: &Path) -> (Vec<f32>, usize) {
    let f = MrcFile::open(path).unwrap();
    let v = f.read_all().unwrap();
    let d = f.image_len().isqrt();
    assert_eq!(v.len(), d * d * d, "{} is not a cube", path.display());
    (v, d)
}

/// The first pickle of `path` as f64 values and its shape.
fn pkl(path: &Path) -> (Vec<f64>, Vec<usize>) {
    let v = read_pkl_all(path).unwrap();
    let a = v[0].as_array().unwrap();
    (a.to_f64(), a.shape.clone())
}

fn ints(path: &Path) -> Vec<usize> {
    pkl(path).0.iter().map(|&x| x as usize).collect()
}

fn txt_ints(path: &Path) -> Vec<usize> {
    std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

/// The shared fixture: phantom `ph/` (2 discrete states, D = 16), dataset `sim/` (N noiseless
/// images), run `vae/` (EPOCHS epochs, zdim 2, ~2 s) and its landscape `land/` (K = 20 sketch
/// volumes, 2 clusters, 3 PCs, 2 plotted).
fn fixture() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (ph, sim, vae) = (dir.join("ph"), dir.join("sim"), dir.join("vae"));
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
        let vols = ph.join("vols.txt");
        cli(&["simulate", s(&vols), "-N", &n, "-o", s(&sim), "--seed", "3"]).unwrap();
        let e = EPOCHS.to_string();
        let (parts, poses) = (sim.join("particles.mrcs"), sim.join("pose.pkl"));
        cli(&[
            "train-vae",
            s(&parts),
            "--poses",
            s(&poses),
            "--zdim",
            "2",
            "-n",
            &e,
            "-b",
            "8",
            "--lr",
            "1e-3",
            // simulate writes positive-density projections; without this the decoder learns
            // −density and the landscape's "negative voxels → 0" would erase the molecule
            "--uninvert-data",
            "--enc-layers",
            "2",
            "--enc-dim",
            "32",
            "--dec-layers",
            "2",
            "--dec-dim",
            "64",
            "--seed",
            "11",
            "-o",
            s(&vae),
        ])
        .unwrap();
        let last = EPOCHS.to_string();
        let k = K.to_string();
        cli(&[
            "analyze-landscape",
            s(&vae),
            &last,
            "--sketch-size",
            &k,
            "-M",
            "2",
            "--pc-dim",
            "3",
            "--plot-dim",
            "2",
            "-o",
            s(&dir.join("land")),
        ])
        .unwrap();
        tmp
    })
    .path()
}

/// True state of every particle of the simulation.
fn true_states(dir: &Path) -> Vec<usize> {
    ints(&dir.join("sim/labels.pkl"))
}

/// Fraction of `pred` (two classes) that matches `truth` (states 0 and 1) under the better of the
/// two pairings of classes.
fn agreement(pred: &[bool], truth: &[usize]) -> f64 {
    let same = pred
        .iter()
        .zip(truth)
        .filter(|(&p, &t)| p == (t == 1))
        .count() as f64
        / pred.len() as f64;
    same.max(1.0 - same)
}

/// Criterion: each particle's true state (the simulation's `labels.pkl`) is predicted by the sign
/// of volume PC1 of the sketch volume that represents it (its k-means cluster) for ≥ 90 % of the
/// particles. The encoder of this tiny run places ~93 % of the particles on their state's side of
/// the latent space, which bounds every figure here; the per-volume figure (the state of each
/// centre's particle, `centers_ind.txt`) and the clusters' figures are printed, not asserted.
#[test]
fn volume_pca_separates_the_two_states() {
    let dir = fixture();
    let land = dir.join("land");
    let truth = true_states(dir);
    let centers = txt_ints(&land.join(format!("kmeans{K}/centers_ind.txt")));
    assert_eq!(centers.len(), K);
    let vol_truth: Vec<usize> = centers.iter().map(|&i| truth[i]).collect();
    let n1 = vol_truth.iter().filter(|&&t| t == 1).count();
    let (pc, shape) = pkl(&land.join(format!("vol_pca_{K}.pkl")));
    assert_eq!(shape, vec![K, 3]);
    let pc1_pos: Vec<bool> = pc.chunks(3).map(|r| r[0] > 0.0).collect();
    let states = ints(&land.join("sketch_clustering_average_2/state_labels.pkl"));
    let in_2: Vec<bool> = states.iter().map(|&s| s == 2).collect();
    // each particle through its sketch volume (labels.pkl numbers them from 1)
    let labels = ints(&land.join(format!("kmeans{K}/labels.pkl")));
    let per_particle = |v: &[bool]| -> f64 {
        let pred: Vec<bool> = labels.iter().map(|&l| v[l - 1]).collect();
        agreement(&pred, &truth)
    };
    let (pc1_particles, clu_particles) = (per_particle(&pc1_pos), per_particle(&in_2));
    let (pc1_volumes, clu_volumes) = (
        agreement(&pc1_pos, &vol_truth),
        agreement(&in_2, &vol_truth),
    );
    eprintln!(
        "true state predicted by sign(volume PC1): {:.1} % of particles, {:.0} % of the {K} \
         sketch volumes ({n1} of state 1); by the 2 average-linkage clusters: {:.1} % of \
         particles, {:.0} % of volumes",
        100.0 * pc1_particles,
        100.0 * pc1_volumes,
        100.0 * clu_particles,
        100.0 * clu_volumes
    );
    // both states are sketched, else the figure says nothing
    assert!(
        (2..=K - 2).contains(&n1),
        "{n1} of {K} sketch volumes in state 1"
    );
    assert!(
        pc1_particles >= 0.9,
        "sign of volume PC1 predicts the state of {pc1_particles} of the particles"
    );
}

/// Without an encoder in the way: sketch volumes that are exactly the phantom's two states
/// (chosen by the side of z₁, plus a small smooth perturbation varying with z₂) are separated
/// perfectly by the sign of volume PC1 and by the 2 clusters, and PC1 carries the state
/// difference (its explained-variance ratio is the largest).
#[test]
fn volume_pca_separates_two_known_volumes() {
    use cryofield::analysis::landscape::{
        run_landscape, LandscapeOptions, MaskChoice, VolumeSource,
    };
    let dir = fixture();
    let t0 = read_volume(&dir.join("ph/vol_000.mrc")).0;
    let t1 = read_volume(&dir.join("ph/vol_001.mrc")).0;
    // 200 latents in two blobs along z₁ (deterministic LCG draws)
    let mut st = 99u64;
    let mut rnd = || {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (st >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let n = 200;
    let z: Vec<f32> = (0..n)
        .flat_map(|i| {
            let side = if i % 2 == 0 { -1.0 } else { 1.0 };
            [(side + 0.6 * rnd()) as f32, rnd() as f32]
        })
        .collect();
    let mut decode = |zi: &[f32]| -> cryofield::Result<Vec<f32>> {
        let base = if zi[0] > 0.0 { &t1 } else { &t0 };
        Ok(base
            .iter()
            .enumerate()
            .map(|(j, &v)| v * (1.0 + 0.05 * zi[1] * ((j % 7) as f32 / 7.0)))
            .collect())
    };
    let tmp = tempfile::tempdir().unwrap();
    let k = 16;
    let rep = run_landscape(
        &z,
        n,
        2,
        VolumeSource::Decode {
            d: 16,
            decode: &mut decode,
        },
        None,
        &LandscapeOptions {
            outdir: tmp.path().to_path_buf(),
            k,
            vol_start_index: 1,
            apix: Some(3.0),
            mask: MaskChoice::Generate {
                thresh: None,
                dilate: 6.0,
                cosine_edge: 3.0,
            },
            pc_dim: 3,
            plot_dim: 2,
            m: 2,
            linkage: Linkage::Average,
            vol_ind: None,
            particle_ind: None,
            seed: 0,
        },
    )
    .unwrap();
    let side: Vec<usize> = rep
        .sketch
        .centers_ind
        .iter()
        .map(|&i| (z[2 * i] > 0.0) as usize)
        .collect();
    assert!(side.contains(&0) && side.contains(&1));
    let pc1: Vec<bool> = rep.pca.pc.chunks(3).map(|r| r[0] > 0.0).collect();
    let clu: Vec<bool> = rep.state_labels.iter().map(|&s| s == 1).collect();
    assert_eq!(
        agreement(&pc1, &side),
        1.0,
        "PC1 {:?} vs {side:?}",
        rep.pca.pc
    );
    assert_eq!(
        agreement(&clu, &side),
        1.0,
        "{:?} vs {side:?}",
        rep.state_labels
    );
    let evr = &rep.pca.explained_variance_ratio;
    assert!(evr[0] > 0.9, "explained variance ratio {evr:?}");
}

#[test]
fn outputs_have_the_reference_names_and_agree() {
    let dir = fixture();
    let land = dir.join("land");
    let kdir = land.join(format!("kmeans{K}"));
    let clu = land.join("sketch_clustering_average_2");
    for p in [
        "mask.mrc",
        "mask_slices.png",
        "vol_pca_20.pkl",
        "vol_pca_explained_variance_ratio.txt",
        "vol_pca_20_1_2.png",
        "kmeans20/labels.pkl",
        "kmeans20/centers.txt",
        "kmeans20/centers_ind.txt",
        "kmeans20/vol_mean.mrc",
        "vol_pcs/pc1/001.mrc",
        "vol_pcs/pc1/010.mrc",
        "vol_pcs/pc2/010.mrc",
        "sketch_clustering_average_2/state_labels.pkl",
        "sketch_clustering_average_2/particle_state_labels.pkl",
        "sketch_clustering_average_2/state_001_mean.mrc",
        "sketch_clustering_average_2/state_002_std.mrc",
        "sketch_clustering_average_2/state_001_particle_ind.pkl",
        "sketch_clustering_average_2/state_volume_counts.png",
        "sketch_clustering_average_2/state_particle_counts.png",
        "sketch_clustering_average_2/vol_pca_20_1_2.png",
        "sketch_clustering_average_2/vol_pca_20_annotated_1_2.png",
        "sketch_clustering_average_2/z_pca.png",
        "sketch_clustering_average_2/z_pca_annotated.png",
    ] {
        assert!(land.join(p).exists(), "{p} missing");
    }
    assert!(
        !land.join("vol_pcs/pc3").exists(),
        "--plot-dim 2 traverses 2 PCs"
    );
    assert!(!land.join("vol_pcs/pc1/011.mrc").exists());
    // volumes numbered from 1 (--vol-start-index), one per centre
    assert!(!kdir.join("vol_000.mrc").exists());
    assert!(!kdir.join(format!("vol_{:03}.mrc", K + 1)).exists());
    let vols: Vec<Vec<f32>> = (1..=K)
        .map(|i| {
            let (v, d) = read_volume(&kdir.join(format!("vol_{i:03}.mrc")));
            assert_eq!(d, 16);
            v
        })
        .collect();
    // the mean volume is the mean of the sketch volumes
    let (mean, _) = read_volume(&kdir.join("vol_mean.mrc"));
    for (j, &m) in mean.iter().enumerate() {
        let want = vols.iter().map(|v| v[j] as f64).sum::<f64>() / K as f64;
        assert!(
            (m as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "voxel {j}"
        );
    }
    // labels.pkl numbers the sketch volumes from 1; every volume is some particle's
    let labels = ints(&kdir.join("labels.pkl"));
    assert_eq!(labels.len(), N);
    assert!(labels.iter().all(|&l| (1..=K).contains(&l)));
    // the mask is a union of dilated masks: values in [0, 1], not empty, not everything
    let (mask, _) = read_volume(&land.join("mask.mrc"));
    let inside = mask.iter().filter(|&&m| m > 0.0).count();
    assert!(mask.iter().all(|&m| (0.0..=1.0).contains(&m)));
    assert!(
        inside > 0 && inside < mask.len(),
        "{inside} voxels in the mask"
    );
    // vol_pcs/pc1: mean + component·v, v from the min to the max PC1 coordinate; the component
    // lives on the mask, and projecting the masked volumes on it gives vol_pca's PC1 back
    let (pc, _) = pkl(&land.join(format!("vol_pca_{K}.pkl")));
    let pc1: Vec<f64> = pc.chunks(3).map(|r| r[0]).collect();
    let (lo, hi) = pc1
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let (first, _) = read_volume(&land.join("vol_pcs/pc1/001.mrc"));
    let (last, _) = read_volume(&land.join("vol_pcs/pc1/010.mrc"));
    let comp: Vec<f64> = first
        .iter()
        .zip(&last)
        .map(|(&a, &b)| (b as f64 - a as f64) / (hi - lo))
        .collect();
    for j in 0..mask.len() {
        if mask[j] == 0.0 {
            assert_eq!(
                first[j], last[j],
                "voxel {j} outside the mask changed along PC1"
            );
        }
    }
    let norm: f64 = comp.iter().map(|c| c * c).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "component norm {norm}");
    let x: Vec<Vec<f64>> = vols
        .iter()
        .map(|v| {
            (0..mask.len())
                .map(|j| (mask[j] as f64 * v[j] as f64).max(0.0))
                .collect()
        })
        .collect();
    let xm: Vec<f64> = (0..mask.len())
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / K as f64)
        .collect();
    let scale = pc1.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    for (i, r) in x.iter().enumerate() {
        let p: f64 = (0..mask.len()).map(|j| (r[j] - xm[j]) * comp[j]).sum();
        assert!(
            (p - pc1[i]).abs() <= 2e-3 * scale,
            "volume {i}: {p} vs {}",
            pc1[i]
        );
    }
    // clusters: labels 1..=2 per volume; per particle through its sketch volume; the particle
    // index files split the particles; the state folders link the cluster's volumes
    let states = ints(&clu.join("state_labels.pkl"));
    assert_eq!(states.len(), K);
    assert!(states.iter().all(|&s| s == 1 || s == 2));
    let per_particle = ints(&clu.join("particle_state_labels.pkl"));
    assert_eq!(per_particle.len(), N);
    for (p, &l) in labels.iter().enumerate() {
        assert_eq!(per_particle[p], states[l - 1], "particle {p}");
    }
    let mut seen = vec![0usize; N];
    for st in 1..=2 {
        let ind = ints(&clu.join(format!("state_{st:03}_particle_ind.pkl")));
        for &p in &ind {
            seen[p] += 1;
            assert_eq!(per_particle[p], st);
        }
        for (i, &s2) in states.iter().enumerate() {
            let link = clu.join(format!("state_{st:03}/vol_{:03}.mrc", i + 1));
            assert_eq!(link.exists(), s2 == st, "{}", link.display());
            if s2 == st {
                assert_eq!(read_volume(&link).0, vols[i]);
            }
        }
    }
    assert!(
        seen.iter().all(|&c| c == 1),
        "particles in no state or in two"
    );
}

#[test]
fn skip_vol_reuses_the_volumes_with_a_given_mask() {
    let dir = fixture();
    let land = dir.join("land");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("again");
    let kd = format!("kmeans{K}");
    std::fs::create_dir_all(out.join(&kd)).unwrap();
    for e in std::fs::read_dir(land.join(&kd)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), out.join(&kd).join(e.file_name())).unwrap();
    }
    let last = EPOCHS.to_string();
    let k = K.to_string();
    let mask = land.join("mask.mrc");
    cli(&[
        "analyze-landscape",
        s(&dir.join("vae")),
        &last,
        "--sketch-size",
        &k,
        "-M",
        "3",
        "--linkage",
        "ward",
        "--pc-dim",
        "3",
        "--plot-dim",
        "2",
        "--skip-vol",
        "--mask",
        s(&mask),
        "-o",
        s(&out),
    ])
    .unwrap();
    // the same volumes and mask give the same PCA
    let (a, _) = pkl(&land.join(format!("vol_pca_{K}.pkl")));
    let (b, _) = pkl(&out.join(format!("vol_pca_{K}.pkl")));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
    }
    let states = ints(&out.join("sketch_clustering_ward_3/state_labels.pkl"));
    assert_eq!(states.len(), K);
    assert!((1..=3).all(|st| states.contains(&st)));
}

#[test]
fn bad_inputs_give_errors_naming_the_file() {
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let vae = dir.join("vae");
    let last = EPOCHS.to_string();
    // a missing epoch names its z file
    let err = cli(&[
        "analyze-landscape",
        s(&vae),
        "99",
        "-o",
        s(&tmp.path().join("a")),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("z.99.pkl"), "{err:#}");
    // a run without its weights names the weights file
    let run = tmp.path().join("noweights");
    std::fs::create_dir(&run).unwrap();
    for f in ["config.json".to_string(), format!("z.{last}.pkl")] {
        std::fs::copy(vae.join(&f), run.join(&f)).unwrap();
    }
    let err = cli(&[
        "analyze-landscape",
        s(&run),
        &last,
        "-o",
        s(&tmp.path().join("b")),
    ])
    .unwrap_err();
    let want = format!("weights.{last}.safetensors");
    assert!(format!("{err:#}").contains(&want), "{err:#}");
    // a mask of another box size names the mask and both sizes, before anything is written
    let small = tmp.path().join("mask8.mrc");
    write_mrc(&small, &vec![1.0f32; 512], (8, 8, 8), 1.0, true).unwrap();
    let out = tmp.path().join("c");
    let err = cli(&[
        "analyze-landscape",
        s(&vae),
        &last,
        "-N",
        "10",
        "-M",
        "2",
        "--pc-dim",
        "2",
        "--plot-dim",
        "2",
        "--mask",
        s(&small),
        "-o",
        s(&out),
    ])
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("mask8.mrc") && msg.contains("8×8×8") && msg.contains("16×16×16"),
        "{msg}"
    );
    assert!(!out.exists(), "output written before the mask was checked");
    // more PCs than sketch volumes
    let err = cli(&[
        "analyze-landscape",
        s(&vae),
        &last,
        "-N",
        "5",
        "--pc-dim",
        "6",
        "-M",
        "2",
        "-o",
        s(&out),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("--pc-dim"), "{err:#}");
    // a missing mask file
    let err = cli(&[
        "analyze-landscape",
        s(&vae),
        &last,
        "--mask",
        s(&tmp.path().join("nope.mrc")),
        "-o",
        s(&out),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("nope.mrc"), "{err:#}");
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cryodrgn")
}

#[test]
fn runs_on_a_cryodrgn_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("land");
    // epoch −1: the final z.pkl / weights.pkl of the cryoDRGN 4.3.1 run
    cli(&[
        "analyze_landscape",
        s(&fixtures().join("vae")),
        "-1",
        "-N",
        "12",
        "-M",
        "3",
        "--pc-dim",
        "4",
        "--plot-dim",
        "2",
        "-o",
        s(&out),
    ])
    .unwrap();
    for i in 1..=12 {
        let (_, d) = read_volume(&out.join(format!("kmeans12/vol_{i:03}.mrc")));
        assert_eq!(d, 16);
    }
    let (pc, shape) = pkl(&out.join("vol_pca_12.pkl"));
    assert_eq!(shape, vec![12, 4]);
    assert!(pc.iter().all(|v| v.is_finite()));
    let states = ints(&out.join("sketch_clustering_average_3/state_labels.pkl"));
    assert_eq!(states.len(), 12);
    assert!((1..=3).all(|st| states.contains(&st)));
    assert!(out.join("sketch_clustering_average_3/z_pca.png").exists());
}

/// 12 points in 3-D (rounded draws of `np.random.default_rng(5)`).
const X: [[f64; 3]; 12] = [
    [-2.406, -1.324, -0.124],
    [1.261, 1.136, 0.055],
    [-1.658, -0.785, 0.374],
    [4.904, 0.273, -0.617],
    [-2.875, 1.6, 0.101],
    [-5.196, -0.084, -0.582],
    [-1.888, -0.488, -0.357],
    [1.66, -0.063, -0.295],
    [1.229, 0.83, -0.822],
    [-0.77, -0.981, -0.087],
    [-3.868, 0.021, -0.019],
    [-0.913, -1.048, -0.198],
];

fn condensed_x() -> Vec<f64> {
    let mut c = vec![];
    for (i, a) in X.iter().enumerate() {
        for b in &X[i + 1..] {
            let d2: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
            c.push(d2.sqrt());
        }
    }
    c
}

#[test]
fn agglomerative_labels_match_sklearn() {
    // AgglomerativeClustering(n_clusters=M, linkage=…).fit_predict(X), scikit-learn 1.9.1
    let golden: [(Linkage, usize, [usize; 12]); 8] = [
        (Linkage::Average, 2, [1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1]),
        (Linkage::Average, 3, [0, 1, 0, 2, 0, 0, 0, 1, 1, 0, 0, 0]),
        (Linkage::Average, 5, [1, 3, 1, 2, 4, 0, 1, 3, 3, 1, 0, 1]),
        (Linkage::Complete, 3, [2, 0, 2, 0, 1, 1, 2, 0, 0, 2, 1, 2]),
        (Linkage::Complete, 5, [0, 1, 0, 3, 4, 2, 0, 1, 1, 0, 2, 0]),
        (Linkage::Single, 3, [0, 2, 0, 1, 0, 0, 0, 2, 2, 0, 0, 0]),
        (Linkage::Single, 5, [1, 2, 1, 3, 4, 0, 1, 2, 2, 1, 0, 1]),
        (Linkage::Ward, 5, [0, 1, 0, 3, 4, 2, 0, 1, 1, 0, 2, 0]),
    ];
    let c = condensed_x();
    for (link, m, want) in golden {
        let got = agglomerative(&c, 12, m, link).unwrap();
        assert_eq!(got, want, "{link:?} M = {m}");
    }
    assert!(agglomerative(&c, 12, 13, Linkage::Average).is_err());
    assert!(agglomerative(&c[1..], 12, 2, Linkage::Average).is_err());
}

#[test]
fn sketch_order_is_scipys_dendrogram_order() {
    // dendrogram(linkage(X, "average"))["leaves"], = seaborn clustermap's row order
    let children = linkage_tree(&condensed_x(), 12, Linkage::Average).unwrap();
    assert_eq!(
        dendrogram_leaves(&children, 12),
        vec![9, 11, 0, 2, 6, 4, 5, 10, 3, 7, 1, 8]
    );
}

#[test]
fn subspace_eigen_solver_matches_dense_jacobi() {
    // a 300×300 Gram matrix of rank 40 with decaying spectrum (above the dense path's 256)
    let (n, r) = (300, 40);
    let mut state = 12345u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let f: Vec<f64> = (0..n * r)
        .map(|i| rnd() * (0.8f64).powi((i % r) as i32))
        .collect();
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..r).map(|k| f[i * r + k] * f[j * r + k]).sum();
        }
    }
    let k = 6;
    let (vals, vecs) = top_eigen(&g, n, k).unwrap();
    let (dv, dvec) = symmetric_eigen(&g, n);
    for i in 0..k {
        assert!(
            (vals[i] - dv[i]).abs() <= 1e-8 * dv[0],
            "λ{i}: {} vs {}",
            vals[i],
            dv[i]
        );
        let dot: f64 = (0..n).map(|j| vecs[i * n + j] * dvec[i * n + j]).sum();
        assert!(
            dot.abs() > 1.0 - 1e-6,
            "eigenvector {i}: |cos| = {}",
            dot.abs()
        );
    }
}

/// Timing at a larger size (K = 300 sketch volumes of 64³, above the dense eigen-solver's 256):
/// synthetic volumes (a blob that moves with z₁ and grows with z₂), so no model is decoded.
/// Run with `cargo test --release --test landscape -- --ignored --nocapture`.
#[test]
#[ignore = "timing at a larger size (~300 MB of temporary volumes); run by hand"]
fn landscape_at_scale() {
    use cryofield::analysis::landscape::{
        run_landscape, LandscapeOptions, MaskChoice, VolumeSource,
    };
    let (n, k, d) = (3000, 300, 64);
    let mut st = 7u64;
    let mut rnd = || {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (st >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let z: Vec<f32> = (0..2 * n).map(|_| rnd() as f32).collect();
    let mut decode = |zi: &[f32]| -> cryofield::Result<Vec<f32>> {
        let c = [
            d as f32 / 2.0 + 12.0 * zi[0],
            d as f32 / 2.0,
            d as f32 / 2.0,
        ];
        let s2 = (4.0 + 2.0 * zi[1]).powi(2);
        Ok((0..d * d * d)
            .map(|i| {
                let (x, y, w) = ((i % d) as f32, ((i / d) % d) as f32, (i / (d * d)) as f32);
                let r2 = (x - c[0]).powi(2) + (y - c[1]).powi(2) + (w - c[2]).powi(2);
                (-r2 / (2.0 * s2)).exp()
                    + (-((x - 20.0).powi(2) + (y - 40.0).powi(2) + (w - 32.0).powi(2)) / 32.0).exp()
            })
            .collect())
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let rep = run_landscape(
        &z,
        n,
        2,
        VolumeSource::Decode {
            d,
            decode: &mut decode,
        },
        None,
        &LandscapeOptions {
            outdir: tmp.path().to_path_buf(),
            k,
            vol_start_index: 1,
            apix: None,
            mask: MaskChoice::Generate {
                thresh: None,
                dilate: 5.0,
                cosine_edge: 0.0,
            },
            pc_dim: 20,
            plot_dim: 5,
            m: 10,
            linkage: Linkage::Average,
            vol_ind: None,
            particle_ind: None,
            seed: 0,
        },
    )
    .unwrap();
    eprintln!(
        "K = {k}, {d}³, {} masked voxels: {:.1} s; explained variance ratio {:?}",
        rep.mask_voxels,
        t.elapsed().as_secs_f64(),
        &rep.pca.explained_variance_ratio[..4]
    );
    // the two latent directions are the two leading volume PCs
    assert!(rep.pca.explained_variance_ratio[..2].iter().sum::<f64>() > 0.8);
}
