#!/usr/bin/env bash
# Science side by side: cryofield train-vae vs cryoDRGN 4.3.1 train_vae on the same simulated data for the
# same epochs (linear1d phantom, D=32, 50 states, SNR 1, CTF, shifts; zdim 1, enc/dec 128x3, lr 1e-3,
# batch 8 — the README demo's settings), then, computed by the same code for both:
#   - Spearman rho between z (posterior mean) and each image's true coordinate (|rho| >= 0.9 wanted);
#   - the per-image FSC=0.5 resolution of the cryoDRGN paper's Table 2 (eval-accuracy, 100 images):
#     ours decoded by our model, the reference's decoded by `cryodrgn eval_vol --zfile` and scored
#     with `eval-accuracy --decoded` (lower is better, best 6 A = 2 px).
# usage: tools/compare_accuracy.sh [N=3000] [EPOCHS=20] [WORKDIR=target/compare_accuracy]
#   env: CRYODRGN_VENV (default ~/refvenv), SKIP_TRAIN=1 reuses trained runs in WORKDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}; E=${2:-20}; W=${3:-target/compare_accuracy}
REF=${CRYODRGN_VENV:-$HOME/refvenv}
cargo build --release -q
B=$PWD/target/release/cryofield
mkdir -p "$W"
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  $B phantom --kind linear1d -D 32 -o "$W/ph" > /dev/null
  $B simulate "$W/ph/vols.txt" -N "$N" --snr 1 --t-extent 2 --defocus 10000 20000 -o "$W/sim" > /dev/null
  common=(--poses "$W/sim/pose.pkl" --ctf "$W/sim/ctf.pkl" --zdim 1 --enc-dim 128 --dec-dim 128 -n "$E" -b 8 --lr 1e-3 --seed 1)
  /usr/bin/time -f "ours: %e s wall" $B train-vae "$W/sim/particles.mrcs" "${common[@]}" -o "$W/ours" > "$W/ours.log" 2>&1
  /usr/bin/time -f "reference: %e s wall" "$REF/bin/cryodrgn" train_vae "$W/sim/particles.mrcs" "${common[@]}" -o "$W/ref" > "$W/ref.log" 2>&1
fi
last=$((E - 1))
acc=(--vols "$W/ph/vols.txt" --labels "$W/sim/labels.pkl" -n 100 --seed 0 --truth "$W/sim/truth.pkl")
echo "== cryofield (z.$last.pkl)"
$B eval-accuracy "$W/ours/weights.$last.safetensors" -c "$W/ours/config.json" --zfile "$W/ours/z.$last.pkl" "${acc[@]}" -o "$W/ours_acc.txt"
# the reference numbers epochs from 1: its z.$E.pkl is the same epoch as our z.$last.pkl
$B eval-accuracy --zfile "$W/ref/z.$E.pkl" "${acc[@]}" --write-z "$W/ref_chosen.txt" > /dev/null
rm -rf "$W/ref_vols"
"$REF/bin/cryodrgn" eval_vol "$W/ref/weights.$E.pkl" -c "$W/ref/config.yaml" --zfile "$W/ref_chosen.txt" -o "$W/ref_vols" > "$W/ref_evalvol.log" 2>&1
echo "== cryoDRGN 4.3.1 (z.$E.pkl), its volumes from eval_vol, scored by eval-accuracy --decoded"
# the reference also trains on inverted data by default: its volumes are -density
$B eval-accuracy --zfile "$W/ref/z.$E.pkl" "${acc[@]}" --decoded "$W/ref_vols" --negate -o "$W/ref_acc.txt"
