//! Mean correlation coefficient (MCC) between latents and true factors, and circular pose alignment.
//!
//! ## MCC
//! For latents z (n, k1) and true factors z\* (n, k2), let C (k1, k2) be the correlation matrix,
//! `C[i, j] = corr(z_i, z*_j)`, Spearman (ranks, ties averaged; the primary choice, as K20 and the
//! paper's "monotonic relationship") or Pearson. Then
//!
//! `MCC = max_σ (1/K) Σ_{i} |C[i, σ(i)]|`, K = min(k1, k2),
//!
//! over injections σ of the smaller side into the larger, solved exactly as a linear sum assignment
//! on −|C| ([`crate::assignment`]). MCC is 1 for truth that is a permutation of the latents up to
//! sign and positive scaling (linear ICA's identifiability, WA = DP), and ≈ max(|cos θ|, |sin θ|)
//! under Pearson for two iid equal-variance sources rotated by θ.
//!
//! **Rectangular case.** [`Mcc::value`] averages over the K = min(k1, k2) matched pairs, so extra
//! latent dimensions (k1 > k2) are ignored and the value is then the spec's "average over the true
//! factors". When there are fewer latents than factors (k1 < k2) the spec's convention counts the
//! unmatched factors as 0; that is [`Mcc::value_over_truth`] = Σ|C matched| / k2 (K20 instead pads
//! with N(0, 1) columns, whose correlations are ≈ 0).
//!
//! A constant column has no correlation with anything: its entries of C are 0 (not NaN).
//!
//! ## Circular alignment
//! A pose angle is identifiable only up to reflection and offset, so ψ̂ is aligned to ψ as s·ψ̂ + c,
//! s = ±1, minimising the circular error `mean(1 − cos(sψ̂ + c − ψ))`; for each s the optimal c is
//! closed-form, `c = arg Σ exp(i(ψ − sψ̂))`.

use crate::analysis::stats::{pearson, ranks};
use crate::assignment::linear_sum_assignment;
use crate::{Error, Result};
use std::f64::consts::PI;

/// Which correlation coefficient fills the MCC matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Spearman's ρ: the Pearson correlation of ranks (ties get their mean rank).
    Spearman,
    /// Pearson's r.
    Pearson,
}

impl Method {
    /// Lower-case name, as on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Spearman => "spearman",
            Method::Pearson => "pearson",
        }
    }
}

/// The columns of the row-major (n, k) matrix `x`, with ranks instead of values for Spearman.
fn columns(x: &[f64], n: usize, k: usize, method: Method) -> Vec<Vec<f64>> {
    (0..k)
        .map(|j| {
            let c: Vec<f64> = (0..n).map(|i| x[i * k + j]).collect();
            match method {
                Method::Spearman => ranks(&c),
                Method::Pearson => c,
            }
        })
        .collect()
}

/// Check that `x` is an (n, k) matrix of finite values; `what` names it in errors.
fn check(x: &[f64], n: usize, k: usize, what: &str) -> Result<()> {
    if n.checked_mul(k) != Some(x.len()) {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("({n}, {k}) = {} values", n.saturating_mul(k)),
            got: format!("{} values", x.len()),
        });
    }
    if let Some(p) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{what}: value [{}, {}] = {} is not finite",
            p / k,
            p % k,
            x[p]
        )));
    }
    Ok(())
}

/// The (k1, k2) row-major matrix `C[i, j] = corr(z[:, i], truth[:, j])` of latents z (n, k1) and
/// true factors (n, k2), both row-major. Entries with a constant column are 0. Errors on wrong
/// lengths, non-finite values, n < 2 or an empty side.
pub fn correlation_matrix(
    z: &[f64],
    truth: &[f64],
    n: usize,
    k1: usize,
    k2: usize,
    method: Method,
) -> Result<Vec<f64>> {
    if n < 2 || k1 == 0 || k2 == 0 {
        return Err(Error::invalid(format!(
            "correlation matrix needs n ≥ 2 samples and at least one column on each side, got n = {n}, k1 = {k1}, k2 = {k2}"
        )));
    }
    check(z, n, k1, "latents")?;
    check(truth, n, k2, "true factors")?;
    let zc = columns(z, n, k1, method);
    let tc = columns(truth, n, k2, method);
    let mut c = Vec::with_capacity(k1 * k2);
    for a in &zc {
        for b in &tc {
            let r = pearson(a, b);
            c.push(if r.is_nan() { 0.0 } else { r.clamp(-1.0, 1.0) });
        }
    }
    Ok(c)
}

/// The MCC of latents against true factors, with the matrix and the matching behind it.
#[derive(Clone, Debug)]
pub struct Mcc {
    /// The correlation type.
    pub method: Method,
    /// Latent dimensions (rows of `matrix`).
    pub k1: usize,
    /// True factors (columns of `matrix`).
    pub k2: usize,
    /// Signed correlations (k1, k2), row-major.
    pub matrix: Vec<f64>,
    /// Matched latent dimensions (ascending), min(k1, k2) of them.
    pub latent: Vec<usize>,
    /// The true factor matched to each entry of `latent`.
    pub factor: Vec<usize>,
    /// Mean |C| over the min(k1, k2) matched pairs: the MCC.
    pub value: f64,
    /// Σ |C| over the matched pairs divided by k2 (the spec's average over the true factors; equals
    /// `value` when k1 ≥ k2).
    pub value_over_truth: f64,
}

impl Mcc {
    /// The signed correlation of each matched pair, in the order of `latent`.
    pub fn pairs(&self) -> Vec<f64> {
        self.latent
            .iter()
            .zip(&self.factor)
            .map(|(&i, &j)| self.matrix[i * self.k2 + j])
            .collect()
    }
}

/// MCC of latents z (n, k1) against true factors (n, k2), both row-major (see the module doc).
pub fn mcc(
    z: &[f64],
    truth: &[f64],
    n: usize,
    k1: usize,
    k2: usize,
    method: Method,
) -> Result<Mcc> {
    let matrix = correlation_matrix(z, truth, n, k1, k2, method)?;
    let neg_abs: Vec<f64> = matrix.iter().map(|c| -c.abs()).collect();
    let a = linear_sum_assignment(&neg_abs, k1, k2)?;
    let sum = -a.cost;
    Ok(Mcc {
        method,
        k1,
        k2,
        value: sum / k1.min(k2) as f64,
        value_over_truth: sum / k2 as f64,
        latent: a.rows,
        factor: a.cols,
        matrix,
    })
}

/// `x` wrapped to (−π, π].
pub fn wrap_angle(x: f64) -> f64 {
    let y = (x + PI).rem_euclid(2.0 * PI) - PI;
    if y == -PI {
        PI
    } else {
        y
    }
}

/// A predicted angle aligned to its truth: `aligned = wrap(sign·pred + offset)`.
#[derive(Clone, Debug)]
pub struct AngleAlignment {
    /// The aligned angles (radians, in (−π, π]).
    pub aligned: Vec<f64>,
    /// +1 or −1 (a reflected prediction).
    pub sign: f64,
    /// The offset c (radians, in (−π, π]).
    pub offset: f64,
    /// The minimised circular error, mean(1 − cos(aligned − truth)) ∈ [0, 2].
    pub circular_error: f64,
    /// Mean |wrap(aligned − truth)| (radians), for reporting.
    pub mean_abs_error: f64,
}

/// Align a predicted circular pose ψ̂ to the truth ψ (radians, equal lengths) as ±ψ̂ + c, minimising
/// mean(1 − cos(±ψ̂ + c − ψ)) (see the module doc). On a tie the unreflected (+) choice wins.
pub fn align_angle(pred: &[f64], truth: &[f64]) -> Result<AngleAlignment> {
    if pred.len() != truth.len() || pred.is_empty() {
        return Err(Error::Shape {
            what: "align_angle".into(),
            expected: format!("two equal, non-empty lengths (truth has {})", truth.len()),
            got: format!("{} predicted angles", pred.len()),
        });
    }
    check(pred, pred.len(), 1, "predicted angles")?;
    check(truth, truth.len(), 1, "true angles")?;
    let n = pred.len() as f64;
    let mut best: Option<AngleAlignment> = None;
    for sign in [1.0, -1.0] {
        // Σ cos(sψ̂ + c − ψ) = Re(e^{ic} Σ e^{i(sψ̂ − ψ)}) is largest at c = arg Σ e^{i(ψ − sψ̂)}.
        let (mut sc, mut ss) = (0.0, 0.0);
        for (p, t) in pred.iter().zip(truth) {
            let d = t - sign * p;
            sc += d.cos();
            ss += d.sin();
        }
        let offset = wrap_angle(ss.atan2(sc));
        let aligned: Vec<f64> = pred.iter().map(|p| wrap_angle(sign * p + offset)).collect();
        let (mut circ, mut abs) = (0.0, 0.0);
        for (a, t) in aligned.iter().zip(truth) {
            circ += 1.0 - (a - t).cos();
            abs += wrap_angle(a - t).abs();
        }
        let cand = AngleAlignment {
            aligned,
            sign,
            offset,
            circular_error: circ / n,
            mean_abs_error: abs / n,
        };
        if best
            .as_ref()
            .is_none_or(|b| cand.circular_error < b.circular_error)
        {
            best = Some(cand);
        }
    }
    best.ok_or_else(|| Error::invalid("align_angle: no candidate"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};

    fn normal(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
    }

    #[test]
    fn one_under_permutation_sign_and_scaling() {
        let (n, k) = (500, 4);
        let truth = normal(n * k, 1);
        // z[:, i] = s_i · a_i · truth[:, perm[i]] with positive a_i
        let perm = [2, 0, 3, 1];
        let scale = [-3.0, 0.5, 7.0, -0.01];
        let z: Vec<f64> = (0..n * k)
            .map(|p| scale[p % k] * truth[(p / k) * k + perm[p % k]])
            .collect();
        for method in [Method::Spearman, Method::Pearson] {
            let m = mcc(&z, &truth, n, k, k, method).unwrap();
            assert!((m.value - 1.0).abs() < 1e-12, "{method:?}: {}", m.value);
            assert_eq!(m.latent, vec![0, 1, 2, 3]);
            assert_eq!(m.factor, perm.to_vec());
            let signs: Vec<f64> = m.pairs().iter().map(|c| c.signum()).collect();
            assert_eq!(signs, vec![-1.0, 1.0, 1.0, -1.0]);
        }
        // Spearman: also 1 under a monotone nonlinear map
        let zc: Vec<f64> = z.iter().map(|v| v.powi(3) + v).collect();
        let m = mcc(&zc, &truth, n, k, k, Method::Spearman).unwrap();
        assert!((m.value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rotation_by_45_degrees() {
        // z = R(45°) z*: Pearson MCC = max(|cos|, |sin|) = 1/√2 (spec §5 case 2)
        let n = 100_000;
        let a = normal(n, 2);
        let b = normal(n, 3);
        let (s, c) = (PI / 4.0).sin_cos();
        let truth: Vec<f64> = (0..n).flat_map(|i| [a[i], b[i]]).collect();
        let z: Vec<f64> = (0..n)
            .flat_map(|i| [c * a[i] - s * b[i], s * a[i] + c * b[i]])
            .collect();
        let p = mcc(&z, &truth, n, 2, 2, Method::Pearson).unwrap();
        assert!(
            (p.value - 0.5f64.sqrt()).abs() < 0.01,
            "Pearson {}",
            p.value
        );
        // Spearman for Gaussians: (6/π) asin(r/2) = 0.6901 at r = 1/√2
        let sp = mcc(&z, &truth, n, 2, 2, Method::Spearman).unwrap();
        assert!((sp.value - 0.6901).abs() < 0.01, "Spearman {}", sp.value);
    }

    #[test]
    fn near_zero_for_independent() {
        let n = 20_000;
        let z = normal(n * 3, 4);
        let t = normal(n * 3, 5);
        for method in [Method::Spearman, Method::Pearson] {
            let m = mcc(&z, &t, n, 3, 3, method).unwrap();
            // each |r| ≈ |N(0, 1/n)|, the maximum of 9 about 2.5/√n = 0.018
            assert!(m.value < 0.04, "{method:?}: {}", m.value);
        }
    }

    #[test]
    fn rectangular() {
        let n = 1000;
        let t = normal(n * 2, 6);
        let noise = normal(n * 3, 7);
        // z (n, 3): [noise, -t1, 2 t0]
        let z: Vec<f64> = (0..n)
            .flat_map(|i| [noise[i], -t[i * 2 + 1], 2.0 * t[i * 2]])
            .collect();
        let m = mcc(&z, &t, n, 3, 2, Method::Pearson).unwrap();
        assert_eq!(
            (m.latent.clone(), m.factor.clone()),
            (vec![1, 2], vec![1, 0])
        );
        assert!((m.value - 1.0).abs() < 1e-12);
        assert!((m.value_over_truth - 1.0).abs() < 1e-12);
        // the other way round: 2 latents against 3 factors
        let t3: Vec<f64> = (0..n)
            .flat_map(|i| [noise[i], t[i * 2], t[i * 2 + 1]])
            .collect();
        let m = mcc(&t, &t3, n, 2, 3, Method::Spearman).unwrap();
        assert_eq!(
            (m.latent.clone(), m.factor.clone()),
            (vec![0, 1], vec![1, 2])
        );
        assert!((m.value - 1.0).abs() < 1e-12);
        assert!((m.value_over_truth - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn constant_column_and_errors() {
        let z = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
        let t = [1.0, 2.0, 3.0];
        let c = correlation_matrix(&z, &t, 3, 2, 1, Method::Pearson).unwrap();
        assert_eq!(c, vec![1.0, 0.0]);
        assert!(correlation_matrix(&z, &t, 3, 2, 2, Method::Pearson).is_err());
        assert!(
            correlation_matrix(&[1.0, f64::NAN], &[1.0, 2.0], 2, 1, 1, Method::Spearman).is_err()
        );
        assert!(correlation_matrix(&[1.0], &[1.0], 1, 1, 1, Method::Spearman).is_err());
    }

    #[test]
    fn angle_alignment_recovers_flip_and_offset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let truth: Vec<f64> = (0..2000).map(|_| rng.random_range(-PI..PI)).collect();
        // ψ̂ = −ψ + 1.3 + noise, so ψ ≈ −ψ̂ + 1.3
        let pred: Vec<f64> = truth
            .iter()
            .map(|t| wrap_angle(-t + 1.3 + 0.01 * rng.random_range(-1.0..1.0)))
            .collect();
        let a = align_angle(&pred, &truth).unwrap();
        assert_eq!(a.sign, -1.0);
        assert!((a.offset - 1.3).abs() < 2e-3, "offset {}", a.offset);
        assert!(a.mean_abs_error < 0.01, "error {}", a.mean_abs_error);
        // an exact unflipped copy with offset −3: exact recovery
        let pred: Vec<f64> = truth.iter().map(|t| wrap_angle(t - 3.0)).collect();
        let a = align_angle(&pred, &truth).unwrap();
        assert_eq!(a.sign, 1.0);
        assert!((a.offset - 3.0).abs() < 1e-9);
        assert!(a
            .aligned
            .iter()
            .zip(&truth)
            .all(|(x, t)| wrap_angle(x - t).abs() < 1e-9));
        assert!(align_angle(&[0.0], &[]).is_err());
        assert_eq!(wrap_angle(-PI), PI);
        assert!((wrap_angle(3.0 * PI + 0.5) - (-PI + 0.5)).abs() < 1e-12);
    }
}
