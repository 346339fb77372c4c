//! Criterion benches for `train-vae` at the issue-4 setting (D = 64, zdim 8, batch 8, gaussian
//! PE, fourier domain, relu, enc/dec ResidLinearMLP h×3 for h = 256 and 1024). Groups
//! `op/backend/size`, throughput in FLOPs (criterion's "elements": Gelem/s reads as GFLOP/s).
//!
//! - `gemm_peak/cpu-f32/2048x2048x2048`: our f32 GEMM (matrixmultiply) on 2·2048³ FLOPs.
//!   `tools/bench_train_vae.sh` measures PyTorch's (oneDNN) on the same product in the same run
//!   and takes "% of peak" of the higher of the two (oneDNN's, so far: ~1.4× in f32, ~2.4× in
//!   bf16).
//! - `decoder_fwd_bwd/cpu/<h>x3`: the fused decoder (`Tape::decode_rotated`) on the masked
//!   lattice of B = 8 rotated images with latents, CTF-weighted MSE, backward into the weights
//!   and z. Roofline (GEMMs only), R = ⌈P/2⌉ rows per image, W = 2·3·(D/2) + zdim:
//!   forward Fd = 2·B·R·(W·h + 3h² + 2h); backward = Fd (dW) + 2·B·R·(3h² + 2h) (dX of the
//!   hidden/output layers) + 2·B·R·h·zdim (the z columns of the first layer's dX).
//! - `encoder/cpu/<h>x3`: encoder forward + backward on B = 8 masked images (Q = P inputs).
//!   Roofline: forward Fe = 2·B·(Q·h + 3h² + 2z·h); backward = Fe + 2·B·(3h² + 2z·h).
//! - `train_step/cpu/<h>x3`: one full step (encoder, reparameterization, decoder, loss with KL,
//!   backward, Adam) — what an epoch does N/B times. Roofline: the sum of the two above.
//!   `train_step/cpu-mixed/<h>x3`: the same with the MLP GEMMs in bf16 (AMX tiles or AVX-512
//!   BF16, `--amp`).
//! - `gemm_peak/cpu-bf16/2048x2048x2048`: our bf16 GEMM (AMX tiles or AVX-512 BF16) on the same
//!   product (see the f32 peak for the denominator of "% of peak").
//! - `gemm_layer/{cpu-f32,cpu-bf16}/<h>`: the three GEMMs of one hidden layer at the
//!   training shape.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cryofield::autodiff::{ParamStore, Tape, Tensor};
use cryofield::backend::cpu::{amx, gemm, CpuBackend};
use cryofield::backend::{Activation, Backend, Domain, MatRef};
use cryofield::fourier::lattice::Lattice;
use cryofield::model::vae::{gen_loss, reparameterize, vae_loss, KlWeight};
use cryofield::model::{Decoder, DecoderConfig, EncodeMode, Encoder};
use cryofield::nn::{Adam, PeKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

const D: usize = 64;
const ZDIM: usize = 8;
const BATCH: usize = 8;
const LAYERS: usize = 3;
const SIZES: [usize; 2] = [256, 1024];

type Be = CpuBackend<f32>;

/// The model, the masked lattice and one random batch.
struct Setup {
    be: Be,
    store: ParamStore<Be>,
    enc: Encoder,
    dec: Decoder,
    /// Masked lattice coordinates (P, 3).
    coords: Vec<f32>,
    p: usize,
    /// Encoder input (B, Q), rotations (B, 9), data and CTF (B, P), ε (B, zdim), z (B, zdim).
    x: Vec<f32>,
    rot: Vec<f32>,
    y: Vec<f32>,
    ctf: Vec<f32>,
    eps: Vec<f32>,
    z: Vec<f32>,
}

fn rotation(rng: &mut StdRng) -> [f32; 9] {
    // A random rotation from a random unit quaternion.
    let mut q = [0f32; 4];
    q.iter_mut().for_each(|v| *v = rng.random_range(-1.0..1.0));
    let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
    let [w, x, y, z] = q.map(|v| v / n);
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

fn setup(h: usize) -> Setup {
    let be = Be::new();
    let mut rng = StdRng::seed_from_u64(0);
    let lattice = Lattice::for_image(D, true).unwrap();
    let mask = lattice.circular_mask((D / 2) as f32).unwrap();
    let idx: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
    let coords: Vec<f32> = idx.iter().flat_map(|&i| lattice.coords()[i]).collect();
    let p = idx.len();
    let mut store = ParamStore::new();
    let enc = Encoder::new(
        &be,
        &mut store,
        EncodeMode::Resid,
        p,
        LAYERS,
        h,
        ZDIM,
        ZDIM,
        Activation::Relu,
        &mut rng,
    )
    .unwrap();
    let cfg = DecoderConfig {
        d: D,
        layers: LAYERS,
        dim: h,
        domain: Domain::Fourier,
        pe: PeKind::Gaussian,
        pe_dim: None,
        feat_sigma: 0.5,
        activation: Activation::Relu,
        zdim: ZDIM,
    };
    let dec = Decoder::new(&be, &mut store, "decoder.", &cfg, &mut rng).unwrap();
    let mut r =
        |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
    let (x, y, ctf, eps, z) = (
        r(BATCH * p, 1.0),
        r(BATCH * p, 1.0),
        r(BATCH * p, 1.0),
        r(BATCH * ZDIM, 1.0),
        r(BATCH * ZDIM, 1.0),
    );
    let mut rng = StdRng::seed_from_u64(1);
    let rot: Vec<f32> = (0..BATCH).flat_map(|_| rotation(&mut rng)).collect();
    Setup {
        be,
        store,
        enc,
        dec,
        coords,
        p,
        x,
        rot,
        y,
        ctf,
        eps,
        z,
    }
}

/// GEMM FLOPs per batch: (encoder fwd+bwd, decoder fwd+bwd), see the module doc.
fn flops(s: &Setup, h: usize) -> (u64, u64) {
    let (b, q, r, l, z) = (BATCH, s.p, s.p.div_ceil(2), LAYERS, ZDIM);
    let w = s.dec.mlp.layers[0].n_in;
    let fe = 2 * b * (q * h + l * h * h + 2 * z * h);
    let enc = 2 * fe + 2 * b * (l * h * h + 2 * z * h);
    let fd = 2 * b * r * (w * h + l * h * h + 2 * h);
    let dec = 2 * fd + 2 * b * r * (l * h * h + 2 * h) + 2 * b * r * h * z;
    (enc as u64, dec as u64)
}

fn gemm_peak(c: &mut Criterion) {
    let be = Be::new();
    let mut g = c.benchmark_group("gemm_peak/cpu-f32");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let n = 2048;
    let a = be.upload(&vec![0.5f32; n * n]).unwrap();
    let b = be.upload(&vec![0.25f32; n * n]).unwrap();
    let mut out = be.zeros(n * n).unwrap();
    g.throughput(Throughput::Elements((2 * n * n * n) as u64));
    g.bench_function(BenchmarkId::from_parameter(format!("{n}x{n}x{n}")), |bch| {
        bch.iter(|| {
            let m = |buf| MatRef {
                buf,
                rows: n,
                cols: n,
                trans: false,
            };
            be.gemm(1.0, m(&a), m(&b), 0.0, &mut out).unwrap()
        })
    });
    g.finish();
}

/// The same 2048³ product in bf16 operands with f32 sums (AMX tiles or AVX-512 BF16 vectors):
/// our kernel's rate, compared with oneDNN's by `tools/bench_train_vae.sh`. Skipped where
/// neither is available.
fn gemm_peak_bf16(c: &mut Criterion) {
    if !amx::available() {
        eprintln!("gemm_peak/cpu-bf16: no bf16 engine (AMX or AVX-512 BF16), skipped");
        return;
    }
    let mut g = c.benchmark_group("gemm_peak/cpu-bf16");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let n = 2048;
    let a = vec![0.5f32; n * n];
    let b = vec![0.25f32; n * n];
    let mut out = vec![0f32; n * n];
    g.throughput(Throughput::Elements((2 * n * n * n) as u64));
    g.bench_function(BenchmarkId::from_parameter(format!("{n}x{n}x{n}")), |bch| {
        let v = |buf| amx::View { buf, rs: n, cs: 1 };
        bch.iter(|| amx::gemm(n, n, n, v(&a), v(&b), Default::default(), 0.0, &mut out))
    });
    g.finish();
}

/// The three products of one hidden decoder layer at the training shape (N = B·R rows of a
/// batch, width h), f32 (matrixmultiply) and bf16 (AMX or AVX-512 BF16): forward N×h×h (x·Wᵀ),
/// input gradient N×h×h (g·W), weight gradient h×N×h (gᵀ·x).
fn gemm_layer(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_layer");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let rows = BATCH * 1608;
    for h in SIZES {
        let x = vec![0.5f32; rows * h];
        let w = vec![0.25f32; h * h];
        let mut out = vec![0f32; rows * h];
        let mut dw = vec![0f32; h * h];
        g.throughput(Throughput::Elements((3 * 2 * rows * h * h) as u64));
        g.bench_function(BenchmarkId::new("cpu-f32", h), |bch| {
            bch.iter(|| {
                gemm::gemm(rows, h, h, 1.0, &x, h, false, &w, h, true, 0.0, &mut out);
                gemm::gemm(rows, h, h, 1.0, &x, h, false, &w, h, false, 0.0, &mut out);
                gemm::gemm(h, rows, h, 1.0, &x, h, true, &x, h, false, 1.0, &mut dw);
            })
        });
        if amx::available() {
            g.bench_function(BenchmarkId::new("cpu-bf16", h), |bch| {
                let v = |buf, rs, cs| amx::View { buf, rs, cs };
                bch.iter(|| {
                    amx::gemm(
                        rows,
                        h,
                        h,
                        v(&x, h, 1),
                        v(&w, 1, h),
                        Default::default(),
                        0.0,
                        &mut out,
                    );
                    amx::gemm(
                        rows,
                        h,
                        h,
                        v(&x, h, 1),
                        v(&w, h, 1),
                        Default::default(),
                        0.0,
                        &mut out,
                    );
                    amx::gemm(
                        h,
                        rows,
                        h,
                        v(&x, 1, h),
                        v(&x, h, 1),
                        Default::default(),
                        1.0,
                        &mut dw,
                    );
                })
            });
        }
    }
    g.finish();
}

fn decoder_fwd_bwd(c: &mut Criterion) {
    let mut g = c.benchmark_group("decoder_fwd_bwd/cpu");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for h in SIZES {
        let mut s = setup(h);
        // z as a parameter so that dz is computed, as in training (z comes from the encoder).
        let zid = s.store.add(
            "z",
            Tensor::from_slice(&s.be, &s.z, &[BATCH, ZDIM]).unwrap(),
        );
        let (_, fl) = flops(&s, h);
        g.throughput(Throughput::Elements(fl));
        let be = &s.be;
        let p = s.p;
        g.bench_function(BenchmarkId::from_parameter(format!("{h}x{LAYERS}")), |b| {
            b.iter(|| {
                let mut t = Tape::new(be, &s.store);
                let coords = t.constant(Tensor::from_slice(be, &s.coords, &[p, 3]).unwrap());
                let rot = t.constant(Tensor::from_slice(be, &s.rot, &[BATCH, 3, 3]).unwrap());
                let z0 = t.param(zid);
                let y = t.constant(Tensor::from_slice(be, &s.y, &[BATCH, p]).unwrap());
                let ctf = t.constant(Tensor::from_slice(be, &s.ctf, &[BATCH, p]).unwrap());
                let yr = s.dec.forward(&mut t, coords, rot, Some(z0)).unwrap();
                let l = gen_loss(&mut t, yr, Some(ctf), y).unwrap();
                t.backward(l).unwrap().recycle(be);
            })
        });
    }
    g.finish();
}

fn encoder(c: &mut Criterion) {
    let mut g = c.benchmark_group("encoder/cpu");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for h in SIZES {
        let s = setup(h);
        let (fl, _) = flops(&s, h);
        g.throughput(Throughput::Elements(fl));
        let be = &s.be;
        let p = s.p;
        g.bench_function(BenchmarkId::from_parameter(format!("{h}x{LAYERS}")), |b| {
            b.iter(|| {
                let mut t = Tape::new(be, &s.store);
                let x = t.constant(Tensor::from_slice(be, &s.x, &[BATCH, p]).unwrap());
                let (mu, lv) = s.enc.forward(&mut t, x, None).unwrap();
                let parts =
                    vae_loss(&mut t, mu, mu, lv, KlWeight::Beta(1.0 / ZDIM as f64), p).unwrap();
                t.backward(parts.loss).unwrap().recycle(be);
            })
        });
    }
    g.finish();
}

/// `train_step/cpu` (f32) and `train_step/cpu-mixed` (bf16 GEMMs on AMX or AVX-512 BF16,
/// `--amp`; only where the CPU has one of them).
fn train_step(c: &mut Criterion) {
    train_step_with(c, false);
    if amx::available() {
        train_step_with(c, true);
    }
}

fn train_step_with(c: &mut Criterion, mixed: bool) {
    let name = if mixed {
        "train_step/cpu-mixed"
    } else {
        "train_step/cpu"
    };
    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    for h in SIZES {
        let mut s = setup(h);
        let (fe, fd) = flops(&s, h);
        g.throughput(Throughput::Elements(fe + fd));
        let be = s.be.clone().with_bf16_gemm(mixed);
        let p = s.p;
        let mut adam = Adam::<Be>::new(1e-4, 0.0);
        g.bench_function(BenchmarkId::from_parameter(format!("{h}x{LAYERS}")), |b| {
            b.iter(|| {
                let grads = {
                    let mut t = Tape::new(&be, &s.store);
                    let tc = |t: &mut Tape<'_, Be>, v: &[f32], sh: &[usize]| {
                        t.constant(Tensor::from_slice(&be, v, sh).unwrap())
                    };
                    let coords = tc(&mut t, &s.coords, &[p, 3]);
                    let rot = tc(&mut t, &s.rot, &[BATCH, 3, 3]);
                    let y = tc(&mut t, &s.y, &[BATCH, p]);
                    let ctf = tc(&mut t, &s.ctf, &[BATCH, p]);
                    let x = tc(&mut t, &s.x, &[BATCH, p]);
                    let eps = tc(&mut t, &s.eps, &[BATCH, ZDIM]);
                    let (mu, lv) = s.enc.forward(&mut t, x, None).unwrap();
                    let z = reparameterize(&mut t, mu, lv, eps).unwrap();
                    let yr = s.dec.forward(&mut t, coords, rot, Some(z)).unwrap();
                    let gen = gen_loss(&mut t, yr, Some(ctf), y).unwrap();
                    let parts = vae_loss(&mut t, gen, mu, lv, KlWeight::Beta(1.0 / ZDIM as f64), p)
                        .unwrap();
                    let _ = t.to_vec(parts.loss).unwrap();
                    t.backward(parts.loss).unwrap()
                };
                adam.step(&be, &mut s.store, &grads).unwrap();
                grads.recycle(&be);
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    gemm_peak,
    gemm_peak_bf16,
    gemm_layer,
    decoder_fwd_bwd,
    encoder,
    train_step
);
criterion_main!(benches);
