//! Mixed-precision GEMM: bf16 operands, f32 accumulation, on Intel AMX tiles (`TDPBF16PS`) or,
//! on CPUs without AMX, AVX-512 BF16 vectors (`VDPBF16PS`; [`Engine`]).
//!
//! This is the CPU twin of the reference's default mixed-precision training (`--amp`, on by
//! default in cryoDRGN, where PyTorch autocasts the linear layers to half precision on the GPU).
//! Operands are rounded to bf16 (round to nearest even) as they are packed; products are summed
//! in f32, and C stays f32. Weights, gradients and optimizer state are never stored in bf16.
//!
//! ## Kernel
//! - Tiles: C is computed in 32×32 blocks held in four 16×16 f32 tiles (tmm0–3), with two A
//!   tiles (16 rows × 32 k, tmm4–5) and two B tiles (16 k-pairs × 16 columns, VNNI layout,
//!   tmm6–7) per 32-wide step of k: four `TDPBF16PS` per eight tile registers.
//! - Operands are packed tile by tile: every 16 × 64-byte tile is 1 KiB of its own (row stride
//!   64 bytes), so a tile load reads 16 consecutive cache lines. B is packed once per call (per
//!   k-chunk), step by step of k (`b_idx`); A is converted per 32-row block by the thread that
//!   owns the block, its two tiles per step side by side (`a_idx`); both zero-padded to whole
//!   tiles.
//! - k steps run in pairs, the second with its loads and products in mirrored order
//!   (`tiles::step_mirrored`).
//! - k is cut into chunks of [`KC`] so that a block's A and the packed B stay cache resident;
//!   partial sums between chunks live in an f32 buffer, the last chunk writes C directly
//!   (C = A·B + β·C).
//! - Row blocks of C run in parallel on rayon; each task loads the tile configuration.
//! - [`gemm_rows`] can emit its C as bf16 tiles in the packed A layout ([`RowsA::Tiles`]), for
//!   a next product that takes C as its A (the MLP's next layer), converted as C is written.
//! - The vector engine computes the same 32 × 32 blocks from the same packed operands
//!   (`vector_block`: 8 rows × 32 columns in 16 zmm accumulators, one row of a B tile is one
//!   VNNI vector, A's pair broadcast), so packing, blocking and epilogues are shared. Sums
//!   differ from the tiles' in rounding only (both add pairs of bf16 products into f32).
//!
//! There is no `std::arch` AMX intrinsic on stable Rust, so the tile instructions are inline
//! assembly. [`engine`] checks CPUID (AMX-TILE, AMX-BF16), that the OS enables the tile state
//! (XCR0 bits 17–18), and asks Linux for permission to use it (`arch_prctl`
//! `ARCH_REQ_XCOMP_PERM`); else AVX-512 F/BW/VL/BF16. `CRYOFIELD_NO_AMX=1` skips AMX,
//! `CRYOFIELD_NO_BF16=1` turns both engines off.

use super::gemm::{epilogue_row, extent, Epilogue};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Columns of k per chunk (a multiple of 32).
pub const KC: usize = 1024;

/// The unit that runs the bf16 products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Intel AMX tiles (`TDPBF16PS`, four per 32 × 32 block and 32-wide step of k).
    Amx,
    /// AVX-512 BF16 vectors (`VDPBF16PS`, 16 lanes of f32 sums of bf16 pairs), on CPUs with
    /// AVX-512 BF16 but no AMX (AMD Zen 4 and 5, Intel Cooper Lake): the same packed
    /// operands and blocks as the tiles, computed by `vector_block`.
    Avx512Bf16,
}

impl Engine {
    /// A short name for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Amx => "AMX tiles",
            Engine::Avx512Bf16 => "AVX-512 BF16",
        }
    }
}

/// The engine this CPU and OS can run, AMX first (checked once per process). Process-wide
/// switches: `CRYOFIELD_NO_AMX=1` skips AMX (the vector engine then runs where the CPU has
/// AVX-512 BF16), `CRYOFIELD_NO_BF16=1` turns mixed precision off altogether.
pub fn engine() -> Option<Engine> {
    static E: OnceLock<Option<Engine>> = OnceLock::new();
    *E.get_or_init(|| {
        let off = |v| std::env::var_os(v).is_some();
        if off("CRYOFIELD_NO_BF16") {
            None
        } else if !off("CRYOFIELD_NO_AMX") && detect() {
            Some(Engine::Amx)
        } else if detect_vector() {
            Some(Engine::Avx512Bf16)
        } else {
            None
        }
    })
}

/// Whether this CPU and OS can run a bf16 [`Engine`]; every function here that computes
/// needs it.
pub fn available() -> bool {
    engine().is_some()
}

/// AVX-512 F/BW/VL (the packing loops) and BF16 (the products).
#[cfg(target_arch = "x86_64")]
fn detect_vector() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bf16")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_vector() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::asm;
    use std::arch::x86_64::__cpuid_count;
    // CPUID.(7,0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE; CPUID.1:ECX bit 27 OSXSAVE.
    let l7 = __cpuid_count(7, 0);
    let l1 = __cpuid_count(1, 0);
    if l7.edx & (1 << 22) == 0 || l7.edx & (1 << 24) == 0 || l1.ecx & (1 << 27) == 0 {
        return false;
    }
    // Every AMX CPU has AVX-512; the packing loops are compiled for it.
    if !(is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl"))
    {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 is valid when OSXSAVE is set (checked above); it only reads
    // the XCR0 register into EDX:EAX.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nomem, nostack));
    }
    // XCR0 bit 17 XTILECFG, bit 18 XTILEDATA: the OS saves the tile state on context switch.
    if lo & (3 << 17) != 3 << 17 {
        return false;
    }
    // arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18): process-wide
    // permission for every thread to use the 8 KiB tile data state.
    let ret: i64;
    // SAFETY: the arch_prctl system call (158 on x86_64) with these arguments only changes
    // the process's permitted extended state; the kernel clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") 0x1023i64,
            in("rsi") 18i64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// bf16 bits of `x`, rounded to nearest even (the top half of the f32 after rounding).
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn bf16_value(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// The 64-byte tile configuration: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
        }
        Self(c)
    }
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::TileConfig;
    use std::arch::asm;

    /// Loads the tile configuration on this thread.
    ///
    /// # Safety
    /// [`super::available`] must be true.
    #[inline]
    pub unsafe fn configure(cfg: &TileConfig) {
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    }

    /// Releases the tile state of this thread.
    ///
    /// # Safety
    /// [`super::available`] must be true.
    #[inline]
    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// tmm0–3 = 0.
    ///
    /// # Safety
    /// Tiles configured on this thread.
    #[inline(always)]
    pub unsafe fn zero_c() {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    }

    /// tmm0–3 ← the 32×32 f32 block at `c` (row stride `ldc` bytes): tmm0 rows 0–15 cols 0–15,
    /// tmm1 rows 0–15 cols 16–31, tmm2 rows 16–31 cols 0–15, tmm3 rows 16–31 cols 16–31.
    ///
    /// # Safety
    /// Tiles configured; `c` points at 32 readable rows of 128 bytes with stride `ldc`.
    #[inline(always)]
    pub unsafe fn load_c(c: *const f32, ldc: usize) {
        asm!(
            "tileloadd tmm0, [{c0} + {s}*1]",
            "tileloadd tmm1, [{c0} + {s}*1 + 64]",
            "tileloadd tmm2, [{c1} + {s}*1]",
            "tileloadd tmm3, [{c1} + {s}*1 + 64]",
            c0 = in(reg) c,
            c1 = in(reg) (c as *const u8).add(16 * ldc),
            s = in(reg) ldc,
            options(nostack, readonly)
        );
    }

    /// The 32×32 block in tmm0–3 → `c` (row stride `ldc` bytes), layout as [`load_c`].
    ///
    /// # Safety
    /// Tiles configured; `c` points at 32 writable rows of 128 bytes with stride `ldc`.
    #[inline(always)]
    pub unsafe fn store_c(c: *mut f32, ldc: usize) {
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c0} + {s}*1 + 64], tmm1",
            "tilestored [{c1} + {s}*1], tmm2",
            "tilestored [{c1} + {s}*1 + 64], tmm3",
            c0 = in(reg) c,
            c1 = in(reg) (c as *mut u8).add(16 * ldc),
            s = in(reg) ldc,
            options(nostack)
        );
    }

    /// One 32-wide step of k: C += A·B for A the 32 rows × 32 bf16 at `a` and B the 16 k-pairs ×
    /// 32 columns (VNNI) at `b`, each given as two packed tiles of 1 KiB side by side (16 rows
    /// of 64 bytes: A's rows 0–15 then 16–31, B's columns 0–15 then 16–31).
    ///
    /// # Safety
    /// Tiles configured; `a` and `b` each point at 2 KiB readable.
    #[inline(always)]
    pub unsafe fn step(a: *const u16, b: *const u16) {
        asm!(
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{b} + {s}*1]",
            "tileloadd tmm7, [{b} + {s}*1 + 1024]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a} + {s}*1 + 1024]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a = in(reg) a,
            b = in(reg) b,
            s = in(reg) 64usize,
            options(nostack, readonly)
        );
    }

    /// [`step`] with its loads and products in mirrored order, to follow a [`step`]: it starts
    /// with the tiles the previous step's last products no longer read. Each C tile takes the
    /// same products in the same order as a plain step. Measured on this machine's AMX unit
    /// (operands in L1), a step and a mirrored step issue 2.3 against 1.9 TFLOP/s for two
    /// plain steps.
    ///
    /// # Safety
    /// As [`step`].
    #[inline(always)]
    pub unsafe fn step_mirrored(a: *const u16, b: *const u16) {
        asm!(
            "tileloadd tmm7, [{b} + {s}*1 + 1024]",
            "tileloadd tmm6, [{b} + {s}*1]",
            "tileloadd tmm5, [{a} + {s}*1 + 1024]",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm0, tmm4, tmm6",
            a = in(reg) a,
            b = in(reg) b,
            s = in(reg) 64usize,
            options(nostack, readonly)
        );
    }
}

/// The [`Engine::Avx512Bf16`] twin of a tile block: the 32 × 32 f32 block at `out` (row
/// stride `ldo` floats) = `init` (a 32 × 32 block, row stride in floats; zero when `None`) +
/// Σ over `nsteps` 32-wide steps of k of A·B, A's two tiles of step s at `a + s·a_step` and
/// B's at `b + s·b_step` (u16 offsets), in the tile layout of [`tiles::step`].
///
/// Rows are taken 8 at a time: 16 accumulators (8 rows × 2 vectors of 16 columns), and per
/// k-pair two loads of B (one row of each B tile: 16 columns × the pair, VNNI) and one 32-bit
/// broadcast of A's pair per row, each lane summing `a₂ₚ·b₂ₚ + a₂ₚ₊₁·b₂ₚ₊₁` into f32
/// (`VDPBF16PS`). Every C element takes its pairs in k order, whatever the blocking.
///
/// With `fused`, the block is a whole 32 × 32 block of C and leaves through its epilogue, in
/// registers: the arithmetic of [`epilogue_row`] in its order, so the result is the same bit
/// for bit as storing the sums and calling it. With `emit` (non-null) the block is also
/// written as bf16 to the 2 KiB there, as the next product's A ([`RowsA::Tiles`]).
///
/// # Safety
/// AVX-512 F/BW/VL and BF16; `a` and `b` hold `nsteps` steps of two 1 KiB tiles at those strides,
/// `init` 32 readable and `out` 32 writable rows of 32 floats (they may be the same block);
/// `fused`'s pointers as [`Fused`] says; `emit` null or 2 KiB writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn vector_block<const TA: bool>(
    a: *const u16,
    a_step: usize,
    b: *const u16,
    b_step: usize,
    nsteps: usize,
    init: Option<(*const f32, usize)>,
    out: *mut f32,
    ldo: usize,
    fused: Option<&Fused>,
    (emit, emit_rows): (*mut u16, *mut u16),
) {
    use std::arch::x86_64::*;
    // A's pair (row r, k-pair kp) of a step at r·rs + kp·ks from its tile's row 0 (transposed:
    // A's rows are the columns of a B layout)
    let (rs, ks) = if TA { (2, 32) } else { (32, 2) };
    for q in 0..4 {
        // rows 8q..8q+8: tile q/2 of each step, its rows 8·(q%2)..
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        if let Some((c, ld)) = init {
            for (r, v) in acc.iter_mut().enumerate() {
                let row = c.add((8 * q + r) * ld);
                *v = [_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16))];
            }
        }
        let a_q = a.add((q / 2) * 512 + (q % 2) * 8 * rs);
        for s in 0..nsteps {
            let (ap, bp) = (a_q.add(a_step * s), b.add(b_step * s));
            for kp in 0..16 {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(32 * kp).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(bp.add(512 + 32 * kp).cast()));
                for (r, v) in acc.iter_mut().enumerate() {
                    let pair = ap.add(rs * r + ks * kp).cast::<i32>().read_unaligned();
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    v[0] = _mm512_dpbf16_ps(v[0], x, b0);
                    v[1] = _mm512_dpbf16_ps(v[1], x, b1);
                }
            }
        }
        for r2 in (0..8).step_by(2) {
            let mut ys = [acc[r2], acc[r2 + 1]];
            for (e, y) in ys.iter_mut().enumerate() {
                let i = 8 * q + r2 + e;
                let row = out.add(i * ldo);
                for (h, half) in y.iter_mut().enumerate() {
                    if let Some(f) = fused {
                        *half = f.apply(*half, i, 16 * h, row.add(16 * h));
                    }
                    _mm512_storeu_ps(row.add(16 * h), *half);
                }
            }
            if emit.is_null() && emit_rows.is_null() {
                continue;
            }
            // Each value rounded once (its bf16 in the high half of each u32), for both.
            let rd = ys.map(|y| y.map(|v| bf16_rounded(v)));
            if !emit.is_null() {
                // one 64-byte row of a tile per row
                for (e, &[lo, hi]) in rd.iter().enumerate() {
                    let dst = emit.add(a_idx(8 * q + r2 + e, 0));
                    _mm512_storeu_si512(dst.cast(), row_of_rounded(lo, hi));
                }
            }
            if !emit_rows.is_null() {
                // rows i, i + 1 as one pair of B's layout ([`b_idx`]), per 16 columns
                let dst = emit_rows.add(32 * ((8 * q + r2) / 2));
                for (h, (&r0, &r1)) in rd[0].iter().zip(&rd[1]).enumerate() {
                    _mm512_storeu_si512(dst.add(512 * h).cast(), pairs_of_rounded(r0, r1));
                }
            }
        }
    }
}

/// [`Epilogue`] of one whole 32 × 32 block of C, for [`vector_block`]: pointers at the block's
/// first element (row i0, column j0) of each m × n operand (null: absent), row stride `n`.
#[cfg(target_arch = "x86_64")]
struct Fused {
    /// bias + j0.
    bias: *const f32,
    residual: *const f32,
    mask: *const f32,
    relu: bool,
    /// β: C's previous values (the block being written) are read when β ≠ 0.
    beta: f32,
    n: usize,
    /// The packed mask ([`Block::pmask`]) at the block's first element: row i, columns
    /// 16h..16h+16 are the low (i even) or high (i odd) halves of the 32 u16 at
    /// `pmask + 512·h + 32·(i/2)` ([`b_idx`]).
    pmask: *const u16,
}

#[cfg(target_arch = "x86_64")]
impl Fused {
    /// [`Fused`] of `e` at (i0, j0) of an m × n C.
    /// With `pmask`, the packed mask of [`Block::pmask`] (rows of `np` columns).
    #[inline]
    fn new(
        e: &Epilogue<'_, f32>,
        beta: f32,
        pmask: Option<&[u16]>,
        i0: usize,
        j0: usize,
        (n, np): (usize, usize),
    ) -> Self {
        let at = |x: Option<&[f32]>, o: usize| x.map_or(std::ptr::null(), |x| x[o..].as_ptr());
        Self {
            bias: at(e.bias, j0),
            residual: at(e.residual, i0 * n + j0),
            mask: at(e.mask, i0 * n + j0),
            relu: e.relu,
            beta,
            n,
            pmask: pmask.map_or(std::ptr::null(), |p| p[b_idx(i0 / 2, j0, np)..].as_ptr()),
        }
    }

    /// [`epilogue_row`] on the 16 sums `x` of row i (of the block), columns j..j+16; `old`
    /// is where they will be stored.
    ///
    /// # Safety
    /// AVX-512 F; the block's rows of every operand given are readable.
    #[target_feature(enable = "avx512f")]
    unsafe fn apply(
        &self,
        x: std::arch::x86_64::__m512,
        i: usize,
        j: usize,
        old: *const f32,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let mut y = x;
        let o = i * self.n + j;
        let zero = _mm512_setzero_ps();
        if !self.bias.is_null() {
            y = _mm512_add_ps(y, _mm512_loadu_ps(self.bias.add(j)));
        }
        if !self.residual.is_null() {
            y = _mm512_add_ps(y, _mm512_loadu_ps(self.residual.add(o)));
        }
        if self.beta != 0.0 {
            let b = _mm512_mul_ps(_mm512_set1_ps(self.beta), _mm512_loadu_ps(old));
            y = _mm512_add_ps(y, b);
        }
        if !self.mask.is_null() {
            let off = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_loadu_ps(self.mask.add(o)), zero);
            y = _mm512_mask_mov_ps(y, off, zero);
        }
        if !self.pmask.is_null() {
            let v = _mm512_loadu_si512(self.pmask.add(512 * (j / 16) + 32 * (i / 2)).cast());
            let h = match i % 2 {
                0 => _mm512_slli_epi32::<16>(v),
                _ => _mm512_and_si512(v, _mm512_set1_epi32(0xffff_0000u32 as i32)),
            };
            let off = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_castsi512_ps(h), zero);
            y = _mm512_mask_mov_ps(y, off, zero);
        }
        if self.relu {
            // (max returns its second operand for NaN and for two zeros: as f32::max(x, 0))
            y = _mm512_max_ps(y, zero);
        }
        y
    }
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// A strided read-only f32 matrix view: element (i, j) at `buf[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buf: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl View<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.buf[i * self.rs + j * self.cs]
    }
}

/// Index in a packed B panel (k-pairs × `np` columns) of k-pair q, column j (the even k's bf16;
/// the odd one follows): tile by tile, each 16 pairs × 16 columns (1 KiB) contiguous (row
/// stride 64 bytes), ordered by the step q/16 and then the column tile j/16. A step's tiles
/// are then one run of `np`·32 u16, which the packing writes in order; tile-contiguous rows
/// against the row-per-k-pair layout this replaced: one epoch of train-vae 6% (256×3) and 7%
/// (1024×3) faster, bit-identical (BENCHMARKS.md, session 10).
#[inline(always)]
fn b_idx(q: usize, j: usize, np: usize) -> usize {
    ((q / 16) * (np / 16) + j / 16) * 512 + (q % 16) * 32 + 2 * (j % 16)
}

/// Packs rows `k0..k0+kl` of B (k × n) in VNNI order: k-pair q = (k0+2q, k0+2q+1), column j at
/// [`b_idx`] (two bf16), zero past n and kl; `out` holds klp × np.
fn pack_b(b: View<'_>, k0: usize, kl: usize, n: usize, klp: usize, np: usize, out: &mut [u16]) {
    out[..klp * np]
        .par_chunks_mut(32 * np)
        .enumerate()
        // SAFETY: only reached through `gemm` or `PackedB::new`, after available() checked
        // AVX-512.
        .for_each(|(s, dst)| unsafe { pack_b_step::<false>(b, k0, kl, n, np, s, dst) });
}

/// Step `s` (k-pairs 16s..16s+16) of [`pack_b`] into `dst`, that step's `np`·32 u16 (from
/// [`b_idx`]`(16s, 0, np)` on).
///
/// # Safety
/// AVX-512 F/BW/VL.
#[cfg_attr(
    target_arch = "x86_64",
    target_feature(enable = "avx512f,avx512bw,avx512vl")
)]
unsafe fn pack_b_step<const TILE_ORDER: bool>(
    b: View<'_>,
    k0: usize,
    kl: usize,
    n: usize,
    np: usize,
    s: usize,
    dst: &mut [u16],
) {
    let dst = &mut dst[..32 * np];
    // Index in `dst` of k-pair 16s + q, column j.
    let at = |q: usize, j: usize| b_idx(q, j, np);
    // Whole tiles (32 rows of B inside kl, 16 columns inside n, row-major B): the row pairs in
    // order, B read sequentially, each pair feeding row q of every tile.
    #[cfg(target_arch = "x86_64")]
    let whole_cols = if b.cs == 1 && 32 * s + 32 <= kl {
        use std::arch::x86_64::*;
        let cols = n / 16 * 16;
        let rows = |q: usize| {
            (
                &b.buf[(k0 + 32 * s + 2 * q) * b.rs..][..cols],
                &b.buf[(k0 + 32 * s + 2 * q + 1) * b.rs..][..cols],
            )
        };
        let put = |dst: &mut [u16], (r0, r1): (&[f32], &[f32]), q: usize, j: usize| {
            let out = &mut dst[at(q, j)..][..32];
            // SAFETY: AVX-512 (this function's contract); 16 values each (j + 16 ≤ cols),
            // 64 bytes out.
            unsafe {
                let lo = _mm512_loadu_ps(r0.as_ptr().add(j));
                let hi = _mm512_loadu_ps(r1.as_ptr().add(j));
                _mm512_storeu_si512(out.as_mut_ptr().cast(), bf16_pairs(lo, hi));
            }
        };
        if TILE_ORDER {
            // dst written sequentially (B read by column strips: from cache)
            for j in (0..cols).step_by(16) {
                for q in 0..16 {
                    put(dst, rows(q), q, j);
                }
            }
        } else {
            // B read sequentially, each row pair feeding row q of every tile
            for q in 0..16 {
                let r = rows(q);
                for j in (0..cols).step_by(16) {
                    put(dst, r, q, j);
                }
            }
        }
        cols
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let whole_cols = 0;
    for q in 0..16 {
        let (ka, kb) = (32 * s + 2 * q, 32 * s + 2 * q + 1);
        for j in (whole_cols..np).step_by(16) {
            let out = &mut dst[at(q, j)..][..32];
            if ka >= kl || j >= n {
                out.fill(0); // padding
                continue;
            }
            for (c, pair) in out.chunks_exact_mut(2).enumerate() {
                let jj = j + c;
                pair[0] = if jj < n {
                    bf16_bits(b.at(k0 + ka, jj))
                } else {
                    0
                };
                pair[1] = if jj < n && kb < kl {
                    bf16_bits(b.at(k0 + kb, jj))
                } else {
                    0
                };
            }
        }
    }
}

/// Per 32-bit lane: the f32 bits + 0x7fff + bit 16, whose top half is the value as bf16,
/// rounded as [`bf16_bits`].
///
/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn bf16_rounded(v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let v = _mm512_castps_si512(v);
    let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(v), _mm512_set1_epi32(1));
    _mm512_add_epi32(_mm512_add_epi32(v, _mm512_set1_epi32(0x7fff)), odd)
}

/// Per 32-bit lane: `lo`'s value as bf16 in the low half and `hi`'s in the high half, both
/// rounded as [`bf16_bits`] (bits + 0x7fff + bit 16, then the top half). A zero vector gives
/// zero halves. The VNNI pair of two consecutive k.
///
/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn bf16_pairs(
    lo: std::arch::x86_64::__m512,
    hi: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512i {
    pairs_of_rounded(bf16_rounded(lo), bf16_rounded(hi))
}

/// [`bf16_pairs`] of two vectors already through [`bf16_rounded`] (their bf16 in the high half
/// of each lane): `lo`'s in the low half, `hi`'s in the high half.
///
/// # Safety
/// AVX-512 F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn pairs_of_rounded(
    lo: std::arch::x86_64::__m512i,
    hi: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    _mm512_mask_blend_epi16(0xaaaa_aaaa, _mm512_srli_epi32::<16>(lo), hi)
}

/// `dst[i]` = bf16 of `src[i]` for 32 values, rounded as [`bf16_bits`].
///
/// # Safety
/// AVX-512 F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn bf16_row32(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    assert!(src.len() >= 32 && dst.len() >= 32, "amx pack: 32 values");
    let packed = bf16_32(
        _mm512_loadu_ps(src.as_ptr()),
        _mm512_loadu_ps(src.as_ptr().add(16)),
    );
    _mm512_storeu_si512(dst.as_mut_ptr().cast(), packed);
}

/// The 32 values of `lo` then `hi` as bf16 in order (one 64-byte row of an A tile), rounded as
/// [`bf16_bits`].
///
/// # Safety
/// AVX-512 F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn bf16_32(
    lo: std::arch::x86_64::__m512,
    hi: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512i {
    row_of_rounded(bf16_rounded(lo), bf16_rounded(hi))
}

/// [`bf16_32`] of two vectors already through [`bf16_rounded`]: the high halves of `lo`'s
/// lanes, then of `hi`'s, as 32 u16 in order.
///
/// # Safety
/// AVX-512 F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn row_of_rounded(
    lo: std::arch::x86_64::__m512i,
    hi: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let odd = _mm512_set_epi16(
        63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19,
        17, 15, 13, 11, 9, 7, 5, 3, 1,
    );
    _mm512_permutex2var_epi16(lo, odd, hi)
}

/// Index in a packed A block of row r (< 32), column p (< klp): tile by tile, each 16 rows ×
/// 32 bf16 (1 KiB) contiguous, ordered by the k step p/32 and then the half r/16, so that a
/// step's two A tiles are 2 KiB read in order (row stride 64 bytes).
#[inline(always)]
fn a_idx(r: usize, p: usize) -> usize {
    ((p / 32) * 2 + r / 16) * 512 + (r % 16) * 32 + p % 32
}

/// Converts rows `i0..i0+32` (those below `m`), columns `k0..k0+kl` of A into `out`
/// (32 × `klp` bf16 laid out by [`a_idx`], zero-padded).
///
/// # Safety
/// The CPU has AVX-512 (F, BW, VL).
#[cfg_attr(
    target_arch = "x86_64",
    target_feature(enable = "avx512f,avx512bw,avx512vl")
)]
unsafe fn pack_a(
    a: View<'_>,
    m: usize,
    i0: usize,
    k0: usize,
    kl: usize,
    klp: usize,
    out: &mut [u16],
) {
    let rows = m.saturating_sub(i0).min(32);
    let out = &mut out[..32 * klp];
    if a.cs == 1 {
        // Each value written once: 32-wide segments of a row, converted then zero-padded;
        // then the missing rows.
        for r in 0..rows {
            let src = &a.buf[(i0 + r) * a.rs + k0..][..kl];
            for p0 in (0..klp).step_by(32) {
                let dst = &mut out[a_idx(r, p0)..][..32];
                let n = kl.saturating_sub(p0).min(32);
                #[cfg(target_arch = "x86_64")]
                if n == 32 {
                    // SAFETY: AVX-512 (this function's contract); 32 values in, 64 bytes out.
                    unsafe { bf16_row32(&src[p0..p0 + 32], dst) };
                    continue;
                }
                for (d, &v) in dst[..n].iter_mut().zip(&src[p0..p0 + n]) {
                    *d = bf16_bits(v);
                }
                dst[n..].fill(0);
            }
        }
        for r in rows..32 {
            for p0 in (0..klp).step_by(32) {
                out[a_idx(r, p0)..][..32].fill(0);
            }
        }
    } else if cfg!(target_arch = "x86_64") && a.rs == 1 && rows == 32 {
        // A = Xᵀ with X row-major: columns of A are contiguous rows of X.
        #[cfg(target_arch = "x86_64")]
        for pc in (0..kl).step_by(32) {
            for h in 0..2 {
                // SAFETY: AVX-512 F (this function's contract); the reads stay inside the
                // rows k0+pc.. (< k0+kl) and columns i0+16h..+16 (< m) of X, the writes
                // inside the tile of rows 16h..16h+16 at step pc/32 (16 rows of 32).
                unsafe {
                    pack_at_16x32(
                        a,
                        i0 + 16 * h,
                        k0 + pc,
                        (kl - pc).min(32),
                        &mut out[a_idx(16 * h, pc)..],
                    )
                };
            }
        }
    } else if a.rs == 1 {
        out.fill(0);
        // The ragged last block, transposed through a 32×32 staging tile.
        let mut tile = [[0u16; 32]; 32];
        for pc in (0..kl).step_by(32) {
            let pn = (kl - pc).min(32);
            for pp in 0..pn {
                let src = &a.buf[(k0 + pc + pp) * a.cs + i0..][..rows];
                for (t, &v) in tile.iter_mut().zip(src) {
                    t[pp] = bf16_bits(v);
                }
            }
            for (r, t) in tile.iter().enumerate().take(rows) {
                out[a_idx(r, pc)..][..pn].copy_from_slice(&t[..pn]);
            }
        }
    } else {
        out.fill(0);
        for r in 0..rows {
            for p in 0..kl {
                out[a_idx(r, p)] = bf16_bits(a.at(i0 + r, k0 + p));
            }
        }
    }
}

/// Sixteen rows (features i..i+16) × 32 columns (samples p..p+pn, zeros beyond pn) of A = Xᵀ
/// as bf16 (X[p, i] at `a.buf[p·cs + i]`: the view has rs = 1), written as one tile: row r
/// at `out[32·r..][..32]`.
///
/// Per sample pair (2q, 2q+1) one vector holds, for each of the 16 features, the pair's two
/// bf16 values in one u32 (the even sample in the low half, rounded as [`bf16_bits`]). The
/// 16 × 16 u32 transpose of those vectors is then A's 16 rows: each u32 is two consecutive
/// samples of one feature.
///
/// # Safety
/// AVX-512 F; X's rows p..p+pn have columns i..i+16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn pack_at_16x32(a: View<'_>, i: usize, p: usize, pn: usize, out: &mut [u16]) {
    use std::arch::x86_64::*;
    assert!(out.len() >= 512, "amx pack: A tile");
    assert!(
        pn == 0 || (p + pn - 1) * a.cs + i + 16 <= a.buf.len(),
        "amx pack: X rows"
    );
    let load = |q: usize| -> __m512 {
        if q < pn {
            _mm512_loadu_ps(a.buf.as_ptr().add((p + q) * a.cs + i))
        } else {
            _mm512_setzero_ps()
        }
    };
    let mut r = [_mm512_setzero_si512(); 16];
    for (q, rq) in r.iter_mut().enumerate() {
        *rq = bf16_pairs(load(2 * q), load(2 * q + 1));
    }
    transpose_u32_16x16(&r, out.as_mut_ptr());
}

/// The 16 × 16 transpose of u32: `r[q]`'s lane f → u32 q of row f at `dst + 32·f` (u16).
///
/// # Safety
/// AVX-512 F; 16 rows of 64 bytes writable at `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn transpose_u32_16x16(r: &[std::arch::x86_64::__m512i; 16], dst: *mut u16) {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_si512(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    // u[4g + j] (g: rows 4g..4g+4; j = column mod 4): in 128-bit lane L, column 4L + j of
    // rows 4g..4g+4.
    let mut u = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        let b = 4 * g;
        u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
        u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
        u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
    }
    for j in 0..4 {
        let x_lo = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
        let x_hi = _mm512_shuffle_i32x4::<0xdd>(u[j], u[4 + j]);
        let y_lo = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
        let y_hi = _mm512_shuffle_i32x4::<0xdd>(u[8 + j], u[12 + j]);
        let rows = [
            _mm512_shuffle_i32x4::<0x88>(x_lo, y_lo),
            _mm512_shuffle_i32x4::<0x88>(x_hi, y_hi),
            _mm512_shuffle_i32x4::<0xdd>(x_lo, y_lo),
            _mm512_shuffle_i32x4::<0xdd>(x_hi, y_hi),
        ];
        for (l, v) in rows.into_iter().enumerate() {
            _mm512_storeu_si512(dst.add((4 * l + j) * 32).cast(), v);
        }
    }
}

/// Checks that a view of `rows × cols` stays inside its buffer.
fn fits(v: &View<'_>, rows: usize, cols: usize) -> bool {
    extent(rows, cols, v.rs as isize, v.cs as isize) <= v.buf.len()
}

/// C (m × n, row-major) = epilogue(A (m × k) · B (k × n), β·C), operands rounded to bf16, f32
/// sums ([`Epilogue`]: bias, residual, ReLU, applied as C is written). Returns `false` (C
/// untouched) when no engine is [`available`].
///
/// # Panics
/// If a view, the bias, the residual or C is too short for the shapes (callers check shapes
/// first).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: View<'_>,
    b: View<'_>,
    epi: Epilogue<'_, f32>,
    beta: f32,
    c: &mut [f32],
) -> bool {
    if !available() {
        return false;
    }
    if let Some(bias) = epi.bias {
        assert!(bias.len() >= n, "amx gemm: bias shorter than n");
    }
    if let Some(res) = epi.residual {
        assert!(res.len() >= m * n, "amx gemm: residual shorter than m × n");
    }
    if let Some(h) = epi.mask {
        assert!(h.len() >= m * n, "amx gemm: mask shorter than m × n");
    }
    assert!(fits(&a, m, k), "amx gemm: A out of bounds");
    assert!(fits(&b, k, n), "amx gemm: B out of bounds");
    assert!(c.len() >= m * n, "amx gemm: C out of bounds");
    product(m, k, n, ASrc::View(a), b, epi, beta, c);
    true
}

/// The checked product of [`gemm`] and [`gemm_at`]: nothing for an empty C, the epilogue of
/// zero sums for k = 0, else [`run`].
#[allow(clippy::too_many_arguments)]
fn product(
    m: usize,
    k: usize,
    n: usize,
    a: ASrc<'_>,
    b: View<'_>,
    epi: Epilogue<'_, f32>,
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    let c = &mut c[..m * n];
    if k == 0 {
        let mut v = vec![0f32; n];
        for (i, row) in c.chunks_mut(n).enumerate() {
            v.iter_mut().for_each(|x| *x = 0.0);
            epilogue_row(&epi, beta, i, 0, n, row, &mut v);
            row.copy_from_slice(&v);
        }
        return;
    }
    run(m, k, n, a, b, epi, beta, c);
}

/// Length (u16) of [`pack_at_groups`]'s layout for `k` samples and `m` features.
pub fn at_len(k: usize, m: usize) -> usize {
    k.div_ceil(32) * round_up(m, 32) * 32
}

/// A = Xᵀ as bf16 in groups of 32 samples, for [`gemm_at`]: X (`rows` × `cols`, row-major
/// f32) holds one sample per row; group q (samples 32q..32q+32) is A's ⌈cols/32⌉·32 rows ×
/// 32 columns, row-major (64 bytes a row), zero past `rows` and `cols`, the groups one after
/// another in `dst` (at least [`at_len`]`(rows, cols)` long). Rounded as [`bf16_bits`]: the
/// values [`gemm`]'s own packing of the view Xᵀ gives.
///
/// Packing a chunk of samples while it is in cache, instead of transposing the whole X when
/// the product runs, which reads X from memory 16 features (one cache line) per row at a
/// stride of a whole row.
///
/// # Panics
/// If no engine is [`available`] or a buffer is too short.
pub fn pack_at_groups(x: &[f32], rows: usize, cols: usize, dst: &mut [u16]) {
    assert!(available(), "amx pack: no bf16 engine");
    assert!(
        x.len() >= rows * cols,
        "amx pack: X shorter than rows × cols"
    );
    let mp = round_up(cols, 32);
    assert!(dst.len() >= at_len(rows, cols), "amx pack: groups");
    let xv = View {
        buf: &x[..rows * cols],
        rs: 1,
        cs: cols,
    };
    let vec_cols = cols / 16 * 16;
    for (q, grp) in dst[..at_len(rows, cols)]
        .chunks_exact_mut(mp * 32)
        .enumerate()
    {
        let (p, pn) = (32 * q, (rows - 32 * q).min(32));
        #[cfg(target_arch = "x86_64")]
        for i in (0..vec_cols).step_by(16) {
            // SAFETY: AVX-512 (available() asserted); samples p..p+pn < rows and features
            // i..i+16 ≤ cols of X; 16 rows of 32 at `i·32` inside the group's mp·32.
            unsafe { pack_at_16x32(xv, i, p, pn, &mut grp[i * 32..]) };
        }
        // Features past the last whole 16 (and the padding rows): one value at a time.
        for (f, row) in grp.chunks_exact_mut(32).enumerate().skip(vec_cols) {
            for (s, v) in row.iter_mut().enumerate() {
                *v = match f < cols && s < pn {
                    true => bf16_bits(xv.at(f, p + s)),
                    false => 0,
                };
            }
        }
    }
}

/// C (m × n, row-major) = A·B + β·C with A (m × k) given as [`pack_at_groups`] of its
/// transpose (k × m): the same blocks, rounding and sums as [`gemm`] on that view, so the
/// result is the same bit for bit. Returns `false` (C untouched) when no engine is
/// [`available`].
///
/// # Panics
/// If `at`, the view or C is too short for the shapes.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at(
    m: usize,
    k: usize,
    n: usize,
    at: &[u16],
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
) -> bool {
    if !available() {
        return false;
    }
    assert!(at.len() >= at_len(k, m), "amx gemm_at: packed A");
    assert!(fits(&b, k, n), "amx gemm_at: B out of bounds");
    assert!(c.len() >= m * n, "amx gemm_at: C out of bounds");
    product(m, k, n, ASrc::Groups(at), b, Epilogue::default(), beta, c);
    true
}

/// Where a product's A comes from: a view packed block by block as the product runs,
/// [`pack_at_groups`]'s layout, or tiles written by an earlier product ([`RowsA::Tiles`]).
#[derive(Clone, Copy)]
enum ASrc<'a> {
    View(View<'a>),
    Groups(&'a [u16]),
    Tiles(&'a [u16]),
    /// A = Gᵀ, G (k × m) packed by [`pack_rows`] ([`AccA::RowsT`]).
    RowsT(&'a [u16]),
}

/// [`gemm_rows`]' A (m × k): an f32 view, converted as the product runs, or already bf16 in
/// tiles, as another [`gemm_rows`] emitted them for its C (m × k): row block g (32 rows), k step
/// s (32 columns) at 1024·(g·⌈k/32⌉ + s), two 16-row tiles of 64-byte rows, zero past m and k
/// ([`tiles_len`]).
#[derive(Clone, Copy)]
pub enum RowsA<'a> {
    View(View<'a>),
    Tiles(&'a [u16]),
}

/// What [`gemm_rows`] reads and writes besides A, B, the epilogue and C.
#[derive(Default)]
pub struct RowsIo<'a> {
    /// The ReLU-gradient mask as [`pack_rows`] packed it (m × n, bf16 values, [`rows_len`]
    /// long), in place of [`Epilogue::mask`] (not with it): where the value is ≤ 0, C becomes 0.
    /// The backward reads the forward's packed saved outputs so, without unpacking them.
    pub mask_rows: Option<&'a [u16]>,
    /// C also written here as bf16 tiles ([`RowsA::Tiles`], [`tiles_len`]`(m, n)` long), the A
    /// of a next product, so that it does not convert C again.
    pub emit: Option<&'a mut [u16]>,
    /// C also written here as bf16 in [`pack_rows`]' layout ([`rows_len`]`(m, n)` long, zero
    /// past m and n): what [`pack_rows`] of C would give, the transposed A of a product Cᵀ·B
    /// ([`AccA::RowsT`]) without converting C again.
    pub emit_rows: Option<&'a mut [u16]>,
}

/// Where a product's C is also written as bf16 ([`RowsIo`]'s `emit` and `emit_rows`).
#[derive(Default)]
struct Emits<'a> {
    tiles: Option<&'a mut [u16]>,
    rows: Option<&'a mut [u16]>,
}

impl Emits<'_> {
    fn is_none(&self) -> bool {
        self.tiles.is_none() && self.rows.is_none()
    }

    /// The 1024 u16 of block `eo` (the same offset in both layouts) of each, as pointers (null
    /// where absent).
    fn block_ptrs(&mut self, eo: usize) -> (*mut u16, *mut u16) {
        let at = |e: &mut Option<&mut [u16]>| {
            e.as_deref_mut()
                .map_or(std::ptr::null_mut(), |e| e[eo..eo + 1024].as_mut_ptr())
        };
        (at(&mut self.tiles), at(&mut self.rows))
    }

    /// The 1024 u16 of block `eo` of each, as slices.
    fn block(&mut self, eo: usize) -> (Option<&mut [u16]>, Option<&mut [u16]>) {
        (
            self.tiles.as_deref_mut().map(|e| &mut e[eo..eo + 1024]),
            self.rows.as_deref_mut().map(|e| &mut e[eo..eo + 1024]),
        )
    }
}

/// Length (u16) of [`RowsA::Tiles`] for m rows and k columns.
pub fn tiles_len(m: usize, k: usize) -> usize {
    round_up(m, 32) * round_up(k, 32)
}

/// B (k × n) packed once for [`gemm_rows`]: all of k (≤ [`KC`]) in one VNNI panel, shared by
/// every row chunk of a layer (the row-chunked MLP passes in `super::mlp`).
pub struct PackedB {
    bp: Vec<u16>,
    k: usize,
    n: usize,
    np: usize,
    klp: usize,
}

impl PackedB {
    /// `None` when no engine is [`available`], a dimension is 0 or k > [`KC`].
    ///
    /// # Panics
    /// If the view is too short for k × n.
    pub fn new(b: View<'_>, k: usize, n: usize) -> Option<Self> {
        if !available() || k == 0 || n == 0 || k > KC {
            return None;
        }
        assert!(fits(&b, k, n), "amx packed B: view out of bounds");
        let (np, klp) = (round_up(n, 32), round_up(k, 32));
        let mut bp = vec![0u16; klp * np];
        pack_b(b, 0, k, n, klp, np, &mut bp);
        Some(Self { bp, k, n, np, klp })
    }

    fn panel(&self) -> PackedRef<'_> {
        PackedRef {
            bp: &self.bp,
            k: self.k,
            n: self.n,
            np: self.np,
            klp: self.klp,
        }
    }
}

/// On the calling thread (no rayon): C (m × n, row-major) = epilogue(A (m × k) · B) with B
/// packed by [`PackedB::new`]; the same blocks, rounding and epilogue as [`gemm`] (for k ≤
/// [`KC`] the result is identical to it bit for bit, and A given as tiles that a product
/// emitted gives the same result as A given as that product's C). `io` ([`RowsIo`]) can give
/// the mask packed, and where C is also emitted as bf16.
///
/// # Panics
/// If a view, the tiles, the bias, the residual, a mask, C or an emitted buffer is too short
/// for the shapes, or both masks are given.
pub fn gemm_rows(
    m: usize,
    a: RowsA<'_>,
    b: &PackedB,
    epi: Epilogue<'_, f32>,
    c: &mut [f32],
    io: RowsIo<'_>,
) {
    let (k, n) = (b.k, b.n);
    if let Some(bias) = epi.bias {
        assert!(bias.len() >= n, "amx gemm_rows: bias shorter than n");
    }
    for x in [epi.residual, epi.mask].into_iter().flatten() {
        assert!(
            x.len() >= m * n,
            "amx gemm_rows: residual or mask shorter than m × n"
        );
    }
    let a = match a {
        RowsA::View(a) => {
            assert!(fits(&a, m, k), "amx gemm_rows: A out of bounds");
            ASrc::View(a)
        }
        RowsA::Tiles(t) => {
            assert!(t.len() >= tiles_len(m, k), "amx gemm_rows: A tiles");
            ASrc::Tiles(t)
        }
    };
    assert!(c.len() >= m * n, "amx gemm_rows: C out of bounds");
    if let Some(e) = io.emit.as_deref() {
        assert!(e.len() >= tiles_len(m, n), "amx gemm_rows: emitted tiles");
    }
    if let Some(e) = io.emit_rows.as_deref() {
        assert!(e.len() >= rows_len(m, n), "amx gemm_rows: emitted rows");
    }
    if let Some(p) = io.mask_rows {
        assert!(epi.mask.is_none(), "amx gemm_rows: two masks");
        assert!(p.len() >= rows_len(m, n), "amx gemm_rows: packed mask");
    }
    if m == 0 {
        return;
    }
    run_panel(
        m,
        a,
        &b.panel(),
        epi,
        io.mask_rows,
        None,
        Some(&mut c[..m * n]),
        Emits {
            tiles: io.emit,
            rows: io.emit_rows,
        },
    );
}

/// On the calling thread: `acc` (⌈m/32⌉·32 rows × ⌈n/32⌉·32 columns, row-major f32) += A (m × k,
/// [`AccA`]) · B (k × n), k ≤ [`KC`], B packed here into `scratch`; with `fresh`, `acc` = A·B
/// (its old values, which may be anything, are not read). Split-k accumulation of a product
/// whose k (the samples of dW = gᵀ·h) arrives in row chunks; the padding of `acc` is 0 after a
/// fresh call and stays 0.
///
/// # Panics
/// If no engine is [`available`], k > [`KC`], or A, B or `acc` is too short.
#[allow(clippy::too_many_arguments)]
pub fn accumulate(
    m: usize,
    k: usize,
    n: usize,
    a: AccA<'_>,
    b: View<'_>,
    acc: &mut [f32],
    fresh: bool,
    scratch: &mut Vec<u16>,
) {
    let len = rows_len(k, n);
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    // (B read from memory: packed in B's row order)
    pack_steps::<false>("amx accumulate", b, k, n, &mut scratch[..len]);
    accumulate_packed(m, k, n, a, &scratch[..len], acc, fresh);
}

/// Length (u16) of [`pack_rows`]'s B of k rows and n columns: ⌈k/32⌉·32 × ⌈n/32⌉·32.
pub fn rows_len(k: usize, n: usize) -> usize {
    round_up(k, 32) * round_up(n, 32)
}

/// B (k × n, k ≤ [`KC`]) packed on the calling thread as [`accumulate`] packs it (VNNI pairs of
/// consecutive rows, bf16 rounded as [`bf16_bits`]), into `out` ([`rows_len`]): kept, it is
/// [`accumulate_packed`]'s B, and [`gemm_rows`]' packed mask ([`RowsIo::mask_rows`]).
///
/// # Panics
/// If no engine is [`available`], k > [`KC`], or B or `out` is too short.
pub fn pack_rows(b: View<'_>, k: usize, n: usize, out: &mut [u16]) {
    // (B read from cache: written in the packed order, to memory)
    pack_steps::<true>("amx pack_rows", b, k, n, out);
}

/// [`pack_rows`] and [`accumulate`]'s packing of B (k × n) into `out`, step by step in the
/// order `TILE_ORDER` picks ([`pack_b_step`]); `what` names the caller in the panics.
///
/// # Panics
/// If no engine is [`available`], k > [`KC`], or B or `out` is too short.
fn pack_steps<const TILE_ORDER: bool>(
    what: &str,
    b: View<'_>,
    k: usize,
    n: usize,
    out: &mut [u16],
) {
    assert!(available(), "{what}: no bf16 engine");
    assert!(k <= KC, "{what}: k {k} > {KC}");
    assert!(fits(&b, k, n), "{what}: B out of bounds");
    let np = round_up(n, 32);
    let len = rows_len(k, n);
    assert!(out.len() >= len, "{what}: out shorter than the packed B");
    if len == 0 {
        return; // (n = 0: no steps of any width)
    }
    for (s, dst) in out[..len].chunks_mut(32 * np).enumerate() {
        // SAFETY: available() (asserted above) implies AVX-512.
        unsafe { pack_b_step::<TILE_ORDER>(b, 0, k, n, np, s, dst) };
    }
}

/// For tests: the values of a B packed by [`pack_rows`] (k × n) as f32, row-major into `out`.
#[cfg(test)]
pub fn unpack_rows(bp: &[u16], k: usize, n: usize, out: &mut [f32]) {
    let np = round_up(n, 32);
    for (r, row) in out[..k * n].chunks_exact_mut(n).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = bf16_value(bp[b_idx(r / 2, j, np) + r % 2]);
        }
    }
}

/// [`accumulate`] with B (k × n) already packed by [`pack_rows`] (`bp`).
///
/// # Panics
/// If no engine is [`available`], k > [`KC`], A, `bp` or `acc` is too short.
#[allow(clippy::too_many_arguments)]
pub fn accumulate_packed(
    m: usize,
    k: usize,
    n: usize,
    a: AccA<'_>,
    bp: &[u16],
    acc: &mut [f32],
    fresh: bool,
) {
    let a = match a {
        AccA::View(a) => {
            assert!(fits(&a, m, k), "amx accumulate: A out of bounds");
            ASrc::View(a)
        }
        AccA::RowsT(g) => {
            assert!(g.len() >= rows_len(k, m), "amx accumulate: packed A");
            ASrc::RowsT(g)
        }
    };
    accumulate_a(m, k, n, a, bp, acc, fresh);
}

/// The A (m × k) of [`accumulate`] and [`accumulate_packed`].
#[derive(Clone, Copy)]
pub enum AccA<'a> {
    /// An f32 view, converted as the product runs.
    View(View<'a>),
    /// A = Gᵀ with G (k × m) packed by [`pack_rows`] or emitted so ([`RowsIo::emit_rows`]):
    /// the same as the view Gᵀ on G's values, bit for bit, without converting G again. The
    /// vector engine reads A's pairs from it as they are; AMX transposes its tiles first.
    RowsT(&'a [u16]),
}

/// [`accumulate_packed`] with A's bounds checked.
fn accumulate_a(
    m: usize,
    k: usize,
    n: usize,
    a: ASrc<'_>,
    bp: &[u16],
    acc: &mut [f32],
    fresh: bool,
) {
    assert!(available(), "amx accumulate: no bf16 engine");
    assert!(k <= KC, "amx accumulate: k {k} > {KC}");
    let (mp, np, klp) = (round_up(m, 32), round_up(n, 32), round_up(k, 32));
    assert!(bp.len() >= klp * np, "amx accumulate: packed B");
    assert!(
        acc.len() >= mp * np,
        "amx accumulate: acc shorter than the padded m × n"
    );
    let acc = &mut acc[..mp * np];
    if m == 0 || n == 0 || k == 0 {
        if fresh {
            acc.fill(0.0);
        }
        return;
    }
    let b = PackedRef {
        bp: &bp[..klp * np],
        k,
        n,
        np,
        klp,
    };
    run_panel(
        m,
        a,
        &b,
        Epilogue::default(),
        None,
        Some((acc, fresh)),
        None,
        Emits::default(),
    );
}

thread_local! {
    /// Tests: [`ASrc::RowsT`] transposed into tiles (as for AMX) on the vector engine too.
    static TRANSPOSE_ROWS_T: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A packed B panel, borrowed ([`PackedB::panel`] or a scratch buffer).
struct PackedRef<'a> {
    bp: &'a [u16],
    k: usize,
    n: usize,
    np: usize,
    klp: usize,
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
fn run_panel(
    _: usize,
    _: ASrc,
    _: &PackedRef,
    _: Epilogue<f32>,
    _: Option<&[u16]>,
    _: Option<(&mut [f32], bool)>,
    _: Option<&mut [f32]>,
    _: Emits,
) {
    unreachable!("available() is false off x86_64")
}

/// The row blocks 0..m of one whole-k panel on this thread: C (with its epilogue) from zero
/// when `acc` is `None` ([`gemm_rows`]), else `acc` += A·B, or `acc` = A·B when its flag
/// (fresh) is set ([`accumulate`]); C emitted as bf16 too where `emits` says.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn run_panel(
    m: usize,
    a: ASrc<'_>,
    b: &PackedRef<'_>,
    epi: Epilogue<'_, f32>,
    pmask: Option<&[u16]>,
    acc: Option<(&mut [f32], bool)>,
    c: Option<&mut [f32]>,
    emits: Emits<'_>,
) {
    let first = acc.as_ref().is_none_or(|a| a.1);
    Block {
        a,
        m,
        n: b.n,
        np: b.np,
        k0: 0,
        kl: b.k,
        klp: b.klp,
        bp: b.bp,
        epi,
        beta: 0.0,
        first,
        group: m.div_ceil(32),
        pmask,
    }
    .run(0, acc.map(|a| a.0), c, emits);
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
fn run(_: usize, _: usize, _: usize, _: ASrc, _: View, _: Epilogue<f32>, _: f32, _: &mut [f32]) {
    unreachable!("available() is false off x86_64")
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn run(
    m: usize,
    k: usize,
    n: usize,
    a: ASrc<'_>,
    b: View<'_>,
    epi: Epilogue<'_, f32>,
    beta: f32,
    c: &mut [f32],
) {
    let np = round_up(n, 32);
    let mp = round_up(m, 32);
    let nchunks = k.div_ceil(KC);
    // Partial sums between k-chunks (only when there is more than one chunk).
    let mut acc = if nchunks > 1 {
        vec![0f32; mp * np]
    } else {
        Vec::new()
    };
    let mut bp = vec![0u16; np * round_up(k.min(KC), 32)];
    // Up to 4 blocks of 32 rows per task, while leaving ≥ 4 tasks per thread.
    let group = (mp / 32 / (4 * rayon::current_num_threads())).clamp(1, 4);
    let (gc, ga) = (32 * group * n, 32 * group * np);
    for chunk in 0..nchunks {
        let k0 = chunk * KC;
        let kl = (k - k0).min(KC);
        let klp = round_up(kl, 32);
        pack_b(b, k0, kl, n, klp, np, &mut bp);
        let blk = Block {
            a,
            m,
            n,
            np,
            k0,
            kl,
            klp,
            bp: &bp[..klp * np],
            epi,
            beta,
            first: chunk == 0,
            group,
            pmask: None,
        };
        let last = chunk + 1 == nchunks;
        match (last, nchunks > 1) {
            (true, true) => c
                .par_chunks_mut(gc)
                .zip(acc.par_chunks_mut(ga))
                .enumerate()
                .for_each(|(i, (cr, ar))| blk.run(i, Some(ar), Some(cr), Emits::default())),
            (true, false) => c
                .par_chunks_mut(gc)
                .enumerate()
                .for_each(|(i, cr)| blk.run(i, None, Some(cr), Emits::default())),
            (false, _) => acc
                .par_chunks_mut(ga)
                .enumerate()
                .for_each(|(i, ar)| blk.run(i, Some(ar), None, Emits::default())),
        }
    }
}

/// One k-chunk of the product, shared by the row-block tasks.
#[cfg(target_arch = "x86_64")]
struct Block<'a> {
    a: ASrc<'a>,
    m: usize,
    n: usize,
    np: usize,
    k0: usize,
    kl: usize,
    klp: usize,
    /// B's rows k0..k0+kl packed by [`pack_b`].
    bp: &'a [u16],
    epi: Epilogue<'a, f32>,
    beta: f32,
    first: bool,
    /// Row blocks of 32 per task.
    group: usize,
    /// The ReLU-gradient mask as bf16 in [`pack_rows`]' layout (m × n, rows of `np`
    /// columns), applied where [`Epilogue::mask`] is: C becomes 0 where the value is ≤ 0.
    pmask: Option<&'a [u16]>,
}

#[cfg(target_arch = "x86_64")]
impl Block<'_> {
    /// Row group `grp` (rows 32·G·grp.., G = `self.group` blocks of 32): starts from `acc`
    /// unless this is the first chunk; writes the group's C rows `c` (final: + β·C) when
    /// given, else the partial sums back to `acc`. Each packed B panel pair is used by the G
    /// blocks in turn while it is in L1. With `emit` (only for a whole single-chunk product in
    /// one group, [`gemm_rows`]) C is also written there as bf16 tiles.
    fn run(
        &self,
        grp: usize,
        mut acc: Option<&mut [f32]>,
        c: Option<&mut [f32]>,
        mut emits: Emits<'_>,
    ) {
        use std::cell::RefCell;
        thread_local! {
            static ABUF: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
        }
        let (np, klp, n) = (self.np, self.klp, self.n);
        let nsteps = klp / 32;
        let r0 = 32 * self.group * grp;
        let blocks = self.m.saturating_sub(r0).div_ceil(32).min(self.group);
        if let Some(acc) = acc.as_deref() {
            assert!(acc.len() >= 32 * blocks * np, "amx gemm: partial-sum rows");
        }
        for e in [emits.tiles.as_deref(), emits.rows.as_deref()]
            .into_iter()
            .flatten()
        {
            assert!(
                grp == 0 && self.first && c.is_some() && e.len() >= 32 * blocks * np,
                "amx gemm: emitted tiles or rows"
            );
            assert!(
                blocks == self.m.div_ceil(32),
                "amx gemm: emitting needs one group"
            );
        }
        assert!(self.bp.len() >= klp * np, "amx gemm: packed B");
        let amx = engine() == Some(Engine::Amx);
        ABUF.with(|cell| {
            let mut abuf = cell.borrow_mut();
            // A's two tiles of row block g, k step s are at a0 + g·ag + s·as_, transposed
            // (rows of A as the columns of a B layout, for the vector engine) when `ta`.
            let (a0, ag, as_, ta): (*const u16, usize, usize, bool) = match self.a {
                ASrc::View(a) => {
                    if abuf.len() < 32 * klp * blocks {
                        abuf.resize(32 * klp * blocks, 0);
                    }
                    for g in 0..blocks {
                        let dst = &mut abuf[32 * klp * g..32 * klp * (g + 1)];
                        // SAFETY: only reached through `gemm`, after available() checked
                        // AVX-512.
                        unsafe { pack_a(a, self.m, r0 + 32 * g, self.k0, self.kl, klp, dst) };
                    }
                    (abuf.as_ptr(), 32 * klp, 1024, false)
                }
                ASrc::RowsT(t) => {
                    let mp = round_up(self.m, 32);
                    // G's rows k0.. (one chunk), its column tiles of row blocks r0/32 ..
                    assert!(
                        self.k0 == 0 && t.len() >= klp * mp,
                        "amx gemm: A as transposed rows"
                    );
                    if amx || TRANSPOSE_ROWS_T.get() {
                        // AMX loads A's tiles as they are: transposed here, 16 × 16 u32
                        // (k-pairs × rows of A) per tile.
                        if abuf.len() < 32 * klp * blocks {
                            abuf.resize(32 * klp * blocks, 0);
                        }
                        for g in 0..blocks {
                            for s in 0..nsteps {
                                for h in 0..2 {
                                    let tile = s * mp / 16 + (r0 + 32 * g) / 16 + h;
                                    let src = &t[512 * tile..512 * tile + 512];
                                    let dst = &mut abuf[32 * klp * g + 512 * (2 * s + h)..];
                                    // SAFETY: AVX-512 F (available()); 1 KiB read from `src`,
                                    // 1 KiB written to `dst` (inside the block's 32·klp).
                                    unsafe {
                                        use std::arch::x86_64::*;
                                        let p = src.as_ptr();
                                        let r: [__m512i; 16] = std::array::from_fn(|q| {
                                            _mm512_loadu_si512(p.add(32 * q).cast())
                                        });
                                        transpose_u32_16x16(&r, dst[..512].as_mut_ptr());
                                    }
                                }
                            }
                        }
                        (abuf.as_ptr(), 32 * klp, 1024, false)
                    } else {
                        (t[32 * r0..].as_ptr(), 1024, 32 * mp, true)
                    }
                }
                ASrc::Groups(at) => {
                    let mp = round_up(self.m, 32);
                    // groups k0/32 .. (k0 + klp)/32, row blocks r0/32 .. r0/32 + blocks ≤ mp/32
                    assert!(
                        at.len() >= (self.k0 + klp) / 32 * mp * 32,
                        "amx gemm: packed A groups"
                    );
                    // SAFETY: inside `at` (asserted).
                    let a0 = unsafe { at.as_ptr().add((self.k0 / 32 * mp + r0) * 32) };
                    (a0, 32 * 32, mp * 32, false)
                }
                ASrc::Tiles(t) => {
                    // row blocks r0/32 .. r0/32 + blocks of the whole k (one chunk)
                    assert!(
                        self.k0 == 0 && t.len() >= (r0 + 32 * blocks) * klp,
                        "amx gemm: A tiles"
                    );
                    (t[r0 * klp..].as_ptr(), 32 * klp, 1024, false)
                }
            };
            // Two staging blocks: a block's epilogue waits until the next block's tile products
            // have been issued, so that the vector work runs while the AMX unit computes.
            let mut tmp = [[0f32; 32 * 32]; 2];
            let mut slot = 0;
            // (slot, i0, j0, offset into the C rows, offset into `emit`) of the block whose
            // epilogue waits
            let mut pending: Option<(usize, usize, usize, usize, usize)> = None;
            let mut c = c;
            let e = &self.epi;
            // (emitting: the AMX blocks take the staged epilogue, which converts them)
            let plain = e.bias.is_none()
                && e.residual.is_none()
                && e.mask.is_none()
                && self.pmask.is_none()
                && !e.relu
                && self.beta == 0.0
                && emits.is_none();
            let cfg = TileConfig::new();
            // SAFETY: `gemm` (the only way here) checked available(): the engine's instructions
            // run. Tile and vector reads and writes stay inside A (abuf, blocks × 32 rows × klp
            // bf16, resized above, or the groups or tiles asserted above), packed B (klp × np
            // bf16, asserted above), acc and the emitted tiles (blocks × 32 rows × np, asserted
            // above), C (whole blocks asserted where written directly) and tmp.
            unsafe {
                if amx {
                    tiles::configure(&cfg);
                }
                for jb in 0..np / 32 {
                    // column block jb's two tiles of step s at pb + sb·s
                    let pb = self.bp.as_ptr().add(jb * 1024);
                    let sb = 32 * np;
                    for g in 0..blocks {
                        let arow = 32 * g * np + 32 * jb;
                        let init = match acc.as_deref() {
                            Some(acc) if !self.first => Some((acc.as_ptr().add(arow), np)),
                            _ => None,
                        };
                        let ab = a0.add(ag * g);
                        if amx {
                            match init {
                                Some((p, ld)) => tiles::load_c(p, ld * 4),
                                None => tiles::zero_c(),
                            }
                            // Steps in pairs, the second mirrored.
                            for s in 0..nsteps {
                                let (a, b) = (ab.add(as_ * s), pb.add(sb * s));
                                match s % 2 {
                                    0 => tiles::step(a, b),
                                    _ => tiles::step_mirrored(a, b),
                                }
                            }
                        }
                        if let (Some((ps, pi, pj, po, eo)), Some(cr)) =
                            (pending.take(), c.as_deref_mut())
                        {
                            let em = emits.block(eo);
                            self.epilogue(&tmp[ps], pi, pj, &mut cr[po..], em);
                        }
                        // This block's 2 KiB of emitted tiles: row block g, step jb (and of
                        // emitted rows: pairs 16g.., column tiles 2jb, 2jb + 1).
                        let eo = (g * np / 32 + jb) * 1024;
                        // The block's destination (row stride in floats): C directly, a staging
                        // block for the epilogue, or the partial sums; with the vector engine,
                        // whole blocks of C take their epilogue as they are stored.
                        let mut fused = None;
                        let (dst, ld) = match (c.as_deref_mut(), acc.as_deref_mut()) {
                            (Some(cr), _) => {
                                let (i0, j0) = (r0 + 32 * g, 32 * jb);
                                let off = (32 * g * n).min(cr.len());
                                if (plain || !amx) && i0 + 32 <= self.m && j0 + 32 <= n {
                                    let dst = &mut cr[off + j0..];
                                    assert!(dst.len() >= 31 * n + 32, "amx gemm: C block");
                                    if !plain {
                                        let (beta, pm) = (self.beta, self.pmask);
                                        fused = Some(Fused::new(e, beta, pm, i0, j0, (n, np)));
                                    }
                                    (dst.as_mut_ptr(), n)
                                } else {
                                    let staged = slot;
                                    pending = Some((staged, i0, j0, off, eo));
                                    slot ^= 1;
                                    (tmp[staged].as_mut_ptr(), 32)
                                }
                            }
                            (None, Some(acc)) => (acc.as_mut_ptr().add(arow), np),
                            (None, None) => unreachable!("a block writes C or the partial sums"),
                        };
                        if amx {
                            tiles::store_c(dst, ld * 4);
                        } else {
                            // (a staged block emits in its epilogue)
                            let em = match pending {
                                None => emits.block_ptrs(eo),
                                _ => (std::ptr::null_mut(), std::ptr::null_mut()),
                            };
                            let f = fused.as_ref();
                            match ta {
                                false => vector_block::<false>(
                                    ab, as_, pb, sb, nsteps, init, dst, ld, f, em,
                                ),
                                true => vector_block::<true>(
                                    ab, as_, pb, sb, nsteps, init, dst, ld, f, em,
                                ),
                            }
                        }
                    }
                }
                if amx {
                    tiles::release();
                }
                if let (Some((ps, pi, pj, po, eo)), Some(cr)) = (pending, c) {
                    let em = emits.block(eo);
                    self.epilogue(&tmp[ps], pi, pj, &mut cr[po..], em);
                }
            }
        });
    }

    /// C rows (of this block) columns j0..j0+32, inside m × n, = [`epilogue_row`] of the
    /// product in `tmp`. Whole 32 × 32 blocks pass fixed-length rows, which vectorize. With
    /// `emit`'s first, the block also goes there as bf16 (one step of a row block of tiles,
    /// zero past m and n), with its second in [`pack_rows`]' layout (16 pairs of rows × two
    /// tiles of 16 columns, zero past m and n).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn epilogue(
        &self,
        tmp: &[f32; 1024],
        i0: usize,
        j0: usize,
        cr: &mut [f32],
        (mut emit, mut emit_rows): (Option<&mut [u16]>, Option<&mut [u16]>),
    ) {
        let (n, beta) = (self.n, self.beta);
        // With a packed mask, the epilogue stops before the ReLU: the mask, then the ReLU.
        let e = &Epilogue {
            relu: self.epi.relu && self.pmask.is_none(),
            ..self.epi
        };
        let rows = self.m.saturating_sub(i0).min(32);
        let cols = n.saturating_sub(j0).min(32);
        for em in [emit.as_deref_mut(), emit_rows.as_deref_mut()]
            .into_iter()
            .flatten()
        {
            em[..1024].fill(0);
        }
        for r in 0..rows {
            let dst = &mut cr[r * n + j0..r * n + j0 + cols];
            let src = &tmp[r * 32..r * 32 + cols];
            let mut v = [0f32; 32];
            if let Ok(dst) = <&mut [f32; 32]>::try_from(&mut *dst) {
                // Fixed length: inlined vector moves, not memmove calls.
                v = src.try_into().unwrap();
                epilogue_row(e, beta, i0 + r, j0, n, dst, &mut v);
                self.packed_mask(i0 + r, j0, &mut v);
                *dst = v;
            } else {
                let v = &mut v[..cols];
                v.copy_from_slice(src);
                epilogue_row(e, beta, i0 + r, j0, n, dst, v);
                self.packed_mask(i0 + r, j0, v);
                dst.copy_from_slice(v);
            }
            if let Some(em) = emit.as_deref_mut() {
                // (v is zero past cols)
                // SAFETY: AVX-512 F/BW (this function's features).
                unsafe { bf16_row32(&v, &mut em[a_idx(r, 0)..a_idx(r, 0) + 32]) };
            }
            if let Some(em) = emit_rows.as_deref_mut() {
                for (c, &x) in v[..cols].iter().enumerate() {
                    em[b_idx(r / 2, c, 32) + r % 2] = bf16_bits(x);
                }
            }
        }
    }

    /// The rest of the staged epilogue on `v` (row i, columns j0..j0 + v.len()) when there is
    /// a packed mask: where its value is ≤ 0, 0; then the ReLU if the epilogue has one.
    fn packed_mask(&self, i: usize, j0: usize, v: &mut [f32]) {
        let Some(pm) = self.pmask else {
            return;
        };
        for (c, x) in v.iter_mut().enumerate() {
            let h = bf16_value(pm[b_idx(i / 2, j0 + c, self.np) + i % 2]);
            if h <= 0.0 {
                *x = 0.0;
            }
        }
        if self.epi.relu {
            v.iter_mut().for_each(|x| *x = x.max(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a bf16 engine runs on this CPU; says that the test is skipped when none does.
    fn engine_here() -> bool {
        let ok = available();
        if !ok {
            eprintln!("no bf16 engine (AMX or AVX-512 BF16) on this CPU: skipped");
        }
        ok
    }

    /// The row-major view of `buf` with `cols` columns.
    fn row_major(buf: &[f32], cols: usize) -> View<'_> {
        View {
            buf,
            rs: cols,
            cs: 1,
        }
    }

    /// A seeded LCG: values in [−0.5, 0.5).
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        }
    }

    /// The bf16-rounded product in f64, the exact value the kernel approximates.
    fn reference(m: usize, k: usize, n: usize, a: View<'_>, b: View<'_>) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| {
                        bf16_value(bf16_bits(a.at(i, p))) as f64
                            * bf16_value(bf16_bits(b.at(p, j))) as f64
                    })
                    .sum();
            }
        }
        c
    }

    /// The vector engine's block on operands packed as for the tiles equals the bf16-rounded
    /// product (sums in f32: within 1e-5 relative to Σ|a·b|), from zero and from a start
    /// block, into a strided destination. Runs wherever the CPU has AVX-512 BF16, whichever
    /// engine the process picked, so AMX machines check it too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_block_matches_bf16_reference() {
        if !detect_vector() {
            eprintln!("AVX-512 BF16 not available on this CPU: skipped");
            return;
        }
        let mut rnd = uniform(7);
        let (m, k, n) = (32, 96, 64);
        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let (av, bv) = (row_major(&a, k), row_major(&b, n));
        let mut ap = vec![0u16; 32 * k];
        let mut bp = vec![0u16; k * n];
        // SAFETY: detect_vector() implies AVX-512 F/BW/VL.
        unsafe { pack_a(av, m, 0, 0, k, k, &mut ap) };
        pack_b(bv, 0, k, n, k, n, &mut bp);
        let want = reference(m, k, n, av, bv);
        let start: Vec<f32> = (0..32 * 32).map(|_| rnd()).collect();
        for jb in 0..n / 32 {
            for init in [false, true] {
                let ldo = 40;
                let mut out = vec![f32::NAN; 32 * ldo];
                let init_ptr = init.then_some((start.as_ptr(), 32));
                // SAFETY: AVX-512 BF16 (checked); k/32 steps of two tiles in ap (1 KiB apart
                // per step) and bp (32·n apart, column block jb at 1024·jb); out has 32 rows
                // of ldo ≥ 32.
                unsafe {
                    vector_block::<false>(
                        ap.as_ptr(),
                        1024,
                        bp.as_ptr().add(1024 * jb),
                        32 * n,
                        k / 32,
                        init_ptr,
                        out.as_mut_ptr(),
                        ldo,
                        None,
                        (std::ptr::null_mut(), std::ptr::null_mut()),
                    )
                };
                for i in 0..32 {
                    for j in 0..32 {
                        let col = 32 * jb + j;
                        let s0 = if init { start[i * 32 + j] as f64 } else { 0.0 };
                        let mag: f64 = (0..k)
                            .map(|p| (av.at(i, p) * bv.at(p, col)).abs() as f64)
                            .sum();
                        let (got, exp) = (out[i * ldo + j] as f64, want[i * n + col] + s0);
                        assert!(
                            (got - exp).abs() <= 1e-5 * (mag + s0.abs()),
                            "({i}, {col}) init {init}: {got} vs {exp}"
                        );
                    }
                }
            }
        }
    }

    /// Every epilogue (bias, residual, β·C, mask, ReLU) applied by the product, on whole and
    /// ragged blocks, equals the plain product followed by [`epilogue_row`], bit for bit
    /// (whichever engine: the vector engine fuses it into whole blocks' stores).
    #[test]
    fn epilogues_match_plain_product_then_epilogue_row() {
        if !engine_here() {
            return;
        }
        let mut rnd = uniform(31);
        for &(m, k, n) in &[(64, 96, 64), (50, 70, 40)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let res: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            let mask: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            let old: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            let (av, bv) = (row_major(&a, k), row_major(&b, n));
            let mut plain = vec![0f32; m * n];
            assert!(gemm(m, k, n, av, bv, Epilogue::default(), 0.0, &mut plain));
            let cases = [
                (Some(&bias[..]), None, None, true, 0.0),
                (None, Some(&res[..]), None, true, 0.0),
                (None, Some(&res[..]), Some(&mask[..]), false, 0.0),
                (None, None, Some(&mask[..]), false, 0.5),
                (None, None, None, false, 1.0),
            ];
            for (c, &(bias, residual, mask, relu, beta)) in cases.iter().enumerate() {
                let e = Epilogue {
                    bias,
                    residual,
                    mask,
                    relu,
                };
                let mut got = old.clone();
                assert!(gemm(m, k, n, av, bv, e, beta, &mut got));
                let mut want = plain.clone();
                for (i, row) in want.chunks_mut(n).enumerate() {
                    epilogue_row(&e, beta, i, 0, n, &old[i * n..(i + 1) * n], row);
                }
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{m}x{k}x{n} case {c}: differs from the plain product's epilogue"
                );
            }
        }
    }

    /// A B packed by `pack_rows` and kept: `unpack_rows` gives back each value's bf16 rounding
    /// (ragged k and n: an odd last row, a part column tile), and `accumulate_packed` on it
    /// equals `accumulate` on the f32 B bit for bit, fresh and adding.
    #[test]
    fn kept_packed_rows_unpack_to_bf16_and_accumulate_like_f32() {
        if !engine_here() {
            return;
        }
        let (m, k, n) = (40, 37, 45);
        let val = |i: usize, s: f32| ((i as f32 + 1.0) * s).sin();
        let b: Vec<f32> = (0..k * n).map(|i| val(i, 0.731)).collect();
        let a: Vec<f32> = (0..m * k).map(|i| val(i, 0.377)).collect();
        let mut bp = vec![u16::MAX; rows_len(k, n)];
        pack_rows(row_major(&b, n), k, n, &mut bp);
        let mut back = vec![f32::NAN; k * n];
        unpack_rows(&bp, k, n, &mut back);
        for (i, (&u, &v)) in back.iter().zip(&b).enumerate() {
            assert_eq!(u.to_bits(), bf16_value(bf16_bits(v)).to_bits(), "value {i}");
        }
        let av = AccA::View(row_major(&a, k));
        let np = round_up(n, 32);
        let len = round_up(m, 32) * np;
        let (mut want, mut got) = (vec![f32::NAN; len], vec![f32::NAN; len]);
        let mut scratch = Vec::new();
        for (pass, fresh) in [true, false].into_iter().enumerate() {
            accumulate(
                m,
                k,
                n,
                av,
                row_major(&b, n),
                &mut want,
                fresh,
                &mut scratch,
            );
            accumulate_packed(m, k, n, av, &bp, &mut got, fresh);
            let same = want
                .iter()
                .zip(&got)
                .all(|(u, v)| u.to_bits() == v.to_bits());
            assert!(same, "pass {pass}: accumulate_packed bit for bit");
        }
        // and the sums are right: twice A·B of the bf16 values
        let r = |x: f32| bf16_value(bf16_bits(x)) as f64;
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| r(a[i * k + p]) * r(b[p * n + j])).sum();
                let v = got[i * np + j] as f64;
                assert!((v - 2.0 * s).abs() < 1e-4, "({i}, {j}): {v} vs {}", 2.0 * s);
            }
        }
    }

    /// gemm_rows' emitted tiles hold C (after its epilogue) as bf16, zero past m and n, in the
    /// layout of `RowsA::Tiles`, and a product reading them equals one reading C as a view, bit
    /// for bit (whole and ragged blocks; the buffer starts as bf16 NaNs, so a missed padding
    /// value would show).
    #[test]
    fn emitted_tiles_are_c_in_bf16_and_feed_the_next_product() {
        if !engine_here() {
            return;
        }
        let mut rnd = uniform(5);
        for &(m, k, n, n2) in &[(64, 96, 64, 32), (50, 70, 40, 24)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let b2: Vec<f32> = (0..n * n2).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let pb = PackedB::new(row_major(&b, n), k, n).unwrap();
            let pb2 = PackedB::new(row_major(&b2, n2), n, n2).unwrap();
            let av = RowsA::View(row_major(&a, k));
            for e in [
                Epilogue::default(),
                Epilogue {
                    bias: Some(&bias[..]),
                    relu: true,
                    ..Default::default()
                },
            ] {
                let mut c = vec![0f32; m * n];
                let mut tiles = vec![0x7fc0u16; tiles_len(m, n)];
                let io = RowsIo {
                    emit: Some(&mut tiles),
                    ..Default::default()
                };
                gemm_rows(m, av, &pb, e, &mut c, io);
                let mut plain = vec![0f32; m * n];
                gemm_rows(m, av, &pb, e, &mut plain, RowsIo::default());
                assert!(c == plain, "{m}x{k}x{n}: emitting changed C");
                let np = round_up(n, 32);
                for i in 0..round_up(m, 32) {
                    for j in 0..np {
                        let at = (i / 32) * 32 * np + (j / 32) * 1024 + a_idx(i % 32, j % 32);
                        let want = if i < m && j < n {
                            bf16_bits(c[i * n + j])
                        } else {
                            0
                        };
                        assert_eq!(tiles[at], want, "{m}x{k}x{n}: tile value ({i}, {j})");
                    }
                }
                let (mut y_view, mut y_tiles) = (vec![0f32; m * n2], vec![0f32; m * n2]);
                let cv = RowsA::View(row_major(&c, n));
                let none = || RowsIo::default();
                gemm_rows(m, cv, &pb2, Epilogue::default(), &mut y_view, none());
                gemm_rows(
                    m,
                    RowsA::Tiles(&tiles),
                    &pb2,
                    Epilogue::default(),
                    &mut y_tiles,
                    none(),
                );
                assert!(
                    y_view == y_tiles,
                    "{m}x{k}x{n}x{n2}: tiles differ from the view"
                );
            }
        }
    }

    /// A mask given packed (`RowsIo::mask_rows`) masks C as its unpacked values given as
    /// `Epilogue::mask` do, bit for bit, before the ReLU and after a residual, on whole blocks
    /// (fused on the vector engine) and ragged ones (the staged epilogue); zeros, negative
    /// values and values that round to zero in bf16 included.
    #[test]
    fn packed_mask_masks_as_its_unpacked_values() {
        if !engine_here() {
            return;
        }
        let mut rnd = uniform(12);
        for &(m, k, n) in &[(64, 96, 64), (50, 70, 40), (96, 32, 100)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let res: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            // a third exactly zero, a sixth tiny (0 in bf16 only below 2^-133), the rest ±
            let h: Vec<f32> = (0..m * n)
                .map(|i| match i % 6 {
                    0 | 1 => 0.0,
                    2 => 1e-41,
                    _ => rnd(),
                })
                .collect();
            let mut hp = vec![0u16; rows_len(m, n)];
            pack_rows(row_major(&h, n), m, n, &mut hp);
            let mut hu = vec![0f32; m * n];
            unpack_rows(&hp, m, n, &mut hu);
            let pb = PackedB::new(row_major(&b, n), k, n).unwrap();
            let av = RowsA::View(row_major(&a, k));
            for (residual, relu) in [(false, false), (true, false), (true, true)] {
                let e = Epilogue {
                    residual: residual.then_some(&res[..]),
                    relu,
                    ..Default::default()
                };
                let mut want = vec![0f32; m * n];
                let unpacked = Epilogue {
                    mask: Some(&hu[..]),
                    ..e
                };
                gemm_rows(m, av, &pb, unpacked, &mut want, RowsIo::default());
                let mut got = vec![f32::NAN; m * n];
                let io = RowsIo {
                    mask_rows: Some(&hp),
                    ..Default::default()
                };
                gemm_rows(m, av, &pb, e, &mut got, io);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m}x{k}x{n} residual {residual} relu {relu}");
                assert!(want.iter().filter(|&&x| x == 0.0).count() >= m * n / 3);
            }
        }
    }

    /// gemm_rows' emitted rows are `pack_rows` of C (after its epilogue), padding included
    /// (the buffer starts as bf16 NaNs), with and without emitted tiles, on whole blocks
    /// (fused) and ragged ones (staged).
    #[test]
    fn emitted_rows_are_pack_rows_of_c() {
        if !engine_here() {
            return;
        }
        let mut rnd = uniform(21);
        for &(m, k, n) in &[(64, 96, 64), (50, 70, 40), (33, 32, 96)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let pb = PackedB::new(row_major(&b, n), k, n).unwrap();
            let av = RowsA::View(row_major(&a, k));
            let e = Epilogue {
                bias: Some(&bias[..]),
                relu: true,
                ..Default::default()
            };
            for with_tiles in [false, true] {
                let mut c = vec![0f32; m * n];
                let mut rows = vec![0x7fc0u16; rows_len(m, n)];
                let mut tiles = vec![0u16; tiles_len(m, n)];
                let io = RowsIo {
                    emit: with_tiles.then_some(&mut tiles[..]),
                    emit_rows: Some(&mut rows),
                    ..Default::default()
                };
                gemm_rows(m, av, &pb, e, &mut c, io);
                let mut want = vec![0xffffu16; rows_len(m, n)];
                pack_rows(row_major(&c, n), m, n, &mut want);
                assert!(rows == want, "{m}x{k}x{n} tiles {with_tiles}");
            }
        }
    }

    /// accumulate_packed with A = Gᵀ from G packed by rows equals it on the view
    /// Gᵀ bit for bit, fresh and accumulating, read directly (vector engine) or transposed
    /// into tiles first (as for AMX); ragged m, k and n.
    #[test]
    fn accumulate_from_packed_rows_matches_the_transposed_view() {
        if !engine_here() {
            return;
        }
        let mut rnd = uniform(31);
        for &(m, k, n) in &[(64, 64, 32), (40, 50, 70), (256, 96, 200)] {
            // G: k samples × m features; A = Gᵀ (m × k).
            let g: Vec<f32> = (0..k * m).map(|_| rnd()).collect();
            let h: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let mut gp = vec![0u16; rows_len(k, m)];
            pack_rows(row_major(&g, m), k, m, &mut gp);
            let mut hp = vec![0u16; rows_len(k, n)];
            pack_rows(row_major(&h, n), k, n, &mut hp);
            let gt = View {
                buf: &g,
                rs: 1,
                cs: m,
            };
            let len = round_up(m, 32) * round_up(n, 32);
            let start: Vec<f32> = (0..len).map(|_| rnd()).collect();
            for fresh in [true, false] {
                let mut want = start.clone();
                accumulate_packed(m, k, n, AccA::View(gt), &hp, &mut want, fresh);
                for transpose in [false, true] {
                    TRANSPOSE_ROWS_T.set(transpose);
                    let mut got = start.clone();
                    accumulate_packed(m, k, n, AccA::RowsT(&gp), &hp, &mut got, fresh);
                    TRANSPOSE_ROWS_T.set(false);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{m}x{k}x{n} fresh {fresh} transposed {transpose}");
                }
            }
        }
    }

    #[test]
    fn bf16_rounding() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(bf16_value(bf16_bits(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(bf16_value(bf16_bits(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(bf16_value(bf16_bits(-2.5)), -2.5);
    }

    /// gemm_at on X packed in pieces by pack_at_groups equals gemm on the view Xᵀ bit for bit
    /// (ragged m, k and n; several k-chunks; features not a multiple of 16).
    #[test]
    fn prepacked_transpose_matches_gemm_bit_for_bit() {
        if !engine_here() {
            return;
        }
        let mut rnd = uniform(99);
        for &(m, k, n) in &[(33, 45, 17), (64, 2100, 40), (264, 100, 50), (8, 5, 3)] {
            // X: k samples × m features; A = Xᵀ (m × k).
            let x: Vec<f32> = (0..k * m).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let old: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            let bv = row_major(&b, n);
            // Packed in two pieces: the first 64 samples (or all), then the rest.
            let mut at = vec![0xffffu16; at_len(k, m)];
            let cut = k.min(64);
            pack_at_groups(&x[..cut * m], cut, m, &mut at);
            pack_at_groups(&x[cut * m..], k - cut, m, &mut at[at_len(cut, m)..]);
            for beta in [0.0f32, 1.0] {
                let mut want = old.clone();
                let av = View {
                    buf: &x,
                    rs: 1,
                    cs: m,
                };
                assert!(gemm(m, k, n, av, bv, Epilogue::default(), beta, &mut want));
                let mut got = old.clone();
                assert!(gemm_at(m, k, n, &at, bv, beta, &mut got));
                assert!(got == want, "{m}x{k}x{n} β {beta}: differs from gemm");
            }
        }
    }

    #[test]
    fn matches_bf16_reference_on_ragged_and_transposed_shapes() {
        if !engine_here() {
            return;
        }
        let mut rnd = uniform(12345);
        // (m, k, n): ragged edges, several k-chunks, thin shapes.
        for &(m, k, n) in &[
            (1, 1, 1),
            (33, 45, 17),
            (70, 2100, 40),
            (64, 64, 64),
            (5, 300, 96),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let av = if ta {
                    View {
                        buf: &a,
                        rs: 1,
                        cs: m,
                    }
                } else {
                    row_major(&a, k)
                };
                let bv = if tb {
                    View {
                        buf: &b,
                        rs: 1,
                        cs: k,
                    }
                } else {
                    row_major(&b, n)
                };
                let want = reference(m, k, n, av, bv);
                let old: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
                let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
                let res: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
                let mask: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
                // extras: bias + residual + ReLU (a forward layer); masked: residual + the
                // ReLU-gradient mask (a backward layer's input gradient).
                for (beta, extras, masked) in [
                    (0.0f32, false, false),
                    (1.0, false, false),
                    (0.0, true, false),
                    (1.0, true, false),
                    (0.0, false, true),
                    (1.0, false, true),
                ] {
                    let mut c = old.clone();
                    let epi = Epilogue {
                        bias: extras.then_some(&bias[..]),
                        residual: (extras || masked).then_some(&res[..]),
                        mask: masked.then_some(&mask[..]),
                        relu: extras,
                    };
                    assert!(gemm(m, k, n, av, bv, epi, beta, &mut c));
                    for i in 0..m * n {
                        let mut add = if extras || masked { res[i] as f64 } else { 0.0 };
                        if extras {
                            add += bias[i % n] as f64;
                        }
                        let mut w = want[i] + add + beta as f64 * old[i] as f64;
                        if extras {
                            w = w.max(0.0);
                        }
                        if masked && mask[i] <= 0.0 {
                            w = 0.0;
                        }
                        // f32 accumulation of k products of magnitude ≤ 1/4.
                        let tol = 1e-6 * (k as f64).sqrt() + 1e-6 * w.abs();
                        assert!(
                            (c[i] as f64 - w).abs() <= tol,
                            "{m}x{k}x{n} ta {ta} tb {tb} β {beta}: C[{i}] {} vs {w}",
                            c[i]
                        );
                    }
                }
            }
        }
    }
}
