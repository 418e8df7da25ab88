// Half and bfloat16 conversions, bit-exact with IEEE-754 round-to-nearest-even
// (the same results as numpy's astype and ggml's reference code).
//
// Every function is `static inline` on purpose: the per-ISA kernel files
// include this header too, and internal linkage keeps an AVX-512 compiled copy
// from being merged into code that runs on older CPUs.
#pragma once

#include <cstdint>
#include <cstring>

// Host and device code where the CUDA compiler reads this header (kernels/ through quant/block_dequant.h).
#if defined(__CUDACC__)
#define QUANTA_HD __host__ __device__
#else
#define QUANTA_HD
#endif

namespace quanta {

QUANTA_HD static inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

QUANTA_HD static inline float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

QUANTA_HD static inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));  // inf, nan
    if (exp != 0) return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return f32_from_bits(sign);  // signed zero
    // Subnormal half: normalise into a float exponent.
    int e = 113;
    while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --e;
    }
    return f32_from_bits(sign | ((uint32_t)e << 23) | ((mant & 0x3ffu) << 13));
}

static inline uint16_t f32_to_f16(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // nan
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to inf (>= 65520)
    if (abs >= 0x38800000u) {  // normal half
        const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u) - 0x38000000u;
        return (uint16_t)(sign | (rounded >> 13));
    }
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal: zero
    // Subnormal half: shift the full mantissa down with round-to-nearest-even.
    const uint32_t e = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t q = mant >> shift;
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return (uint16_t)(sign | q);
}

// An f16 stored at p (any alignment), and storing one.
QUANTA_HD static inline float f16_load(const void* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

static inline void f16_store(void* p, float v) {
    const uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
}

QUANTA_HD static inline float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

static inline uint16_t f32_to_bf16(float f) {
    const uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);  // quiet nan
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace quanta
