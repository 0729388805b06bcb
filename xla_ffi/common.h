// Shared definitions for the jaxint8 FFI handlers (CPU and CUDA).
//
// The numeric rules of LLM.int8() live here once, as scalar functions that both the
// C++ CPU handlers and the CUDA kernels call, so that the two back ends agree bit for bit
// on every integer result (int8 activations, row scales, outlier lists).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "xla/ffi/api/ffi.h"

#if defined(__CUDACC__)
#define JAXINT8_HD __host__ __device__ __forceinline__
#else
#define JAXINT8_HD inline
#endif

namespace jaxint8 {

namespace ffi = xla::ffi;

// 127 * 127: the product of the two int8 quantization ranges, undone at dequantization.
constexpr float kInvQuantRangeSq = 1.0f / 16129.0f;
constexpr float kQuantRange = 127.0f;

// |x| maximum that propagates NaN: a NaN anywhere makes the result NaN, so a NaN in the
// activations marks its column as an outlier (see is_outlier) and its row's scale as NaN.
JAXINT8_HD float nan_absmax(float acc, float x) {
  float a = fabsf(x);
  return (a > acc || a != a) ? a : acc;
}

// Column c is an outlier when its absmax reaches the threshold. NaN counts as an outlier
// (it then flows through the high-precision path like in a float matmul). threshold <= 0
// disables the decomposition.
JAXINT8_HD bool is_outlier(float col_absmax, float threshold) {
  return threshold > 0.0f && !(col_absmax < threshold);
}

// Multiplier that maps a row onto [-127, 127]; 0 for an all-zero row (no NaN).
JAXINT8_HD float quant_multiplier(float row_scale) {
  return row_scale == 0.0f ? 0.0f : kQuantRange / row_scale;
}

// round-half-to-even(x * multiplier) clamped to +-127; non-finite products give 0 (the
// row scale is then non-finite too and carries the NaN/Inf into the output row).
JAXINT8_HD int8_t quantize_value(float x, float multiplier) {
  float v = x * multiplier;
  const bool finite = fabsf(v) <= 3.0e38f;  // false for NaN and +-Inf
  v = finite ? v : 0.0f;                     // selects, not branches: the host loop vectorizes
  // Clamping before rounding equals clamping after (the bounds are integers).
  v = v < -kQuantRange ? -kQuantRange : (v > kQuantRange ? kQuantRange : v);
#if defined(__CUDA_ARCH__)
  v = rintf(v);
#else
  // Round half to even without a libm call (baseline x86-64 has no roundss): adding and
  // subtracting 1.5 * 2^23 rounds |v| < 2^22 in the default rounding mode, exactly as rintf.
  const float magic = 12582912.0f;  // not folded: IEEE semantics (no -ffast-math)
  v = (v + magic) - magic;
#endif
  return static_cast<int8_t>(static_cast<int32_t>(v));
}

// Dequantization of one int32 accumulator.
JAXINT8_HD float dequantize_acc(int32_t acc, float row_scale, float scale) {
  return static_cast<float>(acc) * (row_scale * scale * kInvQuantRangeSq);
}

// Dequantized int8 weight element, W_deq = Wq * cw / 127.
JAXINT8_HD float dequantize_weight(int8_t q, float scale) {
  return static_cast<float>(q) * (scale / kQuantRange);
}

// ------------------------------------------------------------------ host-side helpers

// Leading ("batch") dims of a rank >= 2 activation flattened: [nb, m, k] (tokens, in features).
struct ActivationShape {
  int64_t nb = 1, m = 0, k = 0;
};

inline ffi::Error activation_shape(const ffi::AnyBuffer& x, const char* name,
                                   ActivationShape* out) {
  auto dims = x.dimensions();
  if (dims.size() < 2)
    return ffi::Error::InvalidArgument(std::string(name) + " must have rank >= 2");
  out->m = dims[dims.size() - 2];
  out->k = dims[dims.size() - 1];
  out->nb = 1;
  for (size_t i = 0; i + 2 < dims.size(); ++i) out->nb *= dims[i];
  return ffi::Error::Success();
}

inline bool is_float_type(ffi::DataType t) {
  return t == ffi::DataType::F32 || t == ffi::DataType::BF16 || t == ffi::DataType::F16;
}

inline ffi::Error require_float(const ffi::AnyBuffer& b, const char* name) {
  if (!is_float_type(b.element_type()))
    return ffi::Error::InvalidArgument(std::string(name) +
                                       " must be float32, bfloat16 or float16");
  return ffi::Error::Success();
}

inline ffi::Error require_type(const ffi::AnyBuffer& b, ffi::DataType t, const char* name,
                               const char* type_name) {
  if (b.element_type() != t)
    return ffi::Error::InvalidArgument(std::string(name) + " must be " + type_name);
  return ffi::Error::Success();
}

// ------------------------------------------------------------------ handler arguments
// Validation and FFI argument lists shared by the CPU and CUDA handlers, so both platforms accept
// exactly the same buffers (the contract in handlers.h). The Python primitives check shapes and
// dtypes first; these checks keep a hand-written custom call from reading out of bounds.

inline ffi::Error check_count(const ffi::AnyBuffer& b, size_t n, const char* what) {
  if (b.element_count() != n)
    return ffi::Error::InvalidArgument(std::string(what) + " has the wrong number of elements");
  return ffi::Error::Success();
}

#define JAXINT8_RETURN_IF_ERROR(expr) \
  if (auto _e = (expr); _e.failure()) return _e

inline ffi::Error check_column_absmax(const ffi::AnyBuffer& x, const ffi::AnyBuffer& col_amax,
                                      ActivationShape* sh) {
  JAXINT8_RETURN_IF_ERROR(activation_shape(x, "x", sh));
  JAXINT8_RETURN_IF_ERROR(require_float(x, "x"));
  JAXINT8_RETURN_IF_ERROR(require_type(col_amax, ffi::DataType::F32, "col_amax", "float32"));
  return check_count(col_amax, sh->nb * sh->k, "col_amax (x.shape[:-2] + x.shape[-1:])");
}

inline ffi::Error check_quantize_rows(const ffi::AnyBuffer& x, const ffi::AnyBuffer& col_amax,
                                      const ffi::AnyBuffer& xq, const ffi::AnyBuffer& row_scale,
                                      const ffi::AnyBuffer& idx, const ffi::AnyBuffer& count,
                                      ActivationShape* sh) {
  JAXINT8_RETURN_IF_ERROR(check_column_absmax(x, col_amax, sh));
  JAXINT8_RETURN_IF_ERROR(require_type(xq, ffi::DataType::S8, "xq", "int8"));
  JAXINT8_RETURN_IF_ERROR(require_type(row_scale, ffi::DataType::F32, "row_scale", "float32"));
  JAXINT8_RETURN_IF_ERROR(require_type(idx, ffi::DataType::S32, "outlier_idx", "int32"));
  JAXINT8_RETURN_IF_ERROR(require_type(count, ffi::DataType::S32, "outlier_count", "int32"));
  JAXINT8_RETURN_IF_ERROR(check_count(xq, sh->nb * sh->m * sh->k, "xq"));
  JAXINT8_RETURN_IF_ERROR(check_count(row_scale, sh->nb * sh->m, "row_scale"));
  JAXINT8_RETURN_IF_ERROR(check_count(idx, sh->nb * sh->k, "outlier_idx"));
  return check_count(count, sh->nb, "outlier_count");
}

// On success *o is out_features.
inline ffi::Error check_int8_matmul(const ffi::AnyBuffer& xq, const ffi::AnyBuffer& row_scale,
                                    const ffi::AnyBuffer& x, const ffi::AnyBuffer& idx,
                                    const ffi::AnyBuffer& count, const ffi::AnyBuffer& qweight,
                                    const ffi::AnyBuffer& scale, const ffi::AnyBuffer& bias,
                                    const ffi::AnyBuffer& y, ActivationShape* sh, int64_t* n) {
  JAXINT8_RETURN_IF_ERROR(activation_shape(xq, "xq", sh));
  JAXINT8_RETURN_IF_ERROR(require_type(xq, ffi::DataType::S8, "xq", "int8"));
  JAXINT8_RETURN_IF_ERROR(require_type(qweight, ffi::DataType::S8, "qweight", "int8"));
  JAXINT8_RETURN_IF_ERROR(require_float(x, "x"));
  JAXINT8_RETURN_IF_ERROR(require_float(y, "y"));
  JAXINT8_RETURN_IF_ERROR(require_type(row_scale, ffi::DataType::F32, "row_scale", "float32"));
  JAXINT8_RETURN_IF_ERROR(require_type(scale, ffi::DataType::F32, "scale", "float32"));
  JAXINT8_RETURN_IF_ERROR(require_type(bias, ffi::DataType::F32, "bias", "float32"));
  JAXINT8_RETURN_IF_ERROR(require_type(idx, ffi::DataType::S32, "outlier_idx", "int32"));
  JAXINT8_RETURN_IF_ERROR(require_type(count, ffi::DataType::S32, "outlier_count", "int32"));
  auto wd = qweight.dimensions();
  if (wd.size() != 2 || wd[1] != sh->k)
    return ffi::Error::InvalidArgument("qweight must have shape [out_features, " +
                                       std::to_string(sh->k) + "]");
  *n = wd[0];
  JAXINT8_RETURN_IF_ERROR(check_count(scale, *n, "scale ([out_features])"));
  if (bias.element_count() != 0)
    JAXINT8_RETURN_IF_ERROR(check_count(bias, *n, "bias ([out_features] or [0])"));
  JAXINT8_RETURN_IF_ERROR(check_count(x, xq.element_count(), "x (the shape of xq)"));
  JAXINT8_RETURN_IF_ERROR(check_count(row_scale, sh->nb * sh->m, "row_scale"));
  JAXINT8_RETURN_IF_ERROR(check_count(idx, sh->nb * sh->k, "outlier_idx"));
  JAXINT8_RETURN_IF_ERROR(check_count(count, sh->nb, "outlier_count"));
  return check_count(y, sh->nb * sh->m * *n, "y");
}

// FFI argument lists after the platform contexts: Bind().Ctx<...>() is passed in. The CUDA
// matmul targets have one more result after their fixed ones, the Hopper GEMM's workspace
// (kWorkspace): bind_last_result binds a target's last fixed result, then the workspace.
template <bool kWorkspace, typename B>
auto bind_last_result(B b) {
  if constexpr (kWorkspace) {
    return std::move(b).template Ret<ffi::AnyBuffer>().template Ret<ffi::AnyBuffer>();  // ..., u8 workspace
  } else {
    return std::move(b).template Ret<ffi::AnyBuffer>();
  }
}

template <typename B>
auto bind_column_absmax(B b) {
  return std::move(b).template Arg<ffi::AnyBuffer>().template Ret<ffi::AnyBuffer>();
}

template <typename B>
auto bind_quantize_rows(B b) {
  return std::move(b).template Arg<ffi::AnyBuffer>()   // x
      .template Arg<ffi::AnyBuffer>()       // col_amax
      .template Ret<ffi::AnyBuffer>()       // xq
      .template Ret<ffi::AnyBuffer>()       // row_scale
      .template Ret<ffi::AnyBuffer>()       // outlier_idx
      .template Ret<ffi::AnyBuffer>()       // outlier_count
      .template Attr<float>("threshold");
}

template <bool kWorkspace = false, typename B>
auto bind_int8_matmul(B b) {
  return bind_last_result<kWorkspace>(std::move(b).template Arg<ffi::AnyBuffer>()   // xq
      .template Arg<ffi::AnyBuffer>()       // row_scale
      .template Arg<ffi::AnyBuffer>()       // x
      .template Arg<ffi::AnyBuffer>()       // outlier_idx
      .template Arg<ffi::AnyBuffer>()       // outlier_count
      .template Arg<ffi::AnyBuffer>()       // qweight
      .template Arg<ffi::AnyBuffer>()       // scale
      .template Arg<ffi::AnyBuffer>());     // bias; then y
}

// The fused target (jaxint8_llm_int8_matmul): the three above in one custom call. The
// intermediate buffers are results so that XLA allocates them; callers drop them.
template <bool kWorkspace = false, typename B>
auto bind_llm_int8_matmul(B b) {
  return bind_last_result<kWorkspace>(std::move(b).template Arg<ffi::AnyBuffer>()   // x
      .template Arg<ffi::AnyBuffer>()       // qweight
      .template Arg<ffi::AnyBuffer>()       // scale
      .template Arg<ffi::AnyBuffer>()       // bias
      .template Ret<ffi::AnyBuffer>()       // y
      .template Ret<ffi::AnyBuffer>()       // col_amax
      .template Ret<ffi::AnyBuffer>()       // xq
      .template Ret<ffi::AnyBuffer>()       // row_scale
      .template Ret<ffi::AnyBuffer>())      // outlier_idx; then outlier_count
      .template Attr<float>("threshold");
}

// The grouped target (jaxint8_llm_int8_matmul_group): one quantization of x shared by several
// weights, one GEMM each. The intermediates come first (fixed results), then one y per weight;
// the remaining arguments are (qweight, scale, bias) per weight.
inline constexpr size_t kMaxGroupWeights = 8;

template <bool kWorkspace = false, typename B>
auto bind_llm_int8_matmul_group(B b) {
  return bind_last_result<kWorkspace>(std::move(b).template Arg<ffi::AnyBuffer>()   // x
      .template Ret<ffi::AnyBuffer>()       // col_amax
      .template Ret<ffi::AnyBuffer>()       // xq
      .template Ret<ffi::AnyBuffer>()       // row_scale
      .template Ret<ffi::AnyBuffer>())      // outlier_idx; then outlier_count
      .RemainingArgs()                      // (qweight, scale, bias) per weight
      .RemainingRets()                      // y per weight
      .template Attr<float>("threshold");
}

// One weight of a grouped call, decoded from the remaining arguments / results.
struct GroupWeight {
  ffi::AnyBuffer qweight, scale, bias;
  ffi::Result<ffi::AnyBuffer> y;
};

// Number of weights of a grouped call; an error unless the arguments are (qweight, scale, bias)
// triples with one result each, 1 to kMaxGroupWeights of them.
inline ffi::Error group_size(const ffi::RemainingArgs& w, const ffi::RemainingRets& y, size_t* g) {
  if (w.size() % 3 != 0 || w.size() / 3 != y.size() || y.size() == 0 || y.size() > kMaxGroupWeights)
    return ffi::Error::InvalidArgument(
        "jaxint8_llm_int8_matmul_group expects (qweight, scale, bias) per weight and one result per "
        "weight, 1 to " + std::to_string(kMaxGroupWeights) + " weights; got " +
        std::to_string(w.size()) + " weight operands and " + std::to_string(y.size()) + " results");
  *g = y.size();
  return ffi::Error::Success();
}

inline ffi::ErrorOr<GroupWeight> group_weight(const ffi::RemainingArgs& w,
                                              const ffi::RemainingRets& y, size_t i) {
  auto qweight = w.get<ffi::AnyBuffer>(3 * i);
  auto ws = w.get<ffi::AnyBuffer>(3 * i + 1);
  auto bias = w.get<ffi::AnyBuffer>(3 * i + 2);
  auto yi = y.get<ffi::AnyBuffer>(i);
  if (qweight.has_error()) return ffi::Unexpected(qweight.error());
  if (ws.has_error()) return ffi::Unexpected(ws.error());
  if (bias.has_error()) return ffi::Unexpected(bias.error());
  if (yi.has_error()) return ffi::Unexpected(yi.error());
  return GroupWeight{*qweight, *ws, *bias, *yi};
}

// All weights of a grouped call, decoded (and counted) before any work is done.
using GroupWeights = std::optional<GroupWeight>[kMaxGroupWeights];

inline ffi::Error decode_group(const ffi::RemainingArgs& w, const ffi::RemainingRets& y,
                               GroupWeights& out, size_t* groups) {
  JAXINT8_RETURN_IF_ERROR(group_size(w, y, groups));
  for (size_t g = 0; g < *groups; ++g) {
    auto wg = group_weight(w, y, g);
    if (wg.has_error()) return wg.error();
    out[g] = *wg;
  }
  return ffi::Error::Success();
}

}  // namespace jaxint8
