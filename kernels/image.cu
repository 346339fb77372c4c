// Per-image Fourier-space operators: the CTF and the Hartley phase shift (translation).
// CPU twins: `fourier::ctf::compute_ctf` and `fourier::shift::translate_ht`.

// CTF (nb, P) at lattice frequencies freqs (P, 2) in cycles/pixel for ctf.pkl rows params
// (nb, 9) = [D, Apix, dfU (Å), dfV (Å), dfAng (deg), kV, Cs (mm), w, phase (deg)]:
// s = freqs/Apix (1/Å), α = atan2(s_y, s_x), λ = 12.2639/√(V + 0.97845e−6·V²) (Å, V in volts),
// Δf = ½(dfU + dfV + (dfU − dfV)·cos 2(α − dfAng)),
// γ = 2π(−½Δf·λ·|s|² + ¼Cs·λ³·|s|⁴) − phase, CTF = √(1 − w²)·sin γ − w·cos γ.
// One thread per (b, p).
extern "C" __global__ void ctf_f32(const float* freqs, const float* params, int nb, int P,
                                   float* out) {
    const float deg = CF_PI / 180.0f;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < (size_t)nb * P;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t b = idx / P, p = idx % P;
        const float* c = params + b * 9;
        float apix = c[1], dfu = c[2], dfv = c[3], dfang = c[4] * deg, kv = c[5];
        float cs = c[6] * 1.0e7f, w = c[7], phase = c[8] * deg;
        float volt = kv * 1000.0f;
        float lam = 12.2639f / sqrtf(volt + 0.97845e-6f * volt * volt);
        float x = freqs[2 * p] / apix, y = freqs[2 * p + 1] / apix;
        float ang = atan2f(y, x);
        float s2 = x * x + y * y;
        float df = 0.5f * (dfu + dfv + (dfu - dfv) * cosf(2.0f * (ang - dfang)));
        float cs_lam3 = 0.25f * cs * (lam * lam * lam);
        float gamma = 2.0f * CF_PI * (-0.5f * df * lam * s2 + cs_lam3 * (s2 * s2)) - phase;
        out[idx] = sqrtf(1.0f - w * w) * sinf(gamma) - w * cosf(gamma);
    }
}

// Hartley images hts (nb, P) translated by shifts (nb, nt, 2) pixels into out (nb, nt, P):
// out[b, t, p] = cos φ·ht[b, p] + sin φ·ht[b, P − 1 − p], φ = 2π(k_p·s_bt) with k = freqs
// (P, 2) cycles/pixel, a centrally symmetric lattice list (point P − 1 − p is −k_p).
// One thread per output.
extern "C" __global__ void translate_ht_f32(const float* hts, const float* freqs,
                                            const float* shifts, int nb, int nt, int P,
                                            float* out) {
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
         idx < (size_t)nb * nt * P; idx += (size_t)gridDim.x * blockDim.x) {
        size_t bt = idx / P, p = idx % P, b = bt / nt;
        const float* s = shifts + bt * 2;
        // φ = (kx·tx + ky·ty)·2π in the CPU's order, without FMA contraction.
        float phi = __fmul_rn(__fadd_rn(__fmul_rn(freqs[2 * p], s[0]),
                                        __fmul_rn(freqs[2 * p + 1], s[1])),
                              2.0f * CF_PI);
        float sn, cs;
        sincosf(phi, &sn, &cs);
        const float* h = hts + b * P;
        out[idx] = cs * h[p] + sn * h[P - 1 - p];
    }
}
