//! The two files of the point-cloud method.
//!
//! **Ground truth** (`pc-prepare`, `GT.npz`): `cloud` `(S, N, 3)` f32, the normalised clouds
//! (centroid 0, max |coordinate| 1); `center` `(S, 3)` f64 and `scale` `(S,)` f64 with
//! `x_Å = center + scale · x`; optionally `atoms` `(A, 3)` f32, the heavy atoms in Å (written
//! when S = 1; the atomic RMSD needs them).
//!
//! **Observations** (`pc-observe`, `OBS.npz`), all in normalised units of one cloud of `n_points`
//! points: `proj_k` `(M, 2)` with its rotation `rot_k` `(3, 3)`, k = 0, 1, …: the observed points
//! are the xy columns of `x·R` (row vectors); `cg` `(M, 3)`, coarse-grained map means; `subunit`
//! `(L, 3)`, the points of one subunit; `n_points` `(1,)` i64, N of the cloud observed.

use std::path::Path;

use crate::io::array::{ArrayData, NdArray};
use crate::io::npy::{read_npz, write_npz};
use crate::{Error, Result};

/// Ground-truth clouds and their transform to Å.
#[derive(Clone, Debug, PartialEq)]
pub struct GroundTruth {
    /// `(s, n, 3)` normalised clouds
    pub clouds: Vec<f64>,
    pub s: usize,
    pub n: usize,
    /// `(s, 3)` centres in Å
    pub center: Vec<f64>,
    /// `(s)` Å per normalised unit
    pub scale: Vec<f64>,
    /// heavy atoms `(a, 3)` in Å, when the file holds one structure
    pub atoms: Option<Vec<f64>>,
}

impl GroundTruth {
    /// Read `GT.npz` and check that it holds structure `index` (the `--index` of the commands).
    pub fn read_index(path: impl AsRef<Path>, index: usize) -> Result<Self> {
        let path = path.as_ref();
        let gt = Self::read(path)?;
        if index >= gt.s {
            return Err(Error::invalid(format!(
                "--index {index} out of range: {} holds {} cloud(s)",
                path.display(),
                gt.s
            )));
        }
        Ok(gt)
    }

    /// `(center, scale)` of structure `i`: `x_Å = center + scale · x`.
    pub fn frame(&self, i: usize) -> ([f64; 3], f64) {
        let c = &self.center[3 * i..3 * i + 3];
        ([c[0], c[1], c[2]], self.scale[i])
    }

    /// Cloud `i` `(n, 3)`.
    pub fn cloud(&self, i: usize) -> &[f64] {
        &self.clouds[i * self.n * 3..(i + 1) * self.n * 3]
    }

    /// Cloud `i` in Å.
    pub fn cloud_angstrom(&self, i: usize) -> Vec<f64> {
        to_angstrom(self.cloud(i), &self.center[3 * i..3 * i + 3], self.scale[i])
    }

    /// Write `GT.npz` atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        self.check()?;
        let mut arrays = vec![
            (
                "cloud".to_string(),
                NdArray::from_f32(vec![self.s, self.n, 3], f32s(&self.clouds))?,
            ),
            (
                "center".to_string(),
                NdArray::new(vec![self.s, 3], ArrayData::F64(self.center.clone()))?,
            ),
            (
                "scale".to_string(),
                NdArray::new(vec![self.s], ArrayData::F64(self.scale.clone()))?,
            ),
        ];
        if let Some(a) = &self.atoms {
            arrays.push((
                "atoms".to_string(),
                NdArray::from_f32(vec![a.len() / 3, 3], f32s(a))?,
            ));
        }
        write_npz(path, &arrays)
    }

    /// Read and validate `GT.npz`; a bad field is an error naming the file and the field.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let arrays = read_npz(path)?;
        let get = |k: &str| arrays.iter().find(|(n, _)| n == k).map(|(_, a)| a);
        let need = |k: &str| {
            get(k).ok_or_else(|| {
                Error::format(
                    path,
                    format!("missing array `{k}` (a ground truth from `pc-prepare` has cloud, center, scale)"),
                )
            })
        };
        let c = need("cloud")?;
        let (s, n) = match c.shape[..] {
            [n, 3] => (1, n),
            [s, n, 3] => (s, n),
            _ => return Err(field_err(path, "cloud", "(S, N, 3) or (N, 3)", &c.shape)),
        };
        if s == 0 || n == 0 {
            return Err(field_err(path, "cloud", "at least one point", &c.shape));
        }
        let clouds = finite(path, "cloud", c.to_f64())?;
        let center = need("center")?;
        if center.len() != 3 * s {
            return Err(field_err(
                path,
                "center",
                &format!("({s}, 3)"),
                &center.shape,
            ));
        }
        let center = finite(path, "center", center.to_f64())?;
        let scale = need("scale")?;
        if scale.len() != s {
            return Err(field_err(path, "scale", &format!("({s},)"), &scale.shape));
        }
        let scale = finite(path, "scale", scale.to_f64())?;
        if let Some(v) = scale.iter().find(|v| **v <= 0.0) {
            return Err(Error::format(
                path,
                format!("field `scale`: must be positive, got {v}"),
            ));
        }
        let atoms = match get("atoms") {
            None => None,
            Some(a) => {
                if a.shape.len() != 2 || a.shape[1] != 3 || a.shape[0] == 0 {
                    return Err(field_err(path, "atoms", "(A, 3), A ≥ 1", &a.shape));
                }
                Some(finite(path, "atoms", a.to_f64())?)
            }
        };
        Ok(Self {
            clouds,
            s,
            n,
            center,
            scale,
            atoms,
        })
    }

    fn check(&self) -> Result<()> {
        if self.clouds.len() != self.s * self.n * 3
            || self.center.len() != 3 * self.s
            || self.scale.len() != self.s
            || self.atoms.as_ref().is_some_and(|a| a.len() % 3 != 0)
        {
            return Err(Error::invalid("GroundTruth: inconsistent array sizes"));
        }
        Ok(())
    }
}

/// `center + scale · x` for a cloud `(n, 3)`.
pub fn to_angstrom(x: &[f64], center: &[f64], scale: f64) -> Vec<f64> {
    x.chunks_exact(3)
        .flat_map(|p| (0..3).map(move |k| center[k] + scale * p[k]))
        .collect()
}

/// One projection: M observed 2D points and the rotation that made them.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// `R` row-major; the points are the xy columns of `x·R`
    pub rot: [f64; 9],
    /// `(m, 2)`
    pub points: Vec<f64>,
}

/// Everything observed of one structure.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Observations {
    pub proj: Vec<Projection>,
    /// coarse-grained map means `(m, 3)`
    pub cg: Option<Vec<f64>>,
    /// one subunit's points `(l, 3)`
    pub subunit: Option<Vec<f64>>,
    /// N of the cloud observed
    pub n_points: usize,
    /// `(center, scale)`: `x_Å = center + scale · x`, when known
    pub frame: Option<([f64; 3], f64)>,
}

impl Observations {
    /// Number of observation items |y| (projections + coarse map + subunit).
    pub fn items(&self) -> usize {
        self.proj.len() + self.cg.is_some() as usize + self.subunit.is_some() as usize
    }

    /// Write `OBS.npz` atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut arrays = Vec::new();
        for (k, p) in self.proj.iter().enumerate() {
            arrays.push((
                format!("proj_{k}"),
                NdArray::new(
                    vec![p.points.len() / 2, 2],
                    ArrayData::F64(p.points.clone()),
                )?,
            ));
            arrays.push((
                format!("rot_{k}"),
                NdArray::new(vec![3, 3], ArrayData::F64(p.rot.to_vec()))?,
            ));
        }
        if let Some(c) = &self.cg {
            arrays.push((
                "cg".to_string(),
                NdArray::new(vec![c.len() / 3, 3], ArrayData::F64(c.clone()))?,
            ));
        }
        if let Some(c) = &self.subunit {
            arrays.push((
                "subunit".to_string(),
                NdArray::new(vec![c.len() / 3, 3], ArrayData::F64(c.clone()))?,
            ));
        }
        arrays.push((
            "n_points".to_string(),
            NdArray::from_i64(vec![1], vec![self.n_points as i64])?,
        ));
        if let Some((c, sc)) = self.frame {
            arrays.push((
                "center".to_string(),
                NdArray::new(vec![3], ArrayData::F64(c.to_vec()))?,
            ));
            arrays.push((
                "scale".to_string(),
                NdArray::new(vec![1], ArrayData::F64(vec![sc]))?,
            ));
        }
        write_npz(path, &arrays)
    }

    /// Read and validate `OBS.npz`: every array finite and of its shape, rotations orthogonal
    /// (|RRᵀ − I| < 1e-4), at least one observation; a bad field is an error naming the file
    /// and the field.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let arrays = read_npz(path)?;
        let get = |k: &str| arrays.iter().find(|(n, _)| n == k).map(|(_, a)| a);
        let mut out = Observations::default();
        let np = get("n_points").ok_or_else(|| {
            Error::format(
                path,
                "missing array `n_points` (observations from `pc-observe` carry it)",
            )
        })?;
        let nv = np
            .to_i64()
            .map_err(|_| field_err(path, "n_points", "one integer", &np.shape))?;
        if nv.len() != 1 || nv[0] < 1 {
            return Err(Error::format(
                path,
                format!("field `n_points`: expected one positive integer, got {nv:?}"),
            ));
        }
        out.n_points = nv[0] as usize;
        for (name, _) in &arrays {
            let known = name == "n_points"
                || name == "center"
                || name == "scale"
                || name == "cg"
                || name == "subunit"
                || name
                    .strip_prefix("proj_")
                    .or_else(|| name.strip_prefix("rot_"))
                    .is_some_and(|k| k.parse::<usize>().is_ok());
            if !known {
                return Err(Error::format(
                    path,
                    format!(
                        "unknown array `{name}` (expected proj_k, rot_k, cg, subunit, n_points)"
                    ),
                ));
            }
        }
        for k in 0.. {
            let (pn, rn) = (format!("proj_{k}"), format!("rot_{k}"));
            let (Some(p), r) = (get(&pn), get(&rn)) else {
                if get(&rn).is_some() {
                    return Err(Error::format(path, format!("`{rn}` without `{pn}`")));
                }
                break;
            };
            let r = r.ok_or_else(|| Error::format(path, format!("`{pn}` without `{rn}`")))?;
            if p.shape.len() != 2 || p.shape[1] != 2 || p.shape[0] == 0 {
                return Err(field_err(path, &pn, "(M, 2), M ≥ 1", &p.shape));
            }
            if r.shape != [3, 3] {
                return Err(field_err(path, &rn, "(3, 3)", &r.shape));
            }
            let rv = finite(path, &rn, r.to_f64())?;
            let mut rot = [0.0; 9];
            rot.copy_from_slice(&rv);
            let dev = orthogonality_error(&rot);
            if dev > 1e-4 {
                return Err(Error::format(
                    path,
                    format!("field `{rn}`: not a rotation (|R·Rᵀ − I| = {dev:.2e})"),
                ));
            }
            out.proj.push(Projection {
                rot,
                points: finite(path, &pn, p.to_f64())?,
            });
        }
        let n_proj = arrays
            .iter()
            .filter(|(n, _)| n.starts_with("proj_"))
            .count();
        if n_proj != out.proj.len() {
            return Err(Error::format(
                path,
                format!(
                    "projections must be numbered proj_0 … proj_{{K−1}} without gaps; read {} of {n_proj}",
                    out.proj.len()
                ),
            ));
        }
        for (name, slot) in [("cg", &mut out.cg), ("subunit", &mut out.subunit)] {
            if let Some(a) = get(name) {
                if a.shape.len() != 2 || a.shape[1] != 3 || a.shape[0] == 0 {
                    return Err(field_err(path, name, "(M, 3), M ≥ 1", &a.shape));
                }
                *slot = Some(finite(path, name, a.to_f64())?);
            }
        }
        if let Some(su) = &out.subunit {
            if su.len() / 3 > out.n_points {
                return Err(Error::format(
                    path,
                    format!(
                        "field `subunit`: {} points, more than the cloud's n_points = {}",
                        su.len() / 3,
                        out.n_points
                    ),
                ));
            }
        }
        match (get("center"), get("scale")) {
            (None, None) => {}
            (Some(c), Some(sc)) => {
                if c.len() != 3 {
                    return Err(field_err(path, "center", "(3,)", &c.shape));
                }
                if sc.len() != 1 {
                    return Err(field_err(path, "scale", "(1,)", &sc.shape));
                }
                let c = finite(path, "center", c.to_f64())?;
                let sc = finite(path, "scale", sc.to_f64())?[0];
                if sc <= 0.0 {
                    return Err(Error::format(
                        path,
                        format!("field `scale`: must be positive, got {sc}"),
                    ));
                }
                out.frame = Some(([c[0], c[1], c[2]], sc));
            }
            _ => {
                return Err(Error::format(
                    path,
                    "`center` and `scale` come together (the transform to Å)",
                ))
            }
        }
        if out.items() == 0 {
            return Err(Error::format(
                path,
                "no observations (expected proj_k/rot_k, cg or subunit)",
            ));
        }
        Ok(out)
    }
}

/// max |R·Rᵀ − I| over the entries.
pub fn orthogonality_error(r: &[f64; 9]) -> f64 {
    let mut m: f64 = 0.0;
    for i in 0..3 {
        for j in 0..3 {
            let d: f64 = (0..3).map(|k| r[3 * i + k] * r[3 * j + k]).sum();
            m = m.max((d - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    m
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn field_err(path: &Path, field: &str, expected: &str, shape: &[usize]) -> Error {
    Error::format(
        path,
        format!("field `{field}`: expected shape {expected}, got {shape:?}"),
    )
}

fn finite(path: &Path, field: &str, v: Vec<f64>) -> Result<Vec<f64>> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::format(
            path,
            format!("field `{field}`: non-finite value at element {i}"),
        ));
    }
    Ok(v)
}

/// Write clouds `(s, n, 3)` in Å as a pseudo-atomic PDB: one `MODEL` per cloud, each point a
/// `CA` of residue `PSE` (chain A, numbered from 1), atomically. Coordinates must fit PDB's
/// columns (−999.999 … 9999.999 Å) and n ≤ 9999.
pub fn write_pseudo_pdb(path: impl AsRef<Path>, clouds: &[f64], s: usize, n: usize) -> Result<()> {
    let path = path.as_ref();
    if clouds.len() != s * n * 3 {
        return Err(Error::Shape {
            what: format!("{}: clouds", path.display()),
            expected: format!("({s}, {n}, 3)"),
            got: format!("{} values", clouds.len()),
        });
    }
    if n > 9999 {
        return Err(Error::invalid(format!(
            "{}: {n} points do not fit PDB residue numbers (≤ 9999); write .npy instead",
            path.display()
        )));
    }
    if let Some(v) = clouds
        .iter()
        .find(|v| !(v.is_finite() && (-999.999..=9999.999).contains(*v)))
    {
        return Err(Error::invalid(format!(
            "{}: coordinate {v} Å does not fit PDB's columns",
            path.display()
        )));
    }
    let mut text = String::with_capacity(s * n * 82 + 64);
    text.push_str("REMARK   1 CRYOFIELD POINT-CLOUD RECONSTRUCTION (PSEUDO-ATOMS)\n");
    for m in 0..s {
        if s > 1 {
            text.push_str(&format!("MODEL     {:>4}\n", m + 1));
        }
        for j in 0..n {
            let p = &clouds[(m * n + j) * 3..(m * n + j) * 3 + 3];
            text.push_str(&format!(
                "ATOM  {:>5}  CA  PSE A{:>4}    {:>8.3}{:>8.3}{:>8.3}  1.00  0.00           C\n",
                (j + 1) % 100_000,
                j + 1,
                p[0],
                p[1],
                p[2]
            ));
        }
        if s > 1 {
            text.push_str("ENDMDL\n");
        }
    }
    text.push_str("END\n");
    crate::io::atomic::write_bytes_atomic(path, text.as_bytes())
}
