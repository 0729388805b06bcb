"""Public ops: :func:`llm_int8_matmul`, :func:`llm_int8_matmul_group` and
:func:`quantize_activations`."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxint8 import partitioning, primitives
from jaxint8.kernel_options import KernelOptions, resolve_kernel_options
from jaxint8.weights import Int8Weight

__all__ = ["llm_int8_matmul", "llm_int8_matmul_group", "quantize_activations", "DEFAULT_THRESHOLD",
           "MAX_IN_FEATURES"]

DEFAULT_THRESHOLD = 6.0

# The int8 GEMM accumulates in int32: k products of magnitude <= 127 * 127 must fit in
# 2^31 - 1, so in_features <= 133144 (a wider input could overflow silently).
MAX_IN_FEATURES = (2**31 - 1) // (127 * 127)


def check_in_features(in_features: int, op: str, name: str = "x") -> None:
    """A clear error when ``in_features`` exceeds :data:`MAX_IN_FEATURES` (int32 accumulator)."""
    if in_features > MAX_IN_FEATURES:
        raise ValueError(
            f"{op}: {name}.shape[-1] = {in_features} exceeds {MAX_IN_FEATURES}, the widest input the "
            f"int32 accumulator of the int8 GEMM holds without overflow (127 * 127 * "
            f"in_features <= 2^31 - 1); split the layer's input: e.g. two weights over "
            f"x[..., :k] and x[..., k:] (quantize_weight(w[:k]), quantize_weight(w[k:])) and sum "
            f"the two llm_int8_matmul outputs")


def check_threshold(threshold, where: str) -> float:
    """``threshold`` as a float (None -> 0.0, no decomposition); a clear error unless it is None or
    a finite Python number >= 0. ``where`` names the caller in the message."""
    if threshold is None:
        return 0.0
    if isinstance(threshold, jax.Array) or not isinstance(threshold, (int, float)):
        raise TypeError(f"{where}: threshold must be a Python number or None (it is static), "
                        f"got {type(threshold).__name__}")
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"{where}: threshold must be a finite number >= 0, got {threshold!r}; "
                         f"use 0 or None to disable the outlier decomposition")
    return float(threshold)


def _check_x(x, op):
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{op}: x must be an array, got {type(x).__name__}")
    if jnp.dtype(x.dtype) not in primitives.FLOAT_DTYPES:
        raise TypeError(f"{op}: x must be float32, bfloat16 or float16, got {x.dtype}; cast it "
                        f"first, e.g. x.astype(jnp.bfloat16)")
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have at least 1 dimension [..., in_features], got a scalar")


def quantize_activations(x, threshold=DEFAULT_THRESHOLD):
    """Dynamic LLM.int8() quantization of ``x [..., s, h]`` (steps 1-2 of docs/design.md).

    Returns ``(xq, row_scale, outlier_idx, outlier_count)``: int8 ``x`` with the outlier columns
    zeroed, float32 row scales over the non-outlier columns, the outlier column indices
    (ascending, padded with -1) and their count. The count is data: any value from 0 to ``h``.

    Example::

        >>> import jax, jax.numpy as jnp, jaxint8
        >>> x = jax.random.normal(jax.random.key(0), (4, 16)).at[:, 3].set(20.0)
        >>> xq, scale, idx, count = jaxint8.quantize_activations(x, threshold=6.0)
        >>> int(count), [int(i) for i in idx[:1]]
        (1, [3])
    """
    op = "quantize_activations"
    _check_x(x, op)
    threshold = check_threshold(threshold, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must have rank >= 2 [..., tokens, features], got {x.shape}")
    return primitives.quantize_activations(x, threshold)


def llm_int8_matmul(x, weight: Int8Weight, bias=None, *, threshold=DEFAULT_THRESHOLD,
                    out_dtype=None, options: KernelOptions | None = None):
    """LLM.int8() matmul: ``x @ W (+ bias)`` with ``W`` stored as vector-wise int8.

    All leading dimensions of ``x [..., in_features]`` are flattened into one token axis: the
    outlier columns (``max |x[:, c]| >= threshold``) are found over all of them, as bitsandbytes
    does. Those columns go through a float32 matmul against the dequantized weight; the rest
    through an int8 GEMM with int32 accumulation, dequantized with the row and column scales.

    Works under ``jax.jit``, ``jax.vmap`` (each mapped element gets its own outlier set) and
    ``jax.grad`` with respect to ``x`` and ``bias`` (``dx = dy @ W_deq^T``); the int8 weight is
    frozen and gets no gradient (zero cotangents), as adapter/LoRA fine-tuning needs.

    ``in_features`` is at most :data:`MAX_IN_FEATURES` = 133144 (``127 * 127 * in_features`` must
    fit the int32 accumulator); a wider ``x`` raises a ``ValueError``: split the layer's input.

    Non-finite inputs propagate as in a float matmul: a NaN or Inf in ``x[i, c]`` makes row ``i``
    of the output non-finite (NaN/Inf) and leaves the other rows untouched (with the
    decomposition on, the column becomes an outlier; with it off, the row scale carries it).

    Args:
      x: float32, bfloat16 or float16 ``[..., in_features]``.
      weight: an :class:`Int8Weight` from :func:`jaxint8.quantize_weight`.
      bias: optional float ``[out_features]``.
      threshold: outlier threshold (default 6.0, the paper's); 0 or None = no decomposition.
      out_dtype: output dtype (default ``x.dtype``).
      options: a :class:`jaxint8.KernelOptions` pinning CUDA kernels (default: the enclosing
        :func:`jaxint8.kernel_options` block's, else automatic). Ignored on CPU.

    Returns:
      ``[..., out_features]`` of ``out_dtype``.

    Example::

        >>> import jax, jax.numpy as jnp, jaxint8
        >>> w = 0.02 * jax.random.normal(jax.random.key(0), (64, 32))
        >>> x = jax.random.normal(jax.random.key(1), (8, 64), jnp.bfloat16)
        >>> y = jax.jit(jaxint8.llm_int8_matmul)(x, jaxint8.quantize_weight(w))
        >>> y.shape, y.dtype
        ((8, 32), dtype(bfloat16))
    """
    op = "llm_int8_matmul"
    _check_x(x, op)
    threshold = check_threshold(threshold, op)
    check_in_features(x.shape[-1], op)
    bias = _check_weight(x, weight, bias, op, "weight", "bias")
    out_dtype = _check_out_dtype(x, out_dtype, op)
    options = resolve_kernel_options(options, op)

    return _grouped(x, (weight,), (bias,), threshold, out_dtype, options)[0]


def _check_weight(x, weight, bias, op, name, bias_name):
    """Validates one weight (and its bias) against ``x``; returns the bias as an array or None."""
    if not isinstance(weight, Int8Weight):
        raise TypeError(f"{op}: {name} must be a jaxint8.Int8Weight (from jaxint8.quantize_weight), "
                        f"got {type(weight).__name__}")
    if weight.qweight.ndim != 2:
        raise ValueError(f"{op}: {name} is a stacked Int8Weight (qweight "
                         f"{list(weight.qweight.shape)}: leading axes {list(weight.stack_shape)} "
                         f"are layers); pass one layer's weight, e.g. "
                         f"jax.tree.map(lambda a: a[i], {name}), or slice it with nn.scan / "
                         f"jax.lax.scan / jax.vmap")
    if x.shape[-1] != weight.in_features:
        raise ValueError(f"{op}: x.shape[-1] = {x.shape[-1]} does not match {name}'s "
                         f"in_features = {weight.in_features} ({name}.qweight is "
                         f"[out_features, in_features] = {list(weight.qweight.shape)})")
    if bias is None:
        return None
    bias = jnp.asarray(bias)
    if bias.shape != (weight.out_features,) or not jnp.issubdtype(bias.dtype, jnp.floating):
        raise ValueError(f"{op}: {bias_name} must be a float array of shape "
                         f"({weight.out_features},), got {bias.dtype}{list(bias.shape)}")
    return bias


def _check_out_dtype(x, out_dtype, op):
    out_dtype = jnp.dtype(x.dtype if out_dtype is None else out_dtype)
    if out_dtype not in primitives.FLOAT_DTYPES:
        raise TypeError(f"{op}: out_dtype must be float32, bfloat16 or float16, got {out_dtype}")
    return out_dtype


def llm_int8_matmul_group(x, weights, biases=None, *, threshold=DEFAULT_THRESHOLD,
                          out_dtype=None, options: KernelOptions | None = None):
    """:func:`llm_int8_matmul` of one ``x`` with several weights: ``x`` is quantized once.

    For projections that read the same activations (attention q/k/v, a gated MLP's gate/up).
    The results equal ``tuple(llm_int8_matmul(x, w, b) for w, b in zip(weights, biases))`` bit
    for bit (the outlier set and row scales depend on ``x`` only); on a GPU the quantization
    runs once and, for decode-sized ``x`` (≤ 16 tokens), the GEMMs of all weights are one kernel
    launch. Gradients, ``vmap`` and sharding work as for :func:`llm_int8_matmul` (grouped weights
    should be sharded alike; otherwise the later ones are resharded to the first one's layout,
    with a warning).

    ``in_features`` is at most :data:`MAX_IN_FEATURES` (as :func:`llm_int8_matmul`).

    Args:
      x: float32, bfloat16 or float16 ``[..., in_features]``.
      weights: a sequence of 1 to 8 :class:`Int8Weight` with ``in_features == x.shape[-1]``.
      biases: None, or a sequence (same length) of float ``[out_features_i]`` arrays or None.
      threshold: outlier threshold (default 6.0); 0 or None = no decomposition.
      out_dtype: output dtype (default ``x.dtype``).
      options: a :class:`jaxint8.KernelOptions` (see :func:`llm_int8_matmul`).

    Returns:
      A tuple of ``[..., out_features_i]`` arrays of ``out_dtype``.

    Example::

        >>> import jax, jax.numpy as jnp, jaxint8
        >>> ws = [jaxint8.quantize_weight(0.02 * jax.random.normal(jax.random.key(i), (64, n)))
        ...       for i, n in enumerate((32, 16, 16))]
        >>> x = jax.random.normal(jax.random.key(9), (8, 64), jnp.bfloat16)
        >>> q, k, v = jax.jit(jaxint8.llm_int8_matmul_group)(x, ws)
        >>> q.shape, k.shape, v.shape
        ((8, 32), (8, 16), (8, 16))
    """
    op = "llm_int8_matmul_group"
    _check_x(x, op)
    threshold = check_threshold(threshold, op)
    check_in_features(x.shape[-1], op)
    weights = tuple(weights)
    if not 1 <= len(weights) <= primitives.MAX_GROUP_WEIGHTS:
        raise ValueError(f"{op}: weights must hold 1 to {primitives.MAX_GROUP_WEIGHTS} "
                         f"Int8Weight, got {len(weights)}")
    biases = (None,) * len(weights) if biases is None else tuple(biases)
    if len(biases) != len(weights):
        raise ValueError(f"{op}: biases must have one entry (an array or None) per weight: "
                         f"{len(weights)} weights, {len(biases)} biases")
    biases = tuple(_check_weight(x, w, b, op, f"weights[{i}]", f"biases[{i}]")
                   for i, (w, b) in enumerate(zip(weights, biases)))
    out_dtype = _check_out_dtype(x, out_dtype, op)
    options = resolve_kernel_options(options, op)

    return _grouped(x, weights, biases, threshold, out_dtype, options)


def _grouped(x, weights, biases, threshold, out_dtype, options):
    """Both public matmuls after validation: leading dims flattened into one token axis."""
    lead = x.shape[:-1]
    x2 = x.reshape((math.prod(lead), x.shape[-1]))
    ys = _matmul_group(x2, tuple(w.qweight for w in weights), tuple(w.scale for w in weights),
                       biases, threshold, out_dtype, options, partitioning.explicit_sharding(x2))
    return tuple(y.reshape(lead + (w.out_features,)) for y, w in zip(ys, weights))


# One or more weights on one x [s, h] (tuples of qweight, scale, bias or None).
# x_sharding: x's type sharding on an explicit-sharding mesh (else None), static so that the
# backward can give dx the primal's sharding type.
@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _matmul_group(x, qweights, scales, biases, threshold, out_dtype, options, x_sharding):
    return partitioning.forward_group(x, tuple(zip(qweights, scales, biases)),
                                      threshold=threshold, out_dtype=out_dtype, options=options)


def _matmul_group_fwd(x, qweights, scales, biases, threshold, out_dtype, options, x_sharding):
    ys = _matmul_group(x, qweights, scales, biases, threshold, out_dtype, options, x_sharding)
    # Residuals must be arrays: a zero-size array carries x's dtype, biases carry their own.
    return ys, (qweights, scales, jnp.zeros((0,), x.dtype), biases)


def _matmul_group_bwd(threshold, out_dtype, options, x_sharding, res, dys):
    del options
    qweights, scales, x_like, biases = res
    # dX = sum_i dY_i @ W_i_deq^T with W_deq [o, h] = qweight * scale / 127: float32
    # accumulation, summed in float32, cast once.
    dx = sum(partitioning.input_grad(dy, q, s, jnp.float32, x_sharding)
             for dy, q, s in zip(dys, qweights, scales)).astype(x_like.dtype)
    dbiases = tuple(None if b is None else jnp.sum(dy.astype(jnp.float32), 0).astype(b.dtype)
                    for dy, b in zip(dys, biases))
    # The int8 weights are frozen: zero cotangents (float0 for the int8 arrays).
    zero_q = tuple(np.zeros(q.shape, jax.dtypes.float0) for q in qweights)
    return dx, zero_q, tuple(jnp.zeros_like(s) for s in scales), dbiases


_matmul_group.defvjp(_matmul_group_fwd, _matmul_group_bwd)
