#!/usr/bin/env bash
# Packs bitsandbytes for a GPU machine without network access (the layer benchmark's `bnb`
# method): run from the repo root where pip can download. Fetches the bitsandbytes wheel, keeps
# the Python package and only the CUDA library for CUDA_TAG (the GPU machine's torch build, e.g.
# cu130 -> 130), and writes .whl/bitsandbytes-stripped.tar.xz (~3.5 MB instead of a ~43 MB
# wheel, so it travels with the built extension; .whl/ is ignored by git). benchmarks/gpu_check.sh unpacks it onto
# PYTHONPATH when it is there; torch must already be installed on that machine.
#
#   bash benchmarks/pack_bitsandbytes.sh            # CUDA_TAG=130, the newest bitsandbytes
#   CUDA_TAG=128 BNB_VERSION=0.50.2 bash benchmarks/pack_bitsandbytes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA_TAG=${CUDA_TAG:-130}
SPEC=bitsandbytes${BNB_VERSION:+==$BNB_VERSION}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$work" "$SPEC"
(cd "$work" && python3 -m zipfile -e bitsandbytes-*.whl pkg)
lib="$work/pkg/bitsandbytes/libbitsandbytes_cuda${CUDA_TAG}.so"
if [ ! -f "$lib" ]; then
  echo "no libbitsandbytes_cuda${CUDA_TAG}.so in the wheel; there are:" >&2
  ls "$work/pkg/bitsandbytes/" | grep '^libbitsandbytes_' >&2
  exit 1
fi
find "$work/pkg/bitsandbytes" -maxdepth 1 -name 'libbitsandbytes_*.so' ! -name "$(basename "$lib")" \
  ! -name libbitsandbytes_cpu.so -delete
mkdir -p .whl
tar -C "$work/pkg" -cJf .whl/bitsandbytes-stripped.tar.xz .
echo "wrote .whl/bitsandbytes-stripped.tar.xz ($(du -h .whl/bitsandbytes-stripped.tar.xz | cut -f1)); carry .whl to the GPU machine"
