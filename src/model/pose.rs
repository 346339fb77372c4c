//! Pose parametrisations on the tape: network outputs → rotation matrices (B, 9) row-major, differentiable,
//! for learned poses ([`crate::model::Decoder::forward_posed`]; PoseVAE in issue 24, pose SGD in issue 26).
//!
//! - [`inplane`]: a 2-vector (a, b) per image → the rotation about the viewing axis by ψ = atan2(b, a):
//!   `R = [[c, −s, 0], [s, c, 0], [0, 0, 1]]` with (c, s) = (a, b)/‖(a, b)‖ (with the decoder's row-vector
//!   convention v = x·R, the image at R is the image at the identity turned by ψ; see
//!   [`crate::disentangle::rot90`]).
//! - [`sixd`]: the 6-D representation of Zhou et al. (2019): two 3-vectors → Gram–Schmidt → the rows
//!   b₁ = a₁/‖a₁‖, b₂ = (a₂ − (b₁·a₂) b₁)/‖·‖, b₃ = b₁ × b₂ of a proper rotation (det +1), continuous in the
//!   inputs wherever a₁ and a₂ are independent.
//! - [`quat`]: a quaternion (w, x, y, z) per image, normalised, → the rotation
//!   `[[1 − 2(y² + z²), 2(xy − wz), 2(xz + wy)], [2(xy + wz), 1 − 2(x² + z²), 2(yz − wx)],
//!   [2(xz − wy), 2(yz + wx), 1 − 2(x² + y²)]]` (q and −q give the same R); [`quat_of`] inverts it.

use crate::autodiff::{Tape, Tensor, Var};
use crate::backend::{Backend, BinaryOp, Float, UnaryOp};
use crate::{Error, Result};

/// x (B, k) divided by its row norms: (B, k).
fn normalize_rows<B: Backend>(t: &mut Tape<'_, B>, x: Var) -> Result<Var> {
    let k = t.shape(x)[1];
    let sq = t.unary(x, UnaryOp::Square)?;
    let n2 = t.sum_cols(sq, 1.0)?; // (B)
    let ln = t.unary(n2, UnaryOp::Log)?;
    let half = t.affine(ln, 0.5, 0.0)?;
    let n = t.unary(half, UnaryOp::Exp)?; // ‖x‖
    let nb = t.broadcast_cols(n, k)?;
    t.binary(x, nb, BinaryOp::Div)
}

fn check<B: Backend>(t: &Tape<'_, B>, x: Var, k: usize, what: &str) -> Result<usize> {
    let s = t.shape(x);
    if s.len() != 2 || s[1] != k {
        return Err(Error::Shape {
            what: format!("{what} pose parameters"),
            expected: format!("(B, {k})"),
            got: format!("{s:?}"),
        });
    }
    Ok(s[0])
}

/// In-plane rotations (B, 9) from (a, b) (B, 2) (module doc).
pub fn inplane<B: Backend>(t: &mut Tape<'_, B>, ab: Var) -> Result<Var> {
    let nb = check(t, ab, 2, "in-plane")?;
    let be = t.backend().clone();
    let u = normalize_rows(t, ab)?;
    let c = t.slice(u, 0, 1)?;
    let s = t.slice(u, 1, 1)?;
    let ms = t.affine(s, -1.0, 0.0)?;
    let zero = t.constant(Tensor::from_slice(
        &be,
        &vec![B::Elem::c(0.0); nb],
        &[nb, 1],
    )?);
    let one = t.constant(Tensor::from_slice(
        &be,
        &vec![B::Elem::c(1.0); nb],
        &[nb, 1],
    )?);
    t.concat(&[c, ms, zero, s, c, zero, zero, zero, one])
}

/// Rotations (B, 9) from the 6-D representation (B, 6) = (a₁, a₂) (module doc).
pub fn sixd<B: Backend>(t: &mut Tape<'_, B>, a: Var) -> Result<Var> {
    check(t, a, 6, "6-D")?;
    let a1 = t.slice(a, 0, 3)?;
    let a2 = t.slice(a, 3, 3)?;
    let b1 = normalize_rows(t, a1)?;
    let p = t.mul(b1, a2)?;
    let dot = t.sum_cols(p, 1.0)?;
    let dot3 = t.broadcast_cols(dot, 3)?;
    let proj = t.mul(b1, dot3)?;
    let r2 = t.sub(a2, proj)?;
    let b2 = normalize_rows(t, r2)?;
    // b₃ = b₁ × b₂
    let col = |t: &mut Tape<'_, B>, v: Var, j: usize| t.slice(v, j, 1);
    let (x1, y1, z1) = (col(t, b1, 0)?, col(t, b1, 1)?, col(t, b1, 2)?);
    let (x2, y2, z2) = (col(t, b2, 0)?, col(t, b2, 1)?, col(t, b2, 2)?);
    let mut cross = Vec::with_capacity(3);
    for (p, q, r, s) in [(y1, z2, z1, y2), (z1, x2, x1, z2), (x1, y2, y1, x2)] {
        let pq = t.mul(p, q)?;
        let rs = t.mul(r, s)?;
        cross.push(t.sub(pq, rs)?);
    }
    let b3 = t.concat(&cross)?;
    t.concat(&[b1, b2, b3])
}

/// Rotations (B, 9) from quaternions (B, 4) = (w, x, y, z), normalised first (module doc).
pub fn quat<B: Backend>(t: &mut Tape<'_, B>, q: Var) -> Result<Var> {
    check(t, q, 4, "quaternion")?;
    let u = normalize_rows(t, q)?;
    let c: Vec<Var> = (0..4).map(|k| t.slice(u, k, 1)).collect::<Result<_>>()?;
    let (w, x, y, z) = (c[0], c[1], c[2], c[3]);
    // the ten products, each once
    let mut pr = |a: Var, b: Var| t.mul(a, b);
    let (xx, yy, zz) = (pr(x, x)?, pr(y, y)?, pr(z, z)?);
    let (xy, xz, yz) = (pr(x, y)?, pr(x, z)?, pr(y, z)?);
    let (wx, wy, wz) = (pr(w, x)?, pr(w, y)?, pr(w, z)?);
    // 1 − 2(a + b)
    let diag = |t: &mut Tape<'_, B>, a: Var, b: Var| -> Result<Var> {
        let s = t.add(a, b)?;
        t.affine(s, -2.0, 1.0)
    };
    // 2(a ± b)
    let off = |t: &mut Tape<'_, B>, a: Var, b: Var, plus: bool| -> Result<Var> {
        let s = if plus { t.add(a, b)? } else { t.sub(a, b)? };
        t.affine(s, 2.0, 0.0)
    };
    let r = [
        diag(t, yy, zz)?,
        off(t, xy, wz, false)?,
        off(t, xz, wy, true)?,
        off(t, xy, wz, true)?,
        diag(t, xx, zz)?,
        off(t, yz, wx, false)?,
        off(t, xz, wy, false)?,
        off(t, yz, wx, true)?,
        diag(t, xx, yy)?,
    ];
    t.concat(&r)
}

/// Rotations (n·9, row-major) of parameters `params` (n, k) through the tape parametrisation `f`
/// ([`sixd`], [`quat`], …), on an f64 inference tape on the host: the same map as in training.
pub fn on_host(
    f: fn(&mut Tape<'_, crate::backend::cpu::CpuBackend<f64>>, Var) -> Result<Var>,
    params: &[f64],
    k: usize,
) -> Result<Vec<f64>> {
    let be = crate::backend::cpu::CpuBackend::<f64>::new();
    let store = crate::autodiff::ParamStore::new();
    let mut t = Tape::inference(&be, &store);
    let a = t.constant(Tensor::from_slice(&be, params, &[params.len() / k, k])?);
    let r = f(&mut t, a)?;
    t.to_vec(r)
}

/// The unit quaternion (w, x, y, z) with w ≥ 0 of a rotation matrix (row-major), the inverse of
/// [`quat`] (Shepperd's method: the largest of the four squared components is computed first).
pub fn quat_of(r: &[f64; 9]) -> [f64; 4] {
    let (m00, m01, m02) = (r[0], r[1], r[2]);
    let (m10, m11, m12) = (r[3], r[4], r[5]);
    let (m20, m21, m22) = (r[6], r[7], r[8]);
    let tr = m00 + m11 + m22;
    let q = if tr >= m00.max(m11).max(m22) {
        let s = (1.0 + tr).max(0.0).sqrt() * 2.0; // 4w
        [0.25 * s, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s]
    } else if m00 >= m11 && m00 >= m22 {
        let s = (1.0 + m00 - m11 - m22).max(0.0).sqrt() * 2.0; // 4x
        [(m21 - m12) / s, 0.25 * s, (m01 + m10) / s, (m02 + m20) / s]
    } else if m11 >= m22 {
        let s = (1.0 + m11 - m00 - m22).max(0.0).sqrt() * 2.0; // 4y
        [(m02 - m20) / s, (m01 + m10) / s, 0.25 * s, (m12 + m21) / s]
    } else {
        let s = (1.0 + m22 - m00 - m11).max(0.0).sqrt() * 2.0; // 4z
        [(m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, 0.25 * s]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let sg = if q[0] < 0.0 { -1.0 } else { 1.0 };
    q.map(|v| sg * v / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use rand::{Rng, SeedableRng};

    type B64 = CpuBackend<f64>;

    /// L = Σ R ⊙ W through `f`, its value and gradient in the parameters.
    fn run(
        be: &B64,
        f: fn(&mut Tape<'_, B64>, Var) -> Result<Var>,
        x: &[f64],
        k: usize,
        w: &[f64],
    ) -> (Vec<f64>, f64, Vec<f64>) {
        let store = crate::autodiff::ParamStore::new();
        let mut t = Tape::new(be, &store);
        let nb = x.len() / k;
        let xv = t.input(Tensor::from_slice(be, x, &[nb, k]).unwrap());
        let r = f(&mut t, xv).unwrap();
        let rv = t.to_vec(r).unwrap();
        let wv = t.constant(Tensor::from_slice(be, w, &[nb, 9]).unwrap());
        let p = t.mul(r, wv).unwrap();
        let l = t.sum_all(p, 1.0).unwrap();
        let lv = t.to_vec(l).unwrap()[0];
        let g = be.to_vec(t.backward(l).unwrap().get(xv).unwrap()).unwrap();
        (rv, lv, g)
    }

    #[test]
    fn parametrisations_give_rotations_and_exact_gradients() {
        let be = B64::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let nb = 4;
        for (f, k) in [
            (
                inplane::<B64> as fn(&mut Tape<'_, B64>, Var) -> Result<Var>,
                2,
            ),
            (sixd::<B64>, 6),
            (quat::<B64>, 4),
        ] {
            let x: Vec<f64> = (0..nb * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f64> = (0..nb * 9).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (r, _, g) = run(&be, f, &x, k, &w);
            for m in r.chunks(9) {
                // RRᵀ = I and det R = +1
                for i in 0..3 {
                    for j in 0..3 {
                        let dot: f64 = (0..3).map(|l| m[i * 3 + l] * m[j * 3 + l]).sum();
                        assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12, "{m:?}");
                    }
                }
                let det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
                    + m[2] * (m[3] * m[7] - m[4] * m[6]);
                assert!((det - 1.0).abs() < 1e-12, "det {det}");
            }
            let h = 1e-6;
            for i in 0..x.len() {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[i] += h;
                b[i] -= h;
                let fd = (run(&be, f, &a, k, &w).1 - run(&be, f, &b, k, &w).1) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "k = {k}, x[{i}]: fd {fd} vs {}",
                    g[i]
                );
            }
        }
        // in-plane: the angle is atan2(b, a), whatever the length
        let (r, _, _) = run(&be, inplane::<B64>, &[3.0, 3.0 * 3f64.sqrt()], 2, &[0.0; 9]);
        let psi = std::f64::consts::PI / 3.0;
        let want = [
            psi.cos(),
            -psi.sin(),
            0.0,
            psi.sin(),
            psi.cos(),
            0.0,
            0.0,
            0.0,
            1.0,
        ];
        for (a, b) in r.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{r:?}");
        }
        // quat_of inverts quat: R → q → R for rotations of every kind (trace-, x-, y-, z-dominant)
        for (q0, k) in [
            ([0.9, 0.1, -0.3, 0.2], 0),
            ([0.1, 0.95, 0.2, -0.1], 1),
            ([0.05, -0.2, 0.9, 0.3], 2),
            ([-0.1, 0.3, 0.1, 0.9], 3),
        ] {
            let (r, _, _) = run(&be, quat::<B64>, &q0, 4, &[0.0; 9]);
            let q = quat_of(&r.clone().try_into().unwrap());
            let (r2, _, _) = run(&be, quat::<B64>, &q, 4, &[0.0; 9]);
            for (a, b) in r.iter().zip(&r2) {
                assert!((a - b).abs() < 1e-12, "case {k}: {r:?} vs {r2:?}");
            }
            assert!(q[0] >= 0.0 && (q.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // a wrong width is an error, not a panic
        let store = crate::autodiff::ParamStore::new();
        let mut t = Tape::new(&be, &store);
        let xv = t.input(Tensor::from_slice(&be, &[1.0, 2.0, 3.0], &[1, 3]).unwrap());
        assert!(inplane(&mut t, xv).is_err() && sixd(&mut t, xv).is_err());
        assert!(quat(&mut t, xv).is_err());
    }
}
