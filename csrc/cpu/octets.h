// Weight matrices in octets: the CPU backend's own copy of a quantized weight,
// made once at load, in which every 8 consecutive rows are interleaved so that
// decode's matmul (one activation row against every weight row) advances 8
// output sums per instruction, each in its own 32-bit lane, with no
// horizontal reductions and one conversion for 8 rows' f16 scales.
//
// An octet is rows 8o .. 8o + 7. It stores, per block b (32 elements, or 256
// for the k-quants), the 8 rows' blocks b together (an octet block, 8 times a
// block's bytes), octet blocks in order. Inside an octet block each field of
// the source block (ggml's layout, quant/types.h) keeps its place, at 8 times
// its offset, with the rows interleaved:
//   f16 fields (d, m, dmin):  row r at 2r;
//   byte arrays (qs, ql, qh, the k-quant scales): 32-byte vectors whose
//            32-bit lane r holds bytes 4u .. 4u + 3 of row r (vector u);
//   q5_0/q5_1's qh (bit e: the fifth bit of element e): byte 4r + k, bit t
//            holds row r's bit 4t + k, so the fifth bits of the 8 elements'
//            vectors come out of it with one shift and one mask each.
// Levels stay packed as the file has them, so decode reads as many bytes as
// from the file. Rows past the matrix's last (its rows need not be a multiple
// of 8) are zero blocks.
//
// q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k and q6_k have the layout
// (octet_type). The levels with octet kernels (Kernels::dot_octets) run decode
// on it and unpack the GEMM's panels from it (panel.h); the others read the
// rows as the file has them, which the model keeps mapped.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace quanta::cpu {

constexpr int kOctetRows = 8;

// Whether `type` has an octet layout.
bool octet_type(DType type);
// Bytes of the octets of `rows` rows of k elements (rows rounded up to 8).
size_t octets_bytes(DType type, int64_t rows, int64_t k);
// Bytes of one octet of rows of k elements.
size_t octet_bytes(DType type, int64_t k);

// Packs rows [0, rows) of k elements, src_stride bytes apart, into octets at dst.
void pack_octets(DType type, const void* src, size_t src_stride, int64_t rows, int64_t k, void* dst);
// Row `lane` of the octet at `octet` (k elements), in ggml's layout, into `out` (row_bytes(type, k)): the
// inverse of pack_octets, which kernel_check holds it to.
void octet_row_to_plain(DType type, const uint8_t* octet, int64_t k, int lane, uint8_t* out);

}  // namespace quanta::cpu
