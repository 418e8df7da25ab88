// Every quantized block type read as groups of 16 consecutive elements, each
// element w = a * q + b with q an int8 code and a, b floats of the group:
// q4_0 a = d, q = nibble - 8; q4_k a = d * scale, b = -dmin * min; q6_k
// a = d * scale, q = code - 32; and so on. The CUDA matmul kernel dots these
// codes with the flat 8-bit activations of quant/act_flat.h (dp4a), which
// needs only da * (a * sum(q * qa) + b * sum(qa)) per group, whatever the
// type. Host and device code (QUANTA_HD), so tests/cpp/kernel_check.cpp checks
// on the CPU that a * q + b is, bit for bit, what quant/block_dequant.h
// dequantizes (with fused multiply-adds off, as both are built), and that the
// groups' shares add up to the row's dot product.
#pragma once

#include <cstdint>
#include <cstring>

#include "quant/act_flat.h"
#include "quant/block_dequant.h"
#include "quant/types.h"

namespace quanta::block {

constexpr int kGroup = 16;  // the k-quants' smallest scale group; every block is a whole number of them

struct Int8Group {
    alignas(16) int8_t q[kGroup];  // aligned: the dot below reads them as four 32-bit words
    float a, b;
};

// Groups per block of `type`: 2 for the 32-element types, 16 for the k-quants, 0 for the others.
QUANTA_HD constexpr int groups_per_block(DType type) {
    switch (type) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: return 2;
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: return 16;
        default: return 0;
    }
}

// Group g (0 <= g < groups_per_block) of the block at b, in the order dequantization writes elements.
QUANTA_HD static inline Int8Group int8_group(DType type, const uint8_t* b, int g) {
    Int8Group out{};
    const int lo = g * kGroup;  // the group's first element in a 32-element block
    switch (type) {
        case DType::Q4_0: case DType::Q4_1: {
            const bool min = type == DType::Q4_1;
            out.a = f16_load(b);
            out.b = min ? f16_load(b + 2) : 0.0f;
            const uint8_t* qs = b + (min ? 4 : 2);
            for (int i = 0; i < kGroup; ++i) out.q[i] = (int8_t)((g == 0 ? qs[i] & 0x0f : qs[i] >> 4) - (min ? 0 : 8));
            return out;
        }
        case DType::Q5_0: case DType::Q5_1: {
            const bool min = type == DType::Q5_1;
            out.a = f16_load(b);
            out.b = min ? f16_load(b + 2) : 0.0f;
            const uint32_t qh = load_u32(b + (min ? 4 : 2));
            for (int i = 0; i < kGroup; ++i) out.q[i] = (int8_t)(q5_value(b + (min ? 8 : 6), qh, lo + i) - (min ? 0 : 16));
            return out;
        }
        case DType::Q8_0: {
            out.a = f16_load(b);
            for (int i = 0; i < kGroup; ++i) out.q[i] = (int8_t)b[2 + lo + i];
            return out;
        }
        case DType::Q2_K: {  // groups: 128-element half, 2-bit plane (shift), then which 16 of 32 bytes
            const int half = g / 8, shift = 2 * ((g % 8) / 2), part = g % 2;
            const uint8_t sc = b[g];
            out.a = f16_load(b + 80) * (float)(sc & 0x0f);
            out.b = -(f16_load(b + 82) * (float)(sc >> 4));
            const uint8_t* q = b + 16 + 32 * half + 16 * part;
            for (int i = 0; i < kGroup; ++i) out.q[i] = (int8_t)((q[i] >> shift) & 3);
            return out;
        }
        case DType::Q3_K: {  // the q2_k order, with the high bit (hmask) subtracting 4 where clear
            const int half = g / 8, plane = (g % 8) / 2, part = g % 2;
            const uint8_t* packed = b + 96;
            const int low = (g < 8 ? packed[g] : packed[g - 8] >> 4) & 0x0f;
            const int high = (packed[8 + (g % 4)] >> (2 * (g / 4))) & 3;
            out.a = f16_load(b + 108) * (float)((low | (high << 4)) - 32);
            const uint8_t m = (uint8_t)(1u << (4 * half + plane));
            for (int i = 0; i < kGroup; ++i) {
                const int k = 16 * part + i;
                out.q[i] = (int8_t)(((b[32 + 32 * half + k] >> (2 * plane)) & 3) - ((b[k] & m) ? 0 : 4));
            }
            return out;
        }
        case DType::Q4_K: case DType::Q5_K: {  // sub-block s of 32 (its scale and min), half of it
            const bool five = type == DType::Q5_K;
            const int s = g / 2, part = g % 2;
            int sc, mn;
            k4_scale_min(b + 4, s, &sc, &mn);
            out.a = f16_load(b) * (float)sc;
            out.b = -(f16_load(b + 2) * (float)mn);
            const uint8_t* q = b + (five ? 48 : 16) + 32 * (s / 2) + 16 * part;
            for (int i = 0; i < kGroup; ++i) {
                const int nibble = s % 2 ? q[i] >> 4 : q[i] & 0x0f;
                out.q[i] = (int8_t)(nibble + ((five && ((b[16 + 16 * part + i] >> s) & 1)) ? 16 : 0));
            }
            return out;
        }
        case DType::Q6_K: {  // 128-element half, quarter (which nibble of which ql bytes), 16 of 32
            const int half = g / 8, quarter = (g % 8) / 2, part = g % 2;
            const uint8_t* ql = b + 64 * half + 32 * (quarter % 2) + 16 * part;
            const uint8_t* qh = b + 128 + 32 * half + 16 * part;
            out.a = f16_load(b + 208) * (float)(int8_t)b[192 + 8 * half + part + 2 * quarter];
            for (int i = 0; i < kGroup; ++i) {
                const int low = quarter < 2 ? ql[i] & 0x0f : ql[i] >> 4;
                out.q[i] = (int8_t)((low | (((qh[i] >> (2 * quarter)) & 3) << 4)) - 32);
            }
            return out;
        }
        default: return out;
    }
}

// c plus the sum of the four products of the int8 lanes of x and y: dp4a on the GPU, its definition here.
QUANTA_HD static inline int32_t dot4_i8(int32_t x, int32_t y, int32_t c) {
#if defined(__CUDA_ARCH__)
    return __dp4a(x, y, c);
#else
    for (int i = 0; i < 4; ++i) c += (int32_t)(int8_t)(x >> 8 * i) * (int32_t)(int8_t)(y >> 8 * i);
    return c;
#endif
}

// Group j of a flat activation row (quant/act_flat.h): its 16 levels as four words, its block's scale d and
// the levels' sum. The levels must be 16-byte aligned (rows whose stride is a multiple of 16).
struct ActGroup {
    int32_t q[4];
    float d;
    int32_t sum;
};
QUANTA_HD static inline ActGroup act_group(const FlatActRow& a, int64_t j) {
    ActGroup g;
    std::memcpy(g.q, __builtin_assume_aligned(a.q + kGroup * j, 16), sizeof g.q);
    g.d = a.d[j / 2];
    g.sum = a.qsum[j];
    return g;
}

// A group's share of a weight row . activation row: d * (a * sum(q * qa) + b * sum(qa)), whatever the
// weight type.
QUANTA_HD static inline float int8_group_dot(const Int8Group& w, const ActGroup& x) {
    int32_t wq[4];
    std::memcpy(wq, w.q, sizeof wq);
    int32_t sum = 0;
    for (int i = 0; i < 4; ++i) sum = dot4_i8(wq[i], x.q[i], sum);
    return x.d * (w.a * (float)sum + w.b * (float)x.sum);
}

}  // namespace quanta::block
