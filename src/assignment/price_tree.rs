//! A kd-tree over the model points (the auction's columns) that keeps the least price of each
//! subtree, so that an auction bid for squared Euclidean costs finds its best and second-best
//! column, argmin_j ‖r − c_j‖² + p_j, without scanning all m columns: branch and bound over
//! the tree with the lower bound dist²(r, box) + min p of a node, nearest child first. Prices
//! only rise during a solve, and each raised price updates its leaf and ancestors.
//!
//! The result is the full scan's, bit for bit: the leaf values are computed with the scan's
//! arithmetic (t₀², then + t_k² in k order, then + p_j), the bound with the same operations on
//! the per-axis distances to the box (so, rounding being monotone, it is ≤ every value in the
//! box in floating point too), a node is skipped only when its bound is strictly above the
//! running second-best, and ties in w₁ go to the column with the least visiting key
//! (j − s) mod m, the scan's order.

use super::auction::AuctionFloat;

/// Whether the CPU has AVX2 (detected once).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// Points per leaf at most.
const LEAF: usize = 32;

/// "No node" / "no column".
const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Node<F> {
    /// Tree positions lo..hi.
    lo: u32,
    hi: u32,
    /// Children, or NONE for a leaf.
    left: u32,
    right: u32,
    parent: u32,
    bmin: [F; 3],
    bmax: [F; 3],
    /// The least price of the node's columns.
    minp: F,
}

/// The tree (see the module doc) over m points of dimension 2 or 3.
#[derive(Clone, Debug)]
pub(crate) struct PriceTree<F> {
    dim: usize,
    nodes: Vec<Node<F>>,
    /// Coordinates in tree order, structure of arrays (dim, m).
    xs: Vec<F>,
    /// Column at each tree position, and the position of each column.
    col: Vec<u32>,
    pos: Vec<u32>,
    /// Prices in tree order.
    pp: Vec<F>,
    /// Leaf of each tree position.
    leaf_of: Vec<u32>,
    /// Branch-and-bound stack: (node, bound).
    stack: Vec<(u32, F)>,
    /// Per row: the best and second-best columns of its last search (NONE before), whose
    /// current values cap the search from the start.
    hints: Vec<[u32; 2]>,
    /// Searches and columns evaluated since [`PriceTree::reset_counts`].
    searches: u64,
    evaluated: u64,
}

impl<F: AuctionFloat> PriceTree<F> {
    /// The tree over `cols` (m, dim) row-major, dim 2 or 3, for n rows, with all prices 0;
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
        let mut t = PriceTree {
            dim,
            nodes: Vec::with_capacity(2 * m / LEAF + 2),
            xs: vec![F::zero(); dim * m],
            col: Vec::new(),
            pos: vec![0; m],
            pp: vec![F::zero(); m],
            leaf_of: vec![0; m],
            stack: Vec::with_capacity(64),
            hints: vec![[NONE; 2]; n],
            searches: 0,
            evaluated: 0,
        };
        t.build(cols, &mut perm, 0, m, NONE);
        for (q, &j) in perm.iter().enumerate() {
            t.pos[j as usize] = q as u32;
            for k in 0..dim {
                t.xs[k * m + q] = cols[j as usize * dim + k];
            }
        }
        t.col = perm;
        Some(t)
    }

    fn build(&mut self, cols: &[F], perm: &mut [u32], lo: usize, hi: usize, parent: u32) -> u32 {
        let dim = self.dim;
        let (mut bmin, mut bmax) = ([F::zero(); 3], [F::zero(); 3]);
        for k in 0..dim {
            let (mut a, mut b) = (F::infinity(), F::neg_infinity());
            for &j in &perm[lo..hi] {
                let x = cols[j as usize * dim + k];
                a = a.min(x);
                b = b.max(x);
            }
            (bmin[k], bmax[k]) = (a, b);
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            lo: lo as u32,
            hi: hi as u32,
            left: NONE,
            right: NONE,
            parent,
            bmin,
            bmax,
            minp: F::zero(),
        });
        if hi - lo <= LEAF {
            for q in lo..hi {
                self.leaf_of[q] = id;
            }
            return id;
        }
        let axis = (0..dim)
            .max_by(|&a, &b| {
                (bmax[a] - bmin[a])
                    .partial_cmp(&(bmax[b] - bmin[b]))
                    .unwrap()
            })
            .unwrap_or(0);
        let mid = lo + (hi - lo) / 2;
        perm[lo..hi].select_nth_unstable_by(mid - lo, |&a, &b| {
            let (x, y) = (cols[a as usize * dim + axis], cols[b as usize * dim + axis]);
            x.partial_cmp(&y).unwrap().then(a.cmp(&b))
        });
        let left = self.build(cols, perm, lo, mid, id);
        let right = self.build(cols, perm, mid, hi, id);
        self.nodes[id as usize].left = left;
        self.nodes[id as usize].right = right;
        id
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

    /// Loads all prices (m) and the subtree minima.
    pub(crate) fn set_prices(&mut self, p: &[F]) {
        for (q, &j) in self.col.iter().enumerate() {
            self.pp[q] = p[j as usize];
        }
        // children come after their parent in `nodes`
        for id in (0..self.nodes.len()).rev() {
            let nd = &self.nodes[id];
            let minp = if nd.left == NONE {
                self.pp[nd.lo as usize..nd.hi as usize]
                    .iter()
                    .fold(F::infinity(), |a, &b| a.min(b))
            } else {
                self.nodes[nd.left as usize]
                    .minp
                    .min(self.nodes[nd.right as usize].minp)
            };
            self.nodes[id].minp = minp;
        }
    }

    /// Column j's price rose to `price`: updates its leaf and the ancestors whose minimum changed.
    #[inline]
    pub(crate) fn raise(&mut self, j: usize, price: F) {
        let q = self.pos[j] as usize;
        self.pp[q] = price;
        let mut id = self.leaf_of[q];
        let nd = &self.nodes[id as usize];
        let mut minp = self.pp[nd.lo as usize..nd.hi as usize]
            .iter()
            .fold(F::infinity(), |a, &b| a.min(b));
        loop {
            let nd = &mut self.nodes[id as usize];
            if nd.minp == minp {
                return;
            }
            nd.minp = minp;
            let parent = nd.parent;
            if parent == NONE {
                return;
            }
            let pn = &self.nodes[parent as usize];
            minp = self.nodes[pn.left as usize]
                .minp
                .min(self.nodes[pn.right as usize].minp);
            id = parent;
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

    /// [`PriceTree::best`] compiled with AVX2 (4 f64 / 8 f32 lanes in the leaf evaluations).
    /// No FMA: the arithmetic, and so the result, is the default build's bit for bit.
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

    #[inline(always)]
    fn bound<const D: usize>(&self, r: [F; D], id: u32) -> F {
        let nd = &self.nodes[id as usize];
        // max(b_min − r, r − b_max, 0): fl(b_min − r) = −fl(r − b_min), so its square is that of
        // the scan's t at the box's face
        let axis = |k: usize| {
            let t = (nd.bmin[k] - r[k]).max(r[k] - nd.bmax[k]).max(F::zero());
            t * t
        };
        let mut acc = axis(0);
        for k in 1..D {
            acc = acc + axis(k);
        }
        acc + nd.minp
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
            va.max(vb)
        } else {
            F::infinity()
        };
        let mut stack = std::mem::take(&mut self.stack);
        stack.clear();
        stack.push((0, self.bound(r, 0)));
        while let Some((id, b)) = stack.pop() {
            let lim = w2.min(cap);
            if b > lim {
                continue;
            }
            let nd = &self.nodes[id as usize];
            if nd.left == NONE {
                let (lo, hi) = (nd.lo as usize, nd.hi as usize);
                self.evaluated += (hi - lo) as u64;
                // the leaf's values in one vectorisable pass, then the rare updates
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
                for (t, &x) in v[..hi - lo].iter().enumerate() {
                    if x > w2.min(cap) {
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
            } else {
                let (a, c) = (nd.left, nd.right);
                let (ba, bc) = (self.bound(r, a), self.bound(r, c));
                let (near, bn, far, bf) = if ba <= bc {
                    (a, ba, c, bc)
                } else {
                    (c, bc, a, ba)
                };
                let lim = w2.min(cap);
                if bf <= lim {
                    stack.push((far, bf));
                }
                if bn <= lim {
                    stack.push((near, bn));
                }
            }
        }
        self.stack = stack;
        self.searches += 1;
        self.hints[i] = [j1 as u32, j2 as u32];
        (w1, j1, w2)
    }
}
