// Skinny int8 GEMM for decode (m <= 16 tokens per grid row): memory-bound on the int8
// weight, so the weight is streamed once with 16-byte loads and the tensor cores do the
// arithmetic with the roles swapped: y^T[n, m] = Wq[n, :] . Xq[m, :], i.e. mma.sync
// m16n8k32 with 16 weight rows as the M operand and 8 tokens as the N operand.
//
// K order inside an mma does not matter for a dot product as long as both operands use the
// same one, so each lane loads 16 contiguous bytes of "its" weight row and of "its" token row
// (k0 + 16 * lane_in_quad) and feeds bytes 0-7 to one mma and bytes 8-15 to a second one.
//
// Block = 8 warps on the same TILES x 16 weight rows (TILES = 1, see the launcher); warp w takes the 64-byte K chunks
// w, w + 8, ...; the int32 partial sums meet in shared memory (exact, order-free), then the
// fused epilogue (dequant + outliers + bias + cast) writes the outputs. A ninth warp gathers the
// first outlier columns meanwhile: the outlier count -> index -> value loads are a chain of
// dependent latencies that stalled every block before its first weight load (H100, kernel alone:
// 5120->20480 at 1 token 42.3 -> 37.8 us, 49152->12288 227 -> 218 us, bit-identical).
#include <algorithm>

#include "cuda/decode_args.cuh"
#include "cuda/device_utils.cuh"
#include "cuda/launch.h"

namespace jaxint8::cuda {
namespace {

constexpr int kWarps = 8;                   // warps streaming the weight
constexpr int kThreads = kWarps * 32;
constexpr int kBlockThreads = kThreads + 32;  // + the outlier-staging warp
constexpr int kChunk = 64;  // K bytes per warp step (two m16n8k32 per tile)

// 16 bytes of row `row` at column k0 (zero beyond k). ALIGNED: rows are 16-byte aligned and
// k % 16 == 0, so a chunk is either fully inside or fully outside.
template <bool ALIGNED>
__device__ __forceinline__ uint4 load16(const int8_t* __restrict__ base, int64_t row, int64_t k,
                                        int64_t k0) {
  if constexpr (ALIGNED) {
    if (k0 < k) return __ldg(reinterpret_cast<const uint4*>(base + row * k + k0));
    return make_uint4(0, 0, 0, 0);
  } else {
    uint32_t w[4] = {0, 0, 0, 0};
    const int8_t* p = base + row * k;
#pragma unroll
    for (int i = 0; i < 16; ++i)
      if (k0 + i < k) w[i >> 2] |= static_cast<uint32_t>(static_cast<uint8_t>(p[k0 + i])) << (8 * (i & 3));
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
}

__device__ __forceinline__ uint32_t u4(const uint4& v, int i) {
  return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}

// 3 blocks (24 streaming warps) per SM: enough 16-byte loads in flight, and the 2.4 blocks per SM
// of the common decode shapes fit in one wave. GROUPED: several weights (args.weights > 1); a
// single weight reads args.p directly (the per-block weight select cost 1-6 % at 1 token).
template <int TILES, int MT, bool ALIGNED, bool GROUPED>
__global__ void __launch_bounds__(kBlockThreads, 3) skinny_kernel(const DecodeArgs args) {
  constexpr int U = TILES >= 4 ? 1 : (TILES == 2 ? 2 : 4);  // chunks in flight per warp step
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, q = lane & 3;
  int first_block = 0;
  Int8GemmParams selected;
  if constexpr (GROUPED) selected = weight_params(args, weight_of_block(args, first_block));
  const Int8GemmParams& p = GROUPED ? selected : args.p;  // both lvalues: no copy of args.p
  const int64_t n0 = static_cast<int64_t>(blockIdx.x - first_block) * (16 * TILES);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * 16;
  const int64_t m = p.m, n = p.n, k = p.k;

  // Weight rows of this lane (clamped: rows past n compute garbage that is never stored).
  int64_t wrow[TILES][2];
#pragma unroll
  for (int t = 0; t < TILES; ++t) {
    wrow[t][0] = min(n0 + t * 16 + g, n - 1);
    wrow[t][1] = min(n0 + t * 16 + g + 8, n - 1);
  }
  int64_t xrow[MT];
#pragma unroll
  for (int j = 0; j < MT; ++j) xrow[j] = min(m0 + j * 8 + g, m - 1);

  // Outliers: x[tokens, O] and W_deq[O, rows] are staged in shared memory for up to TC outlier
  // columns at a time; each output sums them in order in the epilogue. The staging warp gathers
  // the first kEarlyCols during the main loop (few enough that all its loads are in flight at
  // once: a longer serial gather would outlast the weight stream), the block the rest afterwards.
  constexpr int TC = 32;
  constexpr int kEarlyCols = 8;
  constexpr int kRows = 16 * TILES;
  __shared__ int s_idx[TC];
  __shared__ float s_x[16][TC + 1];
  __shared__ float s_w[TC][kRows + 1];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Programmatic dependent launch (a no-op wait when launched normally): until the quantization
  // grid is done, only inputs it does not write may be read. Warm L2 with the first
  // l2_prefetch_bytes of each weight row of the block, then wait for the grid's results.
  if constexpr (ALIGNED) {
    const int64_t row = n0 + threadIdx.x;
    const int64_t bytes = min(k, static_cast<int64_t>(p.l2_prefetch_bytes)) & ~int64_t{15};
    if (threadIdx.x < kRows && row < n && bytes > 0) {
      prefetch_l2(p.qweight + row * k, static_cast<unsigned>(bytes));
    }
  }
#endif
  pdl_wait();
  const int count = clamped_count(p.outlier_count, k);
  // Outlier columns t0 .. t0 + tc by threads tid = 0 .. nthr - 1; sync() separates the index
  // list from the gathers (a block barrier, or a warp barrier for the staging warp).
  auto stage_outliers = [&](int t0, int tc, int tid, int nthr, auto sync) {
    if (tid < tc) {
      const int c = p.outlier_idx[t0 + tid];
      s_idx[tid] = (c >= 0 && c < k) ? c : -1;  // malformed list: stay in bounds
    }
    sync();
#pragma unroll 4
    for (int e = tid; e < 16 * tc; e += nthr) {
      const int tok = e % 16, t = e / 16;
      const int c = s_idx[t];
      s_x[tok][t] = (m0 + tok < m && c >= 0) ? load_float(p.x, p.x_type, (m0 + tok) * k + c) : 0.0f;
    }
#pragma unroll 4
    for (int e = tid; e < kRows * tc; e += nthr) {
      const int rr = e % kRows, t = e / kRows;
      const int c = s_idx[t];
      const int64_t row = n0 + rr;
      s_w[t][rr] = (row < n && c >= 0) ? dequantize_weight(p.qweight[row * k + c], p.scale[row]) : 0.0f;
    }
  };
  auto block_sync = [] { __syncthreads(); };
  const int early = min(kEarlyCols, count);
  if (warp == kWarps) {  // the staging warp (visible after the reduction barrier)
    if (early > 0) stage_outliers(0, early, lane, 32, [] { __syncwarp(); });
  }

  int32_t acc[TILES][MT][4];
#pragma unroll
  for (int t = 0; t < TILES; ++t)
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[t][j][r] = 0;

  const int64_t n_chunks = (k + kChunk - 1) / kChunk;
  for (int64_t c = warp; c < n_chunks && warp < kWarps; c += kWarps * U) {
    uint4 wv[U][TILES][2], xv[U][MT];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k0 = (c + static_cast<int64_t>(u) * kWarps) * kChunk + q * 16;
#pragma unroll
      for (int t = 0; t < TILES; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if constexpr (ALIGNED) {
            wv[u][t][h] = k0 < k ? load_stream(p.qweight + wrow[t][h] * k + k0) : make_uint4(0, 0, 0, 0);
          } else {
            wv[u][t][h] = load16<false>(p.qweight, wrow[t][h], k, k0);
          }
        }
#pragma unroll
      for (int j = 0; j < MT; ++j) xv[u][j] = load16<ALIGNED>(p.xq, xrow[j], k, k0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int t = 0; t < TILES; ++t) {
          const uint32_t a[4] = {u4(wv[u][t][0], 2 * half), u4(wv[u][t][1], 2 * half),
                                 u4(wv[u][t][0], 2 * half + 1), u4(wv[u][t][1], 2 * half + 1)};
#pragma unroll
          for (int j = 0; j < MT; ++j)
            mma_s8_16832(acc[t][j], a, u4(xv[u][j], 2 * half), u4(xv[u][j], 2 * half + 1));
        }
  }

  // Cross-warp reduction of the int32 partial sums.
  constexpr int kVals = TILES * MT * 4;
  __shared__ int32_t red[kWarps][kVals][32];
#pragma unroll
  for (int t = 0; t < TILES; ++t)
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        if (warp < kWarps) red[warp][(t * MT + j) * 4 + r][lane] = acc[t][j][r];
  __syncthreads();

  // Each thread finishes up to kOut outputs: int32 sums first (this also frees `red`).
  constexpr int kOut = (kVals * 32 + kThreads - 1) / kThreads;
  int32_t sums[kOut];
  float osum[kOut];
  int rl[kOut], tl[kOut];  // local weight row / token, -1 when the output does not exist
#pragma unroll
  for (int u = 0; u < kOut; ++u) {
    const int e = threadIdx.x + u * kThreads;
    const int v = e >> 5, ln = e & 31;
    const int t = v / (MT * 4), j = (v / 4) % MT, r = v % 4;
    rl[u] = t * 16 + (ln >> 2) + (r >= 2 ? 8 : 0);
    tl[u] = j * 8 + (ln & 3) * 2 + (r & 1);
    sums[u] = 0;
    osum[u] = 0.0f;
    if (threadIdx.x >= kThreads || e >= kVals * 32 || n0 + rl[u] >= n || m0 + tl[u] >= m) {
      rl[u] = -1;
      continue;
    }
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sums[u] += red[w][v][ln];
  }

  // Outlier part: the first `early` columns were staged during the main loop, the rest go in
  // rounds of TC, in ascending order (the CPU handler's summation order).
  for (int t0 = 0, tc = early; t0 < count; t0 += tc, tc = min(TC, count - t0)) {
    if (t0 > 0) {
      __syncthreads();  // previous chunk fully consumed
      stage_outliers(t0, tc, threadIdx.x, kBlockThreads, block_sync);
      __syncthreads();
    }
#pragma unroll
    for (int u = 0; u < kOut; ++u) {
      if (rl[u] < 0) continue;
      for (int t = 0; t < tc; ++t) osum[u] = outlier_term(osum[u], s_x[tl[u]][t], s_w[t][rl[u]]);
    }
  }

#pragma unroll
  for (int u = 0; u < kOut; ++u) {
    if (rl[u] < 0) continue;
    const int64_t row_n = n0 + rl[u], tok = m0 + tl[u];
    const float y = finish_output(sums[u], p.row_scale[tok], p.scale[row_n], osum[u], p.bias, row_n);
    store_output(p.y, p.y_type, tok * n + row_n, y);
  }
}

template <int TILES, int MT, bool ALIGNED>
cudaError_t launch_t(const Int8GemmParams* ps, int count, cudaStream_t stream, bool pdl) {
  int64_t blocks = 0;
  const DecodeArgs a = make_decode_args(ps, count, 16 * TILES, &blocks);
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>((ps[0].m + 15) / 16));
  if (count > 1)
    return launch_kernel(skinny_kernel<TILES, MT, ALIGNED, true>, grid, dim3(kBlockThreads), stream, pdl, a);
  return launch_kernel(skinny_kernel<TILES, MT, ALIGNED, false>, grid, dim3(kBlockThreads), stream, pdl, a);
}

}  // namespace

bool int8_gemm_skinny_fast_path(const Int8GemmParams& p) {
  return p.k % 16 == 0 && reinterpret_cast<uintptr_t>(p.qweight) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(p.xq) % 16 == 0;
}

cudaError_t launch_int8_gemm_skinny_group(const Int8GemmParams* ps, int count, cudaStream_t stream, bool pdl) {
  if (count < 1 || count > kMaxSkinnyWeights) return cudaErrorInvalidValue;
  if (ps[0].m == 0) return cudaSuccess;
  if ((ps[0].m + 15) / 16 > 65535) return cudaErrorInvalidConfiguration;
  bool aligned = true;
  for (int i = 0; i < count; ++i) {
    if (!same_activations(ps[0], ps[i])) return cudaErrorInvalidValue;
    aligned = aligned && int8_gemm_skinny_fast_path(ps[i]);
  }
  // 16 weight rows per block (TILES = 1). H100 (ncu, median of 8, bf16, 6 outliers, 1 / 16
  // tokens): 5120->20480 43.6 / 47.8 us with 16 rows, 44.9 / 50.8 with 32, 48.6 / 59.2 with 64;
  // 12288->49152 214 / 222 vs 245 / 275 vs 272 / 323. Small blocks balance the weight stream best
  // over the SMs (no half-empty last wave).
  const bool one_group = ps[0].m <= 8;  // one n8 token group per mma is enough
  if (aligned) {
    return one_group ? launch_t<1, 1, true>(ps, count, stream, pdl) : launch_t<1, 2, true>(ps, count, stream, pdl);
  }
  return one_group ? launch_t<1, 1, false>(ps, count, stream, pdl) : launch_t<1, 2, false>(ps, count, stream, pdl);
}

}  // namespace jaxint8::cuda
