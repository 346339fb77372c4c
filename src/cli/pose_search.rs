//! `pose-search`: the poses of every particle against a fixed volume (projection matching) with
//! the branch-and-bound search of `abinit-homo` — the search alone, with the model held fixed.
//! The volume must be on the scale of the raw particle images (as `simulate` makes them: the
//! volume that generated them); the preprocessing flags match `abinit-homo`'s. The real-space
//! window (on by default, as in training) changes the images but not the volume's slices: give
//! `--no-window` when the volume made the images (simulated data). Writes a pose.pkl
//! (rot (N, 3, 3), trans (N, 2) as a fraction of D) and prints the throughput.
//!
//! Example: `cryofield pose-search sim/particles.mrcs --volume vol.mrc --ctf sim/ctf.pkl --uninvert-data --no-window -o pose.pkl`

use crate::io::mrc::read_cube;
use crate::pose::abinit::search_volume;
use crate::pose::search::{SearchConfig, TransRefine};
use crate::train::TrainConfig;
use std::path::PathBuf;

/// Search poses against a fixed volume.
#[derive(Debug, clap::Args)]
#[command(about = "Branch-and-bound pose search of particles against a fixed volume")]
pub struct Args {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// The volume (.mrc, D³, on the particles' intensity scale)
    #[arg(long)]
    pub volume: PathBuf,
    /// Output pose file (.pkl)
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// CTF parameters (.pkl)
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Keep only these particles (.pkl of indices)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Do not invert the data sign
    #[arg(long = "uninvert-data")]
    pub uninvert_data: bool,
    /// Do not apply the real-space window
    #[arg(long = "no-window")]
    pub no_window: bool,
    /// Window inner radius (fraction of the box half-width)
    #[arg(long = "window-r", default_value_t = 0.85)]
    pub window_r: f32,
    /// Images per search call
    #[arg(short = 'b', long = "batch-size", default_value_t = 16)]
    pub batch_size: usize,
    #[command(flatten)]
    pub search: SearchArgs,
}

/// The search flags of `pose-search`, `abinit-homo` and `abinit-het` (the reference's names and
/// defaults).
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// ± pixels to search over translations
    #[arg(long = "t-extent", default_value_t = 10.0)]
    pub t_extent: f64,
    /// Initial grid size for translations (per axis, at grid resolution 0)
    #[arg(long = "t-ngrid", default_value_t = 7)]
    pub t_ngrid: usize,
    /// Starting band limit L of the search (pixels)
    #[arg(long = "l-start", default_value_t = 12)]
    pub l_start: usize,
    /// Final band limit L of the search (pixels; capped at D/2)
    #[arg(long = "l-end", default_value_t = 32)]
    pub l_end: usize,
    /// Number of grid subdivisions
    #[arg(long, default_value_t = 4)]
    pub niter: usize,
    /// Candidate poses kept per image at each subdivision
    #[arg(long, default_value_t = 8)]
    pub nkeptposes: usize,
    /// Resolution of the base SO(3) grid (72·8^r rotations: 2 → 4608)
    #[arg(long = "base-healpy", default_value_t = 2)]
    pub base_healpy: u32,
    /// Translation refinement: `grid` (the base grid scaled by 2^−k around each kept shift, as
    /// the reference) or `children` (the 4 half-step children)
    #[arg(long = "t-refine", default_value = "grid", value_parser = ["grid", "children"])]
    pub t_refine: String,
    /// Prune kept poses with Algorithm 1's bound (full-band error of the best candidate)
    #[arg(long = "bnb-bound")]
    pub bnb_bound: bool,
    /// Oversampling of the interpolated search slices
    #[arg(long, default_value_t = 2)]
    pub oversample: usize,
}

impl SearchArgs {
    /// The search these flags describe (translation grid offsets 0).
    pub fn config(&self) -> SearchConfig {
        SearchConfig {
            base_healpy: self.base_healpy,
            t_extent: self.t_extent,
            t_ngrid: self.t_ngrid,
            niter: self.niter,
            nkeptposes: self.nkeptposes,
            l_min: self.l_start,
            l_max: self.l_end,
            trans_refine: if self.t_refine == "children" {
                TransRefine::Children
            } else {
                TransRefine::Grid
            },
            bound: self.bnb_bound,
            ..SearchConfig::default()
        }
    }
}

/// Run `pose-search`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (vol, _, _) = read_cube(&a.volume)?;
    let tc = TrainConfig {
        particles: a.particles.clone(),
        poses: a.o.clone(),
        ctf: a.ctf.clone(),
        outdir: PathBuf::from("."),
        ind: a.ind.clone(),
        datadir: a.datadir.clone(),
        zdim: None,
        num_epochs: 0,
        batch_size: a.batch_size,
        lr: 0.0,
        wd: 0.0,
        beta: None,
        beta_control: None,
        enc_layers: 0,
        enc_dim: 0,
        encode_mode: "resid".into(),
        enc_mask: None,
        dec_layers: 0,
        dec_dim: 0,
        pe_type: "gaussian".into(),
        pe_dim: None,
        feat_sigma: 0.5,
        domain: "hartley".into(),
        activation: "relu".into(),
        invert_data: !a.uninvert_data,
        window: !a.no_window,
        window_r: a.window_r,
        norm: None,
        lazy: false,
        seed: 0,
        amp: false,
        twin: None,
        learned_pose: None,
        slow: None,
        known_intervention: None,
        refine_poses: None,
        autodecoder: false,
        shuffle_seed: None,
        checkpoint: 1,
        load: None,
        tilt: None,
        tilt_deg: 45.0,
    };
    let (poses, stats, secs) =
        search_volume(&tc, &a.search.config(), &vol, a.search.oversample, true)?;
    poses.save(&a.o)?;
    eprintln!(
        "searched {} images in {secs:.1} s: {:.3e} pose·image scores ({:.3e} scores/s, {:.1} GFLOP/s in the scores), {} slices; poses in {}",
        poses.len(),
        stats.scores as f64,
        stats.scores as f64 / secs.max(1e-9),
        2.0 * stats.score_points as f64 / secs.max(1e-9) / 1e9,
        stats.slices,
        a.o.display()
    );
    Ok(())
}
