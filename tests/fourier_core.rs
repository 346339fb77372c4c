//! Image-formation core (lattice, CTF, phase shifts, window, normalization), FSC, the `fsc`
//! command and PNG plots, against the reference (cryoDRGN 4.3.1) goldens and analytic cases.
//!
//! Tolerances follow the f32 precision in play: a CTF phase `γ` carries a rounding error of
//! order `ε·|γ|` (ε = f32 machine epsilon), a phase shift `φ = 2πk·t` an error `ε·|φ|` times the
//! magnitude of the values it multiplies, and transforms an error `ε·log2(N)` relative to the
//! largest value.

use std::path::{Path, PathBuf};
use std::process::Command;

use cryofield::analysis::plot::{
    histogram, line_plot, scatter_plot, LineOptions, PlotStyle, Series,
};
use cryofield::fourier::ctf::{
    compute_ctf, ctf_on_lattice, lattice_freqs_angstrom, wavelength_angstrom, Ctf,
};
use cryofield::fourier::fft::{
    fft2_center, ht2_center, htn_center, ihtn_center, symmetrize_ht, Complex32,
};
use cryofield::fourier::fsc::fsc_curve;
use cryofield::fourier::lattice::Lattice;
use cryofield::fourier::shift::{translate_ft, translate_ht, translate_ht_into};
use cryofield::fourier::window::{estimate_normalization, preprocess_images, window_mask, Norm};
use cryofield::io::mrc::{write_mrc, MrcFile};
use cryofield::io::npy::read_npy;
use cryofield::meta::CtfParams;

const EPS: f32 = f32::EPSILON;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// splitmix64: fixed-seed uniform values in [−1, 1).
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// `np.roll(img, (dy, dx), axis=(0, 1))` of a `(D, D)` image.
fn roll(img: &[f32], d: usize, dy: isize, dx: isize) -> Vec<f32> {
    let mut out = vec![0.0; d * d];
    for y in 0..d {
        for x in 0..d {
            let ny = (y as isize + dy).rem_euclid(d as isize) as usize;
            let nx = (x as isize + dx).rem_euclid(d as isize) as usize;
            out[ny * d + nx] = img[y * d + x];
        }
    }
    out
}

// ---------------------------------------------------------------- CTF

/// The reference's CTF in f64, for the analytic checks.
fn ctf_f64(x: f64, y: f64, c: &Ctf) -> f64 {
    let volt = c.voltage_kv as f64 * 1000.0;
    let lam = 12.2639 / (volt + 0.97845e-6 * volt * volt).sqrt();
    let cs = c.cs_mm as f64 * 1e7;
    let ang = y.atan2(x);
    let s2 = x * x + y * y;
    let (u, v) = (c.defocus_u_angstrom as f64, c.defocus_v_angstrom as f64);
    let df =
        0.5 * (u + v + (u - v) * (2.0 * (ang - (c.defocus_angle_deg as f64).to_radians())).cos());
    let gamma =
        2.0 * std::f64::consts::PI * (-0.5 * df * lam * s2 + 0.25 * cs * lam.powi(3) * s2 * s2)
            - (c.phase_shift_deg as f64).to_radians();
    let w = c.amplitude_contrast as f64;
    (1.0 - w * w).sqrt() * gamma.sin() - w * gamma.cos()
}

/// Upper bound of `|γ|` on frequencies up to `s_max` (1/Å), for the rounding tolerance.
fn gamma_bound(c: &Ctf, s_max: f64) -> f32 {
    let lam = wavelength_angstrom(c.voltage_kv) as f64;
    let df = c.defocus_u_angstrom.abs().max(c.defocus_v_angstrom.abs()) as f64;
    let s2 = s_max * s_max;
    (2.0 * std::f64::consts::PI
        * (0.5 * df * lam * s2 + 0.25 * c.cs_mm as f64 * 1e7 * lam.powi(3) * s2 * s2)
        + (c.phase_shift_deg as f64).to_radians().abs()) as f32
}

#[test]
fn ctf_matches_reference_golden() {
    let params = CtfParams::load(data("ctf1.pkl")).unwrap();
    let golden = read_npy(data("golden/ctf_ctf1_lattice.npy")).unwrap();
    let d = 64;
    assert_eq!(golden.shape, vec![params.len(), d + 1, d + 1]);
    let g = golden.to_f32();
    let lattice = Lattice::for_image(d, true).unwrap();
    let apix = params.rows[0][1];
    let freqs = lattice_freqs_angstrom(&lattice, apix);
    let s_max = 0.5f64.sqrt() / apix as f64;
    for (r, row) in params.rows.iter().enumerate() {
        let c = Ctf::from_row(row);
        let ours = compute_ctf(&freqs, &c);
        // γ is rounded to f32 in both implementations: |Δctf| ≤ |Δγ| ≲ a few ε·|γ|.
        let tol = 8.0 * EPS * gamma_bound(&c, s_max) + 4.0 * EPS;
        let want = &g[r * (d + 1) * (d + 1)..][..(d + 1) * (d + 1)];
        for (i, (a, b)) in ours.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "row {r}, point {i}: got {a}, reference {b} (tolerance {tol})"
            );
        }
        if row[1] == apix {
            assert_eq!(ctf_on_lattice(&lattice, row), ours);
        }
    }
}

fn base_ctf() -> Ctf {
    Ctf {
        defocus_u_angstrom: 15000.0,
        defocus_v_angstrom: 12000.0,
        defocus_angle_deg: 30.0,
        voltage_kv: 300.0,
        cs_mm: 2.7,
        amplitude_contrast: 0.1,
        phase_shift_deg: 0.0,
        scalefactor: None,
        bfactor: None,
    }
}

fn test_freqs(n: usize, s_max: f32) -> Vec<[f32; 2]> {
    let mut rng = Rng(7);
    (0..n)
        .map(|_| [rng.next_f32() * s_max, rng.next_f32() * s_max])
        .collect()
}

#[test]
fn ctf_zero_defocus_is_spherical_aberration_only() {
    let c = Ctf {
        defocus_u_angstrom: 0.0,
        defocus_v_angstrom: 0.0,
        ..base_ctf()
    };
    let freqs = test_freqs(500, 0.5);
    let ours = compute_ctf(&freqs, &c);
    let tol = 8.0 * EPS * gamma_bound(&c, 0.75) + 4.0 * EPS;
    for (f, v) in freqs.iter().zip(&ours) {
        let want = ctf_f64(f[0] as f64, f[1] as f64, &c);
        assert!(
            (*v as f64 - want).abs() <= tol as f64,
            "at {f:?}: {v} vs {want}"
        );
    }
    // Without Cs either, γ = 0 and the CTF is −w everywhere.
    let flat = compute_ctf(&freqs, &Ctf { cs_mm: 0.0, ..c });
    assert!(flat.iter().all(|v| (v + 0.1).abs() < 1e-6));
}

#[test]
fn ctf_astigmatism_symmetries() {
    let c = base_ctf();
    let freqs = test_freqs(500, 0.3);
    let tol = 8.0 * EPS * gamma_bound(&c, 0.43) + 4.0 * EPS;
    let ours = compute_ctf(&freqs, &c);
    // Friedel symmetry: CTF(−s) = CTF(s).
    let neg: Vec<[f32; 2]> = freqs.iter().map(|f| [-f[0], -f[1]]).collect();
    for (a, b) in ours.iter().zip(compute_ctf(&neg, &c)) {
        assert!((a - b).abs() <= tol, "CTF(−s) {b} != CTF(s) {a}");
    }
    // Mirror about the astigmatism axis θ: the defocus at angle α equals that at 2θ − α.
    let th = c.defocus_angle_deg.to_radians();
    let mirrored: Vec<[f32; 2]> = freqs
        .iter()
        .map(|f| {
            let (r, a) = (f[0].hypot(f[1]), f[1].atan2(f[0]));
            let b = 2.0 * th - a;
            [r * b.cos(), r * b.sin()]
        })
        .collect();
    for (a, b) in ours.iter().zip(compute_ctf(&mirrored, &c)) {
        assert!((a - b).abs() <= 4.0 * tol, "mirror about θ: {b} != {a}");
    }
    // Swapping U and V and turning the angle by 90° describes the same CTF.
    let swapped = Ctf {
        defocus_u_angstrom: c.defocus_v_angstrom,
        defocus_v_angstrom: c.defocus_u_angstrom,
        defocus_angle_deg: c.defocus_angle_deg + 90.0,
        ..c
    };
    for (a, b) in ours.iter().zip(compute_ctf(&freqs, &swapped)) {
        assert!((a - b).abs() <= tol, "U/V swap: {b} != {a}");
    }
    // And astigmatism matters: along U and along V the CTFs differ.
    let along = |deg: f32| {
        let r = 0.1f32;
        [r * deg.to_radians().cos(), r * deg.to_radians().sin()]
    };
    let uv = compute_ctf(&[along(30.0), along(120.0)], &c);
    assert!(
        (uv[0] as f64 - ctf_f64(along(30.0)[0] as f64, along(30.0)[1] as f64, &c)).abs() < 1e-3
    );
    assert!(
        (uv[0] - uv[1]).abs() > 0.1,
        "U and V directions should differ: {uv:?}"
    );
}

#[test]
fn ctf_phase_shift_90_turns_sin_into_cos() {
    // w = 0: CTF = sin(γ − φ); φ = 90° gives −cos γ, which is the w = 1, φ = 0 CTF.
    let pure_sin = Ctf {
        amplitude_contrast: 0.0,
        ..base_ctf()
    };
    let shifted = Ctf {
        phase_shift_deg: 90.0,
        ..pure_sin
    };
    let pure_cos = Ctf {
        amplitude_contrast: 1.0,
        ..pure_sin
    };
    let freqs = test_freqs(500, 0.25);
    let tol = 8.0 * EPS * gamma_bound(&shifted, 0.36) + 4.0 * EPS;
    let a = compute_ctf(&freqs, &shifted);
    let b = compute_ctf(&freqs, &pure_cos);
    let s = compute_ctf(&freqs, &pure_sin);
    for i in 0..freqs.len() {
        assert!((a[i] - b[i]).abs() <= tol, "at {i}: {} vs {}", a[i], b[i]);
        assert!((a[i] * a[i] + s[i] * s[i] - 1.0).abs() <= 4.0 * tol);
    }
    // The B-factor envelope and scale factor multiply.
    let env = Ctf {
        bfactor: Some(100.0),
        scalefactor: Some(2.0),
        ..pure_sin
    };
    let e = compute_ctf(&freqs, &env);
    for i in 0..freqs.len() {
        let s2 = freqs[i][0].powi(2) + freqs[i][1].powi(2);
        let want = 2.0 * s[i] * (-25.0 * s2).exp();
        assert!((e[i] - want).abs() <= 4.0 * tol, "envelope at {i}");
    }
}

// ---------------------------------------------------------------- shifts

#[test]
fn translate_ht_matches_integer_roll() {
    let d = 16;
    let mut rng = Rng(11);
    let img = rng.vec(d * d);
    let lattice = Lattice::for_image(d, true).unwrap();
    let ht = symmetrize_ht(&ht2_center(&img, d), d);
    for &(tx, ty) in &[(2.0f32, -3.0f32), (-5.0, 1.0), (0.0, 7.0), (6.0, 8.0)] {
        // The reference moves content towards +x / +y for positive t (checked with
        // cryodrgn: translate_ht(t = (2, −3)) = ht of np.roll(img, (−3, 2), axis=(0, 1))).
        let want = symmetrize_ht(&ht2_center(&roll(&img, d, ty as isize, tx as isize), d), d);
        let mut got = vec![0.0; ht.len()];
        translate_ht_into(&ht, lattice.freqs2d(), [tx, ty], &mut got);
        let phi_max = 2.0 * std::f32::consts::PI * 0.5 * (tx.abs() + ty.abs());
        let tol = 8.0 * EPS * (phi_max + (d as f32).log2()) * max_abs(&ht);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "t = ({tx}, {ty}), point {i}: {a} vs {b} (tol {tol})"
            );
        }
        // The opposite direction does not match (the test can tell the sign apart).
        let wrong = symmetrize_ht(
            &ht2_center(&roll(&img, d, -ty as isize, -tx as isize), d),
            d,
        );
        if tx != 0.0 || ty != 0.0 {
            let diff = got
                .iter()
                .zip(&wrong)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff > 100.0 * tol,
                "t = ({tx}, {ty}) also matches the opposite roll"
            );
        }

        // Masked subset (circular mask, DC dropped): the same values at the kept points.
        let mask = lattice.circular_mask(d as f32 / 2.0).unwrap();
        let sub: Vec<f32> = ht
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&v, _)| v)
            .collect();
        let freqs = lattice.masked_freqs2d(&mask);
        let out = translate_ht(&sub, &freqs, &[[tx, ty]], 1);
        let want_sub: Vec<f32> = want
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&v, _)| v)
            .collect();
        for (a, b) in out.iter().zip(&want_sub) {
            assert!((a - b).abs() <= tol, "masked t = ({tx}, {ty}): {a} vs {b}");
        }
    }
}

#[test]
fn translate_ht_there_and_back_is_identity() {
    let d = 32;
    let mut rng = Rng(12);
    let imgs = rng.vec(2 * d * d);
    let lattice = Lattice::for_image(d, true).unwrap();
    let ht = symmetrize_ht(&ht2_center(&imgs, d), d);
    let shifts = [[1.3f32, -2.7f32], [-0.4, 5.25], [0.0, 0.0], [3.5, 3.5]];
    let fwd = translate_ht(&ht, lattice.freqs2d(), &shifts, 2);
    let n = lattice.len();
    let back_shifts: Vec<[f32; 2]> = shifts.iter().map(|s| [-s[0], -s[1]]).collect();
    let back = translate_ht(&fwd, lattice.freqs2d(), &back_shifts, 1);
    let tol = 16.0 * EPS * (2.0 * std::f32::consts::PI * 6.0) * max_abs(&ht);
    for bt in 0..4 {
        let orig = &ht[(bt / 2) * n..][..n];
        let res = &back[bt * n..][..n];
        for (i, (a, b)) in res.iter().zip(orig).enumerate() {
            assert!((a - b).abs() <= tol, "shift {bt}, point {i}: {a} vs {b}");
        }
        // A non-zero shift does change the image.
        if shifts[bt] != [0.0, 0.0] {
            let moved = &fwd[bt * n..][..n];
            assert!(moved
                .iter()
                .zip(orig)
                .any(|(a, b)| (a - b).abs() > 1000.0 * tol));
        }
    }
}

#[test]
fn translate_ft_matches_integer_roll() {
    let d = 16;
    let mut rng = Rng(13);
    let img = rng.vec(d * d);
    let ft = fft2_center(&img, d);
    // Centered D×D grid: index c holds frequency (c − D/2)/D.
    let freqs: Vec<[f32; 2]> = (0..d * d)
        .map(|i| {
            let (y, x) = (i / d, i % d);
            [(x as f32 - 8.0) / d as f32, (y as f32 - 8.0) / d as f32]
        })
        .collect();
    let (tx, ty) = (3.0f32, -2.0f32);
    let got = translate_ft(&ft, &freqs, &[[tx, ty]], 1);
    let want = fft2_center(&roll(&img, d, ty as isize, tx as isize), d);
    let scale = ft.iter().fold(0f32, |m, v| m.max(v.norm()));
    let tol = 8.0 * EPS * (2.0 * std::f32::consts::PI * 2.5 + 4.0) * scale;
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let diff: Complex32 = a - b;
        assert!(diff.norm() <= tol, "point {i}: {a} vs {b}");
    }
}

// ---------------------------------------------------------------- window, normalization

#[test]
fn window_values_at_reference_radii() {
    // D = 20: u = −1 + k/10, so pixel [10][10] is at r = 0, [10][19] at r = 0.9, [10][0] at 1.0.
    let d = 20;
    let w = window_mask(d, 0.85, 0.99).unwrap();
    assert_eq!(w[10 * d + 10], 1.0);
    let want = 1.0 - (0.9 - 0.85) / (0.99 - 0.85);
    assert!(
        (w[10 * d + 19] - want).abs() < 1e-5,
        "{} vs {want}",
        w[10 * d + 19]
    );
    assert_eq!(w[10 * d], 0.0);
    // r = 0.8 (inside r_in) is 1, r = √2 (corner) is 0, and the mask is symmetric.
    assert_eq!(w[10 * d + 18], 1.0);
    assert_eq!(w[0], 0.0);
    assert_eq!(w[10 * d + 1], w[d + 10]);
}

#[test]
fn normalization_matches_reference_ht_statistics() {
    // The reference's Hartley std is the sample std of symmetrize_ht(ht2_center(images)):
    // recompute it from the golden symmetrized transforms of the first 4 images.
    let f = MrcFile::open(data("hand.mrcs")).unwrap();
    let d = f.header.nx;
    let imgs: Vec<f32> = (0..4).flat_map(|i| f.image(i).unwrap()).collect();
    let golden = read_npy(data("golden/ht2_symmetrized.npy"))
        .unwrap()
        .to_f64();
    let n = golden.len() as f64;
    let mean = golden.iter().sum::<f64>() / n;
    let std = (golden.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let norm = estimate_normalization(&imgs, d, false).unwrap();
    assert_eq!(norm.mean, 0.0);
    assert!(
        ((norm.std as f64 - std) / std).abs() < 1e-5,
        "{} vs {std}",
        norm.std
    );
    assert_eq!(estimate_normalization(&imgs, d, true).unwrap(), norm);

    // Preprocessing without a window reproduces the golden divided by the std.
    let pre = preprocess_images(&imgs, d, None, false, norm);
    let g32: Vec<f32> = golden.iter().map(|&v| v as f32).collect();
    let scale = max_abs(&g32) / norm.std;
    for (a, b) in pre.iter().zip(&g32) {
        assert!((a - b / norm.std).abs() <= 1e-5 * scale);
    }
    // With a window, only the windowed image's transform changes.
    let w = window_mask(d, 0.85, 0.99).unwrap();
    let unit = Norm {
        mean: 0.0,
        std: 1.0,
    };
    let windowed: Vec<f32> = imgs
        .iter()
        .zip(w.iter().cycle())
        .map(|(a, b)| a * b)
        .collect();
    let want = symmetrize_ht(&ht2_center(&windowed, d), d);
    let got = preprocess_images(&imgs, d, Some(&w), false, unit);
    let inv = preprocess_images(&imgs, d, Some(&w), true, unit);
    for ((a, b), c) in got.iter().zip(&want).zip(&inv) {
        assert!((a - b).abs() <= 1e-6 * scale * norm.std);
        assert_eq!(*c, -a);
    }
}

// ---------------------------------------------------------------- FSC

/// Voxels per FSC shell `s` (`⌊ρ⌋ + 1 = s`) of a D³ grid, computed independently.
fn shell_counts(d: usize) -> Vec<usize> {
    let mut c = vec![0; d / 2];
    let h = (d / 2) as f64;
    for i in 0..d {
        for j in 0..d {
            for k in 0..d {
                let r = ((i as f64 - h).powi(2) + (j as f64 - h).powi(2) + (k as f64 - h).powi(2))
                    .sqrt();
                let s = r.floor() as usize + 1;
                if s < d / 2 {
                    c[s] += 1;
                }
            }
        }
    }
    c
}

#[test]
fn fsc_of_volume_with_itself_is_one() {
    let f = MrcFile::open(data("hand-vol.mrc")).unwrap();
    let d = f.header.nx;
    let v = f.read_all().unwrap();
    let c = fsc_curve(&v, &v, d, None).unwrap();
    assert_eq!(c.len(), d / 2);
    assert!(c.fsc.iter().all(|&x| (x - 1.0).abs() < 1e-9), "{:?}", c.fsc);
    assert_eq!(c.pixres[1], 1.0 / d as f64);
    assert_eq!(
        c.resolution_at(0.143, 2.0),
        Some(2.0 * d as f64 / (d / 2 - 1) as f64)
    );
    // A scaled copy correlates perfectly too; a negated one anti-correlates.
    let neg: Vec<f32> = v.iter().map(|x| -2.0 * x).collect();
    let cn = fsc_curve(&v, &neg, d, None).unwrap();
    assert!(cn.fsc[1..].iter().all(|&x| (x + 1.0).abs() < 1e-6));
    assert_eq!(cn.pixres_at(0.5), None);
}

#[test]
fn fsc_of_independent_noise_is_near_zero() {
    let d = 32;
    let mut rng = Rng(21);
    let a = rng.vec(d * d * d);
    let b = rng.vec(d * d * d);
    let c = fsc_curve(&a, &b, d, None).unwrap();
    let counts = shell_counts(d);
    // FSC of independent noise has std ≈ 1/√n over a shell of n voxels.
    for (s, (&f, &n)) in c.fsc.iter().zip(&counts).enumerate().skip(2) {
        let bound = 3.0 / (n as f64).sqrt();
        assert!(f.abs() <= bound, "shell {s}: {f} > {bound}");
    }
    // The real-space mask is applied: masking the volumes to zero leaves nothing to correlate.
    // The reference writes FSC 1 there (its zero-variance rule); the FSC is undefined: an error.
    let zero = vec![0.0; d * d * d];
    let err = fsc_curve(&a, &b, d, Some(&zero)).unwrap_err().to_string();
    assert!(err.contains("undefined"), "{err}");
}

#[test]
fn fsc_against_low_pass_copy_drops_at_cutoff() {
    let d = 32;
    let rc = 9.0; // cutoff radius in pixels: keep ρ < 9, i.e. shells 1..=9
    let mut rng = Rng(22);
    let v = rng.vec(d * d * d);
    let mut h = htn_center(&v, d);
    let c0 = (d / 2) as f64;
    for i in 0..d {
        for j in 0..d {
            for k in 0..d {
                let r =
                    ((i as f64 - c0).powi(2) + (j as f64 - c0).powi(2) + (k as f64 - c0).powi(2))
                        .sqrt();
                if r >= rc {
                    h[(i * d + j) * d + k] = 0.0;
                }
            }
        }
    }
    let lp = ihtn_center(&h, d);
    let c = fsc_curve(&v, &lp, d, None).unwrap();
    for s in 1..=9 {
        assert!(
            (c.fsc[s] - 1.0).abs() < 1e-4,
            "shell {s} below the cutoff: {}",
            c.fsc[s]
        );
    }
    for s in 10..d / 2 {
        assert!(
            c.fsc[s].abs() < 0.05,
            "shell {s} above the cutoff: {}",
            c.fsc[s]
        );
    }
    assert_eq!(c.pixres_at(0.5), Some(9.0 / d as f64));
    assert_eq!(c.pixres_at(0.143), Some(9.0 / d as f64));
}

#[test]
fn fsc_rejects_bad_shapes() {
    assert!(fsc_curve(&[0.0; 27], &[0.0; 27], 3, None).is_err());
    assert!(fsc_curve(&[0.0; 64], &[0.0; 63], 4, None).is_err());
    assert!(fsc_curve(&[0.0; 64], &[0.0; 64], 4, Some(&[1.0; 8])).is_err());
}

// ---------------------------------------------------------------- fsc command

fn run_cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .output()
        .unwrap()
}

/// Checks that `bytes` is a PNG of `w × h` pixels that is not a single colour (text and lines
/// were drawn).
fn assert_png(bytes: &[u8], w: u32, h: u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (w, h));
    let px = &buf[..info.buffer_size()];
    let dark = px.chunks(3).filter(|p| p.iter().all(|&c| c < 80)).count();
    assert!(dark > 500, "only {dark} dark pixels: no axes or text drawn");
}

#[test]
fn fsc_cli_writes_reference_format_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let d = 16;
    let mut rng = Rng(31);
    let a = rng.vec(d * d * d);
    let b: Vec<f32> = a.iter().map(|x| x + 0.5 * rng.next_f32()).collect();
    let (pa, pb) = (dir.path().join("a.mrc"), dir.path().join("b.mrc"));
    write_mrc(&pa, &a, (d, d, d), 2.0, true).unwrap();
    write_mrc(&pb, &b, (d, d, d), 2.0, true).unwrap();
    let txt = dir.path().join("fsc.txt");
    let png = dir.path().join("fsc.png");
    let out = run_cli(&[
        "fsc".as_ref(),
        pa.as_os_str(),
        pb.as_os_str(),
        "-o".as_ref(),
        txt.as_os_str(),
        "--plot".as_ref(),
        png.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("res @ FSC=0.5: ") && stdout.contains("res @ FSC=0.143: "),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&txt).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "pixres fsc");
    assert_eq!(lines.len(), 1 + d / 2);
    assert_eq!(lines[1], "0.0 1.0");
    assert!(lines[2].starts_with("0.0625 "), "{}", lines[2]);
    // Same numbers as the library.
    let c = fsc_curve(&a, &b, d, None).unwrap();
    for (line, f) in lines[1..].iter().zip(&c.fsc) {
        let v: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!((v - f).abs() < 1e-6);
    }
    // Resolution in Å uses the header's pixel size (2 Å).
    let res = c.resolution_at(0.143, 2.0).unwrap();
    assert!(stdout.contains(&cryofield::fourier::fsc::fmt_g(res, 4)));
    assert_png(&std::fs::read(&png).unwrap(), 1000, 600);
}

#[test]
fn fsc_cli_bad_inputs_fail_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(32);
    let p8 = dir.path().join("eight.mrc");
    let p16 = dir.path().join("sixteen.mrc");
    write_mrc(&p8, &rng.vec(512), (8, 8, 8), 1.0, true).unwrap();
    write_mrc(&p16, &rng.vec(4096), (16, 16, 16), 1.0, true).unwrap();
    let missing = dir.path().join("missing.mrc");
    let txt = dir.path().join("out.txt");

    let out = run_cli(&[
        "fsc".as_ref(),
        p8.as_os_str(),
        missing.as_os_str(),
        "-o".as_ref(),
        txt.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("missing.mrc"), "{err}");

    let out = run_cli(&[
        "fsc".as_ref(),
        p8.as_os_str(),
        p16.as_os_str(),
        "-o".as_ref(),
        txt.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("eight.mrc")
            && err.contains("sixteen.mrc")
            && err.contains("box sizes differ"),
        "{err}"
    );

    let out = run_cli(&[
        "fsc".as_ref(),
        p8.as_os_str(),
        p8.as_os_str(),
        "--mask".as_ref(),
        p16.as_os_str(),
        "-o".as_ref(),
        txt.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sixteen.mrc") && err.contains("mask"), "{err}");
    assert!(!txt.exists(), "no output on failure");
}

// ---------------------------------------------------------------- plots

#[test]
fn plots_are_pngs_of_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let x: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
    let y: Vec<f64> = x.iter().map(|v| v.sin()).collect();
    let style = PlotStyle {
        title: "sin".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        size: (640, 480),
        ..PlotStyle::default()
    };
    let p = dir.path().join("line.png");
    line_plot(
        &p,
        &[Series {
            label: "sin",
            x: &x,
            y: &y,
        }],
        &style,
        &LineOptions::default(),
    )
    .unwrap();
    assert_png(&std::fs::read(&p).unwrap(), 640, 480);

    let p = dir.path().join("scatter.png");
    scatter_plot(&p, &x, &y, &style).unwrap();
    assert_png(&std::fs::read(&p).unwrap(), 640, 480);

    let p = dir.path().join("hist.png");
    let vals = [0.0, 0.1, 0.2, 0.9, 1.0, 1.0];
    let counts = histogram(&p, &vals, 2, &style).unwrap();
    assert_eq!(counts, vec![3, 3]);
    assert_png(&std::fs::read(&p).unwrap(), 640, 480);

    // Mismatched series lengths are an error and write nothing.
    let bad = dir.path().join("bad.png");
    assert!(line_plot(
        &bad,
        &[Series {
            label: "",
            x: &x,
            y: &y[..5]
        }],
        &style,
        &LineOptions::default()
    )
    .is_err());
    assert!(!bad.exists());
}
