"""Per-kernel GPU times of the jaxint8 ops, for `ncu` (no timing of its own).

  ncu --clock-control none --metrics gpu__time_duration.sum --csv \\
      python benchmarks/profile_kernels.py > prof.csv
  python benchmarks/profile_kernels.py --summarize prof.csv

Runs quantize_activations + int8_matmul (threshold 6 with 6 planted outlier columns, and 0)
for 5120->20480 (or --shapes) at several token counts, 3 times each, each case between NVTX-free
marker kernels (a tiny jnp op with a distinctive size) so the summary can split the cases.
"""

import argparse
import collections
import csv
import sys

SHAPES = [(5120, 20480)]
TOKENS = [1, 16, 128, 1024, 4096]


def run(shapes, tokens):
    import jax
    import jax.numpy as jnp
    import jaxint8
    from jaxint8 import primitives

    for h, o in shapes:
        w = 0.02 * jax.random.normal(jax.random.key(0), (h, o), jnp.float32)
        qw = jaxint8.quantize_weight(w)
        for s in tokens:
            x = jax.random.normal(jax.random.key(s), (s, h), jnp.float32)
            x = x.at[:, jnp.arange(6) * 97].multiply(30.0).astype(jnp.bfloat16)
            for thr in (6.0, 0.0):
                f = jax.jit(lambda x, qw, thr=thr: primitives.int8_matmul(
                    *primitives.quantize_activations(x, thr)[:2], x,
                    *primitives.quantize_activations(x, thr)[2:], qw.qweight, qw.scale))
                jax.block_until_ready(f(x, qw))
                print(f"CASE h={h} o={o} s={s} thr={thr}", file=sys.stderr, flush=True)
                for _ in range(3):
                    jax.block_until_ready(f(x, qw))


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
    a = ap.parse_args()
    if a.summarize:
        summarize(a.summarize)
    else:
        run([tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")],
            [int(t) for t in a.tokens.split(",")])
