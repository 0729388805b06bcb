"""Per-kernel GPU times of the jaxint8 ops, for `ncu` (no timing of its own).

  ncu --clock-control none --metrics gpu__time_duration.sum --csv \\
      python benchmarks/profile_kernels.py > prof.csv
  python benchmarks/profile_kernels.py --summarize prof.csv

Runs quantize_activations + int8_matmul (threshold 6 with 6 planted outlier columns, and 0)
for 5120->20480 (or --shapes) at several token counts, 3 times each, each case between NVTX-free
marker kernels (a tiny jnp op with a distinctive size) so the summary can split the cases.
``--op fused`` runs llm_int8_matmul (the fused target: at one token the one-token GEMV),
``--op group3`` llm_int8_matmul_group with the weight's columns split into three weights (the
q/k/v shape of a model).

Hardware counters of one kernel (stall reasons, DRAM throughput), e.g. the one-token GEMV:

  ncu --clock-control none -k regex:token_gemv -c 2 --section SpeedOfLight \
      --section WarpStateStats python benchmarks/profile_kernels.py --op fused --tokens 1 \
      --thresholds 6 --repeats 1
"""

import argparse
import collections
import csv
import sys

SHAPES = [(5120, 20480)]
TOKENS = [1, 16, 128, 1024, 4096]


def op_fn(op: str, thr: float):
    """f(x, weights) for --op: the three-kernel chain, the fused target, or the grouped one."""
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


def run(shapes, tokens, op="chain", thresholds=(6.0, 0.0), repeats=3):
    import jax
    import jax.numpy as jnp
    import jaxint8

    for h, o in shapes:
        w = 0.02 * jax.random.normal(jax.random.key(0), (h, o), jnp.float32)
        parts = 3 if op == "group3" else 1
        if o % parts:
            raise SystemExit(f"--op group3 needs out features divisible by 3, got {h}x{o}")
        qws = tuple(jaxint8.quantize_weight(p) for p in jnp.split(w, parts, axis=1))
        for s in tokens:
            x = jax.random.normal(jax.random.key(s), (s, h), jnp.float32)
            x = x.at[:, jnp.arange(6) * 97].multiply(30.0).astype(jnp.bfloat16)
            for thr in thresholds:
                f = jax.jit(op_fn(op, thr))
                jax.block_until_ready(f(x, qws))
                print(f"CASE h={h} o={o} s={s} thr={thr} op={op}", file=sys.stderr, flush=True)
                for _ in range(repeats):
                    jax.block_until_ready(f(x, qws))


def summarize(path):
    rows = []
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") == "gpu__time_duration.sum":
            rows.append((r["Kernel Name"], r["Grid Size"], float(r["Metric Value"].replace(",", "")), r.get("Metric Unit", "")))
    # Consecutive launches of the same kernel and grid form one group (one case, repeated).
    groups = []
    for name, grid, v, unit in rows:
        if not any(t in name for t in ("jaxint8", "cutlass", "gather")):
            continue
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
        short = name.split("(")[0].replace("jaxint8::<unnamed>::", "").replace("void ", "")[:48]
        groups.append((short, grid, v * scale))
    out = collections.OrderedDict()
    for i, (short, grid, us) in enumerate(groups):
        out.setdefault((short, grid), []).append(us)
    for (short, grid), vs in out.items():
        vs = sorted(vs)
        print(f"{vs[len(vs) // 2]:9.1f} us  n={len(vs):<3} {grid:<14} {short}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--summarize")
    ap.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    ap.add_argument("--shapes", default=",".join(f"{h}x{o}" for h, o in SHAPES))
    ap.add_argument("--op", choices=("chain", "fused", "group3"), default="chain")
    ap.add_argument("--thresholds", default="6,0")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.summarize:
        summarize(a.summarize)
    else:
        run([tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")],
            [int(t) for t in a.tokens.split(",")], a.op,
            tuple(float(t) for t in a.thresholds.split(",")), a.repeats)
