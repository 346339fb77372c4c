//! A safe reader and writer for the numpy-array pickles cryoDRGN writes. It never executes anything.
//!
//! cryoDRGN stores its metadata with `pickle.dump`: `pose.pkl` is a tuple `(rot (N,3,3) f32,
//! trans (N,2))`, `ctf.pkl` an `(N,9)` f32 array, `z.N.pkl` two pickles back to back, index files
//! int64 arrays. The reader here is a purpose-built pickle virtual machine for protocols 0–5 that
//! knows only plain Python values (None, bools, ints, floats, str, bytes, tuples, lists, dicts)
//! and the handful of numpy globals that rebuild arrays and scalars:
//!
//! | global | use |
//! |---|---|
//! | `numpy.core.multiarray._reconstruct`, `numpy._core.multiarray._reconstruct` | array shell for protocols 0–4, filled by `BUILD` |
//! | `numpy.ndarray`, `numpy.dtype` | arguments of the above |
//! | `numpy.core.multiarray.scalar`, `numpy._core.multiarray.scalar` | numpy scalars → [`PyValue::Int`]/[`PyValue::Float`]/[`PyValue::Bool`] |
//! | `numpy.core.numeric._frombuffer`, `numpy._core.numeric._frombuffer` | arrays in protocol 5 |
//! | `_codecs.encode`, `builtins.bytes`/`bytearray` (and `__builtin__.*`) | bytes in protocols 0–2 |
//!
//! Any other global is refused with [`Error::ForbiddenGlobal`]; no Python code ever runs.
//! Objects live in an arena addressed by index, so the memo shares them as Python does and a
//! malicious pickle cannot make the reader copy data exponentially; the final value is
//! materialized under a depth limit and a size budget proportional to the input. Every length is
//! checked against the bytes remaining before anything is allocated.
//!
//! The writer emits protocol 4 using `numpy.core.multiarray._reconstruct`, which both numpy 1.x
//! and numpy 2.x (through its `numpy.core` compatibility aliases) load into real arrays.

use crate::error::{Error, IoContext, Result};
use crate::io::array::{ArrayData, NdArray};
use crate::io::atomic::write_bytes_atomic;
use crate::io::npy::{data_le_bytes, fortran_to_c, shape_len, ScalarType};
use std::collections::HashMap;
use std::path::Path;

/// The Python values a cryoDRGN pickle may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False` (also numpy `bool_` scalars).
    Bool(bool),
    /// A Python int or numpy integer scalar that fits in `i64`.
    Int(i64),
    /// A Python float or numpy floating scalar.
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` or `bytearray`.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<PyValue>),
    /// A list.
    List(Vec<PyValue>),
    /// A dict, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    /// A numpy array (converted to C order).
    Array(NdArray),
}

impl PyValue {
    /// The array, if this value is one.
    pub fn as_array(&self) -> Option<&NdArray> {
        match self {
            PyValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Look a string key up in a dict value (the last binding wins, as in Python).
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(items) => items
                .iter()
                .rev()
                .find(|(k, _)| matches!(k, PyValue::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reader.

/// Deepest nesting of containers accepted in a pickle.
const MAX_DEPTH: usize = 256;

/// Longest str/bytes dict key that is deduplicated like Python does.
const MAX_INDEXED_KEY: usize = 256;

/// The globals a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    Reconstruct,
    NdarrayType,
    DtypeType,
    Scalar,
    FromBuffer,
    CodecsEncode,
    BytesType,
    ByteArrayType,
    /// `collections.OrderedDict` (state dicts; torch checkpoints only).
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2` (torch checkpoints only).
    RebuildTensor,
    /// `torch._utils._rebuild_parameter` / `_rebuild_parameter_with_state` (torch checkpoints only).
    RebuildParameter,
    /// `torch.FloatStorage` and the other typed storages (torch checkpoints only).
    Storage(TorchDtype),
}

/// The element types of torch's typed storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TorchDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl TorchDtype {
    fn of_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    fn itemsize(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// Gather the elements at `offsets` (in elements) of little-endian storage bytes `raw`.
    fn gather(self, raw: &[u8], offsets: &[usize]) -> ArrayData {
        let w = self.itemsize();
        let b = |o: usize| &raw[o * w..(o + 1) * w];
        match self {
            Self::F32 => ArrayData::F32(
                offsets
                    .iter()
                    .map(|&o| f32::from_le_bytes(b(o).try_into().unwrap_or_default()))
                    .collect(),
            ),
            Self::F64 => ArrayData::F64(
                offsets
                    .iter()
                    .map(|&o| f64::from_le_bytes(b(o).try_into().unwrap_or_default()))
                    .collect(),
            ),
            Self::F16 => ArrayData::F32(
                offsets
                    .iter()
                    .map(|&o| half::f16::from_le_bytes([b(o)[0], b(o)[1]]).to_f32())
                    .collect(),
            ),
            Self::BF16 => ArrayData::F32(
                offsets
                    .iter()
                    .map(|&o| half::bf16::from_le_bytes([b(o)[0], b(o)[1]]).to_f32())
                    .collect(),
            ),
            Self::I64 => ArrayData::I64(
                offsets
                    .iter()
                    .map(|&o| i64::from_le_bytes(b(o).try_into().unwrap_or_default()))
                    .collect(),
            ),
            Self::I32 => ArrayData::I32(
                offsets
                    .iter()
                    .map(|&o| i32::from_le_bytes(b(o).try_into().unwrap_or_default()))
                    .collect(),
            ),
            Self::I16 => ArrayData::I32(
                offsets
                    .iter()
                    .map(|&o| i16::from_le_bytes([b(o)[0], b(o)[1]]) as i32)
                    .collect(),
            ),
            Self::I8 => ArrayData::I32(offsets.iter().map(|&o| b(o)[0] as i8 as i32).collect()),
            Self::U8 => ArrayData::U8(offsets.iter().map(|&o| b(o)[0]).collect()),
            Self::Bool => ArrayData::Bool(offsets.iter().map(|&o| b(o)[0] != 0).collect()),
        }
    }
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Global::Reconstruct
            }
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::Scalar,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
            ("numpy", "ndarray") => Global::NdarrayType,
            ("numpy", "dtype") => Global::DtypeType,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("builtins" | "__builtin__", "bytes") => Global::BytesType,
            ("builtins" | "__builtin__", "bytearray") => Global::ByteArrayType,
            _ => return None,
        })
    }

    /// The further globals a torch checkpoint's state dict needs.
    fn lookup_torch(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                Global::RebuildParameter
            }
            ("torch", s) => Global::Storage(TorchDtype::of_storage(s)?),
            _ => return None,
        })
    }
}

/// The storages of a torch checkpoint (`archive/data/KEY`), by key.
pub type Storages = HashMap<String, Vec<u8>>;

/// An object of the VM's arena.
#[derive(Debug)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>, HashMap<Key, usize>),
    Array(NdArray),
    Global(Global),
    /// A `numpy.dtype(typestr, ...)` whose byte order `BUILD` may still set.
    Dtype {
        typestr: String,
        order: Option<char>,
    },
    /// An empty array made by `_reconstruct`, to be filled by `BUILD`.
    Shell,
    /// A torch storage named by a persistent id: its element type and key in the archive.
    Storage(TorchDtype, String),
}

/// A hashable dict key, normalized as Python compares them (`1 == 1.0 == True`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    None,
    Int(i64),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for error messages).
    op_pos: usize,
    path: &'a Path,
    objs: Vec<Obj>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u64, usize>,
    /// Allocation budget left, see [`Vm::charge`].
    budget: usize,
    /// A torch checkpoint's storages: enables its globals and persistent ids.
    torch: Option<&'a Storages>,
}

const ID_NONE: usize = 0;
const ID_TRUE: usize = 1;
const ID_FALSE: usize = 2;

impl<'a> Vm<'a> {
    fn new(data: &'a [u8], start: usize, path: &'a Path) -> Self {
        Vm {
            data,
            pos: start,
            op_pos: start,
            path,
            objs: vec![Obj::None, Obj::Bool(true), Obj::Bool(false)],
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            budget: data
                .len()
                .saturating_sub(start)
                .saturating_mul(8)
                .saturating_add(1 << 16),
            torch: None,
        }
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(
            self.path,
            format!("pickle error at byte {}: {msg}", self.op_pos),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                self.err(format!(
                    "truncated: needs {n} more bytes, {} remain",
                    self.data.len().saturating_sub(self.pos)
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take_arr::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take_arr()?))
    }

    fn len8(&mut self) -> Result<usize> {
        let n = u64::from_le_bytes(self.take_arr()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} is too large")))
    }

    /// A protocol-0 text line, without its newline.
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("truncated: text argument has no newline"))?;
        let s = &rest[..n];
        self.pos += n + 1;
        Ok(s)
    }

    fn line_str(&mut self) -> Result<&'a str> {
        let l = self.line()?;
        std::str::from_utf8(l).map_err(|_| self.err("text argument is not UTF-8"))
    }

    fn utf8(&self, b: &[u8]) -> Result<String> {
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not valid UTF-8"))
    }

    /// Store a new object, charging its payload against the allocation budget.
    fn alloc(&mut self, o: Obj) -> Result<usize> {
        let cost = match &o {
            Obj::Str(s) => s.len(),
            Obj::Bytes(b) => b.len(),
            Obj::Array(a) => a.len(),
            Obj::Tuple(v) | Obj::List(v) => v.len(),
            _ => 0,
        };
        self.charge(cost)?;
        self.objs.push(o);
        Ok(self.objs.len() - 1)
    }

    /// Spend `n` units of the allocation budget (about 8 bytes per input byte): a pickle that
    /// re-applies a call to the same large argument cannot make the reader allocate without bound.
    fn charge(&mut self, n: usize) -> Result<()> {
        self.budget = self
            .budget
            .checked_sub(n.saturating_add(1))
            .ok_or_else(|| self.err("pickle builds far more data than the file holds"))?;
        Ok(())
    }

    fn push(&mut self, o: Obj) -> Result<()> {
        let id = self.alloc(o)?;
        self.stack.push(id);
        Ok(())
    }

    fn pop(&mut self) -> Result<usize> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<usize> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<usize>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        if m > self.stack.len() {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.split_off(m))
    }

    fn obj(&self, id: usize) -> Result<&Obj> {
        self.objs
            .get(id)
            .ok_or_else(|| self.err("internal: dangling object"))
    }

    fn memo_put(&mut self, idx: u64) -> Result<()> {
        let id = self.top()?;
        self.memo.insert(idx, id);
        Ok(())
    }

    fn memo_get(&mut self, idx: u64) -> Result<()> {
        let id = *self
            .memo
            .get(&idx)
            .ok_or_else(|| self.err(format!("memo key {idx} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn key_of(&self, id: usize) -> Result<Option<Key>> {
        Ok(match self.obj(id)? {
            Obj::None => Some(Key::None),
            Obj::Bool(b) => Some(Key::Int(*b as i64)),
            Obj::Int(i) => Some(Key::Int(*i)),
            Obj::Float(f) if f.is_nan() => None,
            Obj::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Some(Key::Int(*f as i64)),
            Obj::Float(f) => Some(Key::Float(f.to_bits())),
            // Long keys are not indexed (they then never replace an earlier binding), so that
            // re-setting one huge key cannot cost a copy per SETITEM.
            Obj::Str(s) if s.len() <= MAX_INDEXED_KEY => Some(Key::Str(s.clone())),
            Obj::Bytes(b) if b.len() <= MAX_INDEXED_KEY => Some(Key::Bytes(b.clone())),
            _ => None,
        })
    }

    fn set_items(&mut self, dict: usize, kv: &[usize]) -> Result<()> {
        if !kv.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let keys = kv
            .chunks_exact(2)
            .map(|p| self.key_of(p[0]))
            .collect::<Result<Vec<_>>>()?;
        let Some(Obj::Dict(items, index)) = self.objs.get_mut(dict) else {
            return Err(self.err("SETITEM(S) on something that is not a dict"));
        };
        for (p, key) in kv.chunks_exact(2).zip(keys) {
            match key.as_ref().and_then(|k| index.get(k)) {
                Some(&slot) => {
                    if let Some(entry) = items.get_mut(slot) {
                        entry.1 = p[1];
                    }
                }
                None => {
                    if let Some(k) = key {
                        index.insert(k, items.len());
                    }
                    items.push((p[0], p[1]));
                }
            }
        }
        Ok(())
    }

    fn append(&mut self, list: usize, vals: Vec<usize>) -> Result<()> {
        match self.objs.get_mut(list) {
            Some(Obj::List(items)) => {
                items.extend(vals);
                Ok(())
            }
            _ => Err(self.err("APPEND(S) on something that is not a list")),
        }
    }

    fn int_from_le(&self, b: &[u8]) -> Result<i64> {
        // Two's complement little-endian; accept more than 8 bytes only as sign extension.
        if b.is_empty() {
            return Ok(0);
        }
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut a = [if neg { 0xff } else { 0 }; 8];
        for (i, &byte) in b.iter().enumerate() {
            if i < 8 {
                a[i] = byte;
            } else if byte != if neg { 0xff } else { 0 } {
                return Err(self.err("integer does not fit in 64 bits"));
            }
        }
        let v = i64::from_le_bytes(a);
        if b.len() > 8 && (v < 0) != neg {
            return Err(self.err("integer does not fit in 64 bits"));
        }
        Ok(v)
    }

    /// Bytes of an object used as raw data: bytes, or a latin-1 str (Python 2 / protocol 0).
    fn raw_bytes(&self, id: usize) -> Result<Vec<u8>> {
        match self.obj(id)? {
            Obj::Bytes(b) => Ok(b.clone()),
            Obj::Str(s) => {
                latin1(s).ok_or_else(|| self.err("str data has characters beyond latin-1"))
            }
            _ => Err(self.err("expected bytes")),
        }
    }

    fn dtype_of(&self, id: usize) -> Result<ScalarType> {
        match self.obj(id)? {
            Obj::Dtype { typestr, order } => {
                let mut s = String::new();
                if let Some(o) = order {
                    s.push(*o);
                }
                s.push_str(typestr);
                ScalarType::parse(&s)
                    .ok_or_else(|| self.err(format!("unsupported numpy dtype `{typestr}`")))
            }
            _ => Err(self.err("expected a numpy dtype")),
        }
    }

    fn shape_of(&self, id: usize) -> Result<Vec<usize>> {
        let Obj::Tuple(items) = self.obj(id)? else {
            return Err(self.err("array shape is not a tuple"));
        };
        items
            .iter()
            .map(|&d| match self.obj(d)? {
                Obj::Int(i) => {
                    usize::try_from(*i).map_err(|_| self.err(format!("negative dimension {i}")))
                }
                _ => Err(self.err("array dimension is not an int")),
            })
            .collect()
    }

    fn make_array(
        &self,
        st: ScalarType,
        shape: Vec<usize>,
        raw: &[u8],
        fortran: bool,
    ) -> Result<NdArray> {
        let n = shape_len(&shape).ok_or_else(|| self.err(format!("shape {shape:?} overflows")))?;
        let need = n
            .checked_mul(st.itemsize())
            .ok_or_else(|| self.err(format!("shape {shape:?} overflows")))?;
        if raw.len() != need {
            return Err(self.err(format!(
                "array of shape {shape:?} needs {need} data bytes, found {}",
                raw.len()
            )));
        }
        let mut d = st.decode(raw).map_err(|m| self.err(m))?;
        if fortran {
            d = fortran_to_c(d, &shape);
        }
        NdArray::new(shape, d)
    }

    fn truthy(&self, id: usize) -> Result<bool> {
        match self.obj(id)? {
            Obj::Bool(b) => Ok(*b),
            Obj::Int(i) => Ok(*i != 0),
            _ => Err(self.err("expected a bool")),
        }
    }

    fn tuple_items(&self, id: usize, what: &str) -> Result<&[usize]> {
        match self.obj(id)? {
            Obj::Tuple(v) => Ok(v),
            _ => Err(self.err(format!("{what}: arguments are not a tuple"))),
        }
    }

    /// Apply an allowed callable to its argument tuple (REDUCE / NEWOBJ).
    fn call(&self, func: usize, args: usize) -> Result<Obj> {
        let g = match self.obj(func)? {
            Obj::Global(g) => *g,
            _ => return Err(self.err("REDUCE/NEWOBJ of something that is not an allowed global")),
        };
        let a = self.tuple_items(args, &format!("{g:?}"))?;
        if a.len() > 7 {
            return Err(self.err(format!("{g:?} called with {} arguments", a.len())));
        }
        match g {
            Global::Reconstruct => match a.first().map(|&i| self.obj(i)).transpose()? {
                Some(Obj::Global(Global::NdarrayType)) => Ok(Obj::Shell),
                _ => Err(self.err("_reconstruct of something other than numpy.ndarray")),
            },
            Global::DtypeType => {
                let typestr = match a.first().map(|&i| self.obj(i)).transpose()? {
                    Some(Obj::Str(s)) => s.clone(),
                    Some(Obj::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => return Err(self.err("numpy.dtype without a type string")),
                };
                let (order, typestr) = match typestr.chars().next() {
                    Some(c @ ('<' | '>' | '|' | '=')) => (Some(c), typestr[1..].to_string()),
                    _ => (None, typestr),
                };
                Ok(Obj::Dtype { typestr, order })
            }
            Global::Scalar => {
                let [dt, raw] = a else {
                    return Err(self.err("numpy scalar needs (dtype, bytes)"));
                };
                let st = self.dtype_of(*dt)?;
                let raw = self.raw_bytes(*raw)?;
                if raw.len() != st.itemsize() {
                    return Err(self.err(format!(
                        "numpy scalar of {} bytes for a {}-byte dtype",
                        raw.len(),
                        st.itemsize()
                    )));
                }
                Ok(match st.decode(&raw).map_err(|m| self.err(m))? {
                    ArrayData::F32(v) => Obj::Float(v.first().copied().unwrap_or_default() as f64),
                    ArrayData::F64(v) => Obj::Float(v.first().copied().unwrap_or_default()),
                    ArrayData::I32(v) => Obj::Int(v.first().copied().unwrap_or_default() as i64),
                    ArrayData::I64(v) => Obj::Int(v.first().copied().unwrap_or_default()),
                    ArrayData::U8(v) => Obj::Int(v.first().copied().unwrap_or_default() as i64),
                    ArrayData::Bool(v) => Obj::Bool(v.first().copied().unwrap_or_default()),
                })
            }
            Global::FromBuffer => {
                let [buf, dt, shape, order] = a else {
                    return Err(self.err("_frombuffer needs (buffer, dtype, shape, order)"));
                };
                let st = self.dtype_of(*dt)?;
                let shape = self.shape_of(*shape)?;
                let fortran = match self.obj(*order)? {
                    Obj::Str(s) if s == "C" => false,
                    Obj::Str(s) if s == "F" => true,
                    _ => return Err(self.err("_frombuffer order is not 'C' or 'F'")),
                };
                let raw = match self.obj(*buf)? {
                    Obj::Bytes(b) => b,
                    _ => return Err(self.err("_frombuffer of something that is not bytes")),
                };
                Ok(Obj::Array(self.make_array(st, shape, raw, fortran)?))
            }
            Global::CodecsEncode => {
                let (s, enc) = match a {
                    [s, e] => (s, e),
                    _ => return Err(self.err("_codecs.encode needs (str, encoding)")),
                };
                match (self.obj(*s)?, self.obj(*enc)?) {
                    (Obj::Str(s), Obj::Str(e)) if is_latin1_name(e) => {
                        Ok(Obj::Bytes(latin1(s).ok_or_else(|| {
                            self.err("_codecs.encode: characters beyond latin-1")
                        })?))
                    }
                    _ => Err(self.err("_codecs.encode only supported for (str, 'latin1')")),
                }
            }
            Global::BytesType | Global::ByteArrayType => match a {
                [] => Ok(Obj::Bytes(Vec::new())),
                [b] => match self.obj(*b)? {
                    Obj::Bytes(b) => Ok(Obj::Bytes(b.clone())),
                    _ => Err(self.err("bytes()/bytearray() of something that is not bytes")),
                },
                [s, e] => match (self.obj(*s)?, self.obj(*e)?) {
                    (Obj::Str(s), Obj::Str(e)) if is_latin1_name(e) => {
                        Ok(Obj::Bytes(latin1(s).ok_or_else(|| {
                            self.err("bytearray(): characters beyond latin-1")
                        })?))
                    }
                    _ => Err(self.err("bytes()/bytearray() only supported with latin-1")),
                },
                _ => Err(self.err("bytes()/bytearray() with too many arguments")),
            },
            Global::NdarrayType => Err(self.err("calling numpy.ndarray directly is not supported")),
            Global::OrderedDict => match a {
                [] => Ok(Obj::Dict(Vec::new(), HashMap::new())),
                _ => Err(self.err("OrderedDict() with arguments is not supported")),
            },
            Global::RebuildParameter => match a.first().map(|&i| self.obj(i)).transpose()? {
                Some(Obj::Array(t)) => Ok(Obj::Array(t.clone())),
                _ => Err(self.err("_rebuild_parameter of something that is not a tensor")),
            },
            Global::RebuildTensor => self.rebuild_tensor(a),
            Global::Storage(_) => Err(self.err("calling a torch storage type is not supported")),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`:
    /// the tensor's elements gathered from its storage into a C-ordered array.
    fn rebuild_tensor(&self, a: &[usize]) -> Result<Obj> {
        let [storage, offset, size, stride, ..] = a else {
            return Err(self.err("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)"));
        };
        let Obj::Storage(dt, key) = self.obj(*storage)? else {
            return Err(self.err("_rebuild_tensor_v2 of something that is not a storage"));
        };
        let raw = self
            .torch
            .and_then(|t| t.get(key))
            .ok_or_else(|| self.err(format!("storage `{key}` is not in the archive")))?;
        let numel = raw.len() / dt.itemsize();
        let offset = match self.obj(*offset)? {
            Obj::Int(i) => usize::try_from(*i).map_err(|_| self.err("negative storage offset"))?,
            _ => return Err(self.err("storage offset is not an int")),
        };
        let shape = self.shape_of(*size)?;
        let strides = self.shape_of(*stride)?;
        if strides.len() != shape.len() {
            return Err(self.err(format!(
                "tensor of shape {shape:?} with strides {strides:?}"
            )));
        }
        let n = shape_len(&shape).ok_or_else(|| self.err(format!("shape {shape:?} overflows")))?;
        // the last element's offset bounds every other one
        let last = shape
            .iter()
            .zip(&strides)
            .try_fold(offset, |acc, (&d, &s)| {
                acc.checked_add(d.saturating_sub(1).checked_mul(s)?)
            });
        if n > 0 && last.is_none_or(|l| l >= numel) {
            return Err(self.err(format!(
                "tensor of shape {shape:?} (offset {offset}, strides {strides:?}) reaches past its \
                 storage `{key}` of {numel} elements"
            )));
        }
        let mut offsets = Vec::with_capacity(n);
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..n {
            offsets.push(offset + idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>());
            for ax in (0..shape.len()).rev() {
                idx[ax] += 1;
                if idx[ax] < shape[ax] {
                    break;
                }
                idx[ax] = 0;
            }
        }
        Ok(Obj::Array(NdArray::new(shape, dt.gather(raw, &offsets))?))
    }

    /// BUILD: set the state of a dtype or fill an array shell.
    fn build(&mut self, target: usize, state: usize) -> Result<()> {
        if self.torch.is_some() && matches!(self.obj(target)?, Obj::Dict(..)) {
            // A state dict's attributes (`_metadata`: module versions): not part of its items.
            return match self.obj(state)? {
                Obj::Dict(..) => Ok(()),
                _ => Err(self.err("BUILD of an OrderedDict with a state that is not a dict")),
            };
        }
        let st_items = self.tuple_items(state, "BUILD")?;
        if st_items.len() > 9 {
            return Err(self.err(format!("BUILD state has {} items", st_items.len())));
        }
        let st_items = st_items.to_vec();
        match self.obj(target)? {
            Obj::Dtype { .. } => {
                // (version, byteorder, subdescr, names, fields, elsize, alignment, flags[, metadata])
                let order = match st_items.get(1).map(|&i| self.obj(i)).transpose()? {
                    Some(Obj::Str(s)) if s.len() == 1 => s.chars().next(),
                    _ => return Err(self.err("numpy dtype state without a byte order")),
                };
                if let Some(&names) = st_items.get(3) {
                    if !matches!(self.obj(names)?, Obj::None) {
                        return Err(
                            self.err("structured numpy dtypes are not supported in pickles")
                        );
                    }
                }
                if let Some(Obj::Dtype { order: o, .. }) = self.objs.get_mut(target) {
                    *o = order;
                }
                Ok(())
            }
            Obj::Shell => {
                // (version, shape, dtype, is_fortran, rawdata) or, before numpy 1.0, without version.
                let rest = match st_items.len() {
                    5 => &st_items[1..],
                    4 => &st_items[..],
                    n => return Err(self.err(format!("ndarray state has {n} items"))),
                };
                let shape = self.shape_of(rest[0])?;
                let st = self.dtype_of(rest[1])?;
                let fortran = self.truthy(rest[2])?;
                let raw = match self.obj(rest[3])? {
                    Obj::List(_) => return Err(self.err("object arrays are not supported")),
                    _ => self.raw_bytes(rest[3])?,
                };
                let arr = self.make_array(st, shape, &raw, fortran)?;
                self.charge(arr.len())?;
                if let Some(slot) = self.objs.get_mut(target) {
                    *slot = Obj::Array(arr);
                }
                Ok(())
            }
            _ => Err(self.err("BUILD on an object that is not a numpy array or dtype")),
        }
    }

    /// Run one pickle from `self.pos` to its STOP; returns the root object id.
    fn run(&mut self) -> Result<usize> {
        loop {
            self.op_pos = self.pos;
            let op = self
                .u8()
                .map_err(|_| self.err("truncated: no STOP opcode"))?;
            match op {
                b'.' => return self.pop(), // STOP
                0x80 => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {v}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    let n = self.len8()?;
                    if n > self.data.len().saturating_sub(self.pos) {
                        return Err(self.err(format!("truncated: frame of {n} bytes")));
                    }
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                b'N' => self.stack.push(ID_NONE),
                0x88 => self.stack.push(ID_TRUE),
                0x89 => self.stack.push(ID_FALSE),
                b'J' => {
                    let v = i32::from_le_bytes(self.take_arr()?);
                    self.push(Obj::Int(v as i64))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i64))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_arr()?);
                    self.push(Obj::Int(v as i64))?;
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = self.int_from_le(b)?;
                    self.push(Obj::Int(v))?;
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let v = self.int_from_le(b)?;
                    self.push(Obj::Int(v))?;
                }
                b'I' => {
                    let s = self.line_str()?;
                    let o = match s {
                        "01" => Obj::Bool(true),
                        "00" => Obj::Bool(false),
                        _ => Obj::Int(
                            s.trim()
                                .parse()
                                .map_err(|_| self.err(format!("bad INT `{s}`")))?,
                        ),
                    };
                    self.push(o)?;
                }
                b'L' => {
                    let s = self.line_str()?;
                    let t = s.trim().trim_end_matches('L');
                    let v = t
                        .parse()
                        .map_err(|_| self.err(format!("bad or too large LONG `{s}`")))?;
                    self.push(Obj::Int(v))?;
                }
                b'F' => {
                    let s = self.line_str()?;
                    let v = s
                        .trim()
                        .parse()
                        .map_err(|_| self.err(format!("bad FLOAT `{s}`")))?;
                    self.push(Obj::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take_arr()?);
                    self.push(Obj::Float(v))?;
                }
                b'S' => {
                    let l = self.line()?;
                    let b = unrepr_bytes(l).ok_or_else(|| self.err("bad STRING literal"))?;
                    self.push(py2_str(b))?;
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(py2_str(b))?;
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(py2_str(b))?;
                }
                b'V' => {
                    let l = self.line()?;
                    let s = raw_unicode_escape(l).ok_or_else(|| self.err("bad UNICODE literal"))?;
                    self.push(Obj::Str(s))?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.push(Obj::Str(s))?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.push(Obj::Str(s))?;
                }
                0x8d => {
                    let n = self.len8()?;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.push(Obj::Str(s))?;
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(b))?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(b))?;
                }
                0x8e | 0x96 => {
                    // BINBYTES8, BYTEARRAY8
                    let n = self.len8()?;
                    let b = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(b))?;
                }
                b')' => self.push(Obj::Tuple(Vec::new()))?,
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Obj::Tuple(items))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))?;
                }
                b']' => self.push(Obj::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append(l, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append(l, items)?;
                }
                b'}' => self.push(Obj::Dict(Vec::new(), HashMap::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.alloc(Obj::Dict(Vec::new(), HashMap::new()))?;
                    self.set_items(d, &items)?;
                    self.stack.push(d);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, &[k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.set_items(d, &items)?;
                }
                b'p' => {
                    let s = self.line_str()?;
                    let i = s
                        .trim()
                        .parse()
                        .map_err(|_| self.err(format!("bad PUT index `{s}`")))?;
                    self.memo_put(i)?;
                }
                b'q' => {
                    let i = self.u8()? as u64;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?;
                }
                b'g' => {
                    let s = self.line_str()?;
                    let i = s
                        .trim()
                        .parse()
                        .map_err(|_| self.err(format!("bad GET index `{s}`")))?;
                    self.memo_get(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u64;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    let g = self.global(&module, &name)?;
                    self.push(Obj::Global(g))?;
                }
                b'i' => {
                    // INST instantiates a class: never allowed, but name it in the error.
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    return Err(self.forbidden(&module, &name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Obj::Str(m), Obj::Str(n)) = (self.obj(module)?, self.obj(name)?) else {
                        return Err(self.err("STACK_GLOBAL of non-strings"));
                    };
                    let (m, n) = (m.clone(), n.clone());
                    let g = self.global(&m, &n)?;
                    self.push(Obj::Global(g))?;
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    if op == 0x81
                        && !matches!(
                            self.obj(func)?,
                            Obj::Global(Global::BytesType | Global::ByteArrayType)
                        )
                    {
                        return Err(self.err("NEWOBJ is only supported for bytes/bytearray"));
                    }
                    let o = self.call(func, args)?;
                    self.push(o)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                b'Q' if self.torch.is_some() => {
                    let pid = self.pop()?;
                    let o = self.persistent(pid)?;
                    self.push(o)?;
                }
                b'P' | b'Q' => return Err(self.err("persistent ids are not supported")),
                b'o' => {
                    return Err(self.err("the OBJ opcode (class instantiation) is not supported"))
                }
                0x82..=0x84 => return Err(self.err("extension-registry opcodes are not supported")),
                0x8f..=0x91 => return Err(self.err("sets are not supported")),
                0x92 => return Err(self.err("NEWOBJ_EX is not supported")),
                0x97 | 0x98 => return Err(self.err("out-of-band buffers are not supported")),
                other => return Err(self.err(format!("unknown opcode 0x{other:02x}"))),
            }
        }
    }

    fn forbidden(&self, module: &str, name: &str) -> Error {
        Error::ForbiddenGlobal {
            path: self.path.to_path_buf(),
            module: module.to_string(),
            name: name.to_string(),
        }
    }

    fn global(&self, module: &str, name: &str) -> Result<Global> {
        Global::lookup(module, name)
            .or_else(|| {
                self.torch
                    .is_some()
                    .then(|| Global::lookup_torch(module, name))
                    .flatten()
            })
            .ok_or_else(|| self.forbidden(module, name))
    }

    /// A torch persistent id: `('storage', StorageType, key, location, numel)`.
    fn persistent(&self, pid: usize) -> Result<Obj> {
        let items = self.tuple_items(pid, "persistent id")?;
        let [tag, ty, key, _location, _numel] = items else {
            return Err(self.err("persistent id is not ('storage', type, key, location, numel)"));
        };
        match (self.obj(*tag)?, self.obj(*ty)?, self.obj(*key)?) {
            (Obj::Str(t), Obj::Global(Global::Storage(dt)), Obj::Str(k)) if t == "storage" => {
                Ok(Obj::Storage(*dt, k.clone()))
            }
            _ => Err(self.err("persistent id is not ('storage', type, key, location, numel)")),
        }
    }

    /// Turn the arena object `id` into a [`PyValue`], spending `budget` (nodes plus elements).
    fn materialize(&self, id: usize, depth: usize, budget: &mut usize) -> Result<PyValue> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep (or a self-referencing container)"));
        }
        let o = self.obj(id)?;
        let cost = match o {
            Obj::Str(s) => s.len(),
            Obj::Bytes(b) => b.len(),
            Obj::Array(a) => a.len(),
            Obj::Tuple(v) | Obj::List(v) => v.len(),
            Obj::Dict(v, _) => v.len(),
            _ => 0,
        };
        *budget = budget
            .checked_sub(cost.saturating_add(1))
            .ok_or_else(|| self.err("shared references expand beyond the size of the file"))?;
        Ok(match o {
            Obj::None => PyValue::None,
            Obj::Bool(b) => PyValue::Bool(*b),
            Obj::Int(i) => PyValue::Int(*i),
            Obj::Float(f) => PyValue::Float(*f),
            Obj::Str(s) => PyValue::Str(s.clone()),
            Obj::Bytes(b) => PyValue::Bytes(b.clone()),
            Obj::Array(a) => PyValue::Array(a.clone()),
            Obj::Tuple(v) | Obj::List(v) => {
                let items = v
                    .iter()
                    .map(|&i| self.materialize(i, depth + 1, budget))
                    .collect::<Result<Vec<_>>>()?;
                if matches!(o, Obj::Tuple(_)) {
                    PyValue::Tuple(items)
                } else {
                    PyValue::List(items)
                }
            }
            Obj::Dict(v, _) => PyValue::Dict(
                v.iter()
                    .map(|&(k, x)| {
                        Ok((
                            self.materialize(k, depth + 1, budget)?,
                            self.materialize(x, depth + 1, budget)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Obj::Global(g) => return Err(self.err(format!("result holds a bare global ({g:?})"))),
            Obj::Dtype { typestr, .. } => {
                return Err(self.err(format!("result holds a bare numpy dtype `{typestr}`")))
            }
            Obj::Shell => {
                return Err(self.err("result holds a numpy array that was never filled (no BUILD)"))
            }
            Obj::Storage(_, k) => {
                return Err(self.err(format!("result holds a bare torch storage `{k}`")))
            }
        })
    }
}

fn is_latin1_name(e: &str) -> bool {
    matches!(
        e.to_ascii_lowercase().as_str(),
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1"
    )
}

/// Encode a str as latin-1 (`None` if a character is beyond U+00FF).
fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// A Python 2 `str`: an ASCII one becomes a `str` (as `pickle.load` with the default encoding
/// does), anything else stays bytes.
fn py2_str(b: Vec<u8>) -> Obj {
    if b.is_ascii() {
        Obj::Str(b.into_iter().map(char::from).collect())
    } else {
        Obj::Bytes(b)
    }
}

/// Decode a protocol-0 `STRING` argument: a quoted Python 2 `repr` of a byte string.
fn unrepr_bytes(l: &[u8]) -> Option<Vec<u8>> {
    let q = *l.first()?;
    if (q != b'\'' && q != b'"') || l.len() < 2 || *l.last()? != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            b'\\' | b'\'' | b'"' => out.push(e),
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Decode Python's `raw-unicode-escape` (protocol-0 `UNICODE`): bytes are latin-1 except
/// `\uXXXX` and `\UXXXXXXXX`.
fn raw_unicode_escape(l: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while let Some(&c) = l.get(i) {
        let n = match (c, l.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if n == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let h = std::str::from_utf8(l.get(i + 2..i + 2 + n)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
        i += 2 + n;
    }
    Some(out)
}

/// Parse one pickle starting at `start`; returns the value and the offset just past its STOP.
fn parse_one(bytes: &[u8], start: usize, path: &Path) -> Result<(PyValue, usize)> {
    let mut vm = Vm::new(bytes, start, path);
    let root = vm.run()?;
    // Budget: a pickle without shared references costs at most about one unit per input byte.
    let mut budget = bytes
        .len()
        .saturating_sub(start)
        .saturating_mul(4)
        .saturating_add(1024);
    let v = vm.materialize(root, 0, &mut budget)?;
    Ok((v, vm.pos))
}

/// Parse the pickle of a torch checkpoint (`archive/data.pkl`) whose tensors live in `storages`:
/// tensors become [`PyValue::Array`]s (half and bfloat16 widened to f32), state dicts plain dicts.
pub(crate) fn parse_torch_pickle(
    bytes: &[u8],
    storages: &Storages,
    path: &Path,
) -> Result<PyValue> {
    if bytes.is_empty() {
        return Err(Error::format(path, "empty data.pkl: no pickle"));
    }
    let mut vm = Vm::new(bytes, 0, path);
    vm.torch = Some(storages);
    // tensors are materialized from storages outside the pickle: budget them by their size
    let stored: usize = storages.values().map(Vec::len).sum();
    vm.budget = vm.budget.saturating_add(stored.saturating_mul(2));
    let root = vm.run()?;
    let mut budget = bytes
        .len()
        .saturating_mul(4)
        .saturating_add(stored.saturating_mul(2))
        .saturating_add(1024);
    vm.materialize(root, 0, &mut budget)
}

/// Parse all pickles stored back to back in `bytes` (as in `z.N.pkl`); `path` only for errors.
pub fn parse_pickles(bytes: &[u8], path: &Path) -> Result<Vec<PyValue>> {
    if bytes.is_empty() {
        return Err(Error::format(path, "empty file: no pickle"));
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (v, next) = parse_one(bytes, pos, path)?;
        out.push(v);
        pos = next;
    }
    Ok(out)
}

/// Parse the first pickle in `bytes`, ignoring anything after its STOP (as `pickle.load` does).
pub fn parse_pickle(bytes: &[u8], path: &Path) -> Result<PyValue> {
    if bytes.is_empty() {
        return Err(Error::format(path, "empty file: no pickle"));
    }
    Ok(parse_one(bytes, 0, path)?.0)
}

/// Read the first pickle of a file.
pub fn read_pkl(path: impl AsRef<Path>) -> Result<PyValue> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).at(path)?;
    parse_pickle(&bytes, path)
}

/// Read every pickle of a file, back to back.
pub fn read_pkl_all(path: impl AsRef<Path>) -> Result<Vec<PyValue>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).at(path)?;
    parse_pickles(&bytes, path)
}

// ---------------------------------------------------------------------------------------------
// Writer.

fn w_int(out: &mut Vec<u8>, i: i64) {
    if (0..=0xff).contains(&i) {
        out.push(b'K');
        out.push(i as u8);
    } else if (0..=0xffff).contains(&i) {
        out.push(b'M');
        out.extend_from_slice(&(i as u16).to_le_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(b'J');
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.extend_from_slice(&[0x8a, 8]);
        out.extend_from_slice(&i.to_le_bytes());
    }
}

fn w_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if b.len() < 256 {
        out.extend_from_slice(&[0x8c, b.len() as u8]);
    } else if let Ok(n) = u32::try_from(b.len()) {
        out.push(b'X');
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(0x8d);
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

fn w_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() < 256 {
        out.extend_from_slice(&[b'C', b.len() as u8]);
    } else if let Ok(n) = u32::try_from(b.len()) {
        out.push(b'B');
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(0x8e);
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

/// Close a tuple of the `n` items just written (a MARK precedes them when `n > 3`).
fn w_tuple_end(out: &mut Vec<u8>, n: usize) {
    match n {
        0 => out.push(b')'),
        1..=3 => out.push(0x84 + n as u8),
        _ => out.push(b't'),
    }
}

fn w_tuple<T>(out: &mut Vec<u8>, items: &[T], mut f: impl FnMut(&mut Vec<u8>, &T)) {
    if items.len() > 3 {
        out.push(b'(');
    }
    for it in items {
        f(out, it);
    }
    w_tuple_end(out, items.len());
}

fn w_array(out: &mut Vec<u8>, a: &NdArray) {
    // _reconstruct(ndarray, (0,), b'b')
    out.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n");
    w_int(out, 0);
    out.push(0x85);
    w_bytes(out, b"b");
    out.extend_from_slice(&[0x87, b'R']);
    // state = (1, shape, dtype, is_fortran=False, rawdata)
    out.push(b'(');
    w_int(out, 1);
    w_tuple(out, &a.shape, |o, &d| w_int(o, d as i64));
    let typestr = &a.data.descr()[1..];
    out.extend_from_slice(b"cnumpy\ndtype\n");
    w_str(out, typestr);
    out.extend_from_slice(&[0x89, 0x88, 0x87, b'R']);
    // dtype state = (3, byteorder, None, None, None, -1, -1, 0)
    out.push(b'(');
    w_int(out, 3);
    w_str(out, &a.data.descr()[..1]);
    out.extend_from_slice(b"NNN");
    w_int(out, -1);
    w_int(out, -1);
    w_int(out, 0);
    out.extend_from_slice(b"tb");
    out.push(0x89);
    w_bytes(out, &data_le_bytes(&a.data));
    out.extend_from_slice(b"tb");
}

fn w_value(out: &mut Vec<u8>, v: &PyValue) {
    match v {
        PyValue::None => out.push(b'N'),
        PyValue::Bool(true) => out.push(0x88),
        PyValue::Bool(false) => out.push(0x89),
        PyValue::Int(i) => w_int(out, *i),
        PyValue::Float(f) => {
            out.push(b'G');
            out.extend_from_slice(&f.to_be_bytes());
        }
        PyValue::Str(s) => w_str(out, s),
        PyValue::Bytes(b) => w_bytes(out, b),
        PyValue::Tuple(items) => w_tuple(out, items, w_value),
        PyValue::List(items) => {
            out.push(b']');
            if !items.is_empty() {
                out.push(b'(');
                for it in items {
                    w_value(out, it);
                }
                out.push(b'e');
            }
        }
        PyValue::Dict(items) => {
            out.push(b'}');
            if !items.is_empty() {
                out.push(b'(');
                for (k, x) in items {
                    w_value(out, k);
                    w_value(out, x);
                }
                out.push(b'u');
            }
        }
        PyValue::Array(a) => w_array(out, a),
    }
}

/// Serialize one value as a protocol-4 pickle loadable by `pickle.load` with numpy 1 or 2.
///
/// Arrays are written little-endian in C order through `numpy.core.multiarray._reconstruct`
/// with dtypes `<f4 <f8 <i4 <i8 |u1 |b1`; no memo is used, so shared values are written twice.
pub fn pickle_bytes(v: &PyValue) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    w_value(&mut out, v);
    out.push(b'.');
    out
}

/// Write one pickle atomically.
pub fn write_pkl(path: impl AsRef<Path>, v: &PyValue) -> Result<()> {
    write_bytes_atomic(path, &pickle_bytes(v))
}

/// Write several pickles back to back atomically (e.g. `z.N.pkl` = z_mu then z_logvar).
pub fn write_pkls(path: impl AsRef<Path>, vs: &[PyValue]) -> Result<()> {
    let bytes: Vec<u8> = vs.iter().flat_map(pickle_bytes).collect();
    write_bytes_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t.pkl")
    }

    #[test]
    fn roundtrip_plain_values_and_arrays() {
        let v = PyValue::Tuple(vec![
            PyValue::None,
            PyValue::Bool(true),
            PyValue::Int(-5),
            PyValue::Int(300),
            PyValue::Int(70000),
            PyValue::Int(-(1 << 40)),
            PyValue::Int(i64::MIN),
            PyValue::Float(0.25),
            PyValue::Str("héllo".into()),
            PyValue::Bytes(vec![0, 1, 255]),
            PyValue::List(vec![PyValue::Int(1), PyValue::List(vec![])]),
            PyValue::Dict(vec![(PyValue::Str("a".into()), PyValue::Int(2))]),
            PyValue::Array(NdArray::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.5]).unwrap()),
            PyValue::Array(NdArray::new(vec![], ArrayData::I64(vec![7])).unwrap()),
            PyValue::Array(
                NdArray::new(vec![1, 1, 1, 2], ArrayData::Bool(vec![true, false])).unwrap(),
            ),
        ]);
        let b = pickle_bytes(&v);
        assert_eq!(parse_pickle(&b, p()).unwrap(), v);
    }

    #[test]
    fn memo_shares_mutations_like_python() {
        // EMPTY_LIST, MEMOIZE, MARK, 1, 2, APPENDS, BINGET 0, TUPLE2, STOP -> ([1,2],[1,2])
        let b = b"\x80\x04]\x94(K\x01K\x02eh\x00\x86.";
        let l = PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]);
        assert_eq!(
            parse_pickle(b, p()).unwrap(),
            PyValue::Tuple(vec![l.clone(), l])
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: [(&[u8], &str); 7] = [
            (b"\x80\x04K\x01", "no STOP"),
            (b"\x80\x04\xffK.", "unknown opcode 0xff"),
            (b"\x80\x04\x86.", "stack underflow"),
            (b"\x80\x04h\x05.", "memo key 5"),
            (
                b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.",
                "truncated",
            ),
            (b"\x80\x04K\x01K\x02a.", "not a list"),
            (b"\x80\x04(]h\x00h\x00h\x00.", "memo key 0"),
        ];
        for (b, want) in cases {
            let e = parse_pickle(b, p()).unwrap_err().to_string();
            assert!(
                e.contains("t.pkl") && e.contains(want),
                "{e} should contain {want}"
            );
        }
    }

    #[test]
    fn self_reference_and_exponential_sharing_are_refused() {
        // l = []; l.append(l)
        let b = b"\x80\x04]\x94h\x00a.";
        assert!(parse_pickle(b, p())
            .unwrap_err()
            .to_string()
            .contains("too deep"));
        // t0 = (b'x'*200,), t_{k+1} = (t_k, t_k) 40 times: 2^40 leaves from a few hundred bytes.
        let mut b = vec![0x80, 4, b'B', 200, 0, 0, 0];
        b.extend_from_slice(&[b'x'; 200]);
        b.push(0x94);
        for _ in 0..40 {
            b.extend_from_slice(&[0x94, 0x32, 0x86]);
        }
        b.push(b'.');
        let e = parse_pickle(&b, p()).unwrap_err().to_string();
        assert!(e.contains("expand"), "{e}");
    }

    #[test]
    fn repeated_calls_cannot_allocate_without_bound() {
        // _codecs.encode(<4000 chars>, 'latin1') applied 10000 times to the same memoized args.
        let mut b = b"\x80\x02c_codecs\nencode\nq\x00X\xa0\x0f\x00\x00".to_vec();
        b.extend_from_slice(&[b'a'; 4000]);
        b.extend_from_slice(b"X\x06\x00\x00\x00latin1\x86q\x01");
        for _ in 0..10000 {
            b.extend_from_slice(b"h\x00h\x01R0");
        }
        b.extend_from_slice(b"N.");
        let e = parse_pickle(&b, p()).unwrap_err().to_string();
        assert!(e.contains("far more data"), "{e}");
        // The same with 3 calls is fine.
        let n = b.len() - 2 - 6 * 10000;
        let mut ok = b[..n].to_vec();
        ok.extend_from_slice(b"h\x00h\x01Rh\x00h\x01Rh\x00h\x01R\x87.");
        let PyValue::Tuple(t) = parse_pickle(&ok, p()).unwrap() else {
            panic!("tuple expected")
        };
        assert_eq!(t, vec![PyValue::Bytes(vec![b'a'; 4000]); 3]);
    }

    #[test]
    fn forbidden_global_is_named() {
        let b = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        match parse_pickle(b, p()).unwrap_err() {
            Error::ForbiddenGlobal { module, name, .. } => {
                assert_eq!((module.as_str(), name.as_str()), ("os", "system"))
            }
            e => panic!("wrong error {e}"),
        }
    }

    #[test]
    fn protocol0_text_opcodes() {
        // (I1\nL123L\nF0.5\nS'a\\n'\nVx\\u00e9\nI01\nt.
        let b = b"(I1\nL123L\nF0.5\nS'a\\n'\nVx\\u00e9\nI01\nt.";
        assert_eq!(
            parse_pickle(b, p()).unwrap(),
            PyValue::Tuple(vec![
                PyValue::Int(1),
                PyValue::Int(123),
                PyValue::Float(0.5),
                PyValue::Str("a\n".into()),
                PyValue::Str("xé".into()),
                PyValue::Bool(true),
            ])
        );
    }

    #[test]
    fn long1_sign_extension() {
        let vm = Vm::new(&[], 0, Path::new("x"));
        assert_eq!(vm.int_from_le(&[0xff]).unwrap(), -1);
        assert_eq!(vm.int_from_le(&[0x00, 0x80]).unwrap(), -32768);
        assert_eq!(
            vm.int_from_le(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00])
                .unwrap(),
            i64::MAX
        );
        assert!(vm.int_from_le(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]).is_err());
        assert!(vm.int_from_le(&[0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }
}
