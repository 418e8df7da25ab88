// K-quant quantizers (q4_k, q5_k, q6_k): one 256-element super-block at a time.
#pragma once

#include <cstdint>

#include "quant/types.h"

namespace quanta {

// Quantizes 256 floats of `x` into one block of `type` (q4_k, q5_k or q6_k).
void quantize_k_block(DType type, const float* x, uint8_t* block);

}  // namespace quanta
