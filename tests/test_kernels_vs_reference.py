"""CPU FFI handlers == the pure-jnp reference (integer parts bit-exact, floats to 1e-6)."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import jaxint8
from jaxint8 import primitives, reference as ref
from data import DTYPES, activations, rng, weight

SHAPES = [(1, 5), (3, 16), (17, 33), (8, 100), (64, 257)]


def _assert_quant_equal(got, want):
    names = ("xq", "row_scale", "outlier_idx", "outlier_count")
    for name, g, w in zip(names, got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s,h", SHAPES)
@pytest.mark.parametrize("n_outliers", [0, 1, 4, "all"])
def test_quantize_matches_reference(dtype, s, h, n_outliers):
    r = rng()
    n = h if n_outliers == "all" else min(n_outliers, h)
    cols = r.choice(h, n, replace=False)
    x = activations(r, (s, h), outlier_cols=cols, zero_rows=[0] if s > 2 else [], dtype=dtype)
    got = jax.jit(primitives.quantize_activations, static_argnums=1)(x, 6.0)
    want = ref.quantize_rows(x, ref.column_absmax(x), 6.0)
    _assert_quant_equal(got, want)
    assert int(got[3]) >= n  # every planted column is found (random ones may add more)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_threshold_zero_has_no_outliers(dtype):
    r = rng()
    x = activations(r, (9, 40), outlier_cols=[3, 7], dtype=dtype)
    got = jax.jit(primitives.quantize_activations, static_argnums=1)(x, 0.0)
    assert int(got[3]) == 0 and np.all(np.asarray(got[2]) == -1)
    _assert_quant_equal(got, ref.quantize_rows(x, ref.column_absmax(x), 0.0))
    # Without decomposition the row scale is the full row absmax.
    np.testing.assert_array_equal(np.asarray(got[1]),
                                  np.max(np.abs(np.asarray(x, np.float32)), axis=1))


def _matmul_tolerance(out_dtype):
    return {jnp.float32: 1e-6, jnp.bfloat16: 1e-2, jnp.float16: 1e-3}[out_dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s,h,o", [(1, 5, 3), (3, 16, 17), (17, 33, 40), (32, 130, 70)])
@pytest.mark.parametrize("n_outliers", [0, 1, 3, "all"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_matmul_matches_reference(dtype, s, h, o, n_outliers, use_bias):
    r = rng()
    n = h if n_outliers == "all" else min(n_outliers, h)
    x = activations(r, (s, h), outlier_cols=r.choice(h, n, replace=False),
                    zero_rows=[1] if s > 2 else [], dtype=dtype)
    wq = jaxint8.quantize_weight(weight(r, h, o))
    bias = jnp.asarray(r.standard_normal(o), jnp.float32) if use_bias else None
    got = jax.jit(jaxint8.llm_int8_matmul)(x, wq, bias)
    want = ref.llm_int8_matmul(x, wq.qweight, wq.scale, bias, threshold=6.0)
    assert got.dtype == x.dtype and got.shape == (s, o)
    g, w = np.asarray(got, np.float32), np.asarray(want, np.float32)
    tol = _matmul_tolerance(dtype)
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.max(np.abs(w)))


def test_matmul_f32_output_is_exact_to_1e6_on_large_problem():
    r = rng()
    x = activations(r, (48, 512), outlier_cols=[1, 100, 300], dtype=jnp.bfloat16)
    wq = jaxint8.quantize_weight(weight(r, 512, 384))
    got = jax.jit(jaxint8.llm_int8_matmul, static_argnames="out_dtype")(x, wq, out_dtype=jnp.float32)
    want = ref.llm_int8_matmul(x, wq.qweight, wq.scale, out_dtype=jnp.float32)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6,
                               atol=1e-6 * float(jnp.max(jnp.abs(want))))


def test_int8_gemm_is_exact_integer_arithmetic():
    # Unit scales turn the dequantization into acc / 16129: compare with an int64 numpy GEMM.
    r = rng()
    s, h, o = 7, 300, 50
    xq = jnp.asarray(r.integers(-127, 128, (s, h)), jnp.int8)
    wq = jnp.asarray(r.integers(-127, 128, (o, h)), jnp.int8)
    ones_s, ones_o = jnp.ones((s,), jnp.float32), jnp.ones((o,), jnp.float32)
    x = jnp.zeros((s, h), jnp.float32)
    idx, count = -jnp.ones((h,), jnp.int32), jnp.zeros((), jnp.int32)
    y = jax.jit(primitives.int8_matmul, static_argnames="out_dtype")(
        xq, ones_s, x, idx, count, wq, ones_o, None, out_dtype=jnp.float32)
    acc = np.asarray(xq, np.int64) @ np.asarray(wq, np.int64).T
    np.testing.assert_array_equal(np.rint(np.asarray(y, np.float64) * 16129.0), acc)


def test_lowering_uses_the_ffi_targets():
    x = jnp.ones((4, 8), jnp.bfloat16)
    wq = jaxint8.quantize_weight(jnp.ones((8, 4)))

    def chain(x, qweight, scale):
        xq, rs, idx, count = primitives.quantize_activations(x, 6.0)
        return primitives.int8_matmul(xq, rs, x, idx, count, qweight, scale)

    hlo = jax.jit(chain).lower(x, wq.qweight, wq.scale).as_text()
    for target in ("jaxint8_column_absmax", "jaxint8_quantize_rows", "jaxint8_int8_matmul"):
        assert f'custom_call @{target}(' in hlo or f'"{target}"' in hlo, target
    # The public op on one device: the fused target (tests/test_fused.py checks it in detail).
    assert "jaxint8_llm_int8_matmul" in jax.jit(jaxint8.llm_int8_matmul).lower(x, wq).as_text()
