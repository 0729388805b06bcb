// FFI handler symbols exported to Python by module.cc.
//
// Targets (the same name is registered for the "cpu" and "CUDA" platforms):
//
//   jaxint8_column_absmax
//     in : x        float[..., s, h]     (f32 / bf16 / f16)
//     out: col_amax f32[..., h]          max_i |x[i, c]|, NaN-propagating; 0 when s == 0
//
//   jaxint8_quantize_rows                attr threshold: f32 (<= 0: no decomposition)
//     in : x        float[..., s, h]
//          col_amax f32[..., h]          (from jaxint8_column_absmax, possibly reduced
//                                         across devices)
//     out: xq       s8[..., s, h]        outlier columns zeroed
//          row_scale f32[..., s]         max over non-outlier columns of |x[i, c]|
//          outlier_idx s32[..., h]       outlier columns ascending, then -1 padding
//          outlier_count s32[...]
//
//   jaxint8_int8_matmul
//     in : xq s8[..., s, h], row_scale f32[..., s], x float[..., s, h] (for outliers),
//          outlier_idx s32[..., h], outlier_count s32[...],
//          wq s8[o, h] (K-major), w_scale f32[o], bias f32[o] or f32[0] (no bias)
//     out: y float[..., s, o]            dequant(xq @ wq^T) + x[:, O] @ W_deq[O, :] + bias
//
//   jaxint8_llm_int8_matmul             attr threshold: f32; the three above in one call
//     in : x float[..., s, h], wq s8[o, h], w_scale f32[o], bias f32[o] or f32[0]
//     out: y float[..., s, o], then the intermediates col_amax, xq, row_scale, outlier_idx,
//          outlier_count (shapes as above; col_amax is zero when threshold <= 0)
//     One custom call instead of three: XLA's per-call overhead (~10-20 us on a GPU) is
//     larger than a decode step's quantization kernels.
//
//   jaxint8_llm_int8_matmul_group       attr threshold: f32; one quantization of x, one GEMM per
//                                        weight (q/k/v, gate/up: projections that read the same x)
//     in : x float[..., s, h], then per weight g: wq_g s8[o_g, h], w_scale_g f32[o_g],
//          bias_g f32[o_g] or f32[0]   (1 to 8 weights)
//     out: the intermediates col_amax, xq, row_scale, outlier_idx, outlier_count, then
//          y_g float[..., s, o_g] per weight
//     Same results as one jaxint8_llm_int8_matmul per weight; on a GPU the decode-sized GEMMs
//     of all weights are one kernel launch.
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
