// CPU handler for the LLM.int8() matmul: int8 x int8 -> int32 GEMM fused with the
// dequantization, the high-precision outlier product, the bias and the output cast
// (steps 3-6 of docs/design.md).
#include <string>
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

// ---------------------------------------------------------------- int8 dot micro-kernels
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
#define JAXINT8_HAVE_AVX2_PATH 1

__attribute__((target("avx2"))) inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// int8 -> int16 widening then vpmaddwd: exact (|products| <= 127^2, pair sums fit int32).
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
#endif

using TileFn = void (*)(const int8_t* const*, const int8_t* const*, int64_t, int32_t*);

TileFn pick_tile() {
#ifdef JAXINT8_HAVE_AVX2_PATH
  if (__builtin_cpu_supports("avx2")) return tile_avx2;
#endif
  return tile_generic;
}

const TileFn kTile = pick_tile();

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

// Output columns [j0, j1) of batch b for all rows.
void matmul_block(const MatmulArgs& a, int64_t b, int64_t j0, int64_t j1,
                  const std::vector<float>& x_out, int32_t n_out) {
  const int64_t s = a.sh.m, h = a.sh.k, o = a.o, w = j1 - j0;
  const int32_t* idx = a.idx + b * h;
  std::vector<float> w_out(static_cast<size_t>(n_out) * w);  // W_deq[O, j0:j1]
  for (int64_t j = 0; j < w; ++j)
    for (int32_t t = 0; t < n_out; ++t)
      w_out[t * w + j] = dequantize_weight(a.qweight[(j0 + j) * h + idx[t]], a.scale[j0 + j]);
  // Int8 accumulators for the whole block, computed in 2 x 4 tiles; ragged edges reuse the
  // tile with duplicated rows/columns (their extra results are discarded).
  std::vector<int32_t> acc(static_cast<size_t>(s) * w);
  const int8_t* xr[2];
  const int8_t* wr[4];
  int32_t t8[8];
  for (int64_t i = 0; i < s; i += 2) {
    xr[0] = a.xq + (b * s + i) * h;
    xr[1] = a.xq + (b * s + std::min(i + 1, s - 1)) * h;
    for (int64_t j = 0; j < w; j += 4) {
      for (int c = 0; c < 4; ++c) wr[c] = a.qweight + (j0 + std::min(j + c, w - 1)) * h;
      kTile(xr, wr, h, t8);
      for (int r = 0; r < 2 && i + r < s; ++r)
        for (int c = 0; c < 4 && j + c < w; ++c) acc[(i + r) * w + j + c] = t8[r * 4 + c];
    }
  }
  std::vector<float> yrow(w);
  for (int64_t i = 0; i < s; ++i) {
    const int64_t r = b * s + i;
    const float cx = a.row_scale[r];
    const float* xo = x_out.data() + i * n_out;
    for (int64_t j = 0; j < w; ++j) {
      float v = dequantize_acc(acc[i * w + j], cx, a.scale[j0 + j]);
      float out = 0.0f;
      for (int32_t t = 0; t < n_out; ++t) out += xo[t] * w_out[t * w + j];
      v += out;
      if (a.bias) v += a.bias[j0 + j];
      yrow[j] = v;
    }
    store_floats(*a.y, r * o + j0, w, yrow.data());
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

  for (int64_t b = 0; b < a.sh.nb; ++b) {
    const int32_t n_out = a.count[b];
    if (n_out < 0 || n_out > h)
      return ffi::Error::InvalidArgument("outlier_count out of range [0, in_features]");
    for (int32_t t = 0; t < n_out; ++t)
      if (a.idx[b * h + t] < 0 || a.idx[b * h + t] >= h)
        return ffi::Error::InvalidArgument("outlier_idx entry out of range [0, in_features)");
    // Gather the outlier columns X[:, O] once per batch: [s, n_out] in f32.
    std::vector<float> x_out(static_cast<size_t>(s) * n_out), row(h);
    if (n_out > 0) {
      for (int64_t i = 0; i < s; ++i) {
        load_floats(x, (b * s + i) * h, h, row.data());
        for (int32_t t = 0; t < n_out; ++t) x_out[i * n_out + t] = row[a.idx[b * h + t]];
      }
    }
    // Blocks of output columns: one block's int8 weights (block * h bytes) stay in cache
    // while every row streams past them.
    const int64_t block = 64;
    const int64_t n_blocks = (a.o + block - 1) / block;
    const int64_t work_per_block = std::max<int64_t>(1, s * h * block);
    parallel_for(pool, n_blocks, std::max<int64_t>(1, (int64_t{1} << 20) / work_per_block),
                 [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk)
        matmul_block(a, b, blk * block, std::min(a.o, (blk + 1) * block), x_out, n_out);
    });
  }
  return ffi::Error::Success();
}

}  // namespace jaxint8::cpu

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_int8_matmul_cpu, jaxint8::cpu::Int8Matmul,
    jaxint8::bind_int8_matmul(xla::ffi::Ffi::Bind().Ctx<xla::ffi::ThreadPool>()));
