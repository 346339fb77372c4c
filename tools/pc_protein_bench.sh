#!/usr/bin/env bash
# Point-cloud DPS vs ML on held-out pseudo-atomic protein conformations (issue 25; Möbius &
# Habeck 2024, spec docs: /work/shared/specs/point-cloud-dps.md §1–§3, §5, §7).
#
#   tools/pc_protein_bench.sh OUT        (env knobs below; prints a markdown table at the end)
#
# 1. data: tools/pseudo_atomic_pdb.py writes MODELS models of a 3-domain pseudo-protein with
#    continuous hinge motions (two hinge angles uniform in ±MAX_ANGLE°, bundle breathing);
#    split by model index: first MODELS−NVAL−NTEST train, next NVAL validation, last NTEST test.
#    pc-prepare -n NPTS (tied GMM means, per-cloud [−1,1]³) on the train file and on every
#    validation / test model (one file each, so GT.npz keeps its heavy atoms).
# 2. prior: pc-train (CPU-sized point transformer) on the train clouds; reused if
#    OUT/prior/model.safetensors exists.
# 3. validation: for every α in ALPHAS, DPS on the NVAL validation structures; ALPHA is the one
#    with the lowest mean subsampled RMSD (ties: lower CD) unless ALPHA is set.
# 4. test: pc-observe (PROJ projections × PROJ_PTS points, seed = model index), DPS with that α,
#    ML (Adam lr 0.01, each of ML_STEPS), pc-eval (atomic RMSD against the held-out model, E
#    under the observations); mean ± std over the test instances of each instance's mean over
#    SAMPLES reconstructions.
#
# NPTS=64: the ~1800 heavy atoms of a model become 64 GMM means (~28 atoms, ~6 residues, per
# point; ~4 per helix), enough to resolve helices and domains, and it keeps attention (N²) and
# the N×N assignments cheap, so training fits ~15 min and all of DPS/ML a few min on 2 CPU cores.
# Steps 1–4 resume: existing data, prior and metrics.json files are kept.
#
# Example (the BENCHMARKS.md table): tools/pc_protein_bench.sh /tmp/pcbench
set -euo pipefail

OUT=${1:?usage: tools/pc_protein_bench.sh OUT}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${CRYOFIELD:-$HERE/../target/release/cryofield}
PY=${PYTHON:-python3}

MODELS=${MODELS:-400}        # ensemble size
MAX_ANGLE=${MAX_ANGLE:-35}   # hinge range (deg)
DATA_SEED=${DATA_SEED:-0}
NVAL=${NVAL:-6}
NTEST=${NTEST:-20}
NPTS=${NPTS:-64}             # points per cloud (GMM components)
WIDTH=${WIDTH:-64}
LAYERS=${LAYERS:-4}
HEADS=${HEADS:-4}
EPOCHS=${EPOCHS:-400}
BATCH=${BATCH:-16}
LR=${LR:-0.0005}
PROJ=${PROJ:-3}              # projections per instance
PROJ_PTS=${PROJ_PTS:-$NPTS}  # points per projection
SAMPLES=${SAMPLES:-10}
STEPS=${STEPS:-40}           # DPS grid (2·STEPS−1 network evaluations)
BETA=${BETA:-1/t}
ALPHAS=${ALPHAS:-"60 125 250 1000 4000 16000 64000"}
ALPHA=${ALPHA:-}             # set to skip the validation sweep
ML_STEPS=${ML_STEPS:-"100 1000"}
ASSIGN=${ASSIGN:-hungarian}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/bench.log
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
say "cryofield $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo ?) MODELS=$MODELS NVAL=$NVAL NTEST=$NTEST NPTS=$NPTS WIDTH=$WIDTH LAYERS=$LAYERS HEADS=$HEADS EPOCHS=$EPOCHS BATCH=$BATCH LR=$LR PROJ=$PROJ PROJ_PTS=$PROJ_PTS SAMPLES=$SAMPLES STEPS=$STEPS BETA=$BETA ALPHAS='$ALPHAS' ALPHA=$ALPHA ML_STEPS='$ML_STEPS' ASSIGN=$ASSIGN"

# ---- 1. data
D=$OUT/data
if [ ! -f "$D/done" ]; then
  mkdir -p "$D"
  $PY "$HERE/pseudo_atomic_pdb.py" --models "$MODELS" --seed "$DATA_SEED" --max-angle "$MAX_ANGLE" -o "$D/ensemble.pdb" >>"$LOG"
  $PY "$HERE/pc_bench_agg.py" split "$D/ensemble.pdb" "$D" "$NVAL" "$NTEST" | tee -a "$LOG"
  "$BIN" pc-prepare "$D/train.pdb" -n "$NPTS" --seed 0 -o "$D/train.npz" >>"$LOG" 2>&1
  for sub in val test; do
    for p in "$D/$sub"/*.pdb; do
      "$BIN" pc-prepare "$p" -n "$NPTS" --seed 0 -o "${p%.pdb}.npz" >>"$LOG" 2>&1
    done
  done
  touch "$D/done"
  say "data ready"
fi

# ---- 2. prior
P=$OUT/prior
if [ ! -f "$P/model.safetensors" ]; then
  t0=$(date +%s)
  "$BIN" pc-train "$D/train.npz" -o "$P" --width "$WIDTH" --layers "$LAYERS" --heads "$HEADS" \
    --epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" --seed 0 >>"$LOG" 2>&1
  echo $(( $(date +%s) - t0 )) > "$P/train_wall_s"
  say "prior trained in $(cat "$P/train_wall_s") s"
fi

# one instance: observe, reconstruct with METHOD, evaluate; $1 split, $2 pdb, $3 dir, $4 label, rest: flags
run_one() {
  local sub=$1 pdb=$2 dir=$3 label=$4; shift 4
  local gt=${pdb%.pdb}.npz idx
  idx=$((10#$(basename "${pdb%.pdb}")))
  mkdir -p "$dir"
  [ -f "$dir/obs.npz" ] || "$BIN" pc-observe "$gt" --proj "$PROJ" --proj-points "$PROJ_PTS" \
    --seed "$idx" -o "$dir/obs.npz" >>"$LOG" 2>&1
  if [ ! -f "$dir/$label/metrics.json" ]; then
    "$BIN" pc-reconstruct "$P" "$dir/obs.npz" -o "$dir/$label" --samples "$SAMPLES" \
      --assign "$ASSIGN" --seed "$idx" "$@" >>"$LOG" 2>&1
    "$BIN" pc-eval "$dir/$label/recon.npy" --truth "$gt" --pdb "$pdb" --obs "$dir/obs.npz" \
      --seed "$idx" -o "$dir/$label/metrics.json" >>"$LOG" 2>&1
  fi
}
dps_flags() { echo --method dps --steps "$STEPS" --tmax 1 --rho 3 --beta "$BETA" --alpha "$1"; }

# ---- 3. validation: choose α
V=$OUT/val
if [ -z "$ALPHA" ]; then
  for a in $ALPHAS; do
    for pdb in "$D"/val/*.pdb; do
      run_one val "$pdb" "$V/$(basename "${pdb%.pdb}")" "dps_a$a" $(dps_flags "$a")
    done
  done
  for pdb in "$D"/val/*.pdb; do
    run_one val "$pdb" "$V/$(basename "${pdb%.pdb}")" "ml100" --method ml --ml-steps 100 --ml-lr 0.01
  done
  $PY "$HERE/pc_bench_agg.py" agg "$V" $(for a in $ALPHAS; do echo "dps_a$a"; done) ml100 > "$V/summary.jsonl"
  cat "$V/summary.jsonl" >>"$LOG"
  ALPHA=$($PY - "$V/summary.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r["method"].startswith("dps_a") and r["rmsd_subsampled_A"] is not None]
best = min(rows, key=lambda r: (round(r["rmsd_subsampled_A"], 3), r["cd"]))
print(best["method"][len("dps_a"):])
PYEOF
)
  say "validation table (NVAL=$NVAL):"
  $PY "$HERE/pc_bench_agg.py" table "$V" $(for a in $ALPHAS; do echo "DPS_α=$a=dps_a$a"; done) "ML_100=ml100" | tee -a "$LOG"
  say "chosen α = $ALPHA (lowest validation mean subsampled RMSD)"
fi
echo "$ALPHA" > "$OUT/alpha"

# ---- 4. test
T=$OUT/test
for pdb in "$D"/test/*.pdb; do
  inst=$T/$(basename "${pdb%.pdb}")
  run_one test "$pdb" "$inst" dps $(dps_flags "$ALPHA")
  for s in $ML_STEPS; do
    run_one test "$pdb" "$inst" "ml$s" --method ml --ml-steps "$s" --ml-lr 0.01
  done
  say "test $(basename "$inst") done"
done

pairs=("DPS (α=$ALPHA, $STEPS steps, β=$BETA)=dps")
for s in $ML_STEPS; do pairs+=("ML (Adam 0.01, $s steps)=ml$s"); done
{
  echo
  echo "Held-out test: $NTEST structures (models $((MODELS-NTEST))–$((MODELS-1)) of $MODELS), N=$NPTS, $PROJ projections × $PROJ_PTS points, $SAMPLES reconstructions per structure; mean ± std over structures of the per-structure mean. Prior: width $WIDTH, $LAYERS layers, $HEADS heads, $EPOCHS epochs on $((MODELS-NVAL-NTEST)) clouds ($(cat "$P/train_wall_s" 2>/dev/null || echo ?) s). DPS wall per structure ($SAMPLES samples × $((2*STEPS-1)) network evaluations incl. VJP): $(grep -h '"wall_s"' "$T"/*/dps/run.json | tr -dc '0-9.\n' | awk -v nfe=$((SAMPLES*(2*STEPS-1))) '{s+=$1; n++} END {printf "%.2f s mean over %d, %.0f NFE/s", s/n, n, nfe*n/s}')."
  echo
  $PY "$HERE/pc_bench_agg.py" table "$T" "${pairs[@]}"
} | tee "$OUT/table.md" | tee -a "$LOG"
