"""Layer benchmark: jaxint8's LLM.int8() matmul vs XLA bf16 and XLA's own int8 route, one GPU.

What it measures: the time per call and the accuracy of one linear layer ``y = x @ W``
(``x [tokens, in]`` bf16, ``W [in, out]``) at six transformer shapes (in -> out: 4096->16384,
16384->4096, 5120->20480, 20480->5120, 12288->49152, 49152->12288) and 1, 16, 128, 1024, 4096
tokens, for these methods:

* ``bf16``       XLA ``x @ w`` in bfloat16 (cuBLAS, f32 accumulation): the baseline.
* ``xla_int8``   XLA's own int8 route: per-row absmax quantization of ``x`` in jnp,
                 ``lax.dot_general`` int8 x int8 -> int32 (``preferred_element_type``), dequantization
                 to bf16; the weight pre-quantized; no outlier decomposition.
* ``jaxint8``    ``jaxint8.llm_int8_matmul(x, W8, threshold=6)``: LLM.int8() with decomposition.
* ``jaxint8_t0`` the same with threshold 0 (no decomposition).

How: the activations are the test data (x ~ N(0, 1) with 6 outlier columns of magnitude 20-60,
w ~ N(0, 0.02)). Each method runs as one jitted program of R calls (R = 32 at <= 16 tokens,
else 16; ``--calls``) on R distinct activation arrays and one weight (at the default shapes the
int8 weight, 64-576 MiB, does not fit the L2 cache, so every call streams it); XLA's dot-merger
pass is disabled so the calls stay separate products, as the layers of a model are. After two
warm-up executions, ``--reps`` executions of each method's program are traced with the JAX
profiler; the time per call is the median device-timeline span of one execution / R
(``benchmarks/timeline.py``): kernels plus the launch gaps between them, without the fixed
per-execution dispatch cost that a layer inside a model does not pay per call. The wall-clock
time per call (median T / R, which includes that cost) is kept in the JSON as
``<method>_wall``; without a GPU it is the only time. All methods of a case run in the same
process, one after the other, and ratios vs bf16 are taken within that process. Relative error:
``||y - y_f32|| / ||y_f32||`` with ``y_f32`` an f32 matmul (precision HIGHEST) of the unquantized
inputs. From the same trace, jaxint8's time per call splits into the quantization kernels
(``quant``) and the rest (``gemm``); ``jaxint8_kernels`` in the JSON has every kernel's time.

Kernel choices are automatic unless ``--kernel-options`` pins them (``jaxint8.KernelOptions``
fields, applied with ``jaxint8.kernel_options`` while the programs are traced and recorded in
the JSON's ``meta``).

Output: a JSON file (``meta`` + one row per case, seconds), a PNG plot of the ratios vs bf16
(needs matplotlib: ``pip install ".[bench]"``) and a table on stdout.

Usage::

    python benchmarks/layer.py                                    # every shape and token count
    python benchmarks/layer.py --shapes 5120x20480 --tokens 1,16 --methods bf16,jaxint8
    python benchmarks/layer.py --tokens 16 --kernel-options decode=mma --out mma.json
    python benchmarks/baseline_table.py --record mma.json --gpu h200 --name layer-mma --commit SHA
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
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
METHODS = ["bf16", "xla_int8", "jaxint8", "jaxint8_t0"]
KERNEL_OPTION_FIELDS = {"gemm": str, "decode": str, "fused_quant": str, "gemv_ksplit": int, "token_loads": int}
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


def method_list(text):
    methods = text.split(",")
    if not methods or any(m not in METHODS for m in methods):
        raise _list_error("method list", text, f"comma-separated, from {', '.join(METHODS)}")
    return methods


def kernel_options_arg(text):
    """'gemm=tiled,decode=mma' -> {'gemm': 'tiled', 'decode': 'mma'} (values checked by
    jaxint8.KernelOptions in make_kernel_options)."""
    fields = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        kind = KERNEL_OPTION_FIELDS.get(key)
        try:
            fields[key] = kind(value.strip()) if sep and kind else None
        except ValueError:
            fields[key] = None
        if fields[key] is None:
            raise _list_error("kernel options", text,
                              f"comma-separated FIELD=VALUE, FIELD one of {', '.join(KERNEL_OPTION_FIELDS)}")
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


def make_data(h, o, s, r, key):
    """R activation arrays [s, h] bf16 (6 outlier columns of magnitude 20-60) and a
    weight [h, o] f32 ~ N(0, 0.02)."""
    import jax
    import jax.numpy as jnp

    kx, kw, kc, km = jax.random.split(key, 4)
    cols = jax.random.choice(kc, h, (6,), replace=False)
    mags = jax.random.uniform(km, (6,), minval=20.0, maxval=60.0)
    xs = []
    for i in range(r):
        x = jax.random.normal(jax.random.fold_in(kx, i), (s, h), jnp.float32)
        x = x.at[:, cols].multiply(mags)
        xs.append(x.astype(jnp.bfloat16))
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


def method_op(method, w):
    """(op(x, *rest), rest) of one method for the f32 weight w [h, o]."""
    import jax
    import jax.numpy as jnp

    import jaxint8

    if method == "bf16":
        return (lambda x, w: jnp.dot(x, w)), (w.astype(jnp.bfloat16),)
    qw = jax.jit(jaxint8.quantize_weight)(w)
    if method == "xla_int8":
        return xla_int8_matmul, (qw.qweight, qw.scale)
    threshold = {"jaxint8": 6.0, "jaxint8_t0": 0.0}[method]
    return (lambda x, qw: jaxint8.llm_int8_matmul(x, qw, threshold=threshold)), (qw,)


def program(method, h, o, s, r):
    """(jitted program of r calls, its arguments) of one method at one shape."""
    import jax

    xs, w = make_data(h, o, s, r, jax.random.key(h * 7 + o + s))
    op, rest = method_op(method, w)
    return chained(op), (tuple(xs),) + rest


def rel_err(y, ref):
    import jax.numpy as jnp

    y = y.astype(jnp.float32)
    return float(jnp.linalg.norm(y - ref) / jnp.linalg.norm(ref))


def bench_case(h, o, s, reps, methods, calls=None):
    import jax
    import jax.numpy as jnp
    from jax import lax

    r = calls or n_rotate(s)
    xs, w = make_data(h, o, s, r, jax.random.key(h * 7 + o + s))
    xs = tuple(xs)
    ref = jnp.dot(xs[0].astype(jnp.float32), w, precision=lax.Precision.HIGHEST)
    res = {"h": h, "o": o, "s": s, "rotate": r}
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
    ap.add_argument("--methods", type=method_list, default=METHODS, metavar="M,...",
                    help=f"from {', '.join(METHODS)} (default: all)")
    ap.add_argument("--kernel-options", type=kernel_options_arg, default={}, metavar="FIELD=VALUE,...",
                    help="jaxint8.KernelOptions for the jaxint8 methods, e.g. gemm=tiled,decode=mma "
                         f"(fields: {', '.join(KERNEL_OPTION_FIELDS)}); default automatic")
    ap.add_argument("--reps", type=positive_int, default=7, help="timed executions per method (default 7)")
    ap.add_argument("--calls", type=positive_int, default=None,
                    help="calls (distinct inputs) per program, R; default 32 at <= 16 tokens, else 16")
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/out/layer-<device>-<date>.json)")
    ap.add_argument("--plot", default=None, help="PNG path (default: the JSON path with .png)")
    ap.add_argument("--no-plot", action="store_true", help="no PNG")
    args = ap.parse_args(argv)
    for option in ("out", "plot"):
        if getattr(args, option):
            writable_dir(ap, f"--{option}", getattr(args, option))
    setup_xla_flags()
    options = make_kernel_options(ap, args.kernel_options)

    import jax

    import jaxint8

    dev = jax.devices()[0]
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out = args.out or os.path.join(OUT_DIR, f"layer-{dev.device_kind.replace(' ', '_')}-{date[:10]}.json")
    writable_dir(ap, "--out", out)
    meta = {"device": dev.device_kind, "date": date, "command": " ".join([sys.executable] + sys.argv),
            "jax": jax.__version__, "jaxint8": jaxint8.__version__, "cuda_kernels": jaxint8.BUILT_WITH_CUDA,
            "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "kernel_options": options_dict(options), "methods": args.methods,
            "timing": "per call = median device-timeline span of one execution of a jitted program "
                      "of R distinct-input calls / R (see benchmarks/timeline.py); wall time if no GPU"}
    rows = []
    with jaxint8.kernel_options(options):
        for h, o in args.shapes:
            for s in args.tokens:
                r = bench_case(h, o, s, args.reps, args.methods, args.calls)
                rows.append(r)
                print(f"{h}->{o} s={s} ({r['timing']} time): " + ", ".join(
                    f"{m} {r[m] * 1e6:.1f}us" for m in args.methods + ["quant", "gemm"] if m in r), flush=True)
                with open(out, "w") as f:  # after every case, so a cut-short run keeps its rows
                    json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"\nwrote {out}")
    if not args.no_plot:
        png = args.plot or os.path.splitext(out)[0] + ".png"
        print(f"wrote {png}" if plot(rows, png, dev.device_kind) else MATPLOTLIB_MISSING)
    print(f"device: {dev.device_kind}; times in us per call; '<method> x' = speed-up vs XLA bf16; "
          f"kernel options: {meta['kernel_options'] or 'automatic'}")
    print(fmt_table(rows, args.methods))


if __name__ == "__main__":
    main()
