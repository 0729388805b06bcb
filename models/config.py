"""Model configuration: one dataclass for the supported architectures, read from a
Hugging Face ``config.json``, plus the int8 settings.

Example::

    >>> from jaxint8.models.config import ModelConfig, QuantConfig
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 128, "n_embd": 64,
    ...                                 "n_layer": 2, "n_head": 4, "n_positions": 64})
    >>> cfg.model_type, cfg.hidden_size, cfg.num_layers, cfg.head_dim
    ('gpt2', 64, 2, 16)
    >>> QuantConfig(int8=True).is_quantized("layers_0.mlp.fc1")
    True
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from typing import Any

from jaxint8.ops import check_threshold

__all__ = ["ModelConfig", "QuantConfig", "ConfigError", "SUPPORTED_MODEL_TYPES"]

SUPPORTED_MODEL_TYPES = ("gpt2", "opt", "llama", "bert")


class ConfigError(ValueError):
    """A ``config.json`` that this package cannot turn into a model (names the field)."""


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """Which projections run as :class:`jaxint8.flax.Int8Dense`.

    Attributes:
      int8: ``False`` gives the float model (``flax.linen.Dense`` everywhere).
      threshold: LLM.int8() outlier threshold; ``None`` or 0 disables the decomposition.
      skip: ``fnmatch`` patterns over the dotted module path of a projection (for example
        ``"lm_head"``, ``"layers_0.*"``, ``"*.fc2"``); matching projections stay float.
        Embeddings are never quantized; ``lm_head`` is skipped by default, as in bitsandbytes.
      group: int8 projections that read the same input (q/k/v; Llama's gate/up) quantize it
        once and run as one grouped op (:func:`jaxint8.flax.int8_dense_group`); same results,
        fewer kernels per layer. ``False`` runs them one by one (for A/B measurements).
    """

    int8: bool = False
    threshold: float | None = 6.0
    skip: tuple[str, ...] = ("lm_head",)
    group: bool = True

    def __post_init__(self):
        check_threshold(self.threshold, "QuantConfig")
        if isinstance(self.skip, str):
            raise TypeError("QuantConfig.skip must be a sequence of patterns, not a single string")
        object.__setattr__(self, "skip", tuple(self.skip))

    def is_quantized(self, path: str) -> bool:
        """Whether the projection at dotted module ``path`` is int8 under this config."""
        return self.int8 and not any(fnmatch.fnmatchcase(path, p) for p in self.skip)

    def to_dict(self) -> dict:
        return {"int8": self.int8, "threshold": self.threshold, "skip": list(self.skip),
                "group": self.group}

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        return cls(int8=bool(d["int8"]), threshold=d.get("threshold"), skip=tuple(d.get("skip", ())),
                   group=bool(d.get("group", True)))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters shared by GPT-2, OPT, Llama (decoders) and BERT (encoder).

    Build it with :meth:`from_hf_dict` / :meth:`from_pretrained_dir`; the original Hugging Face
    dict is kept in ``hf_config`` (it is what gets saved again).
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    max_position_embeddings: int
    norm_eps: float
    activation: str
    tie_word_embeddings: bool
    # GPT-2
    scale_attn_by_inverse_layer_idx: bool = False
    # OPT
    do_layer_norm_before: bool = True
    word_embed_proj_dim: int | None = None
    final_layer_norm: bool = True
    layer_norm_elementwise_affine: bool = True
    # OPT bias / Llama biases
    enable_bias: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    # Llama RoPE: theta and scaling as a sorted tuple of (key, value) pairs (hashable).
    rope_theta: float = 10000.0
    rope_scaling: tuple | None = None
    # BERT
    type_vocab_size: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | tuple | None = None
    pad_token_id: int | None = None
    hf_config: dict = dataclasses.field(default_factory=dict, compare=False, hash=False, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained_dir(cls, path: str | os.PathLike) -> "ModelConfig":
        """Reads ``path/config.json``."""
        fname = os.path.join(os.fspath(path), "config.json")
        if not os.path.isfile(fname):
            raise FileNotFoundError(f"no config.json in {os.fspath(path)!r}")
        with open(fname, encoding="utf-8") as f:
            return cls.from_hf_dict(json.load(f))

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Builds the config from a Hugging Face ``config.json`` dict.

        Raises:
          ConfigError: unsupported ``model_type`` or a required field is missing / unsupported.
        """
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"unsupported model_type {model_type!r} in config.json "
                f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        parse = {"gpt2": _parse_gpt2, "opt": _parse_opt, "llama": _parse_llama, "bert": _parse_bert}[model_type]
        common = dict(
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=_eos(d.get("eos_token_id")),
            pad_token_id=d.get("pad_token_id"),
            hf_config=dict(d),
        )
        return cls(model_type=model_type, **parse(d), **common)

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    @property
    def rope_scaling_dict(self) -> dict | None:
        return None if self.rope_scaling is None else dict(self.rope_scaling)


def _eos(v):
    return tuple(v) if isinstance(v, list) else v


def _req(d: dict, key: str, model_type: str):
    if key not in d or d[key] is None:
        raise ConfigError(f"config.json ({model_type}) is missing the required field {key!r}")
    return d[key]


def _parse_gpt2(d):
    hidden, heads = int(_req(d, "n_embd", "gpt2")), int(_req(d, "n_head", "gpt2"))
    # reorder_and_upcast_attn only changes the float precision of the scores: ours are float32 anyway.
    if d.get("add_cross_attention"):
        raise ConfigError("config.json (gpt2): add_cross_attention=True is not supported")
    if d.get("scale_attn_weights", True) is False:
        raise ConfigError("config.json (gpt2): scale_attn_weights=False is not supported")
    return dict(
        vocab_size=int(_req(d, "vocab_size", "gpt2")),
        hidden_size=hidden,
        num_layers=int(_req(d, "n_layer", "gpt2")),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=int(d.get("n_inner") or 4 * hidden),
        max_position_embeddings=int(_req(d, "n_positions", "gpt2")),
        norm_eps=float(d.get("layer_norm_epsilon", 1e-5)),
        activation=d.get("activation_function", "gelu_new"),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", True)),
        scale_attn_by_inverse_layer_idx=bool(d.get("scale_attn_by_inverse_layer_idx", False)),
    )


def _mha_fields(d, kind, ffn_key):
    """The fields of a multi-head (no grouped KV) transformer: sizes, heads, FFN width."""
    hidden, heads = int(_req(d, "hidden_size", kind)), int(_req(d, "num_attention_heads", kind))
    if hidden % heads:
        raise ConfigError(
            f"config.json ({kind}): hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
        )
    return dict(
        vocab_size=int(_req(d, "vocab_size", kind)),
        hidden_size=hidden,
        num_layers=int(_req(d, "num_hidden_layers", kind)),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=int(_req(d, ffn_key, kind)),
    )


def _parse_opt(d):
    fields = _mha_fields(d, "opt", "ffn_dim")
    return dict(
        fields,
        max_position_embeddings=int(_req(d, "max_position_embeddings", "opt")),
        norm_eps=1e-5,
        activation=d.get("activation_function", "relu"),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", True)),
        do_layer_norm_before=bool(d.get("do_layer_norm_before", True)),
        word_embed_proj_dim=int(d.get("word_embed_proj_dim") or fields["hidden_size"]),
        final_layer_norm=bool(d.get("do_layer_norm_before", True))
        and not d.get("_remove_final_layer_norm", False),
        layer_norm_elementwise_affine=bool(d.get("layer_norm_elementwise_affine", True)),
        enable_bias=bool(d.get("enable_bias", True)),
    )


_ROPE_TYPES = ("default", "linear", "llama3")


def _parse_llama(d):
    hidden, heads = int(_req(d, "hidden_size", "llama")), int(_req(d, "num_attention_heads", "llama"))
    # pretraining_tp only slices the reference's matmuls (same math): ignored.
    rope = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    theta = float(rope.get("rope_theta", d.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in _ROPE_TYPES:
        raise ConfigError(
            f"config.json (llama): unsupported rope type {rope_type!r} in field "
            f"'rope_parameters'/'rope_scaling' (supported: {', '.join(_ROPE_TYPES)})"
        )
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError("config.json (llama): partial_rotary_factor != 1 is not supported")
    scaling = None
    if rope_type != "default":
        scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")}
        scaling["rope_type"] = rope_type
        scaling.setdefault("original_max_position_embeddings", d.get("max_position_embeddings"))
        scaling = tuple(sorted(scaling.items()))
    act = d.get("hidden_act", "silu")
    return dict(
        vocab_size=int(_req(d, "vocab_size", "llama")),
        hidden_size=hidden,
        num_layers=int(_req(d, "num_hidden_layers", "llama")),
        num_heads=heads,
        num_kv_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=int(d.get("head_dim") or hidden // heads),
        intermediate_size=int(_req(d, "intermediate_size", "llama")),
        max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
        norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        activation=act,
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        attention_bias=bool(d.get("attention_bias", False)),
        mlp_bias=bool(d.get("mlp_bias", False)),
        rope_theta=theta,
        rope_scaling=scaling,
    )


def _parse_bert(d):
    pos_type = d.get("position_embedding_type", "absolute")
    if pos_type != "absolute":
        raise ConfigError(
            f"config.json (bert): position_embedding_type {pos_type!r} is not supported (only 'absolute')"
        )
    if d.get("is_decoder") or d.get("add_cross_attention"):
        raise ConfigError("config.json (bert): is_decoder / add_cross_attention are not supported (encoder only)")
    return dict(
        _mha_fields(d, "bert", "intermediate_size"),
        max_position_embeddings=int(d.get("max_position_embeddings", 512)),
        norm_eps=float(d.get("layer_norm_eps", 1e-12)),
        activation=d.get("hidden_act", "gelu"),
        tie_word_embeddings=False,
        type_vocab_size=int(d.get("type_vocab_size", 2)),
    )
