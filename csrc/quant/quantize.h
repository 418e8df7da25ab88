// Reference quantizers: float rows to ggml blocks. The 32-block formats,
// f16 and bf16 follow ggml's reference arithmetic exactly (bit-exact with
// gguf-py); the k-quants search their scales (see quantize_k.cpp).
#pragma once

#include <cstdint>

#include "quant/types.h"

namespace quanta {

// Quantizes `n` floats (a multiple of the block size) into `dst`, which holds
// row_bytes(type, n) bytes. Throws Unsupported for types with no quantizer.
void quantize_row(DType type, const float* src, void* dst, int64_t n);
bool can_quantize(DType type);

}  // namespace quanta
