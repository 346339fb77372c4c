#!/usr/bin/env bash
# Does cryoDRGN 4.3.1 read a run of ours? train-vae (tiny networks, D = 16 hand images) writes,
# beside its own files, the final model as cryoDRGN's weights.pkl + config.yaml. This runs the
# reference's eval_vol on them and compares with our eval-vol (max |diff| / max |ours|), then the
# reference's train_vae --load on them (continuing one epoch: model and Adam state) and analyze -1.
# Usage: tools/cryodrgn_reads_ours.sh   (needs tools/setup_reference.sh; CRYOFIELD_BIN=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$PWD/../shared/data
REF=${CRYODRGN_VENV:-$HOME/refvenv}
if [ -n "${CRYOFIELD_BIN:-}" ]; then B=$(realpath "$CRYOFIELD_BIN"); else
  cargo build --release -q; B=$PWD/target/release/cryofield; fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
export OMP_NUM_THREADS=1
"$B" downsample "$DATA/hand.mrcs" -D 16 -o hand16.mrcs > /dev/null
NETS=(--enc-layers 2 --enc-dim 16 --dec-layers 2 --dec-dim 16)
"$B" train-vae hand16.mrcs --poses "$DATA/hand_rot_trans.pkl" --zdim 2 -n 2 "${NETS[@]}" -o ours \
  --no-analysis > /dev/null 2>&1
"$B" eval-vol ours/weights.safetensors -c ours/config.json -z 0.5 -0.3 -o ours.mrc > /dev/null 2>&1
"$REF/bin/cryodrgn" eval_vol ours/weights.pkl -c ours/config.yaml -z 0.5 -0.3 -o ref.mrc > /dev/null 2>&1
"$REF/bin/python" - <<'PY'
import numpy as np
from cryodrgn.mrcfile import parse_mrc
a = parse_mrc("ref.mrc")[0]; b = parse_mrc("ours.mrc")[0]
print(f"reference eval_vol on our weights.pkl vs our eval-vol: max|diff|/max|ours| {np.abs(a - b).max() / np.abs(b).max():.2e}")
PY
"$REF/bin/cryodrgn" train_vae hand16.mrcs --poses "$DATA/hand_rot_trans.pkl" --zdim 2 -n 3 "${NETS[@]}" \
  -o cont --load ours/weights.pkl --no-analysis > cont.log 2>&1 \
  && echo "reference train_vae --load our weights.pkl: $(grep -o 'Epoch: 3 Average gen loss = [0-9.]*' cont.log)" \
  || { echo "reference train_vae --load failed:"; tail -5 cont.log; }
"$REF/bin/cryodrgn" analyze ours -1 --ksample 4 --skip-umap > analyze.log 2>&1 \
  && echo "reference analyze -1 on our run: ok" \
  || echo "reference analyze -1 on our run: $(ls ours/analyze | tr '\n' ' ') written, then: $(tail -1 analyze.log)"
