"""The fused primitive (one custom call) == the three-primitive chain, bit for bit, on the CPU.

``jaxint8.llm_int8_matmul`` runs the fused primitive on one device; the three primitives stay
in use where collectives sit between the steps (sharding), so both must agree exactly.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import jaxint8
from jaxint8 import primitives
from data import DTYPES, activations, rng, weight


def _chain(x, qweight, scale, bias, threshold, out_dtype):
    xq, rs, idx, count = primitives.quantize_activations(x, threshold)
    return primitives.int8_matmul(xq, rs, x, idx, count, qweight, scale, bias, out_dtype=out_dtype)


def _fused(x, qweight, scale, bias, threshold, out_dtype):
    return primitives.llm_int8_matmul(x, qweight, scale, bias, threshold=threshold,
                                      out_dtype=out_dtype)


def _problem(r, lead, s, h, o, n_outliers, dtype, with_bias=True):
    n = h if n_outliers == "all" else min(n_outliers, h)
    x = activations(r, lead + (s, h), outlier_cols=r.choice(h, n, replace=False),
                    zero_rows=[0] if s > 2 else [], dtype=dtype)
    wq = jaxint8.quantize_weight(weight(r, h, o))
    bias = jnp.asarray(r.standard_normal(o), jnp.float32) if with_bias else None
    return x, wq.qweight, wq.scale, bias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,s,h,o", [((), 1, 5, 3), ((), 17, 33, 20), ((2,), 8, 100, 24),
                                        ((2, 3), 3, 16, 8), ((), 0, 16, 8)])
@pytest.mark.parametrize("n_outliers", [0, 1, 4, "all"])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_fused_equals_chain(dtype, lead, s, h, o, n_outliers, threshold):
    x, qweight, scale, bias = _problem(rng(), lead, s, h, o, n_outliers, dtype)
    for out_dtype in (jnp.dtype(dtype), jnp.dtype(jnp.float32)):
        args = (x, qweight, scale, bias, threshold, out_dtype)
        got = jax.jit(_fused, static_argnums=(4, 5))(*args)
        want = jax.jit(_chain, static_argnums=(4, 5))(*args)
        assert got.dtype == out_dtype and got.shape == lead + (s, o)
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


def test_fused_vmap_gives_each_element_its_own_outlier_set():
    r = rng()
    x, qweight, scale, bias = _problem(r, (3,), 6, 32, 16, 2, jnp.float32)
    x = x.at[1, :, 5].set(40.0)  # only element 1 has column 5 as an outlier
    f = lambda x: _fused(x, qweight, scale, bias, 6.0, jnp.dtype(jnp.float32))  # noqa: E731
    got = jax.vmap(f)(x)
    for b in range(3):
        np.testing.assert_array_equal(np.asarray(got[b]), np.asarray(jax.jit(f)(x[b])))


def test_fused_vmap_over_weights_loops():
    r = rng()
    x, _, _, _ = _problem(r, (), 4, 24, 8, 1, jnp.float32)
    ws = [_problem(r, (), 1, 24, 8, 0, jnp.float32)[1:3] for _ in range(2)]
    qw, sc = jnp.stack([w[0] for w in ws]), jnp.stack([w[1] for w in ws])
    got = jax.vmap(lambda q, s: _fused(x, q, s, None, 6.0, jnp.dtype(jnp.float32)))(qw, sc)
    for b in range(2):
        want = _chain(x, qw[b], sc[b], None, 6.0, jnp.dtype(jnp.float32))
        np.testing.assert_array_equal(np.asarray(got[b]), np.asarray(want))


def test_fused_is_one_custom_call():
    r = rng()
    x, qweight, scale, bias = _problem(r, (), 4, 16, 8, 1, jnp.bfloat16)
    wq = jaxint8.Int8Weight(qweight, scale)
    hlo = jax.jit(jaxint8.llm_int8_matmul).lower(x, wq).as_text()
    assert hlo.count("jaxint8_llm_int8_matmul") == 1
    assert "@jaxint8_int8_matmul(" not in hlo and "@jaxint8_quantize_rows(" not in hlo


def test_fused_rejects_bad_weight_naming_the_argument():
    x = jnp.ones((2, 8), jnp.float32)
    with pytest.raises(ValueError, match="qweight"):
        primitives.llm_int8_matmul(x, jnp.ones((4, 7), jnp.int8), jnp.ones((4,)), threshold=6.0)
    with pytest.raises(TypeError, match="x must have dtype"):
        primitives.llm_int8_matmul(x.astype(jnp.int32), jnp.ones((4, 8), jnp.int8),
                                   jnp.ones((4,)), threshold=6.0)
