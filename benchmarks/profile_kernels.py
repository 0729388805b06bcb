"""Per-kernel GPU times of the jaxint8 ops under Nsight Compute (ncu); no timing of its own.

What it does: runs the LLM.int8() ops (threshold 6 with 6 planted outlier columns, and
threshold 0; ``--planted`` sets the column counts) at 5120->20480 (or ``--shapes``) and several
token counts, ``--repeats`` times each,
so that ``ncu`` can time every kernel launch; ``--summarize`` turns ncu's CSV into the median
time per (kernel, grid). ``--op`` picks the call: ``fused`` (``llm_int8_matmul``, one custom
call; at one token the one-token GEMV), ``chain`` (``quantize_activations`` then
``int8_matmul``, the path of sharded layouts) or ``group3`` (``llm_int8_matmul_group`` over the
weight's columns split in three, a model's q/k/v). ``--kernel-options`` pins the kernels
(``jaxint8.KernelOptions`` fields). For kernel time vs wall time without ncu, see
``benchmarks/timeline.py``. ``benchmarks/gpu_check.sh`` runs this in its "profile" phase.

Usage (GPU machine, extension built)::

    ncu --clock-control none --metrics gpu__time_duration.sum --csv \\
        python benchmarks/profile_kernels.py > prof.csv
    python benchmarks/profile_kernels.py --summarize prof.csv

    ncu --clock-control none --metrics gpu__time_duration.sum --csv \\
        python benchmarks/profile_kernels.py --kernel-options gemm=tiled > prof-tiled.csv

With more metrics than the time, ``--summarize`` prints one row per launch with every metric,
e.g. registers and local-memory (spill) traffic of every kernel of a call, 6 outlier columns
against none (a threshold of 1e9 runs the same kernels with no outlier)::

    ncu --clock-control none -c 40 --csv --metrics gpu__time_duration.sum,\
launch__registers_per_thread,l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum \
        python benchmarks/profile_kernels.py --tokens 512 --thresholds 6,1e9 --repeats 1 > prof.csv

Hardware counters of one kernel (stall reasons, DRAM throughput), e.g. the one-token GEMV::

    ncu --clock-control none -k regex:token_gemv -c 2 --section SpeedOfLight \\
        --section WarpStateStats python benchmarks/profile_kernels.py --op fused --tokens 1 \\
        --thresholds 6 --repeats 1
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layer  # noqa: E402  (argument types; no jax import)

SHAPES = [(5120, 20480)]
TOKENS = [1, 16, 128, 1024, 4096]


def op_fn(op: str, thr: float):
    """f(x, weights) for --op: the fused target, the three-primitive chain, or the grouped one."""
    import jaxint8
    from jaxint8 import primitives

    if op == "chain":
        def chain(x, qws):
            (qw,) = qws
            q = primitives.quantize_activations(x, thr)
            return primitives.int8_matmul(*q[:2], x, *q[2:], qw.qweight, qw.scale)
        return chain
    if op == "fused":
        return lambda x, qws: jaxint8.llm_int8_matmul(x, qws[0], threshold=thr)
    return lambda x, qws: jaxint8.llm_int8_matmul_group(x, qws, threshold=thr)


def run(shapes, tokens, op, thresholds, repeats, planted):
    import jax
    import jax.numpy as jnp

    import jaxint8

    for h, o in shapes:
        w = 0.02 * jax.random.normal(jax.random.key(0), (h, o), jnp.float32)
        parts = 3 if op == "group3" else 1
        qws = tuple(jaxint8.quantize_weight(p) for p in jnp.split(w, parts, axis=1))
        for s in tokens:
            for k in planted:
                # N(0, 1) clipped below the threshold, k columns scaled by 30 (the outliers).
                x = jnp.clip(jax.random.normal(jax.random.key(s), (s, h), jnp.float32), -5.5, 5.5)
                x = x.at[:, (jnp.arange(k) * 97) % h].multiply(30.0).astype(jnp.bfloat16)
                for thr in thresholds:
                    f = jax.jit(op_fn(op, thr))
                    jax.block_until_ready(f(x, qws))
                    print(f"CASE h={h} o={o} s={s} planted={k} thr={thr} op={op}", file=sys.stderr, flush=True)
                    for _ in range(repeats):
                        jax.block_until_ready(f(x, qws))


def _kernel_rows(path):
    """(launch id, short kernel name, grid, metric, value) of the jaxint8 / CUTLASS kernels in an ncu CSV."""
    with open(path) as f:
        lines = [line for line in f if line.startswith('"')]
    for r in csv.DictReader(lines):
        name = r.get("Kernel Name", "")
        if not any(t in name for t in ("jaxint8", "cutlass", "gather", "unnamed>::")):
            continue
        value = float(r["Metric Value"].replace(",", "") or "nan")
        if r.get("Metric Name") == "gpu__time_duration.sum":  # always in us
            value *= {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(
                r.get("Metric Unit", ""), 1e-3)
        short = name.split("(")[0].replace("jaxint8::<unnamed>::", "").replace("void ", "").replace("unnamed>::", "")[:48]
        yield r.get("ID", ""), short, r["Grid Size"], r["Metric Name"], value


def summarize(path):
    """Median us per (kernel, grid) of the jaxint8 / CUTLASS kernels in an ncu CSV; when the CSV
    has further metrics (e.g. registers, local-memory bytes), one row per launch with every metric."""
    rows = list(_kernel_rows(path))
    if not rows:
        print(f"{path}: no jaxint8 kernel times (expected ncu --metrics gpu__time_duration.sum --csv output)")
        return
    metrics = list(dict.fromkeys(m for *_, m, _ in rows))
    if metrics != ["gpu__time_duration.sum"]:
        launches = collections.OrderedDict()
        for lid, short, grid, metric, v in rows:
            launches.setdefault((lid, short, grid), {})[metric] = v
        print("  ".join(["id", "kernel", "grid"] + metrics))
        for (lid, short, grid), vals in launches.items():
            print("  ".join([lid, short, grid] + [f"{vals.get(m, float('nan')):.6g}" for m in metrics]))
        return
    out = collections.OrderedDict()
    for _, short, grid, _, v in rows:
        out.setdefault((short, grid), []).append(v)
    for (short, grid), vs in out.items():
        vs = sorted(vs)
        print(f"{vs[len(vs) // 2]:9.1f} us  n={len(vs):<3} {grid:<14} {short}")


def _nonnegative_list(text, convert, kind, example):
    """'a,b,...' -> [convert(a), convert(b), ...], every value >= 0, else an argparse error."""
    try:
        values = [convert(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"invalid {kind} list value: {text!r} ({example})")
    return values


def float_list(text):
    return _nonnegative_list(text, float, "float", "comma-separated thresholds >= 0, e.g. 6,0")


def count_list(text):
    return _nonnegative_list(text, int, "count", "comma-separated integers >= 0, e.g. 0,6")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summarize", metavar="CSV", help="print the median time per kernel of an ncu CSV")
    ap.add_argument("--tokens", type=layer.int_list, default=TOKENS, metavar="N,...",
                    help="default " + ",".join(map(str, TOKENS)))
    ap.add_argument("--shapes", type=layer.shape_list, default=SHAPES, metavar="INxOUT,...",
                    help="default 5120x20480")
    ap.add_argument("--op", choices=("fused", "chain", "group3"), default="fused")
    ap.add_argument("--thresholds", type=float_list, default=[6.0, 0.0], metavar="T,...", help="default 6,0")
    ap.add_argument("--planted", type=count_list, default=[6], metavar="K,...",
                    help="planted outlier columns per case (default 6); 0,6 at one threshold compares the "
                         "same kernels with and without outliers on activations of the same magnitude")
    ap.add_argument("--repeats", type=layer.positive_int, default=3)
    ap.add_argument("--kernel-options", type=layer.kernel_options_arg, default={}, metavar="FIELD=VALUE,...",
                    help="jaxint8.KernelOptions, e.g. gemm=tiled (default automatic)")
    args = ap.parse_args(argv)
    if args.summarize:
        if not os.path.isfile(args.summarize):
            sys.exit(f"{ap.prog}: error: {args.summarize}: no such file")
        summarize(args.summarize)
        return
    if args.op == "group3" and any(o % 3 for _, o in args.shapes):
        ap.error("--op group3 needs out features divisible by 3")
    options = layer.make_kernel_options(ap, args.kernel_options)
    import jaxint8

    with jaxint8.kernel_options(options):
        run(args.shapes, args.tokens, args.op, args.thresholds, args.repeats, args.planted)


if __name__ == "__main__":
    main()
