"""BERT encoder (Devlin et al. 2019; Hugging Face ``BertModel``: BERT-base/large, MiniLM,
sentence-transformers' all-MiniLM-L6-v2): word + absolute position + token type embeddings,
LayerNorm, post-LN blocks with exact (erf) GELU, a padding attention mask, no causal mask.

The model returns the last hidden state ``[B, T, hidden]`` in float32; pool it with
:func:`jaxint8.models.mean_pool` for sentence embeddings. The pooler (``pooler.dense``) and the
pre-training heads are not part of the model (their checkpoint tensors are ignored).

Projection paths: ``layers_{i}.attention.{query,key,value}`` (one grouped int8 call),
``layers_{i}.attention.output``, ``layers_{i}.intermediate``, ``layers_{i}.output``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxint8.models import ModelConfig, QuantConfig, BertModel
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "bert", "vocab_size": 128, "hidden_size": 64,
    ...     "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128})
    >>> model = BertModel(cfg, quant=QuantConfig(int8=True))
    >>> ids = jnp.array([[101, 7, 8, 102, 0]])
    >>> params = model.init(jax.random.key(0), ids)["params"]
    >>> params["layers_0"]["intermediate"]["kernel"].dtype
    dtype('int8')
    >>> model.apply({"params": params}, ids, attention_mask=jnp.array([[1, 1, 1, 1, 0]])).shape
    (1, 5, 64)
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from .common import Base, HFParam, sub
from .layers import activation, dense, dense_group, dot_product_attention, layer_norm

__all__ = ["BertModel", "hf_param_map"]


class BertAttention(Base):
    @nn.compact
    def __call__(self, x, mask):
        cfg = self.config
        B, T, _ = x.shape
        d = cfg.num_heads * cfg.head_dim
        shape = (B, T, cfg.num_heads, cfg.head_dim)
        q, k, v = dense_group(self, [(d, "query"), (d, "key"), (d, "value")])(x)
        out = dot_product_attention(
            q.reshape(shape), k.reshape(shape), v.reshape(shape), mask, cfg.head_dim**-0.5
        )
        return dense(self, cfg.hidden_size, "output")(out)


class BertLayer(Base):
    @nn.compact
    def __call__(self, h, mask):
        cfg = self.config
        a = sub(self, BertAttention, "attention")(h, mask)
        h = layer_norm(self, "attention_layer_norm", cfg.norm_eps)(h + a)
        x = activation(cfg.activation)(dense(self, cfg.intermediate_size, "intermediate")(h))
        return layer_norm(self, "output_layer_norm", cfg.norm_eps)(h + dense(self, cfg.hidden_size, "output")(x))


class BertModel(Base):
    """BERT encoder: ``apply({"params": p}, input_ids, attention_mask=None, token_type_ids=None)``.

    Args (of ``__call__``):
      input_ids: int ``[B, T]``.
      attention_mask: ``[B, T]``, 1 for real tokens, 0 for padding (any side); ``None``: all ones.
      token_type_ids: int ``[B, T]`` (segment A = 0, B = 1); ``None``: zeros.
      position_ids: int ``[B, T]``; ``None``: ``0 .. T-1`` for every row (as ``transformers``).

    Returns:
      The last hidden state, float32 ``[B, T, hidden_size]``. Rows of padding positions hold
      finite values that mean :func:`~jaxint8.models.mean_pool` ignores.
    """

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        cfg = self.config
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {input_ids.shape}")
        B, T = input_ids.shape
        if T > cfg.max_position_embeddings:
            raise ValueError(
                f"input_ids has {T} positions, more than the model's max_position_embeddings "
                f"{cfg.max_position_embeddings}; truncate the inputs"
            )
        if attention_mask is None:
            key_mask = jnp.ones((B, T), bool)
        else:
            key_mask = jnp.asarray(attention_mask).astype(bool)
            if key_mask.shape != (B, T):
                raise ValueError(f"attention_mask must be [batch, seq] = {(B, T)}, got {key_mask.shape}")
        if token_type_ids is None:
            token_type_ids = jnp.zeros((B, T), jnp.int32)
        elif jnp.shape(token_type_ids) != (B, T):
            raise ValueError(f"token_type_ids must be [batch, seq] = {(B, T)}, got {jnp.shape(token_type_ids)}")
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(T), (B, T))
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="word_embeddings", **kw)(input_ids)
        h = h + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embeddings", **kw)(
            position_ids
        )
        h = h + nn.Embed(max(cfg.type_vocab_size, 1), cfg.hidden_size, name="token_type_embeddings", **kw)(
            token_type_ids
        )
        h = layer_norm(self, "embeddings_layer_norm", cfg.norm_eps)(h)
        mask = jnp.broadcast_to(key_mask[:, None, :], (B, T, T))
        for i in range(cfg.num_layers):
            h = sub(self, BertLayer, f"layers_{i}")(h, mask)
        return h.astype(jnp.float32)


def hf_param_map(cfg) -> list[HFParam]:
    """Flax path ↔ Hugging Face tensor names for ``BertModel`` checkpoints (``embeddings.*``,
    ``encoder.layer.*``; a ``bert.`` head prefix, as in ``BertForMaskedLM``, is also accepted)."""
    e = "bert.embeddings"

    def norm(path, hf):
        return [HFParam((*path, "scale"), f"{hf}.weight", "tensor"), HFParam((*path, "bias"), f"{hf}.bias", "tensor")]

    m = [
        HFParam(("word_embeddings", "embedding"), f"{e}.word_embeddings.weight", "tensor"),
        HFParam(("position_embeddings", "embedding"), f"{e}.position_embeddings.weight", "tensor"),
        HFParam(("token_type_embeddings", "embedding"), f"{e}.token_type_embeddings.weight", "tensor"),
        *norm(("embeddings_layer_norm",), f"{e}.LayerNorm"),
    ]
    for i in range(cfg.num_layers):
        p, hp = f"layers_{i}", f"bert.encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            m.append(HFParam((p, "attention", proj), f"{hp}.attention.self.{proj}", "linear"))
        m += [
            HFParam((p, "attention", "output"), f"{hp}.attention.output.dense", "linear"),
            *norm((p, "attention_layer_norm"), f"{hp}.attention.output.LayerNorm"),
            HFParam((p, "intermediate"), f"{hp}.intermediate.dense", "linear"),
            HFParam((p, "output"), f"{hp}.output.dense", "linear"),
            *norm((p, "output_layer_norm"), f"{hp}.output.LayerNorm"),
        ]
    return m
