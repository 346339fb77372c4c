//! The two functions every disentanglement measurement composes (spec `disentanglement.md` §1, §4):
//!
//! - [`Probe`]: a trained `train-vae` model as functions of in-memory data. The encoder f = (f_z, f_φ)
//!   on real-space images (n, D, D), preprocessed exactly as training does (window, inversion,
//!   `ht2_center`, symmetrisation and the run's normalisation, a recentring shift, the encoder mask,
//!   sign(CTF)), or directly on encoder inputs; the decoder g(z, R) as the masked Hartley slice, which
//!   is the encoder's input for the intervention loss (so it needs the encoder mask to be the decoder's).
//! - [`World`]: the true generator g\* of a phantom folder (`vols.txt` + `truth.pkl`, states on a grid
//!   as `phantom --kind linear2d` writes them): images at (state, rotation), optional shifts and CTF,
//!   plus white Gaussian noise, reproducibly from a seed. [`World::encode`] is "true factors → the
//!   model's representation" in one call.

use crate::autodiff::{ParamStore, Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::disentangle::intervention::PoseKind;
use crate::fourier::ctf::{compute_ctf_into, Ctf};
use crate::fourier::lattice::Lattice;
use crate::fourier::shift::translate_ht_into;
use crate::fourier::slice::HartleyVolume;
use crate::fourier::window::{preprocess_images, window_mask};
use crate::geometry::rotation::Mat3;
use crate::io::mrc::MrcFile;
use crate::io::pkl::{read_pkl, PyValue};
use crate::model::load::LoadedModel;
use crate::model::EncodeMode;
use crate::simulate::dataset::{add_noise, Grid, ImageParams, Projection, Projector};
use crate::train::encoder_mask;
use crate::{Error, Result};
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// Images per encoder/decoder pass.
const BATCH: usize = 256;

/// What the encoder gives for n images.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    /// number of images
    pub n: usize,
    /// latent width
    pub zdim: usize,
    /// posterior means μ_z (n, zdim)
    pub mu: Vec<f64>,
    /// posterior log-variances log σ² (n, zdim)
    pub logvar: Vec<f64>,
    /// the pose head's raw parameters (n, k), k = 2 (in-plane) or 6 (SO(3)); None for a known-pose model
    pub pose_params: Option<Vec<f64>>,
    /// the in-plane angles ψ̂ = atan2(b, a) (rad, (n,)) of an in-plane head
    pub psi: Option<Vec<f64>>,
    /// the head's rotations (n, 9 row-major) of any pose head
    pub rots: Option<Vec<Mat3>>,
}

/// Options of [`Probe::encoder_input`]: per-image CTF rows and recentring shifts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageOpts<'a> {
    /// ctf.pkl rows `[D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase]` (n): the encoder reads image·sign(CTF)
    pub ctf: Option<&'a [[f32; 9]]>,
    /// shifts in pixels (n, as pose.pkl's `trans`·D): the image is translated by +t before encoding
    /// (training's recentring)
    pub trans_px: Option<&'a [[f32; 2]]>,
}

/// A trained train-vae model as functions of in-memory data (module doc).
pub struct Probe {
    /// the loaded model (weights, record, normalisation)
    pub model: LoadedModel,
    lattice: Lattice,
    /// the decoder's masked lattice (P, 3), f32 and f64
    coords: Vec<f32>,
    coords64: Vec<[f64; 3]>,
    /// lattice indices of the decoder's mask (P) and the encoder's input (Q)
    dec_mask: Vec<usize>,
    enc_mask: Vec<usize>,
    window: Option<Vec<f32>>,
    kind: Option<PoseKind>,
}

impl Probe {
    /// Load `weights` of the train-vae run described by `config`. A homogeneous (train-nn), twin or
    /// tilt-pair model is an error naming the file.
    pub fn load(weights: &Path, config: &Path) -> Result<Self> {
        let model = LoadedModel::load(weights, config)?;
        let enc = model.encoder.as_ref().ok_or_else(|| {
            Error::format(weights, "a homogeneous model (train-nn) has no encoder")
        })?;
        let cfg = &model.record.config;
        if enc.mode == EncodeMode::Tilt || cfg.twin.is_some() {
            return Err(Error::format(
                config,
                "tilt-pair and twin models are not supported by the disentanglement probes",
            ));
        }
        let d = model.d;
        let lattice = Lattice::for_image(d, true)?;
        let m = lattice.circular_mask((d / 2) as f32)?;
        let dec_mask: Vec<usize> = (0..m.len()).filter(|&i| m[i]).collect();
        let enc_mask = encoder_mask(cfg, &lattice, d)?
            .ok_or_else(|| Error::format(config, "the run has no encoder (zdim)"))?;
        let coords: Vec<f32> = dec_mask.iter().flat_map(|&i| lattice.coords()[i]).collect();
        let coords64 = coords
            .chunks(3)
            .map(|c| [c[0] as f64, c[1] as f64, c[2] as f64])
            .collect();
        let window = cfg
            .window
            .then(|| window_mask(d, cfg.window_r, 0.99))
            .transpose()?;
        let kind = cfg
            .learned_pose
            .as_ref()
            .map(|lp| lp.pose_kind())
            .transpose()?;
        Ok(Probe {
            model,
            lattice,
            coords,
            coords64,
            dec_mask,
            enc_mask,
            window,
            kind,
        })
    }

    /// Image size D.
    pub fn d(&self) -> usize {
        self.model.d
    }

    /// Latent width.
    pub fn zdim(&self) -> usize {
        self.model.zdim
    }

    /// The pose head's parametrisation; None for a known-pose model.
    pub fn pose_kind(&self) -> Option<PoseKind> {
        self.kind
    }

    /// Number of pixels of the decoder's mask (P).
    pub fn n_slice(&self) -> usize {
        self.dec_mask.len()
    }

    /// The decoder's masked lattice (P, 3) (the coordinates of [`Probe::decode`]'s slices).
    pub fn slice_coords(&self) -> &[[f64; 3]] {
        &self.coords64
    }

    /// The noise level, per value of a decoded slice (normalised Hartley units), of white real-space
    /// noise of standard deviation `sigma`: an unnormalised D×D Hartley transform turns it into
    /// independent values of standard deviation D·σ, then training divides by the normalisation's std.
    /// (The soft window of training, when on, lowers the real noise near the edge; ignored.)
    pub fn slice_sigma(&self, sigma: f64) -> f64 {
        hartley_sigma(sigma, self.d(), self.model.norm.std as f64)
    }

    /// The encoder's inputs (n, Q) of real-space images (n, D, D): training's preprocessing (window,
    /// inversion, `ht2_center`, symmetrisation, normalisation), the shift, the encoder mask, sign(CTF).
    pub fn encoder_input(&self, images: &[f32], opts: ImageOpts<'_>) -> Result<Vec<f32>> {
        let d = self.d();
        let dd = d * d;
        if images.is_empty() || !images.len().is_multiple_of(dd) {
            return Err(Error::Shape {
                what: "probe: images".into(),
                expected: format!("(n ≥ 1, {d}, {d}), the model's box"),
                got: format!("{} values", images.len()),
            });
        }
        let n = images.len() / dd;
        let check = |what: &str, len: Option<usize>| match len {
            Some(l) if l != n => Err(Error::Shape {
                what: format!("probe: {what}"),
                expected: format!("one per image ({n})"),
                got: l.to_string(),
            }),
            _ => Ok(()),
        };
        check("CTF rows", opts.ctf.map(<[_]>::len))?;
        check("shifts", opts.trans_px.map(<[_]>::len))?;
        let cfg = &self.model.record.config;
        let freqs = self.lattice.freqs2d();
        let mut out = Vec::with_capacity(n * self.enc_mask.len());
        let e = (d + 1) * (d + 1);
        for (i, img) in images.chunks_exact(dd).enumerate() {
            let ht = preprocess_images(
                img,
                d,
                self.window.as_deref(),
                cfg.invert_data,
                self.model.norm,
            );
            debug_assert_eq!(ht.len(), e);
            let ht = match opts.trans_px {
                Some(t) => {
                    let mut tr = vec![0f32; e];
                    translate_ht_into(&ht, freqs, t[i], &mut tr);
                    tr
                }
                None => ht,
            };
            let ctf = opts.ctf.map(|rows| ctf_at(&rows[i], freqs));
            out.extend(self.enc_mask.iter().map(|&k| {
                let s = ctf.as_ref().map_or(1.0, |c| sign(c[k]));
                ht[k] * s
            }));
        }
        Ok(out)
    }

    /// Encode real-space images (n, D, D) (see [`Probe::encoder_input`]).
    pub fn encode_images(&self, images: &[f32], opts: ImageOpts<'_>) -> Result<Encoding> {
        let x = self.encoder_input(images, opts)?;
        self.encode_inputs(&x)
    }

    /// Encode encoder inputs (n, Q) directly (e.g. decoded slices, when the masks agree).
    pub fn encode_inputs(&self, x: &[f32]) -> Result<Encoding> {
        let enc = self
            .model
            .encoder
            .as_ref()
            .ok_or_else(|| Error::invalid("probe: the model has no encoder"))?;
        let q = self.enc_mask.len();
        if x.is_empty() || !x.len().is_multiple_of(q) {
            return Err(Error::Shape {
                what: "probe: encoder inputs".into(),
                expected: format!("(n ≥ 1, {q})"),
                got: format!("{} values", x.len()),
            });
        }
        let n = x.len() / q;
        let zd = enc.zdim;
        let be = &self.model.be;
        let (mut mu, mut aux) = (Vec::with_capacity(n * zd), Vec::with_capacity(n * enc.aux));
        for xb in x.chunks(BATCH * q) {
            let nb = xb.len() / q;
            let mut t = Tape::inference(be, &self.model.store);
            let xv = t.constant(Tensor::from_slice(be, xb, &[nb, q])?);
            let (m, a) = enc.forward(&mut t, xv, None)?;
            mu.extend(t.to_vec(m)?.into_iter().map(f64::from));
            aux.extend(t.to_vec(a)?.into_iter().map(f64::from));
        }
        let (logvar, pose_params) = match self.kind {
            None => (aux, None),
            Some(k) => {
                let w = zd + k.width();
                let lv: Vec<f64> = aux.chunks(w).flat_map(|r| r[..zd].to_vec()).collect();
                let pp: Vec<f64> = aux.chunks(w).flat_map(|r| r[zd..].to_vec()).collect();
                (lv, Some(pp))
            }
        };
        let (psi, rots) = match (self.kind, &pose_params) {
            (Some(k), Some(pp)) => {
                let rots = pose_rotations(k, pp)?;
                let psi = (k == PoseKind::InPlane)
                    .then(|| pp.chunks(2).map(|r| r[1].atan2(r[0])).collect());
                (psi, Some(rots))
            }
            _ => (None, None),
        };
        Ok(Encoding {
            n,
            zdim: zd,
            mu,
            logvar,
            pose_params,
            psi,
            rots,
        })
    }

    /// The decoder's slices (n, P) on its masked lattice at latents `z` (n, zdim) and rotations `rots`
    /// (n, row-major 3×3) — normalised Hartley values, the encoder's input in the intervention loss. An
    /// error when the encoder does not read the decoder's pixels (a non-default `--enc-mask`).
    pub fn decode(&self, z: &[f64], rots: &[Mat3]) -> Result<Vec<f32>> {
        if self.enc_mask != self.dec_mask {
            return Err(Error::invalid(format!(
                "probe: the encoder reads {} pixels but the decoder's mask has {}: decoded slices can be \
                 re-encoded only when the encoder mask is the decoder's (train-vae's default --enc-mask)",
                self.enc_mask.len(),
                self.dec_mask.len()
            )));
        }
        let (n, zd) = (rots.len(), self.zdim());
        if n == 0 || z.len() != n * zd {
            return Err(Error::Shape {
                what: "probe: decode".into(),
                expected: format!("z ({n}, {zd}) for {n} ≥ 1 rotations"),
                got: format!("{} z values", z.len()),
            });
        }
        let be = &self.model.be;
        let p = self.dec_mask.len();
        let mut out = Vec::with_capacity(n * p);
        for (zb, rb) in z.chunks(BATCH * zd).zip(rots.chunks(BATCH)) {
            let nb = rb.len();
            let mut t = Tape::inference(be, &self.model.store);
            let cv = t.constant(Tensor::from_slice(be, &self.coords, &[p, 3])?);
            let r: Vec<f32> = rb.iter().flat_map(|m| m.map(|v| v as f32)).collect();
            let rv = t.constant(Tensor::from_slice(be, &r, &[nb, 3, 3])?);
            let zf: Vec<f32> = zb.iter().map(|&v| v as f32).collect();
            let zv = t.constant(Tensor::from_slice(be, &zf, &[nb, zd])?);
            let y = self.model.decoder.forward(&mut t, cv, rv, Some(zv))?;
            out.extend(t.to_vec(y)?);
        }
        Ok(out)
    }
}

/// Fig 3B's quantities on a held-out particle set ([`Probe::held_out`]), each a mean over images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    /// number of images
    pub n: usize,
    /// Eq. 2 with the model frozen: z term + pose term (known-pose models: the z term only)
    pub eq2: f64,
    /// its z term, mean ‖z − ẑ‖²
    pub eq2_z: f64,
    /// its pose term (chordal); None for a known-pose model
    pub eq2_pose: Option<f64>,
    /// reconstruction MSE per pixel at z = μ, the pose the model decodes with (the head's for a learned
    /// pose, the given pose otherwise), times the CTF
    pub mse: f64,
    /// KL(q(z|x) ‖ N(0, I)) per image
    pub kl: f64,
}

impl Probe {
    /// Eq. 2, reconstruction MSE and KL of the frozen model on a particle stack with its `poses`
    /// (pose.pkl: rotations used by known-pose models, translations by all) and optional CTF, in batches
    /// of `batch` whose poses are permuted by a random permutation each (seeded), as in training.
    /// Learned-pose models use [`intervention_loss`] on an inference tape; known-pose models its z-only
    /// variant (decode μ at the permuted true rotations, re-encode).
    ///
    /// [`intervention_loss`]: crate::disentangle::intervention::intervention_loss
    pub fn held_out(
        &self,
        particles: &Path,
        poses: &Path,
        ctf: Option<&Path>,
        batch: usize,
        seed: u64,
    ) -> Result<HeldOut> {
        use crate::train::dataset::prefetch;
        use rand::seq::SliceRandom;
        let enc = self
            .model
            .encoder
            .as_ref()
            .ok_or_else(|| Error::invalid("probe: the model has no encoder"))?;
        let maker = self.model.batch_maker(particles, poses, ctf, None)?;
        let n = maker.data.n;
        let maker = std::sync::Arc::new(maker);
        let be = &self.model.be;
        let (p, zd) = (self.dec_mask.len(), enc.zdim);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut s_z, mut s_pose, mut s_mse, mut s_kl) = (0.0, 0.0, 0.0, 0.0);
        for b in prefetch(maker, (0..n).collect(), batch.max(2)) {
            let b = b?;
            let nb = b.idx.len();
            let x = b
                .enc
                .as_ref()
                .ok_or_else(|| Error::invalid("encoder input missing"))?;
            let q = x.len() / nb;
            let mut perm: Vec<u32> = (0..nb as u32).collect();
            perm.shuffle(&mut rng);
            let mut t = Tape::inference(be, &self.model.store);
            let xv = t.constant(Tensor::from_slice(be, x, &[nb, q])?);
            let (mu, aux) = enc.forward(&mut t, xv, None)?;
            let mu_h = t.to_vec(mu)?;
            let aux_h = t.to_vec(aux)?;
            let w = aux_h.len() / nb;
            let lv: Vec<f32> = aux_h.chunks(w).flat_map(|r| r[..zd].to_vec()).collect();
            // the decoded slice at μ with the model's pose
            let yr = match self.kind {
                Some(kind) => {
                    let pp = t.slice(aux, zd, kind.width())?;
                    let r = kind.rotation(&mut t, pp)?;
                    self.model
                        .decoder
                        .forward_posed(&mut t, &self.coords64, r, Some(mu))?
                }
                None => {
                    let cv = t.constant(Tensor::from_slice(be, &self.coords, &[p, 3])?);
                    let rv = t.constant(Tensor::from_slice(be, &b.rot, &[nb, 3, 3])?);
                    self.model.decoder.forward(&mut t, cv, rv, Some(mu))?
                }
            };
            let yr = t.to_vec(yr)?;
            for i in 0..nb {
                let mut se = 0.0f64;
                for k in 0..p {
                    let c = b.ctf.as_ref().map_or(1.0, |c| c[i * p + k]);
                    let r = (yr[i * p + k] * c - b.y[i * p + k]) as f64;
                    se += r * r;
                }
                s_mse += se / p as f64;
                s_kl += (0..zd)
                    .map(|j| {
                        let (m, l) = (mu_h[i * zd + j] as f64, lv[i * zd + j] as f64);
                        -0.5 * (1.0 + l - m * m - l.exp())
                    })
                    .sum::<f64>();
            }
            match self.kind {
                Some(kind) => {
                    let pose0: Vec<f32> = aux_h.chunks(w).flat_map(|r| r[zd..].to_vec()).collect();
                    let mut t2 = Tape::inference(be, &self.model.store);
                    let iv = crate::disentangle::intervention::intervention_loss(
                        &mut t2,
                        enc,
                        &self.model.decoder,
                        &self.coords64,
                        &mu_h,
                        &pose0,
                        &perm,
                        kind,
                    )?;
                    s_z += t2.to_vec(iv.z_term)?[0] as f64 * nb as f64;
                    s_pose += t2.to_vec(iv.pose_term)?[0] as f64 * nb as f64;
                }
                None => {
                    let z: Vec<f64> = mu_h.iter().map(|&v| v as f64).collect();
                    let rots: Vec<Mat3> = perm
                        .iter()
                        .map(|&j| {
                            let r = &b.rot[9 * j as usize..9 * j as usize + 9];
                            std::array::from_fn(|i| r[i] as f64)
                        })
                        .collect();
                    let y = self.decode(&z, &rots)?;
                    let e = self.encode_inputs(&y)?;
                    s_z +=
                        e.mu.iter()
                            .zip(&z)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f64>();
                }
            }
        }
        let nf = n as f64;
        let eq2_pose = self.kind.map(|_| s_pose / nf);
        Ok(HeldOut {
            n,
            eq2: (s_z + s_pose) / nf,
            eq2_z: s_z / nf,
            eq2_pose,
            mse: s_mse / nf,
            kl: s_kl / nf,
        })
    }
}

/// The rotations (n, 9) of pose-head parameters (n, k), by the head's own ops on an f64 inference tape.
pub fn pose_rotations(kind: PoseKind, params: &[f64]) -> Result<Vec<Mat3>> {
    let k = kind.width();
    if !params.len().is_multiple_of(k) {
        return Err(Error::invalid(format!(
            "pose parameters: {} values are not rows of {k}",
            params.len()
        )));
    }
    let n = params.len() / k;
    if n == 0 {
        return Ok(Vec::new());
    }
    let be = CpuBackend::<f64>::new();
    let store = ParamStore::new();
    let mut t = Tape::inference(&be, &store);
    let a = t.constant(Tensor::from_slice(&be, params, &[n, k])?);
    let r = kind.rotation(&mut t, a)?;
    Ok(t.to_vec(r)?
        .chunks_exact(9)
        .map(|c| std::array::from_fn(|i| c[i]))
        .collect())
}

/// The standard deviation D·σ / `norm_std` of every value of the normalised centred Hartley transform of
/// D×D white noise of standard deviation σ (each value is Re F − Im F of an unnormalised DFT, whose
/// variance is D²σ², the Nyquist and DC values included).
pub fn hartley_sigma(sigma: f64, d: usize, norm_std: f64) -> f64 {
    sigma * d as f64 / norm_std
}

/// torch's `sign` (0 at 0).
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The CTF of one ctf.pkl row at the lattice frequencies (cycles/pixel, divided by the row's Apix).
fn ctf_at(row: &[f32; 9], freqs: &[[f32; 2]]) -> Vec<f32> {
    let apix = row[1];
    let f: Vec<[f32; 2]> = freqs.iter().map(|k| [k[0] / apix, k[1] / apix]).collect();
    let mut out = vec![0.0f32; f.len()];
    compute_ctf_into(&f, &Ctf::from_row(row), &mut out);
    out
}

/// The in-plane rotation Rz(ψ) (row-major, `[[c, −s, 0], [s, c, 0], [0, 0, 1]]`, as
/// `simulate --pose-dist inplane`).
pub fn rz(psi: f64) -> Mat3 {
    let (s, c) = psi.sin_cos();
    [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]
}

/// The true generator g\* of a phantom folder (module doc).
pub struct World {
    /// the phantom's `vols.txt`
    pub path: PathBuf,
    vols: Vec<HartleyVolume>,
    /// the states' grid
    pub grid: Grid,
    /// each state's true coordinates (n_states, n_factors), from truth.pkl
    pub truth: Vec<f32>,
    /// box size D
    pub d: usize,
    /// pixel size (Å) of the volumes
    pub apix: f32,
}

impl World {
    /// Open a phantom: `path` is its folder (holding `vols.txt` and `truth.pkl`) or its `vols.txt`.
    /// The states must be a row-major grid ([`Grid::from_truth`]); volumes are sliced as `simulate` does
    /// (oversampling 2).
    pub fn open(path: &Path) -> Result<Self> {
        let list = if path.is_dir() {
            path.join("vols.txt")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&list).map_err(|e| Error::io(&list, e))?;
        let dir = list.parent().unwrap_or(Path::new(""));
        let paths: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| dir.join(l))
            .collect();
        if paths.is_empty() {
            return Err(Error::format(&list, "lists no volumes"));
        }
        let tp = list.with_file_name("truth.pkl");
        let truth = match read_pkl(&tp)? {
            PyValue::Array(a) if a.shape.first() == Some(&paths.len()) => a,
            _ => {
                return Err(Error::format(
                    &tp,
                    format!(
                        "expected a ({}, dim) array of the states' true coordinates",
                        paths.len()
                    ),
                ))
            }
        };
        let dim = truth.shape.iter().skip(1).product::<usize>().max(1);
        let truth = truth.to_f32();
        let grid = Grid::from_truth(&truth, paths.len(), dim)
            .map_err(|e| Error::format(&tp, e.to_string()))?;
        let (mut d, mut apix) = (0usize, 1f32);
        let mut vols = Vec::with_capacity(paths.len());
        for p in &paths {
            let f = MrcFile::open(p)?;
            let h = &f.header;
            if !(h.nx == h.ny && h.ny == h.nz) || h.nx % 2 == 1 {
                return Err(Error::format(
                    p,
                    format!(
                        "not a cubic volume with an even box ({}×{}×{})",
                        h.nz, h.ny, h.nx
                    ),
                ));
            }
            if d == 0 {
                d = h.nx;
                apix = h.apix();
            } else if h.nx != d {
                return Err(Error::format(
                    p,
                    format!("box size {} differs from the first volume's {d}", h.nx),
                ));
            }
            vols.push(HartleyVolume::new(&f.read_all()?, d, 2));
        }
        Ok(World {
            path: list,
            vols,
            grid,
            truth,
            d,
            apix,
        })
    }

    /// Number of states.
    pub fn n_states(&self) -> usize {
        self.vols.len()
    }

    /// Number of true conformational factors.
    pub fn n_factors(&self) -> usize {
        self.grid.n_factors
    }

    /// The true coordinates (in \[0, 1\]) of `state`.
    pub fn coords_of(&self, state: usize) -> &[f32] {
        let k = self.grid.n_factors;
        &self.truth[state * k..(state + 1) * k]
    }

    /// Image parameters at `states` and rotations `rots` (no shift, no CTF).
    pub fn params(&self, states: &[usize], rots: &[Mat3]) -> Result<Vec<ImageParams>> {
        if states.len() != rots.len() {
            return Err(Error::invalid(format!(
                "world: {} states but {} rotations",
                states.len(),
                rots.len()
            )));
        }
        if let Some(&s) = states.iter().find(|&&s| s >= self.n_states()) {
            return Err(Error::invalid(format!(
                "world: state {s} of a phantom with {} states",
                self.n_states()
            )));
        }
        Ok(states
            .iter()
            .zip(rots)
            .map(|(&state, r)| ImageParams {
                state,
                rot: r.map(|v| v as f32),
                trans_px: [0.0, 0.0],
                ctf: None,
            })
            .collect())
    }

    /// Image parameters at grid factor levels `factors` (each of `n_factors` levels in 0..g) and
    /// in-plane angles `psi` (rad).
    pub fn params_inplane(&self, factors: &[Vec<usize>], psi: &[f64]) -> Result<Vec<ImageParams>> {
        let mut states = Vec::with_capacity(factors.len());
        for f in factors {
            if f.len() != self.grid.n_factors || f.iter().any(|&v| v >= self.grid.g) {
                return Err(Error::invalid(format!(
                    "world: factor levels {f:?} are not {} levels in 0..{}",
                    self.grid.n_factors, self.grid.g
                )));
            }
            states.push(self.grid.index(f));
        }
        let rots: Vec<Mat3> = psi.iter().map(|&a| rz(a)).collect();
        self.params(&states, &rots)
    }

    /// Clean images (n, D, D) of `params` (CTF and shifts as given there).
    pub fn render(&self, params: &[ImageParams]) -> Result<Vec<f32>> {
        if let Some(p) = params.iter().find(|p| p.state >= self.n_states()) {
            return Err(Error::invalid(format!(
                "world: state {} of a phantom with {} states",
                p.state,
                self.n_states()
            )));
        }
        let proj = Projector::new(Projection::Fourier(&self.vols), self.d)?;
        Ok(proj.render_batch(params, None))
    }

    /// Images of `params` with white Gaussian noise of standard deviation `sigma` (0: none), image i's
    /// noise drawn from `(seed, i)`.
    pub fn images(&self, params: &[ImageParams], sigma: f64, seed: u64) -> Result<Vec<f32>> {
        let mut imgs = self.render(params)?;
        if sigma > 0.0 {
            add_noise(&mut imgs, self.d * self.d, 0, sigma as f32, seed);
        }
        Ok(imgs)
    }

    /// Grid factor levels (n, each `n_factors` levels in 0..g) and in-plane angles ψ (rad, n) → the model's
    /// representation: [`World::params_inplane`] then [`World::encode`] (no shift, no CTF).
    pub fn encode_factors(
        &self,
        probe: &Probe,
        factors: &[Vec<usize>],
        psi: &[f64],
        sigma: f64,
        seed: u64,
    ) -> Result<Encoding> {
        if factors.len() != psi.len() {
            return Err(Error::invalid(format!(
                "world: {} factor rows but {} angles",
                factors.len(),
                psi.len()
            )));
        }
        let params = self.params_inplane(factors, psi)?;
        self.encode(probe, &params, sigma, seed)
    }

    /// True factors → the model's representation in one call: render `params`, add noise σ (seeded),
    /// encode with the probe (CTF rows and shifts of `params` passed on, so the shift is undone as in
    /// training).
    pub fn encode(
        &self,
        probe: &Probe,
        params: &[ImageParams],
        sigma: f64,
        seed: u64,
    ) -> Result<Encoding> {
        if probe.d() != self.d {
            return Err(Error::invalid(format!(
                "the phantom {} has box {} but the model was trained on {}",
                self.path.display(),
                self.d,
                probe.d()
            )));
        }
        let imgs = self.images(params, sigma, seed)?;
        let ctf: Option<Vec<[f32; 9]>> = params.iter().map(|p| p.ctf).collect();
        let ctf = ctf.filter(|_| params.iter().any(|p| p.ctf.is_some()));
        let trans: Vec<[f32; 2]> = params.iter().map(|p| p.trans_px).collect();
        let shifted = trans.iter().any(|t| t[0] != 0.0 || t[1] != 0.0);
        probe.encode_images(
            &imgs,
            ImageOpts {
                ctf: ctf.as_deref(),
                trans_px: shifted.then_some(trans.as_slice()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fourier::window::Norm;
    use rand_distr::{Distribution, Normal};

    /// White noise through training's preprocessing (no window): the decoder-mask values have the
    /// standard deviation [`hartley_sigma`] gives, to 2% (≈ 40000 values: the estimate's sd is 0.4%).
    #[test]
    fn hartley_noise_level() {
        let (d, n, sigma, std) = (16, 200, 1.3f64, 5.0f64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let nd = Normal::new(0.0f32, sigma as f32).unwrap();
        let imgs: Vec<f32> = (0..n * d * d).map(|_| nd.sample(&mut rng)).collect();
        let norm = Norm {
            mean: 0.0,
            std: std as f32,
        };
        let ht = preprocess_images(&imgs, d, None, true, norm);
        let lattice = Lattice::for_image(d, true).unwrap();
        let m = lattice.circular_mask((d / 2) as f32).unwrap();
        let e = (d + 1) * (d + 1);
        let vals: Vec<f64> = ht
            .chunks_exact(e)
            .flat_map(|h| (0..e).filter(|&k| m[k]).map(move |k| h[k] as f64))
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        let want = hartley_sigma(sigma, d, std);
        assert!(
            (sd / want - 1.0).abs() < 0.02,
            "sd {sd} vs D·σ/std = {want}"
        );
    }
}
