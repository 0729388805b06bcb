#!/usr/bin/env bash
# A/B of handler settings on the GPU machine (extension already built into jaxint8/):
# benchmarks/layer.py (decode token counts by default) once per setting, same process layout, one
# after the other.
#   AB_KNOB    the variable (default JAXINT8_PDL, the programmatic-dependent-launch chain)
#   AB_VALUES  its values, in order (default "1 0": on, off)
#   AB_SETTINGS  instead of AB_KNOB/AB_VALUES: settings of several variables, space-separated,
#              each a comma-separated VAR=value list, e.g. "A=1,B=4 A=2,B=4"
#   AB_TOKENS  token counts (default 1,16);  AB_SHAPES  hxo list (default the four small shapes)
#   AB_METHODS layer.py methods (default bf16,jaxint8)
# Writes $OUT/ab-<setting>.json (the setting without JAXINT8_ and '=', e.g. ab-PDL0.json).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SHAPES=${AB_SHAPES:-4096x16384,16384x4096,5120x20480,20480x5120}
KNOB=${AB_KNOB:-JAXINT8_PDL}
TOKENS=${AB_TOKENS:-1,16}
SETTINGS=${AB_SETTINGS:-$(for v in ${AB_VALUES:-1 0}; do printf '%s ' "$KNOB=$v"; done)}
# File tag of a setting: "JAXINT8_A=1,JAXINT8_B=4" -> "A1-B4" (plain characters only).
tag() { local t=${1//JAXINT8_/}; t=${t//=/}; echo "${t//,/-}"; }
for setting in $SETTINGS; do
  echo "== $setting"
  env ${setting//,/ } timeout 150 python3 benchmarks/layer.py \
    --shapes "$SHAPES" --tokens "$TOKENS" --methods "${AB_METHODS:-bf16,jaxint8}" --reps 5 \
    --out "$OUT/ab-$(tag "$setting").json" 2>&1 | grep -E "^ +[0-9]+->|shape" | cut -c1-75
done
