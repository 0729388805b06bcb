"""Flax layers for LLM.int8(): linen :class:`Int8Dense`, nnx :class:`Int8Linear`, converters,
and :func:`int8_dense_group` (several layers on one quantized input).

Example (linen)::

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxint8.flax import Int8Dense, quantize_dense_params
    >>> x = jnp.ones((2, 64))
    >>> dense = nn.Dense(128)
    >>> params = dense.init(jax.random.key(0), x)["params"]
    >>> qparams = quantize_dense_params(params)          # {'kernel': int8 [128, 64], 'scale', 'bias'}
    >>> y = Int8Dense(128).apply({"params": qparams}, x)
    >>> y.shape
    (2, 128)
"""

from jaxint8.flax.convert import float32_int8_biases, quantize_dense_params, trainable_mask
from jaxint8.flax.group import int8_dense_group
from jaxint8.flax.linen import Int8Dense
from jaxint8.flax.nnx import Int8Linear, QuantizedArray, quantize_linear_layers
from jaxint8.flax.train import freeze_int8

__all__ = [
    "Int8Dense",
    "Int8Linear",
    "QuantizedArray",
    "float32_int8_biases",
    "freeze_int8",
    "int8_dense_group",
    "quantize_dense_params",
    "quantize_linear_layers",
    "trainable_mask",
]
