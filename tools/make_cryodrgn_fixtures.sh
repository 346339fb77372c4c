#!/usr/bin/env bash
# Make the small cryoDRGN-trained runs that tests/cryodrgn_import.rs and tests/train_options.rs read
# (tests/fixtures/cryodrgn/):
# cryoDRGN 4.3.1 (tools/setup_reference.sh puts it in ~/refvenv) trains tiny models on the shared
# hand.mrcs downsampled to D = 16, and its own `eval_vol` decodes the reference volumes. Only what
# the tests need is kept: the final weights.pkl (a torch.save zip) and config.yaml of each run, the
# VAE's z.pkl, the reference's volumes, and evil.pkl (a torch checkpoint whose pickle names
# os.system: made by torch.save, never loaded here; our reader must refuse it by name).
#
# Usage: tools/make_cryodrgn_fixtures.sh [OUTDIR]   (default tests/fixtures/cryodrgn)
# Needs: ~/refvenv (or $REFVENV) with cryodrgn==4.3.1, and target/release/cryofield for downsample.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/tests/fixtures/cryodrgn}
VENV=${REFVENV:-$HOME/refvenv}
B=${CRYOFIELD_BIN:-$ROOT/target/release/cryofield}
DATA=${CRYOFIELD_DATA:-$ROOT/../shared/data}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=1
"$B" downsample "$DATA/hand.mrcs" -D 16 -o "$W/hand16.mrcs" > /dev/null
P="$DATA/hand_rot_trans.pkl"
D="$VENV/bin/cryodrgn"
# VAE with the reference's defaults (fourier, gaussian features, relu), small networks
"$D" train_vae "$W/hand16.mrcs" --poses "$P" --zdim 2 -o "$W/vae" -n 2 --enc-layers 2 --enc-dim 16 \
  --dec-layers 2 --dec-dim 16 --no-analysis --seed 1 > "$W/vae.log" 2>&1
# VAE with the other model options: hartley domain, geom_lowf, leaky_relu, zdim 1
"$D" train_vae "$W/hand16.mrcs" --poses "$P" --zdim 1 -o "$W/vae2" -n 1 --enc-layers 1 --enc-dim 8 \
  --dec-layers 2 --dec-dim 12 --domain hartley --pe-type geom_lowf --activation leaky_relu \
  --no-analysis --seed 2 > "$W/vae2.log" 2>&1
# homogeneous
"$D" train_nn "$W/hand16.mrcs" --poses "$P" -o "$W/nn" -n 1 --layers 2 --dim 16 --seed 1 > "$W/nn.log" 2>&1
"$D" eval_vol "$W/vae/weights.pkl" -c "$W/vae/config.yaml" -z 0.5 -0.3 -o "$W/vae_vol.mrc" > /dev/null 2>&1
"$D" eval_vol "$W/vae2/weights.pkl" -c "$W/vae2/config.yaml" -z -0.7 -o "$W/vae2_vol.mrc" > /dev/null 2>&1
# (eval_vol refuses homogeneous models: train_nn's own final reconstruct.mrc is the reference)
cp "$W/nn/reconstruct.mrc" "$W/nn_vol.mrc"
# --pe-type none. cryoDRGN 4.3.1 trains it only with --domain hartley (its FTSliceDecoder asserts an
# odd number of lattice points, but the decoder's mask drops the DC point), and its eval_vol fails
# on a hartley VAE (ResidLinearMLP.eval_volume concatenates the NumPy z): so the homogeneous run's
# reconstruct.mrc; the hartley VAE's volume from that same eval_volume given z as a (D², zdim)
# tensor; and a `fourier` VAE (FTSliceDecoder) built by HetOnlyVAE.load from the hartley run's
# config with domain fourier (torch.manual_seed(5) initialization), decoded by eval_vol itself.
"$D" train_nn "$W/hand16.mrcs" --poses "$P" -o "$W/nn_none" -n 1 --layers 1 --dim 8 --domain hartley \
  --pe-type none --seed 3 > "$W/nn_none.log" 2>&1
cp "$W/nn_none/reconstruct.mrc" "$W/nn_none_vol.mrc"
"$D" train_vae "$W/hand16.mrcs" --poses "$P" --zdim 1 -o "$W/vae_none_h" -n 1 --enc-layers 1 --enc-dim 8 \
  --dec-layers 1 --dec-dim 8 --domain hartley --pe-type none --no-analysis --seed 3 > "$W/vae_none_h.log" 2>&1
mkdir -p "$W/vae_none"
"$VENV/bin/python" - "$W" <<'PY'
import sys, numpy as np, torch, yaml
from cryodrgn import config
from cryodrgn.models import HetOnlyVAE
from cryodrgn.mrcfile import write_mrc
w = sys.argv[1]
cfg = config.load(f"{w}/vae_none_h/config.yaml")
model, lat = HetOnlyVAE.load(cfg, f"{w}/vae_none_h/weights.pkl")
model.eval()
z = torch.full((lat.D**2, 1), 0.4, dtype=torch.float32)
vol = model.decoder.eval_volume(lat.coords, lat.D, lat.extent, cfg["dataset_args"]["norm"], z)
write_mrc(f"{w}/vae_none_h_vol.mrc", np.array(vol).astype(np.float32), Apix=1.0)
cfg["model_args"]["domain"] = "fourier"
with open(f"{w}/vae_none/config.yaml", "w") as f:
    yaml.safe_dump(cfg, f)
torch.manual_seed(5)
model, _ = HetOnlyVAE.load(f"{w}/vae_none/config.yaml")
torch.save({"epoch": 1, "model_state_dict": model.state_dict()}, f"{w}/vae_none/weights.pkl")
PY
"$D" eval_vol "$W/vae_none/weights.pkl" -c "$W/vae_none/config.yaml" -z -0.5 -o "$W/vae_none_vol.mrc" \
  > /dev/null 2>&1
# --encode-mode conv: cryoDRGN 4.3.1's train_vae writes config.yaml, then stops at its first batch
# (`assert hasattr(data, "particles_real")`: its ImageDataset no longer has that attribute; its
# eval_images likewise). So the model is HetOnlyVAE.load of that config (torch.manual_seed(7)
# initialization; ConvEncoder with qdim 2) and the reference latents are its `encode` of the
# `y_real` images its own ImageDataset(keepreal=True) makes of 3 particles of hand.mrcs (64×64).
"$D" train_vae "$DATA/hand.mrcs" --poses "$P" --zdim 2 -o "$W/conv" -n 1 --encode-mode conv --enc-dim 2 \
  --enc-mask -1 --dec-layers 1 --dec-dim 8 --no-analysis --seed 1 > "$W/conv.log" 2>&1 || true
grep -q particles_real "$W/conv.log"
"$VENV/bin/python" - "$W" "$DATA" <<'PY'
import pickle, sys, numpy as np, torch
from cryodrgn import config
from cryodrgn.dataset import ImageDataset
from cryodrgn.models import HetOnlyVAE
from cryodrgn.mrcfile import write_mrc
from cryodrgn.source import ImageSource
w, data = sys.argv[1], sys.argv[2]
ind = np.arange(3)
imgs = ImageSource.from_file(f"{data}/hand.mrcs", indices=ind).images()
write_mrc(f"{w}/conv/particles.mrcs", np.array(imgs).astype(np.float32), Apix=1.0)
with open(f"{data}/hand_rot_trans.pkl", "rb") as f:
    rot, trans = pickle.load(f)
with open(f"{w}/conv/poses.pkl", "wb") as f:
    pickle.dump((rot[ind], trans[ind]), f)
cfg = config.load(f"{w}/conv/config.yaml")
torch.manual_seed(7)
model, lat = HetOnlyVAE.load(cfg)
model.eval()
torch.save({"epoch": 1, "model_state_dict": model.state_dict()}, f"{w}/conv/weights.pkl")
ds = ImageDataset(mrcfile=f"{w}/conv/particles.mrcs", lazy=False, norm=cfg["dataset_args"]["norm"],
                  invert_data=True, keepreal=True, window=True, window_r=0.85)
with torch.no_grad():
    mu, logvar = model.encode(ds[ind]["y_real"])
with open(f"{w}/conv/z_ref.pkl", "wb") as f:
    pickle.dump(mu.numpy().astype(np.float32), f)
    pickle.dump(logvar.numpy().astype(np.float32), f)
PY
# gen_mask: a partial mask of the VAE's volume, and the shared hand map at 6 Å/px with the defaults
"$VENV/bin/cryodrgn_utils" gen_mask "$W/vae_vol.mrc" "$W/mask_vae_vol.mrc" --dilate 3 --dist 4 > /dev/null 2>&1
"$VENV/bin/cryodrgn_utils" gen_mask "$DATA/golden/hand-vol.32.mrc" "$W/mask_hand32_apix6.mrc" --Apix 6 \
  > /dev/null 2>&1
"$VENV/bin/python" - "$W/evil.pkl" <<'PY'
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("echo this checkpoint ran code",))
torch.save({"epoch": 0, "model_state_dict": {"x": torch.zeros(2)}, "payload": Evil()}, sys.argv[1])
PY
mkdir -p "$OUT"/{vae,vae2,nn,nn_none,vae_none_h,vae_none}
for r in vae vae2 nn nn_none vae_none_h vae_none; do
  cp "$W/$r/weights.pkl" "$W/$r/config.yaml" "$OUT/$r/"
  cp "$W/${r}_vol.mrc" "$OUT/"
done
cp "$W/vae/z.pkl" "$OUT/vae/"
mkdir -p "$OUT/conv"
cp "$W"/conv/{config.yaml,weights.pkl,particles.mrcs,poses.pkl,z_ref.pkl} "$OUT/conv/"
cp "$W/evil.pkl" "$W/mask_vae_vol.mrc" "$W/mask_hand32_apix6.mrc" "$OUT/"
"$VENV/bin/python" -c "import cryodrgn, torch; print('cryodrgn', cryodrgn.__version__, 'torch', torch.__version__)" \
  > "$OUT/VERSIONS.txt"
echo "fixtures in $OUT:"; ls -la "$OUT" "$OUT"/*/
