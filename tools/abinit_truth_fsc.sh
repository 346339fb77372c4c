#!/usr/bin/env bash
# How good are ab initio poses against simulation truth? Prints the median pose errors after the
# global alignment (rotation in the better hand, and the global 3D shift of the volume, which ab
# initio leaves free) and the FSC against the true volume of two voxel backprojections of the same
# particles: one with the found poses brought into the truth's frame, one with the true poses (the
# ceiling the poses can reach with this backprojector).
#
# Usage: tools/abinit_truth_fsc.sh PRED.pkl TRUE.pkl PARTICLES CTF.pkl TRUE_VOL.mrc D APIX OUTDIR
# Needs a Python with numpy: $CRYOFIELD_PYTHON, else python3.
set -euo pipefail
[ $# -eq 8 ] || { sed -n 2,10p "$0"; exit 2; }
PRED=$1; TRUE=$2; PART=$3; CTF=$4; VOL=$5; D=$6; APIX=$7; OUT=$8
PY=${CRYOFIELD_PYTHON:-python3}
B=${CRYOFIELD_BIN:-$(dirname "$0")/../target/release/cryofield}
mkdir -p "$OUT"
"$B" pose-error "$PRED" "$TRUE" -D "$D" --correct-global-trans -o "$OUT/pe" > "$OUT/pose_error.log" 2>&1
grep -E 'median|shift|hand' "$OUT/pose_error.log"
# the found poses in the truth's frame: R·A (mirrored first if the other hand fits better) and the
# shifts with the volume's global shift u removed (t − (R·A·u)_xy / D)
"$PY" - "$PRED" "$OUT/pe/pose_error.json" "$OUT/aligned.pkl" <<'PYA'
import json, pickle, sys
import numpy as np
rot, trans = pickle.load(open(sys.argv[1], "rb"))
e = json.load(open(sys.argv[2]))
rot = np.asarray(rot, dtype=np.float64)
if e["flipped"]:
    f = np.diag([1.0, 1.0, -1.0])
    rot = f @ rot @ f
rot = rot @ np.array(e["align"])
u = np.array(e["global_shift_px"])
trans = np.asarray(trans, dtype=np.float64) - (rot[:, :2, :] @ u) / e["D"]
pickle.dump((rot.astype(np.float32), trans.astype(np.float32)), open(sys.argv[3], "wb"))
PYA
for which in found true; do
  poses=$OUT/aligned.pkl; [ $which = true ] && poses=$TRUE
  "$B" backproject-voxel "$PART" --poses "$poses" --ctf "$CTF" --uninvert-data --no-half-maps \
    -o "$OUT/bp_$which" > /dev/null 2>&1
  "$B" fsc "$OUT/bp_$which/backproject.mrc" "$VOL" --Apix "$APIX" -o "$OUT/fsc_$which.txt" \
    --plot "$OUT/fsc_$which.png" > /dev/null 2>&1
done
# FSC at 1/4, 1/2, 3/4 of Nyquist and at Nyquist, and the mean over the shells past DC
for which in found true; do
  awk -v w=$which 'NR > 2 { f[NR - 2] = $2; s += $2; n++ }
    END { printf "%s poses: FSC at 1/4, 1/2, 3/4 Nyquist, Nyquist: %.3f %.3f %.3f %.3f; mean %.4f\n",
          w, f[int(n / 4)], f[int(n / 2)], f[int(3 * n / 4)], f[n], s / n }' "$OUT/fsc_$which.txt"
done
