#!/usr/bin/env bash
# Issue 24's comparisons on the linear2d phantom (D = 32, two domains, 10 × 10 states), in-plane poses
# viewed along the molecule's y axis (--pose-dist inplane-y: views along z hide the second domain's motion):
#   PoseVAE vs VAE: train-vae --pose-source encoder (an in-plane pose head) with --intervention-weight W
#     (default 1) vs 0 on 2000 images; MCC_all over (z, aligned ψ̂) and MCC_conf (disentangle mcc), the
#     held-out Eq. 2 loss and the six intervention metrics (disentangle interventions on 2000 held-out
#     images), the 90° test (disentangle rot90).
#   SlowVAE vs VAE: train-vae with known poses on 1000 simulate --pairs pairs (data rate DR, default 1), with
#     --pairs --slow-gamma G --slow-rate L (defaults: the paper's G = 10, L = 10) vs without; MCC_conf on the
#     training latents and on the held-out set, and the seven scores (disentangle scores at --scale SCALE,
#     default 1) on the held-out latents.
#   Also: the rotation-invariant kNN R² of each true factor from z (leave-one-out, k = 15, training latents).
# Both arms of a comparison share the data and the seed; zdim 2, β = 1, 128×3, lr 1e-3, batch 8, 15 epochs.
# COND: real (SNR 1, CTF with defocus 1–2 µm, shifts ±2 px) or clean (noiseless, no CTF, no shifts).
#
# Usage: tools/disentangle_eval.sh OUTDIR [SEED] [real|clean]   (about 25 minutes on 2 idle cores)
#   env: CRYOFIELD_BIN (default target/release/cryofield), PY (python3 with numpy), W (default 1: the
#   paper's units, divided by the pixel count as β is), G, L, DR, SCALE
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,17p "$0"; exit 2; }
OUT=$1; S=${2:-1}; COND=${3:-real}
B=${CRYOFIELD_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/cryofield}
PY=${PY:-python3}; W=${W:-1}; G=${G:-10}; L=${L:-10}; DR=${DR:-1}; SCALE=${SCALE:-1}
mkdir -p "$OUT"; cd "$OUT"
case $COND in
  real) NOISE="--snr 1 --t-extent 2 --defocus 10000 20000"; SNR="--snr 1"; CT() { echo "--ctf $1/ctf.pkl"; } ;;
  clean) NOISE=""; SNR=""; CT() { :; } ;;
  *) echo "COND must be real or clean" >&2; exit 2 ;;
esac
q() { "$@" > /dev/null 2>&1; }
[ -d ph ] || q "$B" phantom --kind linear2d -D 32 --Apix 4.0 --seed 1 -o ph
[ -d train ] || q "$B" simulate ph/vols.txt -N 2000 --pose-dist inplane-y $NOISE --seed "$S" -o train
[ -d held ] || q "$B" simulate ph/vols.txt -N 2000 --pose-dist inplane-y $NOISE --seed $((S + 100)) -o held
[ -d pairs ] || q "$B" simulate ph/vols.txt -N 2000 --pose-dist inplane-y --pairs --data-rate "$DR" $NOISE --seed $((S + 200)) -o pairs
NET="--zdim 2 --beta 1 --enc-dim 128 --dec-dim 128 --lr 1e-3 -b 8 -n 15 --seed $S"
train() { out=$1; shift; [ -f "$out/weights.safetensors" ] || "$B" train-vae "$@" $NET -o "$out" > "$out.log" 2>&1; }
train vae train/particles.mrcs --poses train/pose.pkl $(CT train) --pose-source encoder --intervention-weight 0
train posevae train/particles.mrcs --poses train/pose.pkl $(CT train) --pose-source encoder --intervention-weight "$W"
train pvae pairs/particles.mrcs --poses pairs/pose.pkl $(CT pairs)
train slow pairs/particles.mrcs --poses pairs/pose.pkl $(CT pairs) --pairs pairs/pairs.pkl --slow-gamma "$G" --slow-rate "$L"
for m in vae posevae; do
  "$B" disentangle mcc --z $m/z.pkl --truth train/truth.pkl --conf-cols 0,1 --pose-pred $m/pose_pred.pkl --pose-true train/pose_angle.pkl -o $m.mcc.json > $m.mcc.txt
  "$B" disentangle interventions $m/weights.safetensors -c $m/config.json --phantom ph --particles held/particles.mrcs --poses-true held/pose.pkl $(CT held) $SNR -n 1000 -o $m.int.json > $m.int.txt 2>&1
  "$B" disentangle rot90 held/particles.mrcs $m/weights.safetensors -c $m/config.json --poses held/pose.pkl $(CT held) -n 1000 -o $m.rot90.json > $m.rot90.txt 2>&1
  q "$B" disentangle plots --z $m/z.pkl --truth train/truth.pkl --pose-pred $m/pose_pred.pkl --pose-angle train/pose_angle.pkl -o $m.plots
done
"$PY" - <<'PY'
import pickle, numpy as np
t = np.asarray(pickle.load(open('held/truth.pkl', 'rb')))
np.save('held_factors.npy', np.rint(t * 9).astype(np.int64))  # linear2d: t = level/9 on the 10-grid
PY
for m in pvae slow; do
  "$B" disentangle mcc --z $m/z.pkl --truth pairs/truth.pkl --conf-cols 0,1 -o $m.mcc.json > $m.mcc.txt
  q "$B" eval-images held/particles.mrcs $m/weights.safetensors -c $m/config.json --poses held/pose.pkl $(CT held) -o $m.held_z.pkl
  "$B" disentangle mcc --z $m.held_z.pkl --truth held/truth.pkl --conf-cols 0,1 -o $m.held_mcc.json > $m.held_mcc.txt
  "$B" disentangle scores --repr $m.held_z.pkl --factors held_factors.npy --num-values 10,10 --scale "$SCALE" -o $m.scores.json > $m.scores.txt 2>&1
done
knn() {
  "$PY" - "$@" <<'PY'
import pickle, sys, numpy as np
t = np.asarray(pickle.load(open(sys.argv[2], 'rb')))[:, :2]
z = np.asarray(pickle.load(open(sys.argv[1], 'rb')))
z = (z - z.mean(0)) / z.std(0)
d = ((z[:, None] - z[None]) ** 2).sum(-1); np.fill_diagonal(d, np.inf)
p = t[np.argsort(d, 1)[:, :15]].mean(1)
print('kNN R2 (t1, t2) = %.3f %.3f' % tuple(1 - ((t - p) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0)))
PY
}
epoch() { grep -o '[0-9.]* s$' "$1.log" | tail -1; }
echo "== $OUT seed $S $COND"
for m in vae posevae pvae slow; do echo "$m: $(grep -m1 spearman $m.mcc.txt | tr -d '\n') | last epoch $(epoch $m)"; done
for m in vae posevae; do echo "$m: $(knn $m/z.pkl train/truth.pkl)"; done
for m in pvae slow; do echo "$m: $(knn $m/z.pkl pairs/truth.pkl)"; done
for m in vae posevae; do echo "$m: $(grep -m1 '^pose' $m.mcc.txt)"; echo "$m interventions: $(cat $m.int.txt | tr '\n' ' ' | cut -c1-400)"; echo "$m rot90: $(cat $m.rot90.txt | tr '\n' ' ' | cut -c1-300)"; done
for m in pvae slow; do echo "$m held: $(head -1 $m.held_mcc.txt)"; echo "$m scores: $(cat $m.scores.txt | tr '\n' ' ' | cut -c1-500)"; done
