//! Atomic writes: write to a temporary file in the destination's folder, then rename.
//!
//! A crash or a bad input leaves any earlier file at the destination untouched.

use crate::error::{IoContext, Result};
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
}
