//! MRC/MRCS (MRC2014) read and write: modes 0, 1, 2, 6, 12; both byte orders; extended headers;
//! random access to image `i` through a memory map.
//! OWNER: helper "mrc" — replace this stub entirely, keeping these public signatures.

use crate::error::Result;
use std::path::{Path, PathBuf};

/// Data mode of an MRC file (the `MODE` header word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MrcMode {
    /// 0: signed 8-bit integer
    I8,
    /// 1: signed 16-bit integer
    I16,
    /// 2: 32-bit float
    F32,
    /// 6: unsigned 16-bit integer
    U16,
    /// 12: IEEE half float
    F16,
}

/// The parsed 1024-byte header (values converted to native byte order).
#[derive(Debug, Clone, PartialEq)]
pub struct MrcHeader {
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
    pub mode: MrcMode,
    pub mx: usize,
    pub my: usize,
    pub mz: usize,
    /// cell dimensions (Å)
    pub cella: [f32; 3],
    pub dmin: f32,
    pub dmax: f32,
    pub dmean: f32,
    pub rms: f32,
    /// bytes of extended header after the 1024-byte header
    pub nsymbt: usize,
    pub ispg: i32,
    pub exttyp: [u8; 4],
    pub nversion: i32,
    pub origin: [f32; 3],
    pub little_endian: bool,
}

impl MrcHeader {
    /// Pixel size (Å/pixel) from the cell: `cella.x / mx` (1.0 when the cell is unset).
    pub fn apix(&self) -> f32 {
        todo!()
    }
}

/// An open MRC/MRCS file, memory-mapped; images are decoded to f32 on request.
#[derive(Debug)]
pub struct MrcFile {
    pub path: PathBuf,
    pub header: MrcHeader,
    // private: mmap, data offset
}

impl MrcFile {
    /// Open and validate (magic-free MRC: checks mode, sizes, that data is at least as long as the header claims).
    pub fn open(_path: impl AsRef<Path>) -> Result<Self> {
        todo!()
    }
    /// Number of sections (images in a stack, slices of a volume).
    pub fn n_images(&self) -> usize {
        todo!()
    }
    /// Image `i` (ny×nx, row-major) as f32; errors if out of range or the image contains NaN/Inf.
    pub fn image(&self, _i: usize) -> Result<Vec<f32>> {
        todo!()
    }
    /// Decode image `i` into `out` (len nx*ny).
    pub fn read_image_into(&self, _i: usize, _out: &mut [f32]) -> Result<()> {
        todo!()
    }
    /// All sections (nz×ny×nx) as f32.
    pub fn read_all(&self) -> Result<Vec<f32>> {
        todo!()
    }
}

/// Write a stack (`is_vol = false`, ispg 0, mz 1) or volume (`is_vol = true`, ispg 1, mz = nz) as mode-2 f32
/// with a complete header (cell from `apix`, min/max/mean/rms, `MAP `, machine stamp), atomically.
/// `data` is nz×ny×nx row-major.
pub fn write_mrc(
    _path: impl AsRef<Path>,
    _data: &[f32],
    _shape: (usize, usize, usize),
    _apix: f32,
    _is_vol: bool,
) -> Result<()> {
    todo!()
}

/// Streaming writer for stacks too large for memory: images are appended, statistics accumulated,
/// the header is written at `finish`, and the file renamed into place (atomic).
pub struct MrcStackWriter {}

impl MrcStackWriter {
    /// Start a stack of `n` images of ny×nx at `apix`.
    pub fn create(
        _path: impl AsRef<Path>,
        _n: usize,
        _ny: usize,
        _nx: usize,
        _apix: f32,
    ) -> Result<Self> {
        todo!()
    }
    /// Append images (a multiple of ny*nx values).
    pub fn write_images(&mut self, _data: &[f32]) -> Result<()> {
        todo!()
    }
    /// Write the header and move the file into place; errors if fewer than `n` images were written.
    pub fn finish(self) -> Result<()> {
        todo!()
    }
}
