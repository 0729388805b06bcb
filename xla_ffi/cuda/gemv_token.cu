// Decode GEMV that quantizes its own token: for one token (m = 1, decode at batch 1) the column
// pass, the row pass and the dp4a GEMV of the fused targets in one persistent kernel.
//
// Why: in the three-kernel chain the GEMV launches early (programmatic dependent launch), but
// its first weight loads cover only the first ~17 MB of the weight, while the two quantization
// kernels, each a few dependent L2 round trips stretched by the GEMV's weight stream, take 6-13 us
// before the GEMV may multiply (H100, docs/kernels.md Notes). Here every block quantizes the token
// itself (x is at most a few tens of KB and sits in L2, written by the previous kernel) while its
// first weights stream into L2, so the weight stream never waits on another grid.
//
// Block = 8 warps, as in gemm_gemv.cu: a row group is 8 / KSPLIT weight rows x KSPLIT K slices.
// The grid is persistent (about one wave: as many blocks as fit, divided so that every block
// gets the same number of row groups), so each block pays the quantization once:
//   1. each warp starts its slice of the first row group into L2 (one bulk prefetch);
//   2-4. the block quantizes the token into shared memory (quantize_token, token_quant.cuh:
//      outlier bitmap, row absmax, int8 row, outlier list, and its share of the op's outputs);
//   5. per row group: the next group's first bytes into L2, the dp4a main loop, the slices'
//      partial sums meet in shared memory, the row's first warp adds the outlier term and
//      stores y (TokenRowEpilogue).
// The outlier term: up to `ordered_max` outlier columns, the row's first warp gathers them and
// sums in ascending column order, as the chain and the CPU handler do, so every output equals
// the chain's bit for bit (GPU tests). Above, each lane adds the outlier columns among the weight
// bytes it streams anyway (the token's bitmap in shared memory says which), then the lanes' and
// the slices' sums meet in a fixed tree: no gathered loads at all, so 256 outlier columns cost
// what 8 do; the sum order is this kernel's, within docs/design.md's bound.
#include <algorithm>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/token_quant.cuh"

namespace jaxint8::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
// U: 16-byte weight loads in flight per lane (token_loads). The launch bounds guarantee 4
// resident blocks per SM (64 registers) for U <= 4 and 3 above (up to 85 registers): U = 6
// spilled under the 64-register bound, and without it takes 64 registers for one weight (still 4
// resident blocks) and 74 for a group (3).
constexpr int blocks_per_sm(int u) { return u <= 4 ? 4 : 3; }
constexpr int kMaxBlocksPerSm = 4;  // block slots counted per SM (the occupancy query may give fewer)

// A warp's weight row in row group g (dead past the weight's n).
struct WarpRow {
  const int8_t* wrow;
  int64_t row;
  int weight;  // index into the launch's weights (0 unless grouped)
  bool live;
};

template <int KSPLIT>
__device__ __forceinline__ WarpRow warp_row(const WeightRef* weights, int count, int g, int warp, int64_t k) {
  int weight = 0;
  for (int j = 1; j < count; ++j)
    if (g >= weights[j].first) weight = j;
  const WeightRef& w = weights[weight];
  WarpRow r;
  r.row = static_cast<int64_t>(g - w.first) * (kWarps / KSPLIT) + warp / KSPLIT;
  r.live = r.row < w.n;
  r.wrow = w.qweight + (r.live ? r.row : 0) * k;
  r.weight = weight;
  return r;
}

// How far ahead a warp warms L2 with its next row group: the first 2048 bytes of that group's
// slice. H100, 1 token, 4 loads per
// lane: 4096->16384 24.8 -> 23.3 us, 5120->20480 38.2 -> 36.5 from no look-ahead to 2 KB (with the
// next group's loads moved from before the epilogue to the loop top in the same step); the whole
// slice (5 KB) instead cost 5120->20480 +7 us (the look-ahead no longer fit L2 beside the groups
// being read). docs/kernels.md, "One-token GEMV".
constexpr int kNextGroupPrefetch = 2048;

template <typename T, int KSPLIT, bool GROUPED, int U>
__global__ void __launch_bounds__(kThreads, blocks_per_sm(U))
    token_gemv_kernel(const DecodeArgs args, const TokenOutputs out, int next_prefetch, int ordered_max) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ int32_t partial[2][kWarps];  // double-buffered: group i + 1 never overwrites group i's
  __shared__ float opartial[2][kWarps];   // the slices' streamed outlier sums, likewise
  const int k = static_cast<int>(args.p.k);  // token_gemv_supported: k <= kTokenMaxK
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, slice = warp % KSPLIT;
  __shared__ WeightRef grouped[GROUPED ? kMaxSkinnyWeights : 1];
  WeightRef single;
  const WeightRef* weights = launch_weights<GROUPED>(args, grouped, single);
  const int nweights = GROUPED ? args.weights : 1;
  int groups = 0;  // first_block[weights], by constant indices (no local copy of args)
#pragma unroll
  for (int j = 1; j <= kMaxSkinnyWeights; ++j)
    if (j == args.weights) groups = args.first_block[j];
  const int chunks = (k + kGemvChunk - 1) / kGemvChunk;
  const int c_begin = chunks * slice / KSPLIT, c_end = chunks * (slice + 1) / KSPLIT;
  const int slice_bytes = min(c_end * kGemvChunk, k) - c_begin * kGemvChunk;
  const int lane_k = 16 * lane;
  auto in_range = [&](int c) { return c < c_end && c * kGemvChunk + lane_k < k; };
  // Lane 0 of each warp starts its slice of row group g on its way into L2.
  auto prefetch_group = [&](int g, int max_bytes) {
    if (g >= groups || lane != 0) return;
    const WarpRow r = warp_row<KSPLIT>(weights, nweights, g, warp, k);
    const int bytes = min(slice_bytes, max_bytes) & ~15;
    if (r.live) prefetch_l2(r.wrow + c_begin * kGemvChunk, static_cast<unsigned>(bytes));
  };

  // 1. The first row group's weights stream into L2 while the block quantizes the token.
  int g = blockIdx.x;
  prefetch_group(g, slice_bytes);

  // 2-4. The token (token_quant.cuh).
  const QuantizedToken q = quantize_token<T, kThreads>(static_cast<const T*>(args.p.x), k, out, smem);
  const bool streamed = q.count > ordered_max;  // the same for the whole block

  // 5. The row groups.
  uint4 wv[U];
  auto load_weights = [&](const WarpRow& r, int c0) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      wv[u] = r.live && in_range(c0 + u) ? load_stream(r.wrow + (c0 + u) * kGemvChunk + lane_k)
                                         : make_uint4(0, 0, 0, 0);
  };
  for (int it = 0; g < groups; g += gridDim.x, ++it) {
    const WarpRow r = warp_row<KSPLIT>(weights, nweights, g, warp, k);
    load_weights(r, c_begin);
    prefetch_group(g + gridDim.x, next_prefetch);
    const bool epilogue_warp = r.live && slice == 0;

    TokenRowEpilogue epilogue;
    if (epilogue_warp && !streamed && q.listed()) epilogue.gather(q, r.wrow, args.p.x, args.p.x_type, 0);
    const float cs = streamed && r.live ? weights[r.weight].scale[r.row] : 0.0f;

    int32_t acc = 0;
    float osum = 0.0f;  // streamed outlier columns of this lane
    // The main loop, compiled twice: the ordered path's loop has no flag test between its loads.
    auto main_loop = [&](auto stream_tag) {
      constexpr bool kStream = decltype(stream_tag)::value;
      for (int c0 = c_begin; c0 < c_end; c0 += U) {
        if (c0 != c_begin) load_weights(r, c0);
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (!in_range(c0 + u)) continue;
          const int kk = (c0 + u) * kGemvChunk + lane_k;
          acc = dot16(wv[u], *reinterpret_cast<const uint4*>(q.xs + kk), acc);
          if constexpr (kStream) {
            const unsigned f = *reinterpret_cast<const uint16_t*>(q.flags + (kk >> 3));
            if (f) osum = add_flagged_outliers(osum, wv[u], f, args.p.x, args.p.x_type, kk, cs);
          }
        }
      }
    };
    if (streamed) {
      main_loop(std::true_type{});
    } else {
      main_loop(std::false_type{});
    }
    acc = warp_sum(acc);
    if (streamed) osum = warp_sum(osum);
    if constexpr (KSPLIT > 1) {  // the slices of a row meet in shared memory (int32 exact; floats in slice order)
      if (lane == 0) {
        partial[it & 1][warp] = acc;
        opartial[it & 1][warp] = osum;
      }
      __syncthreads();
      if (slice == 0) {
        int32_t s = 0;
        float o = 0.0f;
#pragma unroll
        for (int h = 0; h < KSPLIT; ++h) {
          s += partial[it & 1][warp + h];
          o = __fadd_rn(o, opartial[it & 1][warp + h]);
        }
        acc = s;
        osum = o;
      }
    }
    if (!epilogue_warp) continue;

    epilogue.finish(q, k, r.wrow, r.row, acc, streamed ? &osum : nullptr, weights[r.weight], args.p);
  }
}

// Resident blocks per SM of `kernel` (at most kMaxBlocksPerSm) with `smem` bytes of dynamic shared
// memory, cached per kernel and size (a model has a few row widths).
int cached_resident_blocks(const void* kernel, int smem) {
  static std::mutex mu;
  static std::vector<std::pair<std::pair<const void*, int>, int>> cache;
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& e : cache)
    if (e.first == std::make_pair(kernel, smem)) return e.second;
  const int blocks = std::min(resident_blocks(kernel, kThreads, smem), kMaxBlocksPerSm);
  cache.push_back({{kernel, smem}, blocks});
  return blocks;
}

template <typename T, int KSPLIT, int U>
cudaError_t launch_split(const Int8GemmParams* ps, int count, const TokenOutputs& out, int ordered_max,
                         int num_sms, cudaStream_t stream) {
  auto kernel = count > 1 ? token_gemv_kernel<T, KSPLIT, true, U> : token_gemv_kernel<T, KSPLIT, false, U>;
  int64_t groups = 0;
  const DecodeArgs a = make_decode_args(ps, count, kWarps / KSPLIT, &groups);
  const int smem = TokenSmem(static_cast<int>(ps[0].k)).bytes();
  if (smem > 48 * 1024)  // k > ~42000; set on every such launch (the setting is per device)
    JAXINT8_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  // About one wave, every block the same number of row groups (at least one block: the
  // quantization outputs are written even without weight rows).
  const int resident = cached_resident_blocks(reinterpret_cast<const void*>(kernel), smem);
  const int64_t slots = static_cast<int64_t>(std::max(num_sms, 1)) * resident;
  const int64_t waves = std::max<int64_t>(1, (groups + slots - 1) / slots);
  const int64_t blocks = std::max<int64_t>(1, (groups + waves - 1) / waves);
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(a, out, kNextGroupPrefetch, ordered_max);
  return cudaGetLastError();
}

// K slices per row: one, unless whole rows leave under half of the block slots with a row group.
// Slices cost a block barrier per row group: H100, 1 token, 20480->5120: 45.6 us with one slice,
// 47.7 with 2, 49.9 with 4.
int choose_ksplit(const Int8GemmParams* ps, int count, int num_sms, int forced) {
  return gemv_ksplit(ps, count, kWarps, static_cast<int64_t>(kMaxBlocksPerSm) * std::max(num_sms, 1) / 2,
                     forced);
}

// Loads in flight per lane with one K slice: `forced` (4 or 6) when given, else 6 for one weight
// and 4 for a group (74 registers at 6: 3 resident blocks instead of 4). H100, 1 token, 4 -> 6 for
// one weight: 5120->20480 35.6 -> 34.6 us, 20480->5120 44.9 -> 43.4, 5120->5120 13.1 -> 12.4;
// 40-layer 13B decode 151.8 -> 154.7 tok/s; a group lost with 6.
int token_loads(int count, int forced) {
  if (forced == 4 || forced == 6) return forced;
  return count > 1 ? 4 : 6;
}

template <typename T>
cudaError_t launch_typed(const Int8GemmParams* ps, int count, const TokenOutputs& out, TokenGemvConfig config,
                         int num_sms, cudaStream_t stream) {
  switch (choose_ksplit(ps, count, num_sms, config.ksplit)) {
    case 4: return launch_split<T, 4, 4>(ps, count, out, config.ordered_max, num_sms, stream);
    case 2: return launch_split<T, 2, 4>(ps, count, out, config.ordered_max, num_sms, stream);
    default:
      return token_loads(count, config.loads) == 6 ? launch_split<T, 1, 6>(ps, count, out, config.ordered_max, num_sms, stream)
                                                   : launch_split<T, 1, 4>(ps, count, out, config.ordered_max, num_sms, stream);
  }
}

}  // namespace

bool token_gemv_supported(const Int8GemmParams* ps, int count, const TokenOutputs& out) {
  auto aligned = [](const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  if (count < 1 || count > kMaxSkinnyWeights) return false;
  const Int8GemmParams& p = ps[0];
  if (p.m != 1 || p.k < 16 || p.k > kTokenMaxK || !aligned(p.x, 16) || !aligned(out.xq, 16)) return false;
  for (int i = 0; i < count; ++i)
    if (!same_activations(p, ps[i]) || !int8_gemv_supported(ps[i])) return false;
  return true;
}

cudaError_t launch_token_gemv(const Int8GemmParams* ps, int count, const TokenOutputs& out,
                              TokenGemvConfig config, int num_sms, cudaStream_t stream) {
  if (!token_gemv_supported(ps, count, out)) return cudaErrorInvalidValue;
  switch (ps[0].x_type) {
    case FloatType::kF32: return launch_typed<float>(ps, count, out, config, num_sms, stream);
    case FloatType::kBF16: return launch_typed<__nv_bfloat16>(ps, count, out, config, num_sms, stream);
    default: return launch_typed<__half>(ps, count, out, config, num_sms, stream);
  }
}

}  // namespace jaxint8::cuda
