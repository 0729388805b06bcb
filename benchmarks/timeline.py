"""Where the time of a layer call goes: GPU time per kernel vs wall time, from a JAX profiler trace.

A jitted program's wall time includes a fixed cost per execution (dispatch, first launch, final
sync: 0.3-0.6 ms on an H100 with jax 0.11.2, and noisy) that a layer inside a model does not pay
per call. The device timeline does not have it: the span of one execution, from its first
kernel's start to its last kernel's end, holds the kernels and the launch gaps between them (so
a host-bound custom call still shows), nothing else. ``benchmarks/layer.py`` and
``benchmarks/model.py`` time with :func:`trace_programs` from this file.

As a command, for each (shape, tokens, method) this runs layer.py's program (R calls on R
distinct inputs in one jitted program), measures the wall time per call (T / R), traces a few
executions and prints per call: the device span (what layer.py reports), the GPU busy time (union
of kernel intervals), the idle share (launch gaps, host work of custom calls) and the longest
kernels; ``--gaps`` adds the largest idle gaps of one execution. busy ~= span: kernel-bound;
busy << span: host-bound. Needs a GPU (on CPU only the wall time is printed).

Usage::

    python benchmarks/timeline.py --shapes 5120x20480 --tokens 1,128,1024 --methods bf16,jaxint8
    python benchmarks/timeline.py --tokens 16 --kernel-options decode=mma --gaps
    XLA_FLAGS=--xla_gpu_enable_command_buffer= python benchmarks/timeline.py   # command buffers off
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import statistics
import sys
import tempfile
import time

EXEC_GAP_S = 0.002  # idle time put between traced executions, so they can be told apart


def device_events(trace_dir):
    """(kernel name, start_ns, duration_ns) of every event on a GPU stream line, by start."""
    from jax._src.profiler import ProfileData

    events = []
    for path in glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True):
        for plane in ProfileData.from_file(path).planes:
            if not plane.name.startswith("/device:GPU"):
                continue
            for line in plane.lines:
                if line.name.startswith("Stream"):
                    events += [(e.name, e.start_ns, e.duration_ns) for e in line.events]
    return sorted(events, key=lambda e: e[1])


def split_executions(events, min_gap_ns=0.5 * EXEC_GAP_S * 1e9):
    """Groups time-sorted events into executions: a new one starts after an idle gap > min_gap_ns."""
    groups, end = [], None
    for ev in events:
        if end is None or ev[1] - end > min_gap_ns:
            groups.append([])
        groups[-1].append(ev)
        end = ev[1] + ev[2] if end is None else max(end, ev[1] + ev[2])
    return groups


def span_ns(group):
    return max(s + d for _, s, d in group) - min(s for _, s, _ in group)


def busy_ns(events):
    """Length of the union of the event intervals."""
    total, end = 0.0, -1.0
    for _, start, dur in sorted(events, key=lambda e: e[1]):
        stop = start + dur
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def largest_gaps(group, n=5):
    """The n longest idle intervals of one execution: (gap_ns, offset_ns from the execution's
    start, kernel before, kernel after), longest first."""
    ev = sorted(group, key=lambda e: e[1])
    t0, end, before, gaps = ev[0][1], ev[0][1] + ev[0][2], ev[0][0], []
    for name, start, dur in ev[1:]:
        if start > end:
            gaps.append((start - end, end - t0, before, name))
        if start + dur >= end:
            end, before = start + dur, name
    return sorted(gaps, reverse=True)[:n]


def trace_programs(programs, calls, execs, exec_gap_s=EXEC_GAP_S):
    """Runs each ``name -> (fn, args)`` ``execs`` times under the profiler (already warmed up).

    Returns ``name -> {"span": s/call, "busy": s/call, "kernels": {name: s/call},
    "launches": {name: launches/call}, "gaps": [...]}``
    from the device timeline (median span over the executions, divided by ``calls`` per
    execution; "gaps": ``largest_gaps`` of the execution with the median span), or None when the
    trace holds no GPU events or the executions cannot be told apart (``exec_gap_s``: idle time
    between executions; raise it for programs with long idle gaps inside).
    """
    import jax

    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for fn, args in programs.values():
                for _ in range(execs):
                    jax.block_until_ready(fn(*args))
                    time.sleep(exec_gap_s)
        groups = split_executions(device_events(d), 0.5 * exec_gap_s * 1e9)
    if len(groups) != execs * len(programs):
        return None
    out = {}
    for i, name in enumerate(programs):
        mine = groups[i * execs:(i + 1) * execs]
        kernels = collections.defaultdict(float)
        launches = collections.defaultdict(float)
        for group in mine:
            for kname, _, dur in group:
                kernels[kname] += dur * 1e-9 / (execs * calls)
                launches[kname] += 1.0 / (execs * calls)
        by_span = sorted(mine, key=span_ns)
        out[name] = {
            "gaps": largest_gaps(by_span[len(by_span) // 2]),
            "span": statistics.median(span_ns(g) for g in mine) * 1e-9 / calls,
            "busy": statistics.median(busy_ns(g) for g in mine) * 1e-9 / calls,
            "kernels": dict(kernels),
            "launches": dict(launches),
        }
    return out


# ---------------------------------------------------------------------------------------------
# command line


def short(name, width=60):
    name = name.replace("void ", "").replace("jaxint8::cuda::", "").replace("(anonymous namespace)::", "")
    return name[:width]


def profile_case(layer, h, o, s, method, execs):
    """(wall us, span us, busy us, {kernel: us}, gaps) per call of one method at one shape."""
    r = layer.n_rotate(s)
    program = layer.program(method, h, o, s, r)
    wall = layer.batch_time(*program, 7) / r
    dev = trace_programs({method: program}, r, execs)
    if dev is None:
        return wall * 1e6, float("nan"), float("nan"), {}, []
    d = dev[method]
    return (wall * 1e6, d["span"] * 1e6, d["busy"] * 1e6, {k: t * 1e6 for k, t in d["kernels"].items()},
            d["gaps"])


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import layer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=layer.shape_list, default=[(5120, 20480)],
                    help="comma-separated INxOUT (default 5120x20480)")
    ap.add_argument("--tokens", type=layer.int_list, default=[1, 16, 128, 1024],
                    help="comma-separated token counts (default 1,16,128,1024)")
    ap.add_argument("--methods", type=layer.method_list, default=["bf16", "jaxint8"],
                    help=f"comma-separated, from {', '.join(layer.METHODS)} (default bf16,jaxint8)")
    ap.add_argument("--kernel-options", type=layer.kernel_options_arg, default={}, metavar="FIELD=VALUE,...",
                    help="jaxint8.KernelOptions for the jaxint8 methods, e.g. gemm=tiled,decode=mma")
    ap.add_argument("--execs", type=layer.positive_int, default=3, help="traced executions per case")
    ap.add_argument("--gaps", action="store_true", help="print the largest idle gaps of one execution")
    args = ap.parse_args(argv)
    layer.setup_xla_flags()
    options = layer.make_kernel_options(ap, args.kernel_options)

    import jax
    import jaxint8

    print(f"device: {jax.devices()[0].device_kind}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}; "
          f"kernel options: {layer.options_dict(options) or 'automatic'}")
    rows = []
    with jaxint8.kernel_options(options):
        for h, o in args.shapes:
            for s in args.tokens:
                for method in args.methods:
                    wall, span, busy, kernels, gaps = profile_case(layer, h, o, s, method, args.execs)
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
