//! Encoders q(z | image): cryoDRGN's `ResidLinearMLP` (`--encode-mode resid`) or `MLP`
//! (`mlp`) on the masked Hartley image, and the tilt-pair encoder (paper App. D.2: one MLP
//! embeds each image of the pair, a second MLP maps the concatenated embeddings to (μ, log σ²)).

use crate::autodiff::{ParamStore, Tape, Var};
use crate::backend::{Activation, Backend};
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
}

impl std::str::FromStr for EncodeMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "resid" => Ok(EncodeMode::Resid),
            "mlp" => Ok(EncodeMode::Mlp),
            "tilt" => Ok(EncodeMode::Tilt),
            _ => Err(Error::invalid(format!(
                "unknown --encode-mode `{s}` (expected resid, mlp or tilt; conv is not implemented)"
            ))),
        }
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
    pub zdim: usize,
    /// Width of the second head.
    pub aux: usize,
    pub in_dim: usize,
}

impl Encoder {
    /// A new encoder with parameters `encoder.main.*` (`tilt`: `encoder.encoder1.main.*`,
    /// `encoder.encoder2.main.*`), torch's state-dict names; its output is zdim + aux wide.
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
        };
        Ok(Self {
            mode,
            net,
            net2,
            zdim,
            aux,
            in_dim,
        })
    }

    /// The two heads, (B, zdim) and (B, aux) — (μ, log σ²) for the VAE — from x (B, in_dim) and,
    /// for `tilt`, the tilted image x_tilt (B, in_dim).
    pub fn forward<B: Backend>(
        &self,
        t: &mut Tape<'_, B>,
        x: Var,
        x_tilt: Option<Var>,
    ) -> Result<(Var, Var)> {
        let h = match (&self.net2, x_tilt) {
            (Some(net2), Some(xt)) => {
                let a = self.net.forward(t, x)?;
                let b = self.net.forward(t, xt)?;
                let ab = t.concat(&[a, b])?;
                net2.forward(t, ab)?
            }
            (None, None) => self.net.forward(t, x)?,
            (Some(_), None) => {
                return Err(Error::invalid(
                    "the tilt-pair encoder needs the tilted images",
                ))
            }
            (None, Some(_)) => {
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
