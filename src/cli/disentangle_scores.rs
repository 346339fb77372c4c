//! `disentangle scores`: the seven Fig 4 disentanglement scores of Locatello et al. 2019 (BetaVAE,
//! FactorVAE, MIG, DCI, modularity with explicitness, SAP, MCC) at K20's sample counts × `--scale`
//! (spec `disentanglement.md` §4; definitions and deviations from disentanglement_lib in
//! `disentangle::scores`, counts in `disentangle::report`).
//!
//! Arrays mode: a representation R (n, d) (.npy, .pkl or text, as latents are read) and its discrete
//! factors V (n, K) (.npy or .pkl, non-negative integers), rows matching. Metrics that fix a factor
//! draw rows with that factor's value; the others draw rows uniformly with replacement
//! (`report::RowGenerator`). Prints one line per metric and writes JSON (the headline scores, every
//! score's details, the counts used, wall times, notes). `--dump DIR` writes each metric's exact
//! inputs as .npy for `tools/scores_crosscheck.py`.
//!
//! Model mode: a trained model (`WEIGHTS -c CONFIG`) and the phantom it was trained on (`--phantom`):
//! images are generated on the fly at uniformly drawn grid factor levels, with the pose, shift, CTF and
//! SNR laws of `simulate` (`--pose-dist`, `--t-extent`, `--defocus`, `--snr`), and encoded to μ_z
//! (`disentangle::world_scores`). The factors are the phantom's conformational ones; pose, shift and
//! CTF are nuisances.
//!
//! Examples:
//! `cryofield disentangle scores --repr out/z.npy --factors data/factors.npy --scale 0.1 -o out/scores.json`;
//! `cryofield disentangle scores out/weights.safetensors -c out/config.json --phantom ph --pose-dist inplane-y --snr 1 -o scores.json`

use crate::analysis::latent::load_z;
use crate::cli::simulate::PoseDistArg;
use crate::disentangle::probe::{Probe, World};
use crate::disentangle::report::{
    all_scores, LabelledGenerator, Metric, RowGenerator, ScoresConfig,
};
use crate::disentangle::world_scores::{sigma_for, ImageLaw, WorldGenerator};
use crate::io::atomic::write_bytes_atomic;
use crate::io::npy::read_npy;
use crate::io::pkl::read_pkl;
use crate::simulate::dataset::CtfSpec;
use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Arguments of `disentangle scores`.
#[derive(Debug, clap::Args)]
#[command(
    about = "The seven Fig 4 disentanglement scores (BetaVAE, FactorVAE, MIG, DCI, modularity, SAP, MCC) of a representation against discrete factors"
)]
pub struct ScoresArgs {
    /// Model mode: a train-vae model's weights (with -c and --phantom)
    #[arg(conflicts_with_all = ["repr", "factors"], requires_all = ["config", "phantom"])]
    pub weights: Option<PathBuf>,
    /// Model mode: the run's config.json
    #[arg(short = 'c', long = "config", requires = "weights")]
    pub config: Option<PathBuf>,
    /// Model mode: the phantom folder (vols.txt, truth.pkl on a grid) the images are generated from
    #[arg(long, requires = "weights")]
    pub phantom: Option<PathBuf>,
    /// Model mode: rotations, as `simulate --pose-dist`
    #[arg(long = "pose-dist", value_enum, default_value_t = PoseDistArg::Inplane)]
    pub pose_dist: PoseDistArg,
    /// Model mode: signal-to-noise ratio as `simulate --snr` measures it; noiseless when omitted
    #[arg(long, requires = "weights")]
    pub snr: Option<f64>,
    /// Model mode: translations uniform in [−T, T] pixels
    #[arg(long = "t-extent", default_value_t = 0.0)]
    pub t_extent: f32,
    /// Model mode: random defocus uniform in [LO, HI] Å (simulate's law: up to 5% astigmatism, 300 kV,
    /// Cs 2.7 mm, amplitude contrast 0.1)
    #[arg(long, num_args = 2, value_names = ["LO", "HI"], requires = "weights")]
    pub defocus: Option<Vec<f32>>,
    /// Arrays mode: representation R (n, d): .npy (read as f64), .pkl (first pickle) or whitespace-separated text (both read as f32, as latents are)
    #[arg(long = "repr", requires = "factors")]
    pub repr: Option<PathBuf>,
    /// Arrays mode: discrete factors V (n, K) or (n,): .npy or .pkl, non-negative integers, rows as in --repr
    #[arg(long, requires = "repr")]
    pub factors: Option<PathBuf>,
    /// Arrays mode: values per factor (comma-separated, K of them); default: max + 1 per column
    #[arg(long = "num-values", value_delimiter = ',')]
    pub num_values: Vec<usize>,
    /// Multiplies K20's sample counts (1 = full: e.g. MIG 100000, BetaVAE 10000/5000)
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Seed of the row draws and of the metrics' own choices
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Metrics to run (comma-separated: betavae, factorvae, mig, dci, modularity, sap, mcc); default all
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Gradient-descent steps of the logistic regressions (BetaVAE, explicitness)
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    /// Folder for each metric's exact input arrays (.npy), for an external recomputation
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Output JSON
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Reads the representation (n, d) as f64: .npy directly, anything else through `load_z`.
fn load_repr(path: &Path) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (r, n, d) = if is_npy {
        let a = read_npy(path)?;
        let (n, d) = match a.shape.as_slice() {
            [n] => (*n, 1),
            [n, d] => (*n, *d),
            s => bail!("{}: shape {s:?}, expected (n, d) or (n,)", path.display()),
        };
        (a.to_f64(), n, d)
    } else {
        let z = load_z(path)?;
        (z.z.iter().map(|&v| v as f64).collect(), z.n, z.zdim)
    };
    if n < 2 || d == 0 {
        bail!(
            "{}: {n} row(s) of {d} code(s); need n ≥ 2 and d ≥ 1",
            path.display()
        );
    }
    if let Some(p) = r.iter().position(|x| !x.is_finite()) {
        bail!(
            "{}: value [{}, {}] = {} is not finite",
            path.display(),
            p / d,
            p % d,
            r[p]
        );
    }
    Ok((r, n, d))
}

/// Reads the factors (n, K) as non-negative integers, checked against the representation's n rows.
fn load_factors(path: &Path, n: usize) -> anyhow::Result<(Vec<usize>, usize)> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let a = match ext.as_str() {
        "npy" => read_npy(path)?,
        "pkl" => read_pkl(path)?
            .as_array()
            .cloned()
            .with_context(|| format!("{}: not a numpy array", path.display()))?,
        _ => bail!(
            "{}: factors must be a .npy or .pkl numpy array (got extension `{ext}`)",
            path.display()
        ),
    };
    let k = match a.shape.as_slice() {
        [m] if *m == n => 1,
        [m, k] if *m == n && *k > 0 => *k,
        s => bail!(
            "{}: shape {s:?}, expected ({n},) or ({n}, K) with K ≥ 1 to match the representation's {n} rows",
            path.display()
        ),
    };
    let v = a.to_f64();
    let mut out = Vec::with_capacity(v.len());
    for (p, &x) in v.iter().enumerate() {
        if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < u32::MAX as f64) {
            bail!(
                "{}: factor value [{}, {}] = {x} is not a non-negative integer",
                path.display(),
                p / k,
                p % k
            );
        }
        out.push(x as usize);
    }
    Ok((out, k))
}

/// Run `disentangle scores` (model mode with WEIGHTS, arrays mode with --repr/--factors).
pub fn run(a: ScoresArgs) -> anyhow::Result<()> {
    let metrics = if a.metrics.is_empty() {
        Metric::ALL.to_vec()
    } else {
        let mut m = a
            .metrics
            .iter()
            .map(|s| Metric::parse(s.trim()))
            .collect::<crate::Result<Vec<Metric>>>()
            .context("--metrics")?;
        m.sort_unstable();
        m.dedup();
        m
    };
    let cfg = ScoresConfig {
        scale: a.scale,
        seed: a.seed,
        metrics,
        iterations: a.iterations,
        ..ScoresConfig::default()
    };
    let (repr_path, factors_path) = match (&a.weights, &a.repr, &a.factors) {
        (Some(w), _, _) => return run_model(&a, w, &cfg),
        (None, Some(r), Some(f)) => (r, f),
        _ => {
            bail!("give a model (WEIGHTS -c CONFIG --phantom DIR) or arrays (--repr R --factors V)")
        }
    };
    let (r, n, d) = load_repr(repr_path)?;
    let (v, k) = load_factors(factors_path, n)
        .with_context(|| format!("reading the factors for {}", repr_path.display()))?;
    let num_values: Vec<usize> = if a.num_values.is_empty() {
        (0..k)
            .map(|c| v.iter().skip(c).step_by(k).max().map_or(1, |m| m + 1))
            .collect()
    } else {
        if a.num_values.len() != k {
            bail!(
                "--num-values has {} entries but {} has K = {k} factor column(s)",
                a.num_values.len(),
                factors_path.display()
            );
        }
        if let Some(p) = v
            .iter()
            .enumerate()
            .position(|(p, &x)| x >= a.num_values[p % k])
        {
            bail!(
                "{}: factor value [{}, {}] = {} is outside --num-values 0..{}",
                factors_path.display(),
                p / k,
                p % k,
                v[p],
                a.num_values[p % k]
            );
        }
        a.num_values.clone()
    };
    if let Some(c) = num_values.iter().position(|&m| m < 2) {
        bail!(
            "{}: factor column {c} takes a single value; every factor needs at least 2",
            factors_path.display()
        );
    }
    let mut g = RowGenerator::new(r, d, v, num_values, a.seed)
        .with_context(|| format!("{} with {}", repr_path.display(), factors_path.display()))?;
    let mut input = Map::new();
    input.insert("mode".into(), json!("arrays"));
    input.insert("repr".into(), json!(repr_path.display().to_string()));
    input.insert("factors".into(), json!(factors_path.display().to_string()));
    input.insert("n".into(), json!(n));
    score_generator(&mut g, &cfg, input, a.dump.as_deref(), &a.o)
}

/// Model mode: the phantom's generator → images → the model's μ_z.
fn run_model(a: &ScoresArgs, weights: &Path, cfg: &ScoresConfig) -> anyhow::Result<()> {
    let (config, phantom) = match (&a.config, &a.phantom) {
        (Some(c), Some(p)) => (c, p),
        _ => bail!("model mode needs -c CONFIG and --phantom DIR"),
    };
    let probe = Probe::load(weights, config)?;
    let world = World::open(phantom).with_context(|| format!("--phantom {}", phantom.display()))?;
    if !(a.t_extent >= 0.0 && a.t_extent.is_finite()) {
        bail!("--t-extent must be ≥ 0, got {}", a.t_extent);
    }
    let ctf = match a.defocus.as_deref() {
        Some(&[lo, hi]) => {
            if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
                bail!("--defocus needs 0 < LO ≤ HI, got {lo} {hi}");
            }
            CtfSpec::Defocus {
                lo,
                hi,
                voltage_kv: 300.0,
                cs_mm: 2.7,
                amplitude_contrast: 0.1,
            }
        }
        _ => CtfSpec::None,
    };
    let law = ImageLaw {
        pose: a.pose_dist.into(),
        t_extent_px: a.t_extent,
        ctf,
    };
    let sigma = match a.snr {
        Some(snr) => sigma_for(&world, &law, snr, a.seed ^ 0x5A5A)?,
        None => 0.0,
    };
    let mut g = WorldGenerator::new(&world, &probe, law, sigma, a.seed)?;
    let mut input = Map::new();
    input.insert("mode".into(), json!("model"));
    input.insert("weights".into(), json!(weights.display().to_string()));
    input.insert("config".into(), json!(config.display().to_string()));
    input.insert("phantom".into(), json!(phantom.display().to_string()));
    input.insert("pose_dist".into(), json!(format!("{:?}", a.pose_dist)));
    input.insert("snr".into(), json!(a.snr));
    input.insert("sigma".into(), json!(sigma));
    input.insert("t_extent".into(), json!(a.t_extent));
    input.insert("defocus".into(), json!(a.defocus));
    input.insert("levels".into(), json!(world.grid.g));
    score_generator(&mut g, cfg, input, a.dump.as_deref(), &a.o)
}

/// Scores any labelled generator (arrays mode's [`RowGenerator`]; a later model mode's
/// phantom → images → encoder source): runs the metrics, prints one line each, writes the JSON
/// (`input` describes the source) atomically to `out`.
pub fn score_generator(
    g: &mut dyn LabelledGenerator,
    cfg: &ScoresConfig,
    input: Map<String, Value>,
    dump: Option<&Path>,
    out: &Path,
) -> anyhow::Result<()> {
    let rep = all_scores(g, cfg, dump)?;
    for line in rep.summary_lines() {
        println!("{line}");
    }
    let scores: Map<String, Value> = rep
        .headline()
        .into_iter()
        .map(|(m, v)| (m.name().to_string(), json!(v)))
        .collect();
    let doc = json!({
        "input": input,
        "scores": scores,
        "report": rep,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    write_bytes_atomic(out, format!("{text}\n").as_bytes())?;
    if let Some(dir) = dump {
        eprintln!("dumped the metrics' inputs to {}", dir.display());
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
