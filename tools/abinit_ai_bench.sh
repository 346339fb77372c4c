#!/usr/bin/env bash
# `abinit` (cryoDRGN-AI, issue 26) on the no-tilt linear1d phantom of BENCHMARKS.md: hand-vol.mrc
# downsampled to D = 32 (Apix 2), one spherical domain of radius 7 px sliding 8 px along x over 20
# states; N images (default 3000) at SNR 1 with CTF (1–2 µm defocus) and shifts uniform in ±3 px.
# Runs `abinit --zdim 1` with the reference's defaults (extra flags appended) and prints, for every
# written epoch, the median rotation error after aligning each state on its own (`pose-error
# --labels`), the median under one global alignment, and Spearman's ρ between z and the true state.
#
# Usage: tools/abinit_ai_bench.sh OUTDIR [N] [abinit flags...]
# Needs a Python with numpy: $CRYOFIELD_PYTHON, else python3. Run `cargo build --release` first.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,10p "$0"; exit 2; }
OUT=$1; N=${2:-3000}; shift $(( $# >= 2 ? 2 : 1 ))
PY=${CRYOFIELD_PYTHON:-python3}
B=${CRYOFIELD_BIN:-$(dirname "$0")/../target/release/cryofield}
DATA=${CRYOFIELD_DATA:-$(dirname "$0")/../../shared/data}
mkdir -p "$OUT"
if [ ! -f "$OUT/sim/particles.mrcs" ]; then
  "$B" downsample "$DATA/hand-vol.mrc" --is-vol -D 32 -o "$OUT/hand32.mrc" > /dev/null
  "$B" phantom --kind linear1d --base "$OUT/hand32.mrc" --shift 8 0 0 --domain-radius 7 --n-states 20 \
    -o "$OUT/ph" > /dev/null
  "$B" simulate "$OUT/ph/vols.txt" -N "$N" -o "$OUT/sim" --snr 1 --t-extent 3 --defocus 10000 20000 \
    --seed 16 > /dev/null
fi
s=$(date +%s)
"$B" abinit "$OUT/sim/particles.mrcs" --ctf "$OUT/sim/ctf.pkl" --zdim 1 -o "$OUT/run" --seed 1 \
  --checkpoint 3 --no-analysis "$@" > "$OUT/run.log" 2>&1
echo "abinit: $(( $(date +%s) - s )) s wall; $(tail -1 "$OUT/run.log")"
for f in $(ls "$OUT"/run/pose.*.pkl | sort -t. -k2 -n); do
  e=$(basename "$f" .pkl); e=${e#pose.}
  per=$("$B" pose-error "$f" "$OUT/sim/pose.pkl" -D 32 --labels "$OUT/sim/labels.pkl" 2>&1 | \
    grep "after per-state alignment" | sed 's/.*median squared Frobenius [0-9.]*, median \([0-9.]*\)°.*/\1/')
  glob=$("$B" pose-error "$f" "$OUT/sim/pose.pkl" -D 32 2>&1 | grep degrees | sed 's/.*median \([0-9.]*\).*/\1/')
  rho=$("$PY" -c "
import pickle, sys, numpy as np
z = pickle.load(open(sys.argv[1], 'rb'))[:, 0]; l = pickle.load(open(sys.argv[2], 'rb'))
def rk(a):  # ranks, ties averaged (Spearman's)
    r = np.empty(len(a)); r[np.argsort(a, kind='stable')] = np.arange(len(a))
    _, inv = np.unique(a, return_inverse=True)
    return (np.bincount(inv, r) / np.bincount(inv))[inv]
print('%.3f' % np.corrcoef(rk(z), rk(l))[0, 1])" "$OUT/run/z.$e.pkl" "$OUT/sim/labels.pkl")
  echo "epoch $e: rotation error per state ${per}°, one global alignment ${glob}°, rho(z, state) $rho"
done
