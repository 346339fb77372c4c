//! `eval-accuracy`: the per-image reconstruction-accuracy metric of the cryoDRGN paper (Zhong et
//! al. 2020, Table 2): for `-n` randomly chosen images, decode the volume at the image's latent,
//! compute its FSC against the true volume of the image's state and take the FSC = 0.5
//! resolution (the highest frequency whose FSC ≥ 0.5; lower is better, best possible 2 pixels).
//! Prints mean ± std and median, and writes a per-image table (`index label resolution`).
//!
//! Resolution is in Å with `--Apix` or a pixel size in the truth volumes' header, else in pixels.
//! When no shell reaches 0.5 the image scores D pixels (the coarsest shell).
//!
//! Sign: the model reproduces the training data as preprocessed, inverted unless the run used
//! `--uninvert-data`. Data from `cryofield simulate` are projections of positive densities, so
//! a model trained with inversion decodes −density: decoded volumes are negated when the run's
//! `invert_data` is true (`--no-sign-fix` keeps them as decoded).
//!
//! Example: `cryofield eval-accuracy out/weights.19.safetensors -c out/config.json --zfile out/z.19.pkl --vols phantom/vols.txt --labels sim/labels.pkl -o acc.txt`

use crate::analysis::latent::load_z;
use crate::fourier::fsc::fsc_curve;
use crate::io::mrc::MrcFile;
use crate::io::pkl::read_pkl;
use crate::model::load::LoadedModel;
use anyhow::{bail, Context};
use rand::{rngs::StdRng, SeedableRng};
use std::path::{Path, PathBuf};

/// Per-image FSC=0.5 resolution of a trained model against ground-truth volumes.
#[derive(Debug, clap::Args)]
#[command(about = "Per-image FSC=0.5 resolution of a trained model against ground truth")]
pub struct Args {
    /// Model weights (weights.N.safetensors); omit with --decoded
    #[arg(required_unless_present_any = ["decoded", "write_z"])]
    pub weights: Option<PathBuf>,
    /// The run's config.json
    #[arg(short = 'c', long = "config", required_unless_present_any = ["decoded", "write_z"])]
    pub config: Option<PathBuf>,
    /// Latents of the images (z.N.pkl, .npy or .txt), image order
    #[arg(long)]
    pub zfile: PathBuf,
    /// Truth volumes: a .txt list (paths relative to it), state i on line i
    #[arg(long)]
    pub vols: PathBuf,
    /// State of each image (.pkl of N ints)
    #[arg(long)]
    pub labels: PathBuf,
    /// Number of images to evaluate
    #[arg(short = 'n', default_value_t = 100)]
    pub n: usize,
    /// Seed of the image choice
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pixel size (Å); default: the truth volumes' header, else pixel units
    #[arg(long = "Apix")]
    pub apix: Option<f64>,
    /// Do not negate decoded volumes of a model trained on inverted data
    #[arg(long = "no-sign-fix")]
    pub no_sign_fix: bool,
    /// Per-image table (index label resolution)
    #[arg(short = 'o')]
    pub o: Option<PathBuf>,
    /// Score volumes decoded by another program instead of a model: DIR/vol_000.mrc, vol_001.mrc, …
    /// (or from vol_001.mrc, as cryoDRGN's `eval_vol --zfile` numbers them)
    /// one per chosen image in increasing image order (write their latents with --write-z)
    #[arg(long, conflicts_with_all = ["weights", "config"])]
    pub decoded: Option<PathBuf>,
    /// With --decoded: negate the volumes (a model trained on inverted data decodes −density)
    #[arg(long, requires = "decoded")]
    pub negate: bool,
    /// Only write the latents of the chosen images (text rows, increasing image order) and stop:
    /// the input of another program's decoder (e.g. the reference's `eval_vol --zfile`) for --decoded
    #[arg(long = "write-z", conflicts_with_all = ["weights", "config", "decoded"])]
    pub write_z: Option<PathBuf>,
    /// True latent coordinate of each image ((N,) or (N, k) .pkl, e.g. `simulate`'s truth.pkl):
    /// also report the Spearman rank correlation of every z dimension with every coordinate
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Spearman ρ of every latent dimension (rows) with every truth coordinate (columns), over all
/// images: `z (n, zdim)` against the `(n, k)` array in `truth`.
pub fn truth_correlation(z: &[f32], zdim: usize, truth: &Path) -> anyhow::Result<Vec<Vec<f64>>> {
    let v = read_pkl(truth)?;
    let a = v
        .as_array()
        .with_context(|| format!("{}: not a numpy array", truth.display()))?;
    let n = z.len() / zdim;
    let k = match a.shape.as_slice() {
        [m] if *m == n => 1,
        [m, k] if *m == n => *k,
        s => bail!(
            "{}: shape {s:?}, expected ({n},) or ({n}, k) to match the latents",
            truth.display()
        ),
    };
    let t = a.to_f64();
    Ok((0..zdim)
        .map(|j| {
            let zj: Vec<f64> = (0..n).map(|i| z[i * zdim + j] as f64).collect();
            (0..k)
                .map(|c| {
                    let tc: Vec<f64> = (0..n).map(|i| t[i * k + c]).collect();
                    crate::analysis::stats::spearman(&zj, &tc)
                })
                .collect()
        })
        .collect())
}

/// What `eval-accuracy` measured.
#[derive(Clone, Debug)]
pub struct Accuracy {
    /// (image index, label, resolution) per evaluated image
    pub rows: Vec<(usize, usize, f64)>,
    pub mean: f64,
    pub std: f64,
    pub median: f64,
    /// Å when true, pixels otherwise.
    pub angstrom: bool,
}

/// The volume paths in a list file (one per line, relative to the list's folder; blank lines and
/// `#` comments skipped), as `phantom` writes `vols.txt`.
pub(crate) fn read_list(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let v: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l))
        .collect();
    if v.is_empty() {
        bail!("{}: no volumes listed", path.display());
    }
    Ok(v)
}

fn read_labels(path: &Path) -> anyhow::Result<Vec<usize>> {
    let v = read_pkl(path)?;
    let a = v
        .as_array()
        .with_context(|| format!("{}: not a numpy array of labels", path.display()))?;
    if a.shape.len() != 1 {
        bail!(
            "{}: labels must be a 1-D array, got shape {:?}",
            path.display(),
            a.shape
        );
    }
    a.to_f32()
        .iter()
        .map(|&x| {
            if x < 0.0 || x.fract() != 0.0 {
                bail!(
                    "{}: label {x} is not a non-negative integer",
                    path.display()
                )
            }
            Ok(x as usize)
        })
        .collect()
}

/// The evaluated images: `n` (at most `total`) drawn without replacement with `seed`, in
/// increasing order.
pub fn chosen(total: usize, n: usize, seed: u64) -> anyhow::Result<Vec<usize>> {
    let m = n.min(total);
    if m == 0 {
        bail!("-n must be at least 1");
    }
    let mut pick = rand::seq::index::sample(&mut StdRng::seed_from_u64(seed), total, m).into_vec();
    pick.sort_unstable();
    Ok(pick)
}

/// Compute the metric (see the module doc).
pub fn evaluate(a: &Args) -> anyhow::Result<Accuracy> {
    let lat = load_z(&a.zfile)?;
    if a.write_z.is_some() {
        bail!("--write-z only writes the chosen latents (see `run`), it scores nothing");
    }
    let model = match (&a.weights, &a.config, &a.decoded) {
        (Some(w), Some(c), None) => {
            let m = LoadedModel::load(w, c)?;
            if m.zdim == 0 {
                bail!(
                    "{}: a homogeneous model has no per-image latents",
                    w.display()
                );
            }
            if lat.zdim != m.zdim {
                bail!(
                    "{}: latents have zdim {} but the model {} has zdim {}",
                    a.zfile.display(),
                    lat.zdim,
                    w.display(),
                    m.zdim
                );
            }
            Some(m)
        }
        (None, None, Some(_)) => None,
        _ => bail!("give a model (WEIGHTS -c CONFIG) or --decoded DIR, not both"),
    };
    let labels = read_labels(&a.labels)?;
    if labels.len() != lat.n {
        bail!(
            "{}: {} labels but {} has {} latents",
            a.labels.display(),
            labels.len(),
            a.zfile.display(),
            lat.n
        );
    }
    let vols = read_list(&a.vols)?;
    if let Some(&mx) = labels.iter().max() {
        if mx >= vols.len() {
            bail!(
                "{}: label {mx} but {} lists {} volumes",
                a.labels.display(),
                a.vols.display(),
                vols.len()
            );
        }
    }
    let mut truth: Vec<Option<Vec<f32>>> = vec![None; vols.len()];
    let mut header_apix = None;
    let pick = chosen(lat.n, a.n, a.seed)?;
    let m = pick.len();
    let sign = match &model {
        Some(m) if m.record.config.invert_data && !a.no_sign_fix => -1.0,
        None if a.negate => -1.0,
        _ => 1.0,
    };
    let mut d = model.as_ref().map_or(0, |m| m.d);
    // eval-vol (ours and cryoDRGN 4.3's) numbers --zfile volumes from 1 (vol_001.mrc, …); older
    // runs from 0
    let first = match &a.decoded {
        Some(dir) if !dir.join("vol_000.mrc").exists() && dir.join("vol_001.mrc").exists() => 1,
        _ => 0,
    };
    let mut rows = Vec::with_capacity(m);
    for (k, &i) in pick.iter().enumerate() {
        let mut vol = match (&model, &a.decoded) {
            (Some(model), _) => {
                model.volume(Some(&lat.z[i * lat.zdim..(i + 1) * lat.zdim]), None)?
            }
            (None, Some(dir)) => {
                let p = dir.join(format!("vol_{:03}.mrc", k + first));
                let f = MrcFile::open(&p)?;
                let v = f.read_all()?;
                let side = f.header.nx as usize;
                if v.len() != side * side * side || (d != 0 && side != d) {
                    bail!("{}: expected a cubic volume like the others", p.display());
                }
                d = side;
                v
            }
            _ => unreachable!("checked above"),
        };
        vol.iter_mut().for_each(|v| *v *= sign);
        let l = labels[i];
        if truth[l].is_none() {
            let f = MrcFile::open(&vols[l])?;
            let v = f.read_all()?;
            if v.len() != d * d * d {
                bail!(
                    "{}: {} values, expected a {d}³ volume (the model's box)",
                    vols[l].display(),
                    v.len()
                );
            }
            let ap = f.header.apix();
            if ap > 0.0 && header_apix.is_none() {
                header_apix = Some(ap as f64);
            }
            truth[l] = Some(v);
        }
        let c = fsc_curve(&vol, truth[l].as_ref().unwrap(), d, None)?;
        let pix = c.pixres_at(0.5).unwrap_or(1.0 / d as f64);
        rows.push((i, l, 1.0 / pix));
    }
    let apix = a.apix.or(header_apix);
    if let Some(ap) = apix {
        rows.iter_mut().for_each(|r| r.2 *= ap);
    }
    let res: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let mean = res.iter().sum::<f64>() / m as f64;
    let std = (res.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / m as f64).sqrt();
    let mut s = res.clone();
    s.sort_by(|x, y| x.total_cmp(y));
    let median = if !m.is_multiple_of(2) {
        s[m / 2]
    } else {
        0.5 * (s[m / 2 - 1] + s[m / 2])
    };
    Ok(Accuracy {
        rows,
        mean,
        std,
        median,
        angstrom: apix.is_some(),
    })
}

/// Run `eval-accuracy`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(p) = &a.write_z {
        let lat = load_z(&a.zfile)?;
        let pick = chosen(lat.n, a.n, a.seed)?;
        let z: Vec<f64> = pick
            .iter()
            .flat_map(|&i| lat.z[i * lat.zdim..(i + 1) * lat.zdim].iter())
            .map(|&v| v as f64)
            .collect();
        crate::cli::prior_train::save_latents(p, &z, lat.zdim)?;
        println!(
            "latents of the {} chosen images → {} (decode them into vol_000.mrc, … and score with --decoded)",
            pick.len(),
            p.display()
        );
        return Ok(());
    }
    if let Some(t) = &a.truth {
        let lat = load_z(&a.zfile)?;
        let rho = truth_correlation(&lat.z, lat.zdim, t)?;
        for (j, r) in rho.iter().enumerate() {
            let cols: Vec<String> = r.iter().map(|x| format!("{x:+.4}")).collect();
            println!("Spearman ρ(z[{j}], truth) = {}", cols.join(", "));
        }
    }
    let acc = evaluate(&a)?;
    let unit = if acc.angstrom { "Å" } else { "px" };
    println!(
        "FSC=0.5 resolution over {} images: {:.3} ± {:.3} {unit} (median {:.3} {unit})",
        acc.rows.len(),
        acc.mean,
        acc.std,
        acc.median
    );
    if let Some(o) = &a.o {
        let mut t = format!("# index label resolution_{unit}\n");
        for (i, l, r) in &acc.rows {
            t.push_str(&format!("{i} {l} {r:.6}\n"));
        }
        crate::io::atomic::write_bytes_atomic(o, t.as_bytes())?;
    }
    Ok(())
}
