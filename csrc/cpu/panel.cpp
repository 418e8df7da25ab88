// Unpacking weight rows, as the file has them or from octets, into the prefill GEMM's panels (panel.h).
#include "cpu/panel.h"

#include <cstring>

#include "cpu/octets.h"
#include "quant/fp16.h"
#include "quant/k_scales.h"

namespace quanta::cpu {
namespace {

// One row's block, levels as 32-bit words of 4 consecutive elements (the unit
// a panel lane holds), decoded with word operations.
struct Decoded {
    uint32_t L4[64];
    float d, m;        // Block32: x = d * L + m; Super256: d, the super-block scale
    int32_t sc[16];    // Super256: per sub-block scale
    float min[8];      // q4_k/q5_k: dmin * min per 32-element sub-block
    int16_t off[16];   // q6_k: -32 * sc per 16-element group (x = d * sc * (L - 32))
};

constexpr uint32_t kLow4 = 0x0f0f0f0fu, kLow2 = 0x03030303u, kLow1 = 0x01010101u;

uint32_t word(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Bits 0..3 of x to bit 4 of bytes 0..3 (the fifth bit of 4 levels).
uint32_t fifth_bits(uint32_t x) { return ((x & 0xf) * 0x00204081u & kLow1) << 4; }

// A row's block as the decoders read it, by the offsets of ggml's layout: 4-byte words of its byte arrays,
// its f16 fields, and q5_0/q5_1's fifth bits of elements 4t .. 4t + 3 (as bit 4 of 4 bytes). From the block
// as the file has it, or from lane `lane` of an octet block (octets.h).
struct PlainBlock {
    const uint8_t* b;
    uint32_t word(int field, int i) const { return quanta::cpu::word(b + field + i); }
    float half(int field) const { return f16_load(b + field); }
    uint32_t fifth(int field, int t) const { return fifth_bits(word(field, 0) >> (4 * t)); }
};
struct OctetBlock {
    const uint8_t* b;
    int lane;
    uint32_t word(int field, int i) const { return quanta::cpu::word(b + kOctetRows * field + 32 * (i / 4) + 4 * lane); }
    float half(int field) const { return f16_load(b + kOctetRows * field + 2 * lane); }
    uint32_t fifth(int field, int t) const { return ((word(field, 0) >> t) & kLow1) << 4; }
};

// `n` bytes (a multiple of 4) of a byte array, for the decoders that read it bytewise.
template <typename Block>
void gather(const Block& v, int field, int n, uint8_t* out) {
    for (int i = 0; i < n; i += 4) {
        const uint32_t w = v.word(field, i);
        std::memcpy(out + i, &w, 4);
    }
}

template <typename Block>
void decode_block32(DType type, const Block& v, Decoded* out) {
    const float d = v.half(0);
    out->d = d;
    if (type == DType::Q8_0) {  // signed levels shifted to unsigned: x = d * (L - 128)
        for (int s = 0; s < 8; ++s) out->L4[s] = v.word(2, 4 * s) ^ 0x80808080u;
        out->m = -128.0f * d;
        return;
    }
    const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
    const bool five = type == DType::Q5_0 || type == DType::Q5_1;
    const int qh = 2 + (has_min ? 2 : 0), qs = qh + (five ? 4 : 0);
    for (int s = 0; s < 4; ++s) {  // elements 4s.. in the low nibbles, 16 + 4s.. in the high ones
        const uint32_t q = v.word(qs, 4 * s);
        out->L4[s] = (q & kLow4) | (five ? v.fifth(qh, s) : 0);
        out->L4[4 + s] = ((q >> 4) & kLow4) | (five ? v.fifth(qh, 4 + s) : 0);
    }
    out->m = has_min ? v.half(2) : -(five ? 16.0f : 8.0f) * d;
}

template <typename Block>
void decode_q45k(const Block& v, bool five, Decoded* out) {
    out->d = v.half(0);
    const float dmin = v.half(2);
    const int qh = 16, qs = five ? 48 : 16;
    for (int chunk = 0; chunk < 4; ++chunk)  // 64 elements: 32 low nibbles, then 32 high ones
        for (int t = 0; t < 8; ++t) {
            const uint32_t q = v.word(qs, 32 * chunk + 4 * t), h = five ? v.word(qh, 4 * t) : 0;
            out->L4[16 * chunk + t] = (q & kLow4) | ((h >> (2 * chunk)) & kLow1) << 4;
            out->L4[16 * chunk + 8 + t] = ((q >> 4) & kLow4) | ((h >> (2 * chunk + 1)) & kLow1) << 4;
        }
    uint8_t scales[12];
    gather(v, 4, 12, scales);
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        k4_scale_min(scales, j, &sc, &m);
        out->sc[j] = sc;
        out->min[j] = dmin * (float)m;  // exact: 11 significant bits times 6
    }
}

template <typename Block>
void decode_q6k(const Block& v, Decoded* out) {
    const int ql = 0, qh = 128;
    int8_t sc[16];
    gather(v, 192, 16, reinterpret_cast<uint8_t*>(sc));
    out->d = v.half(208);
    for (int h = 0; h < 2; ++h)  // 128 elements: 4 runs of 32 from ql's nibbles and qh's bit pairs
        for (int t = 0; t < 8; ++t) {
            const uint32_t l0 = v.word(ql, 64 * h + 4 * t), l1 = v.word(ql, 64 * h + 32 + 4 * t);
            const uint32_t hb = v.word(qh, 32 * h + 4 * t);
            out->L4[32 * h + t] = (l0 & kLow4) | (hb & kLow2) << 4;
            out->L4[32 * h + 8 + t] = (l1 & kLow4) | ((hb >> 2) & kLow2) << 4;
            out->L4[32 * h + 16 + t] = ((l0 >> 4) & kLow4) | ((hb >> 4) & kLow2) << 4;
            out->L4[32 * h + 24 + t] = ((l1 >> 4) & kLow4) | ((hb >> 6) & kLow2) << 4;
        }
    for (int g = 0; g < 16; ++g) {  // x = d * sc * (L - 32)
        out->sc[g] = sc[g];
        out->off[g] = (int16_t)(-32 * sc[g]);
    }
}

template <typename Block>
void decode(DType type, const Block& v, Decoded* out) {
    if (type == DType::Q4_K || type == DType::Q5_K) decode_q45k(v, type == DType::Q5_K, out);
    else if (type == DType::Q6_K) decode_q6k(v, out);
    else decode_block32(type, v, out);
}

template <typename T>
void set_lane(uint8_t* vec, int lane, T v) {
    std::memcpy(vec + lane * sizeof(T), &v, sizeof(T));
}

// Spreads one row's decoded block over lane `lane` of a 16-row group's block.
void spread(DType type, const Decoded& b, int lane, uint8_t* out) {
    const int n = panel_block(type);
    for (int s = 0; s < n / 4; ++s) set_lane(out + 64 * s, lane, b.L4[s]);
    if (panel_kind(type) == PanelKind::Block32) {
        set_lane(out + kB32Scale, lane, b.d);
        set_lane(out + kB32Min, lane, b.m);
        return;
    }
    const int sub = panel_sub_block(type);
    for (int h = 0; h < 256 / sub; ++h) set_lane(out + kS256Scales + 64 * h, lane, b.sc[h]);
    for (int p = 0; p < 8; ++p) {
        uint8_t* m = out + s256_mins(sub) + 64 * p;
        if (sub == 32) {
            set_lane(m, lane, b.min[p]);
        } else {
            set_lane(m, 2 * lane, b.off[2 * p]);
            set_lane(m, 2 * lane + 1, b.off[2 * p + 1]);
        }
    }
    set_lane(out + s256_d(sub), lane, b.d);
}

// Unpacks n rows into a panel; block(r, b) is row r's block b (PlainBlock or OctetBlock).
template <typename BlockOf>
void unpack(DType type, int n, int64_t k, uint8_t* panel, BlockOf block) {
    const TypeInfo& info = type_info(type);
    const size_t block_bytes = panel_block_bytes(type), group_bytes = panel_group_bytes(type, k);
    if (n < kPanelRows) std::memset(panel, 0, kPanelGroups * group_bytes);  // missing rows: zero lanes
    Decoded decoded;
    for (int r = 0; r < n; ++r) {
        uint8_t* group = panel + (size_t)(r / kPanelLanes) * group_bytes;
        for (int64_t b = 0; b < k / info.block_size; ++b) {
            decode(type, block(r, b), &decoded);
            spread(type, decoded, r % kPanelLanes, group + b * block_bytes);
        }
    }
}

}  // namespace

void unpack_panel(DType type, const void* const* rows, int n, int64_t k, uint8_t* panel) {
    const size_t bytes = type_info(type).block_bytes;
    unpack(type, n, k, panel, [&](int r, int64_t b) { return PlainBlock{static_cast<const uint8_t*>(rows[r]) + b * bytes}; });
}

void unpack_panel_octets(DType type, const uint8_t* octets, int n, int64_t k, uint8_t* panel) {
    const size_t ob = octet_bytes(type, k), block = kOctetRows * type_info(type).block_bytes;
    unpack(type, n, k, panel, [&](int r, int64_t b) {
        return OctetBlock{octets + (size_t)(r / kOctetRows) * ob + (size_t)b * block, r % kOctetRows};
    });
}

}  // namespace quanta::cpu
