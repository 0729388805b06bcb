"""``Int8Dense``: a ``flax.linen`` layer call-compatible with ``flax.linen.Dense``."""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxint8.flax._common import apply_int8, check_inputs, check_int8_kernel, check_threshold
from jaxint8.ops import DEFAULT_THRESHOLD
from jaxint8.weights import Int8Weight, quantize_weight

__all__ = ["Int8Dense"]


class Int8Dense(nn.Module):
    """A linear layer with an LLM.int8() weight; drop-in for ``nn.Dense(features)``.

    Parameters (collection ``params``):
      kernel: int8 ``[features, in_features]`` (K-major: transposed relative to ``nn.Dense``).
      scale:  float32 ``[features]``, per-output-column absmax of the float weight.
      bias:   ``param_dtype`` ``[features]`` (if ``use_bias``).

    ``init`` draws a float kernel with ``kernel_init`` and quantizes it, so a fresh layer behaves
    like a quantized ``nn.Dense``. To convert trained float params use
    :func:`jaxint8.flax.quantize_dense_params` (``[layers, in, out]`` kernels of ``nn.scan``-stacked
    layers too: the scan hands each layer its ``[features, in_features]`` slice). The int8 kernel
    has no gradient: train adapters on top, with the optimizer wrapped in
    :func:`jaxint8.flax.freeze_int8` (docs/workflows.md).

    Attributes:
      features: number of output features.
      use_bias: whether to add a bias.
      dtype: computation/output dtype (None: promote the input dtype with ``param_dtype``).
      param_dtype: dtype of the float parameters (bias) and of the kernel before quantization.
      threshold: outlier threshold (default 6.0); 0 or None disables the decomposition. A
        negative or non-finite value raises a ``ValueError`` when the layer is built.

    Errors name the layer and the fix: a scalar input, an input width that is not the kernel's
    ``in_features``, float ``nn.Dense`` params (convert them with
    :func:`jaxint8.flax.quantize_dense_params`) and an int8 kernel with swapped in/out axes
    (quantize torch weights with ``jaxint8.quantize_weight(w, transposed=True)``).

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from jaxint8.flax import Int8Dense
        >>> layer = Int8Dense(features=32)
        >>> x = jnp.ones((4, 16), jnp.bfloat16)
        >>> params = layer.init(jax.random.key(0), x)
        >>> layer.apply(params, x).shape
        (4, 32)
    """

    features: int
    use_bias: bool = True
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32
    threshold: Optional[float] = DEFAULT_THRESHOLD
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    def __post_init__(self):
        check_threshold(self.threshold, f"Int8Dense(threshold={self.threshold!r})")
        super().__post_init__()

    def _where(self) -> str:
        path = "/".join(self.scope.path) if self.scope is not None else ""
        return f"Int8Dense {path!r}" if path else "Int8Dense"

    @nn.compact
    def __call__(self, inputs, *, return_weight: bool = False):
        """``inputs @ kernel (+ bias)``; with ``return_weight`` only ``(Int8Weight, bias)``.

        ``return_weight`` creates or fetches the parameters without computing anything: it is how
        :func:`jaxint8.flax.int8_dense_group` runs several layers on one quantized input.
        """
        in_features = check_inputs(inputs, None, self._where())
        if self.has_variable("params", "kernel"):
            check_int8_kernel(self.get_variable("params", "kernel"), self.features, in_features,
                              self._where())
        if self.is_initializing() and not self.has_variable("params", "kernel"):
            w = self.kernel_init(self.make_rng("params"), (in_features, self.features),
                                 self.param_dtype)
            q = quantize_weight(w)
            init_kernel, init_scale = (lambda *_: q.qweight), (lambda *_: q.scale)
        else:
            # Only shape-checked by flax against the existing params (never materialised); a
            # missing param raises flax's ScopeParamNotFoundError naming it.
            init_kernel = lambda *_: jnp.zeros((self.features, in_features), jnp.int8)  # noqa: E731
            init_scale = lambda *_: jnp.zeros((self.features,), jnp.float32)  # noqa: E731
        kernel = self.param("kernel", init_kernel)
        scale = self.param("scale", init_scale)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        if return_weight:
            return Int8Weight(kernel, scale), bias
        return apply_int8(inputs, kernel, scale, bias, dtype=self.dtype,
                          param_dtype=self.param_dtype, threshold=self.threshold)
