//! Simulated data with known truth: particle datasets from volumes ([`dataset`]), built-in phantoms
//! with known conformational motions ([`phantom`]) and density maps from atomic models
//! ([`pdb_density`]).

pub mod dataset;
pub mod domain;
pub mod pdb_density;
pub mod phantom;

pub use phantom::{Phantom, PhantomKind};
