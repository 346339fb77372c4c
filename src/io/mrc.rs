//! MRC/MRCS (MRC2014) read and write: modes 0, 1, 2, 6, 12; both byte orders; extended headers;
//! random access to image `i` through a memory map.
//!
//! Layout (MRC2014, <https://www.ccpem.ac.uk/mrc_format/mrc2014.php>): a 1024-byte header of 4-byte
//! words, then `NSYMBT` bytes of extended header, then `nz` sections of `ny` rows of `nx` values,
//! x fastest. The byte order is given by the machine stamp (bytes 212..216: `0x44 0x41`/`0x44 0x44`
//! little-endian, `0x11 0x11` big-endian); when the stamp is missing or garbage, the order that
//! yields a sane header (positive sizes, a known mode) is used.
//!
//! Writing follows the reference (cryoDRGN 4.3 `mrcfile.py`): mode 2, `mx,my,mz = nx,ny,nz` for
//! stacks and volumes alike, `cella = apix * (mx, my, mz)`, angles 90°, axes 1,2,3, `ispg` 0 for a
//! stack and 1 for a volume, `nversion` 20140, `MAP `, machine stamp `0x44 0x44 0 0`. Unlike the
//! reference, which stores the "undefined" statistics (-1, -2, -3, -1) for stacks, `dmin`, `dmax`,
//! `dmean` and `rms` always hold the statistics of the data (accumulated in f64).

use crate::error::{Error, IoContext, Result};
use crate::io::atomic::tmp_path;
use memmap2::Mmap;
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Length of the fixed MRC header (bytes).
pub const HEADER_LEN: usize = 1024;

/// Machine stamp written for little-endian data (as the reference and the `mrcfile` package write it).
const MACHST_LITTLE: [u8; 4] = [0x44, 0x44, 0x00, 0x00];
/// Machine stamp written for big-endian data.
const MACHST_BIG: [u8; 4] = [0x11, 0x11, 0x00, 0x00];
/// The machine stamp for a byte order: `0x44 0x44 0 0` little-endian, `0x11 0x11 0 0` big-endian.
pub fn machine_stamp(little_endian: bool) -> [u8; 4] {
    if little_endian {
        MACHST_LITTLE
    } else {
        MACHST_BIG
    }
}

/// Label written into the files we create.
const LABEL: &str = concat!("cryofield ", env!("CARGO_PKG_VERSION"));

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

impl MrcMode {
    /// The mode for a `MODE` header word, `None` for modes we do not read (complex, RGB, 4-bit, ...).
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(MrcMode::I8),
            1 => Some(MrcMode::I16),
            2 => Some(MrcMode::F32),
            6 => Some(MrcMode::U16),
            12 => Some(MrcMode::F16),
            _ => None,
        }
    }

    /// The `MODE` header word of this mode.
    pub fn code(self) -> i32 {
        match self {
            MrcMode::I8 => 0,
            MrcMode::I16 => 1,
            MrcMode::F32 => 2,
            MrcMode::U16 => 6,
            MrcMode::F16 => 12,
        }
    }

    /// Bytes per stored value.
    pub fn bytes_per_value(self) -> usize {
        match self {
            MrcMode::I8 => 1,
            MrcMode::I16 | MrcMode::U16 | MrcMode::F16 => 2,
            MrcMode::F32 => 4,
        }
    }

    /// A short name of the value type (`int8`, `float32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MrcMode::I8 => "int8",
            MrcMode::I16 => "int16",
            MrcMode::F32 => "float32",
            MrcMode::U16 => "uint16",
            MrcMode::F16 => "float16",
        }
    }

    /// Whether values of this mode can be NaN or infinite.
    fn is_float(self) -> bool {
        matches!(self, MrcMode::F32 | MrcMode::F16)
    }
}

/// The parsed 1024-byte header (values converted to native byte order).
#[derive(Debug, Clone, PartialEq)]
pub struct MrcHeader {
    /// columns (fastest axis)
    pub nx: usize,
    /// rows
    pub ny: usize,
    /// sections (images in a stack, slices of a volume)
    pub nz: usize,
    /// data mode
    pub mode: MrcMode,
    /// `nxstart, nystart, nzstart`: location of the first column, row and section in the unit cell
    pub nstart: [i32; 3],
    /// grid intervals along x (0 when the file stores a negative value)
    pub mx: usize,
    /// grid intervals along y
    pub my: usize,
    /// grid intervals along z
    pub mz: usize,
    /// cell dimensions (Å)
    pub cella: [f32; 3],
    /// cell angles alpha, beta, gamma (degrees)
    pub cellb: [f32; 3],
    /// `mapc, mapr, maps`: axis (1, 2, 3 = x, y, z) of columns, rows and sections
    pub mapcrs: [i32; 3],
    /// minimum density
    pub dmin: f32,
    /// maximum density
    pub dmax: f32,
    /// mean density
    pub dmean: f32,
    /// RMS deviation from the mean density
    pub rms: f32,
    /// bytes of extended header after the 1024-byte header
    pub nsymbt: usize,
    /// space group (0 image stack, 1 volume, 401 volume stack)
    pub ispg: i32,
    /// extended header type (`CCP4`, `MRCO`, `SERI`, `AGAR`, `FEI1`, ...) at byte 104
    pub exttyp: [u8; 4],
    /// format version (20140 for MRC2014) at byte 108
    pub nversion: i32,
    /// origin (Å)
    pub origin: [f32; 3],
    /// the map identifier at byte 208 (`MAP ` in MRC2014 files)
    pub map_id: [u8; 4],
    /// the machine stamp at byte 212, as stored
    pub machst: [u8; 4],
    /// `nlabl` as stored
    pub nlabl: i32,
    /// the first `min(nlabl, 10)` labels, trailing spaces and NULs removed
    pub labels: Vec<String>,
    /// byte order of the header and data
    pub little_endian: bool,
}

impl MrcHeader {
    /// Pixel size (Å/pixel) from the cell: `cella.x / mx` (1.0 when the cell or `mx` is unset).
    pub fn apix(&self) -> f32 {
        let a = self.cella[0];
        if self.mx == 0 || !a.is_finite() || a <= 0.0 {
            1.0
        } else {
            a / self.mx as f32
        }
    }

    /// The header of a mode-2 little-endian file of `nz` sections of ny×nx written by cryofield:
    /// `mx,my,mz = nx,ny,nz`, `cella = apix * (nx, ny, nz)`, `ispg` 1 for a volume and 0 for a stack,
    /// statistics from `stats`.
    pub fn new_f32(
        (nz, ny, nx): (usize, usize, usize),
        apix: f32,
        is_vol: bool,
        stats: &Stats,
    ) -> Self {
        let (dmin, dmax, dmean, rms) = stats.header_values();
        MrcHeader {
            nx,
            ny,
            nz,
            mode: MrcMode::F32,
            nstart: [0; 3],
            mx: nx,
            my: ny,
            mz: nz,
            cella: [apix * nx as f32, apix * ny as f32, apix * nz as f32],
            cellb: [90.0; 3],
            mapcrs: [1, 2, 3],
            dmin,
            dmax,
            dmean,
            rms,
            nsymbt: 0,
            ispg: if is_vol { 1 } else { 0 },
            exttyp: [0; 4],
            nversion: 20140,
            origin: [0.0; 3],
            map_id: *b"MAP ",
            machst: machine_stamp(true),
            nlabl: 1,
            labels: vec![LABEL.to_string()],
            little_endian: true,
        }
    }

    /// Parse a header of a file of `file_len` bytes. `path` names the file in errors.
    ///
    /// The byte order is the machine stamp's when that reading is plausible (positive sizes, a
    /// supported mode, data that fits in `file_len`), else the other order's if that one is, else
    /// the stamp's (or native). Checks that the mode is supported, the sizes are positive and
    /// `NSYMBT` is not negative; the check against the file length is [`MrcFile::open`]'s.
    pub fn parse(bytes: &[u8; HEADER_LEN], file_len: u64, path: &Path) -> Result<Self> {
        let stamp = [bytes[212], bytes[213], bytes[214], bytes[215]];
        let declared = match stamp[0] {
            0x44 => Some(true),
            0x11 => Some(false),
            _ => None,
        };
        let sane = |little: bool| {
            let w = Words { b: bytes, little };
            let Some(mode) = MrcMode::from_code(w.i32(3)) else {
                return false;
            };
            let ints = [w.i32(0), w.i32(1), w.i32(2), w.i32(23)];
            if ints[..3].iter().any(|&v| v <= 0) || ints[3] < 0 {
                return false;
            }
            let [nx, ny, nz, ext] = ints.map(|v| v as u64);
            let need = nx
                .checked_mul(ny)
                .and_then(|v| v.checked_mul(nz))
                .and_then(|v| v.checked_mul(mode.bytes_per_value() as u64))
                .and_then(|v| v.checked_add(HEADER_LEN as u64 + ext));
            need.is_some_and(|need| need <= file_len)
        };
        let native = cfg!(target_endian = "little");
        let little = match declared {
            Some(l) if sane(l) || !sane(!l) => l,
            Some(l) => !l,
            None if sane(native) || !sane(!native) => native,
            None => !native,
        };
        let w = Words { b: bytes, little };
        let (nx, ny, nz) = (w.i32(0), w.i32(1), w.i32(2));
        if nx <= 0 || ny <= 0 || nz <= 0 {
            return Err(Error::format(
                path,
                format!(
                    "invalid MRC header: sizes must be positive, found nx={nx} ny={ny} nz={nz}"
                ),
            ));
        }
        let code = w.i32(3);
        let mode = MrcMode::from_code(code).ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "unsupported MRC mode {code} (supported: 0 int8, 1 int16, 2 float32, 6 uint16, 12 float16)"
                ),
            )
        })?;
        let nsymbt = w.i32(23);
        if nsymbt < 0 {
            return Err(Error::format(
                path,
                format!("invalid MRC header: negative extended header size NSYMBT={nsymbt}"),
            ));
        }
        let nlabl = w.i32(55);
        let n_labels = nlabl.clamp(0, 10) as usize;
        let labels = bytes[224..]
            .chunks_exact(80)
            .take(n_labels)
            .map(|l| {
                String::from_utf8_lossy(l)
                    .trim_end_matches(['\0', ' '])
                    .to_string()
            })
            .collect();
        Ok(MrcHeader {
            nx: nx as usize,
            ny: ny as usize,
            nz: nz as usize,
            mode,
            nstart: [w.i32(4), w.i32(5), w.i32(6)],
            mx: w.i32(7).max(0) as usize,
            my: w.i32(8).max(0) as usize,
            mz: w.i32(9).max(0) as usize,
            cella: [w.f32(10), w.f32(11), w.f32(12)],
            cellb: [w.f32(13), w.f32(14), w.f32(15)],
            mapcrs: [w.i32(16), w.i32(17), w.i32(18)],
            dmin: w.f32(19),
            dmax: w.f32(20),
            dmean: w.f32(21),
            rms: w.f32(54),
            nsymbt: nsymbt as usize,
            ispg: w.i32(22),
            exttyp: w.bytes(26),
            nversion: w.i32(27),
            origin: [w.f32(49), w.f32(50), w.f32(51)],
            map_id: w.bytes(52),
            machst: stamp,
            nlabl,
            labels,
            little_endian: little,
        })
    }

    /// Encode as 1024 bytes in the header's byte order (`little_endian`). Sizes beyond `i32::MAX`
    /// are an error; at most 10 labels of 80 bytes are kept, `nlabl` is written as stored.
    pub fn to_bytes(&self) -> Result<[u8; HEADER_LEN]> {
        let mut b = [0u8; HEADER_LEN];
        let little = self.little_endian;
        let int = |name: &str, v: usize| {
            i32::try_from(v).map_err(|_| {
                Error::invalid(format!(
                    "MRC header field {name}={v} does not fit in 32 bits"
                ))
            })
        };
        let ints = [
            (0, int("nx", self.nx)?),
            (1, int("ny", self.ny)?),
            (2, int("nz", self.nz)?),
            (3, self.mode.code()),
            (4, self.nstart[0]),
            (5, self.nstart[1]),
            (6, self.nstart[2]),
            (7, int("mx", self.mx)?),
            (8, int("my", self.my)?),
            (9, int("mz", self.mz)?),
            (16, self.mapcrs[0]),
            (17, self.mapcrs[1]),
            (18, self.mapcrs[2]),
            (22, self.ispg),
            (23, int("nsymbt", self.nsymbt)?),
            (27, self.nversion),
            (55, self.nlabl),
        ];
        for (word, v) in ints {
            let bytes = if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            b[4 * word..4 * word + 4].copy_from_slice(&bytes);
        }
        let floats = [
            (10, self.cella[0]),
            (11, self.cella[1]),
            (12, self.cella[2]),
            (13, self.cellb[0]),
            (14, self.cellb[1]),
            (15, self.cellb[2]),
            (19, self.dmin),
            (20, self.dmax),
            (21, self.dmean),
            (49, self.origin[0]),
            (50, self.origin[1]),
            (51, self.origin[2]),
            (54, self.rms),
        ];
        for (word, v) in floats {
            let bytes = if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            b[4 * word..4 * word + 4].copy_from_slice(&bytes);
        }
        b[104..108].copy_from_slice(&self.exttyp);
        b[208..212].copy_from_slice(&self.map_id);
        b[212..216].copy_from_slice(&self.machst);
        for (slot, label) in b[224..].chunks_exact_mut(80).zip(&self.labels) {
            let n = label.len().min(80);
            slot[..n].copy_from_slice(&label.as_bytes()[..n]);
        }
        Ok(b)
    }

    /// Every header field, one per line, for `view-header`.
    pub fn describe(&self) -> String {
        let text4 = |b: &[u8; 4]| {
            if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
                format!("{:?}", String::from_utf8_lossy(b))
            } else {
                format!("{:02x} {:02x} {:02x} {:02x}", b[0], b[1], b[2], b[3])
            }
        };
        let m = &self.machst;
        let mut s = String::new();
        let mut line = |k: &str, v: String| {
            s.push_str(&format!("{k:<26}{v}\n"));
        };
        line("nx, ny, nz", format!("{} {} {}", self.nx, self.ny, self.nz));
        line(
            "mode",
            format!("{} ({})", self.mode.code(), self.mode.name()),
        );
        let [a, b, c] = self.nstart;
        line("nxstart, nystart, nzstart", format!("{a} {b} {c}"));
        line("mx, my, mz", format!("{} {} {}", self.mx, self.my, self.mz));
        let [a, b, c] = self.cella;
        line("cella (Å)", format!("{a} {b} {c}"));
        let [a, b, c] = self.cellb;
        line("cellb (deg)", format!("{a} {b} {c}"));
        let [a, b, c] = self.mapcrs;
        line("mapc, mapr, maps", format!("{a} {b} {c}"));
        line("dmin", format!("{}", self.dmin));
        line("dmax", format!("{}", self.dmax));
        line("dmean", format!("{}", self.dmean));
        line("rms", format!("{}", self.rms));
        line("ispg", format!("{}", self.ispg));
        line("nsymbt", format!("{}", self.nsymbt));
        line("exttyp", text4(&self.exttyp));
        line("nversion", format!("{}", self.nversion));
        let [a, b, c] = self.origin;
        line("origin (Å)", format!("{a} {b} {c}"));
        line("map", text4(&self.map_id));
        line(
            "machst",
            format!(
                "{:02x} {:02x} {:02x} {:02x} ({}-endian)",
                m[0],
                m[1],
                m[2],
                m[3],
                if self.little_endian { "little" } else { "big" }
            ),
        );
        line("nlabl", format!("{}", self.nlabl));
        for (i, l) in self.labels.iter().enumerate() {
            line(&format!("label[{i}]"), l.clone());
        }
        line("apix (Å/pixel, derived)", format!("{}", self.apix()));
        s
    }
}

/// Reads 4-byte words of a header in a given byte order.
struct Words<'a> {
    b: &'a [u8; HEADER_LEN],
    little: bool,
}

impl Words<'_> {
    fn bytes(&self, word: usize) -> [u8; 4] {
        let o = 4 * word;
        [self.b[o], self.b[o + 1], self.b[o + 2], self.b[o + 3]]
    }
    fn i32(&self, word: usize) -> i32 {
        let b = self.bytes(word);
        if self.little {
            i32::from_le_bytes(b)
        } else {
            i32::from_be_bytes(b)
        }
    }
    fn f32(&self, word: usize) -> f32 {
        let b = self.bytes(word);
        if self.little {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        }
    }
}

/// Running statistics of written values (f64 accumulators, merged per slice with Chan et al.'s
/// formula so that the variance stays accurate for large means).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// number of values
    pub n: u64,
    /// minimum (+inf when empty)
    pub min: f64,
    /// maximum (-inf when empty)
    pub max: f64,
    /// mean
    pub mean: f64,
    /// sum of squared deviations from the mean
    pub m2: f64,
}

impl Stats {
    /// No values yet.
    pub fn new() -> Self {
        Stats {
            n: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
        }
    }

    /// Add a slice of finite values.
    pub fn add(&mut self, xs: &[f32]) {
        if xs.is_empty() {
            return;
        }
        let nb = xs.len() as f64;
        let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
        for &x in xs {
            let x = x as f64;
            lo = lo.min(x);
            hi = hi.max(x);
            sum += x;
        }
        let mb = sum / nb;
        let m2b: f64 = xs.iter().map(|&x| (x as f64 - mb).powi(2)).sum();
        let na = self.n as f64;
        let n = na + nb;
        let delta = mb - self.mean;
        self.mean += delta * nb / n;
        self.m2 += m2b + delta * delta * na * nb / n;
        self.n += xs.len() as u64;
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
    }

    /// Population standard deviation (the MRC `rms`).
    pub fn std(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.m2 / self.n as f64).max(0.0).sqrt()
        }
    }

    /// `(dmin, dmax, dmean, rms)` for a header; the MRC2014 "undefined" values when empty.
    fn header_values(&self) -> (f32, f32, f32, f32) {
        if self.n == 0 {
            (0.0, -1.0, -2.0, -1.0)
        } else {
            (
                self.min as f32,
                self.max as f32,
                self.mean as f32,
                self.std() as f32,
            )
        }
    }
}

/// An open MRC/MRCS file, memory-mapped; images are decoded to f32 on request.
#[derive(Debug)]
pub struct MrcFile {
    /// the file
    pub path: PathBuf,
    /// its header
    pub header: MrcHeader,
    mmap: Mmap,
    /// byte offset of the first value (1024 + nsymbt)
    data_offset: usize,
    /// bytes per section (nx * ny * bytes per value)
    section_bytes: usize,
}

impl MrcFile {
    /// Open and validate (magic-free MRC: checks mode, sizes, that data is at least as long as the header claims).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        if len < HEADER_LEN as u64 {
            return Err(Error::format(
                path,
                format!("truncated: header needs {HEADER_LEN} bytes, file has {len}"),
            ));
        }
        // SAFETY: the map is read-only and this crate never modifies a file in place (writes go to a
        // temporary file that is renamed over the destination, which leaves mapped inodes intact).
        // Another process truncating the file while it is mapped could still fault; that is the
        // accepted risk of memory-mapping, shared with every mmap-based reader.
        let mmap = unsafe { Mmap::map(&file) }.at(path)?;
        let mut head = [0u8; HEADER_LEN];
        let first = mmap.get(..HEADER_LEN).ok_or_else(|| {
            Error::format(
                path,
                format!("truncated: header needs {HEADER_LEN} bytes, file has {len}"),
            )
        })?;
        head.copy_from_slice(first);
        let header = MrcHeader::parse(&head, len, path)?;

        let too_big = || {
            Error::format(
                path,
                format!(
                    "invalid MRC header: nx={} ny={} nz={} nsymbt={} give a size that overflows",
                    header.nx, header.ny, header.nz, header.nsymbt
                ),
            )
        };
        let section_bytes = header
            .nx
            .checked_mul(header.ny)
            .and_then(|v| v.checked_mul(header.mode.bytes_per_value()))
            .ok_or_else(too_big)?;
        let data_offset = HEADER_LEN.checked_add(header.nsymbt).ok_or_else(too_big)?;
        let expected = section_bytes
            .checked_mul(header.nz)
            .and_then(|v| v.checked_add(data_offset))
            .ok_or_else(too_big)?;
        if (mmap.len() as u64) < expected as u64 {
            return Err(Error::format(
                path,
                format!(
                    "data shorter than the header claims: expected {expected} bytes, found {} \
                     ({}x{}x{} {} values after {} bytes of header and extended header)",
                    mmap.len(),
                    header.nx,
                    header.ny,
                    header.nz,
                    header.mode.name(),
                    data_offset
                ),
            ));
        }
        Ok(MrcFile {
            path: path.to_path_buf(),
            header,
            mmap,
            data_offset,
            section_bytes,
        })
    }

    /// Number of sections (images in a stack, slices of a volume).
    pub fn n_images(&self) -> usize {
        self.header.nz
    }

    /// Values per image (nx * ny).
    pub fn image_len(&self) -> usize {
        self.header.nx * self.header.ny
    }

    /// Image `i` (ny×nx, row-major) as f32; errors if out of range or the image contains NaN/Inf.
    pub fn image(&self, i: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; self.image_len()];
        self.read_image_into(i, &mut out)?;
        Ok(out)
    }

    /// Decode image `i` into `out` (len nx*ny).
    pub fn read_image_into(&self, i: usize, out: &mut [f32]) -> Result<()> {
        let h = &self.header;
        if i >= h.nz {
            return Err(Error::invalid(format!(
                "{}: image index {i} out of range (the file has {} images)",
                self.path.display(),
                h.nz
            )));
        }
        if out.len() != self.image_len() {
            return Err(Error::Shape {
                what: format!("output buffer for image {i} of {}", self.path.display()),
                expected: format!("{} values ({}x{})", self.image_len(), h.ny, h.nx),
                got: format!("{}", out.len()),
            });
        }
        let start = self.data_offset + i * self.section_bytes;
        let bytes = self
            .mmap
            .get(start..start + self.section_bytes)
            .ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!("image {i} lies beyond the end of the file"),
                )
            })?;
        decode(bytes, h.mode, h.little_endian, out);
        if h.mode.is_float() {
            if let Some(p) = out.iter().position(|v| !v.is_finite()) {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "image {i} has a non-finite value {} at pixel {p} (row {}, column {})",
                        out[p],
                        p / h.nx,
                        p % h.nx
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Decode images `start..start + out.len() / (nx*ny)` into `out` (in parallel).
    pub fn read_images_into(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let n = self.image_len();
        if !out.len().is_multiple_of(n) {
            return Err(Error::Shape {
                what: format!("output buffer for images of {}", self.path.display()),
                expected: format!("a multiple of {n} values"),
                got: format!("{}", out.len()),
            });
        }
        out.par_chunks_mut(n)
            .enumerate()
            .try_for_each(|(k, chunk)| self.read_image_into(start + k, chunk))
    }

    /// All sections (nz×ny×nx) as f32.
    pub fn read_all(&self) -> Result<Vec<f32>> {
        let total = self.image_len() * self.n_images();
        let mut out = vec![0.0f32; total];
        self.read_images_into(0, &mut out)?;
        Ok(out)
    }
}

/// The cubic volume at `path`: its (d, d, d) values (z, y, x), d and the header's pixel size;
/// another shape is an error naming the file.
pub fn read_cube(path: impl AsRef<Path>) -> Result<(Vec<f32>, usize, f32)> {
    let path = path.as_ref();
    let f = MrcFile::open(path)?;
    let h = &f.header;
    if h.nx != h.ny || h.ny != h.nz {
        return Err(Error::format(
            path,
            format!("not a cubic volume ({}×{}×{})", h.nx, h.ny, h.nz),
        ));
    }
    Ok((f.read_all()?, h.nx, h.apix()))
}

/// Decode `bytes` (exactly `out.len()` values of `mode`) into `out`.
fn decode(bytes: &[u8], mode: MrcMode, little: bool, out: &mut [f32]) {
    match mode {
        MrcMode::I8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = b as i8 as f32;
            }
        }
        MrcMode::I16 => decode_words(bytes, out, |b: [u8; 2]| {
            (if little {
                i16::from_le_bytes(b)
            } else {
                i16::from_be_bytes(b)
            }) as f32
        }),
        MrcMode::U16 => decode_words(bytes, out, |b: [u8; 2]| {
            (if little {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            }) as f32
        }),
        MrcMode::F16 => decode_words(bytes, out, |b: [u8; 2]| {
            if little {
                half::f16::from_le_bytes(b)
            } else {
                half::f16::from_be_bytes(b)
            }
            .to_f32()
        }),
        MrcMode::F32 => {
            if little {
                decode_words(bytes, out, f32::from_le_bytes)
            } else {
                decode_words(bytes, out, f32::from_be_bytes)
            }
        }
    }
}

/// Decode fixed-size words: `bytes` viewed as `[u8; N]` (alignment 1, so any offset works).
fn decode_words<const N: usize>(bytes: &[u8], out: &mut [f32], f: impl Fn([u8; N]) -> f32)
where
    [u8; N]: bytemuck::Pod,
{
    // `bytes` holds exactly `out.len()` words (checked by the caller), so the prefix is all of it.
    let whole = bytes.len() / N * N;
    let words: &[[u8; N]] = bytemuck::cast_slice(&bytes[..whole]);
    for (o, w) in out.iter_mut().zip(words) {
        *o = f(*w);
    }
}

/// Stream `data` (finite f32 values) to `w` in little-endian, accumulating `stats`. `path` names the
/// output in errors; `first` is the index of `data[0]` in the whole file (for error messages).
fn write_values<W: Write>(
    w: &mut W,
    data: &[f32],
    stats: &mut Stats,
    path: &Path,
    first: usize,
) -> Result<()> {
    const CHUNK: usize = 1 << 16;
    let mut buf: Vec<u8> = Vec::with_capacity(4 * CHUNK.min(data.len()));
    for (c, chunk) in data.chunks(CHUNK).enumerate() {
        if let Some(p) = chunk.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "{}: refusing to write non-finite value {} at index {}",
                path.display(),
                chunk[p],
                first + c * CHUNK + p
            )));
        }
        stats.add(chunk);
        if cfg!(target_endian = "little") {
            w.write_all(bytemuck::cast_slice(chunk)).at(path)?;
        } else {
            buf.clear();
            for v in chunk {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf).at(path)?;
        }
    }
    Ok(())
}

fn check_apix(apix: f32) -> Result<()> {
    if apix.is_finite() && apix > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "pixel size must be positive and finite, got {apix}"
        )))
    }
}

/// Write a stack (`is_vol = false`, ispg 0) or volume (`is_vol = true`, ispg 1) as mode-2 f32
/// with a complete header (cell from `apix`, min/max/mean/rms, `MAP `, machine stamp), atomically.
/// `data` is nz×ny×nx row-major and `shape` is `(nz, ny, nx)`; as in the reference, `mz = nz`
/// for both. Non-finite values are an error (and leave any earlier file at `path` untouched).
pub fn write_mrc(
    path: impl AsRef<Path>,
    data: &[f32],
    shape: (usize, usize, usize),
    apix: f32,
    is_vol: bool,
) -> Result<()> {
    write_mrc_at(path, data, shape, apix, is_vol, [0.0; 3])
}

/// [`write_mrc`] with the header's origin (Å, x y z): a cropped volume keeps the place of its box
/// in the uncropped one.
pub fn write_mrc_at(
    path: impl AsRef<Path>,
    data: &[f32],
    shape: (usize, usize, usize),
    apix: f32,
    is_vol: bool,
    origin: [f32; 3],
) -> Result<()> {
    let path = path.as_ref();
    let (nz, ny, nx) = shape;
    check_apix(apix)?;
    let n = nz.checked_mul(ny).and_then(|v| v.checked_mul(nx));
    if n != Some(data.len()) || data.is_empty() {
        return Err(Error::Shape {
            what: format!("data for {}", path.display()),
            expected: format!("{nz}x{ny}x{nx} values (all sizes positive)"),
            got: format!("{}", data.len()),
        });
    }
    crate::io::atomic::write_atomic(path, |w| {
        w.write_all(&[0u8; HEADER_LEN]).at(path)?;
        let mut stats = Stats::new();
        write_values(w, data, &mut stats, path, 0)?;
        let mut header = MrcHeader::new_f32(shape, apix, is_vol, &stats);
        header.origin = origin;
        let header = header.to_bytes()?;
        w.seek(SeekFrom::Start(0)).at(path)?;
        w.write_all(&header).at(path)
    })
}

/// Streaming writer for stacks too large for memory: images are appended, statistics accumulated,
/// the header is written at `finish`, and the file renamed into place (atomic). Dropping the
/// writer without `finish` removes the temporary file.
pub struct MrcStackWriter {
    path: PathBuf,
    tmp: PathBuf,
    w: Option<BufWriter<File>>,
    n: usize,
    ny: usize,
    nx: usize,
    apix: f32,
    written: usize,
    stats: Stats,
    /// set when a write failed part-way: the file contents are unknown, `finish` must fail
    failed: bool,
}

impl MrcStackWriter {
    /// Start a stack of `n` images of ny×nx at `apix`.
    pub fn create(
        path: impl AsRef<Path>,
        n: usize,
        ny: usize,
        nx: usize,
        apix: f32,
    ) -> Result<Self> {
        let path = path.as_ref();
        check_apix(apix)?;
        if n == 0 || ny == 0 || nx == 0 {
            return Err(Error::invalid(format!(
                "{}: stack sizes must be positive, got {n} images of {ny}x{nx}",
                path.display()
            )));
        }
        let tmp = tmp_path(path);
        let file = File::create(&tmp).at(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        if let Err(e) = w.write_all(&[0u8; HEADER_LEN]) {
            drop(w);
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        Ok(MrcStackWriter {
            path: path.to_path_buf(),
            tmp,
            w: Some(w),
            n,
            ny,
            nx,
            apix,
            written: 0,
            stats: Stats::new(),
            failed: false,
        })
    }

    /// Append images (a multiple of ny*nx values).
    pub fn write_images(&mut self, data: &[f32]) -> Result<()> {
        let per = self.ny * self.nx;
        let k = data.len() / per;
        if !data.len().is_multiple_of(per) || self.written + k > self.n {
            return Err(Error::Shape {
                what: format!("images appended to {}", self.path.display()),
                expected: format!(
                    "a multiple of {per} values ({}x{}), at most {} more images",
                    self.ny,
                    self.nx,
                    self.n - self.written
                ),
                got: format!("{} values", data.len()),
            });
        }
        let w = match (&mut self.w, self.failed) {
            (Some(w), false) => w,
            _ => {
                return Err(Error::invalid(format!(
                    "{}: an earlier write to this stack failed",
                    self.path.display()
                )))
            }
        };
        let first = self.written * per;
        let res = write_values(w, data, &mut self.stats, &self.tmp, first);
        if res.is_err() {
            self.failed = true;
        } else {
            self.written += k;
        }
        res
    }

    /// Write the header and move the file into place; errors if fewer than `n` images were written.
    pub fn finish(mut self) -> Result<()> {
        if self.failed {
            return Err(Error::invalid(format!(
                "{}: an earlier write to this stack failed; nothing was written",
                self.path.display()
            )));
        }
        if self.written != self.n {
            return Err(Error::invalid(format!(
                "{}: stack declared {} images but {} were written; nothing was written",
                self.path.display(),
                self.n,
                self.written
            )));
        }
        let Some(mut w) = self.w.take() else {
            return Err(Error::invalid(format!(
                "{}: stack writer already closed",
                self.path.display()
            )));
        };
        let tmp = self.tmp.clone();
        let header = MrcHeader::new_f32((self.n, self.ny, self.nx), self.apix, false, &self.stats)
            .to_bytes()?;
        let res = w
            .seek(SeekFrom::Start(0))
            .and_then(|_| w.write_all(&header))
            .and_then(|()| w.flush())
            .and_then(|()| w.get_ref().sync_data())
            .at(&tmp);
        drop(w);
        // On error `self` is dropped here and `Drop` removes the temporary file.
        res?;
        std::fs::rename(&tmp, &self.path).at(&self.path)?;
        self.tmp = PathBuf::new(); // renamed: nothing left for Drop to remove
        Ok(())
    }
}

impl Drop for MrcStackWriter {
    fn drop(&mut self) {
        drop(self.w.take());
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_two_pass() {
        // values with a large mean, where sum-of-squares would lose precision in f32
        let xs: Vec<f32> = (0..10_000).map(|i| 1.0e4 + (i % 7) as f32 * 0.25).collect();
        let mut s = Stats::new();
        for c in xs.chunks(333) {
            s.add(c);
        }
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert_eq!(s.n, 10_000);
        assert!((s.mean - mean).abs() < 1e-9, "{} vs {mean}", s.mean);
        assert!(
            (s.std() - var.sqrt()).abs() < 1e-9,
            "{} vs {}",
            s.std(),
            var.sqrt()
        );
        assert_eq!(s.min, 1.0e4);
        assert_eq!(s.max, 1.0e4 + 1.5);
    }

    #[test]
    fn header_roundtrips_through_bytes_both_orders() {
        let mut s = Stats::new();
        s.add(&[1.0, -2.0, 3.5]);
        for little in [true, false] {
            let mut h = MrcHeader::new_f32((5, 6, 7), 1.5, true, &s);
            h.little_endian = little;
            h.machst = if little { MACHST_LITTLE } else { MACHST_BIG };
            h.nsymbt = 160;
            h.exttyp = *b"FEI1";
            h.origin = [1.0, 2.0, -3.0];
            let b = h.to_bytes().unwrap();
            let back = MrcHeader::parse(&b, 1 << 20, Path::new("x.mrc")).unwrap();
            assert_eq!(back, h);
            assert_eq!(back.apix(), 1.5);
        }
    }

    #[test]
    fn garbage_stamp_falls_back_to_sane_order() {
        let h = MrcHeader::new_f32((3, 4, 5), 1.0, false, &Stats::new());
        for little in [true, false] {
            let mut h = h.clone();
            h.little_endian = little;
            h.machst = [0, 0, 0, 0];
            let b = h.to_bytes().unwrap();
            let back = MrcHeader::parse(&b, 1 << 20, Path::new("x.mrc")).unwrap();
            assert_eq!(back.little_endian, little);
            assert_eq!((back.nz, back.ny, back.nx), (3, 4, 5));
        }
        // a stamp that contradicts the data is overridden when only the other order is sane
        let mut h = h.clone();
        h.little_endian = false;
        h.machst = MACHST_LITTLE;
        let back = MrcHeader::parse(&h.to_bytes().unwrap(), 1 << 20, Path::new("x.mrc")).unwrap();
        assert!(!back.little_endian);
    }

    #[test]
    fn describe_lists_every_field() {
        let h = MrcHeader::new_f32((3, 4, 5), 2.0, true, &Stats::new());
        let d = h.describe();
        for key in [
            "nx, ny, nz",
            "mode",
            "nxstart",
            "mx, my, mz",
            "cella",
            "cellb",
            "mapc",
            "dmin",
            "dmax",
            "dmean",
            "rms",
            "ispg",
            "nsymbt",
            "exttyp",
            "nversion",
            "origin",
            "map ",
            "machst",
            "nlabl",
            "label[0]",
            "apix",
        ] {
            assert!(d.contains(key), "missing {key} in\n{d}");
        }
        assert!(d.contains("\"MAP \""), "{d}");
        assert!(d.contains("5 4 3"), "{d}");
    }

    #[test]
    fn apix_falls_back_to_one() {
        let mut h = MrcHeader::new_f32((2, 2, 2), 3.0, true, &Stats::new());
        assert_eq!(h.apix(), 3.0);
        h.cella = [0.0; 3];
        assert_eq!(h.apix(), 1.0);
        h.cella = [6.0; 3];
        h.mx = 0;
        assert_eq!(h.apix(), 1.0);
    }
}
