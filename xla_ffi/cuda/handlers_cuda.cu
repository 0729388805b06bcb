// CUDA FFI handlers: the CPU handlers' targets, buffers and attributes (cpu/quantize_cpu.cc,
// cpu/matmul_cpu.cc), plus the CUDA-only "options" attribute (jaxint8.KernelOptions) and, for the
// matmul targets, the Hopper GEMM's workspace as an extra result that XLA allocates. Each handler
// checks its buffers, turns them into kernel arguments and hands them to cuda/dispatch.cu, which
// decides which kernels run. No host synchronization: the outlier count stays on the device.
//
// All handlers are command-buffer compatible: their host code depends only on shapes, pointers,
// attributes and the device (never on data) and makes no allocation, so XLA may record them into
// CUDA graphs. jaxint8_llm_int8_matmul(_group) run quantization and GEMM in one custom call: each
// FFI call costs ~13-20 us of host time on jax 0.11.2, more than a decode step's quantization.
#include <cuda_runtime.h>

#include <optional>
#include <string>

#include "common.h"
#include "cuda/dispatch.h"
#include "cuda/kernel_options.h"
#include "handlers.h"

XLA_FFI_REGISTER_STRUCT_ATTR_DECODING(jaxint8::cuda::KernelOptions,
                                      ::xla::ffi::StructMember<int32_t>("gemm"),
                                      ::xla::ffi::StructMember<int32_t>("decode"),
                                      ::xla::ffi::StructMember<int32_t>("fused_quant"),
                                      ::xla::ffi::StructMember<int32_t>("gemv_ksplit"),
                                      ::xla::ffi::StructMember<int32_t>("token_loads"),
                                      ::xla::ffi::StructMember<int32_t>("outliers"),
                                      ::xla::ffi::StructMember<int32_t>("sm90_tile"));

namespace jaxint8::cuda {
namespace {

ffi::Error cuda_error(cudaError_t e, const char* target, const char* step) {
  return ffi::Error::Internal(std::string("jaxint8 CUDA ") + target + " (" + step + "): " + cudaGetErrorString(e));
}

ffi::Error to_ffi(const Status& s, const char* target) {
  return s.ok() ? ffi::Error::Success() : cuda_error(s.err, target, s.step);
}

FloatType float_type(ffi::DataType t) {
  switch (t) {
    case ffi::DataType::F32: return FloatType::kF32;
    case ffi::DataType::BF16: return FloatType::kBF16;
    default: return FloatType::kF16;
  }
}

// The quantization outputs of a call, as kernel arguments (buffers checked by check_quantize_rows).
QuantizeCall quantize_call(ffi::AnyBuffer x, ffi::AnyBuffer col_amax, ffi::AnyBuffer xq, ffi::AnyBuffer row_scale,
                           ffi::AnyBuffer outlier_idx, ffi::AnyBuffer outlier_count, float threshold,
                           const ActivationShape& sh) {
  QuantizeCall q;
  q.x = x.untyped_data();
  q.x_type = float_type(x.element_type());
  q.nb = sh.nb;
  q.m = sh.m;
  q.k = sh.k;
  q.threshold = threshold;
  q.col_amax = col_amax.typed_data<float>();
  q.xq = xq.typed_data<int8_t>();
  q.row_scale = row_scale.typed_data<float>();
  q.outlier_idx = outlier_idx.typed_data<int32_t>();
  q.outlier_count = outlier_count.typed_data<int32_t>();
  return q;
}

// The activation-side operands of a matmul call (shared by all its weights).
struct Activations {
  ffi::AnyBuffer xq, row_scale, x, outlier_idx, outlier_count;
};

// Checks one weight against the activations and adds its batch-element-0 GEMM problem to *call.
ffi::Error add_weight(const Activations& a, ffi::AnyBuffer qweight, ffi::AnyBuffer scale, ffi::AnyBuffer bias,
                      ffi::AnyBuffer y, MatmulCall* call) {
  ActivationShape sh;
  int64_t n = 0;
  JAXINT8_RETURN_IF_ERROR(check_int8_matmul(a.xq, a.row_scale, a.x, a.outlier_idx, a.outlier_count, qweight, scale,
                                            bias, y, &sh, &n));
  Int8GemmParams& p = call->ps[call->count++];
  p.m = sh.m;
  p.n = n;
  p.k = sh.k;
  p.xq = a.xq.typed_data<int8_t>();
  p.qweight = qweight.typed_data<int8_t>();
  p.row_scale = a.row_scale.typed_data<float>();
  p.scale = scale.typed_data<float>();
  p.bias = bias.element_count() ? bias.typed_data<float>() : nullptr;
  p.x = a.x.untyped_data();
  p.x_type = float_type(a.x.element_type());
  p.outlier_idx = a.outlier_idx.typed_data<int32_t>();
  p.outlier_count = a.outlier_count.typed_data<int32_t>();
  p.y = y.untyped_data();
  p.y_type = float_type(y.element_type());
  call->nb = sh.nb;
  return ffi::Error::Success();
}

void set_workspace(ffi::AnyBuffer workspace, MatmulCall* call) {
  call->workspace = workspace.element_count() ? workspace.untyped_data() : nullptr;
  call->workspace_bytes = workspace.size_bytes();
}

ffi::Error ColumnAbsmax(cudaStream_t stream, ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> col_amax) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_column_absmax(x, *col_amax, &sh));
  const cudaError_t err = launch_column_absmax(x.untyped_data(), float_type(x.element_type()), sh.nb, sh.m, sh.k,
                                               col_amax->typed_data<float>(), device_info().num_sms, stream);
  return err == cudaSuccess ? ffi::Error::Success() : cuda_error(err, "column_absmax", "column absmax");
}

ffi::Error QuantizeRows(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer col_amax,
                        ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                        ffi::Result<ffi::AnyBuffer> outlier_idx, ffi::Result<ffi::AnyBuffer> outlier_count,
                        float threshold) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_quantize_rows(x, col_amax, *xq, *row_scale, *outlier_idx, *outlier_count, &sh));
  const QuantizeCall q = quantize_call(x, col_amax, *xq, *row_scale, *outlier_idx, *outlier_count, threshold, sh);
  const cudaError_t err = launch_quantize_rows(q.x, q.x_type, q.col_amax, q.threshold, q.nb, q.m, q.k, q.xq,
                                               q.row_scale, q.outlier_idx, q.outlier_count, device_info().num_sms,
                                               stream);
  return err == cudaSuccess ? ffi::Error::Success() : cuda_error(err, "quantize_rows", "quantize rows");
}

ffi::Error Int8Matmul(cudaStream_t stream, ffi::AnyBuffer xq, ffi::AnyBuffer row_scale, ffi::AnyBuffer x,
                      ffi::AnyBuffer outlier_idx, ffi::AnyBuffer outlier_count, ffi::AnyBuffer qweight,
                      ffi::AnyBuffer scale, ffi::AnyBuffer bias, ffi::Result<ffi::AnyBuffer> y,
                      ffi::Result<ffi::AnyBuffer> workspace, KernelOptions options) {
  MatmulCall call;
  JAXINT8_RETURN_IF_ERROR(
      add_weight(Activations{xq, row_scale, x, outlier_idx, outlier_count}, qweight, scale, bias, *y, &call));
  set_workspace(*workspace, &call);
  return to_ffi(run_int8_matmul(call, options, stream), "int8_matmul");
}

ffi::Error LlmInt8Matmul(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer qweight, ffi::AnyBuffer scale,
                         ffi::AnyBuffer bias, ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> col_amax,
                         ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                         ffi::Result<ffi::AnyBuffer> outlier_idx, ffi::Result<ffi::AnyBuffer> outlier_count,
                         ffi::Result<ffi::AnyBuffer> workspace, float threshold, KernelOptions options) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_quantize_rows(x, *col_amax, *xq, *row_scale, *outlier_idx, *outlier_count, &sh));
  MatmulCall call;
  JAXINT8_RETURN_IF_ERROR(
      add_weight(Activations{*xq, *row_scale, x, *outlier_idx, *outlier_count}, qweight, scale, bias, *y, &call));
  set_workspace(*workspace, &call);
  const QuantizeCall q = quantize_call(x, *col_amax, *xq, *row_scale, *outlier_idx, *outlier_count, threshold, sh);
  return to_ffi(run_llm_int8_matmul(q, call, options, stream), "llm_int8_matmul");
}

ffi::Error LlmInt8MatmulGroup(cudaStream_t stream, ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> col_amax,
                              ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                              ffi::Result<ffi::AnyBuffer> outlier_idx,
                              ffi::Result<ffi::AnyBuffer> outlier_count, ffi::Result<ffi::AnyBuffer> workspace,
                              ffi::RemainingArgs weights, ffi::RemainingRets ys, float threshold,
                              KernelOptions options) {
  size_t groups = 0;
  GroupWeights w;
  JAXINT8_RETURN_IF_ERROR(decode_group(weights, ys, w, &groups));
  static_assert(kMaxGroupWeights <= kMaxSkinnyWeights, "a group's decode GEMMs are one launch");
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_quantize_rows(x, *col_amax, *xq, *row_scale, *outlier_idx, *outlier_count, &sh));
  MatmulCall call;
  const Activations a{*xq, *row_scale, x, *outlier_idx, *outlier_count};
  for (size_t g = 0; g < groups; ++g)
    JAXINT8_RETURN_IF_ERROR(add_weight(a, w[g]->qweight, w[g]->scale, w[g]->bias, *w[g]->y, &call));
  set_workspace(*workspace, &call);
  const QuantizeCall q = quantize_call(x, *col_amax, *xq, *row_scale, *outlier_idx, *outlier_count, threshold, sh);
  return to_ffi(run_llm_int8_matmul(q, call, options, stream), "llm_int8_matmul_group");
}

}  // namespace
}  // namespace jaxint8::cuda

// Argument lists shared with the CPU handlers (common.h), after the CUDA stream; the matmul
// targets add the workspace result and the options attribute.
using Stream = xla::ffi::PlatformStream<cudaStream_t>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxint8_column_absmax_cuda, jaxint8::cuda::ColumnAbsmax,
                              jaxint8::bind_column_absmax(xla::ffi::Ffi::Bind().Ctx<Stream>()),
                              {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxint8_quantize_rows_cuda, jaxint8::cuda::QuantizeRows,
                              jaxint8::bind_quantize_rows(xla::ffi::Ffi::Bind().Ctx<Stream>()),
                              {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_int8_matmul_cuda, jaxint8::cuda::Int8Matmul,
    jaxint8::bind_int8_matmul<true>(xla::ffi::Ffi::Bind().Ctx<Stream>())
        .Attr<jaxint8::cuda::KernelOptions>("options"),
    {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_llm_int8_matmul_cuda, jaxint8::cuda::LlmInt8Matmul,
    jaxint8::bind_llm_int8_matmul<true>(xla::ffi::Ffi::Bind().Ctx<Stream>())
        .Attr<jaxint8::cuda::KernelOptions>("options"),
    {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_llm_int8_matmul_group_cuda, jaxint8::cuda::LlmInt8MatmulGroup,
    jaxint8::bind_llm_int8_matmul_group<true>(xla::ffi::Ffi::Bind().Ctx<Stream>())
        .Attr<jaxint8::cuda::KernelOptions>("options"),
    {xla::ffi::Traits::kCmdBufferCompatible});
