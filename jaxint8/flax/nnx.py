"""``Int8Linear``: the ``flax.nnx`` counterpart of :class:`jaxint8.flax.Int8Dense`."""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax.numpy as jnp
from flax import nnx

from jaxint8.flax._common import (TRANSPOSED_HINT, apply_int8, check_inputs,
                                  check_threshold)
from jaxint8.ops import DEFAULT_THRESHOLD
from jaxint8.weights import Int8Weight, quantize_weight

__all__ = ["Int8Linear", "QuantizedArray", "quantize_linear_layers"]


class QuantizedArray(nnx.Variable):
    """Variable type of the frozen int8 kernel and its scales.

    Not an ``nnx.Param``, so ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and
    ``nnx.grad(..., argnums=nnx.DiffState(0, nnx.Param))`` leave it alone.
    """


def _get(v):
    return v[...] if hasattr(v, "__getitem__") else v.value


class Int8Linear(nnx.Module):
    """An LLM.int8() linear layer for ``flax.nnx``; drop-in for ``nnx.Linear``.

    Build it fresh (a random float kernel is drawn with ``kernel_init`` and quantized), from an
    existing layer with :meth:`from_linear`, or from a weight with :meth:`from_weight`.

    ``threshold``: outlier threshold (default 6.0); 0 or None disables the decomposition; a
    negative or non-finite value raises a ``ValueError``. A scalar input or one whose last axis
    is not ``in_features`` raises a ``ValueError`` naming both sizes.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxint8.flax import Int8Linear
        >>> linear = nnx.Linear(16, 32, rngs=nnx.Rngs(0))
        >>> qlinear = Int8Linear.from_linear(linear)
        >>> qlinear(jnp.ones((4, 16))).shape
        (4, 32)

    Stacked layers (``nnx.vmap``-created, for ``nnx.scan``): a ``Linear`` whose kernel is
    ``[layers, in, out]`` becomes an ``Int8Linear`` with ``kernel [layers, out, in]`` and
    ``scale [layers, out]``; ``nnx.scan`` over it hands each step one layer (docs/workflows.md).
    """

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
                 dtype: Optional[Any] = None, param_dtype: Any = jnp.float32,
                 threshold: Optional[float] = DEFAULT_THRESHOLD,
                 kernel_init: Callable = nnx.initializers.lecun_normal(),
                 bias_init: Callable = nnx.initializers.zeros_init(),
                 rngs: Optional[nnx.Rngs] = None,
                 weight: Optional[Int8Weight] = None, bias=None):
        check_threshold(threshold, f"Int8Linear(threshold={threshold!r})")
        if weight is None:
            if rngs is None:
                raise ValueError("Int8Linear: pass rngs= to initialise a new layer, or build it "
                                 "with Int8Linear.from_linear / Int8Linear.from_weight")
            weight = quantize_weight(
                kernel_init(rngs.params(), (in_features, out_features), param_dtype))
            bias = bias_init(rngs.params(), (out_features,), param_dtype) if use_bias else None
        elif tuple(weight.qweight.shape[-2:]) != (out_features, in_features):
            swapped = (tuple(weight.qweight.shape[-2:]) == (in_features, out_features)
                       and in_features != out_features)
            hint = f": the in/out axes are swapped; {TRANSPOSED_HINT}" if swapped else ""
            raise ValueError(f"Int8Linear: weight.qweight must be [out_features, in_features] = "
                             f"[{out_features}, {in_features}], got "
                             f"{list(weight.qweight.shape)}{hint}")
        self.in_features, self.out_features = in_features, out_features
        self.kernel = QuantizedArray(weight.qweight)
        self.scale = QuantizedArray(weight.scale)
        self.bias = nnx.Param(bias) if bias is not None else None
        self.dtype, self.param_dtype, self.threshold = dtype, param_dtype, threshold

    @classmethod
    def from_weight(cls, weight: Int8Weight, bias=None, *, dtype=None, param_dtype=jnp.float32,
                    threshold: Optional[float] = DEFAULT_THRESHOLD) -> "Int8Linear":
        """Wraps an existing :class:`jaxint8.Int8Weight` (and optional float bias)."""
        return cls(weight.in_features, weight.out_features, dtype=dtype, param_dtype=param_dtype,
                   threshold=threshold, weight=weight, bias=bias)

    @classmethod
    def from_linear(cls, linear: nnx.Linear, *,
                    threshold: Optional[float] = DEFAULT_THRESHOLD) -> "Int8Linear":
        """Quantizes a trained ``nnx.Linear`` (its kernel is ``[in, out]``, or
        ``[layers, in, out]`` for stacked layers)."""
        if not isinstance(linear, nnx.Linear):
            raise TypeError(f"Int8Linear.from_linear: expected an nnx.Linear, "
                            f"got {type(linear).__name__}")
        bias = _get(linear.bias) if linear.bias is not None else None
        return cls.from_weight(quantize_weight(_get(linear.kernel)), bias, dtype=linear.dtype,
                               param_dtype=linear.param_dtype, threshold=threshold)

    def __call__(self, inputs):
        check_inputs(inputs, self.in_features, "Int8Linear", self.out_features)
        bias = _get(self.bias) if self.bias is not None else None
        return apply_int8(inputs, _get(self.kernel), _get(self.scale), bias, dtype=self.dtype,
                          param_dtype=self.param_dtype, threshold=self.threshold)


def quantize_linear_layers(module: nnx.Module, *, threshold: Optional[float] = DEFAULT_THRESHOLD,
                           exclude=()) -> nnx.Module:
    """Replaces, in place, every ``nnx.Linear`` inside ``module`` by an :class:`Int8Linear`.

    ``exclude``: attribute names (e.g. ``("lm_head",)``) whose layers stay float. Returns the
    module for chaining.
    """
    exclude = set(exclude)

    def visit(obj):
        items = (enumerate(obj) if isinstance(obj, list)
                 else list(obj.items()) if isinstance(obj, dict) else list(vars(obj).items()))
        for name, child in items:
            if name in exclude:
                continue
            if isinstance(child, nnx.Linear):
                q = Int8Linear.from_linear(child, threshold=threshold)
                if isinstance(obj, (list, dict)):
                    obj[name] = q
                else:
                    setattr(obj, name, q)
            elif isinstance(child, (nnx.Module, list, dict)):
                visit(child)

    visit(module)
    return module
