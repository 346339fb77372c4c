//! The embedded kernel sources (`kernels/*.cu`, see `build.rs`) and, with the `cuda` feature,
//! one typed launcher per kernel plus the per-device module cache they load from.
//!
//! A launcher has the kernel's parameters in order with Rust types (`int` → `i32`,
//! `const float*` → `&impl In<f32>`, `float*` → `&mut impl Out<f32>`, …), generated from the
//! `extern "C" __global__` signature: a launch with the wrong number, order or types of
//! arguments does not compile.

/// One NVRTC program: a `kernels/<name>.cu` file with `kernels/common.cuh` in front.
#[derive(Debug)]
pub struct KernelModule {
    /// File stem, e.g. `gemm`.
    pub name: &'static str,
    /// Path relative to the crate root, e.g. `kernels/gemm.cu` (the NVRTC program name; `#line`
    /// directives make compiler messages point into this file).
    pub file: &'static str,
    /// `common.cuh` + the file.
    pub source: &'static str,
    /// The `extern "C"` kernels it defines.
    pub kernels: &'static [&'static str],
}

include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));

/// The module that defines `kernel`.
pub fn module_of(kernel: &str) -> Option<&'static KernelModule> {
    MODULES.iter().find(|m| m.kernels.contains(&kernel))
}

#[cfg(feature = "cuda")]
pub use launch::*;

#[cfg(feature = "cuda")]
mod launch {
    use super::super::error::CudaError;
    use super::super::nvrtc;
    use cudarc::driver::{
        CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut,
        DriverError, LaunchArgs, LaunchConfig, PushKernelArg,
    };
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    /// The value pushed for an absent optional pointer argument (a null device pointer).
    static NULL_PTR: u64 = 0;

    /// A device buffer passed as a `const T*` kernel argument.
    pub trait In<T> {
        /// Push the device pointer onto the argument list.
        fn push<'a>(&'a self, b: &mut LaunchArgs<'a>);
    }

    /// A device buffer passed as a `T*` (written) kernel argument.
    pub trait Out<T> {
        /// Push the device pointer onto the argument list.
        fn push_mut<'a>(&'a mut self, b: &mut LaunchArgs<'a>);
    }

    impl<T> In<T> for CudaSlice<T> {
        fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
            b.arg(self);
        }
    }
    impl<T> In<T> for CudaView<'_, T> {
        fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
            b.arg(self);
        }
    }
    impl<T, X: In<T>> In<T> for &X {
        fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
            (**self).push(b)
        }
    }
    /// `None` is a null pointer (an absent optional operand).
    impl<T, X: In<T>> In<T> for Option<X> {
        fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
            match self {
                Some(x) => x.push(b),
                None => {
                    b.arg(&NULL_PTR);
                }
            }
        }
    }
    impl<T> Out<T> for CudaSlice<T> {
        fn push_mut<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
            b.arg(self);
        }
    }
    impl<T> Out<T> for CudaViewMut<'_, T> {
        fn push_mut<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
            b.arg(self);
        }
    }
    impl<T, X: Out<T>> Out<T> for &mut X {
        fn push_mut<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
            (**self).push_mut(b)
        }
    }
    /// `None` is a null pointer (an absent optional output).
    impl<T, X: Out<T>> Out<T> for Option<X> {
        fn push_mut<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
            match self {
                Some(x) => x.push_mut(b),
                None => {
                    b.arg(&NULL_PTR);
                }
            }
        }
    }

    /// Compiled images by (module, arch): NVRTC runs once per module and architecture per
    /// process, whatever the number of devices or backends.
    type ImageCache = Mutex<HashMap<(&'static str, String), Arc<Vec<u8>>>>;
    fn images() -> &'static ImageCache {
        static IMAGES: OnceLock<ImageCache> = OnceLock::new();
        IMAGES.get_or_init(Default::default)
    }

    /// Modules loaded into one device context, compiled by NVRTC on first use.
    pub struct ModuleCache {
        ctx: Arc<CudaContext>,
        arch: String,
        modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
        functions: Mutex<HashMap<&'static str, CudaFunction>>,
    }

    impl ModuleCache {
        /// An empty cache for `ctx`, compiling for `arch` (e.g. `sm_90`).
        pub fn new(ctx: Arc<CudaContext>, arch: String) -> Self {
            Self {
                ctx,
                arch,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
            }
        }

        /// The architecture modules are compiled for.
        pub fn arch(&self) -> &str {
            &self.arch
        }

        fn module(&self, m: &'static super::KernelModule) -> Result<Arc<CudaModule>, CudaError> {
            let mut mods = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(md) = mods.get(m.name) {
                return Ok(md.clone());
            }
            let key = (m.name, self.arch.clone());
            let cached = images()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            let image = match cached {
                Some(i) => i,
                None => {
                    let c = nvrtc::compile_module(m, &self.arch, &[])?;
                    let i = Arc::new(c.cubin);
                    images()
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, i.clone());
                    i
                }
            };
            let md = self
                .ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(image.to_vec()))
                .map_err(|e| CudaError::Driver {
                    op: "load module".into(),
                    detail: format!("{} for {}", m.file, self.arch),
                    err: e.to_string(),
                })?;
            mods.insert(m.name, md.clone());
            Ok(md)
        }

        /// The kernel `name` of module `module` (compiled and loaded on first use).
        pub fn function(
            &self,
            module: &'static str,
            name: &'static str,
        ) -> Result<CudaFunction, CudaError> {
            if let Some(f) = self
                .functions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
            {
                return Ok(f.clone());
            }
            let m = super::MODULES
                .iter()
                .find(|m| m.name == module)
                .ok_or_else(|| CudaError::Unavailable(format!("no kernel module `{module}`")))?;
            let f = self
                .module(m)?
                .load_function(name)
                .map_err(|e| CudaError::Driver {
                    op: "load function".into(),
                    detail: format!("{name} in {}", m.file),
                    err: e.to_string(),
                })?;
            self.functions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, f.clone());
            Ok(f)
        }
    }

    /// What a generated launcher needs: the stream to launch on and the module cache.
    pub struct Launcher<'s> {
        pub stream: &'s Arc<CudaStream>,
        pub cache: &'s ModuleCache,
    }

    impl Launcher<'_> {
        /// The stream kernels are launched on.
        pub fn stream(&self) -> &Arc<CudaStream> {
            self.stream
        }

        /// See [`ModuleCache::function`].
        pub fn function(
            &self,
            module: &'static str,
            name: &'static str,
        ) -> Result<CudaFunction, CudaError> {
            self.cache.function(module, name)
        }

        /// The error of a failed launch of `kernel` with `cfg`.
        pub fn launch_error(&self, kernel: &str, cfg: LaunchConfig, e: DriverError) -> CudaError {
            CudaError::Launch {
                kernel: kernel.to_string(),
                grid: cfg.grid_dim,
                block: cfg.block_dim,
                shared: cfg.shared_mem_bytes,
                err: e.to_string(),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    mod generated {
        use super::{CudaError, In, LaunchConfig, Launcher, Out, PushKernelArg};
        include!(concat!(env!("OUT_DIR"), "/kernel_launchers.rs"));
    }
    pub use generated::*;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_declares_its_kernels() {
        assert!(!MODULES.is_empty());
        for m in MODULES {
            assert!(
                m.source.contains("#line 1"),
                "{}: common.cuh prefix",
                m.file
            );
            for k in m.kernels {
                let decl = format!(" {k}(");
                assert!(m.source.contains(&decl), "{}: {k} not found", m.file);
                assert_eq!(module_of(k).map(|x| x.name), Some(m.name));
            }
        }
    }
}
