"""LLM.int8 matmul under NamedSharding on 8 virtual CPU devices (tests/conftest.py sets them).

Every layout (data, column, row parallel and their 2-D combinations) must equal the 1-device
result (bit-exact where no float sum is split, else up to float reassociation), the compiled HLO
must hold exactly the documented collectives and never an int8 one (the weight is not gathered),
and grad / vmap / explicit-sharding meshes / the GSPMD partitioner / the Megatron recipe for the
GPT-2 model must work. On a multi-GPU machine the same tests run on the GPUs (if >= 2 of them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import jaxint8
from jaxint8 import reference
from jaxint8.sharding import (data_sharding, hlo_collectives, param_specs, shard_params,
                              weight_collectives)

DEVICES = jax.devices()
pytestmark = pytest.mark.skipif(len(DEVICES) < 2, reason="needs >= 2 devices")
NDEV = 8 if len(DEVICES) >= 8 else (4 if len(DEVICES) >= 4 else 2)
S, H, O = 64, 128, 96  # tokens, in features, out features (divisible by 8)
# On CPU the kernels are deterministic per element, so layouts that split no float sum are
# bit-exact; GPU GEMMs may pick other tilings for other shapes: compare with a tolerance there.
EXACT = jax.default_backend() == "cpu"


def mesh2d(explicit=False):
    """(data, model) mesh over NDEV devices: 2 x 4 on 8 devices, 2 x 2 on 4, 1 x 2 on 2."""
    shape = {8: (2, 4), 4: (2, 2), 2: (1, 2)}[NDEV]
    kind = AxisType.Explicit if explicit else AxisType.Auto
    return jax.make_mesh(shape, ("data", "model"), axis_types=(kind, kind),
                         devices=DEVICES[:NDEV])


def mesh1d(name):
    return jax.make_mesh((NDEV,), (name,), axis_types=(AxisType.Auto,), devices=DEVICES[:NDEV])


def problem(dtype=jnp.float32, seed=0):
    """x with outliers placed so that a per-shard computation would differ from 1 device."""
    kx, kw, kb = jax.random.split(jax.random.key(seed), 3)
    x = np.array(jax.random.normal(kx, (S, H), jnp.float32))
    x[5, 3] = 9.0        # outlier column 3: only in the first token shard
    x[S - 2, 70] = -11.0  # outlier column 70: only in the last token shard, last column shards
    x[S // 2 + 1, 100] = 7.5
    x[:, 17] *= 4.0       # large but below the threshold: the row scale lives in one h shard
    x[9, 40] = 5.9
    w = 0.05 * jax.random.normal(kw, (H, O), jnp.float32)
    q = jaxint8.quantize_weight(w)
    bias = 0.1 * jax.random.normal(kb, (O,), jnp.float32)
    return jnp.asarray(x, dtype), q.qweight, q.scale, bias


def assert_same(got, want):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    if EXACT:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def matmul_fn(threshold, with_bias, out_dtype=None):
    def f(x, qw, sc, b):
        return jaxint8.llm_int8_matmul(x, jaxint8.Int8Weight(qw, sc), b if with_bias else None,
                                       threshold=threshold, out_dtype=out_dtype)
    return f


def place(mesh, x, qw, sc, b, x_spec, w_spec):
    put = lambda a, s: jax.device_put(a, NamedSharding(mesh, s))  # noqa: E731
    o_spec = P(w_spec[0]) if len(w_spec) else P()
    return put(x, x_spec), put(qw, w_spec), put(sc, o_spec), put(b, o_spec)


# name -> (mesh kind, x spec, weight spec, expected collectives as (op, shape) multiset)
# Shapes are per device; "s", "h", "o" in the comments: local sizes.
def layouts():
    m = {8: 4, 4: 2, 2: 2}[NDEV]  # model-axis size
    d = NDEV // m                   # data-axis size
    out = {
        # data parallel: pmax of col_amax [h] over the token shards.
        "data": ("1d", P("d"), P(), [("all-reduce", (H,), "col")]),
        # column parallel: no communication.
        "column": ("2d", P(), P("model", None), []),
        # row parallel: pmax of row scales [s] and psum of f32 partials [s, o].
        "row": ("2d", P(None, "model"), P(None, "model"), [("all-reduce", (S,)),
                                                           ("all-reduce", (S, O))]),
        # row parallel with a replicated x: x is sliced locally (no extra communication).
        "row_x_replicated": ("2d", P(), P(None, "model"), [("all-reduce", (S,)),
                                                           ("all-reduce", (S, O))]),
        # 2-D: data x column.
        "data_column": ("2d", P("data"), P("model", None),
                        [("all-reduce", (H,), "col")] if d > 1 else []),
        # 2-D: data x row: col_amax of the local columns over data, rows over model.
        "data_row": ("2d", P("data", "model"), P(None, "model"),
                     ([("all-reduce", (H // m,), "col")] if d > 1 else [])
                     + [("all-reduce", (S // d,)), ("all-reduce", (S // d, O))]),
        # weight split on both dims (o over model, h over data): x's token axis replicated.
        "weight_2d": ("2d", P(), P("model", "data"),
                      [("all-reduce", (S,)), ("all-reduce", (S, O // m))] if d > 1 else []),
    }
    return out


LAYOUTS = layouts()


def _collective_shapes(hlo):
    return sorted((c["op"], c["types"][0][1]) for c in hlo_collectives(hlo))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype,threshold,with_bias", [
    (jnp.float32, 6.0, True), (jnp.bfloat16, 6.0, False), (jnp.float32, 0.0, False)])
def test_layout_equals_one_device_and_hlo_has_only_documented_collectives(
        name, dtype, threshold, with_bias):
    kind, x_spec, w_spec, expected = LAYOUTS[name]
    mesh = mesh1d("d") if kind == "1d" else mesh2d()
    x, qw, sc, b = problem(dtype)
    f = jax.jit(matmul_fn(threshold, with_bias))
    want = np.asarray(f(x, qw, sc, b).astype(jnp.float32))  # 1 device (committed nowhere)
    args = place(mesh, x, qw, sc, b, x_spec, w_spec)
    compiled = f.lower(*args).compile()
    got = compiled(*args)
    assert got.shape == (S, O) and got.dtype == dtype
    got = np.asarray(got.astype(jnp.float32))
    h_split = len(w_spec) > 1 and w_spec[1] is not None
    if not h_split and EXACT:
        np.testing.assert_array_equal(got, want)  # nothing summed across devices: bit-exact
    elif dtype == jnp.float32:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:  # float32 partial sums, one bf16 rounding at the end: at most 1 bf16 ulp apart
        np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=1e-2)
    # ... and the oracle agrees (sanity of the planted outliers).
    ref = reference.llm_int8_matmul(x, qw, sc, b if with_bias else None, threshold=threshold)
    np.testing.assert_allclose(got, np.asarray(ref.astype(jnp.float32)), rtol=2e-2, atol=2e-2)

    hlo = compiled.as_text()
    assert weight_collectives(hlo) == [], "the int8 weight was moved:\n" + "\n".join(
        c["line"] for c in weight_collectives(hlo))
    # col_amax ("col") is only reduced when there is an outlier decomposition.
    want_coll = [c[:2] for c in expected if threshold or c[2:] != ("col",)]
    assert _collective_shapes(hlo) == sorted(want_coll), hlo_collectives(hlo)


def test_data_parallel_outlier_set_is_the_union_over_shards():
    # Without the all-reduce of the column absmax, shard 0 would treat column 70 as a regular
    # column (quantizing it into its row scales) and the result would differ from 1 device.
    mesh = mesh1d("d")
    x, qw, sc, b = problem()
    x = x.at[:, 70].set(x[:, 70] + 3.0)  # large-ish everywhere, >= 6 only in the last shard
    f = jax.jit(matmul_fn(6.0, False))
    want = f(x, qw, sc, b)
    got = f(*place(mesh, x, qw, sc, b, P("d"), P()))
    assert_same(got, want)
    per_shard = jnp.concatenate([f(xs, qw, sc, b) for xs in jnp.split(x, NDEV)])
    assert not np.array_equal(np.asarray(per_shard), np.asarray(want))


def _group_problem():
    """x, three (qweight, scale, bias) sharing it (q/k/v-like; the third has no bias)."""
    x, qw, sc, b = problem()
    ws = [(qw, sc, b)]
    for seed, o in ((1, O), (2, O // 2)):
        q = jaxint8.quantize_weight(0.05 * jax.random.normal(jax.random.key(seed), (H, o)))
        ws.append((q.qweight, q.scale, None))
    return x, ws


def _group_fn(threshold):
    def f(x, *flat):
        weights = [jaxint8.Int8Weight(flat[i], flat[i + 1]) for i in range(0, len(flat), 3)]
        biases = [flat[i + 2] for i in range(0, len(flat), 3)]
        return jaxint8.llm_int8_matmul_group(x, weights, biases, threshold=threshold)
    return f


def _place_group(mesh, x, ws, x_spec, w_specs):
    put = lambda a, sp: a if a is None else jax.device_put(a, NamedSharding(mesh, sp))  # noqa: E731
    flat = []
    for (q, s, b), w_spec in zip(ws, w_specs):
        o_spec = P(w_spec[0]) if len(w_spec) else P()
        flat += [put(q, w_spec), put(s, o_spec), put(b, o_spec)]
    return put(x, x_spec), flat


@pytest.mark.parametrize("name", ["data", "column", "row", "data_column", "data_row"])
def test_group_under_sharding_equals_one_device(name):
    # Grouped weights sharded alike: the same plan as one weight, no weight moves, and for the
    # layouts without a reduction (column, data) the grouped kernel runs per shard.
    kind, x_spec, w_spec, _ = LAYOUTS[name]
    mesh = mesh1d("d") if kind == "1d" else mesh2d()
    x, ws = _group_problem()
    f = jax.jit(_group_fn(6.0))
    flat = [a for w in ws for a in w]
    want = f(x, *flat)
    xs, flat_s = _place_group(mesh, x, ws, x_spec, [w_spec] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no resharding warning
        compiled = f.lower(xs, *flat_s).compile()
    got = compiled(xs, *flat_s)
    for g, w in zip(got, want):
        if len(w_spec) > 1 and w_spec[1] is not None:  # h split: float partial sums
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)
        else:
            assert_same(g, w)
    hlo = compiled.as_text()
    assert weight_collectives(hlo) == []
    if name == "column":
        assert hlo_collectives(hlo) == [] and "jaxint8_llm_int8_matmul_group" in hlo


def test_group_with_differently_sharded_weights_warns_and_stays_correct():
    mesh = mesh2d()
    x, ws = _group_problem()
    f = jax.jit(_group_fn(6.0))
    want = f(x, *[a for w in ws for a in w])
    xs, flat_s = _place_group(mesh, x, ws, P(), [P("model", None), P(None, "model"), P()])
    with pytest.warns(RuntimeWarning, match="resharded"):
        got = f(xs, *flat_s)
    for g, w in zip(got, want):
        assert_same(g, w)


@pytest.mark.parametrize("name", ["data", "column", "row", "data_row"])
def test_grad_under_sharding_equals_one_device(name):
    kind, x_spec, w_spec, _ = LAYOUTS[name]
    mesh = mesh1d("d") if kind == "1d" else mesh2d()
    x, qw, sc, b = problem()
    f = matmul_fn(6.0, True)
    loss = lambda x, qw, sc, b: jnp.sum(jnp.sin(f(x, qw, sc, b)))  # noqa: E731
    g = jax.jit(jax.grad(loss, argnums=(0, 3)))
    want = g(x, qw, sc, b)
    args = place(mesh, x, qw, sc, b, x_spec, w_spec)
    compiled = g.lower(*args).compile()
    got = compiled(*args)
    for gv, wv in zip(got, want):
        np.testing.assert_allclose(np.asarray(gv), np.asarray(wv), rtol=1e-4, atol=1e-5)
    assert weight_collectives(compiled.as_text()) == []


@pytest.mark.parametrize("x_spec,w_spec", [
    (P("data"), P("model", None)),                   # vmapped axis over data, column parallel
    (P(None, "data", "model"), P(None, "model")),    # tokens over data, row parallel
])
def test_vmap_under_sharding_is_partitioned_too(x_spec, w_spec):
    # Each mapped element has its own outlier set; the batched op keeps the partitioning rules
    # (one more leading factor), so the weight still does not move.
    mesh = mesh2d()
    x, qw, sc, b = problem()
    xs = jnp.stack([x, 2.0 * x[::-1]])
    f = jax.jit(jax.vmap(matmul_fn(6.0, True), in_axes=(0, None, None, None)))
    want = f(xs, qw, sc, b)
    put = lambda a, s: jax.device_put(a, NamedSharding(mesh, s))  # noqa: E731
    o_spec = P(w_spec[0])
    args = (put(xs, x_spec), put(qw, w_spec), put(sc, o_spec), put(b, o_spec))
    compiled = f.lower(*args).compile()
    got = compiled(*args)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    per_elem = jnp.stack([jax.jit(matmul_fn(6.0, True))(e, qw, sc, b) for e in xs])
    np.testing.assert_allclose(np.asarray(got), np.asarray(per_elem), rtol=1e-5, atol=1e-5)
    assert weight_collectives(compiled.as_text()) == []
    assert not [c for c in hlo_collectives(compiled.as_text()) if c["op"] == "all-gather"]


@pytest.mark.parametrize("name", ["data_column", "data_row"])
def test_explicit_sharding_mesh(name):
    # jax.make_mesh's default axis type is Explicit (shardings in the types).
    _, x_spec, w_spec, _ = LAYOUTS[name]
    mesh = mesh2d(explicit=True)
    x, qw, sc, b = problem()
    f = jax.jit(matmul_fn(6.0, True))
    want = f(x, qw, sc, b)
    got = f(*place(mesh, x, qw, sc, b, x_spec, w_spec))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # the type says where y is
    assert jax.typeof(got).sharding.spec[0] == ("data" if mesh.shape["data"] > 1 else None)


def test_explicit_mesh_grad_data_parallel():
    mesh = mesh2d(explicit=True)
    x, qw, sc, b = problem()
    loss = lambda x: jnp.sum(matmul_fn(6.0, True)(x, qw, sc, b) ** 2)  # noqa: E731
    want = jax.jit(jax.grad(loss))(x)
    got = jax.jit(jax.grad(loss))(jax.device_put(x, NamedSharding(mesh, P("data"))))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["data_column", "data_row"])
def test_explicit_mesh_grad_tensor_parallel(name):
    _, x_spec, w_spec, _ = LAYOUTS[name]
    mesh = mesh2d(explicit=True)
    x, qw, sc, b = problem()
    loss = lambda *a: jnp.sum(jnp.sin(matmul_fn(6.0, True)(*a)))  # noqa: E731
    g = jax.jit(jax.grad(loss, argnums=(0, 3)))
    want = g(x, qw, sc, b)
    got = g(*place(mesh, x, qw, sc, b, x_spec, w_spec))
    for gv, wv in zip(got, want):
        np.testing.assert_allclose(np.asarray(gv), np.asarray(wv), rtol=1e-4, atol=1e-4)


def test_gspmd_partitioner():
    prev = jax.config.jax_use_shardy_partitioner
    jax.config.update("jax_use_shardy_partitioner", False)
    try:
        for name in ("data_row",):
            _, x_spec, w_spec, _ = LAYOUTS[name]
            mesh = mesh2d()
            x, qw, sc, b = problem()
            f = jax.jit(matmul_fn(6.0, True))
            want = f(x, qw, sc, b)
            args = place(mesh, x, qw, sc, b, x_spec, w_spec)
            compiled = f.lower(*args).compile()
            np.testing.assert_allclose(np.asarray(compiled(*args)), np.asarray(want),
                                       rtol=1e-5, atol=1e-5)
            assert weight_collectives(compiled.as_text()) == []
    finally:
        jax.config.update("jax_use_shardy_partitioner", prev)


@pytest.mark.parametrize("w_spec", [P(None, "model", None), P(None, None, "model")])
def test_scanned_layers_with_remat_under_grad(w_spec):
    # Stacked weights [L, o, h] sharded per layer, lax.scan + jax.checkpoint, value_and_grad.
    mesh = mesh2d()
    n_layers, h = 3, 128
    x = problem()[0][:, :h]
    qs = [jaxint8.quantize_weight(0.05 * jax.random.normal(jax.random.key(i), (h, h)))
          for i in range(n_layers)]
    stack_q, stack_s = jnp.stack([q.qweight for q in qs]), jnp.stack([q.scale for q in qs])

    def body(c, qs):
        return jnp.tanh(jaxint8.llm_int8_matmul(c, jaxint8.Int8Weight(*qs))), None

    loss = lambda x, q, s: jnp.sum(jax.lax.scan(jax.checkpoint(body), x, (q, s))[0] ** 2)  # noqa
    g = jax.jit(jax.value_and_grad(loss))
    want = g(x, stack_q, stack_s)
    put = lambda a, s: jax.device_put(a, NamedSharding(mesh, s))  # noqa: E731
    args = (put(x, P("data")), put(stack_q, w_spec), put(stack_s, P(None, w_spec[1])))
    compiled = g.lower(*args).compile()
    got = compiled(*args)
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-4, atol=1e-5)
    assert weight_collectives(compiled.as_text()) == []


def test_uneven_out_features_fall_back_to_replicated_and_stay_correct():
    mesh = mesh2d()
    o = 90  # not divisible by the model axis
    x, _, _, _ = problem()
    q = jaxint8.quantize_weight(0.05 * jax.random.normal(jax.random.key(3), (H, o)))
    b = jnp.zeros((o,), jnp.float32)
    f = jax.jit(matmul_fn(6.0, True))
    want = f(x, q.qweight, q.scale, b)
    got = f(jax.device_put(x, NamedSharding(mesh, P("data"))), q.qweight, q.scale, b)
    assert_same(got, want)


# ----------------------------------------------------------------------------- recipe

def _gpt2():
    models = pytest.importorskip("jaxint8.models")
    from jaxint8.models.config import QuantConfig

    cfg = models.ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 128, "n_embd": 64,
                                           "n_layer": 1, "n_head": 4, "n_positions": 64})
    return models.GPT2LMHeadModel(cfg, quant=QuantConfig(int8=True, threshold=6.0))


def _random_params(shapes):
    """Concrete params for a tree of ShapeDtypeStruct, from numpy (no init compile)."""
    rng = np.random.default_rng(0)

    def fill(path, sd):
        name = str(getattr(path[-1], "key", path[-1]))
        if sd.dtype == jnp.int8:
            return jnp.asarray(rng.integers(-127, 128, sd.shape), jnp.int8)
        if name == "scale" and len(sd.shape) == 1:  # int8 column scales / norm scales
            return jnp.asarray(rng.uniform(0.5, 1.5, sd.shape), sd.dtype)
        v = 0.3 * rng.standard_normal(sd.shape)
        if name == "embedding":
            v[:, 5] = 8.0  # an outlier feature in the residual stream
        return jnp.asarray(v, sd.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def test_param_specs_megatron_recipe():
    model = _gpt2()
    mesh = mesh2d()
    ids = jnp.zeros((2, 8), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), ids)
    specs = param_specs(shapes, mesh)["params"]
    attn, mlp = specs["h_0"]["attn"], specs["h_0"]["mlp"]
    assert attn["c_attn"]["kernel"] == P("model", None)  # int8 [out, in]: column
    assert attn["c_attn"]["scale"] == P("model") and attn["c_attn"]["bias"] == P("model")
    assert attn["c_proj"]["kernel"] == P(None, "model")  # row
    assert attn["c_proj"]["scale"] == P() and attn["c_proj"]["bias"] == P()
    assert mlp["c_fc"]["kernel"] == P("model", None) and mlp["c_proj"]["kernel"] == P(None, "model")
    assert specs["h_0"]["ln_1"]["scale"] == P() and specs["wte"]["embedding"] == P()
    # float nn.Dense kernels are [in, out]
    dense = {"q_proj": {"kernel": jax.ShapeDtypeStruct((16, 32), jnp.float32)},
             "o_proj": {"kernel": jax.ShapeDtypeStruct((32, 16), jnp.float32)}}
    ds = param_specs(dense, mesh)
    assert ds["q_proj"]["kernel"] == P(None, "model") and ds["o_proj"]["kernel"] == P("model", None)


def test_gpt2_tensor_parallel_equals_one_device():
    model = _gpt2()
    mesh = mesh2d()
    ids = jax.random.randint(jax.random.key(1), (2, 16), 0, 128)
    variables = _random_params(jax.eval_shape(model.init, jax.random.key(0), ids))
    apply = jax.jit(model.apply)
    want = apply(variables, ids)
    sharded = shard_params(variables, mesh)
    ids_s = jax.device_put(ids, data_sharding(mesh, 2))
    compiled = apply.lower(sharded, ids_s).compile()
    got = compiled(sharded, ids_s)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
    assert weight_collectives(compiled.as_text()) == []


def test_llama_style_block_mixed_int8_and_float_dense():
    # Llama names: q/k/v/o_proj, gate/up/down_proj; o_proj left as a float nn.Dense.
    import flax.linen as nn

    from jaxint8.flax import Int8Dense

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            q, k, v = (Int8Dense(64, use_bias=False, name=n)(x) for n in ("q_proj", "k_proj",
                                                                          "v_proj"))
            x = x + nn.Dense(32, use_bias=False, name="o_proj")(q * k + v)
            g = Int8Dense(128, use_bias=False, name="gate_proj")(x)
            u = Int8Dense(128, use_bias=False, name="up_proj")(x)
            return x + Int8Dense(32, use_bias=False, name="down_proj")(jax.nn.silu(g) * u)

    mesh = mesh2d()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 8, 32)), jnp.float32)
    x = x.at[..., 3].set(9.0)
    block = Block()
    variables = _random_params(jax.eval_shape(block.init, jax.random.key(0), x))
    specs = param_specs(variables, mesh)["params"]
    assert specs["o_proj"]["kernel"] == P("model", None)      # float row parallel
    assert specs["down_proj"]["kernel"] == P(None, "model")   # int8 row parallel
    assert specs["gate_proj"]["kernel"] == P("model", None)   # int8 column parallel
    apply = jax.jit(block.apply)
    want = apply(variables, x)
    sharded = shard_params(variables, mesh)
    xs = jax.device_put(x, data_sharding(mesh, 3))
    compiled = apply.lower(sharded, xs).compile()
    np.testing.assert_allclose(np.asarray(compiled(sharded, xs)), np.asarray(want),
                               rtol=1e-4, atol=1e-3)
    assert weight_collectives(compiled.as_text()) == []


# ----------------------------------------------------------------------------- multi-process

def test_two_process_jax_distributed_on_cpu(tmp_path):
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU 2-process test; on GPUs run benchmarks/multihost.py by hand")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "benchmarks", "multihost.py")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, script, "--launch", "2", "--local-devices", "4",
                           "--cpu"], env=env, cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MULTIHOST OK" in proc.stdout, proc.stdout[-3000:]
