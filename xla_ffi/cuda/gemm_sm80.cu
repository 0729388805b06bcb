// Tiled int8 GEMM for sm_80/86/89 (also runs on sm_90): mma.sync m16n8k32 s8 -> s32,
// 128x128x64 CTA tiles, 8 warps (2 x 4, 64x32 warp tiles), 4-stage cp.async pipeline,
// ldmatrix from an XOR-swizzled shared-memory layout (conflict-free), and a fused epilogue:
//   y = cast( acc * row_scale * scale / 127^2 + sum_t x[m, O_t] * W_deq[O_t, n] + bias )
// The outlier part is either read from the outlier product (outlier_product.cu) or, for the
// counts it leaves to the epilogue, a rank-`count` update here: the CTA stages its rows'
// outlier activations (f32) and its columns' dequantized outlier weights (f32) in shared
// memory, 32 outliers at a time, and each thread adds them to its accumulators in order.
#include <algorithm>

#include "cuda/device_utils.cuh"
#include "cuda/launch.h"

namespace jaxint8::cuda {
namespace {

constexpr int BM = 128, BN = 128, BK = 64, STAGES = 4, THREADS = 256;
constexpr int kTileBytes = BM * BK;                 // A and B tiles are both 128 x 64 bytes
constexpr int kStageBytes = 2 * kTileBytes;
constexpr int kSmemBytes = STAGES * kStageBytes;    // 64 KiB
constexpr int TC = 32;                              // outliers staged per epilogue round
static_assert(BM * (TC + 1) * 4 + TC * BN * 4 + TC * 4 <= kSmemBytes, "epilogue staging must fit");

template <typename OutT>
__device__ __forceinline__ void store2(OutT* y, int64_t off, float a, float b, bool both, bool pair_ok) {
  if (both && pair_ok) {
    if constexpr (sizeof(OutT) == 4) {
      *reinterpret_cast<float2*>(y + off) = make_float2(a, b);
    } else {
      OutT v[2];
      FloatIO<OutT>::store(&v[0], a);
      FloatIO<OutT>::store(&v[1], b);
      *reinterpret_cast<uint32_t*>(y + off) = *reinterpret_cast<uint32_t*>(v);
    }
  } else {
    FloatIO<OutT>::store(y + off, a);
    if (both) FloatIO<OutT>::store(y + off + 1, b);
  }
}

template <typename XT, typename OutT>
__global__ void __launch_bounds__(THREADS, 1) tiled_kernel(Int8GemmParams p) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, q = lane & 3;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int64_t m = p.m, n = p.n, k = p.k;
  const int64_t tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
  int64_t tm, tn;
  grouped_tile(blockIdx.x, tiles_m, tiles_n, tm, tn);
  const int64_t m0 = tm * BM, n0 = tn * BN;
  const int64_t KT = (k + BK - 1) / BK;

  // Each thread copies chunks tid and tid + 256 of the A and B tiles.
  auto load_stage = [&](int stage, int64_t kt) {
    uint8_t* sa = smem + stage * kStageBytes;
    uint8_t* sb = sa + kTileBytes;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = tid + i * THREADS, row = c >> 2, ch = c & 3;
      const int64_t kk = kt * BK + ch * 16;
      const bool kin = kk < k;
      const int64_t ar = m0 + row, br = n0 + row;
      const bool av = kin && ar < m, bv = kin && br < n;
      cp_async16(smem_addr(sa + swizzle64(row, ch)), av ? p.xq + ar * k + kk : p.xq, av);
      cp_async16(smem_addr(sb + swizzle64(row, ch)), bv ? p.qweight + br * k + kk : p.qweight, bv);
    }
  };

  int32_t acc[4][4][4] = {};

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) load_stage(s, s);
    cp_async_commit();
  }

  const int mat = lane >> 3, mrow = lane & 7;
  for (int64_t kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    {
      const int64_t nk = kt + STAGES - 1;
      if (nk < KT) load_stage(static_cast<int>(nk % STAGES), nk);
      cp_async_commit();
    }
    const uint8_t* sa = smem + (kt % STAGES) * kStageBytes;
    const uint8_t* sb = sa + kTileBytes;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = warp_m * 64 + i * 16 + (mat & 1) * 8 + mrow;
        ldmatrix_x4(af[i], smem_addr(sa + swizzle64(row, ks * 2 + (mat >> 1))));
      }
#pragma unroll
      for (int jp = 0; jp < 2; ++jp) {
        const int row = warp_n * 32 + jp * 16 + (mat >> 1) * 8 + mrow;
        uint32_t r[4];
        ldmatrix_x4(r, smem_addr(sb + swizzle64(row, ks * 2 + (mat & 1))));
        bf[2 * jp][0] = r[0]; bf[2 * jp][1] = r[1];
        bf[2 * jp + 1][0] = r[2]; bf[2 * jp + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_s8_16832(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  // ---------------------------------------------------------------- fused epilogue
  float osum[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) osum[i][j][r] = 0.0f;

  const int count = clamped_count(p.outlier_count, k);
  const bool from_partial = p.outlier_partial != nullptr && count > p.partial_min_count;
  if (count > 0 && !from_partial) {
    float* xo = reinterpret_cast<float*>(smem);       // [BM][TC + 1]: x[m0 + r, O_t]
    float* wo = xo + BM * (TC + 1);                   // [TC][BN]: W_deq[O_t, n0 + c]
    int* sidx = reinterpret_cast<int*>(wo + TC * BN); // [TC]
    const XT* x = static_cast<const XT*>(p.x);
    for (int t0 = 0; t0 < count; t0 += TC) {
      const int tc = min(TC, count - t0);
      if (tid < tc) {
        const int c = p.outlier_idx[t0 + tid];
        sidx[tid] = (c >= 0 && c < k) ? c : -1;  // malformed list: stay in bounds
      }
      __syncthreads();
      // Gathers: only the tc live columns; consecutive threads take consecutive rows
      // (conflict-free with the TC + 1 padding), unrolled so the loads are in flight together.
#pragma unroll 4
      for (int e = tid; e < BM * tc; e += THREADS) {
        const int t = e / BM, r = e % BM;
        const int64_t row = m0 + r;
        const int c = sidx[t];
        xo[r * (TC + 1) + t] = (row < m && c >= 0) ? FloatIO<XT>::load(x + row * k + c) : 0.0f;
      }
#pragma unroll 4
      for (int e = tid; e < BN * tc; e += THREADS) {
        const int t = e / BN, cn = e % BN;
        const int64_t col = n0 + cn;
        const int c = sidx[t];
        wo[t * BN + cn] = (col < n && c >= 0) ? dequantize_weight(p.qweight[col * k + c], p.scale[col]) : 0.0f;
      }
      __syncthreads();
      for (int t = 0; t < tc; ++t) {
        float xv[4][2], wv[4][2];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) xv[i][hh] = xo[(warp_m * 64 + i * 16 + g + hh * 8) * (TC + 1) + t];
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int cc = 0; cc < 2; ++cc) wv[j][cc] = wo[t * BN + warp_n * 32 + j * 8 + q * 2 + cc];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r)
              osum[i][j][r] = outlier_term(osum[i][j][r], xv[i][r >> 1], wv[j][r & 1]);
      }
      __syncthreads();
    }
  }

  OutT* y = static_cast<OutT*>(p.y);
  const bool pair_ok = (n % 2) == 0;  // 2-element stores stay aligned
  float cs[4][2];
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int cc = 0; cc < 2; ++cc) {
      const int64_t col = n0 + warp_n * 32 + j * 8 + q * 2 + cc;
      cs[j][cc] = col < n ? p.scale[col] : 0.0f;
    }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int64_t row = m0 + warp_m * 64 + i * 16 + g + hh * 8;
      if (row >= m) continue;
      const float rs = p.row_scale[row];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t col = n0 + warp_n * 32 + j * 8 + q * 2;
        if (col >= n) continue;
        const bool both = col + 1 < n;
        float oa = osum[i][j][hh * 2], ob = osum[i][j][hh * 2 + 1];
        if (from_partial) {  // sum_t x * q from the outlier product, times scale / 127
          const float* pr = p.outlier_partial + row * n + col;
          oa = __fmul_rn(pr[0], cs[j][0] / kQuantRange);
          ob = both ? __fmul_rn(pr[1], cs[j][1] / kQuantRange) : 0.0f;
        }
        const float a = finish_output(acc[i][j][hh * 2], rs, cs[j][0], oa, p.bias, col);
        const float b = both ? finish_output(acc[i][j][hh * 2 + 1], rs, cs[j][1], ob, p.bias, col + 1) : 0.0f;
        store2(y, row * n + col, a, b, both, pair_ok);
      }
    }
}

template <typename XT, typename OutT>
cudaError_t launch_t(const Int8GemmParams& p, cudaStream_t stream) {
  auto kernel = tiled_kernel<XT, OutT>;
  JAXINT8_CUDA_RETURN_IF_ERROR(opt_in_dynamic_smem(reinterpret_cast<const void*>(kernel), kSmemBytes));
  const int64_t tiles = ((p.m + BM - 1) / BM) * ((p.n + BN - 1) / BN);
  if (tiles > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  kernel<<<static_cast<unsigned>(tiles), THREADS, kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

template <typename XT>
cudaError_t launch_x(const Int8GemmParams& p, cudaStream_t stream) {
  switch (p.y_type) {
    case FloatType::kF32: return launch_t<XT, float>(p, stream);
    case FloatType::kBF16: return launch_t<XT, __nv_bfloat16>(p, stream);
    default: return launch_t<XT, __half>(p, stream);
  }
}

}  // namespace

bool int8_gemm_tiled_supported(const Int8GemmParams& p) {
  return p.k % 16 == 0 && reinterpret_cast<uintptr_t>(p.xq) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(p.qweight) % 16 == 0;
}

cudaError_t launch_int8_gemm_tiled(const Int8GemmParams& p, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  switch (p.x_type) {
    case FloatType::kF32: return launch_x<float>(p, stream);
    case FloatType::kBF16: return launch_x<__nv_bfloat16>(p, stream);
    default: return launch_x<__half>(p, stream);
  }
}

}  // namespace jaxint8::cuda
