"""Command-line tool: ``python -m jaxint8.models.cli {perplexity,outliers,convert,generate} ...``.

Examples::

    # float vs int8 perplexity, side by side
    python -m jaxint8.models.cli perplexity --model /models/opt-1.3b --text wiki.txt --seq-len 1024
    # the paper's outlier statistics (|x| >= 6 in projection inputs), per layer
    python -m jaxint8.models.cli outliers --model /models/opt-6.7b --text wiki.txt --json out.json
    # quantize once, save int8 + scales + config
    python -m jaxint8.models.cli convert --model /models/opt-6.7b --out /models/opt-6.7b-int8
    python -m jaxint8.models.cli generate --model /models/opt-6.7b-int8 --prompt "Hello" --max-new-tokens 20

``--model`` is a Hugging Face checkpoint directory or one written by ``convert``. Text is tokenized
with ``tokenizer.json`` from the model directory (``tokenizers`` package) unless ``--tokenizer``
says otherwise: ``ids`` (the file holds whitespace-separated token ids), ``bytes`` (UTF-8 bytes,
vocabulary ≥ 256) or a path to a ``tokenizer.json``. No network access.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax.numpy as jnp
import numpy as np

from .analysis import OUTLIER_THRESHOLD, outlier_stats, perplexity
from .config import QuantConfig
from .loading import load_pretrained
from .quantized_io import CONFIG_FILE, load_quantized, save_quantized
from .registry import quantize_model

__all__ = ["main", "run", "build_parser"]


class Tokenizer:
    """Encode/decode with ``tokenizer.json`` (``tokenizers``), raw ``bytes`` or literal ``ids``."""

    def __init__(self, spec: str, model_dir: str):
        self.kind = spec if spec in ("ids", "bytes") else "json"
        if self.kind == "json":
            path = os.path.join(model_dir, "tokenizer.json") if spec == "auto" else spec
            if not os.path.isfile(path):
                raise SystemExit(
                    f"error: no tokenizer at {path!r}; pass --tokenizer ids|bytes|PATH/tokenizer.json"
                )
            try:
                from tokenizers import Tokenizer as HFTokenizer
            except ImportError:
                raise SystemExit(
                    "error: the 'tokenizers' package is needed for tokenizer.json (pip install tokenizers)"
                )
            self._tok = HFTokenizer.from_file(path)

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "ids":
            return np.array([int(t) for t in text.split()], np.int32)
        if self.kind == "bytes":
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
        return np.array(self._tok.encode(text).ids, np.int32)

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.kind == "ids":
            return " ".join(map(str, ids))
        if self.kind == "bytes":
            return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
        return self._tok.decode(ids)


def _dtype(name):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


def _load(args, int8: bool):
    """(model, params) from a HF directory or a saved int8 directory."""
    if os.path.isfile(os.path.join(args.model, CONFIG_FILE)):
        return load_quantized(args.model)
    quant = QuantConfig(int8=int8, threshold=args.threshold, skip=tuple(args.skip))
    return load_pretrained(args.model, quant=quant, param_dtype=_dtype(args.dtype), progress=not args.quiet)


def _tokens(args):
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    tokens = Tokenizer(args.tokenizer, args.model).encode(text)
    if args.max_tokens:
        tokens = tokens[: args.max_tokens]
    return tokens


def cmd_perplexity(args) -> dict:
    tokens = _tokens(args)
    model, params = _load(args, int8=False)
    rows = {}
    variants = [("float", model, params)]
    if not model.quant.int8:
        model8, params8 = quantize_model(
            model, params, QuantConfig(int8=True, threshold=args.threshold, skip=tuple(args.skip))
        )
        variants.append(("int8", model8, params8))
    for name, m, p in variants:
        if m.quant.int8:
            name = "int8"
        t0 = time.perf_counter()
        rows[name] = perplexity(
            m, p, tokens, seq_len=args.seq_len, batch_size=args.batch_size, max_windows=args.max_windows
        )
        rows[name]["seconds"] = time.perf_counter() - t0
    print(f"{'model':<8}{'perplexity':>12}{'nll':>10}{'tokens':>10}{'seconds':>10}")
    for name, r in rows.items():
        print(f"{name:<8}{r['perplexity']:>12.4f}{r['nll']:>10.4f}{r['tokens']:>10d}{r['seconds']:>10.2f}")
    if "float" in rows and "int8" in rows:
        rows["int8_vs_float_ppl_rel_diff"] = rows["int8"]["perplexity"] / rows["float"]["perplexity"] - 1
        print(f"int8 vs float perplexity: {100 * rows['int8_vs_float_ppl_rel_diff']:+.3f}%")
    return rows


def cmd_outliers(args) -> dict:
    tokens = _tokens(args)
    model, params = _load(args, int8=args.int8)
    s = outlier_stats(
        model,
        params,
        tokens,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_windows=args.max_windows,
        threshold=args.outlier_threshold,
    )
    print(
        f"outlier statistics (|x| >= {s['threshold']}) over {s['positions']} positions, {s['num_layers']} layers"
    )
    print(f"{'layer':>5}{'dims':>6}{'max pos share':>15}  top dims (dim:max|x|)")
    for lay in s["layers"]:
        top = " ".join(f"{t['dim']}:{t['max_abs']:.1f}" for t in lay["top"][:5])
        print(f"{lay['layer']:>5}{lay['outlier_dims']:>6}{lay['positions_affected']:>15.3f}  {top}")
    print(f"layers with outliers: {100 * s['share_layers_with_outliers']:.1f}%")
    print(
        f"systematic outlier dims (>= {100 * s['criterion']['min_share_layers']:.0f}% of layers, "
        f">= {100 * s['criterion']['min_share_positions']:.0f}% of positions): {s['systematic_dims']}"
    )
    for d in s["dims"][:10]:
        print(
            f"  dim {d['dim']:>6}: {100 * d['share_layers']:5.1f}% of layers, {100 * d['share_positions']:5.1f}% of positions"
        )
    q = s["magnitude_quartiles"]
    print("magnitude quartiles: " + ("none" if q is None else " / ".join(f"{v:.2f}" for v in q)))
    return s


def cmd_convert(args) -> dict:
    model, params = _load(args, int8=True)
    save_quantized(args.out, model, params)
    print(f"saved int8 model to {args.out}")
    return {"out": args.out}


def cmd_generate(args) -> dict:
    from .generation import generate

    model, params = _load(args, int8=args.int8)
    tok = Tokenizer(args.tokenizer, args.model)
    prompts = [tok.encode(p) for p in args.prompt]
    out = generate(
        model,
        params,
        prompts,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )
    texts = [tok.decode(row) for row in out]
    for p, t in zip(args.prompt, texts):
        print(f"{p!r} -> {t!r}")
    return {"prompts": args.prompt, "completions": texts, "tokens": out.tolist()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxint8.models.cli", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, text=True):
        sp.add_argument(
            "--model", required=True, help="local HF checkpoint dir or a dir written by 'convert'"
        )
        if text:
            sp.add_argument("--text", required=True, help="text file")
            sp.add_argument("--seq-len", type=int, default=512)
            sp.add_argument("--batch-size", type=int, default=4)
            sp.add_argument(
                "--max-windows", type=int, default=None, help="evaluate at most this many windows"
            )
            sp.add_argument("--max-tokens", type=int, default=None)
        sp.add_argument(
            "--tokenizer", default="auto", help="auto (MODEL/tokenizer.json) | ids | bytes | PATH"
        )
        sp.add_argument("--threshold", type=float, default=6.0, help="LLM.int8() outlier threshold (0: none)")
        sp.add_argument("--skip", nargs="*", default=["lm_head"], help="projections kept float (fnmatch)")
        sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
        sp.add_argument("--json", default=None, help="also write the results here")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")

    common(sub.add_parser("perplexity", help="float vs int8 perplexity on a text file"))
    sp = sub.add_parser("outliers", help="outlier feature statistics per layer")
    common(sp)
    sp.add_argument("--outlier-threshold", type=float, default=OUTLIER_THRESHOLD)
    sp.add_argument("--int8", action="store_true", help="analyse the int8 model instead of the float one")
    sp = sub.add_parser("convert", help="quantize a HF checkpoint and save int8 + scales + config")
    common(sp, text=False)
    sp.add_argument("--out", required=True)
    sp = sub.add_parser("generate", help="generate from prompts")
    common(sp, text=False)
    sp.add_argument("--prompt", nargs="+", required=True)
    sp.add_argument("--max-new-tokens", type=int, default=32)
    sp.add_argument("--temperature", type=float, default=0.0)
    sp.add_argument("--top-k", type=int, default=0)
    sp.add_argument("--top-p", type=float, default=1.0)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--int8", action="store_true")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    result = {
        "perplexity": cmd_perplexity,
        "outliers": cmd_outliers,
        "convert": cmd_convert,
        "generate": cmd_generate,
    }[args.command](args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


def run() -> int:
    """Console-script entry point (``jaxint8-models ...``): exit status 0."""
    main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(run())
