// EDM sampler steps of Algorithm 1 (diffusion posterior sampling on point clouds, spec §2):
// one thread per coordinate, grid-stride loops. CPU twins: `pointcloud::dps::{edm_score,
// edm_euler, edm_correct}` (src/pointcloud/dps.rs), which `dps()` itself runs on the host.

#define EDM_GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)(n); \
         i += (size_t)gridDim.x * blockDim.x)

// Guided score S (n) = (D − x)·inv_t2 − g: x the state, D = D(x; t), g = ζ·∇_x E(D) (the
// denoiser's VJP of the energy gradient), inv_t2 = 1/t².
extern "C" __global__ void edm_score_f32(const float* x, const float* d, const float* g,
                                         float inv_t2, float* s, int n) {
    EDM_GRID_STRIDE(i, n) { s[i] = (d[i] - x[i]) * inv_t2 - g[i]; }
}

// Euler predictor x̃ (n) = x + c_dt·S, c_dt = c_i·Δt (line 6 of Algorithm 1).
extern "C" __global__ void edm_euler_f32(const float* x, const float* s, float c_dt, float* xe,
                                         int n) {
    EDM_GRID_STRIDE(i, n) { xe[i] = x[i] + c_dt * s[i]; }
}

// Correction with noise injection (line 8): x (n) += a1·S + a2·S' + sd·noise, where
// a1 = c_i·Δt/2, a2 = c_i·Δt/2 (literal) or c_{i+1}·Δt/2 (Karras), sd = √(2β(t_i)·t_i²·Δt) and
// noise ~ N(0, 1) drawn on the host (so both twins see the same numbers).
extern "C" __global__ void edm_correct_f32(float* x, const float* s1, const float* s2, float a1,
                                           float a2, float sd, const float* noise, int n) {
    EDM_GRID_STRIDE(i, n) { x[i] += a1 * s1[i] + a2 * s2[i] + sd * noise[i]; }
}
