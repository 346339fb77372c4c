//! Structures from sparse observations (issue 25; Möbius & Habeck 2024,
//! `../shared/specs/point-cloud-dps.md`): a protein is the N means of a Gaussian mixture fitted to
//! its heavy atoms, a cloud `(N, 3)` in the normalised cube [−1, 1]³. A diffusion prior over clouds
//! (EDM) guides posterior sampling (DPS, Algorithm 1) towards clouds that fit a few projections
//! (2D point sets with known rotations), a coarse-grained map or one subunit; every likelihood
//! compares unordered point sets through a linear assignment at each network evaluation.
//!
//! | file | what it holds |
//! |---|---|
//! | [`data`] | the files: ground truth `GT.npz` (clouds, the Å transform, heavy atoms) and observations `OBS.npz` |
//! | [`energy`] | the projection, coarse-map and subunit energies and their gradients at the optimal matching |
//! | [`dps`] | the cloud prior interface, the exact GMM prior, Algorithm 1 (DPS) and the ML baseline |
//! | [`gmm_fit`] | EM for 3D Gaussian mixtures (tied or full covariance, sklearn's defaults): the ground-truth means and the coarse-grained map |
//! | [`prepare`] | ground truth from atomic models or `.npy` clouds: heavy atoms, GMM means, normalisation (`pc-prepare`) |
//! | [`observe`] | synthetic observations: projections, coarse-grained map, subunit (`pc-observe`) |
//! | [`metrics`] | CD, EMD, Rg, kernel-correlation alignment, protein RMSDs, 1-NNA / COV / MMD (`pc-eval`, `pc-gen-metrics`) |
//! | [`transformer`] | the denoiser F_θ: Point-E's point transformer with EDM preconditioning (σ_data 0.5), safetensors + `config.json` |
//! | [`train`] | `pc-train`'s EDM training (two-phase log-normal t, rotation augmentation, exact resume) and the unconditional sampler of `pc-sample` |

pub mod data;
pub mod dps;
pub mod energy;
pub mod gmm_fit;
pub mod metrics;
pub mod observe;
pub mod prepare;
pub mod train;
pub mod transformer;
