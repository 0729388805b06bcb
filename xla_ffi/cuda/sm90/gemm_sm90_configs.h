// Private to xla_ffi/cuda/sm90: the per-configuration entry points, one CUTLASS kernel
// configuration per translation unit.
#pragma once

#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

#include "cuda/kernels.h"

namespace jaxint8::cuda::sm90 {

// Everything the fused epilogue needs, already resolved by the launcher (gemm_sm90.cu).
struct GemmArgs {
  int m = 0, n = 0, k = 0;
  const int8_t* xq = nullptr;
  const int8_t* qweight = nullptr;
  const float* row_scale = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;           // may be null
  // Compact outlier operands written by the gather kernel: xo [m, ld], wo [n, ld] (f32,
  // W_deq already applied, zero padded to a multiple of 4 columns). ld == 0: none stored.
  const float* xo = nullptr;
  const float* wo = nullptr;
  int ld = 0;
  // Direct (slow) source for outlier columns t >= ld.
  const void* x = nullptr;
  int x_type = 1;                        // FloatType
  const int32_t* outlier_idx = nullptr;
  const int32_t* outlier_count = nullptr;  // device scalar; nullptr = no outliers
  void* y = nullptr;
  int outlier_mode = 0;  // 0 exact (CUDA cores, CPU order), 1 tensor cores (see OutlierParams::mode)
  const float* outlier_partial = nullptr;  // the outlier product, used for counts > partial_min_count
  int partial_min_count = 0;
  int sm_count = 0;      // SMs of the device (the persistent scheduler's grid)
};

// Tile configurations.
//   coop:  128x256x128, KernelTmaWarpSpecializedCooperative, cluster 2x1x1 (large m)
//   pp:    64x128x128,  KernelTmaWarpSpecializedPingpong,    cluster 1x1x1 (small m)
//   pp128: 128x128x128, KernelTmaWarpSpecializedPingpong,    cluster 1x1x1 (large m, few coop tiles)
//   pp64n: 64x64x128,   KernelTmaWarpSpecializedPingpong,    cluster 1x1x1 (small m, narrow n)
//   pp160: 64x160x128,  KernelTmaWarpSpecializedPingpong,    cluster 1x1x1 (small m, n fits 160 better)
//   coop160: 128x160x128, KernelTmaWarpSpecializedCooperative, cluster 2x1x1 (large m, likewise)
// Output types: bf16 / f16 / f32.
#define JAXINT8_SM90_DECLARE(name) cudaError_t name(const GemmArgs& a, cudaStream_t stream);
JAXINT8_SM90_DECLARE(gemm_coop_bf16)
JAXINT8_SM90_DECLARE(gemm_coop_f16)
JAXINT8_SM90_DECLARE(gemm_coop_f32)
JAXINT8_SM90_DECLARE(gemm_pp_bf16)
JAXINT8_SM90_DECLARE(gemm_pp_f16)
JAXINT8_SM90_DECLARE(gemm_pp_f32)
JAXINT8_SM90_DECLARE(gemm_pp128_bf16)
JAXINT8_SM90_DECLARE(gemm_pp128_f16)
JAXINT8_SM90_DECLARE(gemm_pp128_f32)
JAXINT8_SM90_DECLARE(gemm_pp64n_bf16)
JAXINT8_SM90_DECLARE(gemm_pp64n_f16)
JAXINT8_SM90_DECLARE(gemm_pp64n_f32)
JAXINT8_SM90_DECLARE(gemm_pp160_bf16)
JAXINT8_SM90_DECLARE(gemm_pp160_f16)
JAXINT8_SM90_DECLARE(gemm_pp160_f32)
JAXINT8_SM90_DECLARE(gemm_coop160_bf16)
JAXINT8_SM90_DECLARE(gemm_coop160_f16)
JAXINT8_SM90_DECLARE(gemm_coop160_f32)
#undef JAXINT8_SM90_DECLARE

}  // namespace jaxint8::cuda::sm90
