// Which kernels run for a call: the one place that decides (the kernel files implement them).
//
// m = tokens per batch element, n = out features, k = in features; "aligned" = k % 16 == 0 and
// 16-byte aligned int8 operands. KernelOptions (jaxint8.KernelOptions) forces a choice where the
// shape supports it; this table is the automatic one ("auto"):
//
//  Quantization (fused targets jaxint8_llm_int8_matmul / _group)
//   1  m = 1, one batch element, aligned, the GEMM    one-token GEMV (gemv_token.cu): the kernel
//      takes the decode path                           quantizes the token itself, no quantization
//                                                      kernels [decode: "dp4a"/"mma" turn it off]
//   2  17 <= m, one batch element, k <= 8192,         one cooperative kernel: column pass, row pass
//      m * k <= 128 * 8192, aligned                    and the sm90 outlier staging (quantize.cu)
//                                                      [fused_quant: "always" lifts m * k, "never"]
//   3  otherwise                                      column absmax (skipped at threshold <= 0),
//                                                      then the row pass; on sm_90+ with m <= 16
//                                                      the row pass and the decode GEMM launch
//                                                      early (programmatic dependent launch)
//  GEMM, per batch element [gemm: "skinny" | "tiled" | "sm90"]
//   4  m <= 16, or not aligned                        decode path (weight-streaming):
//        m = 1, aligned, >= 32 MiB of weights in       dp4a GEMV (gemm_gemv.cu) [decode: "dp4a"
//        the launch                                    up to 4 tokens]
//        otherwise                                     mma skinny kernel (gemm_skinny.cu; any shape)
//                                                      [decode: "mma"]
//        a grouped call launches all its weights at once
//   5  sm_90 device with the sm90 library,            CUTLASS wgmma kernel (sm90/gemm_sm90.cu)
//      n % 8 == 0, aligned (int8_gemm_sm90_supported)  [sm90_tile: any of the six below]
//        m <= 512, 2 * tiles(64x128) <= SMs            ping-pong 64x64 (narrow outputs)
//        m <= 512                                      ping-pong 64x128, or 64x160 where its
//                                                      fuller waves outweigh its cost per element
//                                                      (n = 5120: 2 waves instead of 3)
//        m > 512                                       cooperative 128x256, or whichever of
//                                                      cooperative 128x160 / ping-pong 128x128
//                                                      wins by the same measure (~1024 tokens)
//   6  otherwise (aligned)                            tiled mma.sync kernel (gemm_sm80.cu)
//  Outlier columns of the rows 5-6 GEMMs (count c, read on the device) [outliers: "epilogue" | "gemm"]
//   7  c <= 8                                          the GEMM epilogue adds them (CUDA cores, CPU
//                                                      order; ["tensor_epilogue"]: sm90 on the
//                                                      tensor cores)
//      c > 8                                           tensor-core outlier product before the GEMM
//                                                      (outlier_product.cu), the epilogue adds it;
//                                                      at c <= 8 the same launch stages the sm90
//                                                      epilogue's operands
//   (decode GEMMs, row 4: their epilogue, any count; the one-token GEMV of row 1: c <= 8 its
//    epilogue, c > 8 summed from its weight stream; both follow the option too)
//
// Workspace of a call (from XLA, sized by jaxint8/primitives.py): the outlier product's buffers
// (unless outliers = "epilogue"), then the sm90 outlier staging (unless gemm = "tiled").
//
// Measured reasons for the thresholds are in docs/kernels.md and at the constants below.
#include "cuda/dispatch.h"

#include <algorithm>
#include <cstdio>
#include <mutex>

#ifdef JAXINT8_WITH_SM90
#include "cuda/sm90/gemm_sm90.h"
#endif

namespace jaxint8::cuda {
namespace {

constexpr int kMaxDevices = 64;
// Decode sizes: the GEMM streams the weight once (memory-bound).
constexpr int64_t kDecodeMaxTokens = 16;
// The dp4a GEMV by default only at one token and from 32 MiB of weights per launch. H100, 1 token:
// it lost on a 26 MB weight (5120->5120: 14.0 vs 13.2 us) and won from 67 MB up (4096->16384:
// 25.2 vs 26.5).
constexpr int64_t kGemvAutoTokens = 1;
constexpr int64_t kGemvMinWeightBytes = int64_t{32} << 20;
// The fused quantization kernel quantizes each row with one 256-thread block: fewer loads in
// flight than the row pass for wide rows or many tokens. H100, 6 outliers, fused vs chain, us:
// 128 tokens 4096->16384 8.9 vs 12.6, 5120->20480 12.7 vs 15.3, 16384->4096 17.9 vs 15.2 (too
// wide: k > 8192); 512 tokens 4096->16384 17.0 vs 16.7.
constexpr int64_t kFusedQuantMaxRow = 8192;
constexpr int64_t kFusedQuantMaxElements = int64_t{128} * kFusedQuantMaxRow;
// Under the early launch the decode blocks warm L2 with the first 2 KB of each of their weight
// rows (~13 MB over the first wave; H100, 4096->16384 at 1 token: 35.0 -> 31.6 us).
constexpr int kDecodeL2Prefetch = 2048;
// sm90: m <= 512 takes the 64-row ping-pong tiles (5120->20480: 109 vs 120 us at m = 512 against
// the cooperative kernel, 70 vs 92 at m = 256; the other warp group's mainloop hides the outlier
// epilogue); above, the 128x256 cooperative kernel (178 vs 258 us at m = 1024), or a narrower tile
// where its waves are fuller (the costs below).
constexpr int64_t kSm90PingpongMaxM = 512;
// The tile choice weighs each configuration's wave efficiency (wave_efficiency) by its time per
// output element relative to the widest tile of its schedule, fitted on the H100 with 6 outliers
// (wall-clock per layer): 20480->5120 at 512 tokens, 64x160 158.6 us in 2 waves against 64x128
// 169.5 in 3; at 1024 tokens, cooperative 128x160 273.3 (2 waves), ping-pong 128x128 281.6 (3),
// cooperative 128x256 307.4 (2, 61 % filled); at 2048 tokens cooperative 128x256 469.4 (3 waves,
// 81 % filled) against 128x160 515.8 (4 waves, 97 %). The narrower tiles re-read more operand
// bytes per product.
constexpr double kCostPingpong64x160 = 1.12;      // vs ping-pong 64x128
constexpr double kCostPingpong128x128 = 1.22;     // vs cooperative 128x256
constexpr double kCostCooperative128x160 = 1.38;  // vs cooperative 128x256
// Outlier columns the prefill epilogues add themselves (kOrderedOutliers, launch.h); more take
// the tensor-core product (its partial costs one write and one read of an m x n f32 array; the
// epilogue loop costs O(count) per output element).
constexpr int kEpilogueMaxOutliers = kOrderedOutliers;

// The most outlier columns the one-token GEMV sums in ascending order (more: from its weight
// stream). H200, 5120->20480 at 1 token: the ordered gather costs a serial shuffle chain per row
// that grows with the count.
int token_ordered_max(const KernelOptions& o) {
  switch (o.outliers_choice()) {
    case OutliersChoice::kEpilogue: return 1 << 30;  // always ordered
    case OutliersChoice::kGemm: return 0;            // always streamed
    default: return kOrderedOutliers;
  }
}

enum class GemmPath { kDecode, kSm90, kTiled };

size_t float_bytes(FloatType t) { return t == FloatType::kF32 ? 4 : 2; }

bool sm90_supported(const Int8GemmParams& p, const DeviceInfo& dev) {
#ifdef JAXINT8_WITH_SM90
  return dev.cc_major == 9 && int8_gemm_sm90_supported(p);
#else
  (void)p;
  (void)dev;
  return false;
#endif
}

// Rows 4-6 of the table.
GemmPath choose_gemm(const Int8GemmParams& p, const KernelOptions& o, const DeviceInfo& dev) {
  const bool tiled_ok = int8_gemm_tiled_supported(p);
  const bool sm90_ok = sm90_supported(p, dev);
  switch (o.gemm_choice()) {
    case GemmChoice::kSkinny: return GemmPath::kDecode;
    case GemmChoice::kTiled:
      if (tiled_ok) return GemmPath::kTiled;
      break;
    case GemmChoice::kSm90:
      if (sm90_ok) return GemmPath::kSm90;
      break;
    case GemmChoice::kAuto: break;
  }
  if (p.m <= kDecodeMaxTokens || !tiled_ok) return GemmPath::kDecode;
  return sm90_ok ? GemmPath::kSm90 : GemmPath::kTiled;
}

// Row 4: the dp4a GEMV or the mma skinny kernel for one decode launch.
bool use_gemv(const Int8GemmParams* ps, int count, const KernelOptions& o) {
  for (int i = 0; i < count; ++i)
    if (!int8_gemv_supported(ps[i])) return false;
  switch (o.decode_choice()) {
    case DecodeChoice::kDp4a: return true;
    case DecodeChoice::kMma: return false;
    default: break;
  }
  int64_t weight_bytes = 0;
  for (int i = 0; i < count; ++i) weight_bytes += ps[i].n * ps[i].k;
  return ps[0].m <= kGemvAutoTokens && weight_bytes >= kGemvMinWeightBytes;
}

#ifdef JAXINT8_WITH_SM90
// Share of the persistent grid's tile slots that hold output: m * n over (waves * SMs * tile
// area). Both partial edge tiles and a partly filled last wave lower it.
double wave_efficiency(const Int8GemmParams& p, int64_t tm, int64_t tn, int num_sms) {
  const int64_t sms = std::max(num_sms, 1);
  const int64_t tiles = ((p.m + tm - 1) / tm) * ((p.n + tn - 1) / tn);
  const int64_t waves = (tiles + sms - 1) / sms;
  return static_cast<double>(p.m) * static_cast<double>(p.n) / static_cast<double>(waves * sms * tm * tn);
}

// Row 5: the CUTLASS configuration.
Sm90Tile choose_sm90_tile(const Int8GemmParams& p, const KernelOptions& o, int num_sms) {
  switch (o.sm90_tile_choice()) {
    case Sm90TileChoice::kPingpong64x64: return Sm90Tile::kPingpong64x64;
    case Sm90TileChoice::kPingpong64x128: return Sm90Tile::kPingpong64x128;
    case Sm90TileChoice::kPingpong64x160: return Sm90Tile::kPingpong64x160;
    case Sm90TileChoice::kPingpong128x128: return Sm90Tile::kPingpong128x128;
    case Sm90TileChoice::kCooperative128x256: return Sm90Tile::kCooperative128x256;
    case Sm90TileChoice::kCooperative128x160: return Sm90Tile::kCooperative128x160;
    case Sm90TileChoice::kAuto: break;
  }
  auto eff = [&](int64_t tm, int64_t tn) { return wave_efficiency(p, tm, tn, num_sms); };
  if (p.m <= kSm90PingpongMaxM) {
    const int64_t pp_tiles = ((p.m + 63) / 64) * ((p.n + 127) / 128);
    if (2 * pp_tiles <= num_sms) return Sm90Tile::kPingpong64x64;
    return eff(64, 160) / kCostPingpong64x160 > eff(64, 128) ? Sm90Tile::kPingpong64x160 : Sm90Tile::kPingpong64x128;
  }
  const double coop256 = eff(128, 256), pp128 = eff(128, 128) / kCostPingpong128x128,
               coop160 = eff(128, 160) / kCostCooperative128x160;
  if (coop256 >= std::max(pp128, coop160)) return Sm90Tile::kCooperative128x256;
  return coop160 > pp128 ? Sm90Tile::kCooperative128x160 : Sm90Tile::kPingpong128x128;
}
#endif

// Batch element b of a problem whose operands are batch element 0's (contiguous leading dims).
Int8GemmParams batch_params(const Int8GemmParams& p, int64_t b) {
  Int8GemmParams q = p;
  q.xq = p.xq + b * p.m * p.k;
  q.row_scale = p.row_scale + b * p.m;
  q.x = static_cast<const char*>(p.x) + b * p.m * p.k * float_bytes(p.x_type);
  q.outlier_idx = p.outlier_idx + b * p.k;
  q.outlier_count = p.outlier_count + b;
  q.y = static_cast<char*>(p.y) + b * p.m * p.n * float_bytes(p.y_type);
  return q;
}

// Where a prefill GEMM's outlier term comes from, and what it leaves of the workspace for the
// sm90 staging. Returns the outlier product's buffers (partial == nullptr: no product).
OutlierProductBuffers attach_workspace(Int8GemmParams& p, const MatmulCall& call, const KernelOptions& o) {
  p.workspace = call.workspace;
  p.workspace_bytes = call.workspace_bytes;
  const OutliersChoice choice = o.outliers_choice();
  p.outlier_mode = choice == OutliersChoice::kTensorEpilogue ? 1 : 0;
  if (choice == OutliersChoice::kEpilogue || p.outlier_count == nullptr || p.m <= kDecodeMaxTokens) return {};
  const size_t bytes = outlier_product_workspace_bytes(p.m, p.n, p.k, p.x_type);
  if (call.workspace == nullptr || call.workspace_bytes < bytes) return {};
  const OutlierProductBuffers b = outlier_product_buffers(call.workspace, p.m, p.n, p.k, p.x_type);
  p.workspace = static_cast<char*>(call.workspace) + bytes;
  p.workspace_bytes = call.workspace_bytes - bytes;
  p.outlier_partial = b.partial;
  p.partial_min_count = choice == OutliersChoice::kGemm ? 0 : kEpilogueMaxOutliers;
  return b;
}

// One decode launch over `count` weights; pdl: the previous kernel on the stream is the row pass.
cudaError_t launch_decode(const Int8GemmParams* ps, int count, const KernelOptions& o, const DeviceInfo& dev,
                          cudaStream_t stream, bool pdl) {
  Int8GemmParams q[kMaxSkinnyWeights];
  for (int i = 0; i < count; ++i) {
    q[i] = ps[i];
    q[i].l2_prefetch_bytes = pdl ? kDecodeL2Prefetch : 0;
  }
  if (use_gemv(q, count, o)) return launch_int8_gemv_group(q, count, o.gemv_ksplit, dev.num_sms, stream, pdl);
  return launch_int8_gemm_skinny_group(q, count, stream, pdl);
}

// One GEMM problem through rows 4-6.
cudaError_t launch_gemm(const Int8GemmParams& p, const KernelOptions& o, const DeviceInfo& dev, cudaStream_t stream,
                        bool pdl) {
  switch (choose_gemm(p, o, dev)) {
    case GemmPath::kDecode: return launch_decode(&p, 1, o, dev, stream, pdl);
#ifdef JAXINT8_WITH_SM90
    case GemmPath::kSm90: return launch_int8_gemm_sm90(p, choose_sm90_tile(p, o, dev.num_sms), dev.num_sms, stream);
#endif
    default: return launch_int8_gemm_tiled(p, stream);
  }
}

// The GEMMs of a call whose activations are quantized. pdl: the stream's previous kernel is the
// row pass (early launch of the first GEMM); staged: the fused quantization kernel already staged
// the first GEMM's outlier operands.
Status launch_gemms(const MatmulCall& call, const KernelOptions& o, const DeviceInfo& dev, cudaStream_t stream,
                    bool pdl, bool staged) {
  bool all_decode = true;
  for (int i = 0; i < call.count; ++i) all_decode = all_decode && choose_gemm(call.ps[i], o, dev) == GemmPath::kDecode;
  if (all_decode) {  // one launch for all weights per batch element
    for (int64_t b = 0; b < call.nb; ++b) {
      Int8GemmParams ps[kMaxSkinnyWeights];
      for (int i = 0; i < call.count; ++i) ps[i] = batch_params(call.ps[i], b);
      const cudaError_t err = launch_decode(ps, call.count, o, dev, stream, pdl && b == 0);
      if (err != cudaSuccess) return {err, "decode GEMM"};
    }
    return {};
  }
  for (int i = 0; i < call.count; ++i) {
    for (int64_t b = 0; b < call.nb; ++b) {  // batch elements share the workspace, in stream order
      Int8GemmParams p = batch_params(call.ps[i], b);
      const bool first = i == 0 && b == 0;
      p.outliers_staged = staged && first;
      const GemmPath path = choose_gemm(p, o, dev);
      if (path != GemmPath::kDecode) {
        const OutlierProductBuffers product = attach_workspace(p, call, o);
        if (product.partial != nullptr) {
          // The product's launch stages the sm90 epilogue's operands when it has no product to
          // compute (one launch besides the GEMM instead of two).
          OutlierStaging staging;
#ifdef JAXINT8_WITH_SM90
          if (path == GemmPath::kSm90 && !p.outliers_staged) staging = int8_gemm_sm90_outlier_staging(p);
#endif
          const cudaError_t err =
              launch_outlier_product(p, product, p.partial_min_count, staging, dev.num_sms, stream);
          if (err != cudaSuccess) return {err, "outlier product"};
          p.outliers_staged = p.outliers_staged || staging.ld > 0;
        }
      }
      const cudaError_t err = launch_gemm(p, o, dev, stream, pdl && first);
      if (err != cudaSuccess) return {err, "int8 GEMM"};
    }
  }
  return {};
}

// Row 1: the one-token GEMV, when it applies. Returns whether it launched (*status: its result).
bool try_token_gemv(const QuantizeCall& q, const MatmulCall& call, const KernelOptions& o, const DeviceInfo& dev,
                    cudaStream_t stream, Status* status) {
  if (q.nb != 1 || q.m != 1) return false;
  const DecodeChoice decode = o.decode_choice();
  if (decode == DecodeChoice::kDp4a || decode == DecodeChoice::kMma) return false;
  for (int i = 0; i < call.count; ++i)
    if (choose_gemm(call.ps[i], o, dev) != GemmPath::kDecode) return false;
  TokenOutputs out;
  out.threshold = q.threshold;
  out.col_amax = q.col_amax;
  out.xq = q.xq;
  out.row_scale = q.row_scale;
  out.outlier_idx = q.outlier_idx;
  out.outlier_count = q.outlier_count;
  if (!token_gemv_supported(call.ps, call.count, out)) return false;
  const cudaError_t err = launch_token_gemv(call.ps, call.count, out, TokenGemvConfig{o.gemv_ksplit, o.token_loads, token_ordered_max(o)},
                                            dev.num_sms, stream);
  *status = {err, "one-token GEMV"};
  return true;
}

// Row 2: the fused quantization kernel, when it applies. Returns whether it ran; *staged: it
// staged the sm90 outlier operands of `staging`.
bool try_fused_quantization(const QuantizeCall& q, const OutlierStaging& staging, const KernelOptions& o,
                            const DeviceInfo& dev, cudaStream_t stream, bool* staged) {
  const FusedQuantChoice choice = o.fused_quant_choice();
  if (choice == FusedQuantChoice::kNever || q.m <= kDecodeMaxTokens || q.k > kFusedQuantMaxRow) return false;
  if (choice == FusedQuantChoice::kAuto && q.m * q.k > kFusedQuantMaxElements) return false;
  if (!quantize_fused_supported(q.x, q.nb, q.m, q.k, q.col_amax, q.xq)) return false;
  const cudaError_t err = launch_quantize_fused(q.x, q.x_type, q.threshold, q.m, q.k, q.col_amax, q.xq,
                                                q.row_scale, q.outlier_idx, q.outlier_count, staging, dev.num_sms,
                                                stream);
  if (err == cudaSuccess) {
    *staged = staging.ld > 0;
    return true;
  }
  // A cooperative launch is refused when the grid cannot be resident at once (e.g. an MPS client
  // limited to part of the SMs): same results through the two-kernel chain, slower.
  (void)cudaGetLastError();
  static std::once_flag warned;
  std::call_once(warned, [err] {
    std::fprintf(stderr,
                 "jaxint8: the fused quantization kernel could not be launched (%s); using the two-kernel "
                 "quantization instead (slower at 17-512 tokens). jaxint8.KernelOptions(fused_quant=\"never\") "
                 "selects it without this message.\n",
                 cudaGetErrorString(err));
  });
  return false;
}

// Row 3: the quantization chain. Returns the error; *pdl: the decode GEMM may launch early.
Status quantize_chain(const QuantizeCall& q, const DeviceInfo& dev, cudaStream_t stream, bool* pdl) {
  cudaError_t err;
  if (q.threshold > 0.0f) {
    err = launch_column_absmax(q.x, q.x_type, q.nb, q.m, q.k, q.col_amax, dev.num_sms, stream);
  } else {
    err = cudaMemsetAsync(q.col_amax, 0, sizeof(float) * q.nb * q.k, stream);
  }
  if (err != cudaSuccess) return {err, "column absmax"};
  *pdl = dev.cc_major >= 9 && q.m <= kDecodeMaxTokens;
  err = launch_quantize_rows(q.x, q.x_type, q.col_amax, q.threshold, q.nb, q.m, q.k, q.xq, q.row_scale,
                             q.outlier_idx, q.outlier_count, dev.num_sms, stream, *pdl && q.threshold > 0.0f);
  return {err, "quantize rows"};
}

}  // namespace

DeviceInfo device_info() {
  static DeviceInfo cache[kMaxDevices];
  static std::once_flag flags[kMaxDevices];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) return {};
  std::call_once(flags[dev], [dev] {
    DeviceInfo info;
    int l2 = 0;
    cudaDeviceGetAttribute(&info.cc_major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&info.cc_minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaDeviceGetAttribute(&info.num_sms, cudaDevAttrMultiProcessorCount, dev);
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
    if (info.num_sms <= 0) info.num_sms = DeviceInfo{}.num_sms;
    info.l2_bytes = l2;
    cache[dev] = info;
  });
  return cache[dev];
}

Status run_int8_matmul(const MatmulCall& call, const KernelOptions& options, cudaStream_t stream) {
  return launch_gemms(call, options, device_info(), stream, /*pdl=*/false, /*staged=*/false);
}

Status run_llm_int8_matmul(const QuantizeCall& q, const MatmulCall& call, const KernelOptions& options,
                           cudaStream_t stream) {
  const DeviceInfo dev = device_info();
  Status status;
  if (try_token_gemv(q, call, options, dev, stream, &status)) return status;
  OutlierStaging staging;  // a single sm90 GEMM's, for the fused quantization kernel to fill
#ifdef JAXINT8_WITH_SM90
  if (call.count == 1 && call.nb == 1) {
    Int8GemmParams p = call.ps[0];
    attach_workspace(p, call, options);
    if (choose_gemm(p, options, dev) == GemmPath::kSm90) staging = int8_gemm_sm90_outlier_staging(p);
  }
#endif
  bool pdl = false, staged = false;
  if (!try_fused_quantization(q, staging, options, dev, stream, &staged)) {
    status = quantize_chain(q, dev, stream, &pdl);
    if (!status.ok()) return status;
  }
  return launch_gemms(call, options, dev, stream, pdl, staged);
}

}  // namespace jaxint8::cuda
