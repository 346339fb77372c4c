#!/usr/bin/env bash
# Side by side: voxel backprojection by cryofield and by the reference (cryoDRGN 4.3.1 backproject_voxel) of the
# same noiseless simulated dataset (N images of D=64 from hand-vol.mrc, CTF and shifts), each reconstruction's
# FSC against the volume that generated the data, and the simulation throughput.
# Usage: tools/bench_backproject.sh [N]   (needs the reference venv: tools/setup_reference.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
REF=${CRYODRGN_VENV:-$HOME/refvenv}
DATA=${CRYOFIELD_DATA:-$PWD/../shared/data}
cargo build --release -q
B=$PWD/target/release/cryofield
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
t() { local s e; s=$(date +%s.%N); "$@" > "$W/last.log" 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
ts=$(t $B simulate "$DATA/hand-vol.mrc" -N "$N" --t-extent 3 --defocus 10000 20000 --Apix 3 -o "$W/sim")
tb=$(t $B backproject-voxel "$W/sim/particles.mrcs" --poses "$W/sim/pose.pkl" --ctf "$W/sim/ctf.pkl" --uninvert-data -o "$W/ours")
tr=$(t "$REF/bin/cryodrgn" backproject_voxel "$W/sim/particles.mrcs" --poses "$W/sim/pose.pkl" --ctf "$W/sim/ctf.pkl" --uninvert-data -o "$W/ref")
inner=$(grep -o "Backprojected .* in [0-9.]*s" "$W/last.log" | grep -o "[0-9.]*s$" | tr -d s)
echo "cores: $(nproc)  images: $N  D=64"
echo "cryofield simulate:           ${ts} s  ($(echo "scale=0; $N / $ts" | bc) images/s)"
echo "cryofield backproject-voxel:  ${tb} s (whole command)"
echo "cryodrgn  backproject_voxel:  ${tr} s (whole command), ${inner} s in its backprojection loop"
echo "speed-up (whole commands):    $(echo "scale=1; $tr / $tb" | bc)x"
for who in ours ref; do
  $B fsc "$W/$who/backproject.mrc" "$DATA/hand-vol.mrc" --Apix 3 -o "$W/$who.fsc.txt" >/dev/null 2>&1
  min=$(awk 'NR>3 && $1<=0.25 {if (m=="" || $2<m) m=$2} END {print m}' "$W/$who.fsc.txt")
  echo "$who: FSC vs truth, minimum up to half Nyquist (DC shell excluded): $min"
done
