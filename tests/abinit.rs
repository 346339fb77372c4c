//! Pose search and ab initio reconstruction: the `pose_scores` primitive against its direct f64
//! sum, the search against the true volume of noiseless simulated images (isolating the search
//! from training), the bound, slice models against the exact decoder, and a tiny `abinit-homo` /
//! `abinit-het` run through the CLI.

use cryofield::autodiff::ParamStore;
use cryofield::backend::cpu::CpuBackend;
use cryofield::backend::pose_score::pose_scores_naive;
use cryofield::backend::{Activation, Backend, Domain};
use cryofield::fourier::fft::{ht2_center, symmetrize_ht};
use cryofield::fourier::lattice::Lattice;
use cryofield::fourier::slice::HartleyVolume;
use cryofield::geometry::quaternion::rotation_angle;
use cryofield::model::{Decoder, DecoderConfig};
use cryofield::nn::PeKind;
use cryofield::pose::search::{PoseSearch, SearchBatch, SearchConfig, TransRefine};
use cryofield::pose::slices::{
    DecoderSlices, GridCache, LatentGridSlices, SliceModel, VolumeSlices,
};
use cryofield::simulate::dataset::{draw_params, CtfSpec, ImageParams, Projection, Projector};
use rand::{rngs::StdRng, Rng, SeedableRng};

mod common;

/// Random values in [−1, 1).
fn rand_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The fast CPU primitive against the direct f64 sum, shared and per-image slices, with and
/// without CTF. Tolerance: the GEMM form cancels ‖cs‖² + ‖x‖² (here ~P/3 each) in f32, so
/// |fast − exact| ≤ 1e−5·(‖cs‖² + ‖x‖²) + 1e−4 (≈ 100 f32 ulps of the terms).
#[test]
fn pose_scores_matches_direct_sum() {
    let be = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(7);
    for &(nb, nr, nt, p, per_image, with_ctf) in &[
        (3, 5, 7, 33, false, false),
        (3, 5, 7, 33, false, true),
        (2, 8, 49, 101, true, true),
        (4, 1, 1, 5, true, false),
        (1, 70, 9, 257, false, true),
    ] {
        let ns = if per_image { nb } else { 1 };
        let s = rand_vec(&mut rng, ns * nr * p);
        let x = rand_vec(&mut rng, nb * nt * p);
        let c = rand_vec(&mut rng, nb * p);
        let (sb, xb, cb) = (
            be.upload(&s).unwrap(),
            be.upload(&x).unwrap(),
            be.upload(&c).unwrap(),
        );
        let ctf = with_ctf.then_some(&cb);
        let mut fast = be.zeros(nb * nr * nt).unwrap();
        be.pose_scores(&sb, per_image, &xb, ctf, nb, nr, nt, p, &mut fast)
            .unwrap();
        let mut naive = be.zeros(nb * nr * nt).unwrap();
        pose_scores_naive(&be, &sb, per_image, &xb, ctf, nb, nr, nt, p, &mut naive).unwrap();
        // an independent f64 loop for the naive body itself
        for b in 0..nb {
            let sbi = if per_image { b } else { 0 };
            for r in 0..nr {
                for t in 0..nt {
                    let (mut e, mut mag) = (0.0f64, 0.0f64);
                    for k in 0..p {
                        let cs = if with_ctf { c[b * p + k] as f64 } else { 1.0 }
                            * s[(sbi * nr + r) * p + k] as f64;
                        let xv = x[(b * nt + t) * p + k] as f64;
                        e += (cs - xv) * (cs - xv);
                        mag += cs * cs + xv * xv;
                    }
                    let i = (b * nr + r) * nt + t;
                    let tol = 1e-5 * mag + 1e-4;
                    assert!(
                        (fast[i] as f64 - e).abs() <= tol,
                        "fast ({nb},{nr},{nt},{p}) [{b},{r},{t}]: {} vs {e}",
                        fast[i]
                    );
                    assert!((naive[i] as f64 - e).abs() <= 1e-6 * e.max(1.0));
                }
            }
        }
    }
    // shapes are checked
    let z = be.zeros(10).unwrap();
    let mut out = be.zeros(1).unwrap();
    assert!(be
        .pose_scores(&z, false, &z, None, 1, 1, 1, 5, &mut out)
        .is_err());
}

/// An asymmetric volume of a few Gaussian blobs (no rotational symmetry), D³, z slowest.
fn blob_volume(d: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let h = (d / 2) as f32;
    let blobs: Vec<([f32; 3], f32, f32)> = (0..6)
        .map(|_| {
            let c = [0, 1, 2].map(|_| rng.random_range(-0.25f32..0.25) * d as f32);
            (
                c,
                rng.random_range(1.5f32..3.0) * d as f32 / 32.0,
                rng.random_range(0.5f32..1.0),
            )
        })
        .collect();
    let mut v = vec![0f32; d * d * d];
    for z in 0..d {
        for y in 0..d {
            for x in 0..d {
                let p = [x as f32 - h, y as f32 - h, z as f32 - h];
                v[(z * d + y) * d + x] = blobs
                    .iter()
                    .map(|(c, s, a)| {
                        let r2: f32 = (0..3).map(|i| (p[i] - c[i]).powi(2)).sum();
                        a * (-r2 / (2.0 * s * s)).exp()
                    })
                    .sum();
            }
        }
    }
    v
}

/// Noiseless images of `vol` (no CTF unless given) as symmetrized Hartley images
/// (n, (D+1)²), with their truth.
fn simulate(
    vol: &[f32],
    d: usize,
    n: usize,
    t_extent: f32,
    ctf: &CtfSpec,
    seed: u64,
) -> (Vec<f32>, Vec<ImageParams>, Option<Vec<f32>>) {
    let hv = [HartleyVolume::new(vol, d, 2)];
    let proj = Projector::new(Projection::Fourier(&hv), d).unwrap();
    let params = draw_params(n, 1, d, 2.0, t_extent, ctf, seed);
    let imgs = proj.render_batch(&params, None);
    let ht = symmetrize_ht(&ht2_center(&imgs, d), d);
    let ctf_full = params.first().and_then(|p| p.ctf).map(|_| {
        let lat = Lattice::for_image(d, true).unwrap();
        params
            .iter()
            .flat_map(|p| {
                let row = p.ctf.unwrap();
                let f = cryofield::fourier::ctf::lattice_freqs_angstrom(&lat, row[1]);
                let mut c = vec![0f32; f.len()];
                cryofield::fourier::ctf::compute_ctf_into(
                    &f,
                    &cryofield::fourier::ctf::Ctf::from_row(&row),
                    &mut c,
                );
                c
            })
            .collect()
    });
    (ht, params, ctf_full)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (median rotation error in degrees, median translation error in pixels).
fn pose_errors(found_rot: &[[f32; 9]], found_t: &[[f32; 2]], truth: &[ImageParams]) -> (f64, f64) {
    let rot: Vec<f64> = found_rot
        .iter()
        .zip(truth)
        .map(|(r, p)| rotation_angle(&r.map(|v| v as f64), &p.rot.map(|v| v as f64)).to_degrees())
        .collect();
    let tr: Vec<f64> = found_t
        .iter()
        .zip(truth)
        .map(|(t, p)| {
            (((t[0] - p.trans_px[0]).powi(2) + (t[1] - p.trans_px[1]).powi(2)) as f64).sqrt()
        })
        .collect();
    (median(rot), median(tr))
}

/// Small settings for tests: base grid at resolution 1 (576 rotations, 30°), 7×7 shifts over
/// ±4 px, 4 subdivisions (to resolution 5, ≈ 1.9°), L 8 → 12 at D = 32.
fn small_cfg() -> SearchConfig {
    SearchConfig {
        base_healpy: 1,
        t_extent: 4.0,
        t_ngrid: 7,
        niter: 4,
        nkeptposes: 8,
        l_min: 8,
        l_max: 12,
        ..SearchConfig::default()
    }
}

/// The search against the volume that made noiseless images recovers their poses: rotation
/// error within the final grid spacing (resolution 5: 1.9° between neighbours), shifts within
/// a fraction of a pixel (final shift step 8/7/16 = 0.07 px).
#[test]
fn search_recovers_poses_of_noiseless_images() {
    let d = 32;
    let vol = blob_volume(d, 1);
    let (ht, truth, _) = simulate(&vol, d, 24, 3.0, &CtfSpec::None, 11);
    let model = VolumeSlices::from_volume(&vol, d, 2);
    let be = CpuBackend::<f32>::new();
    let mut ps = PoseSearch::new(small_cfg(), d).unwrap();
    let batch = SearchBatch {
        ht: &ht,
        ctf: None,
        tilt: None,
    };
    let res = ps.search(&be, &batch, &model, &model).unwrap();
    let (rot_deg, tr_px) = pose_errors(&res.rot, &res.trans_px, &truth);
    assert!(rot_deg < 2.0, "median rotation error {rot_deg}°");
    assert!(tr_px < 0.25, "median translation error {tr_px} px");
    // the last iteration's best candidates, best first
    for (b, top) in res.top.iter().enumerate() {
        assert_eq!(top.len(), 8);
        assert_eq!((top[0].rot, top[0].trans_px), (res.rot[b], res.trans_px[b]));
        assert!(top.windows(2).all(|w| w[0].err <= w[1].err));
    }
    // 576 rotations × 49 shifts at the base, then 8 kept × 8 children × 49 offsets per iteration
    let per_image = 576 * 49 + 3 * 8 * 8 * 49 + 8 * 8 * 49;
    assert_eq!(res.stats.scores, 24 * per_image as u64);
}

/// Tilt pairs: each pose is scored on the image and its tilted partner (slice at tilt·R);
/// noiseless pairs of the true volume give back the poses.
#[test]
fn search_with_tilt_pairs() {
    let d = 32;
    let vol = blob_volume(d, 6);
    let hv = [HartleyVolume::new(&vol, d, 2)];
    let proj = Projector::new(Projection::Fourier(&hv), d).unwrap();
    let truth = draw_params(8, 1, d, 2.0, 2.0, &CtfSpec::None, 9);
    let tilt = cryofield::simulate::dataset::xrot(45.0);
    let ht = symmetrize_ht(&ht2_center(&proj.render_batch(&truth, None), d), d);
    let htt = symmetrize_ht(&ht2_center(&proj.render_batch(&truth, Some(&tilt)), d), d);
    let model = VolumeSlices::from_volume(&vol, d, 2);
    let be = CpuBackend::<f32>::new();
    let mut ps = PoseSearch::new(small_cfg(), d).unwrap();
    let batch = SearchBatch {
        ht: &ht,
        ctf: None,
        tilt: Some((&htt, tilt.map(|v| v as f32))),
    };
    let res = ps.search(&be, &batch, &model, &model).unwrap();
    let (rot_deg, tr_px) = pose_errors(&res.rot, &res.trans_px, &truth);
    assert!(rot_deg < 2.0, "median rotation error {rot_deg}°");
    assert!(tr_px < 0.25, "median translation error {tr_px} px");
}

/// With a CTF and the 4-children translation refinement the poses are still recovered; with the
/// bound, candidates are pruned (fewer scores) and the poses stay close to the unpruned ones.
#[test]
fn search_with_ctf_children_and_bound() {
    let d = 32;
    let vol = blob_volume(d, 2);
    let spec = CtfSpec::Defocus {
        lo: 8000.0,
        hi: 15000.0,
        voltage_kv: 300.0,
        cs_mm: 2.7,
        amplitude_contrast: 0.1,
    };
    let (ht, truth, ctf) = simulate(&vol, d, 12, 2.0, &spec, 5);
    let model = VolumeSlices::from_volume(&vol, d, 2);
    let be = CpuBackend::<f32>::new();
    let batch = SearchBatch {
        ht: &ht,
        ctf: ctf.as_deref(),
        tilt: None,
    };
    let cfg = SearchConfig {
        trans_refine: TransRefine::Children,
        base_healpy: 2,
        niter: 3,
        ..small_cfg()
    };
    let mut ps = PoseSearch::new(cfg.clone(), d).unwrap();
    let plain = ps.search(&be, &batch, &model, &model).unwrap();
    let (rot_deg, tr_px) = pose_errors(&plain.rot, &plain.trans_px, &truth);
    assert!(rot_deg < 2.5, "median rotation error {rot_deg}°");
    assert!(tr_px < 0.35, "median translation error {tr_px} px");
    let mut psb = PoseSearch::new(SearchConfig { bound: true, ..cfg }, d).unwrap();
    let bounded = psb.search(&be, &batch, &model, &model).unwrap();
    assert!(bounded.stats.pruned > 0, "the bound pruned nothing");
    assert!(bounded.stats.scores < plain.stats.scores);
    let (rot_b, tr_b) = pose_errors(&bounded.rot, &bounded.trans_px, &truth);
    // On these smooth blobs nearly all power is below L = 8, so the bound is close to keeping
    // only the best candidate (Algorithm 1 is exact per level, not across levels): most images
    // still end within two final grid steps of the unpruned answer.
    assert!(
        rot_b < 4.0 && tr_b < 0.35,
        "with the bound: {rot_b}°, {tr_b} px"
    );
    let agree = bounded
        .rot
        .iter()
        .zip(&plain.rot)
        .filter(|(a, b)| {
            rotation_angle(&a.map(|v| v as f64), &b.map(|v| v as f64)).to_degrees() < 4.0
        })
        .count();
    assert!(
        agree >= 9,
        "only {agree}/12 images agree with and without the bound"
    );
}

/// A small random decoder (f32 CPU backend).
fn small_decoder(
    be: &CpuBackend<f32>,
    domain: Domain,
    zdim: usize,
    d: usize,
) -> (ParamStore<CpuBackend<f32>>, Decoder) {
    let mut store = ParamStore::new();
    let mut rng = StdRng::seed_from_u64(3);
    let cfg = DecoderConfig {
        d,
        layers: 2,
        dim: 16,
        domain,
        pe: PeKind::Gaussian,
        pe_dim: None,
        feat_sigma: 0.5,
        activation: Activation::Relu,
        zdim,
    };
    let dec = Decoder::new(be, &mut store, "", &cfg, &mut rng).unwrap();
    (store, dec)
}

/// Rotations that map the lattice onto itself (identity, 90° about z, x → z): there the
/// interpolating slice models sample grid points only and must equal the exact decoder.
fn lattice_rotations() -> Vec<[f32; 9]> {
    vec![
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        [0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0],
    ]
}

fn band_coords(d: usize, l: usize) -> Vec<[f32; 3]> {
    let lat = Lattice::for_image(d, true).unwrap();
    let m = lat.circular_mask(l as f32).unwrap();
    lat.masked_coords(&m)
}

/// max |a − b| / max |b|
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// The decoder's volume (homogeneous) and latent grid (heterogeneous) give the exact decoder's
/// slices at lattice-preserving rotations (up to the FFT round trip in f32), for both domains.
/// (Fourier domain: not the 90° turn about z, which maps the z = 0 plane onto itself with the
/// evaluated and the Hermitian-filled halves swapped; an untrained network is not Hermitian
/// there, so the two evaluation orders legitimately differ.)
#[test]
fn interpolating_slice_models_match_the_decoder_on_the_lattice() {
    let be = CpuBackend::<f32>::new();
    let d = 16;
    let coords = band_coords(d, 6);
    for domain in [Domain::Hartley, Domain::Fourier] {
        let mut rots = lattice_rotations();
        if domain == Domain::Fourier {
            rots.remove(1);
        }
        let (store, dec) = small_decoder(&be, domain, 0, d);
        let exact = DecoderSlices {
            be: &be,
            store: &store,
            decoder: &dec,
            z: None,
        };
        assert!(exact.shared());
        let want = exact.slices(&coords, &rots, &[]).unwrap();
        let vol = VolumeSlices::from_decoder(&be, &store, &dec, 2, 6).unwrap();
        let got = vol.slices(&coords, &rots, &[]).unwrap();
        let e = rel_err(&got, &want);
        assert!(e < 1e-4, "{domain:?} volume slices: relative error {e}");

        let (store, dec) = small_decoder(&be, domain, 2, d);
        let z = [0.3f32, -0.7, 1.1, 0.2];
        let owners: Vec<usize> = (0..rots.len() * 2).map(|i| i % 2).collect();
        let rr: Vec<[f32; 9]> = (0..rots.len() * 2).map(|i| rots[i / 2]).collect();
        let exact = DecoderSlices {
            be: &be,
            store: &store,
            decoder: &dec,
            z: Some(&z),
        };
        assert!(!exact.shared());
        let want = exact.slices(&coords, &rr, &owners).unwrap();
        let grid = LatentGridSlices {
            be: &be,
            store: &store,
            decoder: &dec,
            z: &z,
            oversample: 2,
            min_radius: 0.0,
            cache: None,
        };
        let got = grid.slices(&coords, &rr, &owners).unwrap();
        let e = rel_err(&got, &want);
        assert!(
            e < 1e-5,
            "{domain:?} latent grid slices: relative error {e}"
        );

        // Cached grids built at a larger radius (the search's final band) serve a smaller
        // band with the same values (every cell a point in the band reaches is evaluated in
        // both), and a later call at the larger band reuses them.
        let cached = LatentGridSlices {
            min_radius: 7.0 / d as f32,
            cache: Some(GridCache::default()),
            ..grid
        };
        let small = band_coords(d, 4);
        let fresh = LatentGridSlices {
            cache: None,
            min_radius: 0.0,
            ..cached
        };
        assert_eq!(
            cached.slices(&small, &rr, &owners).unwrap(),
            fresh.slices(&small, &rr, &owners).unwrap(),
            "{domain:?}: a cached larger grid, on a smaller band"
        );
        let again = cached.slices(&coords, &rr, &owners).unwrap();
        let e = rel_err(&again, &want);
        assert!(
            e < 1e-5,
            "{domain:?} cached grid at the full band: relative error {e}"
        );
    }
}

fn cli(args: &[&str]) {
    try_cli(args).unwrap();
}

/// `cryofield ARGS`: the command's result (the arguments must parse).
fn try_cli(args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let mut v = vec!["cryofield"];
    v.extend_from_slice(args);
    cryofield::cli::run(cryofield::cli::Cli::try_parse_from(v).unwrap())
}

/// A noiseless simulated dataset of `n` images of the D = 16 blob volume with shifts and CTF.
fn sim_dataset(dir: &std::path::Path, n: usize) {
    sim_dataset_with(dir, n, &[]);
}

/// [`sim_dataset`] with more `simulate` arguments.
fn sim_dataset_with(dir: &std::path::Path, n: usize, extra: &[&str]) {
    let d = 16;
    let vol = blob_volume(d, 4);
    let vp = dir.join("vol.mrc");
    cryofield::io::mrc::write_mrc(&vp, &vol, (d, d, d), 4.0, true).unwrap();
    let ns = n.to_string();
    cli(&[
        "simulate",
        vp.to_str().unwrap(),
        "-N",
        &ns,
        "-o",
        dir.join("sim").to_str().unwrap(),
        "--t-extent",
        "1",
        "--defocus",
        "10000",
        "20000",
        "--seed",
        "3",
    ]
    .iter()
    .chain(extra)
    .copied()
    .collect::<Vec<_>>());
}

/// Tiny settings shared by the CLI runs (seconds on two cores).
const TINY: &[&str] = &[
    "-n",
    "2",
    "-b",
    "8",
    "--pretrain",
    "16",
    "--ps-freq",
    "1",
    "--base-healpy",
    "1",
    "--niter",
    "2",
    "--nkeptposes",
    "4",
    "--l-start",
    "4",
    "--l-end",
    "8",
    "--t-extent",
    "2",
    "--t-ngrid",
    "3",
    "--seed",
    "1",
    "--checkpoint",
    "1",
];

/// `cli` with the [`TINY`] settings appended.
fn abinit_cli(args: &[&str]) {
    cli(&[args, TINY].concat());
}

/// A one-hidden-layer, 16-wide encoder and decoder for the abinit-het runs.
const SMALL_VAE: &[&str] = &common::NETS;

/// An end-to-end `abinit-homo` run through the CLI writes per-epoch and final poses our reader
/// loads, a config.json that `eval-vol` uses, and poses that `train-nn` accepts.
#[test]
fn abinit_homo_cli_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sim_dataset(dir, 24);
    let out = dir.join("homo");
    let particles = dir.join("sim/particles.mrcs");
    let ctf = dir.join("sim/ctf.pkl");
    abinit_cli(&[
        "abinit-homo",
        particles.to_str().unwrap(),
        "--ctf",
        ctf.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dim",
        "16",
        "--layers",
        "1",
    ]);
    for f in ["pose.1.pkl", "pose.2.pkl", "pose.pkl"] {
        let p = cryofield::meta::Poses::load(out.join(f)).unwrap();
        assert_eq!(p.len(), 24, "{f}");
        let t = p.trans.as_ref().unwrap();
        // shifts are searched over ±(2 + 2/2 + 2/4) px, stored as a fraction of D = 16
        assert!(t
            .iter()
            .all(|t| t[0].abs() <= 3.5 / 16.0 && t[1].abs() <= 3.5 / 16.0));
        for r in &p.rots {
            let rt = r.map(|v| v as f64);
            let det = rt[0] * (rt[4] * rt[8] - rt[5] * rt[7])
                - rt[1] * (rt[3] * rt[8] - rt[5] * rt[6])
                + rt[2] * (rt[3] * rt[7] - rt[4] * rt[6]);
            assert!((det - 1.0).abs() < 1e-4, "{f}: not a rotation");
        }
    }
    for f in [
        "pretrain.reconstruct.mrc",
        "reconstruct.2.mrc",
        "weights.2.safetensors",
        "weights.safetensors",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    cli(&[
        "eval-vol",
        out.join("weights.safetensors").to_str().unwrap(),
        "-c",
        out.join("config.json").to_str().unwrap(),
        "-o",
        dir.join("vol_eval.mrc").to_str().unwrap(),
    ]);
    assert!(dir.join("vol_eval.mrc").exists());
    cli(&[
        "train-nn",
        dir.join("sim/particles.mrcs").to_str().unwrap(),
        "--poses",
        out.join("pose.pkl").to_str().unwrap(),
        "-o",
        dir.join("nn").to_str().unwrap(),
        "-n",
        "1",
        "--dim",
        "8",
        "--layers",
        "1",
    ]);
}

/// `abinit-het` through the CLI writes poses and z of every particle.
#[test]
fn abinit_het_cli_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sim_dataset(dir, 16);
    let out = dir.join("het");
    let particles = dir.join("sim/particles.mrcs");
    let args = [
        "abinit-het",
        particles.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--zdim",
        "2",
    ];
    abinit_cli(&[&args[..], SMALL_VAE].concat());
    let p = cryofield::meta::Poses::load(out.join("pose.pkl")).unwrap();
    assert_eq!(p.len(), 16);
    let z = cryofield::io::pkl::read_pkl_all(out.join("z.pkl")).unwrap();
    assert_eq!(z.len(), 2, "z.pkl holds z_mu then z_logvar");
    assert!(out.join("z.1.pkl").exists() && out.join("weights.safetensors").exists());
}

/// `abinit-het --tilt`: the tilted partners from `simulate --tilt-deg` go through the search and
/// the encoder; a tilt stack of another length is refused, naming the file.
#[test]
fn abinit_het_cli_with_tilt_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sim_dataset_with(dir, 16, &["--tilt-deg", "45"]);
    let particles = dir.join("sim/particles.mrcs");
    let het = |out: &std::path::Path, tilt: &std::path::Path| {
        let args = [
            "abinit-het",
            particles.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--tilt",
            tilt.to_str().unwrap(),
            "--tilt-deg",
            "45",
            "--zdim",
            "1",
        ];
        try_cli(&[&args[..], SMALL_VAE, TINY].concat())
    };
    let out = dir.join("het");
    het(&out, &dir.join("sim/particles_tilt.mrcs")).unwrap();
    let p = cryofield::meta::Poses::load(out.join("pose.pkl")).unwrap();
    assert_eq!(p.len(), 16);
    let z = cryofield::io::pkl::read_pkl_all(out.join("z.pkl")).unwrap();
    assert_eq!(z.len(), 2, "z.pkl holds z_mu then z_logvar");

    // A tilt stack with fewer images than the particles.
    let short = dir.join("short");
    std::fs::create_dir(&short).unwrap();
    sim_dataset_with(&short, 12, &["--tilt-deg", "45"]);
    let err = het(&dir.join("het_bad"), &short.join("sim/particles_tilt.mrcs"))
        .expect_err("a short tilt stack is refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("particles_tilt.mrcs"), "names the file: {msg}");
}

/// `--load-poses` without `--load` starts a new run from those poses: no random-pose
/// pretraining, the first epoch trains with them (pose.1.pkl is the input), the search follows.
#[test]
fn abinit_starts_from_given_poses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sim_dataset(dir, 16);
    let out = dir.join("from_poses");
    let truth = dir.join("sim/pose.pkl");
    abinit_cli(&[
        "abinit-homo",
        dir.join("sim/particles.mrcs").to_str().unwrap(),
        "--ctf",
        dir.join("sim/ctf.pkl").to_str().unwrap(),
        "--load-poses",
        truth.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dim",
        "16",
        "--layers",
        "1",
    ]);
    let given = cryofield::meta::Poses::load(&truth).unwrap();
    let first = cryofield::meta::Poses::load(out.join("pose.1.pkl")).unwrap();
    assert_eq!(first.rots, given.rots, "epoch 1 keeps the given rotations");
    let (tf, tg) = (first.trans.unwrap(), given.trans.unwrap());
    for (a, b) in tf.iter().zip(&tg) {
        assert!((a[0] - b[0]).abs() < 1e-6 && (a[1] - b[1]).abs() < 1e-6);
    }
    assert!(
        !out.join("pretrain.reconstruct.mrc").exists(),
        "no random-pose pretraining"
    );
    let second = cryofield::meta::Poses::load(out.join("pose.2.pkl")).unwrap();
    assert_ne!(second.rots, given.rots, "epoch 2 searched");
}

/// abinit-homo's checkpoints record the training settings: `--load` without `--seed` takes it from
/// the checkpoint (the model flags count as given), and a checkpoint with every epoch done is an
/// error (was a silent no-op).
#[test]
fn abinit_homo_resume_takes_settings_from_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sim_dataset(dir, 24);
    let out = dir.join("homo");
    let particles = dir.join("sim/particles.mrcs");
    let ctf = dir.join("sim/ctf.pkl");
    let (p, c, o) = (
        particles.to_str().unwrap(),
        ctf.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let model = [
        "abinit-homo",
        p,
        "--ctf",
        c,
        "-o",
        o,
        "--dim",
        "16",
        "--layers",
        "1",
    ];
    abinit_cli(&model);
    let w = out.join("weights.2.safetensors");
    let base = [&model[..], &["--load", w.to_str().unwrap()]].concat();
    // TINY (flag, value pairs) without its -n and --seed.
    let rest: Vec<&str> = TINY
        .chunks(2)
        .filter(|f| !matches!(f[0], "-n" | "--seed"))
        .flatten()
        .copied()
        .collect();
    let done = try_cli(&[&base[..], &["-n", "2"], &rest].concat()).unwrap_err();
    assert!(
        format!("{done:#}").contains("nothing left to train"),
        "{done:#}"
    );
    try_cli(&[&base[..], &["-n", "3"], &rest].concat()).unwrap();
    assert!(out.join("weights.3.safetensors").exists());
}
