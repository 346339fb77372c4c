//! `pc-eval`: accuracy of reconstructed clouds against the ground truth (issue 25, spec §5) →
//! `metrics.json`. Per reconstruction, and mean ± std (population, ddof 0) over them:
//!
//! - `cd`, `emd`: Chamfer and exact Earth Mover's distance in normalised units (EMD only when the
//!   reconstruction has the ground truth's N points);
//! - `rmsd_subsampled_A`, `rmsd_atomic_A`: the protein RMSDs in Å. The reconstruction is taken to
//!   Å with the ground truth's centre and scale, scaled about its centroid to the Rg of the GT
//!   means, aligned to them by kernel correlation (σ annealed along `--kc-sigma`, Å, from the
//!   identity), then compared with the GT means (optimal assignment) and with every heavy atom
//!   (nearest model point; atoms from `--pdb` or stored in GT.npz, else omitted);
//! - `rg_scale`: the Rg factor applied;
//! - `E` (with `--obs`): the weighted energy of the model under the observations (spec §3).
//!
//! RECON.npy is `(N, 3)` or `(S, N, 3)` (S reconstructions of the same structure).
//!
//! Example: `cryofield pc-eval out/recon.npy --truth GT.npz --pdb 6ryr.cif -o metrics.json`

use std::path::PathBuf;

use anyhow::bail;
use serde_json::{json, Map, Value};

use crate::assignment::AuctionState;
use crate::io::atomic::write_bytes_atomic;
use crate::io::pdb::read_model;
use crate::pointcloud::data::{to_angstrom, GroundTruth, Observations};
use crate::pointcloud::energy::{EnergyModel, Solver};
use crate::pointcloud::metrics::{chamfer, emd, protein_rmsd, KcParams};
use crate::pointcloud::prepare::{heavy_atoms, read_clouds};

/// Accuracy of reconstructed clouds.
#[derive(Debug, clap::Args)]
#[command(
    about = "Accuracy of reconstructed clouds vs the ground truth: CD, EMD, RMSD subsampled/atomic (Å) → metrics.json"
)]
pub struct Args {
    /// Reconstructions (.npy (N, 3) or (S, N, 3), normalised units)
    pub recon: PathBuf,
    /// Ground truth (.npz from pc-prepare)
    #[arg(long)]
    pub truth: PathBuf,
    /// Which cloud of the ground truth (0-based)
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Atomic model for the atomic RMSD (heavy atoms; default: the atoms stored in GT.npz)
    #[arg(long)]
    pub pdb: Option<PathBuf>,
    /// Kernel-correlation σ schedule (Å), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "3,2,1.5,1")]
    pub kc_sigma: Vec<f64>,
    /// Observations: adds `E`, the weighted energy of each model (exact assignments; U drawn
    /// with --seed as pc-reconstruct does)
    #[arg(long)]
    pub obs: Option<PathBuf>,
    /// Seed of the observations' upsampling U (pc-reconstruct's --seed)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output metrics (.json)
    #[arg(short = 'o', long = "outfile", default_value = "metrics.json")]
    pub o: PathBuf,
}

/// Mean and population standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt(),
    )
}

/// Run `pc-eval`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let gt = GroundTruth::read_index(&a.truth, a.index)?;
    let (recon, s, n) = read_clouds(&a.recon)?;
    let truth = gt.cloud(a.index);
    let center = &gt.center[3 * a.index..3 * a.index + 3];
    let scale = gt.scale[a.index];
    let truth_a = gt.cloud_angstrom(a.index);
    let atoms = match &a.pdb {
        Some(p) => {
            let h = heavy_atoms(&read_model(p)?);
            if h.is_empty() {
                bail!("{}: no heavy atoms", p.display());
            }
            Some(h)
        }
        None => gt.atoms.clone(),
    };
    let kc = KcParams {
        sigmas: a.kc_sigma.clone(),
        ..KcParams::angstrom()
    };
    let keys = [
        "cd",
        "emd",
        "rmsd_subsampled_A",
        "rmsd_atomic_A",
        "rg_scale",
        "E",
    ];
    let energy = match &a.obs {
        Some(p) => {
            let obs = Observations::read(p)?;
            if obs.n_points != n {
                bail!(
                    "{}: observations of a {}-point cloud, the reconstructions have {n} points",
                    p.display(),
                    obs.n_points
                );
            }
            Some(EnergyModel::new(&obs, n, a.seed)?)
        }
        None => None,
    };
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    let mut models = Vec::with_capacity(s);
    for (i, x) in recon.chunks_exact(3 * n).enumerate() {
        let mut rec = Map::new();
        rec.insert("index".into(), json!(i));
        let mut put = |k: usize, v: Option<f64>| {
            if let Some(v) = v {
                cols[k].push(v);
            }
            rec.insert(keys[k].into(), v.map_or(Value::Null, |v| json!(v)));
        };
        put(0, Some(chamfer(x, truth)?));
        put(
            1,
            if n == gt.n {
                Some(emd(x, truth)?)
            } else {
                None
            },
        );
        let r = protein_rmsd(
            &to_angstrom(x, center, scale),
            &truth_a,
            atoms.as_deref(),
            &kc,
        )?;
        put(2, Some(r.subsampled));
        put(3, r.atomic);
        put(4, Some(r.rg_scale));
        put(
            5,
            match &energy {
                Some(em) => {
                    let mut st = vec![AuctionState::new(); em.item_names().len()];
                    Some(em.energy(x, &Solver::Exact, &mut st)?.total)
                }
                None => None,
            },
        );
        models.push(Value::Object(rec));
    }
    let mut mean = Map::new();
    let mut std = Map::new();
    for (k, c) in keys.iter().zip(&cols) {
        if c.len() == s {
            let (m, sd) = mean_std(c);
            mean.insert((*k).into(), json!(m));
            std.insert((*k).into(), json!(sd));
        }
    }
    let out = json!({
        "recon": a.recon.display().to_string(),
        "truth": a.truth.display().to_string(),
        "index": a.index,
        "n_models": s,
        "n_points": n,
        "units": "cd: normalised² (mean of both nearest-neighbour terms); emd: normalised; rmsd_*_A: Å; E: squared normalised units, weighted by 1/|y|",
        "kc_sigma_A": a.kc_sigma,
        "models": models,
        "mean": mean,
        "std": std,
    });
    write_bytes_atomic(&a.o, serde_json::to_string_pretty(&out)?.as_bytes())?;
    let fmt = |k: &str| {
        let m = out["mean"][k].as_f64();
        let sd = out["std"][k].as_f64();
        match (m, sd) {
            (Some(m), Some(sd)) => format!("{k} {m:.4} ± {sd:.4}"),
            _ => format!("{k} –"),
        }
    };
    eprintln!(
        "{s} model(s): {}; wrote {}",
        keys.iter()
            .filter(|k| **k != "rg_scale" && (**k != "E" || energy.is_some()))
            .map(|k| fmt(k))
            .collect::<Vec<_>>()
            .join(", "),
        a.o.display()
    );
    Ok(())
}
