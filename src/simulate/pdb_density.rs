//! Density maps from atomic models, as Chimera's `molmap` (itself after EMAN's `pdb2mrc`): each
//! atom is an isotropic 3-D Gaussian carrying its atomic number (the electron count of the neutral
//! atom) times its occupancy, with
//!
//! `σ = res / (π·√2) ≈ 0.225·res` (Å),
//!
//! the default `sigmaFactor` of Chimera's molmap, which makes the Gaussian's Fourier transform
//! `exp(−2π²σ²k²)` fall to 1/e at the spatial frequency `k = 1/res`.
//!
//! Each voxel receives the integral of the Gaussian over its cube (a product of per-axis `erf`
//! differences), so the map is exact in total mass (`Σ voxels = Σ weights`, up to the truncation at
//! 5σ and atoms near the box edge) even when σ is below a pixel, and an atom on a voxel centre
//! gives its peak there. The map's units are electrons per voxel.

use crate::error::{Error, Result};
use crate::io::pdb::{atomic_number, Atom};
use rayon::prelude::*;
use std::path::Path;

/// Gaussians are truncated at this many standard deviations (Chimera's `cutoffRange` default).
const CUTOFF_SIGMAS: f64 = 5.0;

/// Where the model goes in the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Centering {
    /// the weighted centre of mass goes to the box centre (voxel D/2)
    Mass,
    /// the centre of the atoms' bounding box goes to the box centre
    Geometric,
    /// no shift: model coordinate (0, 0, 0) Å is voxel (0, 0, 0), as a map with origin 0
    None,
}

/// Parameters of [`model_density`].
#[derive(Debug, Clone, Copy)]
pub struct DensityParams {
    /// box size (pixels)
    pub d: usize,
    /// pixel size (Å)
    pub apix: f64,
    /// resolution (Å); σ = res/(π√2)
    pub res: f64,
    /// placement of the model
    pub center: Centering,
}

/// A computed map and what happened to the model.
#[derive(Debug, Clone)]
pub struct DensityMap {
    /// D³ values, row-major `(z, y, x)` (electrons per voxel)
    pub vol: Vec<f32>,
    /// atoms whose centre lies outside the box (their density is clipped)
    pub n_outside: usize,
    /// the model point (Å) placed at voxel `(D/2, D/2, D/2)`
    pub center_angstrom: [f64; 3],
}

/// Gaussian standard deviation (Å) for a map of resolution `res` (Å): `res / (π·√2)`.
pub fn sigma_for_resolution(res: f64) -> f64 {
    res / (std::f64::consts::PI * std::f64::consts::SQRT_2)
}

/// Per-atom weights `Z · occupancy`. An element that is not in the periodic table, or an
/// occupancy outside `[0, 1]`, is an error naming `path`, the line and the atom.
pub fn atom_weights(atoms: &[Atom], path: &Path) -> Result<Vec<f64>> {
    atoms
        .iter()
        .map(|a| {
            let z = atomic_number(&a.element).ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "line {}: unknown element `{}` for atom `{}`",
                        a.line, a.element, a.name
                    ),
                )
            })?;
            if !(0.0..=1.0).contains(&a.occupancy) {
                return Err(Error::format(
                    path,
                    format!(
                        "line {}: occupancy {} of atom `{}` is outside [0, 1]",
                        a.line, a.occupancy, a.name
                    ),
                ));
            }
            Ok(z as f64 * a.occupancy)
        })
        .collect()
}

/// Largest |coordinate| accepted for an atom (Å): 10 µm, beyond any model (a PDB coordinate field
/// holds at most 9999.999 Å); farther atoms are errors in the input, and one of them alone would pull
/// the centre of mass away from the model and leave an empty map.
pub const MAX_COORD_ANGSTROM: f64 = 1e5;

/// Check every atom's coordinates are finite and within ±[`MAX_COORD_ANGSTROM`]; the error names
/// `path`, the line, the atom and the axis.
pub fn check_coordinates(atoms: &[Atom], path: &Path) -> Result<()> {
    for a in atoms {
        for (axis, x) in ["x", "y", "z"].iter().zip(a.pos) {
            if !(x.is_finite() && x.abs() <= MAX_COORD_ANGSTROM) {
                return Err(Error::format(
                    path,
                    format!(
                        "line {}: coordinate {axis} = {x} Å of atom `{}` is not within ±{MAX_COORD_ANGSTROM:e} Å",
                        a.line, a.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The complementary error function, `erfc(x) = 1 − erf(x)`, with fractional error below 1.2e-7
/// everywhere (the Chebyshev fit of Numerical Recipes, 2nd ed., §6.2).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Fraction of a unit 1-D Gaussian centred at `c` (σ in voxels) inside voxel `[i − ½, i + ½]`.
fn voxel_fraction(i: f64, c: f64, sigma: f64) -> f64 {
    let s = sigma * std::f64::consts::SQRT_2;
    let a = (i - 0.5 - c) / s;
    let b = (i + 0.5 - c) / s;
    // erf(b) − erf(a) = erfc(a) − erfc(b); use the side where both are small for accuracy
    let v = if a >= 0.0 {
        erfc(a) - erfc(b)
    } else if b <= 0.0 {
        erfc(-b) - erfc(-a)
    } else {
        2.0 - erfc(-a) - erfc(b)
    };
    (0.5 * v).max(0.0)
}

/// One axis: first voxel and per-voxel fractions within `CUTOFF_SIGMAS·σ` (+½ voxel) of `c`.
fn axis_table(c: f64, sigma: f64, d: usize) -> (usize, Vec<f64>) {
    let r = CUTOFF_SIGMAS * sigma + 0.5;
    let lo = (c - r).ceil().max(0.0);
    let hi = (c + r).floor().min(d as f64 - 1.0);
    if hi < lo {
        return (0, Vec::new());
    }
    let (lo, hi) = (lo as usize, hi as usize);
    (
        lo,
        (lo..=hi)
            .map(|i| voxel_fraction(i as f64, c, sigma))
            .collect(),
    )
}

/// Render atoms with `weights` (e.g. from [`atom_weights`]) on a D³ grid of `p.apix` Å pixels.
pub fn model_density(atoms: &[Atom], weights: &[f64], p: &DensityParams) -> Result<DensityMap> {
    if atoms.len() != weights.len() {
        return Err(Error::Shape {
            what: "atom weights".into(),
            expected: format!("{} values", atoms.len()),
            got: weights.len().to_string(),
        });
    }
    if p.d == 0 {
        return Err(Error::invalid("box size D must be positive"));
    }
    if !(p.apix.is_finite() && p.apix > 0.0) {
        return Err(Error::invalid(format!(
            "pixel size must be positive, got {}",
            p.apix
        )));
    }
    if !(p.res.is_finite() && p.res > 0.0) {
        return Err(Error::invalid(format!(
            "resolution must be positive, got {}",
            p.res
        )));
    }
    if atoms.is_empty() {
        return Err(Error::invalid("the model has no atoms"));
    }
    if let Some((a, w)) = atoms
        .iter()
        .zip(weights)
        .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
    {
        return Err(Error::invalid(format!(
            "atom `{}` (line {}) has weight {w}; weights must be finite and non-negative (check its occupancy)",
            a.name, a.line
        )));
    }
    let d = p.d;
    let half = d as f64 / 2.0;
    let center = match p.center {
        Centering::Mass => {
            let w: f64 = weights.iter().sum();
            if w <= 0.0 {
                return Err(Error::invalid(
                    "the model's total weight is zero; cannot centre it by mass",
                ));
            }
            let mut c = [0.0; 3];
            for (a, wi) in atoms.iter().zip(weights) {
                for (ck, pk) in c.iter_mut().zip(a.pos) {
                    *ck += wi * pk / w;
                }
            }
            c
        }
        Centering::Geometric => {
            let mut lo = [f64::INFINITY; 3];
            let mut hi = [f64::NEG_INFINITY; 3];
            for a in atoms {
                for k in 0..3 {
                    lo[k] = lo[k].min(a.pos[k]);
                    hi[k] = hi[k].max(a.pos[k]);
                }
            }
            [
                0.5 * (lo[0] + hi[0]),
                0.5 * (lo[1] + hi[1]),
                0.5 * (lo[2] + hi[2]),
            ]
        }
        Centering::None => [half * p.apix; 3],
    };
    let sigma = sigma_for_resolution(p.res) / p.apix;
    let mut n_outside = 0;
    // per atom: (weight, x table, y table, z table); voxel coordinates of atom k: (r − c)/apix + D/2
    let mut tables = Vec::with_capacity(atoms.len());
    for (a, &w) in atoms.iter().zip(weights) {
        let v = [
            (a.pos[0] - center[0]) / p.apix + half,
            (a.pos[1] - center[1]) / p.apix + half,
            (a.pos[2] - center[2]) / p.apix + half,
        ];
        if v.iter().any(|&x| x < -0.5 || x > d as f64 - 0.5) {
            n_outside += 1;
        }
        let tx = axis_table(v[0], sigma, d);
        let ty = axis_table(v[1], sigma, d);
        let tz = axis_table(v[2], sigma, d);
        if !(tx.1.is_empty() || ty.1.is_empty() || tz.1.is_empty()) && w != 0.0 {
            tables.push((w, tx, ty, tz));
        }
    }
    // atoms touching each z-slice
    let mut by_slice: Vec<Vec<u32>> = vec![Vec::new(); d];
    for (i, (_, _, _, (z0, gz))) in tables.iter().enumerate() {
        for s in &mut by_slice[*z0..z0 + gz.len()] {
            s.push(i as u32);
        }
    }
    let mut vol = vec![0f32; d * d * d];
    vol.par_chunks_mut(d * d)
        .zip(by_slice.par_iter())
        .enumerate()
        .for_each(|(z, (slice, ids))| {
            for &i in ids {
                let (w, (x0, gx), (y0, gy), (z0, gz)) = &tables[i as usize];
                let wz = w * gz[z - z0];
                for (j, gyv) in gy.iter().enumerate() {
                    let start = (y0 + j) * d + x0;
                    let wzy = wz * gyv;
                    for (v, gxv) in slice[start..start + gx.len()].iter_mut().zip(gx) {
                        *v += (wzy * gxv) as f32;
                    }
                }
            }
        });
    Ok(DensityMap {
        vol,
        n_outside,
        center_angstrom: center,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(0.5) = 0.4795001222, erfc(1) = 0.1572992071, erfc(2) = 0.004677734981
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_2),
            (1.0, 0.157_299_207_1),
            (2.0, 0.004_677_734_981),
            (-1.0, 1.842_700_792_9),
        ] {
            let got = erfc(x);
            assert!(
                (got - want).abs() <= 2e-7 * want,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn voxel_fractions_sum_to_one() {
        for (c, s) in [(10.0, 0.3), (10.37, 0.8), (16.5, 2.5)] {
            let (_, t) = axis_table(c, s, 32);
            let sum: f64 = t.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "c {c} σ {s}: {sum}");
        }
    }

    #[test]
    fn sigma_formula() {
        assert!((sigma_for_resolution(10.0) - 2.250_790_79).abs() < 1e-8);
    }
}
