//! `parse-pose-star` / `parse-pose-csparc`: extract poses into a cryoDRGN pose.pkl
//! (tuple of rotations (N,3,3) and translations (N,2) as a fraction of D).
//!
//! Example: `cryofield parse-pose-star particles.star -D 256 -o pose.pkl`

use crate::io::cs::CsFile;
use crate::io::star::StarFile;
use crate::meta::Poses;
use std::path::{Path, PathBuf};

/// Parse poses from a RELION .star file (3.0, 3.1 or 5).
#[derive(Debug, clap::Args)]
#[command(about = "Parse poses from a RELION .star file into pose.pkl")]
pub struct StarArgs {
    /// RELION .star file
    pub input: PathBuf,
    /// Box size of the reconstruction (pixels); default: rlnImageSize from the optics table
    #[arg(short = 'D')]
    pub d: Option<usize>,
    /// Pixel size (Å/pixel) to convert rlnOriginX/YAngst; default: rlnImagePixelSize
    #[arg(long = "Apix")]
    pub apix: Option<f64>,
    /// Output pose.pkl
    #[arg(short = 'o', long = "outpkl")]
    pub o: PathBuf,
}

/// Parse poses from a cryoSPARC .cs file.
#[derive(Debug, clap::Args)]
#[command(about = "Parse poses from a cryoSPARC .cs file into pose.pkl")]
pub struct CsArgs {
    /// cryoSPARC particles .cs file
    pub input: PathBuf,
    /// Box size (pixels); default: blob/shape
    #[arg(short = 'D')]
    pub d: Option<usize>,
    /// The .cs file comes from ab initio reconstruction (alignments_class_0)
    #[arg(long)]
    pub abinit: bool,
    /// The .cs file comes from heterogeneous refinement (shifts ×2)
    #[arg(long)]
    pub hetrefine: bool,
    /// Output pose.pkl
    #[arg(short = 'o')]
    pub o: PathBuf,
}

fn report(p: &Poses, out: &Path) {
    if let (Some(r), Some(t)) = (p.rots.first(), p.trans.as_ref().and_then(|t| t.first())) {
        eprintln!("first rotation: {r:?}\nfirst translation (fraction of D): {t:?}");
    }
    eprintln!("wrote {} poses to {}", p.len(), out.display());
}

/// Writes `poses` to the pose.pkl `out` (atomically) and reports the first pose.
pub fn save_poses(poses: &Poses, out: &Path) -> anyhow::Result<()> {
    poses.save(out)?;
    report(poses, out);
    Ok(())
}

/// Run `parse-pose-star`.
pub fn run_star(a: StarArgs) -> anyhow::Result<()> {
    let star = StarFile::read(&a.input)?;
    let poses = Poses::from_star(&star, a.d, a.apix)?;
    save_poses(&poses, &a.o)
}

/// Run `parse-pose-csparc`.
pub fn run_cs(a: CsArgs) -> anyhow::Result<()> {
    let cs = CsFile::read(&a.input)?;
    let poses = Poses::from_cs(&cs.records, &cs.path, a.d, a.abinit, a.hetrefine)?;
    save_poses(&poses, &a.o)
}
