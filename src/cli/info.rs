//! `info`: what a file holds. Particle files (.mrcs/.mrc/.star/.cs/.txt): kind, N, D, Apix, data mode,
//! stacks; pickles and npy/npz: the shapes and dtypes of their arrays.
//!
//! Example: `cryofield info particles.star`

use crate::io::npy::{read_npz, read_records, Npy};
use crate::io::pkl::{read_pkl_all, PyValue};
use crate::io::source::ParticleSource;
use std::path::PathBuf;

/// Describe a particle, pickle or numpy file.
#[derive(Debug, clap::Args)]
#[command(about = "Describe a particle stack, .star, .cs, .txt, .pkl, .npy or .npz file")]
pub struct Args {
    /// The file to describe
    pub input: PathBuf,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
}

/// A one-line description of a pickled value.
pub fn describe(v: &PyValue) -> String {
    match v {
        PyValue::Array(a) => format!("array {} {:?}", a.data.descr(), a.shape),
        PyValue::Tuple(items) => format!(
            "tuple({})",
            items.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        PyValue::List(items) => format!("list of {}", items.len()),
        PyValue::Dict(items) => format!("dict of {}", items.len()),
        other => format!("{other:?}"),
    }
}

/// Run `info`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let ext = a
        .input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    println!("file: {}", a.input.display());
    match ext.as_str() {
        "pkl" | "pt" | "pth" if crate::io::torch::is_zip(&a.input) => {
            let v = crate::io::torch::read_torch(&a.input)?;
            println!("torch checkpoint");
            match &v {
                PyValue::Dict(items) => {
                    for (k, x) in items {
                        println!("{}: {}", key(k), describe_nested(x));
                    }
                }
                _ => println!("{}", describe(&v)),
            }
        }
        "pkl" => {
            for (i, v) in read_pkl_all(&a.input)?.iter().enumerate() {
                println!("pickle {i}: {}", describe(v));
            }
        }
        "npy" => {
            let bytes = std::fs::read(&a.input).map_err(|e| crate::Error::io(&a.input, e))?;
            match crate::io::npy::parse_npy(&bytes, &a.input)? {
                Npy::Plain(arr) => println!("array {} {:?}", arr.data.descr(), arr.shape),
                Npy::Records(r) => println!("{} records, fields: {}", r.n, r.names().join(", ")),
            }
        }
        "npz" => {
            for (name, arr) in read_npz(&a.input)? {
                println!("{name}: array {} {:?}", arr.data.descr(), arr.shape);
            }
        }
        _ => {
            let src = match ParticleSource::open(&a.input, a.datadir.as_deref()) {
                Ok(src) => src,
                // metadata whose image stacks are elsewhere: describe the metadata, say why no images
                Err(e) if matches!(ext.as_str(), "star" | "cs") => {
                    describe_metadata(&a, &ext)?;
                    println!("images: unavailable ({e})");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            println!("kind: {}", src.kind.name());
            println!("N: {}", src.len());
            println!("D: {}", src.d());
            println!("Apix: {}", src.apix());
            println!("dtype: {:?}", src.files()[0].header.mode);
            println!("stacks: {}", src.files().len());
            if ext == "cs" {
                let r = read_records(&a.input)?;
                println!("fields: {}", r.names().join(", "));
            }
        }
    }
    Ok(())
}

/// A dict value one level down: a state dict lists its tensors, one per line.
fn describe_nested(v: &PyValue) -> String {
    match v {
        PyValue::Dict(items) if items.iter().all(|(_, x)| x.as_array().is_some()) => items
            .iter()
            .map(|(k, x)| format!("\n  {}: {}", key(k), describe(x)))
            .collect(),
        _ => describe(v),
    }
}

/// N, D and Apix from a .star or .cs file alone (for when its image stacks cannot be found).
fn describe_metadata(a: &Args, ext: &str) -> anyhow::Result<()> {
    let first = |v: crate::Result<Vec<f64>>| v.ok().and_then(|v| v.first().copied());
    let (n, d, apix) = if ext == "star" {
        let star = crate::io::star::StarFile::read(&a.input)?;
        (
            star.n_particles()?,
            first(star.particle_f64("rlnImageSize")),
            first(star.particle_f64("rlnImagePixelSize")),
        )
    } else {
        let r = read_records(&a.input)?;
        let col = |name: &str| {
            r.column(name)
                .ok()
                .and_then(|c| c.to_f64().first().copied())
        };
        (r.n, col("blob/shape"), col("blob/psize_A"))
    };
    let show = |v: Option<f64>| v.map_or("unknown".to_string(), |x| x.to_string());
    println!("kind: {ext}");
    println!("N: {n}");
    println!("D: {}", show(d));
    println!("Apix: {}", show(apix));
    Ok(())
}

/// A dict key as a user reads it: strings bare.
fn key(k: &PyValue) -> String {
    match k {
        PyValue::Str(s) => s.clone(),
        _ => describe(k),
    }
}
