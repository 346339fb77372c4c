//! Atomic writes: write to a temporary file in the destination's folder, then rename.
//!
//! A crash or a bad input leaves any earlier file at the destination untouched. Outputs made of
//! several files are staged in a folder next to them and moved into place together ([`Staged`]).
//! What a `kill -9` leaves (`NAME.tmp-<pid>`, staging folders) is removed by the next write into the
//! same folder once that process is gone ([`sweep_stale`]).

use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Write a file atomically: `f` fills a buffered writer on `PATH.tmp-<pid>`, which is then renamed
/// onto `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic<F>(path: impl AsRef<Path>, f: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let path = path.as_ref();
    sweep_stale(parent_dir(path));
    let tmp = tmp_path(path);
    let file = File::create(&tmp).at(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let res = f(&mut w)
        .and_then(|()| w.flush().at(&tmp))
        .and_then(|()| w.get_ref().sync_data().at(&tmp));
    drop(w);
    match res {
        Ok(()) => std::fs::rename(&tmp, path).at(path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Write `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, |w| w.write_all(bytes).at(path))
}

/// The temporary name of an atomic write of `path`: `NAME.tmp-<pid>` in the same folder.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// The prefix of a staging folder's name: `.cryofield-stage-<pid>-<n>` inside the destination folder.
const STAGE_PREFIX: &str = ".cryofield-stage-";

/// Whether process `pid` is alive, where the system can tell (Linux: `/proc/<pid>`); `None` elsewhere.
fn pid_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(pid == std::process::id() || proc.join(pid.to_string()).exists())
}

/// The pid that owns a leftover of an atomic write or a staging folder, from its name:
/// `NAME.tmp-<pid>` or `.cryofield-stage-<pid>-<n>`.
fn leftover_pid(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix(STAGE_PREFIX) {
        return rest.split_once('-')?.0.parse().ok();
    }
    let (_, pid) = name.rsplit_once(".tmp-")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Remove what killed processes left in `dir`: `NAME.tmp-<pid>` files of atomic writes and
/// `.cryofield-stage-<pid>-<n>` staging folders whose process no longer runs. A process that is
/// alive (or a system where liveness cannot be told) keeps its files. Each folder is swept once per
/// process; failures to list or remove are ignored (the leftovers are never read: every reader opens
/// the final names only).
pub fn sweep_stale(dir: &Path) {
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if swept.contains(&key) {
            return;
        }
        swept.push(key);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(leftover_pid) else {
            continue;
        };
        if pid_alive(pid) != Some(false) {
            continue;
        }
        let p = e.path();
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(e) => Err(e),
        };
    }
}

/// The folder a path lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A multi-file output that lands all at once or not at all.
///
/// Files are written into a staging folder `.cryofield-stage-<pid>-<n>` inside the destination folder
/// (same file system, so moving them is a rename). [`Staged::commit`] moves every staged file onto its
/// final name and removes the files named by [`Staged::remove_on_commit`]; earlier files at those names
/// are first moved aside into the staging folder, and if any rename fails every step is undone, so the
/// destination holds either the complete new set or exactly what it held before. Dropping a `Staged`
/// without committing (an error, a panic) removes the staging folder and leaves the destination
/// untouched. A `kill -9` leaves the staging folder, which the next run in that folder removes
/// ([`sweep_stale`]); only a kill during the commit's renames themselves (microseconds) can leave a mix.
#[derive(Debug)]
pub struct Staged {
    dest: PathBuf,
    stage: PathBuf,
    names: Vec<std::ffi::OsString>,
    removals: Vec<std::ffi::OsString>,
}

impl Staged {
    /// Stage files for the folder `dest` (created if missing).
    pub fn new(dest: impl AsRef<Path>) -> Result<Self> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dest = dest.as_ref();
        let dest = if dest.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dest
        };
        std::fs::create_dir_all(dest).at(dest)?;
        sweep_stale(dest);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stage = dest.join(format!("{STAGE_PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir(&stage).at(&stage)?;
        Ok(Staged {
            dest: dest.to_path_buf(),
            stage,
            names: Vec::new(),
            removals: Vec::new(),
        })
    }

    /// Stage files for the folder that holds `path` (`.` for a bare file name).
    pub fn for_file(path: &Path) -> Result<Self> {
        Self::new(parent_dir(path))
    }

    /// Where to write the file that will be `dest/name` (a plain file name, no folders).
    pub fn path(&mut self, name: impl AsRef<std::ffi::OsStr>) -> Result<PathBuf> {
        let name = name.as_ref();
        let p = Path::new(name);
        if p.file_name() != Some(name) {
            return Err(Error::invalid(format!(
                "staged output `{}` must be a plain file name",
                p.display()
            )));
        }
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_os_string());
        }
        Ok(self.stage.join(name))
    }

    /// Remove `dest/name` at commit, if it exists (a file of an earlier run that the new set replaces
    /// with nothing, e.g. an FSC curve that could not be computed this time).
    pub fn remove_on_commit(&mut self, name: impl AsRef<std::ffi::OsStr>) {
        self.removals.push(name.as_ref().to_os_string());
    }

    /// Move every staged file into place, all or nothing (see the type's doc).
    pub fn commit(self) -> Result<()> {
        for name in &self.names {
            let p = self.stage.join(name);
            if !p.is_file() {
                return Err(Error::invalid(format!(
                    "{}: staged output was never written",
                    self.dest.join(name).display()
                )));
            }
        }
        let aside = self.stage.join(".replaced");
        std::fs::create_dir(&aside).at(&aside)?;
        // Undo log: (final name, whether an earlier file was moved aside, whether a new file went in).
        let mut done = Vec::new();
        let res = self.move_into_place(&aside, &mut done);
        if res.is_err() {
            for (name, had, put) in done.into_iter().rev() {
                let dst = self.dest.join(name);
                if put {
                    let _ = std::fs::rename(&dst, self.stage.join(name));
                }
                if had {
                    let _ = std::fs::rename(aside.join(name), &dst);
                }
            }
        }
        res
        // Dropping `self` removes the staging folder with the replaced files (or, after a failure,
        // the new ones).
    }
}

impl Staged {
    /// The renames of [`Staged::commit`]: each earlier file moved into `aside`, each staged file onto
    /// its name, each removal moved into `aside`; every step done is logged in `done` for the undo.
    fn move_into_place<'a>(
        &'a self,
        aside: &Path,
        done: &mut Vec<(&'a std::ffi::OsStr, bool, bool)>,
    ) -> Result<()> {
        let steps = self.names.iter().map(|n| (n, true)).chain(
            self.removals
                .iter()
                .filter(|r| !self.names.contains(r))
                .map(|n| (n, false)),
        );
        for (name, new) in steps {
            let dst = self.dest.join(name);
            let had = match std::fs::symlink_metadata(&dst) {
                // A folder in the way is not moved: the rename onto it fails and everything is undone.
                Ok(m) if m.is_dir() => false,
                Ok(_) => {
                    std::fs::rename(&dst, aside.join(name)).at(&dst)?;
                    true
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(Error::io(&dst, e)),
            };
            done.push((name, had, false));
            if new {
                std::fs::rename(self.stage.join(name), &dst).at(&dst)?;
                if let Some(last) = done.last_mut() {
                    last.2 = true;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.stage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn failed_write_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_bytes_atomic(&p, b"old").unwrap();
        let r = write_atomic(&p, |w| {
            w.write_all(b"partial").unwrap();
            Err(Error::invalid("boom"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A pid no process has: above Linux's largest possible pid (2^22).
    const DEAD_PID: u32 = 4_194_305;

    #[test]
    fn leftovers_of_dead_processes_are_swept() {
        if pid_alive(1).is_none() {
            eprintln!("skipped: this system cannot tell whether a process runs");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // What kill -9 leaves: a full, an empty and a truncated temporary file, a staging folder.
        std::fs::write(
            d.join(format!("weights.3.safetensors.tmp-{DEAD_PID}")),
            b"full",
        )
        .unwrap();
        std::fs::write(d.join(format!("z.3.pkl.tmp-{DEAD_PID}")), b"").unwrap();
        std::fs::create_dir(d.join(format!(".cryofield-stage-{DEAD_PID}-0"))).unwrap();
        std::fs::write(d.join(format!(".cryofield-stage-{DEAD_PID}-0/a.mrc")), b"x").unwrap();
        // A live process's (pid 1) and names that only look alike stay.
        let keep = [
            "config.json.tmp-1".to_string(),
            "notes.tmp-".to_string(),
            "notes.tmp-12a".to_string(),
            "data.tmp".to_string(),
        ];
        for k in &keep {
            std::fs::write(d.join(k), b"keep").unwrap();
        }
        write_bytes_atomic(d.join("out.bin"), b"new").unwrap();
        let left = names(d);
        let mut want: Vec<String> = keep.to_vec();
        want.push("out.bin".into());
        want.sort();
        assert_eq!(left, want);
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn staged_outputs_land_together() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.txt"), b"old a").unwrap();
        std::fs::write(d.join("stale.txt"), b"old stale").unwrap();
        let mut st = Staged::new(d).unwrap();
        write_bytes_atomic(st.path("a.txt").unwrap(), b"new a").unwrap();
        write_bytes_atomic(st.path("b.txt").unwrap(), b"new b").unwrap();
        st.remove_on_commit("stale.txt");
        // Nothing is visible before the commit.
        assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), b"old a");
        assert!(!d.join("b.txt").exists());
        st.commit().unwrap();
        assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), b"new a");
        assert_eq!(std::fs::read(d.join("b.txt")).unwrap(), b"new b");
        assert_eq!(names(d), ["a.txt", "b.txt"]);
    }

    #[test]
    fn failed_commit_restores_every_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in ["a", "b", "d"] {
            std::fs::write(d.join(n), format!("old {n}")).unwrap();
        }
        // A folder in the way of the third file: its rename fails after two files were moved in.
        std::fs::create_dir(d.join("c")).unwrap();
        std::fs::write(d.join("c/inside"), b"x").unwrap();
        let mut st = Staged::new(d).unwrap();
        for n in ["a", "b", "c"] {
            write_bytes_atomic(st.path(n).unwrap(), b"new").unwrap();
        }
        st.remove_on_commit("d");
        assert!(st.commit().is_err());
        for n in ["a", "b", "d"] {
            assert_eq!(
                std::fs::read(d.join(n)).unwrap(),
                format!("old {n}").as_bytes()
            );
        }
        assert_eq!(std::fs::read(d.join("c/inside")).unwrap(), b"x");
        assert_eq!(names(d), ["a", "b", "c", "d"]);
    }

    #[test]
    fn dropped_stage_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a"), b"old").unwrap();
        {
            let mut st = Staged::new(d).unwrap();
            write_bytes_atomic(st.path("a").unwrap(), b"new").unwrap();
            assert!(st.path("sub/a").is_err());
        }
        assert_eq!(names(d), ["a"]);
        assert_eq!(std::fs::read(d.join("a")).unwrap(), b"old");
    }
}
