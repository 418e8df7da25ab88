// Packing weight rows into octets and back (octets.h). Each type's block is
// described by its fields; packing and unpacking walk the same descriptions,
// so the two are inverses by construction (kernel_check tests that they are).
#include "cpu/octets.h"

#include <cstring>

namespace quanta::cpu {
namespace {

// How a field's bytes of 8 rows are interleaved.
enum class Spread { Halves, Words, FifthBits };  // 2-byte units, 4-byte units, q5_0/q5_1's qh

struct Field {
    int offset, bytes;
    Spread spread;
};

struct OctetLayout {
    int n;
    Field fields[5];
};

constexpr Field kD{0, 2, Spread::Halves};

// The fields of each type's block, in the order ggml lays them out.
const OctetLayout* layout(DType type) {
    static const OctetLayout q4_0{2, {kD, {2, 16, Spread::Words}}};
    static const OctetLayout q4_1{3, {kD, {2, 2, Spread::Halves}, {4, 16, Spread::Words}}};
    static const OctetLayout q5_0{3, {kD, {2, 4, Spread::FifthBits}, {6, 16, Spread::Words}}};
    static const OctetLayout q5_1{4, {kD, {2, 2, Spread::Halves}, {4, 4, Spread::FifthBits}, {8, 16, Spread::Words}}};
    static const OctetLayout q8_0{2, {kD, {2, 32, Spread::Words}}};
    static const OctetLayout q4_k{4, {kD, {2, 2, Spread::Halves}, {4, 12, Spread::Words}, {16, 128, Spread::Words}}};
    static const OctetLayout q5_k{5, {kD, {2, 2, Spread::Halves}, {4, 12, Spread::Words}, {16, 32, Spread::Words},
                                      {48, 128, Spread::Words}}};
    static const OctetLayout q6_k{4, {{0, 128, Spread::Words}, {128, 64, Spread::Words}, {192, 16, Spread::Words},
                                      {208, 2, Spread::Halves}}};
    switch (type) {
        case DType::Q4_0: return &q4_0;
        case DType::Q4_1: return &q4_1;
        case DType::Q5_0: return &q5_0;
        case DType::Q5_1: return &q5_1;
        case DType::Q8_0: return &q8_0;
        case DType::Q4_K: return &q4_k;
        case DType::Q5_K: return &q5_k;
        case DType::Q6_K: return &q6_k;
        default: return nullptr;
    }
}

// Copies row r's field (bytes at `row`) into the octet block's field (8 * bytes at `octet`), or back: Halves
// put the row's 2 bytes at 2r, Words its 4-byte unit u at 32u + 4r.
void spread(Spread s, int bytes, int r, const uint8_t* row, uint8_t* octet) {
    if (s == Spread::Halves) return (void)std::memcpy(octet + 2 * r, row, 2);
    for (int i = 0; i < bytes; i += 4) std::memcpy(octet + 8 * i + 4 * r, row + i, 4);
}
void gather(Spread s, int bytes, int r, const uint8_t* octet, uint8_t* row) {
    if (s == Spread::Halves) return (void)std::memcpy(row, octet + 2 * r, 2);
    for (int i = 0; i < bytes; i += 4) std::memcpy(row + i, octet + 8 * i + 4 * r, 4);
}

// q5's qh of 8 rows (32 bits each) to and from the bit-plane order of octets.h.
void fifth_bits_to_octet(const uint32_t (&qh)[kOctetRows], uint8_t* out) {
    for (int r = 0; r < kOctetRows; ++r)
        for (int k = 0; k < 4; ++k) {
            uint8_t v = 0;
            for (int t = 0; t < 8; ++t) v |= (uint8_t)(((qh[r] >> (4 * t + k)) & 1u) << t);
            out[4 * r + k] = v;
        }
}
uint32_t fifth_bits_of_row(const uint8_t* field, int r) {
    uint32_t qh = 0;
    for (int k = 0; k < 4; ++k)
        for (int t = 0; t < 8; ++t) qh |= (uint32_t)((field[4 * r + k] >> t) & 1u) << (4 * t + k);
    return qh;
}

// Row `lane`'s block b of the octet at `octet`, in ggml's layout, into `out`.
void block_to_plain(DType type, const uint8_t* octet, int lane, int64_t b, uint8_t* out) {
    const OctetLayout& l = *layout(type);
    const size_t block = type_info(type).block_bytes;
    const uint8_t* ob = octet + (size_t)b * kOctetRows * block;
    for (int f = 0; f < l.n; ++f) {
        const Field& fd = l.fields[f];
        const uint8_t* field = ob + kOctetRows * fd.offset;
        if (fd.spread == Spread::FifthBits) {
            const uint32_t qh = fifth_bits_of_row(field, lane);
            std::memcpy(out + fd.offset, &qh, 4);
        } else {
            gather(fd.spread, fd.bytes, lane, field, out + fd.offset);
        }
    }
}

}  // namespace

bool octet_type(DType type) { return layout(type) != nullptr; }

size_t octet_bytes(DType type, int64_t k) { return kOctetRows * row_bytes(type, k); }

size_t octets_bytes(DType type, int64_t rows, int64_t k) {
    return (size_t)((rows + kOctetRows - 1) / kOctetRows) * octet_bytes(type, k);
}

void pack_octets(DType type, const void* src, size_t src_stride, int64_t rows, int64_t k, void* dst) {
    const OctetLayout& l = *layout(type);
    const TypeInfo& info = type_info(type);
    const size_t block = info.block_bytes, octet_block = kOctetRows * block;
    const int64_t blocks = k / info.block_size;
    auto* out = static_cast<uint8_t*>(dst);
    std::memset(out, 0, octets_bytes(type, rows, k));
    for (int64_t o = 0; o * kOctetRows < rows; ++o)
        for (int64_t b = 0; b < blocks; ++b) {
            uint8_t* ob = out + (size_t)o * octet_bytes(type, k) + (size_t)b * octet_block;
            for (int f = 0; f < l.n; ++f) {
                const Field& fd = l.fields[f];
                uint8_t* field = ob + kOctetRows * fd.offset;
                uint32_t qh[kOctetRows] = {};
                for (int r = 0; r < kOctetRows && o * kOctetRows + r < rows; ++r) {
                    const uint8_t* in = static_cast<const uint8_t*>(src) + (size_t)(o * kOctetRows + r) * src_stride +
                                        (size_t)b * block + fd.offset;
                    if (fd.spread == Spread::FifthBits) std::memcpy(&qh[r], in, 4);
                    else spread(fd.spread, fd.bytes, r, in, field);
                }
                if (fd.spread == Spread::FifthBits) fifth_bits_to_octet(qh, field);
            }
        }
}

void octet_row_to_plain(DType type, const uint8_t* octet, int64_t k, int lane, uint8_t* out) {
    const TypeInfo& info = type_info(type);
    for (int64_t b = 0; b < k / info.block_size; ++b)
        block_to_plain(type, octet, lane, b, out + (size_t)b * info.block_bytes);
}

}  // namespace quanta::cpu
