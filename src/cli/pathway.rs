//! `pathway`: cryoTWIN's automatic conformational pathways (Yamazaki et al. 2023, Algorithm 1) between
//! components of a `train-twin` model's GMM prior, with the volumes along them. From μ_i to μ_j, K − 1
//! intermediate points are chosen greedily on the mixture's ridgeline for high density and short steps
//! (`z(k) = argmin_m ‖z_m − z(k−1)‖ / p(z_m)` over M candidates; see [`crate::twin::pathway`]), giving
//! K + 1 points whose decoded volumes V̂(z(0)) … V̂(z(K)) show the transition.
//!
//! Pairs: `--from i --to j`, or `--auto-pairs K`: the K components of largest π and all pairs i < j
//! among them; with `--vols` only the pairs whose means decode to different nearest true states (the
//! paper's "different expert labels").
//!
//! The nearest true state of a decoded volume (`--vols`, a phantom's `vols.txt`) is the truth volume of
//! largest Pearson correlation with it, which is the one at the smallest L2 distance once both are
//! normalised to zero mean and unit norm (‖a − b‖² = 2 − 2 corr). Volumes are decoded at the truth's box
//! (which must not exceed the model's D; `-d`, if given, must equal it).
//!
//! Outputs in `-o DIR`, all written first and moved into place together at the end (a failed run leaves
//! DIR as it was):
//!
//! | file | content |
//! |---|---|
//! | `path_i_j.z.txt` | the K + 1 latent points ((K+1) × d, `%.18e`) |
//! | `path_i_j.txt` | per point k: step ‖z(k) − z(k−1)‖, log p(z(k)), −log p, the greedy cost `p(z(0))/p(z(k)) · step` (with `--vols`: nearest true state and its correlation) |
//! | `path_i_j/vol_000.mrc …` | the K + 1 decoded volumes (not with `--no-volumes`) |
//! | `path_i_j.png` | the path over the PCA of the latents (`--zfile`), else of the GMM means with 2000 prior samples as background; GMM means marked and numbered by component |
//! | `modes.txt` | per component c: π_c, μ_c (with `--vols`: the nearest true state of V̂(μ_c)) |
//! | `pairs.txt` | the summary table (also printed): per pair π, labels, max −log p and length of the path |
//!
//! Example: `cryofield pathway out/weights.19.safetensors -c out/config.json --gmm out/gmm.19.npz --auto-pairs 10 --vols phantom/vols.txt --zfile out/z.19.pkl -o out/pathways`

use crate::analysis::latent::{fmt_e18, load_z, marked_scatter, Marks};
use crate::analysis::pca::Pca;
use crate::analysis::plot::PlotStyle;
use crate::cli::fsc::load_volume;
use crate::cli::progress;
use crate::io::atomic::{write_bytes_atomic, Staged};
use crate::io::mrc::write_mrc;
use crate::model::load::{read_record, LoadedModel};
use crate::twin::gmm::Gmm;
use crate::twin::pathway::{Pathway, PathwayConfig};
use anyhow::{bail, Context};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Automatic pathways between GMM components of a twin model.
#[derive(Debug, clap::Args)]
#[command(
    about = "Automatic conformational pathways between GMM components of a train-twin model (Algorithm 1), with volumes"
)]
#[command(group(clap::ArgGroup::new("pairs").required(true).args(["from", "auto_pairs"])))]
pub struct Args {
    /// Model weights (weights.N.safetensors of a train-twin run)
    pub weights: PathBuf,
    /// The run's config.json
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// The GMM prior (gmm.N.npz: pi (C), mu (C, d), cov (C, d, d))
    #[arg(long)]
    pub gmm: PathBuf,
    /// Start component i (0-based)
    #[arg(long, requires = "to")]
    pub from: Option<usize>,
    /// End component j (0-based)
    #[arg(long, requires = "from")]
    pub to: Option<usize>,
    /// Paths between the K components of largest π (all pairs, or with --vols those with different nearest true states)
    #[arg(long = "auto-pairs", value_name = "K", conflicts_with_all = ["from", "to"])]
    pub auto_pairs: Option<usize>,
    /// Steps K of each path (K + 1 points)
    #[arg(short = 'K', default_value_t = 11)]
    pub k: usize,
    /// ω > 1: larger keeps the path near its start longer
    #[arg(long, default_value_t = 2.0)]
    pub omega: f64,
    /// Candidate ridgeline points per step, M
    #[arg(short = 'M', default_value_t = 1000)]
    pub m: usize,
    /// Dirichlet concentration of the other components' weights
    #[arg(long = "alpha-conc", default_value_t = 1.0)]
    pub alpha_conc: f64,
    /// Seed of the candidate draws (and of the plot's prior samples)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// True volumes (a phantom's vols.txt: one .mrc per line, relative to the list): label each point and mean by its nearest true state
    #[arg(long)]
    pub vols: Option<PathBuf>,
    /// Do not write volumes (paths, labels and plots only)
    #[arg(long = "no-volumes")]
    pub no_volumes: bool,
    /// Compare decoded volumes with the truth as decoded (default: negated when the run inverted
    /// its data, as eval-accuracy does, since simulated data are projections of positive densities)
    #[arg(long = "no-sign-fix")]
    pub no_sign_fix: bool,
    /// Latents (z.N.pkl) drawn behind the paths in the plots
    #[arg(long)]
    pub zfile: Option<PathBuf>,
    /// Decode volumes on a smaller D×D×D box (Fourier cropping); with --vols it must be the truth's box
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
    /// Output folder
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Truth volumes, each normalised to zero mean and unit norm, for nearest-state labels.
struct Truth {
    /// normalised volumes (box³ each)
    vols: Vec<Vec<f64>>,
    /// box size
    d: usize,
    /// −1 when decoded volumes are −density (the run inverted its data), else 1
    sign: f64,
}

/// `v − mean(v)` scaled to unit norm; None for a constant volume.
fn normalised(v: &[f32]) -> Option<Vec<f64>> {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let c: Vec<f64> = v.iter().map(|&x| f64::from(x) - mean).collect();
    let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| c.into_iter().map(|x| x / norm).collect())
}

impl Truth {
    fn load(list: &Path, sign: f64) -> anyhow::Result<Self> {
        let paths = crate::cli::eval_accuracy::read_list(list)?;
        let mut vols = Vec::with_capacity(paths.len());
        let mut d = 0;
        for (i, p) in paths.iter().enumerate() {
            let (v, di, _) = load_volume(p, &format!("true volume {i} of {}", list.display()))?;
            if i == 0 {
                d = di;
            } else if di != d {
                bail!(
                    "{}: true volumes differ in box size ({} is {di}³, the first is {d}³)",
                    list.display(),
                    p.display()
                );
            }
            let v = normalised(&v).with_context(|| {
                format!(
                    "{}: true volume {} is constant",
                    list.display(),
                    p.display()
                )
            })?;
            vols.push(v);
        }
        Ok(Truth { vols, d, sign })
    }

    /// The nearest true state of `v` and its correlation (None for a constant volume).
    fn nearest(&self, v: &[f32]) -> Option<(usize, f64)> {
        let x = normalised(v)?;
        self.vols
            .iter()
            .map(|t| self.sign * t.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>())
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// `state corr` columns, or `- nan` for an unlabelled volume.
fn label_cols(l: Option<(usize, f64)>) -> String {
    match l {
        Some((s, c)) => format!("{s} {c:.6}"),
        None => "- nan".into(),
    }
}

/// Folders this run created, removed again (when still empty) unless the run succeeds.
struct NewDirs {
    dirs: Vec<PathBuf>,
    keep: bool,
}

impl NewDirs {
    /// Note `dir` if it does not exist yet (call before creating it).
    fn note(&mut self, dir: &Path) {
        if !dir.exists() {
            self.dirs.push(dir.to_path_buf());
        }
    }
}

impl Drop for NewDirs {
    fn drop(&mut self) {
        if !self.keep {
            for d in self.dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// One computed pair.
struct PairResult {
    from: usize,
    to: usize,
    path: Pathway,
    labels: Vec<Option<(usize, f64)>>,
}

/// The pairs of `--auto-pairs k`: all i < j among the k components of largest π, and with labels only
/// those whose labels differ (unlabelled means never count as different).
fn auto_pairs(
    pi: &[f64],
    k: usize,
    labels: Option<&[Option<(usize, f64)>]>,
) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..pi.len()).collect();
    order.sort_by(|&a, &b| pi[b].total_cmp(&pi[a]).then(a.cmp(&b)));
    let mut top = order[..k].to_vec();
    top.sort_unstable();
    let mut out = Vec::new();
    for (x, &i) in top.iter().enumerate() {
        for &j in &top[x + 1..] {
            let keep = match labels {
                None => true,
                Some(l) => matches!((l[i], l[j]), (Some(a), Some(b)) if a.0 != b.0),
            };
            if keep {
                out.push((i, j));
            }
        }
    }
    out
}

/// Run `pathway`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let record = read_record(&a.config)?;
    if record.config.twin.is_none() {
        bail!(
            "{}: a train-vae model has no GMM prior: pathway needs a train-twin run",
            a.config.display()
        );
    }
    let zdim = record.config.zdim.unwrap_or(0);
    let gmm = Gmm::read(&a.gmm)?;
    let nc = gmm.n_comp();
    if gmm.d != zdim {
        bail!(
            "{}: the GMM is {}-dimensional but the model of {} has zdim {zdim}",
            a.gmm.display(),
            gmm.d,
            a.config.display()
        );
    }
    let cfg = PathwayConfig {
        k: a.k,
        omega: a.omega,
        m: a.m,
        alpha_conc: a.alpha_conc,
        seed: a.seed,
    };
    let finite_above = |v: f64, lo: f64| v > lo && v.is_finite();
    if a.k < 1 || a.m < 1 || !finite_above(a.omega, 1.0) || !finite_above(a.alpha_conc, 0.0) {
        bail!(
            "need -K ≥ 1, -M ≥ 1, --omega > 1 and --alpha-conc > 0; got -K {}, -M {}, --omega {}, --alpha-conc {}",
            a.k,
            a.m,
            a.omega,
            a.alpha_conc
        );
    }
    if let (Some(i), Some(j)) = (a.from, a.to) {
        for (flag, c) in [("--from", i), ("--to", j)] {
            if c >= nc {
                bail!(
                    "{flag} {c}: {} has C = {nc} components (indices 0..{})",
                    a.gmm.display(),
                    nc - 1
                );
            }
        }
        if i == j {
            bail!("--from and --to are both {i}: a pathway needs two different components");
        }
    }
    if let Some(k) = a.auto_pairs {
        if k < 2 || k > nc {
            bail!(
                "--auto-pairs {k}: must be in 2..={nc} (the number of components C of {})",
                a.gmm.display()
            );
        }
    }
    // as eval-accuracy: a run that inverted its data decodes −density
    let sign = if record.config.invert_data && !a.no_sign_fix {
        -1.0
    } else {
        1.0
    };
    let truth = a
        .vols
        .as_deref()
        .map(|v| Truth::load(v, sign))
        .transpose()?;
    let model_d = record.d;
    let box_d = match (&truth, a.downsample) {
        (Some(t), Some(d)) if d != t.d => bail!(
            "-d {d} differs from the box {} of the true volumes in {}: volumes are compared at the truth's box (leave -d out or set it to {})",
            t.d,
            a.vols.as_deref().unwrap_or(Path::new("")).display(),
            t.d
        ),
        (Some(t), _) => t.d,
        (None, Some(d)) => d,
        (None, None) => model_d,
    };
    if box_d < 2 || !box_d.is_multiple_of(2) || box_d > model_d {
        match &a.vols {
            Some(v) => bail!(
                "{}: true volumes are {box_d}³ but the model of {} decodes even boxes up to {model_d}³",
                v.display(),
                a.config.display()
            ),
            None => bail!("-d {box_d}: must be even and in 2..={model_d} (the model's box)"),
        }
    }
    let background = match &a.zfile {
        Some(p) => {
            let lat = load_z(p)?;
            if lat.zdim != zdim {
                bail!(
                    "{}: latents have zdim {} but the model of {} has zdim {zdim}",
                    p.display(),
                    lat.zdim,
                    a.config.display()
                );
            }
            Some(lat)
        }
        None => None,
    };
    let model = LoadedModel::load(&a.weights, &a.config)?;
    let apix = model.apix().unwrap_or(1.0) * model_d as f32 / box_d as f32;
    let decode = |z: &[f64]| -> anyhow::Result<Vec<f32>> {
        let zf: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        model
            .volume(Some(&zf), Some(box_d))
            .with_context(|| format!("decoding with {}", a.weights.display()))
    };

    // Labels of the means (--vols): needed by modes.txt and by --auto-pairs.
    let mode_labels: Option<Vec<Option<(usize, f64)>>> = match &truth {
        Some(t) => {
            let pb = progress::bar(nc as u64, "labelling modes");
            let mut l = Vec::with_capacity(nc);
            for c in 0..nc {
                l.push(t.nearest(&decode(&gmm.mu[c * zdim..(c + 1) * zdim])?));
                pb.inc(1);
            }
            pb.finish_and_clear();
            Some(l)
        }
        None => None,
    };
    let pairs = match (a.from, a.to, a.auto_pairs) {
        (Some(i), Some(j), _) => vec![(i, j)],
        (_, _, Some(k)) => {
            let p = auto_pairs(&gmm.pi, k, mode_labels.as_deref());
            if p.is_empty() {
                bail!(
                    "--auto-pairs {k}: the means of the {k} components of largest π in {} all decode to the same nearest true state of {}; raise --auto-pairs or leave out --vols",
                    a.gmm.display(),
                    a.vols.as_deref().unwrap_or(Path::new("")).display()
                );
            }
            p
        }
        _ => bail!("give --from and --to, or --auto-pairs"),
    };

    let mut new_dirs = NewDirs {
        dirs: Vec::new(),
        keep: false,
    };
    new_dirs.note(&a.o);
    let mut staged = Staged::new(&a.o)?;
    let mut vol_stages = Vec::new();
    let decode_points = !a.no_volumes || truth.is_some();
    let pb = progress::bar(
        if decode_points {
            (pairs.len() * (a.k + 1)) as u64
        } else {
            0
        },
        "pathway volumes",
    );
    let mut results = Vec::with_capacity(pairs.len());
    for &(i, j) in &pairs {
        let path = gmm
            .pathway(i, j, &cfg)
            .with_context(|| format!("pathway {i} → {j} of {}", a.gmm.display()))?;
        let name = format!("path_{i}_{j}");
        let vdir = a.o.join(&name);
        let mut vstage = if a.no_volumes {
            None
        } else {
            new_dirs.note(&vdir);
            Some(Staged::new(&vdir)?)
        };
        let mut labels = Vec::with_capacity(path.z.len());
        if decode_points {
            for (k, z) in path.z.iter().enumerate() {
                let v = decode(z)?;
                labels.push(truth.as_ref().and_then(|t| t.nearest(&v)));
                if let Some(st) = &mut vstage {
                    let p = st.path(format!("vol_{k:03}.mrc"))?;
                    write_mrc(&p, &v, (box_d, box_d, box_d), apix, true).with_context(|| {
                        format!("writing {}", vdir.join(format!("vol_{k:03}.mrc")).display())
                    })?;
                }
                pb.inc(1);
            }
        }
        // Volumes of an earlier, longer path in this folder are removed (with --no-volumes, all of
        // them: they would not match the new path).
        if vdir.is_dir() {
            let stale: Vec<std::ffi::OsString> = std::fs::read_dir(&vdir)
                .with_context(|| format!("listing {}", vdir.display()))?
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| {
                    let s = n.to_string_lossy();
                    s.starts_with("vol_") && s.ends_with(".mrc")
                })
                .collect();
            let st = match &mut vstage {
                Some(st) => st,
                None => vstage.insert(Staged::new(&vdir)?),
            };
            for n in stale {
                st.remove_on_commit(n);
            }
        }
        if let Some(st) = vstage {
            vol_stages.push(st);
        }
        write_path_files(&mut staged, &name, &a, &path, &labels)?;
        results.push(PairResult {
            from: i,
            to: j,
            path,
            labels,
        });
    }
    pb.finish_and_clear();

    plot_paths(&mut staged, &a, &gmm, background.as_ref(), &results)?;
    write_bytes_atomic(
        staged.path("modes.txt")?,
        modes_text(&a, &gmm, mode_labels.as_deref()).as_bytes(),
    )?;
    let table = pairs_table(&a, &gmm, mode_labels.as_deref(), &results);
    write_bytes_atomic(staged.path("pairs.txt")?, table.as_bytes())?;

    for st in vol_stages {
        st.commit()?;
    }
    staged.commit()?;
    new_dirs.keep = true;
    print!("{table}");
    eprintln!(
        "pathway: {} path(s) of K = {} steps into {} in {:.2} s",
        results.len(),
        a.k,
        a.o.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `path_i_j.z.txt` and `path_i_j.txt`, staged.
fn write_path_files(
    staged: &mut Staged,
    name: &str,
    a: &Args,
    path: &Pathway,
    labels: &[Option<(usize, f64)>],
) -> anyhow::Result<()> {
    let mut zt = String::new();
    for z in &path.z {
        let row: Vec<String> = z.iter().map(|&v| fmt_e18(v)).collect();
        zt.push_str(&row.join(" "));
        zt.push('\n');
    }
    write_bytes_atomic(staged.path(format!("{name}.z.txt"))?, zt.as_bytes())?;
    let mut t = format!(
        "# pathway of {}: K = {}, omega = {}, M = {}, Dirichlet({}), seed {}\n\
         # cost = p(z(0)) / p(z(k)) * step, Algorithm 1's criterion (0 at k = 0)\n",
        a.gmm.display(),
        a.k,
        a.omega,
        a.m,
        a.alpha_conc,
        a.seed
    );
    if a.vols.is_some() {
        t.push_str("# state: nearest true volume by Pearson correlation (corr)\n");
        t.push_str("# k step log_p neg_log_p cost state corr\n");
    } else {
        t.push_str("# k step log_p neg_log_p cost\n");
    }
    let lp0 = path.log_p[0];
    for k in 0..path.z.len() {
        let cost = (lp0 - path.log_p[k]).exp() * path.step[k];
        let _ = write!(
            t,
            "{k} {:.6e} {:.6} {:.6} {:.6e}",
            path.step[k], path.log_p[k], -path.log_p[k], cost
        );
        if a.vols.is_some() {
            let _ = write!(t, " {}", label_cols(labels.get(k).copied().flatten()));
        }
        t.push('\n');
    }
    write_bytes_atomic(staged.path(format!("{name}.txt"))?, t.as_bytes())?;
    Ok(())
}

/// `modes.txt`: c, π_c, μ_c and, with labels, the nearest true state of V̂(μ_c).
fn modes_text(a: &Args, gmm: &Gmm, labels: Option<&[Option<(usize, f64)>]>) -> String {
    let d = gmm.d;
    let mut t = format!(
        "# components of {} (C = {}, d = {d})\n# c pi {}{}\n",
        a.gmm.display(),
        gmm.n_comp(),
        (0..d)
            .map(|j| format!("mu_{j}"))
            .collect::<Vec<_>>()
            .join(" "),
        if labels.is_some() { " state corr" } else { "" }
    );
    for c in 0..gmm.n_comp() {
        let _ = write!(t, "{c} {:.6e}", gmm.pi[c]);
        for v in &gmm.mu[c * d..(c + 1) * d] {
            let _ = write!(t, " {v:.6e}");
        }
        if let Some(l) = labels {
            let _ = write!(t, " {}", label_cols(l[c]));
        }
        t.push('\n');
    }
    t
}

/// The summary table: one row per pair.
fn pairs_table(
    a: &Args,
    gmm: &Gmm,
    labels: Option<&[Option<(usize, f64)>]>,
    results: &[PairResult],
) -> String {
    let state = |l: Option<(usize, f64)>| l.map_or("-".to_string(), |(s, _)| s.to_string());
    let mut t = format!(
        "# pathways of {} (K = {}): max -log p along the path, length = sum of steps{}\n",
        a.gmm.display(),
        a.k,
        if labels.is_some() {
            "; states: nearest true state of the means and of the path's points"
        } else {
            ""
        }
    );
    t.push_str(&format!(
        "{:>5} {:>5} {:>10} {:>10} {:>12} {:>10}{}\n",
        "from",
        "to",
        "pi_from",
        "pi_to",
        "max_neglogp",
        "length",
        if labels.is_some() {
            "  state_from state_to  path_states"
        } else {
            ""
        }
    ));
    for r in results {
        let worst = r
            .path
            .log_p
            .iter()
            .map(|v| -v)
            .fold(f64::NEG_INFINITY, f64::max);
        let len: f64 = r.path.step.iter().sum();
        let _ = write!(
            t,
            "{:>5} {:>5} {:>10.4e} {:>10.4e} {:>12.4} {:>10.4}",
            r.from, r.to, gmm.pi[r.from], gmm.pi[r.to], worst, len
        );
        if let Some(l) = labels {
            let seq: Vec<String> = r.labels.iter().map(|&x| state(x)).collect();
            let _ = write!(
                t,
                "  {:>10} {:>8}  {}",
                state(l[r.from]),
                state(l[r.to]),
                seq.join("-")
            );
        }
        t.push('\n');
    }
    t
}

/// `path_i_j.png` for every pair: the path over a PCA background with the GMM means marked.
fn plot_paths(
    staged: &mut Staged,
    a: &Args,
    gmm: &Gmm,
    latents: Option<&crate::analysis::latent::Latents>,
    results: &[PairResult],
) -> anyhow::Result<()> {
    let d = gmm.d;
    let means: Vec<f32> = gmm.mu.iter().map(|&v| v as f32).collect();
    let (pca, bg, what) = match latents {
        Some(l) => (
            Pca::fit(&l.z, l.n, d)?,
            l.z.clone(),
            format!(
                "the latents {}",
                a.zfile.as_deref().unwrap_or(Path::new("")).display()
            ),
        ),
        None => {
            let s: Vec<f32> = gmm.sample(2000, a.seed).iter().map(|&v| v as f32).collect();
            (
                Pca::fit(&means, gmm.n_comp(), d)?,
                s,
                "2000 prior samples; PCA of the GMM means".to_string(),
            )
        }
    };
    let xy = |pts: &[f64]| -> Vec<(f64, f64)> {
        let x = pca.project(pts, 0);
        let y = if d > 1 {
            pca.project(pts, 1)
        } else {
            vec![0.0; x.len()]
        };
        x.into_iter().zip(y).collect()
    };
    let bgf: Vec<f64> = bg.iter().map(|&v| f64::from(v)).collect();
    let bxy = xy(&bgf);
    let (bx, by): (Vec<f64>, Vec<f64>) = bxy.into_iter().unzip();
    let mxy = xy(&gmm.mu);
    let ratio = |k: usize| pca.explained_variance_ratio.get(k).copied().unwrap_or(0.0);
    for r in results {
        let flat: Vec<f64> = r.path.z.iter().flatten().copied().collect();
        let pts = xy(&flat);
        let label = format!("path {} → {}", r.from, r.to);
        let style = PlotStyle {
            title: format!("pathway {} → {} over {what}", r.from, r.to),
            x_label: format!("PC1 ({:.1}%)", 100.0 * ratio(0)),
            y_label: if d > 1 {
                format!("PC2 ({:.1}%)", 100.0 * ratio(1))
            } else {
                String::new()
            },
            ..PlotStyle::default()
        };
        let p = staged.path(format!("path_{}_{}.png", r.from, r.to))?;
        marked_scatter(
            &p,
            &bx,
            &by,
            &Marks {
                labels: None,
                points: &mxy,
                connect: false,
                paths: &[(label.as_str(), &pts)],
            },
            &style,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pairs_take_the_largest_weights_and_differing_labels() {
        let pi = [0.1, 0.4, 0.05, 0.3, 0.15];
        assert_eq!(auto_pairs(&pi, 3, None), vec![(1, 3), (1, 4), (3, 4)]);
        let l = [
            Some((0, 0.9)),
            Some((2, 0.9)),
            None,
            Some((2, 0.8)),
            Some((5, 0.7)),
        ];
        assert_eq!(auto_pairs(&pi, 3, Some(&l)), vec![(1, 4), (3, 4)]);
    }

    #[test]
    fn nearest_state_is_the_largest_correlation() {
        let a: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..64).map(|i| (i as f32 * 0.7).cos()).collect();
        let t = Truth {
            vols: vec![normalised(&a).unwrap(), normalised(&b).unwrap()],
            d: 4,
            sign: 1.0,
        };
        // Scaled and shifted copies keep their state; correlation 1.
        let b2: Vec<f32> = b.iter().map(|v| 3.0 * v + 7.0).collect();
        let (s, c) = t.nearest(&b2).unwrap();
        assert_eq!(s, 1);
        assert!((c - 1.0).abs() < 1e-9, "{c}");
        assert_eq!(t.nearest(&a).unwrap().0, 0);
        assert!(t.nearest(&[1.0; 64]).is_none());
        // A model of inverted data decodes −density: with sign −1 the negated copy is state 1, corr 1.
        let neg = Truth { sign: -1.0, ..t };
        let b3: Vec<f32> = b.iter().map(|v| -v).collect();
        let (s, c) = neg.nearest(&b3).unwrap();
        assert_eq!(s, 1);
        assert!((c - 1.0).abs() < 1e-9, "{c}");
    }
}
