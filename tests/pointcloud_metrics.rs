//! Point-cloud metrics (issue 25, spec §5 and acceptance check 8): CD and EMD against brute force,
//! Rg scaling and both protein RMSDs on constructed cases, kernel-correlation alignment of a random
//! rigid motion, and 1-NNA / COV / MMD on hand-checkable sets.

use cryofield::geometry::quaternion::rotation_angle;
use cryofield::geometry::rotation::{expmap, matmul3, transpose3};
use cryofield::pointcloud::metrics::{
    align_kernel_correlation, chamfer, emd, generation_metrics, protein_rmsd, radius_of_gyration,
    rg_scale, rmsd_assigned, rmsd_nearest, KcParams, Rigid,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_cloud(n: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..3 * n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    (0..3).map(|d| (a[d] - b[d]).powi(2)).sum::<f64>().sqrt()
}

/// Every permutation of 0..n (Heap's algorithm).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn go(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            go(k - 1, a, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            a.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    go(n, &mut (0..n).collect(), &mut out);
    out
}

#[test]
fn chamfer_and_emd_match_brute_force() {
    let mut rng = StdRng::seed_from_u64(1);
    for n in 1..=6 {
        for trial in 0..5 {
            let m = if trial % 2 == 0 { n } else { n + 2 };
            let a = random_cloud(n, &mut rng);
            let b = random_cloud(m, &mut rng);
            let pa: Vec<&[f64]> = a.chunks(3).collect();
            let pb: Vec<&[f64]> = b.chunks(3).collect();
            let nn = |x: &[f64], s: &[&[f64]]| {
                s.iter()
                    .map(|y| dist(x, y).powi(2))
                    .fold(f64::INFINITY, f64::min)
            };
            let cd_ref = pa.iter().map(|x| nn(x, &pb)).sum::<f64>() / n as f64
                + pb.iter().map(|y| nn(y, &pa)).sum::<f64>() / m as f64;
            let cd = chamfer(&a, &b).unwrap();
            assert!((cd - cd_ref).abs() <= 1e-12 * (1.0 + cd_ref), "CD n={n}");
            assert!(
                (chamfer(&b, &a).unwrap() - cd).abs() < 1e-12,
                "CD symmetric"
            );
            if m == n {
                let emd_ref = permutations(n)
                    .iter()
                    .map(|p| (0..n).map(|i| dist(pa[i], pb[p[i]])).sum::<f64>() / n as f64)
                    .fold(f64::INFINITY, f64::min);
                let e = emd(&a, &b).unwrap();
                assert!((e - emd_ref).abs() <= 1e-12, "EMD n={n}: {e} vs {emd_ref}");
            } else {
                assert!(emd(&a, &b).is_err(), "EMD needs equal sizes");
            }
        }
    }
    assert_eq!(chamfer(&[0.0; 6], &[0.0; 3]).unwrap(), 0.0);
    assert!(chamfer(&[], &[0.0; 3]).is_err());
    assert!(chamfer(&[0.0; 4], &[0.0; 3]).is_err());
}

#[test]
fn radius_of_gyration_and_scaling() {
    // two points at ±1 on x: Rg 1; a cube's corners at ±1: Rg √3
    assert!((radius_of_gyration(&[-1.0, 0.0, 0.0, 1.0, 0.0, 0.0]) - 1.0).abs() < 1e-15);
    let cube: Vec<f64> = (0..8)
        .flat_map(|k| (0..3).map(move |d| if k >> d & 1 == 1 { 5.0 } else { 3.0 }))
        .collect();
    assert!((radius_of_gyration(&cube) - 3f64.sqrt()).abs() < 1e-12);
    // the model, a 0.4× copy of the cube moved elsewhere, scales back to the cube's Rg about its
    // own centroid
    let model: Vec<f64> = cube.iter().map(|v| 0.4 * v + 10.0).collect();
    let (scaled, f) = rg_scale(&model, &cube).unwrap();
    assert!((f - 2.5).abs() < 1e-12, "{f}");
    assert!((radius_of_gyration(&scaled) - 3f64.sqrt()).abs() < 1e-12);
    let c = |x: &[f64]| {
        (0..3)
            .map(|d| x.iter().skip(d).step_by(3).sum::<f64>() / 8.0)
            .collect::<Vec<_>>()
    };
    for (a, b) in c(&scaled).iter().zip(c(&model)) {
        assert!((a - b).abs() < 1e-12, "centroid kept");
    }
    assert!(rg_scale(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], &cube).is_err());
}

/// A structured cloud in Å: a helix of `n` points (radius 5 Å, 100° and 1.5 Å per point) plus a
/// second, tilted one, so no symmetry hides a rotation.
fn helices(n: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for i in 0..n / 2 {
        let t = (100.0 * i as f64).to_radians();
        v.extend([5.0 * t.cos(), 5.0 * t.sin(), 1.5 * i as f64]);
    }
    for i in 0..n - n / 2 {
        let t = (100.0 * i as f64).to_radians();
        v.extend([
            14.0 + 1.2 * i as f64,
            4.0 * t.cos() + 3.0,
            4.0 * t.sin() + 0.5 * i as f64,
        ]);
    }
    v
}

fn random_rigid(rng: &mut StdRng, max_deg: f64, max_shift: f64) -> Rigid {
    let mut axis: [f64; 3] = [
        rng.random_range(-1.0..1.0),
        rng.random_range(-1.0..1.0),
        rng.random_range(-1.0..1.0),
    ];
    let norm = axis.iter().map(|v| v * v).sum::<f64>().sqrt();
    let ang = rng.random_range(0.5 * max_deg..max_deg).to_radians();
    axis.iter_mut().for_each(|v| *v *= ang / norm);
    Rigid {
        rot: expmap(axis),
        trans: [0, 1, 2].map(|_| rng.random_range(-max_shift..max_shift)),
    }
}

#[test]
fn kernel_correlation_recovers_a_rigid_motion() {
    let mut rng = StdRng::seed_from_u64(7);
    let a = helices(64);
    // centre the cloud: rotations are about the origin, so the shift a rotation causes stays small
    let c = cryofield::pointcloud::metrics::centroid(&a);
    let a: Vec<f64> = a
        .chunks(3)
        .flat_map(|p| (0..3).map(move |d| p[d] - c[d]))
        .collect();
    for _ in 0..3 {
        let truth = random_rigid(&mut rng, 12.0, 2.0);
        let b = truth.apply_cloud(&a);
        let (found, _) = align_kernel_correlation(&a, &b, &KcParams::angstrom()).unwrap();
        let err_deg = rotation_angle(&found.rot, &truth.rot).to_degrees();
        let terr = dist(&found.trans, &truth.trans);
        let true_deg = rotation_angle(&truth.rot, &Rigid::IDENTITY.rot).to_degrees();
        assert!(
            err_deg < 0.1,
            "rotation error {err_deg}° (true angle {true_deg}°)"
        );
        assert!(terr < 0.01, "translation error {terr} Å");
        let det = {
            let r = found.rot;
            r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
                + r[2] * (r[3] * r[7] - r[4] * r[6])
        };
        let rrt = matmul3(&found.rot, &transpose3(&found.rot));
        assert!(
            (det - 1.0).abs() < 1e-12 && (rrt[1]).abs() < 1e-12,
            "a rotation"
        );
    }
    assert!(align_kernel_correlation(
        &a,
        &a,
        &KcParams {
            sigmas: vec![],
            ..KcParams::angstrom()
        }
    )
    .is_err());
}

#[test]
fn protein_rmsds_on_constructed_cases() {
    let mut rng = StdRng::seed_from_u64(3);
    // GT means in Å and heavy atoms around them
    let gt = helices(48);
    let atoms: Vec<f64> = gt
        .chunks(3)
        .flat_map(|p| {
            let offs: Vec<[f64; 3]> = (0..4)
                .map(|_| [0, 1, 2].map(|_| rng.random_range(-0.8..0.8)))
                .collect();
            offs.into_iter()
                .flat_map(move |o| (0..3).map(move |d| p[d] + o[d]))
                .collect::<Vec<_>>()
        })
        .collect();
    // the model: GT shrunk 0.7× about its centroid, slightly rotated and shifted, points shuffled
    let c = cryofield::pointcloud::metrics::centroid(&gt);
    let mv = random_rigid(&mut rng, 6.0, 1.0);
    let mut model: Vec<[f64; 3]> = gt
        .chunks(3)
        .map(|p| {
            let q = [0, 1, 2].map(|d| c[d] + 0.7 * (p[d] - c[d]));
            mv.apply(&q)
        })
        .collect();
    for i in (1..model.len()).rev() {
        model.swap(i, rng.random_range(0..=i));
    }
    let model: Vec<f64> = model.concat();
    let r = protein_rmsd(&model, &gt, Some(&atoms), &KcParams::angstrom()).unwrap();
    assert!((r.rg_scale - 1.0 / 0.7).abs() < 1e-9, "{}", r.rg_scale);
    assert!(r.subsampled < 1e-3, "subsampled RMSD {}", r.subsampled);
    // atomic RMSD of a perfect model = that of the GT means themselves
    let atomic_ref = rmsd_nearest(&atoms, &gt).unwrap();
    let atomic = r.atomic.unwrap();
    assert!(
        (atomic - atomic_ref).abs() < 1e-3,
        "{atomic} vs {atomic_ref}"
    );
    assert!(atomic_ref > 0.3, "the atoms are not the means");
    // a known displacement: every model point 0.5 Å off along x, no alignment → RMSD 0.5
    let off: Vec<f64> = gt
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 3 == 0 { v + 0.5 } else { *v })
        .collect();
    assert!((rmsd_assigned(&gt, &off).unwrap() - 0.5).abs() < 1e-12);
    assert!(
        (rmsd_nearest(&[0.0, 0.0, 0.0], &[3.0, 4.0, 0.0, 0.0, 0.0, 12.0]).unwrap() - 5.0).abs()
            < 1e-12
    );
}

/// Clouds of one point: CD(x, y) = 2‖x − y‖².
fn singletons(xs: &[f64]) -> Vec<f64> {
    xs.iter().flat_map(|&x| [x, 0.0, 0.0]).collect()
}

#[test]
fn generation_metrics_on_hand_checked_sets() {
    // samples at 0 and 10, references at 0.1, 10.2, 20 (on a line)
    let s = singletons(&[0.0, 10.0]);
    let r = singletons(&[0.1, 10.2, 20.0]);
    let g = generation_metrics(&s, 1, &r, 1).unwrap();
    // MMD: min CD to a sample per reference: 2·0.01, 2·0.04, 2·100 → mean
    let mmd = (0.02 + 0.08 + 200.0) / 3.0;
    assert!((g.mmd - mmd).abs() < 1e-9, "{}", g.mmd);
    // COV: sample 0 → ref 0.1, sample 10 → ref 10.2: 2 of 3
    assert!((g.cov - 2.0 / 3.0).abs() < 1e-12);
    // 1-NNA: 0 → 0.1 (ref: wrong), 10 → 10.2 (wrong), 0.1 → 0 (wrong), 10.2 → 10 (wrong),
    // 20 → 10.2 (ref: right): 1 of 5
    assert!((g.one_nna - 0.2).abs() < 1e-12, "{}", g.one_nna);
    // samples equal to the references: COV 1, MMD 0, 1-NNA 0 (every nearest neighbour is the twin)
    let g = generation_metrics(&r, 1, &r, 1).unwrap();
    assert_eq!((g.cov, g.mmd, g.one_nna), (1.0, 0.0, 0.0));
    // two far-apart groups: 1-NNA 1 (each cloud's neighbour is of its own set)
    let g = generation_metrics(&singletons(&[0.0, 0.5]), 1, &singletons(&[50.0, 50.5]), 1).unwrap();
    assert_eq!(g.one_nna, 1.0);
    assert_eq!(g.cov, 0.5);
    assert!(generation_metrics(&singletons(&[0.0]), 1, &singletons(&[1.0]), 1).is_err());
}
