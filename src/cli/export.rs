//! What `write-star` and `write-cs` share: the image of each particle of an input (.mrcs, .txt,
//! .star, .cs) with its stack named as the output should name it, and the CTF and poses of the
//! particles, from .pkl files or from the input itself.
//!
//! Stack names: stacks we locate ourselves (a `.mrcs` input, the stacks of a `.txt` list) are
//! written relative to the output file's folder, or absolute with `--full-path`. The names in a
//! `.star` / `.cs` input are usually relative to a RELION / cryoSPARC project folder that we cannot
//! know, so they are kept as written unless `--full-path` or `--datadir` is given; then each stack
//! is found as the particle readers find it (`--datadir`, default the input's folder, then the
//! working folder) and written absolute (`--full-path`) or relative to the output's folder.

use crate::io::cs::CsFile;
use crate::io::mrc::MrcFile;
use crate::io::source::{resolve, SourceKind};
use crate::io::star::StarFile;
use crate::meta::{CtfOverrides, CtfParams, Poses};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// A particle file opened for export (no image is read; `.mrcs` headers only).
pub(crate) struct Input {
    /// the particle file
    pub path: PathBuf,
    pub kind: SourceKind,
    /// for each particle: its stack as the output names it, and the 0-based image index in it
    pub images: Vec<(String, usize)>,
    /// the box size D of the stacks (`.mrcs`/`.txt` inputs, from their headers)
    pub d: Option<usize>,
    /// the parsed file of a `.star` input
    pub star: Option<StarFile>,
    /// the parsed file of a `.cs` input
    pub cs: Option<CsFile>,
}

/// How stack names are written: relative to `out_dir` or absolute, and where the stacks named
/// in a `.star`/`.cs` input are looked for.
pub(crate) struct Naming<'a> {
    /// the output's folder, canonical
    out_dir: PathBuf,
    full_path: bool,
    datadir: Option<&'a Path>,
}

impl<'a> Naming<'a> {
    /// The naming rule for an output file `out` (its folder must exist).
    pub fn new(out: &Path, full_path: bool, datadir: Option<&'a Path>) -> anyhow::Result<Self> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let out_dir = dir
            .canonicalize()
            .with_context(|| format!("output folder {} does not exist", dir.display()))?;
        Ok(Naming {
            out_dir,
            full_path,
            datadir,
        })
    }

    /// The name of a stack we located ourselves: absolute with `--full-path`, else relative to
    /// the output's folder.
    fn local(&self, stack: &Path) -> anyhow::Result<String> {
        let abs = stack
            .canonicalize()
            .with_context(|| format!("cannot find image stack {}", stack.display()))?;
        let p = if self.full_path {
            abs
        } else {
            relative_to(&abs, &self.out_dir)
        };
        p.to_str()
            .map(str::to_string)
            .with_context(|| format!("stack path {} is not valid UTF-8", p.display()))
    }

    /// Whether stack names of a `.star`/`.cs` input are rewritten (`--full-path` or `--datadir`).
    pub fn rewrites_metadata_paths(&self) -> bool {
        self.full_path || self.datadir.is_some()
    }

    /// The name of a stack named `name` in the metadata file `meta`: kept as written unless
    /// [`Naming::rewrites_metadata_paths`], else found and named as [`Naming::local`] names it.
    fn name_in_metadata(&self, meta: &Path, name: &str) -> anyhow::Result<String> {
        if !self.rewrites_metadata_paths() {
            return Ok(name.to_string());
        }
        let folder = meta.parent().unwrap_or(Path::new("")).to_path_buf();
        let datadir = self.datadir.map(Path::to_path_buf).unwrap_or(folder);
        let found = resolve(meta, &datadir, name)?;
        self.local(&found)
    }
}

/// `path` relative to `base` (both absolute and canonical): `../` for each component of `base`
/// past their common prefix, then the rest of `path`.
pub(crate) fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Split a RELION image name `INDEX@STACK` (INDEX 1-based) into the stack and the 0-based index.
fn split_image_name(meta: &Path, row: usize, s: &str) -> anyhow::Result<(String, usize)> {
    let bad = || {
        format!(
            "{}: particle {row}: rlnImageName `{s}` is not of the form INDEX@STACK (INDEX from 1)",
            meta.display()
        )
    };
    let (idx, stack) = s.split_once('@').with_context(bad)?;
    let idx: usize = idx.trim().parse().ok().with_context(bad)?;
    if idx == 0 {
        bail!(bad());
    }
    Ok((stack.trim().to_string(), idx - 1))
}

impl Input {
    /// Open `path` and name its particles' stacks with `naming`.
    pub fn open(path: &Path, naming: &Naming<'_>) -> anyhow::Result<Self> {
        let kind = SourceKind::from_path(path)?;
        let mut input = Input {
            path: path.to_path_buf(),
            kind,
            images: Vec::new(),
            d: None,
            star: None,
            cs: None,
        };
        let mut cache: HashMap<String, String> = HashMap::new();
        let mut named = |meta: &Path, name: &str| -> anyhow::Result<String> {
            if let Some(n) = cache.get(name) {
                return Ok(n.clone());
            }
            let n = naming.name_in_metadata(meta, name)?;
            cache.insert(name.to_string(), n.clone());
            Ok(n)
        };
        match kind {
            SourceKind::Mrcs | SourceKind::Txt => {
                let stacks: Vec<PathBuf> = if kind == SourceKind::Mrcs {
                    vec![path.to_path_buf()]
                } else {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let folder = path.parent().unwrap_or(Path::new(""));
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(|l| folder.join(l))
                        .collect()
                };
                if stacks.is_empty() {
                    bail!("{}: lists no image stacks", path.display());
                }
                for s in &stacks {
                    let f = MrcFile::open(s)?;
                    let (nx, ny) = (f.header.nx, f.header.ny);
                    if nx != ny {
                        bail!("{}: images are {ny}×{nx}, not square", s.display());
                    }
                    match input.d {
                        Some(d) if d != nx => bail!(
                            "{}: images are {nx}×{nx} but those of {} are {d}×{d}",
                            s.display(),
                            stacks[0].display()
                        ),
                        _ => input.d = Some(nx),
                    }
                    let name = naming.local(s)?;
                    input
                        .images
                        .extend((0..f.n_images()).map(|i| (name.clone(), i)));
                }
            }
            SourceKind::Star => {
                let star = StarFile::read(path)?;
                for (row, s) in star.particle_str("rlnImageName")?.iter().enumerate() {
                    let (stack, i) = split_image_name(path, row, s)?;
                    input.images.push((named(path, &stack)?, i));
                }
                input.star = Some(star);
            }
            SourceKind::Cs => {
                let cs = CsFile::read(path)?;
                for (stack, i) in cs.blobs()? {
                    input.images.push((named(path, &stack)?, i));
                }
                input.cs = Some(cs);
            }
        }
        if input.images.is_empty() {
            bail!("{}: holds no particles", path.display());
        }
        Ok(input)
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// The CTF parameters: from `ctf` (a ctf.pkl with one row per particle) when given, else from
    /// a `.star` input with `rlnDefocusU` or a `.cs` input (`ctf/*` fields), else `None`.
    pub fn ctf(&self, ctf: Option<&Path>) -> anyhow::Result<Option<CtfParams>> {
        if let Some(p) = ctf {
            let c = CtfParams::load(p)?;
            if c.len() != self.len() {
                bail!(
                    "{}: CTF parameters of {} particles, but {} has {}",
                    p.display(),
                    c.len(),
                    self.path.display(),
                    self.len()
                );
            }
            return Ok(Some(c));
        }
        if let Some(star) = &self.star {
            if star.has_particle_column("rlnDefocusU") {
                let c = CtfParams::from_star(star, None, None, &CtfOverrides::default())?;
                return Ok(Some(c));
            }
        }
        if let Some(cs) = &self.cs {
            return Ok(Some(CtfParams::from_cs(&cs.records, &cs.path, None, None)?));
        }
        Ok(None)
    }

    /// The poses: from `poses` (a pose.pkl with one pose per particle) when given, else from a
    /// `.star` input with `rlnAngleRot` or a `.cs` input with `alignments3D/pose`, else `None`.
    pub fn poses(&self, poses: Option<&Path>) -> anyhow::Result<Option<Poses>> {
        if let Some(p) = poses {
            let ps = Poses::read(p)?;
            if ps.len() != self.len() {
                bail!(
                    "{}: {} poses, but {} has {} particles",
                    p.display(),
                    ps.len(),
                    self.path.display(),
                    self.len()
                );
            }
            return Ok(Some(ps));
        }
        if let Some(star) = &self.star {
            if star.has_particle_column("rlnAngleRot") {
                return Ok(Some(Poses::from_star(star, None, None)?));
            }
        }
        if let Some(cs) = &self.cs {
            if cs.records.field("alignments3D/pose").is_some() {
                return Ok(Some(Poses::from_cs(
                    &cs.records,
                    &cs.path,
                    None,
                    false,
                    false,
                )?));
            }
        }
        Ok(None)
    }
}

/// A value of a ctf.pkl (f32) as text that reads back to the same f32 (shortest round trip).
pub(crate) fn fmt_f32(v: f32) -> String {
    format!("{v}")
}

/// Groups of identical optics `(D, Apix, kV, Cs, w)` (ctf.pkl columns 0, 1, 5, 6, 7) in order of
/// first appearance: (each row's 0-based group, each group's values).
pub(crate) fn optics_groups(ctf: &CtfParams) -> (Vec<usize>, Vec<[f32; 5]>) {
    let mut groups: Vec<[f32; 5]> = Vec::new();
    let of_row = ctf
        .rows
        .iter()
        .map(|r| {
            let key = [r[0], r[1], r[5], r[6], r[7]];
            match groups
                .iter()
                .position(|g| g.map(f32::to_bits) == key.map(f32::to_bits))
            {
                Some(g) => g,
                None => {
                    groups.push(key);
                    groups.len() - 1
                }
            }
        })
        .collect();
    (of_row, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let r = |p: &str, b: &str| relative_to(Path::new(p), Path::new(b));
        assert_eq!(r("/a/b/c.mrcs", "/a/b"), PathBuf::from("c.mrcs"));
        assert_eq!(r("/a/b/c.mrcs", "/a/d/e"), PathBuf::from("../../b/c.mrcs"));
        assert_eq!(r("/x.mrcs", "/a"), PathBuf::from("../x.mrcs"));
    }

    #[test]
    fn image_names() {
        let m = Path::new("p.star");
        assert_eq!(
            split_image_name(m, 0, "000123@stack.mrcs").unwrap(),
            ("stack.mrcs".to_string(), 122)
        );
        for bad in ["0@a.mrcs", "a.mrcs", "x@a.mrcs"] {
            let e = split_image_name(m, 4, bad).unwrap_err().to_string();
            assert!(e.contains("p.star") && e.contains("particle 4"), "{e}");
        }
    }

    #[test]
    fn optics_groups_in_first_appearance_order() {
        let row = |d: f32, kv: f32| [d, 1.0, 1e4, 1e4, 0.0, kv, 2.7, 0.1, 0.0];
        let ctf = CtfParams {
            rows: vec![row(64.0, 300.0), row(64.0, 200.0), row(64.0, 300.0)],
        };
        let (of_row, groups) = optics_groups(&ctf);
        assert_eq!(of_row, [0, 1, 0]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1][2], 200.0);
    }
}
