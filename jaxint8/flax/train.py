"""Training on top of frozen int8 weights: :func:`freeze_int8` for optax optimizers."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxint8.flax.convert import trainable_mask

__all__ = ["freeze_int8"]


def _optax():
    try:
        import optax
    except ImportError:
        raise ImportError("jaxint8.flax.freeze_int8 wraps an optax optimizer: pip install "
                          "optax") from None
    return optax


def _broadcast_prefix(prefix, tree, what):
    """``prefix`` (a bool pytree, a prefix of ``tree``) expanded to one bool per leaf of ``tree``."""
    try:
        return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), prefix, tree)
    except (ValueError, TypeError) as err:
        raise ValueError(f"jaxint8.flax.freeze_int8: trainable must be a bool pytree whose "
                         f"structure is a prefix of the {what} (e.g. {{'params': False, "
                         f"'lora': True}}): {err}") from None


def _zero_update(u, p):
    """A zero update that ``optax.apply_updates`` adds without changing ``p`` (bit for bit)."""
    if p is not None:
        return jnp.zeros(jnp.shape(p), jnp.asarray(p).dtype)
    if jnp.dtype(u.dtype) == jnp.dtype(jax.dtypes.float0):
        return np.zeros(u.shape, np.int8)   # int8 + int8 zero is the int8 value
    return jnp.zeros_like(u)


def freeze_int8(optimizer, trainable: Optional[Any] = None):
    """``optimizer`` (optax) on the float leaves only; the int8 weights get zero updates.

    The natural loop with an int8 model is ``jax.grad(loss, allow_int=True)`` (the int8 kernels
    are integer arrays: their gradients are ``float0``), then ``optimizer.update`` and
    ``optax.apply_updates``. Wrapped by this function, the optimizer sees only the leaves that
    :func:`jaxint8.flax.trainable_mask` marks trainable (``Int8Dense`` kernels and scales and any
    other non-float leaf are left out: no optimizer state for them), and every frozen leaf gets a
    zero update of its own dtype, so ``optax.apply_updates`` leaves it bit-identical. (With
    ``optax.masked`` alone, the frozen leaves' gradients pass through as updates: a ``float0``
    kernel gradient makes ``optax.apply_updates`` raise ``TypeError: Called add with a float0
    array``, and a float leaf would move by its raw gradient.)

    Args:
      optimizer: an ``optax.GradientTransformation`` (``optax.adam(1e-3)``, a chain, ...).
      trainable: optional bool pytree, a prefix of the params, that freezes more: a leaf is
        trained only where it is True *and* float. For adapters: ``{'params': False,
        'lora': True}`` trains only the adapters of a ``{'params': ..., 'lora': ...}`` tree.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    For ``flax.nnx`` this is not needed: :class:`jaxint8.flax.Int8Linear`'s int8 arrays are
    ``QuantizedArray`` variables, which ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and
    ``nnx.grad`` leave out.

    Example::

        >>> import jax, jax.numpy as jnp, optax
        >>> from jaxint8.flax import Int8Dense, freeze_int8
        >>> layer, x = Int8Dense(8), jnp.ones((2, 4))
        >>> params = layer.init(jax.random.key(0), x)["params"]
        >>> loss = lambda p: jnp.sum(layer.apply({"params": p}, x) ** 2)
        >>> tx = freeze_int8(optax.adam(1e-2))
        >>> state = tx.init(params)
        >>> grads = jax.grad(loss, allow_int=True)(params)      # kernel: float0
        >>> updates, state = tx.update(grads, state, params)
        >>> new = optax.apply_updates(params, updates)
        >>> bool((new["kernel"] == params["kernel"]).all()), new["kernel"].dtype
        (True, dtype('int8'))
    """
    optax = _optax()
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"jaxint8.flax.freeze_int8: optimizer must be an optax "
                        f"GradientTransformation (e.g. optax.adam(1e-3)), got "
                        f"{type(optimizer).__name__}")

    def mask_of(tree, what):
        mask = trainable_mask(tree)
        if trainable is not None:
            extra = _broadcast_prefix(trainable, tree, what)
            mask = jax.tree.map(lambda a, b: a and b, mask, extra)
        return mask

    inner = optax.masked(optimizer, lambda tree: mask_of(tree, "params / gradients"))

    def init(params):
        return inner.init(params)

    def update(updates, state, params=None, **extra_args):
        mask = mask_of(updates, "gradients")
        new, state = inner.update(updates, state, params, **extra_args)
        if params is None:
            new = jax.tree.map(lambda m, u: u if m else _zero_update(u, None), mask, new)
        else:
            new = jax.tree.map(lambda m, u, p: u if m else _zero_update(u, p), mask, new, params)
        return new, state

    return optax.GradientTransformationExtraArgs(init, update)
