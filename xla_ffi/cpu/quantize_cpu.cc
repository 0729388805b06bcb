// CPU handlers for activation quantization: column absmax, then row-wise int8 with the
// outlier columns split off (steps 1-2 of docs/design.md).
#include <limits>
#include <vector>

#include "common.h"
#include "cpu/float_io.h"
#include "cpu/fp_env.h"
#include "cpu/handlers_cpu.h"
#include "cpu/parallel.h"
#include "handlers.h"

// Hot loops are compiled for AVX-512 and AVX2 too, picked at load time (ifunc). They are
// elementwise operations and exact maxima, so every variant gives the same bits.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define JAXINT8_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef JAXINT8_CLONES
#define JAXINT8_CLONES
#endif

namespace jaxint8::cpu {
namespace {

// max over non-outlier columns of |row[c]|, NaN-propagating like nan_absmax. Eight independent
// partial maxima and a separate NaN flag let the compiler vectorize the loop.
JAXINT8_CLONES float masked_row_absmax(const float* __restrict row, const uint8_t* __restrict outlier,
                        int64_t h) {
  float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  bool nan = false;
  int64_t c = 0;
  for (; c + 8 <= h; c += 8)
    for (int l = 0; l < 8; ++l) {
      float a = outlier[c + l] ? 0.0f : fabsf(row[c + l]);
      nan |= a != a;
      m[l] = a > m[l] ? a : m[l];
    }
  float s = 0.0f;
  for (; c < h; ++c)
    if (!outlier[c]) s = nan_absmax(s, row[c]);
  for (float v : m) s = v > s ? v : s;
  return nan ? std::numeric_limits<float>::quiet_NaN() : s;
}

// Separate function with restrict pointers: int8 stores may alias anything, which would
// otherwise force a reload of every captured value per element and block vectorization.
JAXINT8_CLONES void quantize_row(const float* __restrict row, const uint8_t* __restrict outlier,
                  int8_t* __restrict q, int64_t h, float mult) {
  for (int64_t c = 0; c < h; ++c) {
    int8_t v = quantize_value(row[c], mult);
    q[c] = outlier[c] ? 0 : v;
  }
}

// load_floats with the 16-bit conversions compiled per ISA.
JAXINT8_CLONES void load_row(const ffi::AnyBuffer& x, int64_t offset, int64_t n, float* dst) {
  load_floats(x, offset, n, dst);
}

JAXINT8_CLONES void absmax_update(float* __restrict amax, const float* __restrict row, int64_t w) {
  for (int64_t c = 0; c < w; ++c) amax[c] = nan_absmax(amax[c], row[c]);
}

}  // namespace

ffi::Error ColumnAbsmax(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> col_amax) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_column_absmax(x, *col_amax, &sh));
  ScopedIeeeSubnormals ieee;  // this thread; the pool threads below set their own
  float* out = col_amax->typed_data<float>();
  // Parallel over column blocks: each block owns its slice of the output.
  const int64_t col_block = 256;
  const int64_t n_blocks = (sh.k + col_block - 1) / col_block;
  parallel_for(pool, sh.nb * n_blocks, std::max<int64_t>(1, 4096 / std::max<int64_t>(sh.m, 1)),
               [&](int64_t begin, int64_t end) {
    ScopedIeeeSubnormals ieee_chunk;
    std::vector<float> row(col_block);
    for (int64_t t = begin; t < end; ++t) {
      int64_t b = t / n_blocks, c0 = (t % n_blocks) * col_block;
      int64_t w = std::min(col_block, sh.k - c0);
      float* amax = out + b * sh.k + c0;
      std::fill(amax, amax + w, 0.0f);
      for (int64_t i = 0; i < sh.m; ++i) {
        load_row(x, (b * sh.m + i) * sh.k + c0, w, row.data());
        absmax_update(amax, row.data(), w);
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error QuantizeRows(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer col_amax,
                        ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                        ffi::Result<ffi::AnyBuffer> outlier_idx,
                        ffi::Result<ffi::AnyBuffer> outlier_count, float threshold) {
  ActivationShape sh;
  JAXINT8_RETURN_IF_ERROR(check_quantize_rows(x, col_amax, *xq, *row_scale, *outlier_idx,
                                              *outlier_count, &sh));
  ScopedIeeeSubnormals ieee;  // this thread; the pool threads below set their own
  const float* amax = col_amax.typed_data<float>();
  int8_t* q = xq->typed_data<int8_t>();
  float* rs = row_scale->typed_data<float>();
  int32_t* idx = outlier_idx->typed_data<int32_t>();
  int32_t* count = outlier_count->typed_data<int32_t>();

  // Outlier lists: one pass over [nb, h].
  std::vector<uint8_t> outlier(sh.nb * sh.k);
  for (int64_t b = 0; b < sh.nb; ++b) {
    int32_t n = 0;
    for (int64_t c = 0; c < sh.k; ++c) {
      bool o = is_outlier(amax[b * sh.k + c], threshold);
      outlier[b * sh.k + c] = o;
      if (o) idx[b * sh.k + n++] = static_cast<int32_t>(c);
    }
    for (int64_t c = n; c < sh.k; ++c) idx[b * sh.k + c] = -1;
    count[b] = n;
  }

  // Rows are independent: scale over the non-outlier columns, then quantize.
  parallel_for(pool, sh.nb * sh.m, std::max<int64_t>(1, 16384 / std::max<int64_t>(sh.k, 1)),
               [&](int64_t begin, int64_t end) {
    ScopedIeeeSubnormals ieee_chunk;
    std::vector<float> row(sh.k);
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* o = outlier.data() + (r / std::max<int64_t>(sh.m, 1)) * sh.k;
      load_row(x, r * sh.k, sh.k, row.data());
      rs[r] = masked_row_absmax(row.data(), o, sh.k);
      float mult = quant_multiplier(rs[r]);
      quantize_row(row.data(), o, q + r * sh.k, sh.k, mult);
    }
  });
  return ffi::Error::Success();
}

}  // namespace jaxint8::cpu

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_column_absmax_cpu, jaxint8::cpu::ColumnAbsmax,
    jaxint8::bind_column_absmax(xla::ffi::Ffi::Bind().Ctx<xla::ffi::ThreadPool>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxint8_quantize_rows_cpu, jaxint8::cpu::QuantizeRows,
    jaxint8::bind_quantize_rows(xla::ffi::Ffi::Bind().Ctx<xla::ffi::ThreadPool>()));
