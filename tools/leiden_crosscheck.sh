#!/usr/bin/env bash
# Cross-check our Leiden clustering (src/analysis/leiden.rs) against python-igraph's
# `Graph.community_leiden(objective_function="modularity", resolution=1.5, weights="weight")`,
# which the reference's analyze_landscape_full runs on umap-learn's graph. Both cluster the same
# graph: our UMAP fuzzy graph (n_neighbors K, default 50) of a latent set (default
# ../shared/data/zvals_het-8_4k.pkl, 4000 × 8), written by the lib test hook
# `analysis::leiden::tests::crosscheck_dump` with each edge in both directions, which igraph
# loads as cryoDRGN's utils.get_igraph_from_adjacency builds its graph (scipy sparse matrix →
# one undirected edge per nonzero). igraph runs 5 seeds (Python's `random.seed`, which igraph
# draws from) with its defaults (beta 0.01, n_iterations 2); ours 5 seeds with 2 iterations and
# to convergence. Printed per run: the quality Q at γ = 1.5 (the objective) and at γ = 1 (igraph's
# `Graph.modularity`, the same for both), the number of clusters, and the adjusted Rand index
# (sklearn) against igraph's seed-0 partition; then the means.
# Exits non-zero when our mean Q (γ = 1.5, 2 iterations) is more than 2 % below igraph's.
# igraph is a tool-time reference only, never a dependency of the crate or its tests.
# Usage: tools/leiden_crosscheck.sh [Z.pkl] [K]   (needs ~/refvenv or CRYODRGN_VENV with igraph,
# scipy and scikit-learn)
set -euo pipefail
cd "$(dirname "$0")/.."
Z=$(realpath "${1:-../shared/data/zvals_het-8_4k.pkl}")
K=${2:-50}
REF=${CRYODRGN_VENV:-$HOME/refvenv}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
cp "$Z" "$W/z.pkl"
CRYOFIELD_LEIDEN_XCHECK=$W K=$K cargo test --release -q --lib -- --ignored --exact \
  analysis::leiden::tests::crosscheck_dump --nocapture 2>&1 | grep -E "UMAP|clusters" || true
[ -s "$W/edges.txt" ] || { echo "the test hook wrote no graph" >&2; exit 1; }

"$REF/bin/python" - "$W" <<'PY'
import random, sys, time, numpy as np, igraph as ig, scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score as ari
w = sys.argv[1]
e = np.loadtxt(f"{w}/edges.txt", ndmin=2)
n = len(np.loadtxt(f"{w}/ours_0.txt"))
adj = sp.csr_matrix((e[:, 2], (e[:, 0].astype(int), e[:, 1].astype(int))), shape=(n, n))
# cryodrgn.utils.get_igraph_from_adjacency
src, dst = adj.nonzero()
g = ig.Graph(directed=False)
g.add_vertices(n)
g.add_edges(list(zip(src, dst)))
g.es["weight"] = np.asarray(adj[src, dst]).ravel()
print(f"graph: {n} nodes, {g.ecount()} undirected edges (each pair twice), igraph {ig.__version__}")
def q(m, gamma):
    return g.modularity(m, weights="weight", resolution=gamma)
rows = {"igraph": [], "ours": [], "ours_conv": []}
ref0 = None
for seed in range(5):
    random.seed(seed)
    t = time.time()
    m = g.community_leiden(objective_function="modularity", resolution=1.5, weights="weight").membership
    dt = time.time() - t
    if ref0 is None:
        ref0 = m
        sizes = np.bincount(m)
        print("igraph numbering by decreasing size:", bool(np.all(np.diff(sizes) <= 0)), sizes[:10])
    rows["igraph"].append((seed, q(m, 1.5), q(m, 1.0), max(m) + 1, ari(ref0, m), dt))
    for name in ("ours", "ours_conv"):
        o = np.loadtxt(f"{w}/{name}_{seed}.txt").astype(int).tolist()
        rows[name].append((seed, q(o, 1.5), q(o, 1.0), max(o) + 1, ari(ref0, o), float("nan")))
print(f"{'run':<10} {'seed':>4} {'Q(1.5)':>9} {'Q(1)':>9} {'clusters':>8} {'ARI vs igraph s0':>16} {'time s':>7}")
for name, r in rows.items():
    for s, a, b, c, d, t in r:
        print(f"{name:<10} {s:>4} {a:>9.5f} {b:>9.5f} {c:>8} {d:>16.4f} {t:>7.3f}")
means = {}
for name, r in rows.items():
    a = np.array([x[1:5] for x in r])
    means[name] = a.mean(0)
    print(f"mean {name:<10} Q(1.5) {a[:,0].mean():.5f}  Q(1) {a[:,1].mean():.5f}  clusters {a[:,2].mean():.1f}  ARI vs igraph s0 {a[:,3].mean():.4f}")
# ARI between partitions of different seeds, igraph vs igraph and ours vs igraph
ig_parts = []
for seed in range(5):
    random.seed(seed)
    ig_parts.append(g.community_leiden(objective_function="modularity", resolution=1.5, weights="weight").membership)
ours = [np.loadtxt(f"{w}/ours_{s}.txt").astype(int) for s in range(5)]
ii = [ari(ig_parts[a], ig_parts[b]) for a in range(5) for b in range(a + 1, 5)]
oi = [ari(ours[a], ig_parts[b]) for a in range(5) for b in range(5)]
print(f"mean ARI igraph–igraph (seed pairs) {np.mean(ii):.4f}; ours–igraph (all pairs) {np.mean(oi):.4f}")
rel = (means["ours"][0] - means["igraph"][0]) / abs(means["igraph"][0])
print(f"ours vs igraph, mean Q(1.5): {100 * rel:+.2f} %")
sys.exit(0 if rel > -0.02 else 1)
PY
