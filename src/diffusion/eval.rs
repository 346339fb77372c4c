//! Evaluation of a latent prior against data latents: PCA of the data, total variation distance of
//! the PC1 marginals (paper Table 1), and a Gaussian kernel density for the "no samples in the empty
//! region" check of interpolations.

use crate::analysis::pca::Pca;
use crate::{Error, Result};

/// The `q`-quantile (0..1, nearest rank) of `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)]
}

/// Total variation distance ½Σ|p_k − q_k| between the histograms of `a` and `b` on `bins` equal
/// bins spanning the 0.5–99.5 % quantiles of `a` (so that a few outlying latents do not stretch
/// the bins), plus an underflow and an overflow bin for both, so that mass outside counts too.
pub fn tvd_hist(a: &[f64], b: &[f64], bins: usize) -> Result<f64> {
    if a.is_empty() || b.is_empty() || bins == 0 {
        return Err(Error::invalid("tvd: empty input or zero bins"));
    }
    let (lo, hi) = (quantile(a, 0.005), quantile(a, 0.995));
    let w = ((hi - lo) / bins as f64).max(f64::MIN_POSITIVE);
    let hist = |v: &[f64]| {
        let mut h = vec![0.0; bins + 2];
        for &x in v {
            let k = if x < lo {
                bins
            } else if x > hi {
                bins + 1
            } else {
                (((x - lo) / w) as usize).min(bins - 1)
            };
            h[k] += 1.0 / v.len() as f64;
        }
        h
    };
    let (p, q) = (hist(a), hist(b));
    Ok(0.5 * p.iter().zip(&q).map(|(x, y)| (x - y).abs()).sum::<f64>())
}

/// Gaussian kernel density estimate over data `(n, d)` with Scott's bandwidth
/// h = n^{−1/(d+4)}·(mean per-axis std), isotropic.
pub struct Kde {
    pub data: Vec<f64>,
    pub d: usize,
    pub bandwidth: f64,
}

impl Kde {
    /// Fit to `data (n, d)`.
    pub fn new(data: &[f64], d: usize) -> Result<Self> {
        let n = data.len() / d;
        let as_f32: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        let pca = Pca::fit(&as_f32, n, d)?;
        let s = pca
            .explained_variance
            .iter()
            .map(|v| v.max(0.0).sqrt())
            .sum::<f64>()
            / d as f64;
        Ok(Self {
            data: data.to_vec(),
            d,
            bandwidth: s * (n as f64).powf(-1.0 / (d as f64 + 4.0)),
        })
    }

    /// Density (unnormalized by (2πh²)^{d/2}; same scale for every query) at rows `x (m, d)`.
    pub fn density(&self, x: &[f64]) -> Vec<f64> {
        let d = self.d;
        let n = self.data.len() / d;
        let h2 = self.bandwidth * self.bandwidth;
        x.chunks(d)
            .map(|q| {
                self.data
                    .chunks(d)
                    .map(|r| {
                        let r2: f64 = r.iter().zip(q).map(|(a, b)| (a - b).powi(2)).sum();
                        (-0.5 * r2 / h2).exp()
                    })
                    .sum::<f64>()
                    / n as f64
            })
            .collect()
    }

    /// The `q`-quantile (0..1) of the density at the data points themselves: a threshold below
    /// which a point lies in a region the data (almost) never visits.
    pub fn data_quantile(&self, q: f64) -> f64 {
        let mut dens = self.density(&self.data);
        dens.sort_by(f64::total_cmp);
        let k = ((q * dens.len() as f64) as usize).min(dens.len() - 1);
        dens[k]
    }
}

/// Fraction of rows of `x (m, d)` whose KDE density is below `threshold`.
pub fn fraction_below(kde: &Kde, x: &[f64], threshold: f64) -> f64 {
    let dens = kde.density(x);
    dens.iter().filter(|&&v| v < threshold).count() as f64 / dens.len().max(1) as f64
}
