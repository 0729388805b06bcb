// Launch functions of the jaxint8 CUDA kernel families (owned by the CUDA handlers; the
// sm90 CUTLASS path has its own header, sm90/gemm_sm90.h). Raw device pointers, a stream,
// no host synchronisation. Every function checks its launches and returns the first error.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "cuda/kernels.h"

namespace jaxint8::cuda {

// col_amax[b, c] = max_i |x[b, i, c]| (NaN-propagating), x [nb, s, h] of type t.
cudaError_t launch_column_absmax(const void* x, FloatType t, int64_t nb, int64_t s, int64_t h,
                                 float* col_amax, int num_sms, cudaStream_t stream);

// Row pass: outlier list + count per batch, row scales and int8 rows (DESIGN §1 step 2).
// pdl (sm_90+): launch as a programmatic dependent of the column pass, which must be the previous
// kernel on the stream: the blocks load their rows of x, then wait for col_amax.
cudaError_t launch_quantize_rows(const void* x, FloatType t, const float* col_amax,
                                 float threshold, int64_t nb, int64_t s, int64_t h, int8_t* xq,
                                 float* row_scale, int32_t* outlier_idx, int32_t* outlier_count,
                                 int num_sms, cudaStream_t stream, bool pdl = false);

// Both quantization passes in one cooperative launch, for one batch element (prefill sizes, see
// quantize.cu): the outputs of launch_column_absmax + launch_quantize_rows bit for bit (col_amax
// zeros when threshold <= 0), plus, when staging.ld > 0, the GEMM's compact outlier operands
// (what the sm90 gather kernel writes). Needs quantize_fused_supported.
bool quantize_fused_supported(const void* x, int64_t nb, int64_t s, int64_t h, const float* col_amax,
                              const int8_t* xq);
cudaError_t launch_quantize_fused(const void* x, FloatType t, float threshold, int64_t s, int64_t h,
                                  float* col_amax, int8_t* xq, float* row_scale, int32_t* outlier_idx,
                                  int32_t* outlier_count, const OutlierStaging& staging, int num_sms,
                                  cudaStream_t stream);

// Decode GEMM (memory-bound on the weight). m <= kGemvAutoTokens, 16-byte aligned rows and at
// least kGemvMinWeightBytes of weights in the launch: the dp4a GEMV (gemm_gemv.cu, one warp per
// weight row); otherwise the mma skinny kernel
// (gemm_skinny.cu: 16 tokens per grid row, mma.sync m16n8k32 with the weight as the M operand,
// K split over the warps of a block; any m, n, k and alignment). JAXINT8_DECODE_KERNEL=mma|dp4a
// (environment, read once) forces one of the two where it applies, for tests and measurements.
// pdl (sm_90+ only): launch as a programmatic dependent of the row pass, which must be the
// previous kernel on the stream: the blocks warm L2 with the start of their weight rows, then
// wait for the row pass before reading xq / scales / outliers.
cudaError_t launch_int8_gemm_skinny(const Int8GemmParams& p, int num_sms, cudaStream_t stream,
                                    bool pdl = false);
bool int8_gemm_skinny_fast_path(const Int8GemmParams& p);  // 16-byte weight loads possible

// The skinny GEMM for several weights that read the same activations (q/k/v, gate/up) in one
// launch: ps[i] differ only in wq, col_scale, bias, y and n (cudaErrorInvalidValue otherwise).
// Same results as one launch_int8_gemm_skinny per weight; pdl as above.
inline constexpr int kMaxSkinnyWeights = 8;
cudaError_t launch_int8_gemm_skinny_group(const Int8GemmParams* ps, int count, int num_sms,
                                          cudaStream_t stream, bool pdl = false);

// The dp4a GEMV alone (see above): m <= kGemvMaxTokens, k % 16 == 0, 16-byte aligned wq / xq.
inline constexpr int kGemvMaxTokens = 4;
inline constexpr int kGemvAutoTokens = 1;
// H100, 1 token: the GEMV lost on a 26 MB weight (5120->5120: 14.0 vs 13.2 us in the layer
// benchmark, 13.6 vs 11.3 in the harness) and won from 67 MB up (4096->16384: 25.2 vs 26.5).
inline constexpr int64_t kGemvMinWeightBytes = int64_t{32} << 20;
bool int8_gemv_supported(const Int8GemmParams& p);
// JAXINT8_DECODE_KERNEL=mma|dp4a (read once): the decode kernel forced for measurements and tests.
enum class DecodeKernel { kAuto, kMma, kDp4a };
DecodeKernel forced_decode_kernel();
cudaError_t launch_int8_gemv_group(const Int8GemmParams* ps, int count, int num_sms, cudaStream_t stream,
                                   bool pdl = false);

// Decode at one token (m = 1): quantization and dp4a GEMV in one persistent kernel
// (gemv_token.cu) for one or several weights that read the same x (ps as for
// launch_int8_gemv_group), whatever their size (H100, 1 token: 5120->5120 13.0 us vs 13.2 for
// the chain with the mma kernel, 20480->5120 45.2 vs 46.8). Writes the quantization's outputs too, exactly what
// launch_column_absmax + launch_quantize_rows write for x [1, h], and y as the chain does, bit
// for bit. Needs token_gemv_supported: m = 1, 16 <= k <= 65536, k % 16 == 0, x and out.xq
// 16-byte aligned, every weight int8_gemv_supported.
struct TokenOutputs {
  float threshold = 0.0f;
  float* col_amax = nullptr;       // [k]
  int8_t* xq = nullptr;            // [k]
  float* row_scale = nullptr;      // [1]
  int32_t* outlier_idx = nullptr;  // [k]
  int32_t* outlier_count = nullptr;
};
bool token_gemv_supported(const Int8GemmParams* ps, int count, const TokenOutputs& out);
cudaError_t launch_token_gemv(const Int8GemmParams* ps, int count, const TokenOutputs& out, int num_sms,
                              cudaStream_t stream);

// Tiled mma.sync GEMM (sm_80+; 128x128x64 tiles, 4-stage cp.async pipeline) with the fused
// dequant + outlier + bias + cast epilogue. Needs int8_gemm_tiled_supported(p).
bool int8_gemm_tiled_supported(const Int8GemmParams& p);
cudaError_t launch_int8_gemm_tiled(const Int8GemmParams& p, int num_sms, cudaStream_t stream);

}  // namespace jaxint8::cuda
