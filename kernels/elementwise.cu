// Elementwise and layout kernels: one thread per output element, grid-stride loops.
// CPU twins: the same-named methods of `CpuBackend` (src/backend/cpu/mod.rs).

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)(n); \
         i += (size_t)gridDim.x * blockDim.x)

// y (n) = value (NaN poisoning of fresh buffers in tests).
extern "C" __global__ void fill_f32(float* y, float value, int n) {
    GRID_STRIDE(i, n) { y[i] = value; }
}

// y (n) = α·x + β·y; β = 0 does not read y.
extern "C" __global__ void axpby_f32(float alpha, const float* x, float beta, float* y, int n) {
    GRID_STRIDE(i, n) { y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i]; }
}

// y (n) = mul·x + add.
extern "C" __global__ void affine_f32(const float* x, float mul, float add, float* y, int n) {
    GRID_STRIDE(i, n) { y[i] = mul * x[i] + add; }
}

// y (n) = f(x) for the unary op code `op` (alpha: leaky-ReLU slope).
extern "C" __global__ void unary_f32(int op, float alpha, const float* x, float* y, int n) {
    GRID_STRIDE(i, n) { y[i] = unary_value(op, alpha, x[i]); }
}

// dx (n) += f'(x)·dy given x, y = f(x).
extern "C" __global__ void unary_backward_f32(int op, float alpha, const float* x,
                                              const float* y, const float* dy, float* dx,
                                              int n) {
    GRID_STRIDE(i, n) { dx[i] += unary_grad(op, alpha, x[i], y[i]) * dy[i]; }
}

// y (n) = a ∘ b for the binary op code `op`.
extern "C" __global__ void binary_f32(int op, const float* a, const float* b, float* y, int n) {
    GRID_STRIDE(i, n) {
        float u = a[i], v = b[i];
        y[i] = op == BIN_ADD ? u + v : op == BIN_SUB ? u - v : op == BIN_MUL ? u * v : u / v;
    }
}

// da (n) += ∂(a∘b)/∂a·dy, db (n) += ∂(a∘b)/∂b·dy; either may be null.
extern "C" __global__ void binary_backward_f32(int op, const float* a, const float* b,
                                               const float* dy, float* da, float* db, int n) {
    GRID_STRIDE(i, n) {
        float u = a[i], v = b[i], d = dy[i];
        // ∂(a+b)/∂a = ∂(a−b)/∂a = 1, ∂(ab)/∂a = b, ∂(a/b)/∂a = 1/b
        if (da) da[i] += op == BIN_MUL ? d * v : op == BIN_DIV ? d / v : d;
        // ∂(a+b)/∂b = 1, ∂(a−b)/∂b = −1, ∂(ab)/∂b = a, ∂(a/b)/∂b = −a/b²
        if (db)
            db[i] += op == BIN_ADD ? d : op == BIN_SUB ? -d : op == BIN_MUL ? d * u
                                                                           : -d * u / (v * v);
    }
}

// y (rows, d) (+)= bias (d) broadcast over rows (add_bias with acc = 1, broadcast_rows with 0).
extern "C" __global__ void broadcast_rows_f32(const float* bias, int d, float* y, int rows,
                                              int acc) {
    GRID_STRIDE(i, (size_t)rows * d) {
        float b = bias[i % d];
        y[i] = acc ? y[i] + b : b;
    }
}

// y (rows, d) (+)= x (rows) broadcast over columns.
extern "C" __global__ void broadcast_cols_f32(const float* x, int d, float* y, int rows,
                                              int acc) {
    GRID_STRIDE(i, (size_t)rows * d) {
        float v = x[i / d];
        y[i] = acc ? y[i] + v : v;
    }
}

// dst[r, dst_off + j] (+)= src[r, src_off + j] for r < rows, j < width; src (rows, src_cols),
// dst (rows, dst_cols).
extern "C" __global__ void copy_cols_f32(const float* src, int src_cols, int src_off, float* dst,
                                         int dst_cols, int dst_off, int width, int rows,
                                         int acc) {
    GRID_STRIDE(i, (size_t)rows * width) {
        size_t r = i / width, j = i % width;
        float v = src[r * src_cols + src_off + j];
        float* o = dst + r * dst_cols + dst_off + j;
        *o = acc ? *o + v : v;
    }
}

// dst (rows, d) = src[idx[r], :] for src (·, d); indices checked on the host.
extern "C" __global__ void gather_rows_f32(const float* src, int d, const unsigned int* idx,
                                           float* dst, int rows) {
    GRID_STRIDE(i, (size_t)rows * d) { dst[i] = src[(size_t)idx[i / d] * d + i % d]; }
}

// dst[idx[r], :] += src[r, :] for src (rows, d). Indices may repeat: atomicAdd, so the order
// of the additions (and the last bits of a repeated row) is not deterministic.
extern "C" __global__ void scatter_add_rows_f32(const float* src, int d, const unsigned int* idx,
                                                float* dst, int rows) {
    GRID_STRIDE(i, (size_t)rows * d) { atomicAdd(dst + (size_t)idx[i / d] * d + i % d, src[i]); }
}

// da (n) += g·2(a−b)/n, db (n) −= g·2(a−b)/n with g = dout[0] (backward of mean((a−b)²)).
extern "C" __global__ void mse_backward_f32(const float* a, const float* b, const float* dout,
                                            float* da, float* db, int n) {
    float g = dout[0] * (2.0f / (float)n);
    GRID_STRIDE(i, n) {
        float r = g * (a[i] - b[i]);
        if (da) da[i] += r;
        if (db) db[i] -= r;
    }
}

// Backward of mean(½(s + (x−μ)²e^{−s})), s = logvar: with g = dout[0]/n and r = (x−μ)e^{−s},
// dμ −= g·r, dx += g·r, ds += g·½(1 − (x−μ)·r); any output may be null.
extern "C" __global__ void gaussian_nll_backward_f32(const float* mu, const float* logvar,
                                                     const float* x, const float* dout,
                                                     float* dmu, float* dlogvar, float* dx,
                                                     int n) {
    float g = dout[0] / (float)n;
    GRID_STRIDE(i, n) {
        float d = x[i] - mu[i];
        float r = d * expf(-logvar[i]);
        if (dmu) dmu[i] -= g * r;
        if (dx) dx[i] += g * r;
        if (dlogvar) dlogvar[i] += g * 0.5f * (1.0f - d * r);
    }
}

// Backward of KL = −½(1/rows)Σ(1 + s − μ² − e^s): dμ += g·μ, ds += g·½(e^s − 1), g = dout[0]/rows.
extern "C" __global__ void kl_std_normal_backward_f32(const float* mu, const float* logvar,
                                                      const float* dout, float* dmu,
                                                      float* dlogvar, int n, int rows) {
    float g = dout[0] / (float)rows;
    GRID_STRIDE(i, n) {
        if (dmu) dmu[i] += g * mu[i];
        if (dlogvar) dlogvar[i] += g * 0.5f * (expf(logvar[i]) - 1.0f);
    }
}

// One Adam-family step on p, g, m, v (n), moments in f64 like the CPU twin:
// g' = g + wd·p; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²;
// p −= step_size·m / (denom_scale·√v + denom_eps).
extern "C" __global__ void adam_update_f32(float* p, const float* g, float* m, float* v, int n,
                                           double beta1, double beta2, double weight_decay,
                                           double step_size, double denom_scale,
                                           double denom_eps) {
    GRID_STRIDE(i, n) {
        double pi = (double)p[i];
        double gi = (double)g[i] + weight_decay * pi;
        double mi = beta1 * (double)m[i] + (1.0 - beta1) * gi;
        double vi = beta2 * (double)v[i] + (1.0 - beta2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)(pi - step_size * mi / (denom_scale * sqrt(vi) + denom_eps));
    }
}
