//! `pdb2mrc`: a density map from an atomic model (PDB or mmCIF), as Chimera's `molmap`: each atom a
//! Gaussian of `σ = res/(π√2)` Å carrying its atomic number × occupancy, integrated over each voxel
//! (see [`crate::simulate::pdb_density`]). By default the model's centre of mass goes to the box
//! centre (voxel D/2); `--center none` keeps model coordinates (Å) with the map origin at voxel 0.
//!
//! Example: `cryofield pdb2mrc 6vxx.cif -D 128 --Apix 2.0 --res 6 -o 6vxx.mrc`

use crate::io::mrc::write_mrc;
use crate::io::pdb::read_model;
use crate::simulate::pdb_density::{
    atom_weights, check_coordinates, model_density, sigma_for_resolution, Centering, DensityParams,
};
use anyhow::bail;
use std::path::PathBuf;

/// How to place the model in the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Center {
    /// centre of mass (atomic-number weighted) at the box centre
    Mass,
    /// centre of the bounding box at the box centre
    Geometric,
    /// no shift: model coordinates in Å, map origin at voxel 0
    None,
}

/// Compute a density map from an atomic model.
#[derive(Debug, clap::Args)]
#[command(
    about = "Density map from an atomic model (.pdb or .cif): atoms as Gaussians weighted by atomic number"
)]
pub struct Args {
    /// Atomic model (.pdb/.ent or .cif/.mmcif)
    pub model: PathBuf,
    /// Box size (pixels)
    #[arg(short = 'D')]
    pub d: usize,
    /// Pixel size (Å)
    #[arg(long = "Apix")]
    pub apix: f64,
    /// Resolution (Å); σ = res/(π√2). Default 3 × Apix
    #[arg(long)]
    pub res: Option<f64>,
    /// Placement of the model (`--center` alone means mass)
    #[arg(long, value_enum, default_value = "mass", num_args = 0..=1, default_missing_value = "mass")]
    pub center: Center,
    /// Output volume (.mrc)
    #[arg(short = 'o', long = "outfile")]
    pub o: PathBuf,
}

/// Run `pdb2mrc`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.d == 0 {
        bail!("box size -D must be positive");
    }
    if !(a.apix.is_finite() && a.apix > 0.0) {
        bail!("--Apix must be positive, got {}", a.apix);
    }
    let res = a.res.unwrap_or(3.0 * a.apix);
    if !(res.is_finite() && res > 0.0) {
        bail!("--res must be positive, got {res}");
    }
    if res < 2.0 * a.apix {
        eprintln!(
            "warning: --res {res} Å is finer than Nyquist (2 × Apix = {} Å); the map will alias",
            2.0 * a.apix
        );
    }
    let atoms = read_model(&a.model)?;
    check_coordinates(&atoms, &a.model)?;
    let weights = atom_weights(&atoms, &a.model)?;
    let center = match a.center {
        Center::Mass => Centering::Mass,
        Center::Geometric => Centering::Geometric,
        Center::None => Centering::None,
    };
    let map = model_density(
        &atoms,
        &weights,
        &DensityParams {
            d: a.d,
            apix: a.apix,
            res,
            center,
        },
    )?;
    if map.n_outside > 0 {
        eprintln!(
            "warning: {} of {} atoms lie outside the {}³ box of {} Å; their density is clipped",
            map.n_outside,
            atoms.len(),
            a.d,
            a.d as f64 * a.apix
        );
    }
    if map.vol.iter().all(|&v| v == 0.0) {
        bail!(
            "{}: the map would be all zero: no atom with non-zero occupancy lies inside the {}³ box of {} Å (check the coordinates, --center, -D and --Apix)",
            a.model.display(),
            a.d,
            a.d as f64 * a.apix
        );
    }
    write_mrc(&a.o, &map.vol, (a.d, a.d, a.d), a.apix as f32, true)?;
    let c = map.center_angstrom;
    eprintln!(
        "wrote {} ({}³, Apix {} Å, res {res} Å, σ {:.3} Å) from {} atoms of {}; model point ({:.2}, {:.2}, {:.2}) Å at the box centre",
        a.o.display(),
        a.d,
        a.apix,
        sigma_for_resolution(res),
        atoms.len(),
        a.model.display(),
        c[0],
        c[1],
        c[2]
    );
    Ok(())
}
