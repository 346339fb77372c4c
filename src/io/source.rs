//! Particle sources: images by index from a `.mrcs` stack, a RELION `.star` file, a cryoSPARC `.cs` file,
//! or a `.txt` list of stacks — lazily through memory maps, optionally filtered by an index list.

use crate::error::{Error, Result};
use crate::io::cs::CsFile;
use crate::io::mrc::MrcFile;
use crate::io::star::StarFile;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What kind of file a particle source was opened from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Mrcs,
    Star,
    Cs,
    Txt,
}

impl SourceKind {
    /// Guess the kind from a file name's extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("mrcs" | "mrc" | "st" | "map") => Ok(SourceKind::Mrcs),
            Some("star") => Ok(SourceKind::Star),
            Some("cs") => Ok(SourceKind::Cs),
            Some("txt") => Ok(SourceKind::Txt),
            _ => Err(Error::format(
                path,
                "unknown particle file type: expected .mrcs, .mrc, .star, .cs or .txt",
            )),
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Mrcs => "mrcs",
            SourceKind::Star => "star",
            SourceKind::Cs => "cs",
            SourceKind::Txt => "txt",
        }
    }
}

/// Images by index across one or more memory-mapped stacks.
#[derive(Debug)]
pub struct ParticleSource {
    pub path: PathBuf,
    pub kind: SourceKind,
    files: Vec<MrcFile>,
    /// (file, image within file) of each particle, after filtering
    entries: Vec<(usize, usize)>,
    d: usize,
}

impl ParticleSource {
    /// Open a particle file; `datadir` is where the stacks named in a .star/.cs file live (default: the
    /// folder of that file).
    pub fn open(path: impl AsRef<Path>, datadir: Option<&Path>) -> Result<Self> {
        let path = path.as_ref();
        let kind = SourceKind::from_path(path)?;
        let folder = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let datadir = datadir.map(Path::to_path_buf).unwrap_or(folder.clone());
        let mut resolved: HashMap<String, PathBuf> = HashMap::new();
        let mut resolve_cached = |name: &str| -> Result<PathBuf> {
            if let Some(p) = resolved.get(name) {
                return Ok(p.clone());
            }
            let p = resolve(path, &datadir, name)?;
            resolved.insert(name.to_string(), p.clone());
            Ok(p)
        };
        let named: Vec<(PathBuf, usize)> = match kind {
            SourceKind::Mrcs => {
                let f = MrcFile::open(path)?;
                let n = f.n_images();
                return Self::from_files(path, kind, vec![f], (0..n).map(|i| (0, i)).collect());
            }
            SourceKind::Star => {
                let star = StarFile::read(path)?;
                let names = star.particle_str("rlnImageName")?;
                names
                    .iter()
                    .enumerate()
                    .map(|(row, s)| {
                        let (idx, file) = s.split_once('@').ok_or_else(|| {
                            Error::format(
                                path,
                                format!("particle {row}: rlnImageName `{s}` is not of the form INDEX@STACK"),
                            )
                        })?;
                        let idx: usize = idx.trim().parse().map_err(|_| {
                            Error::format(path, format!("particle {row}: bad image index in `{s}`"))
                        })?;
                        if idx == 0 {
                            return Err(Error::format(
                                path,
                                format!("particle {row}: image index in `{s}` must start at 1"),
                            ));
                        }
                        Ok((resolve_cached(file.trim())?, idx - 1))
                    })
                    .collect::<Result<_>>()?
            }
            SourceKind::Cs => CsFile::read(path)?
                .blobs()?
                .into_iter()
                .map(|(p, k)| Ok((resolve_cached(&p)?, k)))
                .collect::<Result<_>>()?,
            SourceKind::Txt => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                let mut out = Vec::new();
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let p = folder.join(line);
                    let n = MrcFile::open(&p)?.n_images();
                    out.extend((0..n).map(|i| (p.clone(), i)));
                }
                if out.is_empty() {
                    return Err(Error::format(path, "lists no image stacks"));
                }
                out
            }
        };
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        let mut files = Vec::new();
        let mut entries = Vec::with_capacity(named.len());
        for (p, k) in named {
            let fi = match index.get(&p) {
                Some(&fi) => fi,
                None => {
                    files.push(MrcFile::open(&p)?);
                    index.insert(p, files.len() - 1);
                    files.len() - 1
                }
            };
            entries.push((fi, k));
        }
        Self::from_files(path, kind, files, entries)
    }

    fn from_files(
        path: &Path,
        kind: SourceKind,
        files: Vec<MrcFile>,
        entries: Vec<(usize, usize)>,
    ) -> Result<Self> {
        let first = files
            .first()
            .ok_or_else(|| Error::format(path, "contains no particles"))?;
        let d = first.header.nx;
        for f in &files {
            if f.header.nx != f.header.ny || f.header.nx != d {
                return Err(Error::format(
                    &f.path,
                    format!(
                        "images are {}×{}; all images must be square and {d}×{d} like {}",
                        f.header.ny,
                        f.header.nx,
                        first.path.display()
                    ),
                ));
            }
        }
        for (row, &(fi, k)) in entries.iter().enumerate() {
            let f = &files[fi];
            if k >= f.n_images() {
                return Err(Error::format(
                    path,
                    format!(
                        "particle {row} refers to image {} of {}, which holds {} images",
                        k + 1,
                        f.path.display(),
                        f.n_images()
                    ),
                ));
            }
        }
        Ok(ParticleSource {
            path: path.to_path_buf(),
            kind,
            files,
            entries,
            d,
        })
    }

    /// Keep only the particles at positions `ind` (in that order).
    pub fn select(mut self, ind: &[usize]) -> Result<Self> {
        let n = self.entries.len();
        if let Some(&bad) = ind.iter().find(|&&i| i >= n) {
            return Err(Error::invalid(format!(
                "index {bad} is out of range for {} with {n} particles",
                self.path.display()
            )));
        }
        self.entries = ind.iter().map(|&i| self.entries[i]).collect();
        Ok(self)
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no particles.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Box size D (images are D×D).
    pub fn d(&self) -> usize {
        self.d
    }

    /// Pixel size (Å) from the first stack's header.
    pub fn apix(&self) -> f32 {
        self.files[0].header.apix()
    }

    /// The stacks this source reads.
    pub fn files(&self) -> &[MrcFile] {
        &self.files
    }

    /// Particle `i` as D×D f32.
    pub fn image(&self, i: usize) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.d * self.d];
        self.read_into(i, &mut out)?;
        Ok(out)
    }

    /// Decode particle `i` into `out` (length D²).
    pub fn read_into(&self, i: usize, out: &mut [f32]) -> Result<()> {
        let &(fi, k) = self.entries.get(i).ok_or_else(|| {
            Error::invalid(format!(
                "particle {i} out of range for {} ({} particles)",
                self.path.display(),
                self.entries.len()
            ))
        })?;
        self.files[fi].read_image_into(k, out)
    }

    /// Particles `start..end` into `out` (length (end−start)·D²), decoded in parallel.
    pub fn read_range(&self, start: usize, end: usize, out: &mut [f32]) -> Result<()> {
        let dd = self.d * self.d;
        if end < start || end > self.len() || out.len() != (end - start) * dd {
            return Err(Error::Shape {
                what: format!("read_range({start}, {end}) of {}", self.path.display()),
                expected: format!(
                    "{} values and end ≤ {}",
                    end.saturating_sub(start) * dd,
                    self.len()
                ),
                got: out.len().to_string(),
            });
        }
        out.par_chunks_mut(dd)
            .enumerate()
            .try_for_each(|(j, img)| self.read_into(start + j, img))
    }

    /// Every particle in memory, N·D² values.
    pub fn load_all(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.len() * self.d * self.d];
        self.read_range(0, self.len(), &mut out)?;
        Ok(out)
    }
}

/// Find a stack named in a .star/.cs file: absolute paths as given; otherwise under `datadir`, then
/// relative to the working folder, then its file name alone under `datadir` (for paths that keep a
/// processing folder structure).
pub(crate) fn resolve(meta: &Path, datadir: &Path, name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let mut tried = vec![datadir.join(p), p.to_path_buf()];
    if let Some(base) = p.file_name() {
        tried.push(datadir.join(base));
    }
    if let Some(found) = tried.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    Err(Error::format(
        meta,
        format!(
            "cannot find image stack `{name}` (tried {}); use --datadir to say where the stacks are",
            tried
                .iter()
                .map(|t| t.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}
