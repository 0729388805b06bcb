// Standalone timing harness for the decode GEMMs (xla_ffi/cuda/gemm_skinny.cu and gemm_gemv.cu;
// JAXINT8_DECODE_KERNEL=mma|dp4a picks one where both apply), no JAX needed:
// builds in seconds on the GPU machine, so kernel variants can be compared in one device call.
// Built and run by benchmarks/cuda/run_skinny_bench.sh.
//
// Per case (in -> out, tokens, outlier count) it times launch_int8_gemm_skinny on rotating weight
// copies (together > 3x the L2, so every call streams its weight from HBM) inside a CUDA graph of
// back-to-back launches, and prints µs per call, the weight-read bandwidth and a hash of the output
// (equal hashes across variants = bit-identical results). Reference bandwidths: a device-to-device
// copy, a fully coalesced read, and reads with the skinny kernel's access pattern ("patt") and
// the GEMV's ("p512"), without arithmetic. SKINNY_TOKENS="1 2 4" sets the timed token counts.
//
//   skinny_bench [--profile]   --profile: a few plain launches per case, for ncu
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "harness_common.cuh"
#include "cuda/launch.h"

using namespace jaxint8::cuda;


namespace {

// Read-bandwidth references over the same bytes as a weight, without arithmetic beyond an XOR:
// fully coalesced 16-byte loads here, the skinny kernel's pattern with read_rows_pattern below.
__global__ void read_coalesced(const uint4* __restrict__ p, int64_t n16, int* sink) {
  uint32_t acc = 0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n16; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = __ldcs(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 v = __ldcs(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *sink = 1;
}
struct Case {
  int64_t k, n, m;
  int outliers;
};

uint64_t hash_bytes(const std::vector<uint8_t>& b) {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t c : b) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Median over `reps` replays of a graph holding `iters` calls of launch(i), in µs per call.
template <typename F>
float time_graph(F launch, int iters, int reps, cudaStream_t s) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < iters; ++i) launch(i);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, s));  // warm-up
  CK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1000.0f / iters);
  }
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Generalised pattern for the sweep (--patterns): a block of 8 warps on 16 weight rows; one
// warp instruction reads RPI rows x (512 / RPI) contiguous bytes (RPI = 8 is the skinny kernel's
// layout); warps take K chunks of 512 / RPI bytes round-robin; L loads of 16 bytes per lane in
// flight per warp; LT: load flavour (0 ld.global.cs, 1 ld.global.nc.L1::no_allocate (the
// kernel's), 2 the same with the .L2::256B prefetch hint).
template <int LT>
__device__ __forceinline__ uint4 load_lt(const int8_t* p) {
  uint4 r;
  if constexpr (LT == 0) {
    r = __ldcs(reinterpret_cast<const uint4*>(p));
  } else if constexpr (LT == 1) {
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  } else {
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  }
  return r;
}

template <int RPI, int L, int LT>
__global__ void read_rows_pattern(const int8_t* __restrict__ w, int64_t n, int64_t k, int* sink) {
  extern __shared__ int occupancy_limiter[];  // only its size matters (blocks per SM)
  constexpr int LPR = 32 / RPI, CW = 16 * LPR, INSTR = 16 / RPI;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rr = lane / LPR, off = (lane % LPR) * 16;
  const int64_t r0 = blockIdx.x * 16ll;
  uint32_t acc = 0;
  const int64_t chunks = k / CW;
  const int64_t my_chunks = (chunks - warp + 7) / 8;  // chunks warp, warp + 8, ...
  const int64_t items = my_chunks * INSTR;            // (chunk, row group) pairs, chunk-major
  for (int64_t i0 = 0; i0 < items; i0 += L) {
    uint4 v[L];
#pragma unroll
    for (int u = 0; u < L; ++u) {
      const int64_t it = i0 + u;
      const int64_t c = warp + 8 * (it / INSTR);
      const int j = static_cast<int>(it % INSTR);
      v[u] = it < items ? load_lt<LT>(w + (r0 + j * RPI + rr) * k + c * CW + off) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < L; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == 0x12345678u) *sink = occupancy_limiter[0];
}

template <int RPI, int L, int LT>
void sweep_pattern(const int8_t* w, int copies, int64_t n, int64_t k, int blocks_per_sm, int* sink, cudaStream_t s) {
  const int smem = blocks_per_sm >= 8 ? 0 : (228 * 1024) / blocks_per_sm - 2048;
  CK(cudaFuncSetAttribute(read_rows_pattern<RPI, L, LT>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int64_t wbytes = n * k;
  const float us = time_graph([&](int i) {
    read_rows_pattern<RPI, L, LT><<<static_cast<unsigned>(n / 16), 256, smem, s>>>(w + (i % copies) * wbytes, n, k, sink);
  }, 32, 7, s);
  std::printf("pattern rows/instr %d loads %2d flavour %d %d blocks/SM %5lld->%-6lld %8.2f us %6.2f TB/s\n", RPI, L, LT,
              blocks_per_sm, (long long)k, (long long)n, us, wbytes / us * 1e-6);
}

template <int RPI, int L>
void sweep_flavours(const int8_t* w, int copies, int64_t n, int64_t k, int b, int* sink, cudaStream_t s) {
  sweep_pattern<RPI, L, 0>(w, copies, n, k, b, sink, s);
  sweep_pattern<RPI, L, 1>(w, copies, n, k, b, sink, s);
  sweep_pattern<RPI, L, 2>(w, copies, n, k, b, sink, s);
}

constexpr int64_t kRotateBytes = 160ll << 20;  // > 3x the H100's 50 MB L2

}  // namespace

int main(int argc, char** argv) {
  const bool profile = argc > 1 && !std::strcmp(argv[1], "--profile");
  const bool patterns = argc > 1 && !std::strcmp(argv[1], "--patterns");
  int dev = 0, sms = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  int* sink;
  CK(cudaMalloc(&sink, sizeof(int)));
  const char* variant = std::getenv("JAXINT8_DECODE_KERNEL");
  std::printf("skinny_bench: %d SMs, JAXINT8_DECODE_KERNEL=%s\n", sms, variant ? variant : "(unset: auto)");

  // 16 rows per block x 3 blocks per SM: n = 3 * 16 * sms * w fills w waves exactly.
  const int64_t wave = 3 * 16 * static_cast<int64_t>(sms);
  std::vector<Case> cases;
  if (profile) {  // a few cases for ncu (two launches each)
    for (int64_t m : {1, 16}) {
      cases.push_back({4096, 16384, m, 6});
      cases.push_back({20480, 5120, m, 6});
    }
    cases.push_back({4096, 16384, 1, 0});
  }
  // Token counts: 1 and 16 always; SKINNY_TOKENS="1 2 4 8 16" (environment) for the GEMV crossover.
  std::vector<int64_t> token_counts;
  if (const char* v = std::getenv("SKINNY_TOKENS")) {
    for (const char* q = v; *q;) {
      char* end;
      const long t = std::strtol(q, &end, 10);
      if (end == q) break;
      token_counts.push_back(t);
      q = end;
    }
  }
  if (token_counts.empty()) token_counts = {1, 16};
  for (int64_t m : token_counts) {
    if (profile) break;
    // The layer benchmark's shapes, then the 13B model's (q/k/v/o 5120->5120, down 13824->5120).
    for (auto [k, n] : std::vector<std::pair<int64_t, int64_t>>{{4096, 16384}, {16384, 4096}, {5120, 20480},
                                                                  {20480, 5120}, {12288, 49152}, {49152, 12288},
                                                                  {5120, 5120}, {13824, 5120}}) {
      cases.push_back({k, n, m, 6});
      if (m == 1) cases.push_back({k, n, m, 0});
    }
    cases.push_back({4096, 3 * wave, m, 6});  // exactly 3 waves of blocks
    cases.push_back({16384, wave, m, 6});     // exactly 1 wave
  }
  if (!profile) {  // odd sizes (bit-identity across variants): K tail, partial tiles, > 32 outliers, k % 16 != 0
    cases.push_back({4112, 1000, 3, 6});
    cases.push_back({4096, 4104, 13, 40});
    cases.push_back({1000, 520, 9, 6});
    cases.push_back({333, 77, 16, 5});
    cases.push_back({2064, 1000, 1, 70});  // the GEMV: three rounds of outlier columns, a partial K chunk
    cases.push_back({4096, 4104, 4, 40});
    cases.push_back({48, 40, 2, 48});      // every column an outlier, k < one 512-byte chunk
    cases.push_back({8208, 3000, 4, 6});
  }

  if (patterns) {  // read-pattern sweep: rows per instruction x blocks per SM
    for (auto [k, n] : std::vector<std::pair<int64_t, int64_t>>{{4096, 16384}, {20480, 5120}, {12288, 49152}}) {
      const int copies = static_cast<int>(std::max<int64_t>(2, (kRotateBytes + n * k - 1) / (n * k)));
      int8_t* w;
      CK(cudaMalloc(&w, n * k * copies));
      fill_i8<<<1024, 256, 0, s>>>(w, n * k * copies, 1);
      for (int b : {2, 3, 4, 8}) {
        sweep_flavours<8, 8>(w, copies, n, k, b, sink, s);
        sweep_flavours<8, 16>(w, copies, n, k, b, sink, s);
        sweep_flavours<8, 32>(w, copies, n, k, b, sink, s);
        sweep_flavours<1, 8>(w, copies, n, k, b, sink, s);
        sweep_flavours<1, 16>(w, copies, n, k, b, sink, s);
        sweep_flavours<1, 32>(w, copies, n, k, b, sink, s);
      }
      CK(cudaFree(w));
    }
    return 0;
  }
  if (!profile) {  // bandwidth references
    const int64_t bytes = 256ll << 20;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemsetAsync(a, 1, bytes, s));
    const float cp = time_graph([&](int) { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s)); }, 10, 7, s);
    const float rd = time_graph([&](int) { read_coalesced<<<sms * 8, 256, 0, s>>>((const uint4*)a, bytes / 16, sink); }, 10, 7, s);
    std::printf("copy 256 MB: %.1f us = %.2f TB/s (read + write); coalesced read: %.2f TB/s\n", cp,
                2.0 * bytes / cp * 1e-6, bytes / rd * 1e-6);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }

  std::printf("%-13s %3s %3s %9s %8s %8s %8s %8s  %s\n", "in->out", "m", "O", "us", "TB/s", "patt", "p512", "coal", "hash");
  for (const Case& c : cases) {
    const int64_t wbytes = c.n * c.k;
    const int64_t stride = (wbytes + 255) / 256 * 256;  // every copy 256-byte aligned, like XLA's buffers
    const int copies = static_cast<int>(std::max<int64_t>(2, (kRotateBytes + wbytes - 1) / wbytes));
    int8_t *wq, *xq;
    float *rs, *cs, *bias;
    __nv_bfloat16 *x, *y;
    int32_t *idx, *cnt;
    CK(cudaMalloc(&wq, stride * copies));
    CK(cudaMalloc(&xq, c.m * c.k));
    CK(cudaMalloc(&rs, c.m * 4));
    CK(cudaMalloc(&cs, c.n * 4));
    CK(cudaMalloc(&bias, c.n * 4));
    CK(cudaMalloc(&x, c.m * c.k * 2));
    CK(cudaMalloc(&y, c.m * c.n * 2));
    CK(cudaMalloc(&idx, c.k * 4));
    CK(cudaMalloc(&cnt, 4));
    fill_i8<<<1024, 256, 0, s>>>(wq, stride * copies, 1);
    fill_i8<<<64, 256, 0, s>>>(xq, c.m * c.k, 2);
    fill_f32<<<8, 256, 0, s>>>(rs, c.m, 3, 0.01f, 0.1f);
    fill_f32<<<64, 256, 0, s>>>(cs, c.n, 4, 0.001f, 0.01f);
    fill_f32<<<64, 256, 0, s>>>(bias, c.n, 5, -1.0f, 1.0f);
    fill_bf16<<<64, 256, 0, s>>>(x, c.m * c.k, 6);
    std::vector<int32_t> hidx(c.k, -1);
    for (int t = 0; t < c.outliers; ++t) hidx[t] = static_cast<int32_t>((t + 1) * c.k / (c.outliers + 1));
    CK(cudaMemcpyAsync(idx, hidx.data(), c.k * 4, cudaMemcpyHostToDevice, s));
    const int32_t hc = c.outliers;
    CK(cudaMemcpyAsync(cnt, &hc, 4, cudaMemcpyHostToDevice, s));
    CK(cudaStreamSynchronize(s));

    Int8GemmParams p;
    p.m = c.m, p.n = c.n, p.k = c.k;
    p.xq = xq, p.row_scale = rs, p.col_scale = cs, p.bias = bias, p.x = x;
    p.x_type = FloatType::kBF16, p.y_type = FloatType::kBF16;
    p.outlier_idx = idx, p.outlier_count = cnt, p.y = y;
    auto gemm = [&](int i) {
      Int8GemmParams q = p;
      q.wq = wq + (i % copies) * stride;
      CK(launch_int8_gemm_skinny(q, sms, s, false));
    };
    if (profile) {
      for (int i = 0; i < 2; ++i) gemm(i);
      CK(cudaStreamSynchronize(s));
    } else {
      const int iters = std::max(8, static_cast<int>(std::min<int64_t>(64, (2ll << 30) / wbytes)));
      const float us = time_graph(gemm, iters, 7, s);
      const bool sized = c.k % 64 == 0 && c.n % 16 == 0;  // the reference reads need whole pieces
      const float patt = !sized ? 0.0f : time_graph([&](int i) {
        // the skinny kernel's layout and load flavour: 8 rows x 64 B per instruction, 8 loads in flight
        read_rows_pattern<8, 8, 1><<<static_cast<unsigned>(c.n / 16), 256, 0, s>>>(wq + (i % copies) * stride, c.n, c.k, sink);
      }, iters, 7, s);
      const float p512 = !sized ? 0.0f : time_graph([&](int i) {
        // one row x 512 contiguous bytes per instruction (the dp4a GEMV's layout), 8 loads in flight
        read_rows_pattern<1, 8, 1><<<static_cast<unsigned>(c.n / 16), 256, 0, s>>>(wq + (i % copies) * stride, c.n, c.k, sink);
      }, iters, 7, s);
      const float coal = !sized ? 0.0f : time_graph([&](int i) {
        read_coalesced<<<sms * 8, 256, 0, s>>>(reinterpret_cast<const uint4*>(wq + (i % copies) * stride), wbytes / 16, sink);
      }, iters, 7, s);
      // Output of one call on copy 0, for bit-identity checks across variants.
      gemm(0);
      std::vector<uint8_t> hy(c.m * c.n * 2);
      CK(cudaMemcpyAsync(hy.data(), y, hy.size(), cudaMemcpyDeviceToHost, s));
      CK(cudaStreamSynchronize(s));
      char name[32];
      std::snprintf(name, sizeof name, "%lld->%lld", (long long)c.k, (long long)c.n);
      std::printf("%-13s %3lld %3d %9.2f %8.2f %8.2f %8.2f %8.2f  %016llx\n", name, (long long)c.m, c.outliers, us,
                  wbytes / us * 1e-6, sized ? wbytes / patt * 1e-6 : 0.0, sized ? wbytes / p512 * 1e-6 : 0.0,
                  sized ? wbytes / coal * 1e-6 : 0.0, (unsigned long long)hash_bytes(hy));
    }
    for (void* ptr : {(void*)wq, (void*)xq, (void*)rs, (void*)cs, (void*)bias, (void*)x, (void*)y, (void*)idx, (void*)cnt})
      CK(cudaFree(ptr));
  }
  CK(cudaGetLastError());
  return 0;
}
