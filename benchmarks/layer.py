"""Layer benchmark: jaxint8 LLM.int8() vs XLA bf16 and XLA int8 on one GPU, one process.

Shapes (in -> out): 4096->16384, 5120->20480, 12288->49152 and their down-projections, times
tokens {1, 16, 128, 1024, 4096}. Methods:

* ``bf16``     XLA ``x @ w`` in bfloat16 (f32 accumulation, cuBLAS).
* ``i8dot``    XLA ``dot_general(int8, int8, preferred_element_type=int32)`` on pre-quantized
               operands, then the row x column dequant to bf16 (XLA fuses that elementwise).
* ``jaxint8``  ``jaxint8.llm_int8_matmul(x, W8, threshold=6)``; x has 6 planted outlier columns.
* ``jaxint8_t0`` the same with threshold 0 (no decomposition).
* ``jaxint8_g3`` (opt-in) ``jaxint8.llm_int8_matmul_group`` of x with the weight's columns split
               into three weights (a model's grouped q/k/v), threshold 6; out features % 3 == 0.

Timing: a jitted program runs R calls (32 at <= 16 tokens, else 16; ``--calls``) on R distinct
activation arrays (rotating inputs, so nothing is served from L2 between calls) and returns all
outputs. After warm-up, REPS executions of each method's program are traced with the JAX
profiler, and the time per call is the median over the executions of the device-timeline span
(first kernel start to last kernel end) / R
(benchmarks/devicetime.py): kernels plus the launch gaps between them, without the fixed
per-execution cost of dispatch and sync (0.3-0.6 ms here, and noisy) that a layer inside a model
does not pay per call. The wall time per call (T(R) / R, which includes it) is kept in the JSON as
``<method>_wall``; on a machine without a GPU the wall time is all there is.
Relative error: ||y - y_f32|| / ||y_f32||, y_f32 = f32 matmul (precision HIGHEST) of the
unquantized inputs, on DESIGN §1 data (x ~ N(0,1) with 6 outlier columns of magnitude 20-60,
w ~ N(0, 0.02)).

From the same trace, jaxint8's time per call splits into the quantization kernels (``quant``:
column absmax + row pass, or the fused quantization kernel at 17-512 tokens, which also stages
the outliers) and the GEMM (``gemm``: the sm90 outlier gather, when it runs, + the GEMM), so
misses can be attributed; ``jaxint8_kernels`` in the JSON has every kernel's time.

Usage: python benchmarks/layer.py [--quick] [--shapes 5120x20480,...] [--tokens 1,16]
       [--out benchmarks/results/layer-<device>-<date>.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import devicetime  # noqa: E402

# XLA's dot-merger pass would merge the R independent products that share the weight into one
# larger GEMM (measured: "bf16 at 1 token" then reads the weight once for 32 calls). Disable it
# so that every call is one product, as in a model.
if "dot-merger" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_disable_hlo_passes=dot-merger").strip()

import jax
import jax.numpy as jnp
from jax import lax

import jaxint8
from jaxint8 import primitives

SHAPES = [(4096, 16384), (16384, 4096), (5120, 20480), (20480, 5120), (12288, 49152), (49152, 12288)]
TOKENS = [1, 16, 128, 1024, 4096]
METHODS = ["bf16", "i8dot", "jaxint8", "jaxint8_t0"]


def n_rotate(s):
    # Calls per program. At least 16: with fewer ops than XLA's minimum command-buffer size (5)
    # the calls run as separate thunks, and the first call of every execution then waits on host
    # launches between its kernels (measured at 1024 tokens with 4 calls: 60-90 us of idle gaps,
    # all in the first call, bf16 ~31 us; benchmarks/timeline.py --gaps). A layer in a model runs
    # in a command buffer and does not pay that per call. (Until the seventh session: 4 calls
    # at >= 1024 tokens.)
    return 32 if s <= 16 else 16


def chained(op):
    """One jitted program of R independent calls of op on R inputs (run one after the other on
    XLA's compute stream). An earlier version ordered them with optimization barriers; XLA then
    inserted copies of the inputs, which added a pass over x to every call."""
    def run(xs, *rest):
        return tuple(op(x, *rest) for x in xs)
    return jax.jit(run)


def batch_time(fn, args, reps):
    out = fn(*args)
    jax.block_until_ready(out)
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn(*args)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    del out
    return statistics.median(times)


def rel_err(y, ref):
    if isinstance(y, tuple):  # a grouped op's outputs, in column order
        y = jnp.concatenate(y, axis=-1)
    y = y.astype(jnp.float32)
    return float(jnp.linalg.norm(y - ref) / jnp.linalg.norm(ref))


def make_data(h, o, s, r, key):
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


QUANT_KERNELS = ("column_absmax", "quantize_rows", "quantize_fused", "memset", "Memset")


def bench_case(h, o, s, reps, methods, calls=None):
    r = calls or n_rotate(s)
    xs, w = make_data(h, o, s, r, jax.random.key(h * 7 + o + s))
    xs = tuple(xs)
    w_bf = w.astype(jnp.bfloat16)
    qw = jax.jit(jaxint8.quantize_weight)(w)
    ref = jnp.dot(xs[0].astype(jnp.float32), w, precision=lax.Precision.HIGHEST)
    res = {"h": h, "o": o, "s": s, "rotate": r}

    # XLA int8: per-row / per-column absmax quantization outside the timed region.
    def quant_rows(x):
        x = x.astype(jnp.float32)
        sc = jnp.max(jnp.abs(x), axis=1, keepdims=True)
        q = jnp.clip(jnp.round(x * (127.0 / jnp.where(sc == 0, 1.0, sc))), -127, 127).astype(jnp.int8)
        return q, sc[:, 0]

    def i8dot(xs_q, wq, ws):
        xq, xs_ = xs_q
        acc = lax.dot_general(xq, wq, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)
        return (acc.astype(jnp.float32) * (xs_[:, None] * ws[None, :] / 16129.0)).astype(jnp.bfloat16)

    ops = {
        "bf16": (lambda x, w: jnp.dot(x, w), (w_bf,)),
        "i8dot": (i8dot, (qw.qweight, qw.scale)),
        "jaxint8": (lambda x, qw: jaxint8.llm_int8_matmul(x, qw, threshold=6.0), (qw,)),
        "jaxint8_t0": (lambda x, qw: jaxint8.llm_int8_matmul(x, qw, threshold=0.0), (qw,)),
    }
    if "jaxint8_g3" in methods:
        if o % 3:
            raise SystemExit(f"method jaxint8_g3 needs out features divisible by 3, got {h}x{o}")
        qws = tuple(jax.jit(jaxint8.quantize_weight)(p) for p in jnp.split(w, 3, axis=1))
        ops["jaxint8_g3"] = (lambda x, qws: jaxint8.llm_int8_matmul_group(x, qws, threshold=6.0), (qws,))
    programs = {}
    for m in methods:
        op, rest = ops[m]
        inputs = tuple(jax.jit(quant_rows)(x) for x in xs) if m == "i8dot" else xs
        programs[m] = (chained(op), (inputs,) + rest)
        res[m + "_wall"] = batch_time(*programs[m], reps) / r   # also warms up
        res[m + "_relerr"] = rel_err(jax.jit(op)(inputs[0], *rest), ref)
    dev = devicetime.trace_programs(programs, r, reps)
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


def fmt_table(rows):
    lines = []
    hdr = (f"{'shape':>13} {'tok':>5} {'bf16 us':>8} {'i8dot':>7} {'jaxint8':>8} {'t0':>7} "
           f"{'x bf16':>6} {'t0 x':>5} {'quant':>6} {'gemm':>6} {'err bf16':>8} {'err j8':>8} {'err t0':>8}")
    lines.append(hdr)
    for r in rows:
        us = lambda k: f"{r[k] * 1e6:.1f}" if k in r else "-"
        sp = r["bf16"] / r["jaxint8"] if "jaxint8" in r and "bf16" in r else float("nan")
        sp0 = r["bf16"] / r["jaxint8_t0"] if "jaxint8_t0" in r and "bf16" in r else float("nan")
        lines.append(f"{r['h']:>6}->{r['o']:<6} {r['s']:>5} {us('bf16'):>8} {us('i8dot'):>7} "
                     f"{us('jaxint8'):>8} {us('jaxint8_t0'):>7} {sp:>6.2f} {sp0:>5.2f} {us('quant'):>6} "
                     f"{us('gemm'):>6} {r.get('bf16_relerr', float('nan')):>8.2e} "
                     f"{r.get('jaxint8_relerr', float('nan')):>8.2e} {r.get('jaxint8_t0_relerr', float('nan')):>8.2e}")
    return "\n".join(lines)


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # pragma: no cover
        return False
    shapes = sorted({(r["h"], r["o"]) for r in rows}, key=lambda t: (t[0] * t[1], t[0]))
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.2 * len(shapes), 3.4), sharey=True, squeeze=False)
    for ax, (h, o) in zip(axes[0], shapes):
        rs = sorted([r for r in rows if (r["h"], r["o"]) == (h, o)], key=lambda r: r["s"])
        toks = [r["s"] for r in rs]
        labels = {"jaxint8": "jaxint8 (t=6)", "jaxint8_t0": "jaxint8 (t=0)",
                  "i8dot": "XLA int8 (shares the weight read at <=128 tok)"}
        for m, style in (("jaxint8", "o-"), ("jaxint8_t0", "s--"), ("i8dot", "x:")):
            if all(m in r and "bf16" in r for r in rs):
                ax.plot(toks, [r["bf16"] / r[m] for r in rs], style, label=labels[m])
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{h}->{o}", fontsize=9)
        ax.set_xlabel("tokens")
    axes[0][0].set_ylabel("speed-up vs XLA bf16")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=",".join(f"{h}x{o}" for h, o in SHAPES))
    ap.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--calls", type=int, default=None,
                    help="calls (distinct inputs) per program, R; default 32 at <= 16 tokens, else 16")
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    tokens = [int(t) for t in args.tokens.split(",")]
    methods = args.methods.split(",")
    dev = jax.devices()[0]
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tag = dev.device_kind.replace(" ", "_")
    out = args.out or os.path.join(os.path.dirname(__file__), "results",
                                   f"layer-{tag}-{date[:10]}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    meta = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "device": dev.device_kind, "date": date, "command": " ".join([sys.executable] + sys.argv),
            "jax": jax.__version__, "python": platform.python_version(),
            "gemm_path_env": os.environ.get("JAXINT8_GEMM_PATH", ""),
            "timing": "per call = median device-timeline span of one execution of a jitted program "
                      "of R distinct-input calls / R (see benchmarks/devicetime.py)"}
    rows = []
    for h, o in shapes:
        for s in tokens:
            r = bench_case(h, o, s, args.reps, methods, args.calls)
            rows.append(r)
            print(f"{h}->{o} s={s} ({r['timing']} time): " + ", ".join(
                f"{m} {r[m] * 1e6:.1f}us" for m in methods + ["quant", "gemm"] if m in r), flush=True)
            with open(out, "w") as f:  # after every case, so a cut-short run keeps its rows
                json.dump({"meta": meta, "rows": rows}, f, indent=1)
    png = args.plot or out[:-5] + ".png"
    plotted = plot(rows, png)
    print(f"\nwrote {out}" + (f" and {png}" if plotted else ""))
    print(f"device: {dev.device_kind}; times in us (per call); x bf16 = speed-up of jaxint8 (threshold 6) vs XLA bf16")
    print(fmt_table(rows))


if __name__ == "__main__":
    main()
