#include "cpu/panel.h"

#include <cstring>

#include "quant/fp16.h"
#include "quant/k_scales.h"

namespace quanta::cpu {
namespace {

// One row's block in natural order, before it is spread over the lanes.
struct Decoded {
    uint8_t L[256];
    float d, m;              // Block32: x = d * L + m
    float dmin;              // Super256: x = d * sc * L - dmin * min
    int32_t sc[16], min[16];  // Super256: per sub-block scale, per 16-element group offset
};

void decode_block32(DType type, const uint8_t* b, Decoded* out) {
    const float d = f16_load(b);
    out->d = d;
    if (type == DType::Q8_0) {  // signed levels shifted to unsigned: x = d * (L - 128)
        for (int i = 0; i < 32; ++i) out->L[i] = (uint8_t)((int8_t)b[2 + i] + 128);
        out->m = -128.0f * d;
        return;
    }
    const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
    const bool five = type == DType::Q5_0 || type == DType::Q5_1;
    const uint8_t* qs = b + 2 + (has_min ? 2 : 0) + (five ? 4 : 0);
    uint32_t qh = 0;
    if (five) std::memcpy(&qh, b + 2 + (has_min ? 2 : 0), 4);
    for (int i = 0; i < 16; ++i) {
        out->L[i] = (uint8_t)((qs[i] & 0x0f) | (((qh >> i) & 1u) << 4));
        out->L[i + 16] = (uint8_t)((qs[i] >> 4) | (((qh >> (i + 16)) & 1u) << 4));
    }
    out->m = has_min ? f16_load(b + 2) : -(five ? 16.0f : 8.0f) * d;
}

void decode_q45k(const uint8_t* b, bool five, Decoded* out) {
    out->d = f16_load(b);
    out->dmin = f16_load(b + 2);
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + (five ? 48 : 16);
    for (int chunk = 0; chunk < 4; ++chunk) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t byte = qs[32 * chunk + l];
            out->L[64 * chunk + l] = (uint8_t)((byte & 0x0f) | (five ? ((qh[l] >> (2 * chunk)) & 1) << 4 : 0));
            out->L[64 * chunk + 32 + l] = (uint8_t)((byte >> 4) | (five ? ((qh[l] >> (2 * chunk + 1)) & 1) << 4 : 0));
        }
    }
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        k4_scale_min(b + 4, j, &sc, &m);
        out->sc[j] = sc;
        out->min[2 * j] = out->min[2 * j + 1] = m;
    }
}

void decode_q6k(const uint8_t* b, Decoded* out) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    out->d = out->dmin = f16_load(b + 208);
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t l0 = ql[64 * h + l], l1 = ql[64 * h + l + 32], hb = qh[32 * h + l];
            out->L[128 * h + l] = (uint8_t)((l0 & 0x0f) | ((hb & 3) << 4));
            out->L[128 * h + 32 + l] = (uint8_t)((l1 & 0x0f) | (((hb >> 2) & 3) << 4));
            out->L[128 * h + 64 + l] = (uint8_t)((l0 >> 4) | (((hb >> 4) & 3) << 4));
            out->L[128 * h + 96 + l] = (uint8_t)((l1 >> 4) | (((hb >> 6) & 3) << 4));
        }
    for (int g = 0; g < 16; ++g) {  // x = d * sc * (L - 32)
        out->sc[g] = sc[g];
        out->min[g] = 32 * sc[g];
    }
}

void decode(DType type, const uint8_t* b, Decoded* out) {
    if (type == DType::Q4_K || type == DType::Q5_K) decode_q45k(b, type == DType::Q5_K, out);
    else if (type == DType::Q6_K) decode_q6k(b, out);
    else decode_block32(type, b, out);
}

template <typename T>
void set_lane(uint8_t* vec, int lane, T v) {
    std::memcpy(vec + lane * sizeof(T), &v, sizeof(T));
}

// Spreads one row's decoded block over lane `lane` of a 16-row group's block.
void spread(DType type, const Decoded& b, int lane, uint8_t* out) {
    const int n = panel_block(type);
    for (int s = 0; s < n / 4; ++s) std::memcpy(out + 64 * s + 4 * lane, b.L + 4 * s, 4);
    if (panel_kind(type) == PanelKind::Block32) {
        set_lane(out + kB32Scale, lane, b.d);
        set_lane(out + kB32Min, lane, b.m);
        return;
    }
    const int sub = panel_sub_block(type);
    for (int h = 0; h < 256 / sub; ++h) set_lane(out + kS256Scales + 64 * h, lane, b.sc[h]);
    for (int p = 0; p < 8; ++p) {
        set_lane(out + s256_mins(sub) + 64 * p, 2 * lane, (int16_t)b.min[2 * p]);
        set_lane(out + s256_mins(sub) + 64 * p, 2 * lane + 1, (int16_t)b.min[2 * p + 1]);
    }
    set_lane(out + s256_d(sub), lane, b.d);
    set_lane(out + s256_d(sub) + 64, lane, b.dmin);
}

}  // namespace

void unpack_panel(DType type, const void* const* rows, int n, int64_t k, uint8_t* panel) {
    const TypeInfo& info = type_info(type);
    const size_t block_bytes = panel_block_bytes(type), group_bytes = panel_group_bytes(type, k);
    std::memset(panel, 0, kPanelGroups * group_bytes);
    Decoded decoded;
    for (int r = 0; r < n; ++r) {
        uint8_t* group = panel + (size_t)(r / kPanelLanes) * group_bytes;
        const uint8_t* src = static_cast<const uint8_t*>(rows[r]);
        for (int64_t b = 0; b < k / info.block_size; ++b) {
            decode(type, src + b * info.block_bytes, &decoded);
            spread(type, decoded, r % kPanelLanes, group + b * block_bytes);
        }
    }
}

}  // namespace quanta::cpu
