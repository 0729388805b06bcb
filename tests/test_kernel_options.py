"""jaxint8.KernelOptions: validation, the kernel_options() block, and what reaches the CUDA call."""

from __future__ import annotations

import re

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxint8
from jaxint8 import primitives
from jaxint8.kernel_options import current_kernel_options


def _weight(h=64, o=32, seed=0):
    return jaxint8.quantize_weight(0.02 * jax.random.normal(jax.random.key(seed), (h, o)))


def test_defaults_are_automatic():
    o = jaxint8.KernelOptions()
    assert (o.gemm, o.decode, o.fused_quant, o.gemv_ksplit, o.token_loads, o.outliers, o.sm90_tile) == (
        ("auto",) * 3 + (0, 0, "auto", "auto"))
    assert current_kernel_options() == o
    assert {k: int(v) for k, v in o.ffi_attributes().items()} == dict(
        gemm=0, decode=0, fused_quant=0, outliers=0, sm90_tile=0, gemv_ksplit=0, token_loads=0)


@pytest.mark.parametrize("field,value,match", [
    ("gemm", "fast", "gemm must be one of 'auto', 'skinny', 'tiled', 'sm90'; got 'fast'"),
    ("decode", "gemv", "decode must be one of 'auto', 'token', 'dp4a', 'mma'"),
    ("fused_quant", True, "fused_quant must be one of 'auto', 'always', 'never'"),
    ("gemv_ksplit", 3, r"gemv_ksplit must be one of 0, 1, 2, 4 \(0 = automatic\); got 3"),
    ("token_loads", 8, "token_loads must be one of 0, 4, 6"),
    ("token_loads", True, "token_loads must be one of 0, 4, 6"),
    ("outliers", "tensor", "outliers must be one of 'auto', 'epilogue', 'gemm', 'tensor_epilogue'"),
    ("sm90_tile", "coop", "sm90_tile must be one of 'auto', 'pingpong64x64', .*'cooperative128x256'"),
])
def test_invalid_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        jaxint8.KernelOptions(**{field: value})


def test_codes_follow_the_choices():
    o = jaxint8.KernelOptions(gemm="sm90", decode="mma", fused_quant="never", gemv_ksplit=4,
                              token_loads=6, outliers="tensor_epilogue", sm90_tile="cooperative128x256")
    assert {k: int(v) for k, v in o.ffi_attributes().items()} == dict(
        gemm=3, decode=3, fused_quant=2, outliers=3, sm90_tile=4, gemv_ksplit=4, token_loads=6)
    assert all(v.dtype == np.int32 for v in o.ffi_attributes().values())
    # The 160-column tiles follow the four older configurations (kernel_options.h: 5 and 6).
    assert [int(jaxint8.KernelOptions(sm90_tile=t).ffi_attributes()["sm90_tile"])
            for t in ("pingpong64x160", "cooperative128x160")] == [5, 6]


def test_block_nests_and_restores():
    with jaxint8.kernel_options(gemm="tiled") as outer:
        assert outer == jaxint8.KernelOptions(gemm="tiled")
        with jaxint8.kernel_options(decode="mma") as inner:
            assert inner == jaxint8.KernelOptions(gemm="tiled", decode="mma")
            assert current_kernel_options() == inner
        assert current_kernel_options() == outer
    assert current_kernel_options() == jaxint8.KernelOptions()


def test_block_rejects_bad_arguments():
    with pytest.raises(TypeError, match="either a KernelOptions or fields"):
        with jaxint8.kernel_options(jaxint8.KernelOptions(), gemm="tiled"):
            pass
    with pytest.raises(TypeError, match="expected a jaxint8.KernelOptions, got dict"):
        with jaxint8.kernel_options({"gemm": "tiled"}):
            pass
    with pytest.raises(ValueError, match="gemm must be one of"):
        with jaxint8.kernel_options(gemm="fast"):
            pass


def test_op_rejects_non_options():
    x = jnp.ones((4, 64), jnp.float32)
    with pytest.raises(TypeError, match="llm_int8_matmul: options must be a jaxint8.KernelOptions"):
        jaxint8.llm_int8_matmul(x, _weight(), options={"gemm": "tiled"})


def _options_in(jaxpr):
    return set(re.findall(r"options=(KernelOptions\([^)]*\))", str(jaxpr)))


def test_options_reach_the_primitive():
    x = jnp.ones((4, 64), jnp.bfloat16)
    w = _weight()
    explicit = jaxint8.KernelOptions(decode="mma")
    assert _options_in(jax.make_jaxpr(lambda x: jaxint8.llm_int8_matmul(x, w, options=explicit))(x)) == {
        repr(explicit)}
    with jaxint8.kernel_options(gemm="tiled"):
        got = _options_in(jax.make_jaxpr(lambda x: jaxint8.llm_int8_matmul_group(x, [w, w]))(x))
    assert got == {repr(jaxint8.KernelOptions(gemm="tiled"))}
    # explicit options win over the block's
    with jaxint8.kernel_options(gemm="tiled"):
        got = _options_in(jax.make_jaxpr(lambda x: jaxint8.llm_int8_matmul(x, w, options=explicit))(x))
    assert got == {repr(explicit)}


def test_block_retraces_jitted_functions():
    traces = []

    @jax.jit
    def f(x, w):
        traces.append(current_kernel_options())
        return jaxint8.llm_int8_matmul(x, w)

    x, w = jnp.ones((4, 64), jnp.float32), _weight()
    y0 = f(x, w)
    with jaxint8.kernel_options(gemm="skinny"):
        y1 = f(x, w)
    f(x, w)  # cached again
    assert traces == [jaxint8.KernelOptions(), jaxint8.KernelOptions(gemm="skinny")]
    np.testing.assert_array_equal(np.asarray(y0), np.asarray(y1))  # CPU: options are ignored


# partial [m, n] f32 + x[:, O] bf16 [m, 64] + W[:, O] int8 [n, 64]
_PRODUCT_64 = 64 * 32 * 4 + 64 * 64 * 2 + 32 * 64


@pytest.mark.parametrize("m,options,dtype,expect", [
    (16, jaxint8.KernelOptions(), jnp.bfloat16, 0),                 # decode sizes: no workspace
    (17, jaxint8.KernelOptions(gemm="skinny"), jnp.bfloat16, 0),    # pinned to the decode kernels
    (64, jaxint8.KernelOptions(gemm="tiled", outliers="epilogue"), jnp.bfloat16, 0),
    (64, jaxint8.KernelOptions(gemm="tiled"), jnp.bfloat16, _PRODUCT_64),
    # the f32 x is gathered as three bf16 terms; k = 64 is a multiple of 32
    (64, jaxint8.KernelOptions(gemm="tiled"), jnp.float32, 64 * 32 * 4 + 3 * 64 * 64 * 2 + 32 * 64),
    # sm90 staging: ld = k = 64: [m, ld] + [n, ld] f32, after the product's buffers
    (64, jaxint8.KernelOptions(outliers="epilogue"), jnp.bfloat16, 64 * 64 * 4 + 32 * 64 * 4),
    (64, jaxint8.KernelOptions(), jnp.bfloat16, _PRODUCT_64 + 64 * 64 * 4 + 32 * 64 * 4),
    # k = 1000: x[:, O] and W[:, O] padded to 1024 columns; staging ld capped at 128; partial 300 * 32 * 4
    # aligned up to 256 bytes
    (300, jaxint8.KernelOptions(), jnp.float16,
     38400 + 300 * 1024 * 2 + 32 * 1024 + 300 * 128 * 4 + 32 * 128 * 4),
])
def test_workspace_bytes(m, options, dtype, expect):
    k = 64 if m < 300 else 1000
    assert primitives.gemm_workspace_bytes(m, 32, k, dtype, options) == expect


@pytest.mark.skipif(not jaxint8.BUILT_WITH_CUDA, reason="the CUDA lowering needs the CUDA handlers")
def test_cuda_lowering_carries_options_and_workspace():
    x = jax.ShapeDtypeStruct((64, 256), jnp.bfloat16)
    w = _weight(256, 48)
    opts = jaxint8.KernelOptions(gemm="sm90", decode="dp4a", gemv_ksplit=2)
    f = jax.jit(lambda x: jaxint8.llm_int8_matmul(x, w, options=opts))
    text = f.trace(x).lower(lowering_platforms=("cuda",)).as_text()
    call = next(line for line in text.splitlines() if "jaxint8_llm_int8_matmul" in line)
    for key, value in (("gemm", 3), ("decode", 2), ("fused_quant", 0), ("gemv_ksplit", 2),
                       ("token_loads", 0)):
        assert re.search(rf"{key} = {value} : i32", call), call
    nbytes = primitives.gemm_workspace_bytes(64, 48, 256, jnp.bfloat16, opts)
    assert nbytes > 0 and f"tensor<{nbytes}xui8>" in call, call
    # the CPU lowering has neither
    cpu = f.trace(x).lower(lowering_platforms=("cpu",)).as_text()
    cpu_call = next(line for line in cpu.splitlines() if "jaxint8_llm_int8_matmul" in line)
    assert "options" not in cpu_call and "ui8" not in cpu_call
