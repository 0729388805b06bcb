"""Layers stacked with nn.scan / nnx.scan: [layers, in, out] kernels."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxint8
from jaxint8.flax import Int8Dense, Int8Linear, quantize_dense_params, quantize_linear_layers

LAYERS = 3


class Block(nn.Module):
    dense: type = nn.Dense

    @nn.compact
    def __call__(self, x, _):
        h = self.dense(32, name="up")(x)
        return x + self.dense(16, name="down")(nn.gelu(h)), None


class Scanned(nn.Module):
    dense: type = nn.Dense

    @nn.compact
    def __call__(self, x):
        layers = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                         length=LAYERS)
        x, _ = layers(self.dense, name="layers")(x, None)
        return x


def _x():
    return jax.random.normal(jax.random.key(1), (2, 5, 16)).at[..., 3].multiply(12.0)


def _layer(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


@pytest.fixture(scope="module")
def float_params():
    return Scanned().init(jax.random.key(0), _x())["params"]


def test_stacked_params_layout(float_params):
    q = quantize_dense_params(float_params)["layers"]
    assert q["up"]["kernel"].shape == (LAYERS, 32, 16) and q["up"]["kernel"].dtype == jnp.int8
    assert q["up"]["scale"].shape == (LAYERS, 32) and q["up"]["bias"].shape == (LAYERS, 32)
    # The int8 model's own init has the same layout.
    target = jax.eval_shape(Scanned(Int8Dense).init, jax.random.key(0), _x())["params"]
    assert (jax.tree.map(lambda a: (a.shape, a.dtype), target)
            == jax.tree.map(lambda a: (a.shape, a.dtype), {"layers": q}))


def test_each_layer_quantized_as_unstacked(float_params):
    q = quantize_dense_params(float_params)["layers"]
    for i in range(LAYERS):
        one = quantize_dense_params(_layer(float_params["layers"], i))
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(_layer(q, i))):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("with_target", [False, True])
def test_scanned_equals_unrolled(float_params, with_target):
    x = _x()
    target = None
    if with_target:
        target = jax.eval_shape(Scanned(Int8Dense).init, jax.random.key(0), x)["params"]
    q = quantize_dense_params(float_params, target=target)

    @jax.jit
    def scanned(q, x):
        return Scanned(Int8Dense).apply({"params": q}, x)

    @jax.jit
    def unrolled(p, x):
        for i in range(LAYERS):
            layer = quantize_dense_params(_layer(p["layers"], i))
            x, _ = Block(Int8Dense).apply({"params": layer}, x, None)
        return x

    y = scanned(q, x)
    np.testing.assert_array_equal(y, unrolled(float_params, x))
    # and close to the float model
    yf = Scanned().apply({"params": float_params}, x)
    assert float(jnp.linalg.norm(y - yf) / jnp.linalg.norm(yf)) < 0.02


def test_target_mismatch_names_the_stacked_layout(float_params):
    target = jax.eval_shape(Scanned(Int8Dense).init, jax.random.key(0), _x())["params"]
    unstacked = {"layers": _layer(float_params["layers"], 0)}
    with pytest.raises(ValueError, match=r"layers/(up|down)/kernel.*stacked layer axes"):
        quantize_dense_params(unstacked, target=target)


def test_stacked_weight_in_the_op_is_a_clear_error():
    wq = jaxint8.quantize_weight(jnp.ones((LAYERS, 16, 8)))
    assert wq.stack_shape == (LAYERS,) and wq.in_features == 16 and wq.out_features == 8
    np.testing.assert_array_equal(wq.dequantize(), jnp.ones((LAYERS, 16, 8)))
    with pytest.raises(ValueError, match=r"weight is a stacked Int8Weight.*a\[i\]"):
        jaxint8.llm_int8_matmul(jnp.ones((2, 16)), wq)
    # scan / vmap slice it
    ys = jax.vmap(lambda w: jaxint8.llm_int8_matmul(jnp.ones((2, 16)), w))(wq)
    assert ys.shape == (LAYERS, 2, 8)


def test_stacked_nan_is_located():
    w = jnp.ones((2, 4, 3)).at[1, 0, 2].set(jnp.nan)
    with pytest.raises(ValueError, match=r"1 output feature\(s\) \[layer \(1,\) feature 2\]"):
        jaxint8.quantize_weight(w)


# --------------------------------------------------------------------------- nnx


class NnxBlock(nnx.Module):
    def __init__(self, rngs):
        self.up = nnx.Linear(16, 32, rngs=rngs)
        self.down = nnx.Linear(32, 16, rngs=rngs)

    def __call__(self, x):
        return x + self.down(nnx.gelu(self.up(x)))


@nnx.split_rngs(splits=LAYERS)
@nnx.vmap(in_axes=(0,), out_axes=0)
def _create(rngs):
    return NnxBlock(rngs)


@nnx.jit
def _forward(blocks, x):
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def step(x, block):
        return block(x)

    return step(x, blocks)


def test_nnx_scan_equals_unrolled():
    x = _x()
    blocks = _create(nnx.Rngs(0))
    assert blocks.up.kernel.shape == (LAYERS, 16, 32)
    float_blocks = _create(nnx.Rngs(0))
    quantize_linear_layers(blocks)
    assert isinstance(blocks.up, Int8Linear)
    assert blocks.up.kernel.shape == (LAYERS, 32, 16) and blocks.up.scale.shape == (LAYERS, 32)
    y = _forward(blocks, x)

    @jax.jit
    def unrolled(x):
        for i in range(LAYERS):
            block = NnxBlock(nnx.Rngs(0))
            for name in ("up", "down"):
                lin, src = getattr(block, name), getattr(float_blocks, name)
                lin.kernel[...] = src.kernel[...][i]
                lin.bias[...] = src.bias[...][i]
            x = quantize_linear_layers(block)(x)
        return x

    np.testing.assert_array_equal(y, unrolled(x))
    # A stacked layer called outside the scan says what to do.
    with pytest.raises(ValueError, match="stacked Int8Weight"):
        blocks.up(x)
