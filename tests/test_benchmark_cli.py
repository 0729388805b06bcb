"""The benchmark scripts' command lines (CPU): --help without jax, argparse errors instead of
tracebacks, one-line messages for missing files, the baseline files and their table tool."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = ["layer", "model", "sharded", "multihost", "timeline", "profile_kernels",
           "sanitize_cases", "baseline_table"]

# Runs a script as __main__ with the given arguments, then reports its exit code and whether
# jax got imported.
DRIVER = """
import runpy, sys
script, args = sys.argv[1], sys.argv[2:]
sys.argv = [script] + args
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
print("DRIVER", code, "jax" in sys.modules)
"""


def run(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0_without_importing_jax(script):
    p = run("-c", DRIVER, BENCH / f"{script}.py", "--help", timeout=60)
    assert p.returncode == 0, p.stderr
    assert "usage:" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == "DRIVER 0 False", p.stdout[-500:]


BAD_ARGS = [
    ("layer", ["--tokens", "abc"], "argument --tokens: invalid int list value: 'abc'"),
    ("model", ["--configs", "70b"], "argument --configs: invalid choice: '70b'"),
    ("model", ["--xla-dot-merger", "maybe"], "argument --xla-dot-merger: invalid choice: 'maybe'"),
    ("sharded", ["--tp", "0"], "argument --tp: invalid positive int value: '0'"),
    ("multihost", ["--num-processes", "2"], "without --launch N, give --coordinator, --process-id"),
    ("timeline", ["--shapes", "5120"], "argument --shapes: invalid shape list value: '5120'"),
    ("profile_kernels", ["--thresholds", "six"], "argument --thresholds: invalid float list value: 'six'"),
    ("profile_kernels", ["--planted", "-1"], "argument --planted: invalid count list value: '-1'"),
    ("sanitize_cases", ["--bogus"], "unrecognized arguments: --bogus"),
    ("baseline_table", ["--record", "out.json"], "--record needs --gpu and --commit"),
]


@pytest.mark.parametrize("script,args,message", BAD_ARGS, ids=[b[0] for b in BAD_ARGS])
def test_bad_argument_is_an_argparse_error(script, args, message):
    p = run(BENCH / f"{script}.py", *args, timeout=60)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_kernel_option_value_names_the_choices():
    p = run(BENCH / "layer.py", "--kernel-options", "gemm=fast", timeout=60)
    assert p.returncode == 2
    assert "argument --kernel-options: KernelOptions: gemm must be one of" in p.stderr


@pytest.mark.parametrize("methods,message", [
    ("jaxint8@gemm=fast", "argument --methods: jaxint8@gemm=fast: KernelOptions: gemm must be one of"),
    ("jaxint8@tile=coop", "invalid kernel options value: 'tile=coop' (FIELD=VALUE items separated by '/'"),
    ("bf16@gemm=tiled", "invalid method list value: 'bf16@gemm=tiled'"),
    ("jaxint8,jaxint8", "each once"),
])
def test_bad_method_variant_is_an_argparse_error(methods, message):
    p = run(BENCH / "layer.py", "--methods", methods, "--layers", "2,4", timeout=60)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr


def test_layer_method_variants_run_side_by_side(tmp_path):
    out = tmp_path / "variants.json"
    variant = "jaxint8@outliers=epilogue/sm90_tile=pingpong128x128"
    p = run(BENCH / "layer.py", "--shapes", "64x128", "--tokens", "4", "--outliers", "3", "--layers", "2,4",
            "--reps", "1", "--no-plot", "--methods", f"bf16,jaxint8,{variant}", "--out", out,
            env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row[variant] > 0 and row[variant + "_relerr"] == row["jaxint8_relerr"]  # options: same numbers


@pytest.mark.parametrize("args", [
    ["baseline_table", "missing-baseline.json"],
    ["profile_kernels", "--summarize", "missing-ncu.csv"],
])
def test_missing_file_is_one_line(args):
    p = run(BENCH / f"{args[0]}.py", *args[1:], timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert "no such file" in p.stderr


NCU_HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",'
              '"Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')


def ncu_row(launch, kernel, metric, unit, value):
    return (f'"{launch}","1","python3","h","{kernel}","1","7","(256, 1, 1)","(132, 1, 1)","0","9.0",'
            f'"Command line profiler metrics","{metric}","{unit}","{value}"')


def test_profile_summary_one_row_per_launch_with_every_metric(tmp_path):
    """ncu CSV with several metrics: one row per launch, times in us whatever ncu's unit,
    kernels of other libraries left out."""
    rows = [ncu_row(0, "void unnamed>::quantize_rows_kernel<__nv_bfloat16, 1, 256>(const T1 *)",
                    "gpu__time_duration.sum", "ns", "5,120"),
            ncu_row(0, "void unnamed>::quantize_rows_kernel<__nv_bfloat16, 1, 256>(const T1 *)",
                    "launch__registers_per_thread", "register/thread", "40"),
            ncu_row(1, "void cutlass::device_kernel<jaxint8::X>(T1)", "gpu__time_duration.sum", "usecond", "115.008"),
            ncu_row(1, "void cutlass::device_kernel<jaxint8::X>(T1)", "launch__registers_per_thread",
                    "register/thread", "168"),
            ncu_row(2, "void xla_fusion_kernel(float *)", "gpu__time_duration.sum", "usecond", "9")]
    csv_path = tmp_path / "prof.csv"
    csv_path.write_text("==PROF== Connected\n" + "\n".join([NCU_HEADER] + rows) + "\n")
    p = run(BENCH / "profile_kernels.py", "--summarize", csv_path, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["id", "kernel", "grid", "gpu__time_duration.sum", "launch__registers_per_thread"]
    assert lines[1].startswith("0  quantize_rows_kernel<__nv_bfloat16, 1, 256>  (132, 1, 1)  5.12  40")
    assert lines[2].endswith("115.008  168")
    assert len(lines) == 3  # the XLA fusion is not ours


def test_profile_cases_plant_each_outlier_count():
    """--planted 0,3: one case per planted column count at the same threshold (CPU handlers)."""
    p = run(BENCH / "profile_kernels.py", "--shapes", "64x96", "--tokens", "4", "--thresholds", "6",
            "--planted", "0,3", "--repeats", "1", timeout=120)
    assert p.returncode == 0, p.stderr
    cases = [line for line in p.stderr.splitlines() if line.startswith("CASE")]
    assert cases == ["CASE h=64 o=96 s=4 planted=0 thr=6.0 op=fused", "CASE h=64 o=96 s=4 planted=3 thr=6.0 op=fused"]


# ---------------------------------------------------------------------------------------------
# baseline files


def baselines():
    return sorted((BENCH / "baselines").glob("*.json"))


def test_benchmarks_folder_tracks_few_result_files():
    assert {p.name for p in baselines()} >= {"h100.json", "h200.json"}
    try:
        tracked = subprocess.run(["git", "ls-files", "benchmarks"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    results = [p for p in tracked if Path(p).suffix in (".json", ".png", ".log", ".csv", ".diff", ".txt")]
    assert len(results) <= 10, results


@pytest.mark.parametrize("path", baselines(), ids=lambda p: p.name)
def test_baseline_file_is_consistent(path):
    data = json.loads(path.read_text())
    assert set(data) == {"gpu", "entries"}
    names = {e["name"] for e in data["entries"]}
    assert {"layer", "model"} <= names
    for e in data["entries"]:
        assert {"name", "date", "command", "commit", "source", "results"} <= set(e), e.get("source")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", e["date"])
        assert re.fullmatch(r"[0-9a-f]{7,40}", e["commit"])
        assert e["results"]
        is_layer = "in" in e["results"][0]
        assert e["command"].startswith("python benchmarks/layer.py" if is_layer else "python benchmarks/model.py")
        for r in e["results"]:
            if is_layer:
                assert {"in", "out", "tokens", "bf16_us"} <= set(r)
                for m in ("xla_int8", "jaxint8", "jaxint8_t0"):
                    if f"{m}_us" in r:  # the ratio is bf16 time / method time, to 2 decimals
                        assert abs(r["bf16_us"] / r[f"{m}_us"] - r[f"{m}_ratio"]) < 0.01, r
            else:
                assert abs(r["int8_tok_s"] / r["bf16_tok_s"] - r["ratio"]) < 0.01, r


# ---------------------------------------------------------------------------------------------
# baseline_table.py: record, table, check


def layer_output(path, device="NVIDIA Test GPU"):
    rows = []
    for h, o in [(4096, 16384), (5120, 20480)]:
        for s, bf16, j8 in [(1, 40e-6, 20e-6), (128, 50e-6, 40e-6)]:
            rows.append({"h": h, "o": o, "s": s, "bf16": bf16, "jaxint8": j8, "bf16_relerr": 0.002,
                         "jaxint8_relerr": 0.0101, "quant": 5e-6, "gemm": 15e-6, "timing": "device"})
    rows[-1]["jaxint8"] = 1.234e-3  # 5120->20480 at 128 tokens: ratio 0.04
    meta = {"device": device, "date": "2026-12-05T10:00:00+00:00", "kernel_options": {"decode": "mma"},
            "command": "/usr/bin/python3 benchmarks/layer.py --tokens 1,128 --out /tmp/x.json --reps 5"}
    path.write_text(json.dumps({"meta": meta, "rows": rows}))
    return path


def model_output(path, device="NVIDIA Test GPU"):
    path.write_text(json.dumps({
        "device": device, "date": "2026-12-05T11:00:00+00:00", "kernel_options": {},
        "argv": ["--configs", "13b", "--depths", "40", "--out", "/tmp/m.json"],
        "configs": {"13b": {"config": {"timed_layers": [40]}, "memory": {"total_ratio": 1.9577},
                            "timing": [{"kind": "decode", "batch": 1, "prompt_len": 128, "bf16": 100.0,
                                        "int8": 150.0, "ratio": 1.5}]}}}))
    return path


TABLE = """| in→out | 1 tok | 128 tok |
|---|---|---|
| 4096→16384 | 2.00 | 1.25 |
| 5120→20480 | 2.00 | 0.04 |"""
MODEL_LINE = ("13B-shaped OPT decoder, 40 layers, decode at batch 1: bf16 100.0 tok/s, int8 150.0 tok/s, "
              "**1.50×** bf16; weights 1.96× smaller.")


def test_record_then_table_then_check(tmp_path):
    base = tmp_path / "test.json"
    for out in [layer_output(tmp_path / "l.json"), model_output(tmp_path / "m.json")]:
        p = run(BENCH / "baseline_table.py", base, "--record", out, "--gpu", "test", "--commit", "0123abc")
        assert p.returncode == 0, p.stderr
    data = json.loads(base.read_text())
    layer, model = data["entries"]
    assert data["gpu"] == "NVIDIA Test GPU"
    assert (layer["name"], model["name"]) == ("layer", "model")
    assert layer["command"] == "python benchmarks/layer.py --tokens 1,128 --reps 5"
    assert layer["kernel_options"] == {"decode": "mma"} and layer["source"] == "l.json"
    assert layer["results"][0] == {"in": 4096, "out": 16384, "tokens": 1, "bf16_us": 40.0, "jaxint8_us": 20.0,
                                   "jaxint8_ratio": 2.0, "jaxint8_err": 0.0101, "quant_us": 5.0, "gemm_us": 15.0}
    assert model["command"] == "python benchmarks/model.py --configs 13b --depths 40"

    p = run(BENCH / "baseline_table.py", base)
    assert p.returncode == 0, p.stderr
    assert p.stdout == TABLE + "\n\n" + MODEL_LINE + "\n"

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n\n{TABLE}\n\nmore text\n\n{MODEL_LINE}\n")
    p = run(BENCH / "baseline_table.py", base, "--check", readme)
    assert p.returncode == 0, p.stdout
    readme.write_text(f"# x\n\nintro\n\n{TABLE.replace('0.04', '0.05')}\n\n{MODEL_LINE}\n")
    p = run(BENCH / "baseline_table.py", base, "--check", readme)
    assert p.returncode == 1
    assert "-| 5120→20480 | 2.00 | 0.05 |\n+| 5120→20480 | 2.00 | 0.04 |" in p.stdout


def test_record_refuses_another_gpu(tmp_path):
    base = tmp_path / "test.json"
    base.write_text(json.dumps({"gpu": "NVIDIA H200", "entries": []}))
    p = run(BENCH / "baseline_table.py", base, "--record", layer_output(tmp_path / "l.json"), "--gpu", "test",
            "--commit", "0123abc")
    assert p.returncode == 1
    assert "was measured on 'NVIDIA Test GPU'" in p.stderr
    assert json.loads(base.read_text())["entries"] == []


# ---------------------------------------------------------------------------------------------
# layer.py end to end on CPU (wall time), without matplotlib


def test_layer_runs_on_cpu_and_says_when_the_plot_is_skipped(tmp_path):
    fake = tmp_path / "site" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(fake.parent), os.environ.get("PYTHONPATH")])),
               JAX_PLATFORMS="cpu")
    out = tmp_path / "layer.json"
    p = run(BENCH / "layer.py", "--shapes", "64x48", "--tokens", "1,3", "--reps", "1", "--calls", "2",
            "--kernel-options", "gemm=tiled", "--out", out, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert 'plot skipped: matplotlib is not installed (pip install ".[bench]")' in p.stdout.splitlines()
    data = json.loads(out.read_text())
    assert data["meta"]["kernel_options"] == {"gemm": "tiled"}
    assert data["meta"]["methods"] == ["bf16", "xla_int8", "jaxint8", "jaxint8_t0"]
    assert [(r["h"], r["o"], r["s"]) for r in data["rows"]] == [(64, 48, 1), (64, 48, 3)]
    for r in data["rows"]:
        assert r["jaxint8_relerr"] < r["xla_int8_relerr"] < 0.2  # the outlier columns need decomposition


def test_layer_distinct_layer_outlier_sweep_on_cpu(tmp_path):
    out = tmp_path / "sweep.json"
    p = run(BENCH / "layer.py", "--shapes", "64x128", "--tokens", "4", "--outliers", "0,3,all,65",
            "--layers", "2,4", "--reps", "1", "--out", out, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert "bnb skipped: jax runs on cpu, not a GPU" in lines  # one line, not an error
    assert "outliers 65 > in_features 64: skipped" in lines
    data = json.loads(out.read_text())
    methods = ["bf16", "xla_int8", "jaxint8", "jaxint8_t0", "jnp_llm_int8", "read"]
    assert data["meta"]["methods"] == methods and data["meta"]["layers"] == [2, 4]
    assert data["meta"]["skipped"] == {"bnb": "jax runs on cpu, not a GPU"}
    assert [(r["h"], r["o"], r["s"], r["k"]) for r in data["rows"]] == [(64, 128, 4, k) for k in (0, 3, 64)]
    for r in data["rows"]:
        for m in methods:
            assert r[m] > 0 and set(r[m + "_t"]) == {"2", "4"}
            assert r[m] == pytest.approx(r[m + "_t"]["4"] / 4)
            assert r[m + "_slope"] == pytest.approx((r[m + "_t"]["4"] - r[m + "_t"]["2"]) / 2)
        if r["k"] <= 32:  # within the 32-column capacity: LLM.int8()'s accuracy
            assert r["jnp_llm_int8_relerr"] < 2e-2
        if r["k"] == 0:
            assert r["jnp_llm_int8_relerr"] == pytest.approx(r["xla_int8_relerr"], rel=1e-3)
        if r["k"] == 3:  # the outlier columns need the decomposition
            assert r["jnp_llm_int8_relerr"] < 0.7 * r["xla_int8_relerr"]
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("shape"))):]
    assert len(table) == 1 + 3 * len(methods)
    assert "wall x" in table[0] and "slope x" in table[0] and "% read" in table[0]
    for line in table[1:]:  # the weight rate as a share of the plain weight read's
        f = line.split()
        share = 100 * (2 if f[3] == "bf16" else 1) * (data["rows"][0]["read"] / data["rows"][0][f[3]])
        if f[2] == "0":
            assert float(f[-2]) == pytest.approx(share, abs=0.6), line
    assert all(math.isnan(r["read_relerr"]) for r in data["rows"])  # no output to compare


def test_jnp_llm_int8_is_llm_int8_up_to_its_capacity():
    import sys

    import jax
    import jax.numpy as jnp
    from jax import lax

    import jaxint8

    sys.path.insert(0, str(BENCH))
    import layer

    h, o, s = 256, 128, 8
    w = layer.weight_f32(jax.random.key(0), h, o)
    qw = jaxint8.quantize_weight(w)
    err = {}
    for k in (8, 32, 64):
        x = layer.activations(jax.random.key(1), layer.outlier_columns(h, k), s, h)
        assert int(jnp.sum(jnp.max(jnp.abs(x), axis=0) >= 6.0)) == k  # exactly k outlier columns
        ref = jnp.dot(x.astype(jnp.float32), w, precision=lax.Precision.HIGHEST)
        err[k] = (layer.rel_err(layer.jnp_llm_int8_matmul(x, qw.qweight, qw.scale), ref),
                  layer.rel_err(jaxint8.llm_int8_matmul(x, qw, threshold=6.0), ref))
    for k in (8, 32):
        assert err[k][0] < 1.1 * err[k][1]
    assert err[64][0] > 1.2 * err[64][1]  # 32 outlier columns left in the int8 product


BAD_LAYER_ARGS = [
    (["--outliers", "six"], "argument --outliers: invalid outlier list value: 'six'"),
    (["--layers", "16"], "argument --layers: invalid layer pair value: '16'"),
    (["--layers", "--calls", "4"], "argument --calls: not used with --layers"),
]


@pytest.mark.parametrize("args,message", BAD_LAYER_ARGS, ids=["outliers", "layers", "calls"])
def test_layer_sweep_arguments_fail_as_usage_errors(args, message):
    p = run("-c", DRIVER, BENCH / "layer.py", *args, timeout=60)
    assert message in p.stderr, p.stderr[-1000:]
    assert p.stdout.strip().splitlines()[-1] == "DRIVER 2 False", p.stdout[-500:]
