// Hopper int8 GEMM launcher: outlier gather + shape-based choice of the CUTLASS configuration.
#include "cuda/sm90/gemm_sm90.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "cuda/sm90/gemm_sm90_configs.h"

namespace jaxint8::cuda {
namespace sm90 {
namespace {

constexpr size_t kAlign = 256;
inline size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

__device__ __forceinline__ float load_x_elem(const void* x, int x_type, int64_t i) {
  if (x_type == 0) return static_cast<const float*>(x)[i];
  unsigned short bits = static_cast<const unsigned short*>(x)[i];
  if (x_type == 1) return __uint_as_float(static_cast<uint32_t>(bits) << 16);
  return __half2float(__ushort_as_half(bits));
}

// Rows [0, m) fill xo[r, t] = x[r, idx[t]]; rows [m, m + n) fill
// wo[j, t] = dequantize_weight(wq[j, idx[t]], col_scale[j]) (same arithmetic as common.h),
// for t < min(count, ld) and zero up to the next multiple of 4 (the epilogue reads 4 at a time).
// One thread per (row, 4 columns): it loads 4 values and stores one float4 (ld is a multiple of
// 4, so the rows are 16-byte aligned). The block reads the count and the first min(ld, k) indices
// at the same time (those past the count are in bounds and never used), so a thread's
// chain is one round trip for count + indices, one for its values, then the store; the
// warp-per-row version before (8 of 32 lanes busy, 2 rows per warp one after the other) took
// 4.3 us at 128 x 16384 and 13.7 us at 128 x 49152 (H100, layer benchmark).
constexpr int kGatherThreads = 256;

// Stores the staged operands with L2 priority evict_last (keep_in_l2) so that the GEMM's weight
// stream, which passes more than L2 through before the epilogue reads them, does not evict them
// (ncu, 128x16384x4096 with 6 outliers: the epilogue's staging loads were its largest stall).
__device__ __forceinline__ void store_staged(float* dst, const float (&v)[4], bool keep_in_l2) {
  if (keep_in_l2) {
    uint64_t policy;
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
    asm volatile("st.global.L2::cache_hint.v4.f32 [%0], {%1, %2, %3, %4}, %5;" ::"l"(dst), "f"(v[0]), "f"(v[1]),
                 "f"(v[2]), "f"(v[3]), "l"(policy)
                 : "memory");
  } else {
    *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
  }
}

__global__ void __launch_bounds__(kGatherThreads) gather_outliers_kernel(
    const void* __restrict__ x, int x_type, const int8_t* __restrict__ wq,
    const float* __restrict__ col_scale, const int32_t* __restrict__ idx,
    const int32_t* __restrict__ count, int64_t m, int64_t n, int64_t k, int ld, int mode,
    bool keep_in_l2, float* __restrict__ xo, float* __restrict__ wo) {
  __shared__ int s_idx[kInt8GemmSm90OutlierCap];
  const int cnt = *count;
  const int stored = static_cast<int>(min(static_cast<int64_t>(ld), k));
  for (int t = threadIdx.x; t < stored; t += blockDim.x) {
    const int c = idx[t];
    s_idx[t] = c >= 0 && c < k ? c : -1;  // out-of-range (malformed) indices contribute 0
  }
  const int cpad = min((cnt + 3) & ~3, ld);
  if (cpad <= 0) return;  // uniform over the block: no thread reaches the barrier
  __syncthreads();
  const int used = min(cnt, stored);
  const int quads = cpad / 4;
  const int64_t items = (m + n) * quads;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; w < items;
       w += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = w / quads;
    const int t0 = static_cast<int>(w % quads) * 4;
    float v[4];
    if (r < m) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = t0 + i < used ? s_idx[t0 + i] : -1;
        v[i] = c >= 0 ? load_x_elem(x, x_type, r * k + c) : 0.0f;
      }
      store_staged(xo + r * ld + t0, v, keep_in_l2);
    } else {
      const int64_t j = r - m;
      const float s = col_scale[j] / 127.0f;  // dequantize_weight: q * (col_scale / 127)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = t0 + i < used ? s_idx[t0 + i] : -1;
        const float q = c >= 0 ? static_cast<float>(wq[j * k + c]) : 0.0f;
        v[i] = mode == 1 ? q : q * s;
      }
      store_staged(wo + j * ld + t0, v, keep_in_l2);
    }
  }
}

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

cudaError_t launch_gather_outliers(const Int8GemmParams& p, int ld, float* xo, float* wo, int mode,
                                   cudaStream_t stream) {
  if (ld <= 0 || p.outlier_count == nullptr) return cudaSuccess;
  // Sized for up to 8 outliers (2 quads per row, one pass); more loop over the grid.
  const int64_t items = (p.m + p.n) * std::min(2, ld / 4);
  const int64_t blocks = std::min<int64_t>((items + kGatherThreads - 1) / kGatherThreads, int64_t{1} << 20);
  // JAXINT8_GATHER_EVICT_LAST=0 (environment, read once): plain stores, for measurements.
  static const bool keep_in_l2 = [] {
    const char* v = std::getenv("JAXINT8_GATHER_EVICT_LAST");
    return v == nullptr || std::atoi(v) != 0;
  }();
  gather_outliers_kernel<<<static_cast<unsigned>(blocks), kGatherThreads, 0, stream>>>(
      p.x, static_cast<int>(p.x_type), p.wq, p.col_scale, p.outlier_idx, p.outlier_count, p.m, p.n,
      p.k, ld, mode, keep_in_l2, xo, wo);
  return cudaGetLastError();
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
  if (p.outlier_count != nullptr) {
    a.ld = sm90::pick_ld(p);
    if (a.ld > 0) {
      auto* base = static_cast<char*>(p.workspace);
      a.xo = reinterpret_cast<const float*>(base);
      a.wo = reinterpret_cast<const float*>(base + sm90::align_up(static_cast<size_t>(p.m) * a.ld * 4, sm90::kAlign));
      cudaError_t e = sm90::launch_gather_outliers(p, a.ld, const_cast<float*>(a.xo), const_cast<float*>(a.wo),
                                                   outlier_mode, stream);
      if (e != cudaSuccess) return e;
    }
  }
  // Dispatch (H100, benchmarks/cuda/sm90_harness_h100.log and
  // benchmarks/results/sm90-variants-h100-2026-11-25-s6.log):
  // * m <= 512: the 64x128 ping-pong kernel (5120->20480: 109 vs 120 us at m=512, 70 vs 92 at
  //   m=256; it also hides the outlier epilogue behind the other warpgroup's mainloop).
  // * m > 512: the 128x256 cooperative kernel (cluster 2x1) (178 vs 258 us at m=1024), unless it
  //   would run fewer than two tiles per SM: then the 128x128 ping-pong kernel balances better
  //   (1024x5120x20480 with 6 outliers: 218 vs 254 us; 1024x4096x16384: 121 vs 125 us).
  enum Config { kPingpong64x128 = 0, kPingpong128x128 = 1, kCooperative128x256 = 2 };
  const int64_t coop_tiles = ((p.m + 127) / 128) * ((p.n + 255) / 256);
  const Config config = p.m <= kInt8GemmSm90PingpongMaxM               ? kPingpong64x128
                        : coop_tiles < 2 * sm90::sm_count_cached() ? kPingpong128x128
                                                                   : kCooperative128x256;
  using GemmFn = cudaError_t (*)(const sm90::GemmArgs&, cudaStream_t);
  static constexpr GemmFn kBf16[] = {sm90::gemm_pp_bf16, sm90::gemm_pp128_bf16, sm90::gemm_coop_bf16};
  static constexpr GemmFn kF16[] = {sm90::gemm_pp_f16, sm90::gemm_pp128_f16, sm90::gemm_coop_f16};
  static constexpr GemmFn kF32[] = {sm90::gemm_pp_f32, sm90::gemm_pp128_f32, sm90::gemm_coop_f32};
  switch (p.y_type) {
    case FloatType::kBF16: return kBf16[config](a, stream);
    case FloatType::kF16: return kF16[config](a, stream);
    case FloatType::kF32: return kF32[config](a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace jaxint8::cuda
