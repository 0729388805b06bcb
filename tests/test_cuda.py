"""GPU tests of the CUDA FFI handlers: CUDA == CPU handlers on the same inputs.

Integer results (int8 activations, outlier lists and counts) and the column/row absmax must be
bit-identical; float outputs equal within 1e-6 relative for float32 outputs and within one
output ulp for bfloat16/float16, plus, for the outlier term, one more output ulp and the bound
on a float32 sum of ``c`` exact products in another order with the scale applied once
(``(c + 2) * 2^-21 * sum_t |x_t W_deq_t|``: the tensor-core outlier product sums in its own order). Plus accuracy against an f32 matmul of the unquantized inputs
on the paper-style test data. Every test is marked ``gpu`` (tests/conftest.py skips them without a GPU).

The FFI targets are called directly through ``jax.ffi.ffi_call`` so that these tests exercise the
handlers' contract (xla_ffi/handlers.h) independently of the primitives; the same jitted function
runs on the CPU handler when its inputs live on the CPU device and on the CUDA handler when they
live on the GPU. The CUDA handlers also take the kernel options (``jaxint8.KernelOptions``) and
the sm90 workspace result: tests marked with a ``path`` parameter run once per kernel path
(``KERNEL_PATHS``) in this one process.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import jax
import jax.numpy as jnp

pytestmark = pytest.mark.gpu

jaxint8 = pytest.importorskip("jaxint8")

F32, BF16, F16 = jnp.float32, jnp.bfloat16, jnp.float16
ULP = {np.dtype(F32): 1e-6, np.dtype(BF16): 2.0**-8, np.dtype(F16): 2.0**-11}


def _devices():
    return jax.devices("cpu")[0], jax.devices("gpu")[0]


KO = jaxint8.KernelOptions if hasattr(jaxint8, "KernelOptions") else None
# Kernel paths the tests pin (every one must give the CPU handlers' results).
KERNEL_PATHS = {
    "default": {},
    "tiled": dict(gemm="tiled"),            # the sm_80 mma.sync kernel for every aligned GEMM
    "skinny": dict(gemm="skinny"),          # the decode kernels for every size
    "mma": dict(gemm="skinny", decode="mma"),
    "dp4a": dict(gemm="skinny", decode="dp4a"),
    "fusedq": dict(fused_quant="always"),   # the cooperative quantization at every prefill size
    "ksplit4": dict(gemv_ksplit=4),         # the GEMVs with 4 K slices per row
    "loads4": dict(token_loads=4),          # the one-token GEMV's load depths
    "loads6": dict(token_loads=6),
    "outgemm": dict(outliers="gemm"),       # the tensor-core outlier product from one column
    "outepi": dict(outliers="epilogue"),    # the GEMM epilogues for every count
    "tiledgemm": dict(gemm="tiled", outliers="gemm"),
    "outtc": dict(outliers="tensor_epilogue"),  # the sm90 epilogue's columns on the tensor cores
    "pp128": dict(sm90_tile="pingpong128x128"),  # each sm90 configuration at every size
    "pp64": dict(sm90_tile="pingpong64x128"),
    "pp64n": dict(sm90_tile="pingpong64x64"),
    "coop": dict(sm90_tile="cooperative128x256"),
    "pp160": dict(sm90_tile="pingpong64x160"),
    "coop160": dict(sm90_tile="cooperative128x160"),
}


def paths(*names):
    """``pytest.mark.parametrize("path", ...)`` over the named entries of KERNEL_PATHS."""
    return pytest.mark.parametrize("path", [KO(**KERNEL_PATHS[n]) for n in names], ids=names)


def _gpu_extra(options, x, ns):
    """The CUDA handlers' extra attribute and workspace result for a matmul call on ``x``."""
    m, k = x.shape[-2], x.shape[-1]
    size = max(jaxint8.primitives.gemm_workspace_bytes(m, n, k, x.dtype, options) for n in ns)
    return {"options": options.ffi_attributes()}, jax.ShapeDtypeStruct((size,), jnp.uint8)


# ------------------------------------------------------------------ raw FFI calls


def ffi_column_absmax(x):
    out = jax.ShapeDtypeStruct(x.shape[:-2] + x.shape[-1:], jnp.float32)
    return jax.ffi.ffi_call("jaxint8_column_absmax", out)(x)


def ffi_quantize_rows(x, col_amax, threshold):
    lead, h = x.shape[:-2], x.shape[-1]
    outs = (
        jax.ShapeDtypeStruct(x.shape, jnp.int8),
        jax.ShapeDtypeStruct(x.shape[:-1], jnp.float32),
        jax.ShapeDtypeStruct(lead + (h,), jnp.int32),
        jax.ShapeDtypeStruct(lead, jnp.int32),
    )
    return jax.ffi.ffi_call("jaxint8_quantize_rows", outs)(x, col_amax,
                                                           threshold=np.float32(threshold))


def ffi_int8_matmul(xq, row_scale, x, idx, count, wq, w_scale, bias, out_dtype, options=None):
    """The matmul target; ``options`` (a KernelOptions) for the CUDA handler, None for the CPU's."""
    out = jax.ShapeDtypeStruct(x.shape[:-1] + (wq.shape[0],), out_dtype)
    if options is None:
        return jax.ffi.ffi_call("jaxint8_int8_matmul", out)(xq, row_scale, x, idx, count, wq,
                                                            w_scale, bias)
    attrs, workspace = _gpu_extra(options, x, [wq.shape[0]])
    return jax.ffi.ffi_call("jaxint8_int8_matmul", (out, workspace))(
        xq, row_scale, x, idx, count, wq, w_scale, bias, **attrs)[0]


@functools.partial(jax.jit, static_argnames=("threshold", "out_dtype", "skip_absmax", "options"))
def pipeline(x, wq, w_scale, bias, *, threshold, out_dtype, skip_absmax=False, options=None):
    if skip_absmax:
        amax = jnp.zeros(x.shape[:-2] + x.shape[-1:], jnp.float32)
    else:
        amax = ffi_column_absmax(x)
    xq, rs, idx, cnt = ffi_quantize_rows(x, amax, threshold)
    y = ffi_int8_matmul(xq, rs, x, idx, cnt, wq, w_scale, bias, out_dtype, options)
    return amax, xq, rs, idx, cnt, y


@functools.partial(jax.jit, static_argnames=("threshold", "out_dtype", "options"))
def fused(x, wq, w_scale, bias, *, threshold, out_dtype, options=None):
    """The fused target (``options`` as in ffi_int8_matmul); results reordered as ``pipeline``'s
    (amax, xq, rs, idx, cnt, y)."""
    lead, s, h = x.shape[:-2], x.shape[-2], x.shape[-1]
    attrs, extra = {}, ()
    if options is not None:
        attrs, workspace = _gpu_extra(options, x, [wq.shape[0]])
        extra = (workspace,)
    outs = (
        jax.ShapeDtypeStruct(lead + (s, wq.shape[0]), out_dtype),
        jax.ShapeDtypeStruct(lead + (h,), jnp.float32),
        jax.ShapeDtypeStruct(x.shape, jnp.int8),
        jax.ShapeDtypeStruct(lead + (s,), jnp.float32),
        jax.ShapeDtypeStruct(lead + (h,), jnp.int32),
        jax.ShapeDtypeStruct(lead, jnp.int32),
    ) + extra
    y, *rest = jax.ffi.ffi_call("jaxint8_llm_int8_matmul", outs)(
        x, wq, w_scale, bias, threshold=np.float32(threshold), **attrs)
    return (*rest[:5], y)


ORDERED_OUTLIERS = 8  # kOrderedOutliers (xla_ffi/cuda/launch.h)


def token_streamed(x_shape, count, path):
    """Whether the one-token GEMV sums this call's outlier columns from its weight stream (its
    own order) instead of in ascending column order: one token, one batch element, more outlier
    columns than the path's ordered maximum."""
    if len(x_shape) < 2 or x_shape[-2] != 1 or int(np.prod(x_shape[:-2])) != 1:
        return False
    options = path or KO()
    if options.decode in ("dp4a", "mma") or options.gemm not in ("auto", "skinny"):
        return False
    limit = {"epilogue": x_shape[1], "gemm": 0}.get(options.outliers, ORDERED_OUTLIERS)
    return int(np.max(count, initial=0)) > limit


def assert_fused_same(x, wq, ws, bias, threshold, out_dtype, chain_gpu, what="", path=None):
    """The fused target on the GPU == the three-call chain on the GPU, bit for bit (y within the
    outlier-order bound where the one-token GEMV streams the outlier columns)."""
    _, gpu = _devices()
    got = [np.asarray(a) for a in fused(*jax.device_put((x, wq, ws, bias), gpu),
                                        threshold=float(threshold), out_dtype=out_dtype,
                                        options=path or KO())]
    first = 0 if threshold > 0 else 1  # threshold 0: the fused call skips the column pass
    if threshold <= 0:
        assert not got[0].any(), what
    last = len(got) - 1 if token_streamed(np.shape(x), got[4], path) else len(got)
    for a, b in zip(got[first:last], chain_gpu[first:last]):
        np.testing.assert_array_equal(a, b, err_msg=f"fused vs chain: {what}")
    if last < len(got):
        assert_same(chain_gpu, got, out_dtype, f"fused vs chain (streamed outliers): {what}",
                    inputs=(x, wq, ws), bias=bias)


def quantize_weight_np(w):
    """[h, o] float -> (wq [o, h] int8, scale [o] f32), docs/design.md (numpy, round-half-even)."""
    w = np.asarray(w, np.float32)
    cw = np.max(np.abs(w), axis=0)
    mult = np.where(cw == 0, 0.0, 127.0 / np.where(cw == 0, 1.0, cw)).astype(np.float32)
    q = np.clip(np.rint(w * mult), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q.T), cw.astype(np.float32)


def run_both(x, wq, ws, bias, threshold, out_dtype, skip_absmax=False, path=None):
    """The three-call chain on the CPU handlers and on the CUDA handlers (kernel path ``path``)."""
    cpu, gpu = _devices()
    args = (x, wq, ws, bias)
    kw = dict(threshold=float(threshold), out_dtype=out_dtype, skip_absmax=skip_absmax)
    rc = pipeline(*jax.device_put(args, cpu), **kw)
    rg = pipeline(*jax.device_put(args, gpu), **kw, options=path or KO())
    return [np.asarray(a) for a in rc], [np.asarray(a) for a in rg]


def outlier_magnitude(x, wq, ws, idx, count):
    """sum_t |x[i, O_t]| * |W_deq[O_t, j]| per output element (float64; leading dims kept)."""
    x = np.asarray(x, np.float64)
    lead = x.shape[:-2]
    xs = x.reshape((-1,) + x.shape[-2:])
    idx = np.asarray(idx).reshape(-1, x.shape[-1])
    count = np.asarray(count).reshape(-1)
    w_abs = np.abs(np.asarray(wq, np.float64) * (np.asarray(ws, np.float64)[:, None] / 127.0))  # [o, h]
    out = np.zeros(xs.shape[:2] + (w_abs.shape[0],))
    for b in range(xs.shape[0]):
        cols = idx[b, :count[b]]
        out[b] = np.abs(xs[b][:, cols]) @ w_abs[:, cols].T
    return out.reshape(lead + out.shape[1:])


def assert_same(rc, rg, out_dtype, what="", inputs=None, bias=None):
    """CUDA results ``rg`` == CPU results ``rc``; ``inputs`` = (x, wq, ws) widens the float
    tolerance by the outlier-sum order bound (module docstring), and ``bias`` by one float32
    ulp of the sum before the bias is added (the bias can cancel it)."""
    names = ("col_amax", "xq", "row_scale", "outlier_idx", "outlier_count")
    for name, a, b in zip(names, rc[:5], rg[:5]):
        assert a.shape == b.shape and a.dtype == b.dtype, (what, name)
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {name}")  # NaN == NaN here
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {name}")
    yc = rc[5].astype(np.float32)
    yg = rg[5].astype(np.float32)
    assert yc.shape == yg.shape, what
    np.testing.assert_array_equal(np.isnan(yc), np.isnan(yg), err_msg=f"{what}: NaN positions")
    fin = np.isfinite(yc)
    np.testing.assert_array_equal(yc[~fin & ~np.isnan(yc)], yg[~fin & ~np.isnan(yc)],
                                  err_msg=f"{what}: Inf")
    if fin.any():
        ulp = ULP[np.dtype(out_dtype)]
        scale = float(np.max(np.abs(yc[fin]))) if fin.any() else 0.0
        # rtol: one output ulp (f32: 1e-6); atol covers cancellation to near zero.
        tol = ulp * np.abs(yc[fin]) + ulp * 1e-3 * scale + 1e-30
        if inputs is not None and int(np.max(rc[4], initial=0)) > 0:
            mag = outlier_magnitude(*inputs, rc[3], rc[4])
            c = np.broadcast_to(np.asarray(rc[4]).reshape(np.shape(rc[4]) + (1, 1)), mag.shape)
            # another summation order may round to the other neighbour: one whole output ulp
            tol = tol + ulp * np.abs(yc[fin]) + ((c + 2) * 2.0**-21 * mag)[fin]
            if bias is not None and np.size(bias):
                tol = tol + 2.0**-22 * np.broadcast_to(np.abs(np.asarray(bias, np.float64)), yc.shape)[fin]
        bad = np.abs(yg[fin] - yc[fin]) > tol
        assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} outputs differ; max abs diff "
                               f"{np.max(np.abs(yg[fin] - yc[fin]))}, scale {scale}")


# ------------------------------------------------------------------ random cases

S_CHOICES = [0, 1, 2, 3, 5, 8, 9, 16, 17, 31, 64, 100, 129, 200, 257]
H_CHOICES = [1, 7, 16, 33, 64, 100, 128, 208, 256, 336, 528, 1000, 1024]
O_CHOICES = [1, 5, 8, 24, 100, 128, 130, 256, 333, 520]
THRESHOLDS = [0.0, 6.0, 6.0, 2.5, 1e-3, 1e9]


def make_case(seed):
    rng = np.random.default_rng(seed)
    s = int(rng.choice(S_CHOICES))
    h = int(rng.choice(H_CHOICES))
    o = int(rng.choice(O_CHOICES))
    lead = () if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(1, 4, size=rng.integers(1, 3)))
    dtype = [F32, BF16, F16][seed % 3]
    out_dtype = dtype if rng.random() < 0.75 else [F32, BF16, F16][int(rng.integers(3))]
    threshold = float(THRESHOLDS[int(rng.integers(len(THRESHOLDS)))])
    x = rng.standard_normal(lead + (s, h)).astype(np.float32)
    if h > 1 and rng.random() < 0.8:  # planted outlier columns (count varies, sometimes all)
        n_out = int(rng.integers(0, h + 1)) if rng.random() < 0.2 else int(rng.integers(0, min(h, 8) + 1))
        cols = rng.choice(h, size=n_out, replace=False)
        x[..., cols] *= rng.uniform(3, 60, size=n_out).astype(np.float32)
    if s > 1 and rng.random() < 0.5:  # all-zero rows
        rows = rng.choice(s, size=max(1, s // 4), replace=False)
        x[..., rows, :] = 0.0
    w = (0.02 * rng.standard_normal((h, o))).astype(np.float32)
    if o > 1 and rng.random() < 0.2:
        w[:, int(rng.integers(o))] = 0.0  # zero weight column: scale 0
    wq, ws = quantize_weight_np(w)
    bias = (rng.standard_normal(o).astype(np.float32) if rng.random() < 0.5
            else np.zeros((0,), np.float32))
    xj = jnp.asarray(x, dtype)
    return dict(x=xj, wq=jnp.asarray(wq), ws=jnp.asarray(ws), bias=jnp.asarray(bias),
                threshold=threshold, out_dtype=out_dtype,
                desc=f"seed={seed} lead={lead} s={s} h={h} o={o} {np.dtype(dtype).name}->"
                     f"{np.dtype(out_dtype).name} thr={threshold} bias={bias.size > 0}")


@paths("default", "tiled", "skinny", "mma", "dp4a", "fusedq", "outgemm", "outepi", "outtc",
       "pp128", "pp64", "pp64n", "coop", "pp160", "coop160")
@pytest.mark.parametrize("block", range(8))
def test_cuda_matches_cpu_random(block, path):
    n_cases = 240 if path == KO() else 120  # the pinned paths on half as many cases
    for seed in range(block, n_cases, 8):
        c = make_case(seed)
        rc, rg = run_both(c["x"], c["wq"], c["ws"], c["bias"], c["threshold"], c["out_dtype"],
                          path=path)
        assert_same(rc, rg, c["out_dtype"], c["desc"], inputs=(c["x"], c["wq"], c["ws"]), bias=c["bias"])
        assert_fused_same(c["x"], c["wq"], c["ws"], c["bias"], c["threshold"], c["out_dtype"],
                          rg, c["desc"], path)


@pytest.mark.parametrize("dtype", [F32, BF16, F16])
@pytest.mark.parametrize("s,h,o", [(1, 4096, 512), (16, 1024, 1000), (17, 512, 264),
                                   (300, 1024, 520), (1024, 512, 384), (40, 5120, 256),
                                   # decode sizes with wide rows (the early-launch chain)
                                   (2, 40960, 64), (16, 49152, 40),
                                   # many wide rows (more row blocks than SMs), h not a
                                   # multiple of the row pass's 8 x 256 elements per step
                                   (140, 20488, 64), (140, 40968, 40), (140, 65544, 8)])
@paths("default", "tiled", "skinny", "mma", "dp4a", "fusedq")
def test_cuda_matches_cpu_model_shapes(dtype, s, h, o, path):
    rng = np.random.default_rng(s * 7 + h + o)
    x = rng.standard_normal((s, h)).astype(np.float32)
    cols = rng.choice(h, size=6, replace=False)
    x[:, cols] *= rng.uniform(20, 60, size=6).astype(np.float32)
    w = (0.02 * rng.standard_normal((h, o))).astype(np.float32)
    wq, ws = quantize_weight_np(w)
    bias = rng.standard_normal(o).astype(np.float32)
    for thr in (6.0, 0.0):
        args = (jnp.asarray(x, dtype), jnp.asarray(wq), jnp.asarray(ws), jnp.asarray(bias))
        rc, rg = run_both(*args, thr, dtype, path=path)
        assert_same(rc, rg, dtype, f"s={s} h={h} o={o} thr={thr}", inputs=args[:3], bias=bias)
        assert_fused_same(*args, thr, dtype, rg, f"s={s} h={h} o={o} thr={thr}", path)
        if thr == 6.0 and s >= 16:  # with one token a planted column can stay under 6
            assert int(rg[4]) == 6


def test_cuda_threshold_zero_skipped_absmax():
    """threshold 0 as the primitives run it: col_amax = zeros, no outliers."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((33, 200)), BF16)
    wq, ws = quantize_weight_np(0.02 * rng.standard_normal((200, 72)))
    rc, rg = run_both(x, jnp.asarray(wq), jnp.asarray(ws), jnp.zeros((0,), F32), 0.0, BF16,
                      skip_absmax=True)
    assert_same(rc, rg, BF16, "threshold 0")
    assert int(rg[4]) == 0 and (rg[3] == -1).all()


@paths("default", "tiled", "skinny", "mma", "dp4a", "outgemm", "tiledgemm", "outepi")
def test_cuda_all_outliers_chunks(path):
    """Outlier count = h (every column), more than the epilogue's 32-column chunk."""
    rng = np.random.default_rng(2)
    for s in (5, 150):
        x = jnp.asarray(rng.standard_normal((s, 96)) * 10, F32)
        wq, ws = quantize_weight_np(0.02 * rng.standard_normal((96, 136)))
        rc, rg = run_both(x, jnp.asarray(wq), jnp.asarray(ws), jnp.zeros((0,), F32), 1e-3, F32,
                          path=path)
        assert_same(rc, rg, F32, f"all outliers s={s}", inputs=(x, jnp.asarray(wq), jnp.asarray(ws)))
        assert int(rg[4]) == 96
        assert (rg[1] == 0).all()


OUTLIER_COUNTS = (0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 1000, "all")


@pytest.mark.parametrize("dtype", [BF16, F16, F32])
@pytest.mark.parametrize("s,h,o", [(40, 1024, 264), (300, 1024, 136), (5, 1024, 72), (33, 1000, 48),
                                   (1, 1024, 72)])
@paths("default", "tiled", "outgemm", "tiledgemm", "outepi", "outtc", "pp128", "coop", "pp160", "coop160")
def test_cuda_outlier_counts(dtype, s, h, o, path):
    """Exactly k outlier columns for every k of OUTLIER_COUNTS: CUDA == CPU (the prefill GEMMs
    switch from their epilogue to the tensor-core outlier product above 8 columns; h = 1000 is
    unaligned: the decode kernels at every size)."""
    rng = np.random.default_rng(s + h + o)
    w = 0.02 * rng.standard_normal((h, o))
    wq, ws = (jnp.asarray(a) for a in quantize_weight_np(w))
    bias = jnp.asarray(rng.standard_normal(o), F32)
    for k in OUTLIER_COUNTS:
        k = h if k == "all" else min(k, h)
        x = np.clip(rng.standard_normal((s, h)), -5.5, 5.5)  # no column reaches 6 by itself
        cols = rng.choice(h, size=k, replace=False)
        x[:, cols] *= rng.uniform(1, 12, size=k)
        x[rng.integers(s, size=k), cols] = np.where(rng.random(k) < 0.5, -1, 1) * rng.uniform(6.5, 60, size=k)
        xj = jnp.asarray(x, dtype)
        rc, rg = run_both(xj, wq, ws, bias, 6.0, dtype, path=path)
        what = f"s={s} h={h} o={o} k={k} {np.dtype(dtype).name}"
        assert int(rc[4]) == k, what
        assert_same(rc, rg, dtype, what, inputs=(xj, wq, ws), bias=bias)
        assert_fused_same(xj, wq, ws, bias, 6.0, dtype, rg, what, path)


# s = 5: decode-sized, so the fused target chains its kernels with programmatic dependent launch;
# s = 1: the NaN and the Inf in the same row (the fused target runs the one-kernel token GEMV,
# gemv_token.cu; the 32 MiB weight also puts the chain on the dp4a GEMV).
@pytest.mark.parametrize("s,dtype,h,o", [(40, F32, 64, 48), (5, BF16, 64, 48), (1, F16, 64, 48),
                                         (1, BF16, 4096, 8192)])
@paths("default", "fusedq", "ksplit4", "loads4", "loads6")
def test_cuda_nan_and_inf_propagate(s, dtype, h, o, path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((s, h)).astype(np.float32)
    r_nan = min(3, s - 1)
    x[r_nan, 5] = np.nan
    x[s // 2, 7] = np.inf
    wq, ws = quantize_weight_np(0.02 * rng.standard_normal((h, o)))
    for thr in (6.0, 0.0):
        args = (jnp.asarray(x, dtype), jnp.asarray(wq), jnp.asarray(ws), jnp.zeros((0,), F32))
        rc, rg = run_both(*args, thr, F32, path=path)
        _, gpu = _devices()
        rf = [np.asarray(a) for a in fused(*jax.device_put(args, gpu), threshold=thr, out_dtype=F32,
                                           options=path)]
        for got in (rg, rf):
            # NaN payloads may differ: compare masks for the float parts, exact for the rest.
            first = 0 if thr > 0 or got is rg else 1  # fused, threshold 0: col_amax is zeros
            for a, b in zip(rc[first:5], got[first:5]):
                np.testing.assert_array_equal(a, b)
            yc, yg = rc[5], got[5]
            np.testing.assert_array_equal(np.isfinite(yc), np.isfinite(yg))
            assert not np.isfinite(yg[r_nan]).any() and not np.isfinite(yg[s // 2]).any()
            ok = np.isfinite(yc)
            np.testing.assert_allclose(yg[ok], yc[ok], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("h", [4096, 12288])
def test_cuda_accuracy_vs_f32(h):
    """Test data: N(0,1) activations, 6 outlier columns 20-60, N(0, 0.02) weights."""
    rng = np.random.default_rng(h)
    s, o = 256, 1024
    x = rng.standard_normal((s, h)).astype(np.float32)
    cols = rng.choice(h, size=6, replace=False)
    x[:, cols] *= rng.uniform(20, 60, size=6).astype(np.float32)
    w = (0.02 * rng.standard_normal((h, o))).astype(np.float32)
    y_ref = x.astype(np.float64) @ w.astype(np.float64)
    wq, ws = quantize_weight_np(w)
    _, gpu = _devices()
    errs = {}
    for thr in (6.0, 0.0):
        out = pipeline(*jax.device_put((jnp.asarray(x), jnp.asarray(wq), jnp.asarray(ws),
                                        jnp.zeros((0,), F32)), gpu), threshold=thr, out_dtype=F32,
                       options=KO())
        y = np.asarray(out[5], np.float64)
        errs[thr] = np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref)
    print(f"h={h}: rel err threshold 6: {errs[6.0]:.4e}, threshold 0: {errs[0.0]:.4e}")
    # bitsandbytes 0.50.2 on the same kind of data: 1.0e-2 at h=4096,
    # 1.15e-2 at h=12288.
    assert errs[6.0] < (1.1e-2 if h <= 5120 else 1.25e-2)
    assert errs[0.0] > errs[6.0]


def test_cuda_public_op_matches_cpu():
    """Through the public op (primitives -> FFI), when the package provides it."""
    if not hasattr(jaxint8, "llm_int8_matmul"):
        pytest.skip("jaxint8.llm_int8_matmul not available")
    rng = np.random.default_rng(4)
    cpu, gpu = _devices()
    w = 0.02 * rng.standard_normal((520, 264)).astype(np.float32)
    x = rng.standard_normal((2, 37, 520)).astype(np.float32)
    x[..., [3, 100]] *= 30
    x = jnp.asarray(x, BF16)
    f = jax.jit(lambda x, w: jaxint8.llm_int8_matmul(x, jaxint8.quantize_weight(w), threshold=6.0))
    yc = np.asarray(f(*jax.device_put((x, w), cpu)), np.float32)
    yg = np.asarray(f(*jax.device_put((x, w), gpu)), np.float32)
    np.testing.assert_allclose(yg, yc, rtol=2.0**-8, atol=1e-3 * np.abs(yc).max())


@paths("default", "tiled", "skinny", "mma", "dp4a", "fusedq")
@pytest.mark.parametrize("target", ["chain", "fused"])
@pytest.mark.parametrize("s", [3, 64])
def test_cuda_chain_in_one_program(s, target, path):
    """Several layers in one jitted program: long enough for XLA to record the (command-buffer
    compatible) handlers into CUDA graphs; results must still equal the CPU handlers'. "fused" at 3
    tokens records the decode kernels chained by programmatic dependent launch."""
    op = pipeline if target == "chain" else fused
    rng = np.random.default_rng(5 + s)
    h = 256
    x = rng.standard_normal((s, h)).astype(np.float32)
    x[:, [7, 100]] *= 25
    ws = []
    for _ in range(4):
        wq, sc = quantize_weight_np(0.05 * rng.standard_normal((h, h)))
        ws.append((jnp.asarray(wq), jnp.asarray(sc)))

    @functools.partial(jax.jit, static_argnums=2)
    def net(x, ws, options):
        outs = []
        for wq, sc in ws:
            y = op(x, wq, sc, jnp.zeros((0,), F32), threshold=6.0, out_dtype=F32, options=options)[5]
            outs.append(y)
            x = (jnp.tanh(y) * 8.0).astype(x.dtype)
        return outs

    cpu, gpu = _devices()
    x = jnp.asarray(x, F32 if target == "chain" else BF16)
    yc = net(*jax.device_put((x, ws), cpu), None)
    yg = net(*jax.device_put((x, ws), gpu), path)
    for a, b in zip(yc, yg):
        # Layer outputs feed the next layer's quantization, so a last-bit difference (the
        # outlier product's summation order: after the first layer most columns are outliers)
        # can move later layers by more than one ulp; a bf16 layer input turns it into a bf16 ulp.
        a, b = np.asarray(a), np.asarray(b)
        if x.dtype == BF16:
            np.testing.assert_allclose(b, a, rtol=2.0**-7, atol=1e-2 * np.abs(a).max())
        else:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def check_fused_case(lead, s, h, o, n_out, dtype, thresholds=(6.0, 0.0), path=None):
    """The fused target == the three-call chain (every output, bit for bit) == the CPU handlers,
    with n_out planted outlier columns whose every element has |x| >= 20."""
    rng = np.random.default_rng(s * 131 + h + o + n_out)
    x = rng.standard_normal(lead + (s, h)).astype(np.float32)
    cols = rng.choice(h, size=n_out, replace=False)
    mags = rng.uniform(20, 60, size=n_out).astype(np.float32)
    signs = np.where(rng.random(n_out) < 0.5, -1.0, 1.0).astype(np.float32)
    x[..., cols] = signs * mags * (1.0 + np.abs(x[..., cols]) / 6.0)  # every element |x| >= 20
    wq, ws = quantize_weight_np(0.02 * rng.standard_normal((h, o)))
    bias = rng.standard_normal(o).astype(np.float32)
    for thr in thresholds:
        args = (jnp.asarray(x, dtype), jnp.asarray(wq), jnp.asarray(ws), jnp.asarray(bias))
        what = f"lead={lead} s={s} h={h} o={o} outliers={n_out} thr={thr}"
        rc, rg = run_both(*args, thr, dtype, path=path)
        assert_same(rc, rg, dtype, what, inputs=args[:3], bias=bias)
        assert_fused_same(*args, thr, dtype, rg, what, path)
        if thr == 6.0 or thr <= 0:  # planted columns have |x| >= 20, the others rarely reach 6
            assert (rg[4] == (n_out if thr > 0 else 0)).all(), what


# The fused target at decode sizes (the early-launch chain on Hopper): every output, the
# intermediate ones included, equals the three-call chain's bit for bit, over outlier counts
# 0 .. all (more than the epilogue's 32-column chunk), leading batch dims, one to eight tokens and
# rows up to 32768 wide (and one two-token-group case); one token with aligned rows runs the
# one-kernel token GEMV (gemv_token.cu).
@pytest.mark.parametrize("lead,s,h,o,n_out,dtype", [
    ((), 1, 4096, 520, 6, BF16), ((), 1, 20480, 96, 40, BF16), ((), 1, 32768, 33, 6, F16),
    ((), 2, 16384, 64, 0, F32), ((), 3, 1024, 77, 1024, F32), ((), 4, 8192, 130, 70, F16),
    ((), 8, 4096, 48, 6, BF16), ((), 8, 5120, 40, 6, BF16), ((), 5, 16, 24, 16, F32),
    # many outlier columns at 16 tokens (the skinny kernel's epilogue walks them in order)
    ((), 16, 5120, 264, 200, BF16), ((), 16, 4096, 40, 9, F16), ((), 12, 2048, 24, 256, F32),
    ((2, 3), 2, 512, 40, 3, BF16), ((), 13, 4096, 72, 6, BF16),
    # one token per batch element: several batch elements, f32, an odd row width (scalar loads),
    # more batch elements than half the SMs (256-thread row blocks)
    ((3,), 1, 1000, 40, 5, F32), ((2,), 1, 999, 24, 4, BF16), ((70,), 1, 256, 16, 2, F16)])
@paths("default", "mma", "dp4a")
def test_cuda_fused_decode_sizes(lead, s, h, o, n_out, dtype, path):
    check_fused_case(lead, s, h, o, n_out, dtype, path=path)


# The fused targets at one token (decode at batch 1; aligned rows) run quantization and GEMV as one
# persistent kernel (xla_ffi/cuda/gemv_token.cu); these cases are large enough for the three-call
# chain to end in the dp4a GEMV (>= 32 MiB of weights). Every output equals the chain's bit for
# bit up to 8 outlier columns and with outliers="epilogue" at any count (then more than the
# kernel's 128-entry list makes it walk its bitmap); with more, y is within the outlier-order bound
# (the kernel sums them from its weight stream; outliers="gemm": from one column). Counts 0, 6, 40,
# 200 and every column; 1, 2 and 4 K slices per row, several row groups per block (path ksplit4:
# also with slices); both load depths; f32 / bf16 / f16.
@pytest.mark.parametrize("h,o,n_out,dtype,thresholds", [
    (4096, 8192, 6, BF16, (6.0, 0.0)),    # 1 slice, 2 row groups per block
    (20480, 5120, 6, BF16, (6.0,)),       # OPT-13B fc2: 1 slice, 2 row groups per block
    (32768, 1024, 6, BF16, (6.0,)),       # 4 slices
    (16384, 2048, 40, F16, (6.0, 0.0)),   # 2 slices
    (5120, 6560, 200, F32, (6.0,)),       # more outliers than the list holds
    (4112, 3000, 40, BF16, (6.0, 0.0)),   # k % 512 == 16: a partial last load
    (2048, 16384, 0, BF16, (1e-3,))])     # (almost) every column an outlier
@paths("default", "dp4a", "mma", "ksplit4", "loads4", "loads6", "outepi", "outgemm")
def test_cuda_token_gemv(h, o, n_out, dtype, thresholds, path):
    check_fused_case((), 1, h, o, n_out, dtype, thresholds, path=path)


# The fused target at prefill sizes (17+ tokens, one batch element, rows a multiple of 8 and at
# most 8192 wide, up to 128 x 8192 elements by default): one cooperative quantization kernel that
# also stages the sm90 GEMM's outlier operands. Counts 0, 6, more than the staged 128 columns, and
# all; rows from 8 columns (one narrow strip) to 8192; more rows than the kernel has blocks; a
# leading batch dim, wider rows and the larger cases take the chain instead (the larger ones run
# the kernel on path fusedq).
@pytest.mark.parametrize("lead,s,h,o,n_out,dtype", [
    ((), 17, 4096, 256, 6, BF16), ((), 128, 4096, 1024, 6, BF16), ((), 128, 16384, 512, 6, F16),
    ((), 512, 5120, 264, 6, F32), ((), 300, 1024, 136, 0, BF16), ((), 64, 2048, 128, 200, BF16),
    ((), 33, 8, 16, 8, F32), ((), 40, 24, 40, 3, F16), ((), 100, 49152, 64, 6, BF16),
    ((), 100, 12288, 64, 6, BF16), ((), 128, 8192, 264, 40, F16),
    ((), 500, 256, 24, 256, BF16), ((2,), 64, 1024, 64, 6, BF16)])
@paths("default", "fusedq", "tiled", "mma", "dp4a")
def test_cuda_fused_prefill_sizes(lead, s, h, o, n_out, dtype, path):
    check_fused_case(lead, s, h, o, n_out, dtype, path=path)


# The grouped target (q/k/v on one quantized x): on the GPU its outputs equal one fused call per
# weight bit for bit; at decode sizes all weights run as one skinny launch (the blocks of weight i
# follow those of weight i - 1 in one grid), else one GEMM per weight. Unaligned h (odd k) takes
# the generic skinny kernel; several layers in one program are recorded into command buffers.
# Where the one-token GEMV streams the outlier columns (more than 8 at one token), its K slices
# depend on the launch's rows, so group and single calls agree within the CPU comparison's bound.
@pytest.mark.parametrize("lead,s,h,outs,n_out,dtype", [
    ((), 1, 5120, (5120, 1024, 1024), 6, BF16), ((), 1, 4096, (72, 40, 8), 40, F16),
    ((), 1, 4096, (4096, 4096, 1024), 150, F16),  # token GEMV: streamed (or walked: outepi) outliers
    ((), 16, 2048, (512, 256, 256), 6, BF16), ((), 9, 1000, (64, 48), 3, F32),
    ((), 16, 2048, (512, 256, 256), 100, BF16),  # many outlier columns, grouped skinny launch
    ((2, 3), 2, 512, (40, 24, 24, 8), 3, BF16), ((), 3, 100, (33, 17), 2, F32),
    ((), 64, 1024, (256, 128, 128), 6, BF16), ((), 300, 512, (136, 64), 6, F16)])
@paths("default", "mma", "dp4a", "ksplit4", "loads4", "loads6", "outepi")
def test_cuda_group_equals_fused_per_weight(lead, s, h, outs, n_out, dtype, path):
    rng = np.random.default_rng(s * 7 + h + len(outs))
    x = rng.standard_normal(lead + (s, h)).astype(np.float32)
    cols = rng.choice(h, size=n_out, replace=False)
    x[..., cols] *= 30
    ws = [jaxint8.quantize_weight(jnp.asarray(0.02 * rng.standard_normal((h, o)), F32)) for o in outs]
    bs = [jnp.asarray(rng.standard_normal(o), F32) if i % 2 == 0 else None
          for i, o in enumerate(outs)]
    cpu, gpu = _devices()
    x = jnp.asarray(x, dtype)
    for thr in (6.0, 0.0):
        group = jax.jit(lambda x, ws, bs: jaxint8.llm_int8_matmul_group(x, ws, bs, threshold=thr,
                                                                         options=path))
        single = jax.jit(lambda x, w, b: jaxint8.llm_int8_matmul(x, w, b, threshold=thr,
                                                                 options=path))
        yg = group(*jax.device_put((x, ws, bs), gpu))
        yc = group(*jax.device_put((x, ws, bs), cpu))
        for i, (w, b) in enumerate(zip(ws, bs)):
            what = f"lead={lead} s={s} h={h} weight {i} thr={thr}"
            want = single(*jax.device_put((x, w, b), gpu))
            c = np.asarray(yc[i], np.float32)
            count = int((np.abs(np.asarray(x, np.float32).reshape(-1, h)) >= thr).any(0).sum())
            if thr > 0 and token_streamed(x.shape, count, path):
                np.testing.assert_allclose(np.asarray(yg[i], np.float32), np.asarray(want, np.float32),
                                           rtol=ULP[np.dtype(dtype)], atol=1e-3 * np.abs(c).max(),
                                           err_msg=what)
            else:
                np.testing.assert_array_equal(np.asarray(yg[i], np.float32),
                                              np.asarray(want, np.float32), err_msg=what)
            np.testing.assert_allclose(np.asarray(yg[i], np.float32), c,
                                       rtol=ULP[np.dtype(dtype)], atol=1e-3 * np.abs(c).max(),
                                       err_msg=what)


def test_cuda_group_in_one_program():
    """Four grouped layers in one jitted program at 2 tokens (command buffers, early launch)."""
    rng = np.random.default_rng(11)
    h = 512
    layers = []
    for _ in range(4):
        layers.append([jaxint8.quantize_weight(jnp.asarray(0.05 * rng.standard_normal((h, o)), F32))
                       for o in (h, h // 2, h // 2)])

    @functools.partial(jax.jit, static_argnums=2)
    def net(x, layers, grouped):
        outs = []
        for ws in layers:
            ys = (jaxint8.llm_int8_matmul_group(x, ws) if grouped
                  else [jaxint8.llm_int8_matmul(x, w) for w in ws])
            outs += list(ys)
            x = (jnp.tanh(jnp.concatenate(ys, -1)[..., :h]) * 8.0).astype(x.dtype)
        return outs

    x = rng.standard_normal((2, h)).astype(np.float32)
    x[:, [5, 99]] *= 25
    _, gpu = _devices()
    args = jax.device_put((jnp.asarray(x, BF16), layers), gpu)
    for a, b in zip(net(*args, True), net(*args, False)):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
