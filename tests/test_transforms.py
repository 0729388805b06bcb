"""jit / vmap / grad behaviour of the primitives and of llm_int8_matmul."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import jaxint8
from jaxint8 import primitives, reference as ref
from data import activations, rng, weight


def test_outlier_count_is_data_under_jit():
    # One compiled function, many outlier counts (0, 1, several, all): no recompile, all right.
    r = rng()
    h, o = 24, 16
    wq = jaxint8.quantize_weight(weight(r, h, o))
    # A fresh callable: jax.jit(fn) shares its compile cache with every other jit of fn.
    f = jax.jit(lambda x, w: jaxint8.llm_int8_matmul(x, w))
    for n in (0, 1, 5, h):
        x = activations(r, (6, h), outlier_cols=r.choice(h, n, replace=False))
        _, _, _, count = jaxint8.quantize_activations(x)
        assert int(count) >= n
        want = ref.llm_int8_matmul(x, wq.qweight, wq.scale)
        np.testing.assert_allclose(f(x, wq), want, rtol=1e-6,
                                   atol=1e-6 * float(jnp.max(jnp.abs(want))))
    assert f._cache_size() == 1


def test_vmap_gives_each_element_its_own_outlier_set():
    r = rng()
    h, o = 32, 20
    wq = jaxint8.quantize_weight(weight(r, h, o))
    xs = jnp.stack([activations(r, (5, h), outlier_cols=cols) for cols in ([], [3], [7, 30])])
    batched = jax.vmap(jaxint8.llm_int8_matmul, in_axes=(0, None))(xs, wq)
    for b in range(xs.shape[0]):
        np.testing.assert_array_equal(np.asarray(batched[b]),
                                      np.asarray(jaxint8.llm_int8_matmul(xs[b], wq)))
    counts = jax.vmap(lambda x: jaxint8.quantize_activations(x)[3])(xs)
    assert list(np.asarray(counts)) == [0, 1, 2]


def test_vmap_over_a_non_leading_axis_and_nested():
    r = rng()
    wq = jaxint8.quantize_weight(weight(r, 16, 8))
    xs = activations(r, (4, 3, 2, 16), outlier_cols=[5])  # vmap over axis 1, then axis 0
    f = jax.vmap(jax.vmap(jaxint8.llm_int8_matmul, in_axes=(1, None)), in_axes=(0, None))
    got = f(xs, wq)
    for i in range(4):
        for j in range(2):
            np.testing.assert_array_equal(np.asarray(got[i, j]),
                                          np.asarray(jaxint8.llm_int8_matmul(xs[i, :, j], wq)))


def test_vmap_over_weights_loops_over_them():
    r = rng()
    x = activations(r, (4, 12), outlier_cols=[2])
    ws = [jaxint8.quantize_weight(weight(r, 12, 6)) for _ in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *ws)
    got = jax.vmap(jaxint8.llm_int8_matmul, in_axes=(None, 0))(x, stacked)
    for k, w in enumerate(ws):
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(jaxint8.llm_int8_matmul(x, w)))


def test_vmap_of_primitives_matches_reference():
    r = rng()
    xs = activations(r, (3, 7, 20), outlier_cols=[4, 9])
    got = jax.vmap(lambda x: primitives.quantize_activations(x, 6.0))(xs)
    want = ref.quantize_rows(xs, ref.column_absmax(xs), 6.0)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_grad_wrt_x_and_bias(dtype):
    r = rng()
    h, o = 40, 24
    w = weight(r, h, o)
    wq = jaxint8.quantize_weight(w)
    x = activations(r, (2, 5, h), outlier_cols=[3], dtype=dtype)
    bias = jnp.asarray(r.standard_normal(o), jnp.float32)
    g = jnp.asarray(r.standard_normal((2, 5, o)), jnp.float32)

    def loss(x, bias):
        return jnp.sum(jaxint8.llm_int8_matmul(x, wq, bias).astype(jnp.float32) * g)

    dx, dbias = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, bias)
    assert dx.dtype == dtype and dx.shape == x.shape and dbias.shape == bias.shape
    gd = g.astype(dtype).astype(jnp.float32)
    w_deq = np.asarray(wq.dequantize(), np.float64)  # [h, o]
    np.testing.assert_allclose(np.asarray(dx, np.float64), np.asarray(gd) @ w_deq.T,
                               rtol=2e-2 if dtype == jnp.bfloat16 else 1e-5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(dbias), np.asarray(gd).sum((0, 1)), rtol=1e-5, atol=1e-4)


def test_weight_gets_no_gradient():
    r = rng()
    wq = jaxint8.quantize_weight(weight(r, 8, 4))
    x = activations(r, (3, 8))
    dscale = jax.grad(lambda s: jnp.sum(jaxint8.llm_int8_matmul(
        x, jaxint8.Int8Weight(wq.qweight, s))))(wq.scale)
    np.testing.assert_array_equal(np.asarray(dscale), 0.0)


def test_grad_under_vmap_and_jit():
    r = rng()
    wq = jaxint8.quantize_weight(weight(r, 16, 8))
    xs = activations(r, (3, 4, 16), outlier_cols=[1])
    f = jax.jit(jax.vmap(jax.grad(lambda x: jnp.sum(jaxint8.llm_int8_matmul(x, wq) ** 2))))
    got = f(xs)
    for b in range(3):
        one = jax.grad(lambda x: jnp.sum(jaxint8.llm_int8_matmul(x, wq) ** 2))(xs[b])
        np.testing.assert_allclose(np.asarray(got[b]), np.asarray(one), rtol=1e-5, atol=1e-6)


def test_eager_primitive_calls():
    r = rng()
    x = activations(r, (3, 10), outlier_cols=[2])
    np.testing.assert_array_equal(np.asarray(primitives.column_absmax(x)),
                                  np.asarray(ref.column_absmax(x)))
