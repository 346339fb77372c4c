#!/usr/bin/env bash
# Compiles every CUDA kernel (kernels/*.cu) with NVRTC for each target architecture and prints
# registers, stack, spills and shared memory per kernel; no GPU or CUDA toolkit needed.
#
#   tools/check-kernels.sh                  # sm_80 and sm_90
#   CRYOFIELD_KERNEL_ARCHS=sm_90,sm_100 tools/check-kernels.sh
#
# libnvrtc comes from $CRYOFIELD_NVRTC_LIB when set, else from the `nvidia-cuda-nvrtc-cu12` pip
# wheel installed into a throwaway venv under target/ (the same one .ci/run uses).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CRYOFIELD_NVRTC_LIB:-}" ]; then
  venv="${CRYOFIELD_NVRTC_VENV:-$PWD/target/nvrtc-venv}"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  lib=$(find "$venv" -name 'libnvrtc.so.12' -print -quit)
  if [ -z "$lib" ]; then
    "$venv/bin/pip" install -q 'nvidia-cuda-nvrtc-cu12==12.9.86'
    lib=$(find "$venv" -name 'libnvrtc.so.12' -print -quit)
  fi
  export CRYOFIELD_NVRTC_LIB="$lib"
fi
export CRYOFIELD_REQUIRE_NVRTC=1
cargo test --test cuda_kernels nvrtc -- --nocapture --test-threads 1
