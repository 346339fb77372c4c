#!/usr/bin/env bash
# Run cryofield and the reference (cryoDRGN 4.3.1) on the same STAR/.cs fixtures and compare their pose/ctf
# pickles with the reference's own loader (`cryodrgn.utils.load_pkl`), and have the reference read our .mrcs,
# our z.N.pkl (two pickles: z_mu, z_logvar) and an .mrc volume from eval-vol, and run its own
# `cryodrgn analyze`-style latent loading and `eval_vol`-style volume parsing on them.
# Usage: tools/check_compat.sh   (needs tools/setup_reference.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${CRYODRGN_VENV:-$HOME/refvenv}
DATA=${CRYOFIELD_DATA:-$PWD/../shared/data}
cargo build --release -q
B=$PWD/target/release/cryofield
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
for s in relion31.star relion31.v2.star relion5.star; do
  $B parse-pose-star "$DATA/$s" -D 256 -o "ours_pose_$s.pkl" 2>/dev/null
  "$REF/bin/cryodrgn" parse_pose_star "$DATA/$s" -D 256 -o "ref_pose_$s.pkl" >/dev/null 2>&1
  $B parse-ctf-star "$DATA/$s" -o "ours_ctf_$s.pkl" 2>/dev/null
  "$REF/bin/cryodrgn" parse_ctf_star "$DATA/$s" -o "ref_ctf_$s.pkl" >/dev/null 2>&1
done
cs="$DATA/cryosparc_P12_J24_001_particles.cs"
$B parse-pose-csparc "$cs" -o ours_pose_cs.pkl 2>/dev/null
"$REF/bin/cryodrgn" parse_pose_csparc "$cs" -o ref_pose_cs.pkl >/dev/null 2>&1
$B parse-ctf-csparc "$cs" -o ours_ctf_cs.pkl 2>/dev/null
"$REF/bin/cryodrgn" parse_ctf_csparc "$cs" -o ref_ctf_cs.pkl >/dev/null 2>&1
$B downsample "$DATA/hand.mrcs" -D 32 -o ours.32.mrcs 2>/dev/null
# a tiny heterogeneous run: z.1.pkl and a decoded volume
$B phantom --kind linear1d -D 16 -o ph >/dev/null 2>&1
$B simulate ph/vols.txt -N 64 --snr 1 --defocus 10000 20000 -o sim >/dev/null 2>&1
$B train-vae sim/particles.mrcs --poses sim/pose.pkl --ctf sim/ctf.pkl --zdim 2 --enc-dim 32 --dec-dim 32 \
  -n 1 --seed 0 -o vae >/dev/null 2>&1
$B eval-vol vae/weights.1.safetensors -c vae/config.json -z 0.1 -0.2 -o vol.mrc >/dev/null 2>&1
"$REF/bin/python" - <<'PY'
import glob, numpy as np
from cryodrgn.utils import load_pkl
from cryodrgn.source import ImageSource
for f in sorted(glob.glob("ours_*.pkl")):
    a, b = load_pkl(f), load_pkl(f.replace("ours_", "ref_"))
    if isinstance(a, tuple):
        print(f"{f}: max |diff| rot {np.abs(a[0]-b[0]).max():.2e} trans {np.abs(a[1]-b[1]).max():.2e}")
    else:
        print(f"{f}: max |diff| {np.abs(a-b).max():.2e}")
src = ImageSource.from_file("ours.32.mrcs")
print(f"reference reads ours.32.mrcs: N={src.n} D={src.D} Apix={src.apix}")
import pickle
with open("vae/z.1.pkl", "rb") as f:
    mu, logvar = pickle.load(f), pickle.load(f)
z = load_pkl("vae/z.1.pkl")
assert np.array_equal(z, mu) and mu.shape == logvar.shape == (64, 2), (z.shape, mu.shape, logvar.shape)
print(f"reference reads vae/z.1.pkl: z_mu {mu.shape} {mu.dtype}, z_logvar {logvar.shape}")
vol = ImageSource.from_file("vol.mrc").images()
print(f"reference reads vol.mrc: shape {tuple(vol.shape)}, finite {bool(np.isfinite(vol.cpu().numpy() if hasattr(vol, 'cpu') else vol).all())}")
PY
