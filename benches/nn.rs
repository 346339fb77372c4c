//! Criterion benches for the CPU numerical core: groups named `op/backend/size`, throughput in
//! FLOPs (criterion's "elements"), so Gelem/s reads as GFLOP/s.
//!
//! - `gemm/cpu-f32/*`: the machine's GEMM peak (largest square-ish f32 GEMM) and the MLP's
//!   GEMM shapes; roofline = 2·m·k·n FLOPs. Later issues report "% of peak" against
//!   `gemm/cpu-f32/2048x2048x2048`.
//! - `mlp_fwd_bwd/cpu-f32/*`: one training step of the decoder's coordinate network (geom_lowf
//!   PE, `ResidLinearMLP`) on B·N lattice points; roofline = the GEMM FLOPs of forward
//!   (2N·Σ in·out) plus backward (dW for every layer, dX for all but the first: ≈ 2× forward).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cryofield::autodiff::{ParamStore, Tape, Tensor};
use cryofield::backend::cpu::CpuBackend;
use cryofield::backend::{Activation, Backend, MatRef};
use cryofield::nn::{Mlp, PeKind, PositionalEncoding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Roofline: 2·m·k·n FLOPs per call. B is stored like a torch weight (n, k) and used
/// transposed, as in the MLP's x·Wᵀ.
fn gemm(c: &mut Criterion) {
    let be = CpuBackend::<f32>::new();
    let mut g = c.benchmark_group("gemm/cpu-f32");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for (m, k, n) in [
        (2048, 2048, 2048),
        (24000, 256, 256),
        (24000, 1024, 1024),
        (24000, 256, 2),
        (8, 1024, 1024),
    ] {
        let a = be.upload(&vec![0.5f32; m * k]).unwrap();
        let b = be.upload(&vec![0.25f32; k * n]).unwrap();
        let mut out = be.zeros(m * n).unwrap();
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("{m}x{k}x{n}")), |bch| {
            bch.iter(|| {
                let ma = MatRef {
                    buf: &a,
                    rows: m,
                    cols: k,
                    trans: false,
                };
                let mb = MatRef {
                    buf: &b,
                    rows: k,
                    cols: n,
                    trans: false,
                };
                be.gemm(1.0, ma, mb, 0.0, &mut out).unwrap()
            })
        });
    }
    g.finish();
}

/// Roofline: forward 2N·Σ in·out, backward ≈ 2× that (dW all layers, dX all but the first).
fn mlp_fwd_bwd(c: &mut Criterion) {
    let be = CpuBackend::<f32>::new();
    let mut g = c.benchmark_group("mlp_fwd_bwd/cpu-f32");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    // (lattice points, hidden, hidden layers): VAE batch 8 × ~3000 masked pixels at D = 64.
    for (n, hidden, nlayers) in [(24000, 256, 3), (6000, 1024, 3)] {
        let mut rng = StdRng::seed_from_u64(0);
        let pe = PositionalEncoding::new(PeKind::GeomLowf, 64, None, 8, None, &mut rng).unwrap();
        let mut store = ParamStore::new();
        let mlp = Mlp::resid(
            &be,
            &mut store,
            "dec",
            pe.out_dim(),
            nlayers,
            hidden,
            2,
            Activation::Relu,
            &mut rng,
        )
        .unwrap();
        let coords: Vec<f32> = (0..n * 11).map(|_| rng.random_range(-0.5..0.5)).collect();
        let target: Vec<f32> = (0..n * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
        let fwd: usize = mlp.layers.iter().map(|l| l.n_in * l.n_out).sum::<usize>() * 2 * n;
        let first = mlp.layers[0].n_in * mlp.layers[0].n_out * 2 * n;
        g.throughput(Throughput::Elements((3 * fwd - first) as u64));
        g.bench_function(
            BenchmarkId::from_parameter(format!("{n}x{}-{hidden}x{nlayers}-2", pe.out_dim())),
            |b| {
                b.iter(|| {
                    let mut t = Tape::new(&be, &store);
                    let c = t.constant(Tensor::from_slice(&be, &coords, &[n, 11]).unwrap());
                    let y = t.constant(Tensor::from_slice(&be, &target, &[n, 2]).unwrap());
                    let f = pe.forward(&mut t, c).unwrap();
                    let p = mlp.forward(&mut t, f).unwrap();
                    let l = t.mse(p, y).unwrap();
                    t.backward(l).unwrap().recycle(&be);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, gemm, mlp_fwd_bwd);
criterion_main!(benches);
