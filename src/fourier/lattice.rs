//! The odd `(D+1)²` frequency lattice the reference's image model lives on (cryoDRGN
//! `lattice.py`, `Lattice`), its masks, and the half-lattice evaluation with Hermitian symmetry
//! that the reference's Fourier decoders use (`models.py`, `FTPositionalDecoder.forward`).
//!
//! ## Layout
//! A lattice of odd side `n = D + 1` holds `n²` points ordered as numpy's
//! `meshgrid(linspace(−e, e, n), linspace(−e, e, n))` raveled: point `i = row·n + col` has
//! `x = lin[col]` (x fastest), `y = lin[row]`, `z = 0`, with `lin[j] = −e + j·2e/(n−1)` (the
//! last value exactly `e`, as numpy's `linspace`). The centre point `i = n²/2` is `(0, 0, 0)`.
//! With `e = 0.5` the spacing is `1/D`: point `(row, col)` carries the 2D frequency
//! `((col − D/2)/D, (row − D/2)/D)` in cycles/pixel, the same layout as a symmetrized centered
//! Hartley image (`symmetrize_ht(ht2_center(x))`, `(D+1, D+1)`, indexed `[y][x]`).

use crate::error::{Error, Result};

/// The odd `n × n` lattice over `[−extent, extent]²` (the reference's `Lattice(D+1, extent)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Lattice {
    /// lattice side `n = D + 1` (odd)
    n: usize,
    /// half-width of the lattice in coordinate units (0.5 for the reference's image lattice)
    extent: f32,
    /// whether [`Lattice::circular_mask`] excludes the DC point (the reference's `ignore_DC`)
    ignore_dc: bool,
    /// `(n², 3)` coordinates `(x, y, 0)`, x fastest
    coords: Vec<[f32; 3]>,
    /// `(n², 2)` frequencies `coords[:, :2] / extent / 2` (cycles/pixel when `extent = 0.5`)
    freqs2d: Vec<[f32; 2]>,
}

/// numpy's `linspace(start, stop, n, endpoint=True)` in f64 (`start + i·step`, last = `stop`).
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
    v[n - 1] = stop;
    v
}

impl Lattice {
    /// The `n × n` lattice over `[−extent, extent]²`; the reference builds the image lattice as
    /// `Lattice(D + 1, extent = 0.5)` with `ignore_DC = true`.
    ///
    /// Errors if `n` is even or zero, or `extent` is not positive and finite.
    pub fn new(n: usize, extent: f32, ignore_dc: bool) -> Result<Self> {
        if n.is_multiple_of(2) {
            return Err(Error::invalid(format!(
                "lattice size must be odd (D + 1 for an even image size D), got {n}"
            )));
        }
        if !(extent > 0.0 && extent.is_finite()) {
            return Err(Error::invalid(format!(
                "lattice extent must be positive, got {extent}"
            )));
        }
        let lin: Vec<f32> = linspace(-(extent as f64), extent as f64, n)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let mut coords = Vec::with_capacity(n * n);
        for &y in &lin {
            for &x in &lin {
                coords.push([x, y, 0.0]);
            }
        }
        // As the reference: float32 tensor ops, `coords / extent / 2`.
        let freqs2d = coords
            .iter()
            .map(|c| [c[0] / extent / 2.0, c[1] / extent / 2.0])
            .collect();
        Ok(Lattice {
            n,
            extent,
            ignore_dc,
            coords,
            freqs2d,
        })
    }

    /// The reference's image lattice for even image size `d`: `Lattice(d + 1, 0.5, ignore_DC)`.
    pub fn for_image(d: usize, ignore_dc: bool) -> Result<Self> {
        if d == 0 || !d.is_multiple_of(2) {
            return Err(Error::invalid(format!(
                "image size D must be even and positive, got {d}"
            )));
        }
        Lattice::new(d + 1, 0.5, ignore_dc)
    }

    /// Lattice side `n = D + 1`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Half-width of the lattice in coordinate units.
    pub fn extent(&self) -> f32 {
        self.extent
    }

    /// Whether the DC point is dropped from circular masks.
    pub fn ignore_dc(&self) -> bool {
        self.ignore_dc
    }

    /// Number of points `n²`.
    pub fn len(&self) -> usize {
        self.coords.len()
    }

    /// Always false (a lattice has at least one point); present for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.coords.is_empty()
    }

    /// Index of the DC point `(0, 0, 0)`: `n² / 2`.
    pub fn center_index(&self) -> usize {
        self.len() / 2
    }

    /// Coordinates `(n², 3)`, `(x, y, 0)` with x fastest.
    pub fn coords(&self) -> &[[f32; 3]] {
        &self.coords
    }

    /// 2D frequencies `(n², 2)`: `coords[:, :2] / extent / 2`; cycles/pixel for `extent = 0.5`.
    /// Divide by the pixel size (Å) to get 1/Å (see [`crate::fourier::ctf::ctf_on_lattice`]).
    pub fn freqs2d(&self) -> &[[f32; 2]] {
        &self.freqs2d
    }

    /// Centered circular mask `(n²)` of `radius` pixels (the reference's `get_circular_mask`):
    /// point `i` is kept when `x² + y² ≤ (radius / ⌊n/2⌋ · extent)²`; with `ignore_dc` the
    /// DC point is dropped. Errors if `2·radius + 1 > n`.
    pub fn circular_mask(&self, radius: f32) -> Result<Vec<bool>> {
        if 2.0 * radius + 1.0 > self.n as f32 || radius.is_nan() {
            return Err(Error::invalid(format!(
                "circular mask radius {radius} too large for a lattice of size {}",
                self.n
            )));
        }
        let normed = radius / (self.n / 2) as f32 * self.extent;
        let r2 = normed * normed;
        let mut mask: Vec<bool> = self
            .coords
            .iter()
            .map(|c| c[0] * c[0] + c[1] * c[1] + c[2] * c[2] <= r2)
            .collect();
        if self.ignore_dc {
            let c = self.center_index();
            mask[c] = false;
        }
        Ok(mask)
    }

    /// Centered square mask `(n²)` of `2·half_side + 1` points per side (the reference's
    /// `get_square_mask`, which does not implement `ignore_DC`; here the DC point is always kept).
    /// Errors if `2·half_side + 1 > n`.
    pub fn square_mask(&self, half_side: usize) -> Result<Vec<bool>> {
        if 2 * half_side + 1 > self.n {
            return Err(Error::invalid(format!(
                "square mask half-side {half_side} too large for a lattice of size {}",
                self.n
            )));
        }
        let c = self.n / 2;
        let (b, e) = (c - half_side, c + half_side);
        Ok((0..self.len())
            .map(|i| {
                let (row, col) = (i / self.n, i % self.n);
                (b..=e).contains(&row) && (b..=e).contains(&col)
            })
            .collect())
    }

    /// Coordinates of the points selected by `mask` (`coords[mask]`), in lattice order.
    ///
    /// # Panics
    /// If `mask.len() != n²`.
    pub fn masked_coords(&self, mask: &[bool]) -> Vec<[f32; 3]> {
        assert_eq!(mask.len(), self.len(), "mask must hold n² values");
        select(&self.coords, mask)
    }

    /// Frequencies of the points selected by `mask` (`freqs2d[mask]`), in lattice order.
    ///
    /// # Panics
    /// If `mask.len() != n²`.
    pub fn masked_freqs2d(&self, mask: &[bool]) -> Vec<[f32; 2]> {
        assert_eq!(mask.len(), self.len(), "mask must hold n² values");
        select(&self.freqs2d, mask)
    }
}

fn select<T: Copy>(v: &[T], mask: &[bool]) -> Vec<T> {
    v.iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(&x, _)| x)
        .collect()
}

/// How the reference's Fourier decoder splits a list of `n_points` lattice points (the full
/// lattice, or a centrally symmetric masked subset of it, in lattice order) into the half it
/// evaluates and the half it fills by Hermitian symmetry (`FTPositionalDecoder.forward`).
///
/// Point `i` and point `n_points − 1 − i` are antipodal (`k` and `−k`) because the lattice and
/// its masks are centrally symmetric. The decoder evaluates the first `cc` points (`⌈n/2⌉`: the
/// rows `y < 0`, plus the centre row up to and including DC when DC is present), each giving
/// `(Re F(k), Im F(k))`, and writes the Hartley image as
///
/// - `ht[i] = Re F(k_i) − Im F(k_i)` for `i < cc`,
/// - `ht[n − 1 − i] = Re F(k_i) + Im F(k_i) = H(−k_i)` for `i < c = ⌊n/2⌋`,
///
/// using `F(−k) = conj F(k)` for a real volume. (Its `decode` additionally evaluates the network
/// only at `z ≤ 0`, negating points with `z > 0` and conjugating the result; that belongs to the
/// model, not the lattice.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HermitianHalf {
    /// number of points in the full list
    pub n_points: usize,
    /// `⌊n_points / 2⌋`: points filled by symmetry
    pub c: usize,
    /// `⌈n_points / 2⌉`: points evaluated (`c + 1` when `n_points` is odd, i.e. DC included)
    pub cc: usize,
}

impl HermitianHalf {
    /// The split of a symmetric list of `n_points` lattice points.
    pub fn new(n_points: usize) -> Self {
        let c = n_points / 2;
        let cc = if n_points % 2 == 1 { c + 1 } else { c };
        HermitianHalf { n_points, c, cc }
    }

    /// Assembles the Hartley values `(n_points)` from the evaluated half `top`, `(cc, 2)` as
    /// `(Re F, Im F)` pairs for points `0..cc` (see the type's doc).
    ///
    /// # Panics
    /// If `top.len() != cc` or `out.len() != n_points`.
    pub fn assemble_ht(&self, top: &[[f32; 2]], out: &mut [f32]) {
        assert_eq!(top.len(), self.cc, "evaluated half must hold cc points");
        assert_eq!(out.len(), self.n_points, "output must hold n_points values");
        for (o, t) in out[..self.cc].iter_mut().zip(top) {
            *o = t[0] - t[1];
        }
        for (j, o) in out[self.cc..].iter_mut().enumerate() {
            let t = top[self.c - 1 - j];
            *o = t[0] + t[1];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_meshgrid() {
        let l = Lattice::for_image(4, true).unwrap();
        assert_eq!(l.n(), 5);
        assert_eq!(l.coords()[0], [-0.5, -0.5, 0.0]);
        assert_eq!(l.coords()[1], [-0.25, -0.5, 0.0]);
        assert_eq!(l.coords()[5], [-0.5, -0.25, 0.0]);
        assert_eq!(l.coords()[l.center_index()], [0.0, 0.0, 0.0]);
        assert_eq!(l.coords()[24], [0.5, 0.5, 0.0]);
        // extent 0.5: freqs2d equals the coordinates (cycles/pixel, spacing 1/D).
        assert_eq!(l.freqs2d()[1], [-0.25, -0.5]);
        let l2 = Lattice::new(5, 2.0, false).unwrap();
        assert_eq!(l2.freqs2d()[1], [-0.25, -0.5]);
        assert!(Lattice::new(4, 0.5, true).is_err());
        assert!(Lattice::for_image(5, true).is_err());
    }

    #[test]
    fn circular_mask_drops_dc_and_corners() {
        let l = Lattice::for_image(8, true).unwrap();
        let m = l.circular_mask(4.0).unwrap();
        assert!(!m[l.center_index()]);
        assert!(!m[0], "corner is outside the inscribed circle");
        // (x, y) = (0.5, 0): radius exactly 4 px, kept.
        assert!(m[4 * 9 + 8]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 48);
        let keep_dc = Lattice::for_image(8, false).unwrap();
        assert!(keep_dc.circular_mask(4.0).unwrap()[keep_dc.center_index()]);
        assert!(l.circular_mask(4.5).is_err());
        // Central symmetry: point i and n²−1−i agree.
        assert!((0..m.len()).all(|i| m[i] == m[m.len() - 1 - i]));
    }

    #[test]
    fn square_mask_counts() {
        let l = Lattice::for_image(8, false).unwrap();
        let m = l.square_mask(2).unwrap();
        assert_eq!(m.iter().filter(|&&b| b).count(), 25);
        assert!(m[l.center_index()]);
        assert!(l.square_mask(5).is_err());
    }

    #[test]
    fn hermitian_half_fills_mirror() {
        // Full 3×3 lattice: 9 points, evaluate 5 (DC included), fill 4.
        let h = HermitianHalf::new(9);
        assert_eq!((h.c, h.cc), (4, 5));
        let top: Vec<[f32; 2]> = (0..5).map(|i| [i as f32, 0.5 * i as f32]).collect();
        let mut out = vec![0.0; 9];
        h.assemble_ht(&top, &mut out);
        assert_eq!(out[2], 1.0); // 2 − 1
        assert_eq!(out[8], 0.0); // mirror of point 0: 0 + 0
        assert_eq!(out[5], 4.5); // mirror of point 3: 3 + 1.5
                                 // DC dropped: even count, nothing extra evaluated.
        let h = HermitianHalf::new(8);
        assert_eq!((h.c, h.cc), (4, 4));
    }
}
