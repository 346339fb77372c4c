//! The tape: nodes in execution order; [`Tape::backward`] walks them in reverse.
//!
//! Each forward method checks shapes, calls one backend primitive and pushes a node holding
//! the [`Op`], its output and whatever the backward rule needs (`Saved`). Tensors are viewed as
//! (rows, last axis) matrices; there is no implicit broadcasting.

use super::op::{backward_node, Op};
use super::tensor::{ParamId, ParamStore, Tensor};
use crate::backend::{
    Activation, Backend, BinaryOp, DecodeSaved, DecodeSpec, Domain, MatRef, MlpLayer, MlpSaved,
    MlpWeights, UnaryOp,
};
use crate::{Error, Result};
use std::collections::HashMap;

/// A value on the tape (index of its node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub usize);

/// What a node keeps for its backward rule besides its inputs and output.
pub(crate) enum Saved<B: Backend> {
    None,
    /// Layer norm: mean (n), rstd (n); attention: row log-sum-exps (batch·heads·t).
    Bufs(Vec<B::Buf>),
    /// The fused MLP's activations.
    Mlp(MlpSaved<B>),
    /// The rotated-lattice decoder's MLP input, signs and activations.
    Decode(DecodeSaved<B>),
}

pub(crate) struct Node<B: Backend> {
    pub op: Op,
    pub shape: Vec<usize>,
    /// None for parameters (read from the store).
    pub value: Option<B::Buf>,
    pub saved: Saved<B>,
    pub needs_grad: bool,
}

/// A recording of one forward pass over a borrowed [`ParamStore`].
pub struct Tape<'p, B: Backend> {
    pub(crate) be: B,
    pub(crate) params: &'p ParamStore<B>,
    pub(crate) nodes: Vec<Node<B>>,
    grad_enabled: bool,
    /// Whether parameters take gradients (false: only inputs do, e.g. a VJP in the data).
    param_grads: bool,
    param_vars: HashMap<ParamId, Var>,
}

/// Gradients of the leaves (inputs and parameters) after [`Tape::backward`].
pub struct Grads<B: Backend> {
    by_node: Vec<Option<B::Buf>>,
    param_vars: HashMap<ParamId, Var>,
}

impl<B: Backend> Grads<B> {
    /// ∂loss/∂v for a leaf `v`, None when it did not influence the loss.
    pub fn get(&self, v: Var) -> Option<&B::Buf> {
        self.by_node.get(v.0).and_then(|g| g.as_ref())
    }

    /// ∂loss/∂parameter, None when the parameter was not used on the tape.
    pub fn param(&self, id: ParamId) -> Option<&B::Buf> {
        self.param_vars.get(&id).and_then(|v| self.get(*v))
    }

    /// Give every gradient buffer back to the backend's pool.
    pub fn recycle(self, be: &B) {
        self.by_node
            .into_iter()
            .flatten()
            .for_each(|b| be.recycle(b));
    }
}

fn shape_err(what: &str, expected: impl Into<String>, got: impl std::fmt::Debug) -> Error {
    Error::Shape {
        what: what.to_string(),
        expected: expected.into(),
        got: format!("{got:?}"),
    }
}

/// Last axis of a shape (1 for scalars).
pub(crate) fn last(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}

/// (rows, cols) of a shape viewed as a matrix over its last axis.
pub(crate) fn mat(shape: &[usize]) -> (usize, usize) {
    let d = last(shape);
    let n: usize = shape.iter().product();
    (n.checked_div(d).unwrap_or(0), d)
}

impl<'p, B: Backend> Tape<'p, B> {
    /// A tape that records for backward.
    pub fn new(be: &B, params: &'p ParamStore<B>) -> Self {
        Self {
            be: be.clone(),
            params,
            nodes: Vec::new(),
            grad_enabled: true,
            param_grads: true,
            param_vars: HashMap::new(),
        }
    }

    /// A tape that records for backward with respect to its inputs only: parameters take no
    /// gradient (vector–Jacobian products in the data skip every dW, db product).
    pub fn frozen_params(be: &B, params: &'p ParamStore<B>) -> Self {
        let mut t = Self::new(be, params);
        t.param_grads = false;
        t
    }

    /// A tape for inference: nothing needs a gradient, the fused MLP saves no activations.
    pub fn inference(be: &B, params: &'p ParamStore<B>) -> Self {
        let mut t = Self::new(be, params);
        t.grad_enabled = false;
        t
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.be
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &B::Buf {
        let node = &self.nodes[v.0];
        match (&node.op, &node.value) {
            (_, Some(b)) => b,
            (Op::Param(id), None) => &self.params.get(*id).buf,
            _ => unreachable!("every non-parameter node holds its value"),
        }
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &[usize] {
        &self.nodes[v.0].shape
    }

    /// Copy `v` to the host.
    pub fn to_vec(&self, v: Var) -> Result<Vec<B::Elem>> {
        self.be.to_vec(self.value(v))
    }

    /// Number of nodes recorded.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn push(&mut self, op: Op, shape: Vec<usize>, value: B::Buf, saved: Saved<B>) -> Var {
        let needs_grad =
            self.grad_enabled && op.inputs().iter().any(|v| self.nodes[v.0].needs_grad);
        self.nodes.push(Node {
            op,
            shape,
            value: Some(value),
            saved,
            needs_grad,
        });
        Var(self.nodes.len() - 1)
    }

    fn leaf(&mut self, op: Op, t: Tensor<B>, needs_grad: bool) -> Var {
        self.nodes.push(Node {
            op,
            shape: t.shape,
            value: Some(t.buf),
            saved: Saved::None,
            needs_grad: needs_grad && self.grad_enabled,
        });
        Var(self.nodes.len() - 1)
    }

    /// A leaf whose gradient [`Tape::backward`] returns.
    pub fn input(&mut self, t: Tensor<B>) -> Var {
        self.leaf(Op::Input, t, true)
    }

    /// A leaf without gradient (data, fixed frequencies).
    pub fn constant(&mut self, t: Tensor<B>) -> Var {
        self.leaf(Op::Constant, t, false)
    }

    /// A parameter of the borrowed store (no copy; one node per parameter per tape).
    pub fn param(&mut self, id: ParamId) -> Var {
        if let Some(v) = self.param_vars.get(&id) {
            return *v;
        }
        self.nodes.push(Node {
            op: Op::Param(id),
            shape: self.params.get(id).shape.clone(),
            value: None,
            saved: Saved::None,
            needs_grad: self.grad_enabled && self.param_grads,
        });
        let v = Var(self.nodes.len() - 1);
        self.param_vars.insert(id, v);
        v
    }

    fn out(&self, n: usize) -> Result<B::Buf> {
        self.be.alloc(n)
    }

    fn same_shape(&self, what: &str, a: Var, b: Var) -> Result<()> {
        if self.shape(a) != self.shape(b) {
            return Err(shape_err(
                what,
                format!("{:?}", self.shape(a)),
                self.shape(b),
            ));
        }
        Ok(())
    }

    /// a (m, k) · b (k, n) → (m, n).
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        if sa.len() != 2 || sb.len() != 2 || sa[1] != sb[0] {
            return Err(shape_err("matmul", "(m, k) · (k, n)", (sa, sb)));
        }
        let mut y = self.out(sa[0] * sb[1])?;
        let ma = MatRef {
            buf: self.value(a),
            rows: sa[0],
            cols: sa[1],
            trans: false,
        };
        let mb = MatRef {
            buf: self.value(b),
            rows: sb[0],
            cols: sb[1],
            trans: false,
        };
        self.be.gemm(1.0, ma, mb, 0.0, &mut y)?;
        Ok(self.push(Op::Matmul { a, b }, vec![sa[0], sb[1]], y, Saved::None))
    }

    /// torch's `F.linear`: x (…, in) · wᵀ (w: (out, in)) + b (out) → (…, out). The bias is
    /// written first and the GEMM accumulates onto it (no separate bias pass).
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let sx = self.shape(x).to_vec();
        let sw = self.shape(w).to_vec();
        let (n, k) = mat(&sx);
        if sw.len() != 2 || sw[1] != k {
            return Err(shape_err("linear: weight", format!("(out, {k})"), sw));
        }
        let o = sw[0];
        let mut y = self.out(n * o)?;
        let beta = if let Some(b) = b {
            if self.shape(b) != [o] {
                return Err(shape_err("linear: bias", format!("({o})"), self.shape(b)));
            }
            self.be.broadcast_rows(self.value(b), o, &mut y)?;
            1.0
        } else {
            0.0
        };
        let mx = MatRef {
            buf: self.value(x),
            rows: n,
            cols: k,
            trans: false,
        };
        let mw = MatRef {
            buf: self.value(w),
            rows: o,
            cols: k,
            trans: true,
        };
        self.be.gemm(1.0, mx, mw, beta, &mut y)?;
        let mut shape = sx;
        *shape.last_mut().unwrap_or(&mut 0) = o;
        Ok(self.push(Op::Linear { x, w, b }, shape, y, Saved::None))
    }

    /// x (…, d) + b (d) over rows.
    pub fn add_bias(&mut self, x: Var, b: Var) -> Result<Var> {
        let d = last(self.shape(x));
        if self.shape(b) != [d] {
            return Err(shape_err("add_bias: bias", format!("({d})"), self.shape(b)));
        }
        let mut y = self.be.copy(self.value(x))?;
        self.be.add_bias(self.value(b), d, &mut y)?;
        let shape = self.shape(x).to_vec();
        Ok(self.push(Op::AddBias { x, b }, shape, y, Saved::None))
    }

    /// Elementwise f(x).
    pub fn unary(&mut self, x: Var, op: UnaryOp) -> Result<Var> {
        let mut y = self.out(self.be.len(self.value(x)))?;
        self.be.unary(op, self.value(x), &mut y)?;
        let shape = self.shape(x).to_vec();
        Ok(self.push(Op::Unary { x, op }, shape, y, Saved::None))
    }

    /// max(x, 0).
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary(x, UnaryOp::Relu)
    }

    /// x·σ(x).
    pub fn silu(&mut self, x: Var) -> Result<Var> {
        self.unary(x, UnaryOp::Silu)
    }

    /// Elementwise a ∘ b of equal shapes.
    pub fn binary(&mut self, a: Var, b: Var, op: BinaryOp) -> Result<Var> {
        self.same_shape("binary", a, b)?;
        let mut y = self.out(self.be.len(self.value(a)))?;
        self.be.binary(op, self.value(a), self.value(b), &mut y)?;
        let shape = self.shape(a).to_vec();
        Ok(self.push(Op::Binary { a, b, op }, shape, y, Saved::None))
    }

    /// a + b.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, BinaryOp::Add)
    }

    /// a − b.
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, BinaryOp::Sub)
    }

    /// a ⊙ b.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, BinaryOp::Mul)
    }

    /// mul·x + add.
    pub fn affine(&mut self, x: Var, mul: f64, add: f64) -> Result<Var> {
        let mut y = self.out(self.be.len(self.value(x)))?;
        self.be.affine(self.value(x), mul, add, &mut y)?;
        let shape = self.shape(x).to_vec();
        Ok(self.push(Op::Affine { x, mul }, shape, y, Saved::None))
    }

    /// scale·Σ x over all elements → shape (1).
    pub fn sum_all(&mut self, x: Var, scale: f64) -> Result<Var> {
        let n = self.be.len(self.value(x));
        let mut y = self.out(1)?;
        self.be
            .sum_cols(self.value(x), n.max(1), scale, &mut y, false)?;
        Ok(self.push(Op::SumAll { x, scale }, vec![1], y, Saved::None))
    }

    /// mean of all elements → shape (1).
    pub fn mean_all(&mut self, x: Var) -> Result<Var> {
        let n = self.be.len(self.value(x)).max(1);
        self.sum_all(x, 1.0 / n as f64)
    }

    /// scale·Σ over rows of x (n, d) → (d).
    pub fn sum_rows(&mut self, x: Var, scale: f64) -> Result<Var> {
        let (_, d) = mat(self.shape(x));
        let mut y = self.out(d)?;
        self.be.sum_rows(self.value(x), d, scale, &mut y, false)?;
        Ok(self.push(Op::SumRows { x, scale }, vec![d], y, Saved::None))
    }

    /// scale·Σ over the last axis of x (…, d) → (…).
    pub fn sum_cols(&mut self, x: Var, scale: f64) -> Result<Var> {
        let (n, d) = mat(self.shape(x));
        let mut y = self.out(n)?;
        self.be.sum_cols(self.value(x), d, scale, &mut y, false)?;
        let mut shape = self.shape(x).to_vec();
        shape.pop();
        if shape.is_empty() {
            shape.push(1);
        }
        Ok(self.push(Op::SumCols { x, scale }, shape, y, Saved::None))
    }

    /// x (d) repeated over n rows → (n, d).
    pub fn broadcast_rows(&mut self, x: Var, n: usize) -> Result<Var> {
        let d = self.be.len(self.value(x));
        let mut y = self.out(n * d)?;
        self.be.broadcast_rows(self.value(x), d, &mut y)?;
        Ok(self.push(Op::BroadcastRows { x }, vec![n, d], y, Saved::None))
    }

    /// x (n) repeated over d columns → (n, d).
    pub fn broadcast_cols(&mut self, x: Var, d: usize) -> Result<Var> {
        let n = self.be.len(self.value(x));
        let mut y = self.out(n * d)?;
        self.be.broadcast_cols(self.value(x), d, &mut y, false)?;
        Ok(self.push(Op::BroadcastCols { x, d }, vec![n, d], y, Saved::None))
    }

    /// Concatenate along the last axis (all inputs share the leading shape).
    pub fn concat(&mut self, xs: &[Var]) -> Result<Var> {
        let first = *xs
            .first()
            .ok_or_else(|| Error::invalid("concat: no inputs"))?;
        let lead = &self.shape(first)[..self.shape(first).len().saturating_sub(1)];
        let lead = lead.to_vec();
        let mut width = 0;
        for &x in xs {
            let s = self.shape(x);
            if s.len() != lead.len() + 1 || s[..lead.len()] != lead[..] {
                return Err(shape_err("concat", format!("({lead:?}, ·)"), s));
            }
            width += last(s);
        }
        let n: usize = lead.iter().product();
        let mut y = self.out(n * width)?;
        let mut off = 0;
        for &x in xs {
            let w = last(self.shape(x));
            self.be
                .copy_cols(self.value(x), w, 0, &mut y, width, off, w, false)?;
            off += w;
        }
        let mut shape = lead;
        shape.push(width);
        Ok(self.push(Op::Concat { xs: xs.to_vec() }, shape, y, Saved::None))
    }

    /// Columns start..start+len of the last axis.
    pub fn slice(&mut self, x: Var, start: usize, len: usize) -> Result<Var> {
        let (n, d) = mat(self.shape(x));
        let mut y = self.out(n * len)?;
        self.be
            .copy_cols(self.value(x), d, start, &mut y, len, 0, len, false)?;
        let mut shape = self.shape(x).to_vec();
        *shape.last_mut().unwrap_or(&mut 0) = len;
        Ok(self.push(Op::Slice { x, start, len }, shape, y, Saved::None))
    }

    /// The same values with another shape of equal size (a copy).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let n: usize = shape.iter().product();
        if n != self.be.len(self.value(x)) {
            return Err(shape_err("reshape", format!("{n} elements"), self.shape(x)));
        }
        let y = self.be.copy(self.value(x))?;
        Ok(self.push(Op::Reshape { x }, shape.to_vec(), y, Saved::None))
    }

    /// Rows idx of x (m, d) → (len(idx), d).
    pub fn gather_rows(&mut self, x: Var, idx: &[u32]) -> Result<Var> {
        let (_, d) = mat(self.shape(x));
        let mut y = self.out(idx.len() * d)?;
        self.be.gather_rows(self.value(x), d, idx, &mut y)?;
        Ok(self.push(
            Op::GatherRows {
                x,
                idx: idx.to_vec(),
            },
            vec![idx.len(), d],
            y,
            Saved::None,
        ))
    }

    /// Layer norm over the last axis with affine γ, β (d).
    pub fn layer_norm(&mut self, x: Var, gamma: Var, beta: Var, eps: f64) -> Result<Var> {
        let (n, d) = mat(self.shape(x));
        for (name, v) in [("layer_norm: gamma", gamma), ("layer_norm: beta", beta)] {
            if self.shape(v) != [d] {
                return Err(shape_err(name, format!("({d})"), self.shape(v)));
            }
        }
        let mut y = self.out(n * d)?;
        let mut mean = self.out(n)?;
        let mut rstd = self.out(n)?;
        self.be.layer_norm(
            self.value(x),
            self.value(gamma),
            self.value(beta),
            d,
            eps,
            &mut y,
            &mut mean,
            &mut rstd,
        )?;
        let shape = self.shape(x).to_vec();
        Ok(self.push(
            Op::LayerNorm { x, gamma, beta },
            shape,
            y,
            Saved::Bufs(vec![mean, rstd]),
        ))
    }

    /// Softmax over the last axis.
    pub fn softmax(&mut self, x: Var) -> Result<Var> {
        let (n, d) = mat(self.shape(x));
        let mut y = self.out(n * d)?;
        self.be.softmax(self.value(x), d, &mut y)?;
        let shape = self.shape(x).to_vec();
        Ok(self.push(Op::Softmax { x }, shape, y, Saved::None))
    }

    /// Multi-head self-attention over `batch` sequences ([`Backend::attention`]): qkv
    /// (batch·t, 3·W) with rows grouped by sequence and W = heads·d_h → (batch·t, W).
    pub fn attention(&mut self, qkv: Var, batch: usize, heads: usize) -> Result<Var> {
        let (n, c) = mat(self.shape(qkv));
        if batch == 0
            || heads == 0
            || !n.is_multiple_of(batch)
            || n == 0
            || !c.is_multiple_of(3 * heads)
            || c == 0
        {
            return Err(shape_err(
                "attention: qkv",
                format!("(batch·t, 3·heads·d_h) with batch {batch}, heads {heads}"),
                self.shape(qkv),
            ));
        }
        let w = c / 3;
        let mut y = self.out(n * w)?;
        let mut lse = self.out(n * heads)?;
        self.be
            .attention(self.value(qkv), batch, heads, &mut y, &mut lse)?;
        Ok(self.push(
            Op::Attention { qkv, batch, heads },
            vec![n, w],
            y,
            Saved::Bufs(vec![lse]),
        ))
    }

    /// 2-D convolution without bias ([`Backend::conv2d`]): x (B, H, W, C_in) NHWC, w (C_out,
    /// C_in, k, k) in torch's layout, `stride` and `pad` zero pixels per side → (B, H_out,
    /// W_out, C_out), H_out = (H + 2·pad − k)/stride + 1.
    pub fn conv2d(&mut self, x: Var, w: Var, stride: usize, pad: usize) -> Result<Var> {
        let (sx, sw) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if sx.len() != 4 {
            return Err(shape_err("conv2d: x", "(B, H, W, C_in)", sx));
        }
        if sw.len() != 4 || sw[1] != sx[3] || sw[2] != sw[3] {
            return Err(shape_err(
                "conv2d: w",
                format!("(C_out, {}, k, k)", sx[3]),
                sw,
            ));
        }
        let s = crate::backend::Conv2dShape {
            batch: sx[0],
            h: sx[1],
            w: sx[2],
            c_in: sx[3],
            c_out: sw[0],
            k: sw[2],
            stride,
            pad,
        };
        s.check("conv2d")?;
        let mut y = self.out(s.y_len())?;
        self.be.conv2d(self.value(x), self.value(w), &s, &mut y)?;
        let shape = vec![s.batch, s.h_out(), s.w_out(), s.c_out];
        Ok(self.push(Op::Conv2d { x, w, shape: s }, shape, y, Saved::None))
    }

    /// mean((a − b)²) → (1).
    pub fn mse(&mut self, a: Var, b: Var) -> Result<Var> {
        self.same_shape("mse", a, b)?;
        let mut y = self.out(1)?;
        self.be.mse(self.value(a), self.value(b), &mut y)?;
        Ok(self.push(Op::Mse { a, b }, vec![1], y, Saved::None))
    }

    /// mean(½(logvar + (x − μ)² e^{−logvar})) → (1).
    pub fn gaussian_nll(&mut self, mu: Var, logvar: Var, x: Var) -> Result<Var> {
        self.same_shape("gaussian_nll: logvar", mu, logvar)?;
        self.same_shape("gaussian_nll: x", mu, x)?;
        let mut y = self.out(1)?;
        self.be
            .gaussian_nll(self.value(mu), self.value(logvar), self.value(x), &mut y)?;
        Ok(self.push(Op::GaussianNll { mu, logvar, x }, vec![1], y, Saved::None))
    }

    /// cryoDRGN's KL to N(0, I) for μ, logvar (B, zdim), averaged over the batch → (1).
    pub fn kl_std_normal(&mut self, mu: Var, logvar: Var) -> Result<Var> {
        self.same_shape("kl_std_normal", mu, logvar)?;
        let (_, d) = mat(self.shape(mu));
        let mut y = self.out(1)?;
        self.be
            .kl_std_normal(self.value(mu), self.value(logvar), d, &mut y)?;
        Ok(self.push(Op::KlStdNormal { mu, logvar }, vec![1], y, Saved::None))
    }

    /// Fourier features of coords (…, c) with frequencies (m, 3) in `groups` groups → (…, 2m + c − 3);
    /// see [`Backend::fourier_features`].
    pub fn fourier_features(&mut self, coords: Var, freqs: Var, groups: usize) -> Result<Var> {
        let (n, c) = mat(self.shape(coords));
        let m = self.be.len(self.value(freqs)) / 3;
        let w = 2 * m + c.saturating_sub(3);
        let mut y = self.out(n * w)?;
        self.be
            .fourier_features(self.value(coords), c, self.value(freqs), groups, &mut y)?;
        let mut shape = self.shape(coords).to_vec();
        *shape.last_mut().unwrap_or(&mut 0) = w;
        Ok(self.push(
            Op::FourierFeatures {
                coords,
                freqs,
                groups,
            },
            shape,
            y,
            Saved::None,
        ))
    }

    /// The fused MLP (one backend primitive forward and backward): `layers[l] = (W (out, in),
    /// b (out))`, `residual[l]` adds the layer input, `act` follows every layer but the last.
    pub fn mlp(
        &mut self,
        x: Var,
        layers: &[(Var, Var)],
        residual: &[bool],
        act: Activation,
    ) -> Result<Var> {
        if layers.len() != residual.len() || layers.is_empty() {
            return Err(shape_err(
                "mlp: residual flags",
                format!("{} flags", layers.len()),
                residual.len(),
            ));
        }
        let (n, d) = mat(self.shape(x));
        let ws = self.mlp_weights(layers, residual, act)?;
        if ws.layers[0].n_in != d {
            return Err(shape_err(
                "mlp: input",
                format!("(·, {})", ws.layers[0].n_in),
                self.shape(x),
            ));
        }
        let n_out = ws.layers[ws.layers.len() - 1].n_out;
        let save = self.grad_enabled;
        let (y, saved) = self.be.mlp_forward(&ws, self.value(x), n, save)?;
        let mut shape = self.shape(x).to_vec();
        *shape.last_mut().unwrap_or(&mut 0) = n_out;
        let op = Op::Mlp {
            x,
            layers: layers.to_vec(),
            residual: residual.to_vec(),
            act,
        };
        let saved = saved.map(Saved::Mlp).unwrap_or(Saved::None);
        Ok(self.push(op, shape, y, saved))
    }

    /// The decoder on rotated lattices as one tape op ([`Backend::decode_rotated_lattices`]):
    /// coords (P, 3) masked lattice, rot (B, 3, 3), z (B, zdim) or None, freqs (m, 3) in
    /// `groups`, MLP layers as in [`Tape::mlp`] → (B, P). No gradient flows to coords or rot.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_rotated(
        &mut self,
        coords: Var,
        rot: Var,
        z: Option<Var>,
        freqs: Var,
        groups: usize,
        domain: Domain,
        layers: &[(Var, Var)],
        residual: &[bool],
        act: Activation,
    ) -> Result<Var> {
        let sr = self.shape(rot).to_vec();
        if sr.len() != 3 || sr[1..] != [3, 3] {
            return Err(shape_err("decode_rotated: rot", "(B, 3, 3)", sr));
        }
        let nb = sr[0];
        let sc = self.shape(coords).to_vec();
        if sc.len() != 2 || sc[1] != 3 {
            return Err(shape_err("decode_rotated: coords", "(P, 3)", sc));
        }
        let zdim = match z {
            Some(z) => {
                let s = self.shape(z);
                if s.len() != 2 || s[0] != nb {
                    return Err(shape_err("decode_rotated: z", format!("({nb}, zdim)"), s));
                }
                s[1]
            }
            None => 0,
        };
        if layers.len() != residual.len() || layers.is_empty() {
            return Err(shape_err(
                "decode_rotated: residual flags",
                format!("{} flags", layers.len()),
                residual.len(),
            ));
        }
        let spec = DecodeSpec {
            coords: self.value(coords),
            n_points: sc[0],
            freqs: self.value(freqs),
            groups,
            zdim,
            domain,
            mlp: self.mlp_weights(layers, residual, act)?,
        };
        let save = self.grad_enabled;
        let (y, saved) = self.be.decode_rotated_lattices(
            &spec,
            self.value(rot),
            z.map(|z| self.value(z)),
            nb,
            save,
        )?;
        let op = Op::DecodeRotated {
            coords,
            rot,
            z,
            freqs,
            groups,
            domain,
            layers: layers.to_vec(),
            residual: residual.to_vec(),
            act,
        };
        let saved = saved.map(Saved::Decode).unwrap_or(Saved::None);
        Ok(self.push(op, vec![nb, sc[0]], y, saved))
    }

    pub(crate) fn mlp_weights(
        &self,
        layers: &[(Var, Var)],
        residual: &[bool],
        act: Activation,
    ) -> Result<MlpWeights<'_, B>> {
        let mut out = Vec::with_capacity(layers.len());
        for (l, (&(w, b), &res)) in layers.iter().zip(residual).enumerate() {
            let sw = self.shape(w);
            if sw.len() != 2 || self.shape(b) != [sw[0]] {
                return Err(shape_err(
                    &format!("mlp layer {l}"),
                    "W (out, in), b (out)",
                    (sw, self.shape(b)),
                ));
            }
            out.push(MlpLayer {
                w: self.value(w),
                b: self.value(b),
                n_in: sw[1],
                n_out: sw[0],
                residual: res,
            });
        }
        Ok(MlpWeights { layers: out, act })
    }

    /// Gradients of the scalar `loss` with respect to every leaf that needs one.
    pub fn backward(&self, loss: Var) -> Result<Grads<B>> {
        if self.be.len(self.value(loss)) != 1 {
            return Err(shape_err("backward: loss", "a scalar", self.shape(loss)));
        }
        let mut grads: Vec<Option<B::Buf>> = (0..self.nodes.len()).map(|_| None).collect();
        let one = [num_traits::One::one()];
        grads[loss.0] = Some(self.be.upload(&one)?);
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            if !node.needs_grad || node.op.inputs().is_empty() {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            backward_node(self, i, &g, &mut grads)?;
            self.be.recycle(g);
        }
        Ok(Grads {
            by_node: grads,
            param_vars: self.param_vars.clone(),
        })
    }

    /// Mutable gradient slot of node `v`, zero-initialized on first use.
    pub(crate) fn slot<'g>(
        &self,
        grads: &'g mut [Option<B::Buf>],
        v: Var,
    ) -> Result<&'g mut B::Buf> {
        if grads[v.0].is_none() {
            grads[v.0] = Some(self.be.zeros(self.be.len(self.value(v)))?);
        }
        Ok(grads[v.0].as_mut().expect("just filled"))
    }

    /// Whether node `v` takes a gradient.
    pub(crate) fn wants(&self, v: Var) -> bool {
        self.nodes[v.0].needs_grad
    }
}

impl<B: Backend> Drop for Tape<'_, B> {
    fn drop(&mut self) {
        for node in self.nodes.drain(..) {
            if let Some(v) = node.value {
                self.be.recycle(v);
            }
            match node.saved {
                Saved::None => {}
                Saved::Bufs(bs) => bs.into_iter().for_each(|b| self.be.recycle(b)),
                Saved::Mlp(s) => s.h.into_iter().chain(s.z).for_each(|b| self.be.recycle(b)),
                Saved::Decode(s) => {
                    self.be.recycle(s.input.into_buf());
                    self.be.recycle(s.sign);
                    s.mlp
                        .h
                        .into_iter()
                        .chain(s.mlp.z)
                        .for_each(|b| self.be.recycle(b));
                }
            }
        }
    }
}
