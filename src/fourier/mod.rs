//! Centered FFT and Hartley transforms, symmetrization and Fourier-crop downsampling.

pub mod backproject;
pub mod ctf;
pub mod downsample;
pub mod fft;
pub mod fsc;
pub mod lattice;
pub mod shift;
pub mod slice;
pub mod window;
