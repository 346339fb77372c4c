#!/usr/bin/env bash
# Latent diffusion prior, full size: PC1 TVD of diffusion samples vs the Gaussian prior on synthetic latents
# with known structure (ring, line, mixture; N latents each) and on ../shared/data/zvals_het-8_4k.pkl,
# plus training throughput and the wall time of 1000 samples × 1000 Euler–Maruyama steps.
#
# usage: tools/bench_prior.sh [STEPS=8000] [N=50000]     (env PYTHON: a python with numpy)
# Writes everything under target/bench_prior/. Takes ~10 min per dataset at 8000 steps on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-8000}"
n="${2:-50000}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for c in target/ci-venv/bin/python "$HOME/refvenv/bin/python" python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import numpy" 2>/dev/null; then py="$c"; break; fi
  done
fi
[ -n "$py" ] || { echo "need a python with numpy (set PYTHON)" >&2; exit 1; }
out=target/bench_prior
mkdir -p "$out"
cargo build --release -q
bin=target/release/cryofield

"$py" - "$out" "$n" <<'PY'
import sys, numpy as np
out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
th = rng.uniform(0, 2 * np.pi, n)
r = 1 + 0.05 * rng.standard_normal(n)
np.save(f"{out}/ring.npy", np.stack([r * np.cos(th), r * np.sin(th)], 1).astype(np.float32))
u = np.array([0.5, -0.5, 0.5, 0.5])
t = rng.uniform(-1.5, 1.5, n)
np.save(f"{out}/line.npy", (t[:, None] * u + 0.05 * rng.standard_normal((n, 4))).astype(np.float32))
means = rng.standard_normal((5, 8)) * 2.0
w = np.array([0.35, 0.25, 0.2, 0.12, 0.08])
k = rng.choice(5, n, p=w)
np.save(f"{out}/mixture.npy", (means[k] + 0.3 * rng.standard_normal((n, 8))).astype(np.float32))
PY

printf '%-10s %8s %10s %10s %10s %12s\n' data N "TVD diff" "TVD gauss" "floor" "train s"
for name in ring line mixture het8; do
  if [ "$name" = het8 ]; then z=../shared/data/zvals_het-8_4k.pkl; else z="$out/$name.npy"; fi
  t0=$(date +%s.%N)
  "$bin" prior-train "$z" -o "$out/$name" --steps "$steps" > "$out/$name.train.log" 2>&1
  t1=$(date +%s.%N)
  "$bin" prior-eval "$out/$name" "$z" -n 10000 --steps 1000 --bins 20 -o "$out/$name/eval" > "$out/$name.eval.log" 2>&1
  line=$(grep "PC1 TVD" "$out/$name/eval/eval.txt")
  d=$(echo "$line" | sed -E 's/.*diffusion prior ([0-9.]+).*/\1/')
  g=$(echo "$line" | sed -E 's/.*Gaussian prior ([0-9.]+).*/\1/')
  f=$(echo "$line" | sed -E 's/.*\) ([0-9.]+)$/\1/')
  nn=$(grep "^data latents" "$out/$name/eval/eval.txt" | sed -E "s/data latents: ([0-9]+).*/\1/")
  printf '%-10s %8s %10s %10s %10s %12.1f\n' "$name" "$nn" "$d" "$g" "$f" "$(echo "$t1 - $t0" | bc)"
done
grep -h "steps/s" "$out"/*.train.log | sed 's/^/train: /'
s0=$(date +%s.%N)
"$bin" prior-sample "$out/ring" -n 1000 --steps 1000 -o "$out/ring_samples.txt" > /dev/null
echo "prior-sample 1000 samples x 1000 steps (ring prior, 16x128): $(echo "$(date +%s.%N) - $s0" | bc) s"
