//! cryoDRGN 4.3's train-vae / train-nn model options beyond the defaults: `--pe-type none` (the
//! decoder reads the coordinates themselves: a hand-written forward, training runs, and eval-vol on
//! cryoDRGN's own runs in tests/fixtures/cryodrgn), and its cryo-ET tilt-series flags, which are
//! refused with one line naming our tilt-pair encoder.

mod common;

use common::{phantom_sim, run, run_ok, NETS};
use cryofield::autodiff::{ParamStore, Tape, Tensor};
use cryofield::backend::cpu::CpuBackend;
use cryofield::backend::{Activation, Domain};
use cryofield::fourier::lattice::Lattice;
use cryofield::io::mrc::MrcFile;
use cryofield::io::pkl::PyValue;
use cryofield::model::{Decoder, DecoderConfig};
use cryofield::nn::PeKind;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::{Path, PathBuf};

type B64 = CpuBackend<f64>;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cryodrgn")
}

fn volume(p: &Path) -> Vec<f32> {
    MrcFile::open(p).unwrap().read_all().unwrap()
}

/// max |ours − ref| / max |ref|
fn rel_err(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale
}

/// A random rotation (row-major) from a random unit quaternion.
fn rand_rot(rng: &mut impl Rng) -> [f64; 9] {
    let q: Vec<f64> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let (w, x, y, z) = (q[0] / n, q[1] / n, q[2] / n, q[3] / n);
    [
        1.0 - 2.0 * (y * y + z * z),
        2.0 * (x * y - z * w),
        2.0 * (x * z + y * w),
        2.0 * (x * y + z * w),
        1.0 - 2.0 * (x * x + z * z),
        2.0 * (y * z - x * w),
        2.0 * (x * z - y * w),
        2.0 * (y * z + x * w),
        1.0 - 2.0 * (x * x + y * y),
    ]
}

/// The ResidLinearMLP of `dec` by hand on one input row: tanh after every layer but the last, a
/// residual where the layer is square.
fn mlp_by_hand(store: &ParamStore<B64>, dec: &Decoder, x: &[f64]) -> Vec<f64> {
    let mut h = x.to_vec();
    let last = dec.mlp.layers.len() - 1;
    for (l, layer) in dec.mlp.layers.iter().enumerate() {
        let w = &store.get(layer.w).buf;
        let b = &store.get(layer.b.unwrap()).buf;
        let mut o: Vec<f64> = (0..layer.n_out)
            .map(|r| {
                b[r] + (0..layer.n_in)
                    .map(|c| w[r * layer.n_in + c] * h[c])
                    .sum::<f64>()
            })
            .collect();
        if dec.mlp.residual[l] {
            o.iter_mut().zip(&h).for_each(|(v, hv)| *v += hv);
        }
        if l != last {
            o.iter_mut().for_each(|v| *v = v.tanh());
        }
        h = o;
    }
    h
}

#[test]
fn pe_none_decoder_matches_a_hand_written_forward() {
    // y(k) for the rotated lattice point v = c·R with latent z: hartley MLP(v ++ z); fourier
    // (re, im) = MLP(s·v ++ z), s = −1 where v_z > 0 (then im ← −im), y = re − im on the first
    // ⌈P/2⌉ points and re + im of the antipode on the rest.
    let be = B64::new();
    let lattice = Lattice::for_image(8, true).unwrap();
    let mask = lattice.circular_mask(4.0).unwrap();
    let coords: Vec<[f64; 3]> = lattice
        .masked_coords(&mask)
        .iter()
        .map(|c| [c[0] as f64, c[1] as f64, c[2] as f64])
        .collect();
    let p = coords.len();
    let mut rng = StdRng::seed_from_u64(11);
    let rots: Vec<[f64; 9]> = (0..2).map(|_| rand_rot(&mut rng)).collect();
    let nb = rots.len();
    for domain in [Domain::Hartley, Domain::Fourier] {
        let zdim = 2;
        let mut store = ParamStore::new();
        let cfg = DecoderConfig {
            d: 8,
            layers: 1,
            dim: 6,
            domain,
            pe: PeKind::None,
            pe_dim: None,
            feat_sigma: 0.5,
            activation: Activation::Tanh,
            zdim,
        };
        let dec = Decoder::new(
            &be,
            &mut store,
            "decoder.",
            &cfg,
            &mut StdRng::seed_from_u64(4),
        )
        .unwrap();
        assert_eq!(
            dec.mlp.in_dim(),
            3 + zdim,
            "the network reads (x, y, z) ++ z_latent"
        );
        // cryoDRGN's names: FTSliceDecoder.decoder.main.*, or the bare ResidLinearMLP for hartley
        let first = &store.names[0];
        let want = match domain {
            Domain::Hartley => "decoder.main.0.weight",
            Domain::Fourier => "decoder.decoder.main.0.weight",
        };
        assert_eq!(first, want);
        let z: Vec<f64> = (0..nb * zdim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();

        let mut t = Tape::new(&be, &store);
        let c: Vec<f64> = coords.iter().flatten().copied().collect();
        let cv = t.constant(Tensor::from_slice(&be, &c, &[p, 3]).unwrap());
        let r: Vec<f64> = rots.iter().flatten().copied().collect();
        let rv = t.constant(Tensor::from_slice(&be, &r, &[nb, 3, 3]).unwrap());
        let zv = t.input(Tensor::from_slice(&be, &z, &[nb, zdim]).unwrap());
        let y = dec.forward(&mut t, cv, rv, Some(zv)).unwrap();
        assert_eq!(t.shape(y), &[nb, p]);
        let got = t.to_vec(y).unwrap();

        let by_hand = |z: &[f64]| -> Vec<f64> {
            let mut out = Vec::with_capacity(nb * p);
            for (b, rb) in rots.iter().enumerate() {
                let zb = &z[b * zdim..(b + 1) * zdim];
                let eval = |c: &[f64; 3]| -> (f64, f64) {
                    let v: Vec<f64> = (0..3)
                        .map(|j| c[0] * rb[j] + c[1] * rb[3 + j] + c[2] * rb[6 + j])
                        .collect();
                    let sgn = if domain == Domain::Fourier && v[2] > 0.0 {
                        -1.0
                    } else {
                        1.0
                    };
                    let mut x: Vec<f64> = v.iter().map(|u| sgn * u).collect();
                    x.extend_from_slice(zb);
                    let o = mlp_by_hand(&store, &dec, &x);
                    match domain {
                        Domain::Hartley => (o[0], 0.0),
                        Domain::Fourier => (o[0], sgn * o[1]),
                    }
                };
                match domain {
                    Domain::Hartley => out.extend(coords.iter().map(|c| eval(c).0)),
                    Domain::Fourier => {
                        let ne = p.div_ceil(2);
                        let half = p / 2;
                        let top: Vec<(f64, f64)> = coords[..ne].iter().map(eval).collect();
                        out.extend(top.iter().map(|(re, im)| re - im));
                        out.extend((0..half).map(|j| {
                            let (re, im) = top[half - 1 - j];
                            re + im
                        }));
                    }
                }
            }
            out
        };
        let want = by_hand(&z);
        let max = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            max < 1e-12,
            "{domain:?}: forward differs from the hand-written one by {max}"
        );
        assert!(want.iter().any(|v| v.abs() > 1e-2), "trivial output");

        // ∂(Σ w·y)/∂z against central differences of the hand-written forward
        let wts: Vec<f64> = (0..nb * p).map(|_| rng.random_range(-1.0..1.0)).collect();
        let wc = t.constant(Tensor::from_slice(&be, &wts, &[nb, p]).unwrap());
        let prod = t.mul(y, wc).unwrap();
        let loss = t.sum_all(prod, 1.0).unwrap();
        let g = t.backward(loss).unwrap();
        let dz = g.get(zv).unwrap().clone();
        let h = 1e-6;
        for k in 0..z.len() {
            let f = |d: f64| {
                let mut zz = z.clone();
                zz[k] += d;
                by_hand(&zz)
                    .iter()
                    .zip(&wts)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
            };
            let num = (f(h) - f(-h)) / (2.0 * h);
            assert!(
                (num - dz[k]).abs() < 1e-6 * (1.0 + num.abs()),
                "{domain:?}: dz[{k}] analytic {} vs numeric {num}",
                dz[k]
            );
        }
    }
}

#[test]
fn eval_vol_on_cryodrgn_pe_none_runs_matches_the_reference() {
    // tools/make_cryodrgn_fixtures.sh: a homogeneous hartley run (the reference's reconstruct.mrc),
    // a hartley VAE and a fourier (FTSliceDecoder) VAE
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        ("nn_none", &[]),
        ("vae_none_h", &["0.4"]),
        ("vae_none", &["-0.5"]),
    ];
    for (run_name, z) in cases {
        let out = dir.path().join(format!("{run_name}.mrc"));
        let w = f.join(run_name).join("weights.pkl");
        let c = f.join(run_name).join("config.yaml");
        let mut args = vec!["eval-vol", s(&w), "-c", s(&c), "-o", s(&out)];
        if !z.is_empty() {
            args.push("-z");
            args.extend_from_slice(z);
        }
        run_ok(&args);
        let e = rel_err(
            &volume(&out),
            &volume(&f.join(format!("{run_name}_vol.mrc"))),
        );
        eprintln!("{run_name}: max relative error against cryoDRGN {e:.2e}");
        assert!(e <= 1e-4, "{run_name}: relative error {e}");
    }
}

/// The names of the `model_state_dict` of a torch checkpoint.
fn state_dict_names(path: &Path) -> Vec<String> {
    let root = cryofield::io::torch::read_torch(path).unwrap();
    let Some(PyValue::Dict(items)) = root.get("model_state_dict") else {
        panic!("{}: no model_state_dict", path.display());
    };
    items
        .iter()
        .filter_map(|(k, _)| match k {
            PyValue::Str(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn train_vae_and_train_nn_run_with_pe_type_none() {
    let dir = tempfile::tempdir().unwrap();
    let sim = phantom_sim(dir.path(), "linear1d", 2, 16, &[]);
    let (parts, poses) = (sim.particles(), sim.poses());
    // VAE, fourier (FTSliceDecoder)
    let vae = dir.path().join("vae");
    let head = ["train-vae", s(&parts), "--poses", s(&poses), "--zdim", "2"];
    let tail = [
        "--pe-type",
        "none",
        "-n",
        "2",
        "-b",
        "8",
        "--seed",
        "1",
        "--no-analysis",
    ];
    run_ok(&[&head[..], &NETS, &["-o", s(&vae)], &tail].concat());
    let cfg = std::fs::read_to_string(vae.join("config.yaml")).unwrap();
    assert!(cfg.contains("pe_type: none"), "{cfg}");
    let names = state_dict_names(&vae.join("weights.pkl"));
    assert!(
        names.contains(&"decoder.decoder.main.0.weight".to_string()),
        "{names:?}"
    );
    let z = cryofield::analysis::latent::load_z(vae.join("z.pkl")).unwrap();
    assert!(z.n == 16 && z.z.iter().all(|v| v.is_finite()));
    let vol = dir.path().join("vae.mrc");
    run_ok(&[
        "eval-vol",
        s(&vae.join("weights.safetensors")),
        "-c",
        s(&vae.join("config.json")),
        "-z",
        "0.1",
        "0.2",
        "-o",
        s(&vol),
    ]);
    assert!(volume(&vol).iter().all(|v| v.is_finite()));
    // homogeneous, hartley: the network is the model (`main.*`)
    let nn = dir.path().join("nn");
    let (ok, _, err) = run(&[
        "train-nn",
        s(&parts),
        "--poses",
        s(&poses),
        "--pe-type",
        "none",
        "--domain",
        "hartley",
        "--layers",
        "1",
        "--dim",
        "16",
        "-n",
        "1",
        "--seed",
        "1",
        "-o",
        s(&nn),
    ]);
    assert!(ok, "{err}");
    let names = state_dict_names(&nn.join("weights.pkl"));
    assert_eq!(
        names.first().map(String::as_str),
        Some("main.0.weight"),
        "{names:?}"
    );
    let vol = dir.path().join("nn.mrc");
    run_ok(&[
        "eval-vol",
        s(&nn.join("weights.pkl")),
        "-c",
        s(&nn.join("config.yaml")),
        "-o",
        s(&vol),
    ]);
    assert!(volume(&vol).iter().all(|v| v.is_finite()));
}

#[test]
fn cryo_et_tilt_series_flags_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let sim = phantom_sim(dir.path(), "linear1d", 2, 4, &[]);
    let (parts, poses) = (sim.particles(), sim.poses());
    let out = dir.path().join("out");
    let head = [
        "train-vae",
        s(&parts),
        "--poses",
        s(&poses),
        "--zdim",
        "2",
        "-o",
        s(&out),
    ];
    for extra in [
        &["--encode-mode", "tilt"][..],
        &["--ntilts", "10"],
        &["--dose-per-tilt", "2.93"],
        &["--angle-per-tilt", "3"],
        &["-d", "2.93", "-a", "3"],
        &["--encode-mode", "tilt", "--ntilts", "5", "--random-tilts"],
    ] {
        let (ok, _, err) = run(&[&head[..], extra].concat());
        assert!(!ok, "{extra:?} was accepted");
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{extra:?}: {err}");
        let line = lines[0];
        assert!(
            line.contains("cryo-ET tilt-series training")
                && line.contains("not implemented in cryofield")
                && line.contains("--tilt PARTICLES")
                && line.contains("tilt-pair encoder"),
            "{extra:?}: {line}"
        );
        assert!(!out.exists(), "{extra:?}: an output folder was made");
    }
}

/// torch's `Conv2d(bias=False)` by its definition, NHWC x (b, h, w, c_in), w (c_out, c_in, k, k).
#[allow(clippy::too_many_arguments)]
fn conv_naive(
    x: &[f64],
    w: &[f64],
    (b, h, wd, ci): (usize, usize, usize, usize),
    co: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> (Vec<f64>, usize, usize) {
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (wd + 2 * pad - k) / stride + 1;
    let mut y = vec![0.0; b * ho * wo * co];
    for n in 0..b {
        for oy in 0..ho {
            for ox in 0..wo {
                for o in 0..co {
                    let mut acc = 0.0;
                    for c in 0..ci {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((n * h + iy as usize) * wd + ix as usize) * ci + c];
                                acc += w[((o * ci + c) * k + ky) * k + kx] * xv;
                            }
                        }
                    }
                    y[((n * ho + oy) * wo + ox) * co + o] = acc;
                }
            }
        }
    }
    (y, ho, wo)
}

/// (y, loss, (∂loss/∂x, ∂loss/∂w) when asked) of one convolution on the tape.
type Eval = (Vec<f64>, f64, Option<(Vec<f64>, Vec<f64>)>);

#[test]
fn conv2d_matches_its_definition_and_finite_differences() {
    let be = B64::new();
    let store = ParamStore::new();
    let mut rng = StdRng::seed_from_u64(21);
    // (batch, h, w, c_in, c_out, k, stride, pad): the encoder's stride-2/pad-1 and its last
    // stride-1/pad-0 layer, an odd size, a rectangular image
    for &(b, h, wd, ci, co, k, stride, pad) in &[
        (2, 8, 8, 3, 4, 4, 2, 1),
        (2, 4, 4, 2, 3, 4, 1, 0),
        (1, 7, 5, 2, 2, 3, 2, 1),
    ] {
        let x: Vec<f64> = (0..b * h * wd * ci)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let w: Vec<f64> = (0..co * ci * k * k)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (want, ho, wo) = conv_naive(&x, &w, (b, h, wd, ci), co, k, stride, pad);
        let r: Vec<f64> = (0..want.len())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        // loss = Σ r ⊙ conv(x, w): value and gradients from the tape
        let eval = |x: &[f64], w: &[f64], grads: bool| -> Eval {
            let mut t = Tape::new(&be, &store);
            let xv = t.input(Tensor::from_slice(&be, x, &[b, h, wd, ci]).unwrap());
            let wv = t.input(Tensor::from_slice(&be, w, &[co, ci, k, k]).unwrap());
            let y = t.conv2d(xv, wv, stride, pad).unwrap();
            assert_eq!(t.shape(y), &[b, ho, wo, co]);
            let yv = t.to_vec(y).unwrap();
            let rc = t.constant(Tensor::from_slice(&be, &r, &[b, ho, wo, co]).unwrap());
            let p = t.mul(y, rc).unwrap();
            let l = t.sum_all(p, 1.0).unwrap();
            let lv = t.to_vec(l).unwrap()[0];
            let g = grads.then(|| {
                let g = t.backward(l).unwrap();
                (g.get(xv).unwrap().clone(), g.get(wv).unwrap().clone())
            });
            (yv, lv, g)
        };
        let (got, _, g) = eval(&x, &w, true);
        let max = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            max < 1e-12,
            "conv2d {:?}: differs from the definition by {max}",
            (b, h, wd, ci, co, k, stride, pad)
        );
        let (gx, gw) = g.unwrap();
        let hstep = 1e-6;
        for (which, base, grad) in [("x", &x, &gx), ("w", &w, &gw)] {
            for j in 0..base.len() {
                let f = |d: f64| {
                    let mut v = base.clone();
                    v[j] += d;
                    if which == "x" {
                        eval(&v, &w, false).1
                    } else {
                        eval(&x, &v, false).1
                    }
                };
                let num = (f(hstep) - f(-hstep)) / (2.0 * hstep);
                assert!(
                    (num - grad[j]).abs() < 1e-7 * (1.0 + num.abs()),
                    "conv2d d{which}[{j}]: analytic {} vs numeric {num}",
                    grad[j]
                );
            }
        }
    }
    // shapes that do not fit are errors, not panics
    let mut t = Tape::new(&be, &store);
    let x = t.input(Tensor::from_slice(&be, &[0.0; 12], &[1, 2, 2, 3]).unwrap());
    let w_bad = t.input(Tensor::from_slice(&be, &[0.0; 32], &[2, 1, 4, 4]).unwrap());
    assert!(
        t.conv2d(x, w_bad, 1, 0).is_err(),
        "channel mismatch accepted"
    );
    let w_big = t.input(Tensor::from_slice(&be, &[0.0; 96], &[2, 3, 4, 4]).unwrap());
    assert!(
        t.conv2d(x, w_big, 1, 0).is_err(),
        "kernel larger than the image accepted"
    );
}

/// The first two pickles of a file (z_mu and z_logvar as eval-images and cryoDRGN write them).
fn two_arrays(path: &Path) -> (Vec<f32>, Vec<f32>) {
    let v = cryofield::io::pkl::read_pkl_all(path).unwrap();
    let a = |i: usize| v[i].as_array().unwrap().to_f32();
    (a(0), a(1))
}

fn max_rel(ours: &[f32], reference: &[f32]) -> f64 {
    rel_err(ours, reference)
}

#[test]
fn conv_encoder_matches_a_chain_of_naive_convolutions() {
    use cryofield::model::encoder::{ConvNet, CONV_D};
    let be = B64::new();
    let mut store = ParamStore::new();
    let (hidden, out) = (2, 3);
    let net = ConvNet::new(
        &be,
        &mut store,
        "encoder",
        hidden,
        out,
        &mut StdRng::seed_from_u64(5),
    )
    .unwrap();
    // torch's names and layouts: encoder.main.{0,2,4,6,8}.weight (c_out, c_in, 4, 4)
    let shapes = store.named_shapes();
    let want: Vec<(String, Vec<usize>)> = [(0, 2, 1), (2, 4, 2), (4, 8, 4), (6, 16, 8), (8, 3, 16)]
        .iter()
        .map(|&(i, co, ci)| (format!("encoder.main.{i}.weight"), vec![co, ci, 4, 4]))
        .collect();
    assert_eq!(shapes, want);
    let nb = 2;
    let mut rng = StdRng::seed_from_u64(9);
    let x: Vec<f64> = (0..nb * CONV_D * CONV_D)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut t = Tape::inference(&be, &store);
    let xv = t.constant(Tensor::from_slice(&be, &x, &[nb, CONV_D * CONV_D]).unwrap());
    let y = net.forward(&mut t, xv).unwrap();
    assert_eq!(t.shape(y), &[nb, out]);
    let got = t.to_vec(y).unwrap();
    // by hand: 64 → 32 → 16 → 8 → 4 (stride 2, pad 1, LeakyReLU 0.2) → 1 (stride 1, pad 0)
    let mut h = x.clone();
    let (mut size, mut c) = (CONV_D, 1);
    for (l, &(id, stride, pad)) in net.layers.iter().enumerate() {
        let w = &store.get(id).buf;
        let co = store.get(id).shape[0];
        let (y, ho, _) = conv_naive(&h, w, (nb, size, size, c), co, 4, stride, pad);
        h = y;
        if l < 4 {
            h.iter_mut()
                .for_each(|v| *v = if *v > 0.0 { *v } else { 0.2 * *v });
        }
        size = ho;
        c = co;
    }
    assert_eq!((size, c), (1, out));
    let max = got
        .iter()
        .zip(&h)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(max < 1e-12, "ConvNet differs from the naive chain by {max}");
    assert!(h.iter().any(|v| v.abs() > 1e-3), "trivial output");
}

#[test]
fn eval_images_on_a_cryodrgn_conv_model_matches_the_reference() {
    // tests/fixtures/cryodrgn/conv (tools/make_cryodrgn_fixtures.sh): a HetOnlyVAE with
    // encode_mode conv and the latents its encode gives on its ImageDataset's real-space images
    let f = fixtures().join("conv");
    let dir = tempfile::tempdir().unwrap();
    let z = dir.path().join("z.pkl");
    run_ok(&[
        "eval-images",
        s(&f.join("particles.mrcs")),
        s(&f.join("weights.pkl")),
        "-c",
        s(&f.join("config.yaml")),
        "--poses",
        s(&f.join("poses.pkl")),
        "-o",
        s(&z),
        "-b",
        "2",
    ]);
    let (mu, lv) = two_arrays(&z);
    let (mu_ref, lv_ref) = two_arrays(&f.join("z_ref.pkl"));
    let (e_mu, e_lv) = (max_rel(&mu, &mu_ref), max_rel(&lv, &lv_ref));
    eprintln!(
        "conv encoder: max relative error against cryoDRGN z_mu {e_mu:.2e}, z_logvar {e_lv:.2e}"
    );
    assert!(e_mu <= 1e-4 && e_lv <= 1e-4, "z_mu {e_mu}, z_logvar {e_lv}");
}

#[test]
fn train_vae_runs_with_the_conv_encoder_and_refuses_what_it_cannot_do() {
    // 3 particles of 64×64 (the conv fixture's stack)
    let f = fixtures().join("conv");
    let (parts, poses) = (f.join("particles.mrcs"), f.join("poses.pkl"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("conv");
    let head = ["train-vae", s(&parts), "--poses", s(&poses), "--zdim", "2"];
    let nets = [
        "--encode-mode",
        "conv",
        "--enc-dim",
        "2",
        "--dec-layers",
        "1",
        "--dec-dim",
        "8",
    ];
    let tail = [
        "-n",
        "2",
        "-b",
        "2",
        "--seed",
        "3",
        "--no-analysis",
        "--pe-dim",
        "4",
    ];
    run_ok(&[&head[..], &nets, &tail, &["-o", s(&out)]].concat());
    let yaml = std::fs::read_to_string(out.join("config.yaml")).unwrap();
    assert!(
        yaml.contains("encode_mode: conv") && yaml.contains("enc_mask: -1"),
        "{yaml}"
    );
    let names = state_dict_names(&out.join("weights.pkl"));
    for i in [0, 2, 4, 6, 8] {
        assert!(
            names.contains(&format!("encoder.main.{i}.weight")),
            "{names:?}"
        );
    }
    // eval-images on the run gives its final latents (no noise at evaluation)
    let z = dir.path().join("z_eval.pkl");
    run_ok(&[
        "eval-images",
        s(&parts),
        s(&out.join("weights.pkl")),
        "-c",
        s(&out.join("config.yaml")),
        "--poses",
        s(&poses),
        "-o",
        s(&z),
    ]);
    let (mu, _) = two_arrays(&z);
    let (mu_run, _) = two_arrays(&out.join("z.pkl"));
    let e = max_rel(&mu, &mu_run);
    assert!(
        e < 1e-4,
        "eval-images z differs from the run's z by {e} (relative)"
    );

    // refused, one line each, nothing written
    let bad = dir.path().join("bad");
    let ctf = dir.path().join("ctf.pkl");
    let cases: [(&[&str], &str); 2] = [
        (&["--enc-mask", "16"], "--enc-mask 16 does not apply"),
        (&["--ctf", s(&ctf)], "not with --ctf"),
    ];
    for (extra, msg) in cases {
        let (ok, _, err) = run(&[&head[..], &nets, &tail, extra, &["-o", s(&bad)]].concat());
        assert!(
            !ok && err.contains(msg) && !err.contains("panicked") && !bad.exists(),
            "{extra:?}: {err}"
        );
    }
    // images that are not 64×64
    let sim = phantom_sim(dir.path(), "linear1d", 2, 4, &[]);
    let (ok, _, err) = run(&[
        "train-vae",
        s(&sim.particles()),
        "--poses",
        s(&sim.poses()),
        "--zdim",
        "2",
        "--encode-mode",
        "conv",
        "--enc-dim",
        "2",
        "-n",
        "1",
        "-o",
        s(&bad),
    ]);
    assert!(
        !ok && err.contains("64×64") && !err.contains("panicked"),
        "{err}"
    );
}
