#!/usr/bin/env bash
# Make the small cryoDRGN-trained runs that tests/cryodrgn_import.rs reads (tests/fixtures/cryodrgn/):
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
mkdir -p "$OUT"/{vae,vae2,nn}
for r in vae vae2 nn; do
  cp "$W/$r/weights.pkl" "$W/$r/config.yaml" "$OUT/$r/"
  cp "$W/${r}_vol.mrc" "$OUT/"
done
cp "$W/vae/z.pkl" "$OUT/vae/"
cp "$W/evil.pkl" "$W/mask_vae_vol.mrc" "$W/mask_hand32_apix6.mrc" "$OUT/"
"$VENV/bin/python" -c "import cryodrgn, torch; print('cryodrgn', cryodrgn.__version__, 'torch', torch.__version__)" \
  > "$OUT/VERSIONS.txt"
echo "fixtures in $OUT:"; ls -la "$OUT" "$OUT"/*/
