"""jaxint8.export: jax.export of functions calling jaxint8 ops, serialization round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxint8
import jaxint8.export as jexport

pytest.importorskip("flatbuffers", reason="jax.export serialization needs flatbuffers")


def _weights():
    w = 0.05 * jax.random.normal(jax.random.key(0), (64, 48))
    return jaxint8.quantize_weight(w), jnp.linspace(-1, 1, 48, dtype=jnp.float32)


def _x(dtype=jnp.float32):
    x = jax.random.normal(jax.random.key(1), (3, 5, 64), dtype)
    return x.at[..., 7].multiply(20.0)   # an outlier column


def test_targets_cover_the_extension():
    from jaxint8 import _ffi
    assert set(_ffi.CPU_TARGETS) <= set(jaxint8.FFI_TARGETS)
    assert set(_ffi.CUDA_TARGETS) <= set(jaxint8.FFI_TARGETS)
    assert jaxint8.FFI_TARGETS is jexport.FFI_TARGETS


def test_plain_jax_export_refuses_the_custom_calls():
    wq, b = _weights()
    with pytest.raises(ValueError, match="custom calls"):
        jax.export.export(jax.jit(jaxint8.llm_int8_matmul))(_x(), wq, b)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_round_trip_is_bit_identical(dtype):
    wq, b = _weights()
    wq2 = jaxint8.quantize_weight(0.05 * jax.random.normal(jax.random.key(2), (64, 16)))

    def fn(x, wq, b, wq2):
        y = jaxint8.llm_int8_matmul(x, wq, b, threshold=6.0)
        q, k = jaxint8.llm_int8_matmul_group(x, [wq, wq2], threshold=6.0)
        return y + q, k

    x = _x(dtype)
    exp = jexport.export(jax.jit(fn))(x, wq, b, wq2)     # for this backend: CPU on CI
    blob = jexport.serialize(exp)
    assert isinstance(blob, bytes) and blob.startswith(b"jaxint8-exported\n0.1.0\n")
    restored = jexport.deserialize(blob)
    got = restored.call(x, wq, b, wq2)
    want = jax.jit(fn)(x, wq, b, wq2)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))
    # Under jit as well, and with other values of the same shapes.
    x2 = 3 * _x(dtype)
    np.testing.assert_array_equal(np.asarray(jax.jit(restored.call)(x2, wq, b, wq2)[1], np.float32),
                                  np.asarray(jax.jit(fn)(x2, wq, b, wq2)[1], np.float32))


def test_plain_function_and_abstract_args():
    wq, _ = _weights()
    x = jax.ShapeDtypeStruct((4, 64), jnp.float32)
    exp = jexport.export(jaxint8.llm_int8_matmul)(x, wq)   # not jitted: wrapped
    assert exp.out_avals[0].shape == (4, 48)
    xv = jnp.ones((4, 64))
    np.testing.assert_array_equal(jexport.deserialize(jexport.serialize(exp)).call(xv, wq),
                                  jaxint8.llm_int8_matmul(xv, wq))


def test_flax_model_round_trip():
    from jaxint8.flax import Int8Dense
    layer = Int8Dense(32)
    x = _x()
    params = layer.init(jax.random.key(3), x)
    exp = jexport.export(jax.jit(layer.apply))(params, x)
    got = jexport.deserialize(jexport.serialize(exp)).call(params, x)
    np.testing.assert_array_equal(got, layer.apply(params, x))


def test_disabled_checks_with_jax_export_directly():
    wq, b = _weights()
    x = _x()
    exp = jax.export.export(jax.jit(jaxint8.llm_int8_matmul),
                            disabled_checks=jexport.disabled_checks())(x, wq, b)
    restored = jax.export.deserialize(exp.serialize())
    np.testing.assert_array_equal(restored.call(x, wq, b), jaxint8.llm_int8_matmul(x, wq, b))


def test_other_version_is_rejected():
    wq, _ = _weights()
    exp = jexport.export(jaxint8.llm_int8_matmul)(_x(), wq)
    blob = jexport.serialize(exp)
    other = blob.replace(b"\n0.1.0\n", b"\n0.0.9\n", 1)
    with pytest.raises(ValueError, match=r"exported with jaxint8 0\.0\.9.*re-export"):
        jexport.deserialize(other)


def test_headerless_blob_with_jaxint8_calls_is_rejected():
    wq, _ = _weights()
    exp = jexport.export(jaxint8.llm_int8_matmul)(_x(), wq)
    with pytest.raises(ValueError, match="no jaxint8 header"):
        jexport.deserialize(exp.serialize())
    # A headerless blob without jaxint8 calls is just jax's.
    plain = jax.export.export(jax.jit(jnp.sin))(jnp.ones(3))
    np.testing.assert_array_equal(jexport.deserialize(plain.serialize()).call(jnp.ones(3)),
                                  jnp.sin(jnp.ones(3)))


def test_bad_arguments():
    with pytest.raises(TypeError, match="platforms must be a sequence"):
        jexport.export(jnp.sin, platforms="cpu")
    with pytest.raises(TypeError, match="exported must be a jax.export.Exported"):
        jexport.serialize(b"")


@pytest.mark.skipif(not jaxint8.BUILT_WITH_CUDA, reason="jaxint8 built without CUDA kernels")
def test_export_for_cuda_lowers_the_kernels():
    wq, b = _weights()
    x = _x(jnp.bfloat16)

    def fn(x):
        return jaxint8.llm_int8_matmul(x, wq, b, options=jaxint8.KernelOptions(gemm="tiled"))

    exp = jexport.export(jax.jit(fn), platforms=("cuda",))(x)
    text = exp.mlir_module()
    assert jexport._uses_jaxint8(exp) and "options" in text
    assert exp.platforms == ("cuda",)
    jexport.deserialize(jexport.serialize(exp))   # no call: this host may have no GPU
    exp2 = jexport.export(jax.jit(fn), platforms=("cpu", "cuda"))(x)
    assert exp2.platforms == ("cpu", "cuda")
    restored = jexport.deserialize(jexport.serialize(exp2))
    np.testing.assert_array_equal(np.asarray(restored.call(x), np.float32),
                                  np.asarray(jax.jit(fn)(x), np.float32))   # on this backend


@pytest.mark.skipif(jaxint8.BUILT_WITH_CUDA, reason="jaxint8 built with CUDA kernels")
def test_export_for_cuda_without_kernels_warns():
    wq, b = _weights()
    with pytest.warns(RuntimeWarning, match="without CUDA"):
        exp = jexport.export(jaxint8.llm_int8_matmul, platforms=("cuda",))(_x(), wq, b)
    assert not jexport._uses_jaxint8(exp)   # the reference is embedded, no custom call


def test_docstring_examples():
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module("jaxint8.export"), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0
