//! The computations of `analyze-convergence` (cryoDRGN 4.3.1's `cryodrgn_utils
//! analyze_convergence`): how far a `train-vae` run still moves between epochs.
//!
//! 1. [`parse_loss`]: the total loss per epoch from `run.log`.
//! 2. [`latent_shifts`]: for three successive epochs' latents `z₁, z₂, z₃`, the medians over
//!    particles of `(z₂−z₁)·(z₃−z₂)`, `‖z₃−z₂‖` and the cosine distance `1 − cos∠(z₃−z₂, z₂−z₁)`.
//! 3. [`sketch_local_maxima`]: the last epoch's UMAP binned on an `n_bins × n_bins` grid,
//!    smoothed ([`gaussian_filter`], scipy's `ndimage.gaussian_filter`: reflect border, kernel
//!    radius `⌊4σ + ½⌋`), local maxima over the 8 neighbours ([`local_maxima`], scipy's
//!    `maximum_filter` with a mirror border), poorly separated maxima pruned
//!    ([`prune_maxima`]), the highest `final_maxima` kept; each maximum's particles are those in
//!    its 3 × 3 bins.
//! 4. [`representatives`]: for each epoch, the on-data latent nearest to the median latent of
//!    each maximum's particles — a fixed set of particles followed through training.
//! 5. [`masked_cc`] and [`convergence_fsc`]: volumes decoded at those latents, masked
//!    ([`crate::analysis::mask`]), compared between successive epochs by the zero-mean
//!    correlation coefficient and by an FSC on the reference's shells.
//!
//! ## Where this differs from the reference
//! - Latent files are numbered from 1 (`z.1.pkl` … `z.E.pkl`), as cryoDRGN 4.3.1's `train_vae`
//!   writes them; its `analyze_convergence` still asks for `z.0.pkl` and reads volumes as
//!   `vol_000.mrc` where its `eval_vol` now writes `vol_001.mrc`, so it stops on 4.3.1's own runs.
//!   The shift metrics therefore start at epoch 3 (the first with two earlier epochs).
//! - [`parse_loss`] reads any number after `total loss =`; the reference's regex
//!   (`\d.\d+`) skips losses of 10 or more and negative ones.
//! - Ties in the maxima's values (raw counts; the smoothed values match the reference's to the
//!   last bit and rarely tie) are broken by the first maximum (a stable sort), where numpy 2's
//!   SIMD `argsort` orders them as it happens to; a maximum whose 3 × 3 bins hold no particle is dropped (the
//!   reference's median of nothing is NaN).

use crate::error::{Error, Result};
use crate::fourier::fft::fftn_center;

/// Total loss of each epoch in `run.log` text: the number after `total loss =` on lines
/// containing `====` (the reference's `analysis.parse_loss`, see the module doc).
pub fn parse_loss(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.contains("===="))
        .filter_map(|l| {
            let rest = l.split("total loss =").nth(1)?;
            let tok: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
                .collect();
            tok.parse::<f64>().ok()
        })
        .collect()
}

/// The median as numpy's: the mean of the two middle values for an even count, NaN when any
/// value is NaN or there is none.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The three shift metrics of successive latents `z1, z2, z3` (each `(n, zdim)`): medians over
/// particles of the dot product `(z₂−z₁)·(z₃−z₂)`, the magnitude `‖z₃−z₂‖` and the cosine
/// distance `1 − (z₃−z₂)·(z₂−z₁) / (‖z₃−z₂‖‖z₂−z₁‖)` (NaN for a particle that did not move, and
/// then for the median, as numpy's).
pub fn latent_shifts(z1: &[f32], z2: &[f32], z3: &[f32], zdim: usize) -> Result<[f64; 3]> {
    if zdim == 0 || z1.len() != z2.len() || z2.len() != z3.len() || !z1.len().is_multiple_of(zdim) {
        return Err(Error::invalid(format!(
            "latent shifts: latents of {}, {} and {} values do not share one shape (n, {zdim})",
            z1.len(),
            z2.len(),
            z3.len()
        )));
    }
    let n = z1.len() / zdim;
    let (mut dot, mut mag, mut cosd) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let r = i * zdim..(i + 1) * zdim;
        let (mut uv, mut uu, mut vv) = (0.0f64, 0.0f64, 0.0f64);
        for ((&a, &b), &c) in z1[r.clone()].iter().zip(&z2[r.clone()]).zip(&z3[r]) {
            let d21 = b as f64 - a as f64;
            let d32 = c as f64 - b as f64;
            uv += d21 * d32;
            uu += d32 * d32;
            vv += d21 * d21;
        }
        dot.push(uv);
        mag.push(uu.sqrt());
        cosd.push(1.0 - uv / (uu.sqrt() * vv.sqrt()));
    }
    Ok([median(&mut dot), median(&mut mag), median(&mut cosd)])
}

/// A 2-D histogram of points on the reference's grid (`binned_statistic_2d` with
/// `n_bins + 1` edges from each axis' minimum to maximum).
#[derive(Debug, Clone, PartialEq)]
pub struct Hist2d {
    /// bins per axis
    pub n_bins: usize,
    /// `n_bins + 1` edges along the first axis
    pub xedges: Vec<f64>,
    /// `n_bins + 1` edges along the second axis
    pub yedges: Vec<f64>,
    /// counts `(n_bins, n_bins)`, `[ix * n_bins + iy]`
    pub counts: Vec<f64>,
    /// each point's bin `(ix, iy)` (0-based)
    pub bin_of: Vec<(usize, usize)>,
}

/// `n + 1` evenly spaced values from `a` to `b`, the last exactly `b`, as numpy 2's `linspace`
/// computes them for float32 end points (the reference's UMAP is float32, and so are its edges):
/// `f32(f32(i · f32((b − a) / n)) + a)`.
fn edges_f32(a: f32, b: f32, n: usize) -> Vec<f64> {
    let step = (b - a) / n as f32;
    (0..=n)
        .map(|i| if i == n { b } else { i as f32 * step + a } as f64)
        .collect()
}

/// The bin of `x` among `edges` as scipy's `binned_statistic`: `edges[k] ≤ x < edges[k+1]`,
/// the last edge itself in the last bin.
fn bin_index(edges: &[f64], x: f64) -> usize {
    let n = edges.len() - 1;
    let k = edges.partition_point(|&e| e <= x);
    k.clamp(1, n) - 1
}

/// The histogram of the `(n, 2)` points `xy` (float32 values, as a UMAP pickle holds) on an
/// `n_bins`² grid spanning them, with float32 edges as the reference's. Errors on no points,
/// non-finite coordinates or `n_bins` = 0.
pub fn histogram2d(xy: &[f64], n_bins: usize) -> Result<Hist2d> {
    if n_bins == 0
        || xy.is_empty()
        || !xy.len().is_multiple_of(2)
        || xy.iter().any(|v| !v.is_finite())
    {
        return Err(Error::invalid(format!(
            "UMAP histogram: need finite (n, 2) points and at least one bin, got {} values and {n_bins} bins",
            xy.len()
        )));
    }
    let range = |k: usize| {
        xy.iter()
            .skip(k)
            .step_by(2)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    };
    let ((x0, x1), (y0, y1)) = (range(0), range(1));
    let xedges = edges_f32(x0 as f32, x1 as f32, n_bins);
    let yedges = edges_f32(y0 as f32, y1 as f32, n_bins);
    let mut counts = vec![0.0; n_bins * n_bins];
    let bin_of: Vec<(usize, usize)> = xy
        .chunks(2)
        .map(|p| (bin_index(&xedges, p[0]), bin_index(&yedges, p[1])))
        .collect();
    for &(i, j) in &bin_of {
        counts[i * n_bins + j] += 1.0;
    }
    Ok(Hist2d {
        n_bins,
        xedges,
        yedges,
        counts,
        bin_of,
    })
}

/// Index `i` (any integer) folded into `0..n` with scipy's `reflect` border (`d c b a | a b c d
/// | d c b a`).
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let m = i.rem_euclid(2 * n);
    (if m >= n { 2 * n - 1 - m } else { m }) as usize
}

/// Index folded with scipy's `mirror` border (`d c b | a b c d | c b a`).
fn mirror(i: i64, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let p = 2 * (n as i64 - 1);
    let m = i.rem_euclid(p);
    (if m >= n as i64 { p - m } else { m }) as usize
}

/// numpy's sum of a short f64 array (`np.sum`'s pairwise sum below its 128-element block: a
/// plain loop under 8 values, else 8 interleaved partial sums), so that the kernel's
/// normalization rounds as the reference's.
fn numpy_sum(v: &[f64]) -> f64 {
    if v.len() < 8 {
        return v.iter().fold(0.0, |a, &b| a + b);
    }
    let mut r = [0.0f64; 8];
    r.copy_from_slice(&v[..8]);
    let m = v.len() - v.len() % 8;
    for i in (8..m).step_by(8) {
        for k in 0..8 {
            r[k] += v[i + k];
        }
    }
    let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for &x in &v[m..] {
        s += x;
    }
    s
}

/// scipy's `ndimage.gaussian_filter(a, sigma)` of an `(n, n)` array (mode `reflect`,
/// `truncate = 4`): a normalized Gaussian kernel of radius `⌊4σ + ½⌋` along axis 0, then axis
/// 1, each output value summed in scipy's order for a symmetric kernel (the centre, then the
/// pairs `(x₋ⱼ + x₊ⱼ)·wⱼ` from the outermost in), so that the maxima compare as the reference's.
///
/// `sigma` is a float32, as the reference's (a numpy float32 from its float32 edges): σ² and
/// `−½/σ²` round in f32, the kernel `exp(−½/σ² · x²)` is evaluated in f64.
pub fn gaussian_filter(a: &[f64], n: usize, sigma: f32) -> Vec<f64> {
    let radius = if sigma.is_finite() && sigma > 0.0 {
        (4.0 * sigma as f64 + 0.5).floor() as i64
    } else {
        0
    };
    let w: Vec<f64> = if radius == 0 {
        vec![1.0]
    } else {
        let c = (-0.5 / (sigma * sigma)) as f64;
        let phi: Vec<f64> = (-radius..=radius)
            .map(|x| (c * (x * x) as f64).exp())
            .collect();
        let s = numpy_sum(&phi);
        phi.iter().map(|v| v / s).collect()
    };
    let r = radius as usize;
    let filt = |get: &dyn Fn(i64) -> f64| -> f64 {
        let mut o = get(0) * w[r];
        for j in (1..=r).rev() {
            o += (get(-(j as i64)) + get(j as i64)) * w[r - j];
        }
        o
    };
    let mut tmp = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            tmp[i * n + j] = filt(&|k| a[reflect(i as i64 + k, n) * n + j]);
        }
    }
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = filt(&|k| tmp[i * n + reflect(j as i64 + k, n)]);
        }
    }
    out
}

/// The strict local maxima of an `(n, n)` array over its 8 neighbours (mirror border), in
/// row-major order: `((i, j), value)`.
pub fn local_maxima(a: &[f64], n: usize) -> Vec<((usize, usize), f64)> {
    let mut out = Vec::new();
    for i in 0..n {
        for j in 0..n {
            let mut m = f64::NEG_INFINITY;
            for di in -1i64..=1 {
                for dj in -1i64..=1 {
                    if di == 0 && dj == 0 {
                        continue;
                    }
                    let v = a[mirror(i as i64 + di, n) * n + mirror(j as i64 + dj, n)];
                    m = m.max(v);
                }
            }
            let v = a[i * n + j];
            if v > m {
                out.push(((i, j), v));
            }
        }
    }
    out
}

/// The reference's `prune_local_maxima`: while more than `keep` maxima remain and some pair lies
/// within `radius` bins, take the closest such pair and remove its lower maximum. The pair is
/// taken as the reference takes it: the rows of all entries at the smallest distance, in
/// row-major order, first two.
pub fn prune_maxima(
    mut maxima: Vec<((usize, usize), f64)>,
    keep: usize,
    radius: f64,
) -> Vec<((usize, usize), f64)> {
    let dist = |a: (usize, usize), b: (usize, usize)| {
        let (di, dj) = (a.0 as f64 - b.0 as f64, a.1 as f64 - b.1 as f64);
        (di * di + dj * dj).sqrt()
    };
    while maxima.len() > keep {
        let m = maxima.len();
        let mut best = f64::INFINITY;
        for i in 0..m {
            for j in 0..m {
                let d = dist(maxima[i].0, maxima[j].0);
                if d > 0.0 && d <= radius && d < best {
                    best = d;
                }
            }
        }
        if !best.is_finite() {
            break;
        }
        let rows: Vec<usize> = (0..m)
            .flat_map(|i| (0..m).map(move |j| (i, j)))
            .filter(|&(i, j)| {
                let d = dist(maxima[i].0, maxima[j].0);
                d > 0.0 && d <= radius && d == best
            })
            .map(|(i, _)| i)
            .take(2)
            .collect();
        let (a, b) = (rows[0], rows[1]);
        let drop = if maxima[a].1 > maxima[b].1 { b } else { a };
        maxima.remove(drop);
    }
    maxima
}

/// Settings of [`sketch_local_maxima`] (the reference's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SketchOptions {
    /// bins per UMAP axis
    pub n_bins: usize,
    /// smooth the histogram first
    pub smooth: bool,
    /// Gaussian σ as a multiple of one bin's width along UMAP1 (the reference passes that width
    /// in UMAP units to scipy, which reads it in bins; kept for the same maxima). The UMAP is
    /// taken as float32 values, as the reference's pickle holds them
    pub smooth_width: f64,
    /// prune poorly separated maxima until this many remain
    pub pruned_maxima: usize,
    /// distance (bins) below which two maxima are poorly separated
    pub radius: f64,
    /// maxima kept, highest first
    pub final_maxima: usize,
}

impl Default for SketchOptions {
    fn default() -> Self {
        SketchOptions {
            n_bins: 30,
            smooth: true,
            smooth_width: 1.0,
            pruned_maxima: 12,
            radius: 5.0,
            final_maxima: 10,
        }
    }
}

impl SketchOptions {
    /// Errors on settings [`sketch_local_maxima`] cannot use: `final_maxima` outside 1..=26 (the
    /// maxima are labelled A to Z), a negative or non-finite `radius` or `smooth_width`.
    pub fn check(&self) -> Result<()> {
        if self.final_maxima == 0 || self.final_maxima > 26 {
            return Err(Error::invalid(format!(
                "--final-maxima {}: give 1 to 26 (the maxima are labelled A to Z)",
                self.final_maxima
            )));
        }
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.radius) || !ok(self.smooth_width) {
            return Err(Error::invalid(format!(
                "--radius {} and --smooth-width {} must be finite and not negative",
                self.radius, self.smooth_width
            )));
        }
        Ok(())
    }
}

/// What [`sketch_local_maxima`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    /// the histogram of the UMAP
    pub hist: Hist2d,
    /// the histogram the maxima were found on (smoothed or not), `(n_bins, n_bins)`
    pub searched: Vec<f64>,
    /// the kept maxima `((ix, iy), value)`, highest first
    pub maxima: Vec<((usize, usize), f64)>,
    /// for each kept maximum, the particles (rows of the UMAP) in its 3 × 3 bins
    pub members: Vec<Vec<usize>>,
    /// each maximum's median UMAP position over its particles
    pub centers: Vec<(f64, f64)>,
    /// maxima found before pruning
    pub n_found: usize,
    /// maxima left after pruning
    pub n_pruned: usize,
}

impl Sketch {
    /// The kept maxima's values on an otherwise zero `(n_bins, n_bins)` image.
    pub fn peaks_image(&self) -> Vec<f64> {
        let n = self.hist.n_bins;
        let mut img = vec![0.0; n * n];
        for &((i, j), v) in &self.maxima {
            img[i * n + j] = v;
        }
        img
    }
}

/// The reference's `sketch_via_umap_local_maxima` on an `(n, 2)` UMAP (see the module doc).
pub fn sketch_local_maxima(xy: &[f64], opts: &SketchOptions) -> Result<Sketch> {
    opts.check()?;
    let hist = histogram2d(xy, opts.n_bins)?;
    let n = opts.n_bins;
    let searched = if opts.smooth {
        // in f32, as the reference's (see `gaussian_filter`)
        let width = (hist.xedges[1] as f32 - hist.xedges[0] as f32).abs();
        let sigma = opts.smooth_width as f32 * width;
        gaussian_filter(&hist.counts, n, sigma)
    } else {
        hist.counts.clone()
    };
    let found = local_maxima(&searched, n);
    let n_found = found.len();
    let mut maxima = prune_maxima(found, opts.pruned_maxima, opts.radius);
    let n_pruned = maxima.len();
    // highest first; stable on ties
    maxima.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut members = Vec::new();
    let mut kept = Vec::new();
    for &((ci, cj), v) in &maxima {
        let m: Vec<usize> = hist
            .bin_of
            .iter()
            .enumerate()
            .filter(|(_, &(i, j))| i + 1 >= ci && i <= ci + 1 && j + 1 >= cj && j <= cj + 1)
            .map(|(k, _)| k)
            .collect();
        if m.is_empty() {
            continue;
        }
        members.push(m);
        kept.push(((ci, cj), v));
        if kept.len() == opts.final_maxima {
            break;
        }
    }
    if kept.is_empty() {
        return Err(Error::invalid(
            "UMAP sketch: no local maximum of the histogram holds particles (too few particles or \
             bins?)",
        ));
    }
    let centers = members
        .iter()
        .map(|m| {
            let mut xs: Vec<f64> = m.iter().map(|&k| xy[2 * k]).collect();
            let mut ys: Vec<f64> = m.iter().map(|&k| xy[2 * k + 1]).collect();
            (median(&mut xs), median(&mut ys))
        })
        .collect();
    Ok(Sketch {
        hist,
        searched,
        maxima: kept,
        members,
        centers,
        n_found,
        n_pruned,
    })
}

/// For each group of rows `members[k]` of `z` `(n, zdim)`: the index of the row of `z` nearest
/// to the group's per-dimension median (the reference's `follow_candidate_particles`:
/// `np.median` then `get_nearest_point`, first on ties).
pub fn representatives(z: &[f32], zdim: usize, members: &[Vec<usize>]) -> Vec<usize> {
    let medians: Vec<f64> = members
        .iter()
        .flat_map(|m| {
            (0..zdim).map(move |d| {
                let mut v: Vec<f64> = m.iter().map(|&k| z[k * zdim + d] as f64).collect();
                median(&mut v)
            })
        })
        .collect();
    crate::analysis::kmeans::nearest_points(z, zdim, &medians)
}

/// The zero-mean correlation coefficient of two maps (Afonine et al. 2018, eq. 2, as the
/// reference's `calc_cc`), in f64.
pub fn masked_cc(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().max(1) as f64;
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// The FSC of the reference's `calculate_FSCs`: `D/2` values, entry `s` over the voxels of the
/// centered transform at radius `s ≤ ρ < s + 1` — the last entry also takes everything beyond
/// (the corners), as its `searchsorted` labels do — at frequency `s / D` (1/pixel). Unlike
/// [`crate::fourier::fsc::fsc_curve`] (the `fsc` command's shells) entry 0 is the zero frequency
/// alone. Returns `(freqs, fsc)`; a shell with no power gives NaN.
pub fn convergence_fsc(a: &[f32], b: &[f32], d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if d < 2 || a.len() != d * d * d || b.len() != a.len() {
        return Err(Error::invalid(format!(
            "FSC: two {d}³ volumes needed, got {} and {} values",
            a.len(),
            b.len()
        )));
    }
    let fa = fftn_center(a, d);
    let fb = fftn_center(b, d);
    let nsh = d / 2;
    let (mut num, mut da, mut db) = (vec![0.0f64; nsh], vec![0.0f64; nsh], vec![0.0f64; nsh]);
    let h = (d / 2) as f64;
    for i in 0..d {
        for j in 0..d {
            for k in 0..d {
                let (x, y, z) = (i as f64 - h, j as f64 - h, k as f64 - h);
                let r = (x * x + y * y + z * z).sqrt();
                let s = (r.floor() as usize).min(nsh - 1);
                let idx = (i * d + j) * d + k;
                let (p, q) = (fa[idx], fb[idx]);
                let (pr, pi, qr, qi) = (p.re as f64, p.im as f64, q.re as f64, q.im as f64);
                num[s] += pr * qr + pi * qi;
                da[s] += pr * pr + pi * pi;
                db[s] += qr * qr + qi * qi;
            }
        }
    }
    let fsc = (0..nsh).map(|s| num[s] / (da[s] * db[s]).sqrt()).collect();
    let freqs = (0..nsh).map(|s| s as f64 / d as f64).collect();
    Ok((freqs, fsc))
}

/// The epochs the reference samples for UMAPs and volumes: `4, 4 + interval, …` up to `last`,
/// and `last` itself.
pub fn sampled_epochs(last: usize, interval: usize) -> Vec<usize> {
    let mut e: Vec<usize> = (4..=last).step_by(interval.max(1)).collect();
    if e.last() != Some(&last) {
        e.push(last);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_lines() {
        let t = "x\n# =====> Epoch: 1 Average gen loss = 0.5, KLD = 0.1, total loss = 0.61; 2 s\n\
                 # =====> Epoch: 2 Average gen loss = 12.5, total loss = 12.25; 2 s\nnoise total loss = 3\n";
        assert_eq!(parse_loss(t), vec![0.61, 12.25]);
    }

    #[test]
    fn medians_as_numpy() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut [1.0, f64::NAN]).is_nan());
    }

    #[test]
    fn shifts_of_a_straight_walk() {
        // each particle moves by (1, 0) then (2, 0): dot 2, magnitude 2, cosine distance 0
        let z1 = [0.0f32, 0.0, 5.0, 5.0];
        let z2 = [1.0f32, 0.0, 6.0, 5.0];
        let z3 = [3.0f32, 0.0, 8.0, 5.0];
        let m = latent_shifts(&z1, &z2, &z3, 2).unwrap();
        assert!((m[0] - 2.0).abs() < 1e-12 && (m[1] - 2.0).abs() < 1e-12 && m[2].abs() < 1e-12);
        // turning back: cosine distance 2
        let z3 = [0.0f32, 0.0, 5.0, 5.0];
        let m = latent_shifts(&z1, &z2, &z3, 2).unwrap();
        assert!((m[2] - 2.0).abs() < 1e-12);
        assert!(latent_shifts(&z1, &z2, &z3[..2], 2).is_err());
    }

    #[test]
    fn borders_as_scipy() {
        // reflect: -1 → 0, -2 → 1, n → n-1; mirror: -1 → 1, n → n-2
        assert_eq!(
            (reflect(-1, 4), reflect(-2, 4), reflect(4, 4), reflect(9, 4)),
            (0, 1, 3, 1)
        );
        assert_eq!((mirror(-1, 4), mirror(4, 4), mirror(-3, 4)), (1, 2, 3));
    }

    #[test]
    fn gaussian_filter_keeps_mass_and_symmetry() {
        let n = 9;
        let mut a = vec![0.0; n * n];
        a[4 * n + 4] = 1.0;
        let f = gaussian_filter(&a, n, 1.0f32);
        let s: f64 = f.iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
        assert!((f[3 * n + 4] - f[5 * n + 4]).abs() < 1e-15);
        assert!((f[4 * n + 3] - f[3 * n + 4]).abs() < 1e-15);
        // 1-D kernel weights exp(-x²/2) normalized: centre/neighbour = e^{1/2}
        assert!((f[4 * n + 4] / f[3 * n + 4] - 0.5f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn maxima_and_pruning() {
        let n = 6;
        let mut a = vec![0.0; n * n];
        a[n + 1] = 5.0; // (1, 1)
        a[n + 3] = 4.0; // (1, 3), 2 bins away
        a[5 * n + 5] = 3.0; // (5, 5)
        let m = local_maxima(&a, n);
        assert_eq!(
            m.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![(1, 1), (1, 3), (5, 5)]
        );
        let p = prune_maxima(m.clone(), 2, 2.5);
        assert_eq!(
            p.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![(1, 1), (5, 5)]
        );
        // nothing within the radius: nothing pruned
        assert_eq!(prune_maxima(m, 1, 1.5).len(), 3);
    }

    #[test]
    fn histogram_puts_the_maximum_in_the_last_bin() {
        let xy = [0.0, 0.0, 1.0, 1.0, 0.5, 0.25];
        let h = histogram2d(&xy, 2).unwrap();
        assert_eq!(h.bin_of, vec![(0, 0), (1, 1), (1, 0)]);
        assert_eq!(h.counts, vec![1.0, 0.0, 1.0, 1.0]);
        assert!(histogram2d(&[0.0, f64::NAN], 2).is_err());
    }

    #[test]
    fn sketch_finds_two_blobs() {
        // two tight blobs of 200 points each
        let mut xy = Vec::new();
        for i in 0..200 {
            let t = i as f64 * 0.01;
            xy.extend([t.sin() * 0.3, t.cos() * 0.3]);
            xy.extend([10.0 + t.cos() * 0.3, 10.0 + t.sin() * 0.3]);
        }
        let s = sketch_local_maxima(&xy, &SketchOptions::default()).unwrap();
        assert!(s.maxima.len() >= 2);
        let near = |c: (f64, f64), x: f64| (c.0 - x).abs() < 1.0 && (c.1 - x).abs() < 1.0;
        assert!(s.centers.iter().any(|&c| near(c, 0.0)));
        assert!(s.centers.iter().any(|&c| near(c, 10.0)));
    }

    #[test]
    fn cc_and_fsc_of_identical_and_scaled_maps() {
        let d = 8;
        let v: Vec<f32> = (0..d * d * d).map(|i| ((i * 7919) % 13) as f32).collect();
        let w: Vec<f32> = v.iter().map(|x| 2.0 * x + 1.0).collect();
        assert!((masked_cc(&v, &w) - 1.0).abs() < 1e-12);
        let (f, c) = convergence_fsc(&v, &v, d).unwrap();
        assert_eq!(f, vec![0.0, 0.125, 0.25, 0.375]);
        assert!(c.iter().all(|x| (x - 1.0).abs() < 1e-6));
        let neg: Vec<f32> = v.iter().map(|x| -x).collect();
        let (_, c) = convergence_fsc(&v, &neg, d).unwrap();
        assert!(c.iter().all(|x| (x + 1.0).abs() < 1e-6));
        assert!(convergence_fsc(&v, &v[1..], d).is_err());
    }

    #[test]
    fn epochs_as_the_reference() {
        assert_eq!(sampled_epochs(25, 5), vec![4, 9, 14, 19, 24, 25]);
        assert_eq!(sampled_epochs(24, 5), vec![4, 9, 14, 19, 24]);
        assert_eq!(sampled_epochs(5, 5), vec![4, 5]);
        assert_eq!(sampled_epochs(3, 5), vec![3]);
    }
}
