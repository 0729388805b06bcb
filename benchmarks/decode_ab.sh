#!/usr/bin/env bash
# A/B of the decode-path launch chaining on the GPU machine (extension already built into jaxint8/):
# benchmarks/layer.py at 1 and 16 tokens with the programmatic-dependent-launch chain on (default)
# and off (JAXINT8_PDL=0), same process layout, one after the other. Writes $OUT/ab-pdl-{on,off}.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SHAPES=${AB_SHAPES:-4096x16384,16384x4096,5120x20480,20480x5120}
for setting in on off; do
  echo "== early launch $setting"
  env JAXINT8_PDL=$([ $setting = on ] && echo 1 || echo 0) timeout 120 python3 benchmarks/layer.py \
    --shapes "$SHAPES" --tokens 1,16 --methods bf16,jaxint8 --reps 5 --out "$OUT/ab-pdl-$setting.json" 2>&1 |
    grep -E "^ +[0-9]+->|shape" | cut -c1-75
done
