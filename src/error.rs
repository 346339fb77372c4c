//! The crate's error type: every variant names the file (or field) and what was wrong.

use std::path::{Path, PathBuf};

/// Errors returned by cryofield's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file.
    /// (The OS error is part of the message and deliberately not a `#[source]`, so that `{e:#}` does not
    /// print it twice.)
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// A file whose contents do not follow its format.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A pickle that refers to a Python global we do not allow.
    #[error("{path}: pickle refers to forbidden global `{module}.{name}` (only numpy arrays, tuples, lists, dicts and scalars are accepted)")]
    ForbiddenGlobal {
        path: PathBuf,
        module: String,
        name: String,
    },
    /// A STAR/.cs table without a column we need.
    #[error("{path}: missing column `{column}`{}", if .available.is_empty() { String::new() } else { format!(" (available: {})", .available.join(", ")) })]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: Vec<String>,
    },
    /// Arrays or arguments whose shapes disagree.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: String,
        got: String,
    },
    /// A bad argument (command-line value or API parameter).
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with cryofield's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A format error on `path`.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            err: source,
        }
    }

    /// An invalid argument.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// Attach a path to `std::io::Result`s: `File::open(p).at(p)?`.
pub trait IoContext<T> {
    /// Convert an I/O error into [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
