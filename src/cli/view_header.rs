//! `view-header`: print every field of an MRC file's header.
//!
//! Example: `cryofield view-header particles.mrcs`

use crate::io::mrc::MrcFile;
use std::path::PathBuf;

/// Print an MRC header.
#[derive(Debug, clap::Args)]
#[command(about = "Print the header of an .mrc/.mrcs file")]
pub struct Args {
    /// .mrc or .mrcs file
    pub input: PathBuf,
}

/// Run `view-header`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let f = MrcFile::open(&a.input)?;
    let h = &f.header;
    println!("file: {}", a.input.display());
    println!("nx, ny, nz: {} {} {}", h.nx, h.ny, h.nz);
    println!("mode: {:?}", h.mode);
    println!("mx, my, mz: {} {} {}", h.mx, h.my, h.mz);
    println!("cell (Å): {} {} {}", h.cella[0], h.cella[1], h.cella[2]);
    println!("Apix (Å/pixel): {}", h.apix());
    println!(
        "dmin, dmax, dmean, rms: {} {} {} {}",
        h.dmin, h.dmax, h.dmean, h.rms
    );
    println!("ispg: {}", h.ispg);
    println!(
        "extended header: {} bytes, type {:?}",
        h.nsymbt,
        String::from_utf8_lossy(&h.exttyp)
    );
    println!("nversion: {}", h.nversion);
    println!("origin: {} {} {}", h.origin[0], h.origin[1], h.origin[2]);
    println!(
        "byte order: {}",
        if h.little_endian {
            "little-endian"
        } else {
            "big-endian"
        }
    );
    Ok(())
}
