// Branch-and-bound pose search: squared-error scores of every (rotation, translation) pair and
// a per-image top-K. CPU twins: f64 host references in tests/cuda_kernels.rs.

#define PS_TR 64 // rotations per block tile
#define PS_TT 16 // translations per block tile
#define PS_TP 32 // lattice points per shared-memory step

// out (nb, nr, nt)[b, r, t] = Σ_p (ctf[b, p]·slices[s(b), r, p] − images[b, t, p])² over the P
// band-limited lattice points, with slices (nb_s, nr, P), s(b) = b when per_image_slices else
// 0 (one set of slices shared by the batch), images (nb, nt, P) already translated, ctf (nb, P)
// or null (no CTF). Block (8, 32): thread (tx, ty) owns translations t0 + 2tx + {0, 1} and
// rotations r0 + 2ty + {0, 1} of a 64 × 16 tile; grid (⌈nt/16⌉, ⌈nr/64⌉, nb). The difference
// form (not ‖a‖² − 2a·b + ‖b‖²) keeps the scores free of cancellation.
extern "C" __global__ void __launch_bounds__(256)
    pose_scores_f32(const float* slices, int per_image_slices, const float* images,
                    const float* ctf, int nb, int nr, int nt, int P, float* out) {
    __shared__ float S[PS_TR][PS_TP + 1];
    __shared__ float X[PS_TT][PS_TP + 1];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 8 + tx;
    const int t0 = blockIdx.x * PS_TT, r0 = blockIdx.y * PS_TR, b = blockIdx.z;
    const float* sl = slices + (per_image_slices ? (size_t)b * nr * P : 0);
    const float* im = images + (size_t)b * nt * P;
    const float* cb = ctf ? ctf + (size_t)b * P : nullptr;
    float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
    for (int p0 = 0; p0 < P; p0 += PS_TP) {
        for (int e = tid; e < PS_TR * PS_TP; e += 256) {
            int rr = e / PS_TP, pp = e % PS_TP, r = r0 + rr, p = p0 + pp;
            float v = 0.0f;
            if (r < nr && p < P) {
                v = sl[(size_t)r * P + p];
                if (cb) v *= cb[p];
            }
            S[rr][pp] = v;
        }
        for (int e = tid; e < PS_TT * PS_TP; e += 256) {
            int tt = e / PS_TP, pp = e % PS_TP, t = t0 + tt, p = p0 + pp;
            X[tt][pp] = t < nt && p < P ? im[(size_t)t * P + p] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int pp = 0; pp < PS_TP; pp++) {
            float s0 = S[2 * ty][pp], s1 = S[2 * ty + 1][pp];
            float x0 = X[2 * tx][pp], x1 = X[2 * tx + 1][pp];
            float d;
            d = s0 - x0; acc[0][0] = fmaf(d, d, acc[0][0]);
            d = s0 - x1; acc[0][1] = fmaf(d, d, acc[0][1]);
            d = s1 - x0; acc[1][0] = fmaf(d, d, acc[1][0]);
            d = s1 - x1; acc[1][1] = fmaf(d, d, acc[1][1]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int r = r0 + 2 * ty + i, t = t0 + 2 * tx + j;
            if (r < nr && t < nt) out[((size_t)b * nr + r) * nt + t] = acc[i][j];
        }
}

// (value, index) ordering of top_k_smallest_f32: NaN sorts as +∞, ties by index.
__device__ __forceinline__ bool tk_less(float v, unsigned int i, float w, unsigned int j) {
    return v < w || (v == w && i < j);
}

// The k smallest of each row of x (nb, n) in ascending (value, index) order, NaN as +∞:
// idx (nb, k) flat indices into the row (r·nt + t for pose scores), val (nb, k) the values.
// One block of 256 per row; pass j finds the smallest element after the (j−1)-th in that
// order, so the cost is k·n reads per row (k is small in pose search) and no extra memory.
extern "C" __global__ void __launch_bounds__(256)
    top_k_smallest_f32(const float* x, int n, int k, unsigned int* idx, float* val) {
    __shared__ float wv[8];
    __shared__ unsigned int wi[8];
    __shared__ float pv_s;
    __shared__ unsigned int pi_s;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float* xr = x + (size_t)blockIdx.x * n;
    float pv = -CF_INF;
    unsigned int pi = 0;
    for (int j = 0; j < k; j++) {
        float bv = CF_INF;
        unsigned int bi = 0xffffffffu;
        for (unsigned int i = threadIdx.x; i < (unsigned int)n; i += blockDim.x) {
            float v = xr[i];
            if (isnan(v)) v = CF_INF;
            bool after = j == 0 || tk_less(pv, pi, v, i);
            if (after && tk_less(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            unsigned int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (tk_less(ov, oi, bv, bi)) {
                bv = ov;
                bi = oi;
            }
        }
        if (lane == 0) {
            wv[warp] = bv;
            wi[warp] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < (int)(blockDim.x >> 5); w++)
                if (tk_less(wv[w], wi[w], bv, bi)) {
                    bv = wv[w];
                    bi = wi[w];
                }
            idx[(size_t)blockIdx.x * k + j] = bi;
            val[(size_t)blockIdx.x * k + j] = bv;
            pv_s = bv;
            pi_s = bi;
        }
        __syncthreads();
        pv = pv_s;
        pi = pi_s;
    }
}
