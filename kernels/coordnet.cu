// The coordinate network's geometry: positional encoding (Fourier features), central-slice
// coordinates (the masked lattice rotated per image) and the Hermitian half-lattice assembly.
// CPU twins: `CpuBackend::fourier_features{,_backward}` and `backend::decode::forward_composed`
// / `backward_composed` (src/backend/decode.rs).

// Fourier features y (n, 2m + c − 3) of coords (n, c), c ≥ 3, frequencies F (m, 3) in `groups`
// equal row groups (per = m/groups rows each): k_q = coords[i, 0..3]·F_q; row i is, group by
// group, [sin k_q for the group's rows, cos k_q for the group's rows], then coords[i, 3..c].
// One thread per (row, q < m + c − 3).
extern "C" __global__ void fourier_features_f32(const float* coords, int n, int c,
                                                const float* freqs, int m, int groups,
                                                float* y) {
    int per = m / groups, w = 2 * m + c - 3, cols = m + c - 3;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < (size_t)n * cols;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t i = idx / cols;
        int q = (int)(idx % cols);
        const float* x = coords + i * c;
        float* r = y + i * w;
        if (q < m) {
            const float* f = freqs + (size_t)q * 3;
            float k = dot3_rn(x[0], f[0], x[1], f[1], x[2], f[2]);
            int g = q / per, j = q - g * per;
            r[2 * g * per + j] = sinf(k);
            r[2 * g * per + per + j] = cosf(k);
        } else {
            r[2 * m + (q - m)] = x[3 + (q - m)];
        }
    }
}

// dcoords (n, c) += ∂y/∂coords·dy for fourier_features_f32: with k_q as above,
// dk_q = dy[sin k_q]·cos k_q − dy[cos k_q]·sin k_q, dcoords[i, j<3] += Σ_q dk_q F_qj, and the
// latent columns pass dy through. One thread per row.
extern "C" __global__ void fourier_features_backward_f32(const float* coords, int n, int c,
                                                         const float* freqs, int m, int groups,
                                                         const float* dy, float* dcoords) {
    int per = m / groups, w = 2 * m + c - 3;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float* x = coords + i * c;
        const float* g = dy + i * w;
        float* r = dcoords + i * c;
        float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f;
        for (int q = 0; q < m; q++) {
            const float* f = freqs + (size_t)q * 3;
            float k = dot3_rn(x[0], f[0], x[1], f[1], x[2], f[2]);
            int gi = q / per, j = q - gi * per;
            float s, co;
            sincosf(k, &s, &co);
            float dk = g[2 * gi * per + j] * co - g[2 * gi * per + per + j] * s;
            d0 += dk * f[0];
            d1 += dk * f[1];
            d2 += dk * f[2];
        }
        r[0] += d0;
        r[1] += d1;
        r[2] += d2;
        for (int j = 3; j < c; j++) r[j] += g[2 * m + j - 3];
    }
}

// Decoder input rows x (nb·ne, 3 + zdim) and conjugation signs (nb·ne) for the masked lattice
// coords (P, 3) rotated by rot (nb, 3, 3) with latents z (nb, zdim) (null when zdim = 0):
// x[b, i, 0..3] = coords[i]·R_b (row vector times matrix), then z_b. With `fourier`, only the
// first ne = ⌈P/2⌉ points are evaluated and rows with x_z > 0 are negated, sign = −1 (cryoDRGN
// evaluates z ≤ 0 only and conjugates). The rotation is computed without FMA contraction so the
// sign decisions match the CPU twin bit for bit. One thread per (b, i).
extern "C" __global__ void slice_coords_f32(const float* coords, const float* rot,
                                            const float* z, int nb, int ne, int zdim,
                                            int fourier, float* x, float* sign) {
    int cin = 3 + zdim;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < (size_t)nb * ne;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t b = idx / ne, i = idx % ne;
        const float* c = coords + i * 3;
        const float* r = rot + b * 9;
        float* row = x + idx * cin;
        float v[3];
        for (int j = 0; j < 3; j++) v[j] = dot3_rn(c[0], r[j], c[1], r[3 + j], c[2], r[6 + j]);
        float s = 1.0f;
        if (fourier && v[2] > 0.0f) {
            for (int j = 0; j < 3; j++) v[j] = -v[j];
            s = -1.0f;
        }
        for (int j = 0; j < 3; j++) row[j] = v[j];
        for (int j = 0; j < zdim; j++) row[3 + j] = z[b * zdim + j];
        sign[idx] = s;
    }
}

// Hermitian assembly y (nb, P) from the network output top (nb·ne, 2) = (re, im) on the first
// ne = ⌈P/2⌉ points and the signs from slice_coords_f32, with c = ⌊P/2⌋ and im ← s·im:
// y[b, i] = re_i − im_i for i < ne, y[b, ne + j] = re_k + im_k with k = c − 1 − j.
// One thread per output (b, p).
extern "C" __global__ void hermitian_assemble_f32(const float* top, const float* sign, int nb,
                                                  int P, float* y) {
    int ne = (P + 1) / 2, c = P / 2;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < (size_t)nb * P;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t b = idx / P;
        int p = (int)(idx % P);
        int k = p < ne ? p : c - 1 - (p - ne);
        size_t t = b * ne + k;
        float re = top[2 * t], im = top[2 * t + 1] * sign[t];
        y[idx] = p < ne ? re - im : re + im;
    }
}

// Backward of hermitian_assemble_f32: dtop (nb·ne, 2) = ∂L/∂(re, im) from dy (nb, P) (written,
// not accumulated). Point i < ne gets dy[i] (y_i = re − im) and, when i < c, dy[ne + c − 1 − i]
// (its antipode, re + im); d im is multiplied by the sign. One thread per (b, i).
extern "C" __global__ void hermitian_assemble_backward_f32(const float* dy, const float* sign,
                                                           int nb, int P, float* dtop) {
    int ne = (P + 1) / 2, c = P / 2;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < (size_t)nb * ne;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t b = idx / ne;
        int i = (int)(idx % ne);
        const float* g = dy + b * P;
        float anti = i < c ? g[ne + c - 1 - i] : 0.0f;
        dtop[2 * idx] = g[i] + anti;
        dtop[2 * idx + 1] = sign[idx] * (anti - g[i]);
    }
}
