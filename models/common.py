"""What the three architectures share: the module base class, the decoder input preparation
(attention mask + position ids for left-padded batches and KV caches) and the layer loop.

Every model ``M`` is called as::

    logits = M.apply({"params": p}, input_ids, attention_mask=None)
    logits, cache = M.apply({"params": p}, input_ids, attention_mask=key_mask, cache=cache,
                            cache_index=i, last_only=False)

* ``input_ids`` int ``[B, T]``.
* ``attention_mask`` ``[B, T]`` without a cache, ``[B, max_len]`` with one (1 = real token; padding
  on the left). ``None`` means all ones.
* ``positions`` default to ``cumsum(mask) - 1`` (clipped at 0), what ``transformers.generate`` uses.
* ``cache``: see :func:`jaxint8.models.layers.init_kv_cache`; ``cache_index``: the slot of
  ``input_ids[:, 0]`` (traceable, so one compiled decode step serves every step).
* ``last_only``: project only the last position to the vocabulary (prefill for generation).

Logits are float32 ``[B, T, vocab]`` (``[B, 1, vocab]`` with ``last_only``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from .config import ModelConfig, QuantConfig
from .layers import attention_mask as _attention_mask

__all__ = ["Base", "sub", "DecoderInputs", "decoder_inputs", "run_layers", "finish", "HFParam"]


class Base(nn.Module):
    """Fields every module of the models carries (copied down to submodules)."""

    config: ModelConfig
    quant: QuantConfig = QuantConfig()
    dtype: Any = None
    param_dtype: Any = jnp.float32


def sub(parent: Base, cls, name: str, **kw):
    """Instantiates submodule ``cls`` of ``parent`` (call inside ``parent``'s compact method)."""
    return cls(
        config=parent.config,
        quant=parent.quant,
        dtype=parent.dtype,
        param_dtype=parent.param_dtype,
        name=name,
        **kw,
    )


class DecoderInputs(NamedTuple):
    mask: Any  # bool [B, T, S]
    positions: Any  # int [B, T]


def decoder_inputs(
    input_ids, attention_mask=None, positions=None, cache=None, cache_index=0
) -> DecoderInputs:
    """The attention mask and position ids for one forward call (see module docstring)."""
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {input_ids.shape}")
    B, T = input_ids.shape
    S = T if cache is None else cache[0][0].shape[1]
    if attention_mask is None:
        key_mask = jnp.ones((B, S), bool)
    else:
        key_mask = jnp.asarray(attention_mask).astype(bool)
        if key_mask.shape != (B, S):
            what = "max_len (the cache length)" if cache is not None else "seq"
            raise ValueError(f"attention_mask must be [batch, {what}] = {(B, S)}, got {key_mask.shape}")
    mask = _attention_mask(key_mask, T, cache_index)
    if positions is None:
        all_pos = jnp.maximum(jnp.cumsum(key_mask.astype(jnp.int32), axis=1) - 1, 0)
        positions = lax.dynamic_slice_in_dim(all_pos, cache_index, T, axis=1)
    return DecoderInputs(mask, positions)


def run_layers(layers, h, inputs: DecoderInputs, cache, cache_index):
    """Applies the decoder blocks in order; returns ``(h, new_cache or None)``."""
    new_cache = []
    for i, layer in enumerate(layers):
        h, kv = layer(h, inputs.mask, inputs.positions, None if cache is None else cache[i], cache_index)
        new_cache.append(kv)
    return h, (None if cache is None else tuple(new_cache))


def finish(logits, cache):
    logits = logits.astype(jnp.float32)
    return logits if cache is None else (logits, cache)


@dataclasses.dataclass(frozen=True)
class HFParam:
    """One entry of an architecture's Hugging Face tensor map (used by the loader).

    Attributes:
      path: Flax path: of the projection module for ``kind`` ``"linear"``/``"conv1d"``, of the
        leaf for ``"tensor"``.
      hf_name: tensor name in the checkpoint; for projections the module prefix (``.weight`` and
        ``.bias`` are appended).
      kind: ``"linear"`` (torch ``[out, in]`` weight), ``"conv1d"`` (GPT-2 ``[in, out]`` weight) or
        ``"tensor"`` (copied as is: embeddings, norms).
    """

    path: tuple[str, ...]
    hf_name: str
    kind: str
