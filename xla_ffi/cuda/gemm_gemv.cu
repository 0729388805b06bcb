// dp4a GEMV for decode at m <= 4 tokens: one warp streams one weight row (or a K slice of it)
// with each load instruction covering 512 contiguous bytes of the row (16 per lane), and dots
// them with the int8 activations on the integer pipe (__dp4a, exact int32).
//
// Why not the mma skinny kernel (gemm_skinny.cu) at these sizes: the mma fragments want each
// warp load to cover 8 rows x 64 bytes, and that layout reads the weight at 2.2-2.7 TB/s even
// with no arithmetic, while 512 contiguous bytes of one row per instruction read at 2.9-3.05
// (H100, a standalone read-pattern benchmark). With few tokens the arithmetic is small
// enough for dp4a: 4 * m dp4a and m 16-byte activation loads (L1 hits) per 16 weight bytes.
//
// Block = 8 warps = 8 / KSPLIT weight rows x KSPLIT K slices; the slices of a row meet in shared
// memory (exact int32), then the row's first warp adds the outlier term (lane t gathers outlier
// column t, the sum runs over the lanes in ascending t: the CPU handler's order) and writes the
// outputs through the shared epilogue formula, so the results are bit-identical to the skinny
// kernel's. Under programmatic dependent launch each warp issues its first loads of the weight
// (an input the quantization grid does not write) before waiting for the row pass.
#include <algorithm>
#include <cstdlib>

#include "cuda/decode_args.cuh"
#include "cuda/device_utils.cuh"
#include "cuda/gemv_common.cuh"
#include "cuda/launch.h"

namespace jaxint8::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kChunk = kGemvChunk;
constexpr int kBlocksPerSm = 4;
constexpr int64_t kGemvMaxK = int64_t{1} << 27;  // 8 token rows of k bytes: 32-bit offsets

// MT: tokens per launch (m <= MT); KSPLIT: warps per weight row; U: 16-byte loads in flight per lane.
template <int MT, int KSPLIT, int U, bool GROUPED>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) gemv_kernel(const DecodeArgs args) {
  constexpr int kRowsPerBlock = kWarps / KSPLIT;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int first_block = 0;
  Int8GemmParams selected;
  if constexpr (GROUPED) selected = weight_params(args, weight_of_block(args, first_block));
  const Int8GemmParams& p = GROUPED ? selected : args.p;  // both lvalues: no copy of args.p
  const int64_t m = p.m, n = p.n, k = p.k;
  const int64_t row = static_cast<int64_t>(blockIdx.x - first_block) * kRowsPerBlock + warp / KSPLIT;
  const int slice = warp % KSPLIT;
  const bool live = row < n;  // dead warps still reach the block barrier
  const int8_t* wrow = p.qweight + (live ? row : 0) * k;
  // Chunk and K offsets fit in 32 bits (int8_gemv_supported: k <= kGemvMaxK).
  const int kk32 = static_cast<int>(k);
  const int chunks = (kk32 + kChunk - 1) / kChunk;
  const int c_begin = chunks * slice / KSPLIT, c_end = chunks * (slice + 1) / KSPLIT;
  const int lane_k = 16 * lane;

  // 16 bytes of the weight row at chunk c for this lane (zero past the slice or past k; k % 16
  // == 0, so a lane's 16 bytes are all inside or all outside).
  auto in_range = [&](int c) { return c < c_end && c * kChunk + lane_k < kk32; };
  uint4 wv[U];
  auto load_weights = [&](int c0) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      wv[u] = live && in_range(c0 + u) ? load_stream(wrow + (c0 + u) * kChunk + lane_k) : make_uint4(0, 0, 0, 0);
  };
  load_weights(c_begin);
  // Per-row epilogue operands (inputs the quantization grid does not write), loaded early too.
  const float cs = live ? p.scale[row] : 0.0f;
  const float bias = live && p.bias ? p.bias[row] : 0.0f;
  pdl_wait();  // from here on the row pass's results (xq, scales, outlier list) are visible
  const float rs = lane < m ? p.row_scale[lane] : 0.0f;  // lane j: token j's row scale

  // The outliers of the first round (32 columns) are gathered now and used after the main loop:
  // the count -> index -> value chain then runs while the first weight loads are in flight, and
  // the values are converted only in the epilogue (a warp waits for a load at its first use).
  const bool epilogue_warp = live && slice == 0;
  int count = 0;
  if (epilogue_warp) {
    const int c = *p.outlier_count;
    count = c < 0 ? 0 : (c > k ? static_cast<int>(k) : c);
  }
  int wq_out = 0;         // lane t: qweight[row, O_t] of the current round
  uint32_t x_out[MT];     // lane t: x[j, O_t] of the current round, raw bits
  bool out_ok = false;    // lane t holds a valid column of the round
  auto gather_round = [&](int t0) {
    const int t = t0 + lane;
    const int c = t < count ? p.outlier_idx[t] : -1;
    out_ok = c >= 0 && c < k;  // a malformed index adds 0 * 0 (stays in bounds)
    wq_out = out_ok ? wrow[c] : 0;
#pragma unroll
    for (int j = 0; j < MT; ++j) x_out[j] = out_ok && j < m ? load_float_bits(p.x, p.x_type, j * k + c) : 0u;
  };
  gather_round(0);

  int xoff[MT];  // token rows of xq (rows past m repeat the last one; never stored)
#pragma unroll
  for (int j = 0; j < MT; ++j) xoff[j] = min(j, static_cast<int>(m) - 1) * kk32;
  int32_t acc[MT];
#pragma unroll
  for (int j = 0; j < MT; ++j) acc[j] = 0;
  for (int c0 = c_begin; c0 < c_end; c0 += U) {
    if (c0 != c_begin) load_weights(c0);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (!in_range(c0 + u)) continue;
      const int kk = (c0 + u) * kChunk + lane_k;
#pragma unroll
      for (int j = 0; j < MT; ++j)
        acc[j] = dot16(wv[u], __ldg(reinterpret_cast<const uint4*>(p.xq + xoff[j] + kk)), acc[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < MT; ++j) acc[j] = warp_sum(acc[j]);

  if constexpr (KSPLIT > 1) {  // the slices of a row meet in shared memory (exact)
    __shared__ int32_t partial[kWarps][MT];
    if (lane == 0) {
#pragma unroll
      for (int j = 0; j < MT; ++j) partial[warp][j] = acc[j];
    }
    __syncthreads();
    if (slice == 0) {
#pragma unroll
      for (int j = 0; j < MT; ++j) {
        int32_t s = 0;
#pragma unroll
        for (int h = 0; h < KSPLIT; ++h) s += partial[warp + h][j];
        acc[j] = s;
      }
    }
  }
  if (!epilogue_warp) return;

  // Outlier term: lane t holds column t of each round of 32; every lane then sums the round in
  // ascending t (shuffles broadcast the terms, so all lanes carry the same sums).
  float osum[MT];
#pragma unroll
  for (int j = 0; j < MT; ++j) osum[j] = 0.0f;
  for (int t0 = 0; t0 < count; t0 += 32) {
    if (t0 > 0) gather_round(t0);
    add_outlier_round<MT>(osum, wq_out, x_out, out_ok, cs, p.x_type, min(32, count - t0));
  }
#pragma unroll
  for (int j = 0; j < MT; ++j) {
    if (j < m && lane == j) {
      const float y = finish_output(acc[j], rs, cs, osum[j], p.bias ? &bias : nullptr, 0);
      store_output(p.y, p.y_type, j * n + row, y);
    }
  }
}

template <int MT, int KSPLIT>
cudaError_t launch_split(const Int8GemmParams* ps, int count, cudaStream_t stream, bool pdl) {
  constexpr int U = MT <= 2 ? 8 : 4;  // bounded by 64 registers (4 blocks per SM)
  int64_t blocks = 0;
  const DecodeArgs a = make_decode_args(ps, count, kWarps / KSPLIT, &blocks);
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(blocks));
  if (count > 1) return launch_kernel(gemv_kernel<MT, KSPLIT, U, true>, grid, dim3(kThreads), stream, pdl, a);
  return launch_kernel(gemv_kernel<MT, KSPLIT, U, false>, grid, dim3(kThreads), stream, pdl, a);
}

// K slices per row: the fewest that give about three waves of blocks (fewer leave SMs idle in
// the last wave).
int choose_ksplit(const Int8GemmParams* ps, int count, int num_sms, int forced) {
  return gemv_ksplit(ps, count, kWarps, 3 * static_cast<int64_t>(kBlocksPerSm) * std::max(num_sms, 1), forced);
}

template <int MT>
cudaError_t launch_tokens(const Int8GemmParams* ps, int count, int ksplit, int num_sms, cudaStream_t stream,
                          bool pdl) {
  switch (choose_ksplit(ps, count, num_sms, ksplit)) {
    case 4: return launch_split<MT, 4>(ps, count, stream, pdl);
    case 2: return launch_split<MT, 2>(ps, count, stream, pdl);
    default: return launch_split<MT, 1>(ps, count, stream, pdl);
  }
}

}  // namespace

bool int8_gemv_supported(const Int8GemmParams& p) {
  return p.m >= 1 && p.m <= kGemvMaxTokens && p.k <= kGemvMaxK && int8_gemm_skinny_fast_path(p);
}

cudaError_t launch_int8_gemv_group(const Int8GemmParams* ps, int count, int ksplit, int num_sms,
                                   cudaStream_t stream, bool pdl) {
  if (count < 1 || count > kMaxSkinnyWeights) return cudaErrorInvalidValue;
  for (int i = 0; i < count; ++i)
    if (!same_activations(ps[0], ps[i]) || !int8_gemv_supported(ps[i])) return cudaErrorInvalidValue;
  const int64_t m = ps[0].m;
  if (m == 1) return launch_tokens<1>(ps, count, ksplit, num_sms, stream, pdl);
  if (m == 2) return launch_tokens<2>(ps, count, ksplit, num_sms, stream, pdl);
  return launch_tokens<4>(ps, count, ksplit, num_sms, stream, pdl);
}

}  // namespace jaxint8::cuda
