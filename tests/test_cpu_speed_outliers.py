"""The CPU matmul handler (xla_ffi/cpu/matmul_cpu.cc) against a float32 numpy emulation of the
numeric rules of docs/design.md, bit for bit.

The handler computes the int8 part with packed GEMMs (AVX-512 VNNI, AVX2 vpmaddwd, or a small
dot-product tile, picked at run time and by the row count) and the outlier part as a blocked
product vectorized across output columns. Both must give exactly what the scalar rule gives:
the int8 accumulator is the exact integer product; the outlier part of each element sums over the
outlier columns in ascending order, ``o = o + x[i, c_t] * (wq[j, c_t] * (cs[j] / 127))`` with a
separate multiply and add (no FMA), then ``v = acc * (rs * cs * (1/16129)); v = v + o; v = v + bias``.
The emulation below performs the same float32 operations in the same order with numpy, which
rounds each one (no contraction), so the outputs must match exactly.
"""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxint8
from jaxint8 import primitives

F32 = np.float32
INV_RANGE_SQ = F32(1.0) / F32(16129.0)
THRESHOLD = 6.0
KS = (0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 1000, "all")
DTYPES = (jnp.bfloat16, jnp.float16, jnp.float32)

CPU = jax.devices("cpu")[0]


def _bits(a):
    a = np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


def ref_quantize(xf, threshold):
    """Steps 1-2 on one [s, h] float32 problem: (xq, row_scale, outlier columns ascending)."""
    amax = np.max(np.abs(xf), axis=0)
    mask = ~(amax < F32(threshold)) if threshold > 0 else np.zeros(xf.shape[1], bool)
    kept = np.where(mask[None, :], F32(0), xf)
    rs = np.max(np.abs(kept), axis=1).astype(F32)
    safe = np.where(rs == 0, F32(1), rs)
    mult = np.where(rs == 0, F32(0), F32(127) / safe).astype(F32)
    v = (kept * mult[:, None]).astype(F32)
    v = np.where(np.abs(v) <= F32(3.0e38), v, F32(0))
    xq = np.rint(np.clip(v, F32(-127), F32(127))).astype(np.int8)
    return xq, rs, np.flatnonzero(mask)


def ref_int8_matmul(xq, rs, xf, idx, wq, cs, bias, out_dtype):
    """Steps 3-6 on one [s, h] problem, in the handler's float32 operation order."""
    acc = xq.astype(np.int64) @ wq.astype(np.int64).T
    assert np.all(np.abs(acc) < 2**31)
    y = acc.astype(F32) * ((rs[:, None] * cs[None, :]) * INV_RANGE_SQ)
    wdeq = wq.astype(F32) * (cs / F32(127))[:, None]  # [o, h]
    o = np.zeros(y.shape, F32)
    for c in idx:  # ascending
        o = o + xf[:, c:c + 1] * wdeq[None, :, c]
    y = y + o
    if bias is not None:
        y = y + bias[None, :]
    return y.astype(out_dtype)


def _problem(rng, m, h, o, k, dtype):
    """x [m, h] of `dtype` with exactly k outlier columns (|x| >= 6 in one row), and a weight."""
    x = np.clip(rng.standard_normal((m, h)), -5.5, 5.5).astype(F32)
    x[rng.random((m, h)) < 0.02] = 0.0
    cols = rng.choice(h, size=k, replace=False)
    rows = rng.integers(0, m, size=k)
    x[rows, cols] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(6.5, 40.0, size=k)
    x = np.asarray(jnp.asarray(x, dtype))
    w = (0.05 * rng.standard_normal((h, o))).astype(F32)
    w[:, rng.integers(0, o)] = 0.0  # a zero column: scale 0
    weight = jaxint8.quantize_weight(jnp.asarray(w))
    bias = (0.1 * rng.standard_normal(o)).astype(F32)
    return x, weight, bias


@jax.jit
def _fused(x, weight, bias):
    return jaxint8.llm_int8_matmul(x, weight, bias, threshold=THRESHOLD)


@jax.jit
def _fused_nobias(x, weight):
    return jaxint8.llm_int8_matmul(x, weight, threshold=THRESHOLD)


def _check_case(rng, m, h, o, k, dtype, with_bias):
    k = h if k == "all" else k
    x, weight, bias = _problem(rng, m, h, o, k, dtype)
    with jax.default_device(CPU):
        xj = jnp.asarray(x)
        y = _fused(xj, weight, jnp.asarray(bias)) if with_bias else _fused_nobias(xj, weight)
        xq_h, rs_h, idx_h, count_h = jaxint8.quantize_activations(xj, threshold=THRESHOLD)
    xf = x.astype(F32)
    xq, rs, idx = ref_quantize(xf, THRESHOLD)
    assert len(idx) == k == int(count_h)
    np.testing.assert_array_equal(np.asarray(idx_h)[:k], idx)
    np.testing.assert_array_equal(np.asarray(xq_h), xq)
    np.testing.assert_array_equal(_bits(rs_h), _bits(rs))
    wq, cs = np.asarray(weight.qweight), np.asarray(weight.scale)
    want = ref_int8_matmul(xq, rs, xf, idx, wq, cs, bias if with_bias else None, x.dtype)
    assert y.dtype == want.dtype
    np.testing.assert_array_equal(_bits(y), _bits(want), err_msg=f"m={m} h={h} o={o} k={k}")


# (m, h, o): odd sizes; m=5 takes the small-m dot tile, m=200 splits rows between tasks.
SHAPES = [(37, 1000, 131), (37, 1024, 131), (200, 256, 70), (5, 300, 67)]


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_outlier_counts_bit_exact(shape, dtype, with_bias):
    m, h, o = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, jnp.dtype(dtype).name, with_bias)).encode()))
    for k in KS:
        if k != "all" and k > h:
            continue
        _check_case(rng, m, h, o, k, dtype, with_bias)


def test_vmapped_batches_bit_exact():
    """Leading dims: every batch element has its own outlier set (k = 0, 17, 129, all)."""
    rng = np.random.default_rng(7)
    m, h, o = 24, 160, 96
    xs, ws = [], None
    for k in (0, 17, 129, h):
        x, weight, bias = _problem(rng, m, h, o, k, jnp.bfloat16)
        xs.append(x)
        ws = ws or (weight, bias)
    weight, bias = ws
    x = np.stack(xs)
    with jax.default_device(CPU):
        y = jax.jit(jax.vmap(lambda a: jaxint8.llm_int8_matmul(a, weight, jnp.asarray(bias),
                                                                 threshold=THRESHOLD)))(x)
    wq, cs = np.asarray(weight.qweight), np.asarray(weight.scale)
    for b in range(x.shape[0]):
        xf = x[b].astype(F32)
        xq, rs, idx = ref_quantize(xf, THRESHOLD)
        want = ref_int8_matmul(xq, rs, xf, idx, wq, cs, bias, x.dtype)
        np.testing.assert_array_equal(_bits(y[b]), _bits(want))


def _int8_part(xq, wq, m_rows=None):
    """The handler's int8 GEMM alone (no outliers, f32 out, row_scale 1, scale 16129)."""
    s, h = xq.shape
    o = wq.shape[0]
    rs = np.ones(s, F32)
    cs = np.full(o, 16129.0, F32)
    with jax.default_device(CPU):
        y = jax.jit(primitives.int8_matmul)(
            jnp.asarray(xq), jnp.asarray(rs), jnp.zeros((s, h), jnp.float32),
            jnp.full((h,), -1, jnp.int32), jnp.zeros((), jnp.int32), jnp.asarray(wq),
            jnp.asarray(cs))
    mult = (rs[:, None] * cs[None, :]) * INV_RANGE_SQ
    return np.asarray(y), mult


@pytest.mark.parametrize("m,h,o", [(37, 1000, 131), (5, 77, 9), (64, 384, 1536), (9, 3, 65)])
def test_int8_part_exact(m, h, o):
    """The full int8 range, -128 included, against an exact int64 product."""
    rng = np.random.default_rng(m * 7 + h)
    xq = rng.integers(-128, 128, (m, h)).astype(np.int8)
    wq = rng.integers(-128, 128, (o, h)).astype(np.int8)
    xq[0, :] = -128
    wq[0, :] = -128
    wq[-1, :] = 127
    acc = xq.astype(np.int64) @ wq.astype(np.int64).T
    y, mult = _int8_part(xq, wq)
    np.testing.assert_array_equal(_bits(y), _bits(acc.astype(F32) * mult))
    # Where |acc| < 2**22 (mult is within 2**-23 of 1) the output is the integer itself.
    assert abs(float(mult[0, 0]) - 1.0) < 2**-22
    small = np.abs(acc) < 2**22
    assert small.mean() > 0.9
    np.testing.assert_array_equal(np.rint(y.astype(np.float64)).astype(np.int64)[small],
                                  acc[small])


def test_int8_part_widest():
    """in_features = MAX_IN_FEATURES with every product 127^2: the accumulator near 2^31
    (the VNNI path's biased sums wrap around int32 and must still come out exact)."""
    h = jaxint8.MAX_IN_FEATURES
    m, o = 8, 3
    xq = np.full((m, h), 127, np.int8)
    xq[1] = -127
    xq[2, ::2] = -127
    wq = np.full((o, h), 127, np.int8)
    wq[1] = -127
    acc = xq.astype(np.int64) @ wq.astype(np.int64).T
    assert np.abs(acc).max() < 2**31
    y, mult = _int8_part(xq, wq)
    np.testing.assert_array_equal(_bits(y), _bits(acc.astype(F32) * mult))

