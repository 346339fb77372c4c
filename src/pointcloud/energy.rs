//! Energies of a cloud x `(n, 3)` (row vectors, normalised units) given observations, each the
//! squared Frobenius distance at the optimal matching of two point sets (spec §3):
//!
//! - projection k with rotation R_k and points y_k `(M, 2)`:
//!   E_k(x) = min_π Σ_j ‖(U y_k)_{π(j)} − (x_j R_k)_{1:2}‖²;
//! - coarse-grained map y_cg `(M, 3)`: E_cg(x) = min_π Σ_j ‖(U y_cg)_{π(j)} − x_j‖²;
//! - subunit y_su `(L, 3)`, L ≤ n: E_su(x) = min over injections σ of the L subunit points into
//!   the n model points of Σ_l ‖x_{σ(l)} − y_l‖².
//!
//! U brings an M-point observation to n points: all M points once and n − M more drawn uniformly
//! with replacement when M < n, n drawn without replacement when M > n; it is drawn once per
//! [`EnergyModel`] (seeded) and kept for the whole run (spec A8). The total is
//! E = (1/|y|) Σ_o E_o, |y| the number of observation items (A9).
//!
//! **Gradients** at the optimal matching (envelope theorem; the matching is piecewise constant in
//! x): projection ∂E_k/∂x_j = 2((x_j R_k)_{1:2} − (U y_k)_{π⁻¹(j)}) R_{k,:,1:2}ᵀ; coarse map the
//! same without R; subunit 2(x_j − y_l) for each matched pair (j, l), 0 for unmatched points.
//!
//! Each energy needs one linear assignment problem (LAP): exact ([`Solver::Exact`], the
//! Hungarian / Jonker–Volgenant reference) or the ε-scaling auction ([`Solver::Auction`], within
//! n·ε of the optimum, warm-started from the previous solve of the same (sample, item) through
//! [`Workspace`]). The subunit's rectangular L×n problem is always solved exactly: padded with
//! n − L dummy rows the auction is ~100× slower than the exact solver there.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::data::Observations;
use crate::assignment::{auction_points, linear_sum_assignment, AuctionParams, AuctionState};
use crate::{Error, Result};

/// How each LAP is solved.
#[derive(Clone, Debug)]
pub enum Solver {
    /// The exact Hungarian / Jonker–Volgenant solver (O(n³)).
    Exact,
    /// Bertsekas' ε-scaling auction on costs computed on the fly (cost ≤ optimum + n·ε).
    Auction(AuctionParams),
}

/// One observation item, brought to the solver's shape.
#[derive(Clone, Debug)]
enum Item {
    /// rows R (3×3) and the upsampled targets `(n, 2)`
    Proj { rot: [f64; 9], target: Vec<f64> },
    /// upsampled coarse-map means `(n, 3)`
    Cg { target: Vec<f64> },
    /// subunit points `(l, 3)`
    Subunit { target: Vec<f64> },
}

impl Item {
    fn name(&self, k: usize) -> String {
        match self {
            Item::Proj { .. } => format!("proj_{k}"),
            Item::Cg { .. } => "cg".into(),
            Item::Subunit { .. } => "subunit".into(),
        }
    }
}

/// Observations prepared for one cloud size n: the weighted sum of their energies.
#[derive(Debug)]
pub struct EnergyModel {
    n: usize,
    items: Vec<Item>,
    names: Vec<String>,
    weight: f64,
    laps: AtomicU64,
}

/// Warm-start state of the auction: one [`AuctionState`] per (sample, item).
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    states: Vec<AuctionState<f64>>,
}

impl Workspace {
    /// Room for `samples` clouds of `model`'s items (all cold).
    pub fn new(model: &EnergyModel, samples: usize) -> Self {
        Self {
            states: vec![AuctionState::new(); samples * model.items.len()],
        }
    }
}

/// E and ∇E of one cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct Energy {
    /// E = (1/|y|) Σ_o E_o
    pub total: f64,
    /// E_o per item, unweighted, in [`EnergyModel::item_names`] order
    pub items: Vec<f64>,
    /// ∂E/∂x `(n, 3)` (weighted like `total`)
    pub grad: Vec<f64>,
}

/// Row indices of U: all m once, then n − m uniform draws with replacement (m < n); n distinct
/// ones (m > n).
fn upsample_index(m: usize, n: usize, rng: &mut StdRng) -> Vec<usize> {
    if m >= n {
        // partial Fisher–Yates: n distinct of m
        let mut idx: Vec<usize> = (0..m).collect();
        for i in 0..n {
            let j = rng.random_range(i..m);
            idx.swap(i, j);
        }
        idx.truncate(n);
        idx
    } else {
        let mut idx: Vec<usize> = (0..m).collect();
        idx.extend((m..n).map(|_| rng.random_range(0..m)));
        idx
    }
}

fn gather(points: &[f64], dim: usize, idx: &[usize]) -> Vec<f64> {
    idx.iter()
        .flat_map(|&i| points[i * dim..(i + 1) * dim].iter().copied())
        .collect()
}

impl EnergyModel {
    /// Prepare `obs` for clouds of `n` points, drawing U with `seed`. Errors when there is no
    /// observation or the subunit has more than n points.
    pub fn new(obs: &Observations, n: usize, seed: u64) -> Result<Self> {
        if n == 0 {
            return Err(Error::invalid(
                "EnergyModel: the cloud needs at least one point",
            ));
        }
        if obs.items() == 0 {
            return Err(Error::invalid("EnergyModel: no observations"));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut items = Vec::new();
        for p in &obs.proj {
            let idx = upsample_index(p.points.len() / 2, n, &mut rng);
            items.push(Item::Proj {
                rot: p.rot,
                target: gather(&p.points, 2, &idx),
            });
        }
        if let Some(cg) = &obs.cg {
            let idx = upsample_index(cg.len() / 3, n, &mut rng);
            items.push(Item::Cg {
                target: gather(cg, 3, &idx),
            });
        }
        if let Some(su) = &obs.subunit {
            if su.len() / 3 > n {
                return Err(Error::invalid(format!(
                    "EnergyModel: the subunit has {} points, more than the cloud's {n}",
                    su.len() / 3
                )));
            }
            items.push(Item::Subunit { target: su.clone() });
        }
        let mut names = Vec::new();
        let mut k = 0;
        for it in &items {
            names.push(it.name(k));
            if matches!(it, Item::Proj { .. }) {
                k += 1;
            }
        }
        Ok(Self {
            n,
            weight: 1.0 / items.len() as f64,
            items,
            names,
            laps: AtomicU64::new(0),
        })
    }

    /// Points per cloud.
    pub fn n_points(&self) -> usize {
        self.n
    }

    /// Item names (`proj_0`, …, `cg`, `subunit`), the order of [`Energy::items`].
    pub fn item_names(&self) -> &[String] {
        &self.names
    }

    /// LAPs solved so far (all threads).
    pub fn laps(&self) -> u64 {
        self.laps.load(Ordering::Relaxed)
    }

    /// E and ∇E of one cloud `x (n, 3)`; `states` (one per item) warm-start the auction.
    pub fn energy(
        &self,
        x: &[f64],
        solver: &Solver,
        states: &mut [AuctionState<f64>],
    ) -> Result<Energy> {
        let n = self.n;
        if x.len() != 3 * n {
            return Err(Error::Shape {
                what: "EnergyModel::energy cloud".into(),
                expected: format!("({n}, 3) = {} values", 3 * n),
                got: format!("{} values", x.len()),
            });
        }
        if states.len() != self.items.len() {
            return Err(Error::Shape {
                what: "EnergyModel::energy states".into(),
                expected: format!("{} (one per item)", self.items.len()),
                got: states.len().to_string(),
            });
        }
        let mut grad = vec![0.0; 3 * n];
        let mut items = Vec::with_capacity(self.items.len());
        for (item, st) in self.items.iter().zip(states.iter_mut()) {
            let e = match item {
                Item::Proj { rot, target } => {
                    // p_j = x_j R[:, 0:2]
                    let p: Vec<f64> = x
                        .chunks_exact(3)
                        .flat_map(|xj| {
                            (0..2).map(move |a| (0..3).map(|k| xj[k] * rot[3 * k + a]).sum::<f64>())
                        })
                        .collect();
                    let (cols, e) = self.solve(target, &p, n, 2, solver, st)?;
                    for (i, &j) in cols.iter().enumerate() {
                        for a in 0..2 {
                            let r = 2.0 * (p[2 * j + a] - target[2 * i + a]) * self.weight;
                            for k in 0..3 {
                                grad[3 * j + k] += r * rot[3 * k + a];
                            }
                        }
                    }
                    e
                }
                Item::Cg { target } | Item::Subunit { target } => {
                    let (cols, e) = self.solve(target, x, target.len() / 3, 3, solver, st)?;
                    for (i, &j) in cols.iter().enumerate() {
                        for k in 0..3 {
                            grad[3 * j + k] +=
                                2.0 * (x[3 * j + k] - target[3 * i + k]) * self.weight;
                        }
                    }
                    e
                }
            };
            items.push(e);
        }
        Ok(Energy {
            total: self.weight * items.iter().sum::<f64>(),
            items,
            grad,
        })
    }

    /// E and ∇E of a batch `x (b, n, 3)`, in parallel over clouds; `ws` holds the warm starts
    /// of b samples (see [`Workspace::new`]).
    pub fn energy_batch(
        &self,
        x: &[f64],
        solver: &Solver,
        ws: &mut Workspace,
    ) -> Result<Vec<Energy>> {
        let (n3, k) = (3 * self.n, self.items.len());
        if !x.len().is_multiple_of(n3) || ws.states.len() != (x.len() / n3) * k {
            return Err(Error::Shape {
                what: "EnergyModel::energy_batch".into(),
                expected: format!(
                    "x of (b, {}, 3) and a workspace of b samples ({} states each)",
                    self.n, k
                ),
                got: format!("{} values, {} states", x.len(), ws.states.len()),
            });
        }
        x.par_chunks(n3)
            .zip(ws.states.par_chunks_mut(k.max(1)))
            .map(|(xb, st)| self.energy(xb, solver, st))
            .collect()
    }

    /// The optimal matching of `rows (r, dim)` (targets) to `cols (n, dim)` (model points):
    /// column of each row and the cost Σ ‖rows_i − cols_σ(i)‖².
    fn solve(
        &self,
        rows: &[f64],
        cols: &[f64],
        r: usize,
        dim: usize,
        solver: &Solver,
        st: &mut AuctionState<f64>,
    ) -> Result<(Vec<usize>, f64)> {
        self.laps.fetch_add(1, Ordering::Relaxed);
        let n = cols.len() / dim;
        // A rectangular problem (the subunit) always goes to the exact solver: the auction pads it
        // with n − r dummy rows and is two orders of magnitude slower there (BENCHMARKS.md).
        let a = match solver {
            Solver::Auction(p) if r == n => {
                auction_points(rows, cols, r, n, dim, p, st)?.assignment
            }
            _ => {
                let mut c = vec![0.0; r * n];
                for i in 0..r {
                    for j in 0..n {
                        c[i * n + j] = (0..dim)
                            .map(|k| (rows[i * dim + k] - cols[j * dim + k]).powi(2))
                            .sum();
                    }
                }
                linear_sum_assignment(&c, r, n)?
            }
        };
        Ok((a.cols, a.cost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_every_point_once() {
        let mut rng = StdRng::seed_from_u64(1);
        let idx = upsample_index(5, 12, &mut rng);
        assert_eq!(idx.len(), 12);
        assert_eq!(&idx[..5], &[0, 1, 2, 3, 4]);
        assert!(idx.iter().all(|&i| i < 5));
        let mut down = upsample_index(12, 5, &mut rng);
        down.sort();
        down.dedup();
        assert_eq!(down.len(), 5);
    }
}
