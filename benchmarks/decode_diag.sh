#!/usr/bin/env bash
# Decode-step diagnosis on the GPU machine (after the extension is built into jaxint8/): the
# 13B-shaped model's decode loop traced under XLA's command-buffer settings, to tell kernel time
# from launch/host time per step. Writes $OUT/decode-<setting>.{json,log}; prints the traces.
#
#   DIAG_SETTINGS="default nocmdbuf nocustom"   default: XLA's command buffers as shipped;
#                                               nocmdbuf: --xla_gpu_enable_command_buffer= (off);
#                                               nocustom: custom calls left out of them.
#   DIAG_ARGS="--decode-batch 1 16"             extra arguments for benchmarks/model.py
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -e jaxint8/models ] || ln -s ../models jaxint8/models
for setting in ${DIAG_SETTINGS:-default nocmdbuf nocustom}; do
  case $setting in
    default) flags="" ;;
    nocmdbuf) flags="--xla_gpu_enable_command_buffer=" ;;
    nocustom) flags="--xla_gpu_enable_command_buffer=-CUSTOM_CALL" ;;
  esac
  XLA_FLAGS="$flags" timeout 240 $PY benchmarks/model.py --configs 13b --layers 4 --prompt-len 0 \
    --decode-batch 1 --decode-steps 32 --repeats 3 --trace ${DIAG_ARGS:-} \
    --out "$OUT/decode-$setting.json" >"$OUT/decode-$setting.log" 2>&1
  echo "== $setting (XLA_FLAGS=$flags): rc=$?"
  grep -E "decode b|^ +[0-9.]+ us|^13b|Error|error" "$OUT/decode-$setting.log" | head -40
done
