#!/usr/bin/env bash
# Side-by-side: `cryofield downsample` vs the reference `cryodrgn downsample` on the same 10 000 × 128²
# stack (→ 64), on this machine, plus the largest difference between the two outputs.
# Usage: tools/bench_downsample.sh [N] [D] [d]   (needs the reference venv: tools/setup_reference.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}; D=${2:-128}; d=${3:-64}
REF=${CRYODRGN_VENV:-$HOME/refvenv}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cargo build --release -q
BIN=target/release/cryofield
$BIN demo -N "$N" -D "$D" -o "$W" >/dev/null 2>&1
ls -l "$W/particles.mrcs"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
# warm the page cache once, then time each twice and keep the best
cat "$W/particles.mrcs" > /dev/null
best() { local a b; a=$(t "$@"); b=$(t "$@"); echo "if ($a < $b) $a else $b" | bc; }
ours=$(best $BIN downsample "$W/particles.mrcs" -D "$d" -o "$W/ours.mrcs")
ref=$(best "$REF/bin/cryodrgn" downsample "$W/particles.mrcs" -D "$d" -o "$W/ref.mrcs")
echo "cores: $(nproc)  images: $N  $D -> $d"
echo "cryofield downsample: ${ours} s"
echo "cryodrgn  downsample: ${ref} s"
echo "speed-up: $(echo "scale=2; $ref / $ours" | bc)x"
"$REF/bin/python" - "$W/ours.mrcs" "$W/ref.mrcs" <<'PY'
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype="<f4", offset=1024)
b = np.fromfile(sys.argv[2], dtype="<f4", offset=1024)
print(f"max |ours - ref| = {np.abs(a - b).max():.3g} (max |ref| = {np.abs(b).max():.3g})")
PY
