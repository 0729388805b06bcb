"""Demo: quantize a small transformer to LLM.int8() and compare it with the float model.

Run ``python -m jaxint8.demo`` (or ``jaxint8-demo``). It builds a GPT-shaped Flax stack whose
LayerNorm gains carry a few large hidden dimensions (the paper's "emergent outlier features"),
converts every projection to :class:`jaxint8.flax.Int8Dense`, and prints the weight memory, the
agreement of the outputs with the float32 model (with and without the outlier decomposition)
and the forward time of bf16 vs int8. It uses the GPU when JAX has one, the CPU otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxint8
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


def run(d_model=512, n_layers=4, batch=2, seq=128, reps=5, seed=0):
    """Runs the demo and returns its measurements as a dict (also printed)."""
    device = jax.devices()[0]
    print(f"jaxint8 {jaxint8.__version__} demo on {device.platform.upper()} ({device.device_kind}); "
          f"CUDA kernels built: {jaxint8.BUILT_WITH_CUDA}")
    key_p, key_t = jax.random.split(jax.random.key(seed))
    tokens = jax.random.randint(key_t, (batch, seq), 0, 1024)
    cfg = dict(d_model=d_model, n_heads=8, n_layers=n_layers)

    float_model = DemoTransformer(**cfg)
    params = float_model.init(key_p, tokens)["params"]
    params = plant_outlier_features(params, dims=[7, 100, 333 % d_model])

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
    print(f"model: {n_layers} blocks, d_model {d_model}, batch {batch} x {seq} tokens; "
          f"LayerNorm gains x25 on 3 hidden dims (outlier features)")
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    run(d_model=a.d_model, n_layers=a.layers, batch=a.batch, seq=a.seq, reps=a.reps)


if __name__ == "__main__":
    main()
