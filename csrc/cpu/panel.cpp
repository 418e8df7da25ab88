#include "cpu/panel.h"

#include <cstring>

#include "quant/fp16.h"
#include "quant/k_scales.h"

namespace quanta::cpu {
namespace {

// Scale s for elements [e, e + n) (n a multiple of 4), bias c for their groups of 16.
void set_affine(float* s, float* c, int64_t e, int n, float scale, float bias) {
    for (int k = 0; k < n / 4; ++k) s[e / 4 + k] = scale;
    for (int k = 0; k < n / 16; ++k) c[e / 16 + k] = bias;
}

void unpack_block32(DType type, const uint8_t* b, int64_t e, uint8_t* L, float* s, float* c) {
    const float d = f16_load(b);
    if (type == DType::Q8_0) {  // signed levels shifted to unsigned: x = d * (L - 128)
        for (int i = 0; i < 32; ++i) L[e + i] = (uint8_t)((int8_t)b[2 + i] + 128);
        return set_affine(s, c, e, 32, d, -128.0f * d);
    }
    const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
    const bool five = type == DType::Q5_0 || type == DType::Q5_1;
    const uint8_t* qs = b + 2 + (has_min ? 2 : 0) + (five ? 4 : 0);
    uint32_t qh = 0;
    if (five) std::memcpy(&qh, b + 2 + (has_min ? 2 : 0), 4);
    for (int i = 0; i < 16; ++i) {
        L[e + i] = (uint8_t)((qs[i] & 0x0f) | (((qh >> i) & 1u) << 4));
        L[e + i + 16] = (uint8_t)((qs[i] >> 4) | (((qh >> (i + 16)) & 1u) << 4));
    }
    const float offset = five ? 16.0f : 8.0f;
    set_affine(s, c, e, 32, d, has_min ? f16_load(b + 2) : -offset * d);
}

void unpack_q45k(const uint8_t* b, bool five, int64_t e, uint8_t* L, float* s, float* c) {
    const float d = f16_load(b), dmin = f16_load(b + 2);
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + (five ? 48 : 16);
    for (int chunk = 0; chunk < 4; ++chunk) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t byte = qs[32 * chunk + l];
            L[e + 64 * chunk + l] = (uint8_t)((byte & 0x0f) | (five ? ((qh[l] >> (2 * chunk)) & 1) << 4 : 0));
            L[e + 64 * chunk + 32 + l] = (uint8_t)((byte >> 4) | (five ? ((qh[l] >> (2 * chunk + 1)) & 1) << 4 : 0));
        }
        for (int half = 0; half < 2; ++half) {
            int sc, m;
            k4_scale_min(b + 4, 2 * chunk + half, &sc, &m);
            set_affine(s, c, e + 64 * chunk + 32 * half, 32, d * (float)sc, -(dmin * (float)m));
        }
    }
}

void unpack_q6k(const uint8_t* b, int64_t e, uint8_t* L, float* s, float* c) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16_load(b + 208);
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t l0 = ql[64 * h + l], l1 = ql[64 * h + l + 32], hb = qh[32 * h + l];
            L[e + 128 * h + l] = (uint8_t)((l0 & 0x0f) | ((hb & 3) << 4));
            L[e + 128 * h + 32 + l] = (uint8_t)((l1 & 0x0f) | (((hb >> 2) & 3) << 4));
            L[e + 128 * h + 64 + l] = (uint8_t)((l0 >> 4) | (((hb >> 4) & 3) << 4));
            L[e + 128 * h + 96 + l] = (uint8_t)((l1 >> 4) | (((hb >> 6) & 3) << 4));
        }
    for (int g = 0; g < 16; ++g) {
        const float scale = d * (float)sc[g];
        set_affine(s, c, e + 16 * g, 16, scale, -32.0f * scale);
    }
}

}  // namespace

void unpack_panel_row(DType type, const void* w, int64_t k, int64_t kpad, uint8_t* L, float* s, float* c) {
    const uint8_t* p = static_cast<const uint8_t*>(w);
    const TypeInfo& info = type_info(type);
    for (int64_t b = 0; b < k / info.block_size; ++b, p += info.block_bytes) {
        const int64_t e = b * info.block_size;
        if (type == DType::Q4_K || type == DType::Q5_K) unpack_q45k(p, type == DType::Q5_K, e, L, s, c);
        else if (type == DType::Q6_K) unpack_q6k(p, e, L, s, c);
        else unpack_block32(type, p, e, L, s, c);
    }
    std::memset(L + k, 0, (size_t)(kpad - k));
    for (int64_t i = k / 4; i < kpad / 4; ++i) s[i] = 0.0f;
    for (int64_t i = k / 16; i < kpad / 16; ++i) c[i] = 0.0f;
}

}  // namespace quanta::cpu
