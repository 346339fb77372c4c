//! cryoDRGN's `HetOnlyVAE` (known poses): encoder → reparameterization → decoder on the
//! rotated masked lattice, CTF applied to the decoded slice, and the loss of `train_vae.py`.

use super::{Decoder, Encoder};
use crate::autodiff::{Tape, Var};
use crate::backend::Backend;
use crate::Result;

/// The heterogeneous VAE: `encoder.*` and `decoder.decoder.*` parameters.
#[derive(Clone, Debug)]
pub struct HetOnlyVae {
    pub encoder: Encoder,
    pub decoder: Decoder,
}

/// The KL weighting of `train_vae.py`'s `loss_function`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KlWeight {
    /// loss = gen + β·KL / n_pixels (β defaults to 1/zdim).
    Beta(f64),
    /// loss = gen + γ·(β − KL)² / n_pixels (`--beta-control γ`).
    Control { beta: f64, gamma: f64 },
}

/// Scalar parts of one loss evaluation.
pub struct LossParts {
    pub loss: Var,
    pub gen: Var,
    pub kld: Option<Var>,
}

/// z = μ + ε·exp(½·log σ²) with ε (B, zdim) a constant standard-normal draw.
pub fn reparameterize<B: Backend>(
    t: &mut Tape<'_, B>,
    mu: Var,
    logvar: Var,
    eps: Var,
) -> Result<Var> {
    let half = t.affine(logvar, 0.5, 0.0)?;
    let std = t.unary(half, crate::backend::UnaryOp::Exp)?;
    let e = t.mul(eps, std)?;
    t.add(e, mu)
}

/// The reconstruction loss: mean over (B, P) of (ctf ⊙ y_recon − y)²; y_recon (B, P), `ctf`
/// (B, P) optional, `y` (B, P) the translated masked data.
pub fn gen_loss<B: Backend>(
    t: &mut Tape<'_, B>,
    y_recon: Var,
    ctf: Option<Var>,
    y: Var,
) -> Result<Var> {
    let yr = match ctf {
        Some(c) => t.mul(y_recon, c)?,
        None => y_recon,
    };
    t.mse(yr, y)
}

/// `loss_function`: gen + the KL term for μ, log σ² (B, zdim), `n_pixels` = mask.sum().
pub fn vae_loss<B: Backend>(
    t: &mut Tape<'_, B>,
    gen: Var,
    mu: Var,
    logvar: Var,
    w: KlWeight,
    n_pixels: usize,
) -> Result<LossParts> {
    let kld = t.kl_std_normal(mu, logvar)?;
    let n = n_pixels as f64;
    let term = match w {
        KlWeight::Beta(beta) => t.affine(kld, beta / n, 0.0)?,
        KlWeight::Control { beta, gamma } => {
            let d = t.affine(kld, -1.0, beta)?;
            let d2 = t.unary(d, crate::backend::UnaryOp::Square)?;
            t.affine(d2, gamma / n, 0.0)?
        }
    };
    let loss = t.add(gen, term)?;
    Ok(LossParts {
        loss,
        gen,
        kld: Some(kld),
    })
}
