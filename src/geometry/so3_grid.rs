//! The Hopf-fibration grid on SO(3) (Yershova, Jain, LaValle & Mitchell 2010, "Generating uniform
//! incremental grids on SO(3) using the Hopf fibration") and its refinement for branch-and-bound pose
//! search, as the reference's `so3_grid.py`.
//!
//! At resolution `r` the grid is the product of HEALPix nested pixels on S² (`nside = 2^r`,
//! `12·4^r` pixels, `(theta, phi)`) and `6·2^r` in-plane angles `psi` on S¹, so `72·8^r` points.
//! Point `(s2, s1)` has flat index `s2·(6·2^r) + s1` (S² slow, S¹ fast) and quaternion
//! [`hopf_to_quat`]`(theta[s2], phi[s2], psi[s1])`, stored as the reference stores it
//! (see [`crate::geometry::quaternion`] for how it becomes a matrix).
//!
//! Deviations from the reference: quaternions are returned in f64 (the reference casts them to
//! f32). [`get_neighbor`] ranks candidates in f32 like the reference, but breaks exact distance ties
//! by candidate order (a stable sort), where numpy's unstable `argsort` may order tied children
//! differently; the chosen set agreed with the reference at every grid point for `r ≤ 3` and along
//! random refinement chains down to `r = 4`.

use crate::geometry::healpix::pix2ang_nest;
use crate::geometry::quaternion::Quat;
use std::f64::consts::PI;

/// Number of in-plane angles at resolution `resol`, `6·2^resol`.
pub fn n_s1(resol: u32) -> u64 {
    6 << resol
}

/// Number of HEALPix pixels at resolution `resol`, `12·4^resol` (`nside = 2^resol`).
pub fn n_s2(resol: u32) -> u64 {
    12 << (2 * resol)
}

/// Number of grid points at resolution `resol`, `72·8^resol`.
pub fn n_so3(resol: u32) -> u64 {
    n_s1(resol) * n_s2(resol)
}

/// In-plane angles `psi_k = k·dt + dt/2`, `dt = 2π/(6·2^resol)` (radians), as `grid_s1`.
pub fn grid_s1(resol: u32) -> Vec<f64> {
    let n = n_s1(resol);
    let dt = 2.0 * PI / n as f64;
    (0..n).map(|k| k as f64 * dt + dt / 2.0).collect()
}

/// HEALPix nested pixel centres `(theta, phi)` (radians) for `nside = 2^resol`, as `grid_s2`.
pub fn grid_s2(resol: u32) -> Vec<(f64, f64)> {
    let nside = 1u64 << resol;
    (0..n_s2(resol)).map(|p| pix2ang_nest(nside, p)).collect()
}

/// Hopf coordinates to a quaternion, as `hopf_to_quat` (Yershova et al. eq. 5):
/// `(cos(θ/2) cos(ψ/2), cos(θ/2) sin(ψ/2), sin(θ/2) cos(φ + ψ/2), sin(θ/2) sin(φ + ψ/2))`,
/// `theta ∈ [0, π]`, `phi, psi ∈ [0, 2π)` (radians).
pub fn hopf_to_quat(theta: f64, phi: f64, psi: f64) -> Quat {
    let (st, ct) = (theta / 2.0).sin_cos();
    let (sp, cp) = (psi / 2.0).sin_cos();
    let (sa, ca) = (phi + psi / 2.0).sin_cos();
    [ct * cp, ct * sp, st * ca, st * sa]
}

/// The SO(3) grid at resolution `resol`: `72·8^resol` quaternions, S² pixel slow and S¹ angle fast,
/// as `grid_SO3`.
pub fn grid_so3(resol: u32) -> Vec<Quat> {
    let psi = grid_s1(resol);
    grid_s2(resol)
        .into_iter()
        .flat_map(|(theta, phi)| psi.iter().map(move |&p| hopf_to_quat(theta, phi, p)))
        .collect()
}

/// The S² part of the grid with `psi = 0`: `12·4^resol` quaternions, as `s2_grid_SO3` (the base
/// grid of the fast in-plane search).
pub fn s2_grid_so3(resol: u32) -> Vec<Quat> {
    grid_s2(resol)
        .into_iter()
        .map(|(theta, phi)| hopf_to_quat(theta, phi, 0.0))
        .collect()
}

/// `(s2, s1)` of flat grid index `ind` at resolution `resol`: `(ind / (6·2^resol), ind % (6·2^resol))`,
/// as `get_base_ind`.
pub fn base_ind(ind: u64, resol: u32) -> (u64, u64) {
    (ind / n_s1(resol), ind % n_s1(resol))
}

/// Flat grid index of `(s2, s1)` at resolution `resol`, the inverse of [`base_ind`].
pub fn flat_ind(s2: u64, s1: u64, resol: u32) -> u64 {
    s2 * n_s1(resol) + s1
}

/// The 4 nested HEALPix children of pixel `s2` at resolution `cur_res + 1`: indices `4·s2 + 0..4` and
/// their `(theta, phi)`, as `get_s2_neighbor`.
///
/// # Panics
/// If `s2 >= 12·4^cur_res`.
pub fn s2_neighbors(s2: u64, cur_res: u32) -> [(u64, f64, f64); 4] {
    let nside = 1u64 << (cur_res + 1);
    std::array::from_fn(|k| {
        let p = 4 * s2 + k as u64;
        let (theta, phi) = pix2ang_nest(nside, p);
        (p, theta, phi)
    })
}

/// The 4 in-plane candidates for angle `s1` at resolution `cur_res + 1`: indices `2·s1 − 1 ..= 2·s1 + 2`
/// and their angles `psi = k·dt + dt/2`, `dt = 2π/(6·2^(cur_res+1))`, as `get_s1_neighbor`.
///
/// Like the reference, only the first index wraps (`−1 → 6·2^(cur_res+1) − 1`); the last may be
/// `6·2^(cur_res+1)` or more, whose angle is `≥ 2π` — the same rotation as its wrapped index with
/// the quaternion's sign flipped. The index is returned unwrapped, as the reference returns it.
pub fn s1_neighbors(s1: u64, cur_res: u32) -> [(u64, f64); 4] {
    let n = n_s1(cur_res + 1);
    let dt = 2.0 * PI / n as f64;
    std::array::from_fn(|k| {
        let i = if s1 == 0 && k == 0 {
            n - 1
        } else {
            2 * s1 + k as u64 - 1
        };
        (i, i as f64 * dt + dt / 2.0)
    })
}

/// One refined grid point: its quaternion and its `(s2, s1)` indices at the next resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Quaternion ([`hopf_to_quat`] of the indices' angles).
    pub quat: Quat,
    /// HEALPix nested pixel at the next resolution.
    pub s2: u64,
    /// In-plane index at the next resolution (may be `≥ 6·2^(cur_res+1)`, see [`s1_neighbors`]).
    pub s1: u64,
}

/// The 8 points at resolution `cur_res + 1` that refine grid point `(s2, s1)` with quaternion `quat`,
/// as `get_neighbor`: of the 16 candidates (4 S² children of [`s2_neighbors`] × 4 in-plane candidates
/// of [`s1_neighbors`], S² slow), the 8 nearest to `quat` by `min(|c − q|², |c + q|²)`.
///
/// The distances are computed in f32 from f32-rounded quaternions, as in the reference (where
/// every quaternion is f32); this matters because many candidates are equidistant in exact
/// arithmetic, and f32 rounding is what picks among them. Exact f32 ties keep candidate order.
/// Returned nearest first.
///
/// # Panics
/// If `s2 >= 12·4^cur_res`.
pub fn get_neighbor(quat: &Quat, s2: u64, s1: u64, cur_res: u32) -> [Neighbor; 8] {
    let s2n = s2_neighbors(s2, cur_res);
    let s1n = s1_neighbors(s1, cur_res);
    let cand: [Neighbor; 16] = std::array::from_fn(|c| {
        let (p, theta, phi) = s2n[c / 4];
        let (k, psi) = s1n[c % 4];
        Neighbor {
            quat: hopf_to_quat(theta, phi, psi),
            s2: p,
            s1: k,
        }
    });
    let q32 = quat.map(|x| x as f32);
    // numpy: np.sum((quat_n - quat) ** 2, axis=1) in f32, a left-to-right sum over 4 terms.
    let sq = |c: &Quat, sign: f32| {
        (0..4).fold(-0.0f32, |acc, i| {
            let d = c[i] as f32 + sign * q32[i];
            acc + d * d
        })
    };
    let dist: Vec<f32> = cand
        .iter()
        .map(|c| sq(&c.quat, -1.0).min(sq(&c.quat, 1.0)))
        .collect();
    let mut order: [usize; 16] = std::array::from_fn(|i| i);
    order.sort_by(|&a, &b| dist[a].total_cmp(&dist[b]));
    std::array::from_fn(|i| cand[order[i]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_index_round_trip() {
        assert_eq!((n_so3(0), n_so3(1), n_so3(2)), (72, 576, 4608));
        assert_eq!(grid_so3(1).len(), 576);
        for ind in [0, 5, 6, 71] {
            let (a, b) = base_ind(ind, 0);
            assert_eq!(flat_ind(a, b, 0), ind);
        }
        assert_eq!(base_ind(13, 1), (1, 1));
    }

    #[test]
    fn s1_candidates_wrap_like_the_reference() {
        let i: Vec<u64> = s1_neighbors(0, 0).iter().map(|x| x.0).collect();
        assert_eq!(i, [11, 0, 1, 2]);
        let i: Vec<u64> = s1_neighbors(5, 0).iter().map(|x| x.0).collect();
        assert_eq!(i, [9, 10, 11, 12]);
    }
}
