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
    let file = std::fs::File::open(path).at(path)?;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .at(path)?
        .read_exact(&mut magic)
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
