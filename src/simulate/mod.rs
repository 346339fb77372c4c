//! Simulated data with known truth.

pub mod dataset;
