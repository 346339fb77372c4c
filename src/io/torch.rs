//! A safe reader for `torch.save` checkpoints (cryoDRGN's `weights.N.pkl`).
//!
//! Since torch 1.6 `torch.save` writes a zip archive: `ARCHIVE/data.pkl` is a pickle whose tensors
//! are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls on persistent
//! ids `('storage', torch.FloatStorage, KEY, location, numel)`, each storage's bytes stored
//! (little-endian) as `ARCHIVE/data/KEY`. The reader runs [`crate::io::pkl`]'s pickle machine with
//! five more globals allowed — `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter(_with_state)` and the typed storages (`torch.FloatStorage`,
//! ...) — and refuses every other global by name ([`Error::ForbiddenGlobal`]): a checkpoint that
//! would run code on `torch.load(weights_only=False)` is rejected, never executed.
//!
//! Tensors come back as [`PyValue::Array`]s in C order (strided views gathered; half and
//! bfloat16 widened to f32), state dicts as [`PyValue::Dict`]s in their order.

use crate::error::{Error, IoContext, Result};
pub use crate::io::pkl::Storages;
use crate::io::pkl::{parse_torch_pickle, PyValue};
use std::io::Read;
use std::path::Path;

/// Whether `path` starts like a zip archive (a torch ≥ 1.6 checkpoint, or an .npz).
pub fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

/// Read a `torch.save` checkpoint (zip format) into plain values.
pub fn read_torch(path: impl AsRef<Path>) -> Result<PyValue> {
    let path = path.as_ref();
    let (name, pkl, storages) = read_archive(path)?;
    parse_torch_pickle(&pkl, &storages, &path.join(name))
}

/// Parse a checkpoint's `data.pkl` bytes against its storages (by key); `path` only for errors.
pub fn parse_archive(pkl: &[u8], storages: &Storages, path: &Path) -> Result<PyValue> {
    parse_torch_pickle(pkl, storages, path)
}

/// The parts of a `torch.save` archive: the name of its `data.pkl`, that pickle's bytes, and the
/// storages by key.
pub fn read_archive(path: &Path) -> Result<(String, Vec<u8>, Storages)> {
    let mut file = std::fs::File::open(path).at(path)?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|_| Error::format(path, "too short for a torch checkpoint"))?;
    if magic != *b"PK\x03\x04" {
        return Err(Error::format(
            path,
            "not a torch checkpoint in the zip format of torch ≥ 1.6 (the legacy format of older \
             torch versions is not supported: load and re-save it with a current torch)",
        ));
    }
    let zerr = |e: zip::result::ZipError| Error::format(path, format!("bad torch archive: {e}"));
    let mut zipf = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zerr)?;
    let names: Vec<String> = zipf.file_names().map(str::to_string).collect();
    let pkl_name = names
        .iter()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min()
        .cloned()
        .ok_or_else(|| Error::format(path, "torch archive without ARCHIVE/data.pkl"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut entry = zipf.by_name(name).map_err(zerr)?;
        let size = entry.size();
        let mut buf = Vec::new();
        (&mut entry)
            .take(size)
            .read_to_end(&mut buf)
            .map_err(|e| Error::format(path, format!("entry `{name}`: {e}")))?;
        Ok(buf)
    };
    if names.contains(&format!("{prefix}byteorder")) {
        let order = read(&format!("{prefix}byteorder"))?;
        if order != b"little" {
            return Err(Error::format(
                path,
                format!(
                    "torch archive with byte order `{}` (only little-endian is supported)",
                    String::from_utf8_lossy(&order)
                ),
            ));
        }
    }
    let data_dir = format!("{prefix}data/");
    let mut storages = Storages::new();
    for n in &names {
        if let Some(key) = n.strip_prefix(&data_dir) {
            if !key.is_empty() && !key.contains('/') {
                storages.insert(key.to_string(), read(n)?);
            }
        }
    }
    let pkl = read(&pkl_name)?;
    Ok((pkl_name, pkl, storages))
}

/// A value of a checkpoint [`write_torch`] writes: what a torch state dict and Adam's state hold.
#[derive(Debug, Clone)]
pub enum TorchValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<TorchValue>),
    List(Vec<TorchValue>),
    Dict(Vec<(TorchValue, TorchValue)>),
    /// `collections.OrderedDict` (a state dict).
    OrderedDict(Vec<(String, TorchValue)>),
    /// An f32 CPU tensor in C order (its own storage).
    Tensor {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
}

/// Pickle (protocol 2, as `torch.save`) of `v`, its tensors' storages appended to `storages`.
fn pickle_torch(v: &TorchValue, out: &mut Vec<u8>, storages: &mut Vec<Vec<u8>>) {
    fn int(i: i64, out: &mut Vec<u8>) {
        if (0..256).contains(&i) {
            out.push(b'K');
            out.push(i as u8);
        } else if (0..65536).contains(&i) {
            out.push(b'M');
            out.extend_from_slice(&(i as u16).to_le_bytes());
        } else if i32::try_from(i).is_ok() {
            out.push(b'J');
            out.extend_from_slice(&(i as i32).to_le_bytes());
        } else {
            out.extend_from_slice(&[0x8a, 8]);
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    fn string(s: &str, out: &mut Vec<u8>) {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn tuple(items: &[usize], out: &mut Vec<u8>) {
        out.push(b'(');
        for &i in items {
            int(i as i64, out);
        }
        out.push(b't');
    }
    match v {
        TorchValue::None => out.push(b'N'),
        TorchValue::Bool(b) => out.push(if *b { 0x88 } else { 0x89 }),
        TorchValue::Int(i) => int(*i, out),
        TorchValue::Float(f) => {
            out.push(b'G');
            out.extend_from_slice(&f.to_be_bytes());
        }
        TorchValue::Str(s) => string(s, out),
        TorchValue::Tuple(items) => {
            out.push(b'(');
            for x in items {
                pickle_torch(x, out, storages);
            }
            out.push(b't');
        }
        TorchValue::List(items) => {
            out.push(b']');
            if !items.is_empty() {
                out.push(b'(');
                for x in items {
                    pickle_torch(x, out, storages);
                }
                out.push(b'e');
            }
        }
        TorchValue::Dict(items) => {
            out.push(b'}');
            if !items.is_empty() {
                out.push(b'(');
                for (k, x) in items {
                    pickle_torch(k, out, storages);
                    pickle_torch(x, out, storages);
                }
                out.push(b'u');
            }
        }
        TorchValue::OrderedDict(items) => {
            out.extend_from_slice(b"ccollections\nOrderedDict\n)R");
            if !items.is_empty() {
                out.push(b'(');
                for (k, x) in items {
                    string(k, out);
                    pickle_torch(x, out, storages);
                }
                out.push(b'u');
            }
        }
        TorchValue::Tensor { shape, data } => {
            let key = storages.len();
            storages.push(bytemuck::cast_slice::<f32, u8>(data).to_vec());
            out.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            // persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
            out.push(b'(');
            string("storage", out);
            out.extend_from_slice(b"ctorch\nFloatStorage\n");
            string(&key.to_string(), out);
            string("cpu", out);
            int(data.len() as i64, out);
            out.extend_from_slice(b"tQ");
            int(0, out);
            tuple(shape, out);
            let mut strides = vec![1usize; shape.len()];
            for a in (0..shape.len().saturating_sub(1)).rev() {
                strides[a] = strides[a + 1] * shape[a + 1];
            }
            tuple(&strides, out);
            out.push(0x89);
            out.extend_from_slice(b"ccollections\nOrderedDict\n)R");
            out.extend_from_slice(b"tR");
        }
    }
}

/// Write `root` as a `torch.save` checkpoint (zip format, protocol-2 pickle, f32 storages aligned
/// to 64 bytes, as torch ≥ 1.6 writes them), atomically; `torch.load` and [`read_torch`] read it.
pub fn write_torch(path: impl AsRef<Path>, root: &TorchValue) -> Result<()> {
    use std::io::Write;
    let path = path.as_ref();
    let mut pkl = b"\x80\x02".to_vec();
    let mut storages = Vec::new();
    pickle_torch(root, &mut pkl, &mut storages);
    pkl.push(b'.');
    let prefix = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or("archive")
        .to_string();
    let zerr =
        |e: zip::result::ZipError| Error::format(path, format!("writing a torch archive: {e}"));
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64);
        let mut put = |name: String, bytes: &[u8]| -> Result<()> {
            z.start_file(name, opts).map_err(zerr)?;
            z.write_all(bytes)
                .map_err(|e| Error::format(path, format!("writing a torch archive: {e}")))
        };
        put(format!("{prefix}/data.pkl"), &pkl)?;
        put(format!("{prefix}/.format_version"), b"1")?;
        put(format!("{prefix}/.storage_alignment"), b"64")?;
        put(format!("{prefix}/byteorder"), b"little")?;
        for (k, s) in storages.iter().enumerate() {
            put(format!("{prefix}/data/{k}"), s)?;
        }
        put(format!("{prefix}/version"), b"3\n")?;
        z.finish().map_err(zerr)?;
    }
    crate::io::atomic::write_bytes_atomic(path, &buf.into_inner())
}
