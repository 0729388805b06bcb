"""jaxint8: LLM.int8() (Dettmers et al. 2022) for JAX.

Vector-wise int8 weights with dynamic mixed-precision decomposition of outlier activation
features, run as XLA FFI custom calls (C++ on CPU, CUDA kernels on NVIDIA GPUs).

Example::

    >>> import jax, jax.numpy as jnp, jaxint8
    >>> w = 0.02 * jax.random.normal(jax.random.key(0), (512, 1024))   # [in, out]
    >>> wq = jaxint8.quantize_weight(w)                                # int8 [out, in] + scales
    >>> x = jax.random.normal(jax.random.key(1), (4, 512), jnp.bfloat16)
    >>> y = jaxint8.llm_int8_matmul(x, wq, threshold=6.0)
    >>> y.shape
    (4, 1024)

Flax layers live in :mod:`jaxint8.flax` (linen ``Int8Dense``, nnx ``Int8Linear``, converters);
:mod:`jaxint8.export` exports jitted functions that call these ops with ``jax.export``.
"""

import importlib.util as _importlib_util


def _missing_extension() -> ImportError:
    """The error for a ``jaxint8`` without its compiled extension (one line: ``python -m`` prints
    only the message of an ``ImportError`` named after the package)."""
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        pkg = os.path.join(os.path.abspath(entry or os.curdir), "jaxint8")
        if pkg != here and os.path.isdir(pkg) and any(
                f.startswith("_jaxint8_ffi") for f in os.listdir(pkg)):
            return ImportError(
                f"jaxint8 was imported from the source checkout {here}, which has no compiled "
                f"extension and shadows the installed package {pkg} (the current directory comes "
                f"first on sys.path); run `jaxint8-demo` / `jaxint8-models`, or `python -P -m ...`, "
                f"or run from another directory", name=__name__)
    return ImportError(
        f"jaxint8's compiled extension (_jaxint8_ffi) is missing from {here}: install the package "
        f"with `pip install .` (for development: `pip install --no-build-isolation -e .`)",
        name=__name__)


if _importlib_util.find_spec("jaxint8._jaxint8_ffi") is None:
    raise _missing_extension()

__version__ = "0.1.0"  # before the imports: jaxint8.export records it

from jaxint8 import reference  # noqa: E402
from jaxint8._ffi import BUILT_WITH_CUDA  # noqa: E402
from jaxint8.kernel_options import KernelOptions, kernel_options  # noqa: E402
from jaxint8.ops import (DEFAULT_THRESHOLD, MAX_IN_FEATURES, llm_int8_matmul,  # noqa: E402
                         llm_int8_matmul_group, quantize_activations)
from jaxint8.weights import Int8Weight, quantize_weight  # noqa: E402
from jaxint8 import export  # noqa: E402
from jaxint8.export import FFI_TARGETS  # noqa: E402

__all__ = [
    "BUILT_WITH_CUDA",
    "DEFAULT_THRESHOLD",
    "FFI_TARGETS",
    "Int8Weight",
    "MAX_IN_FEATURES",
    "export",
    "KernelOptions",
    "kernel_options",
    "llm_int8_matmul",
    "llm_int8_matmul_group",
    "quantize_activations",
    "quantize_weight",
    "reference",
    "__version__",
]
