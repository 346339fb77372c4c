#!/usr/bin/env bash
# Cross-check `cryofield disentangle scores` against a scikit-learn recomputation
# (tools/scores_crosscheck.py) on the exact arrays each metric saw (--dump).
#
# usage: tools/scores_crosscheck.sh [--repr R --factors V [--num-values 10,10]] [--scale S]
#   Always runs the synthetic cases (K = 3 factors × 10 values, r = R·factors + N(0, 0.1²)):
#   identity, rot45 (Rz(45°) in the plane of factors 0 and 1) and random (codes independent of the
#   factors); with --repr/--factors also those arrays. Python: $PY if set, else a venv at
#   tools/.venv-scores with numpy, scipy and scikit-learn. Builds the debug binary (no --release).
# Exits non-zero if any metric differs beyond its stated tolerance.
set -euo pipefail
cd "$(dirname "$0")/.."

REPR="" FACTORS="" NUMV="" SCALE="0.1" N=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --repr) REPR="$2"; shift 2 ;;
    --factors) FACTORS="$2"; shift 2 ;;
    --num-values) NUMV="$2"; shift 2 ;;
    --scale) SCALE="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "${PY:-}" ]; then
  if [ ! -x tools/.venv-scores/bin/python ]; then
    python3 -m venv tools/.venv-scores
    tools/.venv-scores/bin/pip install -q numpy scipy scikit-learn
  fi
  PY=tools/.venv-scores/bin/python
fi

# The test profile (opt-level 2, what `cargo test` builds) rather than the unoptimised dev one.
cargo build -q --profile test --bin cryofield
BIN=target/debug/cryofield
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" "$N" <<'EOF'
import sys, numpy as np
work, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
v = rng.integers(0, 10, size=(n, 3))
x = v.astype(np.float64)
s = np.sqrt(0.5)
R = np.array([[s, -s, 0.0], [s, s, 0.0], [0.0, 0.0, 1.0]])
cases = {
    "identity": x + 0.1 * rng.standard_normal((n, 3)),
    "rot45": x @ R.T + 0.1 * rng.standard_normal((n, 3)),
    "random": 3.0 * rng.standard_normal((n, 3)),
}
for name, r in cases.items():
    np.save(f"{work}/{name}_r.npy", r)
np.save(f"{work}/v.npy", v.astype(np.int64))
EOF

status=0
run_case() { # label repr factors [extra args...]
  local label=$1 repr=$2 factors=$3
  shift 3
  "$BIN" disentangle scores --repr "$repr" --factors "$factors" --scale "$SCALE" \
    --dump "$WORK/$label" -o "$WORK/$label.json" "$@"
  "$PY" tools/scores_crosscheck.py "$WORK/$label" "$WORK/$label.json" --label "$label" || status=1
}
for c in identity rot45 random; do
  run_case "$c" "$WORK/${c}_r.npy" "$WORK/v.npy"
done
if [ -n "$REPR" ]; then
  extra=()
  [ -n "$NUMV" ] && extra=(--num-values "$NUMV")
  run_case user "$REPR" "$FACTORS" "${extra[@]}"
fi
exit $status
