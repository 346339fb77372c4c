//! The closed set of tape operations and the one `match` holding every derivative rule.
//!
//! Notation: y is the node's output, g = ∂L/∂y its incoming gradient; every rule accumulates
//! (`+=`) into the inputs' gradients. Matrices are row-major (rows, last axis).

use super::tape::{last, mat, Saved, Tape};
use super::tensor::ParamId;
use super::Var;
use crate::backend::{Activation, Backend, BinaryOp, Domain, MatRef, MlpLayerGrad, UnaryOp};
use crate::{Error, Result};

/// One recorded operation (inputs are [`Var`]s; sizes come from the nodes' shapes).
#[derive(Clone, Debug)]
pub enum Op {
    /// A leaf whose gradient is returned.
    Input,
    /// A leaf without gradient.
    Constant,
    /// A parameter of the tape's store.
    Param(ParamId),
    /// y (m, n) = a (m, k) · b (k, n).
    Matmul { a: Var, b: Var },
    /// y (n, o) = x (n, k) · wᵀ (w: (o, k)) + b (o).
    Linear { x: Var, w: Var, b: Option<Var> },
    /// y (n, d) = x (n, d) + b (d).
    AddBias { x: Var, b: Var },
    /// y = f(x) elementwise.
    Unary { x: Var, op: UnaryOp },
    /// y = a ∘ b elementwise.
    Binary { a: Var, b: Var, op: BinaryOp },
    /// y = mul·x + add.
    Affine { x: Var, mul: f64 },
    /// y (1) = scale·Σ x.
    SumAll { x: Var, scale: f64 },
    /// y (d) = scale·Σ_rows x (n, d).
    SumRows { x: Var, scale: f64 },
    /// y (n) = scale·Σ_cols x (n, d).
    SumCols { x: Var, scale: f64 },
    /// y (n, d) = x (d) on every row.
    BroadcastRows { x: Var },
    /// y (n, d) = x (n) on every column.
    BroadcastCols { x: Var, d: usize },
    /// y = [x_0 | x_1 | …] along the last axis.
    Concat { xs: Vec<Var> },
    /// y = x[…, start..start+len].
    Slice { x: Var, start: usize, len: usize },
    /// y = x with another shape.
    Reshape { x: Var },
    /// y (len(idx), d) = x[idx, :].
    GatherRows { x: Var, idx: Vec<u32> },
    /// y = (x − μ)·rstd·γ + β over the last axis (saved: mean, rstd).
    LayerNorm { x: Var, gamma: Var, beta: Var },
    /// y = softmax(x) over the last axis.
    Softmax { x: Var },
    /// Multi-head self-attention: y (batch·t, W) from qkv (batch·t, 3W) in Point-E's layout,
    /// softmax(q_h·k_hᵀ/√d_h)·v_h per (sequence, head) (saved: row log-sum-exps); see
    /// [`Backend::attention`].
    Attention {
        qkv: Var,
        batch: usize,
        heads: usize,
    },
    /// y (B, H_out, W_out, C_out) = x (B, H, W, C_in) ⋆ w (C_out, C_in, k, k), no bias; see
    /// [`Backend::conv2d`].
    Conv2d {
        x: Var,
        w: Var,
        shape: crate::backend::Conv2dShape,
    },
    /// y (1) = mean((a − b)²).
    Mse { a: Var, b: Var },
    /// y (1) = mean(½(logvar + (x − μ)² e^{−logvar})).
    GaussianNll { mu: Var, logvar: Var, x: Var },
    /// y (1) = −½ (1/B) Σ (1 + logvar − μ² − e^{logvar}).
    KlStdNormal { mu: Var, logvar: Var },
    /// y = [sin k_g, cos k_g]_g ++ z with k = coords[..3]·Fᵀ.
    FourierFeatures {
        coords: Var,
        freqs: Var,
        groups: usize,
    },
    /// The fused MLP (saved: hidden activations).
    Mlp {
        x: Var,
        layers: Vec<(Var, Var)>,
        residual: Vec<bool>,
        act: Activation,
    },
    /// y (B, P) = the decoder on the masked lattice `coords` (P, 3) rotated by `rot` (B, 3, 3)
    /// with latents `z` (B, zdim) (saved: MLP input, signs, activations); see
    /// [`crate::backend::decode`]. No gradient flows to `coords` or `rot`.
    DecodeRotated {
        coords: Var,
        rot: Var,
        z: Option<Var>,
        freqs: Var,
        groups: usize,
        domain: Domain,
        layers: Vec<(Var, Var)>,
        residual: Vec<bool>,
        act: Activation,
    },
}

impl Op {
    /// The input nodes of this op (empty for leaves).
    pub fn inputs(&self) -> Vec<Var> {
        use Op::*;
        match self {
            Input | Constant | Param(_) => vec![],
            Matmul { a, b } | Binary { a, b, .. } | Mse { a, b } => vec![*a, *b],
            Conv2d { x, w, .. } => vec![*x, *w],
            Linear { x, w, b } => {
                let mut v = vec![*x, *w];
                v.extend(b);
                v
            }
            AddBias { x, b } => vec![*x, *b],
            Unary { x, .. }
            | Affine { x, .. }
            | SumAll { x, .. }
            | SumRows { x, .. }
            | SumCols { x, .. }
            | BroadcastRows { x }
            | BroadcastCols { x, .. }
            | Slice { x, .. }
            | Reshape { x }
            | GatherRows { x, .. }
            | Softmax { x }
            | Attention { qkv: x, .. } => vec![*x],
            Concat { xs } => xs.clone(),
            LayerNorm { x, gamma, beta } => vec![*x, *gamma, *beta],
            GaussianNll { mu, logvar, x } => vec![*mu, *logvar, *x],
            KlStdNormal { mu, logvar } => vec![*mu, *logvar],
            FourierFeatures { coords, freqs, .. } => vec![*coords, *freqs],
            Mlp { x, layers, .. } => {
                let mut v = vec![*x];
                layers.iter().for_each(|(w, b)| v.extend([*w, *b]));
                v
            }
            DecodeRotated {
                coords,
                rot,
                z,
                freqs,
                layers,
                ..
            } => {
                let mut v = vec![*coords, *rot, *freqs];
                v.extend(z);
                layers.iter().for_each(|(w, b)| v.extend([*w, *b]));
                v
            }
        }
    }
}

/// Propagate g = ∂L/∂y of node `i` into its inputs' gradient slots.
pub(crate) fn backward_node<B: Backend>(
    t: &Tape<'_, B>,
    i: usize,
    g: &B::Buf,
    grads: &mut [Option<B::Buf>],
) -> Result<()> {
    let be = &t.be;
    let node = &t.nodes[i];
    let y = node.value.as_ref().expect("op nodes hold their value");
    let val = |v: Var| t.value(v);
    use Op::*;
    match &node.op {
        Input | Constant | Param(_) => {}
        Matmul { a, b } => {
            let (sa, sb) = (t.shape(*a), t.shape(*b));
            let (m, k, n) = (sa[0], sa[1], sb[1]);
            let gm = MatRef {
                buf: g,
                rows: m,
                cols: n,
                trans: false,
            };
            // ∂L/∂a = g · bᵀ
            if t.wants(*a) {
                let mb = MatRef {
                    buf: val(*b),
                    rows: k,
                    cols: n,
                    trans: true,
                };
                be.gemm(1.0, gm, mb, 1.0, t.slot(grads, *a)?)?;
            }
            // ∂L/∂b = aᵀ · g
            if t.wants(*b) {
                let ma = MatRef {
                    buf: val(*a),
                    rows: m,
                    cols: k,
                    trans: true,
                };
                be.gemm(1.0, ma, gm, 1.0, t.slot(grads, *b)?)?;
            }
        }
        Linear { x, w, b } => {
            let (n, k) = mat(t.shape(*x));
            let o = t.shape(*w)[0];
            // ∂L/∂x = g · w ; ∂L/∂w = gᵀ · x ; ∂L/∂b = Σ_rows g
            if t.wants(*x) {
                let gm = MatRef {
                    buf: g,
                    rows: n,
                    cols: o,
                    trans: false,
                };
                let mw = MatRef {
                    buf: val(*w),
                    rows: o,
                    cols: k,
                    trans: false,
                };
                be.gemm(1.0, gm, mw, 1.0, t.slot(grads, *x)?)?;
            }
            if t.wants(*w) {
                let gt = MatRef {
                    buf: g,
                    rows: n,
                    cols: o,
                    trans: true,
                };
                let mx = MatRef {
                    buf: val(*x),
                    rows: n,
                    cols: k,
                    trans: false,
                };
                be.gemm(1.0, gt, mx, 1.0, t.slot(grads, *w)?)?;
            }
            if let Some(b) = b.filter(|b| t.wants(*b)) {
                be.sum_rows(g, o, 1.0, t.slot(grads, b)?, true)?;
            }
        }
        AddBias { x, b } => {
            // ∂L/∂x = g ; ∂L/∂b = Σ_rows g
            if t.wants(*x) {
                be.axpby(1.0, g, 1.0, t.slot(grads, *x)?)?;
            }
            if t.wants(*b) {
                be.sum_rows(g, last(t.shape(*x)), 1.0, t.slot(grads, *b)?, true)?;
            }
        }
        Unary { x, op } => {
            // ∂L/∂x = f'(x) ⊙ g (rules in backend::cpu::unary_grad)
            if t.wants(*x) {
                be.unary_backward(*op, val(*x), y, g, t.slot(grads, *x)?)?;
            }
        }
        Binary { a, b, op } => {
            // add: (g, g); sub: (g, −g); mul: (g⊙b, g⊙a); div: (g/b, −g⊙a/b²).
            // One call per input so that a == b (x∘x) accumulates correctly.
            if t.wants(*a) {
                be.binary_backward(*op, val(*a), val(*b), g, Some(t.slot(grads, *a)?), None)?;
            }
            if t.wants(*b) {
                be.binary_backward(*op, val(*a), val(*b), g, None, Some(t.slot(grads, *b)?))?;
            }
        }
        Affine { x, mul } => {
            // ∂L/∂x = mul·g
            if t.wants(*x) {
                be.axpby(*mul, g, 1.0, t.slot(grads, *x)?)?;
            }
        }
        SumAll { x, scale } => {
            // ∂L/∂x_j = scale·g
            if t.wants(*x) {
                let n = be.len(val(*x));
                let mut gs = be.alloc(1)?;
                be.affine(g, *scale, 0.0, &mut gs)?;
                be.broadcast_cols(&gs, n, t.slot(grads, *x)?, true)?;
                be.recycle(gs);
            }
        }
        SumRows { x, scale } => {
            // ∂L/∂x_ij = scale·g_j
            if t.wants(*x) {
                let (n, d) = mat(t.shape(*x));
                let mut tmp = be.alloc(n * d)?;
                be.broadcast_rows(g, d, &mut tmp)?;
                be.axpby(*scale, &tmp, 1.0, t.slot(grads, *x)?)?;
                be.recycle(tmp);
            }
        }
        SumCols { x, scale } => {
            // ∂L/∂x_ij = scale·g_i
            if t.wants(*x) {
                let (n, d) = mat(t.shape(*x));
                let mut gs = be.alloc(n)?;
                be.affine(g, *scale, 0.0, &mut gs)?;
                be.broadcast_cols(&gs, d, t.slot(grads, *x)?, true)?;
                be.recycle(gs);
            }
        }
        BroadcastRows { x } => {
            // ∂L/∂x_j = Σ_i g_ij
            if t.wants(*x) {
                be.sum_rows(g, last(&node.shape), 1.0, t.slot(grads, *x)?, true)?;
            }
        }
        BroadcastCols { x, d } => {
            // ∂L/∂x_i = Σ_j g_ij
            if t.wants(*x) {
                be.sum_cols(g, *d, 1.0, t.slot(grads, *x)?, true)?;
            }
        }
        Concat { xs } => {
            // each input receives its own column block of g
            let width = last(&node.shape);
            let mut off = 0;
            for &x in xs {
                let w = last(t.shape(x));
                if t.wants(x) {
                    be.copy_cols(g, width, off, t.slot(grads, x)?, w, 0, w, true)?;
                }
                off += w;
            }
        }
        Slice { x, start, len } => {
            // g goes back into columns start..start+len
            if t.wants(*x) {
                let d = last(t.shape(*x));
                be.copy_cols(g, *len, 0, t.slot(grads, *x)?, d, *start, *len, true)?;
            }
        }
        Reshape { x } => {
            if t.wants(*x) {
                be.axpby(1.0, g, 1.0, t.slot(grads, *x)?)?;
            }
        }
        GatherRows { x, idx } => {
            // ∂L/∂x[idx_i] += g_i (scatter-add: indices may repeat)
            if t.wants(*x) {
                be.scatter_add_rows(g, last(t.shape(*x)), idx, t.slot(grads, *x)?)?;
            }
        }
        LayerNorm { x, gamma, beta } => {
            // x̂ = (x−μ)·rstd; ∂L/∂γ = Σ_rows g⊙x̂; ∂L/∂β = Σ_rows g;
            // ∂L/∂x = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂)) with ĝ = g⊙γ
            let Saved::Bufs(s) = &node.saved else {
                return Err(Error::invalid("layer_norm backward: statistics not saved"));
            };
            let d = last(t.shape(*x));
            let (xv, gv) = (val(*x), val(*gamma));
            if t.wants(*x) {
                be.layer_norm_backward(
                    xv,
                    gv,
                    &s[0],
                    &s[1],
                    g,
                    d,
                    Some(t.slot(grads, *x)?),
                    None,
                    None,
                )?;
            }
            if t.wants(*gamma) {
                be.layer_norm_backward(
                    xv,
                    gv,
                    &s[0],
                    &s[1],
                    g,
                    d,
                    None,
                    Some(t.slot(grads, *gamma)?),
                    None,
                )?;
            }
            if t.wants(*beta) {
                be.layer_norm_backward(
                    xv,
                    gv,
                    &s[0],
                    &s[1],
                    g,
                    d,
                    None,
                    None,
                    Some(t.slot(grads, *beta)?),
                )?;
            }
        }
        Softmax { x } => {
            // ∂L/∂x = y ⊙ (g − Σ_j g_j y_j)
            if t.wants(*x) {
                be.softmax_backward(y, g, last(t.shape(*x)), t.slot(grads, *x)?)?;
            }
        }
        Attention { qkv, batch, heads } => {
            // P = exp(S − lse): dv = Pᵀg, dP = g·vᵀ, dS = P ⊙ (dP − rowsum(g ⊙ y)),
            // dq = dS·k/√d_h, dk = dSᵀ·q/√d_h (one backend primitive, scores recomputed)
            let Saved::Bufs(s) = &node.saved else {
                return Err(Error::invalid("attention backward: log-sum-exps not saved"));
            };
            if t.wants(*qkv) {
                be.attention_backward(
                    val(*qkv),
                    y,
                    &s[0],
                    g,
                    *batch,
                    *heads,
                    t.slot(grads, *qkv)?,
                )?;
            }
        }
        Conv2d { x, w, shape } => {
            // y = X·wᵀ with X = im2col(x): ∂L/∂w = gᵀ·X ; ∂L/∂x = col2im(g·w)
            // (one backend primitive, backend::cpu::conv)
            if t.wants(*x) {
                be.conv2d_backward(val(*x), val(*w), shape, g, Some(t.slot(grads, *x)?), None)?;
            }
            if t.wants(*w) {
                be.conv2d_backward(val(*x), val(*w), shape, g, None, Some(t.slot(grads, *w)?))?;
            }
        }
        Mse { a, b } => {
            // ∂/∂a = 2(a−b)/n·g, ∂/∂b = −2(a−b)/n·g
            if t.wants(*a) {
                be.mse_backward(val(*a), val(*b), g, Some(t.slot(grads, *a)?), None)?;
            }
            if t.wants(*b) {
                be.mse_backward(val(*a), val(*b), g, None, Some(t.slot(grads, *b)?))?;
            }
        }
        GaussianNll { mu, logvar, x } => {
            // r = x−μ: ∂/∂μ = −r e^{−s}/n, ∂/∂x = r e^{−s}/n, ∂/∂s = ½(1 − r² e^{−s})/n
            let (m, s, xv) = (val(*mu), val(*logvar), val(*x));
            if t.wants(*mu) {
                be.gaussian_nll_backward(m, s, xv, g, Some(t.slot(grads, *mu)?), None, None)?;
            }
            if t.wants(*logvar) {
                be.gaussian_nll_backward(m, s, xv, g, None, Some(t.slot(grads, *logvar)?), None)?;
            }
            if t.wants(*x) {
                be.gaussian_nll_backward(m, s, xv, g, None, None, Some(t.slot(grads, *x)?))?;
            }
        }
        KlStdNormal { mu, logvar } => {
            // ∂/∂μ = μ/B, ∂/∂logvar = ½(e^{logvar} − 1)/B
            let d = last(t.shape(*mu));
            if t.wants(*mu) {
                be.kl_std_normal_backward(
                    val(*mu),
                    val(*logvar),
                    d,
                    g,
                    Some(t.slot(grads, *mu)?),
                    None,
                )?;
            }
            if t.wants(*logvar) {
                be.kl_std_normal_backward(
                    val(*mu),
                    val(*logvar),
                    d,
                    g,
                    None,
                    Some(t.slot(grads, *logvar)?),
                )?;
            }
        }
        FourierFeatures {
            coords,
            freqs,
            groups,
        } => {
            // ∂L/∂k = g_sin cos k − g_cos sin k ; ∂L/∂coords_j = Σ_i ∂L/∂k_i F_ij ; z passes g.
            // The frequencies are fixed (no gradient).
            if t.wants(*freqs) {
                return Err(Error::invalid(
                    "fourier_features: frequencies must be constants",
                ));
            }
            if t.wants(*coords) {
                let c = last(t.shape(*coords));
                be.fourier_features_backward(
                    val(*coords),
                    c,
                    val(*freqs),
                    *groups,
                    g,
                    t.slot(grads, *coords)?,
                )?;
            }
        }
        Mlp {
            x,
            layers,
            residual,
            act,
        } => {
            // Per layer (reverse): dW += gᵀh, db += Σ_rows g, g ← (g·W + g·1[res]) ⊙ act'(·);
            // one backend primitive (backend::cpu::mlp).
            let Saved::Mlp(saved) = &node.saved else {
                return Err(Error::invalid(
                    "mlp backward: activations not saved (inference tape)",
                ));
            };
            let ws = t.mlp_weights(layers, residual, *act)?;
            let (n, _) = mat(t.shape(*x));
            // Gradients of every layer go into temporaries (the slots of distinct parameters
            // cannot be borrowed mutably at once), then are added to the slots.
            let mut dws = Vec::with_capacity(layers.len());
            for (w, b) in layers {
                dws.push((be.zeros(be.len(val(*w)))?, be.zeros(be.len(val(*b)))?));
            }
            let mut dx = if t.wants(*x) {
                Some(be.zeros(be.len(val(*x)))?)
            } else {
                None
            };
            {
                let mut dl: Vec<MlpLayerGrad<'_, B>> = dws
                    .iter_mut()
                    .map(|(dw, db)| MlpLayerGrad { dw, db })
                    .collect();
                be.mlp_backward(&ws, val(*x), n, saved, g, dx.as_mut(), 0, &mut dl)?;
            }
            if let Some(dx) = dx {
                be.axpby(1.0, &dx, 1.0, t.slot(grads, *x)?)?;
                be.recycle(dx);
            }
            for ((w, b), (dw, db)) in layers.iter().zip(dws) {
                if t.wants(*w) {
                    be.axpby(1.0, &dw, 1.0, t.slot(grads, *w)?)?;
                }
                if t.wants(*b) {
                    be.axpby(1.0, &db, 1.0, t.slot(grads, *b)?)?;
                }
                be.recycle(dw);
                be.recycle(db);
            }
        }
        DecodeRotated {
            coords,
            rot,
            z,
            freqs,
            groups,
            domain,
            layers,
            residual,
            act,
        } => {
            // Through the Hermitian assembly (re − im, re + im of the antipode, conjugation
            // sign) and the MLP into dW, db and dz_b = Σ_points ∂L/∂(z columns); one backend
            // primitive (backend::decode).
            let Saved::Decode(saved) = &node.saved else {
                return Err(Error::invalid(
                    "decode_rotated backward: activations not saved (inference tape)",
                ));
            };
            let ws = t.mlp_weights(layers, residual, *act)?;
            let nb = t.shape(*rot)[0];
            let zdim = z.map(|z| last(t.shape(z))).unwrap_or(0);
            let spec = crate::backend::DecodeSpec {
                coords: val(*coords),
                n_points: t.shape(*coords)[0],
                freqs: val(*freqs),
                groups: *groups,
                zdim,
                domain: *domain,
                mlp: ws,
            };
            let mut dws = Vec::with_capacity(layers.len());
            for (w, b) in layers {
                dws.push((be.zeros(be.len(val(*w)))?, be.zeros(be.len(val(*b)))?));
            }
            let mut dz = match z {
                Some(z) if t.wants(*z) => Some(be.zeros(be.len(val(*z)))?),
                _ => None,
            };
            {
                let mut dl: Vec<MlpLayerGrad<'_, B>> = dws
                    .iter_mut()
                    .map(|(dw, db)| MlpLayerGrad { dw, db })
                    .collect();
                be.decode_rotated_lattices_backward(
                    &spec,
                    val(*rot),
                    z.map(val),
                    nb,
                    saved,
                    g,
                    dz.as_mut(),
                    &mut dl,
                )?;
            }
            if let (Some(dzv), Some(z)) = (dz, z) {
                be.axpby(1.0, &dzv, 1.0, t.slot(grads, *z)?)?;
                be.recycle(dzv);
            }
            for ((w, b), (dw, db)) in layers.iter().zip(dws) {
                if t.wants(*w) {
                    be.axpby(1.0, &dw, 1.0, t.slot(grads, *w)?)?;
                }
                if t.wants(*b) {
                    be.axpby(1.0, &db, 1.0, t.slot(grads, *b)?)?;
                }
                be.recycle(dw);
                be.recycle(db);
            }
        }
    }
    Ok(())
}
