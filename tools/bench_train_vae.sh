#!/usr/bin/env bash
# Side by side: `cryofield train-vae` vs cryoDRGN 4.3.1 `cryodrgn train_vae`, same simulated data
# (N images, D=64, linear1d phantom, SNR 0.1, CTF, shifts), zdim 8, batch 8, default gaussian PE,
# fourier domain, relu, for enc/dec 256x3 and 1024x3; per-epoch wall time of each (ours: the
# "; X s" of our epoch summary line; reference: "Finished in H:MM:SS" of its epoch line), the
# ratio, the machine's GEMM peaks measured in the same run (ours: criterion groups
# gemm_peak/cpu-f32/2048x2048x2048 and gemm_peak/cpu-bf16/2048x2048x2048 of
# benches/train.rs; PyTorch's matmul (oneDNN) on 2048^3, f32 and bf16, same thread count) and
# our achieved training GFLOP/s as a percentage of the higher peak of each precision. Ours runs
# twice: with its default mixed precision (bf16 GEMMs with f32 sums on AMX tiles or AVX-512 BF16
# vectors, like the reference's default --amp on a GPU) and with --no-amp (f32). The reference's
# --amp is CUDA-only, so on this CPU it runs f32.
#
# FLOPs of one epoch (GEMMs only, the minimal algorithm; Adam/elementwise/PE excluded), per image:
#   Q = P = #{(i,j) in [-D/2,D/2]^2 : i^2+j^2 <= (D/2)^2} - 1 (encoder input and decoder mask,
#   DC dropped); R = ceil(P/2) decoder rows (Fourier domain, Hermitian half); h = hidden width,
#   L = hidden layers (ResidLinearMLP: in->h, L x h->h, h->out); W = 2*3*(D/2) + zdim = decoder
#   input (gaussian PE sin/cos of 3*(D/2) frequencies ++ z).
#   encoder fwd  Fe = 2*(Q*h + L*h^2 + h*2z)           (one row per image)
#   encoder bwd  Fe (dW) + 2*(L*h^2 + h*2z)             (dX of all layers but the first)
#   decoder fwd  Fd = 2*R*(W*h + L*h^2 + 2h)
#   decoder bwd  Fd (dW) + 2*R*(L*h^2 + 2h)             (dX of hidden/out layers; z's gradient is
#                (Σ over an image's rows of layer 0's g)·W_0[:, z], additions, not counted)
#   epoch FLOPs = N * (sum of the above).
# Usage: tools/bench_train_vae.sh [N] [EPOCHS]    env: N_BIG (images for the 1024x3 pair,
#   default N), SIZES ("256 1024"), SKIP_REF=1, SKIP_PEAK=1, CRYODRGN_VENV.
# Timings are wall clock on a shared machine: read `uptime` (printed) before trusting them.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
EPOCHS=${2:-1}
N_BIG=${N_BIG:-$N}
SIZES=${SIZES:-"256 1024"}
D=64; Z=8; BS=8; L=3
REF=${CRYODRGN_VENV:-$HOME/refvenv}
cargo build --release -q
B=$PWD/target/release/cryofield
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "date: $(date -u +%FT%TZ)   load at start: $(uptime | sed 's/.*load average: //')"
$B phantom --kind linear1d -D $D -o "$W/ph" > /dev/null 2>&1
$B simulate "$W/ph/vols.txt" -N "$N" --snr 0.1 --t-extent 3 --defocus 10000 20000 -o "$W/sim" > /dev/null 2>&1
PART="$W/sim/particles.mrcs"; POSE="$W/sim/pose.pkl"; CTF="$W/sim/ctf.pkl"
if [ "$N_BIG" != "$N" ]; then
  $B simulate "$W/ph/vols.txt" -N "$N_BIG" --snr 0.1 --t-extent 3 --defocus 10000 20000 -o "$W/simbig" > /dev/null 2>&1
fi

# seconds of the reference's epoch lines ("Finished in 0:01:23.456789"), mean over epochs
ref_epoch() { grep -o "=====> Epoch.*Finished in [0-9:.]*" "$1" | sed 's/.*Finished in //' |
  awk -F: '{s += $1*3600 + $2*60 + $3; n++} END {if (n) printf "%.2f", s/n; else print "NA"}'; }
our_epoch() { grep -o "=====> Epoch.*; [0-9.]* s" "$1" | sed 's/.*; \([0-9.]*\) s/\1/' |
  awk '{s += $1; n++} END {if (n) printf "%.2f", s/n; else print "NA"}'; }
# GFLOP per epoch of N images, hidden width h (formula above)
gflop() { awk -v N="$1" -v h="$2" -v D=$D -v z=$Z -v L=$L 'BEGIN {
  r = D/2; P = -1; for (i = -r; i <= r; i++) for (j = -r; j <= r; j++) if (i*i + j*j <= r*r) P++;
  R = int((P + 1) / 2); Win = 6*r + z;
  Fe = 2*(P*h + L*h*h + h*2*z); Eb = Fe + 2*(L*h*h + h*2*z);
  Fd = 2*R*(Win*h + L*h*h + 2*h); Db = Fd + 2*R*(L*h*h + 2*h);
  printf "%.3f", N * (Fe + Eb + Fd + Db) / 1e9 }'; }

# The machine's GEMM peak is the best GEMM measured on it, not only ours: PyTorch's matmul
# (oneDNN; bf16 on AMX or AVX-512 BF16) on 2048^3 with the same number of threads, from the
# reference's venv.
torch_peak() {
  "$REF/bin/python" - "$(nproc)" <<'PY' 2>/dev/null || echo "NA NA"
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
n, out = 2048, []
for dt in (torch.float32, torch.bfloat16):
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    out.append(f"{best:.1f}")
print(*out)
PY
}
PEAK=NA; PEAK16=NA; TPEAK=NA; TPEAK16=NA
if [ "${SKIP_PEAK:-0}" != 1 ]; then
  read -r TPEAK TPEAK16 < <(torch_peak)
  echo "GEMM peak (PyTorch $("$REF/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null) matmul 2048^3, oneDNN): f32 ${TPEAK} GFLOP/s, bf16 ${TPEAK16} GFLOP/s"
  cargo bench -q --bench train -- gemm_peak > "$W/peak.log" 2>&1 || true
  # the middle (point) estimate of each group's throughput, Gelem/s = GFLOP/s
  peak_of() { grep -A3 "gemm_peak/$1/" "$W/peak.log" | grep -o "thrpt: *\[[^]]*\]" | head -1 |
    awk '{print $4}'; }
  PEAK=$(peak_of cpu-f32); PEAK16=$(peak_of cpu-bf16)
  echo "GEMM peak (criterion gemm_peak/cpu-f32/2048x2048x2048, f32): ${PEAK} GFLOP/s"
  echo "GEMM peak (criterion gemm_peak/cpu-bf16/2048x2048x2048, bf16 on this CPU's engine): ${PEAK16:-NA} GFLOP/s"
fi
# The percentages below are of the highest of the measurements (PyTorch's is measured again
# after the training runs: the machine's speed drifts, and the higher reading is the fairer
# denominator).
maxof() { awk -v a="$1" -v b="$2" 'BEGIN {if (a+0 >= b+0 && a+0 > 0) print a; else if (b+0 > 0) print b; else print "NA"}'; }

printf "\n| enc/dec | N | epochs | ours mixed s/epoch | ours f32 s/epoch | cryoDRGN s/epoch | speed-up mixed | speed-up f32 | GFLOP/epoch | mixed GFLOP/s (%% of best bf16 peak) | f32 GFLOP/s (%% of best f32 peak) |\n|---|---|---|---|---|---|---|---|---|---|---|\n" > "$W/table"
for h in $SIZES; do
  n=$N; part=$PART; pose=$POSE; ctf=$CTF
  if [ "$h" -ge 1024 ] && [ "$N_BIG" != "$N" ]; then
    n=$N_BIG; part="$W/simbig/particles.mrcs"; pose="$W/simbig/pose.pkl"; ctf="$W/simbig/ctf.pkl"
  fi
  common=(--zdim $Z -n "$EPOCHS" -b $BS --enc-dim "$h" --enc-layers $L --dec-dim "$h" --dec-layers $L)
  echo "[$h x $L] N=$n load before ours (mixed): $(uptime | sed 's/.*load average: //')"
  $B train-vae "$part" --poses "$pose" --ctf "$ctf" "${common[@]}" -o "$W/ours$h" > "$W/ours$h.log" 2>&1
  grep -m1 "^precision" "$W/ours$h.log" || true
  mixed=$(our_epoch "$W/ours$h.log")
  echo "[$h x $L] load before ours (f32): $(uptime | sed 's/.*load average: //')"
  $B train-vae "$part" --poses "$pose" --ctf "$ctf" "${common[@]}" --no-amp -o "$W/ours32$h" > "$W/ours32$h.log" 2>&1
  f32=$(our_epoch "$W/ours32$h.log")
  ref=NA
  if [ "${SKIP_REF:-0}" != 1 ]; then
    echo "[$h x $L] load before reference: $(uptime | sed 's/.*load average: //')"
    "$REF/bin/cryodrgn" train_vae "$part" --poses "$pose" --ctf "$ctf" "${common[@]}" --no-analysis \
      -o "$W/ref$h" > "$W/ref$h.log" 2>&1 || { tail -5 "$W/ref$h.log"; }
    ref=$(ref_epoch "$W/ref$h.log")
  fi
  echo "$h $n $mixed $f32 $ref" >> "$W/rows"
done
TPEAK_A=NA; TPEAK16_A=NA
if [ "${SKIP_PEAK:-0}" != 1 ]; then
  read -r TPEAK_A TPEAK16_A < <(torch_peak)
  echo "GEMM peak (PyTorch, again after the runs): f32 ${TPEAK_A} GFLOP/s, bf16 ${TPEAK16_A} GFLOP/s"
fi
BEST=$(maxof "$(maxof "$PEAK" "$TPEAK")" "$TPEAK_A")
BEST16=$(maxof "$(maxof "$PEAK16" "$TPEAK16")" "$TPEAK16_A")
while read -r h n mixed f32 ref; do
  gf=$(gflop "$n" "$h")
  rate() { awk -v g="$gf" -v s="$1" 'BEGIN {if (s+0 > 0) printf "%.1f", g/s; else print "NA"}'; }
  ratio() { awk -v a="$1" -v b="$ref" 'BEGIN {if (a+0 > 0 && b+0 > 0) printf "%.2fx", b/a; else print "NA"}'; }
  pct() { awk -v r="$1" -v p="$2" 'BEGIN {if (p+0 > 0 && r+0 > 0) printf "%.0f%%", 100*r/p; else print "NA"}'; }
  rm_=$(rate "$mixed"); r32=$(rate "$f32")
  echo "| ${h}x$L | $n | $EPOCHS | $mixed | $f32 | $ref | $(ratio "$mixed") | $(ratio "$f32") | $gf | $rm_ ($(pct "$rm_" "$BEST16")) | $r32 ($(pct "$r32" "$BEST")) |" >> "$W/table"
done < "$W/rows"
cat "$W/table"
echo "GEMM peaks: ours f32 $PEAK, bf16 $PEAK16; PyTorch/oneDNN f32 $TPEAK then $TPEAK_A, bf16 $TPEAK16 then $TPEAK16_A GFLOP/s (percentages: of the highest); load at end: $(uptime | sed 's/.*load average: //')"
