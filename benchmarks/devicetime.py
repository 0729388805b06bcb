"""GPU-side timing from a JAX profiler trace (shared by layer.py and timeline.py).

A jitted program's wall time includes a fixed cost per execution (dispatch, first launch, final
sync; measured 0.3-0.6 ms on an H100 with jax 0.11.2, and noisy) that a layer inside a model
does not pay per call. The device timeline does not have it: the span of one execution, from
its first kernel's start to its last kernel's end, holds the kernels and the launch gaps between
them (so a host-bound custom call still shows), nothing else.
"""

from __future__ import annotations

import collections
import glob
import os
import statistics
import tempfile
import time

import jax

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
