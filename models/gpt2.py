"""GPT-2 (pre-LayerNorm, learned positions, fused qkv projection, tied lm_head).

Projection paths (for :class:`~jaxint8.models.config.QuantConfig` ``skip`` patterns):
``h_{i}.attn.c_attn``, ``h_{i}.attn.c_proj``, ``h_{i}.mlp.c_fc``, ``h_{i}.mlp.c_proj`` and
``lm_head`` (only when the embeddings are not tied, or when ``lm_head`` is quantized).

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxint8.models import ModelConfig, GPT2LMHeadModel
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 128, "n_embd": 64,
    ...                                 "n_layer": 2, "n_head": 4, "n_positions": 64})
    >>> model = GPT2LMHeadModel(cfg)
    >>> ids = jnp.zeros((1, 5), jnp.int32)
    >>> params = model.init(jax.random.key(0), ids)["params"]
    >>> model.apply({"params": params}, ids).shape
    (1, 5, 128)
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from .common import Base, HFParam, decoder_inputs, finish, run_layers, sub
from .layers import activation, attend, dense, layer_norm

__all__ = ["GPT2LMHeadModel", "hf_param_map"]


class GPT2Attention(Base):
    layer_idx: int = 0

    @nn.compact
    def __call__(self, x, mask, cache_kv, cache_index):
        cfg = self.config
        B, T, _ = x.shape
        qkv = dense(self, 3 * cfg.hidden_size, "c_attn")(x)
        q, k, v = (t.reshape(B, T, cfg.num_heads, cfg.head_dim) for t in jnp.split(qkv, 3, axis=-1))
        scale = cfg.head_dim**-0.5
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= self.layer_idx + 1
        out, cache_kv = attend(q, k, v, mask=mask, scale=scale, cache_kv=cache_kv, cache_index=cache_index)
        return dense(self, cfg.hidden_size, "c_proj")(out), cache_kv


class GPT2MLP(Base):
    @nn.compact
    def __call__(self, x):
        cfg = self.config
        h = activation(cfg.activation)(dense(self, cfg.intermediate_size, "c_fc")(x))
        return dense(self, cfg.hidden_size, "c_proj")(h)


class GPT2Block(Base):
    layer_idx: int = 0

    @nn.compact
    def __call__(self, h, mask, positions, cache_kv, cache_index):
        eps = self.config.norm_eps
        a, cache_kv = sub(self, GPT2Attention, "attn", layer_idx=self.layer_idx)(
            layer_norm(self, "ln_1", eps)(h), mask, cache_kv, cache_index
        )
        h = h + a
        h = h + sub(self, GPT2MLP, "mlp")(layer_norm(self, "ln_2", eps)(h))
        return h, cache_kv


class GPT2LMHeadModel(Base):
    """GPT-2 language model; see :mod:`jaxint8.models.common` for the call signature."""

    @nn.compact
    def __call__(
        self, input_ids, attention_mask=None, positions=None, cache=None, cache_index=0, last_only=False
    ):
        cfg = self.config
        inputs = decoder_inputs(input_ids, attention_mask, positions, cache, cache_index)
        embed = lambda n, name: nn.Embed(  # noqa: E731
            n, cfg.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype, name=name
        )
        wte = embed(cfg.vocab_size, "wte")
        h = wte(input_ids) + embed(cfg.max_position_embeddings, "wpe")(inputs.positions)
        layers = [sub(self, GPT2Block, f"h_{i}", layer_idx=i) for i in range(cfg.num_layers)]
        h, cache = run_layers(layers, h, inputs, cache, cache_index)
        h = layer_norm(self, "ln_f", cfg.norm_eps)(h)
        if last_only:
            h = h[:, -1:]
        if cfg.tie_word_embeddings and not self.quant.is_quantized("lm_head"):
            logits = wte.attend(h)
        else:
            logits = dense(self, cfg.vocab_size, "lm_head", use_bias=False)(h)
        return finish(logits, cache)


def hf_param_map(cfg) -> list[HFParam]:
    """Flax path ↔ Hugging Face tensor names for ``GPT2LMHeadModel`` checkpoints."""
    m = [
        HFParam(("wte", "embedding"), "transformer.wte.weight", "tensor"),
        HFParam(("wpe", "embedding"), "transformer.wpe.weight", "tensor"),
    ]
    for i in range(cfg.num_layers):
        p, hp = f"h_{i}", f"transformer.h.{i}"
        for ln in ("ln_1", "ln_2"):
            m += [
                HFParam((p, ln, "scale"), f"{hp}.{ln}.weight", "tensor"),
                HFParam((p, ln, "bias"), f"{hp}.{ln}.bias", "tensor"),
            ]
        for sub_, proj in (("attn", "c_attn"), ("attn", "c_proj"), ("mlp", "c_fc"), ("mlp", "c_proj")):
            m.append(HFParam((p, sub_, proj), f"{hp}.{sub_}.{proj}", "conv1d"))
    m += [
        HFParam(("ln_f", "scale"), "transformer.ln_f.weight", "tensor"),
        HFParam(("ln_f", "bias"), "transformer.ln_f.bias", "tensor"),
    ]
    # lm_head: its own tensor, or the tied embedding (torch layout [vocab, hidden] either way).
    m.append(HFParam(("lm_head",), "transformer.wte" if cfg.tie_word_embeddings else "lm_head", "linear"))
    return m
