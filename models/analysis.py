"""Evaluation helpers behind the command-line tool: perplexity and the LLM.int8() paper's outlier
statistics (Dettmers et al. 2022, §4: features with magnitude ≥ 6 in the inputs of the projections).

Example::

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxint8.models import ModelConfig, build_model
    >>> from jaxint8.models.analysis import perplexity, outlier_stats
    >>> cfg = ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 128, "n_embd": 64,
    ...                                 "n_layer": 2, "n_head": 4, "n_positions": 64})
    >>> model = build_model(cfg)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
    >>> tokens = np.arange(200) % 128
    >>> ppl = perplexity(model, params, tokens, seq_len=32)["perplexity"]
    >>> stats = outlier_stats(model, params, tokens, seq_len=32)
    >>> stats["num_layers"]
    2
"""

from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["windows", "perplexity", "outlier_stats", "OUTLIER_THRESHOLD"]

OUTLIER_THRESHOLD = 6.0
_LAYER_RE = re.compile(r"^(?:h|layers)_(\d+)$")


def windows(tokens, seq_len: int, max_windows: int | None = None, model=None) -> np.ndarray:
    """Non-overlapping ``[n, seq_len]`` windows of a 1-D token array (a shorter text: one window).

    With ``model``, ``seq_len`` is capped at its ``max_position_embeddings`` and token ids are
    checked against its vocabulary.
    """
    tokens = np.asarray(tokens, np.int32).reshape(-1)
    if model is not None:
        seq_len = min(seq_len, model.config.max_position_embeddings)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= model.config.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {model.config.vocab_size}), got [{tokens.min()}, {tokens.max()}]"
            )
    if tokens.size < 2:
        raise ValueError("need at least 2 tokens")
    seq_len = min(seq_len, tokens.size)
    n = tokens.size // seq_len
    if max_windows:
        n = min(n, max_windows)
    return tokens[: n * seq_len].reshape(n, seq_len)


@functools.partial(jax.jit, static_argnames=("model",))
def _nll_sum(model, params, ids):
    logits = model.apply({"params": params}, ids)
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1))


def perplexity(
    model, params, tokens, *, seq_len: int = 512, batch_size: int = 4, max_windows: int | None = None
) -> dict:
    """Perplexity of ``model`` on ``tokens`` in non-overlapping windows of ``seq_len`` tokens.

    Returns ``{"perplexity", "nll", "tokens"}`` (``tokens`` = predicted tokens counted).
    """
    w = windows(tokens, seq_len, max_windows, model)
    total, count = 0.0, 0
    for i in range(0, len(w), batch_size):
        batch = w[i : i + batch_size]
        total += float(_nll_sum(model, params, jnp.asarray(batch)))
        count += batch.shape[0] * (batch.shape[1] - 1)
    nll = total / count
    return {"perplexity": float(np.exp(nll)), "nll": nll, "tokens": count}


def _record_inputs(threshold):
    """Interceptor sowing, for every projection, per-dim outlier counts and absmax of its input."""
    from jaxint8.flax import Int8Dense

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        if context.method_name == "__call__" and isinstance(mod, (nn.Dense, Int8Dense)):
            x = jnp.abs(args[0].reshape(-1, args[0].shape[-1]).astype(jnp.float32))
            mod.sow("intermediates", "outlier_count", jnp.sum(x >= threshold, axis=0, dtype=jnp.int32))
            mod.sow("intermediates", "absmax", jnp.max(x, axis=0))
        return next_fun(*args, **kwargs)

    return interceptor


@functools.partial(jax.jit, static_argnames=("model", "threshold"))
def _input_stats(model, params, ids, threshold):
    with nn.intercept_methods(_record_inputs(threshold)):
        _, state = model.apply({"params": params}, ids, mutable=["intermediates"])
    return state["intermediates"]


def _per_layer(tree, hidden, prefix=()):
    """``{layer index: {projection path: (count [h], absmax [h])}}`` for hidden-size inputs."""
    out: dict = {}
    for k, v in tree.items():
        path = prefix + (k,)
        if "outlier_count" in v:
            m = _LAYER_RE.match(path[0])
            count, amax = v["outlier_count"][0], v["absmax"][0]
            if m and count.shape[-1] == hidden:
                out.setdefault(int(m.group(1)), {})[".".join(path)] = (np.asarray(count), np.asarray(amax))
        else:
            for i, d in _per_layer(v, hidden, path).items():
                out.setdefault(i, {}).update(d)
    return out


def outlier_stats(
    model,
    params,
    tokens,
    *,
    seq_len: int = 512,
    batch_size: int = 4,
    max_windows: int | None = 8,
    threshold: float = OUTLIER_THRESHOLD,
    min_layers: float = 0.25,
    min_positions: float = 0.06,
) -> dict:
    """The paper's outlier-feature statistics for ``model`` on ``tokens``.

    For every transformer layer, the inputs of its projections with hidden-size inputs (attention
    q/k/v/out, FFN expansion) are scanned; a hidden dim is an outlier in a layer if some position
    has ``|x| >= threshold`` there (a position counts as affected if it does in any of the layer's
    projection inputs; counts are combined by max over the inputs).

    Returns a dict with, per layer, the outlier dims, the share of positions each affects and its
    largest magnitude; per dim over the model, the share of layers and of positions it affects;
    the dims meeting the paper's criterion (≥ ``min_layers`` of layers and ≥ ``min_positions`` of
    positions) and the quartiles of the outliers' magnitudes (largest |x| per layer and dim).
    """
    hidden = model.config.hidden_size
    acc: dict = {}
    n_pos = 0
    w = windows(tokens, seq_len, max_windows, model)
    for i in range(0, len(w), batch_size):
        batch = w[i : i + batch_size]
        stats = _per_layer(
            jax.device_get(_input_stats(model, params, jnp.asarray(batch), float(threshold))), hidden
        )
        n_pos += batch.size
        for layer, projs in stats.items():
            count = np.max([c for c, _ in projs.values()], axis=0)
            amax = np.max([a for _, a in projs.values()], axis=0)
            if layer in acc:
                acc[layer] = (acc[layer][0] + count, np.maximum(acc[layer][1], amax))
            else:
                acc[layer] = (count, amax)
    num_layers = len(acc)
    layers, dim_layers, dim_pos, magnitudes = [], np.zeros(hidden), np.zeros(hidden), []
    for layer in sorted(acc):
        count, amax = acc[layer]
        dims = np.flatnonzero(amax >= threshold)
        dim_layers[dims] += 1
        dim_pos[dims] += count[dims] / n_pos
        magnitudes += list(amax[dims])
        order = dims[np.argsort(-amax[dims])]
        layers.append(
            {
                "layer": layer,
                "outlier_dims": int(dims.size),
                "positions_affected": float(count[dims].max() / n_pos) if dims.size else 0.0,
                "top": [
                    {"dim": int(d), "max_abs": float(amax[d]), "positions": float(count[d] / n_pos)}
                    for d in order[:8]
                ],
            }
        )
    share_layers = dim_layers / max(num_layers, 1)
    share_pos = np.divide(dim_pos, dim_layers, out=np.zeros(hidden), where=dim_layers > 0)
    systematic = np.flatnonzero((share_layers >= min_layers) & (share_pos >= min_positions))
    any_dims = np.flatnonzero(dim_layers > 0)
    return {
        "threshold": threshold,
        "num_layers": num_layers,
        "positions": n_pos,
        "layers": layers,
        "dims": [
            {"dim": int(d), "share_layers": float(share_layers[d]), "share_positions": float(share_pos[d])}
            for d in any_dims[np.argsort(-share_layers[any_dims])]
        ],
        "systematic_dims": [int(d) for d in systematic],
        "criterion": {"min_share_layers": min_layers, "min_share_positions": min_positions},
        "share_layers_with_outliers": (
            float(np.mean([lay["outlier_dims"] > 0 for lay in layers])) if layers else 0.0
        ),
        "magnitude_quartiles": (
            [float(q) for q in np.percentile(magnitudes, [25, 50, 75])] if magnitudes else None
        ),
    }
