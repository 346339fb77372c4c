//! `write-cs` / `filter-cs`: particles as a cryoSPARC .cs file (a numpy structured array saved with
//! `np.save`), cryoDRGN's `write_cs` / `filter_cs`.
//!
//! `write-cs` from a `.mrcs`/`.txt`/`.star` input builds the fields cryoSPARC and the parsers read:
//! `uid` (random u64, `--seed`), `blob/path`, `blob/idx` (0-based), `blob/shape` (D, D),
//! `blob/psize_A`, `ctf/type`, `ctf/exp_group_id` (one per distinct optics), `ctf/accel_kv`,
//! `ctf/cs_mm`, `ctf/amp_contrast`, `ctf/df1_A`, `ctf/df2_A`, `ctf/df_angle_rad`,
//! `ctf/phase_shift_rad`, `ctf/scale`, and with poses `alignments3D/pose` (the rotation vector `v`
//! with `expmap(v)ᵀ = R`, the inverse of `parse-pose-csparc`), `alignments3D/shift` (pixels, `t·D`)
//! and `alignments3D/psize_A`. CTF from `--ctf` (or the .star's columns), poses from `--poses`
//! (or the .star's). From a `.cs` input every field is kept; `--ctf`/`--poses` overwrite the CTF
//! and pose fields. With `--ind`, only those particles, in that order. Stack paths as in
//! `write-star` ([`crate::cli::export`]).
//!
//! `filter-cs` keeps the rows of a .cs file listed in an index .pkl, every field byte for byte.
//! Outputs are written atomically.
//!
//! Example: `cryofield write-cs particles.mrcs --ctf ctf.pkl --poses pose.pkl -o particles.cs`
//! Example: `cryofield filter-cs particles.cs --ind good.pkl -o good.cs`

use crate::cli::export::{optics_groups, Input, Naming};
use crate::geometry::rotation::cryosparc_from_r;
use crate::io::cs::CsFile;
use crate::io::npy::{write_records, RecordArray};
use crate::meta::{load_indices, CtfParams, Poses};
use anyhow::Context;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// Write particles as a cryoSPARC .cs file.
#[derive(Debug, clap::Args)]
#[command(about = "Write particles (with CTF and poses) as a cryoSPARC .cs file")]
pub struct Args {
    /// Input particles (.mrcs, .txt, .star, .cs)
    pub particles: PathBuf,
    /// Poses (pose.pkl: rotations (N,3,3), translations (N,2) as a fraction of D)
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// CTF parameters (ctf.pkl); needed for .mrcs/.txt inputs
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Keep only these particles (index .pkl, 0-based), in this order
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Write absolute stack paths (default: relative to the output's folder)
    #[arg(long = "full-path")]
    pub full_path: bool,
    /// Folder of the stacks named in a .star/.cs input (their names are then rewritten)
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Seed of the random particle uids
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output .cs
    #[arg(short = 'o', long = "output")]
    pub o: PathBuf,
}

/// Keep only the rows of a .cs file listed in an index .pkl.
#[derive(Debug, clap::Args)]
#[command(about = "Keep only the particles of a cryoSPARC .cs file listed in an index .pkl")]
pub struct FilterArgs {
    /// Input .cs
    pub input: PathBuf,
    /// Index .pkl (integer array of 0-based positions)
    #[arg(long)]
    pub ind: PathBuf,
    /// Output .cs
    #[arg(short = 'o', long = "output")]
    pub o: PathBuf,
}

/// Run `filter-cs`.
pub fn run_filter(a: FilterArgs) -> anyhow::Result<()> {
    let cs = CsFile::read(&a.input)?;
    let ind = load_indices(&a.ind, cs.len())?;
    let out = cs.records.select(&ind)?;
    write_records(&a.o, &out)?;
    eprintln!(
        "wrote {} of the {} particles of {} to {}",
        out.n,
        cs.len(),
        a.input.display(),
        a.o.display()
    );
    Ok(())
}

/// Run `write-cs`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let naming = Naming::new(&a.o, a.full_path, a.datadir.as_deref())?;
    let input = Input::open(&a.particles, &naming)?;
    let n = input.len();
    let ind: Vec<usize> = match &a.ind {
        Some(p) => load_indices(p, n)?,
        None => (0..n).collect(),
    };
    let out = match &input.cs {
        Some(cs) => {
            let mut r = cs.records.clone();
            if naming.rewrites_metadata_paths() {
                let paths: Vec<String> = input.images.iter().map(|x| x.0.clone()).collect();
                r.set_bytes("blob/path", &paths)?;
            }
            let d_img = blob_sides(&r, &cs.path)?;
            if let Some(p) = &a.ctf {
                let ctf = input.ctf(Some(p))?.context("no CTF read from --ctf")?;
                set_ctf(&mut r, &ctf, &d_img)?;
            }
            if let Some(p) = &a.poses {
                let poses = input
                    .poses(Some(p))?
                    .context("no poses read from --poses")?;
                set_poses(&mut r, &poses, &d_img)?;
            }
            r.select(&ind)?
        }
        None => build(&a, &input, &ind)?,
    };
    write_records(&a.o, &out)?;
    eprintln!("wrote {} particles to {}", out.n, a.o.display());
    Ok(())
}

/// The image side of each record of a .cs file, from `blob/shape`.
fn blob_sides(r: &RecordArray, path: &Path) -> anyhow::Result<Vec<f64>> {
    let shape = r
        .column("blob/shape")
        .with_context(|| format!("{}: reading the image size", path.display()))?;
    if shape.shape.get(1..) != Some(&[2][..]) {
        anyhow::bail!(
            "{}: `blob/shape` has shape {:?}, expected ({}, 2)",
            path.display(),
            shape.shape,
            r.n
        );
    }
    Ok(shape.to_f64().iter().step_by(2).copied().collect())
}

/// Set the CTF's `ctf/*` fields (type, exposure group and scale aside) and `blob/psize_A` (the pixel size of images of side `d_img`, whose box
/// is `D·Apix` Å) from `ctf`, one row per record.
fn set_ctf(r: &mut RecordArray, ctf: &CtfParams, d_img: &[f64]) -> anyhow::Result<()> {
    let col = |k: usize| -> Vec<f32> { ctf.rows.iter().map(|x| x[k]).collect() };
    let rad = |k: usize| -> Vec<f32> {
        ctf.rows
            .iter()
            .map(|x| f64::from(x[k]).to_radians() as f32)
            .collect()
    };
    let psize: Vec<f32> = ctf
        .rows
        .iter()
        .zip(d_img)
        .map(|(x, d)| (f64::from(x[1]) * f64::from(x[0]) / d) as f32)
        .collect();
    r.set_f32("blob/psize_A", &[], &psize)?;
    r.set_f32("ctf/accel_kv", &[], &col(5))?;
    r.set_f32("ctf/cs_mm", &[], &col(6))?;
    r.set_f32("ctf/amp_contrast", &[], &col(7))?;
    r.set_f32("ctf/df1_A", &[], &col(2))?;
    r.set_f32("ctf/df2_A", &[], &col(3))?;
    r.set_f32("ctf/df_angle_rad", &[], &rad(4))?;
    r.set_f32("ctf/phase_shift_rad", &[], &rad(8))?;
    Ok(())
}

/// Set `alignments3D/pose` and `alignments3D/shift` (pixels of images of side `d_img`).
fn set_poses(r: &mut RecordArray, poses: &Poses, d_img: &[f64]) -> anyhow::Result<()> {
    // The reference's `lie_tools.expmap` divides by |v|, so a zero vector (the identity) would parse
    // as NaN there: vectors shorter than 1e-12 rad are written as a 1e-12 rad turn about z, which
    // every reader maps to the identity to f32 precision.
    let pose: Vec<f32> = poses
        .rots
        .iter()
        .flat_map(|m| {
            let v = cryosparc_from_r(&m.map(f64::from));
            let v = if v.iter().map(|x| x * x).sum::<f64>() < 1e-24 {
                [0.0, 0.0, 1e-12]
            } else {
                v
            };
            v.map(|x| x as f32)
        })
        .collect();
    let shift: Vec<f32> = (0..poses.len())
        .flat_map(|i| {
            let t = poses.trans.as_ref().map_or([0.0; 2], |t| t[i]);
            t.map(|x| (f64::from(x) * d_img[i]) as f32)
        })
        .collect();
    r.set_f32("alignments3D/shift", &[2], &shift)?;
    r.set_f32("alignments3D/pose", &[3], &pose)?;
    Ok(())
}

/// A new .cs array for the particles `ind` of a .mrcs/.txt/.star input.
fn build(a: &Args, input: &Input, ind: &[usize]) -> anyhow::Result<RecordArray> {
    let ctf = input
        .ctf(a.ctf.as_deref())?
        .with_context(|| {
            format!(
                "{}: a .{} input has no CTF parameters: give them with --ctf ctf.pkl",
                input.path.display(),
                input.kind.name()
            )
        })?
        .select(ind);
    let poses = input.poses(a.poses.as_deref())?.map(|p| p.select(ind));
    let m = ind.len();
    // The images' side: the stacks' (.mrcs/.txt), else the CTF's D (.star).
    let d_img: Vec<f64> = match input.d {
        Some(d) => vec![d as f64; m],
        None => ctf.rows.iter().map(|r| f64::from(r[0])).collect(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let uid: Vec<u64> = (0..m).map(|_| rng.random()).collect();
    let mut r = RecordArray::with_len(m);
    r.set_u64("uid", &uid)?;
    let paths: Vec<String> = ind.iter().map(|&i| input.images[i].0.clone()).collect();
    r.set_bytes("blob/path", &paths)?;
    let idx = ind
        .iter()
        .map(|&i| u32::try_from(input.images[i].1))
        .collect::<Result<Vec<u32>, _>>()
        .context("an image index does not fit blob/idx (u32)")?;
    r.set_u32("blob/idx", &[], &idx)?;
    let shape: Vec<u32> = d_img.iter().flat_map(|&d| [d as u32; 2]).collect();
    r.set_u32("blob/shape", &[2], &shape)?;
    let (group_of, _) = optics_groups(&ctf);
    let groups: Vec<u32> = group_of.iter().map(|&g| g as u32 + 1).collect();
    r.set_bytes("ctf/type", &vec!["imported".to_string(); m])?;
    r.set_u32("ctf/exp_group_id", &[], &groups)?;
    set_ctf(&mut r, &ctf, &d_img)?;
    r.set_f32("ctf/scale", &[], &vec![1.0; m])?;
    if let Some(p) = &poses {
        set_poses(&mut r, p, &d_img)?;
        let psize = r.column("blob/psize_A")?.to_f32();
        r.set_f32("alignments3D/psize_A", &[], &psize)?;
    }
    Ok(r)
}
