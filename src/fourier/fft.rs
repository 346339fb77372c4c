//! Centered 2D/3D FFT and Hartley transforms, as the reference (cryoDRGN 4.3, `cryodrgn/fft.py`)
//! defines them.
//!
//! ## Math
//! Arrays are row-major: an image is `(D, D)` indexed `[y][x]`, a volume `(D, D, D)` indexed
//! `[z][y][x]`, a stack of n images is `(n, D, D)`. With `s = ⌊D/2⌋` (numpy/torch `fftshift`,
//! which moves index `j` to `(j + s) mod D`):
//!
//! - `fft2_center(x) = fftshift(fft2(fftshift(x)))` over the last two axes, with
//!   `fft2(x)[ky][kx] = Σ x[y][x]·exp(−2πi(ky·y + kx·x)/D)`. Centered index `c` holds frequency
//!   `c − s`, so the zero frequency sits at `[s][s]`.
//! - `ht2_center(x) = Re F − Im F`, `F = fft2_center(x)` (the 2D Hartley transform, kernel
//!   `cas(θ) = cos θ + sin θ`).
//! - `iht2_center(y) = (Re F − Im F)(y) / D²`; the Hartley transform is its own inverse up to that
//!   scale, so `iht2_center(ht2_center(x)) = x` for even D. (For odd D the reference's two
//!   `fftshift`s do not cancel and the round trip is not the identity; this module reproduces the
//!   reference formula there too.)
//! - `fftn_center`, `htn_center`, `ihtn_center`: the same over all three axes of a volume, the
//!   inverse dividing by `D³`.
//!
//! Any `D ≥ 1` is handled, odd included (the shifts are explicit index rotations, not a
//! `(−1)^(i+j)` modulation, which would only be valid for even `D`); the reference itself only
//! uses even D.
//!
//! ## Algorithm
//! The input is real, so the spectrum is Hermitian: `F(−k) = conj F(k)`. One image costs
//! `⌈D/2⌉` complex FFTs of length D along x (two real rows packed as `a + i·b` per FFT and
//! separated afterwards), then one complex FFT of length D along y for each x-frequency bin that
//! the requested output window needs (at most `⌊D/2⌋ + 1`); negative x-frequencies are read from
//! their Hermitian mirror. The input `fftshift` is folded into the loads, the output `fftshift`
//! into the final gather (an index rotation costs the same as the `(−1)^(i+j)` modulation that
//! would replace it for even D). A Fourier crop (see [`crate::fourier::downsample`]) therefore
//! only transforms the columns it keeps. The column pass leaves the spectrum column-major; as
//! `F(xᵀ) = F(x)ᵀ` for square arrays, row-major outputs load the image transposed instead, so
//! every output is written contiguously. FFTs are planned once with rustfft, the per-thread
//! buffers live in [`Ht2Plan`], and batches are parallel over images with rayon. Volumes go
//! through the same 2D machinery per z-slice, then one FFT along z per kept (kx, ky) line.

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Single-precision complex number (re-exported from rustfft's `num_complex`).
pub type Complex32 = Complex<f32>;

/// Number of non-negative x-frequency bins `0..nb` that a centered window
/// `[start, start + len)` on an axis of length `d` needs, counting the Hermitian mirrors of its
/// negative frequencies.
fn bins_needed(d: usize, start: usize, len: usize) -> usize {
    let s = (d / 2) as isize;
    let most_negative = s - start as isize;
    let most_positive = (start + len) as isize - 1 - s;
    most_negative.max(most_positive).max(0) as usize + 1
}

/// Panics unless `[start, start + len)` is a non-empty window inside `0..d`.
fn check_window(d: usize, start: usize, len: usize) {
    assert!(d > 0, "transform size D must be positive");
    assert!(
        len > 0 && start + len <= d,
        "window [{start}, {}) does not fit in 0..{d}",
        start + len
    );
}

/// Copies `src` rotated by `s` (the `fftshift` of one line) into `dst`:
/// `dst[(j + s) mod D] = src[j]`, applying `put` to place each value.
#[inline]
fn shifted_line<T: Copy>(dst: &mut [T], src: &[f32], s: usize, put: impl Fn(&mut T, f32)) {
    let d = src.len();
    for (o, &v) in dst[s..].iter_mut().zip(&src[..d - s]) {
        put(o, v);
    }
    for (o, &v) in dst[..s].iter_mut().zip(&src[d - s..]) {
        put(o, v);
    }
}

/// Pairs of lines processed together when packing or separating, so that the strided writes
/// of these transposes fill whole cache lines (4 pairs = 8 complex values = 64 bytes).
const PAIR_BLOCK: usize = 4;

/// Reusable plan and scratch for centered 2D transforms of real D×D images.
///
/// Holds the rustfft plan (shared, `Arc`) and this thread's buffers; clone it once per thread
/// (e.g. in rayon's `for_each_init`). All methods take one image `(D, D)` and write one output,
/// reusing the buffers, so a batch allocates nothing per image.
///
/// Layout trick: for a square image the centered spectrum of the transpose is the transpose of
/// the spectrum (`F(xᵀ) = F(x)ᵀ`, the kernel `exp(−2πi(ky·y + kx·x)/D)` being symmetric in the
/// two axes and both axes shifted alike). The column pass leaves the spectrum column-major, so
/// the row-major methods load the image transposed and every output is written contiguously.
#[derive(Clone)]
pub struct Ht2Plan {
    d: usize,
    fft: Arc<dyn Fft<f32>>,
    /// `⌈D/2⌉` packed lines, `(⌈D/2⌉, D)`: shifted line `2p` in Re, line `2p+1` in Im.
    rows: Vec<Complex32>,
    /// Column-major x-frequency columns, `(⌊D/2⌋+1, D)`: `cols[kx·D + ky] = 2·fft2(fftshift(x))[ky][kx]`.
    cols: Vec<Complex32>,
    scratch: Vec<Complex32>,
}

impl std::fmt::Debug for Ht2Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ht2Plan").field("d", &self.d).finish()
    }
}

impl Ht2Plan {
    /// Plans the length-`d` FFT and allocates the buffers for `(d, d)` images.
    ///
    /// # Panics
    /// If `d == 0`.
    pub fn new(d: usize) -> Self {
        assert!(d > 0, "transform size D must be positive");
        Self::with_fft(FftPlanner::new().plan_fft_forward(d))
    }

    /// Builds a plan around an already planned forward FFT (its length is D).
    fn with_fft(fft: Arc<dyn Fft<f32>>) -> Self {
        let d = fft.len();
        let zero = Complex32::new(0.0, 0.0);
        Self {
            d,
            rows: vec![zero; d.div_ceil(2) * d],
            cols: vec![zero; (d / 2 + 1) * d],
            scratch: vec![zero; fft.get_inplace_scratch_len()],
            fft,
        }
    }

    /// Image side D this plan transforms.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Packs the rows of `fftshift(img)` in pairs into `rows`.
    fn load_rows(&mut self, img: &[f32]) {
        let d = self.d;
        let s = d / 2;
        // Shifted row r is source row (r − s) mod D.
        let src_row = |r: usize| &img[((r + d - s) % d) * d..][..d];
        for (p, buf) in self.rows.chunks_exact_mut(d).enumerate() {
            let a = src_row(2 * p);
            if 2 * p + 1 < d {
                let b = src_row(2 * p + 1);
                for (o, (&va, &vb)) in buf[s..].iter_mut().zip(a[..d - s].iter().zip(&b[..d - s])) {
                    *o = Complex32::new(va, vb);
                }
                for (o, (&va, &vb)) in buf[..s].iter_mut().zip(a[d - s..].iter().zip(&b[d - s..])) {
                    *o = Complex32::new(va, vb);
                }
            } else {
                shifted_line(buf, a, s, |o, v| *o = Complex32::new(v, 0.0));
            }
        }
    }

    /// Packs the rows of `fftshift(img)ᵀ` (the columns of the shifted image) in pairs into
    /// `rows`, reading `img` row by row in blocks of [`PAIR_BLOCK`]·2 rows.
    fn load_rows_transposed(&mut self, img: &[f32]) {
        let d = self.d;
        let s = d / 2;
        // Shifted column c is source column (c − s) mod D; source row n lands at (n + s) mod D.
        let src_col = |c: usize| (c + d - s) % d;
        let npairs = d.div_ceil(2);
        const ROWS: usize = 2 * PAIR_BLOCK;
        for n0 in (0..d).step_by(ROWS) {
            let n1 = (n0 + ROWS).min(d);
            for p in 0..npairs {
                let buf = &mut self.rows[p * d..(p + 1) * d];
                let ca = src_col(2 * p);
                let cb = if 2 * p + 1 < d {
                    Some(src_col(2 * p + 1))
                } else {
                    None
                };
                for n in n0..n1 {
                    let row = &img[n * d..(n + 1) * d];
                    let r = if n + s >= d { n + s - d } else { n + s };
                    buf[r] = Complex32::new(row[ca], cb.map_or(0.0, |cb| row[cb]));
                }
            }
        }
    }

    /// From the packed lines in `rows`, fills `cols[..nb·D]` with twice the 2D spectrum for
    /// x-frequency bins `0..nb` (plain, uncentered indices; column-major, see the field doc).
    fn rows_to_cols(&mut self, nb: usize) {
        let d = self.d;
        let npairs = d.div_ceil(2);
        self.fft
            .process_with_scratch(&mut self.rows[..npairs * d], &mut self.scratch);
        // Separate the packed pairs: with Z = FFT(a + i·b) and Q(k) = conj Z(−k),
        // 2A = Z + Q and 2B = −i·(Z − Q). The factor 2 is removed by the callers.
        let cols = &mut self.cols[..nb * d];
        for p0 in (0..npairs).step_by(PAIR_BLOCK) {
            let p1 = (p0 + PAIR_BLOCK).min(npairs);
            for (k, col) in cols.chunks_exact_mut(d).enumerate() {
                let k_mirror = if k == 0 { 0 } else { d - k };
                for p in p0..p1 {
                    let z = &self.rows[p * d..(p + 1) * d];
                    let (zk, q) = (z[k], z[k_mirror].conj());
                    col[2 * p] = zk + q;
                    if 2 * p + 1 < d {
                        let diff = zk - q;
                        col[2 * p + 1] = Complex32::new(diff.im, -diff.re);
                    }
                }
            }
        }
        self.fft.process_with_scratch(cols, &mut self.scratch);
    }

    /// Fills `cols[..nb·D]` with `2·fft2(fftshift(img))` for x-frequency bins `0..nb`.
    fn forward_cols(&mut self, img: &[f32], nb: usize) {
        assert_eq!(img.len(), self.d * self.d, "image must hold D·D values");
        self.load_rows(img);
        self.rows_to_cols(nb);
    }

    /// Writes `map(2·G[start + i][start + j])` to `out[j·len + i]` (column-major), a centered
    /// `(len, len)` window of `G = fft2_center(img)`, or of `fft2_center(imgᵀ)` when
    /// `transpose_in` (then `out` is the window of `fft2_center(img)` in row-major order).
    /// Only the columns the window needs are transformed.
    fn window_into<T>(
        &mut self,
        img: &[f32],
        start: usize,
        len: usize,
        transpose_in: bool,
        out: &mut [T],
        map: impl Fn(Complex32) -> T,
    ) {
        let d = self.d;
        check_window(d, start, len);
        assert_eq!(img.len(), d * d, "image must hold D·D = {} values", d * d);
        assert_eq!(
            out.len(),
            len * len,
            "output must hold len·len = {} values",
            len * len
        );
        if transpose_in {
            self.load_rows_transposed(img);
        } else {
            self.load_rows(img);
        }
        self.rows_to_cols(bins_needed(d, start, len));
        let s = d / 2;
        // Centered row i holds y-frequency fy = start + i − s at plain index fy mod D, and its
        // mirror −fy at (−fy) mod D: one contiguous run per column, wrapping at most once.
        let ky0 = (start + d - s) % d;
        let ky0_mirror = (d + s - start) % d;
        for (j, dst) in out.chunks_exact_mut(len).enumerate() {
            let fx = (start + j) as isize - s as isize;
            let col = &self.cols[fx.unsigned_abs() * d..][..d];
            if fx >= 0 {
                let first = (d - ky0).min(len);
                for (o, &v) in dst[..first].iter_mut().zip(&col[ky0..]) {
                    *o = map(v);
                }
                for (o, &v) in dst[first..].iter_mut().zip(col) {
                    *o = map(v);
                }
            } else {
                // Negative x-frequency: the Hermitian mirror, G(−k) = conj G(k).
                let first = (ky0_mirror + 1).min(len);
                for (o, &v) in dst[..first].iter_mut().zip(col[..=ky0_mirror].iter().rev()) {
                    *o = map(v.conj());
                }
                for (o, &v) in dst[first..].iter_mut().zip(col.iter().rev()) {
                    *o = map(v.conj());
                }
            }
        }
    }

    /// `fft2_center` of one image `(D, D)` into `out` `(D, D)`.
    ///
    /// # Panics
    /// If `img` or `out` does not hold D·D values.
    pub fn fft2_center_into(&mut self, img: &[f32], out: &mut [Complex32]) {
        self.window_into(img, 0, self.d, true, out, |v| v * 0.5);
    }

    /// `scale · ht2_center(img)[w, w]`, `w = start..start + len`: a centered `(len, len)` window
    /// of the Hartley transform of one `(D, D)` image, written row-major to `out`. Only the
    /// frequency columns the window needs are transformed (a Fourier crop costs less than a
    /// full transform).
    ///
    /// # Panics
    /// If the window does not fit in `0..D` or the slice lengths are not D·D and len·len.
    pub fn ht2_center_window_into(
        &mut self,
        img: &[f32],
        start: usize,
        len: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let half_scale = 0.5 * scale;
        self.window_into(img, start, len, true, out, |v| (v.re - v.im) * half_scale);
    }

    /// Like [`Ht2Plan::ht2_center_window_into`] but writes the window transposed
    /// (`out[j·len + i] = scale · ht2_center(img)[start + i][start + j]`), which skips a
    /// transpose. Since `ht2_center(xᵀ) = ht2_center(x)ᵀ`, two transposed passes give a
    /// row-major result: this is how downsampling chains its two transforms.
    ///
    /// # Panics
    /// If the window does not fit in `0..D` or the slice lengths are not D·D and len·len.
    pub fn ht2_center_window_transposed_into(
        &mut self,
        img: &[f32],
        start: usize,
        len: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let half_scale = 0.5 * scale;
        self.window_into(img, start, len, false, out, |v| (v.re - v.im) * half_scale);
    }

    /// `ht2_center` of one image `(D, D)` into `out` `(D, D)`.
    ///
    /// # Panics
    /// If `img` or `out` does not hold D·D values.
    pub fn ht2_center_into(&mut self, img: &[f32], out: &mut [f32]) {
        self.ht2_center_window_into(img, 0, self.d, 1.0, out);
    }

    /// `iht2_center` of one image `(D, D)` into `out` `(D, D)` (divides by D²).
    ///
    /// # Panics
    /// If `img` or `out` does not hold D·D values.
    pub fn iht2_center_into(&mut self, img: &[f32], out: &mut [f32]) {
        let scale = 1.0 / (self.d * self.d) as f32;
        self.ht2_center_window_into(img, 0, self.d, scale, out);
    }
}

/// Applies `f(state, image, output)` to every `(D, D)` image of `imgs` in parallel, each output
/// holding `out_per_img` values; `state` (a plan with its scratch) is cloned once per rayon job.
pub(crate) fn map_images_into<S: Clone + Send + Sync, T: Send>(
    imgs: &[f32],
    d: usize,
    out: &mut [T],
    out_per_img: usize,
    state: &S,
    f: impl Fn(&mut S, &[f32], &mut [T]) + Sync,
) {
    assert!(d > 0, "image size D must be positive");
    assert_eq!(
        imgs.len() % (d * d),
        0,
        "input of {} values is not a stack of D×D = {}×{d} images",
        imgs.len(),
        d
    );
    let n = imgs.len() / (d * d);
    assert_eq!(
        out.len(),
        n * out_per_img,
        "output must hold n·{out_per_img} values"
    );
    out.par_chunks_mut(out_per_img)
        .zip(imgs.par_chunks(d * d))
        .with_min_len(8)
        .for_each_init(|| state.clone(), |st, (o, img)| f(st, img, o));
}

/// `fft2_center` of each image of a stack `(n, D, D)`, returning `(n, D, D)` complex values.
///
/// # Panics
/// If `d == 0` or `imgs.len()` is not a multiple of D·D.
pub fn fft2_center(imgs: &[f32], d: usize) -> Vec<Complex32> {
    let mut out = vec![Complex32::new(0.0, 0.0); imgs.len()];
    map_images_into(imgs, d, &mut out, d * d, &Ht2Plan::new(d), |p, i, o| {
        p.fft2_center_into(i, o)
    });
    out
}

/// `ht2_center` of each image of a stack `(n, D, D)`: `Re F − Im F` with
/// `F = fftshift(fft2(fftshift(x)))`, returning `(n, D, D)`. Parallel over images.
///
/// # Panics
/// If `d == 0` or `imgs.len()` is not a multiple of D·D.
pub fn ht2_center(imgs: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0.0; imgs.len()];
    map_images_into(imgs, d, &mut out, d * d, &Ht2Plan::new(d), |p, i, o| {
        p.ht2_center_into(i, o)
    });
    out
}

/// Inverse of [`ht2_center`]: `iht2_center(x) = (Re F − Im F) / D²` with the same centered FFT,
/// for each image of a stack `(n, D, D)`. Parallel over images.
///
/// # Panics
/// If `d == 0` or `imgs.len()` is not a multiple of D·D.
pub fn iht2_center(imgs: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0.0; imgs.len()];
    map_images_into(imgs, d, &mut out, d * d, &Ht2Plan::new(d), |p, i, o| {
        p.iht2_center_into(i, o)
    });
    out
}

/// Writes `map(fftn_center(vol)[start + i][start + j][start + k])` to `out[(i·len + j)·len + k]`,
/// a centered `(len, len, len)` window of the 3D centered spectrum of a `(D, D, D)` volume.
/// `map` receives twice the spectrum value. Parallel over z-slices, then over z-lines.
///
/// Passes: (1) per z-slice, the 2D machinery of [`Ht2Plan`] gives the x- and y-transforms for
/// the x-bins the window needs; only the y-frequencies in the window or its mirror are kept,
/// `(D, nb, m)`. (2) Lines along z are gathered and transformed, `(nb·m, D)`. (3) The window is
/// gathered, negative x-frequencies through the Hermitian mirror `F(−k) = conj F(k)`.
fn fftn_window_into<T: Send>(
    vol: &[f32],
    d: usize,
    start: usize,
    len: usize,
    out: &mut [T],
    map: impl Fn(Complex32) -> T + Sync,
) {
    check_window(d, start, len);
    assert_eq!(
        vol.len(),
        d * d * d,
        "volume must hold D³ = {} values",
        d * d * d
    );
    assert_eq!(out.len(), len * len * len, "output must hold len³ values");
    let s = d / 2;
    let (si, di) = (s as isize, d as isize);
    let nb = bins_needed(d, start, len);
    // y-frequencies kept after pass 1: the window and its negation, as plain indices.
    let mut keep_index = vec![usize::MAX; d];
    for c in start..start + len {
        let f = c as isize - si;
        keep_index[f.rem_euclid(di) as usize] = 0;
        keep_index[(-f).rem_euclid(di) as usize] = 0;
    }
    let ky_keep: Vec<usize> = (0..d).filter(|&k| keep_index[k] == 0).collect();
    for (j, &k) in ky_keep.iter().enumerate() {
        keep_index[k] = j;
    }
    let m = ky_keep.len();
    let nl = nb * m;
    let fft = FftPlanner::new().plan_fft_forward(d);
    let zero = Complex32::new(0.0, 0.0);

    // Pass 1: slab[z][kx·m + j] = 2·F_xy(shifted slice z)[ky_keep[j]][kx].
    let mut slab = vec![zero; d * nl];
    let plan = Ht2Plan::with_fft(fft.clone());
    slab.par_chunks_mut(nl).enumerate().for_each_init(
        || plan.clone(),
        |plan, (z, bz)| {
            let zsrc = (z + d - s) % d;
            plan.forward_cols(&vol[zsrc * d * d..][..d * d], nb);
            for kx in 0..nb {
                let col = &plan.cols[kx * d..(kx + 1) * d];
                for (o, &ky) in bz[kx * m..(kx + 1) * m].iter_mut().zip(&ky_keep) {
                    *o = col[ky];
                }
            }
        },
    );

    // Pass 2: lines[l][kz] = FFT_z of slab[·][l], in blocks of LINES lines.
    const LINES: usize = 8;
    let mut lines = vec![zero; nl * d];
    lines.par_chunks_mut(LINES * d).enumerate().for_each_init(
        || vec![zero; fft.get_inplace_scratch_len()],
        |scratch, (b, block)| {
            let l0 = b * LINES;
            let nblock = block.len() / d;
            for z in 0..d {
                for (l, &v) in slab[z * nl + l0..][..nblock].iter().enumerate() {
                    block[l * d + z] = v;
                }
            }
            fft.process_with_scratch(block, scratch);
        },
    );
    drop(slab);

    // Pass 3: gather the centered window.
    out.par_chunks_mut(len * len)
        .enumerate()
        .for_each(|(iz, oz)| {
            let fz = (start + iz) as isize - si;
            let (kz, kz_mirror) = (fz.rem_euclid(di) as usize, (-fz).rem_euclid(di) as usize);
            for (iy, orow) in oz.chunks_exact_mut(len).enumerate() {
                let fy = (start + iy) as isize - si;
                let jy = keep_index[fy.rem_euclid(di) as usize];
                let jy_mirror = keep_index[(-fy).rem_euclid(di) as usize];
                for (ix, o) in orow.iter_mut().enumerate() {
                    let fx = (start + ix) as isize - si;
                    *o = if fx >= 0 {
                        map(lines[(fx as usize * m + jy) * d + kz])
                    } else {
                        map(lines[((-fx) as usize * m + jy_mirror) * d + kz_mirror].conj())
                    };
                }
            }
        });
}

/// `fftn_center` of a `(D, D, D)` volume: `fftshift(fftn(fftshift(x)))` over all three axes,
/// returning `(D, D, D)` complex values.
///
/// # Panics
/// If `d == 0` or `vol.len() != D³`.
pub fn fftn_center(vol: &[f32], d: usize) -> Vec<Complex32> {
    let mut out = vec![Complex32::new(0.0, 0.0); vol.len()];
    fftn_window_into(vol, d, 0, d, &mut out, |v| v * 0.5);
    out
}

/// `scale · htn_center(vol)[w, w, w]` with `w = start..start+len`: a centered `(len, len, len)`
/// window of the 3D Hartley transform of a `(D, D, D)` volume (only the needed frequencies are
/// transformed along x and y).
///
/// # Panics
/// If `vol.len() != D³` or the window does not fit in `0..D`.
pub fn htn_center_window(vol: &[f32], d: usize, start: usize, len: usize, scale: f32) -> Vec<f32> {
    let mut out = vec![0.0; len * len * len];
    let half_scale = 0.5 * scale;
    fftn_window_into(vol, d, start, len, &mut out, |v| (v.re - v.im) * half_scale);
    out
}

/// 3D centered Hartley transform of a `(D, D, D)` volume: `Re F − Im F` with
/// `F = fftshift(fftn(fftshift(x)))`, returning `(D, D, D)`.
///
/// # Panics
/// If `d == 0` or `vol.len() != D³`.
pub fn htn_center(vol: &[f32], d: usize) -> Vec<f32> {
    htn_center_window(vol, d, 0, d, 1.0)
}

/// Inverse of [`htn_center`]: `(Re F − Im F) / D³` of a `(D, D, D)` volume.
///
/// # Panics
/// If `d == 0` or `vol.len() != D³`.
pub fn ihtn_center(vol: &[f32], d: usize) -> Vec<f32> {
    htn_center_window(vol, d, 0, d, 1.0 / (d * d * d) as f32)
}

/// Symmetrizes a stack of Hartley images `(n, D, D)` to `(n, D+1, D+1)`: the interior is the
/// input, the last row repeats the first row and the last column the first column (the corner
/// repeats `[0][0]`), as the reference's `symmetrize_ht`.
///
/// # Panics
/// If `d == 0` or `ht.len()` is not a multiple of D·D.
pub fn symmetrize_ht(ht: &[f32], d: usize) -> Vec<f32> {
    assert!(d > 0, "image size D must be positive");
    assert_eq!(ht.len() % (d * d), 0, "input is not a stack of D×D images");
    let n = ht.len() / (d * d);
    let e = d + 1;
    let mut out = vec![0.0; n * e * e];
    out.par_chunks_mut(e * e)
        .zip(ht.par_chunks(d * d))
        .with_min_len(64)
        .for_each(|(o, img)| {
            for (orow, row) in o.chunks_exact_mut(e).zip(img.chunks_exact(d)) {
                orow[..d].copy_from_slice(row);
                orow[d] = row[0];
            }
            let (body, last) = o.split_at_mut(d * e);
            last.copy_from_slice(&body[..e]);
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_needed_covers_window_and_mirror() {
        // Full window of even D: frequencies −D/2..D/2−1, mirror of −D/2 is bin D/2.
        assert_eq!(bins_needed(8, 0, 8), 5);
        // Odd D: −3..3.
        assert_eq!(bins_needed(7, 0, 7), 4);
        // Crop 128 → 64: frequencies −32..31.
        assert_eq!(bins_needed(128, 32, 64), 33);
        // Window entirely at positive frequencies.
        assert_eq!(bins_needed(16, 10, 3), 5);
    }

    #[test]
    fn shifted_line_is_fftshift() {
        let src = [0.0, 1.0, 2.0, 3.0, 4.0];
        let mut dst = [0.0; 5];
        shifted_line(&mut dst, &src, 2, |o, v| *o = v);
        // numpy.fft.fftshift([0,1,2,3,4]) = [3,4,0,1,2]
        assert_eq!(dst, [3.0, 4.0, 0.0, 1.0, 2.0]);
    }

    #[test]
    fn plan_reuse_gives_identical_results() {
        // Stale buffers between calls would change the second result.
        let d = 9;
        let a: Vec<f32> = (0..d * d).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..d * d).map(|i| ((i * 104_729) % 11) as f32).collect();
        let mut plan = Ht2Plan::new(d);
        let mut first = vec![0.0; d * d];
        let mut again = vec![0.0; d * d];
        let mut other = vec![0.0; d * d];
        plan.ht2_center_into(&a, &mut first);
        plan.ht2_center_window_into(&b, 2, 3, 1.0, &mut other[..9]);
        plan.ht2_center_into(&a, &mut again);
        assert_eq!(first, again);
    }

    #[test]
    fn window_matches_full_transform() {
        let d = 12;
        let img: Vec<f32> = (0..d * d)
            .map(|i| ((i * 31) % 17) as f32 * 0.25 - 2.0)
            .collect();
        let mut plan = Ht2Plan::new(d);
        let mut full = vec![0.0; d * d];
        plan.ht2_center_into(&img, &mut full);
        for (start, len) in [(3, 6), (0, 5), (7, 5), (6, 1)] {
            let mut win = vec![0.0; len * len];
            plan.ht2_center_window_into(&img, start, len, 2.0, &mut win);
            for i in 0..len {
                for j in 0..len {
                    let want = 2.0 * full[(start + i) * d + start + j];
                    let got = win[i * len + j];
                    assert!(
                        (got - want).abs() <= 1e-4,
                        "({start},{len}) [{i}][{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
