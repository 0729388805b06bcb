// Private to xla_ffi/cuda/sm90 (and the standalone benchmark harness): the per-configuration
// entry points, one CUTLASS kernel configuration per translation unit.
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
  const int8_t* wq = nullptr;
  const float* row_scale = nullptr;
  const float* col_scale = nullptr;
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
  // Persistent tile scheduler knobs (0 = CUTLASS default): max swizzle 1/2/4/8; raster 1 = along M,
  // 2 = along N.
  int swizzle = 0;
  int raster = 0;
  int diag = 0;  // benchmarks only (see OutlierParams::diag)
  int outlier_mode = 0;  // 0 exact (CUDA cores, CPU order), 1 tensor cores (see OutlierParams::mode)
  // CUTLASS's own workspace (stream-K partial accumulators and barrier flags); the launch fails
  // with cudaErrorNotSupported when the configuration needs more than gemm_workspace_bytes.
  void* gemm_workspace = nullptr;
  size_t gemm_workspace_bytes = 0;
  int splits = 0;  // stream-K configurations only: > 1 = plain split-K with this many splits
};

// Tile configurations.
//   coop:  128x256x128, KernelTmaWarpSpecializedCooperative, cluster 2x1x1 (large m)
//   pp:    64x128x128,  KernelTmaWarpSpecializedPingpong,    cluster 1x1x1 (small m)
//   pp128: 128x128x128, KernelTmaWarpSpecializedPingpong,    cluster 1x1x1 (large m, few coop tiles)
//   pp64n: 64x64x128,   KernelTmaWarpSpecializedPingpong,    cluster 1x1x1 (small m, narrow n)
// Output types: bf16 / f16 / f32. "plain" variants have no outlier term (benchmark baseline).
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
#undef JAXINT8_SM90_DECLARE

// SM count of the current device (cached per device; 132 if the query fails).
inline int sm_count_cached() {
  static int counts[64] = {0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
  if (counts[dev] == 0) {
    int c = 0;
    if (cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || c <= 0) return 132;
    counts[dev] = c;
  }
  return counts[dev];
}

// Baseline without outlier node (benchmarks only; defined in benchmarks/cuda/sm90_plain.cu).
cudaError_t gemm_coop_bf16_plain(const GemmArgs& a, cudaStream_t stream);
cudaError_t gemm_pp_bf16_plain(const GemmArgs& a, cudaStream_t stream);

// The gather kernel (gemm_sm90.cu): fills xo / wo for the first min(count, ld) outliers.
// mode 0 stores W_deq in wo, mode 1 the integer weights q (as floats).
cudaError_t launch_gather_outliers(const Int8GemmParams& p, int ld, float* xo, float* wo, int mode,
                                   cudaStream_t stream);

// The launcher with an explicit outlier mode (launch_int8_gemm_sm90 uses kOutlierModeDefault).
cudaError_t launch_int8_gemm_sm90_mode(const Int8GemmParams& p, int outlier_mode, cudaStream_t stream);

}  // namespace jaxint8::cuda::sm90
