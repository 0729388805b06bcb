// The outlier product of the prefill GEMMs on tensor cores (launch.h, launch_outlier_product):
//   partial[i, j] = sum_{t < c} x[i, idx[t]] * qweight[j, idx[t]],   c = *outlier_count
// in float32 from exact products, at bf16 tensor-core rate in c (ceil(c / 32) K-steps).
//
// One cooperative launch in two phases. The gather copies x[:, idx[:c]] into compact 16-bit
// planes (bf16 or f16 x as is; f32 x split into three bf16 terms hi + mid + lo, exact for finite
// x) and qweight[:, idx[:c]] into compact int8 rows, both zero padded to a multiple of 32 columns:
// each scattered weight byte is read once per call, not once per output tile. After a grid
// barrier the same blocks run the product, an mma.sync m16n8k16 GEMM over those columns that
// converts the int8 weight tile to bf16/f16 (exact) while storing it to shared memory: no
// dequantized copy of the weight anywhere.
//
// The kernel reads the count on the device. With c <= min_count there is no product (the GEMM
// epilogue adds the few outlier columns itself), and the blocks stage the epilogue's compact
// operands instead (OutlierStaging, what the sm90 gather kernel writes), so a prefill GEMM
// launches one kernel besides itself for its outliers whatever the count. Where the cooperative
// launch is refused, the two phases run as two ordinary launches (same results).
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <type_traits>

#include "cuda/device_utils.cuh"
#include "cuda/launch.h"
#include "cuda/outlier_staging.cuh"

namespace jaxint8::cuda {
namespace {

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256;  // BK: outlier columns per K-step
constexpr int kRowBytes = BK * 2;                           // a tile row: 32 16-bit elements (64 bytes)
constexpr int kTileBytes = BM * kRowBytes;                  // 8 KiB (BM == BN)
constexpr int kGatherUnroll = 4;                            // independent gather items per thread and step
constexpr int64_t kAlign = 256;

int64_t align_up(int64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }
int64_t compact_ld(int64_t k) { return (k + BK - 1) / BK * BK; }
int x_planes(FloatType t) { return t == FloatType::kF32 ? 3 : 1; }

// What one call computes (device-side copy of the launch arguments).
struct ProductArgs {
  const void* x = nullptr;
  const int8_t* qweight = nullptr;
  const int32_t* idx = nullptr;
  const int32_t* count = nullptr;
  int64_t m = 0, n = 0, k = 0, ld = 0;  // ld: row stride of the compact x planes
  uint16_t* xo = nullptr;               // [planes][m, ld]
  int8_t* wo = nullptr;                 // [n, cpad]
  float* partial = nullptr;             // [m, n]
  int min_count = 0;
  OutlierStaging staging;  // the GEMM epilogue's operands, staged when c <= min_count (ld 0: none)
};

// Which phases a launch runs.
enum Phases : int { kGatherPhase = 1, kProductPhase = 2, kBothPhases = 3 };

template <typename XT>
constexpr FloatType float_type_of() {
  if constexpr (std::is_same_v<XT, float>) return FloatType::kF32;
  if constexpr (std::is_same_v<XT, __nv_bfloat16>) return FloatType::kBF16;
  return FloatType::kF16;
}

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

// One gather item: xo[p][r, t] = term p of x[r, idx[t]] (f < m * cpad) or wo[j, t] = qweight[j,
// idx[t]] (the n * cpad items after), 0 for c <= t < cpad = round_up(c, 32).
template <typename XT>
__device__ __forceinline__ void gather_item(const ProductArgs& a, int c, int cpad, int64_t e) {
  const int64_t x_items = a.m * cpad;
  const bool is_x = e < x_items;
  const int64_t f = is_x ? e : e - x_items;
  const int64_t r = f / cpad;
  const int t = static_cast<int>(f - r * cpad);
  int col = t < c ? __ldg(a.idx + t) : -1;
  if (col >= a.k) col = -1;  // malformed list: no contribution, no stray read
  if (!is_x) {
    a.wo[f] = col >= 0 ? __ldg(a.qweight + r * a.k + col) : int8_t{0};
    return;
  }
  const XT* x = static_cast<const XT*>(a.x);
  uint16_t* dst = a.xo + r * a.ld + t;
  if constexpr (std::is_same_v<XT, float>) {
    const float v = col >= 0 ? __ldg(x + r * a.k + col) : 0.0f;
    const __nv_bfloat16 hi = __float2bfloat16_rn(v);
    const float r1 = __fsub_rn(v, __bfloat162float(hi));
    const __nv_bfloat16 mid = __float2bfloat16_rn(r1);
    const float r2 = __fsub_rn(r1, __bfloat162float(mid));
    const bool finite = fabsf(v) <= 3.402823466e38f;  // Inf / NaN: carried by hi alone
    const int64_t plane = a.m * a.ld;
    dst[0] = __bfloat16_as_ushort(hi);
    dst[plane] = finite ? __bfloat16_as_ushort(mid) : uint16_t{0};
    dst[2 * plane] = finite ? __bfloat16_as_ushort(__float2bfloat16_rn(r2)) : uint16_t{0};
  } else {
    *dst = col >= 0 ? __ldg(reinterpret_cast<const uint16_t*>(x) + r * a.k + col) : uint16_t{0};
  }
}

// The whole gather as a grid-wide loop, kGatherUnroll independent items per thread and step (the
// scattered loads are latency-bound).
template <typename XT>
__device__ __forceinline__ void gather(const ProductArgs& a, int c, int64_t thread_id, int64_t threads) {
  const int cpad = (c + BK - 1) / BK * BK;
  const int64_t total = (a.m + a.n) * cpad;
  for (int64_t e0 = thread_id; e0 < total; e0 += kGatherUnroll * threads) {
#pragma unroll
    for (int u = 0; u < kGatherUnroll; ++u) {
      const int64_t e = e0 + u * threads;
      if (e < total) gather_item<XT>(a, c, cpad, e);
    }
  }
}

// ---------------------------------------------------------------- the product

// One 128 x 128 output tile, 8 warps (2 x 4, 64 x 32 warp tiles), K-steps of 32 outlier columns,
// two shared-memory stages: the x tiles come in by cp.async, the weight tile through registers
// (16 compact int8 bytes per thread, converted while stored), both one step ahead of the tensor
// cores. Leaves the shared memory free (ends with a block barrier). The compact operands are
// read with coherent loads: under the cooperative launch this grid wrote them.
template <bool kF16, int kPlanes>
__device__ __forceinline__ void product_tile(const ProductArgs& a, int c, int64_t tile, uint8_t* smem) {
  constexpr int kStageBytes = (kPlanes + 1) * kTileBytes;  // kPlanes x tiles, then the weight tile
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int64_t m = a.m, n = a.n, ld = a.ld;
  const int64_t tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
  int64_t tm, tn;
  grouped_tile(tile, tiles_m, tiles_n, tm, tn);
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
        const uint16_t* src = a.xo + p * plane + (valid ? r : 0) * ld + step * BK + ch * 8;
        cp_async16(smem_addr(sa + swizzle64(row, ch)), src, valid);
      }
    }
    cp_async_commit();
  };
  // The weight tile: this thread's 16 columns half * 16 .. of compact row w_row (one 16-byte load;
  // wo rows are cpad bytes, a multiple of 32).
  const int cpad = steps * BK, w_row = tid >> 1, w_half = tid & 1;
  const bool w_valid = n0 + w_row < n;
  const int4* w_src = reinterpret_cast<const int4*>(a.wo + (w_valid ? n0 + w_row : 0) * cpad + w_half * 16);
  int4 wreg;
  auto load_w = [&](int step) { wreg = w_valid ? w_src[step * (BK / 16)] : make_int4(0, 0, 0, 0); };
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
        float* dst = a.partial + row * n + col;
        const float v0 = acc[i][j][hh * 2], v1 = acc[i][j][hh * 2 + 1];
        if (col + 1 < n && pair_ok) {
          *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
        } else {
          dst[0] = v0;
          if (col + 1 < n) dst[1] = v1;
        }
      }
    }
}

// phases = kBothPhases under a cooperative launch (grid barrier between gather and product);
// kGatherPhase or kProductPhase for the two-launch route. The product tiles are divided over the
// grid (persistent under the cooperative launch, one tile per block otherwise).
template <typename XT>
__global__ void __launch_bounds__(THREADS, 2) outlier_product_kernel(const ProductArgs a, int phases) {
  constexpr bool kF16 = std::is_same_v<XT, __half>;
  constexpr int kPlanes = std::is_same_v<XT, float> ? 3 : 1;
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ int32_t s_idx[kStagingMaxLd];
  const int c = clamped_count(a.count, a.k);
  const int64_t thread_id = static_cast<int64_t>(blockIdx.x) * THREADS + threadIdx.x;
  const int64_t threads = static_cast<int64_t>(gridDim.x) * THREADS;
  if (c <= a.min_count) {  // uniform over the grid: no block reaches the barrier
    if (phases & kGatherPhase)
      stage_outliers(a.staging, a.x, float_type_of<XT>(), a.m, a.k, a.idx, c, s_idx, thread_id, threads);
    return;
  }
  if (phases & kGatherPhase) gather<XT>(a, c, thread_id, threads);
  if (phases == kBothPhases) cooperative_groups::this_grid().sync();
  if (phases & kProductPhase) {
    const int64_t tiles = ((a.m + BM - 1) / BM) * ((a.n + BN - 1) / BN);
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) product_tile<kF16, kPlanes>(a, c, t, smem);
  }
}

template <typename XT>
cudaError_t launch_typed(const ProductArgs& a, int num_sms, cudaStream_t stream) {
  auto kernel = outlier_product_kernel<XT>;
  constexpr int kSmem = 2 * ((std::is_same_v<XT, float> ? 3 : 1) + 1) * kTileBytes;
  JAXINT8_CUDA_RETURN_IF_ERROR(opt_in_dynamic_smem(reinterpret_cast<const void*>(kernel), kSmem));
  const int64_t tiles = ((a.m + BM - 1) / BM) * ((a.n + BN - 1) / BN);
  if (tiles > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  static const int resident = resident_blocks(kernel, THREADS, kSmem);
  const int64_t grid = static_cast<int64_t>(std::max(num_sms, 1)) * resident;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(grid));
  cfg.blockDim = dim3(THREADS);
  cfg.dynamicSmemBytes = kSmem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, a, static_cast<int>(kBothPhases));
  if (err == cudaSuccess) return cudaSuccess;
  // A cooperative launch is refused when the grid cannot be resident at once (e.g. an MPS client
  // limited to part of the SMs): the same phases as two launches.
  (void)cudaGetLastError();
  static std::once_flag warned;
  std::call_once(warned, [err] {
    std::fprintf(stderr,
                 "jaxint8: the outlier product's cooperative launch was refused (%s); running its gather "
                 "and product as two launches instead (the same results, one more launch per prefill "
                 "GEMM).\n",
                 cudaGetErrorString(err));
  });
  const int64_t gather_items = (a.m + a.n) * compact_ld(a.k);
  const int64_t gather_grid = std::clamp<int64_t>((gather_items + THREADS - 1) / THREADS, 1, int64_t{8} * num_sms);
  kernel<<<static_cast<unsigned>(gather_grid), THREADS, kSmem, stream>>>(a, static_cast<int>(kGatherPhase));
  JAXINT8_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  kernel<<<static_cast<unsigned>(std::max<int64_t>(tiles, 1)), THREADS, kSmem, stream>>>(
      a, static_cast<int>(kProductPhase));
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
                                   const OutlierStaging& staging, int num_sms, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0 || p.outlier_count == nullptr) return cudaSuccess;
  ProductArgs a;
  a.x = p.x;
  a.qweight = p.qweight;
  a.idx = p.outlier_idx;
  a.count = p.outlier_count;
  a.m = p.m;
  a.n = p.n;
  a.k = p.k;
  a.ld = compact_ld(p.k);
  a.xo = b.xo;
  a.wo = b.wo;
  a.partial = b.partial;
  a.min_count = min_count;
  a.staging = staging;
  switch (p.x_type) {
    case FloatType::kF32: return launch_typed<float>(a, num_sms, stream);
    case FloatType::kBF16: return launch_typed<__nv_bfloat16>(a, num_sms, stream);
    default: return launch_typed<__half>(a, num_sms, stream);
  }
}

}  // namespace jaxint8::cuda
