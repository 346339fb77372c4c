//! `demo`: the README's main job on built-in synthetic data, end to end with known truth: a phantom
//! molecule (`phantom`), a simulated particle dataset from one of its states with CTF, shifts and noise
//! (`simulate`), a voxel backprojection with the true poses (`backproject-voxel`), and the FSC of the
//! reconstruction against the volume that made the data, written as a table and a plot.
//!
//! Example: `cryofield demo -o demo_out`

use crate::cli::{backproject_voxel, fsc, phantom, simulate};
use crate::fourier::fsc::fsc_curve;
use crate::io::mrc::MrcFile;
use anyhow::ensure;
use std::path::PathBuf;

/// Run the built-in demo.
#[derive(Debug, clap::Args)]
#[command(
    about = "Run the pipeline on built-in synthetic data: phantom → simulate → backproject → FSC"
)]
pub struct Args {
    /// Output folder
    #[arg(short = 'o', default_value = "demo_out")]
    pub o: PathBuf,
    /// Number of particles
    #[arg(short = 'N', default_value_t = 4000)]
    pub n: usize,
    /// Box size (pixels)
    #[arg(short = 'D', default_value_t = 64)]
    pub d: usize,
    /// Signal-to-noise ratio of the simulated images
    #[arg(long, default_value_t = 1.0)]
    pub snr: f64,
    /// Random seed
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Run `demo`.
pub fn run(a: Args) -> anyhow::Result<()> {
    ensure!(
        a.d >= 32 && a.d.is_multiple_of(2),
        "-D must be even and at least 32"
    );
    let t0 = std::time::Instant::now();
    let ph = a.o.join("phantom");
    let sim = a.o.join("sim");
    let bp = a.o.join("backproject");
    eprintln!("[1/4] phantom: a molecule whose domain slides along a line (10 states)");
    phantom::run(phantom::Args {
        kind: phantom::Kind::Linear1d,
        n_states: Some(10),
        d: a.d,
        apix: 3.0,
        seed: a.seed,
        o: ph.clone(),
    })?;
    let truth = ph.join("vol_005.mrc");
    eprintln!(
        "[2/4] simulate {} particles of state 5 (SNR {}, CTF, shifts)",
        a.n, a.snr
    );
    simulate::run(simulate::Args {
        input: truth.clone(),
        n: a.n,
        o: sim.clone(),
        snr: Some(a.snr),
        t_extent: 3.0,
        ctf: None,
        defocus: Some(vec![8000.0, 20000.0]),
        kv: 300.0,
        cs: 2.7,
        w: 0.1,
        apix: None,
        tilt_deg: None,
        oversample: 2,
        real_space: false,
        seed: a.seed,
    })?;
    eprintln!("[3/4] backproject with the true poses and CTF");
    backproject_voxel::run(backproject_voxel::Args {
        particles: sim.join("particles.mrcs"),
        poses: sim.join("pose.pkl"),
        ctf: Some(sim.join("ctf.pkl")),
        o: bp.clone(),
        ind: None,
        datadir: None,
        uninvert_data: true,
        reg_weight: 1.0,
        ctf_alg: "mul".into(),
        no_half_maps: false,
        first: None,
    })?;
    eprintln!("[4/4] FSC of the reconstruction against the truth");
    let fsc_txt = a.o.join("fsc_vs_truth.txt");
    let fsc_png = a.o.join("fsc_vs_truth.png");
    fsc::run(fsc::Args {
        vol1: bp.join("backproject.mrc"),
        vol2: truth.clone(),
        mask: None,
        apix: None,
        o: Some(fsc_txt.clone()),
        plot: Some(Some(fsc_png.clone())),
    })?;
    let recon = MrcFile::open(bp.join("backproject.mrc"))?;
    let tv = MrcFile::open(&truth)?;
    let curve = fsc_curve(&recon.read_all()?, &tv.read_all()?, a.d, None)?;
    let apix = tv.header.apix() as f64;
    let res = curve.resolution_at(0.5, apix);
    println!(
        "demo: reconstruction vs truth FSC=0.5 at {} (Nyquist {:.1} Å); table {}, plot {}; {:.1} s",
        res.map_or("not reached".to_string(), |r| format!("{r:.1} Å")),
        2.0 * apix,
        fsc_txt.display(),
        fsc_png.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
