// Reductions: column sums (sum_rows) in two deterministic passes, row-wise ops (one warp per
// row), and the scalar losses (per-block partial sums, then reduce_splits_f32).
// CPU twins: the same-named methods of `CpuBackend` (src/backend/cpu/mod.rs).

// Pass 1 of y (nbatch, d) = Σ_rows x: x is nbatch blocks of `rows` rows with row stride ldx
// (the summed columns are the first d of each row, after `col_off`). Block (32, 8) over
// 32 columns × one of gridDim.y row chunks × batch blockIdx.z:
// partials (gridDim.y, nbatch, d)[chunk, b, j] = Σ_{rows in chunk} x[b, row, col_off + j].
extern "C" __global__ void sum_rows_partial_f32(const float* x, int rows, int d, int ldx,
                                                int col_off, float* partials) {
    __shared__ float s[8][33];
    int j = blockIdx.x * 32 + threadIdx.x;
    int chunk = blockIdx.y, nchunks = gridDim.y, b = blockIdx.z, nbatch = gridDim.z;
    int per = (rows + nchunks - 1) / nchunks;
    int r0 = chunk * per, r1 = min(rows, r0 + per);
    float acc = 0.0f;
    if (j < d) {
        const float* xb = x + (size_t)b * rows * ldx + col_off + j;
        for (int r = r0 + threadIdx.y; r < r1; r += 8) acc += xb[(size_t)r * ldx];
    }
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < d) {
        float t = 0.0f;
        for (int k = 0; k < 8; k++) t += s[k][threadIdx.x];
        partials[((size_t)chunk * nbatch + b) * d + j] = t;
    }
}

// y (len) = (acc ? y : 0) + scale·Σ_s partials[s, :] over nsplit rows of partials (nsplit, len):
// pass 2 of sum_rows, the split-K weight gradients and the losses.
extern "C" __global__ void reduce_splits_f32(const float* partials, int nsplit, int len,
                                             float scale, int acc, float* y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)len;
         i += (size_t)gridDim.x * blockDim.x) {
        float t = 0.0f;
        for (int s = 0; s < nsplit; s++) t += partials[(size_t)s * len + i];
        y[i] = acc ? y[i] + scale * t : scale * t;
    }
}

// y (rows) (+)= scale·Σ_cols x (rows, d); one warp per row, 8 rows per block of 256.
extern "C" __global__ void sum_cols_f32(const float* x, int d, float scale, float* y, int rows,
                                        int acc) {
    int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * d;
    float t = 0.0f;
    for (int j = lane; j < d; j += 32) t += xr[j];
    t = warp_sum(t) * scale;
    if (lane == 0) y[row] = acc ? y[row] + t : t;
}

// y (rows, d) = softmax of each row of x; one warp per row, 8 rows per block of 256.
extern "C" __global__ void softmax_f32(const float* x, int d, float* y, int rows) {
    int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * d;
    float* yr = y + (size_t)row * d;
    float mx = -CF_INF;
    for (int j = lane; j < d; j += 32) mx = fmaxf(mx, xr[j]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j < d; j += 32) s += expf(xr[j] - mx);
    s = warp_sum(s);
    for (int j = lane; j < d; j += 32) yr[j] = expf(xr[j] - mx) / s;
}

// dx (rows, d) += y ⊙ (dy − Σ_j dy_j y_j) row by row; one warp per row.
extern "C" __global__ void softmax_backward_f32(const float* y, const float* dy, int d,
                                                float* dx, int rows) {
    int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    size_t o = (size_t)row * d;
    float dot = 0.0f;
    for (int j = lane; j < d; j += 32) dot += y[o + j] * dy[o + j];
    dot = warp_sum(dot);
    for (int j = lane; j < d; j += 32) dx[o + j] += y[o + j] * (dy[o + j] - dot);
}

// Layer norm of each row of x (rows, d): mean, rstd (rows) = 1/√(var + eps) (two-pass
// variance), y = (x − μ)·rstd·γ + β; one warp per row.
extern "C" __global__ void layer_norm_f32(const float* x, const float* gamma, const float* beta,
                                          int d, float eps, float* y, float* mean, float* rstd,
                                          int rows) {
    int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    size_t o = (size_t)row * d;
    float s = 0.0f;
    for (int j = lane; j < d; j += 32) s += x[o + j];
    float mu = warp_sum(s) / (float)d;
    float v = 0.0f;
    for (int j = lane; j < d; j += 32) {
        float c = x[o + j] - mu;
        v += c * c;
    }
    float rs = 1.0f / sqrtf(warp_sum(v) / (float)d + eps);
    for (int j = lane; j < d; j += 32) y[o + j] = (x[o + j] - mu) * rs * gamma[j] + beta[j];
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// dx (rows, d) += rstd·(g − mean(g) − x̂·mean(g⊙x̂)) with g = dy⊙γ, x̂ = (x − μ)·rstd;
// one warp per row.
extern "C" __global__ void layer_norm_backward_f32(const float* x, const float* gamma,
                                                   const float* mean, const float* rstd,
                                                   const float* dy, int d, float* dx,
                                                   int rows) {
    int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    size_t o = (size_t)row * d;
    float mu = mean[row], rs = rstd[row];
    float mg = 0.0f, mgx = 0.0f;
    for (int j = lane; j < d; j += 32) {
        float g = dy[o + j] * gamma[j];
        mg += g;
        mgx += g * (x[o + j] - mu) * rs;
    }
    mg = warp_sum(mg) / (float)d;
    mgx = warp_sum(mgx) / (float)d;
    for (int j = lane; j < d; j += 32) {
        float g = dy[o + j] * gamma[j];
        dx[o + j] += rs * (g - mg - (x[o + j] - mu) * rs * mgx);
    }
}

// dγ (d) += Σ_rows dy⊙x̂, dβ (d) += Σ_rows dy (either may be null); block (32, 8) per 32
// columns.
extern "C" __global__ void layer_norm_backward_params_f32(const float* x, const float* mean,
                                                          const float* rstd, const float* dy,
                                                          int d, float* dgamma, float* dbeta,
                                                          int rows) {
    __shared__ float sg[8][33], sb[8][33];
    int j = blockIdx.x * 32 + threadIdx.x;
    float ag = 0.0f, ab = 0.0f;
    if (j < d) {
        for (int r = threadIdx.y; r < rows; r += 8) {
            size_t o = (size_t)r * d + j;
            ag += dy[o] * (x[o] - mean[r]) * rstd[r];
            ab += dy[o];
        }
    }
    sg[threadIdx.y][threadIdx.x] = ag;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && j < d) {
        float tg = 0.0f, tb = 0.0f;
        for (int k = 0; k < 8; k++) {
            tg += sg[k][threadIdx.x];
            tb += sb[k][threadIdx.x];
        }
        if (dgamma) dgamma[j] += tg;
        if (dbeta) dbeta[j] += tb;
    }
}

// partials[block] = Σ over this block's grid-stride share of (a − b)² (n); the host finishes
// with reduce_splits_f32 (scale 1/n). Block of 256.
extern "C" __global__ void mse_partial_f32(const float* a, const float* b, int n,
                                           float* partials) {
    __shared__ float scratch[32];
    float t = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n;
         i += (size_t)gridDim.x * blockDim.x) {
        float r = a[i] - b[i];
        t += r * r;
    }
    t = block_sum(t, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = t;
}

// partials[block] = Σ (s + (x − μ)²e^{−s}) with s = logvar (n); finished with scale ½/n.
extern "C" __global__ void gaussian_nll_partial_f32(const float* mu, const float* logvar,
                                                    const float* x, int n, float* partials) {
    __shared__ float scratch[32];
    float t = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n;
         i += (size_t)gridDim.x * blockDim.x) {
        float r = x[i] - mu[i];
        t += logvar[i] + r * r * expf(-logvar[i]);
    }
    t = block_sum(t, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = t;
}

// partials[block] = Σ (1 + s − μ² − e^s) with s = logvar (n); finished with scale −½/rows.
extern "C" __global__ void kl_std_normal_partial_f32(const float* mu, const float* logvar, int n,
                                                     float* partials) {
    __shared__ float scratch[32];
    float t = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n;
         i += (size_t)gridDim.x * blockDim.x)
        t += 1.0f + logvar[i] - mu[i] * mu[i] - expf(logvar[i]);
    t = block_sum(t, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = t;
}
