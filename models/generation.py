"""Jitted autoregressive generation with a static KV cache.

* A batch of prompts of different lengths is **left-padded** to a shape bucket (a multiple of
  ``bucket``); the cache length is that plus ``max_new_tokens`` rounded up to the bucket.
* ``prefill`` (the whole prompt, one call) and ``decode`` (a ``lax.while_loop`` of one-token steps
  that stops when every row has emitted EOS) are each compiled once per (model, batch bucket,
  length bucket, sampling settings) — never per step or per prompt length inside a bucket. The
  batch is padded to a power of two with dummy rows that count as finished.
* Greedy (``temperature=0``) or sampling with temperature, top-k and top-p (nucleus).

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxint8.models import ModelConfig, build_model, generate
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 128, "n_embd": 64,
    ...                                 "n_layer": 2, "n_head": 4, "n_positions": 256})
    >>> model = build_model(cfg)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
    >>> generate(model, params, [[1, 2, 3], [4, 5]], max_new_tokens=4).shape
    (2, 4)
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxint8.flax import float32_int8_biases

from .layers import init_kv_cache

__all__ = ["GenerationConfig", "generate", "pad_prompts", "prefill", "decode", "sample_logits"]


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Settings of :func:`generate` (hashable: part of the compiled decode's cache key).

    Attributes:
      max_new_tokens: tokens to generate per prompt.
      temperature: 0 = greedy (argmax); > 0 samples from ``softmax(logits / temperature)``.
      top_k: keep only the ``top_k`` most likely tokens (0 = all).
      top_p: keep the smallest set of tokens whose probability reaches ``top_p`` (1 = all).
      eos_token_id: stop a row after this token (int, tuple of ints or None: model config's).
      pad_token_id: fills left padding and the positions after EOS (None: config's pad, else EOS, else 0).
      bucket: prompt length and cache length are rounded up to a multiple of this.
    """

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    eos_token_id: int | tuple | None = None
    pad_token_id: int | None = None
    bucket: int = 64

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def pad_prompts(prompts, pad_token_id: int, bucket: int):
    """Left-pads a list of token lists to ``[B, round_up(max_len, bucket)]``; returns ``(ids, mask)``.

    ``pad_token_id`` must be a valid embedding row (its value never affects the result).
    """
    prompts = [list(map(int, p)) for p in prompts]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt and every prompt needs at least one token")
    P = _round_up(max(len(p) for p in prompts), bucket)
    ids = np.full((len(prompts), P), pad_token_id, np.int32)
    mask = np.zeros((len(prompts), P), bool)
    for i, p in enumerate(prompts):
        ids[i, P - len(p) :] = p
        mask[i, P - len(p) :] = True
    return ids, mask


def sample_logits(logits, rng, gen: GenerationConfig):
    """Next tokens ``[B]`` from float32 ``logits [B, V]`` per ``gen`` (greedy if temperature is 0)."""
    if gen.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / gen.temperature
    neg = jnp.finfo(logits.dtype).min
    if gen.top_k:
        kth = lax.top_k(logits, min(gen.top_k, logits.shape[-1]))[0][..., -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if gen.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly before each token
        keep = before < gen.top_p  # always keeps the most likely token
        cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, neg, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model",), donate_argnames=("cache",))
def prefill(model, params, ids, key_mask, cache):
    """Runs the prompt ``ids [B, P]`` into an empty ``cache``; returns ``(last logits [B, V], cache)``."""
    logits, cache = model.apply(
        {"params": params}, ids, attention_mask=key_mask, cache=cache, cache_index=0, last_only=True
    )
    return logits[:, -1], cache


@functools.partial(jax.jit, static_argnames=("model", "gen"))
def decode(model, gen: GenerationConfig, params, logits, cache, key_mask, prompt_len, n_steps, rng, done=None):
    """Samples up to ``n_steps`` tokens after a prefill; returns ``tokens [B, max_len - P]``.

    One ``lax.while_loop`` step per token; stops early when every row has emitted EOS. ``n_steps``
    and ``prompt_len`` are traced (one compilation serves every count within the bucket);
    ``gen.eos_token_id`` and ``gen.pad_token_id`` must be resolved (see :func:`generate`).
    ``done`` (bool ``[B]``, optional) marks rows that are finished from the start (batch padding).
    """
    B = logits.shape[0]
    params = float32_int8_biases(params)  # once here, not once per layer and step in the loop
    pad_id = gen.pad_token_id
    width = key_mask.shape[1]  # >= n_steps; sliced by the caller
    eos = jnp.asarray(gen.eos_token_id if gen.eos_token_id is not None else (), jnp.int32).reshape(-1)
    out = jnp.full((B, width), pad_id, jnp.int32)
    rng, sub = jax.random.split(rng)
    done = jnp.zeros((B,), bool) if done is None else done
    state = (jnp.int32(0), sample_logits(logits, sub, gen), done, out, cache, rng)

    def cond(state):
        i, _, done, *_ = state
        return (i < n_steps) & ~jnp.all(done)

    def body(state):
        i, tok, done, out, cache, rng = state
        out = lax.dynamic_update_slice(out, jnp.where(done, pad_id, tok)[:, None], (0, i))
        done = done | jnp.any(tok[:, None] == eos[None, :], axis=-1)
        # Finished rows keep feeding their last (valid) token; their outputs are discarded.
        logits, cache = model.apply(
            {"params": params}, tok[:, None], attention_mask=key_mask, cache=cache, cache_index=prompt_len + i
        )
        rng, sub = jax.random.split(rng)
        return i + 1, sample_logits(logits[:, -1], sub, gen), done, out, cache, rng

    return lax.while_loop(cond, body, state)[3]


def _default_ids(model, gen: GenerationConfig):
    cfg = model.config
    eos = gen.eos_token_id if gen.eos_token_id is not None else cfg.eos_token_id
    if isinstance(eos, list):
        eos = tuple(eos)
    pad = gen.pad_token_id
    if pad is None:
        pad = cfg.pad_token_id
    if pad is None:
        first_eos = eos[0] if isinstance(eos, tuple) and eos else eos
        pad = first_eos if isinstance(first_eos, int) else 0
    return eos, int(pad)


def generate(
    model, params, prompts, gen: GenerationConfig | None = None, *, seed: int = 0, **kwargs
) -> np.ndarray:
    """Generates continuations of ``prompts`` (a list of token-id lists, lengths may differ).

    Args:
      model, params: a model from :mod:`jaxint8.models` (float or int8) and its params.
      gen: a :class:`GenerationConfig`; keyword arguments override its fields.
      seed: PRNG seed for sampling.

    Returns:
      int32 ``[len(prompts), max_new_tokens]``; after a row's EOS the rest is ``pad_token_id``
      (what ``transformers``' ``generate`` returns after the prompt).
    """
    if model.config.model_type == "bert":
        raise ValueError(
            "generate needs a decoder (gpt2, opt, llama); a 'bert' encoder has no language-model "
            "head (use jaxint8.models.embed for its sentence embeddings)"
        )
    gen = dataclasses.replace(gen or GenerationConfig(), **kwargs)
    eos, pad = _default_ids(model, gen)
    gen = dataclasses.replace(gen, eos_token_id=eos, pad_token_id=pad)
    cfg = model.config
    # The pad id may lie outside the vocabulary (e.g. GPT-2's 50256 in a small model): the prompt
    # padding then uses token 0 (masked out either way); the returned tokens still use `pad`.
    n_real = len(prompts)
    safe_pad = pad if 0 <= pad < cfg.vocab_size else 0
    # The batch is padded to a power of two with finished dummy rows (fewer compiled shapes).
    prompts = list(prompts) + [[safe_pad]] * (_next_pow2(n_real) - n_real)
    ids, mask = pad_prompts(prompts, safe_pad, gen.bucket)
    B, P = ids.shape
    longest = max(len(p) for p in prompts) + gen.max_new_tokens
    if cfg.model_type in ("gpt2", "opt") and longest > cfg.max_position_embeddings:
        raise ValueError(
            f"prompt + max_new_tokens = {longest} tokens exceeds max_position_embeddings={cfg.max_position_embeddings}"
        )
    S = P + _round_up(gen.max_new_tokens, gen.bucket)
    key_mask = np.concatenate([mask, np.ones((B, S - P), bool)], axis=1)
    cache = init_kv_cache(cfg, B, S, model.dtype or model.param_dtype)
    logits, cache = prefill(model, params, jnp.asarray(ids), jnp.asarray(key_mask), cache)
    static_gen = dataclasses.replace(gen, max_new_tokens=S - P)  # one compilation per bucket
    tokens = decode(
        model,
        static_gen,
        params,
        logits,
        cache,
        jnp.asarray(key_mask),
        jnp.int32(P),
        jnp.int32(gen.max_new_tokens),
        jax.random.key(seed),
        jnp.arange(B) >= n_real,
    )
    return np.asarray(tokens)[:n_real, : gen.max_new_tokens]
