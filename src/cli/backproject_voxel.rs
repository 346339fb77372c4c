//! `backproject-voxel`: reconstruct a volume from particles with known poses (and CTF) by voxel
//! backprojection in Hartley space, as the reference's `backproject_voxel`; also half maps (even / odd
//! images) and their FSC. The files of one run land together (staged beside them, then moved into
//! place): a failure part-way leaves the output folder as it was.
//!
//! Example: `cryofield backproject-voxel particles.mrcs --poses pose.pkl --ctf ctf.pkl -o backproject/`

use crate::analysis::plot::{fsc_plot, Series};
use crate::cli::progress;
use crate::fourier::backproject::Backprojection;
use crate::fourier::ctf::{compute_ctf_into, Ctf};
use crate::fourier::fft::{ht2_center, symmetrize_ht};
use crate::fourier::fsc::fsc_curve;
use crate::fourier::lattice::Lattice;
use crate::fourier::shift::translate_ht_into;
use crate::fourier::window::window_mask;
use crate::io::atomic::Staged;
use crate::io::mrc::write_mrc;
use crate::io::source::ParticleSource;
use crate::meta::{load_indices, CtfParams, Poses};
use anyhow::bail;
use rayon::prelude::*;
use std::path::PathBuf;

/// Backproject particles with known poses.
#[derive(Debug, clap::Args)]
#[command(about = "Reconstruct a volume by voxel backprojection of particles with known poses")]
pub struct Args {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// Poses (.pkl: rotations and translations as a fraction of D)
    #[arg(long)]
    pub poses: PathBuf,
    /// CTF parameters (.pkl)
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Output folder
    #[arg(short = 'o', long = "outdir")]
    pub o: PathBuf,
    /// Keep only these particles (.pkl of indices)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Do not invert the data sign (the reference inverts by default)
    #[arg(long = "uninvert-data")]
    pub uninvert_data: bool,
    /// Regularization weight of the accumulated CTF² counts
    #[arg(long = "reg-weight", default_value_t = 1.0)]
    pub reg_weight: f64,
    /// CTF correction: multiply by the CTF (`mul`) or by its sign (`flip`)
    #[arg(long = "ctf-alg", default_value = "mul", value_parser = ["mul", "flip"])]
    pub ctf_alg: String,
    /// Do not make half maps
    #[arg(long = "no-half-maps")]
    pub no_half_maps: bool,
    /// Use only the first N images
    #[arg(long)]
    pub first: Option<usize>,
}

/// The per-image preprocessing and spreading state shared by all threads.
struct Prep {
    d: usize,
    window: Vec<f32>,
    invert: bool,
    mask_idx: Vec<usize>,
    coords: Vec<[f32; 3]>,
    freqs: Vec<[f32; 2]>,
}

impl Prep {
    /// Masked symmetrized Hartley values of one real-space image (windowed, inverted as configured).
    fn masked_ht(&self, img: &mut [f32]) -> Vec<f32> {
        img.iter_mut().zip(&self.window).for_each(|(v, w)| *v *= w);
        if self.invert {
            img.iter_mut().for_each(|v| *v = -*v);
        }
        let sym = symmetrize_ht(&ht2_center(img, self.d), self.d);
        self.mask_idx.iter().map(|&i| sym[i]).collect()
    }
}

/// Run `backproject-voxel`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let mut src = ParticleSource::open(&a.particles, a.datadir.as_deref())?;
    let n_all = src.len();
    let mut poses = Poses::load(&a.poses)?;
    let mut ctf = a.ctf.as_ref().map(CtfParams::load).transpose()?;
    if poses.len() != n_all {
        bail!(
            "{}: {} poses for {} particles in {}",
            a.poses.display(),
            poses.len(),
            n_all,
            a.particles.display()
        );
    }
    if let Some(c) = &ctf {
        if c.len() != n_all {
            bail!(
                "{}: {} CTF rows for {n_all} particles",
                a.ctf
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                c.len()
            );
        }
    }
    if let Some(ind) = &a.ind {
        let ind = load_indices(ind, n_all)?;
        src = src.select(&ind)?;
        poses = poses.select(&ind);
        ctf = ctf.map(|c| c.select(&ind));
    }
    let n = a.first.map_or(src.len(), |f| f.min(src.len()));
    let d = src.d();
    let apix = ctf.as_ref().map_or(src.apix(), |c| c.rows[0][1]);
    let lattice = Lattice::new(d + 1, (d / 2) as f32, true)?;
    let mask = lattice.circular_mask((d / 2) as f32)?;
    let mask_idx: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
    let prep = Prep {
        d,
        window: window_mask(d, 0.85, 0.99)?,
        invert: !a.uninvert_data,
        coords: mask_idx.iter().map(|&i| lattice.coords()[i]).collect(),
        freqs: mask_idx.iter().map(|&i| lattice.freqs2d()[i]).collect(),
        mask_idx,
    };
    let flip = a.ctf_alg == "flip";

    let pb = progress::bar(n as u64, "backproject");
    let nthreads = rayon::current_num_threads().max(1);
    let per = n.div_ceil(nthreads).max(1);
    // halves[0] gets even images, halves[1] odd ones; the full map is their sum
    let parts: Vec<anyhow::Result<[Backprojection; 2]>> = (0..n)
        .step_by(per)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let mut halves = [Backprojection::new(d), Backprojection::new(d)];
            let mut img = vec![0f32; d * d];
            let mut shifted = vec![0f32; prep.coords.len()];
            let mut c = vec![0f32; prep.coords.len()];
            for i in start..(start + per).min(n) {
                src.read_into(i, &mut img)?;
                let mut ff = prep.masked_ht(&mut img);
                let ctf_w = match &ctf {
                    None => None,
                    Some(cp) => {
                        let row = &cp.rows[i];
                        let freqs: Vec<[f32; 2]> = prep
                            .freqs
                            .iter()
                            .map(|f| [f[0] / row[1], f[1] / row[1]])
                            .collect();
                        compute_ctf_into(&freqs, &Ctf::from_row(row), &mut c);
                        if flip {
                            ff.iter_mut().zip(&c).for_each(|(v, c)| *v *= c.signum());
                            None
                        } else {
                            Some(c.as_slice())
                        }
                    }
                };
                if let Some(t) = &poses.trans {
                    // Translations are a fraction of D. (The reference multiplies by its lattice size
                    // D + 1 here, a 1/D error in every shift; against its golden backprojection of
                    // hand.mrcs that is the only difference: FSC ≥ 0.98 with D, 1.0000 with D + 1.)
                    let t_px = [t[i][0] * d as f32, t[i][1] * d as f32];
                    translate_ht_into(&ff, &prep.freqs, t_px, &mut shifted);
                    std::mem::swap(&mut ff, &mut shifted);
                }
                halves[i % 2].add_slice(&prep.coords, &ff, ctf_w, &poses.rots[i]);
                pb.inc(1);
            }
            Ok(halves)
        })
        .collect();
    pb.finish_and_clear();
    let mut half = [Backprojection::new(d), Backprojection::new(d)];
    for p in parts {
        let p = p?;
        half[0].merge(&p[0]);
        half[1].merge(&p[1]);
    }
    let mut full = half[0].clone();
    full.merge(&half[1]);
    let vol = full.volume(a.reg_weight);
    // The map, half maps and FSC land together: a failure part-way leaves the folder as it was.
    let mut staged = Staged::new(&a.o)?;
    write_mrc(staged.path("backproject.mrc")?, &vol, (d, d, d), apix, true)?;
    let fsc_files = ["fsc-vals.txt", "fsc-plot.png"];
    if a.no_half_maps {
        // Half maps and an FSC of an earlier run would no longer describe this map.
        for f in ["half_map_a.mrc", "half_map_b.mrc"]
            .iter()
            .chain(&fsc_files)
        {
            staged.remove_on_commit(f);
        }
    } else {
        let va = half[0].volume(a.reg_weight);
        let vb = half[1].volume(a.reg_weight);
        write_mrc(staged.path("half_map_a.mrc")?, &va, (d, d, d), apix, true)?;
        write_mrc(staged.path("half_map_b.mrc")?, &vb, (d, d, d), apix, true)?;
        match fsc_curve(&va, &vb, d, None) {
            Ok(curve) => {
                curve.write_txt(staged.path(fsc_files[0])?)?;
                fsc_plot(
                    staged.path(fsc_files[1])?,
                    &[Series {
                        label: "half maps, no mask",
                        x: &curve.pixres,
                        y: &curve.fsc,
                    }],
                    apix as f64,
                )?;
                for th in [0.5, 0.143] {
                    match curve.resolution_at(th, apix as f64) {
                        Some(r) => eprintln!("half-map FSC={th}: {r:.2} Å"),
                        None => eprintln!("half-map FSC={th}: not reached"),
                    }
                }
            }
            // One image gives an empty half map B: no FSC, and none of an earlier run left beside it.
            Err(e) => {
                eprintln!("half-map FSC not computed ({n} images): {e}");
                for f in fsc_files {
                    staged.remove_on_commit(f);
                }
            }
        }
    }
    staged.commit()?;
    eprintln!(
        "backprojected {n} images of {d}² into {} in {:.1} s",
        a.o.join("backproject.mrc").display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
