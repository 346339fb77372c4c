//! cryoDRGN's models on the [`crate::autodiff`] tape.
//!
//! | module | what |
//! |---|---|
//! | [`decoder`] | [`Decoder`]: `FTPositionalDecoder` (`fourier`) / `PositionalDecoder` (`hartley`) on rotated lattices, [`decoder::eval_volume`] |
//! | [`cryodrgn`] | opening runs trained by cryoDRGN (`config.yaml`, `weights.N.pkl`) |
//! | [`pose`] | pose parametrisations (in-plane angle, 6-D Gram–Schmidt) → rotations on the tape, for learned poses |
//! | [`encoder`] | [`Encoder`]: `ResidLinearMLP` / `MLP` on the masked image, `ConvEncoder` on the 64×64 real-space image, and the tilt-pair encoder |
//! | [`vae`] | [`HetOnlyVae`]: encoder + reparameterization + decoder, the loss of `train_vae.py` |

pub mod cryodrgn;
pub mod decoder;
pub mod encoder;
pub mod load;
pub mod pose;
pub mod vae;

pub use decoder::{Decoder, DecoderConfig};
pub use encoder::{EncodeMode, Encoder};
pub use vae::HetOnlyVae;

use crate::backend::Activation;
use crate::{Error, Result};

/// Parse cryoDRGN's `--activation` (`relu`, `leaky_relu` with torch's slope 0.01).
pub fn parse_activation(s: &str) -> Result<Activation> {
    match s {
        "relu" => Ok(Activation::Relu),
        "leaky_relu" => Ok(Activation::LeakyRelu(0.01)),
        _ => Err(Error::invalid(format!(
            "unknown activation `{s}` (expected relu or leaky_relu)"
        ))),
    }
}
