//! `pose_scores`: the squared error of every (image, rotation, translation) candidate of a pose
//! search (cryoDRGN `PoseSearch.eval_grid`, whose `mse` loss this is; its default `msf` loss is
//! this minus the per-image constant ‖x‖², halved).
//!
//! ## Math
//! For image b, rotation r and translation t, over the P band-limited lattice points:
//!
//! `out[b, r, t] = Σ_p (c[b, p]·s[σ(b), r, p] − x[b, t, p])²`
//!
//! with `s` the model's slices (σ(b) = b when every image has its own slices, 0 when they are
//! shared), `x` the image already translated by candidate t, and `c` the CTF (1 without one).
//! Expanding the square,
//!
//! `out[b, r, t] = Σ_p c²s²  −  2·Σ_p s·(c x)  +  Σ_p x²`,
//!
//! the middle term is, for each image, one GEMM `S_σ(b) (nr, P) · (c ⊙ X_b)ᵀ (P, nt)`: this is the
//! CPU implementation ([`pose_scores_cpu`]). [`pose_scores_naive`] is the direct sum in f64, the
//! default body of [`super::Backend::pose_scores`] and the reference the fast version is tested
//! against. The expansion loses relative precision when the error is small against ‖cs‖² + ‖x‖²
//! (cancellation in f32: about 1e−6 of ‖cs‖² + ‖x‖²), which is far below the differences between
//! candidate poses that the search ranks.
//!
//! Shapes: slices (nσ, nr, P) with nσ = nb or 1; images (nb, nt, P); ctf (nb, P); out (nb, nr, nt).
//! Cost: 2·nb·nr·nt·P FLOPs (the GEMM) + O(nb·(nr + nt)·P).

use super::cpu::gemm::{gemm, CpuFloat};
use super::{Backend, Float};
use crate::{Error, Result};
use rayon::prelude::*;

/// Checks the buffer lengths of a `pose_scores` call (lengths given as numbers so that every
/// backend can share it).
#[allow(clippy::too_many_arguments)]
pub fn check_pose_scores(
    slices_len: usize,
    per_image_slices: bool,
    images_len: usize,
    ctf_len: Option<usize>,
    nb: usize,
    nr: usize,
    nt: usize,
    p: usize,
    out_len: usize,
) -> Result<()> {
    let bad = |what: &str, expected: String, got: usize| {
        Err(Error::Shape {
            what: format!("pose_scores: {what}"),
            expected,
            got: format!("{got} elements"),
        })
    };
    let ns = if per_image_slices { nb } else { 1 };
    if slices_len != ns * nr * p {
        return bad(
            "slices",
            format!("{} elements ({ns}, {nr}, {p})", ns * nr * p),
            slices_len,
        );
    }
    if images_len != nb * nt * p {
        return bad(
            "images",
            format!("{} elements ({nb}, {nt}, {p})", nb * nt * p),
            images_len,
        );
    }
    if let Some(c) = ctf_len {
        if c != nb * p {
            return bad("ctf", format!("{} elements ({nb}, {p})", nb * p), c);
        }
    }
    if out_len != nb * nr * nt {
        return bad(
            "out",
            format!("{} elements ({nb}, {nr}, {nt})", nb * nr * nt),
            out_len,
        );
    }
    Ok(())
}

/// The direct sum `out[b, r, t] = Σ_p (c·s − x)²` accumulated in f64 on host copies: the default
/// body of [`Backend::pose_scores`] and the test reference of the fast implementations.
#[allow(clippy::too_many_arguments)]
pub fn pose_scores_naive<B: Backend>(
    be: &B,
    slices: &B::Buf,
    per_image_slices: bool,
    images: &B::Buf,
    ctf: Option<&B::Buf>,
    nb: usize,
    nr: usize,
    nt: usize,
    p: usize,
    out: &mut B::Buf,
) -> Result<()> {
    check_pose_scores(
        be.len(slices),
        per_image_slices,
        be.len(images),
        ctf.map(|c| be.len(c)),
        nb,
        nr,
        nt,
        p,
        be.len(out),
    )?;
    let s = be.to_vec(slices)?;
    let x = be.to_vec(images)?;
    let c = ctf.map(|c| be.to_vec(c)).transpose()?;
    let mut o = vec![B::Elem::c(0.0); nb * nr * nt];
    for b in 0..nb {
        let sb = if per_image_slices { b } else { 0 };
        for r in 0..nr {
            let srow = &s[(sb * nr + r) * p..][..p];
            for t in 0..nt {
                let xrow = &x[(b * nt + t) * p..][..p];
                let mut acc = 0.0f64;
                for k in 0..p {
                    let ck = c.as_ref().map_or(1.0, |c| c[b * p + k].f64());
                    let d = ck * srow[k].f64() - xrow[k].f64();
                    acc += d * d;
                }
                o[(b * nr + r) * nt + t] = B::Elem::c(acc);
            }
        }
    }
    let old = std::mem::replace(out, be.upload(&o)?);
    be.recycle(old);
    Ok(())
}

/// The CPU implementation (see the module doc): `‖c ⊙ s_r‖²` and `‖x_t‖²` by direct sums, the
/// cross term by GEMM. Shared slices: one GEMM `S (nr, P) · [c_b ⊙ X_b]ᵀ (P, nb·nt)` for all
/// images (the slices are packed once), scattered into `out`. Per-image slices: one GEMM per image
/// written straight into `out[b]`. GEMMs are threaded by the GEMM library when large (the base
/// grid of a search: thousands of rotations); the small per-image ones (refinement: 8 rotations)
/// cost microseconds.
#[allow(clippy::too_many_arguments)]
pub fn pose_scores_cpu<T: CpuFloat>(
    slices: &[T],
    per_image_slices: bool,
    images: &[T],
    ctf: Option<&[T]>,
    nb: usize,
    nr: usize,
    nt: usize,
    p: usize,
    out: &mut [T],
) -> Result<()> {
    check_pose_scores(
        slices.len(),
        per_image_slices,
        images.len(),
        ctf.map(|c| c.len()),
        nb,
        nr,
        nt,
        p,
        out.len(),
    )?;
    if nb == 0 || nr == 0 || nt == 0 {
        return Ok(());
    }
    if p == 0 {
        out.fill(T::zero());
        return Ok(());
    }
    let two = T::c(2.0);
    // Σ_p (c_p v_p)² of every row of v (rows of P values).
    let sq_norms = |v: &[T], c: Option<&[T]>| -> Vec<T> {
        v.chunks_exact(p)
            .map(|row| match c {
                Some(c) => row.iter().zip(c).map(|(&a, &w)| (a * w) * (a * w)).sum(),
                None => row.iter().map(|&a| a * a).sum(),
            })
            .collect()
    };
    let slice_of = |b: usize| -> &[T] {
        if per_image_slices {
            &slices[b * nr * p..][..nr * p]
        } else {
            &slices[..nr * p]
        }
    };
    // ‖c_b ⊙ s_r‖² (nb, nr); without a CTF and with shared slices one row serves every image.
    let shared_norms = (!per_image_slices && ctf.is_none()).then(|| sq_norms(slices, None));
    let norms: Vec<Vec<T>> = match &shared_norms {
        Some(_) => Vec::new(),
        None => (0..nb)
            .into_par_iter()
            .map(|b| sq_norms(slice_of(b), ctf.map(|c| &c[b * p..][..p])))
            .collect(),
    };
    let norm_row = |b: usize| -> &[T] { shared_norms.as_deref().unwrap_or_else(|| &norms[b]) };
    // ‖x_bt‖² (nb·nt)
    let xx = sq_norms(images, None);
    // y = c ⊙ x, so that s·(c x) is a GEMM with s as stored.
    let scaled;
    let y: &[T] = match ctf {
        Some(c) => {
            let mut v = images.to_vec();
            v.par_chunks_mut(nt * p).enumerate().for_each(|(b, yb)| {
                let cb = &c[b * p..][..p];
                for row in yb.chunks_exact_mut(p) {
                    row.iter_mut().zip(cb).for_each(|(o, &w)| *o *= w);
                }
            });
            scaled = v;
            &scaled
        }
        None => images,
    };
    let finish = |b: usize, ob: &mut [T], g: &dyn Fn(usize, usize) -> T| {
        let (ns, xb) = (norm_row(b), &xx[b * nt..(b + 1) * nt]);
        for (r, orow) in ob.chunks_exact_mut(nt).enumerate() {
            for (t, o) in orow.iter_mut().enumerate() {
                *o = ns[r] - two * g(r, t) + xb[t];
            }
        }
    };
    if !per_image_slices && nb > 1 {
        // G (nr, nb·nt) = S · Yᵀ, Y = (nb·nt, P)
        let m = nb * nt;
        let mut g = vec![T::zero(); nr * m];
        gemm(
            nr,
            p,
            m,
            T::one(),
            slices,
            p,
            false,
            y,
            p,
            true,
            T::zero(),
            &mut g,
        );
        out.par_chunks_mut(nr * nt).enumerate().for_each(|(b, ob)| {
            finish(b, ob, &|r, t| g[r * m + b * nt + t]);
        });
        return Ok(());
    }
    for b in 0..nb {
        let ob = &mut out[b * nr * nt..][..nr * nt];
        // ob (nr, nt) = S_b (nr, P) · Y_bᵀ (P, nt)
        let yb = &y[b * nt * p..][..nt * p];
        gemm(
            nr,
            p,
            nt,
            T::one(),
            slice_of(b),
            p,
            false,
            yb,
            p,
            true,
            T::zero(),
            ob,
        );
        let g = ob.to_vec();
        finish(b, ob, &|r, t| g[r * nt + t]);
    }
    Ok(())
}
