//! Real-space window mask and the image normalization of the reference's training datasets
//! (cryoDRGN `masking.py` `spherical_window_mask`, `dataset.py` `ImageDataset`).
//!
//! ## Window
//! For an even image size D, pixel `[i][j]` sits at `(u_i, u_j)` with
//! `u = linspace(−1, 1, D + 1)[:−1]` (so `u[D/2] = 0` and `u[0] = −1`: `r` is measured in units
//! of the box half-width D/2 pixels, from the centre pixel `[D/2][D/2]`). With `r = √(u_i² + u_j²)`
//! the window is `clamp(1 − (r − r_in)/(r_out − r_in), 0, 1)`: 1 inside `r_in`, falling
//! linearly to 0 at `r_out`, 0 beyond (hard edge `r ≤ r_out` when `r_in = r_out`). Training uses
//! `r_in = 0.85` (`--window-r`), `r_out = 0.99`.
//!
//! ## Normalization
//! The reference estimates, from the images at indices `0, step, 2·step, …` with
//! `step = ⌊N / min(1000, N)⌋` (which can select more than 1000 images), on the raw images
//! (no window applied):
//! - Hartley: mean fixed at 0, std = the sample standard deviation (`torch.std`, divisor
//!   `n − 1`) of all values of `symmetrize_ht(ht2_center(images))` (negated when inverting);
//! - real space: mean and sample std of all pixels.
//!
//! Each training image is then `(symmetrize_ht(ht2_center(window · x · ±1)) − mean) / std`,
//! `(D+1, D+1)` (see [`preprocess_images`]).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fourier::fft::{ht2_center, symmetrize_ht};

/// Inner window radius used by the reference's training (fraction of the box half-width).
pub const WINDOW_R_IN: f32 = 0.85;
/// Outer window radius used by the reference's training (fraction of the box half-width).
pub const WINDOW_R_OUT: f32 = 0.99;

/// `torch.linspace(start, end, steps)` in f32 (first half from `start`, second half from `end`).
fn torch_linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// The soft circular window `(D, D)` (row-major) for an even image size `d` with inner and
/// outer radii `r_in ≤ r_out` as fractions of the box half-width (see the module doc).
pub fn window_mask(d: usize, r_in: f32, r_out: f32) -> Result<Vec<f32>> {
    if d == 0 || !d.is_multiple_of(2) {
        return Err(Error::invalid(format!(
            "window: image size D must be even and positive, got {d}"
        )));
    }
    if r_in.is_nan() || r_out.is_nan() || r_in > r_out {
        return Err(Error::invalid(format!(
            "window: inner radius {r_in} must not exceed outer radius {r_out}"
        )));
    }
    let u = &torch_linspace(-1.0, 1.0, d + 1)[..d];
    let mut out = Vec::with_capacity(d * d);
    for &a in u {
        for &b in u {
            let r = (a * a + b * b).sqrt();
            out.push(if r_in == r_out {
                if r <= r_out {
                    1.0
                } else {
                    0.0
                }
            } else {
                (1.0 - (r - r_in) / (r_out - r_in)).clamp(0.0, 1.0)
            });
        }
    }
    Ok(out)
}

/// Indices of the images the reference uses to estimate normalization: `0, s, 2s, …` below
/// `n_images` with `s = ⌊n_images / min(n_max, n_images)⌋` (`n_max` = 1000 in the reference).
pub fn normalization_indices(n_images: usize, n_max: usize) -> Vec<usize> {
    let n = n_max.min(n_images);
    if n == 0 {
        return Vec::new();
    }
    (0..n_images).step_by(n_images / n).collect()
}

/// A normalization `x ↦ (x − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    /// subtracted offset
    pub mean: f32,
    /// divisor
    pub std: f32,
}

impl Norm {
    /// Applies `(x − mean) / std` in place.
    pub fn apply(&self, xs: &mut [f32]) {
        for x in xs {
            *x = (*x - self.mean) / self.std;
        }
    }
}

/// Mean and sample standard deviation (divisor `n − 1`) in f64. `(mean, 0)` for fewer than 2.
fn mean_std(xs: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.par_iter().map(|&x| x as f64).sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let ss = xs
        .par_iter()
        .map(|&x| {
            let e = x as f64 - mean;
            e * e
        })
        .sum::<f64>();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// Hartley-space normalization of images `(n, D, D)` (the sample, see
/// [`normalization_indices`]): mean 0, std = sample std of `symmetrize_ht(ht2_center(±x))`.
/// Errors if the stack is empty, not `(n, D, D)`, or has zero spread.
pub fn estimate_normalization(imgs: &[f32], d: usize, invert: bool) -> Result<Norm> {
    check_stack(imgs, d)?;
    let mut ht = ht2_center(imgs, d);
    if invert {
        ht.iter_mut().for_each(|v| *v = -*v);
    }
    let (_, std) = mean_std(&symmetrize_ht(&ht, d));
    nonzero(Norm {
        mean: 0.0,
        std: std as f32,
    })
}

/// Real-space normalization of images `(n, D, D)`: their mean and sample std.
/// Errors if the stack is empty, not `(n, D, D)`, or has zero spread.
pub fn estimate_normalization_real(imgs: &[f32], d: usize) -> Result<Norm> {
    check_stack(imgs, d)?;
    let (mean, std) = mean_std(imgs);
    nonzero(Norm {
        mean: mean as f32,
        std: std as f32,
    })
}

fn check_stack(imgs: &[f32], d: usize) -> Result<()> {
    if d == 0 || imgs.is_empty() || !imgs.len().is_multiple_of(d * d) {
        return Err(Error::Shape {
            what: "images for normalization".into(),
            expected: format!("a non-empty (n, {d}, {d}) stack"),
            got: format!("{} values", imgs.len()),
        });
    }
    Ok(())
}

fn nonzero(n: Norm) -> Result<Norm> {
    if n.std > 0.0 && n.std.is_finite() {
        Ok(n)
    } else {
        Err(Error::invalid(format!(
            "cannot normalize images: standard deviation is {}",
            n.std
        )))
    }
}

/// The reference's per-batch preprocessing: images `(B, D, D)` → multiplied by `window`
/// `(D, D)` if given, negated if `invert`, `ht2_center`, `symmetrize_ht`, then `norm` applied;
/// returns `(B, D+1, D+1)`.
///
/// # Panics
/// If `imgs` is not `(B, D, D)` or `window` is not `(D, D)`.
pub fn preprocess_images(
    imgs: &[f32],
    d: usize,
    window: Option<&[f32]>,
    invert: bool,
    norm: Norm,
) -> Vec<f32> {
    assert!(
        d > 0 && imgs.len().is_multiple_of(d * d),
        "images must be (B, D, D)"
    );
    let mut x = imgs.to_vec();
    let sign = if invert { -1.0 } else { 1.0 };
    match window {
        Some(w) => {
            assert_eq!(w.len(), d * d, "window must be (D, D)");
            x.par_chunks_mut(d * d).for_each(|img| {
                for (v, &m) in img.iter_mut().zip(w) {
                    *v *= m * sign;
                }
            });
        }
        None if invert => x.iter_mut().for_each(|v| *v = -*v),
        None => {}
    }
    let mut out = symmetrize_ht(&ht2_center(&x, d), d);
    out.par_chunks_mut(4096).for_each(|c| norm.apply(c));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_linspace_endpoints() {
        let v = torch_linspace(-1.0, 1.0, 65);
        assert_eq!(v[0], -1.0);
        assert_eq!(v[32], 0.0);
        assert_eq!(v[64], 1.0);
    }

    #[test]
    fn indices_follow_reference_step() {
        assert_eq!(normalization_indices(5, 1000), vec![0, 1, 2, 3, 4]);
        assert_eq!(normalization_indices(2500, 1000).len(), 1250);
        assert_eq!(normalization_indices(3000, 1000).len(), 1000);
        assert!(normalization_indices(0, 1000).is_empty());
    }

    #[test]
    fn hard_edge() {
        let w = window_mask(4, 1.0, 1.0).unwrap();
        // u = [−1, −0.5, 0, 0.5]: [0][0] is at r = √2 (out), [2][0] at r = 1 (in).
        assert_eq!(w[0], 0.0);
        assert_eq!(w[2 * 4], 1.0);
        assert!(window_mask(5, 0.85, 0.99).is_err());
        assert!(window_mask(4, 0.9, 0.8).is_err());
    }

    #[test]
    fn norm_of_constant_fails() {
        assert!(estimate_normalization_real(&[1.0; 16], 4).is_err());
        let n = estimate_normalization_real(&[0.0, 2.0, 0.0, 2.0], 2).unwrap();
        assert_eq!(n.mean, 1.0);
        assert!((n.std - (4.0f32 / 3.0).sqrt()).abs() < 1e-6);
    }
}
