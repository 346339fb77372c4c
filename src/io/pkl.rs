//! A safe reader and writer for the numpy-array pickles cryoDRGN writes. It never executes anything.
//! OWNER: helper "pkl-npy" — replace this stub entirely, keeping these public signatures.

use crate::error::Result;
use crate::io::array::NdArray;
use std::path::Path;

/// The Python values a cryoDRGN pickle may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
    Array(NdArray),
}

/// Parse all pickles stored back to back in `bytes` (as in `z.N.pkl`); `path` only for errors.
pub fn parse_pickles(_bytes: &[u8], _path: &Path) -> Result<Vec<PyValue>> {
    todo!()
}
/// Read the first pickle of a file.
pub fn read_pkl(_path: impl AsRef<Path>) -> Result<PyValue> {
    todo!()
}
/// Read every pickle of a file, back to back.
pub fn read_pkl_all(_path: impl AsRef<Path>) -> Result<Vec<PyValue>> {
    todo!()
}
/// Serialize one value as a protocol-4 pickle loadable by `pickle.load` with numpy 1 or 2.
pub fn pickle_bytes(_v: &PyValue) -> Vec<u8> {
    todo!()
}
/// Write one pickle atomically.
pub fn write_pkl(_path: impl AsRef<Path>, _v: &PyValue) -> Result<()> {
    todo!()
}
/// Write several pickles back to back atomically (e.g. `z.N.pkl` = z_mu then z_logvar).
pub fn write_pkls(_path: impl AsRef<Path>, _vs: &[PyValue]) -> Result<()> {
    todo!()
}
