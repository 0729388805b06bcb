"""Representative jaxint8 CUDA calls for compute-sanitizer (memcheck / racecheck).

Runs every kernel family once on small odd shapes (and one tile-sized case), through the public
API: the three primitives as a chain (column absmax, direct and split/atomic; quantize rows,
vector and scalar paths; skinny GEMM, aligned and generic, 1 and 2 token groups; tiled mma.sync
GEMM with M/N/K tails and outlier chunks > 32; the sm90 GEMM when built), then the same case
through the fused ``llm_int8_matmul`` (at one token with aligned rows: the one-kernel token GEMV;
at decode sizes, <= 16 tokens, the kernels chained by programmatic dependent launch on Hopper; at
17-512 tokens one cooperative quantization kernel that also stages the sm90 GEMM's outliers).
GROUP_CASES run ``llm_int8_matmul_group`` (one skinny launch over several weights at decode
sizes, one GEMM per weight above). Prints one line per call (outlier count, finite outputs). Run
it with XLA_PYTHON_CLIENT_ALLOCATOR=platform so every XLA buffer is its own cudaMalloc allocation
and out-of-bounds accesses are visible.
"""

import argparse
import functools
import sys

import numpy as np

# dtypes by name: jax is imported only once the arguments are parsed.
bf16, f16, f32 = "bfloat16", "float16", "float32"

CASES = [  # (s, h, o, dtype, threshold)
    (1, 100, 37, bf16, 6.0),     # skinny generic (k % 16 != 0), 1 token group
    (3, 1024, 520, f16, 6.0),    # skinny aligned, 1 group
    (13, 512, 264, f32, 1e-3),   # skinny aligned, 2 groups, all columns outliers
    (17, 336, 130, bf16, 6.0),   # tiled (or sm90): M/N/K tails
    (300, 1024, 520, bf16, 2.5), # tiled, many outliers (chunks of 32)
    (130, 100, 24, f32, 6.0),    # odd k -> skinny generic at m > 16
    (1024, 256, 128, f16, 0.0),  # column absmax with row splits (atomics)
    (600, 512, 136, bf16, 6.0),  # sm90 m > 512, short grid: 128x128 ping-pong, outliers
    (1024, 128, 8448, bf16, 6.0),  # sm90 m > 512, >= 2 tiles per SM: cooperative 128x256
    (5, 2048, 77, bf16, 1e-3),   # fused decode chain, all columns outliers (chunks)
    (2, 4096, 40, f32, 6.0),     # fused decode chain, two rows
    (12, 4096, 40, bf16, 6.0),   # fused decode chain, two token groups
    (1, 4096, 1000, bf16, 6.0),  # dp4a GEMV, two K slices per row, partial last block
    (1, 2064, 77, f16, 1e-3),    # dp4a GEMV, all columns outliers (rounds of 32), K tail
    (1, 16384, 40, f32, 6.0),    # dp4a GEMV, four K slices per row
    (128, 4096, 264, bf16, 6.0), # fused prefill quantization + staging (sm90)
    (40, 24, 40, f16, 6.0),      # fused prefill quantization, narrow strips, no staging
    (64, 1024, 136, f32, 1e-3),  # fused prefill, all columns outliers (> staged 128)
    (1, 4096, 8192, bf16, 6.0),  # token GEMV: 2 row groups per block
    (1, 16384, 2048, f32, 6.0),  # token GEMV, 2 K slices
    (1, 2048, 16384, f16, 1e-3), # token GEMV, all columns outliers (bitmap walk)
]
GROUP_CASES = [  # (s, h, outs, dtype, threshold)
    (1, 100, (37, 16, 16), bf16, 6.0),   # generic skinny (odd k), three weights
    (12, 1024, (520, 136, 8), f16, 6.0),  # aligned skinny, two token groups
    (1, 1024, (520, 136, 8), bf16, 6.0),  # dp4a GEMV, three weights
    (64, 512, (264, 40), bf16, 6.0),      # prefill: one GEMM per weight
    (1, 4096, (4096, 4096, 1024), bf16, 6.0),  # token GEMV, three weights
]


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run it under compute-sanitizer, as benchmarks/gpu_check.sh's 'sanitize' phase does: "
               "XLA_PYTHON_CLIENT_ALLOCATOR=platform compute-sanitizer --tool memcheck "
               "--kernel-name kns=jaxint8 --error-exitcode 99 python benchmarks/sanitize_cases.py")
    ap.parse_args(argv)
    import jax
    import jax.numpy as jnp

    import jaxint8
    from jaxint8 import primitives

    try:
        gpu = jax.devices("gpu")[0]
    except RuntimeError:
        sys.exit(f"{ap.prog}: no GPU found (this script runs the CUDA kernels, under compute-sanitizer)")

    @functools.partial(jax.jit, static_argnames=("threshold", "out_dtype"))
    def chain(x, qw, bias, *, threshold, out_dtype):  # the three primitives, as sharded layouts run them
        # column pass even at threshold 0 (quantize_activations skips it there)
        xq, rs, idx, count = primitives.quantize_rows(x, primitives.column_absmax(x), threshold)
        return count, primitives.int8_matmul(xq, rs, x, idx, count, qw.qweight, qw.scale, bias,
                                             out_dtype=out_dtype)

    @functools.partial(jax.jit, static_argnames=("threshold", "out_dtype"))
    def fused(x, qw, bias, *, threshold, out_dtype):  # one custom call
        return jaxint8.llm_int8_matmul(x, qw, bias, threshold=threshold, out_dtype=out_dtype)

    def finite(y):
        return bool(np.isfinite(np.asarray(y, np.float32)).all())

    rng = np.random.default_rng(0)
    for s, h, o, dt, thr in CASES:
        dt = jnp.dtype(dt)
        x = rng.standard_normal((s, h)).astype(np.float32)
        x[:, rng.choice(h, size=min(h, 5), replace=False)] *= 30
        if s > 1:
            x[s // 2] = 0  # a zero row (with one row it would leave no outliers to test)
        qw = jaxint8.quantize_weight(jnp.asarray(0.02 * rng.standard_normal((h, o)), jnp.float32))
        bias = rng.standard_normal(o).astype(np.float32)
        x, qw, bias = jax.device_put((jnp.asarray(x, dt), qw, jnp.asarray(bias)), gpu)
        count, y = jax.block_until_ready(chain(x, qw, bias, threshold=thr, out_dtype=dt))
        print(f"case chain s={s} h={h} o={o} {dt.name} thr={thr}: count={int(count)} finite={finite(y)}",
              flush=True)
        y = jax.block_until_ready(fused(x, qw, bias, threshold=thr, out_dtype=dt))
        print(f"case fused s={s} h={h} o={o} {dt.name} thr={thr}: finite={finite(y)}", flush=True)
    for s, h, outs, dt, thr in GROUP_CASES:
        dt = jnp.dtype(dt)
        x = rng.standard_normal((s, h)).astype(np.float32)
        x[:, rng.choice(h, size=5, replace=False)] *= 30
        ws = [jaxint8.quantize_weight(jnp.asarray(0.02 * rng.standard_normal((h, o)), jnp.float32))
              for o in outs]
        x, ws = jax.device_put((jnp.asarray(x, dt), ws), gpu)
        ys = jax.jit(lambda x, ws: jaxint8.llm_int8_matmul_group(x, ws, threshold=thr))(x, ws)
        jax.block_until_ready(ys)
        print(f"case group s={s} h={h} outs={outs} {dt.name} thr={thr}: "
              f"finite={all(finite(y) for y in ys)}", flush=True)


if __name__ == "__main__":
    main()
