//! Exact linear sum assignment for a rectangular cost matrix, as `scipy.optimize.linear_sum_assignment`.
//!
//! Given an n×m cost matrix C (row-major), find the injection σ of the smaller side into the larger
//! one that minimises Σ C[i, σ(i)]: every row is assigned when n ≤ m, every column when n > m.
//!
//! The solver is the shortest-augmenting-path form of the Hungarian method with dual potentials
//! (Jonker & Volgenant 1987; the e-maxx formulation): rows are added one at a time, each by a
//! Dijkstra-like search over reduced costs `C[i, j] − u[i] − v[j] ≥ 0`, so the whole solve is
//! O(n²m) for n ≤ m (the matrix is transposed otherwise). It is exact in exact arithmetic; in f64
//! the total is optimal up to rounding of the reduced costs.

use crate::{Error, Result};

/// The optimal assignment: pairs `(rows[k], cols[k])`, sorted by row as scipy returns them.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// Row indices (ascending), min(n, m) of them.
    pub rows: Vec<usize>,
    /// The column assigned to each entry of `rows`.
    pub cols: Vec<usize>,
    /// `Σ_k C[rows[k], cols[k]]`.
    pub cost: f64,
}

/// Solve min_σ Σ C[i, σ(i)] for the n×m row-major `cost` (n ≤ m assigns every row, n > m every
/// column). Errors when `cost.len() != n·m` or a cost is not finite; an empty side gives an empty
/// assignment of cost 0.
pub fn linear_sum_assignment(cost: &[f64], n: usize, m: usize) -> Result<Assignment> {
    if n.checked_mul(m) != Some(cost.len()) {
        return Err(Error::Shape {
            what: "linear_sum_assignment cost matrix".into(),
            expected: format!("{n}×{m} = {} entries", n.saturating_mul(m)),
            got: format!("{} entries", cost.len()),
        });
    }
    if let Some(k) = cost.iter().position(|c| !c.is_finite()) {
        return Err(Error::invalid(format!(
            "linear_sum_assignment: cost[{}, {}] = {} is not finite",
            k / m,
            k % m,
            cost[k]
        )));
    }
    if n == 0 || m == 0 {
        return Ok(Assignment {
            rows: vec![],
            cols: vec![],
            cost: 0.0,
        });
    }
    let mut pairs: Vec<(usize, usize)> = if n <= m {
        solve_rows(|i, j| cost[i * m + j], n, m)?
    } else {
        // transpose: assign every column to a distinct row
        solve_rows(|i, j| cost[j * m + i], m, n)?
            .into_iter()
            .map(|(c, r)| (r, c))
            .collect()
    };
    pairs.sort_unstable();
    let total = pairs.iter().map(|&(r, c)| cost[r * m + c]).sum();
    Ok(Assignment {
        rows: pairs.iter().map(|p| p.0).collect(),
        cols: pairs.iter().map(|p| p.1).collect(),
        cost: total,
    })
}

/// Shortest augmenting paths for n ≤ m: returns (row, column) for every row.
/// Indices are 1-based inside, with row/column 0 as the virtual source of each augmentation.
fn solve_rows(a: impl Fn(usize, usize) -> f64, n: usize, m: usize) -> Result<Vec<(usize, usize)>> {
    debug_assert!(n <= m);
    let mut u = vec![0.0f64; n + 1]; // row potentials
    let mut v = vec![0.0f64; m + 1]; // column potentials
    let mut p = vec![0usize; m + 1]; // p[j]: row matched to column j (0 = free)
    let mut way = vec![0usize; m + 1]; // previous column on the shortest path
    let mut minv = vec![0.0f64; m + 1];
    let mut used = vec![false; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        minv.fill(f64::INFINITY);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    // reduced cost of extending the path from row i0 to column j
                    let cur = a(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            if j1 == 0 {
                // only when the reduced costs overflowed (costs spanning ~1e308)
                return Err(Error::invalid(
                    "linear_sum_assignment: costs too large in magnitude (reduced costs overflow f64)",
                ));
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        // augment along the path back to the source
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    Ok((1..=m)
        .filter(|&j| p[j] != 0)
        .map(|j| (p[j] - 1, j - 1))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Minimum over all injections of the smaller side into the larger (brute force).
    fn brute_force(cost: &[f64], n: usize, m: usize) -> f64 {
        fn rec(
            c: &dyn Fn(usize, usize) -> f64,
            i: usize,
            k: usize,
            big: usize,
            used: &mut [bool],
        ) -> f64 {
            if i == k {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..big {
                if !used[j] {
                    used[j] = true;
                    best = best.min(c(i, j) + rec(c, i + 1, k, big, used));
                    used[j] = false;
                }
            }
            best
        }
        if n <= m {
            rec(&|i, j| cost[i * m + j], 0, n, m, &mut vec![false; m])
        } else {
            rec(&|i, j| cost[j * m + i], 0, m, n, &mut vec![false; n])
        }
    }

    /// The assignment is a valid injection of the smaller side, sorted by row, with its cost.
    fn check_valid(a: &Assignment, cost: &[f64], n: usize, m: usize) {
        let k = n.min(m);
        assert_eq!(a.rows.len(), k);
        assert_eq!(a.cols.len(), k);
        assert!(a.rows.windows(2).all(|w| w[0] < w[1]), "rows {:?}", a.rows);
        let mut cols = a.cols.clone();
        cols.sort_unstable();
        cols.dedup();
        assert_eq!(cols.len(), k, "repeated column in {:?}", a.cols);
        assert!(a.rows.iter().all(|&r| r < n) && a.cols.iter().all(|&c| c < m));
        let total: f64 = a
            .rows
            .iter()
            .zip(&a.cols)
            .map(|(&r, &c)| cost[r * m + c])
            .sum();
        assert_eq!(total, a.cost);
    }

    #[test]
    fn equals_brute_force_all_shapes() {
        for n in 1..=6 {
            for m in 1..=6 {
                for seed in 0..25u64 {
                    let mut rng =
                        rand::rngs::StdRng::seed_from_u64(seed * 1000 + (n * 10 + m) as u64);
                    let cost: Vec<f64> =
                        (0..n * m).map(|_| rng.random_range(-10.0..10.0)).collect();
                    let a = linear_sum_assignment(&cost, n, m).unwrap();
                    check_valid(&a, &cost, n, m);
                    let bf = brute_force(&cost, n, m);
                    assert!(
                        (a.cost - bf).abs() <= 1e-9,
                        "{n}×{m} seed {seed}: {} vs brute force {bf}",
                        a.cost
                    );
                }
            }
        }
    }

    #[test]
    fn ties_equal_brute_force() {
        // small integer costs: many optimal assignments
        for n in 1..=6 {
            for m in 1..=6 {
                for seed in 0..10u64 {
                    let mut rng =
                        rand::rngs::StdRng::seed_from_u64(seed + 77 * (n * 10 + m) as u64);
                    let cost: Vec<f64> =
                        (0..n * m).map(|_| rng.random_range(0..3) as f64).collect();
                    let a = linear_sum_assignment(&cost, n, m).unwrap();
                    check_valid(&a, &cost, n, m);
                    assert_eq!(a.cost, brute_force(&cost, n, m), "{n}×{m} seed {seed}");
                }
            }
        }
        let a = linear_sum_assignment(&[1.0; 12], 3, 4).unwrap();
        check_valid(&a, &[1.0; 12], 3, 4);
        assert_eq!(a.cost, 3.0);
    }

    #[test]
    fn known_3x3() {
        // scipy.optimize.linear_sum_assignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]])
        // -> (array([0, 1, 2]), array([1, 0, 2])), cost 5
        let c = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        let a = linear_sum_assignment(&c, 3, 3).unwrap();
        assert_eq!(a.rows, vec![0, 1, 2]);
        assert_eq!(a.cols, vec![1, 0, 2]);
        assert_eq!(a.cost, 5.0);
    }

    #[test]
    fn rectangular_both_ways() {
        // 2×4: row 0 takes column 3, row 1 column 1
        let c = [5.0, 4.0, 9.0, 1.0, 7.0, 2.0, 3.0, 8.0];
        let a = linear_sum_assignment(&c, 2, 4).unwrap();
        assert_eq!(
            (a.rows.clone(), a.cols.clone(), a.cost),
            (vec![0, 1], vec![3, 1], 3.0)
        );
        // its transpose (4×2): every column assigned, rows sorted
        let t: Vec<f64> = (0..8).map(|k| c[(k % 2) * 4 + k / 2]).collect();
        let b = linear_sum_assignment(&t, 4, 2).unwrap();
        assert_eq!((b.rows, b.cols, b.cost), (vec![1, 3], vec![1, 0], 3.0));
        // negative costs (maximisation by negation) work the same
        let neg: Vec<f64> = c.iter().map(|x| -x).collect();
        let d = linear_sum_assignment(&neg, 2, 4).unwrap();
        assert_eq!((d.cols, d.cost), (vec![2, 3], -17.0));
    }

    #[test]
    fn errors_and_empty() {
        assert!(linear_sum_assignment(&[1.0; 5], 2, 3).is_err());
        let e = linear_sum_assignment(&[1.0, f64::NAN, 0.0, 2.0], 2, 2).unwrap_err();
        assert!(e.to_string().contains("cost[0, 1]"), "{e}");
        assert!(linear_sum_assignment(&[f64::INFINITY], 1, 1).is_err());
        let a = linear_sum_assignment(&[], 0, 3).unwrap();
        assert!(a.rows.is_empty() && a.cost == 0.0);
    }
}
