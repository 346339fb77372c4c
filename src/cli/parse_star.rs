//! `parse-star`: CTF parameters and poses from ONE RELION .star file, into a cryoDRGN ctf.pkl
//! (as `parse-ctf-star`) and a pose.pkl (as `parse-pose-star`); cryoDRGN's `parse_star`.
//! `-D` and `--Apix` apply to both outputs, `--kv`, `--cs`, `-w` and `--ps` to the CTF only.
//!
//! Deviations from the reference: it needs both `--ctf` and `--poses` (it crashes on a missing
//! one); here either or both are written, and at least one is required. Every output
//! (`--ctf`, `--poses`, `--png`) is checked for existence (without `--overwrite`) and both
//! tables are parsed before anything is written, so a bad input writes nothing; the reference
//! writes ctf.pkl before it parses the poses. `--png` is drawn as in `parse-ctf-star`.
//!
//! Example: `cryofield parse-star particles.star --ctf ctf.pkl --poses pose.pkl -D 294 --Apix 1.7`

use crate::cli::parse_ctf::{ctf_from_star, save_ctf, ImageParams};
use crate::cli::parse_pose::save_poses;
use crate::io::star::StarFile;
use crate::meta::Poses;
use anyhow::bail;
use std::path::PathBuf;

/// Parse CTF parameters and poses from one RELION .star file.
#[derive(Debug, clap::Args)]
#[command(
    about = "Parse CTF parameters and poses from a RELION .star file into ctf.pkl and pose.pkl"
)]
pub struct Args {
    /// RELION .star file
    pub input: PathBuf,
    /// Output ctf.pkl of CTF parameters
    #[arg(long, value_name = "PKL")]
    pub ctf: Option<PathBuf>,
    /// Output pose.pkl of poses
    #[arg(long, value_name = "PKL")]
    pub poses: Option<PathBuf>,
    /// Also draw the CTF of the first particle to this PNG (needs --ctf)
    #[arg(long, value_name = "PNG", requires = "ctf")]
    pub png: Option<PathBuf>,
    /// Replace output files that already exist
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub image: ImageParams,
}

/// Run `parse-star`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.ctf.is_none() && a.poses.is_none() {
        bail!(
            "{}: nothing to write; give --ctf CTF.pkl and/or --poses POSE.pkl",
            a.input.display()
        );
    }
    let outputs: Vec<(&str, &PathBuf)> =
        [("--ctf", &a.ctf), ("--poses", &a.poses), ("--png", &a.png)]
            .into_iter()
            .filter_map(|(flag, p)| p.as_ref().map(|p| (flag, p)))
            .collect();
    for (i, (flag, p)) in outputs.iter().enumerate() {
        if let Some((other, _)) = outputs[..i].iter().find(|(_, q)| q == p) {
            bail!("{}: given to both {other} and {flag}", p.display());
        }
        if !a.overwrite && std::fs::symlink_metadata(p).is_ok() {
            bail!(
                "{}: already exists ({flag}); use --overwrite to replace it",
                p.display()
            );
        }
    }

    // Parse everything before writing anything: a bad input leaves earlier outputs intact.
    let star = StarFile::read(&a.input)?;
    let ctf = match &a.ctf {
        Some(_) => Some(ctf_from_star(&star, &a.image)?),
        None => None,
    };
    let poses = match &a.poses {
        Some(_) => Some(Poses::from_star(&star, a.image.d, a.image.apix)?),
        None => None,
    };

    if let (Some(ctf), Some(out)) = (&ctf, &a.ctf) {
        save_ctf(ctf, out, a.png.as_deref())?;
    }
    if let (Some(poses), Some(out)) = (&poses, &a.poses) {
        save_poses(poses, out)?;
    }
    Ok(())
}
