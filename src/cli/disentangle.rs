//! `disentangle`: disentanglement metrics of learned latents against the true generative factors of a
//! simulated dataset (spec `disentanglement.md` §4). One subcommand per metric family; so far:
//!
//! - `mcc`: the mean correlation coefficient. C[i, j] = corr(z_i, truth_j) (Spearman, the primary,
//!   and/or Pearson); MCC = max over matchings of the mean |C| over the min(zdim, k) matched pairs,
//!   solved exactly by linear sum assignment. `--conf-cols` adds MCC_conf: the MCC against the named
//!   truth columns only (e.g. the conformational factors t1, t2 without the pose). Written as JSON
//!   with the matrix, the matching and the values.
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
#[command(about = "Disentanglement metrics of latents against true factors (mcc)")]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

/// The metrics of `disentangle`.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    Mcc(MccArgs),
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
    /// Output JSON
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Run `disentangle`.
pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        Sub::Mcc(m) => run_mcc(m),
        Sub::Interventions(m) => crate::cli::disentangle_interventions::run(m),
        Sub::Rot90(m) => crate::cli::disentangle_rot90::run(m),
        Sub::Plots(m) => crate::cli::disentangle_plots::run(m),
    }
}

/// The true factors as a row-major (n, k) f64 matrix, checked against the latents' row count.
fn load_truth(path: &Path, n: usize) -> anyhow::Result<(Vec<f64>, usize)> {
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
    let z: Vec<f64> = lat.z.iter().map(|&v| v as f64).collect();
    let (truth, k2) = load_truth(&a.truth, n)
        .with_context(|| format!("reading the truth for latents {}", a.z.display()))?;
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
    out.insert("zdim".into(), json!(k1));
    out.insert("k_truth".into(), json!(k2));
    for &method in methods {
        let m = mcc(&z, &truth, n, k1, k2, method)?;
        let mut entry = mcc_json(&m);
        let mut line = format!("MCC ({}) = {:.4}", method.name(), m.value);
        if !a.conf_cols.is_empty() {
            let c = mcc(&z, &conf, n, k1, a.conf_cols.len(), method)?;
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
