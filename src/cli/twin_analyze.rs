//! `twin-analyze`: the latent-space figures of cryoTWIN (Yamazaki et al. 2023, Fig. 2) for one epoch of a
//! `train-twin` run, and the same figures for a `train-vae` run to compare the two.
//!
//! - A joint 2-D t-SNE ([`crate::analysis::embed`]: exact, perplexity 30, O(n²) per iteration) of a
//!   seeded subsample of the latents z.EPOCH.pkl, the C GMM means and as many samples drawn from the
//!   GMM prior gmm.EPOCH.npz, shown in two panels on the same axes: the latents with the GMM means as
//!   stars (Fig. 2a) and the prior samples (Fig. 2b). One embedding places both sets in one map, so
//!   that a prior that matches the latents fills the same regions. `-n` is the number of points
//!   embedded besides the means: half latents, half prior samples (as many as the latents used).
//! - The PCA explained variance of z (all latents).
//! - With `--truth` (per-particle truth as `simulate` writes it, (n,) or (n, k)): the Spearman ρ of each
//!   of the top PCs of z with each truth coordinate.
//!
//! A `train-vae` run (its config.json records no twin settings) has no GMM prior: the embedding then
//! shows the latents alone (all `-n` points latents, one panel), and the PCA and ρ are as for a twin.
//!
//! Outputs in `-o DIR` (default OUT/analyze.EPOCH, beside `analyze`'s files, whose names these avoid),
//! moved into place together once all are written: `twin_tsne.png`, `twin_tsne.txt` (`kind index x y`
//! per embedded point, kind `z`, `mean` or `prior`), `pca_variance.txt`, `pca_variance.png`,
//! `truth_rho.txt` (with `--truth`) and `twin_analyze.txt` (the summary, also printed).
//!
//! Example: `cryofield twin-analyze out/ 19 --truth sim/truth.pkl`

use crate::analysis::embed::{tsne, TsneOptions};
use crate::analysis::latent::load_z;
use crate::analysis::pca::Pca;
use crate::analysis::plot::{auto_range, line_plot, render, LineOptions, PlotStyle, Series, FONT};
use crate::cli::eval_accuracy::truth_correlation;
use crate::io::atomic::{write_bytes_atomic, Staged};
use crate::model::load::read_record;
use crate::twin::gmm::Gmm;
use anyhow::{bail, Context};
use plotters::prelude::*;
use rand::SeedableRng;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Latent-space figures of a twin (or VAE) run.
#[derive(Debug, clap::Args)]
#[command(
    about = "cryoTWIN's latent figures: joint t-SNE of latents and GMM prior samples, PCA variance, ρ with the truth"
)]
pub struct Args {
    /// The training output folder (train-twin, or train-vae to compare)
    pub outdir: PathBuf,
    /// Epoch to analyze, as numbered in z.EPOCH.pkl (1-based)
    pub epoch: usize,
    /// Points in the joint t-SNE besides the GMM means: half latents (subsampled), half prior samples
    #[arg(short = 'n', default_value_t = 2000)]
    pub n: usize,
    /// Seed of the latents' subsample and the prior samples
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Per-particle truth ((n,) or (n, k) .pkl, e.g. simulate's truth.pkl): Spearman ρ of the top PCs with it
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Number of top PCs correlated with the truth (at most zdim)
    #[arg(long, default_value_t = 3)]
    pub pcs: usize,
    /// Output folder (default OUTDIR/analyze.EPOCH)
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
}

/// Source of an embedded point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Latent,
    Mean,
    Prior,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Latent => "z",
            Kind::Mean => "mean",
            Kind::Prior => "prior",
        }
    }
}

/// One joint exact t-SNE (perplexity 30) of the row sets `sets` (each (n_s, d) f64, row-major), all
/// points embedded exactly: the (Σ n_s, 2) embedding, in the order of the sets.
fn joint_embedding(sets: &[&[f64]], d: usize, seed: u64) -> anyhow::Result<Vec<f64>> {
    let pts: Vec<f32> = sets
        .iter()
        .flat_map(|s| s.iter())
        .map(|&v| v as f32)
        .collect();
    let n = pts.len() / d;
    if n < 4 {
        bail!("t-SNE needs at least 4 points, got {n}");
    }
    let opts = TsneOptions {
        perplexity: 30.0,
        max_points: n,
        seed,
        ..TsneOptions::default()
    };
    Ok(tsne(&pts, n, d, &opts)?.0)
}

/// A five-pointed star of outer radius `r` pixels around (0, 0), as a closed polygon.
fn star(r: f64) -> Vec<(i32, i32)> {
    (0..10)
        .map(|k| {
            let rad = if k % 2 == 0 { r } else { 0.45 * r };
            let t = std::f64::consts::PI * (k as f64 / 5.0 - 0.5);
            (
                (rad * t.cos()).round() as i32,
                (rad * t.sin()).round() as i32,
            )
        })
        .collect()
}

/// The embedding in one or two panels on shared axes: the latents with the means as stars, and (when
/// there are any) the prior samples.
fn tsne_plot(
    path: &Path,
    lat: &[(f64, f64)],
    means: &[(f64, f64)],
    prior: &[(f64, f64)],
    title: &str,
) -> crate::Result<()> {
    let all = || lat.iter().chain(means).chain(prior);
    let xs: Vec<f64> = all().map(|p| p.0).collect();
    let ys: Vec<f64> = all().map(|p| p.1).collect();
    let (xr, yr) = (auto_range(xs.iter()), auto_range(ys.iter()));
    // (caption, points, colour) per panel.
    type Panel<'a> = (&'a str, &'a [(f64, f64)], RGBColor);
    let panels: Vec<Panel<'_>> = if prior.is_empty() {
        vec![("latents", lat, RGBColor(31, 119, 180))]
    } else {
        vec![
            ("latents, GMM means as stars", lat, RGBColor(31, 119, 180)),
            ("samples of the GMM prior", prior, RGBColor(255, 127, 14)),
        ]
    };
    let size = (700 * panels.len() as u32, 700);
    render(path, size, |root| {
        root.fill(&WHITE)?;
        let root = root.titled(title, (FONT, 24))?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, (name, pts, colour)) in areas.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(area)
                .margin(20)
                .x_label_area_size(50)
                .y_label_area_size(60)
                .caption(*name, (FONT, 20))
                .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
            chart
                .configure_mesh()
                .x_desc("t-SNE 1")
                .y_desc("t-SNE 2")
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            let c = colour.mix(0.5);
            chart.draw_series(
                pts.iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&p| Circle::new(p, 2, c.filled())),
            )?;
            if *name != "samples of the GMM prior" {
                for &m in means {
                    chart.draw_series([EmptyElement::at(m)
                        + Polygon::new(star(11.0), BLACK.filled())
                        + Polygon::new(star(8.0), RGBColor(255, 215, 0).filled())])?;
                }
            }
        }
        Ok(())
    })
}

/// Run `twin-analyze`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let zpath = a.outdir.join(format!("z.{}.pkl", a.epoch));
    let config = a.outdir.join("config.json");
    let gpath = a.outdir.join(format!("gmm.{}.npz", a.epoch));
    for p in [&zpath, &config] {
        if !p.exists() {
            bail!(
                "{} not found (is {} a train-twin or train-vae output folder with epoch {}?)",
                p.display(),
                a.outdir.display(),
                a.epoch
            );
        }
    }
    if a.n < 4 || a.pcs == 0 {
        bail!(
            "-n must be at least 4 and --pcs at least 1, got -n {} and --pcs {}",
            a.n,
            a.pcs
        );
    }
    let record = read_record(&config)?;
    let lat = load_z(&zpath)?;
    let d = lat.zdim;
    if let Some(zd) = record.config.zdim {
        if zd != d {
            bail!(
                "{}: latents have zdim {d} but {} records zdim {zd}",
                zpath.display(),
                config.display()
            );
        }
    }
    let gmm = if record.config.twin.is_some() {
        if !gpath.exists() {
            bail!(
                "{} not found: {} records a train-twin model, whose epoch {} writes its GMM prior there",
                gpath.display(),
                config.display(),
                a.epoch
            );
        }
        let g = Gmm::read(&gpath)?;
        if g.d != d {
            bail!(
                "{}: the GMM is {}-dimensional but the latents {} have zdim {d}",
                gpath.display(),
                g.d,
                zpath.display()
            );
        }
        Some(g)
    } else {
        None
    };
    let out =
        a.o.clone()
            .unwrap_or_else(|| a.outdir.join(format!("analyze.{}", a.epoch)));

    // PCA of all latents, and the Spearman ρ of its top PCs with the truth (before the t-SNE, the
    // slow part, so that a bad truth file fails fast).
    let pca = Pca::fit(&lat.z, lat.n, d)?;
    let rho = match &a.truth {
        Some(t) => {
            let k = a.pcs.min(d);
            let proj = pca.transform(&lat.z);
            // The PC coordinates in f32 (z itself is f32) to share eval-accuracy's reader and checks.
            let top: Vec<f32> = proj
                .chunks_exact(d)
                .flat_map(|r| r[..k].iter().map(|&v| v as f32))
                .collect();
            Some(
                truth_correlation(&top, k, t)
                    .with_context(|| format!("Spearman ρ of the PCs of {}", zpath.display()))?,
            )
        }
        None => None,
    };

    // The embedded points: a seeded subsample of the latents, the means, the prior samples.
    let m = if gmm.is_some() { a.n / 2 } else { a.n }.min(lat.n);
    let mut rows: Vec<usize> =
        rand::seq::index::sample(&mut rand::rngs::StdRng::seed_from_u64(a.seed), lat.n, m)
            .into_vec();
    rows.sort_unstable();
    let zsub: Vec<f64> = rows
        .iter()
        .flat_map(|&i| lat.z[i * d..(i + 1) * d].iter().map(|&v| f64::from(v)))
        .collect();
    let (means, prior) = match &gmm {
        Some(g) => (g.mu.clone(), g.sample(m, a.seed)),
        None => (Vec::new(), Vec::new()),
    };
    let emb = joint_embedding(&[&zsub, &means, &prior], d, a.seed)?;
    let pts: Vec<(f64, f64)> = emb.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let nm = means.len() / d;
    let (e_lat, rest) = pts.split_at(m);
    let (e_means, e_prior) = rest.split_at(nm);

    let mut staged = Staged::new(&out)?;
    let title = match &gmm {
        Some(g) => format!(
            "{}: {m} latents, {} prior samples, C = {} (joint t-SNE)",
            a.outdir.display(),
            e_prior.len(),
            g.n_comp()
        ),
        None => format!(
            "{}: {m} latents (train-vae, no GMM prior)",
            a.outdir.display()
        ),
    };
    tsne_plot(
        &staged.path("twin_tsne.png")?,
        e_lat,
        e_means,
        e_prior,
        &title,
    )?;
    let mut et =
        String::from("# kind index x y (joint t-SNE; index: particle, component or sample)\n");
    for (kind, set, idx) in [
        (Kind::Latent, e_lat, rows.clone()),
        (Kind::Mean, e_means, (0..nm).collect()),
        (Kind::Prior, e_prior, (0..e_prior.len()).collect()),
    ] {
        for (p, i) in set.iter().zip(idx) {
            let _ = writeln!(et, "{} {i} {:.6e} {:.6e}", kind.name(), p.0, p.1);
        }
    }
    write_bytes_atomic(staged.path("twin_tsne.txt")?, et.as_bytes())?;

    let mut pv = String::from("# PC variance ratio cumulative (PCA of all latents)\n");
    let mut cum = Vec::with_capacity(d);
    let mut acc = 0.0;
    for k in 0..d {
        acc += pca.explained_variance_ratio[k];
        cum.push(acc);
        let _ = writeln!(
            pv,
            "{} {:.6e} {:.6} {:.6}",
            k + 1,
            pca.explained_variance[k],
            pca.explained_variance_ratio[k],
            acc
        );
    }
    write_bytes_atomic(staged.path("pca_variance.txt")?, pv.as_bytes())?;
    let pcx: Vec<f64> = (1..=d).map(|k| k as f64).collect();
    line_plot(
        staged.path("pca_variance.png")?,
        &[
            Series {
                label: "explained variance ratio",
                x: &pcx,
                y: &pca.explained_variance_ratio,
            },
            Series {
                label: "cumulative",
                x: &pcx,
                y: &cum,
            },
        ],
        &PlotStyle {
            title: format!("PCA of z ({} latents, zdim {d})", lat.n),
            x_label: "PC".into(),
            y_label: "fraction of variance".into(),
            x_range: Some((0.5, d as f64 + 0.5)),
            y_range: Some((0.0, 1.05)),
            ..PlotStyle::default()
        },
        &LineOptions::default(),
    )?;

    let mut summary = format!(
        "# twin-analyze of {} epoch {}\nmodel {}\nlatents {} zdim {d}\n",
        a.outdir.display(),
        a.epoch,
        if gmm.is_some() {
            "train-twin"
        } else {
            "train-vae"
        },
        lat.n
    );
    match &gmm {
        Some(g) => {
            let _ = writeln!(
                summary,
                "gmm_components {}\ntsne_points latents {m} means {nm} prior_samples {}",
                g.n_comp(),
                e_prior.len()
            );
        }
        None => {
            let _ = writeln!(
                summary,
                "note: {} records a train-vae model (no GMM prior): the t-SNE shows the latents only\ntsne_points latents {m}",
                config.display()
            );
        }
    }
    for k in 0..d.min(3) {
        let _ = writeln!(
            summary,
            "pc{}_variance_ratio {:.4}",
            k + 1,
            pca.explained_variance_ratio[k]
        );
    }
    match &rho {
        Some(rho) => {
            let t = a.truth.as_deref().unwrap_or(Path::new(""));
            let nt = rho.first().map_or(0, Vec::len);
            let mut rt = format!(
                "# Spearman rho of PC i of z (rows) with truth coordinate j of {} (columns)\n# PC {}\n",
                t.display(),
                (0..nt).map(|j| format!("t{j}")).collect::<Vec<_>>().join(" ")
            );
            for (i, row) in rho.iter().enumerate() {
                let vals: Vec<String> = row.iter().map(|r| format!("{r:+.4}")).collect();
                let _ = writeln!(rt, "{} {}", i + 1, vals.join(" "));
            }
            write_bytes_atomic(staged.path("truth_rho.txt")?, rt.as_bytes())?;
            for (j, r) in rho[0].iter().enumerate() {
                let _ = writeln!(summary, "abs_rho_pc1_t{j} {:.4}", r.abs());
            }
        }
        None => staged.remove_on_commit("truth_rho.txt"),
    }
    write_bytes_atomic(staged.path("twin_analyze.txt")?, summary.as_bytes())?;
    staged.commit()?;
    print!("{summary}");
    eprintln!(
        "twin-analyze: wrote {} in {:.2} s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    /// `n` points (n, d) around `centre` with standard deviation 0.3.
    fn blob(n: usize, d: usize, centre: f64, rng: &mut rand::rngs::StdRng) -> Vec<f64> {
        (0..n * d)
            .map(|_| {
                centre + 0.3 * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng)
            })
            .collect()
    }

    #[test]
    fn joint_tsne_keeps_two_blobs_apart_and_mixes_the_sources() {
        let (d, n) = (4, 60);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // "Latents" and "prior samples" both from blobs at 0 and 10 (each n per blob).
        let lat = [blob(n, d, 0.0, &mut rng), blob(n, d, 10.0, &mut rng)].concat();
        let pri = [blob(n, d, 0.0, &mut rng), blob(n, d, 10.0, &mut rng)].concat();
        let e = joint_embedding(&[&lat, &pri], d, 1).unwrap();
        assert_eq!(e.len(), 2 * 4 * n);
        // Blob of point p: the first n of each set are blob 0.
        let blob_of = |p: usize| usize::from(p % (2 * n) >= n);
        let mut cent = [[0.0f64; 2]; 2];
        for p in 0..4 * n {
            cent[blob_of(p)][0] += e[2 * p] / (2 * n) as f64;
            cent[blob_of(p)][1] += e[2 * p + 1] / (2 * n) as f64;
        }
        let dist = |p: usize, c: usize| (e[2 * p] - cent[c][0]).hypot(e[2 * p + 1] - cent[c][1]);
        for p in 0..4 * n {
            let (own, other) = (dist(p, blob_of(p)), dist(p, 1 - blob_of(p)));
            assert!(
                own < 0.5 * other,
                "point {p}: {own} from its blob's centre, {other} from the other's"
            );
        }
        // Prior samples land among the latents of their blob: each one's nearest latent in the
        // embedding is from the same blob.
        for q in 2 * n..4 * n {
            let nearest = (0..2 * n)
                .min_by(|&i, &j| {
                    let di = (e[2 * i] - e[2 * q]).hypot(e[2 * i + 1] - e[2 * q + 1]);
                    let dj = (e[2 * j] - e[2 * q]).hypot(e[2 * j + 1] - e[2 * q + 1]);
                    di.total_cmp(&dj)
                })
                .unwrap();
            assert_eq!(blob_of(nearest), blob_of(q), "prior sample {q}");
        }
        // Seeded: the same input gives the same map.
        assert_eq!(joint_embedding(&[&lat, &pri], d, 1).unwrap(), e);
    }

    #[test]
    fn star_is_a_closed_ten_point_polygon_within_its_radius() {
        let s = star(10.0);
        assert_eq!(s.len(), 10);
        // Rounding to pixels moves a vertex by at most √0.5: radius ≤ 10.71, 10.71² < 115.
        assert!(s.iter().all(|&(x, y)| x * x + y * y <= 115));
        assert_eq!(s[0], (0, -10));
    }
}
