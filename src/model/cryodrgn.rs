//! Opening runs trained by cryoDRGN (3.x–4.x): `config.yaml` and `weights.N.pkl`.
//!
//! cryoDRGN writes its run's settings to `config.yaml` (`dataset_args`, `lattice_args`,
//! `model_args`, `seed`, `version`) and its checkpoints with `torch.save({"epoch", "model_state_dict",
//! "optimizer_state_dict"})`. Our models use the reference's state-dict names (`encoder.main.*`,
//! `decoder.decoder.main.*`, `decoder.rand_freqs` in a VAE; `decoder.main.*` and `rand_freqs` in
//! `train_nn`'s homogeneous model), so a checkpoint maps onto our parameter store name for name,
//! each shape checked. The checkpoint is read by [`crate::io::torch`] (no code ever runs; a pickle
//! naming any global beyond those of a state dict is refused).
//!
//! | config.yaml | ours |
//! |---|---|
//! | `lattice_args.D` (D + 1) | image size D |
//! | `dataset_args.norm`, `invert_data`, `window`, `window_r`, `ctf`, `particles`, `poses`, `ind`, `datadir` | the same |
//! | `model_args.qlayers/qdim/players/pdim` (train_vae), `layers/dim` (train_nn) | encoder / decoder sizes |
//! | `model_args.zdim`, `encode_mode`, `enc_mask`, `pe_type`, `pe_dim`, `feat_sigma`, `domain`, `activation` | the same |
//!
//! `encode_mode: conv` maps `encoder.main.{0,2,4,6,8}.weight` onto our convolutional encoder
//! ([`crate::model::encoder::ConvNet`]); `pe_type: none` onto a decoder without encoding
//! (`FTSliceDecoder`, or the bare `ResidLinearMLP` of `--domain hartley`, whose names lose one
//! `decoder.`).
//!
//! Not supported (refused with a message): `encode_mode: tilt` (cryoDRGN 4's cryo-ET tilt
//! series), models of `abinit` runs (their config has no `model_args` of this form), the legacy
//! (pre-zip) torch format and `config.pkl` of cryoDRGN < 0.3.

use crate::error::IoContext;
use crate::io::pkl::PyValue;
use crate::io::torch::read_torch;
use crate::train::checkpoint::Checkpoint;
use crate::train::{RunRecord, TrainConfig};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// Whether `config` names a cryoDRGN `config.yaml` (by its extension).
pub fn is_yaml(config: &Path) -> bool {
    matches!(
        config.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The run described by a cryoDRGN `config.yaml`, as our [`RunRecord`] (epoch 0 and N 0: the
/// config does not hold them).
pub fn record_from_yaml(path: &Path) -> Result<RunRecord> {
    let text = std::fs::read_to_string(path).at(path)?;
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| Error::format(path, format!("not a YAML file: {e}")))?;
    let doc = docs
        .first()
        .ok_or_else(|| Error::format(path, "empty YAML file"))?;
    let bad = |what: &str| Error::format(path, format!("cryoDRGN config.yaml: {what}"));
    let model = &doc["model_args"];
    let data = &doc["dataset_args"];
    let lattice = &doc["lattice_args"];
    if model.is_badvalue() || lattice.is_badvalue() {
        return Err(bad(
            "no `model_args` / `lattice_args` (not a train_vae / train_nn / train_dec run of cryoDRGN)",
        ));
    }
    let int = |y: &Yaml, key: &str| -> Result<Option<i64>> {
        match &y[key] {
            Yaml::Integer(i) => Ok(Some(*i)),
            Yaml::Null | Yaml::BadValue => Ok(None),
            _ => Err(bad(&format!("`{key}` is not an integer"))),
        }
    };
    let usize_of = |y: &Yaml, key: &str| -> Result<Option<usize>> {
        int(y, key)?
            .map(|i| usize::try_from(i).map_err(|_| bad(&format!("`{key}` is negative"))))
            .transpose()
    };
    let float = |y: &Yaml, key: &str| -> Result<Option<f64>> {
        match &y[key] {
            Yaml::Real(_) => y[key]
                .as_f64()
                .map(Some)
                .ok_or_else(|| bad(&format!("`{key}` is not a number"))),
            Yaml::Integer(i) => Ok(Some(*i as f64)),
            Yaml::Null | Yaml::BadValue => Ok(None),
            _ => Err(bad(&format!("`{key}` is not a number"))),
        }
    };
    let string = |y: &Yaml, key: &str| -> Result<Option<String>> {
        match &y[key] {
            Yaml::String(s) => Ok(Some(s.clone())),
            Yaml::Null | Yaml::BadValue => Ok(None),
            _ => Err(bad(&format!("`{key}` is not a string"))),
        }
    };
    let boolean = |y: &Yaml, key: &str, default: bool| -> Result<bool> {
        match &y[key] {
            Yaml::Boolean(b) => Ok(*b),
            Yaml::Null | Yaml::BadValue => Ok(default),
            _ => Err(bad(&format!("`{key}` is not true/false"))),
        }
    };
    let path_of =
        |key: &str| -> Result<Option<PathBuf>> { Ok(string(data, key)?.map(PathBuf::from)) };
    let lat_d = usize_of(lattice, "D")?.ok_or_else(|| bad("`lattice_args.D` missing"))?;
    if lat_d < 3 || lat_d % 2 == 0 {
        return Err(bad(&format!(
            "`lattice_args.D` is {lat_d}; expected D + 1 for an even image size D"
        )));
    }
    let d = lat_d - 1;
    let norm = match &data["norm"] {
        Yaml::Array(v) if v.len() == 2 => {
            let x = |y: &Yaml| match y {
                Yaml::Integer(i) => Some(*i as f32),
                _ => y.as_f64().map(|f| f as f32),
            };
            match (x(&v[0]), x(&v[1])) {
                (Some(m), Some(s)) => [m, s],
                _ => return Err(bad("`dataset_args.norm` is not two numbers")),
            }
        }
        _ => return Err(bad("`dataset_args.norm` missing or not [mean, std]")),
    };
    let zdim = usize_of(model, "zdim")?;
    let encode_mode = string(model, "encode_mode")?.unwrap_or_else(|| "resid".into());
    if zdim.is_some() && encode_mode == "tilt" {
        return Err(bad(
            "`encode_mode: tilt` (cryo-ET tilt series) is not supported (resid, mlp and conv are)",
        ));
    }
    let pe_type = string(model, "pe_type")?.unwrap_or_else(|| "gaussian".into());
    let het = zdim.is_some();
    let (dec_layers, dec_dim) = if het {
        (usize_of(model, "players")?, usize_of(model, "pdim")?)
    } else {
        (usize_of(model, "layers")?, usize_of(model, "dim")?)
    };
    let (dec_layers, dec_dim) = match (dec_layers, dec_dim) {
        (Some(l), Some(w)) => (l, w),
        _ => {
            return Err(bad(if het {
                "`model_args.players` / `pdim` missing"
            } else {
                "`model_args.layers` / `dim` missing"
            }))
        }
    };
    let seed = int(doc, "seed")?.unwrap_or(0);
    let config = TrainConfig {
        particles: path_of("particles")?.unwrap_or_default(),
        poses: path_of("poses")?.unwrap_or_default(),
        ctf: path_of("ctf")?,
        outdir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        ind: path_of("ind")?,
        datadir: path_of("datadir")?,
        zdim,
        num_epochs: 0,
        batch_size: 8,
        lr: 1e-4,
        wd: 0.0,
        beta: None,
        beta_control: None,
        enc_layers: usize_of(model, "qlayers")?.unwrap_or(0),
        enc_dim: usize_of(model, "qdim")?.unwrap_or(0),
        encode_mode,
        enc_mask: int(model, "enc_mask")?,
        dec_layers,
        dec_dim,
        pe_type,
        pe_dim: usize_of(model, "pe_dim")?,
        feat_sigma: float(model, "feat_sigma")?.unwrap_or(0.5),
        domain: string(model, "domain")?.unwrap_or_else(|| "fourier".into()),
        activation: string(model, "activation")?.unwrap_or_else(|| "relu".into()),
        invert_data: boolean(data, "invert_data", true)?,
        window: boolean(data, "window", true)?,
        window_r: float(data, "window_r")?.unwrap_or(0.85) as f32,
        norm: Some(norm),
        lazy: false,
        seed: seed.max(0) as u64,
        checkpoint: 1,
        load: None,
        tilt: None,
        tilt_deg: 45.0,
        amp: true,
        twin: None,
        learned_pose: None,
        slow: None,
        known_intervention: None,
        refine_poses: None,
        autodecoder: false,
        shuffle_seed: None,
    };
    let version = string(doc, "version")?.unwrap_or_else(|| "unknown".into());
    Ok(RunRecord {
        config,
        d,
        n: 0,
        norm,
        epoch: 0,
        cryofield_version: format!("cryoDRGN {version} (config.yaml)"),
    })
}

/// The tensors of a cryoDRGN checkpoint (`weights.N.pkl`) as a [`Checkpoint`]: `names` are the
/// parameters our model expects, in store order, with their shapes, `extra` the `gaussian`
/// frequencies' name if any. Adam's moments come from `optimizer_state_dict` when it has them
/// (its parameter indices follow the state dict's order). The checkpoint's epoch is its
/// `epoch` entry minus one for cryoDRGN ≥ 4 (1-based epochs), as stored for 3.x.
pub fn checkpoint_from_torch(
    path: &Path,
    names: &[(String, Vec<usize>)],
    extra: &[String],
    version_major: Option<u32>,
) -> Result<Checkpoint> {
    let root = read_torch(path)?;
    let sd = root.get("model_state_dict").ok_or_else(|| {
        Error::format(
            path,
            "torch checkpoint without `model_state_dict` (not a cryoDRGN weights file)",
        )
    })?;
    let PyValue::Dict(items) = sd else {
        return Err(Error::format(path, "`model_state_dict` is not a dict"));
    };
    let tensor = |n: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let v = sd.get(n).ok_or_else(|| {
            let have: Vec<String> = items
                .iter()
                .filter_map(|(k, _)| match k {
                    PyValue::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .take(8)
                .collect();
            Error::format(
                path,
                format!(
                    "tensor `{n}` missing from model_state_dict (it has {}{})",
                    have.join(", "),
                    if items.len() > 8 { ", ..." } else { "" }
                ),
            )
        })?;
        let a = v
            .as_array()
            .ok_or_else(|| Error::format(path, format!("`{n}` is not a tensor")))?;
        Ok((a.shape.clone(), a.to_f32()))
    };
    let mut ck = Checkpoint {
        epoch: epoch_of(&root, version_major).unwrap_or(0),
        ..Default::default()
    };
    for (n, s) in names {
        let (shape, v) = tensor(n)?;
        if &shape != s {
            return Err(Error::format(
                path,
                format!(
                    "tensor `{n}`: shape {shape:?}, the model of config.yaml expects {s:?} \
                     (a different config.yaml?)"
                ),
            ));
        }
        ck.params.push((n.clone(), shape, v));
    }
    for n in extra {
        let (shape, v) = tensor(n)?;
        ck.extra.push((n.clone(), shape, v));
    }
    adam_state(path, &root, items, names, &mut ck)?;
    Ok(ck)
}

/// The 0-based epoch of a checkpoint's `epoch` entry: cryoDRGN ≥ 4 numbers epochs from 1, 3.x
/// from 0 (None without the entry).
fn epoch_of(root: &PyValue, version_major: Option<u32>) -> Option<usize> {
    let raw = match root.get("epoch")? {
        PyValue::Int(e) => (*e).max(0) as usize,
        _ => return None,
    };
    Some(match version_major {
        Some(v) if v >= 4 => raw.saturating_sub(1),
        _ => raw,
    })
}

/// Adam's step and moments from `optimizer_state_dict.state`, keyed by the parameter's position
/// in the model's `parameters()` (= its state-dict position: cryoDRGN's models have no buffers).
/// Left empty when absent or when any of our parameters has none.
fn adam_state(
    path: &Path,
    root: &PyValue,
    items: &[(PyValue, PyValue)],
    names: &[(String, Vec<usize>)],
    ck: &mut Checkpoint,
) -> Result<()> {
    let Some(state) = root
        .get("optimizer_state_dict")
        .and_then(|o| o.get("state"))
    else {
        return Ok(());
    };
    let PyValue::Dict(entries) = state else {
        return Ok(());
    };
    let position = |n: &str| {
        items
            .iter()
            .position(|(k, _)| matches!(k, PyValue::Str(s) if s == n))
    };
    let mut step = None;
    let (mut m, mut v) = (Vec::new(), Vec::new());
    for (n, s) in names {
        let Some(pos) = position(n) else {
            return Ok(());
        };
        let Some((_, st)) = entries
            .iter()
            .find(|(k, _)| matches!(k, PyValue::Int(i) if *i == pos as i64))
        else {
            return Ok(());
        };
        let arr = |key: &str| -> Result<Option<Vec<f32>>> {
            match st.get(key).and_then(PyValue::as_array) {
                Some(a) if &a.shape == s => Ok(Some(a.to_f32())),
                Some(a) => Err(Error::format(
                    path,
                    format!("optimizer state `{key}` of `{n}` has shape {:?}", a.shape),
                )),
                None => Ok(None),
            }
        };
        let (Some(em), Some(ev)) = (arr("exp_avg")?, arr("exp_avg_sq")?) else {
            return Ok(());
        };
        let t = match st.get("step") {
            Some(PyValue::Int(i)) => *i as f64,
            Some(PyValue::Float(f)) => *f,
            Some(PyValue::Array(a)) if a.len() == 1 => a.to_f32()[0] as f64,
            _ => return Ok(()),
        };
        step = Some(t.max(0.0) as u64);
        m.push(em);
        v.push(ev);
    }
    ck.adam_step = step.unwrap_or(0);
    ck.adam_m = m;
    ck.adam_v = v;
    Ok(())
}

/// The settings of a cryoDRGN run that fix its model and data (those `--load` takes from it):
/// [`TrainConfig::each_setting`]'s names.
const RESUMED: [&str; 17] = [
    "seed",
    "zdim",
    "enc_layers",
    "enc_dim",
    "encode_mode",
    "enc_mask",
    "dec_layers",
    "dec_dim",
    "pe_type",
    "pe_dim",
    "feat_sigma",
    "domain",
    "activation",
    "invert_data",
    "window",
    "window_r",
    "norm",
];

/// The `config.yaml` of the run a cryoDRGN checkpoint belongs to: beside it.
fn config_beside(path: &Path) -> Result<PathBuf> {
    let c = path
        .parent()
        .map(|d| d.join("config.yaml"))
        .unwrap_or_else(|| PathBuf::from("config.yaml"));
    if c.exists() {
        Ok(c)
    } else {
        Err(Error::format(
            path,
            format!(
                "a cryoDRGN checkpoint is read with its run's config.yaml, expected at {}",
                c.display()
            ),
        ))
    }
}

/// The header of a cryoDRGN checkpoint for `--load`: its epoch (0-based) and the model and data
/// settings of the `config.yaml` beside it (seed, sizes, encoding, preprocessing, norm), which a
/// resumed run takes unless given (and must match when given).
pub fn header(path: &Path) -> Result<crate::train::checkpoint::Header> {
    use crate::train::checkpoint::Settings;
    let rec = record_from_yaml(&config_beside(path)?)?;
    let root = read_torch(path)?;
    let epoch = epoch_of(&root, version_major(&rec))
        .ok_or_else(|| Error::format(path, "torch checkpoint without an `epoch`"))?;
    let settings = rec
        .config
        .settings()
        .into_iter()
        .filter(|(k, _)| RESUMED.contains(&k.as_str()))
        .collect();
    Ok(crate::train::checkpoint::Header { epoch, settings })
}

/// A cryoDRGN checkpoint's tensors and Adam state for our model ([`checkpoint_from_torch`], the
/// epoch convention of the `config.yaml` beside it).
pub fn load_checkpoint(
    path: &Path,
    names: &[(String, Vec<usize>)],
    extra: &[String],
) -> Result<Checkpoint> {
    let rec = record_from_yaml(&config_beside(path)?)?;
    checkpoint_from_torch(path, names, extra, version_major(&rec))
}

/// The major version of cryoDRGN recorded in a [`RunRecord`] made by [`record_from_yaml`].
pub fn version_major(record: &RunRecord) -> Option<u32> {
    record
        .cryofield_version
        .strip_prefix("cryoDRGN ")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Whether cryoDRGN can read a run of ours: train-vae / train-nn models without our extensions
/// (twin prior, learned poses, SlowVAE pairs, tilt pairs, autodecoder).
pub fn exportable(cfg: &TrainConfig) -> bool {
    cfg.twin.is_none()
        && cfg.learned_pose.is_none()
        && cfg.slow.is_none()
        && cfg.tilt.is_none()
        && !cfg.autodecoder
        && matches!(cfg.encode_mode.as_str(), "resid" | "mlp" | "conv")
}

/// Write a checkpoint as cryoDRGN 4.3 writes `weights.pkl`: `{"epoch": 1-based, "model_state_dict",
/// "optimizer_state_dict"}` (torch's Adam layout: `param_groups` with `lr`, `betas`, `eps`,
/// `weight_decay`, ..., and per parameter `step`, `exp_avg`, `exp_avg_sq`), the state dict in the
/// reference's order (the `gaussian` frequencies before the decoder's MLP).
pub fn write_weights(path: &Path, ck: &Checkpoint, lr: f64, wd: f64) -> Result<()> {
    use crate::io::torch::{write_torch, TorchValue as T};
    let tensor = |s: &[usize], v: &[f32]| T::Tensor {
        shape: s.to_vec(),
        data: v.to_vec(),
    };
    // (name, tensor, index into ck.params for Adam state)
    let mut entries: Vec<(String, T, Option<usize>)> = Vec::new();
    let first_mlp = ck
        .params
        .iter()
        .position(|(n, _, _)| n.ends_with("decoder.main.0.weight"))
        .unwrap_or(ck.params.len());
    for (i, (n, s, v)) in ck.params.iter().enumerate() {
        if i == first_mlp {
            for (en, es, ev) in &ck.extra {
                entries.push((en.clone(), tensor(es, ev), None));
            }
        }
        entries.push((n.clone(), tensor(s, v), Some(i)));
    }
    if first_mlp == ck.params.len() {
        for (en, es, ev) in &ck.extra {
            entries.push((en.clone(), tensor(es, ev), None));
        }
    }
    let mut state = Vec::new();
    if ck.adam_step > 0 && ck.adam_m.len() == ck.params.len() {
        for (pos, (_, _, pi)) in entries.iter().enumerate() {
            let Some(i) = *pi else { continue };
            let s = &ck.params[i].1;
            state.push((
                T::Int(pos as i64),
                T::Dict(vec![
                    (
                        T::Str("step".into()),
                        T::Tensor {
                            shape: vec![],
                            data: vec![ck.adam_step as f32],
                        },
                    ),
                    (T::Str("exp_avg".into()), tensor(s, &ck.adam_m[i])),
                    (T::Str("exp_avg_sq".into()), tensor(s, &ck.adam_v[i])),
                ]),
            ));
        }
    }
    let group = T::Dict(vec![
        (T::Str("lr".into()), T::Float(lr)),
        (
            T::Str("betas".into()),
            T::Tuple(vec![T::Float(0.9), T::Float(0.999)]),
        ),
        (T::Str("eps".into()), T::Float(1e-8)),
        (T::Str("weight_decay".into()), T::Float(wd)),
        (T::Str("amsgrad".into()), T::Bool(false)),
        (T::Str("maximize".into()), T::Bool(false)),
        (T::Str("foreach".into()), T::None),
        (T::Str("capturable".into()), T::Bool(false)),
        (T::Str("differentiable".into()), T::Bool(false)),
        (T::Str("fused".into()), T::None),
        (T::Str("decoupled_weight_decay".into()), T::Bool(false)),
        (
            T::Str("params".into()),
            T::List((0..entries.len()).map(|k| T::Int(k as i64)).collect()),
        ),
    ]);
    let root = T::Dict(vec![
        (T::Str("epoch".into()), T::Int(ck.epoch as i64 + 1)),
        (
            T::Str("model_state_dict".into()),
            T::OrderedDict(entries.into_iter().map(|(n, t, _)| (n, t)).collect()),
        ),
        (
            T::Str("optimizer_state_dict".into()),
            T::Dict(vec![
                (T::Str("state".into()), T::Dict(state)),
                (T::Str("param_groups".into()), T::List(vec![group])),
            ]),
        ),
    ]);
    write_torch(path, &root)
}

/// A run's settings as cryoDRGN 4.3's `config.yaml` (what its `eval_vol`, `analyze` and
/// `train_vae --load` read), written atomically.
pub fn write_config_yaml(path: &Path, record: &RunRecord) -> Result<()> {
    let c = &record.config;
    let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let opt_path = |p: &Option<PathBuf>| match p {
        Some(p) => q(&p.display().to_string()),
        None => "null".into(),
    };
    let opt_usize = |v: Option<usize>| v.map_or("null".to_string(), |v| v.to_string());
    let d = record.d;
    let mut y = String::new();
    y.push_str("dataset_args:\n");
    y.push_str(&format!("  ctf: {}\n", opt_path(&c.ctf)));
    y.push_str(&format!("  datadir: {}\n", opt_path(&c.datadir)));
    y.push_str("  do_pose_sgd: false\n");
    y.push_str(&format!("  ind: {}\n", opt_path(&c.ind)));
    y.push_str(&format!("  invert_data: {}\n", c.invert_data));
    y.push_str("  keepreal: false\n");
    y.push_str(&format!(
        "  norm:\n  - {:?}\n  - {:?}\n",
        record.norm[0] as f64, record.norm[1] as f64
    ));
    y.push_str(&format!(
        "  particles: {}\n",
        q(&c.particles.display().to_string())
    ));
    y.push_str(&format!("  poses: {}\n", q(&c.poses.display().to_string())));
    y.push_str(&format!("  window: {}\n", c.window));
    y.push_str(&format!("  window_r: {:?}\n", c.window_r));
    y.push_str(&format!(
        "lattice_args:\n  D: {}\n  extent: 0.5\n  ignore_DC: true\n",
        d + 1
    ));
    y.push_str("model_args:\n");
    y.push_str(&format!("  activation: {}\n", c.activation));
    match c.zdim {
        Some(z) => {
            // conv reads the whole image: −1, with which the reference's HetOnlyVAE.load builds it
            let enc_mask = match c.encode_mode.as_str() {
                "conv" => -1,
                _ => c.enc_mask.unwrap_or((d / 2) as i64),
            };
            y.push_str(&format!("  domain: {}\n", c.domain));
            y.push_str(&format!("  enc_mask: {enc_mask}\n"));
            y.push_str(&format!("  encode_mode: {}\n", c.encode_mode));
            y.push_str(&format!("  feat_sigma: {:?}\n", c.feat_sigma));
            y.push_str(&format!("  pdim: {}\n", c.dec_dim));
            y.push_str(&format!("  pe_dim: {}\n", opt_usize(c.pe_dim)));
            y.push_str(&format!("  pe_type: {}\n", c.pe_type));
            y.push_str(&format!("  players: {}\n", c.dec_layers));
            y.push_str(&format!("  qdim: {}\n", c.enc_dim));
            y.push_str(&format!("  qlayers: {}\n", c.enc_layers));
            y.push_str(&format!("  zdim: {z}\n"));
        }
        None => {
            y.push_str(&format!("  dim: {}\n", c.dec_dim));
            y.push_str(&format!("  domain: {}\n", c.domain));
            y.push_str(&format!("  feat_sigma: {:?}\n", c.feat_sigma));
            y.push_str(&format!("  layers: {}\n", c.dec_layers));
            y.push_str(&format!("  pe_dim: {}\n", opt_usize(c.pe_dim)));
            y.push_str(&format!("  pe_type: {}\n", c.pe_type));
        }
    }
    y.push_str(&format!("seed: {}\n", c.seed));
    // cryoDRGN 4.3.1's layout and epoch numbering, written by cryofield
    y.push_str(&format!(
        "version: 4.3.1-cryofield-{}\n",
        env!("CARGO_PKG_VERSION")
    ));
    crate::io::atomic::write_bytes_atomic(path, y.as_bytes())
}
