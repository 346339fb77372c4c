//! `demo`: the README's main job on built-in synthetic data, end to end with known truth: a phantom
//! molecule whose domain slides along a line (`phantom --kind linear1d`, 50 states), a particle
//! dataset simulated from all its states with CTF, shifts and noise (`simulate`, which records each
//! image's state and true coordinate), a VAE trained on it with the true poses (`train-vae`,
//! zdim 1), the latent analysis (`analyze`: PCA/k-means plots and volumes), and the accuracy of the
//! result against the truth: the Spearman correlation of z with the true coordinate, the per-image
//! FSC=0.5 resolution of decoded volumes against the volume of each image's state (`eval-accuracy`),
//! FSC curves of three decoded states (`fsc_vs_truth.txt`/`.png`) and a z-against-truth scatter
//! (`z_vs_truth.png`).
//!
//! Example: `cryofield demo -o demo_out` (about 3 minutes on 2 cores)

use crate::analysis::latent::load_z;
use crate::analysis::plot::{fsc_plot, scatter_plot, PlotStyle, Series};
use crate::cli::eval_accuracy::{self, truth_correlation};
use crate::cli::{phantom, simulate, Cli};
use crate::fourier::fsc::fsc_curve;
use crate::io::atomic::write_bytes_atomic;
use crate::io::mrc::MrcFile;
use crate::io::pkl::read_pkl;
use crate::model::load::LoadedModel;
use anyhow::{ensure, Context};
use clap::Parser;
use std::path::{Path, PathBuf};

/// Pixel size of the phantom (Å).
const APIX: f64 = 3.0;

/// Run the built-in demo.
#[derive(Debug, clap::Args)]
#[command(
    about = "Run the pipeline on built-in synthetic data: phantom → simulate → train-vae → analyze → accuracy against the truth"
)]
pub struct Args {
    /// Output folder
    #[arg(short = 'o', default_value = "demo_out")]
    pub o: PathBuf,
    /// Number of particles
    #[arg(short = 'N', default_value_t = 3000)]
    pub n: usize,
    /// Box size (pixels)
    #[arg(short = 'D', default_value_t = 32)]
    pub d: usize,
    /// Signal-to-noise ratio of the simulated images
    #[arg(long, default_value_t = 1.0)]
    pub snr: f64,
    /// Training epochs
    #[arg(short = 'n', long = "num-epochs", default_value_t = 20)]
    pub epochs: usize,
    /// Random seed (phantom, simulation and training). With seed 0 the VAE folds the latent
    /// (ρ ≈ −0.33: z rises, then falls along the motion); seeds 1 and 2 give |ρ| ≈ 0.97
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Parse and run one subcommand given as command-line words.
fn sub(words: &[&str]) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("cryofield").chain(words.iter().copied()))?;
    crate::cli::run(cli)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Run `demo`.
pub fn run(a: Args) -> anyhow::Result<()> {
    ensure!(
        a.d >= 16 && a.d.is_multiple_of(2),
        "-D must be even and at least 16"
    );
    ensure!(a.n >= 10 && a.epochs >= 1, "-N ≥ 10 and -n ≥ 1 please");
    ensure!(
        a.o.to_str().is_some(),
        "{}: output path must be valid UTF-8",
        a.o.display()
    );
    let t0 = std::time::Instant::now();
    let ph = a.o.join("phantom");
    let sim = a.o.join("sim");
    let vae = a.o.join("vae");
    eprintln!("[1/5] phantom: a molecule whose domain slides along a line (50 states)");
    phantom::run(phantom::Args {
        kind: phantom::Kind::Linear1d,
        n_states: None,
        d: a.d,
        apix: APIX,
        seed: a.seed,
        o: ph.clone(),
        base: None,
        domain_center: None,
        domain_radius: None,
        shift: None,
    })?;
    eprintln!(
        "[2/5] simulate {} particles from all states (SNR {}, CTF, shifts)",
        a.n, a.snr
    );
    simulate::run(simulate::Args {
        input: ph.join("vols.txt"),
        n: a.n,
        o: sim.clone(),
        snr: Some(a.snr),
        t_extent: 2.0,
        ctf: None,
        defocus: Some(vec![10000.0, 20000.0]),
        kv: 300.0,
        cs: 2.7,
        w: 0.1,
        apix: None,
        tilt_deg: None,
        oversample: 2,
        real_space: false,
        pose_dist: simulate::PoseDistArg::So3,
        pairs: false,
        data_rate: 1.0,
        seed: a.seed,
    })?;
    eprintln!(
        "[3/5] train-vae: zdim 1, encoder/decoder 128×3, {} epochs, true poses and CTF",
        a.epochs
    );
    let (epochs, seed) = (a.epochs.to_string(), a.seed.to_string());
    sub(&[
        "train-vae",
        s(&sim.join("particles.mrcs")),
        "--poses",
        s(&sim.join("pose.pkl")),
        "--ctf",
        s(&sim.join("ctf.pkl")),
        "--zdim",
        "1",
        "--enc-dim",
        "128",
        "--dec-dim",
        "128",
        "--lr",
        "1e-3",
        "-b",
        "8",
        "-n",
        &epochs,
        "--seed",
        &seed,
        "--no-analysis",
        "-o",
        s(&vae),
    ])?;
    let last = a.epochs; // outputs are numbered by the 1-based epoch
    eprintln!("[4/5] analyze epoch {last}: PCA, k-means (K=10) with volumes, plots");
    sub(&[
        "analyze",
        s(&vae),
        &last.to_string(),
        "--ksample",
        "10",
        "--seed",
        &seed,
    ])?;
    eprintln!("[5/5] accuracy against the truth");
    let weights = vae.join(format!("weights.{last}.safetensors"));
    let config = vae.join("config.json");
    let zfile = vae.join(format!("z.{last}.pkl"));
    let rho = truth_correlation(&load_z(&zfile)?.z, 1, &sim.join("truth.pkl"))?[0][0];
    let acc = eval_accuracy::evaluate(&eval_accuracy::Args {
        weights: Some(weights.clone()),
        config: Some(config.clone()),
        zfile: zfile.clone(),
        vols: ph.join("vols.txt"),
        labels: sim.join("labels.pkl"),
        n: 100.min(a.n),
        seed: a.seed,
        apix: None,
        no_sign_fix: false,
        o: None,
        truth: None,
        decoded: None,
        negate: false,
        write_z: None,
    })?;
    let acc_txt = a.o.join("accuracy.txt");
    let mut t = String::from("# index label fsc0.5_resolution_A\n");
    for (i, l, r) in &acc.rows {
        t.push_str(&format!("{i} {l} {r:.3}\n"));
    }
    write_bytes_atomic(&acc_txt, t.as_bytes())?;
    let (fsc_txt, fsc_png) = fsc_examples(&a.o, &ph, &sim, &weights, &config, &zfile)?;
    let scatter = a.o.join("z_vs_truth.png");
    z_truth_plot(&scatter, &zfile, &sim.join("truth.pkl"), rho)?;
    let unit = if acc.angstrom { "Å" } else { "px" };
    println!(
        "demo: Spearman ρ(z, true coordinate) = {rho:+.3}; decoded volumes vs truth, FSC=0.5 over {} images: median {:.1} {unit} (mean {:.1} ± {:.1}; Nyquist {:.1} Å)",
        acc.rows.len(),
        acc.median,
        acc.mean,
        acc.std,
        2.0 * APIX
    );
    println!(
        "plots: {}, {}, {}/analyze.{last}/; tables: {}, {}; {:.0} s",
        fsc_png.display(),
        scatter.display(),
        vae.display(),
        fsc_txt.display(),
        acc_txt.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// FSC curves of volumes decoded at the latents of three images (states near t = 0.1, 0.5, 0.9)
/// against their states' true volumes: a table (`freq fsc…`) and a plot.
fn fsc_examples(
    out: &Path,
    ph: &Path,
    sim: &Path,
    weights: &Path,
    config: &Path,
    zfile: &Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let model = LoadedModel::load(weights, config)?;
    let lat = load_z(zfile)?;
    let labels: Vec<usize> = read_pkl(sim.join("labels.pkl"))?
        .as_array()
        .context("labels.pkl: not an array")?
        .to_f32()
        .iter()
        .map(|&x| x as usize)
        .collect();
    let nstates = labels.iter().max().map_or(1, |m| m + 1);
    let sign = if model.record.config.invert_data {
        -1.0
    } else {
        1.0
    };
    let mut curves = Vec::new();
    let mut names = Vec::new();
    for frac in [0.1, 0.5, 0.9] {
        let state = ((frac * (nstates - 1) as f64).round() as usize).min(nstates - 1);
        let Some(i) = labels.iter().position(|&l| l == state) else {
            continue;
        };
        let mut vol = model.volume(Some(&lat.z[i..i + 1]), None)?;
        vol.iter_mut().for_each(|v| *v *= sign);
        let tv = MrcFile::open(ph.join(format!("vol_{state:03}.mrc")))?.read_all()?;
        curves.push(fsc_curve(&vol, &tv, model.d, None)?);
        names.push(format!("image {i} (state {state})"));
    }
    ensure!(!curves.is_empty(), "no image of the chosen states");
    let mut t = format!("# freq(1/px) {}\n", names.join(" | "));
    for k in 0..curves[0].len() {
        t.push_str(&format!("{:.4}", curves[0].pixres[k]));
        for c in &curves {
            t.push_str(&format!(" {:.4}", c.fsc[k]));
        }
        t.push('\n');
    }
    let txt = out.join("fsc_vs_truth.txt");
    write_bytes_atomic(&txt, t.as_bytes())?;
    let series: Vec<Series<'_>> = curves
        .iter()
        .zip(&names)
        .map(|(c, n)| Series {
            label: n,
            x: &c.pixres,
            y: &c.fsc,
        })
        .collect();
    let png = out.join("fsc_vs_truth.png");
    fsc_plot(&png, &series, model.apix().unwrap_or(1.0) as f64)?;
    Ok((txt, png))
}

/// Scatter of each image's z against its true coordinate.
fn z_truth_plot(png: &Path, zfile: &Path, truth: &Path, rho: f64) -> anyhow::Result<()> {
    let z: Vec<f64> = load_z(zfile)?.z.iter().map(|&v| v as f64).collect();
    let t = read_pkl(truth)?
        .as_array()
        .context("truth.pkl: not an array")?
        .to_f64();
    ensure!(t.len() == z.len(), "truth.pkl and z differ in length");
    scatter_plot(
        png,
        &t,
        &z,
        &PlotStyle {
            title: format!("z against the true coordinate (Spearman ρ = {rho:+.3})"),
            x_label: "true coordinate t".into(),
            y_label: "z (posterior mean)".into(),
            size: (800, 700),
            ..PlotStyle::default()
        },
    )?;
    Ok(())
}
