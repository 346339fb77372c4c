//! Bertsekas' forward auction with ε-scaling for the linear assignment problem, on a dense cost
//! matrix or on squared Euclidean distances computed on the fly from two point sets (no n×m
//! matrix is stored): the fast approximate solver of the point-cloud likelihoods (spec
//! `point-cloud-dps.md` §4), tested against the exact [`super::linear_sum_assignment`].
//!
//! ## Problem
//! Rows (persons) are the observed points, columns (objects) the model points. Given an n×m
//! cost C with n ≤ m, find an injection σ of the rows into the columns minimising
//! Σᵢ C\[i, σ(i)\]. For points, C\[i, j\] = ‖rows\[i\] − cols\[j\]‖² (any dimension; 2 for
//! projections, 3 for clouds). When n < m (the subunit case) the problem is padded to m×m with
//! m − n dummy rows of cost 0, so the solver always works on a square problem of size m.
//!
//! ## Algorithm
//! Each column j has a price p_j. An unassigned row i finds its best column
//! j₁ = argmin_j (C\[i, j\] + p_j), with value w₁, and the second-best value w₂ over j ≠ j₁
//! (in benefit terms a = −C: v₁ − v₂ = w₂ − w₁), and bids: p_{j₁} ← p_{j₁} + (w₂ − w₁) + ε,
//! taking j₁ from its previous owner, who becomes unassigned. Every assigned pair then
//! satisfies ε-complementary slackness, C\[i, σ(i)\] + p_{σ(i)} ≤ min_j (C\[i, j\] + p_j) + ε,
//! and prices only rise (by at least ε per bid), so the phase ends — every row assigned — after
//! finitely many bids, ties and duplicated rows (upsampled points) included: a tie costs an ε
//! step, it cannot cycle. Ties in w₁ go to the first column in the order i, i+1, …, m−1,
//! 0, …, i−1 (so identical rows — duplicated points, a constant matrix — spread over
//! equal-price columns instead of all bidding on column 0).
//!
//! The dummy rows are identical persons (cost 0 everywhere) and bid jointly, as Bertsekas &
//! Castañon's "similar persons": the k free dummies take the k cheapest columns (by price, then
//! index; the t-th free dummy the t-th column) at the price q + max(ε, 2 ulp(q)), q the
//! (k+1)-th lowest price, which leaves each of them ε-CS (every other column costs ≥ q).
//! Bidding one at a time they would chase each other over near-equal prices one ε step per
//! bid, and in Jacobi rounds all of them would bid for the same cheapest column.
//!
//! Two bidding orders, with the same guarantee:
//! - [`Bidding::GaussSeidel`] (the CPU default): one real row at a time from a FIFO queue of
//!   unassigned rows, each bid seeing the prices of the previous ones; when the queue is empty
//!   the free dummies bid jointly;
//! - [`Bidding::Jacobi`]: rounds in which every unassigned real row, and the free dummies
//!   jointly, bid against the same prices and each column takes its highest bid (ties: the
//!   lowest row). This is the order of the CUDA kernel `kernels/auction.cu`; run in f32 it is
//!   that kernel's CPU twin, step for step.
//!
//! ## Bound
//! Summing ε-CS over the m (padded) rows against the dual value of the prices gives
//! **cost ≤ optimum + m·ε** (dummy rows cost 0, so the padded and the original problem have the
//! same optimum). For integer costs and m·ε_final < 1 the auction is therefore exact (it
//! equals the Hungarian optimum). [`AuctionResult::eps`] is the ε the bound holds with:
//! ε_final, unless the price floor below raised it.
//!
//! ## ε schedule
//! Gauss–Seidel solves of point problems (the energies' case) use a geometric schedule: ε₀ is
//! 1/16 of an upper bound on the cost range (the squared distance between the far corners of
//! the two bounding boxes, no n·m pass), rounded down to ε_final·10ᴷ, then ε ← ε/10 per
//! phase, so the last phase is at ε_final (default 10⁻⁶, squared normalised units: 6 phases
//! for points in [−1, 1]³). A small ε₀ keeps prices at the scale of the distances between
//! neighbouring points, which is what lets the tree search below prune. (÷10 against ÷8 at
//! 1024 × 1024: 14% less time on average over eight held-out uniform 3-D problems (−2% to
//! 27%), 28% and 42% more on the subunit's and a widely spread sampler step's problems, which
//! stay far from the exact solver's time either way; ÷16 made those two 1.5–10× slower.)
//! Dense costs and the Jacobi order (the CUDA kernel's schedule) use ε₀ = (max C − min C)/2
//! over the padded matrix (at least ε_final), then ε ← max(ε/5, ε_final). Either way prices are kept from one phase to the next; assignments are reset at
//! the start of every phase. Every bid raises a price by at least max(ε, 2 ulp(p)) (p its
//! current value), so a price always moves in floating point; prices stay ≥ 0, so the bound
//! holds with max(ε_final, 2 ulp(max p)).
//!
//! ## Tree search
//! For point problems in 2-D or 3-D ([`AuctionParams::tree`], m ≥ [`TREE_MIN_COLUMNS`]) a real
//! row finds its best and second-best column by branch and bound over a kd-partition of the
//! columns into leaves of at most 32 points that keeps each leaf's box and least price
//! (`price_tree.rs`): the bounds (squared distance to the box plus least price) of all leaves
//! are computed in one vectorised pass, the leaves at or below the cap — the current values of
//! the row's previous best two columns — are visited in increasing bound, and a leaf is skipped
//! once its bound is above the running second-best. Each bid updates the raised column's leaf
//! minimum. The result is the full scan's, bit for bit (same arithmetic, same tie rule), so
//! solves with and without the tree are identical; at 1024 × 1024 a search evaluates about
//! 120 columns (four leaves) instead of 1024. When prices are far above the distances between
//! neighbouring points the bound prunes little: a phase whose searches evaluate more than a
//! quarter of the columns on average scans for the rest of that phase (the leaves' price
//! minima are kept up to date either way).
//!
//! ## Warm start
//! An [`AuctionState`] keeps the prices and the (padded) assignment of a solve; passed to the
//! next solve of the same (sample, observation) problem — the model points moved a little — it
//! replaces the cold start. The prices are shifted to min p = 0 and the largest ε-CS violation
//! of the kept assignment under the new costs, g = maxᵢ (C\[i, σ(i)\] + p_{σ(i)} −
//! min_j (C\[i, j\] + p_j)), is measured: when g < ε₀ the scaling starts at max(g, ε_final)
//! from those prices (few phases; in the geometric schedule a g below 1.5·ε_final starts at
//! ε_final), otherwise (prices no better than zero) from the cold start.
//! The final phase runs at ε_final either way, so the bound is the same as cold.
//!
//! ## Termination
//! Every phase has a bid cap ([`AuctionParams::max_bids_per_phase`], default
//! [`default_bid_cap`]); exceeding it is an error naming the phase and ε, never a hang.
//!
//! ## Example
//! ```
//! use cryofield::assignment::auction::{auction_points, AuctionParams, AuctionState};
//! // three observed 2-D points against four model points
//! let obs = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
//! let model = [0.9, 0.1, 0.0, 1.1, 5.0, 5.0, 0.1, 0.0];
//! let mut state = AuctionState::new();
//! let r = auction_points(&obs, &model, 3, 4, 2, &AuctionParams::default(), &mut state)?;
//! assert_eq!(r.assignment.cols, vec![3, 0, 1]);
//! # Ok::<(), cryofield::Error>(())
//! ```

use super::price_tree::PriceTree;
use super::Assignment;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::VecDeque;

/// "No row" / "no column" in the padded assignment vectors.
const NONE: usize = usize::MAX;

/// The floating-point type an auction runs in: f64 on the CPU, f32 for the twin of the CUDA
/// kernel.
pub trait AuctionFloat:
    num_traits::Float
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + std::fmt::Display
    + std::fmt::LowerExp
    + 'static
{
    /// The least value above `self` (for finite `self`).
    fn next_above(self) -> Self;
    /// `x` rounded to this type.
    fn from_f64(x: f64) -> Self;
    /// `self` as f64 (exact).
    fn as_f64(self) -> f64;
}

impl AuctionFloat for f32 {
    fn next_above(self) -> Self {
        self.next_up()
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AuctionFloat for f64 {
    fn next_above(self) -> Self {
        self.next_up()
    }
    fn from_f64(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
}

/// 2 ulp(x) = 2·(next_up(|x|) − |x|): the least increment of a price (see the module doc).
fn two_ulp<F: AuctionFloat>(x: F) -> F {
    let a = x.abs();
    let u = a.next_above() - a;
    u + u
}

/// The order in which unassigned rows bid (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bidding {
    /// One row at a time from a FIFO queue, each bid seeing the latest prices.
    #[default]
    GaussSeidel,
    /// Rounds of simultaneous bids against the same prices (the CUDA kernel's order).
    Jacobi,
}

/// Parameters of [`auction`], [`auction_points`] and [`auction_points_batch`].
#[derive(Clone, Debug)]
pub struct AuctionParams {
    /// ε of the last phase (cost units; squared normalised units for point clouds): the result
    /// is within m·ε_final of the optimum. Finite and > 0.
    pub eps_final: f64,
    /// Bidding order.
    pub bidding: Bidding,
    /// Bids allowed per phase before the solve fails; `None`: [`default_bid_cap`]`(m)`.
    pub max_bids_per_phase: Option<u64>,
    /// Point problems in 2-D or 3-D with at least [`TREE_MIN_COLUMNS`] columns: real rows find
    /// their best columns by branch and bound over a kd-partition of the columns that keeps
    /// each leaf's least price (see the module doc) instead of scanning all m. The results are
    /// the same, bit for bit; only the time differs.
    pub tree: bool,
}

/// The least number of columns for which [`AuctionParams::tree`] builds the tree.
pub const TREE_MIN_COLUMNS: usize = 64;

impl Default for AuctionParams {
    fn default() -> Self {
        Self {
            eps_final: 1e-6,
            bidding: Bidding::GaussSeidel,
            max_bids_per_phase: None,
            tree: true,
        }
    }
}

/// The default per-phase bid cap for an m-column problem, 32·m² + 4096. ε-scaling theory
/// bounds a phase started from (5ε)-optimal prices by about 6 bids per row per column, i.e.
/// 6m² bids; the test instances (ties, constant matrices, duplicated rows, dummy rows) stay
/// below 64m per phase (the first phase of a tiny problem with duplicated rows, from the
/// Gauss–Seidel schedule's small ε₀), so the cap only ends solves that would not finish.
pub fn default_bid_cap(m: usize) -> u64 {
    32 * (m as u64).saturating_mul(m as u64) + 4096
}

/// Prices and padded assignment kept between solves of the same problem (warm start, see the
/// module doc). [`AuctionState::new`] is empty: the next solve starts cold and fills it.
#[derive(Clone, Debug, Default)]
pub struct AuctionState<F = f64> {
    prices: Vec<F>,
    col_of_row: Vec<usize>,
}

impl<F: AuctionFloat> AuctionState<F> {
    /// An empty state (cold start).
    pub fn new() -> Self {
        Self {
            prices: Vec::new(),
            col_of_row: Vec::new(),
        }
    }

    /// A state from the prices (m) and the column of each padded row (m; rows ≥ n are the
    /// dummies), e.g. read back from the CUDA kernel. Errors when the lengths differ; an
    /// assignment that is not a permutation of 0..m or a non-finite price makes the next solve
    /// start cold.
    pub fn from_parts(prices: Vec<F>, col_of_row: Vec<usize>) -> Result<Self> {
        if prices.len() != col_of_row.len() {
            return Err(Error::Shape {
                what: "AuctionState::from_parts col_of_row".into(),
                expected: format!("{} entries (one per price)", prices.len()),
                got: format!("{} entries", col_of_row.len()),
            });
        }
        Ok(Self { prices, col_of_row })
    }

    /// Whether the state holds nothing (the next solve starts cold).
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// Forget the prices (the next solve starts cold).
    pub fn clear(&mut self) {
        self.prices.clear();
        self.col_of_row.clear();
    }

    /// Column prices (m), min 0 after a warm-started solve.
    pub fn prices(&self) -> &[F] {
        &self.prices
    }

    /// Column of each padded row (m): rows < n are the real rows, the rest the dummies.
    pub fn col_of_row(&self) -> &[usize] {
        &self.col_of_row
    }
}

/// The outcome of one auction.
#[derive(Clone, Debug, PartialEq)]
pub struct AuctionResult {
    /// Rows 0..n with their columns; `cost` is Σ C\[i, σ(i)\] evaluated in f64.
    pub assignment: Assignment,
    /// The ε of the bound cost ≤ optimum + m·ε: max(ε_final, 2 ulp(max price)) in the solve's
    /// float type.
    pub eps: f64,
    /// ε phases run.
    pub phases: u32,
    /// Bids made, all phases.
    pub bids: u64,
    /// Jacobi rounds, all phases (equal to `bids` for Gauss–Seidel).
    pub rounds: u64,
    /// Whether the solve started from the state's prices (see the module doc).
    pub warm: bool,
}

/// Solve min_σ Σ C\[i, σ(i)\] for the n×m row-major `cost` (n ≤ m: every row assigned) by
/// the ε-scaling auction, starting from `state` when it holds a previous solve of an n×m
/// problem and leaving this solve's prices in it.
///
/// Errors: `cost.len() != n·m`, n = 0, n > m, a non-finite cost, a bad `eps_final`, a state of
/// another size, or a phase over the bid cap.
pub fn auction<F: AuctionFloat>(
    cost: &[F],
    n: usize,
    m: usize,
    params: &AuctionParams,
    state: &mut AuctionState<F>,
) -> Result<AuctionResult> {
    if n.checked_mul(m) != Some(cost.len()) {
        return Err(Error::Shape {
            what: "auction cost matrix".into(),
            expected: format!("{n}×{m} = {} entries", n.saturating_mul(m)),
            got: format!("{} entries", cost.len()),
        });
    }
    solve(&Dense { c: cost, m }, n, m, params, state)
}

/// The auction on C\[i, j\] = ‖rows\[i\] − cols\[j\]‖² with rows (n, dim) the observed points and
/// cols (m, dim) the model points (row-major), n ≤ m; costs are computed on the fly in F (no
/// n×m matrix). See [`auction`] for the state and the errors; a non-finite coordinate is an
/// error naming the point.
pub fn auction_points<F: AuctionFloat>(
    rows: &[F],
    cols: &[F],
    n: usize,
    m: usize,
    dim: usize,
    params: &AuctionParams,
    state: &mut AuctionState<F>,
) -> Result<AuctionResult> {
    check_points(rows, cols, n, m, dim)?;
    solve(&Points::new(rows, cols, dim), n, m, params, state)
}

/// Many independent point problems in one call, in parallel over problems (rayon): problem b
/// has rows\[b\] (n, dim) and cols\[b\] (m, dim), i.e. rows (batch, n, dim) and cols (batch, m,
/// dim), and the warm-start state `states[b]` (`states.len() == batch`; empty states start
/// cold). Results in problem order; the first failing problem's error, prefixed with its index.
#[allow(clippy::too_many_arguments)]
pub fn auction_points_batch<F: AuctionFloat>(
    rows: &[F],
    cols: &[F],
    batch: usize,
    n: usize,
    m: usize,
    dim: usize,
    params: &AuctionParams,
    states: &mut [AuctionState<F>],
) -> Result<Vec<AuctionResult>> {
    let shape = |what: &str, rows: usize, got: usize| {
        let want = batch.saturating_mul(rows).saturating_mul(dim);
        (want != got).then(|| Error::Shape {
            what: format!("auction_points_batch {what}"),
            expected: format!("({batch}, {rows}, {dim}) = {want} values"),
            got: format!("{got} values"),
        })
    };
    if let Some(e) = shape("rows", n, rows.len()).or(shape("cols", m, cols.len())) {
        return Err(e);
    }
    if states.len() != batch {
        return Err(Error::Shape {
            what: "auction_points_batch states".into(),
            expected: format!("{batch} (one per problem)"),
            got: states.len().to_string(),
        });
    }
    let (rn, cm) = (n * dim, m * dim);
    states
        .par_iter_mut()
        .enumerate()
        .map(|(b, st)| {
            auction_points(
                &rows[b * rn..(b + 1) * rn],
                &cols[b * cm..(b + 1) * cm],
                n,
                m,
                dim,
                params,
                st,
            )
            .map_err(|e| Error::invalid(format!("auction_points_batch: problem {b}: {e}")))
        })
        .collect()
}

/// Shapes and finiteness of a point problem.
pub(crate) fn check_points<F: AuctionFloat>(
    rows: &[F],
    cols: &[F],
    n: usize,
    m: usize,
    dim: usize,
) -> Result<()> {
    if dim == 0 {
        return Err(Error::invalid("auction_points: dim = 0"));
    }
    for (what, x, k) in [("rows", rows, n), ("cols", cols, m)] {
        if k.checked_mul(dim) != Some(x.len()) {
            return Err(Error::Shape {
                what: format!("auction_points {what}"),
                expected: format!("({k}, {dim}) = {} values", k.saturating_mul(dim)),
                got: format!("{} values", x.len()),
            });
        }
        if let Some(e) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "auction_points: {what}[{}] coordinate {} is {}",
                e / dim,
                e % dim,
                x[e]
            )));
        }
    }
    Ok(())
}

/// Costs of the real rows (i < n) against the m columns.
trait Costs<F: AuctionFloat>: Sync {
    /// C\[i, j\] in F, the arithmetic the auction runs in.
    fn cost(&self, i: usize, j: usize) -> F;
    /// C\[i, j\] in f64, for the reported total.
    fn cost_f64(&self, i: usize, j: usize) -> f64;
    /// Best and second-best of C\[i, j\] + p_j over the columns, in [`best_two`]'s order.
    fn scan(&self, i: usize, p: &[F]) -> Best<F> {
        best_two(p.len(), i, |j| self.cost(i, j) + p[j])
    }
    /// The kd-partition of the columns for [`AuctionParams::tree`], when the costs are squared
    /// distances it can search.
    fn tree(&self) -> Option<PriceTree<F>> {
        None
    }
    /// Row i's point, for the tree search.
    fn row_point(&self, _i: usize) -> &[F] {
        &[]
    }
    /// (0 ≤ min C, an upper bound on max C) for costs that are squared distances, without
    /// evaluating every cost: they get the geometric ε schedule (see the module doc). None:
    /// other costs, or a bound that is not finite ([`Engine::range_exact`] then scans).
    fn range_bound(&self) -> Option<(F, F)> {
        None
    }
}

/// A row-major n×m matrix.
struct Dense<'a, F> {
    c: &'a [F],
    m: usize,
}

impl<F: AuctionFloat> Costs<F> for Dense<'_, F> {
    #[inline]
    fn cost(&self, i: usize, j: usize) -> F {
        self.c[i * self.m + j]
    }
    fn cost_f64(&self, i: usize, j: usize) -> f64 {
        self.cost(i, j).as_f64()
    }
    fn scan(&self, i: usize, p: &[F]) -> Best<F> {
        let m = self.m;
        let (row, s) = (&self.c[i * m..(i + 1) * m], i % m);
        let mut b = Best::new();
        for (lo, hi) in [(s, m), (0, s)] {
            for (j, (&c, &pj)) in (lo..hi).zip(row[lo..hi].iter().zip(&p[lo..hi])) {
                b.push(c + pj, j);
            }
        }
        b
    }
}

/// Squared distances between rows (n, dim) and cols (m, dim).
struct Points<'a, F> {
    rows: &'a [F],
    cols: &'a [F],
    dim: usize,
    /// The column coordinates as structure of arrays, (dim, m): coordinate k of column j at
    /// `soa[k·m + j]`, for the lane scan ([`Lanes`]); empty when only
    /// [`Costs::cost_f64`] is needed.
    soa: Vec<F>,
}

impl<'a, F: AuctionFloat> Points<'a, F> {
    /// The problem with the column coordinates transposed for the lane scan.
    fn new(rows: &'a [F], cols: &'a [F], dim: usize) -> Self {
        let m = cols.len() / dim;
        let soa = (0..dim)
            .flat_map(|k| (0..m).map(move |j| cols[j * dim + k]))
            .collect();
        Points {
            rows,
            cols,
            dim,
            soa,
        }
    }
}

impl<F: AuctionFloat> Costs<F> for Points<'_, F> {
    /// Σ_k (r_k − c_k)², accumulated from 0 in k order with no fused multiply-add (the kernel
    /// computes it the same way).
    #[inline]
    fn cost(&self, i: usize, j: usize) -> F {
        let d = self.dim;
        let r = &self.rows[i * d..(i + 1) * d];
        let c = &self.cols[j * d..(j + 1) * d];
        let mut acc = F::zero();
        for k in 0..d {
            let t = r[k] - c[k];
            acc = acc + t * t;
        }
        acc
    }
    fn cost_f64(&self, i: usize, j: usize) -> f64 {
        let d = self.dim;
        (0..d)
            .map(|k| {
                let t = self.rows[i * d + k].as_f64() - self.cols[j * d + k].as_f64();
                t * t
            })
            .sum()
    }
    fn scan(&self, i: usize, p: &[F]) -> Best<F> {
        match (self.dim, self.soa.is_empty()) {
            (2, false) => self.scan_dim::<2>(i, p),
            (3, false) => self.scan_dim::<3>(i, p),
            _ => best_two(p.len(), i, |j| self.cost(i, j) + p[j]),
        }
    }
    fn tree(&self) -> Option<PriceTree<F>> {
        PriceTree::new(self.cols, self.dim, self.rows.len() / self.dim)
    }
    fn row_point(&self, i: usize) -> &[F] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }
    /// 0 and the squared distance between the far corners of the two bounding boxes, an upper
    /// bound on every cost; None when it is not finite (the caller's scan then names the cost).
    fn range_bound(&self) -> Option<(F, F)> {
        let d = self.dim;
        let bbox = |x: &[F]| {
            let mut b = vec![(F::infinity(), F::neg_infinity()); d];
            for pt in x.chunks_exact(d) {
                for (bk, &v) in b.iter_mut().zip(pt) {
                    *bk = (bk.0.min(v), bk.1.max(v));
                }
            }
            b
        };
        let (br, bc) = (bbox(self.rows), bbox(self.cols));
        let hi = br.iter().zip(&bc).fold(F::zero(), |acc, (r, c)| {
            let t = (r.1 - c.0).max(c.1 - r.0);
            acc + t * t
        });
        hi.is_finite().then_some((F::zero(), hi))
    }
}

impl<F: AuctionFloat> Points<'_, F> {
    /// [`Costs::scan`] for dim = D over the structure-of-arrays columns, in [`LANES`] lanes
    /// ([`Lanes`]), with the row's coordinates hoisted; the same values as `cost(i, j) + p_j`
    /// (0 + t₀² = t₀² exactly, so the sum can start at t₀²) and the same result as
    /// [`best_two`], bit for bit.
    #[inline]
    fn scan_dim<const D: usize>(&self, i: usize, p: &[F]) -> Best<F> {
        let m = p.len();
        let s = i % m;
        let r: [F; D] = std::array::from_fn(|k| self.rows[i * D + k]);
        let c: [&[F]; D] = std::array::from_fn(|k| &self.soa[k * m..(k + 1) * m]);
        let mut lanes = Lanes::new();
        for (lo, hi) in [(s, m), (0, s)] {
            lanes.segment(r, c, p, lo, hi);
        }
        lanes.merge(m, s)
    }
}

/// Lanes of the column scan: [`Lanes`] keeps a best / second-best pair per lane, so the loop
/// over a chunk of `LANES` columns is branch-free and the compiler vectorises it (2 f64 or 4
/// f32 per SSE2 register on the default x86-64 target, more with wider targets).
const LANES: usize = 8;

/// Per-lane best value, its first column and second-best value (counted with multiplicity)
/// of the columns a lane has seen, in visiting order; lane l sees the columns j0 + l of each
/// chunk.
struct Lanes<F> {
    w1: [F; LANES],
    w2: [F; LANES],
    j1: [u64; LANES],
}

impl<F: AuctionFloat> Lanes<F> {
    fn new() -> Self {
        Lanes {
            w1: [F::infinity(); LANES],
            w2: [F::infinity(); LANES],
            j1: [u64::MAX; LANES],
        }
    }

    /// Visits columns lo..hi in order: full chunks of [`LANES`], then the rest one per lane.
    /// The column counter uses wrapping adds (it stays < m): an overflow check (the test
    /// profile has them) would put a branch in every lane and stop the vectorisation.
    /// Branch-free per lane: w₂ ← min(w₂, max(w₁, x)), j₁ ← j if x < w₁, w₁ ← min(w₁, x).
    #[inline(always)]
    fn segment<const D: usize>(&mut self, r: [F; D], c: [&[F]; D], p: &[F], lo: usize, hi: usize) {
        let (mut w1, mut w2, mut j1) = (self.w1, self.w2, self.j1);
        let value = |ck: [F; D], pj: F| {
            let t = r[0] - ck[0];
            let mut acc = t * t;
            for k in 1..D {
                let t = r[k] - ck[k];
                acc = acc + t * t;
            }
            acc + pj
        };
        let take = |w1: &mut F, w2: &mut F, j1: &mut u64, x: F, j: u64| {
            let a = *w1;
            let up = if x < a { a } else { x };
            *w2 = if up < *w2 { up } else { *w2 };
            *j1 = if x < a { j } else { *j1 };
            *w1 = if x < a { x } else { a };
        };
        let full = lo + (hi - lo) / LANES * LANES;
        let pc = p[lo..full].chunks_exact(LANES);
        let cc: [_; D] = std::array::from_fn(|k| c[k][lo..full].chunks_exact(LANES));
        let mut cc = cc;
        let mut jb = lo as u64;
        for pch in pc {
            let pch: &[F; LANES] = pch.try_into().unwrap();
            let ch: [&[F; LANES]; D] =
                std::array::from_fn(|k| cc[k].next().unwrap().try_into().unwrap());
            for l in 0..LANES {
                let x = value(std::array::from_fn(|k| ch[k][l]), pch[l]);
                take(
                    &mut w1[l],
                    &mut w2[l],
                    &mut j1[l],
                    x,
                    jb.wrapping_add(l as u64),
                );
            }
            jb = jb.wrapping_add(LANES as u64);
        }
        for (l, j) in (full..hi).enumerate() {
            let x = value(std::array::from_fn(|k| c[k][j]), p[j]);
            take(&mut w1[l], &mut w2[l], &mut j1[l], x, j as u64);
        }
        (self.w1, self.w2, self.j1) = (w1, w2, j1);
    }

    /// Merges the lanes of a scan that started at column s: w₁ the least lane best, j₁ the
    /// first in visiting order among the lanes that hold it, w₂ the second least of all lane
    /// bests and second-bests — [`best_two`]'s result.
    fn merge(&self, m: usize, s: usize) -> Best<F> {
        let mut b = Best::new();
        for l in 0..LANES {
            b.push(self.w1[l], 0);
            b.push(self.w2[l], 0);
        }
        let key = |j: usize| if j >= s { j - s } else { j + m - s };
        b.j1 = (0..LANES)
            .filter(|&l| self.w1[l] == b.w1 && self.j1[l] != u64::MAX)
            .map(|l| self.j1[l] as usize)
            .min_by_key(|&j| key(j))
            .unwrap_or(NONE);
        b
    }
}

/// Best value w₁ (at column j₁) and second-best value w₂ of one row.
#[derive(Clone, Copy, Debug)]
struct Best<F> {
    w1: F,
    j1: usize,
    w2: F,
}

impl<F: AuctionFloat> Best<F> {
    fn new() -> Self {
        Best {
            w1: F::infinity(),
            j1: NONE,
            w2: F::infinity(),
        }
    }

    /// Takes value x of column j, visited after the columns seen so far.
    #[inline(always)]
    fn push(&mut self, x: F, j: usize) {
        if x < self.w1 {
            self.w2 = self.w1;
            self.w1 = x;
            self.j1 = j;
        } else if x < self.w2 {
            self.w2 = x;
        }
    }
}

/// Best and second-best of w(j) over the m columns, visited in the order i, i+1, …, m−1, 0, …,
/// i−1 (ties in w₁ go to the first visited); w₂ is the second smallest value counted with
/// multiplicity (= w₁ on a tie), +∞ when m = 1.
#[inline]
fn best_two<F: AuctionFloat>(m: usize, i: usize, w: impl Fn(usize) -> F) -> Best<F> {
    let s = i % m;
    let mut b = Best::new();
    for j in (s..m).chain(0..s) {
        b.push(w(j), j);
    }
    b
}

/// The price a row bids for its best column (price p): p + (w₂ − w₁) + max(ε, 2 ulp(p)), in
/// this order of operations (the kernel's `au_bid`); w₂ = w₁ when there is no second column.
#[inline]
fn bid_price<F: AuctionFloat>(p: F, b: &Best<F>, eps: F) -> F {
    let w2 = if b.w2 == F::infinity() { b.w1 } else { b.w2 };
    let e = eps.max(two_ulp(p));
    p + ((w2 - b.w1) + e)
}

/// One problem as the phases see it: rows i ≥ n are the zero-cost dummies.
struct Engine<'a, F, C> {
    c: &'a C,
    n: usize,
    m: usize,
    cap: u64,
    _f: std::marker::PhantomData<F>,
}

/// Counters of one solve.
#[derive(Default)]
struct Counts {
    bids: u64,
    rounds: u64,
}

impl<F: AuctionFloat, C: Costs<F>> Engine<'_, F, C> {
    #[inline]
    fn cost_padded(&self, i: usize, j: usize) -> F {
        if i < self.n {
            self.c.cost(i, j)
        } else {
            F::zero()
        }
    }

    /// Best and second-best of C\[i, j\] + p_j for padded row i.
    #[inline]
    fn best(&self, i: usize, p: &[F]) -> Best<F> {
        if i < self.n {
            self.c.scan(i, p)
        } else {
            best_two(self.m, i, |j| p[j])
        }
    }

    /// [`Engine::best`] for real row i, through the tree when there is one.
    #[inline]
    fn best_real(&self, i: usize, p: &[F], tree: &mut Option<PriceTree<F>>) -> Best<F> {
        match tree {
            Some(t) if t.pays() => {
                let (w1, j1, w2) = t.best(i, self.c.row_point(i), i % self.m);
                Best { w1, j1, w2 }
            }
            _ => self.c.scan(i, p),
        }
    }

    /// (min C, max C) over the padded matrix; errors on the first non-finite cost.
    fn range_exact(&self) -> Result<(F, F)> {
        let mut lo = if self.n < self.m {
            F::zero()
        } else {
            F::infinity()
        };
        let mut hi = if self.n < self.m {
            F::zero()
        } else {
            F::neg_infinity()
        };
        for i in 0..self.n {
            for j in 0..self.m {
                let c = self.c.cost(i, j);
                if !c.is_finite() {
                    return Err(Error::invalid(format!(
                        "auction: cost[{i}, {j}] = {c} is not finite"
                    )));
                }
                lo = lo.min(c);
                hi = hi.max(c);
            }
        }
        Ok((lo, hi))
    }

    /// Normalised prices and the starting ε of a warm start from `st`, or None (cold).
    fn warm_start(&self, st: &AuctionState<F>, eps0: F, eps_final: F) -> Option<(Vec<F>, F)> {
        let m = self.m;
        if st.prices.iter().any(|p| !p.is_finite()) {
            return None;
        }
        let mut seen = vec![false; m];
        for &j in &st.col_of_row {
            if j >= m || std::mem::replace(&mut seen[j], true) {
                return None;
            }
        }
        let pmin = st.prices.iter().fold(F::infinity(), |a, &b| a.min(b));
        let p: Vec<F> = st.prices.iter().map(|&x| x - pmin).collect();
        let mut gap = F::zero();
        for i in 0..m {
            let j = st.col_of_row[i];
            let g = (self.cost_padded(i, j) + p[j]) - self.best(i, &p).w1;
            gap = gap.max(g);
        }
        (gap < eps0).then(|| (p, gap.max(eps_final)))
    }

    fn cap_error(&self, phase: u32, eps: F) -> Error {
        Error::invalid(format!(
            "auction: phase {phase} (ε = {eps:e}) needed more than {} bids on a {}×{} problem \
             ({} dummy rows); raise AuctionParams::max_bids_per_phase or check the cost scale",
            self.cap,
            self.n,
            self.m,
            self.m - self.n
        ))
    }

    fn overflow_error(&self, phase: u32, eps: F) -> Error {
        Error::invalid(format!(
            "auction: a price overflowed in phase {phase} (ε = {eps:e}) on a {}×{} problem",
            self.n, self.m
        ))
    }

    /// The dummy rows' joint bid (see the module doc): the k free dummies `free` (ascending)
    /// take the k cheapest columns in (price, index) order, t-th dummy the t-th column, all at
    /// the price q + max(ε, 2 ulp(q)) with q the (k+1)-th lowest price. Returns (the
    /// columns, that price); k < m always (n ≥ 1).
    fn dummy_bid(&self, p: &[F], free: &[usize], eps: F) -> (Vec<usize>, F) {
        let k = free.len();
        // prices are finite and ≥ +0 (never −0), so this is the kernel's order of packed
        // (price bits, index) keys
        let key = |&a: &usize, &b: &usize| {
            p[a].partial_cmp(&p[b])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        };
        let mut idx: Vec<usize> = (0..self.m).collect();
        idx.select_nth_unstable_by(k, key);
        idx.truncate(k + 1);
        idx.sort_unstable_by(key);
        let q = p[idx[k]];
        idx.truncate(k);
        (idx, q + eps.max(two_ulp(q)))
    }

    /// One Gauss–Seidel phase at ε from prices p: every padded row ends assigned, `col` holds
    /// the column of each row. Real rows bid one at a time from a FIFO queue; when it is empty
    /// the free dummies make their joint bid.
    fn phase_gauss_seidel(
        &self,
        p: &mut [F],
        eps: F,
        phase: u32,
        col: &mut [usize],
        counts: &mut Counts,
        tree: &mut Option<PriceTree<F>>,
    ) -> Result<()> {
        let (n, m) = (self.n, self.m);
        let mut owner = vec![NONE; m];
        col.fill(NONE);
        let mut queue: VecDeque<usize> = (0..n).collect();
        let mut bids = 0u64;
        let mut moves: Vec<(usize, usize, F)> = Vec::new();
        loop {
            // (row, column, price) of this step's bids
            moves.clear();
            if let Some(i) = queue.pop_front() {
                let b = self.best_real(i, p, tree);
                moves.push((i, b.j1, bid_price(p[b.j1], &b, eps)));
            } else {
                let free: Vec<usize> = (n..m).filter(|&d| col[d] == NONE).collect();
                if free.is_empty() {
                    break;
                }
                let (cols, price) = self.dummy_bid(p, &free, eps);
                moves.extend(free.into_iter().zip(cols).map(|(d, j)| (d, j, price)));
            }
            if bids + moves.len() as u64 > self.cap {
                return Err(self.cap_error(phase, eps));
            }
            bids += moves.len() as u64;
            counts.rounds += 1;
            for &(i, j, price) in &moves {
                if !price.is_finite() {
                    return Err(self.overflow_error(phase, eps));
                }
                p[j] = price;
                if let Some(t) = tree {
                    t.raise(j, price);
                }
                let old = take_column(&mut owner, col, i, j);
                if old != NONE && old < n {
                    queue.push_back(old);
                }
            }
        }
        counts.bids += bids;
        Ok(())
    }

    /// One Jacobi phase (the kernel's rounds): the free real rows bid and the free dummies
    /// make their joint bid, all against the prices at the start of the round; each column
    /// takes its highest bid (ties: the lowest row).
    fn phase_jacobi(
        &self,
        p: &mut [F],
        eps: F,
        phase: u32,
        col: &mut [usize],
        counts: &mut Counts,
        tree: &mut Option<PriceTree<F>>,
    ) -> Result<()> {
        let (n, m) = (self.n, self.m);
        let mut owner = vec![NONE; m];
        col.fill(NONE);
        let mut best: Vec<(F, usize)> = vec![(F::zero(), NONE); m];
        let mut bids = 0u64;
        loop {
            let free: Vec<usize> = (0..m).filter(|&i| col[i] == NONE).collect();
            if free.is_empty() {
                break;
            }
            if bids + free.len() as u64 > self.cap {
                return Err(self.cap_error(phase, eps));
            }
            bids += free.len() as u64;
            counts.rounds += 1;
            let r = free.partition_point(|&i| i < n);
            let mut offer = |j: usize, price: F, i: usize| -> Result<()> {
                if !price.is_finite() {
                    return Err(self.overflow_error(phase, eps));
                }
                let slot = &mut best[j];
                if slot.1 == NONE || price > slot.0 || (price == slot.0 && i < slot.1) {
                    *slot = (price, i);
                }
                Ok(())
            };
            for &i in &free[..r] {
                let b = self.best_real(i, p, tree);
                offer(b.j1, bid_price(p[b.j1], &b, eps), i)?;
            }
            if r < free.len() {
                let (cols, price) = self.dummy_bid(p, &free[r..], eps);
                for (&d, j) in free[r..].iter().zip(cols) {
                    offer(j, price, d)?;
                }
            }
            for (j, slot) in best.iter_mut().enumerate() {
                let (price, i) = *slot;
                if i == NONE {
                    continue;
                }
                take_column(&mut owner, col, i, j);
                p[j] = price;
                if let Some(t) = tree {
                    t.raise(j, price);
                }
                slot.1 = NONE;
            }
        }
        counts.bids += bids;
        Ok(())
    }
}

/// Row i takes column j from its owner (if any), who becomes unassigned; returns that previous owner (or
/// `NONE`). Both bidding orders apply their winning bids through this.
fn take_column(owner: &mut [usize], col: &mut [usize], i: usize, j: usize) -> usize {
    let old = std::mem::replace(&mut owner[j], i);
    if old != NONE {
        col[old] = NONE;
    }
    col[i] = j;
    old
}

/// Checks a problem's sizes, `eps_final` (returned in F) and the warm-start state's size.
pub(crate) fn check_problem<F: AuctionFloat>(
    n: usize,
    m: usize,
    params: &AuctionParams,
    state: &AuctionState<F>,
) -> Result<F> {
    if n == 0 || m == 0 {
        return Err(Error::invalid(format!(
            "auction: empty problem ({n} rows, {m} columns)"
        )));
    }
    if n > m {
        return Err(Error::invalid(format!(
            "auction: {n} rows > {m} columns (every row is assigned a distinct column; \
             transpose the problem or downsample the observed points)"
        )));
    }
    let eps_final = F::from_f64(params.eps_final);
    if !eps_final.is_finite() || eps_final <= F::zero() {
        return Err(Error::invalid(format!(
            "auction: eps_final = {} must be finite and > 0 in the solve's precision",
            params.eps_final
        )));
    }
    if !state.is_empty() && state.prices.len() != m {
        return Err(Error::Shape {
            what: "auction warm-start state".into(),
            expected: format!("prices of {m} columns (a previous solve of this problem)"),
            got: format!("{} prices", state.prices.len()),
        });
    }
    Ok(eps_final)
}

/// The result of a finished solve from its final prices and padded assignment `col` (m),
/// stored into `state`.
#[allow(clippy::too_many_arguments)]
fn finish<F: AuctionFloat, C: Costs<F>>(
    c: &C,
    n: usize,
    eps_final: F,
    prices: Vec<F>,
    col: Vec<usize>,
    phases: u32,
    counts: Counts,
    warm: bool,
    state: &mut AuctionState<F>,
) -> AuctionResult {
    let pmax = prices.iter().fold(F::zero(), |a, &b| a.max(b));
    let cols = col[..n].to_vec();
    let cost = cols
        .iter()
        .enumerate()
        .map(|(i, &j)| c.cost_f64(i, j))
        .sum();
    state.prices = prices;
    state.col_of_row = col;
    AuctionResult {
        assignment: Assignment {
            rows: (0..n).collect(),
            cols,
            cost,
        },
        eps: eps_final.max(two_ulp(pmax)).as_f64(),
        phases,
        bids: counts.bids,
        rounds: counts.rounds,
        warm,
    }
}

/// The result of a point solve run elsewhere (the CUDA kernel) from its final prices and
/// padded assignment, reported exactly as [`auction_points`] reports its own; the state takes
/// both.
#[allow(clippy::too_many_arguments)]
pub(crate) fn points_result<F: AuctionFloat>(
    rows: &[F],
    cols: &[F],
    n: usize,
    dim: usize,
    eps_final: F,
    prices: Vec<F>,
    col: Vec<usize>,
    (phases, bids, rounds, warm): (u32, u64, u64, bool),
    state: &mut AuctionState<F>,
) -> AuctionResult {
    let pts = Points {
        rows,
        cols,
        dim,
        soa: Vec::new(),
    };
    let counts = Counts { bids, rounds };
    finish(&pts, n, eps_final, prices, col, phases, counts, warm, state)
}

/// ε₀ of the Gauss–Seidel schedule as a fraction of the cost range (see the module doc).
const GS_EPS0_FRACTION: f64 = 1.0 / 16.0;
/// ε's divisor per phase in the Gauss–Seidel schedule.
const GS_EPS_DIVISOR: f64 = 10.0;

/// The first ε of a cold Gauss–Seidel solve: ε_final·divᴷ with K the largest integer for which
/// that is ≤ ε₀ (at least ε_final), so that dividing by `div` lands on ε_final.
fn aligned_start<F: AuctionFloat>(eps0: F, eps_final: F, div: f64) -> F {
    let (e0, ef) = (eps0.as_f64(), eps_final.as_f64());
    if e0 <= ef {
        return eps_final;
    }
    let k = ((e0 / ef).ln() / div.ln()).floor().clamp(0.0, 60.0) as i32;
    F::from_f64(ef * div.powi(k)).max(eps_final)
}

/// ε for a phase, at least ε_final; in the geometric schedule (`aligned`) a value within 1.5×
/// of ε_final is rounded to it (no near-duplicate last phase).
fn snap_eps<F: AuctionFloat>(e: F, eps_final: F, aligned: bool) -> F {
    if aligned && e < eps_final * F::from_f64(1.5) {
        eps_final
    } else {
        e.max(eps_final)
    }
}

/// The ε-scaling auction on `c` (n real rows, m columns), see the module doc.
fn solve<F: AuctionFloat, C: Costs<F>>(
    c: &C,
    n: usize,
    m: usize,
    params: &AuctionParams,
    state: &mut AuctionState<F>,
) -> Result<AuctionResult> {
    let eps_final = check_problem(n, m, params, state)?;
    let engine = Engine {
        c,
        n,
        m,
        cap: params
            .max_bids_per_phase
            .unwrap_or_else(|| default_bid_cap(m)),
        _f: std::marker::PhantomData,
    };
    // Gauss–Seidel on points: the geometric schedule from the bounding boxes; otherwise (dense
    // costs, and the Jacobi order, which keeps the CUDA kernel's schedule) the exact range,
    // ε₀ = range/2, ÷5
    let geometric = match params.bidding {
        Bidding::GaussSeidel => c.range_bound(),
        Bidding::Jacobi => None,
    };
    let ((lo, hi), fraction, div) = match geometric {
        // (0, an upper bound): also bounds the padded matrix's dummy costs of 0
        Some(b) => (b, GS_EPS0_FRACTION, GS_EPS_DIVISOR),
        _ => (engine.range_exact()?, 0.5, 5.0),
    };
    let aligned = geometric.is_some();
    let eps0 = (hi - lo) * F::from_f64(fraction);
    if !eps0.is_finite() {
        return Err(Error::invalid(format!(
            "auction: cost range [{lo:e}, {hi:e}] overflows"
        )));
    }
    let warm = if state.is_empty() {
        None
    } else {
        engine.warm_start(state, eps0, eps_final)
    };
    let is_warm = warm.is_some();
    let cold_eps = if aligned {
        aligned_start(eps0, eps_final, div)
    } else {
        eps0.max(eps_final)
    };
    let (mut p, mut eps) = warm.unwrap_or_else(|| (vec![F::zero(); m], cold_eps));
    // a kept assignment within rounding of ε_final-CS starts at ε_final
    eps = snap_eps(eps, eps_final, aligned);
    let mut col = vec![NONE; m];
    let mut counts = Counts::default();
    let mut phases = 0u32;
    let divf = F::from_f64(div);
    let mut tree = if params.tree && m >= TREE_MIN_COLUMNS {
        c.tree()
    } else {
        None
    };
    if let Some(t) = &mut tree {
        t.set_prices(&p);
    }
    loop {
        if let Some(t) = &mut tree {
            t.reset_counts();
        }
        let tr = &mut tree;
        match params.bidding {
            Bidding::GaussSeidel => {
                engine.phase_gauss_seidel(&mut p, eps, phases, &mut col, &mut counts, tr)?
            }
            Bidding::Jacobi => {
                engine.phase_jacobi(&mut p, eps, phases, &mut col, &mut counts, tr)?
            }
        }
        phases += 1;
        if eps <= eps_final {
            break;
        }
        eps = snap_eps(eps / divf, eps_final, aligned);
    }
    Ok(finish(
        c, n, eps_final, p, col, phases, counts, is_warm, state,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignment::linear_sum_assignment;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Unit roundoff of f32.
    const U32: f64 = f32::EPSILON as f64 / 2.0;

    /// The assignment is an injection of the n rows into the m columns and `cost` is its total.
    fn check_valid(what: &str, r: &AuctionResult, cost: &[f64], n: usize, m: usize) {
        let a = &r.assignment;
        assert_eq!(a.rows, (0..n).collect::<Vec<_>>(), "{what}");
        assert_eq!(a.cols.len(), n, "{what}");
        let mut seen = vec![false; m];
        for &j in &a.cols {
            assert!(
                j < m && !std::mem::replace(&mut seen[j], true),
                "{what}: column {j} repeated or out of range in {:?}",
                a.cols
            );
        }
        let total: f64 = a
            .cols
            .iter()
            .enumerate()
            .map(|(i, &j)| cost[i * m + j])
            .sum();
        assert!(
            (total - a.cost).abs() <= 1e-12 * (1.0 + total.abs()),
            "{what}: reported cost {} vs recomputed {total}",
            a.cost
        );
    }

    /// opt − rounding ≤ cost ≤ opt + m·ε + slack + rounding (f64 sums of m terms).
    fn check_bound(what: &str, r: &AuctionResult, opt: f64, m: usize, slack: f64) {
        let round = 1e-13 * m as f64 * (1.0 + opt.abs());
        let hi = opt + m as f64 * r.eps + slack + round;
        let c = r.assignment.cost;
        assert!(
            c >= opt - round && c <= hi,
            "{what}: auction {c} vs optimum {opt}: excess {:e} > m·ε {:e} + slack {slack:e}",
            c - opt,
            m as f64 * r.eps
        );
    }

    /// Slack of an f32 solve against the f64 optimum: costs computed in f32 are within
    /// ~5u·C of the f64 ones and C + p rounds with error u·(C + p), so each row's ε-CS holds
    /// for the f64 costs up to 2·(5u·max C + u·(max C + max p)) plus the rounding of its bid
    /// (≤ 3u·max p); over m rows: m·u·(12·max C + 5·max p) ≤ 16·m·u·(max C + max p).
    fn f32_slack(m: usize, max_c: f64, state: &AuctionState<f32>) -> f64 {
        let max_p = state.prices().iter().fold(0.0f32, |a, &b| a.max(b)) as f64;
        16.0 * U32 * m as f64 * (max_c + max_p)
    }

    fn uniform_points(rng: &mut StdRng, k: usize, dim: usize) -> Vec<f32> {
        (0..k * dim).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Observed points upsampled as the spec's U: all `distinct` points once, then n − distinct
    /// redrawn with replacement (duplicated rows).
    fn upsampled(rng: &mut StdRng, distinct: usize, n: usize, dim: usize) -> Vec<f32> {
        let base = uniform_points(rng, distinct, dim);
        let mut out = base.clone();
        for _ in distinct..n {
            let k = rng.random_range(0..distinct);
            out.extend_from_slice(&base[k * dim..(k + 1) * dim]);
        }
        out
    }

    /// Squared distances (n, m) in f64 (the order of `Points::cost`).
    fn sq_dists(rows: &[f64], cols: &[f64], dim: usize) -> Vec<f64> {
        let pts = Points::new(rows, cols, dim);
        let (n, m) = (rows.len() / dim, cols.len() / dim);
        (0..n * m).map(|e| pts.cost(e / m, e % m)).collect()
    }

    fn f64s(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| v as f64).collect()
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        /// uniform costs in [0, 10)
        Float,
        /// integers in [0, 100)
        Int,
        /// integers in {0, 1, 2}: many ties
        Ties,
        /// every cost 7
        Constant,
        /// squared distances between uniform points in [−1, 1]^dim
        Points,
        /// the same with upsampled (duplicated) observed points
        PointsDup,
    }

    /// One random instance: kind, n, m, dense f64 costs and, for point kinds, (rows, cols,
    /// dim) in f32 (the f64 solves use the same values).
    #[allow(clippy::type_complexity)]
    fn instance(
        seed: u64,
        sizes: (f64, f64),
    ) -> (
        Kind,
        usize,
        usize,
        Vec<f64>,
        Option<(Vec<f32>, Vec<f32>, usize)>,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let kinds = [
            Kind::Float,
            Kind::Int,
            Kind::Ties,
            Kind::Constant,
            Kind::Points,
            Kind::PointsDup,
        ];
        let kind = kinds[(seed % 6) as usize];
        let (lo, hi) = sizes;
        let m = (lo * (hi / lo).powf(rng.random::<f64>())).round() as usize;
        // a third rectangular (the subunit case: n between m/8 and m − 1)
        let n = if rng.random_range(0..3) == 0 {
            rng.random_range((m / 8).max(1)..m)
        } else {
            m
        };
        let dense = |rng: &mut StdRng, f: &dyn Fn(&mut StdRng) -> f64| -> Vec<f64> {
            (0..n * m).map(|_| f(rng)).collect()
        };
        match kind {
            Kind::Float => (
                kind,
                n,
                m,
                dense(&mut rng, &|r| r.random_range(0.0..10.0)),
                None,
            ),
            Kind::Int => (
                kind,
                n,
                m,
                dense(&mut rng, &|r| r.random_range(0..100) as f64),
                None,
            ),
            Kind::Ties => (
                kind,
                n,
                m,
                dense(&mut rng, &|r| r.random_range(0..3) as f64),
                None,
            ),
            Kind::Constant => (kind, n, m, vec![7.0; n * m], None),
            Kind::Points | Kind::PointsDup => {
                let dim = rng.random_range(2..=3);
                let rows = if kind == Kind::Points {
                    uniform_points(&mut rng, n, dim)
                } else {
                    let distinct = rng.random_range((n / 4).max(1)..=(n / 2).max(1));
                    upsampled(&mut rng, distinct, n, dim)
                };
                let cols = uniform_points(&mut rng, m, dim);
                let c = sq_dists(&f64s(&rows), &f64s(&cols), dim);
                (kind, n, m, c, Some((rows, cols, dim)))
            }
        }
    }

    /// Solves each instance with Gauss–Seidel and Jacobi in f64 and, for point kinds, the f32
    /// twin of the kernel; checks validity and the bound against the Hungarian optimum (exact
    /// equality for integer costs). Returns the largest bids per phase per column.
    fn run_instances(seeds: std::ops::Range<u64>, sizes: (f64, f64)) -> f64 {
        let mut worst = 0.0f64;
        let (mut count, mut bids, mut phases) = (0usize, 0u64, 0u64);
        for seed in seeds {
            let (kind, n, m, cost, pts) = instance(seed, sizes);
            let opt = linear_sum_assignment(&cost, n, m).unwrap().cost;
            let integer = matches!(kind, Kind::Int | Kind::Ties | Kind::Constant);
            for bidding in [Bidding::GaussSeidel, Bidding::Jacobi] {
                let what = format!("seed {seed} {kind:?} {n}×{m} {bidding:?}");
                let params = AuctionParams {
                    bidding,
                    ..AuctionParams::default()
                };
                let mut st = AuctionState::new();
                let r = match &pts {
                    None => auction(&cost, n, m, &params, &mut st),
                    Some((rows, cols, dim)) => {
                        auction_points(&f64s(rows), &f64s(cols), n, m, *dim, &params, &mut st)
                    }
                }
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                check_valid(&what, &r, &cost, n, m);
                if integer {
                    assert_eq!(r.assignment.cost, opt, "{what}: integer costs, m·ε < 1");
                } else {
                    check_bound(&what, &r, opt, m, 0.0);
                }
                if kind == Kind::Constant && n == m {
                    // rotated tie-breaking: every row takes a distinct column at once (padded,
                    // the matrix is no longer constant)
                    assert_eq!((r.phases, r.bids), (1, m as u64), "{what}");
                }
                worst = worst.max(r.bids as f64 / (r.phases as f64 * m as f64));
                if std::env::var("AUC_DEBUG").is_ok() {
                    println!(
                        "{what}: {} bids {} phases {} rounds",
                        r.bids, r.phases, r.rounds
                    );
                }
                count += 1;
                bids += r.bids;
                phases += r.phases as u64;
            }
            if let Some((rows, cols, dim)) = &pts {
                let what = format!("seed {seed} {kind:?} {n}×{m} f32 Jacobi twin");
                let params = AuctionParams {
                    bidding: Bidding::Jacobi,
                    ..AuctionParams::default()
                };
                let mut st = AuctionState::<f32>::new();
                let r = auction_points(rows, cols, n, m, *dim, &params, &mut st)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                check_valid(&what, &r, &cost, n, m);
                let max_c = cost.iter().fold(0.0f64, |a, &b| a.max(b));
                check_bound(&what, &r, opt, m, f32_slack(m, max_c, &st));
            }
        }
        println!(
            "{count} solves: {:.0} bids and {:.1} phases per solve on average, at most {worst:.2}·m \
             bids per phase",
            bids as f64 / count as f64,
            phases as f64 / count as f64
        );
        worst
    }

    /// The tree search returns the scan's best and second-best bit for bit, ties in w₁ to the
    /// same column: grid points (many equal distances, duplicated columns) and grid prices
    /// (many equal values), raised one column at a time as bids raise them, and continuous
    /// ones; every row's hints come from its previous search.
    #[test]
    fn tree_search_equals_scan() {
        fn check<F: AuctionFloat>(rng: &mut StdRng, m: usize, dim: usize) {
            let n = 40;
            let grid = |rng: &mut StdRng, k: usize| -> Vec<F> {
                (0..k * dim)
                    .map(|_| F::from_f64(rng.random_range(-4i32..=4) as f64 * 0.25))
                    .collect()
            };
            let (rows, cols) = (grid(rng, n), grid(rng, m));
            let pts = Points::new(&rows, &cols, dim);
            let mut tree = PriceTree::new(&cols, dim, n).unwrap();
            let mut p: Vec<F> = vec![F::zero(); m];
            tree.set_prices(&p);
            for round in 0..6 {
                if round == 3 {
                    p = (0..m)
                        .map(|_| F::from_f64(rng.random_range(0..4) as f64 * 0.125))
                        .collect();
                    tree.set_prices(&p);
                }
                for i in (0..n).chain((0..n).rev()) {
                    let a = tree.best(i, pts.row_point(i), i % m);
                    let b = pts.scan(i, &p);
                    assert!(
                        a.1 == b.j1 && a.0.to_bits_eq(b.w1) && a.2.to_bits_eq(b.w2),
                        "m {m} dim {dim} row {i} round {round}: tree {a:?} vs scan {b:?}"
                    );
                    // a bid: the best column's price rises (continuous in round 5)
                    let up = if round == 5 {
                        F::from_f64(rng.random_range(0.0..0.3))
                    } else {
                        F::from_f64(0.125)
                    };
                    p[b.j1] = p[b.j1] + up;
                    tree.raise(b.j1, p[b.j1]);
                }
            }
        }
        let mut rng = StdRng::seed_from_u64(26);
        for m in [1, 2, 20, 64, 65, 100, 257] {
            for dim in [2, 3] {
                check::<f64>(&mut rng, m, dim);
                check::<f32>(&mut rng, m, dim);
            }
        }
    }

    /// Whole solves with and without the tree: the same assignment, prices, bids and rounds, in
    /// both bidding orders, on uniform and on upsampled (duplicated) observed points.
    #[test]
    fn tree_solves_equal_scan_solves() {
        let mut rng = StdRng::seed_from_u64(27);
        for (n, m, dim) in [(100, 100, 3), (128, 128, 2), (64, 200, 3), (300, 300, 2)] {
            for bidding in [Bidding::GaussSeidel, Bidding::Jacobi] {
                let rows = upsampled(&mut rng, n / 2, n, dim);
                let cols = uniform_points(&mut rng, m, dim);
                let (rows, cols) = (f64s(&rows), f64s(&cols));
                let solve = |tree: bool| {
                    let params = AuctionParams {
                        bidding,
                        tree,
                        ..AuctionParams::default()
                    };
                    let mut st = AuctionState::new();
                    let r = auction_points(&rows, &cols, n, m, dim, &params, &mut st).unwrap();
                    (r, st.prices().to_vec())
                };
                let ((a, pa), (b, pb)) = (solve(true), solve(false));
                assert_eq!(a, b, "{n}×{m} dim {dim} {bidding:?}");
                assert!(
                    pa.iter().zip(&pb).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{n}×{m} dim {dim} {bidding:?}: prices differ"
                );
            }
        }
    }

    /// The lane scan of point costs (structure of arrays, [`LANES`] lanes) gives the scalar
    /// [`best_two`]'s w₁, j₁ and w₂ bit for bit, ties (duplicated columns, equal prices) and
    /// sizes that are not a multiple of the lane count included, in f64 and f32.
    #[test]
    fn lane_scan_equals_scalar_scan() {
        fn check<F: AuctionFloat>(rng: &mut StdRng, m: usize, dim: usize) {
            let n = m.min(7);
            let grid = |rng: &mut StdRng, k: usize| -> Vec<F> {
                (0..k * dim)
                    .map(|_| F::from_f64(rng.random_range(-2i32..=2) as f64 * 0.5))
                    .collect()
            };
            let (rows, cols) = (grid(rng, n), grid(rng, m));
            let pts = Points::new(&rows, &cols, dim);
            for round in 0..3 {
                let p: Vec<F> = (0..m)
                    .map(|_| match round {
                        0 => F::zero(),
                        1 => F::from_f64(rng.random_range(0..3) as f64 * 0.25),
                        _ => F::from_f64(rng.random_range(0.0..1.0)),
                    })
                    .collect();
                for i in 0..n {
                    let a = pts.scan(i, &p);
                    let b = best_two(m, i, |j| pts.cost(i, j) + p[j]);
                    assert!(
                        a.j1 == b.j1 && a.w1.to_bits_eq(b.w1) && a.w2.to_bits_eq(b.w2),
                        "m {m} dim {dim} row {i} round {round}: lanes {a:?} vs scalar {b:?}"
                    );
                }
            }
        }
        let mut rng = StdRng::seed_from_u64(25);
        for m in [1, 2, 5, 8, 9, 16, 23, 64, 100] {
            for dim in [2, 3] {
                check::<f64>(&mut rng, m, dim);
                check::<f32>(&mut rng, m, dim);
            }
        }
    }

    /// Bitwise equality for the lane-scan test (+∞ = +∞ included).
    trait BitsEq {
        fn to_bits_eq(self, other: Self) -> bool;
    }
    impl<F: AuctionFloat> BitsEq for F {
        fn to_bits_eq(self, other: Self) -> bool {
            self.as_f64().to_bits() == other.as_f64().to_bits()
        }
    }

    #[test]
    fn matches_hungarian_on_200_random_instances() {
        // n = 8…128 (log-uniform): square, rectangular, duplicated rows, ties, constant.
        let worst = run_instances(0..200, (8.0, 128.0));
        // the bid cap (32·m² per phase) is far above what these need
        assert!(worst < 64.0, "{worst}·m bids per phase");
    }

    #[test]
    fn matches_hungarian_at_256_and_512() {
        // the upper end of the spec's acceptance check (n = 8…512)
        run_instances(1000..1012, (256.0, 512.0));
    }

    #[test]
    fn integer_costs_exact_just_below_one_over_m() {
        // m·ε_final < 1 is all exactness needs: ε_final = 1/(m + 1), 40 instances
        for seed in 0..40u64 {
            let mut rng = StdRng::seed_from_u64(500 + seed);
            let m = rng.random_range(8..=64);
            let n = if seed % 2 == 0 {
                m
            } else {
                rng.random_range(1..m)
            };
            let hi = if seed % 4 < 2 { 4 } else { 1000 };
            let cost: Vec<f64> = (0..n * m).map(|_| rng.random_range(0..hi) as f64).collect();
            let opt = linear_sum_assignment(&cost, n, m).unwrap().cost;
            for bidding in [Bidding::GaussSeidel, Bidding::Jacobi] {
                let params = AuctionParams {
                    eps_final: 1.0 / (m as f64 + 1.0),
                    bidding,
                    ..AuctionParams::default()
                };
                let r = auction(&cost, n, m, &params, &mut AuctionState::new()).unwrap();
                check_valid("eps 1/(m+1)", &r, &cost, n, m);
                assert_eq!(r.assignment.cost, opt, "seed {seed} {n}×{m} {bidding:?}");
            }
        }
    }

    #[test]
    fn points_on_the_fly_equal_dense() {
        // the same costs computed on the fly or stored give the identical solve in the Jacobi
        // order (both take ε₀ from the exact cost range); in the Gauss–Seidel order a point
        // problem takes ε₀ from its bounding boxes, so both solves are only checked against the
        // optimum
        let mut rng = StdRng::seed_from_u64(31);
        for (dim, n, m) in [(2, 40, 40), (3, 25, 60), (3, 64, 64)] {
            let rows = uniform_points(&mut rng, n, dim);
            let cols = uniform_points(&mut rng, m, dim);
            {
                let (r64, c64) = (f64s(&rows), f64s(&cols));
                let dense = sq_dists(&r64, &c64, dim);
                let opt = linear_sum_assignment(&dense, n, m).unwrap().cost;
                let params = AuctionParams::default();
                let a = auction(&dense, n, m, &params, &mut AuctionState::new()).unwrap();
                let b = auction_points(&r64, &c64, n, m, dim, &params, &mut AuctionState::new())
                    .unwrap();
                check_bound("dense, Gauss–Seidel", &a, opt, m, 0.0);
                check_bound("points, Gauss–Seidel", &b, opt, m, 0.0);
            }
            {
                let bidding = Bidding::Jacobi;
                let params = AuctionParams {
                    bidding,
                    ..AuctionParams::default()
                };
                let what = format!("{n}×{m} dim {dim} {bidding:?}");
                // f64: identical results, reported costs included
                let (r64, c64) = (f64s(&rows), f64s(&cols));
                let dense = sq_dists(&r64, &c64, dim);
                let (mut s1, mut s2) = (AuctionState::new(), AuctionState::new());
                let a = auction(&dense, n, m, &params, &mut s1).unwrap();
                let b = auction_points(&r64, &c64, n, m, dim, &params, &mut s2).unwrap();
                assert_eq!(a, b, "{what} f64");
                assert_eq!(
                    (s1.prices(), s1.col_of_row()),
                    (s2.prices(), s2.col_of_row()),
                    "{what}"
                );
                // f32: identical solve (the dense path reports the f32 costs' total)
                let pts = Points::new(&rows[..], &cols[..], dim);
                let dense32: Vec<f32> = (0..n * m).map(|e| pts.cost(e / m, e % m)).collect();
                let (mut s1, mut s2) = (AuctionState::<f32>::new(), AuctionState::<f32>::new());
                let a = auction(&dense32, n, m, &params, &mut s1).unwrap();
                let b = auction_points(&rows, &cols, n, m, dim, &params, &mut s2).unwrap();
                assert_eq!(a.assignment.cols, b.assignment.cols, "{what} f32");
                assert_eq!(
                    (a.bids, a.phases, a.rounds, a.eps),
                    (b.bids, b.phases, b.rounds, b.eps),
                    "{what} f32"
                );
                assert_eq!(s1.prices(), s2.prices(), "{what} f32");
                assert!((a.assignment.cost - b.assignment.cost).abs() < 1e-5 * b.assignment.cost);
            }
        }
    }

    #[test]
    fn warm_start_same_optimum_fewer_bids() {
        let mut rng = StdRng::seed_from_u64(41);
        let params = AuctionParams::default();
        for (n, m) in [(128, 128), (32, 128)] {
            let dim = 3;
            let rows = f64s(&uniform_points(&mut rng, n, dim));
            let cols = f64s(&uniform_points(&mut rng, m, dim));
            let opt = linear_sum_assignment(&sq_dists(&rows, &cols, dim), n, m)
                .unwrap()
                .cost;
            let mut st = AuctionState::new();
            let cold = auction_points(&rows, &cols, n, m, dim, &params, &mut st).unwrap();
            assert!(!cold.warm);
            // the same problem again from its own prices
            let again = auction_points(&rows, &cols, n, m, dim, &params, &mut st.clone()).unwrap();
            assert!(again.warm && again.phases == 1, "{again:?}");
            check_bound("warm, same problem", &again, opt, m, 0.0);
            assert!(again.bids < cold.bids, "{} vs {}", again.bids, cold.bids);
            // one sampler step later: the model points moved by up to 10⁻³
            let moved: Vec<f64> = cols
                .iter()
                .map(|x| x + rng.random_range(-1e-3..1e-3))
                .collect();
            let cost2 = sq_dists(&rows, &moved, dim);
            let opt2 = linear_sum_assignment(&cost2, n, m).unwrap().cost;
            let cold2 = auction_points(&rows, &moved, n, m, dim, &params, &mut AuctionState::new())
                .unwrap();
            let warm2 = auction_points(&rows, &moved, n, m, dim, &params, &mut st).unwrap();
            check_valid("warm, moved", &warm2, &cost2, n, m);
            check_bound("cold, moved", &cold2, opt2, m, 0.0);
            check_bound("warm, moved", &warm2, opt2, m, 0.0);
            assert!(warm2.warm);
            assert!(
                warm2.bids < cold2.bids && warm2.phases < cold2.phases,
                "{n}×{m}: warm {} bids / {} phases, cold {} / {}",
                warm2.bids,
                warm2.phases,
                cold2.bids,
                cold2.phases
            );
            println!(
                "{n}×{m}: cold {} bids / {} phases; same problem warm {} / {}; moved 1e-3: cold \
                 {} / {}, warm {} / {}",
                cold.bids,
                cold.phases,
                again.bids,
                again.phases,
                cold2.bids,
                cold2.phases,
                warm2.bids,
                warm2.phases
            );
        }
        // integer costs: warm from a neighbouring problem's prices is still exact
        let (n, m) = (50, 50);
        let c1: Vec<f64> = (0..n * m).map(|_| rng.random_range(0..20) as f64).collect();
        let c2: Vec<f64> = c1
            .iter()
            .map(|&c| c + rng.random_range(0..2) as f64)
            .collect();
        let mut st = AuctionState::new();
        auction(&c1, n, m, &params, &mut st).unwrap();
        let r = auction(&c2, n, m, &params, &mut st).unwrap();
        assert!(r.warm);
        assert_eq!(
            r.assignment.cost,
            linear_sum_assignment(&c2, n, m).unwrap().cost
        );
        // prices from an unrelated problem: a correct solve (cold or warm)
        let c3: Vec<f64> = (0..n * m)
            .map(|_| rng.random_range(0..1000) as f64)
            .collect();
        let r = auction(&c3, n, m, &params, &mut st).unwrap();
        assert_eq!(
            r.assignment.cost,
            linear_sum_assignment(&c3, n, m).unwrap().cost
        );
        // a state that is not a permutation starts cold; one of another size is an error
        let mut bad = AuctionState::from_parts(vec![0.0; m], vec![0; m]).unwrap();
        let r = auction(&c3, n, m, &params, &mut bad).unwrap();
        assert!(!r.warm);
        assert_eq!(bad.col_of_row().len(), m);
        let mut other = AuctionState::from_parts(vec![0.0; 7], (0..7).collect()).unwrap();
        let e = auction(&c3, n, m, &params, &mut other).unwrap_err();
        assert!(e.to_string().contains("warm-start state"), "{e}");
        assert!(AuctionState::from_parts(vec![0.0f64; 3], vec![0, 1]).is_err());
    }

    #[test]
    fn batch_equals_single_solves() {
        let mut rng = StdRng::seed_from_u64(51);
        let (batch, n, m, dim) = (6, 20, 30, 3);
        let rows = f64s(&uniform_points(&mut rng, batch * n, dim));
        let cols = f64s(&uniform_points(&mut rng, batch * m, dim));
        let params = AuctionParams::default();
        let mut states = vec![AuctionState::new(); batch];
        let got =
            auction_points_batch(&rows, &cols, batch, n, m, dim, &params, &mut states).unwrap();
        for b in 0..batch {
            let mut st = AuctionState::new();
            let want = auction_points(
                &rows[b * n * dim..(b + 1) * n * dim],
                &cols[b * m * dim..(b + 1) * m * dim],
                n,
                m,
                dim,
                &params,
                &mut st,
            )
            .unwrap();
            assert_eq!(got[b], want, "problem {b}");
            assert_eq!(states[b].prices(), st.prices(), "problem {b}");
        }
        // the states carry over: the second call starts warm
        let again =
            auction_points_batch(&rows, &cols, batch, n, m, dim, &params, &mut states).unwrap();
        assert!(again.iter().all(|r| r.warm));
        // errors name the problem; shapes are checked
        let mut bad = rows.clone();
        bad[3 * n * dim + 4] = f64::NAN;
        let e = auction_points_batch(&bad, &cols, batch, n, m, dim, &params, &mut states)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("problem 3") && e.contains("rows[1] coordinate 1"),
            "{e}"
        );
        let e = auction_points_batch(&rows, &cols, batch, n + 1, m, dim, &params, &mut states)
            .unwrap_err();
        assert!(e.to_string().contains("rows"), "{e}");
        let e = auction_points_batch(&rows, &cols, batch, n, m, dim, &params, &mut states[..2])
            .unwrap_err();
        assert!(e.to_string().contains("states"), "{e}");
        assert!(
            auction_points_batch::<f64>(&[], &[], 0, n, m, dim, &params, &mut [])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = AuctionParams::default();
        let fresh = AuctionState::<f64>::new;
        let err = |r: Result<AuctionResult>| r.unwrap_err().to_string();
        let e = err(auction(&[1.0, f64::NAN, 0.0, 2.0], 2, 2, &p, &mut fresh()));
        assert!(e.contains("cost[0, 1] = NaN"), "{e}");
        let e = err(auction(
            &[1.0, 0.0, f64::INFINITY, 2.0],
            2,
            2,
            &p,
            &mut fresh(),
        ));
        assert!(e.contains("cost[1, 0] = inf"), "{e}");
        let e = err(auction(&[1.0; 6], 3, 2, &p, &mut fresh()));
        assert!(e.contains("3 rows > 2 columns"), "{e}");
        let e = err(auction(&[], 0, 3, &p, &mut fresh()));
        assert!(e.contains("empty"), "{e}");
        let e = err(auction(&[], 0, 0, &p, &mut fresh()));
        assert!(e.contains("empty"), "{e}");
        let e = err(auction(&[1.0; 5], 2, 3, &p, &mut fresh()));
        assert!(e.contains("2×3 = 6 entries"), "{e}");
        let e = err(auction(&[f64::MAX, -f64::MAX], 1, 2, &p, &mut fresh()));
        assert!(e.contains("overflows"), "{e}");
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let q = AuctionParams {
                eps_final: eps,
                ..AuctionParams::default()
            };
            let e = err(auction(&[1.0], 1, 1, &q, &mut fresh()));
            assert!(e.contains("eps_final"), "{e}");
        }
        // ε_final that rounds to 0 in f32
        let q = AuctionParams {
            eps_final: 1e-60,
            ..AuctionParams::default()
        };
        let e = auction(&[1.0f32], 1, 1, &q, &mut AuctionState::new()).unwrap_err();
        assert!(e.to_string().contains("eps_final"), "{e}");
        // the bid cap ends the solve with an error naming the phase
        let q = AuctionParams {
            max_bids_per_phase: Some(3),
            ..AuctionParams::default()
        };
        let c: Vec<f64> = (0..100).map(|k| ((k * 37) % 11) as f64).collect();
        for bidding in [Bidding::GaussSeidel, Bidding::Jacobi] {
            let q = AuctionParams {
                bidding,
                ..q.clone()
            };
            let e = err(auction(&c, 10, 10, &q, &mut fresh()));
            assert!(
                e.contains("phase 0") && e.contains("more than 3 bids"),
                "{e}"
            );
        }
        // points: coordinates checked, shapes checked, dim > 0
        let e = err(auction_points(
            &[0.0, f64::NAN],
            &[0.0; 4],
            1,
            2,
            2,
            &p,
            &mut fresh(),
        ));
        assert!(e.contains("rows[0] coordinate 1 is NaN"), "{e}");
        let e = err(auction_points(
            &[0.0; 2],
            &[0.0, 0.0, 1.0, f64::INFINITY],
            1,
            2,
            2,
            &p,
            &mut fresh(),
        ));
        assert!(e.contains("cols[1] coordinate 1 is inf"), "{e}");
        let e = err(auction_points(
            &[0.0; 3],
            &[0.0; 4],
            1,
            2,
            2,
            &p,
            &mut fresh(),
        ));
        assert!(e.contains("(1, 2) = 2 values"), "{e}");
        let e = err(auction_points(&[], &[], 1, 2, 0, &p, &mut fresh()));
        assert!(e.contains("dim = 0"), "{e}");
        let e = err(auction_points(
            &[0.0; 4],
            &[0.0; 2],
            2,
            1,
            2,
            &p,
            &mut fresh(),
        ));
        assert!(e.contains("2 rows > 1 columns"), "{e}");
        // f32 costs that overflow from finite coordinates
        let e = auction_points(
            &[3e20f32],
            &[-3e20f32],
            1,
            1,
            1,
            &p,
            &mut AuctionState::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");
    }

    #[test]
    fn tiny_problems() {
        let p = AuctionParams::default();
        let r = auction(&[3.5], 1, 1, &p, &mut AuctionState::new()).unwrap();
        assert_eq!(
            (r.assignment.cols, r.assignment.cost, r.bids),
            (vec![0], 3.5, 1)
        );
        // one row, several columns: the cheapest
        let r = auction(&[4.0, 1.0, 3.0], 1, 3, &p, &mut AuctionState::new()).unwrap();
        assert_eq!(r.assignment.cols, vec![1]);
        // scipy's example (see hungarian.rs): optimum 5
        let c = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        let r = auction(&c, 3, 3, &p, &mut AuctionState::new()).unwrap();
        assert_eq!((r.assignment.cols, r.assignment.cost), (vec![1, 0, 2], 5.0));
    }
}
