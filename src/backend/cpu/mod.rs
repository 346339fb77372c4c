//! The CPU backend: the reference implementation of every primitive, generic over `f32`
//! (production) and `f64` (gradient checks). Elementwise and row-wise loops run on rayon in
//! chunks; GEMMs go to [`gemm`] (`matrixmultiply`), in mixed precision to [`amx`] (bf16 on
//! AMX tiles or AVX-512 BF16 vectors). The coordinate network's fused forward/backward is
//! `mlp` (one parallel GEMM per layer), or, for ReLU networks up to 256 wide in mixed
//! precision, `mlp_rows` (row chunks through every layer, L2-resident).

pub mod amx;
pub mod attention;
mod conv;
pub mod gemm;
mod mlp;
mod mlp_rows;
pub mod trig;

use super::{
    decode, AdamCoeffs, Backend, BinaryOp, Conv2dShape, DecodeOutput, DecodeSaved, DecodeSpec,
    MatRef, MlpLayerGrad, MlpOutput, MlpSaved, MlpWeights, UnaryOp,
};
use crate::{Error, Result};
use gemm::CpuFloat;
use rayon::prelude::*;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// Elements per rayon task for elementwise loops (below this, loops run on the caller).
const CHUNK: usize = 1 << 14;

/// The CPU backend over element type `T` (`f32` or `f64`). Cloning shares the buffer pool.
#[derive(Clone, Default)]
pub struct CpuBackend<T> {
    /// Recycled buffers by length: training loops allocate the same sizes every step.
    pool: Arc<Mutex<HashMap<usize, Vec<Vec<T>>>>>,
    /// Run the coordinate network's large GEMMs in bf16 (mixed precision, [`amx::Engine`]).
    bf16: bool,
    _t: PhantomData<T>,
}

impl<T: CpuFloat> CpuBackend<T> {
    /// A backend with an empty buffer pool.
    pub fn new() -> Self {
        Self {
            pool: Arc::new(Mutex::new(HashMap::new())),
            bf16: false,
            _t: PhantomData,
        }
    }

    /// Mixed precision (the reference's `--amp`): the MLP forward/backward GEMMs take bf16
    /// operands with f32 sums on AMX tiles or AVX-512 BF16 vectors, when `on`, `T = f32` and
    /// the CPU has one of them ([`amx::available`]); weights, gradients and everything else
    /// stay in `T`.
    pub fn with_bf16_gemm(mut self, on: bool) -> Self {
        self.bf16 = on;
        self
    }

    /// Whether the MLP GEMMs will actually run in bf16 (requested, f32, a bf16 engine present).
    pub fn bf16_gemm(&self) -> bool {
        self.bf16 && std::mem::size_of::<T>() == 4 && amx::available()
    }
}

/// `Err(Shape)` unless `got == expected`.
pub(crate) fn check(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Shape {
            what: what.to_string(),
            expected: format!("{expected} elements"),
            got: format!("{got}"),
        })
    }
}

/// `Err(Shape)` unless `d > 0` divides `len`; returns the row count.
fn rows(what: &str, len: usize, d: usize) -> Result<usize> {
    if d == 0 || !len.is_multiple_of(d) {
        return Err(Error::Shape {
            what: what.to_string(),
            expected: format!("a multiple of the row width {d}"),
            got: format!("{len} elements"),
        });
    }
    Ok(len / d)
}

/// Run `f(offset, chunk)` over `y` in parallel chunks of [`CHUNK`] elements.
fn par_chunks<T: Send>(y: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if y.len() <= CHUNK {
        f(0, y)
    } else {
        y.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, c)| f(i * CHUNK, c));
    }
}

/// Frequencies per block of [`Backend::fourier_features`]' sin/cos evaluation.
const FF_BLOCK: usize = 64;

/// k[q] = p·F_q (the first 3 coordinates of p, rows of F from `f`).
#[inline]
fn ff_args<T: CpuFloat>(p: &[T], f: &[T], k: &mut [T]) {
    for (q, kq) in k.iter_mut().enumerate() {
        let fq = &f[3 * q..3 * q + 3];
        *kq = p[0] * fq[0] + p[1] * fq[1] + p[2] * fq[2];
    }
}

/// Run `f(row_index, row)` over the rows of y (·, d) in parallel.
fn par_rows<T: Send>(y: &mut [T], d: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let per = (CHUNK / d.max(1)).max(1);
    if y.len() <= CHUNK {
        y.chunks_mut(d).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        y.par_chunks_mut(per * d).enumerate().for_each(|(b, blk)| {
            blk.chunks_mut(d)
                .enumerate()
                .for_each(|(i, r)| f(b * per + i, r))
        });
    }
}

/// f(x) for one element.
pub(crate) fn unary_value<T: CpuFloat>(op: UnaryOp, x: T) -> T {
    let one = T::one();
    match op {
        UnaryOp::Relu => x.max(T::zero()),
        UnaryOp::LeakyRelu(a) => {
            if x > T::zero() {
                x
            } else {
                T::c(a) * x
            }
        }
        UnaryOp::Silu => x / (one + (-x).exp()),
        UnaryOp::Gelu => T::c(0.5) * x * (one + (x * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => one / (one + (-x).exp()),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Softplus => {
            if x > T::c(20.0) {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        UnaryOp::Square => x * x,
    }
}

/// f'(x) for one element, given x and y = f(x). Ops whose derivative is a function of y read
/// only y (the fused MLP passes y for x when it did not store the pre-activation).
pub(crate) fn unary_grad<T: CpuFloat>(op: UnaryOp, x: T, y: T) -> T {
    let one = T::one();
    match op {
        // d/dx relu(x) = 1[x>0] = 1[y>0]
        UnaryOp::Relu => {
            if y > T::zero() {
                one
            } else {
                T::zero()
            }
        }
        // d/dx leaky(x) = 1 if x>0 else α (y>0 ⇔ x>0 for α>0)
        UnaryOp::LeakyRelu(a) => {
            if y > T::zero() {
                one
            } else {
                T::c(a)
            }
        }
        // d/dx xσ(x) = σ(x)(1 + x(1−σ(x)))
        UnaryOp::Silu => {
            let s = one / (one + (-x).exp());
            s * (one + x * (one - s))
        }
        // d/dx xΦ(x) = Φ(x) + xφ(x)
        UnaryOp::Gelu => {
            let cdf = T::c(0.5) * (one + (x * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let pdf = (T::c(-0.5) * x * x).exp() * T::c(0.398_942_280_401_432_7);
            cdf + x * pdf
        }
        // d/dx tanh = 1 − y²
        UnaryOp::Tanh => one - y * y,
        // d/dx σ = y(1 − y)
        UnaryOp::Sigmoid => y * (one - y),
        // d/dx sin = cos
        UnaryOp::Sin => x.cos(),
        // d/dx cos = −sin
        UnaryOp::Cos => -x.sin(),
        // d/dx e^x = y
        UnaryOp::Exp => y,
        // d/dx ln x = 1/x
        UnaryOp::Log => one / x,
        // d/dx ln(1+e^x) = σ(x) (1 above the linear threshold, like torch)
        UnaryOp::Softplus => {
            if x > T::c(20.0) {
                one
            } else {
                one / (one + (-x).exp())
            }
        }
        // d/dx x² = 2x
        UnaryOp::Square => T::c(2.0) * x,
    }
}

fn scalar<T: CpuFloat>(what: &str, x: &[T]) -> Result<T> {
    check(what, 1, x.len())?;
    Ok(x[0])
}

impl<T: CpuFloat> Backend for CpuBackend<T> {
    type Elem = T;
    type Buf = Vec<T>;

    fn name(&self) -> String {
        format!("cpu-{}", T::NAME)
    }

    fn alloc(&self, n: usize) -> Result<Vec<T>> {
        let reused = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&n).and_then(|v| v.pop()));
        Ok(reused.unwrap_or_else(|| vec![T::zero(); n]))
    }

    fn zeros(&self, n: usize) -> Result<Vec<T>> {
        let mut v = self.alloc(n)?;
        par_chunks(&mut v, |_, c| c.fill(T::zero()));
        Ok(v)
    }

    fn upload(&self, x: &[T]) -> Result<Vec<T>> {
        let mut v = self.alloc(x.len())?;
        v.copy_from_slice(x);
        Ok(v)
    }

    fn to_vec(&self, x: &Vec<T>) -> Result<Vec<T>> {
        Ok(x.clone())
    }

    fn len(&self, x: &Vec<T>) -> usize {
        x.len()
    }

    fn copy(&self, x: &Vec<T>) -> Result<Vec<T>> {
        self.upload(x)
    }

    fn recycle(&self, x: Vec<T>) {
        // Only large buffers are worth keeping; small ones are cheap to allocate.
        if x.len() >= 1024 {
            if let Ok(mut p) = self.pool.lock() {
                let slot = p.entry(x.len()).or_default();
                if slot.len() < 16 {
                    slot.push(x);
                }
            }
        }
    }

    fn axpby(&self, alpha: f64, x: &Vec<T>, beta: f64, y: &mut Vec<T>) -> Result<()> {
        check("axpby: y", x.len(), y.len())?;
        let (a, b) = (T::c(alpha), T::c(beta));
        par_chunks(y, |o, c| {
            for (yi, &xi) in c.iter_mut().zip(&x[o..]) {
                *yi = a * xi + b * *yi;
            }
        });
        Ok(())
    }

    fn gemm(
        &self,
        alpha: f64,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        beta: f64,
        c: &mut Vec<T>,
    ) -> Result<()> {
        check("gemm: A", a.rows * a.cols, a.buf.len())?;
        check("gemm: B", b.rows * b.cols, b.buf.len())?;
        let (m, k) = if a.trans {
            (a.cols, a.rows)
        } else {
            (a.rows, a.cols)
        };
        let (k2, n) = if b.trans {
            (b.cols, b.rows)
        } else {
            (b.rows, b.cols)
        };
        check("gemm: inner dimension of op(B)", k, k2)?;
        check("gemm: C", m * n, c.len())?;
        gemm::gemm(
            m,
            k,
            n,
            T::c(alpha),
            a.buf,
            a.cols,
            a.trans,
            b.buf,
            b.cols,
            b.trans,
            T::c(beta),
            c,
        );
        Ok(())
    }

    fn add_bias(&self, bias: &Vec<T>, d: usize, y: &mut Vec<T>) -> Result<()> {
        check("add_bias: bias", d, bias.len())?;
        rows("add_bias: y", y.len(), d)?;
        par_rows(y, d, |_, r| {
            for (v, &b) in r.iter_mut().zip(bias) {
                *v += b;
            }
        });
        Ok(())
    }

    fn broadcast_rows(&self, bias: &Vec<T>, d: usize, y: &mut Vec<T>) -> Result<()> {
        check("broadcast_rows: x", d, bias.len())?;
        rows("broadcast_rows: y", y.len(), d)?;
        par_rows(y, d, |_, r| r.copy_from_slice(bias));
        Ok(())
    }

    fn broadcast_cols(&self, x: &Vec<T>, d: usize, y: &mut Vec<T>, acc: bool) -> Result<()> {
        let n = rows("broadcast_cols: y", y.len(), d)?;
        check("broadcast_cols: x", n, x.len())?;
        par_rows(y, d, |i, r| {
            if acc {
                r.iter_mut().for_each(|v| *v += x[i]);
            } else {
                r.fill(x[i]);
            }
        });
        Ok(())
    }

    fn sum_rows(&self, x: &Vec<T>, d: usize, scale: f64, y: &mut Vec<T>, acc: bool) -> Result<()> {
        rows("sum_rows: x", x.len(), d)?;
        check("sum_rows: y", d, y.len())?;
        let per = (CHUNK / d).max(1) * d;
        // Partial sums per block, added in block order: the result does not depend on how
        // rayon splits the work (a parallel `reduce` would associate them differently per run).
        let parts: Vec<Vec<T>> = x
            .par_chunks(per)
            .map(|blk| {
                let mut s = vec![T::zero(); d];
                for r in blk.chunks(d) {
                    for (si, &v) in s.iter_mut().zip(r) {
                        *si += v;
                    }
                }
                s
            })
            .collect();
        let mut total = vec![T::zero(); d];
        for p in &parts {
            total.iter_mut().zip(p).for_each(|(x, y)| *x += *y);
        }
        let s = T::c(scale);
        for (yi, t) in y.iter_mut().zip(total) {
            *yi = if acc { *yi + s * t } else { s * t };
        }
        Ok(())
    }

    fn sum_cols(&self, x: &Vec<T>, d: usize, scale: f64, y: &mut Vec<T>, acc: bool) -> Result<()> {
        let n = rows("sum_cols: x", x.len(), d)?;
        check("sum_cols: y", n, y.len())?;
        let s = T::c(scale);
        par_rows(y, 1, |i, yi| {
            let t = x[i * d..(i + 1) * d].iter().copied().sum::<T>() * s;
            yi[0] = if acc { yi[0] + t } else { t };
        });
        Ok(())
    }

    fn unary(&self, op: UnaryOp, x: &Vec<T>, y: &mut Vec<T>) -> Result<()> {
        check("unary: y", x.len(), y.len())?;
        par_chunks(y, |o, c| {
            let x = &x[o..o + c.len()];
            match op {
                // Monomorphic loop for the common activation (vectorizes).
                UnaryOp::Relu => c
                    .iter_mut()
                    .zip(x)
                    .for_each(|(a, &b)| *a = b.max(T::zero())),
                _ => c
                    .iter_mut()
                    .zip(x)
                    .for_each(|(a, &b)| *a = unary_value(op, b)),
            }
        });
        Ok(())
    }

    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &Vec<T>,
        y: &Vec<T>,
        dy: &Vec<T>,
        dx: &mut Vec<T>,
    ) -> Result<()> {
        check("unary_backward: y", x.len(), y.len())?;
        check("unary_backward: dy", x.len(), dy.len())?;
        check("unary_backward: dx", x.len(), dx.len())?;
        par_chunks(dx, |o, c| {
            for (i, g) in c.iter_mut().enumerate() {
                *g += unary_grad(op, x[o + i], y[o + i]) * dy[o + i];
            }
        });
        Ok(())
    }

    fn binary(&self, op: BinaryOp, a: &Vec<T>, b: &Vec<T>, y: &mut Vec<T>) -> Result<()> {
        check("binary: b", a.len(), b.len())?;
        check("binary: y", a.len(), y.len())?;
        par_chunks(y, |o, c| {
            for (i, yi) in c.iter_mut().enumerate() {
                let (u, v) = (a[o + i], b[o + i]);
                *yi = match op {
                    BinaryOp::Add => u + v,
                    BinaryOp::Sub => u - v,
                    BinaryOp::Mul => u * v,
                    BinaryOp::Div => u / v,
                };
            }
        });
        Ok(())
    }

    fn binary_backward(
        &self,
        op: BinaryOp,
        a: &Vec<T>,
        b: &Vec<T>,
        dy: &Vec<T>,
        da: Option<&mut Vec<T>>,
        db: Option<&mut Vec<T>>,
    ) -> Result<()> {
        check("binary_backward: b", a.len(), b.len())?;
        check("binary_backward: dy", a.len(), dy.len())?;
        if let Some(da) = da {
            check("binary_backward: da", a.len(), da.len())?;
            par_chunks(da, |o, c| {
                for (i, g) in c.iter_mut().enumerate() {
                    let (v, d) = (b[o + i], dy[o + i]);
                    // ∂(a+b)/∂a = ∂(a−b)/∂a = 1, ∂(ab)/∂a = b, ∂(a/b)/∂a = 1/b
                    *g += match op {
                        BinaryOp::Add | BinaryOp::Sub => d,
                        BinaryOp::Mul => d * v,
                        BinaryOp::Div => d / v,
                    };
                }
            });
        }
        if let Some(db) = db {
            check("binary_backward: db", a.len(), db.len())?;
            par_chunks(db, |o, c| {
                for (i, g) in c.iter_mut().enumerate() {
                    let (u, v, d) = (a[o + i], b[o + i], dy[o + i]);
                    // ∂(a+b)/∂b = 1, ∂(a−b)/∂b = −1, ∂(ab)/∂b = a, ∂(a/b)/∂b = −a/b²
                    *g += match op {
                        BinaryOp::Add => d,
                        BinaryOp::Sub => -d,
                        BinaryOp::Mul => d * u,
                        BinaryOp::Div => -d * u / (v * v),
                    };
                }
            });
        }
        Ok(())
    }

    fn affine(&self, x: &Vec<T>, mul: f64, add: f64, y: &mut Vec<T>) -> Result<()> {
        check("affine: y", x.len(), y.len())?;
        let (m, a) = (T::c(mul), T::c(add));
        par_chunks(y, |o, c| {
            for (yi, &xi) in c.iter_mut().zip(&x[o..]) {
                *yi = m * xi + a;
            }
        });
        Ok(())
    }

    fn copy_cols(
        &self,
        src: &Vec<T>,
        src_cols: usize,
        src_off: usize,
        dst: &mut Vec<T>,
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
        par_rows(dst, dst_cols, |i, r| {
            let s = &src[i * src_cols + src_off..i * src_cols + src_off + width];
            let d = &mut r[dst_off..dst_off + width];
            if acc {
                d.iter_mut().zip(s).for_each(|(a, &b)| *a += b);
            } else {
                d.copy_from_slice(s);
            }
        });
        Ok(())
    }

    fn gather_rows(&self, src: &Vec<T>, d: usize, idx: &[u32], dst: &mut Vec<T>) -> Result<()> {
        let m = rows("gather_rows: src", src.len(), d)?;
        check("gather_rows: dst", idx.len() * d, dst.len())?;
        if let Some(&bad) = idx.iter().find(|&&i| i as usize >= m) {
            return Err(Error::Shape {
                what: "gather_rows: index".into(),
                expected: format!("< {m} rows"),
                got: bad.to_string(),
            });
        }
        par_rows(dst, d, |i, r| {
            let j = idx[i] as usize;
            r.copy_from_slice(&src[j * d..(j + 1) * d]);
        });
        Ok(())
    }

    fn scatter_add_rows(
        &self,
        src: &Vec<T>,
        d: usize,
        idx: &[u32],
        dst: &mut Vec<T>,
    ) -> Result<()> {
        let m = rows("scatter_add_rows: dst", dst.len(), d)?;
        check("scatter_add_rows: src", idx.len() * d, src.len())?;
        // Sequential: indices may repeat.
        for (i, &j) in idx.iter().enumerate() {
            let j = j as usize;
            if j >= m {
                return Err(Error::Shape {
                    what: "scatter_add_rows: index".into(),
                    expected: format!("< {m} rows"),
                    got: j.to_string(),
                });
            }
            dst[j * d..(j + 1) * d]
                .iter_mut()
                .zip(&src[i * d..(i + 1) * d])
                .for_each(|(a, &b)| *a += b);
        }
        Ok(())
    }

    fn layer_norm(
        &self,
        x: &Vec<T>,
        gamma: &Vec<T>,
        beta: &Vec<T>,
        d: usize,
        eps: f64,
        y: &mut Vec<T>,
        mean: &mut Vec<T>,
        rstd: &mut Vec<T>,
    ) -> Result<()> {
        let n = rows("layer_norm: x", x.len(), d)?;
        check("layer_norm: gamma", d, gamma.len())?;
        check("layer_norm: beta", d, beta.len())?;
        check("layer_norm: y", x.len(), y.len())?;
        check("layer_norm: mean", n, mean.len())?;
        check("layer_norm: rstd", n, rstd.len())?;
        let dn = T::c(d as f64);
        for i in 0..n {
            let r = &x[i * d..(i + 1) * d];
            let mu = r.iter().copied().sum::<T>() / dn;
            let var = r.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / dn;
            mean[i] = mu;
            rstd[i] = T::one() / (var + T::c(eps)).sqrt();
        }
        par_rows(y, d, |i, r| {
            let xr = &x[i * d..(i + 1) * d];
            for j in 0..d {
                r[j] = (xr[j] - mean[i]) * rstd[i] * gamma[j] + beta[j];
            }
        });
        Ok(())
    }

    fn layer_norm_backward(
        &self,
        x: &Vec<T>,
        gamma: &Vec<T>,
        mean: &Vec<T>,
        rstd: &Vec<T>,
        dy: &Vec<T>,
        d: usize,
        dx: Option<&mut Vec<T>>,
        dgamma: Option<&mut Vec<T>>,
        dbeta: Option<&mut Vec<T>>,
    ) -> Result<()> {
        let n = rows("layer_norm_backward: x", x.len(), d)?;
        check("layer_norm_backward: dy", x.len(), dy.len())?;
        check("layer_norm_backward: mean", n, mean.len())?;
        check("layer_norm_backward: rstd", n, rstd.len())?;
        let xhat = |i: usize, j: usize| (x[i * d + j] - mean[i]) * rstd[i];
        // dγ_j = Σ_i dy_ij x̂_ij, dβ_j = Σ_i dy_ij
        if let Some(dg) = dgamma {
            check("layer_norm_backward: dgamma", d, dg.len())?;
            for i in 0..n {
                for j in 0..d {
                    dg[j] += dy[i * d + j] * xhat(i, j);
                }
            }
        }
        if let Some(db) = dbeta {
            check("layer_norm_backward: dbeta", d, db.len())?;
            for i in 0..n {
                for j in 0..d {
                    db[j] += dy[i * d + j];
                }
            }
        }
        // with g = dy⊙γ: dx = rstd·(g − mean(g) − x̂·mean(g⊙x̂))
        if let Some(dx) = dx {
            check("layer_norm_backward: dx", x.len(), dx.len())?;
            let dn = T::c(d as f64);
            par_rows(dx, d, |i, r| {
                let mut mg = T::zero();
                let mut mgx = T::zero();
                for j in 0..d {
                    let g = dy[i * d + j] * gamma[j];
                    mg += g;
                    mgx += g * xhat(i, j);
                }
                mg = mg / dn;
                mgx = mgx / dn;
                for j in 0..d {
                    let g = dy[i * d + j] * gamma[j];
                    r[j] += rstd[i] * (g - mg - xhat(i, j) * mgx);
                }
            });
        }
        Ok(())
    }

    fn softmax(&self, x: &Vec<T>, d: usize, y: &mut Vec<T>) -> Result<()> {
        rows("softmax: x", x.len(), d)?;
        check("softmax: y", x.len(), y.len())?;
        par_rows(y, d, |i, r| {
            let xr = &x[i * d..(i + 1) * d];
            let mx = xr.iter().copied().fold(T::neg_infinity(), T::max);
            let mut s = T::zero();
            for (o, &v) in r.iter_mut().zip(xr) {
                *o = (v - mx).exp();
                s += *o;
            }
            r.iter_mut().for_each(|o| *o = *o / s);
        });
        Ok(())
    }

    fn softmax_backward(&self, y: &Vec<T>, dy: &Vec<T>, d: usize, dx: &mut Vec<T>) -> Result<()> {
        rows("softmax_backward: y", y.len(), d)?;
        check("softmax_backward: dy", y.len(), dy.len())?;
        check("softmax_backward: dx", y.len(), dx.len())?;
        par_rows(dx, d, |i, r| {
            let (yr, gr) = (&y[i * d..(i + 1) * d], &dy[i * d..(i + 1) * d]);
            let dot = yr.iter().zip(gr).map(|(&a, &b)| a * b).sum::<T>();
            for j in 0..d {
                r[j] += yr[j] * (gr[j] - dot);
            }
        });
        Ok(())
    }

    fn attention(
        &self,
        qkv: &Vec<T>,
        batch: usize,
        heads: usize,
        y: &mut Vec<T>,
        lse: &mut Vec<T>,
    ) -> Result<()> {
        attention::forward(qkv, batch, heads, y, lse)
    }

    fn attention_backward(
        &self,
        qkv: &Vec<T>,
        y: &Vec<T>,
        lse: &Vec<T>,
        dy: &Vec<T>,
        batch: usize,
        heads: usize,
        dqkv: &mut Vec<T>,
    ) -> Result<()> {
        attention::backward(qkv, y, lse, dy, batch, heads, dqkv)
    }

    fn conv2d(&self, x: &Vec<T>, w: &Vec<T>, s: &Conv2dShape, y: &mut Vec<T>) -> Result<()> {
        conv::conv2d(x, w, s, y)
    }

    fn conv2d_backward(
        &self,
        x: &Vec<T>,
        w: &Vec<T>,
        s: &Conv2dShape,
        dy: &Vec<T>,
        dx: Option<&mut Vec<T>>,
        dw: Option<&mut Vec<T>>,
    ) -> Result<()> {
        conv::conv2d_backward(x, w, s, dy, dx, dw)
    }

    fn mse(&self, a: &Vec<T>, b: &Vec<T>, out: &mut Vec<T>) -> Result<()> {
        check("mse: b", a.len(), b.len())?;
        check("mse: out", 1, out.len())?;
        // Per-chunk sums added in chunk order (deterministic, see `sum_rows`).
        let parts: Vec<T> = a
            .par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .map(|(x, y)| x.iter().zip(y).map(|(&u, &v)| (u - v) * (u - v)).sum::<T>())
            .collect();
        let s: T = parts.into_iter().sum();
        out[0] = s / T::c(a.len() as f64);
        Ok(())
    }

    fn mse_backward(
        &self,
        a: &Vec<T>,
        b: &Vec<T>,
        dout: &Vec<T>,
        da: Option<&mut Vec<T>>,
        db: Option<&mut Vec<T>>,
    ) -> Result<()> {
        check("mse_backward: b", a.len(), b.len())?;
        // ∂/∂a mean((a−b)²) = 2(a−b)/n
        let g = scalar("mse_backward: dout", dout)? * T::c(2.0 / a.len() as f64);
        if let Some(da) = da {
            check("mse_backward: da", a.len(), da.len())?;
            par_chunks(da, |o, c| {
                for (i, v) in c.iter_mut().enumerate() {
                    *v += g * (a[o + i] - b[o + i]);
                }
            });
        }
        if let Some(db) = db {
            check("mse_backward: db", a.len(), db.len())?;
            par_chunks(db, |o, c| {
                for (i, v) in c.iter_mut().enumerate() {
                    *v -= g * (a[o + i] - b[o + i]);
                }
            });
        }
        Ok(())
    }

    fn gaussian_nll(
        &self,
        mu: &Vec<T>,
        logvar: &Vec<T>,
        x: &Vec<T>,
        out: &mut Vec<T>,
    ) -> Result<()> {
        check("gaussian_nll: logvar", mu.len(), logvar.len())?;
        check("gaussian_nll: x", mu.len(), x.len())?;
        check("gaussian_nll: out", 1, out.len())?;
        let s: T = (0..mu.len())
            .map(|i| {
                let r = x[i] - mu[i];
                logvar[i] + r * r * (-logvar[i]).exp()
            })
            .sum();
        out[0] = T::c(0.5) * s / T::c(mu.len() as f64);
        Ok(())
    }

    fn gaussian_nll_backward(
        &self,
        mu: &Vec<T>,
        logvar: &Vec<T>,
        x: &Vec<T>,
        dout: &Vec<T>,
        dmu: Option<&mut Vec<T>>,
        dlogvar: Option<&mut Vec<T>>,
        dx: Option<&mut Vec<T>>,
    ) -> Result<()> {
        check("gaussian_nll_backward: logvar", mu.len(), logvar.len())?;
        check("gaussian_nll_backward: x", mu.len(), x.len())?;
        let g = scalar("gaussian_nll_backward: dout", dout)? / T::c(mu.len() as f64);
        // ℓ = ½(s + r²e^{−s}), r = x − μ: ∂ℓ/∂μ = −r e^{−s}, ∂ℓ/∂x = r e^{−s},
        // ∂ℓ/∂s = ½(1 − r²e^{−s})
        let res = |i: usize| (x[i] - mu[i]) * (-logvar[i]).exp();
        if let Some(d) = dmu {
            check("gaussian_nll_backward: dmu", mu.len(), d.len())?;
            d.iter_mut().enumerate().for_each(|(i, v)| *v -= g * res(i));
        }
        if let Some(d) = dx {
            check("gaussian_nll_backward: dx", mu.len(), d.len())?;
            d.iter_mut().enumerate().for_each(|(i, v)| *v += g * res(i));
        }
        if let Some(d) = dlogvar {
            check("gaussian_nll_backward: dlogvar", mu.len(), d.len())?;
            d.iter_mut().enumerate().for_each(|(i, v)| {
                *v += g * T::c(0.5) * (T::one() - (x[i] - mu[i]) * res(i));
            });
        }
        Ok(())
    }

    fn kl_std_normal(
        &self,
        mu: &Vec<T>,
        logvar: &Vec<T>,
        d: usize,
        out: &mut Vec<T>,
    ) -> Result<()> {
        let n = rows("kl_std_normal: mu", mu.len(), d)?;
        check("kl_std_normal: logvar", mu.len(), logvar.len())?;
        check("kl_std_normal: out", 1, out.len())?;
        let s: T = (0..mu.len())
            .map(|i| T::one() + logvar[i] - mu[i] * mu[i] - logvar[i].exp())
            .sum();
        out[0] = T::c(-0.5) * s / T::c(n as f64);
        Ok(())
    }

    fn kl_std_normal_backward(
        &self,
        mu: &Vec<T>,
        logvar: &Vec<T>,
        d: usize,
        dout: &Vec<T>,
        dmu: Option<&mut Vec<T>>,
        dlogvar: Option<&mut Vec<T>>,
    ) -> Result<()> {
        let n = rows("kl_std_normal_backward: mu", mu.len(), d)?;
        check("kl_std_normal_backward: logvar", mu.len(), logvar.len())?;
        let g = scalar("kl_std_normal_backward: dout", dout)? / T::c(n as f64);
        // ∂KL/∂μ = μ/n, ∂KL/∂logvar = ½(e^{logvar} − 1)/n
        if let Some(dm) = dmu {
            check("kl_std_normal_backward: dmu", mu.len(), dm.len())?;
            dm.iter_mut().zip(mu).for_each(|(v, &m)| *v += g * m);
        }
        if let Some(dl) = dlogvar {
            check("kl_std_normal_backward: dlogvar", mu.len(), dl.len())?;
            dl.iter_mut()
                .zip(logvar)
                .for_each(|(v, &l)| *v += g * T::c(0.5) * (l.exp() - T::one()));
        }
        Ok(())
    }

    fn fourier_features(
        &self,
        coords: &Vec<T>,
        c: usize,
        freqs: &Vec<T>,
        groups: usize,
        y: &mut Vec<T>,
    ) -> Result<()> {
        let (n, m, per) = ff_shapes("fourier_features", coords.len(), c, freqs.len(), groups)?;
        let w = 2 * m + c - 3;
        check("fourier_features: y", n * w, y.len())?;
        let enc = Encoder::new(freqs, m, per, groups);
        par_rows(y, w, |i, r| enc.row(&coords[i * c..(i + 1) * c], r));
        Ok(())
    }

    fn fourier_features_backward(
        &self,
        coords: &Vec<T>,
        c: usize,
        freqs: &Vec<T>,
        groups: usize,
        dy: &Vec<T>,
        dcoords: &mut Vec<T>,
    ) -> Result<()> {
        let (n, m, per) = ff_shapes(
            "fourier_features_backward",
            coords.len(),
            c,
            freqs.len(),
            groups,
        )?;
        let w = 2 * m + c - 3;
        check("fourier_features_backward: dy", n * w, dy.len())?;
        check(
            "fourier_features_backward: dcoords",
            coords.len(),
            dcoords.len(),
        )?;
        // ∂/∂k sin k = cos k, ∂/∂k cos k = −sin k; ∂k/∂coords_j = F_j; z passes through.
        par_rows(dcoords, c, |i, r| {
            let p = &coords[i * c..(i + 1) * c];
            let g = &dy[i * w..(i + 1) * w];
            let (mut k, mut sk, mut ck) = (
                [T::zero(); FF_BLOCK],
                [T::zero(); FF_BLOCK],
                [T::zero(); FF_BLOCK],
            );
            for gi in 0..groups {
                for q0 in (0..per).step_by(FF_BLOCK) {
                    let nq = (per - q0).min(FF_BLOCK);
                    let row0 = gi * per + q0;
                    ff_args(p, &freqs[row0 * 3..], &mut k[..nq]);
                    T::sin_cos_slice(&k[..nq], &mut sk[..nq], &mut ck[..nq]);
                    for q in 0..nq {
                        let f = &freqs[(row0 + q) * 3..(row0 + q) * 3 + 3];
                        let gs = g[2 * gi * per + q0 + q];
                        let gc = g[2 * gi * per + per + q0 + q];
                        let dk = gs * ck[q] - gc * sk[q];
                        for j in 0..3 {
                            r[j] += dk * f[j];
                        }
                    }
                }
            }
            for j in 3..c {
                r[j] += g[2 * m + j - 3];
            }
        });
        Ok(())
    }

    fn decode_rotated_lattices(
        &self,
        spec: &DecodeSpec<'_, Self>,
        rot: &Vec<T>,
        z: Option<&Vec<T>>,
        nb: usize,
        save: bool,
    ) -> Result<DecodeOutput<Self>> {
        // The row-chunked network encodes each chunk's rows as it reads them (the features are
        // never held whole); elsewhere, the composed pass.
        decode::forward_with(self, spec, rot, z, nb, save, |x, n| {
            match feature_rows(spec, x) {
                Some(gen) => mlp::forward_generated(self, &spec.mlp, &gen, n, save),
                None => Ok(None),
            }
        })
    }

    fn decode_rotated_lattices_backward(
        &self,
        spec: &DecodeSpec<'_, Self>,
        rot: &Vec<T>,
        z: Option<&Vec<T>>,
        nb: usize,
        saved: &DecodeSaved<Self>,
        dy: &Vec<T>,
        dz: Option<&mut Vec<T>>,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()> {
        let fused = |(x, n, sv, dtop, dz, dl): decode::FusedBackward<'_, '_, Self>| {
            let Some(gen) = feature_rows(spec, x) else {
                return Ok(false);
            };
            let (dx, cols) = match dz {
                Some((d, col0, group)) => (Some(d), (col0, group)),
                None => (None, (0, 1)),
            };
            mlp::backward_generated(self, &spec.mlp, &gen, n, sv, dtop, dx, cols, dl)
        };
        decode::backward_with(self, spec, rot, z, nb, saved, dy, dz, dlayers, fused)
    }

    fn mlp_forward(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &Vec<T>,
        n: usize,
        save: bool,
    ) -> Result<MlpOutput<Self>> {
        mlp::forward(self, w, x, n, save, true)
    }

    fn mlp_backward(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &Vec<T>,
        n: usize,
        saved: &MlpSaved<Self>,
        dy: &Vec<T>,
        dx: Option<&mut Vec<T>>,
        dx_col0: usize,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()> {
        mlp::backward(self, w, x, n, saved, dy, dx, dx_col0, 1, dlayers, true)
    }

    fn mlp_backward_grouped(
        &self,
        w: &MlpWeights<'_, Self>,
        x: &Vec<T>,
        n: usize,
        saved: &MlpSaved<Self>,
        dy: &Vec<T>,
        dx: &mut Vec<T>,
        dx_col0: usize,
        dx_group: usize,
        dlayers: &mut [MlpLayerGrad<'_, Self>],
    ) -> Result<()> {
        mlp::backward(
            self,
            w,
            x,
            n,
            saved,
            dy,
            Some(dx),
            dx_col0,
            dx_group,
            dlayers,
            true,
        )
    }

    fn pose_scores(
        &self,
        slices: &Vec<T>,
        per_image_slices: bool,
        images: &Vec<T>,
        ctf: Option<&Vec<T>>,
        nb: usize,
        nr: usize,
        nt: usize,
        p: usize,
        out: &mut Vec<T>,
    ) -> Result<()> {
        super::pose_score::pose_scores_cpu(
            slices,
            per_image_slices,
            images,
            ctf.map(|c| c.as_slice()),
            nb,
            nr,
            nt,
            p,
            out,
        )
    }

    fn adam_update(
        &self,
        p: &mut Vec<T>,
        g: &Vec<T>,
        m: &mut Vec<T>,
        v: &mut Vec<T>,
        c: AdamCoeffs,
    ) -> Result<()> {
        check("adam_update: grad", p.len(), g.len())?;
        check("adam_update: m", p.len(), m.len())?;
        check("adam_update: v", p.len(), v.len())?;
        // Element-wise, so chunks on the pool give the same values; small tensors stay whole.
        const CHUNK: usize = 1 << 14;
        let update =
            |((p, m), v): ((&mut [T], &mut [T]), &mut [T]), g: &[T]| adam_chunk(p, g, m, v, &c);
        if p.len() <= CHUNK {
            update(((p, m), v), g);
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(pmv, g)| update(pmv, g));
        }
        Ok(())
    }
}

/// One chunk of [`Backend::adam_update`]: torch's Adam with the moments in f64 (so f32 runs
/// follow torch's rounding closely enough for the tests). f32 runs on AVX-512 F or AVX2 where
/// the CPU has it: the same IEEE operations in vector lanes (Rust never contracts a·b + c into
/// an FMA), so the values do not depend on which runs.
fn adam_chunk<T: CpuFloat>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: &AdamCoeffs) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(p), Some(g), Some(m), Some(v)) =
        (T::f32s_mut(p), T::f32s(g), T::f32s_mut(m), T::f32s_mut(v))
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F detected just above.
            return unsafe { adam_avx512(p, g, m, v, c) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected just above.
            return unsafe { adam_avx2(p, g, m, v, c) };
        }
    }
    adam_body(p, g, m, v, c);
}

/// [`adam_chunk`]'s arithmetic, written as one zipped pass so that it vectorizes.
#[inline(always)]
fn adam_body<T: CpuFloat>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: &AdamCoeffs) {
    let (b1, b2, wd) = (c.beta1, c.beta2, c.weight_decay);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let pi = p.f64();
        let gi = g.f64() + wd * pi;
        let mi = b1 * m.f64() + (1.0 - b1) * gi;
        let vi = b2 * v.f64() + (1.0 - b2) * gi * gi;
        *m = T::c(mi);
        *v = T::c(vi);
        *p = T::c(pi - c.step_size * mi / (c.denom_scale * vi.sqrt() + c.denom_eps));
    }
}

/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn adam_avx512(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamCoeffs) {
    adam_body(p, g, m, v, c);
}

/// # Safety
/// AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamCoeffs) {
    adam_body(p, g, m, v, c);
}

/// (rows, frequency rows m, rows per group) of a Fourier-feature call, checked.
/// [`Backend::fourier_features`] row by row: F (m, 3) by coordinate (3, m), each argument
/// k_q = p·F_q from three contiguous rows.
struct Encoder<T> {
    ft: Vec<T>,
    m: usize,
    per: usize,
    groups: usize,
}

impl<T: CpuFloat> Encoder<T> {
    fn new(freqs: &[T], m: usize, per: usize, groups: usize) -> Self {
        let ft = (0..3)
            .flat_map(|j| (0..m).map(move |q| freqs[3 * q + j]))
            .collect();
        Self { ft, m, per, groups }
    }

    /// The features of one row p (3 coordinates, then the latent) into r (2m + latent).
    fn row(&self, p: &[T], r: &mut [T]) {
        let (m, per) = (self.m, self.per);
        for g in 0..self.groups {
            let (sin, cos) = r[2 * g * per..2 * (g + 1) * per].split_at_mut(per);
            let f = [0, 1, 2].map(|j| &self.ft[j * m + g * per..j * m + (g + 1) * per]);
            T::features_sin_cos([p[0], p[1], p[2]], f, sin, cos);
        }
        r[2 * m..].copy_from_slice(&p[3..]);
    }
}

/// The decoder's network input generated chunk by chunk from the rotated coordinates and
/// latents x (n × cin) when the row-chunked network applies (f32 buffers): `Some(f)` with
/// `f(r0, rows, out)` the features of rows r0.., the values of [`Backend::fourier_features`].
fn feature_rows<'a, T: CpuFloat>(
    s: &'a DecodeSpec<'_, CpuBackend<T>>,
    x: &'a [T],
) -> Option<impl Fn(usize, usize, &mut [f32]) + Sync + 'a> {
    let (x, freqs) = (T::f32s(x)?, T::f32s(s.freqs)?);
    let cin = 3 + s.zdim;
    let (_, m, per) = ff_shapes("decoder", x.len(), cin, freqs.len(), s.groups).ok()?;
    let w = 2 * m + s.zdim;
    let enc = Encoder::new(freqs, m, per, s.groups);
    Some(move |r0: usize, rows: usize, out: &mut [f32]| {
        for (i, r) in out[..rows * w].chunks_exact_mut(w).enumerate() {
            enc.row(&x[(r0 + i) * cin..(r0 + i + 1) * cin], r);
        }
    })
}

fn ff_shapes(
    what: &str,
    coords_len: usize,
    c: usize,
    freqs_len: usize,
    groups: usize,
) -> Result<(usize, usize, usize)> {
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
    Ok((n, m, m / groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Activation, DecodeInput, Domain, MlpLayer};

    /// The decoder with its features generated chunk by chunk (the row-chunked network's
    /// fused path) against the composed pass on the whole features, on the same backend: y,
    /// dW, db and dz bit for bit (Fourier domain: sign flips; residual layers; zdim 3, the
    /// latent's gradient by image).
    #[test]
    fn decoder_generating_its_features_matches_the_composed_pass() {
        if !amx::available() {
            eprintln!("no bf16 engine on this CPU: skipped");
            return;
        }
        let be = CpuBackend::<f32>::new().with_bf16_gemm(true);
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        // the masked lattice of a 32² image, ±16 along x and y, z = 0
        let coords: Vec<f32> = (-16i32..=16)
            .flat_map(|i| (-16i32..=16).map(move |j| (i, j)))
            .filter(|&(i, j)| i * i + j * j <= 256)
            .flat_map(|(i, j)| [i as f32 / 32.0, j as f32 / 32.0, 0.0])
            .collect();
        let p = coords.len() / 3;
        let (nb, zdim, m, h) = (7, 3, 24, 64);
        let freqs: Vec<f32> = (0..3 * m).map(|_| 8.0 * rnd()).collect();
        let dims = [
            (2 * m + zdim, h, false),
            (h, h, true),
            (h, h, true),
            (h, 2, false),
        ];
        let ws: Vec<(Vec<f32>, Vec<f32>)> = dims
            .iter()
            .map(|&(i, o, _)| {
                let w = (0..i * o).map(|_| rnd() / (i as f32).sqrt()).collect();
                (w, (0..o).map(|_| 0.1 * rnd()).collect())
            })
            .collect();
        let spec = DecodeSpec {
            coords: &coords,
            n_points: p,
            freqs: &freqs,
            groups: 1,
            zdim,
            domain: Domain::Fourier,
            mlp: MlpWeights {
                layers: ws
                    .iter()
                    .zip(dims)
                    .map(|((w, b), (n_in, n_out, residual))| MlpLayer {
                        w,
                        b,
                        n_in,
                        n_out,
                        residual,
                    })
                    .collect(),
                act: Activation::Relu,
            },
        };
        let rot: Vec<f32> = (0..nb)
            .flat_map(|b| {
                let (c, s) = ((b as f32 * 0.7).cos(), (b as f32 * 0.7).sin());
                [c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c]
            })
            .collect();
        let z: Vec<f32> = (0..nb * zdim).map(|_| rnd()).collect();
        let dy: Vec<f32> = (0..nb * p).map(|_| rnd()).collect();
        type Grads = (Vec<f32>, Vec<Vec<f32>>, Vec<f32>);
        let grads = |saved: &DecodeSaved<CpuBackend<f32>>, fused: bool| -> Grads {
            let mut dz = vec![0f32; nb * zdim];
            let mut g: Vec<(Vec<f32>, Vec<f32>)> = ws
                .iter()
                .map(|(w, b)| (vec![0f32; w.len()], vec![0f32; b.len()]))
                .collect();
            let mut dl: Vec<MlpLayerGrad<'_, CpuBackend<f32>>> = g
                .iter_mut()
                .map(|(dw, db)| MlpLayerGrad { dw, db })
                .collect();
            let (rz, dzr) = (Some(&z), Some(&mut dz));
            match fused {
                true => be.decode_rotated_lattices_backward(
                    &spec, &rot, rz, nb, saved, &dy, dzr, &mut dl,
                ),
                false => {
                    decode::backward_composed(&be, &spec, &rot, rz, nb, saved, &dy, dzr, &mut dl)
                }
            }
            .unwrap();
            drop(dl);
            let (dw, db): (Vec<_>, Vec<_>) = g.into_iter().unzip();
            (dz, dw, db.concat())
        };
        let (y1, s1) = be
            .decode_rotated_lattices(&spec, &rot, Some(&z), nb, true)
            .unwrap();
        let (y2, s2) = decode::forward_composed(&be, &spec, &rot, Some(&z), nb, true).unwrap();
        let (s1, s2) = (s1.unwrap(), s2.unwrap());
        assert!(
            matches!(s1.input, DecodeInput::Coords(_)),
            "fused path taken"
        );
        assert!(matches!(s2.input, DecodeInput::Features(_)));
        assert!(s1.mlp.packed > 0, "the row-chunked network ran");
        assert_eq!(y1, y2, "y bit for bit");
        let (g1, g2) = (grads(&s1, true), grads(&s2, false));
        assert_eq!(g1.0, g2.0, "dz bit for bit");
        assert_eq!(g1.1, g2.1, "dW bit for bit");
        assert_eq!(g1.2, g2.2, "db bit for bit");
        assert!(g1.0.iter().any(|&v| v != 0.0) && g1.1.iter().flatten().any(|&v| v != 0.0));
        // The composed backward cannot read what the fused forward kept: a clear error.
        let mut g = ws
            .iter()
            .map(|(w, b)| (vec![0f32; w.len()], vec![0f32; b.len()]));
        let mut gs: Vec<_> = g.by_ref().collect();
        let mut dl: Vec<MlpLayerGrad<'_, CpuBackend<f32>>> = gs
            .iter_mut()
            .map(|(dw, db)| MlpLayerGrad { dw, db })
            .collect();
        let e = decode::backward_composed(&be, &spec, &rot, Some(&z), nb, &s1, &dy, None, &mut dl);
        assert!(e.is_err(), "composed backward on kept coordinates");
    }

    /// Fourier features in f32 across several blocks of [`FF_BLOCK`] frequencies and groups
    /// (sin/cos from the vectorized path) against f64, forward and backward.
    #[test]
    fn fourier_features_across_frequency_blocks_match_f64() {
        let (n, c, groups, per) = (7, 5, 3, FF_BLOCK + 37);
        let m = groups * per;
        let val = |i: usize, s: f64| ((i as f64) * s).sin();
        let coords: Vec<f64> = (0..n * c).map(|i| 0.5 * val(i, 0.77)).collect();
        let freqs: Vec<f64> = (0..m * 3).map(|i| 40.0 * val(i, 0.31)).collect();
        let dy: Vec<f64> = (0..n * (2 * m + c - 3)).map(|i| val(i, 0.13)).collect();
        let f32v = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let run32 = || {
            let be = CpuBackend::<f32>::new();
            let mut y = vec![0f32; n * (2 * m + c - 3)];
            be.fourier_features(&f32v(&coords), c, &f32v(&freqs), groups, &mut y)
                .unwrap();
            let mut dc = vec![0f32; n * c];
            be.fourier_features_backward(
                &f32v(&coords),
                c,
                &f32v(&freqs),
                groups,
                &f32v(&dy),
                &mut dc,
            )
            .unwrap();
            (y, dc)
        };
        // Direct evaluation in f64: y = [sin k, cos k per group, z]; dcoords_j = Σ_q (g_sin cos k
        // − g_cos sin k)·F_qj for j < 3, the z columns pass dy through.
        let w = 2 * m + c - 3;
        let mut y = vec![0f64; n * w];
        let mut dc = vec![0f64; n * c];
        for i in 0..n {
            let p = &coords[i * c..(i + 1) * c];
            for g in 0..groups {
                for q in 0..per {
                    let f = &freqs[3 * (g * per + q)..3 * (g * per + q) + 3];
                    let k = p[0] * f[0] + p[1] * f[1] + p[2] * f[2];
                    let (gs, gc) = (
                        dy[i * w + 2 * g * per + q],
                        dy[i * w + 2 * g * per + per + q],
                    );
                    y[i * w + 2 * g * per + q] = k.sin();
                    y[i * w + 2 * g * per + per + q] = k.cos();
                    for j in 0..3 {
                        dc[i * c + j] += (gs * k.cos() - gc * k.sin()) * f[j];
                    }
                }
            }
            for j in 3..c {
                y[i * w + 2 * m + j - 3] = p[j];
                dc[i * c + j] = dy[i * w + 2 * m + j - 3];
            }
        }
        // The f64 backend (libm sin/cos) matches it closely.
        let be = CpuBackend::<f64>::new();
        let mut y64 = vec![0f64; n * w];
        be.fourier_features(&coords, c, &freqs, groups, &mut y64)
            .unwrap();
        let mut dc64 = vec![0f64; n * c];
        be.fourier_features_backward(&coords, c, &freqs, groups, &dy, &mut dc64)
            .unwrap();
        for (a, b) in y64.iter().zip(&y).chain(dc64.iter().zip(&dc)) {
            assert!(
                (a - b).abs() < 1e-9 * (1.0 + b.abs()),
                "f64 backend {a} vs {b}"
            );
        }
        let (y32, dc32) = run32();
        // f32 arguments of size ≤ ~70 carry ~4e-6 of rounding; sums over 3·per terms in dc.
        for (a, b) in y32.iter().zip(&y) {
            assert!((*a as f64 - b).abs() < 2e-5, "y {a} vs {b}");
        }
        for (a, b) in dc32.iter().zip(&dc) {
            assert!(
                (*a as f64 - b).abs() < 2e-3 * (1.0 + b.abs()),
                "dcoords {a} vs {b}"
            );
        }
    }

    /// Reductions over many parallel chunks give the same bits on every call, however rayon
    /// splits and steals the work (a parallel `reduce` associates the partial sums differently
    /// from run to run). Two threads, 20 calls each, on sums spread over hundreds of chunks.
    #[test]
    fn parallel_reductions_are_deterministic() {
        let be = CpuBackend::<f32>::new();
        let (rows, d) = (100_000, 64);
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i as u64 * 2654435761) % 1000) as f32 * 1e-3 - 0.5 + 1e-4 * (i % 7) as f32)
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let once = || {
                let mut y = vec![0f32; d];
                be.sum_rows(&x, d, 1.0, &mut y, false).unwrap();
                let mut m = vec![0f32];
                be.mse(&x, &vec![0.25f32; x.len()], &mut m).unwrap();
                // the thin-left GEMM path (m < 8, long k): a weight gradient gᵀ·h of width 2
                let mut c = vec![0f32; 2 * d];
                gemm::gemm(2, rows, d, 1.0, &x, 2, true, &x, d, false, 0.0, &mut c);
                (y, m, c)
            };
            let first = once();
            for _ in 0..20 {
                assert!(
                    once() == first,
                    "a reduction changed between identical calls"
                );
            }
        });
    }
}
