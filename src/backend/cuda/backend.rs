//! [`CudaBackend`]: device memory, the elementwise/reduction/loss/optimizer primitives, GEMM
//! (cuBLAS, or the built-in fused kernel) and the plumbing shared by `mlp.rs` and `pose.rs`.
//!
//! Every primitive checks its buffer lengths first (the same checks and messages as the CPU
//! backend), then launches; the `// SAFETY:` comment at each launch names the check that keeps
//! the kernel's indices inside the buffers.

use super::error::CudaError;
use super::kernels::{self as k, Launcher, ModuleCache};
use crate::backend::cpu::check;
use crate::backend::{
    AdamCoeffs, Backend, BinaryOp, DecodeOutput, DecodeSaved, DecodeSpec, MatRef, MlpLayerGrad,
    MlpOutput, MlpSaved, MlpWeights, UnaryOp,
};
use crate::{Error, Result};
use cudarc::cublas::{sys as blas_sys, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    sys as drv_sys, CudaContext, CudaSlice, CudaStream, CudaView, CudaViewMut, DriverError,
    LaunchConfig,
};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Math of the coordinate network's GEMMs (see the module doc of [`super`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 FMAs on CUDA cores.
    #[default]
    F32,
    /// tf32 tensor cores (inputs rounded to a 10-bit mantissa, f32 accumulation), sm_80+.
    Tf32,
    /// bf16 tensor cores (inputs rounded to an 8-bit mantissa, f32 accumulation), sm_80+.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::invalid(format!(
                "unknown precision `{s}` (expected f32, tf32 or bf16)"
            ))),
        }
    }
}

/// One device: context, the stream every kernel runs on, cuBLAS (when libcublas loads) and
/// the compiled modules.
pub(super) struct Inner {
    pub(super) stream: Arc<CudaStream>,
    blas: Option<CudaBlas>,
    pub(super) cache: ModuleCache,
    ordinal: usize,
    device_name: String,
    cc: (i32, i32),
    /// Streaming multiprocessors (sizes split-K weight gradients).
    pub(super) sm_count: usize,
    // Declared last: dropped after the stream and modules that live in it.
    _ctx: Arc<CudaContext>,
}

/// The CUDA backend over `f32` buffers on one device (see [`super`]). Cloning shares the
/// device, stream and compiled kernels.
#[derive(Clone)]
pub struct CudaBackend {
    pub(super) inner: Arc<Inner>,
    precision: Precision,
    use_cublas: bool,
    poison: bool,
}

impl Inner {
    /// Context, stream, cuBLAS and an empty module cache for device `ordinal`.
    fn open(ordinal: usize) -> Result<Self> {
        let names = super::device::probe().map_err(CudaError::Unavailable)?;
        let Some(device_name) = names.get(ordinal).cloned() else {
            return Err(CudaError::Unavailable(format!(
                "no CUDA device {ordinal} ({} present)",
                names.len()
            ))
            .into());
        };
        let what = || format!("device {ordinal}");
        let ctx = CudaContext::new(ordinal).map_err(drv("create context", what()))?;
        // SAFETY: every buffer of this device is allocated, used and freed on the one stream
        // below (`CudaBackend::new` shares one `Inner` per device), so stream order alone orders
        // all accesses; cudarc's per-buffer events only synchronize across streams.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(drv("create stream", what()))?;
        let cc = ctx
            .compute_capability()
            .map_err(drv("compute capability", what()))?;
        let sm_count = ctx
            .attribute(drv_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(drv("multiprocessor count", what()))?
            .max(1) as usize;
        keep_freed_memory(&ctx);
        // SAFETY: only tries to dlopen the candidate library names.
        let blas = if unsafe { blas_sys::is_culib_present() } {
            CudaBlas::new(stream.clone()).ok()
        } else {
            None
        };
        let cache = ModuleCache::new(ctx.clone(), format!("sm_{}{}", cc.0, cc.1));
        Ok(Inner {
            stream,
            blas,
            cache,
            ordinal,
            device_name,
            cc,
            sm_count,
            _ctx: ctx,
        })
    }
}

/// Lets the device's default memory pool keep freed memory (release threshold ∞): buffers are
/// freed stream-ordered into that pool, and training steps reallocate the same sizes, which
/// then never go back to the driver. Best effort: a failure only costs speed.
fn keep_freed_memory(ctx: &CudaContext) {
    let mut pool: drv_sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: `pool` is a valid out-pointer and the device handle comes from a live context.
    let got = unsafe { drv_sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) };
    if got == drv_sys::CUresult::CUDA_SUCCESS && !pool.is_null() {
        let mut threshold = u64::MAX;
        // SAFETY: the release threshold attribute takes a pointer to a u64.
        let _ = unsafe {
            drv_sys::cuMemPoolSetAttribute(
                pool,
                drv_sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            )
        };
    }
}

/// A driver error during `op` as a crate error.
pub(super) fn drv(op: &'static str, detail: String) -> impl FnOnce(DriverError) -> Error {
    move |e| {
        CudaError::Driver {
            op: op.into(),
            detail,
            err: e.to_string(),
        }
        .into()
    }
}

/// `n` as a kernel `int`.
pub(super) fn int(what: &str, n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::Shape {
        what: what.to_string(),
        expected: "a size below 2³¹ (kernel index type)".into(),
        got: n.to_string(),
    })
}

/// `Err(Shape)` unless `d > 0` divides `len`; returns the row count.
pub(super) fn rows(what: &str, len: usize, d: usize) -> Result<usize> {
    if d == 0 || !len.is_multiple_of(d) {
        return Err(Error::Shape {
            what: what.to_string(),
            expected: format!("a multiple of the row width {d}"),
            got: format!("{len} elements"),
        });
    }
    Ok(len / d)
}

/// `Err(Shape)` unless a (rows, cols) matrix with row stride `ld` fits in `len` elements.
pub(super) fn fits(what: &str, len: usize, rows: usize, cols: usize, ld: usize) -> Result<()> {
    let need = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    };
    if (rows > 1 && cols > ld) || len < need {
        return Err(Error::Shape {
            what: what.to_string(),
            expected: format!("({rows}, {cols}) with row stride {ld}: {need} elements"),
            got: format!("{len} elements"),
        });
    }
    Ok(())
}

/// A 1-D grid-stride launch over `n` elements, 256 threads per block.
pub(super) fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 1 << 16) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One warp per row, 8 rows per block of 256.
fn warp_rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Kernel code and slope of a unary op (the `OP_*` codes of `kernels/common.cuh`).
pub(super) fn unary_code(op: UnaryOp) -> (i32, f32) {
    match op {
        UnaryOp::Relu => (0, 0.0),
        UnaryOp::LeakyRelu(a) => (1, a as f32),
        UnaryOp::Silu => (2, 0.0),
        UnaryOp::Gelu => (3, 0.0),
        UnaryOp::Tanh => (4, 0.0),
        UnaryOp::Sigmoid => (5, 0.0),
        UnaryOp::Sin => (6, 0.0),
        UnaryOp::Cos => (7, 0.0),
        UnaryOp::Exp => (8, 0.0),
        UnaryOp::Log => (9, 0.0),
        UnaryOp::Softplus => (10, 0.0),
        UnaryOp::Square => (11, 0.0),
    }
}

/// `ACT_NONE` of `kernels/common.cuh`.
pub(super) const ACT_NONE: i32 = -1;

/// The A operand of [`FusedGemm`].
pub(super) enum AOperand<'a> {
    /// Row-major (m, k) with row stride `ld`, or (k, m) when `trans`.
    Mem {
        buf: CudaView<'a, f32>,
        ld: usize,
        trans: bool,
    },
    /// The positional encoding of coordinate rows coords (m, c), frequencies (nfreq, 3) in
    /// `groups` groups: k = 2·nfreq + c − 3.
    Pe {
        coords: &'a CudaSlice<f32>,
        c: usize,
        freqs: &'a CudaSlice<f32>,
        nfreq: usize,
        groups: usize,
    },
}

/// One call of the fused GEMM kernels (`kernels/gemm.cu`): C (m, n) = epilogue(α·op(A)·op(B)).
pub(super) struct FusedGemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: AOperand<'a>,
    /// (k, n) row-major with row stride `ldb`, or (n, k) when `trans_b`.
    pub b: CudaView<'a, f32>,
    pub ldb: usize,
    pub trans_b: bool,
    pub alpha: f32,
    /// β = 0 does not read C.
    pub beta: f32,
    pub ldc: usize,
    /// K per split (0: all of K in one); with ⌈k/k_split⌉ > 1 splits, blockIdx.z writes split
    /// z into the z-th of consecutive (m, ldc) blocks of C, which needs a plain epilogue.
    pub k_split: usize,
    pub bias: Option<&'a CudaSlice<f32>>,
    /// Residual (m, n) with row stride.
    pub res: Option<(CudaView<'a, f32>, usize)>,
    pub act: i32,
    pub act_alpha: f32,
    /// Pre-activation output (m, n), row stride `ldc`.
    pub zsave: Option<&'a mut CudaSlice<f32>>,
    /// Activation-gradient factor: (op code, z (m, n), h (m, n), row stride).
    pub dact: Option<(i32, CudaView<'a, f32>, CudaView<'a, f32>, usize)>,
}

impl<'a> FusedGemm<'a> {
    /// A plain product (no epilogue) with A in memory.
    #[allow(clippy::too_many_arguments)]
    pub fn plain(
        m: usize,
        n: usize,
        k: usize,
        a: CudaView<'a, f32>,
        lda: usize,
        trans_a: bool,
        b: CudaView<'a, f32>,
        ldb: usize,
        trans_b: bool,
        alpha: f32,
        beta: f32,
        ldc: usize,
    ) -> Self {
        Self {
            m,
            n,
            k,
            a: AOperand::Mem {
                buf: a,
                ld: lda,
                trans: trans_a,
            },
            b,
            ldb,
            trans_b,
            alpha,
            beta,
            ldc,
            k_split: 0,
            bias: None,
            res: None,
            act: ACT_NONE,
            act_alpha: 0.0,
            zsave: None,
            dact: None,
        }
    }
}

impl CudaBackend {
    /// A backend on CUDA device `ordinal`, f32 GEMMs, cuBLAS when present. Every backend of one
    /// device in this process shares its context, stream, cuBLAS handle and compiled kernels
    /// (kernels compile on first use). Errors (one line) when no usable device.
    pub fn new(ordinal: usize) -> Result<Self> {
        type Registry = Mutex<HashMap<usize, Weak<Inner>>>;
        static DEVICES: OnceLock<Registry> = OnceLock::new();
        let mut devices = DEVICES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let inner = match devices.get(&ordinal).and_then(Weak::upgrade) {
            Some(inner) => inner,
            None => {
                let inner = Arc::new(Inner::open(ordinal)?);
                devices.insert(ordinal, Arc::downgrade(&inner));
                inner
            }
        };
        Ok(Self {
            inner,
            precision: Precision::F32,
            use_cublas: true,
            poison: false,
        })
    }

    /// This backend with the coordinate network's GEMMs in `p`; tensor-core precisions need
    /// compute capability 8.0.
    pub fn with_precision(mut self, p: Precision) -> Result<Self> {
        if p != Precision::F32 && self.inner.cc.0 < 8 {
            return Err(Error::invalid(format!(
                "{p} GEMMs need compute capability 8.0, {} has {}.{}",
                self.inner.device_name, self.inner.cc.0, self.inner.cc.1
            )));
        }
        self.precision = p;
        Ok(self)
    }

    /// This backend with cuBLAS used for `Backend::gemm` (`true`, the default, when libcublas
    /// loaded) or the built-in fused kernel at [`Self::precision`] (`false`).
    pub fn with_cublas(mut self, on: bool) -> Self {
        self.use_cublas = on;
        self
    }

    /// This backend with every `alloc` filled with NaN (tests: an output element a kernel
    /// forgets to write, or a temporary read before it is written, shows up as NaN).
    pub fn with_poisoned_allocs(mut self, on: bool) -> Self {
        self.poison = on;
        self
    }

    /// Whether `Backend::gemm` goes to cuBLAS.
    pub fn uses_cublas(&self) -> bool {
        self.use_cublas && self.inner.blas.is_some()
    }

    /// The GEMM precision of the coordinate network.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Device name, e.g. `NVIDIA H200`.
    pub fn device_name(&self) -> &str {
        &self.inner.device_name
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.inner.cc
    }

    /// Waits for every queued kernel (timing, error checks).
    pub fn synchronize(&self) -> Result<()> {
        self.inner
            .stream
            .synchronize()
            .map_err(drv("synchronize", format!("device {}", self.inner.ordinal)))
    }

    pub(super) fn launcher(&self) -> Launcher<'_> {
        Launcher {
            stream: &self.inner.stream,
            cache: &self.inner.cache,
        }
    }

    /// A u32 buffer (outputs of `top_k_smallest`).
    pub(super) fn alloc_u32(&self, n: usize) -> Result<CudaSlice<u32>> {
        // SAFETY: any bit pattern is a valid u32; callers overwrite every element.
        unsafe { self.inner.stream.alloc::<u32>(n.max(1)) }
            .map_err(drv("alloc", format!("{n} u32")))
    }

    /// Host → device copy of indices.
    pub(super) fn upload_u32(&self, x: &[u32]) -> Result<CudaSlice<u32>> {
        self.inner
            .stream
            .clone_htod(x)
            .map_err(drv("upload", format!("{} u32", x.len())))
    }

    /// Device → host copy of indices.
    pub(super) fn download_u32(&self, x: &CudaSlice<u32>, n: usize) -> Result<Vec<u32>> {
        let mut v = self
            .inner
            .stream
            .clone_dtoh(x)
            .map_err(drv("download", format!("{n} u32")))?;
        v.truncate(n);
        Ok(v)
    }

    /// Launches the fused GEMM at this backend's precision into c (row stride g.ldc), after
    /// checking every operand's extent.
    pub(super) fn fused_gemm(
        &self,
        mut g: FusedGemm<'_>,
        c: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let (m, n, kk) = (g.m, g.n, g.k);
        if m == 0 || n == 0 {
            return Ok(());
        }
        let k_split = if g.k_split == 0 { kk.max(1) } else { g.k_split };
        let splits = kk.div_ceil(k_split).max(1);
        if splits > 1
            && (g.bias.is_some() || g.res.is_some() || g.zsave.is_some() || g.dact.is_some())
        {
            return Err(Error::invalid("fused_gemm: split-K with an epilogue"));
        }
        match &g.a {
            AOperand::Mem { buf, ld, trans } => {
                let (r, cl) = if *trans { (kk, m) } else { (m, kk) };
                fits("fused_gemm: A", buf.len(), r, cl, *ld)?;
            }
            AOperand::Pe {
                coords,
                c,
                freqs,
                nfreq,
                groups,
            } => {
                if *c < 3 || *groups == 0 || !nfreq.is_multiple_of(*groups) {
                    return Err(Error::invalid(format!(
                        "fused_gemm: positional encoding with c = {c}, {nfreq} frequencies in {groups} groups"
                    )));
                }
                check("fused_gemm: PE width", 2 * nfreq + c - 3, kk)?;
                fits("fused_gemm: PE coords", coords.len(), m, *c, *c)?;
                check("fused_gemm: PE freqs", 3 * nfreq, freqs.len())?;
            }
        }
        let (br, bc) = if g.trans_b { (n, kk) } else { (kk, n) };
        fits("fused_gemm: B", g.b.len(), br, bc, g.ldb)?;
        fits("fused_gemm: C", c.len(), splits * m, n, g.ldc)?;
        if let Some(b) = g.bias {
            check("fused_gemm: bias", n, b.len())?;
        }
        if let Some((r, ld)) = &g.res {
            fits("fused_gemm: residual", r.len(), m, n, *ld)?;
        }
        if let Some(z) = &g.zsave {
            fits("fused_gemm: saved pre-activation", z.len(), m, n, g.ldc)?;
        }
        if let Some((_, z, h, ld)) = &g.dact {
            fits("fused_gemm: activation input", z.len(), m, n, *ld)?;
            fits("fused_gemm: activation output", h.len(), m, n, *ld)?;
        }
        let cfg = LaunchConfig {
            grid_dim: (
                m.div_ceil(64) as u32,
                int("fused_gemm: column tiles", n.div_ceil(64))? as u32,
                int("fused_gemm: splits", splits)? as u32,
            ),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        if n.div_ceil(64) > 65535 || splits > 65535 {
            return Err(Error::invalid(format!(
                "fused_gemm: {n} columns / {splits} splits exceed the grid"
            )));
        }
        let (mi, ni, ki) = (
            int("fused_gemm: M", m)?,
            int("fused_gemm: N", n)?,
            int("fused_gemm: K", kk)?,
        );
        let (ldb, ldc) = (
            int("fused_gemm: ldb", g.ldb)?,
            int("fused_gemm: ldc", g.ldc)?,
        );
        let split_stride = (m * g.ldc) as i64;
        let (res, ldr) = match g.res.take() {
            Some((r, ld)) => (Some(r), int("fused_gemm: ldr", ld)?),
            None => (None, 0),
        };
        let (dact, gz, gh, ldg) = match g.dact.take() {
            Some((code, z, h, ld)) => (code, Some(z), Some(h), int("fused_gemm: ldg", ld)?),
            None => (ACT_NONE, None, None, 0),
        };
        let l = self.launcher();
        let tb = g.trans_b as i32;
        let p = self.precision;
        let ks = int("fused_gemm: k_split", k_split)?;
        // SAFETY (all arms): every operand's extent was checked above against (m, n, k) and
        // its row stride (`fits`), the grid covers ⌈m/64⌉ × ⌈n/64⌉ tiles × splits and the
        // kernel guards each tile edge; C holds `splits` blocks of (m, ldc).
        match g.a {
            AOperand::Mem { buf, ld, trans } => {
                let lda = int("fused_gemm: lda", ld)?;
                let ta = trans as i32;
                match p {
                    Precision::F32 => unsafe {
                        k::gemm_fused_f32(
                            &l,
                            cfg,
                            mi,
                            ni,
                            ki,
                            &buf,
                            lda,
                            ta,
                            &g.b,
                            ldb,
                            tb,
                            g.alpha,
                            g.beta,
                            c,
                            ldc,
                            ks,
                            split_stride,
                            &g.bias,
                            &res,
                            ldr,
                            g.act,
                            g.act_alpha,
                            &mut g.zsave,
                            ldc,
                            dact,
                            &gz,
                            &gh,
                            ldg,
                        )
                    },
                    Precision::Tf32 => unsafe {
                        k::gemm_fused_tf32(
                            &l,
                            cfg,
                            mi,
                            ni,
                            ki,
                            &buf,
                            lda,
                            ta,
                            &g.b,
                            ldb,
                            tb,
                            g.alpha,
                            g.beta,
                            c,
                            ldc,
                            ks,
                            split_stride,
                            &g.bias,
                            &res,
                            ldr,
                            g.act,
                            g.act_alpha,
                            &mut g.zsave,
                            ldc,
                            dact,
                            &gz,
                            &gh,
                            ldg,
                        )
                    },
                    Precision::Bf16 => unsafe {
                        k::gemm_fused_bf16(
                            &l,
                            cfg,
                            mi,
                            ni,
                            ki,
                            &buf,
                            lda,
                            ta,
                            &g.b,
                            ldb,
                            tb,
                            g.alpha,
                            g.beta,
                            c,
                            ldc,
                            ks,
                            split_stride,
                            &g.bias,
                            &res,
                            ldr,
                            g.act,
                            g.act_alpha,
                            &mut g.zsave,
                            ldc,
                            dact,
                            &gz,
                            &gh,
                            ldg,
                        )
                    },
                }
            }
            AOperand::Pe {
                coords,
                c: cw,
                freqs,
                nfreq,
                groups,
            } => {
                if splits > 1 || res.is_some() || dact != ACT_NONE {
                    return Err(Error::invalid(
                        "fused_gemm: the positional-encoding variant has no split-K, residual or activation gradient",
                    ));
                }
                let (cw, nf, gr) = (
                    int("fused_gemm: c", cw)?,
                    int("fused_gemm: nfreq", nfreq)?,
                    int("fused_gemm: groups", groups)?,
                );
                match p {
                    Precision::F32 => unsafe {
                        k::gemm_pe_f32(
                            &l,
                            cfg,
                            mi,
                            ni,
                            ki,
                            coords,
                            cw,
                            freqs,
                            nf,
                            gr,
                            &g.b,
                            ldb,
                            tb,
                            g.alpha,
                            g.beta,
                            c,
                            ldc,
                            &g.bias,
                            g.act,
                            g.act_alpha,
                            &mut g.zsave,
                            ldc,
                        )
                    },
                    Precision::Tf32 => unsafe {
                        k::gemm_pe_tf32(
                            &l,
                            cfg,
                            mi,
                            ni,
                            ki,
                            coords,
                            cw,
                            freqs,
                            nf,
                            gr,
                            &g.b,
                            ldb,
                            tb,
                            g.alpha,
                            g.beta,
                            c,
                            ldc,
                            &g.bias,
                            g.act,
                            g.act_alpha,
                            &mut g.zsave,
                            ldc,
                        )
                    },
                    Precision::Bf16 => unsafe {
                        k::gemm_pe_bf16(
                            &l,
                            cfg,
                            mi,
                            ni,
                            ki,
                            coords,
                            cw,
                            freqs,
                            nf,
                            gr,
                            &g.b,
                            ldb,
                            tb,
                            g.alpha,
                            g.beta,
                            c,
                            ldc,
                            &g.bias,
                            g.act,
                            g.act_alpha,
                            &mut g.zsave,
                            ldc,
                        )
                    },
                }
            }
        }?;
        Ok(())
    }

    /// y (nbatch, d) (+)= scale·Σ_rows of x, x being nbatch blocks of `rows` rows with row
    /// stride ldx whose columns col_off..col_off+d are summed (two deterministic passes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sum_rows_batched(
        &self,
        x: &CudaView<'_, f32>,
        rows_per: usize,
        d: usize,
        ldx: usize,
        col_off: usize,
        nbatch: usize,
        scale: f64,
        y: &mut CudaSlice<f32>,
        acc: bool,
    ) -> Result<()> {
        fits("sum_rows: x", x.len(), nbatch * rows_per, col_off + d, ldx)?;
        check("sum_rows: y", nbatch * d, y.len())?;
        if d == 0 || nbatch == 0 {
            return Ok(());
        }
        // Enough row chunks to fill the device twice over, each at least 64 rows.
        let col_blocks = d.div_ceil(32);
        let want = (2 * self.inner.sm_count)
            .div_ceil(col_blocks * nbatch)
            .max(1);
        let chunks = want.min(rows_per.div_ceil(64)).clamp(1, 1024);
        let mut partials = self.alloc(chunks * nbatch * d)?;
        let cfg = LaunchConfig {
            grid_dim: (
                int("sum_rows: column blocks", col_blocks)? as u32,
                chunks as u32,
                int("sum_rows: batches", nbatch)? as u32,
            ),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        if nbatch > 65535 {
            return Err(Error::invalid(format!(
                "sum_rows: {nbatch} batches exceed the grid"
            )));
        }
        let l = self.launcher();
        // SAFETY: x holds nbatch·rows_per rows of stride ldx covering columns
        // col_off..col_off+d (`fits` above); partials has chunks·nbatch·d elements, the grid's
        // (column block, chunk, batch) extents.
        unsafe {
            k::sum_rows_partial_f32(
                &l,
                cfg,
                x,
                int("sum_rows: rows", rows_per)?,
                int("sum_rows: d", d)?,
                int("sum_rows: ldx", ldx)?,
                int("sum_rows: col_off", col_off)?,
                &mut partials,
            )
        }?;
        // SAFETY: partials is (chunks, nbatch·d); y has nbatch·d elements (checked).
        unsafe {
            k::reduce_splits_f32(
                &l,
                grid(nbatch * d),
                &partials,
                chunks as i32,
                int("sum_rows: y", nbatch * d)?,
                scale as f32,
                acc as i32,
                y,
            )
        }?;
        Ok(())
    }

    /// y (len) += Σ_s partials[s, :] for partials (splits, len) (split-K weight gradients).
    pub(super) fn reduce_splits(
        &self,
        partials: &CudaSlice<f32>,
        splits: usize,
        len: usize,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("reduce_splits: partials", splits * len, partials.len())?;
        check("reduce_splits: y", len, y.len())?;
        // SAFETY: partials is (splits, len) and y (len) (checked).
        unsafe {
            k::reduce_splits_f32(
                &self.launcher(),
                grid(len),
                partials,
                int("reduce_splits", splits)?,
                int("reduce_splits", len)?,
                1.0,
                1,
                y,
            )
        }?;
        Ok(())
    }

    /// out[0] = scale·Σ partials (the second pass of the losses).
    fn finish_loss(
        &self,
        partials: &CudaSlice<f32>,
        scale: f64,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("loss: out", 1, out.len())?;
        // SAFETY: partials has `len` elements, one split of length 1 each; out has 1 element.
        unsafe {
            k::reduce_splits_f32(
                &self.launcher(),
                grid(1),
                partials,
                int("loss: partials", partials.len())?,
                1,
                scale as f32,
                0,
                out,
            )
        }?;
        Ok(())
    }

    /// (launch config, partial-sum buffer) of a loss reduction over n elements.
    fn loss_partials(&self, n: usize) -> Result<(LaunchConfig, CudaSlice<f32>)> {
        let blocks = n.div_ceil(256 * 8).clamp(1, 1024);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        Ok((cfg, self.alloc(blocks)?))
    }
}

impl Backend for CudaBackend {
    type Elem = f32;
    type Buf = CudaSlice<f32>;

    fn name(&self) -> String {
        format!(
            "cuda:{}-f32 ({}, {} GEMMs)",
            self.inner.ordinal, self.inner.device_name, self.precision
        )
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        if n == 0 {
            return self
                .inner
                .stream
                .null()
                .map_err(drv("alloc", "0 f32".into()));
        }
        // SAFETY: any bit pattern is a valid f32, and the trait leaves the contents unspecified.
        let mut x = unsafe { self.inner.stream.alloc::<f32>(n) }
            .map_err(drv("alloc", format!("{n} f32")))?;
        if self.poison {
            // SAFETY: the kernel writes x[i] for i < n = len(x).
            unsafe {
                k::fill_f32(
                    &self.launcher(),
                    grid(n),
                    &mut x,
                    f32::NAN,
                    int("alloc", n)?,
                )
            }?;
        }
        Ok(x)
    }

    fn zeros(&self, n: usize) -> Result<CudaSlice<f32>> {
        let mut x = self.alloc(n)?;
        if n > 0 {
            self.inner
                .stream
                .memset_zeros(&mut x)
                .map_err(drv("zeros", format!("{n} f32")))?;
        }
        Ok(x)
    }

    fn upload(&self, x: &[f32]) -> Result<CudaSlice<f32>> {
        if x.is_empty() {
            return self.alloc(0);
        }
        self.inner
            .stream
            .clone_htod(x)
            .map_err(drv("upload", format!("{} f32", x.len())))
    }

    fn to_vec(&self, x: &CudaSlice<f32>) -> Result<Vec<f32>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .stream
            .clone_dtoh(x)
            .map_err(drv("download", format!("{} f32", x.len())))
    }

    fn len(&self, x: &CudaSlice<f32>) -> usize {
        x.len()
    }

    fn copy(&self, x: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        if x.is_empty() {
            return self.alloc(0);
        }
        self.inner
            .stream
            .clone_dtod(x)
            .map_err(drv("copy", format!("{} f32", x.len())))
    }

    fn recycle(&self, x: CudaSlice<f32>) {
        // cudarc frees stream-ordered (cuMemFreeAsync) into the driver's pool: reuse is cheap.
        drop(x);
    }

    fn axpby(
        &self,
        alpha: f64,
        x: &CudaSlice<f32>,
        beta: f64,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("axpby: y", x.len(), y.len())?;
        let n = int("axpby", x.len())?;
        // SAFETY: the kernel touches x[i], y[i] for i < n = len(x) = len(y).
        unsafe {
            k::axpby_f32(
                &self.launcher(),
                grid(x.len()),
                alpha as f32,
                x,
                beta as f32,
                y,
                n,
            )
        }?;
        Ok(())
    }

    fn gemm(
        &self,
        alpha: f64,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        beta: f64,
        c: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("gemm: A", a.rows * a.cols, a.buf.len())?;
        check("gemm: B", b.rows * b.cols, b.buf.len())?;
        let (m, kk) = if a.trans {
            (a.cols, a.rows)
        } else {
            (a.rows, a.cols)
        };
        let (k2, n) = if b.trans {
            (b.cols, b.rows)
        } else {
            (b.rows, b.cols)
        };
        check("gemm: inner dimension of op(B)", kk, k2)?;
        check("gemm: C", m * n, c.len())?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        if let (Some(blas), true) = (&self.inner.blas, self.use_cublas) {
            // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: pass B first.
            let op = |t: bool| {
                if t {
                    blas_sys::cublasOperation_t::CUBLAS_OP_T
                } else {
                    blas_sys::cublasOperation_t::CUBLAS_OP_N
                }
            };
            let cfg = GemmConfig {
                transa: op(b.trans),
                transb: op(a.trans),
                m: int("gemm: n", n)?,
                n: int("gemm: m", m)?,
                k: int("gemm: k", kk)?,
                alpha: alpha as f32,
                lda: int("gemm: ldb", b.cols.max(1))?,
                ldb: int("gemm: lda", a.cols.max(1))?,
                beta: beta as f32,
                ldc: int("gemm: ldc", n)?,
            };
            // cuBLAS runs in the calling thread's current context.
            self.inner
                .stream
                .context()
                .bind_to_thread()
                .map_err(drv("gemm", "bind context".into()))?;
            // SAFETY: A, B and C hold exactly rows·cols elements with the shapes checked above,
            // and the leading dimensions are their row lengths.
            unsafe { blas.gemm(cfg, b.buf, a.buf, c) }.map_err(|e| {
                Error::from(CudaError::Blas {
                    op: "gemm".into(),
                    detail: format!("m={m} n={n} k={kk} transA={} transB={}", a.trans, b.trans),
                    err: e.to_string(),
                })
            })?;
            return Ok(());
        }
        let g = FusedGemm::plain(
            m,
            n,
            kk,
            a.buf.as_view(),
            a.cols,
            a.trans,
            b.buf.as_view(),
            b.cols,
            b.trans,
            alpha as f32,
            beta as f32,
            n,
        );
        self.fused_gemm(g, &mut c.as_view_mut())
    }

    fn add_bias(&self, bias: &CudaSlice<f32>, d: usize, y: &mut CudaSlice<f32>) -> Result<()> {
        check("add_bias: bias", d, bias.len())?;
        let r = rows("add_bias: y", y.len(), d)?;
        // SAFETY: y is (r, d) and bias (d) (checked); the kernel reads bias[i % d].
        unsafe {
            k::broadcast_rows_f32(
                &self.launcher(),
                grid(y.len()),
                bias,
                int("add_bias", d)?,
                y,
                int("add_bias", r)?,
                1,
            )
        }?;
        Ok(())
    }

    fn broadcast_rows(
        &self,
        bias: &CudaSlice<f32>,
        d: usize,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("broadcast_rows: x", d, bias.len())?;
        let r = rows("broadcast_rows: y", y.len(), d)?;
        // SAFETY: y is (r, d) and bias (d) (checked).
        unsafe {
            k::broadcast_rows_f32(
                &self.launcher(),
                grid(y.len()),
                bias,
                int("broadcast_rows", d)?,
                y,
                int("broadcast_rows", r)?,
                0,
            )
        }?;
        Ok(())
    }

    fn broadcast_cols(
        &self,
        x: &CudaSlice<f32>,
        d: usize,
        y: &mut CudaSlice<f32>,
        acc: bool,
    ) -> Result<()> {
        let r = rows("broadcast_cols: y", y.len(), d)?;
        check("broadcast_cols: x", r, x.len())?;
        // SAFETY: y is (r, d) and x (r) (checked); the kernel reads x[i / d].
        unsafe {
            k::broadcast_cols_f32(
                &self.launcher(),
                grid(y.len()),
                x,
                int("broadcast_cols", d)?,
                y,
                int("broadcast_cols", r)?,
                acc as i32,
            )
        }?;
        Ok(())
    }

    fn sum_rows(
        &self,
        x: &CudaSlice<f32>,
        d: usize,
        scale: f64,
        y: &mut CudaSlice<f32>,
        acc: bool,
    ) -> Result<()> {
        let r = rows("sum_rows: x", x.len(), d)?;
        check("sum_rows: y", d, y.len())?;
        self.sum_rows_batched(&x.as_view(), r, d, d, 0, 1, scale, y, acc)
    }

    fn sum_cols(
        &self,
        x: &CudaSlice<f32>,
        d: usize,
        scale: f64,
        y: &mut CudaSlice<f32>,
        acc: bool,
    ) -> Result<()> {
        let r = rows("sum_cols: x", x.len(), d)?;
        check("sum_cols: y", r, y.len())?;
        // SAFETY: x is (r, d), y (r) (checked); one warp per row r < rows.
        unsafe {
            k::sum_cols_f32(
                &self.launcher(),
                warp_rows(r),
                x,
                int("sum_cols", d)?,
                scale as f32,
                y,
                int("sum_cols", r)?,
                acc as i32,
            )
        }?;
        Ok(())
    }

    fn unary(&self, op: UnaryOp, x: &CudaSlice<f32>, y: &mut CudaSlice<f32>) -> Result<()> {
        check("unary: y", x.len(), y.len())?;
        let (code, alpha) = unary_code(op);
        // SAFETY: x and y have n elements (checked).
        unsafe {
            k::unary_f32(
                &self.launcher(),
                grid(x.len()),
                code,
                alpha,
                x,
                y,
                int("unary", x.len())?,
            )
        }?;
        Ok(())
    }

    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("unary_backward: y", x.len(), y.len())?;
        check("unary_backward: dy", x.len(), dy.len())?;
        check("unary_backward: dx", x.len(), dx.len())?;
        let (code, alpha) = unary_code(op);
        // SAFETY: x, y, dy, dx have n elements (checked).
        unsafe {
            k::unary_backward_f32(
                &self.launcher(),
                grid(x.len()),
                code,
                alpha,
                x,
                y,
                dy,
                dx,
                int("unary_backward", x.len())?,
            )
        }?;
        Ok(())
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("binary: b", a.len(), b.len())?;
        check("binary: y", a.len(), y.len())?;
        // SAFETY: a, b, y have n elements (checked).
        unsafe {
            k::binary_f32(
                &self.launcher(),
                grid(a.len()),
                binary_code(op),
                a,
                b,
                y,
                int("binary", a.len())?,
            )
        }?;
        Ok(())
    }

    fn binary_backward(
        &self,
        op: BinaryOp,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        mut da: Option<&mut CudaSlice<f32>>,
        mut db: Option<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        check("binary_backward: b", a.len(), b.len())?;
        check("binary_backward: dy", a.len(), dy.len())?;
        if let Some(d) = da.as_deref() {
            check("binary_backward: da", a.len(), d.len())?;
        }
        if let Some(d) = db.as_deref() {
            check("binary_backward: db", a.len(), d.len())?;
        }
        // SAFETY: a, b, dy and the present gradients have n elements (checked).
        unsafe {
            k::binary_backward_f32(
                &self.launcher(),
                grid(a.len()),
                binary_code(op),
                a,
                b,
                dy,
                &mut da,
                &mut db,
                int("binary_backward", a.len())?,
            )
        }?;
        Ok(())
    }

    fn affine(&self, x: &CudaSlice<f32>, mul: f64, add: f64, y: &mut CudaSlice<f32>) -> Result<()> {
        check("affine: y", x.len(), y.len())?;
        // SAFETY: x and y have n elements (checked).
        unsafe {
            k::affine_f32(
                &self.launcher(),
                grid(x.len()),
                x,
                mul as f32,
                add as f32,
                y,
                int("affine", x.len())?,
            )
        }?;
        Ok(())
    }

    fn copy_cols(
        &self,
        src: &CudaSlice<f32>,
        src_cols: usize,
        src_off: usize,
        dst: &mut CudaSlice<f32>,
        dst_cols: usize,
        dst_off: usize,
        width: usize,
        acc: bool,
    ) -> Result<()> {
        let n = rows("copy_cols: src", src.len(), src_cols)?;
        check(
            "copy_cols: dst rows",
            n,
            rows("copy_cols: dst", dst.len(), dst_cols)?,
        )?;
        if src_off + width > src_cols || dst_off + width > dst_cols {
            return Err(Error::Shape {
                what: "copy_cols: column block".into(),
                expected: format!("within {src_cols} (src) and {dst_cols} (dst) columns"),
                got: format!("src {src_off}+{width}, dst {dst_off}+{width}"),
            });
        }
        // SAFETY: both buffers have n rows and the column block lies inside both (checked).
        unsafe {
            k::copy_cols_f32(
                &self.launcher(),
                grid(n * width),
                src,
                int("copy_cols", src_cols)?,
                int("copy_cols", src_off)?,
                dst,
                int("copy_cols", dst_cols)?,
                int("copy_cols", dst_off)?,
                int("copy_cols", width)?,
                int("copy_cols", n)?,
                acc as i32,
            )
        }?;
        Ok(())
    }

    fn gather_rows(
        &self,
        src: &CudaSlice<f32>,
        d: usize,
        idx: &[u32],
        dst: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let m = rows("gather_rows: src", src.len(), d)?;
        check("gather_rows: dst", idx.len() * d, dst.len())?;
        if let Some(&bad) = idx.iter().find(|&&i| i as usize >= m) {
            return Err(Error::Shape {
                what: "gather_rows: index".into(),
                expected: format!("< {m} rows"),
                got: bad.to_string(),
            });
        }
        if idx.is_empty() {
            return Ok(());
        }
        let di = self.upload_u32(idx)?;
        // SAFETY: every index is < m rows of src (checked); dst is (len(idx), d).
        unsafe {
            k::gather_rows_f32(
                &self.launcher(),
                grid(dst.len()),
                src,
                int("gather_rows", d)?,
                &di,
                dst,
                int("gather_rows", idx.len())?,
            )
        }?;
        Ok(())
    }

    fn scatter_add_rows(
        &self,
        src: &CudaSlice<f32>,
        d: usize,
        idx: &[u32],
        dst: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let m = rows("scatter_add_rows: dst", dst.len(), d)?;
        check("scatter_add_rows: src", idx.len() * d, src.len())?;
        if let Some(&bad) = idx.iter().find(|&&i| i as usize >= m) {
            return Err(Error::Shape {
                what: "scatter_add_rows: index".into(),
                expected: format!("< {m} rows"),
                got: bad.to_string(),
            });
        }
        if idx.is_empty() {
            return Ok(());
        }
        let di = self.upload_u32(idx)?;
        // SAFETY: every index is < m rows of dst (checked); src is (len(idx), d).
        unsafe {
            k::scatter_add_rows_f32(
                &self.launcher(),
                grid(src.len()),
                src,
                int("scatter_add_rows", d)?,
                &di,
                dst,
                int("scatter_add_rows", idx.len())?,
            )
        }?;
        Ok(())
    }

    fn layer_norm(
        &self,
        x: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        beta: &CudaSlice<f32>,
        d: usize,
        eps: f64,
        y: &mut CudaSlice<f32>,
        mean: &mut CudaSlice<f32>,
        rstd: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows("layer_norm: x", x.len(), d)?;
        check("layer_norm: gamma", d, gamma.len())?;
        check("layer_norm: beta", d, beta.len())?;
        check("layer_norm: y", x.len(), y.len())?;
        check("layer_norm: mean", n, mean.len())?;
        check("layer_norm: rstd", n, rstd.len())?;
        // SAFETY: x, y are (n, d), gamma, beta (d), mean, rstd (n) (checked).
        unsafe {
            k::layer_norm_f32(
                &self.launcher(),
                warp_rows(n),
                x,
                gamma,
                beta,
                int("layer_norm", d)?,
                eps as f32,
                y,
                mean,
                rstd,
                int("layer_norm", n)?,
            )
        }?;
        Ok(())
    }

    fn layer_norm_backward(
        &self,
        x: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        mean: &CudaSlice<f32>,
        rstd: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        d: usize,
        dx: Option<&mut CudaSlice<f32>>,
        mut dgamma: Option<&mut CudaSlice<f32>>,
        mut dbeta: Option<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        let n = rows("layer_norm_backward: x", x.len(), d)?;
        check("layer_norm_backward: dy", x.len(), dy.len())?;
        check("layer_norm_backward: mean", n, mean.len())?;
        check("layer_norm_backward: rstd", n, rstd.len())?;
        check("layer_norm_backward: gamma", d, gamma.len())?;
        let (di, ni) = (
            int("layer_norm_backward", d)?,
            int("layer_norm_backward", n)?,
        );
        if let Some(g) = dgamma.as_deref() {
            check("layer_norm_backward: dgamma", d, g.len())?;
        }
        if let Some(b) = dbeta.as_deref() {
            check("layer_norm_backward: dbeta", d, b.len())?;
        }
        if dgamma.is_some() || dbeta.is_some() {
            let cfg = LaunchConfig {
                grid_dim: (d.div_ceil(32).max(1) as u32, 1, 1),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: x, dy are (n, d), mean, rstd (n), the present dγ, dβ (d) (checked).
            unsafe {
                k::layer_norm_backward_params_f32(
                    &self.launcher(),
                    cfg,
                    x,
                    mean,
                    rstd,
                    dy,
                    di,
                    &mut dgamma,
                    &mut dbeta,
                    ni,
                )
            }?;
        }
        if let Some(dx) = dx {
            check("layer_norm_backward: dx", x.len(), dx.len())?;
            // SAFETY: x, dy, dx are (n, d), gamma (d), mean, rstd (n) (checked).
            unsafe {
                k::layer_norm_backward_f32(
                    &self.launcher(),
                    warp_rows(n),
                    x,
                    gamma,
                    mean,
                    rstd,
                    dy,
                    di,
                    dx,
                    ni,
                )
            }?;
        }
        Ok(())
    }

    fn softmax(&self, x: &CudaSlice<f32>, d: usize, y: &mut CudaSlice<f32>) -> Result<()> {
        let n = rows("softmax: x", x.len(), d)?;
        check("softmax: y", x.len(), y.len())?;
        // SAFETY: x and y are (n, d) (checked).
        unsafe {
            k::softmax_f32(
                &self.launcher(),
                warp_rows(n),
                x,
                int("softmax", d)?,
                y,
                int("softmax", n)?,
            )
        }?;
        Ok(())
    }

    fn softmax_backward(
        &self,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        d: usize,
        dx: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows("softmax_backward: y", y.len(), d)?;
        check("softmax_backward: dy", y.len(), dy.len())?;
        check("softmax_backward: dx", y.len(), dx.len())?;
        // SAFETY: y, dy and dx are (n, d) (checked).
        unsafe {
            k::softmax_backward_f32(
                &self.launcher(),
                warp_rows(n),
                y,
                dy,
                int("softmax_backward", d)?,
                dx,
                int("softmax_backward", n)?,
            )
        }?;
        Ok(())
    }

    fn mse(&self, a: &CudaSlice<f32>, b: &CudaSlice<f32>, out: &mut CudaSlice<f32>) -> Result<()> {
        check("mse: b", a.len(), b.len())?;
        check("mse: out", 1, out.len())?;
        let (cfg, mut p) = self.loss_partials(a.len())?;
        // SAFETY: a and b have n elements (checked); p has one slot per block of cfg.
        unsafe { k::mse_partial_f32(&self.launcher(), cfg, a, b, int("mse", a.len())?, &mut p) }?;
        self.finish_loss(&p, 1.0 / a.len() as f64, out)
    }

    fn mse_backward(
        &self,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        mut da: Option<&mut CudaSlice<f32>>,
        mut db: Option<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        check("mse_backward: b", a.len(), b.len())?;
        check("mse_backward: dout", 1, dout.len())?;
        if let Some(d) = da.as_deref() {
            check("mse_backward: da", a.len(), d.len())?;
        }
        if let Some(d) = db.as_deref() {
            check("mse_backward: db", a.len(), d.len())?;
        }
        // SAFETY: a, b and the present gradients have n elements, dout one (checked).
        unsafe {
            k::mse_backward_f32(
                &self.launcher(),
                grid(a.len()),
                a,
                b,
                dout,
                &mut da,
                &mut db,
                int("mse_backward", a.len())?,
            )
        }?;
        Ok(())
    }

    fn gaussian_nll(
        &self,
        mu: &CudaSlice<f32>,
        logvar: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("gaussian_nll: logvar", mu.len(), logvar.len())?;
        check("gaussian_nll: x", mu.len(), x.len())?;
        check("gaussian_nll: out", 1, out.len())?;
        let (cfg, mut p) = self.loss_partials(mu.len())?;
        // SAFETY: mu, logvar and x have n elements (checked); p has one slot per block.
        unsafe {
            k::gaussian_nll_partial_f32(
                &self.launcher(),
                cfg,
                mu,
                logvar,
                x,
                int("gaussian_nll", mu.len())?,
                &mut p,
            )
        }?;
        self.finish_loss(&p, 0.5 / mu.len() as f64, out)
    }

    fn gaussian_nll_backward(
        &self,
        mu: &CudaSlice<f32>,
        logvar: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        mut dmu: Option<&mut CudaSlice<f32>>,
        mut dlogvar: Option<&mut CudaSlice<f32>>,
        mut dx: Option<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        check("gaussian_nll_backward: logvar", mu.len(), logvar.len())?;
        check("gaussian_nll_backward: x", mu.len(), x.len())?;
        check("gaussian_nll_backward: dout", 1, dout.len())?;
        for (what, g) in [("dmu", &dmu), ("dlogvar", &dlogvar), ("dx", &dx)] {
            if let Some(g) = g.as_deref() {
                check(&format!("gaussian_nll_backward: {what}"), mu.len(), g.len())?;
            }
        }
        // SAFETY: every present buffer has n elements, dout one (checked).
        unsafe {
            k::gaussian_nll_backward_f32(
                &self.launcher(),
                grid(mu.len()),
                mu,
                logvar,
                x,
                dout,
                &mut dmu,
                &mut dlogvar,
                &mut dx,
                int("gaussian_nll_backward", mu.len())?,
            )
        }?;
        Ok(())
    }

    fn kl_std_normal(
        &self,
        mu: &CudaSlice<f32>,
        logvar: &CudaSlice<f32>,
        d: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = rows("kl_std_normal: mu", mu.len(), d)?;
        check("kl_std_normal: logvar", mu.len(), logvar.len())?;
        check("kl_std_normal: out", 1, out.len())?;
        let (cfg, mut p) = self.loss_partials(mu.len())?;
        // SAFETY: mu and logvar have the same length (checked); p has one slot per block.
        unsafe {
            k::kl_std_normal_partial_f32(
                &self.launcher(),
                cfg,
                mu,
                logvar,
                int("kl_std_normal", mu.len())?,
                &mut p,
            )
        }?;
        self.finish_loss(&p, -0.5 / n as f64, out)
    }

    fn kl_std_normal_backward(
        &self,
        mu: &CudaSlice<f32>,
        logvar: &CudaSlice<f32>,
        d: usize,
        dout: &CudaSlice<f32>,
        mut dmu: Option<&mut CudaSlice<f32>>,
        mut dlogvar: Option<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        let n = rows("kl_std_normal_backward: mu", mu.len(), d)?;
        check("kl_std_normal_backward: logvar", mu.len(), logvar.len())?;
        check("kl_std_normal_backward: dout", 1, dout.len())?;
        if let Some(g) = dmu.as_deref() {
            check("kl_std_normal_backward: dmu", mu.len(), g.len())?;
        }
        if let Some(g) = dlogvar.as_deref() {
            check("kl_std_normal_backward: dlogvar", mu.len(), g.len())?;
        }
        // SAFETY: mu, logvar and the present gradients have the same length, dout one.
        unsafe {
            k::kl_std_normal_backward_f32(
                &self.launcher(),
                grid(mu.len()),
                mu,
                logvar,
                dout,
                &mut dmu,
                &mut dlogvar,
                int("kl_std_normal_backward", mu.len())?,
                int("kl_std_normal_backward", n)?,
            )
        }?;
        Ok(())
    }

    fn fourier_features(
        &self,
        coords: &CudaSlice<f32>,
        c: usize,
        freqs: &CudaSlice<f32>,
        groups: usize,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (n, m) = ff_shapes("fourier_features", coords.len(), c, freqs.len(), groups)?;
        check("fourier_features: y", n * (2 * m + c - 3), y.len())?;
        // SAFETY: coords is (n, c), freqs (m, 3), y (n, 2m + c − 3) and groups divides m
        // (checked).
        unsafe {
            k::fourier_features_f32(
                &self.launcher(),
                grid(n * (m + c - 3)),
                coords,
                int("fourier_features", n)?,
                int("fourier_features", c)?,
                freqs,
                int("fourier_features", m)?,
                int("fourier_features", groups)?,
                y,
            )
        }?;
        Ok(())
    }

    fn fourier_features_backward(
        &self,
        coords: &CudaSlice<f32>,
        c: usize,
        freqs: &CudaSlice<f32>,
        groups: usize,
        dy: &CudaSlice<f32>,
        dcoords: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (n, m) = ff_shapes(
            "fourier_features_backward",
            coords.len(),
            c,
            freqs.len(),
            groups,
        )?;
        check(
            "fourier_features_backward: dy",
            n * (2 * m + c - 3),
            dy.len(),
        )?;
        check(
            "fourier_features_backward: dcoords",
            coords.len(),
            dcoords.len(),
        )?;
        // SAFETY: as fourier_features, plus dcoords (n, c) (checked).
        unsafe {
            k::fourier_features_backward_f32(
                &self.launcher(),
                grid(n),
                coords,
                int("fourier_features_backward", n)?,
                int("fourier_features_backward", c)?,
                freqs,
                int("fourier_features_backward", m)?,
                int("fourier_features_backward", groups)?,
                dy,
                dcoords,
            )
        }?;
        Ok(())
    }

    fn mlp_forward(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &CudaSlice<f32>,
        n: usize,
        save: bool,
    ) -> Result<MlpOutput<Self>> {
        super::mlp::forward(self, w, super::mlp::Input::Features(x), n, save)
    }

    fn mlp_backward(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &CudaSlice<f32>,
        n: usize,
        saved: &MlpSaved<Self>,
        dy: &CudaSlice<f32>,
        dx: Option<&mut CudaSlice<f32>>,
        dx_col0: usize,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()> {
        let dx = dx.map(|d| super::mlp::DxTarget {
            buf: d,
            col_off: dx_col0,
            beta: 1.0,
        });
        super::mlp::backward(self, w, x, n, saved, dy, dx, dlayers)
    }

    fn decode_rotated_lattices(
        &self,
        spec: &DecodeSpec<'_, Self>,
        rot: &CudaSlice<f32>,
        z: Option<&CudaSlice<f32>>,
        nb: usize,
        save: bool,
    ) -> Result<DecodeOutput<Self>> {
        super::mlp::decode_forward(self, spec, rot, z, nb, save)
    }

    fn decode_rotated_lattices_backward(
        &self,
        spec: &DecodeSpec<'_, Self>,
        rot: &CudaSlice<f32>,
        z: Option<&CudaSlice<f32>>,
        nb: usize,
        saved: &DecodeSaved<Self>,
        dy: &CudaSlice<f32>,
        dz: Option<&mut CudaSlice<f32>>,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()> {
        super::mlp::decode_backward(self, spec, rot, z, nb, saved, dy, dz, dlayers)
    }

    fn adam_update(
        &self,
        p: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        c: AdamCoeffs,
    ) -> Result<()> {
        check("adam_update: grad", p.len(), g.len())?;
        check("adam_update: m", p.len(), m.len())?;
        check("adam_update: v", p.len(), v.len())?;
        let n = int("adam_update", p.len())?;
        // SAFETY: p, g, m and v have n elements (checked).
        unsafe {
            k::adam_update_f32(
                &self.launcher(),
                grid(p.len()),
                p,
                g,
                m,
                v,
                n,
                c.beta1,
                c.beta2,
                c.weight_decay,
                c.step_size,
                c.denom_scale,
                c.denom_eps,
            )
        }?;
        Ok(())
    }
}

/// Kernel code of a binary op (`BIN_*` of `kernels/common.cuh`).
fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    }
}

/// (rows, frequency rows m) of a Fourier-feature call, checked like the CPU twin.
pub(super) fn ff_shapes(
    what: &str,
    coords_len: usize,
    c: usize,
    freqs_len: usize,
    groups: usize,
) -> Result<(usize, usize)> {
    if c < 3 {
        return Err(Error::Shape {
            what: format!("{what}: coordinate width"),
            expected: "≥ 3 (x, y, z, then the latent)".into(),
            got: c.to_string(),
        });
    }
    let n = rows(&format!("{what}: coords"), coords_len, c)?;
    let m = rows(&format!("{what}: freqs"), freqs_len, 3)?;
    if groups == 0 || !m.is_multiple_of(groups) {
        return Err(Error::Shape {
            what: format!("{what}: groups"),
            expected: format!("a divisor of the {m} frequency rows"),
            got: groups.to_string(),
        });
    }
    Ok((n, m))
}
