"""``int8_dense_group``: several int8 layers that read the same input, one quantization."""

from __future__ import annotations

from typing import Sequence

from jaxint8.flax._common import apply_int8_group
from jaxint8.flax.linen import Int8Dense
from jaxint8.flax.nnx import Int8Linear, _get
from jaxint8.weights import Int8Weight

__all__ = ["int8_dense_group"]


def int8_dense_group(layers: Sequence, inputs) -> tuple:
    """Applies int8 layers that read the same ``inputs``: ``tuple(layer(inputs) for layer in layers)``.

    The results are the same bit for bit, but ``inputs`` is quantized once and, for decode-sized
    inputs on a GPU, the GEMMs of all layers are one kernel launch
    (:func:`jaxint8.llm_int8_matmul_group`): attention's q/k/v projections, a gated MLP's
    gate/up projections. The layers are linen :class:`Int8Dense` children of the calling module
    (call this inside its ``@nn.compact`` method) or nnx :class:`Int8Linear` layers; they must
    share ``dtype``, ``param_dtype`` and ``threshold``.

    Example (linen)::

        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> from jaxint8.flax import Int8Dense, int8_dense_group
        >>> class QKV(nn.Module):
        ...     @nn.compact
        ...     def __call__(self, x):
        ...         return int8_dense_group([Int8Dense(32, name=n) for n in "qkv"], x)
        >>> x = jnp.ones((2, 16), jnp.bfloat16)
        >>> params = QKV().init(jax.random.key(0), x)
        >>> [y.shape for y in QKV().apply(params, x)]
        [(2, 32), (2, 32), (2, 32)]
    """
    layers = list(layers)
    if not layers:
        raise ValueError("int8_dense_group: layers is empty")
    first = layers[0]
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Int8Dense, Int8Linear)):
            raise TypeError(f"int8_dense_group: layers[{i}] is a {type(layer).__name__}; only "
                            f"jaxint8.flax.Int8Dense / Int8Linear layers can share a quantization")
        for attr in ("dtype", "param_dtype", "threshold"):
            if getattr(layer, attr) != getattr(first, attr):
                raise ValueError(f"int8_dense_group: layers[{i}].{attr} = {getattr(layer, attr)!r} "
                                 f"differs from layers[0].{attr} = {getattr(first, attr)!r}; grouped "
                                 f"layers must share dtype, param_dtype and threshold")
    weights, biases = [], []
    for layer in layers:
        if isinstance(layer, Int8Dense):
            weight, bias = layer(inputs, return_weight=True)
        else:
            weight = Int8Weight(_get(layer.kernel), _get(layer.scale))
            bias = _get(layer.bias) if layer.bias is not None else None
        weights.append(weight)
        biases.append(bias)
    return apply_int8_group(inputs, weights, biases, dtype=first.dtype,
                            param_dtype=first.param_dtype, threshold=first.threshold)
