//! A kd-partition of the model points (the auction's columns) into leaves of at most [`LEAF`]
//! points, each with its bounding box and least price, so that an auction bid for squared
//! Euclidean costs finds its best and second-best column, argmin_j ‖r − c_j‖² + p_j, without
//! scanning all m columns: the lower bound dist²(r, box) + min p of every leaf is computed in
//! one vectorised pass, then the leaves are visited in increasing bound while their bound is
//! at or below the running second-best. Prices only rise during a solve, and each raised price
//! updates its leaf's minimum.
//!
//! The leaves are flat (no internal nodes): at the sizes of the point-cloud energies (m up to a
//! few thousand, m/[`LEAF`] leaves) one pass over every leaf's bound costs less than walking a
//! tree, which computed two bounds per visited node and chased pointers; the pass grows with
//! m/[`LEAF`], still far below a full scan's m.
//!
//! The result is the full scan's, bit for bit: the leaf values are computed with the scan's
//! arithmetic (t₀², then + t_k² in k order, then + p_j), the bound with the same operations on
//! the per-axis distances to the box (so, rounding being monotone, it is ≤ every value in the
//! box in floating point too), a leaf is skipped only when its bound is strictly above the
//! running second-best, and ties in w₁ go to the column with the least visiting key
//! (j − s) mod m, the scan's order, whatever order the leaves are visited in.

use super::auction::AuctionFloat;

/// Whether the CPU has AVX2 (detected once).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// Points per leaf at most.
pub(crate) const LEAF: usize = 32;

/// "No column".
const NONE: u32 = u32::MAX;

/// The partition (see the module doc) over m points of dimension 2 or 3.
#[derive(Clone, Debug)]
pub(crate) struct PriceTree<F> {
    dim: usize,
    /// Number of leaves.
    nl: usize,
    /// Tree positions of each leaf: lo\[l\]..lo\[l + 1\].
    lo: Vec<u32>,
    /// Leaf boxes, structure of arrays (3, nl) (the third axis unused in 2-D).
    bmin: Vec<F>,
    bmax: Vec<F>,
    /// The least price of each leaf's columns.
    minp: Vec<F>,
    /// Coordinates in tree order, structure of arrays (dim, m).
    xs: Vec<F>,
    /// Column at each tree position, and the position of each column.
    col: Vec<u32>,
    pos: Vec<u32>,
    /// Prices in tree order.
    pp: Vec<F>,
    /// Leaf of each tree position.
    leaf_of: Vec<u32>,
    /// Scratch: the leaves' bounds of the current search.
    bound: Vec<F>,
    /// Scratch: (bound, leaf) of the leaves to visit, in increasing bound.
    order: Vec<(F, u32)>,
    /// Per row: the best and second-best columns of its last search (NONE before), whose
    /// current values cap the search from the start.
    hints: Vec<[u32; 2]>,
    /// Searches and columns evaluated since [`PriceTree::reset_counts`].
    searches: u64,
    evaluated: u64,
}

impl<F: AuctionFloat> PriceTree<F> {
    /// The partition of `cols` (m, dim) row-major, dim 2 or 3, for n rows, with all prices 0;
    /// None for other dimensions or m ≥ 2³² − 1.
    pub(crate) fn new(cols: &[F], dim: usize, n: usize) -> Option<Self> {
        if !(dim == 2 || dim == 3) {
            return None;
        }
        let m = cols.len() / dim;
        if m == 0 || m >= NONE as usize {
            return None;
        }
        let mut perm: Vec<u32> = (0..m as u32).collect();
        let mut ranges = Vec::with_capacity(2 * m / LEAF + 2);
        split(cols, dim, &mut perm, 0, m, &mut ranges);
        let nl = ranges.len();
        let mut t = PriceTree {
            dim,
            nl,
            lo: ranges
                .iter()
                .map(|&(a, _)| a as u32)
                .chain([m as u32])
                .collect(),
            bmin: vec![F::zero(); 3 * nl],
            bmax: vec![F::zero(); 3 * nl],
            minp: vec![F::zero(); nl],
            xs: vec![F::zero(); dim * m],
            col: Vec::new(),
            pos: vec![0; m],
            pp: vec![F::zero(); m],
            leaf_of: vec![0; m],
            bound: vec![F::zero(); nl],
            order: Vec::with_capacity(nl),
            hints: vec![[NONE; 2]; n],
            searches: 0,
            evaluated: 0,
        };
        for (l, &(a, b)) in ranges.iter().enumerate() {
            for k in 0..dim {
                (t.bmin[k * nl + l], t.bmax[k * nl + l]) = extent(cols, dim, &perm[a..b], k);
            }
            for q in a..b {
                t.leaf_of[q] = l as u32;
            }
        }
        for (q, &j) in perm.iter().enumerate() {
            t.pos[j as usize] = q as u32;
            for k in 0..dim {
                t.xs[k * m + q] = cols[j as usize * dim + k];
            }
        }
        t.col = perm;
        Some(t)
    }

    /// Forgets the search counts ([`PriceTree::pays`]).
    pub(crate) fn reset_counts(&mut self) {
        (self.searches, self.evaluated) = (0, 0);
    }

    /// Whether searching still pays against full scans: after 64 searches, false once they
    /// evaluated more than a quarter of the columns on average (prices far above the
    /// distances between neighbouring points prune little, and a full scan is cheaper).
    pub(crate) fn pays(&self) -> bool {
        self.searches < 64 || self.evaluated * 4 < self.searches * self.col.len() as u64
    }

    /// The least price of leaf l's columns.
    fn leaf_min(&self, l: usize) -> F {
        self.pp[self.lo[l] as usize..self.lo[l + 1] as usize]
            .iter()
            .fold(F::infinity(), |a, &b| a.min(b))
    }

    /// Loads all prices (m) and the leaf minima.
    pub(crate) fn set_prices(&mut self, p: &[F]) {
        for (q, &j) in self.col.iter().enumerate() {
            self.pp[q] = p[j as usize];
        }
        for l in 0..self.nl {
            self.minp[l] = self.leaf_min(l);
        }
    }

    /// Column j's price rose to `price`: updates its leaf's minimum.
    #[inline]
    pub(crate) fn raise(&mut self, j: usize, price: F) {
        let q = self.pos[j] as usize;
        let old = std::mem::replace(&mut self.pp[q], price);
        let l = self.leaf_of[q] as usize;
        // only the column holding the minimum can raise it
        if old == self.minp[l] {
            self.minp[l] = self.leaf_min(l);
        }
    }

    /// (w₁, j₁, w₂) of min_j ‖r − c_j‖² + p_j over all columns for row i at point r, whose
    /// scan starts at column s (ties in w₁: least (j − s) mod m); w₂ = +∞ when m = 1.
    pub(crate) fn best(&mut self, i: usize, r: &[F], s: usize) -> (F, usize, F) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time)
            return unsafe { self.best_avx2(i, r, s) };
        }
        self.best_any(i, r, s)
    }

    /// [`PriceTree::best`] compiled with AVX2 (4 f64 / 8 f32 lanes in the bound and leaf
    /// passes). No FMA: the arithmetic, and so the result, is the default build's bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn best_avx2(&mut self, i: usize, r: &[F], s: usize) -> (F, usize, F) {
        self.best_any(i, r, s)
    }

    #[inline(always)]
    fn best_any(&mut self, i: usize, r: &[F], s: usize) -> (F, usize, F) {
        match self.dim {
            2 => self.best_dim::<2>(i, [r[0], r[1]], s),
            _ => self.best_dim::<3>(i, [r[0], r[1], r[2]], s),
        }
    }

    /// The value of the column at tree position q for point r, with the scan's arithmetic.
    #[inline(always)]
    fn value<const D: usize>(&self, r: [F; D], q: usize) -> F {
        let m = self.col.len();
        let d = r[0] - self.xs[q];
        let mut acc = d * d;
        for (k, &rk) in r.iter().enumerate().skip(1) {
            let d = rk - self.xs[k * m + q];
            acc = acc + d * d;
        }
        acc + self.pp[q]
    }

    /// Every leaf's bound dist²(r, box) + min p into `self.bound`.
    #[inline(always)]
    fn bounds<const D: usize>(&mut self, r: [F; D]) {
        let nl = self.nl;
        // max(b_min − r, r − b_max, 0) with plain comparisons (all finite): fl(b_min − r) =
        // −fl(r − b_min), so its square is that of the scan's t at the box's face
        let axis = |bmin: F, bmax: F, rk: F| {
            let (a, b) = (bmin - rk, rk - bmax);
            let t = if a > b { a } else { b };
            let t = if t > F::zero() { t } else { F::zero() };
            t * t
        };
        let (b0, b1) = (&self.bmin[..nl], &self.bmax[..nl]);
        for (out, (&lo, &hi)) in self.bound.iter_mut().zip(b0.iter().zip(b1)) {
            *out = axis(lo, hi, r[0]);
        }
        for (k, &rk) in r.iter().enumerate().skip(1) {
            let (bk0, bk1) = (
                &self.bmin[k * nl..(k + 1) * nl],
                &self.bmax[k * nl..(k + 1) * nl],
            );
            for (out, (&lo, &hi)) in self.bound.iter_mut().zip(bk0.iter().zip(bk1)) {
                *out = *out + axis(lo, hi, rk);
            }
        }
        for (out, &mp) in self.bound.iter_mut().zip(&self.minp) {
            *out = *out + mp;
        }
    }

    #[inline(always)]
    fn best_dim<const D: usize>(&mut self, i: usize, r: [F; D], s: usize) -> (F, usize, F) {
        let m = self.col.len();
        let key = |j: usize| if j >= s { j - s } else { j + m - s };
        let (mut w1, mut w2, mut j1, mut k1) = (F::infinity(), F::infinity(), usize::MAX, m);
        let mut j2 = NONE as usize;
        // the larger of the hinted columns' values bounds w₂ from above: nothing above it can
        // be the best or the second best (the hinted columns themselves are found in their
        // leaves, so they are not counted twice)
        let [ha, hb] = self.hints[i];
        let cap = if ha != NONE && hb != NONE && ha != hb {
            let va = self.value(r, self.pos[ha as usize] as usize);
            let vb = self.value(r, self.pos[hb as usize] as usize);
            if va > vb {
                va
            } else {
                vb
            }
        } else {
            F::infinity()
        };
        self.bounds(r);
        // the leaves at or below the cap, in increasing bound (few once the hints exist)
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        for (l, &b) in self.bound.iter().enumerate() {
            if b <= cap {
                // insertion into the sorted list (a handful of leaves; all of them, once per
                // row, before its first search leaves hints)
                let mut t = order.len();
                order.push((b, l as u32));
                while t > 0 && order[t - 1].0 > b {
                    order[t] = order[t - 1];
                    t -= 1;
                }
                order[t] = (b, l as u32);
            }
        }
        for &(bl, l) in &order {
            let lim = if w2 < cap { w2 } else { cap };
            if bl > lim {
                break;
            }
            let l = l as usize;
            let (lo, hi) = (self.lo[l] as usize, self.lo[l + 1] as usize);
            self.evaluated += (hi - lo) as u64;
            // the leaf's values in one vectorisable pass
            let mut v = [F::infinity(); LEAF];
            let pp = &self.pp[lo..hi];
            let xk: [&[F]; D] = std::array::from_fn(|k| &self.xs[k * m + lo..k * m + hi]);
            for (t, (vt, &pq)) in v.iter_mut().zip(pp).enumerate() {
                let d = r[0] - xk[0][t];
                let mut acc = d * d;
                for k in 1..D {
                    let d = r[k] - xk[k][t];
                    acc = acc + d * d;
                }
                *vt = acc + pq;
            }
            // the candidates at or below the limit on entry, as a bit mask (branch-free,
            // vectorised); the limit only falls while they are visited
            let mut mask = 0u64;
            for (t, &x) in v[..hi - lo].iter().enumerate() {
                mask |= u64::from(x <= lim) << t;
            }
            while mask != 0 {
                let t = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let x = v[t];
                if x > w2 {
                    continue;
                }
                let j = self.col[lo + t] as usize;
                if x < w1 || (x == w1 && key(j) < k1) {
                    (w2, j2) = (w1, j1);
                    (w1, j1, k1) = (x, j, key(j));
                } else if x < w2 {
                    (w2, j2) = (x, j);
                }
            }
        }
        self.order = order;
        self.searches += 1;
        self.hints[i] = [j1 as u32, j2 as u32];
        (w1, j1, w2)
    }
}

/// (min, max) of coordinate k over the columns `idx` of `cols` (m, dim) row-major.
fn extent<F: AuctionFloat>(cols: &[F], dim: usize, idx: &[u32], k: usize) -> (F, F) {
    idx.iter()
        .map(|&j| cols[j as usize * dim + k])
        .fold((F::infinity(), F::neg_infinity()), |(a, b), x| {
            (a.min(x), b.max(x))
        })
}

/// Splits positions lo..hi of `perm` at the median of the widest axis until at most [`LEAF`]
/// remain, appending each leaf's range in order.
fn split<F: AuctionFloat>(
    cols: &[F],
    dim: usize,
    perm: &mut [u32],
    lo: usize,
    hi: usize,
    out: &mut Vec<(usize, usize)>,
) {
    if hi - lo <= LEAF {
        out.push((lo, hi));
        return;
    }
    // the widest axis (the last of equal widths), each width computed once
    let mut axis = 0;
    let mut widest = F::neg_infinity();
    for k in 0..dim {
        let (a, b) = extent(cols, dim, &perm[lo..hi], k);
        if b - a >= widest {
            (axis, widest) = (k, b - a);
        }
    }
    let mid = lo + (hi - lo) / 2;
    perm[lo..hi].select_nth_unstable_by(mid - lo, |&a, &b| {
        let (x, y) = (cols[a as usize * dim + axis], cols[b as usize * dim + axis]);
        x.partial_cmp(&y).unwrap().then(a.cmp(&b))
    });
    split(cols, dim, perm, lo, mid, out);
    split(cols, dim, perm, mid, hi, out);
}
