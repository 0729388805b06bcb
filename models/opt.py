"""OPT (Zhang et al. 2022): learned positions with offset 2, ReLU MLP, pre-LN — or post-LN with
``project_in`` / ``project_out`` (the OPT-350m variant, ``do_layer_norm_before=False`` and
``word_embed_proj_dim != hidden_size``).

Projection paths: ``layers_{i}.self_attn.{q,k,v,out}_proj``, ``layers_{i}.fc1``, ``layers_{i}.fc2``,
``project_in``, ``project_out``, ``lm_head``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxint8.models import ModelConfig, QuantConfig, OPTForCausalLM
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "opt", "vocab_size": 128, "hidden_size": 64,
    ...     "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 128,
    ...     "max_position_embeddings": 64, "do_layer_norm_before": False, "word_embed_proj_dim": 32})
    >>> model = OPTForCausalLM(cfg, quant=QuantConfig(int8=True))
    >>> ids = jnp.zeros((1, 5), jnp.int32)
    >>> params = model.init(jax.random.key(0), ids)["params"]
    >>> params["layers_0"]["fc1"]["kernel"].dtype
    dtype('int8')
"""

from __future__ import annotations

import flax.linen as nn

from .common import Base, HFParam, decoder_inputs, finish, run_layers, sub
from .layers import activation, attend, dense, dense_group, layer_norm

__all__ = ["OPTForCausalLM", "hf_param_map"]

_POSITION_OFFSET = 2  # OPT's learned positional embedding is indexed with position + 2.


class OPTAttention(Base):
    @nn.compact
    def __call__(self, x, mask, cache_kv, cache_index):
        cfg = self.config
        B, T, _ = x.shape
        bias = cfg.enable_bias
        shape = (B, T, cfg.num_heads, cfg.head_dim)
        d = cfg.hidden_size
        q, k, v = dense_group(self, [(d, "q_proj"), (d, "k_proj"), (d, "v_proj")], use_bias=bias)(x)
        # OPT scales the query after the projection (same order as the reference, for numerics).
        q = (q * cfg.head_dim**-0.5).reshape(shape)
        k, v = k.reshape(shape), v.reshape(shape)
        out, cache_kv = attend(q, k, v, mask=mask, scale=1.0, cache_kv=cache_kv, cache_index=cache_index)
        return dense(self, cfg.hidden_size, "out_proj", use_bias=bias)(out), cache_kv


class OPTDecoderLayer(Base):
    @nn.compact
    def __call__(self, h, mask, positions, cache_kv, cache_index):
        cfg = self.config
        pre = cfg.do_layer_norm_before
        ln = lambda name: layer_norm(
            self, name, cfg.norm_eps, cfg.layer_norm_elementwise_affine
        )  # noqa: E731
        attn_ln, ffn_ln = ln("self_attn_layer_norm"), ln("final_layer_norm")

        x = attn_ln(h) if pre else h
        a, cache_kv = sub(self, OPTAttention, "self_attn")(x, mask, cache_kv, cache_index)
        h = h + a
        if not pre:
            h = attn_ln(h)

        x = ffn_ln(h) if pre else h
        x = activation(cfg.activation)(dense(self, cfg.intermediate_size, "fc1", use_bias=cfg.enable_bias)(x))
        h = h + dense(self, cfg.hidden_size, "fc2", use_bias=cfg.enable_bias)(x)
        if not pre:
            h = ffn_ln(h)
        return h, cache_kv


class OPTForCausalLM(Base):
    """OPT language model; see :mod:`jaxint8.models.common` for the call signature."""

    @nn.compact
    def __call__(
        self, input_ids, attention_mask=None, positions=None, cache=None, cache_index=0, last_only=False
    ):
        cfg = self.config
        proj_dim = cfg.word_embed_proj_dim or cfg.hidden_size
        inputs = decoder_inputs(input_ids, attention_mask, positions, cache, cache_index)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        embed_tokens = nn.Embed(cfg.vocab_size, proj_dim, name="embed_tokens", **kw)
        h = embed_tokens(input_ids)
        if proj_dim != cfg.hidden_size:
            h = dense(self, cfg.hidden_size, "project_in", use_bias=False)(h)
        pos_embed = nn.Embed(
            cfg.max_position_embeddings + _POSITION_OFFSET, cfg.hidden_size, name="embed_positions", **kw
        )
        h = h + pos_embed(inputs.positions + _POSITION_OFFSET)

        layers = [sub(self, OPTDecoderLayer, f"layers_{i}") for i in range(cfg.num_layers)]
        h, cache = run_layers(layers, h, inputs, cache, cache_index)
        if last_only:
            h = h[:, -1:]
        if cfg.final_layer_norm:
            h = layer_norm(self, "final_layer_norm", cfg.norm_eps, cfg.layer_norm_elementwise_affine)(h)
        if proj_dim != cfg.hidden_size:
            h = dense(self, proj_dim, "project_out", use_bias=False)(h)
        if cfg.tie_word_embeddings and not self.quant.is_quantized("lm_head"):
            logits = embed_tokens.attend(h)
        else:
            logits = dense(self, cfg.vocab_size, "lm_head", use_bias=False)(h)
        return finish(logits, cache)


def hf_param_map(cfg) -> list[HFParam]:
    """Flax path ↔ Hugging Face tensor names for ``OPTForCausalLM`` checkpoints."""
    d = "model.decoder"
    m = [
        HFParam(("embed_tokens", "embedding"), f"{d}.embed_tokens.weight", "tensor"),
        HFParam(("embed_positions", "embedding"), f"{d}.embed_positions.weight", "tensor"),
        HFParam(("project_in",), f"{d}.project_in", "linear"),
        HFParam(("project_out",), f"{d}.project_out", "linear"),
    ]
    norms = [("final_layer_norm",)] if cfg.final_layer_norm else []
    for i in range(cfg.num_layers):
        p, hp = f"layers_{i}", f"{d}.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            m.append(HFParam((p, "self_attn", proj), f"{hp}.self_attn.{proj}", "linear"))
        m += [HFParam((p, "fc1"), f"{hp}.fc1", "linear"), HFParam((p, "fc2"), f"{hp}.fc2", "linear")]
        norms += [(p, "self_attn_layer_norm"), (p, "final_layer_norm")]
    for n in norms:
        hn = f"{d}." + ".".join(n).replace("layers_", "layers.")
        m += [HFParam((*n, "scale"), f"{hn}.weight", "tensor"), HFParam((*n, "bias"), f"{hn}.bias", "tensor")]
    m.append(HFParam(("lm_head",), f"{d}.embed_tokens" if cfg.tie_word_embeddings else "lm_head", "linear"))
    return m
