#!/usr/bin/env bash
# Side by side: `cryofield abinit` against cryoDRGN 4.3.1's `cryodrgn abinit` (cryoDRGN-AI) on the first
# N images of the no-tilt linear1d data of tools/abinit_ai_bench.sh (D = 32, SNR 1, CTF, ±3 px), the
# same flags for both: --zdim 1, EPOCHS epochs after pretraining, SEARCH of them pose search, pretraining
# on the N images, --t-extent 4, seed 1, the reference's other defaults. Prints each program's wall and CPU
# seconds, the median rotation error per state and under one global alignment, and Spearman's ρ(z, state)
# of the last epoch. The reference's pose.N.pkl holds translations in pixels: divided by D here.
#
# Usage: tools/abinit_ai_side_by_side.sh BENCH_OUT [N] [EPOCHS] [SEARCH]   (defaults 300 3 2)
# BENCH_OUT: a folder tools/abinit_ai_bench.sh made (its sim/ is used). Needs the reference venv
# (tools/setup_reference.sh; $CRYODRGN_VENV, default ~/refvenv) and a Python with numpy
# ($CRYOFIELD_PYTHON, else python3). Run `cargo build --release` first.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,12p "$0"; exit 2; }
OUT=$1; N=${2:-300}; EP=${3:-3}; PS=${4:-2}
PY=${CRYOFIELD_PYTHON:-python3}
REF=${CRYODRGN_VENV:-$HOME/refvenv}
B=${CRYOFIELD_BIN:-$(dirname "$0")/../target/release/cryofield}
W="$OUT/sbs$N"
mkdir -p "$W"
"$PY" - "$OUT/sim" "$W" "$N" <<'PYS'
import pickle, sys, numpy as np
sim, w, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
pickle.dump(np.arange(n), open(f"{w}/ind.pkl", "wb"))
r, t = pickle.load(open(f"{sim}/pose.pkl", "rb"))
pickle.dump((r[:n], t[:n]), open(f"{w}/pose.pkl", "wb"))
pickle.dump(np.asarray(pickle.load(open(f"{sim}/labels.pkl", "rb")))[:n], open(f"{w}/labels.pkl", "wb"))
PYS
FLAGS=(--ctf "$OUT/sim/ctf.pkl" --ind "$W/ind.pkl" --zdim 1 --seed 1 --t-extent 4 -n "$EP"
  --epochs-pose-search "$PS" --n-imgs-pretrain "$N" --checkpoint "$EP" --no-analysis)
run() {  # NAME CMD...
  local name=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$W/$name.time" "$@" > "$W/$name.log" 2>&1
}
run ours "$B" abinit "$OUT/sim/particles.mrcs" -o "$W/ours" "${FLAGS[@]}"
run ref "$REF/bin/cryodrgn" abinit "$OUT/sim/particles.mrcs" -o "$W/ref" "${FLAGS[@]}" --num-workers 0
# the reference's poses with translations as a fraction of D, its z as our z files hold it
"$PY" - "$W/ref/pose.$EP.pkl" "$W/ref_pose.pkl" 32 <<'PYC'
import pickle, sys, numpy as np
p = pickle.load(open(sys.argv[1], "rb"))
r, t = (p if isinstance(p, tuple) else (p, np.zeros((len(p), 2))))
pickle.dump((np.asarray(r, np.float32), np.asarray(t, np.float32) / float(sys.argv[3])), open(sys.argv[2], "wb"))
PYC
report() {  # NAME POSES Z
  local per glob rho wall usr sys
  per=$("$B" pose-error "$2" "$W/pose.pkl" -D 32 --labels "$W/labels.pkl" 2>&1 | \
    grep "after per-state alignment" | sed 's/.*median squared Frobenius [0-9.]*, median \([0-9.]*\)°.*/\1/')
  glob=$("$B" pose-error "$2" "$W/pose.pkl" -D 32 2>&1 | grep degrees | sed 's/.*median \([0-9.]*\).*/\1/')
  rho=$("$PY" -c "
import pickle, sys, numpy as np
z = np.asarray(pickle.load(open(sys.argv[1], 'rb')))[:, 0]; l = pickle.load(open(sys.argv[2], 'rb'))
def rk(a):
    r = np.empty(len(a)); r[np.argsort(a, kind='stable')] = np.arange(len(a))
    _, inv = np.unique(a, return_inverse=True)
    return (np.bincount(inv, r) / np.bincount(inv))[inv]
print('%.3f' % np.corrcoef(rk(z), rk(l))[0, 1])" "$3" "$W/labels.pkl")
  read -r wall usr sys < "$W/$1.time"
  printf "%-6s wall %8.1f s  cpu %8.1f s  rotation error per state %8s°  global %8s°  rho %s\n" \
    "$1" "$wall" "$(echo "$usr + $sys" | bc)" "$per" "$glob" "$rho"
}
echo "N $N, $EP epochs ($PS pose search) after pretraining on $N images; $(nproc) cores; $(uptime)"
report ours "$W/ours/pose.$EP.pkl" "$W/ours/z.$EP.pkl"
report ref "$W/ref_pose.pkl" "$W/ref/z.$EP.pkl"
