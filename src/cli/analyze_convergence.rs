//! `analyze-convergence`: has a `train-vae` run converged? cryoDRGN 4.3.1's `cryodrgn_utils
//! analyze_convergence` ([`crate::analysis::convergence`] for the computations), on our runs and
//! on cryoDRGN's, into `OUTDIR/convergence.EPOCH/` (or `-o`):
//!
//! | output | what |
//! |---|---|
//! | `plots/00_total_loss.png` | total loss per epoch, from `run.log` |
//! | `ind_subset.pkl`, `umaps/umap.N.pkl`, `plots/01_encoder_umaps.png` | UMAP of a particle subset at the sampled epochs `4, 4 + interval, …, EPOCH` |
//! | `vector_metrics.pkl`, `plots/02_encoder_latent_vector_shifts.png` | per-epoch medians of the latent shifts (dot product, magnitude, cosine distance), epochs 3 … EPOCH |
//! | `plots/03_decoder_UMAP-sketching.png` | EPOCH's UMAP histogram, its local maxima A, B, … |
//! | `repr_particles/latent_representative.N.txt`, `plots/04_decoder_maxima-sketch-consistency.png` | each maximum's representative latent at each sampled epoch |
//! | `vols.N/vol_001.mrc` …, `vol_001.masked.mrc` … | volumes at those latents, and masked (threshold, dilation, cosine edge) |
//! | `cc_masked.pkl`, `plots/05_decoder_CC.png` | correlation of each maximum's masked volumes between successive sampled epochs |
//! | `fsc_masked.pkl`, `fsc_xaxis.pkl`, `plots/06_decoder_FSC.png`, `plots/07_decoder_FSC-nyquist.png` | their FSCs, and the FSC's last shell |
//! | `convergence.log` | this run's log |
//!
//! Epochs are numbered as the run's files (`z.1.pkl` … from cryoDRGN 4.3 and from us). Volumes
//! are numbered from 1 (`vol_001.mrc` is maximum A), as 4.3's `eval_vol` numbers them.
//! cryoDRGN 4.3.1's own `analyze_convergence` does not run on 4.3.1's runs: it asks for
//! `z.0.pkl` and reads `vol_000.mrc`.
//!
//! Example: `cryofield analyze-convergence out/ 25 --epoch-interval 5`

use crate::analysis::convergence::{
    convergence_fsc, latent_shifts, masked_cc, parse_loss, representatives, sampled_epochs,
    sketch_local_maxima, SketchOptions,
};
use crate::analysis::convergence_plots::{
    density_grid, line_grid, sketch_plot, DensityPanel, LinePanel, Sketch as SketchFigure,
};
use crate::analysis::latent::{load_z, savetxt};
use crate::analysis::mask::cosine_dilation_mask;
use crate::analysis::plot::{line_plot, LineOptions, PlotStyle, Series};
use crate::analysis::umap::{umap, UmapOptions};
use crate::cli::analyze::run_files;
use crate::cli::eval_vol::{write_volumes, VolOptions};
use crate::io::array::{ArrayData, NdArray};
use crate::io::pkl::{read_pkl, write_pkl, PyValue};
use crate::model::load::LoadedModel;
use anyhow::{bail, Context};
use rand::seq::index::sample;
use rand::SeedableRng;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Analyze the convergence of a train-vae run.
#[derive(Debug, clap::Args)]
#[command(about = "Convergence of a train-vae run: loss, latent shifts, UMAPs, volume CC/FSC")]
pub struct Args {
    /// The training output folder
    pub workdir: PathBuf,
    /// Last epoch to analyze, as numbered in z.EPOCH.pkl (−1: the last numbered one)
    #[arg(allow_hyphen_values = true)]
    pub epoch: i64,
    /// Output folder (default WORKDIR/convergence.EPOCH)
    #[arg(short = 'o', long = "outdir")]
    pub outdir: Option<PathBuf>,
    /// Epochs between the sampled epochs (UMAPs, volumes)
    #[arg(long = "epoch-interval", default_value_t = 5)]
    pub epoch_interval: usize,
    /// Most particles in the UMAPs ("None": all)
    #[arg(long, default_value = "50000")]
    pub subset: String,
    /// Seed of the particle subset (default: a random one, logged)
    #[arg(long = "random-seed")]
    pub random_seed: Option<u64>,
    /// Seed of each UMAP
    #[arg(long = "random-state", default_value_t = 42)]
    pub random_state: u64,
    /// Reuse the UMAPs of an earlier run in the output folder
    #[arg(long = "skip-umap")]
    pub skip_umap: bool,
    /// Accepted for the reference's command lines (our UMAP runs on the CPU)
    #[arg(long = "force-umap-cpu", hide = true)]
    pub force_umap_cpu: bool,
    /// Accepted for the reference's command lines (cuML's UMAP epochs)
    #[arg(long = "n-epochs-umap", hide = true)]
    pub n_epochs_umap: Option<usize>,
    /// Bins along each UMAP axis
    #[arg(long = "n-bins", default_value_t = 30)]
    pub n_bins: usize,
    /// Smooth the UMAP histogram before finding maxima
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub smooth: bool,
    /// Gaussian width, in bins along UMAP1 (see the reference's note in the module doc)
    #[arg(long = "smooth-width", default_value_t = 1.0)]
    pub smooth_width: f64,
    /// Prune poorly separated maxima until this many remain
    #[arg(long = "pruned-maxima", default_value_t = 12)]
    pub pruned_maxima: usize,
    /// Distance (bins) below which two maxima are poorly separated
    #[arg(long, default_value_t = 5.0)]
    pub radius: f64,
    /// Maxima kept, highest first (at most 26)
    #[arg(long = "final-maxima", default_value_t = 10)]
    pub final_maxima: usize,
    /// Pixel size of the volumes
    #[arg(long = "Apix", default_value_t = 1.0)]
    pub apix: f32,
    /// Flip handedness of the volumes
    #[arg(long)]
    pub flip: bool,
    /// Invert contrast of the volumes
    #[arg(long)]
    pub invert: bool,
    /// Evaluate volumes on a smaller box
    #[arg(short = 'd', long = "downsample")]
    pub downsample: Option<usize>,
    /// Accepted for the reference's command lines (volumes are decoded on the CPU)
    #[arg(long, hide = true)]
    pub device: Option<i64>,
    /// Reuse the masked volumes of an earlier run in the output folder
    #[arg(long = "skip-volgen")]
    pub skip_volgen: bool,
    /// Threads of the CPU pool [default: every core]
    #[arg(long = "max-threads")]
    pub max_threads: Option<usize>,
    /// Mask threshold (density value; default half the 99.99th percentile)
    #[arg(long)]
    pub thresh: Option<f32>,
    /// Mask dilation (voxels)
    #[arg(long, default_value_t = 3)]
    pub dilate: usize,
    /// Mask cosine edge width (voxels)
    #[arg(long, default_value_t = 10)]
    pub dist: usize,
}

/// Log lines to stderr and to `convergence.log`.
struct Log(std::fs::File);

impl Log {
    fn line(&mut self, s: impl AsRef<str>) {
        eprintln!("{}", s.as_ref());
        let _ = writeln!(self.0, "{}", s.as_ref());
    }
}

fn f64_array(shape: Vec<usize>, v: Vec<f64>) -> anyhow::Result<PyValue> {
    Ok(PyValue::Array(NdArray::new(shape, ArrayData::F64(v))?))
}

/// An `(n, 2)` float array from a pickle (our `umap.N.pkl` or an earlier run's).
fn load_umap(path: &Path) -> anyhow::Result<Vec<f64>> {
    let v = read_pkl(path)?;
    let a = v
        .as_array()
        .with_context(|| format!("{}: not a numpy array", path.display()))?;
    if a.shape.len() != 2 || a.shape[1] != 2 {
        bail!(
            "{}: expected an (N, 2) array, got {:?}",
            path.display(),
            a.shape
        );
    }
    Ok(a.to_f64())
}

/// The `(N,)` index list of `ind_subset.pkl`.
fn load_indices(path: &Path, n: usize) -> anyhow::Result<Vec<usize>> {
    let v = read_pkl(path)?;
    let ints: Vec<i64> = match &v {
        PyValue::List(xs) => xs
            .iter()
            .map(|x| match x {
                PyValue::Int(i) => Ok(*i),
                _ => bail!("{}: not a list of integers", path.display()),
            })
            .collect::<anyhow::Result<_>>()?,
        PyValue::Array(a) => a.to_f64().iter().map(|&x| x as i64).collect(),
        _ => bail!("{}: not a list of indices", path.display()),
    };
    ints.iter()
        .map(|&i| {
            if i < 0 || i as usize >= n {
                bail!(
                    "{}: index {i} out of range for {n} particles",
                    path.display()
                )
            }
            Ok(i as usize)
        })
        .collect()
}

fn gather(z: &[f32], zdim: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| z[r * zdim..(r + 1) * zdim].iter().copied())
        .collect()
}

/// ChimeraX's default model colours, as the reference's plots use them (× 0.75).
const CHIMERAX: [(u8, u8, u8); 10] = [
    (192, 192, 192),
    (255, 255, 178),
    (178, 255, 255),
    (178, 178, 255),
    (255, 178, 255),
    (255, 178, 178),
    (178, 255, 178),
    (229, 191, 153),
    (153, 191, 229),
    (204, 204, 153),
];

fn label_color(k: usize) -> (u8, u8, u8) {
    let c = CHIMERAX[k % CHIMERAX.len()];
    let f = |x: u8| (x as f64 * 0.75).round() as u8;
    (f(c.0), f(c.1), f(c.2))
}

/// One panel with a curve per maximum over the epochs `ep`, in the maxima's colours.
fn per_label<'a>(
    rows: &'a [Vec<f64>],
    labels: &'a [String],
    ep: &'a [f64],
    y_label: &str,
) -> Vec<LinePanel<'a>> {
    vec![LinePanel {
        title: String::new(),
        x_label: "epoch".into(),
        y_label: y_label.into(),
        series: rows
            .iter()
            .zip(labels)
            .map(|(y, l)| Series { label: l, x: ep, y })
            .collect(),
        colors: (0..rows.len()).map(label_color).collect(),
        y_range: None,
    }]
}

/// Run `analyze-convergence`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(t) = a.max_threads {
        crate::cli::train_nn::set_max_threads(t);
    }
    if a.force_umap_cpu || a.n_epochs_umap.is_some() || a.device.is_some() {
        eprintln!(
            "note: --force-umap-cpu, --n-epochs-umap and --device have no effect here (UMAP and \
             the volumes run on the CPU)"
        );
    }
    let work = &a.workdir;
    let last = if a.epoch < 0 {
        crate::train::checkpoint::last_numbered(work, "z", "pkl").with_context(|| {
            format!(
                "no z.N.pkl in {} (is it a train-vae output folder?)",
                work.display()
            )
        })?
    } else {
        a.epoch as usize
    };
    if last < 3 {
        bail!("epoch {last}: the convergence analysis needs at least 3 epochs (z.1.pkl … z.3.pkl)");
    }
    let epochs = sampled_epochs(last, a.epoch_interval);
    if epochs.len() < 2 {
        bail!(
            "epochs {epochs:?}: at least two sampled epochs are needed (4, 4 + interval, …, \
             {last}); give a smaller --epoch-interval or a later epoch"
        );
    }
    let sketch_opts = SketchOptions {
        n_bins: a.n_bins,
        smooth: a.smooth,
        smooth_width: a.smooth_width,
        pruned_maxima: a.pruned_maxima,
        radius: a.radius,
        final_maxima: a.final_maxima,
    };
    if a.n_bins < 3 {
        bail!("--n-bins {}: give at least 3", a.n_bins);
    }
    sketch_opts.check()?;
    // Every input must be there before anything is written.
    let (_, _, config, _) = run_files(work, last as i64)?;
    let logfile = work.join("run.log");
    for p in [&config, &logfile] {
        if !p.exists() {
            bail!(
                "{} not found (is {} a train-vae output folder?)",
                p.display(),
                work.display()
            );
        }
    }
    let zfile = |e: usize| work.join(format!("z.{e}.pkl"));
    for e in 1..=last {
        if !zfile(e).exists() {
            bail!(
                "{} not found: the convergence analysis reads every epoch's latents z.1.pkl … \
                 z.{last}.pkl (train with --checkpoint 1)",
                zfile(e).display()
            );
        }
    }
    let mut weights = Vec::new();
    for &e in &epochs {
        let (_, w, _, _) = run_files(work, e as i64)?;
        let (resolved, _) = crate::model::load::own_files(&w, &config);
        if !a.skip_volgen && !resolved.exists() {
            bail!(
                "{} not found: volumes are decoded at the sampled epochs {epochs:?}",
                w.display()
            );
        }
        weights.push(w);
    }
    let out = a
        .outdir
        .clone()
        .unwrap_or_else(|| work.join(format!("convergence.{last}")));
    for sub in ["", "plots", "umaps", "repr_particles"] {
        std::fs::create_dir_all(out.join(sub))
            .with_context(|| format!("creating {}", out.join(sub).display()))?;
    }
    let plots = out.join("plots");
    let mut log = Log(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("convergence.log"))
        .with_context(|| format!("opening {}", out.join("convergence.log").display()))?);
    log.line(format!("{a:?}"));
    if epochs.len() < 3 {
        log.line(
            "WARNING: Too few epochs have been selected for some analyses. Try decreasing \
             --epoch-interval to a shorter interval, or analyzing a later epoch.",
        );
    }
    log.line(format!("Saving all results to {}", out.display()));

    // 1. total loss
    let text = std::fs::read_to_string(&logfile)
        .with_context(|| format!("reading {}", logfile.display()))?;
    let loss: Vec<f64> = parse_loss(&text).into_iter().take(last).collect();
    if loss.is_empty() {
        log.line(format!(
            "{}: no `total loss =` epoch lines; no loss plot",
            logfile.display()
        ));
    } else {
        let x: Vec<f64> = (1..=loss.len()).map(|e| e as f64).collect();
        line_plot(
            plots.join("00_total_loss.png"),
            &[Series {
                label: "",
                x: &x,
                y: &loss,
            }],
            &PlotStyle {
                x_label: "epoch".into(),
                y_label: "total loss".into(),
                ..PlotStyle::default()
            },
            &LineOptions::default(),
        )?;
        log.line(format!(
            "Convergence 1: total loss of {} epochs: {}",
            loss.len(),
            plots.join("00_total_loss.png").display()
        ));
    }

    // 2. UMAPs of a particle subset at the sampled epochs
    let zlast = load_z(zfile(last))?;
    let (n_total, zdim) = (zlast.n, zlast.zdim);
    // every epoch's latents must have the last epoch's shape
    let load_epoch = |e: usize| -> anyhow::Result<Vec<f32>> {
        let z = load_z(zfile(e))?;
        if z.n != n_total || z.zdim != zdim {
            bail!(
                "{}: ({}, {}) latents, but {} has ({n_total}, {zdim})",
                zfile(e).display(),
                z.n,
                z.zdim,
                zfile(last).display()
            );
        }
        Ok(z.z)
    };
    let ind_path = out.join("ind_subset.pkl");
    let umap_path = |e: usize| out.join("umaps").join(format!("umap.{e}.pkl"));
    let mut umaps: Vec<Vec<f64>> = Vec::new();
    let subset: Vec<usize>;
    if a.skip_umap {
        log.line("Skipping UMAP calculation ...");
        subset = load_indices(&ind_path, n_total)?;
        for &e in &epochs {
            let u = load_umap(&umap_path(e))?;
            if u.len() != 2 * subset.len() {
                bail!(
                    "{}: {} points, but {} holds {} indices",
                    umap_path(e).display(),
                    u.len() / 2,
                    ind_path.display(),
                    subset.len()
                );
            }
            umaps.push(u);
        }
    } else {
        let k = if a.subset.eq_ignore_ascii_case("none") {
            n_total
        } else {
            let s: usize = a.subset.parse().with_context(|| {
                format!("--subset {}: give a number of particles or None", a.subset)
            })?;
            s.min(n_total)
        };
        let seed = a.random_seed.unwrap_or_else(rand::random::<u64>);
        log.line(format!(
            "Randomly selecting {k} particle subset on which to run UMAP (with random seed {seed})"
        ));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut s = sample(&mut rng, n_total, k).into_vec();
        s.sort_unstable();
        subset = s;
        write_pkl(
            &ind_path,
            &PyValue::List(subset.iter().map(|&i| PyValue::Int(i as i64)).collect()),
        )?;
        if subset.len() < 3 {
            bail!("{} particles: too few for a UMAP", subset.len());
        }
        let bar = crate::cli::progress::bar(epochs.len() as u64, "UMAP");
        for &e in &epochs {
            let z = load_epoch(e)?;
            let zs = gather(&z, zdim, &subset);
            let (emb, _) = umap(
                &zs,
                subset.len(),
                zdim,
                &UmapOptions {
                    seed: a.random_state,
                    max_points: subset.len(),
                    ..UmapOptions::default()
                },
            )?;
            write_pkl(
                umap_path(e),
                &PyValue::Array(NdArray::from_f32(
                    vec![subset.len(), 2],
                    emb.iter().map(|&v| v as f32).collect(),
                )?),
            )?;
            // the pickled float32 values, which the sketch bins (as the reference's)
            umaps.push(emb.iter().map(|&v| v as f32 as f64).collect());
            bar.inc(1);
        }
        bar.finish_and_clear();
        log.line(format!(
            "Convergence 2: UMAPs of epochs {epochs:?} in {}",
            out.join("umaps").display()
        ));
    }
    let titles: Vec<String> = epochs.iter().map(|e| format!("epoch {e}")).collect();
    let panels: Vec<DensityPanel<'_>> = umaps
        .iter()
        .zip(&titles)
        .map(|(u, t)| DensityPanel {
            title: t.clone(),
            xy: u,
            marks: &[],
            mark_labels: &[],
        })
        .collect();
    density_grid(
        &plots.join("01_encoder_umaps.png"),
        &panels,
        "particle density",
    )?;

    // 3. latent shifts between successive epochs, for every epoch
    let mut metrics = Vec::with_capacity(3 * (last - 2));
    let mut zs: Vec<Vec<f32>> = Vec::new();
    for e in 1..=last {
        zs.push(load_epoch(e)?);
        if zs.len() == 3 {
            metrics.extend(latent_shifts(&zs[0], &zs[1], &zs[2], zdim)?);
            zs.remove(0);
        }
    }
    write_pkl(
        out.join("vector_metrics.pkl"),
        &f64_array(vec![last - 2, 3], metrics.clone())?,
    )?;
    let ex: Vec<f64> = (3..=last).map(|e| e as f64).collect();
    let cols: Vec<Vec<f64>> = (0..3)
        .map(|j| metrics.iter().skip(j).step_by(3).copied().collect())
        .collect();
    let names = ["dot product", "magnitude", "cosine distance"];
    let shift_panels: Vec<LinePanel<'_>> = (0..3)
        .map(|j| LinePanel {
            title: String::new(),
            x_label: "epoch".into(),
            y_label: names[j].into(),
            series: vec![Series {
                label: "",
                x: &ex,
                y: &cols[j],
            }],
            colors: vec![],
            y_range: None,
        })
        .collect();
    line_grid(
        &plots.join("02_encoder_latent_vector_shifts.png"),
        &shift_panels,
        3,
        false,
    )?;
    log.line(format!(
        "Convergence 3: latent shifts of epochs 3 … {last} in {}",
        out.join("vector_metrics.pkl").display()
    ));

    // 4. sketch the last epoch's UMAP by its local maxima
    let ulast = umaps.last().expect("two epochs or more");
    let sk = sketch_local_maxima(ulast, &sketch_opts)?;
    log.line(format!(
        "Found {} local maxima; pruned to {}; kept {}",
        sk.n_found,
        sk.n_pruned,
        sk.maxima.len()
    ));
    let labels: Vec<String> = (0..sk.maxima.len())
        .map(|k| ((b'A' + k as u8) as char).to_string())
        .collect();
    let peaks = sk.peaks_image();
    sketch_plot(
        &plots.join("03_decoder_UMAP-sketching.png"),
        &SketchFigure {
            epoch: last,
            xy: ulast,
            xedges: &sk.hist.xedges,
            yedges: &sk.hist.yedges,
            hist: &sk.searched,
            hist_title: if a.smooth {
                "UMAP smoothed histogram".into()
            } else {
                "UMAP histogram".into()
            },
            peaks: &peaks,
            points: &sk.centers,
            labels: &labels,
        },
    )?;

    // representative latents of each maximum, followed through the sampled epochs
    let mut reps: Vec<Vec<f32>> = Vec::new();
    let mut marks: Vec<Vec<(f64, f64)>> = Vec::new();
    for (i, &e) in epochs.iter().enumerate() {
        let zsub = gather(&load_epoch(e)?, zdim, &subset);
        let ind = representatives(&zsub, zdim, &sk.members);
        let r = gather(&zsub, zdim, &ind);
        savetxt(
            out.join("repr_particles")
                .join(format!("latent_representative.{e}.txt")),
            &crate::analysis::latent::widen(&r),
            zdim,
        )?;
        marks.push(
            ind.iter()
                .map(|&k| (umaps[i][2 * k], umaps[i][2 * k + 1]))
                .collect(),
        );
        reps.push(r);
    }
    let panels: Vec<DensityPanel<'_>> = umaps
        .iter()
        .zip(&titles)
        .zip(&marks)
        .map(|((u, t), m)| DensityPanel {
            title: t.clone(),
            xy: u,
            marks: m,
            mark_labels: &labels,
        })
        .collect();
    density_grid(
        &plots.join("04_decoder_maxima-sketch-consistency.png"),
        &panels,
        "particle density",
    )?;
    log.line(format!(
        "Convergence 4: representative latents of maxima {} in {}",
        labels.join(""),
        out.join("repr_particles").display()
    ));

    // 5. volumes at the representative latents, masked
    let nlab = labels.len();
    let vol_path = |e: usize, k: usize, masked: bool| {
        out.join(format!("vols.{e}")).join(if masked {
            format!("vol_{:03}.masked.mrc", k + 1)
        } else {
            format!("vol_{:03}.mrc", k + 1)
        })
    };
    if a.skip_volgen {
        log.line("Skipping volume generation ...");
    } else {
        let bar = crate::cli::progress::bar((epochs.len() * nlab) as u64, "volumes");
        for (i, &e) in epochs.iter().enumerate() {
            let model = LoadedModel::load(&weights[i], &config)?;
            if model.zdim != zdim {
                bail!(
                    "{}: the model has zdim {} but the latents have {zdim}",
                    weights[i].display(),
                    model.zdim
                );
            }
            std::fs::create_dir_all(out.join(format!("vols.{e}")))?;
            let paths = write_volumes(
                &model,
                &reps[i],
                nlab,
                VolOptions {
                    apix: Some(a.apix),
                    flip: a.flip,
                    invert: a.invert,
                    downsample: a.downsample,
                    low_pass: None,
                    crop: None,
                },
                |k| vol_path(e, k, false),
            )?;
            for (k, p) in paths.iter().enumerate() {
                let (vol, d, apix) = crate::io::mrc::read_cube(p)?;
                let m =
                    cosine_dilation_mask(&vol, d, a.thresh, a.dilate as f64, a.dist as f64, 1.0)
                        .with_context(|| format!("masking {}", p.display()))?;
                let masked: Vec<f32> = vol.iter().zip(&m.values).map(|(v, w)| v * w).collect();
                crate::io::mrc::write_mrc(vol_path(e, k, true), &masked, (d, d, d), apix, true)?;
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        log.line(format!(
            "Volumes and masked volumes of epochs {epochs:?} in {}/vols.N",
            out.display()
        ));
    }

    // 6. masked CC and FSC between successive sampled epochs
    let mut vols: Vec<Vec<Vec<f32>>> = Vec::new();
    let mut dbox = 0;
    for &e in &epochs {
        let mut row = Vec::new();
        for k in 0..nlab {
            let p = vol_path(e, k, true);
            let (v, d, _) = crate::io::mrc::read_cube(&p)
                .with_context(|| format!("reading {} (run without --skip-volgen?)", p.display()))?;
            if dbox != 0 && d != dbox {
                bail!("{}: box {d}, the other volumes' is {dbox}", p.display());
            }
            dbox = d;
            row.push(v);
        }
        vols.push(row);
    }
    if dbox % 2 == 1 {
        bail!("volumes of odd box {dbox}: the FSC needs an even box");
    }
    let np = epochs.len() - 1;
    let mut cc = vec![0.0; nlab * np];
    let nsh = dbox / 2;
    let mut fsc = vec![0.0; nlab * np * nsh];
    let mut freqs = Vec::new();
    for k in 0..nlab {
        for i in 0..np {
            cc[k * np + i] = masked_cc(&vols[i][k], &vols[i + 1][k]);
            let (f, c) = convergence_fsc(&vols[i][k], &vols[i + 1][k], dbox)?;
            fsc[(k * np + i) * nsh..(k * np + i + 1) * nsh].copy_from_slice(&c);
            freqs = f;
        }
    }
    write_pkl(
        out.join("cc_masked.pkl"),
        &f64_array(vec![nlab, np], cc.clone())?,
    )?;
    write_pkl(
        out.join("fsc_masked.pkl"),
        &f64_array(vec![nlab, np, nsh], fsc.clone())?,
    )?;
    write_pkl(
        out.join("fsc_xaxis.pkl"),
        &f64_array(vec![nsh], freqs.clone())?,
    )?;
    let ep: Vec<f64> = epochs[1..].iter().map(|&e| e as f64).collect();
    let cc_rows: Vec<Vec<f64>> = cc.chunks(np).map(<[f64]>::to_vec).collect();
    let nyq: Vec<Vec<f64>> = (0..nlab)
        .map(|k| (0..np).map(|i| fsc[(k * np + i) * nsh + nsh - 1]).collect())
        .collect();
    line_grid(
        &plots.join("05_decoder_CC.png"),
        &per_label(&cc_rows, &labels, &ep, "masked CC"),
        1,
        true,
    )?;
    let legends: Vec<String> = epochs[1..].iter().map(|e| format!("epoch {e}")).collect();
    let fsc_panels: Vec<LinePanel<'_>> = (0..nlab)
        .map(|k| LinePanel {
            title: format!("maximum {}", labels[k]),
            x_label: "frequency (1/px)".into(),
            y_label: "FSC".into(),
            series: (0..np)
                .map(|i| Series {
                    label: &legends[i],
                    x: &freqs,
                    y: &fsc[(k * np + i) * nsh..(k * np + i + 1) * nsh],
                })
                .collect(),
            colors: (0..np)
                .map(|i| {
                    let c = crate::analysis::plot::viridis(i as f64 / (np.max(2) - 1) as f64);
                    (c.0, c.1, c.2)
                })
                .collect(),
            y_range: Some((0.0, 1.02)),
        })
        .collect();
    let ncols = (nlab as f64).sqrt().ceil() as usize;
    line_grid(&plots.join("06_decoder_FSC.png"), &fsc_panels, ncols, true)?;
    line_grid(
        &plots.join("07_decoder_FSC-nyquist.png"),
        &per_label(&nyq, &labels, &ep, "masked FSC at nyquist"),
        1,
        true,
    )?;
    let summary: Vec<String> = (0..nlab)
        .map(|k| {
            format!(
                "{} {:.3}/{:.3}",
                labels[k],
                cc_rows[k][np - 1],
                nyq[k][np - 1]
            )
        })
        .collect();
    log.line(format!(
        "Convergence 5: masked CC / FSC at Nyquist between epochs {} and {last}: {}",
        epochs[np - 1],
        summary.join(", ")
    ));
    log.line(format!("convergence analysis in {}", out.display()));
    Ok(())
}
