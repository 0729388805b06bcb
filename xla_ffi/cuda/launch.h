// Launch functions of the jaxint8 CUDA kernel families (called by cuda/dispatch.cu, which
// decides which one runs; the sm90 CUTLASS path has its own header, sm90/gemm_sm90.h). Raw device pointers, a stream,
// no host synchronisation. Every function checks its launches and returns the first error.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "cuda/kernels.h"

namespace jaxint8::cuda {

// Outlier columns that every kernel by default sums in ascending column order, bit-identical to the
// CPU handler; with more, the prefill GEMMs take the tensor-core outlier product and the one-token
// GEMV sums them from its weight stream (both within docs/design.md's bound).
inline constexpr int kOrderedOutliers = 8;

// col_amax[b, c] = max_i |x[b, i, c]| (NaN-propagating), x [nb, s, h] of type t.
cudaError_t launch_column_absmax(const void* x, FloatType t, int64_t nb, int64_t s, int64_t h,
                                 float* col_amax, int num_sms, cudaStream_t stream);

// Row pass: outlier list + count per batch, row scales and int8 rows (step 2 of docs/design.md).
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

// Decode GEMM with the mma skinny kernel (gemm_skinny.cu: memory-bound on the weight; 16
// tokens per grid row, mma.sync m16n8k32 with the weight as the M operand, K split over the warps
// of a block; any m, n, k and alignment) for one or several weights that read the same
// activations (q/k/v, gate/up) in one launch: ps[i] differ only in qweight, scale, bias, y and n
// (cudaErrorInvalidValue otherwise); same results as one launch per weight.
// pdl (sm_90+ only): launch as a programmatic dependent of the row pass, which must be the
// previous kernel on the stream: the blocks warm L2 with the start of their weight rows
// (p.l2_prefetch_bytes), then wait for the row pass before reading xq / scales / outliers.
inline constexpr int kMaxSkinnyWeights = 8;
cudaError_t launch_int8_gemm_skinny_group(const Int8GemmParams* ps, int count, cudaStream_t stream,
                                          bool pdl = false);
bool int8_gemm_skinny_fast_path(const Int8GemmParams& p);  // 16-byte weight loads possible

// The dp4a GEMV (gemm_gemv.cu, one warp per weight row): m <= kGemvMaxTokens, k % 16 == 0,
// 16-byte aligned qweight / xq (int8_gemv_supported). Same arguments, results and pdl as the skinny
// kernel, bit for bit. ksplit: K slices per weight row (1, 2 or 4; 0 = chosen from the shape).
inline constexpr int kGemvMaxTokens = 4;
bool int8_gemv_supported(const Int8GemmParams& p);
cudaError_t launch_int8_gemv_group(const Int8GemmParams* ps, int count, int ksplit, int num_sms,
                                   cudaStream_t stream, bool pdl = false);

// Decode at one token (m = 1): quantization and dp4a GEMV in one persistent kernel
// (gemv_token.cu) for one or several weights that read the same x (ps as for
// launch_int8_gemv_group). Writes the quantization's outputs too, exactly what
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
// Launch geometry of the one-token GEMV (0 = chosen from the shape).
struct TokenGemvConfig {
  int ksplit = 0;  // K slices per weight row: 1, 2 or 4
  int loads = 0;   // 16-byte weight loads in flight per lane without K slices: 4 or 6
  // The most outlier columns summed in ascending column order (the CPU handler's and the chain's:
  // bit-identical); a token with more has them summed per lane from the weight stream.
  int ordered_max = kOrderedOutliers;
};
bool token_gemv_supported(const Int8GemmParams* ps, int count, const TokenOutputs& out);
cudaError_t launch_token_gemv(const Int8GemmParams* ps, int count, const TokenOutputs& out,
                              TokenGemvConfig config, int num_sms, cudaStream_t stream);

// The outlier product of a prefill GEMM on tensor cores (outlier_product.cu): with
// c = *p.outlier_count, when c > min_count,
//   partial[i, j] = sum_{t < c} x[i, idx[t]] * qweight[j, idx[t]]   (f32, exact products)
// for the GEMM epilogue to add (Int8GemmParams::outlier_partial). When c <= min_count there is no
// product: the launch stages `staging` instead (the sm90 epilogue's compact operands, as the sm90
// gather kernel would; nothing when staging.ld == 0). One cooperative launch that reads c on the
// device. Sums in a tensor-core order: within ~c * 2^-24 of sum_t |x * q| of the CPU handler's.
// The workspace holds the partial [m, n], the gathered x[:, idx] (16-bit, three terms for f32 x)
// and the gathered qweight[:, idx] (int8); its size depends only on the shapes.
struct OutlierProductBuffers {
  float* partial = nullptr;
  uint16_t* xo = nullptr;
  int8_t* wo = nullptr;
};
size_t outlier_product_workspace_bytes(int64_t m, int64_t n, int64_t k, FloatType x_type);
OutlierProductBuffers outlier_product_buffers(void* workspace, int64_t m, int64_t n, int64_t k, FloatType x_type);
cudaError_t launch_outlier_product(const Int8GemmParams& p, const OutlierProductBuffers& b, int min_count,
                                   const OutlierStaging& staging, int num_sms, cudaStream_t stream);

// Tiled mma.sync GEMM (sm_80+; 128x128x64 tiles, 4-stage cp.async pipeline) with the fused
// dequant + outlier + bias + cast epilogue. Needs int8_gemm_tiled_supported(p).
bool int8_gemm_tiled_supported(const Int8GemmParams& p);
cudaError_t launch_int8_gemm_tiled(const Int8GemmParams& p, cudaStream_t stream);

}  // namespace jaxint8::cuda
