"""LLM.int8() on XLA's own int8 dot (``KernelOptions(route="xla")``).

What the fused matmul primitives lower to instead of their custom call where :func:`route_of`
says so (``jaxint8.primitives``): the whole matmul in ``jax.numpy``, which XLA fuses and
schedules. Quantization as in :mod:`jaxint8.reference` (the kernels' int8 values and row scales),
one ``lax.dot_general`` int8 × int8 → int32 per weight, and the float epilogue. The outlier
columns enter the *same* int8 dot: their values are split into ``D`` signed 7-bit digits with a
power-of-two step per row,

    x[i, c] = Σ_t d_t[i, c] · 2^(e_i − 7t) + r[i, c],   d_t ∈ [−127, 127],

and the digit planes ``d_t [s, h]`` (zero outside the outlier columns) are stacked under ``xq``
as ``D · s`` extra rows. The int32 accumulator of digit plane ``t`` is the exact sum
``Σ_c d_t[i, c] · qweight[j, c]``; the epilogue scales it by ``2^(e_i − 7t)`` (exact) and the sum
over ``t`` by ``scale[j] / 127``. So any number of outlier columns, 0 to ``h``, costs the same:
``(D + 1) · s`` rows through a dot that, at decode sizes, is bound by reading the weight once.
With thousands of tokens the extra rows cost ``D`` times the int8 compute: this route is for
decode.

``e_i`` makes the row's largest outlier value fit the first digit (``|d_0| ≤ 127``), so
``|r| < 2^(e_i − 7D + 7) ≤ 2^(1 − 7D) · max_c |x[i, O]|``. ``D`` = 3 for bfloat16 and float16
inputs and 4 for float32: a value is exact when it is at least ``2^(p − 7D)`` times its row's
largest outlier value (``p`` its significant bits: 8, 11, 24), i.e. within a factor 2^13
(bfloat16), 2^10 (float16) or 2^4 (float32). Against the CPU handler's outlier term
``Σ_c x · W_deq`` the result differs by the float32 rounding of the epilogue plus
``2^(1 − 7D) · max_c |x[i, O]| · Σ_c |W_deq[c, j]|`` (docs/design.md). A row with a non-finite
outlier value gives a NaN row, as a float matmul would give NaN or Inf there.

Example::

    >>> import jax, jax.numpy as jnp, jaxint8
    >>> wq = jaxint8.quantize_weight(0.02 * jax.random.normal(jax.random.key(0), (64, 32)))
    >>> x = jax.random.normal(jax.random.key(1), (2, 64), jnp.bfloat16).at[:, :20].mul(30.0)
    >>> y = jaxint8.llm_int8_matmul(x, wq, options=jaxint8.KernelOptions(route="xla"))
    >>> y.shape
    (2, 32)
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxint8 import reference

__all__ = ["route_of", "by_count", "forward_group", "digit_count", "outlier_digits",
           "KERNEL_MAX_OUTLIERS"]

_DIGIT_BITS = 7
_MIN_NORMAL_EXP = -126  # float32: the smallest digit step stays a normal number


# Up to this many outlier columns the kernels' epilogues sum them cheaply (kOrderedOutliers in
# xla_ffi/cuda/launch.h); route="by_count" takes this route above it.
KERNEL_MAX_OUTLIERS = 8


def route_of(options, x_shape, platform: str) -> str:
    """How the fused matmul primitives lower a call on ``x_shape`` for ``platform``: ``"kernels"``
    (the custom call), ``"xla"`` (this module) or ``"by_count"`` (:func:`by_count`).

    ``options.route`` decides; ``"auto"`` keeps the kernels.
    """
    del x_shape, platform
    return "kernels" if options.route == "auto" else options.route


def by_count(x, kernels, xla, threshold):
    """``kernels(x)`` when every problem of ``x [..., s, h]`` has at most
    :data:`KERNEL_MAX_OUTLIERS` outlier columns, else ``xla(x)``: a ``lax.cond`` on a count
    computed on the device (no host sync, no recompilation)."""
    mask = reference.outlier_mask(reference.column_absmax(x), threshold)
    few = jnp.all(jnp.sum(mask, axis=-1) <= KERNEL_MAX_OUTLIERS)
    return lax.cond(few, kernels, xla, x)


def digit_count(dtype) -> int:
    """Digit planes per outlier value: 3 for bfloat16/float16 inputs, 4 for float32."""
    return 4 if jnp.dtype(dtype) == jnp.float32 else 3


def outlier_digits(x, mask, digits):
    """``(planes int8 [digits, s, h], exponent int32 [s], finite bool [s])`` of ``x [s, h]``'s
    outlier columns (``mask [h]``): ``x[i, c] ≈ Σ_t planes[t, i, c] · 2^(exponent[i] − 7t)``.

    Every division is by a power of two and every residual a difference of representable
    values, so the digits are exact; only what lies below the last step is dropped.
    """
    xo = jnp.where(mask[None, :], x.astype(jnp.float32), 0.0)
    finite = jnp.all(jnp.isfinite(xo), axis=-1)
    xo = jnp.where(finite[:, None], xo, 0.0)
    amax = jnp.max(jnp.abs(xo), axis=-1)
    # amax < 2^E with E its biased exponent field - 126, so |x| / 2^(E - 7) < 128 and a
    # truncated first digit is at most 127 (subnormal rows land on the clamp below).
    exp = lax.shift_right_logical(lax.bitcast_convert_type(amax, jnp.int32), 23) - 126
    exponent = jnp.maximum(exp - _DIGIT_BITS, _MIN_NORMAL_EXP + _DIGIT_BITS * (digits - 1))
    planes, rest = [], xo
    for t in range(digits):
        shift = (_DIGIT_BITS * t - exponent)[:, None]
        d = jnp.trunc(rest * pow2(shift))
        rest = rest - d * pow2(-shift)
        planes.append(d.astype(jnp.int8))
    return jnp.stack(planes), exponent, finite


def pow2(n):
    """``2.0 ** n`` in float32 for integer ``n`` in [-126, 127], built from its bits (exact)."""
    return lax.bitcast_convert_type(lax.shift_left(n + 127, 23), jnp.float32)


def _int8_dot(a, qweight):
    return lax.dot_general(a, qweight, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)


def forward_group(x, weights, *, threshold, out_dtype):
    """LLM.int8() of ``x [s, h]`` with each ``(qweight [o, h], scale [o], bias or None)``.

    Returns a tuple of ``[s, o]`` arrays of ``out_dtype``: the int8 part from the kernels' ``xq``,
    row scales and exact int32 sums, dequantized in the same order (XLA may fuse a multiply and
    the following add into one FMA: within an ulp), the outlier part within the bound of the
    module doc.
    """
    s, h = x.shape
    mask = reference.outlier_mask(reference.column_absmax(x), threshold)
    xq, row_scale = reference.quantize_inliers(x, mask)
    if threshold:
        digits = digit_count(x.dtype)
        planes, exponent, finite = outlier_digits(x, mask, digits)
        rows = jnp.concatenate([xq, planes.reshape(digits * s, h)], axis=0)
        steps = pow2(exponent[None, :] - _DIGIT_BITS * jnp.arange(digits)[:, None])  # [D, s]
    else:
        digits, rows = 0, xq
    outs = []
    for qweight, scale, bias in weights:
        acc = _int8_dot(rows, qweight)
        y = reference.dequantize_acc(acc[:s], row_scale, scale)
        if digits:
            part = acc[s:].reshape(digits, s, -1).astype(jnp.float32)
            outlier = part[0] * steps[0][:, None]  # largest digit first, one product per term
            for t in range(1, digits):
                outlier = outlier + part[t] * steps[t][:, None]
            outlier = outlier * reference.weight_step(scale)
            y = y + jnp.where(finite[:, None], outlier, jnp.nan)
        if bias is not None:
            y = y + bias.astype(jnp.float32)
        outs.append(y.astype(out_dtype))
    return tuple(outs)
