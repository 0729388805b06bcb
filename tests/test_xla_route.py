"""KernelOptions(route="xla"): LLM.int8() on XLA's int8 dot with the outlier columns as int8
digit rows (jaxint8/xla_route.py), against the reference and the kernels. On a GPU machine the
same tests run on the GPU against the CUDA kernels (benchmarks/gpu_check.sh runs this file with
tests/test_cuda.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxint8
from jaxint8 import reference, xla_route
from tests.data import rng

XLA = jaxint8.KernelOptions(route="xla")
KERNELS = jaxint8.KernelOptions(route="kernels")
OUTLIER_COUNTS = (0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 1000, "all")
ULP = {jnp.dtype(jnp.float32): 2.0**-24, jnp.dtype(jnp.bfloat16): 2.0**-8,
       jnp.dtype(jnp.float16): 2.0**-11}


def planted(r, s, h, k, dtype):
    """x [s, h] whose outlier columns at threshold 6 are exactly k random columns, with values
    spread over a wide range inside each column (some far below the row's largest)."""
    x = np.clip(r.standard_normal((s, h)), -5.5, 5.5)
    cols = r.choice(h, size=k, replace=False)
    x[:, cols] *= r.uniform(1, 12, size=k)
    big = r.integers(s, size=k)
    x[big, cols] = np.where(r.random(k) < 0.5, -1, 1) * r.uniform(6.5, 60, size=k)
    if k and s > 1:  # far below its row's largest outlier value: below the last digit
        x[(big[0] + 1) % s, cols[0]] = 3e-4
    return jnp.asarray(x, dtype)


def outlier_bound(x, qweight, scale, threshold):
    """|route - reference| allowed on the float32 result before the bias (xla_route's module
    doc): the reference's own summation order (c + 4 roundings of the outlier products'
    magnitude), the epilogue's roundings, and what the digits drop,
    2^(1 - 7D) max_c |x[i, O]| sum_c |W_deq[c, j]|."""
    xf = np.asarray(x, np.float64)
    mask = np.asarray(reference.outlier_mask(reference.column_absmax(x), threshold))
    c = int(mask.sum())
    w_deq = np.asarray(reference.dequantize_weight(qweight, scale), np.float64)  # [o, h]
    xo = np.where(mask, np.abs(xf), 0.0)
    mag = xo @ np.abs(w_deq).T
    dropped = 2.0 ** (1 - 7 * xla_route.digit_count(x.dtype)) * xo.max(axis=1, initial=0)[:, None] \
        * (np.abs(w_deq) @ mask.astype(np.float64))[None, :]
    # The epilogue's few roundings (some may be fused into FMAs) scale with every term's size.
    total = np.abs(xf) @ np.abs(w_deq).T
    return (c + 4) * 2.0**-24 * mag + 4 * 2.0**-24 * total + dropped, c, mag


def test_digits_reconstruct():
    r = rng()
    for dtype, exact_range in ((jnp.bfloat16, 2.0**13), (jnp.float16, 2.0**10), (jnp.float32, 2.0**4)):
        x = r.standard_normal((64, 300)) * np.exp(r.uniform(-4, 4, (64, 1)))
        x[:, ::7] *= np.exp(r.uniform(-16, 0, (64, 43)))  # small values next to large ones
        x = jnp.asarray(x, dtype)
        mask = jnp.asarray(r.random(300) < 0.5)
        digits = xla_route.digit_count(dtype)
        planes, exponent, finite = xla_route.outlier_digits(x, mask, digits)
        assert planes.dtype == jnp.int8 and bool(finite.all())
        assert int(jnp.max(jnp.abs(planes.astype(jnp.int32)))) <= 127
        steps = np.ldexp(1.0, np.asarray(exponent)[None, :] - 7 * np.arange(digits)[:, None])
        back = np.sum(np.asarray(planes, np.float64) * steps[:, :, None], axis=0)
        xo = np.where(np.asarray(mask), np.asarray(x, np.float64), 0.0)
        amax = np.abs(xo).max(axis=1, keepdims=True)
        err = np.abs(back - xo)
        assert (err < 2.0 ** (1 - 7 * digits) * amax + 1e-300).all(), dtype
        exact = np.abs(xo) >= amax / exact_range
        np.testing.assert_array_equal(back[exact], xo[exact], err_msg=str(dtype))
        assert (~exact & (xo != 0)).any(), "the data must reach below the exact range"


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("s,h,o", [(1, 1024, 72), (16, 1000, 136), (40, 1024, 48)])
def test_xla_route_outlier_counts(dtype, s, h, o):
    """Every outlier count: the route within its bound of the reference and of the CPU handlers."""
    r = rng()
    wq = jaxint8.quantize_weight(0.02 * r.standard_normal((h, o)))
    bias = jnp.asarray(r.standard_normal(o), jnp.float32)
    route = jax.jit(lambda x, t: jaxint8.llm_int8_matmul(x, wq, bias, threshold=t,
                                                           out_dtype=jnp.float32, options=XLA),
                    static_argnums=1)
    for k in OUTLIER_COUNTS:
        k = h if k == "all" else min(k, h)
        if s == 1 and k == h:
            continue  # one token: every column above 6 is not a planted pattern
        x = planted(r, s, h, k, dtype)
        got = np.asarray(route(x, 6.0), np.float64)
        ref = np.asarray(reference.llm_int8_matmul(x, wq.qweight, wq.scale, bias, threshold=6.0,
                                                   out_dtype=jnp.float32), np.float64)
        cpu = np.asarray(jaxint8.llm_int8_matmul(x, wq, bias, out_dtype=jnp.float32,
                                                 options=KERNELS), np.float64)
        bound, c, mag = outlier_bound(x, wq.qweight, wq.scale, 6.0)
        assert c == k
        tol = bound + 2 * 2.0**-24 * np.abs(np.asarray(bias))[None, :]
        # The kernels' own bound against the CPU order (docs/kernels.md): the CUDA kernels sum
        # many outlier columns in their own order (on CPU the handlers keep the reference's).
        kernel_tol = (c + 2) * 2.0**-21 * mag if jax.default_backend() != "cpu" else 0.0
        for name, other, extra in (("reference", ref, 0.0), ("kernels", cpu, kernel_tol)):
            bad = np.abs(got - other) > tol + extra + 2.0**-24 * np.abs(other)
            assert not bad.any(), (f"k={k} {name}: {bad.sum()} outputs, max diff "
                                   f"{np.max(np.abs(got - other))}")
    # Threshold 0: the same int32 sums and scales; XLA may fuse the dequantization's multiply
    # with the bias add into one FMA (one rounding fewer).
    x = planted(r, s, h, min(64, h), dtype)
    kernels = np.asarray(jaxint8.llm_int8_matmul(x, wq, bias, threshold=0.0, out_dtype=jnp.float32,
                                                 options=KERNELS))
    np.testing.assert_allclose(np.asarray(route(x, 0.0)), kernels, rtol=2.0**-23,
                               atol=2.0**-24 * float(np.max(np.abs(kernels))))


def test_xla_route_group_leading_dims_and_dtype():
    r = rng()
    ws = [jaxint8.quantize_weight(0.02 * r.standard_normal((256, n))) for n in (64, 32, 32)]
    bs = [jnp.asarray(r.standard_normal(n), jnp.float32) for n in (64, 32, 32)]
    x = planted(r, 6, 256, 5, jnp.bfloat16).reshape(2, 3, 256)
    group = jaxint8.llm_int8_matmul_group(x, ws, bs, options=XLA)
    for y, w, b in zip(group, ws, bs):
        one = jaxint8.llm_int8_matmul(x, w, b, options=XLA)
        assert y.shape == (2, 3, w.out_features) and y.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(one, np.float32))
        ref = reference.llm_int8_matmul(x.reshape(6, 256), w.qweight, w.scale, b)
        np.testing.assert_allclose(np.asarray(y, np.float32).reshape(6, -1),
                                   np.asarray(ref, np.float32), rtol=2**-7, atol=2**-7)


def test_xla_route_vmap_grad_and_context():
    r = rng()
    wq = jaxint8.quantize_weight(0.02 * r.standard_normal((128, 48)))
    x = jnp.stack([planted(r, 4, 128, 3, jnp.float32), planted(r, 4, 128, 9, jnp.float32)])
    with jaxint8.kernel_options(route="xla"):
        ys = jax.jit(jax.vmap(lambda v: jaxint8.llm_int8_matmul(v, wq)))(x)
        gx = jax.grad(lambda v: jnp.sum(jaxint8.llm_int8_matmul(v, wq) ** 2))(x[0])
    for i in range(2):  # each mapped element has its own outlier set
        ref = reference.llm_int8_matmul(x[i], wq.qweight, wq.scale)
        np.testing.assert_allclose(np.asarray(ys[i]), np.asarray(ref), rtol=1e-5, atol=1e-5)
    gk = jax.grad(lambda v: jnp.sum(jaxint8.llm_int8_matmul(v, wq, options=KERNELS) ** 2))(x[0])
    np.testing.assert_allclose(np.asarray(gx), np.asarray(gk), rtol=1e-5, atol=1e-6)


def test_xla_route_non_finite_rows():
    """A NaN or Inf in an outlier column makes its row NaN; the other rows are unaffected."""
    r = rng()
    wq = jaxint8.quantize_weight(0.02 * r.standard_normal((64, 24)))
    x = np.array(planted(r, 5, 64, 2, jnp.float32))
    x[1, 5], x[3, 9] = np.nan, np.inf
    y = np.asarray(jaxint8.llm_int8_matmul(jnp.asarray(x), wq, options=XLA))
    assert np.isnan(y[1]).all() and np.isnan(y[3]).all()
    finite = [0, 2, 4]
    assert np.isfinite(y[finite]).all()
    ref = np.asarray(reference.llm_int8_matmul(jnp.asarray(x), wq.qweight, wq.scale))
    np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-5, atol=1e-5)


def test_route_option_checked():
    with pytest.raises(ValueError, match="route must be one of .auto., .kernels., .xla., .by_count."):
        jaxint8.KernelOptions(route="cublas")
    assert "route" not in jaxint8.KernelOptions(route="xla").ffi_attributes()


@pytest.mark.parametrize("x_spec,w_spec", [((), ("model", None)), (("model",), ()),
                                           ((None, "model"), (None, "model"))])
def test_xla_route_under_sharding(x_spec, w_spec):
    """Column parallel runs the route per shard; layouts with collectives between quantization
    and GEMM (data, row parallel) keep the kernel chain: every layout matches one device."""
    from jax.sharding import NamedSharding, PartitionSpec as P
    n = min(len(jax.devices()), 4)
    mesh = jax.make_mesh((n,), ("model",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:n])
    r = rng()
    wq = jaxint8.quantize_weight(0.02 * r.standard_normal((128, 64)))
    x = planted(r, 8, 128, 5, jnp.float32)
    f = jax.jit(lambda x, q, s: jaxint8.llm_int8_matmul(x, jaxint8.Int8Weight(q, s), options=XLA))
    put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, P(*spec)))  # noqa: E731
    got = f(put(x, x_spec), put(wq.qweight, w_spec), put(wq.scale, w_spec[:1]))
    want = f(x, wq.qweight, wq.scale)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_by_count_picks_per_call():
    """route="by_count": the kernels' result up to 8 outlier columns, the XLA route's above, in
    one compiled function (the count is data)."""
    r = rng()
    ws = [jaxint8.quantize_weight(0.02 * r.standard_normal((256, n))) for n in (48, 24)]
    by_count = jax.jit(lambda x: jaxint8.llm_int8_matmul_group(
        x, ws, options=jaxint8.KernelOptions(route="by_count")))
    for k, want_opts in ((0, KERNELS), (8, KERNELS), (9, XLA), (200, XLA)):
        x = planted(r, 4, 256, k, jnp.bfloat16)
        want = jaxint8.llm_int8_matmul_group(x, ws, options=want_opts)
        for got, w in zip(by_count(x), want):
            np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(w, np.float32),
                                          err_msg=f"k={k}")
    assert by_count._cache_size() == 1
    xs = jnp.stack([planted(r, 4, 256, 3, jnp.float32), planted(r, 4, 256, 30, jnp.float32)])
    single = jax.vmap(lambda v: jaxint8.llm_int8_matmul(
        v, ws[0], options=jaxint8.KernelOptions(route="by_count")))(xs)
    np.testing.assert_allclose(np.asarray(single),
                               np.asarray(jax.vmap(lambda v: jaxint8.llm_int8_matmul(
                                   v, ws[0], options=XLA))(xs)), rtol=1e-6, atol=1e-6)


def test_xla_route_exports_without_custom_calls():
    """route="xla" lowers to plain StableHLO: jax.export needs no jaxint8 targets, for CPU and
    CUDA at once, and the artifact runs without the extension's handlers."""
    r = rng()
    wq = jaxint8.quantize_weight(0.02 * r.standard_normal((64, 32)))
    x = planted(r, 8, 64, 3, jnp.bfloat16)
    f = jax.jit(lambda x, q, s: jaxint8.llm_int8_matmul(x, jaxint8.Int8Weight(q, s), options=XLA))
    exported = jax.export.export(f, platforms=("cpu", "cuda"))(x, wq.qweight, wq.scale)
    assert "stablehlo.custom_call" not in exported.mlir_module()
    restored = jax.export.deserialize(exported.serialize())
    np.testing.assert_array_equal(np.asarray(restored.call(x, wq.qweight, wq.scale), np.float32),
                                  np.asarray(f(x, wq.qweight, wq.scale), np.float32))
