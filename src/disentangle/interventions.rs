//! The six intervention metrics of Klindt et al. 2024, App. A (spec `disentanglement.md` §4), over an
//! abstract composition h = f ∘ g: (z, φ) ↦ (f_z(g(z, φ)), f_φ(g(z, φ))), so that the metric core runs on
//! any generator/encoder pair (the learned decoder, the true phantom, an oracle in the tests).
//!
//! With z the given latents, φ and φ′ independent uniform poses (φ′ = φ + δφ with δφ uniform), and δz a
//! swap with another sample (z_π(i), π a random cyclic derangement):
//!
//! | metric | here |
//! |---|---|
//! | LCC (= LVC with g the decoder and f\* = f) | mean ‖z − h_z(z, φ)‖² |
//! | LPC (= LVI likewise) | mean d_φ(φ, h_φ(z, φ)) |
//! | LCI | mean ‖h_z(z, φ) − h_z(z, φ′)‖² |
//! | LPI | mean d_φ(h_φ(z, φ), h_φ(z_π, φ)) |
//!
//! d_φ is chordal (§2 default): in-plane 2 − 2 cos Δψ, SO(3) ‖R − R̂‖²_F. Each z term is also given
//! divided by 2·tr Cov of the vectors it compares (the mean squared distance of two independent
//! samples), so that a collapsed encoder cannot score well by shrinking: for LCC the target z, for LCI
//! h_z(z, φ).
//!
//! **Aligned mode** (`truth`, where z are true factors and φ true poses in another coordinate system than
//! the encoder's): LCC fits an affine map h_z ↦ z by least squares on the first half of the samples and
//! scores it on the second half; LPC aligns the in-plane angle as ±ψ̂ + c ([`align_angle`]) on the first
//! half and scores on the second; an SO(3) pose by one global rotation, R ≈ Q·R̂ or R ≈ R̂·Q (Kabsch, the
//! better-fitting side), likewise.

use crate::disentangle::mcc::align_angle;
use crate::geometry::quaternion::random_rotations;
use crate::geometry::rotation::{matmul3, Mat3};
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::f64::consts::TAU;

/// The space poses live in, and its distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoseSpace {
    /// An in-plane angle ψ (rad), one value per pose.
    InPlane,
    /// A rotation, nine values (row-major) per pose.
    So3,
}

impl PoseSpace {
    /// Values per pose: 1 (ψ) or 9 (R).
    pub fn width(self) -> usize {
        match self {
            PoseSpace::InPlane => 1,
            PoseSpace::So3 => 9,
        }
    }

    /// d_φ: 2 − 2 cos(a − b) (in-plane) or ‖A − B‖²_F (SO(3)).
    pub fn distance(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            PoseSpace::InPlane => 2.0 - 2.0 * (a[0] - b[0]).cos(),
            PoseSpace::So3 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        }
    }

    /// n uniform poses (ψ uniform in \[0, 2π) or Haar rotations), (n, width).
    pub fn sample(self, n: usize, rng: &mut impl Rng) -> Vec<f64> {
        match self {
            PoseSpace::InPlane => (0..n).map(|_| rng.random_range(0.0..TAU)).collect(),
            PoseSpace::So3 => random_rotations(n, rng).into_iter().flatten().collect(),
        }
    }

    /// The rotations of poses (n, width): Rz(ψ) or the matrices themselves.
    pub fn rotations(self, poses: &[f64]) -> Vec<Mat3> {
        match self {
            PoseSpace::InPlane => poses
                .iter()
                .map(|&a| crate::disentangle::probe::rz(a))
                .collect(),
            PoseSpace::So3 => poses
                .chunks_exact(9)
                .map(|c| std::array::from_fn(|i| c[i]))
                .collect(),
        }
    }
}

/// What h = f ∘ g returns for n inputs: latents (n, zdim) and, for a pose encoder, poses (n, width).
#[derive(Debug, Clone, PartialEq)]
pub struct Coded {
    /// h_z (n, zdim)
    pub z: Vec<f64>,
    /// h_φ (n, width); None for an encoder without a pose
    pub pose: Option<Vec<f64>>,
}

/// h = f ∘ g as a closure: (z (m, zdim), poses (m, width)) ↦ h's outputs for them.
pub type Composition<'a> = dyn FnMut(&[f64], &[f64]) -> Result<Coded> + 'a;

/// The sampling design of one evaluation.
#[derive(Debug, Clone)]
pub struct Design<'a> {
    /// the latents z fed to g (n, zdim)
    pub z: &'a [f64],
    /// width of z
    pub zdim: usize,
    /// where poses live
    pub space: PoseSpace,
    /// fit-and-score halves for LCC and LPC (module doc)
    pub align: bool,
    /// seeds the poses and the swap
    pub seed: u64,
}

/// A z term, raw and divided by 2·tr Cov of its reference vectors (None when that is 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZTerm {
    pub raw: f64,
    pub normalised: Option<f64>,
}

/// The four quantities of one evaluation (module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// LCC (or LVC)
    pub cc: ZTerm,
    /// LCI
    pub ci: ZTerm,
    /// LPC (or LVI); None without a pose output, or for SO(3) in aligned mode
    pub pc: Option<f64>,
    /// LPI; None without a pose output
    pub pi: Option<f64>,
    /// aligned mode, in-plane: the sign (±1) and offset (rad) of the pose alignment fitted on the first half
    pub pose_alignment: Option<(f64, f64)>,
    /// aligned mode, SO(3): the global rotation Q (row-major) fitted on the first half and whether it
    /// acts on the left (R ≈ Q·R̂) or the right (R ≈ R̂·Q)
    pub so3_alignment: Option<([f64; 9], bool)>,
    /// number of samples
    pub n: usize,
}

/// Evaluate the metrics for h = f ∘ g over `design` (module doc). `h(z, poses)` takes z (m, zdim) and
/// poses (m, width) and returns h's outputs for them; it is called three times, with (z, φ), (z, φ′) and
/// (z_π, φ).
pub fn evaluate(h: &mut Composition<'_>, design: &Design<'_>) -> Result<Metrics> {
    let (zdim, space) = (design.zdim, design.space);
    if zdim == 0 || design.z.is_empty() || !design.z.len().is_multiple_of(zdim) {
        return Err(Error::Shape {
            what: "interventions: z".into(),
            expected: format!("(n ≥ 4, {zdim})"),
            got: format!("{} values", design.z.len()),
        });
    }
    let n = design.z.len() / zdim;
    if n < 4 {
        return Err(Error::invalid(format!(
            "interventions: {n} samples, need at least 4"
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(design.seed);
    let phi = space.sample(n, &mut rng);
    let phi2 = space.sample(n, &mut rng);
    // π: a cyclic derangement of a random order, so π(i) ≠ i
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut perm = vec![0usize; n];
    for k in 0..n {
        perm[order[k]] = order[(k + 1) % n];
    }
    let z_swap: Vec<f64> = perm
        .iter()
        .flat_map(|&j| design.z[j * zdim..(j + 1) * zdim].iter().copied())
        .collect();
    let a = call(h, design.z, &phi, n, space)?;
    let b = call(h, design.z, &phi2, n, space)?;
    let c = call(h, &z_swap, &phi, n, space)?;
    let zc = a.z.len() / n;

    // LCC
    let cc = if design.align {
        let half = n / 2;
        let w = affine_fit(&a.z[..half * zc], &design.z[..half * zdim], half, zc, zdim)?;
        let (xa, ya) = (&a.z[half * zc..], &design.z[half * zdim..]);
        let m = n - half;
        let mut se = 0.0;
        for i in 0..m {
            let pred = affine_apply(&w, &xa[i * zc..(i + 1) * zc], zc, zdim);
            se += sq_dist(&pred, &ya[i * zdim..(i + 1) * zdim]);
        }
        z_term(se / m as f64, ya, m, zdim)
    } else {
        if zc != zdim {
            return Err(Error::invalid(format!(
                "interventions: h returns {zc} latent values per sample for a z of {zdim}; without \
                 alignment they must agree"
            )));
        }
        let se: f64 = (0..n)
            .map(|i| {
                sq_dist(
                    &a.z[i * zc..(i + 1) * zc],
                    &design.z[i * zdim..(i + 1) * zdim],
                )
            })
            .sum();
        z_term(se / n as f64, design.z, n, zdim)
    };
    // LCI
    let se: f64 = (0..n)
        .map(|i| sq_dist(&a.z[i * zc..(i + 1) * zc], &b.z[i * zc..(i + 1) * zc]))
        .sum();
    let ci = z_term(se / n as f64, &a.z, n, zc);
    // LPC, LPI
    let w = space.width();
    let (mut pc, mut pi, mut pose_alignment, mut so3_alignment) = (None, None, None, None);
    if let (Some(pa), Some(pcc)) = (&a.pose, &c.pose) {
        pi = Some(
            (0..n)
                .map(|i| space.distance(&pa[i * w..(i + 1) * w], &pcc[i * w..(i + 1) * w]))
                .sum::<f64>()
                / n as f64,
        );
        pc = match (design.align, space) {
            (false, _) => Some(
                (0..n)
                    .map(|i| space.distance(&phi[i * w..(i + 1) * w], &pa[i * w..(i + 1) * w]))
                    .sum::<f64>()
                    / n as f64,
            ),
            (true, PoseSpace::InPlane) => {
                let half = n / 2;
                let al = align_angle(&pa[..half], &phi[..half])?;
                pose_alignment = Some((al.sign, al.offset));
                let m = n - half;
                Some(
                    (half..n)
                        .map(|i| 2.0 - 2.0 * (al.sign * pa[i] + al.offset - phi[i]).cos())
                        .sum::<f64>()
                        / m as f64,
                )
            }
            (true, PoseSpace::So3) => {
                let half = n / 2;
                let rot = |v: &[f64], i: usize| -> Mat3 { std::array::from_fn(|k| v[9 * i + k]) };
                let truth: Vec<Mat3> = (0..n).map(|i| rot(&phi, i)).collect();
                let pred: Vec<Mat3> = (0..n).map(|i| rot(pa, i)).collect();
                let (q, left) = so3_align(&pred[..half], &truth[..half])?;
                so3_alignment = Some((q, left));
                let m = n - half;
                Some(
                    (half..n)
                        .map(|i| {
                            let al = if left {
                                matmul3(&q, &pred[i])
                            } else {
                                matmul3(&pred[i], &q)
                            };
                            space.distance(&truth[i], &al)
                        })
                        .sum::<f64>()
                        / m as f64,
                )
            }
        };
    }
    Ok(Metrics {
        cc,
        ci,
        pc,
        pi,
        pose_alignment,
        so3_alignment,
        n,
    })
}

/// h on (z, poses), its output shapes checked.
fn call(
    h: &mut Composition<'_>,
    z: &[f64],
    poses: &[f64],
    n: usize,
    space: PoseSpace,
) -> Result<Coded> {
    let out = h(z, poses)?;
    if out.z.is_empty() || !out.z.len().is_multiple_of(n) {
        return Err(Error::Shape {
            what: "interventions: h's latents".into(),
            expected: format!("({n}, zdim ≥ 1)"),
            got: format!("{} values", out.z.len()),
        });
    }
    if let Some(p) = &out.pose {
        if p.len() != n * space.width() {
            return Err(Error::Shape {
                what: "interventions: h's poses".into(),
                expected: format!("({n}, {})", space.width()),
                got: format!("{} values", p.len()),
            });
        }
    }
    if let Some(v) = out
        .z
        .iter()
        .chain(out.pose.iter().flatten())
        .find(|v| !v.is_finite())
    {
        return Err(Error::invalid(format!(
            "interventions: the encoder returned a non-finite value ({v})"
        )));
    }
    Ok(out)
}

/// The rotation Q ∈ SO(3) maximising tr(Qᵀ·A) (Kabsch): with A = U·S·Vᵀ and U, V made proper (the
/// third columns as cross products of the first two), Q = U·Vᵀ. A is (3×3, row-major); its two largest
/// singular values must be positive.
fn kabsch(a: &Mat3) -> Result<Mat3> {
    // AᵀA = V S² Vᵀ
    let ata: Vec<f64> = (0..9)
        .map(|ij| {
            let (i, j) = (ij / 3, ij % 3);
            (0..3).map(|k| a[3 * k + i] * a[3 * k + j]).sum()
        })
        .collect();
    let (ev, vecs) = crate::analysis::pca::symmetric_eigen(&ata, 3);
    if ev[1].is_nan() || ev[1] <= 1e-24 * ev[0].max(1e-300) {
        return Err(Error::invalid(
            "interventions: the SO(3) pose alignment is degenerate (the head's rotations span too little)",
        ));
    }
    let cross = |x: [f64; 3], y: [f64; 3]| {
        [
            x[1] * y[2] - x[2] * y[1],
            x[2] * y[0] - x[0] * y[2],
            x[0] * y[1] - x[1] * y[0],
        ]
    };
    let v0 = [vecs[0], vecs[1], vecs[2]];
    let v1 = [vecs[3], vecs[4], vecs[5]];
    let v2 = cross(v0, v1);
    let av = |v: [f64; 3], s: f64| -> [f64; 3] {
        std::array::from_fn(|i| (0..3).map(|k| a[3 * i + k] * v[k]).sum::<f64>() / s)
    };
    let u0 = av(v0, ev[0].sqrt());
    let u1 = av(v1, ev[1].sqrt());
    let u2 = cross(u0, u1);
    let (us, vs) = ([u0, u1, u2], [v0, v1, v2]);
    Ok(std::array::from_fn(|ij| {
        let (i, j) = (ij / 3, ij % 3);
        (0..3).map(|c| us[c][i] * vs[c][j]).sum()
    }))
}

/// Align predicted rotations to the truth by one global rotation, on the left (R ≈ Q·R̂) or the right
/// (R ≈ R̂·Q), whichever fits better (least squares in the Frobenius norm). Returns (Q, left).
pub fn so3_align(pred: &[Mat3], truth: &[Mat3]) -> Result<(Mat3, bool)> {
    if pred.len() != truth.len() || pred.is_empty() {
        return Err(Error::invalid(format!(
            "interventions: {} predicted and {} true rotations",
            pred.len(),
            truth.len()
        )));
    }
    // left: max Σ tr(Rᵀ Q R̂) = tr(Qᵀ Σ R R̂ᵀ); right: max Σ tr(Rᵀ R̂ Q) = tr(Qᵀ Σ R̂ᵀ R)
    let (mut al, mut ar) = ([0.0; 9], [0.0; 9]);
    for (p, t) in pred.iter().zip(truth) {
        for i in 0..3 {
            for j in 0..3 {
                al[3 * i + j] += (0..3).map(|k| t[3 * i + k] * p[3 * j + k]).sum::<f64>();
                ar[3 * i + j] += (0..3).map(|k| p[3 * k + i] * t[3 * k + j]).sum::<f64>();
            }
        }
    }
    let (ql, qr) = (kabsch(&al)?, kabsch(&ar)?);
    let err = |q: &Mat3, left: bool| -> f64 {
        pred.iter()
            .zip(truth)
            .map(|(p, t)| {
                let a = if left { matmul3(q, p) } else { matmul3(p, q) };
                sq_dist(&a, t)
            })
            .sum()
    };
    Ok(if err(&ql, true) <= err(&qr, false) {
        (ql, true)
    } else {
        (qr, false)
    })
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// 2·tr Cov of rows x (n, k): the mean squared distance of two independent rows.
pub fn two_trace_cov(x: &[f64], n: usize, k: usize) -> f64 {
    let mut t = 0.0;
    for j in 0..k {
        let m = (0..n).map(|i| x[i * k + j]).sum::<f64>() / n as f64;
        t += (0..n).map(|i| (x[i * k + j] - m).powi(2)).sum::<f64>() / n as f64;
    }
    2.0 * t
}

fn z_term(raw: f64, reference: &[f64], n: usize, k: usize) -> ZTerm {
    let s = two_trace_cov(reference, n, k);
    ZTerm {
        raw,
        normalised: (s > 0.0).then(|| raw / s),
    }
}

/// Least squares y ≈ W·\[x, 1\] for rows x (n, kx), y (n, ky): W is (kx + 1, ky), solved by the normal
/// equations with a ridge of 1e-12·trace (only to keep a degenerate x solvable).
pub fn affine_fit(x: &[f64], y: &[f64], n: usize, kx: usize, ky: usize) -> Result<Vec<f64>> {
    let m = kx + 1;
    let mut a = vec![0.0; m * m];
    let mut b = vec![0.0; m * ky];
    for i in 0..n {
        let row: Vec<f64> = x[i * kx..(i + 1) * kx]
            .iter()
            .copied()
            .chain([1.0])
            .collect();
        for p in 0..m {
            for q in 0..m {
                a[p * m + q] += row[p] * row[q];
            }
            for c in 0..ky {
                b[p * ky + c] += row[p] * y[i * ky + c];
            }
        }
    }
    let tr: f64 = (0..m).map(|p| a[p * m + p]).sum();
    for p in 0..m {
        a[p * m + p] += 1e-12 * tr.max(1e-300);
    }
    // Gaussian elimination with partial pivoting on [A | B]
    for col in 0..m {
        let piv = (col..m)
            .max_by(|&r, &s| a[r * m + col].abs().total_cmp(&a[s * m + col].abs()))
            .unwrap_or(col);
        if a[piv * m + col].abs() < 1e-300 {
            return Err(Error::invalid(
                "interventions: the affine alignment's normal equations are singular",
            ));
        }
        for j in 0..m {
            a.swap(col * m + j, piv * m + j);
        }
        for j in 0..ky {
            b.swap(col * ky + j, piv * ky + j);
        }
        for r in 0..m {
            if r != col {
                let f = a[r * m + col] / a[col * m + col];
                for j in 0..m {
                    a[r * m + j] -= f * a[col * m + j];
                }
                for j in 0..ky {
                    b[r * ky + j] -= f * b[col * ky + j];
                }
            }
        }
    }
    for p in 0..m {
        let d = a[p * m + p];
        for j in 0..ky {
            b[p * ky + j] /= d;
        }
    }
    Ok(b)
}

/// W·\[x, 1\] for one row x (kx) with W from [`affine_fit`].
pub fn affine_apply(w: &[f64], x: &[f64], kx: usize, ky: usize) -> Vec<f64> {
    (0..ky)
        .map(|c| (0..kx).map(|p| x[p] * w[p * ky + c]).sum::<f64>() + w[kx * ky + c])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_z(n: usize, k: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * k).map(|_| rng.random_range(0.0..1.0)).collect()
    }

    /// The oracle h(z, φ) = (z, φ) scores 0 on every metric, plain and aligned, in-plane and SO(3).
    #[test]
    fn oracle_scores_zero() {
        let z = uniform_z(400, 2, 1);
        for space in [PoseSpace::InPlane, PoseSpace::So3] {
            for align in [false, true] {
                let mut h = |z: &[f64], p: &[f64]| {
                    Ok(Coded {
                        z: z.to_vec(),
                        pose: Some(p.to_vec()),
                    })
                };
                let m = evaluate(
                    &mut h,
                    &Design {
                        z: &z,
                        zdim: 2,
                        space,
                        align,
                        seed: 3,
                    },
                )
                .unwrap();
                let tag = format!("{space:?} align {align}");
                assert!(m.cc.raw.abs() < 1e-12, "{tag}: LCC {}", m.cc.raw);
                assert!(m.cc.normalised.unwrap().abs() < 1e-11, "{tag}");
                assert!(m.ci.raw.abs() < 1e-12, "{tag}: LCI {}", m.ci.raw);
                assert_eq!(m.ci.normalised, Some(0.0), "{tag}");
                assert!(m.pi.unwrap().abs() < 1e-12, "{tag}: LPI");
                assert!(m.pc.unwrap().abs() < 1e-10, "{tag}: LPC {:?}", m.pc);
            }
        }
    }

    /// z′ = z + c(cos ψ, sin ψ) with uniform δψ: LCI = E‖c(u(ψ) − u(ψ′))‖² = 2c² (spec §5 case 5), here
    /// within 3% (the sample mean's relative sd is √(½)/√n ≈ 0.5% at n = 20000). The pose is still
    /// returned exactly, so LPC = LPI = 0, and LCC = E‖c·u‖² = c².
    #[test]
    fn leaking_encoder_has_lci_two_c_squared() {
        let n = 20_000;
        let z = uniform_z(n, 2, 7);
        for c in [0.1, 0.5] {
            let mut h = |z: &[f64], p: &[f64]| {
                let zz = z
                    .chunks(2)
                    .zip(p)
                    .flat_map(|(r, &a)| [r[0] + c * a.cos(), r[1] + c * a.sin()])
                    .collect();
                Ok(Coded {
                    z: zz,
                    pose: Some(p.to_vec()),
                })
            };
            let m = evaluate(
                &mut h,
                &Design {
                    z: &z,
                    zdim: 2,
                    space: PoseSpace::InPlane,
                    align: false,
                    seed: 11,
                },
            )
            .unwrap();
            let want = 2.0 * c * c;
            assert!(
                (m.ci.raw / want - 1.0).abs() < 0.03,
                "c {c}: LCI {} vs 2c² = {want}",
                m.ci.raw
            );
            assert!((m.cc.raw / (c * c) - 1.0).abs() < 1e-9, "LCC {}", m.cc.raw);
            assert!(m.pc.unwrap().abs() < 1e-12 && m.pi.unwrap().abs() < 1e-12);
        }
    }

    /// An encoder blind to z and φ (constant output) scores LCI = LPI = 0 but a large normalised LCC:
    /// with z uniform in \[0, 1\]² it is E‖z − 0‖² = 2/3 raw and (2/3)/(2·2/12) = 2 normalised; its
    /// in-plane LPC is E(2 − 2 cos ψ) = 2.
    #[test]
    fn collapsed_encoder_fails_lcc() {
        let z = uniform_z(20_000, 2, 5);
        let mut h = |z: &[f64], _p: &[f64]| {
            Ok(Coded {
                z: vec![0.0; z.len()],
                pose: Some(vec![0.0; z.len() / 2]),
            })
        };
        let m = evaluate(
            &mut h,
            &Design {
                z: &z,
                zdim: 2,
                space: PoseSpace::InPlane,
                align: false,
                seed: 2,
            },
        )
        .unwrap();
        assert!((m.cc.raw - 2.0 / 3.0).abs() < 0.02, "{}", m.cc.raw);
        assert!((m.cc.normalised.unwrap() - 2.0).abs() < 0.06);
        assert!((m.pc.unwrap() - 2.0).abs() < 0.05, "{:?}", m.pc);
        assert_eq!(m.ci.raw, 0.0);
        assert_eq!(m.ci.normalised, None);
        assert_eq!(m.pi, Some(0.0));
    }

    /// Aligned SO(3) poses: a head that returns Qᵀ·R or R·Qᵀ for a fixed rotation Q scores LPC = 0 after
    /// alignment (Q found, on the right side), and one that returns unrelated rotations scores ≈ E‖R − R′‖²
    /// = 6 for independent Haar rotations (minus what a fitted Q gains on a finite sample).
    #[test]
    fn so3_alignment_finds_the_global_rotation() {
        let z = uniform_z(400, 2, 8);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let q = random_rotations(1, &mut rng)[0];
        let qt: Mat3 = std::array::from_fn(|ij| q[3 * (ij % 3) + ij / 3]);
        for left in [true, false] {
            let mut h = |z: &[f64], p: &[f64]| {
                let pose = p
                    .chunks_exact(9)
                    .flat_map(|r| {
                        let r: Mat3 = std::array::from_fn(|k| r[k]);
                        if left {
                            matmul3(&qt, &r)
                        } else {
                            matmul3(&r, &qt)
                        }
                    })
                    .collect();
                Ok(Coded {
                    z: z.to_vec(),
                    pose: Some(pose),
                })
            };
            let m = evaluate(
                &mut h,
                &Design {
                    z: &z,
                    zdim: 2,
                    space: PoseSpace::So3,
                    align: true,
                    seed: 6,
                },
            )
            .unwrap();
            assert!(m.pc.unwrap() < 1e-10, "left {left}: {:?}", m.pc);
            let (qf, l) = m.so3_alignment.unwrap();
            assert_eq!(l, left);
            assert!(sq_dist(&qf, &q) < 1e-10);
        }
        let mut other = rand::rngs::StdRng::seed_from_u64(99);
        let mut h = |z: &[f64], p: &[f64]| {
            Ok(Coded {
                z: z.to_vec(),
                pose: Some(PoseSpace::So3.sample(p.len() / 9, &mut other)),
            })
        };
        let m = evaluate(
            &mut h,
            &Design {
                z: &z,
                zdim: 2,
                space: PoseSpace::So3,
                align: true,
                seed: 6,
            },
        )
        .unwrap();
        assert!((m.pc.unwrap() - 6.0).abs() < 0.6, "{:?}", m.pc);
    }

    /// Aligned mode undoes an affine map of z and a reflected, offset angle: h = (A z + b, −ψ + 1).
    #[test]
    fn aligned_mode_undoes_affine_maps_and_reflections() {
        let z = uniform_z(500, 2, 9);
        let mut h = |z: &[f64], p: &[f64]| {
            Ok(Coded {
                z: z.chunks(2)
                    .flat_map(|r| [2.0 * r[0] - r[1] + 3.0, 0.5 * r[1] + r[0]])
                    .collect(),
                pose: Some(p.iter().map(|a| 1.0 - a).collect()),
            })
        };
        let design = Design {
            z: &z,
            zdim: 2,
            space: PoseSpace::InPlane,
            align: true,
            seed: 4,
        };
        let m = evaluate(&mut h, &design).unwrap();
        assert!(m.cc.raw < 1e-16, "{}", m.cc.raw);
        assert!(m.pc.unwrap() < 1e-12, "{:?}", m.pc);
        let (s, c) = m.pose_alignment.unwrap();
        assert_eq!(s, -1.0);
        assert!((c - 1.0).abs() < 1e-9);
        // without alignment a 3-wide h for a 2-wide z is an error, not a number
        let mut wide = |z: &[f64], p: &[f64]| {
            Ok(Coded {
                z: z.chunks(2).flat_map(|r| [r[0], r[1], 0.0]).collect(),
                pose: Some(p.to_vec()),
            })
        };
        let plain = Design {
            align: false,
            ..design
        };
        assert!(evaluate(&mut wide, &plain).is_err());
    }
}
