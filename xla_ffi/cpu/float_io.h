// Host-side conversion between f32 and the 16-bit float formats of the FFI buffers.
#pragma once

#include <cstdint>
#include <cstring>

#include "common.h"

namespace jaxint8::cpu {

inline float bf16_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as XLA's convert does; NaN stays a (quiet) NaN.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // Inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do { man <<= 1; ++e; } while (!(man & 0x400u));
    u = sign | ((112u - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);        // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);       // overflow -> Inf
  if (a < 0x38800000u) {                                                   // subnormal / zero
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - static_cast<int>(a >> 23);                           // 14..24
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t r = a - 0x38000000u;                                            // rebias exponent
  uint32_t half = r >> 13, rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

// Reads n elements of a float buffer starting at element `offset` into f32.
inline void load_floats(const ffi::AnyBuffer& b, int64_t offset, int64_t n, float* dst) {
  switch (b.element_type()) {
    case ffi::DataType::F32:
      std::memcpy(dst, static_cast<const float*>(b.untyped_data()) + offset, n * sizeof(float));
      break;
    case ffi::DataType::BF16: {
      auto* src = static_cast<const uint16_t*>(b.untyped_data()) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
      break;
    }
    case ffi::DataType::F16: {
      auto* src = static_cast<const uint16_t*>(b.untyped_data()) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_float(src[i]);
      break;
    }
    default:
      break;  // callers validate the type first (require_float)
  }
}

// Writes n f32 values into a float buffer at element `offset`, rounding to its type.
inline void store_floats(ffi::AnyBuffer& b, int64_t offset, int64_t n, const float* src) {
  switch (b.element_type()) {
    case ffi::DataType::F32:
      std::memcpy(static_cast<float*>(b.untyped_data()) + offset, src, n * sizeof(float));
      break;
    case ffi::DataType::BF16: {
      auto* dst = static_cast<uint16_t*>(b.untyped_data()) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
      break;
    }
    case ffi::DataType::F16: {
      auto* dst = static_cast<uint16_t*>(b.untyped_data()) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = float_to_f16(src[i]);
      break;
    }
    default:
      break;
  }
}

}  // namespace jaxint8::cpu
