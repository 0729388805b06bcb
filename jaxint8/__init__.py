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

Flax layers live in :mod:`jaxint8.flax` (linen ``Int8Dense``, nnx ``Int8Linear``, converters).
"""

from jaxint8 import reference
from jaxint8._ffi import BUILT_WITH_CUDA
from jaxint8.kernel_options import KernelOptions, kernel_options
from jaxint8.ops import (DEFAULT_THRESHOLD, llm_int8_matmul, llm_int8_matmul_group,
                         quantize_activations)
from jaxint8.weights import Int8Weight, quantize_weight

__version__ = "0.1.0"

__all__ = [
    "BUILT_WITH_CUDA",
    "DEFAULT_THRESHOLD",
    "Int8Weight",
    "KernelOptions",
    "kernel_options",
    "llm_int8_matmul",
    "llm_int8_matmul_group",
    "quantize_activations",
    "quantize_weight",
    "reference",
    "__version__",
]
