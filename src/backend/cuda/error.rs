//! [`CudaError`]: what went wrong on the device side, with the op or kernel, the shapes or
//! launch configuration, and for NVRTC the compiler log and the options used.

/// Errors of the CUDA backend (converted to [`crate::Error::Invalid`] at the `Backend` boundary,
/// message intact).
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// No usable CUDA setup (driver, device or NVRTC missing); the reason is one line.
    #[error("CUDA unavailable: {0}")]
    Unavailable(String),
    /// NVRTC rejected a kernel file.
    #[error("NVRTC could not compile {file} for {arch} ({status}); options: {}\n{log}", .options.join(" "))]
    Compile {
        file: String,
        arch: String,
        status: String,
        options: Vec<String>,
        log: String,
    },
    /// A driver call failed during `op` (allocation, copy, module load, synchronization).
    #[error("{op} ({detail}): CUDA driver error {err}")]
    Driver {
        op: String,
        detail: String,
        err: String,
    },
    /// A kernel launch failed.
    #[error("launch of kernel {kernel} (grid {grid:?}, block {block:?}, {shared} B shared) failed: {err}")]
    Launch {
        kernel: String,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared: u32,
        err: String,
    },
    /// A cuBLAS call failed.
    #[error("{op} ({detail}): cuBLAS error {err}")]
    Blas {
        op: String,
        detail: String,
        err: String,
    },
}

impl From<CudaError> for crate::Error {
    fn from(e: CudaError) -> Self {
        crate::Error::Invalid(e.to_string())
    }
}
