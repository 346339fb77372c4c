#!/usr/bin/env bash
# Install the reference implementation (cryoDRGN 4.3.1, pulls torch, ~6 GB) into a venv for
# side-by-side benchmarks. Never a runtime dependency of cryofield.
set -euo pipefail
REF=${CRYODRGN_VENV:-$HOME/refvenv}
[ -x "$REF/bin/cryodrgn" ] && { echo "reference already in $REF"; exit 0; }
python3 -m venv "$REF"
"$REF/bin/pip" install -q cryodrgn==4.3.1
echo "reference installed in $REF"
