//! Centered FFT/Hartley transforms and Fourier-crop downsampling against a naive f64 DFT
//! reference and analytic cases.
//!
//! Tolerances: an f32 FFT of N values has a per-element error of order
//! `ε·log2(N)·‖x‖₂` (`ε` = f32 machine epsilon), so comparisons use
//! `FFT_SAFETY·ε·log2(N)·‖x‖₂` (times the output scale for inverses). A wrong index, sign or
//! shift gives errors of order `‖x‖₂/√N` or more, far above that.

use std::f64::consts::PI;

use cryofield::fourier::downsample::{
    crop_start, downsample_images, downsample_images_into, downsample_volume, DownsamplePlan,
};
use cryofield::fourier::fft::{
    fft2_center, fftn_center, ht2_center, htn_center, htn_center_window, iht2_center, ihtn_center,
    symmetrize_ht, Complex32, Ht2Plan,
};

/// Safety factor on the f32 rounding bound `ε·log2(N)·‖x‖₂`.
const FFT_SAFETY: f64 = 4.0;

/// splitmix64: a fixed-seed generator of uniform values in [−1, 1).
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

type C64 = (f64, f64);

/// Naive centered 1D DFT in f64: `fftshift(fft(fftshift(v)))`, O(N²). `fftshift` moves index
/// `j` to `(j + ⌊N/2⌋) mod N`.
fn naive_centered_dft_1d(v: &[C64]) -> Vec<C64> {
    let n = v.len();
    let s = n / 2;
    let mut shifted = vec![(0.0, 0.0); n];
    for (j, &x) in v.iter().enumerate() {
        shifted[(j + s) % n] = x;
    }
    let spectrum: Vec<C64> = (0..n)
        .map(|k| {
            shifted
                .iter()
                .enumerate()
                .fold((0.0, 0.0), |acc, (m, &(re, im))| {
                    let theta = -2.0 * PI * ((k * m) % n) as f64 / n as f64;
                    let (c, sn) = (theta.cos(), theta.sin());
                    (acc.0 + re * c - im * sn, acc.1 + re * sn + im * c)
                })
        })
        .collect();
    (0..n).map(|c| spectrum[(c + n - s) % n]).collect()
}

/// Naive centered DFT over every axis of a cube with `ndim` axes of length `d` (row-major), as
/// a composition of 1D centered DFTs (the shifts and DFTs of different axes commute).
fn naive_centered_dft(x: &[f32], d: usize, ndim: u32) -> Vec<C64> {
    assert_eq!(x.len(), d.pow(ndim));
    let mut a: Vec<C64> = x.iter().map(|&v| (v as f64, 0.0)).collect();
    for axis in 0..ndim {
        let stride = d.pow(ndim - 1 - axis);
        for base in 0..a.len() {
            // Each line along `axis` starts where that axis' index is 0.
            if !(base / stride).is_multiple_of(d) {
                continue;
            }
            let line: Vec<C64> = (0..d).map(|i| a[base + i * stride]).collect();
            for (i, v) in naive_centered_dft_1d(&line).into_iter().enumerate() {
                a[base + i * stride] = v;
            }
        }
    }
    a
}

/// Naive centered Hartley transform `(Re F − Im F)·scale` over all axes, in f64.
fn naive_centered_ht(x: &[f32], d: usize, ndim: u32, scale: f64) -> Vec<f64> {
    naive_centered_dft(x, d, ndim)
        .into_iter()
        .map(|(re, im)| (re - im) * scale)
        .collect()
}

fn norm2(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt()
}

/// `FFT_SAFETY·ε·log2(N)·‖x‖₂`, with `N` the number of values transformed together.
fn fft_tol(x: &[f32], n_total: usize) -> f64 {
    FFT_SAFETY * f32::EPSILON as f64 * (n_total as f64).log2().max(1.0) * norm2(x)
}

/// Asserts `|got − want| ≤ tol` elementwise, reporting the first index that differs.
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some((i, (g, w))) = got
        .iter()
        .zip(want)
        .enumerate()
        .find(|(_, (&g, &w))| (g as f64 - w).abs() > tol || !g.is_finite())
    {
        panic!("{what}: first mismatch at {i}: got {g}, want {w} (tol {tol:.3e})");
    }
}

fn assert_close_c(what: &str, got: &[Complex32], want: &[C64], tol: f64) {
    let g: Vec<f32> = got.iter().flat_map(|c| [c.re, c.im]).collect();
    let w: Vec<f64> = want.iter().flat_map(|&(re, im)| [re, im]).collect();
    assert_close(what, &g, &w, tol);
}

const SIZES_2D: [usize; 6] = [8, 10, 16, 7, 9, 1];
const SIZES_3D: [usize; 4] = [8, 10, 5, 6];

#[test]
fn fft2_ht2_iht2_match_naive_dft() {
    let mut rng = Rng(1);
    for d in SIZES_2D {
        let n = 3;
        let imgs = rng.vec(n * d * d);
        let f = fft2_center(&imgs, d);
        let h = ht2_center(&imgs, d);
        let ih = iht2_center(&imgs, d);
        for i in 0..n {
            let img = &imgs[i * d * d..(i + 1) * d * d];
            let r = i * d * d..(i + 1) * d * d;
            let tol = fft_tol(img, d * d);
            let what = format!("D={d} image {i}");
            assert_close_c(
                &format!("fft2_center {what}"),
                &f[r.clone()],
                &naive_centered_dft(img, d, 2),
                tol,
            );
            assert_close(
                &format!("ht2_center {what}"),
                &h[r.clone()],
                &naive_centered_ht(img, d, 2, 1.0),
                tol,
            );
            let inv = 1.0 / (d * d) as f64;
            assert_close(
                &format!("iht2_center {what}"),
                &ih[r],
                &naive_centered_ht(img, d, 2, inv),
                tol * inv,
            );
        }
    }
}

#[test]
fn fftn_htn_ihtn_match_naive_dft() {
    let mut rng = Rng(2);
    for d in SIZES_3D {
        let vol = rng.vec(d * d * d);
        let tol = fft_tol(&vol, d * d * d);
        let inv = 1.0 / (d * d * d) as f64;
        let what = format!("D={d}");
        assert_close_c(
            &format!("fftn_center {what}"),
            &fftn_center(&vol, d),
            &naive_centered_dft(&vol, d, 3),
            tol,
        );
        assert_close(
            &format!("htn_center {what}"),
            &htn_center(&vol, d),
            &naive_centered_ht(&vol, d, 3, 1.0),
            tol,
        );
        assert_close(
            &format!("ihtn_center {what}"),
            &ihtn_center(&vol, d),
            &naive_centered_ht(&vol, d, 3, inv),
            tol * inv,
        );
    }
}

#[test]
fn htn_window_matches_crop_of_full_transform() {
    let mut rng = Rng(3);
    for (d, start, len) in [(10, 2, 6), (9, 0, 4), (8, 5, 3), (7, 3, 1)] {
        let vol = rng.vec(d * d * d);
        let full = naive_centered_ht(&vol, d, 3, 2.0);
        let mut want = Vec::with_capacity(len * len * len);
        for z in start..start + len {
            for y in start..start + len {
                for x in start..start + len {
                    want.push(full[(z * d + y) * d + x]);
                }
            }
        }
        let got = htn_center_window(&vol, d, start, len, 2.0);
        assert_close(
            &format!("D={d} window {start}+{len}"),
            &got,
            &want,
            2.0 * fft_tol(&vol, d * d * d),
        );
    }
}

#[test]
fn ht2_window_and_plan_methods_match_naive() {
    let mut rng = Rng(4);
    let d = 12;
    let img = rng.vec(d * d);
    let full = naive_centered_ht(&img, d, 2, 1.0);
    let tol = fft_tol(&img, d * d);
    let mut plan = Ht2Plan::new(d);
    for (start, len) in [(3, 6), (0, 5), (7, 5), (6, 1), (0, 12)] {
        let mut row_major = vec![0.0; len * len];
        let mut transposed = vec![0.0; len * len];
        plan.ht2_center_window_into(&img, start, len, 1.0, &mut row_major);
        plan.ht2_center_window_transposed_into(&img, start, len, 1.0, &mut transposed);
        let mut want = vec![0.0; len * len];
        let mut want_t = vec![0.0; len * len];
        for i in 0..len {
            for j in 0..len {
                want[i * len + j] = full[(start + i) * d + start + j];
                want_t[j * len + i] = full[(start + i) * d + start + j];
            }
        }
        assert_close(&format!("window {start}+{len}"), &row_major, &want, tol);
        assert_close(
            &format!("transposed window {start}+{len}"),
            &transposed,
            &want_t,
            tol,
        );
    }
}

// Round trips are exact only for even D: for odd D the reference applies `fftshift` (not
// `ifftshift`) on both sides, the two shifts do not cancel, and the naive-DFT tests above are
// what pins the odd-D behaviour down.

#[test]
fn ht2_iht2_round_trip() {
    let mut rng = Rng(5);
    for d in [16, 12, 10, 64] {
        let imgs = rng.vec(4 * d * d);
        let back = iht2_center(&ht2_center(&imgs, d), d);
        let want: Vec<f64> = imgs.iter().map(|&v| v as f64).collect();
        // Two transforms; the inverse divides ‖H‖₂ = D·‖x‖₂ by D².
        let tol = 2.0 * fft_tol(&imgs[..d * d], d * d) / d as f64;
        assert_close(&format!("round trip D={d}"), &back, &want, tol);
    }
}

#[test]
fn htn_ihtn_round_trip() {
    let mut rng = Rng(6);
    for d in [10, 6, 16] {
        let vol = rng.vec(d * d * d);
        let back = ihtn_center(&htn_center(&vol, d), d);
        let want: Vec<f64> = vol.iter().map(|&v| v as f64).collect();
        let tol = 2.0 * fft_tol(&vol, d * d * d) / (d as f64).powf(1.5);
        assert_close(&format!("round trip D={d}"), &back, &want, tol);
    }
}

/// `cas θ = cos θ + sin θ`, the Hartley kernel.
fn cas(theta: f64) -> f64 {
    theta.cos() + theta.sin()
}

#[test]
fn hartley_of_deltas_is_analytic() {
    // A delta at centered offset (a, b) from [D/2][D/2] (even D) has
    // ht2_center[cy][cx] = cas(2π(fy·a + fx·b)/D) with fy = cy − D/2, fx = cx − D/2:
    // 1 everywhere for the centered delta.
    for d in [8, 16] {
        let s = d / 2;
        for (a, b) in [(0isize, 0isize), (1, 0), (0, -3), (2, 3)] {
            let mut img = vec![0.0f32; d * d];
            img[(s as isize + a) as usize * d + (s as isize + b) as usize] = 1.0;
            let h = ht2_center(&img, d);
            let want: Vec<f64> = (0..d * d)
                .map(|i| {
                    let (fy, fx) = ((i / d) as f64 - s as f64, (i % d) as f64 - s as f64);
                    cas(2.0 * PI * (fy * a as f64 + fx * b as f64) / d as f64)
                })
                .collect();
            assert_close(&format!("2D delta D={d} at ({a},{b})"), &h, &want, 1e-5);
        }
    }
    // 3D: a delta at offset (a, b, c) from the center gives cas(2π(fz·a + fy·b + fx·c)/D).
    let d = 8;
    let s = d / 2;
    for (a, b, c) in [(0isize, 0isize, 0isize), (1, -2, 3)] {
        let mut vol = vec![0.0f32; d * d * d];
        let at = |v: isize| (s as isize + v) as usize;
        vol[(at(a) * d + at(b)) * d + at(c)] = 1.0;
        let h = htn_center(&vol, d);
        let want: Vec<f64> = (0..d * d * d)
            .map(|i| {
                let f = |k: usize| k as f64 - s as f64;
                let (fz, fy, fx) = (f(i / (d * d)), f((i / d) % d), f(i % d));
                cas(2.0 * PI * (fz * a as f64 + fy * b as f64 + fx * c as f64) / d as f64)
            })
            .collect();
        assert_close(&format!("3D delta at ({a},{b},{c})"), &h, &want, 1e-5);
    }
}

#[test]
fn hartley_of_cosine_and_sine_is_two_peaks() {
    // x = cos(2π(u·y + v·x)/D) (centered coordinates) has F = D²/2 at ±(u, v): Hartley D²/2 at
    // both. x = sin(...) has F = ∓i·D²/2 at ±(u, v): Hartley +D²/2 at (u, v), −D²/2 at −(u, v).
    let d = 16;
    let s = d / 2;
    let (u, v) = (3isize, -2isize);
    let centered = |i: usize| i as f64 - s as f64;
    for (is_sine, name) in [(false, "cosine"), (true, "sine")] {
        let img: Vec<f32> = (0..d * d)
            .map(|i| {
                let t =
                    2.0 * PI * (u as f64 * centered(i / d) + v as f64 * centered(i % d)) / d as f64;
                (if is_sine { t.sin() } else { t.cos() }) as f32
            })
            .collect();
        let peak = (d * d) as f64 / 2.0;
        let mut want = vec![0.0; d * d];
        let idx =
            |fy: isize, fx: isize| (s as isize + fy) as usize * d + (s as isize + fx) as usize;
        want[idx(u, v)] = peak;
        want[idx(-u, -v)] = if is_sine { -peak } else { peak };
        assert_close(name, &ht2_center(&img, d), &want, fft_tol(&img, d * d));
    }
}

#[test]
fn symmetrize_ht_repeats_first_row_and_column() {
    let mut rng = Rng(7);
    let (n, d) = (3, 6);
    let ht = rng.vec(n * d * d);
    let sym = symmetrize_ht(&ht, d);
    let e = d + 1;
    assert_eq!(sym.len(), n * e * e);
    for k in 0..n {
        let img = &ht[k * d * d..(k + 1) * d * d];
        let out = &sym[k * e * e..(k + 1) * e * e];
        for y in 0..e {
            for x in 0..e {
                let want = img[(y % d) * d + x % d];
                assert_eq!(out[y * e + x], want, "image {k} [{y}][{x}]");
            }
        }
    }
    assert!(symmetrize_ht(&[], d).is_empty());
}

/// `Σ aₖ·cos(2π(uₖ·(y − D/2) + vₖ·(x − D/2))/D + φₖ)` on a D×D grid, times `scale`.
fn cosines_2d(d: usize, terms: &[(f64, isize, isize, f64)], scale: f64) -> Vec<f64> {
    let s = (d / 2) as f64;
    (0..d * d)
        .map(|i| {
            let (y, x) = ((i / d) as f64 - s, (i % d) as f64 - s);
            scale
                * terms
                    .iter()
                    .map(|&(a, u, v, phi)| {
                        a * (2.0 * PI * (u as f64 * y + v as f64 * x) / d as f64 + phi).cos()
                    })
                    .sum::<f64>()
        })
        .collect()
}

#[test]
fn downsample_band_limited_images_gives_analytic_samples() {
    // Frequencies strictly inside the crop (|u|, |v| < d/2) survive the crop unchanged; the
    // reference's iht2_center divides by d², not D², so values come out times (D/d)².
    let terms = [
        (1.0, 0, 0, 0.0),
        (0.7, 1, -3, 0.4),
        (0.5, -3, 2, -1.1),
        (0.25, 2, 3, 2.0),
    ];
    for (big_d, d) in [(32usize, 8usize), (64, 16), (20, 8)] {
        let img: Vec<f32> = cosines_2d(big_d, &terms, 1.0)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let stack: Vec<f32> = [img.clone(), img.iter().map(|v| -2.0 * v).collect()].concat();
        let got = downsample_images(&stack, big_d, d);
        let factor = (big_d as f64 / d as f64).powi(2);
        let want_one = cosines_2d(d, &terms, factor);
        let want: Vec<f64> = [
            want_one.clone(),
            want_one.iter().map(|v| -2.0 * v).collect(),
        ]
        .concat();
        let tol = 2.0 * factor * fft_tol(&img, big_d * big_d) / big_d as f64;
        assert_close(&format!("downsample {big_d}->{d}"), &got, &want, tol);
    }
}

#[test]
fn downsample_band_limited_volume_gives_analytic_samples() {
    let (big_d, d) = (16usize, 8usize);
    let terms = [
        (1.0, [0isize, 0, 0], 0.0),
        (0.6, [1, -2, 3], 0.3),
        (0.4, [-3, 1, 2], -0.8),
    ];
    let field = |n: usize, scale: f64| -> Vec<f64> {
        let s = (n / 2) as f64;
        (0..n * n * n)
            .map(|i| {
                let p = [
                    (i / (n * n)) as f64 - s,
                    ((i / n) % n) as f64 - s,
                    (i % n) as f64 - s,
                ];
                scale
                    * terms
                        .iter()
                        .map(|&(a, k, phi)| {
                            let dot: f64 = k.iter().zip(p).map(|(&k, p)| k as f64 * p).sum();
                            a * (2.0 * PI * dot / n as f64 + phi).cos()
                        })
                        .sum::<f64>()
            })
            .collect()
    };
    let vol: Vec<f32> = field(big_d, 1.0).iter().map(|&v| v as f32).collect();
    let factor = (big_d as f64 / d as f64).powi(3);
    let got = downsample_volume(&vol, big_d, d);
    let tol = 2.0 * factor * fft_tol(&vol, big_d.pow(3)) / (big_d as f64).powf(1.5);
    assert_close("downsample volume 16->8", &got, &field(d, factor), tol);
}

#[test]
fn downsample_matches_naive_crop_of_hartley() {
    // Random (not band-limited, not symmetric) images, even and odd sizes: the definition
    // iht2_center(ht2_center(x)[w, w]) computed with the naive DFT.
    let mut rng = Rng(8);
    for (big_d, d) in [(16usize, 8usize), (10, 6), (9, 5), (12, 7), (8, 8)] {
        let n = 3;
        let imgs = rng.vec(n * big_d * big_d);
        let got = downsample_images(&imgs, big_d, d);
        let start = crop_start(big_d, d);
        for k in 0..n {
            let img = &imgs[k * big_d * big_d..(k + 1) * big_d * big_d];
            let h = naive_centered_ht(img, big_d, 2, 1.0);
            let crop: Vec<f32> = (0..d * d)
                .map(|i| h[(start + i / d) * big_d + start + i % d] as f32)
                .collect();
            let want = naive_centered_ht(&crop, d, 2, 1.0 / (d * d) as f64);
            let tol = 2.0 * fft_tol(img, big_d * big_d) / d as f64;
            assert_close(
                &format!("{big_d}->{d} image {k}"),
                &got[k * d * d..(k + 1) * d * d],
                &want,
                tol,
            );
        }
    }
}

#[test]
fn crop_start_matches_reference_formula() {
    // Reference: start = int(D/2 − d/2).
    for (big_d, d) in [
        (128usize, 64usize),
        (64, 32),
        (9, 4),
        (8, 3),
        (7, 7),
        (10, 1),
    ] {
        let reference = (big_d as f64 / 2.0 - d as f64 / 2.0) as usize;
        assert_eq!(crop_start(big_d, d), reference, "D={big_d} d={d}");
    }
}

#[test]
fn downsample_to_same_size_is_identity() {
    // Even D only (see the round-trip tests).
    let mut rng = Rng(9);
    for d in [16, 10, 2] {
        let imgs = rng.vec(5 * d * d);
        let want: Vec<f64> = imgs.iter().map(|&v| v as f64).collect();
        let tol = 2.0 * fft_tol(&imgs[..d * d], d * d) / d as f64;
        assert_close(
            &format!("images D={d}"),
            &downsample_images(&imgs, d, d),
            &want,
            tol,
        );
    }
    let d = 8;
    let vol = rng.vec(d * d * d);
    let want: Vec<f64> = vol.iter().map(|&v| v as f64).collect();
    let tol = 2.0 * fft_tol(&vol, d * d * d) / (d as f64).powf(1.5);
    assert_close("volume D=8", &downsample_volume(&vol, d, d), &want, tol);
}

#[test]
fn downsample_plan_and_into_agree_with_batch() {
    let mut rng = Rng(10);
    let (big_d, d, n) = (24, 12, 37);
    let imgs = rng.vec(n * big_d * big_d);
    let batch = downsample_images(&imgs, big_d, d);
    let mut into = vec![f32::NAN; n * d * d];
    downsample_images_into(&imgs, big_d, d, &mut into);
    assert_eq!(batch, into);
    let mut plan = DownsamplePlan::new(big_d, d);
    let mut one = vec![0.0; d * d];
    for k in [0, 17, n - 1] {
        plan.downsample_into(&imgs[k * big_d * big_d..(k + 1) * big_d * big_d], &mut one);
        assert_eq!(&one[..], &batch[k * d * d..(k + 1) * d * d], "image {k}");
    }
}

#[test]
#[should_panic(expected = "not a stack")]
fn ht2_center_rejects_ragged_input() {
    ht2_center(&[0.0; 17], 4);
}

#[test]
#[should_panic(expected = "larger than the original")]
fn downsample_rejects_upsampling() {
    downsample_images(&[0.0; 16], 4, 6);
}
