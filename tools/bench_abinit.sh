#!/usr/bin/env bash
# Side by side: cryofield vs cryoDRGN 4.3.1 on the same simulated data (N images of hand-vol.mrc
# downsampled to D=32, Apix 2, CTF 1-2 um defocus, shifts uniform in +-3 px; noiseless or at SNR),
# with the reference's search defaults (base-healpy 2: 4608 rotations, t-ngrid 7: 196 shifts,
# niter 4, nkeptposes 8, l-start 12, l-end 32 capped at D/2) and --t-extent 5.
#
# A. The search alone against the true volume (fixed model): `cryofield pose-search` vs the
#    reference's PoseSearch.opt_theta_trans driven by a small script (below) whose "model"
#    interpolates the same 2x-oversampled Hartley transform of the true volume; no window, CTF.
# B. Ab initio end to end: `cryofield abinit-homo` vs `cryodrgn abinit_homo_old`, EPOCHS epochs,
#    search every 2 epochs (1, 3, ...), band limit ramped over EPOCHS epochs, decoder 3xDIM,
#    pretraining on N images.
#
# Printed per program: wall and CPU seconds, seconds in the search, pose-image scores per second,
# the median pose errors against the truth (`cryofield pose-error`: rotation in degrees after the
# global alignment in the better hand, translation in pixels) and, for B, the mean FSC over the
# shells (DC excluded) between the true volume and a voxel backprojection with the found poses
# aligned to the truth frame (the true poses give about 0.98, random ones about 0.1).
#
# Scores: one (image, rotation, translation) candidate error; per image and search both programs
# score 4608*196 base candidates + 4*(8*8*196) refinement candidates (the same algorithm). In B the
# reference does not report its search time: it is the time of its search epochs minus that of
# its training-only epochs (EPOCHS must be even). The reference's abinit stores translations
# divided by D+1 (its lattice size) instead of D: its B translation errors carry that 3% scale.
#
# Usage: tools/bench_abinit.sh [N] [EPOCHS] [SNR] [DIM]   (defaults 300 4 inf 64; needs the
# reference venv: tools/setup_reference.sh; KEEP=1 keeps the work folder). Timings are wall clock
# on a shared machine: read the printed `uptime` and the CPU times.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300}; EPOCHS=${2:-4}; SNR=${3:-inf}; DIM=${4:-64}
REF=${CRYODRGN_VENV:-$HOME/refvenv}
DATA=${CRYOFIELD_DATA:-$PWD/../shared/data}
PY="$REF/bin/python"
cargo build --release -q
B=$PWD/target/release/cryofield
W=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $W"; else trap 'rm -rf "$W"' EXIT; fi
echo "uptime: $(uptime)"
$B downsample "$DATA/hand-vol.mrc" --is-vol -D 32 -o "$W/vol.mrc" > /dev/null 2>&1
noise=(); [ "$SNR" != inf ] && noise=(--snr "$SNR")
$B simulate "$W/vol.mrc" -N "$N" -o "$W/sim" --t-extent 3 --defocus 10000 20000 --seed 1 "${noise[@]}" > /dev/null 2>&1
per_image=$((4608 * 196 + 4 * 8 * 8 * 196))
# run NAME CMD...: wall, user and system seconds into $W/NAME.time, output into $W/NAME.log
run() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$W/$name.time" "$@" > "$W/$name.log" 2>&1
}
# errors NAME POSES: "median-rotation-degrees median-translation-pixels" and the pose-error folder
errors() {
  $B pose-error "$2" "$W/sim/pose.pkl" -D 32 -o "$W/$1.pe" > /dev/null 2>&1
  printf "%s %s" "$(grep -o '"median_rot_deg": [0-9.e-]*' "$W/$1.pe/pose_error.json" | awk '{print $2}')" \
    "$(grep -o '"median_trans_px": [0-9.e-]*' "$W/$1.pe/pose_error.json" | awk '{print $2}')"
}
# fsc NAME POSES: mean FSC (shells 1..Nyquist) vs the truth of a backprojection with aligned poses
fsc() {
  "$PY" - "$2" "$W/$1.pe/pose_error.json" "$W/$1.aligned.pkl" <<'PYA'
import json, pickle, sys
import numpy as np
rot, trans = pickle.load(open(sys.argv[1], "rb"))
e = json.load(open(sys.argv[2]))
if e["flipped"]:
    f = np.diag([1.0, 1.0, -1.0])
    rot = f @ rot @ f
pickle.dump(((rot @ np.array(e["align"])).astype(np.float32), trans), open(sys.argv[3], "wb"))
PYA
  $B backproject-voxel "$W/sim/particles.mrcs" --poses "$W/$1.aligned.pkl" --ctf "$W/sim/ctf.pkl" \
    --uninvert-data --no-half-maps -o "$W/$1.bp" > /dev/null 2>&1
  $B fsc "$W/$1.bp/backproject.mrc" "$W/vol.mrc" --Apix 2 -o "$W/$1.fsc.txt" > /dev/null 2>&1
  awk 'NR > 2 { s += $2; n++ } END { printf "%.3f", s / n }' "$W/$1.fsc.txt"
}
line() { # NAME SEARCH_SECONDS SCORES EXTRA
  local wall usr sys
  read -r wall usr sys < "$W/$1.time"
  printf "%-22s %8.1f %8.1f %9.1f %12.3e %9s %9s %s\n" "$1" "$wall" "$(echo "$usr + $sys" | bc)" "$2" \
    "$(echo "$3 / $2" | bc -l)" $(errors "$1" "$4") "${5:-}"
}
header() { printf "%-22s %8s %8s %9s %12s %9s %9s %s\n" "" "wall s" "cpu s" "search s" "scores/s" "rot deg" "trans px" "$1"; }
echo "cores: $(nproc)  images: $N  D=32  SNR: $SNR"

# ---- A: the search against the true volume ----
cat > "$W/ref_search.py" <<'PYREF'
# The reference's PoseSearch (cryoDRGN 4.3.1 pose_search.py) against a fixed volume, with the
# same inputs as `cryofield pose-search`: images preprocessed by the reference's ImageDataset
# (no window, not inverted, normalization estimated), slices by trilinear interpolation in the
# volume's 2x zero-padded Hartley transform (as cryofield's VolumeSlices), CTF as in
# abinit_homo_old. Usage: python ref_search.py PARTICLES VOL CTF OUT.pkl T_EXTENT [BATCH]
import pickle, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from cryodrgn import ctf as ctfm, dataset, fft
from cryodrgn.lattice import Lattice
from cryodrgn.mrcfile import parse_mrc
from cryodrgn.pose_search import PoseSearch

particles, volpath, ctfpath, out, t_extent = sys.argv[1:6]
bs = int(sys.argv[6]) if len(sys.argv) > 6 else 16
torch.manual_seed(0)
np.random.seed(0)
data = dataset.ImageDataset(mrcfile=particles, norm=None, invert_data=False, window=False)
D1, N = data.D, data.N
d = D1 - 1
vol, _ = parse_mrc(volpath)
vol = np.asarray(vol, dtype=np.float32) / data.norm[1]
o = 2
pad = np.zeros((o * d,) * 3, dtype=np.float32)
s = (o * d - d) // 2
pad[s:s + d, s:s + d, s:s + d] = vol
ht = fft.htn_center(torch.tensor(pad))
ht = np.asarray(ht.numpy(), dtype=np.float32)
n = o * d + 1
ext = np.zeros((n, n, n), dtype=np.float32)
ext[: o * d, : o * d, : o * d] = ht
ext[o * d, :, :] = ext[0, :, :]
ext[:, o * d, :] = ext[:, 0, :]
ext[:, :, o * d] = ext[:, :, 0]


class VolSlices(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("hv", torch.tensor(ext)[None, None])
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        shp = x.shape[:-1]
        g = (x * d * o + (n - 1) / 2) / (n - 1) * 2 - 1
        out = F.grid_sample(self.hv, g.reshape(1, 1, 1, -1, 3), mode="bilinear", align_corners=True)
        return out.reshape(shp)


model = VolSlices().eval()
lattice = Lattice(D1, extent=0.5, device="cpu")
ps = PoseSearch(model, lattice, 12, 32, None, base_healpy=2, t_extent=float(t_extent), t_ngrid=7,
                niter=4, nkeptposes=8, device="cpu")
ctf_params = torch.tensor(ctfm.load_ctf_for_training(d, ctfpath))
rots, trans = np.zeros((N, 3, 3), np.float32), np.zeros((N, 2), np.float32)
t0 = time.time()
with torch.no_grad():
    for b0 in range(0, N, bs):
        idx = np.arange(b0, min(N, b0 + bs))
        y = data[idx.tolist()]["y"]
        B = len(idx)
        c = ctf_params[idx]
        freqs = lattice.freqs2d.unsqueeze(0).expand(B, *lattice.freqs2d.shape) / c[:, 0].view(B, 1, 1)
        ctf_i = ctfm.compute_ctf(freqs, *torch.split(c[:, 1:], 1, 1)).view(B, D1, D1)
        r, t, _ = ps.opt_theta_trans(y, ctf_i=ctf_i)
        rots[idx] = r.numpy()
        trans[idx] = t.numpy()
secs = time.time() - t0
pickle.dump((rots, trans / d), open(out, "wb"))
scores = N * (4608 * 196 + 4 * 8 * 8 * 196)
print(f"searched {N} images in {secs:.1f} s: {scores:.3e} pose-image scores ({scores / secs:.3e} scores/s)")
PYREF
run ours_search $B pose-search "$W/sim/particles.mrcs" --volume "$W/vol.mrc" --ctf "$W/sim/ctf.pkl" \
  --uninvert-data --no-window --t-extent 5 -o "$W/ours_search.pkl"
run ref_search "$PY" "$W/ref_search.py" "$W/sim/particles.mrcs" "$W/vol.mrc" "$W/sim/ctf.pkl" "$W/ref_search.pkl" 5
sa=$(grep -o "in [0-9.]* s:" "$W/ours_search.log" | awk '{print $2}')
sr=$(grep -o "in [0-9.]* s:" "$W/ref_search.log" | awk '{print $2}')
echo
echo "A. pose search against the true volume ($((N * per_image)) candidates)"
header ""
line ours_search "$sa" $((N * per_image)) "$W/ours_search.pkl"
line ref_search "$sr" $((N * per_image)) "$W/ref_search.pkl"
echo "speed-up of the search (scores/s): $(echo "scale=1; $sr / $sa" | bc)x"

# ---- B: ab initio end to end ----
common=(--ctf "$W/sim/ctf.pkl" --uninvert-data -n "$EPOCHS" --ps-freq 2 --l-ramp-epochs "$EPOCHS"
        --t-extent 5 --dim "$DIM" --pretrain "$N" --seed 1)
run ours_abinit $B abinit-homo "$W/sim/particles.mrcs" -o "$W/ours" "${common[@]}"
run ref_abinit "$REF/bin/cryodrgn" abinit_homo_old "$W/sim/particles.mrcs" -o "$W/ref" "${common[@]}"
searches=$(( (EPOCHS + 1) / 2 ))
# ours: the search seconds printed on each search epoch's summary line
sb=$(grep -o "pose search L [0-9]*→[0-9]* in [0-9.]* s" "$W/ours_abinit.log" | awk '{s += $(NF-1)} END {print s}')
# reference: "Finished in H:MM:SS.ffffff" per epoch; odd epochs search, even epochs only train
sbr=$(grep -o "Epoch: [0-9]* Average loss = [-0-9.e]*; Finished in [0-9:.]*" "$W/ref_abinit.log" |
  awk '{split($NF, t, ":"); s = t[1]*3600 + t[2]*60 + t[3]; if ($2 % 2 == 1) a += s; else b += s} END {print a - b}')
echo
echo "B. abinit-homo, $EPOCHS epochs ($searches searches, $((N * per_image * searches)) candidates), decoder 3x$DIM"
errors ours_abinit "$W/ours/pose.pkl" > /dev/null
errors ref_abinit "$W/ref/pose.pkl" > /dev/null
fo=$(fsc ours_abinit "$W/ours/pose.pkl")
fr=$(fsc ref_abinit "$W/ref/pose.pkl")
header "mean FSC"
line ours_abinit "$sb" $((N * per_image * searches)) "$W/ours/pose.pkl" "$fo"
line ref_abinit "$sbr" $((N * per_image * searches)) "$W/ref/pose.pkl" "$fr"
echo "speed-up of the search (scores/s): $(echo "scale=1; $sbr / $sb" | bc)x; of the whole run (wall): $(echo "scale=1; $(cut -d' ' -f1 "$W/ref_abinit.time") / $(cut -d' ' -f1 "$W/ours_abinit.time")" | bc)x"
