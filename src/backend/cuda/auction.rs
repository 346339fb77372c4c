//! The batched ε-scaling auction of [`CudaBackend`] (`kernels/auction.cu`): every
//! (sample, observation) point problem of a batch in one launch, one block per problem. CPU
//! twin: [`crate::assignment::auction`](mod@crate::assignment::auction) in f32 with `Bidding::Jacobi`, whose results it
//! reproduces exactly (`tests/cuda_kernels.rs`).

use super::backend::{int, CudaBackend};
use super::kernels as k;
use crate::assignment::auction::{
    check_problem, default_bid_cap, points_result, AuctionParams, AuctionResult, AuctionState,
};
use crate::backend::cpu::check;
use crate::backend::Backend;
use crate::{Error, Result};
use cudarc::driver::LaunchConfig;

/// Threads per block (`AU_THREADS`).
const THREADS: u32 = 512;
/// Dynamic shared memory per column (bytes): a packed u64 bid slot and five 4-byte arrays.
const SMEM_PER_COL: usize = 28;
/// Static shared memory of the kernel (bytes: two 32-entry reduction buffers, ptxas `-v`).
const SMEM_STATIC: usize = 256;
/// Shared memory a block may use without opting in to more (bytes).
const SMEM_LIMIT: usize = 48 * 1024;
/// The most columns the kernel's shared-memory plan takes (1746).
pub const AUCTION_MAX_COLS: usize = (SMEM_LIMIT - SMEM_STATIC) / SMEM_PER_COL;
/// Counters per problem (`AU_STATS`): status, warm, phases, bids, rounds.
const STATS: usize = 5;
/// "No column" in the kernel's assignment (`AU_NONE`).
const NONE: u32 = u32::MAX;

impl CudaBackend {
    /// Solves `nb` independent point problems in one launch (one block each): problem b
    /// assigns its n observed points rows (nb, n, dim) to its m model points cols (nb, m, dim),
    /// 1 ≤ n ≤ m ≤ [`AUCTION_MAX_COLS`], 1 ≤ dim ≤ 3, minimising Σ‖row − col‖² within m·ε of
    /// the optimum (see [`crate::assignment::auction`](mod@crate::assignment::auction)).
    /// `states` (nb, host side) give the warm starts (empty: cold) and receive the new prices
    /// and assignments when every problem succeeded (on an error none changes). The results
    /// equal those of `auction_points_batch::<f32>` with `Bidding::Jacobi` (costs reported in
    /// f64 from the coordinates).
    #[allow(clippy::too_many_arguments)]
    pub fn auction_points_batch(
        &self,
        rows: &cudarc::driver::CudaSlice<f32>,
        cols: &cudarc::driver::CudaSlice<f32>,
        nb: usize,
        n: usize,
        m: usize,
        dim: usize,
        params: &AuctionParams,
        states: &mut [AuctionState<f32>],
    ) -> Result<Vec<AuctionResult>> {
        let size = |k: usize| nb.saturating_mul(k).saturating_mul(dim);
        check("auction_points: rows (B, n, dim)", size(n), rows.len())?;
        check("auction_points: cols (B, m, dim)", size(m), cols.len())?;
        check("auction_points: states (B)", nb, states.len())?;
        if !(1..=3).contains(&dim) {
            return Err(Error::invalid(format!(
                "auction_points: dim = {dim}; the kernel takes 1, 2 or 3"
            )));
        }
        if m > AUCTION_MAX_COLS {
            return Err(Error::invalid(format!(
                "auction_points: m = {m} columns need {} B of shared memory per block (limit \
                 {SMEM_LIMIT} B: m ≤ {AUCTION_MAX_COLS})",
                SMEM_PER_COL * m + SMEM_STATIC
            )));
        }
        let eps_final = check_problem(n, m, params, &AuctionState::<f32>::new())?;
        for st in states.iter() {
            check_problem(n, m, params, st)?;
        }
        if nb == 0 {
            return Ok(Vec::new());
        }
        let cap = params
            .max_bids_per_phase
            .unwrap_or_else(|| default_bid_cap(m))
            .min(i32::MAX as u64) as i32;
        // Empty states: zero prices and no assignment, which the kernel takes as a cold start.
        let mut p_host = vec![0.0f32; nb * m];
        let mut a_host = vec![NONE; nb * m];
        for (b, st) in states.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            p_host[b * m..(b + 1) * m].copy_from_slice(st.prices());
            for (a, &j) in a_host[b * m..(b + 1) * m].iter_mut().zip(st.col_of_row()) {
                *a = u32::try_from(j).unwrap_or(NONE);
            }
        }
        let mut prices = self.upload(&p_host)?;
        let mut assign = self.upload_u32(&a_host)?;
        let mut stats = self.alloc_u32(nb * STATS)?;
        let cfg = LaunchConfig {
            grid_dim: (int("auction_points: nb", nb)? as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: (SMEM_PER_COL * m) as u32,
        };
        // SAFETY: rows, cols and the state buffers hold nb problems of the sizes checked above;
        // one block per problem, whose shared memory holds the 28·m bytes the kernel carves.
        unsafe {
            k::auction_points_f32(
                &self.launcher(),
                cfg,
                rows,
                cols,
                int("auction_points: nb", nb)?,
                int("auction_points: n", n)?,
                int("auction_points: m", m)?,
                int("auction_points: dim", dim)?,
                eps_final,
                cap,
                &mut prices,
                &mut assign,
                &mut stats,
            )
        }?;
        let stats = self.download_u32(&stats, nb * STATS)?;
        for (b, s) in stats.chunks_exact(STATS).enumerate() {
            let why = match s[0] {
                0 => continue,
                1 => format!("a phase needed more than {cap} bids"),
                2 => "a cost is not finite (check the coordinates)".to_string(),
                3 => "a price overflowed".to_string(),
                other => format!("unknown status {other}"),
            };
            return Err(Error::invalid(format!(
                "auction_points_f32: problem {b} ({n}×{m}, dim {dim}): {why}"
            )));
        }
        let prices = self.to_vec(&prices)?;
        let assign = self.download_u32(&assign, nb * m)?;
        let (rows, cols) = (self.to_vec(rows)?, self.to_vec(cols)?);
        Ok(states
            .iter_mut()
            .enumerate()
            .map(|(b, st)| {
                let s = &stats[b * STATS..(b + 1) * STATS];
                points_result(
                    &rows[b * n * dim..(b + 1) * n * dim],
                    &cols[b * m * dim..(b + 1) * m * dim],
                    n,
                    dim,
                    eps_final,
                    prices[b * m..(b + 1) * m].to_vec(),
                    assign[b * m..(b + 1) * m]
                        .iter()
                        .map(|&j| j as usize)
                        .collect(),
                    (s[2], s[3] as u64, s[4] as u64, s[1] != 0),
                    st,
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_kernel() {
        let src = k::module_of("auction_points_f32")
            .expect("auction module")
            .source;
        for line in [
            format!("#define AU_THREADS {THREADS}"),
            format!("#define AU_STATS {STATS}"),
            format!("#define AU_NONE 0x{NONE:x}u"),
            format!("{SMEM_PER_COL} bytes per column"),
        ] {
            assert!(src.contains(&line), "kernels/auction.cu: no `{line}`");
        }
        assert_eq!(AUCTION_MAX_COLS, 1746);
    }
}
