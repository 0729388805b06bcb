"""Tensor-parallel sharding recipes for Flax parameter trees (Megatron style), one argument.

:func:`shard_params` places every projection of a model on a :class:`jax.sharding.Mesh`:

* column parallel (output features split over the model axis): attention ``q/k/v`` (and fused
  ``qkv`` / GPT-2 ``c_attn``), MLP ``up``/``gate``/``fc1``/GPT-2 ``c_fc``;
* row parallel (input features split over the model axis, outputs all-reduced): attention output
  ``o_proj``/``out_proj``/GPT-2 ``c_proj``, MLP ``down``/``fc2``/GPT-2 ``c_proj``;
* everything else (embeddings, norms, ``lm_head``) replicated.

Both :class:`jaxint8.flax.Int8Dense` params (``kernel`` int8 ``[out, in]``, ``scale [out]``,
``bias [out]``) and float ``flax.linen.Dense`` params (``kernel [in, out]``, ``bias [out]``) are
handled; leading axes (stacked / scanned layers) stay unsharded. The data axis (if the mesh has
one) only shards activations: use :func:`data_sharding` for the inputs. Under ``jax.jit`` the
LLM.int8 partitioning rules (``jaxint8.partitioning``) then give the same result as one device;
the int8 weights never move.

Rules are ``(pattern, kind)`` pairs, ``kind`` one of ``"column"``, ``"row"``, ``"replicated"``;
``pattern`` is an ``fnmatch`` pattern matched against the module's name (the last path component,
e.g. ``"q_proj"``) and against its dotted path (e.g. ``"h_0.attn.c_proj"``). The first match
wins; :data:`DEFAULT_RULES` covers GPT-2, OPT and Llama (Hugging Face names).

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jax.sharding import AxisType
    >>> from jaxint8.sharding import shard_params
    >>> mesh = jax.make_mesh((1,), ("model",), axis_types=(AxisType.Auto,))
    >>> params = {"fc1": {"kernel": jnp.zeros((8, 4), jnp.int8), "scale": jnp.ones(8)}}
    >>> tuple(shard_params(params, mesh)["fc1"]["kernel"].sharding.spec)
    ('model', None)
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "COLUMN_PARALLEL",
    "ROW_PARALLEL",
    "DEFAULT_RULES",
    "param_specs",
    "param_shardings",
    "shard_params",
    "data_sharding",
    "model_axis_of",
    "data_axes_of",
    "hlo_collectives",
    "weight_collectives",
]

COLUMN_PARALLEL: tuple[str, ...] = (
    "q_proj", "k_proj", "v_proj", "qkv_proj", "query", "key", "value", "c_attn",
    "up_proj", "gate_proj", "gate_up_proj", "fc1", "c_fc", "w1", "w3", "wi", "wi_0", "wi_1",
)
ROW_PARALLEL: tuple[str, ...] = (
    "o_proj", "out_proj", "c_proj", "down_proj", "fc2", "w2", "wo",
)
DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    ("lm_head", "replicated"),
    *((name, "column") for name in COLUMN_PARALLEL),
    *((name, "row") for name in ROW_PARALLEL),
)

_MODEL_AXIS_NAMES = ("model", "tp", "tensor", "mp")
_DATA_AXIS_NAMES = ("data", "dp", "batch", "fsdp", "replica")


def model_axis_of(mesh: Mesh) -> str:
    """The tensor-parallel axis: ``model``/``tp``/``tensor``/``mp`` if present, else the last."""
    for name in _MODEL_AXIS_NAMES:
        if name in mesh.axis_names:
            return name
    return mesh.axis_names[-1]


def data_axes_of(mesh: Mesh, model_axis: str | None = None) -> tuple[str, ...]:
    """The mesh axes that split the batch: every axis but the model axis."""
    model_axis = model_axis or model_axis_of(mesh)
    return tuple(a for a in mesh.axis_names if a != model_axis)


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _kind(module_path: Sequence[str], rules: Iterable[tuple[str, str]]) -> str:
    if not module_path:
        return "replicated"
    last, dotted = module_path[-1], ".".join(module_path)
    for pattern, kind in rules:
        if fnmatch.fnmatchcase(last, pattern) or fnmatch.fnmatchcase(dotted, pattern):
            if kind not in ("column", "row", "replicated"):
                raise ValueError(f"sharding rule {pattern!r}: kind must be 'column', 'row' or "
                                 f"'replicated', got {kind!r}")
            return kind
    return "replicated"


def _leaf_spec(kind, leaf_name, leaf, axis, size) -> P:
    """PartitionSpec of one parameter of a projection of the given kind."""
    shape, dtype = tuple(leaf.shape), jnp.dtype(leaf.dtype)
    nd = len(shape)
    if kind == "replicated" or nd == 0:
        return P()
    lead = (None,) * (nd - 2)
    if leaf_name == "kernel" and nd >= 2:
        int8 = dtype == jnp.int8  # Int8Dense: [out, in]; nn.Dense: [in, out]
        out_dim, in_dim = (nd - 2, nd - 1) if int8 else (nd - 1, nd - 2)
        dim = out_dim if kind == "column" else in_dim
        if shape[dim] % size:
            return P()
        spec = [None, None]
        spec[dim - (nd - 2)] = axis
        return P(*lead, *spec)
    if leaf_name in ("scale", "bias") and kind == "column":
        return P(*((None,) * (nd - 1)), axis) if shape[-1] % size == 0 else P()
    return P()


def param_specs(params: Any, mesh: Mesh, rules: Iterable[tuple[str, str]] = DEFAULT_RULES, *,
                model_axis: str | None = None) -> Any:
    """A tree of :class:`PartitionSpec` (same structure as ``params``) for the recipe.

    ``params`` may hold arrays or :class:`jax.ShapeDtypeStruct` (e.g. from ``jax.eval_shape``).
    A projection whose split dimension does not divide by the model-axis size stays replicated.
    """
    axis = model_axis or model_axis_of(mesh)
    if axis not in mesh.axis_names:
        raise ValueError(f"model_axis {axis!r} is not an axis of the mesh {mesh.axis_names}")
    size = mesh.shape[axis]
    rules = tuple(rules)

    def spec(path, leaf):
        names = [_key_name(k) for k in path]
        if names and names[0] in ("params",):
            names = names[1:]
        if not names:
            return P()
        kind = _kind(names[:-1], rules)
        return _leaf_spec(kind, names[-1], leaf, axis, size)

    # Column: kernel, scale and bias split on the same out dim (so an uneven split leaves all
    # three replicated); row: only the kernel's in dim is split.
    return jax.tree_util.tree_map_with_path(spec, params)


def param_shardings(params: Any, mesh: Mesh, rules: Iterable[tuple[str, str]] = DEFAULT_RULES,
                    *, model_axis: str | None = None) -> Any:
    """:func:`param_specs` as :class:`NamedSharding` (for `jit` in_shardings or `device_put`)."""
    specs = param_specs(params, mesh, rules, model_axis=model_axis)
    return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), specs,
                                  is_leaf=lambda x: isinstance(x, P))


def shard_params(params: Any, mesh: Mesh, rules: Iterable[tuple[str, str]] = DEFAULT_RULES, *,
                 model_axis: str | None = None) -> Any:
    """Places ``params`` on ``mesh`` with the Megatron recipe (see the module doc).

    Example: ``params = shard_params(params, mesh)`` then ``jax.jit(model.apply)(params, x)``
    with ``x`` placed by :func:`data_sharding`.
    """
    return jax.device_put(params, param_shardings(params, mesh, rules, model_axis=model_axis))


def data_sharding(mesh: Mesh, ndim: int = 2, *, model_axis: str | None = None) -> NamedSharding:
    """Sharding for an input ``[batch, ...]``: batch over every non-model axis, rest replicated."""
    axes = data_axes_of(mesh, model_axis)
    entry = None if not axes else (axes[0] if len(axes) == 1 else axes)
    return NamedSharding(mesh, P(entry, *((None,) * (ndim - 1))))


# ----------------------------------------------------------------------------- HLO inspection

_COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter",
                "collective-broadcast", "ragged-all-to-all")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
                "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}


def hlo_collectives(hlo_text: str) -> list[dict]:
    """The collectives of a compiled HLO module (``jit(f).lower(...).compile().as_text()``).

    One dict per instruction: ``op`` (e.g. ``"all-reduce"``; ``-start``/``-done`` async halves
    are folded into one, ``-done`` skipped), ``types`` (list of ``(dtype, shape)`` of its result)
    and ``bytes`` (the per-device payload: the sum over the result's arrays; for an async
    ``-start`` whose result tuple holds operand and result, the result half).
    """
    import re

    out = []
    ops = "|".join(re.escape(o) for o in _COLLECTIVES)
    pat = re.compile(rf"=\s*(.+?)\s+({ops})(-start)?\(")
    arr = re.compile(r"\b(pred|[suf]\d+|bf16)\[([\d,]*)\]")
    for line in hlo_text.splitlines():
        m = pat.search(line)
        if not m:
            continue
        types = [(d, tuple(int(v) for v in s.split(",") if v)) for d, s in arr.findall(m.group(1))]
        if m.group(3) and len(types) >= 2 and m.group(2) != "all-reduce":
            types = types[len(types) // 2:]  # async start: (operands..., results...)
        nbytes = sum(_DTYPE_BYTES.get(d, 4) * _prod(s) for d, s in types)
        out.append({"op": m.group(2), "types": types, "bytes": nbytes, "line": line.strip()})
    return out


def _prod(shape):
    n = 1
    for v in shape:
        n *= v
    return n


def weight_collectives(hlo_text: str) -> list[dict]:
    """Collectives that move int8 data (an int8 weight must never be gathered or permuted)."""
    return [c for c in hlo_collectives(hlo_text) if any(d == "s8" for d, _ in c["types"])]
