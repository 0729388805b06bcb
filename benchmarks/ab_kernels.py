"""Per-kernel times of layer-benchmark JSONs side by side (e.g. the files of benchmarks/decode_ab.sh).

Kernels are named by a short tag (the function name without namespaces and template arguments;
CUTLASS kernels as "cutlass"), in µs per call; one block of lines per shape and token count.

Usage: python benchmarks/ab_kernels.py A.json B.json [...]
"""

from __future__ import annotations

import json
import re
import sys


def short_name(kernel: str) -> str:
    if "cutlass" in kernel:
        return "cutlass"
    if "(" not in kernel:  # driver nodes: "memset32", "Memset 3"
        return kernel.replace(" ", "")
    name = kernel.replace("(anonymous namespace)::", "").split("(")[0]
    name = re.sub(r"<.*", "", name)
    return name.split("::")[-1].split()[-1]


def load(path):
    rows = json.load(open(path))["rows"]
    return {(r["h"], r["o"], r["s"]): r for r in rows}


def main(paths):
    runs = [load(p) for p in paths]
    print("files: " + ", ".join(f"[{i}] {p}" for i, p in enumerate(paths)))
    for key in sorted(set().union(*runs)):
        h, o, s = key
        got = [run.get(key) for run in runs]
        head = " | ".join(f"[{i}] {r['jaxint8'] * 1e6:6.1f} us, x bf16 {r['bf16'] / r['jaxint8']:.2f}"
                          for i, r in enumerate(got) if r and "jaxint8" in r)
        print(f"{h}->{o} tokens {s}: {head}")
        for i, r in enumerate(got):
            if not r or "jaxint8_kernels" not in r:
                continue
            parts = ", ".join(f"{short_name(k)} {t * 1e6:.1f}" for k, t in r["jaxint8_kernels"].items())
            print(f"    [{i}] {parts}")


if __name__ == "__main__":
    main(sys.argv[1:])
