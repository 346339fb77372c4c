//! 2-D convolution on the CPU ([`crate::backend::Backend::conv2d`] and its backward) by im2col
//! and the GEMM of [`super::gemm`]: the input windows are copied into a matrix X
//! (batch·h_out·w_out, c_in·k²), one row per output pixel with columns (c, ky, kx) in torch's
//! weight order, so that y = X·wᵀ comes out NHWC (batch, h_out, w_out, c_out). Backward:
//! dw += dyᵀ·X (X recomputed, not kept) and dx += col2im(dy·w).
//!
//! Work: 2·rows·c_in·k²·c_out FLOPs per GEMM (one forward, two backward); im2col and col2im move
//! rows·c_in·k² values. Rows are filled in parallel; col2im runs one image per task, so every
//! input pixel is summed by one thread in a fixed order (deterministic).

use super::check;
use super::gemm::{gemm, CpuFloat};
use crate::backend::Conv2dShape;
use crate::Result;
use rayon::prelude::*;

/// Check the buffer lengths of a convolution against `s`.
fn check_lens(what: &str, s: &Conv2dShape, x: usize, w: usize) -> Result<()> {
    s.check(what)?;
    check(&format!("{what}: x (batch, h, w, c_in)"), s.x_len(), x)?;
    check(&format!("{what}: w (c_out, c_in, k, k)"), s.w_len(), w)
}

/// X (batch·h_out·w_out, c_in·k²): row (b, oy, ox), column (c, ky, kx) holds
/// x[b, oy·stride + ky − pad, ox·stride + kx − pad, c], 0 outside the image.
fn im2col<T: CpuFloat>(x: &[T], s: &Conv2dShape) -> Vec<T> {
    let (ho, wo) = (s.h_out(), s.w_out());
    let ckk = s.c_in * s.k * s.k;
    let mut cols = vec![T::zero(); s.batch * ho * wo * ckk];
    cols.par_chunks_mut(ckk).enumerate().for_each(|(row, out)| {
        let (b, oy, ox) = (row / (ho * wo), (row / wo) % ho, row % wo);
        for ky in 0..s.k {
            let iy = (oy * s.stride + ky) as isize - s.pad as isize;
            if iy < 0 || iy >= s.h as isize {
                continue;
            }
            for kx in 0..s.k {
                let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                if ix < 0 || ix >= s.w as isize {
                    continue;
                }
                let px = ((b * s.h + iy as usize) * s.w + ix as usize) * s.c_in;
                for c in 0..s.c_in {
                    out[(c * s.k + ky) * s.k + kx] = x[px + c];
                }
            }
        }
    });
    cols
}

/// dx += col2im(dcols): every entry of the window matrix added back to the pixel it was copied
/// from ([`im2col`]'s adjoint); one image per task.
fn col2im<T: CpuFloat>(dcols: &[T], s: &Conv2dShape, dx: &mut [T]) {
    let (ho, wo) = (s.h_out(), s.w_out());
    let ckk = s.c_in * s.k * s.k;
    let per_image = s.h * s.w * s.c_in;
    dx.par_chunks_mut(per_image)
        .enumerate()
        .for_each(|(b, dxb)| {
            for oy in 0..ho {
                for ox in 0..wo {
                    let row = &dcols[((b * ho + oy) * wo + ox) * ckk..][..ckk];
                    for ky in 0..s.k {
                        let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..s.k {
                            let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                            if ix < 0 || ix >= s.w as isize {
                                continue;
                            }
                            let px = (iy as usize * s.w + ix as usize) * s.c_in;
                            for c in 0..s.c_in {
                                dxb[px + c] += row[(c * s.k + ky) * s.k + kx];
                            }
                        }
                    }
                }
            }
        });
}

/// y = X·wᵀ (see the module doc).
pub(crate) fn conv2d<T: CpuFloat>(x: &[T], w: &[T], s: &Conv2dShape, y: &mut [T]) -> Result<()> {
    check_lens("conv2d", s, x.len(), w.len())?;
    check("conv2d: y (batch, h_out, w_out, c_out)", s.y_len(), y.len())?;
    let cols = im2col(x, s);
    let ckk = s.c_in * s.k * s.k;
    let rows = s.batch * s.h_out() * s.w_out();
    gemm(
        rows,
        ckk,
        s.c_out,
        T::one(),
        &cols,
        ckk,
        false,
        w,
        ckk,
        true,
        T::zero(),
        y,
    );
    Ok(())
}

/// dw += dyᵀ·X, dx += col2im(dy·w).
pub(crate) fn conv2d_backward<T: CpuFloat>(
    x: &[T],
    w: &[T],
    s: &Conv2dShape,
    dy: &[T],
    dx: Option<&mut Vec<T>>,
    dw: Option<&mut Vec<T>>,
) -> Result<()> {
    check_lens("conv2d_backward", s, x.len(), w.len())?;
    check("conv2d_backward: dy", s.y_len(), dy.len())?;
    let ckk = s.c_in * s.k * s.k;
    let rows = s.batch * s.h_out() * s.w_out();
    if let Some(dw) = dw {
        check("conv2d_backward: dw", s.w_len(), dw.len())?;
        let cols = im2col(x, s);
        // dw (c_out, ckk) += dyᵀ (c_out, rows) · X (rows, ckk)
        gemm(
            s.c_out,
            rows,
            ckk,
            T::one(),
            dy,
            s.c_out,
            true,
            &cols,
            ckk,
            false,
            T::one(),
            dw,
        );
    }
    if let Some(dx) = dx {
        check("conv2d_backward: dx", s.x_len(), dx.len())?;
        // dX (rows, ckk) = dy (rows, c_out) · w (c_out, ckk)
        let mut dcols = vec![T::zero(); rows * ckk];
        gemm(
            rows,
            s.c_out,
            ckk,
            T::one(),
            dy,
            s.c_out,
            false,
            w,
            ckk,
            false,
            T::zero(),
            &mut dcols,
        );
        col2im(&dcols, s, dx);
    }
    Ok(())
}
