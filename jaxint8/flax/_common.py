"""What the linen and nnx layers share: dtype rules and the call into the op."""

from __future__ import annotations

import jax.numpy as jnp

from jaxint8.ops import llm_int8_matmul, llm_int8_matmul_group
from jaxint8.weights import Int8Weight


def _compute_dtype(inputs, dtype, param_dtype):
    # Like flax.linen.Dense: with dtype None, the promotion of the input and parameter dtypes.
    return jnp.dtype(dtype) if dtype is not None else jnp.result_type(inputs.dtype, param_dtype)


def apply_int8(inputs, qweight, scale, bias, *, dtype, param_dtype, threshold):
    """``Dense``-compatible dtype handling around :func:`llm_int8_matmul`.

    Like ``flax.linen.Dense``: with ``dtype`` None the computation dtype is the promotion of the
    input dtype and the (float) parameter dtype; the input is cast to it and so is the output.
    """
    inputs = jnp.asarray(inputs)
    compute = _compute_dtype(inputs, dtype, param_dtype)
    return llm_int8_matmul(inputs.astype(compute), Int8Weight(qweight, scale), bias,
                           threshold=threshold, out_dtype=compute)


def apply_int8_group(inputs, weights, biases, *, dtype, param_dtype, threshold):
    """:func:`apply_int8` for several ``Int8Weight`` (and biases) that read ``inputs``."""
    inputs = jnp.asarray(inputs)
    compute = _compute_dtype(inputs, dtype, param_dtype)
    return llm_int8_matmul_group(inputs.astype(compute), weights, biases, threshold=threshold,
                                 out_dtype=compute)
