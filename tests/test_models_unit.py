"""jaxint8.models without `transformers`: configs, the int8 switch, save/load, generation."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxint8.models import (
    ConfigError,
    GenerationConfig,
    ModelConfig,
    abstract_params,
    QuantConfig,
    build_model,
    generate,
    load_quantized,
    quantize_model,
    save_quantized,
)
from jaxint8.models import generation as gen_mod
from jaxint8.models.generation import sample_logits

HF = {
    "gpt2": {
        "model_type": "gpt2",
        "vocab_size": 96,
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 4,
        "n_positions": 256,
        "eos_token_id": 2,
    },
    "opt": {
        "model_type": "opt",
        "vocab_size": 96,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "ffn_dim": 64,
        "num_attention_heads": 4,
        "max_position_embeddings": 256,
        "do_layer_norm_before": False,
        "word_embed_proj_dim": 16,
        "eos_token_id": 2,
        "pad_token_id": 1,
    },
    "llama": {
        "model_type": "llama",
        "vocab_size": 96,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "eos_token_id": 2,
    },
}


@functools.lru_cache(maxsize=None)
def _float(arch):
    """A float model with random params (numpy-drawn: no init compile)."""
    model = build_model(ModelConfig.from_hf_dict(HF[arch]))
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: jnp.asarray(0.2 * rng.normal(size=s.shape), s.dtype), abstract_params(model)
    )
    return model, params


def _init(arch, quant=None):
    model, params = _float(arch)
    return quantize_model(model, params, quant) if quant is not None and quant.int8 else (model, params)


def _apply(model, params, ids):
    return jax.jit(model.apply)({"params": params}, ids)


def _ids(shape=(2, 7), seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(3, 96, size=shape), jnp.int32)


def test_unsupported_model_type_names_field():
    with pytest.raises(ConfigError, match="unsupported model_type 't5'"):
        ModelConfig.from_hf_dict({"model_type": "t5"})


def test_missing_config_field_is_named():
    d = dict(HF["llama"])
    del d["intermediate_size"]
    with pytest.raises(ConfigError, match="'intermediate_size'"):
        ModelConfig.from_hf_dict(d)


def test_unsupported_rope_type_is_named():
    d = {**HF["llama"], "rope_scaling": {"rope_type": "yarn", "factor": 2.0}}
    with pytest.raises(ConfigError, match="yarn"):
        ModelConfig.from_hf_dict(d)


@pytest.mark.parametrize("arch", list(HF))
def test_int8_switch_and_skip(arch):
    params = abstract_params(
        build_model(ModelConfig.from_hf_dict(HF[arch]), QuantConfig(int8=True, skip=("lm_head", "*_1.*")))
    )
    flat = {"/".join(str(k.key) for k in p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    int8 = [k for k, v in flat.items() if v.dtype == jnp.int8]
    assert int8 and all("_0/" in k or k.startswith("project_") for k in int8), int8
    assert not any(k.startswith("lm_head") for k in int8)
    # Every int8 kernel has a float32 scale; embeddings stay float.
    assert all(flat[k[: -len("kernel")] + "scale"].dtype == jnp.float32 for k in int8)


@pytest.mark.parametrize("arch", list(HF))
def test_quantize_model_close_to_float(arch):
    model, params = _init(arch)
    model8, params8 = quantize_model(model, params, QuantConfig(int8=True, skip=()))  # lm_head too
    assert params8["lm_head"]["kernel"].dtype == jnp.int8
    ids = _ids()
    ref = _apply(model, params, ids)
    out = _apply(model8, params8, ids)
    err = float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref))
    assert 0 < err < 5e-2


@pytest.mark.parametrize("arch", ["opt", "llama"])
def test_grouped_projections_same_logits_fewer_calls(arch):
    """q/k/v (and Llama's gate/up) on one quantized input: same params, logits bit for bit."""
    model, params = _init(arch)
    model_g, params_g = quantize_model(model, params, QuantConfig(int8=True, group=True))
    model_s, params_s = quantize_model(model, params, QuantConfig(int8=True, group=False))
    assert jax.tree.structure(params_g) == jax.tree.structure(params_s)
    ids = _ids()
    np.testing.assert_array_equal(np.asarray(_apply(model_g, params_g, ids)),
                                  np.asarray(_apply(model_s, params_s, ids)))
    hlo = {g: jax.jit(m.apply).lower({"params": p}, ids).as_text()
           for g, m, p in ((True, model_g, params_g), (False, model_s, params_s))}
    layers = HF[arch]["num_hidden_layers"]
    grouped_per_layer = 1 if arch == "opt" else 2  # q/k/v; Llama also gate/up
    assert hlo[True].count("jaxint8_llm_int8_matmul_group") == layers * grouped_per_layer
    saved = layers * (2 if arch == "opt" else 3)  # calls saved per layer: 3 -> 1 (and 2 -> 1)
    assert hlo[True].count("custom_call") == hlo[False].count("custom_call") - saved


@pytest.mark.parametrize("shard", [None, 4096])
def test_save_load_quantized_roundtrip(tmp_path, shard):
    model, params = _init("opt", QuantConfig(int8=True, threshold=4.0))
    save_quantized(tmp_path, model, params, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / "model.safetensors.index.json").exists() == bool(shard)
    assert (len(list(tmp_path.glob("*.safetensors"))) > 1) == bool(shard)
    model2, params2 = load_quantized(tmp_path)
    assert model2.quant == model.quant and model2.config == model.config
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, params2)
    ids = _ids()
    np.testing.assert_array_equal(_apply(model, params, ids), _apply(model2, params2, ids))


def test_load_quantized_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="jaxint8_config.json"):
        load_quantized(tmp_path)
    model, params = _init("gpt2", QuantConfig(int8=True))
    save_quantized(tmp_path, model, params)
    meta = json.loads((tmp_path / "jaxint8_config.json").read_text())
    meta["hf_config"]["n_embd"] = 64
    (tmp_path / "jaxint8_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"tensor 'h_0\..*' .*has shape"):
        load_quantized(tmp_path)


@pytest.mark.parametrize("arch", list(HF))
def test_cached_decoding_matches_full_forward(arch):
    """Greedy generation must equal re-running the full (uncached) model on the growing sequence."""
    model, params = _init(arch, QuantConfig(int8=True))
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    new = 4
    out = generate(model, params, prompts, max_new_tokens=new, bucket=8, eos_token_id=())
    # Reference: the uncached model on the full sequence, right-padded to a fixed length (one compile).
    apply = jax.jit(model.apply)
    for p, row in zip(prompts, out):
        seq = list(p)
        for _ in range(new):
            ids = jnp.asarray([seq + [0] * (16 - len(seq))], jnp.int32)
            logits = apply({"params": params}, ids)
            seq.append(int(jnp.argmax(logits[0, len(seq) - 1])))
        assert list(row) == seq[len(p) :]


def test_compiled_once_per_bucket():
    model, params = _init("llama")
    generate(model, params, [[3, 4, 5]], max_new_tokens=3, bucket=16)
    n_prefill, n_decode = gen_mod.prefill._cache_size(), gen_mod.decode._cache_size()
    generate(model, params, [[3, 4, 5, 6, 7, 8, 9]], max_new_tokens=9, bucket=16)  # same bucket
    assert (gen_mod.prefill._cache_size(), gen_mod.decode._cache_size()) == (n_prefill, n_decode)
    generate(model, params, [[3] * 20], max_new_tokens=3, bucket=16)  # longer prompt: one new bucket
    assert gen_mod.prefill._cache_size() == n_prefill + 1
    out = generate(model, params, [[3, 4], [5], [6, 7, 8]], max_new_tokens=2, bucket=16)  # batch 3 -> 4
    n = gen_mod.decode._cache_size()
    assert out.shape == (3, 2)
    generate(model, params, [[3, 4], [5], [6, 7, 8], [9]], max_new_tokens=2, bucket=16)  # same batch bucket
    assert gen_mod.decode._cache_size() == n


def test_eos_stops_and_pads():
    model, params = _init("gpt2")
    first = generate(model, params, [[5, 6, 7]], max_new_tokens=6, bucket=8, eos_token_id=())[0]
    eos = int(first[1])
    out = generate(model, params, [[5, 6, 7]], max_new_tokens=6, bucket=8, eos_token_id=eos, pad_token_id=0)[
        0
    ]
    assert list(out[:2]) == list(first[:2]) and (out[2:] == 0).all()


def test_sampling_filters():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(64, 50)), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 20)
    greedy = sample_logits(logits, keys[0], GenerationConfig())
    np.testing.assert_array_equal(greedy, jnp.argmax(logits, -1))
    np.testing.assert_array_equal(
        sample_logits(logits, keys[1], GenerationConfig(temperature=1.0, top_k=1)), greedy
    )
    np.testing.assert_array_equal(
        sample_logits(logits, keys[2], GenerationConfig(temperature=1.0, top_p=1e-6)), greedy
    )
    top5 = np.argsort(-np.asarray(logits), -1)[:, :5]
    draws = np.stack([sample_logits(logits, k, GenerationConfig(temperature=2.0, top_k=5)) for k in keys])
    assert all(d in top5[i] for row in draws for i, d in enumerate(row))
    assert len(np.unique(draws[:, 0])) > 1  # it does sample
    # top_p: every draw lies in the nucleus.
    probs = np.asarray(jax.nn.softmax(logits, -1))
    draws = np.stack([sample_logits(logits, k, GenerationConfig(temperature=1.0, top_p=0.5)) for k in keys])
    for i in range(logits.shape[0]):
        order = np.argsort(-probs[i])
        before = np.cumsum(probs[i][order]) - probs[i][order]
        nucleus = set(order[before < 0.5])
        assert set(draws[:, i]) <= nucleus


def test_generation_config_validation():
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)


@pytest.mark.parametrize("name", ["config", "layers", "registry", "bert", "embedding"])
def test_docstring_examples(name):
    import doctest
    import importlib

    mod = importlib.import_module(f"jaxint8.models.{name}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0


def test_outlier_stats_find_planted_dims():
    """Dims whose LayerNorm scale is large in every layer are the paper's systematic outliers."""
    from jaxint8.models.analysis import outlier_stats

    model, params = _float("gpt2")
    planted = [3, 17]
    params = jax.tree.map(lambda x: x, params)  # copy of the dict structure
    for i in range(2):
        for ln in ("ln_1", "ln_2"):
            params[f"h_{i}"][ln] = {
                "scale": jnp.ones(32).at[jnp.array(planted)].set(30.0),
                "bias": jnp.zeros(32),
            }
    tokens = np.random.default_rng(0).integers(0, 96, size=256)
    s = outlier_stats(model, params, tokens, seq_len=64, max_windows=2)
    assert s["num_layers"] == 2 and s["positions"] == 128
    assert set(planted) <= set(s["systematic_dims"])
    by_dim = {d["dim"]: d for d in s["dims"]}
    for d in planted:
        assert by_dim[d]["share_layers"] == 1.0 and by_dim[d]["share_positions"] > 0.5
    assert all(layer["outlier_dims"] >= 2 for layer in s["layers"])
    q = s["magnitude_quartiles"]
    assert q is not None and 6.0 <= q[0] <= q[1] <= q[2]


def test_llama_v4_style_rope_config():
    """transformers v4 configs keep rope_theta / rope_scaling at the top level."""
    d = {
        **HF["llama"],
        "rope_theta": 500000.0,
        "max_position_embeddings": 8192,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    }
    cfg = ModelConfig.from_hf_dict(d)
    assert cfg.rope_theta == 500000.0 and cfg.rope_scaling_dict["rope_type"] == "llama3"
    from jaxint8.models.layers import rope_inv_freq

    plain = rope_inv_freq(cfg.head_dim, cfg.rope_theta)
    scaled = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling_dict)
    assert scaled[0] == plain[0] and np.isclose(scaled[-1], plain[-1] / 8.0)  # high freq kept, low freq / 8
