//! Criterion benches for the linear assignment solvers at the spec's size, 1024 observed points
//! against 1024 model points, uniform in [−1, 1]³, squared distances:
//! - `assignment/cpu/1024/hungarian`: the exact solver on the dense f64 matrix (built outside
//!   the timing). Roofline: O(n³), ≈ n³ = 1.1·10⁹ reduced-cost updates of a few flops.
//! - `…/auction_gauss_seidel`, `…/auction_jacobi_f32`: the ε-scaling auction (ε = 10⁻⁶) with
//!   costs from coordinates on the fly, the CPU default (geometric ε schedule, kd-partition
//!   search: ≈ 2.3·10⁴ bids in 6 phases, each evaluating ≈ 120 columns) and the CUDA kernel's twin
//!   (full scans: bids × m evaluations of C + p, ≈ 9 flops each at dim 3, in 8 branch-free
//!   lanes over structure-of-arrays columns; f64 SSE2 pairs on the default x86-64 target).
//! - Before the criterion groups, `side by side …` lines: 7 alternating runs of the exact
//!   solver and the auction with and without the tree on the same problem, min / median (the
//!   figures in BENCHMARKS.md), for uniform 3-D problems (12 seeds), 2-D with the observed
//!   points upsampled from 512 (the projections' case), 2-D with the model points spread 5×
//!   wider than the observed ones (a sampler's early steps), 2-D uniform and the subunit.
//! - `…/auction_warm`: the same problem after the model points moved by ≤ 10⁻³ (a sampler
//!   step), from the previous solve's prices.
//! - `assignment/cpu/{1024x1024_2d,256x1024_3d}/{hungarian,auction_gauss_seidel}`: the other
//!   sizes the energies solve (projections; subunit against the full model, padded with 768
//!   dummy rows), exact against auction on the same problem.
//! - `assignment/cpu/batch_8x1024/auction_gauss_seidel`: 8 such problems in one batched call
//!   (rayon over problems).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cryofield::assignment::auction::{
    auction_points, auction_points_batch, AuctionParams, AuctionState, Bidding,
};
use cryofield::assignment::linear_sum_assignment;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// The dense n×m matrix of squared distances between rows (n, dim) and cols (m, dim).
fn dense_costs(rows: &[f64], cols: &[f64], n: usize, m: usize, dim: usize) -> Vec<f64> {
    (0..n * m)
        .map(|e| {
            let (i, j) = (e / m, e % m);
            (0..dim)
                .map(|k| (rows[dim * i + k] - cols[dim * j + k]).powi(2))
                .sum()
        })
        .collect()
}

/// Side by side in one process: 7 alternating runs of the exact solver and of the auction with
/// and without the tree search on the same problem; prints min / median of each and the
/// speed-ups (the figures BENCHMARKS.md reports). Returns the dense matrix and its optimum.
fn side_by_side(
    name: &str,
    rows: &[f64],
    cols: &[f64],
    n: usize,
    m: usize,
    dim: usize,
) -> (Vec<f64>, f64) {
    let dense = dense_costs(rows, cols, n, m, dim);
    let opt = linear_sum_assignment(&dense, n, m).unwrap().cost;
    let scan = AuctionParams {
        tree: false,
        ..AuctionParams::default()
    };
    let tree = AuctionParams::default();
    let (mut th, mut tt, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..7 {
        let t = Instant::now();
        std::hint::black_box(linear_sum_assignment(&dense, n, m).unwrap());
        th.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let r = auction_points(rows, cols, n, m, dim, &tree, &mut AuctionState::new()).unwrap();
        tt.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let r2 = auction_points(rows, cols, n, m, dim, &scan, &mut AuctionState::new()).unwrap();
        ts.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r, r2, "{name}: the tree search changed the solve");
        last = Some(r);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let ((h0, h1), (a0, a1), (s0, s1)) = (stats(&mut th), stats(&mut tt), stats(&mut ts));
    let r = last.unwrap();
    println!(
        "side by side {name}: exact {h0:.1} / {h1:.1} ms; auction (tree) {a0:.1} / {a1:.1} ms \
         ({:.1}× by medians); auction (scan) {s0:.1} / {s1:.1} ms ({:.1}×); {} phases, {} bids, \
         cost − optimum {:.1e} (m·ε {:.1e})",
        h1 / a1,
        h1 / s1,
        r.phases,
        r.bids,
        r.assignment.cost - opt,
        m as f64 * r.eps
    );
    (dense, opt)
}

/// k points uniform in [−1, 1]^dim, row-major.
fn uniform(rng: &mut StdRng, k: usize, dim: usize) -> Vec<f64> {
    (0..dim * k).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn assignment(c: &mut Criterion) {
    let n = 1024;
    let mut rng = StdRng::seed_from_u64(0);
    let rows = uniform(&mut rng, n, 3);
    let cols = uniform(&mut rng, n, 3);
    let (dense, opt) = side_by_side("1024x1024_3d", &rows, &cols, n, n, 3);
    let gs = AuctionParams::default();
    let jacobi = AuctionParams {
        bidding: Bidding::Jacobi,
        ..AuctionParams::default()
    };
    let (rows32, cols32): (Vec<f32>, Vec<f32>) = (
        rows.iter().map(|&x| x as f32).collect(),
        cols.iter().map(|&x| x as f32).collect(),
    );
    let mut state = AuctionState::new();
    auction_points(&rows, &cols, n, n, 3, &gs, &mut state).unwrap();
    let moved: Vec<f64> = cols
        .iter()
        .map(|x| x + rng.random_range(-1e-3..1e-3))
        .collect();

    // one solve of each, for the log: phases, bids, rounds and the excess over the optimum
    let runs = [
        (
            "gauss_seidel",
            auction_points(&rows, &cols, n, n, 3, &gs, &mut AuctionState::new()).unwrap(),
        ),
        (
            "jacobi_f32",
            auction_points(&rows32, &cols32, n, n, 3, &jacobi, &mut AuctionState::new()).unwrap(),
        ),
    ];
    for (name, r) in runs {
        println!(
            "auction {name}: {} phases, {} bids, {} rounds, cost − optimum {:.2e} (m·ε {:.2e})",
            r.phases,
            r.bids,
            r.rounds,
            r.assignment.cost - opt,
            n as f64 * r.eps
        );
    }
    let cold = auction_points(&rows, &moved, n, n, 3, &gs, &mut AuctionState::new()).unwrap();
    let warm = auction_points(&rows, &moved, n, n, 3, &gs, &mut state.clone()).unwrap();
    println!(
        "moved ≤ 1e-3: cold {} phases / {} bids, warm {} / {} (warm start used: {})",
        cold.phases, cold.bids, warm.phases, warm.bids, warm.warm
    );

    for seed in 1..12 {
        let mut r = StdRng::seed_from_u64(seed);
        let (a, b) = (uniform(&mut r, n, 3), uniform(&mut r, n, 3));
        side_by_side(&format!("1024x1024_3d seed {seed}"), &a, &b, n, n, 3);
    }
    {
        // projections: 2-D, the observed points upsampled from 512 distinct ones
        let mut r = StdRng::seed_from_u64(5);
        let base = uniform(&mut r, 512, 2);
        let mut up = base.clone();
        for _ in 512..n {
            let k = r.random_range(0..512);
            up.extend_from_slice(&base[2 * k..2 * k + 2]);
        }
        let cols2 = uniform(&mut r, n, 2);
        side_by_side("1024x1024_2d upsampled from 512", &up, &cols2, n, n, 2);
        // a sampler's early steps: model points spread 5× wider than the observed ones
        let wide: Vec<f64> = cols2.iter().map(|x| 5.0 * x).collect();
        side_by_side(
            "1024x1024_2d columns spread 5x",
            &uniform(&mut r, n, 2),
            &wide,
            n,
            n,
            2,
        );
    }

    let mut g = c.benchmark_group("assignment/cpu/1024");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(1));
    g.bench_function("hungarian", |b| {
        b.iter(|| linear_sum_assignment(&dense, n, n).unwrap())
    });
    g.bench_function("auction_gauss_seidel", |b| {
        b.iter(|| auction_points(&rows, &cols, n, n, 3, &gs, &mut AuctionState::new()).unwrap())
    });
    g.bench_function("auction_jacobi_f32", |b| {
        b.iter(|| {
            auction_points(&rows32, &cols32, n, n, 3, &jacobi, &mut AuctionState::new()).unwrap()
        })
    });
    g.bench_function("auction_warm", |b| {
        b.iter(|| auction_points(&rows, &moved, n, n, 3, &gs, &mut state.clone()).unwrap())
    });
    g.finish();

    for (name, n, m, dim) in [
        ("1024x1024_2d", 1024, 1024, 2),
        ("256x1024_3d", 256, 1024, 3),
    ] {
        let rows = uniform(&mut rng, n, dim);
        let cols = uniform(&mut rng, m, dim);
        let (dense, opt) = side_by_side(name, &rows, &cols, n, m, dim);
        let r = auction_points(&rows, &cols, n, m, dim, &gs, &mut AuctionState::new()).unwrap();
        println!(
            "{name} auction gauss_seidel: {} phases, {} bids, cost − optimum {:.2e} (m·ε {:.2e})",
            r.phases,
            r.bids,
            r.assignment.cost - opt,
            m as f64 * r.eps
        );
        let mut g = c.benchmark_group(format!("assignment/cpu/{name}"));
        g.sample_size(10).measurement_time(Duration::from_secs(3));
        g.bench_function("hungarian", |b| {
            b.iter(|| linear_sum_assignment(&dense, n, m).unwrap())
        });
        g.bench_function("auction_gauss_seidel", |b| {
            b.iter(|| {
                auction_points(&rows, &cols, n, m, dim, &gs, &mut AuctionState::new()).unwrap()
            })
        });
        g.finish();
    }

    let nb = 8;
    let brows = uniform(&mut rng, nb * n, 3);
    let bcols = uniform(&mut rng, nb * n, 3);
    let mut g = c.benchmark_group("assignment/cpu/batch_8x1024");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(nb as u64));
    g.bench_function("auction_gauss_seidel", |b| {
        b.iter(|| {
            let mut states = vec![AuctionState::new(); nb];
            auction_points_batch(&brows, &bcols, nb, n, n, 3, &gs, &mut states).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, assignment);
criterion_main!(benches);
