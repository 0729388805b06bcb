"""Edges: the int32 accumulator's width limit, subnormal activations."""

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
