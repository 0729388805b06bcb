// CPU handler for the LLM.int8() matmul: int8 x int8 -> int32 GEMM fused with the
// dequantization, the high-precision outlier product, the bias and the output cast
// (steps 3-6 of docs/design.md).
//
// Work is split into tasks of (64 output columns) x (a range of rows). Per task:
//   1. int32 accumulators [rows][64]: a packed-weight GEMM (AVX-512 VNNI, or AVX2 vpmaddwd on
//      int16-widened operands) for prompt-sized inputs, a 2 x 4 dot-product tile otherwise.
//      Integer arithmetic: every path gives the exact int32 result.
//   2. the outlier part [rows][64] in float32 from compact operands (x[:, O] gathered once per
//      call, the task's dequantized outlier weights gathered per task), vectorized across
//      output columns: per element the sum runs over t ascending, separate mul and add, so the
//      result is the scalar rule of docs/design.md bit for bit. This file must be compiled
//      without floating-point contraction (CMakeLists.txt: -ffp-contract=off).
//   3. the epilogue: dequantize, add the outlier part, then the bias, cast.
#include <algorithm>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <vector>

#include "common.h"
#include "cpu/float_io.h"
#include "cpu/handlers_cpu.h"
#include "cpu/parallel.h"
#include "handlers.h"

namespace jaxint8::cpu {
namespace {

constexpr int64_t kBlock = 64;  // output columns per task (the packed weight panel's width)
constexpr int64_t kRowAlign = 12;  // row chunks are multiples of every row tile (6, 4, 2)
// Below this many rows the weight-packing pass costs more than it saves: use the dot tile.
constexpr int64_t kMinPackedRows = 8;

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---------------------------------------------------------------- int8 dot tile (small m)
// A 2 x 4 tile: two activation rows against four weight rows (all K-contiguous), so each
// loaded vector is used four (activation) or two (weight) times.

void tile_generic(const int8_t* const* x, const int8_t* const* w, int64_t n, int32_t* acc) {
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 4; ++c) {
      int32_t a = 0;
      for (int64_t k = 0; k < n; ++k) a += int16_t(x[r][k]) * int16_t(w[c][k]);
      acc[r * 4 + c] = a;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define JAXINT8_HAVE_X86_PATHS 1

__attribute__((target("avx2"))) inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// int8 -> int16 widening then vpmaddwd: exact (|products| <= 128^2, pair sums fit int32).
__attribute__((target("avx2"))) void tile_avx2(const int8_t* const* x, const int8_t* const* w,
                                               int64_t n, int32_t* acc) {
  __m256i a[8];
  for (auto& v : a) v = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    __m256i x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[0] + k)));
    __m256i x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[1] + k)));
    for (int c = 0; c < 4; ++c) {
      __m256i wc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[c] + k)));
      a[c] = _mm256_add_epi32(a[c], _mm256_madd_epi16(x0, wc));
      a[4 + c] = _mm256_add_epi32(a[4 + c], _mm256_madd_epi16(x1, wc));
    }
  }
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 4; ++c) {
      int32_t v = hsum(a[r * 4 + c]);
      for (int64_t kk = k; kk < n; ++kk) v += int16_t(x[r][kk]) * int16_t(w[c][kk]);
      acc[r * 4 + c] = v;
    }
}

// ---------------------------------------------------------------- packed GEMM, AVX-512 VNNI
// vpdpbusd multiplies unsigned by signed bytes, so the activations are biased: u = x + 128
// (x ^ 0x80) and acc = sum u*w - 128 * sum w. All int32 arithmetic wraps (vpdpbusd does not
// saturate), and the true result fits int32 (docs/design.md, width limit), so it is exact.
// Weight panel: [hp / 4][64 columns][4 k] int8; activations: [rows][hp] uint8.

__attribute__((target("avx512f,avx512bw,avx512vnni")))
void gemm_vnni(const uint8_t* xu, int64_t hp, const int8_t* wp, const int32_t* comp, int64_t rows,
               int32_t* acc) {
  constexpr int MR = 6;
  const int64_t k4 = hp / 4;
  const __m512i cp0 = _mm512_loadu_si512(comp), cp1 = _mm512_loadu_si512(comp + 16),
                cp2 = _mm512_loadu_si512(comp + 32), cp3 = _mm512_loadu_si512(comp + 48);
  for (int64_t i = 0; i < rows; i += MR) {
    const uint8_t* xr[MR];
    for (int r = 0; r < MR; ++r) xr[r] = xu + std::min<int64_t>(i + r, rows - 1) * hp;
    __m512i c[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < 4; ++v) c[r][v] = _mm512_setzero_si512();
    for (int64_t k = 0; k < k4; ++k) {
      const int8_t* wk = wp + k * 256;
      const __m512i b0 = _mm512_loadu_si512(wk), b1 = _mm512_loadu_si512(wk + 64),
                    b2 = _mm512_loadu_si512(wk + 128), b3 = _mm512_loadu_si512(wk + 192);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        const __m512i a = _mm512_set1_epi32(load_i32(xr[r] + 4 * k));
        c[r][0] = _mm512_dpbusd_epi32(c[r][0], a, b0);
        c[r][1] = _mm512_dpbusd_epi32(c[r][1], a, b1);
        c[r][2] = _mm512_dpbusd_epi32(c[r][2], a, b2);
        c[r][3] = _mm512_dpbusd_epi32(c[r][3], a, b3);
      }
    }
    for (int r = 0; r < MR && i + r < rows; ++r) {
      int32_t* dst = acc + (i + r) * kBlock;
      _mm512_storeu_si512(dst, _mm512_sub_epi32(c[r][0], cp0));
      _mm512_storeu_si512(dst + 16, _mm512_sub_epi32(c[r][1], cp1));
      _mm512_storeu_si512(dst + 32, _mm512_sub_epi32(c[r][2], cp2));
      _mm512_storeu_si512(dst + 48, _mm512_sub_epi32(c[r][3], cp3));
    }
  }
}

// ---------------------------------------------------------------- packed GEMM, AVX2
// vpmaddwd on int16-widened operands (exact: |pair sums| <= 2 * 128^2). Weight panel:
// [hp / 2][64 columns][2 k] int16; activations: [rows][hp] int16. A 4 x 16 register tile.
__attribute__((target("avx2")))
void gemm_avx2(const int16_t* xw, int64_t hp, const int16_t* wp, int64_t rows, int32_t* acc) {
  constexpr int MR = 4;
  const int64_t k2 = hp / 2;
  for (int64_t i = 0; i < rows; i += MR) {
    const int16_t* xr[MR];
    for (int r = 0; r < MR; ++r) xr[r] = xw + std::min<int64_t>(i + r, rows - 1) * hp;
    for (int cg = 0; cg < 4; ++cg) {
      __m256i c[MR][2];
      for (int r = 0; r < MR; ++r) c[r][0] = c[r][1] = _mm256_setzero_si256();
      const int16_t* wc = wp + cg * 32;
      for (int64_t k = 0; k < k2; ++k) {
        const int16_t* wk = wc + k * 128;
        const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wk));
        const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wk + 16));
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          const __m256i a = _mm256_set1_epi32(load_i32(xr[r] + 2 * k));
          c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(a, b0));
          c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(a, b1));
        }
      }
      for (int r = 0; r < MR && i + r < rows; ++r) {
        int32_t* dst = acc + (i + r) * kBlock + cg * 16;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), c[r][0]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8), c[r][1]);
      }
    }
  }
}

// ---------------------------------------------------------------- outlier part
// out[i][j] = sum over t ascending of xo[i][t] * wo[t][j] (float32, mul then add, starting from
// +0.0f), for j in [0, 64): vectorized across j, so every element keeps the scalar order.

__attribute__((target("avx512f")))
void outliers_avx512(const float* xo, int32_t n_out, const float* wo, int64_t rows, float* out) {
  constexpr int MR = 6;
  for (int64_t i = 0; i < rows; i += MR) {
    const float* xr[MR];
    for (int r = 0; r < MR; ++r) xr[r] = xo + std::min<int64_t>(i + r, rows - 1) * n_out;
    __m512 c[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < 4; ++v) c[r][v] = _mm512_setzero_ps();
    for (int32_t t = 0; t < n_out; ++t) {
      const float* wt = wo + int64_t{t} * kBlock;
      const __m512 b0 = _mm512_loadu_ps(wt), b1 = _mm512_loadu_ps(wt + 16),
                   b2 = _mm512_loadu_ps(wt + 32), b3 = _mm512_loadu_ps(wt + 48);
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) {
        const __m512 a = _mm512_set1_ps(xr[r][t]);
        c[r][0] = _mm512_add_ps(c[r][0], _mm512_mul_ps(a, b0));
        c[r][1] = _mm512_add_ps(c[r][1], _mm512_mul_ps(a, b1));
        c[r][2] = _mm512_add_ps(c[r][2], _mm512_mul_ps(a, b2));
        c[r][3] = _mm512_add_ps(c[r][3], _mm512_mul_ps(a, b3));
      }
    }
    for (int r = 0; r < MR && i + r < rows; ++r)
      for (int v = 0; v < 4; ++v) _mm512_storeu_ps(out + (i + r) * kBlock + 16 * v, c[r][v]);
  }
}

__attribute__((target("avx2")))
void outliers_avx2(const float* xo, int32_t n_out, const float* wo, int64_t rows, float* out) {
  constexpr int MR = 4;
  for (int64_t i = 0; i < rows; i += MR) {
    const float* xr[MR];
    for (int r = 0; r < MR; ++r) xr[r] = xo + std::min<int64_t>(i + r, rows - 1) * n_out;
    for (int cg = 0; cg < 4; ++cg) {
      __m256 c[MR][2];
      for (int r = 0; r < MR; ++r) c[r][0] = c[r][1] = _mm256_setzero_ps();
      for (int32_t t = 0; t < n_out; ++t) {
        const float* wt = wo + int64_t{t} * kBlock + cg * 16;
        const __m256 b0 = _mm256_loadu_ps(wt), b1 = _mm256_loadu_ps(wt + 8);
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          const __m256 a = _mm256_set1_ps(xr[r][t]);
          c[r][0] = _mm256_add_ps(c[r][0], _mm256_mul_ps(a, b0));
          c[r][1] = _mm256_add_ps(c[r][1], _mm256_mul_ps(a, b1));
        }
      }
      for (int r = 0; r < MR && i + r < rows; ++r) {
        _mm256_storeu_ps(out + (i + r) * kBlock + cg * 16, c[r][0]);
        _mm256_storeu_ps(out + (i + r) * kBlock + cg * 16 + 8, c[r][1]);
      }
    }
  }
}
#endif  // x86-64

void outliers_generic(const float* xo, int32_t n_out, const float* wo, int64_t rows, float* out) {
  for (int64_t i = 0; i < rows; ++i) {
    float* o = out + i * kBlock;
    for (int64_t j = 0; j < kBlock; ++j) o[j] = 0.0f;
    for (int32_t t = 0; t < n_out; ++t) {
      const float a = xo[i * n_out + t];
      const float* wt = wo + int64_t{t} * kBlock;
      for (int64_t j = 0; j < kBlock; ++j) o[j] = o[j] + a * wt[j];
    }
  }
}

// ---------------------------------------------------------------- dispatch
enum class Gemm { kTile, kAvx2, kVnni };

struct Isa {
  Gemm gemm = Gemm::kTile;
  void (*tile)(const int8_t* const*, const int8_t* const*, int64_t, int32_t*) = tile_generic;
  void (*outliers)(const float*, int32_t, const float*, int64_t, float*) = outliers_generic;
};

// The widest paths this CPU supports (chosen once, at load).
Isa pick_isa() {
  Isa isa;
#ifdef JAXINT8_HAVE_X86_PATHS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) {
    isa.gemm = Gemm::kAvx2;
    isa.tile = tile_avx2;
    isa.outliers = outliers_avx2;
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vnni"))
    isa.gemm = Gemm::kVnni;
  if (__builtin_cpu_supports("avx512f")) isa.outliers = outliers_avx512;
#endif
  return isa;
}

const Isa kIsa = pick_isa();

// ---------------------------------------------------------------- the handler
struct MatmulArgs {
  ActivationShape sh;
  int64_t o = 0;
  const int8_t* xq;
  const float* row_scale;
  const ffi::AnyBuffer* x;
  const int32_t* idx;
  const int32_t* count;
  const int8_t* qweight;
  const float* scale;
  const float* bias;  // nullptr: no bias
  ffi::AnyBuffer* y;
};

// Per batch element, shared read-only by its tasks.
struct BatchData {
  int64_t b = 0;
  Gemm gemm = Gemm::kTile;
  int64_t hp = 0;              // padded in_features of the packed activations
  std::vector<uint8_t> xu;     // VNNI: [s][hp] xq ^ 0x80
  std::vector<int16_t> xw;     // AVX2: [s][hp] int16(xq)
  std::vector<float> x_out;    // [s][n_out] x[:, O] in f32
  int32_t n_out = 0;
};

// Output columns [j0, j0 + w) and rows [r0, r1) of batch element d.b.
void matmul_task(const MatmulArgs& a, const BatchData& d, int64_t j0, int64_t r0, int64_t r1) {
  const int64_t s = a.sh.m, h = a.sh.k, o = a.o, w = std::min(kBlock, o - j0), hp = d.hp;
  const int64_t rows = r1 - r0;
  const int32_t n_out = d.n_out;
  const int32_t* idx = a.idx + d.b * h;
  const int8_t* wq = a.qweight + j0 * h;  // row j: wq + j * h
  std::vector<int32_t> acc(static_cast<size_t>(rows) * kBlock);

  // 1. int32 accumulators.
  switch (d.gemm) {
#ifdef JAXINT8_HAVE_X86_PATHS
    case Gemm::kVnni: {
      std::vector<int8_t> wp(static_cast<size_t>(hp) * kBlock, 0);
      alignas(64) int32_t comp[kBlock] = {};
      for (int64_t j = 0; j < w; ++j) {
        const int8_t* src = wq + j * h;
        int64_t sum = 0;
        for (int64_t k = 0; k < h; ++k) sum += src[k];
        comp[j] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(sum * 128)));
        int64_t k = 0;
        for (; k + 4 <= h; k += 4) std::memcpy(&wp[k * kBlock + j * 4], src + k, 4);
        for (; k < h; ++k) wp[(k >> 2) * (4 * kBlock) + j * 4 + (k & 3)] = src[k];
      }
      gemm_vnni(d.xu.data() + r0 * hp, hp, wp.data(), comp, rows, acc.data());
      break;
    }
    case Gemm::kAvx2: {
      std::vector<int16_t> wp(static_cast<size_t>(hp) * kBlock, 0);
      for (int64_t j = 0; j < w; ++j) {
        const int8_t* src = wq + j * h;
        for (int64_t k = 0; k < h; ++k) wp[(k >> 1) * (2 * kBlock) + j * 2 + (k & 1)] = src[k];
      }
      gemm_avx2(d.xw.data() + r0 * hp, hp, wp.data(), rows, acc.data());
      break;
    }
#endif
    default: {
      // Ragged edges reuse the tile with duplicated rows/columns (extra results discarded).
      const int8_t* xr[2];
      const int8_t* wr[4];
      int32_t t8[8];
      const int8_t* xb = a.xq + (d.b * s) * h;
      for (int64_t i = r0; i < r1; i += 2) {
        xr[0] = xb + i * h;
        xr[1] = xb + std::min(i + 1, r1 - 1) * h;
        for (int64_t j = 0; j < w; j += 4) {
          for (int c = 0; c < 4; ++c) wr[c] = wq + std::min(j + c, w - 1) * h;
          kIsa.tile(xr, wr, h, t8);
          for (int r = 0; r < 2 && i + r < r1; ++r)
            for (int c = 0; c < 4 && j + c < w; ++c) acc[(i - r0 + r) * kBlock + j + c] = t8[r * 4 + c];
        }
      }
    }
  }

  // 2. the outlier part (zero without outliers: v + 0.0f below, as the scalar rule).
  std::vector<float> out(static_cast<size_t>(rows) * kBlock, 0.0f);
  if (n_out > 0) {
    std::vector<float> wo(static_cast<size_t>(n_out) * kBlock, 0.0f);  // W_deq[O, j0:j0+64]
    for (int64_t j = 0; j < w; ++j) {
      const int8_t* src = wq + j * h;
      const float cs = a.scale[j0 + j];
      for (int32_t t = 0; t < n_out; ++t) wo[int64_t{t} * kBlock + j] = dequantize_weight(src[idx[t]], cs);
    }
    kIsa.outliers(d.x_out.data() + r0 * n_out, n_out, wo.data(), rows, out.data());
  }

  // 3. epilogue.
  float yrow[kBlock];
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t r = d.b * s + i;
    const float cx = a.row_scale[r];
    const int32_t* ai = acc.data() + (i - r0) * kBlock;
    const float* oi = out.data() + (i - r0) * kBlock;
    for (int64_t j = 0; j < w; ++j) {
      float v = dequantize_acc(ai[j], cx, a.scale[j0 + j]);
      v += oi[j];
      if (a.bias) v += a.bias[j0 + j];
      yrow[j] = v;
    }
    store_floats(*a.y, r * o + j0, w, yrow);
  }
}

}  // namespace

ffi::Error Int8Matmul(ffi::ThreadPool pool, ffi::AnyBuffer xq, ffi::AnyBuffer row_scale,
                      ffi::AnyBuffer x, ffi::AnyBuffer outlier_idx, ffi::AnyBuffer outlier_count,
                      ffi::AnyBuffer qweight, ffi::AnyBuffer scale, ffi::AnyBuffer bias,
                      ffi::Result<ffi::AnyBuffer> y) {
  MatmulArgs a;
  JAXINT8_RETURN_IF_ERROR(check_int8_matmul(xq, row_scale, x, outlier_idx, outlier_count, qweight,
                                            scale, bias, *y, &a.sh, &a.o));
  a.xq = xq.typed_data<int8_t>();
  a.row_scale = row_scale.typed_data<float>();
  a.x = &x;
  a.idx = outlier_idx.typed_data<int32_t>();
  a.count = outlier_count.typed_data<int32_t>();
  a.qweight = qweight.typed_data<int8_t>();
  a.scale = scale.typed_data<float>();
  a.bias = bias.element_count() ? bias.typed_data<float>() : nullptr;
  a.y = &(*y);
  const int64_t s = a.sh.m, h = a.sh.k;

  BatchData d;
  d.gemm = s >= kMinPackedRows ? kIsa.gemm : Gemm::kTile;
  d.hp = d.gemm == Gemm::kVnni ? (h + 3) / 4 * 4 : d.gemm == Gemm::kAvx2 ? (h + 1) / 2 * 2 : h;
  const int64_t hp = d.hp;
  for (int64_t b = 0; b < a.sh.nb; ++b) {
    d.b = b;
    const int32_t n_out = a.count[b];
    if (n_out < 0 || n_out > h)
      return ffi::Error::InvalidArgument("outlier_count out of range [0, in_features]");
    for (int32_t t = 0; t < n_out; ++t)
      if (a.idx[b * h + t] < 0 || a.idx[b * h + t] >= h)
        return ffi::Error::InvalidArgument("outlier_idx entry out of range [0, in_features)");
    d.n_out = n_out;
    if (s == 0 || a.o == 0) continue;
    const int8_t* xb = a.xq + b * s * h;
    // Packed activations (k padded with zeros, whose weights are zero too).
    if (d.gemm == Gemm::kVnni) {
      d.xu.assign(static_cast<size_t>(s) * hp, uint8_t{0x80});
      for (int64_t i = 0; i < s; ++i) {
        uint8_t* dst = d.xu.data() + i * hp;
        const int8_t* src = xb + i * h;
        for (int64_t k = 0; k < h; ++k) dst[k] = static_cast<uint8_t>(src[k]) ^ uint8_t{0x80};
      }
    } else if (d.gemm == Gemm::kAvx2) {
      d.xw.assign(static_cast<size_t>(s) * hp, int16_t{0});
      for (int64_t i = 0; i < s; ++i) {
        int16_t* dst = d.xw.data() + i * hp;
        const int8_t* src = xb + i * h;
        for (int64_t k = 0; k < h; ++k) dst[k] = src[k];
      }
    }
    // The outlier columns X[:, O] gathered once per batch element: [s, n_out] in f32.
    d.x_out.assign(static_cast<size_t>(s) * n_out, 0.0f);
    if (n_out > 0) {
      std::vector<float> row(h);
      const int32_t* idx = a.idx + b * h;
      for (int64_t i = 0; i < s; ++i) {
        load_floats(x, (b * s + i) * h, h, row.data());
        for (int32_t t = 0; t < n_out; ++t) d.x_out[i * n_out + t] = row[idx[t]];
      }
    }
    // Tasks: column blocks (a block's packed weights stay in L2 while its rows stream past),
    // split by rows too when there are fewer blocks than twice the workers.
    const int64_t n_blocks = (a.o + kBlock - 1) / kBlock;
    const int64_t workers = std::max<int64_t>(pool.num_threads(), 0) + 1;
    int64_t row_chunks = 1;
    if (n_blocks < 2 * workers) {
      row_chunks = std::min((2 * workers + n_blocks - 1) / n_blocks,
                            std::max<int64_t>(1, s / (4 * kRowAlign)));
    }
    int64_t chunk_rows = (s + row_chunks - 1) / row_chunks;
    chunk_rows = (chunk_rows + kRowAlign - 1) / kRowAlign * kRowAlign;
    row_chunks = (s + chunk_rows - 1) / chunk_rows;
    const int64_t n_tasks = n_blocks * row_chunks;
    const int64_t work_per_task = std::max<int64_t>(1, chunk_rows * (h + n_out) * kBlock);
    parallel_for(pool, n_tasks, std::max<int64_t>(1, (int64_t{1} << 20) / work_per_task),
                 [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t blk = task / row_chunks, rc = task % row_chunks;
        const int64_t r0 = rc * chunk_rows, r1 = std::min(s, r0 + chunk_rows);
        if (r0 < r1) matmul_task(a, d, blk * kBlock, r0, r1);
      }
    });
  }
  return ffi::Error::Success();
}

}  // namespace jaxint8::cpu

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_int8_matmul_cpu, jaxint8::cpu::Int8Matmul,
    jaxint8::bind_int8_matmul(xla::ffi::Ffi::Bind().Ctx<xla::ffi::ThreadPool>()));
