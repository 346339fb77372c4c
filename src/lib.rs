//! # cryofield
//!
//! A Rust engine for heterogeneous cryo-EM reconstruction: the cryoDRGN family of methods
//! (neural-field reconstruction, ab initio pose search, latent diffusion priors, cryoTWIN,
//! point-cloud diffusion posterior sampling, disentanglement) with a CPU backend and, later,
//! hand-written CUDA kernels.
//!
//! ## Architecture
//!
//! | module | what it holds |
//! |---|---|
//! | [`error`] | the crate's `Error` (every variant names the file/field and the problem) and `Result` |
//! | [`io`] | file formats: MRC/MRCS (mmap, lazy), STAR (RELION 3.0/3.1/5), cryoSPARC `.cs`, safe numpy pickles, npy/npz, particle sources, atomic writes |
//! | [`fourier`] | centered FFT and Hartley transforms (2D/3D), symmetrization, downsampling, lattice, CTF, phase shifts, window, central slices, voxel backprojection, FSC |
//! | [`geometry`] | rotation conventions (RELION Euler ZYZ, cryoSPARC rotation vectors), quaternions, HEALPix, Hopf SO(3) grid, shift grid |
//! | [`meta`] | typed pose/CTF metadata: parsing from STAR and `.cs`, reading/writing the reference's `.pkl` files |
//! | [`simulate`] | simulated datasets with known truth (poses, CTF, noise, heterogeneity), phantoms with known motions, atomic model → density (pdb2mrc) |
//! | [`analysis`] | PNG plots with an embedded font; latent analysis: PCA (Jacobi), k-means++, UMAP and t-SNE embeddings, direct/graph/PC traversals, `run_basic` (analyze without volumes) |
//! | [`backend`] | `Backend` trait (one method per primitive), CPU reference backend (rayon + matrixmultiply), CUDA backend (NVRTC kernels, cuBLAS, device selection) |
//! | [`autodiff`] | tape: `enum Op` + one backward `match`, `ParamStore`, `Grads` |
//! | [`nn`] | Linear, MLP / ResidLinearMLP (fused), positional encodings, Adam, RAdam, EMA |
//! | [`model`] | cryoDRGN models: positional decoder (fourier/hartley) on rotated lattices + `eval_volume`, encoders (resid/mlp/tilt-pair), HetOnlyVAE and its loss; `load`: rebuild a trained run from config.json + weights |
//! | [`train`] | `train-nn` / `train-vae`: ImageDataset preprocessing, prefetched batches, Adam, safetensors checkpoints, exact resume |
//! | [`pose`] | branch-and-bound pose search with frequency marching (`Backend::pose_scores`), slice models, ab initio reconstruction (`abinit-homo`, `abinit-het`), `pose-search` against a fixed volume, pose accuracy (`pose-error`) |
//! | [`diffusion`] | latent diffusion prior (EDM): preconditioning, residual-MLP denoiser + training, Euler–Maruyama/Heun samplers, Dormand–Prince ODE encode/decode, PC1 TVD evaluation |
//! | [`assignment`] | exact linear sum assignment (Hungarian / Jonker–Volgenant shortest augmenting paths, rectangular, as scipy's) and the ε-scaling auction (dense or point-cloud costs on the fly, warm start, batched; CPU twin of `kernels/auction.cu`) |
//! | [`disentangle`] | disentangling pose from conformation (issue 24, in progress): MCC (Spearman/Pearson matrix + assignment), circular pose alignment, SlowVAE's Laplace prior and pair transitions, the 90° image rotation |
//! | [`twin`] | cryoTWIN (issue 23, in progress): the GMM box-mass rate term and its gradients, the full-covariance GMM (`gmm.npz`), pathways (Algorithm 1), KLIEP and isometry metrics |
//! | [`pointcloud`] | structures from sparse observations (issue 25): GMM ground truth from atomic models, observations (projections, coarse maps, subunits), energies through assignment, the point-transformer EDM prior, diffusion posterior sampling and the ML baseline, CD/EMD/RMSD and generation metrics |
//! | [`cli`] | one module per subcommand of the `cryofield` binary |
//!
//! Conventions follow the reference implementation (cryoDRGN 4.x): images are D×D with D even,
//! `ht2_center(x) = Re F − Im F` with `F = fftshift(fft2(fftshift(x)))`, pose.pkl is a tuple
//! `(rot (N,3,3) f32, trans (N,2) as a fraction of D)`, ctf.pkl is `(N,9)` f32
//! `[D, Apix, dfU (Å), dfV (Å), dfAng (deg), kV, Cs (mm), w, phase (deg)]`.

pub mod analysis;
pub mod assignment;
pub mod autodiff;
pub mod backend;
pub mod cli;
pub mod diffusion;
pub mod disentangle;
pub mod error;
pub mod fourier;
pub mod geometry;
pub mod io;
pub mod meta;
pub mod model;
pub mod nn;
pub mod pointcloud;
pub mod pose;
pub mod simulate;
pub mod train;
pub mod twin;

pub use error::{Error, Result};
