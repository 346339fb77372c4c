//! Geometry and pose-search primitives of [`CudaBackend`] with no `Backend` trait method (yet):
//! central-slice coordinates, Hermitian assembly, CTF, Hartley phase shifts, the
//! branch-and-bound scores and the per-image top-K. CPU twins: `backend/decode.rs`,
//! `fourier::ctf::compute_ctf`, `fourier::shift::translate_ht`, and f64 host references in
//! `tests/cuda_kernels.rs` for `pose_scores` / `top_k_smallest`.

use super::backend::{grid, int, CudaBackend};
use super::kernels as k;
use crate::backend::cpu::check;
use crate::backend::decode::Domain;
use crate::backend::Backend;
use crate::{Error, Result};
use cudarc::driver::{CudaSlice, LaunchConfig};

impl CudaBackend {
    /// Decoder input rows for the masked lattice coords (P, 3) rotated by rot (nb, 3, 3), with
    /// latents z (nb, zdim): returns x (nb·ne, 3 + zdim) and the conjugation signs (nb·ne),
    /// ne = `domain.n_eval(P)` (see `backend/decode.rs`: `Fourier` evaluates the first ⌈P/2⌉
    /// points, negating rows with x_z > 0).
    #[allow(clippy::too_many_arguments)]
    pub fn slice_coords(
        &self,
        coords: &CudaSlice<f32>,
        rot: &CudaSlice<f32>,
        z: Option<&CudaSlice<f32>>,
        nb: usize,
        n_points: usize,
        zdim: usize,
        domain: Domain,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
        check("slice_coords: coords (P, 3)", 3 * n_points, coords.len())?;
        check("slice_coords: rot (B, 3, 3)", 9 * nb, rot.len())?;
        check(
            "slice_coords: z (B, zdim)",
            nb * zdim,
            z.map(|z| z.len()).unwrap_or(0),
        )?;
        let ne = domain.n_eval(n_points);
        let mut x = self.alloc(nb * ne * (3 + zdim))?;
        let mut sign = self.alloc(nb * ne)?;
        // SAFETY: coords holds P ≥ ne points, rot nb matrices, z nb·zdim values (checked); x
        // and sign are allocated for nb·ne rows.
        unsafe {
            k::slice_coords_f32(
                &self.launcher(),
                grid(nb * ne),
                coords,
                rot,
                &z,
                int("slice_coords: nb", nb)?,
                int("slice_coords: ne", ne)?,
                int("slice_coords: zdim", zdim)?,
                (domain == Domain::Fourier) as i32,
                &mut x,
                &mut sign,
            )
        }?;
        Ok((x, sign))
    }

    /// Hermitian assembly y (nb, P) of the network output top (nb·⌈P/2⌉, 2) = (re, im) with
    /// the signs of [`Self::slice_coords`] (see `backend/decode.rs`).
    pub fn hermitian_assemble(
        &self,
        top: &CudaSlice<f32>,
        sign: &CudaSlice<f32>,
        nb: usize,
        n_points: usize,
    ) -> Result<CudaSlice<f32>> {
        let ne = n_points.div_ceil(2);
        check("hermitian_assemble: top (B·ne, 2)", 2 * nb * ne, top.len())?;
        check("hermitian_assemble: sign (B·ne)", nb * ne, sign.len())?;
        let mut y = self.alloc(nb * n_points)?;
        // SAFETY: top and sign hold nb·ne points (checked), y nb·P values.
        unsafe {
            k::hermitian_assemble_f32(
                &self.launcher(),
                grid(nb * n_points),
                top,
                sign,
                int("hermitian_assemble: nb", nb)?,
                int("hermitian_assemble: P", n_points)?,
                &mut y,
            )
        }?;
        Ok(y)
    }

    /// ∂L/∂top (nb·⌈P/2⌉, 2) of [`Self::hermitian_assemble`] from dy (nb, P).
    pub fn hermitian_assemble_backward(
        &self,
        dy: &CudaSlice<f32>,
        sign: &CudaSlice<f32>,
        nb: usize,
        n_points: usize,
    ) -> Result<CudaSlice<f32>> {
        let ne = n_points.div_ceil(2);
        check(
            "hermitian_assemble_backward: dy (B, P)",
            nb * n_points,
            dy.len(),
        )?;
        check(
            "hermitian_assemble_backward: sign (B·ne)",
            nb * ne,
            sign.len(),
        )?;
        let mut d = self.alloc(2 * nb * ne)?;
        // SAFETY: dy holds nb·P values and sign nb·ne (checked); d is (nb·ne, 2).
        unsafe {
            k::hermitian_assemble_backward_f32(
                &self.launcher(),
                grid(nb * ne),
                dy,
                sign,
                int("hermitian_assemble_backward: nb", nb)?,
                int("hermitian_assemble_backward: P", n_points)?,
                &mut d,
            )
        }?;
        Ok(d)
    }

    /// CTFs (nb, P) at lattice frequencies freqs (P, 2) (cycles/pixel) for ctf.pkl rows
    /// params (nb, 9) `[D, Apix, dfU (Å), dfV (Å), dfAng (deg), kV, Cs (mm), w, phase (deg)]`
    /// (`fourier::ctf::ctf_on_lattice` per row).
    pub fn ctf(
        &self,
        freqs: &CudaSlice<f32>,
        params: &CudaSlice<f32>,
        nb: usize,
        n_points: usize,
    ) -> Result<CudaSlice<f32>> {
        check("ctf: freqs (P, 2)", 2 * n_points, freqs.len())?;
        check("ctf: params (B, 9)", 9 * nb, params.len())?;
        let mut out = self.alloc(nb * n_points)?;
        // SAFETY: freqs holds P points and params nb rows of 9 (checked); out is (nb, P).
        unsafe {
            k::ctf_f32(
                &self.launcher(),
                grid(nb * n_points),
                freqs,
                params,
                int("ctf: nb", nb)?,
                int("ctf: P", n_points)?,
                &mut out,
            )
        }?;
        Ok(out)
    }

    /// Hartley images hts (nb, P) translated by shifts (nb, nt, 2) pixels at lattice
    /// frequencies freqs (P, 2) (cycles/pixel, centrally symmetric list): (nb, nt, P)
    /// (`fourier::shift::translate_ht`).
    pub fn translate_ht(
        &self,
        hts: &CudaSlice<f32>,
        freqs: &CudaSlice<f32>,
        shifts: &CudaSlice<f32>,
        nb: usize,
        nt: usize,
        n_points: usize,
    ) -> Result<CudaSlice<f32>> {
        check("translate_ht: hts (B, P)", nb * n_points, hts.len())?;
        check("translate_ht: freqs (P, 2)", 2 * n_points, freqs.len())?;
        check("translate_ht: shifts (B, T, 2)", 2 * nb * nt, shifts.len())?;
        let mut out = self.alloc(nb * nt * n_points)?;
        // SAFETY: every input holds the extents checked above; out is (nb, nt, P).
        unsafe {
            k::translate_ht_f32(
                &self.launcher(),
                grid(nb * nt * n_points),
                hts,
                freqs,
                shifts,
                int("translate_ht: nb", nb)?,
                int("translate_ht: nt", nt)?,
                int("translate_ht: P", n_points)?,
                &mut out,
            )
        }?;
        Ok(out)
    }

    /// Branch-and-bound scores out (nb, nr, nt)[b, r, t] = Σ_p (ctf[b, p]·slices[s(b), r, p]
    /// − images[b, t, p])² over P band-limited lattice points: slices (nb_s, nr, P) with
    /// s(b) = b when `per_image_slices` (nb_s = nb) else 0 (nb_s = 1), images (nb, nt, P)
    /// already translated, ctf (nb, P) or `None`.
    #[allow(clippy::too_many_arguments)]
    pub fn pose_scores(
        &self,
        slices: &CudaSlice<f32>,
        per_image_slices: bool,
        images: &CudaSlice<f32>,
        ctf: Option<&CudaSlice<f32>>,
        nb: usize,
        nr: usize,
        nt: usize,
        n_points: usize,
    ) -> Result<CudaSlice<f32>> {
        crate::backend::pose_score::check_pose_scores(
            slices.len(),
            per_image_slices,
            images.len(),
            ctf.map(|c| c.len()),
            nb,
            nr,
            nt,
            n_points,
            nb * nr * nt,
        )?;
        let mut out = self.alloc(nb * nr * nt)?;
        if nb * nr * nt == 0 {
            return Ok(out);
        }
        if nr.div_ceil(64) > 65535 || nb > 65535 {
            return Err(Error::invalid(format!(
                "pose_scores: {nr} rotations × {nb} images exceed the grid"
            )));
        }
        let cfg = LaunchConfig {
            grid_dim: (nt.div_ceil(16) as u32, nr.div_ceil(64) as u32, nb as u32),
            block_dim: (8, 32, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: slices, images and ctf hold the extents checked above; the grid covers
        // ⌈nt/16⌉ × ⌈nr/64⌉ tiles × nb images and the kernel guards the tile edges.
        unsafe {
            k::pose_scores_f32(
                &self.launcher(),
                cfg,
                slices,
                per_image_slices as i32,
                images,
                &ctf,
                int("pose_scores: nb", nb)?,
                int("pose_scores: nr", nr)?,
                int("pose_scores: nt", nt)?,
                int("pose_scores: P", n_points)?,
                &mut out,
            )
        }?;
        Ok(out)
    }

    /// The k smallest values of each row of x (nb, n) in ascending order (ties by index, NaN
    /// as +∞): (indices (nb, k) into the row — r·nt + t for pose scores —, values (nb, k)).
    /// Costs k·n reads per row (meant for the small k of pose search).
    pub fn top_k_smallest(
        &self,
        x: &CudaSlice<f32>,
        nb: usize,
        n: usize,
        k: usize,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        check("top_k_smallest: x (B, N)", nb * n, x.len())?;
        if k > n {
            return Err(Error::invalid(format!(
                "top_k_smallest: k = {k} exceeds the {n} values per row"
            )));
        }
        if n > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "top_k_smallest: {n} values per row"
            )));
        }
        if nb * k == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut idx = self.alloc_u32(nb * k)?;
        let mut val = self.alloc(nb * k)?;
        let cfg = LaunchConfig {
            grid_dim: (int("top_k_smallest: nb", nb)? as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: x is (nb, n) (checked), one block per row; idx and val hold nb·k slots.
        unsafe {
            k::top_k_smallest_f32(
                &self.launcher(),
                cfg,
                x,
                int("top_k_smallest: n", n)?,
                int("top_k_smallest: k", k)?,
                &mut idx,
                &mut val,
            )
        }?;
        Ok((self.download_u32(&idx, nb * k)?, self.to_vec(&val)?))
    }
}
