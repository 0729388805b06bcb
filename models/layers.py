"""Building blocks shared by the GPT-2, OPT and Llama models.

* :func:`dense` — the single switch between ``flax.linen.Dense`` and :class:`jaxint8.flax.Int8Dense`;
  :func:`dense_group` for projections that read the same input (one quantization when int8).
* :class:`RMSNorm`, :func:`layer_norm`, :func:`activation`.
* RoPE: :func:`rope_inv_freq`, :func:`apply_rope`.
* Attention with a static-size KV cache: :func:`attention_mask`, :func:`update_kv_cache`,
  :func:`dot_product_attention`.

KV cache layout: a tuple with one ``(k, v)`` pair per layer, each ``[batch, max_len, kv_heads,
head_dim]``. New keys/values are written at slot ``cache_index``; which slots may be attended is
given by a boolean ``key_mask [batch, max_len]`` plus causality (slot ≤ the query's slot).

Example::

    >>> import jax.numpy as jnp
    >>> from jaxint8.models.layers import attention_mask
    >>> attention_mask(jnp.array([[False, True, True]]), query_len=3, cache_index=0).astype(int)[0]
    Array([[0, 0, 0],
           [0, 1, 0],
           [0, 1, 1]], dtype=int32)
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .config import QuantConfig

__all__ = [
    "dense",
    "dense_group",
    "module_path",
    "RMSNorm",
    "layer_norm",
    "activation",
    "rope_inv_freq",
    "apply_rope",
    "attention_mask",
    "update_kv_cache",
    "dot_product_attention",
    "attend",
    "init_kv_cache",
]


def module_path(parent: nn.Module, name: str) -> str:
    """Dotted path of child ``name`` of ``parent`` (``"layers_0.self_attn.q_proj"``)."""
    return ".".join((*parent.scope.path, name))


def dense(parent: nn.Module, features: int, name: str, *, use_bias: bool = True) -> nn.Module:
    """A projection named ``name`` under ``parent``: ``nn.Dense`` or ``Int8Dense``.

    ``parent`` must carry ``quant`` (:class:`QuantConfig`), ``dtype`` and ``param_dtype``
    attributes; ``quant.is_quantized(path)`` decides, so one setting + skip list switches a model.
    """
    quant: QuantConfig = parent.quant
    if quant.is_quantized(module_path(parent, name)):
        from jaxint8.flax import Int8Dense

        return Int8Dense(
            features,
            use_bias=use_bias,
            dtype=parent.dtype,
            param_dtype=parent.param_dtype,
            threshold=quant.threshold,
            name=name,
        )
    return nn.Dense(
        features, use_bias=use_bias, dtype=parent.dtype, param_dtype=parent.param_dtype, name=name
    )


def dense_group(parent: nn.Module, specs, *, use_bias: bool = True):
    """Projections of one input: ``specs = [(features, name), ...]`` -> ``fn(x) -> tuple``.

    Each projection is :func:`dense` (same names and params as separate layers). When all of them
    are int8 and ``parent.quant.group`` is set, ``x`` is quantized once and the GEMMs run as one
    grouped op (:func:`jaxint8.flax.int8_dense_group`, bit-identical results); otherwise each
    layer is called in turn.
    """
    from jaxint8.flax import Int8Dense, int8_dense_group

    layers = [dense(parent, features, name, use_bias=use_bias) for features, name in specs]
    if parent.quant.group and len(layers) > 1 and all(isinstance(m, Int8Dense) for m in layers):
        return lambda x: int8_dense_group(layers, x)
    return lambda x: tuple(m(x) for m in layers)


class RMSNorm(nn.Module):
    """Llama RMSNorm: ``scale * (x / rms(x))`` computed in float32, then cast back.

    Param: ``scale [features]`` (Hugging Face ``*.weight``).
    """

    epsilon: float = 1e-6
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
        in_dtype = x.dtype
        x32 = x.astype(jnp.float32)
        x32 = x32 * lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon)
        out_dtype = self.dtype or in_dtype
        return scale.astype(out_dtype) * x32.astype(in_dtype).astype(out_dtype)


def layer_norm(parent: nn.Module, name: str, eps: float, affine: bool = True) -> nn.LayerNorm:
    """``nn.LayerNorm`` with torch numerics (two-pass variance); params ``scale``/``bias``."""
    return nn.LayerNorm(
        epsilon=eps,
        use_scale=affine,
        use_bias=affine,
        use_fast_variance=False,
        dtype=parent.dtype,
        param_dtype=parent.param_dtype,
        name=name,
    )


_ACTIVATIONS = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def activation(name: str):
    """The activation function called ``name`` in Hugging Face configs."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unsupported activation function {name!r} (supported: {sorted(_ACTIVATIONS)})"
        ) from None


# ---------------------------------------------------------------------------------------- RoPE
def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None = None) -> np.ndarray:
    """Inverse frequencies ``[head_dim // 2]`` (float32) for RoPE types default, linear, llama3."""
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    rope_type = (scaling or {}).get("rope_type", "default")
    if rope_type == "linear":
        inv = inv / float(scaling["factor"])
    elif rope_type == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        smooth = np.clip((old_len / wavelen - low) / (high - low), 0.0, 1.0)
        scaled = (1 - smooth) * inv / factor + smooth * inv
        inv = np.where(wavelen > old_len / low, inv / factor, np.where(wavelen < old_len / high, inv, scaled))
    elif rope_type != "default":
        raise ValueError(f"unsupported rope_type {rope_type!r}")
    return inv.astype(np.float32)


def apply_rope(x, positions, inv_freq):
    """Rotates ``x [B, T, H, D]`` by ``positions [B, T]`` (half-split layout, as Hugging Face Llama)."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, T, D/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


# ----------------------------------------------------------------------------------- attention
def attention_mask(key_mask, query_len: int, cache_index=0):
    """Boolean ``[B, T, S]``: query ``t`` (at slot ``cache_index + t``) may see key slot ``s``.

    Args:
      key_mask: bool ``[B, S]``, which key slots hold real (non-padding) tokens.
      query_len: ``T``.
      cache_index: slot of the first query (0 without a cache); may be traced.
    """
    S = key_mask.shape[1]
    q_slot = cache_index + jnp.arange(query_len)[:, None]
    causal = jnp.arange(S)[None, :] <= q_slot
    return causal[None] & key_mask.astype(bool)[:, None, :]


def update_kv_cache(cache_kv, k, v, cache_index):
    """Writes ``k, v [B, T, KVH, D]`` into ``cache_kv = (k_cache, v_cache)`` at ``cache_index``."""
    k_cache, v_cache = cache_kv
    idx = (0, cache_index, 0, 0)
    k_cache = lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), idx)
    v_cache = lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), idx)
    return k_cache, v_cache


def dot_product_attention(q, k, v, mask, scale: float):
    """Softmax attention with grouped-query heads.

    Args:
      q: ``[B, T, H, D]``; k, v: ``[B, S, KVH, D]`` with ``H % KVH == 0``.
      mask: bool ``[B, T, S]``.
      scale: multiplier of ``q·k`` (1.0 if ``q`` is pre-scaled).
    Returns:
      ``[B, T, H * D]`` in ``q``'s dtype. Scores and softmax run in float32; fully masked rows
      (left padding) give finite values, never NaN.
    """
    B, T, H, D = q.shape
    kvh = k.shape[2]
    qg = q.reshape(B, T, kvh, H // kvh, D)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v, preferred_element_type=jnp.float32)
    return out.reshape(B, T, H * D).astype(q.dtype)


def init_kv_cache(config, batch: int, max_len: int, dtype=jnp.float32):
    """An empty cache for ``config`` (a :class:`~jaxint8.models.config.ModelConfig`)."""
    shape = (batch, max_len, config.num_kv_heads, config.head_dim)
    return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.num_layers))


def attend(q, k, v, *, mask, scale, cache_kv, cache_index):
    """Updates the cache (if any) with ``k, v`` and attends; returns ``(out, new_cache_kv)``."""
    if cache_kv is not None:
        cache_kv = update_kv_cache(cache_kv, k, v, cache_index)
        k, v = cache_kv
    return dot_product_attention(q, k, v, mask, scale), cache_kv
