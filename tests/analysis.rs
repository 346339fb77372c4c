//! Latent-space analysis: PCA, k-means, t-SNE, traversals, run_basic (with UMAP) and the
//! traversal CLIs.

use std::path::{Path, PathBuf};
use std::process::Command;

use cryofield::analysis::embed::{tsne, TsneOptions};
use cryofield::analysis::kmeans::{kmeans, nearest_points};
use cryofield::analysis::latent::load_z;
use cryofield::analysis::pca::{pc_traj_values, Pca};
use cryofield::analysis::traversal::{direct_traversal, graph_traversal, knn_graph};
use cryofield::io::pkl::{read_pkl, PyValue};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn gauss(rng: &mut StdRng) -> f32 {
    StandardNormal.sample(rng)
}

/// Three blobs (σ = 0.3) around far-apart centers in 5-D, 200 points each: (z, true labels).
fn blobs(seed: u64) -> (Vec<f32>, Vec<usize>) {
    let centers = [
        [0.0f32, 0.0, 0.0, 0.0, 0.0],
        [10.0, 0.0, 5.0, 0.0, 0.0],
        [0.0, -10.0, 0.0, 8.0, 3.0],
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut z, mut lab) = (Vec::new(), Vec::new());
    for i in 0..600 {
        let c = i % 3;
        for &m in &centers[c] {
            z.push(m + 0.3 * gauss(&mut rng));
        }
        lab.push(c);
    }
    (z, lab)
}

fn data_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/zvals_het-8_4k.pkl")
}

#[test]
fn pca_recovers_known_covariance() {
    // z = A·g with g ~ N(0, I): covariance diag(9, 4, 1, 0.25) rotated by 45° in the (0,1) plane.
    let mut rng = StdRng::seed_from_u64(1);
    let sd = [3.0f32, 2.0, 1.0, 0.5];
    let (c, s) = (
        std::f32::consts::FRAC_1_SQRT_2,
        std::f32::consts::FRAC_1_SQRT_2,
    );
    let n = 200_000;
    let mut z = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let g: Vec<f32> = sd.iter().map(|&d| d * gauss(&mut rng)).collect();
        z.extend([
            c * g[0] - s * g[1] + 1.0,
            s * g[0] + c * g[1] - 2.0,
            g[2],
            g[3],
        ]);
    }
    let p = Pca::fit(&z, n, 4).unwrap();
    let expect = [9.0, 4.0, 1.0, 0.25];
    for (v, e) in p.explained_variance.iter().zip(expect) {
        // sampling error of a variance ≈ e·√(2/n) ≈ 0.3 % of e; allow 2 %.
        assert!((v - e).abs() < 0.02 * e, "{:?}", p.explained_variance);
    }
    let ratio_sum: f64 = p.explained_variance_ratio.iter().sum();
    assert!((ratio_sum - 1.0).abs() < 1e-12);
    let axes = [
        [c as f64, s as f64, 0.0, 0.0],
        [-s as f64, c as f64, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    for (k, a) in axes.iter().enumerate() {
        let dot: f64 = (0..4).map(|j| p.components[k * 4 + j] * a[j]).sum();
        assert!(dot.abs() > 0.999, "PC{} · axis = {dot}", k + 1);
    }
    assert!((p.mean[0] - 1.0).abs() < 0.03 && (p.mean[1] + 2.0).abs() < 0.03);
    // transform ∘ inverse_transform is the identity.
    let back = p.inverse_transform(&p.transform(&z[..8]));
    for (a, b) in back.iter().zip(&z[..8]) {
        assert!((a - *b as f64).abs() < 1e-4);
    }
}

#[test]
fn pca_matches_sklearn_on_real_latents() {
    let lat = load_z(data_file()).unwrap();
    assert_eq!((lat.n, lat.zdim), (4549, 8));
    let p = Pca::fit(&lat.z, lat.n, lat.zdim).unwrap();
    // sklearn 1.9 PCA(8).fit(z.astype(float64)).explained_variance_ratio_ / explained_variance_
    let ratio = [
        0.322573640273,
        0.298052626181,
        0.193515975759,
        0.099980899514,
        0.078403545679,
        0.004562394321,
        0.001920009533,
        0.000990908739,
    ];
    let var = [
        4.067485056547,
        3.758287881278,
        2.44013534069,
        1.260706902054,
        0.988627744534,
        0.0575294085,
        0.024210316994,
        0.012494841447,
    ];
    for k in 0..8 {
        assert!(
            (p.explained_variance_ratio[k] - ratio[k]).abs() < 1e-9,
            "ratio {k}"
        );
        assert!(
            (p.explained_variance[k] - var[k]).abs() < 1e-8 * var[0],
            "var {k}"
        );
    }
    // get_pc_traj(pca, 8, 10, 1, *np.percentile(pc[:,0], (5, 95))): first and last rows, and
    // row 3 of the PC2 trajectory with percentile spacing (same signs: sklearn's svd_flip).
    let proj = p.transform(&lat.z);
    let pc1: Vec<f64> = proj.iter().step_by(8).copied().collect();
    let pc2: Vec<f64> = proj.iter().skip(1).step_by(8).copied().collect();
    let v = pc_traj_values(&pc1, 10, (5.0, 95.0), false).unwrap();
    assert!((v[0] + 2.8932509542357914).abs() < 1e-9 && (v[9] - 3.31878756684272).abs() < 1e-9);
    let t = p.pc_traj(1, &v).unwrap();
    let first = [
        -2.224947403028,
        0.066168285284,
        0.506773215172,
        -0.42183955207,
        1.288679686342,
        -0.061642085191,
        0.009290509157,
        0.479557594351,
    ];
    let last = [
        2.942522956939,
        0.015717988411,
        -0.601566677618,
        0.508360629245,
        -1.704066351648,
        -0.014025888018,
        -0.006666194471,
        -0.432246645586,
    ];
    for j in 0..8 {
        assert!((t[j] - first[j]).abs() < 1e-8, "first[{j}] = {}", t[j]);
        assert!(
            (t[72 + j] - last[j]).abs() < 1e-8,
            "last[{j}] = {}",
            t[72 + j]
        );
    }
    let v2 = pc_traj_values(&pc2, 10, (5.0, 95.0), true).unwrap();
    let t2 = p.pc_traj(2, &v2).unwrap();
    let row3 = [
        -0.067063523711,
        0.063087663939,
        -0.355388177081,
        0.252980230128,
        -0.287004799466,
        -0.03457054663,
        -0.018356354142,
        -0.09226572449,
    ];
    for j in 0..8 {
        assert!((t2[24 + j] - row3[j]).abs() < 1e-8, "pc2 row3[{j}]");
    }
}

/// Fraction of point pairs on which two labelings agree about "same cluster" (Rand index).
fn rand_index(a: &[usize], b: &[usize]) -> f64 {
    let (mut agree, mut total) = (0u64, 0u64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            agree += u64::from((a[i] == a[j]) == (b[i] == b[j]));
            total += 1;
        }
    }
    agree as f64 / total as f64
}

#[test]
fn kmeans_recovers_blobs_and_nearest_points_are_members() {
    let (z, truth) = blobs(7);
    let km = kmeans(&z, 600, 5, 3, 100, 0).unwrap();
    assert_eq!(rand_index(&km.labels, &truth), 1.0);
    let near = nearest_points(&z, 5, &km.centers);
    for (c, &i) in near.iter().enumerate() {
        assert_eq!(
            km.labels[i], c,
            "nearest point of center {c} is in its cluster"
        );
        let d2: f64 = (0..5)
            .map(|j| (z[i * 5 + j] as f64 - km.centers[c * 5 + j]).powi(2))
            .sum();
        // a member near the center: well inside the blob (σ = 0.3 per dim)
        assert!(d2 < 0.3, "center {c} nearest point at d² = {d2}");
        // and nearer than every other point (brute force check)
        for k in 0..600 {
            let dk: f64 = (0..5)
                .map(|j| (z[k * 5 + j] as f64 - km.centers[c * 5 + j]).powi(2))
                .sum();
            assert!(dk >= d2);
        }
    }
    // Same seed, same result.
    assert_eq!(kmeans(&z, 600, 5, 3, 100, 0).unwrap(), km);
}

#[test]
fn tsne_separates_blobs() {
    let (z, truth) = blobs(3);
    let opts = TsneOptions {
        max_points: 450, // 150 points are placed by nearest neighbour
        seed: 5,
        ..TsneOptions::default()
    };
    let (y, sub) = tsne(&z, 600, 5, &opts).unwrap();
    assert_eq!(sub.len(), 450);
    assert_eq!(y.len(), 1200);
    // Silhouette-like check: every point is closer to its own blob's centroid than to the
    // others, by a wide margin.
    let mut cent = [[0.0f64; 2]; 3];
    let mut cnt = [0usize; 3];
    for i in 0..600 {
        cent[truth[i]][0] += y[2 * i];
        cent[truth[i]][1] += y[2 * i + 1];
        cnt[truth[i]] += 1;
    }
    for c in 0..3 {
        cent[c][0] /= cnt[c] as f64;
        cent[c][1] /= cnt[c] as f64;
    }
    let d = |i: usize, c: usize| {
        ((y[2 * i] - cent[c][0]).powi(2) + (y[2 * i + 1] - cent[c][1]).powi(2)).sqrt()
    };
    let mut worst = f64::INFINITY;
    for (i, &t) in truth.iter().enumerate() {
        let own = d(i, t);
        let other = (0..3)
            .filter(|&c| c != t)
            .map(|c| d(i, c))
            .fold(f64::INFINITY, f64::min);
        worst = worst.min((other - own) / other.max(own));
    }
    assert!(worst > 0.5, "worst silhouette-like score {worst}");
}

/// Points along a U: down the left arm x = −1, around a half circle, up the right arm x = +1.
/// The arms are 2 apart; consecutive points are ~0.02 apart. Returns (z, arc position).
fn u_shape() -> (Vec<f32>, Vec<f64>) {
    let mut z = Vec::new();
    let mut arc = Vec::new();
    let step = 0.02f64;
    let arm = 4.0f64;
    let total = 2.0 * arm + std::f64::consts::PI;
    let mut rng = StdRng::seed_from_u64(11);
    let m = (total / step) as usize;
    for k in 0..=m {
        let s = k as f64 * step;
        let (x, y) = if s < arm {
            (-1.0, arm - s)
        } else if s < arm + std::f64::consts::PI {
            let t = s - arm; // angle from the left
            (-t.cos(), -t.sin())
        } else {
            (1.0, s - arm - std::f64::consts::PI)
        };
        let jitter = 0.003 * gauss(&mut rng) as f64;
        z.extend([x as f32, (y + jitter) as f32, 0.001 * gauss(&mut rng)]);
        arc.push(s);
    }
    (z, arc)
}

#[test]
fn graph_traversal_follows_the_u() {
    let (z, arc) = u_shape();
    let n = arc.len();
    let g = knn_graph(&z, n, 3, 10, Some(5.0)).unwrap();
    // anchors: top of the left arm and top of the right arm, 2 apart in a straight line
    let (a, b) = (0, n - 1);
    let (path, legs) = graph_traversal(&z, 3, &g, &[a, b]).unwrap();
    assert_eq!((path[0], *path.last().unwrap()), (a, b));
    let arc_len = arc[b] - arc[a];
    assert!((legs[0].euclidean - 2.0).abs() < 0.05);
    assert!(
        (legs[0].path_length - arc_len).abs() < 0.05 * arc_len,
        "path {} vs arc {arc_len}",
        legs[0].path_length
    );
    // No hop is longer than a few sampling steps (never across the gap), and the arc position
    // advances monotonically.
    for w in path.windows(2) {
        let d: f64 = (0..3)
            .map(|j| (z[w[0] * 3 + j] - z[w[1] * 3 + j]) as f64)
            .map(|t| t * t)
            .sum::<f64>()
            .sqrt();
        assert!(d < 0.1, "hop {} -> {} of length {d}", w[0], w[1]);
        assert!(arc[w[1]] > arc[w[0]]);
    }
}

#[test]
fn direct_traversal_ends_at_anchors() {
    let (z, _) = blobs(2);
    let p = direct_traversal(&z, 5, &[4, 100, 4], 7).unwrap();
    assert_eq!(p.len(), (2 * 6 + 1) * 5);
    assert_eq!(&p[..5], &z[20..25]);
    assert_eq!(&p[6 * 5..7 * 5], &z[500..505]);
    assert_eq!(&p[12 * 5..], &z[20..25]);
}

#[test]
fn run_basic_on_real_latents() {
    let lat = load_z(data_file()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("analyze");
    let rep = cryofield::analysis::run_basic(&lat.z, lat.n, lat.zdim, &out, 0).unwrap();
    for f in [
        "z_pca.png",
        "pc1_hist.png",
        "pc2_hist.png",
        "umap.png",
        "umap.pkl",
        "kmeans20/labels.pkl",
        "kmeans20/centers.txt",
        "kmeans20/centers_ind.txt",
        "kmeans20/z_pca.png",
        "kmeans20/umap.png",
        "pc1/z_values.txt",
        "pc2/z_values.txt",
        "pc1/pca_traversal.png",
        "pc1/umap_traversal.png",
        "pc2/umap_traversal_connected.png",
        "z_pca_hexbin.png",
        "umap_hexbin.png",
        "kmeans20/z_pca_hex.png",
        "kmeans20/umap_hex.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let labels = read_pkl(out.join("kmeans20/labels.pkl")).unwrap();
    let PyValue::Array(a) = labels else {
        panic!("labels.pkl is not an array")
    };
    assert_eq!(a.shape, vec![4549]);
    let l = a.to_i64().unwrap();
    assert!(l.iter().all(|&v| (0..20).contains(&v)));
    let ind: Vec<usize> = std::fs::read_to_string(out.join("kmeans20/centers_ind.txt"))
        .unwrap()
        .lines()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(ind, rep.centers_ind);
    let centers = load_z(out.join("kmeans20/centers.txt")).unwrap();
    assert_eq!((centers.n, centers.zdim), (20, 8));
    for (k, &i) in ind.iter().enumerate() {
        assert_eq!(&centers.z[k * 8..(k + 1) * 8], &lat.z[i * 8..(i + 1) * 8]);
    }
    // umap.pkl as the reference's: a float32 (N, 2) array, the embedding run_basic returned.
    let PyValue::Array(u) = read_pkl(out.join("umap.pkl")).unwrap() else {
        panic!("umap.pkl is not an array")
    };
    assert_eq!(
        (u.shape.as_slice(), u.data.descr()),
        ([4549, 2].as_slice(), "<f4")
    );
    let emb = rep.embedding.as_ref().unwrap();
    let u = u.to_f32();
    assert!(u.iter().all(|v| v.is_finite()));
    assert!(u.iter().zip(emb).all(|(&a, &b)| a == b as f32));
    let pc1 = load_z(out.join("pc1/z_values.txt")).unwrap();
    assert_eq!((pc1.n, pc1.zdim), (10, 8));
    assert!((pc1.z[0] as f64 + 2.224947403028).abs() < 1e-6);
    assert_eq!(rep.volume_jobs.len(), 3);
    assert_eq!(rep.volume_jobs[2].z, centers.z);
    if let Ok(keep) = std::env::var("CRYOFIELD_KEEP_ANALYSIS") {
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::rename(&out, keep).unwrap();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cryofield"))
}

#[test]
fn traversal_commands_write_parsable_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zf = data_file();
    let st = bin()
        .args([
            "pc-traversal",
            zf.to_str().unwrap(),
            "--pc",
            "1",
            "2",
            "-n",
            "7",
            "-o",
        ])
        .arg(d.join("zpaths"))
        .status()
        .unwrap();
    assert!(st.success());
    let p1 = load_z(d.join("zpaths/pc1.txt")).unwrap();
    assert_eq!((p1.n, p1.zdim), (7, 8));
    assert!(!d.join("zpaths/pc3.txt").exists());

    let st = bin()
        .args([
            "direct-traversal",
            zf.to_str().unwrap(),
            "--anchors",
            "3",
            "40",
            "-n",
            "5",
            "--loop",
            "-o",
        ])
        .arg(d.join("direct/z-path.txt"))
        .status()
        .unwrap();
    assert!(st.success());
    let lat = load_z(&zf).unwrap();
    let dp = load_z(d.join("direct/z-path.txt")).unwrap();
    assert_eq!((dp.n, dp.zdim), (9, 8));
    assert_eq!(&dp.z[..8], &lat.z[24..32]);
    assert_eq!(&dp.z[4 * 8..5 * 8], &lat.z[320..328]);

    std::fs::write(d.join("anchors.txt"), "3\n40\n").unwrap();
    let st = bin()
        .args(["graph-traversal", zf.to_str().unwrap(), "--anchors"])
        .arg(d.join("anchors.txt"))
        .arg("-o")
        .arg(d.join("g/z-path.txt"))
        .arg("--outind")
        .arg(d.join("g/ind.txt"))
        .status()
        .unwrap();
    assert!(st.success());
    let ind: Vec<usize> = std::fs::read_to_string(d.join("g/ind.txt"))
        .unwrap()
        .lines()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!((ind[0], *ind.last().unwrap()), (3, 40));
    let gp = load_z(d.join("g/z-path.txt")).unwrap();
    assert_eq!(gp.n, ind.len());
    for (k, &i) in ind.iter().enumerate() {
        assert_eq!(&gp.z[k * 8..(k + 1) * 8], &lat.z[i * 8..(i + 1) * 8]);
    }
    // A bad anchor is an error, not a panic.
    let out = bin()
        .args([
            "graph-traversal",
            zf.to_str().unwrap(),
            "--anchors",
            "3",
            "999999",
            "-o",
        ])
        .arg(d.join("bad.txt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("anchor"));
}
