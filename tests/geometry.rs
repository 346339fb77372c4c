//! Geometry for simulation and pose search: quaternions, Haar-random rotations, HEALPix, the Hopf
//! SO(3) grid with its refinement, and the translation grid — against goldens and values printed by
//! the reference (cryoDRGN 4.3.1, healpy 1.20.1, numpy 2.4).

use cryofield::geometry::healpix::{npix, pix2ang_nest, pix2ang_ring};
use cryofield::geometry::quaternion::{
    quat_angle, quat_to_rot, random_quaternions, random_rotations, rot_to_quat, rotation_angle,
};
use cryofield::geometry::rotation::{matmul3, transpose3, Mat3};
use cryofield::geometry::{shift_grid, so3_grid};
use cryofield::io::npy::read_npy;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeSet;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/golden")
        .join(name)
}

/// Compare quaternions to f32 goldens row by row, up to sign (q and −q are one rotation).
fn assert_quats_close(what: &str, got: &[[f64; 4]], want: &[f64], tol: f64) {
    assert_eq!(got.len() * 4, want.len(), "{what}: lengths differ");
    for (i, q) in got.iter().enumerate() {
        let w = &want[4 * i..4 * i + 4];
        let dp = (0..4).map(|k| (q[k] - w[k]).abs()).fold(0.0, f64::max);
        let dm = (0..4).map(|k| (q[k] + w[k]).abs()).fold(0.0, f64::max);
        assert!(
            dp.min(dm) <= tol,
            "{what}: first mismatch at row {i}: got {q:?}, reference {w:?}"
        );
    }
}

// ---------------------------------------------------------------- SO(3) grid goldens

#[test]
fn so3_grid_matches_golden_res0_and_res1() {
    // f32 goldens of values of magnitude ≤ 1: half an f32 ulp is 6e-8.
    for (res, name, rows) in [(0, "so3_grid_res0.npy", 72), (1, "so3_grid_res1.npy", 576)] {
        let g = read_npy(golden(name)).unwrap();
        assert_eq!(g.shape, vec![rows, 4], "{name} shape");
        let got = so3_grid::grid_so3(res);
        assert_eq!(got.len(), rows);
        assert_quats_close(name, &got, &g.to_f64(), 1e-7);
    }
}

#[test]
fn shift_grid_matches_golden() {
    let g = read_npy(golden("shift_grid_base.npy")).unwrap();
    assert_eq!(g.shape, vec![49, 2]);
    let want = g.to_f64();
    let got = shift_grid::base_shift_grid(0, 10.0, 7, 0.0, 0.0);
    assert_eq!(got.len(), 49);
    for (i, p) in got.iter().enumerate() {
        for k in 0..2 {
            // f32 reference values up to 10 in magnitude: ulp ~1e-6.
            assert!(
                (p[k] - want[2 * i + k]).abs() <= 2e-6,
                "shift grid row {i}: got {p:?}, reference {:?}",
                &want[2 * i..2 * i + 2]
            );
        }
    }
    // x fast: the first row varies x only.
    assert_eq!(got[0][1], got[6][1]);
    assert!(got[1][0] > got[0][0]);
}

// ---------------------------------------------------------------- HEALPix

#[test]
#[allow(clippy::approx_constant)] // the values exactly as healpy printed them
fn healpix_matches_healpy_values() {
    // (nside, ipix, theta, phi) printed by healpy.pix2ang(nside, ipix, nest=...).
    let nest: &[(u64, u64, f64, f64)] = &[
        (1, 0, 0.8410686705679303, 0.7853981633974483),
        (1, 5, 1.5707963267948966, 1.5707963267948966),
        (1, 9, 2.300523983021863, 2.356194490192345),
        (2, 0, 1.2309594173407747, 0.7853981633974483),
        (2, 5, 0.8410686705679303, 2.748893571891069),
        (2, 17, 1.5707963267948966, 0.39269908169872414),
        (2, 30, 1.5707963267948966, 4.319689898685965),
        (2, 47, 1.9106332362490186, 5.497787143782138),
        (4, 3, 1.0471975511965979, 0.7853981633974483),
        (4, 77, 1.2309594173407747, 0.19634954084936207),
        (4, 100, 1.7382444060145859, 3.534291735288517),
        (128, 0, 1.5655879699137618, 0.7853981633974483),
        (128, 12345, 0.7579642506937965, 0.7786274895750566),
        (128, 98304, 2.293557915694195, 3.141592653589793),
        (128, 196607, 1.5760046836760313, 5.497787143782138),
    ];
    let ring: &[(u64, u64, f64, f64)] = &[
        (2, 0, 0.4111378623223478, 0.7853981633974483),
        (2, 5, 0.8410686705679303, 1.1780972450961724),
        (2, 17, 1.2309594173407747, 3.926990816987241),
        (2, 30, 1.9106332362490186, 1.5707963267948966),
        (2, 47, 2.7304547912674453, 5.497787143782138),
        (4, 3, 0.20448019896853498, 5.497787143782138),
        (4, 77, 1.4033482475752073, 1.9634954084936205),
        (4, 191, 2.9371124546212584, 5.497787143782138),
        (128, 0, 0.006378890353433737, 0.7853981633974483),
        (128, 12345, 0.5094219966080482, 0.42749520286190223),
        (128, 98304, 1.5707963267948966, 3.1477285767413354),
        (128, 196607, 3.1352137632363597, 5.497787143782138),
    ];
    // Same formulas as healpy; allow a few ulps for the platform's acos/atan2.
    for (scheme, table, f) in [
        ("nest", nest, pix2ang_nest as fn(u64, u64) -> (f64, f64)),
        ("ring", ring, pix2ang_ring),
    ] {
        for &(nside, p, t, ph) in table {
            let (gt, gp) = f(nside, p);
            assert!(
                (gt - t).abs() < 1e-15 && (gp - ph).abs() < 1e-15,
                "{scheme} nside {nside} pixel {p}: got ({gt}, {gp}), healpy ({t}, {ph})"
            );
        }
    }
}

#[test]
fn healpix_pixels_have_equal_area() {
    // Equal-area pixels: the centres' z = cos θ are symmetric and each polar-cap ring of the
    // nested grid holds the same count as its mirror ring.
    for nside in [1u64, 2, 8, 32] {
        let n = npix(nside);
        let zsum: f64 = (0..n).map(|p| pix2ang_nest(nside, p).0.cos()).sum();
        assert!(zsum.abs() < 1e-9, "nside {nside}: Σz = {zsum}");
        let north = (0..n).filter(|&p| pix2ang_nest(nside, p).0 < PI / 2.0 - 1e-9);
        assert_eq!(north.count() as u64, (n - 4 * nside) / 2, "nside {nside}");
    }
}

// ---------------------------------------------------------------- quaternions

fn assert_orthonormal(r: &Mat3, tol: f64) {
    let rrt = matmul3(r, &transpose3(r));
    for (i, x) in rrt.iter().enumerate() {
        let eye = if i % 4 == 0 { 1.0 } else { 0.0 };
        assert!((x - eye).abs() < tol, "R Rᵀ[{i}] = {x}");
    }
    let det = r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
        + r[2] * (r[3] * r[7] - r[4] * r[6]);
    assert!((det - 1.0).abs() < tol, "det = {det}");
}

#[test]
fn quaternion_matrix_round_trip() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut qs = random_quaternions(2000, &mut rng);
    // Include the branch-switching and degenerate cases of rot_to_quat.
    qs.extend([
        [0.0, 0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.5, 0.5, 0.5, 0.5],
    ]);
    for q in &qs {
        let n: f64 = q.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-12, "|q|² = {n}");
        let r = quat_to_rot(q);
        assert_orthonormal(&r, 1e-12);
        let back = rot_to_quat(&r);
        assert!(quat_angle(q, &back) < 1e-7, "{q:?} -> {back:?}");
        let r2 = quat_to_rot(&back);
        for k in 0..9 {
            assert!(
                (r[k] - r2[k]).abs() < 1e-12,
                "{q:?}: R[{k}] {} vs {}",
                r[k],
                r2[k]
            );
        }
    }
    // The reference's case-3 formula on the identity returns (0, 0, 0, 1) exactly.
    let i3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    assert_eq!(rot_to_quat(&i3), [0.0, 0.0, 0.0, 1.0]);
}

/// Kolmogorov–Smirnov statistic of `xs` against the CDF `cdf`.
fn ks(mut xs: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    xs.iter().enumerate().fold(0.0, |d, (i, &x)| {
        let f = cdf(x);
        d.max((f - i as f64 / n).abs())
            .max(((i + 1) as f64 / n - f).abs())
    })
}

#[test]
fn random_rotations_are_haar_uniform() {
    let n = 20000;
    let mut rng = StdRng::seed_from_u64(20000);
    let rots = random_rotations(n, &mut rng);
    // E[R] = 0 under Haar; each entry has variance 1/3, so the mean's sd is sqrt(1/(3n)) ≈ 0.0041.
    let tol = 5.0 * (1.0 / (3.0 * n as f64)).sqrt();
    for k in 0..9 {
        let m = rots.iter().map(|r| r[k]).sum::<f64>() / n as f64;
        assert!(m.abs() < tol, "mean R[{k}] = {m} (tolerance {tol})");
    }
    assert_orthonormal(&rots[0], 1e-12);
    // Rotation angle density under Haar: (1 − cos θ)/π = (2/π) sin²(θ/2); CDF (θ − sin θ)/π.
    let i3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let haar_cdf = |t: f64| (t - t.sin()) / PI;
    let angles: Vec<f64> = rots.iter().map(|r| rotation_angle(&i3, r)).collect();
    // KS critical value at the 0.1% level: 1.95/sqrt(n) ≈ 0.0138.
    let crit = 1.95 / (n as f64).sqrt();
    let d = ks(angles, haar_cdf);
    assert!(d < crit, "KS D = {d} ≥ {crit}");
    // The test has power: angles uniform on [0, π] (a classic wrong sampler) fail it clearly.
    let wrong: Vec<f64> = (0..n).map(|i| PI * (i as f64 + 0.5) / n as f64).collect();
    assert!(ks(wrong, haar_cdf) > 10.0 * crit);
}

// ---------------------------------------------------------------- SO(3) refinement

/// Sorted `(s2, s1)` pairs of the reference's `so3_grid.get_neighbor` at grid point `(s2, s1)`.
fn children(res: u32, s2: u64, s1: u64) -> Vec<(u64, u64)> {
    let g = so3_grid::grid_so3(res);
    let q = g[so3_grid::flat_ind(s2, s1, res) as usize];
    let mut v: Vec<(u64, u64)> = so3_grid::get_neighbor(&q, s2, s1, res)
        .iter()
        .map(|n| (n.s2, n.s1))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn so3_neighbors_match_reference_printouts() {
    // Printed by get_neighbor(grid_SO3(res)[i], s2, s1, res), sorted.
    assert_eq!(
        children(0, 0, 0),
        [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (2, 0),
            (2, 1),
            (3, 0),
            (3, 1)
        ]
    );
    // s1 = 5 at res 0: the reference returns the unwrapped in-plane index 12.
    assert_eq!(
        children(0, 11, 5),
        [
            (44, 10),
            (44, 11),
            (45, 9),
            (45, 10),
            (46, 11),
            (46, 12),
            (47, 10),
            (47, 11)
        ]
    );
    assert_eq!(
        children(1, 17, 3),
        [
            (68, 6),
            (68, 7),
            (69, 5),
            (69, 6),
            (70, 7),
            (70, 8),
            (71, 6),
            (71, 7)
        ]
    );
    assert_eq!(
        children(1, 40, 11),
        [
            (160, 21),
            (160, 22),
            (160, 23),
            (160, 24),
            (161, 21),
            (162, 24),
            (163, 22),
            (163, 23)
        ]
    );
    // Points where the 8th and 9th f32 distances tie exactly.
    assert_eq!(
        children(2, 129, 2),
        [
            (516, 3),
            (516, 4),
            (517, 3),
            (517, 4),
            (518, 6),
            (519, 4),
            (519, 5),
            (519, 6)
        ]
    );
    assert_eq!(
        children(2, 129, 3),
        [
            (516, 5),
            (516, 6),
            (517, 5),
            (517, 6),
            (518, 8),
            (519, 6),
            (519, 7),
            (519, 8)
        ]
    );
    // The reference's f32 quaternions for (0, 11, 5), keyed by index.
    let want: [((u64, u64), [f64; 4]); 3] = [
        (
            (44, 10),
            [
                -0.18858611583709717,
                0.07811492681503296,
                -0.3746260404586792,
                0.9044272303581238,
            ],
        ),
        (
            (46, 12),
            [
                -0.40475568175315857,
                -0.053287096321582794,
                -0.4564354717731476,
                0.7905694246292114,
            ],
        ),
        (
            (47, 11),
            [
                -0.5724109411239624,
                0.07535932958126068,
                -0.4970516264438629,
                0.6477702856063843,
            ],
        ),
    ];
    let q = so3_grid::grid_so3(0)[so3_grid::flat_ind(11, 5, 0) as usize];
    let nb = so3_grid::get_neighbor(&q, 11, 5, 0);
    for (idx, wq) in want {
        let n = nb.iter().find(|n| (n.s2, n.s1) == idx).unwrap();
        for k in 0..4 {
            assert!(
                (n.quat[k] - wq[k]).abs() < 1e-7,
                "{idx:?}: {:?} vs {wq:?}",
                n.quat
            );
        }
    }
}

/// Canonical flat index at `res + 1` of a child (the in-plane index taken modulo its count).
fn canonical(n: &so3_grid::Neighbor, res: u32) -> u64 {
    so3_grid::flat_ind(n.s2, n.s1 % so3_grid::n_s1(res + 1), res + 1)
}

#[test]
fn so3_children_cover_the_next_grid_like_the_reference() {
    // Counts of distinct children over the whole grid at res, from the reference: res 0's children
    // partition grid_SO3(1); from res 1 on the nearest-8 rule misses some points.
    for (res, want_unique) in [(0u32, 576usize), (1, 4512), (2, 36288)] {
        let g = so3_grid::grid_so3(res);
        let next = so3_grid::grid_so3(res + 1);
        let mut seen = BTreeSet::new();
        for (i, q) in g.iter().enumerate() {
            let (s2, s1) = so3_grid::base_ind(i as u64, res);
            for n in so3_grid::get_neighbor(q, s2, s1, res) {
                let c = canonical(&n, res);
                seen.insert(c);
                // Each child is the grid point it names (its sign flips when s1 is unwrapped).
                let want = next[c as usize];
                let d = (0..4)
                    .map(|k| (n.quat[k] - want[k]).abs().min((n.quat[k] + want[k]).abs()))
                    .fold(0.0, f64::max);
                assert!(
                    d < 1e-12,
                    "res {res} point {i}: child {n:?} vs grid {want:?}"
                );
            }
        }
        assert_eq!(seen.len(), want_unique, "res {res}: distinct children");
    }
}

#[test]
fn so3_children_are_near_their_parent() {
    // Largest and smallest parent-child rotation angle over the grid (degrees), from the reference's
    // f32 quaternions. The in-plane candidates ignore the shift of φ + ψ/2 between S² children, so
    // from res 2 on a child can lie beyond the grid spacing (15°, 7.5°) — that is the reference.
    let want = [
        (31.716884867383133, 18.272708738102118),
        (25.389812610568526, 9.173285516775643),
        (18.370386558379593, 4.591254031634905),
        (16.796572609468694, 2.144787703582929),
    ];
    for (res, (wmax, wmin)) in want.into_iter().enumerate() {
        let res = res as u32;
        let (mut amax, mut amin) = (0.0f64, f64::INFINITY);
        for (i, q) in so3_grid::grid_so3(res).iter().enumerate() {
            let (s2, s1) = so3_grid::base_ind(i as u64, res);
            let nb = so3_grid::get_neighbor(q, s2, s1, res);
            for n in &nb {
                let a = quat_angle(q, &n.quat).to_degrees();
                amax = amax.max(a);
                amin = amin.min(a);
            }
            // The 8 returned are the nearest of the 16 candidates, nearest first.
            let d: Vec<f64> = nb.iter().map(|n| quat_angle(q, &n.quat)).collect();
            assert!(
                d.windows(2).all(|w| w[0] <= w[1] + 1e-6),
                "res {res} point {i}: {d:?}"
            );
        }
        // f32 rounding of the reference's quaternions moves angles by ~1e-5 degrees.
        assert!(
            (amax - wmax).abs() < 1e-4,
            "res {res}: max {amax} vs {wmax}"
        );
        assert!(
            (amin - wmin).abs() < 1e-4,
            "res {res}: min {amin} vs {wmin}"
        );
    }
}

// ---------------------------------------------------------------- translation refinement

#[test]
fn shift_children_tile_their_parent() {
    let (extent, ngrid) = (5.0, 7);
    for res in 0..3u32 {
        let n = (ngrid as u64) << res;
        let step = 2.0 * extent / n as f64;
        let parent = shift_grid::base_shift_grid(res, extent, ngrid, 0.0, 0.0);
        let next = shift_grid::base_shift_grid(res + 1, extent, ngrid, 0.0, 0.0);
        let mut seen = BTreeSet::new();
        for (i, p) in parent.iter().enumerate() {
            let (xi, yi) = shift_grid::base_ind(i as u64, n);
            let kids = shift_grid::get_neighbor(xi, yi, res, extent, ngrid);
            for (k, (t, [cx, cy])) in kids.iter().enumerate() {
                // A quarter step either side of the parent, x fast.
                let sx = if k % 2 == 0 { -1.0 } else { 1.0 };
                let sy = if k / 2 == 0 { -1.0 } else { 1.0 };
                assert!(
                    (t[0] - (p[0] + sx * step / 4.0)).abs() < 1e-12,
                    "{t:?} vs {p:?}"
                );
                assert!(
                    (t[1] - (p[1] + sy * step / 4.0)).abs() < 1e-12,
                    "{t:?} vs {p:?}"
                );
                // The child is the next grid's point it names.
                let c = (cy * 2 * n + cx) as usize;
                assert!((next[c][0] - t[0]).abs() < 1e-12 && (next[c][1] - t[1]).abs() < 1e-12);
                seen.insert(c);
            }
        }
        assert_eq!(
            seen.len(),
            next.len(),
            "res {res}: children partition the next grid"
        );
    }
    // Reference printout: shift_grid.get_neighbor(2, 5, 0, 10, 7).
    let kids = shift_grid::get_neighbor(2, 5, 0, 10.0, 7);
    let want = [
        ([-3.5714282989501953, 5.000000953674316], [4, 10]),
        ([-2.1428565979003906, 5.000000953674316], [5, 10]),
        ([-3.5714282989501953, 6.428571701049805], [4, 11]),
        ([-2.1428565979003906, 6.428571701049805], [5, 11]),
    ];
    for ((t, i), (wt, wi)) in kids.iter().zip(want) {
        assert_eq!(*i, wi);
        // f32 reference values of magnitude ~5: a few f32 ulps (5e-7 each).
        assert!(
            (t[0] - wt[0]).abs() < 2e-6 && (t[1] - wt[1]).abs() < 2e-6,
            "{t:?} vs {wt:?}"
        );
    }
}
