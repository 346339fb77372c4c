//! Choosing the compute device: the `--device` argument ([`DeviceArg`]) and [`select`], which
//! probes for a usable CUDA setup without ever panicking when none is installed.
//!
//! The probe, in order: the `cuda` feature; libcuda loadable (checked before any driver call,
//! since cudarc panics on a missing library); `cuInit` and the device count (inside
//! `catch_unwind`); libnvrtc loadable (the kernels are compiled at run time, see
//! [`super::nvrtc`]). cuBLAS is optional: without it `gemm` uses the built-in kernel.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The `--device` argument: `auto` (CUDA device 0 when usable, else the CPU), `cpu`, `cuda`
/// (device 0) or `cuda:N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceArg {
    #[default]
    Auto,
    Cpu,
    /// A CUDA device ordinal.
    Cuda(usize),
}

impl FromStr for DeviceArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "unknown device `{s}` (expected auto, cpu, cuda or cuda:N)"
            ))
        };
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" => DeviceArg::Auto,
            "cpu" => DeviceArg::Cpu,
            "cuda" | "gpu" => DeviceArg::Cuda(0),
            other => match other.strip_prefix("cuda:") {
                Some(n) => DeviceArg::Cuda(n.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            },
        })
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceArg::Auto => write!(f, "auto"),
            DeviceArg::Cpu => write!(f, "cpu"),
            DeviceArg::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The device a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selected {
    Cpu,
    /// A CUDA device ordinal.
    Cuda(usize),
}

/// The outcome of [`select`]: the device and a one-line notice for the log
/// (`device: cuda:0 (NVIDIA H200)`, `device: cpu (no CUDA: libcuda not found)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub device: Selected,
    pub notice: String,
}

/// CUDA devices usable by this process: their names by ordinal, or why there are none.
pub fn probe() -> std::result::Result<Vec<String>, String> {
    probe_impl()
}

#[cfg(not(feature = "cuda"))]
fn probe_impl() -> std::result::Result<Vec<String>, String> {
    Err("built without the `cuda` feature".into())
}

#[cfg(feature = "cuda")]
fn probe_impl() -> std::result::Result<Vec<String>, String> {
    use cudarc::driver::{result, sys};
    // SAFETY: only tries to dlopen the candidate library names.
    if !unsafe { sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda not found)".into());
    }
    let names = std::panic::catch_unwind(|| -> std::result::Result<Vec<String>, String> {
        result::init().map_err(|e| format!("cuInit failed: {e}"))?;
        let n = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
        (0..n)
            .map(|i| {
                let dev = result::device::get(i).map_err(|e| format!("cuDeviceGet({i}): {e}"))?;
                result::device::get_name(dev).map_err(|e| format!("cuDeviceGetName({i}): {e}"))
            })
            .collect()
    })
    .map_err(|_| "the CUDA driver library could not be used (cudarc panicked)".to_string())??;
    if names.is_empty() {
        return Err("no CUDA device".into());
    }
    super::nvrtc::load().map_err(|e| e.to_string())?;
    Ok(names)
}

/// Resolves `arg`: `auto` falls back to the CPU with the reason in the notice; an explicit
/// `cuda`/`cuda:N` that cannot be honoured is an error.
pub fn select(arg: DeviceArg) -> Result<Selection> {
    select_with(arg, probe)
}

/// [`select`] with the probe supplied (tests).
pub fn select_with(
    arg: DeviceArg,
    probe: impl FnOnce() -> std::result::Result<Vec<String>, String>,
) -> Result<Selection> {
    match arg {
        DeviceArg::Cpu => Ok(Selection {
            device: Selected::Cpu,
            notice: "device: cpu".into(),
        }),
        DeviceArg::Auto => Ok(match probe() {
            Ok(names) => Selection {
                device: Selected::Cuda(0),
                notice: format!("device: cuda:0 ({})", names[0]),
            },
            Err(why) => Selection {
                device: Selected::Cpu,
                notice: format!("device: cpu (no CUDA: {why})"),
            },
        }),
        DeviceArg::Cuda(n) => {
            let names = probe().map_err(|why| Error::invalid(format!("--device {arg}: {why}")))?;
            match names.get(n) {
                Some(name) => Ok(Selection {
                    device: Selected::Cuda(n),
                    notice: format!("device: cuda:{n} ({name})"),
                }),
                None => Err(Error::invalid(format!(
                    "--device {arg}: only {} CUDA device(s) present",
                    names.len()
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_args() {
        assert_eq!("auto".parse::<DeviceArg>().unwrap(), DeviceArg::Auto);
        assert_eq!("CPU".parse::<DeviceArg>().unwrap(), DeviceArg::Cpu);
        assert_eq!("cuda".parse::<DeviceArg>().unwrap(), DeviceArg::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceArg>().unwrap(), DeviceArg::Cuda(3));
        for bad in ["cuda:", "cuda:x", "tpu", ""] {
            assert!(bad.parse::<DeviceArg>().is_err(), "{bad}");
        }
        for a in [DeviceArg::Auto, DeviceArg::Cpu, DeviceArg::Cuda(2)] {
            assert_eq!(a.to_string().parse::<DeviceArg>().unwrap(), a);
        }
    }

    #[test]
    fn clap_parses_device_flag() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[arg(long, default_value_t = DeviceArg::Auto)]
            device: DeviceArg,
        }
        assert_eq!(Cli::parse_from(["x"]).device, DeviceArg::Auto);
        assert_eq!(
            Cli::parse_from(["x", "--device", "cuda:1"]).device,
            DeviceArg::Cuda(1)
        );
        assert!(Cli::try_parse_from(["x", "--device", "npu"]).is_err());
    }

    #[test]
    fn auto_falls_back_and_explicit_cuda_fails() {
        let none = || Err("no CUDA driver (libcuda not found)".to_string());
        let s = select_with(DeviceArg::Auto, none).unwrap();
        assert_eq!(s.device, Selected::Cpu);
        assert_eq!(
            s.notice,
            "device: cpu (no CUDA: no CUDA driver (libcuda not found))"
        );
        let e = select_with(DeviceArg::Cuda(0), none)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--device cuda:0") && e.contains("libcuda"),
            "{e}"
        );
        let one = || Ok(vec!["NVIDIA H200".to_string()]);
        assert_eq!(
            select_with(DeviceArg::Auto, one).unwrap().notice,
            "device: cuda:0 (NVIDIA H200)"
        );
        assert!(select_with(DeviceArg::Cuda(1), one).is_err());
        assert_eq!(
            select_with(DeviceArg::Cpu, || panic!("not probed"))
                .unwrap()
                .device,
            Selected::Cpu
        );
    }

    #[test]
    fn probe_never_panics() {
        // On a machine without CUDA this is an Err with a reason; with CUDA a list of names.
        match probe() {
            Ok(names) => assert!(!names.is_empty()),
            Err(why) => assert!(!why.is_empty()),
        }
    }
}
