"""Kernel options: which CUDA kernels the LLM.int8() ops use.

Every field defaults to ``"auto"`` (or 0): the shape-based choice made by the CUDA dispatch
(``xla_ffi/cuda/dispatch.cu``, whose header comment is the decision table). The options exist so
that tests and benchmarks can pin one kernel path in one process; only the automatic choice is
tuned. They never change results beyond what ``docs/kernels.md`` states about numerics (every path
matches the CPU handlers), and they are ignored on CPU, except ``route``, whose ``"xla"`` (and
``"by_count"``) replace the custom calls by ``jax.numpy`` everywhere.

Options reach the kernels as attributes of the custom call, so they are fixed when a function is
traced. Pass them per call (``llm_int8_matmul(..., options=KernelOptions(gemm="tiled"))``) or set
a default for everything traced inside a block::

    >>> import jax, jax.numpy as jnp, jaxint8
    >>> wq = jaxint8.quantize_weight(0.02 * jax.random.normal(jax.random.key(0), (64, 32)))
    >>> x = jax.random.normal(jax.random.key(1), (8, 64), jnp.bfloat16)
    >>> with jaxint8.kernel_options(gemm="tiled", decode="mma"):
    ...     y = jax.jit(jaxint8.llm_int8_matmul)(x, wq)
    >>> y.shape
    (8, 32)

The block's options are part of JAX's trace context, so a function jitted outside the block is
traced again inside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import numpy as np

__all__ = ["KernelOptions", "kernel_options", "current_kernel_options", "resolve_kernel_options"]

# Allowed values per string field; the index is the value the CUDA handlers decode
# (xla_ffi/cuda/kernel_options.h).
_CHOICES = {
    "gemm": ("auto", "skinny", "tiled", "sm90"),
    "decode": ("auto", "token", "dp4a", "mma"),
    "fused_quant": ("auto", "always", "never"),
    "outliers": ("auto", "epilogue", "gemm", "tensor_epilogue"),
    "sm90_tile": ("auto", "pingpong64x64", "pingpong64x128", "pingpong128x128", "cooperative128x256",
                  "pingpong64x160", "cooperative128x160"),
}
# Decided in Python (which ops are traced), not passed to the handlers.
_ROUTE_CHOICES = ("auto", "kernels", "xla", "by_count")
_INT_CHOICES = {
    "gemv_ksplit": (0, 1, 2, 4),
    "token_loads": (0, 4, 6),
}


@dataclasses.dataclass(frozen=True)
class KernelOptions:
    """Kernel choices of the CUDA handlers (ignored on CPU, except ``route``).

    Attributes:
      gemm: ``"auto"``, or force a GEMM path where the shape supports it: ``"skinny"`` (the
        decode kernels, any shape), ``"tiled"`` (the sm_80 ``mma.sync`` kernel) or ``"sm90"``
        (the Hopper CUTLASS kernel). An unsupported forced path falls back to ``"auto"``.
      decode: ``"auto"``, or the decode kernel for inputs of at most 16 tokens: ``"token"`` (one
        kernel that quantizes the token and runs the dp4a GEMV; 1 token only), ``"dp4a"`` (the
        dp4a GEMV after the quantization kernels; up to 4 tokens) or ``"mma"`` (the
        ``mma.sync`` skinny kernel).
      fused_quant: ``"auto"``, ``"always"`` or ``"never"``: the one-kernel cooperative
        quantization for prefills of 17+ tokens (``"always"`` still needs an aligned activation
        of at most 8192 features).
      gemv_ksplit: 0 (auto), or K slices per weight row in the dp4a GEMVs: 1, 2 or 4.
      token_loads: 0 (auto), or 16-byte weight loads in flight per lane in the one-token GEMV
        without K slices: 4 or 6.
      outliers: how the prefill GEMMs (17+ tokens) and the one-token GEMV add the outlier
        columns: ``"auto"`` (up to 8 the epilogue adds them in ascending column order, as the
        CPU handler does; more go the ``"gemm"`` way), ``"epilogue"`` (always the ordered
        epilogue: a loop over the columns per output element, slow for many) or ``"gemm"`` (the
        prefill GEMMs: a tensor-core GEMM over the gathered outlier columns whose result the
        epilogue adds; the one-token GEMV: each lane sums the outlier columns among the weight
        bytes it streams, in the kernel's own order) or ``"tensor_epilogue"`` (as ``"auto"``,
        but the Hopper GEMM's epilogue multiplies its up to 8 columns on the tensor cores: TF32
        ``mma.sync`` with ``x`` split in three exact terms, within the documented bound instead
        of the CPU's operation order).
      sm90_tile: ``"auto"``, or the Hopper CUTLASS configuration (tile m x n, schedule):
        ``"pingpong64x64"``, ``"pingpong64x128"``, ``"pingpong64x160"``, ``"pingpong128x128"``,
        ``"cooperative128x256"`` or ``"cooperative128x160"``.
      route: ``"auto"``, ``"kernels"`` (jaxint8's custom calls, chosen among by the fields
        above), ``"xla"`` (:mod:`jaxint8.xla_route`: the matmul in ``jax.numpy`` on XLA's own
        int8 dot, the outlier columns as int8 digit rows of the same dot; on every platform) or
        ``"by_count"`` (per call on the device, by ``lax.cond`` on the outlier count: the
        kernels up to 8 outlier columns, where their epilogue is cheap, ``"xla"`` above).
        ``"auto"`` is :func:`jaxint8.xla_route.route_of`'s rule.

    Example::

        >>> import jaxint8
        >>> jaxint8.KernelOptions(gemm="tiled")
        KernelOptions(gemm='tiled', decode='auto', fused_quant='auto', gemv_ksplit=0, token_loads=0, outliers='auto', sm90_tile='auto', route='auto')
        >>> jaxint8.KernelOptions(gemm="fast")
        Traceback (most recent call last):
        ...
        ValueError: KernelOptions: gemm must be one of 'auto', 'skinny', 'tiled', 'sm90'; got 'fast'
    """

    gemm: str = "auto"
    decode: str = "auto"
    fused_quant: str = "auto"
    gemv_ksplit: int = 0
    token_loads: int = 0
    outliers: str = "auto"
    sm90_tile: str = "auto"
    route: str = "auto"

    def __post_init__(self):
        if self.route not in _ROUTE_CHOICES:
            raise ValueError(f"KernelOptions: route must be one of "
                             f"{', '.join(repr(c) for c in _ROUTE_CHOICES)}; got {self.route!r}")
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"KernelOptions: {name} must be one of "
                                 f"{', '.join(repr(c) for c in choices)}; got {value!r}")
        for name, choices in _INT_CHOICES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or value not in choices:
                raise ValueError(f"KernelOptions: {name} must be one of "
                                 f"{', '.join(str(c) for c in choices)} (0 = automatic); "
                                 f"got {value!r}")

    def ffi_attributes(self) -> dict:
        """The ``options`` dictionary attribute of the CUDA custom calls (int32 codes)."""
        attrs = {name: np.int32(choices.index(getattr(self, name)))
                 for name, choices in _CHOICES.items()}
        attrs.update({name: np.int32(getattr(self, name)) for name in _INT_CHOICES})
        return attrs


DEFAULT = KernelOptions()


def _make_state():
    """A JAX config state in the trace context (a changed default retraces jitted functions)."""
    try:
        from jax._src import config as jax_config
        return jax_config.string_or_object_state(
            name="jaxint8_kernel_options", default=None,
            help="jaxint8.KernelOptions used by ops traced in this context (None: automatic).",
            include_in_jit_key=True, include_in_trace_context=True)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - other JAX versions
        return None


_STATE = _make_state()
_FALLBACK: list = [None]  # the default when JAX has no config states to extend


def current_kernel_options() -> KernelOptions:
    """The options set by the innermost :func:`kernel_options` block (automatic outside)."""
    value = _STATE.value if _STATE is not None else _FALLBACK[-1]
    return DEFAULT if value is None else value


def resolve_kernel_options(options, op: str) -> KernelOptions:
    """``options`` if given (a :class:`KernelOptions`), else the current default."""
    if options is None:
        return current_kernel_options()
    if not isinstance(options, KernelOptions):
        raise TypeError(f"{op}: options must be a jaxint8.KernelOptions or None, "
                        f"got {type(options).__name__}")
    return options


@contextlib.contextmanager
def kernel_options(options: KernelOptions | None = None, **fields) -> Iterator[KernelOptions]:
    """Sets the default :class:`KernelOptions` for ops traced inside the block.

    Either pass a :class:`KernelOptions` or its fields (``kernel_options(gemm="tiled")``); fields
    not given keep the enclosing block's values. Yields the options in force.
    """
    if options is not None and fields:
        raise TypeError("kernel_options: pass either a KernelOptions or fields, not both")
    if options is None:
        options = dataclasses.replace(current_kernel_options(), **fields)
    elif not isinstance(options, KernelOptions):
        raise TypeError(f"kernel_options: expected a jaxint8.KernelOptions, "
                        f"got {type(options).__name__}")
    if _STATE is not None:
        with _STATE(options):
            yield options
    else:  # pragma: no cover
        _FALLBACK.append(options)
        try:
            yield options
        finally:
            _FALLBACK.pop()
