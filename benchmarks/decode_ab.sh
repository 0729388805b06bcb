#!/usr/bin/env bash
# A/B of a handler setting on the GPU machine (extension already built into jaxint8/):
# benchmarks/layer.py (decode token counts by default) once per value of an environment switch of the
# handlers, same process layout, one after the other.
#   AB_KNOB    the variable (default JAXINT8_PDL, the programmatic-dependent-launch chain)
#   AB_VALUES  its values, in order (default "1 0": on, off)
#   AB_TOKENS  token counts (default 1,16);  AB_SHAPES  hxo list (default the four small shapes)
# Writes $OUT/ab-<knob>-<value>.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SHAPES=${AB_SHAPES:-4096x16384,16384x4096,5120x20480,20480x5120}
KNOB=${AB_KNOB:-JAXINT8_PDL}
TOKENS=${AB_TOKENS:-1,16}
for value in ${AB_VALUES:-1 0}; do
  echo "== $KNOB=$value"
  env "$KNOB=$value" timeout 150 python3 benchmarks/layer.py \
    --shapes "$SHAPES" --tokens "$TOKENS" --methods bf16,jaxint8 --reps 5 --out "$OUT/ab-$KNOB-$value.json" 2>&1 |
    grep -E "^ +[0-9]+->|shape" | cut -c1-75
done
