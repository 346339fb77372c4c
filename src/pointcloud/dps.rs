//! Cloud priors and posterior sampling (in progress: the lead's Algorithm 1 lands here; this
//! file holds the prior interface the transformer implements).

/// A denoiser over batches of clouds: D(x; t) for x (b, n, 3), one t per cloud.
pub trait CloudPrior: Sync {
    /// Points per cloud n.
    fn n_points(&self) -> usize;
    /// D(x; t), shape (b, n, 3).
    fn denoise(&self, x: &[f64], t: &[f64]) -> crate::Result<Vec<f64>>;
    /// D(x; t) and the vector–Jacobian product vᵀ ∂D/∂x, where v = cot(D) is computed by the
    /// callback from D (shape (b, n, 3) both).
    #[allow(clippy::type_complexity)]
    fn denoise_vjp(
        &self,
        x: &[f64],
        t: &[f64],
        cot: &mut dyn FnMut(&[f64]) -> crate::Result<Vec<f64>>,
    ) -> crate::Result<(Vec<f64>, Vec<f64>)>;
}
