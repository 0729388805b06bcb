"""Llama (RMSNorm, rotary position embeddings, SwiGLU MLP, grouped-query attention).

Projection paths: ``layers_{i}.self_attn.{q,k,v,o}_proj``, ``layers_{i}.mlp.{gate,up,down}_proj``,
``lm_head``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxint8.models import ModelConfig, LlamaForCausalLM
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "llama", "vocab_size": 128, "hidden_size": 64,
    ...     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    ...     "intermediate_size": 128})
    >>> model = LlamaForCausalLM(cfg)
    >>> ids = jnp.zeros((2, 3), jnp.int32)
    >>> params = model.init(jax.random.key(0), ids)["params"]
    >>> params["layers_0"]["self_attn"]["k_proj"]["kernel"].shape   # 2 kv heads x 16
    (64, 32)
"""

from __future__ import annotations

import flax.linen as nn

from .common import Base, HFParam, decoder_inputs, finish, run_layers, sub
from .layers import RMSNorm, activation, apply_rope, attend, dense, dense_group, rope_inv_freq

__all__ = ["LlamaForCausalLM", "hf_param_map"]


class LlamaAttention(Base):
    @nn.compact
    def __call__(self, x, mask, positions, cache_kv, cache_index):
        cfg = self.config
        B, T, _ = x.shape
        H, KVH, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        b = cfg.attention_bias
        q, k, v = dense_group(self, [(H * D, "q_proj"), (KVH * D, "k_proj"), (KVH * D, "v_proj")],
                              use_bias=b)(x)
        q, k, v = q.reshape(B, T, H, D), k.reshape(B, T, KVH, D), v.reshape(B, T, KVH, D)
        inv_freq = rope_inv_freq(D, cfg.rope_theta, cfg.rope_scaling_dict)
        q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
        out, cache_kv = attend(q, k, v, mask=mask, scale=D**-0.5, cache_kv=cache_kv, cache_index=cache_index)
        return dense(self, cfg.hidden_size, "o_proj", use_bias=b)(out), cache_kv


class LlamaMLP(Base):
    @nn.compact
    def __call__(self, x):
        cfg = self.config
        b = cfg.mlp_bias
        inter = cfg.intermediate_size
        gate, up = dense_group(self, [(inter, "gate_proj"), (inter, "up_proj")], use_bias=b)(x)
        return dense(self, cfg.hidden_size, "down_proj", use_bias=b)(activation(cfg.activation)(gate) * up)


class LlamaDecoderLayer(Base):
    @nn.compact
    def __call__(self, h, mask, positions, cache_kv, cache_index):
        cfg = self.config
        norm = lambda name: RMSNorm(cfg.norm_eps, self.dtype, self.param_dtype, name=name)  # noqa: E731
        a, cache_kv = sub(self, LlamaAttention, "self_attn")(
            norm("input_layernorm")(h), mask, positions, cache_kv, cache_index
        )
        h = h + a
        h = h + sub(self, LlamaMLP, "mlp")(norm("post_attention_layernorm")(h))
        return h, cache_kv


class LlamaForCausalLM(Base):
    """Llama language model; see :mod:`jaxint8.models.common` for the call signature."""

    @nn.compact
    def __call__(
        self, input_ids, attention_mask=None, positions=None, cache=None, cache_index=0, last_only=False
    ):
        cfg = self.config
        inputs = decoder_inputs(input_ids, attention_mask, positions, cache, cache_index)
        embed = nn.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="embed_tokens",
        )
        h = embed(input_ids)
        layers = [sub(self, LlamaDecoderLayer, f"layers_{i}") for i in range(cfg.num_layers)]
        h, cache = run_layers(layers, h, inputs, cache, cache_index)
        if last_only:
            h = h[:, -1:]
        h = RMSNorm(cfg.norm_eps, self.dtype, self.param_dtype, name="norm")(h)
        if cfg.tie_word_embeddings and not self.quant.is_quantized("lm_head"):
            logits = embed.attend(h)
        else:
            logits = dense(self, cfg.vocab_size, "lm_head", use_bias=False)(h)
        return finish(logits, cache)


def hf_param_map(cfg) -> list[HFParam]:
    """Flax path ↔ Hugging Face tensor names for ``LlamaForCausalLM`` checkpoints."""
    m = [HFParam(("embed_tokens", "embedding"), "model.embed_tokens.weight", "tensor")]
    for i in range(cfg.num_layers):
        p, hp = f"layers_{i}", f"model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            m.append(HFParam((p, "self_attn", proj), f"{hp}.self_attn.{proj}", "linear"))
        for proj in ("gate_proj", "up_proj", "down_proj"):
            m.append(HFParam((p, "mlp", proj), f"{hp}.mlp.{proj}", "linear"))
        for n in ("input_layernorm", "post_attention_layernorm"):
            m.append(HFParam((p, n, "scale"), f"{hp}.{n}.weight", "tensor"))
    m.append(HFParam(("norm", "scale"), "model.norm.weight", "tensor"))
    m.append(HFParam(("lm_head",), "model.embed_tokens" if cfg.tie_word_embeddings else "lm_head", "linear"))
    return m
