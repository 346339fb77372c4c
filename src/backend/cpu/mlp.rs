//! The fused coordinate-network forward/backward on the CPU.
//!
//! Per layer l with input h (N, n_in), weight W (n_out, n_in), bias b (n_out):
//!   z = h·Wᵀ + b (+ h if residual) ; h' = act(z) in place (skipped on the last layer) — one
//!   [`gemm_mixed`] call with its epilogue: in bf16 the bias, residual and ReLU are applied as the
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
use super::{check, mlp_rows, par_chunks, par_rows, unary_grad, unary_value, CpuBackend};
use crate::backend::{
    add_group_sums, grouped_dx_shape, Backend, MlpLayerGrad, MlpOutput, MlpSaved, MlpWeights,
    UnaryOp,
};
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

/// The forward; `allow_rows`: the row-chunked path may be taken where it applies (the backend
/// passes `true`; tests compare the two).
pub(super) fn forward<T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &MlpWeights<'_, CpuBackend<T>>,
    x: &Vec<T>,
    n: usize,
    save: bool,
    allow_rows: bool,
) -> Result<MlpOutput<CpuBackend<T>>> {
    check_weights(w)?;
    check("mlp_forward: x", n * w.layers[0].n_in, x.len())?;
    let op = w.act.unary();
    let keep_z = save && w.act.needs_preactivation();
    // ReLU is applied as the GEMM writes its output (ReLU never needs z kept).
    let fused_relu = matches!(op, UnaryOp::Relu);
    let last = w.layers.len() - 1;
    if allow_rows {
        if let Some(out) = forward_rows(be, w, x, n, save)? {
            return Ok(out);
        }
    }
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
            return Ok((
                z,
                save.then_some(MlpSaved {
                    h: hs,
                    z: zs,
                    packed: 0,
                }),
            ));
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

/// The layers as f32 views for [`mlp_rows`] and their chunk height, when the row-chunked path
/// applies: mixed precision, f32, ReLU, at least one hidden layer, the shapes of
/// [`mlp_rows::chunk_rows`].
fn rows_plan<'a, T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &'a MlpWeights<'_, CpuBackend<T>>,
    n: usize,
) -> Option<(Vec<mlp_rows::Layer<'a>>, usize)> {
    if !be.bf16 || !matches!(w.act.unary(), UnaryOp::Relu) || w.layers.len() < 2 {
        return None;
    }
    let layers = w
        .layers
        .iter()
        .map(|l| {
            Some(mlp_rows::Layer {
                w: T::f32s(&l.w[..l.n_out * l.n_in])?,
                b: T::f32s(&l.b[..l.n_out])?,
                n_in: l.n_in,
                n_out: l.n_out,
                residual: l.residual,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let rc = mlp_rows::chunk_rows(&layers, n)?;
    Some((layers, rc))
}

/// The forward in row chunks ([`mlp_rows::forward`]); `None` when that path does not apply.
fn forward_rows<T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &MlpWeights<'_, CpuBackend<T>>,
    x: &[T],
    n: usize,
    save: bool,
) -> Result<Option<MlpOutput<CpuBackend<T>>>> {
    let Some(plan) = rows_plan(be, w, n) else {
        return Ok(None);
    };
    let Some(x32) = T::f32s(x) else {
        return Ok(None);
    };
    forward_input(be, plan, mlp_rows::Input::Rows(x32), n, save)
}

/// The forward of a network whose input x (n × n_in) is generated chunk by chunk by `gen`
/// ([`mlp_rows::Input::Generated`]), where [`generated_plan`] applies; `None` (nothing done)
/// otherwise. Its backward is [`backward_generated`].
pub(super) fn forward_generated<T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &MlpWeights<'_, CpuBackend<T>>,
    gen: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
    n: usize,
    save: bool,
) -> Result<Option<MlpOutput<CpuBackend<T>>>> {
    check_weights(w)?;
    match generated_plan(be, w, n) {
        Some(plan) => forward_input(be, plan, mlp_rows::Input::Generated(gen), n, save),
        None => Ok(None),
    }
}

/// The row-chunked plan when it reads x only chunk by chunk (not [`mlp_rows::stores_g`], whose
/// dW products read x whole): where a generated input can be used, forward and backward.
fn generated_plan<'a, T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &'a MlpWeights<'_, CpuBackend<T>>,
    n: usize,
) -> Option<(Vec<mlp_rows::Layer<'a>>, usize)> {
    rows_plan(be, w, n).filter(|(layers, _)| !mlp_rows::stores_g(layers))
}

/// [`forward_rows`] on an input as [`mlp_rows::forward`] reads it.
fn forward_input<T: CpuFloat>(
    be: &CpuBackend<T>,
    (layers, rc): (Vec<mlp_rows::Layer<'_>>, usize),
    x: mlp_rows::Input<'_>,
    n: usize,
    save: bool,
) -> Result<Option<MlpOutput<CpuBackend<T>>>> {
    let (top, hidden) = layers.split_last().expect("rows_plan: at least two layers");
    // Saved activations only when asked; otherwise they stay in per-thread chunk buffers. The
    // first `packed` are kept as bf16 in the dW products' layout (in f32 buffers of half the
    // length, from the backend's pool).
    let packed = match save {
        true => mlp_rows::packed_saves(&layers),
        false => 0,
    };
    let mut hs: Vec<Vec<T>> = match save {
        true => hidden
            .iter()
            .enumerate()
            .map(|(l, h)| match l < packed {
                true => be.alloc(mlp_rows::packed_len(n, h).div_ceil(2)),
                false => be.alloc(n * h.n_out),
            })
            .collect::<Result<_>>()?,
        false => Vec::new(),
    };
    let mut y = be.alloc(n * top.n_out)?;
    let done = {
        let mut outs: Vec<mlp_rows::SavedMut<'_>> = hs
            .iter_mut()
            .enumerate()
            .filter_map(|(l, h)| {
                let h = T::f32s_mut(h)?;
                Some(match l < packed {
                    true => mlp_rows::SavedMut::Packed(bytemuck::cast_slice_mut(h)),
                    false => mlp_rows::SavedMut::F32(h),
                })
            })
            .collect();
        let outs = save.then_some(&mut outs[..]);
        match T::f32s_mut(&mut y) {
            Some(y32) => mlp_rows::forward(&layers, x, n, rc, outs, y32),
            None => false,
        }
    };
    if !done {
        hs.into_iter().for_each(|h| be.recycle(h));
        be.recycle(y);
        return Ok(None);
    }
    if save {
        return Ok(Some((
            y,
            Some(MlpSaved {
                h: hs,
                z: Vec::new(),
                packed,
            }),
        )));
    }
    hs.into_iter().for_each(|h| be.recycle(h));
    Ok(Some((y, None)))
}

/// The backward; `allow_rows` as in [`forward`].
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
    dx_group: usize,
    dlayers: &mut [MlpLayerGrad<'_, CpuBackend<T>>],
    allow_rows: bool,
) -> Result<()> {
    backward_checks(w, n, saved, dy, dx.as_deref(), dx_col0, dx_group, dlayers)?;
    check("mlp_backward: x", n * w.layers[0].n_in, x.len())?;
    let nl = w.layers.len();
    let n_in0 = w.layers[0].n_in;
    let dx_width = n_in0 - dx_col0;
    let op = w.act.unary();
    let fused_relu = matches!(op, UnaryOp::Relu);
    if let (true, Some(plan), Some(x32)) = (allow_rows, rows_plan(be, w, n), T::f32s(x)) {
        let x = mlp_rows::Input::Rows(x32);
        let dx = dx.as_deref_mut();
        if backward_rows(be, &plan, x, n, saved, dy, dlayers, dx, dx_col0, dx_group) {
            return Ok(());
        }
    }
    if let (Some(dx), true) = (dx.as_deref_mut(), dx_group > 1) {
        // The per-row gradient, then its sums over each group of rows.
        let mut full = be.zeros(n * dx_width)?;
        backward(
            be,
            w,
            x,
            n,
            saved,
            dy,
            Some(&mut full),
            dx_col0,
            1,
            dlayers,
            false,
        )?;
        add_group_sums(&full, dx_width, dx_group, dx);
        be.recycle(full);
        return Ok(());
    }
    if saved.packed > 0 {
        // (only the rows path writes packed activations, and it takes them back)
        return Err(Error::Shape {
            what: "mlp_backward: saved activations packed by the row-chunked forward".into(),
            expected: "the row-chunked backward (same backend, weights and N)".into(),
            got: "a backward that reads them as values".into(),
        });
    }
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

/// The backward of [`forward_generated`] (the same `gen`), as [`backward`] otherwise; `false`
/// (nothing written) where a generated input does not apply.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_generated<T: CpuFloat>(
    be: &CpuBackend<T>,
    w: &MlpWeights<'_, CpuBackend<T>>,
    gen: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
    n: usize,
    saved: &MlpSaved<CpuBackend<T>>,
    dy: &[T],
    dx: Option<&mut Vec<T>>,
    (dx_col0, dx_group): (usize, usize),
    dlayers: &mut [MlpLayerGrad<'_, CpuBackend<T>>],
) -> Result<bool> {
    backward_checks(w, n, saved, dy, dx.as_deref(), dx_col0, dx_group, dlayers)?;
    let Some(plan) = generated_plan(be, w, n) else {
        return Ok(false);
    };
    let x = mlp_rows::Input::Generated(gen);
    Ok(backward_rows(
        be, &plan, x, n, saved, dy, dlayers, dx, dx_col0, dx_group,
    ))
}

/// The shapes [`backward`] checks (but x's).
#[allow(clippy::too_many_arguments)]
fn backward_checks<T: CpuFloat>(
    w: &MlpWeights<'_, CpuBackend<T>>,
    n: usize,
    saved: &MlpSaved<CpuBackend<T>>,
    dy: &[T],
    dx: Option<&Vec<T>>,
    dx_col0: usize,
    dx_group: usize,
    dlayers: &[MlpLayerGrad<'_, CpuBackend<T>>],
) -> Result<()> {
    check_weights(w)?;
    let nl = w.layers.len();
    check("mlp_backward: dy", n * w.layers[nl - 1].n_out, dy.len())?;
    check("mlp_backward: saved activations", nl - 1, saved.h.len())?;
    if saved.packed > nl - 1 {
        return Err(Error::Shape {
            what: "mlp_backward: packed saved activations".into(),
            expected: format!("at most {}", nl - 1),
            got: saved.packed.to_string(),
        });
    }
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
    if let Some(dx) = dx {
        grouped_dx_shape(w, n, dx_col0, dx_group, dx.len())?;
    }
    Ok(())
}

/// [`mlp_rows::backward`] on the backend's buffers; `false` (nothing written) when a buffer is
/// not f32 or no bf16 engine is available.
#[allow(clippy::too_many_arguments)]
fn backward_rows<T: CpuFloat>(
    be: &CpuBackend<T>,
    plan: &(Vec<mlp_rows::Layer<'_>>, usize),
    x: mlp_rows::Input<'_>,
    n: usize,
    saved: &MlpSaved<CpuBackend<T>>,
    dy: &[T],
    dlayers: &mut [MlpLayerGrad<'_, CpuBackend<T>>],
    dx: Option<&mut Vec<T>>,
    dx_col0: usize,
    dx_group: usize,
) -> bool {
    let (layers, rc) = plan;
    let Some(dy32) = T::f32s(dy) else {
        return false;
    };
    let Some(hs) = saved
        .h
        .iter()
        .enumerate()
        .map(|(l, h)| {
            let h = T::f32s(h)?;
            Some(match l < saved.packed {
                true => mlp_rows::SavedRef::Packed(bytemuck::cast_slice(h)),
                false => mlp_rows::SavedRef::F32(h),
            })
        })
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let Some(mut grads) = dlayers
        .iter_mut()
        .map(|d| Some((T::f32s_mut(d.dw)?, T::f32s_mut(d.db)?)))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let dx = match dx {
        Some(d) => match T::f32s_mut(d) {
            Some(d) => Some(mlp_rows::Dx {
                buf: d,
                col0: dx_col0,
                group: dx_group,
            }),
            None => return false,
        },
        None => None,
    };
    // Wide layers keep each layer's g whole for one dW GEMM per layer (mlp_rows::stores_g).
    // (bf16 in f32 buffers of half the length, from the backend's pool)
    let mut gstore: Vec<Vec<T>> = Vec::new();
    if mlp_rows::stores_g(layers) {
        for l in &layers[..layers.len() - 1] {
            match be.alloc(mlp_rows::stored_g_len(n, l).div_ceil(2)) {
                Ok(g) => gstore.push(g),
                Err(_) => return false,
            }
        }
    }
    let done = {
        let mut gs: Vec<&mut [u16]> = gstore
            .iter_mut()
            .filter_map(|g| T::f32s_mut(g))
            .map(bytemuck::cast_slice_mut)
            .collect();
        let gs = (!gs.is_empty()).then_some(&mut gs[..]);
        mlp_rows::backward(layers, x, &hs, dy32, n, *rc, &mut grads, dx, gs)
    };
    gstore.into_iter().for_each(|g| be.recycle(g));
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::amx;
    use crate::backend::{Activation, MlpLayer};

    /// The row-chunked bf16 path against the whole-matrix one (same kernel: the forward and the
    /// saved activations bit for bit; dW, db and dx summed in another order) and both against
    /// f64 (bf16 operands): a residual hidden layer, a ragged last chunk, dx from a column.
    #[test]
    fn row_chunked_path_matches_whole_matrix_path_and_f64() {
        if !super::super::amx::available() {
            eprintln!("no bf16 engine (AMX or AVX-512 BF16) on this CPU: skipped");
            return;
        }
        let (n, w0, h, col0) = (2100, 40, 64, 30);
        // Pseudo-random in [−1, 1) (no coherent structure for the sums to build up).
        let val = |i: usize, s: f64| {
            let t = ((i as f64 + 1.0) * s).sin() * 43758.5453;
            2.0 * (t - t.floor()) - 1.0
        };
        // Three hidden layers, and two (the not-saving forward's buffers alternate).
        let three = [(w0, h, false), (h, h, true), (h, h, false), (h, 2, false)];
        let two = [(w0, h, false), (h, h, true), (h, 2, false)];
        // Wider than 256: each hidden layer's g is kept whole for one dW GEMM per layer.
        let wide = [(w0, 288, false), (288, 288, true), (288, 2, false)];
        // ... and with a width that is not a multiple of 16 (the stored g's ragged features).
        let ragged = [(w0, 264, false), (264, 264, true), (264, 2, false)];
        for dims in [&three[..], &two[..], &wide[..], &ragged[..]] {
            check_row_chunked(dims, n, col0, &val);
        }
    }

    fn check_row_chunked(
        dims: &[(usize, usize, bool)],
        n: usize,
        col0: usize,
        val: &dyn Fn(usize, f64) -> f64,
    ) {
        let w0 = dims[0].0;
        let wts: Vec<Vec<f64>> = dims
            .iter()
            .enumerate()
            .map(|(l, &(i, o, _))| {
                // PyTorch's default scale, U(±1/√n_in)
                let a = 1.0 / (i as f64).sqrt();
                (0..i * o)
                    .map(|j| a * val(j, 0.37 + 0.1 * l as f64))
                    .collect()
            })
            .collect();
        let bs: Vec<Vec<f64>> = dims
            .iter()
            .enumerate()
            .map(|(l, &(_, o, _))| (0..o).map(|j| 0.1 * val(j, 1.1 + l as f64)).collect())
            .collect();
        let x: Vec<f64> = (0..n * w0).map(|i| val(i, 0.29)).collect();
        let dy: Vec<f64> = (0..n * 2).map(|i| val(i, 0.61)).collect();
        /// y, saved activations (packed ones as their values), dx per row, (dW, db) per layer,
        /// dx summed over groups of [`GROUP`] rows (from its own backward call), and how many
        /// saved outputs were packed.
        type Run<T> = (
            Vec<T>,
            Vec<Vec<T>>,
            Vec<T>,
            Vec<(Vec<T>, Vec<T>)>,
            Vec<T>,
            usize,
        );
        /// Rows per group of the grouped dx: groups that straddle chunks (512 rows here) and the
        /// two backward tasks (2048 rows).
        const GROUP: usize = 350;
        /// The network (n_in, n_out, residual per layer), its weights, x, dy, N and dx's col0.
        type Case<'a> = (
            &'a [(usize, usize, bool)],
            &'a [Vec<f64>],
            &'a [Vec<f64>],
            &'a [f64],
            &'a [f64],
            usize,
            usize,
        );
        fn run<T: CpuFloat>(be: &CpuBackend<T>, case: Case<'_>, rows: bool) -> Run<T> {
            let (dims, wts, bs, x, dy, n, col0) = case;
            let cv = |v: &[f64]| v.iter().map(|&a| T::c(a)).collect::<Vec<T>>();
            let (wt, bt): (Vec<Vec<T>>, Vec<Vec<T>>) = (
                wts.iter().map(|w| cv(w)).collect(),
                bs.iter().map(|b| cv(b)).collect(),
            );
            let weights = MlpWeights {
                layers: dims
                    .iter()
                    .enumerate()
                    .map(|(l, &(n_in, n_out, residual))| MlpLayer {
                        w: &wt[l],
                        b: &bt[l],
                        n_in,
                        n_out,
                        residual,
                    })
                    .collect(),
                act: Activation::Relu,
            };
            if rows {
                assert!(
                    rows_plan(be, &weights, n).is_some(),
                    "the row-chunked path applies"
                );
            }
            let xs = cv(x);
            let (y, saved) = forward(be, &weights, &xs, n, true, rows).unwrap();
            let saved = saved.unwrap();
            let (y_only, none) = forward(be, &weights, &xs, n, false, rows).unwrap();
            assert!(none.is_none());
            assert!(
                y_only == y,
                "the forward without saving gives the same y bit for bit"
            );
            let w = dims[0].0 - col0;
            let dys = cv(dy);
            // One backward into fresh dW, db and a dx starting at 0.01·(i mod 7): dx per row
            // (group 1) or per group of rows.
            let grads = |group: usize| {
                let mut g: Vec<(Vec<T>, Vec<T>)> = dims
                    .iter()
                    .map(|&(i, o, _)| (vec![T::zero(); i * o], vec![T::zero(); o]))
                    .collect();
                let mut dx: Vec<T> = (0..n / group * w)
                    .map(|i| T::c(0.01 * (i % 7) as f64))
                    .collect();
                let mut dl: Vec<MlpLayerGrad<'_, CpuBackend<T>>> = g
                    .iter_mut()
                    .map(|(dw, db)| MlpLayerGrad { dw, db })
                    .collect();
                backward(
                    be,
                    &weights,
                    &xs,
                    n,
                    &saved,
                    &dys,
                    Some(&mut dx),
                    col0,
                    group,
                    &mut dl,
                    rows,
                )
                .unwrap();
                drop(dl);
                (dx, g)
            };
            let (dx, g) = grads(1);
            let (dxg, _) = grads(GROUP);
            // Packed saved outputs as values (each the bf16 rounding of the output), chunk by
            // chunk.
            let hs = saved
                .h
                .iter()
                .enumerate()
                .map(|(l, h)| {
                    if l >= saved.packed {
                        return h.clone();
                    }
                    let rc = rows_plan(be, &weights, n).expect("packed: rows path").1;
                    let no = dims[l].1;
                    let p: &[u16] = bytemuck::cast_slice(T::f32s(h).expect("f32"));
                    let mut v = vec![0f32; n * no];
                    for (c, vc) in v.chunks_mut(rc * no).enumerate() {
                        let at = c * amx::rows_len(rc, no);
                        amx::unpack_rows(&p[at..], vc.len() / no, no, vc);
                    }
                    v.iter().map(|&a| T::c(a as f64)).collect()
                })
                .collect();
            (y, hs, dx, g, dxg, saved.packed)
        }
        let mixed = CpuBackend::<f32>::new().with_bf16_gemm(true);
        let case: Case<'_> = (dims, &wts, &bs, &x, &dy, n, col0);
        let chunked = run(&mixed, case, true);
        let whole = run(&mixed, case, false);
        let exact = run(&CpuBackend::<f64>::new(), case, false);
        assert_eq!(chunked.0, whole.0, "y bit for bit");
        // Hidden layers up to 256 wide save all but the last output packed (bf16), the others
        // f32: bit for bit, or the bf16 rounding of the whole-matrix path's value.
        let nh = dims.len() - 1;
        let narrow = dims[..nh].iter().all(|&(i, o, _)| i.max(o) <= 256);
        assert_eq!(chunked.5, if narrow { nh - 1 } else { 0 }, "packed saves");
        assert_eq!(whole.5, 0, "the whole-matrix path saves f32");
        for (l, (c, w)) in chunked.1.iter().zip(&whole.1).enumerate() {
            match l < chunked.5 {
                true => {
                    let r: Vec<f32> = w
                        .iter()
                        .map(|&v| amx::bf16_value(amx::bf16_bits(v)))
                        .collect();
                    assert!(*c == r, "saved h{l}: the bf16 of the value, bit for bit");
                }
                false => assert!(c == w, "saved h{l} bit for bit"),
            }
        }
        let close = |what: &str, a: &[f32], b: &[f32], rel: f64| {
            let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
            assert!(scale > 1e-3, "{what}: a gradient to compare");
            for (i, (&p, &q)) in a.iter().zip(b).enumerate() {
                assert!(
                    ((p - q) as f64).abs() <= rel * scale,
                    "{what}[{i}]: {p} vs {q} (scale {scale})"
                );
            }
        };
        let to32 = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        close("dx", &chunked.2, &whole.2, 1e-5);
        // Against f64 a coarse check (a lost chunk or layer is off by O(1)): bf16 flips some
        // ReLU masks near 0, and the gradients are sums over rows that mostly cancel, so
        // measured errors reach 6% of the largest dW/db and 13% of the largest dx here.
        close("y vs f64", &chunked.0, &to32(&exact.0), 1e-2);
        close("dx vs f64", &chunked.2, &to32(&exact.2), 0.25);
        // Grouped: the chunked path sums g per group before W_0, the whole-matrix path sums the
        // per-row dx; in f64 the latter is the per-row dx's group sums (plus dx's start values).
        let w = dims[0].0 - col0;
        let mut sums: Vec<f64> = (0..n / GROUP * w).map(|i| 0.01 * (i % 7) as f64).collect();
        for (i, v) in exact.2.iter().enumerate() {
            let (r, j) = (i / w, i % w);
            sums[r / GROUP * w + j] += v - 0.01 * (i % 7) as f64;
        }
        for (a, b) in exact.4.iter().zip(&sums) {
            assert!((a - b).abs() < 1e-9, "f64 grouped dx: {a} vs {b}");
        }
        close("grouped dx", &chunked.4, &whole.4, 1e-5);
        close("grouped dx vs f64", &chunked.4, &to32(&exact.4), 0.25);
        // With g kept whole, a hidden layer's dW is the whole-matrix path's GEMM on the same
        // operands: bit for bit.
        if dims[..nh].iter().any(|&(i, o, _)| i.max(o) > 256) {
            for l in 0..nh {
                assert!(chunked.3[l].0 == whole.3[l].0, "dW{l} bit for bit");
            }
        }
        for l in 0..dims.len() {
            close(&format!("dW{l}"), &chunked.3[l].0, &whole.3[l].0, 1e-5);
            close(&format!("db{l}"), &chunked.3[l].1, &whole.3[l].1, 1e-5);
            close(
                &format!("dW{l} vs f64"),
                &chunked.3[l].0,
                &to32(&exact.3[l].0),
                0.1,
            );
            close(
                &format!("db{l} vs f64"),
                &chunked.3[l].1,
                &to32(&exact.3[l].1),
                0.1,
            );
        }
    }

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
            let (_, saved) = forward(&be, &weights, &x, n, true, true).unwrap();
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
                    1,
                    &mut dl,
                    true,
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
                1,
                &mut dl,
                true,
            );
            assert!(
                err.is_err(),
                "a first column past the input width is refused"
            );
        }
    }
}
