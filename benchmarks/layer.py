"""Layer benchmark: jaxint8's LLM.int8() matmul vs XLA bf16, XLA's own int8 route, a plain-jnp
LLM.int8() and bitsandbytes, one GPU.

What it measures: the time per call and the accuracy of one linear layer ``y = x @ W``
(``x [tokens, in]`` bf16, ``W [in, out]``) at six transformer shapes (in -> out: 4096->16384,
16384->4096, 5120->20480, 20480->5120, 12288->49152, 49152->12288) and 1, 16, 128, 1024, 4096
tokens, for these methods:

* ``bf16``         XLA ``x @ w`` in bfloat16 (cuBLAS, f32 accumulation): the baseline.
* ``xla_int8``     XLA's own int8 route: per-row absmax quantization of ``x`` in jnp,
                   ``lax.dot_general`` int8 x int8 -> int32 (``preferred_element_type``),
                   dequantization to bf16; the weight pre-quantized; no outlier decomposition.
* ``jaxint8``      ``jaxint8.llm_int8_matmul(x, W8, threshold=6)``: LLM.int8() with decomposition.
* ``jaxint8_t0``   the same with threshold 0 (no decomposition).
* ``jnp_llm_int8`` LLM.int8() as a user could write it in plain jnp (``jnp_llm_int8_matmul``):
                   ``xla_int8`` over the non-outlier columns plus a fixed-capacity split of 32
                   columns: the column absmax of ``|x|`` over the tokens, ``lax.top_k`` of it
                   (k = 32), the columns among those at or above the threshold 6 multiplied in
                   bf16 (f32 accumulation) with their 32 weight rows, gathered from the int8
                   weight and dequantized. It equals LLM.int8() only while at most 32 columns
                   are outliers; further outlier columns go through the int8 product, quantized
                   with their row's large absmax.
* ``read``         the memory roofline: XLA's row-wise max over the int8 weight [out, in], one
                   read of the weight bytes and nothing else (only with ``--layers``). Its
                   weight rate is the "plain weight-read kernel" the decode GEMVs are measured
                   against.
* ``bnb``          bitsandbytes' LLM.int8() (``bnb.nn.Linear8bitLt(has_fp16_weights=False,
                   threshold=6.0)``) through PyTorch, eager, on the same x and W converted to
                   float16 (bitsandbytes' native dtype), in the same process. Only with
                   ``--layers``, and only where ``import torch, bitsandbytes`` works and torch
                   sees a GPU; otherwise it is skipped with one printed line. For a GPU machine
                   without network, ``benchmarks/pack_bitsandbytes.sh`` packs it (3.5 MB).

The activations: x ~ N(0, 1) clipped to |x| <= 5.5, plus k planted outlier columns (every
entry of those columns has |x| uniform in 20-60, random sign), so exactly k columns reach the
threshold 6 at every token count; ``--outliers`` sets k (default 6; ``all`` = every column).
The weight: w ~ N(0, 0.02). Relative error: ``||y - y_f32|| / ||y_f32||`` with ``y_f32`` an f32
matmul (precision HIGHEST) of the unquantized inputs. XLA's dot-merger pass is disabled so
independent calls stay separate products, as the layers of a model are.

Two timing modes:

Distinct layers (``--layers [L1,L2]``, default 16,64; the primary metric). Each method runs as
one jitted program of L *distinct* layers: L weights (generated on the device; the int8
methods share one set pre-quantized with ``jaxint8.quantize_weight``, bf16 uses bf16 weights)
and L input arrays, one per layer, the outputs not chained, so every weight is streamed from
memory, as in a model. Each program (method, shape, tokens, L) is compiled once and reused for
every k; two warm-up executions, then ``--reps`` (default 5) timed ones. Reported per layer:
``wall`` = median wall time of one execution of the L2-layer program (``block_until_ready``
included) / L2, and ``slope`` = (t(L2) - t(L1)) / (L2 - L1), which drops the fixed cost per
execution. bitsandbytes runs the same L layers as a Python loop, timed with CUDA events.
Output: JSON rows (shape, tokens, k) with ``<method>`` (= wall), ``<method>_slope``,
``<method>_t`` (median seconds per program length) and ``<method>_relerr``; a table; a PNG of
time per layer vs k (needs matplotlib).

One weight (the default, without ``--layers``; the baselines' mode). Each method runs as one
jitted program of R calls (R = 32 at <= 16 tokens, else 16; ``--calls``) on R distinct
activation arrays and one weight (at the default shapes the int8 weight, 64-576 MiB, does not
fit the L2 cache, so every call streams it). After two warm-up executions, ``--reps``
(default 7) executions of each method's program are traced with the JAX profiler; the time per
call is the median device-timeline span of one execution / R (``benchmarks/timeline.py``):
kernels plus the launch gaps between them, without the fixed per-execution dispatch cost that a
layer inside a model does not pay per call. The wall-clock time per call (median T / R, which
includes that cost) is kept in the JSON as ``<method>_wall``; without a GPU it is the only time.
From the same trace, jaxint8's time per call splits into the quantization kernels (``quant``)
and the rest (``gemm``); ``jaxint8_kernels`` in the JSON has every kernel's time. Default
methods: bf16, xla_int8, jaxint8, jaxint8_t0 (``bnb`` is not timed in this mode).

In both modes all methods of a case run in the same process, one after the other, and ratios
vs bf16 are taken within that process. Kernel choices are automatic unless ``--kernel-options``
pins them (``jaxint8.KernelOptions`` fields, applied with ``jaxint8.kernel_options`` while the
programs are traced and recorded in the JSON's ``meta``).

Output: a JSON file (``meta`` + one row per case, seconds), a PNG plot (needs matplotlib:
``pip install ".[bench]"``) and a table on stdout.

Usage::

    python benchmarks/layer.py                                    # every shape and token count
    python benchmarks/layer.py --shapes 5120x20480 --tokens 1,16 --methods bf16,jaxint8
    python benchmarks/layer.py --tokens 16 --kernel-options decode=mma --out mma.json
    python benchmarks/baseline_table.py --record mma.json --gpu h200 --name layer-mma --commit SHA
    python benchmarks/layer.py --layers --shapes 5120x20480,20480x5120 --tokens 512,2048 \\
        --outliers 0,6,64,256,1024,all                            # distinct layers, outlier sweep
    python benchmarks/layer.py --layers 16,64 --tokens 1,16 --outliers 0,64,256 --methods bf16,jaxint8,bnb
    python benchmarks/layer.py --layers 16,64 --tokens 2048 --outliers 0,6 \
        --methods bf16,jaxint8,jaxint8@sm90_tile=pingpong128x128/outliers=tensor_epilogue  # side by side
    python benchmarks/layer.py --shapes 64x128 --tokens 4 --outliers 0,3,64 --layers 2,4 --reps 1  # CPU check
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timeline  # noqa: E402  (standard library only at import)

SHAPES = [(4096, 16384), (16384, 4096), (5120, 20480), (20480, 5120), (12288, 49152), (49152, 12288)]
TOKENS = [1, 16, 128, 1024, 4096]
METHODS = ["bf16", "xla_int8", "jaxint8", "jaxint8_t0", "jnp_llm_int8", "read", "bnb"]
ONE_WEIGHT_METHODS = ["bf16", "xla_int8", "jaxint8", "jaxint8_t0"]  # the default without --layers
LAYERS = [16, 64]           # --layers without a value
OUTLIERS = [6]              # planted outlier columns (k)
THRESHOLD = 6.0             # the outlier threshold of jaxint8, jnp_llm_int8 and bnb
CLIP = 5.5                  # |x| bound of the non-outlier entries (below THRESHOLD: k is exact)
OUTLIER_CAPACITY = 32       # jnp_llm_int8's fixed number of decomposed columns
KERNEL_OPTION_FIELDS = {"gemm": str, "decode": str, "fused_quant": str, "gemv_ksplit": int, "token_loads": int,
                        "outliers": str, "sm90_tile": str, "route": str}
VARIANT_BASES = ("jaxint8", "jaxint8_t0")  # methods that take per-method kernel options (METHOD@...)
QUANT_KERNELS = ("column_absmax", "quantize_rows", "quantize_fused", "memset", "Memset")
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
MATPLOTLIB_MISSING = 'plot skipped: matplotlib is not installed (pip install ".[bench]")'


# ---------------------------------------------------------------------------------------------
# argument types (no jax import: --help and argument errors are immediate)


def _list_error(kind, text, expected):
    return argparse.ArgumentTypeError(f"invalid {kind} value: {text!r} ({expected})")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise _list_error("positive int", text, "an integer >= 1")
    return value


def int_list(text):
    """'1,16,128' -> [1, 16, 128] (positive integers)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise _list_error("int list", text, "comma-separated positive integers, e.g. 1,16,128")
    return values


def shape_list(text):
    """'4096x16384,16384x4096' -> [(4096, 16384), (16384, 4096)] (in x out)."""
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise _list_error("shape list", text, "comma-separated INxOUT, e.g. 4096x16384,5120x20480")
    return shapes


def outlier_list(text):
    """'0,6,all' -> [0, 6, 'all'] (outlier column counts, integers >= 0 or 'all')."""
    values = []
    for v in text.split(","):
        v = v.strip().lower()
        if v == "all":
            values.append(v)
        elif v.isdigit():
            values.append(int(v))
        else:
            raise _list_error("outlier list", text, "comma-separated integers >= 0 or 'all', e.g. 0,6,64,all")
    return values


def layer_pair(text):
    """'16,64' -> [16, 64] (two program lengths, L1 < L2)."""
    try:
        values = int_list(text)
    except argparse.ArgumentTypeError:
        values = []
    if len(values) != 2 or values[0] == values[1]:
        raise _list_error("layer pair", text, "two different positive integers L1,L2, e.g. 16,64")
    return sorted(values)


def method_base(method):
    """'jaxint8@sm90_tile=pingpong128x128' -> 'jaxint8' (the method without its kernel options)."""
    return method.partition("@")[0]


def method_list(text):
    """Comma-separated methods; jaxint8 and jaxint8_t0 may carry their own kernel options,
    ``jaxint8@FIELD=VALUE/FIELD=VALUE`` (e.g. ``jaxint8@outliers=epilogue``), so that several
    kernel choices run side by side in one process."""
    methods = text.split(",")
    expected = (f"comma-separated, from {', '.join(METHODS)}; {' and '.join(VARIANT_BASES)} also as "
                f"METHOD@FIELD=VALUE/FIELD=VALUE with KernelOptions fields")
    for m in methods:
        base, at, opts = m.partition("@")
        if base not in METHODS or (at and base not in VARIANT_BASES):
            raise _list_error("method list", text, expected)
        if at:
            kernel_options_arg(opts, sep="/")
    if not methods or len(set(methods)) != len(methods):
        raise _list_error("method list", text, expected + ", each once")
    return methods


def method_options(method):
    """The jaxint8.KernelOptions of a METHOD@... variant (None: the enclosing default)."""
    import jaxint8

    base, at, opts = method.partition("@")
    return jaxint8.KernelOptions(**kernel_options_arg(opts, sep="/")) if at else None


def kernel_options_arg(text, sep=","):
    """'gemm=tiled,decode=mma' -> {'gemm': 'tiled', 'decode': 'mma'} (values checked by
    jaxint8.KernelOptions in make_kernel_options)."""
    fields = {}
    for item in filter(None, text.split(sep)):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        kind = KERNEL_OPTION_FIELDS.get(key)
        try:
            fields[key] = kind(value.strip()) if eq and kind else None
        except ValueError:
            fields[key] = None
        if fields[key] is None:
            raise _list_error("kernel options", text,
                              f"FIELD=VALUE items separated by {sep!r}, FIELD one of {', '.join(KERNEL_OPTION_FIELDS)}")
    return fields


def make_kernel_options(ap, fields):
    """jaxint8.KernelOptions from --kernel-options (argparse error on a bad value). Imports jax:
    call setup_xla_flags() first."""
    import jaxint8

    try:
        return jaxint8.KernelOptions(**fields)
    except (TypeError, ValueError) as e:
        ap.error(f"argument --kernel-options: {e}")


def options_dict(options):
    """The fields of a KernelOptions that differ from the automatic choice."""
    default = type(options)()
    return {k: v for k, v in dataclasses.asdict(options).items() if getattr(default, k) != v}


def setup_xla_flags():
    """Disables XLA's dot-merger pass (before jax is imported). It would merge the R independent
    products that share the weight into one larger GEMM (then bf16 at 1 token reads the weight
    once for all calls); every call must stay one product, as in a model."""
    if "jax" in sys.modules:
        return
    if "dot-merger" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_disable_hlo_passes=dot-merger").strip()


# ---------------------------------------------------------------------------------------------
# the benchmark


def n_rotate(s):
    # Calls per program. At least 16: with fewer ops than XLA's minimum command-buffer size (5)
    # the calls run as separate thunks, and the first call of every execution then waits on host
    # launches between its kernels (measured at 1024 tokens with 4 calls: 60-90 us of idle gaps,
    # all in the first call; benchmarks/timeline.py --gaps). A layer in a model runs in a
    # command buffer and does not pay that per call.
    return 32 if s <= 16 else 16


def chained(op):
    """One jitted program of R independent calls of op on R inputs (run one after the other on
    XLA's compute stream). Ordering them with optimization barriers made XLA copy the inputs,
    which added a pass over x to every call."""
    import jax

    def run(xs, *rest):
        return tuple(op(x, *rest) for x in xs)
    return jax.jit(run)


def batch_time(fn, args, reps):
    import jax

    for _ in range(2):  # compile + warm up
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@functools.lru_cache(maxsize=None)
def _activation_fn():
    """jit(key, cols, s, h) -> x [s, h] bf16: N(0, 1) clipped to |x| <= CLIP, every entry of the
    columns ``cols`` replaced by |x| uniform in 20-60 with a random sign."""
    import jax
    import jax.numpy as jnp

    def gen(key, cols, s, h):
        kx, km, ks = jax.random.split(key, 3)
        x = jnp.clip(jax.random.normal(kx, (s, h), jnp.float32), -CLIP, CLIP)
        k = cols.shape[0]
        mag = jax.random.uniform(km, (s, k), jnp.float32, minval=20.0, maxval=60.0)
        sign = jnp.where(jax.random.bernoulli(ks, 0.5, (s, k)), 1.0, -1.0)
        return x.at[:, cols].set(mag * sign).astype(jnp.bfloat16)
    return jax.jit(gen, static_argnums=(2, 3))


def outlier_columns(h, k):
    """k distinct columns of h (the same for every layer and token count of a shape)."""
    import jax

    return jax.random.permutation(jax.random.key(1000003 * h + k), h)[:k]


def activations(key, cols, s, h):
    return _activation_fn()(key, cols, s, h)


def make_data(h, o, s, r, key, k=OUTLIERS[0]):
    """R activation arrays [s, h] bf16 (k outlier columns of magnitude 20-60, see
    ``activations``) and a weight [h, o] f32 ~ N(0, 0.02)."""
    import jax
    import jax.numpy as jnp

    kx, kw = jax.random.split(key)
    cols = outlier_columns(h, k)
    xs = [activations(jax.random.fold_in(kx, i), cols, s, h) for i in range(r)]
    w = 0.02 * jax.random.normal(kw, (h, o), jnp.float32)
    return xs, w


def xla_int8_matmul(x, qweight, scale):
    """XLA's own int8 route: per-row absmax quantization of x, int8 x int8 -> int32 dot_general,
    dequantization with the row and column scales; no outlier decomposition."""
    import jax.numpy as jnp
    from jax import lax

    xf = x.astype(jnp.float32)
    row = jnp.max(jnp.abs(xf), axis=-1, keepdims=True)
    xq = jnp.clip(jnp.round(xf * (127.0 / jnp.where(row == 0, 1.0, row))), -127, 127).astype(jnp.int8)
    acc = lax.dot_general(xq, qweight, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)
    return (acc.astype(jnp.float32) * (row * (scale / 16129.0))).astype(x.dtype)


def jnp_llm_int8_matmul(x, qweight, scale, threshold=THRESHOLD, capacity=OUTLIER_CAPACITY):
    """LLM.int8() in plain jnp with a fixed capacity: x [s, h], qweight int8 [o, h], scale [o].

    The ``capacity`` columns of largest absmax over the tokens (``lax.top_k``) that reach
    ``threshold`` are the outlier columns: zeroed in the int8 product (``xla_int8_matmul``'s
    route) and multiplied in bf16, f32 accumulation, with their weight rows dequantized from
    the int8 weight. Equal to LLM.int8() only while at most ``capacity`` columns reach the
    threshold; the remaining outlier columns stay in the int8 product, quantized with their
    row's large absmax (the error then grows with their number). On CPU, whose dot has no
    bf16 x bf16 -> f32, the bf16 outlier operands are multiplied as f32 (the same values).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    xf = x.astype(jnp.float32)
    top, idx = lax.top_k(jnp.max(jnp.abs(xf), axis=0), min(capacity, x.shape[-1]))
    keep = top >= threshold
    xi = jnp.where(jnp.zeros(x.shape[-1], bool).at[idx].set(keep), 0.0, xf)
    row = jnp.max(jnp.abs(xi), axis=-1, keepdims=True)
    xq = jnp.clip(jnp.round(xi * (127.0 / jnp.where(row == 0, 1.0, row))), -127, 127).astype(jnp.int8)
    acc = lax.dot_general(xq, qweight, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)
    y = acc.astype(jnp.float32) * (row * (scale / 16129.0))
    xo = jnp.where(keep, x[:, idx], 0).astype(jnp.bfloat16)                                  # [s, c]
    wo = (qweight[:, idx].astype(jnp.float32) * (scale[:, None] / 127.0)).astype(jnp.bfloat16)  # [o, c]
    if jax.default_backend() == "cpu":
        xo, wo = xo.astype(jnp.float32), wo.astype(jnp.float32)
    y = y + lax.dot_general(xo, wo, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    return y.astype(x.dtype)


def method_fn(method):
    """op(x, *rest) of one method (rest from ``method_args``)."""
    import jax.numpy as jnp

    import jaxint8

    if method == "bf16":
        return lambda x, w: jnp.dot(x, w)
    if method == "xla_int8":
        return xla_int8_matmul
    if method == "jnp_llm_int8":
        return jnp_llm_int8_matmul
    if method_base(method) in VARIANT_BASES:
        threshold = {"jaxint8": THRESHOLD, "jaxint8_t0": 0.0}[method_base(method)]
        options = method_options(method)
        return lambda x, qw: jaxint8.llm_int8_matmul(x, qw, threshold=threshold, options=options)
    if method == "read":
        return lambda x, qweight: jnp.max(qweight, axis=1)
    raise ValueError(f"method {method!r} is not a jax method (bnb runs only with --layers)")


def method_args(method, wb, qw):
    """The weight arguments of one method: bf16 weight wb or jaxint8.Int8Weight qw."""
    if method == "bf16":
        return (wb,)
    if method in ("xla_int8", "jnp_llm_int8"):
        return (qw.qweight, qw.scale)
    if method == "read":
        return (qw.qweight,)
    return (qw,)


def weight_bytes(method, h, o):
    """Bytes of one layer's weight that a method streams (bf16: 2 per element; else int8)."""
    return (2 if method == "bf16" else 1) * h * o


def method_op(method, w):
    """(op(x, *rest), rest) of one method for the f32 weight w [h, o]."""
    import jax
    import jax.numpy as jnp

    import jaxint8

    op = method_fn(method)
    if method == "bf16":
        return op, method_args(method, w.astype(jnp.bfloat16), None)
    return op, method_args(method, None, jax.jit(jaxint8.quantize_weight)(w))


def program(method, h, o, s, r, k=OUTLIERS[0]):
    """(jitted program of r calls, its arguments) of one method at one shape."""
    import jax

    xs, w = make_data(h, o, s, r, jax.random.key(h * 7 + o + s), k)
    op, rest = method_op(method, w)
    return chained(op), (tuple(xs),) + rest


def rel_err(y, ref):
    import jax.numpy as jnp

    y = y.astype(jnp.float32)
    return float(jnp.linalg.norm(y - ref) / jnp.linalg.norm(ref))


def bench_case(h, o, s, reps, methods, calls=None, k=OUTLIERS[0]):
    import jax
    import jax.numpy as jnp
    from jax import lax

    r = calls or n_rotate(s)
    xs, w = make_data(h, o, s, r, jax.random.key(h * 7 + o + s), k)
    xs = tuple(xs)
    ref = jnp.dot(xs[0].astype(jnp.float32), w, precision=lax.Precision.HIGHEST)
    res = {"h": h, "o": o, "s": s, "k": k, "rotate": r}
    programs = {}
    for m in methods:
        op, rest = method_op(m, w)
        programs[m] = (chained(op), (xs,) + rest)
        res[m + "_wall"] = batch_time(*programs[m], reps) / r   # also warms up
        res[m + "_relerr"] = rel_err(jax.jit(op)(xs[0], *rest), ref)
    dev = timeline.trace_programs(programs, r, reps)
    res["timing"] = "device" if dev else "wall"
    for m in methods:
        res[m] = dev[m]["span"] if dev else res[m + "_wall"]
        if dev:
            res[m + "_busy"] = dev[m]["busy"]
    if dev and "jaxint8" in methods:
        kernels = dev["jaxint8"]["kernels"]
        res["quant"] = sum(t for k, t in kernels.items() if any(q in k for q in QUANT_KERNELS))
        res["gemm"] = sum(kernels.values()) - res["quant"]
        res["jaxint8_kernels"] = kernels
    res["floor_i8"] = h * o / 3.0e12
    return res


# ---------------------------------------------------------------------------------------------
# distinct layers (--layers)


def bnb_backend():
    """((torch, bitsandbytes), None) when bitsandbytes can run on a GPU here, else (None, why)."""
    try:
        import torch
        import bitsandbytes
    except Exception as e:  # ImportError, or bitsandbytes' own error without its CUDA library
        first = (str(e).splitlines() or [""])[0]
        return None, f"import torch, bitsandbytes failed ({type(e).__name__}: {first})"
    if not torch.cuda.is_available():
        return None, "torch sees no CUDA GPU"
    return (torch, bitsandbytes), None


def layered(op):
    """One jitted program of L distinct layers: op(xs[i], *ws[i]) for each i, outputs not
    chained (each product stays its own, every weight is read)."""
    import jax

    def run(xs, ws):
        return tuple(op(x, *w) for x, w in zip(xs, ws))
    return jax.jit(run)


@functools.lru_cache(maxsize=None)
def _weight_fn(h, o, bf16, int8):
    """jit(key) -> (bf16 weight or None, jaxint8.Int8Weight or None) of one f32 weight
    [h, o] ~ N(0, 0.02) generated on the device."""
    import jax
    import jax.numpy as jnp

    import jaxint8

    def gen(key):
        w = 0.02 * jax.random.normal(key, (h, o), jnp.float32)
        return (w.astype(jnp.bfloat16) if bf16 else None), (jaxint8.quantize_weight(w) if int8 else None)
    return jax.jit(gen)


def weight_f32(key, h, o):
    import jax
    import jax.numpy as jnp

    return 0.02 * jax.random.normal(key, (h, o), jnp.float32)


def make_weights(h, o, n, bf16, int8):
    """n distinct layer weights: ([bf16 [h, o]] or None, [Int8Weight] or None), made on the
    device one layer at a time (the f32 weight is never kept)."""
    import jax

    kw = jax.random.key(h * 7 + o)
    fn = _weight_fn(h, o, bf16, int8)
    pairs = [fn(jax.random.fold_in(kw, i)) for i in range(n)]
    jax.block_until_ready(pairs)
    return ([p[0] for p in pairs] if bf16 else None), ([p[1] for p in pairs] if int8 else None)


def bnb_layers(torch, bnb, h, o, n):
    """n ``bnb.nn.Linear8bitLt(has_fp16_weights=False, threshold=6)`` on the GPU, holding the same
    weights as make_weights in float16 (quantized by bitsandbytes when moved to the GPU)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    kw = jax.random.key(h * 7 + o)
    to_f16 = jax.jit(lambda key: weight_f32(key, h, o).T.astype(jnp.float16))
    mods = []
    for i in range(n):
        w16 = torch.from_numpy(np.asarray(to_f16(jax.random.fold_in(kw, i))))   # [o, h] on the host
        mod = bnb.nn.Linear8bitLt(h, o, bias=False, has_fp16_weights=False, threshold=THRESHOLD, device="meta")
        mod.weight = bnb.nn.Int8Params(w16, requires_grad=False, has_fp16_weights=False)
        mods.append(mod.to("cuda").eval())  # bitsandbytes quantizes here
    return mods


def to_torch_f16(torch, x):
    """A jax array as a torch float16 CUDA tensor (through DLPack, else through the host)."""
    import jax.numpy as jnp
    import numpy as np

    x16 = jnp.asarray(x, jnp.float16).block_until_ready()
    try:
        return torch.from_dlpack(x16)
    except Exception:  # no DLPack exchange between these builds
        return torch.from_numpy(np.asarray(x16)).cuda()


def bnb_time(torch, mods, xs, n, reps):
    """Median seconds of n layer calls (mods[i](xs[i]), eager) from CUDA events, after 2 warm-ups."""
    def once():
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        ys = [mods[i](xs[i]) for i in range(n)]  # noqa: F841  (kept until the end event)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3

    with torch.inference_mode():
        for _ in range(2):
            once()
        return statistics.median(once() for _ in range(reps))


def resolve_outliers(outliers, h):
    """--outliers for in_features h: ints (``all`` -> h), in order, without repeats; counts > h
    are skipped with a printed line."""
    ks = []
    for v in outliers:
        k = h if v == "all" else v
        if k > h:
            print(f"outliers {k} > in_features {h}: skipped", flush=True)
        elif k not in ks:
            ks.append(k)
    return ks


def layers_shape(h, o, tokens, outliers, layers, reps, methods, bnb, emit):
    """The distinct-layer rows of one shape (one per token count and outlier count); emit(row)
    after each."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    l1, l2 = layers
    ks = resolve_outliers(outliers, h)
    if not ks:
        return
    jax_methods = [m for m in methods if m != "bnb"]
    wbs, qws = make_weights(h, o, l2, "bf16" in jax_methods, any(m != "bf16" for m in jax_methods))
    w0 = weight_f32(jax.random.fold_in(jax.random.key(h * 7 + o), 0), h, o)
    mods = None
    if bnb is not None and "bnb" in methods:
        torch = bnb[0]
        try:
            mods = bnb_layers(*bnb, h, o, l2)
        except Exception as e:
            print(f"bnb skipped at {h}->{o}: {type(e).__name__}: {e}", flush=True)
    weights = {m: [method_args(m, wbs[i] if wbs else None, qws[i] if qws else None) for i in range(l2)]
               for m in jax_methods}
    for s in tokens:
        programs = {(m, n): layered(method_fn(m)) for m in jax_methods for n in layers}  # reused for every k
        kx = jax.random.key(h * 7 + o + s)
        for k in ks:
            cols = outlier_columns(h, k)
            xs = tuple(activations(jax.random.fold_in(kx, i), cols, s, h) for i in range(l2))
            ref = jnp.dot(xs[0].astype(jnp.float32), w0, precision=lax.Precision.HIGHEST)
            row = {"h": h, "o": o, "s": s, "k": k, "layers": [l1, l2], "timing": "wall"}
            times = {}
            for m in jax_methods:
                times[m] = {n: batch_time(programs[m, n], (xs[:n], tuple(weights[m][:n])), reps) for n in layers}
                y0 = programs[m, l1](xs[:l1], tuple(weights[m][:l1]))[0]  # layer 0, no extra compile
                row[m + "_relerr"] = float("nan") if m == "read" else rel_err(y0, ref)
                del y0
            if mods is not None:
                try:
                    x16 = [to_torch_f16(torch, x) for x in xs]
                    t = {n: bnb_time(torch, mods, x16, n, reps) for n in layers}
                    with torch.inference_mode():
                        y = mods[0](x16[0]).float().cpu().numpy()
                    times["bnb"], row["bnb_relerr"] = t, rel_err(jnp.asarray(y), ref)
                    del x16
                except Exception as e:
                    print(f"bnb skipped at {h}->{o} s={s} k={k}: {type(e).__name__}: {e}", flush=True)
                    mods = None
            for m, t in times.items():
                row[m] = t[l2] / l2
                row[m + "_slope"] = (t[l2] - t[l1]) / (l2 - l1)
                row[m + "_t"] = {str(n): t[n] for n in layers}
                print(f"{h}->{o} s={s} k={k} {m}: {row[m] * 1e6:.1f} us/layer wall ({l2} layers), "
                      f"slope {row[m + '_slope'] * 1e6:.1f} us/layer, err {row[m + '_relerr']:.2e}", flush=True)
            emit(row)
            del xs, ref
    del wbs, qws, weights, mods
    if bnb is not None:
        bnb[0].cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# output


def fmt_table(rows, methods):
    us = lambda r, k: f"{r[k] * 1e6:.1f}" if k in r else "-"  # noqa: E731
    others = [m for m in methods if m != "bf16"]
    hdr = f"{'shape':>13} {'tok':>5} " + " ".join(f"{m + ' us':>13}" for m in methods)
    if "bf16" in methods:
        hdr += " " + " ".join(f"{m + ' x':>12}" for m in others)
    hdr += f" {'quant':>6} {'gemm':>6} " + " ".join(f"{'err ' + m:>15}" for m in methods)
    lines = [hdr]
    for r in rows:
        line = f"{r['h']:>6}->{r['o']:<6} {r['s']:>5} " + " ".join(f"{us(r, m):>13}" for m in methods)
        if "bf16" in methods:
            line += " " + " ".join(f"{r['bf16'] / r[m]:>12.2f}" for m in others)
        line += f" {us(r, 'quant'):>6} {us(r, 'gemm'):>6} " + " ".join(
            f"{r[m + '_relerr']:>15.2e}" for m in methods)
        lines.append(line)
    return "\n".join(lines)


def plot(rows, path, title=None):
    """Ratio vs bf16 over token counts, one panel per shape. False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shapes = sorted({(r["h"], r["o"]) for r in rows}, key=lambda t: (t[0] * t[1], t[0]))
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.2 * len(shapes), 3.4), sharey=True, squeeze=False)
    labels = {"jaxint8": "jaxint8 (t=6)", "jaxint8_t0": "jaxint8 (t=0)", "xla_int8": "XLA int8 (no outliers)"}
    colors = {"jaxint8": "C0", "jaxint8_t0": "C1", "xla_int8": "C2"}
    handles = {}
    for ax, (h, o) in zip(axes[0], shapes):
        rs = sorted([r for r in rows if (r["h"], r["o"]) == (h, o)], key=lambda r: r["s"])
        for m, style in (("jaxint8", "o-"), ("jaxint8_t0", "s--"), ("xla_int8", "x:")):
            pts = [(r["s"], r["bf16"] / r[m]) for r in rs if m in r and "bf16" in r]
            if pts:
                handles[m] = ax.plot(*zip(*pts), style, color=colors[m], label=labels[m])[0]
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{h}->{o}", fontsize=9)
        ax.set_xlabel("tokens")
    axes[0][0].set_ylabel("speed-up vs XLA bf16")
    fig.legend(list(handles.values()), [labels[m] for m in handles], loc="upper right", fontsize=7,
               ncol=len(handles))
    fig.suptitle(title or "", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def fmt_layers_table(rows, methods):
    """One line per (shape, tokens, k, method): wall and slope per layer, speed-ups vs bf16, and
    the weight stream: bytes / wall time per layer, and that rate as a share of ``read``'s."""
    mw = max([12] + [len(m) for m in methods])
    hdr = (f"{'shape':>13} {'tok':>5} {'k':>6} {'method':>{mw}} {'wall us':>9} {'wall x':>7} "
           f"{'slope us':>9} {'slope x':>8} {'w TB/s':>7} {'% read':>7} {'rel err':>9}")
    lines = [hdr]
    for r in rows:
        for m in methods:
            if m not in r:
                continue
            x = lambda key: (f"{r['bf16' + key] / r[m + key]:.2f}"  # noqa: E731
                             if "bf16" in r and min(r["bf16" + key], r[m + key]) > 0 else "-")
            rate = weight_bytes(m, r["h"], r["o"]) / r[m] / 1e12 if r[m] > 0 else 0.0
            share = (f"{100 * r['read'] / r[m] * weight_bytes(m, 1, 1):.0f}"
                     if "read" in r and r[m] > 0 else "-")
            lines.append(f"{r['h']:>6}->{r['o']:<6} {r['s']:>5} {r['k']:>6} {m:>{mw}} {r[m] * 1e6:>9.1f} {x(''):>7} "
                         f"{r[m + '_slope'] * 1e6:>9.1f} {x('_slope'):>8} {rate:>7.2f} {share:>7} "
                         f"{r[m + '_relerr']:>9.2e}")
    return "\n".join(lines)


LAYER_STYLES = {"bf16": ("k", "-", "XLA bf16"), "jaxint8": ("C0", "o-", "jaxint8 (t=6)"),
                "jaxint8_t0": ("C1", "s--", "jaxint8 (t=0)"), "xla_int8": ("C2", "x:", "XLA int8 (no outliers)"),
                "jnp_llm_int8": ("C3", "^-", "jnp LLM.int8 (32 columns)"), "bnb": ("C4", "d-", "bitsandbytes (fp16)"),
                "read": ("gray", ":", "int8 weight read (roofline)")}


def plot_layers(rows, path, title=None):
    """Time per layer vs outlier count k (categorical), one line per method; panels: (shape,
    tokens) across, wall time (top) and slope (bottom). False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = sorted({(r["h"], r["o"], r["s"]) for r in rows}, key=lambda t: (t[0] * t[1], t[0], t[2]))
    fig, axes = plt.subplots(2, len(cases), figsize=(max(3.4 * len(cases), 7.0), 6.6), squeeze=False)
    handles = {}
    for j, (h, o, s) in enumerate(cases):
        rs = sorted([r for r in rows if (r["h"], r["o"], r["s"]) == (h, o, s)], key=lambda r: r["k"])
        ticks = list(range(len(rs)))
        for i, (key, what) in enumerate((("", "wall"), ("_slope", "slope"))):
            ax = axes[i][j]
            for m, (color, style, label) in LAYER_STYLES.items():
                pts = [(t, r[m + key] * 1e6) for t, r in zip(ticks, rs) if m in r and r[m + key] > 0]
                if pts:
                    handles[m] = ax.plot(*zip(*pts), style, color=color, label=label)[0]
            ax.set_yscale("log")
            ax.set_xticks(ticks, [str(r["k"]) for r in rs], fontsize=8)
            ax.set_xlabel("outlier columns k")
            if j == 0:
                ax.set_ylabel(f"us per layer ({what})")
            if i == 0:
                ax.set_title(f"{h}->{o}, {s} tokens", fontsize=9)
    fig.legend(list(handles.values()), [LAYER_STYLES[m][2] for m in handles], loc="lower center", fontsize=7,
               ncol=3)
    fig.suptitle(title or "", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0.09, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def writable_dir(ap, option, path):
    """Creates the folder of an output path; an argparse error when it cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        ap.error(f"argument {option}: cannot create {folder}: {e.strerror}")
    if not os.access(folder, os.W_OK):
        ap.error(f"argument {option}: {folder} is not writable")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=shape_list, default=SHAPES, metavar="INxOUT,...",
                    help="default: " + ",".join(f"{h}x{o}" for h, o in SHAPES))
    ap.add_argument("--tokens", type=int_list, default=TOKENS, metavar="N,...",
                    help="token counts, default " + ",".join(map(str, TOKENS)))
    ap.add_argument("--methods", type=method_list, default=None, metavar="M,...",
                    help=f"from {', '.join(METHODS)} (default: all with --layers, else "
                         f"{','.join(ONE_WEIGHT_METHODS)}; read and bnb only with --layers)")
    ap.add_argument("--outliers", type=outlier_list, default=OUTLIERS, metavar="K,...",
                    help="planted outlier columns per case, integers >= 0 or 'all' (every column); "
                         f"default {','.join(map(str, OUTLIERS))}")
    ap.add_argument("--layers", type=layer_pair, nargs="?", const=LAYERS, default=None, metavar="L1,L2",
                    help="time programs of L1 and L2 distinct layers (default when given without a "
                         f"value: {','.join(map(str, LAYERS))}); without it, one weight and --calls")
    ap.add_argument("--kernel-options", type=kernel_options_arg, default={}, metavar="FIELD=VALUE,...",
                    help="jaxint8.KernelOptions for the jaxint8 methods, e.g. gemm=tiled,decode=mma "
                         f"(fields: {', '.join(KERNEL_OPTION_FIELDS)}); default automatic")
    ap.add_argument("--reps", type=positive_int, default=None,
                    help="timed executions per program (default 5 with --layers, else 7)")
    ap.add_argument("--calls", type=positive_int, default=None,
                    help="without --layers: calls (distinct inputs) per program, R; default 32 at <= 16 "
                         "tokens, else 16")
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/out/layer[-layers]-<device>-<date>.json)")
    ap.add_argument("--plot", default=None, help="PNG path (default: the JSON path with .png)")
    ap.add_argument("--no-plot", action="store_true", help="no PNG")
    args = ap.parse_args(argv)
    for option in ("out", "plot"):
        if getattr(args, option):
            writable_dir(ap, f"--{option}", getattr(args, option))
    if args.layers and args.calls:
        ap.error("argument --calls: not used with --layers (each program has L1 or L2 layers)")
    methods = args.methods or (METHODS if args.layers else ONE_WEIGHT_METHODS)
    reps = args.reps or (5 if args.layers else 7)
    setup_xla_flags()
    if args.layers and "bnb" in methods:  # leave GPU memory to torch (JAX takes 75% by default)
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")
    options = make_kernel_options(ap, args.kernel_options)
    for m in methods:
        try:
            method_options(m)
        except (TypeError, ValueError) as e:
            ap.error(f"argument --methods: {m}: {e}")

    import jax

    import jaxint8

    dev = jax.devices()[0]
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    kind = "layer-layers" if args.layers else "layer"
    out = args.out or os.path.join(OUT_DIR, f"{kind}-{dev.device_kind.replace(' ', '_')}-{date[:10]}.json")
    writable_dir(ap, "--out", out)
    skipped = {}
    if not args.layers and "read" in methods:
        skipped["read"] = "timed only with --layers"
        print(f"read skipped: {skipped['read']}", flush=True)
        methods = [m for m in methods if m != "read"]
    bnb = None
    if "bnb" in methods:
        if not args.layers:
            skipped["bnb"] = "timed only with --layers"
        elif dev.platform != "gpu":
            skipped["bnb"] = f"jax runs on {dev.platform}, not a GPU"
        else:
            bnb, why = bnb_backend()
            if bnb is None:
                skipped["bnb"] = why
        if "bnb" in skipped:
            print(f"bnb skipped: {skipped['bnb']}", flush=True)
            methods = [m for m in methods if m != "bnb"]
    meta = {"device": dev.device_kind, "date": date, "command": " ".join([sys.executable] + sys.argv),
            "jax": jax.__version__, "jaxint8": jaxint8.__version__, "cuda_kernels": jaxint8.BUILT_WITH_CUDA,
            "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "kernel_options": options_dict(options), "methods": methods, "outliers": args.outliers,
            "reps": reps}
    if skipped:
        meta["skipped"] = skipped
    if bnb is not None:
        meta["torch"], meta["bitsandbytes"] = bnb[0].__version__, getattr(bnb[1], "__version__", "?")
        meta["xla_mem_fraction"] = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "")
    if args.layers:
        meta["layers"] = args.layers
        meta["timing"] = (f"per layer: wall = median wall time of one execution of a jitted program of "
                          f"{args.layers[1]} distinct layers (own weight and input each) / {args.layers[1]}; "
                          f"slope = (t({args.layers[1]}) - t({args.layers[0]})) / {args.layers[1] - args.layers[0]}; "
                          "bnb: eager torch loop timed with CUDA events")
    else:
        meta["timing"] = ("per call = median device-timeline span of one execution of a jitted program "
                          "of R distinct-input calls / R (see benchmarks/timeline.py); wall time if no GPU")
    rows = []

    def emit(row):
        rows.append(row)
        with open(out, "w") as f:  # after every case, so a cut-short run keeps its rows
            json.dump({"meta": meta, "rows": rows}, f, indent=1)

    with jaxint8.kernel_options(options):
        for h, o in args.shapes:
            if args.layers:
                layers_shape(h, o, args.tokens, args.outliers, args.layers, reps, methods, bnb, emit)
                continue
            for s in args.tokens:
                for k in resolve_outliers(args.outliers, h):
                    r = bench_case(h, o, s, reps, methods, args.calls, k)
                    emit(r)
                    print(f"{h}->{o} s={s} k={k} ({r['timing']} time): " + ", ".join(
                        f"{m} {r[m] * 1e6:.1f}us" for m in methods + ["quant", "gemm"] if m in r), flush=True)
    print(f"\nwrote {out}")
    if not args.no_plot and rows:
        png = args.plot or os.path.splitext(out)[0] + ".png"
        if args.layers:
            done = plot_layers(rows, png, dev.device_kind)
        else:  # ratios over token counts: the first outlier count's rows
            done = plot([r for r in rows if r["k"] == rows[0]["k"]], png, dev.device_kind)
        print(f"wrote {png}" if done else MATPLOTLIB_MISSING)
    if args.layers:
        print(f"device: {dev.device_kind}; us per layer (wall: {args.layers[1]}-layer program / "
              f"{args.layers[1]}; slope: between {args.layers[0]} and {args.layers[1]} layers); "
              f"'x' = speed-up vs XLA bf16; k = outlier columns; "
              f"kernel options: {meta['kernel_options'] or 'automatic'}")
        print(fmt_layers_table(rows, methods))
    else:
        print(f"device: {dev.device_kind}; times in us per call; '<method> x' = speed-up vs XLA bf16; "
              f"kernel options: {meta['kernel_options'] or 'automatic'}")
        print(fmt_table(rows, methods))


if __name__ == "__main__":
    main()
