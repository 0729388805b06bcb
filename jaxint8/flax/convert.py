"""Converting float linen parameter trees to :class:`jaxint8.flax.Int8Dense` parameters."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

import jax
import jax.numpy as jnp

from jaxint8.weights import quantize_weight

__all__ = ["float32_int8_biases", "quantize_dense_params", "trainable_mask"]


def _is_dense(tree) -> bool:
    if not isinstance(tree, Mapping) or "kernel" not in tree or "scale" in tree:
        return False
    k = tree["kernel"]
    return getattr(k, "ndim", 0) >= 2 and jnp.issubdtype(k.dtype, jnp.floating)


def _quantize_dense(tree):
    q = quantize_weight(tree["kernel"])
    out = {"kernel": q.qweight, "scale": q.scale}
    out.update({k: v for k, v in tree.items() if k != "kernel"})
    return out


def _target_is_int8(target) -> bool:
    return (isinstance(target, Mapping) and "scale" in target and "kernel" in target
            and jnp.dtype(target["kernel"].dtype) == jnp.int8)


def quantize_dense_params(params: Mapping[str, Any], *, target: Optional[Mapping] = None,
                          exclude: Iterable[str] = ()) -> dict:
    """Converts the ``nn.Dense`` entries of a float linen ``params`` tree to ``Int8Dense`` ones.

    A Dense entry is a dict ``{'kernel': float [in, out], 'bias'?: [out]}``; it becomes
    ``{'kernel': int8 [out, in], 'scale': f32 [out], 'bias'?}``. Everything else is kept as is.
    Layers stacked by ``nn.scan`` (``variable_axes={'params': 0}``, the MaxText layout) have a
    kernel ``[layers, in, out]``: it becomes ``kernel`` int8 ``[layers, out, in]`` and ``scale``
    ``[layers, out]``, each layer quantized as its unstacked kernel would be (bit for bit), and
    the scan slices the leading axis for :class:`jaxint8.flax.Int8Dense`.
    Kernels must be in Flax's ``[in, out]`` layout: a torch / Hugging Face state dict's
    ``[out, in]`` weights must be transposed first (with ``target``, a non-square kernel in that
    layout raises an error saying so; a square one cannot be told apart). A NaN or Inf in a
    kernel raises a ``ValueError`` (see :func:`jaxint8.quantize_weight`).

    Args:
      params: the float parameter tree (the ``'params'`` collection).
      target: optional abstract parameter tree of the int8 model (for example
        ``jax.eval_shape(int8_model.init, key, x)['params']``). When given, exactly the entries
        that are int8 there are converted, and a missing or mismatched entry raises a
        ``ValueError`` naming its path.
      exclude: without ``target``: module names (path components) whose Dense layers stay float,
        e.g. ``("lm_head",)``.

    Example::

        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> from jaxint8.flax import quantize_dense_params
        >>> p = nn.Dense(8).init(jax.random.key(0), jnp.ones((1, 4)))["params"]
        >>> q = quantize_dense_params(p)
        >>> q["kernel"].shape, q["kernel"].dtype
        ((8, 4), dtype('int8'))

    Scanned layers (see docs/workflows.md for a whole model)::

        >>> stacked = {"kernel": jnp.ones((3, 4, 8)), "bias": jnp.zeros((3, 8))}
        >>> q = quantize_dense_params({"layers": {"Dense_0": stacked}})
        >>> q["layers"]["Dense_0"]["kernel"].shape, q["layers"]["Dense_0"]["scale"].shape
        ((3, 8, 4), (3, 8))
    """
    exclude = frozenset(exclude)

    def walk(tree, tgt, path):
        where = "/".join(path) or "<root>"
        if tgt is not None:
            if _target_is_int8(tgt):
                if _target_is_int8(tree):
                    raise ValueError(f"quantize_dense_params: {where}: this entry is already "
                                     f"int8 ('kernel' and 'scale'); pass the float params")
                if not _is_dense(tree):
                    raise ValueError(f"quantize_dense_params: {where}: the int8 model expects a "
                                     f"Dense entry with a float 'kernel' [in, out] (or "
                                     f"[layers, in, out] under nn.scan) here")
                want = tuple(tgt["kernel"].shape)
                shape = tuple(tree["kernel"].shape)
                got = shape[:-2] + shape[-2:][::-1]
                if got != want:
                    hint = ""
                    if len(got) != len(want):
                        hint = ("; the number of stacked layer axes differs (nn.scan stacks the "
                                "layers on axis 0: [layers, in, out])")
                    elif got[-2:] == want[-2:][::-1] and want[-1] != want[-2]:
                        hint = ("; the float kernel is [out, in] (torch / Hugging Face layout): "
                                "transpose it to Flax's [in, out] first, or quantize it with "
                                "jaxint8.quantize_weight(w, transposed=True)")
                    raise ValueError(f"quantize_dense_params: {where}/kernel: float kernel "
                                     f"{list(tree['kernel'].shape)} gives int8 {list(got)}, the "
                                     f"int8 model expects {list(want)} (float [in, out] = "
                                     f"{list(want[:-2] + want[-2:][::-1])}){hint}")
                return _quantize_dense(tree)
            if isinstance(tgt, Mapping):
                if not isinstance(tree, Mapping):
                    raise ValueError(f"quantize_dense_params: {where}: expected a sub-tree")
                missing = set(tgt) - set(tree)
                if missing:
                    raise ValueError(f"quantize_dense_params: {where}: missing entries "
                                     f"{sorted(missing)}")
                return {k: walk(v, tgt.get(k), path + (k,)) for k, v in tree.items()}
            return tree
        if _is_dense(tree):
            return _quantize_dense(tree)
        if isinstance(tree, Mapping):
            return {k: (v if k in exclude else walk(v, None, path + (k,)))
                    for k, v in tree.items()}
        return tree

    return walk(params, target, ())


def _is_int8_entry(tree) -> bool:
    """An ``Int8Dense`` entry of params (int8 kernel) or of their gradients (float0 kernel)."""
    return (isinstance(tree, Mapping) and "scale" in tree and "kernel" in tree
            and jnp.dtype(tree["kernel"].dtype) in (jnp.dtype(jnp.int8),
                                                     jnp.dtype(jax.dtypes.float0)))


def trainable_mask(params) -> Any:
    """Pytree of bools: True for float leaves (trainable), False for the int8 kernels and their
    scales (and any other non-float leaf).

    Works on the params and on their gradients from ``jax.grad(..., allow_int=True)`` (where the
    int8 kernels are ``float0``): the same tree either way. For training use
    :func:`jaxint8.flax.freeze_int8`, which applies this mask *and* turns the frozen leaves'
    updates into zeros that ``optax.apply_updates`` can add; ``optax.masked`` alone passes the
    frozen leaves' gradients through as updates (a ``float0`` kernel gradient makes
    ``optax.apply_updates`` raise ``TypeError: Called add with a float0 array``).

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from jaxint8.flax import Int8Dense, trainable_mask
        >>> p = Int8Dense(8).init(jax.random.key(0), jnp.ones((1, 4)))["params"]
        >>> sorted(trainable_mask(p).items())
        [('bias', True), ('kernel', False), ('scale', False)]
    """

    def walk(tree):
        if isinstance(tree, Mapping):
            frozen = _is_int8_entry(tree)
            return {k: (False if frozen and k in ("kernel", "scale") else walk(v))
                    for k, v in tree.items()}
        return jax.tree_util.tree_map(lambda a: bool(jnp.issubdtype(a.dtype, jnp.floating)), tree)

    return walk(params)


def float32_int8_biases(params: Mapping[str, Any]) -> dict:
    """``params`` with the bias of every ``Int8Dense`` entry in float32; everything else as is.

    The int8 kernels add the bias in float32, so a bfloat16 / float16 bias is converted on every
    call: one small kernel per layer. In a loop that applies the model many times (token-by-token
    decoding in a ``lax.while_loop``) XLA keeps those converts in the loop body; converting once
    before the loop removes them (:func:`jaxint8.models.generation.decode` does). The values, and
    so the results, are unchanged: the float32 bias holds the same numbers.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from jaxint8.flax import Int8Dense, float32_int8_biases
        >>> p = Int8Dense(8, param_dtype=jnp.bfloat16).init(jax.random.key(0), jnp.ones((1, 4)))
        >>> float32_int8_biases(p["params"])["bias"].dtype
        dtype('float32')
    """

    def walk(tree):
        if _target_is_int8(tree) and tree.get("bias") is not None:
            return {**tree, "bias": jnp.asarray(tree["bias"], jnp.float32)}
        if isinstance(tree, Mapping):
            return {k: walk(v) for k, v in tree.items()}
        return tree

    return walk(params)
