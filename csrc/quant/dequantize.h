// Scalar reference dequantisation: the ground truth that every fast kernel is
// tested against. Written for clarity and bit-exactness with ggml's reference
// (and so gguf-py), not speed.
#pragma once

#include <cstdint>

#include "quant/types.h"

namespace quanta {

// Dequantizes `n` elements (a multiple of the block size) from `src` into `dst`.
// Throws Unsupported for types with no dequantizer (the iq* family, ...).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

}  // namespace quanta
