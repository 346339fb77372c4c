//! numpy `.npy` / `.npz` read and write, including structured (record) dtypes as used by cryoSPARC `.cs` files.
//!
//! Format (numpy's `numpy/lib/format.py`): the magic `\x93NUMPY`, a major and a minor version byte,
//! a header length (`u16` little-endian for v1, `u32` for v2/v3), then a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` (latin-1 for v1/v2, UTF-8 for v3),
//! then the raw element bytes. A structured dtype's `descr` is a list of `(name, format[, shape])`
//! tuples whose `format` may itself be such a list; nested names are joined with `/`.
//!
//! Numeric element types are converted to the nearest [`ArrayData`] type: `f2`/`f4` → `F32`,
//! `f8` → `F64`, `i1`/`i2`/`i4`/`u2` → `I32`, `i8`/`u4`/`u8` → `I64` (a `u8` value above
//! `i64::MAX` is an error), `u1` → `U8`, `b1` → `Bool`; both byte orders are accepted.
//! Every length read from a file is checked against the bytes actually present before anything is
//! allocated, so malformed files give [`Error::Format`] and never a panic or a huge allocation.

use crate::error::{Error, IoContext, Result};
use crate::io::array::{ArrayData, NdArray};
use crate::io::atomic::{write_atomic, write_bytes_atomic};
use std::io::{Read, Write};
use std::path::Path;

/// One field of a structured dtype: name (nested names joined with `/` as cryoSPARC writes them),
/// its scalar dtype string (e.g. `<f4`, `|S64`), sub-array shape, and byte offset within a record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordField {
    /// Field name; nested sub-dtype names are joined with `/`.
    pub name: String,
    /// Scalar dtype string as written in the file (`<f4`, `>i8`, `|S89`, `<U10`).
    pub descr: String,
    /// Sub-array shape of the field (empty for a scalar field).
    pub shape: Vec<usize>,
    /// Byte offset of the field within one record.
    pub offset: usize,
}

/// A 1-D structured array: `n` records of `itemsize` bytes, raw little/big-endian bytes kept as read.
#[derive(Debug, Clone)]
pub struct RecordArray {
    /// Number of records (the product of the file's shape, records in C order).
    pub n: usize,
    /// Bytes per record.
    pub itemsize: usize,
    /// Named fields in file order (padding fields with empty names are dropped).
    pub fields: Vec<RecordField>,
    /// `n * itemsize` raw bytes.
    pub data: Vec<u8>,
}

/// The pseudo-path used in errors from [`RecordArray`] methods, which do not know their file.
const RECORDS_PATH: &str = "structured array";

impl RecordArray {
    /// The field called `name`, if any.
    pub fn field(&self, name: &str) -> Option<&RecordField> {
        self.fields.iter().find(|f| f.name == name)
    }

    fn field_or_err(&self, name: &str) -> Result<&RecordField> {
        self.field(name).ok_or_else(|| Error::MissingColumn {
            path: RECORDS_PATH.into(),
            column: name.to_string(),
            available: self.names(),
        })
    }

    /// Gather the raw bytes of one field, record after record: `n * prod(shape) * elem_size` bytes.
    fn gather(&self, f: &RecordField, elem_size: usize) -> Result<(Vec<u8>, usize)> {
        let bad = || {
            Error::format(
                RECORDS_PATH,
                format!("field `{}` lies outside the record", f.name),
            )
        };
        let per = f
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(bad)?;
        let width = per.checked_mul(elem_size).ok_or_else(bad)?;
        let end = f.offset.checked_add(width).ok_or_else(bad)?;
        if end > self.itemsize || self.data.len() != self.n.saturating_mul(self.itemsize) {
            return Err(bad());
        }
        let mut out = Vec::with_capacity(self.n.saturating_mul(width));
        if width > 0 {
            for rec in self.data.chunks_exact(self.itemsize) {
                out.extend_from_slice(rec.get(f.offset..end).ok_or_else(bad)?);
            }
        }
        Ok((out, per))
    }

    /// A numeric field as an array of shape `(n, *field.shape)` (converted to native numeric types).
    pub fn column(&self, name: &str) -> Result<NdArray> {
        let f = self.field_or_err(name)?;
        let st = ScalarType::parse(&f.descr).ok_or_else(|| {
            Error::format(
                RECORDS_PATH,
                format!("field `{}` has non-numeric dtype `{}`", f.name, f.descr),
            )
        })?;
        let (raw, _) = self.gather(f, st.itemsize())?;
        let data = st
            .decode(&raw)
            .map_err(|m| Error::format(RECORDS_PATH, format!("field `{}`: {m}", f.name)))?;
        let mut shape = vec![self.n];
        shape.extend_from_slice(&f.shape);
        NdArray::new(shape, data)
    }

    /// An unsigned-integer field (`u1`/`u2`/`u4`/`u8`, e.g. cryoSPARC's 64-bit `uid`) as `u64`s,
    /// `n * prod(field.shape)` values in record order.
    pub fn column_u64(&self, name: &str) -> Result<Vec<u64>> {
        let f = self.field_or_err(name)?;
        let st = ScalarType::parse(&f.descr)
            .filter(|s| matches!(s.kind, Kind::U1 | Kind::U2 | Kind::U4 | Kind::U8))
            .ok_or_else(|| {
                Error::format(
                    RECORDS_PATH,
                    format!(
                        "field `{}` has dtype `{}`, not an unsigned integer",
                        f.name, f.descr
                    ),
                )
            })?;
        let size = st.itemsize();
        let (raw, _) = self.gather(f, size)?;
        Ok(raw
            .chunks_exact(size)
            .map(|c| {
                let mut b = [0u8; 8];
                if st.big_endian {
                    b[8 - size..].copy_from_slice(c);
                    u64::from_be_bytes(b)
                } else {
                    b[..size].copy_from_slice(c);
                    u64::from_le_bytes(b)
                }
            })
            .collect())
    }

    /// A byte-string (`S`) or unicode (`U`) field decoded to Strings (trailing NULs stripped).
    ///
    /// `S` fields must hold UTF-8 (ASCII in practice); a sub-array field gives
    /// `n * prod(field.shape)` strings in record order.
    pub fn column_strings(&self, name: &str) -> Result<Vec<String>> {
        let f = self.field_or_err(name)?;
        let err = |m: String| Error::format(RECORDS_PATH, format!("field `{}`: {m}", f.name));
        let (kind, big_endian, chars) = string_descr(&f.descr).ok_or_else(|| {
            err(format!(
                "dtype `{}` is not a byte or unicode string",
                f.descr
            ))
        })?;
        let elem = if kind == b'S' {
            chars
        } else {
            chars
                .checked_mul(4)
                .ok_or_else(|| err("string too long".into()))?
        };
        let (raw, _) = self.gather(f, elem)?;
        if elem == 0 {
            return Err(err("zero-length string field".into()));
        }
        raw.chunks_exact(elem)
            .map(|c| {
                if kind == b'S' {
                    let end = c.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                    String::from_utf8(c[..end].to_vec())
                        .map_err(|_| err("byte string is not valid UTF-8".into()))
                } else {
                    let mut s = String::new();
                    let cps: Vec<u32> = c
                        .chunks_exact(4)
                        .map(|q| {
                            let q = [q[0], q[1], q[2], q[3]];
                            if big_endian {
                                u32::from_be_bytes(q)
                            } else {
                                u32::from_le_bytes(q)
                            }
                        })
                        .collect();
                    let end = cps.iter().rposition(|&u| u != 0).map_or(0, |p| p + 1);
                    for &u in &cps[..end] {
                        s.push(
                            char::from_u32(u)
                                .ok_or_else(|| err(format!("invalid code point {u:#x}")))?,
                        );
                    }
                    Ok(s)
                }
            })
            .collect()
    }

    /// Field names in order.
    pub fn names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name.clone()).collect()
    }

    /// `n` records with no fields yet (0 bytes each), to be filled with [`RecordArray::set_field`].
    pub fn with_len(n: usize) -> Self {
        RecordArray {
            n,
            itemsize: 0,
            fields: Vec::new(),
            data: Vec::new(),
        }
    }

    /// The records at positions `ind`, in that order (repeats allowed), every field kept byte for
    /// byte. An index `≥ n` is an error.
    pub fn select(&self, ind: &[usize]) -> Result<RecordArray> {
        if let Some(&bad) = ind.iter().find(|&&i| i >= self.n) {
            return Err(Error::invalid(format!(
                "record index {bad} is out of range for {} records",
                self.n
            )));
        }
        let mut data = Vec::with_capacity(ind.len().saturating_mul(self.itemsize));
        for &i in ind {
            let rec = self
                .data
                .get(i * self.itemsize..(i + 1) * self.itemsize)
                .ok_or_else(|| Error::format(RECORDS_PATH, "record data is truncated"))?;
            data.extend_from_slice(rec);
        }
        Ok(RecordArray {
            n: ind.len(),
            itemsize: self.itemsize,
            fields: self.fields.clone(),
            data,
        })
    }

    /// Set field `name` of every record from `bytes` (`n` runs of `width` bytes, record after
    /// record, `width` = the size of `descr` × `prod(shape)`), e.g. `("alignments3D/pose", "<f4", [3])`.
    ///
    /// A field of that name with the same dtype string and shape is overwritten in place; one with
    /// another dtype or shape is unnamed (its bytes stay as padding) and the new field is appended at
    /// the end of each record, as is a field not present before.
    pub fn set_field(
        &mut self,
        name: &str,
        descr: &str,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<()> {
        let bad = |m: String| Error::invalid(format!("field `{name}`: {m}"));
        let elem =
            field_itemsize(descr).ok_or_else(|| bad(format!("unsupported dtype `{descr}`")))?;
        let width = shape_len(shape)
            .and_then(|c| c.checked_mul(elem))
            .ok_or_else(|| bad("sub-array shape overflows".into()))?;
        if name.is_empty() || width == 0 {
            return Err(bad("a field needs a name and at least one byte".into()));
        }
        if bytes.len() != self.n.saturating_mul(width) {
            return Err(bad(format!(
                "{} bytes for {} records of {width} bytes",
                bytes.len(),
                self.n
            )));
        }
        if let Some(k) = self.fields.iter().position(|f| f.name == name) {
            let f = &self.fields[k];
            if f.descr == descr && f.shape == shape {
                let off = f.offset;
                for (rec, src) in self
                    .data
                    .chunks_exact_mut(self.itemsize)
                    .zip(bytes.chunks_exact(width))
                {
                    rec[off..off + width].copy_from_slice(src);
                }
                return Ok(());
            }
            self.fields.remove(k);
        }
        let old = self.itemsize;
        let itemsize = old
            .checked_add(width)
            .ok_or_else(|| bad("record too large".into()))?;
        let mut data = Vec::with_capacity(self.n.saturating_mul(itemsize));
        for i in 0..self.n {
            data.extend_from_slice(&self.data[i * old..(i + 1) * old]);
            data.extend_from_slice(&bytes[i * width..(i + 1) * width]);
        }
        self.fields.push(RecordField {
            name: name.to_string(),
            descr: descr.to_string(),
            shape: shape.to_vec(),
            offset: old,
        });
        self.itemsize = itemsize;
        self.data = data;
        Ok(())
    }

    /// [`RecordArray::set_field`] with little-endian f32 values (`<f4`), `n · prod(shape)` of them.
    pub fn set_f32(&mut self, name: &str, shape: &[usize], v: &[f32]) -> Result<()> {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.set_field(name, "<f4", shape, &b)
    }

    /// [`RecordArray::set_field`] with little-endian u32 values (`<u4`), `n · prod(shape)` of them.
    pub fn set_u32(&mut self, name: &str, shape: &[usize], v: &[u32]) -> Result<()> {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.set_field(name, "<u4", shape, &b)
    }

    /// [`RecordArray::set_field`] with little-endian u64 values (`<u8`), one per record.
    pub fn set_u64(&mut self, name: &str, v: &[u64]) -> Result<()> {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.set_field(name, "<u8", &[], &b)
    }

    /// [`RecordArray::set_field`] with one byte string per record, as a `|S{w}` field with `w` the
    /// longest string's length (at least 1; shorter strings are NUL-padded, as numpy stores them).
    pub fn set_bytes(&mut self, name: &str, v: &[String]) -> Result<()> {
        let w = v.iter().map(String::len).max().unwrap_or(0).max(1);
        let mut b = Vec::with_capacity(v.len() * w);
        for s in v {
            b.extend_from_slice(s.as_bytes());
            b.resize(b.len() + w - s.len(), 0);
        }
        self.set_field(name, &format!("|S{w}"), &[], &b)
    }
}

/// What an .npy file holds.
#[derive(Debug, Clone)]
pub enum Npy {
    /// A plain numeric array (converted to C order).
    Plain(NdArray),
    /// A structured (record) array.
    Records(RecordArray),
}

// ---------------------------------------------------------------------------------------------
// Scalar dtypes shared with the pickle reader.

/// A numeric element kind: `f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    F2,
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    B1,
}

/// A numeric numpy dtype with its byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScalarType {
    pub(crate) kind: Kind,
    pub(crate) big_endian: bool,
}

impl ScalarType {
    /// Parse a numpy type string: optional byte order (`<`, `>`, `|`, `=`), then kind and size
    /// (`f4`, `i8`, `u1`, `b1`, ...). `None` for anything else.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (order, rest) = match s.as_bytes().first()? {
            b'<' | b'>' | b'|' | b'=' => (Some(s.as_bytes()[0]), &s[1..]),
            _ => (None, s),
        };
        let kind = Kind::parse(rest)?;
        let big_endian = match order {
            Some(b'>') => true,
            Some(b'<') => false,
            // `|` (not applicable), `=` and none mean native.
            _ => cfg!(target_endian = "big"),
        };
        Some(ScalarType { kind, big_endian })
    }

    /// Bytes per element.
    pub(crate) fn itemsize(&self) -> usize {
        self.kind.size()
    }

    /// Decode `bytes` (a whole number of elements) into the matching [`ArrayData`].
    pub(crate) fn decode(&self, bytes: &[u8]) -> std::result::Result<ArrayData, String> {
        let size = self.itemsize();
        if !bytes.len().is_multiple_of(size) {
            return Err(format!(
                "{} bytes is not a whole number of {size}-byte elements",
                bytes.len()
            ));
        }
        let be = self.big_endian;
        macro_rules! conv {
            ($t:ty, $n:expr) => {
                bytes.chunks_exact($n).map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    if be {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                })
            };
        }
        Ok(match self.kind {
            Kind::F2 => ArrayData::F32(
                conv!(u16, 2)
                    .map(|b| half::f16::from_bits(b).to_f32())
                    .collect(),
            ),
            Kind::F4 => ArrayData::F32(conv!(f32, 4).collect()),
            Kind::F8 => ArrayData::F64(conv!(f64, 8).collect()),
            Kind::I1 => ArrayData::I32(bytes.iter().map(|&b| b as i8 as i32).collect()),
            Kind::I2 => ArrayData::I32(conv!(i16, 2).map(i32::from).collect()),
            Kind::I4 => ArrayData::I32(conv!(i32, 4).collect()),
            Kind::I8 => ArrayData::I64(conv!(i64, 8).collect()),
            Kind::U1 => ArrayData::U8(bytes.to_vec()),
            Kind::U2 => ArrayData::I32(conv!(u16, 2).map(i32::from).collect()),
            Kind::U4 => ArrayData::I64(conv!(u32, 4).map(i64::from).collect()),
            Kind::U8 => ArrayData::I64(
                conv!(u64, 8)
                    .map(|u| {
                        i64::try_from(u)
                            .map_err(|_| format!("uint64 value {u} does not fit in int64"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            ),
            Kind::B1 => ArrayData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        })
    }
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "f2" | "e" => Kind::F2,
            "f4" | "f" => Kind::F4,
            "f8" | "d" => Kind::F8,
            "i1" | "b" => Kind::I1,
            "i2" | "h" => Kind::I2,
            "i4" | "i" => Kind::I4,
            "i8" | "q" => Kind::I8,
            "u1" | "B" => Kind::U1,
            "u2" | "H" => Kind::U2,
            "u4" | "I" => Kind::U4,
            "u8" | "Q" => Kind::U8,
            "b1" | "?" => Kind::B1,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Kind::I1 | Kind::U1 | Kind::B1 => 1,
            Kind::F2 | Kind::I2 | Kind::U2 => 2,
            Kind::F4 | Kind::I4 | Kind::U4 => 4,
            Kind::F8 | Kind::I8 | Kind::U8 => 8,
        }
    }
}

/// `(b'S' | b'U', big_endian, length in characters)` for `|S89`, `<U10`, `S5`, ...
fn string_descr(s: &str) -> Option<(u8, bool, usize)> {
    let b = s.as_bytes();
    let (big, rest) = match b.first()? {
        b'<' | b'|' | b'=' => (false, &s[1..]),
        b'>' => (true, &s[1..]),
        _ => (false, s),
    };
    let kind = *rest.as_bytes().first()?;
    if kind != b'S' && kind != b'U' {
        return None;
    }
    let n = rest[1..].parse::<usize>().ok()?;
    Some((kind, big, n))
}

/// Size in bytes of any field dtype string: numeric, `S`, `U` or `V` (void/padding).
fn field_itemsize(s: &str) -> Option<usize> {
    if let Some(st) = ScalarType::parse(s) {
        return Some(st.itemsize());
    }
    if let Some((kind, _, n)) = string_descr(s) {
        return if kind == b'S' {
            Some(n)
        } else {
            n.checked_mul(4)
        };
    }
    let rest = s.strip_prefix(['|', '<', '>', '=']).unwrap_or(s);
    rest.strip_prefix('V')?.parse::<usize>().ok()
}

/// Product of a shape, `None` on overflow.
pub(crate) fn shape_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Reorder Fortran-ordered (column-major) elements of `shape` into C (row-major) order.
pub(crate) fn fortran_to_c(data: ArrayData, shape: &[usize]) -> ArrayData {
    fn go<T: Copy>(src: &[T], shape: &[usize]) -> Vec<T> {
        if shape.len() <= 1 || src.is_empty() {
            return src.to_vec();
        }
        // Fortran strides (in elements): stride[k] = prod(shape[..k]).
        let mut stride = Vec::with_capacity(shape.len());
        let mut acc = 1usize;
        for &d in shape {
            stride.push(acc);
            acc = acc.saturating_mul(d);
        }
        let mut out = Vec::with_capacity(src.len());
        let mut idx = vec![0usize; shape.len()];
        let mut off = 0usize;
        for _ in 0..src.len() {
            // `off` is the Fortran offset of `idx`, always < src.len().
            if let Some(&x) = src.get(off) {
                out.push(x);
            }
            // Odometer increment of the C-order multi-index, last axis fastest.
            for k in (0..shape.len()).rev() {
                idx[k] += 1;
                off += stride[k];
                if idx[k] < shape[k] {
                    break;
                }
                off -= stride[k] * shape[k];
                idx[k] = 0;
            }
        }
        out
    }
    match data {
        ArrayData::F32(v) => ArrayData::F32(go(&v, shape)),
        ArrayData::F64(v) => ArrayData::F64(go(&v, shape)),
        ArrayData::I32(v) => ArrayData::I32(go(&v, shape)),
        ArrayData::I64(v) => ArrayData::I64(go(&v, shape)),
        ArrayData::U8(v) => ArrayData::U8(go(&v, shape)),
        ArrayData::Bool(v) => ArrayData::Bool(go(&v, shape)),
    }
}

/// Little-endian bytes of an array's elements, C order (bool as 0/1).
pub(crate) fn data_le_bytes(d: &ArrayData) -> Vec<u8> {
    match d {
        ArrayData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ArrayData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ArrayData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ArrayData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ArrayData::U8(v) => v.clone(),
        ArrayData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// The header: a tiny parser for the Python literals numpy writes.

/// A Python literal from an .npy header.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

/// Deepest nesting accepted in a header literal (cryoSPARC nests two or three levels).
const MAX_LIT_DEPTH: usize = 32;

struct LitParser<'a> {
    s: &'a [char],
    pos: usize,
}

impl LitParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected `{c}` at character {} of the header",
                self.pos
            ))
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Lit, String> {
        if depth > MAX_LIT_DEPTH {
            return Err("header nests too deeply".into());
        }
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some('}') {
                        self.pos += 1;
                        return Ok(Lit::Dict(items));
                    }
                    let k = self.value(depth + 1)?;
                    self.expect(':')?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    match self.peek() {
                        Some(',') => self.pos += 1,
                        Some('}') => {}
                        _ => return Err(format!("expected `,` or `}}` at character {}", self.pos)),
                    }
                }
            }
            Some(open @ ('(' | '[')) => {
                self.pos += 1;
                let close = if open == '(' { ')' } else { ']' };
                let mut items = Vec::new();
                let mut trailing_comma = false;
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        // `(x)` is just x in Python; `(x,)` is a tuple.
                        if open == '(' && items.len() == 1 && !trailing_comma {
                            return Ok(items.swap_remove(0));
                        }
                        return Ok(if open == '(' {
                            Lit::Tuple(items)
                        } else {
                            Lit::List(items)
                        });
                    }
                    items.push(self.value(depth + 1)?);
                    trailing_comma = false;
                    match self.peek() {
                        Some(',') => {
                            self.pos += 1;
                            trailing_comma = true;
                        }
                        Some(c) if c == close => {}
                        _ => {
                            return Err(format!(
                                "expected `,` or `{close}` at character {}",
                                self.pos
                            ))
                        }
                    }
                }
            }
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                let mut out = String::new();
                loop {
                    let c = *self
                        .s
                        .get(self.pos)
                        .ok_or("unterminated string in header")?;
                    self.pos += 1;
                    if c == q {
                        return Ok(Lit::Str(out));
                    }
                    if c != '\\' {
                        out.push(c);
                        continue;
                    }
                    let e = *self
                        .s
                        .get(self.pos)
                        .ok_or("unterminated string in header")?;
                    self.pos += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = self
                                .s
                                .get(self.pos..self.pos + n)
                                .ok_or("bad escape in header")?
                                .iter()
                                .collect();
                            self.pos += n;
                            let cp = u32::from_str_radix(&hex, 16)
                                .map_err(|_| "bad escape in header")?;
                            out.push(char::from_u32(cp).ok_or("bad escape in header")?);
                        }
                        other => out.push(other),
                    }
                }
            }
            Some(c) if c == '-' || c == '+' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self.s.get(self.pos).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let txt: String = self.s[start..self.pos].iter().collect();
                // Python 2 long suffix.
                if self.s.get(self.pos).is_some_and(|&c| c == 'L' || c == 'l') {
                    self.pos += 1;
                }
                txt.parse::<i64>()
                    .map(Lit::Int)
                    .map_err(|_| format!("bad integer `{txt}` in header"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self
                    .s
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.pos += 1;
                }
                let word: String = self.s[start..self.pos].iter().collect();
                match word.as_str() {
                    "True" => Ok(Lit::Bool(true)),
                    "False" => Ok(Lit::Bool(false)),
                    "None" => Ok(Lit::None),
                    _ => Err(format!("unexpected `{word}` in header")),
                }
            }
            Some(c) => Err(format!(
                "unexpected `{c}` at character {} of the header",
                self.pos
            )),
            None => Err("header ends early".into()),
        }
    }
}

fn parse_lit(text: &str) -> std::result::Result<Lit, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = LitParser { s: &chars, pos: 0 };
    let v = p.value(0)?;
    if p.peek().is_some() {
        return Err(format!(
            "unexpected text after the header dict at character {}",
            p.pos
        ));
    }
    Ok(v)
}

/// The parsed header of an .npy file.
struct Header {
    descr: Lit,
    fortran_order: bool,
    shape: Vec<usize>,
    /// Offset of the first data byte.
    data_start: usize,
}

fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let fmt = |m: String| Error::format(path, m);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fmt("not an .npy file (missing the \\x93NUMPY magic)".into()));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| fmt("truncated .npy header".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => {
            return Err(fmt(format!(
                "unsupported .npy format version {v}.{}",
                bytes[7]
            )))
        }
    };
    let data_start = hstart + hlen;
    let raw = bytes.get(hstart..data_start).ok_or_else(|| {
        fmt(format!(
            "truncated .npy header: it claims {hlen} bytes but only {} follow",
            bytes.len() - hstart
        ))
    })?;
    let text: String = if major == 3 {
        std::str::from_utf8(raw)
            .map_err(|_| fmt("v3 header is not UTF-8".into()))?
            .to_string()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    let Lit::Dict(items) = parse_lit(&text).map_err(|m| fmt(format!("bad .npy header: {m}")))?
    else {
        return Err(fmt("bad .npy header: not a dict".into()));
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| *k == Lit::Str(key.into()))
            .map(|(_, v)| v)
            .ok_or_else(|| fmt(format!("bad .npy header: no `{key}` key")))
    };
    let descr = get("descr")?.clone();
    let fortran_order = match get("fortran_order")? {
        Lit::Bool(b) => *b,
        other => return Err(fmt(format!("bad .npy header: fortran_order is {other:?}"))),
    };
    let shape = match get("shape")? {
        Lit::Tuple(v) | Lit::List(v) => v
            .iter()
            .map(|d| match d {
                Lit::Int(i) if *i >= 0 => {
                    usize::try_from(*i).map_err(|_| fmt(format!("bad shape entry {i}")))
                }
                other => Err(fmt(format!("bad .npy header: shape entry {other:?}"))),
            })
            .collect::<Result<Vec<_>>>()?,
        // A bare integer in parentheses, e.g. `(3)`, parses as an int.
        Lit::Int(i) if *i >= 0 => {
            vec![usize::try_from(*i).map_err(|_| fmt(format!("bad shape entry {i}")))?]
        }
        other => return Err(fmt(format!("bad .npy header: shape is {other:?}"))),
    };
    Ok(Header {
        descr,
        fortran_order,
        shape,
        data_start,
    })
}

/// Flatten a structured descr list into fields, returning the total size in bytes.
fn flatten_fields(
    list: &[Lit],
    prefix: &str,
    base: usize,
    out: &mut Vec<RecordField>,
    depth: usize,
) -> std::result::Result<usize, String> {
    if depth > MAX_LIT_DEPTH {
        return Err("structured dtype nests too deeply".into());
    }
    let mut off = 0usize;
    for entry in list {
        let Lit::Tuple(parts) = entry else {
            return Err(format!("structured dtype entry {entry:?} is not a tuple"));
        };
        let (name, fmt, shape) = match parts.as_slice() {
            [n, f] => (n, f, None),
            [n, f, s] => (n, f, Some(s)),
            _ => {
                return Err(format!(
                    "structured dtype entry {entry:?} has {} items",
                    parts.len()
                ))
            }
        };
        let name = match name {
            Lit::Str(s) => s.clone(),
            // (title, name)
            Lit::Tuple(t) => match t.as_slice() {
                [_, Lit::Str(s)] => s.clone(),
                _ => return Err(format!("bad field name {name:?}")),
            },
            _ => return Err(format!("bad field name {name:?}")),
        };
        let shape: Vec<usize> = match shape {
            None => Vec::new(),
            Some(Lit::Int(i)) => {
                vec![usize::try_from(*i).map_err(|_| format!("bad sub-array shape {i}"))?]
            }
            Some(Lit::Tuple(v)) => v
                .iter()
                .map(|d| match d {
                    Lit::Int(i) => {
                        usize::try_from(*i).map_err(|_| format!("bad sub-array shape {i}"))
                    }
                    other => Err(format!("bad sub-array shape entry {other:?}")),
                })
                .collect::<std::result::Result<_, _>>()?,
            Some(other) => return Err(format!("bad sub-array shape {other:?}")),
        };
        let count = shape_len(&shape).ok_or("sub-array shape overflows")?;
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let start = base.checked_add(off).ok_or("record too large")?;
        let size = match fmt {
            Lit::Str(d) => {
                let elem = field_itemsize(d)
                    .ok_or_else(|| format!("field `{full}` has unsupported dtype `{d}`"))?;
                if !name.is_empty() {
                    out.push(RecordField {
                        name: full,
                        descr: d.clone(),
                        shape,
                        offset: start,
                    });
                }
                elem.checked_mul(count).ok_or("record too large")?
            }
            Lit::List(sub) => {
                if !shape.is_empty() {
                    return Err(format!(
                        "field `{full}`: sub-arrays of structured dtypes are not supported"
                    ));
                }
                flatten_fields(sub, &full, start, out, depth + 1)?
            }
            other => return Err(format!("field `{full}` has unsupported dtype {other:?}")),
        };
        off = off.checked_add(size).ok_or("record too large")?;
    }
    Ok(off)
}

/// Parse .npy bytes; `path` is used only in error messages.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<Npy> {
    let h = parse_header(bytes, path)?;
    let fmt = |m: String| Error::format(path, m);
    let data = bytes.get(h.data_start..).unwrap_or(&[]);
    let n = shape_len(&h.shape).ok_or_else(|| fmt(format!("shape {:?} overflows", h.shape)))?;
    let check_len = |itemsize: usize| -> Result<()> {
        // Zero-byte items cannot be checked against the file's size: a header could declare 2^40 of
        // them in 100 bytes, and every layer above would then size its buffers by that count.
        if itemsize == 0 && n > 0 {
            return Err(fmt(format!(
                "shape {:?} of 0-byte items (an empty record dtype): nothing to read",
                h.shape
            )));
        }
        let need = n
            .checked_mul(itemsize)
            .ok_or_else(|| fmt(format!("shape {:?} overflows", h.shape)))?;
        if data.len() != need {
            return Err(fmt(format!(
                "shape {:?} of {itemsize}-byte items needs {need} data bytes, found {}",
                h.shape,
                data.len()
            )));
        }
        Ok(())
    };
    match &h.descr {
        Lit::Str(d) => {
            let st = ScalarType::parse(d).ok_or_else(|| fmt(format!("unsupported dtype `{d}`")))?;
            check_len(st.itemsize())?;
            let mut arr = st.decode(data).map_err(fmt)?;
            if h.fortran_order {
                arr = fortran_to_c(arr, &h.shape);
            }
            Ok(Npy::Plain(NdArray::new(h.shape, arr)?))
        }
        Lit::List(list) => {
            let mut fields = Vec::new();
            let itemsize = flatten_fields(list, "", 0, &mut fields, 0).map_err(fmt)?;
            check_len(itemsize)?;
            let mut raw = data.to_vec();
            if h.fortran_order && h.shape.len() > 1 && itemsize > 0 {
                // Reorder whole records: permute record indices Fortran → C.
                let idx: Vec<i64> = (0..n as i64).collect();
                if let ArrayData::I64(order) = fortran_to_c(ArrayData::I64(idx), &h.shape) {
                    raw = Vec::with_capacity(data.len());
                    for i in order {
                        let s = i as usize * itemsize;
                        raw.extend_from_slice(data.get(s..s + itemsize).unwrap_or(&[]));
                    }
                }
            }
            Ok(Npy::Records(RecordArray {
                n,
                itemsize,
                fields,
                data: raw,
            }))
        }
        other => Err(fmt(format!("unsupported descr {other:?}"))),
    }
}

/// Read a plain (non-structured) .npy array.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NdArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).at(path)?;
    match parse_npy(&bytes, path)? {
        Npy::Plain(a) => Ok(a),
        Npy::Records(_) => Err(Error::format(
            path,
            "holds a structured (record) array; read it with read_records",
        )),
    }
}

/// Read a structured .npy (or cryoSPARC .cs) file.
pub fn read_records(path: impl AsRef<Path>) -> Result<RecordArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).at(path)?;
    match parse_npy(&bytes, path)? {
        Npy::Records(r) => Ok(r),
        Npy::Plain(a) => Err(Error::format(
            path,
            format!(
                "holds a plain {} array, not a structured one",
                a.data.descr()
            ),
        )),
    }
}

/// The header dict text for a plain array, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }`.
fn header_dict(a: &NdArray) -> String {
    let shape = match a.shape.as_slice() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        a.data.descr()
    )
}

/// Serialize a plain array as .npy v1.0 bytes.
///
/// The header is padded with spaces and a newline so that the data starts at a multiple of 64
/// bytes, as numpy does. A header too long for v1.0 (over 65535 bytes, only possible with
/// thousands of dimensions) is written as v2.0.
pub fn npy_bytes(a: &NdArray) -> Vec<u8> {
    npy_with_header(&header_dict(a), &data_le_bytes(&a.data))
}

/// The .npy bytes of a header dict and raw data: magic, version, 64-byte-aligned header, data.
fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let (major, prefix) = if dict.len() + 11 + 64 <= u16::MAX as usize {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let hlen = total - prefix;
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(b"\x93NUMPY");
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

/// A Python string literal of `s` (single-quoted, `\\` and `'` escaped).
fn py_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The numpy `descr` list of a structured array: its fields by offset, each `('name', 'dtype')` or
/// `('name', 'dtype', (shape,))`, with gaps (and the record's tail) filled by `('', '|Vk')` padding
/// as numpy writes non-packed dtypes; nested names stay joined with `/`, as cryoSPARC writes them.
fn records_descr(r: &RecordArray) -> Result<String> {
    let mut fields: Vec<&RecordField> = r.fields.iter().collect();
    fields.sort_by_key(|f| f.offset);
    let mut items = Vec::with_capacity(fields.len());
    let mut at = 0usize;
    for f in fields {
        let size = field_itemsize(&f.descr)
            .and_then(|e| shape_len(&f.shape).and_then(|c| c.checked_mul(e)))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "field `{}`: unsupported dtype `{}`",
                    f.name, f.descr
                ))
            })?;
        if f.offset < at {
            return Err(Error::invalid(format!(
                "field `{}` overlaps the field before it",
                f.name
            )));
        }
        if f.offset > at {
            items.push(format!("('', '|V{}')", f.offset - at));
        }
        let shape = match f.shape.as_slice() {
            [] => String::new(),
            [d] => format!(", ({d},)"),
            s => format!(
                ", ({})",
                s.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        items.push(format!(
            "({}, {}{shape})",
            py_str(&f.name),
            py_str(&f.descr)
        ));
        at = f.offset + size;
    }
    if at > r.itemsize {
        return Err(Error::invalid("a field lies outside the record"));
    }
    if r.itemsize > at {
        items.push(format!("('', '|V{}')", r.itemsize - at));
    }
    if items.is_empty() {
        return Err(Error::invalid(
            "a structured array needs at least one field",
        ));
    }
    Ok(format!("[{}]", items.join(", ")))
}

/// Serialize a structured array as .npy bytes (shape `(n,)`), as `np.save` writes a cryoSPARC `.cs`
/// file; [`read_records`] reads it back field for field.
pub fn records_npy_bytes(r: &RecordArray) -> Result<Vec<u8>> {
    if r.data.len() != r.n.saturating_mul(r.itemsize) {
        return Err(Error::invalid(format!(
            "structured array of {} records of {} bytes holds {} bytes",
            r.n,
            r.itemsize,
            r.data.len()
        )));
    }
    let dict = format!(
        "{{'descr': {}, 'fortran_order': False, 'shape': ({},), }}",
        records_descr(r)?,
        r.n
    );
    Ok(npy_with_header(&dict, &r.data))
}

/// Write a structured array (a cryoSPARC `.cs` file) atomically.
pub fn write_records(path: impl AsRef<Path>, r: &RecordArray) -> Result<()> {
    let path = path.as_ref();
    let bytes = records_npy_bytes(r).map_err(|e| Error::format(path, e.to_string()))?;
    write_bytes_atomic(path, &bytes)
}

/// Write an .npy file atomically.
pub fn write_npy(path: impl AsRef<Path>, a: &NdArray) -> Result<()> {
    write_bytes_atomic(path, &npy_bytes(a))
}

/// Read every array of an .npz archive, in archive order.
///
/// Entries may be stored or deflated (`np.savez` / `np.savez_compressed`); names lose their
/// `.npy` suffix as with `np.load`. Structured arrays and non-`.npy` entries are errors.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, NdArray)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).at(path)?;
    let zerr =
        |e: zip::result::ZipError| Error::format(path, format!("bad .npz (zip) archive: {e}"));
    let mut zipf = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zerr)?;
    let mut out = Vec::new();
    for i in 0..zipf.len() {
        let mut entry = zipf.by_index(i).map_err(zerr)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            return Err(Error::format(
                path,
                format!("entry `{name}` is not an .npy file"),
            ));
        };
        let key = key.to_string();
        let size = entry.size();
        let mut buf = Vec::new();
        // Read at most the declared size; nothing is reserved up front from the declared size.
        (&mut entry)
            .take(size)
            .read_to_end(&mut buf)
            .map_err(|e| Error::format(path, format!("entry `{name}`: {e}")))?;
        let inner = path.join(&name);
        match parse_npy(&buf, &inner)? {
            Npy::Plain(a) => out.push((key, a)),
            Npy::Records(_) => {
                return Err(Error::format(
                    path,
                    format!("entry `{name}` is a structured array"),
                ))
            }
        }
    }
    Ok(out)
}

/// Write an .npz archive atomically (entries stored uncompressed, as `np.savez` does).
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(String, NdArray)]) -> Result<()> {
    let path = path.as_ref();
    let zerr = |e: zip::result::ZipError| Error::format(path, format!("writing .npz: {e}"));
    write_atomic(path, |w| {
        let mut z = zip::ZipWriter::new(w);
        for (name, a) in arrays {
            let bytes = npy_bytes(a);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(bytes.len() as u64 >= u32::MAX as u64);
            z.start_file(format!("{name}.npy"), opts).map_err(zerr)?;
            z.write_all(&bytes).at(path)?;
        }
        z.finish().map_err(zerr)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_parser_handles_numpy_headers() {
        let l = parse_lit("{'descr': [('a', '<f4'), ('b', [('c', '|S3')], ), ('d', '<u4', (2,))], 'fortran_order': False, 'shape': (7,), }").unwrap();
        let Lit::Dict(items) = l else {
            panic!("not a dict")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].1, Lit::Tuple(vec![Lit::Int(7)]));
        assert_eq!(parse_lit("(3)").unwrap(), Lit::Int(3));
        assert_eq!(parse_lit("()").unwrap(), Lit::Tuple(vec![]));
        assert_eq!(parse_lit("'a\\'b'").unwrap(), Lit::Str("a'b".into()));
        assert!(parse_lit("{'a': 1").is_err());
        assert!(parse_lit(
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        )
        .is_err());
    }

    #[test]
    fn structured_offsets_nested_names_and_padding() {
        let l = parse_lit("[('uid', '<u8'), ('blob', [('path', '|S5'), ('idx', '<u4')]), ('', '|V3'), ('pose', '>f4', (3,))]").unwrap();
        let Lit::List(list) = l else { panic!() };
        let mut f = Vec::new();
        let size = flatten_fields(&list, "", 0, &mut f, 0).unwrap();
        assert_eq!(size, 8 + 5 + 4 + 3 + 12);
        let names: Vec<_> = f.iter().map(|x| (x.name.as_str(), x.offset)).collect();
        assert_eq!(
            names,
            [("uid", 0), ("blob/path", 8), ("blob/idx", 13), ("pose", 20)]
        );
        assert_eq!(f[3].shape, vec![3]);
    }

    #[test]
    fn fortran_reorder_matches_transpose() {
        // shape (2,3), Fortran data is column-major: [a00 a10 a01 a11 a02 a12].
        let f = ArrayData::I32(vec![0, 10, 1, 11, 2, 12]);
        assert_eq!(
            fortran_to_c(f, &[2, 3]),
            ArrayData::I32(vec![0, 1, 2, 10, 11, 12])
        );
        // shape (2,2,2): element (i,j,k) at F offset i + 2j + 4k holds value 100i+10j+k.
        let mut src = vec![0i64; 8];
        for i in 0..2 {
            for j in 0..2 {
                for k in 0..2 {
                    src[i + 2 * j + 4 * k] = 100 * i as i64 + 10 * j as i64 + k as i64;
                }
            }
        }
        assert_eq!(
            fortran_to_c(ArrayData::I64(src), &[2, 2, 2]),
            ArrayData::I64(vec![0, 1, 10, 11, 100, 101, 110, 111])
        );
    }

    #[test]
    fn npy_roundtrip_and_alignment() {
        for a in [
            NdArray::from_f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap(),
            NdArray::new(vec![], ArrayData::F64(vec![2.5])).unwrap(),
            NdArray::new(vec![3], ArrayData::Bool(vec![true, false, true])).unwrap(),
            NdArray::new(vec![0, 4], ArrayData::I32(vec![])).unwrap(),
        ] {
            let b = npy_bytes(&a);
            let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            match parse_npy(&b, Path::new("x.npy")).unwrap() {
                Npy::Plain(r) => assert_eq!(r, a),
                Npy::Records(_) => panic!("plain expected"),
            }
        }
    }

    #[test]
    fn records_write_read_select_and_set() {
        let mut r = RecordArray::with_len(3);
        r.set_u64("uid", &[7, 8, u64::MAX]).unwrap();
        r.set_bytes("blob/path", &["a.mrcs".into(), "bb".into(), "it's".into()])
            .unwrap();
        r.set_u32("blob/shape", &[2], &[4, 4, 4, 4, 4, 4]).unwrap();
        r.set_f32(
            "alignments3D/pose",
            &[3],
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        )
        .unwrap();
        // same dtype: overwritten in place; other shape: replaced at the end
        r.set_u32("blob/shape", &[2], &[6, 6, 6, 6, 6, 6]).unwrap();
        r.set_f32("alignments3D/pose", &[], &[1.5, 2.5, 3.5])
            .unwrap();
        assert!(r.set_f32("x", &[], &[1.0]).is_err());
        let bytes = records_npy_bytes(&r).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let Npy::Records(back) = parse_npy(&bytes, Path::new("t.cs")).unwrap() else {
            panic!("records expected")
        };
        assert_eq!(back.itemsize, r.itemsize);
        assert_eq!(
            back.names(),
            ["uid", "blob/path", "blob/shape", "alignments3D/pose"]
        );
        assert_eq!(back.column_u64("uid").unwrap(), [7, 8, u64::MAX]);
        assert_eq!(
            back.column_strings("blob/path").unwrap(),
            ["a.mrcs", "bb", "it's"]
        );
        assert_eq!(back.column("blob/shape").unwrap().to_i64().unwrap(), [6; 6]);
        assert_eq!(
            back.column("alignments3D/pose").unwrap().to_f32(),
            [1.5, 2.5, 3.5]
        );
        let sel = back.select(&[2, 0, 2]).unwrap();
        assert_eq!(sel.column_u64("uid").unwrap(), [u64::MAX, 7, u64::MAX]);
        assert_eq!(sel.data.len(), 3 * back.itemsize);
        assert!(back.select(&[3]).is_err());
    }

    #[test]
    fn truncated_data_is_an_error() {
        let a = NdArray::from_f32(vec![4], vec![1.0; 4]).unwrap();
        let b = npy_bytes(&a);
        let e = parse_npy(&b[..b.len() - 1], Path::new("t.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.npy") && e.contains("16 data bytes"), "{e}");
    }
}
