// Benchmark-only CUTLASS configurations (not in the library): candidates for the m > 16 dispatch.
// Compiled once per JAXINT8_VARIANT (1..4) by run_sm90_harness.sh; `sm90_harness --variants` times
// them against the library's configurations.
#include "cuda/sm90/gemm_sm90_impl.cuh"

namespace jaxint8::cuda::sm90 {
#if JAXINT8_VARIANT == 1
using VariantConfig = PingpongConfigT<128, 128, 1>;  // = the library's Pingpong128Config since the sixth session
#elif JAXINT8_VARIANT == 2
using VariantConfig = PingpongConfigT<128, 128, 2>;
#elif JAXINT8_VARIANT == 3
using VariantConfig = PingpongConfigT<64, 256, 1>;
#else
// The library's ping-pong tile with a 2x1 cluster: the weight tile is multicast to both M tiles,
// so at 65-128 tokens the weight is read from memory once instead of twice.
using VariantConfig = PingpongConfigT<64, 128, 2>;
#endif
}  // namespace jaxint8::cuda::sm90

#if JAXINT8_VARIANT == 1
JAXINT8_SM90_DEFINE(gemm_var1_bf16, VariantConfig, cutlass::bfloat16_t, true)
#elif JAXINT8_VARIANT == 2
JAXINT8_SM90_DEFINE(gemm_var2_bf16, VariantConfig, cutlass::bfloat16_t, true)
#elif JAXINT8_VARIANT == 3
JAXINT8_SM90_DEFINE(gemm_var3_bf16, VariantConfig, cutlass::bfloat16_t, true)
#else
JAXINT8_SM90_DEFINE(gemm_var4_bf16, VariantConfig, cutlass::bfloat16_t, true)
#endif
