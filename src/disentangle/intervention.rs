//! PoseVAE's intervention loss (Klindt et al. 2024, Algorithm 1, Eq. 2): encode, detach, permute the poses
//! within the batch, decode, re-encode, and ask the encoder to give back what was put in:
//!
//! `L = (1/B) Σ_i [ ‖z_i − ẑ_i‖² + d(φ′_i, φ̂_i) ]`, with (ẑ_i, φ̂_i) = f(g(z_i, φ′_i)), φ′_i = φ_σ(i).
//!
//! The first encoding (z, φ) is given as constants ("given latents": no gradient reaches it); gradients
//! flow through the decoder g, the second encoder pass and φ̂. The decoded slice (B, P) on the decoder's
//! masked lattice is the encoder's input, so the encoder must read the same pixels in the same order (the
//! default `--enc-mask`, a circle of radius D/2, is the decoder's mask) \[I\]. The pose distance d is chordal:
//! in-plane ‖u − û‖² = 2 − 2 cos Δψ on the normalised 2-vectors; SO(3) ‖R − R̂‖²_F (= 4 − 4 cos θ) on the
//! rotations [I: the paper names the geodesic distance as one choice].
//!
//! The encoder's second head carries (log σ², pose): its first `zdim` columns are log σ² (unused here), the
//! next `k` the pose parameters ([`PoseKind`]).

use crate::autodiff::{Tape, Tensor, Var};
use crate::backend::{Backend, UnaryOp};
use crate::model::pose;
use crate::model::{Decoder, Encoder};
use crate::{Error, Result};

/// How the encoder's pose head parametrises a pose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoseKind {
    /// In-plane angle from a 2-vector ([`pose::inplane`]).
    InPlane,
    /// SO(3) from the 6-D representation ([`pose::sixd`]).
    SixD,
}

impl PoseKind {
    /// Width of the pose head.
    pub fn width(self) -> usize {
        match self {
            PoseKind::InPlane => 2,
            PoseKind::SixD => 6,
        }
    }

    /// The rotations (B, 9) of pose parameters (B, width).
    pub fn rotation<B: Backend>(self, t: &mut Tape<'_, B>, p: Var) -> Result<Var> {
        match self {
            PoseKind::InPlane => pose::inplane(t, p),
            PoseKind::SixD => pose::sixd(t, p),
        }
    }

    /// The representation the pose distance compares: unit 2-vectors (in-plane) or rotations (SO(3)).
    fn embed<B: Backend>(self, t: &mut Tape<'_, B>, p: Var) -> Result<Var> {
        let r = self.rotation(t, p)?;
        match self {
            // (cos ψ, sin ψ) are R's entries 0 and 3
            PoseKind::InPlane => {
                let c = t.slice(r, 0, 1)?;
                let s = t.slice(r, 3, 1)?;
                t.concat(&[c, s])
            }
            PoseKind::SixD => Ok(r),
        }
    }
}

/// `train-vae --pose-source encoder`: poses from a head of the encoder (issue 24), with PoseVAE's
/// intervention loss at weight `intervention_weight` (0: a plain VAE with a pose head). `config.json`'s
/// `learned_pose`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LearnedPose {
    /// `inplane` (an angle about the viewing axis) or `so3` (6-D Gram–Schmidt).
    pub kind: String,
    pub intervention_weight: f64,
}

impl LearnedPose {
    /// The head's parametrisation.
    pub fn pose_kind(&self) -> Result<PoseKind> {
        match self.kind.as_str() {
            "inplane" => Ok(PoseKind::InPlane),
            "so3" => Ok(PoseKind::SixD),
            k => Err(Error::invalid(format!(
                "unknown --pose-head `{k}` (inplane or so3)"
            ))),
        }
    }

    /// Visit the settings a checkpoint records.
    pub fn each_setting(
        &mut self,
        f: &mut dyn FnMut(
            &'static str,
            &'static str,
            &mut dyn crate::train::checkpoint::Setting,
        ) -> Result<()>,
    ) -> Result<()> {
        f("pose_head", "--pose-head", &mut self.kind)?;
        f(
            "intervention_weight",
            "--intervention-weight",
            &mut self.intervention_weight,
        )
    }
}

/// The loss's parts: total, the z term and the pose term (each a mean over the batch).
pub struct Intervention {
    pub loss: Var,
    pub z_term: Var,
    pub pose_term: Var,
}

/// Eq. 2 on the tape for a batch whose first encoding gave `z0` (B, zdim) and pose parameters `pose0`
/// (B, k), with the poses permuted by `perm` (`φ′_i = φ_perm[i]`); `coords` the decoder's masked lattice.
#[allow(clippy::too_many_arguments)]
pub fn intervention_loss<B: Backend>(
    t: &mut Tape<'_, B>,
    encoder: &Encoder,
    decoder: &Decoder,
    coords: &[[f64; 3]],
    z0: &[B::Elem],
    pose0: &[B::Elem],
    perm: &[u32],
    kind: PoseKind,
) -> Result<Intervention> {
    let be = t.backend().clone();
    let (nb, zdim, k) = (perm.len(), encoder.zdim, kind.width());
    if z0.len() != nb * zdim || pose0.len() != nb * k || encoder.aux != zdim + k {
        return Err(Error::Shape {
            what: "intervention loss inputs".into(),
            expected: format!("z (B = {nb}, {zdim}), pose (B, {k}), an encoder with a second head of {zdim} + {k}"),
            got: format!("{} z values, {} pose values, second head {}", z0.len(), pose0.len(), encoder.aux),
        });
    }
    if encoder.in_dim != coords.len() {
        return Err(Error::invalid(format!(
            "intervention loss: the encoder reads {} pixels but the decoder's lattice has {}: they must be the same mask",
            encoder.in_dim,
            coords.len()
        )));
    }
    let mut seen = vec![false; nb];
    for &i in perm {
        match seen.get_mut(i as usize) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(Error::invalid(
                    "intervention loss: `perm` is not a permutation of the batch",
                ))
            }
        }
    }
    let z = t.constant(Tensor::from_slice(&be, z0, &[nb, zdim])?);
    let p0 = t.constant(Tensor::from_slice(&be, pose0, &[nb, k])?);
    let pp = t.gather_rows(p0, perm)?;
    let rot = kind.rotation(t, pp)?;
    let y = decoder.forward_posed(t, coords, rot, Some(z))?;
    let (z_hat, aux) = encoder.forward(t, y, None)?;
    let p_hat = t.slice(aux, zdim, k)?;
    let dz = t.sub(z_hat, z)?;
    let dz2 = t.unary(dz, UnaryOp::Square)?;
    let z_term = t.sum_all(dz2, 1.0 / nb as f64)?;
    let e_target = kind.embed(t, pp)?;
    let e_hat = kind.embed(t, p_hat)?;
    let dp = t.sub(e_hat, e_target)?;
    let dp2 = t.unary(dp, UnaryOp::Square)?;
    let pose_term = t.sum_all(dp2, 1.0 / nb as f64)?;
    let loss = t.add(z_term, pose_term)?;
    Ok(Intervention {
        loss,
        z_term,
        pose_term,
    })
}

/// The known-pose variant of Eq. 2 (spec §2, for `train-vae` with a poses file): decode each image's
/// first encoding `z0` (B, zdim) at another image's known rotation, `rots` (B, 3, 3) permuted by `perm`,
/// re-encode, and return `(1/B) Σ_i ‖z_i − f_z(g(z_i, R_perm[i]))‖²` — the Edelberg–Lederman failure
/// (z moving with the pose) penalised directly. `coords` is the decoder's masked lattice (P, 3) as a
/// tape value; the encoder must read those P pixels.
#[allow(clippy::too_many_arguments)]
pub fn intervention_loss_known<B: Backend>(
    t: &mut Tape<'_, B>,
    encoder: &Encoder,
    decoder: &Decoder,
    coords: Var,
    p: usize,
    z0: &[B::Elem],
    rots: &[B::Elem],
    perm: &[u32],
) -> Result<Var> {
    let be = t.backend().clone();
    let (nb, zdim) = (perm.len(), encoder.zdim);
    if z0.len() != nb * zdim || rots.len() != nb * 9 {
        return Err(Error::Shape {
            what: "known-pose intervention loss inputs".into(),
            expected: format!("z (B = {nb}, {zdim}), rotations (B, 3, 3)"),
            got: format!("{} z values, {} rotation values", z0.len(), rots.len()),
        });
    }
    if encoder.in_dim != p {
        return Err(Error::invalid(format!(
            "intervention loss: the encoder reads {} pixels but the decoder's lattice has {p}: they must be the same mask",
            encoder.in_dim
        )));
    }
    let mut seen = vec![false; nb];
    for &i in perm {
        match seen.get_mut(i as usize) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(Error::invalid(
                    "intervention loss: `perm` is not a permutation of the batch",
                ))
            }
        }
    }
    let permuted: Vec<B::Elem> = perm
        .iter()
        .flat_map(|&i| rots[9 * i as usize..9 * (i as usize + 1)].iter().copied())
        .collect();
    let z = t.constant(Tensor::from_slice(&be, z0, &[nb, zdim])?);
    let rot = t.constant(Tensor::from_slice(&be, &permuted, &[nb, 3, 3])?);
    let y = decoder.forward(t, coords, rot, Some(z))?;
    let (z_hat, _) = encoder.forward(t, y, None)?;
    let dz = t.sub(z_hat, z)?;
    let dz2 = t.unary(dz, UnaryOp::Square)?;
    t.sum_all(dz2, 1.0 / nb as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::ParamStore;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::{Activation, Domain};
    use crate::fourier::lattice::Lattice;
    use crate::model::{DecoderConfig, EncodeMode};
    use crate::nn::PeKind;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    type B64 = CpuBackend<f64>;

    /// Per-parameter gradients of a loss as `eval` returns them: one `Option<Vec<f64>>` per parameter.
    type Grads = Vec<Option<Vec<f64>>>;

    /// A loss evaluation: (value, gradients when asked).
    type Eval<'a> = &'a dyn Fn(&ParamStore<B64>, bool) -> (f64, Option<Grads>);

    /// The tiny model the tests share: an MLP encoder (`in_dim` pixels, one hidden layer of `dim`, `zdim`
    /// latents, a second head of `aux`) and a D = 8 Hartley decoder (one layer of `dim`, Gaussian PE of 3),
    /// built in that order from `rng`.
    fn tiny_model(
        be: &B64,
        store: &mut ParamStore<B64>,
        rng: &mut StdRng,
        in_dim: usize,
        dim: usize,
        zdim: usize,
        aux: usize,
    ) -> (Encoder, Decoder) {
        let enc = Encoder::new(
            be,
            store,
            EncodeMode::Mlp,
            in_dim,
            1,
            dim,
            zdim,
            aux,
            Activation::Tanh,
            rng,
        )
        .unwrap();
        let dcfg = DecoderConfig {
            d: 8,
            layers: 1,
            dim,
            domain: Domain::Hartley,
            pe: PeKind::Gaussian,
            pe_dim: Some(3),
            feat_sigma: 0.5,
            activation: Activation::Tanh,
            zdim,
        };
        let dec = Decoder::new(be, store, "decoder.", &dcfg, rng).unwrap();
        (enc, dec)
    }

    /// Checks the tape gradients `g` of `eval`'s loss in every parameter (its first, middle and last
    /// entries) against central differences of step 1e-6 (f64); returns how many entries were checked.
    fn fd_check(be: &B64, store: &mut ParamStore<B64>, g: Grads, eval: Eval, what: &str) -> usize {
        let h = 1e-6;
        let ids: Vec<_> = store.ids().collect();
        let mut checked = 0;
        for (n, &id) in ids.iter().enumerate() {
            let gi = g[n].as_ref().expect("every parameter gets a gradient");
            let len = store.get(id).numel();
            for j in [0, len / 2, len - 1] {
                let orig = be.to_vec(&store.get(id).buf).unwrap();
                let mut a = orig.clone();
                a[j] += h;
                store.get_mut(id).buf = a;
                let lp = eval(store, false).0;
                let mut b = orig.clone();
                b[j] -= h;
                store.get_mut(id).buf = b;
                let lm = eval(store, false).0;
                store.get_mut(id).buf = orig;
                let fd = (lp - lm) / (2.0 * h);
                assert!(
                    (fd - gi[j]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{what} param {n}[{j}]: fd {fd} vs tape {}",
                    gi[j]
                );
                checked += 1;
            }
        }
        checked
    }

    /// Eq. 2's gradient in every parameter (first encoding held fixed) against central differences, for
    /// in-plane and SO(3) pose heads (the first encoding enters as constants, so it receives no gradient by
    /// construction); a random model has a positive loss.
    #[test]
    fn intervention_loss_gradient_matches_finite_differences() {
        let be = B64::new();
        let l = Lattice::for_image(8, true).unwrap();
        let m = l.circular_mask(4.0).unwrap();
        let coords: Vec<[f64; 3]> = l
            .masked_coords(&m)
            .iter()
            .map(|c| [c[0] as f64, c[1] as f64, c[2] as f64])
            .collect();
        let p = coords.len();
        let (nb, zdim) = (3, 2);
        for kind in [PoseKind::InPlane, PoseKind::SixD] {
            let k = kind.width();
            let mut store = ParamStore::new();
            let mut rng = StdRng::seed_from_u64(4);
            let (enc, dec) = tiny_model(&be, &mut store, &mut rng, p, 6, zdim, zdim + k);
            let z0: Vec<f64> = (0..nb * zdim)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let p0: Vec<f64> = (0..nb * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let perm = [2u32, 0, 1];
            let eval = |store: &ParamStore<B64>, grad: bool| {
                let mut t = Tape::new(&be, store);
                let r =
                    intervention_loss(&mut t, &enc, &dec, &coords, &z0, &p0, &perm, kind).unwrap();
                let v = t.to_vec(r.loss).unwrap()[0];
                let g = grad.then(|| {
                    let g = t.backward(r.loss).unwrap();
                    store
                        .ids()
                        .map(|id| g.param(id).map(|b| be.to_vec(b).unwrap()))
                        .collect::<Vec<_>>()
                });
                (v, g)
            };
            let (l0, g) = eval(&store, true);
            assert!(l0 > 0.0 && l0.is_finite(), "{kind:?}: {l0}");
            let checked = fd_check(&be, &mut store, g.unwrap(), &eval, &format!("{kind:?}"));
            assert!(checked > 10);
        }
    }

    /// The known-pose variant's gradient in every parameter against central differences (f64); it is
    /// positive for a random model and refuses a non-permutation.
    #[test]
    fn known_pose_variant_gradient_matches_finite_differences() {
        let be = B64::new();
        let l = Lattice::for_image(8, true).unwrap();
        let m = l.circular_mask(4.0).unwrap();
        let coords: Vec<f64> = l
            .masked_coords(&m)
            .iter()
            .flat_map(|c| c.map(|v| v as f64))
            .collect();
        let p = coords.len() / 3;
        let (nb, zdim) = (3, 2);
        let mut store = ParamStore::new();
        let mut rng = StdRng::seed_from_u64(9);
        let (enc, dec) = tiny_model(&be, &mut store, &mut rng, p, 6, zdim, zdim);
        let z0: Vec<f64> = (0..nb * zdim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let rots: Vec<f64> = (0..nb)
            .flat_map(|_| {
                let (s, c) = rng.random_range(0.0..std::f64::consts::TAU).sin_cos();
                [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]
            })
            .collect();
        let perm = [1u32, 2, 0];
        let eval = |store: &ParamStore<B64>, grad: bool| {
            let mut t = Tape::new(&be, store);
            let cv = t.constant(Tensor::from_slice(&be, &coords, &[p, 3]).unwrap());
            let r = intervention_loss_known(&mut t, &enc, &dec, cv, p, &z0, &rots, &perm).unwrap();
            let v = t.to_vec(r).unwrap()[0];
            let g = grad.then(|| {
                let g = t.backward(r).unwrap();
                store
                    .ids()
                    .map(|id| g.param(id).map(|b| be.to_vec(b).unwrap()))
                    .collect::<Vec<_>>()
            });
            (v, g)
        };
        let (l0, g) = eval(&store, true);
        assert!(l0 > 0.0 && l0.is_finite(), "{l0}");
        fd_check(&be, &mut store, g.unwrap(), &eval, "known-pose variant");
        let mut t = Tape::new(&be, &store);
        let cv = t.constant(Tensor::from_slice(&be, &coords, &[p, 3]).unwrap());
        assert!(
            intervention_loss_known(&mut t, &enc, &dec, cv, p, &z0, &rots, &[0, 0, 1]).is_err()
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let be = B64::new();
        let mut store = ParamStore::new();
        let mut rng = StdRng::seed_from_u64(1);
        let (enc, dec) = tiny_model(&be, &mut store, &mut rng, 4, 4, 2, 4);
        let coords = [[0.1, 0.0, 0.0]; 4];
        let mut t = Tape::new(&be, &store);
        let z = [0.0; 4];
        let p = [1.0, 0.0, 0.0, 1.0];
        // not a permutation
        assert!(intervention_loss(
            &mut t,
            &enc,
            &dec,
            &coords,
            &z,
            &p,
            &[0, 0],
            PoseKind::InPlane
        )
        .is_err());
        // a 6-D head width against an in-plane encoder
        assert!(intervention_loss(
            &mut t,
            &enc,
            &dec,
            &coords,
            &z,
            &[0.0; 12],
            &[0, 1],
            PoseKind::SixD
        )
        .is_err());
        // the encoder reads another number of pixels than the lattice has
        assert!(intervention_loss(
            &mut t,
            &enc,
            &dec,
            &coords[..3],
            &z,
            &p,
            &[1, 0],
            PoseKind::InPlane
        )
        .is_err());
        assert!(intervention_loss(
            &mut t,
            &enc,
            &dec,
            &coords,
            &z,
            &p,
            &[1, 0],
            PoseKind::InPlane
        )
        .is_ok());
    }
}
