"""The quantized weight: :class:`Int8Weight` and :func:`quantize_weight`."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxint8 import reference

__all__ = ["Int8Weight", "quantize_weight"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Int8Weight:
    """A vector-wise int8 weight: a pytree of two arrays.

    Attributes:
      qweight: int8 ``[out_features, in_features]``. K-major (transposed relative to Flax's
        ``[in, out]`` kernel) because int8 tensor-core MMAs want both operands K-major.
      scale: float32 ``[out_features]``, the absmax of each output column of the float weight.

    The dequantized weight is ``qweight * scale[:, None] / 127``.

    A *stacked* weight (layers stacked for ``nn.scan`` / ``nnx.scan`` / ``vmap``, from
    :func:`quantize_weight` of a ``[layers, in, out]`` kernel) has leading axes:
    ``qweight [..., out, in]``, ``scale [..., out]``. The matmuls take one layer's weight: index
    it (``jax.tree.map(lambda a: a[i], weight)``) or let ``scan`` / ``vmap`` slice it.
    """

    qweight: jax.Array
    scale: jax.Array

    @property
    def in_features(self) -> int:
        return self.qweight.shape[-1]

    @property
    def out_features(self) -> int:
        return self.qweight.shape[-2]

    @property
    def stack_shape(self) -> tuple:
        """The leading (stacked-layer) axes: ``()`` for one layer's weight."""
        return tuple(self.qweight.shape[:-2])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.qweight.shape)) + 4 * int(np.prod(self.scale.shape))

    def dequantize(self, dtype=jnp.float32) -> jax.Array:
        """The float weight this stands for, in Flax layout ``[..., in_features, out_features]``."""
        deq = functools.partial(reference.dequantize_weight, dtype=dtype)
        for _ in self.stack_shape:
            deq = jax.vmap(deq)
        return jnp.swapaxes(deq(self.qweight, self.scale), -1, -2)


def quantize_weight(w, *, transposed: bool = False) -> Int8Weight:
    """Quantizes a float weight ``w [in_features, out_features]`` (Flax ``Dense`` layout).

    With ``transposed=True``, ``w`` is ``[out_features, in_features]`` (``torch.nn.Linear`` /
    Hugging Face layout), which is already the int8 layout: no transpose is materialized.

    Leading axes are stacked layers (``nn.scan`` / ``nnx.scan`` kernels ``[layers, in, out]``):
    each layer is quantized on its own, bit for bit as :func:`quantize_weight` of that slice,
    into ``qweight [layers, out, in]`` and ``scale [layers, out]``.

    Example::

        >>> import jax, jaxint8
        >>> w = 0.02 * jax.random.normal(jax.random.key(0), (256, 512))
        >>> wq = jaxint8.quantize_weight(w)
        >>> wq.qweight.shape, wq.qweight.dtype, wq.scale.shape
        ((512, 256), dtype('int8'), (512,))
        >>> w_torch = w.T                                   # a torch Linear weight [out, in]
        >>> jaxint8.quantize_weight(w_torch, transposed=True).qweight.shape
        (512, 256)
        >>> stacked = jaxint8.quantize_weight(jax.numpy.stack([w, w, w]))   # 3 scanned layers
        >>> stacked.qweight.shape, stacked.scale.shape
        ((3, 512, 256), (3, 512))

    The layout cannot be checked here: a torch ``[out, in]`` weight passed without
    ``transposed=True`` is quantized as an ``[in, out]`` one. If it is not square, the result has
    swapped in/out sizes and the layers (:class:`jaxint8.flax.Int8Dense`, ``Int8Linear``) reject
    it with an error that says to pass ``transposed=True``; a **square** weight in the wrong
    layout gives wrong outputs without any error.

    Non-finite values: a NaN or Inf in a concrete ``w`` raises a ``ValueError`` naming the
    affected output features (a float matmul with it would give NaN/Inf there). Under
    ``jax.jit`` or another transformation the values are not known and nothing is raised; the
    scale of every affected output feature is then NaN/Inf, so those outputs of
    :func:`jaxint8.llm_int8_matmul` are NaN/Inf as well (never silently finite).

    Raises:
      TypeError: ``w`` is not a floating-point array.
      ValueError: ``w`` has fewer than 2 dimensions, or (outside of tracing) contains NaN or Inf.
    """
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise TypeError(f"quantize_weight: w must be a floating-point array, got dtype {w.dtype}")
    if w.ndim < 2:
        layout = "[out_features, in_features]" if transposed else "[in_features, out_features]"
        raise ValueError(f"quantize_weight: w must be 2-D {layout} (or [layers, ...] stacked), "
                         f"got shape {w.shape}")
    quantize = reference.quantize_weight_out_in
    for _ in range(w.ndim - 2):
        quantize = jax.vmap(quantize)
    qweight, scale = quantize(w if transposed else jnp.swapaxes(w, -1, -2))
    if not isinstance(scale, jax.core.Tracer):
        # scale[j] = max |w[:, j]|: NaN or Inf exactly when output feature j has one.
        bad = np.argwhere(~np.isfinite(np.asarray(scale)))
        if bad.size:
            names = [str(int(i[-1])) if len(i) == 1 else f"layer {tuple(map(int, i[:-1]))} "
                     f"feature {int(i[-1])}" for i in bad[:8]]
            shown = ", ".join(names) + (", ..." if len(bad) > 8 else "")
            raise ValueError(f"quantize_weight: w has NaN or Inf values in {len(bad)} output "
                             f"feature(s) [{shown}]; a float matmul would give NaN/Inf there. "
                             f"Fix or zero those values before quantizing")
    return Int8Weight(qweight=qweight, scale=scale)
