// The 8-bit activation format that quantized matmuls' row kernels run on.
// Activations are quantized per row on the fly (symmetric, levels in
// [-127, 127]), so weight x activation products become integer dot products.
// The format is internal to quanta (never stored in files), which lets it carry
// what the kernels need: an f32 scale per 32 elements (finer than ggml's f16)
// and precomputed sums for offset terms. (The prefill GEMM has its own layout of
// the same levels and scales, panel.h.)
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace quanta::cpu {

// One row of activations in blocks of 32 elements, for every quantized weight
// type (has_act_kernel): blocks stored in pairs, so one 64-byte load holds two
// blocks' levels and one 8-byte load their scales. A row with an odd block
// count ends in a half-empty pair.
struct ActPair32 {
    float d[2];     // block 2p + h: x ~ d[h] * q[32 h + i]
    float dsum[2];  // d[h] * (sum of the block's q), for weights with an offset (q - 8) or a min (q4_k)
    float d16[16];  // d[0] x 8, d[1] x 8: the scales of the 16 lanes of a 64-byte integer dot
    int8_t q[64];
};
static_assert(sizeof(ActPair32) == 144, "ActPair32 layout");

// Block b of a row of pairs.
struct ActBlock32Ref {
    float d, dsum;
    const int8_t* q;
};
inline ActBlock32Ref act_block32(const void* row, int64_t b) {
    const ActPair32& p = static_cast<const ActPair32*>(row)[b / 2];
    const int h = (int)(b & 1);
    return {p.d[h], p.dsum[h], p.q + 32 * h};
}

// Weight types with a fast kernel: every one of them, the k-quants included,
// multiplies activations in ActPair32 rows. A k-quant's sub-blocks (32
// elements for q4_k/q5_k, 16 for q6_k) lie inside one activation block, so each
// sub-block's integer sum is scaled by its own block's activation scale: one
// outlier costs the precision of 31 neighbours, not of a whole 256-element
// super-block (as with ggml's q8_K).
inline bool has_act_kernel(DType weight) {
    switch (weight) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

// Bytes of one activation row of n elements (a multiple of 32).
inline size_t act_row_bytes(int64_t n) { return (size_t)((n / 32 + 1) / 2) * sizeof(ActPair32); }

}  // namespace quanta::cpu
