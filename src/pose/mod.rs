//! Poses: accuracy against ground truth.

pub mod error;
