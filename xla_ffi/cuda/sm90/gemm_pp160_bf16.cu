// One CUTLASS kernel configuration per translation unit (see gemm_sm90_impl.cuh).
#include "cuda/sm90/gemm_sm90_impl.cuh"

JAXINT8_SM90_DEFINE(gemm_pp160_bf16, Pingpong160Config, cutlass::bfloat16_t, true)
