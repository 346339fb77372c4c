//! `simulate`: a particle dataset with known truth from one volume or a list of volumes: uniform random
//! rotations, uniform translations, CTF, Gaussian noise at a given SNR (signal variance over noise variance
//! on whole images), optionally tilt pairs. Writes `particles.mrcs`, `pose.pkl`, `ctf.pkl` (with a CTF),
//! `labels.pkl` (which volume made each image, with several volumes), `truth.pkl` (each image's true latent
//! coordinate, when the volumes come from `cryofield phantom`) and `particles_tilt.mrcs` (with `--tilt-deg`).
//!
//! `--pose-dist inplane` draws rotations about the viewing axis only, `R = Rz(ψ)` (ψ the image-plane
//! angle), and `--pose-dist axis` rotations about the fixed x axis, `R = Rx(ψ)`, ψ uniform in [0, 2π);
//! both write `pose_angle.pkl` (float64 `(N,)`, ψ in radians). `--pairs` makes SlowVAE pairs on a
//! phantom's state grid (a linear2d or linear1d `vols.txt` with its `truth.pkl`): images 2k and 2k+1
//! form a pair, the first state uniform, the second a sparse Laplace move of it (data rate
//! `--data-rate`), and with inplane/axis poses ψ moves between 36 bins of 10° (ψ the bin centre);
//! writes `pairs.pkl` (int64 `(N/2, 2)`).
//!
//! Example: `cryofield simulate phantom/vols.txt -N 5000 --snr 0.1 --t-extent 4 --defocus 10000 25000 -o sim`
//!
//! Example (SlowVAE pairs): `cryofield simulate linear2d/vols.txt -N 2000 --pose-dist inplane --pairs -o pairs`

use crate::cli::progress;
use crate::fourier::slice::HartleyVolume;
use crate::io::array::{ArrayData, NdArray};
use crate::io::atomic::Staged;
use crate::io::mrc::{MrcFile, MrcStackWriter};
use crate::io::pkl::{read_pkl, write_pkl, PyValue};
use crate::meta::{CtfParams, Poses};
use crate::simulate::dataset::{
    add_noise, draw_pair_params, draw_params_with, variance, xrot, CtfSpec, DrawSpec, Grid,
    PoseDist, Projection, Projector,
};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Simulate particle images from volumes.
#[derive(Debug, clap::Args)]
#[command(about = "Simulate a particle dataset with known poses, CTF, noise and heterogeneity")]
pub struct Args {
    /// A volume (.mrc) or a .txt list of volumes (paths relative to the list)
    pub input: PathBuf,
    /// Number of images
    #[arg(short = 'N', default_value_t = 1000)]
    pub n: usize,
    /// Output folder
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// Signal-to-noise ratio (signal variance / noise variance); noiseless when omitted
    #[arg(long)]
    pub snr: Option<f64>,
    /// Translations uniform in [−T, T] pixels along x and y
    #[arg(long = "t-extent", default_value_t = 0.0)]
    pub t_extent: f32,
    /// CTF parameters to use (a ctf.pkl; image i uses row i mod N)
    #[arg(long, conflicts_with = "defocus")]
    pub ctf: Option<PathBuf>,
    /// Random defocus uniform in [LO, HI] Å (with up to 5% astigmatism)
    #[arg(long, num_args = 2, value_names = ["LO", "HI"])]
    pub defocus: Option<Vec<f32>>,
    /// Accelerating voltage (kV) with --defocus
    #[arg(long, default_value_t = 300.0)]
    pub kv: f32,
    /// Spherical aberration (mm) with --defocus
    #[arg(long, default_value_t = 2.7)]
    pub cs: f32,
    /// Amplitude contrast with --defocus
    #[arg(short = 'w', default_value_t = 0.1)]
    pub w: f32,
    /// Pixel size (Å); default: the volume header's
    #[arg(long = "Apix")]
    pub apix: Option<f32>,
    /// Also write a tilted image of each particle (pose xrot(θ)·R)
    #[arg(long = "tilt-deg")]
    pub tilt_deg: Option<f64>,
    /// Oversampling of the volume transform for slicing (2 keeps interpolation error near 1%)
    #[arg(long, default_value_t = 2)]
    pub oversample: usize,
    /// Project by rotating and integrating in real space (slow; the Fourier slice theorem's oracle)
    #[arg(long = "real-space")]
    pub real_space: bool,
    /// Rotations: so3 (uniform), inplane (R = Rz(ψ), about the viewing axis) or axis (R = Rx(ψ),
    /// about the x axis); inplane and axis write pose_angle.pkl (ψ, rad)
    #[arg(long = "pose-dist", value_enum, default_value_t = PoseDistArg::So3)]
    pub pose_dist: PoseDistArg,
    /// SlowVAE pairs (images 2k, 2k+1) on the state grid of a phantom's vols.txt (linear2d,
    /// linear1d); writes pairs.pkl. N must be even
    #[arg(long)]
    pub pairs: bool,
    /// Pair transition rate λ: each grid factor moves by a discrete Laplace of scale ln(g)/λ
    #[arg(long = "data-rate", default_value_t = 1.0, requires = "pairs")]
    pub data_rate: f64,
    /// Random seed
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--pose-dist` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoseDistArg {
    /// uniform over SO(3)
    So3,
    /// R = Rz(ψ), ψ uniform in [0, 2π): in-plane rotations only
    Inplane,
    /// R = Rz(ψ)·Rx(90°): in-plane rotations of the view along the molecule's y axis
    InplaneY,
    /// R = Rx(ψ), ψ uniform in [0, 2π): rotations about the x axis
    Axis,
}

impl From<PoseDistArg> for PoseDist {
    fn from(a: PoseDistArg) -> Self {
        match a {
            PoseDistArg::So3 => PoseDist::So3,
            PoseDistArg::Inplane => PoseDist::Inplane,
            PoseDistArg::InplaneY => PoseDist::InplaneY,
            PoseDistArg::Axis => PoseDist::Axis,
        }
    }
}

/// The volumes of a .mrc or .txt input, with their paths.
fn volume_paths(input: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if input.extension().and_then(|e| e.to_str()) == Some("txt") {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("{}: cannot read the volume list", input.display()))?;
        let dir = input.parent().unwrap_or(Path::new(""));
        let paths: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| dir.join(l))
            .collect();
        if paths.is_empty() {
            bail!("{}: lists no volumes", input.display());
        }
        Ok(paths)
    } else {
        Ok(vec![input.to_path_buf()])
    }
}

/// Per-state truth from `truth.pkl` beside a phantom's vols.txt: (rows K, dim) if present and consistent.
fn state_truth(input: &Path, k: usize) -> anyhow::Result<Option<(Vec<f32>, usize)>> {
    let p = input.with_file_name("truth.pkl");
    if input.extension().and_then(|e| e.to_str()) != Some("txt") || !p.is_file() {
        return Ok(None);
    }
    match read_pkl(&p)? {
        PyValue::Array(a) if a.shape.first() == Some(&k) => {
            let dim = a.shape.iter().skip(1).product::<usize>().max(1);
            Ok(Some((a.to_f32(), dim)))
        }
        _ => bail!(
            "{}: expected a ({k}, dim) array of the states' true coordinates",
            p.display()
        ),
    }
}

/// The state grid of `--pairs`: the phantom's states (`truth`, from `truth.pkl` beside the `input`
/// list) must be a row-major g×…×g grid with coordinates in [0, 1] (see [`Grid::from_truth`]).
fn pair_grid(input: &Path, truth: Option<&(Vec<f32>, usize)>, k: usize) -> anyhow::Result<Grid> {
    let p = input.with_file_name("truth.pkl");
    match truth {
        _ if input.extension().and_then(|e| e.to_str()) != Some("txt") => bail!(
            "{}: --pairs needs a phantom's vols.txt (states on a grid, with truth.pkl beside it), \
             not a single volume",
            input.display()
        ),
        None => bail!(
            "{}: not found; --pairs needs the phantom's truth.pkl beside {} to know each state's \
             grid position",
            p.display(),
            input.display()
        ),
        Some((t, dim)) => Grid::from_truth(t, k, *dim).map_err(|e| {
            anyhow::anyhow!(
                "{}: --pairs needs states on a grid (as phantom --kind linear2d writes them): {e}",
                p.display()
            )
        }),
    }
}

/// Run `simulate`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("-N must be positive");
    }
    if let Some(s) = a.snr {
        if !(s > 0.0 && s.is_finite()) {
            bail!("--snr must be positive, got {s}");
        }
    }
    if a.oversample == 0 || a.oversample > 4 {
        bail!("--oversample must be 1..=4");
    }
    if a.pairs {
        if !a.n.is_multiple_of(2) {
            bail!(
                "--pairs needs an even -N (images 2k and 2k+1 form a pair), got {}",
                a.n
            );
        }
        if !(a.data_rate > 0.0 && a.data_rate.is_finite()) {
            bail!("--data-rate must be positive, got {}", a.data_rate);
        }
    }
    let t0 = std::time::Instant::now();
    let paths = volume_paths(&a.input)?;
    let mut vols = Vec::with_capacity(paths.len());
    let mut reals = Vec::new();
    let (mut d, mut apix) = (0usize, 1f32);
    for p in &paths {
        let f = MrcFile::open(p)?;
        let h = &f.header;
        if !(h.nx == h.ny && h.ny == h.nz) || h.nx % 2 == 1 {
            bail!(
                "{}: not a cubic volume with an even box ({}×{}×{})",
                p.display(),
                h.nz,
                h.ny,
                h.nx
            );
        }
        if d == 0 {
            d = h.nx;
            apix = h.apix();
        } else if h.nx != d {
            bail!(
                "{}: box size {} differs from the first volume's {d}",
                p.display(),
                h.nx
            );
        }
        let v = f.read_all()?;
        if a.real_space {
            reals.push(v);
        } else {
            vols.push(HartleyVolume::new(&v, d, a.oversample));
        }
    }
    let apix = a.apix.unwrap_or(apix);
    let ctf = match (&a.ctf, &a.defocus) {
        (Some(p), _) => {
            let c = CtfParams::load(p)?;
            if c.is_empty() {
                bail!("{}: holds no CTF parameters", p.display());
            }
            CtfSpec::Rows(c.rows)
        }
        (None, Some(df)) => {
            let (lo, hi) = (df[0], df[1]);
            if !(lo > 0.0 && hi >= lo) {
                bail!("--defocus LO HI needs 0 < LO ≤ HI, got {lo} {hi}");
            }
            CtfSpec::Defocus {
                lo,
                hi,
                voltage_kv: a.kv,
                cs_mm: a.cs,
                amplitude_contrast: a.w,
            }
        }
        (None, None) => CtfSpec::None,
    };
    let n_states = paths.len();
    let truth = state_truth(&a.input, n_states)?;
    let grid = if a.pairs {
        Some(pair_grid(&a.input, truth.as_ref(), n_states)?)
    } else {
        None
    };
    // Every output lands together when all are written (a failure part-way leaves the folder as it
    // was); optional outputs this run does not make are removed, so no earlier run's file sits
    // beside them.
    let mut staged = Staged::new(&a.o)?;

    let spec = DrawSpec {
        d,
        apix,
        t_extent_px: a.t_extent,
        ctf: &ctf,
        pose: a.pose_dist.into(),
        seed: a.seed,
    };
    let (params, angles) = match &grid {
        None => draw_params_with(a.n, n_states, &spec),
        Some(g) => {
            let draws = draw_pair_params(a.n, g, a.data_rate, &spec)?;
            (draws.params, draws.angles)
        }
    };
    let proj = Projector::new(
        if a.real_space {
            Projection::Real(&reals)
        } else {
            Projection::Fourier(&vols)
        },
        d,
    )?;
    let tilt = a.tilt_deg.map(xrot);
    let dd = d * d;
    // Noise level from the signal variance of (up to) the first 1000 clean images.
    let sigma = match a.snr {
        None => 0.0,
        Some(snr) => {
            let probe = proj.render_batch(&params[..a.n.min(1000)], None);
            (variance(&probe) / snr).sqrt() as f32
        }
    };
    let batch = 1000;
    let pb = progress::bar(a.n as u64, "simulate");
    let mut outs = vec![(None, "particles.mrcs", 0u64)];
    match &tilt {
        Some(t) => outs.push((Some(*t), "particles_tilt.mrcs", 1u64)),
        None => staged.remove_on_commit("particles_tilt.mrcs"),
    }
    for (pre, name, stream) in &outs {
        let mut w = MrcStackWriter::create(staged.path(name)?, a.n, d, d, apix)?;
        for s in (0..a.n).step_by(batch) {
            let e = (s + batch).min(a.n);
            let mut imgs = proj.render_batch(&params[s..e], pre.as_ref());
            add_noise(&mut imgs, dd, s, sigma, a.seed ^ (0xA5A5 + stream));
            w.write_images(&imgs)?;
            if *stream == 0 {
                pb.inc((e - s) as u64);
            }
        }
        w.finish()?;
    }
    pb.finish_and_clear();

    let poses = Poses {
        rots: params.iter().map(|p| p.rot).collect(),
        trans: Some(
            params
                .iter()
                .map(|p| [p.trans_px[0] / d as f32, p.trans_px[1] / d as f32])
                .collect(),
        ),
    };
    poses.save(staged.path("pose.pkl")?)?;
    if !matches!(ctf, CtfSpec::None) {
        CtfParams {
            rows: params.iter().filter_map(|p| p.ctf).collect(),
        }
        .save(staged.path("ctf.pkl")?)?;
    } else {
        staged.remove_on_commit("ctf.pkl");
    }
    if n_states > 1 {
        let labels = NdArray::new(
            vec![a.n],
            ArrayData::I64(params.iter().map(|p| p.state as i64).collect()),
        )?;
        write_pkl(staged.path("labels.pkl")?, &PyValue::Array(labels))?;
    } else {
        staged.remove_on_commit("labels.pkl");
    }
    match &truth {
        Some((t, dim)) => {
            let per: Vec<f32> = params
                .iter()
                .flat_map(|p| t[p.state * dim..(p.state + 1) * dim].iter().copied())
                .collect();
            write_pkl(
                staged.path("truth.pkl")?,
                &PyValue::Array(NdArray::from_f32(vec![a.n, *dim], per)?),
            )?;
        }
        None => staged.remove_on_commit("truth.pkl"),
    }
    match angles {
        Some(psi) => write_pkl(
            staged.path("pose_angle.pkl")?,
            &PyValue::Array(NdArray::new(vec![a.n], ArrayData::F64(psi))?),
        )?,
        None => staged.remove_on_commit("pose_angle.pkl"),
    }
    if grid.is_some() {
        let pairs: Vec<i64> = (0..a.n as i64).collect();
        write_pkl(
            staged.path("pairs.pkl")?,
            &PyValue::Array(NdArray::from_i64(vec![a.n / 2, 2], pairs)?),
        )?;
    } else {
        staged.remove_on_commit("pairs.pkl");
    }
    staged.commit()?;
    eprintln!(
        "simulated {} images of {d}² from {} volume(s) (Apix {apix}, SNR {}, noise σ {sigma:.4}) into {} in {:.1} s",
        a.n,
        n_states,
        a.snr.map_or("∞".to_string(), |s| s.to_string()),
        a.o.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
