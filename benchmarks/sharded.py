"""Tensor-parallel throughput of the LLM.int8 matmul: a layer and an MLP block at TP = 1, 2, 4.

What it measures: for each tensor-parallel degree (a 1-D ``model`` mesh over the first TP
devices):

* ``col``   layer ``x [T, h] @ W [h, f]``, W column parallel (output features split): no comm.
* ``row``   layer ``x [T, f] @ W [f, h]``, W row parallel (input features split, x split the
            same way): all-reduce max of row scales ``[T]`` + all-reduce sum ``[T, h]`` f32.
* ``mlp``   Megatron block ``down(gelu(up(x)))``, up column parallel, down row parallel: the
            same two all-reduces, once per block.

each for LLM.int8 (``jaxint8.llm_int8_matmul``, threshold 6, ``--outliers`` outlier columns
planted in x) and for the bf16 XLA matmul with the same shardings.

How: each case is one compiled program; after ``--warmup`` calls, the median wall-clock time of
``--iters`` calls (each waited for) is the time per call. Reported: time per call, tokens/s,
int8/bf16 ratio (same process), speedup over TP=1 and scaling efficiency (speedup / TP), the
collective bytes per device read from the compiled HLO, and whether any collective moves the
int8 weight (it never should: the script exits 1 if one does). Table on stdout, JSON in
``benchmarks/out/sharded_<platform>_<n>dev.json`` (or ``--out``).

Usage::

    python benchmarks/sharded.py                     # GPUs: h=8192, f=28672, T in 1024 4096
    python benchmarks/sharded.py --tokens 1024 --hidden 5120 --ffn 20480
    python benchmarks/sharded.py --cpu --quick       # smoke test on 4 virtual CPU devices

On a machine with 2-4 GPUs, with the CUDA extension built (``PHASES=build bash
benchmarks/gpu_check.sh``), the whole multi-GPU check is::

    pytest -q tests/test_sharding.py                  # every layout vs 1 GPU, no int8 collectives
    python benchmarks/multihost.py --launch 2         # 2 processes x 1 GPU under jax.distributed
    python benchmarks/sharded.py                      # this benchmark
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer import OUT_DIR, positive_int, writable_dir  # noqa: E402  (no jax import)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tokens", type=positive_int, nargs="+", default=[1024, 4096])
    ap.add_argument("--hidden", type=positive_int, default=8192)
    ap.add_argument("--ffn", type=positive_int, default=28672)
    ap.add_argument("--tp", type=positive_int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--iters", type=positive_int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--outliers", type=int, default=8, help="outlier columns planted in x")
    ap.add_argument("--cpu", action="store_true", help="run on 4 virtual CPU devices")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few iterations")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/out/sharded_<platform>_<n>dev.json)")
    args = ap.parse_args(argv)
    if args.out:
        writable_dir(ap, "--out", args.out)
    if args.quick:
        args.tokens, args.hidden, args.ffn, args.iters, args.warmup = [128], 256, 512, 3, 1
    if args.warmup < 0:
        ap.error(f"argument --warmup: must be >= 0, got {args.warmup}")
    if not 0 <= args.outliers <= min(args.hidden, args.ffn):
        ap.error(f"argument --outliers: must be between 0 and the feature count "
                 f"({min(args.hidden, args.ffn)}), got {args.outliers}")
    return args


def main(argv=None):
    args = parse(argv)
    if args.cpu:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_force_host_platform_device_count=4")
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import jax.numpy as jnp
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

    import jaxint8
    from jaxint8.sharding import hlo_collectives, weight_collectives

    devices = jax.devices()
    platform = devices[0].platform
    tps = [t for t in args.tp if t <= len(devices)]
    skipped = [t for t in args.tp if t > len(devices)]
    if skipped:
        print(f"# only {len(devices)} devices: skipping TP={skipped}", file=sys.stderr)
    h, f = args.hidden, args.ffn

    def timeit(fn, *a):
        for _ in range(args.warmup):
            jax.block_until_ready(fn(*a))
        ts = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*a))
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    rows = []
    for tp in tps:
        mesh = jax.make_mesh((tp,), ("model",), axis_types=(AxisType.Auto,),
                             devices=devices[:tp])
        ns = lambda *spec: NamedSharding(mesh, P(*spec))  # noqa: E731

        def make_int8(key, out_f, in_f, spec):
            """Random int8 weight [out, in] + scales, created directly in their sharding."""
            def mk(k):
                k1, k2 = jax.random.split(k)
                q = jax.random.randint(k1, (out_f, in_f), -127, 128, jnp.int32).astype(jnp.int8)
                sc = jax.random.uniform(k2, (out_f,), jnp.float32, 0.01, 0.05)
                return q, sc
            o_spec = P(spec[0])
            return jax.jit(mk, out_shardings=(NamedSharding(mesh, spec),
                                              NamedSharding(mesh, o_spec)))(key)

        def make_bf16(key, in_f, out_f, spec):
            return jax.jit(lambda k: (0.02 * jax.random.normal(k, (in_f, out_f))).astype(
                jnp.bfloat16), out_shardings=NamedSharding(mesh, spec))(key)

        keys = jax.random.split(jax.random.key(0), 8)
        up_q, up_s = make_int8(keys[0], f, h, P("model", None))       # column parallel
        down_q, down_s = make_int8(keys[1], h, f, P(None, "model"))   # row parallel
        up_w = make_bf16(keys[2], h, f, P(None, "model"))
        down_w = make_bf16(keys[3], f, h, P("model", None))

        def int8_mm(x, q, s):
            return jaxint8.llm_int8_matmul(x, jaxint8.Int8Weight(q, s), threshold=6.0)

        cases = {
            "col": (lambda x, q, s: int8_mm(x, q, s), lambda x, w: x @ w,
                    h, (up_q, up_s), up_w, ns(), 2 * h * f),
            "row": (lambda x, q, s: int8_mm(x, q, s), lambda x, w: x @ w,
                    f, (down_q, down_s), down_w, ns(None, "model"), 2 * h * f),
            "mlp": (lambda x, uq, us, dq, ds: int8_mm(jax.nn.gelu(int8_mm(x, uq, us)), dq, ds),
                    lambda x, uw, dw: jax.nn.gelu(x @ uw) @ dw,
                    h, (up_q, up_s, down_q, down_s), (up_w, down_w), ns(), 4 * h * f),
        }
        for tokens in args.tokens:
            for name, (fi8, fbf, in_f, wi8, wbf, x_sh, flops_per_tok) in cases.items():
                def mkx(k, in_f=in_f):
                    x = jax.random.normal(k, (tokens, in_f), jnp.float32)
                    cols = jnp.arange(args.outliers) * (in_f // max(args.outliers, 1))
                    x = x.at[:, cols].multiply(4.0).at[0, cols].set(8.0)
                    return x.astype(jnp.bfloat16)
                x = jax.jit(mkx, out_shardings=x_sh)(keys[4])
                wbf_t = wbf if isinstance(wbf, tuple) else (wbf,)
                j8 = jax.jit(fi8).lower(x, *wi8).compile()
                jb = jax.jit(fbf).lower(x, *wbf_t).compile()
                t8, tb = timeit(j8, x, *wi8), timeit(jb, x, *wbf_t)
                hlo = j8.as_text()
                comm = sum(c["bytes"] for c in hlo_collectives(hlo))
                rows.append(dict(tp=tp, case=name, tokens=tokens, hidden=h, ffn=f,
                                 int8_ms=1e3 * t8, bf16_ms=1e3 * tb,
                                 int8_tok_s=tokens / t8, bf16_tok_s=tokens / tb,
                                 int8_tflops=flops_per_tok * tokens / t8 / 1e12,
                                 comm_bytes_per_device=comm,
                                 weight_moved=bool(weight_collectives(hlo))))
                print(f"# tp={tp} {name} T={tokens}: int8 {1e3 * t8:.3f} ms, bf16 "
                      f"{1e3 * tb:.3f} ms, comm {comm} B", file=sys.stderr, flush=True)

    # speedup / efficiency vs TP=1
    base = {(r["case"], r["tokens"]): r for r in rows if r["tp"] == 1}
    for r in rows:
        b = base.get((r["case"], r["tokens"]))
        if b:
            r["int8_speedup"] = b["int8_ms"] / r["int8_ms"]
            r["int8_efficiency"] = r["int8_speedup"] / r["tp"]
            r["bf16_speedup"] = b["bf16_ms"] / r["bf16_ms"]
            r["bf16_efficiency"] = r["bf16_speedup"] / r["tp"]

    hdr = (f"{'case':5s} {'T':>6s} {'TP':>3s} {'int8 ms':>9s} {'bf16 ms':>9s} {'int8/bf16':>9s} "
           f"{'int8 speedup':>12s} {'eff':>5s} {'bf16 speedup':>12s} {'eff':>5s} "
           f"{'comm MB':>8s} {'W moved':>7s}")
    print(f"\nLLM.int8 tensor parallel on {len(devices)} x {devices[0].device_kind} "
          f"(h={h}, ffn={f}, jax {jax.__version__})")
    print(hdr)
    print("-" * len(hdr))
    for r in sorted(rows, key=lambda r: (r["case"], r["tokens"], r["tp"])):
        sp = r.get("int8_speedup", float("nan"))
        print(f"{r['case']:5s} {r['tokens']:6d} {r['tp']:3d} {r['int8_ms']:9.3f} "
              f"{r['bf16_ms']:9.3f} {r['bf16_ms'] / r['int8_ms']:8.2f}x "
              f"{sp:11.2f}x {r.get('int8_efficiency', float('nan')):5.2f} "
              f"{r.get('bf16_speedup', float('nan')):11.2f}x "
              f"{r.get('bf16_efficiency', float('nan')):5.2f} "
              f"{r['comm_bytes_per_device'] / 1e6:8.3f} {str(r['weight_moved']):>7s}")
    out = args.out or os.path.join(OUT_DIR, f"sharded_{platform}_{len(devices)}dev.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump({"device": devices[0].device_kind, "n_devices": len(devices),
                   "jax": jax.__version__, "rows": rows}, fh, indent=1)
    print(f"\nwrote {out}")
    return 0 if not any(r["weight_moved"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
