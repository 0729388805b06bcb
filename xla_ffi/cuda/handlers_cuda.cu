// CUDA FFI handlers: same targets, buffers and attributes as the CPU handlers
// (cpu/quantize_cpu.cc, cpu/matmul_cpu.cc); no host synchronisation, the outlier count stays
// on the device.
//
// GEMM dispatch (per batch element, m = tokens, n = out features, k = in features):
//   0. fused targets, x [1, h], aligned          -> quantization + dp4a GEMV in one kernel
//                                                  (gemv_token.cu, TryTokenGemv)
//   1. m <= 16                                  -> decode GEMM (launch_int8_gemm_skinny): the
//                                                  dp4a GEMV (gemm_gemv.cu) at m = 1 with aligned
//                                                  rows and >= 32 MiB of weights, else the mma skinny kernel
//                                                  (gemm_skinny.cu); weight-streaming, memory-bound.
//   2. sm_90 device, JAXINT8_WITH_SM90 built,
//      int8_gemm_sm90_supported(p)              -> CUTLASS 3 wgmma kernel (sm90/gemm_sm90.h).
//   3. k % 16 == 0, 16-byte aligned operands    -> tiled mma.sync kernel (gemm_sm80.cu).
//   4. anything else (odd k, unaligned)         -> skinny kernel, 16 tokens per grid row
//                                                  (correct for every shape, not fast).
// JAXINT8_GEMM_PATH=skinny|tiled|sm90 (environment, read once) forces a path where it is
// supported, for tests and benchmarks. In the fused target on sm_90+ with m <= 16, the row pass and
// the skinny GEMM are programmatic dependent launches; for small prefills both quantization passes
// and the sm90 outlier gather are one cooperative kernel (see QuantizeForMatmul).
//
// jaxint8_llm_int8_matmul runs the three handlers in one custom call (the single-device path
// of jaxint8.llm_int8_matmul): each FFI call costs ~13-20 us of host overhead on jax 0.11.2,
// more than a decode step's quantization kernels. All four handlers are marked command-buffer
// compatible: their host code depends only on shapes, pointers and the device (never on data),
// so XLA may record them into CUDA graphs. Under capture the matmul makes no stream-ordered
// allocation (see persistent_workspace).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "common.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "handlers.h"

#ifdef JAXINT8_WITH_SM90
#include "cuda/sm90/gemm_sm90.h"
#endif

namespace jaxint8::cuda {
namespace {

constexpr int kMaxDevices = 64;
constexpr int64_t kSkinnyMaxTokens = 16;

struct DeviceInfo {
  int num_sms = 0;
  int cc_major = 0;
};

DeviceInfo device_info() {
  static DeviceInfo cache[kMaxDevices];
  static std::once_flag flags[kMaxDevices];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) return {132, 0};
  std::call_once(flags[dev], [dev] {
    DeviceInfo info;
    cudaDeviceGetAttribute(&info.num_sms, cudaDevAttrMultiProcessorCount, dev);
    cudaDeviceGetAttribute(&info.cc_major, cudaDevAttrComputeCapabilityMajor, dev);
    if (info.num_sms <= 0) info.num_sms = 132;
    cache[dev] = info;
  });
  return cache[dev];
}

// Integer value of an environment variable (tuning and A/B knobs), `fallback` when unset.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

enum class ForcedPath { kNone, kSkinny, kTiled, kSm90 };

ForcedPath forced_path() {
  static const ForcedPath path = [] {
    const char* v = std::getenv("JAXINT8_GEMM_PATH");
    if (!v) return ForcedPath::kNone;
    if (!std::strcmp(v, "skinny")) return ForcedPath::kSkinny;
    if (!std::strcmp(v, "tiled")) return ForcedPath::kTiled;
    if (!std::strcmp(v, "sm90")) return ForcedPath::kSm90;
    return ForcedPath::kNone;
  }();
  return path;
}

// Device workspace that outlives the call, one per device, grown on demand (never shrunk; a
// replaced buffer is kept alive because CUDA graphs recorded earlier may still use it).
// XLA's FFI ScratchAllocator returned no memory on jax 0.11.2, and a stream-ordered
// cudaMallocAsync cannot be used while XLA records the call into a CUDA graph (graphs with
// memory nodes cannot be nested), so the buffer comes from cudaMalloc, with the calling
// thread's capture mode relaxed for that call. Growing is the only host-synchronising step and
// happens once per larger shape. The kernels that use it run in stream order on XLA's compute
// stream, so calls on one device never use it concurrently.
[[maybe_unused]] void* persistent_workspace(size_t bytes) {
  static std::mutex mu;
  static void* buf[kMaxDevices] = {};
  static size_t cap[kMaxDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) return nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (cap[dev] >= bytes) return buf[dev];
  const size_t want = std::max(bytes, 2 * cap[dev]);
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, want);
  cudaThreadExchangeStreamCaptureMode(&mode);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  buf[dev] = p;  // the previous buffer is intentionally not freed (see above)
  cap[dev] = want;
  return p;
}

ffi::Error cuda_error(cudaError_t e, const char* what) {
  return ffi::Error::Internal(std::string("jaxint8 CUDA ") + what + ": " + cudaGetErrorString(e));
}

FloatType float_type(ffi::DataType t) {
  switch (t) {
    case ffi::DataType::F32: return FloatType::kF32;
    case ffi::DataType::BF16: return FloatType::kBF16;
    default: return FloatType::kF16;
  }
}

size_t float_bytes(FloatType t) { return t == FloatType::kF32 ? 4 : 2; }

enum class GemmPath { kSkinny, kSm90, kTiled };

// The dispatch documented at the top of the file, for one GEMM problem.
GemmPath choose_path(const Int8GemmParams& p, const DeviceInfo& dev) {
  const ForcedPath forced = forced_path();
  const bool tiled_ok = int8_gemm_tiled_supported(p);
#ifdef JAXINT8_WITH_SM90
  const bool sm90_ok = dev.cc_major == 9 && int8_gemm_sm90_supported(p);
#else
  const bool sm90_ok = false;
  (void)dev;
#endif
  if (forced == ForcedPath::kSkinny) return GemmPath::kSkinny;
  if (forced == ForcedPath::kTiled && tiled_ok) return GemmPath::kTiled;
  if (forced == ForcedPath::kSm90 && sm90_ok) return GemmPath::kSm90;
  if (p.m <= kSkinnyMaxTokens || !tiled_ok) return GemmPath::kSkinny;
  return sm90_ok ? GemmPath::kSm90 : GemmPath::kTiled;
}

// Under the early launch the skinny blocks warm L2 with the first 2 KB of each of their weight
// rows (~13 MB over the first wave; measured: 4096->16384 at 1 token 35.0 -> 31.6 us, vs 0 bytes).
// JAXINT8_L2_PREFETCH=<bytes> (environment, read once) overrides it, for measurements.
int skinny_l2_prefetch(bool pdl) {
  static const int prefetch = env_int("JAXINT8_L2_PREFETCH", 2048);
  return pdl ? prefetch : 0;
}

// One GEMM problem through the dispatch. pdl: the previous kernel on the stream is the row pass,
// which lets the skinny GEMM launch early.
cudaError_t run_gemm(const Int8GemmParams& p, const DeviceInfo& dev, cudaStream_t stream, bool pdl) {
  switch (choose_path(p, dev)) {
    case GemmPath::kSkinny: {
      Int8GemmParams q = p;
      q.l2_prefetch_bytes = skinny_l2_prefetch(pdl);
      return launch_int8_gemm_skinny(q, dev.num_sms, stream, pdl);
    }
#ifdef JAXINT8_WITH_SM90
    case GemmPath::kSm90: return launch_int8_gemm_sm90(p, stream);
#endif
    default: return launch_int8_gemm_tiled(p, dev.num_sms, stream);
  }
}

ffi::Error ColumnAbsmax(cudaStream_t stream, ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> col_amax) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_column_absmax(x, *col_amax, &sh));
  const DeviceInfo dev = device_info();
  cudaError_t err = launch_column_absmax(x.untyped_data(), float_type(x.element_type()), sh.nb,
                                         sh.s, sh.h, col_amax->typed_data<float>(), dev.num_sms, stream);
  if (err != cudaSuccess) return cuda_error(err, "column_absmax");
  return ffi::Error::Success();
}

// The row pass on buffers already checked by check_quantize_rows (shape sh); pdl: the previous
// kernel on the stream is the column pass (early launch).
ffi::Error QuantizeRowsImpl(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer col_amax,
                            ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                            ffi::Result<ffi::AnyBuffer> outlier_idx,
                            ffi::Result<ffi::AnyBuffer> outlier_count, float threshold, bool pdl,
                            const ActivationShape& sh) {
  cudaError_t err = launch_quantize_rows(
      x.untyped_data(), float_type(x.element_type()), col_amax.typed_data<float>(), threshold,
      sh.nb, sh.s, sh.h, xq->typed_data<int8_t>(), row_scale->typed_data<float>(),
      outlier_idx->typed_data<int32_t>(), outlier_count->typed_data<int32_t>(),
      device_info().num_sms, stream, pdl);
  if (err != cudaSuccess) return cuda_error(err, "quantize_rows");
  return ffi::Error::Success();
}

ffi::Error QuantizeRows(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer col_amax,
                        ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                        ffi::Result<ffi::AnyBuffer> outlier_idx,
                        ffi::Result<ffi::AnyBuffer> outlier_count, float threshold) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_quantize_rows(x, col_amax, *xq, *row_scale, *outlier_idx,
                                              *outlier_count, &sh));
  return QuantizeRowsImpl(stream, x, col_amax, xq, row_scale, outlier_idx, outlier_count, threshold,
                          /*pdl=*/false, sh);
}

// The matmul target's buffers (the fused targets' intermediate results among them).
struct MatmulBuffers {
  ffi::AnyBuffer xq, row_scale, x, outlier_idx, outlier_count, wq, w_scale, bias, y;
};

// The checked shapes of a matmul call and the workspace of its sm90 GEMMs.
struct MatmulPlan {
  ActivationShape sh;
  int64_t o = 0;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// The GEMM problem of batch element b (buffers already checked by check_int8_matmul).
Int8GemmParams gemm_params(const MatmulBuffers& m, const MatmulPlan& plan, int64_t b) {
  const ActivationShape& sh = plan.sh;
  const FloatType xt = float_type(m.x.element_type()), yt = float_type(m.y.element_type());
  Int8GemmParams p;
  p.m = sh.s;
  p.n = plan.o;
  p.k = sh.h;
  p.xq = m.xq.typed_data<int8_t>() + b * sh.s * sh.h;
  p.wq = m.wq.typed_data<int8_t>();
  p.row_scale = m.row_scale.typed_data<float>() + b * sh.s;
  p.col_scale = m.w_scale.typed_data<float>();
  p.bias = m.bias.element_count() ? m.bias.typed_data<float>() : nullptr;
  p.x = static_cast<const char*>(m.x.untyped_data()) + b * sh.s * sh.h * float_bytes(xt);
  p.x_type = xt;
  p.outlier_idx = m.outlier_idx.typed_data<int32_t>() + b * sh.h;
  p.outlier_count = m.outlier_count.typed_data<int32_t>() + b;
  p.y = static_cast<char*>(m.y.untyped_data()) + b * sh.s * plan.o * float_bytes(yt);
  p.y_type = yt;
  p.workspace = plan.workspace;
  p.workspace_bytes = plan.workspace_bytes;
  return p;
}

// Checks the matmul buffers (shapes into *plan).
ffi::Error CheckInt8Matmul(const MatmulBuffers& m, MatmulPlan* plan) {
  return check_int8_matmul(m.xq, m.row_scale, m.x, m.outlier_idx, m.outlier_count, m.wq, m.w_scale,
                           m.bias, m.y, &plan->sh, &plan->o);
}

// The workspace of the sm90 path (compact outlier operands) for a checked plan. The batch
// elements run one after the other on one stream, so they share it. Without it the sm90 path is
// still correct, but reads the outliers directly from x / wq (measured 3-8x slower GEMM with 6
// outliers).
void AllocateSm90Workspace(ffi::ScratchAllocator& scratch, MatmulPlan* plan) {
#ifdef JAXINT8_WITH_SM90
  const DeviceInfo dev = device_info();
  if (dev.cc_major == 9 && plan->sh.s > kSkinnyMaxTokens && forced_path() != ForcedPath::kTiled &&
      forced_path() != ForcedPath::kSkinny) {
    const size_t want = int8_gemm_sm90_workspace_bytes(plan->sh.s, plan->o, plan->sh.h);
    if (want > 0) {
      const char* source = "XLA scratch";
      if (auto mem = scratch.Allocate(want, 256); mem.has_value() && *mem != nullptr) {
        plan->workspace = *mem;
      } else {
        plan->workspace = persistent_workspace(want);
        source = plan->workspace ? "persistent buffer" : "none";
      }
      plan->workspace_bytes = plan->workspace ? want : 0;
      static bool logged = false;
      if (!logged && std::getenv("JAXINT8_DEBUG")) {
        logged = true;
        std::fprintf(stderr, "jaxint8: sm90 workspace %zu bytes via %s\n", want, source);
      }
    }
  }
#else
  (void)scratch;
  (void)plan;
#endif
}

ffi::Error PlanInt8Matmul(ffi::ScratchAllocator& scratch, const MatmulBuffers& m, MatmulPlan* plan) {
  JAXINT8_RETURN_IF_ERROR(CheckInt8Matmul(m, plan));
  AllocateSm90Workspace(scratch, plan);
  return ffi::Error::Success();
}

// The GEMMs of a planned matmul. pdl: the stream's previous kernel is the row pass (early
// launch); staged: the fused quantization kernel already staged batch element 0's outliers.
ffi::Error LaunchInt8Matmul(cudaStream_t stream, const MatmulBuffers& m, const MatmulPlan& plan,
                            bool pdl, bool staged) {
  const DeviceInfo dev = device_info();
  for (int64_t b = 0; b < plan.sh.nb; ++b) {
    Int8GemmParams p = gemm_params(m, plan, b);
    p.outliers_staged = staged && b == 0;
    cudaError_t err = run_gemm(p, dev, stream, pdl && b == 0);
    if (err != cudaSuccess) return cuda_error(err, "int8_matmul");
  }
  return ffi::Error::Success();
}

ffi::Error Int8Matmul(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer xq, ffi::AnyBuffer row_scale,
                      ffi::AnyBuffer x, ffi::AnyBuffer outlier_idx, ffi::AnyBuffer outlier_count,
                      ffi::AnyBuffer wq, ffi::AnyBuffer w_scale, ffi::AnyBuffer bias,
                      ffi::Result<ffi::AnyBuffer> y) {
  const MatmulBuffers m{xq, row_scale, x, outlier_idx, outlier_count, wq, w_scale, bias, *y};
  MatmulPlan plan;
  JAXINT8_RETURN_IF_ERROR(PlanInt8Matmul(scratch, m, &plan));
  return LaunchInt8Matmul(stream, m, plan, /*pdl=*/false, /*staged=*/false);
}

// The fused quantization kernel runs for 17+ tokens on rows of at most kFusedQuantMaxRow
// elements, up to fused_quant_max_elements() per call; the chain (column pass, row pass, gather)
// otherwise. The single kernel saves launch and drain latency where the activation is small, but
// quantizes each row with one 256-thread block, fewer loads in flight than the row pass has for
// wide rows or many tokens. H100, 6 outliers, fused vs chain, µs (2026-11-25, tenth session):
// 128 tokens 4096->16384 8.9 vs 12.6, 5120->20480 12.7 vs 15.3, 16384->4096 17.9 vs 15.2;
// 512 tokens 4096->16384 17.0 vs 16.7, 5120->20480 21.1 vs 20.0. JAXINT8_FUSED_QUANT=<elements>
// (environment, read once) overrides the element limit, 0 turns the kernel off.
constexpr int64_t kFusedQuantMaxRow = 8192;
int64_t fused_quant_max_elements() {
  static const int64_t v = [] {
    const char* e = std::getenv("JAXINT8_FUSED_QUANT");
    return e ? std::atoll(e) : int64_t{128} * kFusedQuantMaxRow;
  }();
  return v;
}

// Both quantization passes of the fused targets (the column pass skipped, col_amax zero, when
// threshold <= 0), on buffers already checked by check_quantize_rows (shape sh). For small
// prefills (one batch element, more than kSkinnyMaxTokens tokens, aligned rows, see
// fused_quant_max_elements) they run as one cooperative kernel; when `staging`
// is given (ld > 0) that kernel also stages the sm90 GEMM's outlier operands and *staged is
// set. Sets *pdl when the GEMM that follows may launch early: for decode-sized inputs on Hopper
// the kernels are chained with programmatic dependent launch (each launches while the previous
// one runs and waits for its results on the device), so the launch gaps and the GEMM's first
// weight loads overlap the quantization. JAXINT8_PDL=0 (environment, read once) turns this off,
// for measurements.
ffi::Error QuantizeForMatmul(cudaStream_t stream, ffi::AnyBuffer x,
                             ffi::Result<ffi::AnyBuffer> col_amax, ffi::Result<ffi::AnyBuffer> xq,
                             ffi::Result<ffi::AnyBuffer> row_scale,
                             ffi::Result<ffi::AnyBuffer> outlier_idx,
                             ffi::Result<ffi::AnyBuffer> outlier_count, float threshold,
                             const ActivationShape& sh, const OutlierStaging& staging, bool* pdl,
                             bool* staged) {
  const DeviceInfo dev = device_info();
  *pdl = false;
  *staged = false;
  if (sh.s > kSkinnyMaxTokens && sh.h <= kFusedQuantMaxRow &&
      sh.s * sh.h <= fused_quant_max_elements() &&
      quantize_fused_supported(x.untyped_data(), sh.nb, sh.s, sh.h, col_amax->typed_data<float>(),
                               xq->typed_data<int8_t>())) {
    cudaError_t err = launch_quantize_fused(
        x.untyped_data(), float_type(x.element_type()), threshold, sh.s, sh.h,
        col_amax->typed_data<float>(), xq->typed_data<int8_t>(), row_scale->typed_data<float>(),
        outlier_idx->typed_data<int32_t>(), outlier_count->typed_data<int32_t>(), staging,
        dev.num_sms, stream);
    if (err == cudaSuccess) {
      *staged = staging.ld > 0;
      return ffi::Error::Success();
    }
    // A cooperative launch is refused when the grid cannot be resident at once (e.g. an MPS
    // client limited to part of the SMs): same results through the two-kernel chain, slower.
    (void)cudaGetLastError();
    static std::once_flag warned;
    std::call_once(warned, [err] {
      std::fprintf(stderr,
                   "jaxint8: the fused quantization kernel could not be launched (%s); using the "
                   "two-kernel quantization instead (slower at 17-512 tokens). "
                   "JAXINT8_FUSED_QUANT=0 selects it without this message.\n",
                   cudaGetErrorString(err));
    });
  }
  if (threshold > 0.0f) {
    cudaError_t err = launch_column_absmax(x.untyped_data(), float_type(x.element_type()), sh.nb,
                                           sh.s, sh.h, col_amax->typed_data<float>(), dev.num_sms,
                                           stream);
    if (err != cudaSuccess) return cuda_error(err, "column_absmax");
  } else {
    cudaError_t err = cudaMemsetAsync(col_amax->untyped_data(), 0,
                                      col_amax->element_count() * sizeof(float), stream);
    if (err != cudaSuccess) return cuda_error(err, "llm_int8_matmul (memset)");
  }
  static const bool pdl_on = env_int("JAXINT8_PDL", 1) != 0;
  *pdl = pdl_on && dev.cc_major >= 9 && sh.s <= kSkinnyMaxTokens;
  return QuantizeRowsImpl(stream, x, *col_amax, xq, row_scale, outlier_idx, outlier_count,
                          threshold, *pdl && threshold > 0.0f, sh);
}

// Decode at one token (x [1, h], the fused targets): quantization and GEMV in one persistent
// kernel (gemv_token.cu) where the chain would take the decode GEMM path, unless
// JAXINT8_DECODE_KERNEL=mma forces the mma kernel. The column pass, the row pass and their two
// hand-offs then leave the weight stream's critical path (H100, 40-layer 13B decode at batch 1:
// 146.4 -> 151.0 tok/s). Same outputs bit for bit. Returns whether it launched; *err is then its
// result. JAXINT8_TOKEN_GEMV=0 (environment, read once) keeps the chain, for measurements.
bool TryTokenGemv(cudaStream_t stream, ffi::Result<ffi::AnyBuffer> col_amax,
                  ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                  ffi::Result<ffi::AnyBuffer> outlier_idx, ffi::Result<ffi::AnyBuffer> outlier_count,
                  float threshold, const ActivationShape& sh, const Int8GemmParams* ps, int count,
                  ffi::Error* err) {
  static const bool enabled = env_int("JAXINT8_TOKEN_GEMV", 1) != 0;
  if (!enabled || sh.nb != 1 || sh.s != 1) return false;
  const DeviceInfo dev = device_info();
  for (int i = 0; i < count; ++i)
    if (choose_path(ps[i], dev) != GemmPath::kSkinny) return false;
  TokenOutputs out;
  out.threshold = threshold;
  out.col_amax = col_amax->typed_data<float>();
  out.xq = xq->typed_data<int8_t>();
  out.row_scale = row_scale->typed_data<float>();
  out.outlier_idx = outlier_idx->typed_data<int32_t>();
  out.outlier_count = outlier_count->typed_data<int32_t>();
  if (forced_decode_kernel() == DecodeKernel::kMma || !token_gemv_supported(ps, count, out)) return false;
  const cudaError_t e = launch_token_gemv(ps, count, out, dev.num_sms, stream);
  *err = e == cudaSuccess ? ffi::Error::Success() : cuda_error(e, "token_gemv");
  return true;
}

// The three handlers above in one custom call (one FFI call overhead instead of three).
ffi::Error LlmInt8Matmul(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer x,
                         ffi::AnyBuffer wq, ffi::AnyBuffer w_scale, ffi::AnyBuffer bias,
                         ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> col_amax,
                         ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                         ffi::Result<ffi::AnyBuffer> outlier_idx,
                         ffi::Result<ffi::AnyBuffer> outlier_count, float threshold) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_quantize_rows(x, *col_amax, *xq, *row_scale, *outlier_idx,
                                              *outlier_count, &sh));
  const MatmulBuffers m{*xq, *row_scale, x, *outlier_idx, *outlier_count, wq, w_scale, bias, *y};
  MatmulPlan plan;
  JAXINT8_RETURN_IF_ERROR(PlanInt8Matmul(scratch, m, &plan));
  {  // TryTokenGemv checks the shape (one token, one batch element) and the path itself
    const Int8GemmParams p = gemm_params(m, plan, 0);
    ffi::Error err = ffi::Error::Success();
    if (TryTokenGemv(stream, col_amax, xq, row_scale, outlier_idx, outlier_count, threshold, sh, &p,
                     1, &err))
      return err;
  }
  OutlierStaging staging;  // the sm90 GEMM's, for the fused quantization kernel to fill
#ifdef JAXINT8_WITH_SM90
  {  // TryTokenGemv checks the shape (one token, one batch element) and the path itself
    const Int8GemmParams p = gemm_params(m, plan, 0);
    if (choose_path(p, device_info()) == GemmPath::kSm90) staging = int8_gemm_sm90_outlier_staging(p);
  }
#endif
  bool pdl = false, staged = false;
  JAXINT8_RETURN_IF_ERROR(QuantizeForMatmul(stream, x, col_amax, xq, row_scale, outlier_idx,
                                            outlier_count, threshold, sh, staging, &pdl, &staged));
  return LaunchInt8Matmul(stream, m, plan, pdl, staged);
}

// One quantization of x for several weights. When every weight's GEMM takes the skinny path
// (decode), all of them run as one launch per batch element (launch_int8_gemm_skinny_group:
// one grid over the weights' rows, so small projections such as q/k/v fill the GPU together);
// otherwise one GEMM per weight, as in LlmInt8Matmul (each with its own outlier gather). Results
// are those of LlmInt8Matmul per weight, bit for bit.
ffi::Error LlmInt8MatmulGroup(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer x,
                              ffi::Result<ffi::AnyBuffer> col_amax, ffi::Result<ffi::AnyBuffer> xq,
                              ffi::Result<ffi::AnyBuffer> row_scale,
                              ffi::Result<ffi::AnyBuffer> outlier_idx,
                              ffi::Result<ffi::AnyBuffer> outlier_count, ffi::RemainingArgs weights,
                              ffi::RemainingRets ys, float threshold) {
  size_t groups = 0;
  GroupWeights w;
  JAXINT8_RETURN_IF_ERROR(decode_group(weights, ys, w, &groups));
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_quantize_rows(x, *col_amax, *xq, *row_scale, *outlier_idx,
                                              *outlier_count, &sh));
  const DeviceInfo dev = device_info();
  std::optional<MatmulBuffers> m[kMaxGroupWeights];
  MatmulPlan plans[kMaxGroupWeights];
  Int8GemmParams ps[kMaxGroupWeights];
  bool all_skinny = true;
  for (size_t g = 0; g < groups; ++g) {
    m[g].emplace(MatmulBuffers{*xq, *row_scale, x, *outlier_idx, *outlier_count, w[g]->wq,
                               w[g]->w_scale, w[g]->bias, *w[g]->y});
    JAXINT8_RETURN_IF_ERROR(CheckInt8Matmul(*m[g], &plans[g]));
    ps[g] = gemm_params(*m[g], plans[g], 0);
    all_skinny = all_skinny && choose_path(ps[g], dev) == GemmPath::kSkinny;
  }
  ffi::Error token_err = ffi::Error::Success();
  if (TryTokenGemv(stream, col_amax, xq, row_scale, outlier_idx, outlier_count, threshold, sh, ps,
                   static_cast<int>(groups), &token_err))
    return token_err;
  bool pdl = false, staged = false;
  JAXINT8_RETURN_IF_ERROR(QuantizeForMatmul(stream, x, col_amax, xq, row_scale, outlier_idx,
                                            outlier_count, threshold, sh, OutlierStaging{}, &pdl,
                                            &staged));
  if (!all_skinny) {
    for (size_t g = 0; g < groups; ++g) {
      AllocateSm90Workspace(scratch, &plans[g]);
      JAXINT8_RETURN_IF_ERROR(LaunchInt8Matmul(stream, *m[g], plans[g], pdl && g == 0, false));
    }
    return ffi::Error::Success();
  }
  for (int64_t b = 0; b < plans[0].sh.nb; ++b) {
    for (size_t g = 0; g < groups; ++g) {
      ps[g] = gemm_params(*m[g], plans[g], b);
      ps[g].l2_prefetch_bytes = skinny_l2_prefetch(pdl && b == 0);
    }
    cudaError_t err = launch_int8_gemm_skinny_group(ps, static_cast<int>(groups), dev.num_sms,
                                                    stream, pdl && b == 0);
    if (err != cudaSuccess) return cuda_error(err, "llm_int8_matmul_group");
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxint8::cuda

// Argument lists shared with the CPU handlers (common.h), after the CUDA contexts.
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_column_absmax_cuda, jaxint8::cuda::ColumnAbsmax,
    jaxint8::bind_column_absmax(
        xla::ffi::Ffi::Bind().Ctx<xla::ffi::PlatformStream<cudaStream_t>>()),
    {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_quantize_rows_cuda, jaxint8::cuda::QuantizeRows,
    jaxint8::bind_quantize_rows(
        xla::ffi::Ffi::Bind().Ctx<xla::ffi::PlatformStream<cudaStream_t>>()),
    {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_int8_matmul_cuda, jaxint8::cuda::Int8Matmul,
    jaxint8::bind_int8_matmul(xla::ffi::Ffi::Bind()
                                  .Ctx<xla::ffi::PlatformStream<cudaStream_t>>()
                                  .Ctx<xla::ffi::ScratchAllocator>()),
    {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_llm_int8_matmul_cuda, jaxint8::cuda::LlmInt8Matmul,
    jaxint8::bind_llm_int8_matmul(xla::ffi::Ffi::Bind()
                                      .Ctx<xla::ffi::PlatformStream<cudaStream_t>>()
                                      .Ctx<xla::ffi::ScratchAllocator>()),
    {xla::ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_llm_int8_matmul_group_cuda, jaxint8::cuda::LlmInt8MatmulGroup,
    jaxint8::bind_llm_int8_matmul_group(xla::ffi::Ffi::Bind()
                                            .Ctx<xla::ffi::PlatformStream<cudaStream_t>>()
                                            .Ctx<xla::ffi::ScratchAllocator>()),
    {xla::ffi::Traits::kCmdBufferCompatible});
