//! The Edelberg–Lederman 90° test's measures (spec `disentanglement.md` §5, case 1) over any encoder:
//! with x′ = rot90(x, k) (the same volume at pose Rz(k·90°)·R, [`rot90`]),
//!
//! - Δz_rot = mean_i ‖f_z(x′_i) − f_z(x_i)‖² / mean_i ‖f_z(x_i) − f_z(x_π(i))‖², π a random cyclic
//!   derangement (random pairs i ≠ j): 0 for a conformation latent that ignores in-plane rotation, ≈ 1
//!   when a 90° turn moves z as far as changing the particle;
//! - for an in-plane pose head, the equivariance error |wrap(ψ̂(x′) − ψ̂(x) − s·k·90°)| for s = +1 and
//!   s = −1 (the head may turn either way), as a median and a mean in degrees; the sign with the lower
//!   median is reported as the better-aligned one.

use crate::disentangle::mcc::wrap_angle;
use crate::disentangle::rot90::rot90;
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The equivariance error of one sign s (module doc), degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignError {
    /// +1 or −1
    pub sign: f64,
    pub median_deg: f64,
    pub mean_deg: f64,
}

/// The measures of one 90° test (module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Rot90Measures {
    pub n: usize,
    /// mean ‖f_z(x′) − f_z(x)‖²
    pub shift: f64,
    /// mean over random pairs ‖f_z(x_i) − f_z(x_j)‖²
    pub pair: f64,
    /// shift / pair (None when the pairs do not differ)
    pub delta_z_rot: Option<f64>,
    /// the in-plane equivariance errors for s = +1 and s = −1, the better one first; None without angles
    pub equivariance: Option<[SignError; 2]>,
}

/// What an encoder returns for n images: z (n, zdim) and, for an in-plane pose head, ψ̂ (n,) in radians.
pub type Encoded = (Vec<f64>, Option<Vec<f64>>);

/// Run the test on images (n, D, D): encode x and rot90(x, k) with `f` and compare (module doc).
/// `seed` draws the random pairs.
pub fn measure(
    images: &[f32],
    d: usize,
    k: i64,
    f: &mut dyn FnMut(&[f32]) -> Result<Encoded>,
    seed: u64,
) -> Result<Rot90Measures> {
    let dd = d * d;
    if d == 0 || images.is_empty() || !images.len().is_multiple_of(dd) {
        return Err(Error::Shape {
            what: "rot90 test: images".into(),
            expected: format!("(n ≥ 2, {d}, {d})"),
            got: format!("{} values", images.len()),
        });
    }
    let n = images.len() / dd;
    if n < 2 {
        return Err(Error::invalid("rot90 test: needs at least 2 images"));
    }
    let mut rotated = Vec::with_capacity(images.len());
    for img in images.chunks_exact(dd) {
        rotated.extend(rot90(img, d, k)?);
    }
    let (z, psi) = f(images)?;
    let (zr, psir) = f(&rotated)?;
    if z.len() != zr.len() || z.is_empty() || !z.len().is_multiple_of(n) {
        return Err(Error::Shape {
            what: "rot90 test: encoder output".into(),
            expected: format!("({n}, zdim) twice"),
            got: format!("{} and {} values", z.len(), zr.len()),
        });
    }
    let zd = z.len() / n;
    let row = |v: &[f64], i: usize| v[i * zd..(i + 1) * zd].to_vec();
    let sq = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    let shift = (0..n).map(|i| sq(&row(&z, i), &row(&zr, i))).sum::<f64>() / n as f64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let pair = (0..n)
        .map(|j| sq(&row(&z, order[j]), &row(&z, order[(j + 1) % n])))
        .sum::<f64>()
        / n as f64;
    let equivariance = match (psi, psir) {
        (Some(a), Some(b)) if a.len() == n && b.len() == n => Some(equivariance_errors(&a, &b, k)),
        (None, None) => None,
        _ => {
            return Err(Error::invalid(
                "rot90 test: the encoder returned angles for one set of images only",
            ))
        }
    };
    Ok(Rot90Measures {
        n,
        shift,
        pair,
        delta_z_rot: (pair > 0.0).then(|| shift / pair),
        equivariance,
    })
}

/// |wrap(ψ̂′ − ψ̂ − s·k·90°)| in degrees for s = ±1, summarised (better median first).
pub fn equivariance_errors(psi: &[f64], psi_rot: &[f64], k: i64) -> [SignError; 2] {
    let turn = k as f64 * std::f64::consts::FRAC_PI_2;
    let one = |sign: f64| {
        let mut e: Vec<f64> = psi
            .iter()
            .zip(psi_rot)
            .map(|(a, b)| wrap_angle(b - a - sign * turn).abs().to_degrees())
            .collect();
        let mean_deg = e.iter().sum::<f64>() / e.len().max(1) as f64;
        e.sort_by(f64::total_cmp);
        let m = e.len();
        let median_deg = if m == 0 {
            f64::NAN
        } else if m % 2 == 1 {
            e[m / 2]
        } else {
            0.5 * (e[m / 2 - 1] + e[m / 2])
        };
        SignError {
            sign,
            median_deg,
            mean_deg,
        }
    };
    let (p, m) = (one(1.0), one(-1.0));
    if m.median_deg < p.median_deg {
        [m, p]
    } else {
        [p, m]
    }
}

/// The shift (pixels, pose.pkl's `trans`·D, (x, y)) of the image turned by k·90° ([`rot90`]): the shift
/// turns with the image, (x, y) ↦ (−y, x) per quarter turn.
pub fn turned_shift(t: [f32; 2], k: i64) -> [f32; 2] {
    let mut v = t;
    for _ in 0..k.rem_euclid(4) {
        v = [-v[1], v[0]];
    }
    v
}

/// The ctf.pkl row of the image turned by k·90°: the astigmatism angle (column 4, degrees) grows by
/// k·90° (the CTF turns with the image; the astigmatism has period 180°, so the turn's direction does
/// not matter for odd k); the other parameters are unchanged.
pub fn turned_ctf(row: &[f32; 9], k: i64) -> [f32; 9] {
    let mut r = *row;
    r[4] += 90.0 * k.rem_euclid(4) as f32;
    r
}

/// The rotation angle (degrees, in \[0, 180\]) of a 3×3 rotation (row-major): arccos((tr − 1)/2), clamped.
pub fn rotation_angle_deg(r: &[f64; 9]) -> f64 {
    ((r[0] + r[4] + r[8] - 1.0) / 2.0)
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

/// An SO(3) head's equivariance error under k·90° turns, degrees: for each image the angle of the
/// relative rotation R̂(x′)·R̂(x)ᵀ against the turn's angle (90° for odd k, 180° for k ≡ 2 mod 4). With
/// R̂ = Q·R for any fixed Q (the head's free global frame), R̂(x′)R̂(x)ᵀ = Q·Rz(k·90°)·Qᵀ, a turn by the
/// same angle, so the measure needs no alignment; it does not check the turn's axis. Returns
/// (median, mean).
pub fn so3_turn_errors(r: &[[f64; 9]], r_rot: &[[f64; 9]], k: i64) -> (f64, f64) {
    let want = match k.rem_euclid(4) {
        0 => 0.0,
        2 => 180.0,
        _ => 90.0,
    };
    let mut e: Vec<f64> = r
        .iter()
        .zip(r_rot)
        .map(|(a, b)| {
            // b·aᵀ
            let m: [f64; 9] = std::array::from_fn(|ij| {
                let (i, j) = (ij / 3, ij % 3);
                (0..3).map(|l| b[3 * i + l] * a[3 * j + l]).sum()
            });
            (rotation_angle_deg(&m) - want).abs()
        })
        .collect();
    let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
    e.sort_by(f64::total_cmp);
    let m = e.len();
    let median = if m == 0 {
        f64::NAN
    } else if m % 2 == 1 {
        e[m / 2]
    } else {
        0.5 * (e[m / 2 - 1] + e[m / 2])
    };
    (median, mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Images (n, D, D) with one Gaussian blob each at a random position within radius D/5 of the centre
    /// and a random width ≤ 2 px: distinct images, nothing near the border for D = 32.
    fn blobs(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let c = (d / 2) as f64;
        let mut out = Vec::with_capacity(n * d * d);
        for _ in 0..n {
            let r = rng.random_range(1.0..d as f64 / 5.0);
            let a = rng.random_range(0.0..std::f64::consts::TAU);
            let w = rng.random_range(1.0..2.0);
            let (bx, by) = (r * a.cos(), r * a.sin());
            for i in 0..d {
                for j in 0..d {
                    let (x, y) = (j as f64 - c, i as f64 - c);
                    let q = ((x - bx).powi(2) + (y - by).powi(2)) / (2.0 * w * w);
                    out.push((-q).exp() as f32);
                }
            }
        }
        out
    }

    /// z = the image's radial mean profile over integer x² + y² shells: rot90 permutes pixels within a
    /// shell (wrapping maps ±D/2 to ∓D/2, the same |x|), so z is exactly invariant and Δz_rot = 0, while
    /// random pairs differ (the blobs differ in radius and width).
    #[test]
    fn rotation_invariant_encoder_gives_zero() {
        let d = 16;
        let imgs = blobs(40, d, 1);
        let c = (d / 2) as i64;
        let nshell = (2 * c * c + 1) as usize;
        let mut f = |x: &[f32]| -> Result<Encoded> {
            let mut z = Vec::new();
            for img in x.chunks_exact(d * d) {
                let (mut s, mut m) = (vec![0.0; nshell], vec![0.0; nshell]);
                for (p, &v) in img.iter().enumerate() {
                    let (y, xx) = ((p / d) as i64 - c, (p % d) as i64 - c);
                    let r2 = (xx * xx + y * y) as usize;
                    s[r2] += v as f64;
                    m[r2] += 1.0;
                }
                z.extend(
                    s.iter()
                        .zip(&m)
                        .filter(|(_, &m)| m > 0.0)
                        .map(|(s, m)| s / m),
                );
            }
            Ok((z, None))
        };
        for k in [1, 2, 3] {
            let r = measure(&imgs, d, k, &mut f, 0).unwrap();
            // zero up to the order of the shell sums (f64 rounding)
            assert!(r.pair > 1e-3, "pairs differ: {}", r.pair);
            assert!(r.delta_z_rot.unwrap() < 1e-20, "k {k}: {r:?}");
            assert!(r.equivariance.is_none());
        }
    }

    /// A head that returns the true rotation up to a fixed global frame Q: R̂(x) = Q·R, R̂(x′) =
    /// Q·Rz(90°)·R has zero SO(3) turn error; one that ignores the turn has 90°.
    #[test]
    fn so3_turn_error_is_gauge_free() {
        use crate::geometry::quaternion::random_rotations;
        use crate::geometry::rotation::matmul3;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let rs = random_rotations(50, &mut rng);
        let q = random_rotations(1, &mut rng)[0];
        let rz90 = crate::disentangle::probe::rz(std::f64::consts::FRAC_PI_2);
        let a: Vec<[f64; 9]> = rs.iter().map(|r| matmul3(&q, r)).collect();
        let b: Vec<[f64; 9]> = rs.iter().map(|r| matmul3(&q, &matmul3(&rz90, r))).collect();
        let (med, mean) = so3_turn_errors(&a, &b, 1);
        assert!(med < 1e-5 && mean < 1e-5, "{med} {mean}");
        let (med, _) = so3_turn_errors(&a, &a, 1);
        assert!((med - 90.0).abs() < 1e-6);
        let (med, _) = so3_turn_errors(&a, &b, 2);
        assert!(
            (med - 90.0).abs() < 1e-5,
            "a 90° turn read as a 180° one: {med}"
        );
    }

    /// ψ̂ = the angle of the intensity centroid (x, y): rot90 by k turns it by exactly +k·90°, so the
    /// s = +1 error is 0 and the s = −1 error is the 180° gap (k odd); z = the centroid itself moves, so
    /// Δz_rot > 0. (The blobs' tails at the border are below 1e-5, hence the 1e-2° tolerance.)
    #[test]
    fn centroid_angle_is_equivariant() {
        let d = 32;
        let imgs = blobs(30, d, 2);
        let c = (d / 2) as f64;
        let mut f = |x: &[f32]| -> Result<Encoded> {
            let (mut z, mut psi) = (Vec::new(), Vec::new());
            for img in x.chunks_exact(d * d) {
                let (mut sx, mut sy, mut s) = (0.0, 0.0, 0.0);
                for (p, &v) in img.iter().enumerate() {
                    let (y, xx) = ((p / d) as f64 - c, (p % d) as f64 - c);
                    sx += xx * v as f64;
                    sy += y * v as f64;
                    s += v as f64;
                }
                z.extend([sx / s, sy / s]);
                psi.push(sy.atan2(sx));
            }
            Ok((z, Some(psi)))
        };
        let r = measure(&imgs, d, 1, &mut f, 0).unwrap();
        let [best, other] = r.equivariance.unwrap();
        assert_eq!(best.sign, 1.0);
        assert!(best.median_deg < 1e-2 && best.mean_deg < 1e-2, "{best:?}");
        assert!((other.median_deg - 180.0).abs() < 1e-2, "{other:?}");
        assert!(r.delta_z_rot.unwrap() > 0.1, "{r:?}");
    }
}
