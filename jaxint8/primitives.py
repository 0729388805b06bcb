"""JAX primitives over the jaxint8 XLA FFI targets.

Five primitives, one per FFI target (``xla_ffi/handlers.h``):

* :data:`column_absmax_p`   ``x [..., s, h] -> col_amax f32 [..., h]``
* :data:`quantize_rows_p`   ``x, col_amax -> xq s8, row_scale f32 [..., s], outlier_idx s32 [..., h],
  outlier_count s32 [...]``  (param ``threshold``)
* :data:`int8_matmul_p`     ``xq, row_scale, x, outlier_idx, outlier_count, qweight [o, h],
  scale [o], bias [o] | [0] -> y [..., s, o]``  (params ``out_dtype``, ``options``)
* :data:`llm_int8_matmul_p` ``x, qweight, scale, bias -> y``: the three above in one custom call
  (params ``threshold``, ``out_dtype``, ``options``); one FFI call costs more host time on a GPU
  than a decode step's quantization kernels, so the single-device path uses this one.
* :data:`llm_int8_matmul_group_p` ``x, (qweight, scale, bias) * G -> (y_1, ..., y_G)``: one
  quantization of ``x`` for several weights that read it (q/k/v, gate/up), one GEMM each; for
  decode-sized ``x`` on a GPU all G GEMMs are one kernel launch. Same results as G
  :data:`llm_int8_matmul_p` calls, bit for bit.

Each has an abstract-eval rule (shape and dtype checks whose errors name the argument), an FFI
lowering for CPU and CUDA, and a batching rule. ``options`` (a :class:`jaxint8.KernelOptions`)
reaches the CUDA handlers as a dictionary attribute; the matmul targets on CUDA also get an
extra result buffer, the Hopper GEMM's workspace (compact outlier operands), so that XLA owns
and accounts that memory. Leading dimensions are independent problems for the
kernels (each with its own outlier set), so ``vmap`` maps onto them directly. The two fused
targets lower to :mod:`jaxint8.xla_route` (jnp on XLA's int8 dot) instead of the custom call where
``KernelOptions.route`` selects it (:func:`jaxint8.xla_route.route_of`). Without CUDA handlers
in the build, CUDA lowers to :mod:`jaxint8.reference` and warns once (never silently).

Most users want :func:`jaxint8.llm_int8_matmul` instead.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir

from jaxint8 import _ffi, reference, xla_route
from jaxint8.kernel_options import KernelOptions, resolve_kernel_options

__all__ = [
    "column_absmax",
    "quantize_rows",
    "quantize_activations",
    "int8_matmul",
    "column_absmax_p",
    "quantize_rows_p",
    "int8_matmul_p",
    "llm_int8_matmul",
    "llm_int8_matmul_p",
    "llm_int8_matmul_group",
    "llm_int8_matmul_group_p",
    "FLOAT_DTYPES",
]

FLOAT_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
MAX_GROUP_WEIGHTS = 8  # kMaxGroupWeights in xla_ffi/common.h
_F32, _S8, _S32 = jnp.dtype(jnp.float32), jnp.dtype(jnp.int8), jnp.dtype(jnp.int32)


# ----------------------------------------------------------------------------- checks

def _fmt(dtypes):
    return ", ".join(str(d) for d in dtypes)


def check_float_activation(x, name="x", op="llm_int8_matmul"):
    """Raises TypeError/ValueError unless ``x`` is a float32/bfloat16/float16 array of rank >= 2."""
    if jnp.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must have dtype {_fmt(FLOAT_DTYPES)}, got {x.dtype}")
    if len(x.shape) < 2:
        raise ValueError(f"{op}: {name} must have rank >= 2 ([..., tokens, features]), "
                         f"got shape {tuple(x.shape)}")


def _check(aval, name, dtype, shape, op):
    if jnp.dtype(aval.dtype) != dtype:
        raise TypeError(f"{op}: {name} must have dtype {dtype}, got {aval.dtype}")
    if tuple(aval.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(aval.shape)}")


# ----------------------------------------------------------------------------- abstract eval

def _column_absmax_abstract(x):
    check_float_activation(x, "x", "column_absmax")
    return jax.core.ShapedArray(x.shape[:-2] + x.shape[-1:], _F32)


def _quantize_rows_abstract(x, col_amax, *, threshold):
    op = "quantize_rows"
    check_float_activation(x, "x", op)
    _check(col_amax, "col_amax", _F32, x.shape[:-2] + x.shape[-1:], op)
    lead, s, h = x.shape[:-2], x.shape[-2], x.shape[-1]
    return (jax.core.ShapedArray(x.shape, _S8), jax.core.ShapedArray(lead + (s,), _F32),
            jax.core.ShapedArray(lead + (h,), _S32), jax.core.ShapedArray(lead, _S32))


def _int8_matmul_abstract(xq, row_scale, x, idx, count, qweight, scale, bias, *, out_dtype,
                          options):
    del options
    op = "int8_matmul"
    if jnp.dtype(xq.dtype) != _S8 or len(xq.shape) < 2:
        raise TypeError(f"{op}: xq must be an int8 array of rank >= 2, got {xq.dtype}{list(xq.shape)}")
    lead, s, h = xq.shape[:-2], xq.shape[-2], xq.shape[-1]
    _check(row_scale, "row_scale", _F32, lead + (s,), op)
    check_float_activation(x, "x", op)
    if tuple(x.shape) != tuple(xq.shape):
        raise ValueError(f"{op}: x must have the shape of xq {tuple(xq.shape)}, got {tuple(x.shape)}")
    _check(idx, "outlier_idx", _S32, lead + (h,), op)
    _check(count, "outlier_count", _S32, lead, op)
    return _matmul_result(xq.shape, qweight, scale, bias, out_dtype, op)


def _matmul_result(x_shape, qweight, scale, bias, out_dtype, op):
    """Checks the weight operands against ``x [..., s, h]``; the ``[..., s, o]`` result aval."""
    h = x_shape[-1]
    if jnp.dtype(qweight.dtype) != _S8 or len(qweight.shape) != 2 or qweight.shape[1] != h:
        raise ValueError(f"{op}: qweight must be int8 [out_features, {h}], "
                         f"got {qweight.dtype}{list(qweight.shape)}")
    o = qweight.shape[0]
    _check(scale, "scale", _F32, (o,), op)
    if jnp.dtype(bias.dtype) != _F32 or tuple(bias.shape) not in ((o,), (0,)):
        raise ValueError(f"{op}: bias must be float32 [{o}] or [0] (no bias), "
                         f"got {bias.dtype}{list(bias.shape)}")
    if jnp.dtype(out_dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{op}: out_dtype must be one of {_fmt(FLOAT_DTYPES)}, got {out_dtype}")
    return jax.core.ShapedArray(tuple(x_shape[:-1]) + (o,), jnp.dtype(out_dtype))


def _llm_int8_matmul_abstract(x, qweight, scale, bias, *, threshold, out_dtype, options):
    del threshold, options
    check_float_activation(x, "x", "llm_int8_matmul")
    return _matmul_result(x.shape, qweight, scale, bias, out_dtype, "llm_int8_matmul")


def _group_triples(weights, op):
    if len(weights) % 3 or not weights:
        raise ValueError(f"{op}: expects (qweight, scale, bias) per weight, got {len(weights)} "
                         f"weight operands")
    if len(weights) // 3 > MAX_GROUP_WEIGHTS:
        raise ValueError(f"{op}: at most {MAX_GROUP_WEIGHTS} weights per call, got "
                         f"{len(weights) // 3}; split the group")
    return [weights[i:i + 3] for i in range(0, len(weights), 3)]


def _llm_int8_matmul_group_abstract(x, *weights, threshold, out_dtype, options):
    del threshold, options
    op = "llm_int8_matmul_group"
    check_float_activation(x, "x", op)
    return tuple(_matmul_result(x.shape, *w, out_dtype, f"{op} (weight {i})")
                 for i, w in enumerate(_group_triples(weights, op)))


def _fused_intermediates(x):
    """Avals of the fused call's hidden results: col_amax, then quantize_rows' four."""
    return (_column_absmax_abstract(x),) + _quantize_rows_abstract(
        x, _column_absmax_abstract(x), threshold=0.0)


# ----------------------------------------------------------------------------- reference impls
# Used for eager evaluation fallbacks and for CUDA when the build has no CUDA handlers.

def _column_absmax_ref(x):
    return reference.column_absmax(x)


def _quantize_rows_ref(x, col_amax, *, threshold):
    return reference.quantize_rows(x, col_amax, threshold)


def _int8_matmul_ref(xq, row_scale, x, idx, count, qweight, scale, bias, *, out_dtype,
                     options=None):
    return reference.int8_matmul(xq, row_scale, x, idx, count, qweight, scale,
                                 bias if bias.shape[0] else None, out_dtype)


def _llm_int8_matmul_ref(x, qweight, scale, bias, *, threshold, out_dtype, options=None):
    xq, row_scale, idx, count = reference.quantize_rows(x, reference.column_absmax(x), threshold)
    return _int8_matmul_ref(xq, row_scale, x, idx, count, qweight, scale, bias,
                            out_dtype=out_dtype)


def _llm_int8_matmul_xla(x, qweight, scale, bias, *, threshold, out_dtype, options=None):
    return _llm_int8_matmul_group_xla(x, qweight, scale, bias, threshold=threshold,
                                      out_dtype=out_dtype)[0]


def _llm_int8_matmul_group_xla(x, *weights, threshold, out_dtype, options=None):
    """:mod:`jaxint8.xla_route` on ``x [..., s, h]`` (leading dims: independent problems)."""
    triples = [(q, s, b if b.shape[0] else None)
               for q, s, b in _group_triples(weights, "llm_int8_matmul_group")]
    fn = functools.partial(xla_route.forward_group, weights=triples, threshold=threshold,
                           out_dtype=out_dtype)
    for _ in x.shape[:-2]:
        fn = jax.vmap(fn)
    return tuple(fn(x))


def _llm_int8_matmul_group_ref(x, *weights, threshold, out_dtype, options=None):
    xq, row_scale, idx, count = reference.quantize_rows(x, reference.column_absmax(x), threshold)
    return tuple(_int8_matmul_ref(xq, row_scale, x, idx, count, *w, out_dtype=out_dtype)
                 for w in _group_triples(weights, "llm_int8_matmul_group"))


# ----------------------------------------------------------------------------- lowering

def _ffi_rule(target, attrs, results=None):
    """FFI lowering that passes only the named params (as the types the handler binds).

    ``attrs``: ``{param name: converter}``. ``results(avals_in, own_avals, params)``: the
    handler's whole result list and the index of the primitive's own results in it (the others,
    intermediates and scratch that XLA allocates, are dropped); None: the own results only.
    """
    lower = jax.ffi.ffi_lowering(target)

    def rule(ctx, *args, **params):
        attr_values = {k: conv(params[k]) for k, conv in attrs.items()}
        if results is None:
            return lower(ctx, *args, **attr_values)
        own = list(ctx.avals_out)
        avals, first = results(ctx.avals_in, own, params)
        out = lower(ctx.replace(avals_out=avals), *args, **attr_values)
        return out[first:first + len(own)]

    return rule


def _hidden_after(hidden):
    """``results`` for a handler whose own results come first, then ``hidden(...)``."""
    return lambda avals_in, own, params: (own + list(hidden(avals_in, own, params)), 0)


def _hidden_before(hidden):
    """``results`` for a handler whose ``hidden(...)`` results precede its own."""
    def results(avals_in, own, params):
        extra = list(hidden(avals_in, own, params))
        return extra + own, len(extra)
    return results


# The workspace of a CUDA matmul call (layout in xla_ffi/cuda/dispatch.cu), for prefill sizes
# (m > 16 tokens) only:
# * the tensor-core outlier product's buffers (xla_ffi/cuda/outlier_product.cu,
#   outlier_product_workspace_bytes): the f32 partial [m, n], the gathered x[:, O] as 16-bit
#   values [m, ceil(k / 32) * 32] (three of them for f32 x) and the gathered int8 weight columns
#   [n, ceil(k / 32) * 32], each aligned up to 256 bytes; none with KernelOptions(outliers="epilogue");
# * the Hopper GEMM's outlier staging (xla_ffi/cuda/sm90/gemm_sm90.h,
#   int8_gemm_sm90_workspace_bytes): x[:, O] [m, ld] and W_deq[O, :] [n, ld] in float32, ld = the
#   first up to 128 outlier columns rounded up to 4; none with KernelOptions(gemm="tiled").
_SM90_OUTLIER_CAP, _DECODE_MAX_TOKENS, _WORKSPACE_ALIGN = 128, 16, 256


def _align(nbytes):
    return -(-nbytes // _WORKSPACE_ALIGN) * _WORKSPACE_ALIGN


def gemm_workspace_bytes(m, n, k, x_dtype, options):
    """Bytes of the GEMM workspace a CUDA matmul call gets for ``m`` tokens (0 when unused)."""
    if m <= _DECODE_MAX_TOKENS or options.gemm == "skinny":
        return 0
    size = 0
    if options.outliers != "epilogue":
        planes = 3 if jnp.dtype(x_dtype) == jnp.float32 else 1
        ld = -(-k // 32) * 32
        size += _align(m * n * 4) + _align(planes * m * ld * 2) + _align(n * ld)
    if options.gemm != "tiled":
        ld = min((k + 3) // 4 * 4, _SM90_OUTLIER_CAP)
        size += _align(m * ld * 4) + n * ld * 4
    return size


def _workspace_aval(x_aval, ns, options):
    m, k = x_aval.shape[-2], x_aval.shape[-1]
    size = max(gemm_workspace_bytes(m, n, k, x_aval.dtype, options) for n in ns)
    return jax.core.ShapedArray((size,), jnp.dtype(jnp.uint8))


def _kernel_options_attr(options):
    return options.ffi_attributes()


@functools.cache
def _warn_reference_fallback():
    warnings.warn(
        "jaxint8 was built without CUDA kernels: LLM.int8 ops on the GPU run the slow pure-jnp "
        "reference. Rebuild with nvcc on PATH (pip install . with JAXINT8_CUDA=ON) for the kernels.",
        RuntimeWarning, stacklevel=3)


def _reference_rule(fn, multiple_results):
    lowered = mlir.lower_fun(fn, multiple_results=multiple_results)

    def rule(ctx, *args, **params):
        _warn_reference_fallback()
        return lowered(ctx, *args, **params)

    return rule


def _impl(prim, *args, **params):
    # Eager call: compile the single primitive (cached by jit on shapes and params).
    return _jitted(prim, tuple(sorted(params.items())))(*args)


@functools.cache
def _jitted(prim, params):
    return jax.jit(functools.partial(prim.bind, **dict(params)))


def _routed(prim, rule, xla_fn, platform):
    """``rule``, or :mod:`jaxint8.xla_route`'s jnp graph (``xla_fn``), or a ``lax.cond`` between
    the two on the outlier count, as :func:`jaxint8.xla_route.route_of` decides for the call's
    options, shape and platform."""
    if xla_fn is None:
        return rule
    lowered = {
        "kernels": rule,
        "xla": mlir.lower_fun(xla_fn, multiple_results=prim.multiple_results),
        "by_count": mlir.lower_fun(functools.partial(_by_count, prim, xla_fn),
                                   multiple_results=prim.multiple_results),
    }

    def routed(ctx, *args, **params):
        route = xla_route.route_of(params["options"], ctx.avals_in[0].shape, platform)
        return lowered[route](ctx, *args, **params)

    return routed


def _by_count(prim, xla_fn, x, *weights, **params):
    """``KernelOptions(route="by_count")``: the custom call (as ``route="kernels"``) or
    ``xla_fn``, chosen on the device by the outlier count."""
    kernel_params = dict(params, options=dataclasses.replace(params["options"], route="kernels"))
    as_tuple = (lambda out: tuple(out)) if prim.multiple_results else (lambda out: out)
    return xla_route.by_count(
        x, lambda v: as_tuple(prim.bind(v, *weights, **kernel_params)),
        lambda v: as_tuple(xla_fn(v, *weights, **params)), params["threshold"])


def _define(name, abstract, ref_fn, attrs, multiple_results=False, cpu_results=None,
            cuda_attrs=None, cuda_results=None, xla_fn=None):
    """The primitive ``name`` lowered to the FFI target of the same name.

    ``attrs``/``cpu_results``: the CPU handler's attributes and result layout (see
    :func:`_ffi_rule`); ``cuda_attrs``/``cuda_results``: the CUDA handler's (default: the CPU's).
    ``xla_fn``: the same op on XLA's int8 dot (:mod:`jaxint8.xla_route`), lowered instead of the
    custom call where ``KernelOptions.route`` selects it.
    """
    prim = Primitive(name)
    prim.multiple_results = multiple_results
    prim.def_abstract_eval(abstract)
    prim.def_impl(functools.partial(_impl, prim))
    cpu_rule = _ffi_rule(name, attrs, cpu_results)
    mlir.register_lowering(prim, _routed(prim, cpu_rule, xla_fn, "cpu"), platform="cpu")
    if name in _ffi.CUDA_TARGETS:
        cuda_rule = _ffi_rule(name, cuda_attrs or attrs, cuda_results or cpu_results)
    else:
        cuda_rule = _reference_rule(ref_fn, multiple_results)
    mlir.register_lowering(prim, _routed(prim, cuda_rule, xla_fn, "cuda"), platform="cuda")
    return prim


_THRESHOLD = {"threshold": np.float32}
_OPTIONS = {"options": _kernel_options_attr}


def _matmul_workspace(avals_in, own, params):
    """int8_matmul's CUDA scratch: the workspace (own = [y]; avals_in[2] is x)."""
    return (_workspace_aval(avals_in[2], [own[0].shape[-1]], params["options"]),)


def _fused_hidden(avals_in, own, params):
    """The fused targets' CPU scratch: the quantization intermediates."""
    del own, params
    return _fused_intermediates(avals_in[0])


def _fused_hidden_cuda(avals_in, own, params):
    """The fused targets' CUDA scratch: the intermediates, then the workspace."""
    ns = [y.shape[-1] for y in own]
    return _fused_hidden(avals_in, own, params) + (
        _workspace_aval(avals_in[0], ns, params["options"]),)


column_absmax_p = _define("jaxint8_column_absmax", _column_absmax_abstract, _column_absmax_ref, {})
quantize_rows_p = _define("jaxint8_quantize_rows", _quantize_rows_abstract, _quantize_rows_ref,
                          _THRESHOLD, multiple_results=True)
int8_matmul_p = _define("jaxint8_int8_matmul", _int8_matmul_abstract, _int8_matmul_ref, {},
                        cuda_attrs=_OPTIONS, cuda_results=_hidden_after(_matmul_workspace))
llm_int8_matmul_p = _define("jaxint8_llm_int8_matmul", _llm_int8_matmul_abstract,
                            _llm_int8_matmul_ref, _THRESHOLD,
                            cpu_results=_hidden_after(_fused_hidden),
                            cuda_attrs=_THRESHOLD | _OPTIONS,
                            cuda_results=_hidden_after(_fused_hidden_cuda),
                            xla_fn=_llm_int8_matmul_xla)
# The handler's fixed results (the intermediates) precede its variadic ones (one y per weight).
llm_int8_matmul_group_p = _define("jaxint8_llm_int8_matmul_group", _llm_int8_matmul_group_abstract,
                                  _llm_int8_matmul_group_ref, _THRESHOLD, multiple_results=True,
                                  cpu_results=_hidden_before(_fused_hidden),
                                  cuda_attrs=_THRESHOLD | _OPTIONS,
                                  cuda_results=_hidden_before(_fused_hidden_cuda),
                                  xla_fn=_llm_int8_matmul_group_xla)


# ----------------------------------------------------------------------------- batching

def _to_front(args, dims):
    """Moves every batched operand's batch dim to axis 0; broadcasts the unbatched ones."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    out = []
    for a, d in zip(args, dims):
        if d is None:
            out.append(jnp.broadcast_to(a, (size,) + a.shape))
        else:
            out.append(jnp.moveaxis(a, d, 0))
    return out


def _column_absmax_batch(args, dims):
    x, = _to_front(args, dims)
    return column_absmax_p.bind(x), 0


def _quantize_rows_batch(args, dims, *, threshold):
    x, col_amax = _to_front(args, dims)
    return quantize_rows_p.bind(x, col_amax, threshold=threshold), (0, 0, 0, 0)


def _matmul_batcher(prim, n_act):
    """Batching rule of a matmul primitive whose first ``n_act`` operands are activations."""

    def rule(args, dims, **params):
        act, weight = args[:n_act], args[n_act:]
        act_dims, weight_dims = dims[:n_act], dims[n_act:]
        if all(d is None for d in weight_dims):
            # Leading dims of the activation operands are independent problems in the kernel.
            act = _to_front(act, act_dims) if any(d is not None for d in act_dims) else act
            out = prim.bind(*act, *weight, **params)
        else:
            # A batch of different weights: one kernel call per weight (sequential loop).
            everything = _to_front(args, dims)
            out = jax.lax.map(lambda ops: prim.bind(*ops, **params), everything)
        return out, ([0] * len(out) if prim.multiple_results else 0)

    return rule


batching.primitive_batchers[column_absmax_p] = _column_absmax_batch
batching.primitive_batchers[quantize_rows_p] = _quantize_rows_batch
batching.primitive_batchers[int8_matmul_p] = _matmul_batcher(int8_matmul_p, 5)
batching.primitive_batchers[llm_int8_matmul_p] = _matmul_batcher(llm_int8_matmul_p, 1)
batching.primitive_batchers[llm_int8_matmul_group_p] = _matmul_batcher(llm_int8_matmul_group_p, 1)


# ----------------------------------------------------------------------------- wrappers

def column_absmax(x):
    """``max_i |x[..., i, c]|``: float32 ``[..., h]`` (NaN-propagating)."""
    return column_absmax_p.bind(x)


def quantize_rows(x, col_amax, threshold):
    """Row-wise int8 quantization with outlier split given the column absmax (see module doc)."""
    return tuple(quantize_rows_p.bind(x, col_amax, threshold=float(threshold or 0.0)))


def quantize_activations(x, threshold):
    """Both quantization passes: ``(xq, row_scale, outlier_idx, outlier_count)``.

    ``threshold`` 0/None skips the column pass (no decomposition).
    """
    if threshold:
        col_amax = column_absmax(x)
    else:
        col_amax = jnp.zeros(x.shape[:-2] + x.shape[-1:], jnp.float32)
    return quantize_rows(x, col_amax, threshold)


def _bias_operand(bias):
    """The bias operand of the matmul targets: float32 ``[o]``, or ``[0]`` for no bias."""
    return jnp.zeros((0,), jnp.float32) if bias is None else jnp.asarray(bias, jnp.float32)


def int8_matmul(xq, row_scale, x, outlier_idx, outlier_count, qweight, scale, bias=None, *,
                out_dtype=None, options: KernelOptions | None = None):
    """The fused int8 GEMM + dequant + outlier product + bias + cast (see module doc)."""
    out_dtype = jnp.dtype(x.dtype if out_dtype is None else out_dtype)
    return int8_matmul_p.bind(xq, row_scale, x, outlier_idx, outlier_count, qweight, scale,
                              _bias_operand(bias), out_dtype=out_dtype,
                              options=resolve_kernel_options(options, "int8_matmul"))


def llm_int8_matmul(x, qweight, scale, bias=None, *, threshold, out_dtype=None,
                    options: KernelOptions | None = None):
    """:func:`quantize_activations` then :func:`int8_matmul` in one custom call (same results)."""
    out_dtype = jnp.dtype(x.dtype if out_dtype is None else out_dtype)
    return llm_int8_matmul_p.bind(x, qweight, scale, _bias_operand(bias),
                                  threshold=float(threshold or 0.0), out_dtype=out_dtype,
                                  options=resolve_kernel_options(options, "llm_int8_matmul"))


def llm_int8_matmul_group(x, weights, *, threshold, out_dtype=None,
                          options: KernelOptions | None = None):
    """:func:`llm_int8_matmul` for several weights reading the same ``x``, one quantization.

    ``weights``: a sequence of ``(qweight, scale, bias or None)``. Returns a tuple of outputs.
    """
    out_dtype = jnp.dtype(x.dtype if out_dtype is None else out_dtype)
    flat = [a for qweight, scale, bias in weights for a in (qweight, scale, _bias_operand(bias))]
    return tuple(llm_int8_matmul_group_p.bind(
        x, *flat, threshold=float(threshold or 0.0), out_dtype=out_dtype,
        options=resolve_kernel_options(options, "llm_int8_matmul_group")))
