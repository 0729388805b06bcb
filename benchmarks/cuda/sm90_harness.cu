// Standalone correctness + timing harness for the Hopper int8 GEMM (xla_ffi/cuda/sm90).
// Built and run by benchmarks/cuda/run_sm90_harness.sh on an H100/H200 (sm_90a).
//
// Correctness: random data, every case against a simple reference kernel (exact int32 dot with
// dp4a + the f32 epilogue in the CPU handler's order). Output is poisoned (NaN) before each run.
// Timing: median of many CUDA-event-timed reps vs cuBLAS bf16 (cublasGemmEx, f32 accumulate).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "harness_common.cuh"
#include "cuda/kernels.h"
#include "cuda/sm90/gemm_sm90.h"
#include "cuda/sm90/gemm_sm90_configs.h"

using namespace jaxint8::cuda;


// ------------------------------------------------------------------ random data
// x values: mostly N-ish(0,1) size, every column scaled by a random factor up to 40 (outlier-like)
__global__ void fill_x(void* p, int type, int64_t n, int64_t k, uint64_t seed) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = 3.0f * unif(seed, i) * (1.0f + 20.0f * (unif(seed + 1, i % k) + 1.0f));
    if (type == 0) static_cast<float*>(p)[i] = v;
    else if (type == 1) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
    else static_cast<__half*>(p)[i] = __float2half(v);
  }
}

__device__ __forceinline__ float ld_x(const void* x, int t, int64_t i) {
  if (t == 0) return static_cast<const float*>(x)[i];
  if (t == 1) return __bfloat162float(static_cast<const __nv_bfloat16*>(x)[i]);
  return __half2float(static_cast<const __half*>(x)[i]);
}

// ------------------------------------------------------------------ reference
__global__ void reference_kernel(Int8GemmParams p, float* ref_f32, float* mag) {
  int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  int64_t m = blockIdx.y;
  if (n >= p.n) return;
  const int* a = reinterpret_cast<const int*>(p.xq + m * p.k);
  const int* b = reinterpret_cast<const int*>(p.wq + n * p.k);
  int acc = 0;
  for (int64_t i = 0; i < p.k / 4; ++i) acc = __dp4a(a[i], b[i], acc);
  float v = __fmul_rn(static_cast<float>(acc), __fmul_rn(__fmul_rn(p.row_scale[m], p.col_scale[n]), 1.0f / 16129.0f));
  float out = 0.0f, am = fabsf(v);
  int cnt = p.outlier_count ? *p.outlier_count : 0;
  for (int t = 0; t < cnt; ++t) {
    int c = p.outlier_idx[t];
    float w = __fmul_rn(static_cast<float>(p.wq[n * p.k + c]), __fdiv_rn(p.col_scale[n], 127.0f));
    out = __fadd_rn(out, __fmul_rn(ld_x(p.x, (int)p.x_type, m * p.k + c), w));
    am += fabsf(ld_x(p.x, (int)p.x_type, m * p.k + c) * w);
  }
  v = __fadd_rn(v, out);
  if (p.bias) v = __fadd_rn(v, p.bias[n]);
  ref_f32[m * p.n + n] = v;
  if (p.bias) am += fabsf(p.bias[n]);
  mag[m * p.n + n] = am;
}

// compare y (type yt) with ref: cast ref to yt; pass when |y - cast(ref)| <= 1e-6*|ref| (+1e-30)
// tol_mag > 0 (tensor-core mode): |y - cast(ref)| <= tol_mag * mag + 1 ulp of the output type.
__global__ void compare_kernel(const void* y, int yt, const float* ref, const float* mag, float tol_mag,
                               int64_t total, unsigned long long* bad, unsigned long long* exact, float* max_rel) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    float r = ref[i], g, rc;
    if (yt == 0) { g = static_cast<const float*>(y)[i]; rc = r; }
    else if (yt == 1) { g = __bfloat162float(static_cast<const __nv_bfloat16*>(y)[i]); rc = __bfloat162float(__float2bfloat16(r)); }
    else { g = __half2float(static_cast<const __half*>(y)[i]); rc = __half2float(__float2half(r)); }
    float d = fabsf(g - rc);
    float rel = d / fmaxf(fabsf(rc), 1e-30f);
    float tol = 1e-6f * fabsf(rc) + 1e-30f;
    if (tol_mag > 0.f) tol += tol_mag * mag[i] + fabsf(rc) * (yt == 1 ? 0.0078125f : yt == 2 ? 0.0009765625f : 0.f);
    if (!(d <= tol)) atomicAdd(bad, 1ull);
    if (g == rc || (g != g && rc != rc)) atomicAdd(exact, 1ull);
    if (!(rel <= 3e38f)) rel = 3e38f;
    atomicMax(reinterpret_cast<int*>(max_rel), __float_as_int(rel));
  }
}

// ------------------------------------------------------------------ problem buffers
struct Problem {
  int64_t m, n, k;
  int8_t *xq = nullptr, *wq = nullptr;
  float *rs = nullptr, *cs = nullptr, *bias = nullptr;
  void* x = nullptr;
  int x_type = 1;
  int32_t *idx = nullptr, *count = nullptr;
  void* y = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = 0;
  float* ref = nullptr;
  float* mag = nullptr;
};

static size_t type_size(int t) { return t == 0 ? 4 : 2; }

static void make_problem(Problem& P, int64_t m, int64_t n, int64_t k, int x_type, int cnt, uint64_t seed,
                         bool need_ref) {
  P.m = m; P.n = n; P.k = k; P.x_type = x_type;
  CK(cudaMalloc(&P.xq, m * k));
  CK(cudaMalloc(&P.wq, n * k));
  CK(cudaMalloc(&P.rs, m * 4));
  CK(cudaMalloc(&P.cs, n * 4));
  CK(cudaMalloc(&P.bias, n * 4));
  CK(cudaMalloc(&P.x, m * k * type_size(x_type)));
  CK(cudaMalloc(&P.idx, std::max<int64_t>(k, 1) * 4));
  CK(cudaMalloc(&P.count, 4));
  CK(cudaMalloc(&P.y, m * n * 4));
  P.ws_bytes = int8_gemm_sm90_workspace_bytes(m, n, k);
  CK(cudaMalloc(&P.ws, P.ws_bytes));
  if (need_ref) CK(cudaMalloc(&P.ref, m * n * 4));
  if (need_ref) CK(cudaMalloc(&P.mag, m * n * 4));
  fill_i8<<<1024, 256>>>(P.xq, m * k, seed + 1);
  fill_i8<<<1024, 256>>>(P.wq, n * k, seed + 2);
  fill_f32<<<256, 256>>>(P.rs, m, seed + 3, 0.5f, 8.0f);
  fill_f32<<<256, 256>>>(P.cs, n, seed + 4, 0.01f, 0.2f);
  fill_f32<<<256, 256>>>(P.bias, n, seed + 5, -1.0f, 1.0f);
  fill_x<<<1024, 256>>>(P.x, x_type, m * k, k, seed + 6);
  CK(cudaGetLastError());
  // ascending random subset of size cnt
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::vector<int> all(k);
  for (int64_t i = 0; i < k; ++i) all[i] = static_cast<int>(i);
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<int> idx(all.begin(), all.begin() + cnt);
  std::sort(idx.begin(), idx.end());
  idx.resize(k);  // entries past the count are poison: they must never be read
  for (int64_t i = cnt; i < k; ++i) idx[i] = -12345678;
  CK(cudaMemcpy(P.idx, idx.data(), k * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(P.count, &cnt, 4, cudaMemcpyHostToDevice));
  CK(cudaDeviceSynchronize());
}

static void free_problem(Problem& P) {
  cudaFree(P.xq); cudaFree(P.wq); cudaFree(P.rs); cudaFree(P.cs); cudaFree(P.bias); cudaFree(P.x);
  cudaFree(P.idx); cudaFree(P.count); cudaFree(P.y); cudaFree(P.ws);
  if (P.ref) cudaFree(P.ref);
  if (P.mag) cudaFree(P.mag);
  P = Problem{};
}

static Int8GemmParams params_of(const Problem& P, int y_type, bool bias, bool outliers) {
  Int8GemmParams p;
  p.m = P.m; p.n = P.n; p.k = P.k;
  p.xq = P.xq; p.wq = P.wq; p.row_scale = P.rs; p.col_scale = P.cs;
  p.bias = bias ? P.bias : nullptr;
  p.x = P.x; p.x_type = static_cast<FloatType>(P.x_type);
  p.outlier_idx = outliers ? P.idx : nullptr;
  p.outlier_count = outliers ? P.count : nullptr;
  p.y = P.y; p.y_type = static_cast<FloatType>(y_type);
  p.workspace = P.ws; p.workspace_bytes = P.ws_bytes;
  return p;
}

static int g_swizzle = 0, g_raster = 0, g_diag = 0, g_mode = 0, g_splits = 0;
static bool g_skip_gather = false;  // time the GEMM alone (xo / wo left from an earlier call)

#ifndef JAXINT8_NO_VARIANTS
// CUTLASS workspace for direct calls of the stream-K configuration (grown on demand).
static void* sk_workspace(size_t bytes) {
  static void* buf = nullptr;
  static size_t cap = 0;
  if (bytes > cap) {
    if (buf) CK(cudaFree(buf));
    CK(cudaMalloc(&buf, bytes));
    cap = bytes;
  }
  return buf;
}
#endif

// Benchmark-only configurations (sm90_variants.cu, one object per variant), bf16 output only.
namespace jaxint8::cuda::sm90 {
cudaError_t gemm_var1_bf16(const GemmArgs& a, cudaStream_t stream);
cudaError_t gemm_var2_bf16(const GemmArgs& a, cudaStream_t stream);
cudaError_t gemm_var3_bf16(const GemmArgs& a, cudaStream_t stream);
cudaError_t gemm_var4_bf16(const GemmArgs& a, cudaStream_t stream);
cudaError_t gemm_sk_bf16(const GemmArgs& a, cudaStream_t stream);  // variant 5: stream-K
size_t gemm_sk_workspace_bytes(const GemmArgs& a);
}  // namespace jaxint8::cuda::sm90

// Run one configuration directly (which: 0 = launcher, 1 = pp, 2 = coop, 3/4 = plain pp/coop,
// 5-8 = sm90_variants.cu 1-4, 9 = sm90_variants.cu 5: stream-K).
static cudaError_t run_cfg(int which, const Int8GemmParams& p, cudaStream_t s) {
  if (which == 0) return sm90::launch_int8_gemm_sm90_mode(p, g_mode, s);
  sm90::GemmArgs a;
  a.m = (int)p.m; a.n = (int)p.n; a.k = (int)p.k;
  a.xq = p.xq; a.wq = p.wq; a.row_scale = p.row_scale; a.col_scale = p.col_scale; a.bias = p.bias;
  a.x = p.x; a.x_type = (int)p.x_type; a.outlier_idx = p.outlier_idx; a.outlier_count = p.outlier_count;
  a.y = p.y;
  a.swizzle = g_swizzle;
  a.raster = g_raster;
  a.diag = g_diag;
  a.outlier_mode = g_mode;
  if (p.outlier_count) {
    int ld = (int)std::min<int64_t>((p.k + 3) / 4 * 4, kInt8GemmSm90OutlierCap);
    a.ld = ld;
    a.xo = static_cast<const float*>(p.workspace);
    size_t off = (static_cast<size_t>(p.m) * ld * 4 + 255) / 256 * 256;
    a.wo = reinterpret_cast<const float*>(static_cast<const char*>(p.workspace) + off);
    if (!g_skip_gather) {
      cudaError_t e = sm90::launch_gather_outliers(p, ld, const_cast<float*>(a.xo), const_cast<float*>(a.wo), g_mode, s);
      if (e != cudaSuccess) return e;
    }
  }
  if (which == 1) {
    if (p.y_type == FloatType::kBF16) return sm90::gemm_pp_bf16(a, s);
    if (p.y_type == FloatType::kF16) return sm90::gemm_pp_f16(a, s);
    return sm90::gemm_pp_f32(a, s);
  }
  if (which == 2) {
    if (p.y_type == FloatType::kBF16) return sm90::gemm_coop_bf16(a, s);
    if (p.y_type == FloatType::kF16) return sm90::gemm_coop_f16(a, s);
    return sm90::gemm_coop_f32(a, s);
  }
  if (which == 3) return sm90::gemm_pp_bf16_plain(a, s);
  if (which == 4) return sm90::gemm_coop_bf16_plain(a, s);
  if (p.y_type != FloatType::kBF16) return cudaErrorInvalidValue;
#ifndef JAXINT8_NO_VARIANTS
  if (which == 9) {
    a.splits = g_splits;
    a.gemm_workspace_bytes = sm90::gemm_sk_workspace_bytes(a);
    a.gemm_workspace = a.gemm_workspace_bytes ? sk_workspace(a.gemm_workspace_bytes) : nullptr;
    return sm90::gemm_sk_bf16(a, s);
  }
  if (which == 5) return sm90::gemm_var1_bf16(a, s);
  if (which == 6) return sm90::gemm_var2_bf16(a, s);
  if (which == 7) return sm90::gemm_var3_bf16(a, s);
  if (which == 8) return sm90::gemm_var4_bf16(a, s);
#endif
  return cudaErrorInvalidValue;
}

static const char* tname(int t) { return t == 0 ? "f32" : t == 1 ? "bf16" : "f16"; }
static const char* cname(int w) {
  static const char* names[] = {"launcher", "pp64x128", "coop128x256", "pp-plain", "coop-plain",
                                "pp128x128", "pp128x128c2", "pp64x256", "pp64x128c2", "sk128x128"};
  return w >= 0 && w < 10 ? names[w] : "?";
}

static int g_fail = 0, g_cases = 0;
static unsigned long long *d_bad, *d_exact;
static float* d_maxrel;

static void check_case(Problem& P, int which, int y_type, bool bias, bool outliers, size_t ws_override,
                       const char* tag) {
  Int8GemmParams p = params_of(P, y_type, bias, outliers);
  if (ws_override != (size_t)-1) p.workspace_bytes = ws_override;
  if (ws_override == 0) p.workspace = nullptr;
  CK(cudaMemset(P.y, 0xFF, P.m * P.n * 4));  // NaN poison
  int cnt = 0;
  CK(cudaMemcpy(&cnt, P.count, 4, cudaMemcpyDeviceToHost));
  cudaError_t e = run_cfg(which, p, 0);
  if (e != cudaSuccess) {
    printf("FAIL launch %s: %s\n", tag, cudaGetErrorString(e));
    g_fail++; g_cases++;
    return;
  }
  CK(cudaDeviceSynchronize());
  dim3 g((unsigned)((P.n + 127) / 128), (unsigned)P.m);
  reference_kernel<<<g, 128>>>(p, P.ref, P.mag);
  CK(cudaGetLastError());
  CK(cudaMemset(d_bad, 0, 8)); CK(cudaMemset(d_exact, 0, 8)); CK(cudaMemset(d_maxrel, 0, 4));
  compare_kernel<<<1024, 256>>>(P.y, y_type, P.ref, P.mag, g_mode == 1 ? 2e-6f : 0.f, P.m * P.n, d_bad, d_exact,
                                d_maxrel);
  CK(cudaDeviceSynchronize());
  unsigned long long bad = 0, exact = 0;
  float maxrel = 0;
  CK(cudaMemcpy(&bad, d_bad, 8, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(&exact, d_exact, 8, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(&maxrel, d_maxrel, 4, cudaMemcpyDeviceToHost));
  g_cases++;
  bool ok = bad == 0;
  if (!ok) g_fail++;
  printf("%s mode%d %-11s m=%-5lld n=%-5lld k=%-5lld x=%-4s y=%-4s bias=%d outl=%d cnt=%-4d %-10s exact=%llu/%lld maxrel=%.2e\n",
         ok ? "ok  " : "FAIL", g_mode, cname(which), (long long)P.m, (long long)P.n, (long long)P.k, tname(P.x_type),
         tname(y_type), (int)bias, (int)outliers, cnt, tag, exact, (long long)(P.m * P.n), maxrel);
}

// ------------------------------------------------------------------ timing
static float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
static float time_us(F&& f, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  for (int i = 0; i < 5; ++i) f();
  CK(cudaDeviceSynchronize());
  std::vector<float> ts;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms * 1000.0f);
  }
  CK(cudaGetLastError());
  cudaEventDestroy(a); cudaEventDestroy(b);
  return median(ts);
}

// `batch` calls back to back between the events, time per call: the host work of a launch
// (CUTLASS argument setup, the stream-K workspace memset) overlaps the previous call's kernels,
// as it does in an XLA program; single-call timing adds it to every call.
template <class F>
static float time_us_batched(F&& f, int reps, int batch) {
  return time_us([&] { for (int i = 0; i < batch; ++i) f(); }, reps) / batch;
}

// Every configuration (library + sm90_variants.cu) with 0 and 6 outlier columns (mode 0, bf16 out,
// bias, gather included), plus a correctness check of each variant on an odd shape.

static void time_variants() {
  printf("== variants: correctness (mode 0)\n");
  for (int cnt : {0, 6, 200}) {
    Problem P;
    make_problem(P, 1000, 2056, 640, 1, cnt, 9000 + cnt, true);
    for (int which : {5, 6, 7, 8, 9}) check_case(P, which, 1, true, true, (size_t)-1, "variant");
    for (int splits : {2, 3}) {
      g_splits = splits;
      check_case(P, 9, 1, true, true, (size_t)-1, splits == 2 ? "split2" : "split3");
    }
    g_splits = 0;
    free_problem(P);
  }
  printf("== variants: timing (us, median of 20 batches of 10 back-to-back calls; gather + GEMM; cN = N outlier columns)\n");
  const int configs[] = {1, 9, 5, 8, 2};
  printf("    M x    N x    K |");
  for (int w : configs) printf(" %-11s c0/c6 |", cname(w));
  printf("\n");
  struct S { int64_t m, n, k; };
  for (S nk : {S{0, 20480, 5120}, S{0, 16384, 4096}, S{0, 5120, 20480}, S{0, 4096, 16384}, S{0, 49152, 12288},
               S{0, 12288, 49152}}) {
    for (int64_t m : {32, 64, 128, 256, 512, 1024}) {
      if (nk.n * nk.k > (int64_t{1} << 28) && m != 128 && m != 512) continue;  // the 600 MB weights: two sizes
      Problem P;
      make_problem(P, m, nk.n, nk.k, 1, 6, 4242, false);
      printf("%5lldx%5lldx%5lld |", (long long)m, (long long)nk.n, (long long)nk.k);
      for (int w : configs) {
        float t[2];
        for (int c = 0; c < 2; ++c) {
          int cnt = c ? 6 : 0;
          CK(cudaMemcpy(P.count, &cnt, 4, cudaMemcpyHostToDevice));
          Int8GemmParams p = params_of(P, 1, true, true);
          t[c] = time_us_batched([&] { CK(run_cfg(w, p, 0)); }, 20, 10);
        }
        printf(" %7.1f %7.1f |", t[0], t[1]);
      }
      // Stream-K kernel as plain split-K (6 outliers).
      printf(" sk split 2/3/4/6:");
      for (int splits : {2, 3, 4, 6}) {
        g_splits = splits;
        Int8GemmParams p = params_of(P, 1, true, true);
        printf(" %7.1f", time_us_batched([&] { CK(run_cfg(9, p, 0)); }, 20, 10));
        g_splits = 0;
      }
      printf("\n");
      fflush(stdout);
      free_problem(P);
    }
  }
}

// Where the outlier epilogue's time goes in the 64x128 ping-pong kernel at prefill-sized m
// (GEMM alone, gather not re-run; batched timing). With --ncu-pp: one c0 and one c6 launch of
// 128x16384x4096 after warm-up, for a profiler (-k regex:GemmUniversal --launch-skip 6).
static void pp_breakdown(bool ncu_only) {
  struct S { int64_t m, n, k; };
  if (ncu_only) {
    Problem P;
    make_problem(P, 128, 16384, 4096, 1, 6, 77, false);
    Int8GemmParams p = params_of(P, 1, true, true);
    for (int cnt : {0, 6}) {
      CK(cudaMemcpy(P.count, &cnt, 4, cudaMemcpyHostToDevice));
      for (int i = 0; i < 4; ++i) CK(run_cfg(1, p, 0));  // 3 warm-up + the profiled one
    }
    CK(cudaDeviceSynchronize());
    free_problem(P);
    return;
  }
  printf("== pp64x128 outlier breakdown (us, GEMM alone): plain | c0 | c6 | c6 no-arith | c6 no-staging | c6 tensor | gather alone\n");
  for (S s : {S{64, 16384, 4096}, S{128, 16384, 4096}, S{128, 4096, 16384}, S{128, 20480, 5120}, S{128, 5120, 20480},
              S{256, 16384, 4096}}) {
    Problem P;
    make_problem(P, s.m, s.n, s.k, 1, 6, 77, false);
    Int8GemmParams p = params_of(P, 1, true, true);
    CK(run_cfg(1, p, 0));  // fills xo / wo
    g_skip_gather = true;
    auto t = [&](int which, int cnt, int diag, int mode) {
      CK(cudaMemcpy(P.count, &cnt, 4, cudaMemcpyHostToDevice));
      g_diag = diag;
      g_mode = mode;
      float r = time_us_batched([&] { CK(run_cfg(which, p, 0)); }, 20, 10);
      g_diag = 0;
      g_mode = 0;
      return r;
    };
    float plain = t(3, 0, 0, 0), c0 = t(1, 0, 0, 0), c6 = t(1, 6, 0, 0), c6n = t(1, 6, 1, 0), c6s = t(1, 6, 2, 0);
    g_skip_gather = false;
    CK(run_cfg(1, p, 0));
    g_mode = 1;
    CK(run_cfg(1, p, 0));  // mode-1 operands
    g_skip_gather = true;
    float c6t = t(1, 6, 0, 1);
    g_skip_gather = false;
    int c6v = 6;
    CK(cudaMemcpy(P.count, &c6v, 4, cudaMemcpyHostToDevice));
    float tg = time_us_batched([&] {
      CK(sm90::launch_gather_outliers(p, 128, static_cast<float*>(P.ws),
                                      reinterpret_cast<float*>(static_cast<char*>(P.ws) + (P.m * 128 * 4 + 255) / 256 * 256), 0, 0));
    }, 20, 10);
    printf("%5lldx%5lldx%5lld | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %6.1f\n", (long long)s.m, (long long)s.n,
           (long long)s.k, plain, c0, c6, c6n, c6s, c6t, tg);
    fflush(stdout);
    free_problem(P);
  }
}

int main(int argc, char** argv) {
  bool do_check = true, do_time = true, do_variants = false;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--no-check")) do_check = false;
    if (!strcmp(argv[i], "--no-time")) do_time = false;
    if (!strcmp(argv[i], "--variants")) do_variants = true;
    if (!strcmp(argv[i], "--pp-breakdown")) { pp_breakdown(false); return 0; }
    if (!strcmp(argv[i], "--ncu-pp")) { pp_breakdown(true); return 0; }
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, cc %d.%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);
  CK(cudaMalloc(&d_bad, 8)); CK(cudaMalloc(&d_exact, 8)); CK(cudaMalloc(&d_maxrel, 4));

  if (do_check) {
    printf("== correctness (pass: |y - ref| <= 1e-6*|ref| after the cast; ref = exact int32 + CPU-order f32 epilogue)\n");
    for (int mode : {0, 1}) {
    g_mode = mode;
    uint64_t seed = 1000;
    // Full matrix on one odd shape: every config x output type x outlier count.
    {
      const int64_t m = 129, n = 1024, k = 640;
      for (int cnt : {0, 1, 6, 200, 640}) {
        Problem P;
        make_problem(P, m, n, k, (int)(seed % 3), cnt, seed, true);
        seed += 17;
        for (int which : {1, 2, 0})
          for (int yt : {1, 2, 0}) check_case(P, which, yt, (cnt % 2) == 0, true, (size_t)-1, "full-ws");
        check_case(P, 0, 1, true, true, 0, "ws=0");
        check_case(P, 0, 1, true, true, (size_t)(m + n) * 4 * 8 + 512, "ws=ld8");
        if (cnt == 0) check_case(P, 0, 1, true, false, (size_t)-1, "no-outl");
        free_problem(P);
      }
    }
    // More shapes through the launcher (and both configs), odd m, all x types.
    struct S { int64_t m, n, k; };
    for (S s : {S{17, 256, 128}, S{17, 4096, 1024}, S{1, 512, 256}, S{3, 136, 48}, S{64, 2056, 272},
                S{127, 768, 4096}, S{129, 20480, 512}, S{300, 1000, 2048}, S{1000, 2048, 1024},
                S{2049, 4096, 512}, S{4096, 4096, 1024}}) {
      for (int cnt : {0, 1, 6, 200, (int)s.k}) {
        if (cnt > s.k) continue;
        Problem P;
        int xt = (int)(seed % 3), yt = (int)((seed / 3) % 3);
        make_problem(P, s.m, s.n, s.k, xt, cnt, seed, true);
        seed += 31;
        check_case(P, 0, yt, (seed % 2) == 0, true, (size_t)-1, "full-ws");
        check_case(P, (seed % 2) ? 1 : 2, 1, true, true, (size_t)-1, "full-ws");
        free_problem(P);
      }
    }
    }
    g_mode = 0;
    printf("== correctness: %d/%d cases passed (modes 0 and 1)\n", g_cases - g_fail, g_cases);
  }

  if (do_variants) time_variants();
  if (do_time) {
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublasCreate failed\n"); return 1; }
    struct S { int64_t m, n, k; };
    std::vector<std::string> rows;
    char buf[512];
    for (S s : {S{16, 20480, 5120}, S{128, 20480, 5120}, S{256, 20480, 5120}, S{384, 20480, 5120}, S{512, 20480, 5120},
                S{1024, 20480, 5120}, S{4096, 20480, 5120}, S{4096, 16384, 4096}}) {
      const int reps = s.m >= 1024 ? 50 : 200;
      Problem P;
      make_problem(P, s.m, s.n, s.k, 1, 6, 4242, false);
      // cuBLAS bf16: y[m,n] = x[m,k] @ W[n,k]^T, column-major view: C^T[n,m] = W^T... (op T on W)
      __nv_bfloat16 *xb, *wb, *yb;
      CK(cudaMalloc(&xb, s.m * s.k * 2)); CK(cudaMalloc(&wb, s.n * s.k * 2)); CK(cudaMalloc(&yb, s.m * s.n * 2));
      fill_bf16<<<1024, 256>>>(xb, s.m * s.k, 7); fill_bf16<<<1024, 256>>>(wb, s.n * s.k, 8);
      float alpha = 1.0f, beta = 0.0f;
      auto cub = [&] {
        cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)s.n, (int)s.m, (int)s.k, &alpha, wb,
                                         CUDA_R_16BF, (int)s.k, xb, CUDA_R_16BF, (int)s.k, &beta, yb, CUDA_R_16BF,
                                         (int)s.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublas failed %d\n", (int)st); exit(1); }
      };
      float t_cub = time_us(cub, reps);
      auto run = [&](int which, int cnt, bool outl, int nrep = 0) {
        CK(cudaMemcpy(P.count, &cnt, 4, cudaMemcpyHostToDevice));
        Int8GemmParams p = params_of(P, 1, true, outl);
        return time_us([&] { CK(run_cfg(which, p, 0)); }, nrep ? nrep : reps);
      };
      // 6 planted outlier columns (the idx list from make_problem has 6 entries; larger counts
      // reuse a fresh list below).
      float t_pp_plain = run(3, 0, false), t_coop_plain = run(4, 0, false);
      float t_pp0 = run(1, 0, true), t_coop0 = run(2, 0, true);
      float t_l0 = run(0, 0, true);
      g_mode = 0;
      float t_pp6e = run(1, 6, true), t_coop6e = run(2, 6, true), t_l6e = run(0, 6, true);
      g_mode = 1;
      float t_pp6t = run(1, 6, true), t_coop6t = run(2, 6, true), t_l6t = run(0, 6, true);
      free_problem(P);
      make_problem(P, s.m, s.n, s.k, 1, 200, 4243, false);
      float t_l16t = run(0, 16, true);
      float t_l200t = run(0, 200, true, 11);
      g_mode = 0;
      double ops = 2.0 * s.m * s.n * s.k;
      auto tops = [&](float us) { return ops / (us * 1e-6) / 1e12; };
      snprintf(buf, sizeof buf,
               "%5lldx%5lldx%5lld | %7.1f | %7.1f %7.1f | %7.1f %7.1f | %7.1f %7.1f | %7.1f %7.1f | %7.1f %5.0f %5.2fx | %7.1f %5.2fx | %7.1f %5.2fx | %7.1f %5.2fx | %8.1f %5.2fx",
               (long long)s.m, (long long)s.n, (long long)s.k, t_cub, t_pp_plain, t_coop_plain, t_pp0, t_coop0,
               t_pp6e, t_coop6e, t_pp6t, t_coop6t, t_l0, tops(t_l0), t_cub / t_l0, t_l6e, t_cub / t_l6e, t_l6t,
               t_cub / t_l6t, t_l16t, t_cub / t_l16t, t_l200t, t_cub / t_l200t);
      rows.push_back(buf);
      printf("%s\n", buf);
      fflush(stdout);
      free_problem(P);
      cudaFree(xb); cudaFree(wb); cudaFree(yb);
    }
    printf("\n== timing (us, median; bf16 out, bias; ratio = cuBLAS bf16 time / ours)\n");
    printf("plain = no outlier node; cN = N outlier columns; e = exact mode 0 (CUDA cores), t = tensor-core mode 1;\n"
           "launcher = gather + dispatched GEMM (pp if M <= %d)\n", (int)kInt8GemmSm90PingpongMaxM);
    printf("    M x    N x    K |  cuBLAS | pp-plain coop-pl | pp-c0  coop-c0 | pp-c6e coop-c6e | pp-c6t coop-c6t | launch c=0  TOPS ratio | "
           "launch c=6e ratio | launch c=6t ratio | launch c=16t ratio | launch c=200t ratio\n");
    for (auto& r : rows) printf("%s\n", r.c_str());
    // Where the outlier term's time goes (cooperative kernel, 6 outliers).
    printf("\n== outlier cost breakdown (us): coop c=0 | c=6 exact | c=6 no-arith | c=6 exact no-staging | c=6 tensor | c=6 tensor no-staging | gather alone ; pp c=0 | pp c=6 exact\n");
    for (S s : {S{1024, 20480, 5120}, S{4096, 20480, 5120}}) {
      Problem P;
      make_problem(P, s.m, s.n, s.k, 1, 6, 77, false);
      Int8GemmParams p = params_of(P, 1, true, true);
      int c0 = 0, c6 = 6;
      auto t = [&](int which, int cnt, int diag) {
        CK(cudaMemcpy(P.count, &cnt, 4, cudaMemcpyHostToDevice));
        g_diag = diag;
        float r = time_us([&] { CK(run_cfg(which, p, 0)); }, 30);
        g_diag = 0;
        return r;
      };
      float a0 = t(2, c0, 0), a6 = t(2, c6, 0), a6n = t(2, c6, 1), a6s = t(2, c6, 2);
      g_mode = 1;
      float a6t = t(2, c6, 0), a6tn = t(2, c6, 2);
      g_mode = 0;
      CK(cudaMemcpy(P.count, &c6, 4, cudaMemcpyHostToDevice));
      float tg = time_us([&] {
        CK(sm90::launch_gather_outliers(p, 128, static_cast<float*>(P.ws),
                                        reinterpret_cast<float*>(static_cast<char*>(P.ws) + (P.m * 128 * 4 + 255) / 256 * 256), 0, 0));
      }, 30);
      float p0 = t(1, c0, 0), p6 = t(1, c6, 0);
      printf("%5lldx%5lldx%5lld | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %6.1f ; %7.1f | %7.1f\n", (long long)s.m,
             (long long)s.n, (long long)s.k, a0, a6, a6n, a6s, a6t, a6tn, tg, p0, p6);
      free_problem(P);
    }
    cublasDestroy(h);
  }
  if (do_check && g_fail) {
    printf("CORRECTNESS FAILURES: %d\n", g_fail);
    return 2;
  }
  return 0;
}
