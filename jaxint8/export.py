"""Exporting jitted functions that call jaxint8 ops with :mod:`jax.export`.

``jax.export`` refuses custom calls whose targets it does not know to be stable::

    ValueError: Cannot serialize code with custom calls whose targets have no compatibility
    guarantees

jaxint8's ops are such custom calls (:data:`FFI_TARGETS`). :func:`export` is
``jax.export.export`` with those targets declared, and :func:`serialize` / :func:`deserialize`
wrap ``Exported.serialize`` / ``jax.export.deserialize`` with a header that records the jaxint8
version.

Versioning: the FFI target names and their ABI (operands, results, attributes) belong to one
jaxint8 version. An exported artifact runs only where the **same** jaxint8 version is installed
(and imported, so that its targets are registered with XLA); deserializing one made by another
version is unsupported: :func:`deserialize` raises a ``ValueError`` naming both versions. The
CUDA lowering also depends on the build: exporting for ``"cuda"`` from a jaxint8 built without
CUDA kernels embeds the pure-jnp reference instead of the kernels (a warning says so).

Example::

    >>> import jax, jax.numpy as jnp, jaxint8
    >>> import jaxint8.export as jexport
    >>> wq = jaxint8.quantize_weight(0.02 * jax.random.normal(jax.random.key(0), (64, 32)))
    >>> x = jax.random.normal(jax.random.key(1), (8, 64), jnp.bfloat16)
    >>> exp = jexport.export(jax.jit(jaxint8.llm_int8_matmul))(x, wq)
    >>> blob = jexport.serialize(exp)                   # bytes: header + jax's serialization
    >>> restored = jexport.deserialize(blob)            # checks the jaxint8 version
    >>> bool((restored.call(x, wq) == jaxint8.llm_int8_matmul(x, wq)).all())
    True

Without this module, pass the checks to ``jax.export`` directly::

    jax.export.export(fn, disabled_checks=jaxint8.export.disabled_checks())(*args)

(the version is then not recorded; ``Int8Weight`` arguments still need ``import jaxint8.export``
for their pytree serialization).

Functions traced with ``KernelOptions(route="xla")`` (:mod:`jaxint8.xla_route`) contain no
jaxint8 custom call: plain ``jax.export.export`` takes them, for several platforms at once
(``platforms=("cpu", "cuda")``), and the artifact runs where jaxint8 is not installed.
"""

from __future__ import annotations

import re
import warnings
from typing import Callable, Sequence

import jax
from jax import export as _jax_export

from jaxint8 import __version__ as VERSION
from jaxint8 import _ffi
from jaxint8.weights import Int8Weight

__all__ = ["FFI_TARGETS", "VERSION", "deserialize", "disabled_checks", "export", "serialize"]

# Every FFI target name jaxint8 registers (the same names on CPU and CUDA; xla_ffi/handlers.h).
FFI_TARGETS: tuple[str, ...] = (
    "jaxint8_column_absmax",
    "jaxint8_int8_matmul",
    "jaxint8_llm_int8_matmul",
    "jaxint8_llm_int8_matmul_group",
    "jaxint8_quantize_rows",
)
assert set(_ffi.CPU_TARGETS) <= set(FFI_TARGETS) and set(_ffi.CUDA_TARGETS) <= set(FFI_TARGETS), (
    "jaxint8.export.FFI_TARGETS is out of date with the compiled extension's targets")

_MAGIC = b"jaxint8-exported\n"

# Int8Weight arguments/results: a pytree node jax.export must know how to serialize.
_jax_export.register_pytree_node_serialization(
    Int8Weight, serialized_name="jaxint8.Int8Weight",
    serialize_auxdata=lambda aux: b"", deserialize_auxdata=lambda data: ())


def disabled_checks() -> list:
    """``jax.export.DisabledSafetyCheck.custom_call`` for every name in :data:`FFI_TARGETS`.

    Example::

        >>> import jax, jaxint8.export
        >>> checks = jaxint8.export.disabled_checks()
        >>> len(checks) == len(jaxint8.export.FFI_TARGETS)
        True
    """
    return [_jax_export.DisabledSafetyCheck.custom_call(name) for name in FFI_TARGETS]


def export(fn: Callable, *, platforms: Sequence[str] | None = None,
           disabled_checks: Sequence = (), **kwargs) -> Callable[..., _jax_export.Exported]:
    """``jax.export.export(fn, ...)`` with jaxint8's custom-call targets declared.

    Args:
      fn: a function, jitted or not (a plain function is wrapped in ``jax.jit``).
      platforms: lowering platforms, e.g. ``("cpu",)``, ``("cuda",)``, ``("cpu", "cuda")``
        (default: the default backend's). Exporting for CUDA needs no GPU: lowering runs on the
        host. It needs a jaxint8 built with CUDA kernels to embed them; otherwise the pure-jnp
        reference is embedded and a ``RuntimeWarning`` says so.
      disabled_checks: further ``jax.export.DisabledSafetyCheck`` (jaxint8's are added).
      **kwargs: passed on to ``jax.export.export``.

    Returns:
      A function of example arguments (arrays or ``jax.ShapeDtypeStruct``) returning a
      ``jax.export.Exported``, as ``jax.export.export`` does.

    Example::

        >>> import jax, jax.numpy as jnp, jaxint8, jaxint8.export
        >>> wq = jaxint8.quantize_weight(jnp.ones((16, 8)))
        >>> x = jax.ShapeDtypeStruct((4, 16), jnp.float32)
        >>> exp = jaxint8.export.export(jaxint8.llm_int8_matmul, platforms=("cpu",))(x, wq)
        >>> exp.out_avals
        (ShapedArray(float32[4,8]),)
    """
    if platforms is not None:
        if isinstance(platforms, str):
            raise TypeError(f"jaxint8.export.export: platforms must be a sequence of platform "
                            f"names, e.g. ({platforms!r},), got the string {platforms!r}")
        platforms = tuple(platforms)
        if any(p.lower() in ("cuda", "gpu") for p in platforms) and not _ffi.BUILT_WITH_CUDA:
            warnings.warn(
                "jaxint8.export.export: exporting for CUDA with a jaxint8 built without CUDA "
                "kernels embeds the slow pure-jnp reference instead of the kernels; rebuild with "
                "nvcc on PATH (JAXINT8_CUDA=ON) to export the kernels", RuntimeWarning,
                stacklevel=2)
    if not hasattr(fn, "lower"):
        fn = jax.jit(fn)
    checks = list(disabled_checks) + globals()["disabled_checks"]()
    return _jax_export.export(fn, platforms=platforms, disabled_checks=checks, **kwargs)


def serialize(exported: _jax_export.Exported, **kwargs) -> bytes:
    """``exported.serialize()`` preceded by a header with the jaxint8 version.

    Read it back with :func:`deserialize` (``jax.export.deserialize`` does not read the header).
    ``**kwargs`` go to ``Exported.serialize`` (e.g. ``vjp_order``).
    """
    if not isinstance(exported, _jax_export.Exported):
        raise TypeError(f"jaxint8.export.serialize: exported must be a jax.export.Exported "
                        f"(from jaxint8.export.export(fn)(*args)), got {type(exported).__name__}")
    _need_flatbuffers("serialize")
    return _MAGIC + VERSION.encode() + b"\n" + exported.serialize(**kwargs)


def deserialize(blob: bytes | bytearray) -> _jax_export.Exported:
    """The ``jax.export.Exported`` in ``blob`` from :func:`serialize`; call it with ``.call``.

    Raises:
      ValueError: ``blob`` was written by another jaxint8 version (its FFI targets may differ:
        re-export with this version), or it has no jaxint8 header but calls jaxint8 targets
        (written by ``Exported.serialize`` directly: the version cannot be checked; use
        :func:`serialize`).
    """
    _need_flatbuffers("deserialize")
    blob = bytes(blob)
    if blob.startswith(_MAGIC):
        version, sep, payload = blob[len(_MAGIC):].partition(b"\n")
        version = version.decode(errors="replace")
        if not sep:
            raise ValueError("jaxint8.export.deserialize: blob has a truncated jaxint8 header")
        if version != VERSION:
            raise ValueError(
                f"jaxint8.export.deserialize: blob was exported with jaxint8 {version}, this is "
                f"jaxint8 {VERSION}; the FFI targets are only compatible within one version: "
                f"re-export the function with jaxint8 {VERSION} (or install jaxint8 {version})")
        return _jax_export.deserialize(bytearray(payload))
    exported = _jax_export.deserialize(bytearray(blob))
    if _uses_jaxint8(exported):
        raise ValueError(
            "jaxint8.export.deserialize: blob calls jaxint8 custom-call targets but has no "
            "jaxint8 header, so the jaxint8 version it was exported with is unknown; write it "
            "with jaxint8.export.serialize(exported) (or read it with jax.export.deserialize at "
            "your own risk)")
    return exported


def _need_flatbuffers(fn: str) -> None:
    try:
        import flatbuffers  # noqa: F401
    except ImportError:
        raise ImportError(f"jaxint8.export.{fn}: jax.export's serialization needs the "
                          f"'flatbuffers' package: pip install flatbuffers") from None


def _uses_jaxint8(exported: _jax_export.Exported) -> bool:
    text = exported.mlir_module()
    return any(re.search(rf"custom_call\s*@{name}\b", text) for name in FFI_TARGETS)
