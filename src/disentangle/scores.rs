//! The disentanglement scores of Locatello et al. 2019 (disentanglement_lib, "DL"), the Fig 4 metrics
//! of the spec (`disentanglement.md` §4), on a representation r (n, d) against discrete factors
//! v (n, K), factor k taking the values `0..num_values[k]`.
//!
//! Sample-based metrics take already-sampled arrays ([`Sample`]); the two that define their own
//! sampling (BetaVAE, FactorVAE) take a [`Generator`] that returns representations of draws with one
//! factor held fixed, so the caller owns the data (phantom, projector, encoder).
//!
//! ## Definitions (as in DL) and every deviation
//! - **MIG** ([`mig`]): each code is cut into 20 equal-width bins between its min and max (DL
//!   `histogram_discretize`); `I[i, k]` is the mutual information (nats) of binned code i with factor k
//!   (sklearn `mutual_info_score`), `H_k` the factor's entropy; MIG = mean_k (I₍₁₎ − I₍₂₎)/H_k over
//!   the two largest entries of column k. Same as DL.
//! - **Modularity** ([`modularity`]): with m = I² (codes × factors), per code
//!   `δ_i = (Σ_k m_ik − max_k m_ik)/(max_k m_ik·(K − 1))` and score `1 − δ_i`; a code whose max MI is
//!   0 scores 0 and stays in the mean (DL sets `modularity_score[max == 0] = 0`, it does not skip it).
//!   Explicitness (DL's logistic-regression ROC-AUC) is not implemented.
//! - **SAP** ([`sap`]): per (code, factor) the test accuracy of a 1-D classifier of the factor from the
//!   code; SAP = mean_k (top1 − top2) over codes. **Deviation:** DL uses
//!   `LinearSVC(C=0.01, class_weight="balanced")`; here the 1-D classifier is the nearest class mean
//!   (predict the class whose training mean of the code is closest; equal-prior LDA with a shared
//!   variance, a linear classifier that ignores class frequencies, as "balanced" intends). Classes
//!   absent from the training sample are never predicted.
//! - **FactorVAE** ([`factor_vae`]): per-code variances (ddof 1) from `variance_samples` draws; codes
//!   with std < 0.05 are pruned (if none is left, both accuracies are 0, as DL). A vote: pick k
//!   uniformly, fix it at a uniform value across a batch, vote (k, argmin_i Var_i/GlobalVar_i) over the
//!   active codes. The majority-vote classifier maps each active code to its most voted factor; the
//!   accuracies are the fractions of train resp. eval votes it gets right. **Deviation:** DL copies
//!   the value of the batch's first factor draw; here it is drawn uniformly, equal for uniform factors.
//! - **BetaVAE** ([`beta_vae`]): a point picks k uniformly; for each of `batch` pairs, two draws share
//!   factor k (at a uniform value, drawn per pair as in DL); the feature is mean_pairs |r₁ − r₂| (d).
//!   A multinomial logistic regression is trained on the train points, and the eval accuracy is the
//!   score. **Deviation:** DL uses sklearn `LogisticRegression()` (L-BFGS, C = 1, no scaling); here the
//!   features are standardised with the train mean/std, and the same objective
//!   (mean cross-entropy + ‖W‖²/(2Cn), bias unpenalised) is minimised by plain gradient descent with
//!   step 2/(d + 1) for [`BetaVaeConfig::iterations`] steps.
//! - **DCI** ([`dci`]): an importance matrix R (codes × factors) from one classifier per factor;
//!   `D = Σ_i ρ_i (1 − H_K(R_i·/Σ_k R_ik))`, ρ_i = Σ_k R_ik/ΣR, completeness
//!   `C = Σ_k ρ_k (1 − H_d(R_·k/Σ_i R_ik))`, entropies in base K resp. d with DL's +1e-11; the
//!   informativeness is the mean over factors of the classifiers' accuracy. **Deviation:** DL uses
//!   sklearn `GradientBoostingClassifier()` importances; here each factor gets a bagged forest of
//!   Gini decision trees (bootstrap samples, all features at every split, depth ≤
//!   [`DciConfig::max_depth`]) whose importance is the mean over trees of the normalised weighted
//!   impurity decrease (sklearn's `feature_importances_`), and whose prediction is the trees' majority
//!   vote. Every result also says this in its `notes`.
//!
//! Shapes are row-major: `r[i·d + j]`, `v[i·K + k]`. Matrices in the results are `Vec` of rows, codes
//! first: `mi[i][k]`, `accuracy[i][k]`, `importance[i][k]`.

use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Number of equal-width bins of DL's `histogram_discretize`.
pub const BINS: usize = 20;

/// Sampled representations with their factors, validated.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    r: &'a [f64],
    d: usize,
    v: &'a [usize],
    num_values: &'a [usize],
}

impl<'a> Sample<'a> {
    /// Wraps a representation `r` (n, d) and factors `v` (n, K), factor k in `0..num_values[k]`
    /// (K = `num_values.len()`). Errors on empty arrays, mismatched n, a factor with fewer than two
    /// values, out-of-range factor values and non-finite codes.
    pub fn new(r: &'a [f64], d: usize, v: &'a [usize], num_values: &'a [usize]) -> Result<Self> {
        if d == 0 || r.is_empty() {
            return Err(Error::Invalid(
                "scores: the representation is empty (need n ≥ 1 rows of d ≥ 1 codes)".into(),
            ));
        }
        if r.len() % d != 0 {
            return Err(Error::Shape {
                what: "scores: representation length".into(),
                expected: format!("a multiple of d = {d}"),
                got: r.len().to_string(),
            });
        }
        let n = r.len() / d;
        let k = num_values.len();
        if k == 0 {
            return Err(Error::Invalid("scores: no factors (K = 0)".into()));
        }
        if v.len() != n * k {
            return Err(Error::Shape {
                what: "scores: factors".into(),
                expected: format!("n·K = {n}·{k} = {} values", n * k),
                got: v.len().to_string(),
            });
        }
        if let Some(f) = num_values.iter().position(|&m| m < 2) {
            return Err(Error::Invalid(format!(
                "scores: factor {f} has {} value(s); every factor needs at least 2",
                num_values[f]
            )));
        }
        if let Some(p) = v
            .iter()
            .enumerate()
            .position(|(p, &x)| x >= num_values[p % k])
        {
            return Err(Error::Invalid(format!(
                "scores: factor {} of row {} is {}, outside 0..{}",
                p % k,
                p / k,
                v[p],
                num_values[p % k]
            )));
        }
        if let Some(p) = r.iter().position(|x| !x.is_finite()) {
            return Err(Error::Invalid(format!(
                "scores: code {} of row {} is not finite ({})",
                p % d,
                p / d,
                r[p]
            )));
        }
        Ok(Sample {
            r,
            d,
            v,
            num_values,
        })
    }

    /// Number of rows n.
    pub fn n(&self) -> usize {
        self.r.len() / self.d
    }

    /// Number of codes d.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Number of factors K.
    pub fn k(&self) -> usize {
        self.num_values.len()
    }

    /// Code j as a column (n).
    fn code(&self, j: usize) -> Vec<f64> {
        self.r.iter().skip(j).step_by(self.d).copied().collect()
    }

    /// Factor k as a column (n).
    fn factor(&self, k: usize) -> Vec<usize> {
        self.v.iter().skip(k).step_by(self.k()).copied().collect()
    }
}

/// DL's `histogram_discretize` of one code: bin index in `0..bins` of equal-width bins between the
/// min and the max (the max falls in the last bin; a constant code is all in one bin).
fn discretize(x: &[f64], bins: usize) -> Vec<usize> {
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w = (hi - lo) / bins as f64;
    x.iter()
        .map(|&xi| {
            if w > 0.0 {
                (((xi - lo) / w).floor() as usize).min(bins - 1)
            } else {
                0
            }
        })
        .collect()
}

/// Mutual information (nats) of two label vectors, labels in `0..na` and `0..nb` (sklearn
/// `mutual_info_score`: Σ p_ab log(p_ab/(p_a p_b)) over non-empty cells).
fn mutual_info(a: &[usize], na: usize, b: &[usize], nb: usize) -> f64 {
    let n = a.len() as f64;
    let mut joint = vec![0usize; na * nb];
    let (mut pa, mut pb) = (vec![0usize; na], vec![0usize; nb]);
    for (&x, &y) in a.iter().zip(b) {
        joint[x * nb + y] += 1;
        pa[x] += 1;
        pb[y] += 1;
    }
    let mut mi = 0.0;
    for x in 0..na {
        for y in 0..nb {
            let c = joint[x * nb + y];
            if c > 0 {
                let c = c as f64;
                mi += c / n * (c * n / (pa[x] as f64 * pb[y] as f64)).ln();
            }
        }
    }
    mi.max(0.0)
}

/// Entropy (nats) of a label vector with labels in `0..na`.
fn entropy(a: &[usize], na: usize) -> f64 {
    let n = a.len() as f64;
    let mut c = vec![0usize; na];
    a.iter().for_each(|&x| c[x] += 1);
    c.iter()
        .filter(|&&ci| ci > 0)
        .map(|&ci| {
            let p = ci as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// MI matrix (d, K) of the 20-bin discretised codes against the factors, nats.
fn mi_matrix(s: &Sample) -> Vec<Vec<f64>> {
    let factors: Vec<Vec<usize>> = (0..s.k()).map(|k| s.factor(k)).collect();
    (0..s.d())
        .map(|j| {
            let code = discretize(&s.code(j), BINS);
            factors
                .iter()
                .zip(s.num_values)
                .map(|(f, &m)| mutual_info(&code, BINS, f, m))
                .collect()
        })
        .collect()
}

/// The two largest values of an iterator (−∞ where absent).
fn top_two(x: impl Iterator<Item = f64>) -> (f64, f64) {
    x.fold((f64::NEG_INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        if v > a {
            (v, a)
        } else if v > b {
            (a, v)
        } else {
            (a, b)
        }
    })
}

/// Mutual information gap and its matrix.
#[derive(Clone, Debug, Serialize)]
pub struct MigScore {
    /// MIG = mean_k (I₍₁₎ − I₍₂₎)/H_k.
    pub mig: f64,
    /// Per factor (K): (I₍₁₎ − I₍₂₎)/H_k.
    pub per_factor: Vec<f64>,
    /// Mutual information (d, K) of the binned codes with the factors, nats.
    pub mi: Vec<Vec<f64>>,
    /// Factor entropies (K), nats.
    pub entropy: Vec<f64>,
}

/// MIG of a sample (DL `compute_mig`; needs d ≥ 2 codes and every factor taking ≥ 2 values in the
/// sample).
pub fn mig(s: &Sample) -> Result<MigScore> {
    if s.d() < 2 {
        return Err(Error::Invalid(format!(
            "mig: needs at least 2 codes for a gap, got d = {}",
            s.d()
        )));
    }
    let mi = mi_matrix(s);
    let entropy: Vec<f64> = (0..s.k())
        .map(|k| entropy(&s.factor(k), s.num_values[k]))
        .collect();
    if let Some(k) = entropy.iter().position(|&h| h <= 0.0) {
        return Err(Error::Invalid(format!(
            "mig: factor {k} takes a single value in the sample (entropy 0)"
        )));
    }
    let per_factor: Vec<f64> = (0..s.k())
        .map(|k| {
            let (a, b) = top_two(mi.iter().map(|row| row[k]));
            (a - b) / entropy[k]
        })
        .collect();
    Ok(MigScore {
        mig: per_factor.iter().sum::<f64>() / s.k() as f64,
        per_factor,
        mi,
        entropy,
    })
}

/// Modularity (Ridgeway & Mozer 2018, as DL) and its MI matrix.
#[derive(Clone, Debug, Serialize)]
pub struct ModularityScore {
    /// mean over codes of 1 − δ_i (codes with zero max MI count as 0).
    pub modularity: f64,
    /// Per code (d): 1 − δ_i, or 0 where the code's max MI is 0.
    pub per_code: Vec<f64>,
    /// Mutual information (d, K) of the binned codes with the factors, nats.
    pub mi: Vec<Vec<f64>>,
}

/// Modularity of a sample (DL `modularity`; needs K ≥ 2 factors).
pub fn modularity(s: &Sample) -> Result<ModularityScore> {
    if s.k() < 2 {
        return Err(Error::Invalid(format!(
            "modularity: needs at least 2 factors (δ divides by K − 1), got K = {}",
            s.k()
        )));
    }
    let mi = mi_matrix(s);
    let km1 = (s.k() - 1) as f64;
    let per_code: Vec<f64> = mi
        .iter()
        .map(|row| {
            let sq: Vec<f64> = row.iter().map(|m| m * m).collect();
            let max = sq.iter().copied().fold(0.0, f64::max);
            if max > 0.0 {
                1.0 - (sq.iter().sum::<f64>() - max) / (max * km1)
            } else {
                0.0
            }
        })
        .collect();
    Ok(ModularityScore {
        modularity: per_code.iter().sum::<f64>() / s.d() as f64,
        per_code,
        mi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    /// Values per factor of the synthetic problem (K = 2).
    const M: usize = 10;
    /// Noise std of the synthetic codes (factor spacing 1).
    const NOISE: f64 = 0.1;

    /// The representation kinds of the tests.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        /// r = factors + noise.
        Identity,
        /// r = R(θ)·factors + noise, θ in degrees.
        Rotated(f64),
        /// r independent of the factors, N(0, 3²) per code.
        Random,
    }

    /// Representation (d = 2) of factor values `(a, b)`.
    fn encode(kind: Kind, a: usize, b: usize, rng: &mut StdRng) -> [f64; 2] {
        let g: f64 = StandardNormal.sample(&mut *rng);
        let h: f64 = StandardNormal.sample(&mut *rng);
        let (x, y) = (a as f64, b as f64);
        match kind {
            Kind::Identity => [x + NOISE * g, y + NOISE * h],
            Kind::Rotated(deg) => {
                let (s, c) = deg.to_radians().sin_cos();
                [c * x - s * y + NOISE * g, s * x + c * y + NOISE * h]
            }
            Kind::Random => [3.0 * g, 3.0 * h],
        }
    }

    /// n uniform factor draws (n, 2) and their representations (n, 2).
    fn draw(kind: Kind, n: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut r = Vec::with_capacity(2 * n);
        let mut v = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let (a, b) = (rng.random_range(0..M), rng.random_range(0..M));
            r.extend(encode(kind, a, b, &mut rng));
            v.extend([a, b]);
        }
        (r, v)
    }

    const KINDS: [Kind; 4] = [
        Kind::Identity,
        Kind::Rotated(20.0),
        Kind::Rotated(45.0),
        Kind::Random,
    ];

    /// A sample-based score for each of [`KINDS`], printed.
    fn scores_of(name: &str, n: usize, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        let nv = [M, M];
        KINDS
            .iter()
            .map(|&kind| {
                let (r, v) = draw(kind, n, 1);
                let x = f(&Sample::new(&r, 2, &v, &nv).unwrap());
                println!("{name} {kind:?}: {x:.4}");
                x
            })
            .collect()
    }

    #[test]
    fn discretize_matches_histogram_edges() {
        let b = discretize(&[0.0, 0.049, 0.05, 0.5, 0.99, 1.0], BINS);
        assert_eq!(b, vec![0, 0, 1, 10, 19, 19]);
        assert_eq!(discretize(&[2.0, 2.0], BINS), vec![0, 0]);
    }

    #[test]
    fn mutual_info_of_copies_and_independents() {
        let a: Vec<usize> = (0..1000).map(|i| i % 4).collect();
        let b: Vec<usize> = (0..1000).map(|i| (i / 4) % 5).collect();
        assert!((mutual_info(&a, 4, &a, 4) - 4f64.ln()).abs() < 1e-12);
        assert!((entropy(&a, 4) - 4f64.ln()).abs() < 1e-12);
        assert!(mutual_info(&a, 4, &b, 5).abs() < 1e-12);
    }

    #[test]
    fn mig_orders_identity_rotated_random() {
        let s = scores_of("mig", 4000, |s| mig(s).unwrap().mig);
        assert!(s[0] >= 0.9, "identity {}", s[0]);
        assert!(s[0] > s[1] && s[1] > s[2] + 0.1, "{s:?}");
        // At 45° both codes carry the same information on each factor: the gap is chance, as random.
        assert!(s[2].abs() < 0.05 && s[3].abs() < 0.05, "{s:?}");
    }

    #[test]
    fn modularity_orders_identity_rotated() {
        let s = scores_of("modularity", 4000, |s| modularity(s).unwrap().modularity);
        assert!(s[0] >= 0.9, "identity {}", s[0]);
        assert!(s[0] > s[1] && s[1] > s[2] + 0.1, "{s:?}");
        // At 45° each code carries equal MI on both factors: δ = 1, score ≈ 0.
        assert!(s[2] < 0.1, "{s:?}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let nv = [M, M];
        let r = [0.0; 4];
        assert!(Sample::new(&[], 2, &[], &nv).is_err());
        assert!(Sample::new(&r, 0, &[0; 4], &nv).is_err());
        assert!(Sample::new(&r, 2, &[0; 2], &nv).is_err());
        assert!(Sample::new(&r, 2, &[0; 4], &[M, 1]).is_err());
        assert!(Sample::new(&r, 2, &[0, M, 0, 0], &nv).is_err());
        assert!(Sample::new(&[0.0, f64::NAN, 0.0, 0.0], 2, &[0; 4], &nv).is_err());
        let s = Sample::new(&r, 2, &[0; 4], &nv).unwrap();
        assert!(mig(&s).is_err(), "constant factor");
        let s1 = Sample::new(&r, 1, &[0, 1, 0, 1], &[2]).unwrap();
        assert!(mig(&s1).is_err() && modularity(&s1).is_err());
    }
}
