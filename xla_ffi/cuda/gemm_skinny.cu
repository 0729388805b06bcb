// Skinny int8 GEMM for decode (m <= 16 tokens per grid row): memory-bound on the int8
// weight, so the weight is streamed once and the tensor cores do the arithmetic with the roles
// swapped: y^T-style products D[tokens, rows] = Xq[tokens, :] . Wq[rows, :]^T, i.e. mma.sync
// m16n8k32 with the 16 tokens as the M operand and 8 weight rows as the N operand.
//
// Weight loads: every warp load instruction reads 512 contiguous bytes of ONE weight row (lane l
// takes bytes 16 l .. 16 l + 15), 8 rows per warp step. Measured on the H100 (read-only kernels,
// benchmarks/cuda/skinny_bench.cu --patterns): 2.9-3.05 TB/s with this layout, 2.2-2.5 TB/s with
// 8 rows x 64 bytes per instruction (the layout the mma fragments want), at the same bytes in flight.
// The step's 8 x 512 bytes go through the warp's own shared-memory tile (16-byte pieces XOR-
// swizzled by row: conflict-free stores and loads) to reach the fragment layout: lane (g, q)
// takes row g's pieces q, q + 4, ..., q + 28. K order inside a dot product is free as long as both
// operands use the same one, so the activations are loaded with that same piece order.
//
// Block = 8 warps on 16 weight rows (two 8-row halves), warp w takes the 512-byte K chunks
// w, w + 8, ...; the int32 partial sums meet in shared memory (exact, order-free), then the
// fused epilogue (dequant + outliers + bias + cast) writes the outputs. A ninth warp gathers the
// outlier columns meanwhile (a chain of dependent loads that would otherwise stall the stream).
#include <algorithm>
#include <cstdlib>

#include "cuda/device_utils.cuh"
#include "cuda/launch.h"

namespace jaxint8::cuda {
namespace {

constexpr int kWarps = 8;                   // warps streaming the weight
constexpr int kThreads = (kWarps + 1) * 32;  // + the outlier-staging warp
constexpr int kRows = 16;                   // weight rows per block
constexpr int kStepRows = 8;                // weight rows per warp step (the mma's N)
constexpr int kChunk = 512;                 // K bytes per warp step and row (32 lanes x 16 bytes)
constexpr int kPieces = kChunk / 16;
constexpr int kTileBytes = kWarps * 2 * kStepRows * kChunk;  // dynamic shared memory, 64 KiB

// 16 bytes of row `row` at column k0 (zero beyond k). ALIGNED: rows are 16-byte aligned and
// k % 16 == 0, so a piece is either fully inside or fully outside.
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

// Streaming load that does not pollute L1 (each weight byte is read once).
__device__ __forceinline__ uint4 load_stream(const int8_t* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

// 3 blocks (27 warps) per SM: 24 streaming warps with 4-8 KB in flight each.
template <bool ALIGNED>
__global__ void __launch_bounds__(kThreads, 3) skinny_kernel(Int8GemmParams p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, q = lane & 3;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * 16;
  const int64_t m = p.m, n = p.n, k = p.k;

  // Per warp, two stages of a step's 8 rows x 512 bytes (the next step's copies are in flight
  // while this one is multiplied); piece i of row j sits at position i ^ j, so the row-wise
  // copies and the (row g, piece 4 i + q) loads are both conflict-free. After the main loop the
  // same memory holds the warp's int32 partial sums.
  extern __shared__ uint4 s_dyn[];  // kTileBytes
  auto s_tile = reinterpret_cast<uint4(*)[2][kStepRows][kPieces]>(s_dyn);
  // Outliers: the staging warp gathers x[tokens, O] and W_deq[O, rows] for TC outlier columns at
  // a time; each output sums them in order in the epilogue.
  constexpr int TC = 32;
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
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;"
                   :: "l"(p.wq + row * k), "r"(static_cast<unsigned>(bytes)) : "memory");
    }
  }
#endif
  pdl_wait();
  const int count = clamped_count(p.outlier_count, k);
  // Outlier columns t0 .. t0 + tc into shared memory by threads tid = 0 .. nthr - 1; sync is the
  // barrier between the index list and the gathers (the block's or, for one warp, the warp's).
  auto stage_outliers = [&](int t0, int tc, int tid, int nthr, auto sync) {
    if (tid < tc) {
      const int c = p.outlier_idx[t0 + tid];
      s_idx[tid] = (c >= 0 && c < k) ? c : -1;  // malformed list: stay in bounds
    }
    sync();
    for (int e = tid; e < 16 * tc; e += nthr) {
      const int tok = e % 16, t = e / 16;
      const int c = s_idx[t];
      s_x[tok][t] = (m0 + tok < m && c >= 0) ? load_float(p.x, p.x_type, (m0 + tok) * k + c) : 0.0f;
    }
#pragma unroll 2
    for (int e = tid; e < kRows * tc; e += nthr) {
      const int rr = e % kRows, t = e / kRows;
      const int c = s_idx[t];
      const int64_t row = n0 + rr;
      s_w[t][rr] = (row < n && c >= 0) ? dequantize_weight(p.wq[row * k + c], p.col_scale[row]) : 0.0f;
    }
  };

  // acc[h]: D[tokens, 8 rows of half h] fragment: c0 = (token g, row 2q), c1 = (g, 2q + 1),
  // c2 = (g + 8, 2q), c3 = (g + 8, 2q + 1).
  int32_t acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
  if (warp == kWarps) {
    // The staging warp: the first TC outlier columns, visible after the reduction barrier.
    if (count > 0) stage_outliers(0, min(TC, count), lane, 32, [] { __syncwarp(); });
  } else {
    // Token rows of this lane's A fragment (clamped: rows past m give garbage never stored).
    const int64_t tok0 = min(m0 + g, m - 1), tok1 = min(m0 + g + 8, m - 1);
    const bool two_groups = m - m0 > 8;  // warp-uniform
    uint4(*tiles)[kStepRows][kPieces] = s_tile[warp];
    // Steps of this warp: (chunk warp + 8 i, half h) for i = 0, 1, ..., h = 0, 1.
    const int64_t n_chunks = (k + kChunk - 1) / kChunk;
    const int steps = n_chunks > warp ? 2 * static_cast<int>((n_chunks - 1 - warp) / kWarps + 1) : 0;
    auto issue = [&](int st) {  // copies of step st into its stage (one commit group per step)
      if (st < steps) {
        const int64_t k0 = (warp + static_cast<int64_t>(st >> 1) * kWarps) * kChunk + lane * 16;
        uint4(*tile)[kPieces] = tiles[st & 1];
#pragma unroll
        for (int j = 0; j < kStepRows; ++j) {
          const int64_t row = min(n0 + (st & 1) * kStepRows + j, n - 1);
          if constexpr (ALIGNED) {
            cp_async16(smem_addr(&tile[j][lane ^ j]), k0 < k ? p.wq + row * k + k0 : p.wq, k0 < k);
          } else {
            tile[j][lane ^ j] = load16<false>(p.wq, row, k, k0);
          }
        }
      }
      cp_async_commit();  // possibly empty: keeps one group per step for the wait below
    };
    issue(0);
    for (int st = 0; st < steps; ++st) {
      issue(st + 1);
      const int64_t kc = (warp + static_cast<int64_t>(st >> 1) * kWarps) * kChunk;
      cp_async_wait<1>();  // this step's copies have landed
      __syncwarp();
      const uint4(*tile)[kPieces] = tiles[st & 1];
#pragma unroll
      for (int i = 0; i < kPieces / 4; ++i) {
        const int piece = 4 * i + q;
        const uint4 w = tile[g][piece ^ g];
        // Activations (L1/L2): tokens g and g + 8, the same 16 bytes of K.
        const uint4 x0 = load16<ALIGNED>(p.xq, tok0, k, kc + 16 * piece);
        const uint4 x1 = two_groups ? load16<ALIGNED>(p.xq, tok1, k, kc + 16 * piece) : make_uint4(0, 0, 0, 0);
        // Bytes 0-7 of the piece, then 8-15: slot k 4q.. <- bytes 0-3, slot 16 + 4q.. <- 4-7.
        const uint32_t a_lo[4] = {x0.x, x1.x, x0.y, x1.y};
        const uint32_t a_hi[4] = {x0.z, x1.z, x0.w, x1.w};
        mma_s8_16832(acc[st & 1], a_lo, w.x, w.y);
        mma_s8_16832(acc[st & 1], a_hi, w.z, w.w);
      }
      __syncwarp();  // the stage is free for step st + 2
    }
    cp_async_wait<0>();
    __syncwarp();
    // The warp's partial sums into its own tile memory (value v = 4 h + r, lane-major).
    int32_t* red = reinterpret_cast<int32_t*>(tiles[0]);
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int r = 0; r < 4; ++r) red[(4 * h + r) * 32 + lane] = acc[h][r];
  }
  __syncthreads();

  // One output per streaming thread: value v = threadIdx.x / 32 of lane ln = threadIdx.x % 32.
  int rl = -1, tl = 0;  // local weight row / token; -1 when this thread has no output
  int32_t sum = 0;
  float osum = 0.0f;
  if (threadIdx.x < kWarps * 32) {
    const int v = threadIdx.x >> 5, ln = threadIdx.x & 31, h = v >> 2, r = v & 3;
    const int row = h * kStepRows + 2 * (ln & 3) + (r & 1);
    tl = (ln >> 2) + (r >= 2 ? 8 : 0);
    if (n0 + row < n && m0 + tl < m) {
      rl = row;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += reinterpret_cast<const int32_t*>(s_tile[w][0])[v * 32 + ln];
    }
  }

  // Outlier part (the first TC columns were staged during the main loop).
  for (int t0 = 0; t0 < count; t0 += TC) {
    const int tc = min(TC, count - t0);
    if (t0 > 0) {
      __syncthreads();  // previous chunk fully consumed
      stage_outliers(t0, tc, threadIdx.x, kThreads, [] { __syncthreads(); });
      __syncthreads();
    }
    if (rl >= 0)
      for (int t = 0; t < tc; ++t) osum = outlier_term(osum, s_x[tl][t], s_w[t][rl]);
  }

  if (rl >= 0) {
    const int64_t row_n = n0 + rl, tok = m0 + tl;
    const float y = finish_output(sum, p.row_scale[tok], p.col_scale[row_n], osum, p.bias, row_n);
    store_output(p.y, p.y_type, tok * n + row_n, y);
  }
}

template <bool ALIGNED>
cudaError_t launch_skinny(const Int8GemmParams& p, cudaStream_t stream, bool pdl) {
  static const cudaError_t attr = cudaFuncSetAttribute(
      skinny_kernel<ALIGNED>, cudaFuncAttributeMaxDynamicSharedMemorySize, kTileBytes);
  JAXINT8_CUDA_RETURN_IF_ERROR(attr);
  const dim3 grid(static_cast<unsigned>((p.n + kRows - 1) / kRows), static_cast<unsigned>((p.m + 15) / 16));
  return launch_kernel(skinny_kernel<ALIGNED>, grid, dim3(kThreads), kTileBytes, stream, pdl, p);
}

}  // namespace

bool int8_gemm_skinny_fast_path(const Int8GemmParams& p) {
  return p.k % 16 == 0 && reinterpret_cast<uintptr_t>(p.wq) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(p.xq) % 16 == 0;
}

cudaError_t launch_int8_gemm_skinny(const Int8GemmParams& p, int num_sms, cudaStream_t stream, bool pdl) {
  (void)num_sms;
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if ((p.m + 15) / 16 > 65535) return cudaErrorInvalidConfiguration;
  return int8_gemm_skinny_fast_path(p) ? launch_skinny<true>(p, stream, pdl) : launch_skinny<false>(p, stream, pdl);
}

}  // namespace jaxint8::cuda
