#!/usr/bin/env bash
# analyze-landscape on the README demo's trained model: does volume PC1 recover the phantom's
# true motion coordinate? Spearman ρ between each particle's sketch-volume PC1 and its true t
# (sim/truth.pkl), beside ρ of the latent z itself. Needs a demo folder (`cryofield demo -o DIR`)
# and a Python with numpy and scipy (e.g. ~/refvenv/bin/python).
#
#   tools/landscape_demo_check.sh DEMO_DIR [EPOCH=20] [PYTHON=~/refvenv/bin/python]
set -euo pipefail
demo=${1:?demo folder (cryofield demo -o DIR)}
epoch=${2:-20}
py=${3:-$HOME/refvenv/bin/python}
bin=${CRYOFIELD:-$(dirname "$0")/../target/release/cryofield}
"$bin" analyze-landscape "$demo/vae" "$epoch" -N 200 -M 3 -o "$demo/land"
"$py" - "$demo" "$epoch" <<'PY'
import pickle, sys
import numpy as np
from scipy.stats import spearmanr
demo, epoch = sys.argv[1], sys.argv[2]
load = lambda p: np.asarray(pickle.load(open(p, "rb")))
pc = load(f"{demo}/land/vol_pca_200.pkl")
lab = load(f"{demo}/land/kmeans200/labels.pkl").astype(int) - 1  # numbered from 1
t = load(f"{demo}/sim/truth.pkl").ravel()
z = load(f"{demo}/vae/z.{epoch}.pkl")
for k in range(3):
    print(f"volume PC{k + 1} vs true t: Spearman rho = {spearmanr(pc[lab, k], t).correlation:.3f}")
print(f"z[:, 0] vs true t: Spearman rho = {spearmanr(z[:, 0], t).correlation:.3f}")
PY
