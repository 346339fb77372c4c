//! Disentanglement (issue 24, Klindt et al. 2024): SlowVAE's temporal Laplace prior and pair
//! generation ([`slow`]), the Edelberg–Lederman 90° image rotation ([`rot90`]).

pub mod rot90;
pub mod slow;
