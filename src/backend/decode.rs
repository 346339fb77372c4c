//! `decode_rotated_lattices`: evaluate a coordinate decoder on a batch of rotated central
//! slices, the hot path of `train-nn` / `train-vae` (cryoDRGN `FTPositionalDecoder.forward` and
//! `PositionalDecoder.forward` applied to `lattice.coords[mask] @ rot`).
//!
//! For image b with rotation R_b (3×3, row-major) and latent z_b (zdim), the masked lattice
//! points c_i (P, 3) are rotated as row vectors, x_bi = c_i·R_b, then
//!
//! - `Hartley`: y_bi = MLP(PE(x_bi) ++ z_b) (one output).
//! - `Fourier`: only the first cc = ⌈P/2⌉ points are evaluated (the rest are their antipodes,
//!   see [`crate::fourier::lattice::HermitianHalf`]). Points with x_z > 0 are negated and the
//!   imaginary output conjugated (s_bi = −1), so the network only sees z ≤ 0:
//!   (re, im) = MLP(PE(s·x) ++ z), im ← s·im; y_bi = re − im for i < cc and
//!   y_{b, cc+j} = re + im of point c − 1 − j (c = ⌊P/2⌋).
//!
//! The backward pass propagates dy through the assembly and the MLP into the MLP weights and
//! z; the lattice and the rotations are treated as constants (no pose refinement).
//!
//! This module holds the composed implementation (host-side rotation and assembly around the
//! `fourier_features` and `mlp_forward` primitives), which is the default body of
//! [`Backend::decode_rotated_lattices`]; a device backend overrides it with one fused kernel,
//! and the CPU backend's row-chunked network encodes each chunk's rows as it reads them
//! ([`forward_with`], [`DecodeInput::Coords`]).

use super::{Backend, Float, MlpLayerGrad, MlpOutput, MlpSaved, MlpWeights};
use crate::{Error, Result};

/// The output domain of a coordinate decoder (cryoDRGN `--domain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Two outputs (Re F, Im F) on the half lattice, Hermitian symmetry for the other half.
    Fourier,
    /// One output, the Hartley value, at every point.
    Hartley,
}

impl Domain {
    /// Width of the MLP output: 2 for `Fourier`, 1 for `Hartley`.
    pub fn out_dim(self) -> usize {
        match self {
            Domain::Fourier => 2,
            Domain::Hartley => 1,
        }
    }

    /// The reference's name (`fourier`, `hartley`).
    pub fn name(self) -> &'static str {
        match self {
            Domain::Fourier => "fourier",
            Domain::Hartley => "hartley",
        }
    }

    /// Number of points evaluated out of `n_points` (⌈P/2⌉ for `Fourier`).
    pub fn n_eval(self, n_points: usize) -> usize {
        match self {
            Domain::Fourier => n_points.div_ceil(2),
            Domain::Hartley => n_points,
        }
    }
}

/// Everything but the per-batch inputs of [`Backend::decode_rotated_lattices`].
pub struct DecodeSpec<'a, B: Backend> {
    /// Masked lattice coordinates (P, 3), centrally symmetric, in lattice order.
    pub coords: &'a B::Buf,
    /// P.
    pub n_points: usize,
    /// Positional-encoding frequencies (m, 3), m ≥ 1 (see [`Backend::fourier_features`]).
    pub freqs: &'a B::Buf,
    /// Row groups of `freqs`.
    pub groups: usize,
    /// Latent width (0 for a homogeneous decoder).
    pub zdim: usize,
    pub domain: Domain,
    /// The network, input width 2m + zdim, output width `domain.out_dim()`.
    pub mlp: MlpWeights<'a, B>,
}

/// What the forward pass keeps for the backward pass: the MLP input ([`DecodeInput`]), the
/// conjugation signs (B·n_eval) and the MLP activations.
pub struct DecodeSaved<B: Backend> {
    pub input: DecodeInput<B>,
    pub sign: B::Buf,
    pub mlp: MlpSaved<B>,
}

/// The MLP input as the forward kept it.
pub enum DecodeInput<B: Backend> {
    /// The encoded features (B·n_eval, 2m + zdim), `mlp_forward`'s input.
    Features(B::Buf),
    /// The rotated (sign-flipped) coordinates and latents they are encoded from
    /// (B·n_eval, 3 + zdim): kept by a backend whose network encodes its rows as it reads them
    /// ([`forward_with`]), and read back by its backward ([`backward_with`]).
    Coords(B::Buf),
}

impl<B: Backend> DecodeInput<B> {
    /// The encoded features; an error when the forward kept coordinates (a fused forward,
    /// whose backward is the only one that reads them).
    pub fn features(&self) -> Result<&B::Buf> {
        match self {
            DecodeInput::Features(f) => Ok(f),
            DecodeInput::Coords(_) => Err(Error::Shape {
                what: "decode_rotated_lattices_backward: saved input".into(),
                expected: "the encoded features".into(),
                got: "coordinates, kept by a forward that encodes them as it goes".into(),
            }),
        }
    }

    /// The buffer, whichever it is.
    pub fn into_buf(self) -> B::Buf {
        match self {
            DecodeInput::Features(b) | DecodeInput::Coords(b) => b,
        }
    }
}

/// Output of [`Backend::decode_rotated_lattices`]: y (B, P) and, when asked, the saved state.
pub type DecodeOutput<B> = (<B as Backend>::Buf, Option<DecodeSaved<B>>);

fn check<B: Backend>(
    be: &B,
    s: &DecodeSpec<'_, B>,
    rot: &B::Buf,
    z: Option<&B::Buf>,
    nb: usize,
) -> Result<usize> {
    let m = be.len(s.freqs) / 3;
    let bad = |what: &str, expected: String, got: usize| Error::Shape {
        what: format!("decode_rotated_lattices: {what}"),
        expected,
        got: got.to_string(),
    };
    if be.len(s.coords) != 3 * s.n_points {
        return Err(bad(
            "coords",
            format!("{} values (P, 3)", 3 * s.n_points),
            be.len(s.coords),
        ));
    }
    if be.len(rot) != 9 * nb {
        return Err(bad(
            "rot",
            format!("{} values (B, 3, 3)", 9 * nb),
            be.len(rot),
        ));
    }
    let zl = z.map(|z| be.len(z)).unwrap_or(0);
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

/// The composed forward pass (see the module doc); y is (nb, P).
pub fn forward_composed<B: Backend>(
    be: &B,
    s: &DecodeSpec<'_, B>,
    rot: &B::Buf,
    z: Option<&B::Buf>,
    nb: usize,
    save: bool,
) -> Result<DecodeOutput<B>> {
    forward_with(be, s, rot, z, nb, save, |_, _| Ok(None))
}

/// The composed forward pass, the network's forward first offered to `fused(x, n)`: x the n
/// rotated (sign-flipped) coordinates and latents (n × (3 + zdim)), for a backend that encodes
/// them as its network reads them; it returns the network's output and saved state as
/// `mlp_forward` would on their features, or `None` (nothing done) to encode them whole and
/// call `mlp_forward`. Its backward is [`backward_with`].
pub fn forward_with<B: Backend>(
    be: &B,
    s: &DecodeSpec<'_, B>,
    rot: &B::Buf,
    z: Option<&B::Buf>,
    nb: usize,
    save: bool,
    fused: impl FnOnce(&B::Buf, usize) -> Result<Option<MlpOutput<B>>>,
) -> Result<DecodeOutput<B>> {
    let m = check(be, s, rot, z, nb)?;
    let p = s.n_points;
    let ne = s.domain.n_eval(p);
    let cin = 3 + s.zdim;
    let coords = be.to_vec(s.coords)?;
    let rot = be.to_vec(rot)?;
    let zh = match z {
        Some(z) => be.to_vec(z)?,
        None => Vec::new(),
    };
    let zero = B::Elem::c(0.0);
    let one = B::Elem::c(1.0);
    let mut x = vec![zero; nb * ne * cin];
    let mut sign = vec![one; nb * ne];
    for b in 0..nb {
        let r = &rot[9 * b..9 * b + 9];
        for i in 0..ne {
            let c = &coords[3 * i..3 * i + 3];
            let row = &mut x[(b * ne + i) * cin..(b * ne + i + 1) * cin];
            for j in 0..3 {
                row[j] = c[0] * r[j] + c[1] * r[3 + j] + c[2] * r[6 + j];
            }
            // cryoDRGN evaluates only z ≤ 0: negate x_bi (not z_b) and conjugate afterwards.
            if s.domain == Domain::Fourier && row[2] > zero {
                row[..3].iter_mut().for_each(|v| *v = -*v);
                sign[b * ne + i] = -one;
            }
            row[3..].copy_from_slice(&zh[b * s.zdim..(b + 1) * s.zdim]);
        }
    }
    let xb = be.upload(&x)?;
    let (y, saved, input) = match fused(&xb, nb * ne)? {
        Some((y, saved)) => (y, saved, DecodeInput::Coords(xb)),
        None => {
            let mut feats = be.alloc(nb * ne * (2 * m + s.zdim))?;
            be.fourier_features(&xb, cin, s.freqs, s.groups, &mut feats)?;
            be.recycle(xb);
            let (y, saved) = be.mlp_forward(&s.mlp, &feats, nb * ne, save)?;
            (y, saved, DecodeInput::Features(feats))
        }
    };
    let yh = be.to_vec(&y)?;
    be.recycle(y);
    let out = match s.domain {
        Domain::Hartley => yh,
        Domain::Fourier => {
            let (c, cc) = (p / 2, ne);
            let mut out = vec![zero; nb * p];
            for b in 0..nb {
                let top = |i: usize| {
                    let k = b * ne + i;
                    (yh[2 * k], yh[2 * k + 1] * sign[k])
                };
                let o = &mut out[b * p..(b + 1) * p];
                for (i, v) in o[..cc].iter_mut().enumerate() {
                    let (re, im) = top(i);
                    *v = re - im;
                }
                for (j, v) in o[cc..].iter_mut().enumerate() {
                    let (re, im) = top(c - 1 - j);
                    *v = re + im;
                }
            }
            out
        }
    };
    let saved = match saved {
        Some(mlp) => Some(DecodeSaved {
            input,
            sign: be.upload(&sign)?,
            mlp,
        }),
        None => {
            be.recycle(input.into_buf());
            None
        }
    };
    Ok((be.upload(&out)?, saved))
}

/// The composed backward pass: accumulates dz (nb, zdim) when given and dW, db of every layer.
#[allow(clippy::too_many_arguments)]
pub fn backward_composed<B: Backend>(
    be: &B,
    s: &DecodeSpec<'_, B>,
    rot: &B::Buf,
    z: Option<&B::Buf>,
    nb: usize,
    saved: &DecodeSaved<B>,
    dy: &B::Buf,
    dz: Option<&mut B::Buf>,
    dlayers: &mut [MlpLayerGrad<'_, B>],
) -> Result<()> {
    let no_fused = |_: FusedBackward<'_, '_, B>| Ok(false);
    backward_with(be, s, rot, z, nb, saved, dy, dz, dlayers, no_fused)
}

/// What [`backward_with`] hands a fused backward: the saved coordinates x (n rows), n, the
/// saved network state, the network's output gradient, where z's gradient goes (dz, the
/// latent's first column and the rows per image) and the layer gradients.
pub type FusedBackward<'a, 'g, B> = (
    &'a <B as Backend>::Buf,
    usize,
    &'a MlpSaved<B>,
    &'a <B as Backend>::Buf,
    Option<(&'a mut <B as Backend>::Buf, usize, usize)>,
    &'a mut [MlpLayerGrad<'g, B>],
);

/// [`backward_composed`] after [`forward_with`]: when the forward kept coordinates
/// ([`DecodeInput::Coords`]), the network's backward is `fused`'s (which returns whether it
/// ran; it must, as its forward did), else `mlp_backward` on the saved features.
#[allow(clippy::too_many_arguments)]
pub fn backward_with<B: Backend>(
    be: &B,
    s: &DecodeSpec<'_, B>,
    rot: &B::Buf,
    z: Option<&B::Buf>,
    nb: usize,
    saved: &DecodeSaved<B>,
    dy: &B::Buf,
    dz: Option<&mut B::Buf>,
    dlayers: &mut [MlpLayerGrad<'_, B>],
    fused: impl FnOnce(FusedBackward<'_, '_, B>) -> Result<bool>,
) -> Result<()> {
    let m = check(be, s, rot, z, nb)?;
    let p = s.n_points;
    let ne = s.domain.n_eval(p);
    if be.len(dy) != nb * p {
        return Err(Error::Shape {
            what: "decode_rotated_lattices_backward: dy".into(),
            expected: format!("{} values (B, P)", nb * p),
            got: be.len(dy).to_string(),
        });
    }
    let dtop = match s.domain {
        Domain::Hartley => be.copy(dy)?,
        Domain::Fourier => {
            let g = be.to_vec(dy)?;
            let sign = be.to_vec(&saved.sign)?;
            let (c, cc) = (p / 2, ne);
            let mut d = vec![B::Elem::c(0.0); nb * ne * 2];
            for b in 0..nb {
                let gb = &g[b * p..(b + 1) * p];
                let db = &mut d[2 * b * ne..2 * (b + 1) * ne];
                // y_i = re_i − im_i (i < cc); y_{cc+j} = re_{c−1−j} + im_{c−1−j}
                for i in 0..cc {
                    db[2 * i] += gb[i];
                    db[2 * i + 1] -= gb[i];
                }
                for j in 0..c {
                    let i = c - 1 - j;
                    db[2 * i] += gb[cc + j];
                    db[2 * i + 1] += gb[cc + j];
                }
                // im = s·im_net
                for i in 0..ne {
                    db[2 * i + 1] *= sign[b * ne + i];
                }
            }
            be.upload(&d)?
        }
    };
    // Only the latent columns 2m.. of the features need a gradient (the encoding's are fixed),
    // and z_b is copied into every evaluated row of image b: dz_b = Σ_i dfeats[b, i, 2m..].
    let dz = dz.filter(|_| s.zdim > 0);
    if let DecodeInput::Coords(x) = &saved.input {
        let dz = dz.map(|d| (d, 2 * m, ne));
        let ran = fused((x, nb * ne, &saved.mlp, &dtop, dz, dlayers))?;
        be.recycle(dtop);
        // (when it did not run, features() says why)
        return match ran {
            true => Ok(()),
            false => saved.input.features().map(|_| ()),
        };
    }
    let feats = saved.input.features()?;
    match dz {
        Some(dz) => be.mlp_backward_grouped(
            &s.mlp,
            feats,
            nb * ne,
            &saved.mlp,
            &dtop,
            dz,
            2 * m,
            ne,
            dlayers,
        )?,
        _ => be.mlp_backward(
            &s.mlp,
            feats,
            nb * ne,
            &saved.mlp,
            &dtop,
            None,
            2 * m,
            dlayers,
        )?,
    }
    be.recycle(dtop);
    Ok(())
}
