//! Disentangling pose from conformation (issue 24; Klindt et al. 2024, spec: `disentanglement.md`).
//! Commands: `train-vae --pose-source encoder --intervention-weight w` (PoseVAE; w in the paper's units,
//! divided by the pixel count like β), `train-vae --intervention-weight w` with known poses (its z-only
//! variant), `train-vae --pairs P --slow-gamma γ --slow-rate λ′` (SlowVAE), `simulate --pose-dist
//! inplane|inplane-y --pairs`, `disentangle mcc`, `disentangle scores` (arrays and model mode),
//! `disentangle interventions` (the six App. A metrics, held-out Eq. 2 / recon / KL), `disentangle rot90`
//! (the 90° test), `disentangle plots`; and these
//! library pieces:
//!
//! | module | what it holds |
//! |---|---|
//! | [`intervention`] | PoseVAE's intervention loss (Eq. 2) on the tape: permute poses, decode, re-encode |
//! | [`mcc`] | the mean correlation coefficient (MCC) between learned latents and true factors (Spearman / Pearson matrix + assignment), circular pose alignment |
//! | [`slow`] | SlowVAE's temporal Laplace prior: cross-entropy of a Gaussian posterior with a Laplace around the previous mean, its gradients; pair transitions for simulated pairs |
//! | [`linear_svc`] | sklearn's `LinearSVC(C, class_weight="balanced")` on one feature as liblinear fits it (SAP's classifier) |
//! | [`scores`] | the Fig 4 scores of Locatello et al. 2019 (disentanglement_lib): MIG, modularity, SAP, FactorVAE, BetaVAE, DCI, with every deviation in the module doc |
//! | [`report`] | the whole Fig 4 set in one call at K20's counts × a scale, from any labelled generator ([`report::RowGenerator`]: saved arrays), with a dump of every metric's inputs |
//! | [`probe`] | a trained model as functions of in-memory data (`Probe`: encode images, decode (z, R), held-out Eq. 2 / recon / KL) and the true generator of a phantom (`World`: factors → images → representation) |
//! | [`interventions`] | the six intervention metrics (App. A) over an abstract h = f ∘ g, with affine / angle / global-rotation alignment for truth mode |
//! | [`equivariance`] | the 90° test's measures over any encoder: Δz_rot, the in-plane equivariance error, the SO(3) turn error |
//! | [`rot90`] | the Edelberg–Lederman 90° test's image rotation (an exact pixel permutation: the image at Rz(k·90°)·R) |
//! | [`world_scores`] | model mode of the scores: a phantom's factors → images drawn as `simulate` draws them → a model's μ_z |

pub mod equivariance;
pub mod intervention;
pub mod interventions;
pub mod linear_svc;
pub mod mcc;
pub mod probe;
pub mod report;
pub mod rot90;
pub mod scores;
pub mod slow;
pub mod world_scores;
