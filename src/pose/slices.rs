//! Where a pose search gets the model's central slices from ([`SliceModel`]).
//!
//! A slice for rotation R is the model's Hartley value at every band-limited lattice point c
//! rotated as a row vector, `ŷ(c) = V̂(c·R)` (lattice units: c ∈ [−½, ½]², frequency k = c·D).
//!
//! | model | what | cost per slice |
//! |---|---|---|
//! | [`DecoderSlices`] | the decoder evaluated at the rotated points (the reference's `eval_grid`) | P network evaluations |
//! | [`VolumeSlices`] | trilinear interpolation in the transform of a volume, zero-padded `o`× | 8·P reads |
//! | [`LatentGridSlices`] | per image: the decoder with that image's z evaluated once on a grid of spacing 1/(o·D) filling the band's ball, then trilinear interpolation | ≈ 4π/3·(o·L)³ evaluations per image, shared by all its slices |
//!
//! [`VolumeSlices::from_decoder`] turns a homogeneous decoder into a volume once (the
//! reference's `eval_volume` on the lattice points the band reaches, then the volume's
//! oversampled transform), so
//! a search over thousands of rotations per image costs interpolations instead of network
//! evaluations. With `o = 2` the interpolation error is about 1% of the slice (see
//! [`crate::fourier::slice`]); at rotations that map the lattice onto itself the slices are the
//! decoder's values exactly.

use crate::autodiff::{ParamStore, Tape, Tensor};
use crate::backend::cpu::CpuBackend;
use crate::backend::Domain;
use crate::fourier::slice::HartleyVolume;
use crate::fourier::window::Norm;
use crate::model::decoder::eval_volume_box;
use crate::model::Decoder;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A source of model slices for a pose search.
pub trait SliceModel: Sync {
    /// Whether every image sees the same slices (a homogeneous model): the search then computes
    /// each distinct rotation once per batch and shares it.
    fn shared(&self) -> bool;

    /// Slices (n, P), row i the model's values at `coords` (P, 3, lattice units) rotated by
    /// `rots[i]` (row-major 3×3, `x = c·R`), for image `owners[i]` of the batch (ignored when
    /// [`SliceModel::shared`]). `coords` is a centrally symmetric list in lattice order (a masked
    /// lattice), as the Fourier decoder needs.
    fn slices(&self, coords: &[[f32; 3]], rots: &[[f32; 9]], owners: &[usize]) -> Result<Vec<f32>>;
}

/// `c·R` for a row vector c and a row-major R.
#[inline]
fn rotate(c: &[f32; 3], r: &[f32; 9]) -> [f32; 3] {
    [
        c[0] * r[0] + c[1] * r[3] + c[2] * r[6],
        c[0] * r[1] + c[1] * r[4] + c[2] * r[7],
        c[0] * r[2] + c[1] * r[5] + c[2] * r[8],
    ]
}

/// Slices sampled from a volume's oversampled Hartley transform (shared by every image).
pub struct VolumeSlices {
    /// The transform of a box of `vol.d` voxels with frequency step 1/D: the whole volume
    /// (`vol.d = D`) or its band |k| < vol.d/2 ([`VolumeSlices::from_decoder`] with a radius).
    pub vol: HartleyVolume,
    /// Image size D (lattice coordinates c are frequencies c·D).
    pub d: usize,
}

impl VolumeSlices {
    /// From a real-space volume (D, D, D), z slowest, in the units of the (normalized) images.
    ///
    /// # Panics
    /// If `vol.len() != d³` or `oversample == 0`.
    pub fn from_volume(vol: &[f32], d: usize, oversample: usize) -> Self {
        VolumeSlices {
            vol: HartleyVolume::new(vol, d, oversample),
            d,
        }
    }

    /// From a homogeneous decoder: its values on the lattice points |k_i| ≤ b/2 of the (D+1)³
    /// lattice (`eval_volume_box` without un-normalization; b the smallest even size ≥ 2·(radius + 2),
    /// at most D) transformed back to a b³ box and forward again with `oversample`× zero padding.
    /// Slices are then exact up to `radius` pixels (the interpolation reaches one step further).
    pub fn from_decoder(
        be: &CpuBackend<f32>,
        store: &ParamStore<CpuBackend<f32>>,
        decoder: &Decoder,
        oversample: usize,
        radius: usize,
    ) -> Result<Self> {
        if decoder.zdim != 0 {
            return Err(Error::invalid(
                "VolumeSlices::from_decoder: the decoder has a latent; use LatentGridSlices",
            ));
        }
        if oversample == 0 {
            return Err(Error::invalid("oversampling must be at least 1"));
        }
        let b = (2 * (radius + 2)).min(decoder.d);
        let norm = Norm {
            mean: 0.0,
            std: 1.0,
        };
        let vol = eval_volume_box(be, store, decoder, None, norm, b)?;
        Ok(VolumeSlices {
            vol: HartleyVolume::new(&vol, b, oversample),
            d: decoder.d,
        })
    }
}

impl SliceModel for VolumeSlices {
    fn shared(&self) -> bool {
        true
    }

    fn slices(
        &self,
        coords: &[[f32; 3]],
        rots: &[[f32; 9]],
        _owners: &[usize],
    ) -> Result<Vec<f32>> {
        let p = coords.len();
        let d = self.d as f32;
        let mut out = vec![0f32; rots.len() * p];
        out.par_chunks_mut(p.max(1))
            .zip(rots.par_iter())
            .for_each(|(o, r)| {
                for (v, c) in o.iter_mut().zip(coords) {
                    let x = rotate(c, r);
                    *v = self.vol.sample([x[0] * d, x[1] * d, x[2] * d]);
                }
            });
        Ok(out)
    }
}

/// Points per decoder call (bounds the MLP activations: 2^16 points × hidden width).
const DECODE_POINTS: usize = 1 << 16;

/// The decoder evaluated at every rotated point (exact; the reference's `eval_grid`).
pub struct DecoderSlices<'a> {
    pub be: &'a CpuBackend<f32>,
    pub store: &'a ParamStore<CpuBackend<f32>>,
    pub decoder: &'a Decoder,
    /// Latents of the batch's images (nb, zdim); None for a homogeneous decoder.
    pub z: Option<&'a [f32]>,
}

impl SliceModel for DecoderSlices<'_> {
    fn shared(&self) -> bool {
        self.z.is_none()
    }

    fn slices(&self, coords: &[[f32; 3]], rots: &[[f32; 9]], owners: &[usize]) -> Result<Vec<f32>> {
        let (p, zd) = (coords.len(), self.decoder.zdim);
        if self.z.is_some() != (zd > 0) {
            return Err(Error::invalid(format!(
                "DecoderSlices: the decoder has zdim {zd} but {} latents were given",
                if self.z.is_some() { "" } else { "no" }
            )));
        }
        if owners.len() != rots.len() && self.z.is_some() {
            return Err(Error::Shape {
                what: "DecoderSlices: owners".into(),
                expected: format!("{} (one per rotation)", rots.len()),
                got: owners.len().to_string(),
            });
        }
        let be = self.be;
        let flat: Vec<f32> = coords.iter().flatten().copied().collect();
        let per = (DECODE_POINTS / p.max(1)).max(1);
        let mut out = Vec::with_capacity(rots.len() * p);
        for (ci, chunk) in rots.chunks(per).enumerate() {
            let nc = chunk.len();
            let mut t = Tape::inference(be, self.store);
            let cv = t.constant(Tensor::from_slice(be, &flat, &[p, 3])?);
            let r: Vec<f32> = chunk.iter().flatten().copied().collect();
            let rv = t.constant(Tensor::from_slice(be, &r, &[nc, 3, 3])?);
            let zv = match self.z {
                Some(z) => {
                    let mut zz = Vec::with_capacity(nc * zd);
                    for &o in &owners[ci * per..ci * per + nc] {
                        let row = z.get(o * zd..(o + 1) * zd).ok_or_else(|| {
                            Error::invalid(format!("DecoderSlices: no latent for image {o}"))
                        })?;
                        zz.extend_from_slice(row);
                    }
                    Some(t.constant(Tensor::from_slice(be, &zz, &[nc, zd])?))
                }
                None => None,
            };
            let y = self.decoder.forward(&mut t, cv, rv, zv)?;
            out.extend(t.to_vec(y)?);
        }
        Ok(out)
    }
}

/// Per image, the decoder with that image's latent evaluated once on a cubic grid of spacing
/// 1/(o·D) (lattice units) inside the ball the requested slices reach, then trilinear
/// interpolation: for the thousands of base-grid rotations of one image this costs
/// ≈ 4π/3·(o·L + 2)³ network evaluations instead of thousands × P.
pub struct LatentGridSlices<'a> {
    pub be: &'a CpuBackend<f32>,
    pub store: &'a ParamStore<CpuBackend<f32>>,
    pub decoder: &'a Decoder,
    /// Latents of the batch's images (nb, zdim).
    pub z: &'a [f32],
    /// Grid oversampling o ≥ 1 relative to the lattice spacing 1/D.
    pub oversample: usize,
    /// Grids built at least to this radius (lattice units): the search's final band, so that
    /// one grid per image serves the base grid and every refinement level.
    pub min_radius: f32,
    /// Keep each image's grid for later calls (`None`: build per call).
    pub cache: Option<GridCache>,
}

/// The grids of a batch's images, kept by [`LatentGridSlices`] between the calls of one search.
#[derive(Default)]
pub struct GridCache(Mutex<HashMap<usize, Arc<Grid>>>);

/// Values on the cube of grid points `[−m, m]³` (spacing h lattice units), z slowest; zero
/// outside the evaluated ball, which covers every cell of a point within radius `r`.
struct Grid {
    m: usize,
    h: f32,
    r: f32,
    data: Vec<f32>,
}

impl Grid {
    /// Trilinear interpolation at x (lattice units); zero outside the cube.
    #[inline]
    fn sample(&self, x: [f32; 3]) -> f32 {
        let n = 2 * self.m + 1;
        let m = self.m as f32;
        let g = x.map(|v| v / self.h + m);
        let hi = (n - 1) as f32;
        if !g.iter().all(|&v| v >= 0.0 && v <= hi) {
            return 0.0;
        }
        let lo = g.map(|v| (v.floor() as usize).min(n - 2));
        let f = [
            g[0] - lo[0] as f32,
            g[1] - lo[1] as f32,
            g[2] - lo[2] as f32,
        ];
        let at = |z: usize, y: usize, x: usize| self.data[(z * n + y) * n + x];
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let [x0, y0, z0] = lo;
        let c00 = lerp(at(z0, y0, x0), at(z0, y0, x0 + 1), f[0]);
        let c01 = lerp(at(z0, y0 + 1, x0), at(z0, y0 + 1, x0 + 1), f[0]);
        let c10 = lerp(at(z0 + 1, y0, x0), at(z0 + 1, y0, x0 + 1), f[0]);
        let c11 = lerp(at(z0 + 1, y0 + 1, x0), at(z0 + 1, y0 + 1, x0 + 1), f[0]);
        lerp(lerp(c00, c01, f[1]), lerp(c10, c11, f[1]), f[2])
    }
}

/// The decoder's Hartley values at `pts` (n, 3; a centrally symmetric list: point i and
/// n − 1 − i antipodal) with latent `z`, evaluated in chunks that keep the symmetry the Fourier
/// decoder's Hermitian assembly relies on (a chunk is a run of the first half plus its mirror).
pub fn decode_points(
    be: &CpuBackend<f32>,
    store: &ParamStore<CpuBackend<f32>>,
    decoder: &Decoder,
    z: Option<&[f32]>,
    pts: &[[f32; 3]],
) -> Result<Vec<f32>> {
    let n = pts.len();
    let eye = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let mut out = vec![0f32; n];
    let eval = |idx: &[usize]| -> Result<Vec<f32>> {
        let flat: Vec<f32> = idx.iter().flat_map(|&i| pts[i]).collect();
        let mut t = Tape::inference(be, store);
        let cv = t.constant(Tensor::from_slice(be, &flat, &[idx.len(), 3])?);
        let rv = t.constant(Tensor::from_slice(be, &eye, &[1, 3, 3])?);
        let zv = match z {
            Some(z) => Some(t.constant(Tensor::from_slice(be, z, &[1, z.len()])?)),
            None => None,
        };
        let y = decoder.forward(&mut t, cv, rv, zv)?;
        t.to_vec(y)
    };
    if decoder.domain == Domain::Hartley {
        for start in (0..n).step_by(DECODE_POINTS) {
            let idx: Vec<usize> = (start..(start + DECODE_POINTS).min(n)).collect();
            out[start..start + idx.len()].copy_from_slice(&eval(&idx)?);
        }
        return Ok(out);
    }
    let half = n.div_ceil(2);
    let step = DECODE_POINTS / 2;
    let mut a = 0;
    while a < half {
        let b = (a + step).min(half);
        // [a, b) and its mirror [n − b, n − a); the centre point (odd n) is its own mirror.
        let mut idx: Vec<usize> = (a..b).collect();
        idx.extend((n - b..n - a).filter(|&i| i >= b));
        let vals = eval(&idx)?;
        for (&i, v) in idx.iter().zip(vals) {
            out[i] = v;
        }
        a = b;
    }
    Ok(out)
}

impl LatentGridSlices<'_> {
    /// The grid of image `owner` covering radius `r` (lattice units).
    fn grid(&self, owner: usize, r: f32) -> Result<Grid> {
        let zd = self.decoder.zdim;
        let z = self.z.get(owner * zd..(owner + 1) * zd).ok_or_else(|| {
            Error::invalid(format!("LatentGridSlices: no latent for image {owner}"))
        })?;
        let o = self.oversample.max(1);
        let h = 1.0 / (o * self.decoder.d) as f32;
        // Every corner of a cell holding a point within r lies within r + √3·h < r + 2h.
        let rg = r / h + 2.0;
        let m = rg.ceil() as usize;
        let n = 2 * m + 1;
        let mut keep = Vec::new();
        let mut pts = Vec::new();
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let g = [
                        i as f32 - m as f32,
                        j as f32 - m as f32,
                        k as f32 - m as f32,
                    ];
                    if g[0] * g[0] + g[1] * g[1] + g[2] * g[2] <= rg * rg {
                        keep.push((k * n + j) * n + i);
                        pts.push(g.map(|v| v * h));
                    }
                }
            }
        }
        let vals = decode_points(self.be, self.store, self.decoder, Some(z), &pts)?;
        let mut data = vec![0f32; n * n * n];
        for (&i, v) in keep.iter().zip(vals) {
            data[i] = v;
        }
        Ok(Grid { m, h, r, data })
    }
}

impl SliceModel for LatentGridSlices<'_> {
    fn shared(&self) -> bool {
        false
    }

    fn slices(&self, coords: &[[f32; 3]], rots: &[[f32; 9]], owners: &[usize]) -> Result<Vec<f32>> {
        if owners.len() != rots.len() {
            return Err(Error::Shape {
                what: "LatentGridSlices: owners".into(),
                expected: format!("{} (one per rotation)", rots.len()),
                got: owners.len().to_string(),
            });
        }
        let p = coords.len();
        let r = coords
            .iter()
            .map(|c| (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt())
            .fold(0f32, f32::max);
        let mut out = vec![0f32; rots.len() * p];
        let mut distinct: Vec<usize> = owners.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for o in distinct {
            let cached = self.cache.as_ref().and_then(|c| {
                let map = c.0.lock().unwrap_or_else(|e| e.into_inner());
                map.get(&o).filter(|g| g.r >= r).cloned()
            });
            let g = match cached {
                Some(g) => g,
                None => {
                    let g = Arc::new(self.grid(o, r.max(self.min_radius))?);
                    if let Some(c) = &self.cache {
                        let mut map = c.0.lock().unwrap_or_else(|e| e.into_inner());
                        map.insert(o, Arc::clone(&g));
                    }
                    g
                }
            };
            out.par_chunks_mut(p.max(1))
                .zip(rots.par_iter().zip(owners.par_iter()))
                .filter(|(_, (_, &w))| w == o)
                .for_each(|(row, (rot, _))| {
                    for (v, c) in row.iter_mut().zip(coords) {
                        *v = g.sample(rotate(c, rot));
                    }
                });
        }
        Ok(out)
    }
}
