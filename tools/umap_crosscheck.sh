#!/usr/bin/env bash
# Cross-check `analyze`'s UMAP (src/analysis/umap.rs) against umap-learn, which the reference's
# analyze calls (cryodrgn.analysis.run_umap = umap.UMAP().fit_transform(z)). Our coordinates
# cannot match umap-learn's (other generator, PCA instead of spectral init), so the two are
# compared on quality: sklearn's trustworthiness (k = 10) of each embedding of the same z, and,
# for labelled data, the 5-NN label accuracy in the embedding. Data sets (float32 z, N points):
#   blobs  - 6 Gaussian blobs (std 1, centres 8 apart) in 10-D, 1 % of points between two blobs
#   curve  - a closed curve winding around 5 circles in 10-D, (a_j cos jt, a_j sin jt), + noise
#   roll   - sklearn's swiss roll (noise 0.3), lifted to 10-D by a random orthonormal map
# Ours runs through the CLI: `cryofield analyze RUN 0 --skip-vol` on a minimal run folder
# (z.0.pkl; config.json and weights.0.safetensors are empty placeholders, never read with
# --skip-vol). umap-learn runs with random_state=0 (single-threaded) and its defaults otherwise.
# Wall times: ours is the whole analyze (PCA, k-means, plots included), umap-learn's fit_transform
# alone, both on this machine.
# Exits non-zero when our trustworthiness is more than 0.02 below umap-learn's on any data set.
# umap-learn is a tool-time reference only, never a dependency of the crate or its tests.
# Usage: tools/umap_crosscheck.sh [N]   (default N = 3000; needs tools/setup_reference.sh first, or
# CRYODRGN_VENV=a venv with umap-learn and scikit-learn; CRYOFIELD_BIN=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
REF=${CRYODRGN_VENV:-$HOME/refvenv}
if [ -n "${CRYOFIELD_BIN:-}" ]; then B=$(realpath "$CRYOFIELD_BIN"); else
  cargo build --release -q; B=$PWD/target/release/cryofield; fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

"$REF/bin/python" - "$W" "$N" <<'PY'
import os, pickle, sys, numpy as np
from sklearn.datasets import make_swiss_roll
w, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
def lift(x, d=10):
    q, _ = np.linalg.qr(rng.normal(size=(d, x.shape[1])))
    return x @ q.T
c = 6
lab = np.arange(n) % c
cen = np.zeros((c, 10)); cen[np.arange(c), np.arange(c)] = 8.0
blobs = cen[lab] + rng.normal(size=(n, 10))
m = n // 100  # a thin bridge between blobs 0 and 1
t = rng.uniform(size=(m, 1))
blobs[:m] = (1 - t) * cen[0] + t * cen[1] + 0.3 * rng.normal(size=(m, 10))
lab[:m] = -1
tt = 2 * np.pi * np.arange(n) / n
curve = np.concatenate([np.stack([(1 + j / 10) * np.cos(j * tt), (1 + j / 10) * np.sin(j * tt)], 1)
                        for j in range(1, 6)], 1) + 0.02 * rng.normal(size=(n, 10))
roll = lift(make_swiss_roll(n, noise=0.3, random_state=0)[0])
for name, z in [("blobs", blobs), ("curve", curve), ("roll", roll)]:
    d = os.path.join(w, name)
    os.makedirs(d)
    with open(os.path.join(d, "z.0.pkl"), "wb") as f:
        pickle.dump(z.astype(np.float32), f)
    open(os.path.join(d, "config.json"), "w").write("{}")
    open(os.path.join(d, "weights.0.safetensors"), "wb").close()
np.save(os.path.join(w, "blobs_labels.npy"), lab)
PY

for name in blobs curve roll; do
  s=$(date +%s.%N)
  "$B" analyze "$W/$name" 0 --skip-vol --ksample 6 -o "$W/$name/analyze" > "$W/$name/log" 2>&1 ||
    { cat "$W/$name/log"; exit 1; }
  echo "$(date +%s.%N) - $s" | bc > "$W/$name/seconds"
done

"$REF/bin/python" - "$W" "$N" <<'PY'
import os, pickle, sys, time, warnings, numpy as np
import umap
warnings.filterwarnings("ignore", message="n_jobs value")
from sklearn.manifold import trustworthiness
from sklearn.neighbors import KNeighborsClassifier
w, n = sys.argv[1], int(sys.argv[2])
lab = np.load(os.path.join(w, "blobs_labels.npy"))
def knn_acc(y):
    keep = lab >= 0
    clf = KNeighborsClassifier(6).fit(y[keep], lab[keep])
    # 5 neighbours besides the point itself
    nb = clf.kneighbors(y[keep], return_distance=False)[:, 1:]
    vote = np.array([np.bincount(lab[keep][r], minlength=lab.max() + 1).argmax() for r in nb])
    return (vote == lab[keep]).mean()
# numba compiles umap-learn's kernels on first use: a small warm-up fit keeps that out of the times.
umap.UMAP(random_state=0).fit_transform(np.random.default_rng(1).normal(size=(300, 10)))
umap.UMAP(random_state=0, init="pca").fit_transform(np.random.default_rng(1).normal(size=(300, 10)))
print(f"N = {n}; trustworthiness k=10 (sklearn); 5-NN label accuracy for blobs")
print("umap-learn: default (spectral init) and init='pca' (as ours); times: ours = whole analyze")
print(f"{'data':6} {'ours T':>8} {'ul T':>8} {'ul-pca T':>9} {'ours s':>7} {'ul s':>6} {'ul-pca s':>9}  extra")
worst = 0.0
for name in ["blobs", "curve", "roll"]:
    d = os.path.join(w, name)
    z = pickle.load(open(os.path.join(d, "z.0.pkl"), "rb"))
    ours = pickle.load(open(os.path.join(d, "analyze", "umap.pkl"), "rb"))
    assert ours.dtype == np.float32 and ours.shape == (n, 2), (ours.dtype, ours.shape)
    secs = float(open(os.path.join(d, "seconds")).read())
    t0 = time.time()
    ref = umap.UMAP(random_state=0).fit_transform(z)
    tref = time.time() - t0
    t0 = time.time()
    refp = umap.UMAP(random_state=0, init="pca").fit_transform(z)
    trefp = time.time() - t0
    to, tr, trp = (trustworthiness(z, e, n_neighbors=10) for e in (ours, ref, refp))
    extra = (f"5-NN acc ours {knn_acc(ours):.4f}, ul {knn_acc(ref):.4f}, ul-pca {knn_acc(refp):.4f}"
             if name == "blobs" else "")
    print(f"{name:6} {to:8.4f} {tr:8.4f} {trp:9.4f} {secs:7.1f} {tref:6.1f} {trefp:9.1f}  {extra}")
    worst = max(worst, tr - to)
if worst > 0.02:
    print(f"FAIL: our trustworthiness is {worst:.4f} below umap-learn's")
    sys.exit(1)
print("ok: ours within 0.02 of umap-learn (or above) on every data set")
PY
