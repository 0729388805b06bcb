"""Representative jaxint8 CUDA calls for compute-sanitizer (memcheck / racecheck).

Runs every kernel family once on small odd shapes (and one tile-sized case): column absmax
(direct and split/atomic), quantize rows (vector and scalar paths), skinny GEMM (aligned and
generic, 1 and 2 token groups), tiled mma.sync GEMM (with M/N/K tails, outlier chunks > 32),
and the sm90 GEMM when built. Every case also runs the fused target (at one token with aligned
rows: the one-kernel token GEMV): at decode sizes (<= 16
tokens) its kernels are chained by programmatic dependent launch on Hopper, at 17-512 tokens it
quantizes in one cooperative kernel that also stages the sm90 GEMM's outliers; GROUP_CASES run the grouped
target (one skinny launch over several weights at decode sizes, one GEMM per weight above). Run
with XLA_PYTHON_CLIENT_ALLOCATOR=platform so every XLA buffer is its own cudaMalloc allocation and
out-of-bounds accesses are visible.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxint8  # noqa: E402
from test_cuda import fused, pipeline, quantize_weight_np  # noqa: E402

CASES = [  # (s, h, o, dtype, threshold)
    (1, 100, 37, jnp.bfloat16, 6.0),     # skinny generic (k % 16 != 0), 1 token group
    (3, 1024, 520, jnp.float16, 6.0),    # skinny aligned, 1 group
    (13, 512, 264, jnp.float32, 1e-3),   # skinny aligned, 2 groups, all columns outliers
    (17, 336, 130, jnp.bfloat16, 6.0),   # tiled (or sm90): M/N/K tails
    (300, 1024, 520, jnp.bfloat16, 2.5), # tiled, many outliers (chunks of 32)
    (130, 100, 24, jnp.float32, 6.0),    # odd k -> skinny generic at m > 16
    (1024, 256, 128, jnp.float16, 0.0),  # column absmax with row splits (atomics)
    (600, 512, 136, jnp.bfloat16, 6.0),  # sm90 m > 512, short grid: 128x128 ping-pong, outliers
    (1024, 128, 8448, jnp.bfloat16, 6.0),  # sm90 m > 512, >= 2 tiles per SM: cooperative 128x256
    (5, 2048, 77, jnp.bfloat16, 1e-3),   # fused decode chain, all columns outliers (chunks)
    (2, 4096, 40, jnp.float32, 6.0),     # fused decode chain, two rows
    (12, 4096, 40, jnp.bfloat16, 6.0),   # fused decode chain, two token groups
    (1, 4096, 1000, jnp.bfloat16, 6.0),  # dp4a GEMV, two K slices per row, partial last block
    (1, 2064, 77, jnp.float16, 1e-3),    # dp4a GEMV, all columns outliers (rounds of 32), K tail
    (1, 16384, 40, jnp.float32, 6.0),    # dp4a GEMV, four K slices per row
    (128, 4096, 264, jnp.bfloat16, 6.0), # fused prefill quantization + staging (sm90)
    (40, 24, 40, jnp.float16, 6.0),      # fused prefill quantization, narrow strips, no staging
    (64, 1024, 136, jnp.float32, 1e-3),  # fused prefill, all columns outliers (> staged 128)
    (1, 4096, 8192, jnp.bfloat16, 6.0),  # token GEMV: 2 row groups per block
    (1, 16384, 2048, jnp.float32, 6.0),  # token GEMV, 2 K slices
    (1, 2048, 16384, jnp.float16, 1e-3), # token GEMV, all columns outliers (bitmap walk)
]
GROUP_CASES = [  # (s, h, outs, dtype, threshold)
    (1, 100, (37, 16, 16), jnp.bfloat16, 6.0),   # generic skinny (odd k), three weights
    (12, 1024, (520, 136, 8), jnp.float16, 6.0),  # aligned skinny, two token groups
    (1, 1024, (520, 136, 8), jnp.bfloat16, 6.0),  # dp4a GEMV, three weights
    (64, 512, (264, 40), jnp.bfloat16, 6.0),      # prefill: one GEMM per weight
    (1, 4096, (4096, 4096, 1024), jnp.bfloat16, 6.0),  # token GEMV, three weights
]


def main():
    gpu = jax.devices("gpu")[0]
    rng = np.random.default_rng(0)
    for s, h, o, dt, thr in CASES:
        x = rng.standard_normal((s, h)).astype(np.float32)
        x[:, rng.choice(h, size=min(h, 5), replace=False)] *= 30
        if s > 1:
            x[s // 2] = 0  # a zero row (with one row it would leave no outliers to test)
        wq, ws = quantize_weight_np(0.02 * rng.standard_normal((h, o)))
        bias = rng.standard_normal(o).astype(np.float32)
        args = jax.device_put((jnp.asarray(x, dt), jnp.asarray(wq), jnp.asarray(ws), jnp.asarray(bias)), gpu)
        for name, op in [("chain", pipeline), ("fused", fused)]:
            out = op(*args, threshold=thr, out_dtype=dt)
            jax.block_until_ready(out)
            print(f"case {name} s={s} h={h} o={o} {jnp.dtype(dt).name} thr={thr}: count={int(out[4])} "
                  f"finite={bool(np.isfinite(np.asarray(out[5], np.float32)).all())}", flush=True)
    for s, h, outs, dt, thr in GROUP_CASES:
        x = rng.standard_normal((s, h)).astype(np.float32)
        x[:, rng.choice(h, size=5, replace=False)] *= 30
        ws = [jaxint8.quantize_weight(jnp.asarray(0.02 * rng.standard_normal((h, o)), jnp.float32))
              for o in outs]
        x, ws = jax.device_put((jnp.asarray(x, dt), ws), gpu)
        ys = jax.jit(lambda x, ws: jaxint8.llm_int8_matmul_group(x, ws, threshold=thr))(x, ws)
        jax.block_until_ready(ys)
        print(f"case group s={s} h={h} outs={outs} {jnp.dtype(dt).name} thr={thr}: "
              f"finite={all(bool(np.isfinite(np.asarray(y, np.float32)).all()) for y in ys)}",
              flush=True)


if __name__ == "__main__":
    main()
