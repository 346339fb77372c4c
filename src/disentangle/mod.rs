//! Disentangling pose from conformation (issue 24, in progress; Klindt et al. 2024, spec:
//! `disentanglement.md`). Built so far: `train-vae --pose-source encoder --intervention-weight w` (PoseVAE),
//! `simulate --pose-dist inplane --pairs`, `disentangle mcc`, and these library pieces:
//!
//! | module | what it holds |
//! |---|---|
//! | [`intervention`] | PoseVAE's intervention loss (Eq. 2) on the tape: permute poses, decode, re-encode |
//! | [`mcc`] | the mean correlation coefficient (MCC) between learned latents and true factors (Spearman / Pearson matrix + assignment), circular pose alignment |
//! | [`slow`] | SlowVAE's temporal Laplace prior: cross-entropy of a Gaussian posterior with a Laplace around the previous mean, its gradients; pair transitions for simulated pairs |
//! | [`linear_svc`] | sklearn's `LinearSVC(C, class_weight="balanced")` on one feature as liblinear fits it (SAP's classifier) |
//! | [`scores`] | the Fig 4 scores of Locatello et al. 2019 (disentanglement_lib): MIG, modularity, SAP, FactorVAE, BetaVAE, DCI, with every deviation in the module doc |
//! | [`report`] | the whole Fig 4 set in one call at K20's counts × a scale, from any labelled generator ([`report::RowGenerator`]: saved arrays), with a dump of every metric's inputs |
//! | [`rot90`] | the Edelberg–Lederman 90° test's image rotation (an exact pixel permutation: the image at Rz(k·90°)·R) |

pub mod intervention;
pub mod linear_svc;
pub mod mcc;
pub mod report;
pub mod rot90;
pub mod scores;
pub mod slow;
