// Activation quantization kernels (steps 1-2 of docs/design.md): one pass for the column absmax,
// one pass for the row scales + int8 rows + outlier list. Integer outputs match the CPU
// handler bit for bit: both call the scalar rules of common.h.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "cuda/device_utils.cuh"
#include "cuda/launch.h"
#include "cuda/outlier_staging.cuh"
#include "cuda/row_quant.cuh"

namespace jaxint8::cuda {
namespace {

constexpr int kAbsmaxCols = 64;   // columns per block (2 per lane of a warp)
constexpr int kAbsmaxRows = 8;    // warps per block, each walks its own rows

// Block (32, 8): lane handles columns c0+lane and c0+lane+32; warp y walks rows y, y+8, ...
// of its row split; the 8 partial maxima meet in shared memory. With several row splits the
// result is combined with an unsigned atomicMax on the bit pattern: for non-negative floats
// (|x| has its sign bit clear, NaN included) unsigned order = float order and NaN > Inf, so
// the combination stays NaN-propagating. The output is zeroed before that launch.
__device__ __forceinline__ void store_absmax(float* dst, float m, bool atomic) {
  if (atomic) {
    atomicMax(reinterpret_cast<unsigned int*>(dst), __float_as_uint(m));
  } else {
    *dst = m;
  }
}

template <typename T>
__global__ void __launch_bounds__(256) column_absmax_kernel(const T* __restrict__ x, float* __restrict__ out,
                                     int64_t s, int64_t h, int64_t rows_per_split, bool atomic) {
  pdl_trigger();  // the row pass may launch now (it waits for our results)
  const int64_t b = blockIdx.y;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kAbsmaxCols + threadIdx.x;
  const int64_t r_begin = static_cast<int64_t>(blockIdx.z) * rows_per_split;
  const int64_t r_end = min(s, r_begin + rows_per_split);
  const T* xb = x + b * s * h;
  float m0 = 0.0f, m1 = 0.0f;
  const bool v0 = c0 < h, v1 = c0 + 32 < h;
  int64_t r = r_begin + threadIdx.y;
  for (; r + 3 * kAbsmaxRows < r_end; r += 4 * kAbsmaxRows) {
    float a[4], c[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const T* row = xb + (r + u * kAbsmaxRows) * h;
      a[u] = v0 ? FloatIO<T>::load(row + c0) : 0.0f;
      c[u] = v1 ? FloatIO<T>::load(row + c0 + 32) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) { m0 = nan_absmax(m0, a[u]); m1 = nan_absmax(m1, c[u]); }
  }
  for (; r < r_end; r += kAbsmaxRows) {
    const T* row = xb + r * h;
    if (v0) m0 = nan_absmax(m0, FloatIO<T>::load(row + c0));
    if (v1) m1 = nan_absmax(m1, FloatIO<T>::load(row + c0 + 32));
  }
  __shared__ float part[kAbsmaxRows][kAbsmaxCols];
  part[threadIdx.y][threadIdx.x] = m0;
  part[threadIdx.y][threadIdx.x + 32] = m1;
  __syncthreads();
  if (threadIdx.y < 2) {
    const int col = threadIdx.x + 32 * threadIdx.y;
    float m = part[0][col];
#pragma unroll
    for (int y = 1; y < kAbsmaxRows; ++y) m = nan_absmax(m, part[y][col]);
    const int64_t c = static_cast<int64_t>(blockIdx.x) * kAbsmaxCols + col;
    if (c < h) store_absmax(out + b * h + c, m, atomic);
  }
}

// Vector variant (h % 8 == 0, 16-byte aligned x): 8 consecutive columns per lane with one
// 16-byte load per row (two for f32).
constexpr int kAbsmaxVecCols = 256;  // columns per block at most (32 lanes x 8)
template <int WARPS>
using AbsmaxPart = float[WARPS][kAbsmaxVecCols + 1];

// Column absmax of the strip [c_base, c_base + 8L) over rows [r_begin, r_end) of xb, by a block
// of 32 * WARPS threads, L = 1 << l_log2 (1..32) lanes of 8 columns each: each warp holds 32 / L
// row lanes, so the block walks 32 * WARPS / L rows at a time (narrow strips still keep every
// thread busy when there are few columns per block). Partial maxima meet through shuffles, then
// across the warps in `part`. Thread t < 8L returns column c_base + t's maximum (0 past h or
// without rows).
template <typename T, int WARPS>
__device__ __forceinline__ float column_strip_absmax(const T* __restrict__ xb, int64_t r_begin,
                                                     int64_t r_end, int64_t h, int64_t c_base,
                                                     int l_log2, AbsmaxPart<WARPS>& part) {
  const int tid = threadIdx.x + 32 * threadIdx.y;  // blocks of (32, 8) or (256)
  const int warp = tid >> 5, lane = tid & 31;
  const int lanes = 1 << l_log2;
  const int cl = lane & (lanes - 1);
  const int rows_per_warp = 32 >> l_log2;
  const int64_t rows_per_step = WARPS * rows_per_warp;
  const int64_t c0 = c_base + 8 * cl;
  float m[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) m[i] = 0.0f;
  if (c0 < h) {
    int64_t r = r_begin + warp * rows_per_warp + (lane >> l_log2);
    for (; r + 3 * rows_per_step < r_end; r += 4 * rows_per_step) {
      float v[4][8];
#pragma unroll
      for (int u = 0; u < 4; ++u) Vec8<T>::load(xb + (r + u * rows_per_step) * h + c0, v[u]);
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int i = 0; i < 8; ++i) m[i] = nan_absmax(m[i], v[u][i]);
    }
    for (; r < r_end; r += rows_per_step) {
      float v[8];
      Vec8<T>::load(xb + r * h + c0, v);
#pragma unroll
      for (int i = 0; i < 8; ++i) m[i] = nan_absmax(m[i], v[i]);
    }
  }
  for (int off = lanes; off < 32; off <<= 1)  // the warp's row lanes of one column lane
#pragma unroll
    for (int i = 0; i < 8; ++i) m[i] = nan_absmax(m[i], __shfl_xor_sync(0xffffffffu, m[i], off));
  if (lane < lanes)
#pragma unroll
    for (int i = 0; i < 8; ++i) part[warp][8 * cl + i] = m[i];
  __syncthreads();
  float r = 0.0f;
  if (tid < 8 * lanes) {
    r = part[0][tid];
#pragma unroll
    for (int y = 1; y < WARPS; ++y) r = nan_absmax(r, part[y][tid]);
  }
  return r;
}

// Block (32, 8), 256 columns per block (one strip of 32 lanes); otherwise as column_absmax_kernel.
template <typename T>
__global__ void __launch_bounds__(256) column_absmax_vec_kernel(const T* __restrict__ x, float* __restrict__ out,
                                         int64_t s, int64_t h, int64_t rows_per_split, bool atomic) {
  pdl_trigger();  // the row pass may launch now (it waits for our results)
  const int64_t b = blockIdx.y;
  const int64_t r_begin = static_cast<int64_t>(blockIdx.z) * rows_per_split;
  const int64_t r_end = min(s, r_begin + rows_per_split);
  const int64_t c_base = static_cast<int64_t>(blockIdx.x) * kAbsmaxVecCols;
  __shared__ AbsmaxPart<kAbsmaxRows> part;
  const float r = column_strip_absmax<T, kAbsmaxRows>(x + b * s * h, r_begin, r_end, h, c_base, 5, part);
  const int64_t c = c_base + threadIdx.y * 32 + threadIdx.x;
  if (c < h) store_absmax(out + b * h + c, r, atomic);
}

// Row pass block sizes: 256 threads when there are many rows (many blocks fill the GPU), 1024
// when there are few (decode: one block per row, so a row's loads must be in flight at once;
// 256 threads left h = 20480 at 11.5 us for one token, 1024 bring it to one load round trip).
constexpr int kRowThreads = 256;
constexpr int kRowThreadsFew = 1024;

// Outlier flags of 8 consecutive columns c..c+7 (bit i = column c + i), 16-byte loads when VEC.
// COHERENT: amax was written earlier in the same launch (the fused kernel), so it is read
// through L2 (__ldcg), never through the non-coherent read-only path.
template <bool VEC, bool COHERENT = false>
__device__ __forceinline__ unsigned outlier_flags8(const float* __restrict__ amax, float threshold,
                                                   int64_t c, int64_t h) {
  unsigned flags = 0;
  if (VEC && c + 8 <= h) {
    const float4* a4 = reinterpret_cast<const float4*>(amax + c);
    const float4 a0 = COHERENT ? __ldcg(a4) : a4[0];
    const float4 a1 = COHERENT ? __ldcg(a4 + 1) : a4[1];
    const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) flags |= is_outlier(a[i], threshold) ? 1u << i : 0u;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (c + i < h && is_outlier(COHERENT ? __ldcg(amax + c + i) : amax[c + i], threshold)) flags |= 1u << i;
  }
  return flags;
}

// The outlier flags of a batch element from its column absmax (write_outlier_list's Flags).
template <bool VEC, bool COHERENT = false>
struct AmaxFlags {
  const float* __restrict__ amax;
  float threshold;
  int64_t h;
  __device__ __forceinline__ unsigned eight(int64_t c) const {
    return outlier_flags8<VEC, COHERENT>(amax, threshold, c, h);
  }
};

// One row: its scale (absmax over the non-outlier columns) into *scale_out and its int8 values
// into qr. Every thread of the block calls it; scratch: THREADS / 32 floats of shared memory,
// free again when it returns only after a __syncthreads (block_absmax reads it). VEC: 8 elements
// per thread and step (h % 8 == 0, aligned rows), else one. The row is read twice (max, then
// quantize); the second read hits L1/L2.
template <typename T, bool VEC, int THREADS, bool COHERENT = false>
__device__ __forceinline__ void quantize_row(const T* __restrict__ xr, const float* __restrict__ amax,
                                             float threshold, int64_t h, int8_t* __restrict__ qr,
                                             float* __restrict__ scale_out, float* scratch) {
  float m = 0.0f;
  if constexpr (VEC) {
#pragma unroll 4
    for (int64_t c = 8 * threadIdx.x; c < h; c += 8 * THREADS) {
      float v[8];
      Vec8<T>::load(xr + c, v);
      const unsigned flags = outlier_flags8<true, COHERENT>(amax, threshold, c, h);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (!(flags & (1u << i))) m = nan_absmax(m, v[i]);
    }
  } else {
    for (int64_t c = threadIdx.x; c < h; c += THREADS)
      if (!is_outlier(amax[c], threshold)) m = nan_absmax(m, FloatIO<T>::load(xr + c));
  }
  m = block_absmax<THREADS>(m, scratch);
  if (threadIdx.x == 0) *scale_out = m;
  const float mult = quant_multiplier(m);
  if constexpr (VEC) {
#pragma unroll 4
    for (int64_t c = 8 * threadIdx.x; c < h; c += 8 * THREADS) {
      float v[8];
      Vec8<T>::load(xr + c, v);
      const unsigned flags = outlier_flags8<true, COHERENT>(amax, threshold, c, h);
      uint32_t packed[2] = {0u, 0u};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int8_t q = (flags & (1u << i)) ? int8_t{0} : quantize_value(v[i], mult);
        packed[i >> 2] |= static_cast<uint32_t>(static_cast<uint8_t>(q)) << (8 * (i & 3));
      }
      *reinterpret_cast<uint2*>(qr + c) = make_uint2(packed[0], packed[1]);
    }
  } else {
    for (int64_t c = threadIdx.x; c < h; c += THREADS)
      qr[c] = is_outlier(amax[c], threshold) ? int8_t{0} : quantize_value(FloatIO<T>::load(xr + c), mult);
  }
}

// Grid (s + 1, nb): block (r < s, b) quantizes row r of batch b; block (s, b) writes batch b's
// outlier list (in parallel with the rows).
template <typename T, bool VEC, int THREADS>
__global__ void __launch_bounds__(THREADS) quantize_rows_kernel(
    const T* __restrict__ x, const float* __restrict__ col_amax, float threshold, int64_t s,
    int64_t h, int8_t* __restrict__ xq, float* __restrict__ row_scale,
    int32_t* __restrict__ outlier_idx, int32_t* __restrict__ outlier_count) {
  pdl_trigger();  // the GEMM may launch now (it waits for our results)
  pdl_wait();     // col_amax from the column pass (under an early launch)
  const int64_t b = blockIdx.y, r = blockIdx.x;
  const float* amax = col_amax + b * h;
  if (r == s) {
    const int count = write_outlier_list<THREADS>(AmaxFlags<VEC>{amax, threshold, h}, h, outlier_idx + b * h, h, true);
    if (threadIdx.x == 0) outlier_count[b] = count;
    return;
  }
  __shared__ float scratch[THREADS / 32];
  const int64_t row = b * s + r;
  quantize_row<T, VEC, THREADS>(x + row * h, amax, threshold, h, xq + row * h, row_scale + row, scratch);
}

// ------------------------------------------------------------ fused prefill quantization
// Both passes and the sm90 outlier staging in one cooperative launch (one batch element): at
// 128 tokens the chain memset + column pass + row pass + gather took 1.2 + 3.6 + 3.8 + 4.3 us
// for 1 MB of activations (4096->16384, H100), mostly launch and drain latency.
//   1. column absmax, one strip of columns per block and step (no atomics, so no memset);
//   -- grid barrier --
//   2. block 0 writes the outlier list and the count; blocks 1.. quantize the rows (row r in
//      block (r + 1) % G);
//   3. the blocks left without rows when they are at least half of the grid, else all blocks
//      after their rows, stage the outlier operands, each from its own copy of the first ld list
//      entries in shared memory (built from col_amax like block 0's list): nothing waits for
//      block 0.
// The outputs are those of the chain bit for bit (same scalar rules, same orders).
constexpr int kFusedThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kFusedThreads) quantize_fused_kernel(
    const T* __restrict__ x, FloatType x_type, int64_t s, int64_t h, float threshold, int l_log2,
    float* col_amax, int8_t* __restrict__ xq, float* __restrict__ row_scale, int32_t* idx,
    int32_t* count, OutlierStaging st) {
  constexpr int THREADS = kFusedThreads;
  __shared__ AbsmaxPart<THREADS / 32> part;
  __shared__ float scratch[THREADS / 32];
  __shared__ int32_t s_idx[kStagingMaxLd];
  const int tid = threadIdx.x;
  const int64_t blocks = gridDim.x;

  const int64_t strip_cols = int64_t{8} << l_log2;
  const int64_t rows = threshold > 0.0f ? s : 0;  // threshold <= 0: col_amax is zeros
  for (int64_t c_base = blockIdx.x * strip_cols; c_base < h; c_base += blocks * strip_cols) {
    const float m = column_strip_absmax<T, THREADS / 32>(x, 0, rows, h, c_base, l_log2, part);
    if (tid < strip_cols && c_base + tid < h) col_amax[c_base + tid] = m;
    __syncthreads();  // part is rewritten by the next strip
  }
  cooperative_groups::this_grid().sync();

  if (blockIdx.x == 0) {
    const int c = write_outlier_list<THREADS>(AmaxFlags<true, true>{col_amax, threshold, h}, h, idx, h, true);
    if (tid == 0) *count = c;
  }
  for (int64_t r = (blockIdx.x + blocks - 1) % blocks; r < s; r += blocks) {
    quantize_row<T, true, THREADS, true>(x + r * h, col_amax, threshold, h, xq + r * h,
                                         row_scale + r, scratch);
    __syncthreads();  // scratch is rewritten by the next row
  }

  const int64_t first_stager = blocks - (s + 1) >= blocks / 2 ? s + 1 : 0;
  if (st.ld <= 0 || blockIdx.x < first_stager) return;
  const int cnt = write_outlier_list<THREADS>(AmaxFlags<true, true>{col_amax, threshold, h}, h, s_idx, st.ld, false);
  __syncthreads();
  stage_outlier_items(st, x, x_type, s, h, s_idx, cnt, (blockIdx.x - first_stager) * THREADS + tid,
                      (blocks - first_stager) * THREADS);
}

// Two blocks per SM (capped by the occupancy: a cooperative grid must be resident at once).
template <typename T>
cudaError_t quantize_fused_t(const T* x, FloatType t, float threshold, int64_t s, int64_t h,
                             float* col_amax, int8_t* xq, float* row_scale, int32_t* idx,
                             int32_t* count, const OutlierStaging& st, int num_sms,
                             cudaStream_t stream) {
  auto kernel = quantize_fused_kernel<T>;
  static const int resident = resident_blocks(kernel, kFusedThreads);
  const int64_t blocks = static_cast<int64_t>(num_sms) * std::min(2, resident);
  int l_log2 = 0;  // narrowest strips that still cover h with one strip per block
  while (l_log2 < 5 && (h + (8 << l_log2) - 1) / (8 << l_log2) > blocks) ++l_log2;
  return launch_cooperative_kernel(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kFusedThreads),
                                   stream, x, t, s, h, threshold, l_log2, col_amax, xq, row_scale,
                                   idx, count, st);
}

template <typename T>
cudaError_t column_absmax_t(const T* x, int64_t nb, int64_t s, int64_t h, float* out,
                            int num_sms, cudaStream_t stream) {
  if (nb == 0 || h == 0) return cudaSuccess;
  const bool vec = h % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const int64_t cols_per_block = vec ? kAbsmaxVecCols : kAbsmaxCols;
  const int64_t col_blocks = (h + cols_per_block - 1) / cols_per_block;
  // Enough blocks for ~4 per SM; a row split reads at least 64 rows.
  int64_t splits = std::max<int64_t>(1, (4LL * num_sms + col_blocks * nb - 1) / (col_blocks * nb));
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, s / 64));
  splits = std::min<int64_t>(splits, 65535);
  const int64_t rows_per_split = s == 0 ? 1 : (s + splits - 1) / splits;
  const bool atomic = splits > 1 || s == 0;
  if (atomic) JAXINT8_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(out, 0, sizeof(float) * nb * h, stream));
  if (s == 0) return cudaSuccess;
  for (int64_t b0 = 0; b0 < nb; b0 += 65535) {  // grid.y limit
    const int64_t nbc = std::min<int64_t>(65535, nb - b0);
    dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(nbc), static_cast<unsigned>(splits));
    if (vec) {
      column_absmax_vec_kernel<T><<<grid, dim3(32, kAbsmaxRows), 0, stream>>>(
          x + b0 * s * h, out + b0 * h, s, h, rows_per_split, atomic);
    } else {
      column_absmax_kernel<T><<<grid, dim3(32, kAbsmaxRows), 0, stream>>>(
          x + b0 * s * h, out + b0 * h, s, h, rows_per_split, atomic);
    }
    JAXINT8_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return cudaSuccess;
}

template <typename T>
cudaError_t quantize_rows_t(const T* x, const float* col_amax, float threshold, int64_t nb,
                            int64_t s, int64_t h, int8_t* xq, float* row_scale, int32_t* idx,
                            int32_t* count, int num_sms, cudaStream_t stream, bool pdl) {
  if (nb == 0) return cudaSuccess;
  const bool vec = h % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(col_amax) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(xq) % 8 == 0;
  const int64_t rows = s + 1;  // + the outlier-list block
  const bool few = nb * rows < num_sms;  // under one block per SM: make each block wide
  // grid.x limit 2^31-1 (rows), grid.y 65535 (batch): split the batch if needed.
  for (int64_t b0 = 0; b0 < nb; b0 += 65535) {
    const int64_t nbc = std::min<int64_t>(65535, nb - b0);
    dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(nbc));
    auto run = [&](auto kernel, int threads) {
      return launch_kernel(kernel, grid, dim3(threads), stream, pdl && b0 == 0, x + b0 * s * h,
                           col_amax + b0 * h, threshold, s, h, xq + b0 * s * h, row_scale + b0 * s,
                           idx + b0 * h, count + b0);
    };
    cudaError_t err;
    if (vec && few) err = run(quantize_rows_kernel<T, true, kRowThreadsFew>, kRowThreadsFew);
    else if (vec) err = run(quantize_rows_kernel<T, true, kRowThreads>, kRowThreads);
    else if (few) err = run(quantize_rows_kernel<T, false, kRowThreadsFew>, kRowThreadsFew);
    else err = run(quantize_rows_kernel<T, false, kRowThreads>, kRowThreads);
    JAXINT8_CUDA_RETURN_IF_ERROR(err);
  }
  return cudaSuccess;
}

// f(x as a pointer to its element type).
template <typename F>
cudaError_t with_typed_x(const void* x, FloatType t, F&& f) {
  switch (t) {
    case FloatType::kF32: return f(static_cast<const float*>(x));
    case FloatType::kBF16: return f(static_cast<const __nv_bfloat16*>(x));
    default: return f(static_cast<const __half*>(x));
  }
}

}  // namespace

bool quantize_fused_supported(const void* x, int64_t nb, int64_t s, int64_t h, const float* col_amax,
                              const int8_t* xq) {
  auto aligned = [](const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  return nb == 1 && s >= 1 && h >= 8 && h % 8 == 0 && aligned(x, 16) && aligned(col_amax, 16) &&
         aligned(xq, 8);
}

cudaError_t launch_quantize_fused(const void* x, FloatType t, float threshold, int64_t s, int64_t h,
                                  float* col_amax, int8_t* xq, float* row_scale, int32_t* outlier_idx,
                                  int32_t* outlier_count, const OutlierStaging& staging, int num_sms,
                                  cudaStream_t stream) {
  return with_typed_x(x, t, [&](auto* xt) {
    return quantize_fused_t(xt, t, threshold, s, h, col_amax, xq, row_scale, outlier_idx,
                            outlier_count, staging, num_sms, stream);
  });
}

cudaError_t launch_column_absmax(const void* x, FloatType t, int64_t nb, int64_t s, int64_t h,
                                 float* col_amax, int num_sms, cudaStream_t stream) {
  return with_typed_x(x, t, [&](auto* xt) { return column_absmax_t(xt, nb, s, h, col_amax, num_sms, stream); });
}

cudaError_t launch_quantize_rows(const void* x, FloatType t, const float* col_amax,
                                 float threshold, int64_t nb, int64_t s, int64_t h, int8_t* xq,
                                 float* row_scale, int32_t* outlier_idx, int32_t* outlier_count,
                                 int num_sms, cudaStream_t stream, bool pdl) {
  return with_typed_x(x, t, [&](auto* xt) {
    return quantize_rows_t(xt, col_amax, threshold, nb, s, h, xq, row_scale, outlier_idx,
                           outlier_count, num_sms, stream, pdl);
  });
}

}  // namespace jaxint8::cuda
