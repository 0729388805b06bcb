#!/usr/bin/env bash
# A/B of a decode-path switch on the GPU machine (extension already built into jaxint8/):
# benchmarks/layer.py at 1 and 16 tokens with the switch on (default) and off, same process
# layout, one after the other. AB_KNOB names an on/off environment switch of the
# handlers (default JAXINT8_PDL, the programmatic-dependent-launch chain); AB_TOKENS the token
# counts (default 1,16). Writes
# $OUT/ab-<knob>-{on,off}.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SHAPES=${AB_SHAPES:-4096x16384,16384x4096,5120x20480,20480x5120}
KNOB=${AB_KNOB:-JAXINT8_PDL}
TOKENS=${AB_TOKENS:-1,16}
for setting in on off; do
  echo "== $KNOB $setting"
  env $KNOB=$([ $setting = on ] && echo 1 || echo 0) timeout 150 python3 benchmarks/layer.py \
    --shapes "$SHAPES" --tokens "$TOKENS" --methods bf16,jaxint8 --reps 5 --out "$OUT/ab-$KNOB-$setting.json" 2>&1 |
    grep -E "^ +[0-9]+->|shape" | cut -c1-75
done
