"""Saving and loading a converted (int8) model, so quantization happens once.

A saved model is a directory with ``jaxint8_config.json`` (the Hugging Face config, the
:class:`~jaxint8.models.config.QuantConfig` and dtypes) and safetensors files holding every param
under its dotted Flax path (``layers_0.fc1.kernel`` int8, ``layers_0.fc1.scale`` float32, ...):
``model.safetensors``, or shards ``model-00001-of-00003.safetensors`` ... plus
``model.safetensors.index.json`` when the model is larger than ``max_shard_size`` (only one shard
is copied to host memory at a time).

Example::

    >>> from jaxint8.models import load_pretrained, save_quantized, load_quantized  # doctest: +SKIP
    >>> model, params = load_pretrained("/models/opt-6.7b", int8=True)              # doctest: +SKIP
    >>> save_quantized("/models/opt-6.7b-int8", model, params)                      # doctest: +SKIP
    >>> model, params = load_quantized("/models/opt-6.7b-int8")                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from .config import ModelConfig, QuantConfig
from .loading import INDEX_FILE, CheckpointError, CheckpointReader, flatten_paths, set_path
from .registry import abstract_params, build_model

__all__ = ["save_quantized", "load_quantized", "FORMAT"]

FORMAT = "jaxint8.models/1"
CONFIG_FILE = "jaxint8_config.json"
WEIGHTS_FILE = "model.safetensors"


def _dtype_name(dt):
    return None if dt is None else jnp.dtype(dt).name


def _shards(flat: dict, max_bytes: int) -> list[dict]:
    shards, cur, size = [], {}, 0
    for name, v in flat.items():
        if cur and size + v.nbytes > max_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[name] = v
        size += v.nbytes
    return shards + [cur]


def save_quantized(directory: str | os.PathLike, model, params, *, max_shard_size: int = 4 << 30) -> None:
    """Writes ``model`` (its config) and ``params`` to ``directory`` (created if needed).

    Args:
      max_shard_size: bytes per safetensors file; larger models are sharded (with an index).
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    meta = {
        "format": FORMAT,
        "hf_config": model.config.hf_config,
        "quant": model.quant.to_dict(),
        "dtype": _dtype_name(model.dtype),
        "param_dtype": _dtype_name(model.param_dtype),
    }
    flat = {".".join(p): v for p, v in flatten_paths(params).items()}
    shards = _shards(flat, max_shard_size)
    names = (
        [WEIGHTS_FILE]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    for fname, shard in zip(names, shards):
        host = {k: np.asarray(v) for k, v in shard.items()}  # one shard on the host at a time
        save_file(host, os.path.join(directory, fname), metadata={"format": FORMAT})
        del host
    if len(shards) > 1:
        index = {
            "metadata": {"format": FORMAT},
            "weight_map": {k: f for f, sh in zip(names, shards) for k in sh},
        }
        with open(os.path.join(directory, INDEX_FILE), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)


def load_quantized(directory: str | os.PathLike):
    """Loads what :func:`save_quantized` wrote; returns ``(model, params)``.

    Raises:
      FileNotFoundError: no ``jaxint8_config.json`` in ``directory``.
      CheckpointError: a param is missing or has the wrong shape / dtype (named).
    """
    directory = os.fspath(directory)
    fname = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(fname):
        raise FileNotFoundError(f"{directory!r} has no {CONFIG_FILE} (not written by save_quantized)")
    with open(fname, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{fname!r}: format {meta.get('format')!r} is not {FORMAT!r}")
    model = build_model(
        ModelConfig.from_hf_dict(meta["hf_config"]),
        QuantConfig.from_dict(meta["quant"]),
        dtype=meta.get("dtype"),
        param_dtype=meta.get("param_dtype") or "float32",
    )
    params: dict = {}
    with CheckpointReader(directory) as reader:
        for path, leaf in flatten_paths(abstract_params(model)).items():
            name = ".".join(path)
            arr = reader.read(name, leaf.shape, name)
            if arr.dtype != leaf.dtype:
                raise CheckpointError(f"tensor {name!r} has dtype {arr.dtype}, expected {leaf.dtype}")
            set_path(params, path, jnp.asarray(arr))
    return model, params
