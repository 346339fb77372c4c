//! Rotations and the conventions of RELION and cryoSPARC.

pub mod healpix;
pub mod quaternion;
pub mod rotation;
pub mod shift_grid;
pub mod so3_grid;
