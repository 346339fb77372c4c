//! Finite-difference gradient checks (f64, central differences) for every tape op, the fused
//! MLP against the same network built from primitive ops, and f32/f64 forward agreement.

use cryofield::autodiff::{ParamStore, Tape, Tensor, Var};
use cryofield::backend::cpu::CpuBackend;
use cryofield::backend::{Activation, Backend, UnaryOp};
use cryofield::nn::{Mlp, PeKind, PositionalEncoding};
use cryofield::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type B64 = CpuBackend<f64>;

/// An input of the function under test: values and shape.
struct In {
    v: Vec<f64>,
    shape: Vec<usize>,
}

fn rand_in(rng: &mut StdRng, shape: &[usize], lo: f64, hi: f64) -> In {
    let n = shape.iter().product();
    In {
        v: (0..n).map(|_| rng.random_range(lo..hi)).collect(),
        shape: shape.to_vec(),
    }
}

/// Values in ±[0.1, 1): away from the kinks of relu/leaky-relu and from zero divisors.
fn rand_away(rng: &mut StdRng, shape: &[usize]) -> In {
    let mut x = rand_in(rng, shape, 0.1, 1.0);
    x.v.iter_mut().for_each(|v| {
        if rng.random_bool(0.5) {
            *v = -*v
        }
    });
    x
}

/// loss = Σ y ⊙ r for fixed random r (r is a constant so every output element is weighted).
fn weighted_loss(t: &mut Tape<'_, B64>, y: Var, r: &[f64]) -> Result<Var> {
    let shape = t.shape(y).to_vec();
    let rc = t.constant(Tensor::from_slice(&B64::new(), r, &shape)?);
    let p = t.mul(y, rc)?;
    t.sum_all(p, 1.0)
}

/// Check ∂loss/∂inputs from the tape against central differences for every input element.
fn gradcheck<F>(name: &str, inputs: &[In], f: F)
where
    F: Fn(&mut Tape<'_, B64>, &[Var]) -> Result<Var>,
{
    let be = B64::new();
    let store = ParamStore::new();
    let mut rng = StdRng::seed_from_u64(0xfeed);
    let eval = |vals: &[Vec<f64>], r: Option<&[f64]>| -> (f64, Vec<f64>, Option<Vec<Vec<f64>>>) {
        let mut t = Tape::new(&be, &store);
        let vars: Vec<Var> = inputs
            .iter()
            .zip(vals)
            .map(|(i, v)| t.input(Tensor::from_slice(&be, v, &i.shape).unwrap()))
            .collect();
        let y = f(&mut t, &vars).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
        let yv = t.to_vec(y).unwrap();
        let Some(r) = r else { return (0.0, yv, None) };
        let l = weighted_loss(&mut t, y, r).unwrap();
        let lv = t.to_vec(l).unwrap()[0];
        let g = t.backward(l).unwrap();
        let grads = vars
            .iter()
            .map(|v| {
                g.get(*v)
                    .cloned()
                    .unwrap_or_else(|| vec![0.0; t.shape(*v).iter().product()])
            })
            .collect();
        (lv, yv, Some(grads))
    };
    let base: Vec<Vec<f64>> = inputs.iter().map(|i| i.v.clone()).collect();
    let (_, y0, _) = eval(&base, None);
    let r: Vec<f64> = (0..y0.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (_, _, grads) = eval(&base, Some(&r));
    let grads = grads.unwrap();
    let h = 1e-6;
    let mut worst = 0.0f64;
    for (k, inp) in inputs.iter().enumerate() {
        for j in 0..inp.v.len() {
            let mut plus = base.clone();
            plus[k][j] += h;
            let mut minus = base.clone();
            minus[k][j] -= h;
            let num = (eval(&plus, Some(&r)).0 - eval(&minus, Some(&r)).0) / (2.0 * h);
            let ana = grads[k][j];
            let err = (num - ana).abs() / (1.0 + num.abs().max(ana.abs()));
            worst = worst.max(err);
            assert!(
                err < 1e-6,
                "{name}: input {k} element {j}: analytic {ana:.10e} vs numeric {num:.10e}"
            );
        }
    }
    eprintln!("{name}: max relative error {worst:.2e}");
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

#[test]
fn grad_matmul_linear_bias() {
    let mut r = rng();
    let (a, b) = (
        rand_in(&mut r, &[4, 3], -1.0, 1.0),
        rand_in(&mut r, &[3, 5], -1.0, 1.0),
    );
    gradcheck("matmul", &[a, b], |t, v| t.matmul(v[0], v[1]));
    let x = rand_in(&mut r, &[2, 3, 4], -1.0, 1.0);
    let w = rand_in(&mut r, &[5, 4], -1.0, 1.0);
    let b = rand_in(&mut r, &[5], -1.0, 1.0);
    gradcheck("linear", &[x, w, b], |t, v| {
        t.linear(v[0], v[1], Some(v[2]))
    });
    let x = rand_in(&mut r, &[6, 4], -1.0, 1.0);
    let w = rand_in(&mut r, &[3, 4], -1.0, 1.0);
    gradcheck("linear_nobias", &[x, w], |t, v| t.linear(v[0], v[1], None));
    let x = rand_in(&mut r, &[6, 4], -1.0, 1.0);
    let b = rand_in(&mut r, &[4], -1.0, 1.0);
    gradcheck("add_bias", &[x, b], |t, v| t.add_bias(v[0], v[1]));
}

#[test]
fn grad_unary() {
    let ops = [
        UnaryOp::Relu,
        UnaryOp::LeakyRelu(0.1),
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Exp,
        UnaryOp::Softplus,
        UnaryOp::Square,
    ];
    let mut r = rng();
    for op in ops {
        let x = rand_away(&mut r, &[5, 7]);
        gradcheck(&format!("{op:?}"), &[x], move |t, v| t.unary(v[0], op));
    }
    let x = rand_in(&mut r, &[5, 7], 0.2, 3.0);
    gradcheck("Log", &[x], |t, v| t.unary(v[0], UnaryOp::Log));
    // softplus above its linear threshold
    let x = rand_in(&mut r, &[3], 21.0, 25.0);
    gradcheck("Softplus>20", &[x], |t, v| t.unary(v[0], UnaryOp::Softplus));
}

#[test]
fn grad_binary_affine() {
    let mut r = rng();
    for (name, op) in [
        ("add", cryofield::backend::BinaryOp::Add),
        ("sub", cryofield::backend::BinaryOp::Sub),
        ("mul", cryofield::backend::BinaryOp::Mul),
        ("div", cryofield::backend::BinaryOp::Div),
    ] {
        let (a, b) = (rand_away(&mut r, &[4, 6]), rand_away(&mut r, &[4, 6]));
        gradcheck(name, &[a, b], move |t, v| t.binary(v[0], v[1], op));
    }
    // the same var on both sides: x⊙x and x/x
    let x = rand_away(&mut r, &[10]);
    gradcheck("mul_self", &[x], |t, v| t.mul(v[0], v[0]));
    let x = rand_in(&mut r, &[3, 4], -1.0, 1.0);
    gradcheck("affine", &[x], |t, v| t.affine(v[0], -2.5, 0.75));
}

#[test]
fn grad_reductions_broadcast() {
    let mut r = rng();
    let x = rand_in(&mut r, &[4, 5], -1.0, 1.0);
    gradcheck("sum_all", &[x], |t, v| t.sum_all(v[0], 0.3));
    let x = rand_in(&mut r, &[4, 5], -1.0, 1.0);
    gradcheck("mean_all", &[x], |t, v| t.mean_all(v[0]));
    let x = rand_in(&mut r, &[4, 5], -1.0, 1.0);
    gradcheck("sum_rows", &[x], |t, v| t.sum_rows(v[0], 0.5));
    let x = rand_in(&mut r, &[2, 4, 5], -1.0, 1.0);
    gradcheck("sum_cols", &[x], |t, v| t.sum_cols(v[0], 2.0));
    let x = rand_in(&mut r, &[5], -1.0, 1.0);
    gradcheck("broadcast_rows", &[x], |t, v| t.broadcast_rows(v[0], 3));
    let x = rand_in(&mut r, &[4], -1.0, 1.0);
    gradcheck("broadcast_cols", &[x], |t, v| t.broadcast_cols(v[0], 6));
}

#[test]
fn grad_layout() {
    let mut r = rng();
    let (a, b, c) = (
        rand_in(&mut r, &[3, 2], -1.0, 1.0),
        rand_in(&mut r, &[3, 4], -1.0, 1.0),
        rand_in(&mut r, &[3, 1], -1.0, 1.0),
    );
    gradcheck("concat", &[a, b, c], |t, v| {
        t.concat(&[v[0], v[1], v[2], v[0]])
    });
    let x = rand_in(&mut r, &[3, 7], -1.0, 1.0);
    gradcheck("slice", &[x], |t, v| t.slice(v[0], 2, 4));
    let x = rand_in(&mut r, &[3, 4], -1.0, 1.0);
    gradcheck("reshape", &[x], |t, v| t.reshape(v[0], &[2, 6]));
    let x = rand_in(&mut r, &[5, 3], -1.0, 1.0);
    gradcheck("gather_rows", &[x], |t, v| {
        t.gather_rows(v[0], &[4, 0, 4, 2, 2, 2])
    });
}

#[test]
fn grad_norm_softmax_losses() {
    let mut r = rng();
    let (x, g, b) = (
        rand_in(&mut r, &[4, 6], -2.0, 2.0),
        rand_in(&mut r, &[6], 0.5, 1.5),
        rand_in(&mut r, &[6], -0.5, 0.5),
    );
    gradcheck("layer_norm", &[x, g, b], |t, v| {
        t.layer_norm(v[0], v[1], v[2], 1e-5)
    });
    let x = rand_in(&mut r, &[4, 6], -3.0, 3.0);
    gradcheck("softmax", &[x], |t, v| t.softmax(v[0]));
    let (a, b) = (
        rand_in(&mut r, &[4, 5], -1.0, 1.0),
        rand_in(&mut r, &[4, 5], -1.0, 1.0),
    );
    gradcheck("mse", &[a, b], |t, v| t.mse(v[0], v[1]));
    let (m, s, x) = (
        rand_in(&mut r, &[3, 4], -1.0, 1.0),
        rand_in(&mut r, &[3, 4], -1.0, 1.0),
        rand_in(&mut r, &[3, 4], -1.0, 1.0),
    );
    gradcheck("gaussian_nll", &[m, s, x], |t, v| {
        t.gaussian_nll(v[0], v[1], v[2])
    });
    let (m, s) = (
        rand_in(&mut r, &[8, 3], -1.0, 1.0),
        rand_in(&mut r, &[8, 3], -1.0, 1.0),
    );
    gradcheck("kl_std_normal", &[m, s], |t, v| t.kl_std_normal(v[0], v[1]));
}

#[test]
fn loss_values_match_closed_forms() {
    let be = B64::new();
    let store = ParamStore::new();
    let mut t = Tape::new(&be, &store);
    let mu = t.input(Tensor::from_slice(&be, &[0.5, -1.0, 0.0, 2.0], &[2, 2]).unwrap());
    let lv = t.input(Tensor::from_slice(&be, &[0.0, 0.5, -0.5, 1.0], &[2, 2]).unwrap());
    let kl = t.kl_std_normal(mu, lv).unwrap();
    // −½·(1/2)·Σ(1 + s − μ² − e^s)
    let e: f64 = [(0.5, 0.0), (-1.0, 0.5), (0.0, -0.5), (2.0, 1.0)]
        .iter()
        .map(|&(m, s): &(f64, f64)| 1.0 + s - m * m - s.exp())
        .sum::<f64>()
        * -0.25;
    assert!((t.to_vec(kl).unwrap()[0] - e).abs() < 1e-14);
    let x = t.input(Tensor::from_slice(&be, &[1.0, 1.0, 1.0, 1.0], &[2, 2]).unwrap());
    let nll = t.gaussian_nll(mu, lv, x).unwrap();
    let e: f64 = [(0.5, 0.0), (-1.0, 0.5), (0.0, -0.5), (2.0, 1.0)]
        .iter()
        .map(|&(m, s): &(f64, f64)| 0.5 * (s + (1.0 - m) * (1.0 - m) * (-s).exp()))
        .sum::<f64>()
        / 4.0;
    assert!((t.to_vec(nll).unwrap()[0] - e).abs() < 1e-14);
    let sm = t.softmax(mu).unwrap();
    let v = t.to_vec(sm).unwrap();
    let e0 = 0.5f64.exp() / (0.5f64.exp() + (-1.0f64).exp());
    assert!((v[0] - e0).abs() < 1e-14 && (v[0] + v[1] - 1.0).abs() < 1e-14);
}

#[test]
fn grad_fourier_features() {
    let mut r = rng();
    // gaussian-style (1 group, dense frequencies) and per-axis (3 groups); coords carry a latent.
    let coords = rand_in(&mut r, &[4, 5], -0.5, 0.5);
    let freqs: Vec<f64> = (0..12).map(|_| r.random_range(-6.0..6.0)).collect();
    gradcheck("fourier_features_gaussian", &[coords], move |t, v| {
        let f = t.constant(Tensor::from_slice(&B64::new(), &freqs, &[4, 3])?);
        t.fourier_features(v[0], f, 1)
    });
    let coords = rand_in(&mut r, &[4, 3], -0.5, 0.5);
    let pe = PositionalEncoding::new(PeKind::GeomFt, 8, None, 0, None, &mut r).unwrap();
    gradcheck("fourier_features_geom_ft", &[coords], move |t, v| {
        pe.forward(t, v[0])
    });
}

/// The fused MLP op: gradients by finite differences, for every activation, with residual and
/// plain layers, with respect to the input and every weight and bias.
#[test]
fn grad_fused_mlp() {
    let mut r = rng();
    let acts = [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Silu,
        Activation::Gelu,
        Activation::Tanh,
    ];
    for act in acts {
        // 4 → 6 (plain) → 6 (residual) → 6 (residual) → 2 (plain)
        let dims = [(4, 6, false), (6, 6, true), (6, 6, true), (6, 2, false)];
        let mut ins = vec![rand_in(&mut r, &[5, 4], -1.0, 1.0)];
        for &(i, o, _) in &dims {
            ins.push(rand_in(&mut r, &[o, i], -0.6, 0.6));
            ins.push(rand_in(&mut r, &[o], -0.3, 0.3));
        }
        let residual: Vec<bool> = dims.iter().map(|d| d.2).collect();
        gradcheck(&format!("mlp_{act:?}"), &ins, move |t, v| {
            let layers: Vec<(Var, Var)> = (0..4).map(|l| (v[1 + 2 * l], v[2 + 2 * l])).collect();
            t.mlp(v[0], &layers, &residual, act)
        });
    }
}

/// Fused and primitive-composed forms of the same `ResidLinearMLP` agree in value and in every
/// gradient.
#[test]
fn fused_mlp_matches_composed() {
    for act in [Activation::Relu, Activation::Silu, Activation::Gelu] {
        let be = B64::new();
        let mut store = ParamStore::new();
        let mut r = rng();
        let mlp = Mlp::resid(&be, &mut store, "dec", 7, 3, 16, 2, act, &mut r).unwrap();
        let x: Vec<f64> = (0..9 * 7).map(|_| r.random_range(-1.0..1.0)).collect();
        let target: Vec<f64> = (0..9 * 2).map(|_| r.random_range(-1.0..1.0)).collect();
        let run = |fused: bool| {
            let mut t = Tape::new(&be, &store);
            let xv = t.input(Tensor::from_slice(&be, &x, &[9, 7]).unwrap());
            let tv = t.constant(Tensor::from_slice(&be, &target, &[9, 2]).unwrap());
            let y = if fused {
                mlp.forward(&mut t, xv)
            } else {
                mlp.forward_unfused(&mut t, xv)
            }
            .unwrap();
            let l = t.mse(y, tv).unwrap();
            let g = t.backward(l).unwrap();
            let mut out = vec![t.to_vec(y).unwrap(), g.get(xv).unwrap().clone()];
            for id in store.ids() {
                out.push(g.param(id).unwrap().clone());
            }
            out
        };
        let (a, b) = (run(true), run(false));
        for (k, (u, v)) in a.iter().zip(&b).enumerate() {
            for (p, q) in u.iter().zip(v) {
                assert!(
                    (p - q).abs() <= 1e-12 * (1.0 + q.abs()),
                    "{act:?} tensor {k}: fused {p} vs composed {q}"
                );
            }
        }
    }
}

/// The same PE + MLP forward in f32 and f64 agrees to f32 precision.
#[test]
fn f32_matches_f64_forward() {
    let (b32, b64) = (CpuBackend::<f32>::new(), B64::new());
    let (mut s32, mut s64) = (ParamStore::new(), ParamStore::new());
    let pe = PositionalEncoding::new(PeKind::GeomLowf, 16, None, 4, None, &mut rng()).unwrap();
    let m32 = Mlp::resid(
        &b32,
        &mut s32,
        "d",
        pe.out_dim(),
        3,
        64,
        2,
        Activation::Relu,
        &mut rng(),
    )
    .unwrap();
    let m64 = Mlp::resid(
        &b64,
        &mut s64,
        "d",
        pe.out_dim(),
        3,
        64,
        2,
        Activation::Relu,
        &mut rng(),
    )
    .unwrap();
    let mut r = rng();
    let coords: Vec<f64> = (0..100 * 7).map(|_| r.random_range(-0.5..0.5)).collect();
    let y64 = {
        let mut t = Tape::inference(&b64, &s64);
        let c = t.constant(Tensor::from_slice(&b64, &coords, &[100, 7]).unwrap());
        let f = pe.forward(&mut t, c).unwrap();
        let y = m64.forward(&mut t, f).unwrap();
        t.to_vec(y).unwrap()
    };
    let c32: Vec<f32> = coords.iter().map(|&v| v as f32).collect();
    let mut t = Tape::inference(&b32, &s32);
    let c = t.constant(Tensor::from_slice(&b32, &c32, &[100, 7]).unwrap());
    let f = pe.forward(&mut t, c).unwrap();
    let y = m32.forward(&mut t, f).unwrap();
    let y32 = t.to_vec(y).unwrap();
    let scale = y64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in y32.iter().zip(&y64).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= 1e-4 * scale,
            "element {i}: f32 {a} vs f64 {b}"
        );
    }
}

#[test]
fn shape_errors_are_values() {
    let be = B64::new();
    let store = ParamStore::new();
    let mut t = Tape::new(&be, &store);
    let a = t.input(Tensor::zeros(&be, &[2, 3]).unwrap());
    let b = t.input(Tensor::zeros(&be, &[2, 3]).unwrap());
    assert!(t.matmul(a, b).is_err());
    let c = t.input(Tensor::zeros(&be, &[3]).unwrap());
    assert!(t.add(a, c).is_err());
    assert!(t.gather_rows(a, &[2]).is_err());
    assert!(t.backward(a).is_err());
    assert!(be
        .gemm(
            1.0,
            cryofield::backend::MatRef {
                buf: &vec![0.0; 5],
                rows: 2,
                cols: 3,
                trans: false
            },
            cryofield::backend::MatRef {
                buf: &vec![0.0; 6],
                rows: 3,
                cols: 2,
                trans: false
            },
            0.0,
            &mut vec![0.0; 4]
        )
        .is_err());
}

/// The GEMM entry point (matrixmultiply and the thin-operand paths) against a naive triple
/// loop, for every transpose combination and shapes that hit each path.
#[test]
fn gemm_matches_naive() {
    use cryofield::backend::MatRef;
    let be = B64::new();
    let mut r = rng();
    // (m, k, n): general, thin output (n < 8, m ≥ 64), thin left operand (m < 8, k ≥ 256)
    for (m, k, n) in [
        (33, 17, 29),
        (300, 40, 2),
        (130, 9, 7),
        (2, 1500, 70),
        (5, 300, 64),
    ] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a: Vec<f64> = (0..m * k).map(|_| r.random_range(-1.0..1.0)).collect();
            let b: Vec<f64> = (0..k * n).map(|_| r.random_range(-1.0..1.0)).collect();
            let c0: Vec<f64> = (0..m * n).map(|_| r.random_range(-1.0..1.0)).collect();
            let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
            let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
            let mut c = c0.clone();
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            be.gemm(
                0.7,
                MatRef {
                    buf: &a,
                    rows: ar,
                    cols: ac,
                    trans: ta,
                },
                MatRef {
                    buf: &b,
                    rows: br,
                    cols: bc,
                    trans: tb,
                },
                0.3,
                &mut c,
            )
            .unwrap();
            for i in 0..m {
                for j in 0..n {
                    let e = 0.7 * (0..k).map(|p| at(i, p) * bt(p, j)).sum::<f64>()
                        + 0.3 * c0[i * n + j];
                    let g = c[i * n + j];
                    assert!(
                        (g - e).abs() < 1e-12 * (1.0 + e.abs()) * k as f64,
                        "({m},{k},{n}) ta={ta} tb={tb} [{i},{j}]: {g} vs {e}"
                    );
                }
            }
        }
    }
}
