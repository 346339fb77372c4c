#!/usr/bin/env bash
# --refine-poses on realistic data (issue 26): one phantom volume (D = 64 by default), 2000 images at
# SNR 1 with CTF and shifts, rotations perturbed by 5° about random axes; train-nn with the
# perturbed poses fixed, with --refine-poses, and with the true poses (the ceiling). Prints the
# refined poses' median rotation error at every checkpoint and the FSC of each volume against the
# truth (the figures in BENCHMARKS.md).
#
# Usage: tools/refine_poses_bench.sh OUTDIR [D] [EPOCHS] [POSE_LR] [POSE_LR_END]
# (POSE_LR_END: --pose-lr-end, the half-cosine decay of the pose lr; default: constant POSE_LR)
# TRAIN=train-vae runs train-vae (--zdim 1; the volume compared is decoded at the mean z) instead of
# train-nn; RUNS="fixed refined" skips the true-pose ceiling.
# Needs a Python with numpy: $CRYOFIELD_PYTHON, else python3. Run `cargo build --release` first.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,10p "$0"; exit 2; }
OUT=$1; D=${2:-64}; EP=${3:-15}; LR=${4:-1e-3}; LR_END=${5:-}
TRAIN=${TRAIN:-train-nn}; RUNS=${RUNS:-fixed refined true}
case $TRAIN in train-nn) EXTRA=(--dim 256 --layers 3);; train-vae) EXTRA=(--zdim 1 --dec-dim 256 --dec-layers 3);; *) echo "TRAIN: train-nn or train-vae"; exit 2;; esac
PY=${CRYOFIELD_PYTHON:-python3}
B=${CRYOFIELD_BIN:-$(dirname "$0")/../target/release/cryofield}
mkdir -p "$OUT"
"$B" phantom --kind discrete --n-states 1 -D "$D" --outdir "$OUT/ph" > /dev/null
"$B" simulate "$OUT/ph/vol_000.mrc" -N 2000 -o "$OUT/sim" --snr 1 --t-extent 2 \
  --defocus 10000 20000 --seed 1 > /dev/null
# R·Δ, Δ a 5° rotation about a uniformly random axis (Rodrigues); translations unchanged
"$PY" - "$OUT/sim/pose.pkl" "$OUT/pose5.pkl" <<'PYP'
import pickle, sys, numpy as np
rng = np.random.default_rng(0)
r, t = pickle.load(open(sys.argv[1], "rb"))
ax = rng.normal(size=(len(r), 3)); ax /= np.linalg.norm(ax, axis=1, keepdims=True)
K = np.zeros((len(r), 3, 3))
K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -ax[:, 2], ax[:, 1], -ax[:, 0]
K -= K.transpose(0, 2, 1)
th = np.deg2rad(5.0)
dR = np.eye(3)[None] + np.sin(th) * K + (1 - np.cos(th)) * K @ K
pickle.dump((np.einsum("nij,njk->nik", r, dR).astype(r.dtype), t), open(sys.argv[2], "wb"))
PYP
run() {  # name, poses, extra flags
  local s=$(date +%s)
  "$B" "$TRAIN" "$OUT/sim/particles.mrcs" --poses "$2" --ctf "$OUT/sim/ctf.pkl" -o "$OUT/$1" -n "$EP" \
    --seed 1 --checkpoint 3 "${EXTRA[@]}" "${@:3}" > "$OUT/$1.log" 2>&1
  echo "$1: $(( $(date +%s) - s )) s"
  if [ "$TRAIN" = train-vae ]; then  # the volume at the mean latent
    local zm=$("$PY" -c "import pickle,sys,numpy as np; print(float(np.mean(pickle.load(open(sys.argv[1],'rb')))))" "$OUT/$1/z.pkl")
    "$B" eval-vol "$OUT/$1/weights.safetensors" -c "$OUT/$1/config.json" -z "$zm" -o "$OUT/$1/reconstruct.mrc" > /dev/null
  fi
}
for r in $RUNS; do
  case $r in
    fixed) run fixed "$OUT/pose5.pkl";;
    refined) run refined "$OUT/pose5.pkl" --refine-poses --pretrain 3 --pose-lr "$LR" ${LR_END:+--pose-lr-end "$LR_END"};;
    true) run true "$OUT/sim/pose.pkl";;
  esac
done
echo "start: $("$B" pose-error "$OUT/pose5.pkl" "$OUT/sim/pose.pkl" -D "$D" 2>&1 | grep degrees)"
for f in $(ls "$OUT"/refined/pose.*.pkl | sort -t. -k2 -n) "$OUT/refined/pose.pkl"; do
  echo "$(basename "$f"): $("$B" pose-error "$f" "$OUT/sim/pose.pkl" -D "$D" 2>&1 | grep degrees)"
done
for r in $RUNS; do
  "$B" fsc "$OUT/$r/reconstruct.mrc" "$OUT/ph/vol_000.mrc" -o "$OUT/$r.fsc" > /dev/null 2>&1
done
# |FSC| (the data are inverted) per shell, side by side
echo "shell(1/px) $RUNS"
paste $(for r in $RUNS; do echo "$OUT/$r.fsc"; done) | \
  awk 'NR>2 {printf "%s", $1; for (i = 2; i <= NF; i += 2) printf " %.3f", ($i<0?-$i:$i); printf "\n"}'
