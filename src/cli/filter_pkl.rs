//! `filter-pkl`: keep the rows (first axis) of a .pkl listed in an index .pkl, or its first N rows
//! (cryoDRGN's `filter_pkl`): a pose.pkl (tuple of rotations (N,3,3) and translations (N,2): both
//! filtered), a ctf.pkl (N,9), latents (N,zdim), labels (N) or any other array. The dtypes are
//! kept; the output is written atomically.
//!
//! A file of several pickles (cryoDRGN's `z.N.pkl` holds z_mu then z_logvar) is filtered on its
//! first, as the reference does, with a warning.
//!
//! Example: `cryofield filter-pkl pose.pkl --ind good.pkl -o pose.good.pkl`

use crate::io::array::{ArrayData, NdArray};
use crate::io::pkl::{read_pkl_all, write_pkl, PyValue};
use crate::meta::load_indices;
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Filter a .pkl along its first axis.
#[derive(Debug, clap::Args)]
#[command(about = "Keep the rows of a .pkl (poses, CTF, latents, …) listed in an index .pkl")]
#[command(group(clap::ArgGroup::new("which").required(true).args(["ind", "first"])))]
pub struct Args {
    /// Input .pkl (an array, or a tuple of arrays such as a pose.pkl)
    pub input: PathBuf,
    /// Index .pkl (integer array of 0-based positions)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Keep the first N rows instead
    #[arg(long)]
    pub first: Option<usize>,
    /// Output .pkl
    #[arg(short = 'o', long = "output")]
    pub o: PathBuf,
}

/// Rows `ind` (in that order) of `a` along its first axis.
///
/// # Panics
/// When an index is `≥ a.shape[0]` or `a` is 0-d; callers check both.
pub(crate) fn take_rows(a: &NdArray, ind: &[usize]) -> NdArray {
    let row: usize = a.shape[1..].iter().product();
    fn gather<T: Copy>(v: &[T], ind: &[usize], row: usize) -> Vec<T> {
        ind.iter()
            .flat_map(|&i| v[i * row..(i + 1) * row].iter().copied())
            .collect()
    }
    let data = match &a.data {
        ArrayData::F32(v) => ArrayData::F32(gather(v, ind, row)),
        ArrayData::F64(v) => ArrayData::F64(gather(v, ind, row)),
        ArrayData::I32(v) => ArrayData::I32(gather(v, ind, row)),
        ArrayData::I64(v) => ArrayData::I64(gather(v, ind, row)),
        ArrayData::U8(v) => ArrayData::U8(gather(v, ind, row)),
        ArrayData::Bool(v) => ArrayData::Bool(gather(v, ind, row)),
    };
    let mut shape = a.shape.clone();
    shape[0] = ind.len();
    NdArray { shape, data }
}

/// The arrays of a pickle value that is an array or a tuple/list of arrays, and whether it was a
/// tuple (`Some(true)`), a list (`Some(false)`) or a bare array (`None`); each array has at least
/// one axis, and all have the same length along it. Errors name `path`.
pub(crate) fn arrays_of<'a>(
    v: &'a PyValue,
    path: &Path,
) -> anyhow::Result<(Vec<&'a NdArray>, Option<bool>)> {
    let (items, kind): (Vec<&PyValue>, Option<bool>) = match v {
        PyValue::Array(_) => (vec![v], None),
        PyValue::Tuple(t) => (t.iter().collect(), Some(true)),
        PyValue::List(t) => (t.iter().collect(), Some(false)),
        _ => bail!(
            "{}: expected a numpy array or a tuple of arrays (e.g. a pose.pkl)",
            path.display()
        ),
    };
    if items.is_empty() {
        bail!("{}: an empty tuple holds no data", path.display());
    }
    let arrays = items
        .iter()
        .enumerate()
        .map(|(k, x)| match x {
            PyValue::Array(a) if !a.shape.is_empty() => Ok(a),
            PyValue::Array(_) => bail!("{}: item {k} is a 0-d array", path.display()),
            _ => bail!(
                "{}: item {k} of the tuple is not a numpy array",
                path.display()
            ),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let n = arrays[0].shape[0];
    for (k, a) in arrays.iter().enumerate() {
        if a.shape[0] != n {
            bail!(
                "{}: item {k} has {} rows (shape {:?}) but item 0 has {n}",
                path.display(),
                a.shape[0],
                a.shape
            );
        }
    }
    Ok((arrays, kind))
}

/// Rebuild a value of the kind [`arrays_of`] reported from its arrays.
pub(crate) fn value_of(arrays: Vec<NdArray>, kind: Option<bool>) -> PyValue {
    let mut items: Vec<PyValue> = arrays.into_iter().map(PyValue::Array).collect();
    match kind {
        None => items.swap_remove(0),
        Some(true) => PyValue::Tuple(items),
        Some(false) => PyValue::List(items),
    }
}

/// Read the first pickle of `path`, warning when the file holds more.
pub(crate) fn read_first(path: &Path) -> anyhow::Result<PyValue> {
    let mut all = read_pkl_all(path)?;
    if all.len() > 1 {
        eprintln!(
            "warning: {} holds {} pickles; only the first is used (as cryoDRGN's load_pkl does)",
            path.display(),
            all.len()
        );
    }
    if all.is_empty() {
        bail!("{}: holds no pickle", path.display());
    }
    Ok(all.swap_remove(0))
}

/// Run `filter-pkl`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let v = read_first(&a.input)?;
    let (arrays, kind) = arrays_of(&v, &a.input)?;
    let n = arrays[0].shape[0];
    let ind: Vec<usize> = match (&a.ind, a.first) {
        (Some(p), _) => load_indices(p, n)?,
        (None, Some(k)) => {
            if k == 0 || k > n {
                bail!(
                    "--first {k}: {} has {n} rows (keep between 1 and {n})",
                    a.input.display()
                );
            }
            (0..k).collect()
        }
        (None, None) => bail!("give --ind or --first"),
    };
    let before: Vec<Vec<usize>> = arrays.iter().map(|x| x.shape.clone()).collect();
    let out: Vec<NdArray> = arrays.iter().map(|x| take_rows(x, &ind)).collect();
    let after: Vec<Vec<usize>> = out.iter().map(|x| x.shape.clone()).collect();
    write_pkl(&a.o, &value_of(out, kind))?;
    eprintln!("shape {before:?} → {after:?}; wrote {}", a.o.display());
    Ok(())
}
