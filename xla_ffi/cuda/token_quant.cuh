// The parts of the one-token GEMV (gemv_token.cu) that do not depend on how the weight reaches
// the SM: the per-block quantization of x [1, k] into shared memory (with the block's share of the
// op's quantization outputs) and the epilogue of one weight row. Kept apart so that a kernel with
// another weight pipeline can reuse them and equal the three-kernel chain bit for bit.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "cuda/decode_args.cuh"
#include "cuda/device_utils.cuh"
#include "cuda/gemv_common.cuh"
#include "cuda/launch.h"
#include "cuda/row_quant.cuh"

namespace jaxint8::cuda {

inline constexpr int kTokenListCap = 128;  // outliers listed in shared memory
inline constexpr int64_t kTokenMaxK = 65536;

// Dynamic shared memory of the quantized token: the int8 row [k, padded to 16] | outlier flags,
// one bit per column [k / 8 bytes, padded to 16, the padding zero] | the outlier list
// [kTokenListCap] int32.
struct TokenSmem {
  int k_pad, flag_bytes;
  __host__ __device__ static int round16(int v) { return (v + 15) & ~15; }
  __host__ __device__ explicit TokenSmem(int k) : k_pad(round16(k)), flag_bytes(round16(k / 8)) {}
  __host__ __device__ int bytes() const { return k_pad + flag_bytes + 4 * kTokenListCap; }
};

// The quantized token in shared memory (views into the TokenSmem layout) and its scalars.
struct QuantizedToken {
  const int8_t* xs;       // [k] int8 row, outlier columns zero
  const uint8_t* flags;   // outlier bitmap
  const int32_t* list;    // the first min(count, kTokenListCap) outliers, ascending
  float row_scale;
  int count;
  __device__ bool listed() const { return count <= kTokenListCap; }
};

// write_outlier_list's Flags from the bitmap (k % 8 == 0: byte j holds columns 8j..8j+7).
struct BitmapFlags {
  const uint8_t* flags;
  int64_t h;
  __device__ __forceinline__ unsigned eight(int64_t c) const { return c < h ? flags[c >> 3] : 0u; }
};

// Quantizes x [1, k] by the whole block (THREADS threads, all of them must call it):
//   1. outlier flags (|x| >= threshold: a single row's column absmax is its own |x|) into the
//      bitmap and the row absmax over the other columns, block-wide;
//   2. the int8 row into shared memory; the block's share of the op's outputs xq and col_amax
//      (8-column units u with u % gridDim.x == blockIdx.x), block 0 the scale and the count;
//   3. the ascending outlier list (first kTokenListCap entries) into shared memory; the op's list
//      output from it in slices (block 0 writes it alone when longer).
// Ends with the shared memory published to the block (the list's barriers).
template <typename T, int THREADS>
__device__ __forceinline__ QuantizedToken quantize_token(const T* x, int k, const TokenOutputs& out, uint8_t* smem) {
  __shared__ float scratch[THREADS / 32];
  const TokenSmem layout(k);
  int8_t* xs = reinterpret_cast<int8_t*>(smem);
  uint8_t* flags = smem + layout.k_pad;
  int32_t* list = reinterpret_cast<int32_t*>(smem + layout.k_pad + layout.flag_bytes);
  const int tid = threadIdx.x;
  const float threshold = out.threshold;

  float amax = 0.0f;
#pragma unroll 4
  for (int c = 8 * tid; c < k; c += 8 * THREADS) {
    float v[8];
    Vec8<T>::load(x + c, v);
    unsigned f = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) f |= is_outlier(fabsf(v[i]), threshold) ? 1u << i : 0u;
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (!(f & (1u << i))) amax = nan_absmax(amax, v[i]);
    flags[c >> 3] = static_cast<uint8_t>(f);
  }
  if (tid < layout.flag_bytes - k / 8) flags[k / 8 + tid] = 0;  // whole words for the walk
  const float row_scale = block_absmax<THREADS>(amax, scratch);  // its barrier publishes flags

  const float mult = quant_multiplier(row_scale);
#pragma unroll 4
  for (int c = 8 * tid; c < k; c += 8 * THREADS) {
    float v[8];
    Vec8<T>::load(x + c, v);  // an L1 hit
    const unsigned f = flags[c >> 3];
    uint32_t packed[2] = {0u, 0u};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int8_t q = (f & (1u << i)) ? int8_t{0} : quantize_value(v[i], mult);
      packed[i >> 2] |= static_cast<uint32_t>(static_cast<uint8_t>(q)) << (8 * (i & 3));
    }
    const uint2 q8 = make_uint2(packed[0], packed[1]);
    *reinterpret_cast<uint2*>(xs + c) = q8;
    if ((c >> 3) % gridDim.x == blockIdx.x) {
      *reinterpret_cast<uint2*>(out.xq + c) = q8;
#pragma unroll
      for (int i = 0; i < 8; ++i) out.col_amax[c + i] = threshold > 0.0f ? fabsf(v[i]) : 0.0f;
    }
  }

  // The list's barriers also publish xs.
  const int count = write_outlier_list<THREADS>(BitmapFlags{flags, k}, k, list, kTokenListCap, false);
  if (blockIdx.x == 0 && tid == 0) {
    *out.row_scale = row_scale;
    *out.outlier_count = count;
  }
  if (count <= kTokenListCap) {
    for (int t = blockIdx.x * THREADS + tid; t < k; t += gridDim.x * THREADS)
      out.outlier_idx[t] = t < count ? list[t] : -1;
  } else if (blockIdx.x == 0) {
    write_outlier_list<THREADS>(BitmapFlags{flags, k}, k, out.outlier_idx, k, true);
  }
  return QuantizedToken{xs, flags, list, row_scale, count};
}

// The outlier sum of one weight row by walking the bitmap (more than kTokenListCap outliers):
// words in ascending order; for a word with outliers lane t loads column 32 w + t, and the set
// lanes are added in ascending t (the CPU handler's order).
__device__ __forceinline__ float walked_outlier_sum(const uint8_t* flag_bytes, int k, const void* x, FloatType x_type,
                                           const int8_t* wrow, float scale) {
  const int lane = threadIdx.x & 31;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(flag_bytes);
  const int nwords = (k / 8 + 3) / 4;
  float osum = 0.0f;
  for (int w0 = 0; w0 < nwords; w0 += 32) {
    const uint32_t word = w0 + lane < nwords ? words[w0 + lane] : 0u;
    uint32_t pending = __ballot_sync(kGemvFullMask, word != 0u);
    while (pending) {
      const int src = __ffs(pending) - 1;
      pending &= pending - 1;
      uint32_t bits = __shfl_sync(kGemvFullMask, word, src);
      const int col = (w0 + src) * 32 + lane;
      const bool ok = (bits >> lane) & 1u;
      const float xo = ok ? load_float(x, x_type, col) : 0.0f;
      const float w_deq = ok ? dequantize_weight(wrow[col], scale) : 0.0f;
      while (bits) {
        const int t = __ffs(bits) - 1;
        bits &= bits - 1;
        osum = outlier_term(osum, __shfl_sync(kGemvFullMask, xo, t), __shfl_sync(kGemvFullMask, w_deq, t));
      }
    }
  }
  return osum;
}

// One weight of a launch; a grouped launch keeps them in shared memory (selecting among the
// kernel parameters inside the row loop made the compiler hoist all of them into registers and
// spill). first: the weight's first row group (gemv_token.cu) or first row (the ring kernel) in
// the launch's numbering, DecodeArgs::first_block.
struct WeightRef {
  const int8_t* qweight;
  const float* scale;
  const float* bias;
  void* y;
  int64_t n;
  int first;
};

__device__ __forceinline__ WeightRef weight_ref(const DecodeArgs& args, int i) {
  const Int8GemmParams p = weight_params(args, i);
  int first = 0;
#pragma unroll
  for (int j = 0; j < kMaxSkinnyWeights; ++j)
    if (j == i) first = args.first_block[j];
  return WeightRef{p.qweight, p.scale, p.bias, p.y, p.n, first};
}

// The launch's weights as WeightRefs: in shared memory for a grouped launch (filled by the first
// threads, then a block barrier: every thread must call it), else `single`.
template <bool GROUPED, int N>
__device__ __forceinline__ const WeightRef* launch_weights(const DecodeArgs& args, WeightRef (&shared)[N],
                                                           WeightRef& single) {
  static_assert(!GROUPED || N >= kMaxSkinnyWeights, "a grouped launch needs a slot per weight");
  if constexpr (GROUPED) {
    if (threadIdx.x < args.weights) shared[threadIdx.x] = weight_ref(args, threadIdx.x);
    __syncthreads();
    return shared;
  } else {
    single = WeightRef{args.p.qweight, args.p.scale, args.p.bias, args.p.y, args.p.n, 0};
    return &single;
  }
}

// The epilogue of one weight row, by one warp: the outlier term and the output. gather(0)
// before the row's main loop starts the first round's dependent loads (lane t: outlier t of a
// round of 32 from the list), so they run while the weight loads are in flight; finish() adds
// every round (past kTokenListCap outliers by walking the bitmap, same ascending order), or takes
// the sum the kernel streamed, and lane 0 stores y = finish_output(acc, ...).
struct TokenRowEpilogue {
  int wq_out = 0;
  uint32_t x_out[1] = {0u};
  bool ok = false;

  __device__ __forceinline__ void gather(const QuantizedToken& q, const int8_t* wrow, const void* x,
                                         FloatType x_type, int t0) {
    const int t = t0 + (threadIdx.x & 31);
    ok = t < q.count;
    const int c = ok ? q.list[t] : 0;
    wq_out = ok ? wrow[c] : 0;
    x_out[0] = ok ? load_float_bits(x, x_type, c) : 0u;
  }

  // acc: the row's int32 dot product (every lane); streamed: the row's outlier sum (lane 0), or
  // nullptr to sum the listed columns here (gather(q, wrow, ..., 0) done when q.listed()).
  __device__ __forceinline__ void finish(const QuantizedToken& q, int k, const int8_t* wrow, int64_t row,
                                         int32_t acc, const float* streamed, const WeightRef& w,
                                         const Int8GemmParams& p) {
    const float cs = w.scale[row];
    float osum[1] = {0.0f};
    if (streamed) {
      osum[0] = *streamed;
    } else if (q.listed()) {
      for (int t0 = 0; t0 < q.count; t0 += 32) {
        if (t0 > 0) gather(q, wrow, p.x, p.x_type, t0);
        add_outlier_round<1>(osum, wq_out, x_out, ok, cs, p.x_type, min(32, q.count - t0));
      }
    } else {
      osum[0] = walked_outlier_sum(q.flags, k, p.x, p.x_type, wrow, cs);
    }
    if ((threadIdx.x & 31) == 0)
      store_output(w.y, p.y_type, row, finish_output(acc, q.row_scale, cs, osum[0], w.bias, row));
  }
};

}  // namespace jaxint8::cuda
