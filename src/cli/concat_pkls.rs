//! `concat-pkls`: concatenate .pkl files along their first axis (cryoDRGN's `concat_pkls`): arrays
//! (ctf.pkl, latents, indices, …) or pose tuples `(rot, trans)`, item by item. All inputs must be
//! of one kind (arrays, or tuples of the same length) with the same trailing shape; dtypes follow
//! numpy's promotion (the same dtype is kept; floats mixed with anything give float64; integers
//! of different widths give int64). The output is written atomically.
//!
//! Example: `cryofield concat-pkls pose.0.pkl pose.1.pkl -o pose.pkl`

use crate::cli::filter_pkl::{arrays_of, read_first, value_of};
use crate::io::array::{ArrayData, NdArray};
use crate::io::pkl::write_pkl;
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Concatenate .pkl files.
#[derive(Debug, clap::Args)]
#[command(about = "Concatenate arrays or pose tuples of several .pkl files along the first axis")]
pub struct Args {
    /// Input .pkl files, in order
    #[arg(required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output .pkl
    #[arg(short = 'o')]
    pub o: PathBuf,
}

/// Concatenate `parts` (item `k` of every input; `files` names them in errors) along axis 0.
fn concat(parts: &[(&NdArray, &Path)], k: usize) -> anyhow::Result<NdArray> {
    let (first, first_file) = parts[0];
    for (a, f) in parts {
        if a.shape[1..] != first.shape[1..] {
            bail!(
                "{}: item {k} has shape {:?}, which does not stack with {:?} of {}",
                f.display(),
                a.shape,
                first.shape,
                first_file.display()
            );
        }
    }
    let rows: usize = parts.iter().map(|(a, _)| a.shape[0]).sum();
    let mut shape = first.shape.clone();
    shape[0] = rows;
    let same = parts
        .iter()
        .all(|(a, _)| std::mem::discriminant(&a.data) == std::mem::discriminant(&first.data));
    let data = if same {
        macro_rules! cat {
            ($variant:ident) => {
                ArrayData::$variant(
                    parts
                        .iter()
                        .flat_map(|(a, _)| match &a.data {
                            ArrayData::$variant(v) => v.as_slice(),
                            _ => &[],
                        })
                        .copied()
                        .collect(),
                )
            };
        }
        match first.data {
            ArrayData::F32(_) => cat!(F32),
            ArrayData::F64(_) => cat!(F64),
            ArrayData::I32(_) => cat!(I32),
            ArrayData::I64(_) => cat!(I64),
            ArrayData::U8(_) => cat!(U8),
            ArrayData::Bool(_) => cat!(Bool),
        }
    } else if parts
        .iter()
        .any(|(a, _)| matches!(a.data, ArrayData::F32(_) | ArrayData::F64(_)))
    {
        ArrayData::F64(parts.iter().flat_map(|(a, _)| a.to_f64()).collect())
    } else {
        let mut v = Vec::with_capacity(shape.iter().product());
        for (a, _) in parts {
            v.extend(a.to_i64()?);
        }
        ArrayData::I64(v)
    };
    Ok(NdArray::new(shape, data)?)
}

/// Run `concat-pkls`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let values = a
        .input
        .iter()
        .map(|p| read_first(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut all = Vec::with_capacity(values.len());
    for (v, p) in values.iter().zip(&a.input) {
        all.push(arrays_of(v, p)?);
    }
    let (first, kind) = &all[0];
    for ((arrays, k), p) in all.iter().zip(&a.input) {
        if k.is_some() != kind.is_some() || arrays.len() != first.len() {
            let what = |k: &Option<bool>, n: usize| match k {
                None => "an array".to_string(),
                Some(_) => format!("a {n}-tuple"),
            };
            bail!(
                "{} holds {}, but {} holds {}: all inputs must be arrays, or pose tuples alike",
                p.display(),
                what(k, arrays.len()),
                a.input[0].display(),
                what(kind, first.len())
            );
        }
    }
    let out = (0..first.len())
        .map(|k| {
            let parts: Vec<(&NdArray, &Path)> = all
                .iter()
                .zip(&a.input)
                .map(|((arrays, _), p)| (arrays[k], p.as_path()))
                .collect();
            concat(&parts, k)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shapes: Vec<Vec<usize>> = out.iter().map(|x| x.shape.clone()).collect();
    write_pkl(&a.o, &value_of(out, *kind))?;
    eprintln!(
        "concatenated {} files: shape {shapes:?}; wrote {}",
        a.input.len(),
        a.o.display()
    );
    Ok(())
}
