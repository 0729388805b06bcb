"""Model benchmark: prefill and decode tokens/s of a bf16 and an LLM.int8() model, and weight memory.

What it measures: OPT-6.7B- and OPT-13B-shaped decoders (``jaxint8.models``) with random weights
(projection kernels N(0, 1/fan_in), 6 planted outlier dimensions, see ``random_params``), once in
bf16 and once with every projection an int8 layer (threshold 6; q/k/v as one grouped op), on one
device: seconds per prefill call and per decode step, as tokens/s, and the weight bytes of the
full-depth models (from abstract shapes, nothing allocated).

How: each timing is the median wall-clock time of ``--repeats`` executions of one jitted
program, after a warm-up execution: a prefill of ``[batch, prompt_len]``, or a decode loop of
``--decode-steps`` steps (one ``lax.while_loop`` on the device, KV cache, greedy) divided by the
steps. Both models run in the same process, one after the other, and the int8/bf16 ratio is
taken within that process. By default the first ``--layers`` decoder layers and half as many are
timed (plus embeddings and lm_head), and the per-layer cost (the difference / the layer
difference) is extrapolated to the full depth; ``--depths 40`` times the whole 13B shape (26 GB
bf16 + 13 GB int8 on the device). ``--trace`` adds, from the device timeline
(``benchmarks/timeline.py``), the GPU time per prefill and per decode step by kernel class
(int8 GEMM, int8 quantization, outlier product, XLA GEMMs, softmax/reductions, other XLA
fusions) and the top kernels.
``--kernel-options`` pins jaxint8's CUDA kernels (``jaxint8.KernelOptions`` fields, recorded in
the JSON). ``--xla-dot-merger off`` turns off XLA's dot-merger pass, which on GPUs joins the bf16
model's q/k/v products into one GEMM by concatenating their weights at every prefill call (a
copy the int8 model's grouped call does not make); the flags are recorded in the JSON.

Output: a JSON file, a PNG (needs matplotlib: ``pip install ".[bench]"``) and a table on stdout.

Usage::

    python benchmarks/model.py                 # GPU: 6.7B- and 13B-shaped, 4 layers timed
    python benchmarks/model.py --tiny          # CPU smoke test
    python benchmarks/model.py --configs 13b --layers 8 --decode-batch 1 16
    python benchmarks/model.py --configs 13b --depths 40 --prompt-len 0 --decode-batch 1 \\
        --decode-steps 32 --repeats 3          # the whole 13B shape, decode at batch 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layer  # noqa: E402  (argument types, plot message; no jax import)
import timeline  # noqa: E402

# Bound by _load() once the arguments are parsed, so that --help and argument errors do not wait
# for jax and flax to import.
jax = jnp = np = None
ModelConfig = QuantConfig = abstract_params = build_model = quantize_model = None
GenerationConfig = decode = prefill = init_kv_cache = _normal = None


def _load():
    """Imports jax, numpy and jaxint8.models into this module."""
    global jax, jnp, np, ModelConfig, QuantConfig, abstract_params, build_model, quantize_model
    global GenerationConfig, decode, prefill, init_kv_cache, _normal
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxint8.models import ModelConfig, QuantConfig, abstract_params, build_model, quantize_model
    from jaxint8.models.generation import GenerationConfig, decode, prefill
    from jaxint8.models.layers import init_kv_cache

    # One small program per leaf shape (compiled once, reused by every layer): a single program
    # drawing a 40-layer model's leaves took 2 minutes to compile on an H100 machine.
    _normal = jax.jit(_normal_impl, static_argnames=("shape", "dtype", "std"))


CONFIGS = {
    # OPT shapes (Zhang et al. 2022, Table 1).
    "6.7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, ffn_dim=16384),
    "13b": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, ffn_dim=20480),
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, ffn_dim=512),
}
_COMMON = dict(
    model_type="opt", vocab_size=50272, max_position_embeddings=2048, eos_token_id=2, pad_token_id=1
)


def hf_config(name: str, layers: int | None = None) -> ModelConfig:
    d = {**_COMMON, **CONFIGS[name]}
    if name == "tiny":
        d["vocab_size"] = 512
    if layers:
        d["num_hidden_layers"] = min(layers, d["num_hidden_layers"])
    return ModelConfig.from_hf_dict(d)


def _nbytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree))


def _projection_bytes(tree) -> int:
    """Bytes of the projection modules (Dense / Int8Dense dicts with a 2-D kernel), lm_head excluded."""
    total = 0
    for k, v in tree.items():
        if k == "lm_head":
            continue
        if isinstance(v, dict) and "kernel" in v and len(v["kernel"].shape) == 2:
            total += _nbytes(v)
        elif isinstance(v, dict):
            total += _projection_bytes(v)
    return total


def memory(name: str) -> dict:
    """Full-depth weight memory (bytes) of the bf16 and int8 models (from abstract shapes)."""
    cfg = hf_config(name)
    bf16 = abstract_params(build_model(cfg, param_dtype=jnp.bfloat16))
    int8 = abstract_params(build_model(cfg, QuantConfig(int8=True), param_dtype=jnp.bfloat16))
    res = {
        "total_bf16": _nbytes(bf16),
        "total_int8": _nbytes(int8),
        "projections_bf16": _projection_bytes(bf16),
        "projections_int8": _projection_bytes(int8),
    }
    res["total_ratio"] = res["total_bf16"] / res["total_int8"]
    res["projections_ratio"] = res["projections_bf16"] / res["projections_int8"]
    return res


def random_params(model, seed=0, outlier_dims: int = 6, outlier_scale: float = 20.0):
    """bf16 random params drawn on the device: projection kernels N(0, 1/fan_in), other weights
    (embeddings) N(0, 0.02), norm scales 1.

    Like real OPT models (Dettmers et al. 2022, §4), ``outlier_dims`` hidden dims — the same ones in
    every layer — carry large values: their norm scale is ``outlier_scale``, so the projection inputs
    have |x| >= 6 there at most positions and the int8 path runs its outlier decomposition.

    The 1/fan_in variance keeps every other activation near unit scale, as in trained models, where
    |x| >= 6 outside the systematic dims is rare. With N(0, 0.02) everywhere fc1's outputs had
    std ~1.7 at h = 5120, and at 512 tokens fc2's input had 3162 of 20480 columns with |x| >= 6
    (chance hits of a Gaussian tail, not outlier features), which no real checkpoint shows.
    """
    abstract = abstract_params(model)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    dims = np.random.default_rng(seed).choice(model.config.hidden_size, outlier_dims, replace=False)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    out = []
    for k, (path, s) in zip(keys, leaves):
        if str(path[-1].key) == "scale" and len(s.shape) == 1:  # norm scale
            scale = np.ones(s.shape, np.float32)
            if s.shape[0] == model.config.hidden_size:
                scale[dims] = outlier_scale
            out.append(jnp.asarray(scale, s.dtype))
        else:
            is_kernel = str(path[-1].key) == "kernel" and len(s.shape) == 2
            std = 1.0 / np.sqrt(s.shape[0]) if is_kernel else 0.02
            out.append(_normal(k, s.shape, jnp.dtype(s.dtype), float(std)))
    return jax.tree_util.tree_unflatten(treedef, out)


def _normal_impl(key, shape, dtype, std):
    return (std * jax.random.normal(key, shape)).astype(dtype)


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile + warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_model(
    model,
    params,
    *,
    prompt_len: int,
    batch: int,
    decode_steps: int,
    repeats: int,
    decode_too: bool = True,
    trace: bool = False,
) -> dict:
    """Seconds per prefill of ``[batch, prompt_len]`` and per decode step (median)."""
    cfg = model.config
    S = prompt_len + decode_steps
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(3, cfg.vocab_size, size=(batch, prompt_len)), jnp.int32)
    key_mask = jnp.ones((batch, S), bool)
    cache_dtype = model.dtype or model.param_dtype

    def run_prefill():
        return prefill(model, params, ids, key_mask, init_kv_cache(cfg, batch, S, cache_dtype))

    t_prefill = _time(run_prefill, repeats)
    res = {"prefill_s": t_prefill, "prefill_tokens_per_s": batch * prompt_len / t_prefill}
    if trace and not decode_too:
        res["prefill_trace"] = trace_step(run_prefill, 1)
    if not decode_too:
        return res
    logits, cache = run_prefill()
    gen = GenerationConfig(max_new_tokens=S - prompt_len, eos_token_id=(), pad_token_id=0)

    def run_decode():  # decode does not donate the cache: the same prefilled cache serves every repeat
        return decode(
            model,
            gen,
            params,
            logits,
            cache,
            key_mask,
            jnp.int32(prompt_len),
            jnp.int32(decode_steps),
            jax.random.key(0),
        )

    t_decode = _time(run_decode, repeats)
    res = {
        **res,
        "decode_step_ms": 1e3 * t_decode / decode_steps,
        "decode_tokens_per_s": batch * decode_steps / t_decode,
    }
    if trace:
        res["decode_trace"] = trace_step(run_decode, decode_steps)
    return res


KERNEL_CLASSES = (  # (class, substrings of a lower-cased kernel name); first match wins
    ("int8 GEMM", ("cutlass", "skinny_kernel", "gemv_kernel", "tiled_kernel")),
    ("int8 quantization", ("quantize_", "column_absmax", "gather_outliers")),
    ("outlier product", ("outlier_product", "gather_kernel")),
    ("XLA GEMMs", ("gemm", "nvjet", "cublas", "xmma", "dot")),
    ("softmax/reductions", ("reduce", "softmax")),
    ("memset/copy", ("memset", "memcpy", "copy")),
)


def kernel_group(name: str) -> str:
    """Coarse class of a GPU kernel for the step breakdown. XLA's GEMMs are attention's two
    einsums and the lm_head in the int8 model, and the projections too in the bf16 model;
    "other XLA" is the elementwise fusions (norms, residuals, activations, casts, rotary)."""
    n = name.lower()
    for group, keys in KERNEL_CLASSES:
        if any(k in n for k in keys):
            return group
    return "other XLA"


def trace_step(run, calls: int, execs: int = 2) -> dict | None:
    """Device timeline of one jitted program per call (a prefill, or one step of the decode loop
    with ``calls`` steps): span, GPU busy time, time per kernel class, top kernels, largest gaps.

    span >> busy means the step is host-bound (launches, the while loop's per-step predicate
    read-back), not kernel-bound.
    """
    # 50 ms between executions: a deep model's decode loop can idle for milliseconds inside one.
    dev = timeline.trace_programs({"step": (run, ())}, calls, execs, exec_gap_s=0.05)
    if dev is None:
        return None
    d = dev["step"]
    groups: dict = {}
    for name, t in d["kernels"].items():
        groups[kernel_group(name)] = groups.get(kernel_group(name), 0.0) + t
    top = sorted(d["kernels"].items(), key=lambda kv: -kv[1])[:30]  # a layer has ~20 kernels
    launches = d.get("launches", {})
    return {
        "span_us": 1e6 * d["span"],
        "busy_us": 1e6 * d["busy"],
        "launches": sum(launches.values()),
        "groups_us": {k: 1e6 * v for k, v in groups.items()},
        "top_kernels_us": {k[:90]: 1e6 * v for k, v in top},
        "top_kernels_launches": {k[:90]: launches.get(k, 0.0) for k, _ in top},
        # longest idle intervals of one execution (all steps): (us, offset us, kernel before, after)
        "largest_gaps": [(g / 1e3, off / 1e3, a[:60], b[:60]) for g, off, a, b in d["gaps"]],
    }


def measure(variants, args) -> list[dict]:
    """Seconds per prefill call and per decode step of each variant, for every requested shape."""
    rows = []
    for prompt_len in (p for p in args.prompt_len if p > 0):  # 0: no prefill rows
        for batch in args.prefill_batch:
            row = {
                "kind": "prefill",
                "prompt_len": prompt_len,
                "batch": batch,
                "tokens_per_call": batch * prompt_len,
            }
            for vname, m, p in variants:
                r = time_model(
                    m,
                    p,
                    prompt_len=prompt_len,
                    batch=batch,
                    decode_steps=1,
                    repeats=args.repeats,
                    decode_too=False,
                    trace=args.trace,
                )
                row[f"{vname}_s"] = r["prefill_s"]
                if "prefill_trace" in r:
                    row[f"{vname}_trace"] = r["prefill_trace"]
                    print_trace(f"{vname} prefill {batch}x{prompt_len} ({m.config.num_layers} layers)",
                                r["prefill_trace"])
            rows.append(row)
    for batch in args.decode_batch:
        row = {
            "kind": "decode",
            "prompt_len": args.decode_prompt_len,
            "batch": batch,
            "tokens_per_call": batch,
        }
        for vname, m, p in variants:
            r = time_model(
                m,
                p,
                prompt_len=args.decode_prompt_len,
                batch=batch,
                decode_steps=args.decode_steps,
                repeats=args.repeats,
                trace=args.trace,
            )
            row[f"{vname}_s"] = r["decode_step_ms"] / 1e3
            if "decode_trace" in r:
                row[f"{vname}_trace"] = r["decode_trace"]
                print_trace(f"{vname} decode b{batch} ({m.config.num_layers} layers)", r["decode_trace"])
        rows.append(row)
    return rows


def print_trace(title: str, t: dict | None) -> None:
    if t is None:
        print(f"{title}: trace unavailable (no GPU events or executions not separable)")
        return
    groups = ", ".join(f"{k} {v:.0f}" for k, v in sorted(t["groups_us"].items(), key=lambda kv: -kv[1]))
    print(f"{title}: per call span {t['span_us']:.0f} us, GPU busy {t['busy_us']:.0f} us, "
          f"{t.get('launches', 0):.0f} kernels ({groups})", flush=True)
    n = t.get("top_kernels_launches", {})
    for k, v in t["top_kernels_us"].items():
        print(f"    {v:8.1f} us {n.get(k, 0):5.0f}x  {k[:70]}")
    for g, off, a, b in t.get("largest_gaps", [])[:3]:
        print(f"    gap {g:8.1f} us at {off:9.1f} us: {a[:40]} -> {b[:40]}")


def bench_config(name: str, args) -> dict:
    """Times two depths (``--layers`` and half of it, or the given ``--depths``) so the per-layer
    cost can be separated from the fixed cost (embeddings, lm_head) and extrapolated to the full
    depth. ``--depths 4 40`` on a 13B shape times the whole model (26 GB bf16 + 13 GB int8 on the
    device): measured, not extrapolated."""
    full_depth = CONFIGS[name]["num_hidden_layers"]
    if args.depths:
        depths = sorted({min(d, full_depth) for d in args.depths})
        top = depths[-1]
    else:
        top = min(args.layers, full_depth)
        depths = sorted({max(1, top // 2), top})
    per_depth = {}
    for depth in depths:
        cfg = hf_config(name, depth)
        fmodel = build_model(cfg, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
        fparams = random_params(fmodel, outlier_dims=args.outlier_dims)
        quant = QuantConfig(int8=True, threshold=args.threshold, group=not args.no_group)
        qmodel, qparams = quantize_model(fmodel, fparams, quant)
        per_depth[depth] = measure([("bf16", fmodel, fparams), ("int8", qmodel, qparams)], args)
        del fparams, qparams
    timing = []
    for i, row in enumerate(per_depth[top]):
        out = {k: v for k, v in row.items() if not k.endswith("_s")}
        for v in ("bf16", "int8"):  # traces of the lower depth too: the per-layer difference
            if f"{v}_trace" in per_depth[depths[0]][i] and len(depths) == 2:
                out[f"{v}_trace_{depths[0]}_layers"] = per_depth[depths[0]][i][f"{v}_trace"]
        for v in ("bf16", "int8"):
            t_top = row[f"{v}_s"]
            out[f"{v}_ms"] = 1e3 * t_top
            out[v] = row["tokens_per_call"] / t_top  # tokens/s with `top` layers (measured)
            if len(depths) == 2:
                lo = depths[0]
                per_layer = max((t_top - per_depth[lo][i][f"{v}_s"]) / (top - lo), 0.0)
                t_full = t_top + (full_depth - top) * per_layer
                out[f"{v}_full_depth_est"] = row["tokens_per_call"] / t_full
        out["ratio"] = out["int8"] / out["bf16"]
        if "bf16_full_depth_est" in out:
            out["ratio_full_depth_est"] = out["int8_full_depth_est"] / out["bf16_full_depth_est"]
        timing.append(out)
    config = {
        **CONFIGS[name],
        "timed_layers": depths,
        "outlier_dims": args.outlier_dims,
        "threshold": args.threshold,
        "grouped_projections": not args.no_group,
    }
    return {"config": config, "memory": memory(name), "timing": timing}


def print_table(results: dict) -> None:
    print(
        f"\n{'config':<7}{'kind':<9}{'batch':>6}{'len':>6}{'bf16 tok/s':>13}{'int8 tok/s':>13}{'int8/bf16':>11}"
        f"{'full-depth est.':>17}"
    )
    for name, r in results["configs"].items():
        for t in r["timing"]:
            est = f"{t['ratio_full_depth_est']:>17.2f}" if "ratio_full_depth_est" in t else ""
            print(
                f"{name:<7}{t['kind']:<9}{t['batch']:>6}{t['prompt_len']:>6}{t['bf16']:>13.1f}{t['int8']:>13.1f}"
                f"{t['ratio']:>11.2f}{est}"
            )
    print(
        "(tok/s measured with the last timed depth; 'full-depth est.' = int8/bf16 with the per-layer cost "
        "extrapolated to all layers)"
    )
    print(f"\n{'config':<7}{'bf16 GB':>9}{'int8 GB':>9}{'ratio':>7}{'proj ratio':>12}  (full depth, weights)")
    for name, r in results["configs"].items():
        m = r["memory"]
        print(
            f"{name:<7}{m['total_bf16'] / 1e9:>9.2f}{m['total_int8'] / 1e9:>9.2f}{m['total_ratio']:>7.3f}"
            f"{m['projections_ratio']:>12.4f}"
        )
    for t in results.get("targets", []):
        print(f"target {t['name']}: {t['value']:.3f} (>= {t['min']}) {'PASS' if t['pass'] else 'FAIL'}")


def targets(results: dict) -> list[dict]:
    """The project's targets that this run can check (memory always; decode speed for 13b)."""
    out = []

    def add(name, value, minimum):
        out.append({"name": name, "value": value, "min": minimum, "pass": bool(value >= minimum)})

    for name, r in results["configs"].items():
        if name == "tiny":
            continue
        add(f"{name} projections bf16/int8 memory", r["memory"]["projections_ratio"], 1.99)
        if name == "13b":
            add("13b total bf16/int8 memory", r["memory"]["total_ratio"], 1.9)
            for t in r["timing"]:
                if t["kind"] == "decode":
                    add(
                        f"13b decode b{t['batch']} int8/bf16 tok/s ({max(r['config']['timed_layers'])} layers)",
                        t["ratio"],
                        1.6,
                    )
                    if "ratio_full_depth_est" in t:
                        add(
                            f"13b decode b{t['batch']} int8/bf16 tok/s (full-depth est.)",
                            t["ratio_full_depth_est"],
                            1.6,
                        )
    return out


def plot(results: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(layer.MATPLOTLIB_MISSING)
        return
    names = list(results["configs"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels, bf, i8 = [], [], []
    for n in names:
        for t in results["configs"][n]["timing"]:
            labels.append(f"{n}\n{t['kind']} b{t['batch']}")
            bf.append(t["bf16"])
            i8.append(t["int8"])
    x = np.arange(len(labels))
    axes[0].bar(x - 0.2, bf, 0.4, label="bf16")
    axes[0].bar(x + 0.2, i8, 0.4, label="int8 (LLM.int8())")
    axes[0].set_xticks(x, labels, fontsize=7)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("tokens / s")
    axes[0].set_title(f"throughput ({results['device']})")
    axes[0].legend()
    x = np.arange(len(names))
    axes[1].bar(
        x - 0.2, [results["configs"][n]["memory"]["total_bf16"] / 1e9 for n in names], 0.4, label="bf16"
    )
    axes[1].bar(
        x + 0.2, [results["configs"][n]["memory"]["total_int8"] / 1e9 for n in names], 0.4, label="int8"
    )
    axes[1].set_xticks(x, names)
    axes[1].set_ylabel("weight memory (GB, full depth)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="small CPU smoke test")
    p.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS))
    p.add_argument("--layers", type=layer.positive_int, default=4,
                   help="decoder layers to time (memory is full depth)")
    p.add_argument("--depths", type=layer.positive_int, nargs="+", default=None,
                   help="exact depths to time, one or two (overrides --layers), e.g. 4 40")
    p.add_argument("--prompt-len", type=int, nargs="+", default=[512, 2048], help="prefill lengths (0: none)")
    p.add_argument("--prefill-batch", type=layer.positive_int, nargs="+", default=[1])
    p.add_argument("--decode-batch", type=layer.positive_int, nargs="+", default=[1, 16])
    p.add_argument("--decode-prompt-len", type=layer.positive_int, default=128)
    p.add_argument("--decode-steps", type=layer.positive_int, default=64)
    p.add_argument("--repeats", type=layer.positive_int, default=5)
    p.add_argument("--threshold", type=float, default=6.0)
    p.add_argument("--no-group", action="store_true",
                   help="int8 q/k/v (gate/up) one by one instead of one grouped op")
    p.add_argument("--trace", action="store_true",
                   help="trace each prefill and the decode loop: span, busy time, time per kernel class, top kernels")
    p.add_argument("--outlier-dims", type=int, default=6, help="planted systematic outlier dims (0: none)")
    p.add_argument("--kernel-options", type=layer.kernel_options_arg, default={}, metavar="FIELD=VALUE,...",
                   help="jaxint8.KernelOptions for the int8 model, e.g. decode=mma (default automatic)")
    p.add_argument("--xla-dot-merger", choices=("on", "off"), default="on",
                   help="XLA's dot-merger pass (default on, what a user's program gets): it joins the bf16 "
                        "model's q/k/v products by concatenating their weights at every prefill call; off: "
                        "separate products, as the int8 model's grouped call")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/out/model-<device>.json)")
    args = p.parse_args(argv)
    if args.xla_dot_merger == "off":
        if "jax" in sys.modules:
            p.error("--xla-dot-merger off must be set before jax is imported (run the script, not main())")
        layer.setup_xla_flags()
    if args.depths and len(args.depths) > 2:
        p.error(f"--depths takes one or two depths (the per-layer cost comes from two), got {args.depths}")
    if min(args.prompt_len) < 0:
        p.error(f"--prompt-len takes lengths >= 0, got {args.prompt_len}")
    if args.out:
        layer.writable_dir(p, "--out", args.out)
    if args.tiny:
        args.configs = args.configs or ["tiny"]
        args.prompt_len, args.decode_batch, args.decode_steps, args.repeats = [32], [1, 4], 8, 2
        args.decode_prompt_len = 16
    args.configs = args.configs or ["6.7b", "13b"]
    options = layer.make_kernel_options(p, args.kernel_options)
    _load()
    import jaxint8

    dev = jax.devices()[0]
    results = {
        "device": getattr(dev, "device_kind", str(dev)),
        "platform": dev.platform,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "kernel_options": layer.options_dict(options),
        "configs": {},
    }
    tag = "tiny" if args.tiny else results["device"].replace(" ", "_").lower()
    out = args.out or os.path.join(layer.OUT_DIR, f"model-{tag}.json")
    layer.writable_dir(p, "--out", out)
    with jaxint8.kernel_options(options):
        for name in args.configs:
            print(f"benchmarking {name} ...", flush=True)
            results["configs"][name] = bench_config(name, args)
    results["targets"] = targets(results)
    print_table(results)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out}")
    plot(results, os.path.splitext(out)[0] + ".png")
    return results


if __name__ == "__main__":
    main()
