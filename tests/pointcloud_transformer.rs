//! The point transformer (issue 25, spec §7 check 6): the attention op against a loop reference
//! and f64 central differences; the tiny network (width 32, 2 layers, 4 heads, N = 16, f64 CPU)
//! — VJP of E(D_θ(x, t)) in x and parameter gradients against central differences,
//! permutation equivariance, save/load round trip; the training loop's exact resume.

use cryofield::autodiff::{ParamId, Tape, Tensor};
use cryofield::backend::cpu::{attention, CpuBackend};
use cryofield::backend::Backend;
use cryofield::pointcloud::dps::CloudPrior;
use cryofield::pointcloud::transformer::{PointTransformer, TransformerConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

type B64 = CpuBackend<f64>;

fn normals(rng: &mut StdRng, n: usize, s: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut *rng);
            s * z
        })
        .collect()
}

/// Relative error max|a − b| / max(max|b|, floor).
fn rel(a: &[f64], b: &[f64], floor: f64) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let den = b.iter().map(|y| y.abs()).fold(floor, f64::max);
    num / den
}

/// Attention forward through the tape: y and Σ y ⊙ r.
fn attn_loss(be: &B64, qkv: &[f64], rows: usize, batch: usize, heads: usize, r: &[f64]) -> f64 {
    let store = cryofield::autodiff::ParamStore::new();
    let mut t = Tape::inference(be, &store);
    let x = t.constant(Tensor::from_slice(be, qkv, &[rows, qkv.len() / rows]).unwrap());
    let y = t.attention(x, batch, heads).unwrap();
    let y = t.to_vec(y).unwrap();
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}

#[test]
fn attention_matches_reference_and_finite_differences() {
    let be = B64::new();
    let mut rng = StdRng::seed_from_u64(1);
    let (batch, heads, t, dh) = (2, 3, 5, 4);
    let (rows, w) = (batch * t, heads * dh);
    let qkv = normals(&mut rng, rows * 3 * w, 1.0);
    // forward vs the loop reference
    let store = cryofield::autodiff::ParamStore::new();
    let mut tape = Tape::new(&be, &store);
    let x = tape.input(Tensor::from_slice(&be, &qkv, &[rows, 3 * w]).unwrap());
    let y = tape.attention(x, batch, heads).unwrap();
    let yv = tape.to_vec(y).unwrap();
    let want = attention::reference(&qkv, batch, heads, t);
    assert!(rel(&yv, &want, 1e-12) < 1e-13, "forward vs reference");
    // backward of Σ y ⊙ r vs central differences
    let r = normals(&mut rng, rows * w, 1.0);
    let rc = tape.constant(Tensor::from_slice(&be, &r, &[rows, w]).unwrap());
    let p = tape.mul(y, rc).unwrap();
    let l = tape.sum_all(p, 1.0).unwrap();
    let g = tape.backward(l).unwrap();
    let g = be.to_vec(g.get(x).unwrap()).unwrap();
    let h = 1e-6;
    let fd: Vec<f64> = (0..qkv.len())
        .map(|i| {
            let mut a = qkv.clone();
            a[i] += h;
            let lp = attn_loss(&be, &a, rows, batch, heads, &r);
            a[i] -= 2.0 * h;
            let lm = attn_loss(&be, &a, rows, batch, heads, &r);
            (lp - lm) / (2.0 * h)
        })
        .collect();
    let e = rel(&g, &fd, 1e-3);
    assert!(e < 1e-7, "attention gradient rel. error {e:.3e}");
}

#[test]
fn attention_rejects_bad_shapes() {
    let be = B64::new();
    let store = cryofield::autodiff::ParamStore::new();
    let mut t = Tape::inference(&be, &store);
    let x = t.constant(Tensor::zeros(&be, &[6, 12]).unwrap());
    assert!(t.attention(x, 4, 2).is_err(), "6 rows in 4 sequences");
    assert!(t.attention(x, 2, 5).is_err(), "12 columns for 5 heads");
    assert!(t.attention(x, 2, 2).is_ok());
}

fn tiny_cfg() -> TransformerConfig {
    TransformerConfig {
        width: 32,
        layers: 2,
        heads: 4,
        n_points: 16,
        ..Default::default()
    }
}

/// The tiny network with every parameter perturbed (output_proj is zero-initialised, and
/// γ = 1, β = 0 would hide errors in the layer-norm gradients).
fn tiny_model(seed: u64) -> PointTransformer<B64> {
    let be = B64::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = PointTransformer::new(&be, tiny_cfg(), &mut rng).unwrap();
    for i in 0..m.store.len() {
        let shape = m.store.tensors[i].shape.clone();
        let mut v = be.to_vec(&m.store.tensors[i].buf).unwrap();
        let s = if m.store.names[i].starts_with("output_proj") {
            0.3
        } else {
            0.1
        };
        for x in v.iter_mut() {
            let z: f64 = StandardNormal.sample(&mut rng);
            *x += s * z;
        }
        *m.store.get_mut(ParamId(i)) = Tensor::from_slice(&be, &v, &shape).unwrap();
    }
    m
}

#[test]
fn vjp_of_energy_matches_finite_differences() {
    let m = tiny_model(2);
    let mut rng = StdRng::seed_from_u64(3);
    let b = 2;
    let x = normals(&mut rng, b * 16 * 3, 0.8);
    let y = normals(&mut rng, b * 16 * 3, 0.5);
    let t = [0.3, 1.7];
    // E(D) = Σ (D − y)², v = ∂E/∂D = 2(D − y)
    let energy = |x: &[f64]| -> f64 {
        let d = m.denoise(x, &t).unwrap();
        d.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum()
    };
    let (d, g) = m
        .denoise_vjp(&x, &t, &mut |d: &[f64]| {
            Ok(d.iter().zip(&y).map(|(a, b)| 2.0 * (a - b)).collect())
        })
        .unwrap();
    assert_eq!(
        d,
        m.denoise(&x, &t).unwrap(),
        "denoise_vjp's D is denoise's"
    );
    let h = 1e-5;
    let fd: Vec<f64> = (0..x.len())
        .map(|i| {
            let mut a = x.clone();
            a[i] += h;
            let ep = energy(&a);
            a[i] -= 2.0 * h;
            (ep - energy(&a)) / (2.0 * h)
        })
        .collect();
    let e = rel(&g, &fd, 1e-3);
    assert!(e < 1e-6, "VJP rel. error {e:.3e}");
    // the network part matters: the VJP is not the skip connection's alone
    let skip: Vec<f64> = (0..x.len())
        .map(|i| {
            let c = tiny_cfg().precond(t[i / 48]);
            2.0 * (d[i] - y[i]) * c[0]
        })
        .collect();
    assert!(
        rel(&g, &skip, 1e-3) > 1e-2,
        "VJP equals the c_skip term alone"
    );
}

#[test]
fn permutation_equivariant() {
    let m = tiny_model(4);
    let mut rng = StdRng::seed_from_u64(5);
    let x = normals(&mut rng, 2 * 16 * 3, 1.0);
    let t = [0.05, 9.0];
    let d = m.denoise(&x, &t).unwrap();
    // a random permutation per cloud
    let mut px = x.clone();
    let mut perms = Vec::new();
    for c in 0..2 {
        let mut p: Vec<usize> = (0..16).collect();
        for i in (1..16).rev() {
            p.swap(i, rng.random_range(0..=i));
        }
        for (i, &j) in p.iter().enumerate() {
            px[(c * 16 + i) * 3..][..3].copy_from_slice(&x[(c * 16 + j) * 3..][..3]);
        }
        perms.push(p);
    }
    let dp = m.denoise(&px, &t).unwrap();
    let mut want = d.clone();
    for (c, p) in perms.iter().enumerate() {
        for (i, &j) in p.iter().enumerate() {
            want[(c * 16 + i) * 3..][..3].copy_from_slice(&d[(c * 16 + j) * 3..][..3]);
        }
    }
    let e = rel(&dp, &want, 1e-12);
    assert!(e < 1e-12, "D(Px) ≠ P·D(x): rel. error {e:.3e}");
    // and the network is not trivially constant over points
    assert!(rel(&dp, &d, 1e-12) > 1e-3);
}

/// Training loss mean((F(c_in x, c_noise) − target)²) for fixed data, on the tiny model.
fn train_loss(
    m: &PointTransformer<B64>,
    x: &[f64],
    t: &[f64],
    tgt: &[f64],
) -> (f64, Vec<Vec<f64>>) {
    let be = &m.be;
    let mut tape = Tape::new(be, &m.store);
    let xin: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v * m.cfg.precond(t[i / 48])[2])
        .collect();
    let xv = tape.constant(Tensor::from_slice(be, &xin, &[x.len() / 3, 3]).unwrap());
    let cn: Vec<f64> = t.iter().map(|&s| m.cfg.precond(s)[3]).collect();
    let f = m.forward_f(&mut tape, xv, &cn).unwrap();
    let tv = tape.constant(Tensor::from_slice(be, tgt, &[x.len() / 3, 3]).unwrap());
    let l = tape.mse(f, tv).unwrap();
    let lv = tape.to_vec(l).unwrap()[0];
    let g = tape.backward(l).unwrap();
    let grads = m
        .store
        .ids()
        .map(|id| be.to_vec(g.param(id).unwrap()).unwrap())
        .collect();
    (lv, grads)
}

#[test]
fn parameter_gradients_match_finite_differences() {
    let mut m = tiny_model(6);
    let mut rng = StdRng::seed_from_u64(7);
    let x = normals(&mut rng, 2 * 16 * 3, 1.0);
    let tgt = normals(&mut rng, 2 * 16 * 3, 1.0);
    let t = [0.4, 2.5];
    let (_, grads) = train_loss(&m, &x, &t, &tgt);
    let names = [
        "input_proj.weight",
        "time_embed.c_fc.weight",
        "time_embed.c_proj.bias",
        "ln_pre.weight",
        "backbone.resblocks.0.ln_1.weight",
        "backbone.resblocks.0.attn.c_qkv.weight",
        "backbone.resblocks.1.attn.c_qkv.bias",
        "backbone.resblocks.0.attn.c_proj.weight",
        "backbone.resblocks.1.ln_2.bias",
        "backbone.resblocks.1.mlp.c_fc.weight",
        "backbone.resblocks.0.mlp.c_proj.weight",
        "ln_post.weight",
        "output_proj.weight",
        "output_proj.bias",
    ];
    let be = m.be.clone();
    let h = 1e-6;
    for name in names {
        let i = m.store.names.iter().position(|n| n == name).unwrap();
        let shape = m.store.tensors[i].shape.clone();
        let v0 = be.to_vec(&m.store.tensors[i].buf).unwrap();
        for _ in 0..3 {
            let k = rng.random_range(0..v0.len());
            let mut eval = |dv: f64| {
                let mut v = v0.clone();
                v[k] += dv;
                *m.store.get_mut(ParamId(i)) = Tensor::from_slice(&be, &v, &shape).unwrap();
                train_loss(&m, &x, &t, &tgt).0
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            eval(0.0);
            let g = grads[i][k];
            let err = (g - fd).abs() / fd.abs().max(1e-4);
            assert!(
                err < 1e-5,
                "{name}[{k}]: tape {g:.10e}, finite differences {fd:.10e}"
            );
        }
    }
}

#[test]
fn save_load_round_trip_is_bitwise() {
    let m = tiny_model(8);
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    let l = PointTransformer::load(&B64::new(), dir.path()).unwrap();
    assert_eq!(l.cfg, m.cfg);
    assert_eq!(l.store.names, m.store.names);
    for (a, b) in l.store.tensors.iter().zip(&m.store.tensors) {
        let (a, b) = (m.be.to_vec(&a.buf).unwrap(), m.be.to_vec(&b.buf).unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
    // f32 too
    let be32 = CpuBackend::<f32>::new();
    let m32 = PointTransformer::new(&be32, tiny_cfg(), &mut StdRng::seed_from_u64(9)).unwrap();
    let d32 = tempfile::tempdir().unwrap();
    m32.save(d32.path()).unwrap();
    let l32 = PointTransformer::load(&be32, d32.path()).unwrap();
    for (a, b) in l32.store.tensors.iter().zip(&m32.store.tensors) {
        let (a, b) = (be32.to_vec(&a.buf).unwrap(), be32.to_vec(&b.buf).unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn load_errors_name_file_and_field() {
    let m = tiny_model(10);
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    // a config of another width: the weights no longer fit
    let cpath = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cpath).unwrap();
    std::fs::write(&cpath, text.replace("\"width\": 32", "\"width\": 64")).unwrap();
    let e = PointTransformer::load(&B64::new(), dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("input_proj.weight"),
        "{e}"
    );
    // a config with width not a multiple of heads
    std::fs::write(&cpath, text.replace("\"width\": 32", "\"width\": 30")).unwrap();
    let e = PointTransformer::load(&B64::new(), dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("config.json") && e.contains("heads"), "{e}");
    // not JSON
    std::fs::write(&cpath, "{").unwrap();
    let e = PointTransformer::load(&B64::new(), dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
    // truncated weights
    std::fs::write(&cpath, &text).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x08\0\0\0\0\0\0\0{}",
    )
    .unwrap();
    let e = PointTransformer::load(&B64::new(), dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    // wrong input sizes are errors, not panics
    assert!(m.denoise(&[0.0; 47], &[1.0]).is_err());
    assert!(m.denoise(&[0.0; 48], &[0.0]).is_err());
}

mod training {
    use super::*;
    use cryofield::pointcloud::train::{
        load_state, sample_prior, train_checkpointed, Aug, PcTrainConfig, Phase, SampleConfig,
    };
    use cryofield::train::checkpoint::Checkpoint;

    fn cfg() -> PcTrainConfig {
        PcTrainConfig {
            width: 16,
            layers: 1,
            heads: 2,
            batch: 4,
            epochs: 3,
            lr: 1e-3,
            ..Default::default()
        }
    }

    #[test]
    fn resumed_training_equals_uninterrupted() {
        let (s, n) = (6, 16);
        let mut rng = StdRng::seed_from_u64(11);
        let clouds = normals(&mut rng, s * n * 3, 0.5);
        let cfg = cfg();
        assert_eq!(cfg.total_steps(s), 6);
        let full =
            train_checkpointed(&clouds, s, n, &cfg, None, 0, |_, _| {}, |_, _| Ok(())).unwrap();
        assert_eq!(full.losses.len(), 6);
        // a run that stops after its checkpoint at step 3, saved to disk and read back
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.safetensors");
        let mut saved: Option<Vec<f64>> = None;
        let _ = train_checkpointed(
            &clouds,
            s,
            n,
            &cfg,
            None,
            3,
            |_, _| {},
            |st, l| {
                if saved.is_none() {
                    st.save(&path)?;
                    saved = Some(l.to_vec());
                }
                Ok(())
            },
        )
        .unwrap();
        let before = saved.unwrap();
        assert_eq!(before[..], full.losses[..3]);
        let ck: Checkpoint = load_state(&path, s, n, &cfg).unwrap();
        assert_eq!(ck.epoch, 3);
        let rest =
            train_checkpointed(&clouds, s, n, &cfg, Some(ck), 0, |_, _| {}, |_, _| Ok(())).unwrap();
        assert_eq!(rest.losses[..], full.losses[3..], "resumed losses differ");
        for ((na, _, a), (_, _, b)) in rest.state.params.iter().zip(&full.state.params) {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{na}"
            );
        }
        // another setting or other clouds: errors naming the file
        let mut other = cfg.clone();
        other.lr = 2e-3;
        let e = load_state(&path, s, n, &other).err().unwrap().to_string();
        assert!(e.contains("state.safetensors") && e.contains("lr"), "{e}");
        let e = load_state(&path, s + 1, n, &cfg).err().unwrap().to_string();
        assert!(e.contains("state.safetensors"), "{e}");
    }

    #[test]
    fn training_fits_a_point_mass() {
        // every point at c, t ≈ 0.6: the optimal denoiser is c, F* = (c − c_skip·x_t)/c_out is
        // affine in x_t, so the loss (≈ 0.52 for F = 0) must fall far below its start
        let n = 16;
        let clouds: Vec<f64> = (0..n).flat_map(|_| [0.3, -0.2, 0.1]).collect();
        let cfg = PcTrainConfig {
            width: 32,
            layers: 2,
            heads: 4,
            batch: 1,
            epochs: 300,
            lr: 2e-3,
            aug: Aug::None,
            phase1: Phase::parse("-0.5,0.01,10").unwrap(),
            phase2: Phase::parse("-0.5,0.01,10").unwrap(),
            ..Default::default()
        };
        let out =
            train_checkpointed(&clouds, 1, n, &cfg, None, 0, |_, _| {}, |_, _| Ok(())).unwrap();
        let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
        // step 0 runs the initial network (F = 0): its loss is mean(target²) ≈ 0.52 ± 0.08
        let (a, b) = (out.losses[0], mean(&out.losses[280..]));
        assert!(a > 0.3 && b < 0.05 * a, "loss {a:.3} → {b:.3}");
    }

    #[test]
    fn noise_phases_are_truncated_log_normals() {
        let mut rng = StdRng::seed_from_u64(12);
        let p = Phase::parse("-2.8,0.9,1").unwrap();
        let t: Vec<f64> = (0..20000).map(|_| p.sample(&mut rng)).collect();
        assert!(t.iter().all(|&v| v > 0.0 && v <= 1.0));
        // ln t: N(−2.8, 0.9²) truncated at 0 (z = 3.1, 0.1 % cut): mean −2.8 within 4 s.e.
        let m = t.iter().map(|v| v.ln()).sum::<f64>() / t.len() as f64;
        assert!(
            (m + 2.8).abs() < 4.0 * 0.9 / (t.len() as f64).sqrt() + 0.003,
            "mean ln t {m}"
        );
        assert!(Phase::parse("-2.8,0.9").is_err());
        assert!(Phase::parse("5,0.1,1").is_err(), "t_max far below the mass");
    }

    #[test]
    fn augmentations_are_orthogonal_with_the_right_determinant() {
        let mut rng = StdRng::seed_from_u64(13);
        let det = |r: &[f64; 9]| {
            r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
                + r[2] * (r[3] * r[7] - r[4] * r[6])
        };
        let mut neg = 0;
        for _ in 0..1000 {
            let r = Aug::So3.draw(&mut rng);
            assert!((det(&r) - 1.0).abs() < 1e-12);
            let r = Aug::O3.draw(&mut rng);
            assert!((det(&r).abs() - 1.0).abs() < 1e-12);
            neg += (det(&r) < 0.0) as usize;
        }
        // binomial(1000, ½): within 4σ ≈ 63
        assert!((neg as i64 - 500).abs() < 63, "{neg} improper of 1000");
        // Haar: E[R] = 0, so the mean of R₀₀ over 1000 draws is within 4·(1/√3)/√1000
        let m: f64 = (0..1000).map(|_| Aug::So3.draw(&mut rng)[0]).sum::<f64>() / 1000.0;
        assert!(m.abs() < 0.073, "mean R00 {m}");
    }

    /// The exact denoiser of N(0, s²I) clouds: D(x; t) = x·s²/(s² + t²).
    struct Gauss {
        s: f64,
        n: usize,
    }

    impl CloudPrior for Gauss {
        fn n_points(&self) -> usize {
            self.n
        }
        fn denoise(&self, x: &[f64], t: &[f64]) -> cryofield::Result<Vec<f64>> {
            let per = 3 * self.n;
            Ok(x.iter()
                .enumerate()
                .map(|(i, v)| v * self.s * self.s / (self.s * self.s + t[i / per] * t[i / per]))
                .collect())
        }
        fn denoise_vjp(
            &self,
            _: &[f64],
            _: &[f64],
            _: &mut dyn FnMut(&[f64]) -> cryofield::Result<Vec<f64>>,
        ) -> cryofield::Result<(Vec<f64>, Vec<f64>)> {
            unreachable!("the unconditional sampler takes no VJP")
        }
    }

    #[test]
    fn sampler_recovers_a_gaussian_prior() {
        let cfg = SampleConfig::default();
        let g = cfg.grid();
        assert_eq!(g.len(), 101);
        assert!((g[0] - 80.0).abs() < 1e-12 && (g[99] - 0.002).abs() < 1e-12 && g[100] == 0.0);
        let prior = Gauss { s: 0.5, n: 100 };
        let mut rng = StdRng::seed_from_u64(14);
        let mut evals = 0;
        let x = sample_prior(&prior, 20, 7, &cfg, &mut rng, || evals += 1).unwrap();
        assert_eq!(evals, 3 * 100);
        assert_eq!(x.len(), 20 * 300);
        // 6000 N(0, ¼) values: s.e. of the variance √(2/6000)·¼ ≈ 0.0046; the 100-step
        // discretisation adds ≈ +0.012 (an independent scalar simulation of the same steps:
        // 0.261 at 100 steps, 0.252 at 400)
        let v = x.iter().map(|a| a * a).sum::<f64>() / x.len() as f64;
        assert!((v - 0.25).abs() < 0.03, "sample variance {v}");
    }
}

/// Wall time of D and of D + VJP per cloud (one batch of `b` clouds, f32 CPU, best of `reps`).
fn time_model(cfg: TransformerConfig, b: usize, reps: usize) {
    let be = CpuBackend::<f32>::new();
    let mut rng = StdRng::seed_from_u64(20);
    let m = PointTransformer::new(&be, cfg.clone(), &mut rng).unwrap();
    let x = normals(&mut rng, b * cfg.n_points * 3, 1.0);
    let t = vec![1.0; b];
    let best = |f: &mut dyn FnMut()| {
        (0..reps)
            .map(|_| {
                let s = std::time::Instant::now();
                f();
                s.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let fwd = best(&mut || {
        m.denoise(&x, &t).unwrap();
    });
    let vjp = best(&mut || {
        m.denoise_vjp(&x, &t, &mut |d: &[f64]| Ok(d.to_vec()))
            .unwrap();
    });
    println!(
        "W {} L {} H {} N {}, batch {b}: {} params; forward {:.3} s, forward+VJP {:.3} s per cloud ({} threads)",
        cfg.width,
        cfg.layers,
        cfg.heads,
        cfg.n_points,
        m.num_params(),
        fwd / b as f64,
        vjp / b as f64,
        rayon::current_num_threads()
    );
}

/// Timing (not a check): `cargo test --test pointcloud_transformer timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_forward_and_vjp() {
    time_model(TransformerConfig::default(), 1, 3);
    time_model(TransformerConfig::default(), 10, 1);
    time_model(
        TransformerConfig {
            width: 512,
            layers: 24,
            heads: 8,
            n_points: 1024,
            ..Default::default()
        },
        1,
        1,
    );
}

/// `pc-train` on a tiny GT.npz then `pc-sample` from its folder, through the binary.
#[test]
fn pc_train_and_pc_sample_round_trip() {
    use cryofield::pointcloud::data::GroundTruth;
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let (s, n) = (5, 16);
    let mut rng = StdRng::seed_from_u64(30);
    let gt = GroundTruth {
        clouds: normals(&mut rng, s * n * 3, 0.4),
        s,
        n,
        center: vec![0.0; s * 3],
        scale: vec![10.0; s],
        atoms: None,
    };
    let gt_path = dir.path().join("GT.npz");
    gt.write(&gt_path).unwrap();
    let prior = dir.path().join("prior");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let p = prior.to_str().unwrap();
    let g = gt_path.to_str().unwrap();
    let train = [
        "pc-train",
        g,
        "-o",
        p,
        "--width",
        "16",
        "--layers",
        "1",
        "--heads",
        "2",
        "--batch",
        "2",
        "--epochs",
        "2",
        "--checkpoint",
        "2",
    ];
    let (ok, msg) = run(&train);
    assert!(ok, "{msg}");
    for f in [
        "model.safetensors",
        "config.json",
        "losses.csv",
        "loss.png",
        "state.safetensors",
    ] {
        assert!(prior.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(prior.join("losses.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 6,
        "header + 3 steps × 2 epochs: {csv}"
    );
    // the state is finished: resuming has nothing to do; another width disagrees with it
    let st = prior.join("state.safetensors");
    let (ok, msg) = run(&["pc-train", g, "-o", p, "--load", st.to_str().unwrap()]);
    assert!(!ok && msg.contains("nothing left"), "{msg}");
    let (ok, msg) = run(&[
        "pc-train",
        g,
        "-o",
        p,
        "--load",
        st.to_str().unwrap(),
        "--width",
        "32",
    ]);
    assert!(
        !ok && msg.contains("state.safetensors") && msg.contains("width"),
        "{msg}"
    );
    let out = dir.path().join("S.npy");
    let (ok, msg) = run(&[
        "pc-sample",
        p,
        "-n",
        "3",
        "--steps",
        "5",
        "--seed",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
    let a = cryofield::io::npy::read_npy(&out).unwrap();
    assert_eq!(a.shape, vec![3, n, 3]);
    assert!(a.to_f64().iter().all(|v| v.is_finite()));
    // a missing prior names the file
    let (ok, msg) = run(&[
        "pc-sample",
        dir.path().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && msg.contains("config.json") && !msg.contains("panicked"),
        "{msg}"
    );
}

/// Writes a synthetic training set (helices and spherical shells, N = 64, centred and divided by
/// max|coord| per cloud) for a manual `pc-train` run (not a check):
/// `PC_DEMO_GT=/tmp/GT.npz cargo test --test pointcloud_transformer demo_data -- --ignored`.
#[test]
#[ignore]
fn demo_data() {
    use cryofield::pointcloud::data::GroundTruth;
    let path = std::env::var("PC_DEMO_GT").unwrap_or("/tmp/pc_demo_GT.npz".into());
    let (s, n) = (256, 64);
    let mut rng = StdRng::seed_from_u64(40);
    let mut clouds = Vec::with_capacity(s * n * 3);
    for c in 0..s {
        let mut pts = Vec::with_capacity(n * 3);
        for i in 0..n {
            let z = normals(&mut rng, 3, 0.02);
            let p = if c % 2 == 0 {
                // helix: 3 turns along z
                let a = 6.0 * std::f64::consts::PI * i as f64 / n as f64;
                [a.cos(), a.sin(), 2.0 * i as f64 / n as f64 - 1.0]
            } else {
                // unit spherical shell
                let v = normals(&mut rng, 3, 1.0);
                let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                [v[0] / r, v[1] / r, v[2] / r]
            };
            pts.extend((0..3).map(|k| p[k] + z[k]));
        }
        let m: Vec<f64> = (0..3)
            .map(|k| pts.iter().skip(k).step_by(3).sum::<f64>() / n as f64)
            .collect();
        let scale = pts
            .iter()
            .enumerate()
            .map(|(j, v)| (v - m[j % 3]).abs())
            .fold(0.0, f64::max);
        clouds.extend(pts.iter().enumerate().map(|(j, v)| (v - m[j % 3]) / scale));
    }
    GroundTruth {
        clouds,
        s,
        n,
        center: vec![0.0; 3 * s],
        scale: vec![1.0; s],
        atoms: None,
    }
    .write(&path)
    .unwrap();
    println!("wrote {path}");
}

#[test]
fn frozen_params_tape_gives_input_gradients_only() {
    let be = B64::new();
    let mut store = cryofield::autodiff::ParamStore::new();
    let w = store.add("w", Tensor::from_slice(&be, &[2.0, 3.0], &[1, 2]).unwrap());
    let run = |mut t: Tape<'_, B64>| {
        let x = t.input(Tensor::from_slice(&be, &[1.0, -1.0], &[1, 2]).unwrap());
        let wv = t.param(w);
        let y = t.linear(x, wv, None).unwrap();
        let g = t.backward(y).unwrap();
        (
            be.to_vec(g.get(x).unwrap()).unwrap(),
            g.param(w).map(|p| be.to_vec(p).unwrap()),
        )
    };
    let (gx, gw) = run(Tape::new(&be, &store));
    assert_eq!((gx, gw), (vec![2.0, 3.0], Some(vec![1.0, -1.0])));
    let (gx, gw) = run(Tape::frozen_params(&be, &store));
    assert_eq!((gx, gw), (vec![2.0, 3.0], None));
}

#[test]
fn f32_model_agrees_with_f64() {
    // the f64 weights loaded into an f32 backend (training and sampling run in f32)
    let m = tiny_model(16);
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    let m32 = PointTransformer::load(&CpuBackend::<f32>::new(), dir.path()).unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let x = normals(&mut rng, 3 * 16 * 3, 1.0);
    let t = [0.01, 0.5, 40.0];
    let (d64, d32) = (m.denoise(&x, &t).unwrap(), m32.denoise(&x, &t).unwrap());
    let e = rel(&d32, &d64, 1e-3);
    // f32 rounding through 2 blocks of width 32: ~1e-6 relative; 1e-4 leaves room
    assert!(e < 1e-4, "f32 vs f64 rel. error {e:.3e}");
}
