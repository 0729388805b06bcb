"""What the linen and nnx layers share: argument checks, dtype rules and the call into the op."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxint8 import ops
from jaxint8.ops import llm_int8_matmul, llm_int8_matmul_group
from jaxint8.weights import Int8Weight

TRANSPOSED_HINT = ("for a torch / Hugging Face weight ([out_features, in_features]) pass "
                    "transposed=True: jaxint8.quantize_weight(w, transposed=True)")


def check_threshold(threshold, where: str):
    """``threshold`` unchanged if it is None or a finite Python number >= 0; else a clear error.

    The op (:func:`jaxint8.llm_int8_matmul`) checks it again at call time; checking in the
    constructor reports a bad value where the layer is built.
    """
    ops.check_threshold(threshold, where)
    return threshold


def check_inputs(inputs, in_features, where: str, out_features=None) -> int:
    """The width ``inputs.shape[-1]``, after checking it (``in_features`` None: not known yet).

    With ``out_features`` given, an input as wide as the output (and not as the input) points
    at a weight whose in/out axes are swapped.
    """
    shape = jnp.shape(inputs)
    if len(shape) == 0:
        raise ValueError(f"{where}: inputs must have at least 1 dimension (features last), got a "
                         f"scalar; for a single feature pass an array of shape (1,)")
    ops.check_in_features(shape[-1], where, "inputs")
    if in_features is not None and shape[-1] != in_features:
        hint = ""
        if out_features is not None and shape[-1] == out_features:
            hint = (f"; the weight's out_features is {out_features}, so its in/out axes may be "
                    f"swapped: {TRANSPOSED_HINT}")
        raise ValueError(f"{where}: inputs.shape[-1] = {shape[-1]} but the layer's kernel has "
                         f"in_features = {in_features} (inputs shape {tuple(shape)}); pass inputs "
                         f"whose last axis has {in_features} features{hint}")
    return shape[-1]


def check_int8_kernel(kernel, features: int, in_features: int, where: str) -> None:
    """Checks an existing ``kernel`` param against ``[features, in_features]`` int8.

    Catches float ``nn.Dense`` params (points to ``quantize_dense_params``), a kernel whose in/out
    axes are swapped (points to ``quantize_weight(..., transposed=True)``), and wrong widths.
    """
    shape, dtype = tuple(jnp.shape(kernel)), jnp.dtype(kernel.dtype)
    want = (features, in_features)
    if jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{where}: params 'kernel' is a float ({dtype}) array of shape {list(shape)}: these look "
            f"like float nn.Dense params. Convert them first with "
            f"jaxint8.flax.quantize_dense_params(params) (the kernel becomes int8 [out, in] plus a "
            f"'scale')")
    if dtype != jnp.int8 or len(shape) != 2:
        raise ValueError(f"{where}: params 'kernel' must be int8 [features, in_features] = "
                         f"{list(want)}, got {dtype} {list(shape)}")
    if shape == want:
        return
    if shape == want[::-1]:
        raise ValueError(f"{where}: params 'kernel' has shape {list(shape)}, expected [features, "
                         f"in_features] = {list(want)}: the in/out axes are swapped; "
                         f"{TRANSPOSED_HINT}")
    if shape[0] != features:
        raise ValueError(f"{where}: params 'kernel' has {shape[0]} output features (shape "
                         f"{list(shape)}) but the layer has features = {features}")
    raise ValueError(f"{where}: inputs.shape[-1] = {in_features} but params 'kernel' has "
                     f"in_features = {shape[1]} (kernel [features, in_features] = {list(shape)}); "
                     f"pass inputs whose last axis has {shape[1]} features")


def _compute_dtype(inputs, dtype, param_dtype):
    # Like flax.linen.Dense: with dtype None, the promotion of the input and parameter dtypes.
    return jnp.dtype(dtype) if dtype is not None else jnp.result_type(inputs.dtype, param_dtype)


def apply_int8(inputs, qweight, scale, bias, *, dtype, param_dtype, threshold):
    """``Dense``-compatible dtype handling around :func:`llm_int8_matmul`.

    Like ``flax.linen.Dense``: with ``dtype`` None the computation dtype is the promotion of the
    input dtype and the (float) parameter dtype; the input is cast to it and so is the output.
    """
    inputs = jnp.asarray(inputs)
    compute = _compute_dtype(inputs, dtype, param_dtype)
    return llm_int8_matmul(inputs.astype(compute), Int8Weight(qweight, scale), bias,
                           threshold=threshold, out_dtype=compute)


def apply_int8_group(inputs, weights, biases, *, dtype, param_dtype, threshold):
    """:func:`apply_int8` for several ``Int8Weight`` (and biases) that read ``inputs``."""
    inputs = jnp.asarray(inputs)
    compute = _compute_dtype(inputs, dtype, param_dtype)
    return llm_int8_matmul_group(inputs.astype(compute), weights, biases, threshold=threshold,
                                 out_dtype=compute)
