//! `disentangle`: disentanglement metrics of learned latents against the true generative factors of a
//! simulated dataset (spec `disentanglement.md` §4). One subcommand per metric family:
//!
//! - `mcc`: the mean correlation coefficient. C[i, j] = corr(z_i, truth_j) (Spearman, the primary,
//!   and/or Pearson); MCC = max over matchings of the mean |C| over the min(zdim, k) matched pairs,
//!   solved exactly by linear sum assignment. `--conf-cols` adds MCC_conf: the MCC against the named
//!   truth columns only (e.g. the conformational factors t1, t2 without the pose). Written as JSON
//!   with the matrix, the matching and the values. `--pose-pred/--pose-true` align a learned in-plane
//!   angle as ±ψ̂ + c and add it as a column (MCC_all over (z, ψ)).
//! - `scores` (`disentangle_scores`), `interventions` (`disentangle_interventions`), `rot90`
//!   (`disentangle_rot90`), `plots` (`disentangle_plots`): each documented in its module.
//!
//! Example: `cryofield disentangle mcc --z out/z.19.pkl --truth data/factors.pkl --conf-cols 0,1 -o out/mcc.json`

use crate::analysis::latent::load_z;
use crate::disentangle::mcc::{mcc, Mcc, Method};
use crate::io::atomic::write_bytes_atomic;
use crate::io::pkl::read_pkl;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The `disentangle` subcommand group.
#[derive(Debug, clap::Args)]
#[command(
    about = "Disentanglement metrics of latents against true factors (mcc, scores, interventions, rot90, plots)"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

/// The metrics of `disentangle`.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    Mcc(MccArgs),
    Scores(crate::cli::disentangle_scores::ScoresArgs),
    Interventions(crate::cli::disentangle_interventions::InterventionsArgs),
    Rot90(crate::cli::disentangle_rot90::Rot90Args),
    Plots(crate::cli::disentangle_plots::PlotsArgs),
}

/// Which correlation(s) `mcc` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    Spearman,
    Pearson,
    Both,
}

/// Mean correlation coefficient between latents and true factors.
#[derive(Debug, clap::Args)]
#[command(
    about = "Mean correlation coefficient (MCC) between latents and true factors, by exact assignment"
)]
pub struct MccArgs {
    /// Latents (z.N.pkl, .npy or text; (N, zdim))
    #[arg(long)]
    pub z: PathBuf,
    /// True factors (pickled numpy array, (N,) or (N, k), rows in the latents' order)
    #[arg(long)]
    pub truth: PathBuf,
    /// Correlation coefficient(s)
    #[arg(long, value_enum, default_value_t = MethodArg::Both)]
    pub method: MethodArg,
    /// Truth columns (0-based, comma-separated) for MCC_conf, e.g. the conformational factors
    #[arg(long = "conf-cols", value_delimiter = ',')]
    pub conf_cols: Vec<usize>,
    /// Predicted in-plane angles (pose_pred.N.pkl of a `--pose-source encoder` run, (N,) radians): aligned
    /// to --pose-true as ±ψ̂ + c and added as a latent column, for MCC_all over (z, ψ)
    #[arg(long = "pose-pred", requires = "pose_true")]
    pub pose_pred: Option<PathBuf>,
    /// True in-plane angles ((N,) radians, pose_angle.pkl from `simulate --pose-dist inplane`); added as
    /// a truth column (the last)
    #[arg(long = "pose-true", requires = "pose_pred")]
    pub pose_true: Option<PathBuf>,
    /// Output JSON
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Run `disentangle`.
pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        Sub::Mcc(m) => run_mcc(m),
        Sub::Scores(s) => crate::cli::disentangle_scores::run(s),
        Sub::Interventions(m) => crate::cli::disentangle_interventions::run(m),
        Sub::Rot90(m) => crate::cli::disentangle_rot90::run(m),
        Sub::Plots(m) => crate::cli::disentangle_plots::run(m),
    }
}

/// The true factors as a row-major (n, k) f64 matrix, checked against the latents' row count (also
/// `plots`' and the angle files' reader).
pub(crate) fn load_truth(path: &Path, n: usize) -> anyhow::Result<(Vec<f64>, usize)> {
    let v = read_pkl(path)?;
    let a = v
        .as_array()
        .with_context(|| format!("{}: not a numpy array", path.display()))?;
    let k = match a.shape.as_slice() {
        [m] if *m == n => 1,
        [m, k] if *m == n && *k > 0 => *k,
        s => bail!(
            "{}: shape {s:?}, expected ({n},) or ({n}, k) with k ≥ 1 to match the latents' {n} rows",
            path.display()
        ),
    };
    let t = a.to_f64();
    if let Some(p) = t.iter().position(|x| !x.is_finite()) {
        bail!(
            "{}: value [{}, {}] = {} is not finite",
            path.display(),
            p / k,
            p % k,
            t[p]
        );
    }
    Ok((t, k))
}

/// One MCC result as JSON.
fn mcc_json(m: &Mcc) -> Value {
    let matrix: Vec<&[f64]> = m.matrix.chunks(m.k2).collect();
    json!({
        "matrix": matrix,
        "assignment": {"latent": m.latent, "factor": m.factor, "corr": m.pairs()},
        "mcc": m.value,
        "mcc_over_truth": m.value_over_truth,
    })
}

fn run_mcc(a: MccArgs) -> anyhow::Result<()> {
    let lat = load_z(&a.z)?;
    let (n, k1) = (lat.n, lat.zdim);
    if let Some(p) = lat.z.iter().position(|x| !x.is_finite()) {
        bail!(
            "{}: latent [{}, {}] = {} is not finite",
            a.z.display(),
            p / k1,
            p % k1,
            lat.z[p]
        );
    }
    if n < 2 {
        bail!("{}: {n} latent row(s), need at least 2", a.z.display());
    }
    let mut z: Vec<f64> = lat.z.iter().map(|&v| v as f64).collect();
    let (mut truth, mut k2) = load_truth(&a.truth, n)
        .with_context(|| format!("reading the truth for latents {}", a.z.display()))?;
    // MCC_conf compares the conformational latents only (without an appended pose column)
    let (z_lat, zdim) = (z.clone(), k1);
    let mut k1 = k1;
    let mut pose_entry = None;
    if let (Some(pp), Some(pt)) = (&a.pose_pred, &a.pose_true) {
        let angles = |path: &Path| -> anyhow::Result<Vec<f64>> {
            let (v, k) = load_truth(path, n)?;
            if k != 1 {
                bail!(
                    "{}: expected (N,) in-plane angles in radians, got {k} columns",
                    path.display()
                );
            }
            Ok(v)
        };
        let (pred, true_psi) = (angles(pp)?, angles(pt)?);
        let al = crate::disentangle::mcc::align_angle(&pred, &true_psi)?;
        // the aligned angle unwrapped next to the truth, so that ranks compare like with like
        let unwrapped: Vec<f64> = al
            .aligned
            .iter()
            .zip(&true_psi)
            .map(|(a, t)| t + crate::disentangle::mcc::wrap_angle(a - t))
            .collect();
        let mut errs: Vec<f64> = al
            .aligned
            .iter()
            .zip(&true_psi)
            .map(|(a, t)| {
                crate::disentangle::mcc::wrap_angle(a - t)
                    .abs()
                    .to_degrees()
            })
            .collect();
        errs.sort_by(f64::total_cmp);
        let spearman = mcc(&unwrapped, &true_psi, n, 1, 1, Method::Spearman)?.value;
        println!(
            "pose: aligned as {}ψ̂ + {:.1}°, median error {:.2}°, Spearman {:.4}",
            if al.sign > 0.0 { "+" } else { "−" },
            al.offset.to_degrees(),
            errs[n / 2],
            spearman
        );
        pose_entry = Some(json!({
            "pose_pred": pp.display().to_string(),
            "pose_true": pt.display().to_string(),
            "sign": al.sign,
            "offset_deg": al.offset.to_degrees(),
            "median_error_deg": errs[n / 2],
            "mean_error_deg": al.mean_abs_error.to_degrees(),
            "circular_error": al.circular_error,
            "spearman": spearman,
        }));
        z = (0..n)
            .flat_map(|i| {
                let mut r = z[i * k1..(i + 1) * k1].to_vec();
                r.push(unwrapped[i]);
                r
            })
            .collect();
        truth = (0..n)
            .flat_map(|i| {
                let mut r = truth[i * k2..(i + 1) * k2].to_vec();
                r.push(true_psi[i]);
                r
            })
            .collect();
        k1 += 1;
        k2 += 1;
    }
    if let Some(&c) = a.conf_cols.iter().find(|&&c| c >= k2) {
        bail!(
            "--conf-cols {c}: {} has only {k2} column(s)",
            a.truth.display()
        );
    }
    let mut conf_sorted = a.conf_cols.clone();
    conf_sorted.sort_unstable();
    conf_sorted.dedup();
    if conf_sorted.len() != a.conf_cols.len() {
        bail!("--conf-cols {:?}: repeated column", a.conf_cols);
    }
    let conf: Vec<f64> = (0..n)
        .flat_map(|i| a.conf_cols.iter().map(move |&c| (i, c)))
        .map(|(i, c)| truth[i * k2 + c])
        .collect();
    let methods: &[Method] = match a.method {
        MethodArg::Spearman => &[Method::Spearman],
        MethodArg::Pearson => &[Method::Pearson],
        MethodArg::Both => &[Method::Spearman, Method::Pearson],
    };
    let mut out = serde_json::Map::new();
    out.insert("z".into(), json!(a.z.display().to_string()));
    out.insert("truth".into(), json!(a.truth.display().to_string()));
    out.insert("n".into(), json!(n));
    out.insert("zdim".into(), json!(zdim));
    out.insert("k_truth".into(), json!(k2));
    if let Some(p) = pose_entry {
        out.insert("pose".into(), p);
    }
    for &method in methods {
        let m = mcc(&z, &truth, n, k1, k2, method)?;
        let mut entry = mcc_json(&m);
        let mut line = format!("MCC ({}) = {:.4}", method.name(), m.value);
        if !a.conf_cols.is_empty() {
            let c = mcc(&z_lat, &conf, n, zdim, a.conf_cols.len(), method)?;
            let mut cj = mcc_json(&c);
            cj["truth_cols"] = json!(a.conf_cols);
            entry["conf"] = cj;
            line.push_str(&format!(", MCC_conf {:?} = {:.4}", a.conf_cols, c.value));
        }
        println!("{line}");
        out.insert(method.name().into(), entry);
    }
    let text = serde_json::to_string_pretty(&Value::Object(out))?;
    write_bytes_atomic(&a.o, format!("{text}\n").as_bytes())?;
    eprintln!("wrote {}", a.o.display());
    Ok(())
}
