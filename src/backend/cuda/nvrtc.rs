//! Runtime compilation of the kernels with NVRTC (no CUDA toolkit at build time).
//!
//! libnvrtc is looked up by cudarc under its usual names (`libnvrtc.so`, `libnvrtc.so.12`, …) on
//! the loader's search path. `CRYOFIELD_NVRTC_LIB=/path/to/libnvrtc.so.12` loads it from an
//! explicit path first (for instance from the `nvidia-cuda-nvrtc-cu12` pip wheel): once a
//! library with that soname is loaded, the dynamic loader hands it to cudarc's lookup by name.
//! The wheel's libnvrtc finds its `libnvrtc-builtins` next to itself (RUNPATH `$ORIGIN`).
//!
//! Every module is compiled to a cubin for one real architecture (`--gpu-architecture=sm_XY`);
//! with `--ptxas-options=-v` the log lists registers, stack, spills and shared memory per
//! kernel ([`parse_ptxas_log`]).

use super::error::CudaError;
use super::kernels::KernelModule;
use cudarc::nvrtc::{result, sys};
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

/// Environment variable naming libnvrtc by path.
pub const NVRTC_LIB_ENV: &str = "CRYOFIELD_NVRTC_LIB";

/// A loaded libnvrtc.
#[derive(Clone, Debug)]
pub struct NvrtcInfo {
    /// (major, minor) from `nvrtcVersion`.
    pub version: (i32, i32),
    /// Where it came from: the `CRYOFIELD_NVRTC_LIB` path or "loader search path".
    pub source: String,
}

/// Loads libnvrtc once per process (see the module doc); the error is one line saying what to
/// install or set.
pub fn load() -> Result<&'static NvrtcInfo, CudaError> {
    static INFO: OnceLock<Result<NvrtcInfo, String>> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut source = "loader search path".to_string();
        if let Some(path) = std::env::var_os(NVRTC_LIB_ENV).filter(|p| !p.is_empty()) {
            // SAFETY: loading libnvrtc runs its initializers, which have no preconditions;
            // the handle is leaked so the library stays loaded for cudarc's lookup by soname.
            let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
                // libloading's message is "dlopen failed"; dlerror's text is its source.
                let why = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string());
                format!(
                    "{NVRTC_LIB_ENV}={}: cannot load: {why}",
                    path.to_string_lossy()
                )
            })?;
            std::mem::forget(lib);
            source = path.to_string_lossy().into_owned();
        }
        // SAFETY: only tries to dlopen the candidate names.
        if !unsafe { sys::is_culib_present() } {
            return Err(format!(
                "libnvrtc not found (install the CUDA toolkit or `pip install \
                 nvidia-cuda-nvrtc-cu12` and set {NVRTC_LIB_ENV}=<path to libnvrtc.so.12>)"
            ));
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the library is present (checked above), so cudarc's loader does not panic;
        // nvrtcVersion writes two ints.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| format!("nvrtcVersion failed: {e}"))?;
        Ok(NvrtcInfo {
            version: (major, minor),
            source,
        })
    })
    .as_ref()
    .map_err(|e| CudaError::Unavailable(e.clone()))
}

/// The options every module is compiled with for `arch` (e.g. `sm_90`), then `extra`.
pub fn options(arch: &str, extra: &[&str]) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
    ];
    o.extend(extra.iter().map(|s| s.to_string()));
    o
}

/// A compiled module.
#[derive(Debug)]
pub struct Compiled {
    /// Program name (the source file).
    pub file: String,
    pub arch: String,
    pub options: Vec<String>,
    /// NVRTC's log (warnings; the ptxas report with `--ptxas-options=-v`).
    pub log: String,
    /// The cubin for `arch`.
    pub cubin: Vec<u8>,
}

/// Owns an `nvrtcProgram` and destroys it on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: self.0 came from create_program and is destroyed exactly once.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

fn c_chars_to_string(v: &[c_char]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles `source` (program name `file`) to a cubin for `arch` with [`options`]`(arch,
/// extra)`; a compile error carries NVRTC's log and the options.
pub fn compile_source(
    file: &str,
    source: &str,
    arch: &str,
    extra: &[&str],
) -> Result<Compiled, CudaError> {
    load()?;
    let opts = options(arch, extra);
    let fail = |status: String, log: String| CudaError::Compile {
        file: file.to_string(),
        arch: arch.to_string(),
        status,
        options: opts.clone(),
        log,
    };
    let src =
        CString::new(source).map_err(|_| fail("source contains a NUL byte".into(), "".into()))?;
    let name =
        CString::new(file).map_err(|_| fail("name contains a NUL byte".into(), "".into()))?;
    let prog = Program(
        result::create_program(&src, Some(name.as_c_str()))
            .map_err(|e| fail(format!("nvrtcCreateProgram: {e}"), String::new()))?,
    );
    // SAFETY: prog.0 is a live program; src and name outlive it.
    let compiled = unsafe { result::compile_program(prog.0, &opts) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog.0) }
        .map(|l| c_chars_to_string(&l))
        .unwrap_or_default();
    if let Err(e) = compiled {
        return Err(fail(e.to_string(), log));
    }
    let mut size = 0usize;
    // SAFETY: prog.0 was compiled successfully; the size query writes one usize.
    unsafe { sys::nvrtcGetCUBINSize(prog.0, &mut size) }
        .result()
        .map_err(|e| fail(format!("nvrtcGetCUBINSize: {e}"), log.clone()))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: cubin has the size NVRTC reported.
    unsafe { sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char) }
        .result()
        .map_err(|e| fail(format!("nvrtcGetCUBIN: {e}"), log.clone()))?;
    Ok(Compiled {
        file: file.to_string(),
        arch: arch.to_string(),
        options: opts,
        log,
        cubin,
    })
}

/// Compiles one kernel module for `arch`.
pub fn compile_module(m: &KernelModule, arch: &str, extra: &[&str]) -> Result<Compiled, CudaError> {
    compile_source(m.file, m.source, arch, extra)
}

/// Per-kernel resources from a ptxas `-v` report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub kernel: String,
    pub registers: u32,
    pub stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub smem_bytes: u32,
}

/// The number right before `unit` in `line` (`"… 40 registers"` → 40).
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let pos = line.find(unit)?;
    line[..pos].split_whitespace().last()?.parse().ok()
}

/// Parses the per-kernel blocks of a ptxas `-v` log:
/// `Compiling entry function 'k' for 'sm_90'`, `… N bytes stack frame, N bytes spill stores,
/// N bytes spill loads`, `Used N registers, … N bytes smem`.
pub fn parse_ptxas_log(log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(KernelResources {
                kernel: name.to_string(),
                ..Default::default()
            });
            continue;
        }
        let Some(k) = out.last_mut() else { continue };
        if line.contains("stack frame") {
            k.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            k.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            k.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        }
        if line.contains("Used") && line.contains("registers") {
            k.registers = number_before(line, "registers").unwrap_or(0);
            k.smem_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_report() {
        let log = "ptxas info    : 24 bytes gmem\n\
            ptxas info    : Compiling entry function 'gemm_fused_f32' for 'sm_90'\n\
            ptxas info    : Function properties for gemm_fused_f32\n\
            ptxas         .     32 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
            ptxas info    : Used 80 registers, used 1 barriers, 32 bytes cumulative stack size, 27648 bytes smem, 552 bytes cmem[0]\n\
            ptxas info    : Compiling entry function 'axpby_f32' for 'sm_90'\n\
            ptxas info    : Function properties for axpby_f32\n\
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
            ptxas info    : Used 12 registers, used 0 barriers, 380 bytes cmem[0]\n";
        let r = parse_ptxas_log(log);
        assert_eq!(
            r,
            vec![
                KernelResources {
                    kernel: "gemm_fused_f32".into(),
                    registers: 80,
                    stack_bytes: 32,
                    spill_stores: 8,
                    spill_loads: 4,
                    smem_bytes: 27648,
                },
                KernelResources {
                    kernel: "axpby_f32".into(),
                    registers: 12,
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn options_name_the_arch_first() {
        assert_eq!(
            options("sm_80", &["-lineinfo"]),
            ["--gpu-architecture=sm_80", "--std=c++17", "-lineinfo"]
        );
    }
}
