//! `filter-mrcs` / `filter-star`: keep only the particles listed in an index .pkl.
//!
//! Example: `cryofield filter-star particles.star --ind good.pkl -o good.star`

use crate::io::mrc::write_mrc;
use crate::io::source::ParticleSource;
use crate::io::star::StarFile;
use crate::meta::load_indices;
use std::path::PathBuf;

/// Filter an image stack by indices.
#[derive(Debug, clap::Args)]
#[command(about = "Keep only the images of a stack listed in an index .pkl")]
pub struct MrcsArgs {
    /// Input particles (.mrcs, .star, .cs, .txt)
    pub input: PathBuf,
    /// Index .pkl (integer array of 0-based positions)
    #[arg(long)]
    pub ind: PathBuf,
    /// Output .mrcs
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
}

/// Filter a STAR file by indices.
#[derive(Debug, clap::Args)]
#[command(about = "Keep only the particles of a .star file listed in an index .pkl")]
pub struct StarArgs {
    /// Input .star
    pub input: PathBuf,
    /// Index .pkl (integer array of 0-based positions)
    #[arg(long)]
    pub ind: PathBuf,
    /// Output .star
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Run `filter-mrcs`.
pub fn run_mrcs(a: MrcsArgs) -> anyhow::Result<()> {
    let src = ParticleSource::open(&a.input, a.datadir.as_deref())?;
    let ind = load_indices(&a.ind, src.len())?;
    let apix = src.apix();
    let src = src.select(&ind)?;
    let d = src.d();
    let data = src.load_all()?;
    write_mrc(&a.o, &data, (src.len(), d, d), apix, false)?;
    eprintln!("wrote {} of the images to {}", src.len(), a.o.display());
    Ok(())
}

/// Run `filter-star`.
pub fn run_star(a: StarArgs) -> anyhow::Result<()> {
    let star = StarFile::read(&a.input)?;
    let ind = load_indices(&a.ind, star.n_particles()?)?;
    star.write_filtered(&a.o, &ind)?;
    eprintln!("wrote {} particles to {}", ind.len(), a.o.display());
    Ok(())
}
