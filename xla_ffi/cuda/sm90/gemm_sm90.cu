// Hopper int8 GEMM launcher: outlier gather, then the CUTLASS configuration chosen by the dispatch.
#include "cuda/sm90/gemm_sm90.h"

#include <cuda_fp16.h>

#include <algorithm>

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

// The staging of p's outliers into xo / wo with row stride ld (no buffers when ld = 0).
OutlierStaging staging(const Int8GemmParams& p, int ld, float* xo, float* wo, int mode) {
  OutlierStaging st;
  if (ld <= 0 || p.outlier_count == nullptr) return st;
  st.xo = xo;
  st.wo = wo;
  st.ld = ld;
  st.mode = mode;
  st.qweight = p.qweight;
  st.scale = p.scale;
  st.n = p.n;
  if (p.outlier_partial != nullptr) st.max_count = p.partial_min_count;  // larger counts: the product
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

}  // namespace sm90

bool int8_gemm_sm90_supported(const Int8GemmParams& p) {
  auto aligned = [](const void* ptr, uintptr_t a) { return (reinterpret_cast<uintptr_t>(ptr) % a) == 0; };
  if (p.m < 1 || p.n < 8 || p.k < 16) return false;
  if (p.n % 8 != 0 || p.k % 16 != 0) return false;
  if (p.m >= (int64_t{1} << 31) || p.n >= (int64_t{1} << 31) || p.k >= (int64_t{1} << 31)) return false;
  if (!aligned(p.xq, 16) || !aligned(p.qweight, 16) || !aligned(p.y, 16)) return false;
  if (!aligned(p.row_scale, 4) || !aligned(p.scale, 4) || !aligned(p.bias, 4)) return false;
  if (p.outlier_count != nullptr && (p.x == nullptr || p.outlier_idx == nullptr)) return false;
  return true;
}

size_t int8_gemm_sm90_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  const int64_t ld = std::min<int64_t>((k + 3) / 4 * 4, kInt8GemmSm90OutlierCap);
  return sm90::align_up(static_cast<size_t>(m) * ld * 4, sm90::kAlign) + static_cast<size_t>(n) * ld * 4;
}

OutlierStaging int8_gemm_sm90_outlier_staging(const Int8GemmParams& p) {
  if (!int8_gemm_sm90_supported(p)) return {};
  return sm90::workspace_staging(p, p.outlier_mode);
}

cudaError_t launch_int8_gemm_sm90(const Int8GemmParams& p, Sm90Tile tile, int num_sms, cudaStream_t stream) {
  if (!int8_gemm_sm90_supported(p)) return cudaErrorNotSupported;
  sm90::GemmArgs a;
  a.m = static_cast<int>(p.m);
  a.n = static_cast<int>(p.n);
  a.k = static_cast<int>(p.k);
  a.xq = p.xq;
  a.qweight = p.qweight;
  a.row_scale = p.row_scale;
  a.scale = p.scale;
  a.bias = p.bias;
  a.x = p.x;
  a.x_type = static_cast<int>(p.x_type);
  a.outlier_idx = p.outlier_idx;
  a.outlier_count = p.outlier_count;
  a.y = p.y;
  a.outlier_mode = p.outlier_mode;
  a.outlier_partial = p.outlier_partial;
  a.partial_min_count = p.partial_min_count;
  a.sm_count = num_sms;
  const OutlierStaging st = sm90::workspace_staging(p, p.outlier_mode);
  a.ld = st.ld;
  a.xo = st.xo;
  a.wo = st.wo;
  if (!p.outliers_staged) {
    cudaError_t e = sm90::launch_gather(p, st, stream);
    if (e != cudaSuccess) return e;
  }
  using GemmFn = cudaError_t (*)(const sm90::GemmArgs&, cudaStream_t);
  // Indexed by Sm90Tile.
  static constexpr GemmFn kBf16[] = {sm90::gemm_pp_bf16,     sm90::gemm_pp128_bf16, sm90::gemm_coop_bf16,
                                     sm90::gemm_pp64n_bf16,  sm90::gemm_pp160_bf16, sm90::gemm_coop160_bf16};
  static constexpr GemmFn kF16[] = {sm90::gemm_pp_f16,     sm90::gemm_pp128_f16, sm90::gemm_coop_f16,
                                    sm90::gemm_pp64n_f16,  sm90::gemm_pp160_f16, sm90::gemm_coop160_f16};
  static constexpr GemmFn kF32[] = {sm90::gemm_pp_f32,     sm90::gemm_pp128_f32, sm90::gemm_coop_f32,
                                    sm90::gemm_pp64n_f32,  sm90::gemm_pp160_f32, sm90::gemm_coop160_f32};
  const int config = static_cast<int>(tile);
  switch (p.y_type) {
    case FloatType::kBF16: return kBf16[config](a, stream);
    case FloatType::kF16: return kF16[config](a, stream);
    case FloatType::kF32: return kF32[config](a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace jaxint8::cuda
