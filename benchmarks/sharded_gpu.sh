#!/usr/bin/env bash
# Multi-GPU check of the sharding rules, one command on the lent machine (nvidia-h200-x2 / -x4),
# from the repo root:  bash benchmarks/sharded_gpu.sh
# 1. build the CUDA extension (benchmarks/gpu_check.sh's build phase; SKIP_BUILD=1 to skip),
# 2. tests/test_sharding.py on the GPUs (every layout vs 1 GPU, HLO: no int8 collectives),
# 3. benchmarks/multihost.py: 2 processes x 1 GPU under jax.distributed (localhost coordinator),
# 4. benchmarks/sharded.py: layer + MLP block at TP = 1, 2, 4 (what the machine has); table last.
# Logs and JSON go to $OUT (or benchmarks/results/).  BENCH_ARGS="--tokens 1024" to trim.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
if [ -z "${SKIP_BUILD:-}" ]; then
  PHASES=build bash benchmarks/gpu_check.sh || { echo "build failed"; exit 1; }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L 2>/dev/null | head -8
$PY -c "import jax, jaxint8; print('jax', jax.__version__, jax.devices(), 'cuda kernels', jaxint8.BUILT_WITH_CUDA)"

timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_sharding.py >"$OUT/sharded-tests.log" 2>&1 || status=1
echo "sharding tests: $(tail -1 "$OUT/sharded-tests.log")"
[ $status -ne 0 ] && grep -E "^(FAILED|E )" "$OUT/sharded-tests.log" | head -30

ngpu=$($PY -c "import jax; print(jax.device_count())")
if [ "$ngpu" -ge 2 ]; then
  timeout 200 $PY benchmarks/multihost.py --launch 2 --local-devices 1 >"$OUT/multihost.log" 2>&1 || status=1
  grep -E "process 0: |MULTIHOST|timed out|Error" "$OUT/multihost.log" | head -12
fi

if ! timeout 420 $PY benchmarks/sharded.py --out "$OUT/sharded_gpu.json" ${BENCH_ARGS:-} \
     2>"$OUT/sharded-bench.err"; then
  status=1; tail -20 "$OUT/sharded-bench.err"
fi
exit $status
