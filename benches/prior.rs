//! Criterion benches for the latent diffusion prior (paper defaults: 16 × 128 residual MLP, SiLU,
//! batch 1024, zdim 8): `prior/cpu-f32/train_step` (one Adam step on a batch, throughput in
//! latents), `prior/cpu-f32/denoise_1000` (one denoiser call on 1000 latents: the cost of one
//! sampler step), `prior/cpu-f32/em_1000x50` (1000 samples × 50 Euler–Maruyama steps).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cryofield::diffusion::model::{train, TrainConfig};
use cryofield::diffusion::sample::euler_maruyama;
use cryofield::diffusion::Denoiser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn latents(n: usize, d: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(0);
    (0..n * d)
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect()
}

fn prior(c: &mut Criterion) {
    let d = 8;
    let z = latents(4096, d);
    let mut g = c.benchmark_group("prior/cpu-f32");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    // training: 5 steps per iteration (model construction is outside the timed steps' bulk)
    let cfg = TrainConfig {
        steps: 5,
        ..TrainConfig::default()
    };
    g.throughput(Throughput::Elements((cfg.batch * cfg.steps) as u64));
    g.bench_function("train_step", |b| {
        b.iter(|| train(&z, d, &cfg, |_, _| {}).unwrap())
    });
    let (model, _) = train(
        &z,
        d,
        &TrainConfig {
            steps: 1,
            ..TrainConfig::default()
        },
        |_, _| {},
    )
    .unwrap();
    let x = latents(1000, d);
    let sigma = vec![1.0; 1000];
    g.throughput(Throughput::Elements(1000));
    g.bench_function("denoise_1000", |b| {
        b.iter(|| model.denoise(&x, &sigma).unwrap())
    });
    g.throughput(Throughput::Elements(1000 * 50));
    g.bench_function("em_1000x50", |b| {
        let mut rng = StdRng::seed_from_u64(1);
        b.iter(|| euler_maruyama(&model, &model.edm, 1000, 50, &mut rng, |_| {}).unwrap())
    });
    g.finish();
}

criterion_group!(benches, prior);
criterion_main!(benches);
