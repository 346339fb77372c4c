//! The coordinate decoder: cryoDRGN's `FTPositionalDecoder` (`--domain fourier`: two outputs
//! on half the lattice, Hermitian symmetry for the other half) and `PositionalDecoder`
//! (`--domain hartley`), a `ResidLinearMLP` on the positional encoding of the rotated lattice
//! coordinates (+ the latent z). Training evaluates it with the fused tape op
//! [`crate::autodiff::Tape::decode_rotated`].

use crate::autodiff::{ParamStore, Tape, Tensor, Var};
use crate::backend::{Activation, Backend, Domain, Float};
use crate::fourier::fft::ihtn_center;
use crate::fourier::window::Norm;
use crate::nn::{Mlp, PeKind, PositionalEncoding};
use crate::{Error, Result};
use rand::Rng;

/// Hyper-parameters of a [`Decoder`] (cryoDRGN `get_decoder`).
#[derive(Clone, Debug)]
pub struct DecoderConfig {
    /// Image size D (pixels, even); the lattice is (D+1)².
    pub d: usize,
    /// Hidden layers of the ResidLinearMLP (`--dec-layers` / `--layers`).
    pub layers: usize,
    /// Hidden width (`--dec-dim` / `--dim`).
    pub dim: usize,
    pub domain: Domain,
    pub pe: PeKind,
    /// Encoding width per axis (`--pe-dim`, default D/2).
    pub pe_dim: Option<usize>,
    /// Standard deviation of the `gaussian` frequencies (`--feat-sigma`).
    pub feat_sigma: f64,
    pub activation: Activation,
    /// Latent width (0: homogeneous).
    pub zdim: usize,
}

/// A positional coordinate decoder; its weights live in a [`ParamStore`].
#[derive(Clone, Debug)]
pub struct Decoder {
    pub pe: PositionalEncoding,
    /// The `gaussian` encoding's unscaled `rand_freqs` (3·pe_dim, 3), saved with the weights.
    pub rand_freqs: Option<Vec<f32>>,
    pub mlp: Mlp,
    pub domain: Domain,
    pub zdim: usize,
    /// Image size D.
    pub d: usize,
}

impl Decoder {
    /// A new decoder whose MLP parameters are `{prefix}decoder.main.*` (the reference's state
    /// dict: `decoder.main.*` for `train_nn`, `decoder.decoder.main.*` inside a VAE).
    ///
    /// `--pe-type none` feeds the coordinates themselves, (x, y, z) ++ z_latent (3 + zdim wide),
    /// to the network: cryoDRGN's `FTSliceDecoder` for `fourier` (the same names as above) and a
    /// bare `ResidLinearMLP` for `hartley`, whose parameters are then `{prefix}main.*`
    /// (`main.*` for `train_nn`, `decoder.main.*` inside a VAE).
    pub fn new<B: Backend>(
        be: &B,
        store: &mut ParamStore<B>,
        prefix: &str,
        cfg: &DecoderConfig,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let (pe, rand_freqs) = if cfg.pe == PeKind::Gaussian {
            let e = cfg.pe_dim.unwrap_or(cfg.d / 2);
            let rf: Vec<f32> = (0..9 * e)
                .map(|_| {
                    let v: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, rng);
                    v as f32 * cfg.feat_sigma as f32
                })
                .collect();
            let rf64: Vec<f64> = rf.iter().map(|&v| v as f64).collect();
            (
                PositionalEncoding::gaussian(&rf64, cfg.d, cfg.zdim)?,
                Some(rf),
            )
        } else {
            (
                PositionalEncoding::new(cfg.pe, cfg.d, cfg.pe_dim, cfg.zdim, None, rng)?,
                None,
            )
        };
        let name = if cfg.pe == PeKind::None && cfg.domain == Domain::Hartley {
            prefix.trim_end_matches('.').to_string()
        } else {
            format!("{prefix}decoder")
        };
        let mlp = Mlp::resid(
            be,
            store,
            &name,
            pe.out_dim(),
            cfg.layers,
            cfg.dim,
            cfg.domain.out_dim(),
            cfg.activation,
            rng,
        )?;
        Ok(Self {
            pe,
            rand_freqs,
            mlp,
            domain: cfg.domain,
            zdim: cfg.zdim,
            d: cfg.d,
        })
    }

    /// Replace the `gaussian` frequencies (from a checkpoint).
    pub fn set_rand_freqs(&mut self, rf: &[f32]) -> Result<()> {
        let rf64: Vec<f64> = rf.iter().map(|&v| v as f64).collect();
        self.pe = PositionalEncoding::gaussian(&rf64, self.d, self.zdim)?;
        self.rand_freqs = Some(rf.to_vec());
        Ok(())
    }

    fn layer_vars<B: Backend>(&self, t: &mut Tape<'_, B>) -> Vec<(Var, Var)> {
        self.mlp
            .layers
            .iter()
            .map(|l| {
                let w = t.param(l.w);
                let b = t.param(l.b.expect("decoder layers have a bias"));
                (w, b)
            })
            .collect()
    }

    /// The decoded slices y (B, P) at the masked lattice `coords` (P, 3) rotated by `rot`
    /// (B, 3, 3), with latents `z` (B, zdim) — one fused tape op. Without a positional
    /// encoding (`--pe-type none`) the same values come from [`Decoder::forward_unfused`]'s
    /// primitive ops (the fused op encodes with at least one frequency), on every backend.
    pub fn forward<B: Backend>(
        &self,
        t: &mut Tape<'_, B>,
        coords: Var,
        rot: Var,
        z: Option<Var>,
    ) -> Result<Var> {
        if self.pe.kind == PeKind::None {
            let c: Vec<[f64; 3]> = t
                .to_vec(coords)?
                .chunks_exact(3)
                .map(|c| [c[0].f64(), c[1].f64(), c[2].f64()])
                .collect();
            let r: Vec<[f64; 9]> = t
                .to_vec(rot)?
                .chunks_exact(9)
                .map(|r| std::array::from_fn(|k| r[k].f64()))
                .collect();
            return self.forward_unfused(t, &c, &r, z);
        }
        let freqs = self.pe.freqs_tensor(t.backend())?;
        let freqs = t.constant(freqs);
        let layers = self.layer_vars(t);
        t.decode_rotated(
            coords,
            rot,
            z,
            freqs,
            self.pe.groups,
            self.domain,
            &layers,
            &self.mlp.residual,
            self.mlp.act,
        )
    }

    /// The same as [`Decoder::forward`] composed from primitive tape ops (rotation and the
    /// z ≤ 0 convention on the host, `fourier_features`, `mlp`, slices, gathers, concat): the
    /// reference the fused op is tested against. `coords` (P, 3) and `rot` (B, 9) on the host.
    pub fn forward_unfused<B: Backend>(
        &self,
        t: &mut Tape<'_, B>,
        coords: &[[f64; 3]],
        rot: &[[f64; 9]],
        z: Option<Var>,
    ) -> Result<Var> {
        let be = t.backend().clone();
        let (p, nb) = (coords.len(), rot.len());
        let ne = self.domain.n_eval(p);
        let mut x = Vec::with_capacity(nb * ne * 3);
        let mut sign = Vec::with_capacity(nb * ne);
        for r in rot {
            for c in &coords[..ne] {
                let mut v = [0.0; 3];
                for (j, vj) in v.iter_mut().enumerate() {
                    *vj = c[0] * r[j] + c[1] * r[3 + j] + c[2] * r[6 + j];
                }
                let s = if self.domain == Domain::Fourier && v[2] > 0.0 {
                    -1.0
                } else {
                    1.0
                };
                x.extend(v.iter().map(|&u| B::Elem::c(s * u)));
                sign.push(B::Elem::c(s));
            }
        }
        let x = t.constant(Tensor::from_slice(&be, &x, &[nb * ne, 3])?);
        self.forward_points(t, x, &sign, nb, p, z)
    }

    /// The decoder on the masked lattice `coords` (P, 3, host) rotated by `rot` (B, 9) row-major, a
    /// tape variable: the same values as [`Decoder::forward`], with gradients reaching `rot` (through the
    /// rotated coordinates and the positional encoding) as well as z and the weights. The points are
    /// v = c·R (row vector, the convention of [`Decoder::forward_unfused`]); for the Fourier domain the
    /// half-lattice points with v_z > 0 are negated (a constant sign taken from the current values, so the
    /// gradient is exact away from v_z = 0). The differentiable pose op of learned poses (PoseVAE) and
    /// pose refinement: composed from primitive ops (gathers, products, sums), not fused.
    pub fn forward_posed<B: Backend>(
        &self,
        t: &mut Tape<'_, B>,
        coords: &[[f64; 3]],
        rot: Var,
        z: Option<Var>,
    ) -> Result<Var> {
        let be = t.backend().clone();
        let sr = t.shape(rot).to_vec();
        if sr.len() != 2 || sr[1] != 9 {
            return Err(Error::Shape {
                what: "forward_posed: rot".into(),
                expected: "(B, 9)".into(),
                got: format!("{sr:?}"),
            });
        }
        let (p, nb) = (coords.len(), sr[0]);
        let ne = self.domain.n_eval(p);
        // Rᵀ row-major: column 3j + i holds R[i][j], so that v_j = Σ_i c_i R[i][j] sums 3 adjacent columns.
        let cols: Vec<Var> = (0..9)
            .map(|k| t.slice(rot, (k % 3) * 3 + k / 3, 1))
            .collect::<Result<_>>()?;
        let rt = t.concat(&cols)?;
        let idx: Vec<u32> = (0..nb)
            .flat_map(|b| std::iter::repeat_n(b as u32, ne))
            .collect();
        let rg = t.gather_rows(rt, &idx)?; // (B·ne, 9)
        let cst: Vec<B::Elem> = (0..nb)
            .flat_map(|_| coords[..ne].iter())
            .flat_map(|c| (0..3).flat_map(move |_| c.iter().map(|&v| B::Elem::c(v))))
            .collect();
        let cst = t.constant(Tensor::from_slice(&be, &cst, &[nb * ne, 9])?);
        let prod = t.mul(rg, cst)?;
        let prod = t.reshape(prod, &[nb * ne * 3, 3])?;
        let v = t.sum_cols(prod, 1.0)?;
        let v = t.reshape(v, &[nb * ne, 3])?;
        let vals = t.to_vec(v)?;
        let sign: Vec<B::Elem> = vals
            .chunks(3)
            .map(|c| {
                let flip = self.domain == Domain::Fourier && c[2].f64() > 0.0;
                B::Elem::c(if flip { -1.0 } else { 1.0 })
            })
            .collect();
        let s3: Vec<B::Elem> = sign.iter().flat_map(|&s| [s, s, s]).collect();
        let s3 = t.constant(Tensor::from_slice(&be, &s3, &[nb * ne, 3])?);
        let x = t.mul(v, s3)?;
        self.forward_points(t, x, &sign, nb, p, z)
    }

    /// The network on rotated (and, for Fourier, sign-flipped) points x (B·ne, 3) with their signs,
    /// and the Hermitian completion of the Fourier half lattice: (B, P).
    fn forward_points<B: Backend>(
        &self,
        t: &mut Tape<'_, B>,
        x: Var,
        sign: &[B::Elem],
        nb: usize,
        p: usize,
        z: Option<Var>,
    ) -> Result<Var> {
        let be = t.backend().clone();
        let ne = self.domain.n_eval(p);
        let coords_z = match z {
            Some(z) => {
                let idx: Vec<u32> = (0..nb)
                    .flat_map(|b| std::iter::repeat_n(b as u32, ne))
                    .collect();
                let zr = t.gather_rows(z, &idx)?;
                t.concat(&[x, zr])?
            }
            None => x,
        };
        let f = self.pe.forward(t, coords_z)?;
        let y = self.mlp.forward(t, f)?;
        match self.domain {
            Domain::Hartley => t.reshape(y, &[nb, p]),
            Domain::Fourier => {
                let re = t.slice(y, 0, 1)?;
                let im = t.slice(y, 1, 1)?;
                let s = t.constant(Tensor::from_slice(&be, sign, &[nb * ne, 1])?);
                let im = t.mul(im, s)?;
                let top = t.sub(re, im)?;
                let top = t.reshape(top, &[nb, ne])?;
                let bot = t.add(re, im)?;
                let c = p / 2;
                let idx: Vec<u32> = (0..nb)
                    .flat_map(|b| (0..c).map(move |j| (b * ne + c - 1 - j) as u32))
                    .collect();
                let bot = t.gather_rows(bot, &idx)?;
                let bot = t.reshape(bot, &[nb, c])?;
                t.concat(&[top, bot])
            }
        }
    }

    /// Evaluate at arbitrary points `x` (n, 3) without the Hermitian assembly: the Hartley
    /// value per point (`fourier`: re − im after the z ≤ 0 convention, as the reference's
    /// `decode(x)[..., 0] − [..., 1]`). Returns (n).
    fn eval_points<B: Backend>(
        &self,
        be: &B,
        store: &ParamStore<B>,
        x: &[[f32; 3]],
        z: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let cin = 3 + self.zdim;
        let mut c = Vec::with_capacity(x.len() * cin);
        let mut sign = Vec::with_capacity(x.len());
        for p in x {
            let s = if self.domain == Domain::Fourier && p[2] > 0.0 {
                -1.0
            } else {
                1.0
            };
            c.extend(p.iter().map(|&v| B::Elem::c((s * v) as f64)));
            if let Some(z) = z {
                c.extend(z.iter().map(|&v| B::Elem::c(v as f64)));
            }
            sign.push(s);
        }
        let mut t = Tape::inference(be, store);
        let cv = t.constant(Tensor::from_slice(be, &c, &[x.len(), cin])?);
        let f = self.pe.forward(&mut t, cv)?;
        let y = self.mlp.forward(&mut t, f)?;
        let y = t.to_vec(y)?;
        Ok(match self.domain {
            Domain::Hartley => y.iter().map(|v| v.f64() as f32).collect(),
            Domain::Fourier => (0..x.len())
                .map(|i| (y[2 * i].f64() - sign[i] as f64 * y[2 * i + 1].f64()) as f32)
                .collect(),
        })
    }
}

/// The reference's `Decoder.eval_volume`: evaluate on the (D+1)³ lattice over [−½, ½]³ slice
/// by slice (`fourier`: only points within radius ½; the z = 0 slice with the Hermitian
/// assembly, the others point by point), un-normalize (`v·norm.std + norm.mean`), drop the last
/// +k plane of every axis and `ihtn_center` → a real-space volume (D, D, D), z slowest.
pub fn eval_volume<B: Backend>(
    be: &B,
    store: &ParamStore<B>,
    dec: &Decoder,
    z: Option<&[f32]>,
    norm: Norm,
) -> Result<Vec<f32>> {
    eval_volume_box(be, store, dec, z, norm, dec.d)
}

/// [`eval_volume`] on the central (d+1)³ points of the lattice (the reference's `eval_vol
/// --downsample d`: same spacing 1/D, extent ½·d/D) → a (d, d, d) volume; `d = D` is
/// [`eval_volume`]. `d` must be even and in 2..=D.
pub fn eval_volume_box<B: Backend>(
    be: &B,
    store: &ParamStore<B>,
    dec: &Decoder,
    z: Option<&[f32]>,
    norm: Norm,
    d_out: usize,
) -> Result<Vec<f32>> {
    if d_out < 2 || !d_out.is_multiple_of(2) || d_out > dec.d {
        return Err(Error::invalid(format!(
            "evaluation box must be even and in 2..={}, got {d_out}",
            dec.d
        )));
    }
    if z.map(|z| z.len()).unwrap_or(0) != dec.zdim {
        return Err(Error::Shape {
            what: "eval_volume: z".into(),
            expected: format!("{} values", dec.zdim),
            got: z.map(|z| z.len()).unwrap_or(0).to_string(),
        });
    }
    let d = d_out;
    let n = d + 1;
    let big = dec.d as f64;
    let lin: Vec<f32> = (0..n)
        .map(|i| (-0.5 * d as f64 / big + i as f64 / big) as f32)
        .collect();
    let r2 = (0.5 * d as f64 / big).powi(2) as f32;
    let mut vol_f = vec![0.0f32; n * n * n];
    for (s, &dz) in lin.iter().enumerate() {
        let pts: Vec<[f32; 3]> = lin
            .iter()
            .flat_map(|&y| lin.iter().map(move |&x| [x, y, dz]))
            .collect();
        let slice = &mut vol_f[s * n * n..(s + 1) * n * n];
        // FTSliceDecoder (`fourier` without an encoding) evaluates every point as `decode`
        // does; the sphere is zeroed after un-normalizing, below
        let slice_decoder = dec.pe.kind == PeKind::None;
        match dec.domain {
            Domain::Hartley => slice.copy_from_slice(&dec.eval_points(be, store, &pts, z)?),
            Domain::Fourier if slice_decoder => {
                slice.copy_from_slice(&dec.eval_points(be, store, &pts, z)?)
            }
            Domain::Fourier => {
                let keep: Vec<usize> = (0..pts.len())
                    .filter(|&i| {
                        let p = pts[i];
                        p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= r2
                    })
                    .collect();
                let kept: Vec<[f32; 3]> = keep.iter().map(|&i| pts[i]).collect();
                let vals = if s == n / 2 {
                    central_slice(be, store, dec, &kept, z)?
                } else {
                    dec.eval_points(be, store, &kept, z)?
                };
                for (&i, v) in keep.iter().zip(vals) {
                    slice[i] = v;
                }
            }
        }
    }
    let outside = if dec.domain == Domain::Fourier && dec.pe.kind == PeKind::None {
        outside_sphere(n)
    } else {
        vec![false; n * n * n]
    };
    let mut vol = vec![0.0f32; d * d * d];
    for k in 0..d {
        for j in 0..d {
            for i in 0..d {
                let at = (k * n + j) * n + i;
                vol[(k * d + j) * d + i] = if outside[at] {
                    0.0
                } else {
                    vol_f[at] * norm.std + norm.mean
                };
            }
        }
    }
    Ok(ihtn_center(&vol, d))
}

/// The voxels of an n³ cube (n odd, z slowest) that cryoDRGN's `utils.zero_sphere` zeroes:
/// radius r > 1 on the grid `linspace(−1, 1, n)` per axis, computed as NumPy does (f64,
/// x_i = i·(2/(n−1)) − 1 with the last point exactly 1; its `meshgrid` order makes the sum
/// (x² + z²) + y² for x fastest, z slowest; then √ and the comparison).
fn outside_sphere(n: usize) -> Vec<bool> {
    let step = 2.0 / (n - 1) as f64;
    let xx: Vec<f64> = (0..n)
        .map(|i| {
            if i == n - 1 {
                1.0
            } else {
                i as f64 * step - 1.0
            }
        })
        .collect();
    let mut out = vec![false; n * n * n];
    for (k, &z) in xx.iter().enumerate() {
        for (j, &y) in xx.iter().enumerate() {
            for (i, &x) in xx.iter().enumerate() {
                out[(k * n + j) * n + i] = (x * x + z * z + y * y).sqrt() > 1.0;
            }
        }
    }
    out
}

/// The z = 0 slice through the fused op with the identity rotation (the reference's
/// `forward`, Hermitian assembly included).
fn central_slice<B: Backend>(
    be: &B,
    store: &ParamStore<B>,
    dec: &Decoder,
    pts: &[[f32; 3]],
    z: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let mut t = Tape::inference(be, store);
    let c: Vec<B::Elem> = pts
        .iter()
        .flat_map(|p| p.iter().map(|&v| B::Elem::c(v as f64)))
        .collect();
    let cv = t.constant(Tensor::from_slice(be, &c, &[pts.len(), 3])?);
    let eye: Vec<B::Elem> = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        .iter()
        .map(|&v| B::Elem::c(v))
        .collect();
    let rv = t.constant(Tensor::from_slice(be, &eye, &[1, 3, 3])?);
    let zv = match z {
        Some(z) => {
            let zz: Vec<B::Elem> = z.iter().map(|&v| B::Elem::c(v as f64)).collect();
            Some(t.constant(Tensor::from_slice(be, &zz, &[1, z.len()])?))
        }
        None => None,
    };
    let y = dec.forward(&mut t, cv, rv, zv)?;
    Ok(t.to_vec(y)?.iter().map(|v| v.f64() as f32).collect())
}
