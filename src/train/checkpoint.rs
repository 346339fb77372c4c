//! Checkpoints: `weights.N.safetensors` holds every parameter under its torch state-dict name
//! (f32), the `gaussian` encoding's `rand_freqs`, and the Adam state (`optim.step`,
//! `optim.m.<name>`, `optim.v.<name>`), with the epoch in the metadata; `config.json` records
//! every hyperparameter and the data. Both are written atomically.

use crate::io::atomic::write_bytes_atomic;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The host-side contents of a checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Epoch just completed (0-based).
    pub epoch: usize,
    /// (name, shape, values) of every parameter, in store order.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// `gaussian` frequencies under their state-dict name.
    pub extra: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Adam step count.
    pub adam_step: u64,
    /// Adam first and second moments, in store order (empty before the first step).
    pub adam_m: Vec<Vec<f32>>,
    pub adam_v: Vec<Vec<f32>>,
}

impl Checkpoint {
    /// Write as safetensors (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let bytes = |v: &[f32]| bytemuck::cast_slice::<f32, u8>(v).to_vec();
        for (n, s, v) in self.params.iter().chain(&self.extra) {
            bufs.push((n.clone(), s.clone(), bytes(v)));
        }
        for (i, (n, s, _)) in self.params.iter().enumerate() {
            if let (Some(m), Some(v)) = (self.adam_m.get(i), self.adam_v.get(i)) {
                bufs.push((format!("optim.m.{n}"), s.clone(), bytes(m)));
                bufs.push((format!("optim.v.{n}"), s.clone(), bytes(v)));
            }
        }
        let views: Vec<(String, TensorView<'_>)> = bufs
            .iter()
            .map(|(n, s, b)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::format(path, format!("tensor {n}: {e}")))
            })
            .collect::<Result<_>>()?;
        let mut meta = HashMap::new();
        meta.insert("epoch".to_string(), self.epoch.to_string());
        meta.insert("optim.step".to_string(), self.adam_step.to_string());
        meta.insert("format".to_string(), "cryofield".to_string());
        let data = safetensors::serialize(views, &Some(meta))
            .map_err(|e| Error::format(path, format!("cannot serialize: {e}")))?;
        write_bytes_atomic(path, &data)
    }

    /// Read a checkpoint written by [`Checkpoint::save`]; `names` are the parameters expected,
    /// in store order, with their shapes.
    pub fn load(path: &Path, names: &[(String, Vec<usize>)], extra: &[String]) -> Result<Self> {
        let data = std::fs::read(path).map_err(|err| Error::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let (_, meta) = SafeTensors::read_metadata(&data)
            .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(&data)
            .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let num = |k: &str| -> Result<u64> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::format(path, format!("metadata `{k}` missing")))
        };
        let get = |n: &str, shape: Option<&[usize]>| -> Result<(Vec<usize>, Vec<f32>)> {
            let t = st
                .tensor(n)
                .map_err(|_| Error::format(path, format!("tensor `{n}` missing")))?;
            if t.dtype() != Dtype::F32 {
                return Err(Error::format(
                    path,
                    format!("tensor `{n}`: expected F32, got {:?}", t.dtype()),
                ));
            }
            if let Some(s) = shape {
                if t.shape() != s {
                    return Err(Error::format(
                        path,
                        format!("tensor `{n}`: expected shape {s:?}, got {:?} (different model hyperparameters?)", t.shape()),
                    ));
                }
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((t.shape().to_vec(), v))
        };
        let mut ck = Checkpoint {
            epoch: num("epoch")? as usize,
            adam_step: num("optim.step")?,
            ..Default::default()
        };
        for (n, s) in names {
            let (_, v) = get(n, Some(s))?;
            ck.params.push((n.clone(), s.clone(), v));
        }
        for n in extra {
            let (s, v) = get(n, None)?;
            ck.extra.push((n.clone(), s, v));
        }
        if ck.adam_step > 0 {
            for (n, s) in names {
                ck.adam_m.push(get(&format!("optim.m.{n}"), Some(s))?.1);
                ck.adam_v.push(get(&format!("optim.v.{n}"), Some(s))?.1);
            }
        }
        Ok(ck)
    }
}
