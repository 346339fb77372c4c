//! cryoSPARC `.cs` particle files: numpy structured arrays with nested field names (`alignments3D/pose`)
//! and byte-string fields (`blob/path`).

use crate::error::{Error, Result};
use crate::io::npy::{read_records, RecordArray};
use std::path::{Path, PathBuf};

/// An opened `.cs` file.
#[derive(Debug, Clone)]
pub struct CsFile {
    pub path: PathBuf,
    pub records: RecordArray,
}

impl CsFile {
    /// Read a `.cs` file (a structured `.npy`).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let records = read_records(&path)?;
        Ok(CsFile { path, records })
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.records.n
    }

    /// True when there are no particles.
    pub fn is_empty(&self) -> bool {
        self.records.n == 0
    }

    /// For each particle, the stack path (`blob/path`, a leading `>` removed) and the 0-based image index
    /// within it (`blob/idx`).
    pub fn blobs(&self) -> Result<Vec<(String, usize)>> {
        let missing = |column: &str| Error::MissingColumn {
            path: self.path.clone(),
            column: column.to_string(),
            available: self.records.names(),
        };
        let paths = self
            .records
            .column_strings("blob/path")
            .map_err(|_| missing("blob/path"))?;
        let idx = self
            .records
            .column("blob/idx")
            .map_err(|_| missing("blob/idx"))?
            .to_i64()
            .map_err(|e| Error::format(&self.path, format!("`blob/idx`: {e}")))?;
        paths
            .into_iter()
            .zip(idx)
            .enumerate()
            .map(|(i, (p, k))| {
                let p = p.strip_prefix('>').map(str::to_string).unwrap_or(p);
                if k < 0 {
                    return Err(Error::format(
                        &self.path,
                        format!("particle {i}: negative `blob/idx` {k}"),
                    ));
                }
                Ok((p, k as usize))
            })
            .collect()
    }
}
