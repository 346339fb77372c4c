//! The point-cloud denoiser F_θ: Point-E's `PointDiffusionTransformer` (Nichol et al. 2022) as
//! the paper uses it (spec §1), on the [`crate::autodiff`] tape, wrapped in EDM preconditioning.
//!
//! Network (clouds x (b, n, 3), width W, L layers, H heads, d_h = W/H):
//! - `input_proj` Linear(3→W) per point;
//! - time token: sinusoid(c_noise; W, max period 10⁴, `[cos, sin]`) → `time_embed.c_fc`
//!   Linear(W→4W) → GELU → `time_embed.c_proj` Linear(4W→W), prepended to the n point tokens;
//! - `ln_pre`, then L pre-LN blocks `x += attn(ln_1 x)`, `x += mlp(ln_2 x)` with attn =
//!   `c_proj ∘ softmax-attention ∘ c_qkv` (qkv in Point-E's per-head `[q|k|v]` layout, see
//!   [`crate::backend::Backend::attention`]) and mlp = `c_proj ∘ GELU ∘ c_fc` (4W hidden);
//! - `ln_post`, drop the time token, `output_proj` Linear(W→3).
//!
//! GELU is the exact erf form (PyTorch's `nn.GELU()` default, which Point-E uses); layer norms
//! have ε = 10⁻⁵ (PyTorch's default), γ = 1, β = 0. Initialisation as Point-E: `output_proj`
//! zero; `input_proj` PyTorch's default U(±1/√3) for weight and bias (with a zero bias,
//! ln_pre(W·x) would not depend on |x| at all, and training stalls: spec §1's "biases 0" is not
//! used here); every other weight N(0, (0.25/√W)²), biases 0. No positional encoding, so F is
//! permutation equivariant in the points.
//!
//! EDM with σ ≡ t and σ_data = 0.5: D_θ(x; t) = c_skip·x + c_out·F(c_in·x, c_noise) with
//! c_skip = σd²/(t²+σd²), c_out = σd·t/√(t²+σd²), c_in = 1/√(t²+σd²), c_noise = 1000·t/t_c
//! (t_c = 80 by default, spec A1/A2; 1 gives the Chair prior's 1000·t).
//!
//! Files: `PRIOR/model.safetensors` (one tensor per parameter, named as above with Point-E's
//! prefixes `backbone.resblocks.{l}.`, in the backend's element type F32 or F64) and
//! `PRIOR/config.json` ([`TransformerConfig`]).

use std::path::Path;

use rand::Rng;
use rand_distr::{Distribution, Normal};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::dps::CloudPrior;
use crate::autodiff::{ParamId, ParamStore, Tape, Tensor, Var};
use crate::backend::{Backend, Float, UnaryOp};
use crate::io::atomic::write_bytes_atomic;
use crate::nn::Linear;
use crate::{Error, Result};

/// Layer-norm ε (PyTorch's default).
pub const LN_EPS: f64 = 1e-5;

/// Size and preconditioning of a [`PointTransformer`] (`config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// Token width W.
    pub width: usize,
    /// Number of residual blocks L.
    pub layers: usize,
    /// Attention heads H (W a multiple of H).
    pub heads: usize,
    /// Points per cloud n.
    pub n_points: usize,
    /// σ_data of the EDM preconditioning.
    pub sigma_data: f64,
    /// t_c in c_noise = 1000·t/t_c.
    pub c_noise_tmax: f64,
}

impl Default for TransformerConfig {
    /// A CPU-sized network: W 64, 4 layers, 4 heads, 1024 points, σ_data 0.5, t_c 80.
    fn default() -> Self {
        Self {
            width: 64,
            layers: 4,
            heads: 4,
            n_points: 1024,
            sigma_data: 0.5,
            c_noise_tmax: 80.0,
        }
    }
}

impl TransformerConfig {
    /// Errors unless the sizes are positive, W is a multiple of H and the constants are finite
    /// and positive.
    pub fn check(&self) -> Result<()> {
        if self.width == 0 || self.layers == 0 || self.heads == 0 || self.n_points == 0 {
            return Err(Error::invalid(format!(
                "point transformer: width, layers, heads and points must be positive (got {}, {}, {}, {})",
                self.width, self.layers, self.heads, self.n_points
            )));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(Error::invalid(format!(
                "point transformer: width {} is not a multiple of heads {}",
                self.width, self.heads
            )));
        }
        for (name, v) in [
            ("sigma_data", self.sigma_data),
            ("c_noise_tmax", self.c_noise_tmax),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!(
                    "point transformer: {name} must be finite and positive, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// EDM coefficients (c_skip, c_out, c_in, c_noise) at noise level t.
    pub fn precond(&self, t: f64) -> [f64; 4] {
        let sd = self.sigma_data;
        let s2 = t * t + sd * sd;
        [
            sd * sd / s2,
            sd * t / s2.sqrt(),
            1.0 / s2.sqrt(),
            1000.0 * t / self.c_noise_tmax,
        ]
    }
}

/// Point-E's `timestep_embedding`: `[cos(c·f_k), sin(c·f_k)]`, f_k = 10000^(−k/(dim/2)),
/// k < dim/2 (a zero column appended when dim is odd).
pub fn timestep_embedding(c_noise: f64, dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let mut e = vec![0.0; dim];
    for k in 0..half {
        let f = (-(10000f64).ln() * k as f64 / half as f64).exp();
        e[k] = (c_noise * f).cos();
        e[half + k] = (c_noise * f).sin();
    }
    e
}

/// Layer norm parameters (γ, β).
#[derive(Clone, Debug)]
struct Ln {
    gamma: ParamId,
    beta: ParamId,
}

/// One pre-LN residual block.
#[derive(Clone, Debug)]
struct Block {
    ln_1: Ln,
    c_qkv: Linear,
    attn_proj: Linear,
    ln_2: Ln,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// F_θ and its EDM wrapper D_θ over a backend `B` (f32 for training and sampling, f64 for
/// gradient checks). Parameters live in `store`, in the order of [`PointTransformer::new`].
pub struct PointTransformer<B: Backend> {
    pub be: B,
    pub store: ParamStore<B>,
    pub cfg: TransformerConfig,
    input_proj: Linear,
    time_fc: Linear,
    time_proj: Linear,
    ln_pre: Ln,
    blocks: Vec<Block>,
    ln_post: Ln,
    output_proj: Linear,
}

/// Add a Linear with N(0, std²) weights and zero bias (std 0: all zero).
fn linear<B: Backend>(
    be: &B,
    store: &mut ParamStore<B>,
    name: &str,
    n_in: usize,
    n_out: usize,
    std: f64,
    rng: &mut impl Rng,
) -> Result<Linear> {
    let w: Vec<B::Elem> = if std > 0.0 {
        let nd = Normal::new(0.0, std).map_err(|e| Error::invalid(format!("{name}: {e}")))?;
        (0..n_in * n_out)
            .map(|_| B::Elem::c(nd.sample(rng)))
            .collect()
    } else {
        vec![B::Elem::c(0.0); n_in * n_out]
    };
    let w = store.add(
        format!("{name}.weight"),
        Tensor::from_slice(be, &w, &[n_out, n_in])?,
    );
    let b = store.add(format!("{name}.bias"), Tensor::zeros(be, &[n_out])?);
    Ok(Linear {
        w,
        b: Some(b),
        n_in,
        n_out,
    })
}

fn layer_norm<B: Backend>(be: &B, store: &mut ParamStore<B>, name: &str, d: usize) -> Result<Ln> {
    let one = vec![B::Elem::c(1.0); d];
    Ok(Ln {
        gamma: store.add(
            format!("{name}.weight"),
            Tensor::from_slice(be, &one, &[d])?,
        ),
        beta: store.add(format!("{name}.bias"), Tensor::zeros(be, &[d])?),
    })
}

impl<B: Backend> PointTransformer<B> {
    /// A freshly initialised network (module doc) on backend `be`.
    pub fn new(be: &B, cfg: TransformerConfig, rng: &mut impl Rng) -> Result<Self> {
        cfg.check()?;
        let w = cfg.width;
        let std = 0.25 / (w as f64).sqrt();
        let mut store = ParamStore::new();
        let s = &mut store;
        // PyTorch's default init, as in Point-E: the non-zero bias keeps |x| visible through
        // ln_pre (LN(W·x) alone is blind to the scale of x)
        let input_proj = Linear::new(be, s, "input_proj", 3, w, true, rng)?;
        let time_fc = linear(be, s, "time_embed.c_fc", w, 4 * w, std, rng)?;
        let time_proj = linear(be, s, "time_embed.c_proj", 4 * w, w, std, rng)?;
        let ln_pre = layer_norm(be, s, "ln_pre", w)?;
        let mut blocks = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let p = format!("backbone.resblocks.{l}");
            blocks.push(Block {
                ln_1: layer_norm(be, s, &format!("{p}.ln_1"), w)?,
                c_qkv: linear(be, s, &format!("{p}.attn.c_qkv"), w, 3 * w, std, rng)?,
                attn_proj: linear(be, s, &format!("{p}.attn.c_proj"), w, w, std, rng)?,
                ln_2: layer_norm(be, s, &format!("{p}.ln_2"), w)?,
                c_fc: linear(be, s, &format!("{p}.mlp.c_fc"), w, 4 * w, std, rng)?,
                mlp_proj: linear(be, s, &format!("{p}.mlp.c_proj"), 4 * w, w, std, rng)?,
            });
        }
        let ln_post = layer_norm(be, s, "ln_post", w)?;
        let output_proj = linear(be, s, "output_proj", w, 3, 0.0, rng)?;
        Ok(Self {
            be: be.clone(),
            store,
            cfg,
            input_proj,
            time_fc,
            time_proj,
            ln_pre,
            blocks,
            ln_post,
            output_proj,
        })
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.store.tensors.iter().map(|t| t.numel()).sum()
    }

    fn ln(&self, t: &mut Tape<'_, B>, x: Var, ln: &Ln) -> Result<Var> {
        let (g, b) = (t.param(ln.gamma), t.param(ln.beta));
        t.layer_norm(x, g, b, LN_EPS)
    }

    /// Record F(x_in, c_noise) on `t`: x_in (b·n, 3) (already scaled by c_in), one c_noise per
    /// cloud → (b·n, 3).
    pub fn forward_f(&self, t: &mut Tape<'_, B>, x_in: Var, c_noise: &[f64]) -> Result<Var> {
        let (b, n, w) = (c_noise.len(), self.cfg.n_points, self.cfg.width);
        if t.shape(x_in) != [b * n, 3] {
            return Err(Error::Shape {
                what: "point transformer: input".into(),
                expected: format!("({}, 3) for {b} clouds of {n} points", b * n),
                got: format!("{:?}", t.shape(x_in)),
            });
        }
        let h = self.input_proj.forward(t, x_in)?;
        let emb: Vec<B::Elem> = c_noise
            .iter()
            .flat_map(|&c| timestep_embedding(c, w))
            .map(B::Elem::c)
            .collect();
        let emb = t.constant(Tensor::from_slice(&self.be, &emb, &[b, w])?);
        let te = self.time_fc.forward(t, emb)?;
        let te = t.unary(te, UnaryOp::Gelu)?;
        let te = self.time_proj.forward(t, te)?;
        // tokens (b, n+1, W): the time token first, as rows [te | h] of (b, (n+1)·W)
        let h = t.reshape(h, &[b, n * w])?;
        let tok = t.concat(&[te, h])?;
        let mut x = t.reshape(tok, &[b * (n + 1), w])?;
        x = self.ln(t, x, &self.ln_pre)?;
        for blk in &self.blocks {
            let a = self.ln(t, x, &blk.ln_1)?;
            let qkv = blk.c_qkv.forward(t, a)?;
            let a = t.attention(qkv, b, self.cfg.heads)?;
            let a = blk.attn_proj.forward(t, a)?;
            x = t.add(x, a)?;
            let m = self.ln(t, x, &blk.ln_2)?;
            let m = blk.c_fc.forward(t, m)?;
            let m = t.unary(m, UnaryOp::Gelu)?;
            let m = blk.mlp_proj.forward(t, m)?;
            x = t.add(x, m)?;
        }
        x = self.ln(t, x, &self.ln_post)?;
        let x = t.reshape(x, &[b, (n + 1) * w])?;
        let x = t.slice(x, w, n * w)?;
        let x = t.reshape(x, &[b * n, w])?;
        self.output_proj.forward(t, x)
    }

    /// Check x (b, n, 3) against t (b) and return b.
    fn batch(&self, what: &str, x: &[f64], t: &[f64]) -> Result<usize> {
        let per = 3 * self.cfg.n_points;
        if t.is_empty() || x.len() != t.len() * per {
            return Err(Error::Shape {
                what: format!("{what}: x"),
                expected: format!(
                    "{} values ({} clouds of {} points × 3)",
                    t.len() * per,
                    t.len(),
                    self.cfg.n_points
                ),
                got: x.len().to_string(),
            });
        }
        if let Some(bad) = t.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(Error::invalid(format!(
                "{what}: noise levels t must be finite and positive, got {bad}"
            )));
        }
        Ok(t.len())
    }

    /// Per-coordinate constants (b·n·3) of one EDM coefficient (index into `precond`).
    fn per_coord(&self, t: &[f64], k: usize) -> Vec<B::Elem> {
        let per = 3 * self.cfg.n_points;
        t.iter()
            .flat_map(|&ti| std::iter::repeat_n(B::Elem::c(self.cfg.precond(ti)[k]), per))
            .collect()
    }

    /// Record D(x; t) on `tape` for x given as a tape value (b·n, 3).
    pub fn forward_d(&self, tape: &mut Tape<'_, B>, x: Var, t: &[f64]) -> Result<Var> {
        let b = t.len();
        let n3 = [b * self.cfg.n_points, 3];
        let c = |k: usize| Tensor::from_slice(&self.be, &self.per_coord(t, k), &n3);
        let (c_skip, c_out, c_in) = (c(0)?, c(1)?, c(2)?);
        let c_skip = tape.constant(c_skip);
        let c_out = tape.constant(c_out);
        let c_in = tape.constant(c_in);
        let xin = tape.mul(x, c_in)?;
        let c_noise: Vec<f64> = t.iter().map(|&ti| self.cfg.precond(ti)[3]).collect();
        let f = self.forward_f(tape, xin, &c_noise)?;
        let skip = tape.mul(x, c_skip)?;
        let out = tape.mul(f, c_out)?;
        tape.add(skip, out)
    }

    fn upload(&self, x: &[f64]) -> Result<Tensor<B>> {
        let v: Vec<B::Elem> = x.iter().map(|&v| B::Elem::c(v)).collect();
        Tensor::from_slice(&self.be, &v, &[x.len() / 3, 3])
    }

    /// Save `dir/model.safetensors` and `dir/config.json` (each atomically; `dir` is created).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("model.safetensors");
        let f64s = B::Elem::NAME == "f64";
        let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, t) in self.store.names.iter().zip(&self.store.tensors) {
            let v = self.be.to_vec(&t.buf)?;
            let bytes: Vec<u8> = if f64s {
                v.iter().flat_map(|x| x.f64().to_le_bytes()).collect()
            } else {
                v.iter()
                    .flat_map(|x| (x.f64() as f32).to_le_bytes())
                    .collect()
            };
            bufs.push((name.clone(), t.shape.clone(), bytes));
        }
        let dtype = if f64s { Dtype::F64 } else { Dtype::F32 };
        let views = bufs
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(dtype, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::format(&path, format!("tensor `{n}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert(
            "format".to_string(),
            "cryofield-point-transformer".to_string(),
        );
        let data = safetensors::serialize(views, &Some(meta))
            .map_err(|e| Error::format(&path, format!("cannot serialize: {e}")))?;
        write_bytes_atomic(&path, &data)?;
        let cpath = dir.join("config.json");
        let json = serde_json::to_string_pretty(&self.cfg)
            .map_err(|e| Error::format(&cpath, e.to_string()))?;
        write_bytes_atomic(&cpath, json.as_bytes())
    }

    /// Read `dir/config.json` ([`TransformerConfig`]).
    pub fn read_config(dir: impl AsRef<Path>) -> Result<TransformerConfig> {
        let cpath = dir.as_ref().join("config.json");
        let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
        let cfg: TransformerConfig = serde_json::from_str(&text)
            .map_err(|e| Error::format(&cpath, format!("not a point-transformer config: {e}")))?;
        cfg.check()
            .map_err(|e| Error::format(&cpath, e.to_string()))?;
        Ok(cfg)
    }

    /// Load a model written by [`PointTransformer::save`] onto backend `be` (F32 or F64 tensors;
    /// every parameter must be present with its shape, else an error naming the file and tensor).
    pub fn load(be: &B, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg = Self::read_config(dir)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut m = Self::new(be, cfg, &mut rng)?;
        let path = dir.join("model.safetensors");
        let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let st = SafeTensors::deserialize(&data)
            .map_err(|e| Error::format(&path, format!("not a safetensors file: {e}")))?;
        for i in 0..m.store.len() {
            let name = m.store.names[i].clone();
            let shape = m.store.tensors[i].shape.clone();
            let t = st.tensor(&name).map_err(|_| {
                Error::format(
                    &path,
                    format!("tensor `{name}` missing (config.json and weights disagree?)"),
                )
            })?;
            if t.shape() != shape.as_slice() {
                return Err(Error::format(
                    &path,
                    format!(
                        "tensor `{name}`: expected shape {shape:?} (from config.json), got {:?}",
                        t.shape()
                    ),
                ));
            }
            let v: Vec<B::Elem> = match t.dtype() {
                Dtype::F32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|b| B::Elem::c(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64))
                    .collect(),
                Dtype::F64 => t
                    .data()
                    .chunks_exact(8)
                    .map(|b| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        B::Elem::c(f64::from_le_bytes(a))
                    })
                    .collect(),
                d => {
                    return Err(Error::format(
                        &path,
                        format!("tensor `{name}`: expected F32 or F64, got {d:?}"),
                    ))
                }
            };
            if v.iter().any(|x| !x.f64().is_finite()) {
                return Err(Error::format(
                    &path,
                    format!("tensor `{name}` holds non-finite values"),
                ));
            }
            *m.store.get_mut(ParamId(i)) = Tensor::from_slice(be, &v, &shape)?;
        }
        Ok(m)
    }
}

use rand::SeedableRng;

impl<B: Backend> CloudPrior for PointTransformer<B> {
    fn n_points(&self) -> usize {
        self.cfg.n_points
    }

    fn denoise(&self, x: &[f64], t: &[f64]) -> Result<Vec<f64>> {
        self.batch("PointTransformer::denoise", x, t)?;
        let mut tape = Tape::inference(&self.be, &self.store);
        let xv = tape.constant(self.upload(x)?);
        let d = self.forward_d(&mut tape, xv, t)?;
        Ok(tape.to_vec(d)?.into_iter().map(|v| v.f64()).collect())
    }

    fn denoise_vjp(
        &self,
        x: &[f64],
        t: &[f64],
        cot: &mut dyn FnMut(&[f64]) -> Result<Vec<f64>>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        self.batch("PointTransformer::denoise_vjp", x, t)?;
        let mut tape = Tape::frozen_params(&self.be, &self.store);
        let xv = tape.input(self.upload(x)?);
        let d = self.forward_d(&mut tape, xv, t)?;
        let dv: Vec<f64> = tape.to_vec(d)?.into_iter().map(|v| v.f64()).collect();
        let v = cot(&dv)?;
        if v.len() != dv.len() {
            return Err(Error::Shape {
                what: "PointTransformer::denoise_vjp: cotangent".into(),
                expected: format!("{} values (b, n, 3)", dv.len()),
                got: v.len().to_string(),
            });
        }
        // loss = Σ D ⊙ v with v constant: ∂loss/∂x = vᵀ ∂D/∂x
        let vc = tape.constant(self.upload(&v)?);
        let prod = tape.mul(d, vc)?;
        let loss = tape.sum_all(prod, 1.0)?;
        let grads = tape.backward(loss)?;
        let g = grads
            .get(xv)
            .ok_or_else(|| Error::invalid("denoise_vjp: no gradient reached the input"))?;
        let g: Vec<f64> = self.be.to_vec(g)?.into_iter().map(|v| v.f64()).collect();
        grads.recycle(&self.be);
        Ok((dv, g))
    }
}
