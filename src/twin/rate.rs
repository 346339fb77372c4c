//! cryoTWIN's rate term: `−log Q(z)`, Q the probability mass of the GMM prior in the box of side T
//! centred on z (the paper's Eq. 1), for diagonal covariances, exactly and in log space, with its
//! gradients.
//!
//! ## Math
//! A GMM with C components, weights `π_c`, means `μ_c` (d) and standard deviations `σ_c` (d):
//!
//! `Q(z) = Σ_c π_c Π_j [Φ(u_cj) − Φ(l_cj)]`,  `u_cj = (z_j + T/2 − μ_cj)/σ_cj`,  `l_cj = (z_j − T/2 − μ_cj)/σ_cj`
//!
//! with Φ the standard normal CDF. Each factor is a probability, so `0 < Q ≤ 1` and the rate
//! `−log Q ≥ 0` (latents cannot collapse to a spike, as they could under `−log p(z) − d log T`).
//! Computed as `log Q = logsumexp_c (log π_c + Σ_j L_cj)`, `L_cj = log(Φ(u_cj) − Φ(l_cj))` from the
//! tail on the interval's side (so a box 40σ out is still finite, not `log 0`).
//!
//! Gradients, with `r_c = softmax_c(log π_c + Σ_j L_cj)` (the box posterior of each component) and
//! `g_u = φ(u)/(Φ(u) − Φ(l))`, `g_l = −φ(l)/(Φ(u) − Φ(l))`:
//! - `∂ log Q/∂z_j = Σ_c r_c (g_u + g_l)/σ_cj`
//! - `∂ log Q/∂μ_cj = −r_c (g_u + g_l)/σ_cj`
//! - `∂ log Q/∂ log σ_cj = −r_c (g_u u_cj + g_l l_cj)`
//! - `∂ log Q/∂ log π_c = r_c` (for logits w with π = softmax(w): `∂/∂w_k = r_k − π_k`).

use crate::{Error, Result};

/// `ln √(2π)`.
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// A Gaussian mixture with diagonal covariances in d dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct DiagGmm {
    /// Latent dimension d.
    pub d: usize,
    /// Log weights `log π_c` (C); the weights sum to 1.
    pub log_pi: Vec<f64>,
    /// Means `μ_c`, row-major (C, d).
    pub mu: Vec<f64>,
    /// Log standard deviations `log σ_cj`, row-major (C, d).
    pub log_sigma: Vec<f64>,
}

/// The rate `−log Q(z)` and its gradients (see the module doc); `−∂ log Q` throughout, so each is the
/// gradient of the rate itself.
#[derive(Clone, Debug, PartialEq)]
pub struct RateGrad {
    /// `−log Q(z) ≥ 0`.
    pub rate: f64,
    /// ∂rate/∂z (d).
    pub dz: Vec<f64>,
    /// ∂rate/∂μ (C, d).
    pub dmu: Vec<f64>,
    /// ∂rate/∂log σ (C, d).
    pub dlog_sigma: Vec<f64>,
    /// ∂rate/∂log π (C), treating each log π_c as free.
    pub dlog_pi: Vec<f64>,
}

impl DiagGmm {
    /// A mixture from weights (C, summing to 1 within 1e-6), means (C, d) and standard deviations (C, d).
    ///
    /// Errors on inconsistent lengths, a non-finite value, a negative weight, weights that do not sum to
    /// 1, or a standard deviation ≤ 0.
    pub fn new(d: usize, pi: &[f64], mu: &[f64], sigma: &[f64]) -> Result<Self> {
        let c = pi.len();
        if d == 0 || c == 0 || mu.len() != c * d || sigma.len() != c * d {
            return Err(Error::Shape {
                what: "GMM parameters".into(),
                expected: format!("d > 0, C > 0 weights, C·d = {} means and deviations", c * d),
                got: format!(
                    "d = {d}, {c} weights, {} means, {} deviations",
                    mu.len(),
                    sigma.len()
                ),
            });
        }
        if pi.iter().chain(mu).chain(sigma).any(|v| !v.is_finite()) {
            return Err(Error::invalid("GMM parameters must be finite"));
        }
        if pi.iter().any(|&p| p < 0.0) || (pi.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
            return Err(Error::invalid(format!(
                "GMM weights must be ≥ 0 and sum to 1, got sum {}",
                pi.iter().sum::<f64>()
            )));
        }
        if sigma.iter().any(|&s| s <= 0.0) {
            return Err(Error::invalid("GMM standard deviations must be positive"));
        }
        Ok(DiagGmm {
            d,
            log_pi: pi.iter().map(|p| p.ln()).collect(),
            mu: mu.to_vec(),
            log_sigma: sigma.iter().map(|s| s.ln()).collect(),
        })
    }

    /// Number of components C.
    pub fn n_comp(&self) -> usize {
        self.log_pi.len()
    }

    /// Log density `log p(z)` of the mixture at z (d).
    #[allow(clippy::needless_range_loop)] // (c, j) index three (C, d) tables at once
    pub fn log_density(&self, z: &[f64]) -> f64 {
        let d = self.d;
        let terms: Vec<f64> = (0..self.n_comp())
            .map(|c| {
                let mut s = self.log_pi[c];
                for j in 0..d {
                    let ls = self.log_sigma[c * d + j];
                    let x = (z[j] - self.mu[c * d + j]) / ls.exp();
                    s += -0.5 * x * x - LN_SQRT_2PI - ls;
                }
                s
            })
            .collect();
        logsumexp(&terms)
    }

    /// `log Q(z)`, the log probability mass in the box of side `t` centred on z (d).
    pub fn log_box_mass(&self, z: &[f64], t: f64) -> f64 {
        -self.rate_grad(z, t).rate
    }

    /// The rate `−log Q(z)` for a box of side `t` and its gradients (module doc).
    ///
    /// # Panics
    /// If `z.len() != d` or `t ≤ 0` (callers check their inputs).
    #[allow(clippy::needless_range_loop)] // (c, j) index several (C, d) tables at once
    pub fn rate_grad(&self, z: &[f64], t: f64) -> RateGrad {
        let (d, nc) = (self.d, self.n_comp());
        assert_eq!(z.len(), d, "rate_grad: z has {} values, d = {d}", z.len());
        assert!(t > 0.0, "rate_grad: box side must be positive, got {t}");
        let h = 0.5 * t;
        // Per (c, j): L, g_u, g_l, u, l.
        let mut parts = vec![[0f64; 5]; nc * d];
        let mut score = vec![0f64; nc];
        for c in 0..nc {
            let mut s = self.log_pi[c];
            for j in 0..d {
                let k = c * d + j;
                let sig = self.log_sigma[k].exp();
                let u = (z[j] + h - self.mu[k]) / sig;
                let l = (z[j] - h - self.mu[k]) / sig;
                let lv = log_ndtr_diff(l, u);
                let gu = (log_phi(u) - lv).exp();
                let gl = -(log_phi(l) - lv).exp();
                parts[k] = [lv, gu, gl, u, l];
                s += lv;
            }
            score[c] = s;
        }
        let log_q = logsumexp(&score);
        let r: Vec<f64> = score.iter().map(|s| (s - log_q).exp()).collect();
        let mut dz = vec![0f64; d];
        let mut dmu = vec![0f64; nc * d];
        let mut dls = vec![0f64; nc * d];
        for c in 0..nc {
            for j in 0..d {
                let k = c * d + j;
                let [_, gu, gl, u, l] = parts[k];
                let sig = self.log_sigma[k].exp();
                let g = (gu + gl) / sig;
                // Signs flipped: these are gradients of −log Q.
                dz[j] -= r[c] * g;
                dmu[k] = r[c] * g;
                dls[k] = r[c] * (gu * u + gl * l);
            }
        }
        RateGrad {
            // log Q ≤ 0 up to rounding; the rate is clamped at 0 so it is never negative.
            rate: (-log_q).max(0.0),
            dz,
            dmu,
            dlog_sigma: dls,
            dlog_pi: r.iter().map(|x| -x).collect(),
        }
    }
}

/// `log(Σ exp(x_i))`, stable; `−∞` for an empty slice or all `−∞`.
pub fn logsumexp(x: &[f64]) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// `log φ(x)`, the standard normal log density.
fn log_phi(x: f64) -> f64 {
    -0.5 * x * x - LN_SQRT_2PI
}

/// `log(1 − Φ(x))`, the upper tail, accurate far into the tail.
fn log_upper_tail(x: f64) -> f64 {
    if x < 30.0 {
        (0.5 * libm::erfc(x / std::f64::consts::SQRT_2)).ln()
    } else {
        // Asymptotic series: Q(x) = φ(x)/x · (1 − 1/x² + 3/x⁴ − 15/x⁶ + …); its next term is 105/x⁸
        // < 2e-10 here, and erfc underflows toward subnormals past x ≈ 37.
        let x2 = x * x;
        log_phi(x) - x.ln() + (1.0 - 1.0 / x2 + 3.0 / (x2 * x2) - 15.0 / (x2 * x2 * x2)).ln()
    }
}

/// `log(1 − e^x)` for `x < 0`, stable at both ends.
fn log1mexp(x: f64) -> f64 {
    if x > -std::f64::consts::LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

/// `log(Φ(b) − Φ(a))` for `a < b`, computed from the tail on the interval's side.
pub fn log_ndtr_diff(a: f64, b: f64) -> f64 {
    if a >= 0.0 {
        // Both in the upper half: Q(a) − Q(b).
        let (qa, qb) = (log_upper_tail(a), log_upper_tail(b));
        qa + log1mexp(qb - qa)
    } else if b <= 0.0 {
        // Mirror: Φ(b) − Φ(a) = Q(−b) − Q(−a).
        let (qb, qa) = (log_upper_tail(-b), log_upper_tail(-a));
        qb + log1mexp(qa - qb)
    } else {
        // Straddles 0: 1 − Q(b) − Q(−a), both tails ≤ 1/2.
        let qb = 0.5 * libm::erfc(b / std::f64::consts::SQRT_2);
        let qa = 0.5 * libm::erfc(-a / std::f64::consts::SQRT_2);
        (1.0 - qb - qa).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};

    fn toy(d: usize) -> DiagGmm {
        // Three components with unequal weights, means and deviations.
        let pi = [0.5, 0.3, 0.2];
        let mu: Vec<f64> = (0..3 * d)
            .map(|k| [-1.5, 0.4, 2.2][k / d] + 0.3 * (k % d) as f64)
            .collect();
        let sigma: Vec<f64> = (0..3 * d)
            .map(|k| [0.8, 1.6, 0.5][k / d] * (1.0 + 0.1 * (k % d) as f64))
            .collect();
        DiagGmm::new(d, &pi, &mu, &sigma).unwrap()
    }

    #[test]
    fn ndtr_diff_against_erf_and_far_tails() {
        for (a, b) in [
            (-1.0, 0.5),
            (0.2, 1.7),
            (-3.0, -0.1),
            (-0.01, 0.01),
            (2.0, 9.0),
        ] {
            let direct = 0.5
                * (libm::erf(b / std::f64::consts::SQRT_2)
                    - libm::erf(a / std::f64::consts::SQRT_2));
            let got = log_ndtr_diff(a, b).exp();
            assert!(
                (got - direct).abs() <= 1e-14 + 1e-12 * direct,
                "{a} {b}: {got} vs {direct}"
            );
        }
        // 40σ out: Q(40) = φ(40)/40 (1 − 1/1600 + …): finite, about −804.6.
        let v = log_ndtr_diff(40.0, 43.0);
        let want =
            log_phi(40.0) - 40f64.ln() + (1.0f64 - 1.0 / 1600.0 + 3.0 / 1600.0 / 1600.0).ln();
        assert!((v - want).abs() < 1e-8, "{v} vs {want}");
        assert_eq!(log_ndtr_diff(-43.0, -40.0), v);
        // The series and erfc agree where both hold.
        let (s, e) = (
            log_upper_tail(30.0),
            (0.5 * libm::erfc(30.0 / std::f64::consts::SQRT_2)).ln(),
        );
        assert!((s - e).abs() < 1e-9, "{s} vs {e}");
    }

    /// Q by tensor-product Simpson quadrature of the density over the box (2001 nodes per axis).
    fn q_by_quadrature(g: &DiagGmm, z: &[f64], t: f64) -> f64 {
        let n = 2000;
        let w = |i: usize| -> f64 {
            if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            }
        };
        let step = t / n as f64;
        let mut sum = 0.0;
        match g.d {
            1 => {
                for i in 0..=n {
                    let x = z[0] - t / 2.0 + i as f64 * step;
                    sum += w(i) * g.log_density(&[x]).exp();
                }
                sum * step / 3.0
            }
            2 => {
                for i in 0..=n {
                    for k in 0..=n {
                        let x = [
                            z[0] - t / 2.0 + i as f64 * step,
                            z[1] - t / 2.0 + k as f64 * step,
                        ];
                        sum += w(i) * w(k) * g.log_density(&x).exp();
                    }
                }
                sum * (step / 3.0) * (step / 3.0)
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn box_mass_matches_quadrature() {
        for (d, z) in [(1, vec![0.3]), (2, vec![-0.7, 1.1])] {
            let g = toy(d);
            let q = g.log_box_mass(&z, 3.0).exp();
            let quad = q_by_quadrature(&g, &z, 3.0);
            assert!((q - quad).abs() < 1e-10 * quad, "d = {d}: {q} vs {quad}");
        }
    }

    #[test]
    fn box_mass_matches_monte_carlo() {
        // Draws from the mixture, counted inside the box: 10⁶ draws, the paper's d = 8 would make Q tiny,
        // so d = 3 with T = 3 (Q ≈ 0.2, standard error ≈ 2e-3 relative / √(10⁶/...)).
        let g = toy(3);
        let z = [0.1, 0.5, -0.2];
        let t = 3.0;
        let q = g.log_box_mass(&z, t).exp();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let n = 4_000_000;
        let pi: Vec<f64> = g.log_pi.iter().map(|l| l.exp()).collect();
        let mut inside = 0usize;
        for _ in 0..n {
            let mut u: f64 = rng.random();
            let mut c = 0;
            while c + 1 < pi.len() && u >= pi[c] {
                u -= pi[c];
                c += 1;
            }
            let ok = (0..3).all(|j| {
                let e: f64 = StandardNormal.sample(&mut rng);
                let x = g.mu[c * 3 + j] + g.log_sigma[c * 3 + j].exp() * e;
                (x - z[j]).abs() <= t / 2.0
            });
            inside += usize::from(ok);
        }
        let mc = inside as f64 / n as f64;
        let se = (mc * (1.0 - mc) / n as f64).sqrt();
        assert!((q - mc).abs() <= 1e-3 * q, "Q {q} vs MC {mc} ± {se}");
    }

    #[test]
    fn rate_is_nonnegative_and_tends_to_the_density() {
        let g = toy(2);
        for z in [[0.0, 0.0], [5.0, -4.0], [60.0, 60.0], [-0.3, 2.5]] {
            let r = g.rate_grad(&z, 3.0);
            assert!(r.rate >= 0.0 && r.rate.is_finite(), "{z:?}: {}", r.rate);
            assert!(r.dz.iter().all(|v| v.is_finite()), "{z:?}: {:?}", r.dz);
        }
        // Q/T^d → p(z) as T → 0.
        let z = [0.4, -0.6];
        let t: f64 = 1e-3;
        let q = g.log_box_mass(&z, t);
        let p = g.log_density(&z);
        assert!(
            (q - 2.0 * t.ln() - p).abs() < 1e-6,
            "{} vs {p}",
            q - 2.0 * t.ln()
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let g = toy(3);
        let z = vec![0.2, -0.9, 1.3];
        let t = 3.0;
        let r = g.rate_grad(&z, t);
        let rate = |g: &DiagGmm, z: &[f64]| g.rate_grad(z, t).rate;
        let h = 1e-6;
        let check = |what: &str, k: usize, got: f64, plus: f64, minus: f64| {
            let fd = (plus - minus) / (2.0 * h);
            assert!(
                (got - fd).abs() <= 1e-4 * (1.0 + fd.abs()),
                "{what}[{k}]: {got} vs {fd}"
            );
        };
        for j in 0..3 {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[j] += h;
            zm[j] -= h;
            check("z", j, r.dz[j], rate(&g, &zp), rate(&g, &zm));
        }
        for k in 0..g.mu.len() {
            let (mut gp, mut gm) = (g.clone(), g.clone());
            gp.mu[k] += h;
            gm.mu[k] -= h;
            check("mu", k, r.dmu[k], rate(&gp, &z), rate(&gm, &z));
            let (mut gp, mut gm) = (g.clone(), g.clone());
            gp.log_sigma[k] += h;
            gm.log_sigma[k] -= h;
            check(
                "log_sigma",
                k,
                r.dlog_sigma[k],
                rate(&gp, &z),
                rate(&gm, &z),
            );
        }
        // Through logits w (π = softmax(w)): ∂rate/∂w_k = Σ_c ∂rate/∂log π_c · (δ_ck − π_k).
        let w: Vec<f64> = g.log_pi.clone();
        let with_w = |w: &[f64]| {
            let m = logsumexp(w);
            let mut gw = g.clone();
            gw.log_pi = w.iter().map(|x| x - m).collect();
            rate(&gw, &z)
        };
        let pi: Vec<f64> = g.log_pi.iter().map(|l| l.exp()).collect();
        let sum_d: f64 = r.dlog_pi.iter().sum();
        for k in 0..w.len() {
            let got = r.dlog_pi[k] - pi[k] * sum_d;
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[k] += h;
            wm[k] -= h;
            check("w", k, got, with_w(&wp), with_w(&wm));
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(DiagGmm::new(1, &[0.5, 0.6], &[0.0, 1.0], &[1.0, 1.0]).is_err());
        assert!(DiagGmm::new(1, &[1.0], &[0.0], &[0.0]).is_err());
        assert!(DiagGmm::new(2, &[1.0], &[0.0], &[1.0]).is_err());
        assert!(DiagGmm::new(1, &[1.0], &[f64::NAN], &[1.0]).is_err());
    }
}
