// Layouts for the tiled prefill GEMM (gemm_impl.inc). Every quantized weight
// type unpacks to the same panel form, x = s * L + c, with
//   L  unsigned 8-bit levels in natural element order,
//   s  one float scale per 4 elements (the lanes of an integer dot product),
//   c  one float bias per 16 elements (the smallest scale group, q6_k's);
// and activations to rows of int8 levels with their block scale per 4
// elements and scaled sums per 16. Then for any type
//   dot(w, a) = sum over lanes of s * d * (L . q)  +  sum over groups of c * dsum,
// an integer dot product per lane plus one short float dot. Rows are padded
// with zeros to a multiple of 64 elements.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace quanta::cpu {

constexpr int kPanelRows = 4;

inline int64_t panel_k(int64_t k) { return (k + 63) / 64 * 64; }

// Bytes of one weight row's panel: levels, scales, biases.
inline size_t panel_row_bytes(int64_t kpad) { return (size_t)kpad + (size_t)kpad + (size_t)kpad / 4; }
// Bytes of one activation row: levels, scales, group sums.
inline size_t gemm_act_row_bytes(int64_t kpad) { return panel_row_bytes(kpad); }

// Unpacks one weight row of k elements into L, s, c (kpad long); every type with
// an activation format (act_formats.h), i.e. every type with fast dot kernels.
void unpack_panel_row(DType type, const void* w, int64_t k, int64_t kpad, uint8_t* L, float* s, float* c);
// Activation rows (gemm_act_row_bytes(kpad) bytes): int8 levels[kpad] | float
// scale per 4 elements | float scaled sum per 16 elements; quantized by the
// level that has the GEMM (Kernels::quantize_gemm_act) with the same levels as
// the row kernels' formats: per block of 32 (256 for k-quant weights), scale
// amax / 127, round half to even.

}  // namespace quanta::cpu
