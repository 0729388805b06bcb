"""User-facing errors: the Flax layers, quantize_weight and the command-line tools name the bad
argument and the fix; the CLIs exit with status 2 and one error line, never a traceback."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxint8
from jaxint8.flax import Int8Dense, Int8Linear, quantize_dense_params
from data import rng, weight

IN, OUT = 16, 32


def _params(features=OUT, in_features=IN):
    return Int8Dense(features).init(jax.random.key(0), jnp.ones((2, in_features)))


class _Model(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Int8Dense(OUT, name="up")(x)


# ------------------------------------------------------------------------------ Int8Dense
def test_int8_dense_scalar_input():
    with pytest.raises(ValueError, match=r"Int8Dense: inputs must have at least 1 dimension .* "
                                         r"got a scalar"):
        Int8Dense(OUT).apply(_params(), jnp.float32(1.0))
    with pytest.raises(ValueError, match="got a scalar"):
        Int8Dense(OUT).init(jax.random.key(0), jnp.float32(1.0))


@pytest.mark.parametrize("jit", [False, True])
def test_int8_dense_wrong_input_width_names_layer_and_sizes(jit):
    params = _Model().init(jax.random.key(0), jnp.ones((2, IN)))
    apply = jax.jit(_Model().apply) if jit else _Model().apply
    with pytest.raises(ValueError, match=r"Int8Dense 'up': inputs.shape\[-1\] = 15 but params "
                                         r"'kernel' has in_features = 16 .*last axis has 16"):
        apply(params, jnp.ones((2, 15)))


def test_int8_dense_wrong_features():
    with pytest.raises(ValueError, match=r"32 output features .* features = 33"):
        Int8Dense(OUT + 1).apply(_params(), jnp.ones((2, IN)))


def test_float_dense_params_point_to_quantize_dense_params():
    params = nn.Dense(OUT).init(jax.random.key(0), jnp.ones((2, IN)))
    with pytest.raises(ValueError, match=r"'kernel' is a float \(float32\) array of shape \[16, 32\].*"
                                         r"jaxint8.flax.quantize_dense_params\(params\)"):
        Int8Dense(OUT).apply(params, jnp.ones((2, IN)))


def test_torch_layout_weight_without_transposed_is_caught_by_the_layer():
    w_torch = weight(rng(), IN, OUT).T                       # [out, in], as torch.nn.Linear
    wrong = jaxint8.quantize_weight(w_torch)                  # forgot transposed=True
    params = {"params": {"kernel": wrong.qweight, "scale": wrong.scale, "bias": jnp.zeros(OUT)}}
    with pytest.raises(ValueError, match=r"in/out axes are swapped.*pass transposed=True"):
        Int8Dense(OUT).apply(params, jnp.ones((2, IN)))
    right = jaxint8.quantize_weight(w_torch, transposed=True)
    params["params"].update(kernel=right.qweight, scale=right.scale)
    assert Int8Dense(OUT).apply(params, jnp.ones((2, IN))).shape == (2, OUT)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, -1.0])
def test_int8_dense_rejects_bad_threshold(bad):
    with pytest.raises(ValueError, match=r"threshold must be a finite number >= 0.*use 0 or None "
                                         r"to disable"):
        Int8Dense(OUT, threshold=bad)


def test_int8_dense_threshold_type_and_good_values():
    with pytest.raises(TypeError, match="threshold must be a Python number or None"):
        Int8Dense(OUT, threshold="6")
    for ok in (None, 0, 0.0, 6, 6.0):
        Int8Dense(OUT, threshold=ok).apply(_params(), jnp.ones((2, IN)))


# ----------------------------------------------------------------------------- Int8Linear
@pytest.mark.parametrize("bad", [math.inf, math.nan, -2.0])
def test_int8_linear_rejects_bad_threshold(bad):
    with pytest.raises(ValueError, match="use 0 or None to disable"):
        Int8Linear(IN, OUT, rngs=nnx.Rngs(0), threshold=bad)
    linear = nnx.Linear(IN, OUT, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="use 0 or None to disable"):
        Int8Linear.from_linear(linear, threshold=bad)


def test_int8_linear_input_errors():
    layer = Int8Linear(IN, OUT, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Int8Linear: inputs must have at least 1 dimension"):
        layer(jnp.float32(1.0))
    with pytest.raises(ValueError, match=r"Int8Linear: inputs.shape\[-1\] = 17 .* in_features = 16"):
        layer(jnp.ones((3, IN + 1)))


def test_int8_linear_swapped_weight():
    wrong = jaxint8.quantize_weight(weight(rng(), IN, OUT).T)  # torch layout, no transposed=True
    with pytest.raises(ValueError, match=r"must be \[out_features, in_features\] = \[32, 16\], got "
                                         r"\[16, 32\].*pass transposed=True"):
        Int8Linear(IN, OUT, weight=wrong)
    layer = Int8Linear.from_weight(wrong)                      # sizes taken from the weight
    with pytest.raises(ValueError, match=r"in/out axes may be swapped.*pass transposed=True"):
        layer(jnp.ones((2, IN)))


# ----------------------------------------------------------------- quantize_dense_params
def test_quantize_dense_params_torch_layout_kernel():
    x = jnp.ones((2, IN))
    target = jax.eval_shape(_Model().init, jax.random.key(0), x)["params"]
    params = {"up": nn.Dense(OUT).init(jax.random.key(0), x)["params"]}
    params["up"]["kernel"] = params["up"]["kernel"].T        # a torch state dict's [out, in]
    with pytest.raises(ValueError, match=r"up/kernel: float kernel \[32, 16\].*torch / Hugging "
                                         r"Face layout.*transposed=True"):
        quantize_dense_params(params, target=target)


def test_quantize_dense_params_already_int8():
    x = jnp.ones((2, IN))
    q = _Model().init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match="up: this entry is already int8"):
        quantize_dense_params(q, target=q)


# ------------------------------------------------------------------------ quantize_weight
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("transposed", [False, True])
def test_quantize_weight_rejects_non_finite(bad, transposed):
    w = np.array(weight(rng(), IN, OUT))
    w[3, 5] = bad
    w[7, 20] = bad
    with pytest.raises(ValueError, match=r"w has NaN or Inf values in 2 output feature\(s\) "
                                         r"\[5, 20\]"):
        jaxint8.quantize_weight(w.T if transposed else w, transposed=transposed)


def test_quantize_weight_non_finite_under_jit_propagates_to_the_outputs():
    w = np.array(weight(rng(), IN, OUT))
    w[3, 5] = np.nan
    w[7, 20] = np.inf
    q = jax.jit(jaxint8.quantize_weight)(w)                   # values unknown while tracing
    scale = np.asarray(q.scale)
    assert np.isnan(scale[5]) and np.isinf(scale[20])
    x = jax.random.normal(jax.random.key(0), (4, IN))
    for threshold in (6.0, 0.0):
        y = np.asarray(jaxint8.llm_int8_matmul(x, q, threshold=threshold))
        assert not np.any(np.isfinite(y[:, [5, 20]]))           # never silently finite
        assert np.all(np.isfinite(np.delete(y, [5, 20], axis=1)))


# ------------------------------------------------------------------------ the models' side
def test_quant_config_rejects_bad_threshold():
    from jaxint8.models import QuantConfig

    with pytest.raises(ValueError, match="QuantConfig.threshold must be a finite number >= 0"):
        QuantConfig(int8=True, threshold=math.inf)
    assert QuantConfig(int8=True, threshold=None).threshold is None


def test_checkpoint_with_swapped_weight_says_so(tmp_path):
    from safetensors.numpy import save_file

    from jaxint8.models.loading import CheckpointError, CheckpointReader

    save_file({"fc.weight": np.zeros((IN, OUT), np.float32)}, str(tmp_path / "model.safetensors"))
    with CheckpointReader(tmp_path) as reader:
        with pytest.raises(CheckpointError, match=r"shape \(16, 32\), but config.json implies "
                                                  r"\(32, 16\).*in/out axes swapped"):
            reader.read("fc.weight", (OUT, IN), "fc/kernel")


@pytest.mark.parametrize("name", ["jaxint8.weights", "jaxint8.flax", "jaxint8.flax.linen",
                                  "jaxint8.flax.nnx", "jaxint8.flax.convert", "jaxint8.flax.group"])
def test_docstring_examples(name):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0
