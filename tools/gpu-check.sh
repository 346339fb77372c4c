#!/usr/bin/env bash
# The one prepared GPU check (issue 25): a session that is lent a device runs `prepare` here, then `run` on the
# device in ONE call, and reads $OUT/summary.txt.
#
#   tools/gpu-check.sh prepare       # here (2-core dev VM): build the release binary and the release
#                                    # cuda_kernels test binary, strip them into gpu-carry/ (ignored, < 64 MiB)
#   device run: command "bash tools/gpu-check.sh run", carry ["gpu-carry"], timeout_s 570
#
# Why prebuilt binaries: the device image has CUDA, nvcc and PyTorch but no Rust toolchain and no network
# (device/KINDS.md), and at most 64 MiB travels with the working tree.
#
# `run` does, in order, each step timed and logged to $OUT/log.txt (figures to $OUT/summary.txt):
#   1. nvidia-smi;
#   2. every CUDA parity test (the cuda_kernels test binary: kernels against their CPU twins, the auction
#      kernel against the twin and the Hungarian optimum); a skip (no usable device or library) is reported
#      as such in the summary; they also time pose·image scores/s (pose_scores_throughput);
#   3. the GPU's bf16 and f32 GEMM peak through PyTorch (8192³ and 4096³), the ceiling our kernels are
#      compared with, measured in the same call;
#   4. simulate N_SIM images (default 100000) at D = 128 (linear1d phantom, SNR 0.1, CTF, shifts) on the
#      device's CPUs, then one `train-vae --device cuda` epoch with 1024×3 networks, zdim 8 (epoch time,
#      images/s) and the same on 2000 images on the CPU for scale;
#   5. point-cloud DPS at the paper's runtime setting (N = 1024 points, 6 projections, batch 10): the
#      seconds per network evaluation (forward + VJP through a W64×4 point transformer, on the device's
#      CPUs: attention has no CUDA kernel yet) and per step, from a 4-step pc-reconstruct; the EDM step
#      kernels themselves are in the parity tests of step 2. `ONLY=dps` runs this step alone; DPS_N and
#      DPS_SAMPLES shrink it for a dry run.
# Sizes: env N_SIM (images), D_SIM (box). Budget: the whole run must stay under ~9 minutes (simulate is cut
# at 180 s, the GPU epoch at 300 s, the CPU epoch at 120 s; a cut step is reported as failed).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=gpu-carry

case "${1:-}" in
prepare)
  cargo build --release --bin cryofield
  # the integration test binary of tests/cuda_kernels.rs, release profile
  exe=$(cargo test --release --no-run --test cuda_kernels --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    try: m=json.loads(l)
    except ValueError: continue
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="cuda_kernels": print(m["executable"])' | tail -1)
  [ -n "$exe" ] || { echo "gpu-check: could not find the cuda_kernels test binary" >&2; exit 1; }
  rm -rf "$CARRY" && mkdir -p "$CARRY"
  strip -o "$CARRY/cryofield" target/release/cryofield
  strip -o "$CARRY/cuda_kernels" "$exe"
  git rev-parse HEAD > "$CARRY/COMMIT"
  du -sh "$CARRY"
  size=$(du -sm "$CARRY" | cut -f1)
  [ "$size" -lt 60 ] || { echo "gpu-check: $CARRY is $size MiB, over what travels" >&2; exit 1; }
  echo "prepared $CARRY at $(cat "$CARRY/COMMIT"); on the device: bash tools/gpu-check.sh run (carry $CARRY)"
  ;;
run)
  OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
  B=$PWD/$CARRY/cryofield; T=$PWD/$CARRY/cuda_kernels
  [ -x "$B" ] && [ -x "$T" ] || { echo "gpu-check: run 'tools/gpu-check.sh prepare' here first and carry $CARRY" >&2; exit 1; }
  N_SIM=${N_SIM:-100000}; D_SIM=${D_SIM:-128}
  S=$OUT/summary.txt; L=$OUT/log.txt
  echo "commit $(cat $CARRY/COMMIT), $(date -u +%FT%TZ)" > "$S"
  step() { echo "== $1" | tee -a "$L"; }
  secs() { local t0=$1; echo $(( $(date +%s) - t0 )); }
  dps_step() {
    local P=$OUT/dps; mkdir -p "$P"; local DN=${DPS_N:-1024} DB=${DPS_SAMPLES:-10}
    step "point-cloud DPS, N = $DN, 6 projections, $DB samples"
    # 8 random-walk chains of 1024 points as a ground truth (normalised by pc-prepare from .npy)
    python3 - "$P/chains.npy" "$DN" <<'PY' >> "$L" 2>&1
import sys, struct, random
random.seed(1); s, n = 8, int(sys.argv[2]); vals = []
for _ in range(s):
    x = [0.0, 0.0, 0.0]
    for _ in range(n):
        x = [c + random.gauss(0, 1) for c in x]; vals += x
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, 3), }" % (s, n)
hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    f.write(struct.pack("<%df" % len(vals), *vals))
PY
    "$B" pc-prepare "$P/chains.npy" -o "$P/gt.npz" >> "$L" 2>&1 &&
    "$B" pc-train "$P/gt.npz" -o "$P/prior" --epochs 1 --batch 4 >> "$L" 2>&1 &&
    "$B" pc-observe "$P/gt.npz" --proj 6 --proj-points "$DN" --seed 1 -o "$P/obs.npz" >> "$L" 2>&1 &&
    timeout 240 "$B" pc-reconstruct "$P/prior" "$P/obs.npz" -o "$P/rec" --samples "$DB" --steps 4 >> "$L" 2>&1 &&
    python3 - "$P/rec/run.json" <<'PY' | tee -a "$S" || echo "DPS at N = $DN: FAILED or over 240 s (see log)" | tee -a "$S"
import json, sys, os
r = json.load(open(sys.argv[1])); nfe = r["nfe_per_sample"]; w = r["wall_s"]; b = r["settings"]["samples"]
n = r["settings"].get("n_points", "?")
print(f"DPS N={n}, 6 proj, batch {b}, 4 steps ({nfe} evaluations): {w:.1f} s = {w/nfe:.2f} s per batched evaluation"
      f" (forward + VJP + {6*b} LAPs), {nfe*b/w:.2f} cloud-evaluations/s on {os.cpu_count()} CPU cores;"
      f" 40 steps (79 evaluations) would take ~{79*w/nfe/60:.1f} min for {b} samples (paper: ~1.2 min per sample on an A100)")
PY
  }
  if [ "${ONLY:-}" = dps ]; then dps_step; echo "wrote $S"; exit 0; fi
  step "nvidia-smi and the CUDA libraries"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$S" "$L" || true
  # cudarc (built for CUDA 12.6) looks for libnvrtc.so / libnvrtc.so.12 / … on the loader path; the image's
  # toolkit is CUDA 13, so put its lib folder on the path and point CRYOFIELD_NVRTC_LIB at a libnvrtc
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    if [ -d "$dir" ]; then export LD_LIBRARY_PATH="$dir:${LD_LIBRARY_PATH:-}"; fi
  done
  lib() { { ldconfig -p 2>/dev/null | grep -o "/[^ ]*$1\.so[.0-9]*" ;
            find /usr/local/cuda* /opt -name "$1.so*" 2>/dev/null ; } | head -1; }
  nvrtc=$(lib libnvrtc || true); cublas=$(lib libcublas || true); cuda=$(lib libcuda || true)
  if [ -n "$nvrtc" ]; then export CRYOFIELD_NVRTC_LIB="$nvrtc"; fi
  echo "libnvrtc: ${nvrtc:-none}; libcublas: ${cublas:-none}; libcuda: ${cuda:-none}" | tee -a "$S" "$L"
  step "CUDA parity tests"
  t0=$(date +%s)
  if "$T" --test-threads 1 --nocapture >> "$L" 2>&1; then r=pass; else r=FAIL; fi
  # without a usable device the parity tests print "skipped: no CUDA device" and pass: say so
  if grep -q "skipped: no CUDA device" "$L"; then r="$r, BUT SKIPPED: $(grep -m1 'skipped: no CUDA device' "$L")"; fi
  echo "cuda_kernels parity tests: $r ($(grep -c '\.\.\. ok' "$L" || true) ok lines, $(secs $t0) s)" | tee -a "$S"
  grep -E "auction|bids|rounds|ms|scores/s" "$L" | tail -24 >> "$S" || true
  step "GEMM peak (PyTorch)"
  python3 - >> "$S" 2>> "$L" <<'PY' || echo "GEMM peak: PyTorch failed (see log)" >> "$S"
import torch, time
for dt, n in [(torch.bfloat16, 8192), (torch.float32, 4096)]:
    a = torch.randn(n, n, device='cuda', dtype=dt); b = torch.randn(n, n, device='cuda', dtype=dt)
    for _ in range(3): a @ b
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(10): a @ b
    torch.cuda.synchronize(); s = (time.perf_counter() - t) / 10
    print(f"GEMM peak {dt} {n}^3: {2 * n**3 / s / 1e12:.1f} TFLOP/s (PyTorch, {torch.cuda.get_device_name()})")
PY
  step "simulate $N_SIM x $D_SIM"
  W=$OUT/work; mkdir -p "$W"
  t0=$(date +%s)
  "$B" phantom --kind linear1d -D "$D_SIM" --seed 1 -o "$W/ph" >> "$L" 2>&1
  timeout 180 "$B" simulate "$W/ph/vols.txt" -N "$N_SIM" --snr 0.1 --t-extent 4 --defocus 10000 25000 --seed 1 -o "$W/sim" >> "$L" 2>&1
  echo "simulate $N_SIM x $D_SIM: $(secs $t0) s on the device's CPUs" | tee -a "$S"
  NET="--zdim 8 --enc-dim 1024 --enc-layers 3 --dec-dim 1024 --dec-layers 3 -b 8 -n 1 --seed 1"
  step "train-vae --device cuda, one epoch"
  t0=$(date +%s)
  if timeout 300 "$B" train-vae "$W/sim/particles.mrcs" --poses "$W/sim/pose.pkl" --ctf "$W/sim/ctf.pkl" $NET \
      --device cuda -o "$W/vae_cuda" >> "$L" 2>&1; then
    e=$(grep -o 'Epoch: 1 .*; [0-9.]* s' "$L" | tail -1 | grep -o '[0-9.]* s$')
    echo "train-vae --device cuda, $N_SIM x $D_SIM, 1024x3, zdim 8, b 8: epoch $e (wall $(secs $t0) s)" | tee -a "$S"
  else
    echo "train-vae --device cuda: FAILED or over 300 s (see log)" | tee -a "$S"
  fi
  step "train-vae on the CPU, 2000 images, for scale"
  "$B" simulate "$W/ph/vols.txt" -N 2000 --snr 0.1 --t-extent 4 --defocus 10000 25000 --seed 2 -o "$W/sim2k" >> "$L" 2>&1
  t0=$(date +%s)
  timeout 120 "$B" train-vae "$W/sim2k/particles.mrcs" --poses "$W/sim2k/pose.pkl" --ctf "$W/sim2k/ctf.pkl" $NET \
    --device cpu -o "$W/vae_cpu" >> "$L" 2>&1 &&
    echo "train-vae --device cpu, 2000 x $D_SIM, same nets: epoch $(grep -o 'Epoch: 1 .*; [0-9.]* s' "$L" | tail -1 | grep -o '[0-9.]* s$') ($(nproc) cores)" | tee -a "$S" ||
    echo "train-vae --device cpu: FAILED (see log)" | tee -a "$S"
  dps_step
  rm -rf "$W"
  echo "wrote $S"
  ;;
*)
  sed -n 2,26p "$0"; exit 2 ;;
esac
