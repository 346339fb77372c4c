//! The CPU GEMM: `matrixmultiply` (with its `threading` feature) behind a safe, bounds-checked
//! wrapper.
//!
//! ## Why `matrixmultiply`
//! Measured on the 2-core AVX-512 build box (f32, GFLOP/s, best of 3, shared machine so ±20%):
//!
//! | shape m×k×n | gemm 0.19 | matrixmultiply 0.3 | faer 0.24 |
//! |---|---|---|---|
//! | 24000×256×256 (1 thr) | 84–87 | 102–143 | 84–135 |
//! | 24000×1024×1024 (1 thr) | 77–93 | 82–101 | 37–44 |
//! | 24000×1024×1024 (2 thr) | 51–72 | 71–114 | 25–37 |
//! | 2048³ (2 thr) | 52–74 | 67–112 | 37–50 |
//! | 8×1024×1024 (encoder batch) | 18–23 | 31–38 | 20–23 |
//! | 24000×256×1 (output layer) | 7–15 | 2.5–4 | 15 |
//!
//! `matrixmultiply` wins on every MLP-sized shape and takes arbitrary strides (transposes are
//! free); its weak case, a tiny output width (`n < 8`, the decoder's last layer), is handled
//! by the row-parallel loop below.
//!
//! Threads: `matrixmultiply` uses its own pool, sized by `MATMUL_NUM_THREADS` (default: the
//! number of physical cores).

use super::super::Float;
use rayon::prelude::*;

/// An element type with a fast GEMM kernel.
pub trait CpuFloat: Float {
    /// C = α·A·B + β·C on strided views; see [`gemm`] for the checked entry point.
    #[allow(clippy::too_many_arguments)]
    fn gemm_strided(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: (&[Self], isize, isize),
        b: (&[Self], isize, isize),
        beta: Self,
        c: &mut [Self],
    );

    /// C = A·B + β·C with bf16 operands on a bf16 engine ([`super::amx`]); `false` when this
    /// type or CPU has no such path (C untouched).
    #[allow(clippy::too_many_arguments)]
    fn gemm_bf16(
        _m: usize,
        _k: usize,
        _n: usize,
        _a: (&[Self], isize, isize),
        _b: (&[Self], isize, isize),
        _epi: Epilogue<'_, Self>,
        _beta: Self,
        _c: &mut [Self],
    ) -> bool {
        false
    }

    /// `out[i] = Σ_p a[i·lda + p]·b[p]` for i < out.len() (p < b.len()): one column of a
    /// short product ([`gemm`] with a short A). f32 runs it on AVX-512 F where the CPU has it.
    fn dots(a: &[Self], lda: usize, b: &[Self], out: &mut [Self]) {
        dots_plain(a, lda, b, out)
    }

    /// The slice as f32 when `Self` is f32 (the AMX row-chunked paths are f32 only).
    fn f32s(_x: &[Self]) -> Option<&[f32]> {
        None
    }

    /// The slice as f32 when `Self` is f32.
    fn f32s_mut(_x: &mut [Self]) -> Option<&mut [f32]> {
        None
    }

    /// `s[i], c[i] = sin x[i], cos x[i]` (f32: the vectorized [`super::trig::sin_cos`]).
    fn sin_cos_slice(x: &[Self], s: &mut [Self], c: &mut [Self]) {
        for ((&x, s), c) in x.iter().zip(s.iter_mut()).zip(c.iter_mut()) {
            (*s, *c) = x.sin_cos();
        }
    }

    /// `s[q], c[q] = sin k_q, cos k_q` with k_q = p₀·f₀(q) + p₁·f₁(q) + p₂·f₂(q) (summed in this
    /// order) over the length of `s`: a row of the Fourier features, frequencies by coordinate
    /// (f32: [`super::trig::features`], one vectorized pass).
    fn features_sin_cos(p: [Self; 3], f: [&[Self]; 3], s: &mut [Self], c: &mut [Self]) {
        for (q, (s, c)) in s.iter_mut().zip(c.iter_mut()).enumerate() {
            let k = p[0] * f[0][q] + p[1] * f[1][q] + p[2] * f[2][q];
            (*s, *c) = k.sin_cos();
        }
    }
}

/// Smallest offset-range check: the largest index a strided (rows, cols) view touches.
pub(super) fn extent(rows: usize, cols: usize, rs: isize, cs: isize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs as usize + (cols - 1) * cs as usize + 1
    }
}

macro_rules! impl_cpu_float {
    ($t:ty, $f:path $(, $extra:item)*) => {
        impl CpuFloat for $t {
            $($extra)*

            fn gemm_strided(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: (&[Self], isize, isize),
                b: (&[Self], isize, isize),
                beta: Self,
                c: &mut [Self],
            ) {
                assert!(extent(m, k, a.1, a.2) <= a.0.len(), "gemm: A out of bounds");
                assert!(extent(k, n, b.1, b.2) <= b.0.len(), "gemm: B out of bounds");
                assert!(m * n <= c.len(), "gemm: C out of bounds");
                // SAFETY: the asserts above bound every index the kernel reads in A and B and
                // writes in C (row-major, row stride n); the slices are live for the call and C
                // is exclusively borrowed, so nothing aliases it.
                unsafe {
                    $f(
                        m,
                        k,
                        n,
                        alpha,
                        a.0.as_ptr(),
                        a.1,
                        a.2,
                        b.0.as_ptr(),
                        b.1,
                        b.2,
                        beta,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }
        }
    };
}
impl_cpu_float!(
    f32,
    matrixmultiply::sgemm,
    fn gemm_bf16(
        m: usize,
        k: usize,
        n: usize,
        a: (&[f32], isize, isize),
        b: (&[f32], isize, isize),
        epi: Epilogue<'_, f32>,
        beta: f32,
        c: &mut [f32],
    ) -> bool {
        fn v(x: (&[f32], isize, isize)) -> super::amx::View<'_> {
            super::amx::View {
                buf: x.0,
                rs: x.1 as usize,
                cs: x.2 as usize,
            }
        }

        super::amx::gemm(m, k, n, v(a), v(b), epi, beta, c)
    },
    fn sin_cos_slice(x: &[f32], s: &mut [f32], c: &mut [f32]) {
        super::trig::sin_cos(x, s, c)
    },
    fn features_sin_cos(p: [f32; 3], f: [&[f32]; 3], s: &mut [f32], c: &mut [f32]) {
        super::trig::features(p, f, s, c)
    },
    fn dots(a: &[f32], lda: usize, b: &[f32], out: &mut [f32]) {
        let k = b.len();
        assert!(
            out.is_empty() || (out.len() - 1) * lda + k <= a.len(),
            "dots: A out of bounds"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F detected just above.
            return unsafe { dots_avx512(a, lda, b, out) };
        }
        dots_plain(a, lda, b, out)
    },
    fn f32s(x: &[f32]) -> Option<&[f32]> {
        Some(x)
    },
    fn f32s_mut(x: &mut [f32]) -> Option<&mut [f32]> {
        Some(x)
    }
);
impl_cpu_float!(f64, matrixmultiply::dgemm);

/// What `gemm_mixed` (and [`super::amx::gemm`]) apply to C after the product, in this
/// order: + bias, + residual, (+ β·C), the ReLU-gradient mask, then ReLU.
#[derive(Clone, Copy)]
pub struct Epilogue<'a, T> {
    /// A length-n row added to every row.
    pub bias: Option<&'a [T]>,
    /// An m × n row-major matrix added elementwise.
    pub residual: Option<&'a [T]>,
    /// An m × n row-major matrix: where it is ≤ 0 the value becomes 0 (the ReLU gradient
    /// `1[h > 0]` from the layer's saved output h).
    pub mask: Option<&'a [T]>,
    /// ReLU on the result.
    pub relu: bool,
}

impl<T> Default for Epilogue<'_, T> {
    fn default() -> Self {
        Self {
            bias: None,
            residual: None,
            mask: None,
            relu: false,
        }
    }
}

/// One row segment of C as it is written: `v`, the product at row i, columns j0..j0 + v.len()
/// of an m × n C, becomes epilogue(v) — + bias, + residual, + β·old, the mask, ReLU, in this
/// order. `old` (C's previous values there) is read only when β ≠ 0. The one definition of
/// [`Epilogue`]'s arithmetic: the AMX blocks, [`gemm_mixed`]'s f32 path and its short-k path
/// all call it, so every path rounds alike.
#[inline(always)]
pub(super) fn epilogue_row<T: CpuFloat>(
    e: &Epilogue<'_, T>,
    beta: T,
    i: usize,
    j0: usize,
    n: usize,
    old: &[T],
    v: &mut [T],
) {
    let (o, len) = (i * n + j0, v.len());
    if let Some(b) = e.bias {
        v.iter_mut()
            .zip(&b[j0..j0 + len])
            .for_each(|(x, &y)| *x += y);
    }
    if let Some(r) = e.residual {
        v.iter_mut().zip(&r[o..o + len]).for_each(|(x, &y)| *x += y);
    }
    if beta != T::zero() {
        v.iter_mut()
            .zip(&old[..len])
            .for_each(|(x, &y)| *x += beta * y);
    }
    if let Some(h) = e.mask {
        // A select rather than a branch, so that the loop vectorizes.
        v.iter_mut().zip(&h[o..o + len]).for_each(|(x, &y)| {
            *x = if y <= T::zero() { T::zero() } else { *x };
        });
    }
    if e.relu {
        v.iter_mut().for_each(|x| *x = x.max(T::zero()));
    }
}

/// C = epilogue(op(A)·op(B) + β·C): in bf16 ([`super::amx`]) when `bf16` is set, the shape is
/// worth it (at least 32 rows and 16 columns of C, 32 of k) and the CPU has a bf16 engine (the
/// epilogue then applied as C is written); else [`gemm`] in `T` with the bias broadcast into C
/// first and the residual and ReLU as passes after.
///
/// # Panics
/// If a bias is given with β ≠ 0, or the bias or residual is too short.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_mixed<T: CpuFloat>(
    bf16: bool,
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    a_cols: usize,
    ta: bool,
    b: &[T],
    b_cols: usize,
    tb: bool,
    epi: Epilogue<'_, T>,
    beta: T,
    c: &mut [T],
) {
    if bf16 && m >= 32 && n >= 16 && k >= 32 {
        let (sa, sb) = (strides(a_cols, ta), strides(b_cols, tb));
        if T::gemm_bf16(m, k, n, (a, sa.0, sa.1), (b, sb.0, sb.1), epi, beta, c) {
            return;
        }
    }
    let c = &mut c[..m * n];
    if k <= 16 && m >= 64 && !ta && !tb {
        // A short k (the output layer's input gradient, k = 2): the product and the epilogue
        // in one pass over C, a block of rows per task.
        thin_k(m, k, n, a, a_cols, b, b_cols, epi, beta, c);
        return;
    }
    let beta = match epi.bias {
        Some(bias) => {
            assert!(beta == T::zero(), "gemm_mixed: bias with β ≠ 0");
            let bias = &bias[..n];
            c.par_chunks_mut(n * 64)
                .for_each(|rows| rows.chunks_mut(n).for_each(|r| r.copy_from_slice(bias)));
            T::one()
        }
        None => beta,
    };
    gemm(m, k, n, T::one(), a, a_cols, ta, b, b_cols, tb, beta, c);
    if epi.residual.is_some() || epi.mask.is_some() || epi.relu {
        // The bias is in C already and β was the GEMM's: the remaining terms, row by row.
        let rest = Epilogue { bias: None, ..epi };
        c.par_chunks_mut(n * 64).enumerate().for_each(|(blk, cb)| {
            for (r, crow) in cb.chunks_mut(n).enumerate() {
                epilogue_row(&rest, T::zero(), blk * 64 + r, 0, n, &[], crow);
            }
        });
    }
}

/// C = epilogue(A·B + β·C) for row-major A (m × k, row stride `lda`) and B (k × n, row stride
/// `ldb`) with k small: per row of C the k rows of B are added in order (p = 0, 1, …), then
/// [`epilogue_row`].
#[allow(clippy::too_many_arguments)]
fn thin_k<T: CpuFloat>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    epi: Epilogue<'_, T>,
    beta: T,
    c: &mut [T],
) {
    assert!(
        m == 0 || k == 0 || (m - 1) * lda + k <= a.len(),
        "gemm: A out of bounds"
    );
    assert!(
        k == 0 || (k - 1) * ldb + n <= b.len(),
        "gemm: B out of bounds"
    );
    c[..m * n]
        .par_chunks_mut(n * 64)
        .enumerate()
        .for_each(|(blk, cb)| {
            let mut v = vec![T::zero(); n];
            for (r, crow) in cb.chunks_mut(n).enumerate() {
                let i = blk * 64 + r;
                v.iter_mut().for_each(|x| *x = T::zero());
                for p in 0..k {
                    let aip = a[i * lda + p];
                    v.iter_mut()
                        .zip(&b[p * ldb..p * ldb + n])
                        .for_each(|(x, &y)| *x += aip * y);
                }
                epilogue_row(&epi, beta, i, 0, n, crow, &mut v);
                crow.copy_from_slice(&v);
            }
        });
}

/// (row stride, col stride) of op(X) for a row-major X with `cols` columns.
fn strides(cols: usize, t: bool) -> (isize, isize) {
    if t {
        (1, cols as isize)
    } else {
        (cols as isize, 1)
    }
}

/// C (m, n) = α·op(A)·op(B) + β·C for row-major A (stored `a_rows × a_cols`), B likewise.
/// The caller has checked the shapes.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: CpuFloat>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    a_cols: usize,
    ta: bool,
    b: &[T],
    b_cols: usize,
    tb: bool,
    beta: T,
    c: &mut [T],
) {
    let (rsa, csa) = strides(a_cols, ta);
    let (rsb, csb) = strides(b_cols, tb);
    let (ru, cu) = (|s: isize| s as usize, |s: isize| s as usize);
    if n < 8 && m >= 64 && csa == 1 && rsb == 1 {
        // Thin output (the decoder's last layer, x·Wᵀ): one contiguous dot product per
        // element, rows in parallel. matrixmultiply pads n to a full 8/16-wide panel here and
        // runs at a few GFLOP/s.
        c[..m * n]
            .par_chunks_mut(n * 64)
            .enumerate()
            .for_each(|(blk, cb)| {
                for (r, crow) in cb.chunks_mut(n).enumerate() {
                    let i = blk * 64 + r;
                    let arow = &a[i * ru(rsa)..i * ru(rsa) + k];
                    for (j, cij) in crow.iter_mut().enumerate() {
                        let s = dot(arow, &b[j * cu(csb)..j * cu(csb) + k]);
                        *cij = if beta == T::zero() {
                            alpha * s
                        } else {
                            alpha * s + beta * *cij
                        };
                    }
                }
            });
        return;
    }
    if m <= SHORT_M && n >= 16 && k >= 64 && csa == 1 && rsb == 1 {
        short_m(m, k, n, alpha, a, ru(rsa), b, cu(csb), beta, c);
        return;
    }
    if m < 8 && n >= 64 && k >= 256 && csb == 1 {
        // Thin left operand (the last layer's dW = gᵀ·h): C[i, :] += A[i, p]·B[p, :] with
        // contiguous rows of B, partial sums over blocks of k in parallel.
        const KB: usize = 1024;
        let parts = (0..k.div_ceil(KB))
            .into_par_iter()
            .map(|blk| {
                let mut acc = vec![T::zero(); m * n];
                for p in blk * KB..((blk + 1) * KB).min(k) {
                    let brow = &b[p * ru(rsb)..p * ru(rsb) + n];
                    for i in 0..m {
                        let aip = a[i * ru(rsa) + p * cu(csa)];
                        acc[i * n..(i + 1) * n]
                            .iter_mut()
                            .zip(brow)
                            .for_each(|(x, &y)| *x += aip * y);
                    }
                }
                acc
            })
            .collect::<Vec<_>>();
        // Blocks added in order: deterministic whatever rayon's split (unlike `reduce`).
        let mut part = vec![T::zero(); m * n];
        for blk in &parts {
            part.iter_mut().zip(blk).for_each(|(u, &v)| *u += v);
        }
        for (ci, pi) in c[..m * n].iter_mut().zip(part) {
            *ci = if beta == T::zero() {
                alpha * pi
            } else {
                alpha * pi + beta * *ci
            };
        }
        return;
    }
    T::gemm_strided(m, k, n, alpha, (a, rsa, csa), (b, rsb, csb), beta, c);
}

/// Most rows of A for which [`gemm`] takes [`short_m`].
const SHORT_M: usize = 16;

/// C (m × n) = α·A·B + β·C for a short A (m rows of stride `lda`, contiguous) and B given by
/// its columns (column j at `b[j·ldb..]`, contiguous: B = Wᵀ of a row-major W): each element
/// one dot product ([`CpuFloat::dots`]), blocks of columns in parallel. The encoder's layers at
/// batch size (x·Wᵀ with 8 rows): matrixmultiply would pack all of W, on one thread, for a few
/// rows of C.
#[allow(clippy::too_many_arguments)]
fn short_m<T: CpuFloat>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    beta: T,
    c: &mut [T],
) {
    assert!(
        m == 0 || (m - 1) * lda + k <= a.len(),
        "gemm: A out of bounds"
    );
    assert!(
        n == 0 || (n - 1) * ldb + k <= b.len(),
        "gemm: B out of bounds"
    );
    assert!(m * n <= c.len(), "gemm: C out of bounds");
    const JB: usize = 16;
    // C's columns, one after another (n × m)
    let mut ct = vec![T::zero(); n * m];
    ct.par_chunks_mut(m * JB).enumerate().for_each(|(blk, cs)| {
        for (jj, col) in cs.chunks_mut(m).enumerate() {
            let j = blk * JB + jj;
            T::dots(a, lda, &b[j * ldb..j * ldb + k], col);
        }
    });
    for (i, row) in c[..m * n].chunks_exact_mut(n).enumerate() {
        for (j, cij) in row.iter_mut().enumerate() {
            let s = ct[j * m + i];
            *cij = if beta == T::zero() {
                alpha * s
            } else {
                alpha * s + beta * *cij
            };
        }
    }
}

/// [`CpuFloat::dots`] as one [`dot`] per row (any type, any CPU).
fn dots_plain<T: CpuFloat>(a: &[T], lda: usize, b: &[T], out: &mut [T]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = dot(&a[i * lda..i * lda + b.len()], b);
    }
}

/// [`CpuFloat::dots`] for f32 on AVX-512 F: four rows at a time share each load of `b`, 16
/// lanes per row (lane l sums p ≡ l mod 16), then the lanes and the tail.
///
/// # Safety
/// AVX-512 F; `a` holds every row's k = b.len() elements (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dots_avx512(a: &[f32], lda: usize, b: &[f32], out: &mut [f32]) {
    #[inline(always)]
    fn rows<const R: usize>(a: &[f32], lda: usize, b: &[f32], out: &mut [f32]) {
        let k = b.len();
        let kb = k / 16 * 16;
        let mut acc = [[0f32; 16]; R];
        for p in (0..kb).step_by(16) {
            let bv: &[f32; 16] = b[p..p + 16].try_into().expect("16 wide");
            for (r, ar) in acc.iter_mut().enumerate() {
                let av: &[f32; 16] = a[r * lda + p..][..16].try_into().expect("16 wide");
                for l in 0..16 {
                    ar[l] += av[l] * bv[l];
                }
            }
        }
        for (r, o) in out.iter_mut().enumerate() {
            let mut s = acc[r].iter().sum::<f32>();
            for p in kb..k {
                s += a[r * lda + p] * b[p];
            }
            *o = s;
        }
    }
    let m = out.len();
    let mut i = 0;
    while i + 4 <= m {
        rows::<4>(&a[i * lda..], lda, b, &mut out[i..i + 4]);
        i += 4;
    }
    while i < m {
        rows::<1>(&a[i * lda..], lda, b, &mut out[i..i + 1]);
        i += 1;
    }
}

/// Σ x_i y_i with 8 independent accumulators (vectorizes without fast-math).
#[inline]
pub(super) fn dot<T: CpuFloat>(x: &[T], y: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (u, v) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += u[l] * v[l];
        }
    }
    let mut s = acc.iter().copied().sum::<T>();
    for (u, v) in xr.iter().zip(yr) {
        s += *u * *v;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short-A path (one dot product per element, B by columns) against a direct f64
    /// evaluation: row counts around the 4-row blocks, a k with a tail past 16 lanes, α and β,
    /// in f32 (AVX-512 where present) and f64 (the generic dots).
    #[test]
    fn short_m_matches_direct_evaluation() {
        fn check<T: CpuFloat>(tol: f64) {
            let (n, k, lda, ldb) = (37, 203, 211, 207);
            let val = |i: usize, s: f64| ((i as f64) * s).sin();
            let a: Vec<T> = (0..SHORT_M * lda).map(|i| T::c(val(i, 0.37))).collect();
            let b: Vec<T> = (0..n * ldb).map(|i| T::c(val(i, 0.53))).collect();
            for m in [1, 3, 4, 5, 8, SHORT_M] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                    let old: Vec<T> = (0..m * n).map(|i| T::c(val(i, 0.71))).collect();
                    let mut c = old.clone();
                    // through gemm: A row-major (stride lda), B = Wᵀ of W (n × ldb)
                    gemm(
                        m,
                        k,
                        n,
                        T::c(alpha),
                        &a,
                        lda,
                        false,
                        &b,
                        ldb,
                        true,
                        T::c(beta),
                        &mut c,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let s: f64 = (0..k)
                                .map(|p| a[i * lda + p].f64() * b[j * ldb + p].f64())
                                .sum();
                            let want = alpha * s + beta * old[i * n + j].f64();
                            let got = c[i * n + j].f64();
                            assert!(
                                (got - want).abs() <= tol * (1.0 + want.abs()),
                                "m {m} α {alpha} β {beta} ({i}, {j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
        check::<f32>(1e-5);
        check::<f64>(1e-12);
    }

    /// The short-k path (product and epilogue in one pass) against a direct f64 evaluation,
    /// for every epilogue term, with and without β.
    #[test]
    fn thin_k_matches_direct_evaluation() {
        let (m, n) = (70, 33);
        let val = |i: usize, s: f64| ((i as f64) * s).sin() as f32;
        for k in [1, 2, 5] {
            let a: Vec<f32> = (0..m * k).map(|i| val(i, 0.37)).collect();
            let b: Vec<f32> = (0..k * n).map(|i| val(i, 0.53)).collect();
            let bias: Vec<f32> = (0..n).map(|i| val(i, 1.3)).collect();
            let res: Vec<f32> = (0..m * n).map(|i| val(i, 0.71)).collect();
            let mask: Vec<f32> = (0..m * n).map(|i| val(i, 0.19)).collect();
            let old: Vec<f32> = (0..m * n).map(|i| val(i, 0.43)).collect();
            for (with_bias, with_res, with_mask, relu, beta) in [
                (false, false, false, false, 0.0f32),
                (true, false, false, true, 0.0),
                (false, true, true, false, 0.0),
                (false, false, false, false, 1.0),
                (true, true, true, true, 0.5),
            ] {
                let epi = Epilogue {
                    bias: with_bias.then_some(&bias[..]),
                    residual: with_res.then_some(&res[..]),
                    mask: with_mask.then_some(&mask[..]),
                    relu,
                };
                let mut c = old.clone();
                thin_k(m, k, n, &a, k, &b, n, epi, beta, &mut c);
                for i in 0..m {
                    for j in 0..n {
                        let mut w: f64 = (0..k)
                            .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                            .sum();
                        if with_bias {
                            w += bias[j] as f64;
                        }
                        if with_res {
                            w += res[i * n + j] as f64;
                        }
                        w += beta as f64 * old[i * n + j] as f64;
                        if with_mask && mask[i * n + j] <= 0.0 {
                            w = 0.0;
                        }
                        if relu {
                            w = w.max(0.0);
                        }
                        let got = c[i * n + j] as f64;
                        assert!((got - w).abs() < 1e-5, "k {k} ({i}, {j}): {got} vs {w}");
                    }
                }
            }
        }
        // gemm_mixed takes this path for such shapes (and gives the same values).
        let (k, a, b) = (2, vec![0.5f32; m * 2], vec![0.25f32; 2 * n]);
        let mut c1 = vec![0f32; m * n];
        gemm_mixed(
            false,
            m,
            k,
            n,
            &a,
            k,
            false,
            &b,
            n,
            false,
            Epilogue::default(),
            0.0,
            &mut c1,
        );
        assert!(c1.iter().all(|&x| x == 0.25));
    }
}
