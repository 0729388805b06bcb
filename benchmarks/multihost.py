"""Multi-process (multi-host) LLM.int8 matmul under ``jax.distributed``, checked against 1 device.

A correctness check, not a timing. Each process owns some devices; together they form one global
``(data, model)`` mesh. Every layout of ``docs/sharding.md`` (data, column, row, data x row) runs
on global arrays built from process-local data; the gathered result is compared with the same
computation on one local device (max |difference| <= 1e-5), and the compiled program must not
move the int8 weight through a collective. Process 0 prints ``MULTIHOST OK`` when all layouts
pass; the exit status is 0 then, 1 otherwise.

One machine, two processes (the launcher picks a free localhost port and starts both)::

    python benchmarks/multihost.py --launch 2 --cpu --local-devices 4   # 2 x 4 CPU devices
    python benchmarks/multihost.py --launch 2                           # 2 GPUs, 1 per process

Several hosts: run on every host (same coordinator, its own process id)::

    python benchmarks/multihost.py --coordinator HOST0:12355 --num-processes N --process-id I
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args):
    port = _free_port()
    procs = []
    for i in range(args.launch):
        env = dict(os.environ)
        cmd = [sys.executable, os.path.abspath(__file__), "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", str(args.launch), "--process-id", str(i),
               "--local-devices", str(args.local_devices)]
        if args.cpu:
            cmd.append("--cpu")
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
            env["JAX_PLATFORMS"] = "cpu"
        else:
            gpus = ",".join(str(i * args.local_devices + k) for k in range(args.local_devices))
            env.setdefault("CUDA_VISIBLE_DEVICES_ALL", env.get("CUDA_VISIBLE_DEVICES", ""))
            env["CUDA_VISIBLE_DEVICES"] = gpus
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    rc = 0
    deadline = time.time() + args.timeout
    for i, p in enumerate(procs):
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            print(f"process {i} timed out")
            return 1
        print(f"----- process {i} (rc={p.returncode})\n{out}", end="")
        rc = rc or p.returncode
    return rc


def worker(args):
    import jax

    if args.cpu:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)

    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

    import jaxint8
    from jaxint8.sharding import weight_collectives

    n = jax.device_count()
    pid = jax.process_index()
    print(f"process {pid}/{jax.process_count()}: {jax.local_device_count()} local of {n} devices "
          f"({jax.devices()[0].platform})", flush=True)
    model = 2 if n % 2 == 0 else 1
    # Model axis inside a process when possible (fast links), data axis across processes.
    mesh = jax.make_mesh((n // model, model), ("data", "model"),
                         axis_types=(AxisType.Auto, AxisType.Auto))

    s, h, o = 16 * n, 256, 128
    rng = np.random.default_rng(0)  # same data in every process
    x = rng.standard_normal((s, h)).astype(np.float32)
    x[3, 7] = 11.0
    x[s - 1, 200] = -9.0
    w = 0.05 * rng.standard_normal((h, o)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(o)).astype(np.float32)
    local = jax.local_devices()[0]
    with jax.default_device(local):
        q = jaxint8.quantize_weight(jnp.asarray(w))
        qw, sc = np.asarray(q.qweight), np.asarray(q.scale)
        f = jax.jit(lambda x, qw, sc, b: jaxint8.llm_int8_matmul(
            x, jaxint8.Int8Weight(qw, sc), b, threshold=6.0))
        want = np.asarray(f(x, qw, sc, bias))

    def glob(a, spec):  # a global array from the (replicated) host copy
        sh = NamedSharding(mesh, spec)
        return jax.make_array_from_callback(a.shape, sh, lambda idx: a[idx])

    layouts = {
        "data": (P("data"), P()),
        "column": (P("data"), P("model", None)),
        "row": (P(None, "model"), P(None, "model")),
        "data_row": (P("data", "model"), P(None, "model")),
    }
    ok = True
    for name, (xs, ws) in layouts.items():
        os_ = P(ws[0]) if len(ws) else P()
        args = (glob(x, xs), glob(qw, ws), glob(sc, os_), glob(bias, os_))
        compiled = f.lower(*args).compile()
        y = compiled(*args)
        got = np.asarray(multihost_utils.process_allgather(y, tiled=True))
        err = float(np.max(np.abs(got - want)))
        moved = weight_collectives(compiled.as_text())
        good = err <= 1e-5 and not moved
        ok &= good
        print(f"process {pid}: {name:9s} max|y - y_1dev| = {err:.2e}  int8 collectives: "
              f"{len(moved)}  {'ok' if good else 'FAIL'}", flush=True)
    multihost_utils.sync_global_devices("done")
    if pid == 0 and ok:
        print("MULTIHOST OK", flush=True)
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--launch", type=int, default=0, help="start this many local processes (>= 2)")
    ap.add_argument("--cpu", action="store_true", help="CPU devices (gloo collectives)")
    ap.add_argument("--local-devices", type=int, default=None,
                    help="devices per process (CPU: virtual devices; GPU: GPUs each)")
    ap.add_argument("--coordinator", default=None)
    ap.add_argument("--num-processes", type=int, default=None)
    ap.add_argument("--process-id", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=110.0, help="seconds (with --launch)")
    args = ap.parse_args(argv)
    if args.launch == 1 or args.launch < 0:
        ap.error(f"argument --launch: must be >= 2 processes, got {args.launch}")
    if not args.launch:
        missing = [f"--{k.replace('_', '-')}" for k in ("coordinator", "num_processes", "process_id")
                   if getattr(args, k) is None]
        if missing:
            ap.error(f"without --launch N, give {', '.join(missing)} (one process of a multi-host run)")
        if not 0 <= args.process_id < args.num_processes:
            ap.error(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
    if args.local_devices is not None and args.local_devices < 1:
        ap.error(f"argument --local-devices: must be >= 1, got {args.local_devices}")
    if args.local_devices is None:
        args.local_devices = 4 if args.cpu else 1
    if args.launch:
        return launch(args)
    return worker(args)


if __name__ == "__main__":
    sys.exit(main())
