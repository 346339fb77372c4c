//! Centered 2D/3D FFT and Hartley transforms, as the reference defines them.
//! OWNER: helper "fourier" — replace this stub entirely, keeping these public signatures.

/// `ht2_center` of each D×D image in `imgs` (n·D·D values, row-major), in place semantics:
/// returns the centered Hartley transform `Re F − Im F`, `F = fftshift(fft2(fftshift(x)))`. Parallel over images.
pub fn ht2_center(_imgs: &[f32], _d: usize) -> Vec<f32> {
    todo!()
}
/// Inverse of [`ht2_center`]: `iht2_center(x) = (Re F − Im F) / D²` with the same centered FFT.
pub fn iht2_center(_imgs: &[f32], _d: usize) -> Vec<f32> {
    todo!()
}
/// 3D centered Hartley transform of a D×D×D volume.
pub fn htn_center(_vol: &[f32], _d: usize) -> Vec<f32> {
    todo!()
}
/// Inverse of [`htn_center`] (divides by D³).
pub fn ihtn_center(_vol: &[f32], _d: usize) -> Vec<f32> {
    todo!()
}
/// Symmetrize D×D Hartley images to (D+1)×(D+1): the last row/column repeat the first.
pub fn symmetrize_ht(_ht: &[f32], _d: usize) -> Vec<f32> {
    todo!()
}
