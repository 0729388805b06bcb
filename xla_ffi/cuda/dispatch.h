// Kernel dispatch of the CUDA handlers (dispatch.cu: the decision table is its header comment).
// Raw device pointers and a stream; no XLA types, no host synchronization.
#pragma once

#include <cuda_runtime.h>
#include <cstddef>
#include <cstdint>

#include "cuda/kernel_options.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace jaxint8::cuda {

// The current device's properties, queried once per device.
struct DeviceInfo {
  int cc_major = 0;
  int cc_minor = 0;
  int num_sms = 132;
  int64_t l2_bytes = 0;
};
DeviceInfo device_info();

// A CUDA error and the step that returned it.
struct Status {
  cudaError_t err = cudaSuccess;
  const char* step = "";
  bool ok() const { return err == cudaSuccess; }
};

// The GEMMs of one call: `nb` batch elements (independent problems, one after the other), each
// x [m, k] against `count` weights that read the same activations. ps[i] is batch element 0's
// problem for weight i (batch element b is offset by batch_params). The workspace (from XLA) is
// shared by all GEMMs of the call.
struct MatmulCall {
  Int8GemmParams ps[kMaxSkinnyWeights];
  int count = 0;
  int64_t nb = 1;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// The activation and the quantization outputs of a fused call.
struct QuantizeCall {
  const void* x = nullptr;
  FloatType x_type = FloatType::kBF16;
  int64_t nb = 1, m = 0, k = 0;
  float threshold = 0.0f;
  float* col_amax = nullptr;       // [nb, k]
  int8_t* xq = nullptr;            // [nb, m, k]
  float* row_scale = nullptr;      // [nb, m]
  int32_t* outlier_idx = nullptr;  // [nb, k]
  int32_t* outlier_count = nullptr;  // [nb]
};

// jaxint8_int8_matmul: the GEMMs of already quantized activations.
Status run_int8_matmul(const MatmulCall& call, const KernelOptions& options, cudaStream_t stream);

// jaxint8_llm_int8_matmul(_group): quantization, then the GEMMs.
Status run_llm_int8_matmul(const QuantizeCall& q, const MatmulCall& call, const KernelOptions& options,
                           cudaStream_t stream);

}  // namespace jaxint8::cuda
