"""Command-line tool: ``jaxint8-models {perplexity,outliers,convert,generate,embed} ...``.

Examples::

    # float vs int8 perplexity, side by side
    jaxint8-models perplexity --model /models/opt-1.3b --text wiki.txt --seq-len 1024
    # the paper's outlier statistics (|x| >= 6 in projection inputs), per layer
    jaxint8-models outliers --model /models/opt-6.7b --text wiki.txt --json out.json
    # quantize once, save int8 + scales + config
    jaxint8-models convert --model /models/opt-6.7b --out /models/opt-6.7b-int8
    jaxint8-models generate --model /models/opt-6.7b-int8 --prompt "Hello" --max-new-tokens 20
    # sentence embeddings of a BERT encoder (one sentence per line -> [N, hidden] float32 .npy)
    jaxint8-models embed --model "$(python -c 'import jaxint8.models as m; print(m.minilm_path())')" \
        --text sentences.txt --out emb.npy --int8

``python -m jaxint8.models.cli`` is the same program (from outside the repository checkout, whose
``jaxint8/`` folder would shadow the installed package).

``--model`` is a Hugging Face checkpoint directory or one written by ``convert``. Text is tokenized
with ``tokenizer.json`` from the model directory (``tokenizers`` package) unless ``--tokenizer``
says otherwise: ``ids`` (the file holds whitespace-separated token ids), ``bytes`` (UTF-8 bytes,
vocabulary ≥ 256) or a path to a ``tokenizer.json``. No network access.

Bad arguments (a missing directory or file, a non-positive size, a non-finite threshold) and
checkpoints that cannot be used end the program with one line on stderr,
``jaxint8-models: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax.numpy as jnp
import numpy as np

from jaxint8._cli import int_at_least

from .analysis import OUTLIER_THRESHOLD, outlier_stats, perplexity
from .config import QuantConfig
from .loading import load_pretrained
from .quantized_io import CONFIG_FILE, load_quantized, save_quantized
from .registry import quantize_model

__all__ = ["main", "run", "build_parser", "UsageError"]

PROG = "jaxint8-models"


class UsageError(ValueError):
    """A command-line argument that cannot be used (the message names it)."""


class Tokenizer:
    """Encode/decode with ``tokenizer.json`` (``tokenizers``), raw ``bytes`` or literal ``ids``."""

    def __init__(self, spec: str, model_dir: str):
        self.kind = spec if spec in ("ids", "bytes") else "json"
        if self.kind == "json":
            path = os.path.join(model_dir, "tokenizer.json") if spec == "auto" else spec
            if not os.path.isfile(path):
                raise UsageError(
                    f"--tokenizer {spec}: no tokenizer file {path}; pass --tokenizer ids, bytes or "
                    f"PATH/tokenizer.json"
                )
            try:
                from tokenizers import Tokenizer as HFTokenizer
            except ImportError:
                raise UsageError(
                    f"--tokenizer {spec}: reading {path} needs the 'tokenizers' package "
                    f'(pip install "jaxint8[models]"), or pass --tokenizer ids|bytes'
                ) from None
            self._tok = HFTokenizer.from_file(path)
            # BERT tokenizer.json files carry truncation/padding to 128 tokens: text is windowed here.
            self._tok.no_truncation()
            self._tok.no_padding()

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "ids":
            try:
                return np.array([int(t) for t in text.split()], np.int32)
            except ValueError:
                raise UsageError(
                    "--tokenizer ids: the text must be whitespace-separated integer token ids"
                ) from None
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
    try:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"--text {args.text}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    tokens = Tokenizer(args.tokenizer, args.model).encode(text)
    if args.max_tokens:
        tokens = tokens[: args.max_tokens]
    return tokens


def _require_lm(args, model) -> None:
    if model.config.model_type == "bert":
        raise UsageError(
            f"--model {args.model}: a 'bert' encoder has no language-model head; "
            f"'{args.command}' needs gpt2, opt or llama (use 'embed' or 'outliers' for bert)"
        )


def cmd_perplexity(args) -> dict:
    tokens = _tokens(args)
    model, params = _load(args, int8=False)
    _require_lm(args, model)
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
    _require_lm(args, model)
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


def _sentences(args) -> list[str]:
    try:
        with open(args.text, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
    except UnicodeDecodeError as e:
        raise UsageError(f"--text {args.text}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise UsageError(f"--text {args.text}: no sentences (one per line; blank lines are skipped)")
    return lines


def _encode_sentences(args, sentences, max_length):
    """Padded ``(input_ids, attention_mask, token_type_ids)`` for ``sentences``."""
    if args.tokenizer in ("ids", "bytes"):
        tok = Tokenizer(args.tokenizer, args.model)
        rows = [tok.encode(s)[:max_length] for s in sentences]
        T = max(len(r) for r in rows)
        ids, mask = np.zeros((len(rows), T), np.int32), np.zeros((len(rows), T), np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return ids, mask, np.zeros_like(ids)
    from .embedding import TextEncoder

    path = args.model if args.tokenizer == "auto" else args.tokenizer
    b = TextEncoder(path, max_length=max_length).encode(sentences)
    return b["input_ids"], b["attention_mask"], b["token_type_ids"]


def cmd_embed(args) -> dict:
    from .embedding import embed

    sentences = _sentences(args)
    model, params = _load(args, int8=args.int8)
    if model.config.model_type != "bert":
        raise UsageError(
            f"--model {args.model}: 'embed' needs a 'bert' encoder, this is {model.config.model_type!r}"
        )
    max_length = min(args.max_length or model.config.max_position_embeddings,
                     model.config.max_position_embeddings)
    if args.max_length is None and args.tokenizer == "auto":
        max_length = None  # sentence_bert_config.json's max_seq_length, else 512
    ids, mask, types = _encode_sentences(args, sentences, max_length)
    if ids.size and (ids.min() < 0 or ids.max() >= model.config.vocab_size):
        raise UsageError(f"--text {args.text}: token ids must lie in [0, {model.config.vocab_size}), "
                         f"got [{ids.min()}, {ids.max()}]")
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(sentences), args.batch_size):
        sl = slice(i, i + args.batch_size)
        out.append(np.asarray(embed(model, params, ids[sl], mask[sl], types[sl],
                                    normalize=not args.no_normalize)))
    emb = np.concatenate(out).astype(np.float32)
    seconds = time.perf_counter() - t0
    np.save(args.out, emb)
    kind = "int8" if model.quant.int8 else "float"
    print(f"embedded {len(sentences)} sentences with the {kind} model in {seconds:.2f} s "
          f"-> {args.out} ({emb.shape[0]} x {emb.shape[1]} float32)")
    return {"sentences": len(sentences), "shape": list(emb.shape), "out": args.out,
            "int8": bool(model.quant.int8), "seconds": seconds}


def _float_in(low, high=math.inf, *, low_open=False, what=None):
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        if not math.isfinite(v) or v < low or (low_open and v == low) or v > high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {s}")
        return v

    parse.__name__ = what
    return parse


_THRESHOLD = _float_in(0.0, what="a finite number >= 0 (0 disables the outlier decomposition)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="run `jaxint8-models COMMAND --help` for its options")

    def common(sp, text=True):
        sp.add_argument(
            "--model", required=True, metavar="DIR",
            help="local Hugging Face checkpoint directory (config.json + *.safetensors) or a "
            "directory written by 'convert'",
        )
        if text:
            sp.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text file to evaluate on")
            sp.add_argument("--seq-len", type=int_at_least(1), default=512,
                            help="tokens per window (capped at the model's context; default 512)")
            sp.add_argument("--batch-size", type=int_at_least(1), default=4,
                            help="windows per forward pass (default 4)")
            sp.add_argument("--max-windows", type=int_at_least(1), default=None,
                            help="evaluate at most this many windows (default: all)")
            sp.add_argument("--max-tokens", type=int_at_least(2), default=None,
                            help="use only the first N tokens of the text (default: all)")
        sp.add_argument(
            "--tokenizer", default="auto", metavar="auto|ids|bytes|PATH",
            help="auto: DIR/tokenizer.json (needs the 'tokenizers' package); ids: the text is "
            "whitespace-separated token ids; bytes: UTF-8 bytes; or a path to a tokenizer.json",
        )
        sp.add_argument("--threshold", type=_THRESHOLD, default=6.0,
                        help="LLM.int8() outlier threshold (default 6; 0: no decomposition)")
        sp.add_argument("--skip", nargs="*", default=["lm_head"], metavar="PATTERN",
                        help="projections kept float (fnmatch patterns; default: lm_head)")
        sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype of the float parameters (default float32)")
        sp.add_argument("--json", default=None, metavar="FILE", help="also write the results here")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")

    common(sub.add_parser("perplexity", help="float vs int8 perplexity on a text file"))
    sp = sub.add_parser("outliers", help="outlier feature statistics per layer")
    common(sp)
    sp.add_argument("--outlier-threshold", type=_float_in(0.0, low_open=True, what="a finite number > 0"),
                    default=OUTLIER_THRESHOLD,
                    help=f"|x| at which a feature counts as an outlier (default {OUTLIER_THRESHOLD:g})")
    sp.add_argument("--int8", action="store_true", help="analyse the int8 model instead of the float one")
    sp = sub.add_parser("convert", help="quantize a HF checkpoint and save int8 + scales + config")
    common(sp, text=False)
    sp.add_argument("--out", required=True, metavar="DIR", help="directory to write (created if missing)")
    sp = sub.add_parser("generate", help="generate from prompts")
    common(sp, text=False)
    sp.add_argument("--prompt", nargs="+", required=True, help="one or more prompts")
    sp.add_argument("--max-new-tokens", type=int_at_least(1), default=32,
                    help="tokens to generate per prompt (default 32)")
    sp.add_argument("--temperature", type=_float_in(0.0, what="a finite number >= 0"), default=0.0,
                    help="sampling temperature (default 0: greedy)")
    sp.add_argument("--top-k", type=int_at_least(0), default=0,
                    help="sample from the k most likely tokens (default 0: all)")
    sp.add_argument("--top-p", type=_float_in(0.0, 1.0, low_open=True, what="a number in (0, 1]"),
                    default=1.0, help="nucleus sampling mass (default 1: off)")
    sp.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sp.add_argument("--int8", action="store_true",
                    help="quantize a float checkpoint on load (a converted DIR is int8 already)")
    sp = sub.add_parser("embed", help="sentence embeddings of a BERT encoder (mean pooling + L2 norm)")
    common(sp, text=False)
    sp.add_argument("--text", required=True, metavar="FILE",
                    help="UTF-8 text file, one sentence per line (blank lines are skipped)")
    sp.add_argument("--out", required=True, metavar="FILE.npy",
                    help="where to write the [sentences, hidden] float32 embeddings (numpy .npy)")
    sp.add_argument("--int8", action="store_true",
                    help="quantize a float checkpoint on load (a converted DIR is int8 already)")
    sp.add_argument("--batch-size", type=int_at_least(1), default=64,
                    help="sentences per forward pass (default 64)")
    sp.add_argument("--max-length", type=int_at_least(1), default=None,
                    help="tokens per sentence after truncation (default: max_seq_length of "
                    "sentence_bert_config.json, else the model's context)")
    sp.add_argument("--no-normalize", action="store_true",
                    help="write the mean-pooled embeddings without L2 normalization")
    return p


def _check_paths(args) -> None:
    """Raises :class:`UsageError` for a path argument that cannot work, before any loading."""
    if not os.path.isdir(args.model):
        what = "not a directory" if os.path.exists(args.model) else "no such directory"
        raise UsageError(f"--model {args.model}: {what}")
    if not any(os.path.isfile(os.path.join(args.model, f)) for f in ("config.json", CONFIG_FILE)):
        raise UsageError(
            f"--model {args.model}: no config.json (a Hugging Face checkpoint) or {CONFIG_FILE} "
            f"(written by 'convert') in it"
        )
    text = getattr(args, "text", None)
    if text is not None and not os.path.isfile(text):
        what = "not a file" if os.path.exists(text) else "no such file"
        raise UsageError(f"--text {text}: {what}")
    out = getattr(args, "out", None)
    if args.command == "embed":
        if not out.endswith(".npy"):
            raise UsageError(f"--out {out}: must be a .npy file name (numpy.save appends .npy otherwise)")
        if os.path.isdir(out):
            raise UsageError(f"--out {out}: is a directory; give a FILE.npy")
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise UsageError(f"--out {out}: directory {parent} does not exist")
    elif out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory")
    if args.json is not None:
        parent = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(parent):
            raise UsageError(f"--json {args.json}: directory {parent} does not exist")
    if args.command in ("perplexity", "outliers", "generate", "embed"):
        Tokenizer(args.tokenizer, args.model)  # a missing tokenizer fails here, before loading


def main(argv=None) -> dict:
    """Runs one command (``argv`` as on the command line) and returns its results.

    Bad arguments and unusable checkpoints exit (``SystemExit(2)``) with one line on stderr
    (``jaxint8-models: error: --model DIR: no such directory``); malformed options also print
    the usage, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {
        "perplexity": cmd_perplexity,
        "outliers": cmd_outliers,
        "convert": cmd_convert,
        "generate": cmd_generate,
        "embed": cmd_embed,
    }[args.command]
    try:
        _check_paths(args)
        result = command(args)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=2)
    except (ValueError, OSError) as e:  # UsageError, ConfigError, CheckpointError are ValueErrors
        # ValueError: data the command cannot use (token ids outside the vocabulary, a prompt
        # longer than the context, ...); the message names it.
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(e).split())}\n")
    return result


def run(argv=None) -> int:
    """Console-script entry point (``jaxint8-models ...``); returns the exit status 0."""
    main(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(run())
