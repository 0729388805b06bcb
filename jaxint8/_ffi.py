"""Loads the compiled extension and registers its XLA FFI targets with JAX."""

from __future__ import annotations

import jax

try:
    from jaxint8 import _jaxint8_ffi as _ext
except ImportError as err:  # pragma: no cover - only without a build
    raise ImportError(
        "jaxint8's compiled extension (_jaxint8_ffi) is missing. Install the package with "
        "`pip install .` from the repository root (an in-place checkout on sys.path shadows the "
        "installed package: run from another directory or use `pytest`, not `python -m pytest`)."
    ) from err

CPU_TARGETS = tuple(sorted(_ext.cpu_targets()))
CUDA_TARGETS = tuple(sorted(_ext.cuda_targets()))
BUILT_WITH_CUDA: bool = bool(_ext.built_with_cuda)

for _name, _capsule in _ext.cpu_targets().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")
for _name, _capsule in _ext.cuda_targets().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")
