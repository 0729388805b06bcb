"""One-off A/B: model benchmark with the int8 layers' biases in float32 (default) vs bfloat16."""
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, "benchmarks")
import model as M  # noqa: E402

_orig = M.quantize_model


def _bf16_biases(*a, **k):
    m, p = _orig(*a, **k)
    cast = lambda path, x: x.astype(jnp.bfloat16) if str(path[-1].key) == "bias" and x.dtype == jnp.float32 else x  # noqa: E731
    return m, jax.tree_util.tree_map_with_path(cast, p)


if sys.argv[1] == "bf16":
    M.quantize_model = _bf16_biases
M.main(sys.argv[2:])
