//! Rotation matrices (row-major `[f64; 9]`) and the Euler / rotation-vector conventions of RELION and
//! cryoSPARC exactly as the reference implementation converts them.

/// A 3×3 rotation matrix, row-major.
pub type Mat3 = [f64; 9];

/// Matrix product `a · b`.
pub fn matmul3(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [0.0; 9];
    for i in 0..3 {
        for j in 0..3 {
            c[3 * i + j] = (0..3).map(|k| a[3 * i + k] * b[3 * k + j]).sum();
        }
    }
    c
}

/// Transpose.
pub fn transpose3(a: &Mat3) -> Mat3 {
    [a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8]]
}

/// Rotation matrix from RELION Euler angles (rot, tilt, psi) in degrees, as the reference's
/// `utils.R_from_relion`: with `Rz(θ) = [[c,−s,0],[s,c,0],[0,0,1]]` and `Ry'(θ) = [[c,0,−s],[0,1,0],[s,0,c]]`,
/// `R = (Rz(rot) · Ry'(tilt) · Rz(psi))ᵀ` followed by a sign flip of the (0,2), (2,0), (1,2), (2,1) entries.
pub fn r_from_relion(rot_deg: f64, tilt_deg: f64, psi_deg: f64) -> Mat3 {
    let rz = |t: f64| {
        let (s, c) = t.to_radians().sin_cos();
        [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]
    };
    let (sb, cb) = tilt_deg.to_radians().sin_cos();
    let rb = [cb, 0.0, -sb, 0.0, 1.0, 0.0, sb, 0.0, cb];
    let mut r = transpose3(&matmul3(&matmul3(&rz(rot_deg), &rb), &rz(psi_deg)));
    for k in [2, 6, 5, 7] {
        r[k] = -r[k];
    }
    r
}

/// The exponential map of so(3): rotation vector `v` (axis · angle in radians) to a matrix,
/// `R = I + sin θ K + (1 − cos θ) K²` with `θ = |v|`, `K = hat(v/θ)` (identity for `v = 0`).
pub fn expmap(v: [f64; 3]) -> Mat3 {
    let theta = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if theta == 0.0 {
        return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    }
    let (x, y, z) = (v[0] / theta, v[1] / theta, v[2] / theta);
    let k = [0.0, -z, y, z, 0.0, -x, -y, x, 0.0];
    let k2 = matmul3(&k, &k);
    let (s, c) = theta.sin_cos();
    std::array::from_fn(|i| {
        let eye = if i % 4 == 0 { 1.0 } else { 0.0 };
        eye + s * k[i] + (1.0 - c) * k2[i]
    })
}

/// Rotation matrix from a cryoSPARC `alignments3D/pose` rotation vector, as the reference's
/// `parse_pose_csparc`: the transpose of [`expmap`].
pub fn r_from_cryosparc(v: [f64; 3]) -> Mat3 {
    transpose3(&expmap(v))
}

/// RELION Euler angles `(rot, tilt, psi)` in degrees of a rotation matrix: the inverse of
/// [`r_from_relion`] (`r_from_relion(relion_from_r(R)) = R` for any rotation `R`).
///
/// From the entries of [`r_from_relion`]'s matrix, `R22 = cos tilt`, `(R20, R21) = sin tilt·(cos rot,
/// sin rot)` and `(−R02, R12) = sin tilt·(cos psi, sin psi)`; so `tilt ∈ [0°, 180°]` comes from
/// `atan2(|(R20, R21)|, R22)` and `rot` from `atan2(R21, R20)`. `psi` is then taken from the upper
/// 2×2 block given `rot` (`sin psi = cos rot·R01 − sin rot·R00`, `cos psi = cos rot·R11 − sin rot·R10`),
/// which stays exact at the gimbal lock (`tilt` = 0° or 180°, where only `rot ± psi` is defined and
/// `rot` comes out 0). Angles in (−180°, 180°].
pub fn relion_from_r(r: &Mat3) -> [f64; 3] {
    let tilt = r[6].hypot(r[7]).atan2(r[8]);
    let rot = r[7].atan2(r[6]);
    let (sa, ca) = rot.sin_cos();
    let psi = (ca * r[1] - sa * r[0]).atan2(ca * r[4] - sa * r[3]);
    [rot.to_degrees(), tilt.to_degrees(), psi.to_degrees()]
}

/// The logarithm map of SO(3), the inverse of [`expmap`]: the rotation vector `v` (axis · angle,
/// `|v| ≤ π`) with `expmap(v) = R`.
///
/// Through the unit quaternion `(w, x, y, z)` of `R` (Shepperd's method: the largest of `1 + tr R`
/// and `1 + 2 Rii − tr R` is the pivot, so no division by a small number), sign chosen so that
/// `w ≥ 0`; then `θ = 2·atan2(|(x, y, z)|, w)` and `v = θ·(x, y, z)/|(x, y, z)|`. Accurate near
/// θ = 0 and θ = π alike. `R` is assumed orthonormal (a nearly orthonormal `R`, e.g. read from f32,
/// gives the vector of the nearest rotation to rounding).
pub fn logmap(r: &Mat3) -> [f64; 3] {
    let m = |i: usize, j: usize| r[3 * i + j];
    let tr = m(0, 0) + m(1, 1) + m(2, 2);
    let pivots = [tr, m(0, 0), m(1, 1), m(2, 2)];
    let case = (1..4).fold(0, |b, c| if pivots[c] > pivots[b] { c } else { b });
    let (w, x, y, z) = match case {
        0 => {
            let w = 0.5 * (1.0 + tr).max(0.0).sqrt();
            let f = 4.0 * w;
            (
                w,
                (m(2, 1) - m(1, 2)) / f,
                (m(0, 2) - m(2, 0)) / f,
                (m(1, 0) - m(0, 1)) / f,
            )
        }
        1 => {
            let x = 0.5 * (1.0 + m(0, 0) - m(1, 1) - m(2, 2)).max(0.0).sqrt();
            let f = 4.0 * x;
            (
                (m(2, 1) - m(1, 2)) / f,
                x,
                (m(0, 1) + m(1, 0)) / f,
                (m(0, 2) + m(2, 0)) / f,
            )
        }
        2 => {
            let y = 0.5 * (1.0 - m(0, 0) + m(1, 1) - m(2, 2)).max(0.0).sqrt();
            let f = 4.0 * y;
            (
                (m(0, 2) - m(2, 0)) / f,
                (m(0, 1) + m(1, 0)) / f,
                y,
                (m(1, 2) + m(2, 1)) / f,
            )
        }
        _ => {
            let z = 0.5 * (1.0 - m(0, 0) - m(1, 1) + m(2, 2)).max(0.0).sqrt();
            let f = 4.0 * z;
            (
                (m(1, 0) - m(0, 1)) / f,
                (m(0, 2) + m(2, 0)) / f,
                (m(1, 2) + m(2, 1)) / f,
                z,
            )
        }
    };
    let sign = if w < 0.0 { -1.0 } else { 1.0 };
    let (w, x, y, z) = (sign * w, sign * x, sign * y, sign * z);
    let s = (x * x + y * y + z * z).sqrt();
    if s == 0.0 {
        return [0.0; 3];
    }
    let k = 2.0 * s.atan2(w) / s;
    [k * x, k * y, k * z]
}

/// The cryoSPARC `alignments3D/pose` rotation vector of a rotation matrix: the inverse of
/// [`r_from_cryosparc`], i.e. `logmap(Rᵀ)`.
pub fn cryosparc_from_r(r: &Mat3) -> [f64; 3] {
    logmap(&transpose3(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_orthonormal(r: &Mat3) {
        let rrt = matmul3(r, &transpose3(r));
        for (i, x) in rrt.iter().enumerate() {
            let eye = if i % 4 == 0 { 1.0 } else { 0.0 };
            assert!((x - eye).abs() < 1e-12, "R Rᵀ[{i}] = {x}");
        }
        let det = r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
            + r[2] * (r[3] * r[7] - r[4] * r[6]);
        assert!((det - 1.0).abs() < 1e-12, "det = {det}");
    }

    #[test]
    fn relion_identity_and_orthonormal() {
        let r = r_from_relion(0.0, 0.0, 0.0);
        assert_eq!(r, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_orthonormal(&r_from_relion(12.0, 75.5, -140.25));
    }

    #[test]
    fn relion_pure_in_plane_is_2d_rotation() {
        // rot = psi = 0, tilt = 0 except psi: an in-plane rotation about z.
        let r = r_from_relion(0.0, 0.0, 30.0);
        let (s, c) = 30f64.to_radians().sin_cos();
        let want = [c, s, 0.0, -s, c, 0.0, 0.0, 0.0, 1.0];
        for i in 0..9 {
            assert!(
                (r[i] - want[i]).abs() < 1e-12,
                "{i}: {} vs {}",
                r[i],
                want[i]
            );
        }
    }

    #[test]
    fn expmap_quarter_turn_about_z() {
        let r = expmap([0.0, 0.0, std::f64::consts::FRAC_PI_2]);
        let want = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        for (x, w) in r.iter().zip(&want) {
            assert!((x - w).abs() < 1e-12, "{x} vs {w}");
        }
        assert_orthonormal(&expmap([0.3, -1.2, 2.0]));
    }

    /// Rotations spread over SO(3), plus the awkward ones: identity, gimbal lock (tilt 0°/180°), and
    /// half turns (θ = π) about several axes.
    fn test_rotations() -> Vec<Mat3> {
        let mut out = vec![
            r_from_relion(0.0, 0.0, 0.0),
            r_from_relion(30.0, 0.0, 40.0),
            r_from_relion(30.0, 180.0, 40.0),
            r_from_relion(-170.0, 1e-9, 100.0),
            expmap([std::f64::consts::PI, 0.0, 0.0]),
            expmap([0.0, 0.0, std::f64::consts::PI]),
            expmap([1.0, 1.0, 0.0].map(|c: f64| c * std::f64::consts::PI / 2f64.sqrt())),
            expmap([1e-12, -2e-12, 0.0]),
        ];
        let mut s = 12345u64;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..200 {
            out.push(r_from_relion(
                360.0 * u() - 180.0,
                180.0 * u(),
                360.0 * u() - 180.0,
            ));
        }
        out
    }

    fn max_diff(a: &Mat3, b: &Mat3) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn relion_from_r_inverts_r_from_relion() {
        for r in test_rotations() {
            let [a, b, c] = relion_from_r(&r);
            let back = r_from_relion(a, b, c);
            assert!(
                max_diff(&r, &back) < 1e-12,
                "{r:?} -> {a} {b} {c} -> {back:?}"
            );
            assert!((0.0..=180.0).contains(&b));
        }
        // Away from the gimbal lock the angles themselves come back.
        let [a, b, c] = relion_from_r(&r_from_relion(-35.0, 70.0, 120.0));
        assert!((a + 35.0).abs() < 1e-10 && (b - 70.0).abs() < 1e-10 && (c - 120.0).abs() < 1e-10);
    }

    #[test]
    fn logmap_inverts_expmap_and_cryosparc() {
        for r in test_rotations() {
            let v = logmap(&r);
            assert!(max_diff(&r, &expmap(v)) < 1e-12, "{r:?} -> {v:?}");
            let v = cryosparc_from_r(&r);
            assert!(max_diff(&r, &r_from_cryosparc(v)) < 1e-12, "{r:?} -> {v:?}");
            let theta = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            assert!(theta <= std::f64::consts::PI + 1e-12);
        }
        let v = [0.3, -1.2, 2.0];
        let back = logmap(&expmap(v));
        assert!(
            v.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-12),
            "{back:?}"
        );
    }
}
