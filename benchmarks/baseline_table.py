"""Curated benchmark baselines: README tables from them, new measurements into them.

One file per GPU model under ``benchmarks/baselines/`` (``h100.json``, ``h200.json``), built
from ``benchmarks/layer.py`` and ``benchmarks/model.py`` output. Schema::

    {
      "gpu": "NVIDIA H200",            # jax device_kind of every measurement in the file
      "entries": [                      # oldest first
        {
          "name": "layer",              # "layer" (layer.py) or "model" (model.py) feed the README
                                        # tables; other names ("layer-after") are kept, and
                                        # tabled only when asked for with --name
          "date": "2026-12-02",         # day of the measurement
          "command": "python benchmarks/layer.py --methods bf16,jaxint8,jaxint8_t0 --reps 5",
          "commit": "<sha>",            # the code measured
          "source": "<file name>",      # the output file the numbers come from; sources under
                                        # benchmarks/results/ are in git history:
                                        # git show 8882dd63986d:<source>
          "kernel_options": {...},      # optional: non-default jaxint8.KernelOptions of the run
          "note": "...",                # optional: provenance
          "footnote": "...",            # optional: printed under the table, its cells marked
          "results": [...]
        }
      ]
    }

A layer result is one (shape, token count): ``in``, ``out``, ``tokens``, ``<method>_us`` (µs per
call) for each method measured (``bf16``, ``xla_int8``, ``jaxint8``, ``jaxint8_t0``,
``jnp_llm_int8``, ``bnb``), ``<method>_ratio`` (bf16 time / method time, same process),
``<method>_err`` (relative error vs an f32 matmul), ``quant_us`` / ``gemm_us`` (jaxint8's
quantization and GEMM kernels); from ``layer.py --layers``: ``<method>_slope_us`` (marginal time
per layer) and ``outliers`` (the planted outlier count, ``--outliers``). A model
result: ``config``, ``layers``, ``kind``, ``batch``, ``prompt_len``, ``bf16_tok_s``,
``int8_tok_s``, ``ratio``, ``weight_ratio`` (bf16 / int8 weight bytes). Entries with the same
name form one table: for each (shape, token count) the last entry that has it wins. The table's
rows are layer.py's default shapes (other shapes only when none of those was measured), its
columns the token counts measured.

Usage::

    python benchmarks/baseline_table.py benchmarks/baselines/h200.json            # print tables
    python benchmarks/baseline_table.py benchmarks/baselines/h200.json --check README.md
    python benchmarks/baseline_table.py --record OUT.json --gpu h200 --name layer-after \\
        --commit <sha>                     # append a layer.py or model.py output file

``--check`` exits 1 and prints a diff when the file does not contain the generated table and
model line verbatim.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINES = os.path.join(HERE, "baselines")
# The README table's rows: benchmarks/layer.py's default shapes (in, out), in its order.
TABLE_SHAPES = [(4096, 16384), (16384, 4096), (5120, 20480), (20480, 5120), (12288, 49152),
                (49152, 12288)]
METHODS = ("bf16", "xla_int8", "jaxint8", "jaxint8_t0", "jnp_llm_int8", "bnb")
MARKS = "¹²³⁴⁵⁶⁷⁸⁹"


class BaselineError(Exception):
    """A baseline or input file that cannot be used (message for the user, one line)."""


# ---------------------------------------------------------------------------------------------
# reading and writing


def read_json(path: str):
    """The JSON in ``path``; a one-line BaselineError when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise BaselineError(f"{path}: {e}") from None


def load(path: str) -> dict:
    data = read_json(path)
    if not isinstance(data, dict) or "entries" not in data or "gpu" not in data:
        raise BaselineError(f"{path}: not a baseline file (needs 'gpu' and 'entries')")
    return data


def dumps(data: dict) -> str:
    """The baseline as JSON with one line per result row (short diffs, readable files)."""
    out = ["{", f' "gpu": {json.dumps(data["gpu"])},', ' "entries": [']
    for i, entry in enumerate(data["entries"]):
        out.append("  {")
        for key, value in entry.items():
            if key != "results":
                out.append(f"   {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
        rows = [f"    {json.dumps(r)}" for r in entry.get("results", [])]
        out.append('   "results": [')
        out.append(",\n".join(rows))
        out.append("   ]")
        out.append("  }" + ("," if i < len(data["entries"]) - 1 else ""))
    out += [" ]", "}"]
    return "\n".join(out) + "\n"


def save(data: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(dumps(data))


# ---------------------------------------------------------------------------------------------
# benchmark output -> baseline entry


def normalized_command(argv: list[str], script: str) -> str:
    """``python benchmarks/<script> ARGS`` without the output paths of that run."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--out", "--plot"):
            skip = True
            continue
        if a.startswith(("--out=", "--plot=")):
            continue
        args.append(a)
    return " ".join(["python", f"benchmarks/{script}"] + [shlex.quote(a) for a in args])


def layer_results(rows: list[dict]) -> list[dict]:
    """layer.py output rows (seconds) -> baseline rows (µs, ratios vs bf16)."""
    out = []
    for r in rows:
        row = {"in": r["h"], "out": r["o"], "tokens": r["s"]}
        if "k" in r:  # layer.py --outliers: the planted outlier count
            row["outliers"] = r["k"]
        # The known methods, then layer.py's kernel-option variants (jaxint8@FIELD=VALUE) and
        # the weight-read roofline, in the row's order.
        methods = list(METHODS) + [m for m in r if ("@" in m or m == "read") and not m.endswith(
            ("_slope", "_t", "_relerr"))]
        for m in methods:
            if m in r:
                row[f"{m}_us"] = round(r[m] * 1e6, 1)
            if f"{m}_slope" in r:  # layer.py --layers: (t(L2) - t(L1)) / (L2 - L1)
                row[f"{m}_slope_us"] = round(r[f"{m}_slope"] * 1e6, 1)
        for m in methods[1:]:
            if m in r and "bf16" in r:
                row[f"{m}_ratio"] = round(r["bf16"] / r[m], 2)
        for m in methods[1:]:
            if f"{m}_relerr" in r and r[f"{m}_relerr"] == r[f"{m}_relerr"]:  # not NaN (read)
                row[f"{m}_err"] = float(f"{r[f'{m}_relerr']:.3g}")
        for k in ("quant", "gemm"):
            if k in r:
                row[f"{k}_us"] = round(r[k] * 1e6, 1)
        out.append(row)
    return out


def model_results(data: dict) -> list[dict]:
    """model.py output -> baseline rows (one per config and timed batch)."""
    out = []
    for name, c in data["configs"].items():
        for t in c["timing"]:
            out.append({
                "config": name, "layers": max(c["config"]["timed_layers"]), "kind": t["kind"],
                "batch": t["batch"], "prompt_len": t["prompt_len"],
                "bf16_tok_s": round(t["bf16"], 1), "int8_tok_s": round(t["int8"], 1),
                "ratio": round(t["ratio"], 2),
                "weight_ratio": round(c["memory"]["total_ratio"], 2),
            })
    return out


def entry_from_output(path: str, name: str | None, commit: str) -> tuple[str, dict]:
    """(device kind, baseline entry) from a layer.py or model.py output JSON; ``name`` defaults to
    "layer" or "model"."""
    data = read_json(path)
    if isinstance(data, dict) and "rows" in data and "meta" in data:  # layer.py
        meta = data["meta"]
        argv = shlex.split(meta.get("command", ""))
        script_at = next((i for i, a in enumerate(argv) if a.endswith("layer.py")), -1)
        entry = {"name": name or "layer", "date": meta["date"][:10],
                 "command": normalized_command(argv[script_at + 1:], "layer.py"),
                 "commit": commit, "source": os.path.basename(path)}
        if meta.get("kernel_options"):
            entry["kernel_options"] = meta["kernel_options"]
        if any(r.get("timing") == "wall" for r in data["rows"]):
            entry["note"] = "wall-clock times (no device timeline)"
        entry["results"] = layer_results(data["rows"])
        return meta["device"], entry
    if isinstance(data, dict) and "configs" in data and "device" in data:  # model.py
        entry = {"name": name or "model", "date": data.get("date", "")[:10],
                 "command": normalized_command(data.get("argv", []), "model.py"),
                 "commit": commit, "source": os.path.basename(path)}
        if data.get("kernel_options"):
            entry["kernel_options"] = data["kernel_options"]
        entry["results"] = model_results(data)
        return data["device"], entry
    raise BaselineError(f"{path}: neither a benchmarks/layer.py nor a benchmarks/model.py output file")


def record(output: str, baseline: str, name: str | None, commit: str) -> dict:
    """Appends the measurement in ``output`` to ``baseline`` (created if missing)."""
    device, entry = entry_from_output(output, name, commit)
    data = load(baseline) if os.path.exists(baseline) else {"gpu": device, "entries": []}
    if data["gpu"] != device:
        raise BaselineError(f"{output} was measured on {device!r}, {baseline} holds {data['gpu']!r}")
    data["entries"].append(entry)
    save(data, baseline)
    return entry


# ---------------------------------------------------------------------------------------------
# tables


def layer_cells(data: dict, name: str) -> dict:
    """(in, out, tokens) -> (row, entry index) from the entries called ``name``; last one wins."""
    cells = {}
    for i, entry in enumerate(data["entries"]):
        if entry["name"] == name:
            for r in entry["results"]:
                if "in" in r:
                    cells[(r["in"], r["out"], r["tokens"])] = (r, i)
    return cells


def layer_table(data: dict, name: str = "layer", method: str = "jaxint8") -> str:
    """Markdown: in→out rows × token columns of ``method``'s ratio vs bf16, then footnotes."""
    cells = layer_cells(data, name)
    shapes = [s for s in TABLE_SHAPES if any(k[:2] == s for k in cells)]
    if not shapes:  # a measurement of other shapes only: those, in order
        shapes = list(dict.fromkeys(k[:2] for k in cells))
    if not shapes:
        return ""
    tokens = sorted({k[2] for k in cells if k[:2] in shapes})
    notes = {}  # entry index -> mark, in order of first use
    lines = ["| in→out | " + " | ".join(f"{t} tok" for t in tokens) + " |",
             "|---" * (len(tokens) + 1) + "|"]
    for h, o in shapes:
        out = []
        for t in tokens:
            row, i = cells.get((h, o, t), (None, None))
            if row is None or f"{method}_ratio" not in row:
                out.append("–")
                continue
            mark = ""
            if data["entries"][i].get("footnote"):
                mark = notes.setdefault(i, MARKS[len(notes) % len(MARKS)])
            out.append(f"{row[f'{method}_ratio']:.2f}{mark}")
        lines.append(f"| {h}→{o} | " + " | ".join(out) + " |")
    if notes:
        lines.append("")
        lines += [f"{mark} {data['entries'][i]['footnote']}" for i, mark in notes.items()]
    return "\n".join(lines)


def model_lines(data: dict, name: str = "model") -> str:
    """One line per result of the last ``name`` entry: tokens/s of bf16 and int8, the ratio."""
    entries = [e for e in data["entries"] if e["name"] == name]
    if not entries:
        return ""
    lines = []
    for r in entries[-1]["results"]:
        what = (f"decode at batch {r['batch']}" if r["kind"] == "decode"
                else f"prefill of {r['prompt_len']} tokens at batch {r['batch']}")
        lines.append(f"{r['config'].upper()}-shaped OPT decoder, {r['layers']} layers, {what}: "
                     f"bf16 {r['bf16_tok_s']:.1f} tok/s, int8 {r['int8_tok_s']:.1f} tok/s, "
                     f"**{r['ratio']:.2f}×** bf16; weights {r['weight_ratio']:.2f}× smaller.")
    return "\n".join(lines)


def blocks(data: dict, name: str = "layer", method: str = "jaxint8") -> list[str]:
    """The generated markdown blocks: the layer table (with footnotes) and the model line(s)."""
    return [b for b in (layer_table(data, name, method), model_lines(data)) if b]


def check(text: str, generated: list[str]) -> list[str]:
    """For each block missing from ``text``: a unified diff against the closest passage."""
    lines = text.splitlines()
    problems = []
    for block in generated:
        if block in text:
            continue
        want = block.splitlines()
        n = len(want)
        best, at = (-1.0, -1.0), 0
        for i in range(max(1, len(lines) - n + 1)):  # most equal lines, then most equal characters
            score = (difflib.SequenceMatcher(None, lines[i:i + n], want).ratio(),
                     difflib.SequenceMatcher(None, "\n".join(lines[i:i + n]), block).ratio())
            if score > best:
                best, at = score, i
        problems.append("\n".join(difflib.unified_diff(
            lines[at:at + n], want, f"README (lines {at + 1}-{at + n})", "generated", lineterm="")))
    return problems


# ---------------------------------------------------------------------------------------------
# command line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", nargs="?", help="baseline file, e.g. benchmarks/baselines/h200.json")
    ap.add_argument("--check", metavar="MARKDOWN",
                    help="exit 1 (with a diff) unless this file contains the generated tables")
    ap.add_argument("--name", default=None,
                    help="entries to table (default 'layer'); with --record: the new entry's name "
                         "(default 'layer' or 'model', which the README tables show)")
    ap.add_argument("--method", default="jaxint8", choices=METHODS[1:],
                    help="whose ratio vs bf16 the table shows (default jaxint8: threshold 6)")
    ap.add_argument("--plot", metavar="PNG", help="also plot the table's ratios (needs matplotlib)")
    rec = ap.add_argument_group("recording a measurement")
    rec.add_argument("--record", metavar="OUT_JSON", help="a benchmarks/layer.py or model.py output file")
    rec.add_argument("--gpu", help="baseline to append to: benchmarks/baselines/<gpu>.json (e.g. h200)")
    rec.add_argument("--commit", help="git commit of the code measured")
    args = ap.parse_args(argv)

    try:
        if args.record:
            missing = [f"--{k}" for k in ("gpu", "commit") if not getattr(args, k)]
            if missing:
                ap.error(f"--record needs {' and '.join(missing)}")
            if not re.fullmatch(r"[0-9a-f]{7,40}", args.commit):
                ap.error(f"argument --commit: invalid commit value: {args.commit!r} (7-40 hex digits)")
            if not re.fullmatch(r"[a-z0-9_-]+", args.gpu):
                ap.error(f"argument --gpu: invalid gpu value: {args.gpu!r} (a file name such as h200)")
            path = args.baseline or os.path.join(BASELINES, f"{args.gpu}.json")
            entry = record(args.record, path, args.name, args.commit)
            print(f"appended {entry['name']!r} ({len(entry['results'])} results) to {path}")
            return 0
        if not args.baseline:
            ap.error("give a baseline file (or --record OUT_JSON)")
        data = load(args.baseline)
        generated = blocks(data, args.name or "layer", args.method)
        if not generated:
            raise BaselineError(f"{args.baseline}: no {args.name or 'layer'!r} or 'model' entries")
        if args.plot:
            plot(data, args.name or "layer", args.plot)
        if args.check:
            try:
                with open(args.check) as f:
                    text = f.read()
            except OSError as e:
                raise BaselineError(f"{args.check}: {e.strerror.lower() if e.strerror else e}") from None
            problems = check(text, generated)
            for p in problems:
                print(p)
            if problems:
                print(f"{args.check} does not contain the tables generated from {args.baseline} "
                      f"(print them with: python benchmarks/baseline_table.py {args.baseline})")
                return 1
            print(f"{args.check}: tables of {args.baseline} present")
            return 0
        print("\n\n".join(generated))
        return 0
    except BaselineError as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 1


def plot(data: dict, name: str, path: str) -> None:
    """The merged layer results as layer.py's plot (ratio vs bf16 per shape over tokens)."""
    sys.path.insert(0, HERE)
    import layer  # noqa: E402  (no jax import: plotting only)

    rows = []
    for (h, o, t), (r, _) in sorted(layer_cells(data, name).items()):
        if (h, o) in TABLE_SHAPES:
            row = {"h": h, "o": o, "s": t}
            row.update({m: r[f"{m}_us"] * 1e-6 for m in METHODS if f"{m}_us" in r})
            rows.append(row)
    if layer.plot(rows, path, title=data["gpu"]):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
