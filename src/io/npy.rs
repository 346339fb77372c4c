//! numpy `.npy` / `.npz` read and write, including structured (record) dtypes as used by cryoSPARC `.cs` files.
//! OWNER: helper "pkl-npy" — replace this stub entirely, keeping these public signatures.

use crate::error::Result;
use crate::io::array::NdArray;
use std::path::Path;

/// One field of a structured dtype: name (nested names joined with `/` as cryoSPARC writes them),
/// its scalar dtype string (e.g. `<f4`, `|S64`), sub-array shape, and byte offset within a record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordField {
    pub name: String,
    pub descr: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

/// A 1-D structured array: `n` records of `itemsize` bytes, raw little/big-endian bytes kept as read.
#[derive(Debug, Clone)]
pub struct RecordArray {
    pub n: usize,
    pub itemsize: usize,
    pub fields: Vec<RecordField>,
    pub data: Vec<u8>,
}

impl RecordArray {
    /// A numeric field as an array of shape `(n, *field.shape)` (converted to native numeric types).
    pub fn column(&self, _name: &str) -> Result<NdArray> {
        todo!()
    }
    /// A byte-string (`S`) or unicode (`U`) field decoded to Strings (trailing NULs stripped).
    pub fn column_strings(&self, _name: &str) -> Result<Vec<String>> {
        todo!()
    }
    /// Field names in order.
    pub fn names(&self) -> Vec<String> {
        todo!()
    }
}

/// What an .npy file holds.
#[derive(Debug, Clone)]
pub enum Npy {
    Plain(NdArray),
    Records(RecordArray),
}

/// Parse .npy bytes; `path` is used only in error messages.
pub fn parse_npy(_bytes: &[u8], _path: &Path) -> Result<Npy> {
    todo!()
}
/// Read a plain (non-structured) .npy array.
pub fn read_npy(_path: impl AsRef<Path>) -> Result<NdArray> {
    todo!()
}
/// Read a structured .npy (or cryoSPARC .cs) file.
pub fn read_records(_path: impl AsRef<Path>) -> Result<RecordArray> {
    todo!()
}
/// Serialize a plain array as .npy v1.0 bytes.
pub fn npy_bytes(_a: &NdArray) -> Vec<u8> {
    todo!()
}
/// Write an .npy file atomically.
pub fn write_npy(_path: impl AsRef<Path>, _a: &NdArray) -> Result<()> {
    todo!()
}
/// Read every array of an .npz archive, in archive order.
pub fn read_npz(_path: impl AsRef<Path>) -> Result<Vec<(String, NdArray)>> {
    todo!()
}
/// Write an .npz archive atomically.
pub fn write_npz(_path: impl AsRef<Path>, _arrays: &[(String, NdArray)]) -> Result<()> {
    todo!()
}
