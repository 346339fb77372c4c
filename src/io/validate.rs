//! Checks on values read from metadata files and on the command-line values that replace them, shared
//! by the parsers (`parse-ctf-*`, `parse-pose-*`, ctf.pkl and pose.pkl readers): finite, in range,
//! consistent across rows. An error names the file, the row and the field (or the flag) and says what
//! was wrong, so no invalid value gets into an output.
//!
//! Values are checked in f64 as read and must also be finite in f32, the precision of the
//! reference's `.pkl` outputs (`1e39` is finite in f64 but `inf` once written).
//!
//! | quantity | rule |
//! |---|---|
//! | box size D (px) | an even integer in `2..=MAX_BOX` ([`Rule::BoxSize`]; the lattice `(D+1)²` used throughout needs D even) |
//! | pixel size Apix (Å), voltage (kV) | finite, `> 0` ([`Rule::Positive`]) |
//! | amplitude contrast w | in `[0, 1]` ([`Rule::Fraction`]) |
//! | defocus (Å), astigmatism angle, Cs (mm), phase shift, angles, shifts | finite ([`Rule::Finite`]) |
//! | rotation matrix | orthonormal within [`ROTATION_TOL`], `det > 0` ([`rotation_violation`]) |

use crate::error::{Error, Result};
use std::path::Path;

/// Largest box size D accepted (pixels). 8192² f32 is a 256 MiB image, far beyond any particle box
/// (and beyond the 2³¹ voxels a D³ volume could index with D = 2147483647 from a bad `blob/shape`).
pub const MAX_BOX: usize = 8192;

/// Tolerance on `max |R·Rᵀ − I|` for a rotation matrix read from a file (f32 matrices written by
/// the reference are orthonormal to ~1e-7; the tolerance of `pose-error`'s check).
pub const ROTATION_TOL: f64 = 1e-3;

/// What a value must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// finite (also in f32)
    Finite,
    /// finite (also in f32) and `> 0`
    Positive,
    /// in `[0, 1]`
    Fraction,
    /// an even integer in `2..=MAX_BOX`
    BoxSize,
}

impl Rule {
    /// `None` when `v` satisfies the rule, else what the rule requires (for an error message).
    pub fn violation(self, v: f64) -> Option<String> {
        let finite = v.is_finite() && (v as f32).is_finite();
        let ok = match self {
            Rule::Finite => finite,
            Rule::Positive => finite && v > 0.0,
            Rule::Fraction => (0.0..=1.0).contains(&v),
            Rule::BoxSize => {
                finite && v.fract() == 0.0 && (2.0..=MAX_BOX as f64).contains(&v) && v % 2.0 == 0.0
            }
        };
        (!ok).then(|| match self {
            Rule::Finite => "must be a finite number (within float32 range)".to_string(),
            Rule::Positive => "must be a positive finite number (within float32 range)".to_string(),
            Rule::Fraction => "must be in [0, 1]".to_string(),
            Rule::BoxSize => format!("must be an even integer in 2..={MAX_BOX} (pixels)"),
        })
    }
}

/// The rows of a table in one file, for errors: `{file}: `{field}`, {name} {row}: {value} …`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// the file
    pub path: &'a Path,
    /// what a row is called (`particle row`, `row`, `pose`)
    pub name: &'a str,
    /// the number of the first row (1 for STAR files, as their parse errors count lines of the
    /// table; 0 for numpy arrays)
    pub first: usize,
}

impl<'a> Rows<'a> {
    /// Particle rows of a STAR file, numbered from 1.
    pub fn star(path: &'a Path) -> Self {
        Rows {
            path,
            name: "particle row",
            first: 1,
        }
    }

    /// Records of a `.cs` file or rows of a numpy array, numbered from 0 as numpy indexes them.
    pub fn records(path: &'a Path, name: &'a str) -> Self {
        Rows {
            path,
            name,
            first: 0,
        }
    }

    /// An error on 0-based row `row`, field `field`.
    pub fn error(&self, row: usize, field: &str, msg: impl std::fmt::Display) -> Error {
        Error::format(
            self.path,
            format!("`{field}`, {} {}: {msg}", self.name, row + self.first),
        )
    }

    /// Check `values`, `width` values per row (all of them with `rule`); the error names the first
    /// row that fails.
    pub fn check(&self, field: &str, values: &[f64], width: usize, rule: Rule) -> Result<()> {
        for (i, v) in values.iter().enumerate() {
            if let Some(why) = rule.violation(*v) {
                return Err(self.error(i / width.max(1), field, format!("{v} {why}")));
            }
        }
        Ok(())
    }

    /// Box sizes: each a valid [`Rule::BoxSize`] and all equal (one image size per file); returns it.
    /// `values` must not be empty (see [`Rows::non_empty`]).
    pub fn box_size(&self, field: &str, values: &[f64]) -> Result<usize> {
        self.check(field, values, 1, Rule::BoxSize)?;
        let Some(&d0) = values.first() else {
            return Err(Error::format(self.path, "no particles"));
        };
        if let Some(i) = values.iter().position(|&d| d != d0) {
            return Err(self.error(
                i,
                field,
                format!(
                    "box size {} differs from {d0} in {} {} (one image size per file)",
                    values[i], self.name, self.first
                ),
            ));
        }
        Ok(d0 as usize)
    }

    /// An error unless the table has rows.
    pub fn non_empty(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::format(
                self.path,
                "no particles: the table has no rows (an empty selection is an error)",
            ));
        }
        Ok(())
    }
}

/// Check a command-line value: the error names the flag.
pub fn flag(flag: &str, v: f64, rule: Rule) -> Result<f64> {
    match rule.violation(v) {
        None => Ok(v),
        Some(why) => Err(Error::invalid(format!("{flag} {v}: the value {why}"))),
    }
}

/// Check an optional command-line value (see [`flag`]).
pub fn opt_flag(name: &str, v: Option<f64>, rule: Rule) -> Result<Option<f64>> {
    v.map(|v| flag(name, v, rule)).transpose()
}

/// Check a box size given on the command line.
pub fn flag_box(name: &str, d: Option<usize>) -> Result<Option<usize>> {
    d.map(|d| flag(name, d as f64, Rule::BoxSize).map(|_| d))
        .transpose()
}

/// `None` when the row-major `r` is a proper rotation (`max |R·Rᵀ − I| ≤ ROTATION_TOL`, `det R > 0`,
/// all entries finite), else why not.
pub fn rotation_violation(r: &[f32; 9]) -> Option<String> {
    let r = r.map(f64::from);
    let mut ortho = 0f64;
    for i in 0..3 {
        for j in 0..3 {
            let dot: f64 = (0..3).map(|k| r[3 * i + k] * r[3 * j + k]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            // NaN-propagating max: NaN entries fail below
            let e = (dot - want).abs();
            ortho = if e.is_nan() || e > ortho { e } else { ortho };
        }
    }
    let det = r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
        + r[2] * (r[3] * r[7] - r[4] * r[6]);
    // Written so that NaN fails.
    let proper = ortho <= ROTATION_TOL && det > 0.0;
    (!proper).then(|| {
        format!(
            "not a rotation matrix (max |R·Rᵀ − I| = {ortho:.2e}, det = {det:.4}; needs ≤ {ROTATION_TOL:e} and > 0)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(Rule::Finite.violation(-1e30).is_none());
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e39, -1e39] {
            assert!(Rule::Finite.violation(v).is_some(), "{v}");
            assert!(Rule::Positive.violation(v).is_some(), "{v}");
            assert!(Rule::Fraction.violation(v).is_some(), "{v}");
            assert!(Rule::BoxSize.violation(v).is_some(), "{v}");
        }
        assert!(Rule::Positive.violation(0.0).is_some());
        assert!(Rule::Positive.violation(1e-3).is_none());
        assert!(Rule::Fraction.violation(0.0).is_none());
        assert!(Rule::Fraction.violation(1.0).is_none());
        assert!(Rule::Fraction.violation(1.0001).is_some());
        for d in [2.0, 64.0, MAX_BOX as f64] {
            assert!(Rule::BoxSize.violation(d).is_none(), "{d}");
        }
        for d in [
            0.0,
            1.0,
            63.0,
            64.5,
            -64.0,
            (MAX_BOX + 2) as f64,
            2147483647.0,
        ] {
            assert!(Rule::BoxSize.violation(d).is_some(), "{d}");
        }
    }

    #[test]
    fn rotations() {
        let id = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert!(rotation_violation(&id).is_none());
        let (s, c) = 0.3f32.sin_cos();
        assert!(rotation_violation(&[c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]).is_none());
        let mut nan = id;
        nan[4] = f32::NAN;
        for bad in [
            [0.0; 9],
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
            nan,
        ] {
            assert!(rotation_violation(&bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_file_row_and_field() {
        let p = Path::new("x.star");
        let e = Rows::star(p)
            .check("rlnVoltage", &[300.0, 0.0], 1, Rule::Positive)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.star") && e.contains("rlnVoltage") && e.contains("particle row 2"),
            "{e}"
        );
        let e = Rows::records(p, "row")
            .box_size("blob/shape", &[64.0, 64.0, 32.0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 2") && e.contains("32"), "{e}");
        let e = flag("--kv", 0.0, Rule::Positive).unwrap_err().to_string();
        assert!(e.contains("--kv"), "{e}");
    }
}
