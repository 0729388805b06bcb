// CUTLASS 3 (Sm90) int8 GEMM with the LLM.int8() epilogue as an epilogue visitor tree.
// Included once per translation unit, which instantiates one configuration (see gemm_*.cu).
//
// The tree:  LLMInt8Node( ColBroadcast(row_scale), RowBroadcast(scale), RowBroadcast(bias) )
// LLMInt8Node gets the int32 accumulator fragment and the three broadcast fragments, and per epilogue
// subtile computes the outlier rank-k term for the elements this thread owns, from the compact
// operands xo [m, ld] / wo [n, ld] (16-byte loads, 4 outlier columns per step), plus a direct
// gather from x / qweight for outlier columns beyond ld. The arithmetic order is that of the CPU
// handler (xla_ffi/cpu/matmul_cpu.cc) with no fused multiply-adds, so the results match it bit for bit:
//   v = float(acc) * ((rs * cs) * (1/16129));  o = sum_t (x_t * w_t) in order;  v = (v + o) + bias
#pragma once

// CUTLASS's device-side assert() calls make ptxas serialize the wgmma pipeline (warning C7510):
// compile these kernels without them whatever the build type.
#ifndef NDEBUG
#define NDEBUG 1
#endif

#include <cuda_runtime.h>
#include <cstdint>
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/numeric_types.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_visitor_tma_warpspecialized.hpp"
#include "cutlass/epilogue/fusion/sm90_visitor_load_tma_warpspecialized.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"

#include "cuda/sm90/gemm_sm90_configs.h"

namespace jaxint8::cuda::sm90 {

using namespace cute;

struct OutlierParams {
  const float* xo = nullptr;
  const float* wo = nullptr;
  int ld = 0;
  const int32_t* count = nullptr;  // nullptr: no outliers
  const void* x = nullptr;
  int x_type = 1;
  const int32_t* idx = nullptr;
  const int8_t* qweight = nullptr;
  const float* scale = nullptr;
  int64_t k = 0;
  // 0: exact mode, CUDA cores, the CPU handler's operation order (bit-identical results).
  // 1: tensor-core mode: wo holds the integer weights q; the staged columns go through
  //    mma.sync m16n8k8 TF32 with x split in three TF32 terms (x = hi + mid + lo, exact for
  //    finite x; products with q exact), then one multiply by scale/127 per element.
  //    Not bit-identical to the CPU order (differences ~1e-7 of the outlier term's magnitude).
  int mode = 0;
  // Counts above partial_min: the outlier term is partial[i, j] * (scale[j] / 127), partial [m, n]
  // (sum_t x * q) written before by the outlier product (launch_outlier_product); null: never.
  const float* partial = nullptr;
  int partial_min = 0;
};

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// x = hi + mid + lo exactly (finite x), each term a TF32 value.
__device__ __forceinline__ void split3_tf32(float x, uint32_t& hi, uint32_t& mid, uint32_t& lo) {
  hi = to_tf32(x);
  const float r1 = __fsub_rn(x, __uint_as_float(hi));
  mid = to_tf32(r1);
  const float r2 = __fsub_rn(r1, __uint_as_float(mid));
  lo = to_tf32(r2);
  if (!(fabsf(x) <= 3.402823466e38f)) { mid = 0u; lo = 0u; }  // Inf / NaN: carried by hi
}

__device__ __forceinline__ void mma_tf32_16x8x8(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// cs / 127 correctly rounded without the IEEE division's slow-path call (a call inside the kernel
// makes ptxas serialize the wgmma pipeline). One FMA correction step; verified exhaustively against
// IEEE division for every finite non-negative float (and the sign is symmetric).
__device__ __forceinline__ float div127(float a) {
  const float y = 1.0f / 127.0f;
  float q = __fmul_rn(a, y);
  const float r = __fmaf_rn(-q, 127.0f, a);
  return __fmaf_rn(r, y, q);
}

__device__ __forceinline__ float load_x_value(const void* x, int x_type, int64_t i) {
  if (x_type == 0) return __ldg(static_cast<const float*>(x) + i);
  unsigned short bits = __ldg(static_cast<const unsigned short*>(x) + i);
  if (x_type == 1) return __uint_as_float(static_cast<uint32_t>(bits) << 16);  // bf16
  return __half2float(__ushort_as_half(bits));                                  // f16
}

// Compute node of the tree; returns the fragment already converted to ElementD (the collective's
// register type for a custom tree is the accumulator type otherwise). kOutliers=false drops the
// outlier term (the plain fused dequant + bias epilogue).
template <class ElementD, class CtaTileMNK, bool kOutliers, int kStage>
struct LLMInt8Node {
  // The first kStage (0, 4 or 8) compact outlier columns of the tile's rows and columns are staged
  // in shared memory once per output tile (one global-load round trip instead of one per epilogue
  // subtile: the loads were latency-bound). Columns past kStage are read from global memory.
  static constexpr int TM = size<0>(CtaTileMNK{});
  static constexpr int TN = size<1>(CtaTileMNK{});
  static constexpr int kS = kOutliers ? kStage : 0;
  struct SharedStorage {
    alignas(16) float x[kS > 0 ? TM * kS : 4];
    alignas(16) float w[kS > 0 ? TN * kS : 4];
  };
  using Arguments = OutlierParams;
  using Params = OutlierParams;

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const&, Arguments const& args, void*) {
    return args;
  }
  template <class ProblemShape>
  static bool can_implement(ProblemShape const&, Arguments const&) { return true; }
  template <class ProblemShape>
  static size_t get_workspace_size(ProblemShape const&, Arguments const&) { return 0; }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const&, Arguments const&, void*, cudaStream_t,
                                              cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }

  CUTLASS_DEVICE bool is_producer_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_C_load_needed() const { return false; }

  CUTLASS_HOST_DEVICE LLMInt8Node() : params() {}
  CUTLASS_HOST_DEVICE LLMInt8Node(Params const& params, SharedStorage const& ss)
      : params(params), smem_x(const_cast<float*>(ss.x)), smem_w(const_cast<float*>(ss.w)) {
#if defined(__CUDA_ARCH__)
    // Read the outlier count once per CTA, at kernel start (under the first mainloop), instead
    // of once per output tile in front of the staging loads (two dependent round trips). Safe
    // because the kernel is launched in stream order after the gather kernel; with programmatic
    // dependent launch this read would have to move after griddepcontrol.wait.
    if constexpr (kOutliers) {
      // Clamped to [0, k]: a malformed count must not read past the index list.
      if (params.count != nullptr) count = static_cast<int>(min(max(int64_t{*params.count}, int64_t{0}), params.k));
    }
#endif
  }

  Params const params;
  float* smem_x = nullptr;
  float* smem_w = nullptr;
  int count = 0;  // outlier count (device value, read once per CTA)

  template <class... Args>
  CUTLASS_DEVICE auto get_producer_load_callbacks(cutlass::epilogue::fusion::detail::ProducerLoadArgs<Args...> const&) {
    return cutlass::epilogue::fusion::detail::EmptyProducerLoadCallbacks{};
  }

  template <class CTensor, class ThrResidue>
  struct ConsumerStoreCallbacks : cutlass::epilogue::fusion::detail::EmptyConsumerStoreCallbacks {
    // Elements of one epilogue subtile owned by this thread.
    static constexpr int E = decltype(size(take<0, 3>(shape(std::declval<CTensor const&>()))))::value;

    CTensor tCcD;   // (CPY,CPY_M,CPY_N,EPI_M,EPI_N) coordinates relative to this thread's first element
    int m_base, n_base, M, N;
    int m0, n0;     // tile origin
    int tid, nthr;  // epilogue thread index and count
    int cnt;        // outlier count (device value)
    int staged;     // columns staged in smem (0, 4 or 8)
    bool from_partial;  // the outlier term comes from params.partial
    Params const& params;
    float* smem_x;
    float* smem_w;
    float out[kOutliers ? E : 1];

    CUTLASS_DEVICE ConsumerStoreCallbacks(CTensor tCcD_, ThrResidue residue, int M_, int N_, int m0_, int n0_,
                                          int tid_, int nthr_, Params const& params_, float* sx, float* sw,
                                          int cnt_)
        : tCcD(tCcD_), M(M_), N(N_), m0(m0_), n0(n0_), tid(tid_), nthr(nthr_), cnt(cnt_), params(params_),
          smem_x(sx), smem_w(sw) {
      m_base = M_ - static_cast<int>(get<0>(residue));
      n_base = N_ - static_cast<int>(get<1>(residue));
      from_partial = params.partial != nullptr && cnt > params.partial_min;
      staged = from_partial ? 0 : min(min((cnt + 3) & ~3, params.ld), kS);
    }

    // Stage xo[m0 : m0+TM, 0:kS] and wo[n0 : n0+TN, 0:kS] (rows clamped at the edge; columns past
    // `staged` are not read).
    CUTLASS_DEVICE void begin() {
      if constexpr (kS > 0) {
        if (staged <= 0) return;
        constexpr int Q = kS / 4;  // float4 per row
        const int ld = params.ld;
        for (int i = tid; i < (TM + TN) * Q; i += nthr) {
          const int r = i / Q, q = i % Q;
          float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
          if (q * 4 < staged) {
            if (r < TM) v = __ldg(reinterpret_cast<const float4*>(params.xo + static_cast<int64_t>(min(m0 + r, M - 1)) * ld) + q);
            else v = __ldg(reinterpret_cast<const float4*>(params.wo + static_cast<int64_t>(min(n0 + r - TM, N - 1)) * ld) + q);
          }
          if (r < TM) reinterpret_cast<float4*>(smem_x + r * kS)[q] = v;
          else reinterpret_cast<float4*>(smem_w + (r - TM) * kS)[q] = v;
        }
      }
    }

    CUTLASS_DEVICE bool begin_sync_needed() const { return kS > 0 && staged > 0; }

    CUTLASS_DEVICE void begin_loop(int epi_m, int epi_n) {
      if constexpr (kOutliers) {
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < E; ++j) out[j] = 0.0f;
        if (cnt <= 0) return;
        Tensor c = tCcD(_, _, _, epi_m, epi_n);
        int mm[E], nn[E];
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < E; ++j) {
          auto cj = c(j);
          mm[j] = min(m_base + static_cast<int>(get<0>(cj)), M - 1);  // rows/cols past the edge
          nn[j] = min(n_base + static_cast<int>(get<1>(cj)), N - 1);  // are computed, not stored
        }
        if (from_partial) {
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < E; ++j) out[j] = __ldg(params.partial + static_cast<int64_t>(mm[j]) * N + nn[j]);
          return;
        }
        const int ld = params.ld;
        bool staged_done = false;
        if constexpr (kS == 8 && E == 16) {
          // The SM90 accumulator fragment of one epilogue subtile: the warp owns 16 rows x 32
          // columns, the thread rows g, g+8 and columns 2*(lane%4)+{0,1} of each 8-column block.
          // `pattern` compares each element's offset from element 0 with that layout; the offsets
          // are compile-time constants once unrolled, so it folds and the generic loop below is
          // compiled out (keeping it in the binary as dead weight cost 20 % at 4096 tokens).
          auto cz = c(0);
          const int br = static_cast<int>(get<0>(cz)), bc = static_cast<int>(get<1>(cz));
          bool pattern = true;
          int slot[E];  // (column block, row half, column in pair) of element j
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < E; ++j) {
            auto cj = c(j);
            const int dr = static_cast<int>(get<0>(cj)) - br, dc = static_cast<int>(get<1>(cj)) - bc;
            pattern = pattern && (dr == 0 || dr == 8) && dc >= 0 && (dc % 8 == 0 || dc % 8 == 1) && dc / 8 < 4;
            slot[j] = (dc / 8) * 4 + (dr / 8) * 2 + (dc % 8);
          }
          if (pattern) {
            const int lr = m_base - m0 + br, lc = n_base - n0 + bc;  // element 0 inside the tile
            bool tensor = false;
            if (params.mode == 1 && staged > 0) {
              // Tensor cores: the 8 staged columns as four m16n8k8 TF32 products; needs the whole
              // warp on one 16 x 32 block (checked).
              const int lane = static_cast<int>(threadIdx.x & 31), g = lane >> 2, q4 = lane & 3;
              const int row0 = lr - g, col0 = lc - 2 * q4;
              bool ok = row0 >= 0 && row0 + 16 <= TM && col0 >= 0 && col0 + 32 <= TN;
              const int r0s = __shfl_sync(0xffffffffu, row0, 0), c0s = __shfl_sync(0xffffffffu, col0, 0);
              tensor = __all_sync(0xffffffffu, ok && row0 == r0s && col0 == c0s);
              if (tensor) {
                uint32_t ah[4], am[4], al[4];
                const float* xr = smem_x + lr * kS + q4;
                split3_tf32(xr[0], ah[0], am[0], al[0]);
                split3_tf32(xr[8 * kS], ah[1], am[1], al[1]);
                split3_tf32(xr[4], ah[2], am[2], al[2]);
                split3_tf32(xr[8 * kS + 4], ah[3], am[3], al[3]);
                float d[16];
                CUTLASS_PRAGMA_UNROLL
                for (int nb = 0; nb < 4; ++nb) {
                  const float* wr = smem_w + (col0 + 8 * nb + g) * kS + q4;
                  const uint32_t b0 = __float_as_uint(wr[0]), b1 = __float_as_uint(wr[4]);  // integers: exact TF32
                  float dd[4] = {0.f, 0.f, 0.f, 0.f};
                  mma_tf32_16x8x8(dd, al, b0, b1);
                  mma_tf32_16x8x8(dd, am, b0, b1);
                  mma_tf32_16x8x8(dd, ah, b0, b1);
                  CUTLASS_PRAGMA_UNROLL
                  for (int q = 0; q < 4; ++q) d[nb * 4 + q] = dd[q];
                }
                CUTLASS_PRAGMA_UNROLL
                for (int j = 0; j < E; ++j) {
                  float v = 0.f;
                  CUTLASS_PRAGMA_UNROLL
                  for (int sidx = 0; sidx < 16; ++sidx) v = (slot[j] == sidx) ? d[sidx] : v;
                  out[j] = v;
                }
              }
            }
            if (!tensor) {
              // CUDA cores, CPU order (mode 0; mode 1 when the warp check fails: sum of x * q).
              // The 16 elements share 2 rows and 8 columns, so each step of 4 outlier columns
              // loads 2 x and 8 w float4s once (10 shared loads instead of 32: the loop was
              // shared-memory bound), and columns past the count are skipped.
              const float* xr = smem_x + lr * kS;
              const float* wc = smem_w + lc * kS;
              CUTLASS_PRAGMA_UNROLL
              for (int t = 0; t < kS; t += 4) {
                if (t < staged) {
                  const float4 xa = *reinterpret_cast<const float4*>(xr + t);
                  const float4 xb = *reinterpret_cast<const float4*>(xr + 8 * kS + t);
                  float4 w[8];
                  CUTLASS_PRAGMA_UNROLL
                  for (int q = 0; q < 8; ++q) w[q] = *reinterpret_cast<const float4*>(wc + (8 * (q >> 1) + (q & 1)) * kS + t);
                  const int live = min(cnt - t, 4);
                  CUTLASS_PRAGMA_UNROLL
                  for (int j = 0; j < E; ++j) {
                    const float4 xv = (slot[j] & 2) ? xb : xa;
                    const float4 wv = w[(slot[j] >> 2) * 2 + (slot[j] & 1)];
                    float o = out[j];
                    o = __fadd_rn(o, __fmul_rn(xv.x, wv.x));
                    if (live > 1) o = __fadd_rn(o, __fmul_rn(xv.y, wv.y));
                    if (live > 2) o = __fadd_rn(o, __fmul_rn(xv.z, wv.z));
                    if (live > 3) o = __fadd_rn(o, __fmul_rn(xv.w, wv.w));
                    out[j] = o;
                  }
                }
              }
            }
            staged_done = true;
          }
        }
        if constexpr (kS > 0) {
          CUTLASS_PRAGMA_UNROLL
          for (int t = 0; t < kS; t += 4) {
            if (t < staged && !staged_done) {
              CUTLASS_PRAGMA_UNROLL
              for (int j = 0; j < E; ++j) {
                auto cj = c(j);
                const int lr = m_base - m0 + static_cast<int>(get<0>(cj));
                const int lc = n_base - n0 + static_cast<int>(get<1>(cj));
                const float4 xv = *reinterpret_cast<const float4*>(smem_x + lr * kS + t);
                const float4 wv = *reinterpret_cast<const float4*>(smem_w + lc * kS + t);
                float o = out[j];
                o = __fadd_rn(o, __fmul_rn(xv.x, wv.x));
                o = __fadd_rn(o, __fmul_rn(xv.y, wv.y));
                o = __fadd_rn(o, __fmul_rn(xv.z, wv.z));
                o = __fadd_rn(o, __fmul_rn(xv.w, wv.w));
                out[j] = o;
              }
            }
          }
        }
        // Compact part past the staged columns: [staged-or-kS, min(cnt, ld)) rounded up to 4
        // (zero padded by the gather), from global memory.
        const int cc = min((cnt + 3) & ~3, ld);
        const float* __restrict__ xo = params.xo;
        const float* __restrict__ wo = params.wo;
        for (int t = min(kS, ld); t < cc; t += 4) {
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < E; ++j) {
            const float4 xv = __ldg(reinterpret_cast<const float4*>(xo + static_cast<int64_t>(mm[j]) * ld + t));
            const float4 wv = __ldg(reinterpret_cast<const float4*>(wo + static_cast<int64_t>(nn[j]) * ld + t));
            float o = out[j];
            o = __fadd_rn(o, __fmul_rn(xv.x, wv.x));
            o = __fadd_rn(o, __fmul_rn(xv.y, wv.y));
            o = __fadd_rn(o, __fmul_rn(xv.z, wv.z));
            o = __fadd_rn(o, __fmul_rn(xv.w, wv.w));
            out[j] = o;
          }
        }
        // Columns beyond the compact store: gather from x and qweight directly (slow, rare).
        if (cnt > ld) {
          const int64_t k = params.k;
          for (int t = ld; t < cnt; ++t) {
            const int col = __ldg(params.idx + t);
            if (col < 0 || col >= k) continue;  // malformed index: no contribution, no stray read
            CUTLASS_PRAGMA_UNROLL
            for (int j = 0; j < E; ++j) {
              const float xv = load_x_value(params.x, params.x_type, static_cast<int64_t>(mm[j]) * k + col);
              const int8_t q = __ldg(params.qweight + static_cast<int64_t>(nn[j]) * k + col);
              const float wv = params.mode == 1 ? static_cast<float>(q)
                                                : __fmul_rn(static_cast<float>(q), div127(__ldg(params.scale + nn[j])));
              out[j] = __fadd_rn(out[j], __fmul_rn(xv, wv));
            }
          }
        }
      }
    }

    template <typename ElementAccumulator, int FragmentSize>
    CUTLASS_DEVICE cutlass::Array<ElementD, FragmentSize>
    visit(cutlass::Array<ElementAccumulator, FragmentSize> const& frg_acc, int epi_v, int epi_m, int epi_n,
          cutlass::Array<float, FragmentSize> const& frg_rs, cutlass::Array<float, FragmentSize> const& frg_cs,
          cutlass::Array<float, FragmentSize> const& frg_bias) {
      cutlass::Array<float, FragmentSize> r;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < FragmentSize; ++i) {
        const float s = __fmul_rn(__fmul_rn(frg_rs[i], frg_cs[i]), 1.0f / 16129.0f);
        float v = __fmul_rn(static_cast<float>(frg_acc[i]), s);
        if constexpr (kOutliers) {
          float o = out[epi_v * FragmentSize + i];
          if (params.mode == 1 || from_partial) o = __fmul_rn(o, div127(frg_cs[i]));  // sum_t x*q, times scale/127
          v = __fadd_rn(v, o);
        }
        r[i] = __fadd_rn(v, frg_bias[i]);
      }
      return cutlass::NumericArrayConverter<ElementD, float, FragmentSize, cutlass::FloatRoundStyle::round_to_nearest>{}(r);
    }
  };

  template <bool ReferenceSrc, class... Args>
  CUTLASS_DEVICE auto get_consumer_store_callbacks(cutlass::epilogue::fusion::detail::ConsumerStoreArgs<Args...> const& args) {
    auto [M, N, K, L] = args.problem_shape_mnkl;
    auto [mt, nt, kt, lt] = args.tile_coord_mnkl;
    return ConsumerStoreCallbacks<decltype(args.tCcD), decltype(args.residue_tCcD)>(
        args.tCcD, args.residue_tCcD, static_cast<int>(M), static_cast<int>(N), static_cast<int>(mt) * TM,
        static_cast<int>(nt) * TN, args.thread_idx, static_cast<int>(size(args.tiled_mma)), params, smem_x, smem_w, count);
  }
};

// ------------------------------------------------------------------------ kernel assembly

// Cooperative kernels: both warp groups share each tile (mainloop and epilogue).
template <int TM, int TN, int CM, class SchedulerTag = cutlass::gemm::PersistentScheduler>
struct CooperativeConfigT {
  using TileShape = Shape<Int<TM>, Int<TN>, _128>;
  using ClusterShape = Shape<Int<CM>, _1, _1>;
  using KernelSchedule = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
  using EpilogueSchedule = cutlass::epilogue::TmaWarpSpecializedCooperative;
  using Scheduler = SchedulerTag;
};

// m > 512 (the choice among the m > 512 configurations: choose_sm90_tile in dispatch.cu).
using CoopConfig = CooperativeConfigT<128, 256, 2>;
// m > 512 where 160-column tiles fill the last wave better (n = 5120: 32 tiles across instead of 20).
using Coop160Config = CooperativeConfigT<128, 160, 2>;

// Ping-pong kernels: one warp group's epilogue runs under the other's mainloop.
template <int TM, int TN, int CM>
struct PingpongConfigT {
  using TileShape = Shape<Int<TM>, Int<TN>, _128>;
  using ClusterShape = Shape<Int<CM>, _1, _1>;
  using KernelSchedule = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
  using EpilogueSchedule = cutlass::epilogue::TmaWarpSpecialized;
  using Scheduler = cutlass::gemm::PersistentScheduler;
};

// m <= 512.
using PingpongConfig = PingpongConfigT<64, 128, 1>;
// m <= 512 with narrow outputs: twice as many tiles, so that they fill the SMs (16384->4096 at
// 128 tokens: 64 tiles of 64x128 for 132 SMs).
using Pingpong64nConfig = PingpongConfigT<64, 64, 1>;
// m > 512 where 128x256 tiles would leave much of their last wave empty.
using Pingpong128Config = PingpongConfigT<128, 128, 1>;
// m <= 512 where 160-column tiles fill the last wave better (n = 5120 at 512 tokens: 256 tiles,
// 1.94 waves of 132 SMs, instead of 320 tiles of 64x128, 2.42 waves).
using Pingpong160Config = PingpongConfigT<64, 160, 1>;

template <class Config, class ElementD, bool kOutliers>
struct Int8GemmKernel {
  using TileShape = typename Config::TileShape;
  using ClusterShape = typename Config::ClusterShape;
  static constexpr int AlignmentD = 16 / sizeof(ElementD);

  using RowScale = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float, float, Stride<_1, _0, int64_t>, 1>;
  using ColScale = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float, Stride<_0, _1, int64_t>, 4>;
  using Bias = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float, Stride<_0, _1, int64_t>, 4>;
  // f32 output: the D staging buffer is twice as large and staging outliers would cost a mainloop
  // stage on the 128x256 tile, so f32 reads all outlier columns from global memory.
  static constexpr int kStage = sizeof(ElementD) == 4 ? 0 : 8;
  using EVT = cutlass::epilogue::fusion::Sm90EVT<LLMInt8Node<ElementD, TileShape, kOutliers, kStage>, RowScale,
                                                 ColScale, Bias>;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, int32_t, float,
      void, cutlass::layout::RowMajor, AlignmentD,
      ElementD, cutlass::layout::RowMajor, AlignmentD,
      typename Config::EpilogueSchedule, EVT>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      int8_t, cutlass::layout::RowMajor, 16,
      int8_t, cutlass::layout::ColumnMajor, 16,
      int32_t, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      typename Config::KernelSchedule>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                      CollectiveEpilogue, typename Config::Scheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

// The CUTLASS arguments of one call (pointers may be null when only sizes are needed).
template <class Config, class ElementD, bool kOutliers>
typename Int8GemmKernel<Config, ElementD, kOutliers>::Gemm::Arguments make_arguments(const GemmArgs& a) {
  using K = Int8GemmKernel<Config, ElementD, kOutliers>;
  using Gemm = typename K::Gemm;
  using StrideA = typename Gemm::GemmKernel::StrideA;
  using StrideB = typename Gemm::GemmKernel::StrideB;
  using StrideC = typename Gemm::GemmKernel::StrideC;
  using StrideD = typename Gemm::GemmKernel::StrideD;

  const int M = a.m, N = a.n, Kd = a.k;
  // Packed strides (mode 1 is the unit stride in all four: A and B K-major, C/D row-major).
  StrideA stride_a{};
  get<0>(stride_a) = static_cast<int64_t>(Kd);
  get<2>(stride_a) = static_cast<int64_t>(M) * Kd;
  StrideB stride_b{};
  get<0>(stride_b) = static_cast<int64_t>(Kd);
  get<2>(stride_b) = static_cast<int64_t>(N) * Kd;
  StrideC stride_c{};
  get<0>(stride_c) = static_cast<int64_t>(N);
  get<2>(stride_c) = static_cast<int64_t>(M) * N;
  StrideD stride_d = stride_c;

  cutlass::KernelHardwareInfo hw;
  hw.device_id = 0;
  cudaGetDevice(&hw.device_id);
  hw.sm_count = a.sm_count;

  OutlierParams op;
  op.xo = a.xo;
  op.wo = a.wo;
  op.ld = a.ld;
  op.count = a.outlier_count;
  op.x = a.x;
  op.x_type = a.x_type;
  op.idx = a.outlier_idx;
  op.qweight = a.qweight;
  op.scale = a.scale;
  op.k = a.k;
  op.mode = a.outlier_mode;
  op.partial = a.outlier_partial;
  op.partial_min = a.partial_min_count;

  typename Gemm::Arguments args{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {M, N, Kd, 1},
      {a.xq, stride_a, a.qweight, stride_b},
      {{}, nullptr, stride_c, static_cast<ElementD*>(a.y), stride_d},
      hw};
  auto& t = args.epilogue.thread;
  t.op_0 = typename K::RowScale::Arguments{a.row_scale, 0.0f, {_1{}, _0{}, int64_t(0)}};
  t.op_1 = typename K::ColScale::Arguments{a.scale, 0.0f, {_0{}, _1{}, int64_t(0)}};
  t.op_2 = typename K::Bias::Arguments{a.bias, 0.0f, {_0{}, _1{}, int64_t(0)}};
  t.op_3 = op;

  return args;
}

template <class Config, class ElementD, bool kOutliers>
cudaError_t run_int8_gemm(const GemmArgs& a, cudaStream_t stream) {
  using Gemm = typename Int8GemmKernel<Config, ElementD, kOutliers>::Gemm;
  auto args = make_arguments<Config, ElementD, kOutliers>(a);
  Gemm gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
  // The persistent (non-stream-K) schedulers of these configurations need no CUTLASS workspace.
  if (Gemm::get_workspace_size(args) > 0) return cudaErrorNotSupported;
  cutlass::Status st = gemm.initialize(args, nullptr, stream);
  if (st != cutlass::Status::kSuccess) return cudaErrorInvalidValue;
  st = gemm.run(stream);
  if (st != cutlass::Status::kSuccess) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? cudaErrorLaunchFailure : e;
  }
  return cudaGetLastError();
}

}  // namespace jaxint8::cuda::sm90

#define JAXINT8_SM90_DEFINE(name, Config, ElementD, kOutliers)                        \
  namespace jaxint8::cuda::sm90 {                                                     \
  cudaError_t name(const GemmArgs& a, cudaStream_t stream) {                          \
    return run_int8_gemm<Config, ElementD, kOutliers>(a, stream);                     \
  }                                                                                   \
  }
