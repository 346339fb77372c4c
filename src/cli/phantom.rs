//! `phantom`: write the volumes of a built-in synthetic molecule with a known conformational motion
//! (a rigid body of Gaussian blobs plus moving domains; see [`crate::simulate::phantom`]), sampled
//! evenly along the motion, with each volume's true latent coordinate.
//!
//! Outputs in `DIR`: `vol_000.mrc …` (one per state), `vols.txt` (their paths relative to `DIR`, one
//! per line), `truth.pkl` (float32 `(K, dim)`: each state's truth coordinate, in the order of
//! `vols.txt`: `t` for linear1d, the angle θ (rad) for circular1d, `(t1, t2)` for linear2d, the
//! state index for discrete) and `phantom.txt` (kind and parameters).
//!
//! With `--base VOL.mrc` (linear1d only) the molecule is that map instead of blobs: a spherical
//! domain of it slides along a line ([`crate::simulate::domain`]); D and Apix come from the map.
//!
//! Example: `cryofield phantom --kind circular1d --n-states 100 -D 64 --Apix 3.0 -o circ`,
//! `cryofield phantom --kind linear1d --base hand.mrc --shift 8 0 0 -o hand_het`

use crate::cli::progress;
use crate::io::array::NdArray;
use crate::io::atomic::{write_bytes_atomic, Staged};
use crate::io::mrc::write_mrc;
use crate::io::pkl::{write_pkl, PyValue};
use crate::simulate::domain::DomainMotion;
use crate::simulate::phantom::{Phantom, PhantomKind};
use anyhow::{bail, Context};
use std::path::PathBuf;

/// The motion of the phantom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// one domain slides along a line (truth t in [0, 1])
    Linear1d,
    /// one domain rotates about an axis (truth: angle in [0, 2π))
    Circular1d,
    /// two domains slide independently (truth (t1, t2) in [0, 1]²)
    Linear2d,
    /// K distinct conformations (truth: state index)
    Discrete,
}

/// Write a synthetic molecule's volumes along its known motion.
#[derive(Debug, clap::Args)]
#[command(
    about = "Write volumes of a synthetic molecule with a known motion (linear1d, circular1d, linear2d, discrete)"
)]
pub struct Args {
    /// Kind of motion
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Number of states: volumes along the motion (linear2d: a square, g×g grid; discrete: K).
    /// Default 50 (linear1d), 100 (circular1d, linear2d), 10 (discrete)
    #[arg(long = "n-states")]
    pub n_states: Option<usize>,
    /// Box size (pixels, even)
    #[arg(short = 'D', default_value_t = 64)]
    pub d: usize,
    /// Pixel size (Å)
    #[arg(long = "Apix", default_value_t = 3.0)]
    pub apix: f64,
    /// Random seed of the blob layout
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder
    #[arg(short = 'o', long = "outdir")]
    pub o: PathBuf,
    /// A real map as the molecule (linear1d only): one spherical domain of it slides along a
    /// line; D and Apix are the map's
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Domain centre, voxel x y z of the base map (default: a peripheral piece of dense
    /// density, chosen automatically and written to phantom.txt)
    #[arg(long = "domain-center", num_args = 3, value_names = ["X", "Y", "Z"])]
    pub domain_center: Option<Vec<f64>>,
    /// Domain radius (px; default D/6)
    #[arg(long = "domain-radius")]
    pub domain_radius: Option<f64>,
    /// Domain displacement at t = 1, px x y z (default D/8 along x)
    #[arg(long, num_args = 3, value_names = ["DX", "DY", "DZ"], allow_negative_numbers = true)]
    pub shift: Option<Vec<f64>>,
}

/// `phantom --base`: states of a base map with a sliding domain.
fn run_base(a: &Args, base: &std::path::Path) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    if a.kind != Kind::Linear1d {
        bail!(
            "--base makes a linear1d phantom; --kind {:?} is not supported with it",
            a.kind
        );
    }
    let (vol, d, apix) = crate::cli::fsc::load_volume(base, "the base map")?;
    let apix = apix.unwrap_or(a.apix);
    let n = a
        .n_states
        .unwrap_or(PhantomKind::Linear1d.default_n_states());
    if n == 0 {
        bail!("--n-states must be positive");
    }
    let three = |v: &Option<Vec<f64>>| v.as_ref().map(|v| [v[0], v[1], v[2]]);
    let radius = a.domain_radius.unwrap_or(d as f64 / 6.0);
    let shift = three(&a.shift).unwrap_or([d as f64 / 8.0, 0.0, 0.0]);
    let motion = DomainMotion::new(vol, d, three(&a.domain_center), radius, shift)
        .with_context(|| format!("{}: domain phantom", base.display()))?;
    let coords: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            vec![if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.0
            }]
        })
        .collect();
    let head = format!(
        "base: {}\nD: {d}\nApix: {apix}\n{}",
        base.display(),
        motion.describe()
    );
    write_states(
        &a.o,
        &coords,
        d,
        apix as f32,
        |c| Ok(motion.volume_at(c[0])),
        head,
        ": t in [0, 1]",
    )?;
    eprintln!(
        "wrote {n} linear1d volumes of {} with a sliding domain ({d}³, Apix {apix} Å) with truth.pkl to {} in {:.2} s",
        base.display(),
        a.o.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Run `phantom`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(base) = &a.base {
        return run_base(&a, base);
    }
    let t0 = std::time::Instant::now();
    let kind = match a.kind {
        Kind::Linear1d => PhantomKind::Linear1d,
        Kind::Circular1d => PhantomKind::Circular1d,
        Kind::Linear2d => PhantomKind::Linear2d,
        Kind::Discrete => PhantomKind::Discrete {
            k: a.n_states.unwrap_or(10),
        },
    };
    let n = a.n_states.unwrap_or(kind.default_n_states());
    if n == 0 {
        bail!("--n-states must be positive");
    }
    let ph = Phantom::new(kind, a.d, a.apix, a.seed)?;
    let coords = ph.state_coords(n)?;
    write_states(
        &a.o,
        &coords,
        a.d,
        a.apix as f32,
        |c| Ok(ph.volume_at(c)?),
        ph.describe(),
        " in the same order",
    )?;
    eprintln!(
        "wrote {n} {} volumes ({}³, Apix {} Å) with truth.pkl to {} in {:.2} s",
        kind.name(),
        a.d,
        a.apix,
        a.o.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes one state per truth coordinate in `coords` (all of one length): `vol_000.mrc …` from
/// `volume_at`, `vols.txt`, `truth.pkl` (float32, one row per state) and `phantom.txt` (`head`,
/// then the count and files; `truth_note` ends the truth.pkl line).
fn write_states(
    o: &std::path::Path,
    coords: &[Vec<f64>],
    d: usize,
    apix: f32,
    volume_at: impl Fn(&[f64]) -> anyhow::Result<Vec<f32>>,
    head: String,
    truth_note: &str,
) -> anyhow::Result<()> {
    let (n, dim) = (coords.len(), coords[0].len());
    // The volumes, their list and the truth land together when all are written; volumes of an
    // earlier phantom in this folder (listed in its vols.txt) that this one does not make are removed.
    let mut staged = Staged::new(o)?;
    let width = (n - 1).to_string().len().max(3);
    let pb = progress::bar(n as u64, "phantom");
    let mut names = Vec::with_capacity(n);
    for (i, c) in coords.iter().enumerate() {
        let name = format!("vol_{i:0width$}.mrc");
        write_mrc(staged.path(&name)?, &volume_at(c)?, (d, d, d), apix, true)?;
        names.push(name);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut list = names.join("\n");
    list.push('\n');
    write_bytes_atomic(staged.path("vols.txt")?, list.as_bytes())?;
    if let Ok(old) = std::fs::read_to_string(o.join("vols.txt")) {
        for old_name in old.lines().map(str::trim) {
            let plain =
                std::path::Path::new(old_name).file_name() == Some(std::ffi::OsStr::new(old_name));
            if plain && !old_name.is_empty() && !names.iter().any(|n| n == old_name) {
                staged.remove_on_commit(old_name);
            }
        }
    }
    let truth: Vec<f32> = coords.iter().flatten().map(|&v| v as f32).collect();
    write_pkl(
        staged.path("truth.pkl")?,
        &PyValue::Array(NdArray::from_f32(vec![n, dim], truth)?),
    )?;
    let desc = format!(
        "{head}n_states: {n}\nfiles: {} … {} (listed in vols.txt); truth.pkl is float32 ({n}, {dim}){truth_note}\n",
        names[0],
        names[n - 1]
    );
    write_bytes_atomic(staged.path("phantom.txt")?, desc.as_bytes())?;
    staged.commit()?;
    Ok(())
}
