//! Checkpoints: `weights.N.safetensors` holds every parameter under its torch state-dict name
//! (f32), the `gaussian` encoding's `rand_freqs`, and the Adam state (`optim.step`,
//! `optim.m.<name>`, `optim.v.<name>`), with the epoch in the metadata; `config.json` records
//! every hyperparameter and the data. Both are written atomically.
//!
//! The metadata also holds `settings`: a JSON object of the run's settings that determine its
//! arithmetic (seed, batch size, learning rate, model sizes, preprocessing, precision), each
//! as text that reads back bit for bit ([`Setting`]). `--load` takes them from there
//! ([`reconcile`]), so a resumed run is the run that wrote the checkpoint. Checkpoints written
//! before settings were recorded have none (an empty map).

use crate::io::atomic::write_bytes_atomic;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

/// A setting recorded in a checkpoint: its value as text that parses back to the same value
/// (floats in Rust's shortest round-trip form, so no bit is lost) and the inverse.
pub trait Setting {
    /// The value as recorded.
    fn text(&self) -> String;
    /// Set the value from recorded text; `false` when the text is not a value of this type.
    fn set_text(&mut self, text: &str) -> bool;
}

/// A configuration whose settings a checkpoint records: those that change a run's arithmetic.
pub trait Settings: Clone {
    /// Visit every setting as (its recorded name, its command-line flag, its value).
    fn each_setting(
        &mut self,
        f: &mut dyn FnMut(&'static str, &'static str, &mut dyn Setting) -> Result<()>,
    ) -> Result<()>;

    /// The settings as a checkpoint records them (name → [`Setting::text`]).
    fn settings(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let _ = self.clone().each_setting(&mut |key, _, v| {
            m.insert(key.to_string(), v.text());
            Ok(())
        });
        m
    }
}

macro_rules! setting_by_parse {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            fn text(&self) -> String {
                format!("{self:?}")
            }
            fn set_text(&mut self, text: &str) -> bool {
                text.parse().map(|v| *self = v).is_ok()
            }
        }
    )*};
}
// `{:?}` of a float is the shortest text that parses back to the same bits.
setting_by_parse!(u64, usize, i64, f64, f32, bool);

impl Setting for String {
    fn text(&self) -> String {
        self.clone()
    }
    fn set_text(&mut self, text: &str) -> bool {
        *self = text.to_string();
        true
    }
}

/// `none`, or the value's text.
impl<T: Setting + Default> Setting for Option<T> {
    fn text(&self) -> String {
        match self {
            Some(v) => v.text(),
            None => "none".into(),
        }
    }
    fn set_text(&mut self, text: &str) -> bool {
        if text == "none" {
            *self = None;
            return true;
        }
        let mut v = T::default();
        v.set_text(text) && {
            *self = Some(v);
            true
        }
    }
}

/// Two values separated by a space (`--norm MEAN STD`).
impl Setting for [f32; 2] {
    fn text(&self) -> String {
        format!("{} {}", self[0].text(), self[1].text())
    }
    fn set_text(&mut self, text: &str) -> bool {
        let mut it = text.split(' ');
        let (mut a, mut b) = (0f32, 0f32);
        let ok = matches!((it.next(), it.next(), it.next()), (Some(x), Some(y), None) if a.set_text(x) && b.set_text(y));
        if ok {
            *self = [a, b];
        }
        ok
    }
}

/// Reconcile the setting `key` (given on the command line as `flag`) of a run resumed from
/// the checkpoint at `path` with the value the checkpoint records: a setting the caller did
/// not give (`given` false) takes the recorded value; a given one must equal it, else an error
/// naming the checkpoint, the setting and both values. A setting the checkpoint does not
/// record is left as it is.
pub fn reconcile(
    path: &Path,
    recorded: &BTreeMap<String, String>,
    key: &str,
    flag: &str,
    value: &mut dyn Setting,
    given: bool,
) -> Result<()> {
    let Some(rec) = recorded.get(key) else {
        return Ok(());
    };
    let now = value.text();
    if *rec == now {
        return Ok(());
    }
    if given {
        return Err(Error::format(
            path,
            format!(
                "setting `{key}` ({flag}): the checkpoint's run used {rec}, this run asks for {now}; \
                 leave {flag} out to resume with the checkpoint's value, or start a new run without --load"
            ),
        ));
    }
    if !value.set_text(rec) {
        return Err(Error::format(
            path,
            format!("setting `{key}`: cannot read the recorded value `{rec}`"),
        ));
    }
    Ok(())
}

/// [`reconcile`] every setting of `cfg` with those `recorded` in the checkpoint at `path`;
/// `given(key)` says whether the command line gave the setting `key`.
pub fn reconcile_all<S: Settings>(
    cfg: &mut S,
    path: &Path,
    recorded: &BTreeMap<String, String>,
    given: impl Fn(&str) -> bool,
) -> Result<()> {
    cfg.each_setting(&mut |key, flag, v| reconcile(path, recorded, key, flag, v, given(key)))
}

/// The metadata of a checkpoint, read without its tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    /// Epoch (or step count) the checkpoint was written at.
    pub epoch: usize,
    /// Recorded settings (empty for a checkpoint written before they were recorded).
    pub settings: BTreeMap<String, String>,
}

/// The settings of the `settings` metadata entry (empty when absent).
fn parse_settings(path: &Path, meta: &HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    match meta.get("settings") {
        None => Ok(BTreeMap::new()),
        Some(s) => serde_json::from_str(s).map_err(|e| {
            Error::format(
                path,
                format!("metadata `settings` is not a JSON object of strings: {e}"),
            )
        }),
    }
}

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
    /// The run's settings ([`Setting::text`] by name; empty: none recorded).
    pub settings: BTreeMap<String, String>,
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
        if !self.settings.is_empty() {
            let json = serde_json::to_string(&self.settings)
                .map_err(|e| Error::format(path, format!("settings: {e}")))?;
            meta.insert("settings".to_string(), json);
        }
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
            settings: parse_settings(path, &meta)?,
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

/// The highest N of the files `STEM.N.EXT` in `dir` (None when there is none or `dir` cannot be
/// listed): a run's last numbered checkpoint or latents.
pub fn last_numbered(dir: &Path, stem: &str, ext: &str) -> Option<usize> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix(stem)?
                .strip_prefix('.')?
                .strip_suffix(ext)?
                .strip_suffix('.')?
                .parse()
                .ok()
        })
        .max()
}

/// Read the header of the checkpoint at `path` (epoch and settings) without its tensors. A
/// cryoDRGN checkpoint (`weights.N.pkl`, a torch zip) takes its settings from the `config.yaml`
/// beside it ([`crate::model::cryodrgn::header`]).
pub fn read_header(path: &Path) -> Result<Header> {
    if crate::io::torch::is_zip(path) {
        return crate::model::cryodrgn::header(path);
    }
    let io = |err| Error::Io {
        path: path.to_path_buf(),
        err,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        Error::format(
            path,
            "not a safetensors file: shorter than its header length",
        )
    })?;
    let len = u64::from_le_bytes(len);
    // safetensors' own limit on the header
    if len > 100_000_000 {
        return Err(Error::format(
            path,
            format!("not a safetensors file: header length {len}"),
        ));
    }
    let mut head = vec![0u8; len as usize];
    f.read_exact(&mut head)
        .map_err(|_| Error::format(path, "not a safetensors file: truncated header"))?;
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "__metadata__", default)]
        meta: HashMap<String, String>,
    }
    let h: Head = serde_json::from_slice(&head)
        .map_err(|e| Error::format(path, format!("not a safetensors file: header: {e}")))?;
    let epoch = h
        .meta
        .get("epoch")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::format(path, "metadata `epoch` missing"))?;
    Ok(Header {
        epoch,
        settings: parse_settings(path, &h.meta)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded text reads back bit for bit, including floats with no short decimal form.
    #[test]
    fn settings_round_trip_exactly() {
        let x = 0.1f64 + 0.2;
        let mut y = 0.0f64;
        assert!(y.set_text(&x.text()));
        assert_eq!(x.to_bits(), y.to_bits());
        let w = 0.85f32 / 3.0;
        let mut v = 0f32;
        assert!(v.set_text(&w.text()));
        assert_eq!(w.to_bits(), v.to_bits());
        let mut o: Option<i64> = Some(3);
        assert!(o.set_text("none") && o.is_none());
        assert!(o.set_text(&Some(-1i64).text()) && o == Some(-1));
        let mut n = [0f32; 2];
        assert!(n.set_text(&[1.5f32, -2e-7].text()) && n == [1.5, -2e-7]);
        assert!(!n.set_text("1.5"));
        let mut u = 7usize;
        assert!(!u.set_text("x") && u == 7);
    }

    /// Not given: the recorded value is taken; given and different: an error naming the file,
    /// the setting and both values; not recorded: left alone.
    #[test]
    fn reconcile_adopts_or_refuses() {
        let rec: BTreeMap<String, String> = [("seed".to_string(), "42".to_string())].into();
        let p = Path::new("ck/weights.3.safetensors");
        let mut seed = 7u64;
        reconcile(p, &rec, "seed", "--seed", &mut seed, false).unwrap();
        assert_eq!(seed, 42);
        let mut seed = 7u64;
        let e = reconcile(p, &rec, "seed", "--seed", &mut seed, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("weights.3.safetensors")
                && e.contains("seed")
                && e.contains("42")
                && e.contains('7'),
            "{e}"
        );
        let mut lr = 1e-3f64;
        reconcile(p, &rec, "lr", "--lr", &mut lr, false).unwrap();
        assert_eq!(lr, 1e-3);
    }
}
