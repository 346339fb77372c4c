//! Latent diffusion prior: exact math (EDM coefficients, schedule, Dormand–Prince on ODEs with known
//! solutions), samplers and the probability-flow ODE on Gaussian / Gaussian-mixture data whose ideal
//! denoiser is known in closed form, and short real training runs on a 2-D ring, a noisy line in
//! 4-D and a two-mode mixture (PC1 TVD against the Gaussian prior's, interpolation across the gap),
//! plus exact resume of training.

use cryofield::analysis::pca::Pca;
use cryofield::diffusion::edm::{karras_sigmas, loss_weight};
use cryofield::diffusion::eval::{fraction_below, tvd_hist, Kde};
use cryofield::diffusion::model::{train, train_resumable, TrainConfig};
use cryofield::diffusion::ode::{decode, dopri5, encode, interpolate, langevin_chain, OdeOptions};
use cryofield::diffusion::sample::{euler_maruyama, heun, Churn};
use cryofield::diffusion::{Denoiser, EdmConfig, GmmDenoiser, MlpDenoiser, Precond};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (m, x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n)
}

fn bimodal() -> GmmDenoiser {
    GmmDenoiser {
        means: vec![-2.0, 0.0, 2.0, 0.0],
        stds: vec![0.3, 0.3],
        weights: vec![0.5, 0.5],
        d: 2,
    }
}

#[test]
fn edm_coefficients_at_known_sigma() {
    let sd = 0.5;
    let p = Precond::new(sd, sd);
    assert!((p.c_skip - 0.5).abs() < 1e-15);
    assert!((p.c_out - sd / 2f64.sqrt()).abs() < 1e-15);
    assert!((p.c_in - 1.0 / (sd * 2f64.sqrt())).abs() < 1e-15);
    assert!((p.c_noise - sd.ln() / 4.0).abs() < 1e-15);
    for s in [0.002, 0.1, 1.0, 80.0] {
        let p = Precond::new(s, sd);
        // λ(σ)·c_out² = 1, and c_skip + c_out²/σd² = 1
        assert!((loss_weight(s, sd) * p.c_out * p.c_out - 1.0).abs() < 1e-12);
        assert!((p.c_skip + p.c_out * p.c_out / (sd * sd) - 1.0).abs() < 1e-12);
    }
    let ts = karras_sigmas(1000, 0.002, 80.0, 7.0);
    assert!((ts[0] - 80.0).abs() < 1e-9 && (ts[999] - 0.002).abs() < 1e-12);
    assert!(ts.windows(2).all(|w| w[1] < w[0]));
    // midpoint: ((80^{1/7} + 0.002^{1/7})/2)^7
    let mid = karras_sigmas(3, 0.002, 80.0, 7.0)[1];
    assert!(
        (mid - ((80f64.powf(1.0 / 7.0) + 0.002f64.powf(1.0 / 7.0)) / 2.0).powi(7)).abs() < 1e-12
    );
}

#[test]
fn gaussian_mixture_denoiser_closed_form() {
    let g = GmmDenoiser::gaussian(2, 0.5);
    let x = [1.0, -2.0, 0.3, 0.7];
    let s = [0.5, 2.0];
    let dn = g.denoise(&x, &s).unwrap();
    for i in 0..2 {
        let f = 0.25 / (s[i] * s[i] + 0.25);
        for j in 0..2 {
            assert!((dn[i * 2 + j] - x[i * 2 + j] * f).abs() < 1e-14);
        }
    }
    assert!(g.denoise(&x, &[0.5]).is_err());
}

#[test]
fn dopri5_matches_known_solutions() {
    let opt = OdeOptions {
        rtol: 1e-10,
        atol: 1e-12,
        max_steps: 100_000,
    };
    // y' = y, y(0) = 1 → e
    let (y, st) = dopri5(|_, y| Ok(y.to_vec()), 0.0, 1.0, &[1.0], &opt).unwrap();
    assert!((y[0] - 1f64.exp()).abs() < 1e-9, "{y:?} {st:?}");
    // y' = −2ty, backwards from t = 2 (y = e^{−4}) to t = 0 → 1
    let (y, _) = dopri5(
        |t, y| Ok(vec![-2.0 * t * y[0]]),
        2.0,
        0.0,
        &[(-4f64).exp()],
        &opt,
    )
    .unwrap();
    assert!((y[0] - 1.0).abs() < 1e-8, "{y:?}");
    // harmonic oscillator over 10 periods
    let tau = 2.0 * std::f64::consts::PI;
    let (y, _) = dopri5(
        |_, y| Ok(vec![y[1], -y[0]]),
        0.0,
        10.0 * tau,
        &[1.0, 0.0],
        &opt,
    )
    .unwrap();
    assert!((y[0] - 1.0).abs() < 1e-7 && y[1].abs() < 1e-7, "{y:?}");
    // 5th order: a loose tolerance still takes few steps on a smooth problem
    let (_, st) = dopri5(
        |_, y| Ok(y.to_vec()),
        0.0,
        1.0,
        &[1.0],
        &OdeOptions::default(),
    )
    .unwrap();
    assert!(st.accepted < 20, "{st:?}");
}

#[test]
fn pf_ode_encode_matches_gaussian_closed_form_and_round_trips() {
    let sd = 0.5;
    let edm = EdmConfig::new(sd);
    let g = GmmDenoiser::gaussian(3, sd);
    let mut rng = StdRng::seed_from_u64(1);
    let z = g.sample(50, &mut rng);
    let opt = OdeOptions::default();
    let (e, st) = encode(&g, &edm, &z, &opt).unwrap();
    // dx/dσ = xσ/(σ²+σd²) → x(σmax) = x(σmin)·√((σmax²+σd²)/(σmin²+σd²))
    let f = ((80f64.powi(2) + sd * sd) / (0.002f64.powi(2) + sd * sd)).sqrt() / 80.0;
    let rel = |a: &[f64], b: &[f64]| {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        (num / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
    };
    let expect: Vec<f64> = z.iter().map(|v| v * f).collect();
    assert!(rel(&e, &expect) < 1e-4, "{} {st:?}", rel(&e, &expect));
    let (back, _) = decode(&g, &edm, &e, &opt).unwrap();
    assert!(rel(&back, &z) < 1e-3, "round trip {}", rel(&back, &z));
    // the bimodal mixture (curved flow) round-trips too
    let b = bimodal();
    let edm = EdmConfig::new(1.5);
    let z = b.sample(64, &mut rng);
    let (e, _) = encode(&b, &edm, &z, &opt).unwrap();
    let (back, _) = decode(&b, &edm, &e, &opt).unwrap();
    let r = rel(&back, &z);
    println!("bimodal encode→decode relative error {r:.2e}");
    assert!(r < 1e-3, "bimodal round trip {r}");
    // encoded points are ~N(0, 1) (σ_data of the mixture ≈ 1.5 → spread ≈ 1 after /σmax... close to 1)
    let (_, v) = mean_var(&e);
    assert!((0.5..1.5).contains(&v), "encoded variance {v}");
}

#[test]
fn samplers_reproduce_gaussian_moments() {
    let sd = 0.5;
    let edm = EdmConfig::new(sd);
    let g = GmmDenoiser::gaussian(2, sd);
    let n = 4000;
    let mut rng = StdRng::seed_from_u64(2);
    // std error of the variance with n·d = 8000 draws: 0.25·√(2/8000) ≈ 0.004
    let check = |x: &[f64], what: &str| {
        let (m, v) = mean_var(x);
        println!("{what}: mean {m:.4} var {v:.4} (target 0, 0.25)");
        assert!(m.abs() < 0.03, "{what} mean {m}");
        assert!((v - 0.25).abs() < 0.02, "{what} var {v}");
    };
    let x = euler_maruyama(&g, &edm, n, 200, &mut rng, |_| {}).unwrap();
    check(&x, "euler-maruyama M=200");
    let x = heun(&g, &edm, n, 32, Churn::default(), &mut rng, |_| {}).unwrap();
    check(&x, "heun deterministic N=32");
    let churn = Churn {
        s_churn: 20.0,
        s_tmin: 0.01,
        s_tmax: 50.0,
        s_noise: 1.0,
    };
    let x = heun(&g, &edm, n, 64, churn, &mut rng, |_| {}).unwrap();
    check(&x, "heun stochastic N=64");
}

#[test]
fn bimodal_samples_match_pc1_marginal_gaussian_prior_does_not() {
    let b = bimodal();
    let mut rng = StdRng::seed_from_u64(3);
    let data = b.sample(20000, &mut rng);
    let edm = EdmConfig::new(1.5);
    let s = euler_maruyama(&b, &edm, 20000, 300, &mut rng, |_| {}).unwrap();
    let data32: Vec<f32> = data.iter().map(|&x| x as f32).collect();
    let pca = Pca::fit(&data32, data.len() / 2, 2).unwrap();
    assert!(pca.components[0].abs() > 0.99, "PC1 is the x axis");
    let gauss: Vec<f64> = (0..40000)
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect();
    let (p_d, p_s, p_g) = (
        pca.project(&data, 0),
        pca.project(&s, 0),
        pca.project(&gauss, 0),
    );
    let t_s = tvd_hist(&p_d, &p_s, 20).unwrap();
    let t_g = tvd_hist(&p_d, &p_g, 20).unwrap();
    // two independent 20k-draw histograms on 20 bins differ by ≈ 0.01 in TVD from sampling noise
    let t_ref = tvd_hist(&p_d, &pca.project(&b.sample(20000, &mut rng), 0), 20).unwrap();
    println!("PC1 TVD: diffusion {t_s:.4}, Gaussian prior {t_g:.4}, data vs fresh data {t_ref:.4}");
    assert!(t_s < 0.02, "diffusion TVD {t_s}");
    assert!(t_g > 0.5, "Gaussian prior TVD {t_g}");
}

#[test]
fn interpolation_between_modes_avoids_the_gap() {
    let b = bimodal();
    let edm = EdmConfig::new(1.5);
    let mut rng = StdRng::seed_from_u64(4);
    let data = b.sample(2000, &mut rng);
    let path = interpolate(
        &b,
        &edm,
        &[-2.0, 0.1],
        &[2.0, -0.1],
        100,
        &OdeOptions::default(),
    )
    .unwrap();
    let kde = Kde::new(&data, 2).unwrap();
    let thr = kde.data_quantile(0.01);
    let frac = fraction_below(&kde, &path, thr);
    // the straight line in data space goes through the empty gap: most of it is below threshold
    let straight = cryofield::diffusion::ode::lerp_path(&[-2.0, 0.1], &[2.0, -0.1], 100);
    let frac_straight = fraction_below(&kde, &straight, thr);
    println!("fraction below density threshold: prior interpolation {frac:.3}, straight line {frac_straight:.3}");
    assert!(frac <= 0.03, "{frac}");
    assert!(frac_straight > 0.4, "{frac_straight}");
    assert!((path[0] + 2.0).abs() < 1e-3 && (path[198] - 2.0).abs() < 1e-3);
    // Langevin chain in Gaussian space decodes onto the data
    let chain = langevin_chain(&[0.3, -0.2], 50, 0.1, &mut rng);
    let (dec, _) = decode(&b, &edm, &chain, &OdeOptions::default()).unwrap();
    let frac_l = fraction_below(&kde, &dec, thr);
    println!("Langevin chain decoded: fraction below threshold {frac_l:.3}");
    // each crossing between modes leaves a few correlated (Δt = 0.1) states near the boundary
    assert!(frac_l <= 0.15, "{frac_l}");
}

#[test]
fn tvd_basics() {
    let a = [0.0, 1.0, 2.0, 3.0];
    assert_eq!(tvd_hist(&a, &a, 4).unwrap(), 0.0);
    assert!((tvd_hist(&a, &[10.0, 11.0], 4).unwrap() - 1.0).abs() < 1e-12);
}

fn ring(n: usize, rng: &mut StdRng) -> Vec<f64> {
    let mut z = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let th = rng.random_range(0.0..std::f64::consts::TAU);
        let r = 1.0 + 0.05 * rng.sample::<f64, _>(rand_distr::StandardNormal);
        z.extend([r * th.cos(), r * th.sin()]);
    }
    z
}

#[test]
fn trained_small_denoiser_samples_a_ring_and_checkpoint_round_trips() {
    let mut rng = StdRng::seed_from_u64(6);
    let z = ring(4000, &mut rng);
    let cfg = TrainConfig {
        nlayers: 4,
        hidden: 64,
        lr: 2e-3,
        batch: 256,
        steps: 600,
        ema: 0.99,
        seed: 0,
    };
    let (model, rep) = train(&z, 2, &cfg, |_, _| {}).unwrap();
    let first: f64 = rep.losses[..50].iter().sum::<f64>() / 50.0;
    let last: f64 = rep.losses[rep.losses.len() - 50..].iter().sum::<f64>() / 50.0;
    println!("ring: loss {first:.3} → {last:.3} in {:.1}s", rep.seconds);
    assert!(last < 0.8 * first);
    let s = euler_maruyama(&model, &model.edm, 1000, 100, &mut rng, |_| {}).unwrap();
    let radii: Vec<f64> = s.chunks(2).map(|p| p[0].hypot(p[1])).collect();
    let near = radii.iter().filter(|r| (*r - 1.0).abs() < 0.25).count() as f64 / 1000.0;
    let inside = radii.iter().filter(|r| **r < 0.5).count() as f64 / 1000.0;
    let (mr, _) = mean_var(&radii);
    println!("ring samples: mean radius {mr:.3}, within 0.25 of the ring {near:.3}, r < 0.5: {inside:.3}");
    // a N(0, σd²I) sampler would give ≈ 0.45 near the ring and ≈ 0.22 inside r < 0.5
    assert!(near > 0.8, "{near}");
    assert!(inside < 0.05, "{inside}");
    assert!((mr - 1.0).abs() < 0.1, "{mr}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("prior.npz");
    model.save(&p).unwrap();
    let m2 = MlpDenoiser::load(&p).unwrap();
    let x = [0.3, -0.4, 1.0, 2.0];
    assert_eq!(
        model.denoise(&x, &[0.1, 3.0]).unwrap(),
        m2.denoise(&x, &[0.1, 3.0]).unwrap()
    );
    assert_eq!(m2.edm, model.edm);
}

/// PC1 TVD (20 bins) of `samples` and of N(0, I) draws against `data`, plus the floor: data
/// against fresh data from the same generator.
fn pc1_tvds(
    data: &[f64],
    fresh: &[f64],
    samples: &[f64],
    d: usize,
    rng: &mut StdRng,
) -> (f64, f64, f64) {
    let d32: Vec<f32> = data.iter().map(|&x| x as f32).collect();
    let pca = Pca::fit(&d32, data.len() / d, d).unwrap();
    let gauss: Vec<f64> = (0..samples.len())
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect();
    let pd = pca.project(data, 0);
    (
        tvd_hist(&pd, &pca.project(samples, 0), 20).unwrap(),
        tvd_hist(&pd, &pca.project(&gauss, 0), 20).unwrap(),
        tvd_hist(&pd, &pca.project(fresh, 0), 20).unwrap(),
    )
}

fn small_cfg(steps: usize) -> TrainConfig {
    TrainConfig {
        nlayers: 4,
        hidden: 64,
        lr: 2e-3,
        batch: 256,
        steps,
        ema: 0.99,
        seed: 0,
    }
}

/// Points on the segment t·u, t ~ U(−1.5, 1.5), u a unit vector in 4-D, plus isotropic noise 0.05.
fn line4(n: usize, rng: &mut StdRng) -> Vec<f64> {
    let u = [0.5, -0.5, 0.5, 0.5];
    let mut z = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let t = rng.random_range(-1.5..1.5);
        for uj in u {
            z.push(t * uj + 0.05 * rng.sample::<f64, _>(rand_distr::StandardNormal));
        }
    }
    z
}

#[test]
fn trained_denoiser_samples_a_line_gaussian_prior_does_not() {
    let mut rng = StdRng::seed_from_u64(7);
    let z = line4(4000, &mut rng);
    let (model, _) = train(&z, 4, &small_cfg(1500), |_, _| {}).unwrap();
    let s = euler_maruyama(&model, &model.edm, 4000, 100, &mut rng, |_| {}).unwrap();
    let fresh = line4(4000, &mut rng);
    let (t_s, t_g, t_f) = pc1_tvds(&z, &fresh, &s, 4, &mut rng);
    // distance of samples from the line: the data's own is 0.05·√3 ≈ 0.087 on average
    let u = [0.5, -0.5, 0.5, 0.5];
    let off: f64 = s
        .chunks(4)
        .map(|p| {
            let t: f64 = p.iter().zip(u).map(|(a, b)| a * b).sum();
            p.iter()
                .zip(u)
                .map(|(a, b)| (a - t * b).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .sum::<f64>()
        / 4000.0;
    println!("line: PC1 TVD diffusion {t_s:.4}, Gaussian {t_g:.4}, floor {t_f:.4}; mean distance from the line {off:.3}");
    // with 4000 points per side the floor is ≈ 0.04–0.05; this small net (1500 steps, 4 s) rounds
    // the uniform marginal's sharp ends and gets ≈ 0.08 (an 8×128 net gets 0.063 in 35 s);
    // the full-size figure is in BENCHMARKS.md (tools/bench_prior.sh)
    assert!(t_s < 0.11, "{t_s}");
    assert!(t_g > 0.12, "{t_g}");
    assert!(t_s < 0.65 * t_g);
    assert!(off < 0.2, "{off}");
}

#[test]
fn trained_denoiser_on_two_modes_samples_and_interpolates_around_the_gap() {
    let b = bimodal();
    let mut rng = StdRng::seed_from_u64(8);
    let z = b.sample(4000, &mut rng);
    let (model, _) = train(&z, 2, &small_cfg(600), |_, _| {}).unwrap();
    let s = euler_maruyama(&model, &model.edm, 4000, 100, &mut rng, |_| {}).unwrap();
    let fresh = b.sample(4000, &mut rng);
    let (t_s, t_g, t_f) = pc1_tvds(&z, &fresh, &s, 2, &mut rng);
    let kde = Kde::new(&z, 2).unwrap();
    let thr = kde.data_quantile(0.01);
    let in_gap = fraction_below(&kde, &s, thr);
    let path = interpolate(
        &model,
        &model.edm,
        &[-2.0, 0.1],
        &[2.0, -0.1],
        60,
        &OdeOptions::default(),
    )
    .unwrap();
    let frac = fraction_below(&kde, &path, thr);
    println!("two modes: PC1 TVD diffusion {t_s:.4}, Gaussian {t_g:.4}, floor {t_f:.4}; samples below threshold {in_gap:.3}; interpolation below threshold {frac:.3}");
    assert!(t_s < 0.08, "{t_s}");
    assert!(t_g > 0.5, "{t_g}");
    assert!(in_gap < 0.05, "{in_gap}");
    // the straight line spends > 40% in the gap (see interpolation_between_modes_avoids_the_gap)
    assert!(frac <= 0.1, "{frac}");
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let mut rng = StdRng::seed_from_u64(9);
    let z = ring(500, &mut rng);
    let mut cfg = TrainConfig {
        nlayers: 2,
        hidden: 16,
        batch: 64,
        ..small_cfg(30)
    };
    let (full, rep_full, st_full) = train_resumable(&z, 2, &cfg, None, |_, _| {}).unwrap();
    cfg.steps = 12;
    let (_, rep_a, st_a) = train_resumable(&z, 2, &cfg, None, |_, _| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.safetensors");
    st_a.save(&p).unwrap();
    cfg.steps = 30;
    let loaded = cryofield::diffusion::model::load_state(&p, &z, 2, &cfg).unwrap();
    assert_eq!(loaded, st_a);
    let (resumed, rep_b, st_b) = train_resumable(&z, 2, &cfg, Some(loaded), |_, _| {}).unwrap();
    let joined: Vec<f64> = rep_a.losses.iter().chain(&rep_b.losses).copied().collect();
    assert_eq!(joined, rep_full.losses);
    assert_eq!(st_b, st_full);
    let x = [0.3, -0.4, 1.0, 2.0];
    assert_eq!(
        full.denoise(&x, &[0.1, 3.0]).unwrap(),
        resumed.denoise(&x, &[0.1, 3.0]).unwrap()
    );
    // a state made on other latents is refused with the file named
    let other = ring(400, &mut rng);
    let err = cryofield::diffusion::model::load_state(&p, &other, 2, &cfg).unwrap_err();
    assert!(err.to_string().contains("state.safetensors"), "{err}");
}
