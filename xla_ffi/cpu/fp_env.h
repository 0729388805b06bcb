// IEEE subnormals inside a CPU handler. XLA's CPU runtime runs its threads with the FTZ
// (flush-to-zero) and DAZ (denormals-are-zero) bits set, so a subnormal input would count as 0:
// a row whose entries are all subnormal got row scale 0 on the CPU but its subnormal absmax on
// CUDA (fp32 without -ftz). The quantization handlers clear the bits for their scope, per thread,
// and restore the caller's mode on exit.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define JAXINT8_FP_ENV_MXCSR 1
#elif defined(__aarch64__)
#define JAXINT8_FP_ENV_FPCR 1
#endif

namespace jaxint8::cpu {

class ScopedIeeeSubnormals {
 public:
  ScopedIeeeSubnormals() {
#if defined(JAXINT8_FP_ENV_MXCSR)
    saved_ = _mm_getcsr();
    const unsigned int kFtz = 1u << 15, kDaz = 1u << 6;
    if (saved_ & (kFtz | kDaz)) _mm_setcsr(saved_ & ~(kFtz | kDaz));
#elif defined(JAXINT8_FP_ENV_FPCR)
    uint64_t fpcr;
    asm volatile("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    const uint64_t kFz = uint64_t{1} << 24;
    if (fpcr & kFz) asm volatile("msr fpcr, %0" : : "r"(fpcr & ~kFz));
#endif
  }
  ~ScopedIeeeSubnormals() {
#if defined(JAXINT8_FP_ENV_MXCSR)
    _mm_setcsr(saved_);
#elif defined(JAXINT8_FP_ENV_FPCR)
    asm volatile("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  ScopedIeeeSubnormals(const ScopedIeeeSubnormals&) = delete;
  ScopedIeeeSubnormals& operator=(const ScopedIeeeSubnormals&) = delete;

 private:
#if defined(JAXINT8_FP_ENV_FPCR)
  uint64_t saved_ = 0;
#else
  unsigned int saved_ = 0;
#endif
};

}  // namespace jaxint8::cpu
