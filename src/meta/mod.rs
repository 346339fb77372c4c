//! Typed pose and CTF metadata: parsed from RELION STAR and cryoSPARC `.cs` files as the reference's
//! `parse_pose_*` / `parse_ctf_*` commands do, read from and written to the reference's `.pkl` files.

use crate::error::{Error, Result};
use crate::geometry::rotation::{r_from_cryosparc, r_from_relion};
use crate::io::array::{ArrayData, NdArray};
use crate::io::npy::RecordArray;
use crate::io::pkl::{read_pkl, write_pkl, PyValue};
use crate::io::star::StarFile;
use crate::io::validate::{self, Rows, Rule};
use std::path::Path;

/// Per-image poses: rotations (N, 3, 3) and in-plane translations (N, 2) as a fraction of the box size D.
#[derive(Debug, Clone, PartialEq)]
pub struct Poses {
    /// row-major rotation matrices
    pub rots: Vec<[f32; 9]>,
    /// translations (x, y) as a fraction of D; `None` when the file held rotations only
    pub trans: Option<Vec<[f32; 2]>>,
}

fn array_f32(v: &PyValue, path: &Path, what: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    match v {
        PyValue::Array(a) => match a.data {
            ArrayData::F32(_) | ArrayData::F64(_) => Ok((a.shape.clone(), a.to_f32())),
            _ => Err(Error::format(
                path,
                format!(
                    "{what}: expected a float array, found dtype {}",
                    a.data.descr()
                ),
            )),
        },
        other => Err(Error::format(
            path,
            format!("{what}: expected a numpy array, found {}", py_kind(other)),
        )),
    }
}

fn py_kind(v: &PyValue) -> &'static str {
    match v {
        PyValue::None => "None",
        PyValue::Bool(_) => "bool",
        PyValue::Int(_) => "int",
        PyValue::Float(_) => "float",
        PyValue::Str(_) => "str",
        PyValue::Bytes(_) => "bytes",
        PyValue::Tuple(_) => "tuple",
        PyValue::List(_) => "list",
        PyValue::Dict(_) => "dict",
        PyValue::Array(_) => "array",
    }
}

impl Poses {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.rots.len()
    }

    /// True when there are no poses.
    pub fn is_empty(&self) -> bool {
        self.rots.is_empty()
    }

    /// Read a pose.pkl: a tuple `(rot (N,3,3), trans (N,2))`, or rotations only: a tuple `(rot,)` or a
    /// bare array `(N,3,3)`. Each rotation must be a proper rotation matrix and each translation finite
    /// (errors name the file, the pose and the field).
    ///
    /// Rotations only: cryoDRGN's `PoseTracker.load` accepts both forms (and its `PoseTracker.save`
    /// writes `(rot,)` for poses without translations), logging "No translations provided"; so they
    /// load here too, with translations `None` (images taken as centred), and a warning naming the
    /// file is printed to stderr so that they are not accepted silently ([`Poses::read`] does not print).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let poses = Self::read(path)?;
        if poses.trans.is_none() {
            eprintln!(
                "warning: {}: rotations only, no translations: the images are taken as centred",
                path.display()
            );
        }
        Ok(poses)
    }

    /// [`Poses::load`] without the warning on rotation-only files (`trans` is `None` there).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let v = read_pkl(path)?;
        let (rot_v, trans_v) = match &v {
            PyValue::Tuple(items) | PyValue::List(items) => match items.as_slice() {
                [r] => (r, None),
                [r, t] => (r, Some(t)),
                _ => {
                    return Err(Error::format(
                        path,
                        format!(
                            "pose pickle: expected a tuple (rot, trans), found a {}-tuple",
                            items.len()
                        ),
                    ))
                }
            },
            other => (other, None),
        };
        let (shape, r) = array_f32(rot_v, path, "rotations")?;
        if shape.len() != 3 || shape[1] != 3 || shape[2] != 3 {
            return Err(Error::format(
                path,
                format!("rotations: expected shape (N, 3, 3), found {shape:?}"),
            ));
        }
        let n = shape[0];
        let rots = r
            .chunks_exact(9)
            .map(|c| {
                let mut m = [0f32; 9];
                m.copy_from_slice(c);
                m
            })
            .collect();
        let trans = match trans_v {
            None => None,
            Some(t) => {
                let (tshape, t) = array_f32(t, path, "translations")?;
                if tshape != [n, 2] {
                    return Err(Error::format(
                        path,
                        format!("translations: expected shape ({n}, 2), found {tshape:?}"),
                    ));
                }
                Some(t.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
            }
        };
        let poses = Poses { rots, trans };
        poses.check(&Rows::records(path, "pose"), "rotations", "translations")?;
        Ok(poses)
    }

    /// Check that each rotation is a proper rotation matrix and each translation finite (in the
    /// f32 they are stored in); `rot_field`/`trans_field` name where they came from in the error.
    fn check(&self, rows: &Rows, rot_field: &str, trans_field: &str) -> Result<()> {
        for (i, r) in self.rots.iter().enumerate() {
            if let Some(why) = validate::rotation_violation(r) {
                return Err(rows.error(i, rot_field, why));
            }
        }
        if let Some(t) = &self.trans {
            for (i, t) in t.iter().enumerate() {
                if !(t[0].is_finite() && t[1].is_finite()) {
                    return Err(rows.error(
                        i,
                        trans_field,
                        format!("translation {t:?} is not finite"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The pickle value the reference writes: `(rot f32 (N,3,3), trans f32 (N,2))` (rotations only when
    /// there are no translations).
    pub fn to_pyvalue(&self) -> PyValue {
        let n = self.rots.len();
        let rot = NdArray {
            shape: vec![n, 3, 3],
            data: ArrayData::F32(self.rots.iter().flatten().copied().collect()),
        };
        match &self.trans {
            None => PyValue::Array(rot),
            Some(t) => PyValue::Tuple(vec![
                PyValue::Array(rot),
                PyValue::Array(NdArray {
                    shape: vec![n, 2],
                    data: ArrayData::F32(t.iter().flatten().copied().collect()),
                }),
            ]),
        }
    }

    /// Write a pose.pkl atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_pkl(path, &self.to_pyvalue())
    }

    /// Keep only the images in `ind`.
    pub fn select(&self, ind: &[usize]) -> Self {
        Poses {
            rots: ind.iter().map(|&i| self.rots[i]).collect(),
            trans: self
                .trans
                .as_ref()
                .map(|t| ind.iter().map(|&i| t[i]).collect()),
        }
    }

    /// Poses from a RELION STAR file (`parse_pose_star`): rotations from rlnAngleRot/Tilt/Psi; translations
    /// from rlnOriginX/Y (pixels) or rlnOriginXAngst/YAngst (Å, divided by the pixel size), divided by D.
    /// `d` and `apix` override the file's rlnImageSize / rlnImagePixelSize.
    pub fn from_star(star: &StarFile, d: Option<usize>, apix: Option<f64>) -> Result<Self> {
        let rows = Rows::star(&star.path);
        let d = validate::flag_box("-D", d)?;
        let apix = validate::opt_flag("--Apix", apix, Rule::Positive)?;
        let n = star.n_particles()?;
        rows.non_empty(n)?;
        let d = match d {
            Some(d) => d as f64,
            None => {
                rows.box_size("rlnImageSize", &star_column(star, "rlnImageSize", "-D")?)? as f64
            }
        };
        let finite_column = |c: &str| checked_column(star, c, Rule::Finite);
        let rot = finite_column("rlnAngleRot")?;
        let tilt = finite_column("rlnAngleTilt")?;
        let psi = finite_column("rlnAnglePsi")?;
        let (tx, ty) =
            if star.has_particle_column("rlnOriginX") && star.has_particle_column("rlnOriginY") {
                (finite_column("rlnOriginX")?, finite_column("rlnOriginY")?)
            } else if star.has_particle_column("rlnOriginXAngst")
                && star.has_particle_column("rlnOriginYAngst")
            {
                let a = per_particle(star, "rlnImagePixelSize", apix, n, "--Apix", Rule::Positive)?;
                let x = finite_column("rlnOriginXAngst")?;
                let y = finite_column("rlnOriginYAngst")?;
                (
                    x.iter().zip(&a).map(|(x, a)| x / a).collect(),
                    y.iter().zip(&a).map(|(y, a)| y / a).collect(),
                )
            } else {
                (vec![0.0; n], vec![0.0; n])
            };
        let rots = (0..n)
            .map(|i| r_from_relion(rot[i], tilt[i], psi[i]).map(|x| x as f32))
            .collect();
        let trans = (0..n)
            .map(|i| [(tx[i] / d) as f32, (ty[i] / d) as f32])
            .collect();
        let poses = Poses {
            rots,
            trans: Some(trans),
        };
        poses.check(&rows, "rlnAngleRot/Tilt/Psi", "rlnOriginX/Y")?;
        Ok(poses)
    }

    /// Poses from a cryoSPARC `.cs` file (`parse_pose_csparc`): rotation vectors `alignments3D/pose`
    /// (or `alignments_class_0/pose` with `abinit`) through the transposed exponential map; shifts in pixels
    /// (×2 with `hetrefine`) divided by D (from `blob/shape` unless `d` is given).
    pub fn from_cs(
        cs: &RecordArray,
        path: &Path,
        d: Option<usize>,
        abinit: bool,
        hetrefine: bool,
    ) -> Result<Self> {
        let (rkey, tkey) = if abinit {
            ("alignments_class_0/pose", "alignments_class_0/shift")
        } else {
            ("alignments3D/pose", "alignments3D/shift")
        };
        let rows = Rows::records(path, "row");
        let d = validate::flag_box("-D", d)?;
        rows.non_empty(cs.n)?;
        let d = match d {
            Some(d) => d as f64,
            None => cs_box_size(cs, path)? as f64,
        };
        let rv = cs_column(cs, path, rkey, 3)?;
        rows.check(rkey, &rv, 3, Rule::Finite)?;
        let tv = cs_column(cs, path, tkey, 2)?;
        rows.check(tkey, &tv, 2, Rule::Finite)?;
        let scale = if hetrefine { 2.0 } else { 1.0 };
        let rots = rv
            .chunks_exact(3)
            .map(|v| r_from_cryosparc([v[0], v[1], v[2]]).map(|x| x as f32))
            .collect();
        let trans = tv
            .chunks_exact(2)
            .map(|t| [(t[0] * scale / d) as f32, (t[1] * scale / d) as f32])
            .collect();
        let poses = Poses {
            rots,
            trans: Some(trans),
        };
        poses.check(&rows, rkey, tkey)?;
        Ok(poses)
    }
}

/// A numeric `.cs` column with `width` values per record, as f64.
fn cs_column(cs: &RecordArray, path: &Path, name: &str, width: usize) -> Result<Vec<f64>> {
    let col = cs.column(name).map_err(|_| Error::MissingColumn {
        path: path.to_path_buf(),
        column: name.to_string(),
        available: cs.names(),
    })?;
    let per: usize = col.shape.iter().skip(1).product();
    if per != width {
        return Err(Error::format(
            path,
            format!(
                "column `{name}`: expected {width} values per particle, found shape {:?}",
                col.shape
            ),
        ));
    }
    Ok(col.to_f64())
}

/// The box size D of a `.cs` file, from `blob/shape` (height, width per particle): each square, all
/// the same, a valid box size ([`Rule::BoxSize`]). The file must have records.
fn cs_box_size(cs: &RecordArray, path: &Path) -> Result<usize> {
    if cs.column("blob/shape").is_err() {
        return Err(Error::format(
            path,
            "no `blob/shape` field to take the image size from: give it with -D",
        ));
    }
    let v = cs_column(cs, path, "blob/shape", 2)?;
    let rows = Rows::records(path, "row");
    for (i, s) in v.chunks_exact(2).enumerate() {
        if s[0] != s[1] {
            return Err(rows.error(
                i,
                "blob/shape",
                format!("image shape {} x {} is not square", s[0], s[1]),
            ));
        }
    }
    let sides: Vec<f64> = v.iter().step_by(2).copied().collect();
    rows.box_size("blob/shape", &sides)
}

/// A STAR column that supplies a value also given by `flag`; the error for a missing column names
/// the flag.
fn star_column(star: &StarFile, column: &str, flag: &str) -> Result<Vec<f64>> {
    if !star.has_particle_column(column) {
        return Err(Error::format(
            &star.path,
            format!("no `{column}` in the particle or optics table: give it with {flag}"),
        ));
    }
    star.particle_f64(column)
}

/// The value of `column` for each particle (each satisfying `rule`), or `override_` (already checked)
/// for all of them; errors naming the flag that would supply the value when neither is present.
fn per_particle(
    star: &StarFile,
    column: &str,
    override_: Option<f64>,
    n: usize,
    flag: &str,
    rule: Rule,
) -> Result<Vec<f64>> {
    if let Some(v) = override_ {
        return Ok(vec![v; n]);
    }
    let v = star_column(star, column, flag)?;
    Rows::star(&star.path).check(column, &v, 1, rule)?;
    Ok(v)
}

/// The value of `column` for each particle, each satisfying `rule` (the error names the row).
fn checked_column(star: &StarFile, column: &str, rule: Rule) -> Result<Vec<f64>> {
    let v = star.particle_f64(column)?;
    Rows::star(&star.path).check(column, &v, 1, rule)?;
    Ok(v)
}

/// Values that replace (or stand in for) a STAR file's optics columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CtfOverrides {
    /// accelerating voltage (kV)
    pub kv: Option<f64>,
    /// spherical aberration (mm)
    pub cs: Option<f64>,
    /// amplitude contrast ratio
    pub w: Option<f64>,
    /// phase shift (degrees)
    pub ps: Option<f64>,
}

/// The columns of a ctf.pkl and the rule each value must satisfy (see [`crate::io::validate`]).
const CTF_COLUMNS: [(&str, Rule); 9] = [
    ("D", Rule::BoxSize),
    ("Apix", Rule::Positive),
    ("dfU", Rule::Finite),
    ("dfV", Rule::Finite),
    ("dfAng", Rule::Finite),
    ("kV", Rule::Positive),
    ("Cs", Rule::Finite),
    ("w", Rule::Fraction),
    ("phase", Rule::Finite),
];

/// CTF parameters of N images: rows `[D, Apix, dfU (Å), dfV (Å), dfAng (deg), kV, Cs (mm), w, phase (deg)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CtfParams {
    pub rows: Vec<[f32; 9]>,
}

impl CtfParams {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Read a ctf.pkl (float array (N, 9)); each column is checked as `parse-ctf-*` checks it (D an
    /// even box size, the same in every row; Apix and kV positive; w in [0, 1]; the rest finite).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (shape, v) = array_f32(&read_pkl(path)?, path, "CTF parameters")?;
        if shape.len() != 2 || shape[1] != 9 {
            return Err(Error::format(
                path,
                format!("CTF parameters: expected shape (N, 9), found {shape:?}"),
            ));
        }
        let rows = Rows::records(path, "row");
        for (k, (name, rule)) in CTF_COLUMNS.iter().enumerate() {
            let col: Vec<f64> = v.iter().skip(k).step_by(9).map(|&x| f64::from(x)).collect();
            let field = format!("column {k} ({name})");
            if k == 0 && !col.is_empty() {
                // valid box sizes, and one size for every row
                rows.box_size(&field, &col)?;
            } else {
                rows.check(&field, &col, 1, *rule)?;
            }
        }
        Ok(CtfParams {
            rows: v
                .chunks_exact(9)
                .map(|c| {
                    let mut r = [0f32; 9];
                    r.copy_from_slice(c);
                    r
                })
                .collect(),
        })
    }

    /// Write a ctf.pkl (f32 (N, 9)) atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let a = NdArray {
            shape: vec![self.rows.len(), 9],
            data: ArrayData::F32(self.rows.iter().flatten().copied().collect()),
        };
        write_pkl(path, &PyValue::Array(a))
    }

    /// Keep only the images in `ind`.
    pub fn select(&self, ind: &[usize]) -> Self {
        CtfParams {
            rows: ind.iter().map(|&i| self.rows[i]).collect(),
        }
    }

    /// CTF from a RELION STAR file (`parse_ctf_star`). Optics values are looked up per particle through
    /// its optics group; `d`/`apix` and `overrides` replace the file's values (and stand in for missing
    /// columns); a missing rlnPhaseShift is 0.
    pub fn from_star(
        star: &StarFile,
        d: Option<usize>,
        apix: Option<f64>,
        overrides: &CtfOverrides,
    ) -> Result<Self> {
        let rows = Rows::star(&star.path);
        let d = validate::flag_box("-D", d)?;
        let apix = validate::opt_flag("--Apix", apix, Rule::Positive)?;
        let kv = validate::opt_flag("--kv", overrides.kv, Rule::Positive)?;
        let cs = validate::opt_flag("--cs", overrides.cs, Rule::Finite)?;
        let w = validate::opt_flag("-w", overrides.w, Rule::Fraction)?;
        let ps = validate::opt_flag("--ps", overrides.ps, Rule::Finite)?;
        let n = star.n_particles()?;
        rows.non_empty(n)?;
        let d = match d {
            Some(d) => d,
            None => rows.box_size("rlnImageSize", &star_column(star, "rlnImageSize", "-D")?)?,
        };
        let mut cols = vec![
            vec![d as f64; n],
            per_particle(star, "rlnImagePixelSize", apix, n, "--Apix", Rule::Positive)?,
        ];
        for c in ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"] {
            cols.push(checked_column(star, c, Rule::Finite)?);
        }
        for (c, o, rule) in [
            ("rlnVoltage", kv, Rule::Positive),
            ("rlnSphericalAberration", cs, Rule::Finite),
            ("rlnAmplitudeContrast", w, Rule::Fraction),
        ] {
            cols.push(match o {
                Some(v) => vec![v; n],
                None => checked_column(star, c, rule)?,
            });
        }
        cols.push(match ps {
            Some(v) => vec![v; n],
            None if star.has_particle_column("rlnPhaseShift") => {
                checked_column(star, "rlnPhaseShift", Rule::Finite)?
            }
            None => vec![0.0; n],
        });
        Ok(CtfParams {
            rows: (0..n)
                .map(|i| std::array::from_fn(|k| cols[k][i] as f32))
                .collect(),
        })
    }

    /// CTF from a cryoSPARC `.cs` file (`parse_ctf_csparc`): `ctf/df1_A`, `ctf/df2_A`, `ctf/df_angle_rad`
    /// (→ degrees), `ctf/accel_kv`, `ctf/cs_mm`, `ctf/amp_contrast`, `ctf/phase_shift_rad` (→ degrees);
    /// D from `blob/shape`, Apix from `blob/psize_A` unless given.
    pub fn from_cs(
        cs: &RecordArray,
        path: &Path,
        d: Option<usize>,
        apix: Option<f64>,
    ) -> Result<Self> {
        let rows = Rows::records(path, "row");
        let d = validate::flag_box("-D", d)?;
        let apix = validate::opt_flag("--Apix", apix, Rule::Positive)?;
        let n = cs.n;
        rows.non_empty(n)?;
        let d = match d {
            Some(d) => d,
            None => cs_box_size(cs, path)?,
        };
        let a = match apix {
            Some(a) => vec![a; n],
            None => {
                if cs.column("blob/psize_A").is_err() {
                    return Err(Error::format(
                        path,
                        "no `blob/psize_A` field: give the pixel size with --Apix",
                    ));
                }
                let a = cs_column(cs, path, "blob/psize_A", 1)?;
                rows.check("blob/psize_A", &a, 1, Rule::Positive)?;
                a
            }
        };
        let mut cols = vec![vec![d as f64; n], a];
        for (f, rule) in [
            ("ctf/df1_A", Rule::Finite),
            ("ctf/df2_A", Rule::Finite),
            ("ctf/df_angle_rad", Rule::Finite),
            ("ctf/accel_kv", Rule::Positive),
            ("ctf/cs_mm", Rule::Finite),
            ("ctf/amp_contrast", Rule::Fraction),
            ("ctf/phase_shift_rad", Rule::Finite),
        ] {
            let mut v = cs_column(cs, path, f, 1)?;
            rows.check(f, &v, 1, rule)?;
            if f.ends_with("_rad") {
                v.iter_mut().for_each(|x| *x = x.to_degrees());
                rows.check(&format!("{f} (in degrees)"), &v, 1, rule)?;
            }
            cols.push(v);
        }
        Ok(CtfParams {
            rows: (0..n)
                .map(|i| std::array::from_fn(|k| cols[k][i] as f32))
                .collect(),
        })
    }
}

/// Read an index .pkl (a 1-D integer array) as 0-based positions, checking each is in `0..n`. An
/// array of another rank (e.g. (100, 10), which would flatten into 1000 indices) or one that selects
/// no image is an error naming the file.
pub fn load_indices(path: impl AsRef<Path>, n: usize) -> Result<Vec<usize>> {
    let path = path.as_ref();
    let (shape, raw) = load_int_array(path, "index file")?;
    if shape.len() != 1 {
        return Err(Error::format(
            path,
            format!("index file: expected a 1-D array of indices, found shape {shape:?}"),
        ));
    }
    if raw.is_empty() {
        return Err(Error::format(
            path,
            "index file selects no images (an empty selection is an error)",
        ));
    }
    raw.iter()
        .map(|&i| {
            if i >= 0 && (i as usize) < n {
                Ok(i as usize)
            } else {
                Err(Error::format(
                    path,
                    format!("index {i} is out of range for {n} images"),
                ))
            }
        })
        .collect()
}

/// The shape and the values of a .pkl holding one integer numpy array; `what` names the file's
/// role in the errors (which also name the file).
pub fn load_int_array(path: &Path, what: &str) -> Result<(Vec<usize>, Vec<i64>)> {
    let v = read_pkl(path)?;
    let a = match &v {
        PyValue::Array(a) => a,
        other => {
            return Err(Error::format(
                path,
                format!(
                    "{what}: expected an integer numpy array, found {}",
                    py_kind(other)
                ),
            ))
        }
    };
    let raw = a
        .to_i64()
        .map_err(|e| Error::format(path, format!("{what}: {e}")))?;
    Ok((a.shape.clone(), raw))
}

/// Write an index .pkl (int64 array) atomically.
pub fn save_indices(path: impl AsRef<Path>, ind: &[usize]) -> Result<()> {
    let a = NdArray {
        shape: vec![ind.len()],
        data: ArrayData::I64(ind.iter().map(|&i| i as i64).collect()),
    };
    write_pkl(path, &PyValue::Array(a))
}
