"""Flax GPT-2, OPT, Llama and BERT whose projections switch to LLM.int8() (:class:`jaxint8.flax.Int8Dense`)
with one setting; loading of local Hugging Face checkpoints straight to int8; jitted generation;
BERT sentence embeddings (:func:`embed`, :func:`mean_pool`, :func:`minilm_path`).

Shipped as ``jaxint8.models`` (the repository folder ``models/``). Quick start::

    from jaxint8.models import load_pretrained, generate
    model, params = load_pretrained("/path/to/opt-1.3b", int8=True)    # quantize-on-load
    out = generate(model, params, [[2, 100, 200]], max_new_tokens=20)

See ``docs/models.md``.
"""

from __future__ import annotations

from .config import SUPPORTED_MODEL_TYPES, ConfigError, ModelConfig, QuantConfig
from .bert import BertModel
from .gpt2 import GPT2LMHeadModel
from .layers import init_kv_cache
from .llama import LlamaForCausalLM
from .opt import OPTForCausalLM
from .registry import MODEL_CLASSES, abstract_params, build_model, hf_param_map, quantize_model
from .loading import CheckpointError, load_pretrained
from .quantized_io import load_quantized, save_quantized
from .generation import GenerationConfig, generate
from .embedding import TextEncoder, embed, mean_pool, minilm_path, sample_sentences

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "ConfigError",
    "CheckpointError",
    "ModelConfig",
    "QuantConfig",
    "GPT2LMHeadModel",
    "OPTForCausalLM",
    "LlamaForCausalLM",
    "BertModel",
    "MODEL_CLASSES",
    "build_model",
    "abstract_params",
    "hf_param_map",
    "quantize_model",
    "init_kv_cache",
    "load_pretrained",
    "save_quantized",
    "load_quantized",
    "GenerationConfig",
    "generate",
    "embed",
    "mean_pool",
    "minilm_path",
    "TextEncoder",
    "sample_sentences",
]
