//! The 2-D translation grid of branch-and-bound pose search and its refinement, as the reference's
//! `shift_grid.py`.
//!
//! At resolution `r` a 1-D axis has `ngrid·2^r` cell centres spanning `[−extent, extent]` (pixels):
//! `t_k = k·dt + dt/2 − extent + shift`, `dt = 2·extent/(ngrid·2^r)`. The 2-D grid has x fast, y slow;
//! flat index `yi·n + xi`.
//!
//! Deviation: values are computed in f64 (the reference computes and returns f32).
//! Reference quirk kept: [`get_neighbor`] ignores the `xshift`/`yshift` offsets that
//! [`base_shift_grid`] applies.

/// Cell centres of one axis at resolution `resol` (pixels), as `grid_1d`: `ngrid·2^resol` values
/// `k·dt + dt/2 − extent + shift`, `dt = 2·extent/(ngrid·2^resol)`.
pub fn grid_1d(resol: u32, extent: f64, ngrid: usize, shift: f64) -> Vec<f64> {
    let n = ngrid << resol;
    let dt = 2.0 * extent / n as f64;
    (0..n)
        .map(|k| k as f64 * dt + dt / 2.0 - extent + shift)
        .collect()
}

/// The 2-D translation grid `(x, y)` in pixels, x fast and y slow: `(ngrid·2^resol)²` points, as
/// `base_shift_grid` / `grid_2d`.
pub fn base_shift_grid(
    resol: u32,
    extent: f64,
    ngrid: usize,
    xshift: f64,
    yshift: f64,
) -> Vec<[f64; 2]> {
    let x = grid_1d(resol, extent, ngrid, xshift);
    let y = grid_1d(resol, extent, ngrid, yshift);
    y.iter()
        .flat_map(|&yv| x.iter().map(move |&xv| [xv, yv]))
        .collect()
}

/// `(xi, yi)` of flat index `ind` on an axis of `n` cells: `(ind % n, ind / n)`, as `get_base_ind`
/// (the reference passes `ngrid`, the base axis length).
pub fn base_ind(ind: u64, n: u64) -> (u64, u64) {
    (ind % n, ind / n)
}

/// The 2 children of cell `i` on one axis at resolution `cur_res + 1`: indices `2i, 2i + 1` and their
/// centres `k·dt + dt/2 − extent`, `dt = 2·extent/(ngrid·2^(cur_res+1))`, as `get_1d_neighbor`.
pub fn neighbors_1d(i: u64, cur_res: u32, extent: f64, ngrid: usize) -> [(u64, f64); 2] {
    let n = ngrid << (cur_res + 1);
    let dt = 2.0 * extent / n as f64;
    std::array::from_fn(|k| {
        let c = 2 * i + k as u64;
        (c, dt * c as f64 + dt / 2.0 - extent)
    })
}

/// The 4 children of cell `(xi, yi)` at resolution `cur_res + 1`, x fast: `[(x0,y0), (x1,y0),
/// (x0,y1), (x1,y1)]` with their `(xi, yi)` indices, as `get_neighbor`. Each child sits a quarter
/// of the parent's step from the parent's centre.
pub fn get_neighbor(
    xi: u64,
    yi: u64,
    cur_res: u32,
    extent: f64,
    ngrid: usize,
) -> [([f64; 2], [u64; 2]); 4] {
    let x = neighbors_1d(xi, cur_res, extent, ngrid);
    let y = neighbors_1d(yi, cur_res, extent, ngrid);
    std::array::from_fn(|k| {
        let (xc, yc) = (x[k % 2], y[k / 2]);
        ([xc.1, yc.1], [xc.0, yc.0])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_1d_values() {
        // grid_1d(0, 10, 7): dt = 20/7, first centre 10/7 − 10.
        let g = grid_1d(0, 10.0, 7, 0.0);
        assert_eq!(g.len(), 7);
        assert!((g[0] - (10.0 / 7.0 - 10.0)).abs() < 1e-12);
        assert!(g[3].abs() < 1e-12);
        let s = grid_1d(1, 5.0, 7, 2.0);
        assert_eq!(s.len(), 14);
        assert!((s[0] - (5.0 / 14.0 - 5.0 + 2.0)).abs() < 1e-12);
    }
}
