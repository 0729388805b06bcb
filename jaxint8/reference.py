"""Pure-``jax.numpy`` reference of every jaxint8 op: the oracle the kernels are tested against.

Everything here follows the LLM.int8() definition (Dettmers et al. 2022; docs/design.md) literally,
with masks instead of index lists, and is jit/vmap/grad-compatible. It is slow (every step is a
separate pass over memory) and is not what :func:`jaxint8.llm_int8_matmul` runs; use it to check
results or to run the paper's ablations.

The numeric rules shared with the C++/CUDA handlers (``xla_ffi/common.h``):

* ``absmax`` propagates NaN; a column whose absmax is NaN counts as an outlier. It is exact for
  subnormal inputs (computed on the bit patterns: XLA's CPU float ops flush subnormals to zero).
* quantization is ``round_half_even(x * (127 / scale))`` clamped to ±127, with the IEEE quotient
  on every backend; a zero scale gives multiplier 0 (no NaN); a non-finite product quantizes to 0.
* dequantization is ``acc * (row_scale * col_scale * (1 / 16129))``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxint8 import reference as ref
    >>> x = jax.random.normal(jax.random.key(0), (4, 64))
    >>> w = 0.02 * jax.random.normal(jax.random.key(1), (64, 32))
    >>> wq, ws = ref.quantize_weight(w)
    >>> y = ref.llm_int8_matmul(x, wq, ws, threshold=6.0)
    >>> y.shape
    (4, 32)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "quantize_weight",
    "quantize_weight_out_in",
    "dequantize_weight",
    "dequantize_acc",
    "weight_step",
    "column_absmax",
    "outlier_mask",
    "quantize_rows",
    "quantize_inliers",
    "int8_matmul",
    "llm_int8_matmul",
    "absmax_tensorwise_matmul",
    "absmax_vectorwise_matmul",
    "zeropoint_vectorwise_matmul",
    "QUANT_RANGE",
]

QUANT_RANGE = 127.0
_INV_RANGE_SQ = 1.0 / 16129.0


def _float_absmax(x, axis):
    return jnp.max(jnp.abs(x.astype(jnp.float32)), axis=axis, initial=0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _absmax(x, axis):
    # On the integer bit patterns: |x| is x's bits with the sign cleared, and for non-negative
    # floats the integer order is the float order (NaN above +Inf, so NaN propagates as in the
    # kernels' nan_absmax). Exact for subnormals, which XLA's CPU float ops flush to zero: a row
    # of subnormals gets its subnormal absmax, as in the handlers. The derivative is jnp.max's.
    bits = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32) & 0x7FFFFFFF
    return lax.bitcast_convert_type(jnp.max(bits, axis=axis, initial=0), jnp.float32)


@_absmax.defjvp
def _absmax_jvp(axis, primals, tangents):
    _, tangent = jax.jvp(lambda v: _float_absmax(v, axis), primals, tangents)
    return _absmax(primals[0], axis), tangent


def _correctly_rounded_127_over(scale):
    """``127 / scale`` rounded to nearest even, for normal float32 ``scale > 0``, in integer ops.

    XLA:GPU lowers float32 division to ``div.full.f32``, which is off by one ulp in about a fifth
    of quotients (openxla/xla#37181); the multiplier would then move int8 values by one level
    against the kernels, which divide in IEEE. Long division of ``127 · 2^42`` by the 24-bit
    significand ``m`` (7 quotient bits per step, remainders below ``2^31``) gives a 25-26 bit
    quotient and a sticky bit, rounded to 24 bits.
    """
    bits = lax.bitcast_convert_type(scale, jnp.uint32) & jnp.uint32(0x7FFFFFFF)
    m = (bits & jnp.uint32(0x7FFFFF)) | jnp.uint32(0x800000)
    exponent = (bits >> 23).astype(jnp.int32) - 127
    rem, quo = jnp.full_like(m, 127), jnp.zeros_like(m)
    for _ in range(6):
        rem = rem << 7
        digit = rem // m
        rem, quo = rem - digit * m, (quo << 7) | digit
    wide = (quo >> 25).astype(jnp.int32)  # 1: a 26-bit quotient, 0: 25 bits
    shift = (1 + wide).astype(jnp.uint32)
    mant = quo >> shift
    dropped = quo & ((jnp.uint32(1) << shift) - 1)
    half = jnp.uint32(1) << (shift - 1)
    up = (dropped > half) | ((dropped == half) & ((rem != 0) | ((mant & 1) == 1)))
    mant = mant + up.astype(jnp.uint32)  # 2^24 carries into the exponent below
    # 127 / scale = mant · 2^(shift - 42) · 2^(23 - exponent) = (mant / 2^23) · 2^(shift + 4 - exponent)
    biased = (132 + wide - exponent).astype(jnp.uint32)
    out = jnp.minimum((biased << 23) + (mant - jnp.uint32(0x800000)), jnp.uint32(0x7F800000))
    return lax.bitcast_convert_type(out, jnp.float32)


def weight_step(scale):
    """``scale / 127``, the dequantized weight's step per output column: the IEEE quotient on
    every backend, as the handlers divide (XLA turns a division by a constant into a product
    with its reciprocal, one ulp off for about 5 % of scales).

    ``q = s · (1/127)`` is within an ulp; ``r = s − 127 q`` is exact as ``(s − 128 q) + q`` (two
    Sterbenz subtractions), and there are no ties (an odd multiple of 127 has more than 24
    significant bits), so comparing ``r`` with half the gap to each neighbour picks the rounded
    quotient. Magnitudes from 2^126 are scaled by 1/4 first (so that 128 q stays finite); below
    2^-96 (where ``r`` could be subnormal and flushed) XLA's quotient is kept.
    """
    s = scale.astype(jnp.float32)
    a = jnp.abs(s)
    exact = a >= 2.0**-96
    big = a >= 2.0**126
    a = jnp.where(exact, jnp.where(big, a * 0.25, a), 1.0)
    q = a * (1.0 / QUANT_RANGE)
    # 128 q by its exponent bits: XLA folds a product of constant multiplies into one (a · 128/127).
    q128 = lax.bitcast_convert_type(lax.bitcast_convert_type(q, jnp.int32) + (7 << 23), jnp.float32)
    r = (a - q128) + q
    up, down = jnp.nextafter(q, jnp.float32(jnp.inf)), jnp.nextafter(q, jnp.float32(0.0))
    q = jnp.where(r > 63.5 * (up - q), up, jnp.where(r < -63.5 * (q - down), down, q))
    q = jnp.where(big, q * 4.0, q)
    return jnp.where(exact, jnp.copysign(q, s), s / QUANT_RANGE)


def _multiplier(scale):
    """``127 / scale`` (IEEE, on every backend; 0 for a zero scale, as the handlers)."""
    scale = scale.astype(jnp.float32)
    field = lax.bitcast_convert_type(scale, jnp.uint32) >> 23 & jnp.uint32(0xFF)
    normal = (field != 0) & (field != 0xFF)
    # Subnormal (127 / scale overflows: inf), infinite and NaN scales keep the plain division.
    plain = QUANT_RANGE / jnp.where(scale == 0, 1.0, scale)
    return jnp.where(scale == 0, 0.0,
                     jnp.where(normal, _correctly_rounded_127_over(jnp.where(normal, scale, 1.0)), plain))


def _quantize(x, multiplier):
    v = x.astype(jnp.float32) * multiplier
    q = jnp.clip(jnp.round(v), -QUANT_RANGE, QUANT_RANGE)
    return jnp.where(jnp.isfinite(v), q, 0.0).astype(jnp.int8)


def quantize_weight(w):
    """Vector-wise int8 quantization of a float weight ``w [in, out]``.

    Returns ``(qweight, scale)``: ``qweight`` int8 ``[out, in]`` (K-major, the layout the int8 tensor cores
    want) and ``scale`` float32 ``[out]`` with ``scale[j] = max_i |w[i, j]|``. A zero column gets
    scale 0 and zeros.
    """
    return quantize_weight_out_in(jnp.asarray(w).T)


def quantize_weight_out_in(w):
    """:func:`quantize_weight` for a weight already in ``[out, in]`` (torch Linear) layout."""
    w = jnp.asarray(w)
    scale = _absmax(w, axis=1)
    return _quantize(w, _multiplier(scale)[:, None]), scale


def dequantize_acc(acc, row_scale, scale):
    """The int8 GEMM's float32 result: ``acc * (row_scale * scale * (1 / 16129))``, in that order
    (``acc [..., s, o]`` int32, ``row_scale [..., s]``, ``scale [o]``)."""
    return acc.astype(jnp.float32) * ((row_scale[..., :, None] * scale) * _INV_RANGE_SQ)


def dequantize_weight(qweight, scale, dtype=jnp.float32):
    """``W_deq [out, in] = qweight * scale / 127`` (the layout of ``qweight``)."""
    return (qweight.astype(jnp.float32) * weight_step(scale)[:, None]).astype(dtype)


def column_absmax(x):
    """``max_i |x[..., i, c]|`` over the token axis: ``x [..., s, h] -> [..., h]`` float32."""
    return _absmax(x, axis=-2)


def outlier_mask(col_amax, threshold):
    """Boolean ``[..., h]``: columns whose absmax reaches ``threshold`` (NaN counts)."""
    if not threshold or threshold <= 0:
        return jnp.zeros(col_amax.shape, jnp.bool_)
    return ~(col_amax < threshold)


def quantize_rows(x, col_amax, threshold):
    """Row-wise int8 quantization of ``x [..., s, h]`` with the outlier columns split off.

    Returns ``(xq, row_scale, outlier_idx, outlier_count)`` exactly as the FFI target
    ``jaxint8_quantize_rows``: ``xq`` int8 with outlier columns zeroed, ``row_scale`` float32
    ``[..., s]`` over the non-outlier columns, ``outlier_idx`` int32 ``[..., h]`` (ascending, then
    -1), ``outlier_count`` int32 ``[...]``.
    """
    mask = outlier_mask(col_amax, threshold)
    xq, row_scale = quantize_inliers(x, mask)
    h = x.shape[-1]
    count = jnp.sum(mask, axis=-1, dtype=jnp.int32)
    # Stable argsort of "not outlier" puts outlier columns first, in ascending order.
    order = jnp.argsort(~mask, axis=-1, stable=True).astype(jnp.int32)
    pos = jnp.arange(h, dtype=jnp.int32)
    idx = jnp.where(pos < count[..., None], order, -1)
    return xq.astype(jnp.int8), row_scale, idx, count


def quantize_inliers(x, mask):
    """``(xq, row_scale)`` of :func:`quantize_rows` given the outlier column ``mask [..., h]``:
    int8 ``x`` with the masked columns zeroed, float32 row scales over the other columns."""
    kept = jnp.where(mask[..., None, :], 0.0, x.astype(jnp.float32))
    row_scale = _absmax(kept, axis=-1)
    xq = jnp.where(mask[..., None, :], 0, _quantize(kept, _multiplier(row_scale)[..., None]))
    return xq.astype(jnp.int8), row_scale


def _mask_from_idx(idx, count, h):
    valid = jnp.arange(idx.shape[-1]) < count[..., None]
    onehot = (idx[..., :, None] == jnp.arange(h)) & valid[..., None]
    return jnp.any(onehot, axis=-2)


def int8_matmul(xq, row_scale, x, outlier_idx, outlier_count, qweight, scale, bias=None,
                out_dtype=None):
    """The fused GEMM of the FFI target ``jaxint8_int8_matmul`` (steps 3-6 of docs/design.md).

    ``dequant(xq @ qweight^T) + x[:, O] @ W_deq[O, :] (+ bias)``, the outlier part and the sum in
    float32, cast to ``out_dtype`` (default ``x.dtype``). Leading dims are independent problems.
    """
    out_dtype = x.dtype if out_dtype is None else out_dtype
    acc = lax.dot_general(xq, qweight, (((xq.ndim - 1,), (1,)), ((), ())),
                          preferred_element_type=jnp.int32)
    y = dequantize_acc(acc, row_scale, scale)
    mask = _mask_from_idx(outlier_idx, outlier_count, x.shape[-1])
    x_out = jnp.where(mask[..., None, :], x.astype(jnp.float32), 0.0)
    w_deq = dequantize_weight(qweight, scale)
    y = y + jnp.einsum("...sh,oh->...so", x_out, w_deq, precision=lax.Precision.HIGHEST)
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    return y.astype(out_dtype)


def llm_int8_matmul(x, qweight, scale, bias=None, *, threshold=6.0, out_dtype=None):
    """LLM.int8() matmul of ``x [..., s, h]`` with a quantized weight (``qweight [o, h]``, ``scale [o]``).

    ``threshold`` 0 or ``None`` disables the outlier decomposition (vector-wise int8 only).
    """
    col_amax = column_absmax(x)
    xq, row_scale, idx, count = quantize_rows(x, col_amax, threshold or 0.0)
    return int8_matmul(xq, row_scale, x, idx, count, qweight, scale, bias, out_dtype)


# --------------------------------------------------------------------------- paper ablations
# LLM.int8() Table 1 / Figure 3 baselines. Each takes the *float* weight w [in, out] and returns
# the float32 product (they are accuracy references, not fast paths).


def absmax_tensorwise_matmul(x, w):
    """Absmax quantization with one scale for all of ``x`` and one for all of ``w``."""
    x = x.astype(jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    sx, sw = _absmax(x, axis=None), _absmax(w, axis=None)
    xq, wq = _quantize(x, _multiplier(sx)), _quantize(w, _multiplier(sw))
    acc = jnp.matmul(xq, wq, preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32) * (sx * sw * _INV_RANGE_SQ)


def absmax_vectorwise_matmul(x, w):
    """Vector-wise absmax (row scales for ``x``, column scales for ``w``), no decomposition."""
    wq, ws = quantize_weight(w)
    return llm_int8_matmul(x, wq, ws, threshold=0.0, out_dtype=jnp.float32)


def zeropoint_vectorwise_matmul(x, w):
    """Vector-wise zeropoint (asymmetric) quantization, no decomposition.

    Each row of ``x`` and each column of ``w`` is mapped affinely onto the 255 levels
    ``[-128, 127]``: ``q = round(v * nd) + zp`` with ``nd = 255 / (max - min)``. The product
    ``(xq - zpx) @ (wq - zpw)`` is exact in int32 and divided by ``ndx * ndw``.
    """

    def affine(v, axis):
        lo = jnp.min(v, axis=axis, keepdims=True)
        hi = jnp.max(v, axis=axis, keepdims=True)
        rng = hi - lo
        nd = jnp.where(rng > 0, 255.0 / jnp.where(rng > 0, rng, 1.0), 0.0)
        zp = jnp.round(-lo * nd) - 128.0
        q = jnp.clip(jnp.round(v * nd) + zp, -128.0, 127.0)
        return (q - zp).astype(jnp.int32), nd

    x = x.astype(jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    xc, ndx = affine(x, axis=-1)  # [..., s, 1]
    wc, ndw = affine(w, axis=0)  # [1, o]
    acc = jnp.matmul(xc, wc, preferred_element_type=jnp.int32)
    denom = ndx * ndw
    return jnp.where(denom > 0, acc.astype(jnp.float32) / jnp.where(denom > 0, denom, 1.0), 0.0)
