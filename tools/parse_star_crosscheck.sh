#!/usr/bin/env bash
# Cross-check cryofield's `parse-star` against the reference (cryoDRGN 4.3.1 `cryodrgn parse_star`)
# on the RELION fixture .star files of ../shared/data (3.1 with the optics table first and last,
# and RELION 5), with the file's own image parameters and with every override flag given
# (-D 294 --Apix 1.7 --kv 200 --cs 2.7 -w 0.07 --ps 10). Prints, per case, the shapes and the
# largest |ours − reference| of the pose rotations, the pose translations and the CTF array.
# Usage: tools/parse_star_crosscheck.sh   (needs the reference in $CRYODRGN_VENV, default ~/refvenv)
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${CRYODRGN_VENV:-$HOME/refvenv}
DATA=$PWD/../shared/data
cargo build --release -q
B=$PWD/target/release/cryofield
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"

OVERRIDES=(-D 294 --Apix 1.7 --kv 200 --cs 2.7 -w 0.07 --ps 10)
CASES=()
for star in relion31 relion31.v2 relion5; do
  for mode in file overrides; do
    flags=(); [ "$mode" = overrides ] && flags=("${OVERRIDES[@]}")
    c=$star.$mode
    "$REF/bin/cryodrgn" parse_star "$DATA/$star.star" --ctf ref.$c.ctf.pkl --poses ref.$c.pose.pkl \
      ${flags[@]+"${flags[@]}"} >/dev/null 2>&1
    "$B" parse-star "$DATA/$star.star" --ctf ours.$c.ctf.pkl --poses ours.$c.pose.pkl \
      ${flags[@]+"${flags[@]}"} 2>/dev/null
    CASES+=("$c")
  done
done

"$REF/bin/python" - "${CASES[@]}" <<'PY'
import pickle, sys
import numpy as np

def load(p):
    with open(p, "rb") as f:
        return pickle.load(f)

print(f"{'case':<24} {'N':>3} {'max|drot|':>10} {'max|dtrans|':>12} {'max|dctf|':>10}  dtypes ours/ref")
for c in sys.argv[1:]:
    (r1, t1), (r0, t0) = load(f"ours.{c}.pose.pkl"), load(f"ref.{c}.pose.pkl")
    c1, c0 = load(f"ours.{c}.ctf.pkl"), load(f"ref.{c}.ctf.pkl")
    assert r1.shape == r0.shape and t1.shape == t0.shape and c1.shape == c0.shape, c
    drot = np.abs(r1.astype(np.float64) - r0).max()
    dtrans = np.abs(t1.astype(np.float64) - t0).max()
    dctf = np.abs(c1.astype(np.float64) - c0).max()
    print(f"{c:<24} {len(r0):>3} {drot:>10.2e} {dtrans:>12.2e} {dctf:>10.2e}  "
          f"rot {r1.dtype}/{r0.dtype} trans {t1.dtype}/{t0.dtype} ctf {c1.dtype}/{c0.dtype}")
PY
