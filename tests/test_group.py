"""The grouped op (one quantization of x, several weights) == one fused op per weight, bit for bit.

``jaxint8.llm_int8_matmul_group`` is what the models use for q/k/v (and Llama's gate/up): the
outlier set and the row scales depend on x only, so sharing them cannot change any output.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxint8
from data import DTYPES, activations, rng, weight


def _problem(r, lead, s, h, outs, n_outliers, dtype, biases=True):
    n = h if n_outliers == "all" else min(n_outliers, h)
    x = activations(r, lead + (s, h), outlier_cols=r.choice(h, n, replace=False),
                    zero_rows=[0] if s > 2 else [], dtype=dtype)
    ws = [jaxint8.quantize_weight(weight(r, h, o)) for o in outs]
    bs = [jnp.asarray(r.standard_normal(o), jnp.float32) if biases and i % 2 == 0 else None
          for i, o in enumerate(outs)]
    return x, ws, bs


def _assert_equal(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,s,h,outs", [((), 1, 5, (3, 7)), ((), 17, 33, (20, 20, 20)),
                                           ((2,), 8, 100, (24, 8, 8)), ((2, 3), 3, 16, (8,)),
                                           ((), 0, 16, (8, 4)), ((), 5, 64, (16,) * 8)])
@pytest.mark.parametrize("n_outliers", [0, 3, "all"])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_group_equals_one_call_per_weight(dtype, lead, s, h, outs, n_outliers, threshold):
    x, ws, bs = _problem(rng(), lead, s, h, outs, n_outliers, dtype)
    for out_dtype in (None, jnp.float32):
        got = jax.jit(lambda x: jaxint8.llm_int8_matmul_group(
            x, ws, bs, threshold=threshold, out_dtype=out_dtype))(x)
        assert len(got) == len(ws)
        for y, w, b in zip(got, ws, bs):
            want = jax.jit(lambda x: jaxint8.llm_int8_matmul(
                x, w, b, threshold=threshold, out_dtype=out_dtype))(x)
            _assert_equal(y, want)


def test_group_is_one_custom_call():
    x, ws, bs = _problem(rng(), (), 4, 32, (16, 8, 8), 2, jnp.bfloat16)
    hlo = jax.jit(lambda x: jaxint8.llm_int8_matmul_group(x, ws, bs)).lower(x).as_text()
    assert hlo.count("jaxint8_llm_int8_matmul_group") == 1
    assert hlo.count("custom_call") == 1


def test_group_vmap_over_x_gives_each_element_its_own_outlier_set():
    x, ws, bs = _problem(rng(), (3,), 6, 32, (16, 8), 2, jnp.float32)
    x = x.at[1, :, 5].set(40.0)  # only element 1 has column 5 as an outlier
    f = lambda x: jaxint8.llm_int8_matmul_group(x, ws, bs)  # noqa: E731
    got = jax.vmap(f)(x)
    for b in range(3):
        for y, want in zip(got, jax.jit(f)(x[b])):
            _assert_equal(y[b], want)


def test_group_vmap_over_weights_loops():
    r = rng()
    x, _, _ = _problem(r, (), 5, 24, (), 1, jnp.float32)
    stacks = [[jaxint8.quantize_weight(weight(r, 24, o)) for _ in range(3)] for o in (8, 4)]
    qs = [jnp.stack([w.qweight for w in s]) for s in stacks]
    ss = [jnp.stack([w.scale for w in s]) for s in stacks]
    f = lambda q0, s0, q1, s1: jaxint8.llm_int8_matmul_group(  # noqa: E731
        x, [jaxint8.Int8Weight(q0, s0), jaxint8.Int8Weight(q1, s1)])
    got = jax.vmap(f)(qs[0], ss[0], qs[1], ss[1])
    for j in range(3):
        for y, s in zip(got, stacks):
            _assert_equal(y[j], jaxint8.llm_int8_matmul(x, s[j]))


def test_group_grad_equals_sum_over_weights():
    x, ws, bs = _problem(rng(), (2,), 5, 32, (16, 8, 12), 2, jnp.float32)
    bs = [jnp.zeros((w.out_features,), jnp.float32) for w in ws]
    ct = [jnp.asarray(rng().standard_normal((2, 5, w.out_features)), jnp.float32) for w in ws]

    def loss(x, bs, grouped):
        ys = (jaxint8.llm_int8_matmul_group(x, ws, bs) if grouped
              else [jaxint8.llm_int8_matmul(x, w, b) for w, b in zip(ws, bs)])
        return sum(jnp.sum(y * c) for y, c in zip(ys, ct))

    gx, gb = jax.grad(loss, argnums=(0, 1))(x, bs, True)
    wx, wb = jax.grad(loss, argnums=(0, 1))(x, bs, False)
    np.testing.assert_allclose(np.asarray(gx), np.asarray(wx), rtol=1e-6, atol=1e-6)
    for a, b in zip(gb, wb):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda x, ws: jaxint8.llm_int8_matmul_group(x, []), "1 to 8"),
    (lambda x, ws: jaxint8.llm_int8_matmul_group(x, ws * 5), "1 to 8"),
    (lambda x, ws: jaxint8.llm_int8_matmul_group(x, ws, [None]), "one entry"),
    (lambda x, ws: jaxint8.llm_int8_matmul_group(x, ws, [None, jnp.zeros((5,))]),
     r"biases\[1\] must be"),
    (lambda x, ws: jaxint8.llm_int8_matmul_group(x[:, :8], ws), r"weights\[0\]'s in_features"),
    (lambda x, ws: jaxint8.llm_int8_matmul_group(x, [ws[0], ws[1].qweight]), r"weights\[1\]"),
])
def test_group_rejects_bad_input_naming_the_argument(call, match):
    x, ws, _ = _problem(rng(), (), 4, 16, (8, 4), 1, jnp.float32)
    with pytest.raises((ValueError, TypeError), match=match):
        call(x, ws)


def test_flax_group_equals_layers_and_checks_settings():
    import flax.linen as nn
    from flax import nnx

    from jaxint8.flax import Int8Dense, Int8Linear, int8_dense_group

    class Separate(nn.Module):
        grouped: bool

        @nn.compact
        def __call__(self, x):
            layers = [Int8Dense(n, name=f"p{n}") for n in (16, 8, 24)]
            return int8_dense_group(layers, x) if self.grouped else tuple(m(x) for m in layers)

    x = jnp.asarray(rng().standard_normal((3, 32)), jnp.bfloat16).at[:, 4].set(30.0)
    params = Separate(True).init(jax.random.key(0), x)
    assert set(params["params"]) == {"p16", "p8", "p24"}
    for a, b in zip(Separate(True).apply(params, x), Separate(False).apply(params, x)):
        _assert_equal(a, b)

    lins = [Int8Linear(32, n, rngs=nnx.Rngs(n)) for n in (8, 8)]
    for a, layer in zip(int8_dense_group(lins, x), lins):
        _assert_equal(a, layer(x))
    lins[1].threshold = 2.0
    with pytest.raises(ValueError, match=r"layers\[1\].threshold"):
        int8_dense_group(lins, x)
    with pytest.raises(TypeError, match="only"):
        int8_dense_group([nnx.Linear(32, 8, rngs=nnx.Rngs(0))], x)


def test_no_warning_on_one_device():
    x, ws, bs = _problem(rng(), (), 4, 16, (8, 4), 1, jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.jit(lambda x: jaxint8.llm_int8_matmul_group(x, ws, bs))(x)
