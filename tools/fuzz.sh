#!/usr/bin/env bash
# A long fuzz campaign over every reader (tests/fuzz.rs): SECS seconds per target (default 600), mutation
# seed SEED (default 0x5eed), optionally only some targets. Failing inputs land in tests/fuzz_corpus/
# (commit them with the fix: the corpus is replayed on every `cargo test`).
#
#   tools/fuzz.sh [SECS] [SEED] [TARGETS]      e.g. tools/fuzz.sh 600 0x5eed mrc,star
#
# Targets: mrc star cs pkl npy npz pdb mmcif. The test profile (opt-level 2) is fast enough; no release build.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
seed="${2:-0x5eed}"
targets="${3:-}"
log="target/fuzz-$(date -u +%Y%m%dT%H%M%SZ).log"
mkdir -p target
echo "fuzz: ${secs} s per target, seed ${seed}, targets ${targets:-all}; log ${log}"
CRYOFIELD_FUZZ_SECS="$secs" CRYOFIELD_FUZZ_SEED="$seed" CRYOFIELD_FUZZ_TARGETS="$targets" \
  cargo test --test fuzz fuzz_campaign -- --nocapture 2>&1 | tee "$log"
