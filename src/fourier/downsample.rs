//! Fourier-crop downsampling of images and volumes (the reference's `cryodrgn downsample`).
//!
//! ## Math
//! For a `(D, D)` image `x` and a new size `d ≤ D`, with `start = ⌊(D − d)/2⌋` (the reference's
//! `int(D/2 − d/2)`) and `w = start..start + d`:
//!
//! `downsample(x) = iht2_center(ht2_center(x)[w, w])`
//!
//! exactly as the reference computes it, **with no extra scaling**: since `iht2_center` divides
//! by `d²` and not `D²`, a band-limited image comes out multiplied by `(D/d)²` (for a volume,
//! `(D/d)³`). For example `x[i][j] = cos(2π·u·(i − D/2)/D)` with `|u| < d/2` becomes
//! `(D/d)²·cos(2π·u·(i' − d/2)/d)`. Volumes use [`htn_center`](super::fft::htn_center) and
//! [`ihtn_center`](super::fft::ihtn_center) the same way over all three axes.
//!
//! Only the frequency columns inside the crop are transformed (see [`Ht2Plan`]), so the forward
//! transform of a crop to `d = D/2` costs about half of a full one.

use super::fft::{htn_center_window, map_images_into, Ht2Plan};

/// First kept centered index of a crop from `big_d` to `d`: `⌊(big_d − d)/2⌋`, equal to the
/// reference's `int(D/2 − d/2)`.
///
/// # Panics
/// If `d > big_d`.
pub fn crop_start(big_d: usize, d: usize) -> usize {
    assert!(
        d <= big_d,
        "new size {d} is larger than the original size {big_d}"
    );
    (big_d - d) / 2
}

/// Reusable plans and scratch to downsample `(D, D)` images to `(d, d)`; clone one per thread.
#[derive(Clone, Debug)]
pub struct DownsamplePlan {
    big: Ht2Plan,
    small: Ht2Plan,
    start: usize,
    /// The cropped Hartley transform, transposed, `(d, d)`.
    crop: Vec<f32>,
}

impl DownsamplePlan {
    /// Plans the downsampling of `(big_d, big_d)` images to `(d, d)`.
    ///
    /// # Panics
    /// If `d == 0` or `d > big_d`.
    pub fn new(big_d: usize, d: usize) -> Self {
        assert!(d > 0, "new size must be positive");
        Self {
            big: Ht2Plan::new(big_d),
            small: Ht2Plan::new(d),
            start: crop_start(big_d, d),
            crop: vec![0.0; d * d],
        }
    }

    /// Downsamples one image `img` `(D, D)` into `out` `(d, d)`.
    ///
    /// # Panics
    /// If `img.len() != D²` or `out.len() != d²`.
    pub fn downsample_into(&mut self, img: &[f32], out: &mut [f32]) {
        let d = self.small.d();
        // crop = (Hartley window)ᵀ; ht2_center(cropᵀ)ᵀ = ht2_center(window) comes out row-major.
        self.big
            .ht2_center_window_transposed_into(img, self.start, d, 1.0, &mut self.crop);
        let scale = 1.0 / (d * d) as f32;
        self.small
            .ht2_center_window_transposed_into(&self.crop, 0, d, scale, out);
    }
}

/// Downsamples a stack `(n, D, D)` into `out` `(n, d, d)` by cropping each centered Hartley
/// transform (see the module doc). Parallel over images.
///
/// # Panics
/// If `d == 0`, `d > big_d`, `imgs.len()` is not a multiple of D², or `out.len() != n·d²`.
pub fn downsample_images_into(imgs: &[f32], big_d: usize, d: usize, out: &mut [f32]) {
    let plan = DownsamplePlan::new(big_d, d);
    map_images_into(imgs, big_d, out, d * d, &plan, |p, img, o| {
        p.downsample_into(img, o)
    });
}

/// Downsamples a stack `(n, D, D)` to `(n, d, d)` by cropping the centered Hartley transform
/// (see the module doc). Parallel over images.
///
/// # Panics
/// If `d == 0`, `d > big_d`, or `imgs.len()` is not a multiple of D².
pub fn downsample_images(imgs: &[f32], big_d: usize, d: usize) -> Vec<f32> {
    assert!(big_d > 0, "image size D must be positive");
    let n = imgs.len() / (big_d * big_d);
    let mut out = vec![0.0; n * d * d];
    downsample_images_into(imgs, big_d, d, &mut out);
    out
}

/// Downsamples a `(D, D, D)` volume to `(d, d, d)`: `ihtn_center(htn_center(vol)[w, w, w])`,
/// `w = start..start + d` (see the module doc; no extra scaling).
///
/// # Panics
/// If `d == 0`, `d > big_d`, or `vol.len() != D³`.
pub fn downsample_volume(vol: &[f32], big_d: usize, d: usize) -> Vec<f32> {
    assert!(d > 0, "new size must be positive");
    let start = crop_start(big_d, d);
    let crop = htn_center_window(vol, big_d, start, d, 1.0);
    htn_center_window(&crop, d, 0, d, 1.0 / (d * d * d) as f32)
}
