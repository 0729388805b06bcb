"""Accuracy against an f64 matmul of the unquantized inputs on the paper-style test data (the paper's point:
the outlier decomposition keeps int8 at ~1e-2 while plain vector-wise int8 degrades)."""

import numpy as np
import jax.numpy as jnp
import pytest

import jaxint8
from jaxint8 import reference as ref
from data import design_data, rel_err, rng


@pytest.fixture(scope="module")
def problem():
    x, w, _ = design_data(rng(), s=256, h=2048, o=512)
    exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    return x, w, exact


def test_llm_int8_error_matches_bitsandbytes_level(problem):
    x, w, exact = problem
    err = rel_err(jaxint8.llm_int8_matmul(x, jaxint8.quantize_weight(w), out_dtype=jnp.float32),
                  exact)
    # bitsandbytes 0.50.2 measured ~1.0e-2 on this data; int8 is never exact.
    assert 1e-3 < err < 1.3e-2


def test_decomposition_beats_every_ablation(problem):
    x, w, exact = problem
    wq = jaxint8.quantize_weight(w)
    int8 = rel_err(jaxint8.llm_int8_matmul(x, wq, out_dtype=jnp.float32), exact)
    no_decomp = rel_err(jaxint8.llm_int8_matmul(x, wq, threshold=0, out_dtype=jnp.float32), exact)
    vectorwise = rel_err(ref.absmax_vectorwise_matmul(x, w), exact)
    tensorwise = rel_err(ref.absmax_tensorwise_matmul(x, w), exact)
    zeropoint = rel_err(ref.zeropoint_vectorwise_matmul(x, w), exact)
    assert no_decomp == pytest.approx(vectorwise, rel=1e-3)
    # The outliers wreck the row scales: several times the error without decomposition.
    assert vectorwise > 4 * int8 and vectorwise > 4e-2
    assert tensorwise > vectorwise  # one scale for everything is worse still
    assert int8 < zeropoint < tensorwise


def test_bf16_activations_keep_the_accuracy(problem):
    x, w, exact = problem
    y = jaxint8.llm_int8_matmul(x.astype(jnp.bfloat16), jaxint8.quantize_weight(w),
                                out_dtype=jnp.float32)
    assert rel_err(y, exact) < 1.3e-2


def test_weight_roundtrip_error_is_half_a_step():
    w = np.asarray(rng().standard_normal((300, 70)) * 0.02, np.float32)
    q = jaxint8.quantize_weight(w)
    step = np.max(np.abs(w), axis=0) / 127.0
    err = np.abs(np.asarray(q.dequantize()) - w)
    assert np.all(err <= 0.5 * step[None, :] * (1 + 1e-5))
    assert q.qweight.dtype == jnp.int8 and q.qweight.shape == (70, 300)
    assert np.max(np.abs(np.asarray(q.qweight, np.int32))) == 127
