// Interface between the CUDA FFI handlers (handlers_cuda.cu) and the kernel families.
// Kernels know nothing of XLA or JAX: raw device pointers, sizes and a stream.
#pragma once

#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

namespace jaxint8::cuda {

enum class FloatType : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

// One LLM.int8() GEMM problem (one batch element; steps 3-6 of docs/design.md):
//   y[m, n] = cast( acc[m, n] * (row_scale[m] * scale[n] / 16129)
//                   + sum_{t < *outlier_count} x[m, outlier_idx[t]] * qweight[n, outlier_idx[t]] * scale[n] / 127
//                   + bias[n] )
// with acc = xq @ qweight^T in exact int32. All pointers are device pointers. The outlier count
// stays on the device (never read on the host); any count from 0 to k must be right.
struct Int8GemmParams {
  int64_t m = 0, n = 0, k = 0;        // tokens, out features, in features
  const int8_t* xq = nullptr;         // [m, k] row-major
  const int8_t* qweight = nullptr;         // [n, k] row-major (K-major)
  const float* row_scale = nullptr;   // [m]
  const float* scale = nullptr;   // [n]
  const float* bias = nullptr;        // [n] or nullptr
  const void* x = nullptr;            // [m, k] original activations (outlier source)
  FloatType x_type = FloatType::kBF16;
  const int32_t* outlier_idx = nullptr;    // [k], ascending, first *outlier_count valid
  const int32_t* outlier_count = nullptr;  // device scalar
  void* y = nullptr;                  // [m, n] row-major
  FloatType y_type = FloatType::kBF16;
  void* workspace = nullptr;          // scratch from XLA, workspace_bytes long
  size_t workspace_bytes = 0;
  int l2_prefetch_bytes = 0;          // skinny kernel under early launch: L2 warm-up per weight row
  bool outliers_staged = false;       // sm90: the compact outlier operands are already in the
                                      // workspace (staged by the fused quantization kernel or
                                      // the outlier product's launch)
  // Prefill GEMMs (tiled, sm90): when *outlier_count > partial_min_count, the outlier term is
  // outlier_partial[i, j] * (scale[j] / 127), with outlier_partial [m, n] = sum_t x * qweight
  // computed before by launch_outlier_product; otherwise (or when null) the epilogue computes it.
  const float* outlier_partial = nullptr;
  int partial_min_count = 0;
  // sm90 epilogue, outlier columns it adds itself: 0 = CUDA cores in the CPU handler's order,
  // 1 = tensor cores (mma.sync TF32, x split in three terms; sm90/gemm_sm90_impl.cuh).
  int outlier_mode = 0;
};

// Compact outlier operands of one GEMM (the sm90 path's workspace layout), written by a gather
// before the GEMM: xo[r, t] = x[r, idx[t]] for r < m, wo[j, t] = W_deq[j, idx[t]] (mode 1: the
// integer weight) for j < n, t < min(count, ld), zero up to the next multiple of 4. ld = 0:
// nothing to stage.
struct OutlierStaging {
  float* xo = nullptr;
  float* wo = nullptr;
  int ld = 0;                         // row stride of xo / wo, a multiple of 4
  int mode = 0;                       // the epilogue's outlier mode (0 exact, 1 tensor cores)
  int max_count = 0x7fffffff;         // counts above this are not staged (the outlier product
                                      // takes them)
  const int8_t* qweight = nullptr;         // [n, k]
  const float* scale = nullptr;   // [n]
  int64_t n = 0;
};

}  // namespace jaxint8::cuda
