// CPU handlers of the fused targets: column absmax, row quantization and the int8 matmul in one
// custom call (same bodies as the three separate handlers, so the results are identical), for one
// weight (jaxint8_llm_int8_matmul) or several weights sharing the quantized x
// (jaxint8_llm_int8_matmul_group).
#include <algorithm>

#include "common.h"
#include "cpu/handlers_cpu.h"
#include "handlers.h"

namespace jaxint8::cpu {
namespace {

// Both quantization passes (the column pass skipped, col_amax zero, when threshold <= 0).
ffi::Error QuantizeActivations(ffi::ThreadPool pool, ffi::AnyBuffer x,
                               ffi::Result<ffi::AnyBuffer> col_amax, ffi::Result<ffi::AnyBuffer> xq,
                               ffi::Result<ffi::AnyBuffer> row_scale,
                               ffi::Result<ffi::AnyBuffer> outlier_idx,
                               ffi::Result<ffi::AnyBuffer> outlier_count, float threshold) {
  if (threshold > 0.0f) {
    JAXINT8_RETURN_IF_ERROR(ColumnAbsmax(pool, x, col_amax));
  } else {
    ActivationShape sh;
    JAXINT8_RETURN_IF_ERROR(check_column_absmax(x, *col_amax, &sh));
    float* amax = col_amax->typed_data<float>();
    std::fill(amax, amax + col_amax->element_count(), 0.0f);
  }
  return QuantizeRows(pool, x, *col_amax, xq, row_scale, outlier_idx, outlier_count, threshold);
}

ffi::Error LlmInt8Matmul(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer qweight,
                         ffi::AnyBuffer scale, ffi::AnyBuffer bias,
                         ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> col_amax,
                         ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                         ffi::Result<ffi::AnyBuffer> outlier_idx,
                         ffi::Result<ffi::AnyBuffer> outlier_count, float threshold) {
  JAXINT8_RETURN_IF_ERROR(QuantizeActivations(pool, x, col_amax, xq, row_scale, outlier_idx,
                                              outlier_count, threshold));
  return Int8Matmul(pool, *xq, *row_scale, x, *outlier_idx, *outlier_count, qweight, scale, bias, y);
}

ffi::Error LlmInt8MatmulGroup(ffi::ThreadPool pool, ffi::AnyBuffer x,
                              ffi::Result<ffi::AnyBuffer> col_amax, ffi::Result<ffi::AnyBuffer> xq,
                              ffi::Result<ffi::AnyBuffer> row_scale,
                              ffi::Result<ffi::AnyBuffer> outlier_idx,
                              ffi::Result<ffi::AnyBuffer> outlier_count, ffi::RemainingArgs weights,
                              ffi::RemainingRets ys, float threshold) {
  size_t groups = 0;
  GroupWeights w;
  JAXINT8_RETURN_IF_ERROR(decode_group(weights, ys, w, &groups));
  JAXINT8_RETURN_IF_ERROR(QuantizeActivations(pool, x, col_amax, xq, row_scale, outlier_idx,
                                              outlier_count, threshold));
  for (size_t g = 0; g < groups; ++g) {
    JAXINT8_RETURN_IF_ERROR(Int8Matmul(pool, *xq, *row_scale, x, *outlier_idx, *outlier_count,
                                       w[g]->qweight, w[g]->scale, w[g]->bias, w[g]->y));
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxint8::cpu

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_llm_int8_matmul_cpu, jaxint8::cpu::LlmInt8Matmul,
    jaxint8::bind_llm_int8_matmul(xla::ffi::Ffi::Bind().Ctx<xla::ffi::ThreadPool>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_llm_int8_matmul_group_cpu, jaxint8::cpu::LlmInt8MatmulGroup,
    jaxint8::bind_llm_int8_matmul_group(xla::ffi::Ffi::Bind().Ctx<xla::ffi::ThreadPool>()));
