"""Test-data builders shared by the test modules.

Random data is reproducible: unless a test passes a seed, `rng()` seeds from the running test's
node id (and how many generators that test already drew), so a failure in CI replays locally.
"""

from __future__ import annotations

import collections
import os
import zlib

import numpy as np
import jax.numpy as jnp

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


_draws_per_test = collections.Counter()


def rng(seed=None):
    if seed is None:
        test_id = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        seed = (zlib.crc32(test_id.encode()), _draws_per_test[test_id])
        _draws_per_test[test_id] += 1
    return np.random.default_rng(seed)


def activations(r, shape, *, outlier_cols=(), outlier_scale=(20.0, 60.0), zero_rows=(),
                dtype=jnp.float32):
    """N(0, 1) activations with planted outlier columns and zero rows.

    Every element of a planted column has one sign and |x| >= mag, mag drawn from outlier_scale,
    so each planted column is an outlier whatever the row count.
    """
    x = r.standard_normal(shape).astype(np.float32)
    for c in outlier_cols:
        mag = r.uniform(*outlier_scale)
        x[..., c] = np.sign(r.standard_normal()) * mag * (1.0 + np.abs(x[..., c]) / 6.0)
    for i in zero_rows:
        x[..., i, :] = 0.0
    return jnp.asarray(x).astype(dtype)


def weight(r, h, o, std=0.02):
    return jnp.asarray((std * r.standard_normal((h, o))).astype(np.float32))


def rel_err(y, ref):
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def design_data(r, s=256, h=1024, o=1024, n_outliers=6):
    """Accuracy data (the paper-style test data): N(0,1) x with 6 outlier columns of magnitude 20-60, N(0, .02) w."""
    cols = r.choice(h, n_outliers, replace=False)
    return activations(r, (s, h), outlier_cols=cols), weight(r, h, o), cols
