// Kernel choices passed from Python (jaxint8.KernelOptions, jaxint8/kernel_options.py) as the
// CUDA custom calls' "options" dictionary attribute. Each field is the index of the chosen value
// in the Python class's list of choices (0 = automatic); cuda/dispatch.cu applies them.
#pragma once

#include <cstdint>

namespace jaxint8::cuda {

enum class GemmChoice : int32_t { kAuto = 0, kSkinny = 1, kTiled = 2, kSm90 = 3 };
enum class DecodeChoice : int32_t { kAuto = 0, kToken = 1, kDp4a = 2, kMma = 3 };
enum class FusedQuantChoice : int32_t { kAuto = 0, kAlways = 1, kNever = 2 };
enum class OutliersChoice : int32_t { kAuto = 0, kEpilogue = 1, kGemm = 2, kTensorEpilogue = 3 };
// Index into Sm90Tile (sm90/gemm_sm90.h) plus one; 0 = automatic.
enum class Sm90TileChoice : int32_t { kAuto = 0, kPingpong64x64 = 1, kPingpong64x128 = 2, kPingpong128x128 = 3,
                                      kCooperative128x256 = 4, kPingpong64x160 = 5, kCooperative128x160 = 6 };

// Field order = the attribute decoding order (handlers_cuda.cu).
struct KernelOptions {
  int32_t gemm = 0;         // GemmChoice
  int32_t decode = 0;       // DecodeChoice
  int32_t fused_quant = 0;  // FusedQuantChoice
  int32_t gemv_ksplit = 0;  // K slices per row in the dp4a GEMVs: 0 (auto), 1, 2, 4
  int32_t token_loads = 0;  // loads in flight per lane in the one-token GEMV: 0 (auto), 4, 6
  int32_t outliers = 0;     // OutliersChoice
  int32_t sm90_tile = 0;    // Sm90TileChoice

  GemmChoice gemm_choice() const { return static_cast<GemmChoice>(gemm); }
  DecodeChoice decode_choice() const { return static_cast<DecodeChoice>(decode); }
  FusedQuantChoice fused_quant_choice() const { return static_cast<FusedQuantChoice>(fused_quant); }
  OutliersChoice outliers_choice() const { return static_cast<OutliersChoice>(outliers); }
  Sm90TileChoice sm90_tile_choice() const { return static_cast<Sm90TileChoice>(sm90_tile); }
};

}  // namespace jaxint8::cuda
