//! The fused coordinate-network forward/backward on the CPU.
//!
//! Per layer l with input h (N, n_in), weight W (n_out, n_in), bias b (n_out):
//!   z = h·Wᵀ + b (+ h if residual) ; h' = act(z) in place (skipped on the last layer) — one
//!   [`gemm_mixed`] call with its epilogue: on AMX the bias, residual and ReLU are applied as the
//!   GEMM writes z; in f32 the bias is broadcast into z first (a GEMM with β = 1) and the
//!   residual and ReLU follow in one pass. Other activations run as a pass after.
//! Backward with g = ∂L/∂z of layer l:
//!   dW += gᵀ·h (GEMM) ; db += Σ_rows g ; g_in = g·W (+ g if residual) ;
//!   g_prev = g_in ⊙ act'(z_prev) — act' from the stored output h_prev for relu/leaky/tanh,
//!   from the stored pre-activation z_prev for silu/gelu.
//! All intermediate buffers come from (and go back to) the backend's pool.

use super::gemm::{gemm_mixed, CpuFloat, Epilogue};
use super::{check, par_chunks, unary_grad, unary_value, CpuBackend};
use crate::backend::{Backend, MlpLayerGrad, MlpOutput, MlpSaved, MlpWeights, UnaryOp};
use crate::{Error, Result};

/// g ⊙= f'(z) (z: pre-activation when stored, else the output h); ReLU fast path: 1[h>0].
fn act_grad_inplace<T: CpuFloat>(op: UnaryOp, z: &[T], h: &[T], g: &mut [T]) {
    match op {
        UnaryOp::Relu => g.iter_mut().zip(h).for_each(|(v, &y)| {
            *v = if y > T::zero() { *v } else { T::zero() };
        }),
        _ => {
            for (i, v) in g.iter_mut().enumerate() {
                *v *= unary_grad(op, z[i], h[i]);
            }
        }
    }
}

fn check_weights<T: CpuFloat>(w: &MlpWeights<'_, CpuBackend<T>>) -> Result<()> {
    if w.layers.is_empty() {
        return Err(Error::invalid("mlp: no layers"));
    }
    for (l, layer) in w.layers.iter().enumerate() {
        check(
            &format!("mlp layer {l}: weight"),
            layer.n_in * layer.n_out,
            layer.w.len(),
        )?;
        check(&format!("mlp layer {l}: bias"), layer.n_out, layer.b.len())?;
        if layer.residual {
            check(
                &format!("mlp layer {l}: residual n_out"),
                layer.n_in,
                layer.n_out,
            )?;
        }
        if l > 0 {
            check(
                &format!("mlp layer {l}: n_in"),
                w.layers[l - 1].n_out,
                layer.n_in,
            )?;
        }
    }
    Ok(())
}

pub(super) fn forward<T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &MlpWeights<'_, CpuBackend<T>>,
    x: &Vec<T>,
    n: usize,
    save: bool,
) -> Result<MlpOutput<CpuBackend<T>>> {
    check_weights(w)?;
    check("mlp_forward: x", n * w.layers[0].n_in, x.len())?;
    let op = w.act.unary();
    let keep_z = save && w.act.needs_preactivation();
    // ReLU is applied as the GEMM writes its output (ReLU never needs z kept).
    let fused_relu = matches!(op, UnaryOp::Relu);
    let last = w.layers.len() - 1;
    let mut hs: Vec<Vec<T>> = Vec::with_capacity(last);
    let mut zs: Vec<Vec<T>> = Vec::new();
    // The previous layer's output when not saving (recycled once consumed).
    let mut prev: Option<Vec<T>> = None;
    for (l, layer) in w.layers.iter().enumerate() {
        let mut z = be.alloc(n * layer.n_out)?;
        {
            let h: &Vec<T> = match (&prev, l) {
                (_, 0) => x,
                (Some(p), _) => p,
                (None, _) => &hs[l - 1],
            };
            gemm_mixed(
                be.bf16,
                n,
                layer.n_in,
                layer.n_out,
                h,
                layer.n_in,
                false,
                layer.w,
                layer.n_in,
                true,
                Epilogue {
                    bias: Some(layer.b),
                    residual: layer.residual.then_some(&h[..]),
                    relu: fused_relu && l != last,
                },
                T::zero(),
                &mut z,
            );
        }
        if let Some(p) = prev.take() {
            be.recycle(p);
        }
        if l == last {
            return Ok((z, save.then_some(MlpSaved { h: hs, z: zs })));
        }
        let h_new = if keep_z {
            let mut h = be.alloc(z.len())?;
            par_chunks(&mut h, |o, c| {
                c.iter_mut()
                    .zip(&z[o..])
                    .for_each(|(a, &b)| *a = unary_value(op, b));
            });
            zs.push(z);
            h
        } else {
            if !fused_relu {
                par_chunks(&mut z, |_, c| {
                    c.iter_mut().for_each(|a| *a = unary_value(op, *a))
                });
            }
            z
        };
        if save {
            hs.push(h_new);
        } else {
            prev = Some(h_new);
        }
    }
    unreachable!("the loop returns at the last layer")
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &MlpWeights<'_, CpuBackend<T>>,
    x: &Vec<T>,
    n: usize,
    saved: &MlpSaved<CpuBackend<T>>,
    dy: &Vec<T>,
    mut dx: Option<&mut Vec<T>>,
    dlayers: &mut [MlpLayerGrad<'_, CpuBackend<T>>],
) -> Result<()> {
    check_weights(w)?;
    let nl = w.layers.len();
    check("mlp_backward: x", n * w.layers[0].n_in, x.len())?;
    check("mlp_backward: dy", n * w.layers[nl - 1].n_out, dy.len())?;
    check("mlp_backward: saved activations", nl - 1, saved.h.len())?;
    check("mlp_backward: layer gradients", nl, dlayers.len())?;
    if w.act.needs_preactivation() {
        check("mlp_backward: saved pre-activations", nl - 1, saved.z.len())?;
    }
    if let Some(dx) = dx.as_deref() {
        check("mlp_backward: dx", x.len(), dx.len())?;
    }
    let op = w.act.unary();
    // g = ∂L/∂z of the current layer; starts as dy (borrowed) then owned buffers.
    let mut owned: Option<Vec<T>> = None;
    for l in (0..nl).rev() {
        let layer = &w.layers[l];
        let g: &Vec<T> = owned.as_ref().unwrap_or(dy);
        let h_in: &Vec<T> = if l == 0 { x } else { &saved.h[l - 1] };
        let dl = &mut dlayers[l];
        check(
            &format!("mlp_backward layer {l}: dW"),
            layer.w.len(),
            dl.dw.len(),
        )?;
        check(
            &format!("mlp_backward layer {l}: db"),
            layer.n_out,
            dl.db.len(),
        )?;
        // dW (n_out, n_in) += gᵀ (n_out, N) · h (N, n_in)
        gemm_mixed(
            be.bf16,
            layer.n_out,
            n,
            layer.n_in,
            g,
            layer.n_out,
            true,
            h_in,
            layer.n_in,
            false,
            Epilogue::default(),
            T::one(),
            dl.dw,
        );
        // db += Σ_rows g
        be.sum_rows(g, layer.n_out, 1.0, dl.db, true)?;
        if l == 0 && dx.is_none() {
            break;
        }
        // g_in (N, n_in) = g (N, n_out) · W (n_out, n_in) (+ g if residual)
        let mut gin = if l == 0 {
            None
        } else {
            Some(be.alloc(n * layer.n_in)?)
        };
        let (target, beta) = match (&mut gin, dx.as_deref_mut()) {
            (Some(b), _) => (b, T::zero()),
            (None, Some(d)) => (d, T::one()),
            (None, None) => unreachable!("handled by the break above"),
        };
        gemm_mixed(
            be.bf16,
            n,
            layer.n_out,
            layer.n_in,
            g,
            layer.n_out,
            false,
            layer.w,
            layer.n_in,
            false,
            Epilogue::default(),
            beta,
            target,
        );
        if layer.residual {
            par_chunks(target, |o, c| {
                c.iter_mut().zip(&g[o..]).for_each(|(a, &b)| *a += b);
            });
        }
        if let Some(mut gb) = gin {
            // ∂L/∂z_{l−1} = g_in ⊙ act'(z_{l−1})
            let h = &saved.h[l - 1];
            let z = if w.act.needs_preactivation() {
                &saved.z[l - 1]
            } else {
                h
            };
            par_chunks(&mut gb, |o, c| {
                act_grad_inplace(op, &z[o..o + c.len()], &h[o..o + c.len()], c)
            });
            if let Some(old) = owned.replace(gb) {
                be.recycle(old);
            }
        }
    }
    if let Some(old) = owned {
        be.recycle(old);
    }
    Ok(())
}
