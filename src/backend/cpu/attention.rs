//! Multi-head self-attention on the CPU ([`crate::backend::Backend::attention`] and its
//! backward): one rayon task per (sequence, head), each three strided GEMMs forward and five
//! backward on the (t, t) scores, which are recomputed in the backward pass from the saved
//! row log-sum-exps rather than stored (memory O(t) per row instead of O(t²) per head).
//!
//! Layout (Point-E's `QKVMultiheadAttention`): qkv (batch·t, 3·W) with W = heads·d_h, per token
//! head by head `[q_h | k_h | v_h]`; y (batch·t, W) with head h in columns h·d_h..(h+1)·d_h.

use super::gemm::CpuFloat;
use crate::{Error, Result};
use rayon::prelude::*;

/// (t, d_h) of an attention call, checked: `lse` of batch·heads·t values (t > 0), `y` of
/// batch·t·heads·d_h (d_h > 0) and `qkv` of 3× as many.
pub(crate) fn dims(
    what: &str,
    qkv: usize,
    batch: usize,
    heads: usize,
    y: usize,
    lse: usize,
) -> Result<(usize, usize)> {
    let bh = batch * heads;
    if bh == 0 || lse == 0 || !lse.is_multiple_of(bh) {
        return Err(Error::Shape {
            what: format!("{what}: lse"),
            expected: format!("batch·heads·t values (batch {batch}, heads {heads}, t > 0)"),
            got: lse.to_string(),
        });
    }
    let t = lse / bh;
    if y == 0 || !y.is_multiple_of(bh * t) {
        return Err(Error::Shape {
            what: format!("{what}: y"),
            expected: format!("batch·t·heads·d_h values with batch·heads·t = {lse}"),
            got: y.to_string(),
        });
    }
    super::check(&format!("{what}: qkv"), 3 * y, qkv)?;
    Ok((t, y / (bh * t)))
}

/// Scaled scores S = q·kᵀ/√d_h (t, t) of sequence b, head h.
fn scores<T: CpuFloat>(qkv: &[T], b: usize, h: usize, t: usize, dh: usize, heads: usize) -> Vec<T> {
    let w3 = 3 * heads * dh;
    let base = b * t * w3 + h * 3 * dh;
    let scale = T::c(1.0 / (dh as f64).sqrt());
    let mut s = vec![T::zero(); t * t];
    // A = q (t, d_h) rows of stride 3W; B = kᵀ (d_h, t): element (p, j) = k[j, p]
    T::gemm_strided(
        t,
        dh,
        t,
        scale,
        (&qkv[base..], w3 as isize, 1),
        (&qkv[base + dh..], 1, w3 as isize),
        T::zero(),
        &mut s,
    );
    s
}

/// y (batch·t, W) and lse (batch·heads·t) of [`crate::backend::Backend::attention`].
pub(crate) fn forward<T: CpuFloat>(
    qkv: &[T],
    batch: usize,
    heads: usize,
    y: &mut [T],
    lse: &mut [T],
) -> Result<()> {
    let (t, dh) = dims("attention", qkv.len(), batch, heads, y.len(), lse.len())?;
    let (w, w3) = (heads * dh, 3 * heads * dh);
    let parts: Vec<(Vec<T>, Vec<T>)> = (0..batch * heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / heads, bh % heads);
            let mut s = scores(qkv, b, h, t, dh, heads);
            // row softmax in place; l_i = max_i + ln Σ_j e^{s_ij − max_i}
            let mut l = vec![T::zero(); t];
            for (row, li) in s.chunks_mut(t).zip(l.iter_mut()) {
                let mx = row.iter().copied().fold(T::neg_infinity(), T::max);
                let mut sum = T::zero();
                for v in row.iter_mut() {
                    *v = (*v - mx).exp();
                    sum += *v;
                }
                row.iter_mut().for_each(|v| *v = *v / sum);
                *li = mx + sum.ln();
            }
            // o = P·v (t, d_h)
            let mut o = vec![T::zero(); t * dh];
            let base = b * t * w3 + h * 3 * dh + 2 * dh;
            T::gemm_strided(
                t,
                t,
                dh,
                T::one(),
                (&s, t as isize, 1),
                (&qkv[base..], w3 as isize, 1),
                T::zero(),
                &mut o,
            );
            (o, l)
        })
        .collect();
    for (bh, (o, l)) in parts.into_iter().enumerate() {
        let (b, h) = (bh / heads, bh % heads);
        for i in 0..t {
            y[(b * t + i) * w + h * dh..][..dh].copy_from_slice(&o[i * dh..(i + 1) * dh]);
        }
        lse[bh * t..(bh + 1) * t].copy_from_slice(&l);
    }
    Ok(())
}

/// dqkv += ∂L/∂qkv of [`forward`] (rules in [`crate::backend::Backend::attention_backward`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: CpuFloat>(
    qkv: &[T],
    y: &[T],
    lse: &[T],
    dy: &[T],
    batch: usize,
    heads: usize,
    dqkv: &mut [T],
) -> Result<()> {
    let (t, dh) = dims(
        "attention_backward",
        qkv.len(),
        batch,
        heads,
        y.len(),
        lse.len(),
    )?;
    super::check("attention_backward: dy", y.len(), dy.len())?;
    super::check("attention_backward: dqkv", qkv.len(), dqkv.len())?;
    let (w, w3) = (heads * dh, 3 * heads * dh);
    let scale = T::c(1.0 / (dh as f64).sqrt());
    let parts: Vec<[Vec<T>; 3]> = (0..batch * heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / heads, bh % heads);
            // P = exp(S − lse) from the recomputed scores
            let mut p = scores(qkv, b, h, t, dh, heads);
            for (row, &l) in p.chunks_mut(t).zip(&lse[bh * t..(bh + 1) * t]) {
                row.iter_mut().for_each(|v| *v = (*v - l).exp());
            }
            let obase = b * t * w + h * dh;
            let qbase = b * t * w3 + h * 3 * dh;
            let (kbase, vbase) = (qbase + dh, qbase + 2 * dh);
            // dv = Pᵀ·dy (t, d_h)
            let mut dv = vec![T::zero(); t * dh];
            T::gemm_strided(
                t,
                t,
                dh,
                T::one(),
                (&p, 1, t as isize),
                (&dy[obase..], w as isize, 1),
                T::zero(),
                &mut dv,
            );
            // dP = dy·vᵀ (t, t)
            let mut ds = vec![T::zero(); t * t];
            T::gemm_strided(
                t,
                dh,
                t,
                T::one(),
                (&dy[obase..], w as isize, 1),
                (&qkv[vbase..], 1, w3 as isize),
                T::zero(),
                &mut ds,
            );
            // dS = P ⊙ (dP − D_i), D_i = Σ_p dy_ip·y_ip (= Σ_j P_ij dP_ij)
            for i in 0..t {
                let r = obase + i * w;
                let di = (0..dh).map(|c| dy[r + c] * y[r + c]).sum::<T>();
                for (dsij, &pij) in ds[i * t..(i + 1) * t].iter_mut().zip(&p[i * t..]) {
                    *dsij = pij * (*dsij - di);
                }
            }
            // dq = dS·k/√d_h, dk = dSᵀ·q/√d_h
            let mut dq = vec![T::zero(); t * dh];
            T::gemm_strided(
                t,
                t,
                dh,
                scale,
                (&ds, t as isize, 1),
                (&qkv[kbase..], w3 as isize, 1),
                T::zero(),
                &mut dq,
            );
            let mut dk = vec![T::zero(); t * dh];
            T::gemm_strided(
                t,
                t,
                dh,
                scale,
                (&ds, 1, t as isize),
                (&qkv[qbase..], w3 as isize, 1),
                T::zero(),
                &mut dk,
            );
            [dq, dk, dv]
        })
        .collect();
    for (bh, part) in parts.into_iter().enumerate() {
        let (b, h) = (bh / heads, bh % heads);
        for i in 0..t {
            let row = (b * t + i) * w3 + h * 3 * dh;
            for (k, g) in part.iter().enumerate() {
                dqkv[row + k * dh..row + (k + 1) * dh]
                    .iter_mut()
                    .zip(&g[i * dh..(i + 1) * dh])
                    .for_each(|(a, &v)| *a += v);
            }
        }
    }
    Ok(())
}

/// The plain reference: per (sequence, head, query row), scores, softmax and the weighted sum
/// of values written out as loops (tests compare the GEMM path against it).
pub fn reference<T: CpuFloat>(qkv: &[T], batch: usize, heads: usize, t: usize) -> Vec<T> {
    let dh = qkv.len() / (batch * t * 3 * heads);
    let (w, w3) = (heads * dh, 3 * heads * dh);
    let mut y = vec![T::zero(); batch * t * w];
    let scale = 1.0 / (dh as f64).sqrt();
    for b in 0..batch {
        for h in 0..heads {
            let at = |i: usize, k: usize, p: usize| qkv[(b * t + i) * w3 + h * 3 * dh + k * dh + p];
            for i in 0..t {
                let s: Vec<f64> = (0..t)
                    .map(|j| {
                        scale
                            * (0..dh)
                                .map(|p| (at(i, 0, p) * at(j, 1, p)).f64())
                                .sum::<f64>()
                    })
                    .collect();
                let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for p in 0..dh {
                    let v: f64 = (0..t).map(|j| e[j] / z * at(j, 2, p).f64()).sum();
                    y[(b * t + i) * w + h * dh + p] = T::c(v);
                }
            }
        }
    }
    y
}
