//! Fourier shell correlation between two volumes, as the reference computes it (cryoDRGN
//! `commands_utils/fsc.py`, `get_fsc_curve` and `get_fsc_thresholds`).
//!
//! ## Math
//! Both `(D, D, D)` volumes (D even) are multiplied by the optional real-space mask and
//! transformed with `fftn_center` (zero frequency at `[D/2][D/2][D/2]`). A voxel at centered
//! index `(i, j, k)` has radius `ρ = √((i−D/2)² + (j−D/2)² + (k−D/2)²)` pixels; shell `s`
//! (`1 ≤ s < D/2`) holds the voxels with `s − 1 ≤ ρ < s` (so shell 1 is the DC voxel alone,
//! exactly as the reference's `dists < i` minus `dists < i − 1`). Per shell
//!
//! `FSC(s) = Re(Σ conj(F₁)·F₂) / √(Σ|F₁|² · Σ|F₂|²)`, undefined (NaN) when the denominator is 0,
//!
//! with `FSC(0) = 1`. (The reference writes 1 for a zero denominator; an empty shell correlates with
//! nothing, so we write NaN, which the text output shows as an empty field.) A volume with no power
//! beyond the zero frequency — all zero, or constant — has no FSC at all: [`fsc_curve`] returns an
//! error saying so. The curve has D/2 points at frequency `s / D` (1/pixel; divide by Apix for
//! 1/Å). Corners beyond radius D/2 − 1 are not used.
//!
//! The resolution at a threshold (0.5, 0.143) follows the reference's rule: the **largest**
//! frequency whose FSC is ≥ the threshold (not the first crossing), reported as `Apix / freq` Å;
//! none when no frequency above 0 reaches it. Sums are accumulated in f64 (the reference uses
//! complex64 dot products); the text output rounds each FSC to f32 as the reference's values are.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::fourier::fft::fftn_center;
use crate::io::atomic::write_atomic;

/// An FSC curve: `fsc[s]` at frequency `pixres[s] = s / D` (1/pixel), `s = 0..D/2`.
#[derive(Debug, Clone, PartialEq)]
pub struct FscCurve {
    /// frequency of each shell (1/pixel), `s / D`
    pub pixres: Vec<f64>,
    /// correlation of each shell, `fsc[0] = 1`
    pub fsc: Vec<f64>,
}

/// The shell of centered voxel `(i, j, k)` of a `D³` grid, `None` past the last shell
/// (`⌊ρ⌋ + 1 ≥ D/2`).
fn shell_of(d: usize, i: usize, j: usize, k: usize) -> Option<usize> {
    let h = (d / 2) as f64;
    let (a, b, c) = (i as f64 - h, j as f64 - h, k as f64 - h);
    let rho = (a * a + b * b + c * c).sqrt();
    let s = rho.floor() as usize + 1;
    (s < d / 2).then_some(s)
}

/// FSC between two `(D, D, D)` volumes (D even), each multiplied by `mask` `(D, D, D)` first if
/// given (see the module doc).
///
/// Errors if D is odd or zero, a volume or the mask is not `D³` values, or either (masked) volume
/// is empty or constant (no power beyond the zero frequency: the FSC is undefined).
pub fn fsc_curve(vol1: &[f32], vol2: &[f32], d: usize, mask: Option<&[f32]>) -> Result<FscCurve> {
    if d < 2 || !d.is_multiple_of(2) {
        return Err(Error::invalid(format!(
            "FSC: box size must be even and at least 2, got {d}"
        )));
    }
    let n = d * d * d;
    for (what, len) in [
        ("first volume", Some(vol1.len())),
        ("second volume", Some(vol2.len())),
        ("mask", mask.map(<[f32]>::len)),
    ] {
        if let Some(len) = len.filter(|&l| l != n) {
            return Err(Error::Shape {
                what: format!("FSC {what}"),
                expected: format!("{d}x{d}x{d} = {n} values"),
                got: format!("{len}"),
            });
        }
    }
    let masked = |v: &[f32]| -> Vec<f32> {
        match mask {
            Some(m) => v.iter().zip(m).map(|(a, b)| a * b).collect(),
            None => v.to_vec(),
        }
    };
    let f1 = fftn_center(&masked(vol1), d);
    let f2 = fftn_center(&masked(vol2), d);
    let ns = d / 2;
    // Per shell: (Σ|F1|², Σ|F2|², Re Σ conj(F1)·F2), accumulated per z-slice then reduced.
    let sums = (0..d)
        .into_par_iter()
        .map(|i| {
            let mut acc = vec![[0f64; 3]; ns];
            for j in 0..d {
                for k in 0..d {
                    if let Some(s) = shell_of(d, i, j, k) {
                        let idx = (i * d + j) * d + k;
                        let (a, b) = (f1[idx], f2[idx]);
                        let (ar, ai, br, bi) = (a.re as f64, a.im as f64, b.re as f64, b.im as f64);
                        acc[s][0] += ar * ar + ai * ai;
                        acc[s][1] += br * br + bi * bi;
                        acc[s][2] += ar * br + ai * bi;
                    }
                }
            }
            acc
        })
        // Planes added in order, not by a parallel `reduce`: the same bits on every run.
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![[0f64; 3]; ns], |mut x, y| {
            for (a, b) in x.iter_mut().zip(&y) {
                for q in 0..3 {
                    a[q] += b[q];
                }
            }
            x
        });
    // A volume with no power beyond the zero frequency (all zero, or constant) correlates with
    // nothing: its FSC is undefined, not 1.
    for (q, what) in [(0, "first"), (1, "second")] {
        if sums.iter().skip(2).all(|s| s[q] == 0.0) {
            return Err(Error::invalid(format!(
                "FSC is undefined: the {what} volume{} has no signal beyond the zero frequency (it is empty or constant)",
                if mask.is_some() { ", masked," } else { "" }
            )));
        }
    }
    let mut fsc = vec![1.0; ns];
    for (f, s) in fsc.iter_mut().zip(&sums).skip(1) {
        let var = (s[0] * s[1]).sqrt();
        *f = if var != 0.0 { s[2] / var } else { f64::NAN };
    }
    Ok(FscCurve {
        pixres: (0..ns).map(|s| s as f64 / d as f64).collect(),
        fsc,
    })
}

impl FscCurve {
    /// Number of points (D/2).
    pub fn len(&self) -> usize {
        self.fsc.len()
    }

    /// True for an empty curve.
    pub fn is_empty(&self) -> bool {
        self.fsc.is_empty()
    }

    /// Frequencies in 1/Å: `pixres / apix` (apix in Å/pixel).
    pub fn freqs_angstrom(&self, apix: f64) -> Vec<f64> {
        self.pixres.iter().map(|p| p / apix).collect()
    }

    /// The largest frequency (1/pixel) whose FSC is ≥ `threshold`, if any frequency above 0
    /// reaches it (the reference's `get_fsc_thresholds`).
    pub fn pixres_at(&self, threshold: f64) -> Option<f64> {
        let above = || {
            self.pixres
                .iter()
                .zip(&self.fsc)
                .filter(move |(_, &f)| f >= threshold)
        };
        if !above().any(|(&p, _)| p > 0.0) {
            return None;
        }
        above().map(|(&p, _)| p).reduce(f64::max)
    }

    /// Resolution (Å) at `threshold`: `apix / pixres_at(threshold)`.
    pub fn resolution_at(&self, threshold: f64, apix: f64) -> Option<f64> {
        self.pixres_at(threshold).map(|p| apix / p)
    }

    /// The reference's text output (`DataFrame.to_csv(sep=" ", index=False)`): a header line
    /// `pixres fsc`, then one line `<pixres> <fsc>` per shell, numbers in Python's `repr`
    /// format, FSC rounded to f32 first (NaN written as an empty field, as pandas does).
    pub fn to_txt(&self) -> String {
        let mut s = String::from("pixres fsc\n");
        for (p, f) in self.pixres.iter().zip(&self.fsc) {
            s.push_str(&py_repr(*p));
            s.push(' ');
            s.push_str(&py_repr(*f as f32 as f64));
            s.push('\n');
        }
        s
    }

    /// Writes [`FscCurve::to_txt`] to `path` atomically.
    pub fn write_txt(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let txt = self.to_txt();
        write_atomic(path, |w| w.write_all(txt.as_bytes()).at(path))
    }
}

/// Python's `repr(float)` (shortest round-trip digits; fixed notation for exponents −4..15,
/// otherwise `d.ddde±XX`); NaN as an empty string (pandas' `to_csv`), infinities as `inf`/`-inf`.
pub fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return String::new();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let e = exp as usize;
            let int_len = e + 1;
            if digits.len() <= int_len {
                format!("{sign}{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

/// Python's `"{:.Ng}".format(x)` for `sig = N` significant digits (used for the resolution
/// log lines, which the reference prints with `.4g`).
pub fn fmt_g(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let sig = sig.max(1);
    let sci = format!("{:.*e}", sig - 1, x);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if exp < -4 || exp >= sig as i32 {
        let es = if exp < 0 { '-' } else { '+' };
        format!("{}e{es}{:02}", strip(mant.to_string()), exp.abs())
    } else {
        let decimals = (sig as i32 - 1 - exp).max(0) as usize;
        strip(format!("{:.*}", decimals, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr() {
        assert_eq!(py_repr(0.0), "0.0");
        assert_eq!(py_repr(1.0), "1.0");
        assert_eq!(py_repr(0.015625), "0.015625");
        assert_eq!(py_repr(0.9980700016021729), "0.9980700016021729");
        assert_eq!(py_repr(1e-5), "1e-05");
        assert_eq!(py_repr(-0.00012), "-0.00012");
        assert_eq!(py_repr(123.5), "123.5");
        assert_eq!(py_repr(1e16), "1e+16");
        assert_eq!(py_repr(-2.5e-7), "-2.5e-07");
        assert_eq!(py_repr(f64::NAN), "");
    }

    #[test]
    fn g_format() {
        assert_eq!(fmt_g(7.0, 4), "7");
        assert_eq!(fmt_g(4.571428571, 4), "4.571");
        assert_eq!(fmt_g(12.8, 4), "12.8");
        assert_eq!(fmt_g(12345.0, 4), "1.234e+04");
        assert_eq!(fmt_g(0.000012345, 4), "1.234e-05");
    }

    #[test]
    fn shells_partition_the_sphere() {
        let d = 8;
        assert_eq!(shell_of(d, 4, 4, 4), Some(1));
        assert_eq!(shell_of(d, 4, 4, 5), Some(2));
        assert_eq!(shell_of(d, 4, 4, 7), None); // ρ = 3: shell 4 = D/2, dropped
        assert_eq!(shell_of(d, 4, 5, 6), Some(3)); // ρ = √5
    }

    #[test]
    fn threshold_rule_takes_largest_frequency() {
        let c = FscCurve {
            pixres: vec![0.0, 0.25, 0.5, 0.75],
            fsc: vec![1.0, 0.4, 0.6, 0.1],
        };
        assert_eq!(c.pixres_at(0.5), Some(0.5));
        assert_eq!(c.resolution_at(0.143, 2.0), Some(4.0));
        let flat = FscCurve {
            pixres: vec![0.0, 0.25],
            fsc: vec![1.0, 0.0],
        };
        assert_eq!(flat.pixres_at(0.5), None);
    }
}
