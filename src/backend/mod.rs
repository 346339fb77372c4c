//! Compute backends: the [`Backend`] trait has one method per primitive; [`cpu::CpuBackend`] is
//! the reference implementation (rayon + `matrixmultiply`), [`cuda::CudaBackend`] implements the
//! same trait on NVRTC-compiled kernels.
//!
//! ## Conventions
//! - Buffers ([`Backend::Buf`]) are flat, row-major, and carry no shape: every primitive takes
//!   the sizes it needs (`n` rows × `d` columns). Shapes live in the tape
//!   ([`crate::autodiff`]), which checks them before calling a primitive.
//! - Backward primitives **accumulate** into their gradient outputs (`dx += ...`), so the tape
//!   can sum gradients from several consumers without a temporary.
//! - Scalars (losses) are buffers of length 1 so they can stay on the device.
//! - Index buffers (`gather_rows`) are host `&[u32]`; a device backend uploads them.
//!
//! ## Fusion points for the CUDA backend
//! - [`Backend::mlp_forward`] / [`Backend::mlp_backward`]: the whole coordinate network
//!   (linear → bias → activation, residual connections) is one primitive.
//! - [`Backend::fourier_features`]: the positional encoding is a separate, bandwidth-bound
//!   primitive (O(N·in) against the MLP's O(N·in·hidden)); a CUDA backend may fuse it into the
//!   first layer of `mlp_forward` by reading the encoding from [`MlpWeights`] (add a field then).
//! - [`Backend::decode_rotated_lattices`]: "evaluate the decoder on rotated lattices" (batched
//!   rotation of the masked lattice, PE, MLP, Hermitian assembly) is one primitive; its default
//!   body ([`decode`]) composes `fourier_features` + `mlp_forward`, a CUDA backend fuses it.
//! - [`Backend::attention`] / [`Backend::attention_backward`]: multi-head self-attention over a
//!   batch of sequences (the point transformer's blocks) is one primitive, the scores recomputed
//!   in the backward pass from saved row log-sum-exps (flash-attention style); CPU only for now.

pub mod cpu;
pub mod cuda;
pub mod decode;
pub mod pose_score;

pub use decode::{DecodeInput, DecodeOutput, DecodeSaved, DecodeSpec, Domain};

use crate::{Error, Result};
use std::fmt::Debug;

/// Element type of a backend: `f32` for production, `f64` for gradient checks.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::ToPrimitive
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + Send
    + Sync
    + Debug
    + Default
    + 'static
{
    /// Type name (`"f32"`, `"f64"`) for errors and bench labels.
    const NAME: &'static str;
    /// Lossy conversion from `f64` (constants, hyper-parameters).
    fn c(x: f64) -> Self;
    /// `x as f64`.
    fn f64(self) -> f64;
    /// The error function erf(x) (for the exact GELU).
    fn erf(self) -> Self;
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    fn c(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    fn c(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// Elementwise unary functions `y = f(x)`; their derivatives are in
/// [`Backend::unary_backward`] (CPU: `cpu::unary_grad`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// max(x, 0)
    Relu,
    /// x if x > 0 else α·x (torch default α = 0.01)
    LeakyRelu(f64),
    /// x·σ(x)
    Silu,
    /// x·Φ(x) with the exact normal CDF Φ (torch `nn.GELU()` default)
    Gelu,
    /// tanh(x)
    Tanh,
    /// σ(x) = 1 / (1 + e^{−x})
    Sigmoid,
    /// sin(x)
    Sin,
    /// cos(x)
    Cos,
    /// e^x
    Exp,
    /// ln(x)
    Log,
    /// ln(1 + e^x), linear above x > 20 like torch
    Softplus,
    /// x²
    Square,
}

/// Hidden-layer activations of an MLP (the subset of [`UnaryOp`] the fused MLP supports).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f64),
    Silu,
    Gelu,
    Tanh,
}

impl Activation {
    /// The elementwise op this activation applies.
    pub fn unary(self) -> UnaryOp {
        match self {
            Activation::Relu => UnaryOp::Relu,
            Activation::LeakyRelu(a) => UnaryOp::LeakyRelu(a),
            Activation::Silu => UnaryOp::Silu,
            Activation::Gelu => UnaryOp::Gelu,
            Activation::Tanh => UnaryOp::Tanh,
        }
    }

    /// Whether the derivative needs the pre-activation `z` (otherwise it is a function of the
    /// output `h = f(z)`, and the fused MLP does not store `z`).
    pub fn needs_preactivation(self) -> bool {
        matches!(self, Activation::Silu | Activation::Gelu)
    }
}

/// Elementwise binary functions of two equal-length buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// One layer of a fused MLP: `z = h·Wᵀ + b (+ h if residual)`.
pub struct MlpLayer<'a, B: Backend> {
    /// Weight (n_out, n_in), torch's `nn.Linear.weight` layout.
    pub w: &'a B::Buf,
    /// Bias (n_out).
    pub b: &'a B::Buf,
    pub n_in: usize,
    pub n_out: usize,
    /// cryoDRGN's `ResidLinear`: add the layer input to its output (needs n_in == n_out).
    pub residual: bool,
}

/// A whole coordinate network for [`Backend::mlp_forward`]: the activation follows every layer
/// but the last (cryoDRGN's `MLP` and `ResidLinearMLP`).
pub struct MlpWeights<'a, B: Backend> {
    pub layers: Vec<MlpLayer<'a, B>>,
    pub act: Activation,
}

/// What [`Backend::mlp_forward`] keeps for the backward pass: `h[l]` (N, n_out of layer l) is
/// the output of hidden layer l after the activation; `z[l]` its pre-activation, stored only
/// when [`Activation::needs_preactivation`]. The first `packed` of `h` are in a backend's own
/// layout (the CPU's mixed-precision rows path keeps them as bf16, packed for the backward's
/// dW products); the rest are plain `Elem`s.
pub struct MlpSaved<B: Backend> {
    pub h: Vec<B::Buf>,
    pub z: Vec<B::Buf>,
    pub packed: usize,
}

/// Output of [`Backend::mlp_forward`]: y (N, n_out) and, when asked, the saved activations.
pub type MlpOutput<B> = (<B as Backend>::Buf, Option<MlpSaved<B>>);

/// Gradients of one MLP layer: dW (n_out, n_in), db (n_out).
pub struct MlpLayerGrad<'a, B: Backend> {
    pub dw: &'a mut B::Buf,
    pub db: &'a mut B::Buf,
}

/// Coefficients of one Adam-family update (see [`Backend::adam_update`]); computed on the
/// host from the step count by [`crate::nn::optim`].
#[derive(Clone, Copy, Debug)]
pub struct AdamCoeffs {
    pub beta1: f64,
    pub beta2: f64,
    /// L2 penalty added to the gradient (torch's coupled `weight_decay`).
    pub weight_decay: f64,
    /// Multiplier of m in the update.
    pub step_size: f64,
    /// `a` in the denominator `a·√v + e`.
    pub denom_scale: f64,
    /// `e` in the denominator `a·√v + e`.
    pub denom_eps: f64,
}

/// The geometry of [`Backend::conv2d`]: `batch` images of h × w pixels with `c_in` channels
/// (NHWC: channels fastest), `c_out` kernels of k × k × c_in, applied every `stride` pixels with
/// `pad` zero pixels on every side (torch's `nn.Conv2d(c_in, c_out, k, stride, pad)`). The
/// output is (batch, h_out, w_out, c_out), h_out = (h + 2·pad − k)/stride + 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dShape {
    /// Output height (h + 2·pad − k)/stride + 1.
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width (w + 2·pad − k)/stride + 1.
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Values of x: batch·h·w·c_in.
    pub fn x_len(&self) -> usize {
        self.batch * self.h * self.w * self.c_in
    }
    /// Values of w: c_out·c_in·k².
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
    /// Values of y: batch·h_out·w_out·c_out.
    pub fn y_len(&self) -> usize {
        self.batch * self.h_out() * self.w_out() * self.c_out
    }
    /// An error unless k, stride, c_in, c_out ≥ 1 and the padded image holds one kernel.
    pub fn check(&self, what: &str) -> Result<()> {
        let ok = self.k >= 1
            && self.stride >= 1
            && self.c_in >= 1
            && self.c_out >= 1
            && self.h + 2 * self.pad >= self.k
            && self.w + 2 * self.pad >= self.k;
        if ok {
            Ok(())
        } else {
            Err(Error::Shape {
                what: format!("{what}: convolution"),
                expected: "k, stride, channels ≥ 1 and a padded image of at least k × k".into(),
                got: format!("{self:?}"),
            })
        }
    }
}

/// Matrix operand of [`Backend::gemm`]: a row-major (rows, cols) buffer, optionally used
/// transposed.
pub struct MatRef<'a, B: Backend> {
    pub buf: &'a B::Buf,
    pub rows: usize,
    pub cols: usize,
    pub trans: bool,
}

impl<B: Backend> Clone for MatRef<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for MatRef<'_, B> {}

/// A compute backend: memory management plus one method per primitive.
///
/// Every method checks buffer lengths and returns [`crate::Error::Shape`] naming the primitive
/// on a mismatch.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Element type of every buffer.
    type Elem: Float;
    /// A flat device buffer of `Elem`.
    type Buf: Send + Sync;

    /// Human-readable name, e.g. `cpu-f32`.
    fn name(&self) -> String;

    // ---- memory ----
    /// A buffer of length n with unspecified (but initialized) contents.
    fn alloc(&self, n: usize) -> Result<Self::Buf>;
    /// A buffer of n zeros.
    fn zeros(&self, n: usize) -> Result<Self::Buf>;
    /// Host → device copy.
    fn upload(&self, x: &[Self::Elem]) -> Result<Self::Buf>;
    /// Device → host copy.
    fn to_vec(&self, x: &Self::Buf) -> Result<Vec<Self::Elem>>;
    /// Number of elements.
    fn len(&self, x: &Self::Buf) -> usize;
    /// A copy of `x`.
    fn copy(&self, x: &Self::Buf) -> Result<Self::Buf>;
    /// Give a buffer back for reuse by later `alloc`s (avoids allocation churn in training loops).
    fn recycle(&self, x: Self::Buf);
    /// y = α·x + β·y (gradient accumulation with β = 1, EMA with α = 1 − decay, β = decay).
    fn axpby(&self, alpha: f64, x: &Self::Buf, beta: f64, y: &mut Self::Buf) -> Result<()>;

    // ---- linear algebra ----
    /// C (m, n) = α·op(A)·op(B) + β·C with op(A) (m, k), op(B) (k, n).
    fn gemm(
        &self,
        alpha: f64,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        beta: f64,
        c: &mut Self::Buf,
    ) -> Result<()>;
    /// y (n, d) += bias (d) broadcast over rows.
    fn add_bias(&self, bias: &Self::Buf, d: usize, y: &mut Self::Buf) -> Result<()>;
    /// y (n, d) = broadcast of bias (d) over n rows.
    fn broadcast_rows(&self, bias: &Self::Buf, d: usize, y: &mut Self::Buf) -> Result<()>;
    /// y (n, d) (+)= broadcast of x (n) over d columns.
    fn broadcast_cols(&self, x: &Self::Buf, d: usize, y: &mut Self::Buf, acc: bool) -> Result<()>;
    /// y (d) (+)= scale · Σ_rows x (n, d).
    fn sum_rows(
        &self,
        x: &Self::Buf,
        d: usize,
        scale: f64,
        y: &mut Self::Buf,
        acc: bool,
    ) -> Result<()>;
    /// y (n) (+)= scale · Σ_cols x (n, d).
    fn sum_cols(
        &self,
        x: &Self::Buf,
        d: usize,
        scale: f64,
        y: &mut Self::Buf,
        acc: bool,
    ) -> Result<()>;

    // ---- elementwise ----
    /// y = f(x).
    fn unary(&self, op: UnaryOp, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// dx += f'(x)·dy, given x and y = f(x).
    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &Self::Buf,
        y: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;
    /// y = a ∘ b.
    fn binary(&self, op: BinaryOp, a: &Self::Buf, b: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// da += ∂(a∘b)/∂a · dy, db += ∂(a∘b)/∂b · dy (either may be skipped).
    fn binary_backward(
        &self,
        op: BinaryOp,
        a: &Self::Buf,
        b: &Self::Buf,
        dy: &Self::Buf,
        da: Option<&mut Self::Buf>,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;
    /// y = mul·x + add.
    fn affine(&self, x: &Self::Buf, mul: f64, add: f64, y: &mut Self::Buf) -> Result<()>;

    // ---- layout ----
    /// Copy a column block: dst[r, dst_off..dst_off+width] (+)= src[r, src_off..src_off+width]
    /// for every row r; src has `src_cols` columns, dst `dst_cols`. Concat, slice and their
    /// backward passes are all this primitive.
    #[allow(clippy::too_many_arguments)]
    fn copy_cols(
        &self,
        src: &Self::Buf,
        src_cols: usize,
        src_off: usize,
        dst: &mut Self::Buf,
        dst_cols: usize,
        dst_off: usize,
        width: usize,
        acc: bool,
    ) -> Result<()>;
    /// `dst (len(idx), d) = src[idx[i], :]` for src (m, d).
    fn gather_rows(
        &self,
        src: &Self::Buf,
        d: usize,
        idx: &[u32],
        dst: &mut Self::Buf,
    ) -> Result<()>;
    /// `dst[idx[i], :] += src[i, :]` (backward of `gather_rows`).
    fn scatter_add_rows(
        &self,
        src: &Self::Buf,
        d: usize,
        idx: &[u32],
        dst: &mut Self::Buf,
    ) -> Result<()>;

    // ---- normalization ----
    /// Layer norm over the last axis of x (n, d): y = (x − μ)·rstd·γ + β; mean and rstd are
    /// (n) buffers kept for the backward pass.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        d: usize,
        eps: f64,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        rstd: &mut Self::Buf,
    ) -> Result<()>;
    /// Accumulates dx (n, d), dγ (d), dβ (d) of [`Backend::layer_norm`].
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        dy: &Self::Buf,
        d: usize,
        dx: Option<&mut Self::Buf>,
        dgamma: Option<&mut Self::Buf>,
        dbeta: Option<&mut Self::Buf>,
    ) -> Result<()>;
    /// Softmax over the last axis of x (n, d).
    fn softmax(&self, x: &Self::Buf, d: usize, y: &mut Self::Buf) -> Result<()>;
    /// dx += y ⊙ (dy − Σ_j dy_j y_j) row by row.
    fn softmax_backward(
        &self,
        y: &Self::Buf,
        dy: &Self::Buf,
        d: usize,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    // ---- attention ----
    /// Multi-head self-attention over `batch` sequences of t tokens (rows of `qkv` grouped by
    /// sequence): qkv (batch·t, 3·heads·d_h) in Point-E's layout (per token, head by head,
    /// `[q_h | k_h | v_h]`, each d_h wide) → y (batch·t, heads·d_h) with, per (sequence, head),
    /// y_h = softmax(q_h·k_hᵀ/√d_h)·v_h (t, d_h) in columns h·d_h..(h+1)·d_h; lse (batch·heads·t)
    /// receives the log-sum-exp of each row of the scaled scores, which the backward pass uses to
    /// recompute the probabilities (nothing of size t² is kept).
    ///
    /// The default body returns [`Error::Invalid`]: only the CPU backend implements it so far
    /// (the CUDA backend errors; issue 25).
    fn attention(
        &self,
        qkv: &Self::Buf,
        batch: usize,
        heads: usize,
        y: &mut Self::Buf,
        lse: &mut Self::Buf,
    ) -> Result<()> {
        let _ = (qkv, batch, heads, y, lse);
        Err(Error::invalid(format!(
            "attention: not implemented on the {} backend (CPU only, issue 25)",
            self.name()
        )))
    }
    /// Accumulates dqkv (batch·t, 3·heads·d_h) of [`Backend::attention`] from dy, given its
    /// input qkv, output y and lse. With P = exp(S − lse), S = q·kᵀ/√d_h, per (sequence, head):
    /// dv = Pᵀ·dy, dP = dy·vᵀ, dS = P ⊙ (dP − rowsum(dy ⊙ y)), dq = dS·k/√d_h, dk = dSᵀ·q/√d_h.
    /// The default body errors like [`Backend::attention`].
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        qkv: &Self::Buf,
        y: &Self::Buf,
        lse: &Self::Buf,
        dy: &Self::Buf,
        batch: usize,
        heads: usize,
        dqkv: &mut Self::Buf,
    ) -> Result<()> {
        let _ = (qkv, y, lse, dy, batch, heads, dqkv);
        Err(Error::invalid(format!(
            "attention_backward: not implemented on the {} backend (CPU only, issue 25)",
            self.name()
        )))
    }

    // ---- convolution ----
    /// y (batch, h_out, w_out, c_out) = x ⋆ w, torch's `nn.Conv2d(bias=False)` on NHWC images:
    /// y[b, oy, ox, o] = Σ_{c, ky, kx} w[o, c, ky, kx] · x[b, oy·stride + ky − pad,
    /// ox·stride + kx − pad, c], zero outside the image; x (batch, h, w, c_in) channels fastest,
    /// w (c_out, c_in, k, k) in torch's layout (see [`Conv2dShape`]).
    ///
    /// The default body returns [`Error::Invalid`]: only the CPU backend implements it so far
    /// (`--encode-mode conv` is refused on CUDA).
    fn conv2d(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        s: &Conv2dShape,
        y: &mut Self::Buf,
    ) -> Result<()> {
        let _ = (x, w, s, y);
        Err(Error::invalid(format!(
            "conv2d: not implemented on the {} backend (CPU only)",
            self.name()
        )))
    }
    /// Accumulates the gradients of [`Backend::conv2d`] from dy (batch, h_out, w_out, c_out):
    /// with X the im2col matrix of x (one row per output pixel, columns (c, ky, kx)),
    /// dw (c_out, c_in·k·k) += dyᵀ·X and dx += col2im(dy·w) (each input pixel summing the
    /// entries of every window it falls in). The default body errors like [`Backend::conv2d`].
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        s: &Conv2dShape,
        dy: &Self::Buf,
        dx: Option<&mut Self::Buf>,
        dw: Option<&mut Self::Buf>,
    ) -> Result<()> {
        let _ = (x, w, s, dy, dx, dw);
        Err(Error::invalid(format!(
            "conv2d_backward: not implemented on the {} backend (CPU only)",
            self.name()
        )))
    }

    // ---- losses (scalar outputs, length-1 buffers) ----
    /// out = mean((a − b)²) over all elements.
    fn mse(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf) -> Result<()>;
    /// da += g·2(a−b)/n, db −= g·2(a−b)/n with `g = dout[0]`.
    fn mse_backward(
        &self,
        a: &Self::Buf,
        b: &Self::Buf,
        dout: &Self::Buf,
        da: Option<&mut Self::Buf>,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;
    /// Gaussian negative log-likelihood without the constant, mean over elements:
    /// out = mean(½(logvar + (x − μ)² e^{−logvar})) (torch `GaussianNLLLoss` with var = e^{logvar}).
    fn gaussian_nll(
        &self,
        mu: &Self::Buf,
        logvar: &Self::Buf,
        x: &Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// Accumulates the gradients of [`Backend::gaussian_nll`] (order: dμ, dlogvar, dx).
    #[allow(clippy::too_many_arguments)]
    fn gaussian_nll_backward(
        &self,
        mu: &Self::Buf,
        logvar: &Self::Buf,
        x: &Self::Buf,
        dout: &Self::Buf,
        dmu: Option<&mut Self::Buf>,
        dlogvar: Option<&mut Self::Buf>,
        dx: Option<&mut Self::Buf>,
    ) -> Result<()>;
    /// KL(N(μ, e^{logvar}) ‖ N(0, 1)) as cryoDRGN computes it for μ, logvar (n, d):
    /// out = −½ · (1/n) Σ_rows Σ_cols (1 + logvar − μ² − e^{logvar}).
    fn kl_std_normal(
        &self,
        mu: &Self::Buf,
        logvar: &Self::Buf,
        d: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// Accumulates dμ += g·μ/n, dlogvar += g·½(e^{logvar} − 1)/n.
    #[allow(clippy::too_many_arguments)]
    fn kl_std_normal_backward(
        &self,
        mu: &Self::Buf,
        logvar: &Self::Buf,
        d: usize,
        dout: &Self::Buf,
        dmu: Option<&mut Self::Buf>,
        dlogvar: Option<&mut Self::Buf>,
    ) -> Result<()>;

    // ---- coordinate network ----
    /// Fourier features of coords (n, c), c ≥ 3, with a frequency matrix F (m, 3) split into
    /// `groups` equal row groups: k_i = Σ_j coords_j F_ij; each output row is, group by group,
    /// [sin k_g, cos k_g], followed by coords[3..c] (the latent z) — width 2m + c − 3.
    /// cryoDRGN's geometric encodings are 3 groups with one non-zero per row of F, the
    /// Gaussian encoding is one group.
    fn fourier_features(
        &self,
        coords: &Self::Buf,
        c: usize,
        freqs: &Self::Buf,
        groups: usize,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// dcoords += ∂y/∂coords · dy for [`Backend::fourier_features`] (the frequencies are fixed).
    #[allow(clippy::too_many_arguments)]
    fn fourier_features_backward(
        &self,
        coords: &Self::Buf,
        c: usize,
        freqs: &Self::Buf,
        groups: usize,
        dy: &Self::Buf,
        dcoords: &mut Self::Buf,
    ) -> Result<()>;
    /// The fused coordinate-network forward: x (n, n_in of layer 0) → y (n, n_out of the last
    /// layer). With `save`, returns the activations the backward pass needs.
    fn mlp_forward(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &Self::Buf,
        n: usize,
        save: bool,
    ) -> Result<MlpOutput<Self>>;
    /// The fused backward: accumulates dW, db of every layer and, when given, dx (n, n_in −
    /// dx_col0): the gradient of x's columns dx_col0.. (0: all of x; the decoder asks only for
    /// the latent columns after the positional encoding).
    #[allow(clippy::too_many_arguments)]
    fn mlp_backward(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &Self::Buf,
        n: usize,
        saved: &MlpSaved<Self>,
        dy: &Self::Buf,
        dx: Option<&mut Self::Buf>,
        dx_col0: usize,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()>;

    /// [`Backend::mlp_backward`] with dx summed over consecutive groups of `dx_group` rows (n a
    /// multiple of it): dx (n / dx_group, n_in − dx_col0), added to. The decoder's latent is
    /// one row per image copied into each of the image's rows, so its gradient is this sum; a
    /// backend may form it without the per-row gradient (the CPU sums g over a group's rows
    /// before the product with W, by linearity). The default sums the per-row gradient.
    #[allow(clippy::too_many_arguments)]
    fn mlp_backward_grouped(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &Self::Buf,
        n: usize,
        saved: &MlpSaved<Self>,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dx_col0: usize,
        dx_group: usize,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()> {
        let (group, width) = grouped_dx_shape(w, n, dx_col0, dx_group, self.len(dx))?;
        let mut full = self.zeros(n * width)?;
        self.mlp_backward(w, x, n, saved, dy, Some(&mut full), dx_col0, dlayers)?;
        let fh = self.to_vec(&full)?;
        self.recycle(full);
        let mut sums = vec![Self::Elem::c(0.0); (n / group) * width];
        add_group_sums(&fh, width, group, &mut sums);
        let t = self.upload(&sums)?;
        self.axpby(1.0, &t, 1.0, dx)?;
        self.recycle(t);
        Ok(())
    }

    // ---- decoder on rotated lattices ----
    /// y (nb, P): the coordinate decoder evaluated on the masked lattice rotated by each
    /// image's rotation rot (nb, 3, 3), with latents z (nb, zdim); see [`decode`] for the math.
    /// With `save`, returns what [`Backend::decode_rotated_lattices_backward`] needs.
    fn decode_rotated_lattices(
        &self,
        spec: &DecodeSpec<'_, Self>,
        rot: &Self::Buf,
        z: Option<&Self::Buf>,
        nb: usize,
        save: bool,
    ) -> Result<DecodeOutput<Self>> {
        decode::forward_composed(self, spec, rot, z, nb, save)
    }
    /// Accumulates dz (nb, zdim) when given and dW, db of every decoder layer from dy (nb, P).
    #[allow(clippy::too_many_arguments)]
    fn decode_rotated_lattices_backward(
        &self,
        spec: &DecodeSpec<'_, Self>,
        rot: &Self::Buf,
        z: Option<&Self::Buf>,
        nb: usize,
        saved: &DecodeSaved<Self>,
        dy: &Self::Buf,
        dz: Option<&mut Self::Buf>,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()> {
        decode::backward_composed(self, spec, rot, z, nb, saved, dy, dz, dlayers)
    }

    // ---- pose search ----
    /// Squared errors of pose-search candidates, out (nb, nr, nt):
    /// `out[b, r, t] = Σ_p (ctf[b, p]·slices[σ(b), r, p] − images[b, t, p])²` with slices
    /// (nσ, nr, P), σ(b) = b when `per_image_slices` (nσ = nb) else 0 (nσ = 1, shared by every
    /// image), images (nb, nt, P) already translated by each candidate shift, ctf (nb, P) or none.
    /// See [`pose_score`] for the GEMM form; the default body is the direct f64 sum.
    #[allow(clippy::too_many_arguments)]
    fn pose_scores(
        &self,
        slices: &Self::Buf,
        per_image_slices: bool,
        images: &Self::Buf,
        ctf: Option<&Self::Buf>,
        nb: usize,
        nr: usize,
        nt: usize,
        p: usize,
        out: &mut Self::Buf,
    ) -> Result<()> {
        pose_score::pose_scores_naive(
            self,
            slices,
            per_image_slices,
            images,
            ctf,
            nb,
            nr,
            nt,
            p,
            out,
        )
    }

    // ---- optimizers ----
    /// One Adam-family step on a parameter p with gradient g and moments m, v:
    /// g' = g + wd·p; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²;
    /// p −= step_size · m / (denom_scale·√v + denom_eps).
    fn adam_update(
        &self,
        p: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        c: AdamCoeffs,
    ) -> Result<()>;
}

/// `sums[g] += Σ_{r in group g} rows[r]` for rows of `width` values taken `group` at a time
/// ([`Backend::mlp_backward_grouped`] from the per-row dx).
pub(crate) fn add_group_sums<T: Float>(rows: &[T], width: usize, group: usize, sums: &mut [T]) {
    if width == 0 {
        return;
    }
    for (s, g) in sums
        .chunks_exact_mut(width)
        .zip(rows.chunks_exact(group * width))
    {
        for r in g.chunks_exact(width) {
            s.iter_mut().zip(r).for_each(|(a, &b)| *a += b);
        }
    }
}

/// (group, width) of [`Backend::mlp_backward_grouped`]'s dx, checked: a group of at least one
/// row dividing n, a first column within the input, and dx of (n / group) × width values.
pub(crate) fn grouped_dx_shape<B: Backend>(
    w: &MlpWeights<'_, B>,
    n: usize,
    dx_col0: usize,
    dx_group: usize,
    dx_len: usize,
) -> Result<(usize, usize)> {
    let n_in = w.layers.first().map_or(0, |l| l.n_in);
    if dx_col0 > n_in {
        return Err(Error::Shape {
            what: "mlp_backward_grouped: dx first column".into(),
            expected: format!("at most {n_in} (the input width)"),
            got: dx_col0.to_string(),
        });
    }
    if dx_group == 0 || !n.is_multiple_of(dx_group) {
        return Err(Error::Shape {
            what: "mlp_backward_grouped: rows per group".into(),
            expected: format!("a divisor of the {n} rows"),
            got: dx_group.to_string(),
        });
    }
    let width = n_in - dx_col0;
    let want = n / dx_group * width;
    if dx_len != want {
        return Err(Error::Shape {
            what: "mlp_backward_grouped: dx".into(),
            expected: format!("{want} values (n / group, n_in − col0)"),
            got: dx_len.to_string(),
        });
    }
    Ok((dx_group, width))
}
