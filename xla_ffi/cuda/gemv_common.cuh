// Pieces shared by the two dp4a decode GEMVs (gemm_gemv.cu: activations quantized by the row
// pass; gemv_token.cu: the kernel quantizes its one token itself).
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "cuda/device_utils.cuh"

namespace jaxint8::cuda {

inline constexpr int kGemvChunk = 512;  // K bytes per warp load instruction (16 per lane)
inline constexpr unsigned kGemvFullMask = 0xffffffffu;

// acc + dot(16 int8 weights, 16 int8 activations), exact int32 on the integer pipe.
__device__ __forceinline__ int32_t dot16(const uint4& w, const uint4& x, int32_t acc) {
  acc = __dp4a(static_cast<int>(w.x), static_cast<int>(x.x), acc);
  acc = __dp4a(static_cast<int>(w.y), static_cast<int>(x.y), acc);
  acc = __dp4a(static_cast<int>(w.z), static_cast<int>(x.z), acc);
  return __dp4a(static_cast<int>(w.w), static_cast<int>(x.w), acc);
}

// One round of up to 32 outlier columns added to a row's outlier sums: lane t holds column t of
// the round (wq_out = qweight[row, O_t], x_out[j] = x[j, O_t] as raw bits, ok = a valid column), and
// every lane adds the `tc` terms in ascending t, i.e. the CPU handler's order (shuffles broadcast
// them, so all lanes carry the same sums).
template <int MT>
__device__ __forceinline__ void add_outlier_round(float (&osum)[MT], int wq_out, const uint32_t (&x_out)[MT],
                                                  bool ok, float scale, FloatType x_type, int tc) {
  const float w_deq = ok ? dequantize_weight(static_cast<int8_t>(wq_out), scale) : 0.0f;
  float xo[MT];
#pragma unroll
  for (int j = 0; j < MT; ++j) xo[j] = ok ? float_from_bits(x_out[j], x_type) : 0.0f;
  for (int t = 0; t < tc; ++t) {
    const float w = __shfl_sync(kGemvFullMask, w_deq, t);
#pragma unroll
    for (int j = 0; j < MT; ++j) osum[j] = outlier_term(osum[j], __shfl_sync(kGemvFullMask, xo[j], t), w);
  }
}

// Warp-wide sum of an int32 (every lane gets it).
__device__ __forceinline__ int32_t warp_sum(int32_t v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kGemvFullMask, v, off);
  return v;
}

// Warp-wide float sum by butterfly: every lane gets the same bits (each step adds the same two
// values, and float addition is commutative).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(kGemvFullMask, v, off));
  return v;
}

// Byte i (0-15) of 16 loaded weight bytes, as int8.
__device__ __forceinline__ int8_t weight_byte(const uint4& w, int i) {
  const uint32_t word = i < 8 ? (i < 4 ? w.x : w.y) : (i < 12 ? w.z : w.w);
  return static_cast<int8_t>(word >> (8 * (i & 3)));
}

// Adds the outlier columns among a lane's 16 weight bytes `w` (columns kk .. kk + 15 of one
// weight row; bit i of `flags` set = column kk + i is an outlier) to the lane's outlier sum, in
// ascending column order: the weight bytes come from the stream, no gather.
__device__ __forceinline__ float add_flagged_outliers(float osum, const uint4& w, unsigned flags, const void* x,
                                                      FloatType x_type, int64_t kk, float scale) {
  while (flags) {
    const int i = __ffs(flags) - 1;
    flags &= flags - 1;
    osum = outlier_term(osum, load_float(x, x_type, kk + i), dequantize_weight(weight_byte(w, i), scale));
  }
  return osum;
}

// K slices per weight row of a GEMV launch (host): `forced` (1, 2 or 4) when given, else the fewest
// of 1, 2, 4 that give at least `min_groups` row groups of `warps` / split rows, as long as a
// slice keeps >= 2 KB of the row.
inline int gemv_ksplit(const Int8GemmParams* ps, int count, int warps, int64_t min_groups, int forced) {
  if (forced == 1 || forced == 2 || forced == 4) return forced;
  int64_t rows = 0;
  for (int i = 0; i < count; ++i) rows += ps[i].n;
  int split = 1;
  while (split < 4 && rows * split / warps < min_groups && ps[0].k / (2 * split) >= 2048) split *= 2;
  return split;
}

}  // namespace jaxint8::cuda
