//! Image translation by phase shifts in Hartley and Fourier space (cryoDRGN `lattice.py`,
//! `Lattice.translate_ht` / `translate_ft`).
//!
//! ## Math
//! With `k` a lattice frequency in cycles/pixel (`Lattice::freqs2d`, extent 0.5) and `t` a
//! shift in pixels, `φ = 2π·k·t`:
//!
//! - Fourier: `F'(k) = exp(−iφ)·F(k)`;
//! - Hartley: `H'(k) = cos φ·H(k) + sin φ·H(−k)` (the same shift written with
//!   `H = Re F − Im F` and `H(−k) = Re F + Im F`).
//!
//! With the forward transform `exp(−2πi k·x)` (see [`crate::fourier::fft`]) this is
//! `f'(x) = f(x − t)`: **a positive `t` moves the image content towards larger indices**;
//! `t = (tx, ty)` with `tx` along x (columns, the fast axis) and `ty` along y (rows). For integer
//! `t` the result is exactly the transform of `np.roll(img, (ty, tx), axis=(0, 1))`, checked
//! against the reference.
//!
//! The Hartley version needs `H(−k)`: the values must be a centrally symmetric list of lattice
//! points in lattice order (the full symmetrized `(D+1)²` image, or `image[mask]` for a
//! symmetric mask), so that point `N − 1 − i` is `−k_i`.

use crate::backend::cpu::trig::sin_cos;
use rayon::prelude::*;

use crate::fourier::fft::Complex32;

/// `φ = 2π·(kx·tx + ky·ty)` computed as the reference does (`coords @ t * 2π` in f32).
#[inline]
fn phase(k: &[f32; 2], t: [f32; 2]) -> f32 {
    (k[0] * t[0] + k[1] * t[1]) * (2.0 * std::f32::consts::PI)
}

/// Translates one Hartley image by `t` pixels: `out[i] = cos φᵢ·ht[i] + sin φᵢ·ht[N−1−i]`.
///
/// `ht` `(N)` are the values at `freqs` `(N, 2)` (cycles/pixel), a centrally symmetric list in
/// lattice order (see the module doc); `out` `(N)`.
///
/// # Panics
/// If the three lengths differ.
pub fn translate_ht_into(ht: &[f32], freqs: &[[f32; 2]], t: [f32; 2], out: &mut [f32]) {
    let n = ht.len();
    assert_eq!(freqs.len(), n, "one frequency per Hartley value");
    assert_eq!(out.len(), n, "output must hold one value per Hartley value");
    // The phases in blocks, their sin and cos by the vectorized [`sin_cos`].
    const BLK: usize = 256;
    let (mut ph, mut sn, mut cs) = ([0f32; BLK], [0f32; BLK], [0f32; BLK]);
    for (b, (ob, kb)) in out.chunks_mut(BLK).zip(freqs.chunks(BLK)).enumerate() {
        let len = ob.len();
        ph[..len]
            .iter_mut()
            .zip(kb)
            .for_each(|(p, k)| *p = phase(k, t));
        sin_cos(&ph[..len], &mut sn[..len], &mut cs[..len]);
        for (j, o) in ob.iter_mut().enumerate() {
            let i = b * BLK + j;
            *o = cs[j] * ht[i] + sn[j] * ht[n - 1 - i];
        }
    }
}

/// Translates a batch of Hartley images `(B, N)` by `T` shifts each, `shifts` `(B, T, 2)` in
/// pixels, returning `(B, T, N)` (the reference's `translate_ht(img, t, mask)` with
/// `img = full[mask]` and `freqs = freqs2d[mask]`). Parallel over images and shifts.
///
/// # Panics
/// If `hts.len()` is not a multiple of `N = freqs.len()` or `shifts.len() != B·T`.
pub fn translate_ht(hts: &[f32], freqs: &[[f32; 2]], shifts: &[[f32; 2]], t: usize) -> Vec<f32> {
    let n = freqs.len();
    assert!(
        n > 0 && hts.len().is_multiple_of(n),
        "images must be (B, N)"
    );
    let b = hts.len() / n;
    assert_eq!(shifts.len(), b * t, "shifts must be (B, T, 2)");
    let mut out = vec![0.0; b * t * n];
    out.par_chunks_mut(n)
        .zip(shifts.par_iter())
        .enumerate()
        .for_each(|(bt, (o, &s))| {
            let img = &hts[(bt / t) * n..][..n];
            translate_ht_into(img, freqs, s, o);
        });
    out
}

/// Translates one Fourier image by `t` pixels: `out[i] = exp(−2πi·kᵢ·t)·ft[i]`, with `ft`
/// `(N)` the values at `freqs` `(N, 2)` (cycles/pixel), in any order.
///
/// # Panics
/// If the three lengths differ.
pub fn translate_ft_into(ft: &[Complex32], freqs: &[[f32; 2]], t: [f32; 2], out: &mut [Complex32]) {
    assert_eq!(freqs.len(), ft.len(), "one frequency per Fourier value");
    assert_eq!(
        out.len(),
        ft.len(),
        "output must hold one value per Fourier value"
    );
    for ((o, v), k) in out.iter_mut().zip(ft).zip(freqs) {
        // Reference: tfilt = −2π·k·t; (re·c − im·s, re·s + im·c).
        let (s, c) = (-phase(k, t)).sin_cos();
        *o = Complex32::new(v.re * c - v.im * s, v.re * s + v.im * c);
    }
}

/// Translates a batch of Fourier images `(B, N)` by `T` shifts each (`(B, T, 2)` pixels),
/// returning `(B, T, N)`. Parallel over images and shifts.
///
/// # Panics
/// If `fts.len()` is not a multiple of `N = freqs.len()` or `shifts.len() != B·T`.
pub fn translate_ft(
    fts: &[Complex32],
    freqs: &[[f32; 2]],
    shifts: &[[f32; 2]],
    t: usize,
) -> Vec<Complex32> {
    let n = freqs.len();
    assert!(
        n > 0 && fts.len().is_multiple_of(n),
        "images must be (B, N)"
    );
    let b = fts.len() / n;
    assert_eq!(shifts.len(), b * t, "shifts must be (B, T, 2)");
    let mut out = vec![Complex32::new(0.0, 0.0); b * t * n];
    out.par_chunks_mut(n)
        .zip(shifts.par_iter())
        .enumerate()
        .for_each(|(bt, (o, &s))| {
            let img = &fts[(bt / t) * n..][..n];
            translate_ft_into(img, freqs, s, o);
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shift_is_identity() {
        let freqs = [[-0.5, -0.5], [0.0, 0.0], [0.5, 0.5]];
        let ht = [1.0, 2.0, 3.0];
        let mut out = [0.0; 3];
        translate_ht_into(&ht, &freqs, [0.0, 0.0], &mut out);
        assert_eq!(out, ht);
    }

    #[test]
    fn ft_half_pixel_phase() {
        // k = (0.5, 0), t = (1, 0): phase −π, F' = −F.
        let ft = [Complex32::new(1.0, 2.0)];
        let mut out = [Complex32::new(0.0, 0.0)];
        translate_ft_into(&ft, &[[0.5, 0.0]], [1.0, 0.0], &mut out);
        assert!((out[0].re + 1.0).abs() < 1e-6 && (out[0].im + 2.0).abs() < 1e-6);
    }
}
