"""Flax layers: linen Int8Dense, nnx Int8Linear and the converters."""

import functools

import numpy as np
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import jaxint8
from jaxint8.flax import (Int8Dense, Int8Linear, QuantizedArray, float32_int8_biases,
                          quantize_dense_params, quantize_linear_layers, trainable_mask)
from data import activations, rel_err, rng


def _x(shape=(2, 5, 64), dtype=jnp.float32):
    return activations(rng(), shape, outlier_cols=[4, 40], dtype=dtype)


def test_int8_dense_matches_dense_after_conversion():
    x = _x()
    params = nn.Dense(96).init(jax.random.key(0), x)["params"]
    want = nn.Dense(96).apply({"params": params}, x)
    got = Int8Dense(96).apply({"params": quantize_dense_params(params)}, x)
    assert got.shape == want.shape == (2, 5, 96) and got.dtype == want.dtype
    assert 1e-4 < rel_err(got, want) < 2e-2


def test_int8_dense_init_params_and_dtypes():
    x = _x(dtype=jnp.bfloat16)
    layer = Int8Dense(32, dtype=jnp.bfloat16)
    params = layer.init(jax.random.key(1), x)["params"]
    assert params["kernel"].dtype == jnp.int8 and params["kernel"].shape == (32, 64)
    assert params["scale"].dtype == jnp.float32 and params["scale"].shape == (32,)
    assert params["bias"].dtype == jnp.float32
    assert layer.apply({"params": params}, x).dtype == jnp.bfloat16
    # dtype=None promotes like nn.Dense: bf16 input with f32 params gives f32.
    assert Int8Dense(32).apply({"params": params}, x).dtype == jnp.float32
    no_bias = Int8Dense(32, use_bias=False).init(jax.random.key(1), x)["params"]
    assert set(no_bias) == {"kernel", "scale"}


def test_fresh_int8_dense_is_a_quantized_dense():
    x = _x()
    layer, dense = Int8Dense(48), nn.Dense(48)
    key = jax.random.key(3)
    q = layer.init(key, x)["params"]
    d = dense.init(key, x)["params"]
    # Same init key: the int8 kernel is the quantized float kernel.
    np.testing.assert_array_equal(np.asarray(q["kernel"]),
                                  np.asarray(jaxint8.quantize_weight(d["kernel"]).qweight))
    assert rel_err(layer.apply({"params": q}, x), dense.apply({"params": d}, x)) < 2e-2


def test_threshold_setting_reaches_the_op():
    x = _x()
    params = nn.Dense(32).init(jax.random.key(0), x)["params"]
    q = quantize_dense_params(params)
    want = nn.Dense(32).apply({"params": params}, x)
    err6 = rel_err(Int8Dense(32).apply({"params": q}, x), want)
    err0 = rel_err(Int8Dense(32, threshold=None).apply({"params": q}, x), want)
    assert err0 > 2 * err6


class _Block(nn.Module):
    dense: type = nn.Dense

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(self.dense(128, name="up")(x))
        h = self.dense(64, name="down")(h)
        return nn.Dense(10, name="lm_head")(nn.LayerNorm(name="norm")(x + h))


def test_whole_model_conversion_with_target():
    x = _x()
    float_model, int8_model = _Block(), _Block(dense=Int8Dense)
    params = float_model.init(jax.random.key(0), x)["params"]
    target = jax.eval_shape(int8_model.init, jax.random.key(0), x)["params"]
    qparams = quantize_dense_params(params, target=target)
    assert qparams["up"]["kernel"].dtype == jnp.int8
    assert qparams["lm_head"]["kernel"].dtype == jnp.float32  # float in the int8 model too
    assert jax.tree.map(lambda a: (a.shape, a.dtype), qparams) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), target)
    want = float_model.apply({"params": params}, x)
    got = jax.jit(int8_model.apply)({"params": qparams}, x)
    assert rel_err(got, want) < 2e-2


def test_conversion_without_target_and_exclude():
    x = _x()
    params = _Block().init(jax.random.key(0), x)["params"]
    q = quantize_dense_params(params, exclude=("lm_head",))
    assert q["down"]["kernel"].dtype == jnp.int8 and q["lm_head"]["kernel"].dtype == jnp.float32


def test_conversion_errors_name_the_path():
    x = _x()
    int8_model = _Block(dense=Int8Dense)
    target = jax.eval_shape(int8_model.init, jax.random.key(0), x)["params"]
    params = _Block().init(jax.random.key(0), x)["params"]
    del params["up"]
    with pytest.raises(ValueError, match=r"missing entries \['up'\]"):
        quantize_dense_params(params, target=target)
    params = _Block().init(jax.random.key(0), x)["params"]
    params["down"]["kernel"] = params["down"]["kernel"][:, :10]
    with pytest.raises(ValueError, match="down/kernel"):
        quantize_dense_params(params, target=target)


def test_float32_int8_biases_keeps_the_results():
    x = _x(dtype=jnp.bfloat16)
    model = _Block(dense=functools.partial(Int8Dense, param_dtype=jnp.bfloat16))
    q = model.init(jax.random.key(0), x)["params"]
    q["up"]["bias"] = jnp.linspace(-3, 3, q["up"]["bias"].shape[0]).astype(jnp.bfloat16)
    f = float32_int8_biases(q)
    assert f["up"]["bias"].dtype == jnp.float32 and f["down"]["bias"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(f["up"]["bias"]), np.asarray(q["up"]["bias"], np.float32))
    assert f["lm_head"]["bias"] is q["lm_head"]["bias"]  # float layers untouched
    assert f["up"]["kernel"] is q["up"]["kernel"]
    apply = jax.jit(model.apply)
    np.testing.assert_array_equal(np.asarray(apply({"params": f}, x), np.float32),
                                  np.asarray(apply({"params": q}, x), np.float32))


def test_trainable_mask_freezes_int8_kernels():
    x = _x()
    q = _Block(dense=Int8Dense).init(jax.random.key(0), x)["params"]
    mask = trainable_mask(q)
    assert mask["up"] == {"kernel": False, "scale": False, "bias": True}
    assert mask["lm_head"] == {"kernel": True, "bias": True}


def test_lora_style_training_on_frozen_int8_base():
    # Gradient flows through the int8 layer to a trainable float adapter in front of it.
    x = _x((4, 64))
    base = Int8Dense(32)
    base_params = base.init(jax.random.key(0), x)["params"]
    a = jnp.zeros((64, 64))

    def loss(a):
        return jnp.sum(base.apply({"params": base_params}, x + x @ a) ** 2)

    g = jax.grad(loss)(a)
    assert g.shape == a.shape and float(jnp.abs(g).max()) > 0


def test_nnx_from_linear_and_fresh():
    x = _x()
    linear = nnx.Linear(64, 40, rngs=nnx.Rngs(0))
    q = Int8Linear.from_linear(linear)
    assert isinstance(q.kernel, QuantizedArray) and q.kernel[...].dtype == jnp.int8
    assert rel_err(q(x), linear(x)) < 2e-2
    fresh = Int8Linear(64, 40, rngs=nnx.Rngs(0))
    assert fresh(x).shape == (2, 5, 40)
    # The optimizer view: only the bias is a Param.
    assert set(nnx.state(q, nnx.Param).keys()) == {"bias"}
    with pytest.raises(ValueError, match="pass rngs="):
        Int8Linear(64, 40)
    with pytest.raises(TypeError, match="expected an nnx.Linear"):
        Int8Linear.from_linear(object())


def test_nnx_quantize_linear_layers_in_place():
    class Net(nnx.Module):
        def __init__(self):
            self.blocks = nnx.List([nnx.Linear(64, 64, rngs=nnx.Rngs(i)) for i in range(2)])
            self.lm_head = nnx.Linear(64, 8, rngs=nnx.Rngs(9))

        def __call__(self, x):
            for b in self.blocks:
                x = b(x)
            return self.lm_head(x)

    net, x = Net(), _x()
    want = net(x)
    quantize_linear_layers(net, exclude=("lm_head",))
    assert all(isinstance(b, Int8Linear) for b in net.blocks)
    assert isinstance(net.lm_head, nnx.Linear)
    assert rel_err(nnx.jit(lambda m, x: m(x))(net, x), want) < 3e-2
