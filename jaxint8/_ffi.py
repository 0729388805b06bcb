"""Loads the compiled extension and registers its XLA FFI targets with JAX."""

from __future__ import annotations

import jax

# jaxint8/__init__.py has checked that the extension exists (and explains when it does not).
from jaxint8 import _jaxint8_ffi as _ext

CPU_TARGETS = tuple(sorted(_ext.cpu_targets()))
CUDA_TARGETS = tuple(sorted(_ext.cuda_targets()))
BUILT_WITH_CUDA: bool = bool(_ext.built_with_cuda)

for _name, _capsule in _ext.cpu_targets().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")
for _name, _capsule in _ext.cuda_targets().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")
