// The 12-byte packing of eight 6-bit scales and eight 6-bit mins in q4_k and
// q5_k blocks (ggml's layout): scale j < 4 is the low 6 bits of byte j, min
// j < 4 of byte j + 4; for j >= 4 the low 4 bits come from byte j + 4 (scale:
// low nibble, min: high nibble) and the top 2 bits from the spare top bits of
// bytes j - 4 (scale) and j (min).
#pragma once

#include <cstdint>

#include "quant/fp16.h"  // QUANTA_HD

namespace quanta {

QUANTA_HD static inline void k4_scale_min(const uint8_t* packed, int j, int* scale, int* min) {
    if (j < 4) {
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        *scale = (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4);
        *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
    }
}

}  // namespace quanta
