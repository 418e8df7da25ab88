// Every quantized block type read as pairs of groups of 16 elements, each
// element w = a * (q + offset) + b with q a small integer code, offset the
// type's constant (q4_0 -8, q6_k -32, ...) and a, b floats of the group: q4_0
// a = d; q4_k a = d * scale, b = -dmin * min; q6_k a = d * scale; and so on.
// A pair is the 32 codes that share one 16-byte run of the block's storage
// (q4_0's nibble bytes, a q4_k sub-block pair's, ...), so a reader touches each
// weight byte once, in loads as wide as the type's alignment allows, and
// unpacks four codes per word operation. The CUDA matmul kernel dots the codes
// with the flat 8-bit activations of quant/act_flat.h (dp4a), which needs only
// da * (a * (sum(q * qa) + offset * sum(qa)) + b * sum(qa)) per group, whatever
// the type; the integer part is exact. Host and device code (QUANTA_HD), so
// tests/cpp/kernel_check.cpp checks on the CPU that a * (q + offset) + b is,
// bit for bit, what quant/block_dequant.h dequantizes (fused multiply-adds
// off, as both are built), and that the pairs' shares add up to the row's dot.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "quant/act_flat.h"
#include "quant/block_dequant.h"
#include "quant/types.h"

namespace quanta::block {

constexpr int kGroup = 16;  // the k-quants' smallest scale group; every block is a whole number of them

// Pairs of groups per block of `type`: 1 for the 32-element types, 8 for the k-quants, 0 for the others.
QUANTA_HD constexpr int pairs_per_block(DType type) {
    switch (type) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: return 1;
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: return 8;
        default: return 0;
    }
}

// The constant added to every code of `type` (the codes themselves are never negative, except q8_0's).
QUANTA_HD constexpr int code_offset(DType type) {
    switch (type) {
        case DType::Q4_0: return -8;
        case DType::Q5_0: return -16;
        case DType::Q3_K: return -4;
        case DType::Q6_K: return -32;
        default: return 0;
    }
}

// The alignment every pair's 16-byte runs and fields have in rows of whole blocks (block bytes and field
// offsets): q4_k's and q5_k's runs are 16-byte aligned, q4_1's and q2_k's 4-byte, the rest 2-byte.
QUANTA_HD constexpr int pair_alignment(DType type) {
    switch (type) {
        case DType::Q4_K: case DType::Q5_K: return 16;
        case DType::Q4_1: case DType::Q5_1: case DType::Q2_K: return 4;
        default: return 2;
    }
}

struct Int8Pair {
    uint32_t q[8];  // group g[0]'s 16 codes in q[0..3], g[1]'s in q[4..7], four int8 lanes a word
    int g[2];       // which groups of the block (0 <= g < 16 for the k-quants, 0 and 1 for the others)
    float a[2], b[2];
};

// Little-endian loads of fields aligned to ALIGN bytes: on the GPU as wide as that allows (a 16-byte run in
// one load at 16), on the CPU by memcpy.
template <int ALIGN>
QUANTA_HD static inline uint32_t load_word(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    if constexpr (ALIGN >= 4) return *reinterpret_cast<const uint32_t*>(p);
    else if constexpr (ALIGN >= 2)
        return (uint32_t)reinterpret_cast<const uint16_t*>(p)[0] | (uint32_t)reinterpret_cast<const uint16_t*>(p)[1] << 16;
    else
#endif
        return load_u32(p);
}
template <int ALIGN>
QUANTA_HD static inline void load_run(const uint8_t* p, uint32_t (&w)[4]) {
#if defined(__CUDA_ARCH__)
    if constexpr (ALIGN >= 16) {
        const uint4 v = *reinterpret_cast<const uint4*>(p);
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else
#endif
        for (int i = 0; i < 4; ++i) w[i] = load_word<ALIGN>(p + 4 * i);
}
template <int ALIGN>
QUANTA_HD static inline float load_f16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    if constexpr (ALIGN >= 2) return f16_to_f32(*reinterpret_cast<const uint16_t*>(p));
    else
#endif
        return f16_load(p);
}

// Byte i (0-3) of a word, and the low or high nibbles of a word's four bytes.
QUANTA_HD static inline int byte_of(uint32_t w, int i) { return (int)(w >> (8 * i)) & 0xff; }
QUANTA_HD static inline uint32_t low_nibbles(uint32_t w) { return w & 0x0f0f0f0fu; }
QUANTA_HD static inline uint32_t high_nibbles(uint32_t w) { return (w >> 4) & 0x0f0f0f0fu; }
// Bits 0-3 of x moved to bit 0 of bytes 0-3 (q5_0's fifth bits, one per element).
QUANTA_HD static inline uint32_t spread_bits4(uint32_t x) {
    return (x & 1u) | (x & 2u) << 7 | (x & 4u) << 14 | (x & 8u) << 21;
}

// q4_k's and q5_k's 6-bit scale and min of sub-block s (0-7) from the 12 packed bytes as three words
// (quant/k_scales.h's layout, without indexing an array by s, which the GPU would put in local memory).
QUANTA_HD static inline void k4_scale_min_words(const uint32_t (&w)[3], int s, int* scale, int* min) {
    const int i = s % 4;
    if (s < 4) {
        *scale = byte_of(w[0], i) & 63;
        *min = byte_of(w[1], i) & 63;
    } else {
        *scale = (byte_of(w[2], i) & 0x0f) | ((byte_of(w[0], i) >> 6) << 4);
        *min = (byte_of(w[2], i) >> 4) | ((byte_of(w[1], i) >> 6) << 4);
    }
}

// Pair p (0 <= p < pairs_per_block) of the block at b, its fields aligned to ALIGN bytes (pair_alignment,
// or less). The k-quants' pairs run through the block's code bytes in order, 16 bytes a pair.
template <DType T, int ALIGN>
QUANTA_HD static inline Int8Pair int8_pair(const uint8_t* b, int p) {
    Int8Pair out{};
    uint32_t w[4];
    if constexpr (T == DType::Q4_0 || T == DType::Q4_1) {  // low nibbles elements 0-15, high 16-31
        constexpr bool kMin = T == DType::Q4_1;
        out.g[0] = 0, out.g[1] = 1;
        out.a[0] = out.a[1] = load_f16<ALIGN>(b);
        out.b[0] = out.b[1] = kMin ? load_f16<ALIGN>(b + 2) : 0.0f;
        load_run<ALIGN>(b + (kMin ? 4 : 2), w);
        for (int i = 0; i < 4; ++i) out.q[i] = low_nibbles(w[i]), out.q[4 + i] = high_nibbles(w[i]);
    } else if constexpr (T == DType::Q5_0 || T == DType::Q5_1) {  // q4's nibbles, bit e of qh on element e
        constexpr bool kMin = T == DType::Q5_1;
        out.g[0] = 0, out.g[1] = 1;
        out.a[0] = out.a[1] = load_f16<ALIGN>(b);
        out.b[0] = out.b[1] = kMin ? load_f16<ALIGN>(b + 2) : 0.0f;
        const uint32_t qh = load_word<ALIGN>(b + (kMin ? 4 : 2));
        load_run<ALIGN>(b + (kMin ? 8 : 6), w);
        for (int i = 0; i < 4; ++i) {
            out.q[i] = low_nibbles(w[i]) | spread_bits4(qh >> (4 * i)) << 4;
            out.q[4 + i] = high_nibbles(w[i]) | spread_bits4(qh >> (16 + 4 * i)) << 4;
        }
    } else if constexpr (T == DType::Q8_0) {
        out.g[0] = 0, out.g[1] = 1;
        out.a[0] = out.a[1] = load_f16<ALIGN>(b);
        load_run<ALIGN>(b + 2, w);
        for (int i = 0; i < 4; ++i) out.q[i] = w[i];
        load_run<ALIGN>(b + 18, w);
        for (int i = 0; i < 4; ++i) out.q[4 + i] = w[i];
    } else if constexpr (T == DType::Q2_K || T == DType::Q3_K) {
        // Group g = 8 * half + 2 * plane + part: 2-bit plane `plane` of code bytes 16 * part .. + 15 of the
        // 128-element half. Pair p takes planes 2 * (p / 2 % 2) and the next of one half and part, so each
        // 16-byte run serves two pairs. q3_k adds 4 where its hmask bit (4 * half + plane) is set.
        const int half = p / 4, plane = 2 * (p / 2 % 2), part = p % 2;
        const uint8_t* codes = b + (T == DType::Q2_K ? 16 : 32) + 32 * half + 16 * part;
        load_run<ALIGN>(codes, w);
        uint32_t hm[4] = {};
        if constexpr (T == DType::Q3_K) load_run<ALIGN>(b + 16 * part, hm);
        for (int j = 0; j < 2; ++j) {
            const int pl = plane + j, g = 8 * half + 2 * pl + part;
            out.g[j] = g;
            for (int i = 0; i < 4; ++i) {
                out.q[4 * j + i] = (w[i] >> (2 * pl)) & 0x03030303u;
                if constexpr (T == DType::Q3_K) out.q[4 * j + i] |= ((hm[i] >> (4 * half + pl)) & 0x01010101u) << 2;
            }
            if constexpr (T == DType::Q2_K) {
                const uint8_t sc = b[g];
                out.a[j] = load_f16<ALIGN>(b + 80) * (float)(sc & 0x0f);
                out.b[j] = -(load_f16<ALIGN>(b + 82) * (float)(sc >> 4));
            } else {
                const uint8_t* packed = b + 96;
                const int low = (g < 8 ? packed[g] : packed[g - 8] >> 4) & 0x0f;
                const int high = (packed[8 + (g % 4)] >> (2 * (g / 4))) & 3;
                out.a[j] = load_f16<ALIGN>(b + 108) * (float)((low | (high << 4)) - 32);
            }
        }
    } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
        // Sub-blocks 2c (low nibbles) and 2c + 1 (high) of 32 elements, elements 16 * part .. + 15 of each:
        // groups 4c + part and 4c + 2 + part. q5_k's fifth bits: bit s of qh byte 16 * part + i.
        constexpr bool kFive = T == DType::Q5_K;
        const int c = p / 2, part = p % 2;
        const uint32_t packed[3] = {load_word<ALIGN>(b + 4), load_word<ALIGN>(b + 8), load_word<ALIGN>(b + 12)};
        const float d = load_f16<ALIGN>(b), dmin = load_f16<ALIGN>(b + 2);
        load_run<ALIGN>(b + (kFive ? 48 : 16) + 16 * p, w);
        uint32_t qh[4] = {};
        if constexpr (kFive) load_run<ALIGN>(b + 16 + 16 * part, qh);
        for (int j = 0; j < 2; ++j) {
            const int s = 2 * c + j;
            int sc, mn;
            k4_scale_min_words(packed, s, &sc, &mn);
            out.g[j] = 2 * s + part;
            out.a[j] = d * (float)sc;
            out.b[j] = -(dmin * (float)mn);
            for (int i = 0; i < 4; ++i) {
                out.q[4 * j + i] = j == 0 ? low_nibbles(w[i]) : high_nibbles(w[i]);
                if constexpr (kFive) out.q[4 * j + i] |= ((qh[i] >> s) & 0x01010101u) << 4;
            }
        }
    } else if constexpr (T == DType::Q6_K) {
        // Group g = 8 * half + 2 * quarter + part; quarters r and r + 2 share the low nibble bytes (ql, the
        // low and the high nibbles), each quarter takes 2 bits of the same qh bytes; scale g is byte 192 + g.
        const int half = p / 4, r = p / 2 % 2, part = p % 2;
        uint32_t qh[4];
        load_run<ALIGN>(b + 16 * p, w);
        load_run<ALIGN>(b + 128 + 32 * half + 16 * part, qh);
        const float d = load_f16<ALIGN>(b + 208);
        for (int j = 0; j < 2; ++j) {
            const int quarter = r + 2 * j, g = 8 * half + 2 * quarter + part;
            out.g[j] = g;
            out.a[j] = d * (float)(int8_t)b[192 + g];
            for (int i = 0; i < 4; ++i)
                out.q[4 * j + i] = (j == 0 ? low_nibbles(w[i]) : high_nibbles(w[i])) |
                                   ((qh[i] >> (2 * quarter)) & 0x03030303u) << 4;
        }
    }
    return out;
}

// f(std::integral_constant<DType, type>) for the types that have pairs (pairs_per_block > 0), on the host
// (to pick a kernel's instantiation); false for the others.
template <typename F>
static inline bool with_pair_type(DType type, F&& f) {
    using T = DType;
    switch (type) {
        case T::Q4_0: f(std::integral_constant<T, T::Q4_0>{}); return true;
        case T::Q4_1: f(std::integral_constant<T, T::Q4_1>{}); return true;
        case T::Q5_0: f(std::integral_constant<T, T::Q5_0>{}); return true;
        case T::Q5_1: f(std::integral_constant<T, T::Q5_1>{}); return true;
        case T::Q8_0: f(std::integral_constant<T, T::Q8_0>{}); return true;
        case T::Q2_K: f(std::integral_constant<T, T::Q2_K>{}); return true;
        case T::Q3_K: f(std::integral_constant<T, T::Q3_K>{}); return true;
        case T::Q4_K: f(std::integral_constant<T, T::Q4_K>{}); return true;
        case T::Q5_K: f(std::integral_constant<T, T::Q5_K>{}); return true;
        case T::Q6_K: f(std::integral_constant<T, T::Q6_K>{}); return true;
        default: return false;
    }
}

// c plus the sum of the four products of the int8 lanes of x and y: dp4a on the GPU, its definition here.
QUANTA_HD static inline int32_t dot4_i8(uint32_t x, int32_t y, int32_t c) {
#if defined(__CUDA_ARCH__)
    return __dp4a((int32_t)x, y, c);
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

// Group j (0 or 1) of a pair's share of a weight row . activation row: d * (a * sum((q + offset) * qa) +
// b * sum(qa)), the integer sum exact.
template <DType T>
QUANTA_HD static inline float int8_group_dot(const Int8Pair& w, int j, const ActGroup& x) {
    int32_t sum = code_offset(T) * x.sum;
    for (int i = 0; i < 4; ++i) sum = dot4_i8(w.q[4 * j + i], x.q[i], sum);
    return x.d * (w.a[j] * (float)sum + w.b[j] * (float)x.sum);
}

}  // namespace quanta::block
