//! Encoders q(z | image): cryoDRGN's `ResidLinearMLP` (`--encode-mode resid`) or `MLP`
//! (`mlp`) on the masked Hartley image, its `ConvEncoder` (`conv`) on the 64 × 64 real-space
//! image, and the tilt-pair encoder (paper App. D.2: one MLP embeds each image of the pair, a
//! second MLP maps the concatenated embeddings to (μ, log σ²)).

use crate::autodiff::{ParamId, ParamStore, Tape, Tensor, Var};
use crate::backend::{Activation, Backend, UnaryOp};
use crate::nn::linear::torch_uniform;
use crate::nn::Mlp;
use crate::{Error, Result};
use rand::Rng;

/// `--encode-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeMode {
    Resid,
    Mlp,
    /// Tilt pairs: `encoder1` (resid, in → qdim) on each image, `encoder2` (resid, 2 hidden
    /// layers, 2·qdim → 2·zdim) on the concatenation.
    Tilt,
    /// cryoDRGN's `ConvEncoder` ([`ConvNet`]) on the real-space image.
    Conv,
}

impl std::str::FromStr for EncodeMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "resid" => Ok(EncodeMode::Resid),
            "mlp" => Ok(EncodeMode::Mlp),
            "tilt" => Ok(EncodeMode::Tilt),
            "conv" => Ok(EncodeMode::Conv),
            _ => Err(Error::invalid(format!(
                "unknown --encode-mode `{s}` (expected resid, mlp, conv or tilt)"
            ))),
        }
    }
}

/// cryoDRGN's `ConvEncoder(hidden_dim = qdim, out_dim)` on 64 × 64 single-channel images: five
/// bias-free 4 × 4 convolutions, qdim·(1, 2, 4, 8) channels at stride 2 with one pixel of padding
/// (64 → 32 → 16 → 8 → 4 pixels), each followed by LeakyReLU(0.2), then out_dim channels at
/// stride 1 without padding (4 → 1 pixel). Kernels are `encoder.main.{0,2,4,6,8}.weight`
/// (c_out, c_in, 4, 4), torch's names and layout; activations run NHWC
/// ([`crate::autodiff::Tape::conv2d`]).
#[derive(Clone, Debug)]
pub struct ConvNet {
    /// The five kernels with their (stride, pad).
    pub layers: Vec<(ParamId, usize, usize)>,
    pub out_dim: usize,
}

/// Image size the `ConvEncoder` reads (its input is `view(-1, 1, 64, 64)`).
pub const CONV_D: usize = 64;

impl ConvNet {
    /// A new network with parameters `{name}.main.{2l}.weight`, initialized as torch's
    /// `nn.Conv2d` (U(±1/√fan_in), fan_in = c_in·16).
    pub fn new<B: Backend>(
        be: &B,
        store: &mut ParamStore<B>,
        name: &str,
        hidden: usize,
        out_dim: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if hidden == 0 || out_dim == 0 {
            return Err(Error::invalid(format!(
                "the convolutional encoder needs --enc-dim ≥ 1 channels and an output, got {hidden} and {out_dim}"
            )));
        }
        let chans = [1, hidden, 2 * hidden, 4 * hidden, 8 * hidden, out_dim];
        let mut layers = Vec::with_capacity(5);
        for l in 0..5 {
            let (c_in, c_out) = (chans[l], chans[l + 1]);
            let k = 4;
            let w = torch_uniform::<B::Elem>(rng, c_in * k * k, c_out * c_in * k * k);
            let id = store.add(
                format!("{name}.main.{}.weight", 2 * l),
                Tensor::from_slice(be, &w, &[c_out, c_in, k, k])?,
            );
            let (stride, pad) = if l < 4 { (2, 1) } else { (1, 0) };
            layers.push((id, stride, pad));
        }
        Ok(Self { layers, out_dim })
    }

    /// x (B, 64·64) real-space images, row-major → (B, out_dim).
    pub fn forward<B: Backend>(&self, t: &mut Tape<'_, B>, x: Var) -> Result<Var> {
        let s = t.shape(x).to_vec();
        if s.len() != 2 || s[1] != CONV_D * CONV_D {
            return Err(Error::Shape {
                what: "convolutional encoder: images".into(),
                expected: format!(
                    "(B, {}) ({CONV_D}×{CONV_D} real-space images)",
                    CONV_D * CONV_D
                ),
                got: format!("{s:?}"),
            });
        }
        let nb = s[0];
        let mut h = t.reshape(x, &[nb, CONV_D, CONV_D, 1])?;
        let last = self.layers.len() - 1;
        for (l, &(w, stride, pad)) in self.layers.iter().enumerate() {
            let wv = t.param(w);
            h = t.conv2d(h, wv, stride, pad)?;
            if l != last {
                h = t.unary(h, UnaryOp::LeakyRelu(0.2))?;
            }
        }
        t.reshape(h, &[nb, self.out_dim])
    }
}

/// An encoder producing two heads from masked images (B, in_dim): z or μ (B, zdim) and a second
/// head (B, aux): log σ² (aux = zdim) for the VAE, the GMM responsibility logits (aux = C) for cryoTWIN.
#[derive(Clone, Debug)]
pub struct Encoder {
    pub mode: EncodeMode,
    /// The image network (the only one for `resid` / `mlp`; `encoder1` for `tilt`).
    pub net: Mlp,
    /// `encoder2` of the tilt-pair encoder.
    pub net2: Option<Mlp>,
    /// The convolutional network of `conv` (then `net` is unused and empty).
    pub conv: Option<ConvNet>,
    pub zdim: usize,
    /// Width of the second head.
    pub aux: usize,
    pub in_dim: usize,
}

impl Encoder {
    /// A new encoder with parameters `encoder.main.*` (`tilt`: `encoder.encoder1.main.*`,
    /// `encoder.encoder2.main.*`), torch's state-dict names; its output is zdim + aux wide.
    /// `conv` ignores `layers` (as the reference) and needs in_dim = 64·64.
    #[allow(clippy::too_many_arguments)]
    pub fn new<B: Backend>(
        be: &B,
        store: &mut ParamStore<B>,
        mode: EncodeMode,
        in_dim: usize,
        layers: usize,
        dim: usize,
        zdim: usize,
        aux: usize,
        act: Activation,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if zdim == 0 {
            return Err(Error::invalid("--zdim must be at least 1, got 0"));
        }
        if mode == EncodeMode::Conv {
            if in_dim != CONV_D * CONV_D {
                return Err(Error::invalid(format!(
                    "--encode-mode conv reads {CONV_D}×{CONV_D} images (cryoDRGN's ConvEncoder); these give {in_dim} \
                     encoder inputs (downsample the particles to {CONV_D})"
                )));
            }
            return Ok(Self {
                mode,
                net: Mlp {
                    layers: Vec::new(),
                    residual: Vec::new(),
                    act,
                },
                net2: None,
                conv: Some(ConvNet::new(be, store, "encoder", dim, zdim + aux, rng)?),
                zdim,
                aux,
                in_dim,
            });
        }
        let (net, net2) = match mode {
            EncodeMode::Resid => (
                Mlp::resid(
                    be,
                    store,
                    "encoder",
                    in_dim,
                    layers,
                    dim,
                    zdim + aux,
                    act,
                    rng,
                )?,
                None,
            ),
            EncodeMode::Mlp => (
                Mlp::new(
                    be,
                    store,
                    "encoder",
                    in_dim,
                    layers,
                    dim,
                    zdim + aux,
                    act,
                    rng,
                )?,
                None,
            ),
            EncodeMode::Tilt => (
                Mlp::resid(
                    be,
                    store,
                    "encoder.encoder1",
                    in_dim,
                    layers,
                    dim,
                    dim,
                    act,
                    rng,
                )?,
                Some(Mlp::resid(
                    be,
                    store,
                    "encoder.encoder2",
                    2 * dim,
                    2,
                    dim,
                    zdim + aux,
                    act,
                    rng,
                )?),
            ),
            EncodeMode::Conv => unreachable!("built above"),
        };
        Ok(Self {
            mode,
            net,
            net2,
            conv: None,
            zdim,
            aux,
            in_dim,
        })
    }

    /// The two heads, (B, zdim) and (B, aux) — (μ, log σ²) for the VAE — from x (B, in_dim) and,
    /// for `tilt`, the tilted image x_tilt (B, in_dim). For `conv`, x holds the 64 × 64
    /// real-space images.
    pub fn forward<B: Backend>(
        &self,
        t: &mut Tape<'_, B>,
        x: Var,
        x_tilt: Option<Var>,
    ) -> Result<(Var, Var)> {
        let h = match (&self.conv, &self.net2, x_tilt) {
            (Some(conv), _, None) => conv.forward(t, x)?,
            (None, Some(net2), Some(xt)) => {
                let a = self.net.forward(t, x)?;
                let b = self.net.forward(t, xt)?;
                let ab = t.concat(&[a, b])?;
                net2.forward(t, ab)?
            }
            (None, None, None) => self.net.forward(t, x)?,
            (None, Some(_), None) => {
                return Err(Error::invalid(
                    "the tilt-pair encoder needs the tilted images",
                ))
            }
            (Some(_), _, Some(_)) | (None, None, Some(_)) => {
                return Err(Error::invalid(
                    "tilted images given to a single-image encoder",
                ))
            }
        };
        let mu = t.slice(h, 0, self.zdim)?;
        let logvar = t.slice(h, self.zdim, self.aux)?;
        Ok((mu, logvar))
    }
}
