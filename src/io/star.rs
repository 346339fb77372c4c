//! STAR files: RELION 3.0, 3.1 (optics block before or after particles, several optics groups) and 5.
//! OWNER: helper "star" — replace this stub entirely, keeping these public signatures.

use crate::error::Result;
use std::path::{Path, PathBuf};

/// A `loop_` table: column names without the leading underscore (`rlnImageName`), rows of raw strings
/// (quotes removed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StarTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One `data_NAME` block: key/value pairs and/or one loop table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StarBlock {
    pub name: String,
    pub pairs: Vec<(String, String)>,
    pub table: Option<StarTable>,
}

/// A parsed STAR file.
#[derive(Debug, Clone)]
pub struct StarFile {
    pub path: PathBuf,
    pub blocks: Vec<StarBlock>,
}

impl StarFile {
    /// Read and parse a STAR file.
    pub fn read(_path: impl AsRef<Path>) -> Result<Self> {
        todo!()
    }
    /// Parse STAR text; `path` is used in errors.
    pub fn parse(_text: &str, _path: &Path) -> Result<Self> {
        todo!()
    }
    /// Number of particles (rows of the particle table).
    pub fn n_particles(&self) -> Result<usize> {
        todo!()
    }
    /// The value of `column` for each particle as f64; when the particle table lacks it, it is taken from
    /// the particle's optics group (`rlnOpticsGroup` → optics table row). Error names the file and column.
    pub fn particle_f64(&self, _column: &str) -> Result<Vec<f64>> {
        todo!()
    }
    /// Like [`Self::particle_f64`] for string columns (e.g. `rlnImageName`).
    pub fn particle_str(&self, _column: &str) -> Result<Vec<String>> {
        todo!()
    }
    /// Whether the column exists for particles (directly or through optics).
    pub fn has_particle_column(&self, _column: &str) -> bool {
        todo!()
    }
    /// Write a STAR file keeping only the particle rows in `ind` (optics and other blocks kept), atomically.
    pub fn write_filtered(&self, _path: impl AsRef<Path>, _ind: &[usize]) -> Result<()> {
        todo!()
    }
}
