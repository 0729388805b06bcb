// Hopper (sm_90a) int8 GEMM with the whole LLM.int8() epilogue fused (CUTLASS 3, wgmma + TMA).
//
//   y = cast( acc * (row_scale * scale / 16129) + sum_t x[:, idx[t]] * W_deq[idx[t], :] + bias )
//
// Compact outlier operands in the workspace (written by a small gather kernel unless the caller
// staged them: the fused quantization kernel or the outlier product's launch), then one
// persistent CUTLASS kernel whose epilogue adds the outlier rank-k term, the bias and the cast.
// No extra pass over y.
// The first 8 outlier columns of each output tile are staged in shared memory and multiplied either
// on CUDA cores in the CPU handler's exact order (mode 0, default) or on the tensor cores (mode 1:
// mma.sync TF32, x split in three TF32 terms, integer weights exact); further columns up to
// kInt8GemmSm90OutlierCap on CUDA cores from the workspace, beyond that straight from x / qweight.
// Every count 0..k is handled; with Int8GemmParams::outlier_partial the counts above
// partial_min_count come from the tensor-core outlier product instead of the O(count) loop.
//
// Only compiled into the sm_90a library (JAXINT8_WITH_SM90); call only on compute capability 9.0.
#pragma once

#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

#include "cuda/kernels.h"

namespace jaxint8::cuda {

// Shape/alignment constraints of the Hopper kernels: m >= 1, n % 8 == 0, k % 16 == 0
// (TMA needs 16-byte aligned row strides), all sizes < 2^31, 16-byte aligned xq / qweight / y
// pointers, 4-byte aligned row_scale / scale / bias. Anything else: use the generic path.
bool int8_gemm_sm90_supported(const Int8GemmParams& p);

// Workspace the launcher wants for these sizes (compact outlier operands, up to
// kInt8GemmSm90OutlierCap columns stored compactly; XLA allocates it as an extra result of the
// custom call, sized by the same formula in jaxint8/primitives.py). A smaller workspace (even 0
// bytes) is still correct: outlier columns that do not fit are read directly from x / qweight in the
// epilogue (slower, same numbers).
size_t int8_gemm_sm90_workspace_bytes(int64_t m, int64_t n, int64_t k);
inline constexpr int kInt8GemmSm90OutlierCap = 128;

// The CUTLASS configurations (tile m x n; the choice is made in cuda/dispatch.cu).
enum class Sm90Tile {
  kPingpong64x128,      // ping-pong, one warp group's epilogue under the other's mainloop
  kPingpong128x128,
  kCooperative128x256,  // cooperative, cluster 2x1
  kPingpong64x64,
  kPingpong64x160,      // 160-column tiles: fewer, fuller waves where n is a multiple of 160
  kCooperative128x160,
};

// How the epilogue computes the outlier columns it adds itself (Int8GemmParams::outlier_mode, set
// by the dispatch from KernelOptions.outliers): 0 = CUDA cores in the CPU handler's exact operation
// order (bit-identical to the CPU FFI handler), 1 = tensor cores (mma.sync TF32 with a 3-term split
// of x, then one multiply by scale / 127; within the outlier-order bound of docs/kernels.md).
// See gemm_sm90_impl.cuh.

// Where launch_int8_gemm_sm90(p) stages p's outlier operands (in p.workspace; ld = 0: it does not
// stage them). A caller that writes them there itself (the fused prefill quantization kernel,
// the outlier product's launch) sets p.outliers_staged, and the launcher skips its gather kernel.
OutlierStaging int8_gemm_sm90_outlier_staging(const Int8GemmParams& p);

// Enqueues the gather (unless p.outliers_staged) and the GEMM with configuration `tile` on
// `stream` (no host synchronization; the outlier count is read only on the device); num_sms: the
// device's SM count. Returns cudaErrorNotSupported when !int8_gemm_sm90_supported(p).
cudaError_t launch_int8_gemm_sm90(const Int8GemmParams& p, Sm90Tile tile, int num_sms, cudaStream_t stream);

}  // namespace jaxint8::cuda
