//! Rotations and the conventions of RELION and cryoSPARC.

pub mod rotation;
