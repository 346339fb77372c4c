//! The EDM sampler steps of Algorithm 1 on the device (`kernels/edm.cu`): the guided score,
//! the Euler predictor and the correction with noise injection, one thread per coordinate.
//! CPU twins: [`crate::pointcloud::dps::edm_score`], [`crate::pointcloud::dps::edm_euler`],
//! [`crate::pointcloud::dps::edm_correct`] (what `dps()` runs), compared in
//! `tests/cuda_kernels.rs`.

use super::backend::{grid, int, CudaBackend};
use super::kernels as k;
use crate::backend::cpu::check;
use crate::Result;
use cudarc::driver::CudaSlice;

impl CudaBackend {
    /// S = (D − x)/t² − g (all of length n).
    pub fn edm_score(
        &self,
        x: &CudaSlice<f32>,
        d: &CudaSlice<f32>,
        g: &CudaSlice<f32>,
        t: f64,
        s: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = x.len();
        check("edm_score: D", n, d.len())?;
        check("edm_score: g", n, g.len())?;
        check("edm_score: S", n, s.len())?;
        let ni = int("edm_score", n)?;
        // SAFETY: the kernel touches index i < n of the four buffers, each of length n.
        unsafe {
            k::edm_score_f32(
                &self.launcher(),
                grid(n),
                x,
                d,
                g,
                (1.0 / (t * t)) as f32,
                s,
                ni,
            )
        }?;
        Ok(())
    }

    /// x̃ = x + c_dt·S.
    pub fn edm_euler(
        &self,
        x: &CudaSlice<f32>,
        s: &CudaSlice<f32>,
        c_dt: f64,
        xe: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = x.len();
        check("edm_euler: S", n, s.len())?;
        check("edm_euler: x̃", n, xe.len())?;
        let ni = int("edm_euler", n)?;
        // SAFETY: the kernel touches index i < n of the three buffers, each of length n.
        unsafe { k::edm_euler_f32(&self.launcher(), grid(n), x, s, c_dt as f32, xe, ni) }?;
        Ok(())
    }

    /// x += a1·S + a2·S' + sd·noise.
    #[allow(clippy::too_many_arguments)]
    pub fn edm_correct(
        &self,
        x: &mut CudaSlice<f32>,
        s1: &CudaSlice<f32>,
        s2: &CudaSlice<f32>,
        a1: f64,
        a2: f64,
        sd: f64,
        noise: &CudaSlice<f32>,
    ) -> Result<()> {
        let n = x.len();
        check("edm_correct: S", n, s1.len())?;
        check("edm_correct: S'", n, s2.len())?;
        check("edm_correct: noise", n, noise.len())?;
        let ni = int("edm_correct", n)?;
        // SAFETY: the kernel touches index i < n of the four buffers, each of length n.
        unsafe {
            k::edm_correct_f32(
                &self.launcher(),
                grid(n),
                x,
                s1,
                s2,
                a1 as f32,
                a2 as f32,
                sd as f32,
                noise,
                ni,
            )
        }?;
        Ok(())
    }
}
