// Shared by every kernel file: build.rs prepends this file to each .cu before NVRTC compiles it
// (NVRTC gets no include path: no CUDA toolkit headers are needed, tensor-core and bf16 code use
// inline PTX).
//
// Conventions: row-major buffers, sizes as int (the host checks they fit), offsets as size_t;
// a null pointer means "absent" for optional operands.

#define CF_PI 3.14159265358979323846f
#define CF_INF __int_as_float(0x7f800000)

// Unary op codes, the order of `UnaryOp` (src/backend/mod.rs); ACT_NONE = identity.
#define ACT_NONE -1
#define OP_RELU 0
#define OP_LEAKY_RELU 1
#define OP_SILU 2
#define OP_GELU 3
#define OP_TANH 4
#define OP_SIGMOID 5
#define OP_SIN 6
#define OP_COS 7
#define OP_EXP 8
#define OP_LOG 9
#define OP_SOFTPLUS 10
#define OP_SQUARE 11

// Binary op codes, the order of `BinaryOp`.
#define BIN_ADD 0
#define BIN_SUB 1
#define BIN_MUL 2
#define BIN_DIV 3

// f(x) (the CPU twin is `cpu::unary_value`); alpha is the leaky-ReLU slope.
__device__ __forceinline__ float unary_value(int op, float alpha, float x) {
    switch (op) {
    case OP_RELU: return fmaxf(x, 0.0f);
    case OP_LEAKY_RELU: return x > 0.0f ? x : alpha * x;
    case OP_SILU: return x / (1.0f + expf(-x));
    case OP_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case OP_TANH: return tanhf(x);
    case OP_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case OP_SIN: return sinf(x);
    case OP_COS: return cosf(x);
    case OP_EXP: return expf(x);
    case OP_LOG: return logf(x);
    case OP_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
    case OP_SQUARE: return x * x;
    default: return x;
    }
}

// f'(x) given x and y = f(x) (the CPU twin is `cpu::unary_grad`): ops whose derivative is a
// function of y read only y, so the fused MLP may pass y for x when it kept no pre-activation.
__device__ __forceinline__ float unary_grad(int op, float alpha, float x, float y) {
    switch (op) {
    case OP_RELU: return y > 0.0f ? 1.0f : 0.0f;               // 1[x>0]
    case OP_LEAKY_RELU: return y > 0.0f ? 1.0f : alpha;        // 1 or α
    case OP_SILU: {                                            // σ(x)(1 + x(1−σ(x)))
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case OP_GELU: {                                            // Φ(x) + xφ(x)
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
        return cdf + x * pdf;
    }
    case OP_TANH: return 1.0f - y * y;
    case OP_SIGMOID: return y * (1.0f - y);
    case OP_SIN: return cosf(x);
    case OP_COS: return -sinf(x);
    case OP_EXP: return y;
    case OP_LOG: return 1.0f / x;
    case OP_SOFTPLUS: return x > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-x));
    case OP_SQUARE: return 2.0f * x;
    default: return 1.0f;
    }
}

// Sum of v over the 32 lanes of a warp (every lane gets the total).
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Max of v over the 32 lanes of a warp (every lane gets it).
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum of v over a block of blockDim.x threads (a multiple of 32, at most 1024); the total is
// returned to every thread. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// x·y + z·w + u·s in f32 without fused multiply-adds, in the CPU's order of operations
// (Rust does not contract a*b + c): bit-identical to the CPU twin, which matters where a sign
// decision follows (the Hermitian half-lattice flip).
__device__ __forceinline__ float dot3_rn(float x, float y, float z, float w, float u, float s) {
    return __fadd_rn(__fadd_rn(__fmul_rn(x, y), __fmul_rn(z, w)), __fmul_rn(u, s));
}

// Fourier feature `col` (< 2m) of one coordinate row x (≥ 3 values) for frequencies F (m, 3) in
// `groups` equal row groups (see `Backend::fourier_features`): with per = m/groups, group
// g = col/(2·per) holds [sin k_q for its per rows q, then cos k_q], k_q = x·F_q (computed in
// the CPU's order, without FMA contraction).
__device__ __forceinline__ float fourier_feature(const float* x, const float* freqs, int m,
                                                 int groups, int col) {
    int per = m / groups;
    int g = col / (2 * per), j = col - g * 2 * per;
    int q = g * per + (j < per ? j : j - per);
    const float* f = freqs + (size_t)q * 3;
    float k = dot3_rn(x[0], f[0], x[1], f[1], x[2], f[2]);
    return j < per ? sinf(k) : cosf(k);
}
