"""Where the time of one layer call goes: GPU kernel time vs wall time, from a JAX profiler trace.

For each (shape, tokens, method) this runs the same chained program as ``benchmarks/layer.py``
(R independent calls in one jitted program), measures the wall time per call (T(R) / R), then traces a few
executions with ``jax.profiler`` and reads the device plane: the time per call of every kernel,
the device span per call (as layer.py reports it), the GPU busy time per call (union of kernel
intervals) and what is left (launch gaps, host overhead of the custom calls).
busy ~= span: kernel-bound; busy << span: host-bound.

Usage (GPU machine, after the extension is built)::

    python benchmarks/timeline.py --shapes 5120x20480 --tokens 1,128,1024 --methods bf16,jaxint8
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import devicetime  # noqa: E402
import layer  # noqa: E402  (sets XLA_FLAGS before jax is imported)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxint8  # noqa: E402

OPS = {
    "bf16": lambda x, w: jnp.dot(x, w),
    "jaxint8": lambda x, qw: jaxint8.llm_int8_matmul(x, qw, threshold=6.0),
    "jaxint8_t0": lambda x, qw: jaxint8.llm_int8_matmul(x, qw, threshold=0.0),
}


def profile_case(h, o, s, method, execs):
    r = layer.n_rotate(s)
    xs, w = layer.make_data(h, o, s, r, jax.random.key(h + o + s))
    arg = w.astype(jnp.bfloat16) if method == "bf16" else jax.jit(jaxint8.quantize_weight)(w)
    program = (layer.chained(OPS[method]), (tuple(xs), arg))
    wall = layer.batch_time(*program, 7) / r
    dev = devicetime.trace_programs({method: program}, r, execs)
    if dev is None:
        return wall * 1e6, float("nan"), float("nan"), {}, []
    d = dev[method]
    return (wall * 1e6, d["span"] * 1e6, d["busy"] * 1e6, {k: t * 1e6 for k, t in d["kernels"].items()},
            d["gaps"])


def short(name, width=60):
    name = name.replace("void ", "").replace("jaxint8::cuda::", "").replace("(anonymous namespace)::", "")
    return name[:width]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="5120x20480")
    ap.add_argument("--tokens", default="1,16,128,1024")
    ap.add_argument("--methods", default="bf16,jaxint8")
    ap.add_argument("--execs", type=int, default=3, help="traced executions per case")
    ap.add_argument("--gaps", action="store_true", help="print the largest idle gaps of one execution")
    args = ap.parse_args(argv)
    print(f"device: {jax.devices()[0].device_kind}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}")
    rows = []
    for shape in args.shapes.split(","):
        h, o = (int(v) for v in shape.split("x"))
        for s in (int(t) for t in args.tokens.split(",")):
            for method in args.methods.split(","):
                wall, span, busy, kernels, gaps = profile_case(h, o, s, method, args.execs)
                rows.append((f"{h}->{o}", s, method, wall, span, busy))
                print(f"\n{h}->{o} s={s} {method}: wall {wall:.1f} us/call, device span {span:.1f}, "
                      f"GPU busy {busy:.1f} us/call")
                for name, us in sorted(kernels.items(), key=lambda kv: -kv[1])[:6]:
                    print(f"    {us:8.1f} us  {short(name)}")
                if args.gaps:
                    print("    largest idle gaps of one execution (us, at us from its start, between):")
                    for gap, at, before, after in gaps:
                        print(f"    {gap / 1e3:8.1f} at {at / 1e3:8.1f}  {short(before, 40)} -> {short(after, 40)}")
    print(f"\n{'shape':>12} {'tok':>5} {'method':>11} {'wall us':>8} {'span us':>8} {'busy us':>8} {'idle':>6}")
    for shape, s, method, wall, span, busy in rows:
        print(f"{shape:>12} {s:>5} {method:>11} {wall:8.1f} {span:8.1f} {busy:8.1f} {1 - busy / span:6.0%}")


if __name__ == "__main__":
    main()
