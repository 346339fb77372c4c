//! Neural-network building blocks on the [`crate::autodiff`] tape.
//!
//! | module | what |
//! |---|---|
//! | [`linear`] | [`Linear`] with PyTorch's default initialization |
//! | [`mlp`] | [`Mlp`]: cryoDRGN's `MLP` (and the shared fused-MLP core) |
//! | [`resnet`] | cryoDRGN's `ResidLinearMLP` (residual layers where in = out) |
//! | [`posenc`] | [`PositionalEncoding`]: `geom_ft`, `geom_full`, `geom_lowf`, `geom_nohighf`, `linear_lowf`, `gaussian`, `none` |
//! | [`optim`] | [`Adam`] (+ L2 weight decay), [`RAdam`], [`Ema`] |

pub mod linear;
pub mod mlp;
pub mod optim;
pub mod posenc;
pub mod resnet;

pub use linear::Linear;
pub use mlp::Mlp;
pub use optim::{Adam, Ema, Optimizer, RAdam};
pub use posenc::{PeKind, PositionalEncoding};
