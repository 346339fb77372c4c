//! Disentanglement metrics (issue 24, in progress; spec: `disentanglement.md` §4): the mean
//! correlation coefficient (MCC) between learned latents and true generative factors, with the
//! circular alignment of a predicted pose angle to its truth.

pub mod mcc;
