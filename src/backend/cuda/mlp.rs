//! The fused coordinate network on the device, and the decoder on rotated lattices.
//!
//! Same math as the CPU twin (`backend/cpu/mlp.rs`), each layer one fused GEMM
//! (`kernels/gemm.cu`) at the backend's [`super::Precision`]:
//! - forward, layer l: z = h·Wᵀ + b (+ h if residual), h' = act(z) (not on the last layer), z
//!   stored when the activation's derivative needs it; the first layer of the decoder may read
//!   its input as the positional encoding of the rotated coordinates (`gemm_pe_*`) instead of a
//!   materialized feature matrix;
//! - backward, layer l with g = ∂L/∂z: dW += gᵀ·h (split-K over the rows, then a deterministic
//!   sum of the splits), db += Σ_rows g, g_prev = (g·W (+ g)) ⊙ act'(z_prev) in one GEMM whose
//!   epilogue applies the residual and the activation derivative.
//!
//! The decoder (`decode_rotated_lattices`, see `backend/decode.rs` for the math) stays on the
//! device: `slice_coords_f32` → (PE fused into layer 0, or `fourier_features_f32` when the
//! features must be saved) → MLP → `hermitian_assemble_f32`; its backward runs the assembly
//! backward, the MLP backward with only the latent columns of ∂L/∂features computed, and a
//! per-image row sum into dz.

use super::backend::{fits, unary_code, AOperand, CudaBackend, FusedGemm, ACT_NONE};
use crate::backend::cpu::check;
use crate::backend::decode::Domain;
use crate::backend::{
    Backend, DecodeInput, DecodeOutput, DecodeSaved, DecodeSpec, MlpLayerGrad, MlpOutput, MlpSaved,
    MlpWeights,
};
use crate::{Error, Result};
use cudarc::driver::CudaSlice;

/// The input of the first layer.
pub(super) enum Input<'a> {
    /// A feature matrix (n, n_in).
    Features(&'a CudaSlice<f32>),
    /// The positional encoding of coords (n, c) with frequencies (nfreq, 3) in `groups` groups,
    /// computed inside the first layer's GEMM.
    Pe {
        coords: &'a CudaSlice<f32>,
        c: usize,
        freqs: &'a CudaSlice<f32>,
        nfreq: usize,
        groups: usize,
    },
}

/// Where the backward pass writes ∂L/∂x: columns col_off..col_off+width of x's (n, n_in) layout
/// into buf (n, width), as buf = g_in + beta·buf.
pub(super) struct DxTarget<'a> {
    pub buf: &'a mut CudaSlice<f32>,
    pub col_off: usize,
    pub beta: f32,
}

fn check_weights(w: &MlpWeights<'_, CudaBackend>) -> Result<()> {
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

/// The forward pass: y (n, n_out of the last layer) and, with `save`, the activations.
pub(super) fn forward(
    be: &CudaBackend,
    w: &MlpWeights<'_, CudaBackend>,
    x: Input<'_>,
    n: usize,
    save: bool,
) -> Result<MlpOutput<CudaBackend>> {
    check_weights(w)?;
    let n_in0 = w.layers[0].n_in;
    match &x {
        Input::Features(f) => check("mlp_forward: x", n * n_in0, f.len())?,
        Input::Pe { .. } if w.layers[0].residual => {
            return Err(Error::invalid(
                "mlp_forward: a residual first layer needs materialized features",
            ))
        }
        Input::Pe { .. } => {}
    }
    let (act, act_alpha) = unary_code(w.act.unary());
    let keep_z = save && w.act.needs_preactivation();
    let last = w.layers.len() - 1;
    let mut hs: Vec<CudaSlice<f32>> = Vec::with_capacity(last);
    let mut zs: Vec<CudaSlice<f32>> = Vec::new();
    let mut prev: Option<CudaSlice<f32>> = None;
    for (l, layer) in w.layers.iter().enumerate() {
        let mut out = be.alloc(n * layer.n_out)?;
        let mut zbuf = if keep_z && l < last {
            Some(be.alloc(n * layer.n_out)?)
        } else {
            None
        };
        let h: Option<&CudaSlice<f32>> = match (l, &x, &prev) {
            (0, Input::Features(f), _) => Some(f),
            (0, Input::Pe { .. }, _) => None,
            (_, _, Some(p)) => Some(p),
            (_, _, None) => Some(&hs[l - 1]),
        };
        let a = match (h, &x) {
            (Some(h), _) => AOperand::Mem {
                buf: h.as_view(),
                ld: layer.n_in,
                trans: false,
            },
            (
                None,
                Input::Pe {
                    coords,
                    c,
                    freqs,
                    nfreq,
                    groups,
                },
            ) => AOperand::Pe {
                coords,
                c: *c,
                freqs,
                nfreq: *nfreq,
                groups: *groups,
            },
            (None, Input::Features(_)) => unreachable!("features always give an input matrix"),
        };
        let g = FusedGemm {
            m: n,
            n: layer.n_out,
            k: layer.n_in,
            a,
            b: layer.w.as_view(),
            ldb: layer.n_in,
            trans_b: true,
            alpha: 1.0,
            beta: 0.0,
            ldc: layer.n_out,
            k_split: 0,
            bias: Some(layer.b),
            res: match (layer.residual, h) {
                (true, Some(h)) => Some((h.as_view(), layer.n_in)),
                _ => None,
            },
            act: if l == last { ACT_NONE } else { act },
            act_alpha,
            zsave: zbuf.as_mut(),
            dact: None,
        };
        be.fused_gemm(g, &mut out.as_view_mut())?;
        if l == last {
            return Ok((
                out,
                save.then_some(MlpSaved {
                    h: hs,
                    z: zs,
                    packed: 0,
                }),
            ));
        }
        if save {
            hs.push(out);
            zs.extend(zbuf);
        } else {
            prev = Some(out);
        }
    }
    unreachable!("the loop returns at the last layer")
}

/// dW (n_out, n_in) += gᵀ (n_out, n)·h (n, n_in): split over the n rows so that the grid fills
/// the device, the splits summed in a second pass (deterministic, unlike atomics).
fn weight_grad(
    be: &CudaBackend,
    g: &CudaSlice<f32>,
    h: &CudaSlice<f32>,
    n: usize,
    n_out: usize,
    n_in: usize,
    dw: &mut CudaSlice<f32>,
) -> Result<()> {
    let tiles = n_out.div_ceil(64) * n_in.div_ceil(64);
    let want = (2 * be.inner.sm_count).div_ceil(tiles.max(1));
    let splits = want.min(n.div_ceil(256)).clamp(1, 256);
    let k_split = n.div_ceil(splits).next_multiple_of(16);
    let splits = n.div_ceil(k_split.max(1)).max(1);
    let mut gm = FusedGemm::plain(
        n_out,
        n_in,
        n,
        g.as_view(),
        n_out,
        true,
        h.as_view(),
        n_in,
        false,
        1.0,
        1.0,
        n_in,
    );
    if splits == 1 {
        return be.fused_gemm(gm, &mut dw.as_view_mut());
    }
    gm.beta = 0.0;
    gm.k_split = k_split;
    let len = n_out * n_in;
    let mut partials = be.alloc(splits * len)?;
    be.fused_gemm(gm, &mut partials.as_view_mut())?;
    be.reduce_splits(&partials, splits, len, dw)
}

/// The backward pass: accumulates dW, db of every layer and, when given, writes the requested
/// columns of ∂L/∂x.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    be: &CudaBackend,
    w: &MlpWeights<'_, CudaBackend>,
    x: &CudaSlice<f32>,
    n: usize,
    saved: &MlpSaved<CudaBackend>,
    dy: &CudaSlice<f32>,
    mut dx: Option<DxTarget<'_>>,
    dlayers: &mut [MlpLayerGrad<'_, CudaBackend>],
) -> Result<()> {
    check_weights(w)?;
    let nl = w.layers.len();
    let n_in0 = w.layers[0].n_in;
    check("mlp_backward: x", n * n_in0, x.len())?;
    check("mlp_backward: dy", n * w.layers[nl - 1].n_out, dy.len())?;
    check("mlp_backward: saved activations", nl - 1, saved.h.len())?;
    check("mlp_backward: layer gradients", nl, dlayers.len())?;
    let needs_z = w.act.needs_preactivation();
    if needs_z {
        check("mlp_backward: saved pre-activations", nl - 1, saved.z.len())?;
    }
    for l in 1..nl {
        check(
            &format!("mlp_backward: saved activation {}", l - 1),
            n * w.layers[l - 1].n_out,
            saved.h[l - 1].len(),
        )?;
        if needs_z {
            check(
                &format!("mlp_backward: saved pre-activation {}", l - 1),
                n * w.layers[l - 1].n_out,
                saved.z[l - 1].len(),
            )?;
        }
    }
    if let Some(t) = &dx {
        let width = t.buf.len().checked_div(n).unwrap_or(0);
        check("mlp_backward: dx", n * width, t.buf.len())?;
        if t.col_off + width > n_in0 {
            return Err(Error::Shape {
                what: "mlp_backward: dx columns".into(),
                expected: format!("within the {n_in0} input columns"),
                got: format!("{}+{width}", t.col_off),
            });
        }
    }
    let (act, act_alpha) = unary_code(w.act.unary());
    // g = ∂L/∂z of the current layer: dy, then buffers owned here.
    let mut owned: Option<CudaSlice<f32>> = None;
    for l in (0..nl).rev() {
        let layer = &w.layers[l];
        let g: &CudaSlice<f32> = owned.as_ref().unwrap_or(dy);
        let h_in: &CudaSlice<f32> = if l == 0 { x } else { &saved.h[l - 1] };
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
        weight_grad(be, g, h_in, n, layer.n_out, layer.n_in, dl.dw)?;
        be.sum_rows(g, layer.n_out, 1.0, dl.db, true)?;
        if l > 0 {
            // ∂L/∂z_{l−1} = (g·W (+ g)) ⊙ act'(z_{l−1})
            let hp = &saved.h[l - 1];
            let zp = if needs_z { &saved.z[l - 1] } else { hp };
            let mut gin = be.alloc(n * layer.n_in)?;
            let gm = FusedGemm {
                res: layer.residual.then(|| (g.as_view(), layer.n_out)),
                dact: Some((act, zp.as_view(), hp.as_view(), layer.n_in)),
                act_alpha,
                ..FusedGemm::plain(
                    n,
                    layer.n_in,
                    layer.n_out,
                    g.as_view(),
                    layer.n_out,
                    false,
                    layer.w.as_view(),
                    layer.n_in,
                    false,
                    1.0,
                    0.0,
                    layer.n_in,
                )
            };
            be.fused_gemm(gm, &mut gin.as_view_mut())?;
            owned = Some(gin);
        } else if let Some(t) = dx.take() {
            // Columns col_off.. of ∂L/∂x = g·W (+ g): B and the residual start at col_off.
            let width = t.buf.len().checked_div(n).unwrap_or(0);
            if width == 0 {
                break;
            }
            let gm = FusedGemm {
                res: layer.residual.then(|| (g.slice(t.col_off..), layer.n_out)),
                ..FusedGemm::plain(
                    n,
                    width,
                    layer.n_out,
                    g.as_view(),
                    layer.n_out,
                    false,
                    layer.w.slice(t.col_off..),
                    layer.n_in,
                    false,
                    1.0,
                    t.beta,
                    width,
                )
            };
            be.fused_gemm(gm, &mut t.buf.as_view_mut())?;
        }
    }
    Ok(())
}

/// Checks a decoder call like the CPU twin; returns the frequency count m.
fn decode_check(
    s: &DecodeSpec<'_, CudaBackend>,
    rot: &CudaSlice<f32>,
    z: Option<&CudaSlice<f32>>,
    nb: usize,
) -> Result<usize> {
    let m = s.freqs.len() / 3;
    let bad = |what: &str, expected: String, got: usize| Error::Shape {
        what: format!("decode_rotated_lattices: {what}"),
        expected,
        got: got.to_string(),
    };
    if s.coords.len() != 3 * s.n_points {
        return Err(bad(
            "coords",
            format!("{} values (P, 3)", 3 * s.n_points),
            s.coords.len(),
        ));
    }
    if rot.len() != 9 * nb {
        return Err(bad(
            "rot",
            format!("{} values (B, 3, 3)", 9 * nb),
            rot.len(),
        ));
    }
    let zl = z.map(|z| z.len()).unwrap_or(0);
    if zl != nb * s.zdim {
        return Err(bad("z", format!("{} values (B, zdim)", nb * s.zdim), zl));
    }
    if m == 0 {
        return Err(bad("freqs", "at least one frequency".into(), 0));
    }
    let (first, last) = match (s.mlp.layers.first(), s.mlp.layers.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(bad("mlp", "at least one layer".into(), 0)),
    };
    if first.n_in != 2 * m + s.zdim {
        return Err(bad("mlp input", format!("{}", 2 * m + s.zdim), first.n_in));
    }
    if last.n_out != s.domain.out_dim() {
        return Err(bad(
            "mlp output",
            format!("{}", s.domain.out_dim()),
            last.n_out,
        ));
    }
    Ok(m)
}

/// `decode_rotated_lattices` on the device: y (nb, P).
pub(super) fn decode_forward(
    be: &CudaBackend,
    s: &DecodeSpec<'_, CudaBackend>,
    rot: &CudaSlice<f32>,
    z: Option<&CudaSlice<f32>>,
    nb: usize,
    save: bool,
) -> Result<DecodeOutput<CudaBackend>> {
    let m = decode_check(s, rot, z, nb)?;
    let p = s.n_points;
    let rows = nb * s.domain.n_eval(p);
    let cin = 3 + s.zdim;
    let (x, sign) = be.slice_coords(s.coords, rot, z, nb, p, s.zdim, s.domain)?;
    let (y, saved_mlp, feats) = if !save && !s.mlp.layers[0].residual {
        let pe = Input::Pe {
            coords: &x,
            c: cin,
            freqs: s.freqs,
            nfreq: m,
            groups: s.groups,
        };
        let (y, _) = forward(be, &s.mlp, pe, rows, false)?;
        (y, None, None)
    } else {
        let mut feats = be.alloc(rows * (2 * m + s.zdim))?;
        be.fourier_features(&x, cin, s.freqs, s.groups, &mut feats)?;
        let (y, sv) = forward(be, &s.mlp, Input::Features(&feats), rows, save)?;
        (y, sv, Some(feats))
    };
    let out = match s.domain {
        Domain::Hartley => y,
        Domain::Fourier => be.hermitian_assemble(&y, &sign, nb, p)?,
    };
    let saved = match (saved_mlp, feats) {
        (Some(mlp), Some(feats)) => Some(DecodeSaved {
            input: DecodeInput::Features(feats),
            sign,
            mlp,
        }),
        _ => None,
    };
    Ok((out, saved))
}

/// `decode_rotated_lattices_backward` on the device.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_backward(
    be: &CudaBackend,
    s: &DecodeSpec<'_, CudaBackend>,
    rot: &CudaSlice<f32>,
    z: Option<&CudaSlice<f32>>,
    nb: usize,
    saved: &DecodeSaved<CudaBackend>,
    dy: &CudaSlice<f32>,
    dz: Option<&mut CudaSlice<f32>>,
    dlayers: &mut [MlpLayerGrad<'_, CudaBackend>],
) -> Result<()> {
    let m = decode_check(s, rot, z, nb)?;
    let p = s.n_points;
    let ne = s.domain.n_eval(p);
    if dy.len() != nb * p {
        return Err(Error::Shape {
            what: "decode_rotated_lattices_backward: dy".into(),
            expected: format!("{} values (B, P)", nb * p),
            got: dy.len().to_string(),
        });
    }
    check(
        "decode_rotated_lattices_backward: sign",
        nb * ne,
        saved.sign.len(),
    )?;
    let feats = saved.input.features()?;
    fits(
        "decode_rotated_lattices_backward: feats",
        feats.len(),
        nb * ne,
        2 * m + s.zdim,
        2 * m + s.zdim,
    )?;
    let dtop_owned;
    let dtop: &CudaSlice<f32> = match s.domain {
        Domain::Hartley => dy,
        Domain::Fourier => {
            dtop_owned = be.hermitian_assemble_backward(dy, &saved.sign, nb, p)?;
            &dtop_owned
        }
    };
    let mut dfz = match (&dz, s.zdim) {
        (Some(_), zd) if zd > 0 => Some(be.alloc(nb * ne * zd)?),
        _ => None,
    };
    let target = dfz.as_mut().map(|buf| DxTarget {
        buf,
        col_off: 2 * m,
        beta: 0.0,
    });
    backward(
        be,
        &s.mlp,
        feats,
        nb * ne,
        &saved.mlp,
        dtop,
        target,
        dlayers,
    )?;
    if let (Some(df), Some(dz)) = (dfz, dz) {
        // z_b is copied into every evaluated row of image b: dz_b += Σ_i ∂L/∂feats[b, i, 2m..].
        check(
            "decode_rotated_lattices_backward: dz",
            nb * s.zdim,
            dz.len(),
        )?;
        be.sum_rows_batched(&df.as_view(), ne, s.zdim, s.zdim, 0, nb, 1.0, dz, true)?;
    }
    Ok(())
}
