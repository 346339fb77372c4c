//! `pc-gen-metrics`: generation metrics of sampled clouds against reference clouds (issue 25, spec
//! §5, Table 3; PointFlow's CD-based definitions): 1-NNA (leave-one-out 1-nearest-neighbour
//! accuracy of samples ∪ references, 50 % ideal), COV (fraction of references that are some
//! sample's nearest reference) and MMD (mean over references of the minimum Chamfer distance to a
//! sample, normalised² units). Prints them and writes them as JSON (`-o`).
//!
//! Example: `cryofield pc-gen-metrics samples.npy --ref GT_test.npz -o gen_metrics.json`

use std::path::PathBuf;

use serde_json::json;

use crate::io::atomic::write_bytes_atomic;
use crate::pointcloud::data::GroundTruth;
use crate::pointcloud::metrics::generation_metrics;
use crate::pointcloud::prepare::read_clouds;

/// Generation metrics of samples against references.
#[derive(Debug, clap::Args)]
#[command(about = "1-NNA, COV and MMD (Chamfer-based) of sampled clouds against reference clouds")]
pub struct Args {
    /// Samples (.npy (S, N, 3) or (N, 3), normalised units)
    pub samples: PathBuf,
    /// References: clouds .npy (R, M, 3) or a ground truth GT.npz (its clouds)
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// Output metrics (.json)
    #[arg(short = 'o', long = "outfile", default_value = "gen_metrics.json")]
    pub o: PathBuf,
}

/// Run `pc-gen-metrics`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (samples, s, n) = read_clouds(&a.samples)?;
    let is_npz = a
        .reference
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let (refs, r, m) = if is_npz {
        let gt = GroundTruth::read(&a.reference)?;
        (gt.clouds, gt.s, gt.n)
    } else {
        read_clouds(&a.reference)?
    };
    let g = generation_metrics(&samples, n, &refs, m)?;
    let out = json!({
        "samples": a.samples.display().to_string(),
        "ref": a.reference.display().to_string(),
        "n_samples": s,
        "n_refs": r,
        "one_nna": g.one_nna,
        "cov": g.cov,
        "mmd": g.mmd,
        "units": "one_nna, cov: fractions; mmd: Chamfer distance, normalised²",
    });
    write_bytes_atomic(&a.o, serde_json::to_string_pretty(&out)?.as_bytes())?;
    println!(
        "1-NNA {:.2} %  COV {:.2} %  MMD {:.4e} ({s} samples, {r} references)",
        100.0 * g.one_nna,
        100.0 * g.cov,
        g.mmd
    );
    eprintln!("wrote {}", a.o.display());
    Ok(())
}
