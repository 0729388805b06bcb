// Device helpers shared by the jaxint8 CUDA kernels: float loads/stores of the three
// activation types and the LLM.int8() output formula (one definition, so the skinny and the
// tiled GEMM agree bit for bit with each other and with the CPU handler).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "common.h"
#include "cuda/kernels.h"

namespace jaxint8::cuda {

template <typename T> struct FloatIO;
template <> struct FloatIO<float> {
  static __device__ __forceinline__ float load(const float* p) { return *p; }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};
template <> struct FloatIO<__nv_bfloat16> {
  static __device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
};
template <> struct FloatIO<__half> {
  static __device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
  static __device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
};

// A float element split into its load and its conversion, so that a kernel can issue the load
// early and convert after a long loop (the warp only waits for a load at the first use).
__device__ __forceinline__ uint32_t load_float_bits(const void* base, FloatType t, int64_t i) {
  if (t == FloatType::kF32) return static_cast<const uint32_t*>(base)[i];
  return static_cast<const uint16_t*>(base)[i];
}
__device__ __forceinline__ float float_from_bits(uint32_t bits, FloatType t) {
  switch (t) {
    case FloatType::kF32: return __uint_as_float(bits);
    case FloatType::kBF16: return __uint_as_float(bits << 16);  // exact widening, as __bfloat162float
    default: return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
  }
}

__device__ __forceinline__ float load_float(const void* base, FloatType t, int64_t i) {
  return float_from_bits(load_float_bits(base, t, i), t);
}

// Outlier count clamped to [0, k] (the CPU handler rejects out-of-range counts; on the
// device we cannot return an error without a host sync, so we stay in bounds instead).
__device__ __forceinline__ int clamped_count(const int32_t* count, int64_t k) {
  int c = *count;
  return c < 0 ? 0 : (c > k ? static_cast<int>(k) : c);
}

// y = dequant(acc) + outlier_sum (+ bias), in the CPU handler's operation order, with
// explicit round-to-nearest adds so that nvcc does not contract them into FMAs.
__device__ __forceinline__ float finish_output(int32_t acc, float row_scale, float scale,
                                               float outlier_sum, const float* bias, int64_t n) {
  float v = dequantize_acc(acc, row_scale, scale);
  v = __fadd_rn(v, outlier_sum);
  if (bias) v = __fadd_rn(v, bias[n]);
  return v;
}

// One term of the outlier sum: out += x * W_deq, unfused like the CPU loop.
__device__ __forceinline__ float outlier_term(float acc, float x, float w_deq) {
  return __fadd_rn(acc, __fmul_rn(x, w_deq));
}

__device__ __forceinline__ void store_output(void* y, FloatType t, int64_t i, float v) {
  switch (t) {
    case FloatType::kF32: static_cast<float*>(y)[i] = v; break;
    case FloatType::kBF16: static_cast<__nv_bfloat16*>(y)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<__half*>(y)[i] = __float2half_rn(v); break;
  }
}

// 16-byte streaming load that does not allocate in L1 (each weight byte is read once).
__device__ __forceinline__ uint4 load_stream(const int8_t* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

// Starts loading `bytes` (a multiple of 16, 16-byte aligned p) into L2 without waiting for them
// (sm_90+: one bulk prefetch instruction; a no-op before).
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (bytes > 0) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  (void)p;
  (void)bytes;
#endif
}

// Shared-memory tiles of 64-byte rows (the tiled GEMM and the outlier product): byte offset of
// 16-byte chunk `ch` (0..3) of row `row` under an XOR swizzle that keeps ldmatrix and the 16-byte
// cp.async writes free of bank conflicts.
__device__ __forceinline__ int swizzle64(int row, int ch) { return row * 64 + ((ch ^ ((row >> 1) & 3)) << 4); }

// Output tile (tm, tn) of block `bid` over tiles_m x tiles_n tiles, rasterized in groups of 8
// M-tiles per N-tile, so that neighbouring blocks share their weight rows in L2.
__device__ __forceinline__ void grouped_tile(int64_t bid, int64_t tiles_m, int64_t tiles_n, int64_t& tm,
                                             int64_t& tn) {
  const int64_t group = 8, per_group = group * tiles_n;
  const int64_t first_m = bid / per_group * group, gm = min(tiles_m - first_m, group);
  tm = first_m + (bid % per_group) % gm;
  tn = (bid % per_group) / gm;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte cp.async global -> shared; valid = false zero-fills the destination.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// mma.sync m16n8k32 s8 x s8 -> s32 (row.col), accumulate in place.
__device__ __forceinline__ void mma_s8_16832(int32_t (&c)[4], const uint32_t (&a)[4],
                                             uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Programmatic dependent launch (sm_90+; no-ops before): pdl_trigger lets the next kernel on the
// stream, if launched with launch_kernel(..., pdl = true), start now; pdl_wait blocks until the
// previous grid has completed and its writes are visible (at once when launched normally).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// kernel<<<grid, block, 0, stream>>>(args...) with the launch attributes attrs[0, n).
template <typename... Params, typename... Args>
cudaError_t launch_with_attributes(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                                   cudaLaunchAttribute* attrs, unsigned n, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.stream = stream;
  cfg.attrs = attrs;
  cfg.numAttrs = n;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// kernel<<<grid, block, 0, stream>>>(args...), as a programmatic dependent launch when pdl.
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, bool pdl,
                          Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  return launch_with_attributes(kernel, grid, block, stream, attr, pdl ? 1 : 0, std::forward<Args>(args)...);
}

// A cooperative launch: every block resident at once (the grid must fit the device; the launch
// fails otherwise), so the kernel may synchronize the grid (cooperative_groups::this_grid().sync()).
template <typename... Params, typename... Args>
cudaError_t launch_cooperative_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                                      Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  return launch_with_attributes(kernel, grid, block, stream, attr, 1, std::forward<Args>(args)...);
}

// Resident blocks per SM of `kernel` with `threads` threads and `smem` bytes of dynamic shared
// memory (at least 1, also when the query fails).
template <typename Kernel>
int resident_blocks(Kernel kernel, int threads, int smem = 0) {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem) != cudaSuccess) {
    (void)cudaGetLastError();
    return 1;
  }
  return n > 1 ? n : 1;
}

// Raises `kernel`'s dynamic shared-memory limit to `bytes` on the current device, once per
// (kernel, device), with the calling thread's capture mode relaxed (the call may come while XLA
// records a CUDA graph, where cudaFuncSetAttribute is otherwise refused).
inline cudaError_t opt_in_dynamic_smem(const void* kernel, int bytes) {
  static std::mutex mu;
  static std::vector<std::pair<const void*, int>> done;  // (kernel, device)
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& d : done)
    if (d.first == kernel && d.second == dev) return cudaSuccess;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  cudaThreadExchangeStreamCaptureMode(&mode);
  if (err == cudaSuccess) done.emplace_back(kernel, dev);
  return err;
}

#define JAXINT8_CUDA_RETURN_IF_ERROR(expr)        \
  do {                                            \
    cudaError_t _e = (expr);                      \
    if (_e != cudaSuccess) return _e;             \
  } while (0)

}  // namespace jaxint8::cuda
