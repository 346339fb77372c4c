//! cryoDRGN's positional encodings of lattice coordinates (`PositionalDecoder` /
//! `FTPositionalDecoder.positional_encoding_geom`).
//!
//! Input: coords (N, 3 + zdim), x, y, z in [−0.5, 0.5] followed by the latent z. Output
//! (N, 6·enc_dim + zdim): for the per-axis encodings, for each axis j in (x, y, z),
//! `[sin(c_j f_0..f_{e−1}), cos(c_j f_0..f_{e−1})]`; for `gaussian`, `[sin k, cos k]` with
//! `k = c·(rand_freqs·D/2)ᵀ` over 3·enc_dim random frequencies; then the latent.
//!
//! Frequencies (e = enc_dim, D2 = D/2, DD = 2·D2, i = 0..e):
//! - `geom_ft`: DD·π·(2/DD)^(i/(e−1)); `geom_full`: DD·π·(1/(DD·π))^(i/(e−1));
//! - `geom_lowf`: D2·(1/D2)^(i/(e−1)); `geom_nohighf`: D2·(2π/D2)^(i/(e−1));
//! - `linear_lowf`: 1, 2, …, D2 (needs e = D2); `gaussian`: N(0, feat_sigma²)·D2;
//! - `none`: the coordinates unchanged (width 3 + zdim).
//!
//! The frequencies are computed in f32 arithmetic, as the reference does, so f32 runs see the
//! reference's values. Evaluation is the backend primitive `fourier_features`.

use crate::autodiff::{Tape, Tensor, Var};
use crate::backend::Backend;
use crate::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::str::FromStr;

/// The encoding types of cryoDRGN's `--pe-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeKind {
    GeomFt,
    GeomFull,
    GeomLowf,
    GeomNohighf,
    LinearLowf,
    Gaussian,
    None,
}

impl FromStr for PeKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "geom_ft" => PeKind::GeomFt,
            "geom_full" => PeKind::GeomFull,
            "geom_lowf" => PeKind::GeomLowf,
            "geom_nohighf" => PeKind::GeomNohighf,
            "linear_lowf" => PeKind::LinearLowf,
            "gaussian" => PeKind::Gaussian,
            "none" => PeKind::None,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown positional encoding `{s}` (expected geom_ft, geom_full, geom_lowf, geom_nohighf, linear_lowf, gaussian or none)"
                )))
            }
        })
    }
}

/// A positional encoding with its fixed frequency matrix.
#[derive(Clone, Debug)]
pub struct PositionalEncoding {
    pub kind: PeKind,
    /// Box size D (pixels).
    pub d: usize,
    pub enc_dim: usize,
    pub zdim: usize,
    /// Frequency matrix (m, 3), row-major, m = 3·enc_dim (empty for `none`).
    pub freqs: Vec<f64>,
    /// Row groups of `freqs` (3 for per-axis encodings, 1 for `gaussian`).
    pub groups: usize,
}

impl PositionalEncoding {
    /// The encoding `kind` for box size `d`; `enc_dim` defaults to D/2 like cryoDRGN;
    /// `gaussian` draws its frequencies from `rng` with standard deviation `feat_sigma`.
    pub fn new(
        kind: PeKind,
        d: usize,
        enc_dim: Option<usize>,
        zdim: usize,
        feat_sigma: Option<f64>,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let d2 = d / 2;
        let e = enc_dim.unwrap_or(d2);
        if kind == PeKind::Gaussian {
            let sigma = feat_sigma
                .ok_or_else(|| Error::invalid("gaussian positional encoding needs feat_sigma"))?;
            let rf: Vec<f64> = (0..9 * e)
                .map(|_| {
                    let v: f64 = StandardNormal.sample(rng);
                    (v as f32 * sigma as f32) as f64
                })
                .collect();
            return Self::gaussian(&rf, d, zdim);
        }
        let scale_base = |scale: f32, base: f32| -> Result<Vec<f32>> {
            if e < 2 {
                return Err(Error::invalid(format!(
                    "{kind:?} positional encoding needs enc_dim ≥ 2, got {e}"
                )));
            }
            Ok((0..e)
                .map(|i| scale * base.powf(i as f32 / (e - 1) as f32))
                .collect())
        };
        let dd = (2 * d2) as f32;
        let ddpi = (dd as f64 * std::f64::consts::PI) as f32;
        let f: Vec<f32> = match kind {
            PeKind::GeomFt => scale_base(ddpi, 2.0 / dd)?,
            PeKind::GeomFull => scale_base(ddpi, (1.0 / dd as f64 / std::f64::consts::PI) as f32)?,
            PeKind::GeomLowf => scale_base(d2 as f32, 1.0 / d2 as f32)?,
            PeKind::GeomNohighf => {
                scale_base(d2 as f32, (2.0 * std::f64::consts::PI / d2 as f64) as f32)?
            }
            PeKind::LinearLowf => {
                if e != d2 {
                    return Err(Error::invalid(format!(
                        "linear_lowf needs enc_dim = D/2 = {d2}, got {e}"
                    )));
                }
                (1..=d2).map(|i| i as f32).collect()
            }
            PeKind::None => {
                return Ok(Self {
                    kind,
                    d,
                    enc_dim: 0,
                    zdim,
                    freqs: vec![],
                    groups: 1,
                });
            }
            PeKind::Gaussian => unreachable!("handled above"),
        };
        let mut freqs = vec![0.0; 9 * e];
        for j in 0..3 {
            for (i, &fi) in f.iter().enumerate() {
                freqs[(j * e + i) * 3 + j] = fi as f64;
            }
        }
        Ok(Self {
            kind,
            d,
            enc_dim: e,
            zdim,
            freqs,
            groups: 3,
        })
    }

    /// The `gaussian` encoding from given random frequencies `rand_freqs` (3·enc_dim, 3)
    /// (cryoDRGN's `rand_freqs` parameter, e.g. loaded from a checkpoint); they are scaled by D/2.
    pub fn gaussian(rand_freqs: &[f64], d: usize, zdim: usize) -> Result<Self> {
        if rand_freqs.is_empty() || !rand_freqs.len().is_multiple_of(9) {
            return Err(Error::Shape {
                what: "gaussian rand_freqs".into(),
                expected: "(3·enc_dim, 3)".into(),
                got: format!("{} values", rand_freqs.len()),
            });
        }
        let d2 = (d / 2) as f32;
        let freqs = rand_freqs.iter().map(|&v| (v as f32 * d2) as f64).collect();
        Ok(Self {
            kind: PeKind::Gaussian,
            d,
            enc_dim: rand_freqs.len() / 9,
            zdim,
            freqs,
            groups: 1,
        })
    }

    /// Width of the encoded features: 6·enc_dim + zdim (3 + zdim for `none`).
    pub fn out_dim(&self) -> usize {
        if self.kind == PeKind::None {
            3 + self.zdim
        } else {
            6 * self.enc_dim + self.zdim
        }
    }

    /// The frequency matrix as a backend tensor (m, 3).
    pub fn freqs_tensor<B: Backend>(&self, be: &B) -> Result<Tensor<B>> {
        let f: Vec<B::Elem> = self
            .freqs
            .iter()
            .map(|&v| <B::Elem as crate::backend::Float>::c(v))
            .collect();
        Tensor::from_slice(be, &f, &[self.freqs.len() / 3, 3])
    }

    /// Encode coords (…, 3 + zdim) on the tape.
    pub fn forward<B: Backend>(&self, t: &mut Tape<'_, B>, coords: Var) -> Result<Var> {
        let c = t.shape(coords).last().copied().unwrap_or(0);
        if c != 3 + self.zdim {
            return Err(Error::Shape {
                what: "positional encoding: coords".into(),
                expected: format!("(…, {})", 3 + self.zdim),
                got: format!("{:?}", t.shape(coords)),
            });
        }
        if self.kind == PeKind::None {
            return Ok(coords);
        }
        let f = self.freqs_tensor(t.backend())?;
        let f = t.constant(f);
        t.fourier_features(coords, f, self.groups)
    }
}
