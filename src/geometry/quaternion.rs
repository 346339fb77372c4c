//! Unit quaternions in the reference's storage and matrix convention, uniform random rotations, and
//! geodesic distances on SO(3).
//!
//! # Convention
//! A quaternion is a `[f64; 4]` stored exactly as the reference stores it. Its SO(3) grid
//! ([`crate::geometry::so3_grid`]) fills the four slots as Yershova et al.'s `(w, x, y, z)`, but the
//! reference's `lie_tools.quaternions_to_SO3` — which turns every grid point and every random
//! quaternion into the matrix actually used — treats **slot 3 as the scalar part** and returns the
//! **transpose** of the textbook matrix:
//!
//! `R(q) = R_std(s = q[3]; v = (q[0], q[1], q[2]))ᵀ`, with `R_std` the usual Hamilton-convention
//! matrix of `s + v·(i, j, k)`.
//!
//! So `[0, 0, 0, 1]` is the identity and `[1, 0, 0, 0]` is `diag(1, −1, −1)`. We keep this so that a
//! grid index or a stored quaternion means the same rotation matrix as in the reference. `q` and
//! `−q` are the same rotation. All functions here use this convention.

use crate::geometry::rotation::{matmul3, transpose3, Mat3};
use rand::Rng;
use std::f64::consts::PI;

/// A quaternion in the reference's storage order (see the module doc for which slot is the scalar).
pub type Quat = [f64; 4];

/// Rotation matrix of `q` (normalised first), as the reference's `lie_tools.quaternions_to_SO3`:
/// with `(r, i, j, k) = q/|q|`,
/// `R = [[r²−i²−j²+k², 2(ri+jk), 2(rj−ik)], [2(ri−jk), −r²+i²−j²+k², 2(ij+rk)],
///       [2(rj+ik), 2(ij−rk), −r²−i²+j²+k²]]`.
pub fn quat_to_rot(q: &Quat) -> Mat3 {
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    let (r, i, j, k) = (q[0] / n, q[1] / n, q[2] / n, q[3] / n);
    [
        r * r - i * i - j * j + k * k,
        2.0 * (r * i + j * k),
        2.0 * (r * j - i * k),
        2.0 * (r * i - j * k),
        -r * r + i * i - j * j + k * k,
        2.0 * (i * j + r * k),
        2.0 * (r * j + i * k),
        2.0 * (i * j - r * k),
        -r * r - i * i + j * j + k * k,
    ]
}

/// Quaternion of a rotation matrix, the inverse of [`quat_to_rot`] up to sign, as the reference's
/// `lie_tools.SO3_to_quaternions`: of the four candidate formulas it uses the one whose pivot
/// `½·sqrt(|1 ± R00 ± R11 ± R22|)` is largest, so the pivot component comes out positive.
///
/// Deviation: the reference adds `1e-6` under that square root (an f32 guard); we do not, so our
/// result is the exact inverse while the reference's is off by up to ~5e-7 in direction.
pub fn rot_to_quat(r: &Mat3) -> Quat {
    let (d0, d1, d2) = (r[0], r[4], r[8]);
    let pre = [
        1.0 + d0 - d1 - d2,
        1.0 - d0 + d1 - d2,
        1.0 - d0 - d1 + d2,
        1.0 + d0 + d1 + d2,
    ];
    let denom = pre.map(|p| 0.5 * p.abs().sqrt());
    // First index of the maximum, as torch.argmax.
    let case = (1..4).fold(0, |b, c| if denom[c] > denom[b] { c } else { b });
    let m = |a: usize, b: usize| r[3 * a + b];
    let d = denom[case];
    let f = 4.0 * d;
    match case {
        0 => [
            d,
            (m(0, 1) + m(1, 0)) / f,
            (m(0, 2) + m(2, 0)) / f,
            (m(1, 2) - m(2, 1)) / f,
        ],
        1 => [
            (m(0, 1) + m(1, 0)) / f,
            d,
            (m(1, 2) + m(2, 1)) / f,
            (m(2, 0) - m(0, 2)) / f,
        ],
        2 => [
            (m(0, 2) + m(2, 0)) / f,
            (m(1, 2) + m(2, 1)) / f,
            d,
            (m(0, 1) - m(1, 0)) / f,
        ],
        _ => [
            (m(1, 2) - m(2, 1)) / f,
            (m(2, 0) - m(0, 2)) / f,
            (m(0, 1) - m(1, 0)) / f,
            d,
        ],
    }
}

/// Hamilton product of two quaternions written scalar-first `(w, x, y, z)`.
fn hamilton(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [
        a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
        a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
        a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
        a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0],
    ]
}

/// Quaternion product in the reference convention: the `c` with `R(c) = R(a)·R(b)`
/// ([`quat_to_rot`]). With `σ(q) = (q[3], q[0], q[1], q[2])` (scalar-first) and `⊗` the Hamilton
/// product, `c = σ⁻¹(σ(b) ⊗ σ(a))` (the order flips because `R` is a transposed textbook matrix).
pub fn quat_compose(a: &Quat, b: &Quat) -> Quat {
    let sa = [a[3], a[0], a[1], a[2]];
    let sb = [b[3], b[0], b[1], b[2]];
    let c = hamilton(sb, sa);
    [c[1], c[2], c[3], c[0]]
}

/// Inverse rotation: `R(quat_inverse(q)) = R(q)ᵀ`; negates slots 0..3 (the vector part) for unit `q`.
pub fn quat_inverse(q: &Quat) -> Quat {
    [-q[0], -q[1], -q[2], q[3]]
}

/// `n` quaternions uniform on S³ (hence rotations uniform under the Haar measure), as the reference's
/// `lie_tools.random_quaternions` (Shoemake 1992): with `u1, u2, u3 ~ U[0, 1)`,
/// `q = (√(1−u1) sin 2πu2, √(1−u1) cos 2πu2, √u1 sin 2πu3, √u1 cos 2πu3)`.
///
/// The draws come from `rng` in the order `u1, u2, u3` per quaternion (the reference draws from torch's
/// generator, so individual values are not reproducible across the two, only their distribution).
pub fn random_quaternions(n: usize, rng: &mut impl Rng) -> Vec<Quat> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random();
            let u2: f64 = rng.random();
            let u3: f64 = rng.random();
            let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
            let (s2, c2) = (2.0 * PI * u2).sin_cos();
            let (s3, c3) = (2.0 * PI * u3).sin_cos();
            [a * s2, a * c2, b * s3, b * c3]
        })
        .collect()
}

/// `n` Haar-uniform rotation matrices: [`quat_to_rot`] of [`random_quaternions`], as the reference's
/// `lie_tools.random_rotmat`.
pub fn random_rotations(n: usize, rng: &mut impl Rng) -> Vec<Mat3> {
    random_quaternions(n, rng).iter().map(quat_to_rot).collect()
}

/// Geodesic distance on SO(3) (radians, in `[0, π]`): the rotation angle of `aᵀ·b`,
/// `θ = atan2(|vee(M − Mᵀ)|/2, (tr M − 1)/2)` with `M = aᵀb` (accurate near 0 and π, unlike `acos`).
pub fn rotation_angle(a: &Mat3, b: &Mat3) -> f64 {
    let m = matmul3(&transpose3(a), b);
    let c = 0.5 * (m[0] + m[4] + m[8] - 1.0);
    let v = [m[7] - m[5], m[2] - m[6], m[3] - m[1]];
    let s = 0.5 * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    s.atan2(c)
}

/// Geodesic distance between the rotations of two unit quaternions (radians, in `[0, π]`), sign-blind:
/// `θ = 4·atan2(|a − b'|, |a + b'|)` with `b' = ±b` on `a`'s side (twice the angle on S³).
pub fn quat_angle(a: &Quat, b: &Quat) -> f64 {
    let dot: f64 = (0..4).map(|i| a[i] * b[i]).sum();
    let s = if dot < 0.0 { -1.0 } else { 1.0 };
    let (mut dm, mut dp) = (0.0, 0.0);
    for i in 0..4 {
        dm += (a[i] - s * b[i]).powi(2);
        dp += (a[i] + s * b[i]).powi(2);
    }
    4.0 * dm.sqrt().atan2(dp.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn identity_and_axes() {
        let i3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(quat_to_rot(&[0.0, 0.0, 0.0, 1.0]), i3);
        // Values printed by lie_tools.quaternions_to_SO3 for the unit vectors.
        assert_eq!(
            quat_to_rot(&[1.0, 0.0, 0.0, 0.0]),
            [1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0]
        );
        assert_eq!(
            quat_to_rot(&[0.0, 1.0, 0.0, 0.0]),
            [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
        );
    }

    #[test]
    fn compose_and_inverse_are_homomorphic() {
        let mut rng = StdRng::seed_from_u64(7);
        let q = random_quaternions(20, &mut rng);
        for w in q.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let want = matmul3(&quat_to_rot(a), &quat_to_rot(b));
            let got = quat_to_rot(&quat_compose(a, b));
            for k in 0..9 {
                assert!(
                    (got[k] - want[k]).abs() < 1e-12,
                    "{k}: {} vs {}",
                    got[k],
                    want[k]
                );
            }
            let inv = quat_to_rot(&quat_inverse(a));
            let t = transpose3(&quat_to_rot(a));
            for k in 0..9 {
                assert!((inv[k] - t[k]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn angles_agree() {
        let mut rng = StdRng::seed_from_u64(8);
        let q = random_quaternions(50, &mut rng);
        for w in q.windows(2) {
            let a = rotation_angle(&quat_to_rot(&w[0]), &quat_to_rot(&w[1]));
            let b = quat_angle(&w[0], &w[1]);
            let neg = quat_angle(&w[0], &w[1].map(|x| -x));
            assert!(
                (a - b).abs() < 1e-10 && (b - neg).abs() < 1e-12,
                "{a} {b} {neg}"
            );
        }
        // A quarter turn about z: R(q) for q with scalar cos(π/4) in slot 3 and sin(π/4) in slot 2.
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let r = quat_to_rot(&[0.0, 0.0, h, h]);
        let i3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert!((rotation_angle(&i3, &r) - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
    }
}
