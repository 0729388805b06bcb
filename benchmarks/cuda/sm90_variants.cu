// Benchmark-only CUTLASS configurations (not in the library): candidates for the m > 16 dispatch.
// Compiled once per JAXINT8_VARIANT (1..5) by run_sm90_harness.sh; `sm90_harness --variants` times
// them against the library's configurations.
#include "cuda/sm90/gemm_sm90_impl.cuh"

namespace jaxint8::cuda::sm90 {
#if JAXINT8_VARIANT == 1
using VariantConfig = PingpongConfigT<128, 128, 1>;  // = the library's Pingpong128Config since the sixth session
#elif JAXINT8_VARIANT == 2
using VariantConfig = PingpongConfigT<128, 128, 2>;
#elif JAXINT8_VARIANT == 3
using VariantConfig = PingpongConfigT<64, 256, 1>;
#elif JAXINT8_VARIANT == 5
// Stream-K (ninth session): the 128x128 tiles' K iterations spread over all SMs, so narrow outputs
// (16384->4096 at 128 tokens: 64 ping-pong tiles for 132 SMs) stream the weight with every SM.
// Partial int32 sums meet in CUTLASS's workspace (exact, so the non-deterministic reduction is used).
// Measured slower than the 64x128 ping-pong kernel at 128 tokens on 5 of 6 layer shapes.
using VariantConfig = CooperativeConfigT<128, 128, 1, cutlass::gemm::StreamKScheduler>;
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
#elif JAXINT8_VARIANT == 5
JAXINT8_SM90_DEFINE(gemm_sk_bf16, VariantConfig, cutlass::bfloat16_t, true)
JAXINT8_SM90_DEFINE_WORKSPACE(gemm_sk_workspace_bytes, VariantConfig)
#else
JAXINT8_SM90_DEFINE(gemm_var4_bf16, VariantConfig, cutlass::bfloat16_t, true)
#endif
