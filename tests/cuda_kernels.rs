//! The CUDA kernels against their CPU twins, the NVRTC compile check, and the comparison
//! harness itself.
//!
//! - Parity tests (one per kernel or kernel pair) run on a CUDA device with fixed seeds; every
//!   buffer the backend allocates is NaN-poisoned (`with_poisoned_allocs`), so an element a
//!   kernel forgets to write fails the comparison. The check is
//!   `|gpu − cpu| ≤ atol + rtol·|cpu|`, reporting the first index that differs and both values.
//!   Twins: the `CpuBackend` primitive (f32), `CpuBackend<f64>` for the tensor-core GEMM
//!   precisions, and f64 host references below for kernels with no CPU primitive
//!   (`pose_scores`, `top_k_smallest`, Hermitian assembly); the batched auction's twin is
//!   `assignment::auction` in f32 with Jacobi bidding (exact equality). Without a device they print
//!   `skipped: no CUDA device (<reason>)` and pass.
//! - `nvrtc_*` compile every kernel file for sm_80 and sm_90 (cubin, ptxas `-v`) and print
//!   registers / stack / spills / shared memory per kernel; they need libnvrtc
//!   (`CRYOFIELD_NVRTC_LIB=<path>/libnvrtc.so.12`, see `tools/check-kernels.sh`) and otherwise
//!   print `skipped: libnvrtc not found` — unless `CRYOFIELD_REQUIRE_NVRTC=1`, then they fail.
//! - `harness_*` and `tolerances_*` run everywhere: the comparison reports planted mismatches
//!   and NaNs, and the tf32/bf16 tolerances are checked against an emulation of the rounding.

#![cfg(feature = "cuda")]

use cryofield::assignment::auction::{auction_points_batch, AuctionParams, AuctionState, Bidding};
use cryofield::assignment::linear_sum_assignment;
use cryofield::backend::cpu::gemm::CpuFloat;
use cryofield::backend::cpu::CpuBackend;
use cryofield::backend::cuda::{kernels, nvrtc, CudaBackend, Precision};
use cryofield::backend::{
    Activation, AdamCoeffs, Backend, BinaryOp, DecodeSpec, Domain, MatRef, MlpLayer, MlpLayerGrad,
    MlpWeights, UnaryOp,
};
use cudarc::driver::CudaSlice;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

// ---------------------------------------------------------------- harness

/// Ok when every |got_i − want_i| ≤ atol + rtol·|want_i| (a NaN on either side fails); else
/// the first index that differs with both values, and how many differ.
fn compare(got: &[f32], want: &[f64], atol: f64, rtol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "length: gpu {} values, cpu {}",
            got.len(),
            want.len()
        ));
    }
    let ok = |g: f32, w: f64| (g as f64 - w).abs() <= atol + rtol * w.abs();
    match got.iter().zip(want).position(|(&g, &w)| !ok(g, w)) {
        None => Ok(()),
        Some(i) => {
            let bad = got.iter().zip(want).filter(|(&g, &w)| !ok(g, w)).count();
            Err(format!(
                "first mismatch at index {i}: gpu {:e}, cpu {:e} (|diff| {:e} > {atol:e} + \
                 {rtol:e}·|cpu|); {bad} of {} values differ",
                got[i],
                want[i],
                (got[i] as f64 - want[i]).abs(),
                got.len()
            ))
        }
    }
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    if let Err(e) = compare(got, want, atol, rtol) {
        panic!("{what}: {e}");
    }
}

/// f32 against f32 (the CPU twin's output).
#[track_caller]
fn assert_close32(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_close(what, got, &f64s(want), atol, rtol);
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Relative tolerance of each GEMM precision against an f64 reference.
fn rtol_of(p: Precision) -> f64 {
    match p {
        Precision::F32 => 1e-4,
        Precision::Tf32 => 1e-3,
        Precision::Bf16 => 1e-2,
    }
}

/// (atol, rtol) for results of a GEMM chain at precision p against the f64 reference `want`:
/// atol = 5·rtol·rms(want). The rounding error of an output is ~u·‖a_i‖‖b_j‖, the size of a
/// typical output rather than of that output, so a pure rtol fails wherever the sum cancels;
/// the factor 5 comes from emulating the rounding (`tolerances_cover_tensor_core_rounding`):
/// over 40 seeds the worst tf32/bf16 GEMM and 3-layer-MLP error stayed below 0.41 of the
/// band, and bf16 rounding exceeded the tf32 band by at least 1.23×.
fn band(p: Precision, want: &[f64]) -> (f64, f64) {
    let rtol = rtol_of(p);
    (5.0 * rtol * rms(want), rtol)
}

#[test]
fn harness_reports_first_mismatch() {
    let want = [1.0, 2.0, 3.0, 4.0];
    assert!(compare(&[1.0, 2.0, 3.0, 4.0], &want, 0.0, 0.0).is_ok());
    assert!(compare(&[1.0, 2.0001, 3.0, 4.0], &want, 0.0, 1e-4).is_ok());
    let e = compare(&[1.0, 2.0, 3.5, 4.5], &want, 1e-6, 1e-3).unwrap_err();
    assert!(e.contains("index 2"), "{e}");
    assert!(e.contains("gpu 3.5e0") && e.contains("cpu 3e0"), "{e}");
    assert!(e.contains("2 of 4"), "{e}");
    let e = compare(&[1.0], &want, 0.0, 0.0).unwrap_err();
    assert!(e.contains("length"), "{e}");
}

#[test]
#[should_panic(expected = "planted: first mismatch at index 1: gpu 9e0, cpu 1e0")]
fn harness_assert_close_panics_with_the_first_mismatch() {
    assert_close("planted", &[0.0, 9.0], &[0.0, 1.0], 0.0, 0.1);
}

#[test]
fn harness_flags_nan_poison() {
    // An output element a kernel never wrote stays NaN from the poisoned allocation.
    let e = compare(&[1.0, f32::NAN, 3.0], &[1.0, 2.0, 3.0], 1.0, 1.0).unwrap_err();
    assert!(e.contains("index 1") && e.contains("NaN"), "{e}");
    assert!(compare(&[1.0], &[f64::NAN], 1.0, 1.0).is_err());
}

/// x rounded to tf32 as `cvt.rna.tf32.f32` does (10-bit mantissa, ties away from zero).
fn round_tf32(x: f32) -> f32 {
    f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
}

/// x rounded to bf16 as `cvt.rn.bf16x2.f32` does (8-bit mantissa, ties to even).
fn round_bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// The input rounding of precision p (F32: none, the f64 reference).
fn rounding(p: Precision) -> fn(f64) -> f64 {
    match p {
        Precision::F32 => |x| x,
        Precision::Tf32 => |x| round_tf32(x as f32) as f64,
        Precision::Bf16 => |x| round_bf16(x as f32) as f64,
    }
}

/// C (m, n) = A (m, k)·B (k, n) in f64 after rounding the inputs with `r`.
fn gemm_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize, r: fn(f64) -> f64) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = r(a[i * k + p]);
            for j in 0..n {
                c[i * n + j] += av * r(b[p * n + j]);
            }
        }
    }
    c
}

/// One layer of a host-side test network: (W (n_out, n_in), b (n_out), n_in, n_out, residual).
type HostLayer = (Vec<f32>, Vec<f32>, usize, usize, bool);

/// An f64 MLP forward whose GEMM inputs are rounded with `r` (the tensor-core emulation), W
/// (n_out, n_in) per layer, bias, residual flags; activation after every layer but the last.
fn mlp_ref(x: &[f32], n: usize, layers: &[HostLayer], act: UnaryOp, r: fn(f64) -> f64) -> Vec<f64> {
    let mut h: Vec<f64> = f64s(x);
    for (l, (w, b, n_in, n_out, res)) in layers.iter().enumerate() {
        let wt: Vec<f64> = (0..n_in * n_out)
            .map(|i| w[(i % n_out) * n_in + i / n_out] as f64)
            .collect();
        let mut z = gemm_ref(&h, &wt, n, *n_in, *n_out, r);
        for i in 0..n {
            for j in 0..*n_out {
                z[i * n_out + j] += b[j] as f64 + if *res { h[i * n_in + j] } else { 0.0 };
            }
        }
        if l + 1 < layers.len() {
            let cpu = CpuBackend::<f64>::new();
            let mut out = vec![0.0; z.len()];
            cpu.unary(act, &z, &mut out).unwrap();
            z = out;
        }
        h = z;
    }
    h
}

/// max_i |got_i − want_i| / (atol + rtol·|want_i|) for the band of precision p.
fn max_err_over_tol(got: &[f64], want: &[f64], p: Precision) -> f64 {
    let (atol, rtol) = band(p, want);
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (atol + rtol * w.abs()))
        .fold(0.0, f64::max)
}

#[test]
fn tolerances_cover_tensor_core_rounding() {
    // The GPU tests compare tf32/bf16 results with an f64 reference within band(p, ref).
    // Emulating the input rounding on the CPU, the error must stay well inside that band
    // (margin 2×), and bf16 must not pass at the tf32 band (so it tells the precisions apart).
    let mut rng = StdRng::seed_from_u64(7);
    let (m, k, n) = (70, 256, 45);
    let a = uniform(&mut rng, m * k, -1.0, 1.0);
    let b = uniform(&mut rng, k * n, -1.0, 1.0);
    let (a, b) = (f64s(&a), f64s(&b));
    let exact = gemm_ref(&a, &b, m, k, n, |x| x);
    for p in [Precision::Tf32, Precision::Bf16] {
        let emu = gemm_ref(&a, &b, m, k, n, rounding(p));
        let e = max_err_over_tol(&emu, &exact, p);
        println!("{p} gemm: error {e:.3} of the band");
        assert!(e < 0.5, "{p} gemm: error {e} of the band");
    }
    let bf = gemm_ref(&a, &b, m, k, n, rounding(Precision::Bf16));
    let e = max_err_over_tol(&bf, &exact, Precision::Tf32);
    println!("bf16 gemm: error {e:.3} of the tf32 band");
    assert!(e > 1.0, "bf16 passes the tf32 band ({e})");

    // The MLP of the parity tests (3 layers, one residual), checked the same way; the f64
    // emulation with no rounding is first checked against CpuBackend<f64>.
    let net = test_net(&mut rng, 24, 64, 3);
    let rows = 200;
    let x = uniform(&mut rng, rows * 24, -1.0, 1.0);
    for act in [UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Tanh] {
        let exact = mlp_ref(&x, rows, &net, act, |v| v);
        let cpu = cpu_mlp_forward(&x, rows, &net, act);
        let worst = cpu
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-12,
            "mlp_ref vs CpuBackend<f64> ({act:?}): {worst}"
        );
        for p in [Precision::Tf32, Precision::Bf16] {
            let emu = mlp_ref(&x, rows, &net, act, rounding(p));
            let e = max_err_over_tol(&emu, &exact, p);
            println!("{p} mlp ({act:?}): error {e:.3} of the band");
            assert!(e < 0.5, "{p} mlp ({act:?}): error {e} of the band");
        }
    }
}

// ---------------------------------------------------------------- references

/// A test network: in → hidden → hidden (residual) → out, small random weights.
fn test_net(rng: &mut StdRng, n_in: usize, hidden: usize, n_out: usize) -> Vec<HostLayer> {
    let dims = [
        (n_in, hidden, false),
        (hidden, hidden, true),
        (hidden, n_out, false),
    ];
    dims.iter()
        .map(|&(i, o, res)| {
            let s = 1.0 / (i as f32).sqrt();
            (
                uniform(rng, i * o, -s, s),
                uniform(rng, o, -0.1, 0.1),
                i,
                o,
                res,
            )
        })
        .collect()
}

fn activation(op: UnaryOp) -> Activation {
    match op {
        UnaryOp::Relu => Activation::Relu,
        UnaryOp::LeakyRelu(a) => Activation::LeakyRelu(a),
        UnaryOp::Silu => Activation::Silu,
        UnaryOp::Gelu => Activation::Gelu,
        UnaryOp::Tanh => Activation::Tanh,
        _ => unreachable!("not an MLP activation"),
    }
}

fn cpu_mlp_forward(x: &[f32], rows: usize, net: &[HostLayer], act: UnaryOp) -> Vec<f64> {
    let cpu = CpuBackend::<f64>::new();
    let ws: Vec<(Vec<f64>, Vec<f64>)> = net.iter().map(|(w, b, ..)| (f64s(w), f64s(b))).collect();
    let weights = MlpWeights {
        layers: net
            .iter()
            .zip(&ws)
            .map(|((_, _, i, o, r), (w, b))| MlpLayer {
                w,
                b,
                n_in: *i,
                n_out: *o,
                residual: *r,
            })
            .collect(),
        act: activation(act),
    };
    cpu.mlp_forward(&weights, &f64s(x), rows, false).unwrap().0
}

/// f64 pose scores (see `CudaBackend::pose_scores`).
#[allow(clippy::too_many_arguments)]
fn pose_scores_ref(
    slices: &[f32],
    per_image: bool,
    images: &[f32],
    ctf: Option<&[f32]>,
    nb: usize,
    nr: usize,
    nt: usize,
    p: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; nb * nr * nt];
    for b in 0..nb {
        let s0 = if per_image { b * nr * p } else { 0 };
        for r in 0..nr {
            for t in 0..nt {
                let mut acc = 0.0f64;
                for q in 0..p {
                    let c = ctf.map(|c| c[b * p + q] as f64).unwrap_or(1.0);
                    let d = c * slices[s0 + r * p + q] as f64 - images[(b * nt + t) * p + q] as f64;
                    acc += d * d;
                }
                out[(b * nr + r) * nt + t] = acc;
            }
        }
    }
    out
}

/// The k smallest of each row (nb, n): ascending by value then index, NaN as +∞.
fn top_k_ref(x: &[f32], nb: usize, n: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    for b in 0..nb {
        let mut row: Vec<(f32, u32)> = (0..n)
            .map(|i| {
                let v = x[b * n + i];
                (if v.is_nan() { f32::INFINITY } else { v }, i as u32)
            })
            .collect();
        row.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(v, i) in &row[..k] {
            idx.push(i);
            val.push(v);
        }
    }
    (idx, val)
}

#[test]
fn host_references_on_hand_examples() {
    // Two rotations, one translation, P = 2, CTF 2: (2·1 − 1)² + (2·0 − 3)² = 10 and
    // (2·2 − 1)² + (2·1 − 3)² = 10; without CTF: 0 + 9 = 9 and 1 + 4 = 5.
    let slices = [1.0, 0.0, 2.0, 1.0];
    let images = [1.0, 3.0];
    let with = pose_scores_ref(&slices, false, &images, Some(&[2.0, 2.0]), 1, 2, 1, 2);
    assert_eq!(with, vec![10.0, 10.0]);
    assert_eq!(
        pose_scores_ref(&slices, false, &images, None, 1, 2, 1, 2),
        vec![9.0, 5.0]
    );
    let (i, v) = top_k_ref(&[3.0, f32::NAN, 1.0, 1.0, -2.0], 1, 5, 4);
    assert_eq!(i, vec![4, 2, 3, 0]);
    assert_eq!(v, vec![-2.0, 1.0, 1.0, 3.0]);
}

// ---------------------------------------------------------------- device

/// The device backend with NaN-poisoned allocations, or None after printing why.
fn device() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(be) => Some(be.with_poisoned_allocs(true)),
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            None
        }
    }
}

fn up(be: &CudaBackend, x: &[f32]) -> CudaSlice<f32> {
    be.upload(x).unwrap()
}

fn down(be: &CudaBackend, x: &CudaSlice<f32>) -> Vec<f32> {
    be.to_vec(x).unwrap()
}

const ALL_UNARY: [UnaryOp; 12] = [
    UnaryOp::Relu,
    UnaryOp::LeakyRelu(0.1),
    UnaryOp::Silu,
    UnaryOp::Gelu,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Sin,
    UnaryOp::Cos,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Softplus,
    UnaryOp::Square,
];

#[test]
fn axpby_affine_fill() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(1);
    let n = 10_007;
    let x = uniform(&mut rng, n, -2.0, 2.0);
    let y0 = uniform(&mut rng, n, -2.0, 2.0);
    let (mut yc, mut yg) = (y0.clone(), up(&be, &y0));
    cpu.axpby(0.3, &x, -1.7, &mut yc).unwrap();
    be.axpby(0.3, &up(&be, &x), -1.7, &mut yg).unwrap();
    assert_close32("axpby_f32", &down(&be, &yg), &yc, 1e-6, 1e-6);
    let mut yc = vec![0.0; n];
    let mut yg = be.alloc(n).unwrap();
    assert!(down(&be, &yg).iter().all(|v| v.is_nan()), "fill_f32 poison");
    cpu.affine(&x, 1.5, -0.25, &mut yc).unwrap();
    be.affine(&up(&be, &x), 1.5, -0.25, &mut yg).unwrap();
    assert_close32("affine_f32", &down(&be, &yg), &yc, 1e-6, 1e-6);
}

#[test]
fn unary_and_backward() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(2);
    let n = 4099;
    for op in ALL_UNARY {
        let (lo, hi) = if op == UnaryOp::Log {
            (0.1, 3.0)
        } else {
            (-4.0, 4.0)
        };
        let x = uniform(&mut rng, n, lo, hi);
        let dy = uniform(&mut rng, n, -1.0, 1.0);
        let dx0 = uniform(&mut rng, n, -1.0, 1.0);
        let mut yc = vec![0.0; n];
        cpu.unary(op, &x, &mut yc).unwrap();
        let xg = up(&be, &x);
        let mut yg = be.alloc(n).unwrap();
        be.unary(op, &xg, &mut yg).unwrap();
        assert_close32(
            &format!("unary_f32 {op:?}"),
            &down(&be, &yg),
            &yc,
            1e-6,
            1e-5,
        );
        let mut dxc = dx0.clone();
        cpu.unary_backward(op, &x, &yc, &dy, &mut dxc).unwrap();
        let mut dxg = up(&be, &dx0);
        be.unary_backward(op, &xg, &up(&be, &yc), &up(&be, &dy), &mut dxg)
            .unwrap();
        assert_close32(
            &format!("unary_backward_f32 {op:?}"),
            &down(&be, &dxg),
            &dxc,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn binary_and_backward() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(3);
    let n = 3001;
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        let a = uniform(&mut rng, n, -2.0, 2.0);
        let b = uniform(&mut rng, n, 0.5, 2.0);
        let dy = uniform(&mut rng, n, -1.0, 1.0);
        let g0 = uniform(&mut rng, n, -1.0, 1.0);
        let mut yc = vec![0.0; n];
        cpu.binary(op, &a, &b, &mut yc).unwrap();
        let (ag, bg, dyg) = (up(&be, &a), up(&be, &b), up(&be, &dy));
        let mut yg = be.alloc(n).unwrap();
        be.binary(op, &ag, &bg, &mut yg).unwrap();
        assert_close32(
            &format!("binary_f32 {op:?}"),
            &down(&be, &yg),
            &yc,
            1e-6,
            1e-6,
        );
        for (with_a, with_b) in [(true, true), (true, false), (false, true)] {
            let (mut dac, mut dbc) = (g0.clone(), g0.clone());
            let (mut dag, mut dbg) = (up(&be, &g0), up(&be, &g0));
            cpu.binary_backward(
                op,
                &a,
                &b,
                &dy,
                with_a.then_some(&mut dac),
                with_b.then_some(&mut dbc),
            )
            .unwrap();
            be.binary_backward(
                op,
                &ag,
                &bg,
                &dyg,
                with_a.then_some(&mut dag),
                with_b.then_some(&mut dbg),
            )
            .unwrap();
            let what = format!("binary_backward_f32 {op:?} ({with_a}, {with_b})");
            assert_close32(&what, &down(&be, &dag), &dac, 1e-6, 1e-5);
            assert_close32(&what, &down(&be, &dbg), &dbc, 1e-6, 1e-5);
        }
    }
}

#[test]
fn broadcasts_copy_cols_gather_scatter() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(4);
    let (n, d) = (517, 13);
    let bias = uniform(&mut rng, d, -1.0, 1.0);
    let col = uniform(&mut rng, n, -1.0, 1.0);
    let y0 = uniform(&mut rng, n * d, -1.0, 1.0);
    // broadcast_rows_f32: add_bias (acc) and broadcast_rows (overwrite)
    let (mut yc, mut yg) = (y0.clone(), up(&be, &y0));
    cpu.add_bias(&bias, d, &mut yc).unwrap();
    be.add_bias(&up(&be, &bias), d, &mut yg).unwrap();
    assert_close32(
        "broadcast_rows_f32 (add_bias)",
        &down(&be, &yg),
        &yc,
        0.0,
        1e-7,
    );
    let mut yg = be.alloc(n * d).unwrap();
    cpu.broadcast_rows(&bias, d, &mut yc).unwrap();
    be.broadcast_rows(&up(&be, &bias), d, &mut yg).unwrap();
    assert_close32("broadcast_rows_f32", &down(&be, &yg), &yc, 0.0, 0.0);
    for acc in [false, true] {
        let (mut yc, mut yg) = (y0.clone(), up(&be, &y0));
        cpu.broadcast_cols(&col, d, &mut yc, acc).unwrap();
        be.broadcast_cols(&up(&be, &col), d, &mut yg, acc).unwrap();
        assert_close32("broadcast_cols_f32", &down(&be, &yg), &yc, 0.0, 1e-7);
    }
    // copy_cols_f32: a 5-column block from (n, 13) into (n, 9) at offset 2
    let dst0 = uniform(&mut rng, n * 9, -1.0, 1.0);
    for acc in [false, true] {
        let (mut dc, mut dg) = (dst0.clone(), up(&be, &dst0));
        cpu.copy_cols(&y0, d, 7, &mut dc, 9, 2, 5, acc).unwrap();
        be.copy_cols(&up(&be, &y0), d, 7, &mut dg, 9, 2, 5, acc)
            .unwrap();
        assert_close32("copy_cols_f32", &down(&be, &dg), &dc, 0.0, 1e-7);
    }
    // gather_rows_f32 / scatter_add_rows_f32 with repeated indices
    let idx: Vec<u32> = (0..300).map(|_| rng.random_range(0..n as u32)).collect();
    let mut gc = vec![0.0; idx.len() * d];
    let mut gg = be.alloc(idx.len() * d).unwrap();
    cpu.gather_rows(&y0, d, &idx, &mut gc).unwrap();
    be.gather_rows(&up(&be, &y0), d, &idx, &mut gg).unwrap();
    assert_close32("gather_rows_f32", &down(&be, &gg), &gc, 0.0, 0.0);
    let (mut sc, mut sg) = (y0.clone(), up(&be, &y0));
    cpu.scatter_add_rows(&gc, d, &idx, &mut sc).unwrap();
    be.scatter_add_rows(&up(&be, &gc), d, &idx, &mut sg)
        .unwrap();
    assert_close32("scatter_add_rows_f32", &down(&be, &sg), &sc, 1e-6, 1e-6);
}

#[test]
fn sum_rows_and_sum_cols() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(5);
    // Many rows: several row chunks in sum_rows_partial_f32, then reduce_splits_f32.
    for (n, d) in [(1, 1), (7, 3), (20_000, 37), (3000, 1)] {
        let x = uniform(&mut rng, n * d, -1.0, 1.0);
        let y0 = uniform(&mut rng, d, -1.0, 1.0);
        let atol = 1e-5 * (n as f64).sqrt();
        for acc in [false, true] {
            let (mut yc, mut yg) = (y0.clone(), up(&be, &y0));
            cpu.sum_rows(&x, d, 0.5, &mut yc, acc).unwrap();
            be.sum_rows(&up(&be, &x), d, 0.5, &mut yg, acc).unwrap();
            assert_close32(
                &format!("sum_rows_f32 ({n}, {d})"),
                &down(&be, &yg),
                &yc,
                atol,
                1e-5,
            );
        }
        let r0 = uniform(&mut rng, n, -1.0, 1.0);
        let (mut rc, mut rg) = (r0.clone(), up(&be, &r0));
        cpu.sum_cols(&x, d, 2.0, &mut rc, true).unwrap();
        be.sum_cols(&up(&be, &x), d, 2.0, &mut rg, true).unwrap();
        assert_close32("sum_cols_f32", &down(&be, &rg), &rc, 1e-5, 1e-5);
    }
}

#[test]
fn softmax_and_layer_norm() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(6);
    for (n, d) in [(33, 7), (129, 100)] {
        let x = uniform(&mut rng, n * d, -3.0, 3.0);
        let dy = uniform(&mut rng, n * d, -1.0, 1.0);
        let g0 = uniform(&mut rng, n * d, -1.0, 1.0);
        let xg = up(&be, &x);
        let mut yc = vec![0.0; n * d];
        let mut yg = be.alloc(n * d).unwrap();
        cpu.softmax(&x, d, &mut yc).unwrap();
        be.softmax(&xg, d, &mut yg).unwrap();
        assert_close32("softmax_f32", &down(&be, &yg), &yc, 1e-7, 1e-5);
        let (mut dxc, mut dxg) = (g0.clone(), up(&be, &g0));
        cpu.softmax_backward(&yc, &dy, d, &mut dxc).unwrap();
        be.softmax_backward(&up(&be, &yc), &up(&be, &dy), d, &mut dxg)
            .unwrap();
        assert_close32("softmax_backward_f32", &down(&be, &dxg), &dxc, 1e-6, 1e-5);

        let gamma = uniform(&mut rng, d, 0.5, 1.5);
        let beta = uniform(&mut rng, d, -0.5, 0.5);
        let (mut mc, mut rc) = (vec![0.0; n], vec![0.0; n]);
        let (mut mg, mut rg) = (be.alloc(n).unwrap(), be.alloc(n).unwrap());
        let mut yg = be.alloc(n * d).unwrap();
        cpu.layer_norm(&x, &gamma, &beta, d, 1e-5, &mut yc, &mut mc, &mut rc)
            .unwrap();
        let (gg, bg) = (up(&be, &gamma), up(&be, &beta));
        be.layer_norm(&xg, &gg, &bg, d, 1e-5, &mut yg, &mut mg, &mut rg)
            .unwrap();
        assert_close32("layer_norm_f32 y", &down(&be, &yg), &yc, 1e-5, 1e-5);
        assert_close32("layer_norm_f32 mean", &down(&be, &mg), &mc, 1e-6, 1e-5);
        assert_close32("layer_norm_f32 rstd", &down(&be, &rg), &rc, 1e-6, 1e-5);
        let p0 = uniform(&mut rng, d, -1.0, 1.0);
        let (mut dxc, mut dgc, mut dbc) = (g0.clone(), p0.clone(), p0.clone());
        let (mut dxg, mut dgg, mut dbg) = (up(&be, &g0), up(&be, &p0), up(&be, &p0));
        cpu.layer_norm_backward(
            &x,
            &gamma,
            &mc,
            &rc,
            &dy,
            d,
            Some(&mut dxc),
            Some(&mut dgc),
            Some(&mut dbc),
        )
        .unwrap();
        be.layer_norm_backward(
            &xg,
            &gg,
            &up(&be, &mc),
            &up(&be, &rc),
            &up(&be, &dy),
            d,
            Some(&mut dxg),
            Some(&mut dgg),
            Some(&mut dbg),
        )
        .unwrap();
        assert_close32(
            "layer_norm_backward_f32 dx",
            &down(&be, &dxg),
            &dxc,
            1e-5,
            1e-4,
        );
        assert_close32(
            "layer_norm_backward_params_f32 dγ",
            &down(&be, &dgg),
            &dgc,
            1e-4,
            1e-4,
        );
        assert_close32(
            "layer_norm_backward_params_f32 dβ",
            &down(&be, &dbg),
            &dbc,
            1e-4,
            1e-4,
        );
    }
}

#[test]
fn losses_and_backward() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(7);
    let (n, d) = (5000, 8);
    let a = uniform(&mut rng, n * d, -1.0, 1.0);
    let b = uniform(&mut rng, n * d, -1.0, 1.0);
    let lv = uniform(&mut rng, n * d, -1.0, 1.0);
    let g0 = uniform(&mut rng, n * d, -1.0, 1.0);
    let (ag, bg, lg) = (up(&be, &a), up(&be, &b), up(&be, &lv));
    let dout = [0.7f32];
    let doutg = up(&be, &dout);
    let scalar = |f: &dyn Fn(&mut CudaSlice<f32>)| {
        let mut o = be.alloc(1).unwrap();
        f(&mut o);
        down(&be, &o)
    };
    let mut oc = vec![0.0];
    cpu.mse(&a, &b, &mut oc).unwrap();
    let og = scalar(&|o| be.mse(&ag, &bg, o).unwrap());
    assert_close32("mse_partial_f32", &og, &oc, 0.0, 1e-5);
    cpu.gaussian_nll(&a, &lv, &b, &mut oc).unwrap();
    let og = scalar(&|o| be.gaussian_nll(&ag, &lg, &bg, o).unwrap());
    assert_close32("gaussian_nll_partial_f32", &og, &oc, 0.0, 1e-5);
    cpu.kl_std_normal(&a, &lv, d, &mut oc).unwrap();
    let og = scalar(&|o| be.kl_std_normal(&ag, &lg, d, o).unwrap());
    assert_close32("kl_std_normal_partial_f32", &og, &oc, 0.0, 1e-5);

    let (mut dac, mut dbc, mut dlc) = (g0.clone(), g0.clone(), g0.clone());
    let (mut dag, mut dbg, mut dlg) = (up(&be, &g0), up(&be, &g0), up(&be, &g0));
    cpu.mse_backward(&a, &b, &dout.to_vec(), Some(&mut dac), Some(&mut dbc))
        .unwrap();
    be.mse_backward(&ag, &bg, &doutg, Some(&mut dag), Some(&mut dbg))
        .unwrap();
    assert_close32("mse_backward_f32 da", &down(&be, &dag), &dac, 1e-7, 1e-5);
    assert_close32("mse_backward_f32 db", &down(&be, &dbg), &dbc, 1e-7, 1e-5);
    cpu.gaussian_nll_backward(
        &a,
        &lv,
        &b,
        &dout.to_vec(),
        Some(&mut dac),
        Some(&mut dlc),
        Some(&mut dbc),
    )
    .unwrap();
    be.gaussian_nll_backward(
        &ag,
        &lg,
        &bg,
        &doutg,
        Some(&mut dag),
        Some(&mut dlg),
        Some(&mut dbg),
    )
    .unwrap();
    assert_close32(
        "gaussian_nll_backward_f32 dμ",
        &down(&be, &dag),
        &dac,
        1e-7,
        1e-5,
    );
    assert_close32(
        "gaussian_nll_backward_f32 dlogvar",
        &down(&be, &dlg),
        &dlc,
        1e-7,
        1e-5,
    );
    assert_close32(
        "gaussian_nll_backward_f32 dx",
        &down(&be, &dbg),
        &dbc,
        1e-7,
        1e-5,
    );
    cpu.kl_std_normal_backward(&a, &lv, d, &dout.to_vec(), Some(&mut dac), Some(&mut dlc))
        .unwrap();
    be.kl_std_normal_backward(&ag, &lg, d, &doutg, Some(&mut dag), Some(&mut dlg))
        .unwrap();
    assert_close32(
        "kl_std_normal_backward_f32 dμ",
        &down(&be, &dag),
        &dac,
        1e-7,
        1e-5,
    );
    assert_close32(
        "kl_std_normal_backward_f32 dlogvar",
        &down(&be, &dlg),
        &dlc,
        1e-7,
        1e-5,
    );
}

#[test]
fn adam_update() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(8);
    let n = 2053;
    let p0 = uniform(&mut rng, n, -1.0, 1.0);
    let g = uniform(&mut rng, n, -1.0, 1.0);
    let m0 = uniform(&mut rng, n, -0.1, 0.1);
    let v0 = uniform(&mut rng, n, 0.0, 0.01);
    let c = AdamCoeffs {
        beta1: 0.9,
        beta2: 0.999,
        weight_decay: 1e-2,
        step_size: 1e-3,
        denom_scale: 1.3,
        denom_eps: 1e-8,
    };
    let (mut pc, mut mc, mut vc) = (p0.clone(), m0.clone(), v0.clone());
    cpu.adam_update(&mut pc, &g, &mut mc, &mut vc, c).unwrap();
    let (mut pg, mut mg, mut vg) = (up(&be, &p0), up(&be, &m0), up(&be, &v0));
    be.adam_update(&mut pg, &up(&be, &g), &mut mg, &mut vg, c)
        .unwrap();
    // Same f64 arithmetic on both sides.
    assert_close32("adam_update_f32 p", &down(&be, &pg), &pc, 0.0, 1e-7);
    assert_close32("adam_update_f32 m", &down(&be, &mg), &mc, 0.0, 1e-7);
    assert_close32("adam_update_f32 v", &down(&be, &vg), &vc, 0.0, 1e-7);
}

#[test]
fn gemm_cublas_and_fused_kernels() {
    let Some(be) = device() else { return };
    let mut rng = StdRng::seed_from_u64(9);
    // Sizes off the 64-tile and 16-step grid to exercise every edge guard.
    let (m, k, n) = (70, 33, 45);
    let c0 = uniform(&mut rng, m * n, -1.0, 1.0);
    let mut backends = vec![(be.clone(), "cuBLAS f32".to_string(), Precision::F32)];
    if !be.uses_cublas() {
        println!("note: libcublas not found, Backend::gemm runs the built-in kernel");
    }
    for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
        if let Ok(b) = be.clone().with_cublas(false).with_precision(p) {
            backends.push((b, format!("gemm_fused_{p}"), p));
        }
    }
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = uniform(&mut rng, m * k, -1.0, 1.0);
        let b = uniform(&mut rng, k * n, -1.0, 1.0);
        // a is op(A) (m, k); stored transposed when ta
        let a_st: Vec<f32> = if ta {
            (0..m * k).map(|i| a[(i % m) * k + i / m]).collect()
        } else {
            a.clone()
        };
        let b_st: Vec<f32> = if tb {
            (0..k * n).map(|i| b[(i % k) * n + i / k]).collect()
        } else {
            b.clone()
        };
        let prod = gemm_ref(&f64s(&a), &f64s(&b), m, k, n, |x| x);
        let want: Vec<f64> = prod
            .iter()
            .zip(&c0)
            .map(|(p, &c)| 0.5 * p - 2.0 * c as f64)
            .collect();
        for (bk, what, p) in &backends {
            let (ag, bg) = (up(bk, &a_st), up(bk, &b_st));
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let mut cg = up(bk, &c0);
            bk.gemm(
                0.5,
                MatRef {
                    buf: &ag,
                    rows: ar,
                    cols: ac,
                    trans: ta,
                },
                MatRef {
                    buf: &bg,
                    rows: br,
                    cols: bc,
                    trans: tb,
                },
                -2.0,
                &mut cg,
            )
            .unwrap();
            let (atol, rtol) = band(*p, &want);
            assert_close(
                &format!("{what} (transA {ta}, transB {tb})"),
                &down(bk, &cg),
                &want,
                atol,
                rtol,
            );
            // β = 0 must not read C (poisoned).
            let mut cg = bk.alloc(m * n).unwrap();
            bk.gemm(
                1.0,
                MatRef {
                    buf: &ag,
                    rows: ar,
                    cols: ac,
                    trans: ta,
                },
                MatRef {
                    buf: &bg,
                    rows: br,
                    cols: bc,
                    trans: tb,
                },
                0.0,
                &mut cg,
            )
            .unwrap();
            let (atol, rtol) = band(*p, &prod);
            assert_close(&format!("{what} β = 0"), &down(bk, &cg), &prod, atol, rtol);
        }
    }
}

/// GPU and CPU weights of a test network.
struct Net {
    gpu: Vec<(CudaSlice<f32>, CudaSlice<f32>)>,
    host: Vec<HostLayer>,
}

impl Net {
    fn new(be: &CudaBackend, host: Vec<HostLayer>) -> Self {
        let gpu = host
            .iter()
            .map(|(w, b, ..)| (up(be, w), up(be, b)))
            .collect();
        Net { gpu, host }
    }

    fn weights(&self, act: UnaryOp) -> MlpWeights<'_, CudaBackend> {
        MlpWeights {
            layers: self
                .gpu
                .iter()
                .zip(&self.host)
                .map(|((w, b), (_, _, i, o, r))| MlpLayer {
                    w,
                    b,
                    n_in: *i,
                    n_out: *o,
                    residual: *r,
                })
                .collect(),
            act: activation(act),
        }
    }
}

/// Forward and backward of the CPU twin in precision T: (y, dx, [(dW, db)]).
#[allow(clippy::type_complexity)]
fn cpu_mlp<T: CpuFloat>(
    net: &[HostLayer],
    act: UnaryOp,
    x: &[f32],
    dy: &[f32],
    rows: usize,
) -> (Vec<f64>, Vec<f64>, Vec<(Vec<f64>, Vec<f64>)>) {
    let cpu = CpuBackend::<T>::new();
    let cv = |v: &[f32]| v.iter().map(|&x| T::c(x as f64)).collect::<Vec<T>>();
    let back = |v: &[T]| v.iter().map(|x| x.f64()).collect::<Vec<f64>>();
    let ws: Vec<(Vec<T>, Vec<T>)> = net.iter().map(|(w, b, ..)| (cv(w), cv(b))).collect();
    let weights = MlpWeights {
        layers: net
            .iter()
            .zip(&ws)
            .map(|((_, _, i, o, r), (w, b))| MlpLayer {
                w,
                b,
                n_in: *i,
                n_out: *o,
                residual: *r,
            })
            .collect(),
        act: activation(act),
    };
    let xs = cv(x);
    let (y, saved) = cpu.mlp_forward(&weights, &xs, rows, true).unwrap();
    let mut dx = vec![T::c(0.0); xs.len()];
    let mut grads: Vec<(Vec<T>, Vec<T>)> = net
        .iter()
        .map(|(w, b, ..)| (vec![T::c(0.0); w.len()], vec![T::c(0.0); b.len()]))
        .collect();
    let mut dl: Vec<MlpLayerGrad<'_, CpuBackend<T>>> = grads
        .iter_mut()
        .map(|(dw, db)| MlpLayerGrad { dw, db })
        .collect();
    cpu.mlp_backward(
        &weights,
        &xs,
        rows,
        &saved.unwrap(),
        &cv(dy),
        Some(&mut dx),
        0,
        &mut dl,
    )
    .unwrap();
    drop(dl);
    (
        back(&y),
        back(&dx),
        grads.iter().map(|(w, b)| (back(w), back(b))).collect(),
    )
}

#[test]
fn mlp_forward_backward_all_precisions() {
    let Some(be) = device() else { return };
    let mut rng = StdRng::seed_from_u64(10);
    let rows = 300;
    let net = Net::new(&be, test_net(&mut rng, 24, 64, 3));
    let x = uniform(&mut rng, rows * 24, -1.0, 1.0);
    let dy = uniform(&mut rng, rows * 3, -1.0, 1.0);
    let acts = [
        UnaryOp::Relu,
        UnaryOp::LeakyRelu(0.2),
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::Tanh,
    ];
    for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
        let Ok(bp) = be.clone().with_precision(p) else {
            println!("skipped {p}: needs compute capability 8.0");
            continue;
        };
        for act in acts {
            // f32 against the f32 CPU twin; tensor cores against CpuBackend<f64>.
            let (y, dx, grads) = if p == Precision::F32 {
                cpu_mlp::<f32>(&net.host, act, &x, &dy, rows)
            } else {
                cpu_mlp::<f64>(&net.host, act, &x, &dy, rows)
            };
            let w = net.weights(act);
            let xg = up(&bp, &x);
            let (yg, saved) = bp.mlp_forward(&w, &xg, rows, true).unwrap();
            let what = format!("mlp ({p}, {act:?})");
            let (atol, rtol) = band(p, &y);
            assert_close(&format!("{what} y"), &down(&bp, &yg), &y, atol, rtol);
            let (y2, none) = bp.mlp_forward(&w, &xg, rows, false).unwrap();
            assert!(none.is_none());
            assert_close(
                &format!("{what} y (no save)"),
                &down(&bp, &y2),
                &y,
                atol,
                rtol,
            );
            let mut dxg = bp.zeros(x.len()).unwrap();
            let mut gg: Vec<(CudaSlice<f32>, CudaSlice<f32>)> = net
                .host
                .iter()
                .map(|(w, b, ..)| (bp.zeros(w.len()).unwrap(), bp.zeros(b.len()).unwrap()))
                .collect();
            let mut dl: Vec<MlpLayerGrad<'_, CudaBackend>> = gg
                .iter_mut()
                .map(|(dw, db)| MlpLayerGrad { dw, db })
                .collect();
            bp.mlp_backward(
                &w,
                &xg,
                rows,
                &saved.unwrap(),
                &up(&bp, &dy),
                Some(&mut dxg),
                0,
                &mut dl,
            )
            .unwrap();
            drop(dl);
            let (atol, rtol) = band(p, &dx);
            assert_close(&format!("{what} dx"), &down(&bp, &dxg), &dx, atol, rtol);
            for (l, ((dwg, dbg), (dw, db))) in gg.iter().zip(&grads).enumerate() {
                let (atol, rtol) = band(p, dw);
                assert_close(
                    &format!("{what} dW{l} (split-K)"),
                    &down(&bp, dwg),
                    dw,
                    atol,
                    rtol,
                );
                let (atol, rtol) = band(p, db);
                assert_close(&format!("{what} db{l}"), &down(&bp, dbg), db, atol, rtol);
            }
        }
    }
}

#[test]
fn fourier_features_and_backward() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(11);
    let (n, c) = (401, 7);
    let coords = uniform(&mut rng, n * c, -0.5, 0.5);
    for (m, groups) in [(24, 3), (10, 1)] {
        let freqs = uniform(&mut rng, m * 3, -20.0, 20.0);
        let w = 2 * m + c - 3;
        let mut yc = vec![0.0; n * w];
        let mut yg = be.alloc(n * w).unwrap();
        let (cg, fg) = (up(&be, &coords), up(&be, &freqs));
        cpu.fourier_features(&coords, c, &freqs, groups, &mut yc)
            .unwrap();
        be.fourier_features(&cg, c, &fg, groups, &mut yg).unwrap();
        assert_close32("fourier_features_f32", &down(&be, &yg), &yc, 2e-6, 1e-5);
        let dy = uniform(&mut rng, n * w, -1.0, 1.0);
        let d0 = uniform(&mut rng, n * c, -1.0, 1.0);
        let (mut dc, mut dg) = (d0.clone(), up(&be, &d0));
        cpu.fourier_features_backward(&coords, c, &freqs, groups, &dy, &mut dc)
            .unwrap();
        be.fourier_features_backward(&cg, c, &fg, groups, &up(&be, &dy), &mut dg)
            .unwrap();
        assert_close32(
            "fourier_features_backward_f32",
            &down(&be, &dg),
            &dc,
            1e-4,
            1e-4,
        );
    }
}

/// A centrally symmetric masked lattice (P, 3) in lattice order: the (D+1)² grid points with
/// |k| ≤ 0.5 (P odd, so the centre point is its own antipode).
fn lattice(d: usize) -> Vec<f32> {
    let mut c = Vec::new();
    for i in 0..=d {
        for j in 0..=d {
            let (x, y) = (-0.5 + j as f32 / d as f32, -0.5 + i as f32 / d as f32);
            if x * x + y * y <= 0.25 {
                c.extend([x, y, 0.0]);
            }
        }
    }
    c
}

/// nb random rotation matrices (row-major) from normalized Gaussian quaternions.
fn rotations(rng: &mut StdRng, nb: usize) -> Vec<f32> {
    let mut r = Vec::with_capacity(9 * nb);
    for _ in 0..nb {
        let q: Vec<f64> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
        let s = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        let (w, x, y, z) = (q[0] / s, q[1] / s, q[2] / s, q[3] / s);
        let m = [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ];
        r.extend(m.iter().map(|&v| v as f32));
    }
    r
}

#[test]
fn slice_coords_and_hermitian_assembly() {
    let Some(be) = device() else { return };
    let mut rng = StdRng::seed_from_u64(12);
    let coords = lattice(12);
    let p = coords.len() / 3;
    let nb = 5;
    let zdim = 3;
    let rot = rotations(&mut rng, nb);
    let z = uniform(&mut rng, nb * zdim, -1.0, 1.0);
    for domain in [Domain::Hartley, Domain::Fourier] {
        let ne = domain.n_eval(p);
        let (xg, sg) = be
            .slice_coords(
                &up(&be, &coords),
                &up(&be, &rot),
                Some(&up(&be, &z)),
                nb,
                p,
                zdim,
                domain,
            )
            .unwrap();
        // Host twin of backend/decode.rs: x_bi = c_i·R_b, flipped to z ≤ 0 for Fourier.
        let (mut xh, mut sh) = (Vec::new(), Vec::new());
        for b in 0..nb {
            let r = &rot[9 * b..9 * b + 9];
            for i in 0..ne {
                let c = &coords[3 * i..3 * i + 3];
                let mut v: Vec<f32> = (0..3)
                    .map(|j| c[0] * r[j] + c[1] * r[3 + j] + c[2] * r[6 + j])
                    .collect();
                let mut s = 1.0;
                if domain == Domain::Fourier && v[2] > 0.0 {
                    v.iter_mut().for_each(|t| *t = -*t);
                    s = -1.0;
                }
                xh.extend(v);
                xh.extend(&z[b * zdim..(b + 1) * zdim]);
                sh.push(s);
            }
        }
        // Bit-identical: no FMA contraction in the kernel's rotation.
        assert_close32(
            &format!("slice_coords_f32 x ({domain:?})"),
            &down(&be, &xg),
            &xh,
            0.0,
            0.0,
        );
        assert_close32(
            &format!("slice_coords_f32 sign ({domain:?})"),
            &down(&be, &sg),
            &sh,
            0.0,
            0.0,
        );
    }
    // hermitian_assemble_f32 / _backward against the host formulas of backend/decode.rs.
    let ne = p.div_ceil(2);
    let c = p / 2;
    let top = uniform(&mut rng, nb * ne * 2, -1.0, 1.0);
    let sign: Vec<f32> = (0..nb * ne)
        .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let mut yh = vec![0.0f32; nb * p];
    for b in 0..nb {
        let t = |i: usize| {
            (
                top[2 * (b * ne + i)],
                top[2 * (b * ne + i) + 1] * sign[b * ne + i],
            )
        };
        for i in 0..ne {
            yh[b * p + i] = t(i).0 - t(i).1;
        }
        for j in 0..c {
            let (re, im) = t(c - 1 - j);
            yh[b * p + ne + j] = re + im;
        }
    }
    let sg = up(&be, &sign);
    let yg = be.hermitian_assemble(&up(&be, &top), &sg, nb, p).unwrap();
    assert_close32("hermitian_assemble_f32", &down(&be, &yg), &yh, 0.0, 0.0);
    let dy = uniform(&mut rng, nb * p, -1.0, 1.0);
    let mut dh = vec![0.0f32; nb * ne * 2];
    for b in 0..nb {
        let g = &dy[b * p..(b + 1) * p];
        for i in 0..ne {
            let anti = if i < c { g[ne + c - 1 - i] } else { 0.0 };
            dh[2 * (b * ne + i)] = g[i] + anti;
            dh[2 * (b * ne + i) + 1] = sign[b * ne + i] * (anti - g[i]);
        }
    }
    let dg = be
        .hermitian_assemble_backward(&up(&be, &dy), &sg, nb, p)
        .unwrap();
    assert_close32(
        "hermitian_assemble_backward_f32",
        &down(&be, &dg),
        &dh,
        0.0,
        0.0,
    );
}

#[test]
fn decode_rotated_lattices_forward_backward() {
    let Some(be) = device() else { return };
    let cpu = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(13);
    let coords = lattice(10);
    let p = coords.len() / 3;
    let nb = 3;
    let (m, groups) = (12, 3);
    let freqs: Vec<f32> = (0..m * 3)
        .map(|i| {
            if i % 3 == (i / 3) / (m / 3) {
                3.0 + (i / 3 % (m / 3)) as f32 * 4.0
            } else {
                0.0
            }
        })
        .collect();
    for (domain, zdim, act) in [
        (Domain::Fourier, 4, UnaryOp::Relu),
        (Domain::Hartley, 4, UnaryOp::Gelu),
        (Domain::Fourier, 0, UnaryOp::Tanh),
    ] {
        let host = test_net(&mut rng, 2 * m + zdim, 32, domain.out_dim());
        let net = Net::new(&be, host.clone());
        let rot = rotations(&mut rng, nb);
        let z = uniform(&mut rng, nb * zdim, -1.0, 1.0);
        let dy = uniform(&mut rng, nb * p, -1.0, 1.0);
        // CPU twin: the composed default implementation.
        let cw: Vec<(Vec<f32>, Vec<f32>)> = host
            .iter()
            .map(|(w, b, ..)| (w.clone(), b.clone()))
            .collect();
        let cspec = DecodeSpec::<CpuBackend<f32>> {
            coords: &coords,
            n_points: p,
            freqs: &freqs,
            groups,
            zdim,
            domain,
            mlp: MlpWeights {
                layers: host
                    .iter()
                    .zip(&cw)
                    .map(|((_, _, i, o, r), (w, b))| MlpLayer {
                        w,
                        b,
                        n_in: *i,
                        n_out: *o,
                        residual: *r,
                    })
                    .collect(),
                act: activation(act),
            },
        };
        let zc = (zdim > 0).then_some(&z);
        let (yc, saved_c) = cpu
            .decode_rotated_lattices(&cspec, &rot, zc, nb, true)
            .unwrap();
        let mut dzc = vec![0.0f32; nb * zdim];
        let mut gc: Vec<(Vec<f32>, Vec<f32>)> = host
            .iter()
            .map(|(w, b, ..)| (vec![0.0; w.len()], vec![0.0; b.len()]))
            .collect();
        {
            let mut dl: Vec<MlpLayerGrad<'_, CpuBackend<f32>>> = gc
                .iter_mut()
                .map(|(dw, db)| MlpLayerGrad { dw, db })
                .collect();
            let dzo = (zdim > 0).then_some(&mut dzc);
            cpu.decode_rotated_lattices_backward(
                &cspec,
                &rot,
                zc,
                nb,
                &saved_c.unwrap(),
                &dy,
                dzo,
                &mut dl,
            )
            .unwrap();
        }

        let (cg, fg, rg, zg) = (
            up(&be, &coords),
            up(&be, &freqs),
            up(&be, &rot),
            up(&be, &z),
        );
        let gspec = DecodeSpec::<CudaBackend> {
            coords: &cg,
            n_points: p,
            freqs: &fg,
            groups,
            zdim,
            domain,
            mlp: net.weights(act),
        };
        let zgo = (zdim > 0).then_some(&zg);
        let what = format!("decode ({domain:?}, zdim {zdim}, {act:?})");
        // Without save: positional encoding fused into layer 0 (gemm_pe_f32).
        let (y1, none) = be
            .decode_rotated_lattices(&gspec, &rg, zgo, nb, false)
            .unwrap();
        assert!(none.is_none());
        let ycd = f64s(&yc);
        assert_close(
            &format!("{what} forward, gemm_pe_f32"),
            &down(&be, &y1),
            &ycd,
            1e-4 * rms(&ycd),
            1e-4,
        );
        // With save: fourier_features_f32 + gemm_fused_f32.
        let (y2, saved) = be
            .decode_rotated_lattices(&gspec, &rg, zgo, nb, true)
            .unwrap();
        assert_close(
            &format!("{what} forward, saved"),
            &down(&be, &y2),
            &ycd,
            1e-4 * rms(&ycd),
            1e-4,
        );
        let mut dzg = be.zeros(nb * zdim).unwrap();
        let mut gg: Vec<(CudaSlice<f32>, CudaSlice<f32>)> = host
            .iter()
            .map(|(w, b, ..)| (be.zeros(w.len()).unwrap(), be.zeros(b.len()).unwrap()))
            .collect();
        {
            let mut dl: Vec<MlpLayerGrad<'_, CudaBackend>> = gg
                .iter_mut()
                .map(|(dw, db)| MlpLayerGrad { dw, db })
                .collect();
            let dzo = (zdim > 0).then_some(&mut dzg);
            be.decode_rotated_lattices_backward(
                &gspec,
                &rg,
                zgo,
                nb,
                &saved.unwrap(),
                &up(&be, &dy),
                dzo,
                &mut dl,
            )
            .unwrap();
        }
        if zdim > 0 {
            let d = f64s(&dzc);
            assert_close(
                &format!("{what} dz"),
                &down(&be, &dzg),
                &d,
                1e-4 * rms(&d),
                1e-4,
            );
        }
        for (l, ((dwg, dbg), (dw, db))) in gg.iter().zip(&gc).enumerate() {
            let (dw, db) = (f64s(dw), f64s(db));
            assert_close(
                &format!("{what} dW{l}"),
                &down(&be, dwg),
                &dw,
                1e-4 * rms(&dw),
                1e-4,
            );
            assert_close(
                &format!("{what} db{l}"),
                &down(&be, dbg),
                &db,
                1e-4 * rms(&db),
                1e-4,
            );
        }
    }
}

#[test]
fn ctf_and_translate_ht() {
    let Some(be) = device() else { return };
    let mut rng = StdRng::seed_from_u64(14);
    let coords = lattice(16);
    let p = coords.len() / 3;
    let freqs: Vec<[f32; 2]> = (0..p).map(|i| [coords[3 * i], coords[3 * i + 1]]).collect();
    let flat: Vec<f32> = freqs.iter().flatten().copied().collect();
    let nb = 4;
    let rows: Vec<[f32; 9]> = (0..nb)
        .map(|_| {
            [
                128.0,
                rng.random_range(0.8..2.0),
                rng.random_range(5000.0..25000.0),
                rng.random_range(5000.0..25000.0),
                rng.random_range(-90.0..90.0),
                300.0,
                2.7,
                0.1,
                rng.random_range(0.0..30.0),
            ]
        })
        .collect();
    let mut want = Vec::new();
    for r in &rows {
        let f: Vec<[f32; 2]> = freqs.iter().map(|k| [k[0] / r[1], k[1] / r[1]]).collect();
        want.extend(cryofield::fourier::ctf::compute_ctf(
            &f,
            &cryofield::fourier::ctf::Ctf::from_row(r),
        ));
    }
    let params: Vec<f32> = rows.iter().flatten().copied().collect();
    let fg = up(&be, &flat);
    let got = be.ctf(&fg, &up(&be, &params), nb, p).unwrap();
    // γ reaches ~10² rad at the lattice corner: f32 rounding of γ moves sin γ by ~1e-5.
    assert_close32("ctf_f32", &down(&be, &got), &want, 1e-4, 1e-4);

    let nt = 7;
    let hts = uniform(&mut rng, nb * p, -1.0, 1.0);
    let shifts: Vec<[f32; 2]> = (0..nb * nt)
        .map(|_| [rng.random_range(-5.0..5.0), rng.random_range(-5.0..5.0)])
        .collect();
    let want = cryofield::fourier::shift::translate_ht(&hts, &freqs, &shifts, nt);
    let sflat: Vec<f32> = shifts.iter().flatten().copied().collect();
    let got = be
        .translate_ht(&up(&be, &hts), &fg, &up(&be, &sflat), nb, nt, p)
        .unwrap();
    assert_close32("translate_ht_f32", &down(&be, &got), &want, 1e-6, 1e-5);
}

#[test]
fn pose_scores_and_top_k() {
    let Some(be) = device() else { return };
    let mut rng = StdRng::seed_from_u64(15);
    let (nb, nr, nt, p) = (3, 70, 5, 100);
    let images = uniform(&mut rng, nb * nt * p, -1.0, 1.0);
    let ctf = uniform(&mut rng, nb * p, -1.0, 1.0);
    for per_image in [false, true] {
        let nbs = if per_image { nb } else { 1 };
        let slices = uniform(&mut rng, nbs * nr * p, -1.0, 1.0);
        for with_ctf in [false, true] {
            let c = with_ctf.then_some(ctf.as_slice());
            let want = pose_scores_ref(&slices, per_image, &images, c, nb, nr, nt, p);
            let cg = with_ctf.then(|| up(&be, &ctf));
            let got = be
                .pose_scores(
                    &up(&be, &slices),
                    per_image,
                    &up(&be, &images),
                    cg.as_ref(),
                    nb,
                    nr,
                    nt,
                    p,
                )
                .unwrap();
            let what = format!("pose_scores_f32 (per-image {per_image}, ctf {with_ctf})");
            let got = down(&be, &got);
            assert_close(&what, &got, &want, 1e-5, 1e-5);
            let k = 6;
            let (ig, vg) = be.top_k_smallest(&up(&be, &got), nb, nr * nt, k).unwrap();
            let (ih, vh) = top_k_ref(&got, nb, nr * nt, k);
            assert_eq!(ig, ih, "top_k_smallest_f32 indices");
            assert_eq!(vg, vh, "top_k_smallest_f32 values");
        }
    }
    // Ties, NaN and k = n.
    let x = [2.0, f32::NAN, 1.0, 1.0, -3.0, 2.0, f32::INFINITY, 0.5];
    let (ig, vg) = be.top_k_smallest(&up(&be, &x), 2, 4, 4).unwrap();
    let (ih, vh) = top_k_ref(&x, 2, 4, 4);
    assert_eq!((ig, vg), (ih, vh), "top_k_smallest_f32 ties / NaN");
}

// ---------------------------------------------------------------- auction

/// The first index where two slices differ, with both values.
fn first_diff<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("length {} vs {}", a.len(), b.len()));
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y)?;
    let bad = a.iter().zip(b).filter(|(x, y)| x != y).count();
    Some(format!(
        "first difference at {i}: gpu {:?}, cpu {:?}; {bad} of {} differ",
        a[i],
        b[i],
        a.len()
    ))
}

/// Points (k, dim) uniform in [−1, 1]; with `distinct`, the observed points upsampled as the
/// spec's U (all distinct points once, the rest redrawn with replacement).
fn cloud(rng: &mut StdRng, k: usize, dim: usize, distinct: Option<usize>) -> Vec<f32> {
    let d = distinct.unwrap_or(k);
    let base = uniform(rng, d * dim, -1.0, 1.0);
    let mut out = base.clone();
    for _ in d..k {
        let j = rng.random_range(0..d);
        out.extend_from_slice(&base[j * dim..(j + 1) * dim]);
    }
    out
}

#[test]
fn auction_points_vs_twin_and_hungarian() {
    // The kernel against its twin (`assignment::auction` in f32, Jacobi): identical results,
    // prices and assignments (dummy rows included), cold and then warm; and both within m·ε
    // (+ f32 slack) of the exact optimum of the f64 costs of the same points.
    let Some(be) = device() else { return };
    let mut rng = StdRng::seed_from_u64(16);
    let params = AuctionParams {
        bidding: Bidding::Jacobi,
        ..AuctionParams::default()
    };
    let u = f32::EPSILON as f64 / 2.0;
    // (batch, n, m, dim, upsampled distinct rows): the spec's 1024² problems, upsampled
    // 2-D projections, subunits (dummy rows), tiny and odd sizes
    let cases = [
        (8, 1024, 1024, 3, None),
        (6, 256, 256, 2, Some(64)),
        (6, 128, 512, 3, None),
        (5, 1, 7, 1, None),
        (4, 33, 40, 2, Some(9)),
    ];
    for (nb, n, m, dim, distinct) in cases {
        let what = format!("auction_points_f32 {nb}×({n}×{m}, dim {dim}, upsampled {distinct:?})");
        let rows: Vec<f32> = (0..nb)
            .flat_map(|_| cloud(&mut rng, n, dim, distinct))
            .collect();
        let mut cols = uniform(&mut rng, nb * m * dim, -1.0, 1.0);
        let rg = up(&be, &rows);
        let mut gs = vec![AuctionState::<f32>::new(); nb];
        let mut cs = gs.clone();
        for step in ["cold", "warm (model points moved ≤ 1e-3)"] {
            let cg = up(&be, &cols);
            let t0 = std::time::Instant::now();
            let got = be
                .auction_points_batch(&rg, &cg, nb, n, m, dim, &params, &mut gs)
                .unwrap_or_else(|e| panic!("{what} {step}: {e}"));
            let dt = t0.elapsed().as_secs_f64();
            let want = auction_points_batch(&rows, &cols, nb, n, m, dim, &params, &mut cs).unwrap();
            for b in 0..nb {
                assert_eq!(got[b], want[b], "{what} {step} problem {b}: device vs twin");
                if let Some(d) = first_diff(gs[b].prices(), cs[b].prices()) {
                    panic!("{what} {step} problem {b} prices: {d}");
                }
                if let Some(d) = first_diff(gs[b].col_of_row(), cs[b].col_of_row()) {
                    panic!("{what} {step} problem {b} assignment: {d}");
                }
            }
            let opts: Vec<(f64, f64)> = (0..nb)
                .into_par_iter()
                .map(|b| {
                    let r = &rows[b * n * dim..(b + 1) * n * dim];
                    let c = &cols[b * m * dim..(b + 1) * m * dim];
                    let cost: Vec<f64> = (0..n * m)
                        .map(|e| {
                            let (i, j) = (e / m, e % m);
                            (0..dim)
                                .map(|k| (r[i * dim + k] as f64 - c[j * dim + k] as f64).powi(2))
                                .sum()
                        })
                        .collect();
                    let max_c = cost.iter().fold(0.0f64, |a, &x| a.max(x));
                    (linear_sum_assignment(&cost, n, m).unwrap().cost, max_c)
                })
                .collect();
            for (b, (r, &(opt, max_c))) in got.iter().zip(&opts).enumerate() {
                // f32 costs and prices: each row's ε-CS holds for the f64 costs up to
                // ~12u·max C + 5u·max p (see assignment::auction's tests)
                let max_p = gs[b].prices().iter().fold(0.0f32, |a, &x| a.max(x)) as f64;
                let slack = 16.0 * u * m as f64 * (max_c + max_p);
                let bound = opt + m as f64 * r.eps + slack;
                assert!(
                    r.assignment.cost >= opt - 1e-9 * opt.abs() && r.assignment.cost <= bound,
                    "{what} {step} problem {b}: cost {} vs optimum {opt}: excess {:e} > m·ε {:e} \
                     + slack {slack:e}",
                    r.assignment.cost,
                    r.assignment.cost - opt,
                    m as f64 * r.eps
                );
            }
            let stat = |f: fn(&cryofield::assignment::AuctionResult) -> u64| {
                got.iter().map(f).max().unwrap_or(0)
            };
            println!(
                "{what} {step}: {dt:.3} s for the batch (upload + launch + download); at most \
                 {} phases, {} bids, {} rounds per problem; warm {}/{nb}",
                stat(|r| r.phases as u64),
                stat(|r| r.bids),
                stat(|r| r.rounds),
                got.iter().filter(|r| r.warm).count()
            );
            for c in cols.iter_mut() {
                *c += rng.random_range(-1e-3f32..1e-3);
            }
        }
    }
    // Errors: a NaN coordinate names its problem; unsupported shapes are refused.
    let (nb, n, m, dim) = (3, 8, 8, 3);
    let rows = uniform(&mut rng, nb * n * dim, -1.0, 1.0);
    let mut cols = uniform(&mut rng, nb * m * dim, -1.0, 1.0);
    cols[m * dim + 5] = f32::NAN;
    let mut st = vec![AuctionState::<f32>::new(); nb];
    let e = be
        .auction_points_batch(
            &up(&be, &rows),
            &up(&be, &cols),
            nb,
            n,
            m,
            dim,
            &params,
            &mut st,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("problem 1") && e.contains("not finite"), "{e}");
    let r4 = uniform(&mut rng, 4, -1.0, 1.0);
    let e = be
        .auction_points_batch(
            &up(&be, &r4),
            &up(&be, &r4),
            1,
            1,
            1,
            4,
            &params,
            &mut st[..1],
        )
        .unwrap_err();
    assert!(e.to_string().contains("dim = 4"), "{e}");
    let big = uniform(&mut rng, 2000, -1.0, 1.0);
    let e = be
        .auction_points_batch(
            &up(&be, &big),
            &up(&be, &big),
            1,
            2000,
            2000,
            1,
            &params,
            &mut st[..1],
        )
        .unwrap_err();
    assert!(e.to_string().contains("shared memory"), "{e}");
}

// ---------------------------------------------------------------- NVRTC

/// Whether libnvrtc loads; otherwise prints why (or fails under CRYOFIELD_REQUIRE_NVRTC=1).
fn nvrtc_or_skip() -> bool {
    match nvrtc::load() {
        Ok(info) => {
            println!(
                "NVRTC {}.{} from {}",
                info.version.0, info.version.1, info.source
            );
            true
        }
        Err(e) => {
            if std::env::var("CRYOFIELD_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
                panic!("CRYOFIELD_REQUIRE_NVRTC=1 but {e}");
            }
            println!("skipped: libnvrtc not found ({e})");
            false
        }
    }
}

/// Architectures the compile check targets (`CRYOFIELD_KERNEL_ARCHS`, default sm_80,sm_90).
fn archs() -> Vec<String> {
    std::env::var("CRYOFIELD_KERNEL_ARCHS")
        .unwrap_or_else(|_| "sm_80,sm_90".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn nvrtc_compiles_every_kernel() {
    if !nvrtc_or_skip() {
        return;
    }
    let t0 = std::time::Instant::now();
    println!(
        "{:<6} {:<34} {:>5} {:>6} {:>7} {:>7} {:>6}",
        "arch", "kernel", "regs", "stack", "spill-s", "spill-l", "smem"
    );
    for arch in archs() {
        for m in kernels::MODULES {
            let c = nvrtc::compile_module(m, &arch, &["--ptxas-options=-v"])
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.cubin.is_empty(), "{}: empty cubin", m.file);
            let res = nvrtc::parse_ptxas_log(&c.log);
            for k in m.kernels {
                let r = res
                    .iter()
                    .find(|r| r.kernel == *k)
                    .unwrap_or_else(|| panic!("{}: no ptxas report for {k} in\n{}", m.file, c.log));
                println!(
                    "{:<6} {:<34} {:>5} {:>6} {:>7} {:>7} {:>6}",
                    arch,
                    k,
                    r.registers,
                    r.stack_bytes,
                    r.spill_stores,
                    r.spill_loads,
                    r.smem_bytes
                );
            }
            assert_eq!(
                res.len(),
                m.kernels.len(),
                "{}: kernels in the cubin",
                m.file
            );
        }
    }
    println!("compiled in {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn nvrtc_error_shows_log_and_options() {
    if !nvrtc_or_skip() {
        return;
    }
    let src = kernels::MODULES
        .iter()
        .find(|m| m.name == "elementwise")
        .expect("elementwise module")
        .source
        .replace(
            "y[i] = mul * x[i] + add;",
            "y[i] = mul * x[i] + undeclared_add;",
        );
    let e = nvrtc::compile_source("kernels/elementwise.cu", &src, "sm_80", &[]).unwrap_err();
    let msg = e.to_string();
    println!("{msg}");
    assert!(
        msg.contains("NVRTC could not compile kernels/elementwise.cu for sm_80"),
        "{msg}"
    );
    assert!(
        msg.contains("--gpu-architecture=sm_80") && msg.contains("--std=c++17"),
        "{msg}"
    );
    assert!(
        msg.contains("undeclared_add") && msg.contains("error"),
        "{msg}"
    );
    // #line directives point the log into the kernel file, not the concatenated source.
    assert!(msg.contains("kernels/elementwise.cu("), "{msg}");
}

// ---------------------------------------------------------------- EDM sampler steps

#[test]
fn edm_steps_vs_twins() {
    // kernels/edm.cu against the f32 twins that dps() runs: a DPS-sized state (10 clouds ×
    // 1024 points × 3), one score, Euler predictor and correction with noise.
    let Some(be) = device() else { return };
    use cryofield::pointcloud::dps::{edm_correct, edm_euler, edm_score};
    let mut rng = StdRng::seed_from_u64(25);
    let n = 10 * 1024 * 3;
    let x = uniform(&mut rng, n, -1.0, 1.0);
    let d = uniform(&mut rng, n, -1.0, 1.0);
    let g = uniform(&mut rng, n, -50.0, 50.0);
    let s2 = uniform(&mut rng, n, -50.0, 50.0);
    let noise = uniform(&mut rng, n, -3.0, 3.0);
    let (t, c_dt, a1, a2, sd) = (0.37f64, 0.021f64, 0.0105f64, 0.0098f64, 0.093f64);

    let mut s_cpu = vec![0.0f32; n];
    edm_score(&x, &d, &g, (1.0 / (t * t)) as f32, &mut s_cpu);
    let (xg, dg, gg) = (up(&be, &x), up(&be, &d), up(&be, &g));
    let mut sg = up(&be, &vec![f32::NAN; n]);
    be.edm_score(&xg, &dg, &gg, t, &mut sg).unwrap();
    assert_close32("edm_score_f32", &down(&be, &sg), &s_cpu, 1e-5, 1e-6);

    let mut xe_cpu = vec![0.0f32; n];
    edm_euler(&x, &s_cpu, c_dt as f32, &mut xe_cpu);
    let mut xeg = up(&be, &vec![f32::NAN; n]);
    be.edm_euler(&xg, &sg, c_dt, &mut xeg).unwrap();
    assert_close32("edm_euler_f32", &down(&be, &xeg), &xe_cpu, 1e-6, 1e-6);

    let mut x_cpu = x.clone();
    edm_correct(
        &mut x_cpu, &s_cpu, &s2, a1 as f32, a2 as f32, sd as f32, &noise,
    );
    let mut xg2 = up(&be, &x);
    let (s2g, ng) = (up(&be, &s2), up(&be, &noise));
    be.edm_correct(&mut xg2, &sg, &s2g, a1, a2, sd, &ng)
        .unwrap();
    assert_close32("edm_correct_f32", &down(&be, &xg2), &x_cpu, 1e-6, 1e-6);
}

#[test]
fn pose_scores_throughput() {
    // pose·image scores per second at a pose-search size (64 images × 4608 rotations × 49
    // shifts over 800 band-limited lattice points, CTF on, slices shared), for the GPU check's
    // summary; a sampled entry is checked against the f64 reference.
    let Some(be) = device() else { return };
    let mut rng = StdRng::seed_from_u64(17);
    let (nb, nr, nt, p) = (64, 4608, 49, 800);
    let slices = uniform(&mut rng, nr * p, -1.0, 1.0);
    let images = uniform(&mut rng, nb * nt * p, -1.0, 1.0);
    let ctf = uniform(&mut rng, nb * p, -1.0, 1.0);
    let (sg, ig, cg) = (up(&be, &slices), up(&be, &images), up(&be, &ctf));
    let run = || {
        be.pose_scores(&sg, false, &ig, Some(&cg), nb, nr, nt, p)
            .unwrap()
    };
    let warm = down(&be, &run());
    let reps = 5;
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        let out = run();
        be.synchronize().unwrap();
        drop(out);
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let scores = (nb * nr * nt) as f64;
    println!(
        "pose_scores_f32 {nb}×{nr}×{nt} over P = {p}: {:.1} ms, {:.3e} pose·image scores/s ({:.0} GFLOP/s at 3 flops per point)",
        dt * 1e3,
        scores / dt,
        3.0 * scores * p as f64 / dt / 1e9
    );
    let (b, r, t) = (37, 4001, 23);
    let want: f64 = (0..p)
        .map(|q| {
            let c = ctf[b * p + q] as f64 * slices[r * p + q] as f64;
            (c - images[(b * nt + t) * p + q] as f64).powi(2)
        })
        .sum();
    let got = warm[(b * nr + r) * nt + t] as f64;
    assert!(
        (got - want).abs() <= 1e-3 * want,
        "score ({b}, {r}, {t}): gpu {got}, f64 {want}"
    );
}
