"""jaxint8.models against `transformers` (torch CPU) on tiny random checkpoints saved locally.

Float logits must match within 1e-4 relative (f32), int8 logits within the int8 error, greedy
generation must give the same tokens, sharded checkpoints must load.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxint8.models import (
    CheckpointError,
    ConfigError,
    generate,
    load_pretrained,
    quantize_model,
)  # noqa: E402

VOCAB = 128


def _configs():
    t = transformers
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.1)
    return {
        "gpt2": lambda: t.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, **common),
        "opt": lambda: t.OPTConfig(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            ffn_dim=128,
            max_position_embeddings=128,
            **{**common, "init_std": 0.1},
        ),
        # OPT-350m variant: post-LayerNorm + project_in / project_out.
        "opt350m": lambda: t.OPTConfig(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            ffn_dim=128,
            max_position_embeddings=128,
            do_layer_norm_before=False,
            word_embed_proj_dim=32,
            **{**common, "init_std": 0.1},
        ),
        "llama": lambda: t.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            max_position_embeddings=128,
            **common,
        ),
        # Llama with tied embeddings, biases and llama3 RoPE scaling.
        "llama_tied": lambda: t.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=1,
            intermediate_size=96,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            attention_bias=True,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
            **common,
        ),
    }


ARCHS = list(_configs())


def _hf_model(arch):
    torch.manual_seed(0)
    cfg = _configs()[arch]()
    cls = {"gpt2": transformers.GPT2LMHeadModel, "llama": transformers.LlamaForCausalLM}.get(
        arch.split("_")[0], transformers.OPTForCausalLM
    )
    return cls(cfg).eval()


@functools.lru_cache(maxsize=None)
def _load(path, int8=False):
    model, params = load_pretrained(path, int8=int8, progress=False)
    return model, params, jax.jit(model.apply)


@pytest.fixture(scope="module", params=ARCHS)
def checkpoint(request, tmp_path_factory):
    arch = request.param
    hf = _hf_model(arch)
    path = tmp_path_factory.mktemp(arch)
    hf.save_pretrained(path, safe_serialization=True)
    yield arch, hf, str(path)
    _load.cache_clear()


def _ids(seed=0, shape=(2, 11)):
    return np.random.default_rng(seed).integers(3, VOCAB, size=shape).astype(np.int64)


def _hf_logits(hf, ids, mask=None):
    with torch.no_grad():
        kw = {} if mask is None else {"attention_mask": torch.tensor(mask)}
        return hf(torch.tensor(ids), **kw).logits.float().numpy()


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_float_logits_match(checkpoint):
    arch, hf, path = checkpoint
    model, params, apply = _load(path)
    ids = _ids()
    ours = np.asarray(apply({"params": params}, jnp.asarray(ids)))
    ref = _hf_logits(hf, ids)
    assert ours.shape == ref.shape
    assert _rel(ours, ref) < 1e-4, arch
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_float_logits_left_padding(checkpoint):
    arch, hf, path = checkpoint
    model, params, apply = _load(path)
    ids = _ids(1, (2, 9))
    mask = np.ones_like(ids)
    mask[1, :4] = 0
    ids[1, :4] = 0
    # transformers.generate's position ids: cumsum(mask) - 1.
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    with torch.no_grad():
        ref = hf(
            torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos)
        ).logits.numpy()
    ours = np.asarray(apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    real = mask.astype(bool)
    assert _rel(ours[real], ref[real]) < 1e-4, arch


def test_int8_logits_close(checkpoint):
    arch, hf, path = checkpoint
    model, params, apply = _load(path, int8=True)
    kernels = [p for p in jax.tree_util.tree_leaves(params) if p.dtype == jnp.int8]
    assert kernels, "int8 model has no int8 kernels"
    ids = _ids()
    ours = np.asarray(apply({"params": params}, jnp.asarray(ids)))
    err = _rel(ours, _hf_logits(hf, ids))
    assert 0 < err < 5e-2, (arch, err)


def test_greedy_generation_matches(checkpoint):
    arch, hf, path = checkpoint
    model, params, _ = _load(path)
    prompts = [list(_ids(2, (1, 7))[0]), list(_ids(3, (1, 3))[0])]
    new = 8
    ours = generate(model, params, prompts, max_new_tokens=new, bucket=16)
    ids = np.zeros((2, 7), np.int64)
    mask = np.zeros((2, 7), np.int64)
    for i, p in enumerate(prompts):
        ids[i, 7 - len(p) :], mask[i, 7 - len(p) :] = p, 1
    with torch.no_grad():
        out = hf.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )[:, 7:].numpy()
    # transformers stops when every row hit EOS; ours fills the rest with pad (0).
    np.testing.assert_array_equal(ours[:, : out.shape[1]], out)
    assert (ours[:, out.shape[1] :] == 0).all()


def test_sharded_checkpoint(tmp_path):
    hf = _hf_model("llama")
    hf.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("*.safetensors"))) > 2
    model, params = load_pretrained(tmp_path, int8=True, progress=False)
    ids = _ids()
    err = _rel(np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(ids))), _hf_logits(hf, ids))
    assert 0 < err < 5e-2


# ----------------------------------------------------------------------------- broken checkpoints
def _broken_copy(src, dst, edit_tensors=None, edit_config=None):
    """Copies checkpoint ``src`` to ``dst`` with edited tensors / config."""
    import json

    from safetensors.numpy import load_file, save_file

    tensors = load_file(f"{src}/model.safetensors")
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, f"{dst}/model.safetensors")
    cfg = json.loads(open(f"{src}/config.json").read())
    if edit_config:
        edit_config(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama_src")
    _hf_model("llama").save_pretrained(path, safe_serialization=True)
    return path


def test_missing_tensor_is_named(llama_dir, tmp_path):
    name = "model.layers.1.mlp.down_proj.weight"
    _broken_copy(llama_dir, tmp_path, edit_tensors=lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match=rf"missing tensor '{name}'.*layers_1/mlp/down_proj/kernel"):
        load_pretrained(tmp_path, int8=True, progress=False)


def test_wrong_shape_is_named(llama_dir, tmp_path):
    name = "model.layers.0.self_attn.k_proj.weight"

    def edit(t):
        t[name] = t[name][:-1]

    _broken_copy(llama_dir, tmp_path, edit_tensors=edit)
    with pytest.raises(CheckpointError, match=rf"'{name}'.*shape \(31, 64\).*\(32, 64\)"):
        load_pretrained(tmp_path, progress=False)


def test_unsupported_architecture_is_named(llama_dir, tmp_path):
    _broken_copy(llama_dir, tmp_path, edit_config=lambda c: c.update(model_type="mistral"))
    with pytest.raises(ConfigError, match="model_type 'mistral'"):
        load_pretrained(tmp_path, progress=False)


def test_no_safetensors_or_dir(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"model_type": "gpt2", "vocab_size": 8, "n_embd": 8, "n_layer": 1, ' '"n_head": 2, "n_positions": 8}'
    )
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors"):
        load_pretrained(tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path / "nope", progress=False)


def test_quantize_on_load_equals_in_memory_conversion(llama_dir):
    model, params = load_pretrained(llama_dir, progress=False)
    _, direct = load_pretrained(llama_dir, int8=True, progress=False)
    _, converted = quantize_model(model, params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), direct, converted)


# ---------------------------------------------------------------------------------------- CLI
def test_cli(tmp_path, capsys):
    from jaxint8.models import cli

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        vocab_size=256,
        n_positions=64,
        initializer_range=0.3,
        eos_token_id=0,
        bos_token_id=0,
    )
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "m", safe_serialization=True)
    text = tmp_path / "t.txt"
    text.write_text("LLM.int8() keeps outlier features in 16 bits. " * 8)
    common = ["--model", str(tmp_path / "m"), "--tokenizer", "bytes", "--quiet"]
    res = cli.main(["perplexity", *common, "--text", str(text), "--seq-len", "32"])
    assert res["float"]["tokens"] == res["int8"]["tokens"] > 0
    assert abs(res["int8_vs_float_ppl_rel_diff"]) < 0.05
    res = cli.main(
        ["outliers", *common, "--text", str(text), "--seq-len", "32", "--json", str(tmp_path / "o.json")]
    )
    assert res["num_layers"] == 2 and len(res["layers"]) == 2
    assert (tmp_path / "o.json").exists()
    cli.main(["convert", *common, "--out", str(tmp_path / "q")])
    res = cli.main(
        [
            "generate",
            "--model",
            str(tmp_path / "q"),
            "--tokenizer",
            "bytes",
            "--prompt",
            "LLM",
            "int8",
            "--max-new-tokens",
            "4",
        ]
    )
    assert len(res["tokens"]) == 2 and all(len(r) == 4 for r in res["tokens"])
    out = capsys.readouterr().out
    assert "perplexity" in out and "magnitude quartiles" in out
