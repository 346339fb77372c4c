#!/usr/bin/env bash
# Cross-check cryofield's utility commands against the reference (cryoDRGN 4.3.1) on tiny inputs:
#   phase-flip      vs cryodrgn_utils phase_flip   (simulated CTF-modulated particles, D = 32)
#   translate-mrcs  vs cryodrgn_utils translate_mrcs (the simulation's translations; also D = 15)
#   clean           vs cryodrgn_utils clean        (the same fake run folder; files left)
#   analyze-landscape-full: its model.pt loaded into the reference's ResidLinearMLP predicts
#                   its vol_pca_all.pkl (the reference's own command needs UMAP/igraph: not run)
# The reference's mains are called in one Python process (one torch import). Prints the largest
# |ours − reference| per output. The reference's phase_flip inverse-transforms along the stack
# axis too, so it is run on one-image stacks (where it is a per-image flip) and, for the record,
# on the whole stack (where it is not).
# Usage: tools/utils_crosscheck.sh   (needs the reference in $CRYODRGN_VENV, default ~/refvenv)
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${CRYODRGN_VENV:-$HOME/refvenv}
cargo build --release -q
B=$PWD/target/release/cryofield
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"

$B phantom --kind linear1d -D 32 -o ph >/dev/null 2>&1
$B simulate ph/vols.txt -N 6 --snr 10 --defocus 8000 25000 --t-extent 3 --seed 1 -o sim >/dev/null 2>&1
$B phase-flip sim/particles.mrcs sim/ctf.pkl -o ours_pf.mrcs 2>/dev/null
$B translate-mrcs sim/particles.mrcs sim/pose.pkl -o ours_tr.mrcs 2>/dev/null
$B translate-mrcs sim/particles.mrcs sim/pose.pkl --tscale 0.5 -o ours_tr_half.mrcs 2>/dev/null

# an odd box: D = 15, random images and translations
"$REF/bin/python" - <<'PY'
import numpy as np, pickle
from cryodrgn.mrcfile import write_mrc
rng = np.random.default_rng(5)
write_mrc("odd.mrcs", rng.standard_normal((4, 15, 15)).astype(np.float32), Apix=1.0)
rot = np.tile(np.eye(3, dtype=np.float32), (4, 1, 1))
pickle.dump((rot, rng.uniform(-0.1, 0.1, (4, 2)).astype(np.float32)), open("odd_pose.pkl", "wb"))
PY
$B translate-mrcs odd.mrcs odd_pose.pkl -o ours_tr_odd.mrcs 2>/dev/null

# clean: two identical fake runs (epochs 1..10, an analyze.3 folder, unrelated files)
for r in run_ours run_ref; do
  mkdir -p $r/analyze.3 $r/sub
  printf 'cmd: [cryodrgn, train_vae]\ndataset_args: {}\n' > $r/config.yaml
  for e in $(seq 1 10); do touch $r/weights.$e.pkl $r/z.$e.pkl; done
  touch $r/pose.4.pkl $r/reconstruct.6.mrc $r/weights.pkl $r/z.pkl $r/run.log $r/zeta.2.pkl $r/sub/z.2.pkl
done
$B clean run_ours -n 5 >/dev/null

# analyze-landscape-full on a tiny run: the reference's ResidLinearMLP loads model.pt and must
# predict vol_pca_all.pkl
$B simulate ph/vols.txt -N 200 --seed 2 -o sim2 >/dev/null 2>&1
$B train-vae sim2/particles.mrcs --poses sim2/pose.pkl --zdim 2 -n 3 --uninvert-data --enc-dim 16 \
  --dec-dim 32 --enc-layers 2 --dec-layers 2 --seed 1 -o vae >/dev/null 2>&1
$B analyze-landscape vae -1 --sketch-size 12 -M 2 --pc-dim 3 --plot-dim 2 -d 16 -o land >/dev/null 2>&1
$B analyze-landscape-full vae -1 --landscape-dir land -o full -N 150 --epochs 30 --dim 32 --layers 2 >/dev/null 2>&1

"$REF/bin/python" - <<'PY' 2>/dev/null
import argparse, os, glob, logging, warnings
import numpy as np
warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)
from cryodrgn.mrcfile import parse_mrc, write_mrc
from cryodrgn.utils import load_pkl, save_pkl
from cryodrgn.commands_utils import phase_flip, translate_mrcs, clean

def ns(mod, argv):
    p = argparse.ArgumentParser()
    r = mod.add_args(p)
    return (r or p).parse_args(argv)

def cmp(label, ours, ref):
    a, b = parse_mrc(ours)[0], parse_mrc(ref)[0]
    print(f"{label:<44} max|ours-ref| {np.abs(a - b).max():.3e}   (max|ref| {np.abs(b).max():.3f})")

imgs = parse_mrc("sim/particles.mrcs")[0]
ctf = load_pkl("sim/ctf.pkl")
ours = parse_mrc("ours_pf.mrcs")[0]
worst, top = 0.0, 0.0
for i in range(len(imgs)):
    write_mrc(f"one_{i}.mrcs", imgs[i:i + 1].copy(), Apix=1.0)
    save_pkl(ctf[i:i + 1].copy(), f"one_{i}.pkl")
    phase_flip.main(ns(phase_flip, [f"one_{i}.mrcs", f"one_{i}.pkl", "-o", f"ref_pf_{i}.mrcs"]))
    ref = parse_mrc(f"ref_pf_{i}.mrcs")[0][0]
    worst, top = max(worst, float(np.abs(ref - ours[i]).max())), max(top, float(np.abs(ref).max()))
print(f"{'phase-flip (D=32, 6 images, one-image stacks)':<44} max|ours-ref| {worst:.3e}   (max|ref| {top:.3f})")
phase_flip.main(ns(phase_flip, ["sim/particles.mrcs", "sim/ctf.pkl", "-o", "ref_pf_all.mrcs"]))
cmp("phase-flip (whole stack: reference mixes)", "ours_pf.mrcs", "ref_pf_all.mrcs")

translate_mrcs.main(ns(translate_mrcs, ["sim/particles.mrcs", "sim/pose.pkl", "-o", "ref_tr.mrcs"]))
cmp("translate-mrcs (D=32, 6 images)", "ours_tr.mrcs", "ref_tr.mrcs")
translate_mrcs.main(ns(translate_mrcs, ["sim/particles.mrcs", "sim/pose.pkl", "--tscale", "0.5", "-o", "ref_tr_half.mrcs"]))
cmp("translate-mrcs --tscale 0.5", "ours_tr_half.mrcs", "ref_tr_half.mrcs")
translate_mrcs.main(ns(translate_mrcs, ["odd.mrcs", "odd_pose.pkl", "-o", "ref_tr_odd.mrcs"]))
cmp("translate-mrcs (D=15, 4 images)", "ours_tr_odd.mrcs", "ref_tr_odd.mrcs")

import torch
from cryodrgn.models import ResidLinearMLP
mlp = ResidLinearMLP(2, 2, 32, 3, torch.nn.ReLU)
mlp.load_state_dict(torch.load("full/model.pt"))
z = load_pkl("vae/z.pkl")
z = (z[0] if isinstance(z, tuple) else z).astype(np.float32)
with torch.no_grad():
    pred = mlp(torch.tensor(z)).numpy()
ours_all = load_pkl("full/vol_pca_all.pkl")
print(f"{'analyze-landscape-full model.pt in torch':<44} max|ours-ref| {np.abs(pred - ours_all).max():.3e}   (max|ref| {np.abs(pred).max():.3f})")

clean.main(ns(clean, ["run_ref", "-n", "5"]))
left = lambda r: sorted(os.path.relpath(p, r) for p in glob.glob(f"{r}/**", recursive=True) if os.path.isfile(p))
o, r = left("run_ours"), left("run_ref")
print(f"{'clean -n 5 (files left)':<44} ours {len(o)}, reference {len(r)}, identical: {o == r}")
if o != r:
    print("  only ours:", sorted(set(o) - set(r)), " only reference:", sorted(set(r) - set(o)))
PY
