//! Issue 25: the point-cloud energies (vs brute force and finite differences), the exact GMM
//! cloud prior's VJP, Algorithm 1's counts, and DPS vs ML with an exact prior over templates.

use cryofield::assignment::{AuctionParams, AuctionState};
use cryofield::pointcloud::data::{Observations, Projection};
use cryofield::pointcloud::dps::{
    dps, ml, time_grid, CloudPrior, DpsConfig, GmmCloudPrior, Integrator, LrSchedule, MlConfig,
};
use cryofield::pointcloud::energy::{EnergyModel, Solver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A Haar-random rotation (row-major) from a random unit quaternion.
fn random_rotation(r: &mut StdRng) -> [f64; 9] {
    let q: Vec<f64> = (0..4).map(|_| StandardNormal.sample(r)).collect();
    let nq = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (w, x, y, z) = (q[0] / nq, q[1] / nq, q[2] / nq, q[3] / nq);
    [
        1.0 - 2.0 * (y * y + z * z),
        2.0 * (x * y - w * z),
        2.0 * (x * z + w * y),
        2.0 * (x * y + w * z),
        1.0 - 2.0 * (x * x + z * z),
        2.0 * (y * z - w * x),
        2.0 * (x * z - w * y),
        2.0 * (y * z + w * x),
        1.0 - 2.0 * (x * x + y * y),
    ]
}

fn project(x: &[f64], rot: &[f64; 9], idx: &[usize]) -> Vec<f64> {
    idx.iter()
        .flat_map(|&j| {
            let p = &x[3 * j..3 * j + 3];
            (0..2).map(move |a| (0..3).map(|k| p[k] * rot[3 * k + a]).sum::<f64>())
        })
        .collect()
}

fn sample_idx(r: &mut StdRng, n: usize, m: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = r.random_range(i..n);
        idx.swap(i, j);
    }
    idx.truncate(m);
    idx
}

fn uniform_cloud(r: &mut StdRng, n: usize) -> Vec<f64> {
    (0..3 * n).map(|_| r.random_range(-1.0..1.0)).collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for k in 0..n {
            let mut q = p.clone();
            q.insert(k, n - 1);
            out.push(q);
        }
    }
    out
}

fn sq(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
}

/// min over bijections/injections of Σ‖rows_i − cols_σ(i)‖² by enumeration (rows ≤ cols ≤ 7).
fn brute_match(rows: &[f64], cols: &[f64], dim: usize) -> f64 {
    let (r, n) = (rows.len() / dim, cols.len() / dim);
    permutations(n)
        .iter()
        .map(|p| {
            (0..r)
                .map(|i| {
                    sq(
                        &rows[i * dim..(i + 1) * dim],
                        &cols[p[i] * dim..(p[i] + 1) * dim],
                    )
                })
                .sum::<f64>()
        })
        .fold(f64::INFINITY, f64::min)
}

fn solvers() -> Vec<Solver> {
    vec![
        Solver::Exact,
        Solver::Auction(AuctionParams {
            eps_final: 1e-9,
            ..Default::default()
        }),
    ]
}

#[test]
fn energies_equal_brute_force_minima() {
    let mut r = rng(3);
    for trial in 0..20 {
        let n = 3 + trial % 5; // 3..=7
        let x = uniform_cloud(&mut r, n);
        let truth = uniform_cloud(&mut r, n);
        let rot = random_rotation(&mut r);
        let all: Vec<usize> = (0..n).collect();
        let l = 1 + trial % n;
        let su_idx = sample_idx(&mut r, n, l);
        let su: Vec<f64> = su_idx
            .iter()
            .flat_map(|&j| truth[3 * j..3 * j + 3].to_vec())
            .collect();
        let obs = Observations {
            proj: vec![Projection {
                rot,
                points: project(&truth, &rot, &all),
            }],
            cg: Some(truth.clone()),
            subunit: Some(su.clone()),
            n_points: n,
            frame: None,
        };
        let em = EnergyModel::new(&obs, n, trial as u64).unwrap();
        let px = project(&x, &rot, &all);
        let want = [
            brute_match(&obs.proj[0].points, &px, 2),
            brute_match(&truth, &x, 3),
            brute_match(&su, &x, 3),
        ];
        for s in solvers() {
            let mut st = vec![AuctionState::new(); 3];
            let e = em.energy(&x, &s, &mut st).unwrap();
            for (k, (got, w)) in e.items.iter().zip(&want).enumerate() {
                assert!(
                    (got - w).abs() <= 1e-7 * (1.0 + w),
                    "trial {trial} {s:?} item {k}: {got} vs brute force {w}"
                );
            }
            assert!((e.total - want.iter().sum::<f64>() / 3.0).abs() < 1e-7);
        }
    }
}

/// f64 central differences of E at a generic cloud (the matching is locally constant).
#[test]
fn energy_gradients_match_finite_differences() {
    let mut r = rng(11);
    let (n, m) = (24, 16);
    let truth = uniform_cloud(&mut r, n);
    let x = uniform_cloud(&mut r, n);
    let mut proj = Vec::new();
    for _ in 0..2 {
        let rot = random_rotation(&mut r);
        let idx = sample_idx(&mut r, n, m);
        proj.push(Projection {
            rot,
            points: project(&truth, &rot, &idx),
        });
    }
    let cg: Vec<f64> = truth[..3 * 10].to_vec();
    let su: Vec<f64> = truth[3 * 5..3 * 17].to_vec();
    let obs = Observations {
        proj,
        cg: Some(cg),
        subunit: Some(su),
        n_points: n,
        frame: None,
    };
    let em = EnergyModel::new(&obs, n, 5).unwrap();
    let e = |x: &[f64]| {
        let mut st = vec![AuctionState::new(); 4];
        em.energy(x, &Solver::Exact, &mut st).unwrap()
    };
    let e0 = e(&x);
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for k in 0..3 * n {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[k] += h;
        xm[k] -= h;
        let fd = (e(&xp).total - e(&xm).total) / (2.0 * h);
        let rel = (fd - e0.grad[k]).abs() / (1e-3 + e0.grad[k].abs());
        worst = worst.max(rel);
    }
    assert!(worst < 1e-6, "worst relative gradient error {worst:e}");
}

#[test]
fn gmm_prior_vjp_matches_finite_differences() {
    let mut r = rng(7);
    let n = 5;
    let templates: Vec<f64> = (0..3).flat_map(|_| uniform_cloud(&mut r, n)).collect();
    let p = GmmCloudPrior::new(templates, n, 0.3).unwrap();
    let x: Vec<f64> = (0..2 * 3 * n).map(|_| r.random_range(-1.0..1.0)).collect();
    let t = [0.4, 0.9];
    let v: Vec<f64> = (0..x.len()).map(|_| r.random_range(-1.0..1.0)).collect();
    let (dn, g) = p.denoise_vjp(&x, &t, &mut |_| Ok(v.clone())).unwrap();
    assert_eq!(dn, p.denoise(&x, &t).unwrap());
    let h = 1e-6;
    for k in 0..x.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[k] += h;
        xm[k] -= h;
        let (dp, dm) = (p.denoise(&xp, &t).unwrap(), p.denoise(&xm, &t).unwrap());
        let fd: f64 = v
            .iter()
            .zip(dp.iter().zip(&dm))
            .map(|(vi, (a, b))| vi * (a - b) / (2.0 * h))
            .sum();
        assert!(
            (fd - g[k]).abs() < 1e-7 * (1.0 + fd.abs()),
            "component {k}: VJP {} vs FD {fd}",
            g[k]
        );
    }
}

#[test]
fn grid_and_counts_of_algorithm_1() {
    let ts = time_grid(40, 0.002, 1.0, 3.0);
    assert_eq!(ts.len(), 41);
    assert!((ts[0] - 1.0).abs() < 1e-15 && (ts[39] - 0.002).abs() < 1e-15 && ts[40] == 0.0);
    assert!(ts.windows(2).all(|w| w[0] > w[1]));
    let mut r = rng(1);
    let n = 8;
    let truth = uniform_cloud(&mut r, n);
    let rot = random_rotation(&mut r);
    let obs = Observations {
        proj: vec![Projection {
            rot,
            points: project(&truth, &rot, &[0, 1, 2, 3]),
        }],
        cg: Some(truth.clone()),
        subunit: None,
        n_points: n,
        frame: None,
    };
    let em = EnergyModel::new(&obs, n, 0).unwrap();
    let prior = GmmCloudPrior::new(truth.clone(), n, 0.1).unwrap();
    for (steps, integ, nfe) in [
        (40, Integrator::EmCorr, 79),
        (80, Integrator::EmCorr, 159),
        (40, Integrator::Em, 40),
        (40, Integrator::Ode, 40),
    ] {
        let cfg = DpsConfig {
            steps,
            integrator: integ,
            ..Default::default()
        };
        let b = 3;
        let mut calls = 0;
        let out = dps(&prior, Some(&em), &cfg, b, 9, |_| calls += 1).unwrap();
        assert_eq!(calls, steps);
        assert_eq!(out.nfe, nfe, "{integ:?} with {steps} steps");
        assert_eq!(
            out.laps,
            (nfe * b * 2) as u64,
            "LAPs = NFE × samples × items"
        );
        assert_eq!(out.trace.len(), steps);
    }
}

#[test]
fn cosine_schedule_runs_from_lr_to_its_final_lr() {
    let s: LrSchedule = "cosine:1e-4".parse().unwrap();
    assert_eq!(s, LrSchedule::Cosine { final_lr: 1e-4 });
    assert_eq!(s.at(0.1, 1, 100), 0.1);
    assert!((s.at(0.1, 100, 100) - 1e-4).abs() < 1e-15);
    assert!((1..100).all(|k| s.at(0.1, k + 1, 100) < s.at(0.1, k, 100)));
    assert_eq!(LrSchedule::Constant.at(0.1, 100, 100), 0.1);
    for bad in ["cosine", "cosine:0", "cosine:-1", "linear:1e-4"] {
        assert!(bad.parse::<LrSchedule>().is_err(), "{bad}");
    }
}

/// The projections of the Table 1 case with template 1 as the truth (seed 1001), peak step 0.3,
/// 1000 steps: at a constant step Adam does not settle (its last iterate lies far above the
/// lowest E it passed in some samples: 4 of 10 here); with the cosine decay to 10⁻⁴ every
/// sample ends at (within 1% of) the lowest E of its run, and the mean final E is lower.
#[test]
fn ml_cosine_schedule_settles_where_a_constant_step_does_not() {
    let t = hinge_templates();
    let mut r = rng(1001);
    let obs = proj_obs(&t[1], &mut r);
    let em = EnergyModel::new(&obs, N, 1001).unwrap();
    let run = |schedule| {
        let cfg = MlConfig {
            steps: 1000,
            lr: 0.3,
            schedule,
            ..Default::default()
        };
        let m = ml(&em, &cfg, 10, 1001, |_| {}).unwrap();
        // (final E, lowest E along the run) per sample
        (0..10)
            .map(|i| {
                let low = m
                    .trace
                    .iter()
                    .map(|row| row[i])
                    .fold(f64::INFINITY, f64::min);
                (m.energy[i], low.min(m.energy[i]))
            })
            .collect::<Vec<_>>()
    };
    let constant = run(LrSchedule::Constant);
    let cosine = run(LrSchedule::Cosine { final_lr: 1e-4 });
    eprintln!("(final E, lowest E): constant step {constant:.3?}; cosine {cosine:.3?}");
    let unsettled = |v: &[(f64, f64)]| v.iter().filter(|(f, low)| *f > 1.01 * low).count();
    assert_eq!(unsettled(&cosine), 0, "cosine: {cosine:?}");
    assert!(unsettled(&constant) >= 2, "constant: {constant:?}");
    let mean_final = |v: &[(f64, f64)]| v.iter().map(|p| p.0).sum::<f64>() / v.len() as f64;
    assert!(mean_final(&cosine) < mean_final(&constant));
}

/// Restart 0 is the single-start run (same seed): with R starts no sample ends above it, some
/// end strictly below, and the cost is R times the assignments.
#[test]
fn ml_restarts_never_end_above_restart_0() {
    let t = hinge_templates();
    let mut r = rng(77);
    let obs = proj_obs(&t[2], &mut r);
    let em = EnergyModel::new(&obs, N, 77).unwrap();
    let run = |restarts| {
        let cfg = MlConfig {
            steps: 200,
            restarts,
            ..Default::default()
        };
        ml(&em, &cfg, 6, 3, |_| {}).unwrap()
    };
    let (one, four) = (run(1), run(4));
    eprintln!(
        "final E, 1 start {:?}; best of 4 {:?}",
        one.energy, four.energy
    );
    assert_eq!(four.laps, 4 * one.laps);
    assert_eq!(four.trace.len(), 200);
    for (i, (a, b)) in four.energy.iter().zip(&one.energy).enumerate() {
        assert!(a <= b, "sample {i}: best of 4 starts {a} > restart 0's {b}");
        if a == b {
            assert_eq!(
                &four.clouds[i * 3 * N..(i + 1) * 3 * N],
                &one.clouds[i * 3 * N..(i + 1) * 3 * N]
            );
        }
    }
    assert!(four.energy.iter().zip(&one.energy).any(|(a, b)| a < b));
}

// ---------------------------------------------------------------------------------------------
// DPS vs ML with an exact prior over five template clouds (spec §7 item 5)

const N: usize = 64;

/// Five conformations of one two-domain cloud of N = 64 points: domain A (32 points on a helix
/// along −x) is fixed, domain B (32 points on a helix along +x) turns about the z axis through
/// the hinge at the origin by 0°, 35°, 70°, 105°, 140° (below 180°, where B would lie
/// over A and a subunit could no longer tell the conformations apart).
fn hinge_templates() -> Vec<Vec<f64>> {
    let helix = |k: usize, dir: f64| {
        let u = k as f64 / 31.0;
        let a = 3.0 * std::f64::consts::TAU * u;
        [dir * (0.05 + 0.85 * u), 0.25 * a.cos(), 0.25 * a.sin()]
    };
    (0..5)
        .map(|c| {
            let th = (35.0 * c as f64).to_radians();
            (0..N)
                .flat_map(|k| {
                    if k < 32 {
                        helix(k, -1.0)
                    } else {
                        let p = helix(k - 32, 1.0);
                        [
                            th.cos() * p[0] - th.sin() * p[1],
                            th.sin() * p[0] + th.cos() * p[1],
                            p[2],
                        ]
                    }
                })
                .collect()
        })
        .collect()
}

/// CD and exact EMD (`pointcloud::metrics`, tested against brute force in
/// tests/pointcloud_metrics.rs).
fn chamfer(a: &[f64], b: &[f64]) -> f64 {
    cryofield::pointcloud::metrics::chamfer(a, b).unwrap()
}

fn emd(a: &[f64], b: &[f64]) -> f64 {
    cryofield::pointcloud::metrics::emd(a, b).unwrap()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Means over one instance's 10 samples.
struct Outcome {
    dps_cd: f64,
    dps_emd: f64,
    dps_e: f64,
    ml_cd: f64,
    ml_emd: f64,
    ml_e: f64,
    hits: usize,
}

/// Observe template `truth_k` with `make`, run 10 DPS samples (prior: the five templates with
/// std 0.2; N = 80 steps as in the paper's Fig. 2, t_max = 1, ρ = 3, β = 1/t above 0.15,
/// else 0) and 10 ML fits, and score both against the truth. ML: Adam from uniform clouds,
/// 1000 steps, one start, peak step 0.3 decayed by a cosine to 10⁻⁴: the large early steps let
/// points change partners, the decay lets Adam settle (the paper's constant 0.01 stops in worse
/// matchings from projections: mean E 0.216 against DPS's 0.134; BENCHMARKS.md).
fn run_case(
    make: &dyn Fn(&[f64], &mut StdRng) -> Observations,
    alpha: f64,
    truth_k: usize,
) -> Outcome {
    let seed = 1000 + truth_k as u64;
    let mut r = rng(seed);
    let t = hinge_templates();
    let prior = GmmCloudPrior::new(t.concat(), N, 0.2).unwrap();
    let obs = make(&t[truth_k], &mut r);
    let em = EnergyModel::new(&obs, N, seed).unwrap();
    let b = 10;
    let cfg = DpsConfig {
        steps: 80,
        alpha,
        beta: "1/t>0.15:0".parse().unwrap(),
        ..Default::default()
    };
    let d = dps(&prior, Some(&em), &cfg, b, seed, |_| {}).unwrap();
    let mlc = MlConfig {
        steps: 1000,
        lr: 0.3,
        schedule: LrSchedule::Cosine { final_lr: 1e-4 },
        ..Default::default()
    };
    let m = ml(&em, &mlc, b, seed, |_| {}).unwrap();
    let score = |clouds: &[f64]| -> (f64, f64, usize) {
        let (mut cd, mut em_, mut hits) = (Vec::new(), Vec::new(), 0);
        for c in clouds.chunks(3 * N) {
            cd.push(chamfer(c, &t[truth_k]));
            em_.push(emd(c, &t[truth_k]));
            let best = (0..t.len())
                .min_by(|&a, &b| chamfer(c, &t[a]).total_cmp(&chamfer(c, &t[b])))
                .unwrap();
            hits += (best == truth_k) as usize;
        }
        (mean(&cd), mean(&em_), hits)
    };
    let (dps_cd, dps_emd, hits) = score(&d.clouds);
    let (ml_cd, ml_emd, _) = score(&m.clouds);
    Outcome {
        dps_cd,
        dps_emd,
        dps_e: mean(&d.energy),
        ml_cd,
        ml_emd,
        ml_e: mean(&m.energy),
        hits,
    }
}

/// Two projections of 32 of the 64 points each (Haar rotations).
fn proj_obs(truth: &[f64], r: &mut StdRng) -> Observations {
    let proj = (0..2)
        .map(|_| {
            let rot = random_rotation(r);
            let idx = sample_idx(r, N, 32);
            Projection {
                rot,
                points: project(truth, &rot, &idx),
            }
        })
        .collect();
    Observations {
        proj,
        cg: None,
        subunit: None,
        n_points: N,
        frame: None,
    }
}

/// An 8-point coarse map: the means of consecutive 8-point groups along the chain.
fn cg_obs(truth: &[f64], _r: &mut StdRng) -> Observations {
    let cg = (0..8)
        .flat_map(|g| {
            (0..3).map(move |k| (0..8).map(|i| truth[3 * (g * 8 + i) + k]).sum::<f64>() / 8.0)
        })
        .collect();
    Observations {
        proj: vec![],
        cg: Some(cg),
        subunit: None,
        n_points: N,
        frame: None,
    }
}

/// The subunit: domain B (points 32..64).
fn su_obs(truth: &[f64], _r: &mut StdRng) -> Observations {
    Observations {
        proj: vec![],
        cg: None,
        subunit: Some(truth[3 * 32..].to_vec()),
        n_points: N,
        frame: None,
    }
}

/// Five instances (each template once the truth) × 10 samples: the true template is the nearest
/// (by CD) in ≥ 90% of the DPS samples, DPS has lower CD and EMD than ML (means over the
/// instances, as Table 1 reports them), and, where `ml_energy_no_higher`, ML's mean energy over
/// the instances is no higher than DPS's (Table 1's pattern: ML fits the data as well, with the
/// wrong shape).
fn table1_pattern(
    name: &str,
    make: &dyn Fn(&[f64], &mut StdRng) -> Observations,
    alpha: f64,
    ml_energy_no_higher: bool,
) {
    let (mut de, mut me, mut hits) = (Vec::new(), Vec::new(), 0);
    let (mut cd, mut emd_) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for k in 0..5 {
        let o = run_case(make, alpha, k);
        eprintln!(
            "{name}, template {k}: recovered {}/10; DPS CD {:.4} EMD {:.4} E {:.4} | ML CD {:.4} EMD {:.4} E {:.4}",
            o.hits, o.dps_cd, o.dps_emd, o.dps_e, o.ml_cd, o.ml_emd, o.ml_e
        );
        cd.0.push(o.dps_cd);
        cd.1.push(o.ml_cd);
        emd_.0.push(o.dps_emd);
        emd_.1.push(o.ml_emd);
        hits += o.hits;
        de.push(o.dps_e);
        me.push(o.ml_e);
    }
    let (de, me) = (mean(&de), mean(&me));
    eprintln!("{name}: true template in {hits}/50 samples; mean E: DPS {de:.4}, ML {me:.4}");
    let (dc, mc, dm, mm) = (mean(&cd.0), mean(&cd.1), mean(&emd_.0), mean(&emd_.1));
    eprintln!("{name}: mean CD DPS {dc:.4} ML {mc:.4}; mean EMD DPS {dm:.4} ML {mm:.4}");
    assert!(hits >= 45, "{name}: true template in {hits}/50 samples");
    assert!(dc < mc, "{name}: mean CD DPS {dc} ≥ ML {mc}");
    assert!(dm < mm, "{name}: mean EMD DPS {dm} ≥ ML {mm}");
    if ml_energy_no_higher {
        assert!(me <= de, "{name}: ML's mean energy {me} > DPS's {de}");
    }
}

#[test]
fn dps_with_exact_prior_beats_ml_from_projections() {
    // ML (peak step 0.3, cosine decay) ends below DPS's energy; with the paper's constant step
    // 0.01 it did not (0.216 vs 0.134), stuck in worse matchings. The energy's global minimum
    // here is about 0.064 (BENCHMARKS.md), below both.
    table1_pattern("2 projections × 32 points", &proj_obs, 300.0, true);
}

#[test]
fn dps_with_exact_prior_beats_ml_from_a_coarse_map() {
    table1_pattern("8-point coarse map", &cg_obs, 30.0, true);
}

#[test]
fn dps_with_exact_prior_beats_ml_from_a_subunit() {
    table1_pattern("32-point subunit", &su_obs, 100.0, true);
}
