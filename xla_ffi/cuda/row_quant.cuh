// Building blocks of the activation row quantization (step 2 of docs/design.md), shared by the
// quantization kernels (quantize.cu) and the decode GEMV that quantizes its own token
// (gemv_token.cu): 8-element vector loads, the block-wide row absmax and the ordered outlier
// list. The scalar rules themselves are in common.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>

#include "common.h"

namespace jaxint8::cuda {

template <typename T> struct Vec8;  // 8 consecutive elements, one or two 16-byte loads
template <> struct Vec8<__nv_bfloat16> {
  static __device__ __forceinline__ void load(const __nv_bfloat16* p, float (&v)[8]) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) { float2 f = __bfloat1622float2(h2[i]); v[2 * i] = f.x; v[2 * i + 1] = f.y; }
  }
};
template <> struct Vec8<__half> {
  static __device__ __forceinline__ void load(const __half* p, float (&v)[8]) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    const __half2* h2 = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) { float2 f = __half22float2(h2[i]); v[2 * i] = f.x; v[2 * i + 1] = f.y; }
  }
};
template <> struct Vec8<float> {
  static __device__ __forceinline__ void load(const float* p, float (&v)[8]) {
    float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  }
};

// Block-wide NaN-propagating max; every thread gets the result.
template <int THREADS>
__device__ __forceinline__ float block_absmax(float v, float* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = nan_absmax(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = scratch[0];
#pragma unroll
  for (int w = 1; w < THREADS / 32; ++w) r = nan_absmax(r, scratch[w]);
  return r;
}

// Outlier list of one batch element: ascending column indices, the first `cap` of them written
// to idx (global or shared memory), then -1 up to h when `pad`; returns the count (the same in
// every thread; the caller stores it). 8 consecutive columns per thread and step (8 * THREADS
// per block step), block-wide exclusive scan. flags_of.eight(c): the outlier flags of columns
// c..c+7 as bits 0..7 (0 past h).
template <int THREADS, typename Flags>
__device__ int write_outlier_list(const Flags& flags_of, int64_t h, int32_t* __restrict__ idx,
                                  int64_t cap, bool pad) {
  __shared__ int warp_counts[THREADS / 32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int64_t base = 0;  // outliers found before this step
  for (int64_t c0 = 0; c0 < h; c0 += 8 * THREADS) {
    const int64_t c = c0 + 8 * threadIdx.x;
    const unsigned flags = flags_of.eight(c);
    const int mine = __popc(flags);
    int incl = mine;  // inclusive warp scan
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, off);
      if (lane >= off) incl += v;
    }
    if (lane == 31) warp_counts[warp] = incl;
    __syncthreads();
    int before = 0, total = 0;
#pragma unroll
    for (int w = 0; w < THREADS / 32; ++w) {
      before += w < warp ? warp_counts[w] : 0;
      total += warp_counts[w];
    }
    int64_t pos = base + before + incl - mine;
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (flags & (1u << i)) {
        if (pos < cap) idx[pos] = static_cast<int32_t>(c + i);
        ++pos;
      }
    base += total;
    __syncthreads();  // warp_counts is rewritten by the next step
  }
  if (pad)
    for (int64_t c = base + threadIdx.x; c < h; c += THREADS) idx[c] = -1;
  return static_cast<int>(base);
}

}  // namespace jaxint8::cuda
