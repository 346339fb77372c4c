#!/usr/bin/env bash
# cryoTWIN against train-vae on simulated data with known truth (issue 23's must-shows E1–E3): D = 32,
# 3000 images, SNR 1, CTF (defocus 1–2 µm), shifts ±2 px; both programs 128×3, lr 1e-3, batch 8, 20 epochs,
# the same data and seed.
#   E1 linear1d (50 states), zdim 8: |Spearman ρ| of PC1(z) with the true coordinate (twin-analyze --truth),
#      KL(latents ‖ prior) by KLIEP with identical settings (twin: its GMM; VAE: N(0, I)), isometry r
#      (all 8 dimensions and the top-1 PCA subspace).
#   E2 linear2d (10 × 10 states), zdim 2: isometry r of both models; |ρ| of PC1/PC2 with each coordinate.
#   E3 linear1d with 5 discrete states, zdim 8: which true state each GMM component's decoded mean is
#      nearest (modes.txt), and the pathway between the components of largest π nearest the two end states
#      (the sequence of nearest true states along it).
#
# Usage: tools/twin_eval.sh OUTDIR [SEED]     (about 15 minutes on 2 cores)
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,14p "$0"; exit 2; }
OUT=$1; SEED=${2:-1}
B=${CRYOFIELD_BIN:-$(dirname "$0")/../target/release/cryofield}
mkdir -p "$OUT"; cd "$OUT"
NET="--enc-dim 128 --dec-dim 128 --lr 1e-3 -b 8 -n 20 --seed $SEED"
sim() { # kind n_states out
  "$B" phantom --kind "$1" ${2:+--n-states $2} -D 32 --Apix 4.0 --seed "$SEED" -o "ph_$3" > /dev/null 2>&1
  "$B" simulate "ph_$3/vols.txt" -N 3000 --snr 1 --t-extent 2 --defocus 10000 20000 --seed "$SEED" -o "sim_$3" > /dev/null 2>&1
}
train() { # program data zdim out
  "$B" "train-$1" "sim_$2/particles.mrcs" --poses "sim_$2/pose.pkl" --ctf "sim_$2/ctf.pkl" --zdim "$3" $NET -o "$4" > "$4.log" 2>&1
}
val() { grep "^$1 " "$2" | awk '{print $2}'; }

echo "== E1: linear1d, zdim 8"
sim linear1d "" l1
for m in twin vae; do
  train "$m" l1 8 "e1_$m"
  "$B" twin-analyze "e1_$m" 19 --truth sim_l1/truth.pkl > /dev/null 2>&1
  "$B" isometry "e1_$m/weights.19.safetensors" -c "e1_$m/config.json" --zfile "e1_$m/z.19.pkl" -n 200 --top-k 1 -o "e1_$m.iso.txt" > /dev/null 2>&1
done
"$B" kl-kliep e1_twin/z.19.pkl --gmm e1_twin/gmm.19.npz -n 3000 -o e1_twin.kl.txt > /dev/null 2>&1
"$B" kl-kliep e1_vae/z.19.pkl --std-normal -n 3000 -o e1_vae.kl.txt > /dev/null 2>&1
for m in twin vae; do
  echo "$m: |rho(PC1, t)| $(val abs_rho_pc1_t0 e1_$m/analyze.19/twin_analyze.txt)  PC1 variance $(val pc1_variance_ratio e1_$m/analyze.19/twin_analyze.txt)  KL(latents||prior) $(val kl_latents_prior e1_$m.kl.txt)  isometry r $(val r e1_$m.iso.txt) (top-1 $(val r_top1 e1_$m.iso.txt))  last epoch: $(grep -o '[0-9.]* s$' e1_$m.log | tail -1)"
done

echo "== E2: linear2d, zdim 2"
sim linear2d "" l2
for m in twin vae; do
  train "$m" l2 2 "e2_$m"
  "$B" twin-analyze "e2_$m" 19 --truth sim_l2/truth.pkl > /dev/null 2>&1
  "$B" isometry "e2_$m/weights.19.safetensors" -c "e2_$m/config.json" --zfile "e2_$m/z.19.pkl" -n 200 -o "e2_$m.iso.txt" > /dev/null 2>&1
  echo "$m: isometry r $(val r e2_$m.iso.txt); Spearman rho of PC i (rows) with t1, t2:"
  grep -v '^#' "e2_$m/analyze.19/truth_rho.txt"
done

echo "== E3: linear1d with 5 states, zdim 8, pathway"
sim linear1d 5 d5
train twin d5 8 e3_twin
W="e3_twin/weights.19.safetensors -c e3_twin/config.json --gmm e3_twin/gmm.19.npz --vols ph_d5/vols.txt"
# label the components (no path volumes), then the path between the largest components of states 0 and 4
"$B" pathway $W --from 0 --to 1 --no-volumes -o e3_modes > /dev/null 2>&1
awk '!/^#/ && $2 > 0.01 {n[$11]++; p[$11] += $2} END {for (s in n) printf "state %s: %d components with pi > 0.01 (pi sum %.3f)\n", s, n[s], p[s]}' e3_modes/modes.txt | sort
best() { awk -v s="$1" '!/^#/ && $11 == s {print $2, $1}' e3_modes/modes.txt | sort -g | tail -1 | awk '{print $2}'; }
FROM=$(best 0); TO=$(best 4)
/usr/bin/time -f "pathway wall %e s" "$B" pathway $W --from "$FROM" --to "$TO" --zfile e3_twin/z.19.pkl -o e3_path 2>&1 | grep -E "^ *$FROM |wall"
