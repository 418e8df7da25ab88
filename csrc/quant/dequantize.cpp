// Block layouts follow ggml's ggml-common.h. The arithmetic is written in the
// same order as ggml's reference so results are bit-identical; this file is
// compiled with -ffp-contract=off so that `d * q - m` is never fused.
#include "quant/dequantize.h"

#include <cstring>

#include "base/error.h"
#include "quant/fp16.h"
#include "quant/k_scales.h"

namespace quanta {
namespace {

constexpr int QK = 32;    // elements per block of the 32-block formats
constexpr int QK_K = 256; // elements per k-quant super-block

uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// q4_0: f16 d | 16 nibble bytes. Low nibble of byte j is element j, high nibble element j+16.
void dq_q4_0(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < QK / 2; ++j) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

// q4_1: f16 d | f16 m | 16 nibble bytes.
void dq_q4_1(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const float m = f16_load(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < QK / 2; ++j) {
        y[j] = (float)(qs[j] & 0x0f) * d + m;
        y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
    }
}

// Fifth bits of q5_*: bit j of qh belongs to element j.
int q5_value(const uint8_t* qs, uint32_t qh, int j) {
    const int lo = j < QK / 2 ? (qs[j] & 0x0f) : (qs[j - QK / 2] >> 4);
    return lo | (int)(((qh >> j) & 1u) << 4);
}

// q5_0: f16 d | u32 qh | 16 nibble bytes.
void dq_q5_0(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const uint32_t qh = load_u32(b + 2);
    for (int j = 0; j < QK; ++j) y[j] = (float)(q5_value(b + 6, qh, j) - 16) * d;
}

// q5_1: f16 d | f16 m | u32 qh | 16 nibble bytes.
void dq_q5_1(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const float m = f16_load(b + 2);
    const uint32_t qh = load_u32(b + 4);
    for (int j = 0; j < QK; ++j) y[j] = (float)q5_value(b + 8, qh, j) * d + m;
}

// q8_0: f16 d | int8[32].
void dq_q8_0(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < QK; ++j) y[j] = (float)qs[j] * d;
}

// q8_1: f16 d | f16 s (= d * sum(q), unused here) | int8[32].
void dq_q8_1(const uint8_t* b, float* y) {
    const float d = f16_load(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
    for (int j = 0; j < QK; ++j) y[j] = (float)qs[j] * d;
}

// q2_k: u8 scales[16] (low nibble scale, high nibble min) | 2-bit qs[64] | f16 d | f16 dmin.
void dq_q2_k(const uint8_t* b, float* y) {
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
void dq_q3_k(const uint8_t* b, float* y) {
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
void dq_q4_k(const uint8_t* b, float* y) {
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
void dq_q5_k(const uint8_t* b, float* y) {
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
void dq_q6_k(const uint8_t* b, float* y) {
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
void dq_q8_k(const uint8_t* b, float* y) {
    float d;
    std::memcpy(&d, b, 4);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
    for (int j = 0; j < QK_K; ++j) y[j] = d * (float)qs[j];
}

template <typename T>
void cast_row(const void* src, float* dst, int64_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, p + i * sizeof(T), sizeof(T));
        dst[i] = (float)v;
    }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_dequantizer(DType type) {
    switch (type) {
        case DType::Q4_0: return dq_q4_0;
        case DType::Q4_1: return dq_q4_1;
        case DType::Q5_0: return dq_q5_0;
        case DType::Q5_1: return dq_q5_1;
        case DType::Q8_0: return dq_q8_0;
        case DType::Q8_1: return dq_q8_1;
        case DType::Q2_K: return dq_q2_k;
        case DType::Q3_K: return dq_q3_k;
        case DType::Q4_K: return dq_q4_k;
        case DType::Q5_K: return dq_q5_k;
        case DType::Q6_K: return dq_q6_k;
        case DType::Q8_K: return dq_q8_k;
        default: return nullptr;
    }
}

}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
    const TypeInfo& info = type_info(type);
    QUANTA_CHECK_ARG(n % info.block_size == 0, "row length is not a multiple of the block size");
    const uint8_t* p = static_cast<const uint8_t*>(src);
    switch (type) {
        case DType::F32: std::memcpy(dst, src, (size_t)n * 4); return;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(p + 2 * i));
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(p + 2 * i));
            return;
        case DType::I8: cast_row<int8_t>(src, dst, n); return;
        case DType::I16: cast_row<int16_t>(src, dst, n); return;
        case DType::I32: cast_row<int32_t>(src, dst, n); return;
        case DType::I64: cast_row<int64_t>(src, dst, n); return;
        case DType::F64: cast_row<double>(src, dst, n); return;
        default: break;
    }
    const BlockFn fn = block_dequantizer(type);
    if (!fn) fail(ErrorKind::Unsupported, std::string("no dequantizer for type ") + info.name);
    for (int64_t i = 0; i < n / info.block_size; ++i) fn(p + i * info.block_bytes, dst + i * info.block_size);
}

}  // namespace quanta
