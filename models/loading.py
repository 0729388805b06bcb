"""Loading local Hugging Face checkpoints (``config.json`` + ``*.safetensors``, sharded or not)
with quantize-on-load.

Tensors are streamed one at a time (``safetensors.safe_open``, memory-mapped); each projection
weight is quantized right after it is read and the float copy is dropped, so peak host memory is
about the int8 model plus the largest single tensor. Only local paths are accepted; nothing is
downloaded.

Example::

    >>> from jaxint8.models import load_pretrained                          # doctest: +SKIP
    >>> model, params = load_pretrained("/models/opt-1.3b", int8=True)      # doctest: +SKIP
    >>> logits = model.apply({"params": params}, input_ids)                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from tqdm.auto import tqdm

import jaxint8

from .config import ModelConfig, QuantConfig
from .registry import abstract_params, build_model, hf_param_map

__all__ = [
    "CheckpointError",
    "load_pretrained",
    "CheckpointReader",
    "set_path",
    "flatten_paths",
    "INDEX_FILE",
]

# Buffers some checkpoints carry that are not parameters.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq", "embeddings.position_ids")
# BERT's pooler: not part of jaxint8.models.BertModel (which returns the last hidden state).
_IGNORED_PREFIXES = ("pooler.", "bert.pooler.")
INDEX_FILE = "model.safetensors.index.json"


# One compiled quantization per weight shape (instead of a dozen eagerly dispatched ops).
_quantize = jax.jit(jaxint8.quantize_weight, static_argnames="transposed")


class CheckpointError(ValueError):
    """A checkpoint that does not match its config (names the tensor, file and shapes)."""


class CheckpointReader:
    """Name → tensor access over one or more ``.safetensors`` files of a local directory.

    Use as a context manager; :meth:`read` returns one numpy array at a time.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(
                f"checkpoint directory {self.path!r} does not exist (only local paths are supported)"
            )
        self._stack = contextlib.ExitStack()
        self._handles: dict[str, object] = {}
        self.index = self._build_index()
        self.used: set[str] = set()

    def _open(self, fname):
        if fname not in self._handles:
            full = os.path.join(self.path, fname)
            if not os.path.isfile(full):
                raise CheckpointError(
                    f"{INDEX_FILE} in {self.path!r} names shard {fname!r}, which does not exist"
                )
            self._handles[fname] = self._stack.enter_context(safe_open(full, framework="numpy"))
        return self._handles[fname]

    def _build_index(self) -> dict[str, str]:
        index_file = os.path.join(self.path, INDEX_FILE)
        if os.path.isfile(index_file):
            with open(index_file, encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index_file!r} has no 'weight_map'")
            return dict(weight_map)
        files = sorted(f for f in os.listdir(self.path) if f.endswith(".safetensors"))
        if not files:
            raise CheckpointError(
                f"no *.safetensors files in {self.path!r} (PyTorch .bin checkpoints are not supported; "
                "re-save with save_pretrained(..., safe_serialization=True))"
            )
        index = {}
        for fname in files:
            for key in self._open(fname).keys():
                index[key] = fname
        return index

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def resolve(self, name: str) -> str | None:
        """``name`` as stored: also tries without the ``transformer.`` / ``model.`` head prefix."""
        if name in self.index:
            return name
        for prefix in ("transformer.", "model.", "bert."):
            if name.startswith(prefix) and name[len(prefix) :] in self.index:
                return name[len(prefix) :]
        return None

    def has(self, name: str) -> bool:
        return self.resolve(name) is not None

    def shape(self, name: str) -> tuple[int, ...]:
        key = self._require(name)
        return tuple(self._open(self.index[key]).get_slice(key).get_shape())

    def read(self, name: str, expected_shape: tuple[int, ...], what: str) -> np.ndarray:
        """The tensor ``name``, after checking it has ``expected_shape`` (``what`` names its use)."""
        key = self._require(name, what)
        shape = self.shape(name)
        if shape != tuple(expected_shape):
            hint = ""
            if len(shape) == 2 and shape == tuple(expected_shape)[::-1]:
                hint = (
                    "; that is the expected shape transposed: the checkpoint stores this weight with "
                    "its in/out axes swapped (torch Linear [out, in] vs Conv1D / Flax [in, out])"
                )
            raise CheckpointError(
                f"tensor {key!r} in {os.path.join(self.path, self.index[key])!r} has shape {shape}, "
                f"but config.json implies {tuple(expected_shape)} for {what}{hint}"
            )
        self.used.add(key)
        return self._open(self.index[key]).get_tensor(key)

    def _require(self, name, what=None) -> str:
        key = self.resolve(name)
        if key is None:
            for_ = f" (needed for {what})" if what else ""
            raise CheckpointError(f"checkpoint {self.path!r} is missing tensor {name!r}{for_}")
        return key

    def unused(self) -> list[str]:
        return sorted(
            k for k in self.index
            if k not in self.used and not k.endswith(_IGNORED_SUFFIXES) and not k.startswith(_IGNORED_PREFIXES)
        )


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
    """``tree[p0][p1]...[pn] = value``, creating dicts on the way."""
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def flatten_paths(tree) -> dict[tuple[str, ...], object]:
    """``{path tuple: leaf}`` of a nested dict."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[tuple(str(k.key) for k in path)] = leaf
    return out


def _subtree(tree, path):
    for p in path:
        if not isinstance(tree, dict) or p not in tree:
            return None
        tree = tree[p]
    return tree


def _load_projection(reader, entry, sub, params):
    """Reads one projection (weight + bias), quantizing it if the target is int8."""
    what = "/".join(entry.path)
    kernel = sub["kernel"]
    int8 = "scale" in sub
    out_f, in_f = kernel.shape if int8 else kernel.shape[::-1]
    torch_layout = entry.kind == "linear"
    hf_shape = (out_f, in_f) if torch_layout else (in_f, out_f)
    w = reader.read(f"{entry.hf_name}.weight", hf_shape, f"{what}/kernel")
    if int8:
        q = _quantize(jnp.asarray(w), transposed=torch_layout)
        set_path(params, (*entry.path, "kernel"), q.qweight)
        set_path(params, (*entry.path, "scale"), q.scale)
    else:
        w = np.ascontiguousarray(w.T) if torch_layout else w  # host-side: no per-shape compiles
        set_path(params, (*entry.path, "kernel"), jnp.asarray(w, kernel.dtype))
    del w
    if "bias" in sub:
        b = reader.read(f"{entry.hf_name}.bias", sub["bias"].shape, f"{what}/bias")
        set_path(params, (*entry.path, "bias"), jnp.asarray(b, sub["bias"].dtype))


def load_params(reader: CheckpointReader, cfg: ModelConfig, target, *, progress=True, desc="loading") -> dict:
    """Fills the abstract param tree ``target`` from ``reader`` (see :func:`load_pretrained`)."""
    params: dict = {}
    entries = [e for e in hf_param_map(cfg) if _subtree(target, e.path) is not None]
    for entry in tqdm(entries, desc=desc, unit="tensor", disable=not progress, leave=False):
        sub = _subtree(target, entry.path)
        if entry.kind == "tensor":
            arr = reader.read(entry.hf_name, sub.shape, "/".join(entry.path))
            set_path(params, entry.path, jnp.asarray(arr, sub.dtype))
        else:
            _load_projection(reader, entry, sub, params)
    missing = set(flatten_paths(target)) - set(flatten_paths(params))
    if missing:  # a bug in an architecture's tensor map, not in the checkpoint
        raise RuntimeError(f"no checkpoint tensor is mapped to params {sorted('/'.join(p) for p in missing)}")
    return params


def load_pretrained(
    path: str | os.PathLike,
    *,
    int8: bool = False,
    quant: QuantConfig | None = None,
    dtype=None,
    param_dtype=jnp.float32,
    progress: bool = True,
):
    """Loads a local Hugging Face checkpoint directory as ``(model, params)``.

    Args:
      path: directory with ``config.json`` and ``*.safetensors`` (optionally sharded with
        ``model.safetensors.index.json``). ``model_type`` must be gpt2, opt, llama or bert.
      int8: quantize every projection (except ``lm_head``) on load. Shorthand for
        ``quant=QuantConfig(int8=True)``.
      quant: full control: threshold and skip patterns (overrides ``int8``).
      dtype: computation dtype of the model; param_dtype: dtype of the float params.
      progress: show a tqdm progress bar.

    Returns:
      ``(model, params)``: a Flax module and its ``params`` dict (``model.apply({"params": params}, ids)``:
      logits for the decoders, the last hidden state for ``bert``).

    Raises:
      ConfigError: unsupported ``model_type`` or a bad ``config.json`` field (named).
      CheckpointError: a missing tensor or one of the wrong shape (named, with file and shapes).

    Example::

        >>> model, params = load_pretrained("/models/opt-125m", int8=True)   # doctest: +SKIP
    """
    cfg = ModelConfig.from_pretrained_dir(path)
    quant = quant if quant is not None else QuantConfig(int8=int8)
    model = build_model(cfg, quant, dtype=dtype, param_dtype=param_dtype)
    target = abstract_params(model)
    with CheckpointReader(path) as reader:
        desc = f"loading {cfg.model_type}" + (" (int8)" if quant.int8 else "")
        params = load_params(reader, cfg, target, progress=progress, desc=desc)
        unused = [k for k in reader.unused() if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if unused:
        warnings.warn(f"{len(unused)} checkpoint tensors were not used, e.g. {unused[:5]}", stacklevel=2)
    return model, params
