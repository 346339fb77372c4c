//! sin and cos of f32 slices, vectorized: the positional encoding's hot loop.
//!
//! libm's `sinf`/`cosf` are scalar calls (about 10% of a 256-wide training step went to
//! them). Here one branch-free loop does, per element:
//! - reduction: j = nearest integer to x·2/π, r = x − j·π/2 with π/2 split in three f32
//!   parts (Cody–Waite) so that j·part₁ and j·part₂ are exact for |j| < 2¹⁵;
//! - the minimax polynomials of Cephes' `sinf`/`cosf` on |r| ≤ π/4;
//! - quadrant j mod 4 picks ±sin r / ±cos r.
//!
//! The loop is compiled for AVX-512 and picked at run time when the CPU has it (16 lanes), else
//! for the baseline target. Max abs error against f64 `sin`/`cos` is under 3·10⁻⁷ for
//! |x| ≤ [`FAST_LIMIT`] (`tests::matches_f64_sin_cos`); larger arguments take libm's path. No
//! maintained crate offers a stable-Rust vectorized f32 sincos (sleef bindings need nightly
//! portable SIMD), and the function is short.

/// Largest |x| the vectorized path handles (positional-encoding arguments are |c·f| ≤ a few
/// hundred; the reduction is exact to about 2¹⁵·π/2).
pub const FAST_LIMIT: f32 = 8192.0;

const FRAC_2_PI: f32 = std::f32::consts::FRAC_2_PI;
// π/2 = P1 + P2 + P3: P1 and P2 have few significant bits, so j·P1, j·P2 are exact.
const P1: f32 = 1.570_312_5;
const P2: f32 = 4.837_513e-4;
const P3: f32 = 7.549_79e-8;
// 1.5·2²³: adding and subtracting it rounds to the nearest integer (ties to even) for
// |v| < 2²².
const ROUND: f32 = 12_582_912.0;
const S1: f32 = -1.666_665_5e-1;
const S2: f32 = 8.332_161e-3;
const S3: f32 = -1.951_529_6e-4;
const C1: f32 = 4.166_664_6e-2;
const C2: f32 = -1.388_731_6e-3;
const C3: f32 = 2.443_315_7e-5;

#[inline(always)]
fn one(x: f32) -> (f32, f32) {
    let jf = (x * FRAC_2_PI + ROUND) - ROUND;
    let q = (jf as i32) & 3;
    let r = ((x - jf * P1) - jf * P2) - jf * P3;
    let r2 = r * r;
    let s = r + r * r2 * (S1 + r2 * (S2 + r2 * S3));
    let c = 1.0 - 0.5 * r2 + r2 * r2 * (C1 + r2 * (C2 + r2 * C3));
    // q = 0: (s, c); 1: (c, −s); 2: (−s, −c); 3: (−c, s)
    let (sv, cv) = if q & 1 == 0 { (s, c) } else { (c, s) };
    let sn = if q & 2 == 0 { sv } else { -sv };
    let cn = if (q + 1) & 2 == 0 { cv } else { -cv };
    (sn, cn)
}

#[inline(always)]
fn body(x: &[f32], s: &mut [f32], c: &mut [f32]) {
    for ((&x, s), c) in x.iter().zip(s.iter_mut()).zip(c.iter_mut()) {
        (*s, *c) = one(x);
    }
}

/// [`one`] on 16 lanes, the same operations in the same order (so the same values): written
/// out because the compiler keeps `one`'s float-to-int conversion and selects scalar.
///
/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn one16(x: std::arch::x86_64::__m512) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let k = |v: f32| _mm512_set1_ps(v);
    let (mul, add, sub) = (_mm512_mul_ps, _mm512_add_ps, _mm512_sub_ps);
    let jf = sub(add(mul(x, k(FRAC_2_PI)), k(ROUND)), k(ROUND));
    let q = _mm512_cvttps_epi32(jf);
    let r = sub(sub(sub(x, mul(jf, k(P1))), mul(jf, k(P2))), mul(jf, k(P3)));
    let r2 = mul(r, r);
    let sp = add(k(S1), mul(r2, add(k(S2), mul(r2, k(S3)))));
    let s = add(r, mul(mul(r, r2), sp));
    let cp = add(k(C1), mul(r2, add(k(C2), mul(r2, k(C3)))));
    let c = add(sub(k(1.0), mul(k(0.5), r2)), mul(mul(r2, r2), cp));
    let odd = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
    let (sv, cv) = (
        _mm512_mask_blend_ps(odd, s, c),
        _mm512_mask_blend_ps(odd, c, s),
    );
    let neg = |v: __m512, m: __mmask16| {
        _mm512_castsi512_ps(_mm512_mask_xor_epi32(
            _mm512_castps_si512(v),
            m,
            _mm512_castps_si512(v),
            _mm512_set1_epi32(i32::MIN),
        ))
    };
    let two = _mm512_set1_epi32(2);
    let sn = neg(sv, _mm512_test_epi32_mask(q, two));
    let cn = neg(
        cv,
        _mm512_test_epi32_mask(_mm512_add_epi32(q, _mm512_set1_epi32(1)), two),
    );
    (sn, cn)
}

/// [`body`] 16 lanes at a time ([`one16`]), the tail masked; a vector with an argument beyond
/// [`FAST_LIMIT`] (or NaN) takes libm for all its lanes.
///
/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn body_avx512(x: &[f32], s: &mut [f32], c: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len().min(s.len()).min(c.len());
    for i in (0..n).step_by(16) {
        let w = (n - i).min(16);
        let m: __mmask16 = ((1u32 << w) - 1) as __mmask16;
        let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
        put16(v, m, &mut s[i..i + w], &mut c[i..i + w]);
    }
}

/// sin and cos of the lanes `m` of `v` into `s`, `c` (as long as `m` has lanes).
///
/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn put16(v: std::arch::x86_64::__m512, m: u16, s: &mut [f32], c: &mut [f32]) {
    use std::arch::x86_64::*;
    let abs = _mm512_abs_ps(v);
    let fast = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(abs, _mm512_set1_ps(FAST_LIMIT));
    if fast & m == m {
        let (sv, cv) = one16(v);
        // SAFETY: s and c hold the lanes of m (the caller's contract)
        unsafe {
            _mm512_mask_storeu_ps(s.as_mut_ptr(), m, sv);
            _mm512_mask_storeu_ps(c.as_mut_ptr(), m, cv);
        }
    } else {
        let mut xs = [0f32; 16];
        // SAFETY: 16 floats
        unsafe { _mm512_storeu_ps(xs.as_mut_ptr(), v) };
        for ((&x, s), c) in xs.iter().zip(s.iter_mut()).zip(c.iter_mut()) {
            (*s, *c) = x.sin_cos();
        }
    }
}

/// Elements per block of [`features`].
const BLOCK: usize = 64;

#[inline(always)]
fn features_body(p: [f32; 3], f: [&[f32]; 3], s: &mut [f32], c: &mut [f32]) {
    let mut k = [0f32; BLOCK];
    for (q0, (s, c)) in s.chunks_mut(BLOCK).zip(c.chunks_mut(BLOCK)).enumerate() {
        let (k, q0) = (&mut k[..s.len()], q0 * BLOCK);
        let fs = f.map(|f| &f[q0..q0 + s.len()]);
        for (q, kq) in k.iter_mut().enumerate() {
            *kq = p[0] * fs[0][q] + p[1] * fs[1][q] + p[2] * fs[2][q];
        }
        sin_cos(k, s, c);
    }
}

/// [`features_body`] 16 lanes at a time ([`one16`]).
///
/// # Safety
/// AVX-512 F; the frequency slices as long as `s` and `c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn features_avx512(p: [f32; 3], f: [&[f32]; 3], s: &mut [f32], c: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = s.len().min(c.len());
    let pv = p.map(|v| _mm512_set1_ps(v));
    for i in (0..n).step_by(16) {
        let w = (n - i).min(16);
        let m: __mmask16 = ((1u32 << w) - 1) as __mmask16;
        let fv = f.map(|f| _mm512_maskz_loadu_ps(m, f.as_ptr().add(i)));
        let k = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(pv[0], fv[0]), _mm512_mul_ps(pv[1], fv[1])),
            _mm512_mul_ps(pv[2], fv[2]),
        );
        put16(k, m, &mut s[i..i + w], &mut c[i..i + w]);
    }
}

/// `s[q], c[q] = sin k_q, cos k_q` with k_q = p₀·f₀(q) + p₁·f₁(q) + p₂·f₂(q) (in this order,
/// as f32) over the common length: one row of the Fourier features, the arguments and their
/// sin/cos in one vectorized pass (no call per block). The values of [`sin_cos`] of the same
/// arguments, but that past [`FAST_LIMIT`] libm takes the 16 (AVX-512) or 64 arguments around
/// such an argument, not the whole row.
///
/// # Panics
/// If a frequency slice is shorter than `s`.
pub fn features(p: [f32; 3], f: [&[f32]; 3], s: &mut [f32], c: &mut [f32]) {
    let n = s.len().min(c.len());
    assert!(f.iter().all(|f| f.len() >= n), "trig features: frequencies");
    let (s, c) = (&mut s[..n], &mut c[..n]);
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the features the function is compiled for were detected.
        unsafe { features_avx512(p, f, s, c) };
        return;
    }
    features_body(p, f, s, c)
}

/// Whether the AVX-512 loops run on this CPU.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// `s[i], c[i] = sin x[i], cos x[i]` over the common length; arguments beyond [`FAST_LIMIT`]
/// (or NaN) go through libm.
pub fn sin_cos(x: &[f32], s: &mut [f32], c: &mut [f32]) {
    let n = x.len().min(s.len()).min(c.len());
    let (x, s, c) = (&x[..n], &mut s[..n], &mut c[..n]);
    if !x.iter().all(|v| v.abs() <= FAST_LIMIT) {
        for ((&x, s), c) in x.iter().zip(s.iter_mut()).zip(c.iter_mut()) {
            (*s, *c) = x.sin_cos();
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the features the function is compiled for were detected just above.
        unsafe { body_avx512(x, s, c) };
        return;
    }
    body(x, s, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_sin_cos() {
        // Dense near 0 and the quadrant boundaries, then spread out to the limit.
        let mut xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 1e-3).collect();
        for k in -8..=8 {
            let b = k as f32 * std::f32::consts::FRAC_PI_4;
            xs.extend((-50..=50).map(|i| b + i as f32 * 1e-7));
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            xs.push(((2.0 * u - 1.0) * FAST_LIMIT as f64) as f32);
        }
        xs.push(FAST_LIMIT);
        xs.push(-FAST_LIMIT);
        let mut s = vec![0f32; xs.len()];
        let mut c = vec![0f32; xs.len()];
        sin_cos(&xs, &mut s, &mut c);
        let mut worst = 0f64;
        for (i, &x) in xs.iter().enumerate() {
            let (es, ec) = (x as f64).sin_cos();
            worst = worst
                .max((s[i] as f64 - es).abs())
                .max((c[i] as f64 - ec).abs());
        }
        assert!(worst < 3e-7, "max abs error {worst}");
        // The scalar loop (the non-AVX-512 path) gives the same values.
        let (mut s2, mut c2) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
        body(&xs, &mut s2, &mut c2);
        assert_eq!(s, s2);
        assert_eq!(c, c2);
    }

    /// `features` gives, bit for bit, the scalar loop's sin/cos of the same arguments (tail
    /// lanes included); a vector holding an argument past the limit takes libm.
    #[test]
    fn features_match_the_scalar_loop() {
        let n = 45;
        let f: Vec<Vec<f32>> = (0..3)
            .map(|j| {
                (0..n)
                    .map(|q| (q as f32 * 0.37 + j as f32) * 1.7 - 30.0)
                    .collect()
            })
            .collect();
        let p = [0.31f32, -0.17, 0.05];
        let fr = [&f[0][..], &f[1][..], &f[2][..]];
        let (mut s, mut c) = (vec![0f32; n], vec![0f32; n]);
        features(p, fr, &mut s, &mut c);
        let k: Vec<f32> = (0..n)
            .map(|q| p[0] * f[0][q] + p[1] * f[1][q] + p[2] * f[2][q])
            .collect();
        let (mut s2, mut c2) = (vec![0f32; n], vec![0f32; n]);
        body(&k, &mut s2, &mut c2);
        assert_eq!(s, s2);
        assert_eq!(c, c2);
        // past the limit: libm's values
        let far = [&[1e6f32; 3][..], &[0.0; 3][..], &[0.0; 3][..]];
        let (mut s, mut c) = ([0f32; 3], [0f32; 3]);
        features([1.0, 0.0, 0.0], far, &mut s, &mut c);
        assert_eq!((s[0], c[0]), 1e6f32.sin_cos());
    }

    #[test]
    fn large_and_special_arguments_take_libm() {
        let xs = [1e5f32, -3e6, f32::NAN, f32::INFINITY, 0.5];
        let (mut s, mut c) = ([0f32; 5], [0f32; 5]);
        sin_cos(&xs, &mut s, &mut c);
        // libm's f32 results are within an ulp of the exact values even this far out (the
        // polynomial path's reduction is not: it would be off by far more).
        for i in 0..5 {
            let (es, ec) = (xs[i] as f64).sin_cos();
            let ok = |v: f32, e: f64| (v as f64 - e).abs() < 1e-6 || (v.is_nan() && e.is_nan());
            assert!(ok(s[i], es), "sin {}: {} vs {es}", xs[i], s[i]);
            assert!(ok(c[i], ec), "cos {}: {} vs {ec}", xs[i], c[i]);
        }
    }
}
