"""``model_type`` → model class and Hugging Face tensor map; model construction helpers.

Example::

    >>> import jax.numpy as jnp
    >>> from jaxint8.models import ModelConfig, QuantConfig, build_model, abstract_params
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 128, "n_embd": 64,
    ...                                 "n_layer": 1, "n_head": 4, "n_positions": 32})
    >>> model = build_model(cfg, QuantConfig(int8=True))
    >>> abstract_params(model)["h_0"]["mlp"]["c_fc"]["kernel"].dtype
    dtype('int8')
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import bert, gpt2, llama, opt
from .config import ConfigError, ModelConfig, QuantConfig

__all__ = ["MODEL_CLASSES", "build_model", "abstract_params", "hf_param_map", "quantize_model"]

MODEL_CLASSES = {
    "gpt2": gpt2.GPT2LMHeadModel,
    "opt": opt.OPTForCausalLM,
    "llama": llama.LlamaForCausalLM,
    "bert": bert.BertModel,
}
_HF_MAPS = {"gpt2": gpt2.hf_param_map, "opt": opt.hf_param_map, "llama": llama.hf_param_map,
            "bert": bert.hf_param_map}


def _check(cfg: ModelConfig):
    if cfg.model_type not in MODEL_CLASSES:
        raise ConfigError(
            f"unsupported model_type {cfg.model_type!r} (supported: {', '.join(MODEL_CLASSES)})"
        )


def build_model(cfg: ModelConfig, quant: QuantConfig | None = None, *, dtype=None, param_dtype=jnp.float32):
    """The Flax module for ``cfg`` (float, or int8 projections per ``quant``).

    Args:
      dtype: computation dtype (``None``: from inputs/params).
      param_dtype: dtype of the float params (embeddings, norms, biases, non-quantized projections).
    """
    _check(cfg)
    return MODEL_CLASSES[cfg.model_type](
        cfg, quant=quant or QuantConfig(), dtype=dtype, param_dtype=param_dtype
    )


def abstract_params(model, batch: int = 1, seq: int = 2):
    """``jax.ShapeDtypeStruct`` tree of ``model``'s params (nothing is allocated)."""
    ids = jnp.zeros((batch, seq), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), ids))["params"]


def hf_param_map(cfg: ModelConfig):
    """The :class:`~jaxint8.models.common.HFParam` list of ``cfg``'s architecture."""
    _check(cfg)
    return _HF_MAPS[cfg.model_type](cfg)


# Where each architecture keeps the token embedding that a tied lm_head reuses.
_EMBEDDING = {"gpt2": "wte", "opt": "embed_tokens", "llama": "embed_tokens"}


def quantize_model(model, params, quant: QuantConfig | None = None):
    """Converts a loaded float model to int8 in memory; returns ``(int8_model, int8_params)``.

    Uses :func:`jaxint8.flax.quantize_dense_params` with the int8 model's abstract params as the
    target, so exactly the projections selected by ``quant`` (default ``QuantConfig(int8=True)``)
    are quantized. A tied ``lm_head`` that ``quant`` selects is quantized from the embedding.
    """
    from jaxint8.flax import quantize_dense_params

    quant = quant or QuantConfig(int8=True)
    model8 = build_model(model.config, quant, dtype=model.dtype, param_dtype=model.param_dtype)
    target = abstract_params(model8)
    params = dict(params)
    if "lm_head" in target and "lm_head" not in params:  # tied embeddings
        params["lm_head"] = {"kernel": params[_EMBEDDING[model.config.model_type]]["embedding"].T}
    return model8, quantize_dense_params(params, target=target)
