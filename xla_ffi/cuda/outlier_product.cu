// The outlier product of the prefill GEMMs on tensor cores (launch.h, launch_outlier_product):
//   partial[i, j] = sum_{t < c} x[i, idx[t]] * qweight[j, idx[t]],   c = *outlier_count
// in float32 from exact products, at bf16 tensor-core rate in c (ceil(c / 32) K-steps).
//
// Two launches. The gather copies x[:, idx[:c]] into compact 16-bit planes (bf16 or f16 x as is;
// f32 x split into three bf16 terms hi + mid + lo, exact for finite x) and qweight[:, idx[:c]]
// into compact int8 rows, both zero padded to a multiple of 32 columns: each scattered weight byte
// is read once per call, not once per output tile. The product kernel is an mma.sync m16n8k16 GEMM
// over those columns that converts the int8 weight tile to bf16/f16 (exact) while storing it to
// shared memory: no dequantized copy of the weight anywhere. Both kernels read the count on the
// device and return at once when c <= min_count (the GEMM epilogue then adds the few outlier
// columns itself).
#include <algorithm>
#include <type_traits>

#include "cuda/device_utils.cuh"
#include "cuda/launch.h"

namespace jaxint8::cuda {
namespace {

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256;  // BK: outlier columns per K-step
constexpr int kRowBytes = BK * 2;                           // a tile row: 32 16-bit elements (64 bytes)
constexpr int kTileBytes = BM * kRowBytes;                  // 8 KiB (BM == BN)
constexpr int kGatherThreads = 256;
constexpr int64_t kAlign = 256;

int64_t align_up(int64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }
int64_t compact_ld(int64_t k) { return (k + BK - 1) / BK * BK; }
int x_planes(FloatType t) { return t == FloatType::kF32 ? 3 : 1; }

// mma.sync m16n8k16 with f32 accumulation; kF16: f16 operands, else bf16.
template <bool kF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (kF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// An int8 weight value as the 16-bit operand type (exact: |q| <= 128).
template <bool kF16>
__device__ __forceinline__ uint16_t int8_to_operand(int8_t q) {
  if constexpr (kF16) return __half_as_ushort(__int2half_rn(q));
  return __bfloat16_as_ushort(__float2bfloat16_rn(static_cast<float>(q)));
}

// ---------------------------------------------------------------- gather of x[:, idx] and qweight[:, idx]

// xo[p][r, t] = term p of x[r, idx[t]] (planes of m x ld 16-bit values) and wo[j, t] =
// qweight[j, idx[t]] (n x cpad int8) for t < c, 0 for c <= t < cpad = round_up(c, 32). One
// grid-wide loop over the m * cpad x items, then the n * cpad weight items.
template <typename XT>
__global__ void __launch_bounds__(kGatherThreads) gather_kernel(const XT* __restrict__ x,
                                                               const int8_t* __restrict__ qweight,
                                                               const int32_t* __restrict__ idx,
                                                               const int32_t* __restrict__ count, int64_t m,
                                                               int64_t n, int64_t k, int64_t ld,
                                                               uint16_t* __restrict__ xo, int8_t* __restrict__ wo,
                                                               int min_count) {
  const int c = clamped_count(count, k);
  if (c <= min_count) return;
  const int cpad = (c + BK - 1) / BK * BK;
  const int64_t x_items = m * cpad, total = x_items + n * cpad;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const bool is_x = e < x_items;
    const int64_t f = is_x ? e : e - x_items;
    const int64_t r = f / cpad;
    const int t = static_cast<int>(f - r * cpad);
    int col = t < c ? __ldg(idx + t) : -1;
    if (col >= k) col = -1;  // malformed list: no contribution, no stray read
    if (!is_x) {
      wo[f] = col >= 0 ? __ldg(qweight + r * k + col) : int8_t{0};
      continue;
    }
    uint16_t* dst = xo + r * ld + t;
    if constexpr (std::is_same_v<XT, float>) {
      const float v = col >= 0 ? __ldg(x + r * k + col) : 0.0f;
      const __nv_bfloat16 hi = __float2bfloat16_rn(v);
      const float r1 = __fsub_rn(v, __bfloat162float(hi));
      const __nv_bfloat16 mid = __float2bfloat16_rn(r1);
      const float r2 = __fsub_rn(r1, __bfloat162float(mid));
      const bool finite = fabsf(v) <= 3.402823466e38f;  // Inf / NaN: carried by hi alone
      const int64_t plane = m * ld;
      dst[0] = __bfloat16_as_ushort(hi);
      dst[plane] = finite ? __bfloat16_as_ushort(mid) : uint16_t{0};
      dst[2 * plane] = finite ? __bfloat16_as_ushort(__float2bfloat16_rn(r2)) : uint16_t{0};
    } else {
      *dst = col >= 0 ? __ldg(reinterpret_cast<const uint16_t*>(x) + r * k + col) : uint16_t{0};
    }
  }
}

// ---------------------------------------------------------------- the product

// 128 x 128 output tiles, 8 warps (2 x 4, 64 x 32 warp tiles), K-steps of 32 outlier columns,
// two shared-memory stages: the x tiles come in by cp.async, the weight tile through registers
// (16 compact int8 bytes per thread, converted while stored), both one step ahead of the tensor
// cores.
template <bool kF16, int kPlanes>
__global__ void __launch_bounds__(THREADS, 2) outlier_product_kernel(
    const uint16_t* __restrict__ xo, int64_t ld, const int8_t* __restrict__ wo,
    const int32_t* __restrict__ count, int64_t m, int64_t n, int64_t k, float* __restrict__ partial,
    int min_count) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int c = clamped_count(count, k);
  if (c <= min_count) return;
  constexpr int kStageBytes = (kPlanes + 1) * kTileBytes;  // kPlanes x tiles, then the weight tile
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int64_t tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
  int64_t tm, tn;
  grouped_tile(blockIdx.x, tiles_m, tiles_n, tm, tn);
  const int64_t m0 = tm * BM, n0 = tn * BN, plane = m * ld;
  const int steps = (c + BK - 1) / BK;

  auto load_x = [&](int stage, int step) {  // 2 chunks of 16 bytes per thread and plane
#pragma unroll
    for (int p = 0; p < kPlanes; ++p) {
      uint8_t* sa = smem + stage * kStageBytes + p * kTileBytes;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int ch_id = tid + i * THREADS, row = ch_id >> 2, ch = ch_id & 3;
        const int64_t r = m0 + row;
        const bool valid = r < m;
        const uint16_t* src = xo + p * plane + (valid ? r : 0) * ld + step * BK + ch * 8;
        cp_async16(smem_addr(sa + swizzle64(row, ch)), src, valid);
      }
    }
    cp_async_commit();
  };
  // The weight tile: this thread's 16 columns half * 16 .. of compact row w_row (one 16-byte load;
  // wo rows are cpad bytes, a multiple of 32).
  const int cpad = steps * BK, w_row = tid >> 1, w_half = tid & 1;
  const bool w_valid = n0 + w_row < n;
  const int8_t* w_src = wo + (w_valid ? n0 + w_row : 0) * cpad + w_half * 16;
  int4 wreg;
  auto load_w = [&](int step) {
    wreg = w_valid ? __ldg(reinterpret_cast<const int4*>(w_src + step * BK)) : make_int4(0, 0, 0, 0);
  };
  auto store_w = [&](int stage) {
    uint8_t* sb = smem + stage * kStageBytes + kPlanes * kTileBytes;
    const int8_t* b = reinterpret_cast<const int8_t*>(&wreg);
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // two 16-byte chunks of 8 converted values
      uint32_t v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        v[i] = int8_to_operand<kF16>(b[h * 8 + 2 * i]) | (uint32_t{int8_to_operand<kF16>(b[h * 8 + 2 * i + 1])} << 16);
      *reinterpret_cast<uint4*>(sb + swizzle64(w_row, w_half * 2 + h)) = make_uint4(v[0], v[1], v[2], v[3]);
    }
  };

  float acc[4][4][4] = {};

  load_x(0, 0);
  load_w(0);
  store_w(0);
  cp_async_wait<0>();
  __syncthreads();

  const int mat = lane >> 3, mrow = lane & 7;
  for (int step = 0; step < steps; ++step) {
    const int stage = step & 1;
    const bool next = step + 1 < steps;
    if (next) {
      load_x(stage ^ 1, step + 1);
      load_w(step + 1);
    }
    const uint8_t* sa = smem + stage * kStageBytes;
    const uint8_t* sb = sa + kPlanes * kTileBytes;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {  // two k16 halves of the 32 columns
      uint32_t bf[4][2];
#pragma unroll
      for (int jp = 0; jp < 2; ++jp) {
        const int row = warp_n * 32 + jp * 16 + (mat >> 1) * 8 + mrow;
        uint32_t r[4];
        ldmatrix_x4(r, smem_addr(sb + swizzle64(row, ks * 2 + (mat & 1))));
        bf[2 * jp][0] = r[0];
        bf[2 * jp][1] = r[1];
        bf[2 * jp + 1][0] = r[2];
        bf[2 * jp + 1][1] = r[3];
      }
#pragma unroll
      for (int p = 0; p < kPlanes; ++p) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint32_t af[4];
          const int row = warp_m * 64 + i * 16 + (mat & 1) * 8 + mrow;
          ldmatrix_x4(af, smem_addr(sa + p * kTileBytes + swizzle64(row, ks * 2 + (mat >> 1))));
#pragma unroll
          for (int j = 0; j < 4; ++j) mma_16816<kF16>(acc[i][j], af, bf[j][0], bf[j][1]);
        }
      }
    }
    if (next) store_w(stage ^ 1);
    cp_async_wait<0>();
    __syncthreads();
  }

  const int g = lane >> 2, q = lane & 3;
  const bool pair_ok = n % 2 == 0;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int64_t row = m0 + warp_m * 64 + i * 16 + g + hh * 8;
      if (row >= m) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t col = n0 + warp_n * 32 + j * 8 + q * 2;
        if (col >= n) continue;
        float* dst = partial + row * n + col;
        const float a = acc[i][j][hh * 2], b = acc[i][j][hh * 2 + 1];
        if (col + 1 < n && pair_ok) {
          *reinterpret_cast<float2*>(dst) = make_float2(a, b);
        } else {
          dst[0] = a;
          if (col + 1 < n) dst[1] = b;
        }
      }
    }
}

template <bool kF16, int kPlanes>
cudaError_t launch_product(const Int8GemmParams& p, const OutlierProductBuffers& b, int min_count,
                           cudaStream_t stream) {
  auto kernel = outlier_product_kernel<kF16, kPlanes>;
  constexpr int kSmem = 2 * (kPlanes + 1) * kTileBytes;
  JAXINT8_CUDA_RETURN_IF_ERROR(opt_in_dynamic_smem(reinterpret_cast<const void*>(kernel), kSmem));
  const int64_t tiles = ((p.m + BM - 1) / BM) * ((p.n + BN - 1) / BN);
  if (tiles > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  kernel<<<static_cast<unsigned>(tiles), THREADS, kSmem, stream>>>(b.xo, compact_ld(p.k), b.wo, p.outlier_count,
                                                                  p.m, p.n, p.k, b.partial, min_count);
  return cudaGetLastError();
}

template <typename XT>
cudaError_t launch_gather(const Int8GemmParams& p, const OutlierProductBuffers& b, int min_count, int num_sms,
                          cudaStream_t stream) {
  const int64_t items = (p.m + p.n) * compact_ld(p.k);
  const int64_t blocks = std::min<int64_t>((items + kGatherThreads - 1) / kGatherThreads, int64_t{8} * num_sms);
  gather_kernel<XT><<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), kGatherThreads, 0, stream>>>(
      static_cast<const XT*>(p.x), p.qweight, p.outlier_idx, p.outlier_count, p.m, p.n, p.k, compact_ld(p.k), b.xo,
      b.wo, min_count);
  return cudaGetLastError();
}

}  // namespace

size_t outlier_product_workspace_bytes(int64_t m, int64_t n, int64_t k, FloatType x_type) {
  return static_cast<size_t>(align_up(m * n * 4) + align_up(x_planes(x_type) * m * compact_ld(k) * 2) +
                             align_up(n * compact_ld(k)));
}

OutlierProductBuffers outlier_product_buffers(void* workspace, int64_t m, int64_t n, int64_t k, FloatType x_type) {
  auto* base = static_cast<char*>(workspace);
  const int64_t xo_at = align_up(m * n * 4), wo_at = xo_at + align_up(x_planes(x_type) * m * compact_ld(k) * 2);
  return {reinterpret_cast<float*>(base), reinterpret_cast<uint16_t*>(base + xo_at),
          reinterpret_cast<int8_t*>(base + wo_at)};
}

cudaError_t launch_outlier_product(const Int8GemmParams& p, const OutlierProductBuffers& b, int min_count,
                                   int num_sms, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0 || p.outlier_count == nullptr) return cudaSuccess;
  switch (p.x_type) {
    case FloatType::kF32:
      JAXINT8_CUDA_RETURN_IF_ERROR(launch_gather<float>(p, b, min_count, num_sms, stream));
      return launch_product<false, 3>(p, b, min_count, stream);
    case FloatType::kBF16:
      JAXINT8_CUDA_RETURN_IF_ERROR(launch_gather<__nv_bfloat16>(p, b, min_count, num_sms, stream));
      return launch_product<false, 1>(p, b, min_count, stream);
    default:
      JAXINT8_CUDA_RETURN_IF_ERROR(launch_gather<__half>(p, b, min_count, num_sms, stream));
      return launch_product<true, 1>(p, b, min_count, stream);
  }
}

}  // namespace jaxint8::cuda
