//! Assignment problems: the exact linear sum assignment (Hungarian / Jonker–Volgenant shortest
//! augmenting paths), used by the disentanglement metrics (MCC) and as the reference that faster
//! approximate solvers (the point-cloud auction algorithm) are tested against.

pub mod hungarian;

pub use hungarian::{linear_sum_assignment, Assignment};
