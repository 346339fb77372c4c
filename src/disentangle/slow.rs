//! SlowVAE's temporal Laplace prior (Klindt et al. 2020; used in Klindt et al. 2024, Fig 4): the
//! per-dimension term `CE(q_{t+1}, Lap(m_t, 1/λ′)) − H(q_{t+1})` with its analytic gradients, and the
//! generation of sparse-transition pairs (x_t, x_{t+1}) on a factor grid plus a pose bin.
//!
//! Why: under a rotation-invariant Gaussian prior the latents are identified only up to a rotation; a
//! Laplace prior on the transitions `Δ = z_{t+1} − z_t` is not rotation-invariant (E‖R_θΔ‖₁ grows from
//! 2.0 at 0° to 2.1213 at 45° for iid Laplace(0, 1) components), so it singles out the axis-aligned
//! solution (spec `disentanglement.md` §3 and test case 3).
//!
//! ## Math
//! For `q = N(m, s²)` and the Laplace density `(λ/2)·e^{−λ|z−μ|}`, with `d = m − μ`:
//!
//! `CE = E_q[−log Lap(z; μ, λ)] = −log(λ/2) + λ·A(d, s)`,
//! `A = E|z − μ| = s·√(2/π)·e^{−d²/2s²} + d·(1 − 2Φ(−d/s))`
//!
//! (the mean of a folded normal), and `H = ½ log(2πe s²)`. Since `1 − 2Φ(−d/s) = erf(d/(s√2))`, `A` is
//! computed with `erf` (no cancellation when `d/s` is large of either sign). Derivatives (the `φ` terms
//! of `∂A/∂d` cancel, and so do the `d²/s²` terms of `∂A/∂s`):
//! - `∂CE/∂m = −∂CE/∂μ = λ·erf(d/(s√2))`
//! - `∂CE/∂s = λ·√(2/π)·e^{−d²/2s²}`, so `∂CE/∂log s = λ·s·√(2/π)·e^{−d²/2s²}`
//! - `∂H/∂log s = 1`, `∂H/∂m = ∂H/∂μ = 0`.
//!
//! ## Pairs
//! Each grid factor `i ∈ 0..g` moves to `j` with `p(j|i) ∝ e^{−|j−i|/b}`, `b = ln(g)/λ` (λ the data rate),
//! truncated to `0..g`; the pose bin `i ∈ 0..n` moves the same way with the circular distance
//! `min(|j−i|, n−|j−i|)` and `b = ln(n)/λ` (our reading of "the same rule on 36 bins" \[I\]). Pairs in
//! which nothing changes are excluded (K20 redraws them; we sample that conditional law directly).

use crate::{Error, Result};
use rand::Rng;

/// `½ log(2πe)`.
const HALF_LN_2PI_E: f64 = 1.418_938_533_204_672_7;

/// `√(2/π)`.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// One value of a per-dimension prior term and its gradients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TermGrad {
    /// The term's value (nats).
    pub value: f64,
    /// ∂value/∂m, m the posterior mean of q.
    pub dm: f64,
    /// ∂value/∂log s, s the posterior standard deviation of q.
    pub dlog_s: f64,
    /// ∂value/∂μ, μ the Laplace location (the previous step's posterior mean).
    pub dmu: f64,
}

/// `A(d, s) = E|z − μ|` for `z ~ N(μ + d, s²)` and the pieces of its derivatives:
/// `(A, erf(d/(s√2)), √(2/π)·e^{−d²/2s²})`.
fn folded_mean(d: f64, s: f64) -> (f64, f64, f64) {
    let u = d / s;
    let g = SQRT_2_OVER_PI * (-0.5 * u * u).exp();
    let e = libm::erf(u / std::f64::consts::SQRT_2);
    (s * g + d * e, e, g)
}

/// Cross-entropy `CE(N(m, s²) ‖ Laplace(μ, 1/λ))` in nats, per dimension (module doc):
/// `−log(λ/2) + λ·[s·√(2/π)·e^{−d²/2s²} + d·(1 − 2Φ(−d/s))]`, `d = m − μ`.
///
/// Needs `s > 0` and `rate > 0` (network outputs, not user data: NaN otherwise, like `f64::ln`).
pub fn laplace_cross_entropy(m: f64, s: f64, mu: f64, rate: f64) -> f64 {
    let (a, _, _) = folded_mean(m - mu, s);
    -(0.5 * rate).ln() + rate * a
}

/// [`laplace_cross_entropy`] and its gradients with respect to m, log s and μ.
pub fn laplace_cross_entropy_grad(m: f64, s: f64, mu: f64, rate: f64) -> TermGrad {
    let (a, e, g) = folded_mean(m - mu, s);
    TermGrad {
        value: -(0.5 * rate).ln() + rate * a,
        dm: rate * e,
        dlog_s: rate * s * g,
        dmu: -rate * e,
    }
}

/// Differential entropy of `N(m, s²)` in nats: `½ log(2πe s²)`; its derivative by log s is 1.
pub fn gaussian_entropy(s: f64) -> f64 {
    HALF_LN_2PI_E + s.ln()
}

/// SlowVAE's per-dimension transition term `CE(N(m, s²) ‖ Laplace(μ, 1/λ)) − H(N(m, s²))` (the
/// γ-weighted part of the loss, spec §3) and its gradients with respect to m, log s and μ. With
/// `μ = m_t` not detached, `dmu` is the gradient that flows into the previous step's mean.
pub fn slow_term_grad(m: f64, s: f64, mu: f64, rate: f64) -> TermGrad {
    let ce = laplace_cross_entropy_grad(m, s, mu, rate);
    TermGrad {
        value: ce.value - gaussian_entropy(s),
        dlog_s: ce.dlog_s - 1.0,
        ..ce
    }
}

/// Unnormalised weights `e^{−dist(j, i)/b}` for `j ∈ 0..n`, `b = ln(n)/rate`; `dist` is `|j − i|`, or
/// the circular distance when `wrap`. The weight of `j = i` is 1.
fn move_weights(i: usize, n: usize, rate: f64, wrap: bool) -> Vec<f64> {
    let inv_scale = rate / (n as f64).ln();
    (0..n)
        .map(|j| {
            let dist = i.abs_diff(j);
            let dist = if wrap { dist.min(n - dist) } else { dist };
            if dist == 0 {
                1.0
            } else {
                (-(dist as f64) * inv_scale).exp()
            }
        })
        .collect()
}

/// Draws an index from unnormalised weights (their sum must be > 0), skipping index `skip` if given.
fn draw(w: &[f64], skip: Option<usize>, rng: &mut impl Rng) -> usize {
    let total: f64 = w
        .iter()
        .enumerate()
        .filter(|&(j, _)| Some(j) != skip)
        .map(|(_, v)| v)
        .sum();
    let mut u = rng.random::<f64>() * total;
    let mut last = 0;
    for (j, &v) in w.iter().enumerate() {
        if Some(j) == skip || v == 0.0 {
            continue;
        }
        last = j;
        if u < v {
            return j;
        }
        u -= v;
    }
    last
}

/// The next state of a SlowVAE pair: each grid factor of `state` (values in `0..grid`) and the pose bin
/// (in `0..n_pose_bins`, bins wrap around) move independently by the Laplace rule of the module doc with
/// data rate λ = `data_rate`, conditioned on at least one of them changing. Returns
/// `(next_state, next_pose_bin)`.
///
/// The condition is sampled exactly, without a redraw loop: the first coordinate (factors in order,
/// then the pose) that changes is `k` with probability `Π_{l<k} p_stay,l · (1 − p_stay,k) / (1 − Π_l
/// p_stay,l)`; coordinates before `k` stay, `k` draws among its other values, later ones draw freely.
/// This is the law of K20's "redraw until something changes".
///
/// Errors on `grid` or `n_pose_bins` of 0, a value out of range, a non-positive or non-finite
/// `data_rate`, or when no coordinate can change (every range has one value, or λ so large that every
/// move's probability underflows).
pub fn pair_transition(
    state: &[usize],
    grid: usize,
    pose_bin: usize,
    n_pose_bins: usize,
    data_rate: f64,
    rng: &mut impl Rng,
) -> Result<(Vec<usize>, usize)> {
    if grid == 0 || n_pose_bins == 0 {
        return Err(Error::invalid(format!(
            "pair_transition: grid ({grid}) and pose bins ({n_pose_bins}) must be at least 1"
        )));
    }
    if !(data_rate.is_finite() && data_rate > 0.0) {
        return Err(Error::invalid(format!(
            "pair_transition: data rate must be positive and finite, got {data_rate}"
        )));
    }
    if let Some(v) = state.iter().find(|&&v| v >= grid) {
        return Err(Error::invalid(format!(
            "pair_transition: factor value {v} outside the grid 0..{grid}"
        )));
    }
    if pose_bin >= n_pose_bins {
        return Err(Error::invalid(format!(
            "pair_transition: pose bin {pose_bin} outside 0..{n_pose_bins}"
        )));
    }
    // Coordinates: the factors, then the pose; (current value, weights).
    let coords: Vec<(usize, Vec<f64>)> = state
        .iter()
        .map(|&i| (i, move_weights(i, grid, data_rate, false)))
        .chain(std::iter::once((
            pose_bin,
            move_weights(pose_bin, n_pose_bins, data_rate, true),
        )))
        .collect();
    // P(k is the first coordinate to change), unnormalised: Π_{l<k} p_stay,l · p_move,k.
    let mut first = Vec::with_capacity(coords.len());
    let mut stay_so_far = 1.0;
    for (i, w) in &coords {
        let total: f64 = w.iter().sum();
        let stay = w[*i] / total;
        first.push(stay_so_far * (total - w[*i]) / total);
        stay_so_far *= stay;
    }
    if first.iter().sum::<f64>() <= 0.0 {
        return Err(Error::invalid(format!(
            "pair_transition: no factor or pose can change (grid {grid}, {n_pose_bins} pose bins, \
             data rate {data_rate})"
        )));
    }
    let k = draw(&first, None, rng);
    let next: Vec<usize> = coords
        .iter()
        .enumerate()
        .map(|(l, (i, w))| match l.cmp(&k) {
            std::cmp::Ordering::Less => *i,
            std::cmp::Ordering::Equal => draw(w, Some(*i), rng),
            std::cmp::Ordering::Greater => draw(w, None, rng),
        })
        .collect();
    let (factors, pose) = next.split_at(state.len());
    Ok((factors.to_vec(), pose[0]))
}

/// `train-vae --pairs P --slow-gamma γ --slow-rate λ′ [--slow-symmetric]`: SlowVAE's temporal prior in
/// training (`config.json`'s `slow`). Images `pairs[j][0]` and `pairs[j][1]` are consecutive time steps;
/// every batch holds whole pairs, and the loss gains `γ·Σ_pairs [CE(q_{t+1}, Lap(m_t, 1/λ′)) − H(q_{t+1})]`
/// (and the reverse direction with `symmetric`), normalised like the KL term (see [`slow_batch`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SlowParams {
    /// The pairs file (`pairs.pkl`, (P, 2) particle indices, as `simulate --pairs` writes it).
    pub pairs: std::path::PathBuf,
    /// γ, the weight of the transition term (the paper's 10).
    pub gamma: f64,
    /// λ′, the Laplace rate of the prior on transitions (the paper's 10).
    pub rate: f64,
    /// Apply the term both ways (t+1 around t and t around t+1), as K20's code does.
    pub symmetric: bool,
}

impl SlowParams {
    /// Checks γ ≥ 0 and λ′ > 0, both finite.
    pub fn check(&self) -> Result<()> {
        if !(self.gamma >= 0.0 && self.gamma.is_finite()) {
            return Err(Error::invalid(format!(
                "--slow-gamma must be ≥ 0 and finite, got {}",
                self.gamma
            )));
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(Error::invalid(format!(
                "--slow-rate must be > 0 and finite, got {}",
                self.rate
            )));
        }
        Ok(())
    }

    /// Visit the settings a checkpoint records.
    pub fn each_setting(
        &mut self,
        f: &mut dyn FnMut(
            &'static str,
            &'static str,
            &mut dyn crate::train::checkpoint::Setting,
        ) -> Result<()>,
    ) -> Result<()> {
        f("slow_gamma", "--slow-gamma", &mut self.gamma)?;
        f("slow_rate", "--slow-rate", &mut self.rate)?;
        f("slow_symmetric", "--slow-symmetric", &mut self.symmetric)
    }
}

/// The pairs of a `pairs.pkl`-style array: `flat` holds (P, 2) particle indices row-major (any integer
/// type, converted by the caller to i64); each must lie in `0..n`, and a pair's two images must differ.
/// `path` names the file in errors.
pub fn check_pairs(flat: &[i64], n: usize, path: &std::path::Path) -> Result<Vec<[usize; 2]>> {
    if flat.is_empty() || !flat.len().is_multiple_of(2) {
        return Err(Error::format(
            path,
            format!(
                "expected a (P, 2) array of particle index pairs with P ≥ 1, got {} values",
                flat.len()
            ),
        ));
    }
    flat.chunks_exact(2)
        .enumerate()
        .map(|(j, r)| {
            let ok = |v: i64| v >= 0 && (v as u64) < n as u64;
            if !ok(r[0]) || !ok(r[1]) {
                return Err(Error::format(
                    path,
                    format!(
                        "pair {j} is ({}, {}): indices must lie in 0..{n} (the particle count)",
                        r[0], r[1]
                    ),
                ));
            }
            if r[0] == r[1] {
                return Err(Error::format(
                    path,
                    format!("pair {j} pairs image {} with itself", r[0]),
                ));
            }
            Ok([r[0] as usize, r[1] as usize])
        })
        .collect()
}

/// The transition term of a batch whose rows `2j, 2j + 1` are a pair (t, t+1): with `mu`, `logvar`
/// (B, zdim) the encoder's posterior means and log variances, returns the sum over pairs and dimensions
/// of `CE(q_{t+1}, Lap(m_t, 1/rate)) − H(q_{t+1})` (plus the reverse direction when `symmetric`), and
/// its gradients with respect to `mu` and `logvar` (B, zdim; ∂/∂log σ² = ½ ∂/∂log s). `m_t` is not
/// detached: it receives the `dmu` gradient (spec §3, as K20).
///
/// Training adds `γ·value/(B·P)` (P the decoder's pixel count): the KL enters cryoDRGN's loss as
/// `β·mean_batch KL / P`, so this is K20's per-pair `γ·term` on the same per-image, per-pixel scale.
pub fn slow_batch(
    mu: &[f32],
    logvar: &[f32],
    zdim: usize,
    rate: f64,
    symmetric: bool,
) -> Result<(f64, Vec<f64>, Vec<f64>)> {
    if zdim == 0 || mu.len() != logvar.len() || !mu.len().is_multiple_of(2 * zdim) {
        return Err(Error::Shape {
            what: "SlowVAE batch (pairs of rows)".into(),
            expected: format!(
                "μ and log σ² of equal length, a multiple of 2·zdim = {}",
                2 * zdim
            ),
            got: format!("{} and {}", mu.len(), logvar.len()),
        });
    }
    let mut value = 0.0;
    let mut gm = vec![0.0; mu.len()];
    let mut gl = vec![0.0; mu.len()];
    let mut one = |from: usize, to: usize, value: &mut f64| {
        // q_to around the mean of `from`
        for k in 0..zdim {
            let (a, b) = (from * zdim + k, to * zdim + k);
            let s = (0.5 * logvar[b] as f64).exp();
            let g = slow_term_grad(mu[b] as f64, s, mu[a] as f64, rate);
            *value += g.value;
            gm[b] += g.dm;
            gl[b] += 0.5 * g.dlog_s;
            gm[a] += g.dmu;
        }
    };
    for j in 0..mu.len() / (2 * zdim) {
        one(2 * j, 2 * j + 1, &mut value);
        if symmetric {
            one(2 * j + 1, 2 * j, &mut value);
        }
    }
    Ok((value, gm, gl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Exp1, StandardNormal};

    /// (m, s, μ, λ): d = 0, |d| ≈ s, |d| ≫ s of both signs, λ′ = 10 and λ = 1; none with CE near 0,
    /// where a relative tolerance would mean nothing.
    const CASES: [(f64, f64, f64, f64); 6] = [
        (0.0, 1.0, 0.0, 1.0),
        (0.3, 0.05, 0.3, 10.0),
        (0.5, 0.7, -0.2, 1.0),
        (-1.1, 0.3, 0.4, 10.0),
        (4.0, 0.05, -2.0, 10.0),
        (-3.0, 0.1, 2.0, 1.0),
    ];

    #[test]
    fn cross_entropy_matches_monte_carlo() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(24);
        let n = 1_000_000;
        for &(m, s, mu, rate) in &CASES {
            let ce = laplace_cross_entropy(m, s, mu, rate);
            let (mut sum, mut sum2) = (0.0, 0.0);
            for _ in 0..n {
                let e: f64 = StandardNormal.sample(&mut rng);
                let v = -(0.5 * rate).ln() + rate * (m + s * e - mu).abs();
                sum += v;
                sum2 += v * v;
            }
            let mc = sum / n as f64;
            let se = ((sum2 / n as f64 - mc * mc) / n as f64).sqrt();
            let rel = (mc - ce).abs() / ce.abs();
            println!("(m {m}, s {s}, mu {mu}, rate {rate}): CE {ce:.6} MC {mc:.6} ± {se:.1e} rel {rel:.1e}");
            assert!(rel < 1e-3, "relative error {rel:.2e} ≥ 1e-3");
            assert!(
                (mc - ce).abs() < 5.0 * se,
                "{} standard errors off",
                (mc - ce).abs() / se
            );
        }
    }

    #[test]
    fn far_tail_is_the_absolute_distance() {
        // |d| ≫ s: E|z − μ| → |d| exactly; the erf form has no cancellation.
        let ce = laplace_cross_entropy(10.0, 1e-3, 0.0, 10.0);
        assert!((ce - (-(5f64).ln() + 100.0)).abs() < 1e-12);
        let ce = laplace_cross_entropy(-10.0, 1e-3, 0.0, 10.0);
        assert!((ce - (-(5f64).ln() + 100.0)).abs() < 1e-12);
        // d = 0: E|z − μ| = s√(2/π).
        let ce = laplace_cross_entropy(1.0, 2.0, 1.0, 1.0);
        assert!((ce - (2f64.ln() + 2.0 * SQRT_2_OVER_PI)).abs() < 1e-14);
    }

    #[test]
    fn entropy_matches_closed_form() {
        for s in [0.01, 0.5, 1.0, 3.0] {
            let h = 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * s * s).ln();
            assert!((gaussian_entropy(s) - h).abs() < 1e-14);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let h = 1e-6;
        for &(m, s, mu, rate) in &CASES {
            for (name, f) in [
                (
                    "ce",
                    laplace_cross_entropy_grad as fn(f64, f64, f64, f64) -> TermGrad,
                ),
                ("slow", slow_term_grad),
            ] {
                let g = f(m, s, mu, rate);
                let at = |m: f64, ls: f64, mu: f64| f(m, ls.exp(), mu, rate).value;
                let ls = s.ln();
                let fd = [
                    (at(m + h, ls, mu) - at(m - h, ls, mu)) / (2.0 * h),
                    (at(m, ls + h, mu) - at(m, ls - h, mu)) / (2.0 * h),
                    (at(m, ls, mu + h) - at(m, ls, mu - h)) / (2.0 * h),
                ];
                for (an, fd, what) in [
                    (g.dm, fd[0], "m"),
                    (g.dlog_s, fd[1], "log s"),
                    (g.dmu, fd[2], "mu"),
                ] {
                    let tol = 1e-7 * (1.0 + an.abs());
                    assert!(
                        (an - fd).abs() < tol,
                        "{name} d/d{what} at ({m}, {s}, {mu}, {rate}): analytic {an}, FD {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn laplace_l1_norm_grows_under_rotation() {
        // Spec test case 3: Δ iid Laplace(0, 1) (as a difference of two Exp(1)); E‖R_θΔ‖₁ is 2 at 0°
        // and 3/√2 = 2.1213 at 45° (E|X − Y| = 1.5 for iid Laplace(0, 1)).
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let n = 1_000_000;
        let lap = |rng: &mut rand::rngs::StdRng| -> f64 {
            let a: f64 = Exp1.sample(rng);
            let b: f64 = Exp1.sample(rng);
            a - b
        };
        for (deg, want) in [(0.0f64, 2.0), (45.0, 1.5 * std::f64::consts::SQRT_2)] {
            let (sn, cs) = deg.to_radians().sin_cos();
            let mut sum = 0.0;
            for _ in 0..n {
                let (x, y) = (lap(&mut rng), lap(&mut rng));
                sum += (cs * x - sn * y).abs() + (sn * x + cs * y).abs();
            }
            let got = sum / n as f64;
            println!("E|R_{deg}° Δ|_1 = {got:.5} (want {want:.5})");
            assert!((got - want).abs() < 0.01, "at {deg}°: {got} vs {want}");
        }
    }

    /// Marginal law of one coordinate under the forced-change condition: `p(j)·(1 − [j = i]·P_others
    /// stay) / (1 − P_all stay)`.
    fn conditional_marginal(w: &[f64], i: usize, others_stay: f64) -> Vec<f64> {
        let total: f64 = w.iter().sum();
        let all_stay = w[i] / total * others_stay;
        w.iter()
            .enumerate()
            .map(|(j, v)| {
                v / total * if j == i { 1.0 - others_stay } else { 1.0 } / (1.0 - all_stay)
            })
            .collect()
    }

    /// Pearson's χ² of counts against probabilities, and its degrees of freedom.
    fn chi_square(counts: &[usize], p: &[f64]) -> (f64, usize) {
        let n: usize = counts.iter().sum();
        let chi = counts
            .iter()
            .zip(p)
            .map(|(&c, &p)| (c as f64 - n as f64 * p).powi(2) / (n as f64 * p))
            .sum();
        (chi, counts.len() - 1)
    }

    #[test]
    fn factor_and_pose_transitions_match_the_formula() {
        // g = 10, λ = 1: scale ln 10 = 2.303 steps; 36 pose bins, scale ln 36.
        let (grid, bins, rate) = (10, 36, 1.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 200_000;
        let state = [2usize, 9];
        let pose = 34;
        let mut c0 = vec![0usize; grid];
        let mut cp = vec![0usize; bins];
        for _ in 0..n {
            let (next, p) = pair_transition(&state, grid, pose, bins, rate, &mut rng).unwrap();
            assert!(next != state || p != pose, "unchanged pair");
            c0[next[0]] += 1;
            cp[p] += 1;
        }
        let stay = |i: usize, g: usize, wrap: bool| {
            let w = move_weights(i, g, rate, wrap);
            w[i] / w.iter().sum::<f64>()
        };
        // The scale is ln(g)/λ: neighbours weigh e^{−λ/ln g} relative to staying.
        let w0 = move_weights(2, grid, rate, false);
        assert!((w0[3] - (-1.0 / 10f64.ln()).exp()).abs() < 1e-15 && w0[3] == w0[1]);
        let p0 = conditional_marginal(&w0, 2, stay(9, grid, false) * stay(pose, bins, true));
        let wp = move_weights(pose, bins, rate, true);
        // Wrap-around: bin 34 is 2 bins from 0 and 3 bins from 1, as far as bins 32 and 31.
        assert_eq!(wp[0], wp[32]);
        assert_eq!(wp[1], wp[31]);
        let pp = conditional_marginal(&wp, pose, stay(2, grid, false) * stay(9, grid, false));
        for (what, counts, p) in [("factor 0", &c0, &p0), ("pose", &cp, &pp)] {
            let (chi, dof) = chi_square(counts, p);
            // χ²'s mean is dof and its sd √(2 dof); 5 sd is far out for a correct law.
            let bound = dof as f64 + 5.0 * (2.0 * dof as f64).sqrt();
            println!("{what}: chi2 {chi:.1} with {dof} dof (bound {bound:.1})");
            assert!(chi < bound, "{what}: chi2 {chi} ≥ {bound}");
        }
        // Pose moves wrap: 34 → 0 (2 bins across the seam) is as common as 34 → 32.
        assert!(cp[0] > 0 && (cp[0] as f64 / cp[32] as f64 - 1.0).abs() < 0.1);
    }

    #[test]
    fn forced_change_with_a_sticky_rate() {
        // λ = 20 on g = 3: staying has probability ≈ 1 − 2e-8 per coordinate, yet every pair changes.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..10_000 {
            let (next, p) = pair_transition(&[1, 1], 3, 0, 2, 20.0, &mut rng).unwrap();
            assert!(next != [1, 1] || p != 0);
            assert!(next.iter().all(|&v| v < 3) && p < 2);
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        assert!(pair_transition(&[0], 0, 0, 36, 1.0, &mut rng).is_err());
        assert!(pair_transition(&[10], 10, 0, 36, 1.0, &mut rng).is_err());
        assert!(pair_transition(&[0], 10, 36, 36, 1.0, &mut rng).is_err());
        assert!(pair_transition(&[0], 10, 0, 36, 0.0, &mut rng).is_err());
        assert!(pair_transition(&[0], 10, 0, 36, f64::NAN, &mut rng).is_err());
        // Nothing can change: one grid value and one pose bin.
        assert!(pair_transition(&[0, 0], 1, 0, 1, 1.0, &mut rng).is_err());
        // Moves underflow.
        assert!(pair_transition(&[0], 2, 0, 1, 1e4, &mut rng).is_err());
    }

    /// `slow_batch`'s gradients against central differences of its value, one way and symmetric; the
    /// first row of a pair gets a gradient (m_t not detached).
    #[test]
    fn slow_batch_gradients_match_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let zdim = 3;
        let mu: Vec<f32> = (0..4 * zdim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let lv: Vec<f32> = (0..4 * zdim).map(|_| rng.random_range(-3.0..0.5)).collect();
        for sym in [false, true] {
            let (v0, gm, gl) = slow_batch(&mu, &lv, zdim, 10.0, sym).unwrap();
            assert!(v0.is_finite());
            let f = |m: &[f32], l: &[f32]| slow_batch(m, l, zdim, 10.0, sym).unwrap().0;
            let h = 1e-3f32;
            for i in 0..mu.len() {
                let (mut a, mut b) = (mu.clone(), mu.clone());
                a[i] += h;
                b[i] -= h;
                let fd = (f(&a, &lv) - f(&b, &lv)) / (2.0 * h as f64);
                assert!(
                    (fd - gm[i]).abs() < 2e-2 * (1.0 + gm[i].abs()),
                    "dμ[{i}] {fd} vs {}",
                    gm[i]
                );
                let (mut a, mut b) = (lv.clone(), lv.clone());
                a[i] += h;
                b[i] -= h;
                let fd = (f(&mu, &a) - f(&mu, &b)) / (2.0 * h as f64);
                assert!(
                    (fd - gl[i]).abs() < 2e-2 * (1.0 + gl[i].abs()),
                    "dlogvar[{i}] {fd} vs {}",
                    gl[i]
                );
            }
            // the first image of pair 0 is a Laplace location: its mean gets a gradient
            assert!(gm[..zdim].iter().any(|g| g.abs() > 1e-3));
            // one way: its log variance does not enter; symmetric: it does
            assert_eq!(gl[..zdim].iter().all(|g| *g == 0.0), !sym);
        }
        assert!(slow_batch(&mu[..5], &lv[..5], zdim, 10.0, false).is_err());
    }

    /// Pair files: out-of-range, self pairs and odd lengths are errors naming the file.
    #[test]
    fn check_pairs_refuses_bad_pairs() {
        let p = std::path::Path::new("pairs.pkl");
        assert_eq!(
            check_pairs(&[0, 1, 3, 2], 4, p).unwrap(),
            vec![[0, 1], [3, 2]]
        );
        for (bad, what) in [
            (&[0i64, 4][..], "0..4"),
            (&[0, -1][..], "0..4"),
            (&[2, 2][..], "itself"),
            (&[0, 1, 2][..], "(P, 2)"),
        ] {
            let e = check_pairs(bad, 4, p).unwrap_err().to_string();
            assert!(e.contains("pairs.pkl") && e.contains(what), "{e}");
        }
    }
}
