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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,fma")]
unsafe fn body_avx512(x: &[f32], s: &mut [f32], c: &mut [f32]) {
    body(x, s, c)
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
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("fma")
    {
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
