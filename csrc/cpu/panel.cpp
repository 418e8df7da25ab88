// Unpacking weight rows, as the file has them or from octets, into the prefill GEMM's panels (panel.h).
#include "cpu/panel.h"

#include <cstring>

#include "cpu/octets.h"
#include "quant/fp16.h"
#include "quant/k_scales.h"

namespace quanta::cpu {
namespace {

// Levels as 32-bit words of 4 consecutive elements (the unit a panel lane holds), decoded with word
// operations: a Word is one row's word (uint32_t) or the same word of an octet's 8 rows (Lanes, a GCC/Clang
// vector of 8 words, which the baseline x86 or NEON build turns into two 16-byte vectors). An octet's levels
// 8 rows at a time made a panel of 32 x 1024 from octets 1.7-2.4x faster (Sapphire Rapids-class Xeon, one
// thread: q4_k 4.5 -> 2.6 us, q6_k 6.9 -> 4.0, q5_0 8.5 -> 3.6); the scales, still row by row, are most of
// what is left.
using Lanes = uint32_t __attribute__((vector_size(32)));
#if defined(__GNUC__) && !defined(__clang__)
// Lanes go by value only between functions of this file, all inlined: the ABI GCC warns about is never used.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// One row's block but its levels: the scales and offsets that go into a panel lane.
struct Decoded {
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
// as the file has it, from lane `lane` of an octet block (octets.h), or from all 8 lanes of one at once.
struct PlainBlock {
    using Word = uint32_t;
    const uint8_t* b;
    Word word(int field, int i) const { return quanta::cpu::word(b + field + i); }
    float half(int field) const { return f16_load(b + field); }
    Word fifth(int field, int t) const { return fifth_bits(word(field, 0) >> (4 * t)); }
};
struct OctetBlock {
    using Word = uint32_t;
    const uint8_t* b;
    int lane;
    Word word(int field, int i) const { return quanta::cpu::word(b + kOctetRows * field + 32 * (i / 4) + 4 * lane); }
    float half(int field) const { return f16_load(b + kOctetRows * field + 2 * lane); }
};
struct OctetLanes {
    using Word = Lanes;
    const uint8_t* b;
    Word word(int field, int i) const {
        Lanes v;
        std::memcpy(&v, b + kOctetRows * field + 32 * (i / 4), sizeof v);
        return v;
    }
    Word fifth(int field, int t) const { return ((word(field, 0) >> t) & kLow1) << 4; }
};

// `n` bytes (a multiple of 4) of a byte array, for the decoders that read it bytewise.
template <typename Block>
void gather(const Block& v, int field, int n, uint8_t* out) {
    for (int i = 0; i < n; i += 4) {
        const uint32_t w = v.word(field, i);
        std::memcpy(out + i, &w, 4);
    }
}

// A block's levels, L4[s] holding elements 4s .. 4s + 3.
template <typename Block, typename Word = typename Block::Word>
void decode_levels(DType type, const Block& v, Word* L4) {
    if (type == DType::Q4_K || type == DType::Q5_K) {
        const bool five = type == DType::Q5_K;
        const int qh = 16, qs = five ? 48 : 16;
        for (int chunk = 0; chunk < 4; ++chunk)  // 64 elements: 32 low nibbles, then 32 high ones
            for (int t = 0; t < 8; ++t) {
                const Word q = v.word(qs, 32 * chunk + 4 * t), h = five ? v.word(qh, 4 * t) : Word{};
                L4[16 * chunk + t] = (q & kLow4) | ((h >> (2 * chunk)) & kLow1) << 4;
                L4[16 * chunk + 8 + t] = ((q >> 4) & kLow4) | ((h >> (2 * chunk + 1)) & kLow1) << 4;
            }
    } else if (type == DType::Q6_K) {
        const int ql = 0, qh = 128;
        for (int h = 0; h < 2; ++h)  // 128 elements: 4 runs of 32 from ql's nibbles and qh's bit pairs
            for (int t = 0; t < 8; ++t) {
                const Word l0 = v.word(ql, 64 * h + 4 * t), l1 = v.word(ql, 64 * h + 32 + 4 * t);
                const Word hb = v.word(qh, 32 * h + 4 * t);
                L4[32 * h + t] = (l0 & kLow4) | (hb & kLow2) << 4;
                L4[32 * h + 8 + t] = (l1 & kLow4) | ((hb >> 2) & kLow2) << 4;
                L4[32 * h + 16 + t] = ((l0 >> 4) & kLow4) | ((hb >> 4) & kLow2) << 4;
                L4[32 * h + 24 + t] = ((l1 >> 4) & kLow4) | ((hb >> 6) & kLow2) << 4;
            }
    } else if (type == DType::Q8_0) {  // signed levels shifted to unsigned: x = d * (L - 128)
        for (int s = 0; s < 8; ++s) L4[s] = v.word(2, 4 * s) ^ 0x80808080u;
    } else {
        const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
        const bool five = type == DType::Q5_0 || type == DType::Q5_1;
        const int qh = 2 + (has_min ? 2 : 0), qs = qh + (five ? 4 : 0);
        for (int s = 0; s < 4; ++s) {  // elements 4s.. in the low nibbles, 16 + 4s.. in the high ones
            const Word q = v.word(qs, 4 * s);
            L4[s] = (q & kLow4) | (five ? v.fifth(qh, s) : Word{});
            L4[4 + s] = ((q >> 4) & kLow4) | (five ? v.fifth(qh, 4 + s) : Word{});
        }
    }
}

// A block's scales and offsets.
template <typename Block>
void decode_fields(DType type, const Block& v, Decoded* out) {
    if (type == DType::Q4_K || type == DType::Q5_K) {
        out->d = v.half(0);
        const float dmin = v.half(2);
        uint8_t scales[12];
        gather(v, 4, 12, scales);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k4_scale_min(scales, j, &sc, &m);
            out->sc[j] = sc;
            out->min[j] = dmin * (float)m;  // exact: 11 significant bits times 6
        }
    } else if (type == DType::Q6_K) {
        int8_t sc[16];
        gather(v, 192, 16, reinterpret_cast<uint8_t*>(sc));
        out->d = v.half(208);
        for (int g = 0; g < 16; ++g) {  // x = d * sc * (L - 32)
            out->sc[g] = sc[g];
            out->off[g] = (int16_t)(-32 * sc[g]);
        }
    } else {
        const float d = v.half(0);
        const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
        const bool five = type == DType::Q5_0 || type == DType::Q5_1;
        out->d = d;
        out->m = type == DType::Q8_0 ? -128.0f * d : has_min ? v.half(2) : -(five ? 16.0f : 8.0f) * d;
    }
}

template <typename T>
void set_lane(uint8_t* vec, int lane, T v) {
    std::memcpy(vec + lane * sizeof(T), &v, sizeof(T));
}

// Spreads one row's levels over lane `lane` of a 16-row group's block, or an octet's over lanes
// 8 half .. 8 half + 7.
void spread_levels(DType type, const uint32_t* L4, int lane, uint8_t* out) {
    for (int s = 0; s < panel_block(type) / 4; ++s) set_lane(out + 64 * s, lane, L4[s]);
}
void spread_levels(DType type, const Lanes* L4, int half, uint8_t* out) {
    for (int s = 0; s < panel_block(type) / 4; ++s) std::memcpy(out + 64 * s + 32 * half, &L4[s], sizeof(Lanes));
}

// Spreads one row's scales and offsets over lane `lane` of a 16-row group's block.
void spread_fields(DType type, const Decoded& b, int lane, PanelScales scales, uint8_t* out) {
    if (panel_kind(type) == PanelKind::Block32) {
        set_lane(out + kB32Scale, lane, b.d);
        set_lane(out + kB32Min, lane, b.m);
        return;
    }
    const int sub = panel_sub_block(type);
    for (int h = 0; h < 256 / sub; ++h) {
        uint8_t* sc = out + kS256Scales + 64 * h;
        if (scales == PanelScales::Int32) {
            set_lane(sc, lane, b.sc[h]);
        } else {  // q4_k/q5_k's 6 bits and q6_k's int8 fit int16
            set_lane(sc, 2 * lane, (int16_t)b.sc[h]);
            set_lane(sc, 2 * lane + 1, (int16_t)b.sc[h]);
        }
    }
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

}  // namespace

void unpack_panel(DType type, const void* const* rows, int n, int64_t k, PanelScales scales, uint8_t* panel) {
    const size_t bytes = type_info(type).block_bytes, block_bytes = panel_block_bytes(type);
    const size_t group_bytes = panel_group_bytes(type, k);
    if (n < kPanelRows) std::memset(panel, 0, kPanelGroups * group_bytes);  // missing rows: zero lanes
    uint32_t L4[64];
    Decoded fields;
    for (int r = 0; r < n; ++r) {
        uint8_t* group = panel + (size_t)(r / kPanelLanes) * group_bytes;
        for (int64_t b = 0; b < k / panel_block(type); ++b) {
            const PlainBlock v{static_cast<const uint8_t*>(rows[r]) + b * bytes};
            decode_levels(type, v, L4);
            spread_levels(type, L4, r % kPanelLanes, group + b * block_bytes);
            decode_fields(type, v, &fields);
            spread_fields(type, fields, r % kPanelLanes, scales, group + b * block_bytes);
        }
    }
}

// Each octet fills one half of a 16-row group: its levels 8 lanes at a time, its scales lane by lane. The
// octets' rows past the matrix are zero blocks (octets.h), so lanes past n come out as zero rows' levels.
void unpack_panel_octets(DType type, const uint8_t* octets, int n, int64_t k, PanelScales scales, uint8_t* panel) {
    const size_t ob = octet_bytes(type, k), block = kOctetRows * type_info(type).block_bytes;
    const size_t block_bytes = panel_block_bytes(type), group_bytes = panel_group_bytes(type, k);
    if (n < kPanelRows) std::memset(panel, 0, kPanelGroups * group_bytes);
    Lanes L4[64];
    Decoded fields;
    for (int o = 0; kOctetRows * o < n; ++o) {
        const uint8_t* octet = octets + (size_t)o * ob;
        uint8_t* group = panel + (size_t)(o / 2) * group_bytes;
        for (int64_t b = 0; b < k / panel_block(type); ++b) {
            uint8_t* out = group + b * block_bytes;
            decode_levels(type, OctetLanes{octet + b * block}, L4);
            spread_levels(type, L4, o % 2, out);
            for (int lane = 0; lane < kOctetRows && kOctetRows * o + lane < n; ++lane) {
                decode_fields(type, OctetBlock{octet + b * block, lane}, &fields);
                spread_fields(type, fields, kOctetRows * (o % 2) + lane, scales, out);
            }
        }
    }
}

}  // namespace quanta::cpu
