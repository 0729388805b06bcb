// Kernel arguments of a decode GEMM launch (the mma skinny kernel and the dp4a GEMV) over one
// or several weights that read the same activations (a grouped call: q/k/v, gate/up).
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "cuda/launch.h"

namespace jaxint8::cuda {

// The blocks of weight i are blockIdx.x in [first_block[i], first_block[i + 1]).
struct DecodeArgs {
  Int8GemmParams p;  // the shared operands (x, xq, scales, outliers, m, k, types)
  int weights = 1;
  int first_block[kMaxSkinnyWeights + 1] = {};
  const int8_t* qweight[kMaxSkinnyWeights] = {};
  const float* scale[kMaxSkinnyWeights] = {};
  const float* bias[kMaxSkinnyWeights] = {};
  void* y[kMaxSkinnyWeights] = {};
  int64_t n[kMaxSkinnyWeights] = {};
};

// The operands of weight `i` of a launch put into p (an unrolled select: constant parameter
// indices, no copy of the argument struct to local memory).
__device__ __forceinline__ Int8GemmParams weight_params(const DecodeArgs& a, int i) {
  Int8GemmParams p = a.p;
#pragma unroll
  for (int j = 0; j < kMaxSkinnyWeights; ++j) {
    if (j == i) {
      p.qweight = a.qweight[j];
      p.scale = a.scale[j];
      p.bias = a.bias[j];
      p.y = a.y[j];
      p.n = a.n[j];
    }
  }
  return p;
}

// The weight this block works on, and the first block of that weight.
__device__ __forceinline__ int weight_of_block(const DecodeArgs& a, int& first) {
  int i = 0;
  first = 0;
#pragma unroll
  for (int j = 1; j < kMaxSkinnyWeights; ++j) {
    if (j < a.weights && static_cast<int>(blockIdx.x) >= a.first_block[j]) {
      i = j;
      first = a.first_block[j];
    }
  }
  return i;
}

// Arguments for `count` weights with `rows` weight rows per block; *blocks = the grid's x size.
inline DecodeArgs make_decode_args(const Int8GemmParams* ps, int count, int64_t rows, int64_t* blocks) {
  DecodeArgs a;
  a.p = ps[0];
  a.weights = count;
  int64_t b = 0;
  for (int i = 0; i < count; ++i) {
    a.first_block[i] = static_cast<int>(b);
    a.qweight[i] = ps[i].qweight;
    a.scale[i] = ps[i].scale;
    a.bias[i] = ps[i].bias;
    a.y[i] = ps[i].y;
    a.n[i] = ps[i].n;
    b += (ps[i].n + rows - 1) / rows;
  }
  a.first_block[count] = static_cast<int>(b);
  *blocks = b;
  return a;
}

// The operands every weight of a grouped launch must share (one x, one quantization).
inline bool same_activations(const Int8GemmParams& a, const Int8GemmParams& b) {
  return a.m == b.m && a.k == b.k && a.xq == b.xq && a.row_scale == b.row_scale && a.x == b.x &&
         a.x_type == b.x_type && a.outlier_idx == b.outlier_idx &&
         a.outlier_count == b.outlier_count && a.y_type == b.y_type &&
         a.l2_prefetch_bytes == b.l2_prefetch_bytes;
}

}  // namespace jaxint8::cuda
