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
}
