//! The image side of the Edelberg–Lederman 90° test (spec `disentanglement.md` §5, test case 1): an
//! exact 90° rotation of a D×D image as a pixel permutation, which turns the projection of a volume at
//! pose R into the projection of the same volume at pose `Rz(90°)·R`. An encoder whose conformation
//! latent moves under this permutation is mixing pose into conformation.
//!
//! Conventions (those of [`crate::fourier::slice`]): pixel `(i, j)` (row i, column j, row-major) sits at
//! `(x, y) = (j − D/2, i − D/2)`, so the rotation centre is pixel `(D/2, D/2)`, and the image at pose R
//! is `p(x, y) = Σ_z V((x, y, z)·R)`. Indices are taken modulo D, the periodic box of the FFT, so the
//! map is a permutation for every D; for even D row 0 and column 0 (x or y = −D/2) have no partner
//! at +D/2 inside the box and are wrapped. Inside the circle of radius D/2 − 1 no pixel wraps, so
//! comparisons with projected images use [`inside_circle`] with that radius. (Wrapping is the exact
//! symmetry of the periodic box, and the slices' frequencies beyond radius D/2 are zero, so the only
//! non-exact terms are the Nyquist ones; for the smooth phantoms of the tests the whole image matches to
//! ~2e-7, as well as the circle.)

use crate::{Error, Result};

/// Rotates a D×D row-major image by `k`·90° counterclockwise in the `(x, y) = (column, row)` frame
/// about pixel `(D/2, D/2)`: `out(x, y) = in(R_{−k·90°}(x, y))`, so for k = 1 `out(x, y) = in(y, −x)`
/// (the point (1, 0) goes to (0, 1)). With row 0 drawn at the top this looks clockwise; it is not
/// numpy's `rot90`, which turns the other way about the array centre `((D−1)/2, (D−1)/2)`.
///
/// For a projection, `rot90(image at R, k) = image at Rz(k·90°)·R` (left multiplication, with
/// `Rz(θ) = [[cos θ, −sin θ, 0], [sin θ, cos θ, 0], [0, 0, 1]]` row-major as in the crate's rotation
/// matrices) inside the circle of radius D/2 − 1: with poses acting as `(x, y, z)·R`, the row vector
/// `(x, y, 0)·Rz(90°) = (y, −x, 0)`.
///
/// `k` may be any integer (taken modulo 4). Coordinates wrap modulo D (module doc), so the result is
/// always a permutation of the input and `rot90(rot90(x, k), −k) = x`.
///
/// Errors if `image.len() != d²` or `d == 0`.
pub fn rot90(image: &[f32], d: usize, k: i64) -> Result<Vec<f32>> {
    if d == 0 || image.len() != d * d {
        return Err(Error::invalid(format!(
            "rot90: image has {} values, expected D² with D = {d} ≥ 1",
            image.len()
        )));
    }
    let c = (d / 2) as i64;
    let di = d as i64;
    let idx = |v: i64| (v + c).rem_euclid(di) as usize;
    let mut out = vec![0f32; d * d];
    for (i, row) in out.chunks_exact_mut(d).enumerate() {
        let y = i as i64 - c;
        for (j, v) in row.iter_mut().enumerate() {
            let x = j as i64 - c;
            // The source point R_{−k·90°}(x, y); R_{−90°}(x, y) = (y, −x).
            let (sx, sy) = match k.rem_euclid(4) {
                0 => (x, y),
                1 => (y, -x),
                2 => (-x, -y),
                _ => (-y, x),
            };
            *v = image[idx(sy) * d + idx(sx)];
        }
    }
    Ok(out)
}

/// Mask (D×D, row-major) of the pixels with `x² + y² ≤ radius²`, `(x, y) = (j − D/2, i − D/2)`: the
/// region where [`rot90`] is an exact rotation (radius ≤ D/2 − 1 for even D).
pub fn inside_circle(d: usize, radius: f64) -> Vec<bool> {
    let c = (d / 2) as f64;
    let r2 = radius * radius;
    (0..d * d)
        .map(|p| {
            let (y, x) = ((p / d) as f64 - c, (p % d) as f64 - c);
            x * x + y * y <= r2
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fourier::slice::{project_real, HartleyVolume};
    use crate::geometry::quaternion::random_rotations;
    use crate::geometry::rotation::{matmul3, Mat3};
    use crate::simulate::dataset::{ImageParams, Projection, Projector};
    use crate::simulate::phantom::{Phantom, PhantomKind};
    use rand::SeedableRng;

    fn rz(deg: f64) -> Mat3 {
        let (s, c) = deg.to_radians().sin_cos();
        [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]
    }

    #[test]
    fn is_a_permutation_with_the_stated_direction() {
        for d in [6usize, 7, 8] {
            let img: Vec<f32> = (0..d * d).map(|v| v as f32).collect();
            for k in -5i64..6 {
                let r = rot90(&img, d, k).unwrap();
                let mut sorted = r.clone();
                sorted.sort_by(f32::total_cmp);
                assert_eq!(sorted, img, "D {d} k {k}: not a permutation");
                assert_eq!(rot90(&r, d, -k).unwrap(), img, "D {d} k {k}: no inverse");
            }
            assert_eq!(rot90(&img, d, 4).unwrap(), img);
            assert_eq!(
                rot90(&rot90(&img, d, 1).unwrap(), d, 1).unwrap(),
                rot90(&img, d, 2).unwrap()
            );
        }
        // A single pixel at (x, y) = (1, 0) goes to (0, 1) for k = 1: pixel (c, c+1) → (c+1, c).
        let d = 8;
        let mut img = vec![0f32; d * d];
        img[4 * d + 5] = 1.0;
        let r = rot90(&img, d, 1).unwrap();
        assert_eq!(r[5 * d + 4], 1.0);
        assert!(rot90(&img, 7, 1).is_err());
        assert!(rot90(&[], 0, 1).is_err());
    }

    /// Max |a − b| inside the mask over max |b| inside it.
    fn rel_err(a: &[f32], b: &[f32], mask: &[bool]) -> f64 {
        let (mut num, mut den) = (0f64, 0f64);
        for ((a, b), &m) in a.iter().zip(b).zip(mask) {
            if m {
                num = num.max((a - b).abs() as f64);
                den = den.max(b.abs() as f64);
            }
        }
        num / den
    }

    #[test]
    fn matches_projection_at_rz90_times_r() {
        let d = 32;
        let ph = Phantom::new(PhantomKind::Linear2d, d, 3.0, 5).unwrap();
        let vol = ph.volume_at(&[0.3, 0.8]).unwrap();
        let hv = [HartleyVolume::new(&vol, d, 2)];
        let vols = [vol.clone()];
        let mask = inside_circle(d, (d / 2 - 1) as f64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(90);
        for (name, proj) in [
            ("fourier", Projection::Fourier(&hv)),
            ("real", Projection::Real(&vols)),
        ] {
            let projector = Projector::new(proj, d).unwrap();
            for r in random_rotations(3, &mut rng) {
                let p = ImageParams {
                    state: 0,
                    rot: r.map(|v| v as f32),
                    trans_px: [0.0, 0.0],
                    ctf: None,
                };
                let img = projector.render(&p, None);
                for k in [1i64, 2, 3] {
                    let rotated = rot90(&img, d, k).unwrap();
                    let want = projector.render(&p, Some(&rz(90.0 * k as f64)));
                    let err = rel_err(&rotated, &want, &mask);
                    let all = rel_err(&rotated, &want, &vec![true; d * d]);
                    // The other sense must be far off, or this test could not tell them apart.
                    let wrong = projector.render(&p, Some(&rz(-90.0 * k as f64)));
                    let bad = if k == 2 {
                        1.0
                    } else {
                        rel_err(&rotated, &wrong, &mask)
                    };
                    println!("{name} k {k}: rel err {err:.2e} in circle, {all:.2e} whole image, {bad:.2e} other sense");
                    assert!(err < 1e-4, "{name} k {k}: {err:.3e}");
                    assert!(
                        bad > 0.1,
                        "{name} k {k}: the opposite sense also matches ({bad:.3e})"
                    );
                }
            }
        }
        // Multiplying on the right does not give it: R·Rz(90°) turns the volume about its own z axis,
        // not about the viewing direction.
        let r = random_rotations(1, &mut rng)[0];
        let img = project_real(&vol, d, &r.map(|v| v as f32));
        let right = project_real(&vol, d, &matmul3(&r, &rz(90.0)).map(|v| v as f32));
        assert!(rel_err(&rot90(&img, d, 1).unwrap(), &right, &mask) > 0.1);
    }
}
