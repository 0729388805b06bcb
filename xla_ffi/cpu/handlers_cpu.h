// The CPU handler bodies, shared by their own FFI symbols and the fused LLM.int8() matmul
// (cpu/fused_cpu.cc), which runs the three in sequence inside one custom call.
#pragma once

#include "common.h"

namespace jaxint8::cpu {

ffi::Error ColumnAbsmax(ffi::ThreadPool pool, ffi::AnyBuffer x,
                        ffi::Result<ffi::AnyBuffer> col_amax);

ffi::Error QuantizeRows(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer col_amax,
                        ffi::Result<ffi::AnyBuffer> xq, ffi::Result<ffi::AnyBuffer> row_scale,
                        ffi::Result<ffi::AnyBuffer> outlier_idx,
                        ffi::Result<ffi::AnyBuffer> outlier_count, float threshold);

ffi::Error Int8Matmul(ffi::ThreadPool pool, ffi::AnyBuffer xq, ffi::AnyBuffer row_scale,
                      ffi::AnyBuffer x, ffi::AnyBuffer outlier_idx, ffi::AnyBuffer outlier_count,
                      ffi::AnyBuffer qweight, ffi::AnyBuffer scale, ffi::AnyBuffer bias,
                      ffi::Result<ffi::AnyBuffer> y);

}  // namespace jaxint8::cpu
