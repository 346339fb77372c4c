// Tiled GEMM with a fused epilogue: the engine of the coordinate network (`mlp_forward`,
// `mlp_backward`, the decoder's first layer with the positional encoding computed on the fly)
// and the fallback of `Backend::gemm` where cuBLAS is absent.
//
// C (M, N) = epilogue(α·op(A)·op(B)), op(A) (M, K), op(B) (K, N), in this order:
//   v = α·acc;  v += bias[n];  v += res[m, n];  zsave[m, n] = v;  v = act(v);
//   v *= act'(gz[m, n], gh[m, n]) (dact);  v += β·C[m, n] (C is not read when β = 0);  C[m, n] = v
// where each step is skipped for a null pointer / ACT_NONE. The MLP uses:
//   forward layer      z = h·Wᵀ + b (+ h)          A = h, B = W (trans_b), bias, res, act, zsave
//   backward data      g_in = (g·W (+ g))⊙act'(z)  A = g, B = W, res = g, dact with gz/gh
//   backward weights   dW = gᵀ·h                   A = g (trans_a), B = h, split-K
// Split-K: block z handles K in [z·k_split, (z+1)·k_split) and writes C + z·split_stride; the
// host sums the splits (reduce_splits_f32), so split-K is only used with a plain epilogue.
//
// Tiles: 64×64 outputs per block of 128 threads, K in steps of 16 through shared memory (A as
// As[m][k], B as Bs[n][k], both K-contiguous). Precision suffixes:
//   f32  — CUDA-core FMAs, each thread 8 rows × 4 columns (columns strided by 16);
//   tf32 — mma.sync m16n8k8 (inputs rounded to tf32, 10-bit mantissa; f32 accumulation);
//   bf16 — mma.sync m16n8k16 (inputs rounded to bf16, 8-bit mantissa; f32 accumulation).
// In the mma variants warp w owns rows 32·(w/2).. and columns 32·(w%2).. of the tile: 2 (m16)
// × 4 (n8) mma tiles. Tensor-core variants need sm_80; compiled for an older arch they run the
// f32 path (the host does not select them there).

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 128
#define GEMM_LDC (GEMM_BN + 4)

#define PREC_F32 0
#define PREC_TF32 1
#define PREC_BF16 2

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define MMA_OK 1
#else
#define MMA_OK 0
#endif

// The A operand: a row-major buffer p (trans: A is stored (K, M)), or, when p is null, the
// positional encoding of coordinate rows (M, c): A[m, k] = fourier feature k of row m for
// k < 2·nfreq, else coords[m, 3 + k − 2·nfreq] (the latent).
struct AOperand {
    const float* p;
    int ld, trans;
    const float* coords;
    int c;
    const float* freqs;
    int nfreq, groups;
};

__device__ __forceinline__ float load_a(const AOperand& a, int m, int k) {
    if (!a.p) {
        const float* x = a.coords + (size_t)m * a.c;
        int m2 = 2 * a.nfreq;
        return k < m2 ? fourier_feature(x, a.freqs, a.nfreq, a.groups, k) : x[3 + k - m2];
    }
    return a.trans ? a.p[(size_t)k * a.ld + m] : a.p[(size_t)m * a.ld + k];
}

// x rounded to tf32 (round to nearest, ties away), as the b32 register mma expects.
__device__ __forceinline__ unsigned int to_tf32(float x) {
    unsigned int u = 0;
#if MMA_OK
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(x));
#endif
    return u;
}

// (lo, hi) rounded to bf16 and packed, lo in the low half (the element with the lower index).
__device__ __forceinline__ unsigned int pack_bf16(float lo, float hi) {
    unsigned int u = 0;
#if MMA_OK
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(u) : "f"(hi), "f"(lo));
#endif
    return u;
}

// d (16×8, f32) += a (16×8, tf32) · b (8×8, tf32). Fragments (g = lane/4, t = lane%4):
// a = {(g, t), (g+8, t), (g, t+4), (g+8, t+4)}, b = {(k=t, n=g), (k=t+4, n=g)},
// d = {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}.
__device__ __forceinline__ void mma_tf32(float* d, const unsigned int* a, const unsigned int* b) {
#if MMA_OK
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// d (16×8, f32) += a (16×16, bf16) · b (16×8, bf16). Register pairs: a = {(g, 2t..2t+1),
// (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)}, b = {(k=2t..2t+1, n=g), (k=2t+8.., n=g)}, d as tf32.
__device__ __forceinline__ void mma_bf16(float* d, const unsigned int* a, const unsigned int* b) {
#if MMA_OK
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// acc += As (64×16) · Bsᵀ for this thread's share of the 64×64 tile.
template <int P, int LDS>
__device__ __forceinline__ void tile_product(const float* As, const float* Bs, float* acc) {
    const int tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    if constexpr (P == PREC_F32) {
        const int tx = tid & 15, ty = tid >> 4;
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; kk++) {
            float a[8], b[4];
#pragma unroll
            for (int i = 0; i < 8; i++) a[i] = As[(ty * 8 + i) * LDS + kk];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[(tx + 16 * j) * LDS + kk];
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i * 4 + j] = fmaf(a[i], b[j], acc[i * 4 + j]);
        }
    } else if constexpr (P == PREC_TF32) {
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; kk += 8) {
            unsigned int a[2][4], b[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const float* ap = As + (wm + mi * 16 + g) * LDS + kk + t;
                a[mi][0] = to_tf32(ap[0]);
                a[mi][1] = to_tf32(ap[8 * LDS]);
                a[mi][2] = to_tf32(ap[4]);
                a[mi][3] = to_tf32(ap[8 * LDS + 4]);
            }
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const float* bp = Bs + (wn + ni * 8 + g) * LDS + kk + t;
                b[ni][0] = to_tf32(bp[0]);
                b[ni][1] = to_tf32(bp[4]);
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_tf32(acc + (mi * 4 + ni) * 4, a[mi], b[ni]);
        }
    } else {
        // PREC_BF16: one k16 step per tile.
        unsigned int a[2][4], b[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
            const float* ap = As + (wm + mi * 16 + g) * LDS + 2 * t;
            a[mi][0] = pack_bf16(ap[0], ap[1]);
            a[mi][1] = pack_bf16(ap[8 * LDS], ap[8 * LDS + 1]);
            a[mi][2] = pack_bf16(ap[8], ap[9]);
            a[mi][3] = pack_bf16(ap[8 * LDS + 8], ap[8 * LDS + 9]);
        }
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            const float* bp = Bs + (wn + ni * 8 + g) * LDS + 2 * t;
            b[ni][0] = pack_bf16(bp[0], bp[1]);
            b[ni][1] = pack_bf16(bp[8], bp[9]);
        }
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 4; ni++) mma_bf16(acc + (mi * 4 + ni) * 4, a[mi], b[ni]);
    }
}

// Cs (64×68) = this thread's accumulators, in the layout tile_product<P> left them.
template <int P>
__device__ __forceinline__ void store_acc(const float* acc, float* Cs) {
    const int tid = threadIdx.x;
    if constexpr (P == PREC_F32) {
        const int tx = tid & 15, ty = tid >> 4;
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) Cs[(ty * 8 + i) * GEMM_LDC + tx + 16 * j] = acc[i * 4 + j];
    } else {
        const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
        const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const float* d = acc + (mi * 4 + ni) * 4;
                float* c = Cs + (wm + mi * 16 + g) * GEMM_LDC + wn + ni * 8 + 2 * t;
                c[0] = d[0];
                c[1] = d[1];
                c[8 * GEMM_LDC] = d[2];
                c[8 * GEMM_LDC + 1] = d[3];
            }
    }
}

template <int PREC>
__device__ __forceinline__ void gemm_fused(int M, int N, int K, const AOperand& a,
                                           const float* B, int ldb, int trans_b, float alpha,
                                           float beta, float* C, int ldc, int k_split,
                                           long long split_stride, const float* bias,
                                           const float* res, int ldr, int act, float act_alpha,
                                           float* zsave, int ldz, int dact, const float* gz,
                                           const float* gh, int ldg) {
    constexpr int P = MMA_OK ? PREC : PREC_F32;
    // Row stride of As/Bs: 17 makes the f32 path's column reads conflict-free, 20 the mma
    // fragment reads (rows g = 0..7 land in distinct 4-bank groups).
    constexpr int LDS = P == PREC_F32 ? GEMM_BK + 1 : GEMM_BK + 4;
    __shared__ __align__(16) float As[GEMM_BM * LDS];
    __shared__ __align__(16) float Bs[GEMM_BN * LDS];
    __shared__ __align__(16) float Cs[GEMM_BM * GEMM_LDC];
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * GEMM_BM, n0 = blockIdx.y * GEMM_BN;
    const int kb = blockIdx.z * k_split, ke = min(K, kb + k_split);
    C += (size_t)blockIdx.z * split_stride;
    float acc[32];
#pragma unroll
    for (int i = 0; i < 32; i++) acc[i] = 0.0f;
    for (int k0 = kb; k0 < ke; k0 += GEMM_BK) {
        // Global reads run along the contiguous axis of each operand.
        for (int e = tid; e < GEMM_BM * GEMM_BK; e += GEMM_THREADS) {
            const bool m_fast = a.p && a.trans;
            int mm = m_fast ? e % GEMM_BM : e / GEMM_BK;
            int kk = m_fast ? e / GEMM_BM : e % GEMM_BK;
            int gm = m0 + mm, gk = k0 + kk;
            As[mm * LDS + kk] = gm < M && gk < ke ? load_a(a, gm, gk) : 0.0f;
        }
        for (int e = tid; e < GEMM_BN * GEMM_BK; e += GEMM_THREADS) {
            int nn = trans_b ? e / GEMM_BK : e % GEMM_BN;
            int kk = trans_b ? e % GEMM_BK : e / GEMM_BN;
            int gn = n0 + nn, gk = k0 + kk;
            float v = 0.0f;
            if (gn < N && gk < ke) v = trans_b ? B[(size_t)gn * ldb + gk] : B[(size_t)gk * ldb + gn];
            Bs[nn * LDS + kk] = v;
        }
        __syncthreads();
        tile_product<P, LDS>(As, Bs, acc);
        __syncthreads();
    }
    store_acc<P>(acc, Cs);
    __syncthreads();
    for (int e = tid; e < GEMM_BM * GEMM_BN; e += GEMM_THREADS) {
        int mm = e / GEMM_BN, nn = e % GEMM_BN;
        int gm = m0 + mm, gn = n0 + nn;
        if (gm >= M || gn >= N) continue;
        float v = alpha * Cs[mm * GEMM_LDC + nn];
        if (bias) v += bias[gn];
        if (res) v += res[(size_t)gm * ldr + gn];
        if (zsave) zsave[(size_t)gm * ldz + gn] = v;
        if (act != ACT_NONE) v = unary_value(act, act_alpha, v);
        if (dact != ACT_NONE) {
            size_t o = (size_t)gm * ldg + gn;
            v *= unary_grad(dact, act_alpha, gz[o], gh[o]);
        }
        float* c = C + (size_t)gm * ldc + gn;
        *c = beta == 0.0f ? v : v + beta * *c;
    }
}

// C (M, N) = epilogue(α·op(A)·op(B)) with A (M, K) row-major (or (K, M) with trans_a), B (K, N)
// (or (N, K) with trans_b); grid (⌈M/64⌉, ⌈N/64⌉, splits), block 128 (row tiles on x: no
// 65535 limit on M, and neighbouring blocks share the B tile). f32 CUDA cores.
extern "C" __global__ void __launch_bounds__(128)
    gemm_fused_f32(int M, int N, int K, const float* A, int lda, int trans_a, const float* B,
                   int ldb, int trans_b, float alpha, float beta, float* C, int ldc, int k_split,
                   long long split_stride, const float* bias, const float* res, int ldr, int act,
                   float act_alpha, float* zsave, int ldz, int dact, const float* gz,
                   const float* gh, int ldg) {
    AOperand a = {A, lda, trans_a, nullptr, 0, nullptr, 0, 1};
    gemm_fused<PREC_F32>(M, N, K, a, B, ldb, trans_b, alpha, beta, C, ldc, k_split,
                         split_stride, bias, res, ldr, act, act_alpha, zsave, ldz, dact, gz, gh,
                         ldg);
}

// gemm_fused_f32 with tf32 tensor cores (sm_80+).
extern "C" __global__ void __launch_bounds__(128)
    gemm_fused_tf32(int M, int N, int K, const float* A, int lda, int trans_a, const float* B,
                    int ldb, int trans_b, float alpha, float beta, float* C, int ldc,
                    int k_split, long long split_stride, const float* bias, const float* res,
                    int ldr, int act, float act_alpha, float* zsave, int ldz, int dact,
                    const float* gz, const float* gh, int ldg) {
    AOperand a = {A, lda, trans_a, nullptr, 0, nullptr, 0, 1};
    gemm_fused<PREC_TF32>(M, N, K, a, B, ldb, trans_b, alpha, beta, C, ldc, k_split,
                          split_stride, bias, res, ldr, act, act_alpha, zsave, ldz, dact, gz, gh,
                          ldg);
}

// gemm_fused_f32 with bf16 tensor cores (sm_80+).
extern "C" __global__ void __launch_bounds__(128)
    gemm_fused_bf16(int M, int N, int K, const float* A, int lda, int trans_a, const float* B,
                    int ldb, int trans_b, float alpha, float beta, float* C, int ldc,
                    int k_split, long long split_stride, const float* bias, const float* res,
                    int ldr, int act, float act_alpha, float* zsave, int ldz, int dact,
                    const float* gz, const float* gh, int ldg) {
    AOperand a = {A, lda, trans_a, nullptr, 0, nullptr, 0, 1};
    gemm_fused<PREC_BF16>(M, N, K, a, B, ldb, trans_b, alpha, beta, C, ldc, k_split,
                          split_stride, bias, res, ldr, act, act_alpha, zsave, ldz, dact, gz, gh,
                          ldg);
}

// The first decoder layer with the positional encoding fused in: A (M, K = 2·nfreq + coord_w − 3)
// is computed from coords (M, coord_w) and freqs (nfreq, 3) in `groups` groups (see
// `fourier_features_f32`) instead of being read; no split-K, residual or activation gradient;
// the rest as gemm_fused_f32.
extern "C" __global__ void __launch_bounds__(128)
    gemm_pe_f32(int M, int N, int K, const float* coords, int coord_w, const float* freqs, int nfreq,
                int groups, const float* B, int ldb, int trans_b, float alpha, float beta,
                float* C, int ldc, const float* bias, int act, float act_alpha, float* zsave,
                int ldz) {
    AOperand a = {nullptr, 0, 0, coords, coord_w, freqs, nfreq, groups};
    gemm_fused<PREC_F32>(M, N, K, a, B, ldb, trans_b, alpha, beta, C, ldc, K, 0, bias, nullptr,
                         0, act, act_alpha, zsave, ldz, ACT_NONE, nullptr, nullptr, 0);
}

// gemm_pe_f32 with tf32 tensor cores (sm_80+).
extern "C" __global__ void __launch_bounds__(128)
    gemm_pe_tf32(int M, int N, int K, const float* coords, int coord_w, const float* freqs, int nfreq,
                 int groups, const float* B, int ldb, int trans_b, float alpha, float beta,
                 float* C, int ldc, const float* bias, int act, float act_alpha, float* zsave,
                 int ldz) {
    AOperand a = {nullptr, 0, 0, coords, coord_w, freqs, nfreq, groups};
    gemm_fused<PREC_TF32>(M, N, K, a, B, ldb, trans_b, alpha, beta, C, ldc, K, 0, bias, nullptr,
                          0, act, act_alpha, zsave, ldz, ACT_NONE, nullptr, nullptr, 0);
}

// gemm_pe_f32 with bf16 tensor cores (sm_80+).
extern "C" __global__ void __launch_bounds__(128)
    gemm_pe_bf16(int M, int N, int K, const float* coords, int coord_w, const float* freqs, int nfreq,
                 int groups, const float* B, int ldb, int trans_b, float alpha, float beta,
                 float* C, int ldc, const float* bias, int act, float act_alpha, float* zsave,
                 int ldz) {
    AOperand a = {nullptr, 0, 0, coords, coord_w, freqs, nfreq, groups};
    gemm_fused<PREC_BF16>(M, N, K, a, B, ldb, trans_b, alpha, beta, C, ldc, K, 0, bias, nullptr,
                          0, act, act_alpha, zsave, ldz, ACT_NONE, nullptr, nullptr, 0);
}
