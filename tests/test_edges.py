"""Edges: the int32 accumulator's width limit, subnormal activations, the rounding of the
quantization multiplier (127 / scale) and of the weight step (scale / 127)."""

import flax.linen as nn  # noqa: F401
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxint8
from jaxint8.flax import Int8Dense, Int8Linear

K = jaxint8.MAX_IN_FEATURES


def test_limit_value():
    assert K == 133144   # 2147483647 // 16129
    assert 127 * 127 * K <= 2**31 - 1 < 127 * 127 * (K + 1)


def test_widest_input_is_exact():
    # All products at their maximum 127 * 127: the accumulator reaches 127² K without overflow.
    wq = jaxint8.quantize_weight(jnp.ones((K, 2)))
    y = jaxint8.llm_int8_matmul(jnp.ones((1, K)), wq, threshold=0.0)
    np.testing.assert_array_equal(y, np.full((1, 2), float(K), np.float32))


def test_wider_input_is_rejected():
    wq = jaxint8.quantize_weight(jnp.ones((K + 1, 2)))
    x = jnp.ones((1, K + 1))
    with pytest.raises(ValueError, match=r"llm_int8_matmul: x.shape\[-1\] = 133145 exceeds "
                                         r"133144.*split the layer's input"):
        jaxint8.llm_int8_matmul(x, wq)
    with pytest.raises(ValueError, match=r"llm_int8_matmul_group: x.shape\[-1\] = 133145"):
        jaxint8.llm_int8_matmul_group(x, [wq, wq])
    with pytest.raises(ValueError, match=r"Int8Dense.*inputs.shape\[-1\] = 133145 exceeds"):
        Int8Dense(2).init(jax.random.key(0), x)
    layer = Int8Linear.from_weight(wq)
    with pytest.raises(ValueError, match=r"Int8Linear: inputs.shape\[-1\] = 133145 exceeds"):
        layer(x)


def test_split_input_recipe():
    # The fix the error names: two weights over the two halves of the input, outputs summed.
    k = 64
    w = 0.1 * jax.random.normal(jax.random.key(0), (k, 8))
    x = jax.random.normal(jax.random.key(1), (3, k))
    h = k // 2
    y = (jaxint8.llm_int8_matmul(x[:, :h], jaxint8.quantize_weight(w[:h]))
         + jaxint8.llm_int8_matmul(x[:, h:], jaxint8.quantize_weight(w[h:])))
    np.testing.assert_allclose(y, x @ w, atol=0.05)


# --------------------------------------------------------------------------- subnormals
# XLA's CPU runtime runs with FTZ/DAZ set; the quantization handlers clear them (IEEE
# subnormals, as the CUDA kernels), and the reference computes absmax on bit patterns.

def _subnormal_x(dtype):
    x = np.zeros((4, 8), np.float32)
    x[0] = np.float32(1e-40) * np.arange(1, 9, dtype=np.float32)    # all subnormal
    x[1] = np.linspace(-1, 1, 8, dtype=np.float32)
    x[2, :3] = np.float32(-3e-39)                                  # subnormal and zeros
    x[3] = np.float32(2e-38) * np.array([1, -1, 0.5, 0.25, 1, 1, 1, 1], np.float32)  # tiny normal
    return jnp.asarray(x, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_subnormal_rows_keep_their_scale(dtype, threshold):
    from jaxint8 import primitives, reference

    x = _subnormal_x(dtype)
    x32 = np.asarray(x.astype(jnp.float32)).view(np.uint32) & 0x7FFFFFFF
    want_rows = (x32.max(1)).view(np.float32)      # numpy absmax on the bits: no flushing
    want_cols = (x32.max(0)).view(np.float32)
    assert want_rows[0] > 0 and want_rows[0] < np.finfo(np.float32).tiny
    xq, row_scale, idx, count = jaxint8.quantize_activations(x, threshold)
    np.testing.assert_array_equal(row_scale, want_rows)
    np.testing.assert_array_equal(primitives.column_absmax(x), want_cols)
    # 127 / scale overflows for these rows: the rows quantize to zeros.
    np.testing.assert_array_equal(np.asarray(xq)[[0, 2, 3]], 0)
    # The reference, under XLA CPU, agrees bit for bit.
    ref = reference.quantize_rows(x, reference.column_absmax(x), threshold)
    for got, want in zip((xq, row_scale, idx, count), ref):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reference.column_absmax(x), want_cols)
    # The matmul: those rows are exactly the bias, the others unchanged.
    wq = jaxint8.quantize_weight(0.1 * jax.random.normal(jax.random.key(0), (8, 4)))
    bias = jnp.arange(4, dtype=jnp.float32)
    y = jaxint8.llm_int8_matmul(x, wq, bias, threshold=threshold, out_dtype=jnp.float32)
    np.testing.assert_array_equal(np.asarray(y)[[0, 2, 3]], np.broadcast_to(bias, (3, 4)))
    y_ref = reference.llm_int8_matmul(x, wq.qweight, wq.scale, bias, threshold=threshold,
                                      out_dtype=jnp.float32)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)


def test_subnormal_weight_column_scale():
    w = np.zeros((4, 3), np.float32)
    w[:, 0] = np.float32(5e-40)
    w[:, 1] = 1.0
    wq = jaxint8.quantize_weight(jnp.asarray(w))
    np.testing.assert_array_equal(wq.scale, np.array([5e-40, 1.0, 0.0], np.float32))
    np.testing.assert_array_equal(np.asarray(wq.qweight)[0], 0)


def _every_significand(exponent):
    """All 2^23 positive float32 values with the given unbiased exponent."""
    return (np.arange(1 << 23, dtype=np.uint32) | np.uint32((exponent + 127) << 23)).view(np.float32)


@pytest.mark.parametrize("exponent", [-126, -120, -3, 0, 7, 100, 127])
def test_quantization_multiplier_is_ieee_division(exponent):
    """127 / scale in the reference (and the XLA route) is the correctly rounded quotient on every
    backend, as in the kernels: XLA:GPU's own float32 division is not (openxla/xla#37181), and a
    one-ulp multiplier moves int8 values by a level. Every significand at a few exponents
    (including quotients that overflow to inf), against numpy's IEEE division."""
    from jaxint8 import reference

    scale = _every_significand(exponent)
    with np.errstate(over="ignore"):
        want = np.float32(127.0) / scale
    for fn in (reference._correctly_rounded_127_over, reference._multiplier):
        got = np.asarray(jax.jit(fn)(jnp.asarray(scale)))
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=fn.__name__)


@pytest.mark.parametrize("exponent", [-96, -20, 0, 7, 100, 126, 127])
def test_weight_step_is_ieee_division(exponent):
    """scale / 127 (the dequantized weight's step) is the IEEE quotient, as the handlers divide:
    XLA would multiply by the reciprocal instead. Every significand, both signs."""
    from jaxint8 import reference

    scale = np.concatenate([_every_significand(exponent), -_every_significand(exponent)])
    got = np.asarray(jax.jit(reference.weight_step)(jnp.asarray(scale)))
    np.testing.assert_array_equal(got.view(np.uint32), (scale / np.float32(127.0)).view(np.uint32))
