//! `pc-reconstruct`: a structure from sparse observations (issue 25; Möbius & Habeck 2024):
//! diffusion posterior sampling (Algorithm 1 with the correction step and noise injection,
//! guidance ζ = α/√E through the denoiser's vector–Jacobian product) or the maximum-likelihood
//! baseline (Adam from random clouds), on the projections, coarse map and subunit of `OBS.npz`
//! (from `pc-observe`).
//!
//! The prior is a `pc-train` folder (the point transformer, run in f32 on the CPU) or
//! `gmm:TEMPLATES.npz`, the exact prior of a Gaussian mixture over template clouds
//! (the `cloud` array of a `pc-prepare` ground truth, `(S, N, 3)`, std `--gmm-std`).
//!
//! Writes into `-o OUT/` (all files land together): `recon.npy` `(samples, N, 3)` f32 in
//! normalised units; `energy.csv` (E per step and sample: E(D(x, t_i)) for DPS, E(x) for ML) and
//! `energy.png`; `recon_A.pdb`, one pseudo-atom model per sample in Å, when the transform is
//! known (`center`/`scale` in OBS.npz, or `--truth GT.npz`); `run.json` with the settings, the
//! final energies, network evaluations, assignments solved and the wall time.
//!
//! Example: `cryofield pc-reconstruct gmm:train.npz obs.npz -o recon/ --samples 10 --alpha 300`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};

use super::progress::bar;
use crate::analysis::plot::{line_plot, LineOptions, PlotStyle, Series};
use crate::assignment::AuctionParams;
use crate::io::array::NdArray;
use crate::io::atomic::Staged;
use crate::io::npy::write_npy;
use crate::pointcloud::data::{to_angstrom, write_pseudo_pdb, GroundTruth, Observations};
use crate::pointcloud::dps::{
    dps, ml, Beta, CloudPrior, DpsConfig, GmmCloudPrior, Heun, Integrator, LrSchedule, MlConfig,
    Reconstruction,
};
use crate::pointcloud::energy::{EnergyModel, Solver};
use crate::pointcloud::transformer::PointTransformer;

/// Reconstruct a point cloud from sparse observations.
#[derive(Debug, clap::Args)]
#[command(
    about = "Reconstruct a structure (point cloud) from projections, a coarse map or a subunit"
)]
pub struct Args {
    /// The prior: a pc-train folder, or `gmm:TEMPLATES.npz` (exact Gaussian-mixture prior over
    /// the `cloud` array)
    pub prior: String,
    /// Observations (from pc-observe)
    pub obs: PathBuf,
    /// Output folder
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// `dps` (posterior sampling) or `ml` (maximum likelihood, the paper's baseline)
    #[arg(long, default_value = "dps")]
    pub method: String,
    /// Samples (independent reconstructions)
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Grid points N of Algorithm 1 (2N − 1 network evaluations)
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    #[arg(long, default_value_t = 1.0)]
    pub tmax: f64,
    #[arg(long, default_value_t = 0.002)]
    pub tmin: f64,
    #[arg(long, default_value_t = 3.0)]
    pub rho: f64,
    /// β(t): `0`, `1/t` or `1/t>THRESHOLD:VALUE` (e.g. `1/t>0.15:0`)
    #[arg(long, default_value = "1/t")]
    pub beta: String,
    /// Guidance strength α (ζ = α/√E)
    #[arg(long, default_value_t = 4000.0)]
    pub alpha: f64,
    /// `em-corr` (Algorithm 1), `em` (no correction) or `ode` (β = 0)
    #[arg(long, default_value = "em-corr")]
    pub integrator: String,
    /// Second slope of the correction: `literal` (c_i, as printed) or `karras` (c_{i+1})
    #[arg(long, default_value = "literal")]
    pub heun: String,
    /// Assignment solver: `auction` (ε-scaling, within N·ε) or `hungarian` (exact)
    #[arg(long, default_value = "auction")]
    pub assign: String,
    /// Final ε of the auction (squared normalised units)
    #[arg(long, default_value_t = 1e-6)]
    pub auction_eps: f64,
    /// ML: Adam steps
    #[arg(long, default_value_t = 100)]
    pub ml_steps: usize,
    /// ML: Adam learning rate (the peak of --ml-lr-decay)
    #[arg(long, default_value_t = 0.01)]
    pub ml_lr: f64,
    /// ML: the learning-rate schedule, `constant` (the paper's baseline) or `cosine:FINAL_LR`
    /// (cosine decay from --ml-lr at the first step to FINAL_LR at the last, e.g. `cosine:1e-4`)
    #[arg(long, default_value = "constant")]
    pub ml_lr_decay: String,
    /// ML: random starts per sample; each sample keeps the start of lowest final energy
    /// (costs restarts × --ml-steps assignments per observation item and sample)
    #[arg(long, default_value_t = 1)]
    pub ml_restarts: usize,
    /// Std of each template's Gaussian (gmm: priors)
    #[arg(long, default_value_t = 0.2)]
    pub gmm_std: f64,
    /// Ground truth whose transform writes the reconstruction in Å (when OBS.npz has none)
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Structure of --truth
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Load the prior named by `spec`.
pub fn load_prior(spec: &str, gmm_std: f64) -> anyhow::Result<Box<dyn CloudPrior>> {
    if let Some(f) = spec.strip_prefix("gmm:") {
        let gt = GroundTruth::read(f)?;
        let p = GmmCloudPrior::new(gt.clouds, gt.n, gmm_std)
            .with_context(|| format!("{f}: building the GMM prior"))?;
        return Ok(Box::new(p));
    }
    let dir = std::path::Path::new(spec);
    if dir.join("config.json").is_file() {
        let be = crate::backend::cpu::CpuBackend::<f32>::new();
        return Ok(Box::new(PointTransformer::load(&be, dir)?));
    }
    bail!("prior `{spec}`: expected a pc-train folder (with config.json) or gmm:TEMPLATES.npz")
}

fn solver(a: &Args) -> anyhow::Result<Solver> {
    Ok(match a.assign.as_str() {
        "auction" => {
            if !(a.auction_eps > 0.0 && a.auction_eps.is_finite()) {
                bail!("--auction-eps must be positive, got {}", a.auction_eps);
            }
            Solver::Auction(AuctionParams {
                eps_final: a.auction_eps,
                ..Default::default()
            })
        }
        "hungarian" => Solver::Exact,
        o => bail!("--assign `{o}`: expected auction or hungarian"),
    })
}

/// Run pc-reconstruct.
pub fn run(a: Args) -> anyhow::Result<()> {
    let obs = Observations::read(&a.obs)?;
    let solver = solver(&a)?;
    let frame = match (&a.truth, obs.frame) {
        (Some(t), _) => Some(GroundTruth::read_index(t, a.index)?.frame(a.index)),
        (None, f) => f,
    };
    if a.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let t0 = Instant::now();
    let (rec, n, settings) = match a.method.as_str() {
        "dps" => {
            let prior = load_prior(&a.prior, a.gmm_std)?;
            let n = prior.n_points();
            if n != obs.n_points {
                bail!(
                    "{}: observations of a {}-point cloud, but the prior makes {n} points",
                    a.obs.display(),
                    obs.n_points
                );
            }
            let em = EnergyModel::new(&obs, n, a.seed)?;
            let cfg = DpsConfig {
                steps: a.steps,
                t_max: a.tmax,
                t_min: a.tmin,
                rho: a.rho,
                beta: a.beta.parse::<Beta>()?,
                alpha: a.alpha,
                integrator: match a.integrator.as_str() {
                    "em-corr" => Integrator::EmCorr,
                    "em" => Integrator::Em,
                    "ode" => Integrator::Ode,
                    o => bail!("--integrator `{o}`: expected em-corr, em or ode"),
                },
                heun: match a.heun.as_str() {
                    "literal" => Heun::Literal,
                    "karras" => Heun::Karras,
                    o => bail!("--heun `{o}`: expected literal or karras"),
                },
                solver: solver.clone(),
            };
            let pb = bar(a.steps as u64, "DPS steps");
            let rec = dps(prior.as_ref(), Some(&em), &cfg, a.samples, a.seed, |_| {
                pb.inc(1)
            })?;
            pb.finish_and_clear();
            let settings = serde_json::json!({
                "method": "dps", "prior": a.prior, "steps": a.steps, "tmax": a.tmax, "tmin": a.tmin,
                "rho": a.rho, "beta": a.beta, "alpha": a.alpha, "integrator": a.integrator,
                "heun": a.heun, "gmm_std": a.gmm_std,
            });
            (rec, n, settings)
        }
        "ml" => {
            let n = obs.n_points;
            let em = EnergyModel::new(&obs, n, a.seed)?;
            let cfg = MlConfig {
                steps: a.ml_steps,
                lr: a.ml_lr,
                schedule: a.ml_lr_decay.parse::<LrSchedule>()?,
                restarts: a.ml_restarts,
                solver: solver.clone(),
            };
            let pb = bar(a.ml_steps as u64, "ML steps");
            let rec = ml(&em, &cfg, a.samples, a.seed, |_| pb.inc(1))?;
            pb.finish_and_clear();
            let settings = serde_json::json!({
                "method": "ml", "ml_steps": a.ml_steps, "ml_lr": a.ml_lr,
                "ml_lr_decay": a.ml_lr_decay, "ml_restarts": a.ml_restarts,
            });
            (rec, n, settings)
        }
        o => bail!("--method `{o}`: expected dps or ml"),
    };
    let wall = t0.elapsed().as_secs_f64();
    write_outputs(&a, &rec, n, frame, settings, wall)?;
    let mean_e = rec.energy.iter().sum::<f64>() / rec.energy.len() as f64;
    eprintln!(
        "{} samples of {n} points in {wall:.1} s: mean E {mean_e:.4}; {} network evaluations per sample, {} assignments → {}",
        a.samples,
        rec.nfe,
        rec.laps,
        a.out.display()
    );
    Ok(())
}

fn write_outputs(
    a: &Args,
    rec: &Reconstruction,
    n: usize,
    frame: Option<([f64; 3], f64)>,
    mut settings: serde_json::Value,
    wall: f64,
) -> anyhow::Result<()> {
    let b = a.samples;
    let mut st = Staged::new(&a.out)?;
    let arr = NdArray::from_f32(
        vec![b, n, 3],
        rec.clouds.iter().map(|&v| v as f32).collect(),
    )?;
    write_npy(st.path("recon.npy")?, &arr)?;
    let mut csv = String::from("step");
    for s in 0..b {
        csv.push_str(&format!(",E_{s}"));
    }
    csv.push('\n');
    for (i, row) in rec.trace.iter().enumerate() {
        csv.push_str(&i.to_string());
        for e in row {
            csv.push_str(&format!(",{e:.6e}"));
        }
        csv.push('\n');
    }
    crate::io::atomic::write_bytes_atomic(st.path("energy.csv")?, csv.as_bytes())?;
    let xs: Vec<f64> = (0..rec.trace.len()).map(|i| i as f64).collect();
    let ys: Vec<Vec<f64>> = (0..b)
        .map(|s| rec.trace.iter().map(|r| r[s].max(1e-12).log10()).collect())
        .collect();
    let labels: Vec<String> = (0..b).map(|s| format!("sample {s}")).collect();
    let series: Vec<Series<'_>> = ys
        .iter()
        .zip(&labels)
        .take(10)
        .map(|(y, l)| Series {
            label: l,
            x: &xs,
            y,
        })
        .collect();
    line_plot(
        st.path("energy.png")?,
        &series,
        &PlotStyle {
            title: format!("pc-reconstruct --method {}: energy per step", a.method),
            x_label: "step".into(),
            y_label: "log10 E".into(),
            ..Default::default()
        },
        &LineOptions::default(),
    )?;
    if let Some((c, sc)) = frame {
        let ang: Vec<f64> = rec
            .clouds
            .chunks(3 * n)
            .flat_map(|x| to_angstrom(x, &c, sc))
            .collect();
        if ang
            .iter()
            .all(|v| v.is_finite() && (-999.999..=9999.999).contains(v))
        {
            write_pseudo_pdb(st.path("recon_A.pdb")?, &ang, b, n)?;
        } else {
            eprintln!(
                "warning: coordinates outside PDB's columns (−999.999 … 9999.999 Å): recon_A.pdb not written; recon.npy has the clouds"
            );
            st.remove_on_commit("recon_A.pdb");
        }
    } else {
        st.remove_on_commit("recon_A.pdb");
    }
    settings["samples"] = b.into();
    settings["n_points"] = n.into();
    settings["seed"] = a.seed.into();
    settings["assign"] = a.assign.clone().into();
    settings["obs"] = a.obs.display().to_string().into();
    let run = serde_json::json!({
        "settings": settings,
        "energy": rec.energy,
        "nfe_per_sample": rec.nfe,
        "assignments": rec.laps,
        "wall_s": wall,
    });
    crate::io::atomic::write_bytes_atomic(
        st.path("run.json")?,
        serde_json::to_string_pretty(&run)?.as_bytes(),
    )?;
    st.commit()?;
    Ok(())
}
