//! Training data as the reference's `ImageDataset`: images windowed (soft circular window,
//! `--window-r`), inverted by default, `ht2_center`, symmetrized to (D+1)², normalized by
//! `(0, std)` estimated on a sample of the particles; held in memory (default, preprocessed in
//! parallel at start) or read and preprocessed per batch (`--lazy`). [`BatchMaker`] turns a
//! list of particle indices into the tensors one training step needs (translation, masks, CTF),
//! and [`prefetch`] runs it on a background thread so that preprocessing overlaps training.

use crate::fourier::ctf::{compute_ctf_into, Ctf};
use crate::fourier::lattice::Lattice;
use crate::fourier::shift::translate_ht_into;
use crate::fourier::window::{
    estimate_normalization, estimate_normalization_real, normalization_indices, preprocess_images,
    window_mask, Norm,
};
use crate::io::source::ParticleSource;
use crate::meta::{CtfParams, Poses};
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Preprocessed particle images, (N, (D+1)²) Hartley.
pub struct ImageDataset {
    /// Image size D.
    pub d: usize,
    pub n: usize,
    /// The normalization applied (estimated or given with `--norm`).
    pub norm: Norm,
    pub path: PathBuf,
    src: ParticleSource,
    window: Option<Vec<f32>>,
    invert: bool,
    /// (N, (D+1)²) when in memory; None for `--lazy`.
    data: Option<Vec<f32>>,
}

impl ImageDataset {
    /// Open `path` (selecting `ind`), window with inner radius `window_r` (None: no window),
    /// invert when `invert`, normalize by `norm` or the reference's estimate.
    pub fn open(
        path: &Path,
        datadir: Option<&Path>,
        ind: Option<&[usize]>,
        window_r: Option<f32>,
        invert: bool,
        norm: Option<Norm>,
        lazy: bool,
    ) -> Result<Self> {
        let mut src = ParticleSource::open(path, datadir)?;
        if let Some(ind) = ind {
            src = src.select(ind)?;
        }
        let (n, d) = (src.len(), src.d());
        if n == 0 {
            return Err(Error::format(path, "no particles"));
        }
        if d == 0 || !d.is_multiple_of(2) {
            return Err(Error::format(
                path,
                format!("image size must be even, got {d}"),
            ));
        }
        let window = window_r.map(|r| window_mask(d, r, 0.99)).transpose()?;
        let norm = match norm {
            Some(n) => n,
            None => {
                let idx = normalization_indices(n, 1000);
                let mut imgs = vec![0.0f32; idx.len() * d * d];
                for (k, &i) in idx.iter().enumerate() {
                    src.read_into(i, &mut imgs[k * d * d..(k + 1) * d * d])?;
                }
                estimate_normalization(&imgs, d, invert)?
            }
        };
        let mut ds = Self {
            d,
            n,
            norm,
            path: path.to_path_buf(),
            src,
            window,
            invert,
            data: None,
        };
        if !lazy {
            let dd = (d + 1) * (d + 1);
            let mut data = vec![0.0f32; n * dd];
            const CHUNK: usize = 256;
            for (c, out) in data.chunks_mut(CHUNK * dd).enumerate() {
                let start = c * CHUNK;
                let end = start + out.len() / dd;
                let mut raw = vec![0.0f32; (end - start) * d * d];
                ds.src.read_range(start, end, &mut raw)?;
                out.copy_from_slice(&ds.preprocess(&raw));
            }
            ds.data = Some(data);
        }
        Ok(ds)
    }

    fn preprocess(&self, raw: &[f32]) -> Vec<f32> {
        preprocess_images(raw, self.d, self.window.as_deref(), self.invert, self.norm)
    }

    /// The reference's real-space normalization (`ImageDataset.estimate_normalization_real`):
    /// mean and sample std of the raw images (no window, no inversion) at the same sample of
    /// particles as [`ImageDataset::open`]'s estimate. Each stack has its own (cryoDRGN does not
    /// record it).
    pub fn real_norm(&self) -> Result<Norm> {
        let d = self.d;
        let idx = normalization_indices(self.n, 1000);
        let mut imgs = vec![0.0f32; idx.len() * d * d];
        for (k, &i) in idx.iter().enumerate() {
            self.src
                .read_into(i, &mut imgs[k * d * d..(k + 1) * d * d])?;
        }
        estimate_normalization_real(&imgs, d).map_err(|e| Error::format(&self.path, e.to_string()))
    }

    /// Real-space image i (D²), the input of `--encode-mode conv` (the reference's `y_real`):
    /// windowed, inverted when the data are, then `(x − norm.mean) / norm.std` with the
    /// real-space `norm` of [`ImageDataset::real_norm`]. Read from the stack (not kept in memory).
    pub fn real_image(&self, i: usize, norm: Norm) -> Result<Vec<f32>> {
        let mut img = self.src.image(i)?;
        if let Some(w) = &self.window {
            img.iter_mut().zip(w).for_each(|(v, &m)| *v *= m);
        }
        if self.invert {
            img.iter_mut().for_each(|v| *v = -*v);
        }
        norm.apply(&mut img);
        Ok(img)
    }

    /// Preprocessed image i, (D+1)².
    pub fn image(&self, i: usize) -> Result<Vec<f32>> {
        let dd = (self.d + 1) * (self.d + 1);
        match &self.data {
            Some(data) => Ok(data[i * dd..(i + 1) * dd].to_vec()),
            None => {
                let raw = self.src.image(i)?;
                Ok(self.preprocess(&raw))
            }
        }
    }
}

/// One batch of training tensors (B images, P masked pixels, Q encoder pixels).
pub struct Batch {
    /// Particle indices (dataset order).
    pub idx: Vec<usize>,
    /// Rotations (B, 3, 3), row-major.
    pub rot: Vec<f32>,
    /// Translated data at the mask (B, P).
    pub y: Vec<f32>,
    /// CTF at the mask (B, P).
    pub ctf: Option<Vec<f32>>,
    /// Encoder input (B, Q): the translated image at the encoder mask times sign(CTF); with
    /// [`BatchMaker::enc_real`], the real-space image (B, D²), untranslated.
    pub enc: Option<Vec<f32>>,
    /// Tilt pairs: the tilted image's (y, enc) and rotations tilt·R (B, 3, 3).
    pub tilt: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
}

/// One image's parts of a batch: (y, encoder input, CTF, tilted (y, encoder input)).
type ImageParts = (Vec<f32>, Vec<f32>, Vec<f32>, Option<(Vec<f32>, Vec<f32>)>);

/// Everything needed to build [`Batch`]es.
pub struct BatchMaker {
    pub data: ImageDataset,
    pub tilt_data: Option<ImageDataset>,
    /// Tilt rotation (3×3) applied as tilt·R.
    pub tilt_rot: [f32; 9],
    pub poses: Poses,
    pub ctf: Option<CtfParams>,
    pub lattice: Lattice,
    /// Lattice indices of the decoder mask (P).
    pub mask: Vec<usize>,
    /// Lattice indices of the encoder input (Q); None: no encoder (or a real-space one).
    pub enc_mask: Option<Vec<usize>>,
    /// The encoder reads real-space images normalized by this (`--encode-mode conv`; see
    /// [`ImageDataset::real_image`]) instead of Hartley pixels at `enc_mask`.
    pub enc_real: Option<Norm>,
}

/// torch's `sign` (0 at 0).
pub(crate) fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The CTF of particle `i` (row i of `ctf`) at the lattice frequencies `freqs` (cycles/pixel,
/// divided by the row's pixel size to give 1/Å).
pub(crate) fn ctf_image(ctf: &CtfParams, i: usize, freqs: &[[f32; 2]]) -> Vec<f32> {
    let row = &ctf.rows[i];
    let apix = row[1];
    let f: Vec<[f32; 2]> = freqs.iter().map(|k| [k[0] / apix, k[1] / apix]).collect();
    let mut out = vec![0.0f32; f.len()];
    compute_ctf_into(&f, &Ctf::from_row(row), &mut out);
    out
}

impl BatchMaker {
    /// The translated image, its masked values and its encoder input for particle i.
    fn one(
        &self,
        ds: &ImageDataset,
        i: usize,
        ctf_full: Option<&[f32]>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let img = ds.image(i)?;
        let mut tr = img.clone();
        if let Some(trans) = &self.poses.trans {
            let d = self.data.d as f32;
            let t = [trans[i][0] * d, trans[i][1] * d];
            translate_ht_into(&img, self.lattice.freqs2d(), t, &mut tr);
        }
        let y = self.mask.iter().map(|&k| tr[k]).collect();
        let enc = match (self.enc_real, &self.enc_mask) {
            // as the reference: neither translated nor phase-flipped (it refuses a CTF)
            (Some(norm), _) => ds.real_image(i, norm)?,
            (None, Some(em)) => em
                .iter()
                .map(|&k| tr[k] * ctf_full.map(|c| sign(c[k])).unwrap_or(1.0))
                .collect(),
            (None, None) => Vec::new(),
        };
        Ok((y, enc))
    }

    /// The batch of particles `idx`; preprocessing runs in parallel over images.
    pub fn make(&self, idx: &[usize]) -> Result<Batch> {
        let freqs = self.lattice.freqs2d();
        let per: Vec<ImageParts> = idx
            .par_iter()
            .map(|&i| {
                let ctf_full = self.ctf.as_ref().map(|c| ctf_image(c, i, freqs));
                let (y, enc) = self.one(&self.data, i, ctf_full.as_deref())?;
                let tilt = match &self.tilt_data {
                    Some(td) => Some(self.one(td, i, ctf_full.as_deref())?),
                    None => None,
                };
                let c = ctf_full
                    .map(|c| self.mask.iter().map(|&k| c[k]).collect())
                    .unwrap_or_default();
                Ok((y, enc, c, tilt))
            })
            .collect::<Result<_>>()?;
        let mut rot = Vec::with_capacity(9 * idx.len());
        for &i in idx {
            rot.extend_from_slice(&self.poses.rots[i]);
        }
        let cat = |f: &dyn Fn(&ImageParts) -> &[f32]| -> Vec<f32> {
            per.iter().flat_map(|p| f(p).iter().copied()).collect()
        };
        let y = cat(&|p| &p.0);
        let enc = (self.enc_mask.is_some() || self.enc_real.is_some()).then(|| cat(&|p| &p.1));
        let ctf = self.ctf.as_ref().map(|_| cat(&|p| &p.2));
        let tilt = self.tilt_data.as_ref().map(|_| {
            let yt = cat(&|p| &p.3.as_ref().expect("tilt present").0);
            let et = cat(&|p| &p.3.as_ref().expect("tilt present").1);
            let mut rt = Vec::with_capacity(rot.len());
            for r in rot.chunks(9) {
                // tilt · R
                for a in 0..3 {
                    for b in 0..3 {
                        rt.push(
                            (0..3)
                                .map(|k| self.tilt_rot[3 * a + k] * r[3 * k + b])
                                .sum(),
                        );
                    }
                }
            }
            (yt, et, rt)
        });
        Ok(Batch {
            idx: idx.to_vec(),
            rot,
            y,
            ctf,
            enc,
            tilt,
        })
    }
}

/// Build the batches `order.chunks(batch_size)` on a background thread, at most two ahead.
/// Receive them with [`PoolRecv`] where the receiver runs on a worker of rayon's pool.
pub fn prefetch(
    maker: Arc<BatchMaker>,
    order: Vec<usize>,
    batch_size: usize,
) -> PoolRecv<Result<Batch>> {
    let (tx, rx) = sync_channel(2);
    std::thread::spawn(move || {
        for idx in order.chunks(batch_size.max(1)) {
            let b = maker.make(idx);
            let stop = b.is_err();
            if tx.send(b).is_err() || stop {
                return;
            }
        }
    });
    PoolRecv(rx)
}

/// A channel's receiving end that waits without holding up rayon's pool: on a pool worker
/// (training runs on one), while nothing has arrived it runs the pool's pending jobs — the
/// sender's own parallel work among them, which would otherwise wait for this worker (with one
/// thread, forever) — and naps briefly when there are none. Off the pool it blocks as usual.
pub struct PoolRecv<T>(Receiver<T>);

impl<T> Iterator for PoolRecv<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        use std::sync::mpsc::TryRecvError;
        loop {
            match self.0.try_recv() {
                Ok(v) => return Some(v),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => match rayon::yield_now() {
                    None => return self.0.recv().ok(),
                    Some(rayon::Yield::Executed) => {}
                    Some(rayon::Yield::Idle) => {
                        std::thread::sleep(std::time::Duration::from_micros(50))
                    }
                },
            }
        }
    }
}
