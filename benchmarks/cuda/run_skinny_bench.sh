#!/usr/bin/env bash
# Build and run the decode GEMM harness (benchmarks/cuda/skinny_bench.cu) on an sm_90 GPU, once per
# variant of the kernel, then optionally Nsight Compute on a few cases. No JAX extension build:
# the harness links xla_ffi/cuda/gemm_skinny.cu and gemm_gemv.cu directly (~20 s to compile).
#   VARIANTS="mma dp4a"    values of $KNOB to run, one harness run each (default: "default" = unset)
#   KNOB=JAXINT8_DECODE_KERNEL  the environment variable VARIANTS sets (default JAXINT8_DECODE_KERNEL)
#   SKINNY_TOKENS="1 2 4"  token counts of the timed cases (default "1 16")
#   NCU=1                  also profile (sections below) the --profile cases
#   PATTERNS=1             also run the read-pattern sweep (rows per load x blocks per SM)
#   BASELINE_SRC="a.cu b.cu" also build the harness against these versions of gemm_skinny.cu and
#                          run them first (A/B in one call; e.g. the file of an earlier commit)
# Logs go to $OUT (the device tool's output folder) or /tmp/skinny_out.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOG=${OUT:-/tmp/skinny_out}
mkdir -p "$LOG"
PY=${PYTHON:-python3}
JI=$($PY -c "import jax.ffi; print(jax.ffi.include_dir())")
BIN=/tmp/skinny_bench
FLAGS=(-gencode=arch=compute_90a,code=sm_90a -std=c++17 -O3 --expt-relaxed-constexpr -lineinfo
       -I"$ROOT/xla_ffi" -isystem "$JI" -Xcudafe --diag_suppress=esa_on_defaulted_function_ignored)
t0=$(date +%s)
KNOB=${KNOB:-JAXINT8_DECODE_KERNEL}
nvcc "${FLAGS[@]}" "$ROOT/xla_ffi/cuda/gemm_skinny.cu" "$ROOT/xla_ffi/cuda/gemm_gemv.cu" "$ROOT/benchmarks/cuda/skinny_bench.cu" -o "$BIN" &
i=0
for src in ${BASELINE_SRC:-}; do
  nvcc "${FLAGS[@]}" "$src" "$ROOT/xla_ffi/cuda/gemm_gemv.cu" "$ROOT/benchmarks/cuda/skinny_bench.cu" -o "$BIN-baseline$i" &
  i=$((i + 1))
done
wait
echo "build: $(( $(date +%s) - t0 )) s"
i=0
for src in ${BASELINE_SRC:-}; do
  echo "== baseline $i: $src"
  "$BIN-baseline$i" 2>&1 | tee "$LOG/skinny-baseline$i.log" || echo "baseline $i FAILED"
  i=$((i + 1))
done
for v in ${VARIANTS:-default}; do
  [ "$v" = none ] && continue  # VARIANTS=none: only the other parts
  if [ "$v" = default ]; then env -u "$KNOB" "$BIN"; else env "$KNOB=$v" "$BIN"; fi \
    2>&1 | tee "$LOG/skinny-$v.log" || echo "variant $v FAILED"
done
if [ -n "${PATTERNS:-}" ]; then "$BIN" --patterns 2>&1 | tee "$LOG/patterns.log"; fi
if [ -n "${NCU:-}" ]; then
  for v in ${VARIANTS:-default}; do
    [ "$v" = default ] && v=auto
    env "$KNOB=$v" ncu --clock-control none --kernel-name regex:"skinny_kernel|gemv_kernel" \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
      --section Occupancy --section LaunchStats --section SchedulerStats \
      "$BIN" --profile > "$LOG/ncu-$v.log" 2>&1 || true
    grep -E "skinny_kernel|gemv_kernel|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Stall|L2 Hit|Issued Warp|No Eligible|Active Warps|Eligible Warps|Registers|Waves Per SM" "$LOG/ncu-$v.log" | head -150
  done
fi
