// Benchmark baseline: the same CUTLASS kernels with the plain fused epilogue (row x col scale, bias,
// cast) and no outlier term, to measure what the outlier node costs.
#include "cuda/sm90/gemm_sm90_impl.cuh"

JAXINT8_SM90_DEFINE(gemm_coop_bf16_plain, CoopConfig, cutlass::bfloat16_t, false)
JAXINT8_SM90_DEFINE(gemm_pp_bf16_plain, PingpongConfig, cutlass::bfloat16_t, false)
