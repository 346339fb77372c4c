//! Ground-truth clouds from atomic models (`pc-prepare`): heavy atoms → the N means of a tied
//! Gaussian mixture (spec §1, A14) → centred and scaled into [−1, 1]³ (A16).
//!
//! - **Heavy atoms**: no hydrogen or deuterium (element H/D/T), no water (`HOH`, `WAT`, `DOD`,
//!   `H2O`), and of alternate locations only the blank one and, per residue position (chain,
//!   number; so also for microheterogeneity), the first indicator that position shows.
//!   `read_model` keeps every atom; the filter is here.
//! - **Normalisation**: centre = centroid of the means, scale = max |coordinate − centre| over the
//!   three axes, so the cloud has centroid 0 and max |x| = 1 exactly; `x_Å = center + scale · x`.
//! - **Inputs**: one model file (PDB or mmCIF), a multi-model file (every model a structure), a
//!   folder of such files (sorted by name, every model of every file), or a `.npy` cloud
//!   `(N, 3)` / `(S, N, 3)` taken as Å: normalised as it is, or, when a number of points different
//!   from its N is asked for, first reduced to that many tied-GMM means.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::io::npy::read_npy;
use crate::io::pdb::{atomic_number, read_models, Atom};
use crate::pointcloud::gmm_fit::{fit_gmm, Covariance, GmmFitParams};
use crate::{Error, Result};

/// Water residue names dropped with the hydrogens.
pub const WATERS: [&str; 4] = ["HOH", "WAT", "DOD", "H2O"];

/// Heavy-atom coordinates `(a, 3)` in Å of one model: no H/D, no water, first alternate location.
pub fn heavy_atoms(atoms: &[Atom]) -> Vec<f64> {
    let mut first_alt: HashMap<(&str, Option<i64>), &str> = HashMap::new();
    let mut out = Vec::with_capacity(3 * atoms.len());
    for a in atoms {
        if atomic_number(&a.element) == Some(1) || WATERS.contains(&a.res_name.as_str()) {
            continue;
        }
        if !a.alt_loc.is_empty() {
            let key = (a.chain.as_str(), a.res_seq);
            if *first_alt.entry(key).or_insert(a.alt_loc.as_str()) != a.alt_loc {
                continue;
            }
        }
        out.extend_from_slice(&a.pos);
    }
    out
}

/// Centre and scale a cloud `(n, 3)`: `(x, center, scale)` with `x = (p − center)/scale`,
/// centroid 0 and max |x| = 1.
///
/// # Errors
/// When the cloud is empty or all its points coincide (no scale).
pub fn normalise(points: &[f64]) -> Result<(Vec<f64>, [f64; 3], f64)> {
    let n = points.len() / 3;
    if n == 0 {
        return Err(Error::invalid("normalise: empty cloud"));
    }
    let mut c = [0.0; 3];
    for p in points.chunks_exact(3) {
        for d in 0..3 {
            c[d] += p[d] / n as f64;
        }
    }
    let scale = points
        .chunks_exact(3)
        .flat_map(|p| (0..3).map(move |d| (p[d] - c[d]).abs()))
        .fold(0.0f64, f64::max);
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::invalid(
            "normalise: the points coincide (zero extent), no scale",
        ));
    }
    let x = points
        .chunks_exact(3)
        .flat_map(|p| (0..3).map(move |d| (p[d] - c[d]) / scale))
        .collect();
    Ok((x, c, scale))
}

/// One structure to prepare: a label for messages (file, model) and its points `(a, 3)` in Å.
#[derive(Clone, Debug, PartialEq)]
pub struct Structure {
    /// `FILE` or `FILE model m` (1-based)
    pub label: String,
    /// the file it came from
    pub path: PathBuf,
    /// heavy atoms or cloud points `(a, 3)`, Å
    pub points: Vec<f64>,
    /// true for atoms (fitted by a GMM), false for a `.npy` cloud
    pub atomic: bool,
}

/// The structures of an input: a model file (all its models), a folder of model files, or a
/// `.npy` cloud `(N, 3)` / `(S, N, 3)`.
///
/// # Errors
/// An unreadable or malformed file, a folder without model files, a model without heavy atoms,
/// a `.npy` of another shape or with non-finite values; every error names the file.
pub fn load_structures(path: &Path) -> Result<Vec<Structure>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .map(str::to_ascii_lowercase)
                        .is_some_and(|e| ["pdb", "ent", "cif", "mmcif"].contains(&e.as_str()))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::format(
                path,
                "folder holds no model files (.pdb, .ent, .cif, .mmcif)",
            ));
        }
        let mut out = Vec::new();
        for f in files {
            out.extend(model_structures(&f)?);
        }
        return Ok(out);
    }
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        npy_structures(path)
    } else {
        model_structures(path)
    }
}

fn model_structures(path: &Path) -> Result<Vec<Structure>> {
    let models = read_models(path)?;
    let many = models.len() > 1;
    models
        .iter()
        .enumerate()
        .map(|(m, atoms)| {
            let points = heavy_atoms(atoms);
            let label = if many {
                format!("{} model {}", path.display(), m + 1)
            } else {
                path.display().to_string()
            };
            if points.is_empty() {
                return Err(Error::format(
                    path,
                    format!("{label}: no heavy atoms (only hydrogens or water)"),
                ));
            }
            Ok(Structure {
                label,
                path: path.to_path_buf(),
                points,
                atomic: true,
            })
        })
        .collect()
}

/// A cloud file `.npy` `(N, 3)` or `(S, N, 3)` (any float or integer dtype): the values as f64,
/// S and N.
///
/// # Errors
/// An unreadable file, another shape, no points or a non-finite value; the error names the file.
pub fn read_clouds(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    let a = read_npy(path)?;
    let (s, n) = match a.shape[..] {
        [n, 3] => (1, n),
        [s, n, 3] => (s, n),
        _ => {
            return Err(Error::format(
                path,
                format!(
                    "cloud: expected shape (N, 3) or (S, N, 3), got {:?}",
                    a.shape
                ),
            ))
        }
    };
    if s == 0 || n == 0 {
        return Err(Error::format(
            path,
            format!("cloud: no points (shape {:?})", a.shape),
        ));
    }
    let v = a.to_f64();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::format(
            path,
            format!("cloud: non-finite value at element {i}"),
        ));
    }
    Ok((v, s, n))
}

fn npy_structures(path: &Path) -> Result<Vec<Structure>> {
    let (v, s, n) = read_clouds(path)?;
    Ok(v.chunks_exact(3 * n)
        .enumerate()
        .map(|(i, c)| Structure {
            label: if s > 1 {
                format!("{} cloud {i}", path.display())
            } else {
                path.display().to_string()
            },
            path: path.to_path_buf(),
            points: c.to_vec(),
            atomic: false,
        })
        .collect())
}

/// The normalised cloud `(n, 3)`, centre (Å) and scale (Å per unit) of one structure: the `n`
/// means of a GMM (covariance `cov`, tied in the paper; sklearn defaults, k-means++ seeded by
/// `seed`) of its points, or, for a `.npy` cloud with `n` points already, the cloud itself.
///
/// # Errors
/// When the structure has fewer points than `n` (named by its label and file), or the fit fails.
pub fn prepare_structure(
    st: &Structure,
    n: usize,
    cov: Covariance,
    seed: u64,
) -> Result<(Vec<f64>, [f64; 3], f64)> {
    let a = st.points.len() / 3;
    if !st.atomic && a == n {
        return normalise(&st.points);
    }
    if a < n {
        return Err(Error::format(
            &st.path,
            format!(
                "{}: {a} {} but -n {n} mixture components asked for (need at least as many)",
                st.label,
                if st.atomic { "heavy atoms" } else { "points" }
            ),
        ));
    }
    let fit = fit_gmm(&st.points, &GmmFitParams::new(n, cov, seed))
        .map_err(|e| Error::format(&st.path, format!("{}: {e}", st.label)))?;
    normalise(&fit.means)
}
