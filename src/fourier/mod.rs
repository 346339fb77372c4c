//! Centered FFT and Hartley transforms, symmetrization and Fourier-crop downsampling.

pub mod downsample;
pub mod fft;
pub mod slice;
