"""Bad and edge-case inputs: clear errors, or the documented result; never a crash or garbage."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import jaxint8
from jaxint8 import primitives
from data import activations, rng, weight


@pytest.fixture
def wq():
    return jaxint8.quantize_weight(weight(rng(), 16, 8))


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.bool_, jnp.uint8])
def test_non_float_activations_raise_type_error(wq, dtype):
    with pytest.raises(TypeError, match="x must be float32, bfloat16 or float16"):
        jaxint8.llm_int8_matmul(jnp.ones((2, 16), dtype), wq)


def test_non_array_and_wrong_weight_type(wq):
    with pytest.raises(TypeError, match="x must be an array"):
        jaxint8.llm_int8_matmul([[1.0] * 16], wq)
    with pytest.raises(TypeError, match="weight must be a jaxint8.Int8Weight"):
        jaxint8.llm_int8_matmul(jnp.ones((2, 16)), jnp.ones((16, 8)))


def test_feature_mismatch_names_both_sizes(wq):
    with pytest.raises(ValueError, match=r"x.shape\[-1\] = 15 .* in_features = 16"):
        jaxint8.llm_int8_matmul(jnp.ones((2, 15)), wq)


def test_scalar_input_rejected(wq):
    with pytest.raises(ValueError, match="at least 1 dimension"):
        jaxint8.llm_int8_matmul(jnp.float32(1.0), wq)


def test_bias_shape_checked(wq):
    with pytest.raises(ValueError, match=r"bias must be a float array of shape \(8,\)"):
        jaxint8.llm_int8_matmul(jnp.ones((2, 16)), wq, jnp.ones((7,)))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_threshold_value(wq, bad):
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        jaxint8.llm_int8_matmul(jnp.ones((2, 16)), wq, threshold=bad)


def test_traced_threshold_rejected(wq):
    with pytest.raises(TypeError, match="threshold must be a Python number"):
        jax.jit(lambda t: jaxint8.llm_int8_matmul(jnp.ones((2, 16)), wq, threshold=t))(6.0)


def test_quantize_weight_errors():
    with pytest.raises(TypeError, match="floating-point"):
        jaxint8.quantize_weight(jnp.ones((4, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"2-D \[in_features, out_features\]"):
        jaxint8.quantize_weight(jnp.ones((4,)))
    # 3-D is a stack of layers (nn.scan), tests/test_scan.py


def test_primitive_shape_errors_name_the_argument(wq):
    x = jnp.ones((3, 16))
    xq, rs, idx, cnt = primitives.quantize_activations(x, 6.0)
    with pytest.raises(ValueError, match="row_scale must have shape"):
        primitives.int8_matmul(xq, rs[:2], x, idx, cnt, wq.qweight, wq.scale)
    with pytest.raises(ValueError, match="qweight must be int8"):
        primitives.int8_matmul(xq, rs, x, idx, cnt, wq.qweight[:, :5], wq.scale)
    with pytest.raises(ValueError, match="col_amax must have shape"):
        primitives.quantize_rows(x, jnp.ones((15,)), 6.0)
    with pytest.raises(ValueError, match="rank >= 2"):
        primitives.column_absmax(jnp.ones((16,)))


@pytest.mark.parametrize("threshold", [6.0, 0.0])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_poisons_only_its_row(wq, threshold, bad):
    x = np.array(activations(rng(), (5, 16)))
    x[2, 7] = bad
    y = np.asarray(jax.jit(jaxint8.llm_int8_matmul, static_argnames="threshold")(
        jnp.asarray(x), wq, threshold=threshold))
    assert not np.any(np.isfinite(y[2])), y[2]          # row 2: NaN or +-Inf everywhere
    assert np.all(np.isfinite(np.delete(y, 2, axis=0)))  # other rows untouched by it
    # Same pattern as a float matmul of the same input (inf * 0 in it is NaN, on purpose).
    with np.errstate(invalid="ignore"):
        ref = x.astype(np.float64) @ np.asarray(wq.dequantize(), np.float64)
    assert np.array_equal(np.isfinite(ref), np.isfinite(y))


def test_empty_batch(wq):
    for shape in [(0, 16), (2, 0, 16)]:
        y = jax.jit(jaxint8.llm_int8_matmul)(jnp.ones(shape), wq)
        assert y.shape == shape[:-1] + (8,)
    xq, rs, idx, cnt = jaxint8.quantize_activations(jnp.ones((0, 16)))
    assert xq.shape == (0, 16) and rs.shape == (0,) and int(cnt) == 0


def test_zero_rows_give_exactly_the_bias(wq):
    x = activations(rng(), (4, 16), outlier_cols=[3], zero_rows=[1, 2])
    bias = jnp.arange(8, dtype=jnp.float32)
    y = np.asarray(jaxint8.llm_int8_matmul(x, wq, bias))
    xq, rs, _, _ = jaxint8.quantize_activations(x)
    # Row 1/2 still have the outlier column set to 0 by zero_rows: the output is exactly bias.
    np.testing.assert_array_equal(y[1], np.asarray(bias))
    np.testing.assert_array_equal(np.asarray(rs)[1:3], 0.0)
    np.testing.assert_array_equal(np.asarray(xq)[1:3], 0)


def test_all_zero_input_and_zero_weight_columns():
    w = np.array(weight(rng(), 16, 8))
    w[:, 3] = 0.0
    q = jaxint8.quantize_weight(w)
    assert float(q.scale[3]) == 0.0 and not np.any(np.asarray(q.qweight[3]))
    x = activations(rng(), (4, 16), outlier_cols=[0])
    y = np.asarray(jaxint8.llm_int8_matmul(x, q))
    assert np.all(np.isfinite(y)) and np.all(y[:, 3] == 0.0)
    np.testing.assert_array_equal(np.asarray(jaxint8.llm_int8_matmul(jnp.zeros((3, 16)), q)), 0.0)


def test_one_dimensional_input(wq):
    x = activations(rng(), (16,))
    np.testing.assert_array_equal(np.asarray(jaxint8.llm_int8_matmul(x, wq)),
                                  np.asarray(jaxint8.llm_int8_matmul(x[None], wq))[0])
