//! The fused coordinate-network forward/backward on the CPU.
//!
//! Per layer l with input h (N, n_in), weight W (n_out, n_in), bias b (n_out):
//!   z = h·Wᵀ + b (+ h if residual) ; h' = act(z) in place (skipped on the last layer) — one
//!   [`gemm_mixed`] call with its epilogue: on AMX the bias, residual and ReLU are applied as the
//!   GEMM writes z; in f32 the bias is broadcast into z first (a GEMM with β = 1) and the
//!   residual and ReLU follow in one pass. Other activations run as a pass after.
//! Backward with g = ∂L/∂z of layer l:
//!   dW += gᵀ·h (GEMM) ; db += Σ_rows g ; g_in = g·W (+ g if residual) — on layer 0 only the
//!   asked columns of ∂L/∂x (the decoder's z columns, not the positional encoding's) ;
//!   g_prev = g_in ⊙ act'(z_prev) — act' from the stored output h_prev for relu/leaky/tanh,
//!   from the stored pre-activation z_prev for silu/gelu. The residual and, for ReLU, the mask
//!   1[h_prev > 0] are applied as the GEMM writes g_in ([`Epilogue`]); other activations'
//!   derivatives run as a pass after.
//! All intermediate buffers come from (and go back to) the backend's pool.

use super::gemm::{gemm_mixed, CpuFloat, Epilogue};
use super::{check, par_chunks, par_rows, unary_grad, unary_value, CpuBackend};
use crate::backend::{Backend, MlpLayerGrad, MlpOutput, MlpSaved, MlpWeights, UnaryOp};
use crate::{Error, Result};

/// g ⊙= f'(z) (z: pre-activation when stored, else the output h). ReLU never comes here: its
/// gradient mask is applied as the input-gradient GEMM writes g.
fn act_grad_inplace<T: CpuFloat>(op: UnaryOp, z: &[T], h: &[T], g: &mut [T]) {
    for (i, v) in g.iter_mut().enumerate() {
        *v *= unary_grad(op, z[i], h[i]);
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
                    mask: None,
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
    dx_col0: usize,
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
    let n_in0 = w.layers[0].n_in;
    if dx_col0 > n_in0 {
        return Err(Error::Shape {
            what: "mlp_backward: dx first column".into(),
            expected: format!("at most {n_in0} (the input width)"),
            got: dx_col0.to_string(),
        });
    }
    let dx_width = n_in0 - dx_col0;
    if let Some(dx) = dx.as_deref() {
        check("mlp_backward: dx", n * dx_width, dx.len())?;
    }
    let op = w.act.unary();
    let fused_relu = matches!(op, UnaryOp::Relu);
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
        // Layer 0 writes only the asked columns col0.. of ∂L/∂x (the decoder asks for z's).
        let (target, beta, col0) = match (&mut gin, dx.as_deref_mut()) {
            (Some(b), _) => (b, T::zero(), 0),
            (None, Some(d)) => (d, T::one(), dx_col0),
            (None, None) => unreachable!("handled by the break above"),
        };
        let width = layer.n_in - col0;
        // Hidden layers: the residual and the ReLU gradient 1[h_{l−1} > 0] are applied as the
        // GEMM writes g_in (whole rows: col0 = 0 there).
        let fuse = l > 0;
        let relu_mask = (fuse && fused_relu).then(|| &saved.h[l - 1][..]);
        if width > 0 {
            gemm_mixed(
                be.bf16,
                n,
                layer.n_out,
                width,
                g,
                layer.n_out,
                false,
                &layer.w[col0..],
                layer.n_in,
                false,
                Epilogue {
                    bias: None,
                    residual: (fuse && layer.residual).then_some(&g[..]),
                    mask: relu_mask,
                    relu: false,
                },
                beta,
                target,
            );
        }
        if layer.residual && width > 0 && !fuse {
            par_rows(target, width, |i, r| {
                let gr = &g[i * layer.n_out + col0..(i + 1) * layer.n_out];
                r.iter_mut().zip(gr).for_each(|(a, &b)| *a += b);
            });
        }
        if let Some(mut gb) = gin {
            // ∂L/∂z_{l−1} = g_in ⊙ act'(z_{l−1}) (done in the GEMM's write for ReLU)
            if relu_mask.is_none() {
                let h = &saved.h[l - 1];
                let z = if w.act.needs_preactivation() {
                    &saved.z[l - 1]
                } else {
                    h
                };
                par_chunks(&mut gb, |o, c| {
                    act_grad_inplace(op, &z[o..o + c.len()], &h[o..o + c.len()], c)
                });
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Activation, MlpLayer};

    /// dx asked from column col0 on equals those columns of the whole dx (with a residual
    /// first layer, whose skip adds g's columns col0.. too); dW and db are unchanged.
    #[test]
    fn dx_from_a_first_column_is_those_columns_of_the_whole_gradient() {
        let be = CpuBackend::<f64>::new();
        let (n, w0, h) = (5, 6, 6);
        let val = |i: usize, s: f64| ((i as f64) * s).sin();
        let wts: Vec<Vec<f64>> = vec![
            (0..h * w0).map(|i| val(i, 0.37)).collect(),
            (0..2 * h).map(|i| val(i, 0.53)).collect(),
        ];
        let bs: Vec<Vec<f64>> = vec![
            (0..h).map(|i| val(i, 1.1)).collect(),
            (0..2).map(|i| val(i, 0.7)).collect(),
        ];
        let x: Vec<f64> = (0..n * w0).map(|i| val(i, 0.29)).collect();
        let dy: Vec<f64> = (0..n * 2).map(|i| val(i, 0.61)).collect();
        for residual in [false, true] {
            let weights = MlpWeights {
                layers: vec![
                    MlpLayer {
                        w: &wts[0],
                        b: &bs[0],
                        n_in: w0,
                        n_out: h,
                        residual,
                    },
                    MlpLayer {
                        w: &wts[1],
                        b: &bs[1],
                        n_in: h,
                        n_out: 2,
                        residual: false,
                    },
                ],
                act: Activation::Relu,
            };
            let (_, saved) = forward(&be, &weights, &x, n, true).unwrap();
            let saved = saved.unwrap();
            let grads = |col0: usize| {
                let mut g = vec![
                    (vec![0.0; h * w0], vec![0.0; h]),
                    (vec![0.0; 2 * h], vec![0.0; 2]),
                ];
                let mut dx = vec![0.0; n * (w0 - col0)];
                let mut dl: Vec<MlpLayerGrad<'_, CpuBackend<f64>>> = g
                    .iter_mut()
                    .map(|(dw, db)| MlpLayerGrad { dw, db })
                    .collect();
                backward(
                    &be,
                    &weights,
                    &x,
                    n,
                    &saved,
                    &dy,
                    Some(&mut dx),
                    col0,
                    &mut dl,
                )
                .unwrap();
                drop(dl);
                (dx, g)
            };
            let (full, g_full) = grads(0);
            assert!(full.iter().any(|v| v.abs() > 1e-3), "a gradient to compare");
            for col0 in [2, w0] {
                let (part, g_part) = grads(col0);
                for i in 0..n {
                    for j in col0..w0 {
                        let (a, b) = (part[i * (w0 - col0) + j - col0], full[i * w0 + j]);
                        assert!(
                            (a - b).abs() < 1e-12,
                            "res {residual} col0 {col0}: {a} vs {b}"
                        );
                    }
                }
                assert_eq!(g_part, g_full);
            }
            let mut bad = vec![0.0; n];
            let mut g = [
                (vec![0.0; h * w0], vec![0.0; h]),
                (vec![0.0; 2 * h], vec![0.0; 2]),
            ];
            let mut dl: Vec<MlpLayerGrad<'_, CpuBackend<f64>>> = g
                .iter_mut()
                .map(|(dw, db)| MlpLayerGrad { dw, db })
                .collect();
            let err = backward(
                &be,
                &weights,
                &x,
                n,
                &saved,
                &dy,
                Some(&mut bad),
                w0 + 1,
                &mut dl,
            );
            assert!(
                err.is_err(),
                "a first column past the input width is refused"
            );
        }
    }
}
