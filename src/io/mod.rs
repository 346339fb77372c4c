//! File formats a cryo-EM user already has, and atomic writes.

pub mod array;
pub mod atomic;
pub mod cs;
pub mod mrc;
pub mod npy;
pub mod pdb;
pub mod pkl;
pub mod source;
pub mod star;
pub mod torch;
pub mod validate;

pub use array::{ArrayData, NdArray};
