#!/usr/bin/env bash
# Cross-check `cryofield pose-error` against the reference's own metrics (cryoDRGN 4.3.1
# `cryodrgn.metrics.align_rot_best`, `frob_norm`, `get_trans_metrics`) on planted poses:
# truth = random rotations; pred = F·(truth·Q·ε)·F (other hand, global rotation Q, 2° noise ε),
# 10 % random outliers, translations moved by 1.5 px. Checks that both pick the flipped hand, that
# the reference's frob_norm of our aligned poses reproduces our per-image numbers, that our median
# is no larger than the reference's (its alignment is one image's noisy relative rotation), and
# that the reference's translation median (`medae`, times D) equals ours.
# Usage: tools/pose_error_crosscheck.sh   (needs tools/setup_reference.sh first; CRYOFIELD_BIN=path skips
# the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${CRYODRGN_VENV:-$HOME/refvenv}
if [ -n "${CRYOFIELD_BIN:-}" ]; then B=$(realpath "$CRYOFIELD_BIN"); else
  cargo build --release -q; B=$PWD/target/release/cryofield; fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
"$REF/bin/python" - <<'PY'
import pickle, numpy as np, torch
from cryodrgn import lie_tools
torch.manual_seed(0); rng = np.random.default_rng(0)
n, D = 2000, 128
T = lie_tools.random_rotmat(n).numpy().astype(np.float64)
Q = lie_tools.random_rotmat(1).numpy()[0].astype(np.float64)
def rodrigues(v):
    th = np.linalg.norm(v); k = v / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K
F = np.diag([1.0, 1.0, -1.0])
P = np.empty_like(T)
for i in range(n):
    ax = rng.normal(size=3); ax /= np.linalg.norm(ax)
    P[i] = F @ T[i] @ Q @ rodrigues(np.deg2rad(2.0) * ax) @ F
out = rng.random(n) < 0.1
P[out] = lie_tools.random_rotmat(int(out.sum())).numpy()
tt = rng.uniform(-0.05, 0.05, size=(n, 2))
phi = rng.uniform(0, 2 * np.pi, n)
tp = tt + 1.5 / D * np.stack([np.cos(phi), np.sin(phi)], 1)
pickle.dump((P.astype(np.float32), tp.astype(np.float32)), open("pred.pkl", "wb"))
pickle.dump((T.astype(np.float32), tt.astype(np.float32)), open("true.pkl", "wb"))
PY
$B pose-error pred.pkl true.pkl -D 128 -o out
"$REF/bin/python" - <<'PY'
import json, logging, pickle, numpy as np, torch
from cryodrgn import metrics
logging.basicConfig(level=logging.INFO, format="reference: %(message)s")
P, tp = pickle.load(open("pred.pkl", "rb")); T, tt = pickle.load(open("true.pkl", "rb"))
ours = json.load(open("out/pose_error.json")); per = np.load("out/pose_error.npy")
_, _, ref_median = metrics.align_rot_best(torch.tensor(T), torch.tensor(P))
A = np.array(ours["align"])
F = np.diag([1.0, 1.0, -1.0])
H = F @ P.astype(np.float64) @ F if ours["flipped"] else P.astype(np.float64)
frob = metrics.frob_norm(T.astype(np.float64), H @ A)
_, _, tm, _ = metrics.get_trans_metrics(torch.tensor(tt), torch.tensor(tp), None)
print(f"median squared Frobenius: reference align_rot_best {ref_median:.6g}, ours {ours['median_rot_frob']:.6g}")
print(f"reference frob_norm of our alignment vs our per-image values: max |diff| {np.abs(frob - per[:, 0]).max():.3g}")
print(f"median translation error (px): reference medae·D {tm['medae'] * 128:.6g}, ours {ours['median_trans_px']:.6g}")
assert ours["flipped"]
assert np.abs(frob - per[:, 0]).max() < 1e-9
assert ours["median_rot_frob"] <= ref_median * 1.0001
assert abs(tm["medae"] * 128 - ours["median_trans_px"]) < 1e-4
print("OK")
PY
