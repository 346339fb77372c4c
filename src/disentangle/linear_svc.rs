//! scikit-learn's `LinearSVC(C, class_weight="balanced")` on a single feature, as liblinear fits it:
//! the classifier of disentanglement_lib's SAP ([`crate::disentangle::scores::sap`]).
//!
//! ## What sklearn does (sklearn 1.x `svm/_base.py::_fit_liblinear`, vendored `liblinear/linear.cpp`)
//! - The feature x is extended by an intercept feature of value `intercept_scaling = 1`, so one
//!   binary problem is, with y_i = ±1 and a per-sample cost C_i,
//!   `min_{w,b} ½(w² + b²) + Σ_i C_i·max(0, 1 − y_i(w·x_i + b))²`
//!   (L2 penalty **on the intercept too**, squared hinge loss: solver `L2R_L2LOSS_SVC`).
//! - `class_weight="balanced"` gives class c the weight `n/(n_classes·n_c)`, and liblinear's
//!   `weighted_C[c] = C·weight_c`. Classes are the labels present in training, ascending.
//! - Two classes: ONE binary problem, the larger label positive (C_i = `weighted_C` of the sample's
//!   own class); predict the larger label iff `w·x + b > 0`.
//! - n ≥ 3 classes: one-vs-rest, problem c with class c positive at cost `weighted_C[c]` and **every
//!   other sample at the plain C** (liblinear's `train_one(.., weighted_C[i], param->C)`: the rest
//!   are not re-weighted); predict the first class of the largest `w_c·x + b_c`.
//! - One class: sklearn raises; here that class is always predicted (no fit).
//!
//! Each 2-variable problem is strongly convex and piecewise quadratic; it is solved by generalised
//! Newton steps (Hessian `I + 2Σ_active C_i (x_i, 1)(x_i, 1)ᵀ`) with an exact line search over the
//! sorted breakpoints, from (0, 0) as liblinear starts, until the gradient vanishes to rounding.
//! liblinear's trust-region Newton stops earlier (`tol = 1e-4` relative); on 1-D problems it mostly
//! lands on the same active set and hence the same optimum.

use crate::{Error, Result};

/// A fitted one-feature `LinearSVC`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearSvc1d {
    /// The classes present in training, ascending.
    pub classes: Vec<usize>,
    /// `(w, b)`: one per class for ≥ 3 classes (one-vs-rest), one for 2 classes (positive =
    /// `classes[1]`), none for a single class.
    pub coef: Vec<(f64, f64)>,
}

/// Gradient norm below which a Newton iteration stops, relative to the starting gradient's.
const GRAD_TOL: f64 = 1e-12;
/// Newton iterations at most (generalised Newton with exact line search ends in a handful).
const MAX_NEWTON: usize = 200;

impl LinearSvc1d {
    /// Fits `LinearSVC(C=c, class_weight="balanced")` to the feature `x` (n) and labels `y` (n).
    /// Errors on empty or mismatched inputs, non-finite x, or `c` not positive and finite.
    pub fn fit(x: &[f64], y: &[usize], c: f64) -> Result<Self> {
        if x.len() != y.len() || x.is_empty() {
            return Err(Error::Invalid(format!(
                "linear_svc: needs as many labels as values (≥ 1), got {} values, {} labels",
                x.len(),
                y.len()
            )));
        }
        if !(c > 0.0 && c.is_finite()) {
            return Err(Error::Invalid(format!(
                "linear_svc: C must be > 0, got {c}"
            )));
        }
        if let Some(p) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "linear_svc: non-finite value {} at {p}",
                x[p]
            )));
        }
        let mut classes = y.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let n = x.len() as f64;
        let nc = classes.len();
        let index = |label: usize| classes.partition_point(|&c| c < label);
        let cls: Vec<usize> = y.iter().map(|&l| index(l)).collect();
        let mut count = vec![0usize; nc];
        for &k in &cls {
            count[k] += 1;
        }
        // weighted_C[k] = C · n/(n_classes · n_k)
        let weighted: Vec<f64> = count
            .iter()
            .map(|&m| c * n / (nc as f64 * m as f64))
            .collect();
        let coef = match nc {
            1 => Vec::new(),
            2 => {
                let pos: Vec<bool> = cls.iter().map(|&k| k == 1).collect();
                vec![solve(x, &pos, weighted[1], weighted[0])]
            }
            _ => (0..nc)
                .map(|k| {
                    let pos: Vec<bool> = cls.iter().map(|&j| j == k).collect();
                    solve(x, &pos, weighted[k], c)
                })
                .collect(),
        };
        Ok(LinearSvc1d { classes, coef })
    }

    /// The predicted class of `x` (as sklearn's `predict`).
    pub fn predict(&self, x: f64) -> usize {
        match self.coef.len() {
            0 => self.classes[0],
            1 => {
                let (w, b) = self.coef[0];
                self.classes[usize::from(w * x + b > 0.0)]
            }
            _ => {
                let mut best = 0;
                let mut top = f64::NEG_INFINITY;
                for (k, &(w, b)) in self.coef.iter().enumerate() {
                    let s = w * x + b;
                    if s > top {
                        (best, top) = (k, s);
                    }
                }
                self.classes[best]
            }
        }
    }
}

/// Minimises `½(w² + b²) + Σ_i C_i·max(0, 1 − y_i(w·x_i + b))²`, y_i = +1 where `pos[i]` (cost
/// `cp`) else −1 (cost `cn`); returns `(w, b)`.
fn solve(x: &[f64], pos: &[bool], cp: f64, cn: f64) -> (f64, f64) {
    let yc = |i: usize| if pos[i] { (1.0, cp) } else { (-1.0, cn) };
    // Gradient and generalised Hessian at θ = (w, b).
    let grad_hess = |w: f64, b: f64| {
        let (mut g, mut h) = ([w, b], [1.0, 0.0, 1.0]);
        for (i, &xi) in x.iter().enumerate() {
            let (y, ci) = yc(i);
            let a = 1.0 - y * (w * xi + b);
            if a > 0.0 {
                // d/dθ C(1 − y θ·z)² = −2C·a·y·z, z = (x, 1)
                g[0] -= 2.0 * ci * a * y * xi;
                g[1] -= 2.0 * ci * a * y;
                h[0] += 2.0 * ci * xi * xi;
                h[1] += 2.0 * ci * xi;
                h[2] += 2.0 * ci;
            }
        }
        (g, h)
    };
    let (mut w, mut b) = (0.0, 0.0);
    let (mut g, mut h) = grad_hess(w, b);
    let stop = GRAD_TOL * g[0].hypot(g[1]).max(1.0);
    let mut events: Vec<(f64, usize)> = Vec::with_capacity(x.len());
    for _ in 0..MAX_NEWTON {
        if g[0].hypot(g[1]) <= stop {
            break;
        }
        // p = −H⁻¹g (H ⪰ I, so det ≥ 1)
        let det = h[0] * h[2] - h[1] * h[1];
        let p = [
            -(h[2] * g[0] - h[1] * g[1]) / det,
            -(h[0] * g[1] - h[1] * g[0]) / det,
        ];
        // Exact line search: φ'(t) = A + B·t on each piece; per sample, with a = 1 − y·m and
        // s = y·(p_w·x + p_b), the term C(a − t·s)² is active while a − t·s > 0.
        let (mut a_lin, mut b_lin) = (w * p[0] + b * p[1], p[0] * p[0] + p[1] * p[1]);
        events.clear();
        for (i, &xi) in x.iter().enumerate() {
            let (y, ci) = yc(i);
            let a = 1.0 - y * (w * xi + b);
            let s = y * (p[0] * xi + p[1]);
            if a > 0.0 {
                a_lin -= 2.0 * ci * s * a;
                b_lin += 2.0 * ci * s * s;
                if s > 0.0 {
                    events.push((a / s, i)); // leaves
                }
            } else if s < 0.0 {
                events.push((a / s, i)); // enters
            }
        }
        events.sort_by(|u, v| u.0.total_cmp(&v.0));
        let mut t = None;
        for &(te, i) in &events {
            if a_lin + b_lin * te >= 0.0 {
                t = Some(-a_lin / b_lin);
                break;
            }
            let (y, ci) = yc(i);
            let a = 1.0 - y * (w * x[i] + b);
            let s = y * (p[0] * x[i] + p[1]);
            let sign = if a > 0.0 { -1.0 } else { 1.0 };
            a_lin -= sign * 2.0 * ci * s * a;
            b_lin += sign * 2.0 * ci * s * s;
        }
        let t = t.unwrap_or(-a_lin / b_lin).max(0.0);
        let (w1, b1) = (w + t * p[0], b + t * p[1]);
        if w1 == w && b1 == b {
            break;
        }
        (w, b) = (w1, b1);
        (g, h) = grad_hess(w, b);
    }
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3-class problem of the reference: n = 60, classes 0:1:2 in proportion 3:2:1,
    /// x_i = 1.5·y_i + sin(1.7·i).
    fn three_class() -> (Vec<f64>, Vec<usize>) {
        (0..60)
            .map(|i| {
                let y = [0, 0, 0, 1, 1, 2][i % 6];
                (1.5 * y as f64 + (1.7 * i as f64).sin(), y)
            })
            .unzip()
    }

    /// The 2-class problem: labels 1 and 3 (3:1), x_i = 2·[y_i = 3] + cos(1.3·i) − 0.5.
    fn two_class() -> (Vec<f64>, Vec<usize>) {
        (0..60)
            .map(|i| {
                let y = if i % 4 == 3 { 3 } else { 1 };
                let x = if y == 3 { 2.0 } else { 0.0 } + (1.3 * i as f64).cos() - 0.5;
                (x, y)
            })
            .unzip()
    }

    // Reference values, sklearn 1.9.1 (numpy 2), computed once:
    //   i = np.arange(60)
    //   y3 = np.array([0,0,0,1,1,2])[i % 6]; x3 = 1.5 * y3 + np.sin(1.7 * i)
    //   m = LinearSVC(C=0.01, class_weight="balanced").fit(x3[:, None], y3)
    //   m.coef_.ravel(), m.intercept_
    //   y2 = np.where(i % 4 == 3, 3, 1); x2 = 2.0 * (y2 == 3) + np.cos(1.3 * i) - 0.5
    //   m = LinearSVC(C=0.01, class_weight="balanced").fit(x2[:, None], y2)
    // (dual="auto" picks the primal trust-region Newton; tol=1e-12 gives the same digits.)
    const W3: [f64; 3] = [
        -0.31464428636286473,
        0.04971981127855991,
        0.2223014675292818,
    ];
    const B3: [f64; 3] = [
        0.08379010363194975,
        -0.20889161576286913,
        -0.4176590116565559,
    ];
    const W2: f64 = 0.40400485643937695;
    const B2: f64 = -0.1054357637927704;

    #[test]
    fn three_classes_match_sklearn() {
        let (x, y) = three_class();
        let m = LinearSvc1d::fit(&x, &y, 0.01).unwrap();
        assert_eq!(m.classes, vec![0, 1, 2]);
        for (k, &(w, b)) in m.coef.iter().enumerate() {
            assert!(
                (w - W3[k]).abs() < 1e-9 && (b - B3[k]).abs() < 1e-9,
                "class {k}: ({w}, {b}) vs sklearn ({}, {})",
                W3[k],
                B3[k]
            );
        }
    }

    #[test]
    fn two_classes_one_binary_problem_match_sklearn() {
        let (x, y) = two_class();
        let m = LinearSvc1d::fit(&x, &y, 0.01).unwrap();
        assert_eq!(m.classes, vec![1, 3]);
        assert_eq!(m.coef.len(), 1);
        let (w, b) = m.coef[0];
        assert!(
            (w - W2).abs() < 1e-9 && (b - B2).abs() < 1e-9,
            "({w}, {b}) vs sklearn ({W2}, {B2})"
        );
        // sklearn: (m.predict(x2[:, None]) == y2).mean() = 0.8166666666666667 = 49/60
        let correct = x
            .iter()
            .zip(&y)
            .filter(|&(&v, &l)| m.predict(v) == l)
            .count();
        assert_eq!(correct, 49);
    }

    #[test]
    fn predict_ties_and_single_class() {
        let m = LinearSvc1d {
            classes: vec![2, 5, 7],
            coef: vec![(1.0, 0.0), (-1.0, 0.0), (0.0, -1.0)],
        };
        // at x = 0 classes 2 and 5 tie at 0: the first wins, as numpy's argmax
        assert_eq!((m.predict(0.0), m.predict(-1.0), m.predict(1.0)), (2, 5, 2));
        let b = LinearSvc1d {
            classes: vec![0, 4],
            coef: vec![(1.0, -1.0)],
        };
        // score exactly 0 is the negative (first) class, as sklearn's `scores > 0`
        assert_eq!((b.predict(1.0), b.predict(1.5)), (0, 4));
        let one = LinearSvc1d::fit(&[0.5, 1.5], &[3, 3], 0.01).unwrap();
        assert_eq!((one.coef.len(), one.predict(-9.0)), (0, 3));
    }

    #[test]
    fn separable_problem_meets_kkt() {
        // Analytic check independent of sklearn: at the optimum the gradient
        // θ − 2Σ_active C_i a_i y_i (x_i, 1) vanishes.
        let x = [-2.0, -1.0, -0.5, 0.5, 1.0, 3.0];
        let pos = [false, false, false, true, true, true];
        let (w, b) = solve(&x, &pos, 0.7, 0.2);
        let mut g = [w, b];
        for i in 0..6 {
            let (y, c) = if pos[i] { (1.0, 0.7) } else { (-1.0, 0.2) };
            let a = 1.0 - y * (w * x[i] + b);
            if a > 0.0 {
                g[0] -= 2.0 * c * a * y * x[i];
                g[1] -= 2.0 * c * a * y;
            }
        }
        assert!(
            w > 0.1 && g[0].abs() < 1e-12 && g[1].abs() < 1e-12,
            "{w} {b} {g:?}"
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(LinearSvc1d::fit(&[], &[], 0.01).is_err());
        assert!(LinearSvc1d::fit(&[1.0], &[0, 1], 0.01).is_err());
        assert!(LinearSvc1d::fit(&[f64::NAN, 1.0], &[0, 1], 0.01).is_err());
        assert!(LinearSvc1d::fit(&[0.0, 1.0], &[0, 1], 0.0).is_err());
    }
}
