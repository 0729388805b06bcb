// FFI handler symbols exported to Python by module.cc.
//
// Targets (the same name is registered for the "cpu" and "CUDA" platforms); m = tokens,
// k = in features, n = out features, "..." = leading (batch) dims:
//
//   jaxint8_column_absmax
//     in : x        float[..., m, k]     (f32 / bf16 / f16)
//     out: col_amax f32[..., k]          max_i |x[i, c]|, NaN-propagating; 0 when m == 0
//
//   jaxint8_quantize_rows                attr threshold: f32 (<= 0: no decomposition)
//     in : x        float[..., m, k]
//          col_amax f32[..., k]          (from jaxint8_column_absmax, possibly reduced
//                                         across devices)
//     out: xq       s8[..., m, k]        outlier columns zeroed
//          row_scale f32[..., m]         max over non-outlier columns of |x[i, c]|
//          outlier_idx s32[..., k]       outlier columns ascending, then -1 padding
//          outlier_count s32[...]
//
//   jaxint8_int8_matmul
//     in : xq s8[..., m, k], row_scale f32[..., m], x float[..., m, k] (for outliers),
//          outlier_idx s32[..., k], outlier_count s32[...],
//          qweight s8[n, k] (K-major), scale f32[n], bias f32[n] or f32[0] (no bias)
//     out: y float[..., m, n]            dequant(xq @ qweight^T) + x[:, O] @ W_deq[O, :] + bias
//
//   jaxint8_llm_int8_matmul             attr threshold: f32; the three above in one call
//     in : x float[..., m, k], qweight s8[n, k], scale f32[n], bias f32[n] or f32[0]
//     out: y float[..., m, n], then the intermediates col_amax, xq, row_scale, outlier_idx,
//          outlier_count (shapes as above; col_amax is zero when threshold <= 0)
//     One custom call instead of three: XLA's per-call overhead (~10-20 us on a GPU) is
//     larger than a decode step's quantization kernels.
//
//   jaxint8_llm_int8_matmul_group       attr threshold: f32; one quantization of x, one GEMM per
//                                        weight (q/k/v, gate/up: projections that read the same x)
//     in : x float[..., m, k], then per weight g: qweight_g s8[n_g, k], scale_g f32[n_g],
//          bias_g f32[n_g] or f32[0]   (1 to 8 weights)
//     out: the intermediates col_amax, xq, row_scale, outlier_idx, outlier_count, then
//          y_g float[..., m, n_g] per weight
//     Same results as one jaxint8_llm_int8_matmul per weight; on a GPU the decode-sized GEMMs
//     of all weights are one kernel launch.
//
// The CUDA handlers of the three matmul targets also take
//   attr options: {gemm, decode, fused_quant, gemv_ksplit, token_loads: s32}  (jaxint8.KernelOptions)
//   one more result after the fixed ones: workspace u8[bytes], the Hopper GEMM's compact outlier
//   operands (int8_gemm_sm90_workspace_bytes; 0 bytes is valid, only slower with outliers).
//
// Leading dims are independent problems (each has its own outlier set): that is how
// vmap is implemented.
#pragma once

#include "xla/ffi/api/api.h"

XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_column_absmax_cpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_quantize_rows_cpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_int8_matmul_cpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_llm_int8_matmul_cpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_llm_int8_matmul_group_cpu);

#ifdef JAXINT8_WITH_CUDA
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_column_absmax_cuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_quantize_rows_cuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_int8_matmul_cuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_llm_int8_matmul_cuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(jaxint8_llm_int8_matmul_group_cuda);
#endif
