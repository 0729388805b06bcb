"""BERT (``model_type`` "bert") against `transformers`' BertModel on tiny random checkpoints, the
sentence-embedding helpers and ``jaxint8-models embed``.

Float hidden states must match within 1e-5 relative (f32), int8 within the int8 error; padding
masks and token types must be honoured; ``bert.``-prefixed checkpoints (BertForMaskedLM) load.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxint8.models import (  # noqa: E402
    ConfigError,
    ModelConfig,
    QuantConfig,
    embed,
    load_pretrained,
    mean_pool,
    quantize_model,
    sample_sentences,
)

VOCAB = 128


def _hf_config(**kw):
    cfg = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, max_position_embeddings=64, type_vocab_size=2,
               initializer_range=0.1, hidden_act="gelu")
    cfg.update(kw)
    return transformers.BertConfig(**cfg)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.BertModel(_hf_config()).eval()
    path = tmp_path_factory.mktemp("bert")
    hf.save_pretrained(path, safe_serialization=True)
    return hf, str(path)


def _inputs(seed=0, B=3, T=12):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), np.int64)
    mask[1, 7:] = 0  # right padding, as BERT tokenizers pad
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types = np.zeros((B, T), np.int64)
    types[:, T // 2:] = 1
    return ids, mask, types


def _hf_hidden(hf, ids, mask, types):
    with torch.no_grad():
        return hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                  token_type_ids=torch.tensor(types)).last_hidden_state.numpy()


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def test_float_matches_transformers(checkpoint):
    hf, path = checkpoint
    model, params = load_pretrained(path, progress=False)
    ids, mask, types = _inputs()
    ref = _hf_hidden(hf, ids, mask, types)
    out = jax.jit(model.apply)({"params": params}, ids, attention_mask=mask, token_type_ids=types)
    assert out.dtype == jnp.float32 and out.shape == ref.shape
    assert _rel(out, ref) < 1e-5
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-4)
    # Defaults: mask all ones, token types zero.
    ref0 = _hf_hidden(hf, ids, np.ones_like(mask), np.zeros_like(types))
    assert _rel(model.apply({"params": params}, ids), ref0) < 1e-5


def test_int8_close_and_grouped_qkv(checkpoint):
    hf, path = checkpoint
    ids, mask, types = _inputs(1)
    ref = _hf_hidden(hf, ids, mask, types)
    model8, params8 = load_pretrained(path, int8=True, progress=False)
    assert params8["layers_0"]["attention"]["query"]["kernel"].dtype == jnp.int8
    assert params8["word_embeddings"]["embedding"].dtype == jnp.float32
    out = model8.apply({"params": params8}, ids, attention_mask=mask, token_type_ids=types)
    err = _rel(out, ref)
    assert 0 < err < 5e-2, err
    # One grouped q/k/v call or three calls: the same numbers.
    model_ng = model8.clone(quant=QuantConfig(int8=True, group=False))
    out_ng = model_ng.apply({"params": params8}, ids, attention_mask=mask, token_type_ids=types)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(out_ng))
    # quantize_model of the float model gives the loaded int8 params.
    model, params = load_pretrained(path, progress=False)
    _, q = quantize_model(model, params)
    np.testing.assert_array_equal(q["layers_1"]["output"]["kernel"], params8["layers_1"]["output"]["kernel"])


def test_masked_lm_prefix_and_pooler_ignored(tmp_path, recwarn):
    torch.manual_seed(1)
    hf = transformers.BertForMaskedLM(_hf_config(num_hidden_layers=1)).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, params = load_pretrained(tmp_path, progress=False)
    ids, mask, types = _inputs(2)
    ref = _hf_hidden(hf.bert, ids, mask, types)
    assert _rel(model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types), ref) < 1e-5
    # The MLM head is reported as unused; position_ids buffers are not.
    msgs = [str(w.message) for w in recwarn]
    assert any("cls.predictions" in m for m in msgs) and not any("position_ids" in m for m in msgs)


def test_embed_matches_mean_pooling_of_transformers(checkpoint):
    hf, path = checkpoint
    model, params = load_pretrained(path, progress=False)
    ids, mask, types = _inputs(3)
    ref = _hf_hidden(hf, ids, mask, types)
    pooled = (ref * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    ref_e = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    e = embed(model, params, ids, mask, types)
    np.testing.assert_allclose(np.asarray(e), ref_e, atol=1e-5)
    raw = embed(model, params, ids, mask, types, normalize=False)
    np.testing.assert_allclose(np.asarray(raw), pooled, rtol=1e-4, atol=1e-5)


def test_mean_pool_and_embed_errors():
    h = jnp.arange(12, dtype=jnp.float32).reshape(1, 3, 4)
    np.testing.assert_allclose(mean_pool(h, jnp.array([[1, 1, 0]])), [[2, 3, 4, 5]])
    np.testing.assert_allclose(mean_pool(h, jnp.zeros((1, 3))), [[0, 0, 0, 0]])  # no NaN
    with pytest.raises(ValueError, match="attention_mask must be"):
        mean_pool(h, jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="hidden must be"):
        mean_pool(h[0], jnp.ones((1, 3)))
    from jaxint8.models import build_model

    gpt = build_model(ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 16, "n_embd": 8,
                                                "n_layer": 1, "n_head": 2, "n_positions": 8}))
    with pytest.raises(ValueError, match="embed needs a 'bert' encoder"):
        embed(gpt, {}, jnp.zeros((1, 2), jnp.int32))


def test_bert_config_errors_and_inputs():
    base = {"model_type": "bert", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 8}
    with pytest.raises(ConfigError, match="position_embedding_type 'relative_key'"):
        ModelConfig.from_hf_dict({**base, "position_embedding_type": "relative_key"})
    with pytest.raises(ConfigError, match="missing the required field 'intermediate_size'"):
        ModelConfig.from_hf_dict({k: v for k, v in base.items() if k != "intermediate_size"})
    from jaxint8.models import build_model

    model = build_model(ModelConfig.from_hf_dict(base))
    ids = jnp.zeros((1, 4), jnp.int32)
    params = model.init(jax.random.key(0), ids)["params"]
    with pytest.raises(ValueError, match="more than the model's max_position_embeddings 8"):
        model.apply({"params": params}, jnp.zeros((1, 9), jnp.int32))
    with pytest.raises(ValueError, match=r"attention_mask must be \[batch, seq\]"):
        model.apply({"params": params}, ids, attention_mask=jnp.ones((1, 3)))
    with pytest.raises(ValueError, match=r"token_type_ids must be \[batch, seq\]"):
        model.apply({"params": params}, ids, token_type_ids=jnp.ones((2, 4), jnp.int32))


def test_save_load_quantized_and_generate_refused(tmp_path):
    from jaxint8.models import build_model, generate, load_quantized, save_quantized

    cfg = ModelConfig.from_hf_dict({"model_type": "bert", "vocab_size": 32, "hidden_size": 16,
                                    "num_hidden_layers": 1, "num_attention_heads": 2,
                                    "intermediate_size": 32, "max_position_embeddings": 8})
    ids = jnp.array([[1, 2, 3]])
    model = build_model(cfg)
    model8, params8 = quantize_model(model, model.init(jax.random.key(0), ids)["params"])
    save_quantized(tmp_path / "q", model8, params8)
    model2, params2 = load_quantized(tmp_path / "q")
    np.testing.assert_array_equal(model2.apply({"params": params2}, ids), model8.apply({"params": params8}, ids))
    with pytest.raises(ValueError, match="generate needs a decoder"):
        generate(model8, params8, [[1, 2]], max_new_tokens=2)


def test_sample_sentences_deterministic():
    a, b = sample_sentences(300), sample_sentences(300)
    assert a == b and len(set(a)) == 300 and sample_sentences(300, seed=1) != a
    with pytest.raises(ValueError, match="n must be in"):
        sample_sentences(0)


def test_cli_embed(checkpoint, tmp_path, capsys):
    from jaxint8.models import cli

    hf, path = checkpoint
    text = tmp_path / "s.txt"
    text.write_text("1 5 6 7 2\n\n1 9 10 2\n")
    out = tmp_path / "e.npy"
    res = cli.main(["embed", "--model", path, "--text", str(text), "--out", str(out),
                    "--tokenizer", "ids", "--int8", "--quiet"])
    e = np.load(out)
    assert e.shape == (2, 64) and res["int8"] and "embedded 2 sentences with the int8 model" in capsys.readouterr().out
    # Ids beyond the vocabulary (128) are an error naming the file.
    bad = tmp_path / "bad.txt"
    bad.write_text("1 500\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["embed", "--model", path, "--text", str(bad), "--out", str(out), "--tokenizer", "ids"])
    assert info.value.code == 2
    assert "token ids must lie in [0, 128)" in capsys.readouterr().err
    for argv, message in [
        (["--out", str(tmp_path / "e.txt")], "must be a .npy file name"),
        (["--out", str(tmp_path)], "must be a .npy file name"),
        (["--out", "/nonexistent/e.npy"], "directory /nonexistent does not exist"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli.main(["embed", "--model", path, "--text", str(text), "--tokenizer", "ids", *argv])
        err = capsys.readouterr().err
        assert info.value.code == 2 and message in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit):
        cli.main(["perplexity", "--model", path, "--text", str(text), "--tokenizer", "ids", "--quiet"])
    assert "a 'bert' encoder has no language-model head" in capsys.readouterr().err


def test_cli_outliers_on_bert(checkpoint, tmp_path, capsys):
    from jaxint8.models import cli

    _, path = checkpoint
    text = tmp_path / "ids.txt"
    text.write_text(" ".join(str(i) for i in np.random.default_rng(0).integers(1, VOCAB, 64)))
    res = cli.main(["outliers", "--model", path, "--text", str(text), "--tokenizer", "ids",
                    "--seq-len", "32", "--quiet"])
    assert res["num_layers"] == 2 and "outlier statistics" in capsys.readouterr().out
