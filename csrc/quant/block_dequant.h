// The dequantization of one block of each ggml block type, written once for
// the CPU's reference (quant/dequantize.cpp) and the CUDA kernels
// (kernels/quantized.cu): plain arithmetic on the block's bytes, host and
// device code alike (QUANTA_HD). Block layouts follow ggml's ggml-common.h and
// the arithmetic runs in the same order as ggml's reference, so results are
// bit-identical where the compiler does not fuse `d * q - m` (the CPU file is
// built with -ffp-contract=off, the CUDA one with --fmad=false).
#pragma once

#include <cstdint>
#include <cstring>

#include "quant/fp16.h"
#include "quant/k_scales.h"

namespace quanta::block {

constexpr int QK = 32;    // elements per block of the 32-block formats
constexpr int QK_K = 256; // elements per k-quant super-block

QUANTA_HD static inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

QUANTA_HD static inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// q4_0: f16 d | 16 nibble bytes. Low nibble of byte j is element j, high nibble element j+16.
QUANTA_HD static inline void dq_q4_0(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < QK / 2; ++j) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

// q4_1: f16 d | f16 m | 16 nibble bytes.
QUANTA_HD static inline void dq_q4_1(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const float m = f16_load(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < QK / 2; ++j) {
        y[j] = (float)(qs[j] & 0x0f) * d + m;
        y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
    }
}

// Fifth bits of q5_*: bit j of qh belongs to element j.
QUANTA_HD static inline int q5_value(const uint8_t* qs, uint32_t qh, int j) {
    const int lo = j < QK / 2 ? (qs[j] & 0x0f) : (qs[j - QK / 2] >> 4);
    return lo | (int)(((qh >> j) & 1u) << 4);
}

// q5_0: f16 d | u32 qh | 16 nibble bytes.
QUANTA_HD static inline void dq_q5_0(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const uint32_t qh = load_u32(b + 2);
    for (int j = 0; j < QK; ++j) y[j] = (float)(q5_value(b + 6, qh, j) - 16) * d;
}

// q5_1: f16 d | f16 m | u32 qh | 16 nibble bytes.
QUANTA_HD static inline void dq_q5_1(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const float m = f16_load(b + 2);
    const uint32_t qh = load_u32(b + 4);
    for (int j = 0; j < QK; ++j) y[j] = (float)q5_value(b + 8, qh, j) * d + m;
}

// q8_0: f16 d | int8[32].
QUANTA_HD static inline void dq_q8_0(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < QK; ++j) y[j] = (float)qs[j] * d;
}

// q8_1: f16 d | f16 s (= d * sum(q), unused here) | int8[32].
QUANTA_HD static inline void dq_q8_1(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
    for (int j = 0; j < QK; ++j) y[j] = (float)qs[j] * d;
}

// q2_k: u8 scales[16] (low nibble scale, high nibble min) | 2-bit qs[64] | f16 d | f16 dmin.
QUANTA_HD static inline void dq_q2_k(const uint8_t* b, float* y) {
    const uint8_t* scales = b;
    const uint8_t* q = b + 16;
    const float d = f16_load(b + 80);
    const float dmin = f16_load(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
                const uint8_t sc = scales[is++];
                const float dl = d * (float)(sc & 0x0f);
                const float ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
    }
}

// q3_k: hmask[32] | 2-bit qs[64] | 12 bytes of sixteen 6-bit scales | f16 d.
QUANTA_HD static inline void dq_q3_k(const uint8_t* b, float* y) {
    const uint8_t* hmask = b;
    const uint8_t* q = b + 32;
    const uint8_t* packed = b + 96;
    const float d_all = f16_load(b + 108);

    // Unpack: scale i has its low 4 bits in nibble i of bytes 0..7 and its
    // high 2 bits in the 2-bit field i of bytes 8..11.
    int8_t scales[16];
    for (int i = 0; i < 16; ++i) {
        const int low = (i < 8 ? packed[i] : packed[i - 8] >> 4) & 0x0f;
        const int high = (packed[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        scales[i] = (int8_t)((low | (high << 4)) - 32);
    }

    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int half = 0; half < 2; ++half) {
                const float dl = d_all * (float)scales[is++];
                for (int l = 0; l < 16; ++l) {
                    const int k = l + 16 * half;
                    const int v = ((q[k] >> shift) & 3) - ((hmask[k] & m) ? 0 : 4);
                    *y++ = dl * (float)v;
                }
            }
        }
    }
}

// q4_k: f16 d | f16 dmin | scales[12] | nibbles[128].
QUANTA_HD static inline void dq_q4_k(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const float dmin = f16_load(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
        int sc, m;
        k4_scale_min(scales, is, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        k4_scale_min(scales, is + 1, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (float)(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}

// q5_k: f16 d | f16 dmin | scales[12] | qh[32] | nibbles[128].
QUANTA_HD static inline void dq_q5_k(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const float dmin = f16_load(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = b + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
        int sc, m;
        k4_scale_min(scales, is, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        k4_scale_min(scales, is + 1, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
}

// q6_k: ql[128] (low 4 bits) | qh[64] (high 2 bits) | int8 scales[16] | f16 d.
QUANTA_HD static inline void dq_q6_k(const uint8_t* b, float* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16_load(b + 208);
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

// q8_k: f32 d | int8[256] | int16 bsums[16] (unused here).
QUANTA_HD static inline void dq_q8_k(const uint8_t* b, float* y) {
    float d;
    std::memcpy(&d, b, 4);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
    for (int j = 0; j < QK_K; ++j) y[j] = d * (float)qs[j];
}

}  // namespace quanta::block
