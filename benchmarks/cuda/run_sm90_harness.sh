#!/usr/bin/env bash
# Build and run the Hopper int8 GEMM harness (correctness + timing vs cuBLAS bf16) on an sm_90 GPU.
#   benchmarks/cuda/run_sm90_harness.sh [harness args: --no-check | --no-time | --variants]
# CUTLASS headers: $CUTLASS_INCLUDE, else the nvidia-cutlass wheel in .whl/ (offline install).
# Logs go to $OUT (the device tool's output folder) or /tmp/sm90_out.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOG=${OUT:-/tmp/sm90_out}
mkdir -p "$LOG"
CL=${CUTLASS_INCLUDE:-}
if [ -z "$CL" ]; then
  python3 -m pip install -q --no-deps --no-index --target /tmp/cl "$ROOT"/.whl/nvidia_cutlass*.whl
  CL=/tmp/cl/cutlass_library/source/include
fi
BUILD=${SM90_BUILD:-/tmp/sm90_build}
mkdir -p "$BUILD"
FLAGS=(-gencode=arch=compute_90a,code=sm_90a -std=c++17 --expt-relaxed-constexpr -O3 -DNDEBUG -lineinfo
       -I"$CL" -I"$ROOT/xla_ffi" -Xcudafe --diag_suppress=esa_on_defaulted_function_ignored)
SRCS=("$ROOT"/xla_ffi/cuda/sm90/*.cu "$ROOT/benchmarks/cuda/sm90_plain.cu" "$ROOT/benchmarks/cuda/sm90_harness.cu")
# SM90_VARIANTS=0: no sm90_variants.cu objects (faster build; --variants is then unavailable).
VARIANTS=$([ "${SM90_VARIANTS:-1}" = 0 ] && echo "" || echo "1 2 3 4 5")
if [ -z "$VARIANTS" ]; then FLAGS+=(-DJAXINT8_NO_VARIANTS=1); fi
t0=$(date +%s)
# Optional reuse of objects built by an earlier run (device machines start bare):
#   SM90_OBJS=path/to/sm90_objs.tgz SM90_REBUILD="gemm_sm90 sm90_harness" (basenames to rebuild)
if [ -n "${SM90_OBJS:-}" ] && [ -f "$SM90_OBJS" ]; then tar xzf "$SM90_OBJS" -C "$BUILD"; fi
pids=()
for s in "${SRCS[@]}"; do
  b=$(basename "$s" .cu)
  o="$BUILD/$b.o"
  if [ -n "${SM90_OBJS:-}" ] && [ -f "$o" ] && [[ " ${SM90_REBUILD:-} " != *" $b "* ]]; then continue; fi
  ( nvcc "${FLAGS[@]}" -Xptxas -v -c "$s" -o "$o" > "$BUILD/$(basename "$s" .cu).log" 2>&1 \
      || { echo "COMPILE FAILED: $s"; cat "$BUILD/$(basename "$s" .cu).log"; exit 1; } ) &
  pids+=($!)
done
# Benchmark-only configurations (sm90_variants.cu), one object per variant.
for v in $VARIANTS; do
  o="$BUILD/sm90_variants_$v.o"
  if [ -n "${SM90_OBJS:-}" ] && [ -f "$o" ] && [[ " ${SM90_REBUILD:-} " != *" sm90_variants "* ]]; then continue; fi
  ( nvcc "${FLAGS[@]}" -DJAXINT8_VARIANT=$v -Xptxas -v -c "$ROOT/benchmarks/cuda/sm90_variants.cu" -o "$o" \
      > "$BUILD/sm90_variants_$v.log" 2>&1 \
      || { echo "COMPILE FAILED: sm90_variants.cu ($v)"; cat "$BUILD/sm90_variants_$v.log"; exit 1; } ) &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
cat "$BUILD"/*.log > "$LOG/build.log" 2>/dev/null || true
[ $fail = 0 ] || { echo "build failed"; exit 1; }
nvcc "${FLAGS[@]}" "$BUILD"/*.o -lcublas -o "$BUILD/sm90_harness"
(cd "$BUILD" && tar czf "$LOG/sm90_objs.tgz" ./*.o)
echo "build: $(( $(date +%s) - t0 )) s"
grep -E "Compiling entry|registers|spill" "$LOG/build.log" | grep -B1 -E "spill stores [1-9]|bytes stack frame, [1-9]" | head -20 || true
if command -v cuobjdump > /dev/null; then
  for b in gemm_coop_bf16 gemm_pp_bf16; do
    cuobjdump -sass "$BUILD/$b.o" > "$BUILD/$b.sass" 2>/dev/null || true
    echo "SASS $b: $(grep -oE '\b(FADD|FMUL|FFMA|LDS|LDG|STS|BAR|HGMMA|LDL|STL)(\.[A-Z0-9_]+)*' "$BUILD/$b.sass" | sort | uniq -c | tr '\n' ' ')"
  done | tee "$LOG/sass_stats.txt"
  gzip -c "$BUILD/gemm_coop_bf16.sass" > "$LOG/coop_bf16.sass.gz" || true
fi
"$BUILD/sm90_harness" "$@" 2>&1 | tee "$LOG/harness.log"
