"""Training on an int8 base: freeze_int8 (linen), nnx.Optimizer / nnx.LoRA (nnx), LoRA on Llama."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

optax = pytest.importorskip("optax")

from jaxint8.flax import (Int8Dense, QuantizedArray, freeze_int8,  # noqa: E402
                          quantize_linear_layers, trainable_mask)


def _same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(Int8Dense(32, name="fc1")(x))
        x = nn.LayerNorm(name="norm")(x)
        return Int8Dense(4, name="fc2")(x)


def _data():
    x = jax.random.normal(jax.random.key(1), (16, 8))
    return x, jax.random.normal(jax.random.key(2), (16, 4))


def test_masked_optax_alone_fails_on_float0():
    # The failure freeze_int8 exists for (documented in trainable_mask / freeze_int8).
    x, t = _data()
    params = MLP().init(jax.random.key(0), x)["params"]
    grads = jax.grad(lambda p: jnp.mean((MLP().apply({"params": p}, x) - t) ** 2),
                     allow_int=True)(params)
    tx = optax.masked(optax.adam(1e-2), trainable_mask(params))
    updates, _ = tx.update(grads, tx.init(params), params)
    with pytest.raises(TypeError, match="float0"):
        optax.apply_updates(params, updates)


def test_trainable_mask_on_params_and_grads_agree():
    x, t = _data()
    params = MLP().init(jax.random.key(0), x)["params"]
    grads = jax.grad(lambda p: jnp.sum(MLP().apply({"params": p}, x)), allow_int=True)(params)
    assert grads["fc1"]["kernel"].dtype == jax.dtypes.float0
    assert trainable_mask(grads) == trainable_mask(params)
    assert trainable_mask(params)["fc1"] == {"kernel": False, "scale": False, "bias": True}


@pytest.mark.parametrize("pass_params", [True, False])
def test_linen_loop_trains_floats_and_keeps_int8(pass_params):
    x, t = _data()
    model = MLP()
    params = model.init(jax.random.key(0), x)["params"]
    tx = freeze_int8(optax.adam(1e-2))
    state = tx.init(params)

    def loss(p):
        return jnp.mean((model.apply({"params": p}, x) - t) ** 2)

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss, allow_int=True)(p)
        updates, s = tx.update(grads, s, p if pass_params else None)
        return optax.apply_updates(p, updates), s, value

    p, losses = params, []
    for _ in range(10):
        p, state, value = step(p, state)
        losses.append(float(value))
    assert losses[-1] < 0.8 * losses[0]
    for name in ("fc1", "fc2"):
        for k in ("kernel", "scale"):
            assert _same(p[name][k], params[name][k])       # bit-identical, same dtype
        assert not np.array_equal(p[name]["bias"], params[name]["bias"])
    # No optimizer state for the frozen leaves.
    n_state = sum(a.size for a in jax.tree.leaves(state) if a.ndim)
    n_float = sum(a.size for a, m in zip(jax.tree.leaves(params),
                                         jax.tree.leaves(trainable_mask(params))) if m)
    assert n_state == 2 * n_float   # adam's mu and nu


def test_trainable_prefix_freezes_more():
    x, t = _data()
    params = MLP().init(jax.random.key(0), x)["params"]
    tx = freeze_int8(optax.sgd(0.1), trainable={"fc1": False, "fc2": True, "norm": False})
    grads = jax.grad(lambda p: jnp.mean((MLP().apply({"params": p}, x) - t) ** 2),
                     allow_int=True)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert _same(new["fc1"], params["fc1"]) and _same(new["norm"], params["norm"])
    assert not np.array_equal(new["fc2"]["bias"], params["fc2"]["bias"])
    with pytest.raises(ValueError, match="trainable must be a bool pytree"):
        freeze_int8(optax.sgd(0.1), trainable={"nope": True}).init(params)
    with pytest.raises(TypeError, match="GradientTransformation"):
        freeze_int8(lambda g: g)


# --------------------------------------------------------------------------- nnx

class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(8, 32, rngs=rngs)
        self.fc2 = nnx.Linear(32, 4, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.relu(self.fc1(x)))


def _int8_state(model):
    return jax.tree.map(np.asarray, nnx.state(model, QuantizedArray))


def test_nnx_optimizer_trains_params_and_keeps_int8():
    x, t = _data()
    model = quantize_linear_layers(NnxMLP(nnx.Rngs(0)))
    frozen = _int8_state(model)
    assert jax.tree.leaves(frozen)
    opt = nnx.Optimizer(model, optax.adam(5e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt):
        value, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - t) ** 2))(model)
        opt.update(model, grads)
        return value

    losses = [float(step(model, opt)) for _ in range(10)]
    assert losses[-1] < 0.9 * losses[0], losses     # only the biases train
    assert _same(_int8_state(model), frozen)


def test_nnx_lora_on_int8_linear():
    x, t = _data()
    base = quantize_linear_layers(NnxMLP(nnx.Rngs(0)))
    frozen = jax.tree.map(np.asarray, nnx.state(base))
    rngs = nnx.Rngs(1)
    base.fc1 = nnx.LoRA(8, 4, 32, base_module=base.fc1, rngs=rngs)
    base.fc2 = nnx.LoRA(32, 4, 4, base_module=base.fc2, rngs=rngs)
    opt = nnx.Optimizer(base, optax.adam(1e-2), wrt=nnx.LoRAParam)

    @nnx.jit
    def step(model, opt):
        diff = nnx.DiffState(0, nnx.LoRAParam)
        value, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - t) ** 2),
                                          argnums=diff)(model)
        opt.update(model, grads)
        return value

    losses = [float(step(base, opt)) for _ in range(20)]
    assert losses[-1] < 0.8 * losses[0]
    after = jax.tree.map(np.asarray, {"fc1": nnx.state(base.fc1.base_module),
                                      "fc2": nnx.state(base.fc2.base_module)})
    assert _same(after, {"fc1": frozen["fc1"], "fc2": frozen["fc2"]})


# --------------------------------------------------------------------------- LoRA on int8 Llama

def _lora_init(params, key, rank):
    """LoRA factors for every Int8Dense entry of ``params``, keyed by its module path."""
    lora = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = tuple(p.key for p in path)
        if names[-1] == "kernel" and leaf.dtype == jnp.int8:
            out_features, in_features = leaf.shape
            key, sub = jax.random.split(key)
            lora["/".join(names[:-1])] = {
                "a": jax.random.normal(sub, (in_features, rank)) / in_features ** 0.5,
                "b": jnp.zeros((rank, out_features))}
    return lora


def _with_lora(lora):
    """Adds ``x @ a @ b`` to the output of every Int8Dense that has adapters."""
    def intercept(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        adapter = lora.get("/".join(context.module.scope.path))
        if (adapter is not None and isinstance(context.module, Int8Dense)
                and context.method_name == "__call__" and not kwargs.get("return_weight")):
            y = y + ((args[0] @ adapter["a"]) @ adapter["b"]).astype(y.dtype)
        return y
    return nn.intercept_methods(intercept)


def test_lora_on_int8_llama_loss_goes_down():
    from jaxint8.models import LlamaForCausalLM, ModelConfig
    from jaxint8.models.config import QuantConfig

    cfg = ModelConfig.from_hf_dict({
        "model_type": "llama", "vocab_size": 128, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128})
    # group=False: each projection is its own Int8Dense call, which the adapters intercept.
    model = LlamaForCausalLM(cfg, quant=QuantConfig(int8=True, group=False))
    ids = jax.random.randint(jax.random.key(1), (4, 16), 0, cfg.vocab_size)
    params = model.init(jax.random.key(0), ids)["params"]
    assert params["layers_0"]["self_attn"]["q_proj"]["kernel"].dtype == jnp.int8

    def loss_fn(tree, ids):
        with _with_lora(tree["lora"]):
            logits = model.apply({"params": tree["params"]}, ids[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()

    tree = {"params": params, "lora": _lora_init(params, jax.random.key(2), rank=4)}
    assert len(tree["lora"]) == 2 * 7   # q, k, v, o, gate, up, down per layer (lm_head is float)
    tx = freeze_int8(optax.adam(3e-2), trainable={"params": False, "lora": True})
    state = tx.init(tree)

    @jax.jit
    def step(tree, state, ids):
        loss, grads = jax.value_and_grad(loss_fn, allow_int=True)(tree, ids)
        updates, state = tx.update(grads, state, tree)
        return optax.apply_updates(tree, updates), state, loss

    losses = []
    for _ in range(20):
        tree, state, loss = step(tree, state, ids)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    assert _same(tree["params"], params)      # the whole base, int8 and float, unchanged


def test_docstring_examples():
    import doctest
    import importlib

    for name in ("jaxint8.flax.train", "jaxint8.flax.convert"):
        res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert res.failed == 0 and res.attempted > 0, name
