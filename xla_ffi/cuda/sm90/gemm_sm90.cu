// Hopper int8 GEMM launcher: outlier gather + shape-based choice of the CUTLASS configuration.
#include "cuda/sm90/gemm_sm90.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "cuda/outlier_staging.cuh"
#include "cuda/sm90/gemm_sm90_configs.h"

namespace jaxint8::cuda {
namespace sm90 {
namespace {

constexpr size_t kAlign = 256;
inline size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// The gather kernel: one thread per (row, 4 compact columns), see stage_outliers. The block
// reads the count and the first min(ld, k) indices at the same time (those past the count are
// in bounds and never used), so a thread's chain is one round trip for count + indices, one for
// its values, then the store; the warp-per-row version before (8 of 32 lanes busy, 2 rows per
// warp one after the other) took 4.3 us at 128 x 16384 and 13.7 us at 128 x 49152 (H100, layer
// benchmark), the same as this one: both are bound by the scattered weight reads.
constexpr int kGatherThreads = 256;

__global__ void __launch_bounds__(kGatherThreads) gather_outliers_kernel(
    const void* __restrict__ x, FloatType x_type, const int32_t* __restrict__ idx,
    const int32_t* __restrict__ count, int64_t m, int64_t k, OutlierStaging st) {
  __shared__ int32_t s_idx[kStagingMaxLd];
  stage_outliers(st, x, x_type, m, k, idx, *count, s_idx,
                 static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
                 static_cast<int64_t>(gridDim.x) * blockDim.x);
}

static_assert(kInt8GemmSm90OutlierCap <= kStagingMaxLd, "the gather keeps ld indices in shared memory");

int pick_ld(const Int8GemmParams& p) {
  // Largest multiple of 4 <= min(cap, k) whose compact buffers fit the workspace.
  int ld = static_cast<int>(std::min<int64_t>((p.k + 3) / 4 * 4, kInt8GemmSm90OutlierCap));
  if (p.workspace == nullptr) return 0;
  while (ld > 0) {
    size_t need = align_up(static_cast<size_t>(p.m) * ld * 4, kAlign) + static_cast<size_t>(p.n) * ld * 4;
    if (need <= p.workspace_bytes) break;
    ld -= 4;
  }
  return ld;
}

}  // namespace

// JAXINT8_GATHER_EVICT_LAST=0 (environment, read once): plain stores of the staged operands,
// for measurements.
bool staging_keep_in_l2() {
  static const bool keep = [] {
    const char* v = std::getenv("JAXINT8_GATHER_EVICT_LAST");
    return v == nullptr || std::atoi(v) != 0;
  }();
  return keep;
}

// The staging of p's outliers into xo / wo with row stride ld (no buffers when ld = 0).
OutlierStaging staging(const Int8GemmParams& p, int ld, float* xo, float* wo, int mode) {
  OutlierStaging st;
  if (ld <= 0 || p.outlier_count == nullptr) return st;
  st.xo = xo;
  st.wo = wo;
  st.ld = ld;
  st.mode = mode;
  st.keep_in_l2 = staging_keep_in_l2();
  st.wq = p.wq;
  st.col_scale = p.col_scale;
  st.n = p.n;
  return st;
}

// The library's staging of p: the compact buffers at the start of p.workspace.
OutlierStaging workspace_staging(const Int8GemmParams& p, int mode) {
  const int ld = pick_ld(p);
  if (ld <= 0) return {};
  auto* base = static_cast<char*>(p.workspace);
  return staging(p, ld, reinterpret_cast<float*>(base),
                 reinterpret_cast<float*>(base + align_up(static_cast<size_t>(p.m) * ld * 4, kAlign)), mode);
}

cudaError_t launch_gather(const Int8GemmParams& p, const OutlierStaging& st, cudaStream_t stream) {
  if (st.ld <= 0) return cudaSuccess;
  // Sized for up to 8 outliers (2 quads per row, one pass); more loop over the grid.
  const int64_t items = (p.m + p.n) * std::min(2, st.ld / 4);
  const int64_t blocks = std::min<int64_t>((items + kGatherThreads - 1) / kGatherThreads, int64_t{1} << 20);
  gather_outliers_kernel<<<static_cast<unsigned>(blocks), kGatherThreads, 0, stream>>>(
      p.x, p.x_type, p.outlier_idx, p.outlier_count, p.m, p.k, st);
  return cudaGetLastError();
}

cudaError_t launch_gather_outliers(const Int8GemmParams& p, int ld, float* xo, float* wo, int mode,
                                   cudaStream_t stream) {
  return launch_gather(p, staging(p, ld, xo, wo, mode), stream);
}

}  // namespace sm90

bool int8_gemm_sm90_supported(const Int8GemmParams& p) {
  auto aligned = [](const void* ptr, uintptr_t a) { return (reinterpret_cast<uintptr_t>(ptr) % a) == 0; };
  if (p.m < 1 || p.n < 8 || p.k < 16) return false;
  if (p.n % 8 != 0 || p.k % 16 != 0) return false;
  if (p.m >= (int64_t{1} << 31) || p.n >= (int64_t{1} << 31) || p.k >= (int64_t{1} << 31)) return false;
  if (!aligned(p.xq, 16) || !aligned(p.wq, 16) || !aligned(p.y, 16)) return false;
  if (!aligned(p.row_scale, 4) || !aligned(p.col_scale, 4) || !aligned(p.bias, 4)) return false;
  if (p.outlier_count != nullptr && (p.x == nullptr || p.outlier_idx == nullptr)) return false;
  return true;
}

size_t int8_gemm_sm90_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  const int64_t ld = std::min<int64_t>((k + 3) / 4 * 4, kInt8GemmSm90OutlierCap);
  return sm90::align_up(static_cast<size_t>(m) * ld * 4, sm90::kAlign) + static_cast<size_t>(n) * ld * 4;
}

OutlierStaging int8_gemm_sm90_outlier_staging(const Int8GemmParams& p) {
  if (!int8_gemm_sm90_supported(p)) return {};
  return sm90::workspace_staging(p, kInt8GemmSm90OutlierMode);
}

cudaError_t launch_int8_gemm_sm90(const Int8GemmParams& p, cudaStream_t stream) {
  return sm90::launch_int8_gemm_sm90_mode(p, kInt8GemmSm90OutlierMode, stream);
}

cudaError_t sm90::launch_int8_gemm_sm90_mode(const Int8GemmParams& p, int outlier_mode, cudaStream_t stream) {
  if (!int8_gemm_sm90_supported(p)) return cudaErrorNotSupported;
  sm90::GemmArgs a;
  a.m = static_cast<int>(p.m);
  a.n = static_cast<int>(p.n);
  a.k = static_cast<int>(p.k);
  a.xq = p.xq;
  a.wq = p.wq;
  a.row_scale = p.row_scale;
  a.col_scale = p.col_scale;
  a.bias = p.bias;
  a.x = p.x;
  a.x_type = static_cast<int>(p.x_type);
  a.outlier_idx = p.outlier_idx;
  a.outlier_count = p.outlier_count;
  a.y = p.y;
  a.outlier_mode = outlier_mode;
  const OutlierStaging st = sm90::workspace_staging(p, outlier_mode);
  a.ld = st.ld;
  a.xo = st.xo;
  a.wo = st.wo;
  if (!p.outliers_staged) {
    cudaError_t e = sm90::launch_gather(p, st, stream);
    if (e != cudaSuccess) return e;
  }
  // Dispatch (H100, benchmarks/cuda/sm90_harness_h100.log and
  // benchmarks/results/sm90-variants-h100-2026-11-25-s6.log):
  // * m <= 512: the 64x128 ping-pong kernel (5120->20480: 109 vs 120 us at m=512, 70 vs 92 at
  //   m=256; it also hides the outlier epilogue behind the other warpgroup's mainloop), or the
  //   64x64 one when twice its tiles still fit one wave (narrow outputs: otherwise most SMs idle).
  // * m > 512: the 128x256 cooperative kernel (cluster 2x1) (178 vs 258 us at m=1024), unless it
  //   would run fewer than two tiles per SM: then the 128x128 ping-pong kernel balances better
  //   (1024x5120x20480 with 6 outliers: 218 vs 254 us; 1024x4096x16384: 121 vs 125 us).
  // JAXINT8_SM90_PP64N=0 (environment, read once) turns the 64x64 kernel off, for measurements.
  static const bool narrow_tiles = [] {
    const char* v = std::getenv("JAXINT8_SM90_PP64N");
    return v == nullptr || std::atoi(v) != 0;
  }();
  enum Config { kPingpong64x128 = 0, kPingpong128x128 = 1, kCooperative128x256 = 2, kPingpong64x64 = 3 };
  const int sms = sm90::sm_count_cached();
  const int64_t pp_tiles = ((p.m + 63) / 64) * ((p.n + 127) / 128);
  const int64_t coop_tiles = ((p.m + 127) / 128) * ((p.n + 255) / 256);
  const Config config = p.m <= kInt8GemmSm90PingpongMaxM
                            ? (narrow_tiles && 2 * pp_tiles <= sms ? kPingpong64x64 : kPingpong64x128)
                        : coop_tiles < 2 * sms ? kPingpong128x128
                                               : kCooperative128x256;
  using GemmFn = cudaError_t (*)(const sm90::GemmArgs&, cudaStream_t);
  static constexpr GemmFn kBf16[] = {sm90::gemm_pp_bf16, sm90::gemm_pp128_bf16, sm90::gemm_coop_bf16,
                                     sm90::gemm_pp64n_bf16};
  static constexpr GemmFn kF16[] = {sm90::gemm_pp_f16, sm90::gemm_pp128_f16, sm90::gemm_coop_f16,
                                    sm90::gemm_pp64n_f16};
  static constexpr GemmFn kF32[] = {sm90::gemm_pp_f32, sm90::gemm_pp128_f32, sm90::gemm_coop_f32,
                                    sm90::gemm_pp64n_f32};
  switch (p.y_type) {
    case FloatType::kBF16: return kBf16[config](a, stream);
    case FloatType::kF16: return kF16[config](a, stream);
    case FloatType::kF32: return kF32[config](a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace jaxint8::cuda
