//! `prior-eval`: compare a diffusion prior and the standard Gaussian VAE prior with the data latents
//! (paper Table 1, Fig. 2/7): total variation distance of the PC1 marginal (histogram over the
//! 0.5–99.5 % quantile range of the data's PC1, `--bins` bins, plus under/overflow bins), next to the sampling-noise
//! floor (the TVD between two random halves of the data); encode→decode round-trip error
//! of the RK4(5) ODE on data latents; PCA scatter and PC1/PC2 marginal plots (PNG) and `eval.txt`.
//!
//! Example: `cryofield prior-eval prior/ z.25.pkl -n 10000 -o prior/eval`

use std::path::PathBuf;

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::prior_train::{load_latents, save_latents};
use crate::analysis::pca::Pca;
use crate::analysis::plot::{line_plot, scatter_plot, LineOptions, PlotStyle, Series};
use crate::diffusion::eval::{quantile, tvd_hist};
use crate::diffusion::ode::{decode, encode, OdeOptions};
use crate::diffusion::MlpDenoiser;
use crate::io::atomic::write_bytes_atomic;

/// Evaluate a diffusion prior against data latents.
#[derive(Debug, clap::Args)]
#[command(
    about = "PC1 total variation distance of diffusion-prior and Gaussian-prior samples vs data"
)]
pub struct Args {
    /// Folder written by prior-train
    pub prior_dir: PathBuf,
    /// Data latents (z.pkl, .npy or text)
    pub zfile: PathBuf,
    /// Number of prior samples
    #[arg(short = 'n', default_value_t = 1000)]
    pub n: usize,
    /// Sampler steps (em: M schedule points)
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Sampler: em or heun
    #[arg(long, default_value = "em")]
    pub sampler: String,
    /// Histogram bins over the data's PC1 range
    #[arg(long, default_value_t = 20)]
    pub bins: usize,
    /// Use these samples instead of drawing new ones
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Data latents used for the encode→decode round trip
    #[arg(long, default_value_t = 100)]
    pub n_roundtrip: usize,
    /// Output folder (default PRIOR_DIR/eval)
    #[arg(short = 'o', long)]
    pub outdir: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn hist_curve(v: &[f64], lo: f64, hi: f64, bins: usize) -> (Vec<f64>, Vec<f64>) {
    let w = (hi - lo) / bins as f64;
    let mut h = vec![0.0; bins];
    for &x in v {
        if x >= lo && x <= hi {
            h[(((x - lo) / w) as usize).min(bins - 1)] += 1.0 / (v.len() as f64 * w);
        }
    }
    ((0..bins).map(|k| lo + (k as f64 + 0.5) * w).collect(), h)
}

/// Run `prior-eval`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.n == 0 || a.bins == 0 {
        bail!("-n and --bins must be positive");
    }
    let model = MlpDenoiser::load(a.prior_dir.join("prior.npz"))?;
    let (z, d) = load_latents(&a.zfile)?;
    if d != model.d {
        bail!("{} has zdim {d}, the prior {}", a.zfile.display(), model.d);
    }
    let out = a.outdir.clone().unwrap_or_else(|| a.prior_dir.join("eval"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let t0 = std::time::Instant::now();
    let samples = match &a.samples {
        Some(p) => {
            let (s, ds) = load_latents(p)?;
            if ds != d {
                bail!("--samples has zdim {ds}, expected {d}");
            }
            s
        }
        None => {
            let sa = super::prior_sample::Args {
                prior_dir: a.prior_dir.clone(),
                n: a.n,
                out: out.join("samples.txt"),
                sampler: a.sampler.clone(),
                steps: a.steps,
                s_churn: 0.0,
                s_tmin: 0.0,
                s_tmax: f64::INFINITY,
                s_noise: 1.0,
                batch: 10000,
                seed: a.seed,
            };
            let s = super::prior_sample::draw(&model, &sa)?;
            save_latents(&sa.out, &s, d)?;
            s
        }
    };
    let t_sample = t0.elapsed().as_secs_f64();
    let ns = samples.len() / d;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed.wrapping_add(1));
    let gauss: Vec<f64> = (0..ns * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let nd = z.len() / d;
    let mut idx: Vec<usize> = (0..nd).collect();
    idx.shuffle(&mut rng);
    let rows = |ids: &[usize]| -> Vec<f64> {
        ids.iter()
            .flat_map(|&i| z[i * d..(i + 1) * d].iter().copied())
            .collect()
    };
    let (half_a, half_b) = (rows(&idx[..nd / 2]), rows(&idx[nd / 2..]));
    let z32: Vec<f32> = z.iter().map(|&x| x as f32).collect();
    let pca = Pca::fit(&z32, nd, d)?;
    let pc = |x: &[f64], k: usize| pca.project(x, k);
    let (dz1, ds1, dg1) = (pc(&z, 0), pc(&samples, 0), pc(&gauss, 0));
    let t_diff = tvd_hist(&dz1, &ds1, a.bins)?;
    let t_gauss = tvd_hist(&dz1, &dg1, a.bins)?;
    // sampling-noise floor: two disjoint random halves of the data
    let t_floor = tvd_hist(&pc(&half_a, 0), &pc(&half_b, 0), a.bins)?;
    // encode → decode round trip on data latents
    let nr = a.n_roundtrip.min(nd);
    let zr: Vec<f64> = idx[..nr]
        .iter()
        .flat_map(|&i| z[i * d..(i + 1) * d].iter().copied())
        .collect();
    let opt = OdeOptions::default();
    let (e, st_e) = encode(&model, &model.edm, &zr, &opt)?;
    let (back, st_d) = decode(&model, &model.edm, &e, &opt)?;
    let num: f64 = back.iter().zip(&zr).map(|(x, y)| (x - y).powi(2)).sum();
    let rel = (num / zr.iter().map(|y| y * y).sum::<f64>()).sqrt();
    // plots
    let (dz2, ds2, dg2) = (
        pc(&z, 1.min(d - 1)),
        pc(&samples, 1.min(d - 1)),
        pc(&gauss, 1.min(d - 1)),
    );
    let range = |v: &[f64]| {
        let (lo, hi) = (quantile(v, 0.001), quantile(v, 0.999));
        let m = 0.05 * (hi - lo).max(1e-9);
        (lo - m, hi + m)
    };
    let (xr, yr) = (range(&dz1), range(&dz2));
    for (name, x, y) in [
        ("pca_data.png", &dz1, &dz2),
        ("pca_diffusion.png", &ds1, &ds2),
        ("pca_gaussian.png", &dg1, &dg2),
    ] {
        let style = PlotStyle {
            title: name.trim_end_matches(".png").replace('_', " "),
            x_label: "PC1".into(),
            y_label: "PC2".into(),
            x_range: Some(xr),
            y_range: Some(yr),
            size: (800, 800),
        };
        let n = x.len().min(20000);
        scatter_plot(out.join(name), &x[..n], &y[..n], &style)?;
    }
    for (k, (dzk, dsk, dgk)) in [(&dz1, &ds1, &dg1), (&dz2, &ds2, &dg2)].iter().enumerate() {
        let (lo, hi) = range(dzk);
        let (lo, hi) = (lo.min(-3.0), hi.max(3.0));
        let (xd, yd) = hist_curve(dzk, lo, hi, 60);
        let (xs, ys) = hist_curve(dsk, lo, hi, 60);
        let (xg, yg) = hist_curve(dgk, lo, hi, 60);
        let style = PlotStyle {
            title: format!("PC{} marginal", k + 1),
            x_label: format!("PC{}", k + 1),
            y_label: "density".into(),
            ..Default::default()
        };
        line_plot(
            out.join(format!("pc{}_marginal.png", k + 1)),
            &[
                Series {
                    label: "data",
                    x: &xd,
                    y: &yd,
                },
                Series {
                    label: "diffusion prior",
                    x: &xs,
                    y: &ys,
                },
                Series {
                    label: "Gaussian prior",
                    x: &xg,
                    y: &yg,
                },
            ],
            &style,
            &LineOptions::default(),
        )?;
    }
    let report = format!(
        "data latents: {nd} × {d}\nsamples: {ns} ({}, {} steps, {t_sample:.1}s)\nPC1 TVD ({} bins): diffusion prior {t_diff:.4}, Gaussian prior {t_gauss:.4}, noise floor (two random halves of the data, {} vs {}) {t_floor:.4}\nRK4(5) encode→decode relative error on {nr} data latents: {rel:.2e} (encode {} steps / {} evals, decode {} steps / {} evals)\n",
        if a.samples.is_some() { "from file" } else { a.sampler.as_str() },
        a.steps,
        a.bins,
        nd / 2,
        nd - nd / 2,
        st_e.accepted,
        st_e.nfev,
        st_d.accepted,
        st_d.nfev,
    );
    write_bytes_atomic(out.join("eval.txt"), report.as_bytes())?;
    print!("{report}");
    println!("plots and eval.txt → {}", out.display());
    Ok(())
}
