// Device side of the outlier staging (OutlierStaging in kernels.h): the compact outlier operands
// of the sm90 GEMM's epilogue. Used by the sm90 gather kernel (its own launch before the GEMM)
// and by the fused prefill quantization kernel (quantize.cu), which stages them in the same
// launch as soon as the column maxima exist.
#pragma once

#include "cuda/device_utils.cuh"

namespace jaxint8::cuda {

// Largest ld the staging supports (the gather keeps the indices in shared memory).
inline constexpr int kStagingMaxLd = 128;

// Stores 4 staged values with L2 priority evict_last: the GEMM's weight stream passes more than
// L2 through before its epilogue reads them (ncu, 128x16384x4096 with 6 outliers: the
// epilogue's staging loads were its largest stall with plain stores).
__device__ __forceinline__ void store_staged(float* dst, const float (&v)[4]) {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  asm volatile("st.global.L2::cache_hint.v4.f32 [%0], {%1, %2, %3, %4}, %5;" ::"l"(dst), "f"(v[0]), "f"(v[1]),
               "f"(v[2]), "f"(v[3]), "l"(policy)
               : "memory");
}

// Stages the outliers of an m x k activation into st, as part of a grid-wide loop: this thread
// takes items thread_id, thread_id + thread_count, ... of the (m + n) * quads items (one row and
// 4 consecutive compact columns each, x rows first). s_idx: the first min(cnt, ld, k) outlier
// columns (shared memory; negative entries contribute 0).
__device__ __forceinline__ void stage_outlier_items(const OutlierStaging& st, const void* __restrict__ x,
                                                    FloatType x_type, int64_t m, int64_t k,
                                                    const int32_t* s_idx, int cnt, int64_t thread_id,
                                                    int64_t thread_count) {
  if (cnt > st.max_count) return;
  const int stored = static_cast<int>(min(static_cast<int64_t>(st.ld), k));
  const int cpad = min((cnt + 3) & ~3, st.ld);
  const int used = min(cnt, stored);
  const int quads = cpad / 4;
  const int64_t items = (m + st.n) * quads;
  for (int64_t w = thread_id; w < items; w += thread_count) {
    const int64_t r = w / quads;
    const int t0 = static_cast<int>(w % quads) * 4;
    float v[4];
    if (r < m) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = t0 + i < used ? s_idx[t0 + i] : -1;
        v[i] = c >= 0 ? load_float(x, x_type, r * k + c) : 0.0f;
      }
      store_staged(st.xo + r * st.ld + t0, v);
    } else {
      const int64_t j = r - m;
      const float s = st.scale[j] / kQuantRange;  // dequantize_weight: q * (scale / 127)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = t0 + i < used ? s_idx[t0 + i] : -1;
        const float q = c >= 0 ? static_cast<float>(st.qweight[j * k + c]) : 0.0f;
        v[i] = st.mode == 1 ? q : q * s;
      }
      store_staged(st.wo + j * st.ld + t0, v);
    }
  }
}

// The same with the outlier list in global memory (idx, count cnt): the block copies the first
// min(ld, k) indices into s_idx (kStagingMaxLd ints of shared memory; out-of-range indices
// become -1, so they contribute 0) and synchronizes once. Call with every thread of the block.
__device__ __forceinline__ void stage_outliers(const OutlierStaging& st, const void* __restrict__ x,
                                               FloatType x_type, int64_t m, int64_t k,
                                               const int32_t* __restrict__ idx, int cnt, int32_t* s_idx,
                                               int64_t thread_id, int64_t thread_count) {
  if (cnt > st.max_count) return;  // uniform over the block
  const int stored = static_cast<int>(min(static_cast<int64_t>(st.ld), k));
  for (int t = threadIdx.x; t < stored; t += blockDim.x) {
    const int c = idx[t];
    s_idx[t] = c >= 0 && c < k ? c : -1;
  }
  if (min((cnt + 3) & ~3, st.ld) <= 0) return;  // uniform over the block: no thread reaches the barrier
  __syncthreads();
  stage_outlier_items(st, x, x_type, m, k, s_idx, cnt, thread_id, thread_count);
}

}  // namespace jaxint8::cuda
