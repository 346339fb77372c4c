//! Latent diffusion prior for cryoDRGN latents (Kreis, Dockhorn, Li & Zhong 2022, "Latent Space
//! Diffusion Models of Cryo-EM Structures", Section 2 and Appendix A.1), following EDM (Karras et
//! al. 2022).
//!
//! | module | what it holds |
//! |---|---|
//! | [`edm`] | EDM preconditioning, loss weight, σ sampling, Karras schedule, the [`Denoiser`] trait, closed-form Gaussian-mixture denoisers |
//! | [`model`] | the residual-MLP denoiser `D_θ(x; σ)`, its training loop and `.npz` checkpoint |
//! | [`sample`] | Euler–Maruyama on probability-flow ODE + Langevin SDE (paper eq. 5), EDM Heun (deterministic and stochastic) |
//! | [`ode`] | adaptive Dormand–Prince RK4(5), ODE encode/decode, interpolation, Langevin in the prior's Gaussian space (paper eq. 7) |
//! | [`eval`] | PCA, PC1-marginal total variation distance, kernel density for the "empty region" check |
//!
//! Latents are host `f64` rows: a batch is `(n, d)` row-major in a `&[f64]` of length `n·d`.

pub mod edm;
pub mod eval;
pub mod model;
pub mod ode;
pub mod sample;

pub use edm::{Denoiser, EdmConfig, GmmDenoiser, Precond};
pub use model::{MlpDenoiser, TrainConfig, TrainReport};
